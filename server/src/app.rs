//! The shop application: everything a handler or worker needs, built once.

use crate::clock::Clock;
use crate::design::Design;
use crate::metrics::Counters;
use crate::psp::PspClient;
use crate::store::Store;
use crate::watch::WatchHub;
use stampede_core::Cents;
use std::sync::Arc;

/// Limits and knobs of the served shop.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Which design variant to run.
    pub design: Design,
    /// Shared secret for `Psp-Signature` verification.
    pub webhook_secret: Vec<u8>,
    /// Bearer token for `/admin/*`.
    pub admin_token: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// What the `intent_amount=fixed` mistake charges, whatever the order costs.
    pub fixed_amount: Cents,
    /// How often the watcher hub ([`crate::watch`]) reads the store's change
    /// feed while any events stream is open, ms.
    pub watch_poll_ms: u64,
    /// Most events streams open at once; one more is answered 503.
    pub max_watchers: usize,
    /// Longest an events stream stays open, ms.
    pub sse_max_ms: u64,
    /// How often an idle events stream sends a keep-alive comment, ms, so a
    /// client can tell a quiet stream from a dead server.
    pub sse_keep_alive_ms: u64,
    /// Delay before the naive in-memory finalize runs, ms.
    pub in_memory_finalize_delay_ms: u64,
    /// How long after it last shed an order the shop serves catalog reads
    /// from a cached copy ([`crate::degrade`]), ms.
    pub degrade_window_ms: u64,
    /// The oldest cached catalog served under pressure, ms; 0 turns degrade
    /// mode off.
    pub degraded_read_max_age_ms: u64,
    /// How long the store holds a key in flight before a retry may take it
    /// over, ms: the store's `IdempotencyLimits::in_flight_timeout_ms`. A key
    /// whose release the store did not answer is released again in the
    /// background for at most half of it ([`crate::api`]'s `/pay`).
    pub key_lock_ms: u64,
}

/// Default of [`ServerConfig::degrade_window_ms`], ms.
pub const DEFAULT_DEGRADE_WINDOW_MS: u64 = 5_000;
/// Default of [`ServerConfig::degraded_read_max_age_ms`], ms.
pub const DEFAULT_DEGRADED_READ_AGE_MS_MAX: u64 = 1_000;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            design: Design::reference(),
            webhook_secret: b"whsec_stampede_dev".to_vec(),
            admin_token: "stampede-admin".to_string(),
            max_body_bytes: 16 * 1024,
            fixed_amount: Cents(1_000),
            watch_poll_ms: 50,
            max_watchers: crate::watch::DEFAULT_WATCHERS_MAX,
            sse_max_ms: 10 * 60 * 1000,
            sse_keep_alive_ms: crate::api::SSE_KEEP_ALIVE_MS,
            in_memory_finalize_delay_ms: 50,
            degrade_window_ms: DEFAULT_DEGRADE_WINDOW_MS,
            degraded_read_max_age_ms: DEFAULT_DEGRADED_READ_AGE_MS_MAX,
            key_lock_ms: stampede_core::IdempotencyLimits::default().in_flight_timeout_ms,
        }
    }
}

/// Shared state of the API and the workers.
pub struct App {
    /// Where the shop's state lives.
    pub store: Arc<dyn Store>,
    /// The payment provider.
    pub psp: PspClient,
    /// The clock.
    pub clock: Clock,
    /// Knobs.
    pub config: ServerConfig,
    /// Metrics counters.
    pub counters: Counters,
    /// Who waits for which order's next status (events streams).
    pub watch: WatchHub,
    /// Pressure, and the catalog copy served under it.
    pub degrade: crate::degrade::Degrade,
    /// Set once the shop is stopping: open events streams end (their
    /// clients reconnect elsewhere or later) instead of holding the
    /// shutdown for its whole grace.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Builds the application.
    pub fn new(
        store: Arc<dyn Store>,
        psp: PspClient,
        clock: Clock,
        config: ServerConfig,
    ) -> Arc<App> {
        let watch = WatchHub::new(
            Arc::clone(&store),
            config.watch_poll_ms,
            config.max_watchers,
        );
        Arc::new(App {
            watch,
            store,
            psp,
            clock,
            config,
            counters: Counters::default(),
            degrade: crate::degrade::Degrade::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Tells what serves long-lived requests that the shop is stopping.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`App::stop`] has been called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    }

    /// The design variant.
    pub fn design(&self) -> &Design {
        &self.config.design
    }
}
