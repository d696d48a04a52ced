//! `stampede conform`: a black-box conformance run against any checkout
//! service that implements the published contract (`/openapi.json`):
//! idempotency (replay, reuse refused, the key required, concurrent duplicates
//! make one order), bad inputs refused as problem+json without using up the
//! key, forged and stale webhooks refused, and a small flash sale judged by
//! the real-traffic audit. Each check is named; the result is a pass/fail
//! table (`stampede-reports` renders it for the terminal and Markdown; JSON is
//! the `Conformance` itself) and the exit code 0 (all pass), 1 (some
//! fail) or 2 (the run could not be made).

use stampede_reports::{Check, Conformance};
use stampede_server::{Connector, HttpClient, HttpResponse};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Concurrent copies of one request in the concurrent-duplicates check.
const CONCURRENT_COPIES: usize = 8;
/// Most rounds of concurrent copies the concurrent-duplicates check sends.
const CONCURRENT_ROUNDS: usize = 4;
/// How long one request may take, ms.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// How old a webhook signature the stale check sends, s (the contract allows 300).
const STALE_SIGNATURE_S: u64 = 3_600;

/// What `conform` was asked to do.
#[derive(clap::Args)]
pub struct ConformArgs {
    /// The checkout service under test, host:port or http://host:port.
    #[arg(long, value_parser = crate::load::host_port)]
    pub host: String,
    /// Its payment provider (a `stampede psp`), host:port or http://host:port: the flash sale
    /// pays there and the audit reads its ledger.
    #[arg(long, value_parser = crate::load::host_port)]
    pub psp: String,
    /// The shared secret the service verifies Psp-Signature with (to sign the stale webhook
    /// correctly, so only its age is wrong).
    #[arg(long, default_value = crate::serve::WEBHOOK_SECRET_DEFAULT)]
    pub webhook_secret: String,
    /// Bearer token of the service's /admin/audit (for the flash sale's audit): 8 to 256 visible
    /// characters, as `serve` takes it.
    #[arg(long, default_value = "stampede-admin", value_parser = crate::serve::parse_admin_token)]
    pub admin_token: String,
    /// How long the flash sale runs: 1s to 24h, as `stampede load --duration`.
    #[arg(long, default_value = "5s", value_parser = crate::load::parse_load_duration)]
    pub flash_sale: Duration,
    /// The service's hold (how long an unpaid order keeps its stock), e.g. 10s for `stampede
    /// serve`'s default: the flash sale's audit holds it to that promise and waits for carts
    /// abandoned in the sale to lapse (see `stampede load --hold`). Without it the hold is
    /// unknown, and carts held past the audit are judged stuck. With it, the `hold.kept` check
    /// also pays one order 60% into the hold (so conform waits that long) and expects it
    /// confirmed. 1ms to 60m.
    #[arg(long, value_name = "DURATION", value_parser = crate::load::parse_hold)]
    pub hold: Option<Duration>,
    /// Where conform.md, conform.json and the flash sale's load report go
    /// [default: stampede-out/conform].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON result instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A client of the service under test.
struct Client {
    http: HttpClient,
    host: String,
    /// Makes every key and customer of this run unique.
    run: String,
}

impl Client {
    async fn post(&self, path: &str, headers: &[(&str, String)], body: &str) -> HttpResponse {
        self.post_as("application/json", path, headers, body).await
    }

