//! The shop's HTTP API (JSON; errors as `application/problem+json`).
//!
//! ```text
//! GET  /v1/products, /v1/products/{sku}     catalog + availability (may be stale)
//! POST /v1/orders            Idempotency-Key   {customer_id, items:[{sku, qty}]} -> 202 {order_id, status}
//! GET  /v1/orders/{id}                         status, items, total, transition history
//! GET  /v1/orders/{id}/events                  server-sent events of status changes
//! POST /v1/orders/{id}/pay   Idempotency-Key   creates/reuses the PSP intent -> client secret
//! POST /v1/orders/{id}/cancel                  release or refuse
//! POST /v1/webhooks/psp      Psp-Signature     PSP events
//! POST /admin/restock, GET /admin/audit        bearer token
//! GET  /healthz, /readyz, /metrics, /openapi.json
//! ```
//!
//! `GET /openapi.json` is this table in full (OpenAPI 3.1, see
//! [`crate::openapi`]): each route is registered through `api_router` with
//! the `#[utoipa::path]` annotation that documents it.
//!
//! Each handler validates its input completely before the first store call,
//! so a bad request changes nothing.

use crate::app::App;
use crate::degrade::CatalogRead;
use crate::metrics::{self, Counters};
use crate::naive;
use crate::payments;
use crate::problem::Problem;
use crate::psp::wire::WebhookPayload;
use crate::signature;
use crate::store::StoreError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use stampede_core::{
    Begin, Cents, Command, Corroboration, CustomerId, Fingerprint, IdempotencyKey, ItemRequest,
    Millis, Order, OrderId, OrderStatus, PlaceOrder, Placed, Product, SavedResponse, ShopError,
    Sku, Step, StockLevel, WebhookOutcome,
};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Shared = State<Arc<App>>;
pub(crate) type ApiResult = Result<Response, Problem>;

/// The shop's router, ready to serve over any listener.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    Router::from(api_router())
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            crate::problem::BodyCap {
                limit,
                slug: "body-too-large",
                title: "Body too large",
            },
            crate::problem::refuse_oversized,
        ))
        .with_state(app)
}

/// Every route, each registered with the annotation that documents it.
fn api_router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json))
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(place_order))
        .routes(routes!(get_order))
        .routes(routes!(order_events))
        .routes(routes!(pay))
        .routes(routes!(cancel))
        .routes(routes!(webhook))
        .routes(routes!(restock))
        .routes(routes!(audit))
}

/// The shop's OpenAPI document, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::openapi::with_every_route_answers(api_router().into_openapi())
}

/// `GET /healthz`: `ok` while the shop can serve; 503 once its store has
/// stopped for good (a failed SQLite commit, or its files removed), so a
/// supervisor restarts it.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "The shop can serve: `ok`.", body = String, content_type = "text/plain"),
        (status = 503, description = "`store-failed`: the store has stopped for good (a commit failed, or its files were removed while it served); the detail says what to do.", body = Problem, content_type = "application/problem+json")))]
async fn healthz(State(app): Shared) -> Result<&'static str, Problem> {
    match app.store.failed() {
        None => Ok("ok"),
        Some(why) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-failed",
            "The store has stopped",
            why,
        )),
    }
}

/// How long `GET /readyz` waits for the store to answer a read, ms.
pub const READINESS_WAIT_MS: u64 = 2_000;

/// `GET /readyz`: whether this shop can serve requests now — its store
/// answers a read (the catalog) within [`READINESS_WAIT_MS`]. Unlike
/// `/healthz` (restart me), a 503 here says "send requests elsewhere for
/// now": a replica whose database is unreachable or stalled.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The store answered a read: `ready`.", body = String, content_type = "text/plain"),
        (status = 503, description = "`store-failed` (as `/healthz`), or `unavailable`: the store did not answer a read within 2 s (a database unreachable or stalled); requests would wait or fail.", body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(app): Shared) -> Result<&'static str, Problem> {
    healthz(State(Arc::clone(&app))).await?;
    let wait = Duration::from_millis(READINESS_WAIT_MS);
    match tokio::time::timeout(wait, app.store.catalog()).await {
        Ok(Ok(_)) => Ok("ready"),
        Ok(Err(error)) => Err(Problem::unavailable(format!(
            "the store cannot serve a read: {error}"
        ))),
        Err(_) => Err(Problem::unavailable(format!(
            "the store did not answer a read within {} s",
            READINESS_WAIT_MS / 1000
        ))),
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)))]
async fn openapi_json() -> Response {
    crate::openapi::served(crate::openapi::document_json())
}

// ---- errors ---------------------------------------------------------------

/// Maps a store failure to a problem, counting it.
pub(crate) fn store_problem(app: &App, error: StoreError) -> Problem {
    app.counters.store_error(&error);
    if matches!(error, StoreError::Shop(ShopError::Shed { .. })) {
        app.degrade.shed(app.clock.now());
    }
    match error {
        StoreError::Shop(e) => shop_problem(e),
        StoreError::Unavailable(detail) => Problem::unavailable(format!(
            "the store did not answer ({detail}); the request may or may not have taken effect: \
             retry it (a write with the same Idempotency-Key, which replays it if it did)"
        )),
        StoreError::Protocol(detail) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store-protocol",
            "Store protocol error",
            detail,
        ),
    }
}

