//! The catch matrix (sim/README.md): every naive switch of the design is
//! caught within 20 seeds of its mix *by its own mistake* — an expected
//! invariant fails, and the run shows the mechanism the switch stands for (a
//! redelivered job that reserved again, units sold again by a repeated event,
//! one key with two orders, ...). Around it: every fault a mix injects is
//! needed (without them the switch holds on the same seeds), a pair's
//! companion alone never shows the row's mistake, and a pair's switch alone is masked (which
//! is why it has a companion). The first test prints the README's table and
//! checks that the README carries it verbatim.

mod common;

use stampede_core::{
    Cause, EventKind, Invariant, JobEvent, JobKind, LedgerKind, Order, OrderStatus, Subject,
    Violation,
};
use stampede_server::Design;
use stampede_sim::scenarios::{self, CatchCase};
use stampede_sim::{Plan, RunResult, Scenario, run};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Seeds a row has to be caught within.
const SEEDS_MAX: u64 = 20;

/// Seeds the hold-the-line tests run: all 20 in release (what CI runs), 1 in debug.
fn seeds() -> u64 {
    if cfg!(debug_assertions) { 1 } else { SEEDS_MAX }
}

const README: &str = include_str!("../README.md");

fn run_seed(mix: &Scenario, design: Design, seed: u64) -> RunResult {
    run(&Plan::generate(mix, design, seed)).expect("the run completes")
}

fn design_of(assignments: &[&str]) -> Design {
    let mut design = Design::reference();
    for assignment in assignments {
        design
            .apply(assignment)
            .expect("catch cases name real switches");
    }
    design
}

fn secs(ms: u64) -> String {
    format!("{:.3} s", ms as f64 / 1000.0)
}

/// Sim time of the first violation of `invariant`: the live monitor's, or the
/// earliest evidence event's.
fn first_violation_ms(result: &RunResult, invariant: Invariant) -> Option<u64> {
    if let Some(live) = result
        .live_violations
        .iter()
        .find(|v| v.invariant == invariant)
    {
        return Some(live.at_ms);
    }
    let verdict = result.verdicts.iter().find(|v| v.invariant == invariant)?;
    let events = result.history.events();
    let from_evidence = verdict
        .violations()
        .iter()
        .flat_map(|v| v.evidence.iter())
        .filter_map(|i| events.get(*i))
        // Setup and plans are not happenings: a buyer's `Wants` is recorded on arrival.
        .filter(|e| {
            !matches!(
                e.kind,
                EventKind::Listed { .. }
                    | EventKind::Stocked { .. }
                    | EventKind::Wants { .. }
                    | EventKind::Terms(_)
                    | EventKind::SalesAtRisk { .. }
            )
        })
        .map(|e| e.at.0)
        .min();
    // No evidence event (e.g. an order stuck since creation): when its order last moved.
    from_evidence.or_else(|| {
        verdict
            .violations()
            .iter()
            .filter_map(|v| match v.subject {
                Subject::Order(id) => result.audit.orders.iter().find(|o| o.id == id),
                _ => None,
            })
            .map(|o| o.status_since().0)
            .min()
    })
}

// ---- each switch's own mistake ----------------------------------------------

/// A switch's mistake as a run shows it.
struct Shown {
    /// In words, with the orders, jobs and times involved.
    text: String,
    /// When the mistake happened, where that is not when the invariant first broke.
    at_ms: Option<u64>,
}

impl From<String> for Shown {
    fn from(text: String) -> Shown {
        Shown { text, at_ms: None }
    }
}

/// The first violation of an expected invariant that shows the switch's own
/// mistake, and that mistake.
fn own_mistake(case: &CatchCase, result: &RunResult) -> Option<(Invariant, Shown)> {
    let show = mistake_of(case.switch);
    case.expect.iter().find_map(|invariant| {
        let verdict = result.verdicts.iter().find(|v| v.invariant == *invariant)?;
        verdict
            .violations()
            .iter()
            .find_map(|v| show(result, v))
            .map(|shown| (*invariant, shown))
    })
}

type Shows = fn(&RunResult, &Violation) -> Option<Shown>;

