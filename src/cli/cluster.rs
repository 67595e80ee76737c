//! Arguments and output of the scale-out commands: `run --shard`, `merge`, `submit`,
//! `replicate`. The work is in `cluster`, `plan::shard`, `runner` and `analysis`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{analysis_error, load_one, print_out};
use crate::analysis;
use crate::cluster::{k8s, merge, slurm, submit::Submission};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::shard::{Shard, ShardBy};
use crate::runner::RunOptions;
use crate::store::TrPaths;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ShardByArg {
    /// Whole cells per shard: no cell mixes machines.
    #[default]
    Cell,
    /// Single runs, dealt round-robin: for identical machines.
    Run,
}

impl From<ShardByArg> for ShardBy {
    fn from(a: ShardByArg) -> ShardBy {
        match a {
            ShardByArg::Cell => ShardBy::Cell,
            ShardByArg::Run => ShardBy::Run,
        }
    }
}

/// Which part of the plan a `run` runs, and into which data set.
#[derive(Debug, Clone, Args)]
pub struct PartArgs {
    /// Run only shard INDEX of COUNT (0-based: `0/2` and `1/2`), into its own journal under
    /// data/TR/shards/; `merge` puts the shards together.
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<String>,
    /// What a shard deals out.
    #[arg(long, value_enum, default_value_t, requires = "shard")]
    pub shard_by: ShardByArg,
    /// Only the cells of this value of the `hardware` axis (alone: all of them, as one shard).
    #[arg(long)]
    pub hardware: Option<String>,
    /// Write into the replication data set of this name (data/TR/replications/NAME/).
    #[arg(long)]
    pub replication: Option<String>,
}

impl PartArgs {
    pub fn options(&self, root: &Path, tr: &str, quiet: bool) -> Result<RunOptions, Diagnostics> {
        let hardware = match &self.hardware {
            Some(h) => {
                let registry = load_one(root, tr)?;
                let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
                if !loaded.matrix.axes.contains_key("hardware") {
                    return Err(Diagnostic::new(format!(
                        "--hardware {h}: {tr} has no `hardware` axis"
                    ))
                    .in_file(&loaded.path)
                    .help("leave --hardware out, or add the axis and its placements under `hardware:`")
                    .into());
                }
                if !loaded.spec.hardware.contains_key(h) {
                    let names: Vec<&str> =
                        loaded.spec.hardware.keys().map(String::as_str).collect();
                    return Err(
                        Diagnostic::new(format!("--hardware {h} is not defined in {tr}"))
                            .in_file(&loaded.path)
                            .help(format!("pick one of: {}", names.join(", ")))
                            .into(),
                    );
                }
                Some(h.clone())
            }
            None => None,
        };
        if let Some(name) = &self.replication {
            check_name(name)?;
        }
        let shard = match (&self.shard, &hardware) {
            (Some(s), _) => Some(
                Shard::parse(s, self.shard_by.into(), hardware.clone())
                    .map_err(|e| Diagnostics::from(Diagnostic::new(e).field("--shard")))?,
            ),
            (None, Some(h)) => Some(Shard {
                index: 0,
                count: 1,
                by: ShardBy::Cell,
                hardware: Some(h.clone()),
            }),
            (None, None) => None,
        };
        Ok(RunOptions {
            quiet,
            shard,
            replication: self.replication.clone(),
        })
    }
}

/// A replication's name names a directory: plain characters only.
fn check_name(name: &str) -> Result<(), Diagnostics> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Diagnostic::new(format!("`{name}` is no replication name"))
            .help("use letters, digits, `-`, `_` and `.` (it names a directory), e.g. `--name host-b-2026-12`")
            .into());
    }
    Ok(())
}

/// The command that resumes what `options` ran.
pub fn resume_command(tr: &str, options: &RunOptions) -> String {
    let mut cmd = format!("banterhearts run {tr}");
    if let Some(s) = &options.shard {
        cmd.push_str(&format!(" --shard {}/{}", s.index, s.count));
        if s.by == ShardBy::Run {
            cmd.push_str(" --shard-by run");
        }
        if let Some(h) = &s.hardware {
            cmd.push_str(&format!(" --hardware {h}"));
        }
    }
    if let Some(r) = &options.replication {
        cmd.push_str(&format!(" --replication {r}"));
    }
    cmd
}

