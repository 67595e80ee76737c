//! SVG figures with plotters. The SVG backend writes text as <text> elements, so no font
//! library is needed; the same inputs give byte-identical SVG.
//!
//! One kind of figure, made for reading without the table: a row per cell, labelled by the
//! parameters that vary, every run as a point, the mean as a tall tick and its 95% interval as
//! a line through it, on light gridlines. Bars with whiskers hide how many runs there were and
//! how they spread; points do not.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One row: a cell's runs, the centre of their interval (their mean on the scale the interval
/// was taken on) and the interval.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub runs: Vec<f64>,
    pub mean: f64,
    pub interval: Option<(f64, f64)>,
    /// Which series the row belongs to, for its colour (rows of one cell, two metrics).
    pub series: usize,
}

const WIDTH: u32 = 820;
const ROW_HEIGHT: u32 = 44;
const SERIES: [RGBColor; 2] = [RGBColor(52, 101, 164), RGBColor(206, 92, 0)];

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a figure: {e}")
}

/// The x range: every point and interval end, padded, starting at 0 when the data is
/// positive and 0 is not far off (so ratios between cells read true).
fn x_range(rows: &[Row]) -> (f64, f64) {
    let values = rows.iter().flat_map(|r| {
        r.runs
            .iter()
            .copied()
            .chain([r.mean])
            .chain(r.interval.into_iter().flat_map(|(l, h)| [l, h]))
    });
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(hi.abs() * 0.05).max(1e-9);
    let pad = span * 0.08;
    let lo = if lo >= 0.0 && lo < 0.5 * hi {
        0.0
    } else if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    (lo, hi + pad)
}

/// Where the k-th of n runs sits above or below its row's line, so that equal values stay
/// visible (deterministic, not random: the same data gives the same SVG).
fn jitter(k: usize, n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let slots = n.min(7);
    let slot = k % slots;
    (slot as f64 / (slots - 1) as f64 - 0.5) * 0.36
}

/// The largest magnitude an axis end takes. plotters takes the span of a range and steps
/// through it: a span that overflows to infinity (journal values near `f64::MAX` of both
/// signs, or padding on top of one) makes it loop forever, and a NaN end panics.
const AXIS_LIMIT: f64 = f64::MAX / 8.0;

/// `lo..hi` as plotters can draw it: finite ends within `AXIS_LIMIT`, a span it can divide,
/// and every value that was clamped off still within a few widths of the plot (plotters adds
/// pixel offsets in `i32`, which a point a billion widths off overflows).
fn axis(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let clamp = |v: f64| {
        if v.is_nan() {
            0.0
        } else {
            v.clamp(-AXIS_LIMIT, AXIS_LIMIT)
        }
    };
    let (mut lo, mut hi) = (clamp(lo.min(hi)), clamp(lo.max(hi)));
    if hi == AXIS_LIMIT {
        lo = lo.min(AXIS_LIMIT / 2.0);
    }
    if lo == -AXIS_LIMIT {
        hi = hi.max(-AXIS_LIMIT / 2.0);
    }
    let least = (lo.abs().max(hi.abs()) * 1e-9).max(1e-9);
    if hi - lo < least {
        (lo, hi) = (lo - least, hi + least);
    }
    lo..hi
}

/// A log axis likewise: positive ends, at most 300 decades apart (plotters counts the decades
/// from `hi / lo`, and an infinite count loops forever), and not a single point.
fn log_axis(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let clamp = |v: f64| {
        if v.is_nan() {
            1.0
        } else {
            v.clamp(f64::MIN_POSITIVE, f64::MAX)
        }
    };
    let (mut lo, mut hi) = (clamp(lo.min(hi)), clamp(lo.max(hi)));
    lo = lo.max(hi / 1e300);
    if hi < lo * 1.1 {
        (lo, hi) = (lo / 1.1, (hi * 1.1).min(f64::MAX));
    }
    lo..hi
}

/// An axis tick without trailing zeros (50, not 50.0; 0.35, not 0.350): the analysis' own
/// short form of a number, so a figure and the text around it agree.
pub use crate::analysis::trimmed as tick;

type Chart<'a, X> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, RangedCoordf64>>;

/// The finite values' range, and whether they are all positive and span more than two
/// decades, so that a linear axis would crush the small ones into the origin (latencies below
/// and beyond a server's capacity): then the padded range of a log axis.
fn value_range(values: impl Iterator<Item = f64>) -> ((f64, f64), Option<(f64, f64)>) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let log = (lo > 0.0 && hi / lo > 100.0).then(|| (lo / 1.3, hi * 1.3));
    ((lo, hi), log)
}

/// The log axis of a per-cell figure, where its values want one (`value_range`).
fn wants_log_axis(rows: &[Row]) -> Option<(f64, f64)> {
    value_range(rows.iter().flat_map(|r| {
        r.runs
            .iter()
            .copied()
            .chain([r.mean])
            .chain(r.interval.into_iter().flat_map(|(l, h)| [l, h]))
    }))
    .1
}

