//! The store port: every operation the shop performs on its state is one
//! core [`Command`], executed atomically (one lock, one SQL transaction, one
//! round trip to the store host), answered by one [`Reply`].
//!
//! Commands are declared once, in `stampede_core::command`, and applied by
//! `ShopState::apply`; the stores here only carry them: in-process
//! ([`MemoryStore`]), on a remote store host ([`remote::RemoteStore`] over
//! any byte stream), durably in SQLite ([`sqlite::SqliteStore`]), or in a
//! PostgreSQL database shared by several replicas ([`postgres::PgStore`]). The
//! store stamps `now` from its own clock: one time authority, however many
//! API hosts call it.

mod memory;
pub mod postgres;
pub mod remote;
pub mod sqlite;

pub use memory::{Journal, MemoryStore};

use serde::{Deserialize, Serialize};
use stampede_core::Failed;
use stampede_core::SoldOut;
use stampede_core::{
    AuditSnapshot, Begin, Cause, Fingerprint, IdempotencyKey, JobId, JobKind, Lease, Order,
    OrderId, PaymentIntent, PlaceOrder, Placed, Product, SavedResponse, ShopError, Sku, Step,
    StockLevel, Transition, WebhookEvent, WebhookOutcome,
};
use stampede_core::{Command, Reply};
use std::future::Future;
use std::pin::Pin;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The shop refused: nothing changed.
    #[error(transparent)]
    Shop(#[from] ShopError),
    /// The store could not be reached or did not answer; the operation may or
    /// may not have happened.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this client does not understand.
    #[error("store protocol error: {0}")]
    Protocol(String),
}

/// Longest a [`Command::LeaseJobWait`] waits, ms, whatever it asks.
pub const LEASE_WAIT_MS_MAX: u64 = 30_000;

/// Sleeps until `changed` fires, the next job is due, or `deadline`: a
/// waiting lease's pause between two looks. `next` is when the next job is
/// runnable on the store's clock, which read `now` at `started`.
async fn sleep_until_job(
    changed: Pin<&mut tokio::sync::futures::Notified<'_>>,
    started: tokio::time::Instant,
    now: stampede_core::Millis,
    next: Option<stampede_core::Millis>,
    deadline: tokio::time::Instant,
) {
    let due = next
        .map(|at| started + std::time::Duration::from_millis(at.0.saturating_sub(now.0).max(1)));
    let wake = due.map_or(deadline, |due| due.min(deadline));
    tokio::select! {
        biased;
        () = changed => {}
        () = tokio::time::sleep_until(wake) => {}
    }
}

/// A boxed store future.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, StoreError>> + Send + 'a>>;

/// Executes store operations.
pub trait Store: Send + Sync + 'static {
    /// Runs one operation atomically.
    fn call(&self, request: Command) -> StoreFuture<'_>;

    /// Why the store has stopped for good (every call now fails), if it has:
    /// a SQLite store after a failed commit. A shop on such a store cannot
    /// serve again until it is restarted on its file.
    fn failed(&self) -> Option<String> {
        None
    }
}

fn unexpected(response: Reply) -> StoreError {
    StoreError::Protocol(format!("unexpected response {response:?}"))
}

macro_rules! typed {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $out:ty = $req:expr, $pat:pat => $val:expr) => {
        $(#[$doc])*
        pub async fn $name(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
            match self.call($req).await? {
                $pat => Ok($val),
                other => Err(unexpected(other)),
            }
        }
    };
}