pub fn merge_cmd(
    root: &Path,
    tr: &str,
    replication: Option<&str>,
) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, tr)?;
    let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
    let set = match replication {
        Some(name) => {
            check_name(name)?;
            TrPaths::replication(root, &loaded.spec.id, name)
        }
        None => TrPaths::new(root, &loaded.spec.id),
    };
    let summary = merge::merge(loaded, &set)?;
    let mut out = String::new();
    for s in &summary.shards {
        out.push_str(&format!(
            "shard {:<16} {:>6} runs, {:>6} new\n",
            s.shard, s.runs, s.added
        ));
    }
    let added: usize = summary.shards.iter().map(|s| s.added).sum();
    out.push_str(&format!(
        "{}: merged {added} new run(s) from {} shard(s) into {}; it now holds {} of {} planned runs{}\n",
        loaded.spec.id,
        summary.shards.len(),
        set.runs().display(),
        summary.recorded,
        summary.planned,
        if added == 0 { " (nothing new: already merged)" } else { "" }
    ));
    print_out(&out);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// TR id (TR124) or spec file.
    pub tr: String,
    /// Write a Slurm job array and a dependent merge job, and submit them with sbatch.
    #[arg(long, conflicts_with = "k8s", required_unless_present = "k8s")]
    pub slurm: bool,
    /// Write Kubernetes Indexed Job manifests (and a merge Job) for a shared volume.
    #[arg(long)]
    pub k8s: bool,
    /// Shards per hardware value (tasks of the array); fewer if there are fewer cells.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    #[arg(long, value_enum, default_value_t)]
    pub shard_by: ShardByArg,
    /// Slurm partition (a hardware value's own partition wins).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm time limit per task (`--time`), e.g. 02:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per task (`--gpus-per-task`).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// CPUs per task (`--cpus-per-task`).
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Write the job files and print the commands, without submitting.
    #[arg(long)]
    pub dry_run: bool,
    /// Kubernetes: the container image with banterhearts on its PATH.
    #[arg(long, required_if_eq("k8s", "true"))]
    pub image: Option<String>,
    /// Kubernetes: the PersistentVolumeClaim holding the project (ReadWriteMany).
    #[arg(long, required_if_eq("k8s", "true"))]
    pub claim: Option<String>,
    /// Kubernetes: where the pods mount the project.
    #[arg(long, default_value = "/work")]
    pub mount: PathBuf,
    #[arg(long)]
    pub namespace: Option<String>,
    /// Run into the replication data set of this name (as `replicate --slurm` does).
    #[arg(long)]
    pub replication: Option<String>,
}

