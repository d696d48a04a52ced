//! The PSP's HTTP API: parse, call one operation on the books, render.
//! Every error, including a body axum could not parse, is problem+json.

use super::Psp;
use super::state::{Answer, Refusal, intent_number};
use super::wire::{
    ConfirmIntent, CreateIntent, CreateRefund, IntentList, Ledger, LedgerLine, MAX_AMOUNT,
};
use crate::problem::Problem;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use stampede_core::{Cents, IdempotencyKey, IntentStatus, OrderId};
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest page of intents or ledger lines.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;
/// Marks a response replayed from an idempotency record (Stripe's header).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The PSP's API:
///
/// ```text
/// POST /v1/payment_intents              [Idempotency-Key]  {order, amount}
/// GET  /v1/payment_intents/{id}
/// GET  /v1/payment_intents?order=&after=&limit=             {data, has_more}
/// POST /v1/payment_intents/{id}/confirm                     {client_secret, card: ok|decline}
/// POST /v1/payment_intents/{id}/cancel
/// POST /v1/refunds                      [Idempotency-Key]  {intent}
/// GET  /v1/ledger?after=&limit=                             {entries, has_more}
/// ```
pub fn router(psp: Arc<Psp>) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(create).get(list))
        .route("/v1/payment_intents/{id}", get(show))
        .route("/v1/payment_intents/{id}/confirm", post(confirm))
        .route("/v1/payment_intents/{id}/cancel", post(cancel))
        .route("/v1/refunds", post(refund))
        .route("/v1/ledger", get(ledger))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(psp)
}

type Reply = Result<Response, Problem>;

async fn create(
    State(psp): State<Arc<Psp>>,
    headers: HeaderMap,
    body: Result<Json<CreateIntent>, JsonRejection>,
) -> Reply {
    let key = idempotency_key(&headers)?;
    let request = json(body)?;
    if request.amount == Cents::ZERO || request.amount > MAX_AMOUNT {
        return Err(Problem::bad_request(
            "invalid-amount",
            format!(
                "amount is {} cents; it must be 1..={} cents",
                request.amount.0, MAX_AMOUNT.0
            ),
        ));
    }
    let answer = psp.apply(|state, now| state.create(now, key, &request));
    psp.hold_if_stalled().await;
    render(answer)
}

async fn show(State(psp): State<Arc<Psp>>, id: Result<Path<String>, PathRejection>) -> Reply {
    let id = path(id)?;
    let intent = psp.read(|state| state.get(&id)).map_err(problem)?;
    Ok(Json(intent).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    order: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(psp): State<Arc<Psp>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Reply {
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let order = match &query.order {
        None => None,
        Some(text) => Some(OrderId::parse(text).ok_or_else(|| {
            Problem::bad_request("invalid-query", format!("order {text:?} is not ord_<n>"))
        })?),
    };
    let after = match &query.after {
        None => None,
        Some(text) => Some(intent_number(text).ok_or_else(|| {
            Problem::bad_request("invalid-query", format!("after {text:?} is not pi_<n>"))
        })?),
    };
    let limit = page_limit(query.limit)?;
    let (data, has_more) = psp.read(|state| state.page(order, after, limit));
    Ok(Json(IntentList { data, has_more }).into_response())
}

async fn confirm(
    State(psp): State<Arc<Psp>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<ConfirmIntent>, JsonRejection>,
) -> Reply {
    let id = path(id)?;
    let request = json(body)?;
    let answer =
        psp.apply(|state, now| state.confirm(now, &id, &request.client_secret, request.card));
    psp.hold_if_stalled().await;
    render(answer)
}

async fn cancel(State(psp): State<Arc<Psp>>, id: Result<Path<String>, PathRejection>) -> Reply {
    let id = path(id)?;
    render(psp.apply(|state, _| state.cancel(&id)))
}

async fn refund(
    State(psp): State<Arc<Psp>>,
    headers: HeaderMap,
    body: Result<Json<CreateRefund>, JsonRejection>,
) -> Reply {
    let key = idempotency_key(&headers)?;
    let request = json(body)?;
    let answer = psp.apply(|state, now| state.refund(now, key, &request));
    psp.hold_if_stalled().await;
    render(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn ledger(
    State(psp): State<Arc<Psp>>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Reply {
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let limit = page_limit(query.limit)?;
    let page = psp.read(|state| {
        // Line `seq` sits at index `seq - 1`, so lines after `after` start at index `after`.
        let all = state.ledger();
        let start = usize::try_from(query.after.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(all.len());
        let end = start.saturating_add(limit).min(all.len());
        Ledger {
            entries: all[start..end].iter().map(LedgerLine::from).collect(),
            has_more: end < all.len(),
        }
    });
    Ok(Json(page).into_response())
}

fn render(answer: Result<Answer, Refusal>) -> Reply {
    let answer = answer.map_err(problem)?;
    let mut response = Json(answer.intent).into_response();
    if answer.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn problem(refusal: Refusal) -> Problem {
    match refusal {
        Refusal::NotFound(id) => Problem::not_found(format!("no payment intent {id:?}")),
        Refusal::WrongSecret(id) => Problem::new(
            StatusCode::FORBIDDEN,
            "wrong-client-secret",
            "Forbidden",
            format!("the client_secret does not belong to {id}"),
        ),
        Refusal::Conflict {
            intent,
            status,
            operation,
        } => Problem::new(
            StatusCode::CONFLICT,
            "intent-status-conflict",
            "Conflict",
            format!("cannot {operation} {intent}: it is {}", status_name(status)),
        ),
        Refusal::KeyReused(key) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused",
            format!("Idempotency-Key {key:?} was used for a different request; use a new key"),
        ),
        Refusal::Full { what, limit } => {
            Problem::unavailable(format!("the PSP holds its maximum of {limit} {what}"))
        }
    }
}

fn status_name(status: IntentStatus) -> &'static str {
    match status {
        IntentStatus::RequiresPayment => "requires_payment",
        IntentStatus::Succeeded => "succeeded",
        IntentStatus::Failed => "failed",
        IntentStatus::Canceled => "canceled",
    }
}

/// The body, or a 400 saying why not (413 and 415 keep their status).
fn json<T: DeserializeOwned>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(rejection) => {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE
                || status == StatusCode::UNSUPPORTED_MEDIA_TYPE
            {
                Err(Problem::new(
                    status,
                    "invalid-body",
                    "Invalid body",
                    rejection.body_text(),
                ))
            } else {
                Err(Problem::bad_request("invalid-json", rejection.body_text()))
            }
        }
    }
}

fn path(id: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    id.map(|Path(id)| id)
        .map_err(|e| Problem::bad_request("invalid-path", e.body_text()))
}

fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(Problem::bad_request(
            "invalid-query",
            format!("limit is {n}; it must be 1..={MAX_PAGE}"),
        )),
    }
}

/// The optional `Idempotency-Key` header, validated.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let invalid = |detail: String| Problem::bad_request("invalid-idempotency-key", detail);
    let text = value
        .to_str()
        .map_err(|_| invalid("Idempotency-Key must be visible ASCII".into()))?;
    IdempotencyKey::new(text)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}
