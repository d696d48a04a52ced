//! The renderers on a realistic report, an empty one and a comparison:
//! round trips, refusals, escaping, self-containment and determinism.

use stampede_reports::*;
use std::collections::BTreeMap;

/// The percentiles the load generator reports spectra at.
const SPECTRUM_AT: [f64; 13] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
];

/// A spectrum rising from `base_us`, with a tail `tail` times steeper.
fn spectrum(base_us: u64, tail: u64) -> Vec<SpectrumPoint> {
    SPECTRUM_AT
        .iter()
        .enumerate()
        .map(|(i, &p)| SpectrumPoint {
            percentile: p,
            value_us: base_us + (i as u64).pow(2) * base_us / 10 * tail,
        })
        .collect()
}

fn percentiles(count: u64, p50_us: u64) -> Percentiles {
    Percentiles {
        count,
        p50_us,
        p90_us: p50_us * 2,
        p99_us: p50_us * 5,
        p999_us: p50_us * 12,
        max_us: p50_us * 30,
        mean_us: p50_us * 3 / 2,
    }
}

fn endpoint(name: &str, requests: u64, errors: u64, basis: Basis, p50_us: u64) -> EndpointLatency {
    let corrected = basis != Basis::Raw;
    EndpointLatency {
        name: name.into(),
        requests,
        errors,
        shed: 0,
        basis,
        headline: percentiles(requests, if corrected { p50_us * 2 } else { p50_us }),
        raw: percentiles(requests, p50_us),
        spectrum: spectrum(if corrected { p50_us * 2 } else { p50_us }, 3),
        raw_spectrum: spectrum(p50_us, if corrected { 1 } else { 3 }),
    }
}

/// An open-loop run of the reference design: four endpoints, 20 one-second
/// intervals, one invariant holding, one violated, one not judged, a passing
/// and a failing threshold.
fn sample(design: &str) -> LoadReport {
    let timeline = (0..20u64)
        .map(|i| {
            let mut orders_by_status = BTreeMap::new();
            orders_by_status.insert("created".to_string(), 5 + i % 3);
            orders_by_status.insert("payment_pending".to_string(), 20 + (i * 7) % 11);
            orders_by_status.insert("confirmed".to_string(), i * 480);
            Interval {
                start_ms: i * 1000,
                requests: 1480 + (i * 37) % 50,
                errors: u64::from(i == 12) * 4,
                p50_us: 2_100 + i * 40,
                p99_us: 9_800 + (i % 5) * 900,
                orders_by_status,
            }
        })
        .collect();
    LoadReport {
        version: REPORT_VERSION,
        title: format!("load {design} 500/s for 20s"),
        target: "http://127.0.0.1:8080".into(),
        design: design.into(),
        model: LoadModel::Open {
            rate_per_sec: 500.0,
            max_in_flight: 200,
        },
        duration_ms: 20_000,
        interval_ms: 1_000,
        endpoints: vec![
            EndpointLatency {
                shed: 37,
                ..endpoint("POST /v1/orders", 10_000, 4, Basis::IntendedStart, 2_150)
            },
            endpoint("GET /v1/orders/{id}", 18_420, 0, Basis::IntendedStart, 830),
            endpoint("POST /v1/orders/{id}/pay", 9_600, 0, Basis::Raw, 3_400),
            endpoint(ORDER_TO_CONFIRMED, 9_550, 0, Basis::IntendedStart, 41_000),
        ],
        timeline,
        audit: vec![
            AuditVerdict {
                invariant: "no_oversell".into(),
                outcome: "holds".into(),
                violations: 0,
                examples: vec![],
                reason: None,
                lost_to_faults: 0,
            },
            AuditVerdict {
                invariant: "no_double_charge".into(),
                outcome: "violated".into(),
                violations: 5,
                examples: vec![
                    "order 17 captured twice (pi_17a, pi_17b)".into(),
                    "order 230 captured twice (pi_230a, pi_230b)".into(),
                ],
                reason: None,
                lost_to_faults: 0,
            },
            AuditVerdict {
                invariant: "no_lost_order".into(),
                outcome: "not_judged".into(),
                violations: 0,
                examples: vec![],
                reason: Some("skipped by --skip".into()),
                lost_to_faults: 0,
            },
            AuditVerdict {
                invariant: "willing_buyers_served".into(),
                outcome: "holds".into(),
                violations: 0,
                examples: vec![],
                reason: None,
                lost_to_faults: 2,
            },
        ],
        audit_not_done: None,
        thresholds: vec![
            ThresholdResult {
                rule: "p99<50ms for POST /v1/orders".into(),
                measured: "p99 = 21.5 ms".into(),
                passed: true,
            },
            ThresholdResult {
                rule: "p99<100ms for order → confirmed".into(),
                measured: "p99 = 410 ms".into(),
                passed: false,
            },
        ],
        files: vec!["POST_v1_orders.hlog".into(), "goose.html".into()],
        notes: vec!["the loadgen fell 3 journeys behind its schedule".into()],
    }
}