pub fn submit_cmd(root: &Path, args: &SubmitArgs) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, &args.tr)?;
    let loaded = registry.resolve(&args.tr).map_err(Diagnostics::from)?;
    if let Some(r) = &args.replication {
        check_name(r)?;
    }
    let program = std::env::current_exe()
        .map_err(|e| Diagnostic::new(format!("cannot find this program's path: {e}")))?;
    let mut sub = Submission::new(
        loaded,
        root,
        &program,
        args.shards,
        args.shard_by.into(),
        args.replication.clone(),
    )?;
    let mut out = String::new();
    if args.k8s {
        // The pods see the project at the mount and the tool on their PATH.
        sub.root = args.mount.clone();
        sub.program = PathBuf::from("banterhearts");
        let opts = k8s::K8sOptions {
            image: args.image.clone().unwrap_or_default(),
            claim: args.claim.clone().unwrap_or_default(),
            namespace: args.namespace.clone(),
        };
        let (shards, merge) = k8s::manifests(&sub, &opts);
        let write = |name: &str, text: &str| -> Result<PathBuf, Diagnostics> {
            let path = sub.jobs_dir.join(name);
            crate::store::write_atomic(&path, text.as_bytes())
                .map_err(|e| Diagnostics::from(Diagnostic::new(e.to_string()).in_file(&path)))?;
            Ok(path)
        };
        let shards_path = write("k8s-shards.yaml", &shards)?;
        let merge_path = write("k8s-merge.yaml", &merge)?;
        let names: Vec<String> = sub
            .placements
            .iter()
            .map(|p| {
                format!(
                    "job/{}",
                    k8s::object_name(
                        &sub.job_name(Some(p.hardware.as_deref().unwrap_or("shards")))
                    )
                )
            })
            .collect();
        let ns = args
            .namespace
            .as_ref()
            .map_or(String::new(), |n| format!(" -n {n}"));
        out.push_str(&format!(
            "wrote {} and {}\nrun them on the cluster (the project on claim `{}`, mounted at {}):\n  kubectl apply{ns} -f {}\n  kubectl wait{ns} --for=condition=complete --timeout=24h {}\n  kubectl apply{ns} -f {}\n",
            shards_path.display(),
            merge_path.display(),
            opts.claim,
            sub.root.display(),
            shards_path.display(),
            names.join(" "),
            merge_path.display()
        ));
        print_out(&out);
        return Ok(ExitCode::SUCCESS);
    }
    let opts = slurm::SlurmOptions {
        partition: args.partition.clone(),
        time: args.time.clone(),
        gpus_per_task: args.gpus_per_task,
        cpus_per_task: args.cpus_per_task,
    };
    let submitted = slurm::submit(&sub, &opts, args.dry_run)?;
    for ((path, id), p) in submitted.arrays.iter().zip(&sub.placements) {
        let on = p
            .hardware
            .as_deref()
            .map_or(String::new(), |h| format!(" on {h}"));
        match id {
            Some(id) => out.push_str(&format!(
                "submitted job array {id}: {} shard(s) of {}{on} ({} runs), {}\n",
                p.shards,
                sub.tr,
                p.runs,
                path.display()
            )),
            None => out.push_str(&format!(
                "wrote {} ({} shard(s){on}, {} runs)\n",
                path.display(),
                p.shards,
                p.runs
            )),
        }
    }
    let (path, finish) = &submitted.finish;
    match finish {
        Some(id) => {
            let ids: Vec<&str> = submitted
                .arrays
                .iter()
                .filter_map(|(_, i)| i.as_deref())
                .collect();
            let what = if sub.replication.is_some() {
                "merge the replication's shards and judge each claim"
            } else {
                "merge, analyze and report"
            };
            out.push_str(&format!(
                "submitted job {id}: {what} once every shard succeeded, {}\nfollow them: squeue -j {},{id}; output in {}\n",
                path.display(),
                ids.join(","),
                sub.jobs_dir.display()
            ));
        }
        None => {
            out.push_str(&format!(
                "wrote {}\ndry run: nothing submitted; these commands would submit them:\n",
                path.display()
            ));
            for c in &submitted.commands {
                out.push_str(&format!("  {c}\n"));
            }
        }
    }
    print_out(&out);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// TR id (TR124) or spec file.
    pub tr: String,
    /// The replication's name (its directory under data/TR/replications/); by default this
    /// machine's host name.
    #[arg(long)]
    pub name: Option<String>,
    /// Submit the replication as Slurm jobs instead of running it here (the options of
    /// `submit --slurm` apply).
    #[arg(long)]
    pub slurm: bool,
    #[arg(long, default_value_t = 2, requires = "slurm")]
    pub shards: u32,
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    #[arg(long, requires = "slurm")]
    pub dry_run: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

fn host_name() -> String {
    let name = sysinfo::System::host_name()
        .into_iter()
        .next()
        .unwrap_or_else(|| "here".to_owned());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.trim_start_matches('.').to_owned()
}

