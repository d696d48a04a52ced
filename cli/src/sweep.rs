//! `stampede sweep`, `stampede merge` and `stampede compare`: many seeded
//! runs in parallel, one record per run, and the reports built from them.

use crate::pool;
use crate::run::{self, DesignSpec, Latency};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use stampede_sim::{Plan, Scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Version of the sweep/compare `summary.json` schema.
pub const SWEEP_VERSION: u32 = 1;
/// Most seeds one command takes.
pub const MAX_SEEDS: usize = 1_000_000;

/// Seeds as `A..B` (both ends included), `N`, or a comma list of those.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// As written.
    pub text: String,
    /// Every seed, in order, without repeats.
    pub list: Vec<u64>,
}

impl std::str::FromStr for Seeds {
    type Err = String;

    fn from_str(text: &str) -> Result<Seeds, String> {
        let mut list = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for part in text.split(',').map(str::trim) {
            let number = |s: &str| {
                s.trim().parse::<u64>().map_err(|_| {
                    format!("{s:?} is not a seed; write A..B (both included), N, or a comma list")
                })
            };
            let (lo, hi) = match part.split_once("..") {
                Some((a, b)) => (number(a)?, number(b.trim_start_matches('='))?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            if hi < lo {
                return Err(format!("{part:?} is empty: {hi} < {lo}"));
            }
            if (hi - lo) as usize >= MAX_SEEDS || list.len() + ((hi - lo) as usize) >= MAX_SEEDS {
                return Err(format!("{text:?} is more than {MAX_SEEDS} seeds"));
            }
            for seed in lo..=hi {
                if seen.insert(seed) {
                    list.push(seed);
                }
            }
        }
        Ok(Seeds {
            text: text.to_string(),
            list,
        })
    }
}

/// `I/N`: this machine runs the I-th of N interleaved parts of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based part number.
    pub index: u32,
    /// Parts in all.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("{text:?} is not I/N with 1 <= I <= N <= 1024");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if index == 0 || index > count || count > 1024 {
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

/// What `sweep` was asked to do.
#[derive(clap::Args)]
pub struct SweepArgs {
    /// Scenario files, or folders whose *.toml files are all swept.
    #[arg(required = true)]
    pub targets: Vec<PathBuf>,
    /// Seeds, parallelism and output.
    #[command(flatten)]
    pub runs: ManyRuns,
    /// Run only part I of N (interleaved), e.g. --shard 2/4 on the second of four CI machines.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Design preset for every scenario (default: each scenario's own `design`).
    #[arg(long)]
    pub design: Option<String>,
    /// Override one switch, e.g. --set webhook_dedup=off (repeatable).
    #[arg(long = "set", value_name = "SWITCH=VALUE")]
    pub set: Vec<String>,
    /// Stop at the first failing seed (runs already going finish).
    #[arg(long)]
    pub fail_fast: bool,
}

/// What every many-run command (`sweep`, `compare`) takes besides its targets.
#[derive(clap::Args)]
pub struct ManyRuns {
    /// Seeds: A..B (both included), N, or a comma list, e.g. 1..200 or 1..50,77.
    #[arg(long, default_value = "1..100")]
    pub seeds: Seeds,
    /// Parallel runs [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// Folder for summary.json, report.md and failing runs' traces [default: stampede-out/sweep, or compare-<scenario>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How many failing runs get their own folder with summary, report and trace.
    #[arg(long, default_value_t = 10)]
    pub keep_failures: usize,
    /// Print the summary as one JSON document instead of the text report.
    #[arg(long)]
    pub json: bool,
}

impl ManyRuns {
    /// Threads to run on.
    fn threads(&self) -> usize {
        self.jobs.map_or_else(pool::default_jobs, |j| j as usize)
    }
}

/// What `compare` was asked to do.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Designs side by side: presets, each optionally with +switch=value overrides.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "reference,seed-repo,textbook-naive"
    )]
    pub designs: Vec<String>,
    /// Seeds, parallelism and output.
    #[command(flatten)]
    pub runs: ManyRuns,
}

