//! Benchmarks of the pure core: the hot paths a flash sale stresses.
//!
//! - `reserve_commit/*`: one reserve + commit of 1 unit on a hot SKU, as one
//!   counter and split into 8 segments;
//! - `reserve_release/one_counter`: reserve + release (the abandoned-cart path);
//! - `idempotency/*`: `begin` on an idempotency store holding 1M live keys
//!   (replay of a completed key, and a mismatched request);
//! - `lifecycle/full_order`: one order from `place_order` to `Confirmed`
//!   through every job step, on a shop already holding 100k orders.
//!
//! Run: `cargo bench -p stampede-benches --bench core`. Results: `benches/README.md`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use stampede_core::IdempotencyLimits;
use stampede_core::{
    Catalog, Cause, Cents, CustomerId, Fingerprint, IdempotencyKey, IdempotencyStore, IntentId,
    IntentStatus, Inventory, ItemRequest, Millis, OrderId, PaymentIntent, PlaceOrder, Placed,
    Product, ShopConfig, ShopState, Sku,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HOT_STOCK: u64 = 1 << 40;

fn hot_inventory(segments: usize) -> (Inventory, Sku) {
    let sku = Sku::new("hot-sku").unwrap();
    let mut inv = Inventory::new();
    inv.add_sku(sku.clone(), HOT_STOCK, segments).unwrap();
    // Some neighbours so the SKU map is not trivially small.
    for i in 0..1_000 {
        inv.add_sku(Sku::new(format!("sku-{i:04}")).unwrap(), 100, 1)
            .unwrap();
    }
    (inv, sku)
}

fn reserve_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_commit");
    for (name, segments) in [("one_counter", 1), ("segmented_8", 8)] {
        let (mut inv, sku) = hot_inventory(segments);
        let lines = [(sku, 1u64)];
        let mut order = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                order += 1;
                let id = inv
                    .reserve(OrderId(order), &lines, Millis(order), Some(900_000), order)
                    .unwrap();
                inv.commit(black_box(id)).unwrap();
            })
        });
        inv.check_conservation().unwrap();
    }
    group.finish();

    let (mut inv, sku) = hot_inventory(1);
    let lines = [(sku, 1u64)];
    let mut order = 0u64;
    c.bench_function("reserve_release/one_counter", |b| {
        b.iter(|| {
            order += 1;
            let id = inv
                .reserve(OrderId(order), &lines, Millis(order), Some(900_000), order)
                .unwrap();
            inv.release(black_box(id)).unwrap();
        })
    });
}

fn idempotency_lookup(c: &mut Criterion) {
    const LIVE_KEYS: usize = 1_000_000;
    let mut store: IdempotencyStore<OrderId> = IdempotencyStore::new(IdempotencyLimits {
        max_records: 2 * LIVE_KEYS,
        ..IdempotencyLimits::default()
    });
    // Keys shaped like client UUIDs, inserted in a scattered order.
    let keys: Vec<IdempotencyKey> = (0..LIVE_KEYS as u64)
        .map(|i| {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            IdempotencyKey::new(format!("{:016x}-{:08x}-checkout", x, i)).unwrap()
        })
        .collect();
    let fingerprints: Vec<Fingerprint> = (0..LIVE_KEYS as u64)
        .map(|i| Fingerprint::of(&i.to_le_bytes()))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        store.begin(key, fingerprints[i], Millis(0));
        store
            .complete(key, fingerprints[i], OrderId(i as u64), Millis(0))
            .unwrap();
    }
    assert_eq!(store.len(), LIVE_KEYS);
    let mut group = c.benchmark_group("idempotency");
    let mut i = 0usize;
    group.bench_function("replay_hit_1M_keys", |b| {
        b.iter(|| {
            i = (i + 7_919) % LIVE_KEYS;
            black_box(store.begin(&keys[i], fingerprints[i], Millis(1)))
        })
    });
    let other = Fingerprint::of(b"a different request");
    group.bench_function("mismatch_1M_keys", |b| {
        b.iter(|| {
            i = (i + 7_919) % LIVE_KEYS;
            black_box(store.begin(&keys[i], other, Millis(1)))
        })
    });
    group.finish();
}

fn shop() -> (ShopState, Sku) {
    let sku = Sku::new("hot-sku").unwrap();
    let catalog = Catalog::new([Product {
        sku: sku.clone(),
        name: "Hot".into(),
        price: Cents(4_999),
        max_qty_per_order: 10,
        per_customer_limit: None,
    }]);
    let config = ShopConfig {
        max_orders: 50_000_000,
        idempotency: IdempotencyLimits {
            max_records: 50_000_000,
            ..IdempotencyLimits::default()
        },
        ..ShopConfig::default()
    };
    let mut shop = ShopState::new(catalog, config);
    shop.stock(&sku, HOT_STOCK, 1).unwrap();
    (shop, sku)
}

/// One order from placement to `Confirmed`, every job leased, run and acked.
fn lifecycle(shop: &mut ShopState, sku: &Sku, n: u64) {
    let now = Millis(n);
    let request = PlaceOrder {
        key: Some(IdempotencyKey::new(format!("order-key-{n}")).unwrap()),
        customer: CustomerId::new(format!("cust-{}", n % 10_000)).unwrap(),
        items: vec![ItemRequest {
            sku: sku.clone(),
            qty: 1,
        }],
        express: false,
    };
    let Ok(Placed::Created { order, .. }) = shop.place_order(&request, now) else {
        panic!("place")
    };
    let run = |shop: &mut ShopState, f: &mut dyn FnMut(&mut ShopState, Cause)| {
        let lease = shop.lease_job(now).expect("a job");
        f(shop, Cause::Worker { job: lease.job });
        shop.ack_job(&lease).unwrap();
    };
    run(shop, &mut |s, cause| {
        s.reserve(order, now, cause).unwrap();
    });
    let mut intent = PaymentIntent {
        id: IntentId::new(format!("pi_{}", order.0)).unwrap(),
        order,
        amount: Cents(4_999),
        status: IntentStatus::RequiresPayment,
        refunded: Cents::ZERO,
    };
    run(shop, &mut |s, cause| {
        s.record_intent(intent.clone(), now, cause).unwrap();
    });
    intent.status = IntentStatus::Succeeded;
    shop.apply_payment(&intent, now, Cause::Reconciler).unwrap();
    run(shop, &mut |s, cause| {
        s.finalize(order, now, cause).unwrap();
    });
}

fn full_lifecycle(c: &mut Criterion) {
    let (mut warm, sku) = shop();
    let mut n = 0u64;
    for _ in 0..100_000 {
        n += 1;
        lifecycle(&mut warm, &sku, n);
    }
    c.bench_function("lifecycle/full_order_100k_existing", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n += 1;
                lifecycle(&mut warm, &sku, n);
            }
            start.elapsed()
        })
    });
    c.bench_function("lifecycle/full_order_empty_shop", |b| {
        b.iter_batched_ref(shop, |(s, sku)| lifecycle(s, sku, 1), BatchSize::SmallInput)
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = reserve_paths, idempotency_lookup, full_lifecycle
}
criterion_main!(benches);
