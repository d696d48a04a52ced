//! `stampede-loadgen`: load against the served shop.
//!
//! Goose (embedded as a library; the configuration is built in code) runs
//! users that each perform shopper journeys ([`journey`]). Two load models:
//! **closed** — goose's own, N users back to back — and **open** — journeys
//! started on a fixed [`schedule`] whatever the shop does, built on top of
//! goose: its users take the next slot, wait for its time, and measure from
//! it (wrk2's model), so a stalled shop shows up as latency instead of as
//! missing requests; a journey's later requests count from the previous
//! answer plus the pause it planned. Every request goes into HdrHistograms
//! ([`latency`]) as sent and on its headline basis; closed-loop numbers are
//! corrected for coordinated omission with each user's own expected
//! interval between sends. After
//! the load, the shop settles and the core's invariant checker judges what
//! really happened ([`audit`]); [`threshold`]s turn SLOs into an exit code.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stampede_loadgen::LoadError> {
//! use stampede_loadgen::{LoadConfig, Model, run};
//! let mut config = LoadConfig::new("127.0.0.1:8080", "127.0.0.1:8081", "stampede-out/load".into());
//! config.model = Model::Open { rate_per_sec: 200.0, max_in_flight: 256 };
//! let report = run(config, |_progress| {}).await?;
//! println!("{}", report.title);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod audit;
pub mod crash;
pub mod journey;
pub mod latency;
pub mod merge;
pub mod schedule;
pub mod shard;
pub mod threshold;

use goose::config::GooseConfiguration;
use goose::prelude::*;
use schedule::{Schedule, Shape, Share};
use stampede_reports::{LoadModel, LoadReport, REPORT_VERSION};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use threshold::Threshold;

/// Why a load run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration makes no sense.
    #[error("invalid load configuration: {0}")]
    Config(String),
    /// The shop or PSP could not be reached or answered nonsense.
    #[error("{0}")]
    Shop(String),
    /// Goose failed.
    #[error("goose: {0}")]
    Goose(String),
    /// Writing results failed.
    #[error("{0}")]
    Io(String),
    /// A bound of the loadgen was reached, so the run cannot be judged whole.
    #[error("{0}")]
    Limit(String),
}

/// How a shopper follows its order between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Follow {
    /// One `GET /v1/orders/{id}/events` stream per watch (server-sent
    /// events; reconnecting after [`LoadConfig::poll`] if the stream ends
    /// early): the shop reads the order only when it changes.
    #[default]
    Events,
    /// `GET /v1/orders/{id}` every [`LoadConfig::poll`].
    Poll,
}

/// How load is offered.
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    /// `users` goose users running journeys back to back, started over `ramp`.
    Closed {
        /// Concurrent users.
        users: u32,
        /// Time to start them all.
        ramp: Duration,
    },
    /// Journeys started at `rate_per_sec` (shaped by [`LoadConfig::shape`]),
    /// executed by at most `max_in_flight` goose users.
    Open {
        /// Journeys per second.
        rate_per_sec: f64,
        /// Concurrent journeys at most.
        max_in_flight: u32,
    },
}

/// What shoppers do, as probabilities per journey.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mix {
    /// Browse the catalog first.
    pub browse: f64,
    /// Double-click "place order" (two concurrent requests, one key).
    pub double_click: f64,
    /// Walk away instead of paying.
    pub abandon: f64,
    /// Order the hot, scarce SKU (else an ordinary one).
    pub hot: f64,
    /// The card is declined.
    pub decline: f64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            browse: 0.5,
            double_click: 0.1,
            abandon: 0.1,
            hot: 0.1,
            decline: 0.02,
        }
    }
}

/// The design of a shop the load generator did not start (`--host`) until
/// the shop names it: the report's label if it never does.
pub const UNKNOWN_DESIGN: &str = "unknown";

/// Most journeys one load generator keeps in flight (closed-loop users or
/// the open loop's `max_in_flight`).
pub const JOURNEYS_IN_FLIGHT_MAX: u32 = 100_000;

