//! Latency recording: every request into HdrHistograms (µs, 3 significant
//! digits) per endpoint on two bases — as sent ("raw") and the endpoint's
//! headline basis — overall and per timeline interval, plus the
//! order-to-confirmation time; then the summaries, spectra, interval logs
//! (`.hlog`) and percentile distributions (`.hgrm`) the reports and the
//! HdrHistogram tools read.
//!
//! An endpoint's headline basis is fixed by the load model when it is first
//! recorded: in the open loop, from when the request should have been sent
//! ([`Basis::IntendedStart`]: its journey's slot for the first request, the
//! previous answer plus the planned pause for later ones); in the closed loop,
//! as sent and corrected for coordinated omission at record time with the
//! sending user's own expected interval between sends ([`Basis::Corrected`],
//! see [`Pacing`]); `order → confirmed` in the closed loop is raw (a journey,
//! not a request stream). One basis per tag everywhere: the tag
//! `POST_v1_orders` holds the headline basis in the `.hlog`, in
//! `POST_v1_orders.hgrm`, in the report's headline and (summed over
//! endpoints) in the timeline; `POST_v1_orders.raw` holds the raw basis.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use stampede_reports::{Basis, EndpointLatency, Interval, Percentiles, SpectrumPoint};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Longest latency a histogram holds (longer ones are clamped), µs: 10 minutes.
pub const LATENCY_US_MAX: u64 = 600_000_000;
pub use stampede_reports::{ORDER_TO_CONFIRMED, ORDER_TO_OFFERED, is_order_measure};
/// Most timeline intervals kept (a day of 1 s intervals); `LoadConfig`
/// refuses runs that need more, and a straggler answered after the last
/// interval counts in the last one.
pub const INTERVALS_MAX: usize = 86_400;
/// Suffix of the tags (and `.hgrm` files) that hold the raw basis.
pub const RAW_TAG_SUFFIX: &str = ".raw";

/// A whole-run histogram: fixed bounds, so every endpoint's can be compared.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static bounds are valid")
}

/// A per-interval histogram: starts small and grows to the largest value it
/// holds (a fixed-bound one is ~170 KB; a day of intervals would not fit).
pub(crate) fn small_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 1_000, 3).expect("static bounds are valid");
    h.auto(true);
    h
}

/// Records `count` × `value`, growing the histogram if it may, else clamping.
fn put(h: &mut Histogram<u64>, value: u64, count: u64) {
    if h.record_n(value, count).is_err() {
        h.saturating_record_n(value, count);
    }
}

/// Records `value` and the samples a user that meant to send every
/// `interval` held back while it waited: `value − interval`,
/// `value − 2·interval`, … down to `interval` (HdrHistogram's
/// `record_correct`), recording every held-back value of one bucket at once,
/// so a long stall over a short interval costs one step per bucket at most.
fn record_corrected(h: &mut Histogram<u64>, value: u64, interval: u64) {
    put(h, value, 1);
    if interval == 0 || value < interval.saturating_mul(2) {
        return;
    }
    let mut missing = value - interval;
    // Each step takes every held-back value in `missing`'s bucket and moves
    // below it, so the steps are at most the buckets under `value`.
    let max_steps = h.distinct_values();
    for _ in 0..max_steps {
        if missing < interval {
            return;
        }
        let low = h.lowest_equivalent(missing).max(interval);
        let count = (missing - low) / interval + 1;
        put(h, missing, count);
        missing -= count * interval;
    }
    debug_assert!(missing < interval, "correction ended early");
}

/// One endpoint's histograms.
#[derive(Clone)]
struct Endpoint {
    /// What `headline` measures.
    basis: Basis,
    /// From the moment the request was sent.
    raw: Histogram<u64>,
    /// On `basis`; holds synthetic samples when corrected.
    headline: Histogram<u64>,
    errors: u64,
    /// Answered 429: shed by the shop's admission control (not errors).
    shed: u64,
    /// Per timeline interval: (raw, headline), for the interval log.
    by_interval: BTreeMap<usize, (Histogram<u64>, Histogram<u64>)>,
}

/// One timeline interval, every request endpoint together.
#[derive(Clone)]
struct Slice {
    /// On the endpoints' headline basis.
    headline: Histogram<u64>,
    /// Requests answered in it (synthetic samples are not requests).
    requests: u64,
    errors: u64,
}

