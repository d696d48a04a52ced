//! Which charts a report has, and what each plots: the data side of the
//! HTML report (drawing is [`crate::plot`]'s job).

use crate::model::{LoadReport, SpectrumPoint};
use crate::plot::{Chart, SINCE_LOAD, Series, XAxis, colour, percentile_x};

const SPECTRUM_SIZE: (u32, u32) = (760, 400);
const TIMELINE_SIZE: (u32, u32) = (600, 300);

/// Spectrum points as (axis position, ms), sorted; percentiles outside `[0, 100)` dropped.
fn spectrum_points(spectrum: &[SpectrumPoint]) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = spectrum
        .iter()
        .filter(|p| (0.0..100.0).contains(&p.percentile))
        .map(|p| (percentile_x(p.percentile), p.value_us as f64 / 1000.0))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Latency by percentile, one solid line per endpoint (headline) and a
/// dashed one of the same colour where the raw distribution differs.
pub(crate) fn spectrum(r: &LoadReport) -> Chart {
    let mut series = Vec::new();
    for (i, e) in r.endpoints.iter().enumerate() {
        series.push(Series {
            label: e.name.clone(),
            colour: colour(i),
            dashed: false,
            points: spectrum_points(&e.spectrum),
        });
        if !e.raw_spectrum.is_empty() && e.raw_spectrum != e.spectrum {
            series.push(Series {
                label: format!("{} (raw)", e.name),
                colour: colour(i),
                dashed: true,
                points: spectrum_points(&e.raw_spectrum),
            });
        }
    }
    Chart {
        x: XAxis::Percentile,
        y_desc: "latency, ms".into(),
        y_log: true,
        series,
        size: SPECTRUM_SIZE,
        bands: Vec::new(),
        seconds_since: SINCE_LOAD,
    }
}

/// One design per line: the headline spectrum of `endpoint` in each report.
pub(crate) fn compare_spectrum(
    reports: &[LoadReport],
    folders: &[String],
    endpoint: &str,
) -> Chart {
    let series = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.endpoint(endpoint).map(|e| Series {
                label: folders
                    .get(i)
                    .map_or_else(|| r.design.clone(), |f| format!("{} ({f})", r.design)),
                colour: colour(i),
                dashed: false,
                points: spectrum_points(&e.spectrum),
            })
        })
        .collect();
    Chart {
        x: XAxis::Percentile,
        y_desc: format!("{endpoint}, ms"),
        y_log: true,
        series,
        size: SPECTRUM_SIZE,
        bands: Vec::new(),
        seconds_since: SINCE_LOAD,
    }
}

/// Seconds since load began at each interval's end, when its counts were complete.
fn interval_ends(r: &LoadReport) -> impl Iterator<Item = f64> + '_ {
    r.timeline
        .iter()
        .map(|i| i.start_ms.saturating_add(r.interval_ms) as f64 / 1000.0)
}

fn timeline_chart(y_desc: &str, series: Vec<Series>) -> Chart {
    Chart {
        x: XAxis::Seconds,
        y_desc: y_desc.into(),
        y_log: false,
        series,
        size: TIMELINE_SIZE,
        bands: Vec::new(),
        seconds_since: SINCE_LOAD,
    }
}

/// Requests completed per second in each interval (per interval if the
/// interval width is unknown).
pub(crate) fn throughput(r: &LoadReport) -> Chart {
    let (per, y_desc) = if r.interval_ms > 0 {
        (r.interval_ms as f64 / 1000.0, "requests/s")
    } else {
        (1.0, "requests per interval")
    };
    let points = interval_ends(r)
        .zip(&r.timeline)
        .map(|(x, i)| (x, i.requests as f64 / per))
        .collect();
    timeline_chart(
        y_desc,
        vec![Series {
            label: "requests".into(),
            colour: colour(0),
            dashed: false,
            points,
        }],
    )
}

/// p50 and p99 of the requests completed in each interval; intervals with
/// no request have no latency and are skipped (the line joins across them).
pub(crate) fn latency_over_time(r: &LoadReport) -> Chart {
    let line = |label: &str, i: usize, value: fn(&crate::model::Interval) -> u64| Series {
        label: label.into(),
        colour: colour(i),
        dashed: false,
        points: interval_ends(r)
            .zip(&r.timeline)
            .filter(|(_, iv)| iv.requests > 0)
            .map(|(x, iv)| (x, value(iv) as f64 / 1000.0))
            .collect(),
    };
    timeline_chart(
        "latency, ms",
        vec![line("p50", 0, |i| i.p50_us), line("p99", 1, |i| i.p99_us)],
    )
}

/// Failed requests in each interval.
pub(crate) fn errors_over_time(r: &LoadReport) -> Chart {
    let points = interval_ends(r)
        .zip(&r.timeline)
        .map(|(x, i)| (x, i.errors as f64))
        .collect();
    timeline_chart(
        "errors per interval",
        vec![Series {
            label: "errors".into(),
            colour: colour(3),
            dashed: false,
            points,
        }],
    )
}

/// Orders per status at each interval's end, one line per status ever seen
/// (sorted; a status missing from an interval counts 0 there).
pub(crate) fn orders_over_time(r: &LoadReport) -> Chart {
    let series = r
        .order_statuses()
        .into_iter()
        .enumerate()
        .map(|(i, status)| Series {
            label: status.to_string(),
            colour: status_colour(status, i),
            dashed: false,
            points: interval_ends(r)
                .zip(&r.timeline)
                .map(|(x, iv)| {
                    (
                        x,
                        iv.orders_by_status.get(status).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        })
        .collect();
    timeline_chart("orders", series)
}

/// The core's order statuses keep their colour whatever else a run saw
/// (confirmed is always green, failures warm); others take the palette by
/// their place in the sorted list.
fn status_colour(status: &str, index: usize) -> plotters::style::RGBColor {
    let palette_index = match status {
        "paid" => 0,
        "payment_pending" => 1,
        "confirmed" => 2,
        "cancelled_out_of_stock" => 3,
        "cancelled_by_customer" => 4,
        "cancelled_expired" => 5,
        "cancelled_payment_failed" => 6,
        "created" => 7,
        "refunded" => 8,
        "inventory_reserved" => 9,
        _ => index,
    };
    colour(palette_index)
}