fn mistake_of(switch: &str) -> Shows {
    match switch {
        "reservation_ttl=short" => {
            return expired_inside_the_promised_hold;
        }
        "sold_out=from-reservations" => {
            return turned_away_while_units_were_only_held;
        }
        "intent_replay=ack-only" => return never_offered_after_a_redelivered_intent_job,
        "admission=off" => return accepted_behind_more_undecided_than_the_bound,
        _ => {}
    }
    match switch.split('=').next().expect("name=value") {
        "idempotency" => |r, v| one_key_two_orders(r, v).map(Shown::from),
        "inventory" => |r, v| paid_for_more_than_received(r, v).map(Shown::from),
        "reservation_ttl" => |r, v| held_without_expiry(r, v).map(Shown::from),
        "enqueue" => |r, v| created_without_a_job(r, v).map(Shown::from),
        "worker_state_check" => redelivered_reserve_reserved_again,
        "intent_key" => |r, v| charged_on_two_intents(r, v).map(Shown::from),
        "intent_amount" => |r, v| charged_other_than_total(r, v).map(Shown::from),
        "webhook_signature" => |r, v| moved_by_a_forged_event(r, v).map(Shown::from),
        "webhook_dedup" => |r, v| sold_more_than_confirmed(r, v).map(Shown::from),
        "finalize" => paid_then_lost_with_the_api,
        "reconciliation" => |r, v| captured_but_never_told(r, v).map(Shown::from),
        "early_webhooks" => |r, v| express_charge_never_matched(r, v).map(Shown::from),
        "commit" => acknowledged_then_lost_in_a_db_crash,
        "client_price" => |r, v| priced_off_the_catalog(r, v).map(Shown::from),
        other => panic!("no own-mistake check for switch {other}"),
    }
}

fn order_of<'a>(result: &'a RunResult, v: &Violation) -> Option<&'a Order> {
    match v.subject {
        Subject::Order(id) => result.audit.orders.iter().find(|o| o.id == id),
        _ => None,
    }
}

fn ledger(result: &RunResult) -> impl Iterator<Item = &stampede_core::LedgerEntry> {
    result
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Ledger(entry) => Some(entry),
            _ => None,
        })
}

fn net_captured(result: &RunResult, order: &Order) -> i128 {
    ledger(result)
        .filter(|l| l.order == order.id)
        .map(|l| match l.kind {
            LedgerKind::Charge => i128::from(l.amount.0),
            LedgerKind::Refund => -i128::from(l.amount.0),
        })
        .sum()
}

fn received(result: &RunResult, sku: &stampede_core::Sku) -> u64 {
    result
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Stocked { sku: s, qty } if s == sku => Some(*qty),
            _ => None,
        })
        .sum()
}

fn units_where(result: &RunResult, sku: &stampede_core::Sku, pred: fn(OrderStatus) -> bool) -> u64 {
    result
        .audit
        .orders
        .iter()
        .filter(|o| pred(o.status()))
        .map(|o| u64::from(o.qty_of(sku)))
        .sum()
}

fn one_key_two_orders(result: &RunResult, v: &Violation) -> Option<String> {
    let Subject::Key(key) = &v.subject else {
        return None;
    };
    let ids: Vec<String> = result
        .audit
        .orders
        .iter()
        .filter(|o| o.idempotency_key.as_ref() == Some(key))
        .map(|o| o.id.to_string())
        .collect();
    (ids.len() > 1).then(|| format!("key {key} made {} orders ({})", ids.len(), ids.join(", ")))
}

fn paid_for_more_than_received(result: &RunResult, v: &Violation) -> Option<String> {
    let Subject::Sku(sku) = &v.subject else {
        return None;
    };
    let paid = units_where(result, sku, |s| {
        matches!(s, OrderStatus::Paid | OrderStatus::Confirmed)
    });
    let have = received(result, sku);
    (paid > have).then(|| format!("{sku}: {paid} units in paid orders, {have} received"))
}

fn held_without_expiry(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let rid = order.reservation?;
    let reservation = result.audit.reservations.iter().find(|r| r.id == rid)?;
    (order.status().holds_reservation() && reservation.expires_at.is_none()).then(|| {
        format!(
            "{} {} since {}, holding {rid} with no expiry",
            order.id,
            order.status(),
            secs(order.status_since().0)
        )
    })
}

/// When `order` first entered `to`, by the recorded transitions.
fn entered_at(result: &RunResult, order: stampede_core::OrderId, to: OrderStatus) -> Option<u64> {
    result.history.events().iter().find_map(|e| match &e.kind {
        EventKind::Transition(t) if t.order == order && t.to == to => Some(t.at.0),
        _ => None,
    })
}

