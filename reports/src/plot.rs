//! Line charts as inline SVG, drawn with plotters' SVG backend into a string.
//!
//! Without plotters' font features there is no text measuring: labels are
//! SVG `<text>` elements the browser sets, and plotters only estimates their
//! size for layout. Ranges are padded so one point, or all-zero data, still
//! makes a valid chart; charts with no finite point are not drawn at all.

use crate::format;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

/// Ten colours told apart on white, in the order series take them.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x6f, 0xb4), // blue
    RGBColor(0xe0, 0x6c, 0x00), // orange
    RGBColor(0x2a, 0x9d, 0x4a), // green
    RGBColor(0xc6, 0x28, 0x28), // red
    RGBColor(0x7b, 0x4f, 0xb0), // purple
    RGBColor(0x8c, 0x5a, 0x3c), // brown
    RGBColor(0xd0, 0x4f, 0xa0), // pink
    RGBColor(0x55, 0x55, 0x55), // grey
    RGBColor(0x9a, 0x9a, 0x1a), // olive
    RGBColor(0x14, 0xa3, 0xb8), // teal
];

/// The `i`th series colour (cycling).
pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Largest percentile axis position drawn: 99.9999999% (nine nines).
const PERCENTILE_X_MAX: f64 = 9.0;

/// How the x axis reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XAxis {
    /// Seconds since load began, linear.
    Seconds,
    /// A percentile `p` at `log10(1 / (1 - p/100))`: 90%, 99%, 99.9% evenly spaced.
    Percentile,
}

/// One line.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    /// Legend text.
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    /// Dashed and thinner: a secondary line (e.g. the raw spectrum).
    pub(crate) dashed: bool,
    /// (x, y) in axis units; non-finite points are skipped.
    pub(crate) points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Clone, Debug)]
pub(crate) struct Chart {
    pub(crate) x: XAxis,
    pub(crate) y_desc: String,
    /// A logarithmic y axis: for latencies spanning decades (a 2 ms request
    /// beside a 4 s order-to-confirmation) so neither is flattened.
    pub(crate) y_log: bool,
    pub(crate) series: Vec<Series>,
    /// The plot's pixels, legend excluded (the HTML scales it down to fit).
    pub(crate) size: (u32, u32),
    /// Spans of the x axis shaded behind the lines (faults), in axis units.
    pub(crate) bands: Vec<(f64, f64)>,
    /// What a [`XAxis::Seconds`] axis counts from.
    pub(crate) seconds_since: &'static str,
}

/// What a load run's time axis counts from.
pub(crate) const SINCE_LOAD: &str = "seconds since load began";

/// What drawing gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Drawn {
    /// An `<svg>` element, ready to inline in HTML.
    Svg(String),
    /// No finite point to draw.
    NoData,
    /// plotters refused (not expected with the SVG backend); the reason.
    Failed(String),
}

/// The position of percentile `p` (in `[0, 100)`) on a [`XAxis::Percentile`] axis.
pub(crate) fn percentile_x(p: f64) -> f64 {
    (1.0 / (1.0 - p / 100.0)).log10()
}

/// The tick label for percentile axis position `x`: `50%`, `99.9%`.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i64 - 2).clamp(0, 12) as usize;
    format!("{p:.decimals$}%")
}

/// Pixels around the plot.
const MARGIN: u32 = 14;
/// Room for the y labels and description.
const Y_LABEL_AREA: u32 = 64;
/// One legend line.
const LEGEND_ROW: u32 = 20;
/// A rough width of one 12 px label character (there is no font to measure).
const LEGEND_CHAR: u32 = 7;

/// Draws `chart` as an inline `<svg>` element.
pub(crate) fn draw(chart: &Chart) -> Drawn {
    let series = drawable(chart);
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let Some((x_max, y_max)) = all().reduce(|(ax, ay), (x, y)| (ax.max(x), ay.max(y))) else {
        return Drawn::NoData;
    };
    let (x_min, y_min) = all()
        .reduce(|(ax, ay), (x, y)| (ax.min(x), ay.min(y)))
        .unwrap_or((0.0, 0.0));
    let x = match chart.x {
        XAxis::Seconds => Axis::linear(x_min.min(0.0), x_max, 0.0),
        XAxis::Percentile => Axis::percentile(x_max),
    };
    let y = if chart.y_log {
        let y_min_positive = all()
            .map(|(_, y)| y)
            .filter(|y| *y > 0.0)
            .reduce(f64::min)
            .unwrap_or(1.0);
        Axis::log(y_min_positive, y_max)
    } else {
        Axis::linear(y_min.min(0.0), y_max, 0.08)
    };
    let legend = Legend::new(&series, chart.size.0);
    let size = (chart.size.0, chart.size.1 + legend.height);
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        plot(&root, chart, &series, &legend, x, y)
    };
    match result {
        // Inline SVG in HTML takes its namespace from the parser; dropping the
        // attribute keeps the page free of any URL.
        Ok(()) => Drawn::Svg(svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)),
        Err(e) => Drawn::Failed(e.to_string()),
    }
}

