//! `stampede report merge`: one load run from the shares of one spread over
//! several load generators (`stampede load --shard I/N --start-at T`).
//!
//! Latencies are merged from the shares' HdrHistogram interval logs, never
//! from their percentiles (percentiles do not add): per tag and per
//! interval the histograms are added exactly, intervals aligned on the
//! shared start, and every percentile of the merged report is read from the
//! sums. Counts the logs do not carry (errors, shed answers, orders seen per
//! status) are summed from the shares' reports, after checking each report
//! agrees with its own log. The audit is judged once, on every share's
//! client evidence together ([`judge_shares`]).

use crate::audit::{self, Backoffice};
use crate::latency::{
    self, RAW_TAG_SUFFIX, histogram, percentiles, small_histogram, spectrum, tag_of, value_at,
};
use crate::shard::{self, ShardRecord};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, LogIteratorError};
use stampede_core::{Invariant, OptOuts, Verdict};
use stampede_reports::{EndpointLatency, Interval, LoadModel, LoadReport, is_order_measure};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest `latency.hlog` read, bytes.
pub const HLOG_BYTES_MAX: u64 = 1 << 30;

/// An interval log read back: per tag, per interval number, the histogram.
#[derive(Clone, Debug, Default)]
pub struct TaggedLog {
    /// When its first interval began, unix ms.
    pub start_unix_ms: u64,
    /// Per tag, per interval number.
    pub tags: BTreeMap<String, BTreeMap<usize, Histogram<u64>>>,
}

impl TaggedLog {
    /// The whole run under `tag`: its intervals added (empty if absent).
    pub fn whole(&self, tag: &str) -> Histogram<u64> {
        let mut sum = histogram();
        for h in self.tags.get(tag).into_iter().flat_map(|m| m.values()) {
            add(&mut sum, h);
        }
        sum
    }

    /// Adds `other`'s histograms into this one's, tag by tag, interval by
    /// interval; both must start at the same time.
    pub fn add(&mut self, other: &TaggedLog) -> Result<(), String> {
        if self.start_unix_ms != other.start_unix_ms {
            return Err(format!(
                "the logs start at {} and {} (unix ms): shards merge only when they share a --start-at",
                self.start_unix_ms, other.start_unix_ms
            ));
        }
        for (tag, intervals) in &other.tags {
            let ours = self.tags.entry(tag.clone()).or_default();
            for (slot, h) in intervals {
                add(ours.entry(*slot).or_insert_with(small_histogram), h);
            }
        }
        Ok(())
    }
}

