//! `stampede serve`, `stampede psp` and `stampede designs`: the shop and the
//! fake PSP served for real, and the list of designs they can be built with.

use crate::{admission, load, run, unix_now_ms};
use clap::Args;
use stampede_server::psp::{self, Psp, PspConfig, WebhookTarget};
use stampede_server::store::sqlite::{SqliteOptions, SyncLevel};
use stampede_server::{Clock, Connector, PRESETS, PspMode, SWITCHES, Sabotage, StackConfig};
use std::net::SocketAddr;
use std::sync::Arc;

/// `stampede serve`'s default hold, seconds: the same as the shop `stampede
/// load` starts ([`load::LOAD_RESERVATION_TTL_MS`]), so a served shop under
/// `load --host` or `conform` settles within their default settle time.
pub const SERVE_RESERVATION_TTL_SECS: u64 = load::LOAD_RESERVATION_TTL_MS / 1000;

/// `stampede serve`'s options.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Design preset: reference, seed-repo or textbook-naive (see `stampede designs`).
    #[arg(long, default_value = "reference")]
    pub design: String,
    /// Override one switch, e.g. --set inventory=read-then-write (repeatable).
    #[arg(long = "set", value_name = "SWITCH=VALUE")]
    pub set: Vec<String>,
    /// `embedded` to run the fake PSP in-process, or the host:port of one started with `stampede psp`.
    #[arg(long, default_value = "embedded", value_parser = parse_psp)]
    pub psp: String,
    /// Job worker tasks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Seed for the PSP's webhook faults and the workers' jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long an unpaid order holds its stock (the reservation's time-to-live), seconds.
    /// The default, 10, is the hold of the shop `stampede load` starts: short enough that a load
    /// or `stampede conform` run sees abandoned checkouts lapse and the shop settle before its
    /// audit (tell `load --host`/`conform` with `--hold 10s`). A production-like hold is minutes
    /// (e.g. 900); a load against such a shop needs `--hold 15m`, and waits that long to audit.
    #[arg(long, default_value_t = SERVE_RESERVATION_TTL_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reservation_ttl_secs: u64,
    /// Bearer token for /admin/restock and /admin/audit: 8 to 256 visible ASCII characters.
    #[arg(long, default_value = "stampede-admin", value_parser = parse_admin_token)]
    pub admin_token: String,
    /// The secret the shop checks each webhook's Psp-Signature with (HMAC-SHA256), 8 to 256
    /// visible ASCII characters; the embedded PSP signs with it, and a `stampede psp` the shop
    /// is pointed at must be given the same. The default is public: set your own wherever
    /// the shop is reachable by others.
    #[arg(long, default_value = WEBHOOK_SECRET_DEFAULT, value_parser = parse_admin_token)]
    pub webhook_secret: String,
    /// Where the shop keeps its state: sqlite:PATH (durable: every acknowledged change
    /// survives a crash; an existing file is resumed), sqlite (= sqlite:stampede-data/shop.db),
    /// postgres://user:password@host:port/database (durable and shared: start several
    /// replicas on one database; an empty database gets Stampede's tables, an existing
    /// Stampede database is joined) or memory (fastest; lost when the process ends).
    #[arg(long, default_value = "sqlite", value_parser = stampede_server::StoreChoice::parse)]
    pub store: stampede_server::StoreChoice,
    /// SQLite sync level: full (a reply waits until its commit is on disk: survives power
    /// loss) or normal (survives a crash of the process, not of the machine).
    #[arg(long, default_value = "full", value_parser = parse_sync)]
    pub sync: SyncLevel,
    /// Most commands the SQLite store commits in one transaction (group commit); 1 commits,
    /// and syncs, each command on its own.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub sqlite_batch: u32,
    /// What is for sale when the store is new: demo (a small shop with a scarce sneaker drop)
    /// or load (what `stampede load` starts: 500 units of the hot SKU, plenty of the rest).
    /// A store that already exists keeps the catalog and stock it has.
    #[arg(long, default_value = "demo", value_parser = ["demo", "load"])]
    pub catalog: String,
    #[command(flatten)]
    pub admission: admission::AdmissionArgs,
    /// Stop, as on SIGTERM, once standard input is closed: a supervisor that starts the shop
    /// with a pipe on its stdin and keeps the other end is outlived by nothing — when it
    /// exits, even killed with SIGKILL, the pipe closes and the shop stops.
    /// `stampede load --kill-every` starts its shop so.
    #[arg(long)]
    pub stop_when_stdin_closes: bool,
}

