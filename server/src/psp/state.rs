//! The PSP's books, pure and synchronous: intents, idempotency records, the
//! append-only ledger and the events it emitted. Time comes in as [`Now`];
//! client secrets come from a generator seeded by the configuration. The
//! HTTP layer ([`super::app`]) only parses, calls one method, and renders.

use super::wire::{Card, CreateIntent, CreateRefund, IntentJson, WebhookPayload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stampede_core::{
    Cents, EventId, Fingerprint, IdempotencyKey, IntentId, IntentStatus, LedgerEntry, LedgerKind,
    Millis, OrderId, PaymentIntent, WebhookKind,
};
use std::collections::{BTreeMap, BTreeSet};

/// The time of one operation, on the PSP's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Now {
    /// For ledger lines.
    pub at: Millis,
    /// For event `created` fields.
    pub unix_secs: u64,
}

/// Why an operation changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No intent has this id.
    NotFound(String),
    /// The client secret does not belong to the intent.
    WrongSecret(IntentId),
    /// The intent's status does not allow the operation.
    Conflict {
        intent: IntentId,
        status: IntentStatus,
        operation: &'static str,
    },
    /// The idempotency key was used for a different request.
    KeyReused(IdempotencyKey),
    /// A bounded table is full.
    Full { what: &'static str, limit: usize },
}

/// What an operation answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The intent after the operation (or the saved one, on a replay).
    pub intent: IntentJson,
    /// The response was saved under the idempotency key earlier.
    pub replayed: bool,
    /// The event the operation emitted, if any.
    pub event: Option<WebhookPayload>,
}

#[derive(Clone, Debug)]
struct IntentRecord {
    intent: PaymentIntent,
    client_secret: String,
    /// The key it was created with (kept for audits).
    #[allow(dead_code)]
    idempotency_key: Option<IdempotencyKey>,
}

impl IntentRecord {
    fn json(&self) -> IntentJson {
        IntentJson::new(&self.intent, &self.client_secret)
    }
}

#[derive(Clone, Debug)]
struct KeyRecord {
    fingerprint: Fingerprint,
    response: IntentJson,
}

/// All of the PSP's state.
#[derive(Debug)]
pub(crate) struct PspState {
    /// Ids count on from here.
    id_base: u64,
    max_intents: usize,
    max_keys: usize,
    /// By the number in `pi_<n>`, so iteration is creation order.
    intents: BTreeMap<u64, IntentRecord>,
    by_order: BTreeSet<(OrderId, u64)>,
    /// Never expire: the PSP lives for one run. Bounded by `max_keys`.
    keys: BTreeMap<IdempotencyKey, KeyRecord>,
    ledger: Vec<LedgerEntry>,
    events: Vec<WebhookPayload>,
    secrets: ChaCha8Rng,
}

