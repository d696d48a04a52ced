//! The webhook inbox: deduplication by event id, and parking of events that
//! arrive before their order can take them.
//!
//! The inbox never decides what an event *means*; the shop does
//! ([`crate::shop::ShopState::receive_webhook`]). The inbox guarantees that an event id
//! is accepted at most once while remembered, and that an early event is kept
//! (bounded) rather than dropped.

use crate::ids::{EventId, IntentId, OrderId};
use crate::money::Cents;
use crate::payment::{IntentStatus, PaymentIntent};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a PSP event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    /// `payment_intent.succeeded`
    PaymentSucceeded,
    /// `payment_intent.payment_failed`
    PaymentFailed,
    /// `charge.refunded`
    Refunded,
}

/// A verified PSP event (signature checking is the shell's job).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event; duplicates share it.
    pub id: EventId,
    /// What happened.
    pub kind: WebhookKind,
    /// The intent it concerns.
    pub intent: IntentId,
    /// The order named in the intent's metadata.
    pub order: OrderId,
    /// The intent's amount.
    pub amount: Cents,
    /// When the PSP created the event.
    pub created: Millis,
}

/// What the PSP's own view of an intent says of an event about it: a
/// payment becomes authoritative from the PSP's state, not from a webhook's
/// say-so alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corroboration {
    /// The PSP's view bears the event out: apply it.
    Confirmed,
    /// The event is about this intent and order, but the PSP's view does not
    /// (or no longer does) show what it reports: a stale event, or a forged
    /// one for a real intent. Nothing to apply.
    Unconfirmed,
    /// The event names another intent, order or amount than the PSP's
    /// intent has: refused.
    Mismatch,
}

impl WebhookEvent {
    /// Checks this event against `psp`, the PSP's view of the intent it
    /// names: same intent, order and amount, and a state that shows what the
    /// event reports (succeeded, failed, or refunded).
    pub fn corroborate(&self, psp: &PaymentIntent) -> Corroboration {
        if psp.id != self.intent || psp.order != self.order || psp.amount != self.amount {
            return Corroboration::Mismatch;
        }
        let shown = match self.kind {
            WebhookKind::PaymentSucceeded => psp.status == IntentStatus::Succeeded,
            WebhookKind::PaymentFailed => psp.status == IntentStatus::Failed,
            WebhookKind::Refunded => psp.refunded > Cents::ZERO,
        };
        if shown {
            Corroboration::Confirmed
        } else {
            Corroboration::Unconfirmed
        }
    }
}

/// Limits of a [`WebhookInbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxLimits {
    /// How long a seen event id is remembered for deduplication.
    pub dedup_retention_ms: u64,
    /// Most event ids remembered at once.
    pub max_seen: usize,
    /// Most parked events across all orders.
    pub max_parked: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        InboxLimits {
            dedup_retention_ms: 3 * 24 * 60 * 60 * 1000,
            max_seen: 1_000_000,
            max_parked: 100_000,
        }
    }
}

/// What [`WebhookInbox::receive`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// First sighting: the caller should apply or park it.
    Fresh,
    /// Seen before: do nothing, answer 2xx so the PSP stops retrying.
    Duplicate,
    /// The inbox is full: answer 503 so the PSP retries later; nothing recorded.
    Full,
}

/// Seen event ids and parked early events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookInbox {
    seen: BTreeMap<EventId, Millis>,
    parked: BTreeMap<OrderId, Vec<WebhookEvent>>,
    parked_count: usize,
    limits: InboxLimits,
}

impl WebhookInbox {
    /// An empty inbox.
    pub fn new(limits: InboxLimits) -> WebhookInbox {
        WebhookInbox {
            limits,
            ..WebhookInbox::default()
        }
    }

    /// Records `event`'s id as seen, unless it already was.
    pub fn receive(&mut self, event: &WebhookEvent, now: Millis) -> Received {
        if self.seen.contains_key(&event.id) {
            return Received::Duplicate;
        }
        if self.seen.len() >= self.limits.max_seen {
            return Received::Full;
        }
        self.seen.insert(event.id.clone(), now);
        Received::Fresh
    }

    /// Has this event id been seen (and not yet forgotten)?
    pub fn has_seen(&self, id: &EventId) -> bool {
        self.seen.contains_key(id)
    }

    /// Room for one more parked event?
    pub fn can_park(&self) -> bool {
        self.parked_count < self.limits.max_parked
    }

    /// Keeps an early event until its order can take it. The caller checks
    /// [`WebhookInbox::can_park`] first; parking into a full inbox is a bug.
    pub fn park(&mut self, event: WebhookEvent) {
        assert!(self.can_park(), "park into a full inbox");
        self.parked.entry(event.order).or_default().push(event);
        self.parked_count += 1;
    }

    /// Removes and returns the events parked for `order`, oldest first.
    pub fn take_parked(&mut self, order: OrderId) -> Vec<WebhookEvent> {
        let events = self.parked.remove(&order).unwrap_or_default();
        self.parked_count -= events.len();
        events
    }

