//! Inventory as reservations.
//!
//! Per SKU the stock is split into `available`, `reserved` and `sold`, and
//! `available + reserved + sold == received` holds after every operation (it is
//! asserted in debug builds and exposed as [`Inventory::check_conservation`]).
//! A reservation is all-or-nothing across an order's lines and conditional on
//! `available >= qty`; it may carry a TTL after which [`Inventory::expire_due`]
//! releases it. A hot SKU can be split into N segments (sub-counters) so a
//! store can lock them independently; a reservation then draws from segments
//! starting at a caller-supplied hint.

use crate::ids::{OrderId, ReservationId, Sku};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most segments one SKU may be split into.
pub const SEGMENTS_MAX: usize = 64;

/// Stock counters for one SKU (or one segment of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Everything ever put on the shelf.
    pub received: u64,
    /// Free to reserve.
    pub available: u64,
    /// Held by live reservations.
    pub reserved: u64,
    /// Committed to paid orders.
    pub sold: u64,
}

impl StockLevel {
    /// `available + reserved + sold == received`, computed without overflow.
    pub fn is_conserved(&self) -> bool {
        u128::from(self.available) + u128::from(self.reserved) + u128::from(self.sold)
            == u128::from(self.received)
    }

    fn plus(self, other: StockLevel) -> StockLevel {
        StockLevel {
            received: self.received.saturating_add(other.received),
            available: self.available.saturating_add(other.available),
            reserved: self.reserved.saturating_add(other.reserved),
            sold: self.sold.saturating_add(other.sold),
        }
    }
}

/// Units of one SKU taken from one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The SKU.
    pub sku: Sku,
    /// Which segment of it.
    pub segment: usize,
    /// How many units.
    pub qty: u64,
}

/// Stock held for one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The reservation id.
    pub id: ReservationId,
    /// The order it holds stock for.
    pub order: OrderId,
    /// What it holds, per segment.
    pub allocations: Vec<Allocation>,
    /// When it was made.
    pub created_at: Millis,
    /// When it lapses; `None` means never (the naive no-TTL design, or pinned).
    pub expires_at: Option<Millis>,
    /// Held for a paid order: it will be sold, never released by expiry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

impl Reservation {
    /// Units of `sku` held.
    pub fn qty_of(&self, sku: &Sku) -> u64 {
        self.allocations
            .iter()
            .filter(|a| &a.sku == sku)
            .map(|a| a.qty)
            .sum()
    }
}

/// Why an inventory operation did nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum InventoryError {
    /// Not enough available stock for a line; nothing was reserved.
    #[error("out of stock: {sku} has {available} available, {requested} requested")]
    OutOfStock {
        /// The short SKU.
        sku: Sku,
        /// Units asked for.
        requested: u64,
        /// Units available at the time.
        available: u64,
    },
    /// A SKU the inventory does not stock.
    #[error("sku {0} is not stocked")]
    UnknownSku(Sku),
    /// No live reservation with this id (already released, committed or expired).
    #[error("no live reservation {0}")]
    UnknownReservation(ReservationId),
    /// A counter would overflow.
    #[error("stock counter overflow on {0}")]
    Overflow(Sku),
    /// A segment count of zero or above [`SEGMENTS_MAX`].
    #[error("segments must be between 1 and {SEGMENTS_MAX}, got {0}")]
    BadSegments(usize),
}

/// A broken conservation equation, with the numbers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("stock not conserved for {sku} segment {segment}: {level:?}")]
pub struct ConservationBroken {
    /// The SKU.
    pub sku: Sku,
    /// The segment.
    pub segment: usize,
    /// Its counters.
    pub level: StockLevel,
}

