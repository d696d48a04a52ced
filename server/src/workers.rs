//! Workers that run beside the API: the job runner (reserve → create intent
//! → finalize, refunds, intent cancellation, payment sync), the reservation
//! sweeper and the reconciler.
//!
//! Every job step asks the store to act only if the order is still in the
//! state the step expects, so a redelivered job is a no-op (except the
//! reserve step of `worker_state_check=off`, which reserves again). A reserve
//! step that answers [`Step::Wait`] has already written the order's next
//! `Reserve` job in the same store operation, so its own job is acked like
//! any finished one and no attempt of the retry budget is spent. A failed
//! attempt is reported back with jitter drawn from the worker's seeded RNG; the core
//! schedules the retry or dead-letters the job. A worker that crashes mid-job
//! simply never acks: the lease lapses and another worker gets the job.
//!
//! Idle, nothing polls on a short timer. A job worker asks the store for a
//! job with a wait ([`WorkerConfig::lease_wait_ms`]): the store answers as
//! soon as one is runnable, so an idle worker makes one store call per wait.
//! The sweeper sleeps until the next hold lapses (the store says when with
//! every sweep), at most `sweep_interval_ms` so it learns of holds made since.
//! The reconciler keeps its interval, a deliberate choice: what it looks for
//! (an answer the shop missed) leaves no trace in the store to wait on, and
//! one pass with nothing to compare is a single store call.

use crate::app::App;
use crate::metrics::Counters;
use crate::naive;
use crate::payments::create_intent;
use crate::store::StoreError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stampede_core::Failed;
use stampede_core::{
    Cause, IntentStatus, JobKind, Lease, OrderId, PaymentIntent, Repair, Step, intent_that_matters,
    reconcile, refund_key,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Timing and bounds of the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Longest one lease call waits for a job when none is runnable, ms
    /// (the store caps it: [`crate::store::LEASE_WAIT_MS_MAX`], and a remote
    /// store at half its request timeout).
    pub lease_wait_ms: u64,
    /// Longest gap between sweeps of lapsed reservations, ms (a sweep comes
    /// sooner when the store said a hold lapses sooner).
    pub sweep_interval_ms: u64,
    /// Most reservations one sweep expires.
    pub sweep_batch: usize,
    /// Between reconciliation passes, ms.
    pub reconcile_interval_ms: u64,
    /// Orders that moved more recently than this are left to the normal path, ms.
    pub reconcile_grace_ms: u64,
    /// Most orders one pass compares.
    pub reconcile_batch: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease_wait_ms: 5_000,
            sweep_interval_ms: 250,
            sweep_batch: 1_000,
            reconcile_interval_ms: 2_000,
            reconcile_grace_ms: 3_000,
            reconcile_batch: 500,
        }
    }
}

/// First pause after a failed lease call, ms; it doubles with each failure in a row.
pub const LEASE_ERROR_BACKOFF_MIN_MS: u64 = 20;
/// Longest pause after failed lease calls, ms.
pub const LEASE_ERROR_BACKOFF_MS_MAX: u64 = 1_000;
/// An empty lease that came back sooner than this is followed by a pause
/// making up the difference, ms: a store that cannot wait (or a wait clamped
/// to nothing) never turns the loop into a spin.
pub const IDLE_TURN_MIN_MS: u64 = 10;
/// Shortest gap between two sweeps, ms: a batch cut short, or many holds
/// lapsing one after another, is swept at most this often.
pub const SWEEP_GAP_MIN_MS: u64 = 20;

/// Why a job step did not finish; the job is retried.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("psp: {0}")]
    Psp(#[from] crate::psp::PspError),
    #[error("{0}")]
    Other(String),
}

/// Runs jobs forever: lease (waiting up to `lease_wait_ms` for a job), run,
/// ack or fail. A failed lease call is retried after a pause that doubles
/// from [`LEASE_ERROR_BACKOFF_MIN_MS`] to [`LEASE_ERROR_BACKOFF_MS_MAX`].
/// `seed` feeds the jitter RNG.
pub async fn run_job_worker(app: Arc<App>, worker: u32, seed: u64, config: WorkerConfig) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(worker) << 32));
    let mut backoff_ms = LEASE_ERROR_BACKOFF_MIN_MS;
    loop {
        let asked = Instant::now();
        match app.store.lease_job_wait(config.lease_wait_ms).await {
            Ok(Some(lease)) => {
                backoff_ms = LEASE_ERROR_BACKOFF_MIN_MS;
                run_leased(&app, worker, &lease, &mut rng).await;
            }
            Ok(None) => {
                backoff_ms = LEASE_ERROR_BACKOFF_MIN_MS;
                tokio::time::sleep_until(asked + Duration::from_millis(IDLE_TURN_MIN_MS)).await;
            }
            Err(error) => {
                app.counters.store_error(&error);
                tracing::warn!(worker, %error, "cannot lease a job");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(LEASE_ERROR_BACKOFF_MS_MAX);
            }
        }
    }
}