fn shop_problem(error: ShopError) -> Problem {
    let detail = error.to_string();
    match error {
        ShopError::Items(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-items",
            "Invalid items",
            detail,
        ),
        ShopError::PurchaseLimit { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "purchase-limit",
            "Purchase limit exceeded",
            detail,
        ),
        ShopError::Shed { retry_after_ms, .. } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "Shop overloaded",
            format!("{detail}; nothing was created, retry with the same Idempotency-Key"),
        )
        .retry_after_ms(retry_after_ms),
        ShopError::RateLimited { retry_after_ms, .. } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many orders",
            detail,
        )
        .retry_after_ms(retry_after_ms),
        ShopError::SoldOut { .. } => {
            Problem::new(StatusCode::CONFLICT, "sold-out", "Sold out", detail)
        }
        ShopError::UnknownOrder(_) => Problem::not_found(detail),
        ShopError::Illegal(_) => Problem::new(
            StatusCode::CONFLICT,
            "illegal-transition",
            "Illegal transition",
            detail,
        ),
        ShopError::NotCancellable { .. } => Problem::new(
            StatusCode::CONFLICT,
            "not-cancellable",
            "Order cannot be cancelled",
            detail,
        ),
        ShopError::Inventory(_) => Problem::new(
            StatusCode::CONFLICT,
            "inventory",
            "Inventory refused",
            detail,
        ),
        ShopError::Jobs(_) | ShopError::TooManyOrders(_) | ShopError::InboxFull => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Shop overloaded",
            detail,
        ),
        ShopError::Idempotency(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "idempotency-protocol",
            "Idempotency protocol error",
            detail,
        ),
    }
}

fn body_problem(rejection: BytesRejection) -> Problem {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            status,
            "body-too-large",
            "Body too large",
            rejection.body_text(),
        )
    } else {
        Problem::bad_request("unreadable-body", rejection.body_text())
    }
}

/// Refuses a body the client did not declare as JSON: its `Content-Type`
/// must be `application/json` or `application/<anything>+json` (parameters
/// such as `charset` allowed), as the published contract says — 415
/// `unsupported-media-type` otherwise, missing included. (The PSP's webhook
/// is read whatever it declares: its signature, not a header, vouches for it.)
///
/// A body sent with a `Content-Encoding` other than `identity` (gzip, say) is
/// refused the same way: the shop reads bodies as sent and would otherwise
/// parse the compressed bytes as JSON (RFC 9110 §8.4: 415).
fn json_media(headers: &HeaderMap) -> Result<(), Problem> {
    let encodings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some(coding) = encodings.iter().find(|c| *c != "identity") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("Content-Encoding {coding:?} is not accepted; send the body unencoded"),
        ));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = declared
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let json = essence.as_deref().is_some_and(|e| {
        e == "application/json"
            || e.strip_prefix("application/")
                .and_then(|sub| sub.strip_suffix("+json"))
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    });
    if json {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        match declared {
            Some(v) => format!("Content-Type is {v:?}; the body must be sent as application/json"),
            None => "Content-Type is missing; the body must be sent as application/json".into(),
        },
    ))
}

/// A JSON request body as every route of the shop and the PSP reads one: read
/// whole (`unreadable-body`, `body-too-large`), declared as JSON
/// (`unsupported-media-type`), then parsed ([`parse_json`]).
pub(crate) fn json_request<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let body = body.map_err(body_problem)?;
    json_media(headers)?;
    parse_json(&body)
}

/// The body as `T`, or a 400 `malformed-json` saying why not: not JSON, a
/// field unknown, missing, of the wrong type or given twice, or something
/// other than an object where the contract has one.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let parsed = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request("malformed-json", format!("request body: {e}")))?;
    objects_only(body).map_err(|at| {
        Problem::bad_request(
            "malformed-json",
            format!(
                "request body: expected a JSON object at byte {at} (the body and every array element are objects)"
            ),
        )
    })?;
    Ok(parsed)
}

/// Checks that a JSON document (already parsed) is an object and that every
/// array in it holds only objects, as every request body the shop publishes
/// is: serde would also take a struct written as an array
/// (`["c1", [["mug", 1]]]`), which the contract does not allow. `Err` is
/// the byte offset of the first value that should have been an object.
fn objects_only(body: &[u8]) -> Result<(), usize> {
    let mut arrays: Vec<bool> = Vec::new(); // per open container: is it an array
    let mut want_object = true; // the next value must be an object (the body, an element)
    let (mut in_string, mut escaped) = (false, false);
    for (at, &byte) in body.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if byte.is_ascii_whitespace() {
            continue;
        }
        if want_object {
            want_object = false;
            match byte {
                b'{' => {}
                // An empty array: no element to check. (A `]` anywhere else is not JSON,
                // which serde has refused before this runs.)
                b']' => {}
                _ => return Err(at),
            }
        }
        match byte {
            b'"' => in_string = true,
            b'{' => arrays.push(false),
            b'[' => {
                arrays.push(true);
                want_object = true;
            }
            b'}' | b']' => {
                arrays.pop();
            }
            b',' => want_object = arrays.last() == Some(&true),
            _ => {}
        }
    }
    Ok(())
}

/// A path parameter. One that is not UTF-8 (`%ff`) names nothing this shop
/// has: 404 `not-found`, as any id it does not know (axum's own rejection
/// would be a plain-text 400).
pub(crate) struct Segment(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Segment {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Segment, Problem> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Segment(segment)),
            Err(rejection) => Err(Problem::not_found(format!(
                "{}: names nothing here",
                rejection.body_text()
            ))),
        }
    }
}

fn parse_order_id(text: &str) -> Result<OrderId, Problem> {
    OrderId::parse(text)
        .ok_or_else(|| Problem::not_found(format!("{text:?} is not an order id (ord_<number>)")))
}

/// The `Idempotency-Key` header, validated (one header, visible ASCII, 1 to
/// 255 characters); `required` makes a missing one a 400.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    required: bool,
) -> Result<Option<IdempotencyKey>, Problem> {
    if headers.get_all("idempotency-key").iter().nth(1).is_some() {
        return Err(Problem::bad_request(
            "invalid-idempotency-key",
            "send one Idempotency-Key header, not several",
        ));
    }
    match headers.get("idempotency-key") {
        None if required => Err(Problem::bad_request(
            "idempotency-key-missing",
            "send an Idempotency-Key header (e.g. a UUID) so retries cannot create duplicates",
        )),
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                Problem::bad_request(
                    "invalid-idempotency-key",
                    "Idempotency-Key must be visible ASCII",
                )
            })?;
            IdempotencyKey::new(text)
                .map(Some)
                .map_err(|e| Problem::bad_request("invalid-idempotency-key", e.to_string()))
        }
    }
}

