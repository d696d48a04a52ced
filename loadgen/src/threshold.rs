//! SLO thresholds: `p99<50ms for POST /v1/orders`, `error_rate<1%`,
//! `throughput>=400/s`. A violated one makes `stampede load` exit non-zero.
//!
//! Grammar: `METRIC OP VALUE[UNIT] [for ENDPOINT]` where METRIC is `p50`,
//! `p90`, `p99`, `p99.9`, `max` or `mean` (latency; units `us`, `ms`, `s`),
//! `error_rate` (`%` or a fraction) or `throughput` (`/s`); OP is `<`, `<=`,
//! `>` or `>=` (latencies and error rates only `<`, `<=`); ENDPOINT is an
//! endpoint name as the report shows it (default: every request; latency
//! thresholds then use the slowest endpoint). A threshold that holds whatever
//! happens (`throughput>=0/s`, `error_rate<=100%`) or can never hold
//! (`p99<0ms`) is refused.
//!
//! A threshold judged over zero requests fails: "no errors among no
//! requests" is not evidence that the shop meets its SLO — also for a
//! journey's endpoint the run never sent to.

use stampede_reports::{EndpointLatency, LoadReport, Percentiles, ThresholdResult};

/// A parsed threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// As written.
    pub rule: String,
    metric: Metric,
    op: Op,
    /// In µs for latencies, a fraction for error rates, per second for throughput.
    limit: f64,
    endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    Latency(LatencyStat),
    ErrorRate,
    Throughput,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum LatencyStat {
    P50,
    P90,
    P99,
    P999,
    Max,
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl LatencyStat {
    fn of(self, p: &Percentiles) -> u64 {
        match self {
            LatencyStat::P50 => p.p50_us,
            LatencyStat::P90 => p.p90_us,
            LatencyStat::P99 => p.p99_us,
            LatencyStat::P999 => p.p999_us,
            LatencyStat::Max => p.max_us,
            LatencyStat::Mean => p.mean_us,
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Threshold, String> {
        let rule = text.trim().to_string();
        let (condition, endpoint) = split_endpoint(&rule)?;
        let (name, op, value) = split_condition(&rule, condition)?;
        let metric = parse_metric(&rule, name)?;
        let limit = parse_limit(&rule, metric, value)?;
        judgeable(&rule, metric, op, limit)?;
        Ok(Threshold {
            rule,
            metric,
            op,
            limit,
            endpoint,
        })
    }
}

/// Refuses a threshold that cannot say anything about the run: one that
/// holds whatever happened (`error_rate<=100%`, `throughput>=0/s`), one that
/// can never hold (`error_rate<0%`, `p99<0ms`), an error rate over 100%, and
/// a latency or error rate bounded from below (an SLO bounds them from
/// above).
fn judgeable(rule: &str, metric: Metric, op: Op, limit: f64) -> Result<(), String> {
    let upper = matches!(op, Op::Lt | Op::Le);
    if let Metric::ErrorRate = metric
        && limit > 1.0
    {
        return Err(format!("{rule:?}: an error rate is at most 100%"));
    }
    if !upper && !matches!(metric, Metric::Throughput) {
        return Err(format!(
            "{rule:?}: a latency or an error rate is bounded from above: write < or <="
        ));
    }
    let always = match (op, metric) {
        (Op::Ge, _) => limit == 0.0,
        (Op::Le, Metric::ErrorRate) => limit >= 1.0,
        _ => false,
    };
    if always {
        return Err(format!(
            "{rule:?}: holds whatever the run does, so it judges nothing"
        ));
    }
    if op == Op::Lt && limit == 0.0 {
        return Err(format!("{rule:?}: can never hold (nothing is below 0)"));
    }
    Ok(())
}

/// Every name a journey sends requests under, and the two order measures:
/// a threshold for one of them that saw no request fails (nothing measured)
/// rather than being an unknown endpoint.
const JOURNEY_ENDPOINTS: [&str; 8] = [
    "GET /v1/products",
    "POST /v1/orders",
    "GET /v1/orders/{id}",
    "GET /v1/orders/{id}/events",
    "POST /v1/orders/{id}/pay",
    "POST psp /v1/payment_intents/{id}/confirm",
    stampede_reports::ORDER_TO_CONFIRMED,
    stampede_reports::ORDER_TO_OFFERED,
];

/// `CONDITION for ENDPOINT` → the condition and the endpoint, if any.
fn split_endpoint(rule: &str) -> Result<(&str, Option<String>), String> {
    if rule.ends_with(" for") {
        return Err(format!("{rule:?}: nothing after `for`"));
    }
    match rule.split_once(" for ") {
        Some((c, e)) if !e.trim().is_empty() => Ok((c.trim(), Some(e.trim().to_string()))),
        Some(_) => Err(format!("{rule:?}: nothing after `for`")),
        None => Ok((rule, None)),
    }
}

/// `METRIC OP VALUE` → the metric's name, the operator and the value as written.
fn split_condition<'c>(rule: &str, condition: &'c str) -> Result<(&'c str, Op, &'c str), String> {
    let at = condition
        .find(['<', '>'])
        .ok_or_else(|| format!("{rule:?}: expected METRIC<VALUE or METRIC>VALUE, e.g. p99<50ms"))?;
    let (name, rest) = condition.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else {
        (Op::Gt, &rest[1..])
    };
    Ok((name, op, value))
}

fn parse_metric(rule: &str, name: &str) -> Result<Metric, String> {
    Ok(match name.trim() {
        "p50" => Metric::Latency(LatencyStat::P50),
        "p90" => Metric::Latency(LatencyStat::P90),
        "p99" => Metric::Latency(LatencyStat::P99),
        "p99.9" | "p999" => Metric::Latency(LatencyStat::P999),
        "max" => Metric::Latency(LatencyStat::Max),
        "mean" => Metric::Latency(LatencyStat::Mean),
        "error_rate" => Metric::ErrorRate,
        "throughput" => Metric::Throughput,
        other => {
            return Err(format!(
                "{rule:?}: unknown metric {other:?}; use p50, p90, p99, p99.9, max, mean, error_rate or throughput"
            ));
        }
    })
}

/// The value with its unit → the limit in the metric's own unit (µs, a
/// fraction, per second).
fn parse_limit(rule: &str, metric: Metric, value: &str) -> Result<f64, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    if number.is_empty() && value.starts_with('-') {
        return Err(format!(
            "{rule:?}: {value} is negative; a bound is 0 or more"
        ));
    }
    let number: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{rule:?}: {value:?} is not a non-negative number"))?;
    Ok(match (metric, unit.trim()) {
        (Metric::Latency(_), "us" | "µs") => number,
        (Metric::Latency(_), "ms") => number * 1_000.0,
        (Metric::Latency(_), "s") => number * 1_000_000.0,
        (Metric::Latency(_), u) => {
            return Err(format!("{rule:?}: latency unit {u:?} must be us, ms or s"));
        }
        (Metric::ErrorRate, "%") => number / 100.0,
        // A bare 1 is refused: meant as 1%, it would be read as 100%, a gate that never fails.
        (Metric::ErrorRate, "") if number < 1.0 => number,
        (Metric::ErrorRate, u) => {
            return Err(format!(
                "{rule:?}: error rate {number}{u} must be a percentage (1%) or a fraction below 1 (0.01)"
            ));
        }
        (Metric::Throughput, "/s" | "rps" | "") => number,
        (Metric::Throughput, u) => {
            return Err(format!("{rule:?}: throughput unit {u:?} must be /s"));
        }
    })
}

fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.3} s", us / 1_000_000.0)
    } else if us >= 1_000.0 {
        format!("{:.3} ms", us / 1_000.0)
    } else {
        format!("{us:.0} us")
    }
}