/// `stampede psp`'s options.
#[derive(Args)]
pub struct PspArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
    /// host:port of the shop that receives webhooks at /v1/webhooks/psp.
    #[arg(long, value_parser = crate::load::host_port)]
    pub webhook: Option<String>,
    /// Probability that an event is delivered more than once (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_probability: f64,
    /// Most extra copies of a duplicated event.
    #[arg(long, default_value_t = 2)]
    pub max_extra_copies: u32,
    /// Largest random delivery delay in ms (delays reorder events).
    #[arg(long, default_value_t = 50)]
    pub delay_ms_max: u64,
    /// Seed for the delivery faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The secret webhooks are signed with (`stampede serve --webhook-secret`), 8 to 256
    /// visible ASCII characters.
    #[arg(long, default_value = WEBHOOK_SECRET_DEFAULT, value_parser = parse_admin_token)]
    pub webhook_secret: String,
}

/// The webhook secret `serve`, `psp` and `conform` share unless told otherwise (public: the
/// shop's default, [`stampede_server::ServerConfig`]).
pub const WEBHOOK_SECRET_DEFAULT: &str = "whsec_stampede_dev";

/// What reopening freed of the last process's, for the start line.
fn released(keys: u64, leases: u64) -> String {
    let mut said = String::new();
    if keys > 0 {
        said += &format!("; {keys} idempotency keys it left in flight freed");
    }
    if leases > 0 {
        said += &format!("; {leases} job leases it held ended");
    }
    said
}

/// Reads `serve --psp`: `embedded`, or a host:port (see [`crate::load::host_port`]).
fn parse_psp(text: &str) -> Result<String, String> {
    match text {
        "embedded" => Ok(text.to_string()),
        _ => crate::load::host_port(text).map_err(|e| format!("{e}, or embedded")),
    }
}

/// Reads `--admin-token` and `--webhook-secret`: never empty (an empty token would let anyone
/// in).
pub fn parse_admin_token(text: &str) -> Result<String, String> {
    let visible = text.bytes().all(|b| b.is_ascii_graphic());
    if (8..=256).contains(&text.len()) && visible {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{} characters: a token is 8 to 256 visible ASCII characters (no spaces)",
            text.len()
        ))
    }
}

/// Reads `full` or `normal` (`--sync`).
pub fn parse_sync(text: &str) -> Result<SyncLevel, String> {
    SyncLevel::parse(text).ok_or_else(|| format!("{text:?}: write full or normal"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Serves the shop until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<u8, String> {
    let spec = run::DesignSpec::new(&args.design, &args.set)?;
    crate::descriptor_limit();
    let mut config = StackConfig::demo(args.addr, unix_now_ms());
    config.server.design = spec.design;
    config.server.admin_token = args.admin_token;
    config.server.webhook_secret = args.webhook_secret.into_bytes();
    config.workers = args.workers;
    config.seed = args.seed;
    config.shop.reservation_ttl_ms = Some(args.reservation_ttl_secs * 1000);
    args.admission.configure(&mut config);
    if args.psp != "embedded" {
        config.psp = PspMode::Remote(args.psp);
    }
    if args.catalog == "load" {
        config.catalog = load::load_catalog();
    }
    config.store = match args.store {
        stampede_server::StoreChoice::Sqlite(options) => {
            stampede_server::StoreChoice::Sqlite(SqliteOptions {
                sync: args.sync,
                max_batch: args.sqlite_batch as usize,
                ..options
            })
        }
        memory => memory,
    };
    let stdin_closed = args.stop_when_stdin_closes.then(stdin_closed);
    runtime()?.block_on(run_serve(config, stdin_closed))
}

/// Resolves once standard input reaches its end (or cannot be read). Read on
/// a thread of its own, left behind when the process exits: a read the
/// async runtime ran would keep it from shutting down.
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (closed, on_close) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 256];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = closed.send(());
    });
    on_close
}

