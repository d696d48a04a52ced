//! One simulated run's summary (`stampede run` and `replay` write it as
//! `summary.json`) and its renderers: the terminal summary, `report.md` and,
//! with the run's history, `report.html` (through [`SimReport`]).
//!
//! Key decision: this crate does not know the simulator, so the run's counts
//! are mirrored here field for field ([`RunStats`], [`LiveViolation`]); the
//! CLI converts the simulator's values with a destructuring pattern that stops
//! compiling when the simulator grows a field, so the mirror cannot drift.

use crate::model::AuditVerdict;
use crate::sim::{SimReport, render_sim_html};
use crate::story::Lead;
use serde::{Deserialize, Serialize};
use stampede_core::{EventKind, History, Invariant, Violation};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Version of the `summary.json` schema of one run.
pub const SUMMARY_VERSION: u32 = 1;

/// Nearest-rank percentiles of some durations, ms (simulated time for
/// order → confirmed, wall time for run times).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub n: usize,
    /// Median, ms.
    pub p50_ms: u64,
    /// 99th percentile, ms.
    pub p99_ms: u64,
    /// Largest, ms.
    pub max_ms: u64,
}

impl Latency {
    /// Percentiles of `samples` (nearest rank); all zero for none.
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

/// The recovery paths a run went through (the simulator's `Coverage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCoverage {
    /// PSP charges at or after the shop expired the order.
    pub late_payments: u64,
    /// Refund lines in the PSP's ledger.
    pub refunds: u64,
    /// Open intents of expired or cancelled orders, cancelled by the shop.
    pub intent_cancellations: u64,
    /// Payments the reconciler applied because no webhook had.
    pub reconciler_payments: u64,
}

/// Counts from a run (the simulator's `RunStats`, field for field and in its order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// Client requests recorded.
    pub requests: u64,
    /// Orders created.
    pub orders: u64,
    /// Orders per final status.
    pub orders_by_status: BTreeMap<String, u64>,
    /// History events.
    pub events: u64,
    /// Fault events applied (a crash and its restart are two; a plan counts them as one fault).
    pub faults: u64,
    /// Ledger charges.
    pub charges: u64,
    /// Ledger refunds.
    pub refunds: u64,
    /// HTTP requests made inside the world (shoppers, shop → PSP, webhooks, the attacker).
    pub http_requests: u64,
    /// Store calls the store host answered or began.
    #[serde(default)]
    pub store_calls: u64,
    #[serde(default)]
    /// The recovery paths taken.
    pub coverage: RunCoverage,
}

/// A safety violation seen while the run was going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveViolation {
    /// The invariant broken.
    pub invariant: Invariant,
    /// Simulated time it was first seen, ms.
    pub at_ms: u64,
    /// What was seen.
    pub detail: String,
}

/// `summary.json` of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Schema version ([`SUMMARY_VERSION`]).
    pub version: u32,
    /// Scenario name.
    pub scenario: String,
    /// The scenario file, as named on the command line.
    pub scenario_file: String,
    /// The same seed replays the same run exactly.
    pub seed: u64,
    /// Design, as `preset[+switch=value...]`.
    pub design: String,
    /// Every invariant held.
    pub passed: bool,
    /// One per invariant, in the checker's order.
    pub verdicts: Vec<AuditVerdict>,
    /// The first violation of each violated invariant, with its subject and
    /// evidence (history indices into trace.jsonl): where `stampede explain` starts.
    pub first_violations: Vec<Lead>,
    /// Safety violations as first seen during the run.
    pub live_violations: Vec<LiveViolation>,
    /// Why the world had not settled by the end (empty: it had); liveness was judged either way.
    pub unsettled: Vec<String>,
    /// Switches of the design whose mistake only a fault this scenario does
    /// not inject brings out: a pass does not clear them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexercised: Vec<String>,
    /// What the run did, counted.
    pub stats: RunStats,
    /// Order → confirmed, simulated time.
    pub confirmation_latency: Latency,
    /// SHA-256 of the history.
    pub trace_hash: String,
    /// The command that reproduces this run.
    pub repro: String,
    /// Wall time of the run, ms.
    pub wall_ms: u64,
}

impl RunSummary {
    /// The command that made the run, as its repro line names it: `replay`
    /// for a plan file, else `run`.
    fn verb(&self) -> &'static str {
        if self.repro.starts_with("stampede replay ") {
            "replay"
        } else {
            "run"
        }
    }
}

/// Evidence events described per violation example.
pub const EXAMPLE_EVIDENCE_MAX: usize = 4;

/// One violation as a verdict's example: its subject and detail, then its
/// first [`EXAMPLE_EVIDENCE_MAX`] evidence events of `history`, described.
pub fn violation_example(v: &Violation, history: &History) -> String {
    let evidence: Vec<String> = v
        .evidence
        .iter()
        .take(EXAMPLE_EVIDENCE_MAX)
        .map(|i| evidence_line(history, *i))
        .collect();
    if evidence.is_empty() {
        format!("{}: {}", v.subject, v.detail)
    } else {
        format!(
            "{}: {} [evidence: {}]",
            v.subject,
            v.detail,
            evidence.join("; ")
        )
    }
}