pub(crate) fn replayed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

// ---- wire types -----------------------------------------------------------

/// Body of `POST /v1/orders`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlaceOrderBody {
    /// Who orders: 1–64 ASCII letters, digits and `_-.:`; purchase and rate limits count per
    /// customer.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    customer_id: String,
    /// 1–16 lines.
    #[schema(min_items = 1, max_items = 16)]
    items: Vec<ItemBody>,
    /// `"saved_card"`: express checkout, charged as soon as the stock is reserved.
    #[serde(default)]
    payment: Option<PaymentChoice>,
}

/// How an order is paid.
#[derive(Clone, Copy, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PaymentChoice {
    /// The customer pays later through `/pay` and the PSP.
    Later,
    /// Express checkout with the customer's saved card.
    SavedCard,
}

/// One line of `POST /v1/orders`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    /// A SKU of the catalog.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    sku: String,
    /// Units, 1 to the product's most per order (at most 100).
    #[schema(minimum = 1, maximum = 100)]
    #[serde(deserialize_with = "crate::openapi::whole_number")]
    qty: u32,
    /// Not part of the contract: the reference refuses it (422 `client-price-not-accepted`);
    /// only the `client_price=trust` mistake reads it.
    #[serde(default)]
    #[schema(ignore)]
    price: Option<u64>,
}

/// `202` body of `POST /v1/orders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderAccepted {
    /// The order.
    pub order_id: String,
    /// Its status when accepted.
    pub status: String,
}

/// `GET /v1/orders/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// The order.
    pub order_id: String,
    /// Current status.
    pub status: String,
    /// Who ordered.
    pub customer_id: String,
    /// Lines with captured prices.
    pub items: Vec<LineView>,
    /// Total in cents.
    pub total: u64,
    /// The PSP intent, once created.
    pub intent_id: Option<String>,
    /// When accepted (shop clock, ms).
    pub created_at_ms: u64,
    /// Every status change.
    pub transitions: Vec<TransitionView>,
}

/// One line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// SKU.
    pub sku: String,
    /// Units.
    pub qty: u32,
    /// Captured unit price, cents.
    pub unit_price: u64,
}

/// One transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// When (shop clock, ms).
    pub at_ms: u64,
    /// Why.
    pub cause: String,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> OrderView {
        OrderView {
            order_id: o.id.to_string(),
            status: o.status().to_string(),
            customer_id: o.customer.to_string(),
            items: o
                .lines
                .iter()
                .map(|l| LineView {
                    sku: l.sku.to_string(),
                    qty: l.qty,
                    unit_price: l.unit_price.0,
                })
                .collect(),
            total: o.total.0,
            intent_id: o.intent.as_ref().map(ToString::to_string),
            created_at_ms: o.created_at.0,
            transitions: o
                .transitions()
                .iter()
                .map(|t| TransitionView {
                    from: t.from.to_string(),
                    to: t.to.to_string(),
                    at_ms: t.at.0,
                    cause: t.cause.to_string(),
                })
                .collect(),
        }
    }
}

/// `200` body of `POST /v1/orders/{id}/pay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentStartedView {
    /// The order.
    pub order_id: String,
    /// The PSP intent to confirm.
    pub intent_id: String,
    /// Amount, cents.
    pub amount: u64,
    /// The secret the client confirms the intent with at the PSP.
    pub client_secret: String,
}

/// Renders a saved response exactly as it was first sent.
pub(crate) fn render_saved(saved: &SavedResponse) -> Response {
    match saved {
        SavedResponse::OrderAccepted { order, status } => (
            StatusCode::ACCEPTED,
            Json(OrderAccepted {
                order_id: order.to_string(),
                status: status.to_string(),
            }),
        )
            .into_response(),
        SavedResponse::PaymentStarted {
            order,
            intent,
            amount,
            client_secret,
        } => (
            StatusCode::OK,
            Json(PaymentStartedView {
                order_id: order.to_string(),
                intent_id: intent.to_string(),
                amount: amount.0,
                client_secret: client_secret.clone(),
            }),
        )
            .into_response(),
    }
}

// ---- catalog --------------------------------------------------------------

/// A product.
#[derive(Serialize, ToSchema)]
struct ProductView {
    /// Its SKU.
    sku: String,
    /// Its name.
    name: String,
    /// Unit price, cents.
    price: u64,
    /// Units on the shelf (advisory: the reserve step decides).
    available: u64,
    /// Most units one customer may hold in live orders, when limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_customer_limit: Option<u32>,
}

/// `GET /v1/products`.
#[derive(Serialize, ToSchema)]
struct ProductList {
    /// Every product.
    data: Vec<ProductView>,
}

/// The catalog with stock levels: from the store, or, while the shop is
/// shedding orders, from a copy at most `degraded_read_max_age_ms` old
/// (returned with its age, see [`crate::degrade`]).
async fn read_catalog(app: &App) -> Result<(CatalogRead, Option<u64>), Problem> {
    let now = app.clock.now();
    let max_age = app.config.degraded_read_max_age_ms;
    let degraded = max_age > 0
        && app
            .degrade
            .under_pressure(now, app.config.degrade_window_ms);
    if degraded && let Some((read, age)) = app.degrade.cached(now, max_age) {
        Counters::bump(&app.counters.degraded_reads);
        return Ok((read, Some(age)));
    }
    let read: CatalogRead = Arc::new(
        app.store
            .catalog()
            .await
            .map_err(|e| store_problem(app, e))?,
    );
    if max_age > 0 {
        app.degrade.keep(now, Arc::clone(&read));
    }
    Ok((read, None))
}

