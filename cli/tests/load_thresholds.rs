//! `stampede load` end to end on the in-process shop: a threshold that holds
//! exits 0, a violated one exits 1 (with the report saying which), and a
//! malformed one is refused before any load with exit 2. The report files
//! and histogram logs are written.

mod common;

use common::fresh_dir;
use std::path::Path;
use std::process::Output;

fn load(out: &Path, extra: &[&str]) -> Output {
    let args = [
        "--rate",
        "20/s",
        "--duration",
        "2s",
        "--drain",
        "3s",
        "--settle",
        "20s",
        "--mix",
        "abandon=0,decline=0",
    ];
    common::load(&args, extra, out)
}

#[test]
fn thresholds_decide_the_exit_status() {
    let holds = fresh_dir("load-holds");
    let o = load(
        &holds,
        &[
            "--threshold",
            "p99<60s for POST /v1/orders",
            "--threshold",
            "error_rate<50%",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for file in [
        "report.html",
        "report.md",
        "report.json",
        "latency.hlog",
        "POST_v1_orders.hgrm",
    ] {
        assert!(holds.join(file).exists(), "{file} written");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(holds.join("report.json")).unwrap()).unwrap();
    assert!(
        report["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["outcome"] == "holds"),
        "every invariant judged and holding: {}",
        report["audit"]
    );

    let violated = fresh_dir("load-violated");
    let o = load(&violated, &["--threshold", "p99<1us for POST /v1/orders"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");

    let o = load(&fresh_dir("load-bad"), &["--threshold", "p99<fast"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a non-negative number"));
}
