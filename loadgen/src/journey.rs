//! The shopper journey one goose transaction runs: maybe browse, place an
//! order with an Idempotency-Key (some double-click; a timeout or 5xx is
//! retried with the same key), follow it until payment can start, pay at the
//! shop and confirm at the PSP (some abandon instead), follow it to a final
//! state. Every request is timed into the run's HdrHistograms; what the
//! client asked and was told goes into the audit's history.

use crate::latency::{Latencies, ORDER_TO_CONFIRMED, Sample};
use crate::schedule::Schedule;
use crate::{LoadConfig, Mix};
use goose::goose::GooseResponse;
use goose::prelude::*;
use serde_json::{Value, json};
use stampede_core::{
    ClientOp, ClientReply, CustomerId, EventKind, IdempotencyKey, ItemRequest, Millis, OrderId,
    PlaceOrder, Sku,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Most attempts of one keyed request (first try + retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// Most audit events kept from clients (beyond it the audit judges without them).
pub const MAX_CLIENT_EVENTS: usize = 4_000_000;

/// State shared by every goose user of one run.
pub struct Shared {
    pub(crate) config: LoadConfig,
    t0: OnceLock<Instant>,
    schedule: Option<Schedule>,
    next_slot: AtomicUsize,
    next_journey: AtomicU64,
    next_request: AtomicU64,
    pub(crate) latencies: Mutex<Latencies>,
    pub(crate) client_events: Mutex<Vec<(Millis, EventKind)>>,
    /// Last status each order was seen in.
    pub(crate) orders: Mutex<BTreeMap<OrderId, String>>,
    pub(crate) journeys_started: AtomicU64,
    pub(crate) journeys_done: AtomicU64,
    /// Journeys that started later than their slot because every user was busy.
    pub(crate) late_starts: AtomicU64,
    /// Goose users that have reported for work.
    arrived: AtomicUsize,
    /// Goose users in the run.
    users: usize,
}

/// Marks a goose user that has reported for work (its session data).
#[derive(Clone, Debug)]
struct Arrived;

/// Longest the start waits for every goose user to report.
pub const START_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking journey cannot leave these half-written: each update is one push or insert.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: LoadConfig, schedule: Option<Schedule>, users: usize) -> Shared {
        let latencies = Latencies::new(config.interval, schedule.is_some());
        Shared {
            config,
            t0: OnceLock::new(),
            schedule,
            next_slot: AtomicUsize::new(0),
            next_journey: AtomicU64::new(0),
            next_request: AtomicU64::new(0),
            latencies: Mutex::new(latencies),
            client_events: Mutex::new(Vec::new()),
            orders: Mutex::new(BTreeMap::new()),
            journeys_started: AtomicU64::new(0),
            journeys_done: AtomicU64::new(0),
            late_starts: AtomicU64::new(0),
            arrived: AtomicUsize::new(0),
            users,
        }
    }

    /// When load began, once it has.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.t0.get().copied()
    }

    /// Time since load began (zero before).
    pub(crate) fn since(&self) -> Duration {
        self.started().map_or(Duration::ZERO, |t0| t0.elapsed())
    }

    /// Holds a user until every goose user has reported (or [`START_WAIT`]
    /// passed), then load begins for all at once: goose starts its users
    /// one by one, and the schedule must not count that as the shop's delay.
    async fn wait_for_start(&self, user: &mut GooseUser) {
        if self.started().is_some() {
            return;
        }
        if user.get_session_data::<Arrived>().is_none() {
            user.set_session_data(Arrived);
            self.arrived.fetch_add(1, Ordering::Relaxed);
        }
        let first_seen = Instant::now();
        while self.started().is_none() {
            if self.arrived.load(Ordering::Relaxed) >= self.users
                || first_seen.elapsed() >= START_WAIT
            {
                let _ = self.t0.set(Instant::now());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub(crate) fn latencies(&self) -> MutexGuard<'_, Latencies> {
        lock(&self.latencies)
    }

    fn client_event(&self, at: Duration, kind: EventKind) {
        let mut events = lock(&self.client_events);
        if events.len() < MAX_CLIENT_EVENTS {
            events.push((Millis(at.as_millis() as u64), kind));
        }
    }

    fn saw(&self, order: OrderId, status: &str) {
        lock(&self.orders).insert(order, status.to_string());
    }

    /// Orders per last-seen status.
    pub(crate) fn order_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for status in lock(&self.orders).values() {
            *counts.entry(status.clone()).or_default() += 1;
        }
        counts
    }
}

