//! The report of one simulated run (`stampede run` and `replay` write it as
//! `report.html`): the run's facts, the verdicts with each violated
//! invariant's first evidence placed in simulated time, and charts over
//! simulated time — orders by status and client traffic, every fault drawn
//! as a band — and the order → confirmed spectrum.
//!
//! Key decision: the charts are computed from the history alone (the same
//! `trace.jsonl` a reader can replay), bucketed in fixed intervals, so the
//! page says nothing the trace does not.

use crate::format::escape_html;
use crate::model::AuditVerdict;
use crate::plot::{Chart, Series, XAxis, colour, percentile_x};
use crate::story::Lead;
use crate::{html, sections};
use stampede_core::{ClientReply, Event, EventKind, History, OrderId, OrderStatus, Transition};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Width of one timeline interval, ms of simulated time.
pub const SIM_INTERVAL_MS: u64 = 100;
/// Most intervals a report keeps (beyond, intervals widen).
pub const SIM_INTERVALS_MAX: u64 = 2_000;
/// Most evidence events listed per violated invariant.
const EVIDENCE_SHOWN_MAX: usize = 6;

/// A fault of the run: its text and when it lasted (a fault with no stated
/// length, such as a restart, lasts an instant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultBand {
    /// As the history recorded it, e.g. `crash db for 2000 ms`.
    pub what: String,
    /// From, ms of simulated time.
    pub from_ms: u64,
    /// Until, ms.
    pub until_ms: u64,
}

/// What one interval of simulated time held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimInterval {
    /// Orders per status at the interval's end.
    pub orders_by_status: BTreeMap<String, u64>,
    /// Client requests sent in it.
    pub requests: u64,
    /// Client requests answered with a refusal (4xx/5xx) or not at all in it.
    pub refused: u64,
    /// Store writes the history shows in it: order transitions and job events
    /// (the store's other writes leave no timestamped trace).
    pub store_writes: u64,
}

/// One simulated run, as its report shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// e.g. `stampede run flash-sale seed 1, design seed-repo`.
    pub title: String,
    /// Every invariant held.
    pub passed: bool,
    /// Label and value rows: scenario, seed, design, counts, trace hash.
    pub facts: Vec<(String, String)>,
    /// The command that reproduces the run.
    pub repro: String,
    /// One verdict per invariant.
    pub verdicts: Vec<AuditVerdict>,
    /// Each violated invariant's first violation.
    pub leads: Vec<Lead>,
    /// The times and words of the events each lead cites.
    pub evidence: Vec<Vec<(u64, String)>>,
    /// Interval width, ms.
    pub interval_ms: u64,
    /// The run, interval by interval.
    pub timeline: Vec<SimInterval>,
    /// The faults.
    pub faults: Vec<FaultBand>,
    /// Each confirmed order's time from acknowledgement to confirmation, ms, sorted.
    pub confirmation_ms: Vec<u64>,
}

