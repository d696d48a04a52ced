//! The reference shop over real loopback sockets: full orders reach
//! `Confirmed`; Idempotency-Key semantics; every bad input is a 4xx
//! problem+json that changes nothing; forged and stale webhooks are refused;
//! duplicated and reordered webhooks apply once; a crashed worker's job is
//! redelivered; an expired reservation returns its stock; a late payment is
//! refunded; and concurrent shoppers racing for a small stock never oversell
//! and are never charged twice (judged by the core's invariant checker).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use stampede_core::{
    AuditSnapshot, ClientOp, ClientReply, Command, CustomerId, EventKind, History, IdempotencyKey,
    IntentId, Invariant, ItemRequest, Millis, OrderId, PlaceOrder, Reply, Sku, check_all,
};
use stampede_server::Design;
use stampede_server::WorkerConfig;
use stampede_server::psp::{PspClient, PspConfig};
use stampede_server::store::{Store, StoreFuture};
use stampede_server::{Connector, HttpClient, HttpResponse};
use stampede_server::{PspMode, Stack, StackConfig, StartError, check_psp_is_ours};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const HOT: &str = "sneaker-limited";
const TEE: &str = "tshirt-black";
const ADMIN: &str = "stampede-admin";

fn fast_workers() -> WorkerConfig {
    WorkerConfig {
        lease_wait_ms: 1_000,
        sweep_interval_ms: 50,
        sweep_batch: 1_000,
        reconcile_interval_ms: 200,
        reconcile_grace_ms: 300,
        reconcile_batch: 1_000,
    }
}

fn config(design: Design) -> StackConfig {
    let mut c = StackConfig::demo(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        1_700_000_000_000,
    );
    c.server.design = design;
    c.worker = fast_workers();
    c.shop.queue.visibility_ms = 400;
    c.shop.retry.base_delay_ms = 20;
    if let PspMode::Embedded(psp) = &mut c.psp {
        psp.delay_ms_min = 0;
        psp.delay_ms_max = 20;
    }
    c
}

async fn start(c: StackConfig) -> (Stack, Shopper) {
    let stack = stampede_server::start(c).await.expect("stack starts");
    let shopper = Shopper::new(&stack);
    (stack, shopper)
}

/// A client of the shop and the PSP.
struct Shopper {
    http: HttpClient,
    shop: String,
    psp: PspClient,
}

impl Shopper {
    fn new(stack: &Stack) -> Shopper {
        let http = HttpClient::new(Connector::tokio(), Duration::from_secs(10));
        Shopper {
            psp: PspClient::new(http.clone(), stack.psp_addr.clone()),
            shop: stack.shop_addr.to_string(),
            http,
        }
    }

    async fn post(&self, path: &str, headers: &[(&str, String)], body: &str) -> HttpResponse {
        let mut all = vec![("content-type", "application/json".to_string())];
        all.extend(headers.iter().cloned());
        self.http
            .send(
                &self.shop,
                Method::POST,
                path,
                &all,
                Some(Bytes::from(body.to_string())),
            )
            .await
            .expect("shop answers")
    }

    async fn get(&self, path: &str) -> HttpResponse {
        self.http.get(&self.shop, path).await.expect("shop answers")
    }

    async fn order(&self, key: &str, customer: &str, sku: &str, qty: u32) -> HttpResponse {
        let body =
            json!({ "customer_id": customer, "items": [{ "sku": sku, "qty": qty }] }).to_string();
        self.post("/v1/orders", &[("idempotency-key", key.to_string())], &body)
            .await
    }

    async fn status(&self, order: &str) -> String {
        self.get(&format!("/v1/orders/{order}"))
            .await
            .json::<Value>()
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls until the order's status is one of `wanted` (bounded: 10 s).
    async fn wait_for(&self, order: &str, wanted: &[&str]) -> String {
        for _ in 0..1_000 {
            let status = self.status(order).await;
            if wanted.contains(&status.as_str()) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{order} never reached {wanted:?}; it is {}",
            self.status(order).await
        );
    }

    async fn pay(&self, order: &str, key: &str) -> HttpResponse {
        self.post(
            &format!("/v1/orders/{order}/pay"),
            &[("idempotency-key", key.to_string())],
            "",
        )
        .await
    }

    /// Starts payment and confirms it at the PSP.
    async fn pay_and_confirm(&self, order: &str, decline: bool) {
        let started = self.pay(order, &format!("pay-{order}")).await;
        assert_eq!(
            started.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&started.body)
        );
        let body: Value = started.json().unwrap();
        let intent = IntentId::new(body["intent_id"].as_str().unwrap()).unwrap();
        self.psp
            .confirm(&intent, body["client_secret"].as_str().unwrap(), decline)
            .await
            .expect("psp confirms");
    }

    async fn audit(&self) -> AuditSnapshot {
        let response = self
            .http
            .send(
                &self.shop,
                Method::GET,
                "/admin/audit",
                &[("authorization", format!("Bearer {ADMIN}"))],
                None,
            )
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        response.json().unwrap()
    }

    async fn available(&self, sku: &str) -> u64 {
        self.get(&format!("/v1/products/{sku}"))
            .await
            .json::<Value>()
            .unwrap()["available"]
            .as_u64()
            .unwrap()
    }
}

