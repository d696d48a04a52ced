//! `stampede run`: one simulated run of a scenario, judged, summarised, and
//! written to `--out` as `summary.json`, `report.md`, `report.html` and `trace.jsonl`.

use serde::Serialize;
use stampede_core::{ClientOp, ClientReply, EventKind, History, Invariant, OrderStatus};
use stampede_server::Design;
use stampede_sim::{Plan, RunResult, Scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Version of the `summary.json` schema.
pub const SUMMARY_VERSION: u32 = 1;

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
    /// Folder for summary.json, report.md and trace.jsonl [default: stampede-out/<scenario>-<seed>, or replay-<scenario>-<seed>].
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
    pub fn new(preset: &str, sets: &[String]) -> Result<DesignSpec, String> {
        let mut design = Design::preset(preset).map_err(|e| format!("--design: {e}"))?;
        for assignment in sets {
            design
                .apply(assignment)
                .map_err(|e| format!("--set {assignment}: {e}"))?;
        }
        Ok(DesignSpec {
            preset: preset.to_string(),
            sets: sets.to_vec(),
            design,
        })
    }

    /// `preset[+switch=value...]`, as `compare --designs` takes it.
    pub fn parse(text: &str) -> Result<DesignSpec, String> {
        let mut parts = text.split('+').map(str::trim);
        let preset = parts.next().unwrap_or_default();
        let sets: Vec<String> = parts.map(str::to_string).collect();
        DesignSpec::new(preset, &sets).map_err(|e| format!("design {text:?}: {e}"))
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
        let mut args = format!("--design {}", self.preset);
        for s in &self.sets {
            let _ = write!(args, " --set {s}");
        }
        args
    }
}

/// The command that reproduces one seeded run.
pub fn repro_command(scenario_file: &Path, seed: u64, design: &DesignSpec) -> String {
    format!(
        "stampede run {} --seed {seed} {}",
        scenario_file.display(),
        design.cli_args()
    )
}

/// Order-to-confirmation latency in sim time.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Latency {
    /// Orders measured.
    pub n: usize,
    /// Median, ms.
    pub p50_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
    /// Largest, ms.
    pub max_ms: u64,
}

/// One invariant's outcome, as written to `summary.json` (the same type a
/// load run's audit uses).
pub type VerdictSummary = stampede_reports::AuditVerdict;

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Schema version.
    pub version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub scenario_file: String,
    /// Seed.
    pub seed: u64,
    /// Design, as presets/switches text.
    pub design: String,
    /// Every invariant held.
    pub passed: bool,
    /// Verdicts.
    pub verdicts: Vec<VerdictSummary>,
    /// The first violation of each violated invariant, with its subject and
    /// evidence (history indices into trace.jsonl): where `stampede explain` starts.
    pub first_violations: Vec<stampede_reports::Lead>,
    /// Safety violations as first seen during the run.
    pub live_violations: Vec<stampede_sim::LiveViolation>,
    /// Why the world had not settled by the end (empty: it had); liveness was judged either way.
    pub unsettled: Vec<String>,
    /// Counts.
    pub stats: stampede_sim::RunStats,
    /// Order → confirmed, sim time.
    pub confirmation_latency: Latency,
    /// SHA-256 of the history.
    pub trace_hash: String,
    /// The command that reproduces this run.
    pub repro: String,
    /// Wall time of the run, ms.
    pub wall_ms: u64,
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

impl Latency {
    /// Percentiles of `samples` (nearest rank).
    pub fn of(mut samples: Vec<u64>) -> Latency {
        samples.sort_unstable();
        let pick = |q: f64| {
            samples
                .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0)
        };
        Latency {
            n: samples.len(),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: samples.last().copied().unwrap_or(0),
        }
    }
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

