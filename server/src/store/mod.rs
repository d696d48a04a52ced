//! The store port: every operation the shop performs on its state is one
//! [`StoreRequest`], executed atomically (one lock, one SQL transaction, one
//! round trip to the store host), answered by one [`StoreResponse`].
//!
//! Requests are plain serialisable data, so the same command set runs
//! in-process ([`MemoryStore`]) or on a remote store host
//! ([`remote::RemoteStore`] over any byte stream). The store stamps `now`
//! from its own clock: one time authority, however many API hosts call it.
//!
//! Reference operations are the atomic ones of `stampede_core::ShopState`.
//! The `Raw*` primitives exist only for naive design variants, which
//! compose them with awaits in between and so race.

pub mod memory;
pub mod remote;

pub use memory::MemoryStore;

use serde::{Deserialize, Serialize};
use stampede_core::jobs::Failed;
use stampede_core::shop::SoldOut;
use stampede_core::{
    AuditSnapshot, Begin, Cause, Fingerprint, IdempotencyKey, JobId, JobKind, Lease, Order,
    OrderId, PaymentIntent, PlaceOrder, Placed, Product, SavedResponse, ShopError, Sku, Step,
    StockLevel, Transition, WebhookEvent, WebhookOutcome,
};
use std::future::Future;
use std::pin::Pin;

