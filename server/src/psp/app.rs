//! The PSP's HTTP API: parse, call one operation on the books, render.
//! Every error, including a body axum could not parse, is problem+json.

use super::Psp;
use super::state::{Answer, Refusal, intent_number};
use super::wire::{
    AMOUNT_MAX, ConfirmIntent, CreateIntent, CreateRefund, IntentJson, IntentList, Ledger,
    LedgerLine,
};
use crate::api::{idempotency_key, json_request};
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use stampede_core::{Cents, IntentStatus, OrderId};
use std::sync::{Arc, OnceLock};
use utoipa::openapi::OpenApi;
use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest page of intents or ledger lines.
pub const PAGE_MAX: usize = 1000;
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
/// GET  /openapi.json                                       this API as OpenAPI 3.1
/// ```
pub fn router(psp: Arc<Psp>) -> Router {
    Router::from(api_router())
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(
            crate::problem::BodyCap {
                limit: BODY_BYTES_MAX,
                slug: "body-too-large",
                title: "Body too large",
            },
            crate::problem::refuse_oversized,
        ))
        .with_state(psp)
}

/// Every route, each registered with the annotation that documents it.
fn api_router() -> OpenApiRouter<Arc<Psp>> {
    let base = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Stampede fake payment provider")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A Stripe-shaped payment provider: payment intents (created once per \
                     Idempotency-Key), confirmation by the payer, refunds, and the append-only \
                     ledger the invariant checker trusts. Events go to the shop as signed \
                     webhooks. Errors are application/problem+json, a path it does not \
                     have (404 `not-found`) and a method a path does not take (405 \
                     `method-not-allowed`) included.",
                ))
                .build(),
        )
        .build();
    OpenApiRouter::with_openapi(base)
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(confirm))
        .routes(routes!(cancel))
        .routes(routes!(refund))
        .routes(routes!(ledger))
        .routes(routes!(openapi_json))
}

/// The PSP's OpenAPI document, as its `GET /openapi.json` serves it.
pub fn openapi() -> OpenApi {
    crate::openapi::with_every_route_answers(api_router().into_openapi())
}

/// The document as served, rendered once per process.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| crate::openapi::render(&openapi()))
}

#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)))]
async fn openapi_json() -> Response {
    crate::openapi::served(document_json())
}

type Reply = Result<Response, Problem>;

#[utoipa::path(post, path = "/v1/payment_intents",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Optional; the same key with the same body returns the same intent (the shop sends `pay_<order>`).")),
    request_body(content = CreateIntent, content_type = "application/json"),
    responses(
        (status = 200, description = "The intent (charged at once when `confirm_with` is given).", body = IntentJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answer was saved under the Idempotency-Key by an earlier request."))),
        (status = 400, description = "`malformed-json`, `unreadable-body`, `invalid-amount`, `invalid-idempotency-key`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: not sent as application/json.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`: another body under this key.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the PSP holds its maximum of intents or keys.", body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(psp): State<Arc<Psp>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let key = idempotency_key(&headers, false)?;
    let raw = body.as_ref().ok().cloned();
    let request: CreateIntent = json_request(&headers, body).map_err(|problem| {
        match raw.as_deref().and_then(amount_problem) {
            Some(amount) if problem.slug() == "malformed-json" => amount,
            _ => problem,
        }
    })?;
    if request.amount == Cents::ZERO || request.amount > AMOUNT_MAX {
        return Err(Problem::bad_request(
            "invalid-amount",
            format!(
                "amount is {} cents; it must be 1..={} cents",
                request.amount.0, AMOUNT_MAX.0
            ),
        ));
    }
    let answer = psp.apply(|state, now| state.create(now, key, &request));
    psp.hold_if_stalled().await;
    render(answer)
}

#[utoipa::path(get, path = "/v1/payment_intents/{id}", params(("id" = String, Path, pattern = "^pi_(0|[1-9][0-9]{0,18})$", description = "The intent, `pi_<n>`.")),
    responses(
        (status = 200, description = "The intent.", body = IntentJson),
        (status = 400, description = "`invalid-path`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such intent.", body = Problem, content_type = "application/problem+json")))]
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

#[utoipa::path(get, path = "/v1/payment_intents",
    params(("order" = Option<String>, Query, pattern = "^ord_(0|[1-9][0-9]{0,18})$", description = "Only the intents of this order, `ord_<n>`."),
           ("after" = Option<String>, Query, pattern = "^pi_(0|[1-9][0-9]{0,18})$", description = "Intents after this one, `pi_<n>` (paging)."),
           ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1–1000 (default 100).")),
    responses(
        (status = 200, description = "A page of intents in id order.", body = IntentList),
        (status = 400, description = "`invalid-query`.", body = Problem, content_type = "application/problem+json")))]
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

