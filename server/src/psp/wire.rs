//! The PSP's JSON, shared by the PSP, its client and the shop's webhook
//! endpoint. Orders appear as text (`"ord_1"`), amounts as integer cents.
//! Request bodies refuse unknown fields; responses are read leniently.

use serde::{Deserialize, Serialize};
use stampede_core::{
    Cents, EventId, IntentId, IntentStatus, LedgerEntry, LedgerKind, Millis, OrderId,
    PaymentIntent, WebhookEvent, WebhookKind,
};

/// `type` of the event sent when an intent is paid.
pub const PAYMENT_SUCCEEDED: &str = "payment_intent.succeeded";
/// `type` of the event sent when a card is declined.
pub const PAYMENT_FAILED: &str = "payment_intent.payment_failed";
/// `type` of the event sent when a payment is refunded.
pub const CHARGE_REFUNDED: &str = "charge.refunded";

/// The wire name of an event kind.
pub fn event_type(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::PaymentSucceeded => PAYMENT_SUCCEEDED,
        WebhookKind::PaymentFailed => PAYMENT_FAILED,
        WebhookKind::Refunded => CHARGE_REFUNDED,
    }
}

/// The event kind named `name`, if it is one of the three the PSP sends.
pub fn parse_event_type(name: &str) -> Option<WebhookKind> {
    match name {
        PAYMENT_SUCCEEDED => Some(WebhookKind::PaymentSucceeded),
        PAYMENT_FAILED => Some(WebhookKind::PaymentFailed),
        CHARGE_REFUNDED => Some(WebhookKind::Refunded),
        _ => None,
    }
}

/// `OrderId` as its text form `ord_<n>` in JSON.
pub mod order_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use stampede_core::OrderId;

    /// Writes `ord_<n>`.
    pub fn serialize<S: Serializer>(order: &OrderId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(order)
    }

    /// Reads `ord_<n>`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OrderId, D::Error> {
        let text = String::deserialize(deserializer)?;
        OrderId::parse(&text)
            .ok_or_else(|| D::Error::custom(format!("order {text:?} is not of the form ord_<n>")))
    }
}

/// Why a [`WebhookPayload`] is not a valid event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("webhook field `{field}`: {reason}")]
pub struct WireError {
    /// The offending field (`id`, `type`, `data.intent`, `data.order`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The body of a webhook POST, Stripe-shaped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPayload {
    /// Event id (`evt_<n>`); every copy of one event carries the same id.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub id: String,
    /// [`PAYMENT_SUCCEEDED`], [`PAYMENT_FAILED`] or [`CHARGE_REFUNDED`].
    #[schema(
        pattern = "^(payment_intent\\.succeeded|payment_intent\\.payment_failed|charge\\.refunded)$"
    )]
    pub r#type: String,
    /// When the PSP created the event, Unix seconds.
    #[serde(deserialize_with = "crate::openapi::whole_number")]
    pub created: u64,
    /// What the event is about.
    pub data: WebhookData,
}

/// The object a webhook reports on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookData {
    /// The intent id (`pi_<n>`).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub intent: String,
    /// The order the intent pays for (`ord_<n>`).
    #[schema(pattern = "^ord_(0|[1-9][0-9]{0,18})$")]
    pub order: String,
    /// The intent's amount (for `charge.refunded`, also the amount refunded
    /// so far: the PSP only refunds in full).
    #[schema(value_type = u64)]
    #[serde(deserialize_with = "crate::openapi::whole_cents")]
    pub amount: Cents,
}

impl WebhookPayload {
    /// The payload for event `id` of kind `kind` about `intent`.
    pub fn new(id: &EventId, kind: WebhookKind, intent: &PaymentIntent, created_unix: u64) -> Self {
        WebhookPayload {
            id: id.to_string(),
            r#type: event_type(kind).to_string(),
            created: created_unix,
            data: WebhookData {
                intent: intent.id.to_string(),
                order: intent.order.to_string(),
                amount: intent.amount,
            },
        }
    }

