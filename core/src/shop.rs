//! The in-memory shop: the reference store's semantics as one value whose
//! methods are the atomic operations the server needs.
//!
//! Every method is one atomic step (the shell holds a lock, or a SQL store
//! runs it as one transaction): it checks the order's current state first,
//! changes everything it changes or nothing, and returns what it did as a
//! value. Side effects of a status change live in one place,
//! [`ShopState::move_order`]: entering `Paid` pins the reservation and
//! enqueues `Finalize`; `Confirmed` commits the stock; `Cancelled` releases it
//! and the customer's purchase-limit holding; and so on.

use crate::catalog::{Catalog, ItemRequest, ItemsRejected, OrderLine};
use crate::feed::{Changes, Cursor, Feed};
use crate::idempotency::{
    Begin, Fingerprint, IdempotencyError, IdempotencyLimits, IdempotencyStore,
};
use crate::ids::{
    CustomerId, Holder, IdempotencyKey, IntentId, JobId, OrderId, ReservationId, Sku,
};
use crate::inventory::{Inventory, InventoryError, Reservation, StockLevel};
use crate::jobs::{
    DeadJob, Failed, JobError, JobKind, JobQueue, JobState, Lease, QueueLimits, RetryPolicy,
};
use crate::money::Cents;
use crate::order::{CancelReason, Cause, IllegalTransition, Order, OrderStatus, Transition};
use crate::payment::{IntentStatus, PaymentIntent};
use crate::time::Millis;
use crate::webhook::{InboxLimits, Received, WebhookEvent, WebhookInbox, WebhookKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

mod consistency;
mod naive;

pub use consistency::Inconsistency;

/// Free job slots an operation requires before it changes anything. One
/// operation enqueues at most this many jobs (a move plus the moves of the
/// parked webhooks it releases), so once the check passes no enqueue inside
/// it can fail half-way.
const JOB_HEADROOM: usize = 4;

/// Reservation TTLs an order may wait, from its creation, for units held by
/// unpaid carts to come back (see [`ShopState::reserve`]): after one TTL
/// (counted from each payment offer) every hold that existed when it started
/// waiting has lapsed; each further TTL covers units freed then, taken by an
/// earlier buyer and abandoned once more — a chain that twelve TTLs cover in
/// all but pathological runs, while a shop without TTLs still gives up.
pub const SOLD_OUT_WAIT_TTLS: u64 = 12;

/// How long an order may wait for held units without reservation TTLs: holds
/// then come back only when their order is cancelled or its payment fails,
/// which no expiry predicts, so the wait is short and fixed.
pub const SOLD_OUT_WAIT_NO_TTL_MS: u64 = 10_000;

/// Knobs of the reference store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopConfig {
    /// Reservation lifetime; `None` never expires (the naive no-TTL design).
    pub reservation_ttl_ms: Option<u64>,
    /// Most orders held.
    pub max_orders: usize,
    /// Idempotency retention and bounds.
    pub idempotency: IdempotencyLimits,
    /// Webhook inbox bounds.
    pub inbox: InboxLimits,
    /// Job queue bounds.
    pub queue: QueueLimits,
    /// Job retry policy.
    pub retry: RetryPolicy,
    /// Longest an order short of stock waits, from its creation, for units
    /// held by unpaid orders before it is cancelled out of stock. `None`:
    /// [`SOLD_OUT_WAIT_TTLS`] reservation TTLs, or [`SOLD_OUT_WAIT_NO_TTL_MS`]
    /// without a TTL (see [`ShopConfig::sold_out_wait_bound_ms`]).
    #[serde(default)]
    pub sold_out_wait_ms: Option<u64>,
    /// Admission control: which new orders the shop refuses at the door
    /// (absent in configs written before it existed: the reference limits).
    #[serde(default)]
    pub admission: Admission,
}

/// Admission control and peak shaping: limits on new orders, each checked
/// when an order is placed and refusing it before anything is written (so
/// a retry with the same Idempotency-Key is a fresh attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// Most orders accepted but not yet decided (their `Reserve` step is
    /// queued or running; orders parked waiting for held stock do not count,
    /// see [`ShopState::undecided_orders`]); one more is shed
    /// ([`ShopError::Shed`]). `None`: accept everything.
    pub max_undecided_orders: Option<usize>,
    /// How long a shed buyer is told to wait before retrying, ms.
    pub shed_retry_after_ms: u64,
    /// Most orders one customer may place per [`Admission::customer_window_ms`]
    /// (anti-scalping); one more is refused ([`ShopError::RateLimited`]).
    /// `None`: no rate limit.
    pub customer_orders_max: Option<u32>,
    /// The rate limit's fixed window, ms.
    pub customer_window_ms: u64,
    /// Refuse an order at once ([`ShopError::SoldOut`]) when a SKU it asks
    /// for cannot be filled even if every unpaid hold came back, instead of
    /// accepting it only to cancel it out of stock.
    pub sold_out_fast_path: bool,
}

impl Admission {
    /// No admission control: every valid order is accepted and queued.
    pub const OFF: Admission = Admission {
        max_undecided_orders: None,
        shed_retry_after_ms: DEFAULT_SHED_RETRY_AFTER_MS,
        customer_orders_max: None,
        customer_window_ms: DEFAULT_CUSTOMER_WINDOW_MS,
        sold_out_fast_path: false,
    };
}

/// Default of [`Admission::max_undecided_orders`], orders.
pub const DEFAULT_UNDECIDED_ORDERS_MAX: usize = 5_000;
/// Default of [`Admission::shed_retry_after_ms`], ms.
pub const DEFAULT_SHED_RETRY_AFTER_MS: u64 = 1_000;
/// The per-customer rate limit an operator typically turns on
/// (`--customer-orders-per-minute`), orders per window. Off by default: a
/// shop's customers may legitimately order often (a business account, a
/// client replaying its own tests), so limiting them is the operator's call.
pub const SUGGESTED_CUSTOMER_ORDERS_MAX: u32 = 20;
/// Default of [`Admission::customer_window_ms`], ms.
pub const DEFAULT_CUSTOMER_WINDOW_MS: u64 = 60_000;

impl Default for Admission {
    /// The reference limits: shed beyond 5,000 undecided orders (retry after
    /// 1 s), sold-out fast path on, no per-customer rate limit (see
    /// [`SUGGESTED_CUSTOMER_ORDERS_MAX`]).
    fn default() -> Admission {
        Admission {
            max_undecided_orders: Some(DEFAULT_UNDECIDED_ORDERS_MAX),
            shed_retry_after_ms: DEFAULT_SHED_RETRY_AFTER_MS,
            customer_orders_max: None,
            customer_window_ms: DEFAULT_CUSTOMER_WINDOW_MS,
            sold_out_fast_path: true,
        }
    }
}

impl ShopConfig {
    /// How long an order short of stock may wait, in ms from its creation.
    pub fn sold_out_wait_bound_ms(&self) -> u64 {
        self.sold_out_wait_ms
            .unwrap_or(match self.reservation_ttl_ms {
                Some(ttl) => ttl.saturating_mul(SOLD_OUT_WAIT_TTLS),
                None => SOLD_OUT_WAIT_NO_TTL_MS,
            })
    }
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig {
            reservation_ttl_ms: Some(15 * 60 * 1000),
            max_orders: 1_000_000,
            idempotency: IdempotencyLimits::default(),
            inbox: InboxLimits::default(),
            queue: QueueLimits::default(),
            retry: RetryPolicy::default(),
            sold_out_wait_ms: None,
            admission: Admission::default(),
        }
    }
}

/// How the reserve step decides that an order is sold out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SoldOut {
    /// From sales (the reference): an order short of stock waits while units
    /// held by unpaid orders could still come back, up to
    /// [`ShopConfig::sold_out_wait_bound_ms`].
    FromSales,
    /// From reservations (naive): cancelled out of stock as soon as fewer
    /// units are available than asked, even when abandoned carts hold them.
    FromReservations,
}

/// A response saved under an idempotency key and replayed verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SavedResponse {
    /// `POST /v1/orders` accepted the order.
    OrderAccepted {
        /// The new order.
        order: OrderId,
        /// Its status when accepted.
        status: OrderStatus,
    },
    /// `POST /v1/orders/{id}/pay` returned the intent's client secret.
    PaymentStarted {
        /// The order.
        order: OrderId,
        /// The PSP intent.
        intent: IntentId,
        /// The amount.
        amount: Cents,
        /// The secret the client confirms the payment with.
        client_secret: String,
    },
}

/// A request to place an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// The client's Idempotency-Key (the reference API requires one).
    pub key: Option<IdempotencyKey>,
    /// Who orders.
    pub customer: CustomerId,
    /// What, without prices.
    pub items: Vec<ItemRequest>,
    /// Express checkout: pay with the customer's saved card as soon as the
    /// stock is reserved (the PSP charges when the intent is created).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub express: bool,
}

impl PlaceOrder {
    /// The fingerprint of the request's canonical form: equal requests (same
    /// customer, same lines in the same order) have equal fingerprints.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut canonical = format!("POST /v1/orders\ncustomer={}\n", self.customer);
        for item in &self.items {
            canonical.push_str(&format!("item={}*{}\n", item.sku, item.qty));
        }
        if self.express {
            canonical.push_str("express\n");
        }
        Fingerprint::of(canonical.as_bytes())
    }
}

/// What [`ShopState::place_order`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placed {
    /// A new order (and its first job) was written.
    Created {
        /// The order.
        order: OrderId,
        /// Its first job.
        job: JobId,
    },
    /// The key was used before for the same request: replay this.
    Replay(SavedResponse),
    /// The key was used before for a different request (422).
    KeyMismatch,
    /// The key's first request is still running (409).
    KeyInFlight,
    /// The idempotency store is full (503).
    KeyStoreFull,
}

/// Why a shop operation did nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ShopError {
    /// The items are not a valid order.
    #[error(transparent)]
    Items(#[from] ItemsRejected),
    /// The customer would hold more of a SKU than allowed.
    #[error(
        "customer {customer} may hold at most {limit} of {sku}; holds {held}, asked for {requested}"
    )]
    PurchaseLimit {
        /// Who.
        customer: CustomerId,
        /// What.
        sku: Sku,
        /// The limit.
        limit: u32,
        /// Already held in live orders.
        held: u64,
        /// Asked for now.
        requested: u32,
    },
    /// No such order.
    #[error("no order {0}")]
    UnknownOrder(OrderId),
    /// The state machine refused.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The inventory refused.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The job queue refused.
    #[error(transparent)]
    Jobs(#[from] JobError),
    /// The idempotency protocol was misused by the shell.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// The shop holds its maximum number of orders.
    #[error("the shop holds its maximum of {0} orders")]
    TooManyOrders(usize),
    /// The webhook inbox is full.
    #[error("the webhook inbox is full")]
    InboxFull,
    /// Shed: the shop already holds its most undecided orders
    /// ([`Admission::max_undecided_orders`]).
    #[error(
        "{undecided} orders are waiting for a decision (limit {limit}); retry in {retry_after_ms} ms"
    )]
    Shed {
        /// Orders accepted and not yet decided.
        undecided: usize,
        /// The limit.
        limit: usize,
        /// When to retry, ms from now.
        retry_after_ms: u64,
    },
    /// The customer placed its most orders in this window
    /// ([`Admission::customer_orders_max`]).
    #[error(
        "customer {customer} may place {limit} orders per {window_ms} ms; retry in {retry_after_ms} ms"
    )]
    RateLimited {
        /// Who.
        customer: CustomerId,
        /// The limit, orders per window.
        limit: u32,
        /// The window, ms.
        window_ms: u64,
        /// When the window ends, ms from now.
        retry_after_ms: u64,
    },
    /// A SKU asked for cannot be filled even if every unpaid hold came back
    /// ([`Admission::sold_out_fast_path`]).
    #[error(
        "{sku} is sold out: {left} unit(s) left or held by unpaid orders, {requested} asked for"
    )]
    SoldOut {
        /// The SKU.
        sku: Sku,
        /// Units on the shelf or held by unpaid orders.
        left: u64,
        /// Units asked for.
        requested: u32,
    },
    /// The order cannot be cancelled from its status.
    #[error("{order} cannot be cancelled: it is {status}")]
    NotCancellable {
        /// The order.
        order: OrderId,
        /// Its status.
        status: OrderStatus,
    },
}

/// The result of a state-checked step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The order moved (one or more transitions, oldest first).
    Moved(Vec<Transition>),
    /// The order was not in a state this step applies to: nothing changed.
    Skipped(OrderStatus),
    /// The step found nothing to act on (no intent at the PSP to apply or
    /// refund), or the design leaves it to another task: nothing changed.
    NothingToDo,
    /// A refund job was scheduled (or already was) for money that cannot be kept.
    RefundScheduled,
    /// Short of stock, but units held by unpaid orders could come back: the
    /// order stays `created` and a new `Reserve` job, written in the same
    /// step, runs at `until`. The job that got this answer is done (ack it).
    Wait {
        /// When the order's stock is looked at again.
        until: Millis,
    },
}

/// What a webhook did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookOutcome {
    /// Seen before; nothing done.
    Duplicate,
    /// Early: kept until the order can take it.
    Parked,
    /// Applied to the order.
    Applied(Step),
}

/// Everything an auditor needs: the shop's state at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSnapshot {
    /// When it was taken.
    pub at: Millis,
    /// Every order, with its transition history.
    pub orders: Vec<Order>,
    /// Stock counters per SKU.
    pub stock: BTreeMap<Sku, StockLevel>,
    /// Live reservations.
    pub reservations: Vec<Reservation>,
    /// The local mirror of PSP intents.
    pub intents: Vec<PaymentIntent>,
    /// Live jobs.
    pub jobs_live: usize,
    /// Jobs given up on.
    pub dead_letters: Vec<DeadJob>,
    /// Dead letters dropped because the list was full.
    pub dead_dropped: u64,
    /// Webhook events parked for orders that could not take them yet.
    pub webhooks_parked: usize,
    /// Idempotency records held.
    pub idempotency_records: usize,
}

impl AuditSnapshot {
    /// What, in the shop's own state, says the world has not settled at
    /// [`AuditSnapshot::at`]: live jobs, webhooks still parked, reservations
    /// past their TTL that nobody expired. Empty means settled as far as the
    /// store can tell; a shell adds what only it can see (the PSP's pending
    /// deliveries). Liveness is judged either way: this says *why* a verdict
    /// may show stuck orders, it never excuses them.
    pub fn unsettled(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.jobs_live > 0 {
            reasons.push(format!("{} jobs live", self.jobs_live));
        }
        if self.webhooks_parked > 0 {
            reasons.push(format!("{} webhook events parked", self.webhooks_parked));
        }
        let lapsed = self
            .reservations
            .iter()
            .filter(|r| r.expires_at.is_some_and(|t| t <= self.at))
            .count();
        if lapsed > 0 {
            reasons.push(format!("{lapsed} reservations past their TTL"));
        }
        reasons
    }
}

/// Cheap counts for metrics (no order is copied).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopStats {
    /// Orders per status name.
    pub orders_by_status: BTreeMap<String, u64>,
    /// Live jobs.
    pub jobs_live: u64,
    /// Dead letters kept.
    pub dead_letters: u64,
    /// Parked webhook events.
    pub webhooks_parked: u64,
    /// Idempotency records.
    pub idempotency_records: u64,
    /// Stock per SKU.
    pub stock: BTreeMap<Sku, StockLevel>,
}

/// A map with composite keys, serialised as a list of `[key, value]` pairs.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// The reference store's whole state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopState {
    config: ShopConfig,
    catalog: Catalog,
    inventory: Inventory,
    orders: BTreeMap<OrderId, Order>,
    keys: IdempotencyStore<SavedResponse>,
    intents: BTreeMap<OrderId, PaymentIntent>,
    inbox: WebhookInbox,
    jobs: JobQueue,
    /// Serialised as `[[customer, sku], units]` pairs: JSON keys are strings.
    #[serde(with = "pairs")]
    holdings: BTreeMap<(CustomerId, Sku), u64>,
    refunds_scheduled: BTreeSet<OrderId>,
    /// The follow-up `Reserve` job of each order waiting for stock, so a
    /// redelivered job that decides to wait again reuses it instead of
    /// starting a second chain. Entries go when the order leaves `created`.
    #[serde(default)]
    waiting: BTreeMap<OrderId, JobId>,
    next_order: u64,
    /// Every status an order was given, newest last (bounded ring).
    #[serde(default)]
    feed: Feed,
    /// Orders placed per customer in the current rate-limit window.
    #[serde(default)]
    placed_in_window: CustomerWindow,
    /// Set by [`ShopState::apply`] once a naive command that breaks the
    /// shop's consistency on purpose has changed the state: the consistency
    /// check then stands down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    naive_primitives_used: bool,
}

