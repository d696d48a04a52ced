//! Latency recording: every request into HdrHistograms (µs, 3 significant
//! digits) per endpoint, as sent ("raw") and from its intended start (open
//! loop), per timeline interval, plus the order-to-confirmation time; then
//! the summaries, spectra, interval logs (`.hlog`) and percentile
//! distributions (`.hgrm`) the reports and the HdrHistogram tools read.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use stampede_reports::{Basis, EndpointLatency, Interval, Percentiles, SpectrumPoint};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Longest latency a histogram holds (longer ones are clamped), µs: 10 minutes.
pub const MAX_US: u64 = 600_000_000;
pub use stampede_reports::ORDER_TO_CONFIRMED;
/// Most timeline intervals kept (a day of 1 s intervals).
pub const MAX_INTERVALS: usize = 86_400;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static bounds are valid")
}

/// One endpoint's histograms.
#[derive(Clone)]
struct Endpoint {
    /// From the moment the request was sent.
    raw: Histogram<u64>,
    /// From the moment it should have been sent (open loop; equals raw otherwise).
    intended: Histogram<u64>,
    errors: u64,
    /// Per timeline interval: (honest histogram, errors), for the interval log.
    by_interval: BTreeMap<usize, (Histogram<u64>, u64)>,
}

impl Endpoint {
    fn new() -> Endpoint {
        Endpoint {
            raw: histogram(),
            intended: histogram(),
            errors: 0,
            by_interval: BTreeMap::new(),
        }
    }
}

/// Where a request's latency is measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was sent, since load began.
    pub sent: Duration,
    /// When the schedule meant it to start (`sent` in a closed loop).
    pub intended: Duration,
    /// When its answer (or failure) arrived.
    pub done: Duration,
    /// Whether it failed.
    pub failed: bool,
}

/// Every latency of a run. Not thread-safe by itself: the loadgen keeps it
/// behind a mutex and holds the lock only to record.
pub struct Latencies {
    interval: Duration,
    open_loop: bool,
    endpoints: BTreeMap<String, Endpoint>,
    /// Per interval: every request of every endpoint (honest basis) and errors.
    timeline: Vec<(Histogram<u64>, u64)>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_US)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean().round() as u64,
    }
}

/// Percentiles for the spectrum chart: dense towards the tail.
const SPECTRUM: [f64; 16] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 99.9995,
    99.9999, 99.99999,
];

fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    // Stop where the histogram has no more resolution (one sample = 1/len).
    let finest = 100.0 * (1.0 - 1.0 / h.len() as f64);
    SPECTRUM
        .iter()
        .filter(|&&p| p <= finest.max(50.0))
        .map(|&p| SpectrumPoint {
            percentile: p,
            value_us: h.value_at_quantile(p / 100.0),
        })
        .collect()
}

