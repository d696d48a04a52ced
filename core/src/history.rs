//! The recorded history of a run: what clients asked and were told, what the
//! shop did, what the PSP's ledger says, and which faults were injected, each
//! with its time. The invariant checker reads a history and a final
//! [`crate::shop::AuditSnapshot`]; an event's index in the history is how a
//! verdict points at its evidence.

use crate::idempotency::Fingerprint;
use crate::ids::{IdempotencyKey, IntentId, OrderId, Sku};
use crate::jobs::JobKind;
use crate::money::Cents;
use crate::order::{OrderStatus, Transition};
use crate::payment::LedgerEntry;
use crate::shop::PlaceOrder;
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum ClientOp {
    /// `POST /v1/orders`.
    PlaceOrder(PlaceOrder),
    /// `POST /v1/orders/{id}/pay`.
    Pay {
        /// The order.
        order: OrderId,
        /// The Idempotency-Key.
        key: Option<IdempotencyKey>,
    },
    /// `POST /v1/orders/{id}/cancel`.
    Cancel {
        /// The order.
        order: OrderId,
    },
    /// `GET /v1/orders/{id}`.
    GetOrder {
        /// The order.
        order: OrderId,
    },
    /// The customer confirms the payment at the PSP.
    ConfirmPayment {
        /// The intent.
        intent: IntentId,
    },
}

/// What a client was told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reply")]
pub enum ClientReply {
    /// The order was accepted (202), possibly as a replay.
    OrderAccepted {
        /// The order id the client was given.
        order: OrderId,
        /// Marked `Idempotent-Replayed: true`.
        replayed: bool,
    },
    /// Payment started: the intent to pay.
    PaymentStarted {
        /// The order.
        order: OrderId,
        /// The intent.
        intent: IntentId,
        /// The amount the client will pay.
        amount: Cents,
        /// Marked as a replay.
        replayed: bool,
    },
    /// The order's status as reported.
    Status {
        /// The order.
        order: OrderId,
        /// Its status.
        status: OrderStatus,
    },
    /// An error response.
    Refused {
        /// HTTP status.
        status: u16,
        /// The problem+json `type`.
        problem: String,
    },
    /// No response (timeout, connection reset, crash).
    NoResponse {
        /// Why.
        reason: String,
    },
}

/// What a job did (for traces; the checker does not judge jobs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEvent {
    /// Leased for an attempt.
    Leased {
        /// Attempt number.
        attempt: u32,
    },
    /// Finished.
    Acked,
    /// Failed; will be retried.
    Failed {
        /// Why.
        error: String,
    },
    /// Given up on.
    DeadLettered,
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// A SKU listed in the catalog at this price (the oracle for prices).
    Listed {
        /// The SKU.
        sku: Sku,
        /// Its catalog price.
        price: Cents,
        /// Most units one customer may hold in live orders, if the catalog
        /// limits it: what makes a `purchase-limit` refusal a rule rather than
        /// a pretext.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Units put on the shelf (initial stock or restock).
    Stocked {
        /// The SKU.
        sku: Sku,
        /// Units.
        qty: u64,
    },
    /// A client request went out.
    Request {
        /// Correlates with the response.
        req: u64,
        /// What was asked.
        op: ClientOp,
        /// Fingerprint of the request, for idempotency checks.
        fingerprint: Option<Fingerprint>,
    },
    /// A client got an answer (or gave up).
    Response {
        /// The request answered.
        req: u64,
        /// What it was told.
        reply: ClientReply,
    },
    /// A client saw an order in this status (recorded when the status it saw changed).
    Observed {
        /// The order.
        order: OrderId,
        /// The status the client was shown.
        status: OrderStatus,
        /// Which client saw it (a shopper or journey number); sequences are judged per client.
        client: u64,
    },
    /// An order changed status.
    Transition(Transition),
    /// The PSP wrote a ledger line.
    Ledger(LedgerEntry),
    /// A job moved.
    Job {
        /// What kind of job.
        kind: JobKind,
        /// The order.
        order: OrderId,
        /// What happened.
        what: JobEvent,
    },
    /// A fault was injected or healed.
    Fault {
        /// What, in words.
        what: String,
    },
    /// What a client set out to do, from its own plan, recorded before its
    /// first request: the evidence of who was a willing buyer.
    Wants {
        /// The client (shopper or journey number, as in `Observed`).
        client: u64,
        /// The Idempotency-Key it places its order with: links the plan to the order.
        key: IdempotencyKey,
        /// What it meant to do.
        wish: Wish,
    },
    /// The promises the scenario holds the shop to (recorded once, at the start).
    Terms(Terms),
    /// A fault window during which the scenario allows sales to be lost: a
    /// willing buyer whose journey overlaps it and is not served counts as a
    /// sale lost to the fault, not as a violation.
    SalesAtRisk {
        /// When the fault starts.
        from: Millis,
        /// When it is over (healed).
        until: Millis,
        /// The fault, in words.
        fault: String,
        /// The steps of a buyer's journey it can cost (absent: every step).
        #[serde(
            default = "JourneyStep::all",
            skip_serializing_if = "JourneyStep::is_all"
        )]
        steps: Vec<JourneyStep>,
    },
}

/// A step the shop owes a willing buyer, in order: an answer to its
/// placement, then its order reserved and payment offered, then its payment
/// taken and the order confirmed. A fault the scenario allows to cost sales
/// excuses a buyer only at a step it can cost: a cut between the API and the
/// PSP can cost payments, never an answer or an offer (the workers offer
/// payment without the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JourneyStep {
    /// The placement answered.
    Answer,
    /// The order reserved and payment offered (or the buyer told there is no stock).
    Offer,
    /// The payment taken and the order confirmed.
    Payment,
}

