//! The watcher hub: events streams wait here for their order's next status
//! instead of polling the store.
//!
//! One [`WatchHub`] per [`crate::App`]. A handler registers interest in an
//! order ([`WatchHub::watch`]; at most `max_watchers` at once, so the caller
//! can refuse one more) and waits on its [`Watch`]. While anyone watches, one
//! hub task reads the store's change feed ([`stampede_core::feed`]) every
//! `poll_ms` and wakes the watchers of the orders that changed; when the feed
//! answers incomplete (the hub fell off the ring, or the store restored a
//! snapshot) or the store fails, it wakes every watcher, and each re-reads
//! its order. The task starts with the first watcher and ends when the last
//! one is gone: an idle shop makes no feed reads.
//!
//! **No lost wake-up.** A watcher is woken once right away if the hub already
//! holds a feed cursor, else as soon as the hub has taken one; the handler
//! reads its order only after that first wake. So the cursor the hub reads
//! from next was taken before the handler's read, and any change after that
//! read comes back in a feed read answered after the watcher registered,
//! which wakes it. Wakes coalesce (a [`Notify`] permit), so a slow reader
//! re-reads once for many changes; a spurious wake costs one read.
//!
//! **One read for many streams.** After a feed read the hub reads every
//! watched order that changed in one store call ([`Store::get_orders`]) and
//! hands each watcher its order with the wake: the stream sends it without a
//! read of its own. That read comes after the feed read, so it is at least as
//! new as the change it follows. When it fails, or the order is gone, the
//! watcher is woken with nothing and re-reads, as after a lost feed.
//!
//! **One read for many new streams.** A watcher that registers while the hub
//! holds a cursor is not woken at once: its order joins the hub's list of
//! first reads and the hub is kicked. The hub reads every order on that list
//! in one call, between feed reads (so watchers who register while a read is
//! on its way share the next one), and hands each its order as the first
//! wake. That read comes after the cursor was taken, so the argument above
//! holds for it. A watcher that registers before the hub's first cursor is
//! woken with nothing once the cursor is taken, and reads its order itself.

use crate::store::Store;
use stampede_core::{Cursor, FEED_READ_MAX, Order, OrderId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest a new watcher waits for the hub's first cursor before its
/// handler gives up (503), ms.
pub const READY_WAIT_MS: u64 = 5_000;
/// Default most watchers per app (`ServerConfig::max_watchers`).
pub const DEFAULT_WATCHERS_MAX: usize = 16_384;

/// Refused: the hub already has its maximum number of watchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{max} events streams are open already, the most this server keeps")]
pub struct Full {
    /// The bound.
    pub max: usize,
}

/// One watcher's mailbox: a wake, and the order as the hub read it after
/// the change (`None`: read it yourself).
#[derive(Default)]
struct Slot {
    notify: Notify,
    fresh: Mutex<Option<Order>>,
}

impl Slot {
    fn wake(&self, fresh: Option<Order>) {
        *lock(&self.fresh) = fresh;
        self.notify.notify_one();
    }

    fn take(&self) -> Option<Order> {
        lock(&self.fresh).take()
    }
}

#[derive(Default)]
struct Inner {
    /// Watchers by order, then by registration number.
    watchers: BTreeMap<OrderId, BTreeMap<u64, Arc<Slot>>>,
    count: usize,
    next_id: u64,
    /// The hub task is alive (set by the first watcher, cleared by the task
    /// itself, under the lock, when it finds no watcher left).
    running: bool,
    /// Where the hub reads next; `None` until its first feed read answers.
    cursor: Option<Cursor>,
    /// Feed reads made, for tests and metrics.
    reads: u64,
    /// Which hub task is the live one (each start takes the next number).
    task: u64,
    /// Orders whose new watchers wait for their first read by the hub.
    firsts: BTreeSet<OrderId>,
}

impl Inner {
    /// Everyone re-reads, the new watchers included.
    fn wake_all(&mut self) {
        for slot in self.watchers.values().flat_map(BTreeMap::values) {
            slot.wake(None);
        }
        self.firsts.clear();
    }

    /// Up to `max` orders still watched whose new watchers wait for a first
    /// read, taken off the list; none before the first cursor.
    fn take_firsts(&mut self, max: usize) -> BTreeSet<OrderId> {
        if self.cursor.is_none() {
            return BTreeSet::new();
        }
        let mut taken = BTreeSet::new();
        while taken.len() < max {
            let Some(order) = self.firsts.pop_first() else {
                break;
            };
            if self.watchers.contains_key(&order) {
                taken.insert(order);
            }
        }
        taken
    }

    /// The watchers of `order` re-read.
    fn wake(&self, order: OrderId) {
        for slot in self.slots(order) {
            slot.wake(None);
        }
    }

    /// The watchers of `order.id` are handed `order`.
    fn deliver(&self, order: &Order) {
        for slot in self.slots(order.id) {
            slot.wake(Some(order.clone()));
        }
    }

    fn slots(&self, order: OrderId) -> impl Iterator<Item = &Arc<Slot>> {
        self.watchers
            .get(&order)
            .into_iter()
            .flat_map(BTreeMap::values)
    }
}

type Shared = Arc<Mutex<Inner>>;

/// Locks `mutex`, taking it over from a holder that panicked, as the hub
/// always has: for the hub's state and for each watcher's slot.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Who waits for which order's next status.
pub struct WatchHub {
    inner: Shared,
    /// Wakes the hub task for new watchers' first reads.
    kick: Arc<Notify>,
    store: Arc<dyn Store>,
    poll: Duration,
    max: usize,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("watching", &self.watching())
            .field("max", &self.max)
            .finish()
    }
}

