//! A sweep's summary (`stampede sweep` and `stampede merge` write it as
//! `summary.json`): one [`RunRecord`] per seeded run, and its renderers — the
//! terminal lines, `report.md`, and (in `pages.rs`) `report.html`.

use crate::run::Latency;
use crate::table::{Align, Table, Tone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Version of the sweep/compare `summary.json` schema.
pub const SWEEP_VERSION: u32 = 1;

/// Largest summary or report file read back (`merge`, `report`), bytes: a
/// sweep of a million seeds writes about a gigabyte.
pub const SUMMARY_BYTES_MAX: u64 = 2 << 30;
/// Most failing seeds a report lists (the rest are counted).
pub const FAILING_SEEDS_SHOWN_MAX: usize = 100;

/// `I/N`: the I-th of N interleaved parts of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based part number.
    pub index: u32,
    /// Parts in all.
    pub count: u32,
}

/// Most parts a sweep is split into.
pub const SHARDS_MAX: u32 = 1024;

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("{text:?} is not I/N with 1 <= I <= N <= {SHARDS_MAX}");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if index == 0 || index > count || count > SHARDS_MAX {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One run of a sweep or comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// The scenario file, as named on the command line.
    pub scenario_file: String,
    /// The same seed replays the same run exactly.
    pub seed: u64,
    /// Design label (`preset[+switch=value...]`).
    pub design: String,
    /// Every invariant held.
    pub passed: bool,
    /// Violated invariants → instances.
    pub violated: BTreeMap<String, usize>,
    /// Invariants the run did not judge (the scenario opts out of them):
    /// shown beside the verdict, never a silent pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_judged: Vec<String>,
    /// Why the run could not complete, if it could not.
    pub error: Option<String>,
    /// SHA-256 of the history.
    pub trace_hash: String,
    /// Orders created.
    pub orders: u64,
    /// Orders confirmed.
    pub confirmed: u64,
    /// PSP charges.
    pub charges: u64,
    /// PSP refunds.
    pub refunds: u64,
    /// Client requests that repeated a key (retries, double clicks).
    pub retries: u64,
    /// Order → confirmed, simulated time.
    pub confirmation_latency: Latency,
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// Wall time, ms.
    pub wall_ms: u64,
    /// The command that reproduces it.
    pub repro: String,
    /// The folder its full outputs (summary, report, trace) were kept in,
    /// relative to the summary's folder, or absolute after a merge; none
    /// when it passed or was not among the failures kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

impl RunRecord {
    /// What went wrong: the error, or the violated invariants.
    pub fn failure(&self) -> String {
        match &self.error {
            Some(e) => e.clone(),
            None => self.violated.keys().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Totals over a set of runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Runs counted.
    pub runs: usize,
    /// Runs where every invariant held.
    pub passed: usize,
    /// Runs with a violation.
    pub failed: usize,
    /// Runs that could not complete.
    pub errors: usize,
}

impl Totals {
    /// The totals of `runs`.
    pub fn of(runs: &[RunRecord]) -> Totals {
        let mut t = Totals::default();
        runs.iter().for_each(|r| t.add(r));
        t
    }

    /// Counts one more run.
    pub fn add(&mut self, r: &RunRecord) {
        self.runs += 1;
        match (&r.error, r.passed) {
            (Some(_), _) => self.errors += 1,
            (None, true) => self.passed += 1,
            (None, false) => self.failed += 1,
        }
    }
}

/// `summary.json` of a sweep (or of a merge of several).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// Schema version ([`SWEEP_VERSION`]).
    pub version: u32,
    /// `sweep`.
    pub kind: String,
    /// The seeds asked for.
    pub seeds: String,
    /// The shards this summary covers (empty: the whole sweep).
    pub shards: Vec<Shard>,
    /// Design asked for, or `scenario default`.
    pub design: String,
    /// What was swept: each scenario file with the design its runs use
    /// (`file [design]`), in sweep order. Shards of one sweep agree on it,
    /// so a merge can tell them from parts of another sweep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub swept: Vec<String>,
    /// A digest of each swept scenario as parsed (comments and layout do not
    /// count), in the order of `swept`: shards of one sweep agree on it, so a
    /// merge refuses a part made after a scenario file was edited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenario_digests: Vec<String>,
    /// Wall time, ms (summed over merged shards).
    pub wall_ms: u64,
    /// CPU time the sweep's process used (user + system), ms (summed over
    /// merged shards); 0 when the platform could not say.
    #[serde(default)]
    pub cpu_ms: u64,
    /// Runs by outcome.
    pub totals: Totals,
    /// Why runs of the sweep are not here, when some are not: a `--fail-fast`
    /// sweep that stopped, a merge of some of the parts. Their seeds were not
    /// judged, so the summary is no pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// Every run, by scenario file then seed.
    pub runs: Vec<RunRecord>,
}

impl SweepSummary {
    /// `FAIL` when a run failed, else `INCOMPLETE` when runs are missing,
    /// else `PASS`.
    pub fn verdict(&self) -> &'static str {
        if self.totals.failed + self.totals.errors > 0 {
            "FAIL"
        } else if self.incomplete.is_some() {
            "INCOMPLETE"
        } else {
            "PASS"
        }
    }

    /// Runs per second of CPU time, when the CPU time is known.
    pub fn runs_per_cpu_second(&self) -> Option<f64> {
        (self.cpu_ms > 0).then(|| self.totals.runs as f64 / (self.cpu_ms as f64 / 1000.0))
    }
}

/// "12.3 s CPU, 4.56 runs per CPU-second", or nothing when unknown.
pub(crate) fn cpu_note(s: &SweepSummary) -> String {
    s.runs_per_cpu_second().map_or(String::new(), |rate| {
        format!(
            ", {:.1} s CPU, {rate:.2} runs per CPU-second",
            s.cpu_ms as f64 / 1000.0
        )
    })
}

/// One scenario's line in a sweep report.
#[derive(Default)]
pub(crate) struct ScenarioRow<'a> {
    pub(crate) scenario: &'a str,
    pub(crate) totals: Totals,
    /// Invariant → seeds violating it.
    pub(crate) violated: BTreeMap<&'a str, usize>,
    /// Invariants some run of it did not judge.
    pub(crate) not_judged: std::collections::BTreeSet<&'a str>,
    /// Each run's wall time, ms.
    pub(crate) wall_ms: Vec<u64>,
}

