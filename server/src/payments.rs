//! Payments at the shop: starting a customer's payment (`POST
//! /v1/orders/{id}/pay`) and creating the order's intent at the PSP, which
//! the `CreateIntent` job step does too.

use crate::api::{load_order, store_problem};
use crate::app::App;
use crate::naive;
use crate::problem::Problem;
use crate::psp::{CreatedIntent, PspError};
use axum::http::StatusCode;
use stampede_core::{Cause, Order, OrderId, SavedResponse};

/// Creates (or, with the reference key, reuses) the order's PSP intent.
pub async fn create_intent(app: &App, order: &Order) -> Result<CreatedIntent, PspError> {
    let key = naive::intent_key(app, order.id);
    // An express order is charged with the saved card when its intent is created.
    let saved_card = order.express.then_some(crate::psp::wire::Card::Ok);
    let amount = naive::intent_amount(app, order);
    let psp = &app.psp;
    psp.create_intent(order.id, amount, key.as_deref(), saved_card)
        .await
}

/// Starts paying for a payable order: creates (or reuses) its intent at the
/// PSP and records it; the answer carries the client secret.
pub(crate) async fn start_payment(app: &App, order_id: OrderId) -> Result<SavedResponse, Problem> {
    let order = load_order(app, order_id).await?;
    let status = order.status();
    if !status.is_payable() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-payable",
            "Order not payable",
            format!("{order_id} is {status}; only reserved or payment-pending orders can be paid"),
        ));
    }
    let CreatedIntent {
        intent,
        client_secret,
        ..
    } = create_intent(app, &order).await.map_err(|e| {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "psp-unavailable",
            "Payment provider unavailable",
            e.to_string(),
        )
    })?;
    let recorded = app.store.record_intent(intent.clone(), Cause::Customer);
    let step = recorded.await.map_err(|e| store_problem(app, e))?;
    app.counters.step(&step);
    Ok(SavedResponse::PaymentStarted {
        order: order_id,
        intent: intent.id,
        amount: intent.amount,
        client_secret,
    })
}