    /// Parked events, all orders.
    pub fn parked_len(&self) -> usize {
        self.parked_count
    }

    /// Remembered event ids, with when each was first seen.
    pub fn seen(&self) -> impl Iterator<Item = (&EventId, Millis)> {
        self.seen.iter().map(|(id, at)| (id, *at))
    }

    /// Remembered event ids.
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Whether some seen id is old enough at `now` for [`WebhookInbox::forget_old`] to forget.
    pub fn any_old(&self, now: Millis) -> bool {
        self.seen
            .values()
            .any(|at| now.since(*at) >= self.limits.dedup_retention_ms)
    }

    /// Forgets up to `max` event ids seen longer ago than the retention window.
    pub fn forget_old(&mut self, now: Millis, max: usize) -> usize {
        let old: Vec<EventId> = self
            .seen
            .iter()
            .filter(|(_, at)| now.since(**at) >= self.limits.dedup_retention_ms)
            .take(max)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            self.seen.remove(id);
        }
        old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PSP's view of `event`'s intent, as the event describes it.
    fn psp_view(event: &WebhookEvent, status: IntentStatus, refunded: u64) -> PaymentIntent {
        PaymentIntent {
            id: event.intent.clone(),
            order: event.order,
            amount: event.amount,
            status,
            refunded: Cents(refunded),
        }
    }

    #[test]
    fn an_event_is_confirmed_only_by_a_psp_view_that_shows_what_it_reports() {
        // Proves: each kind of event is confirmed by exactly the PSP state it reports
        // (succeeded, failed, a refund), and every other state leaves it unconfirmed.
        use IntentStatus::*;
        let succeeded = event("evt_1", 1);
        let failed = WebhookEvent {
            kind: WebhookKind::PaymentFailed,
            ..event("evt_2", 1)
        };
        let refunded = WebhookEvent {
            kind: WebhookKind::Refunded,
            ..event("evt_3", 1)
        };
        let table = [
            (&succeeded, Succeeded, 0, Corroboration::Confirmed),
            (&succeeded, Succeeded, 100, Corroboration::Confirmed),
            (&succeeded, RequiresPayment, 0, Corroboration::Unconfirmed),
            (&succeeded, Failed, 0, Corroboration::Unconfirmed),
            (&succeeded, Canceled, 0, Corroboration::Unconfirmed),
            (&failed, Failed, 0, Corroboration::Confirmed),
            (&failed, RequiresPayment, 0, Corroboration::Unconfirmed),
            (&failed, Succeeded, 0, Corroboration::Unconfirmed),
            (&refunded, Succeeded, 100, Corroboration::Confirmed),
            (&refunded, Succeeded, 1, Corroboration::Confirmed),
            (&refunded, Succeeded, 0, Corroboration::Unconfirmed),
            (&refunded, RequiresPayment, 0, Corroboration::Unconfirmed),
        ];
        for (event, status, refunded, expected) in table {
            let view = psp_view(event, status, refunded);
            assert_eq!(
                event.corroborate(&view),
                expected,
                "{:?} against {status:?} refunded {refunded}",
                event.kind
            );
        }
    }

    #[test]
    fn an_event_naming_another_intent_order_or_amount_than_the_psps_is_a_mismatch() {
        // Proves: the PSP's intent must be the one the event names, for the order and the
        // amount it names — a signed event cannot move one order with another's payment, nor
        // claim an amount the PSP did not take — whatever state the PSP shows.
        let claim = event("evt_1", 1);
        let view = psp_view(&claim, IntentStatus::Succeeded, 0);
        assert_eq!(claim.corroborate(&view), Corroboration::Confirmed);
        let other_intent = PaymentIntent {
            id: IntentId::new("pi_2").unwrap(),
            ..view.clone()
        };
        let other_order = PaymentIntent {
            order: OrderId(2),
            ..view.clone()
        };
        let more = PaymentIntent {
            amount: Cents(101),
            ..view.clone()
        };
        let less = PaymentIntent {
            amount: Cents(99),
            ..view.clone()
        };
        for wrong in [other_intent, other_order, more, less] {
            assert_eq!(
                claim.corroborate(&wrong),
                Corroboration::Mismatch,
                "{wrong:?}"
            );
        }
    }

    fn event(id: &str, order: u64) -> WebhookEvent {
        WebhookEvent {
            id: EventId::new(id).unwrap(),
            kind: WebhookKind::PaymentSucceeded,
            intent: IntentId::new("pi_1").unwrap(),
            order: OrderId(order),
            amount: Cents(100),
            created: Millis(0),
        }
    }

