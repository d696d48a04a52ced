//! The pages of many simulated runs: a sweep's (`stampede sweep` and
//! `merge`) and a comparison's (`stampede compare`), each one self-contained
//! `report.html` with bar charts drawn by `plot.rs`.
//!
//! Key decision: every number a chart shows is also in a table or list on
//! the same page, counted from the same summary, so a chart is a view and
//! never the only place a fact is stated.

use crate::compare::{CompareSummary, compare_table, compared_invariants};
use crate::format::escape_html;
use crate::html::{figure_of, header, page};
use crate::plot::{BarSeries, Bars, colour, draw_bars};
use crate::run::Latency;
use crate::sweep::{RunRecord, SweepSummary, by_scenario, failing, scenario_table, title};
use stampede_core::Invariant;
use std::fmt::Write as _;

/// Most categories (scenarios, invariants, designs) one chart draws; the
/// tables below it carry the rest.
pub const CHART_CATEGORIES_MAX: usize = 24;
/// One bar chart's plot, pixels.
const BARS_SIZE: (u32, u32) = (640, 320);

/// A bar chart of `categories` × `series`, at most [`CHART_CATEGORIES_MAX`] categories.
fn bars(y_desc: &str, categories: Vec<String>, series: Vec<(String, Vec<f64>)>) -> Bars {
    let categories: Vec<String> = categories.into_iter().take(CHART_CATEGORIES_MAX).collect();
    Bars {
        series: series
            .into_iter()
            .enumerate()
            .map(|(i, (label, values))| BarSeries {
                label,
                colour: colour(i),
                values: values.into_iter().take(categories.len()).collect(),
            })
            .collect(),
        categories,
        y_desc: y_desc.to_string(),
        size: BARS_SIZE,
    }
}

/// What the run-time charts' y axis counts.
const WALL_SECONDS: &str = "wall seconds per run";

/// p50, p99 and max of some wall times (ms), as three bar series of seconds over `groups`.
fn time_series(groups: &[Latency]) -> Vec<(String, Vec<f64>)> {
    let pick = |label: &str, f: fn(&Latency) -> u64| {
        let seconds = groups.iter().map(|l| f(l) as f64 / 1000.0).collect();
        (label.to_string(), seconds)
    };
    vec![
        pick("p50", |l| l.p50_ms),
        pick("p99", |l| l.p99_ms),
        pick("max", |l| l.max_ms),
    ]
}

/// Invariants in the checker's order, then any name it does not know, sorted.
fn checker_order(mut names: Vec<String>) -> Vec<String> {
    let rank = |n: &String| {
        Invariant::ALL
            .iter()
            .position(|i| i.name() == n)
            .unwrap_or(usize::MAX)
    };
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    names.dedup();
    names
}

/// Failing seeds per scenario (x) and invariant (one bar colour each); runs
/// that could not complete as their own colour.
fn failing_chart(s: &SweepSummary) -> Bars {
    let rows = by_scenario(&s.runs);
    let names = checker_order(
        rows.values()
            .flat_map(|r| r.violated.keys().map(|k| k.to_string()))
            .collect(),
    );
    let mut series: Vec<(String, Vec<f64>)> = names
        .iter()
        .map(|name| {
            let seeds = rows.values().map(|r| r.violated.get(name.as_str()));
            (
                name.clone(),
                seeds.map(|n| n.copied().unwrap_or(0) as f64).collect(),
            )
        })
        .collect();
    if rows.values().any(|r| r.totals.errors > 0) {
        let errors = rows.values().map(|r| r.totals.errors as f64).collect();
        series.push(("run did not complete".into(), errors));
    }
    let categories = rows.values().map(|r| r.scenario.to_string()).collect();
    bars("failing seeds", categories, series)
}

/// Wall time of one run per scenario: p50, p99, max.
fn sweep_time_chart(s: &SweepSummary) -> Bars {
    let rows = by_scenario(&s.runs);
    let times: Vec<Latency> = rows
        .values()
        .map(|r| Latency::of(r.wall_ms.clone()))
        .collect();
    let categories = rows.values().map(|r| r.scenario.to_string()).collect();
    bars(WALL_SECONDS, categories, time_series(&times))
}

/// A titled bar chart, or a note saying `why` there is none.
fn bar_figure(title: &str, chart: &Bars, why: &str) -> String {
    figure_of(title, draw_bars(chart), why)
}

