//! `stampede-core`: the pure checkout domain.
//!
//! Orders with an enforced state machine ([`order`]), inventory as
//! reservations ([`inventory`]), idempotency records with Stripe semantics
//! ([`idempotency`]), PSP intents and ledger ([`payment`]), the webhook inbox
//! ([`webhook`]), durable jobs ([`jobs`]), reconciliation ([`reconcile`]), the
//! bounded change feed of order statuses ([`feed`]), the
//! reference store's atomic operations ([`shop::ShopState`]) and its command
//! set ([`command`]: one [`Command`] in, one [`Reply`] out), and the
//! invariant checker over a recorded [`history::History`] ([`check`]).
//!
//! **Design decision: this crate is sans-IO.** It does no IO, reads no clock,
//! draws no random numbers and has no async code: time arrives as a
//! [`Millis`] argument, ids come from counters the state owns, jitter is a
//! number the caller draws from its own seeded RNG. The server and the
//! simulator are shells that carry out what the core decides, so the same
//! logic runs on real sockets and inside a seeded simulation.
//!
//! ```
//! use stampede_core::*;
//!
//! let hat = Sku::new("hat").unwrap();
//! let catalog = Catalog::new([Product {
//!     sku: hat.clone(), name: "Hat".into(), price: Cents(1500),
//!     max_qty_per_order: 5, per_customer_limit: None,
//! }]);
//! let mut shop = ShopState::new(catalog, ShopConfig::default());
//! shop.stock(&hat, 10, 1).unwrap();
//! let placed = shop.place_order(&PlaceOrder {
//!     key: Some(IdempotencyKey::new("k-1").unwrap()),
//!     customer: CustomerId::new("alice").unwrap(),
//!     items: vec![ItemRequest { sku: hat.clone(), qty: 2 }],
//!     express: false,
//! }, Millis(0)).unwrap();
//! let Placed::Created { order, .. } = placed else { panic!() };
//! let lease = shop.lease_job(Millis(1)).unwrap();
//! assert_eq!(lease.kind, JobKind::Reserve);
//! shop.reserve(order, Millis(1), Cause::Worker { job: lease.job }).unwrap();
//! assert_eq!(shop.order(order).unwrap().status(), OrderStatus::InventoryReserved);
//! assert_eq!(shop.inventory().level(&hat).unwrap().reserved, 2);
//! ```

#![deny(missing_docs)]

mod catalog;
mod check;
mod command;
mod feed;
mod history;
mod idempotency;
mod ids;
mod inventory;
mod jobs;
mod money;
mod order;
mod payment;
mod reconcile;
mod shop;
mod time;
mod webhook;

pub use catalog::{
    Catalog, ItemRequest, ItemsRejected, LINES_PER_ORDER_MAX, ORDER_TOTAL_MAX, OrderLine, Product,
    QTY_PER_LINE_MAX,
};
pub use check::{
    Invariant, Judgement, OptOuts, Subject, VIOLATIONS_KEPT_MAX, Verdict, Violation, check,
    check_all, check_except,
};
pub use command::{Command, Reply};
pub use feed::{Change, Changes, Cursor, FEED_CAPACITY, FEED_READ_MAX, Feed};
pub use history::{
    ClientOp, ClientReply, Event, EventKind, History, JobEvent, JourneyStep, PAY_FLOW_ALLOWANCE_MS,
    Terms, Wish,
};
pub use idempotency::{
    Begin, Fingerprint, IdempotencyError, IdempotencyLimits, IdempotencyRecord, IdempotencyStore,
    RecordState,
};
pub use ids::{
    CustomerId, EventId, Holder, IdempotencyKey, IntentId, InvalidId, JobId, OrderId,
    ReservationId, Sku,
};
pub use inventory::{
    Allocation, ConservationBroken, Inventory, InventoryError, Reservation, SEGMENTS_MAX,
    StockLevel,
};
pub use jobs::{
    DeadJob, Failed, Job, JobError, JobKind, JobQueue, JobState, Lease, QueueLimits, RetryPolicy,
};
pub use money::{Cents, MoneyOverflow};
pub use order::{CancelReason, Cause, IllegalTransition, Order, OrderStatus, Transition};
pub use payment::{IntentStatus, LedgerEntry, LedgerKind, PaymentIntent, payment_key, refund_key};
pub use reconcile::{Repair, intent_that_matters, reconcile};
pub use shop::{
    Admission, AuditSnapshot, DEFAULT_CUSTOMER_WINDOW_MS, DEFAULT_SHED_RETRY_AFTER_MS,
    DEFAULT_UNDECIDED_ORDERS_MAX, Inconsistency, PlaceOrder, Placed, SOLD_OUT_WAIT_NO_TTL_MS,
    SOLD_OUT_WAIT_TTLS, SUGGESTED_CUSTOMER_ORDERS_MAX, SavedResponse, ShopConfig, ShopError,
    ShopState, ShopStats, SoldOut, Step, WebhookOutcome,
};
pub use time::Millis;
pub use webhook::{Corroboration, InboxLimits, Received, WebhookEvent, WebhookInbox, WebhookKind};
