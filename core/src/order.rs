//! Orders and their enforced state machine.
//!
//! ```text
//! Created ─► InventoryReserved ─► PaymentPending ─► Paid ─► Confirmed
//!    │               │                  │             │
//!    └───────────────┴──────────────────┴──► Cancelled{reason} ─► Refunded
//!                                                     Paid ─────► Refunded
//! ```
//!
//! Every change goes through [`Order::transition`], which refuses an illegal
//! move with an [`IllegalTransition`] naming both ends and records a legal one
//! with its time and cause. The graph is acyclic, so an order's transition
//! list is bounded by the longest path (4).

use crate::catalog::OrderLine;
use crate::ids::{CustomerId, EventId, IdempotencyKey, IntentId, JobId, OrderId, ReservationId};
use crate::money::Cents;
use crate::payment::PaymentIntent;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an order was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// Stock could not be reserved.
    OutOfStock,
    /// The reservation's TTL ran out before payment.
    Expired,
    /// The customer cancelled.
    ByCustomer,
    /// The PSP declined the payment.
    PaymentFailed,
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OrderStatus {
    /// Accepted and durable; nothing reserved yet.
    Created,
    /// Stock is held by a reservation.
    InventoryReserved,
    /// A payment intent exists at the PSP; waiting for the customer to pay.
    PaymentPending,
    /// The PSP captured the payment; stock still reserved.
    Paid,
    /// Stock committed as sold. Terminal.
    Confirmed,
    /// Cancelled; stock (if any) released. Terminal unless a late payment forces a refund.
    Cancelled(CancelReason),
    /// A captured payment was refunded. Terminal.
    Refunded,
}

impl OrderStatus {
    /// Every status, for tables and exhaustive tests.
    pub const ALL: [OrderStatus; 10] = [
        OrderStatus::Created,
        OrderStatus::InventoryReserved,
        OrderStatus::PaymentPending,
        OrderStatus::Paid,
        OrderStatus::Confirmed,
        OrderStatus::Cancelled(CancelReason::OutOfStock),
        OrderStatus::Cancelled(CancelReason::Expired),
        OrderStatus::Cancelled(CancelReason::ByCustomer),
        OrderStatus::Cancelled(CancelReason::PaymentFailed),
        OrderStatus::Refunded,
    ];

    /// Whether a customer may start paying for an order in this status:
    /// once its stock is reserved and until a payment or a cancellation
    /// decides it.
    pub fn is_payable(self) -> bool {
        matches!(
            self,
            OrderStatus::InventoryReserved | OrderStatus::PaymentPending
        )
    }

    /// The stable snake_case name used in JSON, metrics and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::InventoryReserved => "inventory_reserved",
            OrderStatus::PaymentPending => "payment_pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled(CancelReason::OutOfStock) => "cancelled_out_of_stock",
            OrderStatus::Cancelled(CancelReason::Expired) => "cancelled_expired",
            OrderStatus::Cancelled(CancelReason::ByCustomer) => "cancelled_by_customer",
            OrderStatus::Cancelled(CancelReason::PaymentFailed) => "cancelled_payment_failed",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// Parses [`OrderStatus::as_str`]'s output.
    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No further progress is expected (a cancelled order may still be refunded
    /// if a payment arrives late, but nothing is waiting on it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Confirmed | OrderStatus::Cancelled(_) | OrderStatus::Refunded
        )
    }

    /// The order holds a live inventory reservation in this status.
    pub fn holds_reservation(self) -> bool {
        matches!(
            self,
            OrderStatus::InventoryReserved | OrderStatus::PaymentPending | OrderStatus::Paid
        )
    }

    /// Is `self -> to` an edge of the state machine?
    pub fn can_become(self, to: OrderStatus) -> bool {
        use CancelReason::*;
        use OrderStatus::*;
        matches!(
            (self, to),
            (Created, InventoryReserved)
                | (Created, Cancelled(OutOfStock | ByCustomer | Expired))
                | (InventoryReserved, PaymentPending)
                | (
                    InventoryReserved,
                    Cancelled(Expired | ByCustomer | PaymentFailed)
                )
                | (PaymentPending, Paid)
                | (
                    PaymentPending,
                    Cancelled(Expired | ByCustomer | PaymentFailed)
                )
                | (Paid, Confirmed)
                | (Paid, Refunded)
                | (Cancelled(_), Refunded)
        )
    }

    /// Whether `to` is `self` or lies ahead of it along [`OrderStatus::can_become`]
    /// edges: what a client polling an order may see next. The edge graph is
    /// acyclic and at most four edges deep, so the recursion is bounded.
    pub fn can_reach(self, to: OrderStatus) -> bool {
        self == to
            || OrderStatus::ALL
                .into_iter()
                .any(|next| self.can_become(next) && next.can_reach(to))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for OrderStatus {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        OrderStatus::parse(&text).ok_or_else(|| format!("unknown order status {text:?}"))
    }
}

