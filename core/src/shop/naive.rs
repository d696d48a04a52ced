//! The naive primitives: store operations only the naive design variants
//! use, as a separate `impl` block so the reference flow in `shop.rs` reads
//! without them. Each is atomic on its own, but the variants compose them
//! with awaits in between, and some break invariants on purpose for the
//! checker to find.

use super::*;
use crate::command::{Command, Reply};

impl ShopState {
    /// The reserve step of `sold_out=from-reservations`: [`ShopState::reserve`]
    /// deciding sold-out from what is on the shelf now, so an order is
    /// cancelled out of stock while abandoned carts hold the units it needs.
    pub fn raw_reserve_from_reservations(
        &mut self,
        id: OrderId,
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        self.reserve_step(id, now, cause, true, SoldOut::FromReservations)
    }

    /// The saved response under a completed key (a lookup, no lock taken).
    pub fn saved_response(&self, key: &IdempotencyKey, now: Millis) -> Option<SavedResponse> {
        self.keys.completed(key, now).cloned()
    }

    /// Saves a response under a key, overwriting.
    pub fn raw_put_key(
        &mut self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        response: SavedResponse,
        now: Millis,
    ) {
        self.keys.force_complete(key, fingerprint, response, now);
    }

    /// Creates an order with no idempotency check, optionally with the
    /// client's unit prices, and with or without its reserve job.
    pub fn raw_create_order(
        &mut self,
        request: &PlaceOrder,
        unit_prices: Option<&[Cents]>,
        with_job: bool,
        now: Millis,
    ) -> Result<(OrderId, Option<JobId>), ShopError> {
        self.create_order(request, unit_prices, with_job, now)
    }

    /// Units of `sku` available now.
    pub fn raw_available(&self, sku: &Sku) -> u64 {
        self.inventory.level(sku).map_or(0, |l| l.available)
    }

    /// The reserve step of `inventory=read-then-write`: reserves the order's
    /// lines from what the caller read earlier (`observed`, one per line),
    /// not from what is there now — the lost update. An order that is no
    /// longer `Created` gets an orphan reservation (see `take_reservation`).
    pub fn raw_force_reserve(
        &mut self,
        id: OrderId,
        observed: &[u64],
        now: Millis,
        cause: Cause,
    ) -> Result<Step, ShopError> {
        let order = self.orders.get(&id).ok_or(ShopError::UnknownOrder(id))?;
        let status = order.status();
        let lines = order_lines(order);
        assert_eq!(observed.len(), lines.len(), "one observed level per line");
        self.ensure_job_room()?;
        let reservation = self.inventory.force_reserve(
            id,
            &lines,
            Some(observed),
            now,
            self.config.reservation_ttl_ms,
        )?;
        self.take_reservation(id, status, reservation, now, cause)
    }

    /// The reserve step of `worker_state_check=off`: [`ShopState::reserve`]
    /// (or, with `sold_out`, its `from-reservations` variant) without its
    /// first line. Availability is still checked atomically, but the order's
    /// status is not, so a redelivered job reserves the order's lines a
    /// second time. Short of stock, only a `Created` order waits or is
    /// cancelled.
    pub fn raw_reserve_unchecked(
        &mut self,
        id: OrderId,
        now: Millis,
        cause: Cause,
        sold_out: SoldOut,
    ) -> Result<Step, ShopError> {
        self.reserve_step(id, now, cause, false, sold_out)
    }

    /// The webhook handler of `webhook_dedup=off`: no dedup by event id and
    /// no look at the order's status first, so every delivery of an event
    /// runs the same statements. "Payment succeeded" is the textbook
    /// handler: it sells the order's units on the spot — the order's hold, if
    /// any, goes back to the shelf and the units are taken off the shelf into
    /// `sold` — and moves the order toward `Paid` as far as the state machine
    /// allows (finalization confirms it, as in the reference). A second
    /// delivery of the same event therefore sells the units again. The other
    /// kinds take the reference path ([`ShopState::receive_webhook`] without
    /// its dedup).
    pub fn raw_apply_unchecked(
        &mut self,
        event: &WebhookEvent,
        now: Millis,
    ) -> Result<Step, ShopError> {
        use OrderStatus::*;
        let order = self
            .orders
            .get(&event.order)
            .ok_or(ShopError::UnknownOrder(event.order))?;
        if event.kind != WebhookKind::PaymentSucceeded {
            self.ensure_job_room()?;
            return self.apply_event(event, now);
        }
        let status = order.status();
        let lines = order_lines(order);
        self.ensure_job_room()?;
        let cause = Cause::Webhook {
            event: event.id.clone(),
        };
        let hold = self
            .orders
            .get_mut(&event.order)
            .expect("checked")
            .reservation
            .take();
        if let Some(rid) = hold {
            self.inventory.release(rid)?;
        }
        let sale = self
            .inventory
            .force_reserve(event.order, &lines, None, now, None)?;
        self.inventory.commit(sale)?;
        self.adopt_intent(&PaymentIntent {
            id: event.intent.clone(),
            order: event.order,
            amount: event.amount,
            status: IntentStatus::Succeeded,
            refunded: Cents::ZERO,
        });
        let mut moved = Vec::new();
        if status == InventoryReserved {
            moved.extend(self.move_order(event.order, PaymentPending, now, cause.clone())?);
        }
        if matches!(status, InventoryReserved | PaymentPending) {
            moved.extend(self.move_order(event.order, Paid, now, cause)?);
        }
        Ok(if moved.is_empty() {
            Step::Skipped(status)
        } else {
            Step::Moved(moved)
        })
    }

    /// Runs one of the naive commands (`Raw*`) for [`ShopState::apply`].
    pub(crate) fn run_naive(&mut self, command: Command, now: Millis) -> Result<Reply, ShopError> {
        use Command as C;
        use Reply as R;
        // The primitives that break the shop's consistency on purpose; the
        // check stands down once one has changed the state.
        let taints = matches!(
            command,
            C::RawForceReserve { .. } | C::RawReserveUnchecked { .. } | C::RawApplyUnchecked { .. }
        );
        let reply = match command {
            C::RawGetKey { key } => R::Key(self.saved_response(&key, now)),
            C::RawPutKey {
                key,
                fingerprint,
                response,
            } => {
                self.raw_put_key(&key, fingerprint, response, now);
                R::Done
            }
            C::RawCreateOrder {
                request,
                unit_prices,
                with_job,
            } => {
                let (order, job) =
                    self.raw_create_order(&request, unit_prices.as_deref(), with_job, now)?;
                R::Created(order, job)
            }
            C::RawAvailable { sku } => R::Count(self.raw_available(&sku)),
            C::RawForceReserve {
                order,
                observed,
                cause,
            } => R::Step(self.raw_force_reserve(order, &observed, now, cause)?),
            C::RawReserveUnchecked {
                order,
                sold_out,
                cause,
            } => R::Step(self.raw_reserve_unchecked(order, now, cause, sold_out)?),
            C::RawReserveFromReservations { order, cause } => {
                R::Step(self.raw_reserve_from_reservations(order, now, cause)?)
            }
            C::RawApplyUnchecked { event } => R::Step(self.raw_apply_unchecked(&event, now)?),
            other => unreachable!("{other:?} is not a naive command"),
        };
        self.naive_primitives_used |= taints;
        Ok(reply)
    }
}
