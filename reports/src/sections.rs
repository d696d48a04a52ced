//! The report's content as tables, decided once: which columns, which rows,
//! how each value reads. The renderers only choose the output format.

use crate::format::{self, ms};
use crate::model::{AuditVerdict, LoadReport, ORDER_TO_CONFIRMED, ORDER_TO_OFFERED};
use crate::table::{Align, Table, Tone};

/// Examples shown per violated invariant.
pub(crate) const EXAMPLES_SHOWN_MAX: usize = 3;

/// The endpoint whose latency compare tables and charts single out.
pub(crate) const PLACE_ORDER: &str = "POST /v1/orders";

/// Key facts of the run, as (label, value) pairs.
pub(crate) fn summary(r: &LoadReport) -> Vec<(&'static str, String)> {
    let (requests, errors) = r.request_totals();
    vec![
        ("target", r.target.clone()),
        ("design", r.design.clone()),
        ("model", format::model(&r.model)),
        (
            "duration",
            format!(
                "{} in {} intervals",
                format::duration(r.duration_ms),
                format::duration(r.interval_ms)
            ),
        ),
        ("requests", requests.to_string()),
        ("errors", errors.to_string()),
        ("shed (429)", r.shed_total().to_string()),
        ("verdict", verdict(r).to_string()),
    ]
}

/// `PASS` when every invariant held and every threshold passed; `NOT
/// JUDGED` when nothing failed but the audit was not done (a shard's
/// report, or a merge without the shop): not a pass; `NOT JUDGED (AS
/// ASKED)` when nothing failed and no invariant was judged because the
/// user opted every one out (`--skip` of all, `--no-audit`, a baseline
/// run): the exit is 0, but the word is not a pass; else `FAIL`.
pub(crate) fn verdict(r: &LoadReport) -> &'static str {
    let failed =
        r.audit.iter().any(|a| a.outcome == "violated") || r.thresholds.iter().any(|t| !t.passed);
    let judged = r.audit.iter().any(|a| a.outcome != "not_judged");
    match (r.passed(), failed) {
        (true, _) if !judged => "NOT JUDGED (AS ASKED)",
        (true, _) => "PASS",
        (false, false) if r.audit_not_done.is_some() => "NOT JUDGED",
        _ => "FAIL",
    }
}

/// Per endpoint: counts, basis, the headline percentiles and the raw p99, ms.
pub(crate) fn endpoints(r: &LoadReport) -> Table {
    let mut t = Table::new(&[
        ("endpoint", Align::Left),
        ("requests", Align::Right),
        ("errors", Align::Right),
        ("shed", Align::Right),
        ("basis", Align::Left),
        ("p50", Align::Right),
        ("p90", Align::Right),
        ("p99", Align::Right),
        ("p99.9", Align::Right),
        ("max", Align::Right),
        ("raw p99", Align::Right),
    ]);
    for e in &r.endpoints {
        let h = &e.headline;
        t.row(
            vec![
                e.name.clone(),
                e.requests.to_string(),
                e.errors.to_string(),
                e.shed.to_string(),
                format::basis(e.basis).to_string(),
                ms(h.p50_us),
                ms(h.p90_us),
                ms(h.p99_us),
                ms(h.p999_us),
                ms(h.max_us),
                ms(e.raw.p99_us),
            ],
            Tone::Plain,
        );
    }
    t
}

/// One row per audited invariant, marked ✓/✗/·; with `examples`, a column of the first few.
pub(crate) fn audit(r: &LoadReport, examples: bool) -> Table {
    verdicts(&r.audit, examples)
}

/// The verdicts table of any run, simulated or real.
pub(crate) fn verdicts(audit: &[AuditVerdict], examples: bool) -> Table {
    let mut head = vec![
        ("invariant", Align::Left),
        ("outcome", Align::Left),
        ("violations", Align::Right),
    ];
    if examples {
        head.push(("examples", Align::Left));
    }
    let mut t = Table::new(&head);
    for a in audit {
        let mut cells = vec![
            format!("{} {}", format::outcome_mark(&a.outcome), a.invariant),
            match (&a.reason, a.lost_to_faults) {
                (Some(reason), _) => format!("{} ({reason})", a.outcome),
                (None, 0) => a.outcome.clone(),
                (None, lost) => {
                    format!("{} ({lost} lost to faults the scenario allows)", a.outcome)
                }
            },
            a.violations.to_string(),
        ];
        if examples {
            cells.push(first_examples(&a.examples, a.violations).join("\n"));
        }
        let tone = match a.outcome.as_str() {
            "holds" => Tone::Good,
            "violated" => Tone::Bad,
            _ => Tone::Plain,
        };
        t.row(cells, tone);
    }
    t
}

