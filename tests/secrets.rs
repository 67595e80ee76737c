//! An API key given through `api_key_env` is sent and never written: a key is planted, real
//! llama-servers are launched requiring it, a TR is run, analysed, reported and audited, and
//! every file under the project and every line the tool printed is searched for it; then the
//! paths that fail (a wrong key, a server that cannot start) are searched the same way.

mod common;

use std::path::Path;

use common::{Output, banterhearts_with_model_env, copy_templates, files, project};

/// Keys no file would contain by chance.
const KEY: &str = "bh-planted-key-7f3a9c2e51d84b06";
const SERVER_KEY: &str = "bh-planted-server-key-0c9e4b7a2d";

const SPEC: &str = r#"id: TR982
title: Secrets stay secret
status: running
question: Does an API key ever reach a file the tool writes?
backends:
  native:
    kind: llama-cpp
    api_key_env: BH_PLANTED_KEY
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "512", "-t", "2", "--api-key", "${BH_SERVER_KEY}"]}
  chat:
    kind: openai
    api_key_env: BH_PLANTED_KEY
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "512", "-t", "2", "--api-key", "${BH_SERVER_KEY}"]}
workload: {prompts: ["Name a colour."], max_tokens: 8, ignore_eos: true}
matrix:
  backend: [native, chat]
  scenario: [{kind: single}, {kind: load, rate: 4, arrival: constant, duration_s: 0.5}]
repetitions: 2
"#;

fn run(root: &Path, args: &[&str], key: &str, server_key: &str) -> Output {
    banterhearts_with_model_env(
        root,
        args,
        &[
            ("BH_PLANTED_KEY", Path::new(key)),
            ("BH_SERVER_KEY", Path::new(server_key)),
        ],
    )
}

/// Every file under `root` and every output that contains one of the keys.
fn leaks(root: &Path, outputs: &[(&str, &Output)]) -> Vec<String> {
    let mut found = Vec::new();
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    for key in [KEY, SERVER_KEY] {
        for (path, bytes) in files(root) {
            if !path.starts_with("experiments") && contains(&bytes, key) {
                found.push(format!("{path} holds {key}"));
            }
        }
        for (what, out) in outputs {
            if out.stdout.contains(key) || out.stderr.contains(key) {
                found.push(format!("`{what}` printed {key}"));
            }
        }
    }
    found
}

#[test]
fn a_planted_api_key_is_sent_but_never_written_or_printed() {
    let _serial = common::serial();
    let dir = project(&[("TR982.yaml", SPEC)]);
    copy_templates(dir.path());
    let root = dir.path();
    let run_out = run(root, &["run", "TR982"], KEY, KEY);
    // The servers require the key, so runs that finished prove it was sent.
    let records = common::journal(root, "TR982");
    assert_eq!(records.len(), 8);
    common::assert_ran_but_for_client_lateness(&run_out, &records);
    let analyze = run(root, &["analyze", "TR982"], KEY, KEY);
    assert_eq!(analyze.code, 0, "{}", analyze.stderr);
    let report = run(root, &["report", "TR982"], KEY, KEY);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let audit = run(root, &["audit", "TR982"], KEY, KEY);
    let written = files(root);
    assert!(
        written.keys().any(|p| p.starts_with("data/TR982/logs/"))
            && written
                .keys()
                .any(|p| p.starts_with("data/TR982/requests/"))
            && written.keys().any(|p| p.starts_with("reports/")),
        "the search covers server logs, request files and reports: {:?}",
        written.keys().collect::<Vec<_>>()
    );

    // The failing paths: the server wants another key; a server that cannot start (its log's
    // tail goes into the error).
    let wrong = project(&[("TR982.yaml", SPEC)]);
    let refused = run(wrong.path(), &["run", "TR982"], KEY, SERVER_KEY);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let broken = project(&[(
        "TR982.yaml",
        &SPEC.replace(
            r#""${BH_SERVER_KEY}"]}
workload"#,
            r#""${BH_SERVER_KEY}", "--no-such-flag"]}
workload"#,
        ),
    )]);
    let failed = run(broken.path(), &["run", "TR982"], KEY, KEY);
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    assert!(failed.stderr.contains("no-such-flag"), "{}", failed.stderr);

    let mut found = leaks(
        root,
        &[
            ("run", &run_out),
            ("analyze", &analyze),
            ("report", &report),
            ("audit", &audit),
        ],
    );
    found.extend(leaks(wrong.path(), &[("run with the wrong key", &refused)]));
    found.extend(leaks(
        broken.path(),
        &[("run with a broken server", &failed)],
    ));
    assert!(found.is_empty(), "{found:#?}");
    let searched = written.len() + files(wrong.path()).len() + files(broken.path()).len();
    common::reliability(
        "an API key planted in `api_key_env` (and the launched servers' `--api-key`), searched for in every file written and every line printed",
        searched,
        "sent with every request (the servers required it); found in no journal, manifest, log, request file, report or error message",
        "nothing",
    );
}