/// One request's times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was sent, since load began.
    pub sent: Duration,
    /// When it should have been sent (open loop): its journey's slot for the
    /// first request, else the previous answer plus the planned pause.
    pub intended: Duration,
    /// When its answer (or failure) arrived.
    pub done: Duration,
    /// Whether it failed.
    pub failed: bool,
    /// Whether the shop shed it (429): counted apart, not as a failure.
    pub shed: bool,
    /// The sending user's expected interval between sends (closed loop, from
    /// [`Pacing`]); `None` adds no synthetic samples.
    pub expected_interval: Option<Duration>,
}

/// A closed-loop user's pacing, from what it planned: the pauses it meant to
/// take before its sends (think time, poll intervals, retry backoffs), the
/// time it spent between sends watching an events stream for the status it
/// waits for, and its fastest answer. Its expected interval between sends is
/// the mean of the pauses and watches per send plus its fastest answer (a
/// lower bound of an unstalled answer): how often it would have sent had the
/// shop never stalled, with the journey's other steps included. A slow
/// answer then stands for the sends the user held back, one per expected
/// interval. (Leaving the watches out made the interval far shorter than
/// the users' real one, so ordinary answers were "corrected" with dozens of
/// made-up faster samples each: corrected percentiles below the raw ones.)
///
/// Simplification: a user's first answer is its fastest so far, so a stall
/// that hits a user's very first request is not corrected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pacing {
    sends: u64,
    paused_us: u64,
    fastest_us: Option<u64>,
}

impl Pacing {
    /// Time spent between sends watching an events stream (after its first
    /// event, which is the stream's answer): counted like a planned pause.
    pub fn watched(&mut self, d: Duration) {
        let watched_us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.paused_us = self.paused_us.saturating_add(watched_us);
    }
}

impl Pacing {
    /// A send, after a planned pause of `pause` since the previous answer.
    pub fn sent(&mut self, pause: Duration) {
        self.sends += 1;
        let pause_us = u64::try_from(pause.as_micros()).unwrap_or(u64::MAX);
        self.paused_us = self.paused_us.saturating_add(pause_us);
    }

    /// An answer (or failure) that took `took` since its send.
    pub fn answered(&mut self, took: Duration) {
        let took_us = us(took);
        self.fastest_us = Some(self.fastest_us.map_or(took_us, |f| f.min(took_us)));
    }

    /// The expected interval between this user's sends, once it has one.
    pub fn expected_interval(&self) -> Option<Duration> {
        let fastest_us = self.fastest_us?;
        let pause_us = self.paused_us.checked_div(self.sends)?;
        Some(Duration::from_micros(pause_us.saturating_add(fastest_us)))
    }
}

/// Every latency of a run. Not thread-safe by itself: the loadgen keeps it
/// behind a mutex and holds the lock only to record.
pub struct Latencies {
    interval: Duration,
    open_loop: bool,
    endpoints: BTreeMap<String, Endpoint>,
    /// Per interval: every request of every endpoint (headline basis).
    timeline: Vec<Slice>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_US_MAX)
}

/// One billion: percentiles are given in parts per billion.
const PPB: u64 = 1_000_000_000;

/// The value at `ppb` parts per billion of `h`'s samples: the (highest
/// equivalent) value of the sample at rank ⌈ppb·n / 10⁹⌉, at least the
/// first; 0 when empty. Ranks are integers because the float route fails at
/// round ranks: `value_at_quantile(0.999)` on 1000 samples computes
/// 0.999 × 1000 as 999.0000000000001 and answers the 1000th.
pub fn value_at(h: &Histogram<u64>, ppb: u64) -> u64 {
    let rank = (u128::from(ppb.min(PPB)) * u128::from(h.len()))
        .div_ceil(u128::from(PPB))
        .max(1);
    let mut seen = 0u128;
    for v in h.iter_recorded() {
        seen += u128::from(v.count_at_value());
        if seen >= rank {
            return v.value_iterated_to();
        }
    }
    0
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50_us: value_at(h, 500_000_000),
        p90_us: value_at(h, 900_000_000),
        p99_us: value_at(h, 990_000_000),
        p999_us: value_at(h, 999_000_000),
        max_us: h.max(),
        mean_us: h.mean().round() as u64,
    }
}