fn draw_rows<X>(chart: &mut Chart<'_, X>, rows: &[Row]) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
{
    let n = rows.len();
    let y = |i: usize| (n - 1 - i) as f64;
    for (i, row) in rows.iter().enumerate() {
        let color = SERIES[row.series % SERIES.len()];
        chart
            .draw_series(
                row.runs
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| {
                        Circle::new(
                            (*v, y(i) + jitter(k, row.runs.len())),
                            3,
                            color.mix(0.55).filled(),
                        )
                    }),
            )
            .map_err(err)?;
        if let Some((low, high)) = row.interval.filter(|(l, h)| l.is_finite() && h.is_finite()) {
            chart
                .draw_series([PathElement::new(
                    vec![(low, y(i)), (high, y(i))],
                    BLACK.stroke_width(2),
                )])
                .map_err(err)?;
        }
        if row.mean.is_finite() {
            chart
                .draw_series([PathElement::new(
                    vec![(row.mean, y(i) - 0.32), (row.mean, y(i) + 0.32)],
                    BLACK.stroke_width(3),
                )])
                .map_err(err)?;
        }
    }
    Ok(())
}

/// The figure: `title` above, `x_label` under the value axis, one row per entry.
pub fn runs_per_cell(title: &str, x_label: &str, rows: &[Row]) -> Result<String, String> {
    let n = rows.len().max(1);
    let label_chars = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(4);
    // About 6.5 px per character of 12 px sans-serif, within bounds.
    let label_width = ((label_chars as f64 * 6.5) as u32 + 16).clamp(60, 380);
    let height = 96 + ROW_HEIGHT * n as u32;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let row_label = |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < labels.len() {
            labels[labels.len() - 1 - i as usize].clone()
        } else {
            String::new()
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut builder = titled(&root, title, label_width);
        let y_range = -0.5..n as f64 - 0.5;
        // One body for both axes: the mesh and the rows, generic over the x coordinate.
        macro_rules! draw {
            ($chart:expr, $x_desc:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .max_light_lines(0)
                    .bold_line_style(RGBColor(228, 228, 228))
                    .x_label_formatter(&|v: &f64| tick(*v))
                    .axis_style(RGBColor(150, 150, 150))
                    .y_labels(n)
                    .y_label_formatter(&row_label)
                    .y_label_style(("sans-serif", 12))
                    .x_desc($x_desc)
                    .draw()
                    .map_err(err)?;
                draw_rows(&mut chart, rows)?;
            }};
        }
        match wants_log_axis(rows) {
            Some((lo, hi)) => draw!(
                builder
                    .build_cartesian_2d(log_axis(lo, hi).log_scale(), y_range)
                    .map_err(err)?,
                format!("{x_label} (log scale)")
            ),
            None => {
                let (lo, hi) = x_range(rows);
                draw!(
                    builder
                        .build_cartesian_2d(axis(lo, hi), y_range)
                        .map_err(err)?,
                    x_label.to_owned()
                )
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The builder of a figure with a title: the caption, margins and axis label areas every
/// titled figure shares (`y_label_width`: room for the y tick labels).
fn titled<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    y_label_width: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(y_label_width);
    builder
}

/// The mesh every figure with two numeric axes draws: light gridlines, grey axes, ticks without
/// trailing zeros, and the axes' descriptions.
fn light_mesh<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    x_desc: Option<&str>,
    y_desc: &str,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.max_light_lines(0)
        .bold_line_style(RGBColor(228, 228, 228))
        .x_label_formatter(&|v: &f64| tick(*v))
        .y_label_formatter(&|v: &f64| tick(*v))
        .axis_style(RGBColor(150, 150, 150))
        .y_desc(y_desc);
    if let Some(x) = x_desc {
        mesh.x_desc(x);
    }
    mesh.draw().map_err(err)
}

/// The legend of a figure with named lines, in one style for every figure.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}

/// One line of a figure over time: a cell's series sampled every `step_ms`.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub label: String,
    pub step_ms: f64,
    pub values: Vec<f64>,
}

/// Colours for the lines of a timeline figure, told apart in print as on screen.
const LINES: [RGBColor; 6] = [
    RGBColor(52, 101, 164),
    RGBColor(206, 92, 0),
    RGBColor(78, 154, 6),
    RGBColor(117, 80, 123),
    RGBColor(164, 0, 0),
    RGBColor(143, 89, 2),
];