/// `into += h`; a value past `into`'s bounds (none of ours are: every value
/// is clamped to [`latency::LATENCY_US_MAX`]) is clamped rather than lost.
fn add(into: &mut Histogram<u64>, h: &Histogram<u64>) {
    if into.add(h).is_err() {
        for v in h.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Reads an interval log written by `stampede load` (intervals of
/// `interval`, relative to the log's base time).
pub fn read_log(path: &Path, interval: Duration) -> Result<TaggedLog, String> {
    let fail = |what: String| format!("{}: {what}", path.display());
    let bytes = stampede_server::files::read_bounded(path, HLOG_BYTES_MAX).map_err(fail)?;
    let mut log = TaggedLog::default();
    let mut base = None;
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        match entry.map_err(|e| {
            fail(match e {
                LogIteratorError::ParseError { offset } => {
                    format!("not an interval log (unreadable at byte {offset})")
                }
            })
        })? {
            LogEntry::StartTime(_) => {}
            LogEntry::BaseTime(t) => base = Some(t),
            LogEntry::Interval(h) => {
                let base =
                    base.ok_or_else(|| fail("no #[BaseTime] before the intervals".into()))?;
                let tag = h.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
                let slot = (h.start_timestamp().as_secs_f64() / interval.as_secs_f64()).round();
                if !(0.0..latency::INTERVALS_MAX as f64).contains(&slot) {
                    return Err(fail(format!(
                        "interval at {:?} is out of range",
                        h.start_timestamp()
                    )));
                }
                let encoded = base64::engine::general_purpose::STANDARD
                    .decode(h.encoded_histogram())
                    .map_err(|e| fail(format!("tag {tag}: bad base64: {e}")))?;
                let decoded: Histogram<u64> = deserializer
                    .deserialize(&mut std::io::Cursor::new(encoded))
                    .map_err(|e| fail(format!("tag {tag}: bad histogram: {e:?}")))?;
                let into = log.tags.entry(tag).or_default();
                add(
                    into.entry(slot as usize).or_insert_with(small_histogram),
                    &decoded,
                );
                log.start_unix_ms = base.as_millis() as u64;
            }
        }
    }
    if log.tags.is_empty() {
        return Err(fail("no histograms".into()));
    }
    Ok(log)
}

/// One share as the merge reads it: its folder, description, report and log.
pub struct ShareRun {
    /// Where it was read from.
    pub dir: PathBuf,
    /// Its `shard.json`.
    pub record: ShardRecord,
    /// Its `report.json`.
    pub report: LoadReport,
    /// Its `latency.hlog`.
    pub log: TaggedLog,
}

impl ShareRun {
    /// Reads `dir`'s `shard.json`, `latency.hlog` (and the report given,
    /// read by the caller from `report.json`) and checks they agree.
    pub fn read(dir: &Path, report: LoadReport) -> Result<ShareRun, String> {
        let record = ShardRecord::read(dir)?;
        let log = read_log(
            &dir.join("latency.hlog"),
            Duration::from_millis(record.interval_ms),
        )?;
        if log.start_unix_ms != record.start_unix_ms {
            return Err(format!(
                "{}: latency.hlog starts at {} but shard.json at {} (unix ms)",
                dir.display(),
                log.start_unix_ms,
                record.start_unix_ms
            ));
        }
        for e in &report.endpoints {
            let tag = tag_of(&e.name);
            let (raw, headline) = (
                log.whole(&format!("{tag}{RAW_TAG_SUFFIX}")),
                log.whole(&tag),
            );
            if raw.len() != e.raw.count || headline.len() != e.headline.count {
                return Err(format!(
                    "{}: report.json counts {} ({} headline) for {}, latency.hlog {} ({})",
                    dir.display(),
                    e.raw.count,
                    e.headline.count,
                    e.name,
                    raw.len(),
                    headline.len()
                ));
            }
        }
        Ok(ShareRun {
            dir: dir.to_path_buf(),
            record,
            report,
            log,
        })
    }
}

/// Checks the shares are the parts of one run: the same schedule, start,
/// interval and seed, each part once, none missing. Answers them in part order.
pub fn check_shares(mut shares: Vec<ShareRun>) -> Result<Vec<ShareRun>, String> {
    shares.sort_by_key(|s| s.record.share.index);
    let first = shares.first().ok_or("no shards to merge")?.record.clone();
    for s in &shares {
        let r = &s.record;
        let same = r.share.count == first.share.count
            && r.start_unix_ms == first.start_unix_ms
            && r.rate_per_sec == first.rate_per_sec
            && r.shape == first.shape
            && r.duration_ms == first.duration_ms
            && r.interval_ms == first.interval_ms
            && r.seed == first.seed
            && r.mix == first.mix;
        if !same {
            return Err(format!(
                "{} is not a part of the same run as {}: every shard needs the same --rate, --spike/--ramp, --duration, --seed, --mix, --start-at and N in --shard I/N",
                s.dir.display(),
                shares[0].dir.display()
            ));
        }
    }
    let have: Vec<u32> = shares.iter().map(|s| s.record.share.index).collect();
    let want: Vec<u32> = (1..=first.share.count).collect();
    if have != want {
        let missing: Vec<String> = want
            .iter()
            .filter(|i| !have.contains(i))
            .map(|i| format!("{i}/{}", first.share.count))
            .collect();
        return Err(format!(
            "the shards given are parts {have:?} of {}: each part exactly once (missing: {})",
            first.share.count,
            if missing.is_empty() {
                "none, but some are given twice".to_string()
            } else {
                missing.join(", ")
            }
        ));
    }
    Ok(shares)
}

/// Every share's log added into one.
pub fn merged_log(shares: &[ShareRun]) -> Result<TaggedLog, String> {
    let mut sum = TaggedLog {
        start_unix_ms: shares.first().map_or(0, |s| s.log.start_unix_ms),
        tags: BTreeMap::new(),
    };
    for s in shares {
        sum.add(&s.log)
            .map_err(|e| format!("{}: {e}", s.dir.display()))?;
    }
    Ok(sum)
}

/// The merged report's endpoints: percentiles and spectra from the merged
/// log, errors and shed answers summed from the shares' reports.
fn endpoints(shares: &[ShareRun], log: &TaggedLog) -> Result<Vec<EndpointLatency>, String> {
    let mut by_name: BTreeMap<&str, EndpointLatency> = BTreeMap::new();
    for e in shares.iter().flat_map(|s| &s.report.endpoints) {
        let merged = by_name.entry(&e.name).or_insert_with(|| {
            let tag = tag_of(&e.name);
            let (headline, raw) = (
                log.whole(&tag),
                log.whole(&format!("{tag}{RAW_TAG_SUFFIX}")),
            );
            EndpointLatency {
                name: e.name.clone(),
                requests: raw.len(),
                errors: 0,
                shed: 0,
                basis: e.basis,
                headline: percentiles(&headline),
                raw: percentiles(&raw),
                spectrum: spectrum(&headline),
                raw_spectrum: spectrum(&raw),
            }
        });
        if merged.basis != e.basis {
            return Err(format!("{}: measured on two bases by the shards", e.name));
        }
        merged.errors += e.errors;
        merged.shed += e.shed;
    }
    let mut out: Vec<EndpointLatency> = by_name.into_values().collect();
    out.sort_by_key(|e| {
        (
            is_order_measure(&e.name),
            e.name == stampede_reports::ORDER_TO_CONFIRMED,
        )
    });
    Ok(out)
}

/// The merged timeline: requests and headline latency per interval from the
/// merged log, errors and orders per status summed from the shares'
/// timelines (aligned: they share the start and the interval).
fn timeline(shares: &[ShareRun], log: &TaggedLog, interval_ms: u64) -> Vec<Interval> {
    let names: BTreeSet<&str> = shares
        .iter()
        .flat_map(|s| &s.report.endpoints)
        .map(|e| e.name.as_str())
        .filter(|n| !is_order_measure(n))
        .collect();
    let len = shares
        .iter()
        .map(|s| s.report.timeline.len())
        .max()
        .unwrap_or(0);
    (0..len)
        .map(|i| {
            let mut headline = small_histogram();
            let mut requests = 0;
            for name in &names {
                let tag = tag_of(name);
                let slot = |t: &str| log.tags.get(t).and_then(|m| m.get(&i));
                if let Some(h) = slot(&tag) {
                    add(&mut headline, h);
                }
                requests += slot(&format!("{tag}{RAW_TAG_SUFFIX}")).map_or(0, |h| h.len());
            }
            let mut orders_by_status = BTreeMap::new();
            let mut errors = 0;
            for s in shares {
                let t = &s.report.timeline;
                errors += t.get(i).map_or(0, |x| x.errors);
                // A shorter share's orders stay as it last saw them.
                for (status, n) in t
                    .get(i)
                    .or(t.last())
                    .map(|x| &x.orders_by_status)
                    .into_iter()
                    .flatten()
                {
                    *orders_by_status.entry(status.clone()).or_default() += n;
                }
            }
            Interval {
                start_ms: i as u64 * interval_ms,
                requests,
                errors,
                p50_us: value_at(&headline, 500_000_000),
                p99_us: value_at(&headline, 990_000_000),
                orders_by_status,
            }
        })
        .collect()
}

/// Notes every share made, once; the rest prefixed by the share; not the
/// shares' own "judged by the merge" notes (this is the merge).
fn notes(shares: &[ShareRun]) -> Vec<String> {
    let deferred = |s: &ShareRun, n: &str| n.starts_with(&format!("shard {}: ", s.record.share));
    let common: Vec<String> = shares
        .first()
        .map(|s| s.report.notes.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| shares.iter().all(|s| s.report.notes.contains(n)))
        .collect();
    let mut out = common.clone();
    for s in shares {
        for n in s
            .report
            .notes
            .iter()
            .filter(|n| !common.contains(n) && !deferred(s, n))
        {
            out.push(format!("shard {}: {n}", s.record.share));
        }
    }
    out
}

/// The merged report, thresholds and audit not yet judged (the caller sets
/// `audit`/`audit_not_done` and judges thresholds on the result).
pub fn merged_report(shares: &[ShareRun], log: &TaggedLog) -> Result<LoadReport, String> {
    let first = shares.first().ok_or("no shards to merge")?;
    let record = &first.record;
    let in_flight = shares
        .iter()
        .map(|s| match s.report.model {
            LoadModel::Open { max_in_flight, .. } => max_in_flight,
            LoadModel::Closed { users } => users,
        })
        .sum();
    let dirs: Vec<String> = shares.iter().map(|s| s.dir.display().to_string()).collect();
    let mut notes = notes(shares);
    notes.insert(
        0,
        format!(
            "merged from {} shards of one schedule started at unix ms {} ({}): latencies are their HdrHistogram logs added interval by interval, errors and orders seen summed from their reports",
            shares.len(),
            record.start_unix_ms,
            dirs.join(", ")
        ),
    );
    Ok(LoadReport {
        version: stampede_reports::REPORT_VERSION,
        title: format!(
            "load {} — {}/s for {} s, {} shards",
            first.report.design,
            record.rate_per_sec,
            record.duration_ms / 1000,
            shares.len()
        ),
        target: first.report.target.clone(),
        design: first.report.design.clone(),
        model: LoadModel::Open {
            rate_per_sec: record.rate_per_sec,
            max_in_flight: in_flight,
        },
        duration_ms: record.duration_ms,
        interval_ms: record.interval_ms,
        endpoints: endpoints(shares, log)?,
        timeline: timeline(shares, log, record.interval_ms),
        audit: Vec::new(),
        audit_not_done: None,
        thresholds: Vec::new(),
        files: Vec::new(),
        notes,
    })
}

/// The merged log and its `.hgrm` files, as (file name, bytes), in the
/// format `stampede load` writes.
pub fn merged_files(
    report: &LoadReport,
    log: &TaggedLog,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let comments: Vec<String> = report
        .endpoints
        .iter()
        .map(|e| {
            let tag = tag_of(&e.name);
            format!(
                "Tag={tag}: {}, {}; Tag={tag}{RAW_TAG_SUFFIX}: the same, as sent (merged shards)",
                e.name,
                latency::basis_words(e.basis)
            )
        })
        .collect();
    let rows = log
        .tags
        .iter()
        .flat_map(|(tag, m)| m.iter().map(move |(slot, h)| (*slot, tag.clone(), h)))
        .collect();
    let start = Duration::from_millis(log.start_unix_ms);
    let interval = Duration::from_millis(report.interval_ms);
    let mut files = vec![(
        "latency.hlog".to_string(),
        latency::write_interval_log(start, interval, &comments, rows)?,
    )];
    for tag in log.tags.keys() {
        files.push((
            format!("{tag}.hgrm"),
            latency::hgrm(&log.whole(tag)).into_bytes(),
        ));
    }
    Ok(files)
}

/// The invariants every share was told not to judge plus `extra`.
pub fn opt_outs(shares: &[ShareRun], extra: &[Invariant]) -> Result<OptOuts, String> {
    let mut out = OptOuts::none();
    for s in shares {
        for name in &s.record.skip {
            let i = Invariant::parse(name).ok_or_else(|| {
                format!(
                    "{}: unknown invariant {name:?} in shard.json",
                    s.dir.display()
                )
            })?;
            out = out.skip(i, format!("skipped by --skip of shard {}", s.record.share));
        }
    }
    for i in extra {
        out = out.skip(*i, "skipped by --skip");
    }
    Ok(out)
}

/// Judges the audit once on every share's evidence: waits (at most
/// `settle`) for the shop to settle, reads its catalog, audit and the PSP
/// ledger once, and gives the checker every share's client events as one
/// history. Answers the verdicts and the notes on what was judged.
pub async fn judge_shares(
    office: &Backoffice,
    shares: &[ShareRun],
    settle: Duration,
    opt_outs: &OptOuts,
) -> Result<(Vec<Verdict>, Vec<String>), String> {
    let mut histories = Vec::with_capacity(shares.len());
    for s in shares {
        histories.push(shard::read_clients_checked(
            &s.dir,
            crate::journey::CLIENT_EVENTS_MAX,
            s.record.clients,
        )?);
    }
    let client = shard::merge_histories(histories)?;
    let baseline = office
        .baseline_from_shop()
        .await
        .map_err(|e| e.to_string())?;
    let (after, settled) = office.settle(settle).await.map_err(|e| e.to_string())?;
    let mut notes = vec![format!(
        "audit judged once on every shard's client evidence together ({} events) with the shop's /admin/audit and the PSP's ledger read after the merge",
        client.len()
    )];
    if !settled {
        notes.push(format!(
            "the shop had not settled {settle:?} after the merge began: liveness is judged on the state it was in"
        ));
    }
    let terms = shares.first().map(|s| s.record.terms).unwrap_or_default();
    notes.push(baseline.provenance(&terms));
    let verdicts = office
        .judge(
            &baseline,
            client,
            &after,
            opt_outs,
            shares.first().map_or(0, |s| s.record.start_unix_ms),
        )
        .await
        .map_err(|e| e.to_string())?;
    notes.extend(audit::lost_to_faults(&verdicts));
    Ok((verdicts, notes))
}

/// The shares' thresholds if they agree (the same rules in the same order).
pub fn shared_thresholds(shares: &[ShareRun]) -> Result<Vec<String>, String> {
    let first = shares
        .first()
        .map(|s| s.record.thresholds.clone())
        .unwrap_or_default();
    match shares.iter().find(|s| s.record.thresholds != first) {
        None => Ok(first),
        Some(other) => Err(format!(
            "the shards were given different thresholds ({} has {:?}, {} has {:?}): give `report merge` the rules to judge with --threshold",
            shares[0].dir.display(),
            first,
            other.dir.display(),
            other.record.thresholds
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_an_interval_log_says_where_in_words() {
        // Proves a garbled latency.hlog is refused with its path and the byte where
        // reading stopped, not a debug dump of the parser's error.
        let path =
            std::env::temp_dir().join(format!("stampede-garbled-{}.hlog", std::process::id()));
        std::fs::write(&path, "this is not a log\n").unwrap();
        let err = read_log(&path, Duration::from_secs(1)).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(
            err.contains("not an interval log (unreadable at byte 0)"),
            "{err}"
        );
        assert!(!err.contains("ParseError"), "{err}");
    }

    fn log_of(values: &[(usize, &str, u64, u64)]) -> TaggedLog {
        let mut log = TaggedLog {
            start_unix_ms: 1_700_000_000_000,
            tags: BTreeMap::new(),
        };
        for &(slot, tag, value, count) in values {
            let h = log
                .tags
                .entry(tag.to_string())
                .or_default()
                .entry(slot)
                .or_insert_with(small_histogram);
            h.record_n(value, count).unwrap();
        }
        log
    }

    #[test]
    fn merged_histograms_add_counts_and_give_the_unions_percentiles() {
        // Proves: two logs added give, per tag and interval, the sum of the
        // counts; the whole-run percentiles of the merged log equal those of
        // one histogram holding the union of the samples (not any mix of the
        // parts' percentiles: the parts' p99s are 1 ms and 900 ms, the
        // union's is 900 ms and its p50 1 ms); the log survives being
        // written and read back; logs with different starts are refused.
        let a = log_of(&[(0, "x", 1_000, 980), (1, "z", 2_000, 5)]);
        let b = log_of(&[(0, "x", 900_000, 20), (1, "y", 7, 3)]);
        let mut sum = a.clone();
        sum.add(&b).unwrap();
        assert_eq!(sum.tags["x"][&0].len(), 1000);
        assert_eq!(sum.tags["z"][&1].len(), 5);
        assert_eq!(sum.tags["y"][&1].len(), 3);
        let mut union = histogram();
        union.record_n(1_000, 980).unwrap();
        union.record_n(900_000, 20).unwrap();
        let merged = sum.whole("x");
        assert_eq!(merged.len(), a.whole("x").len() + b.whole("x").len());
        assert_eq!(percentiles(&merged), percentiles(&union));
        assert_eq!(value_at(&a.whole("x"), 990_000_000), 1_000);
        assert_eq!(value_at(&merged, 500_000_000), 1_000);
        assert!(
            (899_000..=901_000).contains(&value_at(&merged, 990_000_000)),
            "{}",
            value_at(&merged, 990_000_000)
        );
        let written = latency::write_interval_log(
            Duration::from_millis(sum.start_unix_ms),
            Duration::from_secs(1),
            &[],
            sum.tags
                .iter()
                .flat_map(|(t, m)| m.iter().map(move |(s, h)| (*s, t.clone(), h)))
                .collect(),
        )
        .unwrap();
        let path = std::env::temp_dir().join(format!("stampede-merge-{}.hlog", std::process::id()));
        std::fs::write(&path, written).unwrap();
        let back = read_log(&path, Duration::from_secs(1)).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.start_unix_ms, sum.start_unix_ms);
        let counts = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect()
        };
        for (tag, m) in &sum.tags {
            for (slot, h) in m {
                assert_eq!(
                    counts(&back.tags[tag][slot]),
                    counts(h),
                    "{tag} interval {slot}"
                );
            }
        }
        let mut late = log_of(&[(0, "x", 1, 1)]);
        late.start_unix_ms += 1;
        assert!(sum.add(&late).unwrap_err().contains("share a --start-at"));
    }
}