    #[test]
    fn an_event_id_is_fresh_once_then_duplicate() {
        let mut inbox = WebhookInbox::new(InboxLimits::default());
        assert_eq!(
            inbox.receive(&event("evt_1", 1), Millis(0)),
            Received::Fresh
        );
        assert_eq!(
            inbox.receive(&event("evt_1", 1), Millis(5)),
            Received::Duplicate
        );
        assert_eq!(
            inbox.receive(&event("evt_2", 1), Millis(5)),
            Received::Fresh
        );
    }

    #[test]
    fn parked_events_come_back_in_order_for_their_order_only() {
        let mut inbox = WebhookInbox::new(InboxLimits::default());
        inbox.park(event("evt_1", 1));
        inbox.park(event("evt_2", 2));
        inbox.park(event("evt_3", 1));
        let back: Vec<_> = inbox
            .take_parked(OrderId(1))
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            back,
            vec![
                EventId::new("evt_1").unwrap(),
                EventId::new("evt_3").unwrap()
            ]
        );
        assert_eq!(inbox.parked_len(), 1);
        assert!(inbox.take_parked(OrderId(1)).is_empty());
    }

    #[test]
    fn the_inbox_is_bounded_and_forgets_after_retention() {
        let mut inbox = WebhookInbox::new(InboxLimits {
            dedup_retention_ms: 100,
            max_seen: 2,
            max_parked: 1,
        });
        assert_eq!(
            inbox.receive(&event("evt_1", 1), Millis(0)),
            Received::Fresh
        );
        assert_eq!(
            inbox.receive(&event("evt_2", 1), Millis(50)),
            Received::Fresh
        );
        assert_eq!(
            inbox.receive(&event("evt_3", 1), Millis(60)),
            Received::Full
        );
        assert!(!inbox.has_seen(&EventId::new("evt_3").unwrap()));
        assert_eq!(inbox.forget_old(Millis(100), 10), 1);
        assert_eq!(
            inbox.receive(&event("evt_3", 1), Millis(100)),
            Received::Fresh
        );
        inbox.park(event("evt_9", 1));
        assert!(!inbox.can_park());
    }

    #[test]
    fn has_seen_answers_for_received_ids_only() {
        // Proves: an id is seen once received and until forgotten, and never before.
        let mut inbox = WebhookInbox::new(InboxLimits {
            dedup_retention_ms: 100,
            ..InboxLimits::default()
        });
        let id = EventId::new("evt_1").unwrap();
        assert!(!inbox.has_seen(&id));
        inbox.receive(&event("evt_1", 1), Millis(0));
        assert!(inbox.has_seen(&id));
        assert_eq!(inbox.seen_len(), 1);
        inbox.forget_old(Millis(100), 10);
        assert!(!inbox.has_seen(&id));
        assert_eq!(inbox.seen_len(), 0);
    }

    #[test]
    fn forget_old_keeps_ids_until_the_retention_bound_and_at_most_max() {
        // Proves: an id received at t is kept at t + retention - 1 and forgotten from
        // t + retention on, at most `max` per call; `any_old` says so on both sides.
        let mut inbox = WebhookInbox::new(InboxLimits {
            dedup_retention_ms: 100,
            ..InboxLimits::default()
        });
        for id in ["evt_1", "evt_2", "evt_3"] {
            inbox.receive(&event(id, 1), Millis(10));
        }
        assert!(!inbox.any_old(Millis(109)));
        assert_eq!(inbox.forget_old(Millis(109), 10), 0);
        assert!(inbox.any_old(Millis(110)));
        assert_eq!(inbox.forget_old(Millis(110), 2), 2);
        assert_eq!(inbox.seen_len(), 1);
        assert_eq!(inbox.forget_old(Millis(110), 2), 1);
    }

    #[test]
    fn parking_is_bounded_on_both_sides_of_max_parked() {
        // Proves: with room for 2, two events park and the inbox is then full; taking them back
        // frees the room.
        let mut inbox = WebhookInbox::new(InboxLimits {
            max_parked: 2,
            ..InboxLimits::default()
        });
        inbox.park(event("evt_1", 1));
        assert!(inbox.can_park());
        inbox.park(event("evt_2", 1));
        assert!(!inbox.can_park());
        assert_eq!(inbox.parked_len(), 2);
        assert_eq!(inbox.take_parked(OrderId(1)).len(), 2);
        assert_eq!(inbox.parked_len(), 0);
        assert!(inbox.can_park());
    }

    #[test]
    fn the_seen_set_is_full_at_exactly_max_seen() {
        // Proves: with room for 2 ids, the second is fresh and the third is refused.
        let mut inbox = WebhookInbox::new(InboxLimits {
            max_seen: 2,
            ..InboxLimits::default()
        });
        assert_eq!(
            inbox.receive(&event("evt_1", 1), Millis(0)),
            Received::Fresh
        );
        assert_eq!(
            inbox.receive(&event("evt_2", 1), Millis(0)),
            Received::Fresh
        );
        assert_eq!(inbox.receive(&event("evt_3", 1), Millis(0)), Received::Full);
    }
}
