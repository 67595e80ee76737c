//! Every malformed spec in tests/specs/invalid must fail validation with exit code 2 and the
//! message, location, field and help recorded in its `expected` file, and say nothing that
//! its `absent` file lists.

mod common;

use common::{banterhearts, repo_root};

#[test]
fn every_malformed_spec_fails_with_its_expected_message() {
    let corpus = repo_root().join("tests/specs/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(case.join("expected"))
            .unwrap_or_else(|_| panic!("{name}: no expected file"));
        let out = banterhearts(case, &["validate"]);
        if out.code != 2 {
            failures.push(format!(
                "{name}: exit code {} (want 2)\n{}",
                out.code, out.stderr
            ));
        }
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !out.stderr.contains(line) {
                failures.push(format!("{name}: stderr lacks {line:?}\n{}", out.stderr));
            }
        }
        // What must not be said: a second error that follows from the first.
        let absent = std::fs::read_to_string(case.join("absent")).unwrap_or_default();
        for line in absent.lines().filter(|l| !l.trim().is_empty()) {
            if out.stderr.contains(line) {
                failures.push(format!("{name}: stderr has {line:?}\n{}", out.stderr));
            }
        }
        assert!(
            !out.stderr.contains("panicked"),
            "{name} panicked:\n{}",
            out.stderr
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn validating_one_broken_file_by_path_reports_it() {
    let case = repo_root().join("tests/specs/invalid/unknown_field");
    let file = case.join("experiments/TR901.yaml");
    let out = banterhearts(&case, &["validate", file.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("did you mean `title`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn plan_of_a_broken_spec_shows_its_errors() {
    let case = repo_root().join("tests/specs/invalid/exclude_matches_nothing");
    let out = banterhearts(&case, &["plan", "TR901"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("exclude matches no cell"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}