/// A late order the shop accepted while more orders accepted before it were
/// still undecided (not yet reserved or cancelled) than the reference's
/// bound lets wait: it queued behind them instead of being shed.
fn accepted_behind_more_undecided_than_the_bound(
    result: &RunResult,
    v: &Violation,
) -> Option<Shown> {
    let order = order_of(result, v)?;
    let bound = scenarios::spike().admission.max_undecided_orders;
    let mut decided: BTreeMap<stampede_core::OrderId, u64> = BTreeMap::new();
    for e in result.history.events() {
        if let EventKind::Transition(t) = &e.kind
            && t.from == OrderStatus::Created
        {
            decided.entry(t.order).or_insert(t.at.0);
        }
    }
    let accepted = order.created_at.0;
    let ahead = result
        .audit
        .orders
        .iter()
        .filter(|o| o.id < order.id && o.created_at.0 <= accepted)
        .filter(|o| decided.get(&o.id).is_none_or(|&at| at > accepted))
        .count() as u64;
    let offered = entered_at(result, order.id, OrderStatus::PaymentPending)?;
    (ahead > bound).then(|| Shown {
        text: format!(
            "{} accepted at {} behind {ahead} undecided orders (the reference sheds beyond {bound}); offered payment {} later",
            order.id,
            secs(accepted),
            secs(offered - accepted)
        ),
        at_ms: Some(accepted),
    })
}

/// The hold the scenario promised (its `Terms`).
fn promised_hold_ms(result: &RunResult) -> Option<u64> {
    result.history.events().iter().find_map(|e| match &e.kind {
        EventKind::Terms(terms) => terms.hold_ms,
        _ => None,
    })
}

/// A willing buyer's order expired sooner after its stock was reserved than
/// the hold the scenario promises.
fn expired_inside_the_promised_hold(result: &RunResult, v: &Violation) -> Option<Shown> {
    let order = order_of(result, v)?;
    let expired = OrderStatus::Cancelled(stampede_core::CancelReason::Expired);
    let reserved = entered_at(result, order.id, OrderStatus::InventoryReserved)?;
    let lapsed = entered_at(result, order.id, expired)?;
    let hold = promised_hold_ms(result)?;
    (lapsed - reserved < hold).then(|| Shown {
        text: format!(
            "{} reserved at {}, expired at {}: {} ms into a {hold} ms hold",
            order.id,
            secs(reserved),
            secs(lapsed),
            lapsed - reserved
        ),
        at_ms: Some(lapsed),
    })
}

/// An order cancelled out of stock while another order only held units of
/// the same SKU — a reservation that later lapsed, so the units came back.
fn turned_away_while_units_were_only_held(result: &RunResult, v: &Violation) -> Option<Shown> {
    let out_of_stock = OrderStatus::Cancelled(stampede_core::CancelReason::OutOfStock);
    let expired = OrderStatus::Cancelled(stampede_core::CancelReason::Expired);
    let about = |o: &&Order| match &v.subject {
        Subject::Order(id) => o.id == *id,
        Subject::Sku(sku) => o.qty_of(sku) > 0,
        Subject::Key(_) => false,
    };
    result.audit.orders.iter().filter(about).find_map(|turned| {
        let cancelled = entered_at(result, turned.id, out_of_stock)?;
        result.audit.orders.iter().find_map(|holder| {
            let shared = turned.lines.iter().find(|l| holder.qty_of(&l.sku) > 0)?;
            let reserved = entered_at(result, holder.id, OrderStatus::InventoryReserved)?;
            let lapsed = entered_at(result, holder.id, expired)?;
            (reserved <= cancelled && cancelled < lapsed).then(|| Shown {
                text: format!(
                    "{} cancelled out of stock at {} while {} only held {} (reserved {}, lapsed unsold {})",
                    turned.id,
                    secs(cancelled),
                    holder.id,
                    shared.sku,
                    secs(reserved),
                    secs(lapsed)
                ),
                at_ms: Some(cancelled),
            })
        })
    })
}

/// A willing buyer never offered payment whose CreateIntent job was leased
/// again after a crash: the redelivery acked without recording the intent.
fn never_offered_after_a_redelivered_intent_job(
    result: &RunResult,
    v: &Violation,
) -> Option<Shown> {
    let order = order_of(result, v)?;
    if entered_at(result, order.id, OrderStatus::PaymentPending).is_some() {
        return None;
    }
    let (attempt, leased_at) = result.history.events().iter().find_map(|e| match &e.kind {
        EventKind::Job {
            kind: JobKind::CreateIntent,
            order: o,
            what: JobEvent::Leased { attempt },
        } if *o == order.id && *attempt >= 2 => Some((*attempt, e.at.0)),
        _ => None,
    })?;
    Some(Shown {
        text: format!(
            "{}: create_intent leased again at {} (attempt {attempt}) and acked; the order never reached payment_pending (ended {})",
            order.id,
            secs(leased_at),
            order.status()
        ),
        at_ms: Some(leased_at),
    })
}

