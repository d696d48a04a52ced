//! Model-based tests of `Inventory`: random sequences of reserve, commit,
//! release, expire and restock are run against a plain counting model, and
//! after every step stock is conserved, nothing goes negative, and every
//! outcome (reserved or out of stock) is the one the model predicts.

use proptest::prelude::*;
use stampede_core::{Inventory, InventoryError, Millis, OrderId, ReservationId, Sku};
use std::collections::BTreeMap;

const SKUS: [&str; 3] = ["hot", "warm", "cold"];

#[derive(Clone, Debug)]
enum Op {
    Reserve {
        lines: Vec<(usize, u64)>,
        ttl_ms: Option<u64>,
        hint: u64,
    },
    Commit(usize),
    Release(usize),
    Advance(u64),
    Restock(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            prop::collection::vec((0..SKUS.len(), 1u64..5), 1..3),
            prop::option::of(1u64..500),
            any::<u64>()
        )
            .prop_map(|(lines, ttl_ms, hint)| Op::Reserve { lines, ttl_ms, hint }),
        2 => any::<usize>().prop_map(Op::Commit),
        2 => any::<usize>().prop_map(Op::Release),
        2 => (1u64..300).prop_map(Op::Advance),
        1 => (0..SKUS.len(), 1u64..5).prop_map(|(s, q)| Op::Restock(s, q)),
    ]
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Model {
    received: u64,
    available: u64,
    reserved: u64,
    sold: u64,
}

struct Live {
    id: ReservationId,
    lines: Vec<(usize, u64)>,
    expires_at: Option<Millis>,
}

fn sku(i: usize) -> Sku {
    Sku::new(SKUS[i]).unwrap()
}

fn run(segments: [usize; 3], initial: [u64; 3], ops: Vec<Op>) {
    let mut inv = Inventory::new();
    let mut model = [Model::default(); 3];
    for i in 0..3 {
        inv.add_sku(sku(i), initial[i], segments[i]).unwrap();
        model[i] = Model {
            received: initial[i],
            available: initial[i],
            ..Model::default()
        };
    }
    let mut live: Vec<Live> = Vec::new();
    let mut now = Millis(0);
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Reserve {
                mut lines,
                ttl_ms,
                hint,
            } => {
                lines.sort_by_key(|l| l.0);
                lines.dedup_by_key(|l| l.0);
                let request: Vec<(Sku, u64)> = lines.iter().map(|(s, q)| (sku(*s), *q)).collect();
                let fits = lines.iter().all(|(s, q)| model[*s].available >= *q);
                match inv.reserve(OrderId(step as u64), &request, now, ttl_ms, hint) {
                    Ok(id) => {
                        assert!(fits, "reserved beyond availability at step {step}");
                        for (s, q) in &lines {
                            model[*s].available -= q;
                            model[*s].reserved += q;
                        }
                        live.push(Live {
                            id,
                            lines,
                            expires_at: ttl_ms.map(|t| now.plus_ms(t)),
                        });
                    }
                    Err(InventoryError::OutOfStock { .. }) => {
                        assert!(!fits, "refused a reservation that fits")
                    }
                    Err(other) => panic!("unexpected {other}"),
                }
            }
            Op::Commit(pick) | Op::Release(pick) if !live.is_empty() => {
                let l = live.remove(pick % live.len());
                let commit = matches!(op, Op::Commit(_));
                if commit {
                    inv.commit(l.id).unwrap();
                } else {
                    inv.release(l.id).unwrap();
                }
                for (s, q) in &l.lines {
                    model[*s].reserved -= q;
                    if commit {
                        model[*s].sold += q
                    } else {
                        model[*s].available += q
                    }
                }
                // Settling twice is refused and changes nothing.
                assert_eq!(
                    inv.release(l.id),
                    Err(InventoryError::UnknownReservation(l.id))
                );
            }
            Op::Commit(_) | Op::Release(_) => {}
            Op::Advance(ms) => {
                now = now.plus_ms(ms);
                let expired = inv.expire_due(now, usize::MAX);
                let mut expected: Vec<ReservationId> = Vec::new();
                live.retain(|l| {
                    let due = l.expires_at.is_some_and(|at| at <= now);
                    if due {
                        expected.push(l.id);
                    }
                    !due
                });
                let mut got: Vec<ReservationId> = expired.iter().map(|r| r.id).collect();
                got.sort();
                expected.sort();
                assert_eq!(got, expected, "expiry released the wrong reservations");
                for r in &expired {
                    for a in &r.allocations {
                        let s = SKUS.iter().position(|n| *n == a.sku.as_str()).unwrap();
                        model[s].reserved -= a.qty;
                        model[s].available += a.qty;
                    }
                }
            }
            Op::Restock(s, q) => {
                inv.restock(&sku(s), q).unwrap();
                model[s].received += q;
                model[s].available += q;
            }
        }
        inv.check_conservation()
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        for (i, m) in model.iter().enumerate() {
            let level = inv.level(&sku(i)).unwrap();
            assert_eq!(
                (level.received, level.available, level.reserved, level.sold),
                (m.received, m.available, m.reserved, m.sold),
                "step {step}, sku {}",
                SKUS[i]
            );
        }
    }
    let levels: BTreeMap<Sku, _> = inv.levels();
    assert_eq!(levels.len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Proves: on ordinary (one-segment) SKUs, any sequence of operations
    // keeps stock conserved and matches the counting model exactly.
    #[test]
    fn single_segment_stock_matches_the_model(initial in prop::array::uniform3(0u64..12), ops in prop::collection::vec(op(), 1..80)) {
        run([1, 1, 1], initial, ops);
    }

    // Proves: splitting a hot SKU into segments changes where units are held,
    // never how many: the summed counters match the same model.
    #[test]
    fn segmented_stock_matches_the_model(
        segments in prop::array::uniform3(1usize..6),
        initial in prop::array::uniform3(0u64..20),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(segments, initial, ops);
    }
}