#[utoipa::path(post, path = "/v1/payment_intents/{id}/confirm", params(("id" = String, Path, pattern = "^pi_(0|[1-9][0-9]{0,18})$", description = "The intent, `pi_<n>`.")),
    request_body(content = ConfirmIntent, content_type = "application/json"),
    responses(
        (status = 200, description = "The intent, succeeded or failed (its webhook event is on its way).", body = IntentJson),
        (status = 400, description = "`malformed-json`, `unreadable-body`, `invalid-path`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`wrong-client-secret`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such intent.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`intent-status-conflict`: already confirmed or canceled.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: not sent as application/json.", body = Problem, content_type = "application/problem+json")))]
async fn confirm(
    State(psp): State<Arc<Psp>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let id = path(id)?;
    let request: ConfirmIntent = json_request(&headers, body)?;
    let answer =
        psp.apply(|state, now| state.confirm(now, &id, &request.client_secret, request.card));
    psp.hold_if_stalled().await;
    render(answer)
}

#[utoipa::path(post, path = "/v1/payment_intents/{id}/cancel", params(("id" = String, Path, pattern = "^pi_(0|[1-9][0-9]{0,18})$", description = "The intent, `pi_<n>`.")),
    responses(
        (status = 200, description = "The intent, canceled; one already canceled or failed is answered unchanged (nothing to cancel, nothing charged).", body = IntentJson),
        (status = 400, description = "`invalid-path`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such intent.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`intent-status-conflict`: it was already charged.", body = Problem, content_type = "application/problem+json")))]
async fn cancel(State(psp): State<Arc<Psp>>, id: Result<Path<String>, PathRejection>) -> Reply {
    let id = path(id)?;
    render(psp.apply(|state, _| state.cancel(&id)))
}

#[utoipa::path(post, path = "/v1/refunds",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Optional; the same key refunds once (the shop sends `refund_<order>`).")),
    request_body(content = CreateRefund, content_type = "application/json"),
    responses(
        (status = 200, description = "The intent, refunded in full. One with nothing captured (not charged yet, failed, canceled, or refunded already) is answered unchanged (`refunded` as it was) and its key is not bound, so a refund asked too early can be asked again under the same key once the payment is captured.", body = IntentJson, headers(("Idempotent-Replayed" = String, description = "`true` when this answer was saved under the Idempotency-Key by an earlier request."))),
        (status = 400, description = "`malformed-json`, `unreadable-body`, `invalid-idempotency-key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such intent.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: not sent as application/json.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the PSP holds its maximum of keys.", body = Problem, content_type = "application/problem+json")))]
async fn refund(
    State(psp): State<Arc<Psp>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let key = idempotency_key(&headers, false)?;
    let request: CreateRefund = json_request(&headers, body)?;
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

#[utoipa::path(get, path = "/v1/ledger",
    params(("after" = Option<u64>, Query, description = "Lines after this `seq` (paging)."),
           ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1–1000 (default 100).")),
    responses(
        (status = 200, description = "A page of the append-only ledger: every charge and refund, in order.", body = Ledger),
        (status = 400, description = "`invalid-query`.", body = Problem, content_type = "application/problem+json")))]
async fn ledger(
    State(psp): State<Arc<Psp>>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Reply {
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let limit = page_limit(query.limit)?;
    if query.after.is_some_and(|after| after > i64::MAX as u64) {
        // The contract's integers are int64; no ledger is that long.
        return Err(Problem::bad_request(
            "invalid-query",
            format!("after must be at most {}", i64::MAX),
        ));
    }
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
            now: Some(psp.clock_now()),
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
            format!(
                "Idempotency-Key {:?} was used for a different request; use a new key",
                key.as_str()
            ),
        ),
        Refusal::Full { what, limit } => {
            Problem::unavailable(format!("the PSP holds its maximum of {limit} {what}"))
        }
    }
}

/// An `amount` given as a JSON number that is no whole number of cents
/// (negative, a fraction, past `u64`): `invalid-amount`, as 0 and amounts
/// over the maximum are, rather than a body of the wrong shape.
fn amount_problem(body: &[u8]) -> Option<Problem> {
    #[derive(Deserialize)]
    struct Amount {
        amount: Option<serde_json::Number>,
    }
    let number = serde_json::from_slice::<Amount>(body).ok()?.amount?;
    let whole: Result<u64, _> =
        crate::openapi::whole_number(serde_json::Value::Number(number.clone()));
    whole.is_err().then(|| {
        Problem::bad_request(
            "invalid-amount",
            format!(
                "amount is {number}; it must be a whole number of cents, 1..={}",
                AMOUNT_MAX.0
            ),
        )
    })
}

fn status_name(status: IntentStatus) -> &'static str {
    match status {
        IntentStatus::RequiresPayment => "requires_payment",
        IntentStatus::Succeeded => "succeeded",
        IntentStatus::Failed => "failed",
        IntentStatus::Canceled => "canceled",
    }
}

fn path(id: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    id.map(|Path(id)| id)
        .map_err(|e| Problem::bad_request("invalid-path", e.body_text()))
}

fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=PAGE_MAX => Ok(n),
        n => Err(Problem::bad_request(
            "invalid-query",
            format!("limit is {n}; it must be 1..={PAGE_MAX}"),
        )),
    }
}
