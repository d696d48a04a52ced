//! Every scenario file shipped in `scenarios/` parses, validates, and holds
//! every invariant on the reference design (2 seeds each; release builds —
//! the 10,000-shopper flash sale takes ~30 s a run).

mod common;

use stampede_server::Design;
use stampede_sim::{Plan, Scenario, run};
use std::path::Path;

#[test]
fn shipped_scenario_files_parse() {
    // Proves: every file in scenarios/ is a valid scenario (cheap, runs in debug too).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 10, "expected the 10 shipped scenarios, found {n}");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "slow in debug builds: CI runs it with --release"
)]
fn shipped_scenarios_hold_on_the_reference_design() {
    // Proves: a small sweep (seeds 1 and 2) of every shipped scenario: zero violations.
    let files = common::shipped_scenario_files();
    common::on_two_cores(&files, |path| {
        let scenario = Scenario::load(path).unwrap();
        for seed in 1..=2 {
            let result = run(&Plan::generate(&scenario, Design::reference(), seed)).unwrap();
            assert!(
                result.passed(),
                "{} seed {seed}: {:?}",
                path.display(),
                result.violated()
            );
        }
    });
}

#[test]
fn job_redelivery_is_the_catch_matrix_worker_crash_mix() {
    // Proves: scenarios/job-redelivery.toml is exactly the mix the catch matrix's
    // "worker-crashes" rows run (name aside), so the shipped file sweeps what the matrix proves
    // catches a skipped redelivered step — and the two cannot drift apart unnoticed.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/job-redelivery.toml");
    let mut shipped = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut mix = stampede_sim::scenarios::catch_cases()
        .into_iter()
        .find(|c| c.mix.name == "worker-crashes")
        .expect("the catch matrix has a worker-crashes row")
        .mix;
    shipped.name.clear();
    mix.name.clear();
    assert_eq!(shipped, mix);
}

#[test]
fn spike_is_the_catch_matrix_admission_mix() {
    // Proves: scenarios/spike.toml is exactly the mix the catch matrix's admission row runs, so
    // the shipped file sweeps what the matrix proves catches a shop that accepts everything.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/spike.toml");
    let shipped = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mix = stampede_sim::scenarios::catch_cases()
        .into_iter()
        .find(|c| c.switch == "admission=off")
        .expect("the catch matrix has an admission row")
        .mix;
    assert_eq!(shipped, mix);
    assert_eq!(mix, stampede_sim::scenarios::spike());
}
