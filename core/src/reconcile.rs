//! Reconciliation: compare local orders with the PSP's view and say what to
//! repair, so that a lost webhook or a crashed worker does not leave an order
//! stuck or a customer charged for nothing. Pure: the shell fetches the PSP
//! snapshot, calls [`reconcile`], and carries out the repairs.

use crate::ids::{IntentId, OrderId};
use crate::money::Cents;
use crate::order::{Order, OrderStatus};
use crate::payment::{IntentStatus, PaymentIntent};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One thing the reconciler wants done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Repair {
    /// The PSP captured the payment but the order does not know: apply the payment.
    ApplyPayment {
        /// The order.
        order: OrderId,
        /// The PSP's intent, authoritative.
        intent: PaymentIntent,
    },
    /// The order is paid but was never finalized: finalize it.
    Finalize {
        /// The order.
        order: OrderId,
    },
    /// Money is held for an order that cannot be fulfilled: refund it.
    Refund {
        /// The order.
        order: OrderId,
        /// The intent to refund.
        intent: IntentId,
        /// How much is still captured.
        amount: Cents,
    },
    /// The local state contradicts the PSP in a way no automatic repair fixes.
    Anomaly {
        /// The order.
        order: OrderId,
        /// What contradicts what.
        detail: String,
    },
}

/// Of the PSP's intents for `order`, the one reconciliation judges the
/// order by: one holding money if any (money is what must not be lost) —
/// the order's own first, so a stray payment beside it does not hide it —
/// else the intent the order recorded, else the first the PSP lists.
pub fn intent_that_matters<'a>(
    order: &Order,
    intents: &'a [PaymentIntent],
) -> Option<&'a PaymentIntent> {
    let captured = |i: &&PaymentIntent| i.net_captured().0 > 0;
    intents
        .iter()
        .filter(captured)
        .find(|i| Some(&i.id) == order.intent.as_ref())
        .or_else(|| intents.iter().find(captured))
        .or_else(|| {
            intents
                .iter()
                .find(|i| Some(&i.id) == order.intent.as_ref())
        })
        .or_else(|| intents.first())
}

/// Compares `orders` with `psp` (the PSP's intents, by order) at `now`.
/// Orders that moved within the last `grace_ms` are left alone: the normal
/// path (webhooks, jobs) probably has them in hand.
pub fn reconcile<'a>(
    orders: impl IntoIterator<Item = &'a Order>,
    psp: &BTreeMap<OrderId, PaymentIntent>,
    now: Millis,
    grace_ms: u64,
) -> Vec<Repair> {
    orders
        .into_iter()
        .filter(|o| now.since(o.status_since()) >= grace_ms)
        .filter_map(|o| repair_for(o, psp.get(&o.id)))
        .collect()
}