/// One atomic store operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum StoreRequest {
    /// Idempotency decision + order + first job, atomically (the outbox).
    PlaceOrder {
        /// The request.
        request: PlaceOrder,
    },
    /// Two-phase idempotency for other endpoints: take the key.
    BeginKey {
        /// The key.
        key: IdempotencyKey,
        /// The request fingerprint.
        fingerprint: Fingerprint,
    },
    /// Save the response under a key taken with `BeginKey`.
    CompleteKey {
        /// The key.
        key: IdempotencyKey,
        /// The request fingerprint.
        fingerprint: Fingerprint,
        /// The response to replay.
        response: SavedResponse,
    },
    /// Free a key taken with `BeginKey`: the request had no effect.
    AbandonKey {
        /// The key.
        key: IdempotencyKey,
        /// The request fingerprint.
        fingerprint: Fingerprint,
    },
    /// The reserve step (state-checked).
    Reserve {
        /// The order.
        order: OrderId,
        /// Who.
        cause: Cause,
    },
    /// Record the PSP intent and move to `PaymentPending`.
    RecordIntent {
        /// The PSP's intent.
        intent: PaymentIntent,
        /// Who.
        cause: Cause,
    },
    /// Apply the PSP's view of an intent.
    ApplyPayment {
        /// The PSP's intent.
        intent: PaymentIntent,
        /// Who.
        cause: Cause,
    },
    /// A verified webhook: dedup, park or apply.
    ReceiveWebhook {
        /// The event.
        event: WebhookEvent,
    },
    /// `Paid` → `Confirmed`.
    Finalize {
        /// The order.
        order: OrderId,
        /// Who.
        cause: Cause,
    },
    /// The PSP refunded: → `Refunded`.
    MarkRefunded {
        /// The PSP's intent after the refund.
        intent: PaymentIntent,
        /// Who.
        cause: Cause,
    },
    /// Compare-and-set on an order's status.
    TransitionIf {
        /// The order.
        order: OrderId,
        /// The status it must have.
        expected: stampede_core::OrderStatus,
        /// The status to move to.
        to: stampede_core::OrderStatus,
        /// Who.
        cause: Cause,
    },
    /// The customer cancels.
    Cancel {
        /// The order.
        order: OrderId,
    },
    /// The sweeper: expire up to `max` lapsed reservations.
    ExpireReservations {
        /// Bound.
        max: usize,
    },
    /// Lease the next runnable job.
    LeaseJob,
    /// Lease the next runnable job, waiting up to `wait_ms` (capped at
    /// [`LEASE_WAIT_MAX_MS`]) for one: answered as soon as a job becomes
    /// runnable (enqueued, retried or due), else `Lease(None)` when the wait
    /// is over. A remote client clamps the wait below its request timeout.
    LeaseJobWait {
        /// Longest wait, ms.
        wait_ms: u64,
    },
    /// The job is done.
    AckJob {
        /// The lease.
        lease: Lease,
    },
    /// The attempt failed.
    FailJob {
        /// The lease.
        lease: Lease,
        /// Why.
        error: String,
        /// Jitter drawn by the worker, 0..=1000.
        jitter_permille: u32,
    },
    /// Add a job.
    EnqueueJob {
        /// What.
        kind: JobKind,
        /// For which order.
        order: OrderId,
    },
    /// Put more units on the shelf.
    Restock {
        /// The SKU.
        sku: Sku,
        /// Units.
        qty: u64,
    },
    /// Read one order.
    GetOrder {
        /// The order.
        order: OrderId,
    },
    /// Read the change feed: up to `max` status changes after `since`
    /// (`None`: no changes, just the head cursor).
    ReadFeed {
        /// Where the reader is.
        since: Option<stampede_core::Cursor>,
        /// Bound (the core caps it at `stampede_core::FEED_READ_MAX`).
        max: usize,
    },
    /// Orders the reconciler should compare with the PSP, oldest first.
    ReconcileCandidates {
        /// Bound.
        limit: usize,
    },
    /// The catalog with stock levels.
    Catalog,
    /// A consistent snapshot of everything.
    Audit,
    /// Counts for metrics.
    Stats,
    /// Forget expired idempotency records and old webhook ids.
    Housekeep {
        /// Bound per kind.
        max: usize,
    },
    /// Naive: read the saved response for a key, if any (no locking).
    RawGetKey {
        /// The key.
        key: IdempotencyKey,
    },
    /// Naive: save a response under a key, overwriting.
    RawPutKey {
        /// The key.
        key: IdempotencyKey,
        /// The fingerprint.
        fingerprint: Fingerprint,
        /// The response.
        response: SavedResponse,
    },
    /// Naive: create an order with no idempotency check and, if `with_job`,
    /// its reserve job (without it: the dual-write's first half).
    RawCreateOrder {
        /// The request.
        request: PlaceOrder,
        /// Client-sent unit prices to use instead of the catalog's, by line.
        unit_prices: Option<Vec<stampede_core::Cents>>,
        /// Enqueue the reserve job in the same operation.
        with_job: bool,
    },
    /// Naive: units of `sku` available right now.
    RawAvailable {
        /// The SKU.
        sku: Sku,
    },
    /// Naive (`inventory=read-then-write`): reserve the order's lines from
    /// availabilities read earlier, without checking what is there now.
    RawForceReserve {
        /// The order.
        order: OrderId,
        /// Availabilities read earlier, one per line (the stale read).
        observed: Vec<u64>,
        /// Who.
        cause: Cause,
    },
    /// Naive (`worker_state_check=off`): the reserve step without its state
    /// check — a redelivered job reserves the order's lines again.
    RawReserveUnchecked {
        /// The order.
        order: OrderId,
        /// How it decides sold-out (the `sold_out` switch).
        sold_out: SoldOut,
        /// Who.
        cause: Cause,
    },
    /// Naive (`sold_out=from-reservations`): the reserve step cancelling out
    /// of stock as soon as fewer units are available than asked, even when
    /// unpaid orders hold them.
    RawReserveFromReservations {
        /// The order.
        order: OrderId,
        /// Who.
        cause: Cause,
    },
    /// Naive (`webhook_dedup=off`): apply a webhook without dedup or state
    /// check; a payment sells the order's units every time it is applied.
    RawApplyUnchecked {
        /// The event.
        event: WebhookEvent,
    },
}

/// The answer to a [`StoreRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum StoreResponse {
    /// `PlaceOrder`.
    Placed(Placed),
    /// `BeginKey`.
    Begin(Begin<SavedResponse>),
    /// Operations with nothing to return.
    Done,
    /// State-checked steps.
    Step(Step),
    /// `ReceiveWebhook`.
    Webhook(WebhookOutcome),
    /// `ExpireReservations`: what it did, and when the next hold lapses.
    Swept(Vec<Transition>, Option<stampede_core::Millis>),
    /// `LeaseJob`.
    Lease(Option<Lease>),
    /// `FailJob`.
    Failed(Failed),
    /// `EnqueueJob`, `RawCreateOrder` (the job, if any).
    Job(Option<JobId>),
    /// `GetOrder`.
    Order(Option<Box<Order>>),
    /// `ReadFeed`.
    Feed(stampede_core::Changes),
    /// `ReconcileCandidates`.
    Orders(Vec<Order>),
    /// `Catalog`.
    Catalog(Vec<(Product, StockLevel)>),
    /// `Audit`.
    Audit(Box<AuditSnapshot>),
    /// `Stats`.
    Stats(Box<stampede_core::ShopStats>),
    /// `Housekeep`, `RawAvailable`.
    Count(u64),
    /// `RawGetKey`.
    Key(Option<SavedResponse>),
    /// `RawCreateOrder`.
    Created(OrderId, Option<JobId>),
}

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