/// Typed wrappers: one per request kind.
impl dyn Store {
    typed!(
        /// See [`Command::PlaceOrder`].
        place_order(request: PlaceOrder) -> Placed = Command::PlaceOrder { request }, Reply::Placed(p) => p);
    typed!(
        /// See [`Command::BeginKey`].
        begin_key(key: IdempotencyKey, fingerprint: Fingerprint) -> Begin<SavedResponse> = Command::BeginKey { key, fingerprint }, Reply::Begin(b) => b);
    typed!(
        /// See [`Command::CompleteKey`].
        complete_key(key: IdempotencyKey, fingerprint: Fingerprint, response: SavedResponse) -> () = Command::CompleteKey { key, fingerprint, response }, Reply::Done => ());
    typed!(
        /// See [`Command::AbandonKey`].
        abandon_key(key: IdempotencyKey, fingerprint: Fingerprint) -> () = Command::AbandonKey { key, fingerprint }, Reply::Done => ());
    typed!(
        /// See [`Command::ReleaseKeysInFlight`]: how many keys were freed.
        release_keys_in_flight() -> u64 = Command::ReleaseKeysInFlight, Reply::Count(n) => n);
    typed!(
        /// See [`Command::ReleaseLeases`]: how many job leases ended.
        release_leases() -> u64 = Command::ReleaseLeases, Reply::Count(n) => n);
    typed!(
        /// See [`Command::Reserve`].
        reserve(order: OrderId, cause: Cause) -> Step = Command::Reserve { order, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::RecordIntent`].
        record_intent(intent: PaymentIntent, cause: Cause) -> Step = Command::RecordIntent { intent, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::ApplyPayment`].
        apply_payment(intent: PaymentIntent, cause: Cause) -> Step = Command::ApplyPayment { intent, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::ReceiveWebhook`].
        receive_webhook(event: WebhookEvent) -> WebhookOutcome = Command::ReceiveWebhook { event }, Reply::Webhook(w) => w);
    typed!(
        /// See [`Command::Finalize`].
        finalize(order: OrderId, cause: Cause) -> Step = Command::Finalize { order, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::MarkRefunded`].
        mark_refunded(intent: PaymentIntent, cause: Cause) -> Step = Command::MarkRefunded { intent, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::TransitionIf`].
        transition_if(order: OrderId, expected: stampede_core::OrderStatus, to: stampede_core::OrderStatus, cause: Cause) -> Step = Command::TransitionIf { order, expected, to, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::Stats`].
        stats() -> Box<stampede_core::ShopStats> = Command::Stats, Reply::Stats(s) => s);
    typed!(
        /// See [`Command::Cancel`].
        cancel(order: OrderId) -> Step = Command::Cancel { order }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::ExpireReservations`]: the expiries made, and when the next hold lapses.
        expire_reservations(max: usize) -> (Vec<Transition>, Option<stampede_core::Millis>) = Command::ExpireReservations { max }, Reply::Swept(t, next) => (t, next));
    typed!(
        /// See [`Command::LeaseJob`].
        lease_job() -> Option<Lease> = Command::LeaseJob, Reply::Lease(l) => l);
    typed!(
        /// See [`Command::LeaseJobWait`].
        lease_job_wait(wait_ms: u64) -> Option<Lease> = Command::LeaseJobWait { wait_ms }, Reply::Lease(l) => l);
    typed!(
        /// See [`Command::AckJob`].
        ack_job(lease: Lease) -> () = Command::AckJob { lease }, Reply::Done => ());
    typed!(
        /// See [`Command::FailJob`].
        fail_job(lease: Lease, error: String, jitter_permille: u32) -> Failed = Command::FailJob { lease, error, jitter_permille }, Reply::Failed(f) => f);
    typed!(
        /// See [`Command::EnqueueJob`].
        enqueue_job(kind: JobKind, order: OrderId) -> Option<JobId> = Command::EnqueueJob { kind, order }, Reply::Job(j) => j);
    typed!(
        /// See [`Command::Restock`].
        restock(sku: Sku, qty: u64) -> () = Command::Restock { sku, qty }, Reply::Done => ());
    typed!(
        /// See [`Command::GetOrder`].
        get_order(order: OrderId) -> Option<Box<Order>> = Command::GetOrder { order }, Reply::Order(o) => o);
    typed!(
        /// See [`Command::GetOrders`].
        get_orders(orders: Vec<OrderId>) -> Vec<Order> = Command::GetOrders { orders }, Reply::Orders(o) => o);
    typed!(
        /// See [`Command::ReadFeed`].
        read_feed(since: Option<stampede_core::Cursor>, max: usize) -> stampede_core::Changes = Command::ReadFeed { since, max }, Reply::Feed(c) => c);
    typed!(
        /// See [`Command::ReconcileCandidates`].
        reconcile_candidates(limit: usize) -> Vec<Order> = Command::ReconcileCandidates { limit }, Reply::Orders(o) => o);
    typed!(
        /// See [`Command::Catalog`].
        catalog() -> Vec<(Product, StockLevel)> = Command::Catalog, Reply::Catalog(c) => c);
    typed!(
        /// See [`Command::Audit`].
        audit() -> Box<AuditSnapshot> = Command::Audit, Reply::Audit(a) => a);
    typed!(
        /// See [`Command::Housekeep`].
        housekeep(max: usize) -> u64 = Command::Housekeep { max }, Reply::Count(n) => n);
    typed!(
        /// See [`Command::RawGetKey`].
        raw_get_key(key: IdempotencyKey) -> Option<SavedResponse> = Command::RawGetKey { key }, Reply::Key(k) => k);
    typed!(
        /// See [`Command::RawPutKey`].
        raw_put_key(key: IdempotencyKey, fingerprint: Fingerprint, response: SavedResponse) -> () = Command::RawPutKey { key, fingerprint, response }, Reply::Done => ());
    typed!(
        /// See [`Command::RawCreateOrder`].
        raw_create_order(request: PlaceOrder, unit_prices: Option<Vec<stampede_core::Cents>>, with_job: bool) -> (OrderId, Option<JobId>) = Command::RawCreateOrder { request, unit_prices, with_job }, Reply::Created(o, j) => (o, j));
    typed!(
        /// See [`Command::RawAvailable`].
        raw_available(sku: Sku) -> u64 = Command::RawAvailable { sku }, Reply::Count(n) => n);
    typed!(
        /// See [`Command::RawForceReserve`].
        raw_force_reserve(order: OrderId, observed: Vec<u64>, cause: Cause) -> Step = Command::RawForceReserve { order, observed, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::RawReserveUnchecked`].
        raw_reserve_unchecked(order: OrderId, sold_out: SoldOut, cause: Cause) -> Step = Command::RawReserveUnchecked { order, sold_out, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::RawReserveFromReservations`].
        raw_reserve_from_reservations(order: OrderId, cause: Cause) -> Step = Command::RawReserveFromReservations { order, cause }, Reply::Step(s) => s);
    typed!(
        /// See [`Command::RawApplyUnchecked`].
        raw_apply_unchecked(event: WebhookEvent) -> Step = Command::RawApplyUnchecked { event }, Reply::Step(s) => s);
}