/// Everything a load run needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The shop, `host:port`: where the audit reads, and the first replica.
    pub shop: String,
    /// Further replicas of the same shop (one shared store), `host:port`:
    /// journey `n` goes to replica `n mod (1 + len)`, `shop` counted first,
    /// for all its requests. Empty: one shop.
    pub replicas: Vec<String>,
    /// The PSP, `http://host:port` (shoppers confirm payments there).
    pub psp_url: String,
    /// The PSP, `host:port` (the audit reads its ledger).
    pub psp: String,
    /// Bearer token for `/admin/audit`.
    pub admin_token: String,
    /// Closed or open loop.
    pub model: Model,
    /// Rate shape (open loop).
    pub shape: Shape,
    /// How long load is offered.
    pub duration: Duration,
    /// After the load phase, how long journeys in flight may keep watching
    /// their orders after paying. A journey still waiting to be offered
    /// payment watches up to [`journey::FOLLOW_LIMIT`] whatever the drain
    /// (whether the shop offered it is judged), and goose waits for it.
    pub drain: Duration,
    /// After draining, how long the shop may take to settle before the audit.
    pub settle: Duration,
    /// What shoppers do.
    pub mix: Mix,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// How shoppers follow their orders: an events stream (the default) or polling.
    pub follow: Follow,
    /// Speak HTTP/2 by prior knowledge (cleartext) to the shop and the PSP,
    /// which must both accept it, as `stampede serve` and `stampede psp` do:
    /// every journey's requests and events streams share a few connections
    /// instead of holding a descriptor each. `false`: HTTP/1.1.
    pub http2: bool,
    /// How often a polling shopper polls its order; with events, the pause
    /// before reconnecting a stream that ended early.
    pub poll: Duration,
    /// How long a shopper thinks before each step of a journey (browse,
    /// place, follow, pay, confirm), except the open loop's first step,
    /// which starts at its slot. Planned, so it is neither latency nor
    /// coordinated omission.
    pub think: Duration,
    /// Timeline interval.
    pub interval: Duration,
    /// Folder for the histogram logs and goose's report.
    pub out_dir: PathBuf,
    /// The design the shop runs, for the report; [`UNKNOWN_DESIGN`] takes
    /// the one the shop names in its metrics, if it names one.
    pub design: String,
    /// Prefix of keys and customer ids, unique per run against one shop.
    pub run_id: String,
    /// Seed of the shoppers' choices.
    pub seed: u64,
    /// SLOs judged at the end.
    pub thresholds: Vec<Threshold>,
    /// Instead of shopper journeys, only GET this path (measuring the
    /// loadgen itself against a trivial endpoint); no audit.
    pub probe: Option<String>,
    /// The catalog Stampede configured the shop with, `(sku, price, units)`:
    /// the audit's independent prices and stock. `None` (a shop Stampede did
    /// not start) reads them from the shop, and the report says so.
    pub catalog: Option<Vec<(stampede_core::Sku, stampede_core::Cents, u64)>>,
    /// Invariants the user asked not to judge (`--skip`); every other one,
    /// liveness included, is judged whether or not the shop settled.
    pub skip: stampede_core::OptOuts,
    /// The promises the audit holds the shop to, recorded once at the start
    /// of the history: `hold_ms` is the reservation TTL Stampede configured
    /// (`None` for a shop it did not start: its hold is unknown).
    pub terms: stampede_core::Terms,
    /// Kill the shop (a child process) on a schedule while the load runs.
    pub kills: Option<crash::Kills>,
    /// Run only this share of the open loop's schedule, one of several load
    /// generators against one shop: the audit and the thresholds are left
    /// to `stampede report merge`, which judges every share together; this
    /// run writes its evidence ([`shard`]) instead.
    pub share: Option<Share>,
    /// When load begins, unix ms (every share of a run is given the same):
    /// the schedule's origin. `None`: as soon as the goose users are up.
    pub start_at_unix_ms: Option<u64>,
}

impl LoadConfig {
    /// Defaults: 50 closed-loop users for 20 s, then up to 10 s to drain and 30 s to settle.
    pub fn new(shop: &str, psp: &str, out_dir: PathBuf) -> LoadConfig {
        LoadConfig {
            shop: shop.to_string(),
            replicas: Vec::new(),
            psp_url: format!("http://{psp}"),
            psp: psp.to_string(),
            admin_token: "stampede-admin".into(),
            model: Model::Closed {
                users: 50,
                ramp: Duration::from_secs(1),
            },
            shape: Shape::Steady,
            duration: Duration::from_secs(20),
            drain: Duration::from_secs(10),
            settle: Duration::from_secs(30),
            mix: Mix::default(),
            request_timeout: Duration::from_secs(10),
            follow: Follow::Events,
            http2: false,
            poll: Duration::from_millis(50),
            think: Duration::ZERO,
            interval: Duration::from_secs(1),
            out_dir,
            design: UNKNOWN_DESIGN.into(),
            run_id: "lg".into(),
            seed: 1,
            thresholds: Vec::new(),
            probe: None,
            catalog: None,
            skip: stampede_core::OptOuts::none(),
            terms: stampede_core::Terms::default(),
            kills: None,
            share: None,
            start_at_unix_ms: None,
        }
    }

    /// Refuses a configuration the run could not honour, naming the value
    /// and the fix; checked in this order, the first refusal wins.
    fn validate(&self) -> Result<(), LoadError> {
        self.validate_times()?;
        self.validate_run_id_and_terms()?;
        self.validate_mix()?;
        self.validate_thresholds()?;
        self.validate_model()
    }