/// History event `index` as `#index at T: what`, its data as JSON where no
/// shorter form exists.
fn evidence_line(history: &History, index: usize) -> String {
    let Some(event) = history.events().get(index) else {
        return format!("#{index}");
    };
    let what = match &event.kind {
        EventKind::Transition(t) => format!("{} {} -> {} by {}", t.order, t.from, t.to, t.cause),
        EventKind::Ledger(l) => format!(
            "ledger {:?} {} on {} for {}",
            l.kind, l.amount, l.intent, l.order
        ),
        EventKind::Request { req, op, .. } => format!("request #{req} {}", json(op)),
        EventKind::Response { req, reply } => format!("response #{req} {}", json(reply)),
        EventKind::Stocked { sku, qty } => format!("stocked {qty} x {sku}"),
        other => json(other),
    };
    format!("#{index} at {}: {what}", event.at)
}

/// `v` as one line of JSON (empty if it cannot be).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The terminal summary of a run; `determinism_checked` says a second run
/// gave the same trace hash.
pub fn render_run_text(s: &RunSummary, determinism_checked: bool) -> String {
    let mut out = format!(
        "stampede {} {}  seed {}  design {}\n",
        s.verb(),
        s.scenario,
        s.seed,
        s.design
    );
    let st = &s.stats;
    let statuses: Vec<String> = st
        .orders_by_status
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    match statuses.is_empty() {
        true => {
            let _ = writeln!(out, "  {} orders", st.orders);
        }
        false => {
            let _ = writeln!(out, "  {} orders: {}", st.orders, statuses.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "  {} client requests, {} HTTP requests in all, {} store calls, {} charges, {} refunds, {} fault events",
        st.requests, st.http_requests, st.store_calls, st.charges, st.refunds, st.faults
    );
    let _ = writeln!(
        out,
        "  order -> confirmed (sim time): {}",
        latency_text(&s.confirmation_latency)
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
    for note in &s.unexercised {
        let _ = writeln!(out, "  not exercised: {note}");
    }
    let _ = writeln!(out, "\n  invariants");
    out.push_str(&crate::render_verdicts_text(&s.verdicts));
    out.push_str(&violations_text(s));
    let checked = if determinism_checked {
        " (same on a second run)"
    } else {
        ""
    };
    let _ = writeln!(out, "\n  trace {}{checked}", s.trace_hash);
    let _ = writeln!(out, "  repro: {}", s.repro);
    out
}

/// `p50 … ms, p99 … ms, max … ms (n=…)`, or that there is nothing to measure.
fn latency_text(l: &Latency) -> String {
    if l.n == 0 {
        return "no order was confirmed".to_string();
    }
    format!(
        "p50 {} ms, p99 {} ms, max {} ms (n={})",
        l.p50_ms, l.p99_ms, l.max_ms, l.n
    )
}

/// Each violated invariant's examples, then the violations first seen live.
fn violations_text(s: &RunSummary) -> String {
    let mut out = String::new();
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
    out
}

/// `report.md` of a run: the verdict, the verdict table, each violated
/// invariant's examples, the counts and the repro line.
pub fn render_run_markdown(s: &RunSummary) -> String {
    let mut md = format!(
        "# {} — seed {} — design {}\n\n",
        s.scenario, s.seed, s.design
    );
    let verdict = if s.passed {
        "All invariants hold."
    } else {
        "Invariants violated."
    };
    let _ = writeln!(md, "**{verdict}**\n");
    for note in &s.unexercised {
        let _ = writeln!(md, "- Not exercised: {note}");
    }
    if !s.unexercised.is_empty() {
        md.push('\n');
    }
    md.push_str(&crate::render_verdicts_markdown(&s.verdicts, false));
    for v in s.verdicts.iter().filter(|v| !v.examples.is_empty()) {
        let _ = writeln!(md, "\n## {}\n", v.invariant);
        for e in &v.examples {
            let _ = writeln!(md, "- {e}");
        }
    }
    let _ = writeln!(
        md,
        "\n## Run\n\n- orders: {} ({:?})\n- order → confirmed, sim time: {}\n- trace hash: `{}`\n- reproduce: `{}`",
        s.stats.orders,
        s.stats.orders_by_status,
        latency_text(&s.confirmation_latency),
        s.trace_hash,
        s.repro
    );
    md
}

/// `report.html` of a run: its facts (the summary's counts among them),
/// verdicts, first violations and charts over simulated time from `history`.
pub fn render_run_html(s: &RunSummary, history: &History) -> String {
    let mut facts = vec![
        (
            "scenario".to_string(),
            format!("{} ({})", s.scenario, s.scenario_file),
        ),
        ("seed".into(), s.seed.to_string()),
        ("design".into(), s.design.clone()),
    ];
    if let Ok(serde_json::Value::Object(stats)) = serde_json::to_value(&s.stats) {
        facts.extend(
            stats
                .into_iter()
                .map(|(k, v)| (k.replace('_', " "), v.to_string())),
        );
    }
    facts.push((
        "order → confirmed (simulated)".into(),
        latency_text(&s.confirmation_latency),
    ));
    facts.push(("trace hash".into(), s.trace_hash.clone()));
    facts.push(("wall time".into(), format!("{} ms", s.wall_ms)));
    let report = SimReport::new(
        format!(
            "stampede {} {} seed {}, design {}",
            s.verb(),
            s.scenario,
            s.seed,
            s.design
        ),
        s.passed,
        facts,
        s.repro.clone(),
        s.verdicts.clone(),
        s.first_violations.clone(),
        history,
    );
    render_sim_html(&report)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_run_that_confirmed_nothing_says_so_instead_of_zero_percentiles() {
        // Proves: no samples read as "no order was confirmed"; one sample gives its figures.
        assert_eq!(latency_text(&Latency::default()), "no order was confirmed");
        let one = Latency {
            n: 1,
            p50_ms: 7,
            p99_ms: 7,
            max_ms: 7,
        };
        assert_eq!(latency_text(&one), "p50 7 ms, p99 7 ms, max 7 ms (n=1)");
    }

    use super::*;

    // Proves nearest-rank percentiles: p50 of 1..=10 is 5, p99 is 10, and no samples read 0.
    #[test]
    fn latency_is_nearest_rank() {
        let l = Latency::of((1..=10).rev().collect());
        assert_eq!((l.n, l.p50_ms, l.p99_ms, l.max_ms), (10, 5, 10, 10));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    // Proves a violation's example names its subject and detail, describes its evidence
    // events with their index and time, at most EXAMPLE_EVIDENCE_MAX of them, and marks an
    // index the history lacks rather than failing.
    #[test]
    fn examples_describe_their_evidence() {
        use stampede_core::{Cause, Millis, OrderId, OrderStatus, Subject, Transition};
        let mut h = History::new();
        h.push(
            Millis(1_250),
            EventKind::Transition(Transition {
                order: OrderId(3),
                from: OrderStatus::Created,
                to: OrderStatus::PaymentPending,
                at: Millis(1_250),
                cause: Cause::Customer,
            }),
        );
        let v = Violation {
            subject: Subject::Order(OrderId(3)),
            detail: "charged twice".into(),
            evidence: vec![0, 99, 0, 0, 0],
        };
        let line = violation_example(&v, &h);
        assert!(line.starts_with("order "), "{line}");
        assert!(
            line.contains(": charged twice [evidence: #0 at 1.250s: "),
            "{line}"
        );
        assert!(line.contains(" by customer; #99; #0"), "{line}");
        assert_eq!(line.matches("#0 at").count(), EXAMPLE_EVIDENCE_MAX - 1);
        let none = Violation {
            evidence: Vec::new(),
            ..v
        };
        assert!(violation_example(&none, &h).ends_with(": charged twice"));
    }

    fn summary() -> RunSummary {
        RunSummary {
            version: SUMMARY_VERSION,
            scenario: "tiny".into(),
            scenario_file: "tiny.toml".into(),
            seed: 7,
            design: "seed-repo".into(),
            passed: false,
            verdicts: vec![AuditVerdict {
                invariant: "one_order_per_key".into(),
                outcome: "violated".into(),
                violations: 1,
                examples: vec!["key k1: two orders".into()],
                reason: None,
                lost_to_faults: 0,
            }],
            first_violations: Vec::new(),
            live_violations: vec![LiveViolation {
                invariant: Invariant::OneOrderPerKey,
                at_ms: 1_500,
                detail: "second order".into(),
            }],
            unsettled: Vec::new(),
            unexercised: Vec::new(),
            stats: RunStats::default(),
            confirmation_latency: Latency::of(vec![40, 60]),
            trace_hash: "abc".into(),
            repro: "stampede run tiny.toml --seed 7 --design seed-repo".into(),
            wall_ms: 12,
        }
    }

    // Proves the terminal and Markdown say the verdict, its example, the live sighting, the
    // latency and the repro line; and summary.json reads back to the same summary.
    #[test]
    fn text_markdown_and_json_carry_the_run() {
        let s = summary();
        let text = render_run_text(&s, true);
        assert!(text.contains("✗ one_order_per_key:\n        key k1: two orders"));
        assert!(text.contains("first seen live: one_order_per_key at 1.500 s: second order"));
        assert!(text.contains("p50 40 ms, p99 60 ms, max 60 ms (n=2)"));
        assert!(text.contains("trace abc (same on a second run)"));
        assert!(text.ends_with("repro: stampede run tiny.toml --seed 7 --design seed-repo\n"));
        let md = render_run_markdown(&s);
        assert!(md.starts_with("# tiny — seed 7 — design seed-repo\n\n**Invariants violated.**"));
        assert!(md.contains("\n## one_order_per_key\n\n- key k1: two orders\n"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RunSummary>(&json).unwrap(), s);
        assert!(text.starts_with("stampede run tiny  seed 7"), "{text}");
        // A replayed plan is headed by the command that made it.
        let replayed = RunSummary {
            repro: "stampede replay plan.json".into(),
            ..summary()
        };
        let text = render_run_text(&replayed, false);
        assert!(text.starts_with("stampede replay tiny  seed 7"), "{text}");
    }
}
