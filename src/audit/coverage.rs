//! Plan vs data: the runs the spec plans against the runs the journal holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::{Finding, Severity};
use crate::plan;
use crate::record::RunStatus;
use crate::record::journal;
use crate::spec::{LoadedSpec, Status};
use crate::store::TrPaths;

/// `digests` is the journal read, or None when the TR has no journal.
pub fn check(
    root: &Path,
    loaded: &LoadedSpec,
    digests: Option<&Result<journal::Digests, journal::JournalError>>,
) -> Vec<Finding> {
    let id = &loaded.spec.id;
    let paths = TrPaths::new(root, id);
    let journal_path = paths.runs();
    let mut out = shards(loaded, &paths, digests);
    let Some(digests) = digests else {
        let imported = loaded.spec.recorded.len();
        match (loaded.spec.status, imported) {
            (Status::Complete, 0) => out.push(
                Finding::new(
                    id,
                    Severity::Warning,
                    "plan-vs-data",
                    "status is complete, but no runs are recorded and no figures are imported",
                )
                .at(journal_path.display().to_string()),
            ),
            (Status::Planned, _) => {}
            (_, n) if n > 0 => out.push(Finding::new(
                id,
                Severity::Note,
                "plan-vs-data",
                format!(
                    "no raw data here: its results rest on {n} imported figure(s) under `recorded:`"
                ),
            )),
            _ => {}
        }
        return out;
    };
    let records = match digests {
        Ok(d) => &d.runs,
        Err(e) => {
            out.push(
                Finding::new(
                    id,
                    Severity::Error,
                    "plan-vs-data",
                    format!("cannot read the journal: {e}"),
                )
                .at(journal_path.display().to_string()),
            );
            return out;
        }
    };
    let plan = plan::build(loaded);
    let planned: HashMap<&str, &plan::PlannedRun> =
        plan.runs.iter().map(|r| (r.run_id.as_str(), r)).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut duplicates = Vec::new();
    let mut extra = Vec::new();
    for r in records {
        if !seen.insert(r.run_id.as_str()) {
            duplicates.push(r.run_id.as_str());
        }
        if !planned.contains_key(r.run_id.as_str()) {
            extra.push(r.run_id.as_str());
        }
    }
    if !duplicates.is_empty() {
        out.push(
            Finding::new(
                id,
                Severity::Error,
                "plan-vs-data",
                format!(
                    "{} run id(s) appear more than once: {}",
                    duplicates.len(),
                    sample(&duplicates)
                ),
            )
            .at(journal_path.display().to_string()),
        );
    }
    if !extra.is_empty() {
        out.push(
            Finding::new(
                id,
                Severity::Warning,
                "plan-vs-data",
                format!("{} recorded run(s) are not in the current plan (the spec changed after they ran): {}", extra.len(), sample(&extra)),
            )
            .at(journal_path.display().to_string()),
        );
    }
    // Missing measured runs, counted per cell so the message says where the gaps are.
    let mut missing_by_cell: BTreeMap<usize, usize> = BTreeMap::new();
    for r in plan
        .runs
        .iter()
        .filter(|r| !r.warmup && !seen.contains(r.run_id.as_str()))
    {
        *missing_by_cell.entry(r.cell).or_default() += 1;
    }
    let missing: usize = missing_by_cell.values().sum();
    if missing > 0 {
        let total = plan.measured_runs();
        let cells: Vec<String> = missing_by_cell
            .iter()
            .map(|(cell, n)| format!("C{} {} ({n})", cell + 1, plan.cells[*cell].label))
            .collect();
        out.push(
            Finding::new(
                id,
                Severity::Warning,
                "plan-vs-data",
                format!(
                    "the data lacks {missing} of {total} planned measured runs ({:.0}%): {}; `banterhearts run {id}` resumes",
                    missing as f64 / total as f64 * 100.0,
                    cells.join(", ")
                ),
            )
            .at(journal_path.display().to_string()),
        );
    }
    let measured: Vec<&journal::RunDigest> = records
        .iter()
        .filter(|r| !r.warmup && planned.contains_key(r.run_id.as_str()))
        .collect();
    let degraded = measured
        .iter()
        .filter(|r| r.status == RunStatus::Degraded)
        .count();
    if degraded > 0 {
        out.push(Finding::new(
            id,
            Severity::Warning,
            "plan-vs-data",
            format!("{degraded} of {} measured runs are degraded ({:.1}%); they are counted, not averaged", measured.len(), degraded as f64 / measured.len() as f64 * 100.0),
        ));
    }
    out
}

/// Each shard's progress: runs recorded in a shard but not merged are not in the data the
/// report and claims read (a warning); a shard short of its runs is noted.
fn shards(
    loaded: &LoadedSpec,
    paths: &TrPaths,
    digests: Option<&Result<journal::Digests, journal::JournalError>>,
) -> Vec<Finding> {
    if !paths.shards_dir().is_dir() {
        return Vec::new();
    }
    let id = &loaded.spec.id;
    let merged: HashSet<&str> = match digests {
        Some(Ok(d)) => d.runs.iter().map(|r| r.run_id.as_str()).collect(),
        _ => HashSet::new(),
    };
    let plan = plan::build(loaded);
    let mut out = Vec::new();
    for s in crate::record::shards::shard_progress(&plan, paths, |r| merged.contains(r)) {
        let at = paths
            .shards_dir()
            .join(&s.shard)
            .join("runs.jsonl")
            .display()
            .to_string();
        if s.unmerged > 0 {
            out.push(
                Finding::new(
                    id,
                    Severity::Warning,
                    "shards",
                    format!(
                        "shard {} has {} run(s) not merged into the data; `banterhearts merge {id}` adds them",
                        s.shard, s.unmerged
                    ),
                )
                .at(at.clone()),
            );
        }
        out.push(
            Finding::new(
                id,
                Severity::Note,
                "shards",
                format!(
                    "shard {}: {} of {} runs recorded",
                    s.shard, s.recorded, s.planned
                ),
            )
            .at(at),
        );
    }
    out
}

/// The first few items, and how many more.
fn sample(items: &[&str]) -> String {
    let shown: Vec<&str> = items.iter().take(5).copied().collect();
    if items.len() > shown.len() {
        format!(
            "{} and {} more",
            shown.join(", "),
            items.len() - shown.len()
        )
    } else {
        shown.join(", ")
    }
}
