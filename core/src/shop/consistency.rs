//! What must hold between the shop's parts after any operation: the
//! postcondition half of the core's paired assertions (each operation checks
//! its preconditions; [`ShopState::apply`], the one entry point every store
//! calls, checks this after each command in debug builds).
//!
//! Stock is conserved, every order that should hold stock holds exactly its
//! lines in one reservation (and no other order or nobody holds one), and
//! the per-customer holdings behind purchase limits equal the customer's
//! live orders. A naive primitive breaks these on purpose (that is what the
//! checker is shown to catch), so the check stands down once one has run.

use super::*;
use crate::inventory::ConservationBroken;

/// Above this many orders the debug postcondition checks only stock
/// conservation (O(reservations)); the whole check is O(orders) per command.
pub(super) const CONSISTENCY_CHECK_ORDERS_MAX: usize = 1_000;

/// Something the shop's parts disagree about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// The inventory's own equation is broken.
    #[error(transparent)]
    Stock(#[from] ConservationBroken),
    /// An order that should hold stock does not hold exactly its lines.
    #[error("{order} is {status} but its reservation {reservation:?} does not hold its lines")]
    Unheld {
        /// The order.
        order: OrderId,
        /// Its status.
        status: OrderStatus,
        /// The reservation it points at.
        reservation: Option<ReservationId>,
    },
    /// An order that should hold no stock still points at a reservation.
    #[error("{order} is {status} and still points at reservation {reservation}")]
    Lingering {
        /// The order.
        order: OrderId,
        /// Its status.
        status: OrderStatus,
        /// The reservation.
        reservation: ReservationId,
    },
    /// A live reservation no order points at.
    #[error("reservation {reservation} (for {order}) belongs to no order")]
    Orphan {
        /// The reservation.
        reservation: ReservationId,
        /// The order it names.
        order: OrderId,
    },
    /// A customer's holdings differ from their live orders.
    #[error("{customer} holds {held} of {sku}, but their live orders hold {live}")]
    Holdings {
        /// The customer.
        customer: CustomerId,
        /// The SKU.
        sku: Sku,
        /// What the holdings say.
        held: u64,
        /// What the live orders add up to.
        live: u64,
    },
}

impl ShopState {
    /// Checks that the shop's parts agree (see the module docs); O(orders +
    /// reservations). `Ok` without looking once a naive primitive has run.
    pub fn check_consistency(&self) -> Result<(), Inconsistency> {
        if self.naive_primitives_used {
            return Ok(());
        }
        self.inventory.check_conservation()?;
        for order in self.orders.values() {
            self.check_order_holds(order)?;
        }
        for r in self.inventory.reservations() {
            let owner = self.orders.get(&r.order).and_then(|o| o.reservation);
            if owner != Some(r.id) {
                return Err(Inconsistency::Orphan {
                    reservation: r.id,
                    order: r.order,
                });
            }
        }
        self.check_holdings()
    }

    /// The debug postcondition of every command: the whole check while the
    /// shop is small, stock conservation beyond.
    pub(crate) fn debug_check_consistency(&self) {
        if !cfg!(debug_assertions) || self.naive_primitives_used {
            return;
        }
        let checked = if self.orders.len() <= CONSISTENCY_CHECK_ORDERS_MAX {
            self.check_consistency()
        } else {
            self.inventory
                .check_conservation()
                .map_err(Inconsistency::from)
        };
        if let Err(broken) = checked {
            panic!("the shop broke its own consistency: {broken}");
        }
    }

    fn check_order_holds(&self, order: &Order) -> Result<(), Inconsistency> {
        let status = order.status();
        if !status.holds_reservation() {
            return match order.reservation {
                Some(reservation) => Err(Inconsistency::Lingering {
                    order: order.id,
                    status,
                    reservation,
                }),
                None => Ok(()),
            };
        }
        let held = order
            .reservation
            .and_then(|rid| self.inventory.reservation(rid))
            .filter(|r| r.order == order.id);
        let exact = held.is_some_and(|r| {
            let mut wanted: BTreeMap<&Sku, u64> = BTreeMap::new();
            for line in &order.lines {
                *wanted.entry(&line.sku).or_default() += u64::from(line.qty);
            }
            let total: u64 = r.allocations.iter().map(|a| a.qty).sum();
            wanted.iter().all(|(sku, qty)| r.qty_of(sku) == *qty)
                && total == wanted.values().sum::<u64>()
        });
        if exact {
            Ok(())
        } else {
            Err(Inconsistency::Unheld {
                order: order.id,
                status,
                reservation: order.reservation,
            })
        }
    }