fn product_view(p: &Product, level: &StockLevel) -> ProductView {
    ProductView {
        sku: p.sku.to_string(),
        name: p.name.clone(),
        price: p.price.0,
        available: level.available,
        per_customer_limit: p.per_customer_limit,
    }
}

/// Marks a response served from the cached catalog.
fn degraded(mut response: Response, age_ms: Option<u64>) -> Response {
    if let Some(age_ms) = age_ms {
        let headers = response.headers_mut();
        headers.insert("stampede-degraded", HeaderValue::from_static("cached"));
        headers.insert(header::AGE, HeaderValue::from(age_ms / 1_000));
    }
    response
}

#[utoipa::path(get, path = "/v1/products", tag = "catalog",
    responses(
        (status = 200, description = "Every product with its price and the units on the shelf. While the shop is shedding orders the list may come from a copy a second old (degrade mode).", body = ProductList,
            headers(("Stampede-Degraded" = String, description = "`cached` when served from the copy taken under pressure."),
                    ("Age" = u64, description = "Seconds since that copy was read (only with Stampede-Degraded)."))),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent).", body = Problem, content_type = "application/problem+json")))]
async fn list_products(State(app): Shared) -> ApiResult {
    let (catalog, age) = read_catalog(&app).await?;
    let data: Vec<ProductView> = catalog.iter().map(|(p, l)| product_view(p, l)).collect();
    Ok(degraded(Json(ProductList { data }).into_response(), age))
}

#[utoipa::path(get, path = "/v1/products/{sku}", tag = "catalog",
    params(("sku" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "A SKU of the catalog.")),
    responses(
        (status = 200, description = "The product (maybe from the degrade-mode copy, as for the list).", body = ProductView,
            headers(("Stampede-Degraded" = String, description = "`cached` when served from the copy taken under pressure."),
                    ("Age" = u64, description = "Seconds since that copy was read."))),
        (status = 404, description = "`not-found`: no such SKU.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent).", body = Problem, content_type = "application/problem+json")))]
async fn get_product(State(app): Shared, Segment(sku): Segment) -> ApiResult {
    let sku = Sku::new(sku).map_err(|e| Problem::not_found(e.to_string()))?;
    let (catalog, age) = read_catalog(&app).await?;
    let (p, level) = catalog
        .iter()
        .find(|(p, _)| p.sku == sku)
        .ok_or_else(|| Problem::not_found(format!("unknown sku {sku}")))?;
    Ok(degraded(Json(product_view(p, level)).into_response(), age))
}

// ---- orders ---------------------------------------------------------------

/// A validated `POST /v1/orders`.
pub(crate) struct OrderInput {
    pub(crate) request: PlaceOrder,
    pub(crate) client_prices: Option<Vec<Cents>>,
}

fn validate_order(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<OrderInput, Problem> {
    json_media(headers)?;
    let key = idempotency_key(headers, naive::key_required(app))?;
    let body: PlaceOrderBody = parse_json(body)?;
    let customer = CustomerId::new(body.customer_id)
        .map_err(|e| Problem::bad_request("invalid-customer", e.to_string()))?;
    let mut items =
        Vec::with_capacity(body.items.len().min(stampede_core::LINES_PER_ORDER_MAX + 1));
    let mut prices = Vec::new();
    for (i, item) in body.items.into_iter().enumerate() {
        if i > stampede_core::LINES_PER_ORDER_MAX {
            break; // the core reports TooManyLines; no need to parse the rest
        }
        let sku = Sku::new(item.sku)
            .map_err(|e| Problem::bad_request("invalid-sku", format!("items[{i}]: {e}")))?;
        if let Some(price) = item.price {
            prices.push(naive::client_price(app, i, price)?);
        }
        items.push(ItemRequest { sku, qty: item.qty });
    }
    let client_prices = naive::trusted_prices(app, prices, items.len());
    Ok(OrderInput {
        request: PlaceOrder {
            key,
            customer,
            items,
            express: body.payment == Some(PaymentChoice::SavedCard),
        },
        client_prices,
    })
}

#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "Required; 1–255 visible ASCII characters. The same key with the same body replays the first answer; with another body it is refused.")),
    request_body(content = PlaceOrderBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the order exists and its reserve step is queued.", body = OrderAccepted,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the saved answer to an earlier request with the key.")),
            links(
                ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/order_id")), description = "The order just placed.")),
                ("PayOrder" = (operation_id = "pay", parameters(("id" = "$response.body#/order_id")), description = "Pay for it.")),
                ("CancelOrder" = (operation_id = "cancel", parameters(("id" = "$response.body#/order_id")), description = "Cancel it.")),
                ("OrderEvents" = (operation_id = "order_events", parameters(("id" = "$response.body#/order_id")), description = "Follow it."))
            )),
        (status = 400, description = "`malformed-json`, `unreadable-body`, `idempotency-key-missing`, `invalid-idempotency-key`, `invalid-customer`, `invalid-sku`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`idempotency-key-in-flight`: the first request with this key is still running, retry shortly; `sold-out`: a SKU asked for cannot be filled even if every unpaid cart lapsed (nothing created).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: the body was not sent as `application/json`, or was sent with a `Content-Encoding` (the shop takes bodies unencoded).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-items` (no lines or too many, a SKU on two lines, a quantity of 0 or past the product's per-order limit, an unknown SKU, a total above 999,999.99 — the most one payment takes), `purchase-limit`, `client-price-not-accepted`, `idempotency-key-reused` (another body under this key).", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`overloaded`: too many orders await a decision (shed, nothing created); `rate-limited`: this customer's orders per minute. Retry after Retry-After with the same key.", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent). `overloaded`: a bounded queue of the shop is full (jobs, parked webhooks; retry later), or it holds its maximum of orders (1,000,000: it takes no more until it is started on a fresh store).", body = Problem, content_type = "application/problem+json")))]
async fn place_order(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(body_problem)?;
    let input = validate_order(&app, &headers, &body)?;
    if naive::places_naively(&app, &input) {
        return naive::place_order(&app, input).await;
    }
    let placed = app.store.place_order(input.request).await;
    placed_response(&app, placed.map_err(|e| store_problem(&app, e))?)
}

pub(crate) fn placed_response(app: &App, placed: Placed) -> ApiResult {
    match placed {
        Placed::Created { order, job } => {
            Counters::bump(&app.counters.orders_admitted);
            tracing::info!(order_id = %order, job = %job, "order accepted; reserve job enqueued");
            Ok(render_saved(&SavedResponse::OrderAccepted {
                order,
                status: OrderStatus::Created,
            }))
        }
        Placed::Replay(saved) => Ok(replayed(render_saved(&saved))),
        Placed::KeyMismatch => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was used for a different request; use a new key for a new order",
        )),
        Placed::KeyInFlight => Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency-key-in-flight",
            "Request in progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )),
        Placed::KeyStoreFull => {
            Counters::bump(&app.counters.store_unavailable);
            Err(Problem::unavailable(
                "the idempotency store is full; retry later",
            ))
        }
    }
}

