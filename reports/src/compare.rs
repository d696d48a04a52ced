//! A comparison's summary (`stampede compare` writes it as `summary.json`):
//! one [`DesignColumn`] per design over the same scenario and seeds, and its
//! renderers — the terminal table, `report.md`, and (in `pages.rs`) `report.html`.

use crate::run::Latency;
use crate::sweep::RunRecord;
use crate::table::{Align, Table, Tone};
use serde::{Deserialize, Serialize};
use stampede_core::Invariant;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One design's column in a comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesignColumn {
    /// Design label.
    pub design: String,
    /// Seeds run with this design.
    pub runs: usize,
    /// Seeds with any violation.
    pub seeds_failing: usize,
    /// Invariant → seeds on which it was violated.
    pub seeds_violating: BTreeMap<String, usize>,
    /// Invariant → instances over all seeds.
    pub violations: BTreeMap<String, usize>,
    /// Orders created, all seeds.
    pub orders: u64,
    /// Orders confirmed, all seeds.
    pub confirmed: u64,
    /// Order → confirmed over every confirmed order of every seed, simulated time.
    pub confirmation_latency: Latency,
    /// Client requests repeating a key, all seeds.
    pub retries: u64,
    /// Charges, all seeds.
    pub charges: u64,
    /// Refunds, all seeds.
    pub refunds: u64,
    /// Switches of the design whose mistake only a fault the scenario does
    /// not inject brings out (`name=value`): its column says nothing of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexercised: Vec<String>,
}

impl DesignColumn {
    /// The column of `design` from its runs; `samples` are the order →
    /// confirmed times of every confirmed order of those runs.
    pub fn of(design: String, runs: &[&RunRecord], samples: Vec<u64>) -> DesignColumn {
        let mut col = DesignColumn {
            design,
            runs: runs.len(),
            seeds_failing: runs.iter().filter(|r| !r.passed).count(),
            seeds_violating: BTreeMap::new(),
            violations: BTreeMap::new(),
            orders: runs.iter().map(|r| r.orders).sum(),
            confirmed: runs.iter().map(|r| r.confirmed).sum(),
            confirmation_latency: Latency::of(samples),
            retries: runs.iter().map(|r| r.retries).sum(),
            charges: runs.iter().map(|r| r.charges).sum(),
            refunds: runs.iter().map(|r| r.refunds).sum(),
            unexercised: Vec::new(),
        };
        for r in runs {
            for (name, n) in &r.violated {
                *col.seeds_violating.entry(name.clone()).or_default() += 1;
                *col.violations.entry(name.clone()).or_default() += n;
            }
        }
        col
    }
}

/// `summary.json` of a comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareSummary {
    /// Schema version ([`crate::SWEEP_VERSION`]).
    pub version: u32,
    /// `compare`.
    pub kind: String,
    /// The scenario every design ran.
    pub scenario_file: String,
    /// The seeds asked for, as written.
    pub seeds: String,
    /// Wall time, ms.
    pub wall_ms: u64,
    /// One column per design, in the order asked.
    pub designs: Vec<DesignColumn>,
    /// Every run.
    pub runs: Vec<RunRecord>,
}

/// Every invariant any column saw violated, in the checker's order.
pub(crate) fn compared_invariants(s: &CompareSummary) -> Vec<String> {
    Invariant::ALL
        .iter()
        .map(|i| i.name().to_string())
        .filter(|name| s.designs.iter().any(|d| d.violations.contains_key(name)))
        .collect()
}

/// The designs side by side: a row per measure, a column per design.
pub(crate) fn compare_table(s: &CompareSummary) -> Table {
    let mut head: Vec<(&str, Align)> = vec![("", Align::Left)];
    head.extend(s.designs.iter().map(|d| (d.design.as_str(), Align::Right)));
    let mut t = Table::new(&head);
    let mut row = |label: String, tone: Tone, cell: &dyn Fn(&DesignColumn) -> String| {
        let mut cells = vec![label];
        cells.extend(s.designs.iter().map(cell));
        t.row(cells, tone);
    };
    row("seeds failing".into(), Tone::Plain, &|d| {
        format!("{}/{}", d.seeds_failing, d.runs)
    });
    for name in compared_invariants(s) {
        let count = |m: &BTreeMap<String, usize>| m.get(&name).copied().unwrap_or(0);
        row(format!("✗ {name} (seeds / instances)"), Tone::Bad, &|d| {
            format!("{} / {}", count(&d.seeds_violating), count(&d.violations))
        });
    }
    row("orders confirmed".into(), Tone::Plain, &|d| {
        format!("{} of {}", d.confirmed, d.orders)
    });
    row("order → confirmed p50 (sim)".into(), Tone::Plain, &|d| {
        format!("{} ms", d.confirmation_latency.p50_ms)
    });
    row("order → confirmed p99 (sim)".into(), Tone::Plain, &|d| {
        format!("{} ms", d.confirmation_latency.p99_ms)
    });
    row("client retries".into(), Tone::Plain, &|d| {
        d.retries.to_string()
    });
    row("charges".into(), Tone::Plain, &|d| d.charges.to_string());
    row("refunds".into(), Tone::Plain, &|d| d.refunds.to_string());
    if s.designs.iter().any(|d| !d.unexercised.is_empty()) {
        row(
            "not exercised (no fault its mistake needs)".into(),
            Tone::Plain,
            &|d| match d.unexercised.as_slice() {
                [] => "—".to_string(),
                switches => switches.join(", "),
            },
        );
    }
    t
}

