//! Simulated shoppers: they place an order with an Idempotency-Key (some
//! double-click), retry a timed-out request with the same key, follow the
//! order, then pay at the PSP (some twice, some declined, some after the
//! hold), abandon, or cancel. They follow their order over its events
//! stream (server-sent events) unless the scenario has them poll. Everything
//! a shopper asks and is told goes into the history, after its plan
//! (`Wants`): the evidence of who meant to buy.

use crate::plan::{Intent, ShopperPlan};
use crate::recorder::{Recorder, sim_now};
use crate::scenario::Follow;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use stampede_core::{
    Cents, ClientOp, ClientReply, CustomerId, EventKind, IdempotencyKey, IntentId, ItemRequest,
    OrderId, OrderStatus, PlaceOrder, Sku, Wish,
};
use stampede_server::psp::PspClient;
use stampede_server::{HttpClient, HttpResponse};
use std::time::Duration;

/// Most attempts of one keyed request (first try + retries).
pub const ATTEMPTS_MAX: u32 = 4;
/// The step of a shopper's linear backoff between attempts of one request:
/// it waits this times the attempt number before the next, ms.
pub const RETRY_BACKOFF_STEP_MS: u64 = 250;
/// Most times a shopper told to come back later (429 with `Retry-After`)
/// places its order again, with the same key; these are not attempts.
pub const SHED_RETRIES_MAX: u32 = 10;
/// The wait before coming back when a 429 names no `Retry-After`, ms.
pub const SHED_WAIT_DEFAULT_MS: u64 = 1_000;
/// How often a polling shopper (`[shoppers] follow = "poll"`) asks for its order, ms.
pub const POLL_MS: u64 = 200;
/// How long a shopper follows an order before giving up, ms.
pub const FOLLOW_MS_MAX: u64 = 60_000;
/// First wait before a shopper reopens an events stream that ended or
/// failed before its order got where it waits for, ms.
pub const RECONNECT_MS_MIN: u64 = 200;
/// Longest such wait: it doubles from [`RECONNECT_MS_MIN`] up to this while
/// reconnecting brings no new status, ms.
pub const RECONNECT_MS_MAX: u64 = 1_600;

/// What a shopper needs.
#[derive(Clone)]
pub struct ShopperCtx {
    /// HTTP client (with the client timeout).
    pub http: HttpClient,
    /// API hosts, `host:port`.
    pub api: Vec<String>,
    /// The PSP.
    pub psp: PspClient,
    /// The run's history.
    pub recorder: Recorder,
    /// Longest to wait for the next bytes of an open events stream before
    /// reconnecting, ms ([`crate::world::stream_idle_ms`]).
    pub stream_idle_ms: u64,
}

fn problem_slug(response: &HttpResponse) -> String {
    response
        .json::<serde_json::Value>()
        .ok()
        .and_then(|v| {
            v["type"]
                .as_str()
                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
        })
        .unwrap_or_default()
}