    /// A threshold on an endpoint no journey has is refused before the run
    /// (with `--probe`, the probe's endpoints are judged after it).
    fn validate_thresholds(&self) -> Result<(), LoadError> {
        if self.probe.is_some() {
            return Ok(());
        }
        match self
            .thresholds
            .iter()
            .find(|t| !t.names_a_journey_endpoint())
        {
            Some(t) => Err(LoadError::Config(format!(
                "threshold {:?}: no such endpoint; a journey has: {}",
                t.rule,
                Threshold::journey_endpoints().join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The duration, the timeline's intervals, and the pauses a journey takes.
    fn validate_times(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Config(m));
        if self.duration < Duration::from_secs(1) || self.duration > Duration::from_secs(86_400) {
            return bad(format!("duration {:?} must be 1 s to 24 h", self.duration));
        }
        let intervals = (self.duration + self.drain).as_millis()
            / self.interval.max(Duration::from_millis(10)).as_millis();
        if intervals >= latency::INTERVALS_MAX as u128 {
            return bad(format!(
                "{intervals} timeline intervals of {:?} over the load and drain; at most {}: use a wider interval",
                self.interval,
                latency::INTERVALS_MAX - 1
            ));
        }
        for (name, pause) in [("think", self.think), ("poll", self.poll)] {
            if pause > journey::FOLLOW_LIMIT {
                return bad(format!(
                    "{name} {pause:?} must be at most {:?}",
                    journey::FOLLOW_LIMIT
                ));
            }
        }
        Ok(())
    }

    /// The run id (it makes order keys and customer ids) and the promised bounds.
    fn validate_run_id_and_terms(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Config(m));
        if let Err(e) = journey::order_names(&self.run_id, u64::MAX) {
            return bad(format!(
                "run id {:?} makes an invalid order key or customer id ({e}): use letters, digits, '_', '-', '.' or ':'",
                self.run_id
            ));
        }
        let terms = &self.terms;
        if terms.offer_payment_ms == 0 || terms.decide_ms == 0 {
            return bad(format!(
                "the promised bounds must be above 0 ms: offer payment within {} ms, decide within {} ms",
                terms.offer_payment_ms, terms.decide_ms
            ));
        }
        if u128::from(terms.offer_payment_ms) > journey::FOLLOW_LIMIT.as_millis() {
            return bad(format!(
                "offer payment within {} ms (--offer-payment-within) is longer than a journey watches for the offer ({:?}): buyers would give up before the promise lapsed",
                terms.offer_payment_ms,
                journey::FOLLOW_LIMIT
            ));
        }
        Ok(())
    }

    /// Every probability of the mix within 0..=1.
    fn validate_mix(&self) -> Result<(), LoadError> {
        for (name, p) in [
            ("browse", self.mix.browse),
            ("double_click", self.mix.double_click),
            ("abandon", self.mix.abandon),
            ("hot", self.mix.hot),
            ("decline", self.mix.decline),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(LoadError::Config(format!(
                    "mix {name} = {p} must be within 0..=1"
                )));
            }
        }
        Ok(())
    }

    /// The load model with what it allows: users or journeys in flight,
    /// shards and start times (open loop), shapes (open loop).
    fn validate_model(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Config(m));
        if let Shape::Spike { at, length, .. } = self.shape
            && (length.is_zero() || at >= self.duration)
        {
            return bad(format!(
                "a spike of {length:?} from {at:?} never happens within the run's {:?}: it must last and start before the load ends",
                self.duration
            ));
        }
        let open = matches!(self.model, Model::Open { .. });
        if (self.share.is_some() || self.start_at_unix_ms.is_some()) && !open {
            return bad("a shard and a start time need the open loop (--rate): closed-loop users have no schedule to share".into());
        }
        if self.share.is_some() && (self.probe.is_some() || self.kills.is_some()) {
            return bad("a shard runs shopper journeys against a shop it did not start: not with a probe or kills".into());
        }
        match &self.model {
            Model::Closed { users, .. } if *users == 0 || *users > JOURNEYS_IN_FLIGHT_MAX => {
                bad(format!("{users} users must be 1..={JOURNEYS_IN_FLIGHT_MAX}"))
            }
            Model::Open { max_in_flight, .. }
                if *max_in_flight == 0 || *max_in_flight > JOURNEYS_IN_FLIGHT_MAX =>
            {
                bad(format!("{max_in_flight} in flight must be 1..={JOURNEYS_IN_FLIGHT_MAX}"))
            }
            Model::Closed { .. } if self.shape != Shape::Steady => bad(
                "ramps and spikes of the arrival rate need the open loop (--rate); closed-loop users ramp with --ramp".into(),
            ),
            _ => Ok(()),
        }
    }
}

/// A progress snapshot, for a progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Since load began, ms.
    pub elapsed_ms: u64,
    /// The load phase's length, ms.
    pub duration_ms: u64,
    /// Journeys started.
    pub journeys: u64,
    /// Journeys finished.
    pub journeys_done: u64,
    /// Requests answered (or failed).
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Whether the shop is settling for the audit.
    pub settling: bool,
}

fn snapshot(shared: &journey::Shared, settling: bool) -> Progress {
    let latencies = shared.latencies();
    Progress {
        elapsed_ms: shared.since().as_millis() as u64,
        duration_ms: shared.config.duration.as_millis() as u64,
        journeys: shared.journeys_started.load(Ordering::Relaxed),
        journeys_done: shared.journeys_done.load(Ordering::Relaxed),
        requests: latencies.requests(),
        errors: latencies.errors(),
        settling,
    }
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Result<String, LoadError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)
        .map_err(|e| LoadError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(name.to_string())
}

/// The files a load run writes into its folder (the CLI's reports among
/// them), besides one `.hgrm` per tag.
pub const OUTPUT_FILES: [&str; 7] = [
    "report.json",
    "report.md",
    "report.html",
    "latency.hlog",
    "goose-report.html",
    shard::SHARD_FILE,
    shard::CLIENTS_FILE,
];

/// Removes an earlier run's outputs from `dir` (the files of
/// [`OUTPUT_FILES`] and every `.hgrm`), once the run is sure to start: a
/// folder used again then holds only this run's files (no distribution of
/// an endpoint this run never sent to, no shard files beside an unsharded
/// report). Nothing else in the folder is touched.
fn clear_outputs(dir: &std::path::Path) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LoadError::Io(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = OUTPUT_FILES.contains(&name.as_ref()) || name.ends_with(".hgrm");
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| {
                LoadError::Io(format!("cannot remove {}: {e}", entry.path().display()))
            })?;
        }
    }
    Ok(())
}

/// What the headline latencies measure, for the report's notes.
fn basis_note(model: &Model) -> String {
    let what = match model {
        Model::Closed { .. } => {
            "closed loop: headline latencies are as sent, corrected for coordinated omission with each user's own expected interval between sends (its planned pauses per send plus its fastest answer)"
        }
        Model::Open { .. } => {
            "open loop: headline latencies count from when each request should have been sent: a journey's first request from its slot, later ones from the previous answer plus the planned think time, poll interval or retry backoff"
        }
    };
    format!(
        "{what}; raw ones from when each was sent. In latency.hlog and the .hgrm files the tag ENDPOINT holds the headline basis and ENDPOINT{} the raw one",
        latency::RAW_TAG_SUFFIX
    )
}

