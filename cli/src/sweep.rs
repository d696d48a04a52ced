//! `stampede sweep`, `stampede merge` and `stampede compare`: many seeded
//! runs in parallel, one record per run, and the reports built from them.

use crate::pool;
use crate::run::{self, DesignSpec};
use indicatif::{ProgressBar, ProgressStyle};
use stampede_reports::{
    CompareSummary, DesignColumn, Latency, RunRecord, SWEEP_VERSION, Shard, SweepSummary, Totals,
};
use stampede_sim::{Plan, Scenario, read_text_bounded};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most seeds one command takes.
pub const SEEDS_MAX: usize = 1_000_000;

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
                return Err(format!(
                    "{part:?} is empty: it ends ({hi}) before it starts ({lo}); did you mean {hi}..{lo}?"
                ));
            }
            if (hi - lo) as usize >= SEEDS_MAX || list.len() + ((hi - lo) as usize) >= SEEDS_MAX {
                return Err(format!("{text:?} is more than {SEEDS_MAX} seeds"));
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
    /// Folder for summary.json, report.md, report.html (charts) and failing runs' traces under failures/ (an earlier run's failures/ becomes failures.old) [default: stampede-out/sweep for sweep, stampede-out/compare-<scenario> for compare].
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
    /// Threads to run `runs` runs on: as asked (or one per core), but never
    /// more than there are runs.
    fn threads(&self, runs: usize) -> usize {
        self.jobs
            .map_or_else(pool::default_jobs, |j| j as usize)
            .min(runs.max(1))
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
    /// Folder for the merged summary.json, report.md and report.html [default: stampede-out/merged].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the merged summary as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Accept shards that are not all the parts of their sweep, or that lack
    /// some of their runs: the missing seeds are then not judged (the report
    /// says INCOMPLETE). Without it such a merge fails (exit 1), whatever the
    /// runs it has say.
    #[arg(long)]
    pub partial: bool,
}

/// A scenario file with its parsed scenario.
struct Target {
    file: PathBuf,
    scenario: Scenario,
    design: DesignSpec,
    /// 1 for the first file of its scenario name in the sweep's order, 2 for
    /// the second, …: kept failures' folders are told apart by it.
    of_name: usize,
}

/// One run to do.
struct Job<'a> {
    target: &'a Target,
    design: &'a DesignSpec,
    seed: u64,
    /// Its index in the list of jobs, which is in the listed order (targets,
    /// then seeds; designs, then seeds in a comparison): which failures are
    /// kept goes by it.
    rank: usize,
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
    // A file named twice (directly, through a folder, or by another path) is swept once:
    // its seeds are one set of runs, not two.
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

/// One job's result: its record, its order-to-confirmation samples and, if it
/// failed and `may_keep` said its outputs could still be kept, its plan and
/// outcome (for [`Keeper::offer`]).
struct Recorded {
    rec: RunRecord,
    samples: Vec<u64>,
    failed: Option<(Plan, run::Outcome)>,
}

/// Runs one job (see [`Recorded`]).
fn record(job: &Job<'_>, may_keep: impl Fn() -> bool) -> Recorded {
    let plan = Plan::generate(&job.target.scenario, job.design.design, job.seed);
    let repro = run::repro_command(&job.target.file, job.seed, job.design);
    let mut rec = RunRecord {
        scenario: job.target.scenario.name.clone(),
        scenario_file: job.target.file.display().to_string(),
        seed: job.seed,
        design: job.design.label(),
        passed: false,
        violated: BTreeMap::new(),
        not_judged: Vec::new(),
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
        kept: None,
    };
    let outcome = match run::run_plan(&plan, false) {
        Ok(outcome) => outcome,
        Err(e) => {
            rec.error = Some(e);
            return Recorded {
                rec,
                samples: Vec::new(),
                failed: None,
            };
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
    rec.not_judged = result
        .verdicts
        .iter()
        .filter(|v| v.not_judged_reason().is_some())
        .map(|v| v.invariant.name().to_string())
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
    let failed = (!rec.passed && may_keep()).then_some((plan, outcome));
    Recorded {
        rec,
        samples,
        failed,
    }
}

/// Writes a failing run's full outputs into `dir`; its folder as the
/// sweep's summary names it (`failures/<name>`), or none if it could not be written.
fn keep_outputs(
    dir: &Path,
    job: &Job<'_>,
    plan: &Plan,
    repro: &str,
    outcome: &run::Outcome,
) -> Option<String> {
    let design = job.design.label();
    let summary = run::summarize(plan, &job.target.file, &design, repro.to_string(), outcome);
    match run::write_outputs(dir, &summary, &outcome.result.history) {
        Ok(()) => dir
            .file_name()
            .map(|name| format!("failures/{}", name.to_string_lossy())),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
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
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut targets = Vec::new();
    // Every file is read, so one error message names every broken one, not just the first.
    let mut errors = Vec::new();
    for file in files {
        let loaded = Scenario::load(file)
            .map_err(|e| e.to_string())
            .and_then(|scenario| {
                let design = DesignSpec::for_scenario(&scenario, design, sets)?;
                Ok((scenario, design))
            });
        match loaded {
            Ok((scenario, design)) => {
                let of_name = names.entry(scenario.name.clone()).or_default();
                *of_name += 1;
                targets.push(Target {
                    file: file.clone(),
                    of_name: *of_name,
                    scenario,
                    design,
                });
            }
            Err(e) if !errors.contains(&e) => errors.push(e),
            Err(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(targets)
    } else {
        Err(errors.join("\n"))
    }
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
    let mut keeper = Keeper::new(out, keep);
    let cutoff = keeper.cutoff();
    let mut records: Vec<Option<RunRecord>> = vec![None; jobs.len()];
    let mut failing = 0;
    pool::run_all_in_order(
        jobs,
        &longest_first(jobs),
        threads,
        |job| record(job, || job.rank < cutoff.load(Ordering::Relaxed)),
        |i,
         Recorded {
             mut rec, failed, ..
         }| {
            bar.inc(1);
            if let Some((plan, outcome)) = failed {
                keeper.offer(&jobs[i], &plan, &outcome, &mut rec, &mut records);
            }
            if !rec.passed {
                failing += 1;
                bar.set_message(format!("{failing} failing"));
                if !quiet {
                    // Above the bar, and printed even when the bar is hidden (no terminal).
                    bar.suspend(|| println!("{}", stampede_reports::failing_line(&rec)));
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

/// Process CPU time (user + system) so far, ms, if the platform says.
fn process_cpu_ms() -> Option<u64> {
    cpu_time::ProcessTime::try_now()
        .ok()
        .map(|t| u64::try_from(t.as_duration().as_millis()).unwrap_or(u64::MAX))
}

/// Keeps the full outputs of the first `keep` failing runs in the order the
/// runs are listed (scenario files as named, then seeds), whatever order they
/// finish in, so the folders a sweep keeps depend on its seeds, not on
/// `--jobs`: a failing run listed before one already kept takes the place of
/// the last kept. Used from the one thread that gathers the results.
struct Keeper<'a> {
    out: &'a Path,
    keep: usize,
    /// The runs kept, by rank, with their folder.
    kept: BTreeMap<usize, PathBuf>,
    /// Ranks at or past this can no longer be kept (shared with the workers,
    /// which then drop a failing run's outcome instead of handing it over).
    cutoff: std::sync::Arc<AtomicUsize>,
}

impl<'a> Keeper<'a> {
    fn new(out: &'a Path, keep: usize) -> Keeper<'a> {
        Keeper {
            out,
            keep,
            kept: BTreeMap::new(),
            cutoff: std::sync::Arc::new(AtomicUsize::new(if keep == 0 { 0 } else { usize::MAX })),
        }
    }

    /// See [`Keeper::cutoff`](Keeper#structfield.cutoff).
    fn cutoff(&self) -> std::sync::Arc<AtomicUsize> {
        std::sync::Arc::clone(&self.cutoff)
    }

    /// `job`'s folder: `<name>-<design>-<seed>`, with `-2`, `-3`… after it
    /// for the second, third… scenario file of the same name.
    fn folder(&self, job: &Job<'_>) -> PathBuf {
        let base = format!(
            "{}-{}-{}",
            job.target.scenario.name,
            job.design.label().replace(['+', '='], "_"),
            job.seed
        );
        self.out.join("failures").join(match job.target.of_name {
            1 => base,
            n => format!("{base}-{n}"),
        })
    }

    /// Writes the failing `job`'s outputs if it is among the first `keep`
    /// failing runs seen so far by rank, dropping the last kept (its folder,
    /// and its record's `kept` in `records`, indexed by rank) to make room.
    fn offer(
        &mut self,
        job: &Job<'_>,
        plan: &Plan,
        outcome: &run::Outcome,
        rec: &mut RunRecord,
        records: &mut [Option<RunRecord>],
    ) {
        if self.keep == 0 {
            return;
        }
        if self.kept.len() == self.keep {
            let Some((&last, _)) = self.kept.last_key_value() else {
                return;
            };
            if last < job.rank {
                return;
            }
            let (_, folder) = self.kept.pop_last().expect("a last entry");
            if let Err(e) = std::fs::remove_dir_all(&folder) {
                tracing::warn!("cannot remove {}: {e}", folder.display());
            }
            if let Some(Some(dropped)) = records.get_mut(last) {
                dropped.kept = None;
            }
        }
        let folder = self.folder(job);
        rec.kept = keep_outputs(&folder, job, plan, &rec.repro, outcome);
        if rec.kept.is_some() {
            self.kept.insert(job.rank, folder);
        }
        if self.kept.len() == self.keep
            && let Some((&last, _)) = self.kept.last_key_value()
        {
            self.cutoff.store(last + 1, Ordering::Relaxed);
        }
    }
}

/// Moves an earlier run's `failures/` in `out` to `failures.old` (replacing
/// an older one), so the folder holds only this run's failures: a sweep that
/// finds none must not leave another run's failing traces looking like its
/// own. Says so unless `quiet`.
///
/// The earlier run's `summary.json` and reports are removed too: a run stopped
/// before it writes its own (Ctrl-C) must not leave them beside its failures
/// as if they were its result.
fn set_aside_earlier_run(out: &Path, quiet: bool) -> Result<(), String> {
    for name in ["summary.json", "report.md", "report.html"] {
        let path = out.join(name);
        if path.is_file() {
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    let failures = out.join("failures");
    if !failures.is_dir() {
        return Ok(());
    }
    let old = out.join("failures.old");
    if old.is_dir() {
        std::fs::remove_dir_all(&old)
            .map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
    }
    std::fs::rename(&failures, &old).map_err(|e| {
        format!(
            "cannot move an earlier run's {} aside: {e}",
            failures.display()
        )
    })?;
    if !quiet {
        println!(
            "an earlier run's failures are now in {} (this run keeps its own in failures/)",
            old.display()
        );
    }
    Ok(())
}

/// Writes `summary.json`, `report.md` and `report.html` into `dir`.
fn write_report(dir: &Path, json: &[u8], markdown: &str, html: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = [
        ("summary.json", json),
        ("report.md", markdown.as_bytes()),
        ("report.html", html.as_bytes()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes a sweep's (or merge's) files and prints its summary.
fn report_sweep(
    s: &SweepSummary,
    json: bool,
    dir: &Path,
    threads: Option<usize>,
) -> Result<(), String> {
    let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
    let html = stampede_reports::render_sweep_html(s);
    write_report(
        dir,
        text.as_bytes(),
        &stampede_reports::render_sweep_markdown(s),
        &html,
    )?;
    if json {
        println!("{text}");
    } else {
        print!("{}", stampede_reports::render_sweep_text(s, threads));
        println!(
            "  wrote {}/{{summary.json,report.md,report.html}}",
            dir.display()
        );
    }
    Ok(())
}

fn exit_code(t: &Totals) -> u8 {
    if t.failed + t.errors == 0 { 0 } else { 1 }
}

/// What a sweep or comparison stopped before its end leaves in `dir`.
fn unfinished(dir: &Path, what: &str) -> String {
    format!(
        "the {what} stopped before its summary: {} has no summary.json or report, only the failures kept of the runs made so far (an earlier run's summary there, if any, was removed when this one started and its failures moved to failures.old); no verdict",
        dir.display()
    )
}

/// `stampede sweep`: exit 0 if every run held, 1 if any failed.
pub fn sweep(args: &SweepArgs) -> Result<u8, String> {
    let files = scenario_files(&args.targets)?;
    let targets = load_targets(&files, args.design.as_deref(), &args.set)?;
    let jobs = sweep_jobs(&targets, &args.runs.seeds.list, args.shard);
    let dir = sweep_dir(args);
    run::prepare_out_dir(&dir)?;
    run::out_dir_holds_no_other(&dir, "sweep")?;
    set_aside_earlier_run(&dir, args.runs.json)?;
    crate::stop_saying_once(unfinished(&dir, "sweep"));
    let threads = args.runs.threads(jobs.len());
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
        swept: targets
            .iter()
            .map(|t| format!("{} [{}]", t.file.display(), t.design.label()))
            .collect(),
        scenario_digests: targets
            .iter()
            .map(|t| scenario_digest(&t.scenario))
            .collect(),
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: cpu_before
            .zip(process_cpu_ms())
            .map_or(0, |(before, after)| after.saturating_sub(before)),
        totals: Totals::of(&runs),
        incomplete: (runs.len() < jobs.len()).then(|| {
            format!(
                "{} of {} runs not made: --fail-fast stopped the sweep at its first failure",
                jobs.len() - runs.len(),
                jobs.len()
            )
        }),
        runs,
    };
    report_sweep(&summary, args.runs.json, &dir, Some(threads))?;
    Ok(exit_code(&summary.totals))
}

/// A short digest of `scenario` as parsed (see `SweepSummary::scenario_digests`).
fn scenario_digest(scenario: &Scenario) -> String {
    let json = serde_json::to_vec(scenario).unwrap_or_default();
    stampede_core::Fingerprint::of(&json).to_hex()[..16].to_string()
}

/// Every run of a sweep (or of its shard), in the listed order: scenario
/// files, then seeds; each job's rank is its index.
fn sweep_jobs<'a>(targets: &'a [Target], seeds: &'a [u64], shard: Option<Shard>) -> Vec<Job<'a>> {
    let all: Vec<Job<'_>> = targets
        .iter()
        .flat_map(|target| {
            seeds.iter().map(move |&seed| Job {
                target,
                design: &target.design,
                seed,
                rank: 0,
            })
        })
        .collect();
    let mut jobs: Vec<Job<'_>> = match shard {
        None => all,
        Some(shard) => all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i % shard.count as usize == (shard.index - 1) as usize)
            .map(|(_, job)| job)
            .collect(),
    };
    for (rank, job) in jobs.iter_mut().enumerate() {
        job.rank = rank;
    }
    jobs
}

/// Where a sweep (or a shard of one) writes.
fn sweep_dir(args: &SweepArgs) -> PathBuf {
    args.runs.out.clone().unwrap_or_else(|| match args.shard {
        None => PathBuf::from("stampede-out/sweep"),
        Some(s) => PathBuf::from(format!(
            "stampede-out/sweep-shard-{}-of-{}",
            s.index, s.count
        )),
    })
}

/// `stampede merge`: one summary from the shards' summaries. Two shards that
/// ran the same seed must agree on its trace hash.
pub fn merge(args: &MergeArgs) -> Result<u8, String> {
    merge_out_ready(args)?;
    let mut merged: Option<SweepSummary> = None;
    let mut runs: BTreeMap<(String, String, u64), RunRecord> = BTreeMap::new();
    // A summary without shards is a whole sweep: nothing can be missing then.
    let mut whole = false;
    for path in &args.summaries {
        let part = read_shard(path)?;
        if part.shards.is_empty() && args.summaries.len() > 1 {
            return Err(format!(
                "{}: a whole sweep's summary, given with other files: it is the whole result already",
                path.display()
            ));
        }
        whole |= part.shards.is_empty();
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
                same_sweep(m, &part, path)?;
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
    in_sweep_order(&mut summary);
    summary.totals = Totals::of(&summary.runs);
    let missing = if whole {
        Vec::new()
    } else {
        missing_shards(&summary.shards)?
    };
    summary.incomplete = unjudged(&summary, &missing)?;
    report_merged(&summary, args, &missing)
}

/// Puts the runs in the order a whole sweep lists them: scenario files as
/// swept, then seeds as asked.
fn in_sweep_order(summary: &mut SweepSummary) {
    let file_rank: BTreeMap<String, usize> = ranks(swept_files(summary).into_iter())
        .into_iter()
        .map(|(file, i)| (file.to_string(), i))
        .collect();
    let seeds: Vec<u64> = summary
        .seeds
        .parse::<Seeds>()
        .map(|s| s.list)
        .unwrap_or_default();
    let seed_rank = ranks(seeds.into_iter());
    summary.runs.sort_by_cached_key(|r| {
        (
            file_rank.get(&r.scenario_file).copied(),
            seed_rank.get(&r.seed).copied(),
        )
    });
}

/// Each item's position, first one kept (files and seeds are listed once).
fn ranks<T: Ord>(items: impl Iterator<Item = T>) -> BTreeMap<T, usize> {
    let mut ranks = BTreeMap::new();
    for (i, item) in items.enumerate() {
        ranks.entry(item).or_insert(i);
    }
    ranks
}

/// The scenario files a sweep swept, in its order (`swept` names each with
/// its design: `file [design]`).
fn swept_files(summary: &SweepSummary) -> Vec<&str> {
    summary
        .swept
        .iter()
        .map(|swept| {
            swept
                .rsplit_once(" [")
                .map_or(swept.as_str(), |(file, _)| file)
        })
        .collect()
}

/// What of the sweep the merged `summary` lacks, said in a line: the parts
/// not given (`missing`), and runs its parts should hold but do not (a shard
/// stopped by `--fail-fast`, or a summary cut short).
fn unjudged(summary: &SweepSummary, missing: &[Shard]) -> Result<Option<String>, String> {
    let seeds: Seeds = summary
        .seeds
        .parse()
        .map_err(|e| format!("seeds {:?}: {e}", summary.seeds))?;
    let files = swept_files(summary);
    let given = |rank: usize| {
        summary.shards.is_empty()
            || summary
                .shards
                .iter()
                .any(|s| rank % s.count as usize == (s.index - 1) as usize)
    };
    let present: std::collections::BTreeSet<(&str, u64)> = summary
        .runs
        .iter()
        .map(|r| (r.scenario_file.as_str(), r.seed))
        .collect();
    let mut expected = 0usize;
    let mut absent = 0usize;
    let mut first_absent = None;
    for (rank, (file, seed)) in files
        .iter()
        .flat_map(|file| seeds.list.iter().map(move |seed| (*file, *seed)))
        .enumerate()
    {
        if !given(rank) {
            continue;
        }
        expected += 1;
        if !present.contains(&(file, seed)) {
            absent += 1;
            first_absent.get_or_insert_with(|| format!("seed {seed} of {file}"));
        }
    }
    let mut why = Vec::new();
    if !missing.is_empty() {
        let parts: Vec<String> = missing.iter().map(ToString::to_string).collect();
        why.push(format!("shards {} not given", parts.join(", ")));
    }
    if let Some(first) = first_absent {
        why.push(format!(
            "{absent} of the {expected} runs of the shards given are not in them (the first: {first}; a shard stopped by --fail-fast, or a summary cut short)"
        ));
    }
    Ok((!why.is_empty()).then(|| format!("{}: their seeds were not judged", why.join("; "))))
}

/// Whether `part` (read from `path`) is another part of the sweep `merged`
/// holds so far: a shard not given yet, of the same seeds, design and files.
fn same_sweep(merged: &SweepSummary, part: &SweepSummary, path: &Path) -> Result<(), String> {
    if let Some(twice) = part.shards.iter().find(|s| merged.shards.contains(s)) {
        return Err(format!(
            "{}: shard {twice} is given twice: merge takes each part once",
            path.display()
        ));
    }
    if merged.seeds != part.seeds || merged.design != part.design {
        return Err(format!(
            "{}: seeds {} / design {} differ from the first file's {} / {}",
            path.display(),
            part.seeds,
            part.design,
            merged.seeds,
            merged.design
        ));
    }
    if merged.swept == part.swept && merged.scenario_digests != part.scenario_digests {
        return Err(format!(
            "{}: a part of another sweep: its scenario files had other contents than when the first file's part ran (digests {} against {}); run every shard on the same files",
            path.display(),
            part.scenario_digests.join(", "),
            merged.scenario_digests.join(", ")
        ));
    }
    if merged.swept != part.swept {
        return Err(format!(
            "{}: a part of another sweep: it swept {} where the first file swept {}",
            path.display(),
            part.swept.join(", "),
            merged.swept.join(", ")
        ));
    }
    Ok(())
}

/// Refuses a merge's out folder that holds one of its inputs (written over,
/// it would be lost) or another kind's result.
fn merge_out_ready(args: &MergeArgs) -> Result<(), String> {
    let out = merge_dir(args);
    // Resolved (`..`, links): only a summary already there can be an input written over.
    let written = std::fs::canonicalize(out.join("summary.json")).ok();
    if let Some(input) = written.as_ref().and_then(|written| {
        args.summaries
            .iter()
            .find(|s| std::fs::canonicalize(s).ok().as_ref() == Some(written))
    }) {
        return Err(format!(
            "--out {}: {} is one of the summaries merged; the merge would write over it: name another folder",
            out.display(),
            input.display()
        ));
    }
    run::out_dir_holds_no_other(&out, "sweep")
}

/// Where a merge writes.
fn merge_dir(args: &MergeArgs) -> PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| PathBuf::from("stampede-out/merged"))
}

/// Prints and writes the merged `summary`; its exit status, failing when
/// runs of the sweep are missing (`summary.incomplete`: shards `missing`, or
/// runs a given shard lacks) unless `--partial`.
fn report_merged(
    summary: &SweepSummary,
    args: &MergeArgs,
    missing: &[Shard],
) -> Result<u8, String> {
    let dir = merge_dir(args);
    if !args.json {
        print!("{}", stampede_reports::render_failing_text(&summary.runs));
    }
    report_sweep(summary, args.json, &dir, None)?;
    let Some(why) = &summary.incomplete else {
        return Ok(exit_code(&summary.totals));
    };
    if args.partial {
        eprintln!("warning: {why} (--partial)");
        Ok(exit_code(&summary.totals))
    } else {
        eprintln!(
            "error: {why}, so the merge fails (pass --partial to accept a merge of some of the {})",
            if missing.is_empty() { "runs" } else { "parts" }
        );
        Ok(1)
    }
}

/// One shard's `summary.json`, its kept failures' folders made absolute (the
/// merged summary lives elsewhere); a folder that is gone is dropped.
fn read_shard(path: &Path) -> Result<SweepSummary, String> {
    let text = read_text_bounded(path, stampede_reports::SUMMARY_BYTES_MAX)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut part: SweepSummary = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a sweep summary.json: {e}", path.display()))?;
    if part.version != SWEEP_VERSION || part.kind != "sweep" {
        return Err(format!(
            "{}: a {} summary of version {}; merge takes sweep summaries of version {SWEEP_VERSION}",
            path.display(),
            part.kind,
            part.version
        ));
    }
    if let Some(shard) = part.shards.iter().find(|s| {
        s.count == 0 || s.count > stampede_reports::SHARDS_MAX || s.index == 0 || s.index > s.count
    }) {
        return Err(format!(
            "{}: shard {}/{} is not a part of a sweep (1 ≤ part ≤ parts ≤ {})",
            path.display(),
            shard.index,
            shard.count,
            stampede_reports::SHARDS_MAX
        ));
    }
    let seeds: Seeds = part
        .seeds
        .parse()
        .map_err(|e| format!("{}: seeds {:?}: {e}", path.display(), part.seeds))?;
    let files = swept_files(&part);
    // (A summary written before `swept` was recorded names no files.)
    let file_rank = ranks(files.iter().copied());
    let seed_rank = ranks(seeds.list.iter().copied());
    let made = |r: &RunRecord| {
        if files.is_empty() {
            return seed_rank.contains_key(&r.seed);
        }
        let file = file_rank.get(r.scenario_file.as_str()).copied();
        let seed = seed_rank.get(&r.seed).copied();
        file.zip(seed).is_some_and(|(file, seed)| {
            let rank = file * seeds.list.len() + seed;
            part.shards.is_empty()
                || part
                    .shards
                    .iter()
                    .any(|s| rank % s.count as usize == (s.index - 1) as usize)
        })
    };
    if let Some(r) = part
        .runs
        .iter()
        .find(|r| !made(r) || r.passed != (r.violated.is_empty() && r.error.is_none()))
    {
        return Err(format!(
            "{}: the run of seed {} of {} is not one this sweep made (seeds {}; passed {}, violated {:?})",
            path.display(),
            r.seed,
            r.scenario_file,
            part.seeds,
            r.passed,
            r.violated.keys().collect::<Vec<_>>()
        ));
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    for r in &mut part.runs {
        r.kept = r.kept.take().and_then(|kept| {
            std::fs::canonicalize(folder.join(kept))
                .ok()
                .map(|p| p.display().to_string())
        });
    }
    Ok(part)
}

/// The parts of the sweep the merged `shards` are not (sorted, deduplicated);
/// shards of different splits (1/2 beside 1/3) are bad input.
fn missing_shards(shards: &[Shard]) -> Result<Vec<Shard>, String> {
    let Some(count) = shards.first().map(|s| s.count) else {
        return Ok(Vec::new());
    };
    if let Some(other) = shards.iter().find(|s| s.count != count) {
        return Err(format!(
            "shard {other} and shard {}/{count} are parts of different splits of a sweep",
            shards[0].index
        ));
    }
    Ok((1..=count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .map(|index| Shard { index, count })
        .collect())
}

/// `stampede compare`: exit 0 whatever the designs do (the table is the
/// answer); 2 for bad input.
pub fn compare(args: &CompareArgs) -> Result<u8, String> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| e.to_string())?;
    if args.designs.is_empty() || args.designs.len() > 16 {
        return Err("--designs takes 1 to 16 designs".into());
    }
    if let Some(i) = args.designs.iter().position(|d| d.trim().is_empty()) {
        return Err(format!(
            "--designs has an empty name at position {}: list designs as reference,seed-repo",
            i + 1
        ));
    }
    if let Some((i, twice)) = args
        .designs
        .iter()
        .enumerate()
        .find(|(i, d)| args.designs[..*i].contains(d))
    {
        return Err(format!(
            "--designs names {twice} twice (position {}): each design is a column",
            i + 1
        ));
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
        of_name: 1,
    };
    let dir =
        args.runs.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!("stampede-out/compare-{}", target.scenario.name))
        });
    run::prepare_out_dir(&dir)?;
    run::out_dir_holds_no_other(&dir, "compare")?;
    set_aside_earlier_run(&dir, args.runs.json)?;
    crate::stop_saying_once(unfinished(&dir, "comparison"));
    let started = std::time::Instant::now();
    let (runs, samples) = compare_runs(args, &target, &specs, &dir);
    let designs = specs
        .iter()
        .zip(samples)
        .map(|(spec, samples)| {
            let label = spec.label();
            let mine: Vec<&RunRecord> = runs.iter().filter(|r| r.design == label).collect();
            let mut column = DesignColumn::of(label, &mine, samples);
            column.unexercised =
                stampede_sim::scenarios::unexercised(&target.scenario, &spec.design)
                    .into_iter()
                    .map(|u| u.switch.to_string())
                    .collect();
            column
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
    report_compare(&summary, args.runs.json, &dir)?;
    Ok(0)
}

/// Runs every design on every seed in parallel; returns the records and, per
/// design, every confirmed order's order → confirmed time.
fn compare_runs(
    args: &CompareArgs,
    target: &Target,
    specs: &[DesignSpec],
    dir: &Path,
) -> (Vec<RunRecord>, Vec<Vec<u64>>) {
    let seeds = &args.runs.seeds.list;
    let jobs: Vec<Job<'_>> = specs
        .iter()
        .flat_map(|design| {
            seeds.iter().map(move |&seed| Job {
                target,
                design,
                seed,
                rank: 0,
            })
        })
        .collect();
    let mut jobs = jobs;
    for (rank, job) in jobs.iter_mut().enumerate() {
        job.rank = rank;
    }
    let threads = args.runs.threads(jobs.len());
    if !args.runs.json {
        println!(
            "comparing {} design(s) on {} × {} seed(s) = {} runs on {threads} threads",
            specs.len(),
            args.scenario.display(),
            seeds.len(),
            jobs.len()
        );
    }
    let bar = progress(jobs.len(), args.runs.json);
    let mut keeper = Keeper::new(dir, args.runs.keep_failures);
    let cutoff = keeper.cutoff();
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); specs.len()];
    let mut records: Vec<Option<RunRecord>> = vec![None; jobs.len()];
    pool::run_all(
        &jobs,
        threads,
        |job| record(job, || job.rank < cutoff.load(Ordering::Relaxed)),
        |i,
         Recorded {
             mut rec,
             samples: s,
             failed,
         }| {
            bar.inc(1);
            if let Some((plan, outcome)) = failed {
                keeper.offer(&jobs[i], &plan, &outcome, &mut rec, &mut records);
            }
            samples[i / seeds.len()].extend(s);
            records[i] = Some(rec);
            true
        },
    );
    bar.finish_and_clear();
    (records.into_iter().flatten().collect(), samples)
}

/// Writes a comparison's files and prints its table.
fn report_compare(s: &CompareSummary, json: bool, dir: &Path) -> Result<(), String> {
    let text = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
    write_report(
        dir,
        text.as_bytes(),
        &stampede_reports::render_compare_summary_markdown(s),
        &stampede_reports::render_compare_summary_html(s),
    )?;
    if json {
        println!("{text}");
    } else {
        print!("{}", stampede_reports::render_compare_summary_text(s));
        println!(
            "took {:.1} s; wrote {}/{{summary.json,report.md,report.html}}",
            s.wall_ms as f64 / 1000.0,
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_never_claims_more_threads_than_runs() {
        // Proves (found from outside: `--jobs 8` with 3 runs said "on 8 threads") the threads
        // a sweep runs on are as asked, but at most one per run, and at least one.
        let many = |jobs: u32| ManyRuns {
            seeds: "1".parse().unwrap(),
            jobs: Some(jobs),
            out: None,
            keep_failures: 0,
            json: false,
        };
        assert_eq!(many(8).threads(3), 3);
        assert_eq!(many(2).threads(3), 2);
        assert_eq!(many(3).threads(3), 3);
        assert_eq!(many(4).threads(0), 1);
    }

    #[test]
    fn merged_runs_come_in_the_whole_sweeps_order() {
        // Proves (found from outside: a merge listed `coverage.toml` before `job-redelivery.toml`
        // where the sweep had swept them the other way): merged runs are put in sweep order —
        // the files as swept, then the seeds as asked — not sorted by name or number.
        let run = |file: &str, seed: u64| {
            serde_json::from_value::<RunRecord>(serde_json::json!({
                "scenario": file, "scenario_file": file, "seed": seed, "design": "reference",
                "passed": true, "violated": {}, "error": null, "trace_hash": "h", "orders": 0,
                "confirmed": 0, "charges": 0, "refunds": 0, "retries": 0,
                "confirmation_latency": stampede_reports::Latency::default(),
                "sim_ms": 0, "wall_ms": 0, "repro": ""
            }))
            .unwrap()
        };
        let mut summary = SweepSummary {
            version: SWEEP_VERSION,
            kind: "sweep".into(),
            seeds: "3,1".into(),
            shards: Vec::new(),
            design: "reference".into(),
            swept: vec!["z.toml [reference]".into(), "a.toml [reference]".into()],
            scenario_digests: Vec::new(),
            wall_ms: 0,
            cpu_ms: 0,
            totals: Totals::default(),
            incomplete: None,
            runs: vec![
                run("a.toml", 1),
                run("a.toml", 3),
                run("z.toml", 1),
                run("z.toml", 3),
            ],
        };
        in_sweep_order(&mut summary);
        let order: Vec<(&str, u64)> = summary
            .runs
            .iter()
            .map(|r| (r.scenario_file.as_str(), r.seed))
            .collect();
        assert_eq!(
            order,
            [("z.toml", 3), ("z.toml", 1), ("a.toml", 3), ("a.toml", 1)]
        );
    }

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
            of_name: 1,
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
            rank: 0,
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
    fn process_cpu_time_is_known_on_linux() {
        // Proves the sweep can report runs per CPU-second here: the platform says its CPU time.
        assert!(process_cpu_ms().is_some(), "Linux reports process CPU time");
    }
}
