//! Our `latency.hlog` is a real HdrHistogram interval log: the `hdrhistogram`
//! package from PyPI — an implementation independent of the Rust crate that
//! wrote it — reads it back, tag by tag, to the same counts, maxima,
//! percentiles and buckets as the histograms behind our report.
//!
//! The data covers both loops: closed-loop requests corrected for a stall
//! (synthetic samples spread over many buckets), open-loop requests from
//! their due times, the raw tags, and many intervals. Python's HdrHistogram
//! rounds a percentile's rank to the nearest sample and Rust's rounds it up,
//! so every tag here holds a multiple of 1000 samples, where the two agree on
//! p50, p90, p99 and p99.9; the bucket-by-bucket comparison covers the rest.
//!
//! It needs python3 with `hdrhistogram` (`.ci/run` installs it into
//! `.ci/venv`): the interpreter is `$STAMPEDE_PYTHON`, else `.ci/venv`'s,
//! else `python3`. Without it the test fails under CI (`CI` set) and
//! otherwise prints NOT RUN and passes.

use hdrhistogram::Histogram;
use serde_json::Value;
use stampede_loadgen::latency::{Latencies, ORDER_TO_CONFIRMED, Sample, tag_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Closed loop: 1990 quick polls and 10 that waited out a 1010 ms stall with
/// users expecting to send every 10 ms (100 held-back samples each, so 2000
/// raw and 3000 corrected); 1000 posts; 1000 orders confirmed.
fn closed_loop() -> Latencies {
    let mut l = Latencies::new(Duration::from_secs(1), false);
    for i in 0..2000u64 {
        let sent = ms(i * 5);
        let took = if i % 200 == 7 {
            ms(1010)
        } else {
            us(300 + i * 7919 % 19_000)
        };
        let sample = Sample {
            sent,
            intended: sent,
            done: sent + took,
            failed: i % 97 == 0,
            shed: false,
            expected_interval: Some(ms(10)),
        };
        l.record("GET /v1/orders/{id}", sample);
    }
    for i in 0..1000u64 {
        let sent = ms(i * 9);
        let sample = Sample {
            sent,
            intended: sent,
            done: sent + us(800 + i * 104_729 % 40_000),
            failed: false,
            shed: false,
            expected_interval: Some(ms(50)),
        };
        l.record("POST /v1/orders", sample);
        let confirmed = Sample {
            done: sent + ms(200 + i * 31 % 3000),
            expected_interval: None,
            ..sample
        };
        l.record(ORDER_TO_CONFIRMED, confirmed);
    }
    l
}

/// Open loop: 2000 posts sent up to 300 ms after they were due.
fn open_loop() -> Latencies {
    let mut l = Latencies::new(Duration::from_millis(500), true);
    for i in 0..2000u64 {
        let intended = ms(i * 4);
        let sent = intended + us(i * 6_151 % 300_000);
        let sample = Sample {
            sent,
            intended,
            done: sent + us(500 + i * 2_713 % 30_000),
            failed: false,
            shed: false,
            expected_interval: None,
        };
        l.record("POST /v1/orders", sample);
    }
    l
}

/// The interpreter to use, if it has `hdrh`; `Err` says why not.
fn python() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv/bin/python");
    let candidate = match std::env::var_os("STAMPEDE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None if venv.exists() => venv,
        None => PathBuf::from("python3"),
    };
    let check = Command::new(&candidate)
        .args(["-c", "import hdrh.histogram, hdrh.log"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", candidate.display()))?;
    if !check.status.success() {
        return Err(format!(
            "{} cannot import hdrh (pip install hdrhistogram==0.10.8): {}",
            candidate.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    Ok(candidate)
}

/// What the Python implementation read from `log`.
fn read_with_python(python: &Path, log: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hlog_interop.py");
    let output = Command::new(python)
        .arg(script)
        .arg(log)
        .args(PERCENTILES.map(|p| p.to_string()))
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Python reader failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the reader prints JSON")
}

fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Every tag Python read holds what our side holds under it: the
/// report's count, maximum and percentiles, and the histogram's buckets.
fn same_as_ours(name: &str, ours: &Latencies, theirs: &Value) {
    let tags = theirs["tags"].as_object().expect("tags");
    let histograms = ours.tagged();
    let names: Vec<&String> = tags.keys().collect();
    assert_eq!(names, histograms.keys().collect::<Vec<_>>(), "{name}: tags");
    for e in ours.endpoints() {
        let tag = tag_of(&e.name);
        for (tag, p) in [(tag.clone(), e.headline), (format!("{tag}.raw"), e.raw)] {
            let t = &tags[&tag];
            assert_eq!(p.count % 1000, 0, "{name} {tag}: counts where ranks agree");
            assert_eq!(t["count"].as_u64(), Some(p.count), "{name} {tag}: count");
            assert_eq!(t["max"].as_u64(), Some(p.max_us), "{name} {tag}: max");
            let read: Vec<u64> = t["percentiles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let percentiles = vec![p.p50_us, p.p90_us, p.p99_us, p.p999_us];
            assert_eq!(read, percentiles, "{name} {tag}: p50, p90, p99, p99.9");
            let read: Vec<(u64, u64)> = t["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| (b[0].as_u64().unwrap(), b[1].as_u64().unwrap()))
                .collect();
            assert_eq!(read, buckets(histograms[&tag]), "{name} {tag}: buckets");
        }
    }
}

#[test]
fn python_hdrhistogram_reads_our_interval_log_to_the_same_numbers() {
    let python = match python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") => {
            panic!("the .hlog interop test must run in CI: {why}")
        }
        Err(why) => {
            eprintln!("NOT RUN: .hlog interop with Python's hdrhistogram: {why}");
            return;
        }
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hlog-interop");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, latencies) in [("closed", closed_loop()), ("open", open_loop())] {
        let log = dir.join(format!("{name}.hlog"));
        let bytes = latencies
            .interval_log(Duration::from_secs(1_700_000_000))
            .unwrap();
        std::fs::write(&log, bytes).unwrap();
        let theirs = read_with_python(&python, &log);
        eprintln!(
            "{name}: Python read {} intervals, tags {:?}",
            theirs["intervals"],
            theirs["tags"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
        );
        assert!(
            theirs["intervals"].as_u64().unwrap() > 10,
            "{name}: intervals"
        );
        same_as_ours(name, &latencies, &theirs);
    }
}