/// Runs the load, drains, settles, audits; writes `latency.hlog`, per
/// endpoint a headline-basis and a raw `.hgrm`, and goose's
/// `goose-report.html` into `out_dir`, and returns the report (thresholds
/// judged).
pub async fn run(
    mut config: LoadConfig,
    on_progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<LoadReport, LoadError> {
    config.validate()?;
    std::fs::create_dir_all(&config.out_dir)
        .map_err(|e| LoadError::Io(format!("cannot create {}: {e}", config.out_dir.display())))?;
    let office = audit::Backoffice::new(&config.shop, &config.psp, &config.admin_token);
    if config.probe.is_none()
        && let Some(design) = office.preflight(&config.replicas).await?
        && config.design == UNKNOWN_DESIGN
    {
        config.design = design;
    }
    let baseline = baseline(&config, &office).await?;
    clear_outputs(&config.out_dir)?;
    let (schedule, users) = plan_users(&config)?;
    let shared = Arc::new(journey::Shared::new(config.clone(), schedule, users.count));
    let attack = goose_attack(&config, &users, &shared)?;
    let on_progress = Arc::new(on_progress);
    let load = offer_load(attack, &shared, &on_progress).await?;
    on_progress(snapshot(&shared, true));

    let mut notes = Vec::new();
    if let Some(kills) = &load.kills {
        notes.push(kills_note(&config, kills));
    }
    let verdicts = audit_run(&config, &office, baseline.as_ref(), &shared, &mut notes).await?;

    let latencies = shared.latencies();
    let timeline = timeline_with_counts(&latencies, &load.counts, &shared);
    let start_unix = start_unix(&config, &shared);
    let files = write_files(&config, &latencies, start_unix)?;
    notes.extend(load_notes(&config, &shared, &load.metrics));
    let report = load_report(&config, &latencies, timeline, files, &verdicts, notes);
    drop(latencies);
    conclude(&config, report, start_unix)
}

/// The catalog the audit judges against: none for a probe, the one
/// Stampede configured, else read from the shop.
async fn baseline(
    config: &LoadConfig,
    office: &audit::Backoffice,
) -> Result<Option<audit::Baseline>, LoadError> {
    Ok(match (&config.probe, &config.catalog) {
        (Some(_), _) => None,
        (None, Some(products)) => Some(audit::Baseline::configured(products.clone())),
        (None, None) => Some(office.baseline_from_shop().await?),
    })
}

/// The goose users a run needs and how fast goose starts them.
struct Users {
    /// Goose users: the closed loop's users, the open loop's journeys in flight at most.
    count: usize,
    /// Goose's `increase_rate`, users started per second.
    increase: String,
}

/// The users and (open loop) the schedule, this share of it if sharded,
/// for the configured model.
fn plan_users(config: &LoadConfig) -> Result<(Option<Schedule>, Users), LoadError> {
    Ok(match &config.model {
        Model::Closed { users, ramp } => {
            let per_sec = (f64::from(*users) / ramp.as_secs_f64().max(0.001)).max(1.0);
            let users = Users {
                count: *users as usize,
                increase: format!("{per_sec:.3}"),
            };
            (None, users)
        }
        Model::Open {
            rate_per_sec,
            max_in_flight,
        } => {
            let mut schedule = Schedule::new(*rate_per_sec, config.shape, config.duration)
                .map_err(LoadError::Config)?;
            if let Some(share) = config.share {
                schedule = schedule.share(share);
            }
            // Start every user within ~100 ms: the schedule, not goose, paces the load.
            let per_sec = f64::from(*max_in_flight) * 10.0;
            let users = Users {
                count: *max_in_flight as usize,
                increase: format!("{per_sec:.0}"),
            };
            (Some(schedule), users)
        }
    })
}

/// Goose's configuration, built in code: the users, a run time covering
/// the lead to the start, the load and the drain, quiet, and its HTML
/// report in `out_dir`.
fn goose_configuration(config: &LoadConfig, users: &Users) -> GooseConfiguration {
    let mut goose = GooseConfiguration::default();
    goose.host = Some(format!("http://{}", config.shop));
    goose.users = Some(users.count);
    goose.increase_rate = Some(users.increase.clone());
    goose.run_time = Some(format!(
        "{}",
        (config.duration + config.drain + lead_time(config))
            .as_secs_f64()
            .ceil() as u64
    ));
    goose.no_telnet = true;
    goose.no_print_metrics = true;
    goose.no_error_summary = true;
    goose.quiet = 1;
    goose.report_file = vec![
        config
            .out_dir
            .join("goose-report.html")
            .display()
            .to_string(),
    ];
    if matches!(config.model, Model::Closed { .. }) {
        goose.co_mitigation = Some(GooseCoordinatedOmissionMitigation::Average);
    }
    goose
}

/// Goose, configured, with one scenario whose one transaction is a shopper journey.
fn goose_attack(
    config: &LoadConfig,
    users: &Users,
    shared: &Arc<journey::Shared>,
) -> Result<GooseAttack, LoadError> {
    let goose = goose_configuration(config, users);
    let in_transaction = Arc::clone(shared);
    let transaction = Transaction::new(Arc::new(move |user| {
        let shared = Arc::clone(&in_transaction);
        Box::pin(async move { journey::run_journey(user, &shared).await })
    }))
    .set_name("journey");
    // One client goose builds once and clones into every user: left to
    // itself goose builds a client per user, loading the system's root
    // certificates each time (at 16,384 users, most of two cores for the
    // first tens of seconds of the run). Journeys then swap in the run's
    // own shared client (`journey::Shared`).
    let once = goose::client::GooseClientBuilder::new().without_cookies();
    GooseAttack::initialize_with_config(goose)
        .and_then(|attack| attack.set_client_builder_without_cookies(once))
        .map(|attack| {
            attack.register_scenario(scenario!("shopper").register_transaction(transaction))
        })
        .map_err(|e| LoadError::Goose(e.to_string()))
}

/// What the load phase leaves behind.
struct Load {
    metrics: goose::metrics::GooseMetrics,
    /// The kills made, when the configuration asked for them.
    kills: Option<crash::KillSummary>,
    /// Orders by status at the end of each timeline interval.
    counts: Vec<std::collections::BTreeMap<String, u64>>,
}

/// Runs goose (and the kill schedule, if any) to the end of the drain,
/// reporting progress; fails if goose or the kills failed, or if client
/// events were refused (the audit could not judge the run whole).
async fn offer_load(
    attack: GooseAttack,
    shared: &Arc<journey::Shared>,
    on_progress: &Arc<impl Fn(Progress) + Send + Sync + 'static>,
) -> Result<Load, LoadError> {
    let counts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ticker = spawn_ticker(shared, on_progress, &counts);
    let killer = shared.config.kills.clone().map(|kills| {
        let shared = Arc::clone(shared);
        tokio::spawn(crash::kill_loop(kills, shared))
    });
    let metrics = attack.execute().await;
    ticker.abort();
    // The last kill is made within the load's duration; let its restart finish.
    let kills = match killer {
        None => None,
        Some(handle) => Some(
            handle
                .await
                .map_err(|e| LoadError::Shop(format!("the kill schedule stopped: {e}")))?
                .map_err(LoadError::Shop)?,
        ),
    };
    let counts = std::mem::take(
        &mut *counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let metrics = metrics.map_err(|e| LoadError::Goose(e.to_string()))?;
    let refused = shared.client_events_refused.load(Ordering::Relaxed);
    if refused > 0 {
        return Err(LoadError::Limit(format!(
            "the audit needs every client event and this run made more than {} ({refused} refused; no journey started after that): shorten --duration or lower the load",
            journey::CLIENT_EVENTS_MAX
        )));
    }
    Ok(Load {
        metrics,
        kills,
        counts,
    })
}

/// Every 250 ms until aborted: once load began, the order counts of the
/// current timeline interval (at most [`latency::INTERVALS_MAX`] + 1 of
/// them), and a progress snapshot.
fn spawn_ticker(
    shared: &Arc<journey::Shared>,
    on_progress: &Arc<impl Fn(Progress) + Send + Sync + 'static>,
    counts: &Arc<std::sync::Mutex<Vec<std::collections::BTreeMap<String, u64>>>>,
) -> tokio::task::JoinHandle<()> {
    let shared = Arc::clone(shared);
    let on_progress = Arc::clone(on_progress);
    let counts = Arc::clone(counts);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if shared.started().is_some() {
                let slot = (shared.since().as_millis() / shared.config.interval.as_millis().max(1))
                    as usize;
                let now = shared.order_counts();
                let mut counts = counts
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Each interval ends with the counts last seen in it.
                while counts.len() <= slot.min(latency::INTERVALS_MAX) {
                    counts.push(now.clone());
                }
                if let Some(last) = counts.last_mut() {
                    *last = now;
                }
            }
            on_progress(snapshot(&shared, false));
        }
    })
}