fn created_without_a_job(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let has_job = result
        .history
        .events()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Job { order: o, .. } if *o == order.id));
    (order.status() == OrderStatus::Created && !has_job).then(|| {
        format!(
            "{} created at {}; its reserve job was never written",
            order.id,
            secs(order.created_at.0)
        )
    })
}

/// A reservation no order points at, held by an order whose reserve job ran
/// once (moving it out of `Created`) and was then leased again.
fn redelivered_reserve_reserved_again(result: &RunResult, v: &Violation) -> Option<Shown> {
    let orphans = result.audit.reservations.iter().filter(|r| {
        let pointed = result
            .audit
            .orders
            .iter()
            .any(|o| o.id == r.order && o.reservation == Some(r.id));
        let about = match &v.subject {
            Subject::Order(id) => r.order == *id,
            Subject::Sku(sku) => r.qty_of(sku) > 0,
            Subject::Key(_) => false,
        };
        about && !pointed
    });
    orphans.into_iter().find_map(|r| {
        let (first_to, first_at) = first_reserve_step(result, r.order)?;
        let (attempt, leased_at) = result.history.events().iter().find_map(|e| match &e.kind {
            EventKind::Job {
                kind: JobKind::Reserve,
                order,
                what: JobEvent::Leased { attempt },
            } if *order == r.order && *attempt >= 2 && e.at.0 > first_at => {
                Some((*attempt, e.at.0))
            }
            _ => None,
        })?;
        let text = format!(
            "{}: reserve attempt 1 made it {first_to} at {}; attempt {attempt}, leased at {}, reserved again ({} still held)",
            r.order,
            secs(first_at),
            secs(leased_at),
            r.id
        );
        Some(Shown {
            text,
            at_ms: Some(leased_at),
        })
    })
}

/// What the order's reserve job did first: the status it moved the order to, and when.
fn first_reserve_step(
    result: &RunResult,
    order: stampede_core::OrderId,
) -> Option<(OrderStatus, u64)> {
    result.history.events().iter().find_map(|e| match &e.kind {
        EventKind::Transition(t)
            if t.order == order
                && t.from == OrderStatus::Created
                && matches!(t.cause, Cause::Worker { .. }) =>
        {
            Some((t.to, t.at.0))
        }
        _ => None,
    })
}

fn charged_on_two_intents(result: &RunResult, v: &Violation) -> Option<String> {
    let Subject::Order(id) = v.subject else {
        return None;
    };
    let intents: BTreeSet<String> = ledger(result)
        .filter(|l| l.order == id && l.kind == LedgerKind::Charge)
        .map(|l| l.intent.to_string())
        .collect();
    (intents.len() > 1).then(|| {
        let list: Vec<_> = intents.into_iter().collect();
        format!(
            "{id} charged on {} intents ({})",
            list.len(),
            list.join(", ")
        )
    })
}

fn listed_prices(result: &RunResult) -> BTreeMap<&stampede_core::Sku, stampede_core::Cents> {
    result
        .history
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Listed { sku, price, .. } => Some((sku, *price)),
            _ => None,
        })
        .collect()
}

fn charged_other_than_total(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let listed = listed_prices(result);
    let catalog_priced = order
        .lines
        .iter()
        .all(|l| listed.get(&l.sku) == Some(&l.unit_price));
    let charge = ledger(result)
        .find(|l| l.order == order.id && l.kind == LedgerKind::Charge && l.amount != order.total)?;
    catalog_priced.then(|| {
        format!(
            "{} charged {} for a total of {}",
            order.id, charge.amount, order.total
        )
    })
}

fn moved_by_a_forged_event(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let forged = order.transitions().iter().find(|t| {
        matches!(&t.cause, Cause::Webhook { event } if event.to_string().starts_with("evt_forged_"))
    })?;
    Some(format!(
        "{} made {} by an unsigned event ({}) with {} cents captured",
        order.id,
        forged.to,
        forged.cause,
        net_captured(result, order)
    ))
}