impl WatchHub {
    /// A hub reading `store`'s feed every `poll_ms` (at least 1) while at
    /// most `max` watchers wait.
    pub fn new(store: Arc<dyn Store>, poll_ms: u64, max: usize) -> WatchHub {
        WatchHub {
            inner: Shared::default(),
            kick: Arc::new(Notify::new()),
            store,
            poll: Duration::from_millis(poll_ms.max(1)),
            max,
        }
    }

    /// Registers interest in `order`, starting the hub task if it is not
    /// running. Must be called inside a tokio runtime. Wait for the first
    /// [`Watch::changed`] before reading the order (see the module docs).
    pub fn watch(&self, order: OrderId) -> Result<Watch, Full> {
        let mut inner = lock(&self.inner);
        if inner.count >= self.max {
            return Err(Full { max: self.max });
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let slot = Arc::new(Slot::default());
        inner.firsts.insert(order);
        if inner.cursor.is_some() {
            self.kick.notify_one();
        }
        inner
            .watchers
            .entry(order)
            .or_default()
            .insert(id, Arc::clone(&slot));
        inner.count += 1;
        if !inner.running {
            inner.running = true;
            inner.task += 1;
            let stop = Stop {
                inner: Arc::clone(&self.inner),
                task: inner.task,
            };
            let kick = Arc::clone(&self.kick);
            tokio::spawn(run(stop, kick, Arc::clone(&self.store), self.poll));
        }
        Ok(Watch {
            hub: Arc::clone(&self.inner),
            order,
            id,
            slot,
        })
    }

    /// Watchers registered now.
    pub fn watching(&self) -> usize {
        lock(&self.inner).count
    }

    /// Whether the hub task is alive.
    pub fn running(&self) -> bool {
        lock(&self.inner).running
    }

    /// Feed reads the hub has made so far.
    pub fn feed_reads(&self) -> u64 {
        lock(&self.inner).reads
    }
}

/// One registered interest; unregisters when dropped.
pub struct Watch {
    hub: Shared,
    order: OrderId,
    id: u64,
    slot: Arc<Slot>,
}

impl Watch {
    /// The watched order.
    pub fn order(&self) -> OrderId {
        self.order
    }

    /// Resolves when the order may have changed since the last wake (or,
    /// the first time, when it is safe to read it), with the order as the
    /// hub read it after the change, or `None`: read it yourself.
    pub async fn changed(&self) -> Option<Order> {
        self.slot.notify.notified().await;
        self.slot.take()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut inner = lock(&self.hub);
        let emptied = match inner.watchers.get_mut(&self.order) {
            Some(of_order) => {
                if of_order.remove(&self.id).is_some() {
                    inner.count -= 1;
                }
                inner
                    .watchers
                    .get(&self.order)
                    .is_some_and(BTreeMap::is_empty)
            }
            None => false,
        };
        if emptied {
            inner.watchers.remove(&self.order);
        }
    }
}

/// Marks the hub task stopped however it ends (returned, or dropped with its
/// runtime), unless a newer task has started meanwhile.
struct Stop {
    inner: Shared,
    task: u64,
}

impl Drop for Stop {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        if inner.task == self.task {
            inner.running = false;
            inner.cursor = None;
        }
    }
}

/// The hub task: reads the feed every `poll` while anyone watches, then
/// ends; kicked between feed reads, it makes the new watchers' first reads.
async fn run(stop: Stop, kick: Arc<Notify>, store: Arc<dyn Store>, poll: Duration) {
    let inner = &stop.inner;
    let mut wait = false;
    let mut next_read = tokio::time::Instant::now();
    loop {
        if wait {
            let kicked = tokio::select! {
                biased;
                () = tokio::time::sleep_until(next_read) => false,
                () = kick.notified() => true,
            };
            if kicked {
                let firsts = {
                    let mut guard = lock(inner);
                    let firsts = guard.take_firsts(FEED_READ_MAX);
                    // More than one call holds: the rest at the next kick.
                    if !guard.firsts.is_empty() {
                        kick.notify_one();
                    }
                    firsts
                };
                if !firsts.is_empty() {
                    hand_out(inner, store.as_ref(), firsts).await;
                }
                continue;
            }
        }
        next_read = tokio::time::Instant::now() + poll;
        let since = {
            let mut guard = lock(inner);
            if guard.count == 0 {
                // A watcher registering from here on starts a new task (with a new
                // number, which this task's `Stop` then leaves alone).
                guard.running = false;
                guard.cursor = None;
                return;
            }
            guard.reads += 1;
            guard.cursor
        };
        let result = store.read_feed(since, FEED_READ_MAX).await;
        let (changed, more) = {
            let mut guard = lock(inner);
            let (mut changed, more) = after_read(&mut guard, since, result);
            // The new watchers' first reads go in the same call, as far as it holds them;
            // the rest are read at the kick this leaves.
            let room = FEED_READ_MAX.saturating_sub(changed.len());
            changed.append(&mut guard.take_firsts(room));
            if !guard.firsts.is_empty() && guard.cursor.is_some() {
                kick.notify_one();
            }
            (changed, more)
        };
        wait = !more;
        if !changed.is_empty() {
            hand_out(inner, store.as_ref(), changed).await;
        }
    }
}