impl Threshold {
    /// Whether the endpoint the threshold names (if any) is one a journey
    /// sends to or one of its journey measures, so a load can refuse a
    /// misspelt one before it runs (a probe's endpoints are its own).
    pub fn names_a_journey_endpoint(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_none_or(|name| JOURNEY_ENDPOINTS.contains(&name))
    }

    /// The endpoints a journey sends to and measures, by name.
    pub fn journey_endpoints() -> &'static [&'static str] {
        &JOURNEY_ENDPOINTS
    }

    /// Judges the threshold on a finished report; an unknown endpoint is an
    /// error, and zero requests fail it.
    pub fn judge(&self, report: &LoadReport) -> Result<ThresholdResult, String> {
        let requests: Vec<&EndpointLatency> = match &self.endpoint {
            Some(name)
                if JOURNEY_ENDPOINTS.contains(&name.as_str())
                    && !report.endpoints.iter().any(|e| &e.name == name) =>
            {
                Vec::new()
            }
            Some(name) => {
                let found = report
                    .endpoints
                    .iter()
                    .find(|e| &e.name == name)
                    .ok_or_else(|| {
                        let names: Vec<&str> =
                            report.endpoints.iter().map(|e| e.name.as_str()).collect();
                        format!(
                            "{:?}: no endpoint {name:?}; this run has: {}",
                            self.rule,
                            names.join(", ")
                        )
                    })?;
                vec![found]
            }
            None => report
                .endpoints
                .iter()
                .filter(|e| !crate::latency::is_order_measure(&e.name))
                .collect(),
        };
        if requests.iter().all(|e| e.requests == 0) {
            let over = self.endpoint.as_deref().unwrap_or("any endpoint");
            return Ok(ThresholdResult {
                rule: self.rule.clone(),
                measured: format!("no requests to {over}: nothing measured, so it fails"),
                passed: false,
            });
        }
        let (measured, shown) = match self.metric {
            Metric::Latency(stat) => {
                let worst = requests
                    .iter()
                    .map(|e| stat.of(&e.headline))
                    .max()
                    .unwrap_or(0) as f64;
                (worst, fmt_us(worst))
            }
            Metric::ErrorRate => {
                let total: u64 = requests.iter().map(|e| e.requests).sum();
                let errors: u64 = requests.iter().map(|e| e.errors).sum();
                let rate = errors as f64 / total as f64;
                (rate, format!("{:.3}% ({errors} of {total})", rate * 100.0))
            }
            Metric::Throughput => {
                let total: u64 = requests.iter().map(|e| e.requests).sum();
                let secs = (report.duration_ms as f64 / 1000.0).max(0.001);
                let rate = total as f64 / secs;
                (rate, format!("{rate:.1}/s"))
            }
        };
        let passed = match self.op {
            Op::Lt => measured < self.limit,
            Op::Le => measured <= self.limit,
            Op::Gt => measured > self.limit,
            Op::Ge => measured >= self.limit,
        };
        Ok(ThresholdResult {
            rule: self.rule.clone(),
            measured: shown,
            passed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_reports::{Basis, LoadModel, REPORT_VERSION};

    fn report() -> LoadReport {
        let endpoint = |name: &str, p99_us: u64, requests: u64, errors: u64| EndpointLatency {
            name: name.into(),
            requests,
            errors,
            shed: 0,
            basis: Basis::IntendedStart,
            headline: Percentiles {
                count: requests,
                p99_us,
                ..Percentiles::default()
            },
            raw: Percentiles::default(),
            spectrum: Vec::new(),
            raw_spectrum: Vec::new(),
        };
        LoadReport {
            version: REPORT_VERSION,
            title: "t".into(),
            target: "http://x".into(),
            design: "reference".into(),
            model: LoadModel::Closed { users: 1 },
            duration_ms: 10_000,
            interval_ms: 1_000,
            endpoints: vec![
                endpoint("POST /v1/orders", 40_000, 1_000, 5),
                endpoint("GET /v1/products", 90_000, 3_000, 0),
            ],
            timeline: Vec::new(),
            audit: Vec::new(),
            audit_not_done: None,
            thresholds: Vec::new(),
            files: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn judge(rule: &str) -> bool {
        rule.parse::<Threshold>()
            .unwrap()
            .judge(&report())
            .unwrap()
            .passed
    }

    #[test]
    fn latency_error_rate_and_throughput_thresholds_are_judged() {
        assert!(judge("p99<50ms for POST /v1/orders"));
        assert!(!judge("p99<30ms for POST /v1/orders"));
        assert!(
            !judge("p99<50ms"),
            "without an endpoint the slowest one counts"
        );
        assert!(judge("p99<=0.09s"));
        assert!(judge("p99<90001us"));
        assert!(judge("error_rate<1%"));
        assert!(!judge("error_rate<0.001"));
        assert!(judge("throughput>=400/s"));
        assert!(!judge("throughput>401/s"));
    }

    #[test]
    fn a_threshold_over_zero_requests_fails_and_says_why() {
        // Proves: with no requests at all, or none to the named endpoint (in
        // the report with zero, or a journey's endpoint absent from it),
        // every kind of threshold fails (error_rate<1% included) and the
        // measurement says there was nothing to measure.
        let mut empty = report();
        empty.endpoints.clear();
        let mut idle = report();
        idle.endpoints[0].requests = 0;
        idle.endpoints[0].errors = 0;
        idle.endpoints[0].headline.count = 0;
        for (rule, on) in [
            ("error_rate<1%", &empty),
            ("p99<50ms", &empty),
            ("throughput<100/s", &empty),
            ("error_rate<1% for POST /v1/orders", &idle),
            ("p99<50ms for POST /v1/orders", &idle),
            // A journey's endpoint this run never sent to (every buyer walked away).
            ("p99<50ms for POST /v1/orders/{id}/pay", &idle),
            (
                "error_rate<1% for POST psp /v1/payment_intents/{id}/confirm",
                &empty,
            ),
        ] {
            let result = rule.parse::<Threshold>().unwrap().judge(on).unwrap();
            assert!(!result.passed, "{rule} over zero requests fails");
            assert!(
                result.measured.contains("no requests"),
                "{rule}: {result:?}"
            );
        }
        assert!(
            "error_rate<1%"
                .parse::<Threshold>()
                .unwrap()
                .judge(&idle)
                .unwrap()
                .passed,
            "other endpoints' requests still count"
        );
    }

    #[test]
    fn malformed_thresholds_say_what_is_wrong() {
        for (rule, phrase) in [
            ("p98<5ms", "unknown metric"),
            ("p99=5ms", "expected METRIC<VALUE"),
            ("p99<5min", "must be us, ms or s"),
            ("p99<fast", "\"fast\" is not a non-negative number"),
            ("throughput>=abc", "\"abc\" is not a non-negative number"),
            ("p99<-5ms", "-5ms is negative"),
            ("error_rate<5", "percentage"),
            ("p99<5ms for ", "nothing after"),
            ("error_rate<101%", "at most 100%"),
            ("error_rate<=100%", "judges nothing"),
            ("error_rate<=1", "percentage"),
            ("error_rate<1", "percentage"),
            ("throughput>=0/s", "judges nothing"),
            ("p99>=0ms", "bounded from above"),
            ("p99>50ms", "bounded from above"),
            ("error_rate>1%", "bounded from above"),
            ("error_rate<0%", "never hold"),
            ("p99<0ms", "never hold"),
        ] {
            let err = rule.parse::<Threshold>().unwrap_err();
            assert!(err.contains(phrase), "{rule}: {err}");
        }
        // Just inside each bound: accepted.
        for rule in [
            "error_rate<100%",
            "error_rate<=99.9%",
            "throughput>0/s",
            "throughput>=1/s",
            "throughput<5/s",
            "p99<=0ms",
            "error_rate<=0%",
        ] {
            assert!(rule.parse::<Threshold>().is_ok(), "{rule}");
        }
        let unknown = "p99<5ms for GET /nope".parse::<Threshold>().unwrap();
        assert!(
            unknown
                .judge(&report())
                .unwrap_err()
                .contains("POST /v1/orders")
        );
    }
}