impl JourneyStep {
    /// Every step, in order.
    pub fn all() -> Vec<JourneyStep> {
        vec![
            JourneyStep::Answer,
            JourneyStep::Offer,
            JourneyStep::Payment,
        ]
    }

    fn is_all(steps: &[JourneyStep]) -> bool {
        JourneyStep::all().iter().all(|s| steps.contains(s))
    }
}

/// A client's plan, as far as the checker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wish {
    /// It means to pay and keep the order (it does not abandon or cancel).
    pub buys: bool,
    /// It pays with a card the PSP accepts.
    pub card_accepted: bool,
    /// Express checkout: the shop charges a saved card; it is never offered payment.
    pub express: bool,
    /// How long it thinks after being offered payment before it pays, ms.
    pub think_ms: u64,
    /// It sends prices of its own with its order (which the shop refuses:
    /// `client-price-not-accepted` is a rule only for such a buyer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sends_prices: bool,
}

impl Wish {
    /// A buyer the shop should serve: it means to buy with a card the PSP accepts.
    pub fn willing(&self) -> bool {
        self.buys && self.card_accepted
    }
}

/// What the scenario promises customers, in ms: the bounds the progress
/// invariants judge against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// How long a cart is held for a customer to pay (the scenario's
    /// reservation TTL). A buyer whose think time does not fit in it, with
    /// [`PAY_FLOW_ALLOWANCE_MS`] to spare, is late by its own plan.
    pub hold_ms: Option<u64>,
    /// A willing buyer is offered payment within this long of its acknowledgement.
    pub offer_payment_ms: u64,
    /// A willing buyer acknowledged while, by the evidence, every unit of a
    /// SKU it asked for was spoken for by other buyers' offers (sold, or held
    /// by a cart whose hold cannot have lapsed yet) is waitlisted: it is
    /// offered payment within this long instead, the shop's bound on such a
    /// wait. `None` (and in histories written before it existed): no
    /// exception, every buyer is held to `offer_payment_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waitlist_offer_ms: Option<u64>,
    /// A charge is decided (order confirmed, or the money refunded) within this long.
    pub decide_ms: u64,
}

/// Time a payment takes besides the buyer's thinking (seeing the offer,
/// `/pay`, the PSP, the webhook), which the hold must leave room for.
pub const PAY_FLOW_ALLOWANCE_MS: u64 = 1_000;

impl Default for Terms {
    /// Used when a history records none: no promised hold, payment offered
    /// within 10 s (waitlisted or not), charges decided within 2 minutes.
    fn default() -> Terms {
        Terms {
            hold_ms: None,
            offer_payment_ms: 10_000,
            waitlist_offer_ms: None,
            decide_ms: 120_000,
        }
    }
}

/// One timestamped event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: Millis,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Events in the order they were recorded. Indices are evidence pointers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    events: Vec<Event>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Appends an event and returns its index.
    pub fn push(&mut self, at: Millis, kind: EventKind) -> usize {
        self.events.push(Event { at, kind });
        self.events.len() - 1
    }

    /// All events, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Events with their indices.
    pub fn indexed(&self) -> impl Iterator<Item = (usize, &Event)> {
        self.events.iter().enumerate()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// No events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl FromIterator<Event> for History {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> History {
        History {
            events: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_window_costs_every_step_unless_it_names_some() {
        // Proves a `SalesAtRisk` written without `steps` (before they existed, or by a fault
        // that can cost anything) reads as every step, and one of every step is written without
        // them (so such traces keep their bytes); one naming some steps keeps exactly those.
        let old = r#"{"at":5,"event":"sales_at_risk","from":5,"until":9,"fault":"crash db"}"#;
        let read: Event = serde_json::from_str(old).unwrap();
        let EventKind::SalesAtRisk { steps, .. } = &read.kind else {
            panic!("{read:?}")
        };
        assert_eq!(*steps, JourneyStep::all());
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
        let some = Event {
            at: Millis(5),
            kind: EventKind::SalesAtRisk {
                from: Millis(5),
                until: Millis(9),
                fault: "partition api-1 <-> psp".into(),
                steps: vec![JourneyStep::Payment],
            },
        };
        let text = serde_json::to_string(&some).unwrap();
        assert!(text.contains(r#""steps":["payment"]"#), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), some);
    }

    #[test]
    fn events_keep_their_push_index_and_order() {
        // Proves: `push` returns the index the event is found at, events stay in push order,
        // and the length and emptiness follow.
        let mut history = History::new();
        assert!(history.is_empty());
        let sku = Sku::new("hat").unwrap();
        let first = history.push(
            Millis(1),
            EventKind::Stocked {
                sku: sku.clone(),
                qty: 1,
            },
        );
        let second = history.push(Millis(2), EventKind::Stocked { sku, qty: 2 });
        assert_eq!((first, second), (0, 1));
        assert_eq!(history.len(), 2);
        assert!(!history.is_empty());
        assert_eq!(history.events()[second].at, Millis(2));
        let at: Vec<_> = history.indexed().map(|(i, e)| (i, e.at)).collect();
        assert_eq!(at, vec![(0, Millis(1)), (1, Millis(2))]);
        let copy: History = history.events().iter().cloned().collect();
        assert_eq!(copy, history);
    }
}