/// "Not judged (the scenario opts out): a, b", when the scenario's
/// `invariants` list left any out: a design that held them all would
/// otherwise look clean on invariants no run judged.
pub(crate) fn not_judged_line(s: &CompareSummary) -> Option<String> {
    let names: std::collections::BTreeSet<&str> = s
        .runs
        .iter()
        .flat_map(|r| r.not_judged.iter().map(String::as_str))
        .collect();
    (!names.is_empty()).then(|| {
        let names: Vec<&str> = names.into_iter().collect();
        format!("Not judged (the scenario opts out): {}", names.join(", "))
    })
}

/// The terminal table of a comparison.
pub fn render_compare_summary_text(s: &CompareSummary) -> String {
    let mut text = compare_table(s).to_text("  ");
    if let Some(line) = not_judged_line(s) {
        let _ = writeln!(text, "  {line}");
    }
    text
}

/// `report.md` of a comparison: the table and how to reproduce any run.
pub fn render_compare_summary_markdown(s: &CompareSummary) -> String {
    let mut md = format!("# Compare — {} — seeds {}\n\n", s.scenario_file, s.seeds);
    md.push_str(&compare_table(s).to_markdown());
    if let Some(line) = not_judged_line(s) {
        let _ = writeln!(md, "\n**{line}.**");
    }
    let _ = writeln!(
        md,
        "\nLatencies are simulated time over every confirmed order of every seed. Repro for any run: `stampede run {} --seed N --design <preset> [--set switch=value]`.",
        s.scenario_file
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(design: &str, seed: u64, violated: &[(&str, usize)]) -> RunRecord {
        RunRecord {
            scenario: "tiny".into(),
            scenario_file: "tiny.toml".into(),
            seed,
            design: design.into(),
            passed: violated.is_empty(),
            violated: violated.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
            not_judged: Vec::new(),
            error: None,
            trace_hash: String::new(),
            orders: 3,
            confirmed: 2,
            charges: 2,
            refunds: 0,
            retries: 1,
            confirmation_latency: Latency::default(),
            sim_ms: 1_000,
            wall_ms: 10,
            repro: String::new(),
            kept: None,
        }
    }

    // Proves a column counts seeds violating and instances separately, and the table shows
    // both per invariant in the checker's order, with a column per design.
    #[test]
    fn columns_count_seeds_and_instances() {
        let a = [
            record("naive", 1, &[("one_order_per_key", 2)]),
            record("naive", 2, &[]),
        ];
        let b = [record("reference", 1, &[]), record("reference", 2, &[])];
        let s = CompareSummary {
            version: 1,
            kind: "compare".into(),
            scenario_file: "tiny.toml".into(),
            seeds: "1..2".into(),
            wall_ms: 5,
            designs: vec![
                DesignColumn::of("naive".into(), &a.iter().collect::<Vec<_>>(), vec![40]),
                DesignColumn::of("reference".into(), &b.iter().collect::<Vec<_>>(), vec![]),
            ],
            runs: a.iter().chain(&b).cloned().collect(),
        };
        assert_eq!(s.designs[0].seeds_violating["one_order_per_key"], 1);
        assert_eq!(s.designs[0].violations["one_order_per_key"], 2);
        assert_eq!((s.designs[0].orders, s.designs[0].confirmed), (6, 4));
        let text = render_compare_summary_text(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("naive  reference"), "{text}");
        assert!(lines[1].contains("seeds failing") && lines[1].ends_with("1/2        0/2"));
        assert!(lines[2].contains("✗ one_order_per_key (seeds / instances)"));
        assert!(lines[2].ends_with("1 / 2      0 / 0"), "{text}");
        let md = render_compare_summary_markdown(&s);
        assert!(
            md.contains("| order → confirmed p50 (sim) | 40 ms | 0 ms |"),
            "{md}"
        );
        assert!(!text.contains("Not judged") && !md.contains("Not judged"));
        assert!(!md.contains("not exercised"), "{md}");
        // A column whose design has a switch the scenario cannot bring out says so.
        let mut s = s;
        s.designs[0].unexercised = vec!["webhook_dedup=off".into()];
        let md = render_compare_summary_markdown(&s);
        assert!(
            md.contains("| not exercised (no fault its mistake needs) | webhook_dedup=off | — |"),
            "{md}"
        );
    }

    // Proves a comparison of a scenario that opts out of invariants names them under the table,
    // in the terminal and in report.md, so a design is not taken as clean on them.
    #[test]
    fn invariants_no_run_judged_are_named() {
        let mut run = record("reference", 1, &[]);
        run.not_judged = vec!["timely_decisions".into(), "money_reconciles".into()];
        let s = CompareSummary {
            version: 1,
            kind: "compare".into(),
            scenario_file: "tiny.toml".into(),
            seeds: "1".into(),
            wall_ms: 5,
            designs: vec![DesignColumn::of("reference".into(), &[&run], vec![])],
            runs: vec![run.clone()],
        };
        let line = "Not judged (the scenario opts out): money_reconciles, timely_decisions";
        assert!(render_compare_summary_text(&s).contains(line));
        assert!(render_compare_summary_markdown(&s).contains(line));
    }
}