fn order_id(response: &HttpResponse) -> String {
    response.json::<Value>().unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn is_problem(response: &HttpResponse, status: StatusCode, slug: &str) {
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.headers["content-type"], "application/problem+json");
    let problem: Value = response.json().unwrap();
    assert!(
        problem["type"].as_str().unwrap().ends_with(slug),
        "{problem}"
    );
    assert!(!problem["detail"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_order_reaches_confirmed_with_one_charge() {
    // Proves: order → reserve → intent → pay → webhook → finalize → confirmed, with one ledger
    // charge; paying it again is refused as `not-payable`.
    let (stack, s) = start(config(Design::reference())).await;
    let products: Value = s.get("/v1/products").await.json().unwrap();
    assert_eq!(products["data"].as_array().unwrap().len(), 4);
    let placed = s.order("k-1", "alice", TEE, 2).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);
    let id = order_id(&placed);
    s.wait_for(&id, &["payment_pending"]).await;
    s.pay_and_confirm(&id, false).await;
    assert_eq!(s.wait_for(&id, &["confirmed"]).await, "confirmed");
    let view: Value = s.get(&format!("/v1/orders/{id}")).await.json().unwrap();
    assert_eq!(view["total"], 5_000);
    let path: Vec<&str> = view["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        ["inventory_reserved", "payment_pending", "paid", "confirmed"]
    );
    let ledger = s.psp.ledger().await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].amount.0, 5_000);
    assert_eq!(s.available(TEE).await, 10_000 - 2);
    // A confirmed order is not payable again: the slug the contract publishes.
    is_problem(
        &s.pay(&id, "pay-again").await,
        StatusCode::CONFLICT,
        "not-payable",
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_order_is_charged_with_the_saved_card_and_confirmed_without_pay() {
    // Proves: `"payment": "saved_card"` makes the shop's intent creation charge the card once;
    // the order reaches confirmed with one ledger charge and no /pay; an unknown payment
    // choice is a 400 that creates nothing.
    let (stack, s) = start(config(Design::reference())).await;
    let body = json!({
        "customer_id": "carol",
        "items": [{ "sku": TEE, "qty": 1 }],
        "payment": "saved_card",
    })
    .to_string();
    let placed = s
        .post(
            "/v1/orders",
            &[("idempotency-key", "x-1".to_string())],
            &body,
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED);
    let id = order_id(&placed);
    assert_eq!(s.wait_for(&id, &["confirmed"]).await, "confirmed");
    let ledger = s.psp.ledger().await.unwrap();
    assert_eq!(ledger.len(), 1, "charged once");
    assert_eq!(ledger[0].amount.0, 2_500);

    let bad = json!({
        "customer_id": "carol",
        "items": [{ "sku": TEE, "qty": 1 }],
        "payment": "iou",
    })
    .to_string();
    let refused = s
        .post(
            "/v1/orders",
            &[("idempotency-key", "x-2".to_string())],
            &bad,
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.audit().await.orders.len(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_refuse_mismatch_and_are_required() {
    // Proves: a repeat replays the saved 202 with Idempotent-Replayed; a different body under the key
    // is 422; a missing or over-long key is 400; none of them creates a second order.
    let (stack, s) = start(config(Design::reference())).await;
    let first = s.order("k-1", "alice", TEE, 1).await;
    let again = s.order("k-1", "alice", TEE, 1).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        first.body, again.body,
        "the saved response is replayed verbatim"
    );
    is_problem(
        &s.order("k-1", "alice", TEE, 2).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
    );
    let no_key = s
        .post(
            "/v1/orders",
            &[],
            &json!({"customer_id":"a","items":[{"sku":TEE,"qty":1}]}).to_string(),
        )
        .await;
    is_problem(&no_key, StatusCode::BAD_REQUEST, "idempotency-key-missing");
    is_problem(
        &s.order(&"k".repeat(256), "alice", TEE, 1).await,
        StatusCode::BAD_REQUEST,
        "invalid-idempotency-key",
    );
    assert_eq!(s.audit().await.orders.len(), 1);
    stack.shutdown().await;
}

/// A store that says it has placed no order (as a replica's count read just
/// before another replica placed one would), and answers everything else.
struct CountsNoOrders(Arc<dyn Store>);

impl Store for CountsNoOrders {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        Box::pin(async move {
            let reply = self.0.call(request).await?;
            Ok(match reply {
                Reply::Stats(mut stats) => {
                    stats.orders_by_status.clear();
                    Reply::Stats(stats)
                }
                other => other,
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psp_that_served_another_store_is_refused_at_start() {
    // Proves: a shop on a fresh store starts against a PSP holding no intent for `ord_1`, and
    // refuses (naming the order) one that does: that PSP served another store, whose payment
    // keys and orders' payments this shop's would be mixed with. Intents for an order the store
    // itself holds are its own (a replica placed it meanwhile): those pass; so does a store with
    // orders behind its PSP (logged).
    let (first, s) = start(config(Design::reference())).await;
    let mut c = config(Design::reference());
    c.psp = PspMode::Remote(first.psp_addr.clone());
    let fresh = stampede_server::start(c.clone())
        .await
        .expect("no intents yet");
    fresh.shutdown().await;

    let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
    assert_eq!(id, "ord_1");
    s.wait_for(&id, &["payment_pending"]).await;
    let refused = stampede_server::start(c).await.err().expect("refused");
    assert!(
        matches!(&refused, StartError::ForeignPsp { order, .. } if *order == OrderId(1)),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("Start a fresh PSP"),
        "{refused}"
    );

    let psp = PspClient::new(
        HttpClient::new(Connector::tokio(), Duration::from_secs(5)),
        first.psp_addr.clone(),
    );
    let own = CountsNoOrders(Arc::clone(&first.app.store));
    check_psp_is_ours(&own, &psp)
        .await
        .expect("ord_1 is the store's own");

    // A store with orders that is behind the PSP (it lost acknowledged ones) is served, the
    // loss logged: what it does is for the audit to judge.
    let two = order_id(&s.order("k-2", "bob", TEE, 1).await);
    s.wait_for(&two, &["payment_pending"]).await;
    let (behind, b) = start(config(Design::reference())).await;
    let _ = order_id(&b.order("k-1", "carol", TEE, 1).await);
    check_psp_is_ours(behind.app.store.as_ref(), &psp)
        .await
        .expect("a store with orders is served");
    behind.shutdown().await;
    first.shutdown().await;

    // Another store's `ord_1` may never have reached payment (an abandoned cart) while its
    // `ord_2` did: any intent at all is refused for a store with no order.
    let (other, o) = start(config(Design::reference())).await;
    o.psp
        .create_intent(OrderId(2), stampede_core::Cents(2500), None, None)
        .await
        .unwrap();
    let mut c = config(Design::reference());
    c.psp = PspMode::Remote(other.psp_addr.clone());
    let refused = stampede_server::start(c).await.err().expect("refused");
    assert!(
        matches!(&refused, StartError::ForeignPsp { order, .. } if *order == OrderId(2)),
        "{refused}"
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_first_request_is_still_running_is_a_409() {
    // Proves: while the first /pay with a key waits on a PSP that never answers, the same key is 409.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap().to_string();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket); // accept and never answer
        }
    });
    let mut c = config(Design::reference());
    c.psp = PspMode::Remote(hole_addr);
    c.psp_timeout = Duration::from_secs(3);
    c.workers = 0;
    let (stack, s) = start(c).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
    // Reserve by hand (no workers): lease the job and run the step through the store.
    let lease = stack.app.store.lease_job().await.unwrap().unwrap();
    stack
        .app
        .store
        .reserve(lease.order, stampede_core::Cause::Worker { job: lease.job })
        .await
        .unwrap();
    let path = format!("/v1/orders/{id}/pay");
    let first = {
        let http = s.http.clone();
        let shop = s.shop.clone();
        let path = path.clone();
        tokio::spawn(async move {
            http.send(
                &shop,
                Method::POST,
                &path,
                &[("idempotency-key", "pay-1".to_string())],
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    is_problem(
        &s.pay(&id, "pay-1").await,
        StatusCode::CONFLICT,
        "idempotency-key-in-flight",
    );
    let first = first.await.unwrap().unwrap();
    is_problem(&first, StatusCode::BAD_GATEWAY, "psp-unavailable");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_4xx_problem_and_changes_nothing() {
    // Proves: malformed JSON, unknown fields, unknown SKU, qty 0 / too big, too many lines, a
    // client price, oversized body, bad customer id, wrong types → 4xx problem+json, no state change.
    let (stack, s) = start(config(Design::reference())).await;
    let before = s.audit().await;
    let lines: Vec<Value> = (0..17)
        .map(|i| json!({"sku": format!("sku-{i}"), "qty": 1}))
        .collect();
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":1}],"coupon":"FREE"}).to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":"nope","qty":1}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":0}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":11}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":-1}]}).to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":99999999999u64}]}).to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            json!({"customer_id":"a","items":[]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
        ),
        (
            json!({"customer_id":"a","items":lines}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":1,"price":1}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "client-price-not-accepted",
        ),
        (
            json!({"customer_id":"bad id!","items":[{"sku":TEE,"qty":1}]}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid-customer",
        ),
        (
            json!({"customer_id":"a","items":[{"sku":TEE,"qty":"1"}]}).to_string(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            format!(
                "{{\"customer_id\":\"{}\",\"items\":[]}}",
                "x".repeat(20_000)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            json!({"customer_id":"limited","items":[{"sku":HOT,"qty":3}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
        ),
    ];
    for (i, (body, status, slug)) in cases.into_iter().enumerate() {
        let response = s
            .post(
                "/v1/orders",
                &[("idempotency-key", format!("bad-{i}"))],
                &body,
            )
            .await;
        is_problem(&response, status, slug);
    }
    is_problem(
        &s.get("/v1/orders/ord_999").await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    is_problem(
        &s.get("/v1/orders/garbage").await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    is_problem(
        &s.pay("ord_999", "p").await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    let put = s
        .http
        .send(&s.shop, Method::PUT, "/v1/orders", &[], None)
        .await
        .expect("shop answers");
    is_problem(&put, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
    assert_eq!(
        put.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST"),
        "the methods it does take"
    );
    let unauthorized = s.post("/admin/restock", &[], "{}").await;
    is_problem(&unauthorized, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        unauthorized
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "a 401 names the scheme it takes (RFC 9110 §11.6.1)"
    );
    // The scheme's case does not matter (RFC 9110); the token's does, and so does the scheme.
    for (authorization, status) in [
        (format!("bearer {ADMIN}"), StatusCode::OK),
        (format!("BEARER {ADMIN}"), StatusCode::OK),
        (
            format!("Bearer {}", ADMIN.to_uppercase()),
            StatusCode::UNAUTHORIZED,
        ),
        (format!("Basic {ADMIN}"), StatusCode::UNAUTHORIZED),
        (format!("Bearer{ADMIN}"), StatusCode::UNAUTHORIZED),
    ] {
        let answer = s
            .http
            .send(
                &s.shop,
                Method::GET,
                "/admin/audit",
                &[("authorization", authorization.clone())],
                None,
            )
            .await
            .expect("shop answers");
        assert_eq!(answer.status, status, "{authorization}");
    }
    let after = s.audit().await;
    assert_eq!(after.orders, before.orders);
    assert_eq!(after.stock, before.stock);
    assert_eq!(after.jobs_live, before.jobs_live);
    // Rejected requests free their keys: nothing is held.
    assert_eq!(after.idempotency_records, before.idempotency_records);
    stack.shutdown().await;
}

/// A fresh directory for a test's SQLite file (`name`, per process); the file's path.
fn fresh_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stampede-shop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("shop.db")
}

/// The reference shop's test config, keeping its state in the SQLite file `db`.
fn on_file(db: &std::path::Path) -> StackConfig {
    let mut c = config(Design::reference());
    let options = stampede_server::store::sqlite::SqliteOptions::new(db);
    c.store = stampede_server::StoreChoice::Sqlite(options);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_key_a_crash_left_in_flight_is_free_when_the_shop_restarts_on_its_file() {
    // Proves: a `/pay` key held in flight when the process stopped (as when `kill -9` cuts a
    // request off between taking its key and saving its answer) is freed when the shop opens
    // its SQLite file again, so the buyer's retry pays at once (before: 409 in flight until the
    // 30 s lock lapsed, longer than the cart's hold); a completed key still replays.
    let db = fresh_db("keys");
    let (stack, s) = start(on_file(&db)).await;
    let paid = order_id(&s.order("k-paid", "c-paid", TEE, 1).await);
    let cut = order_id(&s.order("k-cut", "c-cut", TEE, 1).await);
    s.wait_for(&paid, &["payment_pending"]).await;
    s.wait_for(&cut, &["payment_pending"]).await;
    let first = s.pay(&paid, "pay-done").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    // The cut-off request: its key taken the way `/pay` takes it, its answer never saved.
    let key = IdempotencyKey::new("pay-cut").unwrap();
    let fingerprint =
        stampede_core::Fingerprint::of(format!("POST /v1/orders/{cut}/pay").as_bytes());
    let began = stack.store.begin_key(key, fingerprint).await.unwrap();
    assert_eq!(began, stampede_core::Begin::New);
    let held = s.pay(&cut, "pay-cut").await;
    is_problem(&held, StatusCode::CONFLICT, "idempotency-key-in-flight");
    stack.shutdown().await;

    let (stack, s) = start(on_file(&db)).await;
    assert_eq!(
        stack.opened.map(|o| o.keys_released),
        Some(1),
        "one key was in flight"
    );
    let retried = s.pay(&cut, "pay-cut").await;
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    assert!(retried.headers.get("idempotent-replayed").is_none());
    let replayed = s.pay(&paid, "pay-done").await;
    assert_eq!(replayed.status, StatusCode::OK, "{replayed:?}");
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_eq!(replayed.body, first.body, "the saved answer");
    stack.shutdown().await;
    // Nothing in flight: a third start frees nothing.
    let (stack, _) = start(on_file(&db)).await;
    assert_eq!(stack.opened.map(|o| o.keys_released), Some(0));
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_restarted_with_a_fresh_embedded_psp_never_sees_an_intent_or_event_id_again() {
    // Proves (found from outside: after a restart on the same file the new embedded PSP counted
    // from pi_1 and evt_1 again, so the second order's payment event was dropped as a duplicate
    // of the first's and two orders shared pi_1): the restarted shop's PSP numbers past every
    // id the store holds, so the second order gets an intent id of its own and is paid by its
    // webhook, not left to the reconciler.
    let db = fresh_db("psp-ids");
    let paid_by = |order: Value| -> String {
        order["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["to"] == "paid")
            .map(|t| t["cause"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let mut seen = Vec::new();
    for round in 0..2 {
        let (stack, s) = start(on_file(&db)).await;
        let order = order_id(
            &s.order(&format!("k-{round}"), &format!("c-{round}"), TEE, 1)
                .await,
        );
        s.wait_for(&order, &["payment_pending"]).await;
        s.pay_and_confirm(&order, false).await;
        s.wait_for(&order, &["confirmed"]).await;
        let view: Value = s.get(&format!("/v1/orders/{order}")).await.json().unwrap();
        let intent = view["intent_id"].as_str().unwrap().to_string();
        let cause = paid_by(view);
        assert!(
            cause.starts_with("webhook"),
            "round {round}: {order} was paid by {cause:?}, not its webhook"
        );
        assert!(!seen.contains(&intent), "{intent} again: {seen:?}");
        seen.push(intent);
        stack.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_returns_with_the_file_closed_and_followers_let_go() {
    // Proves: `Stack::shutdown` returns only once nothing holds the store any more — its
    // SQLite file opens again at once — and does not wait out the connections' 10 s grace for
    // a buyer following an order's events (the stream ends), nor for idle keep-alives.
    let db = fresh_db("shutdown");
    for round in 0..3 {
        let (stack, s) = start(on_file(&db)).await;
        let order = order_id(&s.order(&format!("k-{round}"), "c-follow", TEE, 1).await);
        let path = format!("/v1/orders/{order}/events");
        let mut events = s.http.open(&s.shop, &path, &[]).await.expect("a stream");
        let first = events.next_event(Duration::from_secs(5)).await.unwrap();
        assert!(first.is_some(), "its first status");
        let held = Arc::downgrade(&stack.store);
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), stack.shutdown())
            .await
            .expect("the shutdown did not wait out the grace");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            held.strong_count(),
            0,
            "round {round}: the store is still held"
        );
    }
    let (stack, _) = start(on_file(&db)).await;
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_ok_while_the_store_serves_and_503_once_it_has_stopped_for_good() {
    // Proves: /healthz is 200 `ok` on a working SQLite store, and once a commit has failed
    // (the log table dropped under the shop) it is a 503 `store-failed` problem — the shop no
    // longer claims to be healthy while it refuses everything.
    let db = fresh_db("health");
    let (stack, s) = start(on_file(&db)).await;
    let ok = s.get("/healthz").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, Bytes::from_static(b"ok"));
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("DROP TABLE commands").unwrap();
    }
    let refused = s.order("k-broken", "c-broken", TEE, 1).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    is_problem(
        &s.get("/healthz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "store-failed",
    );
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

/// A store whose reads never answer (a database stalled or cut off).
struct ReadsHang(Arc<dyn Store>);

impl Store for ReadsHang {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        if request.is_read() {
            return Box::pin(std::future::pending());
        }
        self.0.call(request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ready_while_the_store_answers_and_503_once_it_does_not() {
    // Proves: /readyz is 200 `ready` on a working shop; on a shop whose store does not answer
    // reads it is a 503 `unavailable` after its bounded wait — while /healthz, the liveness
    // check, stays 200 (restarting the shop would not bring its database back).
    let (stack, s) = start(config(Design::reference())).await;
    let ready = s.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, Bytes::from_static(b"ready"));

    let hung: Arc<dyn Store> = Arc::new(ReadsHang(Arc::clone(&stack.app.store)));
    let app = stampede_server::App::new(
        hung,
        PspClient::new(s.http.clone(), stack.psp_addr.clone()),
        stack.app.clock.clone(),
        stack.app.config.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = tokio::spawn(stampede_server::serve_router(
        listener,
        stampede_server::router(app),
        std::future::pending(),
    ));
    let asked = tokio::time::Instant::now();
    let not_ready = s.http.get(&addr, "/readyz").await.unwrap();
    is_problem(&not_ready, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        asked.elapsed() >= Duration::from_millis(stampede_server::READINESS_WAIT_MS),
        "answered after its wait"
    );
    let alive = s.http.get(&addr, "/healthz").await.unwrap();
    assert_eq!(alive.status, StatusCode::OK);
    served.abort();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_another_connection_holds_past_the_busy_timeout_is_waited_out() {
    // Proves (found from outside: a `BEGIN IMMEDIATE` held for a few seconds by another
    // connection stopped the shop for good): a commit that finds the file locked for longer
    // than SQLite's 5 s busy wait is tried again, so the order placed meanwhile is accepted
    // once the lock goes, and the shop stays healthy.
    let db = fresh_db("busy");
    let (stack, s) = start(on_file(&db)).await;
    assert_eq!(
        s.order("k-before", "c-1", TEE, 1).await.status,
        StatusCode::ACCEPTED
    );
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = {
        let db = db.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(5_800));
            conn.execute_batch("ROLLBACK").unwrap();
        })
    };
    locked_rx.recv().unwrap();
    let during = s.order("k-during", "c-2", TEE, 1).await;
    assert_eq!(during.status, StatusCode::ACCEPTED, "{during:?}");
    holder.join().unwrap();
    assert_eq!(s.get("/healthz").await.status, StatusCode::OK);
    assert!(stack.store.failed().is_none());
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_exists_keeps_its_settings_and_says_which_it_kept() {
    // Proves: a shop restarted on its file with other settings (a longer hold, a per-customer
    // rate limit) keeps the store's own — they are part of its state — and says so, setting by
    // setting with both values; restarted with the same settings it says nothing; a new file
    // takes what it is given.
    let db = fresh_db("kept");
    let first = on_file(&db);
    let hold = first.shop.reservation_ttl_ms;
    let (stack, _) = start(first).await;
    assert!(stack.kept_settings.is_empty(), "{:?}", stack.kept_settings);
    stack.shutdown().await;

    let mut other = on_file(&db);
    other.shop.reservation_ttl_ms = Some(123_000);
    other.shop.admission.customer_orders_max = Some(2);
    let (stack, _) = start(other).await;
    assert_eq!(stack.kept_settings.len(), 2, "{:?}", stack.kept_settings);
    let hold = hold.map_or("none".to_string(), |ms| format!("{ms} ms"));
    assert_eq!(
        stack.kept_settings[0],
        format!("reservation hold: kept the store's {hold} (asked for 123000 ms)")
    );
    assert!(
        stack.kept_settings[1].starts_with("orders per customer per window: kept the store's"),
        "{:?}",
        stack.kept_settings
    );
    stack.shutdown().await;

    let (stack, _) = start(on_file(&db)).await;
    assert!(stack.kept_settings.is_empty(), "{:?}", stack.kept_settings);
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lease_a_crash_left_held_ends_when_the_shop_restarts_on_its_file() {
    // Proves: a job leased when the process stopped (its worker gone with it) is run at once by
    // the next process on the same SQLite file — the order reaches payment_pending within the
    // 10 s wait although the lease's visibility timeout is a minute — and the start says 1.
    let db = fresh_db("leases");
    let with_workers = |workers: u32| {
        let mut c = on_file(&db);
        c.workers = workers;
        c.shop.queue.visibility_ms = 60_000;
        c
    };
    let (stack, s) = start(with_workers(0)).await;
    let order = order_id(&s.order("k-leased", "c-leased", TEE, 1).await);
    let lease = stack
        .store
        .lease_job()
        .await
        .unwrap()
        .expect("its reserve job");
    assert_eq!(lease.order.to_string(), order);
    stack.shutdown().await;

    let (stack, s) = start(with_workers(2)).await;
    assert_eq!(stack.opened.map(|o| o.leases_released), Some(1));
    s.wait_for(&order, &["payment_pending"]).await;
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_not_sent_as_json_is_refused_415_and_changes_nothing() {
    // Proves: an order or a restock whose Content-Type is not JSON (another type, a form, none,
    // an empty `+json` name) is refused 415 problem+json and changes nothing — its key is still
    // free afterwards; `application/json` with parameters and `application/<name>+json` are JSON.
    let (stack, s) = start(config(Design::reference())).await;
    let before = s.audit().await;
    let order = json!({ "customer_id": "c1", "items": [{ "sku": TEE, "qty": 1 }] }).to_string();
    let send =
        |path: &'static str, media: Option<&'static str>, key: &'static str, body: String| {
            let mut headers = vec![("idempotency-key", key.to_string())];
            if path == "/admin/restock" {
                headers.push(("authorization", format!("Bearer {ADMIN}")));
            }
            if let Some(media) = media {
                headers.push(("content-type", media.to_string()));
            }
            let http = s.http.clone();
            let shop = s.shop.clone();
            async move {
                http.send(&shop, Method::POST, path, &headers, Some(Bytes::from(body)))
                    .await
                    .expect("shop answers")
            }
        };
    for media in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/+json"),
        Some("application/jsonx"),
        None,
    ] {
        let refused = send("/v1/orders", media, "k-media", order.clone()).await;
        is_problem(
            &refused,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        );
        let restock = json!({ "sku": TEE, "qty": 7 }).to_string();
        let refused = send("/admin/restock", media, "r", restock).await;
        is_problem(
            &refused,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        );
    }
    // A body with a content coding the shop does not decode is refused too (RFC 9110 §8.4),
    // whether the coding is named alone or after `identity`.
    for coding in ["gzip", "identity, br"] {
        let headers = [
            ("idempotency-key", "k-media".to_string()),
            ("content-encoding", coding.to_string()),
        ];
        is_problem(
            &s.post("/v1/orders", &headers, &order).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        );
    }
    let after = s.audit().await;
    assert_eq!(after.orders, before.orders);
    assert_eq!(after.stock, before.stock);
    assert_eq!(after.idempotency_records, before.idempotency_records);
    let identity = [
        ("idempotency-key", "k-identity".to_string()),
        ("content-encoding", "identity".to_string()),
    ];
    let placed = s.post("/v1/orders", &identity, &order).await;
    assert_eq!(
        placed.status,
        StatusCode::ACCEPTED,
        "identity is no coding: {placed:?}"
    );
    let placed = send(
        "/v1/orders",
        Some("Application/JSON; charset=utf-8"),
        "k-media",
        order.clone(),
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{placed:?}");
    assert!(
        placed.headers.get("idempotent-replayed").is_none(),
        "the key was free: {placed:?}"
    );
    let placed = send(
        "/v1/orders",
        Some("application/vnd.shop+json"),
        "k-vnd",
        order,
    )
    .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{placed:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_name_nothing_and_two_idempotency_keys_are_refused() {
    // Proves: a path parameter that is not UTF-8, and an order id spelled with leading zeros,
    // are problem+json 404s on every route that takes one (not a plain-text 400, not another
    // spelling of ord_1); a request carrying two Idempotency-Key headers is a 400 and creates
    // nothing, while the same request with one of them is taken.
    let (stack, s) = start(config(Design::reference())).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
    assert_eq!(id, "ord_1");
    for path in [
        "/v1/orders/%ff",
        "/v1/orders/%C3%28",
        "/v1/orders/ord_01",
        "/v1/orders/ord_0001/events",
        "/v1/products/%ff",
    ] {
        is_problem(&s.get(path).await, StatusCode::NOT_FOUND, "not-found");
    }
    for path in ["/v1/orders/%ff/pay", "/v1/orders/ord_01/cancel"] {
        let headers = [("idempotency-key", "k-path".to_string())];
        is_problem(
            &s.post(path, &headers, "").await,
            StatusCode::NOT_FOUND,
            "not-found",
        );
    }
    let body = json!({ "customer_id": "bob", "items": [{ "sku": TEE, "qty": 1 }] }).to_string();
    let two = [
        ("idempotency-key", "k-a".to_string()),
        ("idempotency-key", "k-b".to_string()),
    ];
    is_problem(
        &s.post("/v1/orders", &two, &body).await,
        StatusCode::BAD_REQUEST,
        "invalid-idempotency-key",
    );
    assert_eq!(s.audit().await.orders.len(), 1, "nothing created");
    let one = s.post("/v1/orders", &two[..1], &body).await;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{one:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_webhooks_are_refused_without_effect() {
    // Proves: a webhook with a wrong signature, a stale timestamp, no signature or two signature
    // headers is a 400 and the order does not move; a correctly signed copy of a real event is accepted as a duplicate.
    let (stack, s) = start(config(Design::reference())).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
    s.wait_for(&id, &["payment_pending"]).await;
    let view: Value = s.get(&format!("/v1/orders/{id}")).await.json().unwrap();
    let intent = view["intent_id"].as_str().unwrap();
    let body =
        json!({"id":"evt_forged","type":"payment_intent.succeeded","created":1_700_000_000u64,
        "data":{"intent":intent,"order":id,"amount":2500}})
        .to_string();
    let now = stack.app.clock.unix_secs();
    let forged = stampede_server::signature::sign(b"not-the-secret", now, body.as_bytes());
    let stale = stampede_server::signature::sign(
        &stack.app.config.webhook_secret,
        now - 301,
        body.as_bytes(),
    );
    let good =
        stampede_server::signature::sign(&stack.app.config.webhook_secret, now, body.as_bytes());
    for (header, slug) in [
        (vec![forged.clone()], "invalid-signature"),
        (vec![stale], "invalid-signature"),
        (vec![], "signature-missing"),
        // Two headers, a good one first: which one vouches is ambiguous.
        (vec![good, forged], "invalid-signature"),
    ] {
        let headers: Vec<(&str, String)> =
            header.into_iter().map(|h| ("psp-signature", h)).collect();
        is_problem(
            &s.post("/v1/webhooks/psp", &headers, &body).await,
            StatusCode::BAD_REQUEST,
            slug,
        );
    }
    assert_eq!(s.status(&id).await, "payment_pending");
    assert!(s.psp.ledger().await.unwrap().is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_moves_an_order_only_when_the_psps_view_bears_it_out() {
    // Proves: a correctly signed event is still only the PSP's say-so: one that reports a payment
    // the PSP has not taken is acknowledged as `unconfirmed` and changes nothing; one naming
    // another order's intent, another amount or an intent the PSP does not know is a 400
    // `event-mismatch`; the real payment that follows confirms the order as ever; a true event
    // arriving after that is `ignored`, not `applied`.
    let (stack, s) = start(config(Design::reference())).await;
    let a = order_id(&s.order("k-1", "alice", TEE, 1).await);
    let b = order_id(&s.order("k-2", "bob", TEE, 1).await);
    s.wait_for(&a, &["payment_pending"]).await;
    s.wait_for(&b, &["payment_pending"]).await;
    let view: Value = s.get(&format!("/v1/orders/{a}")).await.json().unwrap();
    let intent_a = view["intent_id"].as_str().unwrap().to_string();
    let signed = |event: &str, intent: &str, order: &str, amount: u64| {
        let body = json!({"id":event,"type":"payment_intent.succeeded","created":1_700_000_000u64,
            "data":{"intent":intent,"order":order,"amount":amount}})
        .to_string();
        let now = stack.app.clock.unix_secs();
        let header = stampede_server::signature::sign(
            &stack.app.config.webhook_secret,
            now,
            body.as_bytes(),
        );
        (body, vec![("psp-signature", header)])
    };
    let (body, headers) = signed("evt_unpaid", &intent_a, &a, 2500);
    let taken = s.post("/v1/webhooks/psp", &headers, &body).await;
    assert_eq!(taken.status, StatusCode::OK, "{taken:?}");
    let taken: Value = taken.json().unwrap();
    assert_eq!(taken["outcome"], "unconfirmed", "{taken}");
    for (event, intent, order, amount) in [
        ("evt_other_order", intent_a.as_str(), b.as_str(), 2500),
        ("evt_other_amount", intent_a.as_str(), a.as_str(), 1),
        ("evt_unknown_intent", "pi_999999", a.as_str(), 2500),
    ] {
        let (body, headers) = signed(event, intent, order, amount);
        is_problem(
            &s.post("/v1/webhooks/psp", &headers, &body).await,
            StatusCode::BAD_REQUEST,
            "event-mismatch",
        );
    }
    assert_eq!(s.status(&a).await, "payment_pending");
    assert_eq!(s.status(&b).await, "payment_pending");
    assert!(s.psp.ledger().await.unwrap().is_empty());
    s.pay_and_confirm(&a, false).await;
    s.wait_for(&a, &["confirmed"]).await;
    assert_eq!(s.status(&b).await, "payment_pending");
    // A true event under a new id, after its order is confirmed, is taken
    // and said to have changed nothing.
    let (body, headers) = signed("evt_late", &intent_a, &a, 2500);
    let late: Value = s
        .post("/v1/webhooks/psp", &headers, &body)
        .await
        .json()
        .unwrap();
    assert_eq!(late["outcome"], "ignored", "{late}");
    // Integers written as 2500.0 are integers (JSON Schema's `integer`).
    let body = body.replace("2500", "2500.0");
    let header = stampede_server::signature::sign(
        &stack.app.config.webhook_secret,
        stack.app.clock.unix_secs(),
        body.as_bytes(),
    );
    let whole = s
        .post("/v1/webhooks/psp", &[("psp-signature", header)], &body)
        .await;
    assert_eq!(whole.status, StatusCode::OK, "{whole:?}");
    assert_eq!(whole.json::<Value>().unwrap()["outcome"], "duplicate");
    assert_eq!(s.status(&a).await, "confirmed");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_webhooks_are_applied_once() {
    // Proves: with every event delivered 1-4 times in random order, each order is paid and confirmed
    // exactly once and the shop counted the duplicates it skipped.
    let mut c = config(Design::reference());
    if let PspMode::Embedded(psp) = &mut c.psp {
        *psp = PspConfig {
            duplicate_probability: 1.0,
            max_extra_copies: 3,
            delay_ms_min: 0,
            delay_ms_max: 150,
            ..psp.clone()
        };
    }
    let (stack, s) = start(c).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(order_id(
            &s.order(&format!("k-{i}"), &format!("c{i}"), TEE, 1).await,
        ));
    }
    for id in &ids {
        s.wait_for(id, &["payment_pending"]).await;
        s.pay_and_confirm(id, false).await;
    }
    for id in &ids {
        s.wait_for(id, &["confirmed"]).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await; // let the last copies arrive
    let audit = s.audit().await;
    for order in &audit.orders {
        let paid = order
            .transitions()
            .iter()
            .filter(|t| t.to == stampede_core::OrderStatus::Paid)
            .count();
        assert_eq!(paid, 1, "{:?}", order.transitions());
    }
    let metrics = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stampede_webhook_duplicates_skipped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        skipped >= 8,
        "every event had at least one extra copy; skipped {skipped}"
    );
    assert_eq!(s.psp.ledger().await.unwrap().len(), 8);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_job_is_redelivered_and_finishes() {
    // Proves: a job leased by a worker that died (never acked) is redelivered after the visibility
    // timeout to a live worker, and the order proceeds.
    let mut c = config(Design::reference());
    c.workers = 0;
    let (mut stack, s) = start(c).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
    let crashed = stack
        .app
        .store
        .lease_job()
        .await
        .unwrap()
        .expect("the reserve job");
    assert_eq!(crashed.attempt, 1);
    stack.start_workers(1, 7, fast_workers());
    s.wait_for(&id, &["payment_pending"]).await;
    let audit = s.audit().await;
    let reserved = &audit.orders[0].transitions()[0];
    assert_eq!(
        reserved.cause,
        stampede_core::Cause::Worker { job: crashed.job },
        "the same job, redelivered"
    );
    assert!(
        reserved.at.0 >= 400,
        "not before the lease lapsed (at {})",
        reserved.at
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_intent_redelivered_after_a_crash_records_the_replay_unless_ack_only() {
    // Proves: a worker that created the order's intent at the PSP and crashed before recording it
    // leaves its job to be redelivered; the PSP replays the intent and the reference records it
    // (the customer is offered payment: payment_pending). With intent_replay=ack-only the
    // redelivery acks without recording: the order sits inventory_reserved until its reservation
    // lapses (cancelled_expired) and is never offered payment. Either way the PSP holds one intent.
    let mut ack_only = Design::reference();
    ack_only.apply("intent_replay=ack-only").unwrap();
    for (design, ends) in [
        (Design::reference(), "payment_pending"),
        (ack_only, "cancelled_expired"),
    ] {
        let mut c = config(design);
        c.workers = 0;
        c.shop.reservation_ttl_ms = Some(1_500);
        let (mut stack, s) = start(c).await;
        let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
        let store = std::sync::Arc::clone(&stack.app.store);
        let reserve = store.lease_job().await.unwrap().expect("the reserve job");
        let cause = stampede_core::Cause::Worker { job: reserve.job };
        store.reserve(reserve.order, cause).await.unwrap();
        store.ack_job(reserve).await.unwrap();
        let crashed = store.lease_job().await.unwrap().expect("the intent job");
        assert_eq!(crashed.kind, stampede_core::JobKind::CreateIntent);
        let order = store.get_order(crashed.order).await.unwrap().unwrap();
        let created = stampede_server::create_intent(&stack.app, &order)
            .await
            .unwrap();
        assert!(!created.replayed, "the first delivery created it");
        // The worker dies here: no record, no ack. Its lease lapses after 400 ms.
        stack.start_workers(1, 7, fast_workers());
        let ended = s
            .wait_for(&id, &["payment_pending", "cancelled_expired"])
            .await;
        assert_eq!(ended, ends, "{design}");
        let audit = s.audit().await;
        let offered = audit.orders[0]
            .transitions()
            .iter()
            .any(|t| t.to == stampede_core::OrderStatus::PaymentPending);
        assert_eq!(offered, ends == "payment_pending", "{design}");
        let intents = s.psp.intents_for_order(order.id).await.unwrap();
        assert_eq!(intents.len(), 1, "{design}");
        stack.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_reservation_returns_stock_and_a_late_payment_is_refunded() {
    // Proves: an unpaid order's reservation lapses (stock back, order cancelled_expired); when the
    // customer pays afterwards the money is refunded and the order ends refunded.
    let mut c = config(Design::reference());
    c.shop.reservation_ttl_ms = Some(500);
    let (mut stack, s) = start(c).await;
    let before = s.available(TEE).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 3).await);
    s.wait_for(&id, &["payment_pending"]).await;
    let started: Value = s.pay(&id, "pay-1").await.json().unwrap();
    assert_eq!(s.available(TEE).await, before - 3);
    // Stop the job workers so the intent is not cancelled at the PSP before the customer pays
    // late; the sweeper (not a job worker) still expires the reservation.
    while stack.kill_worker() > 0 {}
    s.wait_for(&id, &["cancelled_expired"]).await;
    assert_eq!(s.available(TEE).await, before);
    let intent = IntentId::new(started["intent_id"].as_str().unwrap()).unwrap();
    s.psp
        .confirm(&intent, started["client_secret"].as_str().unwrap(), false)
        .await
        .expect("the late payment is taken");
    stack.start_workers(2, 3, fast_workers());
    assert_eq!(s.wait_for(&id, &["refunded"]).await, "refunded");
    let kinds: Vec<_> = s
        .psp
        .ledger()
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            stampede_core::LedgerKind::Charge,
            stampede_core::LedgerKind::Refund
        ]
    );
    assert_eq!(
        s.available(TEE).await,
        before,
        "refunding does not touch stock again"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_captured_on_an_intent_that_cannot_be_the_orders_payment_is_refunded() {
    // Proves (found from outside: a 1-cent intent created at the PSP for a 5,000-cent order
    // confirmed it, and a second full charge was kept): a 1-cent capture on another intent
    // moves nothing and is refunded; a capture for the total pays the order; the customer's
    // payment on the intent `/pay` gave them, after it, is refunded — the order keeps exactly
    // one charge.
    let (stack, s) = start(config(Design::reference())).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 2).await);
    s.wait_for(&id, &["payment_pending"]).await;
    let order = stampede_core::OrderId(id.trim_start_matches("ord_").parse().unwrap());
    let s = &s;
    let pay_other = |amount: u64| async move {
        let other = s
            .psp
            .create_intent(order, stampede_core::Cents(amount), None, None)
            .await
            .unwrap();
        s.psp
            .confirm(&other.intent.id, &other.client_secret, false)
            .await
            .expect("the payment is taken");
    };
    let refunds = |n: usize| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ledger = s.psp.ledger().await.unwrap();
            let mut refunded: Vec<u64> = ledger
                .iter()
                .filter(|e| e.kind == stampede_core::LedgerKind::Refund)
                .map(|e| e.amount.0)
                .collect();
            if refunded.len() >= n {
                refunded.sort_unstable();
                return refunded;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not refunded: {ledger:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    pay_other(1).await;
    assert_eq!(refunds(1).await, [1]);
    assert_eq!(s.status(&id).await, "payment_pending", "paid by a cent");
    let started: Value = s.pay(&id, "pay-1").await.json().unwrap();
    pay_other(5_000).await;
    assert_eq!(s.wait_for(&id, &["confirmed"]).await, "confirmed");
    let own = IntentId::new(started["intent_id"].as_str().unwrap()).unwrap();
    s.psp
        .confirm(&own, started["client_secret"].as_str().unwrap(), false)
        .await
        .expect("the customer's own payment is taken");
    assert_eq!(refunds(2).await, [1, 5_000]);
    let ledger = s.psp.ledger().await.unwrap();
    let net: i64 = ledger
        .iter()
        .map(|e| match e.kind {
            stampede_core::LedgerKind::Charge => e.amount.0 as i64,
            stampede_core::LedgerKind::Refund => -(e.amount.0 as i64),
        })
        .sum();
    assert_eq!(net, 5_000, "{ledger:?}");
    assert_eq!(s.status(&id).await, "confirmed");
    stack.shutdown().await;
}

/// The value of the counter `stampede_{name}` in `/metrics`.
async fn metric(s: &Shopper, name: &str) -> u64 {
    let metrics = String::from_utf8(s.get("/metrics").await.body.to_vec()).unwrap();
    let prefix = format!("stampede_{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

/// A stack selling one unit of the hot SKU, with reservations held for 500 ms.
fn one_unit(design: Design) -> StackConfig {
    let mut c = config(design);
    c.catalog = vec![(
        stampede_core::Product {
            sku: Sku::new(HOT).unwrap(),
            name: "hot".into(),
            price: stampede_core::Cents(19_900),
            max_qty_per_order: 1,
            per_customer_limit: None,
        },
        1,
    )];
    c.shop.reservation_ttl_ms = Some(500);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_waits_for_an_abandoned_cart_unless_sold_out_is_decided_from_reservations() {
    // Proves: with the only unit held by Alice's unpaid order, the reference does not turn Bob
    // away: his reserve step waits (counted in stampede_stock_waits_total) and he is offered
    // payment once Alice's hold lapses. With sold_out=from-reservations Bob is cancelled out of
    // stock while the unit is only held, no wait is counted, and once Alice's hold lapses the
    // unit is back on the shelf with nobody to buy it.
    let mut naive = Design::reference();
    naive.apply("sold_out=from-reservations").unwrap();
    for (design, bob_ends, unsold) in [
        (Design::reference(), "payment_pending", 0),
        (naive, "cancelled_out_of_stock", 1),
    ] {
        let (stack, s) = start(one_unit(design)).await;
        let alice = order_id(&s.order("k-a", "alice", HOT, 1).await);
        s.wait_for(&alice, &["payment_pending"]).await;
        let bob = order_id(&s.order("k-b", "bob", HOT, 1).await);
        let ended = s
            .wait_for(&bob, &["payment_pending", "cancelled_out_of_stock"])
            .await;
        assert_eq!(ended, bob_ends, "{design}");
        s.wait_for(&alice, &["cancelled_expired"]).await;
        let waits = metric(&s, "stock_waits_total").await;
        assert_eq!(waits > 0, unsold == 0, "{design}: {waits} waits");
        assert_eq!(s.available(HOT).await, unsold, "{design}");
        stack.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_ttl_short_holds_carts_a_quarter_of_the_configured_ttl() {
    // Proves: the design's reservation_ttl reaches the store: with a configured TTL of 2 s a
    // reservation lapses 2 s after the payment offer (the hold runs from it) under `on`, 0.5 s
    // under `short`, never under `off`.
    for (value, lifetime_ms) in [("on", Some(2_000)), ("short", Some(500)), ("off", None)] {
        let mut design = Design::reference();
        design.set("reservation_ttl", value).unwrap();
        let mut c = config(design);
        c.shop.reservation_ttl_ms = Some(2_000);
        let (stack, s) = start(c).await;
        let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
        s.wait_for(&id, &["payment_pending"]).await;
        let audit = s.audit().await;
        let held = &audit.reservations[0];
        let offered = audit.orders[0]
            .transitions()
            .iter()
            .find(|t| t.to == stampede_core::OrderStatus::PaymentPending)
            .expect("offered")
            .at;
        assert_eq!(
            held.expires_at.map(|at| at.since(offered)),
            lifetime_ms,
            "reservation_ttl={value}"
        );
        stack.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabotage_no_payment_offer_leaves_orders_reserved_until_they_expire() {
    // Proves: with sabotage=no-payment-offer the CreateIntent step skips reserved orders: the
    // order is reserved, never offered payment (no intent at the PSP), and expires.
    let mut design = Design::reference();
    design.apply("sabotage=no-payment-offer").unwrap();
    let mut c = config(design);
    c.shop.reservation_ttl_ms = Some(500);
    let (stack, s) = start(c).await;
    let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
    assert_eq!(
        s.wait_for(&id, &["payment_pending", "cancelled_expired"])
            .await,
        "cancelled_expired"
    );
    let audit = s.audit().await;
    let path: Vec<_> = audit.orders[0].transitions().iter().map(|t| t.to).collect();
    assert_eq!(
        path,
        [
            stampede_core::OrderStatus::InventoryReserved,
            stampede_core::OrderStatus::Cancelled(stampede_core::CancelReason::Expired)
        ]
    );
    let order = OrderId::parse(&id).unwrap();
    assert!(s.psp.intents_for_order(order).await.unwrap().is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabotage_no_refunds_keeps_a_late_payment_the_reference_refunds() {
    // Proves: a payment that arrives after its order expired is refunded by the reference within
    // 1.5 s (ledger: charge, refund; order refunded), while with sabotage=no-refunds, given the
    // same time, the ledger holds the charge alone and the order stays cancelled_expired.
    let mut sabotaged = Design::reference();
    sabotaged.apply("sabotage=no-refunds").unwrap();
    use stampede_core::LedgerKind::{Charge, Refund};
    for (design, ledger, ends) in [
        (Design::reference(), vec![Charge, Refund], "refunded"),
        (sabotaged, vec![Charge], "cancelled_expired"),
    ] {
        let mut c = config(design);
        c.shop.reservation_ttl_ms = Some(500);
        let (mut stack, s) = start(c).await;
        let id = order_id(&s.order("k-1", "alice", TEE, 1).await);
        s.wait_for(&id, &["payment_pending"]).await;
        let started: Value = s.pay(&id, "pay-1").await.json().unwrap();
        while stack.kill_worker() > 0 {}
        s.wait_for(&id, &["cancelled_expired"]).await;
        let intent = IntentId::new(started["intent_id"].as_str().unwrap()).unwrap();
        s.psp
            .confirm(&intent, started["client_secret"].as_str().unwrap(), false)
            .await
            .expect("the late payment is taken");
        stack.start_workers(2, 3, fast_workers());
        // The webhook, the refund job and several reconciler passes (200 ms each) fit in this.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let kinds: Vec<_> = s
            .psp
            .ledger()
            .await
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ledger, "{design}");
        assert_eq!(s.status(&id).await, ends, "{design}");
        stack.shutdown().await;
    }
}

/// What a client was told by `POST /v1/orders`, as the response said it.
fn reply_to_order(response: &HttpResponse) -> ClientReply {
    if response.status == StatusCode::ACCEPTED {
        return ClientReply::OrderAccepted {
            order: OrderId::parse(&order_id(response)).unwrap(),
            replayed: response
                .headers
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true"),
        };
    }
    let problem: Value = response.json().unwrap_or(Value::Null);
    ClientReply::Refused {
        status: response.status.as_u16(),
        problem: problem["type"].as_str().unwrap_or_default().to_string(),
    }
}

/// Runs `shoppers` concurrent shoppers for `stock` units of the hot SKU, each paying, waits for the
/// world to settle, and judges every invariant on what clients were told, the PSP ledger and the audit.
async fn flash_sale(design: Design, shoppers: u32) -> (Vec<stampede_core::Verdict>, AuditSnapshot) {
    let mut c = config(design);
    c.catalog = vec![(
        stampede_core::Product {
            sku: Sku::new(HOT).unwrap(),
            name: "hot".into(),
            price: stampede_core::Cents(19_900),
            max_qty_per_order: 2,
            per_customer_limit: None,
        },
        20,
    )];
    c.shop.reservation_ttl_ms = Some(2_000);
    c.workers = 8;
    let (stack, s) = start(c).await;
    let mut history = History::new();
    history.push(
        Millis(0),
        EventKind::Listed {
            sku: Sku::new(HOT).unwrap(),
            price: stampede_core::Cents(19_900),
            limit: None,
        },
    );
    history.push(
        Millis(0),
        EventKind::Stocked {
            sku: Sku::new(HOT).unwrap(),
            qty: 20,
        },
    );
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..shoppers {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let key = format!("flash-{i}");
            let response = s.order(&key, &format!("c{i}"), HOT, 1).await;
            let reply = reply_to_order(&response);
            if let ClientReply::OrderAccepted { order, .. } = &reply
                && s.wait_for(
                    &order.to_string(),
                    &["payment_pending", "cancelled_out_of_stock"],
                )
                .await
                    == "payment_pending"
            {
                s.pay_and_confirm(&order.to_string(), false).await;
            }
            (i, key, reply)
        }));
    }
    for (req, task) in tasks.into_iter().enumerate() {
        let (i, key, reply) = task.await.unwrap();
        let request = PlaceOrder {
            key: Some(IdempotencyKey::new(key).unwrap()),
            customer: CustomerId::new(format!("c{i}")).unwrap(),
            items: vec![ItemRequest {
                sku: Sku::new(HOT).unwrap(),
                qty: 1,
            }],
            express: false,
        };
        let fingerprint = Some(request.fingerprint());
        history.push(
            Millis(1),
            EventKind::Request {
                req: req as u64,
                op: ClientOp::PlaceOrder(request),
                fingerprint,
            },
        );
        history.push(
            Millis(1),
            EventKind::Response {
                req: req as u64,
                reply,
            },
        );
    }
    // Settle: every order final and no jobs left (bounded: 15 s).
    for _ in 0..1_500 {
        let audit = s.audit().await;
        if audit.orders.iter().all(|o| o.status().is_final()) && audit.jobs_live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let audit = s.audit().await;
    for order in &audit.orders {
        for t in order.transitions() {
            history.push(t.at, EventKind::Transition(t.clone()));
        }
    }
    for entry in s.psp.ledger().await.unwrap() {
        history.push(entry.at, EventKind::Ledger(entry));
    }
    stack.shutdown().await;
    (check_all(&history, &audit), audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shoppers_racing_for_small_stock_never_oversell_or_double_charge() {
    // Proves: 120 concurrent shoppers for 20 units on the reference design: every invariant holds.
    let (verdicts, _) = flash_sale(Design::reference(), 120).await;
    assert_eq!(verdicts.len(), Invariant::ALL.len());
    for v in &verdicts {
        assert!(
            !v.is_violated(),
            "{} violated: {:?}",
            v.invariant,
            v.violations()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_textbook_naive_design_oversells_under_the_same_race() {
    // Proves: the same flash sale against the textbook-naive design (read-then-write inventory
    // among its mistakes) sells more of the hot SKU than was received — more than 20 units end
    // in paid or confirmed orders — and the checker names it: no_oversell on that SKU.
    let (verdicts, audit) = flash_sale(Design::preset("textbook-naive").unwrap(), 120).await;
    let hot = Sku::new(HOT).unwrap();
    let promised: u32 = audit
        .orders
        .iter()
        .filter(|o| {
            matches!(
                o.status(),
                stampede_core::OrderStatus::Paid | stampede_core::OrderStatus::Confirmed
            )
        })
        .map(|o| o.qty_of(&hot))
        .sum();
    assert!(
        promised > 20,
        "only {promised} units paid for: no race happened"
    );
    let oversell = verdicts
        .iter()
        .find(|v| v.invariant == Invariant::NoOversell)
        .expect("no_oversell is judged");
    assert!(
        oversell
            .violations()
            .iter()
            .any(|v| v.subject == stampede_core::Subject::Sku(hot.clone())),
        "{promised} units paid for but no_oversell did not name {HOT}: {oversell:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_sheds_beyond_the_undecided_bound_with_retry_after_and_degrades_catalog_reads() {
    // Proves: with no workers (nothing gets decided) and at most 2 undecided orders, two orders
    // are accepted and the third is shed — 429 problem+json `overloaded` with `Retry-After: 2`
    // (2,000 ms rounded up), nothing created — and counted in /metrics; while the shop is
    // shedding, the catalog is served from a copy (marked `Stampede-Degraded: cached`) that does
    // not see the stock the accepted orders will take, and with degrade mode off it is read live.
    for max_age_ms in [60_000, 0] {
        let mut c = config(Design::reference());
        c.workers = 0;
        c.shop.admission.max_undecided_orders = Some(2);
        c.shop.admission.shed_retry_after_ms = 2_000;
        c.server.degraded_read_max_age_ms = max_age_ms;
        let (stack, s) = start(c).await;
        let before = s.get("/v1/products").await;
        assert!(before.headers.get("stampede-degraded").is_none());
        for n in 1..=2 {
            let accepted = s.order(&format!("k{n}"), "alice", TEE, 1).await;
            assert_eq!(accepted.status, StatusCode::ACCEPTED);
        }
        let shed = s.order("k3", "bob", TEE, 1).await;
        is_problem(&shed, StatusCode::TOO_MANY_REQUESTS, "overloaded");
        assert_eq!(shed.headers.get("retry-after").unwrap(), "2");
        assert_eq!(
            s.audit().await.orders.len(),
            2,
            "a shed order creates nothing"
        );
        assert_eq!(metric(&s, "orders_admitted_total").await, 2);
        assert_eq!(metric(&s, "orders_shed_total").await, 1);
        // Restock the tee: a live read sees it, the degraded copy does not.
        let restock = s
            .post(
                "/admin/restock",
                &[("authorization", format!("Bearer {ADMIN}"))],
                &json!({ "sku": TEE, "qty": 7 }).to_string(),
            )
            .await;
        assert_eq!(restock.status, StatusCode::OK, "{restock:?}");
        let during = s.get(&format!("/v1/products/{TEE}")).await;
        let cached = during.headers.get("stampede-degraded").is_some();
        let body: Value = serde_json::from_slice(&during.body).unwrap();
        let listed: Value = serde_json::from_slice(&before.body).unwrap();
        let was = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["sku"] == TEE)
            .unwrap()["available"]
            .as_u64()
            .unwrap();
        if max_age_ms > 0 {
            assert!(cached, "served from the copy under pressure");
            assert_eq!(body["available"].as_u64(), Some(was));
            assert_eq!(metric(&s, "degraded_reads_total").await, 1);
        } else {
            assert!(!cached, "degrade mode off reads the store");
            assert_eq!(body["available"].as_u64(), Some(was + 7));
        }
        stack.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_sku_is_refused_at_once_and_a_customer_over_its_rate_is_told_to_wait() {
    // Proves: once the only unit is paid for, a new order for it is refused at once with 409
    // `sold-out` (no order created) and counted; a customer allowed 2 orders a minute gets 429
    // `rate-limited` with a Retry-After of at most 60 s on the third, while another customer
    // still gets in.
    let mut c = one_unit(Design::reference());
    c.shop.admission.customer_orders_max = Some(2);
    c.catalog.push((
        stampede_core::Product {
            sku: Sku::new(TEE).unwrap(),
            name: "tee".into(),
            price: stampede_core::Cents(2_500),
            max_qty_per_order: 5,
            per_customer_limit: None,
        },
        100,
    ));
    let (stack, s) = start(c).await;
    let alice = order_id(&s.order("k-a", "alice", HOT, 1).await);
    s.wait_for(&alice, &["payment_pending"]).await;
    s.pay_and_confirm(&alice, false).await;
    s.wait_for(&alice, &["confirmed"]).await;
    let late = s.order("k-b", "bob", HOT, 1).await;
    is_problem(&late, StatusCode::CONFLICT, "sold-out");
    assert_eq!(metric(&s, "orders_sold_out_total").await, 1);
    assert_eq!(
        s.audit().await.orders.len(),
        1,
        "a sold-out refusal creates nothing"
    );
    assert_eq!(
        s.order("k-c1", "carol", TEE, 1).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.order("k-c2", "carol", TEE, 1).await.status,
        StatusCode::ACCEPTED
    );
    let limited = s.order("k-c3", "carol", TEE, 1).await;
    is_problem(&limited, StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(metric(&s, "orders_rate_limited_total").await, 1);
    assert_eq!(
        s.order("k-d1", "dave", TEE, 1).await.status,
        StatusCode::ACCEPTED
    );
    stack.shutdown().await;
}

// Proves: a body over the limit is answered 413 problem+json even while the client is still
// sending it — the shop reads (and drops) the rest of a declared oversized body before it closes
// the connection, so the client's unread answer is not lost to a reset — and changes nothing:
// every one of 16 four-MiB bodies sent back to back (without the read,
// one of the first few loses its answer to a reset) gets its 413 and the key stays unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_answered_413_while_the_client_still_sends_it() {
    let (stack, s) = start(config(Design::reference())).await;
    let pad = "x".repeat(4 << 20);
    for i in 0..16 {
        let body = json!({"customer_id": "big", "items": [{"sku": HOT, "qty": 1}], "pad": pad})
            .to_string();
        let response = s
            .http
            .send(
                &s.shop,
                Method::POST,
                "/v1/orders",
                &[
                    ("content-type", "application/json".to_string()),
                    ("idempotency-key", format!("big-{i}")),
                ],
                Some(Bytes::from(body)),
            )
            .await
            .unwrap_or_else(|e| panic!("body {i}: no answer: {e}"));
        is_problem(&response, StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
    }
    let after = s.order("big-0", "big", HOT, 1).await;
    assert_eq!(
        after.status,
        StatusCode::ACCEPTED,
        "the key was left unused"
    );
    stack.shutdown().await;
}