    /// `post` with the body declared as `media`.
    async fn post_as(
        &self,
        media: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> HttpResponse {
        let mut all = vec![("content-type", media.to_string())];
        all.extend(headers.iter().cloned());
        self.http
            .send(
                &self.host,
                hyper::Method::POST,
                path,
                &all,
                Some(bytes::Bytes::from(body.to_string())),
            )
            .await
            .unwrap_or_else(|e| HttpResponse {
                status: hyper::StatusCode::from_u16(599).expect("valid"),
                headers: Default::default(),
                body: bytes::Bytes::from(format!("no answer: {e}")),
            })
    }

    /// `POST /v1/orders` with `key` (if any) and `body`.
    async fn order(&self, key: Option<&str>, body: &str) -> HttpResponse {
        let headers: Vec<(&str, String)> = key
            .map(|k| vec![("idempotency-key", k.to_string())])
            .unwrap_or_default();
        self.post("/v1/orders", &headers, body).await
    }

    fn key(&self, name: &str) -> String {
        format!("conform-{}-{name}", self.run)
    }

    /// A valid order body for customer `who` buying one `sku`.
    fn body(&self, who: &str, sku: &str) -> String {
        serde_json::json!({
            "customer_id": format!("conform-{}-{who}", self.run),
            "items": [{ "sku": sku, "qty": 1 }],
        })
        .to_string()
    }
}

fn order_id(r: &HttpResponse) -> Option<String> {
    r.json::<serde_json::Value>()
        .ok()?
        .get("order_id")?
        .as_str()
        .map(str::to_string)
}

fn is_problem(r: &HttpResponse) -> bool {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

fn seen(r: &HttpResponse) -> String {
    let body = String::from_utf8_lossy(&r.body);
    let short: String = body.chars().take(120).collect();
    format!("{} {short}", r.status.as_u16())
}

fn check(name: &'static str, passed: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        passed,
        detail: detail.into(),
    }
}

/// The SKU the checks buy: the catalog's product with the most units.
/// The payment provider answers HTTP with its ledger: without it the flash
/// sale cannot be paid nor audited, so the run could not be made (exit 2).
async fn psp_answers(http: &HttpClient, psp: &str) -> Result<(), String> {
    let r = http
        .get(psp, "/v1/ledger")
        .await
        .map_err(|e| format!("--psp {psp}: GET /v1/ledger: {e}"))?;
    if !r.status.is_success() {
        return Err(format!(
            "--psp {psp}: GET /v1/ledger answered {}; is it a stampede psp?",
            r.status
        ));
    }
    Ok(())
}

async fn pick_sku(client: &Client) -> Result<String, String> {
    let r = client
        .http
        .get(&client.host, "/v1/products")
        .await
        .map_err(|e| format!("{}: GET /v1/products: {e}", client.host))?;
    let list: serde_json::Value = r
        .json()
        .map_err(|e| format!("GET /v1/products is not JSON ({e}): {}", seen(&r)))?;
    list["data"]
        .as_array()
        .and_then(|products| {
            products
                .iter()
                .max_by_key(|p| p["available"].as_u64().unwrap_or(0))
        })
        .and_then(|p| p["sku"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("GET /v1/products lists no product: {}", seen(&r)))
}

async fn idempotency(client: &Client, sku: &str, checks: &mut Vec<Check>) {
    let key = client.key("replay");
    let body = client.body("replay", sku);
    let first = client.order(Some(&key), &body).await;
    let again = client.order(Some(&key), &body).await;
    let replayed = again
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let same = order_id(&first).is_some() && order_id(&first) == order_id(&again);
    checks.push(check(
        "idempotency.replay",
        first.status == 202 && again.status == 202 && same && replayed,
        format!(
            "first {}, again {} (Idempotent-Replayed: {replayed})",
            seen(&first),
            seen(&again)
        ),
    ));
    let other = client
        .order(Some(&key), &client.body("someone-else", sku))
        .await;
    checks.push(check(
        "idempotency.key-reuse",
        other.status == 422 && is_problem(&other),
        format!("the key with another body: {}", seen(&other)),
    ));
    let keyless = client.order(None, &client.body("keyless", sku)).await;
    checks.push(check(
        "idempotency.key-required",
        keyless.status == 400 && is_problem(&keyless),
        format!("no Idempotency-Key: {}", seen(&keyless)),
    ));
    concurrent_duplicates(client, sku, checks).await;
}

/// Rounds of [`CONCURRENT_COPIES`] copies at once, each round under a fresh key, until one
/// makes more than one order or gets an answer other than 202 or 409: a race one round may
/// miss is caught within a few (a check-then-insert shop made one order in a third of single
/// rounds).
async fn concurrent_duplicates(client: &Client, sku: &str, checks: &mut Vec<Check>) {
    let mut round = 0;
    let (orders, stray) = loop {
        round += 1;
        let key = client.key(&format!("concurrent-{round}"));
        let body = client.body(&format!("concurrent-{round}"), sku);
        let copies = futures_util::future::join_all(
            (0..CONCURRENT_COPIES).map(|_| client.order(Some(&key), &body)),
        )
        .await;
        let mut orders: Vec<String> = copies.iter().filter_map(order_id).collect();
        orders.sort();
        orders.dedup();
        let stray: Vec<String> = copies
            .iter()
            .filter(|r| r.status != 202 && r.status != 409)
            .map(seen)
            .collect();
        if orders.len() != 1 || !stray.is_empty() || round == CONCURRENT_ROUNDS {
            break (orders, stray);
        }
    };
    checks.push(check(
        "idempotency.concurrent-duplicates",
        orders.len() == 1 && stray.is_empty(),
        format!(
            "{CONCURRENT_COPIES} copies at once (round {round} of at most {CONCURRENT_ROUNDS}, a fresh key each) made {} order(s) {orders:?}; others answered 409 in flight{}",
            orders.len(),
            if stray.is_empty() {
                String::new()
            } else {
                format!("; unexpected: {}", stray.join("; "))
            }
        ),
    ));
}

async fn bad_inputs(client: &Client, sku: &str, checks: &mut Vec<Check>) {
    let customer = format!("conform-{}-bad", client.run);
    let cases: [(&'static str, String); 8] = [
        // A valid order, declared as text (sent as `text/plain` below): the contract takes JSON only.
        ("input.not-json", client.body("not-json", sku)),
        ("input.malformed-json", "{\"customer_id\": ".to_string()),
        (
            "input.unknown-field",
            serde_json::json!({"customer_id": customer, "items": [{"sku": sku, "qty": 1}], "coupon": "FREE"}).to_string(),
        ),
        (
            // The price is the catalog's, never the buyer's: an item naming one is refused.
            "input.client-price",
            serde_json::json!({"customer_id": customer, "items": [{"sku": sku, "qty": 1, "price": 1}]}).to_string(),
        ),
        (
            "input.empty-items",
            serde_json::json!({"customer_id": customer, "items": []}).to_string(),
        ),
        (
            "input.zero-qty",
            serde_json::json!({"customer_id": customer, "items": [{"sku": sku, "qty": 0}]}).to_string(),
        ),
        (
            "input.unknown-sku",
            serde_json::json!({"customer_id": customer, "items": [{"sku": "conform-no-such-sku", "qty": 1}]}).to_string(),
        ),
        (
            "input.oversized-body",
            serde_json::json!({"customer_id": customer, "items": [{"sku": sku, "qty": 1}], "pad": "x".repeat(1 << 20)}).to_string(),
        ),
    ];
    for (name, body) in cases {
        // Refused as a 4xx problem, and nothing kept: the same key then places a valid order.
        let key = client.key(name);
        let refused = if name == "input.not-json" {
            let key = [("idempotency-key", key.clone())];
            client
                .post_as("text/plain", "/v1/orders", &key, &body)
                .await
        } else {
            client.order(Some(&key), &body).await
        };
        let after = client.order(Some(&key), &client.body(name, sku)).await;
        let refused_ok = refused.status.is_client_error() && is_problem(&refused);
        checks.push(check(
            name,
            refused_ok && after.status == 202,
            format!(
                "refused {} ({}); the same key then: {}",
                refused.status.as_u16(),
                if is_problem(&refused) {
                    "problem+json"
                } else {
                    "not problem+json"
                },
                after.status.as_u16()
            ),
        ));
    }
}

async fn webhooks(client: &Client, psp: &str, sku: &str, secret: &[u8], checks: &mut Vec<Check>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let event = |n: u32| {
        serde_json::json!({
            "id": format!("evt_conform_{}_{n}", client.run),
            "type": "payment_intent.succeeded",
            "created": now,
            "data": { "intent": format!("pi_conform_{n}"), "order": "ord_1", "amount": 1 },
        })
        .to_string()
    };
    let unsigned = event(1);
    let r = client
        .post(stampede_server::WEBHOOK_PATH, &[], &unsigned)
        .await;
    checks.push(check(
        "webhooks.unsigned",
        r.status.is_client_error(),
        format!("no Psp-Signature: {}", seen(&r)),
    ));
    let forged = event(2);
    let signature = stampede_server::signature::sign(b"not-the-secret", now, forged.as_bytes());
    let r = client
        .post(
            stampede_server::WEBHOOK_PATH,
            &[("psp-signature", signature)],
            &forged,
        )
        .await;
    checks.push(check(
        "webhooks.forged",
        r.status.is_client_error(),
        format!("signed with another secret: {}", seen(&r)),
    ));
    let stale = event(3);
    let then = now.saturating_sub(STALE_SIGNATURE_S);
    let signature = stampede_server::signature::sign(secret, then, stale.as_bytes());
    let r = client
        .post("/v1/webhooks/psp", &[("psp-signature", signature)], &stale)
        .await;
    checks.push(check(
        "webhooks.stale",
        r.status.is_client_error(),
        format!("signed {STALE_SIGNATURE_S} s ago: {}", seen(&r)),
    ));
    checks.push(signed_event(client, psp, sku, secret, now).await);
}

/// `webhooks.signed`, the other side of the three refusals: an order is paid
/// at the PSP, and a fresh event saying so — true, signed now with
/// `--webhook-secret`, under an event id of its own — must be taken (2xx),
/// whether the service applies it or finds it applied already. A service that
/// refuses every webhook, or a `--webhook-secret` that is not the service's,
/// fails it.
async fn signed_event(client: &Client, psp: &str, sku: &str, secret: &[u8], now: u64) -> Check {
    let fail = |detail: String| check("webhooks.signed", false, detail);
    let order = match offered_order(client, sku, "signed").await {
        Ok(order) => order,
        Err(why) => return fail(why),
    };
    let intent = match pay_at_psp(client, psp, &order, "signed-pay").await {
        Ok(intent) => intent,
        Err(why) => return fail(why),
    };
    // The amount as the PSP has it: the event tells what the PSP did.
    let amount = match client
        .http
        .get(psp, &format!("/v1/payment_intents/{intent}"))
        .await
    {
        Ok(r) => r
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v["amount"].as_u64()),
        Err(_) => None,
    };
    let Some(amount) = amount else {
        return fail(format!(
            "the PSP's GET /v1/payment_intents/{intent} gave no amount"
        ));
    };
    let event = serde_json::json!({
        "id": format!("evt_conform_{}_signed", client.run),
        "type": "payment_intent.succeeded",
        "created": now,
        "data": { "intent": intent, "order": order, "amount": amount },
    })
    .to_string();
    let signature = stampede_server::signature::sign(secret, now, event.as_bytes());
    let r = client
        .post(
            stampede_server::WEBHOOK_PATH,
            &[("psp-signature", signature)],
            &event,
        )
        .await;
    check(
        "webhooks.signed",
        r.status.is_success(),
        format!(
            "{intent} paid for {order}, told with --webhook-secret: {} (a 4xx here: is that the service's secret?)",
            seen(&r)
        ),
    )
}

/// How far into the service's hold the `hold.kept` check pays, in percent.
const HOLD_KEPT_PAY_AT_PERCENT: u32 = 60;
/// How often the `hold.kept` check reads its order, ms.
const HOLD_KEPT_LOOK_MS: u64 = 100;
/// Longest the `hold.kept` check waits for its order to be offered, and then
/// confirmed, ms.
const HOLD_KEPT_WAIT_MS: u64 = 15_000;

/// The order's status as `GET /v1/orders/{id}` says it (`None`: no answer).
async fn status_of(client: &Client, order: &str) -> Option<String> {
    let r = client
        .http
        .get(&client.host, &format!("/v1/orders/{order}"))
        .await
        .ok()?;
    let view: serde_json::Value = r.json().ok()?;
    view["status"].as_str().map(str::to_string)
}

/// Reads `order` (every [`HOLD_KEPT_LOOK_MS`], at most
/// [`HOLD_KEPT_WAIT_MS`]) until its status is `wanted`; the last status seen.
async fn wait_for_status(client: &Client, order: &str, wanted: &str) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(HOLD_KEPT_WAIT_MS);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        last = status_of(client, order).await;
        if last.as_deref() == Some(wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(HOLD_KEPT_LOOK_MS)).await;
    }
    last
}

/// `hold.kept` (only with `--hold`): a buyer who pays well inside the hold
/// the service promises — [`HOLD_KEPT_PAY_AT_PERCENT`]% into it, counted from
/// when the buyer is first shown the offer — is charged and confirmed. A
/// service that lets carts go sooner than it says (a shorter hold) fails it;
/// the flash sale's buyers pay at once and would never see that.
async fn hold_kept(client: &Client, psp: &str, sku: &str, hold: Duration) -> Check {
    let fail = |detail: String| check("hold.kept", false, detail);
    let order = match offered_order(client, sku, "hold-kept").await {
        Ok(order) => order,
        Err(why) => return fail(why),
    };
    let wait = hold * HOLD_KEPT_PAY_AT_PERCENT / 100;
    tokio::time::sleep(wait).await;
    if let Err(why) = pay_at_psp(client, psp, &order, "hold-kept-pay").await {
        return fail(format!(
            "paid {} ms into a hold of {} ms: {why} (order now {})",
            wait.as_millis(),
            hold.as_millis(),
            status_of(client, &order)
                .await
                .as_deref()
                .unwrap_or("unknown")
        ));
    }
    let last = wait_for_status(client, &order, "confirmed").await;
    check(
        "hold.kept",
        last.as_deref() == Some("confirmed"),
        format!(
            "paid {} ms into a hold of {} ms; the order then: {}",
            wait.as_millis(),
            hold.as_millis(),
            last.as_deref().unwrap_or("unknown")
        ),
    )
}

/// Places one order of `sku` under a key named `name` and waits (bounded)
/// until it is offered payment; its id, or what went wrong.
async fn offered_order(client: &Client, sku: &str, name: &str) -> Result<String, String> {
    let placed = client
        .order(Some(&client.key(name)), &client.body(name, sku))
        .await;
    let Some(order) = order_id(&placed) else {
        return Err(format!("the order was not accepted: {}", seen(&placed)));
    };
    let offered = wait_for_status(client, &order, "payment_pending").await;
    if offered.as_deref() != Some("payment_pending") {
        return Err(format!("{order} was not offered payment: last {offered:?}"));
    }
    Ok(order)
}

/// Starts payment of `order` (`POST /v1/orders/{order}/pay`, a key named
/// `key`) and confirms the intent at the PSP with a card that pays; the
/// intent's id, or what went wrong.
async fn pay_at_psp(client: &Client, psp: &str, order: &str, key: &str) -> Result<String, String> {
    let pay = client
        .http
        .send(
            &client.host,
            hyper::Method::POST,
            &format!("/v1/orders/{order}/pay"),
            &[("idempotency-key", client.key(key))],
            None,
        )
        .await
        .map_err(|e| format!("POST /v1/orders/{order}/pay: no answer: {e}"))?;
    let started: Option<serde_json::Value> = pay.json().ok();
    let (Some(intent), Some(secret)) = (
        started.as_ref().and_then(|v| v["intent_id"].as_str()),
        started.as_ref().and_then(|v| v["client_secret"].as_str()),
    ) else {
        return Err(format!("POST /v1/orders/{order}/pay: {}", seen(&pay)));
    };
    let body = serde_json::json!({ "client_secret": secret, "card": "ok" }).to_string();
    let confirmed = client
        .http
        .send(
            psp,
            hyper::Method::POST,
            &format!("/v1/payment_intents/{intent}/confirm"),
            &[("content-type", "application/json".to_string())],
            Some(bytes::Bytes::from(body)),
        )
        .await;
    if !confirmed.as_ref().is_ok_and(|r| r.status == 200) {
        return Err(format!(
            "the PSP did not confirm {intent}: {}",
            confirmed.map_or_else(|e| e.to_string(), |r| seen(&r))
        ));
    }
    Ok(intent.to_string())
}

/// The flash sale's shoppers: most want the hot SKU. Some walk away from
/// their carts only when the service's hold is known (`--hold`): a buyer
/// waiting behind an abandoned cart is then judged against the hold, and
/// without it against the plain offer bound, which no shop that holds carts
/// for longer could keep.
fn flash_sale_mix(hold: Option<Duration>) -> &'static str {
    match hold {
        Some(_) => "hot=0.8",
        None => "hot=0.8,abandon=0",
    }
}

