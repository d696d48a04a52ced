//! The store's command set: every operation the shop performs on its state,
//! as plain serialisable data, applied by one entry point,
//! [`ShopState::apply`].
//!
//! **Design decision: an operation is declared once.** A [`Command`] names
//! the operation and carries its arguments; [`ShopState::apply`] runs it
//! against the state at a given `now` and answers one [`Reply`]. Every store
//! (in memory, on a remote host, in SQLite, recording for the simulator) is
//! generic over this pair, so a new operation is one variant and one arm
//! here, and no shell re-derives a decision: the stores only carry commands,
//! stamp `now`, keep the result durable and wait.
//!
//! Reference operations are the atomic ones of [`ShopState`]. The `Raw*`
//! primitives exist only for naive design variants, which compose them with
//! awaits in between and so race.

use crate::jobs::Failed;
use crate::shop::SoldOut;
use crate::{
    AuditSnapshot, Begin, Cause, Fingerprint, Holder, IdempotencyKey, JobId, JobKind, Lease,
    Millis, Order, OrderId, PaymentIntent, PlaceOrder, Placed, Product, SavedResponse, ShopError,
    ShopState, Sku, Step, StockLevel, Transition, WebhookEvent, WebhookOutcome,
};
use serde::{Deserialize, Serialize};

/// One atomic store operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Command {
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
    /// Free every key held in flight: run by a shop that knows no request of
    /// its own is in flight — one process, its store just opened — so each
    /// such key was taken by a request that died with an earlier process
    /// (see [`ShopState::release_keys_in_flight`]). Answers how many.
    ReleaseKeysInFlight,
    /// End every job lease now, as if each had lapsed (see
    /// [`ShopState::release_leases`]): run, like `ReleaseKeysInFlight`, by a
    /// shop that knows no worker of its own holds one. Answers how many.
    ReleaseLeases,
    /// Free the keys `holder` holds in flight and end its job leases now
    /// (see [`ShopState::release_holder`]): run, on a store several
    /// processes share, by one that knows `holder`'s process is gone.
    /// Answers how many keys and leases together.
    ReleaseHolder {
        /// The process that is gone.
        holder: Holder,
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
        expected: crate::OrderStatus,
        /// The status to move to.
        to: crate::OrderStatus,
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
    /// the store's own cap) for one: answered as soon as a job becomes
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
    /// Read several orders at once: those of `orders` that exist, in the
    /// order asked, at most `crate::FEED_READ_MAX` of them (the rest are not
    /// read). One round trip for what a feed read said changed.
    GetOrders {
        /// The orders.
        orders: Vec<OrderId>,
    },
    /// Read the change feed: up to `max` status changes after `since`
    /// (`None`: no changes, just the head cursor).
    ReadFeed {
        /// Where the reader is.
        since: Option<crate::Cursor>,
        /// Bound (the core caps it at `crate::FEED_READ_MAX`).
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
        unit_prices: Option<Vec<crate::Cents>>,
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

/// The answer to a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Reply {
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
    Swept(Vec<Transition>, Option<crate::Millis>),
    /// `LeaseJob`.
    Lease(Option<Lease>),
    /// `FailJob`.
    Failed(Failed),
    /// `EnqueueJob`, `RawCreateOrder` (the job, if any).
    Job(Option<JobId>),
    /// `GetOrder`.
    Order(Option<Box<Order>>),
    /// `ReadFeed`.
    Feed(crate::Changes),
    /// `ReconcileCandidates`, `GetOrders`.
    Orders(Vec<Order>),
    /// `Catalog`.
    Catalog(Vec<(Product, StockLevel)>),
    /// `Audit`.
    Audit(Box<AuditSnapshot>),
    /// `Stats`.
    Stats(Box<crate::ShopStats>),
    /// `Housekeep`, `RawAvailable`, `ReleaseKeysInFlight`, `ReleaseLeases`, `ReleaseHolder`.
    Count(u64),
    /// `RawGetKey`.
    Key(Option<SavedResponse>),
    /// `RawCreateOrder`.
    Created(OrderId, Option<JobId>),
}

impl Command {
    /// Whether the command only reads: it changes nothing, so a durable
    /// store has nothing to write for it (a lease does change the queue).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::GetOrder { .. }
                | Command::GetOrders { .. }
                | Command::ReconcileCandidates { .. }
                | Command::Catalog
                | Command::Audit
                | Command::Stats
                | Command::RawGetKey { .. }
                | Command::RawAvailable { .. }
                | Command::ReadFeed { .. }
        )
    }

    /// Whether the command may make a job runnable sooner (enqueue one,
    /// retry one, free stock a waiter wants): every command but the reads,
    /// the leases and the ack. A store wakes its waiting leases after one.
    pub fn may_wake_jobs(&self) -> bool {
        !self.is_read()
            && !matches!(
                self,
                Command::LeaseJob | Command::LeaseJobWait { .. } | Command::AckJob { .. }
            )
    }
}

