//! One self-contained HTML file per report: inline CSS, inline SVG charts,
//! no JavaScript and no external URL, so it opens from a CI artefact or an
//! e-mail attachment exactly as it was written.

use crate::charts;
use crate::format::escape_html;
use crate::model::{LoadReport, ORDER_TO_CONFIRMED, REPORT_VERSION};
use crate::plot::{self, Chart, Drawn};
use crate::sections::{self, PLACE_ORDER};
use std::fmt::Write as _;

const STYLE: &str = "\
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; \
max-width: 1500px; padding: 0 1.5rem; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.15rem; margin: 1.8rem 0 .6rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: .95rem; margin: 1rem 0 .3rem; color: #444; }
table { border-collapse: collapse; background: #fff; font-size: .9rem; margin: .3rem 0; }
th, td { padding: .3rem .6rem; border: 1px solid #e2e2e2; text-align: left; vertical-align: top; }
thead th { background: #f0f0f0; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary th { background: #f6f6f6; font-weight: 600; }
tr.good td:first-child { color: #1e7d32; }
tr.bad td { background: #fdecea; }
tr.bad td:first-child { color: #b71c1c; font-weight: 600; }
.verdict { display: inline-block; padding: .15rem .6rem; border-radius: 4px; font-weight: 700; }
.verdict.pass { background: #e3f4e5; color: #1e7d32; }
.verdict.fail { background: #fdecea; color: #b71c1c; }
.verdict.incomplete { background: #fff4e5; color: #a35200; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
.side-by-side > section { flex: 1 1 420px; min-width: 0; }
.side-by-side > section.wide { flex: 2 1 640px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 1rem 2rem; }
figure { margin: .5rem 0; }
svg { max-width: 100%; height: auto; background: #fff; border: 1px solid #e2e2e2; }
.nodata, .muted { color: #777; font-style: italic; }
.scroll { overflow-x: auto; }
code { font-size: .85rem; }
footer { margin-top: 2.5rem; color: #888; font-size: .8rem; }
";

/// `r` as one self-contained HTML page: title and verdict, a summary table,
/// the per-endpoint latencies with their percentile spectrum next to the
/// audit, the thresholds, and charts over time (throughput, p50/p99, errors,
/// orders by status). Charts are inline SVG; empty data gives a "no data"
/// note in place of a chart. The same report always gives the same bytes.
pub fn render_html(r: &LoadReport) -> String {
    let mut body = String::new();
    body.push_str(&header(&r.title, sections::verdict(r)));

    body.push_str("<h2>Summary</h2>\n<table class=\"summary\">\n");
    for (label, value) in sections::summary(r) {
        let _ = writeln!(
            body,
            "<tr><th>{label}</th><td>{}</td></tr>",
            escape_html(&value)
        );
    }
    body.push_str("</table>\n");

    body.push_str(
        "<div class=\"side-by-side\">\n<section class=\"wide\">\n<h2>Latency (ms)</h2>\n",
    );
    body.push_str(
        "<p class=\"muted\">Headline percentiles on each endpoint's basis; raw p99 as sent, \
         uncorrected. Dashed lines: the raw spectrum where it differs.</p>\n",
    );
    let endpoints = sections::endpoints(r);
    if endpoints.is_empty() {
        body.push_str(&no_data("no endpoint latencies recorded"));
    } else {
        let _ = writeln!(
            body,
            "<div class=\"scroll\">{}</div>",
            endpoints.to_html("latency")
        );
    }
    body.push_str(&figure(
        "Latency by percentile",
        &charts::spectrum(r),
        "no latency spectra recorded",
    ));
    body.push_str("</section>\n<section>\n<h2>Audit</h2>\n");
    let audit = sections::audit(r, true);
    if audit.is_empty() {
        body.push_str("<p class=\"muted\">Not run.</p>\n");
    } else {
        body.push_str(&audit.to_html("audit"));
    }
    body.push_str("</section>\n</div>\n");

    body.push_str("<h2>Thresholds</h2>\n");
    let thresholds = sections::thresholds(r);
    if thresholds.is_empty() {
        body.push_str("<p class=\"muted\">None set.</p>\n");
    } else {
        body.push_str(&thresholds.to_html("thresholds"));
    }

    body.push_str("<h2>Over time</h2>\n<div class=\"charts\">\n");
    let empty = "the timeline is empty";
    body.push_str(&figure("Throughput", &charts::throughput(r), empty));
    body.push_str(&figure(
        "Latency p50 and p99",
        &charts::latency_over_time(r),
        empty,
    ));
    body.push_str(&figure("Errors", &charts::errors_over_time(r), empty));
    body.push_str(&figure(
        "Orders by status",
        &charts::orders_over_time(r),
        "no order states in the timeline",
    ));
    body.push_str("</div>\n");

    list(&mut body, "Notes", &r.notes, false);
    list(&mut body, "Files", &r.files, true);
    page(&r.title, &body)
}

/// Several runs (typically one per design) side by side in one page: a
/// table with one column per report (model, requests, errors, p50/p99 of
/// `POST /v1/orders` and `order → confirmed`, each invariant's outcome) and
/// two spectrum charts overlaying the designs, for `order → confirmed` and
/// for `POST /v1/orders`.
pub fn render_compare_html(reports: &[LoadReport], folders: &[String]) -> String {
    let title = "Designs compared";
    let mut body = format!("<header>\n<h1>{title}</h1>\n</header>\n");
    if reports.is_empty() {
        body.push_str(&no_data("no reports to compare"));
        return page(title, &body);
    }
    body.push_str(
        "<h2>Side by side</h2>\n<p class=\"muted\">Latencies in ms, each on the basis its row's <code>basis</code> line gives per run.</p>\n",
    );
    let _ = writeln!(
        body,
        "<div class=\"scroll\">{}</div>",
        sections::compare(reports, folders).to_html("compare")
    );
    body.push_str("<h2>Latency by percentile</h2>\n<div class=\"charts\">\n");
    for endpoint in [ORDER_TO_CONFIRMED, PLACE_ORDER] {
        body.push_str(&figure(
            endpoint,
            &charts::compare_spectrum(reports, folders, endpoint),
            &format!("no report measured {endpoint}"),
        ));
    }
    body.push_str("</div>\n");
    page(title, &body)
}

/// The whole document around `body`.
/// A page's title and its PASS/FAIL badge.
pub(crate) fn header(title: &str, verdict: &str) -> String {
    format!(
        "<header>\n<h1>{}</h1>\n<span class=\"verdict {}\">{verdict}</span>\n</header>\n",
        escape_html(title),
        verdict_class(verdict)
    )
}

/// The style of a verdict badge: green for a pass, red for a failure,
/// orange for anything not judged or incomplete.
fn verdict_class(verdict: &str) -> &'static str {
    match verdict {
        "PASS" => "pass",
        "FAIL" => "fail",
        _ => "incomplete",
    }
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}\
         <footer>Stampede report, schema version {REPORT_VERSION}.</footer>\n</body>\n</html>\n",
        escape_html(title)
    )
}

/// A titled chart, or a "no data" note saying `why` in its place.
pub(crate) fn figure(title: &str, chart: &Chart, why: &str) -> String {
    figure_of(title, plot::draw(chart), why)
}

/// A titled drawing, or a "no data" note saying `why` in its place.
pub(crate) fn figure_of(title: &str, drawn: Drawn, why: &str) -> String {
    let title = escape_html(title);
    match drawn {
        Drawn::Svg(svg) => format!("<figure>\n<h3>{title}</h3>\n{svg}</figure>\n"),
        Drawn::NoData => format!("<figure>\n<h3>{title}</h3>\n{}</figure>\n", no_data(why)),
        Drawn::Failed(e) => format!(
            "<figure>\n<h3>{title}</h3>\n<p class=\"nodata\">Chart not drawn: {}</p>\n</figure>\n",
            escape_html(&e)
        ),
    }
}

fn no_data(why: &str) -> String {
    format!("<p class=\"nodata\">No data: {}.</p>\n", escape_html(why))
}

/// A titled list, left out when empty; `code` sets items as code.
fn list(body: &mut String, title: &str, items: &[String], code: bool) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(body, "<h2>{title}</h2>\n<ul>");
    for item in items {
        if code {
            let _ = writeln!(body, "<li><code>{}</code></li>", escape_html(item));
        } else {
            let _ = writeln!(body, "<li>{}</li>", escape_html(item));
        }
    }
    body.push_str("</ul>\n");
}
