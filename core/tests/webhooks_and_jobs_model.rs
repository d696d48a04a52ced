//! Model-based tests of durable jobs and the webhook inbox.
//!
//! Jobs: random enqueue/lease/ack/fail/crash sequences prove every job is in
//! exactly one place (live, acked or dead), only the newest lease can settle a
//! job, a leased job is invisible until its lease lapses, and attempts and the
//! dead-letter list stay within their bounds.
//!
//! Webhooks: each order's payment event is duplicated up to 4 times and the
//! whole batch shuffled, some arriving before the order can take them; every
//! order is still paid exactly once and every duplicate is recognised.

use proptest::prelude::*;
use stampede_core::{
    Catalog, Cause, Cents, CustomerId, EventId, IntentId, IntentStatus, ItemRequest, JobKind,
    Lease, Millis, OrderId, OrderStatus, PaymentIntent, PlaceOrder, Placed, Product, ShopConfig,
    ShopState, Sku, WebhookEvent, WebhookKind, WebhookOutcome,
};
use stampede_core::{Failed, JobQueue, QueueLimits, RetryPolicy};
use std::collections::{BTreeMap, BTreeSet};

const VISIBILITY_MS: u64 = 100;
const ATTEMPTS_MAX: u32 = 3;
const DEAD_MAX: usize = 4;

#[derive(Clone, Debug)]
enum JobOp {
    Enqueue,
    Lease,
    Ack(usize),
    Fail(usize, u32),
    Advance(u64),
}

