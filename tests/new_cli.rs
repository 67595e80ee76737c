//! `banterhearts new`: a starter spec, a copy, a successor; never an overwrite or an invalid file.

mod common;

use common::{banterhearts, copy_templates, project};

const BASE: &str = "# kept comment\nid: TR980\ntitle: base\nstatus: complete\nquestion: q?\nmatrix: {temperature: [0.2, 0.8]}\nrepetitions: 4\n";

#[test]
fn new_specs_are_valid_and_never_overwrite() {
    let dir = project(&[("TR980.yaml", BASE)]);
    copy_templates(dir.path());
    let root = dir.path();

    let out = banterhearts(root, &["new", "TR981"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let starter = std::fs::read_to_string(root.join("experiments/TR981.yaml")).unwrap();
    assert!(
        starter.contains("id: TR981\n") && !starter.contains("{{ id }}"),
        "{starter}"
    );
    let plan = banterhearts(root, &["plan", "TR981"]);
    assert!(
        plan.stdout
            .contains("2 cells x 3 repetitions = 6 measured runs"),
        "{}",
        plan.stdout
    );

    let again = banterhearts(root, &["new", "TR981"]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("TR981 already exists"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(root.join("experiments/TR981.yaml")).unwrap(),
        starter,
        "untouched"
    );

    assert_eq!(
        banterhearts(root, &["new", "TR982", "--from", "TR980"]).code,
        0
    );
    let copy = std::fs::read_to_string(root.join("experiments/TR982.yaml")).unwrap();
    assert_eq!(
        copy,
        BASE.replace("id: TR980", "id: TR982")
            .replace("status: complete", "status: planned")
    );

    let out = banterhearts(
        root,
        &[
            "new",
            "TR980_v2",
            "--supersedes",
            "TR980",
            "--reason",
            "four repetitions were too few",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v2 = std::fs::read_to_string(root.join("experiments/TR980_v2.yaml")).unwrap();
    assert!(
        v2.contains(
            "status: planned\nsupersedes: {id: TR980, reason: \"four repetitions were too few\"}\n"
        ),
        "{v2}"
    );
    let listed = banterhearts(root, &["validate"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("superseded by TR980_v2"),
        "{}",
        listed.stdout
    );

    let twice = banterhearts(
        root,
        &["new", "TR980_v3", "--supersedes", "TR980", "--reason", "x"],
    );
    assert_eq!(twice.code, 2);
    assert!(
        twice
            .stderr
            .contains("TR980 is already superseded by TR980_v2")
            && twice.stderr.contains("--supersedes TR980_v2"),
        "{}",
        twice.stderr
    );
    assert!(!root.join("experiments/TR980_v3.yaml").exists());

    for (args, message) in [
        (vec!["new", "../x"], "`../x` is not a TR id"),
        (vec!["new", "TR983", "--from", "TR999"], "no TR `TR999`"),
    ] {
        let out = banterhearts(root, &args);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains(message), "{}", out.stderr);
    }
}
