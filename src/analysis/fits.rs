//! Scaling fits: each `scaling:` entry of the spec, y = a x^b fitted to every measured run of
//! the cells it selects, y the run's value of the metric and x what sets its cell apart (the
//! model's parameter count or file size from the run records, or a numeric axis). Each run is
//! a point, so the exponent's interval carries the spread between repeated runs as well as how
//! far the cells stray from one line (`stats::power_law`).

use polars::prelude::PolarsResult;
use serde::Serialize;
use serde_json::Value;

use super::compare::{cell_values, matching_cells};
use super::frame::{CellInfo, Frames};
use crate::spec::{LoadedSpec, Scaling};
use crate::stats::{PowerLaw, power_law};

/// One cell of a fit: where it sits on the x axis, and its measured runs' values (those a
/// logarithm can take: positive and finite).
#[derive(Debug, Clone, Serialize)]
pub struct FitCell {
    pub cell: usize,
    pub x: f64,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub id: String,
    pub metric: String,
    pub against: String,
    /// The cells fitted, by x.
    pub cells: Vec<FitCell>,
    /// None with fewer than 3 runs or fewer than 2 distinct x.
    pub law: Option<PowerLaw>,
    /// Why cells or runs the selection takes in were left out, for the analysis' warnings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

impl Fit {
    /// The runs fitted.
    pub fn runs(&self) -> usize {
        self.cells.iter().map(|c| c.values.len()).sum()
    }

    /// The distinct x among the cells with runs.
    pub fn distinct_x(&self) -> usize {
        let mut xs: Vec<f64> = (self.cells.iter())
            .filter(|c| !c.values.is_empty())
            .map(|c| c.x)
            .collect();
        xs.dedup();
        xs.len()
    }
}

/// Where a cell sits along what a fit is against: its model's parameters or file size, or the
/// value of a numeric axis. None where the record says nothing about it.
pub fn x_of(cell: &CellInfo, against: &str) -> Option<f64> {
    match against {
        "params" => cell.model.as_ref().map(|m| m.params as f64),
        "file_bytes" => cell.model.as_ref().map(|m| m.file_bytes as f64),
        axis => cell.params.get(axis).and_then(Value::as_f64),
    }
    .filter(|x| x.is_finite() && *x > 0.0)
}

/// x as the analysis prints it: parameter counts as 5M and 1B, file sizes in MB.
pub fn x_text(against: &str, x: f64) -> String {
    match against {
        "params" => crate::spec::model::short_count(x.round().max(0.0) as u64),
        "file_bytes" => format!("{:.1} MB", x / 1e6),
        _ => super::trimmed(x),
    }
}

/// Every scaling fit of the spec, at the 95% level.
pub fn fits(frames: &Frames, loaded: &LoadedSpec) -> PolarsResult<Vec<Fit>> {
    let planned: std::collections::HashSet<String> = crate::plan::planned_cells(loaded)
        .into_iter()
        .map(|c| c.id)
        .collect();
    loaded
        .spec
        .scaling
        .iter()
        .map(|s| fit_one(frames, s, &planned))
        .collect()
}

/// A bound closer than this to a cell's x, with the cell outside it, was probably meant to
/// take it in (`from: 100M` against a model of 99.95M parameters).
const NEAR_BOUND: f64 = 0.01;

fn fit_one(
    frames: &Frames,
    scaling: &Scaling,
    planned: &std::collections::HashSet<String>,
) -> PolarsResult<Fit> {
    let (from, to) = scaling.bounds().unwrap_or_default();
    let mut cells = Vec::new();
    let mut left_out = Vec::new();
    let (mut unplaced, mut outside_plan, mut not_positive) = (0, 0, 0);
    for cell in matching_cells(frames, &scaling.selection) {
        let info = &frames.cells[cell as usize];
        // The plan's cells are what validation checked for pooling; a cell of an older plan
        // could differ in an axis the fit does not span.
        if !planned.contains(&info.cell_id) {
            outside_plan += 1;
            continue;
        }
        let Some(x) = x_of(info, &scaling.against) else {
            unplaced += 1;
            continue;
        };
        if !scaling.admits(x) {
            let near = |b: Option<f64>| b.is_some_and(|b| (x / b - 1.0).abs() <= NEAR_BOUND);
            if near(from) || near(to) {
                left_out.push(format!(
                    "the cell at {} is just outside the bounds and left out; move the bound if it was meant to be in",
                    x_text(&scaling.against, x)
                ));
            }
            continue;
        }
        let all = cell_values(frames, &scaling.metric, cell)?;
        let values: Vec<f64> = all.iter().copied().filter(|v| *v > 0.0).collect();
        not_positive += all.len() - values.len();
        cells.push(FitCell {
            cell: cell as usize,
            x,
            values,
        });
    }
    for (n, what) in [
        (unplaced, "cell(s) have no such value in their records"),
        (
            outside_plan,
            "cell(s) of the journal are no longer in the plan",
        ),
        (
            not_positive,
            "run(s) have a value of zero or less, which a logarithm cannot take",
        ),
    ] {
        if n > 0 {
            left_out.push(format!("{n} {what} and were left out"));
        }
    }
    cells.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (x, y): (Vec<f64>, Vec<f64>) = cells
        .iter()
        .flat_map(|c| c.values.iter().map(move |v| (c.x, *v)))
        .unzip();
    Ok(Fit {
        id: scaling.id.clone(),
        metric: scaling.metric.clone(),
        against: scaling.against.clone(),
        law: power_law(&x, &y, 0.95),
        cells,
        left_out,
    })
}
