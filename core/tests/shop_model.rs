//! Model-based test of the reference store, `ShopState`, end to end.
//!
//! A tiny recording shell drives the shop with random sequences of shopper
//! and infrastructure actions: orders with repeated idempotency keys,
//! workers that finish or crash mid-job (so jobs are redelivered), customers
//! who pay, are declined, pay late or cancel, webhooks duplicated and
//! replayed, the reservation sweeper and the reconciler. A fake PSP keeps the
//! ledger. After every step every safety invariant of the checker must hold,
//! and the shop's books must equal a model derived from its orders' statuses
//! alone (stock per SKU, each order's reservation, each customer's
//! purchase-limit holding, judged through what `place_order` accepts); after
//! the world settles, every invariant — liveness included — must hold and no
//! intent is left open at the PSP.

use proptest::prelude::*;
use stampede_core::{
    Catalog, Cause, Cents, ClientOp, ClientReply, Command, CustomerId, EventId, EventKind, History,
    IdempotencyKey, IntentId, IntentStatus, Invariant, ItemRequest, JobKind, Lease, LedgerEntry,
    LedgerKind, Millis, OrderId, OrderStatus, PaymentIntent, PlaceOrder, Placed, Product,
    QueueLimits, Repair, RetryPolicy, SavedResponse, ShopConfig, ShopError, ShopState, Sku, Step,
    StockLevel, WebhookEvent, WebhookKind, check, check_all, payment_key, reconcile,
};
use std::collections::BTreeMap;

const TTL_MS: u64 = 1_000;
const PER_CUSTOMER_LIMIT: u32 = 4;
const SKUS: [(&str, u64, u64, usize); 3] = [
    ("hot", 900, 4, 3),
    ("warm", 1_250, 6, 1),
    ("cold", 400, 20, 1),
];

#[derive(Clone, Debug)]
enum Op {
    Place {
        customer: u8,
        key: u8,
        items: Vec<(usize, u32)>,
    },
    Work,
    Crash,
    Pay {
        pick: usize,
        succeed: bool,
    },
    ReplayWebhook {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Advance(u64),
    Reconcile,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..6, prop::collection::vec((0..SKUS.len(), 1u32..3), 1..3))
            .prop_map(|(customer, key, items)| Op::Place { customer, key, items }),
        6 => Just(Op::Work),
        1 => Just(Op::Crash),
        3 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(pick, succeed)| Op::Pay { pick, succeed }),
        1 => any::<usize>().prop_map(|pick| Op::ReplayWebhook { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (1u64..700).prop_map(Op::Advance),
        1 => Just(Op::Reconcile),
    ]
}

/// The fake PSP: intents created under the shop's idempotency key (a second
/// create with a known key returns the first intent, as Stripe does), and
/// the webhook events it sent. The ledger lives in the history.
#[derive(Default)]
struct Psp {
    intents: BTreeMap<OrderId, PaymentIntent>,
    by_key: BTreeMap<String, OrderId>,
    events: Vec<WebhookEvent>,
}

struct World {
    shop: ShopState,
    psp: Psp,
    history: History,
    now: Millis,
    next_req: u64,
    ledger_seq: u64,
}

impl World {
    fn new() -> World {
        let catalog = Catalog::new(SKUS.iter().map(|(name, price, _, _)| Product {
            sku: Sku::new(*name).unwrap(),
            name: name.to_string(),
            price: Cents(*price),
            max_qty_per_order: 3,
            per_customer_limit: Some(PER_CUSTOMER_LIMIT),
        }));
        let defaults = ShopConfig::default();
        let config = ShopConfig {
            reservation_ttl_ms: Some(TTL_MS),
            queue: QueueLimits {
                visibility_ms: 300,
                ..defaults.queue
            },
            retry: RetryPolicy {
                max_attempts: 1_000,
                ..defaults.retry
            },
            ..defaults
        };
        let mut world = World {
            shop: ShopState::new(catalog, config),
            psp: Psp::default(),
            history: History::new(),
            now: Millis(0),
            next_req: 0,
            ledger_seq: 0,
        };
        for (name, price, qty, segments) in SKUS {
            let sku = Sku::new(name).unwrap();
            world.shop.stock(&sku, qty, segments).unwrap();
            world.record(EventKind::Listed {
                sku: sku.clone(),
                price: Cents(price),
                limit: Some(PER_CUSTOMER_LIMIT),
            });
            world.record(EventKind::Stocked { sku, qty });
        }
        world
    }

