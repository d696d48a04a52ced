//! The "Beyond one machine" recipes run as local processes.
//!
//! Sweeps: `deploy/shard.sh INDEX N stampede sweep …` for every 0-based
//! index, as the GitHub Actions matrix and the Kubernetes Indexed Job call
//! it, then `stampede merge`, give exactly one whole `stampede sweep`: the
//! same seeds, trace hashes and verdicts. Loads: two `stampede load --shard
//! i/2 --start-at T` processes against one served shop, then `stampede report
//! merge`: every endpoint's merged count is the sum of the shards' and the
//! whole schedule's, the merged percentiles are those of the shards'
//! histograms added (read here with the `hdrhistogram` crate), a threshold
//! no shard meets alone is judged once and passes on the merged counts, and
//! the audit is judged once on both shards' evidence (holding); without the
//! shop the merge says the audit was not judged and fails.

mod common;

use base64::Engine as _;
use common::{fresh_dir, read_json, runs_of, say};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const TINY: &str = "tests/scenarios/tiny-double-click.toml";
const BIN: &str = env!("CARGO_BIN_EXE_stampede");

/// The repository's root (the recipes' working directory).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `deploy/shard.sh index count stampede args…`, from the repository's root.
fn shard_sh(index: u32, count: u32, args: &[&str]) -> Output {
    Command::new(repo().join("deploy/shard.sh"))
        .current_dir(repo())
        .env("STAMPEDE_SHARD_FINDINGS_OK", "1")
        .arg(index.to_string())
        .arg(count.to_string())
        .arg(BIN)
        .args(args)
        .output()
        .expect("deploy/shard.sh runs")
}