/// A two-column table of facts.
fn facts_html(facts: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"summary\">\n");
    for (label, value) in facts {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value)
        );
    }
    out.push_str("</table>\n");
    out
}

/// The failing runs, each with its repro command and a link to its kept
/// outputs; at most [`crate::FAILING_SEEDS_SHOWN_MAX`], saying how many more.
fn failing_html(runs: &[RunRecord]) -> String {
    let (shown, left_off) = failing(runs);
    if shown.is_empty() {
        return "<h2>Failing seeds</h2>\n<p class=\"muted\">None: every run held every invariant.</p>\n".into();
    }
    let mut out = String::from("<h2>Failing seeds</h2>\n<ul>\n");
    for r in shown {
        let kept = r.kept.as_deref().map_or(String::new(), |dir| {
            format!(
                " — <a href=\"{0}/report.html\">its report</a>, <a href=\"{0}/trace.jsonl\">trace</a>",
                escape_html(dir)
            )
        });
        let _ = writeln!(
            out,
            "<li>seed {} of {} [{}]: {}<br><code>{}</code>{kept}</li>",
            r.seed,
            escape_html(&r.scenario_file),
            escape_html(&r.design),
            escape_html(&r.failure()),
            escape_html(&r.repro)
        );
    }
    if left_off > 0 {
        let _ = writeln!(out, "<li>… and {left_off} more (all in summary.json)</li>");
    }
    out.push_str("</ul>\n");
    out
}

/// The sweep's facts: what ran, how it went, and what it cost.
fn sweep_facts(s: &SweepSummary) -> Vec<(&'static str, String)> {
    let t = &s.totals;
    let shards: Vec<String> = s.shards.iter().map(|x| x.to_string()).collect();
    vec![
        ("seeds", s.seeds.clone()),
        ("design", s.design.clone()),
        (
            "shards",
            if shards.is_empty() {
                "the whole sweep".into()
            } else {
                shards.join(", ")
            },
        ),
        ("scenarios", by_scenario(&s.runs).len().to_string()),
        ("runs", t.runs.to_string()),
        ("passed", t.passed.to_string()),
        ("failed", t.failed.to_string()),
        ("errors", t.errors.to_string()),
        ("wall time", format!("{:.1} s", s.wall_ms as f64 / 1000.0)),
        (
            "CPU time",
            match s.cpu_ms {
                0 => "unknown".into(),
                ms => format!("{:.1} s", ms as f64 / 1000.0),
            },
        ),
        (
            "runs per CPU-second",
            s.runs_per_cpu_second()
                .map_or("unknown".into(), |r| format!("{r:.2}")),
        ),
    ]
}

/// A sweep's `report.html`: facts (runs per CPU-second among them), failing
/// seeds per scenario and invariant, run time per scenario, the per-scenario
/// table, and the failing seeds with their repro commands.
pub fn render_sweep_html(s: &SweepSummary) -> String {
    let title = title(s);
    let mut body = header(&title, s.verdict());
    if let Some(why) = &s.incomplete {
        let _ = writeln!(
            body,
            "<p><strong>INCOMPLETE: {}.</strong></p>",
            escape_html(why)
        );
    }
    body.push_str("<h2>Sweep</h2>\n");
    body.push_str(&facts_html(&sweep_facts(s)));
    body.push_str("<h2>Charts</h2>\n<div class=\"charts\">\n");
    body.push_str(&bar_figure(
        "Failing seeds per scenario and invariant",
        &failing_chart(s),
        "no seed failed",
    ));
    body.push_str(&bar_figure(
        "Run time per scenario (wall)",
        &sweep_time_chart(s),
        "no runs",
    ));
    body.push_str("</div>\n<h2>Per scenario</h2>\n");
    let _ = writeln!(
        body,
        "<div class=\"scroll\">{}</div>",
        scenario_table(s).to_html("scenarios")
    );
    body.push_str(&failing_html(&s.runs));
    page(&title, &body)
}

/// Seeds violating, per design (x) and invariant (one bar colour each, named
/// in full in the legend: invariant names are too long for the axis).
fn violating_chart(s: &CompareSummary) -> Bars {
    let series = compared_invariants(s)
        .into_iter()
        .map(|name| {
            let seeds = s.designs.iter().map(|d| d.seeds_violating.get(&name));
            let seeds = seeds.map(|n| n.copied().unwrap_or(0) as f64).collect();
            (name, seeds)
        })
        .collect();
    let designs = s.designs.iter().map(|d| d.design.clone()).collect();
    bars("seeds violating", designs, series)
}

