//! `stampede load` and `stampede report`: real load against the served shop
//! (started in-process unless `--host` names one) and the report files.

use crate::run::DesignSpec;
use indicatif::{ProgressBar, ProgressStyle};
use stampede_loadgen::crash::{Kills, ShopProcess};
use stampede_loadgen::schedule::Shape;
use stampede_loadgen::threshold::Threshold;
use stampede_loadgen::{LoadConfig, Mix, Model, Progress};
use stampede_reports::LoadReport;
use stampede_server::Connector;
use stampede_server::psp::{Psp, PspConfig, WebhookTarget};
use stampede_server::store::postgres::{self, PgOptions};
use stampede_server::store::sqlite::{self, SqliteOptions};
use stampede_server::{StackConfig, StoreChoice};
use stampede_sim::read_text_bounded;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `load` was asked to do.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// A running shop (`http://host:port`), or several replicas of one shop on one shared store,
    /// comma-separated (`http://a:8080,http://b:8080`): journeys are spread over them, each
    /// journey on one replica, and the audit reads the first. By default Stampede starts the
    /// shop with an embedded PSP on loopback.
    #[arg(long)]
    pub host: Option<String>,
    /// The PSP of the shop at --host (`http://host:port`); shoppers confirm payments there.
    #[arg(long, requires = "host")]
    pub psp: Option<String>,
    /// Closed loop: this many goose users, each running journeys back to back [default: 50,
    /// closed loop, when neither --users nor --rate is given].
    #[arg(long, conflicts_with = "rate", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: Option<u32>,
    /// Open loop: journeys started per second on a fixed schedule, e.g. 500/s (latency counts from the schedule).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open loop: most journeys in flight at once [default: 10 s of the schedule's peak rate, 64
    /// to 16384; over HTTP/1.1 also only as far as this process's file descriptors carry: each
    /// journey in flight then holds a connection, and with the shop in this process both its
    /// ends].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), conflicts_with = "users")]
    pub max_in_flight: Option<u32>,
    /// How long load is offered, e.g. 20s, 2m, 1m30s (1s to 24h).
    #[arg(long, default_value = "20s", value_parser = parse_load_duration)]
    pub duration: Duration,
    /// Ramp: closed loop starts users over this time; open loop raises the rate from 0 over it.
    #[arg(long, value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// Open loop flash-sale spike: AT,FOR,FACTOR, e.g. 5s,2s,10 (10× the rate for 2 s from 5 s).
    #[arg(long, value_parser = parse_spike, conflicts_with = "ramp")]
    pub spike: Option<Shape>,
    /// Design preset of the shop Stampede starts (ignored with --host).
    #[arg(long, default_value = "reference")]
    pub design: String,
    /// Override one switch of that design (repeatable; not with --host).
    #[arg(long = "set", value_name = "SWITCH=VALUE", conflicts_with = "host")]
    pub set: Vec<String>,
    /// An SLO that fails the command, e.g. "p99<50ms for POST /v1/orders", "error_rate<1%", "throughput>=400/s" (repeatable).
    #[arg(long = "threshold", value_name = "RULE", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
    /// Shopper mix: browse, double_click, abandon, hot, decline as NAME=P, comma separated.
    #[arg(long, value_parser = parse_mix, default_value = "")]
    pub mix: Mix,
    /// How shoppers follow their orders: events (one server-sent events stream per wait, the
    /// default) or poll (GET the order every 50 ms, as a client without streaming would).
    #[arg(long, default_value = "events", value_parser = parse_follow)]
    pub follow: stampede_loadgen::Follow,
    /// HTTP version spoken to the shop and the PSP: 1.1, 2 (cleartext, by prior knowledge: every
    /// journey's requests and events streams share one connection per host instead of a descriptor
    /// each; `stampede serve` and `stampede psp` accept both) or auto: 2 with the shop Stampede
    /// starts, 1.1 with --host.
    #[arg(long, default_value = "auto", value_parser = parse_http)]
    pub http: HttpVersion,
    /// After the load, how long journeys in flight may keep watching their orders after paying
    /// (one still waiting to be offered payment watches up to 60s regardless).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Then how long the shop may take to settle before the audit [default: 30s, or the --hold
    /// plus 10s when that is longer, so carts abandoned in the load can lapse first].
    #[arg(long, value_parser = parse_duration)]
    pub settle: Option<Duration>,
    /// Bearer token of the shop's /admin/audit (and of the shop this starts): 8 to 256
    /// visible ASCII characters.
    #[arg(long, default_value = "stampede-admin", value_parser = crate::serve::parse_admin_token)]
    pub admin_token: String,
    /// Seed of the shoppers' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder for every file [default: stampede-out/load-<design>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measure the loadgen itself: only GET this path (e.g. / of a hello-world server), no journeys, no audit.
    #[arg(long, value_name = "PATH")]
    pub probe: Option<String>,
    /// Do not judge this invariant (repeatable); the report lists it as not judged, skipped by you.
    /// Every other invariant, liveness included, is judged whether or not the shop settled.
    #[arg(long = "skip", value_name = "INVARIANT", value_parser = parse_invariant)]
    pub skip: Vec<stampede_core::Invariant>,
    /// Promise judged by timely_decisions: a willing buyer is offered payment within this long of its
    /// order being acknowledged, e.g. 5s [default: 10s, the checker's]; at most 60s, as long as a journey
    /// watches for the offer.
    #[arg(long, value_name = "DURATION", value_parser = parse_offer_bound)]
    pub offer_payment_within: Option<Duration>,
    /// Promise judged by timely_decisions: a willing buyer acknowledged while, by the evidence,
    /// every unit it asked for was already sold or held by other buyers' carts is offered payment
    /// within this long instead [default: the sold-out wait bound of the shop Stampede starts, 12
    /// holds; with --host, that of the --hold given, else none: every buyer is held to
    /// --offer-payment-within].
    #[arg(long, value_name = "DURATION", value_parser = parse_bound)]
    pub offer_waitlisted_within: Option<Duration>,
    /// The hold of the shop at --host (how long an unpaid order keeps its stock: its reservation
    /// TTL), e.g. 10s for `stampede serve`'s default or 15m. The audit then holds that shop to
    /// the promises it holds a shop Stampede starts to (a buyer who thinks longer than the hold
    /// is not judged late; a buyer waiting behind other carts' holds is offered payment within
    /// the shop's sold-out wait bound, 12 holds), and the shop gets at least the hold plus 10s to
    /// settle. Without it a running shop's hold is unknown: every buyer is held to
    /// --offer-payment-within, and carts held longer than --settle are judged stuck.
    /// 1ms to 1h; only with --host (the shop Stampede starts holds 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_hold, requires = "host")]
    pub hold: Option<Duration>,
    /// Promise judged by timely_decisions: a charge is decided (order confirmed or money refunded)
    /// within this long, e.g. 30s [default: 2m, the checker's].
    #[arg(long, value_name = "DURATION", value_parser = parse_bound)]
    pub decide_within: Option<Duration>,
    /// Where the shop Stampede starts keeps its state: sqlite (a fresh <out>/shop.db, the default),
    /// sqlite:PATH (a fresh file there), postgres://user:password@host:port/database (Stampede's
    /// tables there are dropped first; another program's tables are refused) or memory. Not with
    /// --host.
    #[arg(long, default_value = "sqlite", value_parser = parse_store, conflicts_with = "host")]
    pub store: LoadStore,
    /// SQLite sync level of the shop Stampede starts: full or normal (see `stampede serve --help`;
    /// not with --host).
    #[arg(long, default_value = "full", value_parser = crate::serve::parse_sync, conflicts_with = "host")]
    pub sync: stampede_server::store::sqlite::SyncLevel,
    /// Most commands the SQLite store commits in one transaction (group commit); 1 commits, and
    /// syncs, each command on its own (not with --host).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=4096), conflicts_with = "host")]
    pub sqlite_batch: u32,
    /// Run the shop as a child process and kill it with SIGKILL this often during the load
    /// (e.g. 5s), restarting it on the same store; journeys retry with their keys and the audit
    /// judges what survived. Each kill is a fault in the history: sales it interrupts are at risk
    /// (excused from the progress invariants), nothing it loses is. Every kill is followed by a
    /// whole interval of load, so --duration must be more than twice it; not with --store memory.
    #[arg(long, value_name = "DURATION", value_parser = parse_bound, conflicts_with = "host")]
    pub kill_every: Option<Duration>,
    /// Admission limits of the shop Stampede starts (not with --host).
    #[command(flatten)]
    pub admission: crate::admission::AdmissionArgs,
    /// One of N load generators against one shop (on as many machines): run the I-th share
    /// of the whole open-loop schedule (its slots I, I+N, I+2N, … counted from 1, journeys
    /// numbered as in the whole, keys prefixed by the start and the shard), from --start-at.
    /// Writes its histograms and client evidence and defers the audit and the thresholds to
    /// `stampede report merge`, which judges them once on every shard; a shard exits 0 once
    /// its share is done. Needs --host, --psp, --rate and --start-at.
    #[arg(long, value_name = "I/N", requires_all = ["host", "psp", "rate", "start_at"])]
    pub shard: Option<stampede_reports::Shard>,
    /// When the schedule begins, in unix epoch milliseconds (e.g. `$(( $(date +%s) * 1000 + 30000 ))`,
    /// 30 s from now): give every shard the same, so their arrivals interleave into the one
    /// schedule. At most 10 s in the past (a late shard's first journeys count as late from
    /// their slots) and 1 h ahead.
    #[arg(long, value_name = "UNIX_MS", requires = "rate", value_parser = parse_start_at)]
    pub start_at: Option<u64>,
}

