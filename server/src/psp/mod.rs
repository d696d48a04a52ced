//! The fake payment provider (Stripe-like intents, ledger, signed webhooks).
//!
//! [`Psp`] holds the books and the webhook schedule; [`router`] serves its
//! HTTP API; [`Psp::run_delivery`] sends its webhooks; [`PspClient`] is what
//! the shop and simulated shoppers call it with. Everything random (client
//! secrets, duplicate copies, delays, backoff jitter) comes from
//! [`PspConfig::seed`], and all time from the embedder's [`Clock`], so under
//! the simulator a run replays exactly.
//!
//! ```no_run
//! # async fn demo() {
//! use stampede_server::psp::{Psp, PspConfig, router};
//! use stampede_server::{Clock, Connector};
//! let psp = Psp::new(PspConfig::default(), Clock::tokio(0), Connector::tokio()).unwrap();
//! tokio::spawn(psp.clone().run_delivery());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! axum::serve(listener, router(psp)).await.unwrap();
//! # }
//! ```
//!
//! Simplifications, stated openly: one currency; refunds are always full;
//! idempotency keys never expire (the PSP lives for one run); a declined
//! intent is final (no second attempt with another card).

mod app;
mod client;
mod config;
mod delivery;
mod state;
pub mod wire;

pub use app::{BODY_BYTES_MAX, PAGE_MAX, REPLAYED_HEADER, document_json, router};
pub use client::{CreatedIntent, PspClient, PspError};
pub use config::{ID_BASE_MAX, PspConfig, PspConfigError, WebhookTarget, id_base_at};
pub use delivery::{ATTEMPT_HEADER, COPY_HEADER, DeliveryStats, SIGNATURE_HEADER};

use crate::clock::Clock;
use crate::http::{Connector, HttpClient};
use bytes::Bytes;
use delivery::Schedule;
use stampede_core::{EventId, LedgerEntry, Millis, PaymentIntent};
use state::{Answer, Now, PspState, Refusal};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use wire::WebhookPayload;

/// The fake PSP: books, webhook schedule, and the means to deliver.
pub struct Psp {
    config: PspConfig,
    clock: Clock,
    http: HttpClient,
    /// One lock for books and schedule, so events are scheduled in the
    /// order they were emitted and the delivery plan follows the seed.
    inner: Mutex<Inner>,
    /// Wakes the delivery loop when something new is scheduled.
    wake: Notify,
    /// Until when (clock ms) answers are held back: the work is done, the
    /// caller just does not hear about it in time (a PSP brownout).
    stalled_until: AtomicU64,
}

struct Inner {
    state: PspState,
    schedule: Schedule,
}

impl std::fmt::Debug for Psp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the books: they can hold a million intents and their secrets.
        f.debug_struct("Psp")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("delivery", &self.delivery_stats())
            .finish_non_exhaustive()
    }
}

impl Psp {
    /// A PSP with empty books. Webhooks (if `config.webhook` is set) go out
    /// over `connector` once [`Psp::run_delivery`] is running.
    pub fn new(
        config: PspConfig,
        clock: Clock,
        connector: Connector,
    ) -> Result<Arc<Psp>, PspConfigError> {
        config.validate()?;
        let http = HttpClient::new(connector, Duration::from_millis(config.request_timeout_ms));
        let inner = Inner {
            state: PspState::new(config.seed, config.max_intents, config.id_base),
            schedule: Schedule::new(&config),
        };
        Ok(Arc::new(Psp {
            config,
            clock,
            http,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            stalled_until: AtomicU64::new(0),
        }))
    }

    /// Delivers webhooks until dropped; the embedder spawns it once and
    /// aborts it to stop. Without a webhook target it only waits. Copies in
    /// flight when it is dropped count as failed attempts and are retried by
    /// the next loop started on this PSP.
    pub fn run_delivery(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        delivery::run(self)
    }

    /// From now until `until`, every charge, confirmation and refund still
    /// happens (and its webhook goes out) but its answer is held until
    /// `until`: "charge made, response lost" for any caller whose timeout is
    /// shorter than the stall.
    pub fn stall_responses_until(&self, until: Millis) {
        self.stalled_until.fetch_max(until.0, Ordering::Relaxed);
    }

    /// Holds an answer while a stall lasts (bounded by the stall's end).
    pub(crate) async fn hold_if_stalled(&self) {
        let until = self.stalled_until.load(Ordering::Relaxed);
        let now = self.clock.now().0;
        if now < until {
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PspConfig {
        &self.config
    }

    /// The PSP's clock now (the clock of its ledger lines' `at`).
    pub fn clock_now(&self) -> Millis {
        self.clock.now()
    }

    /// A copy of the ledger, oldest first.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.lock().state.ledger().to_vec()
    }

    /// Every intent, in id order.
    pub fn intents(&self) -> Vec<PaymentIntent> {
        self.lock().state.intents().cloned().collect()
    }

    /// Every event emitted, in emission order (whether or not delivered).
    pub fn events(&self) -> Vec<WebhookPayload> {
        self.lock().state.events().to_vec()
    }

    /// Delivery counters.
    pub fn delivery_stats(&self) -> DeliveryStats {
        self.lock().schedule.stats()
    }

    /// When the next webhook copy is due, on the PSP's clock.
    pub fn next_delivery_due(&self) -> Option<Millis> {
        self.lock().schedule.next_due()
    }

    /// Makes the delivery loop look at the clock again now. Only needed when
    /// the clock jumps without tokio's timers knowing (a test's hand-driven
    /// clock); tokio's and the simulator's clocks need no help.
    pub fn wake_delivery(&self) {
        self.wake.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoned only if an operation's assertion failed mid-write: the
        // books can no longer be trusted, so every later caller fails loudly.
        self.inner
            .lock()
            .expect("a PSP operation panicked; its books are suspect")
    }

    fn now(&self) -> Now {
        Now {
            at: self.clock.now(),
            unix_secs: self.clock.unix_secs(),
        }
    }

    /// Runs one operation on the books and schedules the event it emitted.
    fn apply(
        &self,
        op: impl FnOnce(&mut PspState, Now) -> Result<Answer, Refusal>,
    ) -> Result<Answer, Refusal> {
        let now = self.now();
        let mut inner = self.lock();
        let answer = op(&mut inner.state, now)?;
        let Some(event) = &answer.event else {
            return Ok(answer);
        };
        if self.config.webhook.is_some() {
            let id = EventId::new(event.id.as_str()).expect("the PSP makes valid event ids");
            let body = Bytes::from(serde_json::to_vec(event).expect("payloads serialize"));
            inner.schedule.add_event(now.at, id, body);
            drop(inner);
            self.wake.notify_one();
        }
        Ok(answer)
    }

    fn read<T>(&self, op: impl FnOnce(&PspState) -> T) -> T {
        op(&self.lock().state)
    }
}
