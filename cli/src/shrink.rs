//! `stampede shrink` and `stampede replay`: a failing seed becomes a small
//! plan file that still fails the same way, and any plan file can be run.
//!
//! Shrinking is delta debugging (Zeller's ddmin) over the plan's data: the
//! list of faults, the list of shoppers, then each remaining fault's length,
//! then behaviours switched off for every shopper at once, then the
//! scenario's webhook chaos — repeated until a pass changes nothing. A
//! candidate counts as "still failing" when the run violates the target
//! invariant. Candidates of one ddmin round run in parallel, in batches, and
//! the lowest-numbered failing one wins, so the result does not depend on
//! which thread finished first.

use crate::pool;
use crate::run::{self, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use stampede_core::Invariant;
use stampede_sim::{Intent, Plan, read_text_bounded};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Rounds of every reduction `shrink` makes at most (a round that changes
/// nothing ends it sooner).
const SHRINK_ROUNDS_MAX: usize = 4;

/// What `shrink` was asked to do.
#[derive(clap::Args)]
pub struct ShrinkArgs {
    /// The failing run.
    #[command(flatten)]
    pub target: run::SeedTarget,
    /// The invariant that must keep failing [default: the first one violated].
    #[arg(long)]
    pub invariant: Option<String>,
    /// Where to write the shrunk plan [default: stampede-out/shrunk-<scenario>-<seed>.plan.json].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Parallel runs [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// Most candidate runs before stopping with the smallest plan found so far.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_runs: u32,
}

/// What `replay` was asked to do.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A plan file written by `stampede shrink` (JSON).
    pub plan: PathBuf,
    /// Where and how it is reported.
    #[command(flatten)]
    pub output: run::RunOutput,
}

/// Largest plan file read, bytes (100,000 shoppers take some 20 MiB).
const PLAN_BYTES_MAX: u64 = 256 << 20;

/// Reads and checks a plan file.
pub fn load_plan(path: &Path) -> Result<Plan, String> {
    let text =
        read_text_bounded(path, PLAN_BYTES_MAX).map_err(|e| format!("{}: {e}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a plan file: {e}", path.display()))?;
    plan.validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(plan)
}

/// `stampede replay`: runs the plan and reports like `run`.
pub fn replay(args: &ReplayArgs) -> Result<(Summary, stampede_sim::RunResult, PathBuf), String> {
    let plan = load_plan(&args.plan)?;
    let outcome = run::run_plan(&plan, args.output.check_determinism)?;
    let repro = format!(
        "stampede replay {}",
        run::shell_word(&args.plan.display().to_string())
    );
    let summary = run::summarize(&plan, &args.plan, &plan.design.to_string(), repro, &outcome);
    let dir = args.output.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "stampede-out/replay-{}-{}",
            plan.scenario.name, plan.seed
        ))
    });
    Ok((summary, outcome.result, dir))
}

/// How big a plan is, for the report.
fn size(plan: &Plan) -> String {
    let window: u64 = plan.faults.iter().map(|f| f.fault.length_ms()).sum();
    format!(
        "{} shoppers, {} planned faults ({} ms of fault time)",
        plan.shoppers.len(),
        plan.faults.len(),
        window
    )
}

struct Shrinker<'a> {
    target: Invariant,
    jobs: usize,
    runs: u32,
    max_runs: u32,
    bar: &'a ProgressBar,
}