fn stampede_in_repo(args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(repo())
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn recipe_sweep_shards_merge_to_the_whole_sweep() {
    let tiny = format!("cli/{TINY}");
    let root = fresh_dir("beyond-sweep");
    let whole = root.join("whole");
    let sweep = ["sweep", &tiny, "--seeds", "1..4", "--design", "seed-repo"];
    let o = stampede_in_repo(&[&sweep[..], &["--out", whole.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", say(&o));
    let count = 3;
    let pattern = root.join("shard-{shard}");
    let mut summaries = Vec::new();
    for index in 0..count {
        let o = shard_sh(
            index,
            count,
            &[&sweep[..], &["--out", pattern.to_str().unwrap()]].concat(),
        );
        // Violations found are the merge's to report: the wrapper exits 0.
        assert_eq!(o.status.code(), Some(0), "shard index {index}: {}", say(&o));
        let summary = root.join(format!("shard-{}/summary.json", index + 1));
        let shards = &read_json(&summary)["shards"];
        assert_eq!(shards[0]["index"], index + 1, "{shards}");
        summaries.push(summary.to_str().unwrap().to_string());
    }
    let merged = root.join("merged");
    let mut args = vec!["merge"];
    args.extend(summaries.iter().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap()]);
    let o = stampede_in_repo(&args);
    assert_eq!(o.status.code(), Some(1), "{}", say(&o));
    let (whole, merged) = (
        read_json(&whole.join("summary.json")),
        read_json(&merged.join("summary.json")),
    );
    assert_eq!(runs_of(&merged).len(), 4);
    assert_eq!(runs_of(&merged), runs_of(&whole));
    assert_eq!(merged["totals"], whole["totals"]);
    // The wrapper refuses an index past the count, and bad input stays exit 2.
    assert_eq!(shard_sh(3, 3, &["sweep", &tiny]).status.code(), Some(2));
    let bad = shard_sh(0, 1, &["sweep", &tiny, "--seeds", "9..1"]);
    assert_eq!(bad.status.code(), Some(2), "{}", say(&bad));
}

#[test]
fn recipes_call_the_wrapper_with_the_engines_0_based_index() {
    // Proves: both recipes hand the engine's own index (0-based) to
    // deploy/shard.sh, as the sweep test above does, with as many indexes as
    // shards; and they parse as YAML where python3 has PyYAML (NOT RUN otherwise).
    let workflow = std::fs::read_to_string(repo().join(".github/workflows/sweep-shards.yml"))
        .expect("the workflow");
    assert!(workflow.contains("deploy/shard.sh ${{ matrix.shard }} \"$SHARDS\""));
    assert!(workflow.contains("shard: [0, 1, 2, 3]") && workflow.contains("SHARDS: 4"));
    assert!(workflow.contains("stampede merge out/shard-*/summary.json"));
    let job = std::fs::read_to_string(repo().join("deploy/k8s/sweep-indexed-job.yaml"))
        .expect("the manifest");
    assert!(job.contains("completionMode: Indexed") && job.contains("completions: 4"));
    assert!(job.contains("command: [\"/stampede/deploy/shard.sh\"]"));
    assert!(job.contains("- \"$(JOB_COMPLETION_INDEX)\"\n            - \"4\""));
    let merge = std::fs::read_to_string(repo().join("deploy/k8s/sweep-merge-job.yaml"))
        .expect("the merge job");
    assert!(merge.contains("stampede merge /results/shard-*/summary.json"));
    let files = [
        ".github/workflows/sweep-shards.yml",
        "deploy/k8s/sweep-indexed-job.yaml",
        "deploy/k8s/sweep-merge-job.yaml",
    ];
    let check = "import sys, yaml\nfor f in sys.argv[1:]: list(yaml.safe_load_all(open(f)))";
    match Command::new("python3")
        .current_dir(repo())
        .args(["-c", "import yaml"])
        .output()
    {
        Ok(o) if o.status.success() => {
            let o = Command::new("python3")
                .current_dir(repo())
                .args(["-c", check])
                .args(files)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", say(&o));
        }
        _ => eprintln!("NOT RUN: the YAML parse (python3 with PyYAML not found)"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Every tag's whole-run histogram in an interval log, its intervals added.
fn read_hlog(path: &Path) -> BTreeMap<String, Histogram<u64>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tags: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(h) = entry.expect("a valid log line") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .unwrap();
            let decoded: Histogram<u64> = deserializer
                .deserialize(&mut std::io::Cursor::new(raw))
                .unwrap();
            let tag = h.tag().expect("tagged").as_str().to_string();
            let sum = tags
                .entry(tag)
                .or_insert_with(|| Histogram::new_with_bounds(1, 600_000_000, 3).unwrap());
            sum.add(&decoded).unwrap();
        }
    }
    tags
}

/// The value at rank ⌈q·n⌉ (at least 1) of `h`, counted here from its buckets.
fn at_rank(h: &Histogram<u64>, per_million: u64) -> u64 {
    let rank = (u128::from(per_million) * u128::from(h.len()))
        .div_ceil(1_000_000)
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

/// A tag as the loadgen names it: runs of non-alphanumerics → one `_`.
fn tag(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join("_")
}

fn endpoint<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

/// Starts a `stampede load --shard` child, its output in `out.log`.
fn spawn_load(shop: &str, psp: &str, shard: &str, start: u64, out: &Path) -> std::process::Child {
    let log = std::fs::File::create(out.with_extension("log")).unwrap();
    Command::new(BIN)
        .args(["load", "--host", shop, "--psp", psp, "--shard", shard])
        .args([
            "--start-at",
            &start.to_string(),
            "--rate",
            "20/s",
            "--duration",
            "2s",
        ])
        // Few goose users: each is built before the start (slowly in a debug build).
        .args(["--drain", "3s", "--max-in-flight", "16", "--json"])
        .args(["--mix", "double_click=0,abandon=0,decline=0"])
        .args(["--threshold", "throughput>=15/s for POST /v1/orders"])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the binary runs")
}

#[test]
fn recipe_load_shards_merge_exactly_and_are_judged_once() {
    let root = fresh_dir("beyond-load");
    std::fs::create_dir_all(&root).unwrap();
    let shop: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let psp: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let _psp = common::start_psp(&root, psp, shop);
    let serve = [
        "serve",
        "--addr",
        &shop.to_string(),
        "--psp",
        &psp.to_string(),
        "--store",
        "memory",
        "--catalog",
        "load",
    ];
    let _shop = common::spawn(&serve, &root.join("shop.log"));
    common::wait_ready(shop, "/v1/products", &root.join("shop.log"));
    let (shop_url, psp_url) = (format!("http://{shop}"), format!("http://{psp}"));

    // Both shards start the schedule at the same instant, 5 s from now.
    let start = now_ms() + 5_000;
    let dirs: Vec<PathBuf> = (1..=2).map(|i| root.join(format!("shard-{i}"))).collect();
    let children: Vec<_> = (1..=2)
        .map(|i| spawn_load(&shop_url, &psp_url, &format!("{i}/2"), start, &dirs[i - 1]))
        .collect();
    for (i, mut child) in children.into_iter().enumerate() {
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(dirs[i].with_extension("log")).unwrap_or_default();
        assert_eq!(status.code(), Some(0), "shard {}: {log}", i + 1);
    }
    let shards: Vec<Value> = dirs
        .iter()
        .map(|d| read_json(&d.join("report.json")))
        .collect();
    for (dir, report) in dirs.iter().zip(&shards) {
        assert!(
            report["audit_not_done"].is_string(),
            "a shard alone is not judged"
        );
        assert!(report["thresholds"].as_array().unwrap().is_empty());
        assert!(
            report["notes"]
                .to_string()
                .contains("thresholds deferred to `stampede report merge`"),
            "a shard says its thresholds wait for the merge: {}",
            report["notes"]
        );
        assert!(std::fs::metadata(dir.join("clients.jsonl")).unwrap().len() > 0);
    }

    let merged = root.join("merged");
    let mut merge = vec!["report".to_string(), "merge".into()];
    merge.extend(dirs.iter().map(|d| d.display().to_string()));
    merge.extend(["--host", &shop_url, "--psp", &psp_url, "--settle", "20s"].map(String::from));
    merge.extend(["--out".to_string(), merged.display().to_string()]);
    let o = common::stampede(&merge.iter().map(String::as_str).collect::<Vec<_>>());
    let report = read_json(&merged.join("report.json"));
    assert_eq!(o.status.code(), Some(0), "{}\n{report:#}", say(&o));

    // Counts: the sums of the shards', and the whole schedule's 40 journeys placed once each.
    let merged_log = read_hlog(&merged.join("latency.hlog"));
    let shard_logs: Vec<_> = dirs
        .iter()
        .map(|d| read_hlog(&d.join("latency.hlog")))
        .collect();
    for e in report["endpoints"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let parts: Vec<u64> = shards
            .iter()
            .map(|s| endpoint(s, name).map_or(0, |x| x["requests"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            e["requests"].as_u64().unwrap(),
            parts.iter().sum::<u64>(),
            "{name}"
        );
        // Percentiles: from the shards' histograms added, as read here.
        for (basis, suffix) in [("headline", ""), ("raw", ".raw")] {
            let t = format!("{}{suffix}", tag(name));
            let mut sum = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
            for log in &shard_logs {
                if let Some(h) = log.get(&t) {
                    sum.add(h).unwrap();
                }
            }
            assert_eq!(merged_log[&t].len(), sum.len(), "{t} in the merged log");
            let p = &e[basis];
            assert_eq!(p["count"].as_u64().unwrap(), sum.len(), "{name} {basis}");
            for (field, per_million) in [
                ("p50_us", 500_000),
                ("p90_us", 900_000),
                ("p99_us", 990_000),
                ("p999_us", 999_000),
            ] {
                assert_eq!(
                    p[field].as_u64().unwrap(),
                    at_rank(&sum, per_million),
                    "{name} {basis} {field}"
                );
            }
            assert_eq!(
                p["max_us"].as_u64().unwrap(),
                sum.max(),
                "{name} {basis} max"
            );
        }
    }
    // The timeline: the shards' intervals line up on the shared start and add.
    let per_interval = |r: &Value| -> Vec<u64> {
        r["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["requests"].as_u64().unwrap())
            .collect()
    };
    let mut summed = vec![0; per_interval(&report).len()];
    for shard in &shards {
        for (i, n) in per_interval(shard).into_iter().enumerate() {
            summed[i] += n;
        }
    }
    assert_eq!(per_interval(&report), summed);
    let posts = endpoint(&report, "POST /v1/orders").expect("orders placed");
    assert_eq!(
        posts["requests"], 40,
        "20/s for 2 s, each journey placed once"
    );
    let shard_posts: Vec<u64> = shards
        .iter()
        .map(|s| {
            endpoint(s, "POST /v1/orders").unwrap()["requests"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(shard_posts, [20, 20], "each shard runs every other slot");

    // The threshold: judged once, on the merged counts (40 in 2 s = 20/s); each
    // shard alone placed 20 in 2 s = 10/s, below it.
    let thresholds = report["thresholds"].as_array().unwrap();
    assert_eq!(thresholds.len(), 1, "{thresholds:?}");
    assert_eq!(thresholds[0]["passed"], true, "{thresholds:?}");
    assert_eq!(thresholds[0]["measured"], "20.0/s");
    assert!(shard_posts.iter().all(|&n| (n as f64 / 2.0) < 15.0));

    // The audit: judged once, on both shards' evidence, and it holds.
    let audit = report["audit"].as_array().unwrap();
    assert!(audit.len() >= 10, "{audit:?}");
    for v in audit {
        assert_eq!(v["outcome"], "holds", "{v}");
    }
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("audit judged once on every shard's client evidence"),
        "{notes}"
    );
    assert!(report.get("audit_not_done").is_none());

    // Without the shop, the audit is not judged and the merge fails, unless asked for.
    let out = root.join("no-shop");
    let base = [
        "report",
        "merge",
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
    ];
    let o = common::stampede(&[&base[..], &["--out", out.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", say(&o));
    assert!(say(&o).contains("NOT judged"), "{}", say(&o));
    assert!(say(&o).contains("verdict NOT JUDGED"), "{}", say(&o));
    let o =
        common::stampede(&[&base[..], &["--no-audit", "--out", out.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", say(&o));
    assert!(
        say(&o).contains("verdict NOT JUDGED (AS ASKED)"),
        "opting out is not called a pass: {}",
        say(&o)
    );
    // One shard alone is not the run: refused as bad input.
    let o = common::stampede(&["report", "merge", dirs[0].to_str().unwrap(), "--no-audit"]);
    assert_eq!(o.status.code(), Some(2), "{}", say(&o));
    assert!(say(&o).contains("missing: 2/2"), "{}", say(&o));
    let twice = [
        dirs[0].to_str().unwrap(),
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
    ];
    let o = common::stampede(&[&["report", "merge", "--no-audit"][..], &twice].concat());
    assert_eq!(o.status.code(), Some(2), "{}", say(&o));
    assert!(say(&o).contains("given twice"), "{}", say(&o));
    // A shard whose shoppers did something else (another --mix) is not a part of this run.
    let other = dirs[1].with_extension("other-mix");
    let _ = std::fs::remove_dir_all(&other);
    let copied = std::process::Command::new("cp")
        .args(["-r", dirs[1].to_str().unwrap(), other.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    let record_path = other.join("shard.json");
    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(&record_path).unwrap()).unwrap();
    assert!(record["mix"].is_object(), "{record}");
    record["mix"]["abandon"] = 0.9.into();
    std::fs::write(&record_path, record.to_string()).unwrap();
    let mixed = [dirs[0].to_str().unwrap(), other.to_str().unwrap()];
    let o = common::stampede(&[&["report", "merge", "--no-audit"][..], &mixed].concat());
    assert_eq!(o.status.code(), Some(2), "{}", say(&o));
    assert!(say(&o).contains("--mix"), "{}", say(&o));
}