/// Percentiles for the spectrum chart, in parts per billion: dense towards the tail.
const SPECTRUM_PPB: [u64; 16] = [
    0,
    250_000_000,
    500_000_000,
    750_000_000,
    900_000_000,
    950_000_000,
    990_000_000,
    995_000_000,
    999_000_000,
    999_500_000,
    999_900_000,
    999_950_000,
    999_990_000,
    999_995_000,
    999_999_000,
    999_999_900,
];

pub(crate) fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    // Stop where the histogram has no more resolution (one sample = 1/len).
    let finest_ppb = PPB - PPB / h.len().max(1);
    SPECTRUM_PPB
        .iter()
        .filter(|&&ppb| ppb <= finest_ppb.max(PPB / 2))
        .map(|&ppb| SpectrumPoint {
            percentile: ppb as f64 / 10_000_000.0,
            value_us: value_at(h, ppb),
        })
        .collect()
}

/// What one sample adds to a headline histogram.
#[derive(Clone, Copy)]
enum Headline {
    /// One value.
    Plain(u64),
    /// One value and the held-back ones, one per `interval` µs.
    Corrected { value: u64, interval: u64 },
}

impl Headline {
    fn put(self, h: &mut Histogram<u64>) {
        match self {
            Headline::Plain(value) => put(h, value, 1),
            Headline::Corrected { value, interval } => record_corrected(h, value, interval),
        }
    }
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

    /// The headline basis of `endpoint` under this run's load model.
    pub fn basis_of(&self, endpoint: &str) -> Basis {
        if self.open_loop {
            Basis::IntendedStart
        } else if is_order_measure(endpoint) {
            Basis::Raw
        } else {
            Basis::Corrected
        }
    }

    fn headline_of(basis: Basis, s: &Sample, raw_us: u64) -> Headline {
        match (basis, s.expected_interval) {
            (Basis::IntendedStart, _) => {
                Headline::Plain(us(s.done.saturating_sub(s.intended.min(s.sent))))
            }
            (Basis::Corrected, Some(interval)) => Headline::Corrected {
                value: raw_us,
                interval: us(interval),
            },
            (Basis::Corrected | Basis::Raw, _) => Headline::Plain(raw_us),
        }
    }

    /// The timeline interval `done` falls in (the last one for stragglers).
    fn slot_of(&self, done: Duration) -> usize {
        let slot = done.as_millis() / self.interval.as_millis().max(1);
        usize::try_from(slot).map_or(INTERVALS_MAX - 1, |s| s.min(INTERVALS_MAX - 1))
    }

    /// Records one request of `endpoint`.
    pub fn record(&mut self, endpoint: &str, s: Sample) {
        let basis = self.basis_of(endpoint);
        let slot = self.slot_of(s.done);
        let raw_us = us(s.done.saturating_sub(s.sent));
        let headline = Self::headline_of(basis, &s, raw_us);
        let e = self
            .endpoints
            .entry(endpoint.to_string())
            .or_insert_with(|| Endpoint {
                basis,
                raw: histogram(),
                headline: histogram(),
                errors: 0,
                shed: 0,
                by_interval: BTreeMap::new(),
            });
        put(&mut e.raw, raw_us, 1);
        headline.put(&mut e.headline);
        e.errors += u64::from(s.failed);
        e.shed += u64::from(s.shed);
        let (slot_raw, slot_headline) = e
            .by_interval
            .entry(slot)
            .or_insert_with(|| (small_histogram(), small_histogram()));
        put(slot_raw, raw_us, 1);
        headline.put(slot_headline);
        if !is_order_measure(endpoint) {
            while self.timeline.len() <= slot {
                self.timeline.push(Slice {
                    headline: small_histogram(),
                    requests: 0,
                    errors: 0,
                });
            }
            let interval = &mut self.timeline[slot];
            headline.put(&mut interval.headline);
            interval.requests += 1;
            interval.errors += u64::from(s.failed);
        }
    }

    /// Requests recorded so far (not counting order-to-confirmation samples).
    pub fn requests(&self) -> u64 {
        self.endpoints
            .iter()
            .filter(|(name, _)| !is_order_measure(name))
            .map(|(_, e)| e.raw.len())
            .sum()
    }

    /// Failed requests so far.
    pub fn errors(&self) -> u64 {
        self.endpoints
            .iter()
            .filter(|(name, _)| !is_order_measure(name))
            .map(|(_, e)| e.errors)
            .sum()
    }

