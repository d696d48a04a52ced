//! `stampede run`: one simulated run of a scenario, judged, summarised, and
//! written to `--out` as `summary.json`, `report.md`, `report.html` and `trace.jsonl`.

use stampede_core::{ClientOp, ClientReply, EventKind, History, Invariant, OrderStatus};
use stampede_reports::{Latency, Lead, RunStats, SUMMARY_VERSION};
use stampede_server::Design;
use stampede_sim::{Plan, RunResult, Scenario};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `summary.json` of one run: `stampede-reports` owns it and every rendering of it.
pub use stampede_reports::RunSummary as Summary;
/// The terminal summary of one run.
pub use stampede_reports::render_run_text as render_terminal;

/// One seeded run: a scenario file, a seed and a design.
#[derive(clap::Args)]
pub struct SeedTarget {
    /// Scenario file (TOML), e.g. scenarios/flash-sale.toml.
    pub scenario: PathBuf,
    /// Seed: the same seed replays the same run exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Design preset (default: the scenario's `design`).
    #[arg(long)]
    pub design: Option<String>,
    /// Override one switch, e.g. --set webhook_dedup=off (repeatable).
    #[arg(long = "set", value_name = "SWITCH=VALUE")]
    pub set: Vec<String>,
}

impl SeedTarget {
    /// Loads the scenario, resolves the design and draws the plan.
    pub fn plan(&self) -> Result<(Scenario, DesignSpec, Plan), String> {
        let scenario = Scenario::load(&self.scenario).map_err(|e| e.to_string())?;
        let spec = DesignSpec::for_scenario(&scenario, self.design.as_deref(), &self.set)?;
        let plan = Plan::generate(&scenario, spec.design, self.seed);
        Ok((scenario, spec, plan))
    }
}

/// What `run` was asked to do.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The run.
    #[command(flatten)]
    pub target: SeedTarget,
    /// Where and how it is reported.
    #[command(flatten)]
    pub output: RunOutput,
}

/// How one run (`run` or `replay`) is reported.
#[derive(clap::Args)]
pub struct RunOutput {
    /// Folder for summary.json, report.md, report.html and trace.jsonl [default: stampede-out/<scenario>-<seed> for run, stampede-out/replay-<scenario>-<seed> for replay].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as one JSON document instead.
    #[arg(long)]
    pub json: bool,
    /// Run twice and fail unless both runs have the same trace hash.
    #[arg(long)]
    pub check_determinism: bool,
}

/// A design as named on the command line: a preset plus switch overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct DesignSpec {
    /// The preset it starts from.
    pub preset: String,
    /// `switch=value` overrides, in order.
    pub sets: Vec<String>,
    /// The resulting design.
    pub design: Design,
}

impl DesignSpec {
    /// A preset with overrides; a bad name or assignment is an error naming it.
    pub fn new(design: &str, sets: &[String]) -> Result<DesignSpec, String> {
        // `--design preset+switch=value` says what `--design preset --set switch=value` does.
        let mut parts = design.split('+').map(str::trim);
        let preset = parts.next().unwrap_or_default();
        let sets: Vec<String> = parts
            .map(str::to_string)
            .chain(sets.iter().cloned())
            .collect();
        let mut design = Design::preset(preset).map_err(|e| format!("--design: {e}"))?;
        let mut seen: Vec<&str> = Vec::new();
        for assignment in &sets {
            let switch = assignment.split_once('=').map_or("", |(s, _)| s.trim());
            if !switch.is_empty() && seen.contains(&switch) {
                return Err(format!(
                    "--set {assignment}: switch {switch} is set twice; set each switch once"
                ));
            }
            seen.push(switch);
            design
                .apply(assignment)
                .map_err(|e| format!("--set {assignment}: {e}"))?;
        }
        Ok(DesignSpec {
            preset: preset.to_string(),
            // As `switch=value`, however spaced when given: labels, folders and repro
            // lines then carry one word per assignment.
            sets: sets
                .iter()
                .map(|a| match a.split_once('=') {
                    Some((switch, value)) => format!("{}={}", switch.trim(), value.trim()),
                    None => a.trim().to_string(),
                })
                .collect(),
            design,
        })
    }

    /// `preset[+switch=value...]`, as `compare --designs` takes it.
    pub fn parse(text: &str) -> Result<DesignSpec, String> {
        DesignSpec::new(text, &[]).map_err(|e| format!("design {text:?}: {e}"))
    }