/// A small deterministic generator per journey (SplitMix64), so a journey's
/// choices depend only on its number.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// One answer, read whole.
struct Answer {
    status: u16,
    body: Value,
    replayed: bool,
}

/// One request of a journey.
struct Call<'a> {
    method: GooseMethod,
    /// Path, or a full URL (the PSP).
    url: String,
    /// The endpoint name for metrics, e.g. `GET /v1/orders/{id}`.
    name: &'a str,
    key: Option<&'a str>,
    body: Option<Value>,
}

fn builder(
    user: &GooseUser,
    call: &Call<'_>,
    timeout: Duration,
) -> Result<reqwest::RequestBuilder, Box<TransactionError>> {
    let mut rb = user.get_request_builder(&call.method, &call.url)?;
    rb = rb.timeout(timeout);
    if let Some(key) = call.key {
        rb = rb.header("idempotency-key", key);
    }
    if let Some(body) = &call.body {
        rb = rb.json(body);
    }
    Ok(rb)
}

async fn read(response: Result<GooseResponse, Box<TransactionError>>) -> Result<Answer, String> {
    let response = response.map_err(|e| e.to_string())?;
    let response = response.response.map_err(|e| e.to_string())?;
    answer(response).await
}

async fn answer(response: reqwest::Response) -> Result<Answer, String> {
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        replayed,
    })
}

/// What one journey knows.
struct Journey<'a> {
    shared: &'a Shared,
    /// When the schedule meant it to start (closed loop: when it started).
    intended: Duration,
    started: Duration,
    dice: Dice,
    id: u64,
}

