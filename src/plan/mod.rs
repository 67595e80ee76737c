//! The plan: every run a TR means, with stable ids and the execution order the spec asks for.

use indexmap::IndexMap;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::Value;

pub mod shard;

use crate::spec::{Cell, LoadedSpec, RunOrder};
use crate::store::sha256_hex;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub tr: String,
    pub axes: Vec<String>,
    pub repetitions: u32,
    pub warmup: u32,
    pub order: String,
    pub cells: Vec<PlannedCell>,
    /// In execution order.
    pub runs: Vec<PlannedRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedCell {
    pub index: usize,
    /// Hash of the cell's canonical parameters.
    pub id: String,
    pub label: String,
    pub params: IndexMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedRun {
    pub run_id: String,
    pub cell: usize,
    /// 0-based; counts warm-up and measured runs separately.
    pub repetition: u32,
    pub warmup: bool,
}

impl Plan {
    pub fn measured_runs(&self) -> usize {
        self.runs.iter().filter(|r| !r.warmup).count()
    }
    pub fn warmup_runs(&self) -> usize {
        self.runs.iter().filter(|r| r.warmup).count()
    }
}

/// The hardware value a cell runs on (its `hardware` axis), if the spec has one.
pub fn hardware_of(cell: &PlannedCell) -> Option<String> {
    cell.params
        .get("hardware")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

pub fn cell_id(cell: &Cell) -> String {
    sha256_hex(cell.key().as_bytes())[..12].to_owned()
}

/// Stable run id: depends only on the TR id, the cell's parameters, warm-up or not, and the
/// repetition, so editing a title, reordering axes or adding cells keeps existing ids.
pub fn run_id(tr: &str, cell: &Cell, warmup: bool, repetition: u32) -> String {
    run_id_of_key(tr, &cell.key(), warmup, repetition)
}

/// `run_id` given the cell's key, which a plan computes once per cell rather than per run.
fn run_id_of_key(tr: &str, cell_key: &str, warmup: bool, repetition: u32) -> String {
    let kind = if warmup { "warmup" } else { "measured" };
    let text = format!("banterhearts-run-v1\n{tr}\n{cell_key}\n{kind}\n{repetition}");
    sha256_hex(text.as_bytes())[..16].to_owned()
}

/// Expands a validated spec into its plan.
pub fn build(loaded: &LoadedSpec) -> Plan {
    let spec = &loaded.spec;
    // Validation guarantees repetitions >= 1 and warmup >= 0.
    let reps = u32::try_from(spec.repetitions).unwrap_or(1);
    let warmup = u32::try_from(spec.warmup).unwrap_or(0);
    let cells = &loaded.cells;
    let keys: Vec<String> = cells.iter().map(Cell::key).collect();
    let run = |cell: usize, warm: bool, rep: u32| PlannedRun {
        run_id: run_id_of_key(&spec.id, &keys[cell], warm, rep),
        cell,
        repetition: rep,
        warmup: warm,
    };
    let warmups: Vec<PlannedRun> = (0..warmup)
        .flat_map(|w| (0..cells.len()).map(move |c| (c, w)))
        .map(|(c, w)| run(c, true, w))
        .collect();
    let runs = match spec.order {
        // Warm-ups of a cell directly precede its measured runs.
        RunOrder::Sequential => (0..cells.len())
            .flat_map(|c| {
                (0..warmup)
                    .map(move |w| (c, true, w))
                    .chain((0..reps).map(move |r| (c, false, r)))
            })
            .map(|(c, warm, r)| run(c, warm, r))
            .collect(),
        RunOrder::Interleaved => {
            let measured = (0..reps)
                .flat_map(|r| (0..cells.len()).map(move |c| (c, r)))
                .map(|(c, r)| run(c, false, r));
            warmups.into_iter().chain(measured).collect()
        }
        RunOrder::Randomized(seed) => {
            let mut measured: Vec<PlannedRun> = (0..cells.len())
                .flat_map(|c| (0..reps).map(move |r| (c, r)))
                .map(|(c, r)| run(c, false, r))
                .collect();
            // ChaCha8 is a portable, documented stream: the same seed shuffles the same way everywhere.
            measured.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            warmups.into_iter().chain(measured).collect()
        }
    };
    Plan {
        tr: spec.id.clone(),
        axes: loaded.matrix.axes.keys().cloned().collect(),
        repetitions: reps,
        warmup,
        order: spec.order.to_string(),
        cells: planned_cells(loaded),
        runs,
    }
}

/// The plan's cells without its runs (cheap even for a plan of a million runs).
pub fn planned_cells(loaded: &LoadedSpec) -> Vec<PlannedCell> {
    loaded
        .cells
        .iter()
        .enumerate()
        .map(|(index, cell)| PlannedCell {
            index,
            id: cell_id(cell),
            label: cell.label(),
            params: cell.params.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan_of(yaml: &str) -> Plan {
        let loaded = crate::spec::parse(Path::new("TR900.yaml"), yaml.to_owned()).unwrap();
        build(&loaded)
    }

    const BASE: &str = "id: TR900\ntitle: t\nstatus: planned\nquestion: q\nmatrix:\n  a: [1, 2]\n  b: [x, y, z]\nrepetitions: 3\nwarmup: 1\n";

    #[test]
    fn interleaved_is_repetition_major_after_warmups() {
        let p = plan_of(BASE);
        assert_eq!(p.runs.len(), 6 + 18);
        assert!(p.runs[..6].iter().all(|r| r.warmup));
        let first_measured: Vec<usize> = p.runs[6..12].iter().map(|r| r.cell).collect();
        assert_eq!(first_measured, vec![0, 1, 2, 3, 4, 5]);
        assert!(p.runs[6..12].iter().all(|r| r.repetition == 0));
    }

    #[test]
    fn sequential_is_cell_major() {
        let p = plan_of(&format!("{BASE}order: sequential\n"));
        let head: Vec<(usize, bool, u32)> = p.runs[..5]
            .iter()
            .map(|r| (r.cell, r.warmup, r.repetition))
            .collect();
        assert_eq!(
            head,
            vec![
                (0, true, 0),
                (0, false, 0),
                (0, false, 1),
                (0, false, 2),
                (1, true, 0)
            ]
        );
    }

    #[test]
    fn randomized_depends_only_on_seed() {
        let a = plan_of(&format!("{BASE}order: randomized(7)\n"));
        let b = plan_of(&format!("{BASE}order: randomized(7)\n"));
        let c = plan_of(&format!("{BASE}order: randomized(8)\n"));
        assert_eq!(a.runs, b.runs);
        assert_ne!(a.runs, c.runs);
        let mut ids_a: Vec<_> = a.runs.iter().map(|r| r.run_id.clone()).collect();
        let mut ids_i: Vec<_> = plan_of(BASE)
            .runs
            .iter()
            .map(|r| r.run_id.clone())
            .collect();
        ids_a.sort();
        ids_i.sort();
        assert_eq!(ids_a, ids_i, "order changes the sequence, never the ids");
    }

    #[test]
    fn run_ids_are_unique_and_ignore_unrelated_edits() {
        let p = plan_of(BASE);
        let mut ids: Vec<_> = p.runs.iter().map(|r| &r.run_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), p.runs.len());
        let edited = plan_of(
            &BASE
                .replace("title: t", "title: another title")
                .replace("a: [1, 2]\n  b: [x, y, z]", "b: [x, y, z]\n  a: [1, 2]"),
        );
        let set = |p: &Plan| {
            let mut v: Vec<String> = p.runs.iter().map(|r| r.run_id.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(set(&p), set(&edited));
    }
}