/// A figure of series over time (seconds from the period's start), one line per entry, with
/// its label in a legend: how a quantity such as the requests in flight evolved in a run.
pub fn over_time(title: &str, y_label: &str, lines: &[Timeline]) -> Result<String, String> {
    let t_max = lines
        .iter()
        .map(|l| l.step_ms * l.values.len().saturating_sub(1) as f64 / 1000.0)
        .fold(0.0, f64::max)
        .max(1e-3);
    let values = || {
        lines
            .iter()
            .flat_map(|l| l.values.iter().copied())
            .filter(|v| v.is_finite())
    };
    let y_max = values().fold(0.0, f64::max).max(1.0) * 1.1;
    // Counts are not below 0, but a point far below the axis would overflow plotters.
    let y_min = values().fold(0.0, f64::min) * 1.1;
    let height = 360 + 18 * lines.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = titled(&root, title, 56)
            .build_cartesian_2d(axis(0.0, t_max), axis(y_min, y_max))
            .map_err(err)?;
        light_mesh(&mut chart, Some("seconds from the period's start"), y_label)?;
        for (i, line) in lines.iter().enumerate() {
            let color = LINES[i % LINES.len()];
            // Steps, not slopes: each sample holds until the next one.
            let at = |k: usize| k as f64 * line.step_ms / 1000.0;
            let points = line.values.iter().enumerate().flat_map(|(k, v)| {
                let next = if k + 1 < line.values.len() {
                    at(k + 1)
                } else {
                    at(k)
                };
                [(at(k), *v), (next, *v)]
            });
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(err)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A horizontal threshold on a figure along an axis: its label, its value, and the band whose
/// colour it takes.
#[derive(Debug, Clone)]
pub struct Reference {
    pub label: String,
    pub value: f64,
    pub band: usize,
}

/// One line of a figure along a numeric axis (the offered rate): each point's centre and
/// interval, and the runs themselves.
#[derive(Debug, Clone)]
pub struct Band {
    pub label: String,
    /// (x, centre, interval low, interval high), x ascending.
    pub points: Vec<(f64, f64, f64, f64)>,
    /// (x, a run's value).
    pub runs: Vec<(f64, f64)>,
}

/// A figure of quantities along a numeric axis: per line, every run as a point, the centres
/// joined, and the interval as a light band; the value axis is logarithmic when the values
/// span more than two decades (latencies below and beyond a server's capacity). `references`
/// are thresholds (an SLO's) drawn as dashed lines in the colour of the band they belong to.
pub fn along(
    title: &str,
    x_label: &str,
    y_label: &str,
    bands: &[Band],
    references: &[Reference],
) -> Result<String, String> {
    let xs = bands.iter().flat_map(|b| b.points.iter().map(|p| p.0));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    if !x_lo.is_finite() {
        return Err(err("a figure along an axis needs points"));
    }
    let pad = ((x_hi - x_lo) * 0.05).max(x_hi.abs() * 0.02).max(1e-9);
    let ((y_lo, y_hi), log_range) = value_range(
        bands
            .iter()
            .flat_map(|b| {
                b.points
                    .iter()
                    .flat_map(|p| [p.1, p.2, p.3])
                    .chain(b.runs.iter().map(|r| r.1))
            })
            .chain(references.iter().map(|r| r.value)),
    );
    let log = log_range.is_some();
    let height = 420 + 18 * bands.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut builder = titled(&root, title, 64);
        let x_range = axis(x_lo - pad, x_hi + pad);
        // References span the axis as drawn: a dashed line is a segment per 10 px, so one
        // from a value far off the plot would be billions of them.
        let (x_start, x_end) = (x_range.start, x_range.end);
        macro_rules! draw {
            ($chart:expr, $y_desc:expr) => {{
                let mut chart = $chart;
                light_mesh(&mut chart, Some(x_label), $y_desc.as_ref())?;
                for (i, band) in bands.iter().enumerate() {
                    let color = LINES[i % LINES.len()];
                    let finite = |v: f64| v.is_finite() && (!log || v > 0.0);
                    let area: Vec<(f64, f64)> = band
                        .points
                        .iter()
                        .filter(|p| finite(p.2) && finite(p.3))
                        .map(|p| (p.0, p.2))
                        .chain(
                            band.points
                                .iter()
                                .rev()
                                .filter(|p| finite(p.2) && finite(p.3))
                                .map(|p| (p.0, p.3)),
                        )
                        .collect();
                    if area.len() >= 4 {
                        chart
                            .draw_series([Polygon::new(area, color.mix(0.14).filled())])
                            .map_err(err)?;
                    }
                    chart
                        .draw_series(
                            band.runs
                                .iter()
                                .filter(|r| finite(r.1))
                                .map(|r| Circle::new(*r, 3, color.mix(0.55).filled())),
                        )
                        .map_err(err)?;
                    chart
                        .draw_series(LineSeries::new(
                            band.points
                                .iter()
                                .filter(|p| finite(p.1))
                                .map(|p| (p.0, p.1)),
                            color.stroke_width(2),
                        ))
                        .map_err(err)?
                        .label(band.label.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                }
                for r in references.iter().filter(|r| r.value.is_finite()) {
                    let color = LINES[r.band % LINES.len()];
                    chart
                        .draw_series([plotters::element::DashedPathElement::new(
                            vec![(x_start, r.value), (x_end, r.value)],
                            6,
                            4,
                            color.mix(0.8).stroke_width(1),
                        )])
                        .map_err(err)?;
                    chart
                        .draw_series([EmptyElement::at((x_end, r.value))
                            + Text::new(
                                r.label.clone(),
                                (-6, -14),
                                ("sans-serif", 11).into_font().color(&color).pos(
                                    plotters::style::text_anchor::Pos::new(
                                        plotters::style::text_anchor::HPos::Right,
                                        plotters::style::text_anchor::VPos::Top,
                                    ),
                                ),
                            )])
                        .map_err(err)?;
                }
                legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
            }};
        }
        if let Some((lo, hi)) = log_range {
            draw!(
                builder
                    .build_cartesian_2d(x_range, log_axis(lo, hi).log_scale())
                    .map_err(err)?,
                format!("{y_label} (log scale)")
            );
        } else {
            let top = if y_hi > 0.0 { y_hi * 1.1 } else { 1.0 };
            let bottom = if y_lo >= 0.0 { 0.0 } else { y_lo * 1.1 };
            draw!(
                builder
                    .build_cartesian_2d(x_range, axis(bottom, top))
                    .map_err(err)?,
                y_label
            );
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One cell of a frontier figure: its centre (the means over its runs), their intervals, the
/// runs themselves, whether it is Pareto-optimal, and a short tag (its rate).
#[derive(Debug, Clone)]
pub struct FrontierPoint {
    pub x: f64,
    pub y: f64,
    pub x_interval: Option<(f64, f64)>,
    pub y_interval: Option<(f64, f64)>,
    pub runs: Vec<(f64, f64)>,
    pub optimal: bool,
    pub tag: String,
}

/// A line of cells on a frontier figure (one sweep, joined in order), or cells on no sweep
/// (not joined).
#[derive(Debug, Clone)]
pub struct FrontierSeries {
    pub label: String,
    pub points: Vec<FrontierPoint>,
    pub joined: bool,
}

/// A trade-off figure where more is better on both axes: each cell's runs as faint points,
/// its centre as a dot with both intervals as a cross, a sweep's cells joined in order, and
/// the Pareto-optimal cells ringed and tagged.
pub fn frontier(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[FrontierSeries],
) -> Result<String, String> {
    let all = || series.iter().flat_map(|s| s.points.iter());
    // From 0 up, or down to a value below 0 (none is meant to be, but a point far off the
    // axis would overflow plotters' pixel arithmetic).
    let extent = |f: fn(&FrontierPoint) -> Vec<f64>| {
        let (lo, hi) = all()
            .flat_map(f)
            .filter(|v| v.is_finite())
            .fold((0.0, 0.0), |(lo, hi): (f64, f64), v| (lo.min(v), hi.max(v)));
        (lo * 1.12, hi.max(1e-9) * 1.12)
    };
    let (x_min, x_max) = extent(|p| {
        let mut v = vec![p.x];
        v.extend(p.runs.iter().map(|r| r.0));
        v.extend(p.x_interval.map(|i| i.1));
        v.extend(p.x_interval.map(|i| i.0));
        v
    });
    let (y_min, y_max) = extent(|p| {
        let mut v = vec![p.y];
        v.extend(p.runs.iter().map(|r| r.1));
        v.extend(p.y_interval.map(|i| i.1));
        v.extend(p.y_interval.map(|i| i.0));
        v
    });
    let height = 460 + 18 * series.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = titled(&root, title, 64)
            .build_cartesian_2d(axis(x_min, x_max), axis(y_min, y_max))
            .map_err(err)?;
        light_mesh(&mut chart, Some(x_label), y_label)?;
        let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
        for (i, line) in series.iter().enumerate() {
            let color = LINES[i % LINES.len()];
            let runs: Vec<(f64, f64)> = line
                .points
                .iter()
                .flat_map(|p| p.runs.iter().copied())
                .filter(finite)
                .collect();
            chart
                .draw_series(
                    runs.iter()
                        .map(|r| Circle::new(*r, 2, color.mix(0.35).filled())),
                )
                .map_err(err)?;
            for p in line.points.iter().filter(|p| finite(&(p.x, p.y))) {
                if let Some((lo, hi)) = p.x_interval.filter(finite) {
                    chart
                        .draw_series([PathElement::new(
                            vec![(lo, p.y), (hi, p.y)],
                            color.stroke_width(1),
                        )])
                        .map_err(err)?;
                }
                if let Some((lo, hi)) = p.y_interval.filter(finite) {
                    chart
                        .draw_series([PathElement::new(
                            vec![(p.x, lo), (p.x, hi)],
                            color.stroke_width(1),
                        )])
                        .map_err(err)?;
                }
            }
            let centres: Vec<(f64, f64)> = line
                .points
                .iter()
                .map(|p| (p.x, p.y))
                .filter(finite)
                .collect();
            if line.joined {
                chart
                    .draw_series(LineSeries::new(
                        centres.iter().copied(),
                        color.mix(0.6).stroke_width(1),
                    ))
                    .map_err(err)?;
            }
            chart
                .draw_series(centres.iter().map(|c| Circle::new(*c, 4, color.filled())))
                .map_err(err)?
                .label(line.label.clone())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
        }
        let optimal: Vec<&FrontierPoint> =
            all().filter(|p| p.optimal && finite(&(p.x, p.y))).collect();
        chart
            .draw_series(
                optimal
                    .iter()
                    .map(|p| Circle::new((p.x, p.y), 8, BLACK.stroke_width(1))),
            )
            .map_err(err)?
            .label("Pareto-optimal")
            .legend(|(x, y)| Circle::new((x + 9, y), 6, BLACK.stroke_width(1)));
        // Tags of neighbouring optimal cells alternate above and below, so they do not overlap.
        let mut by_x = optimal.clone();
        by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
        chart
            .draw_series(by_x.iter().enumerate().map(|(k, p)| {
                let dy = if k % 2 == 0 { -18 } else { 8 };
                EmptyElement::at((p.x, p.y))
                    + Text::new(p.tag.clone(), (9, dy), ("sans-serif", 11).into_font())
            }))
            .map_err(err)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A line of a run's timeline: (seconds from the period's start, value), each value holding
/// until the next.
#[derive(Debug, Clone)]
pub struct Steps {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One run over its period: above, counts over time (requests in flight at the client, and
/// the server's running and queued requests); below, each request's latency at the time it
/// was sent, warm-up requests in grey; the end of the warm-up marked in both.
pub fn timeline(
    title: &str,
    counts: &[Steps],
    latency_label: &str,
    latency: &[(f64, f64, bool)],
    warmup_s: f64,
) -> Result<String, String> {
    let t_max = counts
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(latency.iter().map(|l| l.0))
        .filter(|t| t.is_finite())
        .fold(warmup_s, f64::max)
        .max(1e-3)
        * 1.02;
    let count_values = || {
        counts
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
    };
    let count_max = count_values().fold(0.0, f64::max).max(1.0) * 1.1;
    let count_min = count_values().fold(0.0, f64::min) * 1.1;
    let ((_, lat_hi), log) = value_range(latency.iter().map(|l| l.1));
    let (top_h, bottom_h) = (340, 300);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, top_h + bottom_h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 17)).map_err(err)?;
        let (upper, lower) = root.split_vertically(top_h - 24);
        let mut chart = ChartBuilder::on(&upper)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(64)
            .build_cartesian_2d(axis(0.0, t_max), axis(count_min, count_max))
            .map_err(err)?;
        light_mesh(&mut chart, None, "requests")?;
        let warm = RGBColor(150, 150, 150);
        chart
            .draw_series([PathElement::new(
                vec![(warmup_s, 0.0), (warmup_s, count_max)],
                warm.stroke_width(1),
            )])
            .map_err(err)?;
        for (i, line) in counts.iter().enumerate() {
            let color = LINES[i % LINES.len()];
            let steps = line
                .points
                .windows(2)
                .flat_map(|w| [w[0], (w[1].0, w[0].1)])
                .chain(line.points.last().copied());
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(2)))
                .map_err(err)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        let mut builder = ChartBuilder::on(&lower);
        builder
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64);
        macro_rules! draw {
            ($chart:expr, $y_desc:expr, $top:expr, $bottom:expr) => {{
                let mut chart = $chart;
                light_mesh(
                    &mut chart,
                    Some("seconds from the period's start (requests by their send)"),
                    &$y_desc,
                )?;
                chart
                    .draw_series([PathElement::new(
                        vec![(warmup_s, $bottom), (warmup_s, $top)],
                        warm.stroke_width(1),
                    )])
                    .map_err(err)?;
                chart
                    .draw_series(
                        latency
                            .iter()
                            .filter(|l| l.1.is_finite() && l.1 > 0.0)
                            .map(|l| {
                                let color = if l.2 { warm } else { LINES[0] };
                                Circle::new((l.0, l.1), 2, color.mix(0.7).filled())
                            }),
                    )
                    .map_err(err)?;
            }};
        }
        match log {
            Some((lo, hi)) => draw!(
                builder
                    .build_cartesian_2d(axis(0.0, t_max), log_axis(lo, hi).log_scale())
                    .map_err(err)?,
                format!("{latency_label} (log scale)"),
                hi,
                lo
            ),
            None => {
                let top = if lat_hi.is_finite() && lat_hi > 0.0 {
                    lat_hi * 1.1
                } else {
                    1.0
                };
                draw!(
                    builder
                        .build_cartesian_2d(axis(0.0, t_max), axis(0.0, top))
                        .map_err(err)?,
                    latency_label,
                    top,
                    0.0
                )
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every opened element is closed, in order (a well-formedness check for our SVG).
    pub(crate) fn well_formed(svg: &str) -> bool {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let Some(len) = rest[start..].find('>') else {
                return false;
            };
            let tag = &rest[start + 1..start + len];
            rest = &rest[start + len + 1..];
            if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name.trim()) {
                    return false;
                }
            } else {
                stack.push(tag.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        stack.is_empty()
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                label: "max_tokens=32, single".into(),
                runs: vec![70.0, 75.0, 80.0, 76.0, 77.0],
                mean: 75.6,
                interval: Some((71.0, 80.0)),
                series: 0,
            },
            Row {
                label: "max_tokens=32, 2 agents, shared".into(),
                runs: vec![40.0, 41.0, 39.5],
                mean: 40.2,
                interval: None,
                series: 1,
            },
        ]
    }

    #[test]
    fn every_run_is_a_point_with_the_mean_and_its_interval() {
        let data = rows();
        let svg = runs_per_cell("Decode throughput", "tok/s", &data).unwrap();
        assert!(svg.starts_with("<svg") && well_formed(&svg), "{svg}");
        assert_eq!(
            svg,
            runs_per_cell("Decode throughput", "tok/s", &data).unwrap(),
            "byte-identical"
        );
        assert_eq!(svg.matches("<circle").count(), 8, "one point per run");
        // One interval line and two mean ticks, besides the axes and gridlines.
        assert!(svg.matches("stroke-width=\"3\"").count() >= 2, "mean ticks");
        for label in [
            "max_tokens=32, single",
            "2 agents, shared",
            "Decode throughput",
            "tok/s",
        ] {
            assert!(svg.contains(label), "missing {label}");
        }
        assert_ne!(
            svg,
            runs_per_cell("Decode throughput", "tok/s", &data[..1]).unwrap()
        );
    }

    // Found by tests/hostile_input.rs: a journal value near f64::MAX made the report hang in
    // plotters' tick search (the axis span overflowed to infinity), and a subnormal one put a
    // log axis's end at minus infinity. Drawn on a thread, so a hang fails instead of waiting.
    #[test]
    fn values_at_the_ends_of_f64_still_draw() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let row = |runs: Vec<f64>, interval| Row {
                label: "c".into(),
                mean: runs[0],
                runs,
                interval,
                series: 0,
            };
            let mut svgs = Vec::new();
            for rows in [
                vec![row(vec![-f64::MAX, f64::MAX], Some((-f64::MAX, f64::MAX)))],
                vec![row(vec![0.0, f64::MAX], None)],
                vec![row(vec![5e-324, 1e300], Some((5e-324, f64::MAX)))],
                vec![row(vec![1e300, 1e300], None)],
            ] {
                svgs.push(runs_per_cell("t", "ms", &rows).unwrap());
            }
            let band = Band {
                label: "p99".into(),
                points: vec![
                    (1.0, f64::MAX, 0.0, f64::MAX),
                    (f64::MAX, 5e-324, 5e-324, 1.0),
                ],
                runs: vec![(1.0, -f64::MAX)],
            };
            let slo = Reference {
                label: "SLO".into(),
                value: 1e300,
                band: 0,
            };
            svgs.push(along("t", "rate", "ms", &[band], &[slo]).unwrap());
            let point = FrontierPoint {
                x: f64::MAX,
                y: 5e-324,
                x_interval: Some((0.0, f64::MAX)),
                y_interval: None,
                runs: vec![(f64::MAX, f64::MAX)],
                optimal: true,
                tag: "1".into(),
            };
            let series = FrontierSeries {
                label: "s".into(),
                points: vec![point],
                joined: true,
            };
            svgs.push(frontier("t", "x", "y", &[series]).unwrap());
            let line = Timeline {
                label: "in flight".into(),
                step_ms: 100.0,
                values: vec![-1e12, f64::MAX, 0.0],
            };
            svgs.push(over_time("t", "requests", &[line]).unwrap());
            let steps = Steps {
                label: "running".into(),
                points: vec![(0.0, -1e12), (1.0, f64::MAX)],
            };
            let latency = [(0.5, f64::MAX, false), (0.7, 5e-324, true)];
            svgs.push(timeline("t", &[steps], "ms", &latency, 0.2).unwrap());
            done.send(svgs).unwrap();
        });
        let svgs = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("figures of extreme values are drawn within a minute");
        assert!(svgs.iter().all(|svg| well_formed(svg)));
    }

    #[test]
    fn values_spanning_more_than_two_decades_get_a_log_axis() {
        let row = |runs: Vec<f64>, mean| Row {
            label: "c".into(),
            runs,
            mean,
            interval: None,
            series: 0,
        };
        assert!(wants_log_axis(&[row(vec![8.0, 9.0], 8.5), row(vec![9000.0], 9000.0)]).is_some());
        assert!(wants_log_axis(&[row(vec![8.0, 9.0], 8.5), row(vec![700.0], 700.0)]).is_none());
        // Zero or below cannot go on a log axis.
        assert!(wants_log_axis(&[row(vec![0.0, 9.0], 4.5), row(vec![9000.0], 9000.0)]).is_none());
        let svg =
            runs_per_cell("t", "ms", &[row(vec![8.0], 8.0), row(vec![9000.0], 9000.0)]).unwrap();
        assert!(well_formed(&svg) && svg.contains("ms (log scale)"));
    }

    #[test]
    fn a_figure_along_the_rate_draws_bands_lines_and_runs() {
        let band = |label: &str, scale: f64| Band {
            label: label.into(),
            points: vec![
                (1.0, 10.0 * scale, 8.0 * scale, 12.0 * scale),
                (4.0, 90.0 * scale, 60.0 * scale, 130.0 * scale),
                (8.0, 9000.0 * scale, 7000.0 * scale, 12000.0 * scale),
            ],
            runs: vec![
                (1.0, 9.0 * scale),
                (4.0, 80.0 * scale),
                (8.0, 8500.0 * scale),
            ],
        };
        let svg = along(
            "TTFT",
            "offered rate",
            "ms",
            &[band("p50", 1.0), band("p99", 2.0)],
            &[Reference {
                label: "SLO 1000 ms".into(),
                value: 1000.0,
                band: 1,
            }],
        )
        .unwrap();
        assert!(well_formed(&svg));
        assert!(svg.contains("SLO 1000 ms"), "the threshold is named");
        // A dashed line is drawn as many short segments.
        let without = along(
            "TTFT",
            "offered rate",
            "ms",
            &[band("p50", 1.0), band("p99", 2.0)],
            &[],
        )
        .unwrap();
        let segments = |svg: &str| svg.matches("<polyline").count();
        assert!(
            segments(&svg) >= segments(&without) + 10,
            "{} vs {}",
            segments(&svg),
            segments(&without)
        );
        assert!(
            svg.contains("ms (log scale)"),
            "three and more decades get a log axis"
        );
        assert_eq!(svg.matches("<polygon").count(), 2, "one band per line");
        assert!(svg.contains("p50") && svg.contains("p99"));
        assert!(along("x", "r", "ms", &[], &[]).is_err());
    }

    #[test]
    fn a_timeline_draws_each_line_and_names_it() {
        let lines = [
            Timeline {
                label: "rate=2".into(),
                step_ms: 100.0,
                values: vec![0.0, 1.0, 2.0, 1.0],
            },
            Timeline {
                label: "rate=8".into(),
                step_ms: 100.0,
                values: vec![3.0, 5.0],
            },
        ];
        let svg = over_time("In flight", "requests", &lines).unwrap();
        assert!(well_formed(&svg));
        assert!(svg.contains("rate=2") && svg.contains("rate=8"), "legend");
        // Each line and its legend mark in the line's own colour.
        for colour in ["#3465A4", "#CE5C00"] {
            let drawn = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(colour))
                .count();
            assert_eq!(drawn, 2, "{colour}");
        }
        assert_eq!(
            over_time("In flight", "requests", &lines).unwrap(),
            svg,
            "deterministic"
        );
    }

    #[test]
    fn a_frontier_rings_and_tags_only_the_pareto_optimal_cells() {
        let point = |x: f64, y: f64, optimal: bool, tag: &str| FrontierPoint {
            x,
            y,
            x_interval: Some((x * 0.9, x * 1.1)),
            y_interval: Some((y * 0.9, y * 1.1)),
            runs: vec![(x * 0.95, y), (x * 1.05, y)],
            optimal,
            tag: tag.into(),
        };
        let series = [
            FrontierSeries {
                label: "np1".into(),
                points: vec![
                    point(40.0, 90.0, true, "1/s"),
                    point(80.0, 60.0, false, "2/s"),
                ],
                joined: true,
            },
            FrontierSeries {
                label: "np2".into(),
                points: vec![point(100.0, 70.0, true, "4/s")],
                joined: true,
            },
        ];
        let svg = frontier("Frontier", "tok/s per server", "tok/s per user", &series).unwrap();
        assert!(well_formed(&svg));
        for text in ["np1", "np2", "Pareto-optimal", "1/s", "4/s"] {
            assert!(svg.contains(text), "{text}");
        }
        // plotters writes a text's content on a line of its own.
        let tagged = |tag: &str| svg.lines().any(|l| l.trim() == tag);
        assert!(tagged("1/s") && tagged("4/s"), "optimal cells are tagged");
        assert!(!tagged("2/s"), "a dominated cell is not tagged");
        // Rings: two on the figure and one in the legend, the only black unfilled circles.
        let rings = svg
            .lines()
            .filter(|l| {
                l.starts_with("<circle")
                    && l.contains("stroke=\"#000000\"")
                    && l.contains("fill=\"none\"")
            })
            .count();
        assert_eq!(rings, 3, "{svg}");
    }

    #[test]
    fn a_run_timeline_has_counts_above_and_latencies_below() {
        let counts = [
            Steps {
                label: "in flight (client)".into(),
                points: vec![(0.0, 0.0), (1.0, 2.0), (2.0, 5.0)],
            },
            Steps {
                label: "queued (server)".into(),
                points: vec![(0.5, 0.0), (1.5, 1.0), (2.5, 3.0)],
            },
        ];
        let latency = [(0.2, 10.0, true), (1.2, 20.0, false), (2.2, 3000.0, false)];
        let svg = timeline("One run", &counts, "TTFT, ms", &latency, 1.0).unwrap();
        assert!(well_formed(&svg));
        assert!(svg.contains("in flight (client)") && svg.contains("queued (server)"));
        assert!(
            svg.contains("TTFT, ms (log scale)"),
            "10 to 3000 ms spans more than two decades"
        );
        let points = svg.lines().filter(|l| l.starts_with("<circle")).count();
        assert_eq!(points, 3, "a point per request");
    }

    #[test]
    fn ticks_lose_trailing_zeros() {
        assert_eq!(
            (tick(50.0), tick(0.35), tick(-0.0), tick(2.5e-5)),
            ("50".into(), "0.35".into(), "0".into(), "0".into())
        );
    }

    #[test]
    fn the_axis_starts_at_zero_only_when_zero_is_near() {
        let mut data = rows();
        assert_eq!(x_range(&data).0, 0.0, "40 and 80: from zero");
        data[1].runs = vec![96.0, 97.0];
        data[1].mean = 96.5;
        data[0].runs = vec![99.0, 99.5];
        data[0].mean = 99.2;
        data[0].interval = Some((98.9, 99.6));
        let (lo, hi) = x_range(&data);
        assert!(lo > 90.0 && hi < 100.5, "{lo}..{hi}: zoomed to the data");
    }
}

