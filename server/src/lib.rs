//! `stampede-server`: the reference shop served over HTTP.
//!
//! One axum [`Router`](axum::Router) built by [`router`], served over any
//! listener — tokio's for real, turmoil's in the simulator — with workers
//! ([`run_job_worker`] and the sweeper and reconciler) beside it, all talking to a [`store::Store`]: in-process
//! ([`store::MemoryStore`]) or a remote store host ([`store::remote`]). The
//! fake payment provider ([`psp`]) is an axum app of its own. Every known
//! mistake the shop can be built with is a switch of [`Design`], and
//! every one of them is carried out in one module (`naive.rs`), so the
//! reference handlers and workers read without a design branch.
//!
//! **Design decision: the shell owns no decisions.** Handlers and workers
//! validate input, call one atomic store operation, and render what the core
//! decided. The only logic here is IO: retries, timeouts, signatures, and
//! the naive variants' deliberately racy compositions of raw store calls.

#![deny(missing_docs)]

mod api;
mod app;
mod clock;
mod degrade;
mod design;
pub mod files;
mod http;
mod listen;
pub mod metrics;
mod naive;
pub mod openapi;
mod payments;
mod problem;
pub mod psp;
mod serve;
pub mod signature;
pub mod store;
mod watch;
mod workers;

pub use api::{
    KEY_SETTLE_WAIT_MS_MAX, KEY_SETTLE_WAIT_MS_MIN, LineView, OrderAccepted, OrderView,
    PaymentStartedView, READINESS_WAIT_MS, SSE_KEEP_ALIVE_MS, TransitionView, WEBHOOK_PATH,
    key_settle_deadline, router,
};
pub use app::{App, DEFAULT_DEGRADE_WINDOW_MS, DEFAULT_DEGRADED_READ_AGE_MS_MAX, ServerConfig};
pub use clock::Clock;
pub use degrade::{CatalogRead, Degrade};
pub use design::{
    AdmissionMode, ClientPrice, Commit, Design, DesignError, EarlyWebhooks, Enqueue, Finalize,
    Idempotency, IntentAmount, IntentReplay, InventoryMode, PRESETS, ReservationTtl, SABOTAGE,
    SHORT_TTL_DIVISOR, SWITCHES, Sabotage, SwitchInfo,
};
pub use http::{
    BoxIo, Connector, EVENT_BYTES_MAX, HttpClient, HttpError, HttpResponse, HttpStream, Io,
    RESPONSE_BYTES_MAX, SseEvent,
};
pub use listen::{
    ConnectionLimits, HTTP2_STREAMS_PER_CONNECTION_MAX, LISTEN_BACKLOG, bind, serve_router,
    serve_router_with,
};
pub use payments::create_intent;
pub use problem::{PROBLEM_BASE, Problem};
pub use serve::{
    DEFAULT_SQLITE_PATH, Opened, PspMode, Stack, StackConfig, StartError, StoreChoice,
    check_psp_is_ours, demo_catalog, initial_state, start,
};
pub use watch::{DEFAULT_WATCHERS_MAX, Full, READY_WAIT_MS, Watch, WatchHub};
pub use workers::{
    IDLE_TURN_MIN_MS, LEASE_ERROR_BACKOFF_MIN_MS, LEASE_ERROR_BACKOFF_MS_MAX, SWEEP_GAP_MIN_MS,
    WorkerConfig, reconcile_once, run_job_worker, run_reconciler, run_sweeper,
};
