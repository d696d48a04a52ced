//! The real-traffic audit: after the load, read what really happened — the
//! shop's `/admin/audit` (every order with its transitions, stock, jobs) and
//! the PSP's ledger — add what the loadgen's clients asked, were told and were
//! shown, and run the core's invariant checker on it, exactly as the simulator
//! does.
//!
//! The judge does not take the shop's word where it has better: prices and
//! stock received come from the catalog Stampede configured when it started
//! the shop itself ([`Baseline::configured`]); only against someone else's
//! shop (`--host`) are they read from the shop, and the report says so
//! ([`Baseline::provenance`]). Liveness is always judged, settled or not.

use crate::LoadError;
use stampede_core::{
    AuditSnapshot, Cents, EventKind, History, Millis, OptOuts, Sku, Terms, Verdict, check_except,
};
use stampede_reports::AuditVerdict;
use stampede_server::psp::PspClient;
use stampede_server::{Connector, HttpClient};
use std::time::Duration;

/// How many of the shop's first and of its last intents the audit looks up
/// at the PSP before judging with its ledger ([`Backoffice::same_books`]).
const BOOKS_SAMPLE: usize = 10;

/// Largest audit (or ledger page) the loadgen reads: about a million orders.
pub const AUDIT_BYTES_MAX: usize = 1 << 30;

/// What the checker takes as the catalog: each SKU's listed price and the
/// units received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// `(sku, price, units received)`.
    pub products: Vec<(Sku, Cents, u64)>,
    /// Per-customer limits, by SKU (those the catalog sets).
    pub limits: std::collections::BTreeMap<Sku, u32>,
    /// Read from the shop under test rather than configured by Stampede.
    pub from_shop: bool,
}

impl Baseline {
    /// The catalog Stampede configured the shop with: independent of the shop.
    pub fn configured(products: Vec<(Sku, Cents, u64)>) -> Baseline {
        Baseline {
            products,
            limits: std::collections::BTreeMap::new(),
            from_shop: false,
        }
    }

    /// Which facts of the audit came from where, and which promises the
    /// progress invariants hold the shop to, for the report.
    pub fn provenance(&self, terms: &Terms) -> String {
        let catalog = if self.from_shop {
            "prices and stock received are the shop's own word (its /v1/products and /admin/audit: \
             Stampede did not configure this shop)"
        } else {
            "prices and stock received come from the catalog Stampede configured"
        };
        let hold = match terms.hold_ms {
            Some(ms) if self.from_shop => {
                format!("a cart is held {ms} ms (the shop's hold as given by --hold)")
            }
            Some(ms) => format!("a cart is held {ms} ms (the reservation TTL Stampede configured)"),
            None => "the shop's hold (reservation TTL) is unknown, as Stampede did not configure \
                     this shop, so no buyer is judged late by its own think time"
                .to_string(),
        };
        let waitlisted = match terms.waitlist_offer_ms {
            Some(ms) => format!(
                ", or within {ms} ms when every unit they asked for was already sold or held by \
                 other carts (--offer-waitlisted-within)"
            ),
            None => String::new(),
        };
        format!(
            "evidence: {catalog}; what clients asked, were told and were shown, and what each journey \
             meant to do, from the load generator; money from the PSP's ledger; orders, transitions, \
             stock counters and reservations from the shop's /admin/audit. Promises judged: {hold}; \
             willing buyers are offered payment within {} ms (--offer-payment-within){waitlisted} \
             and charges decided within {} ms (--decide-within)",
            terms.offer_payment_ms, terms.decide_ms
        )
    }
}

/// How the loadgen reaches the shop's admin API and the PSP.
#[derive(Clone)]
pub struct Backoffice {
    http: HttpClient,
    shop: String,
    token: String,
    psp: PspClient,
    /// The shop's clock as the last audit read it.
    shop_clock: std::sync::Arc<std::sync::Mutex<Option<ClockReading>>>,
}

