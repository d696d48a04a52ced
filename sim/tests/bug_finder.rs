//! The simulator as a bug finder: the test `cargo mutants` runs against each
//! mutant of the server's reference paths (TESTING.md, "The simulator as a bug
//! finder"). Every shipped scenario, seeds 1..=N on the reference design, must
//! hold every invariant it judges; the first violation fails the run at once,
//! so a caught mutant costs only the runs up to it.
//!
//! Ignored in ordinary test runs (the shipped-scenario test already sweeps two
//! seeds in CI); run it with
//! `cargo test --release -p stampede-sim --test bug_finder -- --ignored`.
//! `STAMPEDE_BUG_FINDER_SEEDS` sets N (default 3).

mod common;

use stampede_server::Design;
use stampede_sim::{Plan, Scenario, run};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Seeds per scenario when the environment does not say.
const DEFAULT_SEEDS: u64 = 3;
/// More seeds than this is a sweep, not a mutant check: `stampede sweep` is the tool.
const SEEDS_MAX: u64 = 1_000;

fn seeds() -> u64 {
    match std::env::var("STAMPEDE_BUG_FINDER_SEEDS") {
        Err(_) => DEFAULT_SEEDS,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if (1..=SEEDS_MAX).contains(&n) => n,
            _ => panic!(
                "STAMPEDE_BUG_FINDER_SEEDS must be a whole number in 1..={SEEDS_MAX}, not {text:?}"
            ),
        },
    }
}

#[test]
#[ignore = "mutation measurement (TESTING.md): run with --release -- --ignored"]
fn reference_holds_on_a_short_sweep_of_every_shipped_scenario() {
    // Proves: no shipped scenario, on any of seeds 1..=N, violates an invariant on the
    // reference design — so a server mutant that breaks a decision fails here.
    let seeds = seeds();
    let files = common::shipped_scenario_files();
    // Seed-major order: every scenario's seed 1 first, so a mutant most scenarios notice
    // is stopped after a handful of runs.
    let runs: Vec<(PathBuf, u64)> = (1..=seeds)
        .flat_map(|seed| files.iter().map(move |f| (f.clone(), seed)))
        .collect();
    let failed = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    common::on_two_cores(&runs, |(path, seed)| {
        if failed.load(Ordering::Relaxed) {
            return;
        }
        let scenario = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
        let verdict = match run(&Plan::generate(&scenario, Design::reference(), *seed)) {
            Ok(result) if result.passed() => return,
            Ok(result) => format!("violated {:?}", result.violated()),
            Err(e) => format!("did not run: {e}"),
        };
        failed.store(true, Ordering::Relaxed);
        failures
            .lock()
            .expect("no lane panics while holding the lock")
            .push(format!("{} seed {seed}: {verdict}", path.display()));
    });
    let failures = failures.into_inner().expect("lanes joined");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
