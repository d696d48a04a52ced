//! Executing a [`Plan`] in a turmoil world.
//!
//! Hosts: `db` (the store, a log with a sync boundary: see [`crate::db`]; a
//! crash loses the writes not synced yet when the scenario says so),
//! `psp` (the fake PSP; webhooks go to `api-1`), `api-1..k` (the shop's
//! router over simulated TCP), `worker-1..m` (job workers, sweeper,
//! reconciler), and shopper client hosts. The driver steps the simulation
//! one tick at a time, applies planned faults when their time comes, syncs
//! the store's log every `faults.sync_interval_ms`, and watches the safety
//! invariants as it goes. After the last tick the history and the store's
//! final state go to the core's checker.
//!
//! For the progress invariants the history opens with the scenario's
//! promises (`Terms`), each shopper records its plan (`Wants`) when it
//! arrives, and a scenario with `faults.may_cost_sales` has each crash,
//! partition and PSP stall recorded as `SalesAtRisk` from its start until
//! [`crate::scenario::Timing::recovery_margin_ms`] after it heals.
//!
//! **When a run ends.** From the last arrival or fault (heal, restart and
//! stall end included), the driver looks between ticks every [`SETTLE_POLL_MS`]
//! whether the world has settled (`Shared::settled`: every shopper and the
//! attacker done, every order final, no live job, no parked webhook, no
//! reservation held, no PSP webhook due or in flight, and, with
//! reconciliation on, no money at the PSP for an order the shop has not
//! confirmed, which the reconciler would refund) and ends the
//! run then; a world that never settles runs to the planned end
//! ([`Plan::end_ms`]) plus [`SETTLE_EXTENSION_MS_MAX`], as it always did.
//! A settled world has nothing left to do, so it would be the same at any
//! later time; the checker judges it at the planned end at the earliest, so
//! a promise whose deadline falls after an early stop is judged exactly as
//! a full run would judge it. `RunStats::sim_ms` is the time simulated.

use crate::coverage::Coverage;
use crate::db::{DbStore, Log, SimJournal};
use crate::net::{
    HostStreams, SimListener, connector, connector_on, counting_connector, counting_connector_on,
};
use crate::plan::{Fault, Plan};
use crate::recorder::Recorder;
use crate::shopper::{self, ShopperCtx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stampede_core::{
    AuditSnapshot, Catalog, Cents, EventKind, History, IdempotencyLimits, Invariant, JourneyStep,
    LedgerKind, Millis, OptOuts, OrderStatus, Product, QueueLimits, RetryPolicy, ShopConfig,
    ShopState, Sku, Terms, Verdict, check_except,
};
use stampede_server::Clock;
use stampede_server::HttpClient;
use stampede_server::WorkerConfig;
use stampede_server::psp::{self, Psp, PspClient, PspConfig, WebhookTarget};
use stampede_server::store::remote::{RemoteConfig, RemoteStore, serve_connection};
use stampede_server::store::{MemoryStore, Store};
use stampede_server::{App, ServerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// Unix time of the simulation's epoch (fixed, so signatures are reproducible).
pub const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;
const SHOP_PORT: u16 = 8080;
const PSP_PORT: u16 = 8081;
const DB_PORT: u16 = 5432;
const WEBHOOK_SECRET: &[u8] = b"whsec_sim";

/// A safety violation seen while the run was going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveViolation {
    /// Which invariant.
    pub invariant: Invariant,
    /// Sim time it was first seen, ms.
    pub at_ms: u64,
    /// What was seen.
    pub detail: String,
}

/// Counts from a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// Client requests recorded.
    pub requests: u64,
    /// Orders created.
    pub orders: u64,
    /// Orders per final status.
    pub orders_by_status: BTreeMap<String, u64>,
    /// History events.
    pub events: u64,
    /// Faults applied.
    pub faults: u64,
    /// Ledger charges.
    pub charges: u64,
    /// Ledger refunds.
    pub refunds: u64,
    /// HTTP requests made inside the world (shoppers, shop → PSP, webhooks, the attacker).
    pub http_requests: u64,
    /// Store calls the store host answered or began (every API and worker host's).
    #[serde(default)]
    pub store_calls: u64,
    /// The recovery paths the run went through (late payments, refunds,
    /// cancelled intents, reconciler payments).
    #[serde(default)]
    pub coverage: Coverage,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The history, with the PSP ledger appended.
    pub history: History,
    /// The store's final state.
    pub audit: AuditSnapshot,
    /// One verdict per judged invariant.
    pub verdicts: Vec<Verdict>,
    /// SHA-256 of the history's JSON lines.
    pub trace_hash: String,
    /// Safety violations as first seen during the run.
    pub live_violations: Vec<LiveViolation>,
    /// Why the world had not settled by the end (live jobs, parked webhooks,
    /// reservations past their TTL, PSP deliveries still due); empty when it
    /// had. Liveness is judged either way.
    pub unsettled: Vec<String>,
    /// Counts.
    pub stats: RunStats,
}

impl RunResult {
    /// Did every judged invariant hold?
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| !v.is_violated())
    }

    /// The violated invariants.
    pub fn violated(&self) -> Vec<Invariant> {
        self.verdicts
            .iter()
            .filter(|v| v.is_violated())
            .map(|v| v.invariant)
            .collect()
    }
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario in the plan is invalid.
    #[error("invalid scenario: {0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// The simulator itself failed (a host returned an error, or time ran out).
    #[error("simulation failed: {0}")]
    Turmoil(String),
    /// Building the world failed.
    #[error("cannot build the world: {0}")]
    Setup(String),
}

