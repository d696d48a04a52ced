//! The invariant checker: pure functions from a [`History`] and a final
//! [`AuditSnapshot`] to one [`Verdict`] per invariant.
//!
//! The checker is an oracle independent of the shop's own bookkeeping where
//! it can be: prices and stock come from the history's `Listed`/`Stocked`
//! events, money from the PSP's ledger, promises from what clients were told.
//! Each violation names its subject (order, SKU or key) and the indices of the
//! history events that prove it.
//!
//! Where the shop's word and independent evidence can disagree, the evidence
//! wins: what clients observed (each client's own sequence of statuses, the
//! order ids and intents its answers carried, the items it asked for) and what
//! the PSP's ledger says are judged next to the shop's records, so a shop whose
//! books look clean while its customers saw a regression or were sold a unit
//! that was never there is still caught.
//!
//! Every invariant is judged, liveness included, whatever state the world was
//! left in: an order that is not final at the end *is* stuck. The only way to
//! get [`Judgement::NotJudged`] is to ask for it with [`OptOuts`], and the
//! verdict then carries the caller's reason.

use crate::history::{
    ClientOp, ClientReply, EventKind, History, JourneyStep, PAY_FLOW_ALLOWANCE_MS, Terms, Wish,
};
use crate::idempotency::Fingerprint;
use crate::ids::{CustomerId, IdempotencyKey, IntentId, OrderId, Sku};
use crate::money::Cents;
use crate::order::{CancelReason, Order, OrderStatus};
use crate::payment::LedgerKind;
use crate::shop::{AuditSnapshot, PlaceOrder};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Most violations kept per verdict; the rest are only counted.
pub const VIOLATIONS_KEPT_MAX: usize = 50;

/// The invariants Stampede checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// Units paid for or sold never exceed units received.
    NoOversell,
    /// `available + reserved + sold == received`, and the counters match the orders.
    StockConserved,
    /// No order is charged more than once.
    SingleCharge,
    /// An idempotency key never creates more than one order.
    OneOrderPerKey,
    /// Every answer to a key tells the same story; a different request under it is refused.
    IdempotentReplay,
    /// Every transition is an edge of the state machine, and each order's chain is unbroken.
    LegalTransitions,
    /// Every order a client was told about exists.
    NoLostAcknowledgedOrder,
    /// Charges match order totals and order prices match the catalog.
    MoneyReconciles,
    /// Liveness: every captured payment ends in a confirmed order (no money is kept for an
    /// unfulfilled one), and every acknowledged order reaches a decision by the end.
    EventualConfirmation,
    /// Liveness: at the end of the run (settled or not), no order is left in a non-final status.
    NoStuckOrders,
    /// Liveness: at the end of the run, no stock is left reserved.
    NoReservationLeak,
    /// Progress: every willing buyer whose order was acknowledged ends with a
    /// confirmed order the PSP charged for, unless the evidence justifies otherwise.
    WillingBuyersServed,
    /// Progress: no stock is left unsold at the end while a willing buyer of
    /// it was turned away (refused, cancelled out of stock, or expired never offered payment).
    NoSaleLeftBehind,
    /// Progress: willing buyers are offered payment, and charges are decided,
    /// within the scenario's bounds.
    TimelyDecisions,
}

impl Invariant {
    /// Every invariant, safety first.
    pub const ALL: [Invariant; 14] = [
        Invariant::NoOversell,
        Invariant::StockConserved,
        Invariant::SingleCharge,
        Invariant::OneOrderPerKey,
        Invariant::IdempotentReplay,
        Invariant::LegalTransitions,
        Invariant::NoLostAcknowledgedOrder,
        Invariant::MoneyReconciles,
        Invariant::EventualConfirmation,
        Invariant::NoStuckOrders,
        Invariant::NoReservationLeak,
        Invariant::WillingBuyersServed,
        Invariant::NoSaleLeftBehind,
        Invariant::TimelyDecisions,
    ];

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoOversell => "no_oversell",
            Invariant::StockConserved => "stock_conserved",
            Invariant::SingleCharge => "single_charge",
            Invariant::OneOrderPerKey => "one_order_per_key",
            Invariant::IdempotentReplay => "idempotent_replay",
            Invariant::LegalTransitions => "legal_transitions",
            Invariant::NoLostAcknowledgedOrder => "no_lost_acknowledged_order",
            Invariant::MoneyReconciles => "money_reconciles",
            Invariant::EventualConfirmation => "eventual_confirmation",
            Invariant::NoStuckOrders => "no_stuck_orders",
            Invariant::NoReservationLeak => "no_reservation_leak",
            Invariant::WillingBuyersServed => "willing_buyers_served",
            Invariant::NoSaleLeftBehind => "no_sale_left_behind",
            Invariant::TimelyDecisions => "timely_decisions",
        }
    }

    /// Parses [`Invariant::name`].
    pub fn parse(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }

    /// A liveness invariant: judged on the state the run ended in (an order
    /// that is not final by then is stuck).
    pub fn is_liveness(self) -> bool {
        matches!(
            self,
            Invariant::EventualConfirmation
                | Invariant::NoStuckOrders
                | Invariant::NoReservationLeak
                | Invariant::WillingBuyersServed
                | Invariant::NoSaleLeftBehind
                | Invariant::TimelyDecisions
        )
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a violation is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Subject {
    /// An order.
    Order(OrderId),
    /// A SKU.
    Sku(Sku),
    /// An idempotency key.
    Key(IdempotencyKey),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Order(id) => write!(f, "order {id}"),
            Subject::Sku(sku) => write!(f, "sku {sku}"),
            Subject::Key(key) => write!(f, "key {key}"),
        }
    }
}

/// One broken instance of an invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// What it is about.
    pub subject: Subject,
    /// What is wrong, with the numbers.
    pub detail: String,
    /// Indices of the history events that show it.
    pub evidence: Vec<usize>,
}

/// The outcome for one invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Judgement {
    /// It holds.
    Holds,
    /// It is broken.
    Violated {
        /// Up to [`VIOLATIONS_KEPT_MAX`] instances.
        violations: Vec<Violation>,
        /// How many instances in all.
        total: usize,
    },
    /// Not judged, because the caller opted out ([`OptOuts`]).
    NotJudged {
        /// Why.
        reason: String,
    },
}

/// An invariant and its judgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Which invariant.
    pub invariant: Invariant,
    /// Holds, violated (with evidence), or not judged.
    pub judgement: Judgement,
    /// Sales the scenario allowed its faults to cost: unserved willing buyers
    /// whose journey overlapped a [`EventKind::SalesAtRisk`] window, each
    /// described like a violation (up to [`VIOLATIONS_KEPT_MAX`]). They do not
    /// break the invariant; reports count them as lost to faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_to_faults: Vec<Violation>,
    /// How many sales were lost to faults in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_to_faults_total: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Verdict {
    fn from_violations(invariant: Invariant, violations: Vec<Violation>) -> Verdict {
        Verdict::with_losses(invariant, violations, Vec::new())
    }

    fn with_losses(
        invariant: Invariant,
        mut violations: Vec<Violation>,
        mut lost: Vec<Violation>,
    ) -> Verdict {
        let lost_to_faults_total = lost.len();
        lost.truncate(VIOLATIONS_KEPT_MAX);
        let judgement = if violations.is_empty() {
            Judgement::Holds
        } else {
            let total = violations.len();
            violations.truncate(VIOLATIONS_KEPT_MAX);
            Judgement::Violated { violations, total }
        };
        Verdict {
            invariant,
            judgement,
            lost_to_faults: lost,
            lost_to_faults_total,
        }
    }

    /// Is it broken?
    pub fn is_violated(&self) -> bool {
        matches!(self.judgement, Judgement::Violated { .. })
    }

    /// `holds`, `violated` or `not_judged`, with the number of violations
    /// (all of them, not only the kept ones): how reports name the outcome.
    pub fn outcome(&self) -> (&'static str, usize) {
        match &self.judgement {
            Judgement::Holds => ("holds", 0),
            Judgement::Violated { total, .. } => ("violated", *total),
            Judgement::NotJudged { .. } => ("not_judged", 0),
        }
    }

    /// Why it was not judged (the caller's opt-out reason), if it was not.
    pub fn not_judged_reason(&self) -> Option<&str> {
        match &self.judgement {
            Judgement::NotJudged { reason } => Some(reason),
            _ => None,
        }
    }

    /// The kept violations (empty unless violated).
    pub fn violations(&self) -> &[Violation] {
        match &self.judgement {
            Judgement::Violated { violations, .. } => violations,
            _ => &[],
        }
    }
}

/// Invariants the caller explicitly asked not to judge, each with the reason
/// a report shows. Nothing else is ever left unjudged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptOuts {
    skipped: BTreeMap<Invariant, String>,
}

impl OptOuts {
    /// Judge everything.
    pub fn none() -> OptOuts {
        OptOuts::default()
    }

    /// Also skip `invariant`, saying `reason` (e.g. "skipped by --skip").
    pub fn skip(mut self, invariant: Invariant, reason: impl Into<String>) -> OptOuts {
        self.skipped.insert(invariant, reason.into());
        self
    }

    /// Why `invariant` is skipped, if it is.
    pub fn reason(&self, invariant: Invariant) -> Option<&str> {
        self.skipped.get(&invariant).map(String::as_str)
    }

    /// No invariant is skipped.
    pub fn is_empty(&self) -> bool {
        self.skipped.is_empty()
    }
}

/// Judges every invariant, liveness included, on the world as it was left.
pub fn check_all(history: &History, state: &AuditSnapshot) -> Vec<Verdict> {
    check_except(history, state, &OptOuts::none())
}

/// Judges every invariant but those the caller opted out of, which come back
/// [`Judgement::NotJudged`] with the caller's reason, in [`Invariant::ALL`] order.
pub fn check_except(history: &History, state: &AuditSnapshot, opt_outs: &OptOuts) -> Vec<Verdict> {
    let facts = Facts::gather(history, state);
    Invariant::ALL
        .into_iter()
        .map(|invariant| match opt_outs.reason(invariant) {
            Some(reason) => Verdict {
                invariant,
                judgement: Judgement::NotJudged {
                    reason: reason.to_string(),
                },
                lost_to_faults: Vec::new(),
                lost_to_faults_total: 0,
            },
            None => judge(invariant, &facts),
        })
        .collect()
}