/// Orders placed per customer in one fixed window of
/// [`Admission::customer_window_ms`]; emptied when the window moves on, so
/// it holds at most the customers of one window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CustomerWindow {
    /// The window's number (`now / customer_window_ms`).
    window: u64,
    counts: BTreeMap<CustomerId, u32>,
}

impl ShopState {
    /// A shop selling `catalog` with no stock yet (see [`ShopState::stock`]).
    pub fn new(catalog: Catalog, config: ShopConfig) -> ShopState {
        ShopState {
            config,
            catalog,
            inventory: Inventory::new(),
            orders: BTreeMap::new(),
            keys: IdempotencyStore::new(config.idempotency),
            intents: BTreeMap::new(),
            inbox: WebhookInbox::new(config.inbox),
            jobs: JobQueue::new(config.queue, config.retry),
            holdings: BTreeMap::new(),
            refunds_scheduled: BTreeSet::new(),
            waiting: BTreeMap::new(),
            next_order: 0,
            feed: Feed::new(),
            placed_in_window: CustomerWindow::default(),
            naive_primitives_used: false,
        }
    }

    /// Puts `qty` units of `sku` on the shelf, split over `segments`
    /// sub-counters the first time the SKU is stocked.
    pub fn stock(&mut self, sku: &Sku, qty: u64, segments: usize) -> Result<(), ShopError> {
        if self.catalog.get(sku).is_none() {
            return Err(ItemsRejected::UnknownSku { sku: sku.clone() }.into());
        }
        Ok(self.inventory.add_sku(sku.clone(), qty, segments)?)
    }

