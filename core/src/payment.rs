//! Payment intents as the PSP reports them, and the PSP's ledger.
//!
//! The shop keeps a local mirror of each intent, but the PSP is the authority:
//! a payment counts when the PSP says the intent succeeded (in a signed
//! webhook or when asked), and the PSP's append-only [`LedgerEntry`] list is
//! the oracle the invariant checker uses for "single charge".

use crate::ids::{IntentId, OrderId};
use crate::money::Cents;
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// The idempotency key the shop uses to create an order's intent at the PSP,
/// so a retried or redelivered "create intent" never makes a second one.
pub fn payment_key(order: OrderId) -> String {
    format!("pay_{order}")
}

/// The idempotency key the shop uses to refund an order at the PSP.
pub fn refund_key(order: OrderId) -> String {
    format!("refund_{order}")
}

/// An intent's status at the PSP (a small subset of Stripe's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Created; waiting for the customer to pay.
    RequiresPayment,
    /// Paid; the amount was captured.
    Succeeded,
    /// The customer's payment was declined.
    Failed,
    /// Cancelled before payment.
    Canceled,
}

/// A payment intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntent {
    /// The PSP's id.
    pub id: IntentId,
    /// The order it pays for (the PSP's metadata).
    pub order: OrderId,
    /// The amount to capture.
    pub amount: Cents,
    /// Status at the PSP.
    pub status: IntentStatus,
    /// Total refunded so far.
    pub refunded: Cents,
}

impl PaymentIntent {
    /// Captured minus refunded.
    pub fn net_captured(&self) -> Cents {
        if self.status == IntentStatus::Succeeded {
            Cents(self.amount.0.saturating_sub(self.refunded.0))
        } else {
            Cents::ZERO
        }
    }
}

/// What moved money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Money taken from the customer.
    Charge,
    /// Money given back.
    Refund,
}

/// One line of the PSP's append-only ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the ledger, from 1.
    pub seq: u64,
    /// When it was written (PSP clock).
    pub at: Millis,
    /// The intent.
    pub intent: IntentId,
    /// The order the intent names.
    pub order: OrderId,
    /// Charge or refund.
    pub kind: LedgerKind,
    /// How much.
    pub amount: Cents,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_psp_keys_name_the_order_and_the_purpose() {
        // Proves: the charge and refund keys are `pay_{order}` and `refund_{order}`: one key per
        // order, so a retried create reuses the intent, and the two never collide.
        assert_eq!(payment_key(OrderId(7)), format!("pay_{}", OrderId(7)));
        assert_eq!(refund_key(OrderId(7)), format!("refund_{}", OrderId(7)));
        assert_ne!(payment_key(OrderId(7)), payment_key(OrderId(8)));
        assert_ne!(payment_key(OrderId(7)), refund_key(OrderId(7)));
    }

    #[test]
    fn only_a_succeeded_intent_holds_money_minus_its_refunds() {
        // Proves: net captured is amount - refunded for a succeeded intent (never below zero), and
        // zero for any other status.
        let mut intent = PaymentIntent {
            id: IntentId::new("pi_1").unwrap(),
            order: OrderId(1),
            amount: Cents(1_000),
            status: IntentStatus::Succeeded,
            refunded: Cents(300),
        };
        assert_eq!(intent.net_captured(), Cents(700));
        intent.refunded = Cents(2_000);
        assert_eq!(intent.net_captured(), Cents::ZERO);
        intent.refunded = Cents::ZERO;
        for status in [
            IntentStatus::RequiresPayment,
            IntentStatus::Failed,
            IntentStatus::Canceled,
        ] {
            intent.status = status;
            assert_eq!(intent.net_captured(), Cents::ZERO, "{status:?}");
        }
    }
}