impl Latencies {
    /// Empty, with timeline intervals `interval` wide.
    pub fn new(interval: Duration, open_loop: bool) -> Latencies {
        Latencies {
            interval: interval.max(Duration::from_millis(10)),
            open_loop,
            endpoints: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    /// Records one request of `endpoint`.
    pub fn record(&mut self, endpoint: &str, s: Sample) {
        let e = self
            .endpoints
            .entry(endpoint.to_string())
            .or_insert_with(Endpoint::new);
        let raw = us(s.done.saturating_sub(s.sent));
        let honest = us(s.done.saturating_sub(s.intended.min(s.sent)));
        e.raw.saturating_record(raw);
        e.intended.saturating_record(honest);
        e.errors += u64::from(s.failed);
        let slot = (s.done.as_millis() / self.interval.as_millis().max(1)) as usize;
        if slot >= MAX_INTERVALS {
            return;
        }
        let (h, errors) = e
            .by_interval
            .entry(slot)
            .or_insert_with(|| (histogram(), 0));
        h.saturating_record(honest);
        *errors += u64::from(s.failed);
        if endpoint != ORDER_TO_CONFIRMED {
            while self.timeline.len() <= slot {
                self.timeline.push((histogram(), 0));
            }
            self.timeline[slot].0.saturating_record(honest);
            self.timeline[slot].1 += u64::from(s.failed);
        }
    }

    /// Requests recorded so far (not counting order-to-confirmation samples).
    pub fn requests(&self) -> u64 {
        self.endpoints
            .iter()
            .filter(|(name, _)| *name != ORDER_TO_CONFIRMED)
            .map(|(_, e)| e.raw.len())
            .sum()
    }

    /// Failed requests so far.
    pub fn errors(&self) -> u64 {
        self.endpoints
            .iter()
            .filter(|(name, _)| *name != ORDER_TO_CONFIRMED)
            .map(|(_, e)| e.errors)
            .sum()
    }

    /// The basis of the headline numbers.
    pub fn basis(&self) -> Basis {
        if self.open_loop {
            Basis::IntendedStart
        } else {
            Basis::Corrected
        }
    }

    /// The honest distribution of one endpoint: from intended start in an
    /// open loop; in a closed loop the raw one corrected for coordinated
    /// omission with the endpoint's raw median as the expected interval
    /// (a user that waited `d` would have sent about `d / median` requests).
    fn honest(&self, e: &Endpoint) -> Histogram<u64> {
        if self.open_loop || e.raw.is_empty() {
            e.intended.clone()
        } else {
            e.raw.clone_correct(e.raw.value_at_quantile(0.5).max(1))
        }
    }

    /// The distribution the headline numbers come from. The end-to-end time
    /// is a journey, not a request stream: in a closed loop it is never corrected.
    fn headline(&self, name: &str, e: &Endpoint) -> Histogram<u64> {
        if name == ORDER_TO_CONFIRMED && !self.open_loop {
            e.raw.clone()
        } else {
            self.honest(e)
        }
    }

    /// Every endpoint's summary, in name order with order-to-confirmation last.
    pub fn endpoints(&self) -> Vec<EndpointLatency> {
        let mut out: Vec<EndpointLatency> = self
            .endpoints
            .iter()
            .map(|(name, e)| {
                let honest = self.headline(name, e);
                EndpointLatency {
                    name: name.clone(),
                    requests: e.raw.len(),
                    errors: e.errors,
                    basis: if name == ORDER_TO_CONFIRMED && !self.open_loop {
                        Basis::Raw
                    } else {
                        self.basis()
                    },
                    headline: percentiles(&honest),
                    raw: percentiles(&e.raw),
                    spectrum: spectrum(&honest),
                    raw_spectrum: spectrum(&e.raw),
                }
            })
            .collect();
        out.sort_by_key(|e| e.name == ORDER_TO_CONFIRMED);
        out
    }

    /// The timeline: requests, errors and latency per interval (order-state
    /// counts are filled in by the caller).
    pub fn timeline(&self) -> Vec<Interval> {
        self.timeline
            .iter()
            .enumerate()
            .map(|(i, (h, errors))| Interval {
                start_ms: i as u64 * self.interval.as_millis() as u64,
                requests: h.len(),
                errors: *errors,
                p50_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.5)
                },
                p99_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                },
                orders_by_status: BTreeMap::new(),
            })
            .collect()
    }

    /// An HdrHistogram interval log: one tagged histogram per endpoint per
    /// interval (honest basis, µs), readable by HistogramLogProcessor and
    /// mergeable with logs from other machines. `start_unix` is when load began.
    pub fn interval_log(&self, start_unix: Duration) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let start = std::time::UNIX_EPOCH + start_unix;
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("stampede load: latency per endpoint per interval, microseconds")
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| e.to_string())?;
        let mut rows: Vec<(usize, &str, &Histogram<u64>)> = Vec::new();
        for (name, e) in &self.endpoints {
            for (slot, (h, _)) in &e.by_interval {
                rows.push((*slot, name.as_str(), h));
            }
        }
        rows.sort_by_key(|(slot, name, _)| (*slot, *name));
        for (slot, name, h) in rows {
            let tag_text = tag_of(name);
            let tag = Tag::new(&tag_text);
            writer
                .write_histogram(h, self.interval * slot as u32, self.interval, tag)
                .map_err(|e| format!("{e:?}"))?;
        }
        drop(writer);
        Ok(out)
    }

    /// Percentile distribution files (`.hgrm`, HdrHistogram's text format,
    /// values in ms) per endpoint: (file name, contents).
    pub fn distributions(&self) -> Vec<(String, String)> {
        self.endpoints
            .iter()
            .map(|(name, e)| {
                let honest = self.headline(name, e);
                (format!("{}.hgrm", tag_of(name)), hgrm(&honest))
            })
            .collect()
    }
}

