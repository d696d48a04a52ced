//! The `db` host's store: the core's state in memory plus a command log with
//! a sync boundary, the way a database keeps a write-ahead log.
//!
//! **Design decision: a crash loses what was not synced, and the reference
//! never told anyone about it.** The store is a journaled [`MemoryStore`]:
//! every write is appended to the [`Log`] under the state lock, in apply
//! order, with its position. The driver syncs the log every
//! `faults.sync_interval_ms` of sim time ([`Log::sync`]: group commit,
//! everything appended so far becomes durable at once). [`DbStore`] releases
//! a reply only once its position is synced (a read or a refusal waits for
//! the last write before it, as `SqliteStore` does), unless the design is
//! `commit=ack-first`, which answers at once. A crash of the host
//! ([`Log::lose_unsynced_tail`]) rebuilds the state from the last checkpoint
//! plus the synced prefix of the log, re-applied with `ShopState::apply`
//! (pure: the same commands at the same times give the same state), keeps
//! its ids past the lost state's, and forgets the history events of the
//! lost writes.
//!
//! Without `faults.lose_unsynced_tail` the host's disk never loses a write:
//! nothing is logged, every write counts as synced when applied, and replies
//! go at once.
//!
//! Checkpoints are clones of the whole state, taken at a sync once the log
//! holds [`CHECKPOINT_MIN_COMMANDS`] commands (or twice the order count,
//! whichever is more), so cloning costs a bounded share of the work and a
//! crash re-applies a bounded log.
//!
//! Simplification, stated openly: the log and the checkpoint live outside
//! the host (so the driver can restore them while it is down); nothing but
//! the sync boundary decides what survives.

