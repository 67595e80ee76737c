//! Agent programs (`scenario: {kind: command}`) and how the runner copes with bad ones: a
//! malformed metrics line, a program that hangs, one that crashes and leaves a child behind.
//! The programs here are small shell scripts; the reference agents against a real llama-server
//! are exercised in runner_llama.rs.

mod common;

use std::path::Path;

use common::{banterhearts, journal, project};
use serde_json::Value;

const REQUEST: &str =
    r#"{"event": "request", "step": "only", "ttft_ms": 10, "e2e_ms": 20, "output_tokens": 5}"#;

fn spec(agents: &str, scenario: &str) -> String {
    format!(
        "id: TR970\ntitle: programs\nstatus: running\nquestion: do bad programs get caught?\nagents:\n{agents}\nmatrix:\n  scenario: [{scenario}]\nrepetitions: 1\n"
    )
}

fn script(root: &Path, name: &str, body: &str) {
    std::fs::write(root.join(name), format!("#!/bin/sh\n{body}\n")).unwrap();
}

fn only_agent(root: &Path) -> Value {
    let records = journal(root, "TR970");
    assert_eq!(records.len(), 1);
    records[0]["agents"][0].clone()
}

/// Running, as opposed to gone or a zombie waiting for a parent that may never reap it.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rfind(')')
                .map(|i| stat[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Runs one command-scenario run of `body` (a shell script) with the given agent options in a
/// temp project; returns the project, the exit code and how long `run` took.
fn run_script(body: &str, options: &str) -> (tempfile::TempDir, i32, f64) {
    let dir = project(&[]);
    script(dir.path(), "agent.sh", body);
    let agents = format!("  prog: {{command: [sh, agent.sh]{options}}}");
    std::fs::write(
        dir.path().join("experiments/TR970.yaml"),
        spec(&agents, "{kind: command}"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let code = banterhearts(dir.path(), &["run", "TR970", "--quiet"]).code;
    (dir, code, started.elapsed().as_secs_f64())
}

#[test]
fn a_malformed_metrics_line_degrades_the_run_and_is_quoted() {
    let (dir, code, _) = run_script(
        &format!("echo '{{\"event\": \"ready\"}}'\necho 'progress: 50%'\necho '{REQUEST}'"),
        "",
    );
    assert_eq!(code, 1, "degraded runs exit 1");
    let agent = only_agent(dir.path());
    assert_eq!(agent["status"], "degraded");
    let reason = agent["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("malformed metrics line 2: `progress: 50%`: "),
        "{reason}"
    );
    assert_eq!(
        agent["requests"].as_array().unwrap().len(),
        1,
        "the valid line after it is still read"
    );
    assert_eq!(agent["exit"], "exit 0");
}

#[test]
fn a_hanging_program_is_killed_at_its_timeout() {
    let (dir, code, took) =
        run_script("echo '{\"event\": \"ready\"}'\nsleep 600", ", timeout_s: 1");
    assert_eq!(code, 1);
    assert!(took < 20.0, "the runner did not wait for the program");
    let agent = only_agent(dir.path());
    assert_eq!(
        agent["reason"],
        "timed out after 1 s; the program was killed"
    );
    assert_eq!(agent["exit"], "killed at timeout");
    let wall = agent["e2e_ms"].as_f64().unwrap();
    // Killed after its 1 s, long before its 600 s sleep; the margin is for a loaded machine.
    assert!((1000.0..15000.0).contains(&wall), "wall {wall}");
}

#[test]
fn a_program_that_never_stops_printing_is_still_killed_at_its_timeout() {
    let (dir, code, took) = run_script(
        "while :; do echo '{\"event\": \"ready\"}'; done",
        ", timeout_s: 1",
    );
    assert_eq!(code, 1);
    assert!(took < 20.0, "the timeout holds while output flows");
    assert_eq!(only_agent(dir.path())["exit"], "killed at timeout");
}

#[test]
fn a_crashing_program_leaves_no_orphans_and_says_why() {
    // The child inherits stdout, so the runner cannot wait for end of output alone.
    let (dir, code, took) = run_script(
        &format!(
            "sleep 600 &\necho $! > child.pid\necho '{REQUEST}'\necho 'Traceback: something broke' >&2\nexit 3"
        ),
        ", timeout_s: 30",
    );
    assert_eq!(code, 1);
    assert!(took < 15.0, "a child holding stdout must not stall the run");
    let agent = only_agent(dir.path());
    assert_eq!(
        agent["reason"],
        "the program ended with exit 3; last stderr line: Traceback: something broke"
    );
    assert_eq!(agent["exit"], "exit 3");
    let child: i32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(child), "the program's child {child} outlived it");
}

#[test]
fn programs_released_together_form_a_group_with_their_process_figures() {
    let dir = project(&[]);
    let root = dir.path();
    script(
        root,
        "agent.sh",
        &format!(
            "echo '{{\"event\": \"ready\"}}'\nsleep 0.3\necho \"$BANTERHEARTS_AGENT $BANTERHEARTS_AGENTS $BANTERHEARTS_FLAVOUR\" >&2\necho '{REQUEST}'"
        ),
    );
    let agents = "  ok: {command: [sh, agent.sh, \"{flavour}\"]}";
    let text = spec(agents, "{kind: command, agents: 2}")
        .replace("matrix:\n", "matrix:\n  flavour: [plain]\n");
    std::fs::write(root.join("experiments/TR970.yaml"), text).unwrap();
    let out = banterhearts(root, &["run", "TR970", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let record = &journal(root, "TR970")[0];
    let agents = record["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    for a in agents {
        assert_eq!(a["status"], "ok", "{a}");
        assert!(
            a["sent_offset_ms"].as_f64().unwrap() < 100.0,
            "released together: {a}"
        );
        let wall = a["e2e_ms"].as_f64().unwrap();
        assert!((300.0..3000.0).contains(&wall), "{a}");
        assert!(a["startup_ms"].as_f64().unwrap() < wall);
        assert!(
            a["process_peak_rss_mb"].as_f64().unwrap() > 0.0
                && a["process_cpu_s"].as_f64().is_some(),
            "{a}"
        );
        assert_eq!(
            (a["ttft_ms"].as_f64(), a["output_tokens"].as_u64()),
            (Some(10.0), Some(5))
        );
    }
    let eff = record["group"]["parallel_efficiency"].as_f64().unwrap();
    assert!(eff > 0.5 && eff <= 1.0 + 1e-9, "{eff}");
    // The cell's parameters reach the program as environment variables.
    let log = std::fs::read_to_string(root.join(format!(
        "data/TR970/logs/agent-{}-1.log",
        record["run_id"].as_str().unwrap()
    )))
    .unwrap();
    assert_eq!(log.trim(), "1 2 plain");
}

/// A program's own `backend` decides which servers are started and which URL it receives, even
/// when the cell's `backend` axis names another.
#[test]
fn a_program_gets_the_endpoint_of_its_own_backend() {
    let dir = project(&[]);
    let root = dir.path();
    script(
        root,
        "agent.sh",
        &format!("echo \"$BANTERHEARTS_ENDPOINT\" >&2\necho '{REQUEST}'"),
    );
    let text = spec("  prog: {command: [sh, agent.sh], backend: second}", "{kind: command}").replace(
        "agents:\n",
        "backends:\n  first: {kind: openai, endpoints: [\"http://127.0.0.1:9/first\"]}\n  second: {kind: openai, endpoints: [\"http://127.0.0.1:9/second\"]}\nagents:\n",
    ).replace("matrix:\n", "matrix:\n  backend: [first]\n");
    std::fs::write(root.join("experiments/TR970.yaml"), text).unwrap();
    let out = banterhearts(root, &["run", "TR970", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let record = &journal(root, "TR970")[0];
    let log = std::fs::read_to_string(root.join(format!(
        "data/TR970/logs/agent-{}-0.log",
        record["run_id"].as_str().unwrap()
    )))
    .unwrap();
    assert_eq!(log.trim(), "http://127.0.0.1:9/second");
}
