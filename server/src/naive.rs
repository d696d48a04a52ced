//! Every known mistake the shop can be switched into, in one place.
//!
//! The reference handlers (`api.rs`) and workers (`workers.rs`) read top to
//! bottom without a design branch: at each point where a design may diverge
//! they call one function here, which answers as the reference does unless
//! a switch of [`crate::design::Design`] says otherwise. Adding a mistake
//! means touching this file and the design table (`design.rs`), and, where it
//! needs a store operation of its own, the core's naive primitives
//! (`stampede_core::ShopState`'s `raw_*` methods in `core/src/shop/naive.rs`).
//!
//! The [`crate::design::Sabotage`] hooks live here too: not mistakes a shop
//! makes, but test hooks that break the reference on purpose.

use crate::api::{ApiResult, OrderInput, placed_response, render_saved, replayed, store_problem};
use crate::app::App;
use crate::design::{
    ClientPrice, EarlyWebhooks, Enqueue, Finalize, Idempotency, IntentAmount, IntentReplay,
    InventoryMode, ReservationTtl, Sabotage, SoldOut,
};
use crate::metrics::Counters;
use crate::problem::Problem;
use crate::psp::CreatedIntent;
use crate::workers::StepError;
use stampede_core::{
    Begin, CancelReason, Cause, Cents, Order, OrderId, OrderStatus, PaymentIntent, Placed,
    SavedResponse, Step, WebhookEvent,
};
use std::sync::Arc;
use std::time::Duration;

// ---- placing orders -------------------------------------------------------

/// Whether `POST /v1/orders` needs an Idempotency-Key (`idempotency=none`
/// ignores keys).
pub(crate) fn key_required(app: &App) -> bool {
    app.design().idempotency != Idempotency::None
}

/// A unit price a client sent for `items[i]`: refused in the reference
/// (`client-price-not-accepted`); `client_price=trust` keeps it.
pub(crate) fn client_price(app: &App, i: usize, price: u64) -> Result<Cents, Problem> {
    match app.design().client_price {
        ClientPrice::Ignore => Err(Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "client-price-not-accepted",
            "Client price not accepted",
            format!("items[{i}].price: prices come from the catalog; remove the field"),
        )),
        ClientPrice::Trust => Ok(Cents(price)),
    }
}

/// The unit prices an order is made at: the catalog's (`None`) in the
/// reference; `client_price=trust` takes the client's when it sent one for
/// every line.
pub(crate) fn trusted_prices(app: &App, prices: Vec<Cents>, lines: usize) -> Option<Vec<Cents>> {
    (app.design().client_price == ClientPrice::Trust && prices.len() == lines).then_some(prices)
}

/// Whether a placement takes a naive composition instead of the one atomic
/// store operation (idempotency, order and first job together).
pub(crate) fn places_naively(app: &App, input: &OrderInput) -> bool {
    let design = app.design();
    design.idempotency != Idempotency::Reference
        || design.enqueue != Enqueue::Outbox
        || input.client_prices.is_some()
}

/// The naive compositions of a placement: separate store calls with awaits
/// in between (`idempotency=check-then-insert`, `enqueue=dual-write`,
/// `idempotency=none`, `client_price=trust`).
pub(crate) async fn place_order(app: &App, input: OrderInput) -> ApiResult {
    let fingerprint = input.request.fingerprint();
    let store = &app.store;
    let accepted = |order| SavedResponse::OrderAccepted {
        order,
        status: OrderStatus::Created,
    };
    let key = match (app.design().idempotency, input.request.key.clone()) {
        (Idempotency::CheckThenInsert, Some(key)) => {
            // Non-unique lookup: any saved response under the key is returned,
            // whatever the request was; nothing is held while we work.
            let found = store.raw_get_key(key.clone()).await;
            if let Some(saved) = found.map_err(|e| store_problem(app, e))? {
                return Ok(replayed(render_saved(&saved)));
            }
            tokio::task::yield_now().await;
            let saved = accepted(create(app, &input).await?);
            let put = store.raw_put_key(key, fingerprint, saved.clone()).await;
            put.map_err(|e| store_problem(app, e))?;
            return Ok(render_saved(&saved));
        }
        (Idempotency::Reference, Some(key)) => key,
        // Keys ignored, or none sent.
        _ => return Ok(render_saved(&accepted(create(app, &input).await?))),
    };
    // The reference key, but held across separate store calls.
    let begun = store.begin_key(key.clone(), fingerprint).await;
    match begun.map_err(|e| store_problem(app, e))? {
        Begin::New => {}
        Begin::Replay(saved) => return Ok(replayed(render_saved(&saved))),
        Begin::Mismatch => return placed_response(app, Placed::KeyMismatch),
        Begin::InFlight => return placed_response(app, Placed::KeyInFlight),
        Begin::AtCapacity => return placed_response(app, Placed::KeyStoreFull),
    }
    let order = match create(app, &input).await {
        Ok(order) => order,
        Err(problem) => {
            let _ = store.abandon_key(key, fingerprint).await;
            return Err(problem);
        }
    };
    let saved = accepted(order);
    let completed = store.complete_key(key, fingerprint, saved.clone()).await;
    completed.map_err(|e| store_problem(app, e))?;
    Ok(render_saved(&saved))
}