    fn check_holdings(&self) -> Result<(), Inconsistency> {
        let mut live: BTreeMap<(CustomerId, Sku), u64> = BTreeMap::new();
        for order in self.orders.values().filter(|o| counts_toward_holdings(o)) {
            for line in &order.lines {
                *live
                    .entry((order.customer.clone(), line.sku.clone()))
                    .or_default() += u64::from(line.qty);
            }
        }
        if live == self.holdings {
            return Ok(());
        }
        let keys: BTreeSet<&(CustomerId, Sku)> = live.keys().chain(self.holdings.keys()).collect();
        let (customer, sku) = keys
            .into_iter()
            .find(|k| live.get(*k) != self.holdings.get(*k))
            .expect("the maps differ somewhere");
        Err(Inconsistency::Holdings {
            held: self
                .holdings
                .get(&(customer.clone(), sku.clone()))
                .copied()
                .unwrap_or(0),
            live: live
                .get(&(customer.clone(), sku.clone()))
                .copied()
                .unwrap_or(0),
            customer: customer.clone(),
            sku: sku.clone(),
        })
    }
}

/// Whether an order's units count toward its customer's purchase limit:
/// until it is cancelled or refunded (the state machine refunds only paid or
/// cancelled orders, never confirmed ones).
fn counts_toward_holdings(order: &Order) -> bool {
    !matches!(
        order.status(),
        OrderStatus::Cancelled(_) | OrderStatus::Refunded
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Product;
    use crate::command::{Command, Reply};

    fn hat() -> Sku {
        Sku::new("hat").unwrap()
    }

    fn alice() -> CustomerId {
        CustomerId::new("alice").unwrap()
    }

    fn shop(stock: u64) -> ShopState {
        let catalog = Catalog::new([Product {
            sku: hat(),
            name: "Hat".into(),
            price: Cents(1_000),
            max_qty_per_order: 5,
            per_customer_limit: None,
        }]);
        let config = ShopConfig {
            reservation_ttl_ms: Some(1_000),
            admission: Admission::OFF,
            ..ShopConfig::default()
        };
        let mut s = ShopState::new(catalog, config);
        s.stock(&hat(), stock, 1).unwrap();
        s
    }

    fn place(s: &mut ShopState, n: usize, qty: u32) -> OrderId {
        let request = PlaceOrder {
            key: Some(IdempotencyKey::new(format!("k{n}")).unwrap()),
            customer: alice(),
            items: vec![ItemRequest { sku: hat(), qty }],
            express: false,
        };
        match s.apply(Command::PlaceOrder { request }, Millis(0)) {
            Ok(Reply::Placed(Placed::Created { order, .. })) => order,
            other => panic!("{other:?}"),
        }
    }

    fn reserve(s: &mut ShopState, order: OrderId) {
        let cause = Cause::Reconciler;
        let reply = s.apply(Command::Reserve { order, cause }, Millis(1));
        assert!(
            matches!(reply, Ok(Reply::Step(Step::Moved(_)))),
            "{reply:?}"
        );
    }

    /// Two orders of alice: one reserved, one still created.
    fn two_orders() -> (ShopState, OrderId, OrderId) {
        let mut s = shop(10);
        let (reserved, created) = (place(&mut s, 1, 2), place(&mut s, 2, 3));
        reserve(&mut s, reserved);
        (s, reserved, created)
    }

    #[test]
    fn a_shop_driven_through_its_commands_agrees_with_itself() {
        // Proves: placing, reserving and cancelling keep every part in step (the check passes
        // after each, including holdings given back on cancel).
        let (mut s, reserved, created) = two_orders();
        assert_eq!(s.check_consistency(), Ok(()));
        let cancelled = s.apply(Command::Cancel { order: reserved }, Millis(2));
        assert!(cancelled.is_ok(), "{cancelled:?}");
        assert_eq!(s.check_consistency(), Ok(()));
        assert_eq!(s.holdings.get(&(alice(), hat())), Some(&3));
        assert!(s.order(created).is_some());
    }

    #[test]
    fn each_disagreement_is_found_and_named() {
        // Proves: each kind of broken agreement is reported, naming what disagrees.
        let (base, reserved, created) = two_orders();
        let mut s = base.clone();
        s.holdings.insert((alice(), hat()), 9);
        assert_eq!(
            s.check_consistency(),
            Err(Inconsistency::Holdings {
                customer: alice(),
                sku: hat(),
                held: 9,
                live: 5,
            })
        );
        let mut s = base.clone();
        let rid = s.orders[&reserved].reservation.expect("reserved");
        s.orders.get_mut(&created).unwrap().reservation = Some(rid);
        assert!(matches!(
            s.check_consistency(),
            Err(Inconsistency::Lingering { order, .. }) if order == created
        ));
        let mut s = base.clone();
        s.orders.get_mut(&reserved).unwrap().reservation = None;
        assert!(matches!(
            s.check_consistency(),
            Err(Inconsistency::Unheld { order, reservation: None, .. }) if order == reserved
        ));
        let mut s = base.clone();
        let lines = [(hat(), 1)];
        let stray = s
            .inventory
            .reserve(created, &lines, Millis(1), None, 0)
            .unwrap();
        assert_eq!(
            s.check_consistency(),
            Err(Inconsistency::Orphan {
                reservation: stray,
                order: created,
            })
        );
    }

    #[test]
    fn a_reservation_holding_other_lines_than_its_order_is_unheld() {
        // Proves: the reservation must hold exactly the order's units, not more, not fewer.
        let (mut s, reserved, _) = two_orders();
        let order = s.orders.get_mut(&reserved).unwrap();
        order.lines[0].qty += 1;
        assert!(matches!(
            s.check_consistency(),
            Err(Inconsistency::Unheld { order, .. }) if order == reserved
        ));
    }

    #[test]
    fn a_reservation_must_hold_each_sku_of_its_order_not_just_as_many_units() {
        // Proves: the same number of units of other SKUs is not the order's lines (2 hats held
        // for 1 hat and 1 scarf is unheld).
        let (mut s, reserved, _) = two_orders();
        let order = s.orders.get_mut(&reserved).unwrap();
        let mut scarf = order.lines[0].clone();
        scarf.sku = Sku::new("scarf").unwrap();
        scarf.qty = 1;
        order.lines[0].qty = 1;
        order.lines.push(scarf);
        assert!(matches!(
            s.check_consistency(),
            Err(Inconsistency::Unheld { order, .. }) if order == reserved
        ));
    }

    #[test]
    fn the_check_stands_down_once_a_naive_primitive_ran() {
        // Proves: a state a naive design broke on purpose is not reported (the checker's job).
        let (mut s, _, _) = two_orders();
        s.holdings.insert((alice(), hat()), 9);
        assert!(s.check_consistency().is_err());
        s.naive_primitives_used = true;
        assert_eq!(s.check_consistency(), Ok(()));
    }

    #[test]
    fn cancelled_and_refunded_orders_give_their_holdings_back_and_others_keep_them() {
        // Proves the holdings rule on both sides of each final status.
        let (s, reserved, _) = two_orders();
        let order = |path: &[OrderStatus]| {
            let mut o = s.orders[&reserved].clone();
            for to in path {
                o.transition(*to, Millis(5), Cause::Reconciler).unwrap();
            }
            o
        };
        use OrderStatus::*;
        assert!(counts_toward_holdings(&order(&[PaymentPending, Paid])));
        assert!(counts_toward_holdings(&order(&[
            PaymentPending,
            Paid,
            Confirmed
        ])));
        assert!(!counts_toward_holdings(&order(&[
            PaymentPending,
            Paid,
            Refunded
        ])));
        let expired = Cancelled(CancelReason::Expired);
        assert!(!counts_toward_holdings(&order(&[expired])));
        assert!(!counts_toward_holdings(&order(&[expired, Refunded])));
    }

    #[cfg(debug_assertions)]
    #[test]
    fn the_debug_postcondition_stands_down_after_a_naive_primitive_at_any_size() {
        // Proves: beyond the bound, where only stock is checked, a naive design's oversold
        // stock (two forced reservations of the last unit) does not panic the shop.
        let mut s = shop(1);
        for n in 0..=CONSISTENCY_CHECK_ORDERS_MAX {
            place(&mut s, n, 1);
        }
        for order in [OrderId(1), OrderId(2)] {
            let forced = Command::RawForceReserve {
                order,
                observed: vec![1],
                cause: Cause::Reconciler,
            };
            s.apply(forced, Millis(1)).unwrap();
        }
        assert!(s.naive_primitives_used);
        assert!(
            s.inventory.check_conservation().is_err(),
            "oversold on purpose"
        );
        s.debug_check_consistency();
    }

    #[cfg(debug_assertions)]
    #[test]
    fn the_debug_postcondition_checks_everything_up_to_its_bound_and_stock_beyond() {
        // Proves: at CONSISTENCY_CHECK_ORDERS_MAX orders a broken holding panics; one order
        // more, only stock is checked.
        let mut s = shop(10);
        for n in 0..CONSISTENCY_CHECK_ORDERS_MAX {
            place(&mut s, n, 1);
        }
        s.holdings.insert((alice(), hat()), 1);
        let at_bound = s.clone();
        let panicked = std::panic::catch_unwind(|| at_bound.debug_check_consistency());
        assert!(panicked.is_err(), "the whole check runs at the bound");
        place(&mut s, CONSISTENCY_CHECK_ORDERS_MAX, 1);
        s.holdings.insert((alice(), hat()), 1);
        s.debug_check_consistency();
    }
}
