//! `submit --slurm` on a real single-node Slurm cluster (scripts/slurm-cluster, started by
//! scripts/test) against launched llama-servers: a 2-shard job array and the merge job that
//! depends on it; a shard task cancelled mid-run, submitted again, resumes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{banterhearts_with_model, copy_templates, journal, plan_run_ids, project, serial};

fn spec(repetitions: u32, max_tokens: u32) -> String {
    format!(
        r#"id: TR971
title: Two shards on Slurm
status: running
question: Does a plan submitted as a job array merge back into the unsharded plan?
backends:
  llama:
    kind: llama-cpp
    launch: {{count: 1, args: ["-m", "${{BANTERHEARTS_MODEL}}", "-c", "512", "-t", "1"]}}
workload: {{prompts: ["Name three colours."], max_tokens: {max_tokens}, seed: 42, ignore_eos: true}}
matrix:
  temperature: [0.2, 0.5, 0.8]
repetitions: {repetitions}
warmup: 1
claims:
  - id: steady
    text: Temperature does not move decode detectably.
    metric: decode_tok_s
    compare: {{a: {{temperature: 0.8}}, b: {{temperature: 0.2}}}}
    assert: not_detectable
"#
    )
}

/// The cluster's configuration, from scripts/slurm-cluster (scripts/test exports it). The
/// test fails, rather than skips, without a cluster.
fn slurm_conf() -> String {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    let up = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    assert!(
        !conf.is_empty() && up.as_ref().is_ok_and(|o| o.status.success()),
        "no Slurm cluster: run `eval \"export $(scripts/slurm-cluster start)\"` (scripts/test does); SLURM_CONF={conf:?}, sinfo: {up:?}"
    );
    conf
}

/// Job ids `submit` printed: the array's, then the merge job's.
fn job_ids(stdout: &str) -> (String, String) {
    let id = |prefix: &str| {
        stdout
            .lines()
            .filter(|l| prefix.contains("array") || !l.contains("job array"))
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("no `{prefix}` in {stdout}"))
            .trim()
            .to_owned()
    };
    (id("submitted job array "), id("submitted job "))
}

/// Waits until Slurm no longer lists any of `jobs` (finished, failed or cancelled).
fn wait_gone(jobs: &[&str], limit: Duration) {
    let started = Instant::now();
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i %T", "-j", &jobs.join(",")])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if listed.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "jobs still queued after {limit:?}: {listed}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A job's state as `scontrol` keeps it (MinJobAge holds finished jobs for an hour).
fn job_state(id: &str) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("UNKNOWN")
        .to_owned()
}

fn assert_merged_is_the_plan(root: &Path) {
    let merged = journal(root, "TR971");
    let ids: Vec<&str> = merged
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(ids.len(), unique.len(), "a run merged twice");
    assert_eq!(
        unique,
        plan_run_ids(root, "TR971"),
        "the merged runs are the unsharded plan"
    );
    assert!(merged.iter().all(|r| r["status"] == "ok"));
}

#[test]
fn a_two_shard_job_array_merges_into_the_plan() {
    let _serial = serial();
    slurm_conf();
    let dir = project(&[("TR971.yaml", &spec(2, 8))]);
    let root = dir.path();
    copy_templates(root);
    let out = banterhearts_with_model(root, &["submit", "TR971", "--slurm", "--shards", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (array, merge) = job_ids(&out.stdout);
    wait_gone(&[&array, &merge], Duration::from_secs(300));
    assert_eq!(
        job_state(&merge),
        "COMPLETED",
        "{}",
        std::fs::read_to_string(root.join(format!(
            "data/TR971/jobs/slurm-banterhearts-TR971-merge-{merge}.out"
        )))
        .unwrap_or_default()
    );
    // Each task ran its own shard.
    for i in 0..2 {
        let shard = journal(root, &format!("TR971/shards/{i}-of-2"));
        assert!(!shard.is_empty(), "shard {i} recorded nothing");
    }
    assert_merged_is_the_plan(root);
    // The dependent job analysed and reported the merged data.
    assert!(root.join("data/TR971/summary.csv").is_file());
    assert!(root.join("reports/TR971.md").is_file());

    // A replication submitted the same way: its shards merge into the replication's data and
    // the finishing job judges the claim.
    let out = banterhearts_with_model(root, &["replicate", "TR971", "--slurm", "--name", "again"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("judge each claim"), "{}", out.stdout);
    let (array, merge) = job_ids(&out.stdout);
    wait_gone(&[&array, &merge], Duration::from_secs(300));
    let log = std::fs::read_to_string(root.join(format!(
        "data/TR971/replications/again/jobs/slurm-banterhearts-TR971-replication-again-merge-{merge}.out"
    )))
    .unwrap_or_default();
    assert_eq!(job_state(&merge), "COMPLETED", "{log}");
    assert!(
        log.contains("replication `again`, 6 of 6 measured runs"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("steady") && (l.contains("consistent") || l.contains("differs"))),
        "{log}"
    );
    let replica = journal(root, "TR971/replications/again");
    let ids: BTreeSet<String> = replica
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, plan_run_ids(root, "TR971"));
}

#[test]
fn a_cancelled_shard_submitted_again_resumes() {
    let _serial = serial();
    slurm_conf();
    let dir = project(&[("TR971.yaml", &spec(8, 48))]);
    let root = dir.path();
    copy_templates(root);
    let out = banterhearts_with_model(root, &["submit", "TR971", "--slurm", "--shards", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (array, merge) = job_ids(&out.stdout);
    // Cancel shard 0 once it has recorded a few runs (its cells hold 18 of the 27 runs).
    let shard0 = root.join("data/TR971/shards/0-of-2/runs.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&shard0)
        .unwrap_or_default()
        .lines()
        .count()
        < 3
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "shard 0 recorded nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("scancel")
        .arg(format!("{array}_0"))
        .status()
        .unwrap();
    assert!(status.success());
    wait_gone(&[&array, &merge], Duration::from_secs(300));
    // The merge job never ran: its dependency failed.
    assert_ne!(job_state(&merge), "COMPLETED");
    assert!(!root.join("data/TR971/runs.jsonl").exists());
    let before = journal(root, "TR971/shards/0-of-2");
    assert!(
        before.len() >= 3 && before.len() < 18,
        "{} runs",
        before.len()
    );

    let out = banterhearts_with_model(root, &["submit", "TR971", "--slurm", "--shards", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (array, merge) = job_ids(&out.stdout);
    wait_gone(&[&array, &merge], Duration::from_secs(300));
    assert_eq!(job_state(&merge), "COMPLETED");
    // Shard 0 resumed: its earlier runs are kept as they were, the rest were added in a
    // second session.
    let after = journal(root, "TR971/shards/0-of-2");
    assert_eq!(after.len(), 18);
    assert_eq!(&after[..before.len()], &before[..]);
    let sessions: BTreeSet<u64> = after
        .iter()
        .map(|r| r["session"].as_u64().unwrap())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_merged_is_the_plan(root);
}