/// How often, in words: `once`, `2 times`.
fn times(n: u32) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{n} times")
    }
}

/// The report's note on the kills made during the load.
fn kills_note(config: &LoadConfig, kills: &crash::KillSummary) -> String {
    format!(
        "the shop was killed with SIGKILL {} during the load and restarted on the same store (longest outage {} ms); each kill is a fault in the history, with sales at risk until {} ms after the restart",
        times(kills.kills),
        kills.longest_down_ms,
        config.kills.as_ref().map_or(0, |k| k.at_risk_after_ms)
    )
}

/// The audit after the load: nothing for a probe; a share writes its client
/// evidence for the merge; a whole run lets the shop settle and judges it.
/// Notes what was (not) judged and why.
async fn audit_run(
    config: &LoadConfig,
    office: &audit::Backoffice,
    baseline: Option<&audit::Baseline>,
    shared: &journey::Shared,
    notes: &mut Vec<String>,
) -> Result<Vec<stampede_core::Verdict>, LoadError> {
    match (baseline, config.share) {
        (None, _) => {
            notes.push("probe run: only the loadgen was measured; nothing to audit".to_string());
            Ok(Vec::new())
        }
        (Some(_), Some(share)) => {
            let client = take_client_events(shared);
            shard::write_clients(&config.out_dir, &client).map_err(LoadError::Io)?;
            notes.push(format!(
                "shard {share}: the audit and the thresholds are judged by `stampede report merge` on every shard together; this shard's client evidence is in {}",
                shard::CLIENTS_FILE
            ));
            Ok(Vec::new())
        }
        (Some(baseline), None) => settle_and_judge(config, office, baseline, shared, notes).await,
    }
}

/// Waits up to the settle time for the shop to settle, then judges every
/// invariant not skipped on the state it is in.
async fn settle_and_judge(
    config: &LoadConfig,
    office: &audit::Backoffice,
    baseline: &audit::Baseline,
    shared: &journey::Shared,
    notes: &mut Vec<String>,
) -> Result<Vec<stampede_core::Verdict>, LoadError> {
    let (after, settled) = office.settle(config.settle).await?;
    let client = take_client_events(shared);
    if !settled {
        notes.push(unsettled_note(config.settle, &after));
    }
    notes.push(baseline.provenance(&config.terms));
    let start_unix_ms = u64::try_from(start_unix(config, shared).as_millis()).unwrap_or(u64::MAX);
    let verdicts = office
        .judge(baseline, client, &after, &config.skip, start_unix_ms)
        .await?;
    notes.extend(audit::lost_to_faults(&verdicts));
    Ok(verdicts)
}

