//! When a run ends: as soon as the world has settled, judged at the planned
//! end at the earliest, so stopping early never excuses a promise; a world
//! that never settles runs to the planned end plus the extension, as before.

use stampede_core::{Invariant, Millis, check_all};
use stampede_server::Design;
use stampede_sim::SETTLE_EXTENSION_MS_MAX;
use stampede_sim::{Plan, RunResult, Scenario, run, scenarios};

fn run_with(scenario: &Scenario, switches: &[&str]) -> (Plan, RunResult) {
    let mut design = Design::reference();
    for switch in switches {
        design
            .apply(switch)
            .unwrap_or_else(|e| panic!("{switch}: {e}"));
    }
    let plan = Plan::generate(scenario, design, 1);
    let result = run(&plan).unwrap();
    (plan, result)
}

fn violated(result: &RunResult, invariant: Invariant) -> Vec<String> {
    result
        .verdicts
        .iter()
        .filter(|v| v.invariant == invariant)
        .flat_map(|v| v.violations().iter().map(|x| x.detail.clone()))
        .collect()
}

#[test]
fn a_settled_world_stops_early_and_is_judged_at_the_planned_end() {
    // Proves: the reference shop on the smoke scenario settles after its last
    // arrival and well before its planned end; the run stops then (sim_ms),
    // settled, every invariant holding, with the state judged at the planned end.
    let (plan, result) = run_with(&scenarios::smoke(), &[]);
    let sim_ms = result.stats.sim_ms;
    assert!(sim_ms > plan.last_arrival_ms(), "{sim_ms}");
    assert!(sim_ms < plan.end_ms(), "{sim_ms} vs {}", plan.end_ms());
    assert!(result.unsettled.is_empty(), "{:?}", result.unsettled);
    assert_eq!(result.audit.at, Millis(plan.end_ms()));
    assert!(result.passed(), "{:?}", result.violated());
}

#[test]
fn an_early_stop_does_not_excuse_a_promise_due_after_it() {
    // Proves: a shop that never offers payment lets every cart lapse, so the
    // world settles before any order's 10 s offer deadline; judged at the
    // planned end (21 s), timely_decisions names the orders never offered
    // payment, while the same history judged at the stop would excuse them all.
    let mut s = scenarios::smoke();
    (s.timing.settle_ms, s.timing.offer_payment_within_ms) = (20_000, 10_000);
    let (plan, result) = run_with(&s, &["sabotage=no-payment-offer"]);
    let sim_ms = result.stats.sim_ms;
    assert!(
        sim_ms < 10_000,
        "stopped at {sim_ms} ms, before every deadline"
    );
    assert!(plan.end_ms() > 10_000 + plan.last_arrival_ms());
    let late = violated(&result, Invariant::TimelyDecisions);
    assert!(
        late.iter()
            .any(|d| d.contains("not offered payment within")),
        "{late:?}"
    );

    let mut at_stop = result.audit.clone();
    at_stop.at = Millis(sim_ms);
    let excused = check_all(&result.history, &at_stop);
    let timely = excused
        .iter()
        .find(|v| v.invariant == Invariant::TimelyDecisions)
        .unwrap();
    assert!(!timely.is_violated(), "judged at the stop: {timely:?}");
}

#[test]
fn a_world_that_never_settles_runs_to_the_latest_end_as_before() {
    // Proves: with reservations that never lapse (reservation_ttl=off),
    // abandoned carts hold stock for good, so the world never settles: the
    // run lasts exactly the planned end plus SETTLE_EXTENSION_MS_MAX (the
    // driver gives up on the tick that reaches it), and ends with holds
    // still held by orders that are not final.
    let mut s = scenarios::smoke();
    s.timing.settle_ms = 1_000;
    s.shoppers.abandon = 0.5;
    let (plan, result) = run_with(&s, &["reservation_ttl=off"]);
    let latest = plan.end_ms() + SETTLE_EXTENSION_MS_MAX;
    assert_eq!(result.stats.sim_ms, latest);
    assert!(!result.audit.reservations.is_empty());
    assert!(result.audit.orders.iter().any(|o| !o.status().is_final()));
}