/// Judges one invariant.
pub fn check(invariant: Invariant, history: &History, state: &AuditSnapshot) -> Verdict {
    judge(invariant, &Facts::gather(history, state))
}

fn judge(invariant: Invariant, facts: &Facts<'_>) -> Verdict {
    let violations = match invariant {
        Invariant::NoOversell => no_oversell(facts),
        Invariant::StockConserved => stock_conserved(facts),
        Invariant::SingleCharge => single_charge(facts),
        Invariant::OneOrderPerKey => one_order_per_key(facts),
        Invariant::IdempotentReplay => idempotent_replay(facts),
        Invariant::LegalTransitions => legal_transitions(facts),
        Invariant::NoLostAcknowledgedOrder => no_lost_acknowledged_order(facts),
        Invariant::MoneyReconciles => money_reconciles(facts),
        Invariant::EventualConfirmation => eventual_confirmation(facts),
        Invariant::NoStuckOrders => no_stuck_orders(facts),
        Invariant::NoReservationLeak => no_reservation_leak(facts),
        Invariant::WillingBuyersServed => return willing_buyers_served(facts),
        Invariant::NoSaleLeftBehind => return no_sale_left_behind(facts),
        Invariant::TimelyDecisions => return timely_decisions(facts),
    };
    Verdict::from_violations(invariant, violations)
}

/// A keyed client exchange: request index, response index, op and reply.
struct Exchange<'a> {
    request: usize,
    response: usize,
    op: &'a ClientOp,
    fingerprint: Option<Fingerprint>,
    reply: &'a ClientReply,
}

/// Everything the checks need, indexed once.
struct Facts<'a> {
    state: &'a AuditSnapshot,
    orders: BTreeMap<OrderId, &'a Order>,
    listed: BTreeMap<&'a Sku, Cents>,
    /// Per-customer limits the catalog sets.
    limits: BTreeMap<&'a Sku, u32>,
    /// Units of each SKU in each customer's acknowledged orders (live or not).
    held: BTreeMap<(&'a CustomerId, &'a Sku), u64>,
    received: BTreeMap<&'a Sku, (u64, Vec<usize>)>,
    /// Ledger lines per order: (event index, kind, amount, intent).
    ledger: BTreeMap<OrderId, Vec<(usize, LedgerKind, Cents, &'a IntentId)>>,
    /// Transition event indices per order, in history order.
    transitions: BTreeMap<OrderId, Vec<usize>>,
    /// Job event indices per order (leases, acks, failures), in history order.
    jobs: BTreeMap<OrderId, Vec<usize>>,
    exchanges: Vec<Exchange<'a>>,
    /// Each client's observed statuses of each order, in history order: (event index, status).
    observed: BTreeMap<(u64, OrderId), Vec<(usize, OrderStatus)>>,
    /// Every status some client was shown each order in (any client).
    shown: BTreeMap<OrderId, Vec<OrderStatus>>,
    /// Orders some client was shown confirmed, with the first event that showed it.
    seen_confirmed: BTreeMap<OrderId, usize>,
    /// Each acknowledged order's first acknowledgement: request index, response
    /// index, and what the client asked for (its own items, not the shop's lines).
    acknowledged: BTreeMap<OrderId, (usize, usize, &'a PlaceOrder)>,
    /// Each order's first offer of payment a client saw: an `Observed`
    /// payment_pending (or later paid/confirmed) or a `PaymentStarted` answer.
    offered: BTreeMap<OrderId, usize>,
    /// Every client's plan: (event index, client, key, wish).
    wants: Vec<(usize, u64, &'a IdempotencyKey, Wish)>,
    /// The scenario's promises (the last `Terms` event, or the defaults).
    terms: Terms,
    /// Fault windows the scenario allows to cost sales: (event index, from, until, fault).
    at_risk: Vec<(usize, Millis, Millis, &'a str, &'a [JourneyStep])>,
    history: &'a History,
}

/// Requests by number, waiting for their response: (event index, op, fingerprint).
type Requests<'a> = BTreeMap<u64, (usize, &'a ClientOp, Option<Fingerprint>)>;

impl<'a> Facts<'a> {
    fn gather(history: &'a History, state: &'a AuditSnapshot) -> Facts<'a> {
        let mut facts = Facts::empty(history, state);
        let mut requests: Requests<'a> = BTreeMap::new();
        for (i, event) in history.indexed() {
            facts.take(i, &event.kind, &mut requests);
        }
        facts.acknowledge();
        facts
    }

    fn empty(history: &'a History, state: &'a AuditSnapshot) -> Facts<'a> {
        Facts {
            state,
            orders: state.orders.iter().map(|o| (o.id, o)).collect(),
            listed: BTreeMap::new(),
            limits: BTreeMap::new(),
            held: BTreeMap::new(),
            received: BTreeMap::new(),
            ledger: BTreeMap::new(),
            transitions: BTreeMap::new(),
            jobs: BTreeMap::new(),
            exchanges: Vec::new(),
            observed: BTreeMap::new(),
            shown: BTreeMap::new(),
            seen_confirmed: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            offered: BTreeMap::new(),
            wants: Vec::new(),
            terms: Terms::default(),
            at_risk: Vec::new(),
            history,
        }
    }

    /// Files event `i` under what it is evidence of.
    fn take(&mut self, i: usize, kind: &'a EventKind, requests: &mut Requests<'a>) {
        match kind {
            EventKind::Listed { sku, price, limit } => {
                self.listed.insert(sku, *price);
                if let Some(limit) = limit {
                    self.limits.insert(sku, *limit);
                }
            }
            EventKind::Stocked { sku, qty } => {
                let entry = self.received.entry(sku).or_default();
                entry.0 = entry.0.saturating_add(*qty);
                entry.1.push(i);
            }
            EventKind::Request {
                req,
                op,
                fingerprint,
            } => {
                requests.insert(*req, (i, op, *fingerprint));
            }
            EventKind::Observed {
                order,
                status,
                client,
            } => self.note_observed(i, *client, *order, *status),
            EventKind::Response { req, reply } => self.note_response(i, requests.get(req), reply),
            EventKind::Transition(t) => self.transitions.entry(t.order).or_default().push(i),
            EventKind::Ledger(entry) => self.ledger.entry(entry.order).or_default().push((
                i,
                entry.kind,
                entry.amount,
                &entry.intent,
            )),
            EventKind::Job { order, .. } => self.jobs.entry(*order).or_default().push(i),
            EventKind::Fault { .. } => {}
            EventKind::Wants { client, key, wish } => {
                self.wants.push((i, *client, key, *wish));
            }
            EventKind::Terms(terms) => self.terms = *terms,
            EventKind::SalesAtRisk {
                from,
                until,
                fault,
                steps,
            } => {
                self.at_risk.push((i, *from, *until, fault, steps));
            }
        }
    }

    fn note_observed(&mut self, i: usize, client: u64, order: OrderId, status: OrderStatus) {
        self.observed
            .entry((client, order))
            .or_default()
            .push((i, status));
        let shown = self.shown.entry(order).or_default();
        if !shown.contains(&status) {
            shown.push(status);
        }
        if status == OrderStatus::Confirmed {
            self.seen_confirmed.entry(order).or_insert(i);
        }
        if is_offer(status) {
            self.offered.entry(order).or_insert(i);
        }
    }

    fn note_response(
        &mut self,
        i: usize,
        request: Option<&(usize, &'a ClientOp, Option<Fingerprint>)>,
        reply: &'a ClientReply,
    ) {
        if let ClientReply::Status {
            order,
            status: OrderStatus::Confirmed,
        } = reply
        {
            self.seen_confirmed.entry(*order).or_insert(i);
        }
        if let ClientReply::PaymentStarted { order, .. } = reply {
            self.offered.entry(*order).or_insert(i);
        }
        if let Some((request, op, fingerprint)) = request {
            self.exchanges.push(Exchange {
                request: *request,
                response: i,
                op,
                fingerprint: *fingerprint,
                reply,
            });
        }
    }

    /// Each order a client was told was accepted, with the request that placed it.
    fn acknowledge(&mut self) {
        for ex in &self.exchanges {
            if let (ClientReply::OrderAccepted { order, .. }, ClientOp::PlaceOrder(asked)) =
                (ex.reply, ex.op)
            {
                self.acknowledged
                    .entry(*order)
                    .or_insert((ex.request, ex.response, asked));
            }
        }
        for (_, _, asked) in self.acknowledged.values() {
            for item in &asked.items {
                let held = self.held.entry((&asked.customer, &item.sku)).or_default();
                *held = held.saturating_add(u64::from(item.qty));
            }
        }
    }

    /// Units per SKU sold to customers by the evidence the shop cannot fake:
    /// acknowledged orders a client was shown confirmed and the PSP holds
    /// money for, with the quantities from the client's own request (the
    /// safety invariants' count). Evidence: the event that showed it
    /// confirmed, the acknowledgement and the ledger lines.
    fn sold_to_customers(&self) -> BTreeMap<&'a Sku, (u64, Vec<usize>)> {
        self.sold(false)
    }

    /// Units per SKU bought, for the progress invariants' "no room": as
    /// [`Facts::sold_to_customers`], with the shop's final record as a second
    /// witness of confirmation (a buyer may stop watching before the end, as
    /// for "served"); the PSP's money is still required, so a shop that
    /// confirms without being paid sells nothing by this count either.
    /// Orders no client of the history was acknowledged (sales made before
    /// a load against a running shop began, or to its other customers) count
    /// too when the shop records them confirmed and the PSP holds money for
    /// them: their units were sold, not left behind.
    fn bought(&self) -> BTreeMap<&'a Sku, (u64, Vec<usize>)> {
        let mut bought = self.sold(true);
        let elsewhere = self.orders.iter().filter(|(id, o)| {
            !self.acknowledged.contains_key(id) && o.status() == OrderStatus::Confirmed
        });
        for (id, order) in elsewhere {
            let (net, ledger) = self.net_captured(*id);
            if net <= 0 {
                continue;
            }
            for line in &order.lines {
                let entry = bought.entry(&line.sku).or_default();
                entry.0 = entry.0.saturating_add(u64::from(line.qty));
                entry.1.extend(&ledger);
            }
        }
        sort_evidence(&mut bought);
        bought
    }

    fn sold(&self, shop_record: bool) -> BTreeMap<&'a Sku, (u64, Vec<usize>)> {
        let mut sold: BTreeMap<&'a Sku, (u64, Vec<usize>)> = BTreeMap::new();
        for (order, (_, acked, asked)) in &self.acknowledged {
            let seen = self.seen_confirmed.get(order).copied();
            let recorded = shop_record
                && self
                    .orders
                    .get(order)
                    .is_some_and(|o| o.status() == OrderStatus::Confirmed);
            if seen.is_none() && !recorded {
                continue;
            }
            let (net, ledger) = self.net_captured(*order);
            if net <= 0 {
                continue;
            }
            for item in &asked.items {
                let entry = sold.entry(&item.sku).or_default();
                entry.0 = entry.0.saturating_add(u64::from(item.qty));
                entry.1.push(*acked);
                entry.1.extend(seen);
                entry.1.extend(&ledger);
            }
        }
        sort_evidence(&mut sold);
        sold
    }

    fn received(&self, sku: &Sku) -> u64 {
        self.received.get(sku).map_or(0, |r| r.0)
    }

    /// The `Stocked` events of `sku`: the evidence for what was received.
    fn received_evidence(&self, sku: &Sku) -> Vec<usize> {
        self.received
            .get(sku)
            .map(|r| r.1.clone())
            .unwrap_or_default()
    }

    /// Units of `sku` in orders whose status satisfies `pred`, with those orders.
    fn units_where(&self, sku: &Sku, pred: impl Fn(OrderStatus) -> bool) -> (u64, Vec<OrderId>) {
        let mut units = 0u64;
        let mut ids = Vec::new();
        for order in self.orders.values().filter(|o| pred(o.status())) {
            let qty = u64::from(order.qty_of(sku));
            if qty > 0 {
                units += qty;
                ids.push(order.id);
            }
        }
        (units, ids)
    }

    /// Every SKU mentioned anywhere.
    fn skus(&self) -> BTreeSet<&Sku> {
        let mut skus: BTreeSet<&Sku> = self.received.keys().copied().collect();
        skus.extend(self.state.stock.keys());
        for order in self.orders.values() {
            skus.extend(order.lines.iter().map(|l| &l.sku));
        }
        for (_, _, asked) in self.acknowledged.values() {
            skus.extend(asked.items.iter().map(|i| &i.sku));
        }
        skus
    }

    /// Indices of transitions of `orders` into a status satisfying `pred`.
    fn transitions_into(
        &self,
        orders: &[OrderId],
        pred: impl Fn(OrderStatus) -> bool,
    ) -> Vec<usize> {
        orders
            .iter()
            .flat_map(|id| self.transitions.get(id).into_iter().flatten())
            .copied()
            .filter(|i| matches!(&self.history.events()[*i].kind, EventKind::Transition(t) if pred(t.to)))
            .collect()
    }

    /// Net captured per order and the ledger indices.
    fn net_captured(&self, order: OrderId) -> (i128, Vec<usize>) {
        let lines = self.ledger.get(&order).map(Vec::as_slice).unwrap_or(&[]);
        let net = lines
            .iter()
            .map(|(_, kind, amount, _)| match kind {
                LedgerKind::Charge => i128::from(amount.0),
                LedgerKind::Refund => -i128::from(amount.0),
            })
            .sum();
        (net, lines.iter().map(|l| l.0).collect())
    }
}

