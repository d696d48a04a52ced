//! Markdown: the terminal summary's content as tables, for `report.md`, pull
//! requests and CI summaries.

use crate::format::markdown_inert;
use crate::model::LoadReport;
use crate::sections;
use std::fmt::Write as _;

/// `r` as Markdown: title, summary, per-endpoint latencies, audit (with first
/// examples), thresholds, notes and files. Same content as [`crate::render_terminal`].
pub fn render_markdown(r: &LoadReport) -> String {
    let mut out = format!("# {}\n\n", markdown_inert(&r.title));
    for (label, value) in sections::summary(r) {
        let _ = writeln!(out, "- **{label}**: {}", markdown_inert(&value));
    }

    out.push_str("\n## Latency (ms)\n\n");
    out.push_str(
        "Headline percentiles on each endpoint's basis; `raw p99` is as sent, uncorrected.\n\n",
    );
    let endpoints = sections::endpoints(r);
    if endpoints.is_empty() {
        out.push_str("No data: no endpoint latencies recorded.\n");
    } else {
        out.push_str(&endpoints.to_markdown());
    }

    out.push_str("\n## Audit\n\n");
    let audit = sections::audit(r, true);
    if audit.is_empty() {
        out.push_str("Not run.\n");
    } else {
        out.push_str(&audit.to_markdown());
    }

    out.push_str("\n## Thresholds\n\n");
    let thresholds = sections::thresholds(r);
    if thresholds.is_empty() {
        out.push_str("None set.\n");
    } else {
        out.push_str(&thresholds.to_markdown());
    }

    list(&mut out, "Notes", &r.notes, false);
    list(&mut out, "Files", &r.files, true);
    out
}

/// Several runs (typically one per design) side by side, one column each:
/// model, requests, errors, p50/p99 of `POST /v1/orders` and of
/// `order → confirmed`, each invariant's outcome, thresholds and verdict.
pub fn render_compare_markdown(reports: &[LoadReport], folders: &[String]) -> String {
    let mut out = String::from("# Designs compared\n\n");
    if reports.is_empty() {
        out.push_str("No data: no reports to compare.\n");
        return out;
    }
    out.push_str(&sections::compare(reports, folders).to_markdown());
    out.push_str(
        "\nLatencies are headline percentiles in ms, on the basis each row's `basis` line \
         gives per run: `intended start` (open loop, from when the request should have been \
         sent), `corrected` (closed loop, corrected for coordinated omission) or `raw` \
         (uncorrected).\n",
    );
    out
}

/// A titled bullet list, left out when empty; `code` sets items as code.
fn list(out: &mut String, title: &str, items: &[String], code: bool) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## {title}\n");
    for item in items {
        if code {
            let _ = writeln!(out, "- `{}`", item.replace('`', "'"));
        } else {
            let _ = writeln!(out, "- {}", markdown_inert(item));
        }
    }
}
