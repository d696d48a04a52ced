//! The fake PSP over real loopback sockets: idempotent intent creation,
//! charge-once confirmation, declines, cancels, full refunds, problem+json
//! for every bad request, and webhook delivery that is signed, duplicated,
//! retried, reordered, and replayable from the seed.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};
use stampede_core::{Cents, IntentId, IntentStatus, LedgerKind, Millis, OrderId, WebhookKind};
use stampede_server::psp::wire::{Card, WebhookPayload};
use stampede_server::psp::{
    ATTEMPT_HEADER, COPY_HEADER, CreatedIntent, Psp, PspClient, PspConfig, PspError,
    SIGNATURE_HEADER, WebhookTarget, router,
};
use stampede_server::{Clock, signature};
use stampede_server::{Connector, HttpClient, HttpResponse};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;
const SECRET: &[u8] = b"whsec_test";

/// Serves `app` on an ephemeral loopback port; returns `host:port`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr").to_string();
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

fn http() -> HttpClient {
    HttpClient::new(Connector::tokio(), Duration::from_secs(5))
}

/// A clock the test moves by hand.
#[derive(Clone, Default)]
struct HandClock(Arc<AtomicU64>);

impl HandClock {
    fn clock(&self) -> Clock {
        let now = self.0.clone();
        Clock::from_fn(EPOCH_UNIX_MS, move || Millis(now.load(Ordering::SeqCst)))
    }

    fn set(&self, at: Millis) {
        self.0.store(at.0, Ordering::SeqCst);
    }

    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

/// A running PSP: its books, its address, a typed client.
struct Running {
    psp: Arc<Psp>,
    addr: String,
    client: PspClient,
}

async fn start_psp(config: PspConfig, clock: Clock) -> Running {
    let psp = Psp::new(config, clock, Connector::tokio()).expect("valid config");
    tokio::spawn(psp.clone().run_delivery());
    let addr = serve(router(psp.clone())).await;
    let client = PspClient::new(http(), addr.clone());
    Running { psp, addr, client }
}

async fn plain_psp() -> Running {
    start_psp(PspConfig::default(), Clock::tokio(EPOCH_UNIX_MS)).await
}

/// Sends `body` as-is (it may be broken on purpose).
async fn raw_post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut all = vec![("content-type", "application/json".to_string())];
    all.extend(headers.iter().map(|(k, v)| (*k, v.to_string())));
    http()
        .send(
            addr,
            Method::POST,
            path,
            &all,
            Some(Bytes::from(body.to_string())),
        )
        .await
        .expect("PSP answers")
}

fn assert_problem(response: &HttpResponse, status: u16, slug: &str) {
    assert_eq!(response.status.as_u16(), status, "{response:?}");
    assert_eq!(
        response.headers["content-type"], "application/problem+json",
        "{response:?}"
    );
    let problem: Value = response.json().expect("problem body is JSON");
    assert_eq!(problem["status"], status);
    assert_eq!(
        problem["type"],
        format!("https://stampede.dev/problems/{slug}"),
        "{problem}"
    );
}

fn status_of(error: PspError) -> u16 {
    error
        .status()
        .unwrap_or_else(|| panic!("expected a status, got {error}"))
}