impl From<OrderStatus> for String {
    fn from(status: OrderStatus) -> String {
        status.as_str().to_string()
    }
}

/// Who or what moved an order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Cause {
    /// A worker running a job.
    Worker {
        /// The job.
        job: JobId,
    },
    /// A PSP webhook event.
    Webhook {
        /// The event.
        event: EventId,
    },
    /// The reconciler, from the PSP's own state.
    Reconciler,
    /// The reservation-expiry sweeper.
    Sweeper,
    /// The customer, through the API.
    Customer,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Worker { job } => write!(f, "worker({job})"),
            Cause::Webhook { event } => write!(f, "webhook({event})"),
            Cause::Reconciler => f.write_str("reconciler"),
            Cause::Sweeper => f.write_str("sweeper"),
            Cause::Customer => f.write_str("customer"),
        }
    }
}

/// One recorded state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The order that moved.
    pub order: OrderId,
    /// Status before.
    pub from: OrderStatus,
    /// Status after.
    pub to: OrderStatus,
    /// When.
    pub at: Millis,
    /// Why.
    pub cause: Cause,
}

/// A refused state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("illegal transition for {order}: {from} -> {to}")]
pub struct IllegalTransition {
    /// The order.
    pub order: OrderId,
    /// Its current status.
    pub from: OrderStatus,
    /// The status that was asked for.
    pub to: OrderStatus,
}

/// An order: lines priced at creation, a status that only moves along the
/// state machine, and the record of every move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id.
    pub id: OrderId,
    /// Who placed it.
    pub customer: CustomerId,
    /// What was ordered, with captured unit prices.
    pub lines: Vec<OrderLine>,
    /// The amount to charge: the sum of the lines.
    pub total: Cents,
    /// When it was accepted.
    pub created_at: Millis,
    /// The key it was created under, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The live reservation, while one is held.
    pub reservation: Option<ReservationId>,
    /// The PSP intent, once created.
    pub intent: Option<IntentId>,
    /// Paid with a saved card when the intent is created (express checkout).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub express: bool,
    status: OrderStatus,
    transitions: Vec<Transition>,
}

impl Order {
    /// Whether `intent` holds money captured for this order that cannot be
    /// its payment, so it is refunded, never kept: an intent other than the
    /// order's own that is not for `asked` (what the shop asked the PSP for:
    /// its own intent's amount, or the order's total before it has one), or
    /// that comes once the order no longer awaits payment (a second
    /// capture). The order's own intent is never stray; another one for the
    /// amount asked, while the order awaits payment, pays it and becomes its
    /// own.
    pub fn is_stray_payment(&self, intent: &PaymentIntent, asked: Cents) -> bool {
        let own = self.intent.as_ref() == Some(&intent.id);
        intent.order == self.id
            && intent.net_captured() > Cents::ZERO
            && !own
            && (intent.amount != asked || (self.intent.is_some() && !self.status.is_payable()))
    }