async fn run_leased(app: &App, worker: u32, lease: &Lease, rng: &mut ChaCha8Rng) {
    let span = tracing::info_span!("job", order_id = %lease.order, job = %lease.job, kind = lease.kind.as_str(), attempt = lease.attempt, worker);
    let _enter = span.enter();
    match run_step(app, lease).await {
        Ok(step) => {
            app.counters.step(&step);
            match app.store.ack_job(lease.clone()).await {
                Ok(()) => Counters::bump(&app.counters.jobs_done),
                // The lease lapsed (we were slow): another worker has the job; its step is a no-op.
                Err(error) => tracing::warn!(%error, "ack refused"),
            }
        }
        Err(error) => {
            let jitter = rng.random_range(0..=1000u32);
            match app
                .store
                .fail_job(lease.clone(), error.to_string(), jitter)
                .await
            {
                Ok(Failed::Retry { at }) => {
                    Counters::bump(&app.counters.job_retries);
                    tracing::warn!(%error, retry_at = %at, "job failed; will retry");
                }
                Ok(Failed::DeadLettered) => {
                    Counters::bump(&app.counters.jobs_dead_lettered);
                    tracing::error!(%error, "job dead-lettered");
                }
                Err(e) => {
                    tracing::warn!(%error, report_error = %e, "could not report a failed job")
                }
            }
        }
    }
}

async fn run_step(app: &App, lease: &Lease) -> Result<Step, StepError> {
    let cause = Cause::Worker { job: lease.job };
    let order = lease.order;
    match lease.kind {
        JobKind::Reserve => reserve(app, order, cause).await,
        JobKind::CreateIntent => {
            let Some(current) = app.store.get_order(order).await? else {
                return Err(StepError::Other(format!("{order} does not exist")));
            };
            if !naive::offers_payment(app, current.status()) {
                return Ok(Step::Skipped(current.status()));
            }
            let created = create_intent(app, &current).await?;
            if naive::forgets_replayed_intent(app, &created) {
                return Ok(Step::Skipped(current.status()));
            }
            Ok(app.store.record_intent(created.intent, cause).await?)
        }
        JobKind::SyncPayment => {
            let mut last = Step::NothingToDo;
            for intent in app.psp.intents_for_order(order).await? {
                last = app.store.apply_payment(intent, cause.clone()).await?;
            }
            Ok(last)
        }
        JobKind::Finalize if naive::leaves_finalize_to_webhook(app) => Ok(Step::NothingToDo),
        JobKind::Finalize => Ok(app.store.finalize(order, cause).await?),
        JobKind::Refund => refund(app, order, cause).await,
        JobKind::CancelIntent => cancel_intent(app, order, cause).await,
        JobKind::RefundStray => refund_stray(app, order).await,
    }
}

/// The reserve step: atomic and state-checked (a naive design may reserve
/// otherwise, see `naive::reserve`).
async fn reserve(app: &App, order: OrderId, cause: Cause) -> Result<Step, StepError> {
    if let Some(step) = naive::reserve(app, order, &cause).await {
        return step;
    }
    Ok(app.store.reserve(order, cause).await?)
}

/// Refunds every captured intent of the order at the PSP, then records it.
async fn refund(app: &App, order: OrderId, cause: Cause) -> Result<Step, StepError> {
    let intents = app.psp.intents_for_order(order).await?;
    let mut refunded: Option<PaymentIntent> = None;
    for intent in intents.into_iter().filter(|i| naive::refunds(app, i)) {
        // One key per intent: a naive shop may have charged several intents for one order.
        let key = format!("{}_{}", refund_key(order), intent.id);
        refunded = Some(app.psp.refund(&intent.id, &key).await?);
        tracing::info!(order_id = %order, intent = %intent.id, "refunded");
    }
    match refunded {
        Some(intent) => Ok(app.store.mark_refunded(intent, cause).await?),
        None => Ok(Step::NothingToDo),
    }
}