/// The first few examples, then how many more there were.
pub(crate) fn first_examples(examples: &[String], violations: usize) -> Vec<String> {
    let mut shown: Vec<String> = examples.iter().take(EXAMPLES_SHOWN_MAX).cloned().collect();
    let more = violations.max(examples.len()).saturating_sub(shown.len());
    if more > 0 && !shown.is_empty() {
        shown.push(format!("… and {more} more"));
    }
    shown
}

/// One row per threshold: pass/FAIL, the rule, what was measured.
pub(crate) fn thresholds(r: &LoadReport) -> Table {
    let mut t = Table::new(&[
        ("result", Align::Left),
        ("rule", Align::Left),
        ("measured", Align::Left),
    ]);
    for th in &r.thresholds {
        t.row(
            vec![
                format::pass_fail(th.passed).to_string(),
                th.rule.clone(),
                th.measured.clone(),
            ],
            if th.passed { Tone::Good } else { Tone::Bad },
        );
    }
    t
}

/// The designs side by side: one column per report, headed by its design.
pub(crate) fn compare(reports: &[LoadReport], folders: &[String]) -> Table {
    let mut head: Vec<(&str, Align)> = vec![("", Align::Left)];
    head.extend(reports.iter().map(|r| (r.design.as_str(), Align::Right)));
    let mut t = Table::new(&head);
    if !folders.is_empty() {
        let mut cells = vec!["folder".to_string()];
        cells.extend((0..reports.len()).map(|i| folders.get(i).cloned().unwrap_or_default()));
        t.row(cells, Tone::Plain);
    }
    let mut row = |label: &str, cell: &dyn Fn(&LoadReport) -> String| {
        let mut cells = vec![label.to_string()];
        cells.extend(reports.iter().map(cell));
        t.row(cells, Tone::Plain);
    };
    row("run", &|r| r.title.clone());
    row("model", &|r| format::model(&r.model));
    row("duration", &|r| format::duration(r.duration_ms));
    row("requests", &|r| r.request_totals().0.to_string());
    row("errors", &|r| r.request_totals().1.to_string());
    row("shed (429)", &|r| {
        r.endpoints.iter().map(|e| e.shed).sum::<u64>().to_string()
    });
    for name in [PLACE_ORDER, ORDER_TO_OFFERED, ORDER_TO_CONFIRMED] {
        // Each run's own basis for this row: a closed loop corrects requests but not
        // the order → measures, so one footnote cannot say it for every cell.
        row(&format!("{name} basis"), &|r| {
            r.endpoint(name)
                .map_or("—".to_string(), |e| format::basis(e.basis).to_string())
        });
        row(&format!("{name} p50 (ms)"), &|r| {
            r.endpoint(name)
                .map_or("—".to_string(), |e| ms(e.headline.p50_us))
        });
        row(&format!("{name} p99 (ms)"), &|r| {
            r.endpoint(name)
                .map_or("—".to_string(), |e| ms(e.headline.p99_us))
        });
    }
    for invariant in invariants(reports) {
        row(&invariant, &|r| {
            r.audit
                .iter()
                .find(|a| a.invariant == invariant)
                .map_or("—".to_string(), |a| {
                    let mark = format::outcome_mark(&a.outcome);
                    if a.violations > 0 {
                        format!("{mark} {} ({})", a.outcome, a.violations)
                    } else {
                        format!("{mark} {}", a.outcome)
                    }
                })
        });
    }
    row("thresholds passed", &|r| {
        let passed = r.thresholds.iter().filter(|t| t.passed).count();
        format!("{passed}/{}", r.thresholds.len())
    });
    row("verdict", &|r| verdict(r).to_string());
    t
}

/// Every invariant any report audited, in order of first appearance.
fn invariants(reports: &[LoadReport]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for a in reports.iter().flat_map(|r| &r.audit) {
        if !seen.contains(&a.invariant) {
            seen.push(a.invariant.clone());
        }
    }
    seen
}
