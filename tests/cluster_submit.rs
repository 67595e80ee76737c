//! A hardware axis and the job files `submit` writes: each hardware value's cells run as an
//! array of their own on that value's partition (Slurm) or nodes (Kubernetes), the manifests
//! validate against the Kubernetes schema, and comparisons along the axis may compare machines
//! while every other comparison is still checked for mixed machines.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{banterhearts, journal, pacer, project};
use serde_json::Value;

fn spec(url: &str) -> String {
    format!(
        r#"id: TR972
title: Two kinds of hardware
status: running
question: Does each hardware value's part of the plan run on that hardware?
backends:
  pacer: {{kind: openai, server: llama-server, model: pacer, endpoints: ["http://{url}"]}}
hardware:
  cpu-a: {{partition: a}}
  h100: {{partition: gpu, gres: "gpu:h100:1", node_selector: {{nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}, resources: {{nvidia.com/gpu: "1"}}}}
workload: {{prompts: [a, b], max_tokens: 4}}
matrix:
  hardware: [cpu-a, h100]
  temperature: [0.2, 0.5, 0.8]
repetitions: 3
claims:
  - id: gpu_faster
    text: The H100 decodes faster than the CPU.
    metric: decode_tok_s
    compare: {{a: {{hardware: h100}}, b: {{hardware: cpu-a}}}}
    assert: "ratio_ci_low > 1"
  - id: temperature_no_effect
    text: Temperature does not move decode.
    metric: decode_tok_s
    compare: {{a: {{temperature: 0.8}}, b: {{temperature: 0.2}}}}
    assert: not_detectable
"#
    )
}

#[test]
fn each_hardware_value_is_an_array_on_its_partition() {
    let dir = project(&[("TR972.yaml", &spec("127.0.0.1:9"))]);
    let root = dir.path();
    let out = banterhearts(
        root,
        &[
            "submit",
            "TR972",
            "--slurm",
            "--shards",
            "2",
            "--time",
            "01:00:00",
            "--dry-run",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let jobs = root.join("data/TR972/jobs");
    for (h, partition, gres) in [("cpu-a", "a", None), ("h100", "gpu", Some("gpu:h100:1"))] {
        let script = std::fs::read_to_string(jobs.join(format!("slurm-shards-{h}.sh"))).unwrap();
        assert!(script.contains("#SBATCH --array=0-1\n"), "{script}");
        assert!(
            script.contains(&format!("#SBATCH --partition={partition}\n")),
            "{script}"
        );
        assert!(script.contains("#SBATCH --time=01:00:00\n"));
        assert_eq!(script.contains("#SBATCH --gres="), gres.is_some());
        if let Some(g) = gres {
            assert!(script.contains(&format!("#SBATCH --gres={g}\n")));
        }
        assert!(
            script.contains(&format!(
                "--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\" --hardware {h}"
            )),
            "{script}"
        );
        // The script runs where it stands: bash can parse it.
        let status = Command::new("bash")
            .arg("-n")
            .arg(jobs.join(format!("slurm-shards-{h}.sh")))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let merge = std::fs::read_to_string(jobs.join("slurm-merge.sh")).unwrap();
    for step in ["merge TR972", "analyze TR972", "report TR972"] {
        assert!(merge.contains(step), "{merge}");
    }
    assert!(
        out.stdout
            .contains("--dependency=afterok:ARRAY_ID:ARRAY_ID"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("dry run: nothing submitted"));
}

#[test]
fn hardware_shards_run_their_own_cells_and_merge_into_the_plan() {
    let pacer = pacer(&["--ttft-ms", "2", "--itl-ms", "1", "--tokens", "4"]);
    let url = pacer.addr.clone();
    let dir = project(&[("TR972.yaml", &spec(&url))]);
    let root = dir.path();
    for (h, shard) in [("cpu-a", "0/2"), ("cpu-a", "1/2"), ("h100", "0/1")] {
        let out = banterhearts(
            root,
            &["run", "TR972", "-q", "--hardware", h, "--shard", shard],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let dir = format!("TR972/shards/{h}/{}", shard.replace('/', "-of-"));
        let runs = journal(root, &dir);
        assert!(!runs.is_empty(), "{dir}");
        assert!(
            runs.iter().all(|r| r["params"]["hardware"] == h),
            "{dir} ran another hardware's cells"
        );
    }
    let out = banterhearts(root, &["merge", "TR972"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("holds 18 of 18 planned runs"),
        "{}",
        out.stdout
    );

    // Pretend the two hardware values ran on two machines: the comparison along the axis is
    // legitimate; the one along temperature pools both machines and is flagged.
    let path = root.join("data/TR972/manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for s in manifest["sessions"].as_array_mut().unwrap() {
        if s["shard"]["hardware"] == "h100" {
            s["host"]["cpu"] = Value::from("Intel Xeon Platinum 8480+");
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let audit = banterhearts(root, &["audit", "TR972", "--format", "json"]);
    let findings: Value = serde_json::from_str(&audit.stdout).unwrap();
    let provenance: Vec<String> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "provenance")
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(provenance.len(), 1, "{provenance:?}");
    assert!(
        provenance[0]
            .contains("claim `temperature_no_effect` compares runs recorded on different machines"),
        "{provenance:?}"
    );
    // Each shard's progress is in the audit.
    let shards: BTreeSet<String> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "shards")
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        shards.contains("shard h100/0-of-1: 9 of 9 runs recorded"),
        "{shards:?}"
    );
}

#[test]
fn hardware_mistakes_are_clear_errors() {
    let good = spec("127.0.0.1:9");
    let cases = [
        (
            good.replace("  hardware: [cpu-a, h100]\n", "  hardware: [cpu-a, h200]\n"),
            "hardware `h200` is not defined",
            "h100",
        ),
        (
            good.replace("  hardware: [cpu-a, h100]\n", ""),
            "no `hardware` axis says which cell runs where",
            "add `hardware: [cpu-a, h100]`",
        ),
    ];
    for (text, message, help) in cases {
        let dir = project(&[("TR972.yaml", &text)]);
        let out = banterhearts(dir.path(), &["validate"]);
        assert_eq!(out.code, 2, "{text}");
        assert!(
            out.stderr.contains(message) && out.stderr.contains(help),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("TR972.yaml:"), "{}", out.stderr);
    }
    let dir = project(&[("TR972.yaml", &good)]);
    let out = banterhearts(dir.path(), &["run", "TR972", "--hardware", "h200"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("pick one of: cpu-a, h100"),
        "{}",
        out.stderr
    );
}

/// `kubernetes-validate` from scripts/setup-kubernetes-validate (scripts/test exports it).
fn kubernetes_validate() -> String {
    let tool = std::env::var("KUBERNETES_VALIDATE").unwrap_or_default();
    assert!(
        Path::new(&tool).is_file(),
        "kubernetes-validate is missing: run `eval \"export $(scripts/setup-kubernetes-validate)\"` (scripts/test does); KUBERNETES_VALIDATE={tool:?}"
    );
    tool
}

#[test]
fn kubernetes_manifests_validate_against_the_schema() {
    let tool = kubernetes_validate();
    let dir = project(&[("TR972.yaml", &spec("127.0.0.1:9"))]);
    let root = dir.path();
    let out = banterhearts(
        root,
        &[
            "submit",
            "TR972",
            "--k8s",
            "--shards",
            "2",
            "--image",
            "ghcr.io/example/banterhearts:0.1",
            "--claim",
            "banterhearts-project",
            "--namespace",
            "bench",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("kubectl wait -n bench --for=condition=complete"),
        "{}",
        out.stdout
    );
    let jobs = root.join("data/TR972/jobs");
    for file in ["k8s-shards.yaml", "k8s-merge.yaml"] {
        let v = Command::new(&tool)
            .args(["--strict"])
            .arg(jobs.join(file))
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
    // One Indexed Job per hardware value, its shard from the completion index, on its nodes.
    let text = std::fs::read_to_string(jobs.join("k8s-shards.yaml")).unwrap();
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| yaml_serde::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    for (doc, h) in docs.iter().zip(["cpu-a", "h100"]) {
        assert_eq!(doc["spec"]["completionMode"], "Indexed");
        assert_eq!(doc["spec"]["completions"], 2);
        let pod = &doc["spec"]["template"]["spec"];
        let script = pod["containers"][0]["command"][2].as_str().unwrap();
        assert!(
            script.contains(&format!(
                "--shard \"$JOB_COMPLETION_INDEX/2\" --hardware {h}"
            )),
            "{script}"
        );
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "banterhearts-project"
        );
        assert_eq!(pod["nodeSelector"].is_object(), h == "h100");
    }
    // A manifest with a field Kubernetes does not know fails the same validation: the check
    // can fail.
    let broken = text.replacen(
        "completionMode: Indexed",
        "completionMode: Indexed\n  completionModes: Indexed",
        1,
    );
    std::fs::write(jobs.join("broken.yaml"), broken).unwrap();
    let v = Command::new(&tool)
        .args(["--strict"])
        .arg(jobs.join("broken.yaml"))
        .output()
        .unwrap();
    assert!(
        !v.status.success(),
        "an unknown field passed strict validation"
    );
}
