//! Determinism, verified across processes: the same (scenario, design, seed)
//! draws the same plan and gives the same trace hash in two separate
//! processes (the `stampede-sim-trace` binary, both at once), the plan a
//! child draws is the one this process draws, and different runs give
//! different traces — for every fault kind a plan can inject, and in
//! release builds for every shipped scenario file too.

mod common;

use stampede_server::Design;
use stampede_sim::FAULT_KINDS;
use stampede_sim::{CrashSpec, PartitionSpec, StallSpec};
use stampede_sim::{Plan, Scenario, scenarios};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One run to repeat: a scenario file, a seed and design switches.
struct Case {
    label: String,
    file: PathBuf,
    seed: u64,
    switches: Vec<&'static str>,
}

impl Case {
    /// A built-in scenario, written out as a TOML file for the children.
    fn built_in(label: &str, scenario: &Scenario, seed: u64, switches: &[&'static str]) -> Case {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("determinism");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{label}.toml"));
        // Written aside and renamed into place: the tests of this file run at once, and each
        // writes every case's file while the other may be reading it.
        let aside = dir.join(format!("{label}.toml.{:?}", std::thread::current().id()));
        std::fs::write(&aside, toml::to_string(scenario).unwrap()).unwrap();
        std::fs::rename(&aside, &file).unwrap();
        Case {
            label: label.into(),
            file,
            seed,
            switches: switches.to_vec(),
        }
    }

    /// The plan this process draws for the case.
    fn plan(&self) -> Plan {
        let scenario = Scenario::load(&self.file).unwrap_or_else(|e| panic!("{e}"));
        let mut design = Design::reference();
        for switch in &self.switches {
            design.apply(switch).unwrap();
        }
        Plan::generate(&scenario, design, self.seed)
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_stampede-sim-trace"))
            .arg(&self.file)
            .arg(self.seed.to_string())
            .args(&self.switches)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the trace binary starts")
    }
}

/// A child's `<draw hash> <trace hash>` line.
fn output(child: Child, label: &str) -> String {
    let out = child.wait_with_output().expect("the trace binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{label}: {stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every planned fault at once on the small flash sale, with express
/// checkout and a store that loses its unsynced tail: each fault kind in one
/// cheap run (no shipped scenario has a PSP stall or express checkout).
fn all_faults() -> Scenario {
    let mut s = scenarios::flash(40, 10);
    s.name = "all-faults".into();
    s.shoppers.express = 0.5;
    let f = &mut s.faults;
    f.api_crashes = CrashSpec {
        count: 1,
        down_ms: 300,
    };
    f.worker_crashes = CrashSpec {
        count: 1,
        down_ms: 900,
    };
    f.db_crashes = CrashSpec {
        count: 1,
        down_ms: 700,
    };
    f.lose_unsynced_tail = true;
    f.partitions = vec![
        PartitionSpec {
            a: "api".into(),
            b: "db".into(),
            count: 1,
            duration_ms: 400,
        },
        PartitionSpec {
            a: "worker".into(),
            b: "psp".into(),
            count: 1,
            duration_ms: 800,
        },
    ];
    f.psp_stalls = StallSpec {
        count: 1,
        duration_ms: 2_000,
    };
    f.forged_webhooks = 5;
    s
}

/// The cases: a cheap set covering every fault kind (debug builds run only
/// these), plus every shipped scenario and a naive design in release.
fn cases() -> Vec<Case> {
    let mut smoke_db = scenarios::smoke();
    smoke_db.name = "smoke-db-crash".into();
    smoke_db.faults.db_crashes = CrashSpec {
        count: 1,
        down_ms: 500,
    };
    smoke_db.faults.window_start_ms = 200;
    smoke_db.faults.window_end_ms = 800;
    let mut cases = vec![
        Case::built_in("smoke-1", &scenarios::smoke(), 1, &[]),
        Case::built_in("smoke-2", &scenarios::smoke(), 2, &[]),
        Case::built_in("smoke-db-crash", &smoke_db, 3, &[]),
        Case::built_in("all-faults", &all_faults(), 1, &[]),
    ];
    if cfg!(debug_assertions) {
        return cases;
    }
    // A design that breaks invariants, so violations and the live monitor's
    // findings are part of a compared trace.
    let naive = scenarios::catch_cases()
        .into_iter()
        .find(|c| c.switch == "webhook_dedup=off")
        .unwrap();
    cases.push(Case::built_in(
        "naive-webhook-dedup",
        &naive.mix,
        1,
        &["webhook_dedup=off"],
    ));
    // A store that answers before it syncs: its crashes take back writes
    // clients saw, and the history forgets their events.
    let ack_first = scenarios::catch_cases()
        .into_iter()
        .find(|c| c.switch == "commit=ack-first")
        .unwrap();
    cases.push(Case::built_in(
        "naive-ack-first",
        &ack_first.mix,
        1,
        &["commit=ack-first"],
    ));
    for file in common::shipped_scenario_files() {
        let label = file.file_name().unwrap().to_string_lossy().into_owned();
        cases.push(Case {
            label,
            file,
            seed: 1,
            switches: Vec::new(),
        });
    }
    cases
}

#[test]
fn the_same_seed_gives_the_same_trace_hash_in_separate_processes() {
    // Proves: for each case, two processes running at once draw the plan this
    // process draws and produce byte-identical histories (equal SHA-256); no
    // two cases share a trace; the cases inject every kind of fault in
    // FAULT_KINDS. Debug builds run the four cheap cases (which already cover
    // every kind); release builds (CI's `cargo test --release -p stampede-sim`)
    // add two naive designs (one whose db crashes take back acknowledged
    // writes) and every scenario file in scenarios/, seed 1.
    let cases = cases();
    let mut traces: Vec<(String, String)> = Vec::new();
    let mut kinds = BTreeSet::new();
    for case in &cases {
        let plan = case.plan();
        kinds.extend(plan.fault_kinds());
        let (first, second) = (case.spawn(), case.spawn());
        let (first, second) = (output(first, &case.label), output(second, &case.label));
        assert_eq!(
            first, second,
            "{} seed {} is not deterministic",
            case.label, case.seed
        );
        let (draw, trace) = first.split_once(' ').expect("two hashes");
        assert_eq!(
            draw,
            plan.draw_hash(),
            "{}: a child drew another plan",
            case.label
        );
        assert_eq!(trace.len(), 64, "{first}");
        if let Some((other, _)) = traces.iter().find(|(_, t)| t == trace) {
            panic!("{} repeats the trace of {other}", case.label);
        }
        traces.push((case.label.clone(), trace.to_string()));
    }
    let missing: Vec<&str> = FAULT_KINDS
        .into_iter()
        .filter(|k| !kinds.contains(k))
        .collect();
    assert!(missing.is_empty(), "no case injects {missing:?}");
    if !cfg!(debug_assertions) {
        assert!(
            common::shipped_scenario_files().len() >= 8,
            "expected the 8 shipped scenarios"
        );
    }
}

/// Spends `n` of tokio's task ids, which are numbered process-wide: what a
/// process that ran other work before a plan looks like to tokio.
fn spend_task_ids(n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for _ in 0..n {
            tokio::spawn(async {}).await.expect("an empty task");
        }
    });
}

#[test]
fn a_crash_plan_gives_the_fresh_process_trace_after_and_beside_other_runs_in_the_same_process() {
    // Proves: a plan whose hosts crash gives, in a process that ran other
    // work first and runs another plan on a second thread meanwhile (tokio
    // numbers tasks process-wide, and a crashed host's tasks are dropped in
    // an order that follows those numbers), the trace a fresh process gives
    // — so a sweep's, a compare's or a shrink's verdict on a seed is what
    // `stampede run` shows for it. Each case runs four times after 0–3 spent
    // task ids (every arrangement of tokio's four task lists), on two
    // threads at once.
    let crashing: Vec<(Plan, String, String)> = cases()
        .iter()
        .filter(|c| c.plan().fault_kinds().iter().any(|k| k.contains("crash")))
        .map(|c| {
            let fresh = output(c.spawn(), &c.label);
            let (_, trace) = fresh.split_once(' ').expect("two hashes");
            (
                c.plan(),
                format!("{} seed {}", c.label, c.seed),
                trace.to_string(),
            )
        })
        .collect();
    assert!(crashing.len() >= 2, "crash cases to run side by side");
    let runs: Vec<(usize, &(Plan, String, String))> = (0..4)
        .flat_map(|spent| crashing.iter().map(move |case| (spent, case)))
        .collect();
    common::on_two_cores(&runs, |(spent, (plan, label, fresh))| {
        spend_task_ids(*spent);
        let here = stampede_sim::run(plan).expect("the plan runs");
        assert_eq!(
            &here.trace_hash, fresh,
            "{label}: after {spent} other task(s), beside other runs in this process, the trace is not the fresh process's"
        );
    });
}