pub(crate) async fn load_order(app: &App, id: OrderId) -> Result<Order, Problem> {
    app.store
        .get_order(id)
        .await
        .map_err(|e| store_problem(app, e))?
        .map(|o| *o)
        .ok_or_else(|| Problem::not_found(format!("no order {id}")))
}

#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, pattern = "^ord_(0|[1-9][0-9]{0,18})$", description = "The order, `ord_<number>`.")),
    responses(
        (status = 200, description = "The order: status, lines with captured prices, total, intent, every transition.", body = OrderView),
        (status = 404, description = "`not-found`: no such order, or not an order id.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent).", body = Problem, content_type = "application/problem+json")))]
async fn get_order(State(app): Shared, Segment(id): Segment) -> ApiResult {
    let order = load_order(&app, parse_order_id(&id)?).await?;
    Ok(Json(OrderView::from(&order)).into_response())
}

/// Where the PSP delivers its webhooks (the route below; utoipa's attribute needs the literal).
pub const WEBHOOK_PATH: &str = "/v1/webhooks/psp";

/// How often an idle events stream sends a comment line by default
/// (`ServerConfig::sse_keep_alive_ms`), so proxies and clients can tell a
/// quiet stream from a dead one, ms.
pub const SSE_KEEP_ALIVE_MS: u64 = 15_000;

fn status_event(order: &Order) -> Event {
    Event::default()
        .event("status")
        .json_data(OrderView::from(order))
        .unwrap_or_else(|_| {
            Event::default()
                .event("status")
                .data(order.status().as_str())
        })
}

/// What an open events stream carries along.
struct EventsState {
    app: Arc<App>,
    watch: crate::watch::Watch,
    /// The order as last read, not yet compared with what was sent.
    pending: Option<Order>,
    /// How many transitions the newest order read had: one the hub hands
    /// over with fewer is older than what this stream knows, so it re-reads.
    seen: usize,
    last: Option<OrderStatus>,
    done: bool,
    deadline: tokio::time::Instant,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// `GET /v1/orders/{id}/events`: the current status, then each changed status
/// it reads (as the watcher hub hands it over, or read after it wakes the
/// stream; statuses passed between two reads are only in the order's
/// transitions), ending after a final
/// status, after `sse_max_ms`, when the shop is stopping, or when the order
/// cannot be re-read (the client reconnects). No polling: the stream reads the order only when the
/// hub saw it change in the store's feed, or lost track of the feed.
#[utoipa::path(get, path = "/v1/orders/{id}/events", tag = "orders",
    params(("id" = String, Path, pattern = "^ord_(0|[1-9][0-9]{0,18})$", description = "The order, `ord_<number>`.")),
    responses(
        (status = 200, description = "Server-sent events: `status` events whose data is the order (as GET /v1/orders/{id}), the current one first, then the order each time its status has changed when the stream reads it — statuses it passed through between two reads (`paid` on the way to `confirmed`, say) are in its `transitions`, not sent as events of their own; comment keep-alives; the stream ends after a final status.", body = String, content_type = "text/event-stream"),
        (status = 404, description = "`not-found`: no such order, or not an order id.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: too many open streams, or the change feed could not be read; retry shortly.", body = Problem, content_type = "application/problem+json")))]
async fn order_events(State(app): Shared, Segment(id): Segment) -> ApiResult {
    let id = parse_order_id(&id)?;
    let keep_alive = Duration::from_millis(app.config.sse_keep_alive_ms.max(1));
    let watch = app
        .watch
        .watch(id)
        .map_err(|full| Problem::unavailable(full.to_string()))?;
    // Read only once the hub holds a cursor from before this read (see `watch`); the
    // hub usually hands the order over with that first wake.
    let ready = Duration::from_millis(crate::watch::READY_WAIT_MS);
    let handed = tokio::select! {
        biased;
        handed = watch.changed() => handed,
        () = tokio::time::sleep(ready) => {
            return Err(Problem::unavailable("the change feed could not be read; retry shortly"));
        }
    };
    let first = match handed {
        Some(order) => order,
        None => load_order(&app, id).await?,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(app.config.sse_max_ms);
    let state = EventsState {
        stopped: Box::pin(app.stopped()),
        app,
        watch,
        seen: first.transitions().len(),
        pending: Some(first),
        last: None,
        done: false,
        deadline,
    };
    let stream = futures_util::stream::unfold(state, move |mut st| async move {
        // Each turn either sends one changed status or waits for a wake; the stream is
        // bounded by the final status (at most the longest path of the state machine) and
        // by the deadline.
        while !st.done {
            if let Some(order) = st.pending.take()
                && Some(order.status()) != st.last
            {
                st.last = Some(order.status());
                st.done = order.status().is_final();
                return Some((Ok::<Event, Infallible>(status_event(&order)), st));
            }
            let handed = tokio::select! {
                biased;
                () = tokio::time::sleep_until(st.deadline) => return None,
                () = st.stopped.as_mut() => return None,
                handed = st.watch.changed() => handed,
            };
            let order = match handed.filter(|o| o.transitions().len() >= st.seen) {
                Some(order) => order,
                None => match st.app.store.get_order(st.watch.order()).await {
                    Ok(Some(order)) => *order,
                    // Gone or unreadable: end; the client reconnects and is told why.
                    Ok(None) | Err(_) => return None,
                },
            };
            st.seen = order.transitions().len();
            st.pending = Some(order);
        }
        None
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response())
}

#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, pattern = "^ord_(0|[1-9][0-9]{0,18})$", description = "The order, `ord_<number>`.")),
    responses(
        (status = 200, description = "The order after the cancellation (an unpaid order's stock goes back; a paid one is refunded).", body = OrderView),
        (status = 404, description = "`not-found`: no such order.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not-cancellable`: the order's status does not allow it.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent). `overloaded`: a bounded queue of the shop is full (jobs, parked webhooks; retry later), or it holds its maximum of orders (1,000,000: it takes no more until it is started on a fresh store).", body = Problem, content_type = "application/problem+json")))]
