//! `banterhearts report` and `index` on temp projects: supersession banners, the index, template
//! errors, and byte-identical regeneration of the repository's own committed reports.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{banterhearts, copy_dir, copy_templates, files, project, repo_root};

const OLD: &str = r#"id: TR980
title: First try
phase: "Phase 1: Basics"
status: complete
question: Is the first measurement right?
matrix: {temperature: [0.2, 0.8]}
repetitions: 3
report: {key_finding: "Two temperatures, {{ method.measured_runs }} runs planned."}
"#;

const NEW: &str = r#"id: TR981
title: Second try
phase: "Phase 1: Basics"
status: complete
question: Is the second measurement right?
supersedes: {id: TR980, reason: "the first used too few repetitions"}
matrix: {temperature: [0.2, 0.8], max_tokens: [32, 64]}
repetitions: 5
"#;

const PLANNED: &str = r#"id: TR982
title: Later work
phase: "Phase 2: Next"
status: planned
question: What comes next?
"#;

/// Sets every file's modification time under `dir` to `when`.
fn touch_all(dir: &Path, when: SystemTime) {
    for rel in files(dir).keys() {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(rel))
            .unwrap();
        file.set_modified(when).unwrap();
    }
}

#[test]
fn superseded_report_has_a_banner_and_its_successor_says_what_changed() {
    let dir = project(&[
        ("TR980.yaml", OLD),
        ("TR981.yaml", NEW),
        ("TR982.yaml", PLANNED),
    ]);
    copy_templates(dir.path());
    let out = banterhearts(dir.path(), &["report", "--all"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let old = std::fs::read_to_string(dir.path().join("reports/TR980.md")).unwrap();
    assert!(
        old.contains(
            "**Superseded by [TR981](TR981.md).** Reason: the first used too few repetitions."
        ),
        "{old}"
    );
    assert!(old.contains("**Status:** superseded by TR981"), "{old}");
    assert!(
        old.contains("No runs are recorded for this report yet"),
        "{old}"
    );

    let new = std::fs::read_to_string(dir.path().join("reports/TR981.md")).unwrap();
    assert!(!new.contains("Superseded by"), "{new}");
    assert!(new.contains("## What changed since TR980"), "{new}");
    assert!(
        new.contains("because: the first used too few repetitions."),
        "{new}"
    );
    assert!(
        new.contains("| cells | 2 | 4 |") && new.contains("| repetitions per cell | 3 | 5 |"),
        "{new}"
    );

    let index = std::fs::read_to_string(dir.path().join("reports/README.md")).unwrap();
    assert!(
        index
            .contains("**3 reports**: 1 current, 1 superseded, 1 planned; 26 measured runs in all"),
        "{index}"
    );
    assert!(
        index.contains("| [TR981](TR981.md) | Second try | complete | – |"),
        "{index}"
    );
    assert!(index.contains("| [TR980](TR980.md) | TR981 | the first used too few repetitions | Two temperatures, 6 runs planned. |"), "{index}");
    assert!(
        index.contains("| [TR982](TR982.md) | Later work | What comes next? |"),
        "{index}"
    );
    assert!(
        index.contains("- **Phase 1: Basics**: TR980 (superseded by TR981), TR981 (complete)"),
        "{index}"
    );
    assert!(
        index.contains("| TR981 | 20 | matrix |")
            && index.contains("| TR982 | – | no count stated |"),
        "{index}"
    );
    assert!(index.contains("TR980 -->|superseded by| TR981"), "{index}");

    // `index` alone renders the same index.
    std::fs::remove_file(dir.path().join("reports/README.md")).unwrap();
    assert_eq!(banterhearts(dir.path(), &["index"]).code, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("reports/README.md")).unwrap(),
        index
    );
}

#[test]
fn a_template_error_names_the_template_file_and_line_and_keeps_the_old_report() {
    let dir = project(&[("TR980.yaml", OLD)]);
    copy_templates(dir.path());
    assert_eq!(banterhearts(dir.path(), &["report", "TR980"]).code, 0);
    let before = std::fs::read(dir.path().join("reports/TR980.md")).unwrap();

    std::fs::write(
        dir.path().join("templates/broken.md.j2"),
        "# {{ tr.id }}\n\nAsked: {{ tr.question }}\n{{ tr.questoin }}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("experiments/TR980.yaml"),
        OLD.replace("report: {", "report: {template: broken.md.j2, "),
    )
    .unwrap();
    let out = banterhearts(dir.path(), &["report", "TR980"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("templates/broken.md.j2:4"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("template error") && out.stderr.contains("undefined"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(dir.path().join("reports/TR980.md")).unwrap(),
        before,
        "old report kept"
    );

    // A template that does not exist is named, with what to do.
    std::fs::write(
        dir.path().join("experiments/TR980.yaml"),
        OLD.replace("report: {", "report: {template: missing.md.j2, "),
    )
    .unwrap();
    let out = banterhearts(dir.path(), &["report", "TR980"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("templates/missing.md.j2") && out.stderr.contains("report.template"),
        "{}",
        out.stderr
    );
}

/// The committed reports are exactly what `report --all` renders from the committed specs,
/// data and templates (the `git diff --exit-code reports/` check, without git), twice, and
/// again after every input's file time changes.
#[test]
fn committed_reports_regenerate_byte_for_byte_even_after_touching_file_times() {
    let repo = repo_root();
    let committed = files(&repo.join("reports"));
    assert!(
        committed.contains_key("TR124.md") && committed.contains_key("README.md"),
        "committed reports: {:?}",
        committed.keys()
    );

    let dir = tempfile::tempdir().unwrap();
    for sub in ["experiments", "data", "templates"] {
        copy_dir(&repo.join(sub), &dir.path().join(sub));
    }
    let render = || {
        let out = banterhearts(dir.path(), &["report", "--all"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        files(&dir.path().join("reports"))
    };
    let first = render();
    let diff: Vec<&String> = committed
        .keys()
        .chain(first.keys())
        .filter(|k| committed.get(*k) != first.get(*k))
        .collect();
    assert!(
        diff.is_empty(),
        "reports differ from the committed ones: {diff:?} (run `banterhearts report --all` and commit)"
    );

    let later = SystemTime::now() + Duration::from_secs(3600);
    for sub in ["experiments", "data", "templates"] {
        touch_all(&dir.path().join(sub), later);
    }
    assert_eq!(render(), first, "file times changed the output");
}

/// Damaged provenance or data stop a report with the file, line and what to do, and change
/// nothing: a manifest that cannot be read is never taken for an empty one (the next run would
/// write over earlier sessions), and an index never counts a damaged journal as no runs.
#[test]
fn a_damaged_manifest_or_journal_is_named_and_left_as_it_was() {
    let dir = common::repo_copy();
    let data = dir.path().join("data/TR124");
    let manifest = std::fs::read_to_string(data.join("manifest.json")).unwrap();
    let damaged = manifest.replacen('{', "{\n  // a note", 1);
    std::fs::write(data.join("manifest.json"), &damaged).unwrap();
    let out = banterhearts(dir.path(), &["report", "TR124"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("manifest.json:2:3") && out.stderr.contains("move it aside"),
        "{}",
        out.stderr
    );
    let audit = banterhearts(dir.path(), &["audit", "TR124"]);
    assert!(
        audit.stdout.contains("unreadable manifest"),
        "{}{}",
        audit.stdout,
        audit.stderr
    );
    assert_eq!(
        std::fs::read_to_string(data.join("manifest.json")).unwrap(),
        damaged
    );
    std::fs::write(data.join("manifest.json"), manifest).unwrap();

    let journal = std::fs::read_to_string(data.join("runs.jsonl")).unwrap();
    let mut lines: Vec<&str> = journal.lines().collect();
    lines[1] = "{\"run_id\": ";
    std::fs::write(data.join("runs.jsonl"), lines.join("\n") + "\n").unwrap();
    let index_before = std::fs::read(dir.path().join("reports/README.md")).unwrap();
    let out = banterhearts(dir.path(), &["index"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("runs.jsonl:2") && out.stderr.contains("move the line aside"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(dir.path().join("reports/README.md")).unwrap(),
        index_before
    );
}