    /// Validates every field and converts to the core's event; `created` is
    /// the receiver's notion of when the event was made (its own clock).
    pub fn to_event(&self, created: Millis) -> Result<WebhookEvent, WireError> {
        let invalid = |field: &'static str, reason: String| WireError { field, reason };
        let id = EventId::new(self.id.as_str()).map_err(|e| invalid("id", e.to_string()))?;
        let kind = parse_event_type(&self.r#type).ok_or_else(|| {
            invalid(
                "type",
                format!(
                    "unknown event type {:?}; expected {PAYMENT_SUCCEEDED}, {PAYMENT_FAILED} or {CHARGE_REFUNDED}",
                    self.r#type
                ),
            )
        })?;
        let intent = IntentId::new(self.data.intent.as_str())
            .map_err(|e| invalid("data.intent", e.to_string()))?;
        let order = OrderId::parse(&self.data.order).ok_or_else(|| {
            invalid(
                "data.order",
                format!("{:?} is not of the form ord_<n>", self.data.order),
            )
        })?;
        Ok(WebhookEvent {
            id,
            kind,
            intent,
            order,
            amount: self.data.amount,
            created,
        })
    }
}

/// An intent as the PSP's API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntentJson {
    /// `pi_<n>`.
    #[schema(value_type = String)]
    pub id: IntentId,
    /// The order it pays for (`ord_<n>`).
    #[serde(with = "order_text")]
    #[schema(value_type = String)]
    pub order: OrderId,
    /// Amount to capture, cents.
    #[schema(value_type = u64)]
    pub amount: Cents,
    /// `requires_payment`, `succeeded`, `failed` or `canceled`.
    #[schema(value_type = String)]
    pub status: IntentStatus,
    /// Refunded so far, cents.
    #[schema(value_type = u64)]
    pub refunded: Cents,
    /// What the payer presents to confirm (`{id}_secret_<hex>`).
    pub client_secret: String,
}

impl IntentJson {
    /// The JSON view of `intent`.
    pub fn new(intent: &PaymentIntent, client_secret: &str) -> IntentJson {
        IntentJson {
            id: intent.id.clone(),
            order: intent.order,
            amount: intent.amount,
            status: intent.status,
            refunded: intent.refunded,
            client_secret: client_secret.to_string(),
        }
    }

    /// The core's intent (without the secret).
    pub fn intent(&self) -> PaymentIntent {
        PaymentIntent {
            id: self.id.clone(),
            order: self.order,
            amount: self.amount,
            status: self.status,
            refunded: self.refunded,
        }
    }
}

/// `POST /v1/payment_intents` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntent {
    /// The order to pay for (`ord_<n>`).
    #[serde(with = "order_text")]
    #[schema(value_type = String, pattern = "^ord_(0|[1-9][0-9]{0,18})$")]
    pub order: OrderId,
    /// Amount in cents, `1..=99999999`.
    #[schema(value_type = u64, minimum = 1, maximum = 99_999_999)]
    #[serde(deserialize_with = "crate::openapi::whole_cents")]
    pub amount: Cents,
    /// Confirm at once with the customer's saved card (one-click / express
    /// checkout): the charge happens, and its event is sent, before the
    /// caller has the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_with: Option<Card>,
}

/// The largest amount one intent may capture (Stripe's: 999,999.99): the
/// core's [`ORDER_TOTAL_MAX`](stampede_core::ORDER_TOTAL_MAX), so the shop
/// never takes an order it could not ask this PSP to charge.
pub const AMOUNT_MAX: Cents = stampede_core::ORDER_TOTAL_MAX;

/// What the payer's card does on confirm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Card {
    /// The payment goes through.
    Ok,
    /// The issuer declines.
    Decline,
}

/// `POST /v1/payment_intents/{id}/confirm` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmIntent {
    /// The secret returned when the intent was created.
    pub client_secret: String,
    /// What the card does.
    pub card: Card,
}

/// `POST /v1/refunds` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    /// The intent to refund in full (`pi_<n>`).
    #[schema(value_type = String, pattern = "^pi_(0|[1-9][0-9]{0,18})$")]
    pub intent: IntentId,
}