/// A name usable as an interval-log tag and a file name.
pub fn tag_of(name: &str) -> String {
    let mut tag: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while tag.contains("__") {
        tag = tag.replace("__", "_");
    }
    tag.trim_matches('_').to_string()
}

/// HdrHistogram's percentile distribution output (as `outputPercentileDistribution`
/// with 5 ticks per half distance and values scaled µs → ms).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if h.is_empty() {
        return out;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn open_loop_latency_counts_the_wait_for_a_free_user() {
        // Proves: a request that should have started at 0 but was sent at
        // 900 ms and answered at 1 s counts 1 s from intended start, 100 ms raw.
        let mut l = Latencies::new(ms(1000), true);
        l.record(
            "GET /x",
            Sample {
                sent: ms(900),
                intended: ms(0),
                done: ms(1000),
                failed: false,
            },
        );
        let e = &l.endpoints()[0];
        assert_eq!(e.basis, Basis::IntendedStart);
        assert!((999_000..=1_001_000).contains(&e.headline.max_us), "{e:?}");
        assert!((99_900..=100_100).contains(&e.raw.max_us), "{e:?}");
    }

    #[test]
    fn closed_loop_correction_fills_in_the_requests_a_stall_held_back() {
        // Proves: 990 fast requests and 10 one-second stalls: the raw p99 is
        // fast, the corrected p99 shows the stall.
        let mut l = Latencies::new(ms(1000), false);
        for i in 0..1000u64 {
            let took = if i % 100 == 0 { 1000 } else { 1 };
            l.record(
                "GET /x",
                Sample {
                    sent: ms(i),
                    intended: ms(i),
                    done: ms(i + took),
                    failed: false,
                },
            );
        }
        let e = &l.endpoints()[0];
        assert!(e.raw.p99_us < 2_000, "raw p99 {}", e.raw.p99_us);
        assert!(
            e.headline.p99_us > 500_000,
            "corrected p99 {}",
            e.headline.p99_us
        );
    }

    #[test]
    fn logs_and_distributions_are_written_per_endpoint() {
        let mut l = Latencies::new(ms(1000), true);
        for (i, name) in ["POST /v1/orders", "GET /v1/orders/{id}"]
            .iter()
            .enumerate()
        {
            l.record(
                name,
                Sample {
                    sent: ms(10 * i as u64),
                    intended: ms(0),
                    done: ms(1500),
                    failed: i == 1,
                },
            );
        }
        assert_eq!(l.requests(), 2);
        assert_eq!(l.errors(), 1);
        let log = l.interval_log(Duration::from_secs(1_700_000_000)).unwrap();
        let text = String::from_utf8(log).unwrap();
        assert!(text.contains("Tag=POST_v1_orders"), "{text}");
        assert!(text.contains("Tag=GET_v1_orders_id"), "{text}");
        let files = l.distributions();
        assert_eq!(files[0].0, "GET_v1_orders_id.hgrm");
        assert!(files[0].1.contains("#[Max     ="), "{}", files[0].1);
        assert_eq!(l.timeline().len(), 2);
        assert_eq!(l.timeline()[1].requests, 2);
    }
}
