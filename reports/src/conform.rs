//! The result of `stampede conform` (named black-box checks against a
//! service) and its pass/fail table for the terminal and `conform.md`;
//! `conform.json` is the [`Conformance`] itself.

use crate::table::{Align, Table, Tone};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One named check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// e.g. `idempotency.replay`.
    pub name: String,
    /// Whether the service did what the contract says.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conformance {
    /// The service under test.
    pub host: String,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl Conformance {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count()
    }
}

/// The pass/fail table as Markdown (`conform.md`).
pub fn render_conform_markdown(c: &Conformance) -> String {
    let mut t = Table::new(&[
        ("check", Align::Left),
        ("result", Align::Left),
        ("what was seen", Align::Left),
    ]);
    for check in &c.checks {
        t.row(
            vec![
                format!("`{}`", check.name),
                crate::format::pass_fail(check.passed).to_string(),
                check.detail.clone(),
            ],
            if check.passed { Tone::Good } else { Tone::Bad },
        );
    }
    format!(
        "# Conformance of {}\n\n{} of {} checks passed.\n\n{}",
        c.host,
        c.checks.len() - c.failed(),
        c.checks.len(),
        t.to_markdown()
    )
}

/// The table for a terminal: a mark, the name and what was seen per check,
/// then the count and PASS or FAIL.
pub fn render_conform_text(c: &Conformance) -> String {
    let width = c.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = format!("conformance of {}\n", c.host);
    for check in &c.checks {
        let mark = if check.passed { "✓" } else { "✗" };
        let _ = writeln!(out, "  {mark} {:width$}  {}", check.name, check.detail);
    }
    let failed = c.failed();
    let _ = writeln!(
        out,
        "  {} checks, {failed} failed: {}",
        c.checks.len(),
        if failed == 0 { "PASS" } else { "FAIL" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves both tables name every check with its result, a pipe in what was seen cannot
    // break the Markdown row, and one failure makes the whole run FAIL.
    #[test]
    fn tables_name_every_check_and_fail_on_one_failure() {
        let c = Conformance {
            host: "127.0.0.1:8080".into(),
            checks: vec![
                Check {
                    name: "idempotency.replay".into(),
                    passed: true,
                    detail: "same order".into(),
                },
                Check {
                    name: "webhooks.forged".into(),
                    passed: false,
                    detail: "200 a|b".into(),
                },
            ],
        };
        assert!(!c.passed());
        let md = render_conform_markdown(&c);
        assert!(md.contains("1 of 2 checks passed."));
        assert!(
            md.contains("| `idempotency.replay` | pass | same order |"),
            "{md}"
        );
        assert!(
            md.contains("| `webhooks.forged` | FAIL | 200 a\\|b |"),
            "{md}"
        );
        let text = render_conform_text(&c);
        assert!(
            text.contains("  ✓ idempotency.replay  same order\n"),
            "{text}"
        );
        assert!(text.contains("  ✗ webhooks.forged     200 a|b\n"), "{text}");
        assert!(text.ends_with("2 checks, 1 failed: FAIL\n"));
    }
}