async fn cancel(State(app): Shared, Segment(id): Segment) -> ApiResult {
    let id = parse_order_id(&id)?;
    let step = app
        .store
        .cancel(id)
        .await
        .map_err(|e| store_problem(&app, e))?;
    app.counters.step(&step);
    let order = load_order(&app, id).await?;
    Ok(Json(OrderView::from(&order)).into_response())
}

// ---- payment --------------------------------------------------------------

fn pay_fingerprint(order: OrderId) -> Fingerprint {
    Fingerprint::of(format!("POST /v1/orders/{order}/pay").as_bytes())
}

#[utoipa::path(post, path = "/v1/orders/{id}/pay", tag = "orders",
    params(("id" = String, Path, pattern = "^ord_(0|[1-9][0-9]{0,18})$", description = "The order, `ord_<number>`."),
           ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "Required; a retry with the same key replays the first answer.")),
    responses(
        (status = 200, description = "The PSP intent to confirm (created once per order: key `pay_<order>`).", body = PaymentStartedView,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the saved answer to an earlier request with the key."))),
        (status = 400, description = "`idempotency-key-missing`, `invalid-idempotency-key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such order.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not-payable`: the order is not awaiting payment; `idempotency-key-in-flight`.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`.", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`psp-unavailable`: the payment provider did not answer; retry with the same key.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent). `overloaded`: a bounded queue of the shop is full (jobs, parked webhooks; retry later), or it holds its maximum of orders (1,000,000: it takes no more until it is started on a fresh store).", body = Problem, content_type = "application/problem+json")))]
async fn pay(State(app): Shared, Segment(id): Segment, headers: HeaderMap) -> ApiResult {
    let order_id = parse_order_id(&id)?;
    let key = idempotency_key(&headers, true)?.expect("required");
    let fingerprint = pay_fingerprint(order_id);
    let began = app.clock.now();
    match app
        .store
        .begin_key(key.clone(), fingerprint)
        .await
        .map_err(|e| store_problem(&app, e))?
    {
        Begin::New => {}
        Begin::Replay(saved) => return Ok(replayed(render_saved(&saved))),
        Begin::Mismatch => return placed_response(&app, Placed::KeyMismatch),
        Begin::InFlight => return placed_response(&app, Placed::KeyInFlight),
        Begin::AtCapacity => return placed_response(&app, Placed::KeyStoreFull),
    }
    let (settle, outcome) = match payments::start_payment(&app, order_id).await {
        Ok(saved) => {
            let response = render_saved(&saved);
            let complete = Command::CompleteKey {
                key,
                fingerprint,
                response: saved,
            };
            (complete, Ok(response))
        }
        Err(problem) => (Command::AbandonKey { key, fingerprint }, Err(problem)),
    };
    match app.store.call(settle.clone()).await {
        Ok(_) => outcome,
        Err(e) => {
            if matches!(e, StoreError::Unavailable(_)) {
                settle_key_later(&app, began, settle);
            }
            // Not saved: the client retries with the key (a completed intent replays).
            Err(outcome.err().unwrap_or_else(|| store_problem(&app, e)))
        }
    }
}

/// First wait before releasing a key again, ms; it doubles up to
/// [`KEY_SETTLE_WAIT_MS_MAX`].
pub const KEY_SETTLE_WAIT_MS_MIN: u64 = 50;
/// Longest wait between two tries at releasing a key, ms.
pub const KEY_SETTLE_WAIT_MS_MAX: u64 = 400;

/// The last moment a key taken at `began` may still be released from the
/// background (`settle_key_later`): half the store's in-flight timeout
/// after the request began, so the lock it frees is still this request's
/// (another request can take a key over only once the whole timeout has
/// passed since it was taken, which was after `began`).
pub fn key_settle_deadline(began: Millis, key_lock_ms: u64) -> Millis {
    began.plus_ms(key_lock_ms / 2)
}

/// Retries a `/pay` key's `CompleteKey` or `AbandonKey` that the store did
/// not answer, in the background, until it is answered or the deadline
/// ([`key_settle_deadline`]) passes. Without it the key stays in flight
/// until its lock lapses, and every retry of the customer's meanwhile is
/// refused 409 — after a store outage shorter than that, a willing buyer
/// can run out of retries before the key frees.
fn settle_key_later(app: &Arc<App>, began: Millis, settle: Command) {
    let deadline = key_settle_deadline(began, app.config.key_lock_ms);
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let mut wait = KEY_SETTLE_WAIT_MS_MIN;
        loop {
            let now = app.clock.now();
            if now.plus_ms(wait) >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(wait)).await;
            match app.store.call(settle.clone()).await {
                Err(StoreError::Unavailable(_)) => {}
                // Answered: released, or already gone (a protocol refusal changes nothing).
                _ => return,
            }
            wait = (wait * 2).min(KEY_SETTLE_WAIT_MS_MAX);
        }
    });
}

