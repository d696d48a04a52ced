//! The change feed: a bounded ring of order status changes, so a watcher
//! learns what changed since it last looked instead of re-reading every order
//! it cares about.
//!
//! [`crate::ShopState`] appends one [`Change`] wherever an order gets a status
//! (created, or moved by `move_order`). Entries are numbered by a sequence
//! that only grows; the ring keeps the newest [`FEED_CAPACITY`]. A reader
//! holds a [`Cursor`] (the feed's epoch and the next sequence number it has
//! not read) and asks [`Feed::changes_since`]. The answer is *complete* when
//! nothing between the cursor and the head was lost; when the cursor fell off
//! the ring, or comes from another epoch (a state restored from an older
//! snapshot, where sequence numbers went backwards), the answer is
//! incomplete and the reader must re-read everything it watches.

use crate::ids::OrderId;
use crate::order::OrderStatus;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most changes the ring keeps; older ones are dropped as new ones arrive.
pub const FEED_CAPACITY: usize = 65_536;
/// Most changes one [`Feed::changes_since`] answer carries, whatever `max` asks.
pub const FEED_READ_MAX: usize = 4_096;

/// Where a reader is in one feed: the feed's epoch and the sequence number
/// of the first change it has not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The feed's epoch when the cursor was handed out.
    pub epoch: u64,
    /// The next sequence number to read.
    pub seq: u64,
}

/// One status an order was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the feed.
    pub seq: u64,
    /// Which order.
    pub order: OrderId,
    /// The status it now has.
    pub status: OrderStatus,
}

/// The answer to [`Feed::changes_since`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Changes after the cursor, oldest first (empty when incomplete).
    pub changes: Vec<Change>,
    /// The cursor to ask with next time.
    pub next: Cursor,
    /// `false`: changes since the cursor were lost (it fell off the ring or
    /// is not from this feed's epoch); re-read everything watched. `next` is
    /// then the head, taken in the same step.
    pub complete: bool,
}

