//! Orders accepted per second by a running shop, and their latency at a
//! given rate: the store comparison in benches/README.md ("Durable state").
//!
//! ```sh
//! orders ADDR closed CONNECTIONS SECONDS   # saturation: orders/s with CONNECTIONS in a loop
//! orders ADDR open RATE SECONDS            # open loop at RATE orders/s: p50/p99/max latency
//! ```
//!
//! ADDR may list several replicas of one shop, comma-separated: connection
//! (or request) `n` goes to replica `n mod replicas`.
//!
//! Each request is `POST /v1/orders` with a fresh `Idempotency-Key` for one
//! unit of an ordinary SKU; only a 202 counts as accepted. In the open loop
//! every latency counts from when the request was due, not when it was sent
//! (coordinated omission: a stalled shop shows as latency, not as fewer
//! requests), and the run fails if fewer than 99% of the due requests were
//! sent on time. Memory: one HdrHistogram; every loop bounded by SECONDS.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const BODY: &str = r#"{"customer_id":"bench","items":[{"sku":"tshirt-black","qty":1}]}"#;

fn usage() -> ! {
    eprintln!("usage: orders ADDR closed CONNECTIONS SECONDS | orders ADDR open RATE SECONDS");
    std::process::exit(2)
}

fn number(text: Option<String>) -> u64 {
    text.and_then(|t| t.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| usage())
}

async fn place(client: &reqwest::Client, url: &str, key: u64, run: u64) -> bool {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", format!("bench-{run}-{key}"))
        .body(BODY)
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 202)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| usage());
    let mode = args.next().unwrap_or_else(|| usage());
    let n = number(args.next());
    let secs = number(args.next());
    let urls: Vec<String> = addr
        .split(',')
        .map(|a| format!("http://{a}/v1/orders"))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    // Keys unique across runs against the same store.
    let run = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(0);
    let end = Instant::now() + Duration::from_secs(secs);
    match mode.as_str() {
        "closed" => {
            let accepted = Arc::new(AtomicU64::new(0));
            let next = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (client, url) = (client.clone(), urls[i as usize % urls.len()].clone());
                    let (accepted, next) = (Arc::clone(&accepted), Arc::clone(&next));
                    tokio::spawn(async move {
                        while Instant::now() < end {
                            let key = next.fetch_add(1, Ordering::Relaxed);
                            if place(&client, &url, key, run).await {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a sender");
            }
            let accepted = accepted.load(Ordering::Relaxed);
            println!(
                "closed {n} connections, {secs} s: {accepted} orders accepted, {:.0} orders/s",
                accepted as f64 / secs as f64
            );
        }
        "open" => {
            let interval = Duration::from_secs_f64(1.0 / n as f64);
            let total = n * secs;
            let start = Instant::now();
            let latencies = Arc::new(std::sync::Mutex::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("a histogram"),
            ));
            let (accepted, late) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let mut tasks = Vec::with_capacity(total as usize);
            for key in 0..total {
                let due = start + interval.mul_f64(key as f64);
                tokio::time::sleep_until(due).await;
                if Instant::now() > due + Duration::from_millis(5) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let (client, url) = (client.clone(), urls[key as usize % urls.len()].clone());
                let (latencies, accepted) = (Arc::clone(&latencies), Arc::clone(&accepted));
                tasks.push(tokio::spawn(async move {
                    if place(&client, &url, key, run).await {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies
                        .lock()
                        .expect("the histogram")
                        .saturating_record(micros.max(1));
                }));
            }
            for task in tasks {
                task.await.expect("a sender");
            }
            let h = latencies.lock().expect("the histogram");
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            let (accepted, late) = (
                accepted.load(Ordering::Relaxed),
                late.load(Ordering::Relaxed),
            );
            println!(
                "open {n}/s, {secs} s: {accepted}/{total} accepted, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from the schedule; {late} sent >5 ms late)",
                ms(0.5),
                ms(0.99),
                h.max() as f64 / 1000.0
            );
            if late * 100 > total {
                eprintln!(
                    "more than 1% of requests were sent late: the sender, not the shop, is the bottleneck"
                );
                std::process::exit(1);
            }
        }
        _ => usage(),
    }
}