impl Shrinker<'_> {
    /// Rounds of every reduction until a round changes nothing, at most
    /// [`SHRINK_ROUNDS_MAX`], or the run budget is spent.
    fn minimise(&mut self, plan: &mut Plan) {
        for _round in 0..SHRINK_ROUNDS_MAX {
            let was = plan.clone();
            self.bar.set_message(format!("faults: {}", size(plan)));
            self.ddmin(plan, |p| &p.faults, |p, v| p.faults = v);
            self.bar.set_message(format!("shoppers: {}", size(plan)));
            self.ddmin(plan, |p| &p.shoppers, |p, v| p.shoppers = v);
            self.bar
                .set_message(format!("fault lengths: {}", size(plan)));
            self.shorten_faults(plan);
            self.bar.set_message(format!("behaviours: {}", size(plan)));
            self.simplify(plan);
            if *plan == was || self.runs >= self.max_runs {
                break;
            }
        }
    }

    fn fails(&self, plan: &Plan) -> bool {
        stampede_sim::run(plan).is_ok_and(|r| r.violated().contains(&self.target))
    }

    /// The index of the first candidate that still fails, trying them in
    /// batches of `jobs` in order; `None` if none does or the budget ran out.
    /// Runs are counted as if tried one by one (up to and including the
    /// first failing one), so the budget, and therefore the shrunk plan,
    /// does not depend on `jobs`.
    fn first_failing(&mut self, candidates: &[Plan]) -> Option<usize> {
        for (b, batch) in candidates.chunks(self.jobs).enumerate() {
            if self.runs >= self.max_runs {
                return None;
            }
            let batch = &batch[..batch.len().min((self.max_runs - self.runs) as usize)];
            let mut results = vec![false; batch.len()];
            pool::run_all(
                batch,
                self.jobs,
                |p| self.fails(p),
                |i, failed| {
                    results[i] = failed;
                    true
                },
            );
            let first = results.iter().position(|&f| f);
            self.runs += first.map_or(batch.len(), |i| i + 1) as u32;
            self.bar.set_position(u64::from(self.runs));
            if let Some(i) = first {
                return Some(b * self.jobs + i);
            }
        }
        None
    }

    /// ddmin over one list in the plan, chosen by `get`/`set`.
    fn ddmin<T: Clone>(
        &mut self,
        plan: &mut Plan,
        get: impl Fn(&Plan) -> &Vec<T>,
        set: impl Fn(&mut Plan, Vec<T>),
    ) {
        let with = |plan: &Plan, items: Vec<T>| {
            let mut p = plan.clone();
            set(&mut p, items);
            p
        };
        // Often the whole list is irrelevant: try without it first.
        if !get(plan).is_empty() && self.first_failing(&[with(plan, Vec::new())]).is_some() {
            set(plan, Vec::new());
            return;
        }
        let mut n = 2;
        while get(plan).len() >= 2 && self.runs < self.max_runs {
            let items = get(plan).clone();
            let chunk = items.len().div_ceil(n);
            let parts: Vec<Vec<T>> = items.chunks(chunk).map(<[T]>::to_vec).collect();
            let mut candidates: Vec<Vec<T>> = parts.clone();
            if parts.len() > 2 {
                candidates.extend((0..parts.len()).map(|skip| {
                    parts
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .flat_map(|(_, p)| p.iter().cloned())
                        .collect()
                }));
            }
            let plans: Vec<Plan> = candidates.iter().map(|c| with(plan, c.clone())).collect();
            match self.first_failing(&plans) {
                Some(i) if i < parts.len() => {
                    set(plan, candidates[i].clone());
                    n = 2;
                }
                Some(i) => {
                    set(plan, candidates[i].clone());
                    n = (n - 1).max(2);
                }
                None if n >= items.len() => break,
                None => n = (n * 2).min(items.len()),
            }
        }
    }

    /// Halves each fault's length while the plan still fails.
    fn shorten_faults(&mut self, plan: &mut Plan) {
        for i in 0..plan.faults.len() {
            for _ in 0..16 {
                let mut candidate = plan.clone();
                let Some(length) = candidate.faults[i].fault.length_mut() else {
                    break;
                };
                if *length < 20 {
                    break;
                }
                *length /= 2;
                if self
                    .first_failing(std::slice::from_ref(&candidate))
                    .is_none()
                {
                    break;
                }
                *plan = candidate;
            }
        }
    }

    /// Switches one behaviour off for every shopper at once, keeping each
    /// change that still fails; then calms the scenario's webhook chaos.
    fn simplify(&mut self, plan: &mut Plan) {
        type Edit = fn(&mut Plan) -> bool;
        let edits: [Edit; 9] = [
            |p| each_shopper(p, |s| std::mem::take(&mut s.double_click)),
            |p| each_shopper(p, |s| std::mem::take(&mut s.impatient)),
            |p| each_shopper(p, |s| std::mem::take(&mut s.tamper_price)),
            |p| each_shopper(p, |s| std::mem::take(&mut s.retry)),
            |p| {
                each_shopper(p, |s| match &mut s.intent {
                    Intent::Pay { double_pay, .. } => std::mem::take(double_pay),
                    _ => false,
                })
            },
            |p| {
                each_shopper(p, |s| match &mut s.intent {
                    Intent::Pay { delay_ms, .. } => std::mem::take(delay_ms) > 0,
                    _ => false,
                })
            },
            |p| {
                each_shopper(p, |s| {
                    let more = s.items.len() > 1 || s.items.iter().any(|(_, q)| *q > 1);
                    s.items.truncate(1);
                    s.items[0].1 = 1;
                    more
                })
            },
            |p| {
                let w = &mut p.scenario.faults.webhooks;
                let changed = w.duplicate_probability > 0.0;
                w.duplicate_probability = 0.0;
                changed
            },
            |p| std::mem::take(&mut p.scenario.faults.webhooks.delay_ms_max) > 0,
        ];
        for edit in edits {
            let mut candidate = plan.clone();
            if edit(&mut candidate)
                && self
                    .first_failing(std::slice::from_ref(&candidate))
                    .is_some()
            {
                *plan = candidate;
            }
        }
    }
}

fn each_shopper(
    plan: &mut Plan,
    mut f: impl FnMut(&mut stampede_sim::ShopperPlan) -> bool,
) -> bool {
    let mut changed = false;
    for s in &mut plan.shoppers {
        changed |= f(s);
    }
    changed
}

/// From now on an interrupted shrink says its plan at `path` is written.
fn written(leaves: &std::sync::Mutex<String>, path: &Path) {
    if let Ok(mut line) = leaves.lock() {
        *line = format!(
            "the shrink stopped after writing its plan to {}, while checking it once more (replay it to see)",
            path.display()
        );
    }
}