/// The bounded ring of status changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    epoch: u64,
    next_seq: u64,
    entries: VecDeque<Change>,
    capacity: usize,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    /// An empty feed keeping [`FEED_CAPACITY`] changes.
    pub fn new() -> Feed {
        Feed::with_capacity(FEED_CAPACITY)
    }

    /// An empty feed keeping at most `capacity` changes (at least one).
    pub fn with_capacity(capacity: usize) -> Feed {
        Feed {
            epoch: 0,
            next_seq: 0,
            entries: VecDeque::new(),
            capacity: capacity.clamp(1, FEED_CAPACITY),
        }
    }

    /// The epoch: changes when the state is restored from a snapshot.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Changes kept right now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A cursor past the newest change: reading from it returns only what
    /// happens from now on.
    pub fn head(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            seq: self.next_seq,
        }
    }

    /// Records that `order` now has `status`, dropping the oldest change
    /// when the ring is full.
    pub fn push(&mut self, order: OrderId, status: OrderStatus) {
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Change {
            seq: self.next_seq,
            order,
            status,
        });
        self.next_seq += 1;
    }

    /// Moves this feed to an epoch after both its own and `other`, so every
    /// cursor handed out before (by this feed or by the one it replaces)
    /// reads as incomplete. Used when a snapshot replaces a live state.
    pub fn renew_epoch_after(&mut self, other: u64) {
        self.epoch = self.epoch.max(other).saturating_add(1);
    }

    /// Up to `max` (and at most [`FEED_READ_MAX`]) changes after `cursor`.
    pub fn changes_since(&self, cursor: Cursor, max: usize) -> Changes {
        let oldest = self.next_seq - self.entries.len() as u64;
        if cursor.epoch != self.epoch || cursor.seq < oldest || cursor.seq > self.next_seq {
            return Changes {
                changes: Vec::new(),
                next: self.head(),
                complete: false,
            };
        }
        let skip = usize::try_from(cursor.seq - oldest).unwrap_or(usize::MAX);
        let changes: Vec<Change> = self
            .entries
            .iter()
            .skip(skip)
            .take(max.min(FEED_READ_MAX))
            .copied()
            .collect();
        Changes {
            next: Cursor {
                epoch: self.epoch,
                seq: cursor.seq + changes.len() as u64,
            },
            changes,
            complete: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_of(capacity: usize, n: u64) -> Feed {
        let mut feed = Feed::with_capacity(capacity);
        for i in 0..n {
            feed.push(OrderId(i + 1), OrderStatus::Created);
        }
        feed
    }

    fn orders(changes: &Changes) -> Vec<u64> {
        changes.changes.iter().map(|c| c.order.0).collect()
    }

    #[test]
    fn a_cursor_reads_what_came_after_it_and_the_head_reads_nothing_old() {
        // Proves: changes after a cursor come back in order with the next cursor past them, and
        // a head cursor sees only later changes.
        assert!(feed_of(8, 0).is_empty());
        let mut feed = feed_of(8, 3);
        assert!(!feed.is_empty());
        assert_eq!(feed.len(), 3);
        let start = Cursor { epoch: 0, seq: 0 };
        let all = feed.changes_since(start, 100);
        assert!(all.complete);
        assert_eq!(orders(&all), vec![1, 2, 3]);
        assert_eq!(all.next, feed.head());
        let head = feed.head();
        assert_eq!(feed.changes_since(head, 100).changes, vec![]);
        feed.push(OrderId(9), OrderStatus::Paid);
        let later = feed.changes_since(head, 100);
        assert!(later.complete);
        assert_eq!(
            later.changes,
            vec![Change {
                seq: 3,
                order: OrderId(9),
                status: OrderStatus::Paid
            }]
        );
    }

    #[test]
    fn the_ring_keeps_exactly_its_capacity_and_an_older_cursor_is_incomplete() {
        // Proves: at the ring bound the oldest kept change is still readable (complete), one
        // change further back it is not (incomplete, next = head), and the ring never holds more
        // than its capacity.
        let feed = feed_of(4, 4);
        assert_eq!(feed.len(), 4);
        let from_start = feed.changes_since(Cursor { epoch: 0, seq: 0 }, 100);
        assert!(from_start.complete);
        assert_eq!(orders(&from_start), vec![1, 2, 3, 4]);

        let feed = feed_of(4, 5);
        assert_eq!(feed.len(), 4);
        let lost = feed.changes_since(Cursor { epoch: 0, seq: 0 }, 100);
        assert!(!lost.complete);
        assert!(lost.changes.is_empty());
        assert_eq!(lost.next, feed.head());
        let oldest_kept = feed.changes_since(Cursor { epoch: 0, seq: 1 }, 100);
        assert!(oldest_kept.complete);
        assert_eq!(orders(&oldest_kept), vec![2, 3, 4, 5]);
    }

    #[test]
    fn the_default_ring_bound_is_the_named_capacity() {
        // Proves: the default feed keeps FEED_CAPACITY changes and no more.
        let mut feed = Feed::new();
        for i in 0..FEED_CAPACITY as u64 + 1 {
            feed.push(OrderId(i), OrderStatus::Created);
        }
        assert_eq!(feed.len(), FEED_CAPACITY);
        assert!(feed.changes_since(Cursor { epoch: 0, seq: 1 }, 1).complete);
        assert!(!feed.changes_since(Cursor { epoch: 0, seq: 0 }, 1).complete);
    }

    #[test]
    fn a_cursor_from_another_epoch_or_the_future_is_incomplete() {
        // Proves: after the epoch is renewed (a restored snapshot), every earlier cursor — even
        // one whose seq exists in the restored feed — reads as incomplete; so does a seq past the
        // head; and the renewed epoch is past both sides.
        let mut live = feed_of(8, 5);
        let old_cursor = Cursor { epoch: 0, seq: 2 };
        let mut restored = feed_of(8, 3);
        restored.renew_epoch_after(live.epoch());
        assert_eq!(restored.epoch(), 1);
        let read = restored.changes_since(old_cursor, 100);
        assert!(!read.complete);
        assert_eq!(read.next, restored.head());
        assert!(restored.changes_since(restored.head(), 100).complete);
        // A restore of a state newer in epoch than the live one still moves past both.
        live.renew_epoch_after(7);
        assert_eq!(live.epoch(), 8);
        let future = Cursor {
            epoch: live.epoch(),
            seq: live.head().seq + 1,
        };
        assert!(!live.changes_since(future, 100).complete);
    }

    #[test]
    fn an_answer_carries_at_most_max_changes_and_the_rest_comes_next() {
        // Proves: `max` bounds an answer on both sides (max returned when more exist, all when
        // fewer), the next cursor continues where it stopped, and FEED_READ_MAX caps any `max`.
        let feed = feed_of(8, 5);
        let first = feed.changes_since(Cursor { epoch: 0, seq: 0 }, 2);
        assert_eq!(orders(&first), vec![1, 2]);
        let rest = feed.changes_since(first.next, 5);
        assert_eq!(orders(&rest), vec![3, 4, 5]);
        assert_eq!(rest.next, feed.head());
        assert!(feed.changes_since(rest.next, 0).changes.is_empty());

        let big = feed_of(FEED_CAPACITY, FEED_READ_MAX as u64 + 1);
        let capped = big.changes_since(Cursor { epoch: 0, seq: 0 }, usize::MAX);
        assert_eq!(capped.changes.len(), FEED_READ_MAX);
        let exact = big.changes_since(Cursor { epoch: 0, seq: 1 }, usize::MAX);
        assert_eq!(exact.changes.len(), FEED_READ_MAX);
        assert_eq!(exact.next, big.head());
    }

    #[test]
    fn the_shop_feeds_every_status_an_order_is_given_and_nothing_for_a_no_op() {
        // Proves: ShopState appends a change where an order is created (placed or raw-created)
        // and at each move, in order; a step that changes nothing appends nothing; `None` reads the head.
        use crate::{
            Catalog, Cause, Cents, CustomerId, IdempotencyKey, ItemRequest, Millis, PlaceOrder,
            Placed, Product, ShopConfig, ShopState, Sku,
        };
        let hat = Sku::new("hat").unwrap();
        let catalog = Catalog::new([Product {
            sku: hat.clone(),
            name: "Hat".into(),
            price: Cents(1_000),
            max_qty_per_order: 5,
            per_customer_limit: None,
        }]);
        let mut shop = ShopState::new(catalog, ShopConfig::default());
        shop.stock(&hat, 10, 1).unwrap();
        let head = shop.changes_since(None, 10);
        assert!(head.complete && head.changes.is_empty());
        let request = |key: &str| PlaceOrder {
            key: Some(IdempotencyKey::new(key).unwrap()),
            customer: CustomerId::new("alice").unwrap(),
            items: vec![ItemRequest {
                sku: hat.clone(),
                qty: 1,
            }],
            express: false,
        };
        let Placed::Created { order, .. } = shop.place_order(&request("k-1"), Millis(0)).unwrap()
        else {
            panic!("placed")
        };
        let (raw, _) = shop
            .raw_create_order(&request("k-2"), None, false, Millis(0))
            .unwrap();
        shop.reserve(order, Millis(1), Cause::Customer).unwrap();
        shop.cancel(order, Millis(2)).unwrap();
        let before = shop.feed().head();
        // A redelivered reserve and a second cancel change nothing, so add nothing.
        let _ = shop.reserve(order, Millis(3), Cause::Customer);
        let _ = shop.cancel(order, Millis(3));
        assert_eq!(shop.feed().head(), before);
        let read = shop.changes_since(Some(head.next), 10);
        assert!(read.complete);
        let seen: Vec<_> = read.changes.iter().map(|c| (c.order, c.status)).collect();
        assert_eq!(
            seen,
            vec![
                (order, OrderStatus::Created),
                (raw, OrderStatus::Created),
                (order, OrderStatus::InventoryReserved),
                (
                    order,
                    OrderStatus::Cancelled(crate::CancelReason::ByCustomer)
                ),
            ]
        );
    }
}