/// What `merge` was asked to do.
#[derive(clap::Args)]
pub struct MergeArgs {
    /// The summary.json files of the shards.
    #[arg(required = true)]
    pub summaries: Vec<PathBuf>,
    /// Folder for the merged summary.json and report.md [default: stampede-out/merged].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the merged summary as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// One run of a sweep or comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub scenario_file: String,
    /// Seed.
    pub seed: u64,
    /// Design label (`preset[+switch=value...]`).
    pub design: String,
    /// Every invariant held.
    pub passed: bool,
    /// Violated invariants → instances.
    pub violated: BTreeMap<String, usize>,
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
    /// Order → confirmed, sim time.
    pub confirmation_latency: Latency,
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// Wall time, ms.
    pub wall_ms: u64,
    /// The command that reproduces it.
    pub repro: String,
}

/// Totals over a set of runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Runs.
    pub runs: usize,
    /// Runs where every invariant held.
    pub passed: usize,
    /// Runs with a violation.
    pub failed: usize,
    /// Runs that could not complete.
    pub errors: usize,
}

impl Totals {
    fn of(runs: &[RunRecord]) -> Totals {
        let mut t = Totals::default();
        runs.iter().for_each(|r| t.add(r));
        t
    }

    fn add(&mut self, r: &RunRecord) {
        self.runs += 1;
        match (&r.error, r.passed) {
            (Some(_), _) => self.errors += 1,
            (None, true) => self.passed += 1,
            (None, false) => self.failed += 1,
        }
    }
}

/// `summary.json` of a sweep (or of a merge of several).
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// Wall time, ms (summed over merged shards).
    pub wall_ms: u64,
    /// CPU time the sweep's process used (user + system), ms (summed over
    /// merged shards); 0 when the platform could not say.
    #[serde(default)]
    pub cpu_ms: u64,
    /// Totals.
    pub totals: Totals,
    /// Every run, by scenario file then seed.
    pub runs: Vec<RunRecord>,
}

/// A scenario file with its parsed scenario.
struct Target {
    file: PathBuf,
    scenario: Scenario,
    design: DesignSpec,
}

/// One run to do.
struct Job<'a> {
    target: &'a Target,
    design: &'a DesignSpec,
    seed: u64,
}