// ---- webhooks -------------------------------------------------------------

#[utoipa::path(post, path = "/v1/webhooks/psp", tag = "webhooks",
    params(("Psp-Signature" = String, Header, pattern = "^t=[0-9]{1,19},v1=[0-9a-f]{64}$", description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">` with the shared secret; at most 300 s old.")),
    request_body(content = crate::psp::wire::WebhookPayload, content_type = "application/json"),
    responses(
        (status = 200, description = "Taken: applied once, ignored (its order was already past it), skipped as a duplicate, parked until its order can take it, or (`unconfirmed`) not applied because the PSP's own view of the intent does not show what the event reports. An event is applied only once the PSP's API bears it out.", body = crate::openapi::WebhookReceived),
        (status = 400, description = "`signature-missing`, `invalid-signature` (forged or stale), `malformed-json`, `invalid-event`, `event-mismatch` (the PSP has no such intent, or not for that order and amount).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`body-too-large`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store, or the PSP asked to confirm the event, did not answer; deliver it again. `overloaded`: the shop's parked-webhook inbox or job queue is full; deliver it again later.", body = Problem, content_type = "application/problem+json")))]
async fn webhook(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = body.map_err(body_problem)?;
    let reject = |problem: Problem| {
        Counters::bump(&app.counters.webhook_rejected);
        tracing::warn!(problem = %problem.detail, "webhook rejected");
        problem
    };
    if naive::checks_signatures(&app) {
        if headers.get_all("psp-signature").iter().nth(1).is_some() {
            return Err(reject(Problem::bad_request(
                "invalid-signature",
                "send one Psp-Signature header, not several",
            )));
        }
        let header = headers
            .get("psp-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                reject(Problem::bad_request(
                    "signature-missing",
                    "Psp-Signature header is required",
                ))
            })?;
        signature::verify(
            &app.config.webhook_secret,
            header,
            &body,
            app.clock.unix_secs(),
        )
        .map_err(|e| reject(Problem::bad_request("invalid-signature", e.to_string())))?;
    }
    let payload: WebhookPayload = parse_json(&body).map_err(reject)?;
    let event = payload
        .to_event(app.clock.now())
        .map_err(|e| reject(Problem::bad_request("invalid-event", e.to_string())))?;
    if naive::drops_early(&app, &event).await? {
        let dropped = serde_json::json!({ "received": true, "outcome": "dropped" });
        return Ok(Json(dropped).into_response());
    }
    if naive::checks_signatures(&app) {
        // A PSP that cannot be asked is not a refusal of the event: 503, delivered again.
        match corroborate(&app, &event).await? {
            Corroboration::Confirmed => {}
            Corroboration::Unconfirmed => {
                Counters::bump(&app.counters.webhook_unconfirmed);
                tracing::info!(order_id = %event.order, event = %event.id, intent = %event.intent, "webhook not borne out by the PSP; nothing applied");
                let unconfirmed = serde_json::json!({ "received": true, "outcome": "unconfirmed" });
                return Ok(Json(unconfirmed).into_response());
            }
            Corroboration::Mismatch => {
                return Err(reject(Problem::bad_request(
                    "event-mismatch",
                    format!(
                        "the PSP's intent {} is not for {} of {} cents as the event says",
                        event.intent, event.order, event.amount.0
                    ),
                )));
            }
        }
    }
    let event = naive::takes_the_events_word(&app, event).await?;
    let outcome = match naive::apply_unchecked(&app, &event).await {
        Some(applied) => applied?,
        None => apply_webhook(&app, &event).await?,
    };
    naive::finalize_in_memory(&app, event.order);
    Ok(Json(serde_json::json!({ "received": true, "outcome": outcome })).into_response())
}

/// Asks the PSP for the intent `event` names and checks the event against
/// it: a signed event is still only the PSP's say-so until its API bears it
/// out. An intent the PSP does not know is a mismatch; a PSP that cannot be
/// asked makes the delivery fail (503), so the PSP delivers it again.
async fn corroborate(
    app: &App,
    event: &stampede_core::WebhookEvent,
) -> Result<Corroboration, Problem> {
    match app.psp.get_intent(&event.intent).await {
        Ok(intent) => Ok(event.corroborate(&intent)),
        Err(e) if e.status() == Some(404) => Ok(Corroboration::Mismatch),
        Err(e) => Err(Problem::unavailable(format!(
            "the PSP could not confirm event {}: {e}; deliver it again",
            event.id
        ))),
    }
}

/// Applies a verified event, deduplicated and state-checked by the store.
async fn apply_webhook(
    app: &App,
    event: &stampede_core::WebhookEvent,
) -> Result<&'static str, Problem> {
    let outcome = app
        .store
        .receive_webhook(event.clone())
        .await
        .map_err(|e| store_problem(app, e))?;
    Ok(match outcome {
        WebhookOutcome::Duplicate => {
            Counters::bump(&app.counters.webhook_duplicates);
            tracing::info!(order_id = %event.order, event = %event.id, "duplicate webhook skipped");
            "duplicate"
        }
        WebhookOutcome::Parked => {
            Counters::bump(&app.counters.webhook_parked);
            tracing::info!(order_id = %event.order, event = %event.id, "early webhook parked");
            "parked"
        }
        WebhookOutcome::Applied(step) => {
            app.counters.step(&step);
            webhook_step_outcome(&step)
        }
    })
}

/// The `outcome` a webhook answer gives for the step it took.
pub(crate) fn webhook_step_outcome(step: &Step) -> &'static str {
    match step {
        // Its order was already past what it reports: taken, no change.
        Step::Skipped(_) | Step::NothingToDo => "ignored",
        Step::Moved(_) | Step::RefundScheduled | Step::Wait { .. } => "applied",
    }
}