    fn record(&mut self, kind: EventKind) {
        self.history.push(self.now, kind);
    }

    fn record_step(&mut self, step: &Step) {
        if let Step::Moved(transitions) = step {
            for t in transitions {
                self.record(EventKind::Transition(t.clone()));
            }
        }
    }

    fn ledger(&mut self, order: OrderId, intent: &IntentId, kind: LedgerKind, amount: Cents) {
        self.ledger_seq += 1;
        let entry = LedgerEntry {
            seq: self.ledger_seq,
            at: self.now,
            intent: intent.clone(),
            order,
            kind,
            amount,
        };
        self.record(EventKind::Ledger(entry));
    }

    fn place(&mut self, customer: u8, key: u8, items: Vec<(usize, u32)>) {
        let mut items: Vec<ItemRequest> = items
            .into_iter()
            .map(|(s, qty)| ItemRequest {
                sku: Sku::new(SKUS[s].0).unwrap(),
                qty,
            })
            .collect();
        items.dedup_by(|a, b| a.sku == b.sku);
        let request = PlaceOrder {
            key: Some(IdempotencyKey::new(format!("key-{key}")).unwrap()),
            customer: CustomerId::new(format!("c{customer}")).unwrap(),
            items,
            express: false,
        };
        self.next_req += 1;
        let req = self.next_req;
        let fingerprint = Some(request.fingerprint());
        let held_before = self.expected_holdings();
        self.record(EventKind::Request {
            req,
            op: ClientOp::PlaceOrder(request.clone()),
            fingerprint,
        });
        let reply = match self.shop.place_order(&request, self.now) {
            Ok(Placed::Created { order, .. }) => {
                for item in &request.items {
                    let held = held_before
                        .get(&(request.customer.clone(), item.sku.clone()))
                        .copied()
                        .unwrap_or(0);
                    assert!(
                        held + u64::from(item.qty) <= u64::from(PER_CUSTOMER_LIMIT),
                        "accepted over the limit: holds {held}, asked {}",
                        item.qty
                    );
                }
                ClientReply::OrderAccepted {
                    order,
                    replayed: false,
                }
            }
            Ok(Placed::Replay(SavedResponse::OrderAccepted { order, .. })) => {
                ClientReply::OrderAccepted {
                    order,
                    replayed: true,
                }
            }
            Ok(Placed::KeyMismatch) => ClientReply::Refused {
                status: 422,
                problem: "key-mismatch".into(),
            },
            Ok(other) => panic!("unexpected {other:?}"),
            Err(ShopError::PurchaseLimit {
                customer,
                sku,
                limit,
                held,
                requested,
            }) => {
                let model = held_before.get(&(customer, sku)).copied().unwrap_or(0);
                assert_eq!(
                    held, model,
                    "the shop's holding differs from its live orders"
                );
                assert!(
                    held + u64::from(requested) > u64::from(limit),
                    "refused within the limit: holds {held}, asked {requested}, limit {limit}"
                );
                ClientReply::Refused {
                    status: 422,
                    problem: "limit".into(),
                }
            }
            // The sold-out fast path: judged by the checker (a refusal out of stock while units
            // stay unsold breaks `no_sale_left_behind`); here, only that it says what it claims.
            Err(ShopError::SoldOut {
                left, requested, ..
            }) => {
                assert!(
                    left < u64::from(requested),
                    "sold out with {left} left for {requested}"
                );
                ClientReply::Refused {
                    status: 409,
                    problem: "sold-out".into(),
                }
            }
            Err(e @ (ShopError::Shed { .. } | ShopError::RateLimited { .. })) => {
                panic!("the model's workload never reaches the admission limits: {e}")
            }
            Err(e) => panic!("unexpected {e}"),
        };
        self.record(EventKind::Response { req, reply });
    }