/// Writes a history as JSON lines, one event a line, in order: the bytes
/// `trace.jsonl` holds and [`trace_hash`] hashes.
pub fn write_trace(history: &History, out: &mut impl std::io::Write) -> std::io::Result<()> {
    for event in history.events() {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The SHA-256 of a history's JSON lines ([`write_trace`]): equal histories,
/// equal hashes.
pub fn trace_hash(history: &History) -> String {
    /// Feeds what is written to the hash.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    write_trace(history, &mut hashing).expect("events serialize");
    hashing
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sim_clock(end: Millis) -> Clock {
    Clock::from_fn(EPOCH_UNIX_MS, move || {
        turmoil::sim_elapsed().map_or(end, |d| {
            Millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    })
}

fn shop_state(plan: &Plan) -> Result<ShopState, String> {
    let t = plan.scenario.timing;
    let config = ShopConfig {
        reservation_ttl_ms: plan
            .design
            .reservation_ttl
            .ttl_ms(Some(t.reservation_ttl_ms)),
        admission: plan
            .design
            .admission
            .limits(plan.scenario.admission.limits()),
        queue: QueueLimits {
            visibility_ms: t.job_visibility_ms,
            ..QueueLimits::default()
        },
        retry: RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 5_000,
            max_attempts: 12,
        },
        // A keyed request whose API host died mid-flight holds its lock until
        // this lapses; `/pay` is safe to run again (the PSP intent is keyed),
        // so a lock that outlived the client's timeout is presumed abandoned
        // and a customer's retry gets through while its cart is still held.
        idempotency: IdempotencyLimits {
            in_flight_timeout_ms: t.client_timeout_ms,
            ..IdempotencyLimits::default()
        },
        ..ShopConfig::default()
    };
    let products = plan
        .scenario
        .catalog
        .iter()
        .map(|p| -> Result<Product, String> {
            Ok(Product {
                sku: Sku::new(p.sku.clone()).map_err(|e| e.to_string())?,
                name: p.sku.clone(),
                price: Cents(p.price_cents),
                max_qty_per_order: p.max_qty_per_order,
                per_customer_limit: p.per_customer_limit,
            })
        });
    let mut state = ShopState::new(
        Catalog::new(products.collect::<Result<Vec<_>, _>>()?),
        config,
    );
    for p in &plan.scenario.catalog {
        state
            .stock(
                &Sku::new(p.sku.clone()).map_err(|e| e.to_string())?,
                p.stock,
                1,
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(state)
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        lease_wait_ms: 5_000,
        sweep_interval_ms: 200,
        sweep_batch: 1_000,
        reconcile_interval_ms: 1_000,
        reconcile_grace_ms: 2_000,
        reconcile_batch: 1_000,
    }
}

struct Shared {
    plan: Plan,
    http: Arc<AtomicU64>,
    recorder: Recorder,
    /// The db host's working state (read by the driver, the monitor and the audit).
    store: Arc<MemoryStore>,
    /// What the db host serves: `store`, replies held until synced.
    db: Arc<DbStore>,
    /// The db host's command log and sync boundary.
    log: Arc<Log>,
    psp: Arc<Psp>,
    clock: Clock,
    /// The streams of each host that can crash (db, api-*, worker-*), so a
    /// crash closes them in the order they were opened.
    streams: BTreeMap<String, Arc<HostStreams>>,
}

impl Shared {
    /// Has the world settled: nothing left that time passing could change?
    fn settled(&self, clients_running: usize) -> bool {
        // Money the PSP holds for an order the shop did not confirm: the reconciler refunds it.
        let held: Vec<_> = if self.plan.design.reconciliation {
            let intents = self.psp.intents().into_iter();
            intents
                .filter(|i| i.net_captured().0 > 0)
                .map(|i| i.order)
                .collect()
        } else {
            Vec::new()
        };
        clients_running == 0
            && self.psp.next_delivery_due().is_none()
            && self.psp.delivery_stats().in_flight == 0
            && self.store.read(|s| {
                let stats = s.stats();
                stats.jobs_live == 0
                    && stats.webhooks_parked == 0
                    && s.inventory().reservations().next().is_none()
                    && s.orders().all(|o| o.status().is_final())
                    && held.iter().all(|&id| {
                        s.order(id)
                            .is_none_or(|o| o.status() == OrderStatus::Confirmed)
                    })
            })
    }

    /// The streams of `host`, one that can crash.
    fn streams(&self, host: &str) -> &Arc<HostStreams> {
        self.streams
            .get(host)
            .unwrap_or_else(|| panic!("{host} is not a host that can crash"))
    }

    /// An HTTP client for a client host (shoppers, the attacker), with the
    /// client timeout, counting the requests it sends (a shopper keeps its
    /// connection alive, so connections would undercount them).
    fn client_http(&self) -> HttpClient {
        HttpClient::new(
            connector(),
            Duration::from_millis(self.plan.scenario.timing.client_timeout_ms),
        )
        .counting_requests(Arc::clone(&self.http))
    }

    /// The shop of the API or worker host `host`.
    fn app(&self, host: &str) -> Arc<App> {
        let t = self.plan.scenario.timing;
        let timeout = Duration::from_millis(t.backend_timeout_ms);
        let streams = self.streams(host);
        let store = RemoteStore::new(
            connector_on(streams),
            format!("db:{DB_PORT}"),
            RemoteConfig {
                request_timeout: timeout,
                max_connections: DB_CONNECTIONS_MAX,
            },
        );
        let psp = PspClient::new(
            // Opens one connection per request: counting them counts its requests.
            HttpClient::new(
                counting_connector_on(Arc::clone(&self.http), streams),
                timeout,
            ),
            format!("psp:{PSP_PORT}"),
        );
        let config = ServerConfig {
            design: self.plan.design,
            webhook_secret: WEBHOOK_SECRET.to_vec(),
            watch_poll_ms: WATCH_POLL_MS,
            sse_keep_alive_ms: sse_keep_alive_ms(&self.plan),
            key_lock_ms: self.plan.scenario.timing.client_timeout_ms,
            ..ServerConfig::default()
        };
        App::new(Arc::new(store), psp, self.clock.clone(), config)
    }
}

/// How often the shop's events streams send a keep-alive in a world where a
/// fault can silence a stream ([`Plan::streams_may_fall_silent`]), ms: a
/// crashed or cut-off API host sends nothing, so a shopper notices it from
/// the silence (two and a half keep-alives, [`stream_idle_ms`]) about as soon
/// as a polling shopper's request would time out. Elsewhere the streams keep
/// the shop's own default ([`stampede_server::SSE_KEEP_ALIVE_MS`]): ten
/// thousand open streams sending a comment every second cost more than the
/// rest of an idle world, and tell a shopper nothing.
pub const SSE_KEEP_ALIVE_FAULTS_MS: u64 = 1_000;

/// The events streams' keep-alive interval in the world of `plan`, ms.
pub fn sse_keep_alive_ms(plan: &Plan) -> u64 {
    if plan.streams_may_fall_silent() {
        SSE_KEEP_ALIVE_FAULTS_MS
    } else {
        stampede_server::SSE_KEEP_ALIVE_MS
    }
}

/// Longest a shopper waits for the next bytes of an open events stream
/// before giving it up and reconnecting: two and a half keep-alives, ms.
pub fn stream_idle_ms(plan: &Plan) -> u64 {
    sse_keep_alive_ms(plan) * 5 / 2
}
/// How often, after the last arrival and fault, the world looks whether it has settled, ms.
pub const SETTLE_POLL_MS: u64 = 250;
/// Longest the world runs past its planned end waiting to settle, ms.
pub const SETTLE_EXTENSION_MS_MAX: u64 = 60_000;
/// Longest a run may go past its planned end before it counts as failed
/// (turmoil's duration limit, and the driver's deadline), ms: well past
/// [`SETTLE_EXTENSION_MS_MAX`], so only a world whose client hosts never
/// return reaches it.
const OVERRUN_MS_MAX: u64 = 120_000;
/// Most pending connections per simulated listener: a flash sale opens many
/// connections at once, and turmoil's default of 64 would panic rather than refuse.
const TCP_PENDING_CONNECTIONS_MAX: usize = 65_536;
/// Most connections each API or worker host keeps open to the `db` host.
const DB_CONNECTIONS_MAX: usize = 16;
/// How often each API host's watcher hub reads the store's change feed while
/// an events stream is open, ms.
const WATCH_POLL_MS: u64 = 50;
/// How often the driver checks the live safety invariants ([`Monitor`]), ms of sim time.
const MONITOR_INTERVAL_MS: u64 = 100;

/// Latest simulated time a run of `plan` may reach before it counts as
/// failed, ms: [`OVERRUN_MS_MAX`] past the planned end, or past the last
/// shopper's planned act plus the settle time when a shopper means to think
/// longer than that (a think time the scenario allows is waited out, not a
/// failure). A limit only: a run that ends before it is not changed by it.
fn run_limit_ms(plan: &Plan) -> u64 {
    let acts_end = plan
        .last_planned_act_ms()
        .saturating_add(plan.scenario.timing.settle_ms);
    plan.end_ms().max(acts_end).saturating_add(OVERRUN_MS_MAX)
}

/// Builds the turmoil world: its hosts in a fixed order (db, psp, api-*,
/// worker-*, shopper clients, attacker), so a seed always makes the
/// same world.
fn build_sim(shared: &Arc<Shared>) -> (turmoil::Sim<'static>, Arc<AtomicUsize>) {
    let plan = &shared.plan;
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(plan.seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_UNIX_MS))
        .simulation_duration(Duration::from_millis(run_limit_ms(plan)))
        .tick_duration(Duration::from_millis(1))
        .tcp_capacity(TCP_PENDING_CONNECTIONS_MAX)
        .min_message_latency(Duration::from_millis(0))
        .max_message_latency(Duration::from_millis(plan.scenario.timing.latency_ms_max));
    let mut sim = builder.build();
    add_db_host(&mut sim, shared);
    add_psp_host(&mut sim, shared);
    add_api_hosts(&mut sim, shared);
    add_worker_hosts(&mut sim, shared);
    // Client hosts (shoppers, attacker) still running: the world has not settled before they end.
    let running = Arc::new(AtomicUsize::new(plan.hosts().shopper.len()));
    add_shopper_clients(&mut sim, shared, &running);
    add_attacker(&mut sim, shared, &running);
    (sim, running)
}

/// The `db` host: serves the store (replies held until synced) to every connection.
fn add_db_host(sim: &mut turmoil::Sim<'static>, shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    sim.host("db", move || {
        let store: Arc<dyn Store> = s.db.clone();
        let streams = Arc::clone(s.streams("db"));
        async move {
            let mut listener = SimListener::bind_on(DB_PORT, &streams).await?;
            loop {
                let (stream, _) = listener.accept().await;
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let _ = serve_connection(stream, store).await;
                });
            }
        }
    });
}

