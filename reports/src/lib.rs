//! `stampede-reports`: the report model and its renderers.
//!
//! A load run ends as a [`LoadReport`], plain serialisable data; every
//! output is a pure function of it, so `stampede report <dir>` re-renders a
//! run from its `report.json` without re-running it:
//!
//! - [`render_terminal`]: the compact summary printed after a run;
//! - [`render_markdown`]: the same as Markdown tables (`report.md`);
//! - [`render_json`] / [`parse_json`]: `report.json`, versioned;
//! - [`render_html`]: one self-contained page with inline SVG charts;
//! - [`render_compare_html`] / [`render_compare_markdown`]: designs side by side;
//! - [`SimReport`] / [`render_sim_html`]: one simulated run as a page, its
//!   charts over simulated time with faults as bands;
//! - [`story`], [`render_story_text`] / [`render_story_svg`]: the orders and
//!   keys behind a violation as a swim-lane timeline (`stampede explain`).
//! - [`RunSummary`]: one simulated run's `summary.json` (`run`, `replay`),
//!   rendered by [`render_run_text`], [`render_run_markdown`], [`render_run_html`];
//! - [`SweepSummary`] of [`RunRecord`]s (`sweep`, `merge`): [`render_sweep_text`],
//!   [`render_sweep_markdown`], [`render_sweep_html`] (bar charts of failing
//!   seeds per scenario and invariant, run times, runs per CPU-second);
//! - [`CompareSummary`] (`compare`): [`render_compare_summary_text`],
//!   [`render_compare_summary_markdown`], [`render_compare_summary_html`];
//! - [`Conformance`] (`conform`): [`render_conform_text`], [`render_conform_markdown`].
//!
//! Key decision: the content (which rows, which columns, how a number reads)
//! is decided once, as tables, and each renderer only writes them in its
//! format; so the terminal, Markdown and HTML never disagree. Output is
//! deterministic: the same report gives the same bytes.

#![deny(missing_docs)]

mod charts;
mod compare;
mod conform;
mod designs;
mod format;
mod html;
mod json;
mod markdown;
pub mod model;
mod pages;
mod plot;
mod run;
mod sections;
mod sim;
mod story;
mod sweep;
mod table;
mod terminal;

pub use compare::{
    CompareSummary, DesignColumn, render_compare_summary_markdown, render_compare_summary_text,
};
pub use conform::{Check, Conformance, render_conform_markdown, render_conform_text};
pub use designs::{SwitchRow, render_designs};
pub use html::{render_compare_html, render_html};
pub use json::{ReportError, parse_json, render_json};
pub use markdown::{render_compare_markdown, render_markdown};
pub use model::*;
pub use pages::{CHART_CATEGORIES_MAX, render_compare_summary_html, render_sweep_html};
pub use run::{
    EXAMPLE_EVIDENCE_MAX, Latency, LiveViolation, RunCoverage, RunStats, RunSummary,
    SUMMARY_VERSION, render_run_html, render_run_markdown, render_run_text, violation_example,
};
pub use sim::{
    FaultBand, SIM_INTERVAL_MS, SIM_INTERVALS_MAX, SimInterval, SimReport, render_sim_html,
};
pub use story::{
    Beat, Lead, STORY_BEATS_MAX, STORY_THREADS_MAX, Start, Story, render_story_svg,
    render_story_text, story,
};
pub use sweep::{
    FAILING_SEEDS_SHOWN_MAX, RunRecord, SHARDS_MAX, SUMMARY_BYTES_MAX, SWEEP_VERSION, Shard,
    SweepSummary, Totals, failing_line, render_failing_text, render_sweep_markdown,
    render_sweep_text,
};
pub use terminal::render_terminal;

/// The invariant verdicts of any run — a simulated one (`stampede run`) or
/// a load run's audit — as an aligned text table (marks, counts).
pub fn render_verdicts_text(verdicts: &[AuditVerdict]) -> String {
    sections::verdicts(verdicts, false).to_text("    ")
}

/// The same as a Markdown table; with `examples`, a column of the first
/// few instances of each violation.
pub fn render_verdicts_markdown(verdicts: &[AuditVerdict], examples: bool) -> String {
    sections::verdicts(verdicts, examples).to_markdown()
}