/// A cell of a scaling figure: where it sits, its runs, and the centre and interval of their
/// mean (on the scale the interval was taken on).
#[derive(Debug, Clone)]
pub struct ScalingPoint {
    pub x: f64,
    pub runs: Vec<f64>,
    pub centre: f64,
    pub interval: Option<(f64, f64)>,
}

/// The fitted power law a scaling figure draws over its cells: y = prefactor x^exponent, and
/// how it is named in the legend.
#[derive(Debug, Clone)]
pub struct FittedLine {
    pub prefactor: f64,
    pub exponent: f64,
    pub label: String,
}

/// Ticks for a log axis from `lo` to `hi`: 1, 2 and 5 times the powers of ten within it; more
/// mantissas when that leaves fewer than four (an axis within a decade), only the powers when
/// it leaves more than ten (many decades), its ends and middle when it is narrower still.
/// plotters' own log ticks can leave one label on an axis that spans a decade.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let nice = within(&[1.0, 2.0, 5.0]);
    if nice.len() < 4 {
        let finer = within(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]);
        // An axis narrower than the gaps between those: its ends and middle.
        if finer.len() < 2 {
            vec![lo, (lo * hi).sqrt(), hi]
        } else {
            finer
        }
    } else if nice.len() > 10 {
        within(&[1.0])
    } else {
        nice
    }
}