    /// Puts `qty` more units of `sku` on the shelf at `now`, and wakes the
    /// orders waiting for it that the shelf now fills, first come first
    /// served, as a returned unit does: a waiter is never passed over by a
    /// newcomer while units it asked for sit on the shelf.
    pub fn restock(&mut self, sku: &Sku, qty: u64, now: Millis) -> Result<(), ShopError> {
        self.stock(sku, qty, 1)?;
        self.wake_waiters(sku, now);
        Ok(())
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configuration.
    pub fn config(&self) -> &ShopConfig {
        &self.config
    }

    /// The inventory (read-only).
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// An order.
    pub fn order(&self, id: OrderId) -> Option<&Order> {
        self.orders.get(&id)
    }

    /// How many orders the shop holds.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// All orders by id.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    /// The local mirror of an order's PSP intent.
    pub fn intent(&self, order: OrderId) -> Option<&PaymentIntent> {
        self.intents.get(&order)
    }

    /// The job queue (read-only).
    pub fn jobs(&self) -> &JobQueue {
        &self.jobs
    }

    /// The idempotency records (read-only).
    pub fn keys(&self) -> &IdempotencyStore<SavedResponse> {
        &self.keys
    }

    /// The webhook inbox (read-only).
    pub fn inbox(&self) -> &WebhookInbox {
        &self.inbox
    }

    /// The change feed (see [`crate::feed`]).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Up to `max` status changes after `since`; `None` asks for the head
    /// (no changes, a cursor for what happens from now on).
    pub fn changes_since(&self, since: Option<Cursor>, max: usize) -> Changes {
        match since {
            Some(cursor) => self.feed.changes_since(cursor, max),
            None => Changes {
                changes: Vec::new(),
                next: self.feed.head(),
                complete: true,
            },
        }
    }

    /// Moves the feed to an epoch after `live_epoch` (the feed of the state
    /// this one replaces), so every cursor handed out before reads as
    /// incomplete: restoring a snapshot can make sequence numbers go back.
    pub fn renew_feed_epoch_after(&mut self, live_epoch: u64) {
        self.feed.renew_epoch_after(live_epoch);
    }

    /// Keeps this state from handing out an id `other` already handed out:
    /// for a state restored from an older copy of `other` (a store that lost
    /// its unsynced tail), whose id counters went back. Raises the order,
    /// job, lease-token and reservation counters to at least `other`'s and
    /// moves the feed past `other`'s epoch.
    pub fn keep_ids_past(&mut self, other: &ShopState) {
        self.next_order = self.next_order.max(other.next_order);
        self.jobs.keep_ids_past(&other.jobs);
        self.inventory.keep_ids_past(&other.inventory);
        self.feed.renew_epoch_after(other.feed.epoch());
    }

    /// Outbox-style order placement: the idempotency decision, validation,
    /// the order and its first job (`Reserve`) are one atomic step, and the
    /// response is saved under the key in the same step, so no crash can
    /// leave an order without its job or a key without its order.
    pub fn place_order(&mut self, request: &PlaceOrder, now: Millis) -> Result<Placed, ShopError> {
        let fingerprint = request.fingerprint();
        if let Some(key) = &request.key {
            match self.keys.begin(key, fingerprint, now) {
                Begin::New => {}
                Begin::Replay(saved) => return Ok(Placed::Replay(saved)),
                Begin::Mismatch => return Ok(Placed::KeyMismatch),
                Begin::InFlight => return Ok(Placed::KeyInFlight),
                Begin::AtCapacity => return Ok(Placed::KeyStoreFull),
            }
        }
        match self.create_order(request, None, true, now) {
            Ok((order, job)) => {
                if let Some(key) = &request.key {
                    let saved = SavedResponse::OrderAccepted {
                        order,
                        status: OrderStatus::Created,
                    };
                    self.keys.complete(key, fingerprint, saved, now)?;
                }
                let job = job.expect("placed with its job");
                Ok(Placed::Created { order, job })
            }
            Err(err) => {
                // Validation failures are not saved (Stripe): free the key.
                if let Some(key) = &request.key {
                    self.keys.abandon(key, fingerprint)?;
                }
                Err(err)
            }
        }
    }

    fn create_order(
        &mut self,
        request: &PlaceOrder,
        unit_prices: Option<&[Cents]>,
        with_job: bool,
        now: Millis,
    ) -> Result<(OrderId, Option<JobId>), ShopError> {
        let (mut lines, mut total) = self.catalog.price_items(&request.items)?;
        if let Some(prices) = unit_prices {
            // The naive client-supplied-price design: the client's number wins.
            for (line, price) in lines.iter_mut().zip(prices) {
                line.unit_price = *price;
            }
            total = Cents::checked_sum(
                lines
                    .iter()
                    .map(|l| l.unit_price.checked_mul(l.qty).unwrap_or(Cents(u64::MAX))),
            )
            .map_err(|_| ItemsRejected::TotalOverflow)?;
        }
        for line in &lines {
            let limit = self
                .catalog
                .get(&line.sku)
                .and_then(|p| p.per_customer_limit);
            let held = self.held(&request.customer, &line.sku);
            if let Some(limit) = limit
                && held + u64::from(line.qty) > u64::from(limit)
            {
                return Err(ShopError::PurchaseLimit {
                    customer: request.customer.clone(),
                    sku: line.sku.clone(),
                    limit,
                    held,
                    requested: line.qty,
                });
            }
        }
        self.admit(&request.customer, &lines, now)?;
        if self.orders.len() >= self.config.max_orders {
            return Err(ShopError::TooManyOrders(self.orders.len()));
        }
        if !self.jobs.has_room(1) {
            return Err(JobError::QueueFull(self.jobs.depth()).into());
        }
        self.count_placement(&request.customer, now);
        self.next_order += 1;
        let id = OrderId(self.next_order);
        for line in &lines {
            *self
                .holdings
                .entry((request.customer.clone(), line.sku.clone()))
                .or_default() += u64::from(line.qty);
        }
        let mut order = Order::new(
            id,
            request.customer.clone(),
            lines,
            total,
            now,
            request.key.clone(),
        );
        order.express = request.express;
        self.orders.insert(id, order);
        self.feed.push(id, OrderStatus::Created);
        let job = if with_job {
            Some(self.jobs.enqueue(JobKind::Reserve, id, now)?)
        } else {
            None
        };
        Ok((id, job))
    }

    /// Admission control ([`Admission`]), checked before anything is
    /// written: the sold-out fast path, the customer's rate limit, then the
    /// bound on undecided orders.
    fn admit(
        &self,
        customer: &CustomerId,
        lines: &[OrderLine],
        now: Millis,
    ) -> Result<(), ShopError> {
        let admission = self.config.admission;
        if admission.sold_out_fast_path {
            for line in lines {
                let left = self.could_come_back(&line.sku);
                if left < u64::from(line.qty) {
                    return Err(ShopError::SoldOut {
                        sku: line.sku.clone(),
                        left,
                        requested: line.qty,
                    });
                }
            }
        }
        if let Some(limit) = admission.customer_orders_max {
            let window_ms = admission.customer_window_ms.max(1);
            let window = now.0 / window_ms;
            let placed = match self.placed_in_window.window == window {
                true => self.placed_in_window.counts.get(customer).copied(),
                false => None,
            };
            if placed.unwrap_or(0) >= limit {
                return Err(ShopError::RateLimited {
                    customer: customer.clone(),
                    limit,
                    window_ms,
                    retry_after_ms: (window + 1) * window_ms - now.0,
                });
            }
        }
        if let Some(limit) = admission.max_undecided_orders {
            let undecided = self.undecided_orders();
            if undecided >= limit {
                return Err(ShopError::Shed {
                    undecided,
                    limit,
                    retry_after_ms: admission.shed_retry_after_ms,
                });
            }
        }
        Ok(())
    }

    /// Counts an accepted order against its customer's rate limit.
    fn count_placement(&mut self, customer: &CustomerId, now: Millis) {
        let Some(_) = self.config.admission.customer_orders_max else {
            return;
        };
        let window = now.0 / self.config.admission.customer_window_ms.max(1);
        if self.placed_in_window.window != window {
            self.placed_in_window = CustomerWindow {
                window,
                counts: BTreeMap::new(),
            };
        }
        *self
            .placed_in_window
            .counts
            .entry(customer.clone())
            .or_default() += 1;
    }

    /// Orders accepted and not yet decided, not counting those parked
    /// waiting for held stock: their `Reserve` job is queued or running. The
    /// queue is the work that delays decisions; a parked waiter costs nothing
    /// until units come back, and its wait has its own bound
    /// ([`ShopConfig::sold_out_wait_bound_ms`]).
    pub fn undecided_orders(&self) -> usize {
        self.jobs
            .lane_depth(JobKind::Reserve)
            .saturating_sub(self.waiting.len())
    }

    /// Refuses an operation up front when the job queue could overflow during it.
    fn ensure_job_room(&self) -> Result<(), ShopError> {
        if self.jobs.has_room(JOB_HEADROOM) {
            Ok(())
        } else {
            Err(JobError::QueueFull(self.jobs.depth()).into())
        }
    }

    fn held(&self, customer: &CustomerId, sku: &Sku) -> u64 {
        self.holdings
            .get(&(customer.clone(), sku.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Starts a keyed request other than order placement (e.g. `/pay`):
    /// Stripe's two-phase protocol. Finish with [`ShopState::complete_key`] or
    /// [`ShopState::abandon_key`].
    pub fn begin_key(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        now: Millis,
    ) -> Begin<SavedResponse> {
        self.keys.begin(key, fingerprint, now)
    }

    /// [`ShopState::begin_key`] for a request run by `holder`.
    pub fn begin_key_as(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        now: Millis,
        holder: Option<Holder>,
    ) -> Begin<SavedResponse> {
        self.keys.begin_as(key, fingerprint, now, holder)
    }

    /// Saves the response of a keyed request begun with [`ShopState::begin_key`].
    pub fn complete_key(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        response: SavedResponse,
        now: Millis,
    ) -> Result<(), ShopError> {
        Ok(self.keys.complete(key, fingerprint, response, now)?)
    }

    /// Frees a keyed request's key: it had no effect and may be retried.
    pub fn abandon_key(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<(), ShopError> {
        Ok(self.keys.abandon(key, fingerprint)?)
    }

    /// Frees every key held in flight, as if each request holding one had
    /// abandoned it; returns how many. For a shop whose every earlier request
    /// died with its process: a `/pay` interrupted by a crash would otherwise
    /// hold its key until the in-flight timeout lapses, refusing the buyer's
    /// retries while the cart's hold runs out. Re-running such a request is
    /// safe — it is exactly the takeover of a stale lock, sooner.
    pub fn release_keys_in_flight(&mut self) -> usize {
        self.keys.release_in_flight()
    }

    /// Ends every job lease at `now` (each job ready at once, its lease's
    /// token stale); returns how many. For a shop whose workers all died with
    /// their process: their jobs would otherwise wait out the visibility
    /// timeout before anyone ran them again. Steps are state-checked, so
    /// running one again is safe — it is a lapsed lease, sooner.
    pub fn release_leases(&mut self, now: Millis) -> usize {
        self.jobs.release_leases(now)
    }

    /// Frees the keys `holder` holds in flight and ends its job leases at
    /// `now`, as [`ShopState::release_keys_in_flight`] and
    /// [`ShopState::release_leases`] do for every holder; returns how many
    /// keys and leases together. For a store several processes share, when
    /// one of them is gone: what it held is free at once, not after the
    /// key's in-flight timeout (30 s) or the lease's visibility timeout.
    pub fn release_holder(&mut self, holder: Holder, now: Millis) -> usize {
        self.keys.release_held_by(holder) + self.jobs.release_leases_of(holder, now)
    }

    /// The `Reserve` job's step: if the order is still `Created`, reserve all
    /// its lines (→ `InventoryReserved`, enqueue `CreateIntent`). Short of
    /// stock, the order is sold out only when the missing units are sold or
    /// pinned by paid orders: while unpaid orders hold enough of them (carts
    /// that may be abandoned), it waits — [`Step::Wait`] — for at most
    /// [`ShopConfig::sold_out_wait_bound_ms`] from its creation, and is then
    /// cancelled out of stock.
    pub fn reserve(&mut self, id: OrderId, now: Millis, cause: Cause) -> Result<Step, ShopError> {
        self.reserve_step(id, now, cause, true, SoldOut::FromSales)
    }

    /// The reserve steps. `state_checked: false` is `worker_state_check=off`:
    /// the order's status is not looked at first, so a redelivered job takes
    /// a second reservation (an orphan, see `take_reservation`). Availability
    /// is always checked atomically; only a `Created` order waits or is
    /// cancelled out of stock.
    fn reserve_step(
        &mut self,
        id: OrderId,
        now: Millis,
        cause: Cause,
        state_checked: bool,
        sold_out: SoldOut,
    ) -> Result<Step, ShopError> {
        let order = self.orders.get(&id).ok_or(ShopError::UnknownOrder(id))?;
        let status = order.status();
        if state_checked && status != OrderStatus::Created {
            return Ok(Step::Skipped(status));
        }
        let lines = order_lines(order);
        self.ensure_job_room()?;
        match self
            .inventory
            .reserve(id, &lines, now, self.config.reservation_ttl_ms, id.0)
        {
            Ok(reservation) => self.take_reservation(id, status, reservation, now, cause),
            Err(InventoryError::OutOfStock { .. }) => {
                let to = OrderStatus::Cancelled(CancelReason::OutOfStock);
                if !status.can_become(to) {
                    return Ok(Step::Skipped(status));
                }
                let wait = match sold_out {
                    SoldOut::FromSales => self.sold_out_wait(id, &lines, now),
                    SoldOut::FromReservations => None,
                };
                let step = match wait {
                    Some(until) => self.wait_for_stock(id, now, until)?,
                    None => Step::Moved(self.move_order(id, to, now, cause)?),
                };
                // What this order could not use (it was short of another
                // line, or woken behind a faster buyer) may fill a waiter.
                for (sku, _) in &lines {
                    self.wake_waiters(sku, now);
                }
                Ok(step)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A reservation just taken: a `Created` order takes it and becomes
    /// reserved. Only a naive step (unchecked, or from a stale read) reaches
    /// here for another order, which already has (or had) one, so this
    /// second reservation is an orphan no order points at — the sweeper gives
    /// it back once it lapses, and without a TTL it holds stock for ever.
    fn take_reservation(
        &mut self,
        id: OrderId,
        status: OrderStatus,
        reservation: ReservationId,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        debug_assert_eq!(
            self.inventory.reservation(reservation).map(|r| r.order),
            Some(id),
            "a reservation taken for {id} is held for it"
        );
        if status != OrderStatus::Created {
            return Ok(Step::Skipped(status));
        }
        self.orders
            .get_mut(&id)
            .expect("caller checked")
            .reservation = Some(reservation);
        let moved = self.move_order(id, OrderStatus::InventoryReserved, now, cause)?;
        Ok(Step::Moved(moved))
    }

    /// Until when an order short of stock waits, or `None` when it is sold
    /// out: some short line could not be filled even if every unpaid hold
    /// came back (the units are sold or pinned), or the order has waited its
    /// bound. A waiting order's next `Reserve` job is scheduled at the bound
    /// and brought forward when units of a SKU it wants come back (see
    /// [`ShopState::wake_waiters`]); when its hope goes, a payment cancels it
    /// (see [`ShopState::cancel_hopeless`]), so nothing polls while it waits.
    fn sold_out_wait(&self, id: OrderId, lines: &[(Sku, u64)], now: Millis) -> Option<Millis> {
        let created = self.orders[&id].created_at;
        let deadline = created.plus_ms(self.config.sold_out_wait_bound_ms());
        if now >= deadline {
            return None;
        }
        let hopeful = lines
            .iter()
            .all(|(sku, qty)| self.could_come_back(sku) >= *qty);
        hopeful.then_some(deadline)
    }

    /// Units of `sku` on the shelf or held by unpaid orders: the most a
    /// waiting order could still get.
    fn could_come_back(&self, sku: &Sku) -> u64 {
        let available = self.inventory.level(sku).map_or(0, |l| l.available);
        available.saturating_add(self.inventory.held_unpinned(sku))
    }

    /// Keeps a `Created` order waiting: its follow-up `Reserve` job runs at
    /// `until`, unless one not yet leased is already scheduled (the step ran
    /// again after a redelivery), which is kept.
    fn wait_for_stock(
        &mut self,
        id: OrderId,
        now: Millis,
        until: Millis,
    ) -> Result<Step, ShopError> {
        let scheduled = self.waiting.get(&id).and_then(|job| self.jobs.job(*job));
        if let Some(job) = scheduled
            && let JobState::Ready { at } = job.state
        {
            return Ok(Step::Wait { until: at });
        }
        let job = self.jobs.enqueue_at(JobKind::Reserve, id, now, until)?;
        self.waiting.insert(id, job);
        Ok(Step::Wait { until })
    }

    /// Units of `sku` are on the shelf (they came back, or an attempt left
    /// them untaken): wake the orders waiting for it that the shelf can fill
    /// whole, first come first served (by order id), counting those already
    /// woken and not yet run as taking their share — so a thousand waiters
    /// behind one returned unit cost one job run, not a thousand. A waiter
    /// the shelf cannot fill whole (more than is left of some line) is passed
    /// over and keeps its place; so a waiter that just failed never wakes
    /// itself, and two waiters short of another SKU never wake each other.
    fn wake_waiters(&mut self, sku: &Sku, now: Millis) {
        let mut left: BTreeMap<&Sku, u64> = BTreeMap::new();
        let mut woken = Vec::new();
        for (id, job) in &self.waiting {
            let shelf = |s: &Sku| self.inventory.level(s).map_or(0, |l| l.available);
            if *left.entry(sku).or_insert_with(|| shelf(sku)) == 0 {
                break;
            }
            let Some(order) = self.orders.get(id) else {
                continue;
            };
            if order.qty_of(sku) == 0 {
                continue;
            }
            let fits = order.lines.iter().all(|line| {
                u64::from(line.qty) <= *left.entry(&line.sku).or_insert_with(|| shelf(&line.sku))
            });
            if !fits {
                continue;
            }
            for line in &order.lines {
                if let Some(units) = left.get_mut(&line.sku) {
                    *units = units.saturating_sub(u64::from(line.qty));
                }
            }
            if !self.jobs.is_due(*job, now) {
                woken.push(*job);
            }
        }
        for job in woken {
            self.jobs.wake(job, now);
        }
    }

    /// Units of `sku` were pinned by a payment: the orders waiting for it that
    /// can no longer be filled (they want more of it than could still come
    /// back) are cancelled out of stock now, in this operation, and their
    /// parked follow-up jobs withdrawn — a sold-out waitlist closes in one
    /// store write, not one job run per waiter. A waiter whose job is due or
    /// being run is left to that job, which decides the same way. `cause` is
    /// the payment's.
    fn cancel_hopeless(
        &mut self,
        sku: &Sku,
        now: Millis,
        cause: &Cause,
    ) -> Result<Vec<Transition>, ShopError> {
        let hope = self.could_come_back(sku);
        let hopeless: Vec<(OrderId, JobId)> = self
            .waiting
            .iter()
            .filter(|(order, job)| {
                self.orders
                    .get(order)
                    .map_or(0, |o| u64::from(o.qty_of(sku)))
                    > hope
                    && !self.jobs.is_due(**job, now)
            })
            .map(|(order, job)| (*order, *job))
            .collect();
        let mut moved = Vec::new();
        for (order, job) in hopeless {
            let to = OrderStatus::Cancelled(CancelReason::OutOfStock);
            moved.extend(self.move_order(order, to, now, cause.clone())?);
            let withdrawn = self.jobs.withdraw(job);
            debug_assert!(withdrawn, "a parked job is ready, so it can be withdrawn");
        }
        Ok(moved)
    }

    /// Returns a reservation's units to the shelf and wakes the orders
    /// waiting for them.
    fn release_reservation(&mut self, rid: ReservationId, now: Millis) -> Result<(), ShopError> {
        let released = self.inventory.release(rid)?;
        let skus: BTreeSet<&Sku> = released.allocations.iter().map(|a| &a.sku).collect();
        for sku in skus {
            self.wake_waiters(sku, now);
        }
        Ok(())
    }

    /// The `CreateIntent` job's step after the PSP answered: record the intent
    /// and move to `PaymentPending` (then apply the intent's state, in case
    /// the customer already paid). A cancelled order gets its intent cancelled.
    pub fn record_intent(
        &mut self,
        intent: PaymentIntent,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        let id = intent.order;
        let status = self.status_of(id)?;
        self.ensure_job_room()?;
        match status {
            OrderStatus::InventoryReserved => {
                self.orders.get_mut(&id).expect("checked").intent = Some(intent.id.clone());
                self.intents.insert(id, intent.clone());
                let mut moved =
                    self.move_order(id, OrderStatus::PaymentPending, now, cause.clone())?;
                if let Step::Moved(more) = self.apply_intent(&intent, now, cause)? {
                    moved.extend(more);
                }
                Ok(Step::Moved(moved))
            }
            OrderStatus::Cancelled(_) if intent.status == IntentStatus::RequiresPayment => {
                self.intents.insert(id, intent);
                self.jobs.enqueue(JobKind::CancelIntent, id, now)?;
                Ok(Step::Skipped(status))
            }
            _ => self.apply_intent(&intent, now, cause),
        }
    }

    /// Applies the PSP's authoritative view of an intent to its order:
    /// succeeded → `Paid` (or a refund, if the order can no longer be
    /// fulfilled); failed → `Cancelled(PaymentFailed)`. Anything already
    /// applied is skipped, so applying twice is harmless.
    pub fn apply_payment(
        &mut self,
        intent: &PaymentIntent,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        self.ensure_job_room()?;
        self.apply_intent(intent, now, cause)
    }

    /// The status of order `id`, or [`ShopError::UnknownOrder`].
    fn status_of(&self, id: OrderId) -> Result<OrderStatus, ShopError> {
        self.orders
            .get(&id)
            .map(Order::status)
            .ok_or(ShopError::UnknownOrder(id))
    }

    fn apply_intent(
        &mut self,
        intent: &PaymentIntent,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        use OrderStatus::*;
        let id = intent.order;
        let status = self.status_of(id)?;
        match (intent.status, status) {
            (IntentStatus::Succeeded, _) if self.is_stray(intent) => {
                // Never kept, and it pays for nothing.
                self.jobs.enqueue(JobKind::RefundStray, id, now)?;
                Ok(Step::RefundScheduled)
            }
            (IntentStatus::Succeeded, InventoryReserved | PaymentPending) => {
                self.adopt_intent(intent);
                let mut moved = Vec::new();
                if status == InventoryReserved {
                    moved.extend(self.move_order(id, PaymentPending, now, cause.clone())?);
                }
                moved.extend(self.move_order(id, Paid, now, cause)?);
                Ok(Step::Moved(moved))
            }
            (IntentStatus::Succeeded, Cancelled(_)) if intent.net_captured() > Cents::ZERO => {
                self.adopt_intent(intent);
                self.schedule_refund(id, now)?;
                Ok(Step::RefundScheduled)
            }
            (IntentStatus::Failed, InventoryReserved | PaymentPending)
                if self.orders[&id]
                    .intent
                    .as_ref()
                    .is_none_or(|own| *own == intent.id) =>
            {
                self.adopt_intent(intent);
                let moved =
                    self.move_order(id, Cancelled(CancelReason::PaymentFailed), now, cause)?;
                Ok(Step::Moved(moved))
            }
            _ => {
                // Keep the mirror of the order's own intent current (e.g. canceled).
                if self.orders[&id].intent.as_ref() == Some(&intent.id) {
                    self.intents.insert(id, intent.clone());
                }
                Ok(Step::Skipped(status))
            }
        }
    }

    /// Whether `intent` is a stray payment for its (known) order: see
    /// [`Order::is_stray_payment`]. Such money is refunded
    /// ([`JobKind::RefundStray`]) and never moves the order.
    pub fn is_stray(&self, intent: &PaymentIntent) -> bool {
        self.orders.get(&intent.order).is_some_and(|order| {
            order.is_stray_payment(intent, order.asked(self.intents.get(&intent.order)))
        })
    }

    /// The intent that pays (or failed to pay) the order becomes its own.
    fn adopt_intent(&mut self, intent: &PaymentIntent) {
        let order = self.orders.get_mut(&intent.order).expect("caller checked");
        order.intent = Some(intent.id.clone());
        self.intents.insert(intent.order, intent.clone());
    }

    fn schedule_refund(&mut self, id: OrderId, now: Millis) -> Result<(), ShopError> {
        if self.refunds_scheduled.insert(id)
            && let Err(err) = self.jobs.enqueue(JobKind::Refund, id, now)
        {
            self.refunds_scheduled.remove(&id);
            return Err(err.into());
        }
        Ok(())
    }

    /// A verified webhook: dedup by event id, park it if its order cannot take
    /// it yet (unknown, or not reserved yet), otherwise apply it.
    pub fn receive_webhook(
        &mut self,
        event: WebhookEvent,
        now: Millis,
    ) -> Result<WebhookOutcome, ShopError> {
        if self.inbox.has_seen(&event.id) {
            return Ok(WebhookOutcome::Duplicate);
        }
        self.ensure_job_room()?;
        let early = self
            .orders
            .get(&event.order)
            .is_none_or(|o| o.status() == OrderStatus::Created);
        if early && !self.inbox.can_park() {
            return Err(ShopError::InboxFull);
        }
        match self.inbox.receive(&event, now) {
            Received::Fresh => {}
            Received::Duplicate => return Ok(WebhookOutcome::Duplicate),
            Received::Full => return Err(ShopError::InboxFull),
        }
        if early {
            self.inbox.park(event);
            return Ok(WebhookOutcome::Parked);
        }
        Ok(WebhookOutcome::Applied(self.apply_event(&event, now)?))
    }

    fn apply_event(&mut self, event: &WebhookEvent, now: Millis) -> Result<Step, ShopError> {
        let cause = Cause::Webhook {
            event: event.id.clone(),
        };
        let (status, refunded) = match event.kind {
            WebhookKind::PaymentSucceeded => (IntentStatus::Succeeded, Cents::ZERO),
            WebhookKind::PaymentFailed => (IntentStatus::Failed, Cents::ZERO),
            WebhookKind::Refunded => (IntentStatus::Succeeded, event.amount),
        };
        let intent = PaymentIntent {
            id: event.intent.clone(),
            order: event.order,
            amount: event.amount,
            status,
            refunded,
        };
        if event.kind == WebhookKind::Refunded {
            return self.mark_refunded(&intent, now, cause);
        }
        self.apply_intent(&intent, now, cause)
    }

    /// The `Finalize` job's step: a `Paid` order commits its stock and is `Confirmed`.
    pub fn finalize(&mut self, id: OrderId, now: Millis, cause: Cause) -> Result<Step, ShopError> {
        self.transition_if(id, OrderStatus::Paid, OrderStatus::Confirmed, now, cause)
    }

    /// The `Refund` job's step after the PSP refunded: the order is `Refunded`.
    pub fn mark_refunded(
        &mut self,
        intent: &PaymentIntent,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        let id = intent.order;
        let status = self.status_of(id)?;
        if !matches!(status, OrderStatus::Paid | OrderStatus::Cancelled(_)) {
            return Ok(Step::Skipped(status));
        }
        self.intents.insert(id, intent.clone());
        self.refunds_scheduled.remove(&id);
        Ok(Step::Moved(self.move_order(
            id,
            OrderStatus::Refunded,
            now,
            cause,
        )?))
    }

    /// Compare-and-set on status: moves `id` from `expected` to `to`, or
    /// reports the actual status and changes nothing.
    pub fn transition_if(
        &mut self,
        id: OrderId,
        expected: OrderStatus,
        to: OrderStatus,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        let status = self.status_of(id)?;
        if status != expected {
            return Ok(Step::Skipped(status));
        }
        self.ensure_job_room()?;
        Ok(Step::Moved(self.move_order(id, to, now, cause)?))
    }

    /// The customer cancels: an unpaid order is cancelled and its stock
    /// released. A paid or final order cannot be cancelled.
    pub fn cancel(&mut self, id: OrderId, now: Millis) -> Result<Step, ShopError> {
        let status = self.status_of(id)?;
        match status {
            OrderStatus::Created | OrderStatus::InventoryReserved | OrderStatus::PaymentPending => {
                self.ensure_job_room()?;
                Ok(Step::Moved(self.move_order(
                    id,
                    OrderStatus::Cancelled(CancelReason::ByCustomer),
                    now,
                    Cause::Customer,
                )?))
            }
            OrderStatus::Cancelled(CancelReason::ByCustomer) => Ok(Step::Skipped(status)),
            _ => Err(ShopError::NotCancellable { order: id, status }),
        }
    }

    /// The sweeper: cancels up to `max` orders whose reservation lapsed and
    /// releases their stock. Returns the transitions made.
    pub fn expire_reservations(
        &mut self,
        now: Millis,
        max: usize,
    ) -> Result<Vec<Transition>, ShopError> {
        let due: Vec<_> = self.inventory.due(now).take(max).collect();
        let mut moved = Vec::new();
        for rid in due {
            // Each expiry is atomic; when the queue is too full for the next
            // one, stop and let the next sweep continue.
            if !self.jobs.has_room(JOB_HEADROOM) {
                break;
            }
            let order = self
                .inventory
                .reservation(rid)
                .expect("due names live")
                .order;
            let status = self.orders.get(&order).map(Order::status);
            match status {
                Some(OrderStatus::InventoryReserved | OrderStatus::PaymentPending)
                    if self.orders[&order].reservation == Some(rid) =>
                {
                    moved.extend(self.move_order(
                        order,
                        OrderStatus::Cancelled(CancelReason::Expired),
                        now,
                        Cause::Sweeper,
                    )?);
                }
                // A reservation no live order owns is a leak: give the stock back.
                _ => self.release_reservation(rid, now)?,
            }
        }
        Ok(moved)
    }

    /// Moves an order and carries out the side effects of entering the new
    /// status. All checks happen before the first change.
    fn move_order(
        &mut self,
        id: OrderId,
        to: OrderStatus,
        now: Millis,
        cause: Cause,
    ) -> Result<Vec<Transition>, ShopError> {
        let order = self.orders.get(&id).ok_or(ShopError::UnknownOrder(id))?;
        let from = order.status();
        if !from.can_become(to) {
            return Err(IllegalTransition {
                order: id,
                from,
                to,
            }
            .into());
        }
        let needs_job = matches!(to, OrderStatus::InventoryReserved | OrderStatus::Paid)
            || (matches!(to, OrderStatus::Cancelled(_)) && self.intent_is_open(id));
        if needs_job && !self.jobs.has_room(1) {
            return Err(JobError::QueueFull(self.jobs.depth()).into());
        }
        let transition =
            self.orders
                .get_mut(&id)
                .expect("checked")
                .transition(to, now, cause.clone())?;
        self.feed.push(id, to);
        let mut moved = vec![transition];
        if from == OrderStatus::Created {
            self.waiting.remove(&id);
        }
        let reservation = self.orders[&id].reservation;
        match to {
            OrderStatus::InventoryReserved => {
                self.jobs.enqueue(JobKind::CreateIntent, id, now)?;
                for event in self.inbox.take_parked(id) {
                    if let Step::Moved(more) = self.apply_event(&event, now)? {
                        moved.extend(more);
                    }
                }
            }
            OrderStatus::Paid => {
                if let Some(rid) = reservation {
                    self.inventory.pin(rid)?;
                    for (sku, _) in order_lines(&self.orders[&id]) {
                        moved.extend(self.cancel_hopeless(&sku, now, &cause)?);
                    }
                }
                self.jobs.enqueue(JobKind::Finalize, id, now)?;
            }
            OrderStatus::Confirmed => {
                if let Some(rid) = reservation {
                    self.inventory.commit(rid)?;
                }
                self.orders.get_mut(&id).expect("checked").reservation = None;
            }
            OrderStatus::Cancelled(_) | OrderStatus::Refunded => {
                if let Some(rid) = reservation {
                    self.release_reservation(rid, now)?;
                    self.orders.get_mut(&id).expect("checked").reservation = None;
                }
                if from.holds_reservation() || from == OrderStatus::Created {
                    self.release_holdings(id);
                }
                if matches!(to, OrderStatus::Cancelled(_)) && self.intent_is_open(id) {
                    self.jobs.enqueue(JobKind::CancelIntent, id, now)?;
                }
            }
            OrderStatus::PaymentPending => {
                // The hold covers the payment: it runs from the offer, so a
                // customer kept waiting in a backlog still gets the whole TTL.
                if let (Some(rid), Some(ttl)) = (reservation, self.config.reservation_ttl_ms) {
                    self.inventory.renew(rid, now, ttl)?;
                }
            }
            OrderStatus::Created => {}
        }
        Ok(moved)
    }

    fn intent_is_open(&self, id: OrderId) -> bool {
        self.intents
            .get(&id)
            .is_some_and(|i| i.status == IntentStatus::RequiresPayment)
    }

    fn release_holdings(&mut self, id: OrderId) {
        let order = &self.orders[&id];
        for line in &order.lines {
            let key = (order.customer.clone(), line.sku.clone());
            let naive = self.naive_primitives_used;
            if let Some(held) = self.holdings.get_mut(&key) {
                debug_assert!(
                    naive || *held >= u64::from(line.qty),
                    "{id} gives back more of {} than {} holds",
                    line.sku,
                    order.customer
                );
                *held = held.saturating_sub(u64::from(line.qty));
                if *held == 0 {
                    self.holdings.remove(&key);
                }
            }
        }
    }

    /// Orders the reconciler should compare with the PSP, oldest first, at
    /// most `limit`: those between reservation and confirmation, and
    /// cancelled or refunded ones whose intent may still hold money.
    pub fn reconcile_candidates(&self, limit: usize) -> Vec<Order> {
        self.orders
            .values()
            .filter(|o| match o.status() {
                OrderStatus::InventoryReserved
                | OrderStatus::PaymentPending
                | OrderStatus::Paid => true,
                OrderStatus::Cancelled(_) | OrderStatus::Refunded => {
                    self.intents.get(&o.id).is_some_and(|i| {
                        !matches!(i.status, IntentStatus::Failed | IntentStatus::Canceled)
                            && i.refunded < i.amount
                    })
                }
                OrderStatus::Created | OrderStatus::Confirmed => false,
            })
            .take(limit)
            .cloned()
            .collect()
    }

    /// Leases the next runnable job.
    pub fn lease_job(&mut self, now: Millis) -> Option<Lease> {
        self.jobs.lease(now)
    }

    /// [`ShopState::lease_job`] for a worker of `holder`.
    pub fn lease_job_as(&mut self, now: Millis, holder: Option<Holder>) -> Option<Lease> {
        self.jobs.lease_as(now, holder)
    }

    /// Acknowledges a finished job.
    pub fn ack_job(&mut self, lease: &Lease) -> Result<(), ShopError> {
        self.jobs.ack(lease)?;
        Ok(())
    }

    /// Reports a failed attempt; the job is retried after backoff or dead-lettered.
    pub fn fail_job(
        &mut self,
        lease: &Lease,
        now: Millis,
        error: &str,
        jitter_permille: u32,
    ) -> Result<Failed, ShopError> {
        Ok(self.jobs.fail(lease, now, error, jitter_permille)?)
    }

    /// Adds a job (used for repairs the reconciler asks for).
    pub fn enqueue_job(
        &mut self,
        kind: JobKind,
        order: OrderId,
        now: Millis,
    ) -> Result<JobId, ShopError> {
        if !self.orders.contains_key(&order) {
            return Err(ShopError::UnknownOrder(order));
        }
        Ok(self.jobs.enqueue(kind, order, now)?)
    }

    /// When the next job becomes runnable.
    pub fn next_job_at(&self) -> Option<Millis> {
        self.jobs.next_visible_at()
    }

    /// Housekeeping: forgets expired idempotency records and old webhook ids,
    /// at most `max` of each. Returns how many went.
    pub fn housekeep(&mut self, now: Millis, max: usize) -> usize {
        self.keys.expire(now, max) + self.inbox.forget_old(now, max)
    }

    /// Whether [`ShopState::housekeep`] at `now` would forget anything.
    pub fn housekeeping_due(&self, now: Millis) -> bool {
        self.keys.any_expired(now) || self.inbox.any_old(now)
    }

    /// Counts for metrics.
    pub fn stats(&self) -> ShopStats {
        let mut orders_by_status: BTreeMap<String, u64> = OrderStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for order in self.orders.values() {
            *orders_by_status
                .entry(order.status().as_str().to_string())
                .or_default() += 1;
        }
        ShopStats {
            orders_by_status,
            jobs_live: self.jobs.depth() as u64,
            dead_letters: self.jobs.dead_letters().count() as u64,
            webhooks_parked: self.inbox.parked_len() as u64,
            idempotency_records: self.keys.len() as u64,
            stock: self.inventory.levels(),
        }
    }

    /// A consistent snapshot of everything, for `/admin/audit` and the checker.
    pub fn audit(&self, now: Millis) -> AuditSnapshot {
        AuditSnapshot {
            at: now,
            orders: self.orders.values().cloned().collect(),
            stock: self.inventory.levels(),
            reservations: self.inventory.reservations().cloned().collect(),
            intents: self.intents.values().cloned().collect(),
            jobs_live: self.jobs.depth(),
            dead_letters: self.jobs.dead_letters().cloned().collect(),
            dead_dropped: self.jobs.dead_dropped(),
            webhooks_parked: self.inbox.parked_len(),
            idempotency_records: self.keys.len(),
        }
    }
}

/// An order's lines as (SKU, units), the shape the inventory takes.
fn order_lines(order: &Order) -> Vec<(Sku, u64)> {
    order
        .lines
        .iter()
        .map(|l| (l.sku.clone(), u64::from(l.qty)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drain of the job queue that leases more than this is looping: some job keeps coming
    /// back due (a broken wait or stock check); fail instead of hanging.
    const LEASES_AT_ONCE_MAX: usize = 10_000;
    use crate::catalog::Product;

    fn sku() -> Sku {
        Sku::new("hat").unwrap()
    }

    fn shop(stock: u64, limit: Option<u32>) -> ShopState {
        let config = ShopConfig {
            reservation_ttl_ms: Some(100),
            ..ShopConfig::default()
        };
        shop_with(stock, limit, config)
    }

    /// The default config with a job queue of `max_jobs`.
    fn max_jobs(max_jobs: usize) -> ShopConfig {
        ShopConfig {
            queue: QueueLimits {
                max_jobs,
                ..QueueLimits::default()
            },
            ..ShopConfig::default()
        }
    }

    fn shop_with(stock: u64, limit: Option<u32>, config: ShopConfig) -> ShopState {
        let catalog = Catalog::new([Product {
            sku: sku(),
            name: "Hat".into(),
            price: Cents(1_000),
            max_qty_per_order: 5,
            per_customer_limit: limit,
        }]);
        let mut s = ShopState::new(catalog, config);
        s.stock(&sku(), stock, 1).unwrap();
        s
    }

    /// [`shop`] without admission control ([`Admission::OFF`]).
    fn shop_accepting_everything(stock: u64) -> ShopState {
        let config = ShopConfig {
            reservation_ttl_ms: Some(100),
            admission: Admission::OFF,
            ..ShopConfig::default()
        };
        shop_with(stock, None, config)
    }

    /// [`shop`] with `admission`.
    fn admitting(stock: u64, admission: Admission) -> ShopState {
        let config = ShopConfig {
            reservation_ttl_ms: Some(100),
            admission,
            ..ShopConfig::default()
        };
        shop_with(stock, None, config)
    }

    fn request(key: &str, customer: &str, qty: u32) -> PlaceOrder {
        PlaceOrder {
            key: Some(IdempotencyKey::new(key).unwrap()),
            customer: CustomerId::new(customer).unwrap(),
            items: vec![ItemRequest { sku: sku(), qty }],
            express: false,
        }
    }

    fn place(s: &mut ShopState, key: &str, qty: u32) -> OrderId {
        match s
            .place_order(&request(key, "alice", qty), Millis(0))
            .unwrap()
        {
            Placed::Created { order, .. } => order,
            other => panic!("{other:?}"),
        }
    }

    fn intent(order: OrderId, status: IntentStatus) -> PaymentIntent {
        PaymentIntent {
            id: IntentId::new(format!("pi_{}", order.0)).unwrap(),
            order,
            amount: Cents(1_000),
            status,
            refunded: Cents::ZERO,
        }
    }

    fn to_paid(s: &mut ShopState, order: OrderId) {
        to_payment_pending(s, order);
        s.apply_payment(
            &intent(order, IntentStatus::Succeeded),
            Millis(3),
            Cause::Reconciler,
        )
        .unwrap();
    }

    #[test]
    fn unsettled_names_live_jobs_and_reservations_past_their_ttl_on_both_sides_of_the_bound() {
        // Proves: a fresh order's job keeps the world unsettled; a reservation (TTL 100 ms)
        // is no reason at 100 ms - 1 and is one from 100 ms on; a settled shop gives no reason.
        let mut s = shop(5, None);
        let order = place(&mut s, "k1", 1);
        assert_eq!(
            s.audit(Millis(0)).unsettled(),
            vec!["1 jobs live".to_string()]
        );
        let mut leased = 0;
        while let Some(lease) = s.lease_job(Millis(0)) {
            leased += 1;
            assert!(
                leased <= LEASES_AT_ONCE_MAX,
                "{leased} leases in one drain: a job that keeps coming back due"
            );
            s.ack_job(&lease).unwrap();
        }
        s.reserve(order, Millis(0), Cause::Reconciler).unwrap();
        let lapsed = "1 reservations past their TTL".to_string();
        assert!(!s.audit(Millis(99)).unsettled().contains(&lapsed));
        assert!(s.audit(Millis(100)).unsettled().contains(&lapsed));
        // Once the order is cancelled and its jobs ran, nothing is left to say.
        s.cancel(order, Millis(100)).unwrap();
        drain(&mut s, Millis(100));
        assert_eq!(s.audit(Millis(100)).unsettled(), Vec::<String>::new());
    }

    fn to_payment_pending(s: &mut ShopState, order: OrderId) {
        s.reserve(order, Millis(1), Cause::Reconciler).unwrap();
        s.record_intent(
            intent(order, IntentStatus::RequiresPayment),
            Millis(2),
            Cause::Reconciler,
        )
        .unwrap();
    }

    #[test]
    fn placing_an_order_writes_the_order_its_first_job_and_the_key_together() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 2);
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Created);
        assert_eq!(s.order(order).unwrap().total, Cents(2_000));
        let lease = s.lease_job(Millis(0)).unwrap();
        assert_eq!((lease.kind, lease.order), (JobKind::Reserve, order));
        assert_eq!(
            s.place_order(&request("k1", "alice", 2), Millis(5))
                .unwrap(),
            Placed::Replay(SavedResponse::OrderAccepted {
                order,
                status: OrderStatus::Created
            })
        );
        assert_eq!(
            s.place_order(&request("k1", "alice", 3), Millis(5))
                .unwrap(),
            Placed::KeyMismatch
        );
        assert_eq!(s.orders().count(), 1);
    }

    #[test]
    fn status_changes_reach_the_feed_and_a_renewed_epoch_retires_old_cursors() {
        // Proves: placing an order writes a change a watcher reads from a head taken before it
        // (in the feed `feed()` exposes); once the state is renewed past another epoch, a cursor
        // from before reads as incomplete, so watchers re-read instead of missing changes.
        let mut s = shop(10, None);
        let head = s.changes_since(None, 10).next;
        let order = place(&mut s, "k1", 1);
        let read = s.changes_since(Some(head), 10);
        assert!(read.complete);
        let seen: Vec<_> = read.changes.iter().map(|c| (c.order, c.status)).collect();
        assert_eq!(seen, vec![(order, OrderStatus::Created)]);
        assert_eq!(s.feed().len(), 1);
        assert_eq!(s.feed().head(), read.next);
        let other = s.feed().epoch() + 5;
        s.renew_feed_epoch_after(other);
        assert!(s.feed().epoch() > other);
        assert!(!s.changes_since(Some(read.next), 10).complete);
    }

    #[test]
    fn a_restored_state_keeps_ids_past_the_live_one() {
        // Proves: after `keep_ids_past`, a state restored from an older copy never hands out an
        // order id, job id, lease token or reservation id the live state already gave, its feed
        // is in a later epoch, and what it holds is unchanged.
        let mut older = shop(10, None);
        place(&mut older, "k1", 1);
        let mut live = older.clone();
        let lost = place(&mut live, "k2", 1);
        // The live state also leased a job and reserved: job, token and reservation ids given.
        let lost_lease = live.lease_job(Millis(1)).expect("a reserve job");
        let cause = Cause::Worker {
            job: lost_lease.job,
        };
        live.reserve(lost_lease.order, Millis(1), cause).unwrap();
        let lost_reservation = live.order(lost_lease.order).unwrap().reservation.unwrap();
        let mut restored = older.clone();
        restored.keep_ids_past(&live);
        assert_eq!(restored.orders().count(), 1, "nothing held changes");
        assert!(restored.feed().epoch() > live.feed().epoch());
        let next = place(&mut restored, "k3", 1);
        assert!(next > lost, "{next} reuses an id up to {lost}");
        let lease = restored.lease_job(Millis(2)).expect("a reserve job");
        assert!(
            lease.token > lost_lease.token,
            "{lease:?} vs {lost_lease:?}"
        );
        let newest = restored.jobs().jobs().map(|j| j.id).max().unwrap();
        assert!(newest > lost_lease.job, "{newest} reuses a job id");
        restored
            .reserve(lease.order, Millis(2), Cause::Worker { job: lease.job })
            .unwrap();
        let reservation = restored.order(lease.order).unwrap().reservation.unwrap();
        assert!(reservation > lost_reservation, "{reservation:?} reused");
        // Keeping past an older state lowers nothing.
        let mut ahead = live.clone();
        ahead.keep_ids_past(&older);
        assert!(place(&mut ahead, "k4", 1) > lost);
    }

    #[test]
    fn a_rejected_request_changes_nothing_and_frees_its_key() {
        let mut s = shop(10, None);
        let before = s.clone();
        assert!(matches!(
            s.place_order(&request("k1", "alice", 9), Millis(0)),
            Err(ShopError::Items(ItemsRejected::QtyAboveLimit { .. }))
        ));
        assert_eq!(s, before);
        // The key is free for a corrected request.
        place(&mut s, "k1", 1);
    }

    #[test]
    fn per_customer_limits_count_live_orders_and_free_up_on_cancel() {
        let mut s = shop(10, Some(3));
        let first = place(&mut s, "k1", 2);
        let err = s
            .place_order(&request("k2", "alice", 2), Millis(0))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ShopError::PurchaseLimit {
                    limit: 3,
                    held: 2,
                    requested: 2,
                    ..
                }
            ),
            "{err}"
        );
        // Another customer is not affected.
        assert!(s.place_order(&request("k3", "bob", 2), Millis(0)).is_ok());
        s.cancel(first, Millis(1)).unwrap();
        assert!(s.place_order(&request("k2", "alice", 2), Millis(2)).is_ok());
    }

    #[test]
    fn the_hold_runs_from_the_payment_offer() {
        // Proves: an order reserved at t=1 (100 ms TTL) and offered payment at t=80 keeps its
        // stock until t=180 — the sweeper expires nothing at 179 and expires it at 180.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 2);
        s.reserve(order, Millis(1), Cause::Reconciler).unwrap();
        s.record_intent(
            intent(order, IntentStatus::RequiresPayment),
            Millis(80),
            Cause::Reconciler,
        )
        .unwrap();
        assert_eq!(
            s.order(order).unwrap().status(),
            OrderStatus::PaymentPending
        );
        assert!(s.expire_reservations(Millis(179), 10).unwrap().is_empty());
        let expired = s.expire_reservations(Millis(180), 10).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].to, OrderStatus::Cancelled(CancelReason::Expired));
    }

    #[test]
    fn reserve_is_state_checked_so_a_redelivered_job_is_a_no_op() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 2);
        assert!(matches!(
            s.reserve(order, Millis(1), Cause::Reconciler).unwrap(),
            Step::Moved(_)
        ));
        assert_eq!(
            s.reserve(order, Millis(2), Cause::Reconciler).unwrap(),
            Step::Skipped(OrderStatus::InventoryReserved)
        );
        assert_eq!(s.inventory().level(&sku()).unwrap().reserved, 2);
    }

    #[test]
    fn the_unchecked_reserve_checks_stock_but_a_redelivery_reserves_again() {
        // Proves: `raw_reserve_unchecked` refuses what is not there (no
        // oversubscription) — the short order waits for the unpaid hold from
        // sales, or is cancelled from reservations — and only a second run of
        // the step — a redelivery — takes a second reservation, which no order owns.
        let mut s = shop(3, None);
        assert_eq!(s.raw_available(&sku()), 3);
        assert_eq!(s.raw_available(&Sku::new("nothing").unwrap()), 0);
        let order = place(&mut s, "k1", 2);
        let first = s
            .raw_reserve_unchecked(order, Millis(1), Cause::Reconciler, SoldOut::FromSales)
            .unwrap();
        assert!(matches!(first, Step::Moved(_)), "{first:?}");
        let level = s.inventory().level(&sku()).unwrap();
        assert_eq!((level.available, level.reserved), (1, 2));
        assert_eq!(s.raw_available(&sku()), 1, "the read-then-write read");
        let other = place(&mut s, "k2", 2);
        let waits = s
            .raw_reserve_unchecked(other, Millis(2), Cause::Reconciler, SoldOut::FromSales)
            .unwrap();
        assert!(matches!(waits, Step::Wait { .. }), "{waits:?}");
        s.raw_reserve_unchecked(
            other,
            Millis(2),
            Cause::Reconciler,
            SoldOut::FromReservations,
        )
        .unwrap();
        assert_eq!(
            s.order(other).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock),
            "availability is still checked"
        );
        s.stock(&sku(), 2, 1).unwrap();
        assert_eq!(
            s.raw_reserve_unchecked(order, Millis(3), Cause::Reconciler, SoldOut::FromSales)
                .unwrap(),
            Step::Skipped(OrderStatus::InventoryReserved)
        );
        let level = s.inventory().level(&sku()).unwrap();
        assert_eq!((level.available, level.reserved), (1, 4), "reserved twice");
        assert_eq!(s.inventory().reservations().count(), 2);
        assert!(level.is_conserved());
    }