/// Serves the fake PSP alone until Ctrl-C or SIGTERM.
pub fn psp(args: PspArgs) -> Result<u8, String> {
    crate::descriptor_limit();
    let config = PspConfig {
        seed: args.seed,
        webhook: args.webhook.map(|addr| WebhookTarget {
            addr,
            path: stampede_server::WEBHOOK_PATH.into(),
        }),
        duplicate_probability: args.duplicate_probability,
        max_extra_copies: args.max_extra_copies,
        delay_ms_max: args.delay_ms_max,
        // Signed with the secret `stampede serve` checks (the same default), so a shop
        // started with `--psp` pointing here accepts its webhooks.
        secret: args.webhook_secret.into_bytes(),
        // Started again, its ids go on past the ones a running shop has seen.
        id_base: stampede_server::psp::id_base_at(unix_now_ms()),
        ..PspConfig::default()
    };
    runtime()?.block_on(run_psp(args.addr, config))?;
    Ok(0)
}

/// Prints the design list; a closed pipe (e.g. `| head`) just ends the output.
pub fn designs() -> Result<u8, String> {
    use std::io::Write;
    let switches: Vec<stampede_reports::SwitchRow<'_>> = SWITCHES
        .iter()
        .map(|s| stampede_reports::SwitchRow {
            name: s.name,
            values: s.values,
            mistake: s.mistake,
        })
        .collect();
    let sabotage: Vec<(&str, &str)> = Sabotage::ALL
        .iter()
        .map(|s| (s.as_str(), s.breaks()))
        .collect();
    let text = stampede_reports::render_designs(PRESETS, &switches, &sabotage);
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing to stdout: {e}"))
        }
        _ => Ok(0),
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM (what `kill`, a container runtime or
/// a service manager sends to stop a process): either stops the process
/// gracefully. Both are listened for from the call on (inside a runtime), not
/// from the first poll, so a signal that comes before it is awaited is not
/// met by the default action.
fn wait_for_stop() -> impl std::future::Future<Output = ()> {
    let interrupt = listen(tokio::signal::unix::SignalKind::interrupt(), "Ctrl-C");
    let term = terminated();
    async move {
        tokio::select! {
            biased;
            () = interrupt => {}
            () = term => {}
        }
    }
}

/// Resolves on SIGTERM, listened for from the call on (inside a runtime);
/// never if it cannot be listened for (said on stderr).
pub(crate) fn terminated() -> impl std::future::Future<Output = ()> {
    listen(tokio::signal::unix::SignalKind::terminate(), "SIGTERM")
}

/// Resolves when `kind` arrives; its handler is installed at the call.
fn listen(
    kind: tokio::signal::unix::SignalKind,
    name: &'static str,
) -> impl std::future::Future<Output = ()> {
    let signal = tokio::signal::unix::signal(kind);
    async move {
        match signal {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                eprintln!("cannot listen for {name} ({error})");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Resolves once `stdin_closed` does; never without one.
async fn supervisor_gone(stdin_closed: Option<tokio::sync::oneshot::Receiver<()>>) {
    match stdin_closed {
        Some(closed) => {
            let _ = closed.await;
        }
        None => std::future::pending().await,
    }
}

/// What `serve` prints once the shop answers: where, on what store, what it kept, its design.
fn say_started(
    stack: &stampede_server::Stack,
    store: &stampede_server::StoreChoice,
    design: stampede_server::Design,
) {
    println!(
        "shop listening on http://{}  (psp at http://{})",
        stack.shop_addr, stack.psp_addr
    );
    match (store, stack.opened.as_ref()) {
        (stampede_server::StoreChoice::Sqlite(options), Some(opened)) => println!(
            "state in {} (sqlite, sync={}): {}",
            options.path.display(),
            options.sync,
            if opened.created {
                "a new shop".to_string()
            } else {
                format!(
                    "resumed {} orders ({} logged commands re-applied{})",
                    opened.orders,
                    opened.replayed,
                    released(opened.keys_released, opened.leases_released)
                )
            }
        ),
        (stampede_server::StoreChoice::Postgres(options), Some(opened)) => println!(
            "state in {} (postgres, shared with any other replica on it): {}",
            options.redacted(),
            if opened.created {
                "a new shop".to_string()
            } else {
                format!(
                    "joined a shop of {} orders ({} logged commands re-applied)",
                    opened.orders, opened.replayed
                )
            }
        ),
        _ => println!("state in memory (lost when this process ends)"),
    }
    for setting in &stack.kept_settings {
        println!(
            "note: {setting}: a shop's settings are part of its store, set when it was created (start on a new --store to change them)"
        );
    }
    if design != stampede_server::Design::reference() {
        println!(
            "design {}: deliberate mistakes switched on (see `stampede designs`); not the reference",
            design.label()
        );
    }
    println!("try: curl -s http://{}/v1/products", stack.shop_addr);
}

async fn run_serve(
    config: StackConfig,
    stdin_closed: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<u8, String> {
    let store = config.store.clone();
    let design = config.server.design;
    // Listening before the shop says it is up: a stop sent right after that
    // line is graceful too.
    let stop = wait_for_stop();
    let stack = stampede_server::start(config)
        .await
        .map_err(|e| format!("cannot start the shop: {e}"))?;
    say_started(&stack, &store, design);
    let failed = tokio::select! {
        biased;
        () = stop => None,
        () = supervisor_gone(stdin_closed) => {
            println!("standard input closed (--stop-when-stdin-closes)");
            None
        }
        why = store_failure(&stack) => Some(why),
    };
    if let Some(why) = &failed {
        eprintln!("error: {why}; the shop cannot serve again on this store, so it stops");
    }
    println!("shutting down (requests in flight finish; a second Ctrl-C or SIGTERM stops at once)");
    let closing = tokio::select! {
        biased;
        closed = stack.shutdown_checked() => closed,
        // Safe as a crash is: every answer the shop gave was committed first.
        () = wait_for_stop() => {
            println!("stopped at once");
            Ok(())
        }
    };
    match closing {
        Err(why) if failed.is_none() => {
            eprintln!("error: the store did not close cleanly: {why}");
            Ok(1)
        }
        _ => Ok(if failed.is_some() { 1 } else { 0 }),
    }
}

/// How often `serve` looks whether its store has stopped for good, ms.
const STORE_LOOK_MS: u64 = 500;

/// Resolves with why once the stack's store has stopped for good.
async fn store_failure(stack: &stampede_server::Stack) -> String {
    let mut look = tokio::time::interval(std::time::Duration::from_millis(STORE_LOOK_MS));
    loop {
        look.tick().await;
        if let Some(why) = stack.store.failed() {
            return why;
        }
    }
}

async fn run_psp(addr: SocketAddr, config: PspConfig) -> Result<(), String> {
    let clock = Clock::tokio(unix_now_ms());
    let psp = Psp::new(config, clock, Connector::tokio()).map_err(|e| e.to_string())?;
    let listener =
        stampede_server::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!(
        "psp listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let delivery = tokio::spawn(Arc::clone(&psp).run_delivery());
    let served =
        stampede_server::serve_router(listener, psp::router(Arc::clone(&psp)), wait_for_stop())
            .await;
    delivery.abort();
    let left = psp.delivery_stats();
    let undelivered = left.scheduled + left.in_flight;
    if undelivered > 0 {
        println!(
            "stopped with {undelivered} webhook deliveries not yet made (the shop's reconciler asks the PSP for what it missed; this PSP's intents are gone with it)"
        );
    }
    served.map_err(|e| format!("psp stopped: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_webhook_secret_is_the_shops_own() {
        // Proves: `serve`, `psp` and `conform` agree with the shop's built-in secret unless told.
        assert_eq!(
            WEBHOOK_SECRET_DEFAULT.as_bytes(),
            stampede_server::ServerConfig::default().webhook_secret
        );
    }

    #[test]
    fn an_admin_token_is_8_to_256_visible_characters() {
        // Proves: an empty token (which would open the admin routes to anyone), a short one, a
        // long one and one with a space are refused; the bounds themselves pass.
        for bad in [
            String::new(),
            "a".repeat(7),
            "a".repeat(257),
            "has space1".into(),
        ] {
            assert!(parse_admin_token(&bad).is_err(), "{bad:?}");
        }
        for good in ["a".repeat(8), "a".repeat(256), "stampede-admin".into()] {
            assert_eq!(parse_admin_token(&good).unwrap(), good);
        }
    }

    #[test]
    fn the_psp_is_embedded_or_a_host_and_port() {
        // Proves: `--psp embedded` and a host:port (with or without http://) are taken; a name
        // with no port, a port out of range and a path are refused, naming both forms.
        assert_eq!(parse_psp("embedded").as_deref(), Ok("embedded"));
        assert_eq!(
            parse_psp("http://127.0.0.1:8081/").as_deref(),
            Ok("127.0.0.1:8081")
        );
        assert_eq!(parse_psp("psp:1").as_deref(), Ok("psp:1"));
        for refused in ["embeded", "psp", "psp:0", "psp:8081/v1"] {
            let error = parse_psp(refused).unwrap_err();
            assert!(error.ends_with("or embedded"), "{refused}: {error}");
        }
    }
}