/// A sweep's runs grouped by scenario file.
pub(crate) fn by_scenario(runs: &[RunRecord]) -> BTreeMap<&str, ScenarioRow<'_>> {
    let mut rows: BTreeMap<&str, ScenarioRow<'_>> = BTreeMap::new();
    for r in runs {
        let row = rows.entry(r.scenario_file.as_str()).or_default();
        row.scenario = &r.scenario;
        row.totals.add(r);
        for name in r.violated.keys() {
            *row.violated.entry(name.as_str()).or_default() += 1;
        }
        row.not_judged
            .extend(r.not_judged.iter().map(String::as_str));
        row.wall_ms.push(r.wall_ms);
    }
    rows
}

/// The title: seeds, design and shards.
pub(crate) fn title(s: &SweepSummary) -> String {
    let shards = if s.shards.is_empty() {
        String::new()
    } else {
        let shards: Vec<String> = s.shards.iter().map(Shard::to_string).collect();
        format!(" — shards {}", shards.join(", "))
    };
    format!("Sweep — seeds {} — design {}{shards}", s.seeds, s.design)
}

/// "; not judged (the scenario opts out): a, b", or nothing.
fn not_judged_text(row: &ScenarioRow<'_>) -> String {
    if row.not_judged.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = row.not_judged.iter().copied().collect();
    format!("; not judged (the scenario opts out): {}", names.join(", "))
}

/// "N runs: P passed, F failed, E errors".
fn totals_text(t: &Totals) -> String {
    format!(
        "{} runs: {} passed, {} failed, {} errors",
        t.runs, t.passed, t.failed, t.errors
    )
}

/// One row per scenario file: runs, failures, seeds violating each invariant, run time.
pub(crate) fn scenario_table(s: &SweepSummary) -> Table {
    let mut t = Table::new(&[
        ("scenario", Align::Left),
        ("runs", Align::Right),
        ("failed", Align::Right),
        ("errors", Align::Right),
        ("seeds violating (by invariant)", Align::Left),
        ("run time (sum)", Align::Right),
    ]);
    for (file, row) in by_scenario(&s.runs) {
        let v: Vec<String> = row
            .violated
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let tone = if row.totals.failed + row.totals.errors == 0 {
            Tone::Good
        } else {
            Tone::Bad
        };
        t.row(
            vec![
                file.to_string(),
                row.totals.runs.to_string(),
                row.totals.failed.to_string(),
                row.totals.errors.to_string(),
                if v.is_empty() {
                    "—".to_string()
                } else {
                    v.join(", ")
                } + &not_judged_text(&row),
                format!("{:.1} s", row.wall_ms.iter().sum::<u64>() as f64 / 1000.0),
            ],
            tone,
        );
    }
    t
}