/// The chart's series with only the points an axis can place; empty series dropped.
fn drawable(chart: &Chart) -> Vec<Series> {
    chart
        .series
        .iter()
        .map(|s| Series {
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x.is_finite() && y.is_finite())
                .filter(|&(x, _)| {
                    chart.x != XAxis::Percentile || (0.0..=PERCENTILE_X_MAX).contains(&x)
                })
                .collect(),
            ..s.clone()
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// What drawing on an SVG area gives: nothing, or plotters' error.
pub(crate) type PlotResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn plot(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
    series: &[Series],
    legend: &Legend,
    x: Axis,
    y: Axis,
) -> PlotResult {
    root.fill(&WHITE)?;
    let (y_low, y_high) = (y.lo, y.hi);
    let (upper, lower) = root.split_vertically(chart.size.1);
    let mut ctx = ChartBuilder::on(&upper)
        .margin(MARGIN)
        .margin_right(MARGIN * 3)
        .x_label_area_size(44)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x, y)?;
    let x_axis = chart.x;
    let x_label = move |x: &f64| match x_axis {
        XAxis::Seconds => format::num(*x),
        XAxis::Percentile => percentile_label(*x),
    };
    let y_label = |y: &f64| format::num(*y);
    ctx.configure_mesh()
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_desc(match chart.x {
            XAxis::Seconds => chart.seconds_since,
            XAxis::Percentile => "percentile",
        })
        .y_desc(chart.y_desc.as_str())
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()?;
    for &(from, until) in &chart.bands {
        let band = [(from, y_low), (until.max(from), y_high)];
        ctx.draw_series(std::iter::once(Rectangle::new(
            band,
            colour(1).mix(0.18).filled(),
        )))?;
    }
    for s in series {
        let style = line_style(s);
        if s.dashed {
            ctx.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))?;
        } else {
            // One point draws no line: mark it so it still shows.
            let marker = if s.points.len() == 1 { 3 } else { 0 };
            ctx.draw_series(LineSeries::new(s.points.clone(), style).point_size(marker))?;
        }
    }
    legend.draw(&lower, series)?;
    root.present()?;
    Ok(())
}

fn line_style(s: &Series) -> ShapeStyle {
    ShapeStyle {
        color: s.colour.to_rgba(),
        filled: false,
        stroke_width: if s.dashed { 1 } else { 2 },
    }
}

/// The legend, in columns below the plot (inside it, it would hide lines);
/// none for a single series, which the chart's title names.
struct Legend {
    columns: u32,
    column_width: u32,
    height: u32,
}

impl Legend {
    fn new(series: &[Series], width: u32) -> Legend {
        Legend::with(series, width, 2)
    }

    /// A legend once there are `entries_min` series or more.
    fn with(series: &[Series], width: u32, entries_min: u32) -> Legend {
        let entries = series.len() as u32;
        if entries < entries_min.max(1) {
            return Legend {
                columns: 1,
                column_width: width,
                height: 0,
            };
        }
        let label_chars = series
            .iter()
            .map(|s| s.label.chars().count())
            .max()
            .unwrap_or(0);
        let usable = width.saturating_sub(Y_LABEL_AREA + 2 * MARGIN).max(1);
        let column_width = (label_chars as u32 * LEGEND_CHAR + 44).min(usable);
        let columns = (usable / column_width).clamp(1, entries);
        let rows = entries.div_ceil(columns);
        Legend {
            columns,
            column_width,
            height: rows * LEGEND_ROW + MARGIN,
        }
    }

