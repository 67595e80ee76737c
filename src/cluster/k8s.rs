//! `submit --k8s`: per placement a Kubernetes Indexed Job (`completionMode: Indexed`; each
//! pod's shard from `JOB_COMPLETION_INDEX`) and a merge Job, both mounting the project from a
//! shared volume. Kubernetes has no "after these jobs succeed" between Jobs, so the merge Job
//! is a file of its own, applied once `kubectl wait` says the shards completed.

use serde_json::{Value, json};

use super::submit::{Placement, Submission};

/// Where the pods find the tool and the project.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    pub image: String,
    /// A PersistentVolumeClaim every pod mounts (ReadWriteMany, as all shards write to it).
    pub claim: String,
    pub namespace: Option<String>,
}

/// A DNS-1123 label from a job name: lower case, letters, digits and `-`, at most 63 long.
pub fn object_name(name: &str) -> String {
    let mut out: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_owned()
}

fn metadata(sub: &Submission, name: &str, opts: &K8sOptions) -> Value {
    let mut m = json!({
        "name": object_name(name),
        "labels": {
            "app.kubernetes.io/name": "banterhearts",
            "banterhearts/tr": object_name(&sub.tr),
        },
    });
    if let Some(ns) = &opts.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn pod_spec(sub: &Submission, opts: &K8sOptions, script: String, on: Option<&Placement>) -> Value {
    let mut container = json!({
        "name": "banterhearts",
        "image": opts.image,
        "workingDir": sub.root.to_string_lossy(),
        "command": ["/bin/sh", "-c", script],
        "volumeMounts": [{"name": "project", "mountPath": sub.root.to_string_lossy()}],
    });
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [],
        "volumes": [{"name": "project", "persistentVolumeClaim": {"claimName": opts.claim}}],
    });
    if let Some(p) = on {
        if !p.on.resources.is_empty() {
            container["resources"] = json!({"limits": p.on.resources});
        }
        if !p.on.node_selector.is_empty() {
            spec["nodeSelector"] = json!(p.on.node_selector);
        }
    }
    spec["containers"] = json!([container]);
    spec
}

/// The Indexed Job of one placement's shards.
pub fn shards_job(sub: &Submission, placement: &Placement, opts: &K8sOptions) -> Value {
    let what = placement.hardware.as_deref().unwrap_or("shards");
    let n = placement.shards;
    let script = sub.shard_script(placement, "$JOB_COMPLETION_INDEX", &n.to_string());
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(sub, &sub.job_name(Some(what)), opts),
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            // A failed pod of a shard is retried (it resumes its shard's journal) twice.
            "backoffLimit": 2 * n,
            "template": {"spec": pod_spec(sub, opts, script, Some(placement))},
        },
    })
}

/// The Job that merges, analyses and reports once every shard completed.
pub fn merge_job(sub: &Submission, opts: &K8sOptions) -> Value {
    let script = format!("set -eu\n{}", sub.finish_commands().join("\n"));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(sub, &sub.job_name(Some("merge")), opts),
        "spec": {
            "completions": 1,
            "backoffLimit": 1,
            "template": {"spec": pod_spec(sub, opts, script, None)},
        },
    })
}

/// The manifests as YAML documents: all shard Jobs in one file, the merge Job in another.
pub fn manifests(sub: &Submission, opts: &K8sOptions) -> (String, String) {
    let header = format!(
        "# Written by `banterhearts submit {} --k8s`: apply it, wait for completion, then apply the merge Job.\n",
        sub.tr
    );
    let docs: Vec<String> = sub
        .placements
        .iter()
        .map(|p| yaml_serde::to_string(&shards_job(sub, p, opts)).expect("a manifest serializes"))
        .collect();
    let merge = yaml_serde::to_string(&merge_job(sub, opts)).expect("a manifest serializes");
    (
        format!("{header}{}", docs.join("---\n")),
        format!("{header}{merge}"),
    )
}
