//! What a submission runs, whatever the scheduler: per hardware value one array of shards,
//! each task `banterhearts run TR --shard i/n` on its own node with its own launched servers,
//! and then one job that merges the shards and analyses and reports the result (or, for a
//! replication, judges it). The schedulers' files are written from this (`slurm`, `k8s`).

use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;
use crate::plan::{self, shard::ShardBy};
use crate::spec::{Hardware, LoadedSpec};
use crate::store::TrPaths;

/// One array of shards: the cells of one hardware value (or all cells), and where they run.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The hardware value, when the spec has a `hardware` axis.
    pub hardware: Option<String>,
    pub on: Hardware,
    /// Shards of this array: the count asked for, or fewer when there are fewer cells (runs,
    /// by run) than that: a shard with nothing to run would only cost a node.
    pub shards: u32,
    pub runs: usize,
}

#[derive(Debug, Clone)]
pub struct Submission {
    pub tr: String,
    /// Absolute project root: every task works there, so it must be on a filesystem all
    /// nodes share.
    pub root: PathBuf,
    /// The banterhearts binary the tasks run (this one, by absolute path).
    pub program: PathBuf,
    pub by: ShardBy,
    pub replication: Option<String>,
    pub placements: Vec<Placement>,
    /// Where the job files and the jobs' output go: `data/<TR>/jobs/` (or the replication's).
    pub jobs_dir: PathBuf,
}

impl Submission {
    pub fn new(
        loaded: &LoadedSpec,
        root: &Path,
        program: &Path,
        shards: u32,
        by: ShardBy,
        replication: Option<String>,
    ) -> Result<Submission, Diagnostic> {
        let tr = loaded.spec.id.clone();
        if shards == 0 {
            return Err(Diagnostic::new("--shards must be at least 1")
                .help("e.g. `--shards 4`: one task per shard"));
        }
        let absolute = |p: &Path| {
            std::path::absolute(p)
                .map_err(|e| Diagnostic::new(format!("cannot make {} absolute: {e}", p.display())))
        };
        let root = absolute(root)?;
        let program = absolute(program)?;
        let plan = plan::build(loaded);
        let has_axis = loaded.matrix.axes.contains_key("hardware");
        let values: Vec<Option<String>> = if has_axis {
            loaded
                .spec
                .hardware
                .keys()
                .filter(|h| {
                    plan.cells
                        .iter()
                        .any(|c| plan::hardware_of(c).as_ref() == Some(*h))
                })
                .map(|h| Some(h.clone()))
                .collect()
        } else {
            vec![None]
        };
        let placements = values
            .into_iter()
            .map(|hardware| {
                let on = match &hardware {
                    Some(h) => loaded.spec.hardware[h].clone(),
                    // One placement without an axis applies to every cell.
                    None => loaded
                        .spec
                        .hardware
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_default(),
                };
                let here: Vec<bool> = (plan.cells.iter())
                    .map(|c| hardware.is_none() || plan::hardware_of(c) == hardware)
                    .collect();
                let runs = plan.runs.iter().filter(|r| here[r.cell]).count();
                let units = match by {
                    ShardBy::Cell => here.iter().filter(|h| **h).count(),
                    ShardBy::Run => runs,
                };
                Placement {
                    hardware,
                    on,
                    shards: shards.min(u32::try_from(units).unwrap_or(u32::MAX)).max(1),
                    runs,
                }
            })
            .collect();
        let set = match &replication {
            Some(name) => TrPaths::replication(&root, &tr, name),
            None => TrPaths::new(&root, &tr),
        };
        Ok(Submission {
            tr,
            root,
            program,
            by,
            replication,
            placements,
            jobs_dir: set.data_dir.join("jobs"),
        })
    }

    /// A task's command: run one shard, named by the scheduler's index and count (shell
    /// expressions such as `$SLURM_ARRAY_TASK_ID`).
    fn shard_command(&self, placement: &Placement, index: &str, count: &str) -> String {
        let mut args: Vec<String> = vec![
            quote(&self.program.to_string_lossy()),
            "run".into(),
            quote(&self.tr),
            "--quiet".into(),
            "--shard".into(),
            format!("\"{index}/{count}\""),
        ];
        if self.by == ShardBy::Run {
            args.extend(["--shard-by".into(), "run".into()]);
        }
        if let Some(h) = &placement.hardware {
            args.extend(["--hardware".into(), quote(h)]);
        }
        if let Some(r) = &self.replication {
            args.extend(["--replication".into(), quote(r)]);
        }
        args.join(" ")
    }

    /// A task's whole script body: the shard's command, then its exit status passed on, except
    /// that `run`'s 1 (the shard finished with degraded runs) counts as success: degraded runs
    /// are data, not a failed task, and must not cancel the merge.
    pub fn shard_script(&self, placement: &Placement, index: &str, count: &str) -> String {
        format!(
            "{}\nstatus=$?\n# `run` exits 1 when the shard finished with degraded runs: those are data, not a failure.\nif [ \"$status\" -eq 1 ]; then exit 0; fi\nexit \"$status\"",
            self.shard_command(placement, index, count)
        )
    }

    /// What runs after every shard succeeded: merge, then analyze and report (a replication:
    /// merge its shards, then judge it against the original).
    pub fn finish_commands(&self) -> Vec<String> {
        let program = quote(&self.program.to_string_lossy());
        let tr = quote(&self.tr);
        match &self.replication {
            Some(r) => vec![
                format!("{program} merge {tr} --replication {}", quote(r)),
                format!("{program} replicate {tr} --name {}", quote(r)),
            ],
            None => vec![
                format!("{program} merge {tr}"),
                format!("{program} analyze {tr}"),
                format!("{program} report {tr}"),
            ],
        }
    }

    /// A name for jobs: `banterhearts-TR124`, with the hardware value or `merge` after it.
    pub fn job_name(&self, what: Option<&str>) -> String {
        let mut name = format!("banterhearts-{}", self.tr);
        if let Some(r) = &self.replication {
            name.push_str(&format!("-replication-{r}"));
        }
        if let Some(w) = what {
            name.push('-');
            name.push_str(w);
        }
        name
    }
}

/// A word for a POSIX shell, quoted only when it needs to be.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| format!("'{word}'"), |q| q.into_owned())
}