    fn draw(&self, area: &DrawingArea<SVGBackend<'_>, Shift>, series: &[Series]) -> PlotResult {
        if self.height == 0 {
            return Ok(());
        }
        let font = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (k, s) in series.iter().enumerate() {
            let k = k as u32;
            let x = (MARGIN + Y_LABEL_AREA + (k % self.columns) * self.column_width) as i32;
            let y = ((k / self.columns) * LEGEND_ROW + LEGEND_ROW / 2) as i32;
            let style = line_style(s);
            let sample = vec![(x, y), (x + 28, y)];
            if s.dashed {
                area.draw(&DashedPathElement::new(sample, 6, 4, style))?;
            } else {
                area.draw(&PathElement::new(sample, style))?;
            }
            area.draw(&Text::new(s.label.clone(), (x + 36, y), font.clone()))?;
        }
        Ok(())
    }
}

/// Bars grouped by category: in each category, one bar per series, side by side.
#[derive(Clone, Debug)]
pub(crate) struct Bars {
    /// The x axis' groups, left to right.
    pub(crate) categories: Vec<String>,
    pub(crate) y_desc: String,
    pub(crate) series: Vec<BarSeries>,
    /// The plot's pixels, legend excluded.
    pub(crate) size: (u32, u32),
}

/// One colour of bars: `values[i]` is its bar in category `i`.
#[derive(Clone, Debug)]
pub(crate) struct BarSeries {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    pub(crate) values: Vec<f64>,
}

/// The share of a category's width its bars take (the rest is the gap between groups).
const BAR_GROUP_WIDTH: f64 = 0.8;

/// Draws `bars` as an inline `<svg>` element: each bar with its value written
/// above it (none for zero), a legend naming every series.
pub(crate) fn draw_bars(bars: &Bars) -> Drawn {
    if bars.categories.is_empty() || bars.series.is_empty() {
        return Drawn::NoData;
    }
    let y_max = bars
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let count = bars.categories.len();
    let x = Axis {
        lo: 0.0,
        hi: count as f64,
        log: false,
        ticks: (0..count).map(|i| i as f64 + 0.5).collect(),
    };
    let keys: Vec<Series> = bars
        .series
        .iter()
        .map(|s| Series {
            label: s.label.clone(),
            colour: s.colour,
            dashed: false,
            points: Vec::new(),
        })
        .collect();
    let legend = Legend::with(&keys, bars.size.0, 1);
    let size = (bars.size.0, bars.size.1 + legend.height);
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        plot_bars(&root, bars, &keys, &legend, x, bar_axis(bars, y_max))
    };
    match result {
        Ok(()) => Drawn::Svg(svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)),
        Err(e) => Drawn::Failed(e.to_string()),
    }
}

/// The value axis of `bars` from 0 past `y_max`; ticked at whole numbers
/// only when every value is one (counts of seeds have no halves).
fn bar_axis(bars: &Bars, y_max: f64) -> Axis {
    let mut axis = Axis::linear(0.0, y_max, 0.12);
    let values = || bars.series.iter().flat_map(|s| s.values.iter());
    if values().all(|v| v.fract() == 0.0) {
        axis.ticks.retain(|t| t.fract() == 0.0);
    }
    axis
}