/// What a shop that had not settled by the audit was still doing, and when
/// unpaid carts still hold stock past the audit (a hold longer than the
/// settle time), what to do about it.
fn unsettled_note(settle: Duration, after: &stampede_core::AuditSnapshot) -> String {
    let mut moving = std::collections::BTreeMap::<String, u64>::new();
    for order in after.orders.iter().filter(|o| !o.status().is_final()) {
        *moving.entry(order.status().to_string()).or_default() += 1;
    }
    let mut note = format!(
        "the shop had not settled {settle:?} after the load ({moving:?} orders not final, {} jobs live): liveness is judged on the state it was left in",
        after.jobs_live
    );
    let held: Vec<Option<stampede_core::Millis>> = after
        .reservations
        .iter()
        .filter(|r| !r.pinned && r.expires_at.is_none_or(|t| t > after.at))
        .map(|r| r.expires_at)
        .collect();
    if !held.is_empty() {
        let lapse = if held.contains(&None) {
            "some never lapse (no expiry)".to_string()
        } else {
            let last = held.iter().flatten().max().copied().unwrap_or(after.at);
            format!(
                "the last lapses {} ms after the audit's read",
                last.0.saturating_sub(after.at.0)
            )
        };
        note.push_str(&format!(
            "; {} unpaid carts still hold stock and {lapse}: a hold longer than the settle time cannot lapse before the audit (against --host give the shop's hold with --hold, or a longer --settle)",
            held.len()
        ));
    }
    note
}