impl ShopState {
    /// Whether `command`, run at `now`, would leave the state as it is: a
    /// read, or a lease, reservation sweep or housekeeping pass that finds
    /// nothing due. A durable store records nothing for such a command and
    /// wakes nobody, so an idle shop writes nothing. `false` means it may
    /// change something (or be refused, which changes nothing either).
    pub fn changes_nothing(&self, command: &Command, now: Millis) -> bool {
        match command {
            Command::LeaseJob | Command::LeaseJobWait { .. } => {
                self.next_job_at().is_none_or(|at| at > now)
            }
            Command::ExpireReservations { max } => {
                *max == 0 || self.inventory().next_expiry().is_none_or(|at| at > now)
            }
            Command::Housekeep { max } => *max == 0 || !self.housekeeping_due(now),
            read => read.is_read(),
        }
    }

    /// Runs one command atomically at `now`: the single entry point every
    /// store calls. A refused command changes nothing and answers the
    /// [`ShopError`]. `LeaseJobWait` leases like `LeaseJob` (waiting is the
    /// store's business, on its own clock).
    ///
    /// In debug builds every write is followed by the shop's consistency
    /// check ([`ShopState::check_consistency`]), the postcondition paired
    /// with each operation's own preconditions.
    pub fn apply(&mut self, command: Command, now: Millis) -> Result<Reply, ShopError> {
        self.apply_as(command, now, None)
    }

    /// [`ShopState::apply`] for `holder`, a process sharing the store: a key
    /// `BeginKey` takes and a lease `LeaseJob` hands out are recorded as
    /// `holder`'s, for `ReleaseHolder` to free. Other commands ignore it.
    pub fn apply_as(
        &mut self,
        command: Command,
        now: Millis,
        holder: Option<Holder>,
    ) -> Result<Reply, ShopError> {
        let writes = !command.is_read();
        let reply = self.run_command(command, now, holder);
        if writes {
            self.debug_check_consistency();
        }
        reply
    }

