//! The reference design holds every invariant — the progress ones
//! (willing buyers served, no sale left behind, timely decisions) included —
//! on every shipped fault mix: a db crash mid-flash-sale, worker and api
//! crashes, a 5 s api↔psp partition, a webhook storm (each event 3×,
//! shuffled, delayed up to 30 s), and the catch matrix's mixes. Debug builds
//! run 2 seeds per mix; release builds (CI) run 20 per fault mix and 200 per
//! catch mix.

mod common;

use stampede_server::Design;
use stampede_sim::{Plan, run, scenarios};

fn seeds(release: u64) -> u64 {
    if cfg!(debug_assertions) { 2 } else { release }
}

/// Runs seeds 1..=n of `scenario` on both cores.
fn assert_reference_holds(name: &str, scenario: &stampede_sim::Scenario, n: u64) {
    let seeds: Vec<u64> = (1..=n).collect();
    common::on_two_cores(&seeds, |seed| check_seed(name, scenario, *seed));
}

fn check_seed(name: &str, scenario: &stampede_sim::Scenario, seed: u64) {
    let plan = Plan::generate(scenario, Design::reference(), seed);
    let result = run(&plan).unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"));
    let broken: Vec<_> = result.verdicts.iter().filter(|v| v.is_violated()).collect();
    assert!(
        broken.is_empty(),
        "{name} seed {seed}: {:?}",
        broken
            .iter()
            .map(|v| (v.invariant, v.violations().first()))
            .collect::<Vec<_>>()
    );
    assert!(
        result.live_violations.is_empty(),
        "{name} seed {seed}: {:?}",
        result.live_violations
    );
    // Every acknowledged order ended confirmed, cancelled or refunded.
    assert!(
        result.audit.orders.iter().all(|o| o.status().is_final()),
        "{name} seed {seed}"
    );
}

#[test]
fn reference_survives_the_shipped_fault_mixes() {
    // Proves: zero violations on calm, db-crash, worker-crash, api-crash, api-psp-partition and
    // webhook-storm (release: 20 seeds each), every acknowledged order final.
    for (name, scenario) in scenarios::fault_mixes() {
        assert_reference_holds(name, &scenario, seeds(20));
    }
}

#[test]
fn reference_survives_the_catch_matrix_mixes_on_200_seeds() {
    // Proves: the mixes that expose each naive switch never trouble the reference design
    // (release: 200 seeds of each distinct mix). A catch mix's faults are sized to expose a
    // mistake, not to leave every willing buyer served (a 40 s api↔psp partition makes `/pay`
    // fail for longer than a hold), so here they may cost sales: a buyer lost while one lasts
    // counts as lost to the fault; everything else is judged as everywhere.
    let mut done: Vec<String> = Vec::new();
    for case in scenarios::catch_cases() {
        if done.contains(&case.mix.name) {
            continue;
        }
        let mut mix = case.mix.clone();
        mix.faults.may_cost_sales = true;
        assert_reference_holds(&mix.name, &mix, seeds(200));
        done.push(case.mix.name.clone());
    }
}