    /// Runs one job's step. With `crash`, the worker dies after the effect
    /// and before the ack: the job will be redelivered.
    fn work(&mut self, crash: bool) {
        let Some(lease) = self.shop.lease_job(self.now) else {
            return;
        };
        self.run_job(&lease);
        if !crash {
            self.shop.ack_job(&lease).unwrap();
        }
    }

    fn run_job(&mut self, lease: &Lease) {
        let cause = Cause::Worker { job: lease.job };
        let order = lease.order;
        let step = match lease.kind {
            JobKind::Reserve => self.shop.reserve(order, self.now, cause).unwrap(),
            JobKind::CreateIntent => {
                let total = self.shop.order(order).unwrap().total;
                // Idempotent at the PSP: a known key returns the intent it created.
                let owner = *self.psp.by_key.entry(payment_key(order)).or_insert(order);
                let intent = self
                    .psp
                    .intents
                    .entry(owner)
                    .or_insert_with(|| PaymentIntent {
                        id: IntentId::new(format!("pi_{}", order.0)).unwrap(),
                        order,
                        amount: total,
                        status: IntentStatus::RequiresPayment,
                        refunded: Cents::ZERO,
                    });
                let intent = intent.clone();
                self.shop.record_intent(intent, self.now, cause).unwrap()
            }
            JobKind::SyncPayment => {
                let intent = self.psp.intents[&order].clone();
                self.shop.apply_payment(&intent, self.now, cause).unwrap()
            }
            JobKind::Finalize => self.shop.finalize(order, self.now, cause).unwrap(),
            JobKind::Refund => {
                let intent = self
                    .psp
                    .intents
                    .get_mut(&order)
                    .expect("refund needs an intent");
                let net = intent.net_captured();
                let id = intent.id.clone();
                if net > Cents::ZERO {
                    intent.refunded = intent.amount;
                    self.ledger(order, &id, LedgerKind::Refund, net);
                }
                let intent = self.psp.intents[&order].clone();
                self.shop.mark_refunded(&intent, self.now, cause).unwrap()
            }
            JobKind::CancelIntent => {
                if let Some(intent) = self.psp.intents.get_mut(&order)
                    && intent.status == IntentStatus::RequiresPayment
                {
                    intent.status = IntentStatus::Canceled;
                }
                Step::Skipped(self.shop.order(order).unwrap().status())
            }
            // This PSP holds one intent per order, the shop's own: nothing is stray.
            JobKind::RefundStray => panic!("a stray payment for {order}"),
        };
        self.record_step(&step);
    }

    /// The customer pays (or is declined) at the PSP, which then sends a webhook.
    fn pay(&mut self, pick: usize, succeed: bool) {
        let open: Vec<OrderId> = self
            .psp
            .intents
            .values()
            .filter(|i| i.status == IntentStatus::RequiresPayment)
            .map(|i| i.order)
            .collect();
        if open.is_empty() {
            return;
        }
        let order = open[pick % open.len()];
        let intent = self.psp.intents.get_mut(&order).unwrap();
        intent.status = if succeed {
            IntentStatus::Succeeded
        } else {
            IntentStatus::Failed
        };
        let (id, amount) = (intent.id.clone(), intent.amount);
        if succeed {
            self.ledger(order, &id, LedgerKind::Charge, amount);
        }
        let event = WebhookEvent {
            id: EventId::new(format!("evt_{}", self.psp.events.len() + 1)).unwrap(),
            kind: if succeed {
                WebhookKind::PaymentSucceeded
            } else {
                WebhookKind::PaymentFailed
            },
            intent: id,
            order,
            amount,
            created: self.now,
        };
        self.psp.events.push(event.clone());
        self.deliver(event);
    }