/// The failing runs, at most [`FAILING_SEEDS_SHOWN_MAX`], and how many were left off.
pub(crate) fn failing(runs: &[RunRecord]) -> (Vec<&RunRecord>, usize) {
    let all: Vec<&RunRecord> = runs.iter().filter(|r| !r.passed).collect();
    let left_off = all.len().saturating_sub(FAILING_SEEDS_SHOWN_MAX);
    (
        all.into_iter().take(FAILING_SEEDS_SHOWN_MAX).collect(),
        left_off,
    )
}

/// `report.md` of a sweep: totals and time, the per-scenario table, the
/// failing seeds with their repro commands.
pub fn render_sweep_markdown(s: &SweepSummary) -> String {
    let mut md = format!("# {}\n\n", title(s));
    let _ = writeln!(
        md,
        "**{}** in {:.1} s of wall time{}.\n",
        totals_text(&s.totals),
        s.wall_ms as f64 / 1000.0,
        cpu_note(s)
    );
    if let Some(why) = &s.incomplete {
        let _ = writeln!(md, "**INCOMPLETE: {why}.**\n");
    }
    md.push_str(&scenario_table(s).to_markdown());
    let (failing, left_off) = failing(&s.runs);
    if !failing.is_empty() {
        let _ = writeln!(md, "\n## Failing seeds\n");
        for r in failing {
            let _ = writeln!(
                md,
                "- seed {} of {}: {} — `{}`",
                r.seed,
                r.scenario_file,
                r.failure(),
                r.repro
            );
        }
        if left_off > 0 {
            let _ = writeln!(md, "- … and {left_off} more (all in summary.json)");
        }
    }
    md
}

/// The terminal summary of a sweep: one line per scenario file, then the
/// totals and time (`threads`, when known, is how many ran at once).
pub fn render_sweep_text(s: &SweepSummary, threads: Option<usize>) -> String {
    let mut out = String::new();
    for (file, row) in by_scenario(&s.runs) {
        let t = &row.totals;
        let mark = if t.failed + t.errors == 0 {
            "✓"
        } else {
            "✗"
        };
        let v: Vec<String> = row
            .violated
            .iter()
            .map(|(k, n)| format!("{k} on {n}"))
            .collect();
        let violated = if v.is_empty() {
            String::new()
        } else {
            format!("; violated: {}", v.join(", "))
        };
        let _ = writeln!(
            out,
            "  {mark} {file}: {}/{} seeds hold{violated}{}",
            t.passed,
            t.runs,
            not_judged_text(&row)
        );
    }
    let _ = writeln!(
        out,
        "{}; took {:.1} s{}{}",
        totals_text(&s.totals),
        s.wall_ms as f64 / 1000.0,
        threads.map_or(String::new(), |n| format!(" on {n} threads")),
        cpu_note(s)
    );
    if let Some(why) = &s.incomplete {
        let _ = writeln!(out, "INCOMPLETE: {why}");
    }
    out
}

/// A failing run as `sweep` prints it as it happens and `merge` afterwards:
/// file, seed and design, what failed (invariants, or the error), the repro.
pub fn failing_line(r: &RunRecord) -> String {
    format!(
        "✗ {} seed {} [{}]: {}\n    repro: {}",
        r.scenario_file,
        r.seed,
        r.design,
        r.failure(),
        r.repro
    )
}