/// Another process's clock read from here: its `now` (ms on its own clock)
/// and the Unix time, ms, halfway between asking and being answered (so
/// wrong by at most half the round trip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// Its clock when it answered.
    pub now: Millis,
    /// Unix time here at the middle of the round trip, ms.
    pub unix_ms: u64,
}

impl ClockReading {
    /// A reading of `now`, asked at `sent` and answered at `received` (Unix ms).
    pub fn new(now: Millis, sent: u64, received: u64) -> ClockReading {
        ClockReading {
            now,
            unix_ms: sent.midpoint(received.max(sent)),
        }
    }

    /// `at` on the read clock, as ms since `start_unix_ms` (the load's start,
    /// the clock of the clients' evidence); before the start is 0.
    pub fn since_start(self, at: Millis, start_unix_ms: u64) -> Millis {
        let unix = i128::from(self.unix_ms) - i128::from(self.now.0) + i128::from(at.0);
        Millis(u64::try_from(unix - i128::from(start_unix_ms)).unwrap_or(0))
    }
}

/// Unix time now, ms.
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Most requests [`Backoffice::audit`] makes for one audit.
pub const AUDIT_ATTEMPTS: u32 = 5;

/// The pause after the first audit request that got no answer, ms; it
/// doubles after each (0.2 + 0.4 + 0.8 + 1.6 s in all).
const AUDIT_RETRY_FIRST_MS: u64 = 200;

/// A request that got no answer.
struct Unanswered(LoadError);

impl Backoffice {
    /// `shop` and `psp` are `host:port`.
    pub fn new(shop: &str, psp: &str, token: &str) -> Backoffice {
        let http = HttpClient::new(Connector::tokio(), Duration::from_secs(60))
            .with_max_response_bytes(AUDIT_BYTES_MAX);
        Backoffice {
            psp: PspClient::new(http.clone(), psp.to_string()),
            http,
            shop: shop.to_string(),
            token: token.to_string(),
            shop_clock: std::sync::Arc::default(),
        }
    }

    /// The shop's full audit. A request that gets no answer (the shop
    /// restarting, a connection cut) is tried again, [`AUDIT_ATTEMPTS`] times
    /// in all, so one lost answer does not throw a whole run's verdict away;
    /// an answer that refuses (a wrong token) is not.
    pub async fn audit(&self) -> Result<AuditSnapshot, LoadError> {
        let mut pause = Duration::from_millis(AUDIT_RETRY_FIRST_MS);
        let mut attempt = 1;
        loop {
            match self.audit_once().await {
                Err(Unanswered(error)) if attempt < AUDIT_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "no audit answer; asking again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                Err(Unanswered(error)) => return Err(error),
                Ok(answered) => return answered,
            }
        }
    }

    /// One request for the audit: `Err` when it got no answer.
    async fn audit_once(&self) -> Result<Result<AuditSnapshot, LoadError>, Unanswered> {
        let sent = unix_now_ms();
        let response = self
            .http
            .send(
                &self.shop,
                hyper::Method::GET,
                "/admin/audit",
                &[("authorization", format!("Bearer {}", self.token))],
                None,
            )
            .await
            .map_err(|e| Unanswered(LoadError::Shop(format!("GET /admin/audit: {e}"))))?;
        if response.status.is_server_error() {
            // Not the audit, and not a refusal of this request: the shop could not answer.
            return Err(Unanswered(LoadError::Shop(format!(
                "GET /admin/audit answered {}",
                response.status
            ))));
        }
        let audit = Self::read_audit(&response);
        if let Ok(snapshot) = &audit {
            let reading = ClockReading::new(snapshot.at, sent, unix_now_ms());
            *self.shop_clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(reading);
        }
        Ok(audit)
    }

    fn read_audit(response: &stampede_server::HttpResponse) -> Result<AuditSnapshot, LoadError> {
        if !response.status.is_success() {
            let hint = match response.status.as_u16() {
                401 | 403 => " (is --admin-token right?)",
                _ => "",
            };
            return Err(LoadError::Shop(format!(
                "GET /admin/audit answered {}{hint}",
                response.status
            )));
        }
        response
            .json()
            .map_err(|e| LoadError::Shop(format!("GET /admin/audit: unreadable audit: {e}")))
    }

