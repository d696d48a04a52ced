//! `stampede serve` on its default store survives `kill -9`: the issue's
//! test with real child processes. A shop (SQLite at a path of the test's)
//! and a separate fake PSP (so payment intents outlive the shop) start; a
//! client places orders with keys as fast as the shop answers; the shop is
//! killed with SIGKILL mid-traffic and started again on the same file.
//! Then every order the client was told about is there, replaying its key
//! answers the same order, and its jobs resume (each order leaves `created`
//! and reaches `payment_pending`, which takes the reserve and create-intent
//! jobs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange on a fresh connection: (status, lower-cased head, body).
fn http(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n"),
    )
}

fn place(addr: SocketAddr, key: &str) -> std::io::Result<(u16, String, String)> {
    let body = r#"{"customer_id":"alice","items":[{"sku":"tshirt-black","qty":1}]}"#;
    http(
        addr,
        &format!(
            "POST /v1/orders HTTP/1.1\r\nhost: shop\r\nconnection: close\r\ncontent-type: application/json\r\nidempotency-key: {key}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn field(body: &str, name: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
        .to_string()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], log: &Path) -> Killed {
    let log = std::fs::File::create(log).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_stampede"))
            .args(args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the binary runs"),
    )
}

/// Waits (bounded) until `addr` answers HTTP.
fn wait_ready(addr: SocketAddr, path: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(addr, path).is_ok_and(|(status, ..)| status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{addr} never answered: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn serve(dir: &Path, shop: SocketAddr, psp: SocketAddr, log: &str) -> Killed {
    let db = dir.join("shop.db");
    let log = dir.join(log);
    let child = spawn(
        &[
            "serve",
            "--addr",
            &shop.to_string(),
            "--psp",
            &psp.to_string(),
            "--store",
            &format!("sqlite:{}", db.display()),
            "--workers",
            "2",
        ],
        &log,
    );
    wait_ready(shop, "/v1/products", &log);
    child
}

fn dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_acknowledged_order_survives_kill_minus_nine_and_its_jobs_resume() {
    let dir = dir("durable-serve");
    let (shop, psp) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let psp_log = dir.join("psp.log");
    let _psp = spawn(
        &[
            "psp",
            "--addr",
            &psp.to_string(),
            "--webhook",
            &shop.to_string(),
        ],
        &psp_log,
    );
    wait_ready(psp, "/v1/ledger", &psp_log);
    let mut first = serve(&dir, shop, psp, "serve-1.log");

    // Traffic: keys k-0, k-1, … until the shop stops answering; the client
    // remembers what it was told.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        std::thread::spawn(move || {
            for n in 0..10_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let key = format!("k-{n}");
                match place(shop, &key) {
                    Ok((202, _, body)) => acknowledged
                        .lock()
                        .unwrap()
                        .push((key, field(&body, "order_id"))),
                    Ok((status, _, body)) => panic!("{key}: {status} {body}"),
                    Err(_) => break,
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    first.0.kill().expect("SIGKILL");
    first.0.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    traffic.join().expect("the client ends");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 40,
        "{} orders before the kill",
        acknowledged.len()
    );

    let _second = serve(&dir, shop, psp, "serve-2.log");
    for (key, order) in &acknowledged {
        let (status, _, body) = get(shop, &format!("/v1/orders/{order}")).unwrap();
        assert_eq!(status, 200, "{order} (key {key}) after the restart: {body}");
        let (status, head, body) = place(shop, key).unwrap();
        assert_eq!(status, 202, "{key} replayed: {body}");
        assert!(head.contains("idempotent-replayed: true"), "{key}: {head}");
        assert_eq!(&field(&body, "order_id"), order, "{key} answers its order");
    }
    // Jobs resume: every order gets its stock reserved and its intent created.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = acknowledged.clone();
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|(_, order)| {
            let (_, _, body) = get(shop, &format!("/v1/orders/{order}")).unwrap();
            field(&body, "status") != "payment_pending"
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        waiting.is_empty(),
        "orders whose jobs did not resume: {waiting:?}\n{}",
        std::fs::read_to_string(dir.join("serve-2.log")).unwrap_or_default()
    );
}