fn sold_more_than_confirmed(result: &RunResult, v: &Violation) -> Option<String> {
    let Subject::Sku(sku) = &v.subject else {
        return None;
    };
    let sold = result.audit.stock.get(sku)?.sold;
    let confirmed = units_where(result, sku, |s| s == OrderStatus::Confirmed);
    (sold > confirmed).then(|| format!("{sku}: {sold} units sold, {confirmed} in confirmed orders"))
}

fn paid_then_lost_with_the_api(result: &RunResult, v: &Violation) -> Option<Shown> {
    let order = order_of(result, v)?;
    if order.status() != OrderStatus::Paid {
        return None;
    }
    let paid_at = order.status_since().0;
    let crash = result.history.events().iter().find(|e| {
        e.at.0 >= paid_at
            && matches!(&e.kind, EventKind::Fault { what } if what.starts_with("crash api"))
    })?;
    let text = format!(
        "{} paid at {}, api crashed at {}: never finalized",
        order.id,
        secs(paid_at),
        secs(crash.at.0)
    );
    Some(Shown {
        text,
        at_ms: Some(crash.at.0),
    })
}

fn captured_but_never_told(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let net = net_captured(result, order);
    let waiting = matches!(
        order.status(),
        OrderStatus::InventoryReserved | OrderStatus::PaymentPending
    );
    (waiting && net > 0).then(|| {
        format!(
            "{}: {net} cents captured, still {}",
            order.id,
            order.status()
        )
    })
}

fn express_charge_never_matched(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let net = net_captured(result, order);
    let settled = matches!(
        order.status(),
        OrderStatus::Confirmed | OrderStatus::Refunded
    );
    (order.express && net > 0 && !settled).then(|| {
        format!(
            "{} (express): {net} cents captured, ended {}",
            order.id,
            order.status()
        )
    })
}

/// An order a client was told was accepted that the shop no longer has,
/// with a db crash that lost unsynced writes between the request and the end.
fn acknowledged_then_lost_in_a_db_crash(result: &RunResult, v: &Violation) -> Option<Shown> {
    let Subject::Order(id) = v.subject else {
        return None;
    };
    if result.audit.orders.iter().any(|o| o.id == id) {
        return None;
    }
    let events = result.history.events();
    let asked = events.get(*v.evidence.first()?)?.at.0;
    let told = events.get(*v.evidence.last()?)?.at.0;
    let (crash_at, lost) = events.iter().find_map(|e| match &e.kind {
        EventKind::Fault { what } if e.at.0 >= asked => {
            let lost = what
                .strip_prefix("crash db (")?
                .split_once(" unsynced writes lost")?
                .0;
            (lost != "0").then(|| (e.at.0, lost.to_string()))
        }
        _ => None,
    })?;
    Some(Shown {
        text: format!(
            "{id} acknowledged at {}; the db crashed at {} losing {lost} unsynced writes, {id} among them",
            secs(told),
            secs(crash_at)
        ),
        at_ms: Some(crash_at),
    })
}

fn priced_off_the_catalog(result: &RunResult, v: &Violation) -> Option<String> {
    let order = order_of(result, v)?;
    let listed = listed_prices(result);
    order.lines.iter().find_map(|l| {
        let price = listed.get(&l.sku)?;
        (*price != l.unit_price).then(|| {
            format!(
                "{}: {} priced {} but listed at {price}",
                order.id, l.sku, l.unit_price
            )
        })
    })
}

// ---- the tests --------------------------------------------------------------

/// The first seed that catches `case` by its own mistake.
struct Caught {
    seed: u64,
    invariant: Invariant,
    mistake: String,
    /// When the mistake showed, else when the invariant first broke.
    at_ms: Option<u64>,
}

fn first_catch(case: &CatchCase) -> Option<Caught> {
    let design = case.design();
    (1..=SEEDS_MAX).find_map(|seed| {
        let result = run_seed(&case.mix, design, seed);
        let (invariant, shown) = own_mistake(case, &result)?;
        Some(Caught {
            seed,
            invariant,
            at_ms: shown
                .at_ms
                .or_else(|| first_violation_ms(&result, invariant)),
            mistake: shown.text,
        })
    })
}

fn table_row(case: &CatchCase, caught: &Caught) -> String {
    let with = if case.with.is_empty() {
        String::new()
    } else {
        format!(" (+{})", case.with.join(", "))
    };
    let faults = if case.without_faults().is_some() {
        format!("holds on seeds 1–{SEEDS_MAX}")
    } else {
        "needs no fault".to_string()
    };
    format!(
        "| `{}`{with} | {} | {} | {} | {} | {} | {faults} |",
        case.switch,
        case.mix.name,
        caught.invariant,
        caught.mistake,
        caught.seed,
        caught.at_ms.map_or("—".to_string(), secs),
    )
}