/// What one feed read means for the watchers: the cursor moves on, everyone
/// re-reads after a lost or first read; returns the watched orders that
/// changed, and whether more changes wait (a full answer).
fn after_read(
    guard: &mut Inner,
    since: Option<Cursor>,
    result: Result<stampede_core::Changes, crate::store::StoreError>,
) -> (BTreeSet<OrderId>, bool) {
    let mut more = false;
    let changed = match result {
        Ok(read) => {
            let mut changed = BTreeSet::new();
            if since.is_none() || !read.complete {
                // First cursor, or changes were lost: everyone re-reads.
                guard.wake_all();
            } else {
                changed.extend(
                    read.changes
                        .iter()
                        .map(|c| c.order)
                        .filter(|o| guard.watchers.contains_key(o)),
                );
                // A full answer: more are waiting, read on at once.
                more = read.changes.len() >= FEED_READ_MAX;
            }
            guard.cursor = Some(read.next);
            changed
        }
        // The feed could not be read: whoever could have been woken re-reads. With no
        // cursor yet nobody may read, so nobody is woken; the next read takes one.
        Err(_) => {
            if since.is_some() {
                guard.wake_all();
            }
            BTreeSet::new()
        }
    };
    (changed, more)
}

/// Reads the watched orders that changed (at most [`FEED_READ_MAX`], as one
/// feed read's changes are) in one call and hands each watcher its order;
/// the watchers of an order not read re-read it themselves.
async fn hand_out(inner: &Shared, store: &dyn Store, mut changed: BTreeSet<OrderId>) {
    let read = store.get_orders(changed.iter().copied().collect()).await;
    let guard = lock(inner);
    for order in read.unwrap_or_default() {
        guard.deliver(&order);
        changed.remove(&order.id);
    }
    for order in changed {
        guard.wake(order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u64) -> OrderId {
        OrderId::parse(&format!("ord_{n}")).expect("an order id")
    }

    /// A hub state with watchers on orders 1..=`watched` and all of 1..=`listed` on the list of
    /// first reads.
    fn inner(watched: u64, listed: u64, cursor: bool) -> Inner {
        let mut inner = Inner {
            cursor: cursor.then_some(Cursor { epoch: 1, seq: 7 }),
            ..Inner::default()
        };
        for n in 1..=watched {
            inner
                .watchers
                .entry(order(n))
                .or_default()
                .insert(n, Arc::new(Slot::default()));
        }
        inner.firsts.extend((1..=listed).map(order));
        inner
    }

    #[test]
    fn first_reads_are_taken_up_to_the_bound_and_only_with_a_cursor() {
        // Proves: at most `max` orders are taken (the bound on both sides: 2 of 5, then the
        // other 3 with room for exactly 3), in order; none with no room; none before the hub's
        // first cursor (they stay listed); an order nobody watches any more is dropped, not read.
        let mut hub = inner(5, 5, true);
        assert_eq!(hub.take_firsts(2), [order(1), order(2)].into());
        assert_eq!(hub.take_firsts(0), BTreeSet::new());
        assert_eq!(hub.take_firsts(3), [order(3), order(4), order(5)].into());
        assert!(hub.firsts.is_empty());

        let mut early = inner(2, 2, false);
        assert_eq!(early.take_firsts(FEED_READ_MAX), BTreeSet::new());
        assert_eq!(early.firsts.len(), 2, "kept for when the cursor comes");

        let mut gone = inner(1, 3, true);
        assert_eq!(gone.take_firsts(FEED_READ_MAX), [order(1)].into());
        assert!(gone.firsts.is_empty(), "unwatched orders dropped");
    }

    #[test]
    fn waking_everyone_empties_the_list_of_first_reads() {
        // Proves: after a lost feed every watcher reads for itself, so no first read is left
        // for the hub to make.
        let mut hub = inner(3, 3, true);
        hub.wake_all();
        assert!(hub.firsts.is_empty());
        for slot in hub.watchers.values().flat_map(BTreeMap::values) {
            assert!(
                slot.take().is_none(),
                "woken with nothing: read it yourself"
            );
        }
    }
}
