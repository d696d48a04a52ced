//! Model-based tests of `IdempotencyStore`: random begin/complete/abandon
//! sequences over a few repeated keys and two request shapes, with time
//! moving forward, against a model of Stripe's rules. Proves the first
//! completed response is the only one ever replayed for a key (until it
//! expires), a different request under a key is always refused, and a key is
//! never held by two requests at once.

use proptest::prelude::*;
use stampede_core::IdempotencyLimits;
use stampede_core::{Begin, Fingerprint, IdempotencyKey, IdempotencyStore, Millis};
use std::collections::BTreeMap;

const RETENTION_MS: u64 = 1_000;
const IN_FLIGHT_TIMEOUT_MS: u64 = 200;

#[derive(Clone, Debug)]
enum Op {
    Begin { key: u8, request: u8 },
    Complete { key: u8 },
    Abandon { key: u8 },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..4, 0u8..2).prop_map(|(key, request)| Op::Begin { key, request }),
        3 => (0u8..4).prop_map(|key| Op::Complete { key }),
        1 => (0u8..4).prop_map(|key| Op::Abandon { key }),
        2 => (1u64..400).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Debug)]
enum Slot {
    InFlight { request: u8, since: Millis },
    Done { request: u8, response: u32 },
}

#[derive(Clone, Debug)]
struct Rec {
    created: Millis,
    slot: Slot,
}

fn key(k: u8) -> IdempotencyKey {
    IdempotencyKey::new(format!("key-{k}")).unwrap()
}

fn fp(request: u8) -> Fingerprint {
    Fingerprint::of(&[request])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // Proves: every `begin` answer equals the model's (new, replay of the
    // first saved response, mismatch, in flight), and completing or
    // abandoning succeeds exactly when the model says the key is in flight.
    #[test]
    fn stripe_semantics_hold_for_any_interleaving(ops in prop::collection::vec(op(), 1..120)) {
        let mut store: IdempotencyStore<u32> = IdempotencyStore::new(IdempotencyLimits {
            retention_ms: RETENTION_MS,
            in_flight_timeout_ms: IN_FLIGHT_TIMEOUT_MS,
            max_records: 1_000,
        });
        let mut model: BTreeMap<u8, Rec> = BTreeMap::new();
        let mut now = Millis(0);
        let mut next_response = 0u32;
        for op in ops {
            match op {
                Op::Begin { key: k, request } => {
                    let got = store.begin(&key(k), fp(request), now);
                    let live = model.get(&k).filter(|r| now.since(r.created) < RETENTION_MS).cloned();
                    let expected = match &live {
                        None => Begin::New,
                        Some(Rec { slot: Slot::InFlight { request: r, .. }, .. }) |
                        Some(Rec { slot: Slot::Done { request: r, .. }, .. }) if *r != request => Begin::Mismatch,
                        Some(Rec { slot: Slot::Done { response, .. }, .. }) => Begin::Replay(*response),
                        Some(Rec { slot: Slot::InFlight { since, .. }, .. }) if now.since(*since) < IN_FLIGHT_TIMEOUT_MS => Begin::InFlight,
                        Some(Rec { .. }) => Begin::New, // stale lock taken over
                    };
                    prop_assert_eq!(&got, &expected);
                    if expected == Begin::New {
                        let created = live.map_or(now, |r| r.created);
                        model.insert(k, Rec { created, slot: Slot::InFlight { request, since: now } });
                    }
                }
                Op::Complete { key: k } => {
                    let holder = match model.get(&k) {
                        Some(Rec { slot: Slot::InFlight { request, .. }, .. }) => Some(*request),
                        _ => None,
                    };
                    let request = holder.unwrap_or(0);
                    next_response += 1;
                    let result = store.complete(&key(k), fp(request), next_response, now);
                    prop_assert_eq!(result.is_ok(), holder.is_some());
                    if let (Some(request), Some(rec)) = (holder, model.get_mut(&k)) {
                        rec.slot = Slot::Done { request, response: next_response };
                    }
                }
                Op::Abandon { key: k } => {
                    let holder = match model.get(&k) {
                        Some(Rec { slot: Slot::InFlight { request, .. }, .. }) => Some(*request),
                        _ => None,
                    };
                    let result = store.abandon(&key(k), fp(holder.unwrap_or(0)));
                    prop_assert_eq!(result.is_ok(), holder.is_some());
                    if holder.is_some() {
                        model.remove(&k);
                    }
                }
                Op::Advance(ms) => now = now.plus_ms(ms),
            }
        }
    }
}