/// How far in the past `--start-at` may be: a shard started a little late
/// still runs its share, its first journeys counted late from their slots.
pub const START_AT_PAST_MS_MAX: u64 = 10_000;
/// How far ahead `--start-at` may be.
pub const START_AT_AHEAD_MS_MAX: u64 = 3_600_000;

/// `--start-at`: unix epoch ms, within the bounds of now.
fn parse_start_at(text: &str) -> Result<u64, String> {
    let at: u64 = text.trim().parse().map_err(|_| {
        format!("{text:?}: write unix epoch milliseconds, e.g. $(( $(date +%s) * 1000 + 30000 ))")
    })?;
    check_start_at(at, crate::unix_now_ms())?;
    Ok(at)
}

/// `--kill-every` must be able to kill: at least once in `duration` (a kill is
/// followed by a whole interval of load on the restarted shop, so the load
/// must last more than twice the interval), and on a store that outlives the
/// process (a memory store loses everything at each kill, by design).
fn check_kills(
    every: Option<Duration>,
    duration: Duration,
    store: &LoadStore,
) -> Result<(), String> {
    let Some(every) = every else {
        return Ok(());
    };
    if matches!(store, LoadStore::Memory) {
        return Err(
            "--kill-every with --store memory: a killed shop's memory is gone, so every kill loses what it acknowledged; use a SQLite or PostgreSQL store"
                .into(),
        );
    }
    if duration <= every * 2 {
        return Err(format!(
            "--kill-every {} ms with --duration {} ms would leave no room for a kill: each kill is followed by a whole interval of load, so the load must last more than twice the interval",
            every.as_millis(),
            duration.as_millis()
        ));
    }
    Ok(())
}

/// `at_ms` against the clock's `now_ms`: no more than
/// [`START_AT_PAST_MS_MAX`] behind, [`START_AT_AHEAD_MS_MAX`] ahead.
fn check_start_at(at_ms: u64, now_ms: u64) -> Result<(), String> {
    if at_ms + START_AT_PAST_MS_MAX < now_ms {
        let seconds = at_ms.saturating_mul(1000).abs_diff(now_ms) < START_AT_AHEAD_MS_MAX;
        return Err(format!(
            "{at_ms} is {} ms in the past (at most {START_AT_PAST_MS_MAX}){}: pick a start a little ahead of the shards' launch, the same for every shard",
            now_ms - at_ms,
            if seconds {
                "; it looks like seconds, write milliseconds"
            } else {
                ""
            }
        ));
    }
    if at_ms > now_ms + START_AT_AHEAD_MS_MAX {
        return Err(format!(
            "{at_ms} is {} ms ahead (at most {START_AT_AHEAD_MS_MAX}): is it in seconds, or a typo?",
            at_ms - now_ms
        ));
    }
    Ok(())
}

/// Where the shop a load run starts keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadStore {
    /// In memory.
    Memory,
    /// SQLite at this path, or `<out>/shop.db` when `None`; always fresh.
    Sqlite(Option<PathBuf>),
    /// The PostgreSQL database at this URL; Stampede's tables in it are dropped first.
    Postgres(String),
}

fn parse_store(text: &str) -> Result<LoadStore, String> {
    if PgOptions::is_url(text) {
        return Ok(LoadStore::Postgres(text.to_string()));
    }
    match text {
        "memory" => Ok(LoadStore::Memory),
        "sqlite" => Ok(LoadStore::Sqlite(None)),
        _ => match text.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => Ok(LoadStore::Sqlite(Some(PathBuf::from(path)))),
            _ => Err(format!(
                "{text:?}: write sqlite (a fresh <out>/shop.db), sqlite:PATH, \
                 postgres://user:password@host:port/database or memory"
            )),
        },
    }
}

/// Extra time after a restart during which sales count as at risk: a buyer
/// whose cart a kill interrupted may see it lapse (the hold) before she can
/// pay again.
const KILL_RECOVERY_MARGIN_MS: u64 = LOAD_RESERVATION_TTL_MS + 5_000;

/// The reservation TTL of the shop a load run starts for itself, and so the
/// hold it promises buyers (`Terms::hold_ms`): abandoned checkouts lapse
/// well within the default settle time.
pub const LOAD_RESERVATION_TTL_MS: u64 = 10_000;

/// A promised bound (or an interval): a duration above zero.
pub(crate) fn parse_bound(text: &str) -> Result<Duration, String> {
    let bound = parse_duration(text)?;
    if bound < Duration::from_millis(1) {
        return Err(format!("{text:?}: must be at least 1ms; write e.g. 10s"));
    }
    Ok(bound)
}

/// `--duration`: 1 s to 24 h, refused before anything starts.
pub(crate) fn parse_load_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&duration) {
        return Err(format!("{text:?}: load is offered for 1s to 24h"));
    }
    Ok(duration)
}

/// Longest hold `--hold` accepts: the settle time grows with it.
pub(crate) const HOLD_MAX: Duration = Duration::from_secs(3_600);

/// The settle time when `--settle` is not given.
const SETTLE_DEFAULT: Duration = Duration::from_secs(30);

/// How much longer than the hold the shop may take to settle by default:
/// the sweeper's round after the last abandoned cart lapses.
const SETTLE_AFTER_HOLD: Duration = Duration::from_secs(10);

/// `--hold`: a promised bound of at most [`HOLD_MAX`].
pub(crate) fn parse_hold(text: &str) -> Result<Duration, String> {
    let hold = parse_bound(text)?;
    if hold > HOLD_MAX {
        return Err(format!(
            "{text:?}: a hold longer than {}m would keep the audit waiting that long; write 60m or less",
            HOLD_MAX.as_secs() / 60
        ));
    }
    Ok(hold)
}

/// How long the shop may take to settle: `--settle` when given, else
/// [`SETTLE_DEFAULT`] or, for a longer known hold, the hold plus
/// [`SETTLE_AFTER_HOLD`] (a cart abandoned at the end of the load lapses
/// only then).
fn settle_time(settle: Option<Duration>, hold_ms: Option<u64>) -> Duration {
    settle.unwrap_or_else(|| {
        let after_hold = hold_ms.map_or(Duration::ZERO, |ms| {
            Duration::from_millis(ms).saturating_add(SETTLE_AFTER_HOLD)
        });
        SETTLE_DEFAULT.max(after_hold)
    })
}

