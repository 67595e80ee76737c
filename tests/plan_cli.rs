//! `banterhearts plan` and `validate` on real spec files.

mod common;

use common::{banterhearts, project, repo_root};
use serde_json::Value;

const SWEEP: &str = r#"id: TR900
title: Temperature and top-k sweep
status: planned
question: How do temperature and top-k move decode throughput?
backends:
  llama:
    kind: llama-cpp
    launch: {count: 2, args: ["-m", "${BANTERHEARTS_MODEL}"]}
workload: {prompts: ["Say hello."], max_tokens: 32, seed: 42}
matrix:
  temperature: [0.6, 0.8, 1.0]
  top_k: [512, 1024]
  scenario: [{kind: single}, {kind: concurrent, agents: 2, placement: server-per-agent}]
  exclude:
    - {temperature: 0.6, top_k: 512, scenario: {kind: single}}
  include:
    - {temperature: 1.2, top_k: 2048, scenario: {kind: single}}
repetitions: 5
warmup: 1
"#;

fn plan_json(root: &std::path::Path) -> Value {
    let out = banterhearts(root, &["plan", "TR900", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("plan --format json prints JSON")
}

fn run_ids(plan: &Value) -> Vec<String> {
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_by_two_by_two_minus_one_plus_one_is_twelve_cells() {
    let dir = project(&[("TR900.yaml", SWEEP)]);
    let out = banterhearts(dir.path(), &["plan", "TR900"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("12 cells x 5 repetitions = 60 measured runs (+12 warm-up runs)"),
        "{}",
        out.stdout
    );

    let plan = plan_json(dir.path());
    let cells = plan["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 12);
    let labels: Vec<&str> = cells.iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert!(
        !labels.contains(&"temperature=0.6 top_k=512 scenario={kind: single}"),
        "excluded cell present"
    );
    assert_eq!(
        labels[11], "temperature=1.2 top_k=2048 scenario={kind: single}",
        "included cell goes last"
    );
    let runs = plan["runs"].as_array().unwrap();
    assert_eq!(runs.iter().filter(|r| r["warmup"] == false).count(), 60);
    for cell in 0..12 {
        let reps = runs
            .iter()
            .filter(|r| r["cell"] == cell && r["warmup"] == false)
            .count();
        assert_eq!(reps, 5, "cell {cell}");
    }
    let mut ids = run_ids(&plan);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 72, "run ids are unique");
}

#[test]
fn run_ids_survive_reinvocation_and_unrelated_edits() {
    let dir = project(&[("TR900.yaml", SWEEP)]);
    let first = plan_json(dir.path());
    let second = plan_json(dir.path());
    assert_eq!(first, second, "two invocations give the same plan");

    let edited = SWEEP
        .replace(
            "title: Temperature and top-k sweep",
            "title: A different title",
        )
        .replace("question: How", "question: Really, how");
    std::fs::write(dir.path().join("experiments/TR900.yaml"), edited).unwrap();
    assert_eq!(
        run_ids(&plan_json(dir.path())),
        run_ids(&first),
        "title edits keep ids and order"
    );

    // Adding a value to an axis adds runs but keeps every existing id.
    let grown = SWEEP.replace("top_k: [512, 1024]", "top_k: [512, 1024, 4096]");
    std::fs::write(dir.path().join("experiments/TR900.yaml"), grown).unwrap();
    let grown_ids = run_ids(&plan_json(dir.path()));
    assert!(run_ids(&first).iter().all(|id| grown_ids.contains(id)));
    assert!(grown_ids.len() > first["runs"].as_array().unwrap().len());
}

#[test]
fn unknown_tr_suggests_the_closest() {
    let dir = project(&[("TR900.yaml", SWEEP)]);
    let out = banterhearts(dir.path(), &["plan", "TR909"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no TR `TR909`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `TR900`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn plan_accepts_a_spec_path() {
    let dir = project(&[("TR900.yaml", SWEEP)]);
    let out = banterhearts(dir.path(), &["plan", "experiments/TR900.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("TR900: Temperature and top-k sweep"));
}

#[test]
fn validate_lists_derived_supersession() {
    let old = SWEEP.replace("id: TR900", "id: TR901");
    let new = SWEEP.replace("id: TR900", "id: TR901_v2").replace(
        "status: planned",
        "status: complete\nsupersedes: {id: TR901, reason: more repetitions}",
    );
    let dir = project(&[("TR901.yaml", &old), ("TR901_v2.yaml", &new)]);
    let out = banterhearts(dir.path(), &["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("TR901 ") && out.stdout.contains("superseded by TR901_v2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("2 spec(s) valid"));
}

#[test]
fn repository_specs_are_valid() {
    let out = banterhearts(&repo_root(), &["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn empty_project_is_an_input_error() {
    let dir = project(&[]);
    let out = banterhearts(dir.path(), &["validate"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no specs found"), "{}", out.stderr);
}

/// The seed catalogue's stated matrices plan exactly the run totals the seed states.
#[test]
fn catalogue_plans_match_the_seed_run_counts() {
    let root = common::repo_root();
    for (tr, cells, runs) in [
        ("TR110", 30, 150),
        ("TR111_v2", 19, 57),
        ("TR112_v2", 37, 111),
        ("TR114_v2", 27, 135),
        ("TR115_v2", 30, 150),
        ("TR116", 12, 60),
        ("TR119", 50, 350),
    ] {
        let out = banterhearts(&root, &["plan", tr, "--format", "json"]);
        assert_eq!(out.code, 0, "{tr}: {}", out.stderr);
        let plan: Value = serde_json::from_str(&out.stdout).unwrap();
        let measured = plan["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["warmup"] == false)
            .count();
        assert_eq!(
            (plan["cells"].as_array().unwrap().len(), measured),
            (cells, runs),
            "{tr}"
        );
    }
}

/// A claim over cells that differ in an axis pools them: validation says so, with the place,
/// and stays quiet once the claim says `pool: true`.
#[test]
fn a_claim_pooling_cells_is_a_warning_until_it_says_so() {
    let claim = "claims:\n  - id: fast\n    metric: decode_tok_s\n    where: {scenario: {kind: single}}\n    assert: \"mean > 10\"\n";
    let dir = project(&[("TR900.yaml", &format!("{SWEEP}{claim}"))]);
    let out = banterhearts(dir.path(), &["validate"]);
    assert_eq!(
        out.code, 0,
        "a warning does not fail validation: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("warning: claim `fast` pools cells that differ in temperature (0.6, 0.8, 1.0, 1.2) and top_k (1024, 512, 2048)")
            && out.stderr.contains("TR900.yaml:21:5")
            && out.stderr.contains("add `pool: true` if pooling is meant"),
        "{}",
        out.stderr
    );
    let pooled = claim.replace("    assert:", "    pool: true\n    assert:");
    let dir = project(&[("TR900.yaml", &format!("{SWEEP}{pooled}"))]);
    let out = banterhearts(dir.path(), &["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}
