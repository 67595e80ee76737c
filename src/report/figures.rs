//! SVG figures with plotters. The SVG backend writes text as <text> elements, so no font
//! library is needed; the same inputs give byte-identical SVG.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One bar, optionally with an interval (e.g. the 95% CI of the mean).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// One distribution summary: whisker min..max, box median..p95, a tick at the median.
#[derive(Debug, Clone)]
pub struct Spread {
    pub label: String,
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

const SIZE: (u32, u32) = (760, 380);

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a figure: {e}")
}

/// The x axis names cells by their short labels (C1, C2, ...); the report's tables say which is which.
fn cell_label(labels: &[String]) -> impl Fn(&f64) -> String + '_ {
    move |x| {
        let i = x.round();
        if (x - i).abs() < 1e-9 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

fn upper(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max > 0.0 { max * 1.15 } else { 1.0 }
}

type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One chart with a cell per x position (labelled), a y axis from 0 to `top`, and whatever
/// `draw` puts on it; returns the SVG.
fn cell_chart(
    title: &str,
    y_label: &str,
    labels: &[String],
    top: f64,
    draw: impl FnOnce(&mut Chart<'_>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = labels.len().max(1) as f64;
        let x_label = cell_label(labels);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len().max(1))
            .x_label_formatter(&x_label)
            .x_desc("cell")
            .y_desc(y_label)
            .draw()
            .map_err(err)?;
        draw(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Bars per cell with their intervals.
pub fn bars(title: &str, y_label: &str, bars: &[Bar]) -> Result<String, String> {
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let top = upper(
        bars.iter()
            .map(|b| b.interval.map_or(b.value, |(_, h)| h.max(b.value))),
    );
    cell_chart(title, y_label, &labels, top, |chart| {
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = i as f64;
                Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, b.value)],
                    RGBColor(70, 110, 180).filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                let (low, high) = b.interval?;
                (low.is_finite() && high.is_finite()).then(|| {
                    ErrorBar::new_vertical(i as f64, low, b.value, high, BLACK.stroke_width(2), 12)
                })
            }))
            .map_err(err)?;
        Ok(())
    })
}

/// Distributions per cell: whisker from min to max, box from median to p95, a tick at the median.
pub fn spreads(title: &str, y_label: &str, spreads: &[Spread]) -> Result<String, String> {
    let labels: Vec<String> = spreads.iter().map(|s| s.label.clone()).collect();
    let top = upper(spreads.iter().map(|s| s.max));
    cell_chart(title, y_label, &labels, top, |chart| {
        chart
            .draw_series(spreads.iter().enumerate().map(|(i, s)| {
                PathElement::new(
                    vec![(i as f64, s.min), (i as f64, s.max)],
                    BLACK.stroke_width(1),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(spreads.iter().enumerate().map(|(i, s)| {
                let x = i as f64;
                Rectangle::new(
                    [(x - 0.25, s.median), (x + 0.25, s.p95)],
                    RGBColor(220, 140, 60).filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(spreads.iter().enumerate().map(|(i, s)| {
                let x = i as f64;
                PathElement::new(
                    vec![(x - 0.3, s.median), (x + 0.3, s.median)],
                    BLACK.stroke_width(3),
                )
            }))
            .map_err(err)?;
        Ok(())
    })
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

    #[test]
    fn bar_chart_is_well_formed_deterministic_and_contains_its_series() {
        let data = vec![
            Bar {
                label: "C1".into(),
                value: 90.0,
                interval: Some((85.0, 95.0)),
            },
            Bar {
                label: "C2".into(),
                value: 70.0,
                interval: None,
            },
            Bar {
                label: "C3".into(),
                value: 80.0,
                interval: Some((78.0, 82.0)),
            },
        ];
        let svg = bars("Decode throughput", "tok/s", &data).unwrap();
        assert!(svg.starts_with("<svg") && well_formed(&svg), "{svg}");
        assert_eq!(
            svg,
            bars("Decode throughput", "tok/s", &data).unwrap(),
            "byte-identical"
        );
        // Background, plot area and one rect per bar at least.
        assert!(
            svg.matches("<rect").count() > 3,
            "the background and one rect per bar"
        );
        for label in ["C1", "C2", "C3", "Decode throughput", "tok/s"] {
            assert!(svg.contains(label), "missing {label}");
        }
        let with_other_values = bars("Decode throughput", "tok/s", &data[..2]).unwrap();
        assert_ne!(svg, with_other_values);
    }

    #[test]
    fn spread_chart_draws_whiskers_and_boxes() {
        let data = vec![
            Spread {
                label: "C1".into(),
                min: 10.0,
                median: 20.0,
                p95: 30.0,
                max: 45.0,
            },
            Spread {
                label: "C2".into(),
                min: 12.0,
                median: 18.0,
                p95: 25.0,
                max: 28.0,
            },
        ];
        let svg = spreads("TTFT", "ms", &data).unwrap();
        assert!(well_formed(&svg));
        assert!(
            svg.matches("<polyline").count() >= 4,
            "two whiskers and two median ticks"
        );
        assert!(svg.contains("TTFT") && svg.contains("C2"));
    }
}