/// A promised bound on the payment offer: no longer than a journey watches for it.
fn parse_offer_bound(text: &str) -> Result<Duration, String> {
    let bound = parse_bound(text)?;
    let limit = stampede_loadgen::journey::FOLLOW_LIMIT;
    if bound > limit {
        return Err(format!(
            "{text:?}: journeys watch for their payment offer for at most {}s, so a longer promise could not be witnessed; write {}s or less",
            limit.as_secs(),
            limit.as_secs()
        ));
    }
    Ok(bound)
}

/// The promises the audit holds the shop to: `hold_ms` the TTL Stampede
/// configured (`None` for a shop it did not start), the bounds the flags'
/// or the checker's defaults; a waitlisted buyer's by default the shop's own
/// bound on a wait for held stock (known only for a shop Stampede started).
fn terms(args: &LoadArgs, hold_ms: Option<u64>) -> stampede_core::Terms {
    let shop_waitlist = hold_ms.map(|hold| {
        stampede_core::ShopConfig {
            reservation_ttl_ms: Some(hold),
            ..stampede_core::ShopConfig::default()
        }
        .sold_out_wait_bound_ms()
    });
    let defaults = stampede_core::Terms::default();
    let ms = |d: Option<Duration>, default: u64| {
        d.map_or(default, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        })
    };
    stampede_core::Terms {
        hold_ms,
        offer_payment_ms: ms(args.offer_payment_within, defaults.offer_payment_ms),
        waitlist_offer_ms: args
            .offer_waitlisted_within
            .map(|d| ms(Some(d), 0))
            .or(shop_waitlist),
        decide_ms: ms(args.decide_within, defaults.decide_ms),
    }
}

/// `events` or `poll`.
/// `--http`: which HTTP the load generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// 2 with the shop Stampede starts, 1.1 with `--host`.
    Auto,
    /// HTTP/1.1.
    Http1,
    /// Cleartext HTTP/2 by prior knowledge.
    Http2,
}

fn parse_http(text: &str) -> Result<HttpVersion, String> {
    match text {
        "auto" => Ok(HttpVersion::Auto),
        "1.1" | "1" => Ok(HttpVersion::Http1),
        "2" => Ok(HttpVersion::Http2),
        _ => Err(format!("{text:?}: write auto, 1.1 or 2")),
    }
}

/// Whether the load speaks HTTP/2: as asked, or (auto) when Stampede starts
/// the shop and so knows it accepts HTTP/2.
fn speaks_http2(args: &LoadArgs) -> bool {
    match args.http {
        HttpVersion::Auto => args.host.is_none(),
        HttpVersion::Http1 => false,
        HttpVersion::Http2 => true,
    }
}

fn parse_follow(text: &str) -> Result<stampede_loadgen::Follow, String> {
    match text {
        "events" => Ok(stampede_loadgen::Follow::Events),
        "poll" => Ok(stampede_loadgen::Follow::Poll),
        _ => Err(format!("{text:?}: write events or poll")),
    }
}

/// An invariant's name, e.g. `no_stuck_orders`.
pub(crate) fn parse_invariant(text: &str) -> Result<stampede_core::Invariant, String> {
    stampede_core::Invariant::parse(text).ok_or_else(|| {
        let names: Vec<&str> = stampede_core::Invariant::ALL
            .iter()
            .map(|i| i.name())
            .collect();
        format!("unknown invariant {text:?}; one of: {}", names.join(", "))
    })
}

/// What `report` was asked to do: re-render or compare saved runs, or
/// (`report merge`) merge the shards of one sharded load.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    /// Merge the shards of one sharded load into one report.
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    /// Folders holding a `report.json` from `stampede load`; two or more are compared side by
    /// side (a folder named `merge` is written `./merge`).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where a comparison is written [default: stampede-out/load-compare].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `report`'s subcommands.
#[derive(clap::Subcommand)]
pub enum ReportCommand {
    /// Merge the shards of one sharded load (`stampede load --shard I/N --start-at T`) into
    /// one report, judged once.
    ///
    /// Adds the shards' HdrHistogram logs (latency.hlog) exactly, tag by tag and interval by
    /// interval, and reads every percentile from the sums; errors, shed answers and orders seen
    /// are summed from their reports. Thresholds are judged once, on the merged report: those
    /// given here, else the shards' own (which must agree). The audit is judged once too, on
    /// every shard's client evidence together with the shop's /admin/audit and the PSP's
    /// ledger, read now: give the shop with --host and --psp. Without them the audit is not
    /// judged and the merge fails, unless --no-audit says you meant it. Writes report.json,
    /// report.md, report.html, the merged latency.hlog and .hgrm files.
    ///
    /// Exit status: 0 the audit holds and every threshold passes, 1 otherwise, 2 bad input
    /// (shards of different runs, a part missing or given twice, unreadable files).
    /// Example: stampede report merge shard-1 shard-2 --host http://shop:8080 --psp http://psp:8081 --out merged
    Merge(crate::merge_load::MergeLoadArgs),
}

/// `20s`, `500ms`, `2m`, `1m30s`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration; write e.g. 20s, 500ms or 1m30s".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?}: {rest:?} needs a unit (ms, s, m or h)"))?;
        if digits == 0 {
            return Err(format!("{text:?}: expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            unit => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total > Duration::from_secs(86_400) {
        return Err(format!("{text:?} is longer than a day"));
    }
    Ok(total)
}

/// `500/s` or `500`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    let rate: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate; write e.g. 500/s"))?;
    if rate > 0.0 && rate <= 1_000_000.0 {
        Ok(rate)
    } else {
        Err(format!(
            "{text:?}: the rate must be above 0 and at most 1000000/s"
        ))
    }
}

fn parse_spike(text: &str) -> Result<Shape, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [at, length, factor] = parts[..] else {
        return Err(format!("{text:?}: write AT,FOR,FACTOR, e.g. 5s,2s,10"));
    };
    let factor: f64 = factor
        .trim_start_matches('x')
        .parse()
        .ok()
        .filter(|f: &f64| *f > 0.0 && *f <= 1000.0)
        .ok_or_else(|| format!("{text:?}: the factor must be a number in (0, 1000]"))?;
    Ok(Shape::Spike {
        at: parse_duration(at)?,
        length: parse_duration(length)?,
        factor,
    })
}

pub(crate) fn parse_threshold(text: &str) -> Result<Threshold, String> {
    text.parse()
}

pub(crate) fn parse_mix(text: &str) -> Result<Mix, String> {
    let mut mix = Mix::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: write NAME=P, e.g. double_click=0.2"))?;
        let p: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("{part:?}: the probability must be within 0..=1"))?;
        match name.trim() {
            "browse" => mix.browse = p,
            "double_click" => mix.double_click = p,
            "abandon" => mix.abandon = p,
            "hot" => mix.hot = p,
            "decline" => mix.decline = p,
            other => {
                return Err(format!(
                    "{other:?} is not one of browse, double_click, abandon, hot, decline"
                ));
            }
        }
    }
    Ok(mix)
}

