//! The in-process store: the core's `ShopState` behind a lock. Each request
//! holds the lock for exactly one core operation, which is what makes it
//! atomic; nothing awaits while holding it.
//!
//! A [`StoreRequest::LeaseJobWait`] that finds no runnable job waits, on
//! tokio's clock and without the lock, until the next job is due, until a
//! request that may have made one runnable is executed (every request but
//! the pure reads, `LeaseJob` and `AckJob` signals a [`Notify`]), or until
//! its wait is over. [`MemoryStore::restore`] does not signal: the simulator
//! restores only while the store host is down, so no wait is in progress.

use super::{LEASE_WAIT_MAX_MS, Store, StoreError, StoreFuture, StoreRequest, StoreResponse};
use crate::clock::Clock;
use stampede_core::{Lease, ShopState};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// `ShopState` behind a mutex, stamped by a clock.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<ShopState>,
    clock: Clock,
    /// Signalled after every request that may have made a job runnable sooner.
    changed: Notify,
}

impl MemoryStore {
    /// A store holding `state`, reading `now` from `clock`.
    pub fn new(state: ShopState, clock: Clock) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(state),
            clock,
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ShopState> {
        // A panic while holding the lock is a bug in the core; the state it
        // left is still the best record of what happened, so keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the state under the lock (no copy).
    pub fn read<T>(&self, f: impl FnOnce(&ShopState) -> T) -> T {
        f(&self.lock())
    }

    /// A copy of the whole state (for the simulator's durable snapshot).
    pub fn snapshot(&self) -> ShopState {
        self.lock().clone()
    }

    /// Replaces the whole state (restoring a durable snapshot after a crash).
    /// The restored feed gets an epoch past the live one's: its sequence
    /// numbers may have gone back, so every cursor handed out so far must
    /// read as incomplete.
    pub fn restore(&self, mut state: ShopState) {
        let mut live = self.lock();
        state.renew_feed_epoch_after(live.feed().epoch());
        *live = state;
    }

    /// Runs one request atomically. A `LeaseJobWait` cannot wait here (this
    /// is not async): it leases like `LeaseJob`; [`Store::call`] waits.
    pub fn execute(&self, request: StoreRequest) -> Result<StoreResponse, StoreError> {
        let now = self.clock.now();
        let mut shop = self.lock();
        let s = &mut *shop;
        use StoreRequest as Q;
        use StoreResponse as A;
        let signal = !matches!(
            request,
            Q::GetOrder { .. }
                | Q::ReconcileCandidates { .. }
                | Q::Catalog
                | Q::Audit
                | Q::Stats
                | Q::RawGetKey { .. }
                | Q::RawAvailable { .. }
                | Q::LeaseJob
                | Q::LeaseJobWait { .. }
                | Q::AckJob { .. }
                | Q::ReadFeed { .. }
        );
        let response = match request {
            Q::PlaceOrder { request } => A::Placed(s.place_order(&request, now)?),
            Q::BeginKey { key, fingerprint } => A::Begin(s.begin_key(&key, fingerprint, now)),
            Q::CompleteKey {
                key,
                fingerprint,
                response,
            } => {
                s.complete_key(&key, fingerprint, response, now)?;
                A::Done
            }
            Q::AbandonKey { key, fingerprint } => {
                s.abandon_key(&key, fingerprint)?;
                A::Done
            }
            Q::Reserve { order, cause } => A::Step(s.reserve(order, now, cause)?),
            Q::RecordIntent { intent, cause } => A::Step(s.record_intent(intent, now, cause)?),
            Q::ApplyPayment { intent, cause } => A::Step(s.apply_payment(&intent, now, cause)?),
            Q::ReceiveWebhook { event } => A::Webhook(s.receive_webhook(event, now)?),
            Q::Finalize { order, cause } => A::Step(s.finalize(order, now, cause)?),
            Q::MarkRefunded { intent, cause } => A::Step(s.mark_refunded(&intent, now, cause)?),
            Q::TransitionIf {
                order,
                expected,
                to,
                cause,
            } => A::Step(s.transition_if(order, expected, to, now, cause)?),
            Q::Cancel { order } => A::Step(s.cancel(order, now)?),
            Q::ExpireReservations { max } => {
                let expired = s.expire_reservations(now, max)?;
                A::Swept(expired, s.inventory().next_expiry())
            }
            Q::LeaseJob | Q::LeaseJobWait { .. } => A::Lease(s.lease_job(now)),
            Q::AckJob { lease } => {
                s.ack_job(&lease)?;
                A::Done
            }
            Q::FailJob {
                lease,
                error,
                jitter_permille,
            } => A::Failed(s.fail_job(&lease, now, &error, jitter_permille)?),
            Q::EnqueueJob { kind, order } => A::Job(Some(s.enqueue_job(kind, order, now)?)),
            Q::Restock { sku, qty } => {
                s.stock(&sku, qty, 1)?;
                A::Done
            }
            Q::GetOrder { order } => A::Order(s.order(order).cloned().map(Box::new)),
            Q::ReadFeed { since, max } => A::Feed(s.changes_since(since, max)),
            Q::ReconcileCandidates { limit } => A::Orders(s.reconcile_candidates(limit)),
            Q::Catalog => A::Catalog(
                s.catalog()
                    .products()
                    .map(|p| (p.clone(), s.inventory().level(&p.sku).unwrap_or_default()))
                    .collect(),
            ),
            Q::Audit => A::Audit(Box::new(s.audit(now))),
            Q::Stats => A::Stats(Box::new(s.stats())),
            Q::Housekeep { max } => A::Count(s.housekeep(now, max) as u64),
            Q::RawGetKey { key } => A::Key(s.saved_response(&key, now)),
            Q::RawPutKey {
                key,
                fingerprint,
                response,
            } => {
                s.raw_put_key(&key, fingerprint, response, now);
                A::Done
            }
            Q::RawCreateOrder {
                request,
                unit_prices,
                with_job,
            } => {
                let (order, job) =
                    s.raw_create_order(&request, unit_prices.as_deref(), with_job, now)?;
                A::Created(order, job)
            }
            Q::RawAvailable { sku } => A::Count(s.raw_available(&sku)),
            Q::RawForceReserve {
                order,
                observed,
                cause,
            } => A::Step(s.raw_force_reserve(order, &observed, now, cause)?),
            Q::RawReserveUnchecked {
                order,
                sold_out,
                cause,
            } => A::Step(s.raw_reserve_unchecked(order, now, cause, sold_out)?),
            Q::RawReserveFromReservations { order, cause } => {
                A::Step(s.raw_reserve_from_reservations(order, now, cause)?)
            }
            Q::RawApplyUnchecked { event } => A::Step(s.raw_apply_unchecked(&event, now)?),
        };
        drop(shop);
        if signal {
            self.changed.notify_waiters();
        }
        Ok(response)
    }

    /// Leases the next runnable job, waiting up to `wait_ms` (at most
    /// [`LEASE_WAIT_MAX_MS`]) on tokio's clock for one. Each turn of the loop
    /// registers for the signal before it looks (so no signal is missed),
    /// looks under the lock, releases it, then sleeps until the signal, the
    /// next job's time or the end of the wait, whichever is first; so the
    /// turns are bounded by the signals and due times within the wait.
    pub async fn lease_job_wait(&self, wait_ms: u64) -> Option<Lease> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(LEASE_WAIT_MAX_MS));
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.clock.now();
            let (lease, next) = {
                let mut shop = self.lock();
                (shop.lease_job(now), shop.next_job_at())
            };
            let started = Instant::now();
            if lease.is_some() || started >= deadline {
                return lease;
            }
            // No job is runnable at `now`, so the next one is due after it.
            let due =
                next.map(|at| started + Duration::from_millis(at.0.saturating_sub(now.0).max(1)));
            let wake = due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                biased;
                () = &mut changed => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

impl Store for MemoryStore {
    fn call(&self, request: StoreRequest) -> StoreFuture<'_> {
        if let StoreRequest::LeaseJobWait { wait_ms } = request {
            return Box::pin(async move {
                Ok(StoreResponse::Lease(self.lease_job_wait(wait_ms).await))
            });
        }
        let result = self.execute(request);
        Box::pin(async move { result })
    }
}