fn job_op() -> impl Strategy<Value = JobOp> {
    prop_oneof![
        2 => Just(JobOp::Enqueue),
        3 => Just(JobOp::Lease),
        2 => any::<usize>().prop_map(JobOp::Ack),
        2 => (any::<usize>(), 0u32..=1000).prop_map(|(i, j)| JobOp::Fail(i, j)),
        2 => (1u64..250).prop_map(JobOp::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // Proves: leases, redelivery after a crash, retries and dead-lettering
    // never lose or duplicate a job and respect every bound.
    #[test]
    fn jobs_are_never_lost_duplicated_or_settled_by_a_stale_holder(ops in prop::collection::vec(job_op(), 1..150)) {
        let mut q = JobQueue::new(
            QueueLimits { max_jobs: 1_000, max_dead: DEAD_MAX, visibility_ms: VISIBILITY_MS },
            RetryPolicy { base_delay_ms: 10, max_delay_ms: 80, max_attempts: ATTEMPTS_MAX },
        );
        let mut now = Millis(0);
        let mut enqueued = BTreeSet::new();
        let mut acked = BTreeSet::new();
        // Every lease ever handed out; the newest per job is the only valid one.
        let mut leases: Vec<(Lease, Millis)> = Vec::new();
        // Jobs currently held by a valid lease, and until when.
        let mut held_until: BTreeMap<stampede_core::JobId, Millis> = BTreeMap::new();
        for op in ops {
            match op {
                JobOp::Enqueue => {
                    enqueued.insert(q.enqueue(JobKind::Reserve, OrderId(enqueued.len() as u64), now).unwrap());
                }
                JobOp::Lease => {
                    if let Some(lease) = q.lease(now) {
                        // Never handed out while another valid lease on it is unexpired.
                        prop_assert!(held_until.get(&lease.job).is_none_or(|until| *until <= now));
                        held_until.insert(lease.job, now.plus_ms(VISIBILITY_MS));
                        prop_assert!(lease.attempt <= ATTEMPTS_MAX);
                        prop_assert!(!acked.contains(&lease.job), "an acked job came back");
                        leases.push((lease, now.plus_ms(VISIBILITY_MS)));
                    }
                }
                JobOp::Ack(i) | JobOp::Fail(i, _) if !leases.is_empty() => {
                    let (lease, _) = leases[i % leases.len()].clone();
                    let newest = leases.iter().rev().find(|(l, _)| l.job == lease.job).map(|(l, _)| l.token);
                    let live = q.jobs().any(|j| j.id == lease.job);
                    let valid = newest == Some(lease.token) && live
                        && matches!(q.jobs().find(|j| j.id == lease.job).map(|j| &j.state),
                            Some(stampede_core::JobState::Leased { token, .. }) if *token == lease.token);
                    let result = match op {
                        JobOp::Ack(_) => q.ack(&lease).map(|_| None),
                        JobOp::Fail(_, jitter) => q.fail(&lease, now, "boom", jitter).map(Some),
                        _ => unreachable!(),
                    };
                    prop_assert_eq!(result.is_ok(), valid, "only the current holder settles a job");
                    if valid {
                        held_until.remove(&lease.job);
                    }
                    match result {
                        Ok(None) => { acked.insert(lease.job); }
                        Ok(Some(Failed::DeadLettered)) => prop_assert!(lease.attempt >= ATTEMPTS_MAX),
                        _ => {}
                    }
                }
                JobOp::Ack(_) | JobOp::Fail(..) => {}
                JobOp::Advance(ms) => now = now.plus_ms(ms),
            }
            // Conservation of jobs: live + acked + dead(kept or dropped) == enqueued.
            let live: BTreeSet<_> = q.jobs().map(|j| j.id).collect();
            let dead: BTreeSet<_> = q.dead_letters().map(|d| d.job.id).collect();
            prop_assert!(live.is_disjoint(&acked) && live.is_disjoint(&dead) && acked.is_disjoint(&dead));
            prop_assert_eq!(
                live.len() + acked.len() + dead.len() + q.dead_dropped() as usize,
                enqueued.len()
            );
            prop_assert!(dead.len() <= DEAD_MAX);
            prop_assert!(q.jobs().all(|j| j.attempts <= ATTEMPTS_MAX));
        }
    }
}

fn shop_with_orders(n: usize) -> (ShopState, Vec<OrderId>) {
    let sku = Sku::new("hat").unwrap();
    let catalog = Catalog::new([Product {
        sku: sku.clone(),
        name: "Hat".into(),
        price: Cents(700),
        max_qty_per_order: 5,
        per_customer_limit: None,
    }]);
    let mut shop = ShopState::new(catalog, ShopConfig::default());
    shop.stock(&sku, 100, 1).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let placed = shop
            .place_order(
                &PlaceOrder {
                    key: None,
                    customer: CustomerId::new(format!("c{i}")).unwrap(),
                    items: vec![ItemRequest {
                        sku: sku.clone(),
                        qty: 1,
                    }],
                    express: false,
                },
                Millis(0),
            )
            .unwrap();
        let Placed::Created { order, .. } = placed else {
            panic!("{placed:?}")
        };
        ids.push(order);
    }
    (shop, ids)
}

fn intent(order: OrderId) -> PaymentIntent {
    PaymentIntent {
        id: IntentId::new(format!("pi_{}", order.0)).unwrap(),
        order,
        amount: Cents(700),
        status: IntentStatus::RequiresPayment,
        refunded: Cents::ZERO,
    }
}

/// Runs the order's pending jobs (reserve, create intent) up to `PaymentPending`.
fn bring_to_payment_pending(shop: &mut ShopState, order: OrderId) {
    shop.reserve(order, Millis(1), Cause::Reconciler).unwrap();
    shop.record_intent(intent(order), Millis(1), Cause::Reconciler)
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Proves: duplicated, shuffled and early webhooks move each order out of
    // PaymentPending exactly once, with the outcome the PSP reported, and every
    // repeat of an event id is answered as a duplicate.
    #[test]
    fn duplicated_shuffled_early_webhooks_apply_exactly_once(
        plan in prop::collection::vec((1usize..=4, any::<bool>(), any::<bool>()), 1..12),
        shuffle in prop::collection::vec(any::<u32>(), 48),
    ) {
        let (mut shop, orders) = shop_with_orders(plan.len());
        let mut deliveries = Vec::new();
        for (order, (copies, succeeds, early)) in orders.iter().zip(&plan) {
            if !early {
                bring_to_payment_pending(&mut shop, *order);
            }
            let event = WebhookEvent {
                id: EventId::new(format!("evt_{}", order.0)).unwrap(),
                kind: if *succeeds { WebhookKind::PaymentSucceeded } else { WebhookKind::PaymentFailed },
                intent: intent(*order).id,
                order: *order,
                amount: Cents(700),
                created: Millis(2),
            };
            deliveries.extend(std::iter::repeat_n(event, *copies));
        }
        // A deterministic shuffle driven by the generated keys.
        let mut keyed: Vec<_> = deliveries.into_iter().enumerate().map(|(i, e)| (shuffle[i % shuffle.len()], i, e)).collect();
        keyed.sort_by_key(|(k, i, _)| (*k, *i));
        let mut fresh: BTreeMap<EventId, usize> = BTreeMap::new();
        for (_, _, event) in keyed {
            let outcome = shop.receive_webhook(event.clone(), Millis(3)).unwrap();
            if outcome != WebhookOutcome::Duplicate {
                *fresh.entry(event.id.clone()).or_default() += 1;
            }
        }
        prop_assert!(fresh.values().all(|n| *n == 1), "an event id was accepted twice: {fresh:?}");
        // Early orders now get reserved and their intent recorded: parked events apply then.
        for (order, (_, _, early)) in orders.iter().zip(&plan) {
            if *early {
                let before = shop.order(*order).unwrap().status();
                prop_assert_eq!(before, OrderStatus::Created, "an early event must wait, not act");
                bring_to_payment_pending(&mut shop, *order);
            }
        }
        for (order, (_, succeeds, _)) in orders.iter().zip(&plan) {
            let o = shop.order(*order).unwrap();
            let expected = if *succeeds { OrderStatus::Paid } else { OrderStatus::Cancelled(stampede_core::CancelReason::PaymentFailed) };
            prop_assert_eq!(o.status(), expected);
            // The payment was applied once: one transition into its outcome, none out of it.
            let into_outcome = o.transitions().iter().filter(|t| t.to == expected).count();
            prop_assert_eq!(into_outcome, 1, "{:?}", o.transitions());
            prop_assert_eq!(o.transitions().last().map(|t| t.to), Some(expected));
            // Replaying the event again changes nothing.
            let again = WebhookEvent {
                id: EventId::new(format!("evt_{}", order.0)).unwrap(),
                kind: WebhookKind::PaymentSucceeded,
                intent: intent(*order).id,
                order: *order,
                amount: Cents(700),
                created: Millis(2),
            };
            prop_assert_eq!(shop.receive_webhook(again, Millis(4)).unwrap(), WebhookOutcome::Duplicate);
        }
        shop.inventory().check_conservation().unwrap();
    }
}