fn repair_for(order: &Order, intent: Option<&PaymentIntent>) -> Option<Repair> {
    use OrderStatus::*;
    let captured = intent.map_or(Cents::ZERO, PaymentIntent::net_captured);
    let status = order.status();
    match (status, intent) {
        (InventoryReserved | PaymentPending, Some(i))
            if matches!(i.status, IntentStatus::Succeeded | IntentStatus::Failed) =>
        {
            Some(Repair::ApplyPayment {
                order: order.id,
                intent: i.clone(),
            })
        }
        (Paid, _) => Some(Repair::Finalize { order: order.id }),
        (Cancelled(_) | Refunded | Created, Some(i)) if captured > Cents::ZERO => {
            Some(Repair::Refund {
                order: order.id,
                intent: i.id.clone(),
                amount: captured,
            })
        }
        (Confirmed, _) if captured != order.total => Some(Repair::Anomaly {
            order: order.id,
            detail: format!(
                "order is confirmed for {} but the PSP holds {} captured",
                order.total, captured
            ),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::OrderLine;
    use crate::ids::{CustomerId, Sku};
    use crate::order::{CancelReason, Cause};

    fn order_in(id: u64, path: &[OrderStatus]) -> Order {
        let mut o = Order::new(
            OrderId(id),
            CustomerId::new("c").unwrap(),
            vec![OrderLine {
                sku: Sku::new("s").unwrap(),
                qty: 1,
                unit_price: Cents(500),
            }],
            Cents(500),
            Millis(0),
            None,
        );
        for to in path {
            o.transition(*to, Millis(1), Cause::Customer).unwrap();
        }
        o
    }

    fn intent(order: u64, status: IntentStatus, refunded: u64) -> (OrderId, PaymentIntent) {
        (
            OrderId(order),
            PaymentIntent {
                id: IntentId::new(format!("pi_{order}")).unwrap(),
                order: OrderId(order),
                amount: Cents(500),
                status,
                refunded: Cents(refunded),
            },
        )
    }

    #[test]
    fn the_intent_that_matters_is_one_holding_money_then_the_orders_own_then_the_first() {
        // Proves the order of preference, each rule on both sides: money first, the order's
        // own intent first among those holding money.
        let named = |name: &str, status, refunded| PaymentIntent {
            id: IntentId::new(name).unwrap(),
            ..intent(1, status, refunded).1
        };
        let mut order = order_in(1, &[OrderStatus::InventoryReserved]);
        order.intent = Some(IntentId::new("pi_own").unwrap());
        let stray = named("pi_stray", IntentStatus::RequiresPayment, 0);
        let own = named("pi_own", IntentStatus::RequiresPayment, 0);
        let charged = named("pi_charged", IntentStatus::Succeeded, 0);
        let pick = |intents: &[PaymentIntent]| {
            intent_that_matters(&order, intents).map(|i| i.id.to_string())
        };
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick(std::slice::from_ref(&stray)).as_deref(),
            Some("pi_stray")
        );
        assert_eq!(
            pick(&[stray.clone(), own.clone()]).as_deref(),
            Some("pi_own")
        );
        let all = [stray.clone(), own.clone(), charged.clone()];
        assert_eq!(pick(&all).as_deref(), Some("pi_charged"));
        // Money refunded in full holds nothing: the order's own intent matters again.
        let given_back = named("pi_charged", IntentStatus::Succeeded, 500);
        assert_eq!(pick(&[stray, given_back, own]).as_deref(), Some("pi_own"));
        // Two holding money: the order's own, wherever the PSP lists it.
        let own_paid = named("pi_own", IntentStatus::Succeeded, 0);
        assert_eq!(pick(&[charged, own_paid]).as_deref(), Some("pi_own"));
    }

    #[test]
    fn missed_webhooks_late_payments_and_lost_finalizes_are_repaired() {
        use OrderStatus::*;
        let pending = order_in(1, &[InventoryReserved, PaymentPending]);
        let paid = order_in(2, &[InventoryReserved, PaymentPending, Paid]);
        let expired = order_in(3, &[InventoryReserved, Cancelled(CancelReason::Expired)]);
        let fine = order_in(4, &[InventoryReserved, PaymentPending, Paid, Confirmed]);
        let declined = order_in(5, &[InventoryReserved, PaymentPending]);
        let refunded_already = order_in(6, &[InventoryReserved, Cancelled(CancelReason::Expired)]);
        let psp: BTreeMap<_, _> = [
            intent(1, IntentStatus::Succeeded, 0),
            intent(2, IntentStatus::Succeeded, 0),
            intent(3, IntentStatus::Succeeded, 0),
            intent(4, IntentStatus::Succeeded, 0),
            intent(5, IntentStatus::Failed, 0),
            intent(6, IntentStatus::Succeeded, 500),
        ]
        .into_iter()
        .collect();
        let orders = [
            &pending,
            &paid,
            &expired,
            &fine,
            &declined,
            &refunded_already,
        ];
        let repairs = reconcile(orders, &psp, Millis(10_000), 1_000);
        assert_eq!(repairs.len(), 4, "{repairs:?}");
        assert!(matches!(
            &repairs[0],
            Repair::ApplyPayment {
                order: OrderId(1),
                ..
            }
        ));
        assert_eq!(repairs[1], Repair::Finalize { order: OrderId(2) });
        assert!(matches!(
            &repairs[2],
            Repair::Refund {
                order: OrderId(3),
                amount: Cents(500),
                ..
            }
        ));
        assert!(matches!(
            &repairs[3],
            Repair::ApplyPayment {
                order: OrderId(5),
                ..
            }
        ));
    }

    #[test]
    fn recently_moved_orders_are_left_to_the_normal_path() {
        let paid = order_in(
            2,
            &[
                OrderStatus::InventoryReserved,
                OrderStatus::PaymentPending,
                OrderStatus::Paid,
            ],
        );
        assert!(reconcile([&paid], &BTreeMap::new(), Millis(500), 1_000).is_empty());
    }

    #[test]
    fn a_confirmed_order_without_a_capture_is_an_anomaly() {
        use OrderStatus::*;
        let forged = order_in(9, &[InventoryReserved, PaymentPending, Paid, Confirmed]);
        let repairs = reconcile([&forged], &BTreeMap::new(), Millis(10_000), 0);
        assert!(
            matches!(
                &repairs[0],
                Repair::Anomaly {
                    order: OrderId(9),
                    ..
                }
            ),
            "{repairs:?}"
        );
    }

    #[test]
    fn the_grace_period_ends_exactly_grace_ms_after_the_last_move() {
        // Proves: an order that moved at t is left alone until t + grace - 1 and repaired from
        // t + grace on.
        use OrderStatus::*;
        let paid = order_in(2, &[InventoryReserved, PaymentPending, Paid]);
        assert!(reconcile([&paid], &BTreeMap::new(), Millis(1_000), 1_000).is_empty());
        assert_eq!(
            reconcile([&paid], &BTreeMap::new(), Millis(1_001), 1_000),
            vec![Repair::Finalize { order: OrderId(2) }]
        );
    }

    #[test]
    fn undecided_intents_and_settled_money_need_no_repair() {
        // Proves: a pending order whose intent is still open, a confirmed order holding its
        // total, and a cancelled order without captured money are left alone; money captured
        // for an order still `Created` is refunded.
        use OrderStatus::*;
        let pending = order_in(1, &[InventoryReserved, PaymentPending]);
        let fine = order_in(2, &[InventoryReserved, PaymentPending, Paid, Confirmed]);
        let cancelled = order_in(3, &[Cancelled(CancelReason::ByCustomer)]);
        let created = order_in(4, &[]);
        let psp: BTreeMap<_, _> = [
            intent(1, IntentStatus::RequiresPayment, 0),
            intent(2, IntentStatus::Succeeded, 0),
            intent(3, IntentStatus::Canceled, 0),
            intent(4, IntentStatus::Succeeded, 100),
        ]
        .into_iter()
        .collect();
        let repairs = reconcile([&pending, &fine, &cancelled, &created], &psp, Millis(10), 0);
        assert_eq!(
            repairs,
            vec![Repair::Refund {
                order: OrderId(4),
                intent: IntentId::new("pi_4").unwrap(),
                amount: Cents(400)
            }]
        );
    }
}
