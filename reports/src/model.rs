//! The report model: everything a load run measured, as plain serialisable
//! data. `report.json` is this, versioned; every renderer reads only this, so
//! `stampede report <dir>` can re-render a run without re-running it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `report.json` schema.
pub const REPORT_VERSION: u32 = 1;

/// The end-to-end pseudo-endpoint: from the order's creation to its confirmation.
/// It counts orders, not requests, so request totals leave it out.
pub const ORDER_TO_CONFIRMED: &str = "order → confirmed";

/// The decision pseudo-endpoint: from the order's first placement attempt to
/// the buyer being shown its payment offer (how long a buyer waits for the
/// shop to decide, shedding and waitlists included). It counts orders too.
pub const ORDER_TO_OFFERED: &str = "order → offered";

/// Whether `name` is one of the per-order measures ([`ORDER_TO_OFFERED`],
/// [`ORDER_TO_CONFIRMED`]) rather than an endpoint's requests.
pub fn is_order_measure(name: &str) -> bool {
    name == ORDER_TO_OFFERED || name == ORDER_TO_CONFIRMED
}

/// One load run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Schema version ([`REPORT_VERSION`]).
    pub version: u32,
    /// A title for headings, e.g. `load reference 500/s for 20s`.
    pub title: String,
    /// The shop's base URL.
    pub target: String,
    /// The design the shop ran (when Stampede started it), else `unknown`.
    pub design: String,
    /// How load was offered.
    pub model: LoadModel,
    /// Planned duration of the load phase, ms.
    pub duration_ms: u64,
    /// Width of one timeline interval, ms.
    pub interval_ms: u64,
    /// Per endpoint (`METHOD /path/pattern`), plus `order → confirmed`.
    pub endpoints: Vec<EndpointLatency>,
    /// The run over time, one entry per interval from the start of load.
    pub timeline: Vec<Interval>,
    /// The real-traffic audit: the core's checker on what really happened.
    pub audit: Vec<AuditVerdict>,
    /// Why the audit was not done at all, when it was not (a shard of a
    /// sharded load defers it to `stampede report merge`, which judges every
    /// shard's evidence together; a merge without the shop cannot judge it).
    /// A report with one does not pass: "not judged" is never a silent pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_not_done: Option<String>,
    /// SLO thresholds asked for, and whether each held.
    pub thresholds: Vec<ThresholdResult>,
    /// Files written beside the report (histogram logs, goose's report), relative names.
    pub files: Vec<String>,
    /// Free-form remarks (e.g. the loadgen fell behind its schedule).
    pub notes: Vec<String>,
}

/// How load was offered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LoadModel {
    /// Goose users, each running shopper journeys back to back.
    Closed {
        /// Concurrent users.
        users: u32,
    },
    /// Journeys started on a fixed schedule whatever the responses do (wrk2-style).
    Open {
        /// Journeys started per second.
        rate_per_sec: f64,
        /// Most journeys in flight at once (goose users executing the schedule).
        max_in_flight: u32,
    },
}

/// How an endpoint's headline latency was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// From the moment the request was sent (closed loop, uncorrected).
    Raw,
    /// Raw, corrected for coordinated omission with HdrHistogram's
    /// expected-interval correction (each user's own expected interval).
    Corrected,
    /// From the moment the request should have been sent (open loop): its
    /// journey's slot in the schedule for the first request, the previous
    /// answer plus the planned pause for later ones.
    IntendedStart,
}

/// Latency summary of one distribution, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: u64,
}

/// One point of a percentile spectrum: `percentile` in `[0, 100)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectrumPoint {
    /// Percentile, e.g. 99.9.
    pub percentile: f64,
    /// Latency at it, µs.
    pub value_us: u64,
}

/// One endpoint's latencies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointLatency {
    /// `POST /v1/orders`, `GET /v1/orders/{id}`, or `order → confirmed`.
    pub name: String,
    /// Requests made (for `order → confirmed`: orders that reached a final state).
    pub requests: u64,
    /// Requests that failed (transport error or unexpected status).
    pub errors: u64,
    /// Requests the shop shed (answered 429, to be retried later): not errors.
    #[serde(default)]
    pub shed: u64,
    /// What `headline` measures.
    pub basis: Basis,
    /// The honest numbers: corrected (closed loop) or from intended start (open loop).
    pub headline: Percentiles,
    /// As sent, uncorrected (equal to `headline` when the basis is raw).
    pub raw: Percentiles,
    /// The headline distribution's percentile spectrum, for the chart.
    pub spectrum: Vec<SpectrumPoint>,
    /// The raw distribution's spectrum (drawn dashed beside the headline when they differ).
    pub raw_spectrum: Vec<SpectrumPoint>,
}

/// One timeline interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Start, ms since load began.
    pub start_ms: u64,
    /// Requests completed in the interval.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Median latency of requests completed in it (headline basis), µs.
    pub p50_us: u64,
    /// 99th percentile of the same, µs.
    pub p99_us: u64,
    /// Orders per status at the interval's end, as the loadgen last saw them.
    pub orders_by_status: BTreeMap<String, u64>,
}

/// One invariant's verdict on the real run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerdict {
    /// Invariant name, e.g. `no_oversell`.
    pub invariant: String,
    /// `holds`, `violated` or `not_judged`.
    pub outcome: String,
    /// Instances.
    pub violations: usize,
    /// The first few, described.
    pub examples: Vec<String>,
    /// Why it was not judged (only with `not_judged`: the user opted out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sales the scenario allowed its faults to cost (unserved willing buyers
    /// whose journey overlapped a declared fault window): counted, not violations.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_to_faults: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One SLO threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The rule as written, e.g. `p99<50ms for POST /v1/orders`.
    pub rule: String,
    /// What was measured, e.g. `p99 = 12.3 ms`.
    pub measured: String,
    /// Whether it held.
    pub passed: bool,
}

impl LoadReport {
    /// Whether the audit was done, every audited invariant held and every
    /// threshold passed.
    pub fn passed(&self) -> bool {
        self.audit_not_done.is_none()
            && self.audit.iter().all(|a| a.outcome != "violated")
            && self.thresholds.iter().all(|t| t.passed)
    }

    /// The endpoint called `name`, if measured.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointLatency> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Requests made and of them failed, over every real endpoint
    /// (the per-order measures count orders, so they are left out).
    pub fn request_totals(&self) -> (u64, u64) {
        self.endpoints
            .iter()
            .filter(|e| !is_order_measure(&e.name))
            .fold((0, 0), |(requests, errors), e| {
                (
                    requests.saturating_add(e.requests),
                    errors.saturating_add(e.errors),
                )
            })
    }

    /// Requests the shop shed (429), over every endpoint.
    pub fn shed_total(&self) -> u64 {
        self.endpoints.iter().map(|e| e.shed).sum()
    }

    /// Every order status seen anywhere in the timeline, sorted.
    pub fn order_statuses(&self) -> Vec<&str> {
        let seen: std::collections::BTreeSet<&str> = self
            .timeline
            .iter()
            .flat_map(|i| i.orders_by_status.keys().map(String::as_str))
            .collect();
        seen.into_iter().collect()
    }
}
