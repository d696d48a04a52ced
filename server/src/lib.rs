//! `stampede-server`: the reference shop served over HTTP.
//!
//! One axum [`Router`](axum::Router) built by [`api::router`], served over any
//! listener — tokio's for real, turmoil's in the simulator — with workers
//! ([`workers`]) beside it, all talking to a [`store::Store`]: in-process
//! ([`store::MemoryStore`]) or a remote store host ([`store::remote`]). The
//! fake payment provider ([`psp`]) is an axum app of its own. Every known
//! mistake the shop can be built with is a switch of [`design::Design`], and
//! every one of them is carried out in one module (`naive.rs`), so the
//! reference handlers and workers read without a design branch.
//!
//! **Design decision: the shell owns no decisions.** Handlers and workers
//! validate input, call one atomic store operation, and render what the core
//! decided. The only logic here is IO: retries, timeouts, signatures, and
//! the naive variants' deliberately racy compositions of raw store calls.

#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod clock;
pub mod degrade;
pub mod design;
pub mod http;
pub mod metrics;
mod naive;
pub mod openapi;
mod payments;
pub mod problem;
pub mod psp;
pub mod serve;
pub mod signature;
pub mod store;
pub mod watch;
pub mod workers;

pub use app::{App, ServerConfig};
pub use clock::Clock;
pub use design::Design;
pub use http::{Connector, HttpClient};
pub use payments::create_intent;
pub use problem::Problem;
pub use store::{Command, MemoryStore, Reply, Store, StoreError};
