//! A data set's shards on disk: which directories hold one, and how far each has come.

use std::path::Path;

use super::journal;
use crate::plan::shard::Shard;
use crate::plan::{Plan, hardware_of};
use crate::store::TrPaths;

/// The shard directories of a data set (those holding a journal), in name order.
pub fn shard_dirs(set: &TrPaths) -> Vec<(String, TrPaths)> {
    let root = set.shards_dir();
    let mut found = Vec::new();
    let visit = |dir: &Path, prefix: &str, found: &mut Vec<(String, TrPaths)>| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut nested = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if path.join("runs.jsonl").exists() {
                found.push((name, TrPaths { data_dir: path }));
            } else {
                nested.push((path, format!("{name}/")));
            }
        }
        nested
    };
    // Shards sit at `shards/<i>-of-<n>` or, per hardware value, one level deeper.
    for (dir, prefix) in visit(&root, "", &mut found) {
        visit(&dir, &prefix, &mut found);
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// One shard's progress: its runs in the plan, those it has recorded, and those of them the
/// data set does not hold yet (recorded but not merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardProgress {
    pub shard: String,
    pub planned: usize,
    pub recorded: usize,
    pub unmerged: usize,
}

/// The progress of every shard of the data set at `set`; `merged` says whether the data set
/// holds a run. A directory whose name is no shard's counts its runs against no plan.
pub fn shard_progress(
    plan: &Plan,
    set: &TrPaths,
    merged: impl Fn(&str) -> bool,
) -> Vec<ShardProgress> {
    shard_dirs(set)
        .into_iter()
        .map(|(name, paths)| {
            let recorded: Vec<String> = journal::read_digests(&paths.runs())
                .map(|d| d.runs.into_iter().map(|r| r.run_id).collect())
                .unwrap_or_default();
            let planned = Shard::from_dir_name(&name)
                .map_or(0, |s| s.runs(plan, |c| hardware_of(&plan.cells[c])).len());
            ShardProgress {
                unmerged: recorded.iter().filter(|id| !merged(id)).count(),
                recorded: recorded.len(),
                planned,
                shard: name,
            }
        })
        .collect()
}
