//! `stampede explain` end to end: a seed-repo run of the tiny double-click
//! scenario (its report.html), then the story of its first violation, of
//! one order, and the refusals of bad input.

mod common;

use common::{fresh_dir, say, stampede};

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/scenarios/tiny-double-click.toml"
);

#[test]
fn explain_tells_the_first_violation_s_story_and_writes_its_svg() {
    // Proves: after a failing run, `explain <dir>` starts from the run's first violation
    // (summary.json's first_violations: one_order_per_key on a double-clicked key), prints the
    // key's two requests and the two orders it was told, evidence marked, and writes an SVG
    // beside the trace; `--order` tells one order's story from the trace file alone; an
    // invariant that held, an unknown one, a malformed order id, a missing folder and a trace
    // that is not the summary's are refused (exit 2), as is an `--svg` naming the run's own
    // files; an order the trace never mentions is exit 1.
    let dir = fresh_dir("explain-run");
    let d = dir.to_str().unwrap();
    let run = stampede(&[
        "run",
        TINY,
        "--seed",
        "1",
        "--design",
        "seed-repo",
        "--out",
        d,
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", say(&run));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let first = &summary["first_violations"][0];
    assert_eq!(first["invariant"], "one_order_per_key", "{first}");
    let key = first["subject"]["id"].as_str().expect("a key").to_string();
    // The run's page: the verdict, its first violations and the charts over simulated time.
    let page = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(
        page.contains("<span class=\"verdict fail\">FAIL</span>"),
        "{page}"
    );
    assert!(page.contains("<h3>one_order_per_key: key "), "{page}");
    assert_eq!(page.matches("<svg").count(), 3, "{page}");

    let o = stampede(&["explain", d]);
    assert_eq!(o.status.code(), Some(0), "{}", say(&o));
    // The run's summary.json stands for its folder.
    let summary_path = dir.join("summary.json");
    let by_summary = stampede(&["explain", summary_path.to_str().unwrap()]);
    assert_eq!(by_summary.status.code(), Some(0), "{}", say(&by_summary));
    assert_eq!(by_summary.stdout, o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with(&format!("The story of key {key}\n  one_order_per_key: ")),
        "{text}"
    );
    assert_eq!(
        text.matches(&format!("place order, key {key}")).count(),
        2,
        "{text}"
    );
    let told: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": accepted ord_"))
        .collect();
    assert!(
        told.len() >= 2 && told.iter().all(|l| l.starts_with('*')),
        "{text}"
    );
    let svg = dir.join(format!("explain-key-{key}.svg"));
    let drawn = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{}: {e}", svg.display()));
    assert!(drawn.starts_with("<svg") && drawn.contains(&format!("The story of key {key}")));

    let order = told[0]
        .split(": accepted ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let trace = dir.join("trace.jsonl");
    let out_svg = dir.join("one-order.svg");
    let o = stampede(&[
        "explain",
        trace.to_str().unwrap(),
        "--order",
        order,
        "--svg",
        out_svg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", say(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("The story of order {order}")));
    assert!(out_svg.exists());

    for (args, says) in [
        (vec!["--invariant", "no_oversell"], "was not violated"),
        (vec!["--invariant", "no_such"], "one of no_oversell"),
        (vec!["--order", "141"], "write an order id such as ord_141"),
        (
            vec!["--order", "ord_01"],
            "write an order id such as ord_141",
        ),
    ] {
        let mut all = vec!["explain", d];
        all.extend(args);
        let o = stampede(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", say(&o));
        assert!(say(&o).contains(says), "{all:?}: {}", say(&o));
    }
    // `--svg` naming one of the run's own files (not an SVG) is refused, the file kept.
    for own in ["summary.json", "trace.jsonl"] {
        let file = dir.join(own);
        let before = std::fs::read(&file).unwrap();
        let o = stampede(&["explain", d, "--svg", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{own}: {}", say(&o));
        assert!(say(&o).contains("not an SVG"), "{own}: {}", say(&o));
        assert_eq!(std::fs::read(&file).unwrap(), before, "{own} kept");
    }
    let missing = stampede(&["explain", dir.join("nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", say(&missing));
    let absent = stampede(&["explain", d, "--order", "ord_999999"]);
    assert_eq!(absent.status.code(), Some(1), "{}", say(&absent));
    let told = String::from_utf8_lossy(&absent.stdout);
    assert!(!told.contains("The story of"), "no empty story: {told}");

    // A trace that is not the summary's (cut short here, as another run's would differ too)
    // is refused before any story is told against the summary's violations.
    let whole = std::fs::read_to_string(&trace).unwrap();
    let cut: String = whole.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&trace, cut).unwrap();
    let mixed = stampede(&["explain", d]);
    assert_eq!(mixed.status.code(), Some(2), "{}", say(&mixed));
    assert!(say(&mixed).contains("is not the trace"), "{}", say(&mixed));
    std::fs::write(&trace, whole).unwrap();
    let again = stampede(&["explain", d]);
    assert_eq!(again.status.code(), Some(0), "{}", say(&again));
}