/// A scaling figure on log-log axes, where a power law is a straight line: every run a faint
/// point, each cell's mean a dot with its 95% interval, and the fitted line across the cells.
/// `x_tick` writes the x axis' ticks (parameter counts as 5M, 1B).
pub fn scaling(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[ScalingPoint],
    line: Option<&FittedLine>,
    x_tick: fn(f64) -> String,
) -> Result<String, String> {
    let positive = |v: &f64| v.is_finite() && *v > 0.0;
    let xs = || points.iter().map(|p| p.x).filter(positive);
    let ys = || {
        points
            .iter()
            .flat_map(|p| {
                p.runs
                    .iter()
                    .copied()
                    .chain([p.centre])
                    .chain(p.interval.into_iter().flat_map(|(l, h)| [l, h]))
            })
            .filter(positive)
    };
    // The positive values' extent, or a decade when there are none.
    fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
        match value_range(values).0 {
            (lo, hi) if lo.is_finite() => (lo, hi),
            _ => (1.0, 10.0),
        }
    }
    let (x_lo, x_hi) = extent(xs());
    let (y_lo, y_hi) = extent(ys());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (x_axis, y_axis) = (
            log_axis(x_lo / 1.5, x_hi * 1.5),
            log_axis(y_lo / 1.5, y_hi * 1.5),
        );
        let x_ticks = log_ticks(x_axis.start, x_axis.end);
        let y_ticks = log_ticks(y_axis.start, y_axis.end);
        let mut chart = titled(&root, title, 64)
            .build_cartesian_2d(
                x_axis.log_scale().with_key_points(x_ticks),
                y_axis.log_scale().with_key_points(y_ticks),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .bold_line_style(RGBColor(228, 228, 228))
            .x_label_formatter(&|v: &f64| x_tick(*v))
            .y_label_formatter(&|v: &f64| tick(*v))
            .axis_style(RGBColor(150, 150, 150))
            .x_desc(format!("{x_label} (log scale)"))
            .y_desc(format!("{y_label} (log scale)"))
            .draw()
            .map_err(err)?;
        let color = SERIES[0];
        if let Some(line) = line {
            let at = |x: f64| line.prefactor * x.powf(line.exponent);
            let ends = [x_lo / 1.2, x_hi * 1.2];
            chart
                .draw_series(DashedLineSeries::new(
                    ends.iter()
                        .map(|x| (*x, at(*x)))
                        .filter(|(_, y)| positive(y)),
                    6,
                    4,
                    SERIES[1].stroke_width(2),
                ))
                .map_err(err)?
                .label(line.label.clone())
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], SERIES[1].stroke_width(2))
                });
        }
        let runs: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| positive(&p.x))
            .flat_map(|p| p.runs.iter().filter(|v| positive(v)).map(|v| (p.x, *v)))
            .collect();
        chart
            .draw_series(
                runs.iter()
                    .map(|r| Circle::new(*r, 3, color.mix(0.35).filled())),
            )
            .map_err(err)?
            .label("runs")
            .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.mix(0.35).filled()));
        for p in points.iter().filter(|p| positive(&p.x)) {
            if let Some((lo, hi)) = p.interval.filter(|(l, h)| positive(l) && positive(h)) {
                chart
                    .draw_series([PathElement::new(
                        vec![(p.x, lo), (p.x, hi)],
                        BLACK.stroke_width(2),
                    )])
                    .map_err(err)?;
            }
        }
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| positive(&p.x) && positive(&p.centre))
                    .map(|p| Circle::new((p.x, p.centre), 4, BLACK.filled())),
            )
            .map_err(err)?
            .label("cell mean, 95% CI")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.filled()));
        // In the corner the data leave empty: a falling line leaves the upper right.
        let corner = match line {
            Some(l) if l.exponent > 0.0 => SeriesLabelPosition::UpperLeft,
            _ => SeriesLabelPosition::UpperRight,
        };
        legend(&mut chart, corner)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod log_tick_tests {
    use super::log_ticks;

    // Within a decade there are enough labels to read values from; over many, one a decade.
    #[test]
    fn log_ticks_are_enough_to_read_and_few_enough_to_fit() {
        assert_eq!(
            log_ticks(107.0, 1700.0),
            [
                150.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0, 1500.0
            ]
        );
        assert_eq!(log_ticks(3.3e6, 1.5e9).len(), 8);
        assert_eq!(log_ticks(1.0, 1e12).len(), 13);
        assert_eq!(log_ticks(2.1, 2.5).len(), 3);
    }
}
