//! Real crashes under real load: `stampede load --kill-every` runs the shop
//! as a child process on a fresh SQLite store and kills it with SIGKILL on a
//! schedule. The reference answers only after its commit, so every
//! invariant is judged and holds; `commit=ack-first` answers before it, so a
//! kill takes back orders customers were told were accepted, and the audit
//! names `no_lost_acknowledged_order`. Both runs go at once (each starts its
//! own shop and PSP on loopback) to keep the test's wall time near one run's.
//!
//! The command is `--kill-every 5s --duration 60s` (ten kills: none
//! in the last interval, so the restarted shop always carries load before
//! the drain); here the reference takes two kills in 8 s at 20 orders/s,
//! which a debug build sustains on two cores. The ack-first shop commits
//! every 200 ms, so a kill loses the orders acknowledged since its last
//! commit: at 60 orders/s with four kills, the chance that no kill finds
//! one is about 5e-5 (each kill lands at a uniform point of the commit
//! cycle: P(none) = (1 - e^-12) / 12 per kill).

mod common;

use common::{fresh_dir, say};
use std::path::Path;
use std::process::Output;

fn load(out: &Path, rate: &str, kill_every: &str, extra: &[&str]) -> Output {
    let args = [
        "--rate",
        rate,
        "--duration",
        "8s",
        "--kill-every",
        kill_every,
        "--json",
    ];
    common::load(&args, extra, out)
}

fn report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).unwrap()
}

fn verdict<'a>(audit: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    audit
        .iter()
        .find(|v| v["invariant"] == name)
        .unwrap_or_else(|| panic!("{name} in {audit:?}"))
}

#[test]
fn kills_under_load_lose_nothing_acknowledged_unless_the_shop_answers_before_its_commit() {
    let (ack_first, reference) = (
        fresh_dir("load-kills-ack-first"),
        fresh_dir("load-kills-reference"),
    );
    // The ack-first run keeps its store outside --out, and --out does not exist yet: the run
    // makes the folder itself (found from outside: it failed opening <out>/shop.log).
    let elsewhere = fresh_dir("load-kills-ack-first-store").join("shop.db");
    let broken = {
        let out = ack_first.clone();
        let store = format!("sqlite:{}", elsewhere.display());
        std::thread::spawn(move || {
            load(
                &out,
                "60/s",
                "1500ms",
                &["--set", "commit=ack-first", "--store", &store],
            )
        })
    };
    let good = load(&reference, "20/s", "2s", &[]);
    let broken = broken.join().expect("the run finishes");

    // The reference: two kills, every invariant judged, every one holding.
    assert_eq!(good.status.code(), Some(0), "{}", say(&good));
    let good_report = report(&reference);
    let notes = good_report["notes"].to_string();
    assert!(
        notes.contains("killed with SIGKILL 2 times"),
        "two kills: {notes}"
    );
    let audit = good_report["audit"].as_array().expect("an audit").clone();
    assert!(
        audit.iter().all(|v| v["outcome"] == "holds"),
        "every invariant judged and holding: {audit:?}"
    );
    assert!(
        reference.join("shop.db").exists(),
        "the shop kept its state in SQLite"
    );

    // Ack-first: the kills take back acknowledged orders, and the audit says so.
    assert_eq!(broken.status.code(), Some(1), "{}", say(&broken));
    let audit = report(&ack_first)["audit"]
        .as_array()
        .expect("an audit")
        .clone();
    let lost = verdict(&audit, "no_lost_acknowledged_order");
    assert_eq!(lost["outcome"], "violated", "{lost}");
    let example = lost["examples"][0].as_str().unwrap_or_default();
    assert!(
        example.contains("was accepted"),
        "an acknowledged order as evidence: {lost}"
    );
}