/// Polls `done` every 2 ms for up to 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test]
async fn the_same_key_returns_the_same_intent_and_a_different_body_is_422() {
    // Proves: a keyed create replays (same id, same secret, replay marker, which the client reports
    // as `replayed`; a first create is not) and binds the key to its body.
    let psp = plain_psp().await;
    let body = r#"{"order":"ord_1","amount":1234}"#;
    let first = raw_post(
        &psp.addr,
        "/v1/payment_intents",
        &[("idempotency-key", "pay_ord_1")],
        body,
    )
    .await;
    let again = raw_post(
        &psp.addr,
        "/v1/payment_intents",
        &[("idempotency-key", "pay_ord_1")],
        body,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, again.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let intent: Value = first.json().unwrap();
    assert_eq!(
        (
            &intent["id"],
            &intent["order"],
            &intent["amount"],
            &intent["status"],
            &intent["refunded"]
        ),
        (
            &json!("pi_1"),
            &json!("ord_1"),
            &json!(1234),
            &json!("requires_payment"),
            &json!(0)
        )
    );
    assert!(
        intent["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("pi_1_secret_")
    );

    let other = raw_post(
        &psp.addr,
        "/v1/payment_intents",
        &[("idempotency-key", "pay_ord_1")],
        r#"{"order":"ord_1","amount":999}"#,
    )
    .await;
    assert_problem(&other, 422, "idempotency-key-reused");
    assert_eq!(psp.psp.intents().len(), 1);

    let replay = psp
        .client
        .create_intent(OrderId(1), Cents(1234), Some("pay_ord_1"), None)
        .await
        .unwrap();
    assert_eq!(replay.intent.id.as_str(), "pi_1");
    assert_eq!(
        replay.client_secret,
        intent["client_secret"].as_str().unwrap()
    );
    assert!(replay.replayed, "the client reads Idempotent-Replayed");
    let fresh = psp
        .client
        .create_intent(OrderId(2), Cents(1234), Some("pay_ord_2"), None)
        .await
        .unwrap();
    assert!(
        !fresh.replayed,
        "a first create under its key is not a replay"
    );
}

#[tokio::test]
async fn keyless_creates_make_a_new_intent_every_time() {
    // Proves: without an Idempotency-Key the naive shop's retry really creates a second intent,
    // and no answer is marked replayed.
    let psp = plain_psp().await;
    let CreatedIntent {
        intent: a,
        client_secret: secret_a,
        ..
    } = psp
        .client
        .create_intent(OrderId(7), Cents(500), None, None)
        .await
        .unwrap();
    let CreatedIntent {
        intent: b,
        client_secret: secret_b,
        replayed,
    } = psp
        .client
        .create_intent(OrderId(7), Cents(500), None, None)
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_ne!(secret_a, secret_b);
    assert!(!replayed, "a keyless repeat is a new intent, not a replay");
    let for_order = psp.client.intents_for_order(OrderId(7)).await.unwrap();
    assert_eq!(for_order, vec![a, b]);
}

#[tokio::test]
async fn confirm_charges_exactly_once() {
    // Proves: the first confirm captures and writes one Charge; a second confirm is 409 and writes nothing.
    let psp = plain_psp().await;
    let CreatedIntent {
        intent,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(1), Cents(1234), Some("pay_ord_1"), None)
        .await
        .unwrap();
    let paid = psp
        .client
        .confirm(&intent.id, &secret, false)
        .await
        .unwrap();
    assert_eq!(paid.status, IntentStatus::Succeeded);
    let again = psp
        .client
        .confirm(&intent.id, &secret, false)
        .await
        .unwrap_err();
    assert_eq!(status_of(again), 409);
    let ledger = psp.client.ledger().await.unwrap();
    assert_eq!(ledger, psp.psp.ledger());
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (
            ledger[0].seq,
            ledger[0].kind,
            ledger[0].amount,
            ledger[0].order,
            &ledger[0].intent
        ),
        (1, LedgerKind::Charge, Cents(1234), OrderId(1), &intent.id)
    );
    let events = psp.psp.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].to_event(Millis(0)).unwrap().kind,
        WebhookKind::PaymentSucceeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_card_is_charged_at_creation_and_a_stall_loses_only_the_answer() {
    // Proves: confirm_with charges when the intent is created (one Charge, one event, the
    // answer says succeeded, a keyed repeat replays it); during a stall the charge still
    // happens but a caller with a shorter timeout never hears about it.
    let psp = plain_psp().await;
    let CreatedIntent { intent, .. } = psp
        .client
        .create_intent(OrderId(1), Cents(700), Some("pay_ord_1"), Some(Card::Ok))
        .await
        .unwrap();
    assert_eq!(intent.status, IntentStatus::Succeeded);
    let CreatedIntent { intent: again, .. } = psp
        .client
        .create_intent(OrderId(1), Cents(700), Some("pay_ord_1"), Some(Card::Ok))
        .await
        .unwrap();
    assert_eq!(again, intent, "a keyed repeat replays the charged intent");
    assert_eq!(psp.psp.ledger().len(), 1);
    assert_eq!(psp.psp.events().len(), 1);

    // An hour-long brownout (the held answer outlives the test, not the other way round).
    psp.psp.stall_responses_until(Millis(60 * 60 * 1000));
    let impatient = PspClient::new(
        HttpClient::new(Connector::tokio(), Duration::from_millis(200)),
        psp.addr.clone(),
    );
    let lost = impatient
        .create_intent(OrderId(2), Cents(300), Some("pay_ord_2"), Some(Card::Ok))
        .await;
    assert!(
        lost.is_err(),
        "the answer is held back past the caller's timeout"
    );
    assert_eq!(psp.psp.ledger().len(), 2, "the charge was made anyway");
    assert_eq!(psp.psp.events().len(), 2, "and its event emitted");
}

#[tokio::test]
async fn a_declined_card_fails_the_intent_without_a_charge() {
    // Proves: decline -> failed, a payment_failed event, no ledger line, and no second try.
    let psp = plain_psp().await;
    let CreatedIntent {
        intent,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(2), Cents(800), None, None)
        .await
        .unwrap();
    let failed = psp.client.confirm(&intent.id, &secret, true).await.unwrap();
    assert_eq!(failed.status, IntentStatus::Failed);
    assert!(psp.psp.ledger().is_empty());
    let events = psp.psp.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].r#type, "payment_intent.payment_failed");
    let retry = psp
        .client
        .confirm(&intent.id, &secret, false)
        .await
        .unwrap_err();
    assert_eq!(status_of(retry), 409);
}