fn empty() -> LoadReport {
    LoadReport {
        endpoints: vec![],
        timeline: vec![],
        audit: vec![],
        audit_not_done: None,
        thresholds: vec![],
        files: vec![],
        notes: vec![],
        ..sample("reference")
    }
}

// Proves report.json reads back exactly what was written.
#[test]
fn json_round_trips() {
    let report = sample("reference");
    let text = render_json(&report);
    assert!(text.ends_with('\n'));
    assert_eq!(parse_json(&text).expect("own output parses"), report);
    let closed = LoadReport {
        model: LoadModel::Closed { users: 50 },
        ..empty()
    };
    assert_eq!(parse_json(&render_json(&closed)).expect("parses"), closed);
}

// Proves another schema version is refused by name, before its fields are judged.
#[test]
fn json_refuses_other_versions() {
    let mut value: serde_json::Value =
        serde_json::from_str(&render_json(&sample("reference"))).expect("valid JSON");
    value["version"] = 2.into();
    value["endpoints"] = "reshaped in version 2".into();
    let err = parse_json(&value.to_string()).expect_err("version 2 is refused");
    assert!(matches!(
        err,
        ReportError::UnsupportedVersion {
            found: 2,
            expected: 1
        }
    ));
    let message = err.to_string();
    assert!(message.contains("version 2"), "{message}");
    assert!(
        message.contains(&format!("version {REPORT_VERSION}")),
        "{message}"
    );

    let missing = parse_json(r#"{"title": "x"}"#).expect_err("no version");
    assert!(matches!(missing, ReportError::MissingVersion), "{missing}");
    // A top level that is not an object is not a report, said without internal names.
    for not_an_object in ["[]", "3", "\"report\""] {
        let err = parse_json(not_an_object).expect_err("not an object");
        assert!(matches!(err, ReportError::MissingVersion), "{err}");
        assert!(!err.to_string().contains("Probe"), "{err}");
    }
    let bad_version = parse_json(r#"{"version": "one"}"#).expect_err("a word");
    assert!(
        matches!(bad_version, ReportError::Malformed(_)),
        "{bad_version}"
    );
    let malformed = parse_json("{\"version\": 1, \"title\": 3}").expect_err("bad shape");
    assert!(
        matches!(malformed, ReportError::Malformed(_)),
        "{malformed}"
    );
    assert!(std::error::Error::source(&malformed).is_some());
    assert!(matches!(
        parse_json("not json"),
        Err(ReportError::Malformed(_))
    ));
}

// Proves the terminal summary carries the numbers, the verdicts and the failures.
#[test]
fn terminal_shows_verdicts_and_failures() {
    let text = render_terminal(&sample("reference"));
    assert!(text.starts_with("load reference 500/s for 20s\n"));
    assert!(text.contains("open loop, 500 journeys/s, at most 200 in flight"));
    assert!(
        text.lines()
            .any(|l| l.contains("✗ no_double_charge") && l.contains(" violated ")),
        "{text}"
    );
    assert!(text.contains("✓ no_oversell"), "{text}");
    assert!(text.contains("· no_lost_order"), "{text}");
    // Sales lost to declared fault windows are counted next to a verdict that holds.
    assert!(
        text.contains("holds (2 lost to faults the scenario allows)"),
        "{text}"
    );
    assert!(text.contains("no_double_charge: order 17 captured twice"));
    assert!(text.contains("… and 3 more"));
    let threshold = |rule: &str| {
        let line = text
            .lines()
            .find(|l| l.contains(rule))
            .expect("threshold row");
        line.split_whitespace()
            .next()
            .expect("result cell")
            .to_string()
    };
    assert_eq!(threshold("p99<100ms for order → confirmed"), "FAIL");
    assert_eq!(threshold("p99<50ms for POST /v1/orders"), "pass");
    assert!(text.contains("verdict FAIL"));
    // Shed answers (429) are counted apart from errors, in the summary and per endpoint.
    assert!(text.contains(", 37 shed (429);"), "{text}");
    assert!(text.contains("the loadgen fell 3 journeys behind"));
    // POST /v1/orders: headline p50 4.3 ms (intended start), raw p99 10.8 ms.
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("POST /v1/orders "))
        .expect("a row for POST /v1/orders");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "POST",
            "/v1/orders",
            "10000",
            "4",
            "37",
            "intended",
            "start",
            "4.30",
            "8.60",
            "21.5",
            "51.6",
            "129",
            "10.8"
        ]
    );
    // Columns line up: every table row of the latency section is as wide as its header.
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("endpoint"))
        .expect("latency header");
    let p99_col = header.find("raw p99").expect("raw p99 column") + "raw p99".len();
    for line in text
        .lines()
        .filter(|l| l.contains(" /v1/") || l.contains("→ confirmed  "))
    {
        if line.trim_start().starts_with("FAIL") || line.trim_start().starts_with("pass") {
            continue;
        }
        assert_eq!(
            line.chars().count(),
            header[..p99_col].chars().count(),
            "{line}"
        );
    }
}