#[test]
fn a_kill_loop_that_could_not_kill_or_could_only_lose_is_refused() {
    // Proves (found from outside: `--kill-every 5s --duration 8s` killed nothing and passed,
    // and `--store memory` was taken, so every kill lost what the shop had acknowledged): a
    // load that would not last twice the interval, and a memory store, are refused (exit 2)
    // before any shop starts; twice the interval and a little more is taken (checked in the
    // unit tests; here the refusals).
    for (extra, says) in [
        (
            vec!["--duration", "8s", "--kill-every", "5s"],
            "no room for a kill",
        ),
        (
            vec!["--duration", "10s", "--kill-every", "5s"],
            "no room for a kill",
        ),
        (
            vec![
                "--duration",
                "8s",
                "--kill-every",
                "2s",
                "--store",
                "memory",
            ],
            "--store memory",
        ),
    ] {
        let out = fresh_dir("load-kills-refused");
        let mut args = vec!["--rate", "20/s"];
        args.extend(extra.iter().copied());
        let o = common::load(&args, &[], &out);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", say(&o));
        assert!(say(&o).contains(says), "{extra:?}: {}", say(&o));
        assert!(!out.join("report.json").exists());
    }
}

/// The pid of the `stampede serve` a `load --kill-every` run started on `out` (its store is
/// `out/shop.db`), once it is up: found by its command line.
fn child_shop(out: &Path) -> Option<u32> {
    let store = format!("sqlite:{}", out.join("shop.db").display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&b"serve".as_slice()) && args.contains(&store.as_bytes())
        })
}

/// Whether `pid` is still a running process (a zombie waiting to be reaped is not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// Waits up to `secs` for `done`.
fn within(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// Starts `stampede load --kill-every` on `out` and waits until its child shop runs.
fn start_killing_load(out: &Path) -> (std::process::Child, u32) {
    let load = std::process::Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args([
            "load",
            "--rate",
            "20/s",
            "--duration",
            "60s",
            "--kill-every",
            "20s",
        ])
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut shop = None;
    let log = out.join("shop.log");
    assert!(
        within(60, || {
            shop = child_shop(out);
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("shop listening"))
                && shop.is_some()
        }),
        "the child shop started"
    );
    (load, shop.unwrap())
}

#[test]
fn a_load_stopped_by_a_signal_says_so_and_leaves_no_shop_behind() {
    // Proves (found from outside: a SIGTERM to `load --kill-every` left its shop running,
    // orphaned, holding the store's lock, so the next run on that --out was refused): SIGTERM
    // stops `load` with exit status 130 and a message that there is no verdict, and its child
    // shop is gone with it; a `load` killed with SIGKILL, which can do nothing, does not
    // leave its shop running either (the shop stops when the pipe on its stdin closes).
    let out = fresh_dir("load-kills-sigterm");
    let (mut load, shop) = start_killing_load(&out);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = load.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(load.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("no verdict"),
        "{stderr}"
    );
    assert!(
        within(10, || !running(shop)),
        "the shop {shop} outlived its load"
    );

    let out = fresh_dir("load-kills-sigkill");
    let (mut load, shop) = start_killing_load(&out);
    load.kill().expect("SIGKILL");
    load.wait().unwrap();
    assert!(
        within(20, || !running(shop)),
        "the shop {shop} outlived its killed load"
    );
}

#[test]
fn ctrl_c_stops_a_load_on_its_own_shop_with_no_verdict() {
    // Proves: SIGINT (Ctrl-C) stops a load running its shop in-process well before its 60 s,
    // with exit status 130 and the message that there is no verdict — not ignored until the
    // run ends (found from outside: goose's own handler failed to install and the run went on).
    let out = fresh_dir("load-ctrl-c");
    let mut load = std::process::Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(["load", "--rate", "20/s", "--duration", "60s"])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    assert!(within(60, || out.exists()), "the run began");
    std::thread::sleep(std::time::Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(load.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let mut stopped = None;
    assert!(
        within(30, || {
            stopped = load.try_wait().unwrap();
            stopped.is_some()
        }),
        "still running 30 s after Ctrl-C"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(load.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(stopped.unwrap().code(), Some(130), "{stderr}");
    assert!(stderr.contains("no verdict"), "{stderr}");
}
