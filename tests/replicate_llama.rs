//! `replicate TR124` here, against launched llama-servers: the plan run again into a
//! replication data set beside the committed data, a verdict per claim (the committed figure
//! against the replication's interval), the report's Replications section and the audit's
//! findings; asked again, it runs nothing and judges the same.

mod common;

use common::{banterhearts_with_model, repo_copy, serial};

#[test]
fn replicating_tr124_gives_a_verdict_per_claim() {
    let _serial = serial();
    let dir = repo_copy();
    let root = dir.path();
    let committed = std::fs::read(root.join("data/TR124/runs.jsonl")).unwrap();
    let out = banterhearts_with_model(root, &["replicate", "TR124", "--name", "ci", "-q"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let spec = std::fs::read_to_string(root.join("experiments/TR124.yaml")).unwrap();
    let claims: Vec<&str> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("  - id: "))
        .collect();
    assert_eq!(claims.len(), 6, "{claims:?}");
    for id in &claims {
        let line = out
            .stdout
            .lines()
            .find(|l| {
                l.split_whitespace().nth(1) == Some(id) || l.split_whitespace().nth(2) == Some(id)
            })
            .unwrap_or_else(|| panic!("no verdict for {id}: {}", out.stdout));
        let verdict = line.trim_start();
        assert!(
            verdict.starts_with("consistent") && line.contains("lies inside")
                || verdict.starts_with("differs")
                    && line.contains("lies outside")
                    && line.contains("differs by"),
            "{line}"
        );
    }
    assert!(
        out.stdout.contains("30 of 30 measured runs"),
        "{}",
        out.stdout
    );
    // The original data are untouched; the replication sits beside them.
    assert_eq!(
        std::fs::read(root.join("data/TR124/runs.jsonl")).unwrap(),
        committed
    );
    let replica =
        std::fs::read_to_string(root.join("data/TR124/replications/ci/runs.jsonl")).unwrap();
    assert_eq!(replica.lines().count(), 36);

    // Asked again: nothing to run, the same verdicts (the bootstrap is seeded).
    let again = banterhearts_with_model(root, &["replicate", "TR124", "--name", "ci", "-q"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, out.stdout);

    // The report shows the verdicts, and the audit turns them into findings.
    let report = banterhearts_with_model(root, &["report", "TR124"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let md = std::fs::read_to_string(root.join("reports/TR124.md")).unwrap();
    assert!(md.contains("## Replications"), "{md}");
    assert!(md.contains("Replication `ci`: 30 of 30 measured runs"));
    for id in &claims {
        assert!(
            md.contains(&format!("| {id} | ")),
            "{id} missing from the report's table"
        );
    }
    let audit = banterhearts_with_model(root, &["audit", "TR124", "--format", "json"]);
    let findings: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    let replication: Vec<&serde_json::Value> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "replication")
        .collect();
    let differs = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("differs"))
        .count();
    assert_eq!(replication.len(), differs + 1, "{replication:?}");
    assert!(replication.iter().any(|f| {
        f["message"]
            .as_str()
            .unwrap()
            .contains("replication `ci` on")
    }));
}