impl Journey<'_> {
    /// Sends one request through goose (so goose's own report sees it) and
    /// times it; the journey's first request is measured from `intended`.
    async fn call(
        &self,
        user: &mut GooseUser,
        call: Call<'_>,
        first: bool,
    ) -> Result<Answer, String> {
        let rb =
            builder(user, &call, self.shared.config.request_timeout).map_err(|e| e.to_string())?;
        let request = GooseRequest::builder()
            .method(call.method)
            .path(call.url.as_str())
            .name(call.name)
            .set_request_builder(rb)
            .build();
        let sent = self.shared.since();
        let result = read(user.request(request).await).await;
        self.record(call.name, sent, first, &result);
        result
    }

    /// The same request twice at once (a double click); the second copy goes
    /// straight through reqwest, so only the loadgen's histograms see it.
    async fn call_twice(
        &self,
        user: &mut GooseUser,
        call: Call<'_>,
    ) -> [Result<Answer, String>; 2] {
        let second = match builder(user, &call, self.shared.config.request_timeout) {
            Ok(rb) => rb,
            Err(e) => return [Err(e.to_string()), Err(e.to_string())],
        };
        let name = call.name;
        let (a, b) = tokio::join!(self.call(user, call, true), async {
            let sent = self.shared.since();
            let result = match second.send().await {
                Ok(r) => answer(r).await,
                Err(e) => Err(e.to_string()),
            };
            self.record(name, sent, true, &result);
            result
        });
        [a, b]
    }

    fn record(&self, name: &str, sent: Duration, first: bool, result: &Result<Answer, String>) {
        let failed = match result {
            Ok(a) => a.status >= 500 || a.status == 0,
            Err(_) => true,
        };
        let sample = Sample {
            sent,
            intended: if first { self.intended } else { sent },
            done: self.shared.since(),
            failed,
        };
        self.shared.latencies().record(name, sample);
    }

    /// Places the order, retrying a lost answer with the same key.
    async fn place(&mut self, user: &mut GooseUser, double_click: bool) -> Option<OrderId> {
        let mix = &self.shared.config.mix;
        let sku = if self.dice.chance(mix.hot) {
            "sneaker-limited"
        } else {
            ["tshirt-black", "mug", "poster"][(self.dice.next() % 3) as usize]
        };
        let run = &self.shared.config.run_id;
        let key = format!("{run}-order-{}", self.id);
        let customer = format!("{run}-cust-{}", self.id);
        let body = json!({ "customer_id": customer, "items": [{ "sku": sku, "qty": 1 }] });
        let op = PlaceOrder {
            key: IdempotencyKey::new(key.clone()).ok(),
            customer: CustomerId::new(customer.clone()).ok()?,
            items: vec![ItemRequest {
                sku: Sku::new(sku).ok()?,
                qty: 1,
            }],
            express: false,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let call = || Call {
                method: GooseMethod::Post,
                url: "/v1/orders".into(),
                name: "POST /v1/orders",
                key: Some(&key),
                body: Some(body.clone()),
            };
            let reqs: Vec<u64> = (0..if attempt == 1 && double_click { 2 } else { 1 })
                .map(|_| {
                    let req = self.shared.next_request.fetch_add(1, Ordering::Relaxed);
                    self.shared.client_event(
                        self.shared.since(),
                        EventKind::Request {
                            req,
                            op: ClientOp::PlaceOrder(op.clone()),
                            fingerprint: Some(op.fingerprint()),
                        },
                    );
                    req
                })
                .collect();
            let answers: Vec<Result<Answer, String>> = if reqs.len() == 2 {
                self.call_twice(user, call()).await.into()
            } else {
                vec![self.call(user, call(), attempt == 1).await]
            };
            let mut accepted = None;
            let mut retry = false;
            for (req, answer) in reqs.iter().zip(&answers) {
                let reply = match answer {
                    Ok(a) if a.status == 202 => {
                        match a.body["order_id"].as_str().and_then(OrderId::parse) {
                            Some(order) => {
                                accepted = Some(order);
                                ClientReply::OrderAccepted {
                                    order,
                                    replayed: a.replayed,
                                }
                            }
                            None => ClientReply::Refused {
                                status: 202,
                                problem: "unparseable-body".into(),
                            },
                        }
                    }
                    Ok(a) => {
                        retry |= a.status == 409 || a.status >= 500;
                        ClientReply::Refused {
                            status: a.status,
                            problem: a.body["type"]
                                .as_str()
                                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
                                .unwrap_or_default(),
                        }
                    }
                    Err(reason) => {
                        retry = true;
                        ClientReply::NoResponse {
                            reason: reason.clone(),
                        }
                    }
                };
                self.shared.client_event(
                    self.shared.since(),
                    EventKind::Response { req: *req, reply },
                );
            }
            if accepted.is_some() || !retry {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        None
    }

    /// Polls the order until `done` says so, the answer is final, or time runs out.
    async fn follow(
        &self,
        user: &mut GooseUser,
        order: OrderId,
        done: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let config = &self.shared.config;
        let deadline = (config.duration + config.drain).min(self.shared.since() + FOLLOW_LIMIT);
        loop {
            let call = Call {
                method: GooseMethod::Get,
                url: format!("/v1/orders/{order}"),
                name: "GET /v1/orders/{id}",
                key: None,
                body: None,
            };
            if let Ok(a) = self.call(user, call, false).await
                && let Some(status) = a.body["status"].as_str()
            {
                self.shared.saw(order, status);
                if done(status) || is_final(status) {
                    return Some(status.to_string());
                }
            }
            if self.shared.since() >= deadline {
                return None;
            }
            tokio::time::sleep(config.poll).await;
        }
    }

    /// Starts payment at the shop, then confirms at the PSP.
    async fn pay(&mut self, user: &mut GooseUser, order: OrderId) -> bool {
        let key = format!("{}-pay-{}", self.shared.config.run_id, self.id);
        for attempt in 1..=MAX_ATTEMPTS {
            let call = Call {
                method: GooseMethod::Post,
                url: format!("/v1/orders/{order}/pay"),
                name: "POST /v1/orders/{id}/pay",
                key: Some(&key),
                body: None,
            };
            match self.call(user, call, false).await {
                Ok(a) if a.status == 200 => {
                    let (Some(intent), Some(secret)) = (
                        a.body["intent_id"].as_str(),
                        a.body["client_secret"].as_str(),
                    ) else {
                        return false;
                    };
                    let card = if self.dice.chance(self.shared.config.mix.decline) {
                        "decline"
                    } else {
                        "ok"
                    };
                    let call = Call {
                        method: GooseMethod::Post,
                        url: format!(
                            "{}/v1/payment_intents/{intent}/confirm",
                            self.shared.config.psp_url
                        ),
                        name: "POST psp /v1/payment_intents/{id}/confirm",
                        key: None,
                        body: Some(json!({ "client_secret": secret, "card": card })),
                    };
                    return self
                        .call(user, call, false)
                        .await
                        .is_ok_and(|a| a.status == 200);
                }
                Ok(a) if a.status != 409 && a.status < 500 => return false,
                _ => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
            }
        }
        false
    }
}

/// Longest a journey follows one order, whatever the drain time.
pub const FOLLOW_LIMIT: Duration = Duration::from_secs(60);

fn is_final(status: &str) -> bool {
    status == "confirmed" || status == "refunded" || status.starts_with("cancelled")
}

/// One goose transaction: wait for this journey's slot (open loop) and run it.
pub async fn run_journey(user: &mut GooseUser, shared: &Shared) -> TransactionResult {
    shared.wait_for_start(user).await;
    let config = &shared.config;
    let now = shared.since();
    let load_ends = config.duration;
    let intended = match &shared.schedule {
        Some(schedule) => {
            let k = shared.next_slot.fetch_add(1, Ordering::Relaxed);
            match schedule.slot(k) {
                Some(slot) => {
                    if slot > now {
                        tokio::time::sleep(slot - now).await;
                    } else if now - slot > Duration::from_millis(1) {
                        shared.late_starts.fetch_add(1, Ordering::Relaxed);
                    }
                    slot
                }
                None => return idle_until(shared, load_ends + config.drain).await,
            }
        }
        None if now >= load_ends => return idle_until(shared, load_ends + config.drain).await,
        None => now,
    };
    let id = shared.next_journey.fetch_add(1, Ordering::Relaxed);
    shared.journeys_started.fetch_add(1, Ordering::Relaxed);
    let mut journey = Journey {
        shared,
        intended,
        started: shared.since(),
        dice: Dice(config.seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d)),
        id,
    };
    if let Some(path) = &config.probe {
        // Measuring the instrument: one GET per journey, nothing else.
        let name = format!("GET {path}");
        let call = Call {
            method: GooseMethod::Get,
            url: path.clone(),
            name: &name,
            key: None,
            body: None,
        };
        let _ = journey.call(user, call, true).await;
        shared.journeys_done.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let mix: Mix = config.mix;
    if journey.dice.chance(mix.browse) {
        let call = Call {
            method: GooseMethod::Get,
            url: "/v1/products".into(),
            name: "GET /v1/products",
            key: None,
            body: None,
        };
        let _ = journey.call(user, call, false).await;
    }
    let double_click = journey.dice.chance(mix.double_click);
    if let Some(order) = journey.place(user, double_click).await {
        shared.saw(order, "created");
        let ready = journey
            .follow(user, order, |s| s == "payment_pending")
            .await;
        if ready.as_deref() == Some("payment_pending")
            && !journey.dice.chance(mix.abandon)
            && journey.pay(user, order).await
            && journey.follow(user, order, is_final).await.as_deref() == Some("confirmed")
        {
            shared.latencies().record(
                ORDER_TO_CONFIRMED,
                Sample {
                    sent: journey.started,
                    intended: journey.intended,
                    done: shared.since(),
                    failed: false,
                },
            );
        }
    }
    shared.journeys_done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A user with nothing left to start waits out the run instead of spinning.
async fn idle_until(shared: &Shared, end: Duration) -> TransactionResult {
    let now = shared.since();
    tokio::time::sleep(end.saturating_sub(now).max(Duration::from_millis(50))).await;
    Ok(())
}