/// Refunds the money captured for `order` that is not its payment (see
/// `Order::is_stray_payment`): intents someone else created for it, or a
/// second one. The order's own payment, and the order, are left alone.
async fn refund_stray(app: &App, order: OrderId) -> Result<Step, StepError> {
    let Some(current) = app.store.get_order(order).await? else {
        return Ok(Step::NothingToDo);
    };
    let intents = app.psp.intents_for_order(order).await?;
    let asked = current.asked(&intents);
    for intent in intents {
        if current.is_stray_payment(&intent, asked) {
            let key = format!("{}_{}", refund_key(order), intent.id);
            app.psp.refund(&intent.id, &key).await?;
            tracing::warn!(order_id = %order, intent = %intent.id, amount = %intent.amount, "refunded a stray payment");
        }
    }
    Ok(Step::NothingToDo)
}

/// Cancels the order's open intent; if the customer paid meanwhile, the
/// payment is applied (and, the order being cancelled, refunded).
async fn cancel_intent(app: &App, order: OrderId, cause: Cause) -> Result<Step, StepError> {
    let mut last = Step::NothingToDo;
    for intent in app.psp.intents_for_order(order).await? {
        let current = match intent.status {
            IntentStatus::RequiresPayment => {
                app.psp.cancel(&intent.id).await.or_else(|e| match e {
                    // Paid between our read and the cancel: the PSP refuses; take its word.
                    crate::psp::PspError::Status { status: 409, .. } => Ok(intent.clone()),
                    other => Err(other),
                })?
            }
            _ => intent,
        };
        last = app.store.apply_payment(current, cause.clone()).await?;
    }
    Ok(last)
}

/// Sweeps lapsed reservations and old idempotency records forever. After a
/// sweep it sleeps until the next hold lapses, at least [`SWEEP_GAP_MIN_MS`]
/// and at most `sweep_interval_ms` (holds made meanwhile are learned of at
/// the next sweep, so with an interval no longer than the TTL each is swept
/// when it lapses). Old idempotency records go at most once an interval.
pub async fn run_sweeper(app: Arc<App>, config: WorkerConfig) {
    let interval = config.sweep_interval_ms;
    let mut pause = interval;
    let mut housekept = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        pause = interval;
        if naive::reservations_never_lapse(&app) {
            continue;
        }
        match app.store.expire_reservations(config.sweep_batch).await {
            Ok((transitions, next)) => {
                app.counters.transitions_made(&transitions);
                if let Some(at) = next {
                    let until = at.0.saturating_sub(app.clock.now().0);
                    pause = until.max(SWEEP_GAP_MIN_MS).min(interval);
                }
            }
            Err(error) => app.counters.store_error(&error),
        }
        if housekept.elapsed() >= Duration::from_millis(interval) {
            housekept = Instant::now();
            let _ = app.store.housekeep(config.sweep_batch).await;
        }
    }
}

/// Compares open orders with the PSP forever and repairs what webhooks missed.
pub async fn run_reconciler(app: Arc<App>, config: WorkerConfig) {
    if naive::skips_reconciliation(&app) {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(config.reconcile_interval_ms)).await;
        if let Err(error) = reconcile_once(&app, config).await {
            tracing::warn!(%error, "reconciliation pass failed");
        }
    }
}

/// One reconciliation pass; returns the repairs made.
pub async fn reconcile_once(app: &App, config: WorkerConfig) -> Result<usize, String> {
    let candidates = app
        .store
        .reconcile_candidates(config.reconcile_batch)
        .await
        .map_err(|e| e.to_string())?;
    let mut psp: BTreeMap<OrderId, PaymentIntent> = BTreeMap::new();
    for order in &candidates {
        let intents = app
            .psp
            .intents_for_order(order.id)
            .await
            .map_err(|e| e.to_string())?;
        let chosen = intent_that_matters(order, &intents);
        if let Some(intent) = chosen {
            psp.insert(order.id, intent.clone());
        }
    }
    let repairs = reconcile(
        &candidates,
        &psp,
        app.clock.now(),
        config.reconcile_grace_ms,
    );
    let mut made = 0;
    for repair in repairs {
        let result = match repair {
            Repair::ApplyPayment { intent, .. } => app
                .store
                .apply_payment(intent, Cause::Reconciler)
                .await
                .map(Some),
            Repair::Finalize { order } => {
                app.store.finalize(order, Cause::Reconciler).await.map(Some)
            }
            Repair::Refund { order, .. } => app
                .store
                .enqueue_job(JobKind::Refund, order)
                .await
                .map(|_| None),
            Repair::Anomaly { order, detail } => {
                tracing::error!(order_id = %order, %detail, "reconciliation anomaly");
                Ok(None)
            }
        };
        match result {
            Ok(step) => {
                made += 1;
                Counters::bump(&app.counters.reconciler_repairs);
                if let Some(step) = step {
                    app.counters.step(&step);
                }
            }
            Err(error) => app.counters.store_error(&error),
        }
    }
    Ok(made)
}