/// `for N ms` in a fault's text: its length.
fn fault_length_ms(what: &str) -> u64 {
    what.split(" for ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The interval width for a run whose last event is at `end_ms`:
/// [`SIM_INTERVAL_MS`], widened so that at most [`SIM_INTERVALS_MAX`]
/// intervals (plus the end's own) cover the run.
fn interval_ms_for(end_ms: u64) -> u64 {
    SIM_INTERVAL_MS.max(end_ms.div_ceil(SIM_INTERVALS_MAX))
}

/// The history read once in time order: what the timeline, the faults and
/// the confirmation times hold so far.
struct Walk {
    interval_ms: u64,
    timeline: Vec<SimInterval>,
    /// Intervals before this one already hold their orders per status.
    filled: usize,
    status: BTreeMap<OrderId, OrderStatus>,
    /// Orders per status now (a status once seen stays, at zero).
    counts: BTreeMap<String, u64>,
    /// When each order was first acknowledged, ms.
    acked: BTreeMap<OrderId, u64>,
    confirmation_ms: Vec<u64>,
    faults: Vec<FaultBand>,
}

impl Walk {
    fn new(interval_ms: u64, slots: usize) -> Walk {
        Walk {
            interval_ms,
            timeline: vec![SimInterval::default(); slots],
            filled: 0,
            status: BTreeMap::new(),
            counts: BTreeMap::new(),
            acked: BTreeMap::new(),
            confirmation_ms: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// Closes every interval before `slot` with the orders per status as they are now.
    fn fill_until(&mut self, slot: usize) {
        while self.filled < slot {
            self.timeline[self.filled].orders_by_status = self.counts.clone();
            self.filled += 1;
        }
    }

    /// Counts `e`, no earlier than every event counted before it.
    fn step(&mut self, e: &Event) {
        let slot = (e.at.0 / self.interval_ms) as usize;
        self.fill_until(slot);
        match &e.kind {
            EventKind::Request { .. } => self.timeline[slot].requests += 1,
            EventKind::Response { reply, .. } => self.reply(slot, e.at.0, reply),
            EventKind::Transition(t) => {
                self.timeline[slot].store_writes += 1;
                self.transition(e.at.0, t);
            }
            EventKind::Job { .. } => self.timeline[slot].store_writes += 1,
            EventKind::Fault { what } => self.faults.push(FaultBand {
                what: what.clone(),
                from_ms: e.at.0,
                until_ms: e.at.0.saturating_add(fault_length_ms(what)),
            }),
            _ => {}
        }
    }

    /// A reply to a client: a refusal counts in its interval; an order is
    /// created when first acknowledged.
    fn reply(&mut self, slot: usize, at_ms: u64, reply: &ClientReply) {
        match reply {
            ClientReply::Refused { .. } | ClientReply::NoResponse { .. } => {
                self.timeline[slot].refused += 1;
            }
            ClientReply::OrderAccepted { order, .. } => {
                self.acked.entry(*order).or_insert(at_ms);
                if !self.status.contains_key(order) {
                    self.status.insert(*order, OrderStatus::Created);
                    *self
                        .counts
                        .entry(OrderStatus::Created.as_str().to_string())
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }

    /// An order moves from its status to `t.to`; a confirmation's time
    /// counts from the order's acknowledgement.
    fn transition(&mut self, at_ms: u64, t: &Transition) {
        if let Some(old) = self.status.insert(t.order, t.to) {
            let n = self.counts.entry(old.as_str().to_string()).or_default();
            *n = n.saturating_sub(1);
        }
        *self.counts.entry(t.to.as_str().to_string()).or_default() += 1;
        if t.to == OrderStatus::Confirmed
            && let Some(&at) = self.acked.get(&t.order)
        {
            self.confirmation_ms.push(at_ms.saturating_sub(at));
        }
    }

    /// The timeline with every interval closed, the faults, and the sorted confirmation times.
    fn finish(mut self) -> (Vec<SimInterval>, Vec<FaultBand>, Vec<u64>) {
        self.fill_until(self.timeline.len());
        self.confirmation_ms.sort_unstable();
        (self.timeline, self.faults, self.confirmation_ms)
    }
}

/// The times and words of the first [`EVIDENCE_SHOWN_MAX`] events each lead cites.
fn evidence_of(leads: &[Lead], events: &[Event]) -> Vec<Vec<(u64, String)>> {
    leads
        .iter()
        .map(|l| {
            l.evidence
                .iter()
                .filter_map(|&i| events.get(i).map(|e| (e.at.0, crate::story::say(&e.kind))))
                .take(EVIDENCE_SHOWN_MAX)
                .collect()
        })
        .collect()
}

impl SimReport {
    /// The report of a run whose history is `history`; the rest as the run's summary has it.
    pub fn new(
        title: String,
        passed: bool,
        facts: Vec<(String, String)>,
        repro: String,
        verdicts: Vec<AuditVerdict>,
        leads: Vec<Lead>,
        history: &History,
    ) -> SimReport {
        let events = history.events();
        let end = events.iter().map(|e| e.at.0).max().unwrap_or(0);
        let interval_ms = interval_ms_for(end);
        let mut walk = Walk::new(interval_ms, (end / interval_ms + 1) as usize);
        // In time order: a history may append some lines late (the PSP's ledger).
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| (events[i].at, i));
        for i in order {
            walk.step(&events[i]);
        }
        let (timeline, faults, confirmation_ms) = walk.finish();
        SimReport {
            title,
            passed,
            facts,
            repro,
            verdicts,
            evidence: evidence_of(&leads, events),
            leads,
            interval_ms,
            timeline,
            faults,
            confirmation_ms,
        }
    }

    /// The fault bands, in seconds.
    fn bands(&self) -> Vec<(f64, f64)> {
        self.faults
            .iter()
            .map(|f| (f.from_ms as f64 / 1000.0, f.until_ms as f64 / 1000.0))
            .collect()
    }

    /// Seconds of simulated time at each interval's end.
    fn ends(&self) -> impl Iterator<Item = f64> + '_ {
        (1..=self.timeline.len()).map(|n| (n as u64 * self.interval_ms) as f64 / 1000.0)
    }
}

const SIM_SECONDS: &str = "simulated seconds";
const CHART_SIZE: (u32, u32) = (640, 320);

fn chart(y_desc: &str, series: Vec<Series>, r: &SimReport) -> Chart {
    Chart {
        x: XAxis::Seconds,
        y_desc: y_desc.into(),
        y_log: false,
        series,
        size: CHART_SIZE,
        bands: r.bands(),
        seconds_since: SIM_SECONDS,
    }
}

/// Orders per status over simulated time, one line per status seen.
fn orders_chart(r: &SimReport) -> Chart {
    let mut statuses: Vec<&String> = r
        .timeline
        .iter()
        .flat_map(|i| i.orders_by_status.keys())
        .collect();
    statuses.sort();
    statuses.dedup();
    let series = statuses
        .iter()
        .enumerate()
        .map(|(k, status)| Series {
            label: (*status).clone(),
            colour: colour(k),
            dashed: false,
            points: r
                .ends()
                .zip(&r.timeline)
                .map(|(x, i)| {
                    (
                        x,
                        i.orders_by_status.get(*status).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    chart("orders", series, r)
}

/// Client requests, and those refused or unanswered, per simulated second.
fn traffic_chart(r: &SimReport) -> Chart {
    let per_second = 1000.0 / r.interval_ms as f64;
    let line = |label: &str, k: usize, f: &dyn Fn(&SimInterval) -> u64| Series {
        label: label.into(),
        colour: colour(k),
        dashed: false,
        points: r
            .ends()
            .zip(&r.timeline)
            .map(|(x, i)| (x, f(i) as f64 * per_second))
            .collect(),
    };
    let series = vec![
        line("client requests", 0, &|i| i.requests),
        line("refused or unanswered", 3, &|i| i.refused),
        line("store writes (transitions, job events)", 2, &|i| {
            i.store_writes
        }),
    ];
    chart("per simulated second", series, r)
}

/// Order → confirmed by percentile, simulated ms.
fn spectrum_chart(r: &SimReport) -> Chart {
    let n = r.confirmation_ms.len();
    let points = r
        .confirmation_ms
        .iter()
        .enumerate()
        .map(|(k, &ms)| (percentile_x(100.0 * k as f64 / n as f64), ms as f64))
        .collect();
    Chart {
        x: XAxis::Percentile,
        y_desc: "order → confirmed, simulated ms".into(),
        y_log: true,
        series: vec![Series {
            label: "order → confirmed".into(),
            colour: colour(2),
            dashed: false,
            points,
        }],
        size: CHART_SIZE,
        bands: Vec::new(),
        seconds_since: SIM_SECONDS,
    }
}

/// `1.105s`.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// `r` as one self-contained HTML page: verdict, facts and repro line, the
/// verdict table, each violated invariant's first violation with its
/// evidence in simulated time, the faults, and the charts.
pub fn render_sim_html(r: &SimReport) -> String {
    let mut body = String::new();
    body.push_str(&html::header(
        &r.title,
        if r.passed { "PASS" } else { "FAIL" },
    ));
    write_facts(&mut body, r);
    body.push_str("<h2>Verdicts</h2>\n");
    body.push_str(&sections::verdicts(&r.verdicts, false).to_html("verdicts"));
    write_first_violations(&mut body, r);
    write_faults(&mut body, r);
    write_charts(&mut body, r);
    html::page(&r.title, &body)
}

/// The run's facts and the command that reproduces it, as a table.
fn write_facts(body: &mut String, r: &SimReport) {
    body.push_str("<h2>Run</h2>\n<table class=\"summary\">\n");
    for (label, value) in &r.facts {
        let _ = writeln!(
            body,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value)
        );
    }
    let _ = writeln!(
        body,
        "<tr><th>reproduce</th><td><code>{}</code></td></tr>\n</table>",
        escape_html(&r.repro)
    );
}

/// Each violated invariant's first violation, its evidence in simulated
/// time, and the command that tells its whole story; nothing when all held.
fn write_first_violations(body: &mut String, r: &SimReport) {
    if r.leads.is_empty() {
        return;
    }
    body.push_str("<h2>First violations</h2>\n");
    for (lead, evidence) in r.leads.iter().zip(&r.evidence) {
        let _ = writeln!(
            body,
            "<h3>{}: {}</h3>\n<p>{}</p>\n<ul>",
            escape_html(&lead.invariant),
            escape_html(&lead.subject.to_string()),
            escape_html(&lead.detail)
        );
        for (at, what) in evidence {
            let _ = writeln!(
                body,
                "<li><code>{}</code> {}</li>",
                seconds(*at),
                escape_html(what)
            );
        }
        let _ = writeln!(
            body,
            "</ul>\n<p class=\"muted\">The whole story: <code>stampede explain &lt;this folder&gt; --invariant {}</code></p>",
            escape_html(&lead.invariant)
        );
    }
}

/// The faults as a table of when each lasted; nothing in a run without faults.
fn write_faults(body: &mut String, r: &SimReport) {
    if r.faults.is_empty() {
        return;
    }
    body.push_str("<h2>Faults</h2>\n<table>\n<thead><tr><th>from</th><th>until</th><th>fault</th></tr></thead>\n");
    for f in &r.faults {
        let _ = writeln!(
            body,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            seconds(f.from_ms),
            seconds(f.until_ms),
            escape_html(&f.what)
        );
    }
    body.push_str("</table>\n");
}

/// The three charts over simulated time, faults shaded.
fn write_charts(body: &mut String, r: &SimReport) {
    body.push_str("<h2>Over simulated time</h2>\n<p class=\"muted\">Shaded: faults.</p>\n<div class=\"charts\">\n");
    body.push_str(&html::figure(
        "Orders by status",
        &orders_chart(r),
        "no order changed status",
    ));
    body.push_str(&html::figure(
        "Client and store traffic",
        &traffic_chart(r),
        "no client requests",
    ));
    body.push_str(&html::figure(
        "Order → confirmed by percentile",
        &spectrum_chart(r),
        "no order was confirmed",
    ));
    body.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_core::{Cause, JobId, Millis, Subject, Transition};

    /// Order 1 acknowledged at 150 ms, reserved at 250 ms, confirmed at 1,150 ms; a 2 s
    /// db crash at 500 ms and its restart; one refused request at 550 ms.
    fn run() -> History {
        let mut h = History::new();
        let op = stampede_core::ClientOp::GetOrder { order: OrderId(1) };
        let moved = |from, to, at| {
            EventKind::Transition(Transition {
                order: OrderId(1),
                from,
                to,
                at: Millis(at),
                cause: Cause::Worker { job: JobId(1) },
            })
        };
        h.push(
            Millis(120),
            EventKind::Request {
                req: 1,
                op: op.clone(),
                fingerprint: None,
            },
        );
        let accepted = ClientReply::OrderAccepted {
            order: OrderId(1),
            replayed: false,
        };
        h.push(
            Millis(150),
            EventKind::Response {
                req: 1,
                reply: accepted,
            },
        );
        h.push(
            Millis(250),
            moved(OrderStatus::Created, OrderStatus::PaymentPending, 250),
        );
        h.push(
            Millis(260),
            EventKind::Job {
                kind: stampede_core::JobKind::CreateIntent,
                order: OrderId(1),
                what: stampede_core::JobEvent::Acked,
            },
        );
        h.push(
            Millis(500),
            EventKind::Fault {
                what: "crash db for 2000 ms".into(),
            },
        );
        h.push(
            Millis(540),
            EventKind::Request {
                req: 2,
                op,
                fingerprint: None,
            },
        );
        let refused = ClientReply::Refused {
            status: 503,
            problem: "unavailable".into(),
        };
        h.push(
            Millis(550),
            EventKind::Response {
                req: 2,
                reply: refused,
            },
        );
        h.push(
            Millis(1_150),
            moved(OrderStatus::PaymentPending, OrderStatus::Confirmed, 1_150),
        );
        h.push(
            Millis(2_500),
            EventKind::Fault {
                what: "restart db".into(),
            },
        );
        h
    }

    fn report(history: &History) -> SimReport {
        let lead = Lead {
            invariant: "eventual_confirmation".into(),
            subject: Subject::Order(OrderId(1)),
            detail: "late <b>".into(),
            evidence: vec![2],
        };
        SimReport::new(
            "stampede run tiny seed 1".into(),
            false,
            vec![("seed".into(), "1".into())],
            "stampede run tiny.toml --seed 1".into(),
            Vec::new(),
            vec![lead],
            history,
        )
    }

    #[test]
    fn the_timeline_counts_orders_traffic_and_faults_by_simulated_time() {
        // Proves: each 100 ms interval holds the orders per status at its end (an order is
        // created when first acknowledged), the client requests sent and the refusals in it,
        // the store writes the history shows (transitions and job events);
        // a fault "for N ms" is a band of N ms, one without a length an instant; order →
        // confirmed runs from the acknowledgement; the lead's evidence is placed in time.
        let r = report(&run());
        assert_eq!(r.interval_ms, SIM_INTERVAL_MS);
        assert_eq!(r.timeline.len(), 26, "0..=2,500 ms in 100 ms intervals");
        let at = |slot: usize, status: &str| r.timeline[slot].orders_by_status.get(status).copied();
        assert_eq!(at(1, "created"), Some(1));
        assert_eq!(at(2, "created"), Some(0));
        assert_eq!(at(2, "payment_pending"), Some(1));
        assert_eq!(at(11, "confirmed"), Some(1));
        assert_eq!(at(11, "payment_pending"), Some(0));
        assert_eq!((r.timeline[1].requests, r.timeline[5].requests), (1, 1));
        assert_eq!((r.timeline[5].refused, r.timeline[1].refused), (1, 0));
        let writes: Vec<u64> = r.timeline.iter().map(|i| i.store_writes).collect();
        assert_eq!(
            (writes[1], writes[2], writes[11]),
            (0, 2, 1),
            "a transition, a job event"
        );
        assert_eq!(writes.iter().sum::<u64>(), 3);
        let bands: Vec<(u64, u64)> = r.faults.iter().map(|f| (f.from_ms, f.until_ms)).collect();
        assert_eq!(bands, [(500, 2_500), (2_500, 2_500)]);
        assert_eq!(r.confirmation_ms, [1_000]);
        assert_eq!(r.evidence[0].len(), 1);
        assert_eq!(r.evidence[0][0].0, 250);
    }

    #[test]
    fn the_charts_plot_the_timeline_in_simulated_seconds() {
        // Proves what each chart plots: orders per status at each interval's end (x in
        // seconds), requests and refusals per simulated second (one in a 100 ms interval is
        // 10/s), faults as bands in seconds, and order → confirmed at its percentile position.
        let r = report(&run());
        let orders = orders_chart(&r);
        assert_eq!(orders.bands, [(0.5, 2.5), (2.5, 2.5)]);
        assert_eq!(orders.seconds_since, SIM_SECONDS);
        let confirmed = orders
            .series
            .iter()
            .find(|s| s.label == "confirmed")
            .unwrap();
        assert_eq!(confirmed.points.len(), r.timeline.len());
        assert_eq!(confirmed.points[10], (1.1, 0.0));
        assert_eq!(confirmed.points[11], (1.2, 1.0));
        let traffic = traffic_chart(&r);
        assert_eq!(traffic.bands, orders.bands);
        let (requests, refused) = (&traffic.series[0].points, &traffic.series[1].points);
        assert_eq!((requests[1], requests[2]), ((0.2, 10.0), (0.3, 0.0)));
        assert_eq!((refused[5], refused[1]), ((0.6, 10.0), (0.2, 0.0)));
        let writes = &traffic.series[2].points;
        assert_eq!((writes[2], writes[11]), ((0.3, 20.0), (1.2, 10.0)));
        let spectrum = spectrum_chart(&r);
        assert_eq!(spectrum.series[0].points, [(0.0, 1_000.0)]);
        let two = SimReport {
            confirmation_ms: vec![10, 20],
            ..r
        };
        let points = &spectrum_chart(&two).series[0].points;
        assert_eq!(points[1], (percentile_x(50.0), 20.0));
    }

    #[test]
    fn intervals_widen_past_their_bound() {
        // Proves: a run longer than SIM_INTERVALS_MAX intervals of 100 ms gets wider ones, so
        // the timeline never holds more than the bound (plus the end's own interval).
        let mut h = History::new();
        let end = SIM_INTERVAL_MS * SIM_INTERVALS_MAX * 3;
        h.push(
            Millis(end),
            EventKind::Fault {
                what: "late".into(),
            },
        );
        let r = report(&h);
        assert_eq!(r.interval_ms, 300);
        assert!(r.timeline.len() as u64 <= SIM_INTERVALS_MAX + 1);
    }

    #[test]
    fn the_page_stands_alone_and_escapes_what_it_quotes() {
        // Proves: the page has the verdict, the repro line, the first violation with its
        // evidence time, the fault table and three inline charts, no script and no URL, and
        // text from the run is escaped.
        let html = render_sim_html(&report(&run()));
        assert!(html.contains("<span class=\"verdict fail\">FAIL</span>"));
        assert!(html.contains("<code>stampede run tiny.toml --seed 1</code>"));
        assert!(html.contains("<h3>eventual_confirmation: order ord_1</h3>"));
        assert!(html.contains("late &lt;b&gt;") && !html.contains("late <b>"));
        assert!(html.contains("<code>0.250s</code> ord_1 created → payment_pending"));
        assert!(html.contains("<td>crash db for 2000 ms</td>"));
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
    }
}