/// All stock and all live reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    skus: BTreeMap<Sku, Vec<StockLevel>>,
    reservations: BTreeMap<ReservationId, Reservation>,
    expiry: BTreeSet<(Millis, ReservationId)>,
    /// Units held by pinned reservations, per SKU (no zero entries): `reserved`
    /// minus these is what may still come back to the shelf.
    #[serde(default)]
    pinned: BTreeMap<Sku, u64>,
    next_reservation: u64,
    /// Set once a naive primitive has run: conservation may then be broken on
    /// purpose (for the checker to find), so the internal assertions stand down.
    tainted: bool,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// Stocks `sku` with `qty` units split over `segments` sub-counters
    /// (1 for an ordinary SKU). Adding an existing SKU is a restock.
    pub fn add_sku(&mut self, sku: Sku, qty: u64, segments: usize) -> Result<(), InventoryError> {
        if segments == 0 || segments > SEGMENTS_MAX {
            return Err(InventoryError::BadSegments(segments));
        }
        if !self.skus.contains_key(&sku) {
            self.skus
                .insert(sku.clone(), vec![StockLevel::default(); segments]);
        }
        self.restock(&sku, qty)
    }

    /// Raises the reservation counter to at least `other`'s, so an inventory
    /// restored from an older copy of `other` never reuses a reservation id.
    pub fn keep_ids_past(&mut self, other: &Inventory) {
        self.next_reservation = self.next_reservation.max(other.next_reservation);
    }

    /// Puts `qty` more units on the shelf, spread evenly over the segments.
    pub fn restock(&mut self, sku: &Sku, qty: u64) -> Result<(), InventoryError> {
        let segs = self
            .skus
            .get_mut(sku)
            .ok_or_else(|| InventoryError::UnknownSku(sku.clone()))?;
        let n = segs.len() as u64;
        let overflow = || InventoryError::Overflow(sku.clone());
        // Check every counter first so a failed restock changes nothing.
        for (i, seg) in segs.iter().enumerate() {
            let share = qty / n + u64::from((i as u64) < qty % n);
            seg.received.checked_add(share).ok_or_else(overflow)?;
            seg.available.checked_add(share).ok_or_else(overflow)?;
        }
        for (i, seg) in segs.iter_mut().enumerate() {
            let share = qty / n + u64::from((i as u64) < qty % n);
            seg.received += share;
            seg.available += share;
        }
        debug_assert!(self.tainted || segs.iter().all(StockLevel::is_conserved));
        Ok(())
    }

    /// The summed counters of `sku`.
    pub fn level(&self, sku: &Sku) -> Option<StockLevel> {
        self.skus
            .get(sku)
            .map(|segs| segs.iter().fold(StockLevel::default(), |a, s| a.plus(*s)))
    }

    /// Summed counters of every SKU, in SKU order.
    pub fn levels(&self) -> BTreeMap<Sku, StockLevel> {
        self.skus
            .keys()
            .map(|sku| (sku.clone(), self.level(sku).unwrap_or_default()))
            .collect()
    }

    /// How many segments `sku` has.
    pub fn segments(&self, sku: &Sku) -> usize {
        self.skus.get(sku).map_or(0, Vec::len)
    }

    /// Atomically reserves every line for `order`, or nothing at all.
    ///
    /// `ttl_ms` of `None` makes a reservation that never expires. `hint`
    /// chooses the first segment to draw from (e.g. the order id), spreading
    /// contention over a segmented SKU.
    pub fn reserve(
        &mut self,
        order: OrderId,
        lines: &[(Sku, u64)],
        now: Millis,
        ttl_ms: Option<u64>,
        hint: u64,
    ) -> Result<ReservationId, InventoryError> {
        for (sku, qty) in lines {
            let segs = self
                .skus
                .get(sku)
                .ok_or_else(|| InventoryError::UnknownSku(sku.clone()))?;
            let available: u64 = segs.iter().map(|s| s.available).sum();
            if available < *qty {
                return Err(InventoryError::OutOfStock {
                    sku: sku.clone(),
                    requested: *qty,
                    available,
                });
            }
        }
        let self_tainted = self.tainted;
        let mut allocations = Vec::with_capacity(lines.len());
        for (sku, qty) in lines {
            let segs = self.skus.get_mut(sku).expect("checked above");
            let n = segs.len();
            let mut remaining = *qty;
            for step in 0..n {
                if remaining == 0 {
                    break;
                }
                let segment = (hint as usize).wrapping_add(step) % n;
                let seg = &mut segs[segment];
                let take = remaining.min(seg.available);
                if take == 0 {
                    continue;
                }
                seg.available -= take;
                seg.reserved += take;
                remaining -= take;
                allocations.push(Allocation {
                    sku: sku.clone(),
                    segment,
                    qty: take,
                });
                debug_assert!(self_tainted || seg.is_conserved());
            }
            assert_eq!(remaining, 0, "availability was checked before allocating");
        }
        Ok(self.insert_reservation(order, allocations, now, ttl_ms))
    }

    /// Records a reservation (and its expiry, if it has a TTL) and returns its id.
    fn insert_reservation(
        &mut self,
        order: OrderId,
        allocations: Vec<Allocation>,
        now: Millis,
        ttl_ms: Option<u64>,
    ) -> ReservationId {
        self.next_reservation += 1;
        let id = ReservationId(self.next_reservation);
        let expires_at = ttl_ms.map(|ttl| now.plus_ms(ttl));
        if let Some(at) = expires_at {
            self.expiry.insert((at, id));
        }
        let reservation = Reservation {
            id,
            order,
            allocations,
            created_at: now,
            expires_at,
            pinned: false,
        };
        self.reservations.insert(id, reservation);
        id
    }

    /// Removes a reservation's TTL and marks it pinned: once its order is
    /// paid the stock must not lapse back to `available`. Pinning twice is a no-op.
    pub fn pin(&mut self, id: ReservationId) -> Result<(), InventoryError> {
        let reservation = self
            .reservations
            .get_mut(&id)
            .ok_or(InventoryError::UnknownReservation(id))?;
        if let Some(at) = reservation.expires_at.take() {
            self.expiry.remove(&(at, id));
        }
        if !reservation.pinned {
            reservation.pinned = true;
            for a in &reservation.allocations {
                let units = self.pinned.entry(a.sku.clone()).or_default();
                *units = units.saturating_add(a.qty);
            }
        }
        Ok(())
    }

    /// Restarts a lapsing reservation's hold at `now`: it expires `ttl_ms`
    /// from now, never sooner than it already would. Pinned reservations and
    /// ones without a TTL are left alone.
    pub fn renew(
        &mut self,
        id: ReservationId,
        now: Millis,
        ttl_ms: u64,
    ) -> Result<(), InventoryError> {
        let reservation = self
            .reservations
            .get_mut(&id)
            .ok_or(InventoryError::UnknownReservation(id))?;
        let Some(old) = reservation.expires_at else {
            return Ok(());
        };
        let renewed = now.plus_ms(ttl_ms).max(old);
        if renewed != old {
            self.expiry.remove(&(old, id));
            self.expiry.insert((renewed, id));
            reservation.expires_at = Some(renewed);
        }
        Ok(())
    }

    /// Units of `sku` held by reservations no paid order pinned: they go back
    /// on the shelf if their order is cancelled or its hold lapses, so they
    /// are held, not sold.
    pub fn held_unpinned(&self, sku: &Sku) -> u64 {
        let reserved = self.level(sku).map_or(0, |l| l.reserved);
        reserved.saturating_sub(self.pinned.get(sku).copied().unwrap_or(0))
    }

    /// Returns a reservation's units to `available`.
    pub fn release(&mut self, id: ReservationId) -> Result<Reservation, InventoryError> {
        self.settle(id, |seg, qty| seg.available += qty)
    }

    /// Moves a reservation's units to `sold`.
    pub fn commit(&mut self, id: ReservationId) -> Result<Reservation, InventoryError> {
        self.settle(id, |seg, qty| seg.sold += qty)
    }

    fn settle(
        &mut self,
        id: ReservationId,
        to: impl Fn(&mut StockLevel, u64),
    ) -> Result<Reservation, InventoryError> {
        let reservation = self
            .reservations
            .remove(&id)
            .ok_or(InventoryError::UnknownReservation(id))?;
        if let Some(at) = reservation.expires_at {
            self.expiry.remove(&(at, id));
        }
        if reservation.pinned {
            for a in &reservation.allocations {
                if let Some(units) = self.pinned.get_mut(&a.sku) {
                    *units = units.saturating_sub(a.qty);
                    if *units == 0 {
                        self.pinned.remove(&a.sku);
                    }
                }
            }
        }
        let self_tainted = self.tainted;
        for a in &reservation.allocations {
            let seg = &mut self.skus.get_mut(&a.sku).expect("reserved sku exists")[a.segment];
            assert!(
                self_tainted || seg.reserved >= a.qty,
                "reserved underflow on {}",
                a.sku
            );
            seg.reserved = seg.reserved.saturating_sub(a.qty);
            to(seg, a.qty);
            debug_assert!(self_tainted || seg.is_conserved());
        }
        Ok(reservation)
    }

    /// Naive primitive: reserves `lines` for `order` without checking
    /// availability, from segment 0. With `observed` (what the caller read
    /// before awaiting), `available` is written back as `observed - qty`: the
    /// lost update of a read-then-write. Without it, `available` saturates at
    /// zero. Either way `reserved` grows by `qty`, so stock can exceed what
    /// was received — that is the point.
    pub fn force_reserve(
        &mut self,
        order: OrderId,
        lines: &[(Sku, u64)],
        observed: Option<&[u64]>,
        now: Millis,
        ttl_ms: Option<u64>,
    ) -> Result<ReservationId, InventoryError> {
        for (sku, _) in lines {
            if !self.skus.contains_key(sku) {
                return Err(InventoryError::UnknownSku(sku.clone()));
            }
        }
        self.tainted = true;
        let mut allocations = Vec::with_capacity(lines.len());
        for (i, (sku, qty)) in lines.iter().enumerate() {
            let seg = &mut self.skus.get_mut(sku).expect("checked")[0];
            seg.available = match observed.and_then(|o| o.get(i)) {
                Some(seen) => seen.saturating_sub(*qty),
                None => seg.available.saturating_sub(*qty),
            };
            seg.reserved = seg.reserved.saturating_add(*qty);
            allocations.push(Allocation {
                sku: sku.clone(),
                segment: 0,
                qty: *qty,
            });
        }
        Ok(self.insert_reservation(order, allocations, now, ttl_ms))
    }

    /// Test-only breakage: counts `lines` as sold straight from the counters
    /// of segment 0, without a reservation, so tests can craft books that
    /// conservation must reject.
    #[cfg(test)]
    fn force_sell(&mut self, lines: &[(Sku, u64)]) {
        self.tainted = true;
        for (sku, qty) in lines {
            if let Some(segs) = self.skus.get_mut(sku) {
                let seg = &mut segs[0];
                seg.reserved = seg.reserved.saturating_sub(*qty);
                seg.sold = seg.sold.saturating_add(*qty);
            }
        }
    }

    /// Releases up to `max` reservations whose TTL has passed at `now`,
    /// soonest first, and returns them.
    pub fn expire_due(&mut self, now: Millis, max: usize) -> Vec<Reservation> {
        let due: Vec<ReservationId> = self
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| *id)
            .collect();
        due.into_iter()
            .map(|id| {
                self.release(id)
                    .expect("expiry index only names live reservations")
            })
            .collect()
    }

    /// When the soonest-lapsing reservation of any SKU expires (pinned and
    /// TTL-less ones never do); `None` if none will. The sweeper sleeps until then.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Ids of reservations whose TTL has passed at `now`, soonest first, without releasing them.
    pub fn due(&self, now: Millis) -> impl Iterator<Item = ReservationId> + '_ {
        self.expiry
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|(_, id)| *id)
    }

    /// A live reservation.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// Every live reservation, in id order.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// Checks `available + reserved + sold == received` on every segment, and
    /// that the live reservations add up to the `reserved` counters.
    pub fn check_conservation(&self) -> Result<(), ConservationBroken> {
        let mut held: BTreeMap<(&Sku, usize), u64> = BTreeMap::new();
        for a in self.reservations.values().flat_map(|r| &r.allocations) {
            *held.entry((&a.sku, a.segment)).or_default() += a.qty;
        }
        for (sku, segs) in &self.skus {
            for (segment, level) in segs.iter().enumerate() {
                let reserved_by_reservations = held.get(&(sku, segment)).copied().unwrap_or(0);
                if !level.is_conserved() || level.reserved != reserved_by_reservations {
                    return Err(ConservationBroken {
                        sku: sku.clone(),
                        segment,
                        level: *level,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    fn stocked(qty: u64, segments: usize) -> Inventory {
        let mut inv = Inventory::new();
        inv.add_sku(sku("hot"), qty, segments).unwrap();
        inv.add_sku(sku("cold"), 5, 1).unwrap();
        inv
    }

    #[test]
    fn next_expiry_is_the_soonest_lapsing_hold_of_any_sku() {
        // Proves: `next_expiry` names the earliest expiry across SKUs, skips TTL-less and
        // pinned holds, moves on when the soonest one is released, and is `None` with none left.
        let mut inv = stocked(3, 1);
        assert_eq!(inv.next_expiry(), None);
        inv.reserve(OrderId(1), &[(sku("hot"), 1)], Millis(0), None, 0)
            .unwrap();
        assert_eq!(inv.next_expiry(), None, "a hold without a TTL never lapses");
        let late = inv
            .reserve(OrderId(2), &[(sku("hot"), 1)], Millis(0), Some(300), 0)
            .unwrap();
        let soon = inv
            .reserve(OrderId(3), &[(sku("cold"), 1)], Millis(0), Some(100), 0)
            .unwrap();
        assert_eq!(inv.next_expiry(), Some(Millis(100)));
        inv.release(soon).unwrap();
        assert_eq!(inv.next_expiry(), Some(Millis(300)));
        inv.pin(late).unwrap();
        assert_eq!(inv.next_expiry(), None, "a pinned hold never lapses");
    }

    #[test]
    fn renew_restarts_a_lapsing_hold_but_never_shortens_it() {
        // Proves: renewing at t=60 with a 100 ms TTL moves the expiry from 100 to 160 (not due at
        // 159, due at 160); renewing to an earlier time keeps the later expiry; a pinned
        // reservation stays without an expiry; an unknown one is an error.
        let mut inv = stocked(3, 1);
        let id = inv
            .reserve(OrderId(1), &[(sku("hot"), 1)], Millis(0), Some(100), 0)
            .unwrap();
        inv.renew(id, Millis(60), 100).unwrap();
        assert_eq!(inv.reservation(id).unwrap().expires_at, Some(Millis(160)));
        assert_eq!(inv.due(Millis(159)).count(), 0);
        assert_eq!(inv.due(Millis(160)).collect::<Vec<_>>(), vec![id]);
        inv.renew(id, Millis(10), 100).unwrap();
        assert_eq!(inv.reservation(id).unwrap().expires_at, Some(Millis(160)));
        assert_eq!(inv.next_expiry(), Some(Millis(160)));
        inv.pin(id).unwrap();
        inv.renew(id, Millis(200), 100).unwrap();
        assert_eq!(inv.reservation(id).unwrap().expires_at, None);
        assert_eq!(inv.due(Millis(10_000)).count(), 0);
        assert!(matches!(
            inv.renew(ReservationId(99), Millis(0), 1),
            Err(InventoryError::UnknownReservation(_))
        ));
    }

    #[test]
    fn reserve_is_conditional_and_all_or_nothing() {
        let mut inv = stocked(3, 1);
        let err = inv
            .reserve(
                OrderId(1),
                &[(sku("cold"), 1), (sku("hot"), 4)],
                Millis(0),
                Some(1000),
                0,
            )
            .unwrap_err();
        assert_eq!(
            err,
            InventoryError::OutOfStock {
                sku: sku("hot"),
                requested: 4,
                available: 3
            }
        );
        // The cold line was not taken either.
        assert_eq!(inv.level(&sku("cold")).unwrap().available, 5);
        let id = inv
            .reserve(
                OrderId(1),
                &[(sku("cold"), 1), (sku("hot"), 3)],
                Millis(0),
                Some(1000),
                0,
            )
            .unwrap();
        assert_eq!(inv.level(&sku("hot")).unwrap().reserved, 3);
        assert_eq!(inv.reservation(id).unwrap().qty_of(&sku("hot")), 3);
        inv.check_conservation().unwrap();
    }

    #[test]
    fn commit_sells_and_release_returns_stock_exactly_once() {
        let mut inv = stocked(10, 1);
        let a = inv
            .reserve(OrderId(1), &[(sku("hot"), 4)], Millis(0), None, 0)
            .unwrap();
        let b = inv
            .reserve(OrderId(2), &[(sku("hot"), 5)], Millis(0), None, 0)
            .unwrap();
        inv.commit(a).unwrap();
        inv.release(b).unwrap();
        assert_eq!(
            inv.level(&sku("hot")).unwrap(),
            StockLevel {
                received: 10,
                available: 6,
                reserved: 0,
                sold: 4
            }
        );
        assert_eq!(inv.release(b), Err(InventoryError::UnknownReservation(b)));
        assert_eq!(inv.commit(a), Err(InventoryError::UnknownReservation(a)));
        inv.check_conservation().unwrap();
    }

    #[test]
    fn expiry_releases_only_what_is_due_and_never_ttl_less_reservations() {
        let mut inv = stocked(10, 1);
        let short = inv
            .reserve(OrderId(1), &[(sku("hot"), 1)], Millis(0), Some(100), 0)
            .unwrap();
        let long = inv
            .reserve(OrderId(2), &[(sku("hot"), 2)], Millis(0), Some(500), 0)
            .unwrap();
        let never = inv
            .reserve(OrderId(3), &[(sku("hot"), 3)], Millis(0), None, 0)
            .unwrap();
        assert!(inv.expire_due(Millis(99), 10).is_empty());
        let expired = inv.expire_due(Millis(100), 10);
        assert_eq!(
            expired.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![short]
        );
        assert_eq!(inv.expire_due(Millis(10_000), 10).len(), 1);
        assert!(inv.reservation(long).is_none());
        assert!(inv.reservation(never).is_some());
        assert_eq!(inv.level(&sku("hot")).unwrap().reserved, 3);
        inv.check_conservation().unwrap();
    }

    #[test]
    fn a_committed_reservation_does_not_expire_later() {
        let mut inv = stocked(10, 1);
        let id = inv
            .reserve(OrderId(1), &[(sku("hot"), 1)], Millis(0), Some(100), 0)
            .unwrap();
        inv.commit(id).unwrap();
        assert!(inv.expire_due(Millis(1_000), 10).is_empty());
        assert_eq!(inv.level(&sku("hot")).unwrap().sold, 1);
    }

    #[test]
    fn segmented_stock_spreads_and_can_span_segments() {
        let mut inv = stocked(10, 4);
        assert_eq!(inv.segments(&sku("hot")), 4);
        // 10 over 4 segments: 3,3,2,2
        let id = inv
            .reserve(OrderId(1), &[(sku("hot"), 5)], Millis(0), None, 3)
            .unwrap();
        let r = inv.reservation(id).unwrap();
        assert_eq!(
            r.allocations
                .iter()
                .map(|a| (a.segment, a.qty))
                .collect::<Vec<_>>(),
            vec![(3, 2), (0, 3)]
        );
        assert!(
            inv.reserve(OrderId(2), &[(sku("hot"), 6)], Millis(0), None, 0)
                .is_err()
        );
        inv.reserve(OrderId(2), &[(sku("hot"), 5)], Millis(0), None, 0)
            .unwrap();
        assert_eq!(inv.level(&sku("hot")).unwrap().available, 0);
        inv.check_conservation().unwrap();
    }

    #[test]
    fn bad_segment_counts_and_unknown_skus_are_errors() {
        let mut inv = Inventory::new();
        assert_eq!(
            inv.add_sku(sku("x"), 1, 0),
            Err(InventoryError::BadSegments(0))
        );
        assert_eq!(
            inv.add_sku(sku("x"), 1, SEGMENTS_MAX + 1),
            Err(InventoryError::BadSegments(SEGMENTS_MAX + 1))
        );
        assert_eq!(
            inv.restock(&sku("x"), 1),
            Err(InventoryError::UnknownSku(sku("x")))
        );
        assert!(matches!(
            inv.reserve(OrderId(1), &[(sku("x"), 1)], Millis(0), None, 0),
            Err(InventoryError::UnknownSku(_))
        ));
    }

    #[test]
    fn a_restock_that_would_overflow_changes_nothing() {
        let mut inv = Inventory::new();
        inv.add_sku(sku("x"), u64::MAX - 1, 1).unwrap();
        assert_eq!(
            inv.restock(&sku("x"), 2),
            Err(InventoryError::Overflow(sku("x")))
        );
        assert_eq!(inv.level(&sku("x")).unwrap().received, u64::MAX - 1);
    }

    #[test]
    fn conservation_is_judged_on_both_sides_and_without_overflow() {
        // Proves: `is_conserved` holds exactly when available + reserved + sold == received,
        // one unit more or less on any counter breaks it, and huge counters do not wrap.
        let level = StockLevel {
            received: 10,
            available: 3,
            reserved: 3,
            sold: 4,
        };
        assert!(level.is_conserved());
        assert!(!StockLevel { sold: 5, ..level }.is_conserved());
        assert!(!StockLevel { sold: 3, ..level }.is_conserved());
        let wraps = StockLevel {
            received: 0,
            available: u64::MAX,
            reserved: 1,
            sold: 0,
        };
        assert!(!wraps.is_conserved(), "u64::MAX + 1 must not wrap to 0");
    }

    #[test]
    fn check_conservation_reports_a_lost_update_on_the_counters() {
        // Proves: a read-then-write reservation that writes back a stale `available` (more units
        // than exist) is reported, naming the SKU and segment.
        let mut inv = stocked(5, 1);
        inv.reserve(OrderId(1), &[(sku("hot"), 2)], Millis(0), None, 0)
            .unwrap();
        inv.force_reserve(OrderId(2), &[(sku("hot"), 1)], Some(&[5]), Millis(0), None)
            .unwrap();
        let broken = inv.check_conservation().unwrap_err();
        assert_eq!((broken.sku, broken.segment), (sku("hot"), 0));
        assert!(!broken.level.is_conserved());
    }

    #[test]
    fn check_conservation_reports_reserved_counters_no_reservation_explains() {
        // Proves: counters that add up but whose `reserved` differs from what live reservations
        // hold (units sold from under a reservation) are reported too.
        let mut inv = stocked(5, 1);
        inv.reserve(OrderId(1), &[(sku("cold"), 2)], Millis(0), None, 0)
            .unwrap();
        inv.force_sell(&[(sku("cold"), 2)]);
        let broken = inv.check_conservation().unwrap_err();
        assert!(broken.level.is_conserved(), "{:?}", broken.level);
        assert_eq!(broken.sku, sku("cold"));
        assert_eq!(broken.level.reserved, 0);
    }

    #[test]
    fn a_restock_spreads_the_remainder_over_the_first_segments() {
        // Proves: 7 units over 3 segments are 3, 2, 2: a reservation of 3 from segment 0 takes it
        // all there, one of 3 from segment 1 needs segment 2 too.
        let mut inv = stocked(7, 3);
        let a = inv
            .reserve(OrderId(1), &[(sku("hot"), 3)], Millis(0), None, 0)
            .unwrap();
        assert_eq!(inv.reservation(a).unwrap().allocations.len(), 1);
        let b = inv
            .reserve(OrderId(2), &[(sku("hot"), 3)], Millis(0), None, 1)
            .unwrap();
        let spread: Vec<_> = inv
            .reservation(b)
            .unwrap()
            .allocations
            .iter()
            .map(|a| (a.segment, a.qty))
            .collect();
        assert_eq!(spread, vec![(1, 2), (2, 1)]);
        assert_eq!(inv.level(&sku("hot")).unwrap().received, 7);
    }

    #[test]
    fn pin_keeps_a_paid_reservation_from_expiring() {
        // Proves: a pinned reservation is never due, its stock stays reserved past its TTL, and
        // pinning an unknown reservation is an error.
        let mut inv = stocked(5, 1);
        let id = inv
            .reserve(OrderId(1), &[(sku("hot"), 2)], Millis(0), Some(100), 0)
            .unwrap();
        inv.pin(id).unwrap();
        assert_eq!(inv.due(Millis(1_000)).count(), 0);
        assert!(inv.expire_due(Millis(1_000), 10).is_empty());
        assert_eq!(inv.level(&sku("hot")).unwrap().reserved, 2);
        assert_eq!(
            inv.pin(ReservationId(99)),
            Err(InventoryError::UnknownReservation(ReservationId(99)))
        );
    }

    #[test]
    fn held_unpinned_counts_what_could_still_come_back_and_pinning_removes_it() {
        // Proves: units held by unpaid reservations count as returnable until their reservation
        // is pinned; pinning twice counts once; commit and release of a pinned reservation leave
        // no pinned units behind; the soonest expiry skips a pinned hold, and a pinned or
        // TTL-less hold has none.
        let mut inv = stocked(10, 2);
        let a = inv
            .reserve(OrderId(1), &[(sku("hot"), 3)], Millis(0), Some(500), 0)
            .unwrap();
        let b = inv
            .reserve(
                OrderId(2),
                &[(sku("hot"), 4), (sku("cold"), 1)],
                Millis(0),
                Some(200),
                1,
            )
            .unwrap();
        let never = inv
            .reserve(OrderId(3), &[(sku("cold"), 2)], Millis(0), None, 0)
            .unwrap();
        assert_eq!(inv.held_unpinned(&sku("hot")), 7);
        assert_eq!(inv.next_expiry(), Some(Millis(200)));
        inv.pin(b).unwrap();
        inv.pin(b).unwrap();
        assert!(inv.reservation(b).unwrap().pinned);
        assert_eq!(
            inv.held_unpinned(&sku("hot")),
            3,
            "b's 4 units are pinned, once"
        );
        assert_eq!(inv.held_unpinned(&sku("cold")), 2, "only the TTL-less hold");
        assert_eq!(inv.next_expiry(), Some(Millis(500)), "b is pinned");
        assert_eq!(
            (
                inv.reservation(b).unwrap().expires_at,
                inv.reservation(never).unwrap().expires_at
            ),
            (None, None),
            "pinned and TTL-less"
        );
        inv.commit(b).unwrap();
        assert_eq!(inv.held_unpinned(&sku("hot")), 3);
        inv.pin(a).unwrap();
        assert_eq!(inv.held_unpinned(&sku("hot")), 0);
        inv.release(a).unwrap();
        inv.release(never).unwrap();
        assert_eq!(inv.held_unpinned(&sku("hot")), 0);
        assert!(inv.pinned.is_empty(), "{:?}", inv.pinned);
        inv.check_conservation().unwrap();
    }

    #[test]
    fn due_and_expire_due_agree_on_the_bound_and_the_limit() {
        // Proves: a reservation is due from exactly its expiry instant, `due` does not release,
        // and `expire_due` releases at most `max`, soonest first.
        let mut inv = stocked(5, 1);
        let first = inv
            .reserve(OrderId(1), &[(sku("hot"), 1)], Millis(0), Some(100), 0)
            .unwrap();
        let second = inv
            .reserve(OrderId(2), &[(sku("hot"), 1)], Millis(10), Some(100), 0)
            .unwrap();
        assert_eq!(inv.due(Millis(99)).count(), 0);
        assert_eq!(
            inv.due(Millis(110)).collect::<Vec<_>>(),
            vec![first, second]
        );
        assert_eq!(inv.level(&sku("hot")).unwrap().reserved, 2);
        let expired = inv.expire_due(Millis(110), 1);
        assert_eq!(
            expired.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![first]
        );
        assert_eq!(inv.level(&sku("hot")).unwrap().available, 4);
    }

    #[test]
    fn force_primitives_break_the_counters_as_documented() {
        // Proves: the naive primitives do what their variants rely on: a reservation without a
        // check takes units that do not exist, and a repeated sale counts stock sold twice.
        let mut inv = stocked(1, 1);
        inv.force_reserve(OrderId(1), &[(sku("hot"), 3)], None, Millis(0), None)
            .unwrap();
        assert_eq!(
            inv.level(&sku("hot")).unwrap(),
            StockLevel {
                received: 1,
                available: 0,
                reserved: 3,
                sold: 0
            }
        );
        inv.force_sell(&[(sku("hot"), 3)]);
        inv.force_sell(&[(sku("hot"), 3)]);
        let level = inv.level(&sku("hot")).unwrap();
        assert_eq!((level.reserved, level.sold), (0, 6));
        assert!(matches!(
            inv.force_reserve(OrderId(2), &[(sku("nope"), 1)], None, Millis(0), None),
            Err(InventoryError::UnknownSku(_))
        ));
    }

    #[test]
    fn a_restock_may_fill_every_segment_to_the_last_unit_and_not_one_more() {
        // Proves: the overflow check uses the same even split as the restock: two segments at
        // u64::MAX - 1 take one more unit each, and then none.
        let mut inv = Inventory::new();
        inv.add_sku(sku("x"), u64::MAX - 1, 2).unwrap();
        inv.restock(&sku("x"), u64::MAX - 1).unwrap();
        assert_eq!(inv.restock(&sku("x"), 2), Ok(()));
        assert_eq!(
            inv.restock(&sku("x"), 1),
            Err(InventoryError::Overflow(sku("x")))
        );
        assert_eq!(
            inv.level(&sku("x")).unwrap().received,
            u64::MAX,
            "saturated sum"
        );
    }

    #[test]
    fn a_sku_may_have_exactly_max_segments() {
        // Proves: SEGMENTS_MAX segments are allowed (one more is refused, see above).
        let mut inv = Inventory::new();
        inv.add_sku(sku("x"), 1, SEGMENTS_MAX).unwrap();
        assert_eq!(inv.segments(&sku("x")), SEGMENTS_MAX);
    }
}