use crate::recorder::{Recorder, written_events};
use stampede_core::{Command, Reply};
use stampede_core::{Millis, ShopState};
use stampede_server::Commit;
use stampede_server::store::{Journal, MemoryStore, Store, StoreFuture};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Fewest logged commands between two checkpoints (the interval also grows
/// to twice the order count).
pub const CHECKPOINT_MIN_COMMANDS: usize = 4_096;

/// A write as applied: what a crash re-applies to rebuild the synced state.
struct Logged {
    position: u64,
    command: Command,
    /// The reply it gave, to check the replay against (the pair assertion).
    reply: Reply,
    now: Millis,
}

struct Inner {
    /// The state right after position `checkpoint_at` (only when lossy).
    checkpoint: Option<ShopState>,
    checkpoint_at: u64,
    /// Writes after the checkpoint, in apply order (only when lossy).
    entries: VecDeque<Logged>,
    /// The last position handed out. Positions are never reused, not even
    /// after a crash took some back.
    head: u64,
}

/// The `db` host's command log and sync boundary (shared by the store's
/// journal, its reply gate and the driver).
///
/// Lock order: the store's state lock, then this log's, then the
/// recorder's (the journal appends under the state lock); the driver's
/// calls take the log's lock only while they hold no other.
pub struct Log {
    /// Whether a crash loses the unsynced tail (`faults.lose_unsynced_tail`).
    lossy: bool,
    inner: Mutex<Inner>,
    /// Every write up to this position is synced.
    synced: AtomicU64,
    /// Signalled when `synced` moves. A `Notify`, not a `watch`: a watch
    /// registers each waiter on one of several lists picked with tokio's
    /// unseeded RNG, so the order replies are released would differ from
    /// process to process; `Notify` wakes its waiters in a fixed order.
    synced_moved: Notify,
    recorder: Recorder,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("lossy", &self.lossy)
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// A log over `state` (position 0), recording writes into `recorder`;
    /// with `lossy`, a crash loses the writes not synced yet.
    pub fn new(state: &ShopState, lossy: bool, recorder: Recorder) -> Arc<Log> {
        Arc::new(Log {
            lossy,
            inner: Mutex::new(Inner {
                checkpoint: lossy.then(|| state.clone()),
                checkpoint_at: 0,
                entries: VecDeque::new(),
                head: 0,
            }),
            synced: AtomicU64::new(0),
            synced_moved: Notify::new(),
            recorder,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position every write up to which is synced.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Relaxed)
    }

    /// Syncs everything appended so far (group commit), releasing the
    /// replies waiting for it; checkpoints `store`'s state once the log has
    /// grown long. Called by the driver between steps of the world, so no
    /// write is applied while it runs.
    pub fn sync(&self, store: &MemoryStore) {
        let (head, logged) = {
            let inner = self.lock();
            (inner.head, inner.entries.len())
        };
        if self.synced() < head {
            self.synced.store(head, Ordering::Relaxed);
            self.synced_moved.notify_waiters();
        }
        if !self.lossy || logged < CHECKPOINT_MIN_COMMANDS {
            return;
        }
        let orders = store.read(|s| s.orders().count());
        if logged >= CHECKPOINT_MIN_COMMANDS.max(2 * orders) {
            // The state right after `head`, all of it synced now.
            let state = store.snapshot();
            let mut inner = self.lock();
            assert_eq!(inner.head, head, "a write was applied during a sync");
            inner.checkpoint = Some(state);
            inner.checkpoint_at = head;
            inner.entries.clear();
        }
    }

    /// The host crashed: `store` goes back to the synced state (the last
    /// checkpoint plus the synced writes after it, re-applied), with its ids
    /// kept past the lost state's so none is handed out twice, and the
    /// history forgets the lost writes. Returns how many writes were lost.
    /// Without `lose_unsynced_tail` nothing is lost. Called by the driver
    /// while the host is down.
    pub fn lose_unsynced_tail(&self, store: &MemoryStore) -> usize {
        if !self.lossy {
            return 0;
        }
        let synced = self.synced();
        let (mut state, lost) = {
            let mut inner = self.lock();
            let kept = inner.entries.partition_point(|e| e.position <= synced);
            let lost = inner.entries.len() - kept;
            inner.entries.truncate(kept);
            (self.replay(&inner), lost)
        };
        store.read(|live| state.keep_ids_past(live));
        store.restore(state);
        // The restored state (ids raised, feed epoch renewed) is what later
        // writes apply to: it is the new checkpoint.
        let restored = store.snapshot();
        {
            let mut inner = self.lock();
            inner.checkpoint = Some(restored);
            inner.checkpoint_at = synced;
            inner.entries.clear();
        }
        self.recorder.forget_after(synced);
        lost
    }

    /// The checkpoint with the logged writes re-applied, each checked to
    /// give the reply it gave the first time.
    fn replay(&self, inner: &Inner) -> ShopState {
        let mut state = inner
            .checkpoint
            .clone()
            .expect("a lossy log keeps a checkpoint");
        for logged in &inner.entries {
            let replayed = state.apply(logged.command.clone(), logged.now);
            assert_eq!(
                replayed.as_ref(),
                Ok(&logged.reply),
                "re-applying write {} (after checkpoint {}) gave another reply: ShopState::apply is not pure",
                logged.position,
                inner.checkpoint_at
            );
        }
        state
    }
}

/// The journal the `db` host's [`MemoryStore`] appends to under its lock.
#[derive(Debug)]
pub struct SimJournal(pub Arc<Log>);

impl Journal for SimJournal {
    fn append(&self, command: Command, reply: &Reply, now: Millis, _state: &ShopState) -> u64 {
        let log = &self.0;
        let mut inner = log.lock();
        inner.head += 1;
        let position = inner.head;
        // A write a crash may still take back carries its position into the history.
        let tentative = log.lossy.then_some(position);
        for event in written_events(&command, reply) {
            log.recorder.push_written(now, event, tentative);
        }
        if log.lossy {
            inner.entries.push_back(Logged {
                position,
                command,
                reply: reply.clone(),
                now,
            });
        }
        position
    }

    fn head(&self) -> u64 {
        self.0.lock().head
    }
}

/// The store the `db` host serves: the journaled [`MemoryStore`], each reply
/// held until its position is synced (with `commit=ack-first`, released at
/// once); counts the calls it was asked.
pub struct DbStore {
    memory: Arc<MemoryStore>,
    log: Arc<Log>,
    commit: Commit,
    calls: AtomicU64,
}

impl DbStore {
    /// Serves `memory` (journaled into `log`), answering as `commit` says.
    pub fn new(memory: Arc<MemoryStore>, log: Arc<Log>, commit: Commit) -> DbStore {
        DbStore {
            memory,
            log,
            commit,
            calls: AtomicU64::new(0),
        }
    }

    /// Store calls made so far (answered or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Waits until every write up to `position` is synced: not without
    /// `lose_unsynced_tail` (every write is durable as applied), nor with
    /// `commit=ack-first` (that design answers at once).
    async fn synced(&self, position: u64) {
        if !self.log.lossy || !self.commit.waits() {
            return;
        }
        loop {
            // Registered before looking, so a sync in between is not missed.
            let moved = self.log.synced_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.log.synced() >= position {
                return;
            }
            moved.await;
        }
    }
}

impl Store for DbStore {
    fn call(&self, command: Command) -> StoreFuture<'_> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Command::LeaseJobWait { wait_ms } = command {
            return Box::pin(async move {
                let (lease, position) = self.memory.lease_job_wait_journaled(wait_ms).await;
                self.synced(position).await;
                Ok(Reply::Lease(lease))
            });
        }
        Box::pin(async move {
            let (reply, position) = self.memory.execute_journaled(command);
            self.synced(position).await;
            reply
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_core::{
        Catalog, Cents, CustomerId, EventKind, IdempotencyKey, ItemRequest, OrderId, PlaceOrder,
        Placed, Product, ShopConfig, Sku,
    };
    use stampede_server::Clock;

    fn hat() -> Sku {
        Sku::new("hat".to_string()).unwrap()
    }

    fn world(commit: Commit) -> (Arc<MemoryStore>, Arc<Log>, Arc<DbStore>, Recorder) {
        let catalog = Catalog::new([Product {
            sku: hat(),
            name: "Hat".into(),
            price: Cents(1_000),
            max_qty_per_order: 5,
            per_customer_limit: None,
        }]);
        let mut state = ShopState::new(catalog, ShopConfig::default());
        state.stock(&hat(), 10, 1).unwrap();
        let recorder = Recorder::default();
        let log = Log::new(&state, true, recorder.clone());
        let memory = Arc::new(MemoryStore::journaled(
            state,
            Clock::from_fn(0, || Millis(0)),
            Box::new(SimJournal(Arc::clone(&log))),
        ));
        let db = Arc::new(DbStore::new(Arc::clone(&memory), Arc::clone(&log), commit));
        (memory, log, db, recorder)
    }

    fn place(key: &str) -> Command {
        Command::PlaceOrder {
            request: PlaceOrder {
                key: Some(IdempotencyKey::new(key.to_string()).unwrap()),
                customer: CustomerId::new(key.to_string()).unwrap(),
                items: vec![ItemRequest { sku: hat(), qty: 1 }],
                express: false,
            },
        }
    }

    fn created(reply: Reply) -> OrderId {
        match reply {
            Reply::Placed(Placed::Created { order, .. }) => order,
            other => panic!("{other:?}"),
        }
    }

    /// Runs `command` on the store's own task; answers whether it replied
    /// before anything was synced, and the reply once synced.
    async fn call(
        db: &Arc<DbStore>,
        log: &Log,
        memory: &MemoryStore,
        command: Command,
    ) -> (bool, Reply) {
        let db = Arc::clone(db);
        let task = tokio::spawn(async move { db.call(command).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let before_sync = task.is_finished();
        log.sync(memory);
        (before_sync, task.await.unwrap().unwrap())
    }

    fn leases(recorder: &Recorder) -> Vec<OrderId> {
        let history = recorder.history();
        let events = history.events().iter();
        events
            .filter_map(|e| match &e.kind {
                EventKind::Job { order, .. } => Some(*order),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_reply_waits_for_its_sync_and_a_crash_loses_only_what_was_not_synced() {
        // Proves: with commit=durable a write's reply is released only by the sync that makes
        // it durable; a crash then keeps every synced write, loses the rest (the order placed and
        // the job leased after the last sync) and the history events of the lost writes, and
        // the next order is numbered past the lost one.
        let (memory, log, db, recorder) = world(Commit::Durable);
        let (early, reply) = call(&db, &log, &memory, place("a")).await;
        assert!(!early, "a reply went before its write was synced");
        let kept = created(reply);
        let (_, lease) = call(&db, &log, &memory, Command::LeaseJob).await;
        assert!(matches!(lease, Reply::Lease(Some(_))));
        // Applied, never synced: their replies are never released.
        let lost = created(memory.execute(place("b")).unwrap());
        assert!(matches!(
            memory.execute(Command::LeaseJob),
            Ok(Reply::Lease(Some(_)))
        ));
        assert_eq!(leases(&recorder), vec![kept, lost]);

        assert_eq!(log.lose_unsynced_tail(&memory), 2);
        memory.read(|s| {
            assert!(s.order(kept).is_some());
            assert!(s.order(lost).is_none());
        });
        assert_eq!(leases(&recorder), vec![kept], "the lost lease is forgotten");
        let next = created(memory.execute(place("c")).unwrap());
        assert!(next > lost, "{next} reuses an id up to {lost}");
    }

    #[tokio::test]
    async fn ack_first_replies_before_the_sync_and_a_crash_takes_the_write_back() {
        // Proves: with commit=ack-first the reply goes before its write is synced, so a crash
        // before the sync takes back an order its client was told about.
        let (memory, log, db, _) = world(Commit::AckFirst);
        let order = created(db.call(place("a")).await.unwrap());
        assert_eq!(log.lose_unsynced_tail(&memory), 1);
        assert!(memory.read(|s| s.order(order).is_none()));
    }

    #[tokio::test]
    async fn a_crash_after_a_checkpoint_rebuilds_the_same_state() {
        // Proves: the synced state a crash restores is the live one when everything was synced,
        // across a checkpoint (the log re-applied on top of it gives the state the store had).
        let (memory, log, db, _) = world(Commit::Durable);
        let mut n = 0;
        let mut after_checkpoint = 0;
        while after_checkpoint < 5 {
            assert!(n < 3 * CHECKPOINT_MIN_COMMANDS, "no checkpoint was taken");
            call(&db, &log, &memory, place(&format!("k{n}"))).await;
            call(&db, &log, &memory, Command::LeaseJob).await;
            n += 1;
            if log.lock().checkpoint_at > 0 {
                after_checkpoint += 1;
            }
        }
        assert!(!log.lock().entries.is_empty());
        let before = memory.snapshot();
        assert_eq!(log.lose_unsynced_tail(&memory), 0);
        let after = memory.snapshot();
        assert!(after.orders().eq(before.orders()));
        assert_eq!(after.jobs(), before.jobs());
        assert_eq!(after.inventory(), before.inventory());
    }
}