/// Each count's evidence in history order, each event once.
fn sort_evidence<K>(counts: &mut BTreeMap<K, (u64, Vec<usize>)>) {
    for entry in counts.values_mut() {
        entry.1.sort_unstable();
        entry.1.dedup();
    }
}

fn committed(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Paid | OrderStatus::Confirmed)
}

fn no_oversell(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = oversold_over_time(facts);
    out.extend(sold_to_customers_beyond_stock(facts));
    let flagged: BTreeSet<Sku> = out
        .iter()
        .filter_map(|v| match &v.subject {
            Subject::Sku(sku) => Some(sku.clone()),
            _ => None,
        })
        .collect();
    for sku in facts.skus() {
        let received = facts.received(sku);
        let (units, orders) = facts.units_where(sku, committed);
        if units > received && !flagged.contains(sku) {
            let mut evidence = facts.transitions_into(&orders, committed);
            evidence.extend(facts.received_evidence(sku));
            evidence.sort_unstable();
            out.push(Violation {
                subject: Subject::Sku(sku.clone()),
                detail: format!(
                    "{units} units in paid/confirmed orders but only {received} received ({} orders)",
                    orders.len()
                ),
                evidence,
            });
        }
        let sold = facts.state.stock.get(sku).map_or(0, |l| l.sold);
        if sold > received {
            out.push(Violation {
                subject: Subject::Sku(sku.clone()),
                detail: format!(
                    "the stock counter says {sold} sold but only {received} were received"
                ),
                evidence: facts.received_evidence(sku),
            });
        }
    }
    out
}

/// Judged on the customers' side alone: units in orders clients were shown
/// confirmed and the PSP charged (quantities from the clients' own requests)
/// against units received (the configured stock), whatever the shop's
/// records say.
fn sold_to_customers_beyond_stock(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for (sku, (units, evidence)) in facts.sold_to_customers() {
        let received = facts.received(sku);
        if units > received {
            let mut evidence = evidence;
            evidence.extend(facts.received_evidence(sku));
            evidence.sort_unstable();
            out.push(Violation {
                subject: Subject::Sku(sku.clone()),
                detail: format!(
                    "customers were sold {units} units (orders they were shown confirmed and the PSP charged, \
                     quantities from their own requests) but only {received} were received"
                ),
                evidence,
            });
        }
    }
    out
}

