//! `banterhearts schema` emits a JSON Schema that accepts every spec in experiments/ and
//! rejects what validation rejects at the shape level.

mod common;

use common::{banterhearts, repo_root};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let out = banterhearts(&repo_root(), &["schema"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let schema: Value = serde_json::from_str(&out.stdout).unwrap();
    jsonschema::validator_for(&schema).expect("the schema itself is valid")
}

fn yaml_to_json(text: &str) -> Value {
    yaml_serde::from_str(text).unwrap()
}

#[test]
fn every_repository_spec_conforms_to_the_schema() {
    let validator = schema();
    let dir = repo_root().join("experiments");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc = yaml_to_json(&std::fs::read_to_string(&path).unwrap());
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {}",
            path.display(),
            errors.join("; ")
        );
        checked += 1;
    }
    assert!(checked > 0, "no specs under experiments/");
}

#[test]
fn schema_rejects_unknown_fields_bad_orders_and_negative_counts() {
    let validator = schema();
    let base = "id: TR1\ntitle: t\nstatus: planned\nquestion: q\n";
    assert!(validator.is_valid(&yaml_to_json(base)));
    for bad in [
        "titel: x\n",
        "order: shuffled\n",
        "repetitions: -3\n",
        "matrix: {a: []}\n",
        "warmup: -1\n",
    ] {
        assert!(
            !validator.is_valid(&yaml_to_json(&format!("{base}{bad}"))),
            "schema accepted {bad:?}"
        );
    }
    let superseded = base.replace("status: planned", "status: superseded");
    assert!(
        !validator.is_valid(&yaml_to_json(&superseded)),
        "schema accepted a declared superseded status"
    );
}