// Proves Markdown has the same content as tables.
#[test]
fn markdown_tables() {
    let md = render_markdown(&sample("reference"));
    assert!(md.starts_with("# load reference 500/s for 20s\n"));
    assert!(md.contains("| endpoint | requests | errors | shed | basis | p50 |"));
    assert!(md.contains("| POST /v1/orders | 10000 | 4 | 37 |"), "{md}");
    assert!(md.contains("- **shed (429)**: 37"), "{md}");
    assert!(md.contains("| ✗ no_double_charge | violated | 5 | order 17 captured twice"));
    assert!(md.contains("| FAIL | p99<100ms for order → confirmed | p99 = 410 ms |"));
    assert!(md.contains("- `goose.html`"));
    let hostile = LoadReport {
        title: "<script>alert(1)</script>".into(),
        ..sample("reference")
    };
    let md = render_markdown(&hostile);
    assert!(md.starts_with("# \\<script>alert(1)\\</script>"), "{md}");
    let unescaped = md.replace("\\<", "");
    assert!(!unescaped.contains("<script") && !unescaped.contains("</script"));
}

// Proves the HTML page: all five charts, audit beside latencies, nothing external.
#[test]
fn html_is_complete_and_self_contained() {
    let report = sample("reference");
    let html = render_html(&report);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 5, "five charts");
    assert_eq!(html.matches("</svg>").count(), 5);
    assert!(!html.contains("No data"));
    // The audit sits in the same side-by-side block as the latencies.
    let block = &html[html
        .find("<div class=\"side-by-side\">")
        .expect("side by side")..];
    let latency = block
        .find("<table class=\"latency\">")
        .expect("latency table");
    let audit = block.find("<table class=\"audit\">").expect("audit table");
    let block_end = block.find("</div>\n<h2>Thresholds").expect("block ends");
    assert!(latency < audit && audit < block_end);
    assert!(html.contains("<table class=\"thresholds\">"));
    // Spectrum: evenly spaced nines on the x axis, raw drawn beside headline.
    for label in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
        assert!(
            html.contains(&format!(">\n{label}\n</text>")),
            "tick {label}"
        );
    }
    assert!(html.contains("POST /v1/orders (raw)"));
    assert!(
        !html.contains("POST /v1/orders/{id}/pay (raw)"),
        "raw basis has no second line"
    );
    for status in ["created", "payment_pending", "confirmed"] {
        assert!(
            html.contains(&format!(">\n{status}\n</text>")),
            "legend {status}"
        );
    }
    // Self-contained: no scripts, no linked or imported resources, and no URL
    // at all other than the target's, shown as text.
    for forbidden in [
        "<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import",
    ] {
        assert!(!html.contains(forbidden), "contains {forbidden}");
    }
    let without_target = html.replace(&report.target, "");
    assert!(!without_target.contains("http://") && !without_target.contains("https://"));
}

