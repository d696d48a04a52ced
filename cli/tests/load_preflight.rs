//! `stampede load --host` finds a wrong address or threshold before it
//! places a single order, instead of after the whole run (leaving an earlier
//! run's outputs in place), and reports the design the shop names.

mod common;

use common::{free_port, fresh_dir, get, say, spawn, stampede, start_psp, wait_ready};
use std::net::SocketAddr;

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[test]
fn a_dead_replica_a_wrong_psp_or_an_unknown_threshold_endpoint_is_refused_before_any_order() {
    // Proves (found from outside: a dead second replica ran to PASS with most requests
    // failed; a wrong --psp and a misspelt threshold endpoint were found only after the whole
    // load had placed its orders): each is exit 2 naming what is wrong, and the shop then
    // holds no order; the same command with every address right does run (exit 0).
    let dir = fresh_dir("load-preflight");
    std::fs::create_dir_all(&dir).unwrap();
    let (shop, psp, dead) = (addr(), addr(), addr());
    let _psp = start_psp(&dir, psp, shop);
    let log = dir.join("shop.log");
    let (shop_s, psp_s) = (shop.to_string(), psp.to_string());
    let _shop = spawn(
        &[
            "serve", "--addr", &shop_s, "--psp", &psp_s, "--store", "memory",
        ],
        &log,
    );
    wait_ready(shop, "/healthz", &log);
    let (host, psp_url) = (format!("http://{shop}"), format!("http://{psp}"));
    let two = format!("{host},http://{dead}");
    let dead_psp = format!("http://{dead}");
    let cases: [(Vec<&str>, String); 3] = [
        (vec!["--host", &two, "--psp", &psp_url], dead.to_string()),
        (
            vec!["--host", &host, "--psp", &dead_psp],
            "the PSP ledger".into(),
        ),
        (
            vec![
                "--host",
                &host,
                "--psp",
                &psp_url,
                "--threshold",
                "p99<50ms for POST /v1/nothing",
            ],
            "no such endpoint".into(),
        ),
    ];
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "load",
            "--rate",
            "10/s",
            "--duration",
            "1s",
            "--hold",
            "10s",
            "--out",
            out,
        ];
        args.extend(extra);
        stampede(&args)
    };
    // An earlier run's outputs in the folder: a refused run leaves them, a run that starts
    // clears them (here: a distribution of an endpoint this run never sends to).
    let earlier = ["report.json", "GET_v1_gone.hgrm", "shard.json"];
    std::fs::create_dir_all(out).unwrap();
    for name in earlier {
        std::fs::write(dir.join("out").join(name), "stale").unwrap();
    }
    for (extra, says) in &cases {
        let o = run(extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", say(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says.as_str()),
            "{extra:?}: {}",
            say(&o)
        );
        let (status, _, body) = get(shop, "/v1/orders/ord_1").unwrap();
        assert_eq!(status, 404, "{extra:?} placed an order: {body}");
    }
    // A second shop of another design beside the first is refused, naming both designs.
    let other = addr();
    let other_s = other.to_string();
    let other_log = dir.join("other.log");
    let _other = spawn(
        &[
            "serve",
            "--addr",
            &other_s,
            "--psp",
            &psp_s,
            "--store",
            "memory",
            "--design",
            "seed-repo",
        ],
        &other_log,
    );
    wait_ready(other, "/healthz", &other_log);
    let mixed = format!("{host},http://{other}");
    let o = run(&["--host", &mixed, "--psp", &psp_url]);
    assert_eq!(o.status.code(), Some(2), "{}", say(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("runs design reference but") && stderr.contains("runs seed-repo"),
        "{}",
        say(&o)
    );

    for name in earlier {
        assert!(
            dir.join("out").join(name).exists(),
            "a refused run removed {name}"
        );
    }
    let o = run(&["--host", &host, "--psp", &psp_url]);
    assert_eq!(o.status.code(), Some(0), "{}", say(&o));
    assert!(!dir.join("out/GET_v1_gone.hgrm").exists() && !dir.join("out/shard.json").exists());
    // The report names the design the shop says it runs, not "unknown".
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["design"], "reference", "{report}");
}
