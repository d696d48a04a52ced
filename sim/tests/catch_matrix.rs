//! The catch matrix: every naive switch of the design is caught — the
//! expected invariant fails — within 20 seeds of its fault mix. Prints the
//! table recorded in sim/README.md.

use stampede_core::{EventKind, Invariant, Subject};
use stampede_sim::{Plan, RunResult, run, scenarios};

const MAX_SEEDS: u64 = 20;

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
        .filter(|e| !matches!(e.kind, EventKind::Listed { .. } | EventKind::Stocked { .. }))
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

#[test]
fn every_naive_switch_is_caught_within_20_seeds() {
    // Proves: for each switch, some seed in 1..=20 of its mix breaks one of the expected invariants.
    let mut rows = Vec::new();
    for case in scenarios::catch_cases() {
        let design = case.design();
        let caught = (1..=MAX_SEEDS).find_map(|seed| {
            let result = run(&Plan::generate(&case.mix, design, seed)).expect("the run completes");
            let hit = case
                .expect
                .iter()
                .copied()
                .find(|i| result.violated().contains(i))?;
            Some((seed, hit, first_violation_ms(&result, hit)))
        });
        let Some((seed, invariant, at)) = caught else {
            panic!(
                "{} ({}) was not caught within {MAX_SEEDS} seeds of {}",
                case.switch,
                case.with.join(","),
                case.mix.name
            );
        };
        let with = if case.with.is_empty() {
            String::new()
        } else {
            format!(" (+{})", case.with.join(", "))
        };
        rows.push(format!(
            "| `{}`{with} | {} | {invariant} | {seed} | {} |",
            case.switch,
            case.mix.name,
            at.map_or("—".to_string(), |ms| format!(
                "{:.3} s",
                ms as f64 / 1000.0
            ))
        ));
    }
    println!(
        "| switch | fault mix | invariant broken | seeds needed | sim time to first violation |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
}

#[test]
fn a_pair_is_caught_because_of_its_switch_not_its_companion() {
    // Proves: where a row sets companion switches (because a reference layer would mask the
    // mistake), the companions alone break none of the row's invariants on the seeds that
    // catch the pair.
    let seeds: u64 = if cfg!(debug_assertions) { 2 } else { MAX_SEEDS };
    for case in scenarios::catch_cases()
        .into_iter()
        .filter(|c| !c.with.is_empty())
    {
        let mut design = stampede_server::Design::reference();
        for assignment in case.with {
            design
                .apply(assignment)
                .expect("catch cases name real switches");
        }
        for seed in 1..=seeds {
            let result = run(&Plan::generate(&case.mix, design, seed)).expect("the run completes");
            let violated = result.violated();
            assert!(
                case.expect.iter().all(|i| !violated.contains(i)),
                "{} alone breaks {} on seed {seed}: {:?}",
                case.with.join(","),
                case.mix.name,
                violated
            );
        }
    }
}