pub fn replicate_cmd(root: &Path, args: &ReplicateArgs) -> Result<ExitCode, Diagnostics> {
    let name = args.name.clone().unwrap_or_else(host_name);
    check_name(&name)?;
    if args.slurm {
        let submit = SubmitArgs {
            tr: args.tr.clone(),
            slurm: true,
            k8s: false,
            shards: args.shards,
            shard_by: ShardByArg::Cell,
            partition: args.partition.clone(),
            time: args.time.clone(),
            gpus_per_task: None,
            cpus_per_task: None,
            dry_run: args.dry_run,
            image: None,
            claim: None,
            mount: PathBuf::from("/work"),
            namespace: None,
            replication: Some(name),
        };
        return submit_cmd(root, &submit);
    }
    let registry = load_one(root, &args.tr)?;
    let loaded = registry.resolve(&args.tr).map_err(Diagnostics::from)?;
    let tr = loaded.spec.id.clone();
    if !crate::record::journal::has_finished_runs(&TrPaths::new(root, &tr).runs()) {
        return Err(
            Diagnostic::new(format!("{tr} has no data of its own to replicate"))
                .in_file(TrPaths::new(root, &tr).runs())
                .help(format!("run it first: `banterhearts run {tr}`"))
                .into(),
        );
    }
    let options = RunOptions {
        quiet: args.quiet,
        shard: None,
        replication: Some(name.clone()),
    };
    // Runs what the replication lacks (nothing, when it is complete: then it only judges).
    let code = super::run_tr(root, &args.tr, options)?;
    if code == ExitCode::from(130) {
        return Ok(code);
    }
    let original = analysis::original_claims(root, loaded).map_err(analysis_error)?;
    let r = analysis::replication(root, loaded, &original, &name).map_err(analysis_error)?;
    print_out(&replication_text(&tr, &r));
    Ok(ExitCode::SUCCESS)
}

/// The verdicts as the terminal shows them.
pub fn replication_text(tr: &str, r: &analysis::replication::Replication) -> String {
    use analysis::replication::Agreement;
    let mut out = format!(
        "{tr}: replication `{}`, {} of {} measured runs, on {}\n",
        r.name,
        r.runs,
        r.planned,
        if r.machines.is_empty() {
            "an unrecorded machine".to_owned()
        } else {
            r.machines.join("; ")
        }
    );
    for c in &r.claims {
        out.push_str(&format!(
            "  {:<14} {:<28} {}\n",
            c.agreement.label(),
            c.id,
            c.sentence
        ));
    }
    out.push_str(&format!(
        "{} claim(s): {} consistent, {} differ, {} without an interval, {} not replicable, {} without data\n",
        r.claims.len(),
        r.count(Agreement::Consistent),
        r.count(Agreement::Differs),
        r.count(Agreement::NoInterval),
        r.count(Agreement::NotReplicable),
        r.count(Agreement::NoData)
    ));
    out
}

/// Where the TR's data and each of its shards stand, for `plan` (empty before any run).
pub fn progress_text(root: &Path, plan: &crate::plan::Plan) -> String {
    let set = TrPaths::new(root, &plan.tr);
    let recorded: std::collections::HashSet<String> =
        crate::record::journal::read_digests(&set.runs())
            .map(|d| d.runs.into_iter().map(|r| r.run_id).collect())
            .unwrap_or_default();
    let shards = crate::record::shards::shard_progress(plan, &set, |id| recorded.contains(id));
    if recorded.is_empty() && shards.is_empty() {
        return String::new();
    }
    let ids: std::collections::HashSet<&str> =
        plan.runs.iter().map(|r| r.run_id.as_str()).collect();
    let mut out = format!(
        "recorded: {} of {} runs in {}\n",
        recorded
            .iter()
            .filter(|id| ids.contains(id.as_str()))
            .count(),
        plan.runs.len(),
        set.runs().display()
    );
    for s in &shards {
        out.push_str(&format!(
            "  shard {:<16} {:>6} of {:>6} runs recorded{}\n",
            s.shard,
            s.recorded,
            s.planned,
            match s.unmerged {
                0 => String::new(),
                n => format!(", {n} not merged yet (`banterhearts merge {}`)", plan.tr),
            }
        ));
    }
    out
}