/// A category's name cut to `chars_max` characters (an ellipsis says it was cut).
fn fit_label(label: &str, chars_max: usize) -> String {
    if label.chars().count() <= chars_max {
        return label.to_string();
    }
    let mut cut: String = label.chars().take(chars_max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn plot_bars(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    bars: &Bars,
    keys: &[Series],
    legend: &Legend,
    x: Axis,
    y: Axis,
) -> PlotResult {
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(bars.size.1);
    let mut ctx = ChartBuilder::on(&upper)
        .margin(MARGIN)
        .margin_right(MARGIN * 3)
        .x_label_area_size(44)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x, y)?;
    let count = bars.categories.len();
    let plot_width = bars.size.0.saturating_sub(Y_LABEL_AREA + 4 * MARGIN) as usize;
    let chars_max = (plot_width / count / LEGEND_CHAR as usize).max(4);
    let x_label = |x: &f64| {
        let i = (x - 0.5).round().max(0.0) as usize;
        bars.categories
            .get(i)
            .map_or(String::new(), |c| fit_label(c, chars_max))
    };
    let y_label = |y: &f64| format::num(*y);
    ctx.configure_mesh()
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .y_desc(bars.y_desc.as_str())
        .disable_x_mesh()
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()?;
    let width = BAR_GROUP_WIDTH / bars.series.len() as f64;
    let font = ("sans-serif", 11)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (k, s) in bars.series.iter().enumerate() {
        let placed = s
            .values
            .iter()
            .enumerate()
            .take(count)
            .filter(|(_, v)| v.is_finite());
        let at = |i: usize| i as f64 + (1.0 - BAR_GROUP_WIDTH) / 2.0 + k as f64 * width;
        ctx.draw_series(
            placed.clone().map(|(i, &v)| {
                Rectangle::new([(at(i), 0.0), (at(i) + width, v)], s.colour.filled())
            }),
        )?;
        ctx.draw_series(placed.filter(|(_, v)| **v > 0.0).map(|(i, &v)| {
            EmptyElement::at((at(i) + width / 2.0, v))
                + Text::new(format::num(v), (0, -2), font.clone())
        }))?;
    }
    legend.draw(&lower, keys)?;
    root.present()?;
    Ok(())
}

/// An f64 axis, linear or logarithmic, with exactly the ticks given: bold
/// grid lines and labels there, no light lines between. (plotters' own
/// `with_key_points` wrapper loses f64's label formatting, so the mesh could
/// not be configured on it.)
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    /// `lo..hi` with `headroom` (a fraction of the span) above, never empty.
    fn linear(lo: f64, hi: f64, headroom: f64) -> Axis {
        let span = hi - lo;
        let hi = if span > f64::EPSILON * hi.abs().max(1.0) {
            hi + span * headroom
        } else {
            lo + if lo.abs() > 0.0 { lo.abs() } else { 1.0 }
        };
        Axis {
            lo,
            hi,
            log: false,
            ticks: nice_ticks(lo, hi),
        }
    }

    /// Whole decades around `min..max` (both positive), at least one.
    fn log(min: f64, max: f64) -> Axis {
        let lo_exp = min.log10().floor() as i32;
        let hi_exp = (max.max(min).log10().ceil() as i32).max(lo_exp + 1);
        let decades = hi_exp - lo_exp;
        let steps: &[f64] = if decades <= 3 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut ticks = Vec::new();
        for e in lo_exp..=hi_exp {
            for m in steps {
                let t = decade(e) * m;
                if t <= decade(hi_exp) {
                    ticks.push(t);
                }
            }
        }
        Axis {
            lo: decade(lo_exp),
            hi: decade(hi_exp),
            log: true,
            ticks,
        }
    }

    /// From 0% to the whole nine at or above `x_max`, ticked at 0%, 50% and each nine.
    fn percentile(x_max: f64) -> Axis {
        let hi = x_max.ceil().max(1.0);
        let mut ticks = vec![0.0, percentile_x(50.0)];
        ticks.extend((1..=hi as u32).map(f64::from));
        Axis {
            lo: 0.0,
            hi,
            log: false,
            ticks,
        }
    }

    /// Where `v` falls, 0 at `lo` and 1 at `hi` (values off a log axis' bottom sit on it).
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// 10ᵉ, exact for negative `e` too (0.001, not 0.0010000000000000002).
fn decade(e: i32) -> f64 {
    if e < 0 {
        1.0 / 10f64.powi(-e)
    } else {
        10f64.powi(e)
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = self.fraction(*value);
        let f = if f.is_finite() { f } else { 0.0 };
        limit.0 + (f64::from(limit.1 - limit.0) * f).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks at a round step (1, 2 or 5 × 10ⁿ), about six across `lo..hi`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const TICKS_TARGET: f64 = 6.0;
    let raw = (hi - lo) / TICKS_TARGET;
    let exponent = raw.log10().floor() as i32;
    let mult = match raw / decade(exponent) {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    };
    // k·mult / 10ⁿ rather than k·step: 0.6, not 0.6000000000000001.
    let at = |k: f64| {
        if exponent < 0 {
            k * mult / 10f64.powi(-exponent)
        } else {
            k * mult * decade(exponent)
        }
    };
    let step = mult * decade(exponent);
    let first = (lo / step).ceil();
    (0..=(TICKS_TARGET as usize * 3))
        .map(|i| at(first + i as f64))
        .take_while(|t| *t <= hi + step * 1e-9)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(x: XAxis, points: Vec<(f64, f64)>) -> Chart {
        Chart {
            x,
            y_desc: "ms".into(),
            y_log: false,
            series: vec![Series {
                label: "a<b".into(),
                colour: colour(0),
                dashed: false,
                points,
            }],
            size: (400, 200),
            bands: Vec::new(),
            seconds_since: SINCE_LOAD,
        }
    }

    // Proves a band is drawn behind the lines, one rectangle per band, and none without.
    #[test]
    fn bands_shade_their_span() {
        let plain = chart(XAxis::Seconds, vec![(0.0, 1.0), (10.0, 2.0)]);
        let banded = Chart {
            bands: vec![(2.0, 4.0), (6.0, 6.5)],
            seconds_since: "simulated seconds",
            ..plain.clone()
        };
        let (Drawn::Svg(a), Drawn::Svg(b)) = (draw(&plain), draw(&banded)) else {
            panic!("both drawn");
        };
        assert_eq!(b.matches("<rect").count(), a.matches("<rect").count() + 2);
        assert!(b.contains("simulated seconds") && a.contains("seconds since load began"));
    }

    // Proves the percentile axis: evenly spaced nines, labelled as percentiles.
    #[test]
    fn percentile_axis() {
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_x(0.0), 0.0);
        let labels: Vec<String> = [0.0, percentile_x(50.0), 1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|&x| percentile_label(x))
            .collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]);
    }

    // Proves degenerate data still draws: one point, all zeros; and none draws nothing.
    #[test]
    fn degenerate_ranges() {
        for points in [
            vec![(3.0, 0.0)],
            vec![(0.0, 0.0), (1.0, 0.0)],
            vec![(5.0, 7.0)],
        ] {
            match draw(&chart(XAxis::Seconds, points.clone())) {
                Drawn::Svg(svg) => {
                    assert!(svg.starts_with("<svg"), "{svg}");
                    assert!(!svg.contains("http"));
                }
                other => panic!("{points:?}: {other:?}"),
            }
        }
        assert_eq!(draw(&chart(XAxis::Seconds, vec![])), Drawn::NoData);
        assert_eq!(
            draw(&chart(
                XAxis::Percentile,
                vec![(f64::NAN, 1.0), (f64::INFINITY, 2.0)]
            )),
            Drawn::NoData
        );
        assert!(matches!(
            draw(&chart(XAxis::Percentile, vec![(0.0, 1.0)])),
            Drawn::Svg(_)
        ));
        let mut log = chart(XAxis::Percentile, vec![(0.0, 0.0), (2.0, -1.0)]);
        log.y_log = true;
        assert!(matches!(draw(&log), Drawn::Svg(_)));
    }

    // Proves bars of counts are ticked at whole numbers only, bars of fractions at the round
    // steps, each bar carries its value, and no bar or no category draws nothing.
    #[test]
    fn bars_tick_counts_whole_and_label_values() {
        let bars = |values: Vec<f64>| Bars {
            categories: vec!["a".into(), "b".into()],
            y_desc: "seeds".into(),
            series: vec![BarSeries {
                label: "x".into(),
                colour: colour(0),
                values,
            }],
            size: (400, 200),
        };
        assert_eq!(bar_axis(&bars(vec![2.0, 1.0]), 2.0).ticks, [0.0, 1.0, 2.0]);
        assert_eq!(
            bar_axis(&bars(vec![2.0, 0.5]), 2.0).ticks,
            [0.0, 0.5, 1.0, 1.5, 2.0]
        );
        let Drawn::Svg(svg) = draw_bars(&bars(vec![2.0, 0.5])) else {
            panic!("drawn");
        };
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|c| c.rsplit_once('>').map(|(_, t)| t.trim()))
            .collect();
        assert!(texts.contains(&"0.5") && texts.contains(&"x"), "{texts:?}");
        assert_eq!(
            draw_bars(&Bars {
                series: Vec::new(),
                ..bars(vec![])
            }),
            Drawn::NoData
        );
    }

    // Proves tick steps are round and cover the range, and ranges are never empty.
    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(0.0, 20.0), [0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(nice_ticks(0.0, 1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(Axis::linear(0.0, 0.0, 0.1).range(), 0.0..1.0);
        assert_eq!(Axis::linear(0.0, 10.0, 0.1).range(), 0.0..11.0);
        assert_eq!(Axis::linear(5.0, 5.0, 0.1).range(), 5.0..10.0);
        let log = Axis::log(0.8, 4000.0);
        assert_eq!(log.range(), 0.1..10000.0);
        assert_eq!(log.ticks, [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert_eq!(Axis::log(3.0, 3.0).ticks, [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(log.map(&1000.0, (0, 400)), 320, "four of five decades up");
        assert_eq!(log.map(&0.0, (0, 400)), 0, "off the bottom sits on it");
    }
}
