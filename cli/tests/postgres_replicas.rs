//! Several `stampede serve` replicas on one PostgreSQL database, as real
//! child processes: under `stampede load --host A,B` the reference holds
//! every invariant and `textbook-naive` oversells and is caught; a replica
//! killed with SIGKILL mid-traffic leaves the other serving, its leased jobs
//! are redelivered, and nothing acknowledged is lost.
//!
//! They need PostgreSQL (`STAMPEDE_TEST_PG` or `pg_virtualenv`'s `PG*`
//! variables); without it they say loudly that they did not run, and with
//! `STAMPEDE_REQUIRE_PG` set (CI) they fail.

mod common;

use common::{Killed, field, free_port, load, place, say, spawn, wait_ready};
use stampede_server::store::postgres;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn database(name: &str) -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(postgres::test_database(name))
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn dir(name: &str) -> PathBuf {
    let dir = common::fresh_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A replica of the shop on `url`.
fn replica(
    dir: &Path,
    url: &str,
    shop: SocketAddr,
    psp: SocketAddr,
    design: &str,
    catalog: &str,
) -> Killed {
    let log = dir.join(format!("serve-{}.log", shop.port()));
    let child = spawn(
        &[
            "serve",
            "--addr",
            &shop.to_string(),
            "--psp",
            &psp.to_string(),
            "--store",
            url,
            "--design",
            design,
            "--catalog",
            catalog,
            "--reservation-ttl-secs",
            "10",
            "--workers",
            "4",
        ],
        &log,
    );
    wait_ready(shop, "/v1/products", &log);
    child
}

/// Two replicas (A receives the webhooks) and a PSP; `load --host A,B` with `mix`.
fn load_two_replicas(
    name: &str,
    design: &str,
    catalog: &str,
    mix: &str,
) -> Option<(std::process::Output, PathBuf)> {
    let url = database(name)?;
    let dir = dir(name);
    let (a, b, p) = (addr(), addr(), addr());
    let _psp = common::start_psp(&dir, p, a);
    let _a = replica(&dir, &url, a, p, design, catalog);
    let _b = replica(&dir, &url, b, p, design, catalog);
    let mut extra = vec!["--users", "40", "--duration", "8s", "--settle", "30s"];
    if !mix.is_empty() {
        extra.extend(["--mix", mix]);
    }
    let out = load(
        &[
            "--host",
            &format!("http://{a},http://{b}"),
            "--psp",
            &format!("http://{p}"),
        ],
        &extra,
        &dir.join("load"),
    );
    Some((out, dir))
}

#[test]
fn two_replicas_hold_every_invariant_under_load() {
    // Proves: the reference design on two replicas of one PostgreSQL database, loaded through
    // both, has every invariant judged and holding (exit 0), and the report names both targets.
    // The load catalog (500 units of the hot SKU) and the default mix: busy, not sold out.
    let Some((out, dir)) = load_two_replicas("replicas_reference", "reference", "load", "") else {
        return;
    };
    let text = say(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        !text.contains("violated") && !text.contains("not judged"),
        "{text}"
    );
    let report = std::fs::read_to_string(dir.join("load/report.md")).unwrap_or_default();
    assert!(
        report.contains("http://127.0.0.1") && report.matches("http://127.0.0.1").count() >= 2,
        "both replicas are the target: {report}"
    );
}

#[test]
fn textbook_naive_on_two_replicas_oversells_and_is_caught() {
    // Proves: the read-then-write inventory (and every other textbook mistake) really
    // oversells the hot SKU when two replicas' workers race on one PostgreSQL database, and
    // the audit catches it: no_oversell is violated and the run exits 1.
    // The demo catalog (100 units of the hot SKU) and most shoppers after it: it sells out
    // mid-run, which is where the races oversell.
    let Some((out, _)) = load_two_replicas("replicas_naive", "textbook-naive", "demo", "hot=0.7")
    else {
        return;
    };
    let text = say(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let oversell = text
        .lines()
        .find(|l| l.contains("no_oversell"))
        .unwrap_or_else(|| panic!("no_oversell judged: {text}"));
    assert!(oversell.contains("violated"), "{oversell}\n{text}");
}

#[test]
fn a_replica_killed_with_sigkill_leaves_the_other_serving_and_loses_nothing() {
    // Proves: with orders placed on both replicas, SIGKILL of one mid-traffic leaves the other
    // answering; every order either replica acknowledged is on the survivor, its key replays
    // the same order there, and every one leaves `created` — its reserve job ran on the
    // survivor's workers, including any job the killed replica had leased (redelivered once
    // its visibility timeout lapsed).
    let Some(url) = database("replicas_kill") else {
        return;
    };
    let dir = dir("replicas_kill");
    let (a, b, p) = (addr(), addr(), addr());
    let _psp = common::start_psp(&dir, p, a);
    let _a = replica(&dir, &url, a, p, "reference", "load");
    let mut killed = replica(&dir, &url, b, p, "reference", "load");

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        std::thread::spawn(move || {
            for n in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let key = format!("k-{n}");
                // Alternate replicas; once B is gone, its turns fail and A keeps answering.
                let target = if n % 2 == 0 { a } else { b };
                if let Ok((202, _, body)) = place(target, &key) {
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((key, field(&body, "order_id")));
                }
            }
        })
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(60);
    killed.0.kill().expect("SIGKILL");
    killed.0.wait().unwrap();
    let before = acknowledged.lock().unwrap().len();
    wait_for(before + 30);
    stop.store(true, Ordering::SeqCst);
    traffic.join().expect("the client ends");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= before + 30,
        "A kept serving after B was killed: {} then {}",
        before,
        acknowledged.len()
    );
    common::assert_kept_and_replayed(a, &acknowledged);
    let waiting = common::orders_never_done(a, &acknowledged, Duration::from_secs(90), |s| {
        s != "created"
    });
    assert!(
        waiting.is_empty(),
        "orders whose jobs never ran after the kill: {waiting:?}"
    );
}