    fn run_command(
        &mut self,
        command: Command,
        now: Millis,
        holder: Option<Holder>,
    ) -> Result<Reply, ShopError> {
        use Command as C;
        use Reply as R;
        Ok(match command {
            C::PlaceOrder { request } => R::Placed(self.place_order(&request, now)?),
            keyed @ (C::BeginKey { .. }
            | C::CompleteKey { .. }
            | C::AbandonKey { .. }
            | C::ReleaseKeysInFlight
            | C::ReleaseLeases
            | C::ReleaseHolder { .. }) => self.run_held(keyed, now, holder)?,
            C::Reserve { order, cause } => R::Step(self.reserve(order, now, cause)?),
            C::RecordIntent { intent, cause } => R::Step(self.record_intent(intent, now, cause)?),
            C::ApplyPayment { intent, cause } => R::Step(self.apply_payment(&intent, now, cause)?),
            C::ReceiveWebhook { event } => R::Webhook(self.receive_webhook(event, now)?),
            C::Finalize { order, cause } => R::Step(self.finalize(order, now, cause)?),
            C::MarkRefunded { intent, cause } => R::Step(self.mark_refunded(&intent, now, cause)?),
            C::TransitionIf {
                order,
                expected,
                to,
                cause,
            } => R::Step(self.transition_if(order, expected, to, now, cause)?),
            C::Cancel { order } => R::Step(self.cancel(order, now)?),
            C::ExpireReservations { max } => {
                let expired = self.expire_reservations(now, max)?;
                R::Swept(expired, self.inventory().next_expiry())
            }
            C::LeaseJob | C::LeaseJobWait { .. } => R::Lease(self.lease_job_as(now, holder)),
            C::AckJob { lease } => {
                self.ack_job(&lease)?;
                R::Done
            }
            C::FailJob {
                lease,
                error,
                jitter_permille,
            } => R::Failed(self.fail_job(&lease, now, &error, jitter_permille)?),
            C::EnqueueJob { kind, order } => R::Job(Some(self.enqueue_job(kind, order, now)?)),
            C::Restock { sku, qty } => {
                self.restock(&sku, qty, now)?;
                R::Done
            }
            C::Housekeep { max } => R::Count(self.housekeep(now, max) as u64),
            read @ (C::GetOrder { .. }
            | C::GetOrders { .. }
            | C::ReadFeed { .. }
            | C::ReconcileCandidates { .. }
            | C::Catalog
            | C::Audit
            | C::Stats) => self.read(read, now),
            naive @ (C::RawGetKey { .. }
            | C::RawPutKey { .. }
            | C::RawCreateOrder { .. }
            | C::RawAvailable { .. }
            | C::RawForceReserve { .. }
            | C::RawReserveUnchecked { .. }
            | C::RawReserveFromReservations { .. }
            | C::RawApplyUnchecked { .. }) => self.run_naive(naive, now)?,
        })
    }

    /// Two-phase keys and what processes hold: taking, settling and freeing.
    fn run_held(
        &mut self,
        command: Command,
        now: Millis,
        holder: Option<Holder>,
    ) -> Result<Reply, ShopError> {
        use Command as C;
        use Reply as R;
        Ok(match command {
            C::BeginKey { key, fingerprint } => {
                R::Begin(self.begin_key_as(&key, fingerprint, now, holder))
            }
            C::CompleteKey {
                key,
                fingerprint,
                response,
            } => {
                self.complete_key(&key, fingerprint, response, now)?;
                R::Done
            }
            C::AbandonKey { key, fingerprint } => {
                self.abandon_key(&key, fingerprint)?;
                R::Done
            }
            C::ReleaseKeysInFlight => R::Count(self.release_keys_in_flight() as u64),
            C::ReleaseLeases => R::Count(self.release_leases(now) as u64),
            C::ReleaseHolder { holder } => R::Count(self.release_holder(holder, now) as u64),
            other => unreachable!("not a key or hold command: {other:?}"),
        })
    }

