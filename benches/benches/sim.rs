//! Simulator throughput: simulated HTTP requests per wall-clock second.
//!
//! - `sim/flash_sale_shop`: one whole `stampede_sim::run` of a seeded flash
//!   sale (`scenarios::flash(1_000, 250)`, reference design, seed 1): build the
//!   world, step it to the end of the plan (18 s of simulated time), judge
//!   every invariant. Its throughput is the run's `RunStats::http_requests`
//!   (shoppers, shop → PSP, PSP → webhooks), fixed by the seed: counted once
//!   before measuring and asserted identical on every iteration.
//! - `sim/echo_ceiling`: the engine's ceiling for the same load. A bare turmoil
//!   world with the shop's builder settings (seed, epoch, 1 ms tick, 0..=5 ms
//!   latency) holds one axum echo server on `SimListener`. The same shopper
//!   hosts run one task per planned shopper, each starting when its shopper
//!   arrives, and together they send as many requests as the shop run made,
//!   each task one after the other, through the same `HttpClient` over
//!   `connector()`, each task keeping its connection alive between its
//!   requests as a shopper does (`HttpClient::keeping_alive`).
//!
//! Both are in one group, so they are measured in the same session; the ratio
//! shop/ceiling is what `benches/README.md` records.
//!
//! Run: `cargo bench -p stampede-benches --bench sim`. Results: `benches/README.md`.

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use hyper::{Method, StatusCode};
use stampede_server::Design;
use stampede_server::HttpClient;
use stampede_sim::EPOCH_UNIX_MS;
use stampede_sim::{Plan, RunStats, scenarios};
use stampede_sim::{SimListener, connector};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

const SEED: u64 = 1;
const SHOPPERS: u32 = 1_000;
const HOT_STOCK: u64 = 250;
const ECHO_PORT: u16 = 8080;
/// Simulated time the echo world may take; it needs a small fraction of it.
const ECHO_SIM_LIMIT_MS: u64 = 600_000;
/// About the size of a shopper's "place order" body.
const ECHO_BODY: &[u8] =
    br#"{"customer_id":"cust-123","items":[{"sku":"hot","qty":2},{"sku":"tee","qty":1}]}"#;

fn flash_plan() -> Plan {
    Plan::generate(
        &scenarios::flash(SHOPPERS, HOT_STOCK),
        Design::reference(),
        SEED,
    )
}

/// One full simulated run; panics unless it completes and every invariant holds.
fn run_shop(plan: &Plan) -> RunStats {
    let result = stampede_sim::run(plan).expect("the flash sale runs to the end");
    assert!(result.passed(), "violated: {:?}", result.violated());
    result.stats
}

/// Each shopper host's tasks as `(start_ms, requests)`: one task per planned
/// shopper, starting when that shopper arrives, and `total` requests shared
/// out as evenly as possible. Staggered starts mirror the shop's load shape;
/// they also keep the listener's accept queue under turmoil's default
/// `tcp_capacity` (64), beyond which turmoil panics ("server socket buffer
/// full") instead of refusing the connection.
fn echo_tasks(plan: &Plan, total: u64) -> Vec<Vec<(u64, u64)>> {
    let tasks = plan.shoppers.len() as u64;
    assert!(tasks > 0, "the plan has shoppers");
    let mut hosts = vec![Vec::new(); plan.scenario.topology.shopper_hosts as usize];
    for (i, shopper) in plan.shoppers.iter().enumerate() {
        let quota = total / tasks + u64::from((i as u64) < total % tasks);
        hosts[shopper.host as usize].push((shopper.arrive_ms, quota));
    }
    hosts
}

fn echo_router() -> axum::Router {
    axum::Router::new().route(
        "/echo",
        axum::routing::post(|body: Bytes| async move { body }),
    )
}

/// One bare turmoil world serving `total` echo requests; returns how many were answered.
fn run_echo(plan: &Plan, total: u64) -> u64 {
    let timing = plan.scenario.timing;
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(plan.seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_UNIX_MS))
        .simulation_duration(Duration::from_millis(ECHO_SIM_LIMIT_MS))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(0))
        .max_message_latency(Duration::from_millis(timing.latency_ms_max));
    let mut sim = builder.build();
    sim.host("echo", || async {
        let listener = SimListener::bind(ECHO_PORT).await?;
        axum::serve(listener, echo_router().into_make_service()).await?;
        Ok(())
    });

    let answered = Arc::new(AtomicU64::new(0));
    for (h, tasks) in echo_tasks(plan, total).into_iter().enumerate() {
        let http = HttpClient::new(connector(), Duration::from_millis(timing.client_timeout_ms));
        let answered = Arc::clone(&answered);
        sim.client(format!("shoppers-{}", h + 1), async move {
            let handles: Vec<_> = tasks
                .into_iter()
                .map(|(start_ms, quota)| {
                    let (http, answered) = (http.clone(), Arc::clone(&answered));
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(start_ms)).await;
                        echo_task(http.keeping_alive(), quota, answered).await
                    })
                })
                .collect();
            for handle in handles {
                handle.await?;
            }
            Ok(())
        });
    }
    sim.run().expect("the echo world runs to the end");
    answered.load(Ordering::Relaxed)
}

/// Sends `quota` requests one after the other, counting the correct answers.
async fn echo_task(http: HttpClient, quota: u64, answered: Arc<AtomicU64>) {
    let addr = format!("echo:{ECHO_PORT}");
    let headers = [("content-type", "application/json".to_string())];
    for _ in 0..quota {
        let response = http
            .send(
                &addr,
                Method::POST,
                "/echo",
                &headers,
                Some(Bytes::from_static(ECHO_BODY)),
            )
            .await;
        if let Ok(r) = response
            && r.status == StatusCode::OK
            && r.body == ECHO_BODY
        {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn simulator(c: &mut Criterion) {
    let plan = flash_plan();
    let stats = run_shop(&plan);
    let requests = stats.http_requests;
    assert!(requests > 0);
    assert_eq!(
        run_echo(&plan, requests),
        requests,
        "the echo world answers every request"
    );

    let mut group = c.benchmark_group("sim");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(requests));
    group.bench_function("flash_sale_shop", |b| {
        b.iter(|| {
            // Same plan, same run: the HTTP request count and every other count.
            assert_eq!(run_shop(black_box(&plan)), stats);
        })
    });
    group.bench_function("echo_ceiling", |b| {
        b.iter(|| assert_eq!(run_echo(black_box(&plan), requests), requests))
    });
    group.finish();
}

criterion_group!(benches, simulator);
criterion_main!(benches);