#[tokio::test]
async fn a_wrong_client_secret_is_403_and_changes_nothing() {
    // Proves: only the holder of the intent's secret can pay it; another intent's secret does not work.
    let psp = plain_psp().await;
    let CreatedIntent { intent: a, .. } = psp
        .client
        .create_intent(OrderId(1), Cents(100), None, None)
        .await
        .unwrap();
    let CreatedIntent {
        client_secret: secret_b,
        ..
    } = psp
        .client
        .create_intent(OrderId(2), Cents(100), None, None)
        .await
        .unwrap();
    let refused = psp
        .client
        .confirm(&a.id, &secret_b, false)
        .await
        .unwrap_err();
    let PspError::Status {
        status: 403,
        problem: Some(problem),
    } = refused
    else {
        panic!("expected 403 with a problem, got {refused:?}");
    };
    assert_eq!(problem.slug(), "wrong-client-secret");
    assert_eq!(
        psp.client.get_intent(&a.id).await.unwrap().status,
        IntentStatus::RequiresPayment
    );
    assert!(psp.psp.ledger().is_empty() && psp.psp.events().is_empty());
    let missing = psp
        .client
        .get_intent(&IntentId::new("pi_99").unwrap())
        .await
        .unwrap_err();
    assert_eq!(status_of(missing), 404);
}

#[tokio::test]
async fn only_an_unpaid_intent_can_be_canceled() {
    // Proves: cancel moves requires_payment to canceled (idempotently), blocks a later confirm, and refuses a paid intent.
    let psp = plain_psp().await;
    let CreatedIntent {
        intent: open,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(1), Cents(100), None, None)
        .await
        .unwrap();
    let canceled = psp.client.cancel(&open.id).await.unwrap();
    assert_eq!(canceled.status, IntentStatus::Canceled);
    assert_eq!(psp.client.cancel(&open.id).await.unwrap(), canceled);
    assert_eq!(
        status_of(
            psp.client
                .confirm(&open.id, &secret, false)
                .await
                .unwrap_err()
        ),
        409
    );

    let CreatedIntent {
        intent: paid,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(2), Cents(100), None, None)
        .await
        .unwrap();
    psp.client.confirm(&paid.id, &secret, false).await.unwrap();
    let refused = raw_post(
        &psp.addr,
        &format!("/v1/payment_intents/{}/cancel", paid.id),
        &[],
        "",
    )
    .await;
    assert_problem(&refused, 409, "intent-status-conflict");
    assert_eq!(
        psp.client.get_intent(&paid.id).await.unwrap().status,
        IntentStatus::Succeeded
    );
}