// Proves text from the report cannot inject markup.
#[test]
fn html_escapes_text() {
    let report = LoadReport {
        title: "<script>alert('x')</script> & \"more\"".into(),
        notes: vec!["<b>bold</b>".into()],
        endpoints: vec![endpoint("GET /<i>", 1, 0, Basis::Raw, 1_000)],
        ..sample("reference")
    };
    let html = render_html(&report);
    assert!(!html.contains("<script"));
    assert!(!html.contains("<b>") && !html.contains("<i>"));
    assert!(html.contains(
        "<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;</title>"
    ));
    assert!(html.contains("<h1>&lt;script&gt;"));
    assert!(html.contains("GET /&lt;i&gt;"));
}

// Proves the same report renders to the same bytes, every format.
#[test]
fn rendering_is_deterministic() {
    let a = sample("reference");
    let b = sample("reference");
    assert_eq!(render_html(&a), render_html(&b));
    assert_eq!(render_terminal(&a), render_terminal(&b));
    assert_eq!(render_markdown(&a), render_markdown(&b));
    assert_eq!(render_json(&a), render_json(&b));
    let both = [a, sample("textbook-naive")];
    assert_eq!(
        render_compare_html(&both, &[]),
        render_compare_html(&both, &[])
    );
}

// Proves an empty report renders everywhere and says there is no data.
#[test]
fn empty_report_says_no_data() {
    let report = empty();
    let html = render_html(&report);
    assert_eq!(html.matches("<svg").count(), 0);
    assert_eq!(html.matches("No data").count(), 6, "{html}");
    assert!(render_terminal(&report).contains("no data"));
    assert!(render_markdown(&report).contains("No data"));
    assert_eq!(parse_json(&render_json(&report)).expect("parses"), report);
    assert!(render_compare_html(&[], &[]).contains("No data"));
    assert!(render_compare_markdown(&[], &[]).contains("No data"));
    assert!(
        render_compare_html(std::slice::from_ref(&report), &[])
            .contains("No data: no report measured")
    );
}

// Proves one interval (a single point per line) still draws every chart.
#[test]
fn single_interval_draws() {
    let mut report = sample("reference");
    report.timeline.truncate(1);
    for e in &mut report.endpoints {
        e.spectrum.truncate(1);
        e.raw_spectrum.truncate(1);
    }
    let html = render_html(&report);
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(!html.contains("No data") && !html.contains("Chart not drawn"));
}