/// Longest a [`StoreRequest::LeaseJobWait`] waits, ms, whatever it asks.
pub const LEASE_WAIT_MAX_MS: u64 = 30_000;

/// A boxed store future.
pub type StoreFuture<'a> =
    Pin<Box<dyn Future<Output = Result<StoreResponse, StoreError>> + Send + 'a>>;

/// Executes store operations.
pub trait Store: Send + Sync + 'static {
    /// Runs one operation atomically.
    fn call(&self, request: StoreRequest) -> StoreFuture<'_>;
}

fn unexpected(response: StoreResponse) -> StoreError {
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
        /// See [`StoreRequest::PlaceOrder`].
        place_order(request: PlaceOrder) -> Placed = StoreRequest::PlaceOrder { request }, StoreResponse::Placed(p) => p);
    typed!(
        /// See [`StoreRequest::BeginKey`].
        begin_key(key: IdempotencyKey, fingerprint: Fingerprint) -> Begin<SavedResponse> = StoreRequest::BeginKey { key, fingerprint }, StoreResponse::Begin(b) => b);
    typed!(
        /// See [`StoreRequest::CompleteKey`].
        complete_key(key: IdempotencyKey, fingerprint: Fingerprint, response: SavedResponse) -> () = StoreRequest::CompleteKey { key, fingerprint, response }, StoreResponse::Done => ());
    typed!(
        /// See [`StoreRequest::AbandonKey`].
        abandon_key(key: IdempotencyKey, fingerprint: Fingerprint) -> () = StoreRequest::AbandonKey { key, fingerprint }, StoreResponse::Done => ());
    typed!(
        /// See [`StoreRequest::Reserve`].
        reserve(order: OrderId, cause: Cause) -> Step = StoreRequest::Reserve { order, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::RecordIntent`].
        record_intent(intent: PaymentIntent, cause: Cause) -> Step = StoreRequest::RecordIntent { intent, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::ApplyPayment`].
        apply_payment(intent: PaymentIntent, cause: Cause) -> Step = StoreRequest::ApplyPayment { intent, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::ReceiveWebhook`].
        receive_webhook(event: WebhookEvent) -> WebhookOutcome = StoreRequest::ReceiveWebhook { event }, StoreResponse::Webhook(w) => w);
    typed!(
        /// See [`StoreRequest::Finalize`].
        finalize(order: OrderId, cause: Cause) -> Step = StoreRequest::Finalize { order, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::MarkRefunded`].
        mark_refunded(intent: PaymentIntent, cause: Cause) -> Step = StoreRequest::MarkRefunded { intent, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::TransitionIf`].
        transition_if(order: OrderId, expected: stampede_core::OrderStatus, to: stampede_core::OrderStatus, cause: Cause) -> Step = StoreRequest::TransitionIf { order, expected, to, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::Stats`].
        stats() -> Box<stampede_core::ShopStats> = StoreRequest::Stats, StoreResponse::Stats(s) => s);
    typed!(
        /// See [`StoreRequest::Cancel`].
        cancel(order: OrderId) -> Step = StoreRequest::Cancel { order }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::ExpireReservations`]: the expiries made, and when the next hold lapses.
        expire_reservations(max: usize) -> (Vec<Transition>, Option<stampede_core::Millis>) = StoreRequest::ExpireReservations { max }, StoreResponse::Swept(t, next) => (t, next));
    typed!(
        /// See [`StoreRequest::LeaseJob`].
        lease_job() -> Option<Lease> = StoreRequest::LeaseJob, StoreResponse::Lease(l) => l);
    typed!(
        /// See [`StoreRequest::LeaseJobWait`].
        lease_job_wait(wait_ms: u64) -> Option<Lease> = StoreRequest::LeaseJobWait { wait_ms }, StoreResponse::Lease(l) => l);
    typed!(
        /// See [`StoreRequest::AckJob`].
        ack_job(lease: Lease) -> () = StoreRequest::AckJob { lease }, StoreResponse::Done => ());
    typed!(
        /// See [`StoreRequest::FailJob`].
        fail_job(lease: Lease, error: String, jitter_permille: u32) -> Failed = StoreRequest::FailJob { lease, error, jitter_permille }, StoreResponse::Failed(f) => f);
    typed!(
        /// See [`StoreRequest::EnqueueJob`].
        enqueue_job(kind: JobKind, order: OrderId) -> Option<JobId> = StoreRequest::EnqueueJob { kind, order }, StoreResponse::Job(j) => j);
    typed!(
        /// See [`StoreRequest::Restock`].
        restock(sku: Sku, qty: u64) -> () = StoreRequest::Restock { sku, qty }, StoreResponse::Done => ());
    typed!(
        /// See [`StoreRequest::GetOrder`].
        get_order(order: OrderId) -> Option<Box<Order>> = StoreRequest::GetOrder { order }, StoreResponse::Order(o) => o);
    typed!(
        /// See [`StoreRequest::ReadFeed`].
        read_feed(since: Option<stampede_core::Cursor>, max: usize) -> stampede_core::Changes = StoreRequest::ReadFeed { since, max }, StoreResponse::Feed(c) => c);
    typed!(
        /// See [`StoreRequest::ReconcileCandidates`].
        reconcile_candidates(limit: usize) -> Vec<Order> = StoreRequest::ReconcileCandidates { limit }, StoreResponse::Orders(o) => o);
    typed!(
        /// See [`StoreRequest::Catalog`].
        catalog() -> Vec<(Product, StockLevel)> = StoreRequest::Catalog, StoreResponse::Catalog(c) => c);
    typed!(
        /// See [`StoreRequest::Audit`].
        audit() -> Box<AuditSnapshot> = StoreRequest::Audit, StoreResponse::Audit(a) => a);
    typed!(
        /// See [`StoreRequest::Housekeep`].
        housekeep(max: usize) -> u64 = StoreRequest::Housekeep { max }, StoreResponse::Count(n) => n);
    typed!(
        /// See [`StoreRequest::RawGetKey`].
        raw_get_key(key: IdempotencyKey) -> Option<SavedResponse> = StoreRequest::RawGetKey { key }, StoreResponse::Key(k) => k);
    typed!(
        /// See [`StoreRequest::RawPutKey`].
        raw_put_key(key: IdempotencyKey, fingerprint: Fingerprint, response: SavedResponse) -> () = StoreRequest::RawPutKey { key, fingerprint, response }, StoreResponse::Done => ());
    typed!(
        /// See [`StoreRequest::RawCreateOrder`].
        raw_create_order(request: PlaceOrder, unit_prices: Option<Vec<stampede_core::Cents>>, with_job: bool) -> (OrderId, Option<JobId>) = StoreRequest::RawCreateOrder { request, unit_prices, with_job }, StoreResponse::Created(o, j) => (o, j));
    typed!(
        /// See [`StoreRequest::RawAvailable`].
        raw_available(sku: Sku) -> u64 = StoreRequest::RawAvailable { sku }, StoreResponse::Count(n) => n);
    typed!(
        /// See [`StoreRequest::RawForceReserve`].
        raw_force_reserve(order: OrderId, observed: Vec<u64>, cause: Cause) -> Step = StoreRequest::RawForceReserve { order, observed, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::RawReserveUnchecked`].
        raw_reserve_unchecked(order: OrderId, sold_out: SoldOut, cause: Cause) -> Step = StoreRequest::RawReserveUnchecked { order, sold_out, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::RawReserveFromReservations`].
        raw_reserve_from_reservations(order: OrderId, cause: Cause) -> Step = StoreRequest::RawReserveFromReservations { order, cause }, StoreResponse::Step(s) => s);
    typed!(
        /// See [`StoreRequest::RawApplyUnchecked`].
        raw_apply_unchecked(event: WebhookEvent) -> Step = StoreRequest::RawApplyUnchecked { event }, StoreResponse::Step(s) => s);
}