/// Per design (x): wall time per run, p50/p99/max.
fn compare_time_chart(s: &CompareSummary) -> Bars {
    let times: Vec<Latency> = s
        .designs
        .iter()
        .map(|d| {
            let mine = s.runs.iter().filter(|r| r.design == d.design);
            Latency::of(mine.map(|r| r.wall_ms).collect())
        })
        .collect();
    let designs = s.designs.iter().map(|d| d.design.clone()).collect();
    bars(WALL_SECONDS, designs, time_series(&times))
}

/// Per design (x): order → confirmed in simulated time, p50 and p99.
fn compare_confirmation_chart(s: &CompareSummary) -> Bars {
    let latency = |f: fn(&Latency) -> u64| {
        s.designs
            .iter()
            .map(|d| f(&d.confirmation_latency) as f64)
            .collect()
    };
    let series = vec![
        ("p50".to_string(), latency(|l| l.p50_ms)),
        ("p99".to_string(), latency(|l| l.p99_ms)),
    ];
    let confirmed = s.designs.iter().any(|d| d.confirmation_latency.n > 0);
    let designs = if confirmed {
        s.designs.iter().map(|d| d.design.clone()).collect()
    } else {
        Vec::new()
    };
    bars("simulated ms", designs, series)
}

/// A comparison's `report.html`: the designs side by side as charts (seeds
/// violating per invariant, run time, order → confirmed), then the table and
/// the failing seeds.
pub fn render_compare_summary_html(s: &CompareSummary) -> String {
    let title = format!("Compare — {} — seeds {}", s.scenario_file, s.seeds);
    let mut body = format!("<header>\n<h1>{}</h1>\n</header>\n", escape_html(&title));
    let designs: Vec<&str> = s.designs.iter().map(|d| d.design.as_str()).collect();
    body.push_str(&facts_html(&[
        ("scenario", s.scenario_file.clone()),
        ("seeds", s.seeds.clone()),
        ("designs", designs.join(", ")),
        ("runs", s.runs.len().to_string()),
        ("wall time", format!("{:.1} s", s.wall_ms as f64 / 1000.0)),
    ]));
    body.push_str("<h2>Side by side</h2>\n<div class=\"charts\">\n");
    body.push_str(&bar_figure(
        "Seeds violating, per design and invariant",
        &violating_chart(s),
        "no design violated any invariant",
    ));
    body.push_str(&bar_figure(
        "Run time per design (wall)",
        &compare_time_chart(s),
        "no runs",
    ));
    body.push_str(&bar_figure(
        "Order → confirmed per design (simulated)",
        &compare_confirmation_chart(s),
        "no order was confirmed",
    ));
    body.push_str("</div>\n<h2>Table</h2>\n");
    let _ = writeln!(
        body,
        "<div class=\"scroll\">{}</div>\n<p class=\"muted\">Latencies are simulated time over every confirmed order of every seed.</p>",
        compare_table(s).to_html("compare")
    );
    if let Some(line) = crate::compare::not_judged_line(s) {
        let _ = writeln!(body, "<p><strong>{}.</strong></p>", escape_html(&line));
    }
    body.push_str(&failing_html(&s.runs));
    page(&title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves categories past the cap are left to the tables, and each series keeps one value
    // per category drawn.
    #[test]
    fn charts_draw_at_most_the_category_cap() {
        let many: Vec<String> = (0..CHART_CATEGORIES_MAX + 3)
            .map(|i| i.to_string())
            .collect();
        let b = bars("n", many.clone(), vec![("a".into(), vec![1.0; many.len()])]);
        assert_eq!(b.categories.len(), CHART_CATEGORIES_MAX);
        assert_eq!(b.series[0].values.len(), CHART_CATEGORIES_MAX);
        assert!(matches!(draw_bars(&b), crate::plot::Drawn::Svg(_)));
    }

    // Proves invariant names sort in the checker's order, unknown names last.
    #[test]
    fn invariants_in_checker_order() {
        let names = ["zzz", "one_order_per_key", "no_oversell"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            checker_order(names),
            ["no_oversell", "one_order_per_key", "zzz"]
        );
    }
}