fn describe_event(history: &History, index: usize) -> String {
    let Some(event) = history.events().get(index) else {
        return format!("#{index}");
    };
    let what = match &event.kind {
        EventKind::Transition(t) => format!("{} {} -> {} by {}", t.order, t.from, t.to, t.cause),
        EventKind::Ledger(l) => format!(
            "ledger {:?} {} on {} for {}",
            l.kind, l.amount, l.intent, l.order
        ),
        EventKind::Request { req, op, .. } => format!(
            "request #{req} {}",
            serde_json::to_string(op).unwrap_or_default()
        ),
        EventKind::Response { req, reply } => format!(
            "response #{req} {}",
            serde_json::to_string(reply).unwrap_or_default()
        ),
        EventKind::Stocked { sku, qty } => format!("stocked {qty} x {sku}"),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    format!("#{index} at {}: {what}", event.at)
}

fn first_violations(result: &RunResult) -> Vec<stampede_reports::Lead> {
    result
        .verdicts
        .iter()
        .filter_map(|v| {
            v.violations().first().map(|x| stampede_reports::Lead {
                invariant: v.invariant.name().to_string(),
                subject: x.subject.clone(),
                detail: x.detail.clone(),
                evidence: x.evidence.clone(),
            })
        })
        .collect()
}

fn verdicts(result: &RunResult) -> Vec<VerdictSummary> {
    result
        .verdicts
        .iter()
        .map(|v| {
            let (outcome, total) = v.outcome();
            let examples = v
                .violations()
                .iter()
                .take(3)
                .map(|x| {
                    let evidence: Vec<String> = x
                        .evidence
                        .iter()
                        .take(4)
                        .map(|i| describe_event(&result.history, *i))
                        .collect();
                    if evidence.is_empty() {
                        format!("{}: {}", x.subject, x.detail)
                    } else {
                        format!(
                            "{}: {} [evidence: {}]",
                            x.subject,
                            x.detail,
                            evidence.join("; ")
                        )
                    }
                })
                .collect();
            VerdictSummary {
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
    let summary = Summary::new(&plan, &t.scenario, &spec.label(), repro, &outcome);
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

impl Summary {
    /// The summary of one finished run of `plan`.
    pub fn new(
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
            live_violations: result.live_violations.clone(),
            unsettled: result.unsettled.clone(),
            stats: result.stats.clone(),
            confirmation_latency: confirmation_latency(&result.history),
            trace_hash: result.trace_hash.clone(),
            repro,
            wall_ms: outcome.wall_ms,
        }
    }
}

/// The terminal summary.
pub fn render_terminal(s: &Summary, determinism_checked: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stampede run {}  seed {}  design {}",
        s.scenario, s.seed, s.design
    );
    let st = &s.stats;
    let statuses: Vec<String> = st
        .orders_by_status
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(out, "  {} orders: {}", st.orders, statuses.join(", "));
    let _ = writeln!(
        out,
        "  {} client requests, {} HTTP requests in all, {} store calls, {} charges, {} refunds, {} faults",
        st.requests, st.http_requests, st.store_calls, st.charges, st.refunds, st.faults
    );
    let l = &s.confirmation_latency;
    let _ = writeln!(
        out,
        "  order -> confirmed (sim time): p50 {} ms, p99 {} ms, max {} ms (n={})",
        l.p50_ms, l.p99_ms, l.max_ms, l.n
    );
    let _ = writeln!(
        out,
        "  sim time {:.1} s, wall {:.1} s",
        st.sim_ms as f64 / 1000.0,
        s.wall_ms as f64 / 1000.0
    );
    if !s.unsettled.is_empty() {
        let _ = writeln!(
            out,
            "  the world had not settled by the end ({}): liveness is judged on the state it was left in",
            s.unsettled.join(", ")
        );
    }
    let _ = writeln!(out, "\n  invariants");
    out.push_str(&stampede_reports::render_verdicts_text(&s.verdicts));
    for v in s.verdicts.iter().filter(|v| !v.examples.is_empty()) {
        let _ = writeln!(out, "    ✗ {}:", v.invariant);
        for example in &v.examples {
            let _ = writeln!(out, "        {example}");
        }
    }
    for live in &s.live_violations {
        let _ = writeln!(
            out,
            "    first seen live: {} at {:.3} s: {}",
            live.invariant,
            live.at_ms as f64 / 1000.0,
            live.detail
        );
    }
    let _ = writeln!(
        out,
        "\n  trace {}{}",
        s.trace_hash,
        if determinism_checked {
            " (same on a second run)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "  repro: {}", s.repro);
    out
}

fn report_markdown(s: &Summary) -> String {
    let mut md = format!(
        "# {} — seed {} — design {}\n\n",
        s.scenario, s.seed, s.design
    );
    let _ = writeln!(
        md,
        "**{}**\n",
        if s.passed {
            "All invariants hold."
        } else {
            "Invariants violated."
        }
    );
    md.push_str(&stampede_reports::render_verdicts_markdown(
        &s.verdicts,
        false,
    ));
    for v in s.verdicts.iter().filter(|v| !v.examples.is_empty()) {
        let _ = writeln!(md, "\n## {}\n", v.invariant);
        for e in &v.examples {
            let _ = writeln!(md, "- {e}");
        }
    }
    let l = &s.confirmation_latency;
    let _ = writeln!(
        md,
        "\n## Run\n\n- orders: {} ({:?})\n- order → confirmed, sim time: p50 {} ms, p99 {} ms, max {} ms (n={})\n- trace hash: `{}`\n- reproduce: `{}`",
        s.stats.orders,
        s.stats.orders_by_status,
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        l.n,
        s.trace_hash,
        s.repro
    );
    md
}

/// The run's page: its facts (the summary's counts among them), verdicts,
/// first violations and charts over simulated time.
fn sim_report(summary: &Summary, history: &History) -> String {
    let mut facts = vec![
        (
            "scenario".to_string(),
            format!("{} ({})", summary.scenario, summary.scenario_file),
        ),
        ("seed".into(), summary.seed.to_string()),
        ("design".into(), summary.design.clone()),
    ];
    if let Ok(serde_json::Value::Object(stats)) = serde_json::to_value(&summary.stats) {
        facts.extend(
            stats
                .into_iter()
                .map(|(k, v)| (k.replace('_', " "), v.to_string())),
        );
    }
    let l = &summary.confirmation_latency;
    facts.push((
        "order → confirmed (simulated)".into(),
        format!(
            "p50 {} ms, p99 {} ms, max {} ms (n={})",
            l.p50_ms, l.p99_ms, l.max_ms, l.n
        ),
    ));
    facts.push(("trace hash".into(), summary.trace_hash.clone()));
    facts.push(("wall time".into(), format!("{} ms", summary.wall_ms)));
    let report = stampede_reports::SimReport::new(
        format!(
            "stampede run {} seed {}, design {}",
            summary.scenario, summary.seed, summary.design
        ),
        summary.passed,
        facts,
        summary.repro.clone(),
        summary.verdicts.clone(),
        summary.first_violations.clone(),
        history,
    );
    stampede_reports::render_sim_html(&report)
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
    write("report.md", report_markdown(summary).into_bytes())?;
    write("report.html", sim_report(summary, history).into_bytes())?;
    let mut lines = Vec::new();
    for event in history.events() {
        lines.extend(serde_json::to_vec(event).map_err(|e| e.to_string())?);
        lines.push(b'\n');
    }
    write("trace.jsonl", lines)
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