    /// Before a load: every replica of the shop answers `GET /v1/products`
    /// with its catalog and the PSP answers for its ledger, so a wrong
    /// `--host` or `--psp` is found before any order is placed (not after
    /// the whole run, when the audit reads them). Returns the design the
    /// replicas name in their metrics (`None` if they name none); replicas
    /// naming different designs are refused: a run judges one shop.
    pub async fn preflight(&self, replicas: &[String]) -> Result<Option<String>, LoadError> {
        let mut named: Option<(&String, String)> = None;
        for host in std::iter::once(&self.shop).chain(replicas) {
            let response = self
                .http
                .get(host, "/v1/products")
                .await
                .map_err(|e| LoadError::Shop(format!("{host}: GET /v1/products: {e}")))?;
            Self::catalog_of(host, &response)?;
            let Some(design) = self.design_of(host).await else {
                continue;
            };
            match &named {
                Some((first, theirs)) if *theirs != design => {
                    return Err(LoadError::Shop(format!(
                        "{first} runs design {theirs} but {host} runs {design}: the replicas of one run must run one design"
                    )));
                }
                Some(_) => {}
                None => named = Some((host, design)),
            }
        }
        self.psp
            .ledger()
            .await
            .map_err(|e| LoadError::Shop(format!("the PSP ledger: {e} (is --psp right?)")))?;
        Ok(named.map(|(_, design)| design))
    }

    /// The design `host` names in `GET /metrics`, if it answers with one.
    async fn design_of(&self, host: &str) -> Option<String> {
        let response = self.http.get(host, "/metrics").await.ok()?;
        if !response.status.is_success() {
            return None;
        }
        stampede_server::metrics::design_of(std::str::from_utf8(&response.body).ok()?)
    }

    /// The catalog `host` answered, or why it is not a shop's.
    fn catalog_of(
        host: &str,
        response: &stampede_server::HttpResponse,
    ) -> Result<serde_json::Value, LoadError> {
        if !response.status.is_success() {
            return Err(LoadError::Shop(format!(
                "{host}: GET /v1/products answered {}: not a Stampede shop (is --host right?)",
                response.status
            )));
        }
        response.json().map_err(|e| {
            LoadError::Shop(format!(
                "{host}: GET /v1/products answered {} with no catalog ({e}): not a Stampede shop (is --host right?)",
                response.status
            ))
        })
    }

    /// The shop's own word on its catalog (for `--host`): prices from
    /// `/v1/products`, units received from `/admin/audit`.
    pub async fn baseline_from_shop(&self) -> Result<Baseline, LoadError> {
        let response = self
            .http
            .get(&self.shop, "/v1/products")
            .await
            .map_err(|e| LoadError::Shop(format!("GET /v1/products: {e}")))?;
        let body = Self::catalog_of(&self.shop, &response)?;
        let audit = self.audit().await?;
        let mut products = Vec::new();
        let mut limits = std::collections::BTreeMap::new();
        for p in body["data"].as_array().into_iter().flatten() {
            if let (Some(sku), Some(price)) = (p["sku"].as_str(), p["price"].as_u64())
                && let Ok(sku) = Sku::new(sku)
            {
                let received = audit.stock.get(&sku).map_or(0, |l| l.received);
                if let Some(limit) = p["per_customer_limit"]
                    .as_u64()
                    .and_then(|l| u32::try_from(l).ok())
                {
                    limits.insert(sku.clone(), limit);
                }
                products.push((sku, Cents(price), received));
            }
        }
        Ok(Baseline {
            products,
            limits,
            from_shop: true,
        })
    }

