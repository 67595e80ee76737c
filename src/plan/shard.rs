//! Shards: a deterministic partition of a plan, so that several machines (a Slurm job array, a
//! Kubernetes Indexed Job) each run a part and `merge` puts the parts back together.
//!
//! By default whole cells go to one shard: a cell's runs then share one machine, one server
//! build and one warm-up, and a comparison inside a cell never mixes hardware. `--shard-by run`
//! deals runs instead, for identical machines and plans with few cells. With a `hardware` axis
//! a shard belongs to one hardware value and partitions only that value's cells.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Plan, PlannedRun};

/// What a shard deals out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardBy {
    /// Whole cells, round-robin in cell order.
    #[default]
    Cell,
    /// Single runs, round-robin in execution order.
    Run,
}

/// One part of a plan: `index` of `count` (0-based, as Slurm's `SLURM_ARRAY_TASK_ID` with
/// `--array=0-(n-1)` and Kubernetes' `JOB_COMPLETION_INDEX` count), optionally within one
/// hardware value's cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    #[serde(default)]
    pub by: ShardBy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
}

impl Shard {
    /// Parses `i/n` with 0 <= i < n.
    pub fn parse(text: &str, by: ShardBy, hardware: Option<String>) -> Result<Shard, String> {
        let usage = || {
            format!(
                "`{text}` is no shard: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/2 and 1/2 (in a Slurm array: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )
        };
        let (i, n) = text.split_once('/').ok_or_else(usage)?;
        let index: u32 = i.trim().parse().map_err(|_| usage())?;
        let count: u32 = n.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(Shard {
            index,
            count,
            by,
            hardware,
        })
    }

    /// The shard's directory under `data/<TR>/shards/`: `1-of-4`, `1-of-4-by-run`, with the
    /// hardware value as a parent (`h100/1-of-4`). Shards of different partitions never share
    /// a directory, so a run can only be recorded twice across shards, never overwritten.
    pub fn dir_name(&self) -> String {
        let by = match self.by {
            ShardBy::Cell => "",
            ShardBy::Run => "-by-run",
        };
        let own = format!("{}-of-{}{by}", self.index, self.count);
        match &self.hardware {
            Some(h) => format!("{h}/{own}"),
            None => own,
        }
    }

    /// The shard a directory under `shards/` holds (the inverse of `dir_name`).
    pub fn from_dir_name(name: &str) -> Option<Shard> {
        let (hardware, own) = match name.rsplit_once('/') {
            Some((h, own)) => (Some(h.to_owned()), own),
            None => (None, name),
        };
        let (own, by) = match own.strip_suffix("-by-run") {
            Some(own) => (own, ShardBy::Run),
            None => (own, ShardBy::Cell),
        };
        let (i, n) = own.split_once("-of-")?;
        let shard = Shard {
            index: i.parse().ok()?,
            count: n.parse().ok()?,
            by,
            hardware,
        };
        (shard.index < shard.count && shard.dir_name() == name).then_some(shard)
    }

    /// The plan's runs that belong to this shard, in execution order. `hardware_of` names the
    /// hardware value of a cell (None without a hardware axis).
    pub fn runs<'p>(
        &self,
        plan: &'p Plan,
        hardware_of: impl Fn(usize) -> Option<String>,
    ) -> Vec<&'p PlannedRun> {
        let on_hardware: Vec<bool> = (0..plan.cells.len())
            .map(|c| self.hardware.is_none() || hardware_of(c) == self.hardware)
            .collect();
        let count = self.count as usize;
        let index = self.index as usize;
        match self.by {
            ShardBy::Cell => {
                // The k-th cell of this hardware goes to shard k mod n.
                let mut position = vec![usize::MAX; plan.cells.len()];
                let mut k = 0;
                for (c, on) in on_hardware.iter().enumerate() {
                    if *on {
                        position[c] = k;
                        k += 1;
                    }
                }
                plan.runs
                    .iter()
                    .filter(|r| on_hardware[r.cell] && position[r.cell] % count == index)
                    .collect()
            }
            ShardBy::Run => plan
                .runs
                .iter()
                .filter(|r| on_hardware[r.cell])
                .enumerate()
                .filter(|(k, _)| k % count == index)
                .map(|(_, r)| r)
                .collect(),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.hardware {
            write!(f, "{h} ")?;
        }
        write!(f, "shard {}/{}", self.index, self.count)?;
        if self.by == ShardBy::Run {
            write!(f, " (by run)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    fn plan_of(yaml: &str) -> Plan {
        let loaded = crate::spec::parse(Path::new("TR900.yaml"), yaml.to_owned()).unwrap();
        super::super::build(&loaded)
    }

    const BASE: &str = "id: TR900\ntitle: t\nstatus: planned\nquestion: q\nmatrix:\n  a: [1, 2, 3]\n  b: [x, y]\nrepetitions: 3\nwarmup: 1\n";

    // Every run lands in exactly one shard, for any count and either partition; by cell, a
    // cell's runs (its warm-up too) never split; the order within a shard is the plan's.
    #[test]
    fn shards_partition_the_plan_exactly() {
        let plan = plan_of(BASE);
        for by in [ShardBy::Cell, ShardBy::Run] {
            for count in 1..=8 {
                let mut seen = HashSet::new();
                for index in 0..count {
                    let shard = Shard {
                        index,
                        count,
                        by,
                        hardware: None,
                    };
                    let runs = shard.runs(&plan, |_| None);
                    let positions: Vec<usize> = runs
                        .iter()
                        .map(|r| plan.runs.iter().position(|p| p == *r).unwrap())
                        .collect();
                    assert!(positions.windows(2).all(|w| w[0] < w[1]));
                    for r in runs {
                        assert!(seen.insert(r.run_id.clone()), "{} twice", r.run_id);
                    }
                    if by == ShardBy::Cell {
                        let cells: HashSet<usize> =
                            shard.runs(&plan, |_| None).iter().map(|r| r.cell).collect();
                        for c in cells {
                            let all = plan.runs.iter().filter(|r| r.cell == c).count();
                            let here = shard
                                .runs(&plan, |_| None)
                                .iter()
                                .filter(|r| r.cell == c)
                                .count();
                            assert_eq!(all, here, "cell {c} split");
                        }
                    }
                }
                assert_eq!(seen.len(), plan.runs.len(), "{by:?} {count}");
            }
        }
    }

    // With a hardware value, a shard holds only that value's cells, and the shards of every
    // value together hold the plan once.
    #[test]
    fn hardware_shards_stay_on_their_hardware() {
        let plan = plan_of(BASE);
        let hardware_of =
            |c: usize| Some(if c.is_multiple_of(2) { "cpu" } else { "gpu" }.to_owned());
        let mut seen = HashSet::new();
        for h in ["cpu", "gpu"] {
            for index in 0..2 {
                let shard = Shard {
                    index,
                    count: 2,
                    by: ShardBy::Cell,
                    hardware: Some(h.into()),
                };
                assert_eq!(shard.dir_name(), format!("{h}/{index}-of-2"));
                for r in shard.runs(&plan, hardware_of) {
                    assert_eq!(hardware_of(r.cell).as_deref(), Some(h));
                    assert!(seen.insert(r.run_id.clone()));
                }
            }
        }
        assert_eq!(seen.len(), plan.runs.len());
    }

    #[test]
    fn shard_arguments_are_checked() {
        let s = Shard::parse("1/4", ShardBy::Run, None).unwrap();
        assert_eq!(
            (s.index, s.count, s.dir_name()),
            (1, 4, "1-of-4-by-run".into())
        );
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2", "1/2/3"] {
            let e = Shard::parse(bad, ShardBy::Cell, None).unwrap_err();
            assert!(e.contains("INDEX/COUNT"), "{bad}: {e}");
        }
    }
}
