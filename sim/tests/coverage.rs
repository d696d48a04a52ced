//! The coverage scenario (`scenarios/coverage.toml`, built in as
//! `scenarios::coverage()`) takes the reference shop down every recovery
//! path on every seed — late payments refunded, open intents of dead orders
//! cancelled at the PSP, payments applied by the reconciler — while every
//! invariant holds; and a shop that does not refund is caught on it. Debug
//! builds run seeds 1–3, release builds 1–20.

mod common;

use stampede_core::Invariant;
use stampede_server::Design;
use stampede_sim::{Plan, RunResult, Scenario, run, scenarios};
use std::path::Path;

fn seeds() -> Vec<u64> {
    let n = if cfg!(debug_assertions) { 3 } else { 20 };
    (1..=n).collect()
}

fn run_seed(design: Design, seed: u64) -> RunResult {
    run(&Plan::generate(&scenarios::coverage(), design, seed))
        .unwrap_or_else(|e| panic!("coverage seed {seed}: {e}"))
}

#[test]
fn the_coverage_file_is_the_built_in_scenario() {
    // Proves: `scenarios/coverage.toml` and `scenarios::coverage()` are the
    // same scenario, so what the tests assert is what `stampede run` runs.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/coverage.toml");
    let file = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file, scenarios::coverage());
}

#[test]
fn every_seed_takes_every_recovery_path_and_the_reference_holds() {
    // Proves: on every seed the PSP charges orders the shop had expired and
    // refunds them, intents are cancelled at the PSP, and the reconciler
    // applies payments no webhook had reported — and every invariant holds,
    // with no safety violation seen live.
    common::on_two_cores(&seeds(), |&seed| {
        let result = run_seed(Design::reference(), seed);
        let broken: Vec<_> = result
            .verdicts
            .iter()
            .filter(|v| v.is_violated())
            .map(|v| {
                (
                    v.invariant,
                    v.violations().first().map(|x| x.detail.clone()),
                )
            })
            .collect();
        assert!(broken.is_empty(), "coverage seed {seed}: {broken:?}");
        assert!(
            result.live_violations.is_empty(),
            "coverage seed {seed}: {:?}",
            result.live_violations
        );
        let c = result.stats.coverage;
        assert!(
            c.late_payments > 0
                && c.refunds >= c.late_payments
                && c.intent_cancellations > 0
                && c.reconciler_payments > 0,
            "coverage seed {seed}: a recovery path was not taken: {c:?}"
        );
    });
}

#[test]
fn a_shop_that_does_not_refund_is_caught() {
    // Proves: with refunds sabotaged (the refund job never refunds), the
    // late payments the coverage scenario makes leave money captured for
    // cancelled orders, and the checker says so (eventual_confirmation or
    // money_reconciles) on each of the first three seeds.
    let mut design = Design::reference();
    design
        .apply("sabotage=no-refunds")
        .expect("the sabotage=no-refunds test hook (it comes with the server change that adds it)");
    for seed in 1..=3 {
        let result = run_seed(design, seed);
        let violated = result.violated();
        assert!(
            violated.contains(&Invariant::EventualConfirmation)
                || violated.contains(&Invariant::MoneyReconciles),
            "coverage seed {seed}: refunds sabotaged but not caught; violated {violated:?}, coverage {:?}",
            result.stats.coverage
        );
    }
}