/// A small flash sale with `stampede load` against the service, judged by
/// its audit; the load report goes to `dir`.
fn flash_sale(args: &ConformArgs, dir: &Path) -> Result<Check, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot run load: {e}"))?;
    let duration = format!("{}ms", args.flash_sale.as_millis());
    let output = std::process::Command::new(program)
        .args(["load", "--host", &args.host, "--psp"])
        .arg(&args.psp)
        .args(["--users", "20", "--mix", flash_sale_mix(args.hold)])
        .args(["--duration", &duration])
        .args(["--admin-token", &args.admin_token])
        .args(
            args.hold
                .map(|hold| vec!["--hold".to_string(), format!("{}ms", hold.as_millis())])
                .unwrap_or_default(),
        )
        .args(["--json", "--out"])
        .arg(dir)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return Err(format!("cannot run load: {e}")),
    };
    if output.status.code() == Some(2) {
        // Bad input or a service that could not be audited (a wrong --admin-token, say): no
        // verdict on the service.
        return Err(format!(
            "the flash sale could not be run: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let report: Option<stampede_reports::LoadReport> = serde_json::from_slice(&output.stdout).ok();
    Ok(match report {
        Some(report) => {
            let violated: Vec<&str> = report
                .audit
                .iter()
                .filter(|a| a.outcome != "holds")
                .map(|a| a.invariant.as_str())
                .collect();
            check(
                "flash-sale.audit",
                violated.is_empty(),
                if violated.is_empty() {
                    format!("every invariant holds (report in {})", dir.display())
                } else {
                    format!(
                        "not holding: {} (report in {})",
                        violated.join(", "),
                        dir.display()
                    )
                },
            )
        }
        None => check(
            "flash-sale.audit",
            false,
            format!(
                "the load run gave no report: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
        ),
    })
}

/// `stampede conform`.
pub fn conform(args: &ConformArgs) -> Result<u8, String> {
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("stampede-out/conform"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let client = Client {
        http: HttpClient::new(
            Connector::tokio(),
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ),
        host: args.host.clone(),
        run: format!("{:x}", crate::unix_now_ms()),
    };
    let mut checks = Vec::new();
    runtime.block_on(async {
        let sku = pick_sku(&client).await?;
        psp_answers(&client.http, &args.psp).await?;
        idempotency(&client, &sku, &mut checks).await;
        bad_inputs(&client, &sku, &mut checks).await;
        webhooks(
            &client,
            &args.psp,
            &sku,
            args.webhook_secret.as_bytes(),
            &mut checks,
        )
        .await;
        if let Some(hold) = args.hold {
            checks.push(hold_kept(&client, &args.psp, &sku, hold).await);
        }
        Ok::<(), String>(())
    })?;
    checks.push(flash_sale(args, &dir.join("flash-sale"))?);
    let result = Conformance {
        host: client.host.clone(),
        checks,
    };
    let json = serde_json::to_string_pretty(&result).expect("serializes");
    std::fs::write(dir.join("conform.json"), &json)
        .and_then(|()| {
            let markdown = stampede_reports::render_conform_markdown(&result);
            std::fs::write(dir.join("conform.md"), markdown)
        })
        .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", stampede_reports::render_conform_text(&result));
        println!("  wrote {}/conform.{{md,json}}", dir.display());
    }
    Ok(if result.passed() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shoppers_abandon_carts_only_when_the_hold_is_known() {
        // Proves: without --hold the flash sale's mix sets abandon to 0 (and keeps the hot
        // SKU's share); with it, the default abandon share stays.
        let parse = |text: &str| crate::load::parse_mix(text).unwrap();
        let unknown = parse(flash_sale_mix(None));
        assert_eq!((unknown.abandon, unknown.hot), (0.0, 0.8));
        let known = parse(flash_sale_mix(Some(Duration::from_secs(10))));
        assert_eq!(known.hot, 0.8);
        assert!(known.abandon > 0.0, "{}", known.abandon);
    }
}