    /// Requests the shop shed (answered 429) so far.
    pub fn shed(&self) -> u64 {
        self.endpoints.values().map(|e| e.shed).sum()
    }

    /// Every endpoint's summary, in name order with order-to-confirmation last.
    pub fn endpoints(&self) -> Vec<EndpointLatency> {
        let mut out: Vec<EndpointLatency> = self
            .endpoints
            .iter()
            .map(|(name, e)| EndpointLatency {
                name: name.clone(),
                requests: e.raw.len(),
                errors: e.errors,
                shed: e.shed,
                basis: e.basis,
                headline: percentiles(&e.headline),
                raw: percentiles(&e.raw),
                spectrum: spectrum(&e.headline),
                raw_spectrum: spectrum(&e.raw),
            })
            .collect();
        out.sort_by_key(|e| (is_order_measure(&e.name), e.name == ORDER_TO_CONFIRMED));
        out
    }

    /// The timeline: requests, errors and headline-basis latency per interval
    /// (order-state counts are filled in by the caller).
    pub fn timeline(&self) -> Vec<Interval> {
        self.timeline
            .iter()
            .enumerate()
            .map(|(i, slice)| Interval {
                start_ms: i as u64 * self.interval.as_millis() as u64,
                requests: slice.requests,
                errors: slice.errors,
                p50_us: value_at(&slice.headline, 500_000_000),
                p99_us: value_at(&slice.headline, 990_000_000),
                orders_by_status: BTreeMap::new(),
            })
            .collect()
    }

    /// An HdrHistogram interval log: per endpoint per interval, the headline
    /// basis under the endpoint's tag and the raw one under `tag.raw` (µs),
    /// readable by HistogramLogProcessor and mergeable with logs from other
    /// machines. `start_unix` is when load began.
    pub fn interval_log(&self, start_unix: Duration) -> Result<Vec<u8>, String> {
        let comments = self
            .endpoints
            .iter()
            .map(|(name, e)| {
                let tag = tag_of(name);
                format!(
                    "Tag={tag}: {name}, {}; Tag={tag}{RAW_TAG_SUFFIX}: the same, as sent",
                    basis_words(e.basis)
                )
            })
            .collect::<Vec<_>>();
        let mut rows: Vec<(usize, String, &Histogram<u64>)> = Vec::new();
        for (name, e) in &self.endpoints {
            let tag = tag_of(name);
            for (slot, (raw, headline)) in &e.by_interval {
                rows.push((*slot, format!("{tag}{RAW_TAG_SUFFIX}"), raw));
                rows.push((*slot, tag.clone(), headline));
            }
        }
        write_interval_log(start_unix, self.interval, &comments, rows)
    }

    /// The whole run's histogram under each tag of the interval log: per
    /// endpoint `TAG` (headline basis) and `TAG.raw`, in tag order.
    pub fn tagged(&self) -> BTreeMap<String, &Histogram<u64>> {
        self.endpoints
            .iter()
            .flat_map(|(name, e)| {
                let tag = tag_of(name);
                [
                    (format!("{tag}{RAW_TAG_SUFFIX}"), &e.raw),
                    (tag, &e.headline),
                ]
            })
            .collect()
    }

    /// Percentile distribution files (`.hgrm`, HdrHistogram's text format,
    /// values in ms), one per tag: `TAG.hgrm` and `TAG.raw.hgrm`, as (file
    /// name, contents).
    pub fn distributions(&self) -> Vec<(String, String)> {
        self.tagged()
            .into_iter()
            .map(|(tag, h)| (format!("{tag}.hgrm"), hgrm(h)))
            .collect()
    }
}

/// An HdrHistogram interval log (µs, max column in ms) starting at
/// `start_unix`, with `comments` in its header and one line per `(interval
/// number, tag, histogram)`, in interval then tag order.
pub(crate) fn write_interval_log(
    start_unix: Duration,
    interval: Duration,
    comments: &[String],
    mut rows: Vec<(usize, String, &Histogram<u64>)>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let start = std::time::UNIX_EPOCH + start_unix;
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment("stampede load: latency per endpoint per interval, microseconds");
    for comment in comments {
        builder.add_comment(comment);
    }
    let mut writer = builder
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| e.to_string())?;
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (slot, tag, h) in rows {
        let start = interval * u32::try_from(slot).map_err(|e| e.to_string())?;
        writer
            .write_histogram(h, start, interval, Tag::new(&tag))
            .map_err(|e| format!("{e:?}"))?;
    }
    drop(writer);
    Ok(out)
}