/// The `psp` host: the fake PSP's routes and its webhook deliveries.
fn add_psp_host(sim: &mut turmoil::Sim<'static>, shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    sim.host("psp", move || {
        let psp = Arc::clone(&s.psp);
        async move {
            tokio::spawn(Arc::clone(&psp).run_delivery());
            let listener = SimListener::bind(PSP_PORT).await?;
            // Routes built once, not per connection (every simulated request is a connection).
            axum::serve(listener, psp::router(psp).into_make_service()).await?;
            Ok(())
        }
    });
}

/// The `api-*` hosts: the shop's router, each with its own `App` (rebuilt on restart).
fn add_api_hosts(sim: &mut turmoil::Sim<'static>, shared: &Arc<Shared>) {
    for name in shared.plan.hosts().api {
        let s = Arc::clone(shared);
        let host = name.clone();
        sim.host(name.as_str(), move || {
            let app = s.app(&host);
            let streams = Arc::clone(s.streams(&host));
            async move {
                let listener = SimListener::bind_on(SHOP_PORT, &streams).await?;
                axum::serve(listener, stampede_server::router(app).into_make_service()).await?;
                Ok(())
            }
        });
    }
}

/// The `worker-*` hosts: job workers (each host's seeded apart), a sweeper and a reconciler.
fn add_worker_hosts(sim: &mut turmoil::Sim<'static>, shared: &Arc<Shared>) {
    for (i, name) in shared.plan.hosts().worker.into_iter().enumerate() {
        let s = Arc::clone(shared);
        let host = name.clone();
        sim.host(name.as_str(), move || {
            let app = s.app(&host);
            let per_host = s.plan.scenario.topology.workers_per_host;
            let seed = s.plan.seed ^ ((i as u64 + 1) << 40);
            async move {
                let config = worker_config();
                for w in 0..per_host {
                    tokio::spawn(stampede_server::run_job_worker(
                        Arc::clone(&app),
                        w,
                        seed,
                        config,
                    ));
                }
                tokio::spawn(stampede_server::run_sweeper(Arc::clone(&app), config));
                tokio::spawn(stampede_server::run_reconciler(Arc::clone(&app), config));
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

/// One client per shopper host, running its shoppers' plans side by side;
/// each counts itself out of `running` when its last shopper is done.
fn add_shopper_clients(
    sim: &mut turmoil::Sim<'static>,
    shared: &Arc<Shared>,
    running: &Arc<AtomicUsize>,
) {
    let plan = &shared.plan;
    let hosts = plan.hosts();
    for (h, name) in hosts.shopper.iter().enumerate() {
        let mine: Vec<_> = plan
            .shoppers
            .iter()
            .filter(|p| p.host as usize == h)
            .cloned()
            .collect();
        let ctx = ShopperCtx {
            http: shared.client_http(),
            api: hosts
                .api
                .iter()
                .map(|a| format!("{a}:{SHOP_PORT}"))
                .collect(),
            psp: PspClient::new(shared.client_http(), format!("psp:{PSP_PORT}")),
            recorder: shared.recorder.clone(),
            stream_idle_ms: stream_idle_ms(plan),
        };
        let running = Arc::clone(running);
        sim.client(name.as_str(), async move {
            let tasks: Vec<_> = mine
                .into_iter()
                .map(|p| tokio::spawn(shopper::run(ctx.clone(), p)))
                .collect();
            for task in tasks {
                let _ = task.await;
            }
            running.fetch_sub(1, Ordering::Relaxed);
            Ok(())
        });
    }
}

/// The `attacker` client, when the plan forges webhooks: each at its time,
/// recorded as a fault, sent to `api-1` on a task of its own, so a slow
/// network does not push later forgeries past the run's time limit (at most
/// [`crate::scenario::FORGED_WEBHOOKS_MAX`] tasks, each a connection).
fn add_attacker(sim: &mut turmoil::Sim<'static>, shared: &Arc<Shared>, running: &Arc<AtomicUsize>) {
    let forged: Vec<(u64, u64)> = shared
        .plan
        .faults
        .iter()
        .filter_map(|f| match f.fault {
            Fault::ForgedWebhook { order } => Some((f.at_ms, order)),
            _ => None,
        })
        .collect();
    if forged.is_empty() {
        return;
    }
    let http = shared.client_http();
    let api = format!("{}:{SHOP_PORT}", shared.plan.hosts().api[0]);
    let recorder = shared.recorder.clone();
    let running = Arc::clone(running);
    running.fetch_add(1, Ordering::Relaxed);
    sim.client("attacker", async move {
        let mut sent = Vec::with_capacity(forged.len());
        for (n, (at_ms, order)) in forged.into_iter().enumerate() {
            let now = crate::recorder::sim_now().0;
            if at_ms > now {
                tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
            }
            recorder.push(EventKind::Fault {
                what: format!("forged webhook for ord_{order}"),
            });
            let (http, api) = (http.clone(), api.clone());
            sent.push(tokio::spawn(async move {
                shopper::forge_webhook(&http, &api, order, n).await;
            }));
        }
        for task in sent {
            let _ = task.await;
        }
        running.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    });
}

/// When the driver looks whether the world has settled (module docs): just
/// after the last arrival and fault, then every [`SETTLE_POLL_MS`], and at the
/// planned end plus [`SETTLE_EXTENSION_MS_MAX`] at the latest. The driver
/// does this itself between ticks rather than from a host of its own: every
/// host is stepped every tick, and a host that only sleeps cost a whole
/// host's share of each tick.
struct SettleWatch {
    next: u64,
    give_up: u64,
    over: bool,
}

impl SettleWatch {
    fn of(plan: &Plan) -> SettleWatch {
        SettleWatch {
            next: plan.faults_end_ms().max(plan.last_arrival_ms()) + 1,
            give_up: plan.end_ms() + SETTLE_EXTENSION_MS_MAX,
            over: false,
        }
    }

    /// Called after each tick with the time simulated so far: whether the
    /// wait is over, the world settled or given up on. `settled` is asked
    /// only when a look is due.
    fn after_tick(&mut self, now: u64, settled: impl FnOnce() -> bool) -> bool {
        if !self.over && now >= self.next {
            if now >= self.give_up || settled() {
                self.over = true;
            } else {
                self.next = now + SETTLE_POLL_MS.min(self.give_up - now);
            }
        }
        self.over
    }
}

/// Watches the safety invariants that are cheap to judge while the run goes.
struct Monitor {
    received: BTreeMap<Sku, u64>,
    seen: Vec<LiveViolation>,
}

impl Monitor {
    /// A monitor that knows each product's stock as the scenario received it.
    fn new(plan: &Plan) -> Monitor {
        Monitor {
            received: plan
                .scenario
                .catalog
                .iter()
                .filter_map(|p| Some((Sku::new(p.sku.clone()).ok()?, p.stock)))
                .collect(),
            seen: Vec::new(),
        }
    }

    fn check(&mut self, store: &MemoryStore, psp: &Psp, now: u64) {
        // Stock levels only: the shop's full stats walk every order.
        let stock = store.read(|s| s.inventory().levels());
        for (sku, level) in &stock {
            let received = self.received.get(sku).copied().unwrap_or(0);
            if level.sold > received {
                self.note(
                    Invariant::NoOversell,
                    now,
                    format!("{sku}: {} sold of {received} received", level.sold),
                );
            }
            if !level.is_conserved() || level.received != received {
                self.note(
                    Invariant::StockConserved,
                    now,
                    format!("{sku}: {level:?}, {received} received"),
                );
            }
        }
        let mut charges: BTreeMap<_, u32> = BTreeMap::new();
        for entry in psp.ledger().iter().filter(|e| e.kind == LedgerKind::Charge) {
            *charges.entry(entry.order).or_default() += 1;
        }
        if let Some((order, n)) = charges.iter().find(|(_, n)| **n > 1) {
            self.note(
                Invariant::SingleCharge,
                now,
                format!("{order} charged {n} times"),
            );
        }
    }

    fn note(&mut self, invariant: Invariant, at_ms: u64, detail: String) {
        if !self.seen.iter().any(|v| v.invariant == invariant) {
            self.seen.push(LiveViolation {
                invariant,
                at_ms,
                detail,
            });
        }
    }
}

/// Runs a plan to the end and judges it: builds the world, drives it, judges what it left.
pub fn run(plan: &Plan) -> Result<RunResult, SimError> {
    plan.scenario.validate()?;
    let end = plan.end_ms();
    let clock = sim_clock(Millis(end));
    let recorder = Recorder::default();
    let state = shop_state(plan).map_err(SimError::Setup)?;
    open_history(&recorder, plan)?;
    let shared = Arc::new(build_shared(plan, state, clock, &recorder)?);
    let (mut sim, running) = build_sim(&shared);
    let mut monitor = Monitor::new(plan);
    let outcome = drive(&mut sim, &shared, &running, &recorder, &mut monitor);
    // The world stops once settled, or runs past its planned end while it
    // settles; it is judged at the planned end at the earliest (module docs).
    let simulated = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
    drop(sim);
    outcome?;
    Ok(judge(&shared, &recorder, monitor, simulated))
}

/// Opens the history with what holds before anyone acts: the scenario's
/// promises, which the progress invariants judge against, and each
/// product's price and stock.
fn open_history(recorder: &Recorder, plan: &Plan) -> Result<(), SimError> {
    let t = plan.scenario.timing;
    // The hold is the scenario's TTL whatever the design does with it: a
    // design that expires carts sooner breaks the promise.
    recorder.push_at(
        Millis(0),
        EventKind::Terms(Terms {
            hold_ms: Some(t.reservation_ttl_ms),
            offer_payment_ms: t.offer_payment_within_ms,
            // Scenarios promise one offer bound to every buyer (a flash sale's covers its waitlist).
            waitlist_offer_ms: None,
            decide_ms: t.decide_within_ms,
        }),
    );
    for p in &plan.scenario.catalog {
        let sku = Sku::new(p.sku.clone()).map_err(|e| SimError::Setup(e.to_string()))?;
        recorder.push_at(
            Millis(0),
            EventKind::Listed {
                sku: sku.clone(),
                price: Cents(p.price_cents),
                limit: p.per_customer_limit,
            },
        );
        recorder.push_at(Millis(0), EventKind::Stocked { sku, qty: p.stock });
    }
    Ok(())
}

/// What every host shares: the store behind its log, and the PSP.
fn build_shared(
    plan: &Plan,
    state: ShopState,
    clock: Clock,
    recorder: &Recorder,
) -> Result<Shared, SimError> {
    let log = Log::new(
        &state,
        plan.scenario.faults.lose_unsynced_tail,
        recorder.clone(),
    );
    let store = Arc::new(MemoryStore::journaled(
        state,
        clock.clone(),
        Box::new(SimJournal(Arc::clone(&log))),
    ));
    let db_store = Arc::new(DbStore::new(
        Arc::clone(&store),
        Arc::clone(&log),
        plan.design.commit,
    ));
    let http = Arc::new(AtomicU64::new(0));
    let psp = Psp::new(
        psp_config(plan),
        clock.clone(),
        counting_connector(Arc::clone(&http)),
    )
    .map_err(|e| SimError::Setup(e.to_string()))?;
    Ok(Shared {
        plan: plan.clone(),
        http,
        recorder: recorder.clone(),
        store,
        db: db_store,
        log,
        psp,
        clock,
        streams: crashable_hosts(plan),
    })
}

/// A [`HostStreams`] for each host a plan can crash: db, api-*, worker-*.
fn crashable_hosts(plan: &Plan) -> BTreeMap<String, Arc<HostStreams>> {
    let hosts = plan.hosts();
    std::iter::once("db".to_string())
        .chain(hosts.api)
        .chain(hosts.worker)
        .map(|host| (host, HostStreams::new()))
        .collect()
}

/// The fake PSP: webhooks to `api-1`, duplicated and delayed as the scenario says.
fn psp_config(plan: &Plan) -> PspConfig {
    let hooks = plan.scenario.faults.webhooks;
    PspConfig {
        seed: plan.seed,
        webhook: Some(WebhookTarget {
            addr: format!("api-1:{SHOP_PORT}"),
            path: stampede_server::WEBHOOK_PATH.into(),
        }),
        secret: WEBHOOK_SECRET.to_vec(),
        // No extra copies is no duplication, said plainly (the copies below are held to at
        // least one, which the PSP's validation asks of a duplicating configuration).
        duplicate_probability: if hooks.extra_copies_max == 0 {
            0.0
        } else {
            hooks.duplicate_probability
        },
        max_extra_copies: hooks.extra_copies_max.max(1),
        min_extra_copies: hooks
            .extra_copies_min
            .clamp(1, hooks.extra_copies_max.max(1)),
        delay_ms_min: 0,
        delay_ms_max: hooks.delay_ms_max,
        request_timeout_ms: plan.scenario.timing.backend_timeout_ms,
        ..PspConfig::default()
    }
}

/// Judges the world a run left after `simulated` ms: the store's final
/// state, the history with the PSP ledger merged in, every invariant, and
/// the counts.
fn judge(shared: &Shared, recorder: &Recorder, monitor: Monitor, simulated: u64) -> RunResult {
    let plan = &shared.plan;
    let ended = simulated.max(plan.end_ms());
    let audit = shared.store.snapshot().audit(Millis(ended));
    let mut history = recorder.history();
    let (charges, refunds) = merge_ledger(&mut history, &shared.psp);
    let mut unsettled = audit.unsettled();
    if let Some(due) = shared.psp.next_delivery_due() {
        unsettled.push(format!("a webhook delivery still due at {due}"));
    }
    let verdicts: Vec<Verdict> = check_except(&history, &audit, &opt_outs(&plan.scenario));
    let stats = run_stats(shared, &history, &audit, simulated, (charges, refunds));
    RunResult {
        unsettled,
        trace_hash: trace_hash(&history),
        history,
        audit,
        verdicts,
        live_violations: monitor.seen,
        stats,
    }
}

/// Appends the PSP's ledger to the history in ledger order; returns the
/// number of charges and of refunds.
fn merge_ledger(history: &mut History, psp: &Psp) -> (u64, u64) {
    let mut ledger = psp.ledger();
    ledger.sort_by_key(|e| e.seq);
    let (mut charges, mut refunds) = (0, 0);
    for entry in ledger {
        match entry.kind {
            LedgerKind::Charge => charges += 1,
            LedgerKind::Refund => refunds += 1,
        }
        history.push(entry.at, EventKind::Ledger(entry));
    }
    (charges, refunds)
}

/// The run's counts; `(charges, refunds)` as [`merge_ledger`] counted them.
fn run_stats(
    shared: &Shared,
    history: &History,
    audit: &AuditSnapshot,
    simulated: u64,
    (charges, refunds): (u64, u64),
) -> RunStats {
    let mut orders_by_status = BTreeMap::new();
    for order in &audit.orders {
        *orders_by_status
            .entry(order.status().to_string())
            .or_default() += 1;
    }
    let events = history.events();
    RunStats {
        sim_ms: simulated,
        requests: events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Request { .. }))
            .count() as u64,
        orders: audit.orders.len() as u64,
        orders_by_status,
        events: events.len() as u64,
        faults: events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Fault { .. }))
            .count() as u64,
        charges,
        refunds,
        http_requests: shared.http.load(Ordering::Relaxed),
        store_calls: shared.db.calls(),
        coverage: Coverage::of(history, &shared.psp.intents()),
    }
}

/// A scenario that lists `invariants` opts out of the others: they come back
/// not judged, saying so, instead of vanishing from the verdicts.
fn opt_outs(scenario: &crate::scenario::Scenario) -> OptOuts {
    let selected: Vec<Invariant> = scenario
        .invariants
        .iter()
        .filter_map(|n| Invariant::parse(n))
        .collect();
    if selected.is_empty() {
        return OptOuts::none();
    }
    Invariant::ALL
        .into_iter()
        .filter(|i| !selected.contains(i))
        .fold(OptOuts::none(), |o, i| {
            o.skip(i, "not selected by the scenario's `invariants` list")
        })
}

/// Planned actions the driver takes at a time.
enum Action {
    Crash(String, u64),
    Restart(String),
    Partition(String, String, u64),
    Repair(String, String),
    PspStall(u64),
}

/// The driver's actions by time; at one time, in the order they were planned or scheduled.
struct Agenda {
    due: BTreeMap<(u64, u64), Action>,
    /// The last tie-breaker given: planned faults take `0..faults.len()`.
    seq: u64,
}

impl Agenda {
    /// The plan's faults the driver carries out (the attacker forges webhooks itself).
    fn of(plan: &Plan) -> Agenda {
        let mut due = BTreeMap::new();
        for (i, f) in plan.faults.iter().enumerate() {
            let action = match &f.fault {
                Fault::Crash { host, down_ms } => Action::Crash(host.clone(), *down_ms),
                Fault::Partition { a, b, duration_ms } => {
                    Action::Partition(a.clone(), b.clone(), *duration_ms)
                }
                Fault::PspStall { duration_ms } => Action::PspStall(*duration_ms),
                // The attacker client carries these out itself.
                Fault::ForgedWebhook { .. } => continue,
            };
            due.insert((f.at_ms, i as u64), action);
        }
        Agenda {
            due,
            seq: plan.faults.len() as u64,
        }
    }

    /// The first action due at `now` or before, taken off the agenda.
    fn pop_due(&mut self, now: u64) -> Option<Action> {
        let entry = self.due.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    /// Schedules `action` at `at_ms`, after everything already due then.
    fn schedule(&mut self, at_ms: u64, action: Action) {
        self.seq += 1;
        self.due.insert((at_ms, self.seq), action);
    }
}

/// Steps the world one tick at a time until it has settled and every
/// client host has returned ([`SettleWatch`]):
/// planned faults when their time comes, a log sync every
/// `faults.sync_interval_ms`, a safety check every [`MONITOR_INTERVAL_MS`].
fn drive(
    sim: &mut turmoil::Sim<'static>,
    shared: &Shared,
    running: &AtomicUsize,
    recorder: &Recorder,
    monitor: &mut Monitor,
) -> Result<(), SimError> {
    let plan = &shared.plan;
    let mut agenda = Agenda::of(plan);
    let sync_every = plan.scenario.faults.sync_interval_ms.max(1);
    let deadline = run_limit_ms(plan);
    let mut next_sync = sync_every;
    let mut next_check = MONITOR_INTERVAL_MS;
    let mut settle = SettleWatch::of(plan);
    loop {
        let now = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
        while let Some(action) = agenda.pop_due(now) {
            apply(sim, shared, recorder, now, action, &mut agenda);
        }
        if now >= next_sync {
            shared.log.sync(&shared.store);
            next_sync = now + sync_every;
        }
        if now >= next_check {
            monitor.check(&shared.store, &shared.psp, now);
            next_check = now + MONITOR_INTERVAL_MS;
        }
        // turmoil reports whether every client host (shoppers, attacker) has returned.
        let clients_done = sim.step().map_err(|e| SimError::Turmoil(e.to_string()))?;
        let simulated = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
        let waited = settle.after_tick(simulated, || {
            shared.settled(running.load(Ordering::Relaxed))
        });
        if waited && clients_done {
            return Ok(());
        }
        if now > deadline {
            return Err(SimError::Turmoil("the run did not finish".into()));
        }
    }
}

/// Runs `crash`, which drops the tasks of `host`, with the host's streams
/// closing in the order they were opened ([`HostStreams`]).
fn crashing(shared: &Shared, host: &str, crash: impl FnOnce()) {
    let streams = shared.streams(host);
    streams.crash_begins();
    crash();
    let late = streams.crash_ends();
    debug_assert_eq!(late, 0, "{host}'s streams outlived its tasks");
}

/// Carries out one action at `now`, records it as a fault, and schedules
/// the heal of a fault that starts here.
fn apply(
    sim: &mut turmoil::Sim<'static>,
    shared: &Shared,
    recorder: &Recorder,
    now: u64,
    action: Action,
    agenda: &mut Agenda,
) {
    let fault = |what: String| recorder.push_at(Millis(now), EventKind::Fault { what });
    let starts = |what: String, length_ms: u64, steps: Vec<JourneyStep>| {
        fault_starts(shared, recorder, now, what, length_ms, steps);
    };
    match action {
        Action::Crash(host, down_ms) => {
            crashing(shared, &host, || sim.crash(host.as_str()));
            let steps = steps_cut_by(&[&host]);
            if host == "db" && shared.plan.scenario.faults.lose_unsynced_tail {
                let lost = shared.log.lose_unsynced_tail(&shared.store);
                starts(
                    format!("crash {host} ({lost} unsynced writes lost) for {down_ms} ms"),
                    down_ms,
                    steps,
                );
            } else {
                starts(format!("crash {host} for {down_ms} ms"), down_ms, steps);
            }
            agenda.schedule(now + down_ms.max(1), Action::Restart(host));
        }
        Action::Restart(host) => {
            // A host whose crashes overlap is still up when the first one's
            // restart comes: turmoil bounces it, dropping its tasks as a crash does.
            crashing(shared, &host, || sim.bounce(host.as_str()));
            fault(format!("restart {host}"));
        }
        Action::Partition(a, b, ms) => {
            sim.partition(a.as_str(), b.as_str());
            let steps = steps_cut_by(&[&a, &b]);
            starts(format!("partition {a} <-> {b} for {ms} ms"), ms, steps);
            agenda.schedule(now + ms.max(1), Action::Repair(a, b));
        }
        Action::Repair(a, b) => {
            sim.repair(a.as_str(), b.as_str());
            fault(format!("repair {a} <-> {b}"));
        }
        Action::PspStall(ms) => {
            shared.psp.stall_responses_until(Millis(now + ms));
            // An express checkout is charged as its payment is offered.
            let steps = vec![JourneyStep::Offer, JourneyStep::Payment];
            starts(format!("psp answers held back for {ms} ms"), ms, steps);
        }
    }
}

/// The steps of a buyer's journey that a crash of one host, or a cut
/// between two, can cost. The workers reserve, offer payment (creating the
/// intent at the PSP) and finalize, talking to the db and the PSP; the API
/// answers every client request over the db, and takes `/pay` and the PSP's
/// webhooks. So a worker's crash or cut costs offers and payments, never an
/// answer; a cut between the API and the PSP costs payments alone; anything
/// else (the API or the db down, clients cut from the API) costs every step.
fn steps_cut_by(hosts: &[&str]) -> Vec<JourneyStep> {
    let role = |host: &str| host.split('-').next().unwrap_or(host).to_string();
    let mut roles: Vec<String> = hosts.iter().map(|h| role(h)).collect();
    roles.sort();
    match roles.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["worker"] | ["db", "worker"] | ["psp", "worker"] => {
            vec![JourneyStep::Offer, JourneyStep::Payment]
        }
        ["api", "psp"] => vec![JourneyStep::Payment],
        _ => JourneyStep::all(),
    }
}

/// Records a fault that starts at `now` and lasts `length_ms`; when the
/// scenario allows its faults to cost sales, also records it as at risk,
/// for the journey steps it can cost, until it heals plus the recovery
/// margin.
fn fault_starts(
    shared: &Shared,
    recorder: &Recorder,
    now: u64,
    what: String,
    length_ms: u64,
    steps: Vec<JourneyStep>,
) {
    recorder.push_at(Millis(now), EventKind::Fault { what: what.clone() });
    let scenario = &shared.plan.scenario;
    if scenario.faults.may_cost_sales {
        recorder.push_at(
            Millis(now),
            EventKind::SalesAtRisk {
                from: Millis(now),
                until: Millis(now + length_ms + scenario.timing.recovery_margin_ms()),
                fault: what,
                steps,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_may_last_as_long_as_its_shoppers_mean_to_think() {
        // Proves: the run's limit is the planned end plus the overrun while every shopper acts
        // within it, and grows to cover a shopper who means to think longer (its arrival, its
        // think time, the settle time, then the overrun): a think time the scenario allows is
        // waited out instead of failing the run.
        let mut scenario = crate::scenarios::smoke();
        scenario.shoppers.pay_delay_ms_max = 0;
        let mut plan = Plan::generate(&scenario, stampede_server::Design::reference(), 1);
        assert_eq!(run_limit_ms(&plan), plan.end_ms() + OVERRUN_MS_MAX);
        let shopper = plan
            .shoppers
            .iter_mut()
            .find(|s| matches!(s.intent, crate::plan::Intent::Pay { .. }))
            .expect("a paying shopper");
        shopper.intent = crate::plan::Intent::Pay {
            delay_ms: 200_000,
            decline: false,
            double_pay: false,
        };
        let acts_until = shopper.arrive_ms + 200_000;
        assert_eq!(plan.last_planned_act_ms(), acts_until);
        assert!(acts_until + plan.scenario.timing.settle_ms > plan.end_ms());
        assert_eq!(
            run_limit_ms(&plan),
            acts_until + plan.scenario.timing.settle_ms + OVERRUN_MS_MAX
        );
    }

    #[test]
    fn no_extra_copies_is_no_duplication_and_the_fewest_never_exceed_the_most() {
        // Proves: `max_extra_copies = 0` turns duplication off whatever its probability (the
        // PSP's own floor is one copy, so passing 0 through would mean 1); with copies allowed,
        // the probability and the range pass through, the fewest held to the most.
        let mut scenario = crate::scenarios::smoke();
        scenario.faults.webhooks.duplicate_probability = 1.0;
        scenario.faults.webhooks.extra_copies_max = 0;
        scenario.faults.webhooks.extra_copies_min = 0;
        let plan = |s: &crate::Scenario| Plan::generate(s, stampede_server::Design::reference(), 1);
        let none = psp_config(&plan(&scenario));
        assert_eq!(none.duplicate_probability, 0.0);
        assert!(!plan(&scenario).fault_kinds().contains("webhook-duplicates"));
        scenario.faults.webhooks.extra_copies_max = 1;
        let one = psp_config(&plan(&scenario));
        assert_eq!(one.duplicate_probability, 1.0);
        assert_eq!((one.min_extra_copies, one.max_extra_copies), (1, 1));
        scenario.faults.webhooks.extra_copies_max = 3;
        scenario.faults.webhooks.extra_copies_min = 2;
        let some = psp_config(&plan(&scenario));
        assert_eq!((some.min_extra_copies, some.max_extra_copies), (2, 3));
        assert_eq!(some.validate(), Ok(()));
    }

    #[test]
    fn the_settle_watch_looks_on_time_and_gives_up_at_its_bound() {
        // Proves: no look before the first is due (the world is not even asked); an unsettled
        // world is looked at again SETTLE_POLL_MS later, never past the bound; a settled one ends
        // the wait; at the bound the wait ends settled or not, and stays over.
        let mut watch = SettleWatch {
            next: 100,
            give_up: 400,
            over: false,
        };
        assert!(!watch.after_tick(99, || panic!("asked before the first look")));
        assert!(!watch.after_tick(100, || false));
        assert_eq!(watch.next, 100 + SETTLE_POLL_MS);
        assert!(!watch.after_tick(349, || panic!("asked between looks")));
        assert!(!watch.after_tick(350, || false));
        assert_eq!(watch.next, 400, "the last look falls on the bound");
        assert!(watch.after_tick(400, || false), "given up at the bound");
        assert!(watch.after_tick(401, || panic!("over: not asked again")));

        let mut settles = SettleWatch {
            next: 100,
            give_up: 400,
            over: false,
        };
        assert!(
            settles.after_tick(100, || true),
            "settled at the first look"
        );
    }

    #[test]
    fn the_trace_hash_is_the_sha256_of_the_trace_file_bytes() {
        // Proves: `trace.jsonl` (write_trace) holds one JSON event a line, in order, and its
        // SHA-256 is the trace hash; one event more changes the hash.
        let mut history = History::new();
        history.push(
            Millis(5),
            EventKind::Fault {
                what: "crash db for 10 ms".into(),
            },
        );
        history.push(
            Millis(9),
            EventKind::Fault {
                what: "restart db".into(),
            },
        );
        let mut bytes = Vec::new();
        write_trace(&history, &mut bytes).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().next().unwrap().contains("crash db for 10 ms"));
        assert!(text.ends_with('\n'));
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(trace_hash(&history), digest);
        history.push(
            Millis(9),
            EventKind::Fault {
                what: "heal".into(),
            },
        );
        assert_ne!(trace_hash(&history), digest);
    }
}