#[tokio::test]
async fn a_refund_returns_the_whole_capture_once_and_replays_by_key() {
    // Proves: a refund writes one Refund line for the net capture; its key replays; nothing is refunded twice.
    let psp = plain_psp().await;
    let CreatedIntent {
        intent,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(3), Cents(2500), Some("pay_ord_3"), None)
        .await
        .unwrap();

    let early = psp.client.refund(&intent.id, "refund_ord_3").await.unwrap();
    assert_eq!(
        (early.status, early.refunded),
        (IntentStatus::RequiresPayment, Cents::ZERO)
    );
    assert!(psp.psp.ledger().is_empty());

    psp.client
        .confirm(&intent.id, &secret, false)
        .await
        .unwrap();
    let refunded = psp.client.refund(&intent.id, "refund_ord_3").await.unwrap();
    assert_eq!(
        (refunded.status, refunded.refunded),
        (IntentStatus::Succeeded, Cents(2500))
    );
    let replay = raw_post(
        &psp.addr,
        "/v1/refunds",
        &[("idempotency-key", "refund_ord_3")],
        &format!(r#"{{"intent":"{}"}}"#, intent.id),
    )
    .await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let fresh_key = psp.client.refund(&intent.id, "refund_again").await.unwrap();
    assert_eq!(fresh_key, refunded);

    let kinds: Vec<_> = psp
        .client
        .ledger()
        .await
        .unwrap()
        .iter()
        .map(|l| (l.seq, l.kind, l.amount))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, LedgerKind::Charge, Cents(2500)),
            (2, LedgerKind::Refund, Cents(2500))
        ]
    );
    let types: Vec<_> = psp.psp.events().into_iter().map(|e| e.r#type).collect();
    assert_eq!(types, vec!["payment_intent.succeeded", "charge.refunded"]);

    let CreatedIntent { intent: other, .. } = psp
        .client
        .create_intent(OrderId(4), Cents(10), None, None)
        .await
        .unwrap();
    let reused = psp
        .client
        .refund(&other.id, "refund_ord_3")
        .await
        .unwrap_err();
    assert_eq!(status_of(reused), 422);
    let missing = psp
        .client
        .refund(&IntentId::new("pi_77").unwrap(), "k")
        .await
        .unwrap_err();
    assert_eq!(status_of(missing), 404);
}