/// The row's first catch, as a table row; panics if it is not caught.
fn caught_row(case: &CatchCase) -> String {
    let Some(caught) = first_catch(case) else {
        panic!(
            "{} (+{}) was not caught by its own mistake within {SEEDS_MAX} seeds of {}",
            case.switch,
            case.with.join(","),
            case.mix.name
        );
    };
    table_row(case, &caught)
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "searches up to 20 seeds of every row (7 minutes in debug); CI runs it in release"
)]
fn every_naive_switch_is_caught_within_20_seeds_by_its_own_mistake() {
    // Proves: for each switch, some seed in 1..=20 of its mix breaks an expected invariant
    // with a violation that shows the switch's own mistake (see `mistake_of`); and
    // sim/README.md carries the resulting table row for row.
    // Rows are searched side by side in this process: a run is a function of its plan alone,
    // whatever ran before or beside it (tests/determinism.rs).
    let cases: Vec<(usize, CatchCase)> = scenarios::catch_cases().into_iter().enumerate().collect();
    let found = Mutex::new(vec![String::new(); cases.len()]);
    common::on_two_cores(&cases, |(index, case)| {
        let row = caught_row(case);
        found.lock().unwrap()[*index] = row;
    });
    let rows = found.into_inner().unwrap();
    println!(
        "| switch | mix | invariant broken | its own mistake, as the run shows it | seeds needed | sim time | without the mix's faults |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        println!("{row}");
    }
    let stale: Vec<_> = rows
        .iter()
        .filter(|r| !README.contains(r.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "sim/README.md's catch table is out of date; paste the table printed above. Missing rows: {stale:#?}"
    );
}

#[test]
fn every_fault_a_catch_mix_injects_is_needed() {
    // Proves: for each row whose mix injects faults, the same switch (and companions) on the
    // same mix with every fault removed breaks none of the row's invariants on the same seeds —
    // so the row is caught because of the faults, not plain load. Rows without faults are
    // listed as "needs no fault" in the table.
    for case in scenarios::catch_cases() {
        let Some(clean) = case.without_faults() else {
            continue;
        };
        let design = case.design();
        for seed in 1..=seeds() {
            let violated = run_seed(&clean, design, seed).violated();
            let broken: Vec<_> = case
                .expect
                .iter()
                .filter(|i| violated.contains(i))
                .collect();
            assert!(
                broken.is_empty(),
                "{} breaks {broken:?} on {} (seed {seed}) although its faults were removed",
                case.switch,
                clean.name
            );
        }
    }
}

#[test]
fn a_pair_is_caught_because_of_its_switch_not_its_companion() {
    // Proves: where a row sets companion switches (because a reference layer would mask the
    // mistake), the companions alone never show the row's own mistake on the same seeds. They
    // may break a row's invariant for a reason of their own — reservation_ttl=off leaves
    // abandoned orders undecided, which eventual_confirmation flags — but never through the
    // mechanism the row's switch stands for (a charge never matched, a redelivered job that
    // reserved again, ...), so the row is caught by its switch.
    for case in scenarios::catch_cases()
        .iter()
        .filter(|c| !c.with.is_empty())
    {
        let design = design_of(case.with);
        for seed in 1..=seeds() {
            let result = run_seed(&case.mix, design, seed);
            if let Some((invariant, shown)) = own_mistake(case, &result) {
                panic!(
                    "{} alone shows {}'s mistake on {} seed {seed} ({invariant}): {}",
                    case.with.join(","),
                    case.switch,
                    case.mix.name,
                    shown.text
                );
            }
        }
    }
}

#[test]
fn a_pairs_switch_alone_is_masked_by_the_layer_its_companion_removes() {
    // Proves: a row has a companion only because the reference masks the switch without it:
    // the switch alone breaks none of the row's invariants on the same seeds (e.g.
    // early_webhooks=drop alone passes, the reconciler finds the charge).
    for case in scenarios::catch_cases()
        .iter()
        .filter(|c| !c.with.is_empty())
    {
        let design = design_of(&[case.switch]);
        for seed in 1..=seeds() {
            let violated = run_seed(&case.mix, design, seed).violated();
            assert!(
                case.expect.iter().all(|i| !violated.contains(i)),
                "{} alone is caught on {} seed {seed} ({violated:?}): it needs no companion",
                case.switch,
                case.mix.name
            );
        }
    }
}