/// `--host`: one or more comma-separated shop URLs → distinct `host:port`s, in order.
pub(crate) fn shop_hosts(urls: &str) -> Result<Vec<String>, String> {
    let mut hosts: Vec<String> = Vec::new();
    for url in urls.split(',') {
        let host = host_port(url)?;
        if hosts.contains(&host) {
            return Err(format!("--host names {host} twice"));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// `http://host:port` (or `host:port`) → `host:port`: a host (a name, an
/// IPv4 address or a bracketed IPv6 one) and a port of 1..=65535, nothing
/// else — every flag naming a service Stampede talks to reads it this way.
pub(crate) fn host_port(url: &str) -> Result<String, String> {
    let rest = url.trim().trim_end_matches('/');
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let usage = || format!("{url:?}: write http://host:port or host:port (plain HTTP, no path)");
    if rest.contains('/') || rest.contains('@') || rest.chars().any(char::is_whitespace) {
        return Err(usage());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(usage)?;
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.is_empty() || (!bracketed && host.contains([':', '[', ']'])) {
        return Err(usage());
    }
    match port.parse::<u16>() {
        Ok(1..) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(rest.to_string()),
        _ => Err(format!("{url:?}: the port must be 1 to 65535")),
    }
}

/// The catalog of the shop a load run starts for itself (`stampede serve
/// --catalog load`): the demo catalog with a scarce hot SKU and plenty of
/// everything else.
pub fn load_catalog() -> Vec<(stampede_core::Product, u64)> {
    let mut catalog = stampede_server::demo_catalog();
    for (product, stock) in &mut catalog {
        if product.sku.as_str() != stampede_loadgen::journey::HOT_SKU {
            *stock = 10_000_000;
        } else {
            *stock = 500;
        }
        product.per_customer_limit = None;
    }
    catalog
}

/// Job workers of the shop a load run starts.
const LOAD_WORKERS: u32 = 8;

/// The bound on undecided orders of the shop a load run starts (the reference
/// shop's own default is 5,000): that shop shares the machine with up to
/// 16,384 journeys in flight and decides ~500–1,100 orders/s on the 2-core
/// machine, so 2,000 keeps an admitted order's wait for its offer within
/// ~4 s of the 10 s promise; 5,000 broke the promise in 2 of 4 spike runs
/// (benches/README.md).
const LOAD_UNDECIDED_ORDERS_MAX: usize = 2_000;

/// The shop a load run starts for itself.
fn load_stack(
    design: stampede_server::Design,
    seed: u64,
    store: StoreChoice,
    admission: &crate::admission::AdmissionArgs,
) -> StackConfig {
    let mut config = StackConfig::demo(
        "127.0.0.1:0".parse().expect("a valid address"),
        crate::unix_now_ms(),
    );
    config.server.design = design;
    config.seed = seed;
    config.workers = LOAD_WORKERS;
    config.shop.reservation_ttl_ms = Some(LOAD_RESERVATION_TTL_MS);
    // Each journey in flight may follow its order over one events stream.
    config.server.max_watchers = stampede_loadgen::JOURNEYS_IN_FLIGHT_MAX as usize;
    admission
        .with_undecided_default(LOAD_UNDECIDED_ORDERS_MAX)
        .configure(&mut config);
    config.catalog = load_catalog();
    config.store = store;
    config
}

/// The store a load run's shop gets: a fresh SQLite file (an older Stampede
/// database there is deleted; any other file is refused), or memory.
async fn fresh_store(args: &LoadArgs, dir: &Path) -> Result<StoreChoice, String> {
    let path = match &args.store {
        LoadStore::Memory => return Ok(StoreChoice::Memory),
        LoadStore::Postgres(url) => {
            let options = PgOptions::new(url.clone());
            postgres::reset(&options).await.map_err(|e| e.to_string())?;
            return Ok(StoreChoice::Postgres(options));
        }
        LoadStore::Sqlite(path) => path.clone().unwrap_or_else(|| dir.join("shop.db")),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let existed = path.exists();
    sqlite::remove(&path).map_err(|e| e.to_string())?;
    if existed {
        eprintln!(
            "removed the Stampede database at {} (a load starts its shop on a fresh store)",
            path.display()
        );
    }
    Ok(StoreChoice::Sqlite(SqliteOptions {
        sync: args.sync,
        max_batch: args.sqlite_batch as usize,
        ..SqliteOptions::new(path)
    }))
}

/// The fake PSP of a `--kill-every` run, in this process (so it outlives
/// every kill of the shop), sending webhooks to `shop`.
async fn start_psp(
    seed: u64,
    shop: &str,
) -> Result<(String, Vec<tokio::task::JoinHandle<()>>), String> {
    let listener = stampede_server::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("cannot listen for the PSP: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let config = PspConfig {
        seed,
        webhook: Some(WebhookTarget {
            addr: shop.to_string(),
            path: "/v1/webhooks/psp".into(),
        }),
        secret: stampede_server::ServerConfig::default().webhook_secret,
        id_base: stampede_server::psp::id_base_at(crate::unix_now_ms()),
        ..PspConfig::default()
    };
    let clock = stampede_server::Clock::tokio(crate::unix_now_ms());
    let psp = Psp::new(config, clock, Connector::tokio()).map_err(|e| e.to_string())?;
    let delivery = tokio::spawn(Arc::clone(&psp).run_delivery());
    let served = tokio::spawn(async move {
        let router = stampede_server::psp::router(psp);
        if let Err(error) =
            stampede_server::serve_router(listener, router, std::future::pending()).await
        {
            tracing::error!(%error, "the PSP stopped");
        }
    });
    Ok((addr, vec![delivery, served]))
}

/// Starts `stampede serve` as a child process on a free loopback port, on
/// `store`, with the PSP at `psp`.
async fn start_child_shop(
    args: &LoadArgs,
    store: &StoreChoice,
    shop: &str,
    psp: &str,
    dir: &Path,
) -> Result<Arc<ShopProcess>, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let store = match store {
        StoreChoice::Memory => "memory".to_string(),
        StoreChoice::Sqlite(options) => format!("sqlite:{}", options.path.display()),
        StoreChoice::Postgres(options) => options.url.clone(),
    };
    let mut argv: Vec<String> = [
        "serve",
        "--addr",
        shop,
        "--psp",
        psp,
        "--store",
        &store,
        "--sync",
        &args.sync.to_string(),
        "--sqlite-batch",
        &args.sqlite_batch.to_string(),
        "--design",
        &args.design,
        "--workers",
        &LOAD_WORKERS.to_string(),
        "--seed",
        &args.seed.to_string(),
        "--reservation-ttl-secs",
        &(LOAD_RESERVATION_TTL_MS / 1000).to_string(),
        "--catalog",
        "load",
        "--admin-token",
        &args.admin_token,
        "--stop-when-stdin-closes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for set in &args.set {
        argv.extend(["--set".to_string(), set.clone()]);
    }
    argv.extend(
        args.admission
            .with_undecided_default(LOAD_UNDECIDED_ORDERS_MAX)
            .to_argv(),
    );
    ShopProcess::start(&program, argv, shop, &dir.join("shop.log")).await
}

/// A loopback port free right now (the child shop binds it, and binds it
/// again after each kill).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn progress_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40.cyan/blue}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

fn show(bar: &ProgressBar, p: Progress) {
    if p.settling {
        bar.set_position(1000);
        bar.set_message(format!(
            "settling and auditing ({} journeys, {} requests, {} errors)",
            p.journeys, p.requests, p.errors
        ));
        return;
    }
    bar.set_position((p.elapsed_ms * 1000 / p.duration_ms.max(1)).min(1000));
    bar.set_message(format!(
        "{:.0}/{:.0} s  {} journeys ({} done)  {} requests  {} errors",
        p.elapsed_ms as f64 / 1000.0,
        p.duration_ms as f64 / 1000.0,
        p.journeys,
        p.journeys_done,
        p.requests,
        p.errors
    ));
}

/// Writes report.json, report.md and report.html for one run.
pub fn write_report(dir: &Path, report: &LoadReport) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in [
        ("report.json", stampede_reports::render_json(report)),
        ("report.md", stampede_reports::render_markdown(report)),
        ("report.html", stampede_reports::render_html(report)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Descriptors one journey in flight may hold over HTTP/1.1: its connection,
/// both ends when the shop runs in this process, and a share of the pools'
/// spares.
const FDS_PER_JOURNEY: u64 = 3;
/// The same with the shop elsewhere (`--host`): only the client's end.
const FDS_PER_JOURNEY_REMOTE: u64 = 2;
/// Descriptors kept for the rest: the shop's store and PSP connections, the
/// PSP's listener, files written.
const FDS_RESERVED: u64 = 1_024;
/// Bounds of the default number of journeys in flight.
const IN_FLIGHT_DEFAULT_MIN: u32 = 64;
const IN_FLIGHT_DEFAULT_MAX: u32 = 16_384;

/// Seconds of the schedule's peak arrivals the default in-flight cap holds.
const IN_FLIGHT_PEAK_SECS: f64 = 10.0;

/// Descriptors one journey in flight holds of its own: over HTTP/2 none
/// (every journey shares one connection per host).
fn fds_per_journey(http2: bool, shop_in_process: bool) -> u64 {
    match (http2, shop_in_process) {
        (true, _) => 0,
        (false, true) => FDS_PER_JOURNEY,
        (false, false) => FDS_PER_JOURNEY_REMOTE,
    }
}

/// Journeys in flight that `descriptors` open files carry at `per_journey`
/// each (unbounded at 0).
fn carried_in_flight(descriptors: u64, per_journey: u64) -> u32 {
    let fit = descriptors
        .saturating_sub(FDS_RESERVED)
        .checked_div(per_journey)
        .unwrap_or(u64::MAX);
    u32::try_from(fit).unwrap_or(u32::MAX)
}

/// The default `--max-in-flight` for a process allowed `descriptors` open
/// files, `per_journey` of them held by each journey in flight, and a
/// schedule peaking at `peak_per_sec` journeys a second: an open loop's cap
/// is a safety valve for the generator's machine, not a throttle on the
/// offered load, so it holds 10 s of the peak's arrivals, as far as the
/// descriptors allow (within bounds).
fn default_in_flight(descriptors: u64, per_journey: u64, peak_per_sec: f64) -> u32 {
    let fit = carried_in_flight(descriptors, per_journey);
    // The float-to-int cast saturates (a NaN gives 0).
    let needed = (peak_per_sec * IN_FLIGHT_PEAK_SECS).ceil() as u32;
    fit.min(needed)
        .clamp(IN_FLIGHT_DEFAULT_MIN, IN_FLIGHT_DEFAULT_MAX)
}

/// The journeys in flight of an open-loop run: as asked, or as many as the
/// descriptors carry; a number past what they carry is warned about.
fn in_flight(args: &LoadArgs, rate: f64) -> u32 {
    let descriptors = crate::descriptor_limit();
    let per_journey = fds_per_journey(speaks_http2(args), args.host.is_none());
    let carried = carried_in_flight(descriptors, per_journey);
    let peak = match args.spike {
        Some(Shape::Spike { factor, .. }) => rate * factor.max(1.0),
        _ => rate,
    };
    match args.max_in_flight {
        Some(asked) if asked > carried => {
            eprintln!(
                "warning: --max-in-flight {asked} is more than this process's {descriptors} open files carry ({carried}); connections may fail with \"too many open files\" (--http 2 shares one connection per host)"
            );
            asked
        }
        Some(asked) => asked,
        None => default_in_flight(descriptors, per_journey, peak),
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, both listened for from the call
/// on (inside a runtime). Ctrl-C is taken with `ctrlc`,
/// here, before goose starts: goose takes Ctrl-C with `ctrlc` as well, to stop
/// only its own part gracefully (the run then went on to audit a load it had
/// cut short, and passed), and a process has one such handler, so goose's
/// then fails to install (it logs that) and Ctrl-C stops the whole run.
fn interrupted() -> impl std::future::Future<Output = ()> {
    // One pending Ctrl-C is all the run needs to hear: later ones are dropped.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let taken = ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    });
    let term = crate::serve::terminated();
    async move {
        let interrupt = async {
            match taken {
                Ok(()) => {
                    rx.recv().await;
                }
                Err(error) => {
                    eprintln!("cannot listen for Ctrl-C ({error})");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            biased;
            () = interrupt => {}
            () = term => {}
        }
    }
}

/// `stampede load`'s exit status when Ctrl-C or SIGTERM stopped it (as a shell
/// reports a process Ctrl-C ended).
const LOAD_INTERRUPTED: u8 = 130;

/// `stampede load`: exit 0 when the audit holds and every threshold passes, 1 otherwise,
/// [`LOAD_INTERRUPTED`] when stopped by a signal before its audit.
pub fn load(args: &LoadArgs) -> Result<u8, String> {
    check_kills(args.kill_every, args.duration, &args.store)?;
    if args.host.is_some() && !args.admission.is_default() {
        return Err(
            "--host: admission options (--max-undecided-orders and the like) set up the shop Stampede starts; give them to the `stampede serve` behind --host"
                .into(),
        );
    }
    let spec = DesignSpec::new(&args.design, &args.set)?;
    let (model, shape) = model_and_shape(args);
    let dir = args.out.clone().unwrap_or_else(|| match args.shard {
        Some(s) => PathBuf::from(format!(
            "stampede-out/load-shard-{}-of-{}",
            s.index, s.count
        )),
        None => PathBuf::from(format!("stampede-out/load-{}", spec.label())),
    });
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let run = async {
        let target = Target::start(args, &spec, &dir).await?;
        let config = load_config(args, &target, model, shape, &dir);
        let result = match config {
            Ok(config) => {
                let bar = progress_bar(args.json);
                let shown = bar.clone();
                let result = stampede_loadgen::run(config, move |p| show(&shown, p)).await;
                bar.finish_and_clear();
                result.map_err(|e| e.to_string())
            }
            Err(message) => Err(message),
        };
        target.stop().await;
        result
    };
    // Ctrl-C or SIGTERM stops the run where it is (a shop it started is killed as the run is
    // dropped): no audit, so no verdict.
    let stop = {
        let _entered = runtime.enter();
        interrupted()
    };
    let report = runtime.block_on(async {
        tokio::select! {
            biased;
            () = stop => None,
            report = run => Some(report),
        }
    });
    let Some(report) = report else {
        eprintln!(
            "interrupted: the load stopped before its audit, so there is no verdict; what is in {} is incomplete",
            dir.display()
        );
        return Ok(LOAD_INTERRUPTED);
    };
    let report = report?;
    write_report(&dir, &report)?;
    if args.json {
        println!("{}", stampede_reports::render_json(&report));
    } else {
        print!("{}", stampede_reports::render_terminal(&report));
        println!(
            "  wrote {}/report.{{html,md,json}} and the histogram logs",
            dir.display()
        );
    }
    // A shard's report is part of a verdict the merge gives.
    Ok(if report.passed() || args.shard.is_some() {
        0
    } else {
        1
    })
}

/// The arrival model (open loop with `--rate`, else closed) and its shape.
fn model_and_shape(args: &LoadArgs) -> (Model, Shape) {
    let model = match (args.users, args.rate) {
        (_, Some(rate)) => Model::Open {
            rate_per_sec: rate,
            max_in_flight: in_flight(args, rate),
        },
        (users, None) => Model::Closed {
            users: users.unwrap_or(50),
            ramp: args.ramp.unwrap_or(Duration::from_secs(1)),
        },
    };
    let shape = match (args.spike, args.ramp, &model) {
        (Some(spike), _, _) => spike,
        (None, Some(over), Model::Open { .. }) => Shape::Ramp { over },
        _ => Shape::Steady,
    };
    (model, shape)
}

/// The shop a load runs against: one started in-process, one started as a
/// child process to be killed (`--kill-every`), or a running one (`--host`).
struct Target {
    stack: Option<stampede_server::Stack>,
    shop: String,
    psp: String,
    replicas: Vec<String>,
    design: String,
    /// The audit's prices and stock when Stampede configured them.
    catalog: Option<Vec<(stampede_core::Sku, stampede_core::Cents, u64)>>,
    /// The hold promised to buyers, when Stampede configured it.
    hold_ms: Option<u64>,
    kills: Option<Kills>,
    psp_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Target {
    async fn start(args: &LoadArgs, spec: &DesignSpec, dir: &Path) -> Result<Target, String> {
        match &args.host {
            Some(urls) => Target::running(args, urls),
            None if args.kill_every.is_some() => Target::child(args, spec, dir).await,
            None => Target::in_process(args, spec, dir).await,
        }
    }

    /// A running shop (`--host`, maybe several replicas) and its PSP.
    fn running(args: &LoadArgs, urls: &str) -> Result<Target, String> {
        let mut replicas = shop_hosts(urls)?;
        let psp = match (&args.psp, &args.probe) {
            (Some(psp), _) => host_port(psp)?,
            (None, Some(_)) => String::new(),
            (None, None) => {
                return Err(
                    "--host needs --psp: shoppers confirm their payments at the shop's PSP"
                        .to_string(),
                );
            }
        };
        Ok(Target {
            stack: None,
            shop: replicas.remove(0),
            psp,
            replicas,
            design: stampede_loadgen::UNKNOWN_DESIGN.to_string(),
            catalog: None,
            hold_ms: args
                .hold
                .map(|hold| u64::try_from(hold.as_millis()).unwrap_or(u64::MAX)),
            kills: None,
            psp_tasks: Vec::new(),
        })
    }

    /// `stampede serve` as a child process, killed every `--kill-every`.
    async fn child(args: &LoadArgs, spec: &DesignSpec, dir: &Path) -> Result<Target, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let store = fresh_store(args, dir).await?;
        let shop = format!("127.0.0.1:{}", free_port()?);
        let (psp, psp_tasks) = start_psp(args.seed, &shop).await?;
        let child = start_child_shop(args, &store, &shop, &psp, dir).await?;
        let kills = args.kill_every.map(|every| Kills {
            every,
            shop: child,
            at_risk_after_ms: KILL_RECOVERY_MARGIN_MS,
        });
        let catalog = load_catalog()
            .iter()
            .map(|(p, stock)| (p.sku.clone(), p.price, *stock))
            .collect();
        Ok(Target {
            stack: None,
            shop,
            psp,
            replicas: Vec::new(),
            design: spec.label(),
            catalog: Some(catalog),
            hold_ms: Some(LOAD_RESERVATION_TTL_MS),
            kills,
            psp_tasks,
        })
    }

    /// The shop and its PSP in this process.
    async fn in_process(args: &LoadArgs, spec: &DesignSpec, dir: &Path) -> Result<Target, String> {
        let store = fresh_store(args, dir).await?;
        let stack_config = load_stack(spec.design, args.seed, store, &args.admission);
        // The audit's prices and stock: what Stampede configured, not what the shop says.
        let catalog = stack_config
            .catalog
            .iter()
            .map(|(p, stock)| (p.sku.clone(), p.price, *stock))
            .collect();
        // The hold promised to buyers: the TTL configured, whatever the design does with it.
        let hold_ms = stack_config.shop.reservation_ttl_ms;
        let stack = stampede_server::start(stack_config)
            .await
            .map_err(|e| format!("cannot start the shop: {e}"))?;
        Ok(Target {
            shop: stack.shop_addr.to_string(),
            psp: stack.psp_addr.clone(),
            stack: Some(stack),
            replicas: Vec::new(),
            design: spec.label(),
            catalog: Some(catalog),
            hold_ms,
            kills: None,
            psp_tasks: Vec::new(),
        })
    }

    /// Stops what the load started.
    async fn stop(self) {
        if let Some(stack) = self.stack
            && let Err(why) = stack.shutdown_checked().await
        {
            // The audit was read from the shop before it stopped; its file is what failed.
            eprintln!("warning: the shop's store did not close cleanly: {why}");
        }
        if let Some(kills) = self.kills {
            kills.shop.kill();
        }
        for task in self.psp_tasks {
            task.abort();
        }
    }
}

/// The load generator's configuration from the options and the target.
fn load_config(
    args: &LoadArgs,
    target: &Target,
    model: Model,
    shape: Shape,
    dir: &Path,
) -> Result<LoadConfig, String> {
    let mut config = LoadConfig::new(&target.shop, &target.psp, dir.to_path_buf());
    config.replicas = target.replicas.clone();
    config.admin_token = args.admin_token.clone();
    config.model = model;
    config.shape = shape;
    config.duration = args.duration;
    config.drain = args.drain;
    config.settle = settle_time(args.settle, target.hold_ms);
    config.mix = args.mix;
    config.follow = args.follow;
    config.http2 = speaks_http2(args);
    config.design = target.design.clone();
    config.seed = args.seed;
    config.kills = target.kills.clone();
    config.run_id = run_id(args);
    config.share = args
        .shard
        .map(|s| stampede_loadgen::schedule::Share::new(s.index, s.count))
        .transpose()?;
    config.start_at_unix_ms = args.start_at;
    config.thresholds = args.thresholds.clone();
    config.catalog = target.catalog.clone();
    config.terms = terms(args, target.hold_ms);
    config.skip = args
        .skip
        .iter()
        .fold(stampede_core::OptOuts::none(), |o, i| {
            o.skip(*i, "skipped by --skip")
        });
    if let Some(path) = &args.probe {
        if !path.starts_with('/') {
            return Err(format!("--probe {path:?}: the path must start with /"));
        }
        config.probe = Some(path.clone());
    }
    if !args.json {
        println!(
            "load against http://{} (psp http://{}) for {:?}; writing to {}",
            target.shop,
            target.psp,
            args.duration,
            dir.display()
        );
    }
    Ok(config)
}

/// The prefix of a run's keys and customer ids, unique per run against one
/// shop: the start (asked for, else now), and a shard's part.
fn run_id(args: &LoadArgs) -> String {
    let start = args.start_at.unwrap_or_else(crate::unix_now_ms);
    match args.shard {
        Some(s) => format!("lg{start}-s{}of{}", s.index, s.count),
        None => format!("lg{start}"),
    }
}

/// `stampede report`: re-renders saved runs; with several, compares them.
pub fn report(args: &ReportArgs) -> Result<u8, String> {
    if let Some(ReportCommand::Merge(merge)) = &args.command {
        return crate::merge_load::merge_load(merge);
    }
    let mut reports = Vec::new();
    for dir in &args.dirs {
        let path = dir.join("report.json");
        if !path.exists() && dir.join("trace.jsonl").is_file() {
            return Err(format!(
                "{}: a simulation's folder (summary.json, trace.jsonl), not a load's: its report is {}; `stampede explain {}` tells the story of a violation",
                dir.display(),
                dir.join("report.html").display(),
                dir.display()
            ));
        }
        let text = read_text_bounded(&path, stampede_reports::SUMMARY_BYTES_MAX)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let report =
            stampede_reports::parse_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        reports.push((dir.clone(), report));
    }
    if let [(dir, report)] = &reports[..] {
        write_report(dir, report)?;
        print!("{}", stampede_reports::render_terminal(report));
        println!("  re-rendered {}/report.{{html,md,json}}", dir.display());
        return Ok(if report.passed() { 0 } else { 1 });
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("stampede-out/load-compare"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let folders: Vec<String> = reports
        .iter()
        .map(|(d, _)| d.display().to_string())
        .collect();
    let all: Vec<LoadReport> = reports.into_iter().map(|(_, r)| r).collect();
    for (name, text) in [
        (
            "compare.html",
            stampede_reports::render_compare_html(&all, &folders),
        ),
        (
            "compare.md",
            stampede_reports::render_compare_markdown(&all, &folders),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if name == "compare.md" {
            print!("{text}");
        }
    }
    println!("  wrote {}/compare.{{html,md}}", dir.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_loop_needs_more_than_two_intervals_and_a_store_that_survives() {
        // Proves the bound on both sides: a load of exactly twice the interval is refused (no
        // kill could be followed by a whole interval), a millisecond more is taken; a memory
        // store is refused with any duration; no --kill-every asks nothing.
        let every = Some(Duration::from_secs(5));
        let sqlite = LoadStore::Sqlite(None);
        assert!(check_kills(every, Duration::from_secs(10), &sqlite).is_err());
        assert!(check_kills(every, Duration::from_millis(10_001), &sqlite).is_ok());
        let memory = check_kills(every, Duration::from_secs(60), &LoadStore::Memory).unwrap_err();
        assert!(memory.contains("--store memory"), "{memory}");
        assert!(check_kills(None, Duration::from_secs(1), &LoadStore::Memory).is_ok());
    }

    #[test]
    fn store_choices_parse_and_the_load_catalog_has_a_scarce_hot_sku() {
        // Proves: --store takes sqlite (a fresh file in the run's folder), sqlite:PATH or
        // memory, and nothing else; the catalog a load run sells (also `serve --catalog load`)
        // has 500 units of the hot SKU, plenty of the rest, and no per-customer limit.
        assert_eq!(parse_store("sqlite"), Ok(LoadStore::Sqlite(None)));
        assert_eq!(
            parse_store("sqlite:/tmp/a.db"),
            Ok(LoadStore::Sqlite(Some(PathBuf::from("/tmp/a.db"))))
        );
        assert_eq!(parse_store("memory"), Ok(LoadStore::Memory));
        for bad in ["sqlite:", "postgres", ""] {
            assert!(parse_store(bad).is_err(), "{bad:?} accepted");
        }
        let catalog = load_catalog();
        for (product, stock) in &catalog {
            let hot = product.sku.as_str() == stampede_loadgen::journey::HOT_SKU;
            assert_eq!(
                *stock,
                if hot { 500 } else { 10_000_000 },
                "{}",
                product.sku
            );
            assert_eq!(product.per_customer_limit, None);
        }
        assert!(
            catalog
                .iter()
                .any(|(p, _)| p.sku.as_str() == stampede_loadgen::journey::HOT_SKU)
        );
    }

    #[test]
    fn durations_rates_spikes_and_mixes_parse_or_say_why_not() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "20", "s", "5 weeks", "2d", "100000h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_rate("500/s").unwrap(), 500.0);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(
            parse_spike("5s,2s,10").unwrap(),
            Shape::Spike {
                at: Duration::from_secs(5),
                length: Duration::from_secs(2),
                factor: 10.0
            }
        );
        assert!(parse_spike("5s,2s").is_err());
        let mix = parse_mix("double_click=0.5, abandon=0").unwrap();
        assert_eq!(mix.double_click, 0.5);
        assert_eq!(mix.abandon, 0.0);
        assert!(parse_mix("tip=0.1").is_err());
        assert!(parse_mix("abandon=2").is_err());
        assert_eq!(
            host_port("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080"
        );
        assert!(host_port("https://shop.example:443").is_err());
    }

    #[test]
    fn an_address_is_a_host_and_a_port_of_1_to_65535() {
        // Proves: host:port with a name, IPv4 or bracketed IPv6 host is taken (with or without
        // http:// and a trailing slash); no port, port 0 or 65536, a sign, a path, userinfo, an
        // empty or unbracketed IPv6 host are refused with the form to write.
        for (given, taken) in [
            ("localhost:1", "localhost:1"),
            ("http://psp.internal:65535/", "psp.internal:65535"),
            ("[::1]:8081", "[::1]:8081"),
            (" 127.0.0.1:8080 ", "127.0.0.1:8080"),
        ] {
            assert_eq!(host_port(given).as_deref(), Ok(taken), "{given}");
        }
        for refused in [
            "nothost",
            "host:0",
            "host:65536",
            "host:+80",
            "host:",
            ":8080",
            "::1:8080",
            "[]:80",
            "h:80/x",
            "u@h:80",
            "h :80",
            "ftp://h:80",
        ] {
            assert!(host_port(refused).is_err(), "{refused}");
        }
        assert!(host_port("host:0").unwrap_err().contains("1 to 65535"));
    }

    /// `stampede load ARGS…` as clap parses it.
    fn load_args(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let argv = std::iter::once("load").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.load)
    }

    #[test]
    fn promise_flags_override_the_checkers_terms_and_refuse_bad_bounds() {
        // Proves: without flags the terms are the checker's defaults with the
        // hold Stampede configured (none for --host); --offer-payment-within
        // and --decide-within set the bounds in ms; a zero or malformed bound
        // is refused with a message that says how to write one.
        let defaults = stampede_core::Terms::default();
        let plain = load_args(&[]).unwrap();
        assert_eq!(
            terms(&plain, Some(LOAD_RESERVATION_TTL_MS)),
            stampede_core::Terms {
                hold_ms: Some(LOAD_RESERVATION_TTL_MS),
                waitlist_offer_ms: Some(12 * LOAD_RESERVATION_TTL_MS),
                ..defaults
            }
        );
        assert_eq!(terms(&plain, None), defaults);
        let waitlist = load_args(&["--offer-waitlisted-within", "45s"]).unwrap();
        assert_eq!(terms(&waitlist, None).waitlist_offer_ms, Some(45_000));
        assert_eq!(
            terms(&waitlist, Some(LOAD_RESERVATION_TTL_MS)).waitlist_offer_ms,
            Some(45_000)
        );
        let set = load_args(&["--offer-payment-within", "2s", "--decide-within", "1m30s"]).unwrap();
        assert_eq!(
            terms(&set, None),
            stampede_core::Terms {
                hold_ms: None,
                offer_payment_ms: 2_000,
                waitlist_offer_ms: None,
                decide_ms: 90_000,
            }
        );
        for (flag, bad, says) in [
            ("--offer-payment-within", "0s", "at least 1ms"),
            ("--offer-payment-within", "61s", "write 60s or less"),
            ("--decide-within", "10", "needs a unit"),
            ("--decide-within", "soon", "expected a number"),
        ] {
            let error = load_args(&[flag, bad]).err().expect("refused").to_string();
            assert!(
                error.contains(flag) && error.contains(says),
                "{flag} {bad}: {error}"
            );
        }
    }

    #[test]
    fn a_hold_is_given_only_for_a_running_shop_within_bounds_and_stretches_the_settle() {
        // Proves: --duration is refused at parse time outside 1s..=24h (nothing starts);
        // --hold needs --host and is accepted from 1ms to 60m, refused
        // outside; given, it is the hold the terms name (and so the waitlisted
        // buyers' bound, 12 holds); the settle time is 30s unless the hold plus
        // 10s is longer, and an explicit --settle always wins.
        for (duration, ok) in [
            ("999ms", false),
            ("1s", true),
            ("24h", true),
            ("24h1ms", false),
        ] {
            let parsed = load_args(&["--duration", duration]);
            assert_eq!(parsed.is_ok(), ok, "--duration {duration}");
        }
        let host = ["--host", "http://127.0.0.1:1", "--psp", "127.0.0.1:2"];
        let with = |extra: &[&str]| load_args(&[&host[..], extra].concat());
        let error = load_args(&["--hold", "10s"]).err().expect("refused");
        assert!(error.to_string().contains("--host"), "{error}");
        assert_eq!(
            with(&["--hold", "1ms"]).unwrap().hold,
            Some(Duration::from_millis(1))
        );
        assert_eq!(with(&["--hold", "60m"]).unwrap().hold, Some(HOLD_MAX));
        for (bad, says) in [("0s", "at least 1ms"), ("60m1ms", "write 60m or less")] {
            let error = with(&["--hold", bad]).err().expect("refused").to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let given = with(&["--hold", "15m"]).unwrap();
        let target = Target::running(&given, "http://127.0.0.1:1").unwrap();
        assert_eq!(target.hold_ms, Some(900_000));
        assert_eq!(
            terms(&given, target.hold_ms).waitlist_offer_ms,
            Some(12 * 900_000)
        );
        let unknown = Target::running(&with(&[]).unwrap(), "http://127.0.0.1:1").unwrap();
        assert_eq!(unknown.hold_ms, None);
        let secs = Duration::from_secs;
        assert_eq!(settle_time(None, None), secs(30));
        assert_eq!(
            settle_time(None, Some(20_000)),
            secs(30),
            "hold + 10s = 30s"
        );
        assert_eq!(
            settle_time(None, Some(20_001)),
            Duration::from_millis(30_001)
        );
        assert_eq!(settle_time(None, Some(900_000)), secs(910));
        assert_eq!(settle_time(Some(secs(5)), Some(900_000)), secs(5));
    }

    #[test]
    fn options_for_the_shop_stampede_starts_are_refused_with_host() {
        // Proves (found from outside: with --host they were dropped without a word): --set and
        // --sync are parse errors beside --host, admission options make `load` refuse before
        // anything runs; without --host all are taken.
        let host = ["--host", "http://127.0.0.1:1", "--psp", "127.0.0.1:2"];
        let with = |extra: &[&str]| load_args(&[&host[..], extra].concat());
        for extra in [
            ["--set", "intent_key=off"],
            ["--sync", "normal"],
            ["--sqlite-batch", "1"],
        ] {
            assert!(with(&extra).is_err(), "{extra:?}");
            assert!(load_args(&extra).is_ok(), "{extra:?} alone");
        }
        let admission = with(&["--max-undecided-orders", "5"]).unwrap();
        let refused = load(&admission).unwrap_err();
        assert!(refused.contains("admission options"), "{refused}");
        assert!(with(&[]).unwrap().admission.is_default());
        // A closed loop has no journeys in flight to cap.
        assert!(load_args(&["--users", "5", "--max-in-flight", "3"]).is_err());
        assert!(load_args(&["--rate", "5/s", "--max-in-flight", "3"]).is_ok());
        assert!(
            !load_args(&["--no-sold-out-fast-path"])
                .unwrap()
                .admission
                .is_default()
        );
    }

    #[test]
    fn a_shard_needs_a_shop_a_rate_and_a_start_within_bounds() {
        // Proves: --start-at is refused more than 10 s behind or 1 h ahead of
        // the clock and accepted at each bound; --shard needs --host, --psp,
        // --rate and --start-at, --start-at needs --rate; a shard's keys carry
        // the start and its part, so two shards never share a key prefix.
        let now = 1_800_000_000_000;
        assert!(check_start_at(now - START_AT_PAST_MS_MAX, now).is_ok());
        let late = check_start_at(now - START_AT_PAST_MS_MAX - 1, now).unwrap_err();
        assert!(
            late.contains("10001 ms in the past") && !late.contains("seconds"),
            "{late}"
        );
        let secs = check_start_at(now / 1000 + 5, now).unwrap_err();
        assert!(secs.contains("looks like seconds"), "{secs}");
        assert!(check_start_at(now + START_AT_AHEAD_MS_MAX, now).is_ok());
        let ahead = check_start_at(now + START_AT_AHEAD_MS_MAX + 1, now).unwrap_err();
        assert!(ahead.contains("ms ahead"), "{ahead}");
        let soon = (crate::unix_now_ms() + 60_000).to_string();
        let shop = [
            "--host",
            "http://127.0.0.1:1",
            "--psp",
            "http://127.0.0.1:2",
        ];
        let mut full: Vec<&str> = shop.to_vec();
        full.extend(["--rate", "10/s", "--start-at", &soon, "--shard", "2/3"]);
        let args = load_args(&full).unwrap();
        assert_eq!(args.shard.map(|s| (s.index, s.count)), Some((2, 3)));
        assert_eq!(run_id(&args), format!("lg{soon}-s2of3"));
        let shard = ["--shard", "2/3"];
        let rate = ["--rate", "10/s"];
        let start = ["--start-at", soon.as_str()];
        for (missing, given) in [
            ("--host and --psp", [&rate[..], &start, &shard].concat()),
            ("--psp", [&shop[..2], &rate, &start, &shard].concat()),
            ("--rate", [&shop[..], &start, &shard].concat()),
            ("--start-at", [&shop[..], &rate, &shard].concat()),
        ] {
            let error = load_args(&given).err().expect("refused").to_string();
            assert!(
                error.contains("required"),
                "--shard without {missing}: {error}"
            );
        }
        assert!(
            load_args(&["--start-at", &soon]).is_err(),
            "--start-at without --rate"
        );
        assert!(load_args(&["--rate", "1/s", "--start-at", "yesterday"]).is_err());
        assert!(load_args(&["--rate", "1/s", "--start-at", "1000"]).is_err());
    }

    #[test]
    fn shoppers_follow_events_unless_told_to_poll() {
        // Proves: journeys follow their orders' events streams by default,
        // poll when asked, and anything else is refused naming both ways.
        use stampede_loadgen::Follow;
        assert_eq!(load_args(&[]).unwrap().follow, Follow::Events);
        let poll = load_args(&["--follow", "poll"]).unwrap();
        assert_eq!(poll.follow, Follow::Poll);
        let events = load_args(&["--follow", "events"]).unwrap();
        assert_eq!(events.follow, Follow::Events);
        let error = load_args(&["--follow", "sse"])
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("write events or poll"), "{error}");
    }

    #[test]
    fn http2_with_the_shop_stampede_starts_and_http1_with_host_unless_told() {
        // Proves: --http auto speaks HTTP/2 only to a shop Stampede started
        // (it knows that one accepts it), 1.1 and 2 force either way, and
        // anything else is refused naming the choices.
        let own = load_args(&[]).unwrap();
        assert_eq!(own.http, HttpVersion::Auto);
        assert!(speaks_http2(&own));
        let host = load_args(&[
            "--host",
            "http://127.0.0.1:9",
            "--psp",
            "http://127.0.0.1:8",
        ]);
        assert!(!speaks_http2(&host.unwrap()));
        let forced = [
            "--host",
            "http://127.0.0.1:9",
            "--psp",
            "http://127.0.0.1:8",
            "--http",
            "2",
        ];
        assert!(speaks_http2(&load_args(&forced).unwrap()));
        assert!(!speaks_http2(&load_args(&["--http", "1.1"]).unwrap()));
        assert!(!speaks_http2(&load_args(&["--http", "1"]).unwrap()));
        let error = load_args(&["--http", "3"])
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("write auto, 1.1 or 2"), "{error}");
    }

    #[test]
    fn journeys_in_flight_default_to_what_the_descriptors_carry_within_bounds() {
        // Proves: over HTTP/1.1 the default is (descriptors − the reserve) /
        // descriptors per journey — three with the shop in this process, two
        // with --host — or 10 s of the schedule's peak (a spike's factor
        // included) if fewer, at least 64 and at most 16,384, each bound met
        // on both sides; over HTTP/2 descriptors do not bind.
        let any = f64::INFINITY;
        let (local, remote) = (fds_per_journey(false, true), fds_per_journey(false, false));
        assert_eq!((local, remote), (3, 2));
        assert_eq!(fds_per_journey(true, true), 0);
        assert_eq!(fds_per_journey(true, false), 0);
        assert_eq!(default_in_flight(20_000, local, any), 6_325);
        assert_eq!(default_in_flight(20_000, remote, any), 9_488);
        let at_min = FDS_RESERVED + 3 * 64;
        assert_eq!(default_in_flight(at_min, local, any), 64);
        assert_eq!(default_in_flight(at_min + 3, local, any), 65);
        assert_eq!(default_in_flight(at_min - 3, local, any), 64);
        assert_eq!(default_in_flight(0, local, any), 64);
        let at_max = FDS_RESERVED + 3 * 16_384;
        assert_eq!(default_in_flight(at_max, local, any), 16_384);
        assert_eq!(default_in_flight(at_max - 3, local, any), 16_383);
        assert_eq!(default_in_flight(at_max + 3, local, any), 16_384);
        assert_eq!(default_in_flight(u64::MAX, remote, any), 16_384);
        // HTTP/2: 10 s of the peak up to the bound, however few the descriptors.
        assert_eq!(default_in_flight(1_024, 0, any), 16_384);
        assert_eq!(default_in_flight(0, 0, 1_638.4), 16_384);
        assert_eq!(default_in_flight(0, 0, 1_638.25), 16_383);
        assert_eq!(carried_in_flight(0, 0), u32::MAX);
        // Ten seconds of the peak, when the descriptors carry more: 50/s → 500, 50.01/s → 501.
        assert_eq!(default_in_flight(20_000, local, 50.0), 500);
        assert_eq!(default_in_flight(20_000, local, 50.01), 501);
        assert_eq!(default_in_flight(20_000, local, 1.0), 64);
        assert_eq!(default_in_flight(20_000, local, 20_000.0), 6_325);
        let spike = load_args(&["--rate", "100/s", "--spike", "5s,2s,10"]).unwrap();
        assert_eq!(
            in_flight(&spike, 100.0),
            default_in_flight(crate::descriptor_limit(), 0, 1_000.0)
        );
        let steady = load_args(&["--rate", "100/s", "--http", "1.1"]).unwrap();
        assert_eq!(
            in_flight(&steady, 100.0),
            default_in_flight(crate::descriptor_limit(), local, 100.0)
        );
        assert_eq!(load_args(&[]).unwrap().max_in_flight, None);
        let asked = load_args(&["--max-in-flight", "100"]).unwrap();
        assert_eq!(in_flight(&asked, 1e6), 100);
    }
}
