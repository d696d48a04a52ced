//! The in-process store: the core's `ShopState` behind a lock. Each request
//! holds the lock for exactly one core operation, which is what makes it
//! atomic; nothing awaits while holding it.
//!
//! A [`Command::LeaseJobWait`] that finds no runnable job waits, on
//! tokio's clock and without the lock, until the next job is due, until a
//! request that may have made one runnable is executed (every request but
//! the pure reads, `LeaseJob`, `AckJob` and those that change nothing signals
//! a [`Notify`]: see `Command::may_wake_jobs`), or until
//! its wait is over. [`MemoryStore::restore`] does not signal: the simulator
//! restores only while the store host is down, so no wait is in progress.
//!
//! A durable store keeps its working state here too and adds a [`Journal`]:
//! every command that changed the state (or may have: not a read, not a
//! lease, sweep or housekeeping pass that found nothing due) is handed to it under
//! the lock, in the order it was applied, and each reply carries the
//! journal position it must wait for before it is released.

use super::{Command, LEASE_WAIT_MS_MAX, Reply, Store, StoreError, StoreFuture};
use crate::clock::Clock;
use stampede_core::{Lease, Millis, ShopState};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a durable store records what was applied, in apply order.
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// Records `command`, which `state` has just applied at `now` without
    /// refusing it, answering `reply`. Called under the state lock, so calls
    /// come in apply order. Returns the command's position: its reply waits
    /// for it.
    fn append(&self, command: Command, reply: &Reply, now: Millis, state: &ShopState) -> u64;

    /// The position of the last command appended: what a reply that changed
    /// nothing (a read, a refusal) waits for, so no reply reveals a change
    /// that is not yet durable.
    fn head(&self) -> u64;
}

/// `ShopState` behind a mutex, stamped by a clock.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<ShopState>,
    clock: Clock,
    /// Signalled after every request that may have made a job runnable sooner.
    changed: Notify,
    journal: Option<Box<dyn Journal>>,
}

impl MemoryStore {
    /// A store holding `state`, reading `now` from `clock`.
    pub fn new(state: ShopState, clock: Clock) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(state),
            clock,
            changed: Notify::new(),
            journal: None,
        }
    }

    /// A store holding `state` that hands every change to `journal`.
    pub fn journaled(state: ShopState, clock: Clock, journal: Box<dyn Journal>) -> MemoryStore {
        MemoryStore {
            journal: Some(journal),
            ..MemoryStore::new(state, clock)
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Applies `command` under the lock at `now`, journaling it unless it
    /// changes nothing (`ShopState::changes_nothing`); returns the reply and the journal position it
    /// waits for (0 without a journal).
    fn apply(
        &self,
        shop: &mut ShopState,
        command: Command,
        now: Millis,
    ) -> (Result<Reply, StoreError>, u64) {
        let Some(journal) = &self.journal else {
            return (shop.apply(command, now).map_err(StoreError::from), 0);
        };
        if shop.changes_nothing(&command, now) {
            return (
                shop.apply(command, now).map_err(StoreError::from),
                journal.head(),
            );
        }
        let record = command.clone();
        match shop.apply(command, now) {
            Ok(reply) => {
                let position = journal.append(record, &reply, now, shop);
                (Ok(reply), position)
            }
            // A refused command changed nothing: nothing to record.
            Err(refused) => (Err(refused.into()), journal.head()),
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

    /// Runs one command atomically. A `LeaseJobWait` cannot wait here (this
    /// is not async): it leases like `LeaseJob`; [`Store::call`] waits.
    pub fn execute(&self, command: Command) -> Result<Reply, StoreError> {
        self.execute_journaled(command).0
    }

    /// [`MemoryStore::execute`], also answering the journal position the
    /// reply must wait for.
    pub fn execute_journaled(&self, command: Command) -> (Result<Reply, StoreError>, u64) {
        let now = self.clock.now();
        let (reply, position, wake) = {
            let mut shop = self.lock();
            let wake = command.may_wake_jobs() && !shop.changes_nothing(&command, now);
            let (reply, position) = self.apply(&mut shop, command, now);
            (reply, position, wake)
        };
        if wake && reply.is_ok() {
            self.changed.notify_waiters();
        }
        (reply, position)
    }

    /// Leases the next runnable job, waiting up to `wait_ms` (at most
    /// [`LEASE_WAIT_MS_MAX`]) on tokio's clock for one. Each turn of the loop
    /// registers for the signal before it looks (so no signal is missed),
    /// looks under the lock, releases it, then sleeps until the signal, the
    /// next job's time or the end of the wait, whichever is first; so the
    /// turns are bounded by the signals and due times within the wait.
    pub async fn lease_job_wait(&self, wait_ms: u64) -> Option<Lease> {
        self.lease_job_wait_journaled(wait_ms).await.0
    }

    /// [`MemoryStore::lease_job_wait`], also answering the journal position
    /// the reply must wait for.
    pub async fn lease_job_wait_journaled(&self, wait_ms: u64) -> (Option<Lease>, u64) {
        let deadline = Instant::now() + Duration::from_millis(wait_ms.min(LEASE_WAIT_MS_MAX));
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.clock.now();
            let (leased, position, next) = {
                let mut shop = self.lock();
                let (leased, position) = self.apply(&mut shop, Command::LeaseJob, now);
                (leased, position, shop.next_job_at())
            };
            let lease = match leased {
                Ok(Reply::Lease(lease)) => lease,
                // Leasing refuses nothing and answers a lease.
                other => unreachable!("LeaseJob answered {other:?}"),
            };
            let started = Instant::now();
            if lease.is_some() || started >= deadline {
                return (lease, position);
            }
            // No job is runnable at `now`, so the next one is due after it.
            super::sleep_until_job(changed.as_mut(), started, now, next, deadline).await;
        }
    }
}

impl Store for MemoryStore {
    fn call(&self, request: Command) -> StoreFuture<'_> {
        if let Command::LeaseJobWait { wait_ms } = request {
            return Box::pin(async move { Ok(Reply::Lease(self.lease_job_wait(wait_ms).await)) });
        }
        let result = self.execute(request);
        Box::pin(async move { result })
    }
}