// Proves the comparison: one column per design, both overlay charts.
#[test]
fn compare_has_a_column_per_design() {
    let mut naive = sample("textbook-naive");
    naive.audit[0].outcome = "violated".into();
    naive.audit[0].violations = 12;
    let reports = [sample("reference"), naive, sample("seed-repo")];
    let html = render_compare_html(&reports, &[]);
    for design in ["reference", "textbook-naive", "seed-repo"] {
        assert!(
            html.contains(&format!("<th class=\"num\">{design}</th>")),
            "{design}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("✗ violated (12)"));
    let header = html
        .lines()
        .find(|l| l.starts_with("<thead>"))
        .expect("table header");
    assert_eq!(
        header.matches("</th>").count(),
        4,
        "label column + three designs"
    );
    let row = html
        .lines()
        .find(|l| l.contains("<td>order → confirmed p99 (ms)</td>"))
        .expect("order → confirmed p99 row");
    assert_eq!(
        row.matches("<td class=\"num\">410</td>").count(),
        3,
        "{row}"
    );

    let md = render_compare_markdown(&reports, &[]);
    assert!(
        md.contains("|  | reference | textbook-naive | seed-repo |"),
        "{md}"
    );
    // Shed answers and the decision time (order → offered) sit side by side; a report
    // without the measure shows a dash, and request totals leave the per-order measures out.
    let mut offered = sample("reference");
    offered.endpoints.insert(
        3,
        endpoint(ORDER_TO_OFFERED, 9_580, 0, Basis::IntendedStart, 120_000),
    );
    assert_eq!(offered.request_totals(), reports[0].request_totals());
    let two = render_compare_markdown(&[offered, sample("admission-off")], &[]);
    assert!(two.contains("| shed (429) | 37 | 37 |"), "{two}");
    assert!(
        two.contains("| order → offered p50 (ms) | 240 | — |"),
        "{two}"
    );
    assert!(
        md.contains("| POST /v1/orders p50 (ms) | 4.30 | 4.30 | 4.30 |"),
        "{md}"
    );
    assert!(
        md.contains("| no_oversell | ✓ holds | ✗ violated (12) | ✓ holds |"),
        "{md}"
    );
    // Each run says its own basis per row (found from outside: one footnote called a closed
    // loop's raw order → confirmed "corrected"): a closed-loop run's raw row says raw beside
    // the open loop's intended start.
    let mut closed = sample("closed");
    for e in &mut closed.endpoints {
        if e.name == ORDER_TO_CONFIRMED {
            e.basis = Basis::Raw;
        }
    }
    let mixed = render_compare_markdown(&[sample("open"), closed], &[]);
    assert!(
        mixed.contains("| order → confirmed basis | intended start | raw |"),
        "{mixed}"
    );
    assert!(!mixed.contains("corrected for coordinated omission (closed loop)"));
}

// Proves an audit not done is never a pass: the report fails, and every
// renderer's verdict says NOT JUDGED (not FAIL, not PASS) while nothing
// failed; with a violated threshold it says FAIL.
#[test]
fn an_audit_not_done_is_not_judged_never_a_pass() {
    let deferred = LoadReport {
        audit_not_done: Some("shard 1/2 of a sharded load".into()),
        ..empty()
    };
    assert!(!deferred.passed());
    assert!(
        render_terminal(&deferred).contains("verdict NOT JUDGED"),
        "{}",
        render_terminal(&deferred)
    );
    assert!(render_markdown(&deferred).contains("NOT JUDGED"));
    assert!(render_html(&deferred).contains("NOT JUDGED"));
    assert!(
        empty().passed(),
        "the same report with the audit done passes"
    );
    let failing = LoadReport {
        thresholds: vec![ThresholdResult {
            rule: "p99<1ms".into(),
            measured: "p99 = 2 ms".into(),
            passed: false,
        }],
        ..deferred
    };
    assert!(render_terminal(&failing).contains("verdict FAIL"));
}

// Proves a report in which the user opted every invariant out (`--skip` of
// all, `report merge --no-audit`) is not called a pass: it passes (exit 0,
// as documented) but every renderer says NOT JUDGED (AS ASKED), with the
// orange badge in HTML; one invariant judged and holding makes it PASS.
#[test]
fn a_report_that_judged_no_invariant_is_not_called_a_pass() {
    let skipped = |invariant: &str, outcome: &str| AuditVerdict {
        invariant: invariant.into(),
        outcome: outcome.into(),
        violations: 0,
        examples: vec![],
        reason: (outcome == "not_judged").then(|| "skipped by --skip".into()),
        lost_to_faults: 0,
    };
    let nothing = LoadReport {
        audit: vec![
            skipped("no_oversell", "not_judged"),
            skipped("single_charge", "not_judged"),
        ],
        ..empty()
    };
    assert!(nothing.passed(), "opting out is not a failure");
    let terminal = render_terminal(&nothing);
    assert!(
        terminal.contains("verdict NOT JUDGED (AS ASKED)"),
        "{terminal}"
    );
    assert!(render_markdown(&nothing).contains("NOT JUDGED (AS ASKED)"));
    let html = render_html(&nothing);
    assert!(
        html.contains("<span class=\"verdict incomplete\">NOT JUDGED (AS ASKED)</span>"),
        "{html}"
    );
    let one = LoadReport {
        audit: vec![
            skipped("no_oversell", "holds"),
            skipped("single_charge", "not_judged"),
        ],
        ..empty()
    };
    assert!(render_terminal(&one).contains("verdict PASS"));
    assert!(render_html(&one).contains("<span class=\"verdict pass\">PASS</span>"));
}

// Proves two runs of one design compared side by side can be told apart:
// each column names the folder it was read from, in the table (markdown
// and HTML) and in the overlay charts' legends.
#[test]
fn a_comparison_names_the_folder_of_each_column() {
    let runs = [sample("reference"), sample("reference")];
    let folders = ["runs/monday".to_string(), "runs/tuesday".to_string()];
    let md = render_compare_markdown(&runs, &folders);
    assert!(
        md.contains("| folder | runs/monday | runs/tuesday |"),
        "{md}"
    );
    let html = render_compare_html(&runs, &folders);
    assert!(
        html.contains("<td class=\"num\">runs/tuesday</td>"),
        "{html}"
    );
    assert!(html.contains("reference (runs/monday)"), "{html}");
    assert!(!render_compare_markdown(&runs, &[]).contains("| folder |"));
}
