//! The pages of many simulated runs (`sweep`/`merge` and `compare`): they
//! name every scenario, design and invariant, draw their charts, show the
//! counts the model holds, link kept failures, stay self-contained, and are
//! the same bytes for the same summary.

use stampede_reports::*;
use std::collections::BTreeMap;

/// A run of `scenario` with `design` on `seed`, violating `violated` (one instance each).
fn record(scenario: &str, design: &str, seed: u64, violated: &[&str]) -> RunRecord {
    RunRecord {
        scenario: scenario.into(),
        scenario_file: format!("scenarios/{scenario}.toml"),
        seed,
        design: design.into(),
        passed: violated.is_empty(),
        violated: violated.iter().map(|v| (v.to_string(), 1)).collect(),
        not_judged: Vec::new(),
        error: None,
        trace_hash: format!("hash-{scenario}-{seed}"),
        orders: 4,
        confirmed: 3,
        charges: 3,
        refunds: 0,
        retries: 2,
        confirmation_latency: Latency::of(vec![200, 300]),
        sim_ms: 5_000,
        wall_ms: 1_000 + seed * 250,
        repro: format!("stampede run scenarios/{scenario}.toml --seed {seed} --design {design}"),
        kept: None,
    }
}

/// `flash-sale`: 7 seeds, each violating `one_order_per_key`; `db-crash`: 3 of 5
/// seeds violating `no_oversell`, the first kept; 10 runs in 4 s of CPU.
fn sweep() -> SweepSummary {
    let mut runs: Vec<RunRecord> = (1..=7)
        .map(|seed| record("flash-sale", "seed-repo", seed, &["one_order_per_key"]))
        .collect();
    runs.extend((1..=5).map(|seed| {
        let violated: &[&str] = if seed <= 3 { &["no_oversell"] } else { &[] };
        record("db-crash", "seed-repo", seed, violated)
    }));
    runs[7].kept = Some("failures/db-crash-seed-repo-1".into());
    SweepSummary {
        version: SWEEP_VERSION,
        kind: "sweep".into(),
        seeds: "1..7".into(),
        shards: Vec::new(),
        design: "seed-repo".into(),
        swept: Vec::new(),
        scenario_digests: Vec::new(),
        wall_ms: 3_000,
        cpu_ms: 4_000,
        totals: Totals::of(&runs),
        incomplete: None,
        runs,
    }
}

/// `naive`: 7 of 7 seeds violating `one_order_per_key`; `reference`: 3 of 7 violating
/// `no_oversell`; `tuned`: none.
fn compare() -> CompareSummary {
    let mut runs = Vec::new();
    for seed in 1..=7 {
        runs.push(record("tiny", "naive", seed, &["one_order_per_key"]));
        let violated: &[&str] = if seed <= 3 { &["no_oversell"] } else { &[] };
        runs.push(record("tiny", "reference", seed, violated));
        runs.push(record("tiny", "tuned", seed, &[]));
    }
    let designs = ["naive", "reference", "tuned"]
        .iter()
        .map(|d| {
            let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.design == *d).collect();
            DesignColumn::of(d.to_string(), &mine, vec![200, 300])
        })
        .collect();
    CompareSummary {
        version: SWEEP_VERSION,
        kind: "compare".into(),
        scenario_file: "scenarios/tiny.toml".into(),
        seeds: "1..7".into(),
        wall_ms: 9_000,
        designs,
        runs,
    }
}

/// The figure titled `title` (from its `<h3>` to its end).
fn figure<'a>(html: &'a str, title: &str) -> &'a str {
    let start = html
        .find(&format!("<h3>{title}</h3>"))
        .unwrap_or_else(|| panic!("no figure {title:?}"));
    let end = start + html[start..].find("</figure>").expect("closed");
    &html[start..end]
}

/// The numbers written as SVG text in `svg`, in order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("</text>")
        .filter_map(|chunk| chunk.rsplit_once('>').map(|(_, t)| t.trim().to_string()))
        .filter(|t| !t.is_empty())
        .collect()
}

/// No script, and no URL but the SVG and XLink namespaces.
fn assert_self_contained(html: &str) {
    assert!(!html.to_lowercase().contains("<script"));
    let stripped = html
        .replace("http://www.w3.org/2000/svg", "")
        .replace("http://www.w3.org/1999/xlink", "");
    assert!(!stripped.contains("http://") && !stripped.contains("https://"));
}