/// Creates the order; with the dual-write mistake, the job is a second write.
async fn create(app: &App, input: &OrderInput) -> Result<OrderId, Problem> {
    let outbox = app.design().enqueue == Enqueue::Outbox;
    let (order, _) = app
        .store
        .raw_create_order(input.request.clone(), input.client_prices.clone(), outbox)
        .await
        .map_err(|e| store_problem(app, e))?;
    Counters::bump(&app.counters.orders_admitted);
    if !outbox {
        tokio::task::yield_now().await;
        app.store
            .enqueue_job(stampede_core::JobKind::Reserve, order)
            .await
            .map_err(|e| store_problem(app, e))?;
        Counters::bump(&app.counters.enqueues);
    }
    tracing::info!(order_id = %order, design = %app.design(), "order accepted (naive path)");
    Ok(order)
}

// ---- payment intents ------------------------------------------------------

/// What the order's intent asks for: its total (`intent_amount=fixed`
/// charges a fixed amount whatever the order costs).
pub(crate) fn intent_amount(app: &App, order: &Order) -> Cents {
    match app.design().intent_amount {
        IntentAmount::OrderTotal => order.total,
        IntentAmount::Fixed => app.config.fixed_amount,
    }
}

/// The PSP idempotency key of the order's intent (`intent_key=off` sends
/// none, so a retried creation makes a second intent).
pub(crate) fn intent_key(app: &App, order: OrderId) -> Option<String> {
    app.design()
        .intent_key
        .then(|| stampede_core::payment_key(order))
}

// ---- webhooks -------------------------------------------------------------

/// Whether webhooks must carry a valid `Psp-Signature` (`webhook_signature=off`
/// takes anyone's word).
pub(crate) fn checks_signatures(app: &App) -> bool {
    app.design().webhook_signature
}

/// `webhook_signature=trust`: the shop takes the event's word about the order
/// it names — "paid" marks that order paid, whatever intent or amount the
/// event names — so the event is applied as if for the order's own intent
/// and total. The reference (signatures checked, the PSP asked) applies
/// events as they are.
pub(crate) async fn takes_the_events_word(
    app: &App,
    mut event: WebhookEvent,
) -> Result<WebhookEvent, Problem> {
    if checks_signatures(app) {
        return Ok(event);
    }
    let order = app.store.get_order(event.order).await;
    if let Some(order) = order.map_err(|e| store_problem(app, e))? {
        event.amount = order.total;
        if let Some(own) = order.intent {
            event.intent = own;
        }
    }
    Ok(event)
}

/// `early_webhooks=drop`: the handler finds the order through its recorded
/// intent, so an event for an order whose intent is not recorded yet
/// (unknown, not reserved, or the shop still waiting on the PSP's answer) is
/// acknowledged and lost. Whether `event` is dropped so.
pub(crate) async fn drops_early(app: &App, event: &WebhookEvent) -> Result<bool, Problem> {
    if app.design().early_webhooks != EarlyWebhooks::Drop {
        return Ok(false);
    }
    let order = app.store.get_order(event.order).await;
    let order = order.map_err(|e| store_problem(app, e))?;
    let dropped = order.is_none_or(|o| o.status() == OrderStatus::Created || o.intent.is_none());
    if dropped {
        tracing::warn!(order_id = %event.order, event = %event.id, "early webhook dropped");
    }
    Ok(dropped)
}

/// `webhook_dedup=off`: every delivery goes through the unchecked handler,
/// which sells the order's units each time. `None` in the reference.
pub(crate) async fn apply_unchecked(
    app: &App,
    event: &WebhookEvent,
) -> Option<Result<&'static str, Problem>> {
    if app.design().webhook_dedup {
        return None;
    }
    let applied = app.store.raw_apply_unchecked(event.clone()).await;
    Some(applied.map_err(|e| store_problem(app, e)).map(|step| {
        app.counters.step(&step);
        crate::api::webhook_step_outcome(&step)
    }))
}

/// `finalize=in-memory`: after a webhook, finalization runs in a task of the
/// handler's process, lost if it crashes. Nothing in the reference, where
/// finalization is a durable job.
pub(crate) fn finalize_in_memory(app: &Arc<App>, order: OrderId) {
    if app.design().finalize != Finalize::InMemory {
        return;
    }
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let delay = Duration::from_millis(app.config.in_memory_finalize_delay_ms);
        tokio::time::sleep(delay).await;
        if let Ok(step) = app.store.finalize(order, Cause::Reconciler).await {
            app.counters.step(&step);
        }
    });
}

