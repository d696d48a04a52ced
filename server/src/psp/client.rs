//! The PSP's client, used by the shop's workers and by simulated shoppers.

use super::app::PAGE_MAX;
use super::wire::{
    Card, ConfirmIntent, CreateIntent, CreateRefund, IntentJson, IntentList, Ledger,
};
use crate::http::{HttpClient, HttpError, HttpResponse};
use crate::problem::Problem;
use bytes::Bytes;
use hyper::Method;
use serde::de::DeserializeOwned;
use stampede_core::{Cents, IntentId, LedgerEntry, OrderId, PaymentIntent};

/// Most pages one listing call reads before giving up (10M rows).
const PAGES_MAX: usize = 10_000;

/// Why a PSP call did not return what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PspError {
    /// No HTTP response (connect, timeout, broken exchange).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A non-2xx response, with its problem document when it had one.
    #[error("PSP answered {status}: {}", problem.as_ref().map_or("(no problem document)", |p| p.detail.as_str()))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The problem+json body.
        problem: Option<Problem>,
    },
    /// A 2xx response whose body was not what the API promises.
    #[error("unreadable PSP response: {0}")]
    Decode(String),
}

impl PspError {
    /// The HTTP status, if the PSP answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PspError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the PSP answered to a create-intent call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedIntent {
    /// The intent, as the PSP holds it now.
    pub intent: PaymentIntent,
    /// The secret the customer confirms the payment with.
    pub client_secret: String,
    /// The PSP answered from its idempotency record (its
    /// `Idempotent-Replayed: true` header): the intent already existed for
    /// this key, created by an earlier call.
    pub replayed: bool,
}

/// Calls one PSP at `addr` (`host:port`).
#[derive(Clone, Debug)]
pub struct PspClient {
    http: HttpClient,
    addr: String,
}

impl PspClient {
    /// A client of the PSP at `addr`.
    pub fn new(http: HttpClient, addr: String) -> PspClient {
        PspClient { http, addr }
    }

    /// The PSP's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Creates an intent for `order`; returns it with its client secret and
    /// whether the PSP replayed it. Without a key every call creates a new intent.
    pub async fn create_intent(
        &self,
        order: OrderId,
        amount: Cents,
        idempotency_key: Option<&str>,
        confirm_with: Option<Card>,
    ) -> Result<CreatedIntent, PspError> {
        let headers: Vec<(&str, String)> = idempotency_key
            .map(|key| ("idempotency-key", key.to_string()))
            .into_iter()
            .collect();
        let body = CreateIntent {
            order,
            amount,
            confirm_with,
        };
        let response = self
            .http
            .post_json(&self.addr, "/v1/payment_intents", &headers, &body)
            .await;
        let replayed = response.as_ref().is_ok_and(|r| {
            r.headers
                .get(super::REPLAYED_HEADER)
                .is_some_and(|v| v == "true")
        });
        let json: IntentJson = decode(response)?;
        Ok(CreatedIntent {
            intent: json.intent(),
            client_secret: json.client_secret,
            replayed,
        })
    }

    /// One intent.
    pub async fn get_intent(&self, id: &IntentId) -> Result<PaymentIntent, PspError> {
        let path = format!("/v1/payment_intents/{id}");
        let json: IntentJson = decode(self.http.get(&self.addr, &path).await)?;
        Ok(json.intent())
    }

    /// Every intent created for `order`, in id order.
    pub async fn intents_for_order(&self, order: OrderId) -> Result<Vec<PaymentIntent>, PspError> {
        let mut all = Vec::new();
        let mut after: Option<IntentId> = None;
        for _ in 0..PAGES_MAX {
            let page = self.page(Some(order), after.as_ref(), PAGE_MAX).await?;
            all.extend(page.data.iter().map(IntentJson::intent));
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.clone()),
                _ => return Ok(all),
            }
        }
        Err(PspError::Decode(format!(
            "more than {PAGES_MAX} pages of intents for {order}"
        )))
    }

    /// Up to `limit` (at most [`PAGE_MAX`]) intents after `after`, in id order.
    pub async fn list_intents(
        &self,
        after: Option<&IntentId>,
        limit: usize,
    ) -> Result<Vec<PaymentIntent>, PspError> {
        let page = self.page(None, after, limit).await?;
        Ok(page.data.iter().map(IntentJson::intent).collect())
    }

    /// Pays (or, with `decline`, fails to pay) with the payer's secret.
    pub async fn confirm(
        &self,
        id: &IntentId,
        client_secret: &str,
        decline: bool,
    ) -> Result<PaymentIntent, PspError> {
        let body = ConfirmIntent {
            client_secret: client_secret.to_string(),
            card: if decline { Card::Decline } else { Card::Ok },
        };
        let path = format!("/v1/payment_intents/{id}/confirm");
        let response = self.http.post_json(&self.addr, &path, &[], &body).await;
        Ok(decode::<IntentJson>(response)?.intent())
    }

    /// Cancels an unpaid intent (409 if it was paid).
    pub async fn cancel(&self, id: &IntentId) -> Result<PaymentIntent, PspError> {
        let path = format!("/v1/payment_intents/{id}/cancel");
        let response = self
            .http
            .send(&self.addr, Method::POST, &path, &[], Some(Bytes::new()))
            .await;
        Ok(decode::<IntentJson>(response)?.intent())
    }

    /// Refunds whatever `id` still has captured, once per key.
    pub async fn refund(
        &self,
        id: &IntentId,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PspError> {
        let body = CreateRefund { intent: id.clone() };
        let headers = [("idempotency-key", idempotency_key.to_string())];
        let response = self
            .http
            .post_json(&self.addr, "/v1/refunds", &headers, &body)
            .await;
        Ok(decode::<IntentJson>(response)?.intent())
    }

    /// The whole ledger, oldest first.
    pub async fn ledger(&self) -> Result<Vec<LedgerEntry>, PspError> {
        Ok(self.ledger_and_clock().await?.0)
    }

    /// The whole ledger, oldest first, and the PSP's clock as its last page
    /// gave it (`None` from a PSP that does not say).
    pub async fn ledger_and_clock(
        &self,
    ) -> Result<(Vec<LedgerEntry>, Option<stampede_core::Millis>), PspError> {
        let mut all = Vec::new();
        for _ in 0..PAGES_MAX {
            let after = all.last().map_or(0, |line: &LedgerEntry| line.seq);
            let path = format!("/v1/ledger?after={after}&limit={PAGE_MAX}");
            let page: Ledger = decode(self.http.get(&self.addr, &path).await)?;
            all.extend(page.entries.into_iter().map(LedgerEntry::from));
            if !page.has_more {
                return Ok((all, page.now));
            }
        }
        Err(PspError::Decode(format!(
            "more than {PAGES_MAX} pages of ledger"
        )))
    }

    async fn page(
        &self,
        order: Option<OrderId>,
        after: Option<&IntentId>,
        limit: usize,
    ) -> Result<IntentList, PspError> {
        // Ids are validated to letters, digits and `_-.:`, so they need no escaping.
        let mut path = format!("/v1/payment_intents?limit={limit}");
        if let Some(order) = order {
            path.push_str(&format!("&order={order}"));
        }
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        decode(self.http.get(&self.addr, &path).await)
    }
}

fn decode<T: DeserializeOwned>(response: Result<HttpResponse, HttpError>) -> Result<T, PspError> {
    let response = response?;
    if !response.status.is_success() {
        return Err(PspError::Status {
            status: response.status.as_u16(),
            problem: response.json().ok(),
        });
    }
    response.json().map_err(|e| PspError::Decode(e.to_string()))
}
