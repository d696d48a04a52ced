//! The compact text summary printed after a load run.

use crate::format;
use crate::model::LoadReport;
use crate::sections;
use std::fmt::Write as _;

const INDENT: &str = "  ";

/// A compact text summary of `r` for the terminal: title, how load was
/// offered, per-endpoint latencies (headline percentiles in ms, raw p99
/// beside them), the audit with ✓/✗/· marks and first examples, thresholds
/// with pass/FAIL, and notes. Columns are aligned; no colour codes.
pub fn render_terminal(r: &LoadReport) -> String {
    let mut out = String::new();
    let (requests, errors) = r.request_totals();
    let _ = writeln!(out, "{}", r.title);
    let _ = writeln!(out, "{INDENT}target {}, design {}", r.target, r.design);
    let _ = writeln!(
        out,
        "{INDENT}{}, for {} ({} intervals)",
        format::model(&r.model),
        format::duration(r.duration_ms),
        format::duration(r.interval_ms),
    );
    let _ = writeln!(
        out,
        "{INDENT}{requests} requests, {errors} errors, {} shed (429); verdict {}",
        r.shed_total(),
        sections::verdict(r)
    );

    out.push_str("\nLatency, ms (headline basis; raw p99 as sent)\n");
    let endpoints = sections::endpoints(r);
    if endpoints.is_empty() {
        let _ = writeln!(out, "{INDENT}no data: no endpoint latencies recorded");
    } else {
        out.push_str(&endpoints.to_text(INDENT));
    }

    out.push_str("\nAudit\n");
    let audit = sections::audit(r, false);
    if audit.is_empty() {
        let _ = writeln!(out, "{INDENT}not run");
    } else {
        out.push_str(&audit.to_text(INDENT));
        for a in &r.audit {
            for example in sections::first_examples(&a.examples, a.violations) {
                let _ = writeln!(out, "{INDENT}{INDENT}{}: {example}", a.invariant);
            }
        }
    }

    out.push_str("\nThresholds\n");
    let thresholds = sections::thresholds(r);
    if thresholds.is_empty() {
        let _ = writeln!(out, "{INDENT}none set");
    } else {
        out.push_str(&thresholds.to_text(INDENT));
    }

    list(&mut out, "Notes", &r.notes);
    list(&mut out, "Files", &r.files);
    out
}

/// A titled bullet list, left out when empty.
fn list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for item in items {
        let _ = writeln!(out, "{INDENT}- {item}");
    }
}
