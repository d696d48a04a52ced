//! The shop's published contract: an OpenAPI 3.1 document generated from
//! the handlers' `#[utoipa::path]` annotations and the wire types, served at
//! `GET /openapi.json`. A route is registered and documented in one place
//! ([`crate::api`]'s `api_router`), so the two cannot drift; a snapshot
//! (`server/openapi.json`, checked by `tests/openapi.rs`) makes every change
//! to the contract a reviewed change.

use crate::problem::PROBLEM_BASE;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::ToSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The security scheme of `/admin/*` (a bearer token).
pub const ADMIN_AUTH: &str = "admin_token";

/// Title, version, tags and the admin security scheme; the paths and
/// schemas come from the router.
pub fn base() -> OpenApi {
    let tag = |name: &str, description: &str| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Stampede reference shop")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(format!(
                    "Orders, stock reservations and payments that must not oversell, must not \
                     double-charge and must not lose an order. Every error is \
                     `application/problem+json` (RFC 9457) whose `type` is \
                     `{PROBLEM_BASE}<slug>`; the slugs are listed per response. The one \
                     exception is a request HTTP itself cannot take (a malformed request \
                     line or header, headers or a URL past the server's limits): the HTTP \
                     layer answers it 400, 414 or 431 with an empty body and closes the \
                     connection, before the shop has a request to answer. A path the shop \
                     does not have is answered 404 `not-found`, and a path asked with a \
                     method it does not take 405 `method-not-allowed`, both as problem+json."
                )))
                .build(),
        )
        .tags(Some([
            tag("catalog", "Products and the units on the shelf."),
            tag(
                "orders",
                "Placing, following, paying for and cancelling orders.",
            ),
            tag(
                "webhooks",
                "Events from the payment provider, signed with Psp-Signature.",
            ),
            tag("admin", "Operator endpoints, behind a bearer token."),
            tag("operations", "Health, metrics and this document."),
        ]))
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    ADMIN_AUTH,
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                )
                .build(),
        ))
        .build()
}

/// `document` with the answers its server gives on every route, whatever
/// the route: `413 body-too-large` (the body cap stands in front of every
/// handler, so even a `GET` with a body past it is refused), added where a
/// route does not document it itself.
pub fn with_every_route_answers(mut document: OpenApi) -> OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let too_large = || {
        ResponseBuilder::new()
            .description(
                "`body-too-large`: the body is past the server's limit (every route, \
                 whatever its method).",
            )
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
            .into()
    };
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            op.responses
                .responses
                .entry("413".into())
                .or_insert_with(too_large);
        }
    }
    document
}

/// The document as served, rendered once per process.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| render(&crate::api::openapi()))
}

/// `GET /openapi.json`'s answer: `document` as `application/json`.
pub fn served(document: &'static str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document,
    )
        .into_response()
}

/// The members of `value` if it is an object.
fn members(value: Option<&mut serde_json::Value>) -> Vec<&mut serde_json::Value> {
    value
        .and_then(|v| v.as_object_mut())
        .into_iter()
        .flat_map(|o| o.values_mut())
        .collect()
}

/// `document` as pretty JSON, with its links' `operationId` spelled as
/// OpenAPI spells it (utoipa 5.5 writes the Link object's field as
/// `operation_id`, which no client reads).
pub fn render(document: &OpenApi) -> String {
    let mut value = serde_json::to_value(document).expect("the document serializes");
    // `get_mut`, not indexing: indexing a `&mut Value` inserts a null for a missing key.
    for item in members(value.get_mut("paths")) {
        for op in members(Some(item)) {
            for answer in members(op.get_mut("responses")) {
                for link in members(answer.get_mut("links")) {
                    if let Some(link) = link.as_object_mut()
                        && let Some(id) = link.remove("operation_id")
                    {
                        link.insert("operationId".into(), id);
                    }
                }
            }
        }
    }
    serde_json::to_string_pretty(&value).expect("the document serializes")
}

/// `200` body of `POST /v1/webhooks/psp`.
#[derive(Serialize, ToSchema)]
pub struct WebhookReceived {
    /// Always true: the event was taken (acknowledging it stops the PSP's retries).
    pub received: bool,
    /// `applied`, `ignored` (taken, but its order was already past what it reports: nothing
    /// changed), `duplicate` (seen before), `parked` (its order cannot take it yet; applied
    /// when it can), `unconfirmed` (the PSP's view of the intent does not show what the event
    /// reports: stale, or forged for a real intent; nothing applied) or, under the
    /// `early_webhooks=drop` mistake, `dropped`.
    pub outcome: String,
}

/// `200` body of `POST /admin/restock`.
#[derive(Serialize, ToSchema)]
pub struct Restocked {
    /// The SKU.
    pub sku: String,
    /// Units added.
    pub restocked: u64,
}

/// `200` body of `GET /admin/audit`: the shop's whole state as the invariant
/// checker reads it (orders with their transitions, stock levels,
/// reservations, intents, jobs).
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct AuditDocument(serde_json::Value);

/// An integer written as JSON allows it: `3` or `3.0` (JSON Schema's
/// `integer` is any number without a fractional part); `3.5`, a negative or
/// an out-of-range number is refused.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => Some(n),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
            Some(f as u64)
        }
        _ => None,
    };
    whole
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

/// [`whole_number`] for an amount of money.
pub fn whole_cents<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<stampede_core::Cents, D::Error> {
    whole_number::<D, u64>(deserializer).map(stampede_core::Cents)
}