    /// The reads: nothing changes.
    fn read(&self, command: Command, now: Millis) -> Reply {
        use Command as C;
        use Reply as R;
        match command {
            C::GetOrder { order } => R::Order(self.order(order).cloned().map(Box::new)),
            C::GetOrders { orders } => R::Orders(
                orders
                    .iter()
                    .take(crate::FEED_READ_MAX)
                    .filter_map(|&id| self.order(id).cloned())
                    .collect(),
            ),
            C::ReadFeed { since, max } => R::Feed(self.changes_since(since, max)),
            C::ReconcileCandidates { limit } => R::Orders(self.reconcile_candidates(limit)),
            C::Catalog => R::Catalog(
                self.catalog()
                    .products()
                    .map(|p| {
                        let level = self.inventory().level(&p.sku).unwrap_or_default();
                        (p.clone(), level)
                    })
                    .collect(),
            ),
            C::Audit => R::Audit(Box::new(self.audit(now))),
            C::Stats => R::Stats(Box::new(self.stats())),
            other => unreachable!("{other:?} is not a read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, CustomerId, IdempotencyKey, ItemRequest, ShopConfig};

    #[test]
    fn a_shop_state_survives_json() {
        // Proves: a state with orders, holdings (composite keys), jobs and keys serialises to
        // JSON and back to an equal state (the durable store checkpoints it this way).
        let hat = Sku::new("hat").unwrap();
        let mut shop = hat_shop(Some(3), 2);
        let request = PlaceOrder {
            key: Some(IdempotencyKey::new("k-1").unwrap()),
            customer: CustomerId::new("alice").unwrap(),
            items: vec![ItemRequest { sku: hat, qty: 2 }],
            express: false,
        };
        shop.apply(Command::PlaceOrder { request }, Millis(1))
            .unwrap();
        let Reply::Lease(Some(lease)) = shop.apply(Command::LeaseJob, Millis(2)).unwrap() else {
            panic!("a job");
        };
        let cause = Cause::Worker { job: lease.job };
        shop.apply(
            Command::Reserve {
                order: lease.order,
                cause,
            },
            Millis(2),
        )
        .unwrap();
        let json = serde_json::to_string(&shop).unwrap();
        let back: ShopState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, shop);
    }

    fn placed(shop: &mut ShopState, n: u64) -> Vec<OrderId> {
        let hat = Sku::new("hat").unwrap();
        (0..n)
            .map(|i| {
                let request = PlaceOrder {
                    key: None,
                    customer: CustomerId::new(format!("c-{i}")).unwrap(),
                    items: vec![ItemRequest {
                        sku: hat.clone(),
                        qty: 1,
                    }],
                    express: false,
                };
                match shop.apply(Command::PlaceOrder { request }, Millis(i)) {
                    Ok(Reply::Placed(crate::Placed::Created { order, .. })) => order,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    /// A shop selling hats at 15.00, at most 5 an order, 10 in stock over `segments`.
    fn hat_shop(per_customer_limit: Option<u32>, segments: usize) -> ShopState {
        let hat = Sku::new("hat").unwrap();
        let mut shop = ShopState::new(
            Catalog::new([Product {
                sku: hat.clone(),
                name: "Hat".into(),
                price: crate::Cents(1_500),
                max_qty_per_order: 5,
                per_customer_limit,
            }]),
            ShopConfig::default(),
        );
        shop.stock(&hat, 10, segments).unwrap();
        shop
    }

    /// Whether `shop` says `command` changes nothing at `now`; when it does,
    /// running it on a copy must leave the copy equal to `shop`.
    fn says_nothing_changes(shop: &ShopState, command: Command, now: Millis) -> bool {
        let says = shop.changes_nothing(&command, now);
        if says {
            let mut probe = shop.clone();
            let _ = probe.apply(command.clone(), now);
            assert_eq!(probe, *shop, "{command:?} at {now:?} changed the state");
        }
        says
    }

    #[test]
    fn a_lease_sweep_or_housekeeping_changes_nothing_exactly_until_something_is_due() {
        // Proves: an idle shop's lease, reservation sweep and housekeeping pass change nothing
        // (so a durable store writes nothing for them); each may change something from the very
        // millisecond its first item falls due and not one before; `max` 0 never does; reads
        // never do and other writes always may. Every "nothing" is checked against the state.
        let sweep = Command::ExpireReservations { max: 10 };
        let housekeep = Command::Housekeep { max: 10 };
        let mut shop = hat_shop(None, 1);
        for idle in [
            Command::LeaseJob,
            sweep.clone(),
            housekeep.clone(),
            Command::Stats,
        ] {
            assert!(says_nothing_changes(&shop, idle, Millis(1)));
        }
        let hat = Sku::new("hat").unwrap();
        let restock = Command::Restock { sku: hat, qty: 1 };
        assert!(!says_nothing_changes(&shop, restock, Millis(1)));

        // A job: due from the moment it was enqueued.
        let request = PlaceOrder {
            key: None,
            customer: CustomerId::new("alice").unwrap(),
            items: vec![ItemRequest {
                sku: Sku::new("hat").unwrap(),
                qty: 1,
            }],
            express: false,
        };
        let Ok(Reply::Placed(crate::Placed::Created { order, .. })) =
            shop.apply(Command::PlaceOrder { request }, Millis(20))
        else {
            panic!("placed");
        };
        let enqueued = shop.next_job_at().expect("a reserve job");
        assert_eq!(enqueued, Millis(20));
        for lease in [Command::LeaseJob, Command::LeaseJobWait { wait_ms: 100 }] {
            assert!(says_nothing_changes(
                &shop,
                lease.clone(),
                Millis(enqueued.0 - 1)
            ));
            assert!(!says_nothing_changes(&shop, lease, enqueued));
        }
        let Ok(Reply::Lease(Some(lease))) = shop.apply(Command::LeaseJob, enqueued) else {
            panic!("a lease");
        };
        let cause = Cause::Worker { job: lease.job };
        shop.apply(Command::Reserve { order, cause }, enqueued)
            .unwrap();

        // A hold: due at its expiry.
        let lapses = shop.inventory().next_expiry().expect("a hold");
        assert!(says_nothing_changes(
            &shop,
            sweep.clone(),
            Millis(lapses.0 - 1)
        ));
        assert!(!says_nothing_changes(&shop, sweep, lapses));
        let none = Command::ExpireReservations { max: 0 };
        assert!(says_nothing_changes(&shop, none, lapses));

        // An idempotency record: due at the end of its retention.
        let key = IdempotencyKey::new("k-1").unwrap();
        let fingerprint = crate::Fingerprint::of(b"body");
        shop.apply(Command::BeginKey { key, fingerprint }, Millis(5))
            .unwrap();
        let retention = ShopConfig::default().idempotency.retention_ms;
        let forgotten = Millis(5 + retention);
        assert!(says_nothing_changes(
            &shop,
            housekeep.clone(),
            Millis(forgotten.0 - 1)
        ));
        assert!(!says_nothing_changes(&shop, housekeep, forgotten));
        let none = Command::Housekeep { max: 0 };
        assert!(says_nothing_changes(&shop, none, forgotten));
    }

    #[test]
    fn get_orders_answers_the_existing_ones_in_the_order_asked() {
        // Proves: several orders come back in one read, in the order asked (a repeat
        // repeated), an unknown id is left out, and the read changes nothing.
        let mut shop = hat_shop(None, 1);
        let ids = placed(&mut shop, 3);
        let before = shop.clone();
        let asked = vec![ids[2], OrderId(999), ids[0], ids[2]];
        let Ok(Reply::Orders(orders)) = shop.apply(Command::GetOrders { orders: asked }, Millis(9))
        else {
            panic!("orders");
        };
        let got: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
        assert_eq!(got, vec![ids[2], ids[0], ids[2]]);
        assert_eq!(orders[1], *shop.order(ids[0]).unwrap());
        assert_eq!(shop, before, "a read");
        assert!(Command::GetOrders { orders: vec![] }.is_read());
    }

    #[test]
    fn get_orders_reads_at_most_the_feed_read_bound() {
        // Proves: the read is bounded by FEED_READ_MAX ids, on both sides of the bound.
        let mut shop = hat_shop(None, 1);
        let id = placed(&mut shop, 1)[0];
        for (asked, answered) in [
            (crate::FEED_READ_MAX, crate::FEED_READ_MAX),
            (crate::FEED_READ_MAX + 1, crate::FEED_READ_MAX),
        ] {
            let command = Command::GetOrders {
                orders: vec![id; asked],
            };
            let Ok(Reply::Orders(orders)) = shop.apply(command, Millis(9)) else {
                panic!("orders");
            };
            assert_eq!(orders.len(), answered, "asked {asked}");
        }
    }
}