    /// Waits (at most `within`) until every order is final and no job is
    /// left; returns the last audit and whether the shop settled.
    pub async fn settle(&self, within: Duration) -> Result<(AuditSnapshot, bool), LoadError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let audit = self.audit().await?;
            let settled =
                audit.jobs_live == 0 && audit.orders.iter().all(|o| o.status().is_final());
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok((audit, settled));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Checks the PSP is this shop's before its ledger judges the money: the
    /// first and last [`BOOKS_SAMPLE`] intents the shop recorded must be
    /// there, for the same orders. A PSP that does not know them is another
    /// shop's (`--psp` wrong): its ledger would judge the shop against empty
    /// or foreign books, and could pass it. Nothing is judged then.
    async fn same_books(&self, after: &AuditSnapshot) -> Result<(), LoadError> {
        let n = after.intents.len();
        let last = n.saturating_sub(BOOKS_SAMPLE).max(BOOKS_SAMPLE.min(n));
        let sample = after.intents[..BOOKS_SAMPLE.min(n)]
            .iter()
            .chain(&after.intents[last..]);
        let not_ours = |what: String| {
            LoadError::Shop(format!(
                "{what}: the PSP at --psp is not this shop's (is --psp right?), so its ledger cannot judge the shop's money; nothing was judged"
            ))
        };
        for ours in sample {
            match self.psp.get_intent(&ours.id).await {
                Ok(theirs) if theirs.order == ours.order => {}
                Ok(theirs) => {
                    return Err(not_ours(format!(
                        "the shop recorded intent {} for {}, the PSP has it for {}",
                        ours.id, ours.order, theirs.order
                    )));
                }
                Err(e) if e.status() == Some(404) => {
                    return Err(not_ours(format!(
                        "the PSP does not know intent {}, which the shop recorded for {}",
                        ours.id, ours.order
                    )));
                }
                Err(e) => return Err(LoadError::Shop(format!("the PSP: {e}"))),
            }
        }
        Ok(())
    }

    /// Judges every invariant on the run but those in `opt_outs`: `baseline`
    /// is the catalog, `client` what the loadgen's shoppers asked, were told
    /// and were shown (ms since `start_unix_ms`, the load's start), `after`
    /// the audit taken once the shop settled or the settle time ran out
    /// (liveness is judged on it either way). The shop's transitions and the
    /// PSP's ledger lines are each on their own process's clock: they are put
    /// on the clients' clock first, by a reading of each (the audit's time,
    /// the ledger's `now`), so that what happened first is judged first.
    pub async fn judge(
        &self,
        baseline: &Baseline,
        client: Vec<(Millis, EventKind)>,
        after: &AuditSnapshot,
        opt_outs: &OptOuts,
        start_unix_ms: u64,
    ) -> Result<Vec<Verdict>, LoadError> {
        self.same_books(after).await?;
        let sent = unix_now_ms();
        let (ledger, psp_now) = self
            .psp
            .ledger_and_clock()
            .await
            .map_err(|e| LoadError::Shop(format!("the PSP ledger: {e}")))?;
        let psp_clock = psp_now.map(|now| ClockReading::new(now, sent, unix_now_ms()));
        let shop_clock = *self.shop_clock.lock().unwrap_or_else(|e| e.into_inner());
        let on_clients_clock = |reading: Option<ClockReading>, at: Millis| {
            reading.map_or(at, |r| r.since_start(at, start_unix_ms))
        };
        let mut after = after.clone();
        after.at = on_clients_clock(shop_clock, after.at);
        let mut history = History::new();
        for (sku, price, received) in &baseline.products {
            history.push(
                Millis(0),
                EventKind::Listed {
                    sku: sku.clone(),
                    price: *price,
                    limit: baseline.limits.get(sku).copied(),
                },
            );
            history.push(
                Millis(0),
                EventKind::Stocked {
                    sku: sku.clone(),
                    qty: *received,
                },
            );
        }
        for (at, event) in client {
            history.push(at, event);
        }
        let mut server: Vec<(Millis, EventKind)> = Vec::new();
        for order in &after.orders {
            for t in order.transitions() {
                let at = on_clients_clock(shop_clock, t.at);
                server.push((at, EventKind::Transition(t.clone())));
            }
        }
        for entry in ledger {
            let at = on_clients_clock(psp_clock, entry.at);
            server.push((at, EventKind::Ledger(entry)));
        }
        server.sort_by_key(|(at, _)| *at);
        for (at, event) in server {
            history.push(at, event);
        }
        Ok(check_except(&history, &after, opt_outs))
    }
}

