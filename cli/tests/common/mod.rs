//! Helpers the CLI's end-to-end tests share: run the binary, a fresh output
//! folder, and what a run printed.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `stampede args…` to completion.
pub fn stampede(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `stampede load args… extra… --out out`.
pub fn load(args: &[&str], extra: &[&str], out: &Path) -> Output {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    all.extend_from_slice(extra);
    all.extend_from_slice(&["--out", out.to_str().expect("a UTF-8 path")]);
    stampede(&all)
}

/// An empty (not yet created) folder named `name` under the target's temp dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What a run printed, both streams, for assertion messages.
pub fn say(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange on a fresh connection: (status, lower-cased head, body).
pub fn http(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String, String)> {
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

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n"),
    )
}

pub fn place(addr: SocketAddr, key: &str) -> std::io::Result<(u16, String, String)> {
    let body = r#"{"customer_id":"alice","items":[{"sku":"tshirt-black","qty":1}]}"#;
    http(
        addr,
        &format!(
            "POST /v1/orders HTTP/1.1\r\nhost: shop\r\nconnection: close\r\ncontent-type: application/json\r\nidempotency-key: {key}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

pub fn field(body: &str, name: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
        .to_string()
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(args: &[&str], log: &Path) -> Killed {
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

/// A `stampede psp` on `psp` sending webhooks to `shop`, answering once started (log in
/// `dir/psp.log`).
pub fn start_psp(dir: &Path, psp: SocketAddr, shop: SocketAddr) -> Killed {
    start_psp_with(dir, psp, shop, &[])
}

/// [`start_psp`] with `extra` options (e.g. `--webhook-secret`).
pub fn start_psp_with(dir: &Path, psp: SocketAddr, shop: SocketAddr, extra: &[&str]) -> Killed {
    let log = dir.join("psp.log");
    let (psp_addr, shop_addr) = (psp.to_string(), shop.to_string());
    let mut args = vec!["psp", "--addr", &psp_addr, "--webhook", &shop_addr];
    args.extend_from_slice(extra);
    let child = spawn(&args, &log);
    wait_ready(psp, "/v1/ledger", &log);
    child
}

/// Waits (bounded) until `addr` answers HTTP.
pub fn wait_ready(addr: SocketAddr, path: &str, log: &Path) {
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

/// Every acknowledged `(key, order)` is at `shop`, and replaying its key
/// answers the same order, marked replayed.
pub fn assert_kept_and_replayed(shop: SocketAddr, acknowledged: &[(String, String)]) {
    for (key, order) in acknowledged {
        let (status, _, body) = get(shop, &format!("/v1/orders/{order}")).unwrap();
        assert_eq!(status, 200, "{order} (key {key}) at {shop}: {body}");
        let (status, head, body) = place(shop, key).unwrap();
        assert_eq!(status, 202, "{key} replayed: {body}");
        assert!(head.contains("idempotent-replayed: true"), "{key}: {head}");
        assert_eq!(&field(&body, "order_id"), order, "{key} answers its order");
    }
}

/// Polls `shop` (bounded by `within`) until every order's status satisfies
/// `done`; answers the orders that never did.
pub fn orders_never_done(
    shop: SocketAddr,
    acknowledged: &[(String, String)],
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + within;
    let mut waiting = acknowledged.to_vec();
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|(_, order)| {
            let (_, _, body) = get(shop, &format!("/v1/orders/{order}")).unwrap();
            !done(&field(&body, "status"))
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    waiting
}

/// A JSON file, parsed (panics naming the file).
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (seed, trace hash, passed) of every run in a sweep summary, sorted.
pub fn runs_of(summary: &serde_json::Value) -> Vec<(u64, String, bool)> {
    let mut runs: Vec<_> = summary["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["seed"].as_u64().unwrap(),
                r["trace_hash"].as_str().unwrap().to_string(),
                r["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    runs.sort();
    runs
}