// ---- job steps ------------------------------------------------------------

/// The reserve step of the naive designs; `None` in the reference.
/// `worker_state_check=off` reserves again when a job is redelivered;
/// `inventory=read-then-write` reserves from a stale read;
/// `sold_out=from-reservations` cancels out of stock where the reference waits.
pub(crate) async fn reserve(
    app: &App,
    order: OrderId,
    cause: &Cause,
) -> Option<Result<Step, StepError>> {
    let design = *app.design();
    let cause = cause.clone();
    let store = &app.store;
    Some(
        match (design.inventory, design.worker_state_check, design.sold_out) {
            (InventoryMode::Reference, true, SoldOut::FromSales) => return None,
            (InventoryMode::Reference, true, SoldOut::FromReservations) => store
                .raw_reserve_from_reservations(order, cause)
                .await
                .map_err(StepError::from),
            (InventoryMode::Reference, false, sold_out) => store
                .raw_reserve_unchecked(order, sold_out, cause)
                .await
                .map_err(StepError::from),
            (InventoryMode::ReadThenWrite, state_check, sold_out) => {
                read_then_write(app, order, state_check, sold_out, cause).await
            }
        },
    )
}

/// `inventory=read-then-write`: read each line's availability, await, then
/// reserve from what was read (others read the same numbers meanwhile). A
/// line read short is sold out at once from reservations; from sales it is
/// left to the reference step, which waits while unpaid holds could come
/// back (so the two switches stay independent).
async fn read_then_write(
    app: &App,
    order: OrderId,
    state_check: bool,
    sold_out: SoldOut,
    cause: Cause,
) -> Result<Step, StepError> {
    let Some(current) = app.store.get_order(order).await? else {
        return Err(StepError::Other(format!("{order} does not exist")));
    };
    if state_check && current.status() != OrderStatus::Created {
        return Ok(Step::Skipped(current.status()));
    }
    let mut seen = Vec::with_capacity(current.lines.len());
    for line in &current.lines {
        seen.push(app.store.raw_available(line.sku.clone()).await?);
    }
    let short = current
        .lines
        .iter()
        .zip(&seen)
        .any(|(line, available)| u64::from(line.qty) > *available);
    if short && sold_out == SoldOut::FromSales {
        return Ok(app.store.reserve(order, cause).await?);
    }
    if short {
        let to = OrderStatus::Cancelled(CancelReason::OutOfStock);
        if !current.status().can_become(to) {
            return Ok(Step::Skipped(current.status()));
        }
        let step = app.store.transition_if(order, current.status(), to, cause);
        return Ok(step.await?);
    }
    // The window: others read the same availability before we write.
    tokio::task::yield_now().await;
    Ok(app.store.raw_force_reserve(order, seen, cause).await?)
}

/// Whether the `CreateIntent` step offers payment for an order in `status`:
/// only a reserved one (sabotage `no-payment-offer` inverts the check, so no
/// customer is ever offered payment).
pub(crate) fn offers_payment(app: &App, status: OrderStatus) -> bool {
    let reserved = status == OrderStatus::InventoryReserved;
    reserved != (app.design().sabotage == Sabotage::NoPaymentOffer)
}

/// `intent_replay=ack-only`: the PSP already had the intent (an earlier
/// delivery created it, then crashed before recording it), and the job is
/// taken as done without recording it. Whether `created` is so forgotten.
pub(crate) fn forgets_replayed_intent(app: &App, created: &CreatedIntent) -> bool {
    created.replayed && app.design().intent_replay == IntentReplay::AckOnly
}

/// `finalize=in-memory`: finalization was left to the webhook handler's
/// task, so the durable job does nothing.
pub(crate) fn leaves_finalize_to_webhook(app: &App) -> bool {
    app.design().finalize == Finalize::InMemory
}

/// Whether the refund step refunds `intent`: one holding money (sabotage
/// `no-refunds` inverts the filter, so no money is ever given back).
pub(crate) fn refunds(app: &App, intent: &PaymentIntent) -> bool {
    let keep_money = app.design().sabotage == Sabotage::NoRefunds;
    (intent.net_captured().0 > 0) != keep_money
}

/// `reservation_ttl=off`: reservations never expire, so the sweeper sweeps
/// nothing.
pub(crate) fn reservations_never_lapse(app: &App) -> bool {
    app.design().reservation_ttl == ReservationTtl::Off
}

/// `reconciliation=off`: nobody compares the shop with the PSP.
pub(crate) fn skips_reconciliation(app: &App) -> bool {
    !app.design().reconciliation
}