/// Scenario files named directly or found in folders, in a stable order.
pub fn scenario_files(targets: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for target in targets {
        if target.is_dir() {
            let entries = std::fs::read_dir(target)
                .map_err(|e| format!("cannot read {}: {e}", target.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            if found.is_empty() {
                return Err(format!("{} has no *.toml scenario files", target.display()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(target.clone());
        }
    }
    Ok(files)
}

/// Runs one job. A failing run's full outputs go to the folder `keep` names
/// (it is asked only when the run failed). Also returns the run's
/// order-to-confirmation samples.
fn record(job: &Job<'_>, keep: impl Fn() -> Option<PathBuf>) -> (RunRecord, Vec<u64>) {
    let plan = Plan::generate(&job.target.scenario, job.design.design, job.seed);
    let repro = run::repro_command(&job.target.file, job.seed, job.design);
    let mut rec = RunRecord {
        scenario: job.target.scenario.name.clone(),
        scenario_file: job.target.file.display().to_string(),
        seed: job.seed,
        design: job.design.label(),
        passed: false,
        violated: BTreeMap::new(),
        error: None,
        trace_hash: String::new(),
        orders: 0,
        confirmed: 0,
        charges: 0,
        refunds: 0,
        retries: 0,
        confirmation_latency: Latency::default(),
        sim_ms: 0,
        wall_ms: 0,
        repro,
    };
    let outcome = match run::run_plan(&plan, false) {
        Ok(outcome) => outcome,
        Err(e) => {
            rec.error = Some(e);
            return (rec, Vec::new());
        }
    };
    let result = &outcome.result;
    rec.passed = result.passed();
    rec.violated = result
        .verdicts
        .iter()
        .filter(|v| v.is_violated())
        .map(|v| (v.invariant.name().to_string(), v.outcome().1))
        .collect();
    rec.trace_hash = result.trace_hash.clone();
    rec.orders = result.stats.orders;
    rec.confirmed = result
        .stats
        .orders_by_status
        .get("confirmed")
        .copied()
        .unwrap_or(0);
    rec.charges = result.stats.charges;
    rec.refunds = result.stats.refunds;
    rec.retries = run::client_retries(&result.history);
    let samples = run::confirmation_samples(&result.history);
    rec.confirmation_latency = Latency::of(samples.clone());
    rec.sim_ms = result.stats.sim_ms;
    rec.wall_ms = outcome.wall_ms;
    if let Some(dir) = (!rec.passed).then(keep).flatten() {
        let summary = run::Summary::new(
            &plan,
            &job.target.file,
            &rec.design,
            rec.repro.clone(),
            &outcome,
        );
        if let Err(e) = run::write_outputs(&dir, &summary, &result.history) {
            tracing::warn!("{e}");
        }
    }
    (rec, samples)
}

fn progress(len: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len} runs, eta {eta}  {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

fn load_targets(
    files: &[PathBuf],
    design: Option<&str>,
    sets: &[String],
) -> Result<Vec<Target>, String> {
    files
        .iter()
        .map(|file| {
            let scenario = Scenario::load(file).map_err(|e| e.to_string())?;
            let design = DesignSpec::for_scenario(&scenario, design, sets)?;
            Ok(Target {
                file: file.clone(),
                scenario,
                design,
            })
        })
        .collect()
}

/// Runs every job in parallel with a progress bar; failing runs are printed
/// as they finish and the first `keep` of them written under `out/failures`.
fn execute(
    jobs: &[Job<'_>],
    threads: usize,
    fail_fast: bool,
    out: &Path,
    keep: usize,
    quiet: bool,
) -> Vec<RunRecord> {
    let bar = progress(jobs.len(), quiet);
    let keeper = Keeper::new(out, keep);
    let mut records: Vec<Option<RunRecord>> = vec![None; jobs.len()];
    let mut failing = 0;
    pool::run_all_in_order(
        jobs,
        &longest_first(jobs),
        threads,
        |job| record(job, || keeper.claim(job)).0,
        |i, rec| {
            bar.inc(1);
            if !rec.passed {
                failing += 1;
                bar.set_message(format!("{failing} failing"));
                let what = match &rec.error {
                    Some(e) => e.clone(),
                    None => rec.violated.keys().cloned().collect::<Vec<_>>().join(", "),
                };
                if !quiet {
                    // Above the bar, and printed even when the bar is hidden (no terminal).
                    bar.suspend(|| {
                        println!(
                            "✗ {} seed {} [{}]: {what}\n    repro: {}",
                            rec.scenario_file, rec.seed, rec.design, rec.repro
                        );
                    });
                }
            }
            let keep_going = rec.passed || !fail_fast;
            records[i] = Some(rec);
            keep_going
        },
    );
    bar.finish_and_clear();
    records.into_iter().flatten().collect()
}

/// A run's expected cost, for ordering: shoppers dominate a run's work, and
/// the simulated time it spans (arrivals, faults, settle) comes next.
fn expected_cost(job: &Job<'_>) -> (u64, u64) {
    let s = &job.target.scenario;
    (u64::from(s.shoppers.count), s.timing.settle_ms)
}

/// Job indices, the most expensive first (ties in their listed order), so a
/// sweep mixing a flash sale with short scenarios does not end with one core
/// running the flash sale while the others idle.
fn longest_first(jobs: &[Job<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(expected_cost(&jobs[i])));
    order
}

/// Runs per second of CPU time, when the CPU time is known.
fn runs_per_cpu_second(s: &SweepSummary) -> Option<f64> {
    (s.cpu_ms > 0).then(|| s.totals.runs as f64 / (s.cpu_ms as f64 / 1000.0))
}

/// "12.3 s CPU, 4.56 runs per CPU-second", or nothing when unknown.
fn cpu_note(s: &SweepSummary) -> String {
    runs_per_cpu_second(s).map_or(String::new(), |rate| {
        format!(
            ", {:.1} s CPU, {rate:.2} runs per CPU-second",
            s.cpu_ms as f64 / 1000.0
        )
    })
}

/// Process CPU time (user + system) so far, ms, if the platform says.
fn process_cpu_ms() -> Option<u64> {
    cpu_time::ProcessTime::try_now()
        .ok()
        .map(|t| u64::try_from(t.as_duration().as_millis()).unwrap_or(u64::MAX))
}

/// Hands out folders for the full outputs of the first `keep` failing runs.
struct Keeper<'a> {
    out: &'a Path,
    keep: usize,
    kept: AtomicUsize,
}

impl<'a> Keeper<'a> {
    fn new(out: &'a Path, keep: usize) -> Keeper<'a> {
        Keeper {
            out,
            keep,
            kept: AtomicUsize::new(0),
        }
    }

    /// A folder for this failing run, while fewer than `keep` have been kept.
    fn claim(&self, job: &Job<'_>) -> Option<PathBuf> {
        (self.kept.fetch_add(1, Ordering::Relaxed) < self.keep).then(|| {
            self.out.join("failures").join(format!(
                "{}-{}-{}",
                job.target.scenario.name,
                job.design.label().replace(['+', '='], "_"),
                job.seed
            ))
        })
    }
}

fn write_report(dir: &Path, json: &[u8], markdown: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, bytes) in [("summary.json", json), ("report.md", markdown.as_bytes())] {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// One scenario's line in a sweep report.
#[derive(Default)]
struct ScenarioRow<'a> {
    totals: Totals,
    /// Invariant → seeds violating it.
    violated: BTreeMap<&'a str, usize>,
    /// Run time summed over its runs, ms.
    wall_ms: u64,
}

/// A sweep's runs grouped by scenario file.
fn by_scenario(runs: &[RunRecord]) -> BTreeMap<&str, ScenarioRow<'_>> {
    let mut rows: BTreeMap<&str, ScenarioRow<'_>> = BTreeMap::new();
    for r in runs {
        let row = rows.entry(r.scenario_file.as_str()).or_default();
        row.totals.add(r);
        for name in r.violated.keys() {
            *row.violated.entry(name.as_str()).or_default() += 1;
        }
        row.wall_ms += r.wall_ms;
    }
    rows
}

fn sweep_markdown(s: &SweepSummary) -> String {
    let mut md = format!(
        "# Sweep — seeds {} — design {}{}\n\n",
        s.seeds,
        s.design,
        if s.shards.is_empty() {
            String::new()
        } else {
            let shards: Vec<String> = s.shards.iter().map(Shard::to_string).collect();
            format!(" — shards {}", shards.join(", "))
        }
    );
    let t = &s.totals;
    let _ = writeln!(
        md,
        "**{} runs: {} passed, {} failed, {} errors** in {:.1} s of wall time{}.\n",
        t.runs,
        t.passed,
        t.failed,
        t.errors,
        s.wall_ms as f64 / 1000.0,
        cpu_note(s)
    );
    let _ = writeln!(
        md,
        "| scenario | runs | failed | errors | seeds violating (by invariant) | run time (sum) |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (file, row) in by_scenario(&s.runs) {
        let (t, wall) = (&row.totals, row.wall_ms);
        let v: Vec<String> = row
            .violated
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            md,
            "| {file} | {} | {} | {} | {} | {:.1} s |",
            t.runs,
            t.failed,
            t.errors,
            if v.is_empty() {
                "—".into()
            } else {
                v.join(", ")
            },
            wall as f64 / 1000.0
        );
    }
    let failing: Vec<&RunRecord> = s.runs.iter().filter(|r| !r.passed).collect();
    if !failing.is_empty() {
        let _ = writeln!(md, "\n## Failing seeds\n");
        for r in failing {
            let what = match &r.error {
                Some(e) => e.clone(),
                None => r.violated.keys().cloned().collect::<Vec<_>>().join(", "),
            };
            let _ = writeln!(
                md,
                "- seed {} of {}: {what} — `{}`",
                r.seed, r.scenario_file, r.repro
            );
        }
    }
    md
}

fn print_sweep(s: &SweepSummary, json: bool, dir: &Path, threads: Option<usize>) {
    if json {
        println!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    for (file, row) in by_scenario(&s.runs) {
        let (t, violated) = (&row.totals, &row.violated);
        let mark = if t.failed + t.errors == 0 {
            "✓"
        } else {
            "✗"
        };
        let v: Vec<String> = violated
            .iter()
            .map(|(k, n)| format!("{k} on {n}"))
            .collect();
        println!(
            "  {mark} {file}: {}/{} seeds hold{}",
            t.passed,
            t.runs,
            if v.is_empty() {
                String::new()
            } else {
                format!("; violated: {}", v.join(", "))
            }
        );
    }
    let t = &s.totals;
    println!(
        "{} runs: {} passed, {} failed, {} errors; took {:.1} s{}{}",
        t.runs,
        t.passed,
        t.failed,
        t.errors,
        s.wall_ms as f64 / 1000.0,
        threads.map_or(String::new(), |n| format!(" on {n} threads")),
        cpu_note(s)
    );
    println!("  wrote {}/{{summary.json,report.md}}", dir.display());
}

fn exit_code(t: &Totals) -> u8 {
    if t.failed + t.errors == 0 { 0 } else { 1 }
}

/// `stampede sweep`: exit 0 if every run held, 1 if any failed.
pub fn sweep(args: &SweepArgs) -> Result<u8, String> {
    let files = scenario_files(&args.targets)?;
    let targets = load_targets(&files, args.design.as_deref(), &args.set)?;
    let all: Vec<Job<'_>> = targets
        .iter()
        .flat_map(|target| {
            args.runs.seeds.list.iter().map(move |&seed| Job {
                target,
                design: &target.design,
                seed,
            })
        })
        .collect();
    let jobs: Vec<Job<'_>> = match args.shard {
        None => all,
        Some(shard) => all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i % shard.count as usize == (shard.index - 1) as usize)
            .map(|(_, job)| job)
            .collect(),
    };
    let dir = args.runs.out.clone().unwrap_or_else(|| match args.shard {
        None => PathBuf::from("stampede-out/sweep"),
        Some(s) => PathBuf::from(format!(
            "stampede-out/sweep-shard-{}-of-{}",
            s.index, s.count
        )),
    });
    let threads = args.runs.threads();
    if !args.runs.json {
        println!(
            "sweeping {} scenario file(s) × {} seed(s) = {} runs{} on {threads} threads",
            targets.len(),
            args.runs.seeds.list.len(),
            jobs.len(),
            args.shard
                .map_or(String::new(), |s| format!(" (shard {s})"))
        );
    }
    let started = std::time::Instant::now();
    let cpu_before = process_cpu_ms();
    let runs = execute(
        &jobs,
        threads,
        args.fail_fast,
        &dir,
        args.runs.keep_failures,
        args.runs.json,
    );
    let summary = SweepSummary {
        version: SWEEP_VERSION,
        kind: "sweep".into(),
        seeds: args.runs.seeds.text.clone(),
        shards: args.shard.into_iter().collect(),
        design: match &args.design {
            Some(d) => DesignSpec::new(d, &args.set)?.label(),
            None => "scenario default".into(),
        },
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: cpu_before
            .zip(process_cpu_ms())
            .map_or(0, |(before, after)| after.saturating_sub(before)),
        totals: Totals::of(&runs),
        runs,
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
    write_report(&dir, &json, &sweep_markdown(&summary))?;
    print_sweep(&summary, args.runs.json, &dir, Some(threads));
    Ok(exit_code(&summary.totals))
}

/// `stampede merge`: one summary from the shards' summaries. Two shards that
/// ran the same seed must agree on its trace hash.
pub fn merge(args: &MergeArgs) -> Result<u8, String> {
    let mut merged: Option<SweepSummary> = None;
    let mut runs: BTreeMap<(String, String, u64), RunRecord> = BTreeMap::new();
    for path in &args.summaries {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let part: SweepSummary = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a sweep summary.json: {e}", path.display()))?;
        if part.version != SWEEP_VERSION || part.kind != "sweep" {
            return Err(format!(
                "{}: a {} summary of version {}; merge takes sweep summaries of version {SWEEP_VERSION}",
                path.display(),
                part.kind,
                part.version
            ));
        }
        for r in &part.runs {
            let key = (r.scenario_file.clone(), r.design.clone(), r.seed);
            if let Some(old) = runs.get(&key)
                && old.trace_hash != r.trace_hash
            {
                return Err(format!(
                    "{}: seed {} of {} [{}] has trace {} here but {} in an earlier file: the runs were not deterministic (different builds?)",
                    path.display(),
                    r.seed,
                    r.scenario_file,
                    r.design,
                    r.trace_hash,
                    old.trace_hash
                ));
            }
            runs.insert(key, r.clone());
        }
        match &mut merged {
            None => {
                merged = Some(SweepSummary {
                    runs: Vec::new(),
                    ..part
                })
            }
            Some(m) => {
                if m.seeds != part.seeds || m.design != part.design {
                    return Err(format!(
                        "{}: seeds {} / design {} differ from the first file's {} / {}",
                        path.display(),
                        part.seeds,
                        part.design,
                        m.seeds,
                        m.design
                    ));
                }
                m.shards.extend(part.shards);
                m.wall_ms += part.wall_ms;
                m.cpu_ms += part.cpu_ms;
            }
        }
    }
    let mut summary = merged.ok_or("nothing to merge")?;
    summary.shards.sort_by_key(|s| (s.count, s.index));
    summary.shards.dedup();
    summary.runs = runs.into_values().collect();
    summary.totals = Totals::of(&summary.runs);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("stampede-out/merged"));
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
    write_report(&dir, &json, &sweep_markdown(&summary))?;
    if let Some(count) = summary.shards.first().map(|s| s.count) {
        let missing: Vec<String> = (1..=count)
            .filter(|i| {
                !summary
                    .shards
                    .iter()
                    .any(|s| s.index == *i && s.count == count)
            })
            .map(|i| format!("{i}/{count}"))
            .collect();
        if !missing.is_empty() {
            eprintln!("warning: shards {} are missing", missing.join(", "));
        }
    }
    if !args.json {
        for r in summary.runs.iter().filter(|r| !r.passed) {
            println!("✗ {} seed {}: repro: {}", r.scenario_file, r.seed, r.repro);
        }
    }
    print_sweep(&summary, args.json, &dir, None);
    Ok(exit_code(&summary.totals))
}

/// One design's column in a comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DesignColumn {
    /// Design label.
    pub design: String,
    /// Runs.
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
    /// Order → confirmed over every confirmed order of every seed, sim time.
    pub confirmation_latency: Latency,
    /// Client requests repeating a key, all seeds.
    pub retries: u64,
    /// Charges, all seeds.
    pub charges: u64,
    /// Refunds, all seeds.
    pub refunds: u64,
}

/// `summary.json` of a comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompareSummary {
    /// Schema version ([`SWEEP_VERSION`]).
    pub version: u32,
    /// `compare`.
    pub kind: String,
    /// Scenario file.
    pub scenario_file: String,
    /// Seeds.
    pub seeds: String,
    /// Wall time, ms.
    pub wall_ms: u64,
    /// One column per design, in the order asked.
    pub designs: Vec<DesignColumn>,
    /// Every run.
    pub runs: Vec<RunRecord>,
}

/// Every invariant any column saw violated, in the checker's order.
fn compared_invariants(s: &CompareSummary) -> Vec<String> {
    stampede_core::Invariant::ALL
        .iter()
        .map(|i| i.name().to_string())
        .filter(|name| s.designs.iter().any(|d| d.violations.contains_key(name)))
        .collect()
}

/// The comparison as rows (label, one cell per design).
fn compare_rows(s: &CompareSummary) -> Vec<(String, Vec<String>)> {
    let mut rows = vec![(
        "seeds failing".to_string(),
        s.designs
            .iter()
            .map(|d| format!("{}/{}", d.seeds_failing, d.runs))
            .collect(),
    )];
    for name in compared_invariants(s) {
        rows.push((
            format!("✗ {name} (seeds / instances)"),
            s.designs
                .iter()
                .map(|d| {
                    format!(
                        "{} / {}",
                        d.seeds_violating.get(&name).copied().unwrap_or(0),
                        d.violations.get(&name).copied().unwrap_or(0)
                    )
                })
                .collect(),
        ));
    }
    let cell = |f: &dyn Fn(&DesignColumn) -> String| s.designs.iter().map(f).collect();
    rows.push((
        "orders confirmed".into(),
        cell(&|d| format!("{} of {}", d.confirmed, d.orders)),
    ));
    rows.push((
        "order → confirmed p50 (sim)".into(),
        cell(&|d| format!("{} ms", d.confirmation_latency.p50_ms)),
    ));
    rows.push((
        "order → confirmed p99 (sim)".into(),
        cell(&|d| format!("{} ms", d.confirmation_latency.p99_ms)),
    ));
    rows.push(("client retries".into(), cell(&|d| d.retries.to_string())));
    rows.push(("charges".into(), cell(&|d| d.charges.to_string())));
    rows.push(("refunds".into(), cell(&|d| d.refunds.to_string())));
    rows
}

fn compare_table(s: &CompareSummary, markdown: bool) -> String {
    let rows = compare_rows(s);
    let header: Vec<String> = s.designs.iter().map(|d| d.design.clone()).collect();
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| | {} |", header.join(" | "));
        let _ = writeln!(out, "| --- |{}", " --- |".repeat(header.len()));
        for (label, cells) in rows {
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        }
        return out;
    }
    let first = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|(_, c)| c[i].chars().count())
                .chain(std::iter::once(header[i].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |label: &str, cells: &[String]| {
        let mut l = format!("  {label:<first$}");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(l, "  {cell:>w$}");
        }
        l
    };
    let _ = writeln!(out, "{}", line("", &header));
    for (label, cells) in &rows {
        let _ = writeln!(out, "{}", line(label, cells));
    }
    out
}

/// `stampede compare`: exit 0 whatever the designs do (the table is the
/// answer); 2 for bad input.
pub fn compare(args: &CompareArgs) -> Result<u8, String> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| e.to_string())?;
    if args.designs.is_empty() || args.designs.len() > 16 {
        return Err("--designs takes 1 to 16 designs".into());
    }
    let specs: Vec<DesignSpec> = args
        .designs
        .iter()
        .map(|d| DesignSpec::parse(d))
        .collect::<Result<_, _>>()?;
    let target = Target {
        file: args.scenario.clone(),
        scenario,
        design: specs[0].clone(),
    };
    let jobs: Vec<Job<'_>> = specs
        .iter()
        .flat_map(|design| {
            args.runs.seeds.list.iter().map({
                let target = &target;
                move |&seed| Job {
                    target,
                    design,
                    seed,
                }
            })
        })
        .collect();
    let dir =
        args.runs.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!("stampede-out/compare-{}", target.scenario.name))
        });
    let threads = args.runs.threads();
    if !args.runs.json {
        println!(
            "comparing {} design(s) on {} × {} seed(s) = {} runs on {threads} threads",
            specs.len(),
            args.scenario.display(),
            args.runs.seeds.list.len(),
            jobs.len()
        );
    }
    let started = std::time::Instant::now();
    let bar = progress(jobs.len(), args.runs.json);
    let keeper = Keeper::new(&dir, args.runs.keep_failures);
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); specs.len()];
    let mut records: Vec<Option<RunRecord>> = vec![None; jobs.len()];
    pool::run_all(
        &jobs,
        threads,
        |job| record(job, || keeper.claim(job)),
        |i, (rec, s)| {
            bar.inc(1);
            samples[i / args.runs.seeds.list.len()].extend(s);
            records[i] = Some(rec);
            true
        },
    );
    bar.finish_and_clear();
    let runs: Vec<RunRecord> = records.into_iter().flatten().collect();
    let designs = specs
        .iter()
        .zip(samples)
        .map(|(spec, samples)| {
            let label = spec.label();
            let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.design == label).collect();
            let mut col = DesignColumn {
                design: label,
                runs: mine.len(),
                seeds_failing: mine.iter().filter(|r| !r.passed).count(),
                seeds_violating: BTreeMap::new(),
                violations: BTreeMap::new(),
                orders: mine.iter().map(|r| r.orders).sum(),
                confirmed: mine.iter().map(|r| r.confirmed).sum(),
                confirmation_latency: Latency::of(samples),
                retries: mine.iter().map(|r| r.retries).sum(),
                charges: mine.iter().map(|r| r.charges).sum(),
                refunds: mine.iter().map(|r| r.refunds).sum(),
            };
            for r in &mine {
                for (name, n) in &r.violated {
                    *col.seeds_violating.entry(name.clone()).or_default() += 1;
                    *col.violations.entry(name.clone()).or_default() += n;
                }
            }
            col
        })
        .collect();
    let summary = CompareSummary {
        version: SWEEP_VERSION,
        kind: "compare".into(),
        scenario_file: args.scenario.display().to_string(),
        seeds: args.runs.seeds.text.clone(),
        wall_ms: started.elapsed().as_millis() as u64,
        designs,
        runs,
    };
    let mut md = format!(
        "# Compare — {} — seeds {}\n\n",
        summary.scenario_file, summary.seeds
    );
    md.push_str(&compare_table(&summary, true));
    let _ = writeln!(
        md,
        "\nLatencies are simulated time over every confirmed order of every seed. Repro for any run: `stampede run {} --seed N --design <preset> [--set switch=value]`.",
        summary.scenario_file
    );
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| e.to_string())?;
    write_report(&dir, &json, &md)?;
    if args.runs.json {
        println!("{}", String::from_utf8_lossy(&json));
    } else {
        print!("{}", compare_table(&summary, false));
        println!(
            "took {:.1} s; wrote {}/{{summary.json,report.md}}",
            summary.wall_ms as f64 / 1000.0,
            dir.display()
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_ranges_lists_and_refuse_nonsense() {
        let s: Seeds = "1..5".parse().unwrap();
        assert_eq!(s.list, vec![1, 2, 3, 4, 5]);
        let s: Seeds = "3, 1..2,3".parse().unwrap();
        assert_eq!(s.list, vec![3, 1, 2]);
        assert_eq!("7".parse::<Seeds>().unwrap().list, vec![7]);
        assert_eq!("1..=2".parse::<Seeds>().unwrap().list, vec![1, 2]);
        for bad in ["", "a..b", "5..1", "1..99999999999", "-1"] {
            assert!(bad.parse::<Seeds>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_biggest_scenarios_are_handed_out_first_and_ties_keep_their_order() {
        // Proves: jobs are ordered by shopper count, then settle time, largest first; equal
        // costs keep the listed (scenario, seed) order, so the order is deterministic.
        let target = |scenario: Scenario| Target {
            file: PathBuf::from(format!("{}.toml", scenario.name)),
            scenario,
            design: DesignSpec::new("reference", &[]).unwrap(),
        };
        let small = target(stampede_sim::scenarios::flash(10, 5));
        let big = target(stampede_sim::scenarios::flash(1_000, 5));
        let mut slow = stampede_sim::scenarios::flash(10, 5);
        slow.timing.settle_ms += 1;
        let slow = target(slow);
        let job = |target, seed| Job {
            target,
            design: &target.design,
            seed,
        };
        let jobs = [
            job(&small, 1),
            job(&big, 1),
            job(&small, 2),
            job(&slow, 1),
            job(&big, 2),
        ];
        assert_eq!(longest_first(&jobs), vec![1, 4, 3, 0, 2]);
    }

    #[test]
    fn runs_per_cpu_second_is_runs_over_cpu_time_and_absent_when_unknown() {
        // Proves: 10 runs in 4 s of CPU are 2.5 runs per CPU-second, shown with the CPU time; a
        // summary without CPU time (an older file, or a platform that cannot say) shows none.
        let mut summary = SweepSummary {
            version: SWEEP_VERSION,
            kind: "sweep".into(),
            seeds: "1..10".into(),
            shards: Vec::new(),
            design: "reference".into(),
            wall_ms: 2_000,
            cpu_ms: 4_000,
            totals: Totals {
                runs: 10,
                passed: 10,
                ..Totals::default()
            },
            runs: Vec::new(),
        };
        assert_eq!(runs_per_cpu_second(&summary), Some(2.5));
        assert_eq!(cpu_note(&summary), ", 4.0 s CPU, 2.50 runs per CPU-second");
        summary.cpu_ms = 0;
        assert_eq!(runs_per_cpu_second(&summary), None);
        assert_eq!(cpu_note(&summary), "");
        assert!(process_cpu_ms().is_some(), "Linux reports process CPU time");
    }

    #[test]
    fn shards_partition_and_refuse_nonsense() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["0/4", "5/4", "1", "a/b", "1/0", "1/5000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} accepted");
        }
    }
}
