//! Scaling fits: each `scaling:` entry of the spec, y = a x^b fitted to every measured run of
//! the cells it selects, y the run's value of the metric and x what sets its cell apart (the
//! model's parameter count or file size from the run records, or a numeric axis). Each run is
//! a point, so the exponent's interval carries the spread between repeated runs as well as how
//! far the cells stray from one line (`stats::power_law`).

use indexmap::IndexMap;
use polars::prelude::PolarsResult;
use serde::Serialize;
use serde_json::Value;

use super::compare::select;
use super::frame::{CellInfo, Frames};
use crate::spec::matrix::values_equal;
use crate::spec::{LoadedSpec, Scaling};
use crate::stats::{PowerLaw, power_law};

/// One cell of a fit: where it sits on the x axis, and its measured runs' values.
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
    /// None with fewer than 3 usable runs or fewer than 2 distinct x.
    pub law: Option<PowerLaw>,
    /// Cells selected that could not be placed on the x axis (records without a model).
    pub unplaced: usize,
}

impl Fit {
    /// The runs fitted.
    pub fn runs(&self) -> usize {
        self.cells.iter().map(|c| c.values.len()).sum()
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

/// Every scaling fit of the spec, at the 95% level.
pub fn fits(frames: &Frames, loaded: &LoadedSpec) -> PolarsResult<Vec<Fit>> {
    loaded
        .spec
        .scaling
        .iter()
        .map(|s| fit_one(frames, s))
        .collect()
}

fn fit_one(frames: &Frames, scaling: &Scaling) -> PolarsResult<Fit> {
    let mut cells = Vec::new();
    let mut unplaced = 0;
    for (i, cell) in frames.cells.iter().enumerate() {
        let selected = scaling
            .selection
            .iter()
            .all(|(k, v)| cell.params.get(k).is_some_and(|w| values_equal(v, w)));
        if !selected {
            continue;
        }
        let Some(x) = x_of(cell, &scaling.against) else {
            unplaced += 1;
            continue;
        };
        if !scaling.admits(x) {
            continue;
        }
        // A cell's own parameters select it alone (its id is their hash).
        let own: IndexMap<String, Value> = cell
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let values: Vec<f64> = select(frames, &scaling.metric, &own)?
            .into_iter()
            .filter(|v| v.is_finite())
            .collect();
        cells.push(FitCell { cell: i, x, values });
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
        unplaced,
    })
}