fn replayed(response: &HttpResponse) -> bool {
    response
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

/// Whether a keyed request should be retried with the same key: no answer,
/// a 5xx, or a 409 other than sold out (the key is in flight).
fn retryable(reply: &ClientReply) -> bool {
    match reply {
        ClientReply::NoResponse { .. } => true,
        ClientReply::Refused { status, problem } => {
            (*status == 409 && problem != "sold-out") || *status >= 500
        }
        _ => false,
    }
}

/// How long a 429 asks the client to wait, ms: its `Retry-After` seconds,
/// or [`SHED_WAIT_DEFAULT_MS`]; `None` for any other answer.
fn told_to_wait(response: &HttpResponse) -> Option<u64> {
    (response.status == StatusCode::TOO_MANY_REQUESTS).then(|| {
        response
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(SHED_WAIT_DEFAULT_MS, |s| s.saturating_mul(1_000))
    })
}

/// `wait_ms` stretched by a jitter in [0, 1) × `wait_ms` drawn from the key
/// and the retry number, so shed buyers do not all come back at once (and
/// the same seed still makes the same run).
fn jittered(wait_ms: u64, key: Option<&IdempotencyKey>, retry: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = key.map_or(&[][..], |k| k.as_str().as_bytes());
    for b in bytes.iter().chain(&retry.to_le_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    wait_ms.saturating_add(h % wait_ms.max(1))
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl ShopperCtx {
    async fn send(
        &self,
        api: &str,
        method: Method,
        path: &str,
        key: Option<&IdempotencyKey>,
        body: Option<String>,
    ) -> Result<HttpResponse, String> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(key) = key {
            headers.push(("idempotency-key", key.to_string()));
        }
        self.http
            .send(api, method, path, &headers, body.map(Bytes::from))
            .await
            .map_err(|e| e.to_string())
    }

    /// Places the order once; with the wait a 429 asked for.
    async fn place_once(
        &self,
        api: &str,
        request: &PlaceOrder,
        tamper_price: bool,
    ) -> (ClientReply, Option<u64>) {
        let req = self.recorder.request(
            ClientOp::PlaceOrder(request.clone()),
            Some(request.fingerprint()),
        );
        let items: Vec<_> = request
            .items
            .iter()
            .map(|i| match tamper_price {
                true => serde_json::json!({"sku": i.sku.as_str(), "qty": i.qty, "price": 1}),
                false => serde_json::json!({"sku": i.sku.as_str(), "qty": i.qty}),
            })
            .collect();
        let mut body =
            serde_json::json!({ "customer_id": request.customer.as_str(), "items": items });
        if request.express {
            body["payment"] = "saved_card".into();
        }
        let mut wait = None;
        let reply = match self
            .send(
                api,
                Method::POST,
                "/v1/orders",
                request.key.as_ref(),
                Some(body.to_string()),
            )
            .await
        {
            Ok(r) if r.status == StatusCode::ACCEPTED => {
                match r
                    .json::<serde_json::Value>()
                    .ok()
                    .and_then(|v| v["order_id"].as_str().and_then(OrderId::parse))
                {
                    Some(order) => ClientReply::OrderAccepted {
                        order,
                        replayed: replayed(&r),
                    },
                    None => ClientReply::Refused {
                        status: 202,
                        problem: "unparseable-body".into(),
                    },
                }
            }
            Ok(r) => {
                wait = told_to_wait(&r);
                ClientReply::Refused {
                    status: r.status.as_u16(),
                    problem: problem_slug(&r),
                }
            }
            Err(reason) => ClientReply::NoResponse { reason },
        };
        self.recorder.response(req, reply.clone());
        (reply, wait)
    }

    async fn pay_once(
        &self,
        api: &str,
        order: OrderId,
        key: &IdempotencyKey,
    ) -> (ClientReply, Option<String>) {
        let req = self.recorder.request(
            ClientOp::Pay {
                order,
                key: Some(key.clone()),
            },
            None,
        );
        let (reply, secret) = match self
            .send(
                api,
                Method::POST,
                &format!("/v1/orders/{order}/pay"),
                Some(key),
                None,
            )
            .await
        {
            Ok(r) if r.status == StatusCode::OK => {
                let v: serde_json::Value = r.json().unwrap_or_default();
                let intent = v["intent_id"].as_str().and_then(|s| IntentId::new(s).ok());
                match intent {
                    Some(intent) => (
                        ClientReply::PaymentStarted {
                            order,
                            intent,
                            amount: Cents(v["amount"].as_u64().unwrap_or(0)),
                            replayed: replayed(&r),
                        },
                        v["client_secret"].as_str().map(str::to_string),
                    ),
                    None => (
                        ClientReply::Refused {
                            status: 200,
                            problem: "unparseable-body".into(),
                        },
                        None,
                    ),
                }
            }
            Ok(r) => (
                ClientReply::Refused {
                    status: r.status.as_u16(),
                    problem: problem_slug(&r),
                },
                None,
            ),
            Err(reason) => (ClientReply::NoResponse { reason }, None),
        };
        self.recorder.response(req, reply.clone());
        (reply, secret)
    }

    async fn status(&self, api: &str, order: OrderId) -> Option<OrderStatus> {
        let r = self
            .send(api, Method::GET, &format!("/v1/orders/{order}"), None, None)
            .await
            .ok()?;
        let v: serde_json::Value = r.json().ok()?;
        OrderStatus::parse(v["status"].as_str()?)
    }

    /// Follows the order until its status satisfies `done`, or gives up
    /// after [`FOLLOW_MS_MAX`]: over the events stream or by polling, as the
    /// shopper's plan says. Each status the shopper is shown that differs
    /// from the last one it saw goes into the history as `Observed`: the
    /// checker judges each client's own sequence, independently of the
    /// shop's records.
    async fn follow(
        &self,
        api: &str,
        order: OrderId,
        seen: &mut Seen,
        done: impl Fn(OrderStatus) -> bool,
    ) -> Option<OrderStatus> {
        match seen.how {
            Follow::Sse => self.follow_events(api, order, seen, done).await,
            Follow::Poll => self.poll(api, order, seen, done).await,
        }
    }

    /// Reads the order's events stream (one HTTP request per stream): each
    /// event's status as it arrives. A stream that ends, fails or goes quiet
    /// before `done` is reopened after a backoff that doubles from
    /// [`RECONNECT_MS_MIN`] to [`RECONNECT_MS_MAX`] (back to the start on a
    /// new status), until the deadline.
    async fn follow_events(
        &self,
        api: &str,
        order: OrderId,
        seen: &mut Seen,
        done: impl Fn(OrderStatus) -> bool,
    ) -> Option<OrderStatus> {
        let deadline = sim_now().plus_ms(FOLLOW_MS_MAX);
        let path = format!("/v1/orders/{order}/events");
        let mut backoff = RECONNECT_MS_MIN;
        while sim_now() < deadline {
            if let Ok(mut stream) = self.http.open(api, &path, &[]).await
                && stream.status == StatusCode::OK
            {
                loop {
                    // Keep-alives reset the idle bound, not the follow deadline: the whole
                    // wait for the next event is cut at the deadline.
                    let left = deadline.0.saturating_sub(sim_now().0);
                    let idle = Duration::from_millis(self.stream_idle_ms.min(left).max(1));
                    let next = tokio::time::timeout(
                        Duration::from_millis(left.max(1)),
                        stream.next_event(idle),
                    );
                    let Ok(Ok(Some(event))) = next.await else {
                        break;
                    };
                    let status = (event.event == "status")
                        .then(|| serde_json::from_str::<serde_json::Value>(&event.data).ok())
                        .flatten()
                        .and_then(|v| v["status"].as_str().and_then(OrderStatus::parse));
                    let Some(status) = status else { continue };
                    if seen.last != Some(status) {
                        backoff = RECONNECT_MS_MIN;
                    }
                    seen.saw(&self.recorder, order, status);
                    if done(status) {
                        return Some(status);
                    }
                }
            }
            let left = deadline.0.saturating_sub(sim_now().0);
            if left == 0 {
                break;
            }
            sleep_ms(backoff.min(left)).await;
            backoff = (backoff * 2).min(RECONNECT_MS_MAX);
        }
        None
    }

    /// Polls `GET /v1/orders/{id}` every [`POLL_MS`].
    async fn poll(
        &self,
        api: &str,
        order: OrderId,
        seen: &mut Seen,
        done: impl Fn(OrderStatus) -> bool,
    ) -> Option<OrderStatus> {
        let deadline = sim_now().plus_ms(FOLLOW_MS_MAX);
        while sim_now() < deadline {
            if let Some(status) = self.status(api, order).await {
                seen.saw(&self.recorder, order, status);
                if done(status) {
                    return Some(status);
                }
            }
            sleep_ms(POLL_MS).await;
        }
        None
    }
}

/// The last status a shopper was shown, so only changes are recorded, and
/// how it follows its order.
pub struct Seen {
    client: u64,
    last: Option<OrderStatus>,
    how: Follow,
}

impl Seen {
    fn saw(&mut self, recorder: &Recorder, order: OrderId, status: OrderStatus) {
        if self.last != Some(status) {
            self.last = Some(status);
            recorder.push(EventKind::Observed {
                order,
                status,
                client: self.client,
            });
        }
    }
}

/// How long an impatient shopper waits after confirming before its app,
/// having lost track, starts payment over with a fresh key, ms.
pub const IMPATIENT_PAUSE_MS: u64 = 100;

/// Runs one shopper to the end of its plan: it arrives, places its order,
/// follows it until payment is offered, then does what its intent says.
pub async fn run(ctx: ShopperCtx, plan: ShopperPlan) {
    // Like one browser tab, a shopper keeps its connection to the shop open between requests
    // (the order, then its events stream), its own and no one else's.
    let ctx = ShopperCtx {
        http: ctx.http.keeping_alive(),
        ..ctx
    };
    let mut seen = Seen {
        client: u64::from(plan.id),
        last: None,
        how: plan.follow,
    };
    let (api, request) = arrive(&ctx, &plan).await;
    let Some(order) = place(&ctx, &api, &plan, &request).await else {
        return;
    };
    if plan.express {
        // Paid with the saved card by the shop itself: just watch it finish.
        ctx.follow(&api, order, &mut seen, OrderStatus::is_final)
            .await;
        return;
    }
    let ready = |s: OrderStatus| s == OrderStatus::PaymentPending || s.is_final();
    if ctx.follow(&api, order, &mut seen, ready).await != Some(OrderStatus::PaymentPending) {
        return;
    }
    match plan.intent {
        Intent::Abandon => {}
        Intent::Cancel => cancel(&ctx, &api, order).await,
        Intent::Pay {
            delay_ms,
            decline,
            double_pay,
        } => {
            sleep_ms(delay_ms).await;
            if pay(&ctx, &api, order, &plan, double_pay, decline).await {
                ctx.follow(&api, order, &mut seen, OrderStatus::is_final)
                    .await;
            }
        }
        Intent::PayLate { think_ms, decline } => {
            if let Some((intent, secret)) =
                start_payment(&ctx, &api, order, &pay_key(order), plan.retry, false).await
            {
                sleep_ms(think_ms).await;
                confirm(&ctx, &intent, &secret, decline).await;
                ctx.follow(&api, order, &mut seen, OrderStatus::is_final)
                    .await;
            }
        }
    }
}

/// Waits for the shopper's arrival and records its plan (`Wants`); returns
/// the API host it talks to and the order it will place.
async fn arrive(ctx: &ShopperCtx, plan: &ShopperPlan) -> (String, PlaceOrder) {
    let now = sim_now().0;
    if plan.arrive_ms > now {
        sleep_ms(plan.arrive_ms - now).await;
    }
    let api = ctx.api[plan.api as usize % ctx.api.len()].clone();
    let key = IdempotencyKey::new(format!("order-{}", plan.id)).expect("valid key");
    ctx.recorder.push(EventKind::Wants {
        client: u64::from(plan.id),
        key: key.clone(),
        wish: wish(plan),
    });
    let request = PlaceOrder {
        key: Some(key),
        customer: CustomerId::new(format!("cust-{}", plan.id)).expect("valid customer"),
        items: plan
            .items
            .iter()
            .map(|(sku, qty)| ItemRequest {
                sku: Sku::new(sku.clone()).expect("validated sku"),
                qty: *qty,
            })
            .collect(),
        express: plan.express,
    };
    (api, request)
}

/// `POST /v1/orders/{id}/cancel`, recorded with what the shopper was told.
async fn cancel(ctx: &ShopperCtx, api: &str, order: OrderId) {
    let req = ctx.recorder.request(ClientOp::Cancel { order }, None);
    let reply = match ctx
        .send(
            api,
            Method::POST,
            &format!("/v1/orders/{order}/cancel"),
            None,
            None,
        )
        .await
    {
        Ok(r) if r.status == StatusCode::OK => ClientReply::Status {
            order,
            status: r
                .json::<serde_json::Value>()
                .ok()
                .and_then(|v| v["status"].as_str().and_then(OrderStatus::parse))
                .unwrap_or(OrderStatus::Cancelled(
                    stampede_core::CancelReason::ByCustomer,
                )),
        },
        Ok(r) => ClientReply::Refused {
            status: r.status.as_u16(),
            problem: problem_slug(&r),
        },
        Err(reason) => ClientReply::NoResponse { reason },
    };
    ctx.recorder.response(req, reply);
}

/// Pays for `order`: starts payment at the shop (`double_pay`: sent twice)
/// and confirms at the PSP (`decline`: with a declined card); an impatient
/// shopper then starts over with a fresh key and confirms again. False when
/// the first payment never started, so there is nothing to follow.
async fn pay(
    ctx: &ShopperCtx,
    api: &str,
    order: OrderId,
    plan: &ShopperPlan,
    double_pay: bool,
    decline: bool,
) -> bool {
    let key = pay_key(order);
    let Some((intent, secret)) = start_payment(ctx, api, order, &key, plan.retry, double_pay).await
    else {
        return false;
    };
    confirm(ctx, &intent, &secret, decline).await;
    if plan.impatient {
        // The app lost track: it starts payment over with a fresh key.
        sleep_ms(IMPATIENT_PAUSE_MS).await;
        let again = IdempotencyKey::new(format!("pay-{order}-again")).expect("valid key");
        if let Some((intent, secret)) = start_payment(ctx, api, order, &again, false, false).await {
            confirm(ctx, &intent, &secret, decline).await;
        }
    }
    true
}

fn pay_key(order: OrderId) -> IdempotencyKey {
    IdempotencyKey::new(format!("pay-{order}")).expect("valid key")
}

/// What the shopper's own plan says it means to do, for the progress
/// invariants. An express shopper's saved card is charged when the shop
/// creates its intent, whatever its `intent` says (it never reaches `/pay`,
/// so it cannot abandon, cancel or be declined): it buys with an accepted
/// card and no think time. A late payer means to pay, but thinks past the
/// hold: its `think_ms` shows it is late by its own plan.
pub fn wish(plan: &ShopperPlan) -> Wish {
    if plan.express {
        return Wish {
            buys: true,
            card_accepted: true,
            express: true,
            think_ms: 0,
            sends_prices: plan.tamper_price,
        };
    }
    let (buys, card_accepted, think_ms) = match plan.intent {
        Intent::Pay {
            delay_ms, decline, ..
        } => (true, !decline, delay_ms),
        Intent::PayLate { think_ms, decline } => (true, !decline, think_ms),
        Intent::Abandon | Intent::Cancel => (false, true, 0),
    };
    Wish {
        buys,
        card_accepted,
        express: false,
        think_ms,
        sends_prices: plan.tamper_price,
    }
}

async fn place(
    ctx: &ShopperCtx,
    api: &str,
    plan: &ShopperPlan,
    request: &PlaceOrder,
) -> Option<OrderId> {
    let attempts = if plan.retry { ATTEMPTS_MAX } else { 1 };
    let (mut attempt, mut shed) = (1, 0);
    loop {
        let replies = if attempt == 1 && shed == 0 && plan.double_click {
            let (a, b) = tokio::join!(
                ctx.place_once(api, request, plan.tamper_price),
                ctx.place_once(api, request, plan.tamper_price)
            );
            vec![a, b]
        } else {
            vec![ctx.place_once(api, request, plan.tamper_price).await]
        };
        if let Some(order) = replies.iter().find_map(|(r, _)| match r {
            ClientReply::OrderAccepted { order, .. } => Some(*order),
            _ => None,
        }) {
            return Some(order);
        }
        // Told to come back later: honour Retry-After (jittered), same key.
        if let Some(wait) = replies.iter().find_map(|(_, wait)| *wait)
            && shed < SHED_RETRIES_MAX
        {
            shed += 1;
            sleep_ms(jittered(wait, request.key.as_ref(), shed)).await;
            continue;
        }
        if attempt >= attempts || !replies.iter().any(|(r, _)| retryable(r)) {
            return None;
        }
        sleep_ms(RETRY_BACKOFF_STEP_MS * u64::from(attempt)).await;
        attempt += 1;
    }
}

async fn start_payment(
    ctx: &ShopperCtx,
    api: &str,
    order: OrderId,
    key: &IdempotencyKey,
    retry: bool,
    double_pay: bool,
) -> Option<(IntentId, String)> {
    let attempts = if retry { ATTEMPTS_MAX } else { 1 };
    for attempt in 1..=attempts {
        let results = if attempt == 1 && double_pay {
            let (a, b) = tokio::join!(ctx.pay_once(api, order, key), ctx.pay_once(api, order, key));
            vec![a, b]
        } else {
            vec![ctx.pay_once(api, order, key).await]
        };
        for (reply, secret) in &results {
            if let (ClientReply::PaymentStarted { intent, .. }, Some(secret)) = (reply, secret) {
                return Some((intent.clone(), secret.clone()));
            }
        }
        if !results.iter().any(|(r, _)| retryable(r)) {
            return None;
        }
        sleep_ms(RETRY_BACKOFF_STEP_MS * u64::from(attempt)).await;
    }
    None
}

/// The attacker: posts an unsigned "payment succeeded" event for `ord_{order}`.
pub async fn forge_webhook(http: &HttpClient, api: &str, order: u64, n: usize) {
    let body = serde_json::json!({
        "id": format!("evt_forged_{n}"),
        "type": "payment_intent.succeeded",
        "created": 1_700_000_000u64,
        "data": { "intent": format!("pi_forged_{n}"), "order": format!("ord_{order}"), "amount": 1 },
    });
    let headers = [("content-type", "application/json".to_string())];
    let _ = http
        .send(
            api,
            Method::POST,
            stampede_server::WEBHOOK_PATH,
            &headers,
            Some(Bytes::from(body.to_string())),
        )
        .await;
}

/// Confirms at the PSP; a lost response is retried (a second confirm is a
/// harmless 409: the PSP never charges an intent twice).
async fn confirm(ctx: &ShopperCtx, intent: &IntentId, secret: &str, decline: bool) {
    for attempt in 1..=ATTEMPTS_MAX {
        match ctx.psp.confirm(intent, secret, decline).await {
            Ok(_) => return,
            Err(e) if e.status().is_some() => return,
            Err(_) => sleep_ms(RETRY_BACKOFF_STEP_MS * u64::from(attempt)).await,
        }
    }
}