/// The report's view of the checker's verdicts.
pub fn verdicts(verdicts: &[Verdict]) -> Vec<AuditVerdict> {
    verdicts
        .iter()
        .map(|v| {
            let (outcome, violations) = v.outcome();
            AuditVerdict {
                invariant: v.invariant.name().to_string(),
                outcome: outcome.to_string(),
                violations,
                examples: v
                    .violations()
                    .iter()
                    .take(3)
                    .map(|x| format!("{}: {}", x.subject, x.detail))
                    .collect(),
                reason: v.not_judged_reason().map(str::to_string),
                lost_to_faults: v.lost_to_faults_total,
            }
        })
        .collect()
}

/// Sales a verdict counts as lost to faults the run allowed (not
/// violations), one note per verdict that has any: how many, and the first
/// few described. The report model has no field for them, so they go into
/// its notes, which every format renders.
pub fn lost_to_faults(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| v.lost_to_faults_total > 0)
        .map(|v| {
            let examples: Vec<String> = v
                .lost_to_faults
                .iter()
                .take(3)
                .map(|x| format!("{}: {}", x.subject, x.detail))
                .collect();
            let more = v.lost_to_faults_total.saturating_sub(examples.len());
            format!(
                "{}: {} lost to faults the run allowed (not violations): {}{}",
                v.invariant,
                v.lost_to_faults_total,
                examples.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_clock_is_put_on_the_load_s_clock_by_one_reading() {
        // Proves a shop or PSP clock is placed on the clients' clock (ms since the load's
        // start) by one reading: its `now` at the middle of the round trip. A PSP started 60 s
        // before a load: its line at 61,000 ms is 1,000 ms into the load; a line from before the
        // load is 0; a reading answered "before" it was asked takes the asking time.
        let start = 1_700_000_000_000;
        let reading = ClockReading::new(Millis(70_000), start + 9_990, start + 10_010);
        assert_eq!(reading.unix_ms, start + 10_000);
        assert_eq!(reading.since_start(Millis(61_000), start), Millis(1_000));
        assert_eq!(reading.since_start(Millis(70_000), start), Millis(10_000));
        assert_eq!(reading.since_start(Millis(59_999), start), Millis(0));
        assert_eq!(reading.since_start(Millis(0), start), Millis(0));
        let backwards = ClockReading::new(Millis(5), start + 100, start + 50);
        assert_eq!(backwards.unix_ms, start + 100);
        // A clock that started after the load (a shop restarted on a fresh clock).
        let late = ClockReading::new(Millis(1_000), start + 5_000, start + 5_000);
        assert_eq!(late.since_start(Millis(500), start), Millis(4_500));
    }
    use stampede_core::{Invariant, Judgement, OrderId, Subject, Violation};

    /// A shop whose `/admin/audit` cuts the first `cut` connections without
    /// answering, answers the next `busy` with a 503, then answers
    /// `status` with `body`; returns its address and a count of requests.
    async fn flaky_shop(
        cut: usize,
        busy: usize,
        status: u16,
        body: String,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut head = vec![0u8; 4096];
                let _ = stream.read(&mut head).await;
                let n = counted.fetch_add(1, Ordering::SeqCst);
                if n < cut {
                    continue;
                }
                let (status, body) = if n < cut + busy {
                    (503, "busy".to_string())
                } else {
                    (status, body.clone())
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (addr, seen)
    }

    fn an_audit() -> String {
        let state = stampede_core::ShopState::new(
            stampede_core::Catalog::new([]),
            stampede_core::ShopConfig::default(),
        );
        serde_json::to_string(&state.audit(Millis(0))).unwrap()
    }

    #[tokio::test]
    async fn an_audit_request_without_an_answer_is_asked_again_a_bounded_number_of_times() {
        // Proves: two cut connections and a 503 do not lose the audit (the fourth request
        // reads it); a shop that never answers is asked exactly AUDIT_ATTEMPTS times, then
        // the error is the last one's; a refusal (401) is not asked again and says to check
        // the token.
        use std::sync::atomic::Ordering;
        let (shop, seen) = flaky_shop(2, 1, 200, an_audit()).await;
        let office = Backoffice::new(&shop, "127.0.0.1:9", "token-123");
        office.audit().await.expect("the audit, in the end");
        assert_eq!(seen.load(Ordering::SeqCst), 4);

        let (shop, seen) = flaky_shop(usize::MAX, 0, 200, String::new()).await;
        let office = Backoffice::new(&shop, "127.0.0.1:9", "token-123");
        assert!(office.audit().await.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), AUDIT_ATTEMPTS as usize);

        let (shop, seen) = flaky_shop(0, 0, 401, "{}".to_string()).await;
        let office = Backoffice::new(&shop, "127.0.0.1:9", "token-123");
        let refused = office.audit().await.unwrap_err().to_string();
        assert!(refused.contains("--admin-token"), "{refused}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    fn lost(n: u64) -> Violation {
        Violation {
            subject: Subject::Order(OrderId(n)),
            detail: format!("buyer {n} — lost to the fault psp stall"),
            evidence: vec![1, 2],
        }
    }

    #[test]
    fn sales_lost_to_faults_are_counted_in_the_notes_and_nothing_else_is() {
        // Proves: a verdict with sales lost to faults gets one note naming
        // the invariant, the total (not only the kept ones) and the first
        // three; verdicts without any get none.
        let served = Verdict {
            invariant: Invariant::WillingBuyersServed,
            judgement: Judgement::Holds,
            lost_to_faults: (1..=4).map(lost).collect(),
            lost_to_faults_total: 60,
        };
        let clean = Verdict {
            invariant: Invariant::TimelyDecisions,
            judgement: Judgement::Holds,
            lost_to_faults: Vec::new(),
            lost_to_faults_total: 0,
        };
        let notes = lost_to_faults(&[clean, served]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let note = &notes[0];
        assert!(
            note.starts_with("willing_buyers_served: 60 lost to faults"),
            "{note}"
        );
        assert!(note.contains("order ord_3: buyer 3") && !note.contains("buyer 4"));
        assert!(note.ends_with("; and 57 more"), "{note}");
    }

    #[test]
    fn the_provenance_note_says_which_promises_were_judged_and_whether_the_hold_is_known() {
        // Proves: the note gives the configured hold and both bounds, and for
        // a shop Stampede did not configure says the hold is unknown, or that
        // it is the one the user gave.
        let terms = Terms {
            hold_ms: Some(10_000),
            offer_payment_ms: 2_000,
            waitlist_offer_ms: None,
            decide_ms: 9_000,
        };
        let ours = Baseline::configured(Vec::new()).provenance(&terms);
        assert!(ours.contains("held 10000 ms (the reservation TTL Stampede configured)"));
        assert!(ours.contains("within 2000 ms (--offer-payment-within) and"));
        let waitlist = Baseline::configured(Vec::new()).provenance(&Terms {
            waitlist_offer_ms: Some(120_000),
            ..terms
        });
        assert!(
            waitlist.contains("or within 120000 ms when every unit"),
            "{waitlist}"
        );
        assert!(ours.contains("within 9000 ms (--decide-within)"));
        let theirs = Baseline {
            products: Vec::new(),
            limits: std::collections::BTreeMap::new(),
            from_shop: true,
        }
        .provenance(&Terms {
            hold_ms: None,
            ..terms
        });
        assert!(
            theirs.contains("hold (reservation TTL) is unknown"),
            "{theirs}"
        );
        let given = Baseline {
            products: Vec::new(),
            limits: std::collections::BTreeMap::new(),
            from_shop: true,
        }
        .provenance(&terms);
        assert!(
            given.contains("held 10000 ms (the shop's hold as given by --hold)"),
            "{given}"
        );
    }
}
