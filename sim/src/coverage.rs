//! What a run exercised off the happy path: late payments and their refunds,
//! intents cancelled at the PSP, payments only the reconciler applied. The
//! invariants say whether the shop kept its promises; these counts say which
//! promises a run actually put to the test (a run with no late payment never
//! tested the refund path). Counted from the PSP's books where they can tell,
//! and from the transitions the store recorded where only the shop knows.

use serde::{Deserialize, Serialize};
use stampede_core::{
    CancelReason, Cause, EventKind, History, IntentStatus, LedgerKind, Millis, OrderId,
    OrderStatus, PaymentIntent,
};
use std::collections::BTreeMap;

/// Counts of the recovery paths a run went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// PSP charges written at or after the shop expired the order: a
    /// customer paid after the hold (from the PSP ledger and the order's
    /// expiry transition).
    pub late_payments: u64,
    /// Refund lines in the PSP's ledger.
    pub refunds: u64,
    /// Intents the PSP ended cancelled: an expired or cancelled order's
    /// open intent, cancelled by the shop (from the PSP's intents).
    pub intent_cancellations: u64,
    /// Payments the reconciler applied from the PSP's own state because no
    /// webhook had: transitions it made into `paid` or `cancelled_payment_failed`.
    pub reconciler_payments: u64,
}

impl Coverage {
    /// Counts from a finished run's history (the PSP ledger included) and
    /// the PSP's final intents.
    pub fn of(history: &History, intents: &[PaymentIntent]) -> Coverage {
        let mut expired: BTreeMap<OrderId, Millis> = BTreeMap::new();
        let mut coverage = Coverage {
            intent_cancellations: intents
                .iter()
                .filter(|i| i.status == IntentStatus::Canceled)
                .count() as u64,
            ..Coverage::default()
        };
        // Transitions are recorded as the store makes them; the ledger is
        // appended after the run, so every expiry is known before any charge.
        for event in history.events() {
            match &event.kind {
                EventKind::Transition(t) => {
                    if t.to == OrderStatus::Cancelled(CancelReason::Expired) {
                        expired.entry(t.order).or_insert(t.at);
                    }
                    let applied = matches!(
                        t.to,
                        OrderStatus::Paid | OrderStatus::Cancelled(CancelReason::PaymentFailed)
                    );
                    if t.cause == Cause::Reconciler && applied {
                        coverage.reconciler_payments += 1;
                    }
                }
                EventKind::Ledger(entry) => match entry.kind {
                    LedgerKind::Refund => coverage.refunds += 1,
                    LedgerKind::Charge => {
                        if expired.get(&entry.order).is_some_and(|at| *at <= entry.at) {
                            coverage.late_payments += 1;
                        }
                    }
                },
                _ => {}
            }
        }
        coverage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_core::{Cents, IntentId, LedgerEntry, Transition};

    fn moved(order: u64, from: OrderStatus, to: OrderStatus, at: u64, cause: Cause) -> EventKind {
        EventKind::Transition(Transition {
            order: OrderId(order),
            from,
            to,
            at: Millis(at),
            cause,
        })
    }

    fn ledger(seq: u64, order: u64, kind: LedgerKind, at: u64) -> EventKind {
        EventKind::Ledger(LedgerEntry {
            seq,
            at: Millis(at),
            intent: IntentId::new(format!("pi_{order}")).unwrap(),
            order: OrderId(order),
            kind,
            amount: Cents(100),
        })
    }

    #[test]
    fn counts_late_charges_refunds_cancelled_intents_and_reconciler_payments() {
        // Proves: a charge after its order's expiry is a late payment and one
        // before it is not; every refund line counts; only cancelled intents
        // count; only the reconciler's payment transitions count (not its
        // finalizations, not a webhook's payment).
        use OrderStatus::*;
        let expired = Cancelled(CancelReason::Expired);
        let mut h = History::new();
        for kind in [
            moved(1, PaymentPending, expired, 100, Cause::Sweeper),
            moved(2, PaymentPending, Paid, 150, Cause::Reconciler),
            moved(2, Paid, Confirmed, 160, Cause::Reconciler),
            moved(3, PaymentPending, Paid, 170, Cause::Customer),
            moved(4, PaymentPending, expired, 500, Cause::Sweeper),
            ledger(1, 1, LedgerKind::Charge, 120),
            ledger(2, 1, LedgerKind::Refund, 130),
            ledger(3, 4, LedgerKind::Charge, 400),
        ] {
            h.push(Millis(0), kind);
        }
        let intent = |n: u64, status| PaymentIntent {
            id: IntentId::new(format!("pi_{n}")).unwrap(),
            order: OrderId(n),
            amount: Cents(100),
            status,
            refunded: Cents::ZERO,
        };
        let intents = [
            intent(5, IntentStatus::Canceled),
            intent(6, IntentStatus::RequiresPayment),
        ];
        assert_eq!(
            Coverage::of(&h, &intents),
            Coverage {
                late_payments: 1,
                refunds: 1,
                intent_cancellations: 1,
                reconciler_payments: 1,
            }
        );
    }
}