// ---- admin ----------------------------------------------------------------

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Problem> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token);
    if signature::same_secret(app.config.admin_token.as_bytes(), given.as_bytes()) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send Authorization: Bearer <admin token>",
        ))
    }
}

/// Body of `POST /admin/restock`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RestockBody {
    /// A SKU of the catalog.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    sku: String,
    /// Units to add, 1 to 1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "crate::openapi::whole_number")]
    qty: u64,
}

#[utoipa::path(post, path = "/admin/restock", tag = "admin",
    security(("admin_token" = [])),
    request_body(content = RestockBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Units added to the shelf.", body = crate::openapi::Restocked),
(status = 400, description = "`malformed-json`, `invalid-sku`, `invalid-qty` (1 to 1,000,000,000).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: the body was not sent as `application/json`, or was sent with a `Content-Encoding` (the shop takes bodies unencoded).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid-items`: the catalog does not sell this SKU.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: no or a wrong bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent).", body = Problem, content_type = "application/problem+json")))]
async fn restock(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&app, &headers)?;
    let body: RestockBody = json_request(&headers, body)?;
    let sku = Sku::new(body.sku).map_err(|e| Problem::bad_request("invalid-sku", e.to_string()))?;
    if body.qty == 0 || body.qty > 1_000_000_000 {
        return Err(Problem::bad_request(
            "invalid-qty",
            "qty must be between 1 and 1000000000",
        ));
    }
    app.store
        .restock(sku.clone(), body.qty)
        .await
        .map_err(|e| store_problem(&app, e))?;
    tracing::info!(sku = %sku, qty = body.qty, "restocked");
    Ok(Json(serde_json::json!({ "sku": sku.to_string(), "restocked": body.qty })).into_response())
}

#[utoipa::path(get, path = "/admin/audit", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The shop's whole state as the invariant checker reads it.", body = crate::openapi::AuditDocument),
        (status = 401, description = "`unauthorized`: no or a wrong bearer token.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent).", body = Problem, content_type = "application/problem+json")))]
async fn audit(State(app): Shared, headers: HeaderMap) -> ApiResult {
    authorize(&app, &headers)?;
    let snapshot = app
        .store
        .audit()
        .await
        .map_err(|e| store_problem(&app, e))?;
    Ok(Json(snapshot).into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text: the design the shop runs (`stampede_design_info{design=\"…\"} 1`), counters (admitted, shed, rate-limited and sold-out orders among them), orders per status, queue depth, time in state.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 503, description = "`unavailable`: the store did not answer; retry (with the same Idempotency-Key where one is sent).", body = Problem, content_type = "application/problem+json")))]
async fn metrics_text(State(app): Shared) -> ApiResult {
    let stats = app
        .store
        .stats()
        .await
        .map_err(|e| store_problem(&app, e))?;
    let audit = app.store.audit().await.ok();
    let text = metrics::render(
        &app.counters,
        &stats,
        audit.as_deref(),
        &app.design().label(),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_said_applied_only_when_its_step_changed_something() {
        // Proves: a step that moved the order, scheduled a refund or set a wait is `applied`; a
        // skipped step or one with nothing to do is `ignored`.
        for step in [
            Step::Moved(Vec::new()),
            Step::RefundScheduled,
            Step::Wait { until: Millis(1) },
        ] {
            assert_eq!(webhook_step_outcome(&step), "applied", "{step:?}");
        }
        for step in [Step::Skipped(OrderStatus::Confirmed), Step::NothingToDo] {
            assert_eq!(webhook_step_outcome(&step), "ignored", "{step:?}");
        }
    }

    #[derive(Debug, Deserialize)]
    struct Qty {
        #[serde(deserialize_with = "crate::openapi::whole_number")]
        qty: u32,
    }

    fn qty(json: &str) -> Result<u32, String> {
        serde_json::from_str::<Qty>(json)
            .map(|q| q.qty)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_body_is_objects_all_the_way_down() {
        // Proves: an object, empty arrays and arrays of objects pass, brackets, braces and
        // quotes inside strings (escaped quotes too) change nothing; a body or any array
        // element that is not an object is refused at its byte offset.
        for fine in [
            r#"{}"#,
            r#" {"items": []} "#,
            r#"{"items": [ {"sku": "a[1]"}, {"sku": "b\"[1"}, {"sku": "c\\"} ], "x": {"y": [{}]}}"#,
        ] {
            assert_eq!(objects_only(fine.as_bytes()), Ok(()), "{fine}");
        }
        for (bad, at) in [
            (r#"["c1", [["mug", 1]]]"#, 0),
            (r#"  []"#, 2),
            (r#"{"items": [["mug", 1]]}"#, 11),
            (r#"{"items": [{"sku": "mug"}, ["mug", 1]]}"#, 27),
            (r#"{"items": [1]}"#, 11),
            (r#""a string""#, 0),
        ] {
            assert_eq!(objects_only(bad.as_bytes()), Err(at), "{bad}");
        }
        let shaped = parse_json::<PlaceOrderBody>(br#"["c1", [["mug", 1]]]"#);
        let problem = shaped.err().expect("an order written as arrays is refused");
        assert_eq!(problem.slug(), "malformed-json");
        assert!(problem.detail.contains("expected a JSON object at byte 0"));
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_zero_fraction_and_nothing_else_passes() {
        // Proves: 3 and 3.0 read as 3 (JSON Schema's integer); 3.5, -1, a string and a number
        // past the target type's range (u32: 4294967295 in, 4294967296 out) are refused.
        assert_eq!(qty(r#"{"qty": 3}"#), Ok(3));
        assert_eq!(qty(r#"{"qty": 3.0}"#), Ok(3));
        assert_eq!(qty(r#"{"qty": 4294967295}"#), Ok(u32::MAX));
        for bad in ["3.5", "-1", "\"3\"", "4294967296", "4294967296.0", "1e300"] {
            assert!(qty(&format!(r#"{{"qty": {bad}}}"#)).is_err(), "{bad}");
        }
    }
}