    /// The scenario's own design, unless `--design` names another.
    pub fn for_scenario(
        scenario: &Scenario,
        design: Option<&str>,
        sets: &[String],
    ) -> Result<DesignSpec, String> {
        DesignSpec::new(design.unwrap_or(&scenario.design), sets)
    }

    /// `preset` or `preset+switch=value+...`.
    pub fn label(&self) -> String {
        std::iter::once(self.preset.as_str())
            .chain(self.sets.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The `--design ... --set ...` arguments that name it.
    pub fn cli_args(&self) -> String {
        std::iter::once(format!("--design {}", shell_word(&self.preset)))
            .chain(self.sets.iter().map(|s| format!("--set {}", shell_word(s))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The command that reproduces one seeded run, safe to paste into a shell.
pub fn repro_command(scenario_file: &Path, seed: u64, design: &DesignSpec) -> String {
    format!(
        "stampede run {} --seed {seed} {}",
        shell_word(&scenario_file.display().to_string()),
        design.cli_args()
    )
}

/// `text` as one shell word: as it is when it holds only characters no shell
/// treats specially, otherwise in single quotes (a quote inside as `'\''`).
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Sim-time latency from an order's first acknowledgement to `Confirmed`.
pub fn confirmation_latency(history: &History) -> Latency {
    Latency::of(confirmation_samples(history))
}

/// Each confirmed order's time from first acknowledgement to `Confirmed`, ms.
pub fn confirmation_samples(history: &History) -> Vec<u64> {
    let mut accepted = BTreeMap::new();
    let mut samples = Vec::new();
    for event in history.events() {
        match &event.kind {
            EventKind::Response {
                reply: ClientReply::OrderAccepted { order, .. },
                ..
            } => {
                accepted.entry(*order).or_insert(event.at);
            }
            EventKind::Transition(t) if t.to == OrderStatus::Confirmed => {
                if let Some(at) = accepted.get(&t.order) {
                    samples.push(t.at.since(*at));
                }
            }
            _ => {}
        }
    }
    samples
}

/// Client requests that repeated an Idempotency-Key already sent (retries
/// and double clicks).
pub fn client_retries(history: &History) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeats = 0;
    for event in history.events() {
        let key = match &event.kind {
            EventKind::Request {
                op: ClientOp::PlaceOrder(p),
                ..
            } => p.key.as_ref(),
            EventKind::Request {
                op: ClientOp::Pay { key, .. },
                ..
            } => key.as_ref(),
            _ => None,
        };
        if let Some(key) = key
            && !seen.insert(key.clone())
        {
            repeats += 1;
        }
    }
    repeats
}

fn first_violations(result: &RunResult) -> Vec<Lead> {
    result
        .verdicts
        .iter()
        .filter_map(|v| {
            v.violations().first().map(|x| Lead {
                invariant: v.invariant.name().to_string(),
                subject: x.subject.clone(),
                detail: x.detail.clone(),
                evidence: x.evidence.clone(),
            })
        })
        .collect()
}

fn verdicts(result: &RunResult) -> Vec<stampede_reports::AuditVerdict> {
    result
        .verdicts
        .iter()
        .map(|v| {
            let (outcome, total) = v.outcome();
            let examples = v
                .violations()
                .iter()
                .take(3)
                .map(|x| stampede_reports::violation_example(x, &result.history))
                .collect();
            stampede_reports::AuditVerdict {
                invariant: v.invariant.name().to_string(),
                outcome: outcome.to_string(),
                violations: total,
                examples,
                reason: v.not_judged_reason().map(str::to_string),
                lost_to_faults: v.lost_to_faults_total,
            }
        })
        .collect()
}

/// Loads, plans and runs; returns the summary and the result.
pub fn execute(args: &RunArgs) -> Result<(Summary, RunResult), String> {
    let t = &args.target;
    let (_, spec, plan) = t.plan()?;
    let repro = repro_command(&t.scenario, t.seed, &spec);
    let outcome = run_plan(&plan, args.output.check_determinism)?;
    let summary = summarize(&plan, &t.scenario, &spec.label(), repro, &outcome);
    Ok((summary, outcome.result))
}

/// A finished run and its wall time.
pub struct Outcome {
    /// What the simulator returned.
    pub result: RunResult,
    /// Wall time of the (first) run, ms.
    pub wall_ms: u64,
}

/// Runs a plan (twice, comparing trace hashes, when `check_determinism`).
pub fn run_plan(plan: &Plan, check_determinism: bool) -> Result<Outcome, String> {
    let started = std::time::Instant::now();
    let result = stampede_sim::run(plan).map_err(|e| format!("the run failed: {e}"))?;
    let wall_ms = started.elapsed().as_millis() as u64;
    if check_determinism {
        let again = stampede_sim::run(plan).map_err(|e| format!("the second run failed: {e}"))?;
        if again.trace_hash != result.trace_hash {
            return Err(format!(
                "determinism check failed: the same plan gave trace {} then {}",
                result.trace_hash, again.trace_hash
            ));
        }
    }
    Ok(Outcome { result, wall_ms })
}

/// The summary of one finished run of `plan`.
pub fn summarize(
    plan: &Plan,
    scenario_file: &Path,
    design: &str,
    repro: String,
    outcome: &Outcome,
) -> Summary {
    let result = &outcome.result;
    Summary {
        version: SUMMARY_VERSION,
        scenario: plan.scenario.name.clone(),
        scenario_file: scenario_file.display().to_string(),
        seed: plan.seed,
        design: design.to_string(),
        passed: result.passed(),
        verdicts: verdicts(result),
        first_violations: first_violations(result),
        live_violations: result
            .live_violations
            .iter()
            .map(|l| stampede_reports::LiveViolation {
                invariant: l.invariant,
                at_ms: l.at_ms,
                detail: l.detail.clone(),
            })
            .collect(),
        unsettled: result.unsettled.clone(),
        unexercised: stampede_sim::scenarios::unexercised(&plan.scenario, &plan.design)
            .iter()
            .map(ToString::to_string)
            .collect(),
        stats: stats(&result.stats),
        confirmation_latency: confirmation_latency(&result.history),
        trace_hash: result.trace_hash.clone(),
        repro,
        wall_ms: outcome.wall_ms,
    }
}

/// The simulator's counts as the report model mirrors them. The patterns name
/// every field, so a field added in the simulator stops this compiling
/// rather than going missing from `summary.json`.
fn stats(stats: &stampede_sim::RunStats) -> RunStats {
    let stampede_sim::RunStats {
        sim_ms,
        requests,
        orders,
        orders_by_status,
        events,
        faults,
        charges,
        refunds,
        http_requests,
        store_calls,
        coverage,
    } = stats.clone();
    let stampede_sim::Coverage {
        late_payments,
        refunds: refunds_seen,
        intent_cancellations,
        reconciler_payments,
    } = coverage;
    RunStats {
        sim_ms,
        requests,
        orders,
        orders_by_status,
        events,
        faults,
        charges,
        refunds,
        http_requests,
        store_calls,
        coverage: stampede_reports::RunCoverage {
            late_payments,
            refunds: refunds_seen,
            intent_cancellations,
            reconciler_payments,
        },
    }
}

/// Checks, before any simulating is done, that `dir` could take a
/// command's files (so a bad `--out` costs nothing), leaving nothing behind:
/// the nearest part of the path that exists must be a folder a file can be
/// written in (a probe file is written there and removed).
pub fn prepare_out_dir(dir: &Path) -> Result<(), String> {
    let absolute = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let existing = absolute
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(format!(
            "cannot create {}: {} is not a folder",
            dir.display(),
            existing.display()
        ));
    }
    let probe = existing.join(format!(".stampede-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "cannot create {}: cannot write in {}: {e}",
            dir.display(),
            existing.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks a run's `--out` (or, without one, `stampede-out`) before the run:
/// writable, and not another kind of result's folder.
pub fn ready_run_out(out: Option<&Path>) -> Result<(), String> {
    prepare_out_dir(out.unwrap_or(Path::new("stampede-out")))?;
    out.map_or(Ok(()), |out| out_dir_holds_no_other(out, "run"))
}

/// Refuses an out folder that holds another kind of result than `kind`
/// (`run`, `sweep` or `compare`): a run's (it has a `trace.jsonl`), or a
/// sweep's or comparison's (its `summary.json` says). Written into, it would
/// keep half of each — a sweep's summary beside a run's trace.
pub fn out_dir_holds_no_other(dir: &Path, kind: &str) -> Result<(), String> {
    let found = if dir.join("trace.jsonl").is_file() {
        Some("run".to_string())
    } else {
        std::fs::read_to_string(dir.join("summary.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|summary| summary["kind"].as_str().map(str::to_string))
            .filter(|k| k == "sweep" || k == "compare")
    };
    match found {
        Some(other) if other != kind => Err(format!(
            "{}: holds a {other}'s result; a {kind} would write over part of it and leave the rest: name another --out",
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Writes `summary.json`, `report.md`, `report.html` and `trace.jsonl` into `dir`.
pub fn write_outputs(dir: &Path, summary: &Summary, history: &History) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        "summary.json",
        serde_json::to_vec_pretty(summary).map_err(|e| e.to_string())?,
    )?;
    write(
        "report.md",
        stampede_reports::render_run_markdown(summary).into_bytes(),
    )?;
    write(
        "report.html",
        stampede_reports::render_run_html(summary, history).into_bytes(),
    )?;
    let path = dir.join("trace.jsonl");
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(cannot)?);
    stampede_sim::write_trace(history, &mut out).map_err(cannot)?;
    std::io::Write::flush(&mut out).map_err(cannot)
}

/// Which invariants failed (for the exit code and messages).
pub fn failed(summary: &Summary) -> Vec<Invariant> {
    summary
        .verdicts
        .iter()
        .filter(|v| v.outcome == "violated")
        .filter_map(|v| Invariant::parse(&v.invariant))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repro_line_quotes_what_a_shell_would_split_or_run() {
        // Proves: plain paths stay as they are; a path with a space, a `;`, a `$` or a quote
        // becomes one single-quoted shell word, so a pasted repro line runs only stampede.
        assert_eq!(
            shell_word("scenarios/flash-sale.toml"),
            "scenarios/flash-sale.toml"
        );
        assert_eq!(shell_word("my scen;x.toml"), "'my scen;x.toml'");
        assert_eq!(shell_word("$(rm -rf ~).toml"), "'$(rm -rf ~).toml'");
        assert_eq!(shell_word("it's.toml"), "'it'\\''s.toml'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn a_design_is_one_spelling_whether_switches_come_after_a_plus_or_as_sets() {
        // Proves (found from outside: `run --design seed-repo+commit=ack-first` was "unknown
        // design" while `compare` took it): `preset+switch=value` is the same design as
        // `preset --set switch=value`, with the same label, for every command; a switch set
        // twice is refused rather than the last one winning silently.
        let plus = DesignSpec::new("reference+commit=ack-first", &[]).unwrap();
        let set = DesignSpec::new("reference", &["commit=ack-first".to_string()]).unwrap();
        assert_eq!(plus.design, set.design);
        assert_eq!(plus.label(), "reference+commit=ack-first");
        assert_eq!(plus.label(), set.label());
        assert_ne!(plus.design, Design::reference());
        let twice = DesignSpec::new(
            "reference+commit=ack-first",
            &["commit=durable".to_string()],
        )
        .unwrap_err();
        assert!(twice.contains("set twice"), "{twice}");
        let twice = DesignSpec::new(
            "reference",
            &["intent_key=off".to_string(), "intent_key=off".to_string()],
        )
        .unwrap_err();
        assert!(twice.contains("set twice"), "{twice}");
    }

    #[test]
    fn a_repro_line_names_each_override_as_one_word() {
        // Proves (found from outside: `--set " idempotency = none"` ran, but its repro line
        // said `--set  idempotency = none`, which a shell splits into three arguments): an
        // assignment is kept as `switch=value` however it was spaced, so the repro line and the
        // design label carry it as one word, and the same design with or without the spaces has
        // one label.
        let spaced = DesignSpec::new("reference", &[" idempotency = none".to_string()]).unwrap();
        let plain = DesignSpec::new("reference", &["idempotency=none".to_string()]).unwrap();
        assert_eq!(
            spaced.cli_args(),
            "--design reference --set idempotency=none"
        );
        assert_eq!(spaced.label(), plain.label());
        assert_eq!(
            repro_command(Path::new("a b.toml"), 3, &spaced),
            "stampede run 'a b.toml' --seed 3 --design reference --set idempotency=none"
        );
    }

    // Proves the report model's mirror of the simulator's counts writes the same JSON bytes
    // as the simulator's own type (summary.json is read back by explain, merge and tests), with
    // every field set to a distinct value so a swapped or dropped field shows.
    #[test]
    fn mirrored_stats_write_the_simulators_bytes() {
        let sim = stampede_sim::RunStats {
            sim_ms: 1,
            requests: 2,
            orders: 3,
            orders_by_status: BTreeMap::from([("confirmed".to_string(), 4)]),
            events: 5,
            faults: 6,
            charges: 7,
            refunds: 8,
            http_requests: 9,
            store_calls: 10,
            coverage: stampede_sim::Coverage {
                late_payments: 11,
                refunds: 12,
                intent_cancellations: 13,
                reconciler_payments: 14,
            },
        };
        assert_eq!(
            serde_json::to_string_pretty(&stats(&sim)).unwrap(),
            serde_json::to_string_pretty(&sim).unwrap()
        );
    }
}