/// The number in `pi_<n>`, if `id` is exactly that form.
pub(crate) fn intent_number(id: &str) -> Option<u64> {
    let digits = id.strip_prefix("pi_")?;
    let n: u64 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

impl PspState {
    /// Empty books; at most `max_intents` intents and twice as many keys
    /// (one to create and one to refund each intent); intents and events are
    /// numbered from `id_base + 1` (see [`PspConfig::id_base`](super::PspConfig::id_base)).
    pub fn new(seed: u64, max_intents: usize, id_base: u64) -> PspState {
        PspState {
            id_base,
            max_intents,
            max_keys: max_intents.saturating_mul(2),
            intents: BTreeMap::new(),
            by_order: BTreeSet::new(),
            keys: BTreeMap::new(),
            ledger: Vec::new(),
            events: Vec::new(),
            secrets: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Creates an intent; with a key, a repeat of the same request replays.
    pub fn create(
        &mut self,
        now: Now,
        key: Option<IdempotencyKey>,
        request: &CreateIntent,
    ) -> Result<Answer, Refusal> {
        let fingerprint = Fingerprint::of(
            format!(
                "create_intent\n{}\n{}\n{:?}",
                request.order, request.amount.0, request.confirm_with
            )
            .as_bytes(),
        );
        if let Some(replay) = self.replay(key.as_ref(), &fingerprint)? {
            return Ok(replay);
        }
        if self.intents.len() >= self.max_intents {
            return Err(Refusal::Full {
                what: "intents",
                limit: self.max_intents,
            });
        }
        let n = self.id_base + self.intents.len() as u64 + 1;
        let id = IntentId::new(format!("pi_{n}")).expect("pi_<n> is a valid intent id");
        let client_secret = format!("{id}_secret_{:016x}", self.secrets.random::<u64>());
        let record = IntentRecord {
            intent: PaymentIntent {
                id,
                order: request.order,
                amount: request.amount,
                status: IntentStatus::RequiresPayment,
                refunded: Cents::ZERO,
            },
            client_secret,
            idempotency_key: key.clone(),
        };
        let secret = record.client_secret.clone();
        self.by_order.insert((request.order, n));
        let previous = self.intents.insert(n, record);
        assert!(previous.is_none(), "intent numbers are never reused");
        let answer = match request.confirm_with {
            None => Answer {
                intent: self.intents[&n].json(),
                replayed: false,
                event: None,
            },
            // The saved card is charged now; the answer (and its replay) shows the result.
            Some(card) => {
                let id = self.intents[&n].intent.id.to_string();
                self.confirm(now, &id, &secret, card)?
            }
        };
        self.bind(key, fingerprint, &answer.intent);
        Ok(answer)
    }

    /// Confirms with the payer's card: charges once, or records a decline.
    pub fn confirm(
        &mut self,
        now: Now,
        id: &str,
        client_secret: &str,
        card: Card,
    ) -> Result<Answer, Refusal> {
        let record = self.record_mut(id)?;
        if !crate::signature::same_secret(record.client_secret.as_bytes(), client_secret.as_bytes())
        {
            return Err(Refusal::WrongSecret(record.intent.id.clone()));
        }
        if record.intent.status != IntentStatus::RequiresPayment {
            return Err(Refusal::Conflict {
                intent: record.intent.id.clone(),
                status: record.intent.status,
                operation: "confirm",
            });
        }
        let kind = match card {
            Card::Ok => WebhookKind::PaymentSucceeded,
            Card::Decline => WebhookKind::PaymentFailed,
        };
        record.intent.status = match card {
            Card::Ok => IntentStatus::Succeeded,
            Card::Decline => IntentStatus::Failed,
        };
        let intent = record.intent.clone();
        let json = record.json();
        if card == Card::Ok {
            self.write_ledger(now, &intent, LedgerKind::Charge, intent.amount);
        }
        let event = self.emit(now, kind, &intent);
        Ok(Answer {
            intent: json,
            replayed: false,
            event: Some(event),
        })
    }

    /// Cancels an unpaid intent. Canceling again, or canceling a declined
    /// intent, changes nothing and succeeds; a paid intent cannot be canceled
    /// (refund it instead).
    pub fn cancel(&mut self, id: &str) -> Result<Answer, Refusal> {
        let record = self.record_mut(id)?;
        match record.intent.status {
            IntentStatus::RequiresPayment => record.intent.status = IntentStatus::Canceled,
            IntentStatus::Canceled | IntentStatus::Failed => {}
            IntentStatus::Succeeded => {
                return Err(Refusal::Conflict {
                    intent: record.intent.id.clone(),
                    status: record.intent.status,
                    operation: "cancel",
                });
            }
        }
        Ok(Answer {
            intent: record.json(),
            replayed: false,
            event: None,
        })
    }

    /// Refunds everything still captured. A refund that moves no money (not
    /// captured, or already refunded) answers the intent unchanged and does
    /// not bind its key, so a refund asked too early can be asked again with
    /// the same key once the payment is captured.
    pub fn refund(
        &mut self,
        now: Now,
        key: Option<IdempotencyKey>,
        request: &CreateRefund,
    ) -> Result<Answer, Refusal> {
        let fingerprint = Fingerprint::of(format!("refund\n{}", request.intent).as_bytes());
        if let Some(replay) = self.replay(key.as_ref(), &fingerprint)? {
            return Ok(replay);
        }
        let record = self.record_mut(request.intent.as_str())?;
        let net = record.intent.net_captured();
        if net == Cents::ZERO {
            return Ok(Answer {
                intent: record.json(),
                replayed: false,
                event: None,
            });
        }
        record.intent.refunded = record
            .intent
            .refunded
            .checked_add(net)
            .expect("refunded + net_captured is at most the amount");
        debug_assert_eq!(record.intent.refunded, record.intent.amount);
        let intent = record.intent.clone();
        let json = record.json();
        self.write_ledger(now, &intent, LedgerKind::Refund, net);
        let event = self.emit(now, WebhookKind::Refunded, &intent);
        self.bind(key, fingerprint, &json);
        Ok(Answer {
            intent: json,
            replayed: false,
            event: Some(event),
        })
    }

    /// One intent.
    pub fn get(&self, id: &str) -> Result<IntentJson, Refusal> {
        intent_number(id)
            .and_then(|n| self.intents.get(&n))
            .filter(|r| r.intent.id.as_str() == id)
            .map(IntentRecord::json)
            .ok_or_else(|| Refusal::NotFound(id.to_string()))
    }

    /// Up to `limit` intents after intent number `after`, in id order,
    /// optionally only those of `order`; and whether more follow.
    pub fn page(
        &self,
        order: Option<OrderId>,
        after: Option<u64>,
        limit: usize,
    ) -> (Vec<IntentJson>, bool) {
        let start = after.map_or(0, |n| n.saturating_add(1));
        let numbers: Box<dyn Iterator<Item = u64> + '_> = match order {
            Some(order) => Box::new(
                self.by_order
                    .range((order, start)..=(order, u64::MAX))
                    .map(|(_, n)| *n),
            ),
            None => Box::new(self.intents.range(start..).map(|(n, _)| *n)),
        };
        let mut numbers = numbers.peekable();
        let data = numbers
            .by_ref()
            .take(limit)
            .map(|n| self.intents[&n].json())
            .collect();
        (data, numbers.peek().is_some())
    }

    /// Every intent, in id order.
    pub fn intents(&self) -> impl Iterator<Item = &PaymentIntent> {
        self.intents.values().map(|r| &r.intent)
    }

    /// The ledger, oldest first.
    pub fn ledger(&self) -> &[LedgerEntry] {
        &self.ledger
    }

    /// Every event emitted, oldest first.
    pub fn events(&self) -> &[WebhookPayload] {
        &self.events
    }

    fn record_mut(&mut self, id: &str) -> Result<&mut IntentRecord, Refusal> {
        intent_number(id)
            .and_then(|n| self.intents.get_mut(&n))
            .filter(|r| r.intent.id.as_str() == id)
            .ok_or_else(|| Refusal::NotFound(id.to_string()))
    }

    /// `Some(saved)` for a repeat of a keyed request; refuses a reused key
    /// and a new key when the key table is full.
    fn replay(
        &self,
        key: Option<&IdempotencyKey>,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Answer>, Refusal> {
        let Some(key) = key else { return Ok(None) };
        match self.keys.get(key) {
            Some(saved) if saved.fingerprint == *fingerprint => Ok(Some(Answer {
                intent: saved.response.clone(),
                replayed: true,
                event: None,
            })),
            Some(_) => Err(Refusal::KeyReused(key.clone())),
            None if self.keys.len() >= self.max_keys => Err(Refusal::Full {
                what: "idempotency keys",
                limit: self.max_keys,
            }),
            None => Ok(None),
        }
    }

    fn bind(&mut self, key: Option<IdempotencyKey>, fingerprint: Fingerprint, json: &IntentJson) {
        if let Some(key) = key {
            let previous = self.keys.insert(
                key,
                KeyRecord {
                    fingerprint,
                    response: json.clone(),
                },
            );
            assert!(previous.is_none(), "a key is bound once");
        }
    }

    fn write_ledger(&mut self, now: Now, intent: &PaymentIntent, kind: LedgerKind, amount: Cents) {
        let seq = self.ledger.len() as u64 + 1;
        self.ledger.push(LedgerEntry {
            seq,
            at: now.at,
            intent: intent.id.clone(),
            order: intent.order,
            kind,
            amount,
        });
    }

    /// Records an event. At most two per intent (a payment outcome, then a
    /// refund), so the list is bounded by the intent limit.
    fn emit(&mut self, now: Now, kind: WebhookKind, intent: &PaymentIntent) -> WebhookPayload {
        let id = EventId::new(format!(
            "evt_{}",
            self.id_base + self.events.len() as u64 + 1
        ))
        .expect("evt_<n> is a valid event id");
        let payload = WebhookPayload::new(&id, kind, intent, now.unix_secs);
        self.events.push(payload.clone());
        debug_assert!(self.events.len() <= self.intents.len().saturating_mul(2));
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Now = Now {
        at: Millis(7),
        unix_secs: 1_000,
    };

    fn create(state: &mut PspState, key: Option<&str>, order: u64, amount: u64) -> Answer {
        state
            .create(
                NOW,
                key.map(|k| IdempotencyKey::new(k).unwrap()),
                &CreateIntent {
                    order: OrderId(order),
                    amount: Cents(amount),
                    confirm_with: None,
                },
            )
            .unwrap()
    }

    #[test]
    fn secrets_depend_only_on_the_seed_and_intent_ids_count_from_one() {
        let mut a = PspState::new(5, 10, 0);
        let mut b = PspState::new(5, 10, 0);
        let mut c = PspState::new(6, 10, 0);
        let first = create(&mut a, None, 1, 100).intent;
        assert_eq!(first.id.as_str(), "pi_1");
        assert!(first.client_secret.starts_with("pi_1_secret_"));
        assert_eq!(first, create(&mut b, None, 1, 100).intent);
        assert_ne!(
            first.client_secret,
            create(&mut c, None, 1, 100).intent.client_secret
        );
    }

    #[test]
    fn intents_and_events_are_numbered_on_from_the_id_base() {
        // Proves: with a base, the first intent is pi_<base + 1> and the next pi_<base + 2>;
        // its payment event is evt_<base + 1>; the intent is found by that id.
        let mut state = PspState::new(1, 10, 5_000);
        let first = create(&mut state, None, 1, 100).intent;
        assert_eq!(first.id.as_str(), "pi_5001");
        assert_eq!(
            create(&mut state, None, 2, 100).intent.id.as_str(),
            "pi_5002"
        );
        let paid = state
            .confirm(NOW, "pi_5001", &first.client_secret, Card::Ok)
            .unwrap();
        assert_eq!(paid.intent.status, IntentStatus::Succeeded);
        let events: Vec<_> = state.events().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(events, vec!["evt_5001"]);
    }

    #[test]
    fn a_charge_and_a_refund_each_write_one_line_and_one_event() {
        let mut state = PspState::new(1, 10, 0);
        let created = create(&mut state, None, 3, 500).intent;
        let paid = state
            .confirm(NOW, "pi_1", &created.client_secret, Card::Ok)
            .unwrap();
        assert_eq!(paid.intent.status, IntentStatus::Succeeded);
        assert!(matches!(
            state.confirm(NOW, "pi_1", &created.client_secret, Card::Ok),
            Err(Refusal::Conflict { .. })
        ));
        let refund = CreateRefund {
            intent: created.id.clone(),
        };
        let refunded = state.refund(NOW, None, &refund).unwrap();
        assert_eq!(refunded.intent.refunded, Cents(500));
        let again = state.refund(NOW, None, &refund).unwrap();
        assert_eq!(again.event, None);
        let kinds: Vec<_> = state
            .ledger()
            .iter()
            .map(|e| (e.seq, e.kind, e.amount))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (1, LedgerKind::Charge, Cents(500)),
                (2, LedgerKind::Refund, Cents(500))
            ]
        );
        let events: Vec<_> = state.events().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(events, vec!["evt_1", "evt_2"]);
    }

    #[test]
    fn a_refund_that_moved_nothing_leaves_its_key_free() {
        let mut state = PspState::new(1, 10, 0);
        let created = create(&mut state, None, 3, 500).intent;
        let key = IdempotencyKey::new("refund_ord_3").unwrap();
        let refund = CreateRefund {
            intent: created.id.clone(),
        };
        let early = state.refund(NOW, Some(key.clone()), &refund).unwrap();
        assert_eq!(early.intent.refunded, Cents::ZERO);
        state
            .confirm(NOW, "pi_1", &created.client_secret, Card::Ok)
            .unwrap();
        let late = state.refund(NOW, Some(key.clone()), &refund).unwrap();
        assert_eq!((late.intent.refunded, late.replayed), (Cents(500), false));
        let replay = state.refund(NOW, Some(key), &refund).unwrap();
        assert_eq!((replay.intent, replay.replayed), (late.intent, true));
    }

    #[test]
    fn tables_are_bounded_and_a_key_replays_even_when_full() {
        let mut state = PspState::new(1, 1, 0);
        let first = create(&mut state, Some("k"), 1, 100);
        let refused = state.create(
            NOW,
            None,
            &CreateIntent {
                order: OrderId(2),
                amount: Cents(1),
                confirm_with: None,
            },
        );
        assert!(matches!(
            refused,
            Err(Refusal::Full {
                what: "intents",
                ..
            })
        ));
        assert_eq!(create(&mut state, Some("k"), 1, 100).intent, first.intent);
    }

    #[test]
    fn paging_follows_id_order_and_filters_by_order() {
        let mut state = PspState::new(1, 100, 0);
        for i in 0..12 {
            create(&mut state, None, i % 3, 100);
        }
        let (page, more) = state.page(None, Some(9), 2);
        let ids: Vec<_> = page.iter().map(|i| i.id.to_string()).collect();
        assert_eq!(
            (ids, more),
            (vec!["pi_10".to_string(), "pi_11".into()], true)
        );
        // Order 1 has pi_2, pi_5, pi_8 and pi_11.
        let (page, more) = state.page(Some(OrderId(1)), Some(2), 10);
        let ids: Vec<_> = page.iter().map(|i| i.id.to_string()).collect();
        assert_eq!(
            (ids, more),
            (
                vec!["pi_5".to_string(), "pi_8".into(), "pi_11".into()],
                false
            )
        );
        assert_eq!(intent_number("pi_07"), None);
        assert_eq!(intent_number("pi_7"), Some(7));
        assert!(matches!(state.get("pi_99"), Err(Refusal::NotFound(_))));
    }
}