    /// What the shop asked the PSP for this order's payment, given the
    /// intents it knows for it: its own intent's amount, or its total before
    /// it has recorded one.
    pub fn asked<'a>(&self, intents: impl IntoIterator<Item = &'a PaymentIntent>) -> Cents {
        intents
            .into_iter()
            .find(|i| self.intent.as_ref() == Some(&i.id))
            .map_or(self.total, |own| own.amount)
    }

    /// A new order in `Created`.
    pub fn new(
        id: OrderId,
        customer: CustomerId,
        lines: Vec<OrderLine>,
        total: Cents,
        created_at: Millis,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Order {
        Order {
            id,
            customer,
            lines,
            total,
            created_at,
            idempotency_key,
            reservation: None,
            intent: None,
            express: false,
            status: OrderStatus::Created,
            transitions: Vec::new(),
        }
    }

    /// The current status.
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// Every transition so far, oldest first.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// When the order entered its current status.
    pub fn status_since(&self) -> Millis {
        self.transitions.last().map_or(self.created_at, |t| t.at)
    }

    /// Moves to `to` if that is a legal edge from the current status,
    /// recording the transition; otherwise changes nothing.
    pub fn transition(
        &mut self,
        to: OrderStatus,
        at: Millis,
        cause: Cause,
    ) -> Result<Transition, IllegalTransition> {
        let from = self.status;
        if !from.can_become(to) {
            return Err(IllegalTransition {
                order: self.id,
                from,
                to,
            });
        }
        let transition = Transition {
            order: self.id,
            from,
            to,
            at,
            cause,
        };
        self.status = to;
        self.transitions.push(transition.clone());
        debug_assert!(self.transitions.len() <= 4, "the state graph is acyclic");
        Ok(transition)
    }

    /// Units of `sku` on this order.
    pub fn qty_of(&self, sku: &crate::ids::Sku) -> u32 {
        self.lines
            .iter()
            .filter(|l| &l.sku == sku)
            .map(|l| l.qty)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Sku;

    #[test]
    fn only_reserved_and_payment_pending_orders_are_payable() {
        // Proves: paying is offered from the reservation until a decision, in no other status.
        let payable: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_payable())
            .collect();
        assert_eq!(
            payable,
            [OrderStatus::InventoryReserved, OrderStatus::PaymentPending]
        );
    }

    #[test]
    fn causes_read_as_traces_show_them() {
        // Proves: each cause names who moved the order, with the job or event it came from.
        let event = EventId::new("evt_7").unwrap();
        let shown: Vec<String> = [
            Cause::Worker { job: JobId(3) },
            Cause::Webhook { event },
            Cause::Reconciler,
            Cause::Sweeper,
            Cause::Customer,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            shown,
            [
                "worker(job_3)",
                "webhook(evt_7)",
                "reconciler",
                "sweeper",
                "customer"
            ]
        );
    }

    fn order() -> Order {
        Order::new(
            OrderId(1),
            CustomerId::new("c1").unwrap(),
            vec![OrderLine {
                sku: Sku::new("hat").unwrap(),
                qty: 1,
                unit_price: Cents(100),
            }],
            Cents(100),
            Millis(0),
            None,
        )
    }

    #[test]
    fn the_happy_path_is_legal_and_recorded_with_time_and_cause() {
        let mut o = order();
        let path = [
            OrderStatus::InventoryReserved,
            OrderStatus::PaymentPending,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
        ];
        for (i, to) in path.into_iter().enumerate() {
            o.transition(
                to,
                Millis(10 * i as u64 + 10),
                Cause::Worker {
                    job: JobId(i as u64),
                },
            )
            .unwrap();
        }
        assert_eq!(o.status(), OrderStatus::Confirmed);
        assert_eq!(o.transitions().len(), 4);
        assert_eq!(o.transitions()[2].from, OrderStatus::PaymentPending);
        assert_eq!(o.transitions()[3].at, Millis(40));
        assert_eq!(o.status_since(), Millis(40));
    }

    #[test]
    fn an_illegal_transition_names_both_ends_and_changes_nothing() {
        let mut o = order();
        let err = o
            .transition(OrderStatus::Confirmed, Millis(5), Cause::Customer)
            .unwrap_err();
        assert_eq!(err.from, OrderStatus::Created);
        assert_eq!(err.to, OrderStatus::Confirmed);
        assert_eq!(
            err.to_string(),
            "illegal transition for ord_1: created -> confirmed"
        );
        assert_eq!(o.status(), OrderStatus::Created);
        assert!(o.transitions().is_empty());
    }

    #[test]
    fn terminal_statuses_have_no_way_out_except_a_refund_after_cancel() {
        for from in OrderStatus::ALL {
            let exits: Vec<_> = OrderStatus::ALL
                .into_iter()
                .filter(|to| from.can_become(*to))
                .collect();
            match from {
                OrderStatus::Confirmed | OrderStatus::Refunded => assert!(exits.is_empty()),
                OrderStatus::Cancelled(_) => assert_eq!(exits, vec![OrderStatus::Refunded]),
                _ => assert!(!exits.is_empty(), "{from} must have a way forward"),
            }
        }
    }

    #[test]
    fn the_graph_is_acyclic_so_paths_are_bounded() {
        // Longest path from Created, by depth-first search over the edge table.
        fn longest(from: OrderStatus, depth: usize) -> usize {
            assert!(depth <= OrderStatus::ALL.len(), "cycle through {from}");
            OrderStatus::ALL
                .into_iter()
                .filter(|to| from.can_become(*to))
                .map(|to| 1 + longest(to, depth + 1))
                .max()
                .unwrap_or(0)
        }
        assert_eq!(longest(OrderStatus::Created, 0), 4);
    }

    #[test]
    fn reachability_follows_edges_forward_only() {
        // Proves: can_reach is reflexive, follows chains of edges (skipped polls), and never goes back.
        use CancelReason::*;
        use OrderStatus::*;
        assert!(Created.can_reach(Created));
        assert!(Created.can_reach(Confirmed));
        assert!(InventoryReserved.can_reach(Refunded));
        assert!(PaymentPending.can_reach(Cancelled(Expired)));
        assert!(Cancelled(OutOfStock).can_reach(Refunded));
        assert!(!PaymentPending.can_reach(InventoryReserved));
        assert!(!Confirmed.can_reach(Paid));
        assert!(!Confirmed.can_reach(Refunded));
        assert!(!Refunded.can_reach(Confirmed));
        assert!(!Cancelled(Expired).can_reach(Confirmed));
        assert!(Created.can_reach(Cancelled(PaymentFailed)));
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                if from.can_become(to) {
                    assert!(from.can_reach(to), "{from} -> {to}");
                    assert!(!to.can_reach(from), "{to} reaches back to {from}");
                }
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