fn pay(shop: SocketAddr, order: &str, key: &str) -> std::io::Result<(u16, String, String)> {
    common::http(
        shop,
        &format!(
            "POST /v1/orders/{order}/pay HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\
             idempotency-key: {key}\r\ncontent-length: 0\r\n\r\n"
        ),
    )
}

#[test]
fn a_pay_key_in_flight_on_a_killed_replica_is_free_on_the_survivor_within_seconds() {
    // Proves: a buyer whose `/pay` was in flight on replica B when B was killed (B's PSP never
    // answers, so the request holds its key) can pay with the same key on replica A within a
    // few seconds — A's reaper frees what B held once B's connection is gone — not only after
    // the key's 30 s in-flight timeout, three carts' holds of 10 s, as before.
    let Some(url) = database("replicas_pay_key") else {
        return;
    };
    let dir = dir("replicas_pay_key");
    let (a, b, p) = (addr(), addr(), addr());
    // B's PSP: accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _psp = common::start_psp(&dir, p, a);
    let _a = replica(&dir, &url, a, p, "reference", "load");
    let mut killed = replica(
        &dir,
        &url,
        b,
        hole.local_addr().unwrap(),
        "reference",
        "load",
    );
    let (status, _, body) = place(a, "buyer-1").unwrap();
    assert_eq!(status, 202, "{body}");
    let order = field(&body, "order_id");
    let payable = common::orders_never_done(
        a,
        &[("buyer-1".into(), order.clone())],
        Duration::from_secs(30),
        |s| s == "inventory_reserved" || s == "payment_pending",
    );
    assert!(payable.is_empty(), "{order} never became payable");
    let stuck = {
        let order = order.clone();
        std::thread::spawn(move || pay(b, &order, "pay-buyer-1"))
    };
    std::thread::sleep(Duration::from_millis(800));
    let (status, _, body) = pay(a, &order, "pay-buyer-1").unwrap();
    assert_eq!(status, 409, "B holds the key in flight: {body}");
    killed.0.kill().expect("SIGKILL");
    killed.0.wait().unwrap();
    let _ = stuck.join();
    let killed_at = Instant::now();
    let mut answers = Vec::new();
    let paid = loop {
        let (status, _, body) = pay(a, &order, "pay-buyer-1").unwrap();
        answers.push(status);
        if status != 409 || killed_at.elapsed() > Duration::from_secs(25) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let waited = killed_at.elapsed();
    assert_eq!(paid.0, 200, "paid on A: {}", paid.1);
    assert!(
        waited < Duration::from_secs(10),
        "the key was free on A {waited:?} after B died (answers {answers:?})"
    );
}