/// Replays the history in order: units promised to paid orders (entering
/// `Paid` or `Confirmed` from an uncommitted status, until refunded) must
/// never exceed the units received so far. Catches an oversell that a later
/// refund hid from the final state, and says when it first happened.
fn oversold_over_time(facts: &Facts<'_>) -> Vec<Violation> {
    let mut received: BTreeMap<&Sku, u64> = BTreeMap::new();
    let mut promised: BTreeMap<&Sku, (u64, Vec<usize>)> = BTreeMap::new();
    let mut out: BTreeMap<&Sku, Violation> = BTreeMap::new();
    for (i, event) in facts.history.indexed() {
        match &event.kind {
            EventKind::Stocked { sku, qty } => {
                let r = received.entry(sku).or_default();
                *r = r.saturating_add(*qty);
            }
            EventKind::Transition(t) if committed(t.to) != committed(t.from) => {
                let Some(order) = facts.orders.get(&t.order) else {
                    continue;
                };
                for line in &order.lines {
                    let entry = promised.entry(&line.sku).or_default();
                    if committed(t.to) {
                        entry.0 += u64::from(line.qty);
                        entry.1.push(i);
                    } else {
                        entry.0 = entry.0.saturating_sub(u64::from(line.qty));
                    }
                    let have = received.get(&line.sku).copied().unwrap_or(0);
                    if entry.0 > have && !out.contains_key(&line.sku) {
                        out.insert(
                            &line.sku,
                            Violation {
                                subject: Subject::Sku(line.sku.clone()),
                                detail: format!(
                                    "at {} paid orders held {} units but only {have} had been received",
                                    event.at, entry.0
                                ),
                                evidence: {
                                    let mut e = entry.1.clone();
                                    e.extend(facts.received_evidence(&line.sku));
                                    e.sort_unstable();
                                    e
                                },
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }
    out.into_values().collect()
}

fn stock_conserved(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut held_by_reservations: BTreeMap<&Sku, u64> = BTreeMap::new();
    for r in &facts.state.reservations {
        for a in &r.allocations {
            *held_by_reservations.entry(&a.sku).or_default() += a.qty;
        }
    }
    let customers = facts.sold_to_customers();
    for sku in facts.skus() {
        let level = facts.state.stock.get(sku).copied().unwrap_or_default();
        let received = facts.received(sku);
        let evidence = facts.received_evidence(sku);
        let mut problems = Vec::new();
        let sum = u128::from(level.available) + u128::from(level.reserved) + u128::from(level.sold);
        if sum != u128::from(received) {
            problems.push(format!(
                "available {} + reserved {} + sold {} = {sum}, but {received} were received",
                level.available, level.reserved, level.sold
            ));
        }
        let (confirmed, _) = facts.units_where(sku, |s| s == OrderStatus::Confirmed);
        if level.sold != confirmed {
            problems.push(format!(
                "sold counter {} but confirmed orders hold {confirmed}",
                level.sold
            ));
        }
        let mut evidence = evidence;
        if let Some((sold, shown)) = customers.get(sku)
            && level.sold < *sold
        {
            problems.push(format!(
                "sold counter {} but customers were shown {sold} units confirmed and charged",
                level.sold
            ));
            evidence.extend(shown);
            evidence.sort_unstable();
        }
        let (holding, _) = facts.units_where(sku, OrderStatus::holds_reservation);
        let reserved = held_by_reservations.get(sku).copied().unwrap_or(0);
        if level.reserved != reserved || reserved != holding {
            problems.push(format!(
                "reserved counter {}, live reservations hold {reserved}, orders holding stock need {holding}",
                level.reserved
            ));
        }
        if !problems.is_empty() {
            out.push(Violation {
                subject: Subject::Sku(sku.clone()),
                detail: problems.join("; "),
                evidence,
            });
        }
    }
    out
}

fn single_charge(facts: &Facts<'_>) -> Vec<Violation> {
    facts
        .ledger
        .iter()
        .filter_map(|(order, lines)| {
            let charges: Vec<_> = lines.iter().filter(|l| l.1 == LedgerKind::Charge).collect();
            (charges.len() > 1).then(|| Violation {
                subject: Subject::Order(*order),
                detail: format!(
                    "charged {} times: {}",
                    charges.len(),
                    charges
                        .iter()
                        .map(|c| format!("{} on {}", c.2, c.3))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                evidence: charges.iter().map(|c| c.0).collect(),
            })
        })
        .collect()
}

fn place_key(op: &ClientOp) -> Option<&IdempotencyKey> {
    match op {
        ClientOp::PlaceOrder(p) => p.key.as_ref(),
        _ => None,
    }
}

/// One key, one order — and one order, one key: a key never places two
/// orders (by the shop's record or what clients were told), and an order is
/// never acknowledged to placements under two keys (or to two placements
/// made without one), whatever the shop marks as a replay.
fn one_order_per_key(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = orders_told_to_several_keys(facts);
    let mut by_key: BTreeMap<&IdempotencyKey, Vec<OrderId>> = BTreeMap::new();
    for order in facts.orders.values() {
        if let Some(key) = &order.idempotency_key {
            by_key.entry(key).or_default().push(order.id);
        }
    }
    let mut told: BTreeMap<&IdempotencyKey, BTreeMap<OrderId, Vec<usize>>> = BTreeMap::new();
    for ex in &facts.exchanges {
        if let (Some(key), ClientReply::OrderAccepted { order, .. }) = (place_key(ex.op), ex.reply)
        {
            told.entry(key)
                .or_default()
                .entry(*order)
                .or_default()
                .push(ex.response);
        }
    }
    let keys: BTreeSet<_> = by_key.keys().chain(told.keys()).copied().collect();
    for key in keys {
        let mut orders: BTreeSet<OrderId> =
            by_key.get(key).into_iter().flatten().copied().collect();
        let told_orders = told.get(key);
        orders.extend(told_orders.into_iter().flat_map(|m| m.keys().copied()));
        if orders.len() > 1 {
            let mut evidence: Vec<usize> = told_orders
                .into_iter()
                .flat_map(|m| m.values().flatten())
                .copied()
                .collect();
            evidence.extend(
                facts.transitions_into(&orders.iter().copied().collect::<Vec<_>>(), |_| true),
            );
            evidence.sort_unstable();
            out.push(Violation {
                subject: Subject::Key(key.clone()),
                detail: format!(
                    "one key, {} orders: {}",
                    orders.len(),
                    orders
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                evidence,
            });
        }
    }
    out
}

/// Orders acknowledged to placements under more than one key: each
/// placement made without a key counts as a key of its own.
fn orders_told_to_several_keys(facts: &Facts<'_>) -> Vec<Violation> {
    let mut told: BTreeMap<OrderId, BTreeMap<Result<&IdempotencyKey, usize>, usize>> =
        BTreeMap::new();
    for ex in &facts.exchanges {
        if let (ClientOp::PlaceOrder(asked), ClientReply::OrderAccepted { order, .. }) =
            (ex.op, ex.reply)
        {
            let key = asked.key.as_ref().ok_or(ex.request);
            told.entry(*order)
                .or_default()
                .entry(key)
                .or_insert(ex.response);
        }
    }
    told.into_iter()
        .filter(|(_, keys)| keys.len() > 1)
        .map(|(order, keys)| {
            let names: Vec<String> = keys
                .keys()
                .map(|k| match k {
                    Ok(key) => key.to_string(),
                    Err(request) => format!("no key (request at event {request})"),
                })
                .collect();
            let mut evidence: Vec<usize> = keys.values().copied().collect();
            evidence.sort_unstable();
            Violation {
                subject: Subject::Order(order),
                detail: format!(
                    "one order, {} keys: {order} was acknowledged to placements under {}",
                    keys.len(),
                    names.join(", ")
                ),
                evidence,
            }
        })
        .collect()
}

/// One accepted answer under a key: what it said (the order id or intent it
/// carried), the request's fingerprint, and where it is in the history.
struct Answer {
    story: String,
    fingerprint: Option<Fingerprint>,
    request: usize,
    response: usize,
}

/// Replays are told apart from re-executions by what each answer carried (the
/// order id, the intent and amount), never by the shop's own
/// `Idempotent-Replayed` marker: a shop that executes a keyed request twice
/// shows it by answering with a second order or intent, whatever it labels it.
fn idempotent_replay(facts: &Facts<'_>) -> Vec<Violation> {
    // Answers per (endpoint, key). Responses may arrive in any order (a replay can
    // overtake the original on the network), so nothing here depends on order.
    let mut by_key: BTreeMap<(&'static str, &IdempotencyKey), Vec<Answer>> = BTreeMap::new();
    for ex in &facts.exchanges {
        let (endpoint, key) = match ex.op {
            ClientOp::PlaceOrder(p) => ("orders", p.key.as_ref()),
            ClientOp::Pay { key, .. } => ("pay", key.as_ref()),
            _ => continue,
        };
        let Some(key) = key else { continue };
        let story = match ex.reply {
            ClientReply::OrderAccepted { order, .. } => format!("accepted {order}"),
            ClientReply::PaymentStarted {
                order,
                intent,
                amount,
                ..
            } => format!("pay {intent} for {amount} on {order}"),
            _ => continue,
        };
        by_key.entry((endpoint, key)).or_default().push(Answer {
            story,
            fingerprint: ex.fingerprint,
            request: ex.request,
            response: ex.response,
        });
    }
    let mut out = Vec::new();
    for ((_, key), answers) in by_key {
        // The reference answer: the earliest reply (exchanges are in response order).
        let reference = &answers[0];
        let mut problems = Vec::new();
        let mut evidence = vec![reference.request, reference.response];
        for a in &answers[1..] {
            if a.story != reference.story {
                problems.push(format!(
                    "executed again instead of replayed: one answer said {:?}, another {:?}",
                    reference.story, a.story
                ));
                evidence.extend([a.request, a.response]);
            }
            if a.fingerprint.is_some()
                && reference.fingerprint.is_some()
                && a.fingerprint != reference.fingerprint
            {
                problems.push(
                    "a different request under the same key was answered instead of refused (422)"
                        .to_string(),
                );
                evidence.extend([a.request, a.response]);
            }
        }
        if !problems.is_empty() {
            problems.dedup();
            evidence.sort_unstable();
            evidence.dedup();
            out.push(Violation {
                subject: Subject::Key(key.clone()),
                detail: problems.join("; "),
                evidence,
            });
        }
    }
    out
}

fn legal_transitions(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = observed_regressions(facts);
    out.extend(paid_without_a_charge(facts));
    for (order, indices) in &facts.transitions {
        let mut current = OrderStatus::Created;
        for &i in indices {
            let EventKind::Transition(t) = &facts.history.events()[i].kind else {
                unreachable!("indexed transitions")
            };
            let problem = if t.from != current {
                Some(format!(
                    "recorded {} -> {} but the order was {current}",
                    t.from, t.to
                ))
            } else if !t.from.can_become(t.to) {
                Some(format!(
                    "{} -> {} is not an edge of the state machine",
                    t.from, t.to
                ))
            } else {
                None
            };
            if let Some(detail) = problem {
                out.push(Violation {
                    subject: Subject::Order(*order),
                    detail,
                    evidence: vec![i],
                });
                break;
            }
            current = t.to;
        }
    }
    // The shop's own records must agree with the machine too.
    for order in facts.orders.values() {
        let mut current = OrderStatus::Created;
        for t in order.transitions() {
            if t.from != current || !t.from.can_become(t.to) {
                out.push(Violation {
                    subject: Subject::Order(order.id),
                    detail: format!(
                        "the order's own record has {} -> {} while it was {current}",
                        t.from, t.to
                    ),
                    evidence: Vec::new(),
                });
                break;
            }
            current = t.to;
        }
        if current != order.status() {
            out.push(Violation {
                subject: Subject::Order(order.id),
                detail: format!(
                    "status is {} but its transitions end at {current}",
                    order.status()
                ),
                evidence: Vec::new(),
            });
        }
    }
    out
}

/// What each client saw, judged per client: a client polls one order at a
/// time, so the statuses it was shown must only move forward along the state
/// machine (skipping states is fine: polls miss some), and the shop's final
/// record must lie ahead of the last one it was shown.
fn observed_regressions(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for ((client, order), seen) in &facts.observed {
        let mut regression = seen.windows(2).find_map(|pair| {
            let ((i, from), (j, to)) = (pair[0], pair[1]);
            (!from.can_reach(to)).then(|| {
                (
                    format!("client {client} was shown {from}, then {to}: the state machine never goes back"),
                    vec![i, j],
                )
            })
        });
        if regression.is_none()
            && let (Some(&(i, last)), Some(kept)) = (seen.last(), facts.orders.get(order))
            && !last.can_reach(kept.status())
        {
            regression = Some((
                format!(
                    "client {client} was shown {last}, but the shop's record ends {}",
                    kept.status()
                ),
                vec![i],
            ));
        }
        if let Some((detail, evidence)) = regression {
            out.push(Violation {
                subject: Subject::Order(*order),
                detail,
                evidence,
            });
        }
    }
    out
}

/// The PSP's view: a client shown an order paid or confirmed means the PSP
/// charged it; payment is authoritative from the PSP, never from the shop's say-so.
fn paid_without_a_charge(facts: &Facts<'_>) -> Vec<Violation> {
    let mut shown: BTreeMap<OrderId, (usize, OrderStatus)> = BTreeMap::new();
    for ((_, order), seen) in &facts.observed {
        if let Some(&(i, status)) = seen.iter().find(|(_, s)| committed(*s)) {
            shown.entry(*order).or_insert((i, status));
        }
    }
    shown
        .into_iter()
        .filter(|(order, _)| {
            !facts
                .ledger
                .get(order)
                .is_some_and(|lines| lines.iter().any(|l| l.1 == LedgerKind::Charge))
        })
        .map(|(order, (i, status))| Violation {
            subject: Subject::Order(order),
            detail: format!("a client was shown {order} {status}, but the PSP never charged it"),
            evidence: vec![i],
        })
        .collect()
}

fn no_lost_acknowledged_order(facts: &Facts<'_>) -> Vec<Violation> {
    let mut seen = BTreeSet::new();
    let mut answered_keys = BTreeSet::new();
    let mut out = Vec::new();
    for ex in &facts.exchanges {
        let ClientReply::OrderAccepted { order, .. } = ex.reply else {
            continue;
        };
        // The first acknowledgement under a key (by the clients' evidence, not the shop's
        // `Idempotent-Replayed` marker) must name the very order that was asked for; later
        // ones under the same key are replays, judged by idempotent_replay.
        let first_under_its_key = match ex.op {
            ClientOp::PlaceOrder(asked) => {
                asked.key.as_ref().is_none_or(|k| answered_keys.insert(k))
            }
            _ => false,
        };
        let detail = match (facts.orders.get(order), ex.op) {
            (None, _) => {
                format!("a client was told {order} was accepted, but the shop has no such order")
            }
            (Some(kept), ClientOp::PlaceOrder(asked))
                if first_under_its_key && !is_same_order(kept, asked) =>
            {
                format!(
                    "a client was told {order} was accepted for {} ({}), but the shop's {order} is {}'s ({})",
                    asked.customer,
                    describe_items(asked.items.iter().map(|i| (&i.sku, i.qty))),
                    kept.customer,
                    describe_items(kept.lines.iter().map(|l| (&l.sku, l.qty))),
                )
            }
            _ => continue,
        };
        if seen.insert(*order) {
            out.push(Violation {
                subject: Subject::Order(*order),
                detail,
                evidence: vec![ex.request, ex.response],
            });
        }
    }
    out
}

fn is_same_order(kept: &Order, asked: &PlaceOrder) -> bool {
    kept.customer == asked.customer
        && kept.lines.len() == asked.items.len()
        && kept
            .lines
            .iter()
            .zip(&asked.items)
            .all(|(l, i)| l.sku == i.sku && l.qty == i.qty)
}

fn describe_items<'s>(items: impl Iterator<Item = (&'s Sku, u32)>) -> String {
    items
        .map(|(sku, qty)| format!("{qty}x{sku}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn money_reconciles(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for order in facts.orders.values() {
        let mut problems = Vec::new();
        for line in &order.lines {
            if let Some(price) = facts.listed.get(&line.sku)
                && *price != line.unit_price
            {
                problems.push(format!(
                    "{} priced {} but listed at {price}",
                    line.sku, line.unit_price
                ));
            }
        }
        let lines_total = Cents::checked_sum(
            order
                .lines
                .iter()
                .map(|l| l.unit_price.checked_mul(l.qty).unwrap_or(Cents(u64::MAX))),
        );
        match lines_total {
            Ok(sum) if sum == order.total => {}
            Ok(sum) => problems.push(format!(
                "total is {} but its lines add up to {sum}",
                order.total
            )),
            Err(_) => problems.push("its lines overflow the money type".to_string()),
        }
        let lines = facts
            .ledger
            .get(&order.id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (_, kind, amount, intent) in lines {
            if *kind == LedgerKind::Charge && *amount != order.total {
                problems.push(format!(
                    "charged {amount} on {intent} but the order total is {}",
                    order.total
                ));
            }
        }
        let (net, evidence) = facts.net_captured(order.id);
        if order.status() == OrderStatus::Confirmed && net != i128::from(order.total.0) {
            problems.push(format!(
                "confirmed for {} but {net} cents are captured",
                order.total
            ));
        }
        if net < 0 {
            problems.push(format!("refunded more than was charged (net {net} cents)"));
        }
        if !problems.is_empty() {
            out.push(Violation {
                subject: Subject::Order(order.id),
                detail: problems.join("; "),
                evidence,
            });
        }
    }
    for (order, lines) in &facts.ledger {
        if !facts.orders.contains_key(order) {
            out.push(Violation {
                subject: Subject::Order(*order),
                detail: "the PSP moved money for an order the shop does not have".into(),
                evidence: lines.iter().map(|l| l.0).collect(),
            });
        }
    }
    out
}

/// Every captured payment ends confirmed or refunded, and every order a
/// client was told was accepted reaches a decision (confirmed, cancelled or
/// refunded) by the end, whatever state the world was left in.
fn eventual_confirmation(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out: Vec<Violation> = facts
        .orders
        .values()
        .filter_map(|order| {
            let (net, evidence) = facts.net_captured(order.id);
            let detail = match order.status() {
                OrderStatus::Confirmed => return None,
                status if net > 0 => format!("{net} cents captured but the order ended {status}, neither confirmed nor refunded"),
                _ => return None,
            };
            Some(Violation { subject: Subject::Order(order.id), detail, evidence })
        })
        .collect();
    let flagged: BTreeSet<Subject> = out.iter().map(|v| v.subject.clone()).collect();
    for (order, (_, acked, _)) in &facts.acknowledged {
        let Some(kept) = facts.orders.get(order) else {
            continue; // judged by no_lost_acknowledged_order
        };
        if kept.status().is_final() || flagged.contains(&Subject::Order(*order)) {
            continue;
        }
        let mut evidence = vec![*acked];
        evidence.extend(facts.transitions.get(order).and_then(|t| t.last()));
        out.push(Violation {
            subject: Subject::Order(*order),
            detail: format!(
                "acknowledged at {} but still {} since {} at the end: never confirmed, cancelled or refunded",
                facts.history.events()[*acked].at,
                kept.status(),
                kept.status_since()
            ),
            evidence,
        });
    }
    out
}

fn no_stuck_orders(facts: &Facts<'_>) -> Vec<Violation> {
    facts
        .orders
        .values()
        .filter(|o| !o.status().is_final())
        .map(|o| Violation {
            subject: Subject::Order(o.id),
            detail: format!("still {} since {} at the end", o.status(), o.status_since()),
            evidence: facts
                .transitions
                .get(&o.id)
                .and_then(|t| t.last())
                .copied()
                .into_iter()
                .collect(),
        })
        .collect()
}

fn no_reservation_leak(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for r in &facts.state.reservations {
        let status = facts.orders.get(&r.order).map(|o| o.status());
        if !status.is_some_and(OrderStatus::holds_reservation) {
            out.push(Violation {
                subject: Subject::Order(r.order),
                detail: format!(
                    "reservation {} still holds stock but the order is {}",
                    r.id,
                    status.map_or("unknown".to_string(), |s| s.to_string())
                ),
                // The order's jobs too: a reservation left behind by a redelivered
                // job shows as a second lease of the job that reserved.
                evidence: {
                    let mut e = facts.transitions.get(&r.order).cloned().unwrap_or_default();
                    e.extend(facts.jobs.get(&r.order).into_iter().flatten());
                    e.sort_unstable();
                    e
                },
            });
        }
    }
    for (sku, level) in &facts.state.stock {
        if level.reserved > 0 {
            out.push(Violation {
                subject: Subject::Sku(sku.clone()),
                detail: format!("{} units still reserved at the end", level.reserved),
                evidence: Vec::new(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Progress: willing buyers, unsold stock, timely decisions.
//
// A *willing buyer* is a client whose own plan (its `Wants` event) says it
// means to pay and keep the order with a card the PSP accepts. A buyer that
// thinks longer than the hold the scenario promises (`Terms::hold_ms`, less
// [`PAY_FLOW_ALLOWANCE_MS`] for the payment itself) is *late by its own plan*:
// not paying in time is its own doing, so it is judged only on what the shop
// owes it before it starts thinking (being offered payment in time, not being
// turned away while stock was left), never on being served once offered.
// Its order is linked to its plan by the Idempotency-Key
// it placed the order with; "acknowledged" means a client was answered 202
// with an order id under that key.
//
// *Served* is judged from evidence the shop cannot fake: the PSP's ledger
// holds money for the order, and a client was shown it confirmed (or the
// shop's final record says confirmed — a buyer may stop watching).
//
// Not being served is *justified* only when the order was cancelled (or a
// placement refused) out of stock while there was no room for it: for some
// SKU it asked for, the units customers were sold (shown confirmed, charged,
// quantities from their own requests) plus its own quantity exceed the
// units received. A willing buyer whose journey (first request to last
// answer or observation) overlaps a `SalesAtRisk` window is not a violation
// but a sale lost to the fault, counted in `Verdict::lost_to_faults`.
// ---------------------------------------------------------------------------

/// A status that shows the client was (or had been) offered payment.
fn is_offer(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::PaymentPending | OrderStatus::Paid | OrderStatus::Confirmed
    )
}

/// Problem types of a placement refused because the stock is gone.
const OUT_OF_STOCK_PROBLEMS: [&str; 2] = ["out-of-stock", "sold-out"];

/// Problem types of a placement refused by a rule the shop declares: the
/// buyer asked for more than one customer may buy, or sent its own prices.
/// Each excuses the refusal only when the evidence bears it out (a limit the
/// catalog sets that the request, with the customer's other orders, passes;
/// a buyer whose plan sends prices): otherwise it is a pretext, and counts
/// as turning the buyer away. Any other refusal of a willing buyer (a 404,
/// a 500, a body the client cannot read) is the shop turning away a sale —
/// shed load (429 `overloaded`) and rate limits included: shedding is fair
/// only if the buyer gets in on a retry or the stock sells anyway, which the
/// judge sees from the evidence, not from the shop's reason.
const DECLARED_REFUSALS: [&str; 2] = ["purchase-limit", "client-price-not-accepted"];

/// One client's journey as a buyer: its plan and what it was told.
struct Journey<'a> {
    /// The `Wants` event.
    wants: usize,
    client: u64,
    key: &'a IdempotencyKey,
    wish: Wish,
    /// What it asked for (its first place-order request under its key).
    asked: Option<&'a PlaceOrder>,
    /// Its first request, if it made one.
    first: Option<usize>,
    /// The last event of its journey (request, answer or observation).
    last: usize,
    /// The order it was acknowledged, with the answer's index.
    ack: Option<(OrderId, usize)>,
    /// A placement refused out of stock (the answer's index).
    refused_out_of_stock: Option<usize>,
    /// The first placement refused for no declared reason: the answer's
    /// index, its status and problem type.
    refused_otherwise: Option<(usize, u16, &'a str)>,
    /// Some placement under its key got an answer (anything but no response).
    answered: bool,
}

impl Journey<'_> {
    fn describe(&self) -> String {
        let items = self
            .asked
            .map(|a| describe_items(a.items.iter().map(|i| (&i.sku, i.qty))))
            .unwrap_or_else(|| "nothing".into());
        format!("willing buyer {} (key {}, {items})", self.client, self.key)
    }
}

/// Why a willing buyer was not served, or that it was.
enum Fate {
    /// Charged and confirmed.
    Served,
    /// Cancelled or refused out of stock with no room left for it: justified.
    NoRoom,
    /// Not served, and nothing justifies it: what happened, and the step at
    /// which the shop failed the buyer.
    Unserved(String, JourneyStep),
}

impl<'a> Facts<'a> {
    /// Every client's journey, in `Wants` order.
    fn journeys(&self) -> Vec<Journey<'a>> {
        let mut journeys: Vec<Journey<'a>> = self
            .wants
            .iter()
            .map(|&(wants, client, key, wish)| Journey {
                wants,
                client,
                key,
                wish,
                asked: None,
                first: None,
                last: wants,
                ack: None,
                refused_out_of_stock: None,
                refused_otherwise: None,
                answered: false,
            })
            .collect();
        self.follow_placements(&mut journeys);
        self.follow_orders(&mut journeys);
        journeys
    }

    /// What each journey's placements (linked by its Idempotency-Key) were answered.
    fn follow_placements(&self, journeys: &mut [Journey<'a>]) {
        let by_key: BTreeMap<&IdempotencyKey, usize> = journeys
            .iter()
            .enumerate()
            .map(|(n, j)| (j.key, n))
            .collect();
        for ex in &self.exchanges {
            let ClientOp::PlaceOrder(asked) = ex.op else {
                continue;
            };
            let Some(&n) = asked.key.as_ref().and_then(|k| by_key.get(k)) else {
                continue;
            };
            let j = &mut journeys[n];
            j.asked.get_or_insert(asked);
            j.first = Some(j.first.map_or(ex.request, |f| f.min(ex.request)));
            j.last = j.last.max(ex.response);
            j.answered |= !matches!(ex.reply, ClientReply::NoResponse { .. });
            match ex.reply {
                ClientReply::OrderAccepted { order, .. } if j.ack.is_none() => {
                    j.ack = Some((*order, ex.response));
                }
                ClientReply::Refused { problem, .. }
                    if OUT_OF_STOCK_PROBLEMS.contains(&problem.as_str()) =>
                {
                    j.refused_out_of_stock.get_or_insert(ex.response);
                }
                ClientReply::Refused { status, problem }
                    if !DECLARED_REFUSALS.contains(&problem.as_str())
                        || !self.refusal_has_cause(j.wish, asked, problem) =>
                {
                    j.refused_otherwise
                        .get_or_insert((ex.response, *status, problem.as_str()));
                }
                _ => {}
            }
        }
    }

    /// Whether a declared refusal of `asked` is borne out by the evidence: a
    /// buyer whose plan sends its own prices, for `client-price-not-accepted`;
    /// for `purchase-limit`, a SKU the catalog limits whose units asked, with
    /// those of the customer's other acknowledged orders (live or not: the
    /// doubt goes to the shop), pass the limit.
    fn refusal_has_cause(&self, wish: Wish, asked: &PlaceOrder, problem: &str) -> bool {
        match problem {
            "client-price-not-accepted" => wish.sends_prices,
            "purchase-limit" => asked.items.iter().any(|item| {
                self.limits.get(&item.sku).is_some_and(|&limit| {
                    let held = self
                        .held
                        .get(&(&asked.customer, &item.sku))
                        .copied()
                        .unwrap_or(0);
                    held.saturating_add(u64::from(item.qty)) > u64::from(limit)
                })
            }),
            _ => false,
        }
    }

    /// How long each acknowledged journey went on with its order: its last
    /// request about it, or the last status its own client was shown.
    fn follow_orders(&self, journeys: &mut [Journey<'a>]) {
        let by_order: BTreeMap<OrderId, usize> = journeys
            .iter()
            .enumerate()
            .filter_map(|(n, j)| j.ack.map(|(order, _)| (order, n)))
            .collect();
        for ex in &self.exchanges {
            let order = match ex.op {
                ClientOp::Pay { order, .. }
                | ClientOp::Cancel { order }
                | ClientOp::GetOrder { order } => order,
                _ => continue,
            };
            if let Some(&n) = by_order.get(order) {
                journeys[n].last = journeys[n].last.max(ex.response);
            }
        }
        for ((client, order), seen) in &self.observed {
            if let (Some(&n), Some(&(i, _))) = (by_order.get(order), seen.last())
                && journeys[n].client == *client
            {
                journeys[n].last = journeys[n].last.max(i);
            }
        }
    }

    /// A buyer that thinks longer than the hold leaves room for: its unpaid
    /// hold lapsing is its own doing, but being offered payment is not.
    fn late_by_plan(&self, wish: &Wish) -> bool {
        !wish.express
            && self
                .terms
                .hold_ms
                .is_some_and(|hold| wish.think_ms.saturating_add(PAY_FLOW_ALLOWANCE_MS) > hold)
    }

    fn at(&self, index: usize) -> Millis {
        self.history.events()[index].at
    }

    /// Each order's first event showing a client its units given back
    /// (cancelled or refunded).
    fn released(&self) -> BTreeMap<OrderId, usize> {
        let mut out: BTreeMap<OrderId, usize> = BTreeMap::new();
        for (&(_, order), seen) in &self.observed {
            let gave_back = seen
                .iter()
                .find(|(_, s)| matches!(s, OrderStatus::Cancelled(_) | OrderStatus::Refunded));
            if let Some(&(i, _)) = gave_back {
                let first = out.entry(order).or_insert(i);
                *first = (*first).min(i);
            }
        }
        out
    }

    /// Whether, by the evidence, `order` (asking for `asked`) could not be
    /// filled at `t` because some SKU's units received by then were all
    /// spoken for by other orders: each shown offered by `t` and not shown
    /// given back by then, and either shown confirmed by `t` (sold) or in a
    /// hold that cannot have lapsed (a reservation starts no earlier than
    /// its order's request, so a hold runs at least until the request's time
    /// plus the hold; with no hold promised, a hold never lapses).
    ///
    /// Asked only of a buyer not yet offered payment at `t`, whose own
    /// order therefore holds nothing in `spoken` then.
    /// Were the units `order` asked for (any of its items) all spoken for by
    /// others when it was acknowledged at `t`? Its own units, counted in
    /// `spoken` from `t` when it was offered later, are not others'.
    fn all_spoken_for(
        &self,
        order: OrderId,
        asked: &PlaceOrder,
        t: Millis,
        spoken: &SpokenFor<'a>,
    ) -> bool {
        let own = self.offered.contains_key(&order);
        asked.items.iter().any(|item| {
            let received = self.received_by(&item.sku, t);
            let mut taken = spoken.at(&item.sku, t);
            if own {
                taken = taken.saturating_sub(u64::from(item.qty));
            }
            taken.saturating_add(u64::from(item.qty)) > received
        })
    }

    /// Units of `sku` received by `t`.
    fn received_by(&self, sku: &Sku, t: Millis) -> u64 {
        self.received.get(sku).map_or(0, |(_, stocked)| {
            stocked
                .iter()
                .filter(|&&i| self.at(i) <= t)
                .map(|&i| match &self.history.events()[i].kind {
                    EventKind::Stocked { qty, .. } => *qty,
                    _ => 0,
                })
                .sum()
        })
    }

    /// When `order` (requested at event `request`, acknowledged at event
    /// `acked`) has its units spoken for, by the evidence: if a client was
    /// ever offered its payment, from its acknowledgement — from then on it
    /// is in line ahead of every later buyer, whether or not a client has
    /// yet seen its units reserved — until it was shown given back, while
    /// its hold cannot have lapsed or once it was shown confirmed; at most
    /// two spans `[from, until)` of ms (`u64::MAX`: no end).
    fn spoken_spans(
        &self,
        order: OrderId,
        (request, acked): (usize, usize),
        released: &BTreeMap<OrderId, usize>,
    ) -> HeldSpans {
        if !self.offered.contains_key(&order) {
            return [None, None];
        }
        let from = self.at(acked).0;
        let until = released.get(&order).map_or(u64::MAX, |&i| self.at(i).0);
        let lapses = self
            .terms
            .hold_ms
            .map_or(u64::MAX, |hold| self.at(request).plus_ms(hold).0);
        let confirmed = self
            .seen_confirmed
            .get(&order)
            .map_or(u64::MAX, |&i| self.at(i).0);
        held_spans(from, until, lapses, confirmed)
    }

    /// When the judged world ends: the snapshot's time, or the last event if later.
    fn end(&self) -> Millis {
        let last = self.history.events().last().map_or(Millis(0), |e| e.at);
        last.max(self.state.at)
    }

    /// A fault window the scenario allows to cost sales that overlaps `from..=to`.
    fn at_risk_during(
        &self,
        from: Millis,
        to: Millis,
        step: JourneyStep,
    ) -> Option<(usize, &'a str)> {
        self.at_risk
            .iter()
            .find(|(_, start, until, _, steps)| {
                *start <= to && *until >= from && steps.contains(&step)
            })
            .map(|&(i, _, _, fault, _)| (i, fault))
    }

    /// The journey's fault window, if one excuses it.
    fn excuse(&self, j: &Journey<'_>, step: JourneyStep) -> Option<(usize, &'a str)> {
        let from = self.at(j.first.unwrap_or(j.wants));
        self.at_risk_during(from, self.at(j.last), step)
    }

    /// Was some client shown `order` in `status`?
    fn was_shown(&self, order: OrderId, status: OrderStatus) -> bool {
        self.shown
            .get(&order)
            .is_some_and(|shown| shown.contains(&status))
    }

    /// Did the order end in `status`, by the shop's final record or by what a client was shown?
    fn ended(&self, order: OrderId, status: OrderStatus) -> bool {
        self.orders
            .get(&order)
            .is_some_and(|o| o.status() == status)
            || self.was_shown(order, status)
    }

    /// A SKU of `asked` with no room left for it: units sold to customers
    /// plus the quantity asked exceed the units received.
    fn no_room(
        &self,
        asked: &PlaceOrder,
        sold: &BTreeMap<&'a Sku, (u64, Vec<usize>)>,
    ) -> Option<(Sku, u64, u64)> {
        asked.items.iter().find_map(|item| {
            let sold = sold.get(&item.sku).map_or(0, |s| s.0);
            let received = self.received(&item.sku);
            (sold.saturating_add(u64::from(item.qty)) > received)
                .then(|| (item.sku.clone(), sold, received))
        })
    }

    /// What became of an acknowledged order of a willing buyer.
    fn fate(
        &self,
        j: &Journey<'_>,
        order: OrderId,
        sold: &BTreeMap<&'a Sku, (u64, Vec<usize>)>,
    ) -> Fate {
        let (net, _) = self.net_captured(order);
        let confirmed = self.seen_confirmed.contains_key(&order)
            || self
                .orders
                .get(&order)
                .is_some_and(|o| o.status() == OrderStatus::Confirmed);
        if net > 0 && confirmed {
            return Fate::Served;
        }
        let out_of_stock = OrderStatus::Cancelled(CancelReason::OutOfStock);
        if self.ended(order, out_of_stock) && j.asked.and_then(|a| self.no_room(a, sold)).is_some()
        {
            return Fate::NoRoom;
        }
        let status = self.orders.get(&order).map_or_else(
            || "unknown to the shop".to_string(),
            |o| format!("ended {}", o.status()),
        );
        let (what, step) = if self.ended(order, out_of_stock) {
            let unsold: Vec<String> = j
                .asked
                .into_iter()
                .flat_map(|a| &a.items)
                .map(|item| {
                    let sold = sold.get(&item.sku).map_or(0, |s| s.0);
                    let received = self.received(&item.sku);
                    format!(
                        "{} of {received} {} never sold",
                        received.saturating_sub(sold),
                        item.sku
                    )
                })
                .collect();
            (
                format!("was cancelled out of stock while {}", unsold.join(", ")),
                JourneyStep::Offer,
            )
        } else if net > 0 {
            (
                format!("the PSP holds {net} cents for it but it was never confirmed ({status})"),
                JourneyStep::Payment,
            )
        } else if !j.wish.express && !self.offered.contains_key(&order) {
            (
                format!("was never offered payment ({status})"),
                JourneyStep::Offer,
            )
        } else {
            (
                format!("was never charged ({status})"),
                JourneyStep::Payment,
            )
        };
        Fate::Unserved(what, step)
    }

    /// Evidence for a journey's order: the plan, the acknowledgement, the
    /// first offer, the last transition and the ledger.
    fn journey_evidence(&self, j: &Journey<'_>, order: OrderId) -> Vec<usize> {
        let mut evidence = vec![j.wants, j.last];
        evidence.extend(j.ack.map(|(_, i)| i));
        evidence.extend(self.offered.get(&order));
        evidence.extend(self.transitions.get(&order).and_then(|t| t.last()));
        evidence.extend(self.net_captured(order).1);
        evidence.sort_unstable();
        evidence.dedup();
        evidence
    }
}

/// Every willing buyer whose order was acknowledged ends with a confirmed,
/// charged order, unless it was cancelled out of stock with no room left for
/// it, or the scenario allowed a fault during its journey to cost the sale;
/// and every willing buyer that placed an order got some answer to it (one
/// never answered is not served, whatever the shop's records say).
fn willing_buyers_served(facts: &Facts<'_>) -> Verdict {
    let sold = facts.bought();
    let (mut out, mut lost) = (Vec::new(), Vec::new());
    for j in facts.journeys() {
        if !j.wish.willing() {
            continue;
        }
        let Some((order, acked)) = j.ack else {
            out.extend(never_answered(facts, &j, &sold, &mut lost));
            continue;
        };
        let Fate::Unserved(what, step) = facts.fate(&j, order, &sold) else {
            continue;
        };
        // Late by its own plan: only never being offered payment is the shop's doing.
        if facts.late_by_plan(&j.wish) && facts.offered.contains_key(&order) {
            continue;
        }
        let mut v = Violation {
            subject: Subject::Order(order),
            detail: format!(
                "{} was acknowledged {order} at {} but {what}",
                j.describe(),
                facts.at(acked)
            ),
            evidence: facts.journey_evidence(&j, order),
        };
        match facts.excuse(&j, step) {
            Some((window, fault)) => {
                v.detail = format!("{} — lost to the fault {fault}", v.detail);
                v.evidence.push(window);
                lost.push(v);
            }
            None => out.push(v),
        }
    }
    Verdict::with_losses(Invariant::WillingBuyersServed, out, lost)
}

/// A willing buyer that placed its order and never got an answer to any
/// attempt: not served (or lost to a fault the scenario allows), unless there
/// was no room left for what it asked.
fn never_answered<'a>(
    facts: &Facts<'a>,
    j: &Journey<'_>,
    sold: &BTreeMap<&'a Sku, (u64, Vec<usize>)>,
    lost: &mut Vec<Violation>,
) -> Option<Violation> {
    let first = j.first.filter(|_| !j.answered)?;
    if j.asked
        .is_some_and(|asked| facts.no_room(asked, sold).is_some())
    {
        return None;
    }
    let v = Violation {
        subject: Subject::Key(j.key.clone()),
        detail: format!(
            "{} placed its order at {} and was never answered",
            j.describe(),
            facts.at(first)
        ),
        evidence: vec![j.wants, first, j.last],
    };
    match facts.excuse(j, JourneyStep::Answer) {
        Some((window, fault)) => {
            lost.push(Violation {
                detail: format!("{} — lost to the fault {fault}", v.detail),
                evidence: [v.evidence, vec![window]].concat(),
                ..v
            });
            None
        }
        None => Some(v),
    }
}

/// No SKU has units left unsold at the end while a willing buyer of it was
/// turned away: refused or cancelled out of stock, expired without ever
/// being offered payment, or refused for no reason the shop declares (see
/// [`DECLARED_REFUSALS`]; a buyer that only ever got no answer was not
/// refused, and is not counted). "Unsold" is received minus what customers were
/// sold by the evidence (shown confirmed, charged), not the shop's counters.
/// A buyer for one of whose SKUs there was no room is justified for every
/// SKU of its order (orders are filled whole).
fn no_sale_left_behind(facts: &Facts<'_>) -> Verdict {
    let sold = facts.bought();
    let out_of_stock = OrderStatus::Cancelled(CancelReason::OutOfStock);
    let expired = OrderStatus::Cancelled(CancelReason::Expired);
    // Per SKU: (turned-away buyers described, evidence).
    let mut behind: BTreeMap<&Sku, (Vec<String>, Vec<usize>)> = BTreeMap::new();
    let mut lost = Vec::new();
    for j in facts.journeys() {
        // Every way of being turned away (refused, cancelled out of stock, expired
        // never offered payment) comes before the buyer's thinking: late or not.
        if !j.wish.willing() {
            continue;
        }
        let Some(asked) = j.asked else { continue };
        // An order is filled whole or not at all: with no room for one of its
        // SKUs, turning it away was justified for all of them.
        if facts.no_room(asked, &sold).is_some() {
            continue;
        }
        let Some((how, step, mut evidence)) = turned_away(facts, &j, out_of_stock, expired) else {
            continue;
        };
        for item in &asked.items {
            let received = facts.received(&item.sku);
            let unsold = received.saturating_sub(sold.get(&item.sku).map_or(0, |s| s.0));
            if unsold < u64::from(item.qty) {
                continue;
            }
            let detail = format!("buyer {} ({}x, {how})", j.client, item.qty);
            if let Some((window, fault)) = facts.excuse(&j, step) {
                evidence.push(window);
                lost.push(Violation {
                    subject: Subject::Sku(item.sku.clone()),
                    detail: format!(
                        "{unsold} of {received} units unsold while {detail} — lost to the fault {fault}"
                    ),
                    evidence: evidence.clone(),
                });
                continue;
            }
            let entry = behind.entry(&item.sku).or_default();
            entry.0.push(detail);
            entry.1.extend(&evidence);
        }
    }
    let out = behind
        .into_iter()
        .map(|(sku, (buyers, evidence))| left_behind(facts, sku, &buyers, evidence, &sold))
        .collect();
    Verdict::with_losses(Invariant::NoSaleLeftBehind, out, lost)
}

/// How a judged buyer with room was turned away, with the evidence: its
/// order cancelled out of stock, expired without a payment offer, or its
/// placement refused (out of stock, or for a reason the shop does not
/// declare). `None` if it was not turned away.
fn turned_away(
    facts: &Facts<'_>,
    j: &Journey<'_>,
    out_of_stock: OrderStatus,
    expired: OrderStatus,
) -> Option<(String, JourneyStep, Vec<usize>)> {
    Some(match (j.ack, j.refused_out_of_stock) {
        (Some((order, _)), _) if facts.ended(order, out_of_stock) => (
            format!("{order} cancelled out of stock"),
            JourneyStep::Offer,
            facts.journey_evidence(j, order),
        ),
        (Some((order, _)), _)
            if !j.wish.express
                && facts.ended(order, expired)
                && !facts.offered.contains_key(&order) =>
        {
            (
                format!("{order} expired, never offered payment"),
                JourneyStep::Offer,
                facts.journey_evidence(j, order),
            )
        }
        (None, Some(refused)) => (
            "refused out of stock".to_string(),
            JourneyStep::Answer,
            vec![j.wants, refused],
        ),
        // Never acknowledged, never told the stock was gone, but refused all the same.
        (None, None) => match j.refused_otherwise {
            Some((refused, status, problem)) => (
                match problem {
                    "" => format!("refused {status} without a problem type"),
                    _ if DECLARED_REFUSALS.contains(&problem) => format!(
                        "refused {status} {problem} with no cause in the evidence (no limit passed, no price of its own sent)"
                    ),
                    _ => format!("refused {status} {problem}"),
                },
                JourneyStep::Answer,
                vec![j.wants, refused],
            ),
            None => return None,
        },
        _ => return None,
    })
}

/// The violation for `sku`: its unsold units and the buyers turned away.
fn left_behind(
    facts: &Facts<'_>,
    sku: &Sku,
    buyers: &[String],
    mut evidence: Vec<usize>,
    sold: &BTreeMap<&Sku, (u64, Vec<usize>)>,
) -> Violation {
    let received = facts.received(sku);
    let unsold = received.saturating_sub(sold.get(sku).map_or(0, |s| s.0));
    evidence.extend(facts.received_evidence(sku));
    evidence.sort_unstable();
    evidence.dedup();
    let shown: Vec<&str> = buyers.iter().take(5).map(String::as_str).collect();
    Violation {
        subject: Subject::Sku(sku.clone()),
        detail: format!(
            "{unsold} of {received} units were never sold while {} willing buyer(s) of it were turned away: {}{}",
            buyers.len(),
            shown.join("; "),
            if buyers.len() > shown.len() {
                "; …"
            } else {
                ""
            }
        ),
        evidence,
    }
}

/// At most two spans `[from, until)` of ms (`u64::MAX`: no end).
type HeldSpans = [Option<(u64, u64)>; 2];

/// When an order holds its units, and its `(sku, units)` items.
type Holder<'a> = (HeldSpans, Vec<(&'a Sku, u64)>);

/// When an order holds its units by the evidence, as spans: shown offered at
/// `from`, shown given back at `until`, its hold lapsing at `lapses` unless
/// shown confirmed at `confirmed` (`u64::MAX`: never). It holds at `t` when
/// `from <= t < until` and (`t < lapses` or `confirmed <= t`).
fn held_spans(from: u64, until: u64, lapses: u64, confirmed: u64) -> HeldSpans {
    let span = |a: u64, b: u64| (a < b).then_some((a, b));
    if confirmed <= lapses {
        [span(from, until), None]
    } else {
        [
            span(from, until.min(lapses)),
            span(from.max(confirmed), until),
        ]
    }
}

/// Units of each SKU spoken for over time, by the evidence
/// ([`Facts::spoken_spans`] of every acknowledged order), indexed once so
/// that asking at any time costs a binary search, not a pass over every
/// order.
struct SpokenFor<'a> {
    /// Per SKU: from each time on, the units spoken for (sorted by time).
    steps: BTreeMap<&'a Sku, Vec<(u64, u64)>>,
}

impl<'a> SpokenFor<'a> {
    fn new(facts: &Facts<'a>) -> SpokenFor<'a> {
        let released = facts.released();
        let mut holders = Vec::with_capacity(facts.acknowledged.len());
        for (&order, &(request, acked, placed)) in &facts.acknowledged {
            let spans = facts.spoken_spans(order, (request, acked), &released);
            let items = placed.items.iter().map(|i| (&i.sku, u64::from(i.qty)));
            holders.push((spans, items.collect::<Vec<_>>()));
        }
        SpokenFor::from_holders(holders)
    }

    /// The index of orders holding `(sku, units)` items during their spans.
    fn from_holders(holders: Vec<Holder<'a>>) -> SpokenFor<'a> {
        let mut deltas: BTreeMap<&'a Sku, Vec<(u64, i128)>> = BTreeMap::new();
        for (these, items) in holders {
            for (from, until) in these.into_iter().flatten() {
                for &(sku, qty) in &items {
                    let d = deltas.entry(sku).or_default();
                    d.push((from, i128::from(qty)));
                    d.push((until, -i128::from(qty)));
                }
            }
        }
        let steps = deltas
            .into_iter()
            .map(|(sku, mut d)| {
                d.sort_unstable_by_key(|&(at, _)| at);
                let mut total: i128 = 0;
                let mut out: Vec<(u64, u64)> = Vec::with_capacity(d.len());
                for (at, delta) in d {
                    total += delta;
                    let units = u64::try_from(total).unwrap_or(0);
                    match out.last_mut() {
                        Some(last) if last.0 == at => last.1 = units,
                        _ => out.push((at, units)),
                    }
                }
                (sku, out)
            })
            .collect();
        SpokenFor { steps }
    }

    /// Units of `sku` spoken for at `t`.
    fn at(&self, sku: &Sku, t: Millis) -> u64 {
        let Some(steps) = self.steps.get(sku) else {
            return 0;
        };
        match steps.partition_point(|&(at, _)| at <= t.0) {
            0 => 0,
            n => steps[n - 1].1,
        }
    }
}

/// Willing buyers are offered payment within `Terms::offer_payment_ms` of
/// their acknowledgement (unless cancelled out of stock with no room for
/// them; within `Terms::waitlist_offer_ms` when, by the evidence, every unit
/// they asked for was spoken for at the acknowledgement), and every charge the PSP made is decided — the order confirmed or
/// the money refunded — within `Terms::decide_ms`. A deadline still ahead
/// when the history ends is not yet due (the liveness invariants judge what
/// never happened). The shop's own transition into confirmed serves as a
/// time only; the PSP's refund line and the clients' observations are the
/// other witnesses.
fn timely_decisions(facts: &Facts<'_>) -> Verdict {
    let (mut out, mut lost) = (Vec::new(), Vec::new());
    late_offers(facts, &mut out, &mut lost);
    late_decisions(facts, &mut out, &mut lost);
    Verdict::with_losses(Invariant::TimelyDecisions, out, lost)
}

/// Willing buyers offered payment late (or never, when it was due).
fn late_offers(facts: &Facts<'_>, out: &mut Vec<Violation>, lost: &mut Vec<Violation>) {
    let terms = facts.terms;
    let end = facts.end();
    let sold = facts.bought();
    let mut spoken = None;
    for j in facts.journeys() {
        let Some((order, acked)) = j.ack else {
            continue;
        };
        // The offer is due whatever the buyer's think time, which starts after it.
        if j.wish.express || !j.wish.willing() {
            continue;
        }
        let offered = facts.offered.get(&order).map(|&i| facts.at(i));
        let late_by = |bound: u64| -> Option<String> {
            let deadline = facts.at(acked).plus_ms(bound);
            match offered {
                Some(at) if at > deadline => Some(format!(
                    "offered payment {} ms after its acknowledgement (bound {bound} ms)",
                    at.0 - facts.at(acked).0,
                )),
                Some(_) => None,
                None if end <= deadline => None,
                None if matches!(facts.fate(&j, order, &sold), Fate::NoRoom | Fate::Served) => None,
                None => Some(format!(
                    "not offered payment within {bound} ms of its acknowledgement"
                )),
            }
        };
        let Some(mut late) = late_by(terms.offer_payment_ms) else {
            continue;
        };
        let mut bound = terms.offer_payment_ms;
        if let Some(wait) = terms.waitlist_offer_ms.filter(|&w| w > bound)
            && let Some(&(_, _, asked)) = facts.acknowledged.get(&order)
            && facts.all_spoken_for(
                order,
                asked,
                facts.at(acked),
                spoken.get_or_insert_with(|| SpokenFor::new(facts)),
            )
        {
            let Some(waited) = late_by(wait) else {
                continue;
            };
            (late, bound) = (format!("{waited}, waitlisted"), wait);
        }
        let deadline = facts.at(acked).plus_ms(bound);
        let v = Violation {
            subject: Subject::Order(order),
            detail: format!("{}: {order} {late}", j.describe()),
            evidence: facts.journey_evidence(&j, order),
        };
        match facts.at_risk_during(
            facts.at(acked),
            offered.unwrap_or(deadline),
            JourneyStep::Offer,
        ) {
            Some((window, fault)) => lost.push(Violation {
                detail: format!("{} — lost to the fault {fault}", v.detail),
                evidence: [v.evidence, vec![window]].concat(),
                ..v
            }),
            None => out.push(v),
        }
    }
}

/// Charges the PSP made that were decided late (or never, when it was due).
fn late_decisions(facts: &Facts<'_>, out: &mut Vec<Violation>, lost: &mut Vec<Violation>) {
    let terms = facts.terms;
    let end = facts.end();
    for (order, lines) in &facts.ledger {
        let Some(&(charged, ..)) = lines.iter().find(|l| l.1 == LedgerKind::Charge) else {
            continue;
        };
        let deadline = facts.at(charged).plus_ms(terms.decide_ms);
        let refunded = lines
            .iter()
            .find(|l| l.1 == LedgerKind::Refund)
            .map(|l| l.0);
        let confirmed = facts
            .transitions
            .get(order)
            .into_iter()
            .flatten()
            .copied()
            .find(|&i| {
                matches!(&facts.history.events()[i].kind,
                    EventKind::Transition(t) if t.to == OrderStatus::Confirmed)
            });
        let decided = [
            refunded,
            confirmed,
            facts.seen_confirmed.get(order).copied(),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|&i| facts.at(i));
        let late = match decided {
            Some(i) if facts.at(i) > deadline => format!(
                "charged at {} but decided only {} ms later (bound {} ms)",
                facts.at(charged),
                facts.at(i).0 - facts.at(charged).0,
                terms.decide_ms
            ),
            Some(_) => continue,
            None if end <= deadline => continue,
            None => format!(
                "charged at {} and not confirmed or refunded within {} ms",
                facts.at(charged),
                terms.decide_ms
            ),
        };
        let mut evidence = vec![charged];
        evidence.extend(decided);
        let v = Violation {
            subject: Subject::Order(*order),
            detail: late,
            evidence,
        };
        let until = decided.map_or(deadline, |i| facts.at(i));
        match facts.at_risk_during(facts.at(charged), until, JourneyStep::Payment) {
            Some((window, fault)) => lost.push(Violation {
                detail: format!("{} — lost to the fault {fault}", v.detail),
                evidence: [v.evidence, vec![window]].concat(),
                ..v
            }),
            None => out.push(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule `held_spans` encodes, read straight from its definition.
    fn holds_by_rule(from: u64, until: u64, lapses: u64, confirmed: u64, t: u64) -> bool {
        from <= t && until > t && (t < lapses || confirmed <= t)
    }

    fn within(spans: HeldSpans, t: u64) -> bool {
        spans.iter().flatten().any(|&(a, b)| a <= t && t < b)
    }

    /// A time, `u64::MAX` (never) one time in six.
    fn time() -> impl Strategy<Value = u64> {
        prop_oneof![5 => 0u64..40, 1 => Just(u64::MAX)]
    }

    proptest! {
        // Proves: the spans hold exactly at the times the rule says, with
        // every end absent or present and in any order, and are disjoint.
        #[test]
        fn held_spans_are_the_rule(
            from in 0u64..40, until in time(), lapses in time(), confirmed in time(),
        ) {
            let spans = held_spans(from, until, lapses, confirmed);
            for t in 0..48 {
                prop_assert_eq!(
                    within(spans, t),
                    holds_by_rule(from, until, lapses, confirmed, t),
                    "t = {}", t
                );
            }
            if let [Some(a), Some(b)] = spans {
                prop_assert!(a.1 <= b.0, "disjoint: {:?}", spans);
            }
        }

        // Proves: the index answers at every time the sum of the units of
        // the orders whose spans hold then, per SKU — the pass over every
        // order it replaces.
        #[test]
        fn spoken_for_index_is_the_sum_over_holders(
            holders in proptest::collection::vec(
                (0u64..40, time(), time(), time(), 0usize..3, 1u64..4, 0usize..3, 1u64..4),
                0..12,
            ),
        ) {
            let skus = [Sku::new("a").unwrap(), Sku::new("b").unwrap(), Sku::new("c").unwrap()];
            let built: Vec<Holder<'_>> = holders
                .iter()
                .map(|&(from, until, lapses, confirmed, s1, q1, s2, q2)| {
                    let spans = held_spans(from, until, lapses, confirmed);
                    (spans, vec![(&skus[s1], q1), (&skus[s2], q2)])
                })
                .collect();
            let index = SpokenFor::from_holders(built.clone());
            for t in 0..48 {
                for sku in &skus {
                    let by_scan: u64 = built
                        .iter()
                        .filter(|(spans, _)| within(*spans, t))
                        .flat_map(|(_, items)| items.iter())
                        .filter(|(s, _)| *s == sku)
                        .map(|(_, q)| q)
                        .sum();
                    prop_assert_eq!(index.at(sku, Millis(t)), by_scan, "{} at {}", sku, t);
                }
            }
        }
    }
}
