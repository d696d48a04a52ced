//! The real-traffic audit: after the load, read what really happened — the
//! shop's `/admin/audit` (every order with its transitions, stock, jobs) and
//! the PSP's ledger — add what the loadgen's clients were told, and run the
//! core's invariant checker on it, exactly as the simulator does.

use crate::LoadError;
use stampede_core::{AuditSnapshot, Cents, EventKind, History, Millis, Sku, Verdict, check_all};
use stampede_reports::AuditVerdict;
use stampede_server::http::{Connector, HttpClient};
use stampede_server::psp::PspClient;
use std::time::Duration;

/// Largest audit (or ledger page) the loadgen reads: about a million orders.
pub const MAX_AUDIT_BYTES: usize = 1 << 30;

/// How the loadgen reaches the shop's admin API and the PSP.
#[derive(Clone)]
pub struct Backoffice {
    http: HttpClient,
    shop: String,
    token: String,
    psp: PspClient,
}

impl Backoffice {
    /// `shop` and `psp` are `host:port`.
    pub fn new(shop: &str, psp: &str, token: &str) -> Backoffice {
        let http = HttpClient::new(Connector::tokio(), Duration::from_secs(60))
            .with_max_response_bytes(MAX_AUDIT_BYTES);
        Backoffice {
            psp: PspClient::new(http.clone(), psp.to_string()),
            http,
            shop: shop.to_string(),
            token: token.to_string(),
        }
    }

    /// The shop's full audit.
    pub async fn audit(&self) -> Result<AuditSnapshot, LoadError> {
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
            .map_err(|e| LoadError::Shop(format!("GET /admin/audit: {e}")))?;
        if !response.status.is_success() {
            return Err(LoadError::Shop(format!(
                "GET /admin/audit answered {} (is --admin-token right?)",
                response.status
            )));
        }
        response
            .json()
            .map_err(|e| LoadError::Shop(format!("GET /admin/audit: unreadable audit: {e}")))
    }

    /// The catalog's prices.
    pub async fn prices(&self) -> Result<Vec<(Sku, Cents)>, LoadError> {
        let response = self
            .http
            .get(&self.shop, "/v1/products")
            .await
            .map_err(|e| LoadError::Shop(format!("GET /v1/products: {e}")))?;
        let body: serde_json::Value = response
            .json()
            .map_err(|e| LoadError::Shop(format!("GET /v1/products: {e}")))?;
        let mut prices = Vec::new();
        for p in body["data"].as_array().into_iter().flatten() {
            if let (Some(sku), Some(price)) = (p["sku"].as_str(), p["price"].as_u64())
                && let Ok(sku) = Sku::new(sku)
            {
                prices.push((sku, Cents(price)));
            }
        }
        Ok(prices)
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

    /// Judges every invariant on the run: `before` is the audit taken before
    /// load (stock received), `client` what the loadgen's shoppers asked and
    /// were told, `after` the settled audit.
    pub async fn judge(
        &self,
        prices: &[(Sku, Cents)],
        before: &AuditSnapshot,
        client: Vec<(Millis, EventKind)>,
        after: &AuditSnapshot,
        settled: bool,
    ) -> Result<Vec<Verdict>, LoadError> {
        let ledger = self
            .psp
            .ledger()
            .await
            .map_err(|e| LoadError::Shop(format!("the PSP ledger: {e}")))?;
        let mut history = History::new();
        for (sku, price) in prices {
            history.push(
                Millis(0),
                EventKind::Listed {
                    sku: sku.clone(),
                    price: *price,
                },
            );
        }
        for (sku, level) in &before.stock {
            history.push(
                Millis(0),
                EventKind::Stocked {
                    sku: sku.clone(),
                    qty: level.received,
                },
            );
        }
        for (at, event) in client {
            history.push(at, event);
        }
        let mut server: Vec<(Millis, EventKind)> = Vec::new();
        for order in &after.orders {
            for t in order.transitions() {
                server.push((t.at, EventKind::Transition(t.clone())));
            }
        }
        for entry in ledger {
            server.push((entry.at, EventKind::Ledger(entry)));
        }
        server.sort_by_key(|(at, _)| *at);
        for (at, event) in server {
            history.push(at, event);
        }
        Ok(check_all(&history, after, settled))
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
            }
        })
        .collect()
}
