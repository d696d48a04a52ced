//! The many-run commands end to end, through the real binary, on a scenario
//! small enough for a debug build: `sweep` finds and reports failing seeds
//! with exit 1 and passes the reference with exit 0; two shards merged equal
//! the whole sweep, trace for trace; `compare` puts designs side by side;
//! sweep, merge and compare each write a self-contained `report.html` with charts;
//! `shrink` leaves a smaller plan that `replay` shows still failing; a
//! malformed plan file is refused with exit 2.

mod common;

use common::{read_json, runs_of};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY: &str = "tests/scenarios/tiny-double-click.toml";

fn stampede(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stampede"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `dir`'s report.html, which must exist, name every one of `names`, carry an
/// SVG chart and be self-contained (no script, no URL).
fn assert_page(dir: &Path, names: &[&str]) -> String {
    let page = std::fs::read_to_string(dir.join("report.html"))
        .unwrap_or_else(|e| panic!("{}/report.html: {e}", dir.display()));
    for name in names {
        assert!(page.contains(name), "report.html does not name {name}");
    }
    assert!(page.contains("<svg"), "report.html has no chart");
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));
    page
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o` is bad input (exit 2) and its error says `says`.
fn assert_refused(o: &Output, says: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    assert!(stderr(o).contains(says), "{}", stderr(o));
}

#[test]
fn sweep_reports_failing_seeds_and_shards_merge_to_the_whole_sweep() {
    let whole = out_dir("sweep-whole");
    let o = stampede(&[
        "sweep",
        TINY,
        "--seeds",
        "1..4",
        "--design",
        "seed-repo",
        "--out",
        whole.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    for seed in 1..=4 {
        assert!(
            text.contains(&format!(
                "repro: stampede run {TINY} --seed {seed} --design seed-repo"
            )),
            "no repro line for seed {seed}:\n{text}"
        );
    }
    assert!(text.contains("took"), "the time taken is printed:\n{text}");
    let summary = read_json(&whole.join("summary.json"));
    assert_eq!(summary["totals"]["failed"], 4);
    assert!(
        whole
            .join("failures/tiny-double-click-seed-repo-1/trace.jsonl")
            .exists(),
        "a failing run's trace is kept"
    );
    let page = assert_page(
        &whole,
        &[
            "tiny-double-click",
            "one_order_per_key",
            "runs per CPU-second",
        ],
    );
    assert!(
        page.contains("<a href=\"failures/tiny-double-click-seed-repo-1/report.html\">"),
        "the page links a kept failing run"
    );
    assert!(page.contains(
        "stampede run tests/scenarios/tiny-double-click.toml --seed 4 --design seed-repo"
    ));

    let mut shards = Vec::new();
    for shard in ["1/2", "2/2"] {
        let dir = out_dir(&format!("sweep-shard-{}", &shard[..1]));
        let o = stampede(&[
            "sweep",
            TINY,
            "--seeds",
            "1..4",
            "--design",
            "seed-repo",
            "--shard",
            shard,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(read_json(&dir.join("summary.json"))["totals"]["runs"], 2);
        shards.push(dir.join("summary.json"));
    }
    let merged_dir = out_dir("sweep-merged");
    let o = stampede(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged_dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_page(
        &merged_dir,
        &["tiny-double-click", "one_order_per_key", "shards 1/2, 2/2"],
    );
    let merged = read_json(&merged_dir.join("summary.json"));
    assert_eq!(runs_of(&merged), runs_of(&summary));
    assert_eq!(merged["totals"], summary["totals"]);
}

#[test]
fn a_sweep_of_the_reference_passes_and_stops_early_only_when_asked() {
    let dir = out_dir("sweep-reference");
    let o = stampede(&[
        "sweep",
        TINY,
        "--seeds",
        "1..2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 runs: 2 passed, 0 failed"));

    let dir = out_dir("sweep-fail-fast");
    let o = stampede(&[
        "sweep",
        TINY,
        "--seeds",
        "1..20",
        "--design",
        "seed-repo",
        "--fail-fast",
        "--jobs",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["totals"]["runs"], 1);
    // It says it stopped, and how much it left: the other 19 seeds were not judged.
    let why = "19 of 20 runs not made: --fail-fast stopped the sweep at its first failure";
    assert_eq!(summary["incomplete"], why, "{summary}");
    assert!(stdout(&o).contains(why), "{}", stdout(&o));
}

#[test]
fn a_sweep_or_a_run_will_not_write_into_the_other_kinds_folder() {
    // Proves: a sweep whose --out is a run's folder (its trace.jsonl there) is refused before
    // any run, the run's summary kept; so is a run into a sweep's folder.
    let run_dir = out_dir("kinds-run");
    let run = stampede(&[
        "run",
        TINY,
        "--seed",
        "1",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", stdout(&run));
    let before = std::fs::read(run_dir.join("summary.json")).unwrap();
    let sweep = stampede(&[
        "sweep",
        TINY,
        "--seeds",
        "1..2",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert_refused(&sweep, "holds a run's result");
    assert_eq!(std::fs::read(run_dir.join("summary.json")).unwrap(), before);

    let sweep_dir = out_dir("kinds-sweep");
    let sweep = stampede(&[
        "sweep",
        TINY,
        "--seeds",
        "1..1",
        "--out",
        sweep_dir.to_str().unwrap(),
    ]);
    assert_eq!(sweep.status.code(), Some(0), "{}", stdout(&sweep));
    let run = stampede(&[
        "run",
        TINY,
        "--seed",
        "1",
        "--out",
        sweep_dir.to_str().unwrap(),
    ]);
    assert_refused(&run, "holds a sweep's result");
}

#[test]
fn a_sweep_stopped_by_sigterm_says_it_left_no_verdict() {
    // Proves: SIGTERM (as Ctrl-C) ends a sweep with exit 130 and a line saying the folder holds
    // no summary and no verdict, instead of a silent death; no summary.json is written.
    let dir = out_dir("sweep-interrupted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sweep", TINY, "--seeds", "1..5000", "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line is printed once the handler is in place.
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("sweeping"), "{first}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted: the sweep stopped before its summary")
            && stderr(&o).contains("no verdict"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("summary.json").exists());
}

#[test]
fn a_sweep_into_a_folder_used_before_keeps_only_its_own_failures() {
    // Proves: a passing sweep into the folder of a failing one leaves no failing trace in
    // failures/ that its summary does not name; the earlier failures are kept in
    // failures.old, and a third sweep replaces that (no pile of old runs).
    let dir = out_dir("sweep-reused");
    let sweep = |design: &str| {
        stampede(&[
            "sweep",
            TINY,
            "--seeds",
            "1..2",
            "--design",
            design,
            "--out",
            dir.to_str().unwrap(),
        ])
    };
    let kept = "tiny-double-click-seed-repo-1/trace.jsonl";
    assert_eq!(sweep("seed-repo").status.code(), Some(1));
    assert!(dir.join("failures").join(kept).exists());

    let o = sweep("reference");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        !dir.join("failures").exists(),
        "a sweep that found nothing has no failures/"
    );
    assert!(dir.join("failures.old").join(kept).exists());
    assert!(stdout(&o).contains("failures.old"), "{}", stdout(&o));

    assert_eq!(sweep("seed-repo").status.code(), Some(1));
    assert_eq!(sweep("reference").status.code(), Some(0));
    assert!(dir.join("failures.old").join(kept).exists());
    assert!(!dir.join("failures.old/failures.old").exists());
    assert!(!dir.join("failures").exists());
}

#[test]
fn a_sweep_stopped_midway_leaves_no_earlier_result_beside_its_failures() {
    // Proves (found from outside: a sweep stopped with Ctrl-C left the previous run's passing
    // summary.json and reports beside its own new failures): once a sweep starts, the folder
    // holds no earlier summary or report, so a stopped one leaves none that could be read as
    // its result.
    let dir = out_dir("sweep-stopped");
    let o = stampede(&[
        "sweep",
        TINY,
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(dir.join("summary.json").exists());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sweep", TINY, "--seeds", "1..500", "--jobs", "1", "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The sweep has started once its first run's folder work is under way: give it a moment.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let stopped = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the sweep was stopped, not finished: {status:?}"
    );
    for name in ["summary.json", "report.md", "report.html"] {
        assert!(
            !dir.join(name).exists(),
            "{name} of the earlier run is still there"
        );
    }
}

#[test]
fn compare_puts_the_designs_side_by_side() {
    let dir = out_dir("compare");
    let o = stampede(&[
        "compare",
        TINY,
        "--designs",
        "reference,seed-repo,reference+idempotency=none",
        "--seeds",
        "1..2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let summary = read_json(&dir.join("summary.json"));
    let columns = summary["designs"].as_array().unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["design"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["reference", "seed-repo", "reference+idempotency=none"]
    );
    assert_eq!(columns[0]["seeds_failing"], 0);
    assert_eq!(columns[1]["seeds_failing"], 2);
    assert_eq!(columns[2]["seeds_violating"]["one_order_per_key"], 2);
    assert!(stdout(&o).contains("one_order_per_key"));
    let page = assert_page(
        &dir,
        &[
            "reference",
            "seed-repo",
            "reference+idempotency=none",
            "one_order_per_key",
        ],
    );
    assert!(
        page.contains("<td>seeds failing</td><td class=\"num\">0/2</td><td class=\"num\">2/2</td>"),
        "the page's table counts as summary.json does"
    );
    assert!(
        dir.join("failures/tiny-double-click-seed-repo-1/trace.jsonl")
            .exists(),
        "a failing run's trace is kept"
    );
}

#[test]
fn shrink_leaves_a_smaller_plan_that_replay_shows_still_failing() {
    let dir = out_dir("shrink");
    let plan = dir.join("tiny.plan.json");
    let o = stampede(&[
        "shrink",
        TINY,
        "--seed",
        "1",
        "--design",
        "seed-repo",
        "--invariant",
        "one_order_per_key",
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let shrunk = read_json(&plan);
    let shoppers = shrunk["shoppers"].as_array().unwrap().len();
    assert_eq!(shoppers, 1, "one double-clicking shopper is enough");

    let o = stampede(&[
        "replay",
        plan.to_str().unwrap(),
        "--json",
        "--out",
        dir.join("replay").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "the shrunk plan still fails");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdict = summary["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["invariant"] == "one_order_per_key")
        .unwrap();
    assert_eq!(verdict["outcome"], "violated");
    assert!(
        summary["repro"]
            .as_str()
            .unwrap()
            .starts_with("stampede replay ")
    );
}

#[test]
fn bad_plans_and_seed_lists_are_refused_with_exit_2() {
    let dir = out_dir("bad-plans");
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"version\": 1").unwrap();
    let o = stampede(&["replay", garbage.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a plan file"));

    // A shrunk plan edited by hand to name a host the topology lacks.
    let plan = dir.join("edited.plan.json");
    let o = stampede(&[
        "shrink",
        TINY,
        "--seed",
        "1",
        "--design",
        "seed-repo",
        "--max-runs",
        "1",
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    let mut edited = read_json(&plan);
    edited["shoppers"][0]["host"] = 99.into();
    std::fs::write(&plan, edited.to_string()).unwrap();
    let o = stampede(&["replay", plan.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shoppers[0].host"), "{err}");

    let o = stampede(&["sweep", TINY, "--seeds", "9..1"]);
    assert_eq!(o.status.code(), Some(2));
    let o = stampede(&["sweep", TINY, "--shard", "3/2"]);
    assert_eq!(o.status.code(), Some(2));
    let o = stampede(&["shrink", TINY, "--seed", "1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "the reference holds: nothing to shrink"
    );
}

#[test]
fn a_report_piped_into_a_reader_that_has_gone_ends_quietly() {
    // Proves: `stampede sweep … | head -1` whose reader has gone ends with status 141 (as a
    // tool killed by SIGPIPE does) and no panic or backtrace, instead of panicking on the
    // broken pipe.
    let dir = out_dir("closed-pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sweep", TINY, "--seeds", "1..2", "--out"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("the binary ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn two_failing_scenario_files_of_one_name_keep_a_folder_each() {
    // Proves: a sweep over two files that share a scenario name keeps each failing run's
    // outputs in a folder of its own (the second gets `-2`), and each folder holds that run's
    // outputs (its trace hash) — neither overwrites the other.
    let dir = out_dir("same-name");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let tiny = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY)).unwrap();
    std::fs::write(files.join("a.toml"), &tiny).unwrap();
    std::fs::write(
        files.join("b.toml"),
        tiny.replace("stock = 100", "stock = 90"),
    )
    .unwrap();
    let out = dir.join("out");
    let swept = stampede(&[
        "sweep",
        files.to_str().unwrap(),
        "--seeds",
        "1",
        "--design",
        "textbook-naive",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(swept.status.code(), Some(1), "{swept:?}");
    let summary = read_json(&out.join("summary.json"));
    let runs = summary["runs"].as_array().unwrap();
    let kept: Vec<&str> = runs.iter().map(|r| r["kept"].as_str().unwrap()).collect();
    assert_eq!(kept.len(), 2);
    assert_ne!(kept[0], kept[1], "{kept:?}");
    for run in runs {
        let folder = out.join(run["kept"].as_str().unwrap());
        let its = read_json(&folder.join("summary.json"));
        assert_eq!(its["trace_hash"], run["trace_hash"], "{}", folder.display());
    }
}

#[test]
fn the_failures_a_sweep_keeps_are_the_first_listed_whatever_the_jobs() {
    // Proves (found from outside: `--keep-failures 2` kept the first failures to finish, so
    // `--jobs 1` and `--jobs 4` kept different folders, and neither kept the first listed):
    // the kept folders are the first failing runs in the listed order (files as named, then
    // seeds), though the sweep hands out the bigger file's runs first, with any `--jobs`; the
    // summary names exactly those, and no other folder is left behind.
    let dir = out_dir("keep-first-listed");
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let tiny = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY)).unwrap();
    std::fs::write(
        files.join("small.toml"),
        tiny.replace("tiny-double-click", "small"),
    )
    .unwrap();
    std::fs::write(
        files.join("big.toml"),
        tiny.replace("tiny-double-click", "big")
            .replace("count = 12", "count = 16"),
    )
    .unwrap();
    let mut kept_by_jobs = Vec::new();
    for jobs in ["1", "3"] {
        let out = dir.join(format!("out-{jobs}"));
        let o = stampede(&[
            "sweep",
            files.join("small.toml").to_str().unwrap(),
            files.join("big.toml").to_str().unwrap(),
            "--seeds",
            "1..3",
            "--design",
            "textbook-naive",
            "--keep-failures",
            "2",
            "--jobs",
            jobs,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let summary = read_json(&out.join("summary.json"));
        let runs = summary["runs"].as_array().unwrap();
        assert!(
            runs.iter().all(|r| r["passed"] == false),
            "every run fails: {runs:?}"
        );
        let kept: Vec<String> = runs
            .iter()
            .filter_map(|r| r["kept"].as_str().map(String::from))
            .collect();
        let mut on_disk: Vec<String> = std::fs::read_dir(out.join("failures"))
            .unwrap()
            .map(|e| format!("failures/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut named = kept.clone();
        named.sort();
        assert_eq!(
            on_disk, named,
            "--jobs {jobs}: folders the summary does not name"
        );
        kept_by_jobs.push(named);
    }
    let first = &kept_by_jobs[0];
    assert_eq!(
        first,
        &vec![
            "failures/small-textbook-naive-1".to_string(),
            "failures/small-textbook-naive-2".to_string()
        ]
    );
    assert_eq!(
        kept_by_jobs[1], *first,
        "--jobs 3 kept others than --jobs 1"
    );
}

#[test]
fn compare_refuses_a_design_named_twice() {
    // Proves: `compare --designs a,a` is bad input (exit 2, naming the design), not a column
    // counted twice; the same designs once each are compared.
    let twice = stampede(&[
        "compare",
        TINY,
        "--designs",
        "seed-repo,seed-repo",
        "--seeds",
        "1",
    ]);
    assert_eq!(twice.status.code(), Some(2), "{twice:?}");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("seed-repo twice"));
    let dir = out_dir("compare-once");
    let once = stampede(&[
        "compare",
        TINY,
        "--designs",
        "seed-repo,reference",
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(once.status.code(), Some(0), "{once:?}");
}

#[test]
fn a_merge_missing_a_shard_fails_unless_asked_to_accept_a_partial_one() {
    // Proves: shards of the reference that all held merge to exit 0 when every part is
    // there; with a part missing, or a run missing from a part, its seeds were not judged, so
    // the merge fails (exit 1, saying which, and its files say INCOMPLETE) unless `--partial`
    // accepts it (exit 0, still saying so); a part given twice and
    // parts of different splits (1/2 beside 1/3) are bad input (exit 2).
    let mut parts = Vec::new();
    for shard in ["1/2", "2/2", "1/3"] {
        let dir = out_dir(&format!("partial-shard-{}", shard.replace('/', "-of-")));
        let o = stampede(&[
            "sweep",
            TINY,
            "--seeds",
            "1..3",
            "--shard",
            shard,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        parts.push(dir.join("summary.json").display().to_string());
    }
    let merge = |summaries: &[&String], extra: &[&str]| {
        let out = out_dir("partial-merged");
        let mut args = vec!["merge"];
        args.extend(summaries.iter().map(|s| s.as_str()));
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        stampede(&args)
    };

    let all = merge(&[&parts[0], &parts[1]], &[]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    assert!(!stderr(&all).contains("missing"), "{}", stderr(&all));

    let half = merge(&[&parts[0]], &[]);
    assert_eq!(half.status.code(), Some(1), "{}", stderr(&half));
    assert!(
        stderr(&half).contains("shards 2/2 not given") && stderr(&half).contains("--partial"),
        "{}",
        stderr(&half)
    );
    // The files it wrote say so too: no PASS for a sweep half judged.
    let written = Path::new(env!("CARGO_TARGET_TMPDIR")).join("partial-merged");
    let summary = read_json(&written.join("summary.json"));
    assert!(
        summary["incomplete"]
            .as_str()
            .is_some_and(|why| why.contains("shards 2/2 not given")),
        "{summary}"
    );
    let md = std::fs::read_to_string(written.join("report.md")).unwrap();
    assert!(md.contains("INCOMPLETE"), "{md}");
    let html = std::fs::read_to_string(written.join("report.html")).unwrap();
    assert!(html.contains(">INCOMPLETE<"), "{html}");

    let accepted = merge(&[&parts[0]], &["--partial"]);
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    assert!(stderr(&accepted).contains("shards 2/2 not given"));

    // A part that lacks one of its runs (cut short, or edited) leaves that seed unjudged.
    let mut cut = read_json(Path::new(&parts[1]));
    let dropped = cut["runs"].as_array_mut().unwrap().pop().unwrap();
    let cut_path = out_dir("partial-cut").join("summary.json");
    std::fs::create_dir_all(cut_path.parent().unwrap()).unwrap();
    std::fs::write(&cut_path, cut.to_string()).unwrap();
    let cut_path = cut_path.display().to_string();
    let short = merge(&[&parts[0], &cut_path], &[]);
    assert_eq!(short.status.code(), Some(1), "{}", stderr(&short));
    let first = format!(
        "the first: seed {} of {}",
        dropped["seed"],
        dropped["scenario_file"].as_str().unwrap()
    );
    assert!(
        stderr(&short).contains("1 of the 3 runs") && stderr(&short).contains(&first),
        "{}",
        stderr(&short)
    );
    let short = merge(&[&parts[0], &cut_path], &["--partial"]);
    assert_eq!(short.status.code(), Some(0), "{}", stderr(&short));

    // The merge must not write over one of its own inputs.
    let shard_dir = Path::new(&parts[0]).parent().unwrap().to_str().unwrap();
    let over = stampede(&["merge", &parts[0], &parts[1], "--out", shard_dir]);
    assert_refused(&over, "is one of the summaries merged");

    let twice = merge(&[&parts[0], &parts[1], &parts[0]], &[]);
    assert_refused(&twice, "shard 1/2 is given twice");

    let mixed = merge(&[&parts[0], &parts[2]], &["--partial"]);
    assert_refused(&mixed, "different splits");
}

#[test]
fn a_sweep_says_which_invariants_a_scenario_leaves_unjudged() {
    // Proves: a scenario whose `invariants` list selects one invariant is swept with the
    // others named as not judged — in the terminal line beside its verdict and in each run's
    // record in summary.json — rather than passing as if every invariant had held.
    let dir = out_dir("sweep-opted");
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY)).unwrap();
    let opted = tiny.replace(
        "name = \"tiny-double-click\"",
        "name = \"tiny-opted\"\ninvariants = [\"no_oversell\"]",
    );
    assert_ne!(opted, tiny);
    let file = dir.join("tiny-opted.toml");
    std::fs::write(&file, opted).unwrap();
    let out = dir.join("out");
    let o = stampede(&[
        "sweep",
        file.to_str().unwrap(),
        "--seeds",
        "1..1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("1/1 seeds hold; not judged (the scenario opts out): "),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("timely_decisions"), "{}", stdout(&o));
    let summary = read_json(&out.join("summary.json"));
    let not_judged = summary["runs"][0]["not_judged"].as_array().unwrap();
    assert!(
        not_judged.iter().any(|n| n == "money_reconciles"),
        "{not_judged:?}"
    );
    assert!(
        !not_judged.iter().any(|n| n == "no_oversell"),
        "{not_judged:?}"
    );
}

#[test]
fn an_out_path_that_cannot_be_written_is_refused_before_any_run() {
    // Proves (found from outside: every run was simulated, then the folder failed and the
    // result was lost): `run`, `sweep`, `compare` and `shrink` check their `--out` first — a
    // path under a plain file is exit 2 with nothing simulated (no verdict, no "sweeping",
    // no "shrinking" printed); `shrink --out` naming a folder is refused the same way.
    let dir = out_dir("unwritable-out");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "hi").unwrap();
    let under = file.join("out");
    let under = under.to_str().unwrap();
    let seed_repo = ["--design", "seed-repo"];
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["run", TINY, "--seed", "1", "--out", under], "holds"),
        (
            vec!["sweep", TINY, "--seeds", "1..2", "--out", under],
            "sweeping",
        ),
        (
            vec![
                "compare",
                TINY,
                "--designs",
                "reference,seed-repo",
                "--seeds",
                "1",
                "--out",
                under,
            ],
            "compare",
        ),
        (
            vec!["shrink", TINY, "--seed", "1", "--out", under],
            "shrinking",
        ),
    ];
    for (mut args, work) in cases {
        if args[0] != "compare" {
            args.extend(seed_repo);
        }
        let o = stampede(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot create"), "{args:?}: {err}");
        assert!(
            !stdout(&o).contains(work),
            "{args:?} ran first: {}",
            stdout(&o)
        );
    }
    let o = stampede(&[
        "shrink",
        TINY,
        "--seed",
        "1",
        "--design",
        "seed-repo",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a folder"));
}

#[test]
fn a_merge_takes_parts_of_one_sweep_only() {
    // Proves (found from outside: shards of different scenario folders or `--set` overrides
    // merged as one complete sweep, a whole sweep given twice doubled its times, an edited
    // run was taken): parts that swept other files or another design are bad input (exit 2),
    // a whole sweep's summary merges with nothing, and a run that is not one the sweep made
    // (a seed outside its seeds, "passed" beside a violation) is refused; the two real halves
    // still merge (exit 0).
    let sweep = |name: &str, shard: &str, extra: &[&str]| {
        let dir = out_dir(name);
        let mut args = vec![
            "sweep",
            TINY,
            "--seeds",
            "1..2",
            "--out",
            dir.to_str().unwrap(),
        ];
        if !shard.is_empty() {
            args.extend(["--shard", shard]);
        }
        args.extend(extra);
        let o = stampede(&args);
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stdout(&o));
        dir.join("summary.json").display().to_string()
    };
    let first = sweep("one-sweep-1", "1/2", &[]);
    let second = sweep("one-sweep-2", "2/2", &[]);
    let overridden = sweep("one-sweep-2-set", "2/2", &["--set", "idempotency=none"]);
    let whole = sweep("one-sweep-whole", "", &[]);
    let merge = |summaries: &[&str]| {
        let out = out_dir("one-sweep-merged");
        let mut args = vec!["merge"];
        args.extend(summaries);
        args.extend(["--out", out.to_str().unwrap()]);
        stampede(&args)
    };
    let halves = merge(&[&first, &second]);
    assert_eq!(halves.status.code(), Some(0), "{}", stderr(&halves));
    let other = merge(&[&first, &overridden]);
    assert_refused(&other, "another sweep");
    for twice in [merge(&[&whole, &whole]), merge(&[&whole, &first])] {
        assert_refused(&twice, "whole sweep");
    }
    for edit in ["seed", "passed"] {
        let mut summary = read_json(Path::new(&second));
        match edit {
            "seed" => summary["runs"][0]["seed"] = 77.into(),
            _ => {
                summary["runs"][0]["passed"] = true.into();
                summary["runs"][0]["violated"] = serde_json::json!({"no_oversell": 1});
            }
        }
        let edited = out_dir(&format!("one-sweep-edited-{edit}"));
        std::fs::create_dir_all(&edited).unwrap();
        let path = edited.join("summary.json");
        std::fs::write(&path, summary.to_string()).unwrap();
        assert_refused(
            &merge(&[&first, path.to_str().unwrap()]),
            "not one this sweep made",
        );
    }
}

#[test]
fn a_merge_refuses_shards_run_on_an_edited_scenario_file() {
    // Proves (found from outside: shard 1 swept a file, the file was edited, shard 2 swept it
    // again, and the merge took both as one sweep): parts whose scenario contents differ are
    // refused (exit 2) though the path is the same; a comment edited in between is not a
    // change (the digest is of the scenario as parsed), so those parts still merge.
    let dir = out_dir("edited-scenario");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tiny.toml");
    let tiny = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY)).unwrap();
    let shard = |shard: &str, text: &str, name: &str| {
        std::fs::write(&file, text).unwrap();
        let out = dir.join(name);
        let o = stampede(&[
            "sweep",
            file.to_str().unwrap(),
            "--seeds",
            "1..2",
            "--shard",
            shard,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stderr(&o));
        out.join("summary.json").display().to_string()
    };
    let first = shard("1/2", &tiny, "one");
    let edited = shard(
        "2/2",
        &tiny.replace("count = 12", "count = 10"),
        "two-edited",
    );
    let commented = shard("2/2", &format!("# a note\n{tiny}"), "two-commented");
    let merge = |parts: [&str; 2]| {
        let out = dir.join("merged");
        stampede(&["merge", parts[0], parts[1], "--out", out.to_str().unwrap()])
    };
    assert_refused(&merge([&first, &edited]), "other contents");
    let fine = merge([&first, &commented]);
    assert_eq!(fine.status.code(), Some(0), "{}", stderr(&fine));
}

#[test]
fn a_device_or_an_endless_line_is_refused_without_being_read_whole() {
    // Proves (found from outside: `explain /dev/zero` aborted allocating a gigabyte; `run`,
    // `replay` and `merge` of /dev/zero took 1–1.5 GB before failing): every file a command
    // reads back must be a regular file, and a trace line past the bound is refused as such.
    if !Path::new("/dev/zero").exists() {
        return;
    }
    for args in [
        vec!["run", "/dev/zero"],
        vec!["replay", "/dev/zero"],
        vec!["merge", "/dev/zero"],
        vec!["explain", "/dev/zero", "--order", "ord_1"],
    ] {
        let o = stampede(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    let dir = out_dir("endless-line");
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.jsonl");
    std::fs::write(&trace, vec![b'x'; (1 << 20) + 2]).unwrap();
    let o = stampede(&["explain", trace.to_str().unwrap(), "--order", "ord_1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(":1: an event of more than 1048576 bytes"),
        "{err}"
    );
}

#[test]
fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
    // Proves (found from outside: `run`, `sweep`, `replay`, `merge` and `explain` of a named
    // pipe, or a sweep of a folder holding one, waited forever for a writer): each is refused
    // as not a regular file with exit 2, within seconds.
    let dir = out_dir("named-pipe");
    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    let pipe = dir.join("pipe.toml");
    let made = Command::new("mkfifo")
        .arg(&pipe)
        .arg(folder.join("a.toml"))
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo here: not run");
        return;
    }
    let pipe = pipe.to_str().unwrap();
    for args in [
        vec!["run", pipe],
        vec!["sweep", pipe, "--seeds", "1"],
        vec!["sweep", folder.to_str().unwrap(), "--seeds", "1"],
        vec!["replay", pipe],
        vec!["merge", pipe],
        vec!["explain", pipe, "--order", "ord_1"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stampede"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?} still waiting after 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
}

#[test]
fn a_scenario_file_named_twice_is_swept_once() {
    // Proves (found from outside: `sweep a.toml a.toml --seeds 1` reported "2 seeds" and kept
    // the same failure twice): a file named twice, here once through its folder's path, is
    // one set of runs.
    let dir = out_dir("named-twice");
    let again = format!(
        "tests/scenarios/../scenarios/{}",
        Path::new(TINY).file_name().unwrap().to_str().unwrap()
    );
    let o = stampede(&[
        "sweep",
        TINY,
        &again,
        "--seeds",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(runs_of(&summary).len(), 1, "{summary}");
}

#[test]
fn a_shrink_stopped_at_its_run_budget_is_the_same_whatever_the_jobs() {
    // Proves (found from outside: at --max-runs 60 one and two jobs wrote different plans):
    // the budget counts runs as if tried one by one, so the plan written at a budget that stops
    // the shrink part way is the same with 1 and 3 jobs, byte for byte, and the report says the
    // same number of runs.
    let dir = out_dir("shrink-budget");
    std::fs::create_dir_all(&dir).unwrap();
    for budget in ["4"] {
        let mut written = Vec::new();
        for jobs in ["1", "3"] {
            let plan = dir.join(format!("b{budget}-j{jobs}.plan.json"));
            let o = stampede(&[
                "shrink",
                TINY,
                "--seed",
                "1",
                "--design",
                "seed-repo",
                "--max-runs",
                budget,
                "--jobs",
                jobs,
                "--out",
                plan.to_str().unwrap(),
            ]);
            assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
            let runs = stdout(&o)
                .lines()
                .find(|l| l.trim_start().starts_with("to "))
                .map(|l| {
                    l.split(" in ")
                        .nth(1)
                        .unwrap_or("")
                        .split(',')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .expect("a `to` line");
            written.push((std::fs::read(&plan).unwrap(), runs));
        }
        assert!(
            written[0] == written[1],
            "budget {budget}: 1 job and 3 jobs differ ({} vs {})",
            written[0].1,
            written[1].1
        );
    }
}

#[test]
fn a_sweep_of_several_broken_files_names_every_one() {
    // Proves (found from outside: a folder with two broken scenario files named only the
    // first; the second showed up once the first was mended): every broken file is named
    // in the one refusal (exit 2), and nothing is simulated.
    let dir = out_dir("two-broken");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a-bad.toml"), dir.join("b-bad.toml"));
    std::fs::write(&a, "name = \"a\"\nshoppers = \"many\"\n").unwrap();
    std::fs::write(&b, "this is = = not toml\n").unwrap();
    let out = dir.join("out");
    let o = stampede(&[
        "sweep",
        a.to_str().unwrap(),
        TINY,
        b.to_str().unwrap(),
        "--seeds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_refused(&o, "a-bad.toml");
    assert!(stderr(&o).contains("b-bad.toml"), "{}", stderr(&o));
    assert!(!out.join("summary.json").exists(), "nothing was swept");
}

#[test]
fn report_of_a_simulation_folder_points_to_its_page_and_to_explain() {
    // Proves (found from outside: `stampede report <a run's folder>` said only "report.json:
    // cannot read it"): a simulation's folder is named as one, with its page and the
    // `explain` command, as bad input (exit 2); a folder with neither file is still refused.
    let dir = out_dir("report-of-a-run");
    let o = stampede(&["run", TINY, "--seed", "1", "--out", dir.to_str().unwrap()]);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{}",
        stderr(&o)
    );
    let o = stampede(&["report", dir.to_str().unwrap()]);
    assert_refused(&o, "a simulation's folder");
    assert!(stderr(&o).contains("stampede explain"), "{}", stderr(&o));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = stampede(&["report", empty.to_str().unwrap()]);
    assert_refused(&o, "report.json");
    assert!(!stderr(&o).contains("simulation"), "{}", stderr(&o));
}