#[tokio::test]
async fn bad_requests_are_problem_json_and_change_nothing() {
    // Proves: malformed JSON, bodies that are not objects, unknown fields, bad ids, bad amounts, bad keys, big bodies and unknown routes are problem+json.
    let psp = plain_psp().await;
    let create = "/v1/payment_intents";
    for (headers, body, status, slug) in [
        (
            vec![],
            r#"{"order":"ord_1","amount":"#,
            400,
            "malformed-json",
        ),
        (
            vec![],
            r#"{"order":"ord_1","amount":5,"currency":"eur"}"#,
            400,
            "malformed-json",
        ),
        (vec![], r#"{"order":1,"amount":5}"#, 400, "malformed-json"),
        // A struct written as an array (serde alone would take it) or a bare value.
        (vec![], r#"["ord_1",5]"#, 400, "malformed-json"),
        (vec![], r#""ord_1""#, 400, "malformed-json"),
        (
            vec![],
            r#"{"order":"order_1","amount":5}"#,
            400,
            "malformed-json",
        ),
        (
            vec![],
            r#"{"order":"ord_1","amount":-5}"#,
            400,
            "invalid-amount",
        ),
        (
            vec![],
            r#"{"order":"ord_1","amount":99999999999999999999999}"#,
            400,
            "invalid-amount",
        ),
        // Ambiguous: the shop would not know which order the intent pays for.
        (
            vec![],
            r#"{"order":"ord_1","order":"ord_2","amount":5}"#,
            400,
            "malformed-json",
        ),
        (
            vec![("idempotency-key", "k-1"), ("idempotency-key", "k-2")],
            r#"{"order":"ord_1","amount":5}"#,
            400,
            "invalid-idempotency-key",
        ),
        (
            vec![],
            r#"{"order":"ord_1","amount":0}"#,
            400,
            "invalid-amount",
        ),
        (
            vec![],
            r#"{"order":"ord_1","amount":100000000}"#,
            400,
            "invalid-amount",
        ),
        (
            vec![("idempotency-key", "")],
            r#"{"order":"ord_1","amount":5}"#,
            400,
            "invalid-idempotency-key",
        ),
    ] {
        let response = raw_post(&psp.addr, create, &headers, body).await;
        assert_problem(&response, status, slug);
    }
    let plain = http()
        .send(
            &psp.addr,
            Method::POST,
            create,
            &[("content-type", "text/plain".to_string())],
            // A bad amount in a body not sent as JSON: the media type is what is wrong first.
            Some(Bytes::from_static(br#"{"order":"ord_1","amount":-5}"#)),
        )
        .await
        .expect("PSP answers");
    assert_problem(&plain, 415, "unsupported-media-type");
    let long_key = "k".repeat(256);
    let response = raw_post(
        &psp.addr,
        create,
        &[("idempotency-key", &long_key)],
        r#"{"order":"ord_1","amount":5}"#,
    )
    .await;
    assert_problem(&response, 400, "invalid-idempotency-key");
    let huge = format!(
        r#"{{"order":"ord_1","amount":5,"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_problem(
        &raw_post(&psp.addr, create, &[], &huge).await,
        413,
        "body-too-large",
    );

    let CreatedIntent {
        intent,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(1), Cents(5), None, None)
        .await
        .unwrap();
    let confirm = format!("/v1/payment_intents/{}/confirm", intent.id);
    let body = format!(r#"{{"client_secret":"{secret}","card":"stolen"}}"#);
    assert_problem(
        &raw_post(&psp.addr, &confirm, &[], &body).await,
        400,
        "malformed-json",
    );
    assert_problem(
        &raw_post(&psp.addr, "/v1/refunds", &[], r#"{"intent":"pi/1"}"#).await,
        400,
        "malformed-json",
    );
    assert_problem(
        &raw_post(&psp.addr, "/v1/refunds", &[], r#"["pi_1"]"#).await,
        400,
        "malformed-json",
    );

    let get = |path: &'static str| {
        let addr = psp.addr.clone();
        async move { http().get(&addr, path).await.unwrap() }
    };
    assert_problem(
        &get("/v1/payment_intents?limit=0").await,
        400,
        "invalid-query",
    );
    assert_problem(
        &get("/v1/payment_intents?limit=1001").await,
        400,
        "invalid-query",
    );
    assert_problem(
        &get("/v1/payment_intents?after=pi_x").await,
        400,
        "invalid-query",
    );
    assert_problem(
        &get("/v1/payment_intents?colour=red").await,
        400,
        "invalid-query",
    );
    assert_problem(&get("/v1/nothing").await, 404, "not-found");
    // The contract's integers are int64: `after` up to i64::MAX pages (nothing after it),
    // one more is refused.
    let last = get("/v1/ledger?after=9223372036854775807").await;
    assert_eq!(last.status.as_u16(), 200, "{last:?}");
    assert_problem(
        &get("/v1/ledger?after=9223372036854775808").await,
        400,
        "invalid-query",
    );
    assert_problem(
        &raw_post(&psp.addr, "/v1/ledger", &[], "{}").await,
        405,
        "method-not-allowed",
    );

    assert_eq!(psp.psp.intents().len(), 1);
    assert!(psp.psp.ledger().is_empty());
}

#[tokio::test]
async fn intents_page_in_id_order_and_filter_by_order() {
    // Proves: listing pages through every intent in creation order, and order filtering crosses pages.
    let psp = start_psp(
        PspConfig {
            max_intents: 1_500,
            ..PspConfig::default()
        },
        Clock::tokio(EPOCH_UNIX_MS),
    )
    .await;
    for n in 1..=12u64 {
        psp.client
            .create_intent(OrderId(n % 2), Cents(n), None, None)
            .await
            .unwrap();
    }
    let first = psp.client.list_intents(None, 5).await.unwrap();
    let ids: Vec<_> = first.iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, ["pi_1", "pi_2", "pi_3", "pi_4", "pi_5"]);
    let next = psp
        .client
        .list_intents(Some(&first[4].id), 100)
        .await
        .unwrap();
    assert_eq!(next.len(), 7);
    assert_eq!(next[0].id.as_str(), "pi_6");
    let odd = psp.client.intents_for_order(OrderId(1)).await.unwrap();
    assert_eq!(odd.len(), 6);
    assert!(odd.iter().all(|i| i.order == OrderId(1)));
    // More than one page (1000) for a single order: the client follows has_more.
    for _ in 0..1_001 {
        psp.client
            .create_intent(OrderId(9), Cents(1), None, None)
            .await
            .unwrap();
    }
    assert_eq!(
        psp.client
            .intents_for_order(OrderId(9))
            .await
            .unwrap()
            .len(),
        1_001
    );
}

#[tokio::test]
async fn an_invalid_config_names_its_field() {
    // Proves: Psp::new refuses an out-of-range config with the field and the accepted range.
    let bad = PspConfig {
        duplicate_probability: 2.0,
        ..PspConfig::default()
    };
    let error = Psp::new(bad, Clock::tokio(0), Connector::tokio()).unwrap_err();
    assert_eq!(error.field, "duplicate_probability");
    assert!(error.to_string().contains("0.0..=1.0"), "{error}");
}

// ---------------------------------------------------------------- webhooks

/// One request the sink received.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Arrival {
    event: String,
    kind: String,
    copy: u32,
    attempt: u32,
    signed: bool,
    answered: u16,
}

/// A webhook receiver that records every request in arrival order and
/// answers 500 to request number `n` (from 0) when `fail(n)`.
#[derive(Clone)]
struct Sink {
    clock: Clock,
    fail: Arc<dyn Fn(usize) -> bool + Send + Sync>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl Sink {
    async fn start(
        clock: Clock,
        fail: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> (Sink, WebhookTarget) {
        let sink = Sink {
            clock,
            fail: Arc::new(fail),
            arrivals: Arc::default(),
        };
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(sink.clone());
        let target = WebhookTarget {
            addr: serve(app).await,
            path: "/hooks".into(),
        };
        (sink, target)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let signed = signature::verify(
        SECRET,
        &header(SIGNATURE_HEADER),
        &body,
        sink.clock.unix_secs(),
    )
    .is_ok();
    let payload: WebhookPayload = serde_json::from_slice(&body).expect("PSP sends a valid payload");
    payload
        .to_event(sink.clock.now())
        .expect("PSP sends a valid event");
    let mut arrivals = sink.arrivals.lock().unwrap();
    let answered = if (sink.fail)(arrivals.len()) {
        500
    } else {
        200
    };
    arrivals.push(Arrival {
        event: payload.id,
        kind: payload.r#type,
        copy: header(COPY_HEADER).parse().expect("copy header"),
        attempt: header(ATTEMPT_HEADER).parse().expect("attempt header"),
        signed,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

fn webhook_config(target: WebhookTarget) -> PspConfig {
    PspConfig {
        seed: 7,
        webhook: Some(target),
        secret: SECRET.to_vec(),
        delay_ms_min: 0,
        delay_ms_max: 5,
        retry_base_ms: 5,
        retry_max_ms: 20,
        request_timeout_ms: 2_000,
        ..PspConfig::default()
    }
}

/// Pays `n` intents (one event each).
async fn pay(client: &PspClient, n: u64) {
    for order in 1..=n {
        let CreatedIntent {
            intent,
            client_secret: secret,
            ..
        } = client
            .create_intent(OrderId(order), Cents(100 * order), None, None)
            .await
            .unwrap();
        client.confirm(&intent.id, &secret, false).await.unwrap();
    }
}

fn settled(psp: &Psp) -> bool {
    let stats = psp.delivery_stats();
    stats.scheduled == 0 && stats.in_flight == 0
}

#[tokio::test]
async fn webhooks_are_signed_with_the_shared_secret() {
    // Proves: each event reaches the target once (no duplication by default) with a Psp-Signature that verifies.
    let clock = Clock::tokio(EPOCH_UNIX_MS);
    let (sink, target) = Sink::start(clock.clone(), |_| false).await;
    let psp = start_psp(webhook_config(target), clock).await;
    pay(&psp.client, 3).await;
    eventually("3 deliveries", || psp.psp.delivery_stats().delivered == 3).await;
    let arrivals = sink.arrivals();
    assert!(
        arrivals
            .iter()
            .all(|a| a.signed && a.copy == 0 && a.attempt == 1),
        "{arrivals:?}"
    );
    let mut events: Vec<_> = arrivals.iter().map(|a| a.event.clone()).collect();
    events.sort();
    assert_eq!(events, ["evt_1", "evt_2", "evt_3"]);
    assert!(
        arrivals
            .iter()
            .all(|a| a.kind == "payment_intent.succeeded")
    );
}

#[tokio::test]
async fn duplicated_copies_share_their_event_id() {
    // Proves: duplicate_probability = 1 sends 2..=3 copies of every event, all with the event's id, counted in the stats.
    let clock = Clock::tokio(EPOCH_UNIX_MS);
    let (sink, target) = Sink::start(clock.clone(), |_| false).await;
    let config = PspConfig {
        duplicate_probability: 1.0,
        max_extra_copies: 2,
        ..webhook_config(target)
    };
    let psp = start_psp(config, clock).await;
    pay(&psp.client, 4).await;
    eventually("every copy delivered", || settled(&psp.psp)).await;
    let mut copies: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for arrival in sink.arrivals() {
        assert!(arrival.signed);
        copies.entry(arrival.event).or_default().push(arrival.copy);
    }
    assert_eq!(copies.len(), 4);
    let mut extra = 0;
    for (event, mut seen) in copies {
        seen.sort();
        assert!(seen.len() == 2 || seen.len() == 3, "{event}: {seen:?}");
        assert_eq!(seen, (0..seen.len() as u32).collect::<Vec<_>>(), "{event}");
        extra += seen.len() as u64 - 1;
    }
    let stats = psp.psp.delivery_stats();
    assert_eq!((stats.duplicates_sent, stats.delivered), (extra, 4 + extra));
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_after_retries() {
    // Proves: a receiver answering 500 three times gets the same event on the fourth attempt.
    let clock = Clock::tokio(EPOCH_UNIX_MS);
    let (sink, target) = Sink::start(clock.clone(), |n| n < 3).await;
    let psp = start_psp(webhook_config(target), clock).await;
    pay(&psp.client, 1).await;
    eventually("delivery after retries", || {
        psp.psp.delivery_stats().delivered == 1
    })
    .await;
    let attempts: Vec<_> = sink
        .arrivals()
        .iter()
        .map(|a| (a.event.clone(), a.attempt, a.answered))
        .collect();
    assert_eq!(
        attempts,
        [
            ("evt_1".to_string(), 1, 500),
            ("evt_1".into(), 2, 500),
            ("evt_1".into(), 3, 500),
            ("evt_1".into(), 4, 200)
        ]
    );
    let stats = psp.psp.delivery_stats();
    assert_eq!((stats.retried, stats.given_up), (3, 0));
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    // Proves: a receiver that always fails is tried max_attempts times, then the copy is counted as given up.
    let clock = Clock::tokio(EPOCH_UNIX_MS);
    let (sink, target) = Sink::start(clock.clone(), |_| true).await;
    let psp = start_psp(
        PspConfig {
            max_attempts: 3,
            ..webhook_config(target)
        },
        clock,
    )
    .await;
    pay(&psp.client, 1).await;
    eventually("give up", || psp.psp.delivery_stats().given_up == 1).await;
    assert_eq!(sink.arrivals().len(), 3);
    let stats = psp.psp.delivery_stats();
    assert_eq!((stats.retried, stats.delivered, stats.scheduled), (2, 0, 0));
}

/// Runs one seeded delivery to completion on a hand-driven clock, one due
/// time at a time, and returns what the sink saw in arrival order.
///
/// Each step moves the clock to the next due copy and waits until nothing
/// is due or in flight, so arrival order is the PSP's schedule, not a race
/// between sockets. Every step must start exactly one attempt: copies that
/// fall due in the same millisecond would race each other to the sink.
async fn seeded_run(seed: u64) -> Vec<Arrival> {
    let hand = HandClock::default();
    // Every fourth request fails, so the run includes retries.
    let (sink, target) = Sink::start(hand.clock(), |n| n % 4 == 3).await;
    let config = PspConfig {
        seed,
        duplicate_probability: 0.5,
        max_extra_copies: 2,
        delay_ms_min: 0,
        delay_ms_max: 1_000_000,
        retry_base_ms: 1_000,
        retry_max_ms: 100_000,
        ..webhook_config(target)
    };
    let psp = start_psp(config, hand.clock()).await;
    pay(&psp.client, 4).await;
    let CreatedIntent {
        intent,
        client_secret: secret,
        ..
    } = psp
        .client
        .create_intent(OrderId(5), Cents(5), None, None)
        .await
        .unwrap();
    psp.client.confirm(&intent.id, &secret, true).await.unwrap();
    psp.client
        .refund(&IntentId::new("pi_1").unwrap(), "refund_ord_1")
        .await
        .unwrap();
    assert_eq!(psp.psp.events().len(), 6);

    let mut steps = 0;
    while let Some(due) = psp.psp.next_delivery_due() {
        let before = sink.arrivals().len();
        hand.set(due);
        psp.psp.wake_delivery();
        let now = hand.now();
        let quiet = || {
            psp.psp.next_delivery_due().is_none_or(|d| d > now)
                && psp.psp.delivery_stats().in_flight == 0
        };
        eventually("the due copy to be attempted", quiet).await;
        assert_eq!(
            sink.arrivals().len(),
            before + 1,
            "one attempt per due time at {due}"
        );
        steps += 1;
        assert!(steps < 1_000, "delivery terminates");
    }
    let stats = psp.psp.delivery_stats();
    assert_eq!(stats.given_up + stats.dropped, 0);
    sink.arrivals()
}

#[tokio::test]
async fn webhooks_arrive_reordered_and_replay_exactly_from_the_seed() {
    // Proves: with delays, events and copies arrive out of order, and the same seed gives the same arrivals.
    let first = seeded_run(11).await;
    let second = seeded_run(11).await;
    assert_eq!(first, second);
    assert_ne!(first, seeded_run(12).await);

    let originals: Vec<&str> = first
        .iter()
        .filter(|a| a.copy == 0 && a.attempt == 1)
        .map(|a| a.event.as_str())
        .collect();
    assert_eq!(originals.len(), 6);
    let mut in_creation_order = originals.clone();
    in_creation_order.sort_by_key(|id| id["evt_".len()..].parse::<u32>().unwrap());
    assert_ne!(
        originals, in_creation_order,
        "events arrive out of order: {originals:?}"
    );
    assert!(
        first.iter().any(|a| a.copy > 0),
        "some events are duplicated"
    );
    assert!(
        first.iter().any(|a| a.attempt > 1),
        "some copies are retried"
    );
    assert!(first.iter().all(|a| a.signed));
    let delivered: std::collections::BTreeSet<_> = first
        .iter()
        .filter(|a| a.answered == 200)
        .map(|a| &a.event)
        .collect();
    assert_eq!(delivered.len(), 6, "every event is eventually delivered");
}

#[tokio::test]
async fn an_amount_may_be_written_as_a_whole_number_with_a_zero_fraction() {
    // Proves: `"amount": 312.0` is the integer 312 (JSON Schema's integer), `312.5` is refused.
    let psp = plain_psp().await;
    let whole = raw_post(
        &psp.addr,
        "/v1/payment_intents",
        &[],
        r#"{"order": "ord_6", "amount": 312.0}"#,
    )
    .await;
    assert_eq!(whole.status.as_u16(), 200, "{whole:?}");
    assert_eq!(whole.json::<serde_json::Value>().unwrap()["amount"], 312);
    let fraction = raw_post(
        &psp.addr,
        "/v1/payment_intents",
        &[],
        r#"{"order": "ord_7", "amount": 312.5}"#,
    )
    .await;
    assert_problem(&fraction, 400, "invalid-amount");
    assert_eq!(psp.psp.intents().len(), 1);
}