/// What a basis means, for the log's header.
pub(crate) fn basis_words(basis: Basis) -> &'static str {
    match basis {
        Basis::Raw => "as sent",
        Basis::Corrected => "corrected for coordinated omission with each user's expected interval",
        Basis::IntendedStart => "from when each request should have been sent",
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

    fn sample(sent: u64, intended: u64, done: u64, interval: Option<u64>) -> Sample {
        Sample {
            sent: ms(sent),
            intended: ms(intended),
            done: ms(done),
            failed: false,
            shed: false,
            expected_interval: interval.map(ms),
        }
    }

    #[test]
    fn open_loop_latency_counts_the_wait_for_a_free_user() {
        // Proves: a request that should have started at 0 but was sent at
        // 900 ms and answered at 1 s counts 1 s from intended start, 100 ms raw.
        let mut l = Latencies::new(ms(1000), true);
        l.record("GET /x", sample(900, 0, 1000, None));
        let e = &l.endpoints()[0];
        assert_eq!(e.basis, Basis::IntendedStart);
        assert!((999_000..=1_001_000).contains(&e.headline.max_us), "{e:?}");
        assert!((99_900..=100_100).contains(&e.raw.max_us), "{e:?}");
    }

    #[test]
    fn closed_loop_correction_adds_one_sample_per_expected_interval_of_the_stall() {
        // Proves: 990 fast requests and 10 one-second stalls from users that
        // send every 100 ms: each stall adds 1000/100 − 1 = 9 held-back samples
        // (900, 800, … 100 ms), so the corrected count is 1000 + 90 and the
        // corrected p99 shows the stall while the raw p99 does not.
        let mut l = Latencies::new(ms(1000), false);
        for i in 0..1000u64 {
            let took = if i % 100 == 0 { 1000 } else { 1 };
            l.record("GET /x", sample(i, i, i + took, Some(100)));
        }
        let e = &l.endpoints()[0];
        assert_eq!(e.basis, Basis::Corrected);
        assert_eq!(e.requests, 1000);
        assert_eq!(e.raw.count, 1000);
        assert_eq!(e.headline.count, 1090, "{e:?}");
        assert!(e.raw.p99_us < 2_000, "raw p99 {}", e.raw.p99_us);
        assert!(
            (899_000..=901_000).contains(&e.headline.p99_us),
            "corrected p99 {}: the 11th largest of 1090 is a 900 ms held-back sample",
            e.headline.p99_us
        );
        let timeline = l.timeline();
        assert_eq!(timeline.iter().map(|i| i.requests).sum::<u64>(), 1000);
    }

    #[test]
    fn bulk_correction_equals_hdrhistograms_record_correct() {
        // Proves: recording a stall's held-back samples a bucket at a time
        // gives exactly the counts HdrHistogram's own record_correct gives,
        // for short and long stalls, fine and coarse intervals, both kinds of histogram.
        for (value, interval) in [
            (1_500_000, 50_000),
            (1_500_000, 137),
            (LATENCY_US_MAX, 1_000),
            (99, 100),
            (200, 100),
            (123_456, 0),
        ] {
            for mut ours in [histogram(), small_histogram()] {
                let mut theirs = histogram();
                theirs.record_correct(value, interval).unwrap();
                record_corrected(&mut ours, value, interval);
                let counts = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
                    h.iter_recorded()
                        .map(|v| (v.value_iterated_to(), v.count_at_value()))
                        .collect()
                };
                assert_eq!(ours.len(), theirs.len(), "{value} every {interval}");
                assert_eq!(counts(&ours), counts(&theirs), "{value} every {interval}");
            }
        }
    }

    #[test]
    fn percentiles_take_the_sample_at_their_integer_rank() {
        // Proves: of 1000 samples 1..=1000 ms, p99.9 is the 999th (not the
        // maximum, as 0.999 × 1000 in floats gives), p50 the 500th, p0 the
        // first; of 1001, p50 is the 501st (ranks round up); empty is 0.
        let mut h = histogram();
        for v in 1..=1000u64 {
            put(&mut h, v * 1000, 1);
        }
        let at = |h: &Histogram<u64>, ppb| value_at(h, ppb) / 1000;
        assert_eq!(at(&h, 999_000_000), 999);
        assert_eq!(at(&h, 500_000_000), 500);
        assert_eq!(at(&h, 0), 1);
        assert_eq!(at(&h, PPB), 1000);
        put(&mut h, 1_001_000, 1);
        assert_eq!(at(&h, 500_000_000), 501);
        assert_eq!(value_at(&histogram(), 500_000_000), 0);
    }

    #[test]
    fn pacing_is_the_mean_planned_pause_plus_the_fastest_answer() {
        // Proves: a user that paused 0, 50 and 100 ms before three sends and
        // answered in 4, 2 and 900 ms expects to send every 50 + 2 ms; before
        // any answer it has no expected interval.
        let mut p = Pacing::default();
        assert_eq!(p.expected_interval(), None);
        for (pause, took) in [(0, 4), (50, 2), (100, 900)] {
            p.sent(ms(pause));
            p.answered(ms(took));
        }
        assert_eq!(p.expected_interval(), Some(ms(52)));
    }

    #[test]
    fn time_watching_an_events_stream_counts_in_the_pacing_so_ordinary_answers_add_no_samples() {
        // Proves (found from outside: corrected percentiles came out below the raw ones and
        // the headline held 20–50 samples per request): a user that pauses 0 ms but watches a
        // stream 12 ms per send expects to send every 12 ms + its fastest answer; then a
        // 7 ms answer adds no synthetic sample and a 2 s stall still adds one per interval.
        let mut p = Pacing::default();
        for took in [1, 2] {
            p.sent(ms(0));
            p.watched(ms(12));
            p.answered(ms(took));
        }
        assert_eq!(p.expected_interval(), Some(ms(13)));
        let mut l = Latencies::new(ms(1000), false);
        l.record("POST /v1/orders", sample(0, 0, 7, Some(13)));
        let e = &l.endpoints["POST /v1/orders"];
        assert_eq!(
            e.headline.len(),
            1,
            "an ordinary answer: no synthetic samples"
        );
        l.record("POST /v1/orders", sample(0, 0, 2_000, Some(13)));
        let e = &l.endpoints["POST /v1/orders"];
        assert_eq!(
            e.headline.len(),
            2 + (2_000 - 13) / 13,
            "a stall: one per expected interval past the first"
        );
    }

    #[test]
    fn each_tag_holds_one_basis_in_the_log_the_distributions_and_the_headline() {
        // Proves: the interval log carries every endpoint under two tags,
        // headline and `.raw`, per interval; the `.hgrm` files are named by
        // the same tags; the report's headline is the headline tag's data
        // and the timeline counts requests, not synthetic samples.
        let mut l = Latencies::new(ms(1000), false);
        l.record("POST /v1/orders", sample(0, 0, 1500, Some(100)));
        l.record("GET /v1/orders/{id}", sample(10, 10, 20, Some(100)));
        l.record(ORDER_TO_CONFIRMED, sample(0, 0, 1500, None));
        assert_eq!(l.requests(), 2);
        let log =
            String::from_utf8(l.interval_log(Duration::from_secs(1_700_000_000)).unwrap()).unwrap();
        for tag in [
            "Tag=POST_v1_orders,",
            "Tag=POST_v1_orders.raw,",
            "Tag=GET_v1_orders_id,",
            "Tag=GET_v1_orders_id.raw,",
            "Tag=order_confirmed,",
        ] {
            assert!(log.contains(tag), "{tag} in {log}");
        }
        let names: Vec<String> = l.distributions().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "GET_v1_orders_id.hgrm",
                "GET_v1_orders_id.raw.hgrm",
                "POST_v1_orders.hgrm",
                "POST_v1_orders.raw.hgrm",
                "order_confirmed.hgrm",
                "order_confirmed.raw.hgrm",
            ]
        );
        let post = &l.endpoints()[1];
        assert_eq!(post.name, "POST /v1/orders");
        // 1500 ms every 100 ms: 1500, 1400, … 100 ms.
        assert_eq!((post.headline.count, post.raw.count), (15, 1));
        let confirmed = &l.endpoints()[2];
        assert_eq!(confirmed.basis, Basis::Raw);
        assert_eq!(confirmed.headline, confirmed.raw);
        let timeline = l.timeline();
        assert_eq!(timeline.len(), 2);
        assert_eq!((timeline[0].requests, timeline[1].requests), (1, 1));
    }
}