    #[test]
    fn a_lapsed_reservation_no_order_owns_is_released_without_touching_the_order() {
        // Proves: when a redelivered unchecked reserve leaves a second reservation that no order
        // owns, and it lapses while the order's own hold (re-timed by its payment offer) runs
        // on, the sweeper gives the leaked units back and leaves the order waiting for payment;
        // the order expires only when its own hold lapses.
        let mut s = shop(5, None);
        let order = place(&mut s, "k1", 2);
        s.raw_reserve_unchecked(order, Millis(1), Cause::Reconciler, SoldOut::FromSales)
            .unwrap();
        s.raw_reserve_unchecked(order, Millis(3), Cause::Reconciler, SoldOut::FromSales)
            .unwrap();
        assert_eq!(s.inventory().reservations().count(), 2);
        s.record_intent(
            intent(order, IntentStatus::RequiresPayment),
            Millis(80),
            Cause::Reconciler,
        )
        .unwrap();
        assert!(s.expire_reservations(Millis(150), 10).unwrap().is_empty());
        assert_eq!(
            s.order(order).unwrap().status(),
            OrderStatus::PaymentPending
        );
        let level = s.inventory().level(&sku()).unwrap();
        assert_eq!(
            (level.available, level.reserved),
            (3, 2),
            "leaked units back"
        );
        let expired = s.expire_reservations(Millis(180), 10).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].to, OrderStatus::Cancelled(CancelReason::Expired));
    }

    #[test]
    fn the_unchecked_webhook_handler_sells_once_per_delivery() {
        // Proves: the `webhook_dedup=off` handler is right for one delivery
        // (the hold is sold, the order paid, finalize confirms it) and the
        // same code run for a duplicate sells the units a second time.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 2);
        to_payment_pending(&mut s, order);
        let event = WebhookEvent {
            id: crate::ids::EventId::new("evt_1").unwrap(),
            kind: WebhookKind::PaymentSucceeded,
            intent: intent(order, IntentStatus::Succeeded).id,
            order,
            amount: Cents(1_000),
            created: Millis(3),
        };
        let step = s.raw_apply_unchecked(&event, Millis(3)).unwrap();
        assert!(matches!(step, Step::Moved(_)), "{step:?}");
        s.finalize(order, Millis(4), Cause::Reconciler).unwrap();
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Confirmed);
        let level = s.inventory().level(&sku()).unwrap();
        assert_eq!((level.available, level.reserved, level.sold), (8, 0, 2));
        assert_eq!(
            s.raw_apply_unchecked(&event, Millis(5)).unwrap(),
            Step::Skipped(OrderStatus::Confirmed)
        );
        let level = s.inventory().level(&sku()).unwrap();
        assert_eq!((level.available, level.sold), (6, 4), "sold twice");
    }

    #[test]
    fn an_order_that_cannot_be_reserved_is_cancelled_out_of_stock() {
        // Proves the reserve step's own decision, for orders accepted before their SKU sold
        // out: with the fast path (which would refuse this one at the door) off.
        let mut s = shop_accepting_everything(1);
        let order = place(&mut s, "k1", 2);
        s.reserve(order, Millis(1), Cause::Reconciler).unwrap();
        assert_eq!(
            s.order(order).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock)
        );
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 1);
    }

    /// Leases every job visible at `now`, runs the `Reserve` steps, acks all; returns the
    /// reserve steps' results by order.
    fn run_reserves(s: &mut ShopState, now: Millis) -> Vec<(OrderId, Step)> {
        let mut steps = Vec::new();
        let mut leased = 0;
        while let Some(lease) = s.lease_job(now) {
            leased += 1;
            assert!(
                leased <= LEASES_AT_ONCE_MAX,
                "{leased} leases in one drain: a job that keeps coming back due"
            );
            if lease.kind == JobKind::Reserve {
                let cause = Cause::Worker { job: lease.job };
                steps.push((lease.order, s.reserve(lease.order, now, cause).unwrap()));
            }
            s.ack_job(&lease).unwrap();
        }
        steps
    }

    #[test]
    fn an_order_short_of_stock_waits_for_an_unpaid_hold_and_gets_its_units_when_it_lapses() {
        // Proves: with every unit held by an unpaid order (TTL 100 ms, reserved at 1 ms), a
        // second order is not cancelled: it stays created, its next reserve job is parked at its
        // wait bound (12 TTLs from creation) — nothing polls, not even when the hold lapses
        // unswept at 101 ms — and the sweep that releases the hold wakes it at once: that job
        // reserves the units. The naive rule cancels it at once instead.
        let mut s = shop(2, None);
        let holder = place(&mut s, "k1", 2);
        let buyer = place(&mut s, "k2", 1);
        let steps = run_reserves(&mut s, Millis(1));
        assert!(
            matches!(steps[0], (o, Step::Moved(_)) if o == holder),
            "{steps:?}"
        );
        assert_eq!(
            steps[1],
            (
                buyer,
                Step::Wait {
                    until: Millis(1_200)
                }
            )
        );
        assert_eq!(s.order(buyer).unwrap().status(), OrderStatus::Created);
        assert_eq!(s.next_job_at(), Some(Millis(1_200)));
        assert!(
            s.lease_job(Millis(101)).is_none(),
            "a lapsed hold wakes nobody until it is released"
        );
        let expired = s.expire_reservations(Millis(101), 10).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(s.next_job_at(), Some(Millis(101)), "woken by the release");
        let steps = run_reserves(&mut s, Millis(101));
        assert!(
            matches!(steps[..], [(o, Step::Moved(_))] if o == buyer),
            "{steps:?}"
        );
        assert_eq!(
            s.order(buyer).unwrap().status(),
            OrderStatus::InventoryReserved
        );

        let mut naive = shop(2, None);
        let holder = place(&mut naive, "k1", 2);
        let buyer = place(&mut naive, "k2", 1);
        naive.reserve(holder, Millis(1), Cause::Reconciler).unwrap();
        naive
            .raw_reserve_from_reservations(buyer, Millis(1), Cause::Reconciler)
            .unwrap();
        assert_eq!(
            naive.order(buyer).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock),
            "from reservations: sold out while the hold could still lapse"
        );
    }

    #[test]
    fn an_order_is_sold_out_only_when_the_missing_units_are_sold_or_pinned() {
        // Proves: the wait needs available + unpaid holds >= the quantity, on both sides: with
        // one unit pinned by a paid order and one held by an unpaid one, an order of 1 waits and
        // an order of 2 is cancelled out of stock at once; once every unit is sold (or pinned),
        // an order of 1 is cancelled too. (The sold-out fast path, which would refuse the
        // hopeless orders at the door, is off: this is the reserve step's decision.)
        let mut s = shop_accepting_everything(2);
        let paid = place(&mut s, "k1", 1);
        to_paid(&mut s, paid);
        let unpaid = place(&mut s, "k2", 1);
        s.reserve(unpaid, Millis(3), Cause::Reconciler).unwrap();
        assert_eq!(s.inventory().held_unpinned(&sku()), 1);
        let one = place(&mut s, "k3", 1);
        let two = place(&mut s, "k4", 2);
        assert!(matches!(
            s.reserve(one, Millis(4), Cause::Reconciler).unwrap(),
            Step::Wait { .. }
        ));
        s.reserve(two, Millis(4), Cause::Reconciler).unwrap();
        assert_eq!(
            s.order(two).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock)
        );
        to_paid(&mut s, unpaid);
        s.finalize(paid, Millis(5), Cause::Reconciler).unwrap();
        assert_eq!(s.inventory().held_unpinned(&sku()), 0);
        s.reserve(one, Millis(6), Cause::Reconciler).unwrap();
        assert_eq!(
            s.order(one).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock),
            "one unit sold, one pinned: no way back"
        );
    }

    #[test]
    fn waiting_gives_up_at_its_bound_even_without_reservation_ttls() {
        // Proves: without TTLs a hold never lapses, so an order waits until the bound
        // (SOLD_OUT_WAIT_NO_TTL_MS from its creation), still waiting 1 ms before it, and at the
        // bound it is cancelled out of stock. With a TTL the bound is SOLD_OUT_WAIT_TTLS TTLs,
        // or the configured `sold_out_wait_ms`.
        let config = ShopConfig {
            reservation_ttl_ms: None,
            ..ShopConfig::default()
        };
        assert_eq!(config.sold_out_wait_bound_ms(), SOLD_OUT_WAIT_NO_TTL_MS);
        let mut s = shop_with(2, None, config);
        let holder = place(&mut s, "k1", 2);
        let buyer = place(&mut s, "k2", 1);
        s.reserve(holder, Millis(1), Cause::Reconciler).unwrap();
        assert_eq!(
            s.reserve(buyer, Millis(1), Cause::Reconciler).unwrap(),
            Step::Wait {
                until: Millis(SOLD_OUT_WAIT_NO_TTL_MS)
            }
        );
        let last = SOLD_OUT_WAIT_NO_TTL_MS - 1;
        let cause = Cause::Reconciler;
        drain(&mut s, Millis(last));
        assert_eq!(
            s.reserve(buyer, Millis(last), cause.clone()).unwrap(),
            Step::Wait {
                until: Millis(SOLD_OUT_WAIT_NO_TTL_MS)
            }
        );
        assert_eq!(s.order(buyer).unwrap().status(), OrderStatus::Created);
        s.reserve(buyer, Millis(SOLD_OUT_WAIT_NO_TTL_MS), cause)
            .unwrap();
        assert_eq!(
            s.order(buyer).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock)
        );

        let ttl = ShopConfig {
            reservation_ttl_ms: Some(100),
            ..ShopConfig::default()
        };
        assert_eq!(ttl.sold_out_wait_bound_ms(), 100 * SOLD_OUT_WAIT_TTLS);
        let set = ShopConfig {
            sold_out_wait_ms: Some(7),
            ..ttl
        };
        assert_eq!(set.sold_out_wait_bound_ms(), 7);
    }

    /// A 100 ms TTL and a waiting bound of 200 ms from creation.
    fn bound_200() -> ShopConfig {
        ShopConfig {
            reservation_ttl_ms: Some(100),
            sold_out_wait_ms: Some(200),
            ..ShopConfig::default()
        }
    }

    /// A shop of `stock` hats where `holders` orders of one hat each hold every unit (reserved
    /// and offered payment at 0 ms, TTL 100 ms), then `waiters` orders of `qty` hats each wait;
    /// returns (holders, waiters). Nothing is left to run but the waiters' parked jobs.
    fn waitlist(holders: u64, waiters: &[u32]) -> (ShopState, Vec<OrderId>, Vec<OrderId>) {
        let mut s = shop_with(holders, None, bound_200());
        let held: Vec<_> = (0..holders)
            .map(|i| place(&mut s, &format!("h{i}"), 1))
            .collect();
        let wait: Vec<_> = waiters
            .iter()
            .enumerate()
            .map(|(i, qty)| place(&mut s, &format!("w{i}"), *qty))
            .collect();
        let steps = run_reserves(&mut s, Millis(0));
        assert_eq!(steps.len(), held.len() + wait.len());
        drain(&mut s, Millis(0));
        (s, held, wait)
    }

    #[test]
    fn units_coming_back_wake_as_many_waiters_as_they_fill_first_come_first_served() {
        // Proves: one released unit wakes exactly one waiter — the first (lowest order id) —
        // not every waiter; a second release wakes the next one; a waiter asking for more than
        // is available is passed over and keeps its place; a waiter woken and not yet run
        // counts as claiming its unit, so a second release before it runs wakes one more.
        let (mut s, held, wait) = waitlist(3, &[1, 2, 1, 1]);
        assert_eq!(
            s.next_job_at(),
            Some(Millis(200)),
            "all parked at the bound"
        );
        s.cancel(held[0], Millis(10)).unwrap();
        let woken: Vec<_> = std::iter::from_fn(|| s.lease_job(Millis(10)))
            .map(|l| (l.kind, l.order))
            .filter(|(k, _)| *k == JobKind::Reserve)
            .collect();
        assert_eq!(
            woken,
            vec![(JobKind::Reserve, wait[0])],
            "one unit, one waiter"
        );

        let (mut s, held, wait) = waitlist(3, &[1, 2, 1, 1]);
        s.cancel(held[0], Millis(10)).unwrap();
        s.cancel(held[1], Millis(11)).unwrap();
        let steps = run_reserves(&mut s, Millis(11));
        let orders: Vec<_> = steps.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            orders,
            vec![wait[0], wait[2]],
            "two units: the first waiter, then the next that fits (the order of 2 is passed \
             over while a woken waiter claims one of the two)"
        );
        assert!(steps.iter().all(|(_, step)| matches!(step, Step::Moved(_))));
        assert_eq!(s.order(wait[1]).unwrap().status(), OrderStatus::Created);
        assert!(s.lease_job(Millis(199)).is_none(), "the others sleep");
    }

    #[test]
    fn a_restock_wakes_as_many_waiters_as_it_fills_first_come_first_served() {
        // Proves: units restocked while every unit is held (the waiters park until their bound,
        // 200 ms) wake the waiters they fill at once, through the store's `Restock` command —
        // one unit wakes the first waiter only; two more wake the next in line (it wants 2), and
        // the two behind it sleep — so a newcomer cannot take restocked units
        // ahead of orders that were waiting for them.
        let (mut s, _, wait) = waitlist(2, &[1, 2, 1, 1]);
        use crate::Command;
        let restock = |qty| Command::Restock { sku: sku(), qty };
        s.apply(restock(1), Millis(10)).unwrap();
        let woken: Vec<_> = std::iter::from_fn(|| s.lease_job(Millis(10)))
            .filter(|l| l.kind == JobKind::Reserve)
            .map(|l| l.order)
            .collect();
        assert_eq!(woken, vec![wait[0]], "one unit, the first waiter");

        let (mut s, _, wait) = waitlist(2, &[1, 2, 1, 1]);
        s.apply(restock(1), Millis(10)).unwrap();
        s.apply(restock(2), Millis(11)).unwrap();
        let steps = run_reserves(&mut s, Millis(11));
        let orders: Vec<_> = steps.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            orders,
            vec![wait[0], wait[1]],
            "three units: the 1, then the 2"
        );
        assert!(steps.iter().all(|(_, step)| matches!(step, Step::Moved(_))));
        assert_eq!(s.order(wait[2]).unwrap().status(), OrderStatus::Created);
        assert!(s.lease_job(Millis(199)).is_none(), "the last two sleep");
    }

    #[test]
    fn a_waiter_that_leaves_the_waitlist_is_not_woken_in_place_of_the_next() {
        // Proves: the first waiter cancels (it leaves `Created`, so it leaves the waitlist);
        // the unit that comes back then wakes the second waiter at once, rather than being
        // spent on the order that no longer waits while the second sleeps to its bound.
        let (mut s, held, wait) = waitlist(1, &[1, 1]);
        s.cancel(wait[0], Millis(5)).unwrap();
        s.cancel(held[0], Millis(10)).unwrap();
        let woken: Vec<_> = std::iter::from_fn(|| s.lease_job(Millis(10)))
            .filter(|l| l.kind == JobKind::Reserve)
            .map(|l| l.order)
            .collect();
        assert_eq!(woken, vec![wait[1]]);
    }

    #[test]
    fn units_a_woken_waiter_cannot_use_go_to_the_next_waiter_they_fill() {
        // Proves: two units come back and wake the first waiter (it wants 2); a new buyer takes
        // one before it runs, so it fails and waits again — and the unit it left wakes the next
        // waiter (it wants 1), who gets it, instead of lying on the shelf until someone's wait
        // ends. The waiter that failed does not wake itself.
        let (mut s, held, wait) = waitlist(3, &[2, 1]);
        s.cancel(held[0], Millis(10)).unwrap();
        s.cancel(held[1], Millis(10)).unwrap();
        let rival = place(&mut s, "rival", 1);
        let first = s.lease_job(Millis(10)).unwrap();
        assert_eq!(
            first.order, rival,
            "the new order's reserve was visible first"
        );
        let cause = Cause::Worker { job: first.job };
        assert!(matches!(
            s.reserve(rival, Millis(10), cause).unwrap(),
            Step::Moved(_)
        ));
        s.ack_job(&first).unwrap();
        let steps = run_reserves(&mut s, Millis(10));
        let orders: Vec<_> = steps.iter().map(|(o, _)| *o).collect();
        assert_eq!(orders, vec![wait[0], wait[1]], "{steps:?}");
        assert!(matches!(steps[0].1, Step::Wait { .. }));
        assert!(matches!(steps[1].1, Step::Moved(_)));
        assert_eq!(s.order(wait[0]).unwrap().status(), OrderStatus::Created);
        assert!(s.lease_job(Millis(199)).is_none(), "nothing spins");
    }

    #[test]
    fn a_payment_that_leaves_no_hope_cancels_the_waiters_it_sold_out_and_only_those() {
        // Proves: when the last unpaid hold is paid, the waiters wanting one unit are cancelled
        // out of stock by that payment, in the same operation (its transitions carry them), and
        // their parked jobs are gone (not run at their bound); while an unpaid hold remains, a
        // payment cancels only the waiters it left without hope (an order of 2 behind 1 unit
        // that could come back), not those that could still be filled.
        let out_of_stock = OrderStatus::Cancelled(CancelReason::OutOfStock);
        let (mut s, held, wait) = waitlist(2, &[1, 2]);
        to_payment_pending(&mut s, held[0]);
        let paid = s
            .apply_payment(
                &intent(held[0], IntentStatus::Succeeded),
                Millis(3),
                Cause::Reconciler,
            )
            .unwrap();
        let Step::Moved(moved) = paid else {
            panic!("{paid:?}")
        };
        let cancelled: Vec<_> = moved
            .iter()
            .filter(|t| t.to == out_of_stock)
            .map(|t| t.order)
            .collect();
        assert_eq!(cancelled, vec![wait[1]], "{moved:?}");
        assert_eq!(s.order(wait[1]).unwrap().status(), out_of_stock);
        assert_eq!(s.order(wait[0]).unwrap().status(), OrderStatus::Created);
        assert!(run_reserves(&mut s, Millis(3)).is_empty(), "nothing to run");

        to_paid(&mut s, held[1]);
        assert_eq!(s.order(wait[0]).unwrap().status(), out_of_stock);
        let later: Vec<_> = std::iter::from_fn(|| s.lease_job(Millis(1_000)))
            .filter(|l| l.kind == JobKind::Reserve)
            .collect();
        assert!(later.is_empty(), "no parked job left: {later:?}");
    }

    #[test]
    fn a_waiter_whose_job_is_running_is_left_to_its_job_when_hope_goes() {
        // Proves the other side of the bound: a waiter whose reserve job is leased when the
        // last hold is paid is not cancelled by the payment; its own job then cancels it.
        let out_of_stock = OrderStatus::Cancelled(CancelReason::OutOfStock);
        let (mut s, held, wait) = waitlist(1, &[1]);
        let running = s
            .lease_job(Millis(200))
            .expect("the waiter's job at its bound");
        assert_eq!(running.order, wait[0]);
        to_paid(&mut s, held[0]);
        assert_eq!(s.order(wait[0]).unwrap().status(), OrderStatus::Created);
        let cause = Cause::Worker { job: running.job };
        assert!(matches!(
            s.reserve(wait[0], Millis(200), cause).unwrap(),
            Step::Moved(_)
        ));
        assert_eq!(s.order(wait[0]).unwrap().status(), out_of_stock);
    }

    #[test]
    fn a_wait_schedules_one_fresh_reserve_job_and_a_redelivery_reuses_it() {
        // Proves: the job that was told to wait is acked and the order's next look is a new
        // job whose first delivery is attempt 1 (waiting never spends the retry budget, so a
        // waiting order cannot be dead-lettered by it); a redelivered step that decides to wait
        // again keeps that job instead of starting a second chain.
        let mut s = shop_with(2, None, bound_200());
        let _holder = place(&mut s, "k1", 2);
        let buyer = place(&mut s, "k2", 1);
        run_reserves(&mut s, Millis(1));
        assert_eq!(s.stats().jobs_live, 1, "only the follow-up reserve job");
        assert_eq!(
            s.reserve(buyer, Millis(5), Cause::Reconciler).unwrap(),
            Step::Wait { until: Millis(200) }
        );
        assert_eq!(s.stats().jobs_live, 1, "no second chain");
        s.expire_reservations(Millis(101), 10).unwrap();
        // A rival takes the released units before the woken buyer runs.
        let rival = place(&mut s, "k3", 2);
        let first = s.lease_job(Millis(101)).unwrap();
        assert_eq!(first.order, rival);
        let cause = Cause::Worker { job: first.job };
        assert!(matches!(
            s.reserve(rival, Millis(101), cause).unwrap(),
            Step::Moved(_)
        ));
        s.ack_job(&first).unwrap();
        let intent = s.lease_job(Millis(101)).unwrap();
        assert_eq!(
            (intent.kind, intent.order),
            (JobKind::CreateIntent, rival),
            "the rival's next step goes before any reserve"
        );
        s.ack_job(&intent).unwrap();
        let lease = s.lease_job(Millis(101)).unwrap();
        assert_eq!(
            (lease.kind, lease.order, lease.attempt),
            (JobKind::Reserve, buyer, 1)
        );
        // The follow-up, woken by the release, runs after the units were taken again and waits
        // again: a new job, since the one it would reuse is the one running.
        let cause = Cause::Worker { job: lease.job };
        let step = s.reserve(buyer, Millis(101), cause).unwrap();
        assert_eq!(step, Step::Wait { until: Millis(200) });
        s.ack_job(&lease).unwrap();
        drain(&mut s, Millis(101));
        assert_eq!(s.stats().jobs_live, 1);
        assert_eq!(s.lease_job(Millis(200)).unwrap().attempt, 1);
    }

    #[test]
    fn a_payment_confirms_through_finalize_and_sells_the_stock() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 2);
        to_paid(&mut s, order);
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Paid);
        // A paid order's reservation no longer expires.
        assert!(
            s.expire_reservations(Millis(10_000), 10)
                .unwrap()
                .is_empty()
        );
        s.finalize(order, Millis(4), Cause::Reconciler).unwrap();
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Confirmed);
        assert_eq!(s.inventory().level(&sku()).unwrap().sold, 2);
        assert_eq!(
            s.finalize(order, Millis(5), Cause::Reconciler).unwrap(),
            Step::Skipped(OrderStatus::Confirmed)
        );
    }

    #[test]
    fn an_early_webhook_is_parked_then_applied_when_the_order_is_reserved() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        let event = WebhookEvent {
            id: crate::ids::EventId::new("evt_1").unwrap(),
            kind: WebhookKind::PaymentSucceeded,
            intent: intent(order, IntentStatus::Succeeded).id,
            order,
            amount: Cents(1_000),
            created: Millis(0),
        };
        assert_eq!(
            s.receive_webhook(event.clone(), Millis(0)).unwrap(),
            WebhookOutcome::Parked
        );
        assert_eq!(
            s.receive_webhook(event, Millis(0)).unwrap(),
            WebhookOutcome::Duplicate
        );
        let Step::Moved(moved) = s.reserve(order, Millis(1), Cause::Reconciler).unwrap() else {
            panic!()
        };
        let path: Vec<_> = moved.iter().map(|t| t.to).collect();
        assert_eq!(
            path,
            [
                OrderStatus::InventoryReserved,
                OrderStatus::PaymentPending,
                OrderStatus::Paid
            ]
        );
        assert_eq!(s.audit(Millis(1)).webhooks_parked, 0);
    }

    #[test]
    fn expiry_cancels_unpaid_orders_and_a_late_payment_is_refunded() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 3);
        to_payment_pending(&mut s, order);
        let expired = s.expire_reservations(Millis(200), 10).unwrap();
        assert_eq!(expired[0].to, OrderStatus::Cancelled(CancelReason::Expired));
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 10);
        // The open intent is to be cancelled at the PSP.
        let kinds: Vec<_> = std::iter::from_fn(|| s.lease_job(Millis(200)))
            .map(|l| l.kind)
            .collect();
        assert!(kinds.contains(&JobKind::CancelIntent), "{kinds:?}");
        // The customer paid anyway: the money is refunded, never kept.
        let step = s
            .apply_payment(
                &intent(order, IntentStatus::Succeeded),
                Millis(201),
                Cause::Reconciler,
            )
            .unwrap();
        assert_eq!(step, Step::RefundScheduled);
        let refund = s.lease_job(Millis(201)).unwrap();
        assert_eq!(refund.kind, JobKind::Refund);
        let mut refunded = intent(order, IntentStatus::Succeeded);
        refunded.refunded = refunded.amount;
        s.mark_refunded(&refunded, Millis(202), Cause::Worker { job: refund.job })
            .unwrap();
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Refunded);
    }

    #[test]
    fn money_captured_on_an_intent_that_cannot_be_the_orders_payment_is_refunded() {
        // Proves (found from outside: a 1-cent intent someone created at the PSP confirmed an
        // order, and a second full charge was kept): a capture on another intent that is not
        // for the order's total, or that comes once the order is paid, never moves the order
        // and queues a stray refund; another intent for the total while the order awaits
        // payment pays it and becomes its own, so the old own intent's capture is then the
        // stray; a decline on another intent cancels nothing; the amount that counts is what
        // the shop asked (its own intent's), and before the order has recorded an intent its
        // total; nothing captured is never stray.
        let other = |order: OrderId, amount: u64, status| PaymentIntent {
            id: IntentId::new("pi_999").unwrap(),
            amount: Cents(amount),
            ..intent(order, status)
        };
        let paid = IntentStatus::Succeeded;
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        to_payment_pending(&mut s, order);
        drain(&mut s, Millis(2));
        let step = s.apply_payment(&other(order, 1, paid), Millis(3), Cause::Reconciler);
        assert_eq!(step.unwrap(), Step::RefundScheduled);
        assert_eq!(
            s.order(order).unwrap().status(),
            OrderStatus::PaymentPending
        );
        assert_eq!(
            drain(&mut s, Millis(3)),
            vec![(JobKind::RefundStray, order)]
        );
        let declined = other(order, 1_000, IntentStatus::Failed);
        s.apply_payment(&declined, Millis(3), Cause::Reconciler)
            .unwrap();
        assert_eq!(
            s.order(order).unwrap().status(),
            OrderStatus::PaymentPending,
            "not its decline"
        );
        let own = intent(order, paid);
        assert!(!s.is_stray(&own));
        s.apply_payment(&own, Millis(4), Cause::Reconciler).unwrap();
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Paid);
        let second = other(order, 1_000, paid);
        assert!(s.is_stray(&second), "a second capture for a paid order");
        let step = s.apply_payment(&second, Millis(5), Cause::Reconciler);
        assert_eq!(step.unwrap(), Step::RefundScheduled);
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Paid);
        assert_eq!(s.order(order).unwrap().intent, Some(own.id.clone()));
        assert!(drain(&mut s, Millis(5)).contains(&(JobKind::RefundStray, order)));
        assert!(
            !s.is_stray(&other(order, 1, IntentStatus::RequiresPayment)),
            "nothing captured"
        );

        // Another intent for the total while the order awaits payment pays it.
        let switched = place(&mut s, "k2", 1);
        to_payment_pending(&mut s, switched);
        let theirs = other(switched, 1_000, paid);
        assert!(!s.is_stray(&theirs));
        s.apply_payment(&theirs, Millis(6), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.order(switched).unwrap().status(), OrderStatus::Paid);
        assert_eq!(s.order(switched).unwrap().intent, Some(theirs.id.clone()));
        assert!(
            s.is_stray(&intent(switched, paid)),
            "the old own intent's capture"
        );

        // The amount is what the shop asked for (its own intent's), not the total: a shop
        // that asked for 1,000 of a 3,000 order takes another intent of 1,000, not of 3,000.
        let asked_less = place(&mut s, "k4", 3);
        to_payment_pending(&mut s, asked_less);
        assert!(s.is_stray(&other(asked_less, 3_000, paid)));
        assert!(!s.is_stray(&other(asked_less, 1_000, paid)));

        // No intent recorded yet: the order's total decides.
        let early = place(&mut s, "k3", 1);
        drain(&mut s, Millis(7));
        s.reserve(early, Millis(7), Cause::Reconciler).unwrap();
        let step = s.apply_payment(&other(early, 999, paid), Millis(7), Cause::Reconciler);
        assert_eq!(step.unwrap(), Step::RefundScheduled);
        assert_eq!(
            s.order(early).unwrap().status(),
            OrderStatus::InventoryReserved
        );
        s.apply_payment(&other(early, 1_000, paid), Millis(8), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.order(early).unwrap().status(), OrderStatus::Paid);
    }

    #[test]
    fn paid_and_final_orders_cannot_be_cancelled() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        to_paid(&mut s, order);
        assert!(matches!(
            s.cancel(order, Millis(4)),
            Err(ShopError::NotCancellable { .. })
        ));
        let other = place(&mut s, "k2", 1);
        s.cancel(other, Millis(4)).unwrap();
        assert_eq!(
            s.cancel(other, Millis(5)).unwrap(),
            Step::Skipped(OrderStatus::Cancelled(CancelReason::ByCustomer))
        );
    }

    #[test]
    fn an_operation_that_could_overflow_the_job_queue_is_refused_before_any_change() {
        let config = max_jobs(5);
        let mut s = shop_with(10, None, config);
        let order = place(&mut s, "k1", 1);
        // An early payment event is parked: reserving will also apply it (two jobs).
        let event = WebhookEvent {
            id: crate::ids::EventId::new("evt_1").unwrap(),
            kind: WebhookKind::PaymentSucceeded,
            intent: intent(order, IntentStatus::Succeeded).id,
            order,
            amount: Cents(1_000),
            created: Millis(0),
        };
        assert_eq!(
            s.receive_webhook(event, Millis(0)).unwrap(),
            WebhookOutcome::Parked
        );
        place(&mut s, "k2", 1);
        let before = s.clone();
        assert!(matches!(
            s.reserve(order, Millis(1), Cause::Reconciler),
            Err(ShopError::Jobs(JobError::QueueFull(2)))
        ));
        assert_eq!(s, before, "a refused operation changes nothing");
    }

    #[test]
    fn transition_if_is_a_compare_and_set() {
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        let step = s
            .transition_if(
                order,
                OrderStatus::PaymentPending,
                OrderStatus::Paid,
                Millis(1),
                Cause::Reconciler,
            )
            .unwrap();
        assert_eq!(step, Step::Skipped(OrderStatus::Created));
        let err = s
            .transition_if(
                order,
                OrderStatus::Created,
                OrderStatus::Confirmed,
                Millis(1),
                Cause::Reconciler,
            )
            .unwrap_err();
        assert!(matches!(err, ShopError::Illegal(_)));
        assert_eq!(s.order(order).unwrap().status(), OrderStatus::Created);
    }

    /// Leases and acks every runnable job, returning what ran, oldest first.
    fn drain(s: &mut ShopState, now: Millis) -> Vec<(JobKind, OrderId)> {
        let mut ran = Vec::new();
        let mut leased = 0;
        while let Some(lease) = s.lease_job(now) {
            leased += 1;
            assert!(
                leased <= LEASES_AT_ONCE_MAX,
                "{leased} leases in one drain: a job that keeps coming back due"
            );
            ran.push((lease.kind, lease.order));
            s.ack_job(&lease).unwrap();
        }
        ran
    }

    fn held_error(s: &mut ShopState, customer: &str, qty: u32) -> Option<u64> {
        let key = format!("probe-{}", s.orders().count());
        match s.place_order(&request(&key, customer, qty), Millis(0)) {
            Err(ShopError::PurchaseLimit { held, .. }) => Some(held),
            Ok(Placed::Created { order, .. }) => {
                s.cancel(order, Millis(0)).unwrap();
                None
            }
            other => panic!("{other:?}"),
        }
    }

    fn event(order: OrderId, id: &str, kind: WebhookKind) -> WebhookEvent {
        WebhookEvent {
            id: crate::ids::EventId::new(id).unwrap(),
            kind,
            intent: intent(order, IntentStatus::Succeeded).id,
            order,
            amount: Cents(1_000),
            created: Millis(0),
        }
    }

    /// Everything a refused placement must leave unchanged.
    fn untouched(s: &ShopState) -> (u64, usize, usize, String, usize) {
        let feed = format!("{:?}", s.feed.head());
        (
            s.next_order,
            s.orders.len(),
            s.jobs.depth(),
            feed,
            s.undecided_orders(),
        )
    }

    #[test]
    fn the_sold_out_fast_path_refuses_what_no_hold_could_fill_and_accepts_what_one_could() {
        // Proves: with 2 units, one pinned by a paid order and one held by an unpaid one, an
        // order of 1 is still accepted (the hold may lapse) and an order of 2 is refused at the
        // door naming what is left; the refusal writes nothing and frees its key, and with the
        // fast path off the same order is accepted (to be cancelled by its reserve step).
        let mut s = shop(2, None);
        let paid = place(&mut s, "k1", 1);
        to_paid(&mut s, paid);
        let unpaid = place(&mut s, "k2", 1);
        s.reserve(unpaid, Millis(3), Cause::Reconciler).unwrap();
        let before = untouched(&s);
        let err = s
            .place_order(&request("k3", "bob", 2), Millis(4))
            .unwrap_err();
        assert_eq!(
            err,
            ShopError::SoldOut {
                sku: sku(),
                left: 1,
                requested: 2
            }
        );
        assert_eq!(untouched(&s), before, "a refusal writes nothing");
        assert!(matches!(
            s.place_order(&request("k3", "bob", 1), Millis(4)),
            Ok(Placed::Created { .. })
        ));
        let mut off = shop(2, None);
        off.config.admission.sold_out_fast_path = false;
        let paid = place(&mut off, "k1", 2);
        to_paid(&mut off, paid);
        assert!(matches!(
            off.place_order(&request("k3", "bob", 1), Millis(4)),
            Ok(Placed::Created { .. })
        ));
    }

    #[test]
    fn the_undecided_bound_admits_its_limit_and_sheds_one_more_until_one_is_decided() {
        // Proves: with at most 2 undecided orders, 2 are accepted and the third is shed with the
        // configured Retry-After, writing nothing and freeing its key; once they are decided
        // (reserved), the same request under the same key is accepted.
        let admission = Admission {
            max_undecided_orders: Some(2),
            shed_retry_after_ms: 750,
            ..Admission::default()
        };
        let mut s = admitting(10, admission);
        place(&mut s, "k0", 1);
        run_reserves(&mut s, Millis(0));
        assert_eq!(s.undecided_orders(), 0, "a reserved order is decided");
        place(&mut s, "k1", 1);
        place(&mut s, "k2", 1);
        assert_eq!(s.undecided_orders(), 2);
        let before = untouched(&s);
        let shed = s.place_order(&request("k3", "bob", 1), Millis(1));
        assert_eq!(
            shed,
            Err(ShopError::Shed {
                undecided: 2,
                limit: 2,
                retry_after_ms: 750
            })
        );
        assert_eq!(untouched(&s), before, "a shed placement writes nothing");
        run_reserves(&mut s, Millis(2));
        assert!(matches!(
            s.place_order(&request("k3", "bob", 1), Millis(3)),
            Ok(Placed::Created { .. })
        ));
        let mut off = admitting(10, Admission::OFF);
        for n in 0..5 {
            place(&mut off, &format!("k{n}"), 1);
        }
        assert_eq!(
            off.undecided_orders(),
            5,
            "admission off accepts everything"
        );
    }

    #[test]
    fn an_order_parked_waiting_for_stock_is_not_queued_work() {
        // Proves: the undecided count is the Reserve queue less the parked waiters: a placed
        // order counts until its step runs; parked waiting for a hold to lapse it does not (its
        // wait has its own bound), and cancelled out of stock it does not either.
        let mut s = shop(1, None);
        let holder = place(&mut s, "k1", 1);
        run_reserves(&mut s, Millis(1));
        assert_eq!(s.undecided_orders(), 0);
        let waiter = place(&mut s, "k2", 1);
        assert_eq!(s.undecided_orders(), 1);
        let steps = run_reserves(&mut s, Millis(2));
        assert!(
            matches!(steps[..], [(o, Step::Wait { .. })] if o == waiter),
            "{steps:?}"
        );
        assert_eq!(s.undecided_orders(), 0, "parked, not queued");
        assert_eq!(s.jobs.lane_depth(JobKind::Reserve), 1, "its job is parked");
        to_paid(&mut s, holder);
        run_reserves(&mut s, Millis(5));
        assert_eq!(
            s.order(waiter).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::OutOfStock)
        );
        assert_eq!(s.undecided_orders(), 0);
    }

    #[test]
    fn the_customer_rate_limit_admits_its_limit_per_window_and_refuses_one_more() {
        // Proves: 2 orders per 1,000 ms window: alice's third order in the window is refused
        // with the time left in it (and writes nothing), bob is not limited by alice, and from
        // the next window alice may order again; refused placements do not count.
        let admission = Admission {
            customer_orders_max: Some(2),
            customer_window_ms: 1_000,
            ..Admission::default()
        };
        let mut s = admitting(100, admission);
        let ok = |s: &mut ShopState, key: &str, who: &str, at: u64| {
            s.place_order(&request(key, who, 1), Millis(at))
        };
        assert!(ok(&mut s, "a1", "alice", 0).is_ok());
        assert!(ok(&mut s, "a2", "alice", 400).is_ok());
        let before = untouched(&s);
        assert_eq!(
            ok(&mut s, "a3", "alice", 999),
            Err(ShopError::RateLimited {
                customer: CustomerId::new("alice").unwrap(),
                limit: 2,
                window_ms: 1_000,
                retry_after_ms: 1
            })
        );
        assert_eq!(untouched(&s), before, "a refusal writes nothing");
        assert!(ok(&mut s, "b1", "bob", 999).is_ok(), "per customer");
        assert!(ok(&mut s, "a3", "alice", 1_000).is_ok(), "a new window");
        assert!(ok(&mut s, "a4", "alice", 1_400).is_ok());
        assert!(
            matches!(
                ok(&mut s, "a5", "alice", 1_500),
                Err(ShopError::RateLimited {
                    retry_after_ms: 500,
                    ..
                })
            ),
            "told the rest of its window"
        );
    }

    #[test]
    fn configs_and_states_written_before_admission_control_still_read() {
        // Proves: a config without `admission` reads as the reference limits, and a state
        // without the rate-limit window reads with an empty one.
        let mut config = serde_json::to_value(ShopConfig::default()).unwrap();
        config.as_object_mut().unwrap().remove("admission");
        let read: ShopConfig = serde_json::from_value(config).unwrap();
        assert_eq!(read.admission, Admission::default());
        let s = shop(3, None);
        let mut state = serde_json::to_value(&s).unwrap();
        state.as_object_mut().unwrap().remove("placed_in_window");
        assert_eq!(serde_json::from_value::<ShopState>(state).unwrap(), s);
    }

    #[test]
    fn the_purchase_limit_admits_its_bound_and_refuses_one_more() {
        // Proves: with a limit of 3, holding 2 a customer may add 1 and, holding 3, may not
        // add 1; the refusal reports what is held.
        let mut s = shop(10, Some(3));
        place(&mut s, "k1", 2);
        assert_eq!(held_error(&mut s, "alice", 1), None);
        place(&mut s, "k2", 1);
        assert_eq!(held_error(&mut s, "alice", 1), Some(3));
    }

    #[test]
    fn a_refund_after_cancellation_does_not_release_the_holding_twice() {
        // Proves: a cancelled order gives its holding back once; when its late payment is
        // refunded, the customer's other live order still counts against the limit.
        let mut s = shop(10, Some(3));
        let late = place(&mut s, "k1", 1);
        to_payment_pending(&mut s, late);
        s.cancel(late, Millis(3)).unwrap();
        place(&mut s, "k2", 3);
        assert_eq!(
            s.apply_payment(
                &intent(late, IntentStatus::Succeeded),
                Millis(4),
                Cause::Reconciler
            )
            .unwrap(),
            Step::RefundScheduled
        );
        let mut refunded = intent(late, IntentStatus::Succeeded);
        refunded.refunded = refunded.amount;
        s.mark_refunded(&refunded, Millis(5), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.order(late).unwrap().status(), OrderStatus::Refunded);
        assert_eq!(held_error(&mut s, "alice", 1), Some(3));
    }

    #[test]
    fn a_paid_order_refunded_gives_back_its_stock_and_its_holding() {
        // Proves: refunding a paid order releases its pinned reservation and its holding.
        let mut s = shop(10, Some(3));
        let order = place(&mut s, "k1", 3);
        to_paid(&mut s, order);
        assert_eq!(held_error(&mut s, "alice", 1), Some(3));
        let mut refunded = intent(order, IntentStatus::Succeeded);
        refunded.refunded = refunded.amount;
        s.mark_refunded(&refunded, Millis(5), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 10);
        assert_eq!(s.inventory().reservations().count(), 0);
        assert_eq!(held_error(&mut s, "alice", 3), None);
    }

    #[test]
    fn the_order_count_limit_admits_its_bound_and_refuses_one_more() {
        // Proves: with max_orders 2, the second order is accepted and the third refused.
        let config = ShopConfig {
            max_orders: 2,
            ..ShopConfig::default()
        };
        let mut s = shop_with(10, None, config);
        place(&mut s, "k1", 1);
        place(&mut s, "k2", 1);
        assert_eq!(
            s.place_order(&request("k3", "alice", 1), Millis(0)),
            Err(ShopError::TooManyOrders(2))
        );
    }

    #[test]
    fn a_full_queue_refuses_placement_and_one_free_slot_admits_it() {
        // Proves: placing needs exactly one free job slot.
        let config = max_jobs(1);
        let mut s = shop_with(10, None, config);
        place(&mut s, "k1", 1);
        assert_eq!(
            s.place_order(&request("k2", "alice", 1), Millis(0)),
            Err(ShopError::Jobs(JobError::QueueFull(1)))
        );
        // The refused request's key is free again.
        drain(&mut s, Millis(0));
        place(&mut s, "k2", 1);
    }

    #[test]
    fn reconcile_candidates_are_orders_whose_money_is_undecided() {
        // Proves: reserved, pending and paid orders are candidates; created and confirmed ones
        // are not; a cancelled order is one only while its intent may still hold money; at most
        // `limit` are returned, oldest first.
        let mut s = shop(20, None);
        let created = place(&mut s, "k1", 1);
        let reserved = place(&mut s, "k2", 1);
        s.reserve(reserved, Millis(1), Cause::Reconciler).unwrap();
        let pending = place(&mut s, "k3", 1);
        to_payment_pending(&mut s, pending);
        let paid = place(&mut s, "k4", 1);
        to_paid(&mut s, paid);
        let confirmed = place(&mut s, "k5", 1);
        to_paid(&mut s, confirmed);
        s.finalize(confirmed, Millis(4), Cause::Reconciler).unwrap();
        let cancelled_open = place(&mut s, "k6", 1);
        to_payment_pending(&mut s, cancelled_open);
        s.cancel(cancelled_open, Millis(4)).unwrap();
        let cancelled_bare = place(&mut s, "k7", 1);
        s.cancel(cancelled_bare, Millis(4)).unwrap();
        let declined = place(&mut s, "k8", 1);
        to_payment_pending(&mut s, declined);
        s.apply_payment(
            &intent(declined, IntentStatus::Failed),
            Millis(4),
            Cause::Reconciler,
        )
        .unwrap();
        let refunded = place(&mut s, "k9", 1);
        to_paid(&mut s, refunded);
        let mut back = intent(refunded, IntentStatus::Succeeded);
        back.refunded = back.amount;
        s.mark_refunded(&back, Millis(5), Cause::Reconciler)
            .unwrap();
        let ids = |v: Vec<Order>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.reconcile_candidates(100)),
            vec![reserved, pending, paid, cancelled_open]
        );
        assert_eq!(ids(s.reconcile_candidates(2)), vec![reserved, pending]);
        assert!(!ids(s.reconcile_candidates(100)).contains(&created));
    }

    #[test]
    fn a_cancelled_order_whose_intent_succeeded_stays_a_candidate_until_refunded() {
        // Proves: money captured for a cancelled order keeps it in the reconciler's view until
        // the whole amount is refunded.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        to_payment_pending(&mut s, order);
        s.cancel(order, Millis(3)).unwrap();
        s.apply_payment(
            &intent(order, IntentStatus::Succeeded),
            Millis(4),
            Cause::Reconciler,
        )
        .unwrap();
        assert_eq!(s.reconcile_candidates(10).len(), 1);
        let mut part = intent(order, IntentStatus::Succeeded);
        part.refunded = Cents(999);
        s.apply_payment(&part, Millis(5), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.reconcile_candidates(10).len(), 1);
        let mut all = intent(order, IntentStatus::Succeeded);
        all.refunded = all.amount;
        s.mark_refunded(&all, Millis(6), Cause::Reconciler).unwrap();
        assert!(s.reconcile_candidates(10).is_empty());
    }

    #[test]
    fn an_intent_for_a_cancelled_order_is_cancelled_and_a_captured_one_refunded_once() {
        // Proves: an open intent recorded after cancellation gets a CancelIntent job; a
        // succeeded one is refunded, with one Refund job however often it is reported; money
        // already refunded schedules nothing.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        s.reserve(order, Millis(1), Cause::Reconciler).unwrap();
        s.cancel(order, Millis(2)).unwrap();
        drain(&mut s, Millis(2));
        assert_eq!(
            s.record_intent(
                intent(order, IntentStatus::RequiresPayment),
                Millis(3),
                Cause::Reconciler
            )
            .unwrap(),
            Step::Skipped(OrderStatus::Cancelled(CancelReason::ByCustomer))
        );
        assert_eq!(
            s.intent(order).unwrap().status,
            IntentStatus::RequiresPayment
        );
        assert_eq!(
            drain(&mut s, Millis(3)),
            vec![(JobKind::CancelIntent, order)]
        );
        for at in [4, 5] {
            assert_eq!(
                s.record_intent(
                    intent(order, IntentStatus::Succeeded),
                    Millis(at),
                    Cause::Reconciler
                )
                .unwrap(),
                Step::RefundScheduled
            );
        }
        assert_eq!(drain(&mut s, Millis(5)), vec![(JobKind::Refund, order)]);
        let other = place(&mut s, "k2", 1);
        s.cancel(other, Millis(6)).unwrap();
        let mut back = intent(other, IntentStatus::Succeeded);
        back.refunded = back.amount;
        assert_eq!(
            s.apply_payment(&back, Millis(7), Cause::Reconciler)
                .unwrap(),
            Step::Skipped(OrderStatus::Cancelled(CancelReason::ByCustomer))
        );
        assert!(
            drain(&mut s, Millis(7))
                .iter()
                .all(|(k, _)| *k != JobKind::Refund)
        );
    }

    #[test]
    fn cancelling_without_an_open_intent_cancels_nothing_at_the_psp() {
        // Proves: CancelIntent is enqueued only when the order's intent is still open.
        let mut s = shop(10, None);
        let bare = place(&mut s, "k1", 1);
        s.reserve(bare, Millis(1), Cause::Reconciler).unwrap();
        drain(&mut s, Millis(1));
        s.cancel(bare, Millis(2)).unwrap();
        assert!(drain(&mut s, Millis(2)).is_empty());
        let open = place(&mut s, "k2", 1);
        to_payment_pending(&mut s, open);
        drain(&mut s, Millis(2));
        s.cancel(open, Millis(3)).unwrap();
        assert_eq!(
            drain(&mut s, Millis(3)),
            vec![(JobKind::CancelIntent, open)]
        );
    }

    #[test]
    fn intent_states_drive_the_order_and_the_mirror_follows_its_own_intent() {
        // Proves: a succeeded intent moves a reserved order through PaymentPending to Paid, a
        // failed one cancels it; a later report of the order's own intent updates the mirror,
        // another intent's does not.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        s.reserve(order, Millis(1), Cause::Reconciler).unwrap();
        let Step::Moved(path) = s
            .apply_payment(
                &intent(order, IntentStatus::Succeeded),
                Millis(2),
                Cause::Reconciler,
            )
            .unwrap()
        else {
            panic!()
        };
        let path: Vec<_> = path.iter().map(|t| t.to).collect();
        assert_eq!(path, [OrderStatus::PaymentPending, OrderStatus::Paid]);
        let declined = place(&mut s, "k2", 1);
        to_payment_pending(&mut s, declined);
        s.apply_payment(
            &intent(declined, IntentStatus::Failed),
            Millis(3),
            Cause::Reconciler,
        )
        .unwrap();
        assert_eq!(
            s.order(declined).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::PaymentFailed)
        );
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 9);
        let mut canceled = intent(declined, IntentStatus::Canceled);
        s.apply_payment(&canceled, Millis(4), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.intent(declined).unwrap().status, IntentStatus::Canceled);
        canceled.id = IntentId::new("pi_stranger").unwrap();
        canceled.status = IntentStatus::RequiresPayment;
        s.apply_payment(&canceled, Millis(5), Cause::Reconciler)
            .unwrap();
        assert_eq!(s.intent(declined).unwrap().status, IntentStatus::Canceled);
    }

    #[test]
    fn a_full_parking_lot_refuses_early_events_but_not_applicable_ones() {
        // Proves: with room for one parked event, a second early event is refused (and not
        // marked seen, so its redelivery is judged afresh), while an event for a reserved order
        // is still applied.
        let config = ShopConfig {
            reservation_ttl_ms: Some(100),
            inbox: InboxLimits {
                max_parked: 1,
                ..InboxLimits::default()
            },
            ..ShopConfig::default()
        };
        let mut s = shop_with(10, None, config);
        let a = place(&mut s, "k1", 1);
        let b = place(&mut s, "k2", 1);
        let c = place(&mut s, "k3", 1);
        to_payment_pending(&mut s, c);
        let early_a = event(a, "evt_a", WebhookKind::PaymentSucceeded);
        let early_b = event(b, "evt_b", WebhookKind::PaymentSucceeded);
        assert_eq!(
            s.receive_webhook(early_a, Millis(2)).unwrap(),
            WebhookOutcome::Parked
        );
        assert_eq!(
            s.receive_webhook(early_b.clone(), Millis(2)),
            Err(ShopError::InboxFull)
        );
        assert_eq!(s.audit(Millis(2)).webhooks_parked, 1);
        assert!(matches!(
            s.receive_webhook(event(c, "evt_c", WebhookKind::PaymentSucceeded), Millis(2))
                .unwrap(),
            WebhookOutcome::Applied(Step::Moved(_))
        ));
        assert_eq!(s.order(c).unwrap().status(), OrderStatus::Paid);
        s.reserve(a, Millis(3), Cause::Reconciler).unwrap();
        assert_eq!(s.order(a).unwrap().status(), OrderStatus::Paid);
        assert_eq!(
            s.receive_webhook(early_b, Millis(4)).unwrap(),
            WebhookOutcome::Parked
        );
    }

    #[test]
    fn webhooks_fail_and_refund_orders() {
        // Proves: a failure event cancels a pending order; a refund event marks a paid order
        // refunded and releases its stock.
        let mut s = shop(10, None);
        let failed = place(&mut s, "k1", 1);
        to_payment_pending(&mut s, failed);
        s.receive_webhook(
            event(failed, "evt_1", WebhookKind::PaymentFailed),
            Millis(3),
        )
        .unwrap();
        assert_eq!(
            s.order(failed).unwrap().status(),
            OrderStatus::Cancelled(CancelReason::PaymentFailed)
        );
        let paid = place(&mut s, "k2", 2);
        to_paid(&mut s, paid);
        s.receive_webhook(event(paid, "evt_2", WebhookKind::Refunded), Millis(4))
            .unwrap();
        assert_eq!(s.order(paid).unwrap().status(), OrderStatus::Refunded);
        assert_eq!(s.intent(paid).unwrap().refunded, Cents(1_000));
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 10);
    }

    #[test]
    fn the_sweeper_expires_at_the_ttl_at_most_max_and_only_with_job_room() {
        // Proves: reservations expire from exactly their TTL, at most `max` per sweep, and a sweep
        // with too little job headroom expires nothing (the next sweep continues).
        let config = ShopConfig {
            reservation_ttl_ms: Some(100),
            queue: QueueLimits {
                max_jobs: JOB_HEADROOM + 1,
                ..QueueLimits::default()
            },
            ..ShopConfig::default()
        };
        let mut s = shop_with(10, None, config);
        let a = place(&mut s, "k1", 1);
        let b = place(&mut s, "k2", 1);
        drain(&mut s, Millis(0));
        s.reserve(a, Millis(0), Cause::Reconciler).unwrap();
        s.reserve(b, Millis(0), Cause::Reconciler).unwrap();
        drain(&mut s, Millis(0));
        assert!(s.expire_reservations(Millis(99), 10).unwrap().is_empty());
        s.enqueue_job(JobKind::SyncPayment, a, Millis(99)).unwrap();
        s.enqueue_job(JobKind::SyncPayment, a, Millis(99)).unwrap();
        assert!(s.expire_reservations(Millis(100), 10).unwrap().is_empty());
        drain(&mut s, Millis(100));
        let first = s.expire_reservations(Millis(100), 1).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].to, OrderStatus::Cancelled(CancelReason::Expired));
        assert_eq!(s.expire_reservations(Millis(100), 1).unwrap().len(), 1);
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 10);
    }

    #[test]
    fn only_unpaid_orders_are_cancellable_and_repeats_are_no_ops() {
        // Proves: created, reserved and pending orders can be cancelled by the customer (stock
        // released); a repeat is skipped; an order cancelled for another reason cannot be.
        let mut s = shop(10, None);
        let created = place(&mut s, "k1", 1);
        let reserved = place(&mut s, "k2", 1);
        s.reserve(reserved, Millis(1), Cause::Reconciler).unwrap();
        let pending = place(&mut s, "k3", 1);
        to_payment_pending(&mut s, pending);
        for id in [created, reserved, pending] {
            assert!(matches!(s.cancel(id, Millis(4)).unwrap(), Step::Moved(_)));
        }
        assert_eq!(s.inventory().level(&sku()).unwrap().available, 10);
        let expired = place(&mut s, "k4", 1);
        s.reserve(expired, Millis(5), Cause::Reconciler).unwrap();
        s.expire_reservations(Millis(500), 10).unwrap();
        assert!(matches!(
            s.cancel(expired, Millis(501)),
            Err(ShopError::NotCancellable { .. })
        ));
        assert_eq!(
            s.cancel(OrderId(99), Millis(0)),
            Err(ShopError::UnknownOrder(OrderId(99)))
        );
    }

    #[test]
    fn mark_refunded_skips_orders_that_hold_no_money() {
        // Proves: a refund report for an order that was never paid changes nothing.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        to_payment_pending(&mut s, order);
        let before = s.clone();
        assert_eq!(
            s.mark_refunded(
                &intent(order, IntentStatus::Succeeded),
                Millis(3),
                Cause::Reconciler
            )
            .unwrap(),
            Step::Skipped(OrderStatus::PaymentPending)
        );
        assert_eq!(s, before);
    }

    #[test]
    fn stats_audit_and_housekeeping_count_what_is_there() {
        // Proves: stats count orders per status, jobs, parked events and keys; housekeeping
        // removes expired keys and old event ids and reports the sum.
        let config = ShopConfig {
            idempotency: IdempotencyLimits {
                retention_ms: 100,
                ..IdempotencyLimits::default()
            },
            inbox: InboxLimits {
                dedup_retention_ms: 100,
                ..InboxLimits::default()
            },
            ..ShopConfig::default()
        };
        let mut s = shop_with(10, None, config);
        let a = place(&mut s, "k1", 1);
        place(&mut s, "k2", 1);
        s.receive_webhook(event(a, "evt_1", WebhookKind::PaymentSucceeded), Millis(0))
            .unwrap();
        let stats = s.stats();
        assert_eq!(stats.orders_by_status["created"], 2);
        assert_eq!(stats.orders_by_status["paid"], 0);
        assert_eq!(
            (
                stats.jobs_live,
                stats.webhooks_parked,
                stats.idempotency_records
            ),
            (2, 1, 2)
        );
        assert_eq!(stats.stock[&sku()].available, 10);
        assert_eq!(s.next_job_at(), Some(Millis(0)));
        let audit = s.audit(Millis(0));
        assert_eq!((audit.orders.len(), audit.jobs_live), (2, 2));
        assert!(
            audit
                .unsettled()
                .contains(&"1 webhook events parked".to_string())
        );
        assert_eq!(s.housekeep(Millis(99), 10), 0);
        assert_eq!(s.housekeep(Millis(100), 10), 3);
        assert_eq!(s.stats().idempotency_records, 0);
    }

    #[test]
    fn failed_jobs_are_retried_and_unknown_orders_get_no_jobs() {
        // Proves: a failed attempt is retried later, and jobs cannot be added for missing orders.
        let mut s = shop(10, None);
        let order = place(&mut s, "k1", 1);
        let lease = s.lease_job(Millis(0)).unwrap();
        assert!(matches!(
            s.fail_job(&lease, Millis(0), "boom", 0).unwrap(),
            Failed::Retry { .. }
        ));
        assert!(s.lease_job(Millis(0)).is_none());
        assert!(s.next_job_at().unwrap() > Millis(0));
        assert_eq!(
            s.enqueue_job(JobKind::Finalize, OrderId(99), Millis(0)),
            Err(ShopError::UnknownOrder(OrderId(99)))
        );
        assert!(s.enqueue_job(JobKind::Finalize, order, Millis(0)).is_ok());
    }

    #[test]
    fn fingerprints_cover_customer_lines_and_express() {
        // Proves: requests that differ in customer, quantity or express differ in fingerprint.
        let base = request("k", "alice", 1);
        let fp = base.fingerprint();
        assert_eq!(request("other-key", "alice", 1).fingerprint(), fp);
        assert_ne!(request("k", "bob", 1).fingerprint(), fp);
        assert_ne!(request("k", "alice", 2).fingerprint(), fp);
        let express = PlaceOrder {
            express: true,
            ..base
        };
        assert_ne!(express.fingerprint(), fp);
    }

    #[test]
    fn an_unkeyed_order_is_placed_without_a_record() {
        // Proves: a request without a key creates its order and stores no key.
        let mut s = shop(10, None);
        let mut req = request("k", "alice", 1);
        req.key = None;
        assert!(matches!(
            s.place_order(&req, Millis(0)),
            Ok(Placed::Created { .. })
        ));
        assert!(matches!(
            s.place_order(&req, Millis(0)),
            Ok(Placed::Created { .. })
        ));
        assert_eq!(s.stats().idempotency_records, 0);
        assert!(s.stock(&Sku::new("nope").unwrap(), 1, 1).is_err());
    }

    #[test]
    fn the_release_command_frees_keys_in_flight_and_answers_how_many() {
        // Proves: `ReleaseKeysInFlight` through `apply` frees the keys held in flight (their
        // requests begin anew) and answers their count; a second one finds none.
        let mut s = shop(10, None);
        let fp = Fingerprint::of(b"pay");
        for k in ["pay-1", "pay-2"] {
            let key = IdempotencyKey::new(k).unwrap();
            assert_eq!(s.begin_key(&key, fp, Millis(0)), Begin::New);
        }
        let release = |s: &mut ShopState| s.apply(crate::Command::ReleaseKeysInFlight, Millis(1));
        assert_eq!(release(&mut s), Ok(crate::Reply::Count(2)));
        let key = IdempotencyKey::new("pay-1").unwrap();
        assert_eq!(s.begin_key(&key, fp, Millis(2)), Begin::New);
        assert_eq!(release(&mut s), Ok(crate::Reply::Count(1)));
        assert_eq!(release(&mut s), Ok(crate::Reply::Count(0)));
    }

    #[test]
    fn the_release_leases_command_ends_leases_and_answers_how_many() {
        // Proves: `ReleaseLeases` through `apply` ends the held lease (the job leasable again at
        // once, long before its visibility timeout) and answers 1; a second one answers 0.
        let mut s = shop(10, None);
        place(&mut s, "k1", 1);
        let held = s.lease_job(Millis(0)).expect("the reserve job");
        assert!(s.lease_job(Millis(1)).is_none());
        let release = |s: &mut ShopState| s.apply(crate::Command::ReleaseLeases, Millis(2));
        assert_eq!(release(&mut s), Ok(crate::Reply::Count(1)));
        assert_eq!(s.lease_job(Millis(2)).map(|l| l.job), Some(held.job));
        assert_eq!(
            s.apply(crate::Command::ReleaseLeases, Millis(3)),
            Ok(crate::Reply::Count(1))
        );
        assert_eq!(release(&mut s), Ok(crate::Reply::Count(0)));
    }

    #[test]
    fn the_release_holder_command_frees_what_that_holder_took_through_apply_as() {
        // Proves: a key and a lease taken through `apply_as` by holder 1 are its own:
        // `ReleaseHolder { 1 }` frees both (answers 2: the key begins anew, the job is leased
        // again at once) and leaves holder 2's key and lease held; a second release answers 0.
        use crate::{Command, Reply};
        let mut s = shop(10, None);
        place(&mut s, "k1", 1);
        place(&mut s, "k2", 1);
        let fp = Fingerprint::of(b"pay");
        let (one, two) = (Some(Holder(1)), Some(Holder(2)));
        let begin = |s: &mut ShopState, k: &str, at: u64, holder| {
            let key = IdempotencyKey::new(k).unwrap();
            let command = Command::BeginKey {
                key,
                fingerprint: fp,
            };
            s.apply_as(command, Millis(at), holder)
        };
        let lease = |s: &mut ShopState, at: u64, holder| match s.apply_as(
            Command::LeaseJob,
            Millis(at),
            holder,
        ) {
            Ok(Reply::Lease(lease)) => lease,
            other => panic!("{other:?}"),
        };
        assert_eq!(begin(&mut s, "pay-1", 0, one), Ok(Reply::Begin(Begin::New)));
        assert_eq!(begin(&mut s, "pay-2", 0, two), Ok(Reply::Begin(Begin::New)));
        let mine = lease(&mut s, 0, one).expect("a reserve job");
        let theirs = lease(&mut s, 0, two).expect("the other");
        let release =
            |s: &mut ShopState, holder| s.apply(Command::ReleaseHolder { holder }, Millis(1));
        assert_eq!(release(&mut s, Holder(1)), Ok(Reply::Count(2)));
        assert_eq!(begin(&mut s, "pay-1", 2, two), Ok(Reply::Begin(Begin::New)));
        assert_eq!(
            begin(&mut s, "pay-2", 2, one),
            Ok(Reply::Begin(Begin::InFlight))
        );
        assert_eq!(lease(&mut s, 2, None).map(|l| l.job), Some(mine.job));
        assert!(lease(&mut s, 2, None).is_none(), "{theirs:?} still held");
        assert_eq!(release(&mut s, Holder(1)), Ok(Reply::Count(0)));
        assert!(Command::ReleaseHolder { holder: Holder(1) }.may_wake_jobs());
    }

    #[test]
    fn keyed_requests_follow_begin_complete_and_abandon() {
        // Proves: the shop's key protocol replays a completed response, reports a running one and
        // frees an abandoned one; a naive overwrite is readable with `saved_response`.
        let mut s = shop(10, None);
        let key = IdempotencyKey::new("pay-1").unwrap();
        let fp = Fingerprint::of(b"pay");
        let saved = SavedResponse::OrderAccepted {
            order: OrderId(1),
            status: OrderStatus::Created,
        };
        assert_eq!(s.begin_key(&key, fp, Millis(0)), Begin::New);
        assert_eq!(s.begin_key(&key, fp, Millis(1)), Begin::InFlight);
        assert_eq!(s.saved_response(&key, Millis(1)), None);
        s.complete_key(&key, fp, saved.clone(), Millis(2)).unwrap();
        assert_eq!(
            s.begin_key(&key, fp, Millis(3)),
            Begin::Replay(saved.clone())
        );
        assert_eq!(s.saved_response(&key, Millis(3)), Some(saved.clone()));
        let other = IdempotencyKey::new("pay-2").unwrap();
        assert_eq!(s.begin_key(&other, fp, Millis(3)), Begin::New);
        s.abandon_key(&other, fp).unwrap();
        assert_eq!(s.begin_key(&other, fp, Millis(4)), Begin::New);
        s.raw_put_key(&other, fp, saved.clone(), Millis(5));
        assert_eq!(s.saved_response(&other, Millis(5)), Some(saved));
    }

    #[test]
    fn the_shop_shows_the_catalog_and_config_it_was_built_with() {
        // Proves: shells read prices and the TTL from the shop itself, not from defaults.
        let s = shop(10, None);
        assert_eq!(s.catalog().get(&sku()).unwrap().price, Cents(1_000));
        assert_eq!(s.config().reservation_ttl_ms, Some(100));
        assert_eq!(s.inventory().level(&sku()).unwrap().received, 10);
    }
}
