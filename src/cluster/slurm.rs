//! `submit --slurm`: per placement a job array (`--array=0-(n-1)`, one task per shard, the
//! shard from `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`) and one job that finishes the
//! TR, submitted with `--dependency=afterok` on every array, so it runs only when every
//! shard succeeded and is cancelled (`--kill-on-invalid-dep=yes`) when one failed.

use std::path::PathBuf;
use std::process::Command;

use super::submit::{Placement, Submission, quote};
use crate::diagnostic::Diagnostic;
use crate::store;

/// The `sbatch` options the command line gives; a placement's own partition and GRES win.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
}

/// The files written and, unless it was a dry run, the jobs submitted.
#[derive(Debug)]
pub struct SlurmSubmission {
    pub arrays: Vec<(PathBuf, Option<String>)>,
    pub finish: (PathBuf, Option<String>),
    /// The `sbatch` command lines, as run (or as they would run).
    pub commands: Vec<String>,
}

fn directives(sub: &Submission, name: &str, output: &str, lines: &[String]) -> String {
    let mut text = format!(
        "#!/bin/bash\n# Written by `banterhearts submit {} --slurm`: edit the TR's spec and submit again rather than this file.\n#SBATCH --job-name={name}\n#SBATCH --output={}\n#SBATCH --ntasks=1\n",
        sub.tr,
        sub.jobs_dir.join(output).display()
    );
    for line in lines {
        text.push_str(&format!("#SBATCH {line}\n"));
    }
    text
}

/// The array script of one placement.
pub fn array_script(sub: &Submission, placement: &Placement, opts: &SlurmOptions) -> String {
    let mut lines = vec![format!("--array=0-{}", placement.shards - 1)];
    if let Some(p) = placement.on.partition.as_ref().or(opts.partition.as_ref()) {
        lines.push(format!("--partition={p}"));
    }
    if let Some(t) = &opts.time {
        lines.push(format!("--time={t}"));
    }
    if let Some(g) = &placement.on.gres {
        lines.push(format!("--gres={g}"));
    }
    if let Some(g) = opts.gpus_per_task {
        lines.push(format!("--gpus-per-task={g}"));
    }
    if let Some(c) = opts.cpus_per_task {
        lines.push(format!("--cpus-per-task={c}"));
    }
    let what = placement.hardware.as_deref().unwrap_or("shards");
    let mut text = directives(sub, &sub.job_name(Some(what)), "slurm-%x-%A_%a.out", &lines);
    text.push_str(&format!(
        "\n# One shard per array task; it starts its own launched servers on this node and resumes\n# what an earlier attempt of the same shard recorded.\ncd {}\n{}\n",
        quote(&sub.root.to_string_lossy()),
        sub.shard_script(placement, "$SLURM_ARRAY_TASK_ID", "$SLURM_ARRAY_TASK_COUNT"),
    ));
    text
}

/// The script of the job that runs after every shard: merge, analyze, report.
pub fn finish_script(sub: &Submission, opts: &SlurmOptions) -> String {
    let mut lines = Vec::new();
    if let Some(p) = &opts.partition {
        lines.push(format!("--partition={p}"));
    }
    if let Some(t) = &opts.time {
        lines.push(format!("--time={t}"));
    }
    let mut text = directives(sub, &sub.job_name(Some("merge")), "slurm-%x-%j.out", &lines);
    text.push_str(&format!(
        "\nset -euo pipefail\ncd {}\n{}\n",
        quote(&sub.root.to_string_lossy()),
        sub.finish_commands().join("\n")
    ));
    text
}

/// Writes the scripts and, unless `dry_run`, submits them with `sbatch`.
pub fn submit(
    sub: &Submission,
    opts: &SlurmOptions,
    dry_run: bool,
) -> Result<SlurmSubmission, Diagnostic> {
    let write = |name: &str, text: &str| -> Result<PathBuf, Diagnostic> {
        let path = sub.jobs_dir.join(name);
        store::write_atomic(&path, text.as_bytes())
            .map_err(|e| Diagnostic::new(e.to_string()).in_file(&path))?;
        Ok(path)
    };
    let mut arrays = Vec::new();
    let mut commands = Vec::new();
    for placement in &sub.placements {
        let name = match &placement.hardware {
            Some(h) => format!("slurm-shards-{h}.sh"),
            None => "slurm-shards.sh".to_owned(),
        };
        let path = write(&name, &array_script(sub, placement, opts))?;
        let args = vec!["--parsable".to_owned(), path.display().to_string()];
        commands.push(command_line(&args));
        let id = if dry_run { None } else { Some(sbatch(&args)?) };
        arrays.push((path, id));
    }
    let path = write("slurm-merge.sh", &finish_script(sub, opts))?;
    let after: Vec<&str> = arrays
        .iter()
        .map(|(_, id)| id.as_deref().unwrap_or("ARRAY_ID"))
        .collect();
    let args = vec![
        "--parsable".to_owned(),
        format!("--dependency=afterok:{}", after.join(":")),
        "--kill-on-invalid-dep=yes".to_owned(),
        path.display().to_string(),
    ];
    commands.push(command_line(&args));
    let id = if dry_run { None } else { Some(sbatch(&args)?) };
    Ok(SlurmSubmission {
        arrays,
        finish: (path, id),
        commands,
    })
}

fn command_line(args: &[String]) -> String {
    std::iter::once("sbatch".to_owned())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `sbatch --parsable ...` and returns the job id it prints (`ID` or `ID;cluster`).
fn sbatch(args: &[String]) -> Result<String, Diagnostic> {
    let out = Command::new("sbatch").args(args).output().map_err(|e| {
        Diagnostic::new(format!("cannot run sbatch: {e}")).help(
            "run this on a Slurm login node (or start the test cluster: `eval \"export $(scripts/slurm-cluster start)\"`); `--dry-run` writes the scripts without submitting",
        )
    })?;
    if !out.status.success() {
        return Err(Diagnostic::new(format!(
            "sbatch refused the job: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .help("check the partition, time and GRES options against `sinfo`; the scripts are kept beside the TR's data for a look"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Diagnostic::new(format!(
            "sbatch printed no job id: `{}`",
            text.trim()
        )));
    }
    Ok(id)
}
