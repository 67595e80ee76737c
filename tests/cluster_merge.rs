//! Shards and `merge` against the pacer (a real HTTP server on an exact schedule): the shards
//! of a plan merge into exactly the unsharded plan, every run once with its shard's
//! provenance; merging again changes nothing; and merge refuses what would corrupt the data
//! (a run recorded twice with different content, shards of another spec version, a run the
//! plan does not have, a shard still running), naming the places and writing nothing.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{
    Pacer, assert_ran_but_for_client_lateness, banterhearts, files, pacer, plan_run_ids, project,
};
use serde_json::Value;

fn fast_pacer() -> Pacer {
    pacer(&["--ttft-ms", "2", "--itl-ms", "1", "--tokens", "4"])
}

/// Three agent cells and three load cells, two repetitions and a warm-up each.
fn spec(url: &str, title: &str) -> String {
    format!(
        "id: TR970\ntitle: {title}\nstatus: running\nquestion: do shards merge back into the plan?\nbackends:\n  pacer: {{kind: openai, server: llama-server, model: pacer, endpoints: [\"http://{url}\"]}}\nworkload: {{prompts: [a, b, c], max_tokens: 4}}\nmatrix:\n  scenario: [{{kind: single}}, {{kind: load, rate: 20, arrival: constant, duration_s: 0.3, warmup_s: 0.1}}]\n  temperature: [0.2, 0.5, 0.8]\nrepetitions: 2\nwarmup: 1\n"
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs one shard; returns its journal.
fn run_shard(root: &Path, shard: &str, by: &str) -> Vec<Value> {
    let out = banterhearts(
        root,
        &["run", "TR970", "-q", "--shard", shard, "--shard-by", by],
    );
    let (i, n) = shard.split_once('/').unwrap();
    let suffix = if by == "run" { "-by-run" } else { "" };
    let journal = lines(&root.join(format!("data/TR970/shards/{i}-of-{n}{suffix}/runs.jsonl")));
    assert_ran_but_for_client_lateness(&out, &journal);
    journal
}

#[test]
fn shards_merge_into_the_plan_each_run_once_and_merging_again_changes_nothing() {
    let p = fast_pacer();
    for by in ["cell", "run"] {
        let dir = project(&[("TR970.yaml", &spec(&p.addr, "merge"))]);
        let root = dir.path();
        let shard_runs: Vec<Vec<Value>> = ["0/3", "1/3", "2/3"]
            .iter()
            .map(|shard| run_shard(root, shard, by))
            .collect();
        if by == "cell" {
            // No cell is split between shards.
            for (i, a) in shard_runs.iter().enumerate() {
                for b in &shard_runs[i + 1..] {
                    let cells = |rs: &[Value]| -> BTreeSet<String> {
                        rs.iter()
                            .map(|r| r["cell_id"].as_str().unwrap().to_owned())
                            .collect()
                    };
                    assert!(cells(a).is_disjoint(&cells(b)));
                }
            }
        }
        let out = banterhearts(root, &["merge", "TR970"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stdout.contains("holds 18 of 18 planned runs"),
            "{}",
            out.stdout
        );
        let merged = lines(&root.join("data/TR970/runs.jsonl"));
        let ids: Vec<String> = merged
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), unique.len(), "a run merged twice");
        assert_eq!(
            unique,
            plan_run_ids(root, "TR970"),
            "the merged runs are the unsharded plan"
        );
        // Each run keeps its shard's provenance: its session is the shard's, renumbered.
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("data/TR970/manifest.json")).unwrap(),
        )
        .unwrap();
        let sessions = manifest["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 3);
        for r in &merged {
            let s = sessions
                .iter()
                .find(|s| s["id"] == r["session"])
                .expect("the run's session is listed");
            let from = s["merged_from"]["shard"].as_str().unwrap();
            let shard = from.split('-').next().unwrap().parse::<usize>().unwrap();
            assert!(
                shard_runs[shard].iter().any(|x| x["run_id"] == r["run_id"]),
                "{from}"
            );
            assert_eq!(s["shard"]["count"], 3);
            assert!(s["host"]["cpu"].is_string() && s["servers"].is_array());
            // A load run's requests came along, byte for byte.
            if let Some(file) = r["load"]["requests_file"].as_str() {
                let here = std::fs::read(root.join("data/TR970").join(file)).unwrap();
                let there =
                    std::fs::read(root.join(format!("data/TR970/shards/{from}")).join(file))
                        .unwrap();
                assert_eq!(here, there);
            }
        }
        // The merged data analyse like unsharded data.
        let out = banterhearts(root, &["analyze", "TR970"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        // Idempotent: a second merge writes nothing.
        let before = files(&root.join("data/TR970"));
        let out = banterhearts(root, &["merge", "TR970"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("nothing new"), "{}", out.stdout);
        assert_eq!(files(&root.join("data/TR970")), before);
        // The plan shows each shard's progress.
        let out = banterhearts(root, &["plan", "TR970"]);
        assert!(
            out.stdout.contains(&format!(
                "2-of-3{}",
                if by == "run" { "-by-run" } else { "" }
            )),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn merge_refuses_conflicts_other_spec_versions_and_runs_outside_the_plan() {
    let p = fast_pacer();
    let dir = project(&[("TR970.yaml", &spec(&p.addr, "merge"))]);
    let root = dir.path();
    run_shard(root, "0/2", "cell");
    run_shard(root, "1/2", "cell");
    let data = root.join("data/TR970");
    let unchanged = |root: &Path| {
        assert!(
            !root.join("data/TR970/runs.jsonl").exists()
                || lines(&root.join("data/TR970/runs.jsonl")).is_empty(),
            "a refused merge wrote runs"
        );
    };

    // A run recorded in two shards with different measurements.
    let shard0 = data.join("shards/0-of-2/runs.jsonl");
    let shard1 = data.join("shards/1-of-2/runs.jsonl");
    let original1 = std::fs::read_to_string(&shard1).unwrap();
    let mut copied: Value = lines(&shard0)[0].clone();
    let run_id = copied["run_id"].as_str().unwrap().to_owned();
    copied["started_unix_ms"] = Value::from(copied["started_unix_ms"].as_u64().unwrap() + 1);
    std::fs::write(&shard1, format!("{original1}{copied}\n")).unwrap();
    let out = banterhearts(root, &["merge", "TR970"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "run {run_id} is recorded twice with different measurements"
        )),
        "{}",
        out.stderr
    );
    let n1 = original1.lines().count() + 1;
    assert!(
        out.stderr
            .contains(&format!("shards/1-of-2/runs.jsonl:{n1}:1")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("shards/0-of-2/runs.jsonl:1"),
        "{}",
        out.stderr
    );
    unchanged(root);

    // The same run with the same content in two shards is kept once.
    let same = lines(&shard0)[0].clone();
    std::fs::write(&shard1, format!("{original1}{same}\n")).unwrap();
    let out = banterhearts(root, &["merge", "TR970"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let merged = lines(&data.join("runs.jsonl"));
    assert_eq!(
        merged
            .iter()
            .filter(|r| r["run_id"] == same["run_id"])
            .count(),
        1
    );
    assert_eq!(merged.len(), 18);
    std::fs::write(&shard1, &original1).unwrap();

    // Shards from two versions of the spec.
    let dir = project(&[("TR970.yaml", &spec(&p.addr, "merge"))]);
    let root = dir.path();
    run_shard(root, "0/2", "cell");
    std::fs::write(
        root.join("experiments/TR970.yaml"),
        spec(&p.addr, "merge, retitled"),
    )
    .unwrap();
    run_shard(root, "1/2", "cell");
    let out = banterhearts(root, &["merge", "TR970"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("different versions of the spec"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("shard 0-of-2") && out.stderr.contains("shard 1-of-2"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("shards/1-of-2/manifest.json"),
        "{}",
        out.stderr
    );
    unchanged(root);

    // A run the plan does not have (the matrix lost a value after the shard ran).
    let dir = project(&[("TR970.yaml", &spec(&p.addr, "merge"))]);
    let root = dir.path();
    run_shard(root, "0/1", "cell");
    let narrowed = spec(&p.addr, "merge").replace("[0.2, 0.5, 0.8]", "[0.2, 0.5]");
    std::fs::write(root.join("experiments/TR970.yaml"), narrowed).unwrap();
    let out = banterhearts(root, &["merge", "TR970"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is not in TR970's plan"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("shards/0-of-1/runs.jsonl:"),
        "{}",
        out.stderr
    );
    unchanged(root);
}

#[test]
fn bad_shard_arguments_are_clear_errors() {
    let dir = project(&[("TR970.yaml", &spec("127.0.0.1:9", "merge"))]);
    for bad in ["2/2", "x", "1/0"] {
        let out = banterhearts(dir.path(), &["run", "TR970", "--shard", bad]);
        assert_eq!(out.code, 2, "{bad}");
        assert!(out.stderr.contains("INDEX/COUNT"), "{}", out.stderr);
    }
    let out = banterhearts(dir.path(), &["run", "TR970", "--hardware", "h100"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("has no `hardware` axis"),
        "{}",
        out.stderr
    );
    let out = banterhearts(dir.path(), &["merge", "TR970"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("has no shards to merge"),
        "{}",
        out.stderr
    );
}