/// What a shrink stopped before its end leaves at `path`.
fn unwritten(path: &Path) -> String {
    format!(
        "the shrink stopped before writing its plan: {}{}",
        path.display(),
        if path.exists() {
            " is an earlier shrink's"
        } else {
            " was not written"
        }
    )
}

/// `stampede shrink`: writes the plan; exit status 0 if it still fails.
pub fn shrink(args: &ShrinkArgs) -> Result<u8, String> {
    let (scenario, spec, mut plan) = args.target.plan()?;
    let path = plan_path(args, &scenario.name)?;
    let leaves = std::sync::Arc::new(std::sync::Mutex::new(unwritten(&path)));
    crate::stop_saying(&leaves);
    let started = std::time::Instant::now();
    let first = run::run_plan(&plan, false)?.result;
    let violated = first.violated();
    let not_judged: Vec<Invariant> = first
        .verdicts
        .iter()
        .filter(|v| v.not_judged_reason().is_some())
        .map(|v| v.invariant)
        .collect();
    let target = target_of(args, &spec, &violated, &not_judged)?;
    println!(
        "shrinking {} seed {} on {}: violates {}; keeping {} failing",
        scenario.name,
        args.target.seed,
        spec.label(),
        names_of(&violated),
        target.name()
    );
    println!("  from {}", size(&plan));
    let bar = ProgressBar::new(u64::from(args.max_runs));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} {pos} runs  {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let mut s = Shrinker {
        target,
        jobs: args.jobs.map_or_else(pool::default_jobs, |j| j as usize),
        runs: 1,
        max_runs: args.max_runs,
        bar: &bar,
    };
    s.minimise(&mut plan);
    bar.finish_and_clear();
    // The scenario's count says what the plan holds now.
    plan.scenario.shoppers.count = plan.shoppers.len().max(1) as u32;
    write_plan(&path, &plan)?;
    written(&leaves, &path);
    // The written plan is what replay will run: check it once more, whole.
    let still = run::run_plan(&plan, false)?.result;
    let holds = still.violated().contains(&target);
    println!(
        "  to   {} in {} runs, {:.1} s{}",
        size(&plan),
        s.runs,
        started.elapsed().as_secs_f64(),
        if s.runs >= s.max_runs {
            " (stopped at --max-runs)"
        } else {
            ""
        }
    );
    let verdict = if holds {
        "still violates"
    } else {
        "NO LONGER violates"
    };
    let trace = &still.trace_hash;
    println!(
        "  the shrunk plan {verdict} {} (trace {trace})",
        target.name()
    );
    println!("  wrote {}", path.display());
    println!(
        "  replay: stampede replay {}",
        run::shell_word(&path.display().to_string())
    );
    Ok(if holds { 0 } else { 1 })
}

/// Where the shrunk plan goes, checked before any run: a file's path
/// (not a folder) in a folder that can be written.
fn plan_path(args: &ShrinkArgs, scenario: &str) -> Result<PathBuf, String> {
    let path = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "stampede-out/shrunk-{scenario}-{}.plan.json",
            args.target.seed
        ))
    });
    if path.is_dir() {
        return Err(format!(
            "--out {}: a folder, not a plan file's path",
            path.display()
        ));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    run::prepare_out_dir(parent.unwrap_or(Path::new(".")))?;
    Ok(path)
}

/// The invariant to keep failing: the one asked for (which the seed must
/// violate), or the first the seed violates.
fn target_of(
    args: &ShrinkArgs,
    spec: &run::DesignSpec,
    violated: &[Invariant],
    not_judged: &[Invariant],
) -> Result<Invariant, String> {
    let unjudged = match not_judged {
        [] => String::new(),
        some => format!(" (not judged, as the scenario asks: {})", names_of(some)),
    };
    let Some(name) = &args.invariant else {
        return violated.first().copied().ok_or_else(|| {
            format!(
                "seed {} violates no invariant it judges on design {}{unjudged}: nothing to shrink",
                args.target.seed,
                spec.label()
            )
        });
    };
    let invariant = Invariant::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
        format!("--invariant {name:?} is not one of {}", names.join(", "))
    })?;
    if not_judged.contains(&invariant) {
        return Err(format!(
            "the scenario does not judge {name} (its `invariants` list leaves it out): nothing to keep failing"
        ));
    }
    if !violated.contains(&invariant) {
        return Err(format!(
            "seed {} does not violate {name} on design {}; it violates: {}",
            args.target.seed,
            spec.label(),
            names_of(violated)
        ));
    }
    Ok(invariant)
}

fn write_plan(path: &Path, plan: &Plan) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let json = serde_json::to_vec_pretty(plan).map_err(|e| e.to_string())?;
    // Whole or not at all: written beside it, then renamed over it.
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    std::fs::write(&part, json)
        .and_then(|()| std::fs::rename(&part, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn names_of(invariants: &[Invariant]) -> String {
    let names: Vec<&str> = invariants.iter().map(|i| i.name()).collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}