/// One line per failing run with its repro command (what `merge` prints).
pub fn render_failing_text(runs: &[RunRecord]) -> String {
    let (failing, left_off) = failing(runs);
    let mut out = String::new();
    for r in failing {
        let _ = writeln!(out, "{}", failing_line(r));
    }
    if left_off > 0 {
        let _ = writeln!(out, "… and {left_off} more failing runs (in summary.json)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(file: &str, seed: u64, violated: &[&str]) -> RunRecord {
        RunRecord {
            scenario: file.trim_end_matches(".toml").into(),
            scenario_file: file.into(),
            seed,
            design: "seed-repo".into(),
            passed: violated.is_empty(),
            violated: violated.iter().map(|v| (v.to_string(), 1)).collect(),
            not_judged: Vec::new(),
            error: None,
            trace_hash: format!("h{seed}"),
            orders: 2,
            confirmed: 1,
            charges: 1,
            refunds: 0,
            retries: 1,
            confirmation_latency: Latency::of(vec![30]),
            sim_ms: 1_000,
            wall_ms: 100 * seed,
            repro: format!("stampede run {file} --seed {seed} --design seed-repo"),
            kept: None,
        }
    }

    fn summary(runs: Vec<RunRecord>, cpu_ms: u64) -> SweepSummary {
        SweepSummary {
            version: SWEEP_VERSION,
            kind: "sweep".into(),
            seeds: "1..10".into(),
            shards: Vec::new(),
            design: "seed-repo".into(),
            swept: Vec::new(),
            scenario_digests: Vec::new(),
            wall_ms: 2_000,
            cpu_ms,
            totals: Totals::of(&runs),
            incomplete: None,
            runs,
        }
    }

    // Proves: 10 runs in 4 s of CPU are 2.5 runs per CPU-second, shown with the CPU time; a
    // summary without CPU time (an older file, or a platform that cannot say) shows none.
    #[test]
    fn runs_per_cpu_second_is_runs_over_cpu_time_and_absent_when_unknown() {
        let runs: Vec<RunRecord> = (1..=10).map(|s| record("a.toml", s, &[])).collect();
        let mut s = summary(runs, 4_000);
        assert_eq!(s.runs_per_cpu_second(), Some(2.5));
        assert_eq!(cpu_note(&s), ", 4.0 s CPU, 2.50 runs per CPU-second");
        s.cpu_ms = 0;
        assert_eq!(s.runs_per_cpu_second(), None);
        assert_eq!(cpu_note(&s), "");
    }

    // Proves shards parse as I/N within bounds and print back the same.
    #[test]
    fn shards_parse_and_refuse_nonsense() {
        let shard: Shard = "2/4".parse().unwrap();
        assert_eq!(shard, Shard { index: 2, count: 4 });
        assert_eq!(shard.to_string(), "2/4");
        for bad in ["0/4", "5/4", "1", "a/b", "1/0", "1/5000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} accepted");
        }
    }

    // Proves the text and Markdown count per scenario, list each failing seed with its repro,
    // and cap the list, saying how many were left off.
    #[test]
    fn text_and_markdown_count_per_scenario_and_cap_the_failing_list() {
        let mut runs: Vec<RunRecord> = (1..=3).map(|s| record("a.toml", s, &["x"])).collect();
        runs.push(record("b.toml", 1, &[]));
        let s = summary(runs, 0);
        let text = render_sweep_text(&s, Some(2));
        assert!(text.contains("  ✗ a.toml: 0/3 seeds hold; violated: x on 3\n"));
        assert!(text.contains("  ✓ b.toml: 1/1 seeds hold\n"));
        // A run that did not judge an invariant says so beside its file's verdict.
        let mut opted = record("c.toml", 1, &[]);
        opted.not_judged = vec!["no_oversell".into(), "timely_decisions".into()];
        let shown = render_sweep_text(&summary(vec![opted], 0), None);
        assert!(
            shown.contains(
                "  ✓ c.toml: 1/1 seeds hold; not judged (the scenario opts out): no_oversell, timely_decisions\n"
            ),
            "{shown}"
        );
        assert!(text.contains("4 runs: 1 passed, 3 failed, 0 errors; took 2.0 s on 2 threads"));
        let md = render_sweep_markdown(&s);
        assert!(md.contains("| a.toml | 3 | 3 | 0 | x: 3 | 0.6 s |"), "{md}");
        assert!(md.contains("- seed 2 of a.toml: x — `stampede run a.toml --seed 2"));
        let many: Vec<RunRecord> = (1..=FAILING_SEEDS_SHOWN_MAX as u64 + 5)
            .map(|seed| record("a.toml", seed, &["x"]))
            .collect();
        let md = render_sweep_markdown(&summary(many.clone(), 0));
        assert_eq!(md.matches("- seed ").count(), FAILING_SEEDS_SHOWN_MAX);
        assert!(md.contains("… and 5 more"));
        assert!(
            render_failing_text(&many).ends_with("… and 5 more failing runs (in summary.json)\n")
        );
    }

    // Proves a failing run's line names its design and what failed — the invariants, or the
    // error of a run that could not be made — then the repro, for sweep and merge alike.
    #[test]
    fn a_failing_line_says_what_failed_and_how_to_repeat_it() {
        let violated = record("a.toml", 2, &["x", "y"]);
        assert_eq!(
            failing_line(&violated),
            "✗ a.toml seed 2 [seed-repo]: x, y\n    repro: stampede run a.toml --seed 2 --design seed-repo"
        );
        let mut broken = record("a.toml", 3, &[]);
        broken.passed = false;
        broken.error = Some("boom".into());
        assert!(failing_line(&broken).starts_with("✗ a.toml seed 3 [seed-repo]: boom\n"));
        assert!(render_failing_text(&[violated, broken]).contains("]: boom\n"));
    }
}