/// The client evidence the journeys kept, taken out of `shared`.
fn take_client_events(
    shared: &journey::Shared,
) -> Vec<(stampede_core::Millis, stampede_core::EventKind)> {
    std::mem::take(
        &mut *shared
            .client_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// The latency timeline, each interval with the order counts the ticker saw
/// at its end (the counts now for intervals it did not reach).
fn timeline_with_counts(
    latencies: &latency::Latencies,
    counts: &[std::collections::BTreeMap<String, u64>],
    shared: &journey::Shared,
) -> Vec<stampede_reports::Interval> {
    let mut timeline = latencies.timeline();
    let final_counts = shared.order_counts();
    for (i, interval) in timeline.iter_mut().enumerate() {
        interval.orders_by_status = counts
            .get(i)
            .cloned()
            .unwrap_or_else(|| final_counts.clone());
    }
    timeline
}

/// Wall-clock time of the start, for the log's header: the start asked
/// for (so shards' logs align exactly), else measured.
fn start_unix(config: &LoadConfig, shared: &journey::Shared) -> Duration {
    match config.start_at_unix_ms {
        Some(ms) => Duration::from_millis(ms),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(shared.since()),
    }
}

/// Writes `latency.hlog` and the `.hgrm` files into `out_dir`; returns
/// their names, and goose's report's if goose wrote it.
fn write_files(
    config: &LoadConfig,
    latencies: &latency::Latencies,
    start_unix: Duration,
) -> Result<Vec<String>, LoadError> {
    let mut files = Vec::new();
    let log = latencies.interval_log(start_unix).map_err(LoadError::Io)?;
    files.push(write(&config.out_dir, "latency.hlog", &log)?);
    for (name, text) in latencies.distributions() {
        files.push(write(&config.out_dir, &name, text.as_bytes())?);
    }
    if config.out_dir.join("goose-report.html").exists() {
        files.push("goose-report.html".into());
    }
    Ok(files)
}

/// How the offered rate varied, for the report (a steady load says nothing):
/// a ramped or spiked run offers other than its title's rate × duration.
fn shape_note(shape: &Shape) -> Option<String> {
    match *shape {
        Shape::Steady => None,
        Shape::Ramp { over } => Some(format!(
            "a ramp: the rate rose from 0 to the full rate over the first {:.3} s, so fewer journeys were offered than rate × duration",
            over.as_secs_f64()
        )),
        Shape::Spike { at, length, factor } => Some(format!(
            "a spike: {factor}× the rate from {:.3} s for {:.3} s",
            at.as_secs_f64(),
            length.as_secs_f64()
        )),
    }
}

/// The report's notes on how the load was measured and offered.
fn load_notes(
    config: &LoadConfig,
    shared: &journey::Shared,
    metrics: &goose::metrics::GooseMetrics,
) -> Vec<String> {
    let mut notes = vec![basis_note(&config.model)];
    notes.extend(shape_note(&config.shape));
    let ready_late_ms = shared.ready_late_ms.load(Ordering::Relaxed);
    if ready_late_ms > 0 {
        notes.push(format!(
            "this load generator's users were up {ready_late_ms} ms after the start asked for (--start-at): journeys due before then started late and count from their slots; start further ahead"
        ));
    }
    let started = shared.journeys_started.load(Ordering::Relaxed);
    if let Some(scheduled) = shared.scheduled() {
        let never = (scheduled as u64).saturating_sub(started);
        if never > 0 {
            notes.push(format!(
                "{never} of the {scheduled} scheduled journeys never started: every journey in flight was busy until the run ended (--max-in-flight), so the load offered was lower than asked, and their latency — the longest waits — is in no figure here"
            ));
        }
    }
    let late = shared.late_starts.load(Ordering::Relaxed);
    if late > 0 {
        notes.push(format!(
            "{late} journeys started after their scheduled time because every user was busy; their latency counts from the schedule"
        ));
    }
    notes.push(format!(
        "goose counted {} requests over {} s (its own report: goose-report.html)",
        metrics
            .requests
            .values()
            .map(|r| r.success_count + r.fail_count)
            .sum::<usize>(),
        metrics.duration
    ));
    notes
}

/// The report's load model and title.
fn model_and_title(config: &LoadConfig) -> (LoadModel, String) {
    let secs = config.duration.as_secs();
    match &config.model {
        Model::Closed { users, .. } => (
            LoadModel::Closed { users: *users },
            format!("load {} — {users} users for {secs} s", config.design),
        ),
        Model::Open {
            rate_per_sec,
            max_in_flight,
        } => (
            LoadModel::Open {
                rate_per_sec: *rate_per_sec,
                max_in_flight: *max_in_flight,
            },
            format!("load {} — {rate_per_sec}/s for {secs} s", config.design),
        ),
    }
}

/// The report, thresholds not yet judged.
fn load_report(
    config: &LoadConfig,
    latencies: &latency::Latencies,
    timeline: Vec<stampede_reports::Interval>,
    files: Vec<String>,
    verdicts: &[stampede_core::Verdict],
    notes: Vec<String>,
) -> LoadReport {
    let (model, title) = model_and_title(config);
    LoadReport {
        version: REPORT_VERSION,
        title,
        target: std::iter::once(&config.shop)
            .chain(&config.replicas)
            .map(|host| format!("http://{host}"))
            .collect::<Vec<_>>()
            .join(", "),
        design: config.design.clone(),
        model,
        duration_ms: config.duration.as_millis() as u64,
        interval_ms: config.interval.as_millis() as u64,
        endpoints: latencies.endpoints(),
        timeline,
        audit: audit::verdicts(verdicts),
        audit_not_done: None,
        thresholds: Vec::new(),
        files,
        notes,
    }
}

/// A share writes its record for the merge and leaves the thresholds to
/// it; a whole run judges them.
fn conclude(
    config: &LoadConfig,
    mut report: LoadReport,
    start_unix: Duration,
) -> Result<LoadReport, LoadError> {
    if let Some(share) = config.share {
        report.audit_not_done = Some(format!(
            "shard {share} of a sharded load: `stampede report merge` judges the audit once, on every shard's evidence"
        ));
        if !config.thresholds.is_empty() {
            let rules: Vec<&str> = config.thresholds.iter().map(|t| t.rule.as_str()).collect();
            report.notes.push(format!(
                "thresholds deferred to `stampede report merge`, which judges them on every shard's latencies together: {}",
                rules.join("; ")
            ));
        }
        let record = shard_record(config, share, start_unix)?;
        record.write(&config.out_dir).map_err(LoadError::Io)?;
        report
            .files
            .extend([shard::SHARD_FILE.into(), shard::CLIENTS_FILE.into()]);
        return Ok(report);
    }
    for t in &config.thresholds {
        let result = t.judge(&report).map_err(LoadError::Config)?;
        report.thresholds.push(result);
    }
    Ok(report)
}

/// How long from now until load begins at the configured start (zero without one).
fn lead_time(config: &LoadConfig) -> Duration {
    let Some(start_ms) = config.start_at_unix_ms else {
        return Duration::ZERO;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(start_ms.saturating_sub(now_ms))
}

/// What a share leaves for the merge beside its report.
fn shard_record(
    config: &LoadConfig,
    share: Share,
    start_unix: Duration,
) -> Result<shard::ShardRecord, LoadError> {
    let Model::Open { rate_per_sec, .. } = config.model else {
        return Err(LoadError::Config("a shard needs the open loop".into()));
    };
    Ok(shard::ShardRecord {
        version: shard::SHARD_VERSION,
        share,
        start_unix_ms: start_unix.as_millis() as u64,
        run_id: config.run_id.clone(),
        rate_per_sec,
        shape: config.shape,
        duration_ms: config.duration.as_millis() as u64,
        interval_ms: config.interval.as_millis() as u64,
        seed: config.seed,
        thresholds: config.thresholds.iter().map(|t| t.rule.clone()).collect(),
        skip: stampede_core::Invariant::ALL
            .iter()
            .filter(|i| config.skip.reason(**i).is_some())
            .map(|i| i.name().to_string())
            .collect(),
        terms: config.terms,
        clients: Some(shard::count_clients(&config.out_dir).map_err(LoadError::Io)?),
        mix: Some(config.mix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_reads_as_words() {
        // Proves the kill note says "once" for one kill and "N times" otherwise.
        assert_eq!(times(1), "once");
        assert_eq!(times(2), "2 times");
        assert_eq!(times(0), "0 times");
    }

    #[test]
    fn clearing_a_folder_removes_an_earlier_runs_outputs_and_nothing_else() {
        // Proves: every file a load writes (its reports, logs, distributions and shard files)
        // goes; a file of another name, and a folder named like an output, stay.
        let dir = std::env::temp_dir().join(format!("stampede-clear-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("report.json")).unwrap();
        let ours = OUTPUT_FILES
            .iter()
            .filter(|name| **name != "report.json")
            .chain(&["GET_v1_gone.hgrm", "GET_v1_gone.raw.hgrm"]);
        for name in ours.clone() {
            std::fs::write(dir.join(name), b"stale").unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        std::fs::write(dir.join("shop.db"), b"mine").unwrap();
        clear_outputs(&dir).unwrap();
        for name in ours {
            assert!(!dir.join(name).exists(), "{name} left");
        }
        assert!(dir.join("notes.txt").exists() && dir.join("shop.db").exists());
        assert!(dir.join("report.json").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn promises_and_run_ids_a_journey_cannot_honour_are_refused() {
        // Proves: the default configuration is valid; an offer bound longer
        // than a journey watches for its offer, a zero bound, a run id that
        // makes an invalid order key, a spike outside the run and a threshold
        // on an endpoint no journey has are refused, each naming the value.
        let config = LoadConfig::new("127.0.0.1:1", "127.0.0.1:2", "out".into());
        assert!(config.validate().is_ok());
        let refused = |c: LoadConfig| match c.validate() {
            Err(LoadError::Config(m)) => m,
            other => panic!("refused, got {other:?}"),
        };
        let mut slow = config.clone();
        slow.terms.offer_payment_ms = journey::FOLLOW_LIMIT.as_millis() as u64 + 1;
        assert!(refused(slow).contains("offer payment within 60001 ms"));
        let mut zero = config.clone();
        zero.terms.decide_ms = 0;
        assert!(refused(zero).contains("decide within 0 ms"));
        let mut spaced = config.clone();
        spaced.run_id = "my run".into();
        assert!(refused(spaced).contains("run id \"my run\""));
        // A spike must last and start before the load ends (found from outside: one after
        // the end, or of no length, was run as a plain load), on both sides of each bound.
        let spiked = |at: u64, length: u64| {
            let mut c = config.clone();
            c.duration = Duration::from_secs(3);
            c.model = Model::Open {
                rate_per_sec: 10.0,
                max_in_flight: 100,
            };
            c.shape = Shape::Spike {
                at: Duration::from_millis(at),
                length: Duration::from_millis(length),
                factor: 10.0,
            };
            c
        };
        let ok = spiked(2_999, 1).validate();
        assert!(ok.is_ok(), "{ok:?}");
        assert!(refused(spiked(3_000, 1)).contains("never happens"));
        assert!(refused(spiked(0, 0)).contains("never happens"));
        // An unknown threshold endpoint is refused before the run; a journey's is taken.
        let mut misspelt = config.clone();
        misspelt.thresholds = vec!["p99<50ms for POST /v1/nothing".parse().unwrap()];
        assert!(refused(misspelt).contains("no such endpoint"));
        let mut known = config;
        known.thresholds = vec!["p99<50ms for POST /v1/orders".parse().unwrap()];
        assert!(known.validate().is_ok());
    }

    #[test]
    fn a_ramp_and_a_spike_are_named_in_the_notes_and_a_steady_load_is_not() {
        // Proves (found from outside: a `--ramp 4s` run offered 599 journeys under a title of
        // "100/s for 8 s" and no report said it ramped): each shape that changes what was
        // offered is noted with its numbers.
        assert_eq!(shape_note(&Shape::Steady), None);
        let ramp = shape_note(&Shape::Ramp {
            over: Duration::from_secs(4),
        })
        .unwrap();
        assert!(
            ramp.contains("a ramp") && ramp.contains("4.000 s"),
            "{ramp}"
        );
        let spike = shape_note(&Shape::Spike {
            at: Duration::from_secs(2),
            length: Duration::from_millis(1_500),
            factor: 3.0,
        })
        .unwrap();
        assert!(
            spike.contains("3× the rate from 2.000 s for 1.500 s"),
            "{spike}"
        );
    }

    #[test]
    fn an_unsettled_shop_is_told_when_unpaid_carts_outlast_the_audit() {
        // Proves: the orders not final are counted per status (a cancelled one is final);
        // carts whose hold lapses after the audit's read are counted,
        // with the last lapse and the fix; a cart that lapses at the read, or
        // a pinned (paid) one, is not; a cart with no expiry says so.
        use stampede_core::{Millis, OrderId, Reservation, ReservationId};
        let cart = |id: u64, expires_at: Option<u64>, pinned: bool| Reservation {
            id: ReservationId(id),
            order: OrderId(id),
            allocations: Vec::new(),
            created_at: Millis(0),
            expires_at: expires_at.map(Millis),
            pinned,
        };
        let mut after = stampede_core::AuditSnapshot {
            at: Millis(40_000),
            orders: Vec::new(),
            stock: Default::default(),
            reservations: vec![cart(1, Some(40_000), false), cart(2, Some(900_000), true)],
            intents: Vec::new(),
            jobs_live: 3,
            dead_letters: Vec::new(),
            dead_dropped: 0,
            webhooks_parked: 0,
            idempotency_records: 0,
        };
        let order = |id: u64| {
            let customer = stampede_core::CustomerId::new("c").unwrap();
            stampede_core::Order::new(
                OrderId(id),
                customer,
                Vec::new(),
                stampede_core::Cents(0),
                Millis(0),
                None,
            )
        };
        let mut cancelled = order(3);
        cancelled
            .transition(
                stampede_core::OrderStatus::Cancelled(stampede_core::CancelReason::ByCustomer),
                Millis(1),
                stampede_core::Cause::Customer,
            )
            .unwrap();
        after.orders = vec![order(1), order(2), cancelled];
        let settle = Duration::from_secs(30);
        let quiet = unsettled_note(settle, &after);
        assert!(
            quiet.contains("({\"created\": 2} orders not final, 3 jobs live)"),
            "{quiet}"
        );
        assert!(!quiet.contains("unpaid carts"), "{quiet}");
        after.reservations.push(cart(3, Some(40_001), false));
        after.reservations.push(cart(4, Some(900_000), false));
        let held = unsettled_note(settle, &after);
        assert!(
            held.contains("; 2 unpaid carts still hold stock and the last lapses 860000 ms after"),
            "{held}"
        );
        assert!(held.contains("give the shop's hold with --hold"), "{held}");
        after.reservations.push(cart(5, None, false));
        let forever = unsettled_note(settle, &after);
        assert!(
            forever.contains("3 unpaid carts still hold stock and some never lapse"),
            "{forever}"
        );
    }
}
