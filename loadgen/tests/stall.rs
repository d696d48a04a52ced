//! Knowing the instrument: a known 1.5 s server stall, injected by a proxy
//! in front of the real shop, is hidden by raw closed-loop percentiles
//! (each stalled user sends one slow request, then nothing) and shown by the
//! coordinated-omission-corrected ones and by the open loop, which measures
//! from the schedule.

use stampede_loadgen::{LoadConfig, Mix, Model, run};
use stampede_reports::{Basis, LoadReport};
use stampede_server::serve::{self, StackConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STALL: Duration = Duration::from_millis(1500);

/// Holds every byte in both directions while `now` is inside the window.
#[derive(Clone, Copy)]
struct Stall {
    from: Instant,
    until: Instant,
}

impl Stall {
    async fn gate(&self) {
        let now = Instant::now();
        if now >= self.from && now < self.until {
            tokio::time::sleep(self.until - now).await;
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stall: Stall,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        stall.gate().await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy to `target` that stalls from `after` for [`STALL`].
async fn stalling_proxy(target: SocketAddr, after: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let from = Instant::now() + after;
    let stall = Stall {
        from,
        until: from + STALL,
    };
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pipe(cr, sw, stall), pipe(sr, cw, stall));
            });
        }
    });
    addr
}

async fn load_through_stall(model: Model, dir: &str) -> LoadReport {
    let mut stack = StackConfig::demo("127.0.0.1:0".parse().unwrap(), 1_700_000_000_000);
    // Abandoned checkouts lapse quickly, so the shop settles and every invariant is judged.
    stack.shop.reservation_ttl_ms = Some(2_000);
    let stack = serve::start(stack).await.unwrap();
    let proxy = stalling_proxy(stack.shop_addr, Duration::from_millis(2500)).await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let mut config = LoadConfig::new(&proxy.to_string(), &stack.psp_addr, out);
    config.model = model;
    config.duration = Duration::from_secs(6);
    config.drain = Duration::from_secs(3);
    config.settle = Duration::from_secs(20);
    // Journeys that browse, order and walk away: short, and no PSP involved.
    config.mix = Mix {
        browse: 1.0,
        double_click: 0.0,
        abandon: 1.0,
        hot: 0.0,
        decline: 0.0,
    };
    config.design = "reference".into();
    let report = run(config, |_| {}).await.unwrap();
    stack.shutdown().await;
    report
}

fn polls(report: &LoadReport) -> &stampede_reports::EndpointLatency {
    report
        .endpoints
        .iter()
        .find(|e| e.name == "GET /v1/orders/{id}")
        .expect("journeys poll their orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_hidden_by_raw_closed_loop_percentiles_shows_when_corrected_and_in_the_open_loop() {
    let closed = load_through_stall(
        Model::Closed {
            users: 4,
            ramp: Duration::from_millis(100),
        },
        "stall-closed",
    )
    .await;
    let e = polls(&closed);
    eprintln!(
        "closed loop, polls: raw p99 {} µs, corrected p99 {} µs, raw max {} µs, {} requests",
        e.raw.p99_us, e.headline.p99_us, e.raw.max_us, e.requests
    );
    assert_eq!(e.basis, Basis::Corrected);
    assert!(e.requests > 500, "{} polls", e.requests);
    assert!(
        e.raw.max_us >= 1_000_000,
        "some request did wait out the stall: raw max {} µs",
        e.raw.max_us
    );
    assert!(
        e.raw.p99_us < 250_000,
        "raw closed-loop p99 hides the stall: {} µs",
        e.raw.p99_us
    );
    assert!(
        e.headline.p99_us > 500_000,
        "corrected p99 shows it: {} µs",
        e.headline.p99_us
    );
    assert!(closed.passed(), "the audit holds: {:?}", closed.audit);
    assert!(
        closed.audit.iter().all(|v| v.outcome == "holds"),
        "every invariant judged: {:?} {:?}",
        closed.audit,
        closed.notes
    );

    let open = load_through_stall(
        Model::Open {
            rate_per_sec: 100.0,
            max_in_flight: 64,
        },
        "stall-open",
    )
    .await;
    let first = open
        .endpoints
        .iter()
        .find(|e| e.name == "GET /v1/products")
        .expect("every journey browses first");
    eprintln!(
        "open loop, first request: from schedule p99 {} µs, raw p99 {} µs",
        first.headline.p99_us, first.raw.p99_us
    );
    assert_eq!(first.basis, Basis::IntendedStart);
    assert!(
        first.headline.p99_us > 500_000,
        "open-loop p99 from the schedule shows the stall: {} µs",
        first.headline.p99_us
    );
    assert!(open.passed(), "the audit holds: {:?}", open.audit);
}