/// A page of intents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntentList {
    /// Intents in id order.
    pub data: Vec<IntentJson>,
    /// More intents follow the last one (ask again with `after`).
    pub has_more: bool,
}

/// One ledger line on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerLine {
    /// Position, from 1.
    pub seq: u64,
    /// PSP clock, milliseconds.
    #[schema(value_type = u64)]
    pub at: Millis,
    /// The intent (`pi_<n>`).
    #[schema(value_type = String)]
    pub intent: IntentId,
    /// Its order (`ord_<n>`).
    #[serde(with = "order_text")]
    #[schema(value_type = String)]
    pub order: OrderId,
    /// `charge` or `refund`.
    #[schema(value_type = String)]
    pub kind: LedgerKind,
    /// How much, cents.
    #[schema(value_type = u64)]
    pub amount: Cents,
}

impl From<&LedgerEntry> for LedgerLine {
    fn from(entry: &LedgerEntry) -> LedgerLine {
        LedgerLine {
            seq: entry.seq,
            at: entry.at,
            intent: entry.intent.clone(),
            order: entry.order,
            kind: entry.kind,
            amount: entry.amount,
        }
    }
}

impl From<LedgerLine> for LedgerEntry {
    fn from(line: LedgerLine) -> LedgerEntry {
        LedgerEntry {
            seq: line.seq,
            at: line.at,
            intent: line.intent,
            order: line.order,
            kind: line.kind,
            amount: line.amount,
        }
    }
}

/// `GET /v1/ledger` body: a page of lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ledger {
    /// Lines in `seq` order.
    pub entries: Vec<LedgerLine>,
    /// More lines follow the last one (ask again with `after=<seq>`).
    pub has_more: bool,
    /// The PSP's clock when the page was read, the same clock as each line's
    /// `at`, so a reader can place the lines on its own clock. Absent from
    /// PSPs that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub now: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> WebhookPayload {
        let intent = PaymentIntent {
            id: IntentId::new("pi_7").unwrap(),
            order: OrderId(3),
            amount: Cents(1234),
            status: IntentStatus::Succeeded,
            refunded: Cents::ZERO,
        };
        WebhookPayload::new(
            &EventId::new("evt_2").unwrap(),
            WebhookKind::PaymentSucceeded,
            &intent,
            1_700_000_000,
        )
    }

    #[test]
    fn a_payload_round_trips_to_the_core_event() {
        let json = serde_json::to_string(&payload()).unwrap();
        assert_eq!(
            json,
            r#"{"id":"evt_2","type":"payment_intent.succeeded","created":1700000000,"data":{"intent":"pi_7","order":"ord_3","amount":1234}}"#
        );
        let back: WebhookPayload = serde_json::from_str(&json).unwrap();
        let event = back.to_event(Millis(9)).unwrap();
        assert_eq!(event.kind, WebhookKind::PaymentSucceeded);
        assert_eq!(event.order, OrderId(3));
        assert_eq!(event.amount, Cents(1234));
        assert_eq!(event.created, Millis(9));
    }

    #[test]
    fn to_event_names_the_field_that_is_wrong() {
        let mut bad = payload();
        bad.r#type = "charge.captured".into();
        assert_eq!(bad.to_event(Millis(0)).unwrap_err().field, "type");
        let mut bad = payload();
        bad.id = String::new();
        assert_eq!(bad.to_event(Millis(0)).unwrap_err().field, "id");
        let mut bad = payload();
        bad.data.intent = "pi/1".into();
        assert_eq!(bad.to_event(Millis(0)).unwrap_err().field, "data.intent");
        let mut bad = payload();
        bad.data.order = "order_3".into();
        assert_eq!(bad.to_event(Millis(0)).unwrap_err().field, "data.order");
        assert!(
            serde_json::from_str::<WebhookPayload>(
                r#"{"id":"evt_2","type":"x","created":1,"data":{"intent":"pi_7","order":"ord_3","amount":1},"extra":1}"#
            )
            .is_err()
        );
    }
}