    fn deliver(&mut self, event: WebhookEvent) {
        if let stampede_core::WebhookOutcome::Applied(step) =
            self.shop.receive_webhook(event, self.now).unwrap()
        {
            self.record_step(&step);
        }
    }

    fn cancel(&mut self, pick: usize) {
        let ids: Vec<OrderId> = self.shop.orders().map(|o| o.id).collect();
        if ids.is_empty() {
            return;
        }
        match self.shop.cancel(ids[pick % ids.len()], self.now) {
            Ok(step) => self.record_step(&step),
            Err(ShopError::NotCancellable { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        for t in self.shop.expire_reservations(self.now, usize::MAX).unwrap() {
            self.record(EventKind::Transition(t));
        }
    }

    fn reconcile(&mut self) {
        let repairs = reconcile(self.shop.orders(), &self.psp.intents, self.now, 0);
        for repair in repairs {
            let step = match repair {
                Repair::ApplyPayment { intent, .. } => {
                    self.shop
                        .apply_payment(&intent, self.now, Cause::Reconciler)
                }
                Repair::Finalize { order } => {
                    self.shop.finalize(order, self.now, Cause::Reconciler)
                }
                Repair::Refund { order, .. } => self
                    .shop
                    .enqueue_job(JobKind::Refund, order, self.now)
                    .map(|_| Step::RefundScheduled),
                Repair::Anomaly { order, detail } => {
                    panic!("reference shop anomaly on {order}: {detail}")
                }
            };
            self.record_step(&step.unwrap());
        }
    }

    /// Faults stop; time passes; every job runs to completion.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.advance(TTL_MS + 500);
            self.reconcile();
            let mut budget = 10_000;
            while self
                .shop
                .lease_job(self.now)
                .map(|lease| {
                    self.run_job(&lease);
                    self.shop.ack_job(&lease).unwrap();
                })
                .is_some()
            {
                budget -= 1;
                assert!(budget > 0, "jobs never drain");
            }
            if self.shop.orders().all(|o| o.status().is_final())
                && self.shop.audit(self.now).jobs_live == 0
            {
                return;
            }
        }
    }

    fn assert_safety(&self, step: usize) {
        let snapshot = self.shop.audit(self.now);
        for inv in Invariant::ALL.into_iter().filter(|i| !i.is_liveness()) {
            let verdict = check(inv, &self.history, &snapshot);
            assert!(
                !verdict.is_violated(),
                "step {step}: {inv} violated: {:?}",
                verdict.violations()
            );
        }
        self.shop.inventory().check_conservation().unwrap();
        if let Err(broken) = self.shop.check_consistency() {
            panic!("step {step}: {broken}");
        }
        self.assert_books(step);
    }

    /// What each customer holds against the purchase limit, derived from the
    /// orders alone: every line of an order not cancelled or refunded.
    fn expected_holdings(&self) -> BTreeMap<(CustomerId, Sku), u64> {
        let mut held = BTreeMap::new();
        for order in self.shop.orders() {
            if matches!(
                order.status(),
                OrderStatus::Cancelled(_) | OrderStatus::Refunded
            ) {
                continue;
            }
            for line in &order.lines {
                *held
                    .entry((order.customer.clone(), line.sku.clone()))
                    .or_default() += u64::from(line.qty);
            }
        }
        held
    }

    /// The model of the stock: an order holds a reservation of exactly its
    /// lines while reserved, pending or paid (a paid one never expires), its
    /// units are sold once confirmed, and everything else is available.
    fn assert_books(&self, step: usize) {
        let inventory = self.shop.inventory();
        let mut reserved: BTreeMap<Sku, u64> = BTreeMap::new();
        let mut sold: BTreeMap<Sku, u64> = BTreeMap::new();
        let mut holding = 0;
        for order in self.shop.orders() {
            let status = order.status();
            for line in &order.lines {
                if status.holds_reservation() {
                    *reserved.entry(line.sku.clone()).or_default() += u64::from(line.qty);
                }
                if status == OrderStatus::Confirmed {
                    *sold.entry(line.sku.clone()).or_default() += u64::from(line.qty);
                }
            }
            assert_eq!(
                order.reservation.is_some(),
                status.holds_reservation(),
                "step {step}: {} is {status} with reservation {:?}",
                order.id,
                order.reservation
            );
            let Some(rid) = order.reservation else {
                continue;
            };
            holding += 1;
            let r = inventory
                .reservation(rid)
                .expect("an order's reservation is live");
            assert_eq!(r.order, order.id, "step {step}");
            for line in &order.lines {
                assert_eq!(r.qty_of(&line.sku), u64::from(line.qty), "step {step}");
            }
            assert_eq!(
                r.expires_at.is_none(),
                status == OrderStatus::Paid,
                "step {step}: a paid order's reservation is pinned, others expire"
            );
        }
        assert_eq!(
            inventory.reservations().count(),
            holding,
            "step {step}: leaked"
        );
        for (name, _, received, _) in SKUS {
            let sku = Sku::new(name).unwrap();
            let reserved = reserved.get(&sku).copied().unwrap_or(0);
            let sold = sold.get(&sku).copied().unwrap_or(0);
            let expected = StockLevel {
                received,
                available: received - reserved - sold,
                reserved,
                sold,
            };
            assert_eq!(inventory.level(&sku), Some(expected), "step {step}: {name}");
        }
    }
}

/// Every command a store may leave unrecorded when the shop says it changes
/// nothing, at `world.now` and just after it, must leave the state as it is.
fn assert_quiet_commands_change_nothing(world: &World, step: usize) {
    for command in [
        Command::LeaseJob,
        Command::ExpireReservations { max: 16 },
        Command::Housekeep { max: 16 },
    ] {
        for now in [world.now, Millis(world.now.0 + TTL_MS)] {
            if world.shop.changes_nothing(&command, now) {
                let mut probe = world.shop.clone();
                let _ = probe.apply(command.clone(), now);
                assert!(
                    probe == world.shop,
                    "step {step}: {command:?} at {now:?} changed the state"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    // Proves: under any interleaving of shopper actions, worker crashes,
    // duplicate webhooks, expiry and reconciliation, the reference store keeps
    // every safety invariant at every step, and once the world settles every
    // order is final, every captured payment is confirmed or refunded, and no
    // stock is left reserved. At every step, a lease, sweep or housekeeping pass
    // the shop says changes nothing leaves the state equal (what lets a durable
    // store skip recording it).
    #[test]
    fn the_reference_store_keeps_every_invariant(ops in prop::collection::vec(op(), 1..100)) {
        let mut world = World::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Place { customer, key, items } => world.place(customer, key, items),
                Op::Work => world.work(false),
                Op::Crash => world.work(true),
                Op::Pay { pick, succeed } => world.pay(pick, succeed),
                Op::ReplayWebhook { pick } if !world.psp.events.is_empty() => {
                    let event = world.psp.events[pick % world.psp.events.len()].clone();
                    world.deliver(event);
                }
                Op::ReplayWebhook { .. } => {}
                Op::Cancel { pick } => world.cancel(pick),
                Op::Advance(ms) => world.advance(ms),
                Op::Reconcile => world.reconcile(),
            }
            world.assert_safety(step);
            assert_quiet_commands_change_nothing(&world, step);
        }
        world.settle();
        let snapshot = world.shop.audit(world.now);
        for verdict in check_all(&world.history, &snapshot) {
            prop_assert!(!verdict.is_violated(), "{} violated after settling: {:?}", verdict.invariant, verdict.violations());
        }
        world.assert_books(usize::MAX);
        // A cancelled order's intent was cancelled at the PSP: nobody can pay it later.
        for intent in world.psp.intents.values() {
            prop_assert_ne!(intent.status, IntentStatus::RequiresPayment, "{:?} left open", intent);
        }
    }
}