// Proves the sweep page names each scenario and invariant, draws both charts, writes the
// count of failing seeds per scenario and invariant on the bars (7 and 3, which the y
// axis' ticks 0, 2, 4, 6 cannot supply), states runs per CPU-second, and links the kept run.
#[test]
fn sweep_page_shows_failing_seeds_per_scenario_and_invariant() {
    let html = render_sweep_html(&sweep());
    for name in ["flash-sale", "db-crash", "one_order_per_key", "no_oversell"] {
        assert!(html.contains(name), "{name} missing");
    }
    let chart = figure(&html, "Failing seeds per scenario and invariant");
    assert!(chart.contains("<svg"), "{chart}");
    let labels = texts(chart);
    for count in ["7", "3"] {
        assert_eq!(
            labels.iter().filter(|t| *t == count).count(),
            1,
            "one bar reads {count}: {labels:?}"
        );
    }
    assert!(figure(&html, "Run time per scenario (wall)").contains("<svg"));
    assert!(html.contains("<tr><th>runs per CPU-second</th><td>3.00</td></tr>"));
    assert!(html.contains(
        "<td>scenarios/flash-sale.toml</td><td class=\"num\">7</td><td class=\"num\">7</td>"
    ));
    assert!(html.contains("one_order_per_key: 7"));
    assert!(html.contains("no_oversell: 3"));
    assert!(html.contains("<a href=\"failures/db-crash-seed-repo-1/report.html\">"));
    assert_eq!(
        html.matches("<li>seed ").count(),
        10,
        "each failing seed listed"
    );
    assert_self_contained(&html);
}

// Proves the compare page names each design and invariant, shows per design the seeds
// violating each invariant (7 for naive, 3 for reference) on the chart and in the table,
// and draws the run time and confirmation charts.
#[test]
fn compare_page_puts_designs_side_by_side() {
    let html = render_compare_summary_html(&compare());
    for name in [
        "naive",
        "reference",
        "tuned",
        "one_order_per_key",
        "no_oversell",
    ] {
        assert!(html.contains(name), "{name} missing");
    }
    let chart = figure(&html, "Seeds violating, per design and invariant");
    assert!(chart.contains("<svg"));
    let labels = texts(chart);
    assert_eq!(labels.iter().filter(|t| *t == "7").count(), 1, "{labels:?}");
    assert_eq!(labels.iter().filter(|t| *t == "3").count(), 1, "{labels:?}");
    assert!(html.contains(
        "<td>✗ one_order_per_key (seeds / instances)</td><td class=\"num\">7 / 7</td><td class=\"num\">0 / 0</td>"
    ));
    assert!(html.contains(
        "<td>✗ no_oversell (seeds / instances)</td><td class=\"num\">0 / 0</td><td class=\"num\">3 / 3</td>"
    ));
    assert!(figure(&html, "Run time per design (wall)").contains("<svg"));
    assert!(figure(&html, "Order → confirmed per design (simulated)").contains("<svg"));
    assert_self_contained(&html);
}

// Proves a sweep where every seed held says so instead of drawing an empty chart, and a
// long list of failing seeds is cut at the cap, saying how many were left off.
#[test]
fn nothing_failing_says_so_and_long_lists_are_capped() {
    let mut clean = sweep();
    clean.runs.retain(|r| r.passed);
    clean.totals = Totals::of(&clean.runs);
    let html = render_sweep_html(&clean);
    assert!(html.contains("No data: no seed failed."));
    assert!(html.contains("None: every run held every invariant."));

    let mut many = sweep();
    many.runs = (1..=FAILING_SEEDS_SHOWN_MAX as u64 + 4)
        .map(|seed| record("flash-sale", "seed-repo", seed, &["no_oversell"]))
        .collect();
    many.totals = Totals::of(&many.runs);
    let html = render_sweep_html(&many);
    assert_eq!(html.matches("<li>seed ").count(), FAILING_SEEDS_SHOWN_MAX);
    assert!(html.contains("<li>… and 4 more (all in summary.json)</li>"));
}

// Proves the pages are a function of the summary: the same summary, the same bytes; and
// text from the summary cannot open a tag.
#[test]
fn pages_are_deterministic_and_escaped() {
    assert_eq!(render_sweep_html(&sweep()), render_sweep_html(&sweep()));
    assert_eq!(
        render_compare_summary_html(&compare()),
        render_compare_summary_html(&compare())
    );
    let mut hostile = sweep();
    hostile.runs[0].violated = BTreeMap::from([("<img src=x>".to_string(), 1)]);
    let html = render_sweep_html(&hostile);
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;img src=x&gt;"));
}
