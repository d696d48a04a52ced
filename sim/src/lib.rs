//! `stampede-sim`: the reference shop inside a seeded turmoil world.
//!
//! `(scenario, design, seed)` becomes a [`Plan`] — every shopper and every
//! fault as data — which [`run`] executes: the very same axum router from
//! `stampede-server` serves over turmoil's simulated TCP on `api-*` hosts,
//! with the store on its own `db` host (reached through the remote store
//! protocol), job workers on `worker-*` hosts, the fake PSP on `psp`, and
//! shoppers on client hosts. Everything that happens is recorded into a
//! `History`, safety invariants are watched as the run goes, and at the end
//! the core's checker judges every invariant.
//!
//! **Design decision: one seed, one run.** turmoil's RNG, the PSP's webhook
//! faults, the workers' jitter and the plan are all derived from the seed;
//! time is turmoil's; nothing observable iterates a hash map. The same plan
//! gives a byte-identical history (see [`trace_hash`]) in any process.
//!
//! ```no_run
//! use stampede_sim::{Plan, run, scenarios};
//! let plan = Plan::generate(&scenarios::smoke(), stampede_server::Design::reference(), 7);
//! let result = run(&plan).unwrap();
//! assert!(result.passed(), "{:?}", result.violated());
//! println!("trace {}", result.trace_hash);
//! ```

#![deny(missing_docs)]

mod coverage;
mod db;
mod net;
mod plan;
mod recorder;
mod sample;
mod scenario;
pub mod scenarios;
mod shopper;
mod world;

pub use coverage::Coverage;
pub use db::{CHECKPOINT_MIN_COMMANDS, DbStore, Log, SimJournal};
pub use net::{SimListener, connector, counting_connector};
pub use plan::{
    FAULT_KINDS, Fault, FaultEvent, Hosts, Intent, PLAN_MS_MAX, PLAN_SHOPPERS_MAX,
    PLAN_THINK_MS_MAX, PLAN_VERSION, Plan, ShopperPlan,
};
pub use recorder::{Recorder, sim_now, written_events};
pub use scenario::{
    ARRIVALS_MS_MAX, AdmissionSpec, Arrival, CATALOG_MAX, CrashSpec, FORGED_WEBHOOKS_MAX, Faults,
    Follow, HOST_GROUPS, PARTITION_TABLES_MAX, PartitionSpec, ProductSpec, SCENARIO_BYTES_MAX,
    Scenario, ScenarioError, ScenarioFileError, Shoppers, StallSpec, Timing, Topology,
    WebhookFaults, read_text_bounded,
};
pub use shopper::wish;
pub use world::{
    EPOCH_UNIX_MS, LiveViolation, RunResult, RunStats, SETTLE_EXTENSION_MS_MAX,
    SSE_KEEP_ALIVE_FAULTS_MS, SimError, run, sse_keep_alive_ms, stream_idle_ms, trace_hash,
    write_trace,
};
