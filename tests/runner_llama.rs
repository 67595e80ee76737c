//! The runner against a real llama-server with SmolLM2-135M (installed by
//! scripts/setup-llama-server): end-to-end runs, timing reconciliation, concurrency,
//! crash-and-resume, and a server dying mid-stream.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    banterhearts, banterhearts_with_model, copy_templates, journal, llama_server_and_model,
    project, serial,
};
use serde_json::Value;

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

const TWO_CELLS: &str = r#"id: TR950
title: Two temperatures, three repetitions
status: running
question: Does the runner measure a real server end to end?
backends:
  llama:
    kind: llama-cpp
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "1024", "-t", "2"]}
workload: {prompts: ["Write one sentence about the sea.", "Name three colours."], max_tokens: 24, seed: 42, ignore_eos: true}
matrix:
  temperature: [0.2, 0.8]
repetitions: 3
"#;

#[test]
fn two_cells_three_reps_end_to_end_with_reconciled_timings() {
    let _serial = serial();
    let dir = project(&[("TR950.yaml", TWO_CELLS)]);
    let out = banterhearts_with_model(dir.path(), &["run", "TR950"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR950");
    assert_eq!(records.len(), 6);
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        let a = &r["agents"][0];
        assert_eq!(
            a["output_tokens"], 24,
            "ignore_eos gives exactly max_tokens"
        );
        let (ttft, e2e) = (f(a, "ttft_ms"), f(a, "e2e_ms"));
        let (prompt_ms, decode_ms) = (f(a, "server_prompt_ms"), f(a, "server_decode_ms"));
        // The client's first chunk cannot arrive before the server finished the prompt, and its
        // whole request spans the server's prompt and decode work.
        assert!(ttft >= prompt_ms, "ttft {ttft} < server prompt {prompt_ms}");
        assert!(
            e2e >= prompt_ms + decode_ms,
            "e2e {e2e} < server total {}",
            prompt_ms + decode_ms
        );
        // Client decode window (first to last generated chunk) vs server decode time: equal up
        // to first/last chunk delivery jitter.
        let decode_gap = f(a, "decode_overhead_ms");
        let last = f(a, "last_token_ms");
        assert!(ttft < last && last <= e2e, "{a}");
        assert!(
            (last - ttft - decode_ms - decode_gap).abs() < 1e-6,
            "gap recorded as client overhead"
        );
        assert!(
            decode_gap > -(0.1 * decode_ms + 5.0) && decode_gap < 0.25 * decode_ms + 20.0,
            "decode gap {decode_gap} ms vs server {decode_ms} ms"
        );
        assert_eq!(f(a, "prefill_overhead_ms"), ttft - prompt_ms);
        let client_rate = f(a, "decode_tok_s");
        let server_rate = f(a, "server_decode_tok_s");
        assert!(
            (client_rate / server_rate - 1.0).abs() < 0.25,
            "client {client_rate} vs server {server_rate} tok/s"
        );
        assert!(f(&r["harness_lag"], "samples") > 0.0);
        assert!(
            r["servers"][0]["rss_mb"].as_f64().unwrap() > 50.0,
            "server RSS sampled"
        );
    }
    let ids: std::collections::HashSet<_> = records
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);

    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR950/manifest.json")).unwrap(),
    )
    .unwrap();
    let session = &manifest["sessions"][0];
    assert_eq!(session["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(session["spec_sha256"].as_str().unwrap().len(), 64);
    assert!(session["host"]["logical_cpus"].as_u64().unwrap() >= 1);
    let server = &session["servers"][0];
    assert!(
        server["build"].as_str().is_some_and(|b| !b.is_empty()),
        "server build recorded: {server}"
    );
    let (_, model) = llama_server_and_model();
    let expected_sha = banterhearts::store::sha256_file(&model).unwrap();
    assert_eq!(server["model_sha256"], expected_sha.as_str());

    // A second run has nothing left to do and changes nothing.
    let again = banterhearts_with_model(dir.path(), &["run", "TR950"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("all 6 planned runs are recorded"),
        "{}",
        again.stderr
    );
    assert_eq!(journal(dir.path(), "TR950").len(), 6);
}

#[test]
fn two_agents_on_two_launched_servers_record_group_efficiency() {
    let _serial = serial();
    let spec = TWO_CELLS
        .replace(
            "count: 1, args: [\"-m\", \"${BANTERHEARTS_MODEL}\", \"-c\", \"1024\", \"-t\", \"2\"]",
            "count: 2, args: [\"-m\", \"${BANTERHEARTS_MODEL}\", \"-c\", \"1024\", \"-t\", \"1\"]",
        )
        .replace(
            "temperature: [0.2, 0.8]",
            "scenario: [{kind: single}, {kind: concurrent, agents: 2, placement: server-per-agent}]",
        )
        .replace("repetitions: 3", "repetitions: 2");
    let dir = project(&[("TR950.yaml", &spec)]);
    let out = banterhearts_with_model(dir.path(), &["run", "TR950"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR950");
    assert_eq!(records.len(), 4);
    for r in records
        .iter()
        .filter(|r| r["agents"].as_array().unwrap().len() > 1)
    {
        let agents = r["agents"].as_array().unwrap();
        assert_eq!(agents.len(), 2);
        assert_ne!(
            agents[0]["server"], agents[1]["server"],
            "one server per agent"
        );
        let g = &r["group"];
        let wall = f(g, "wall_ms");
        let sum: f64 = agents.iter().map(|a| f(a, "e2e_ms")).sum();
        assert!((f(g, "speedup") - sum / wall).abs() < 1e-9);
        let eff = f(g, "parallel_efficiency");
        assert!(eff > 0.3 && eff <= 1.0 + 1e-9, "efficiency {eff}");
        assert!(
            agents.iter().all(|a| f(a, "sent_offset_ms") < 50.0),
            "agents released together"
        );
    }
    // The single-agent runs of the same configuration are the contention baseline.
    assert!(
        out.stderr.contains("contention: ")
            && out.stderr.contains(" of 4 concurrent agents flagged"),
        "{}",
        out.stderr
    );

    // The report of this real data: the efficiency it prints is the mean over the groups.
    copy_templates(dir.path());
    let out = banterhearts(dir.path(), &["report", "TR950"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = std::fs::read_to_string(dir.path().join("reports/TR950.md")).unwrap();
    let groups: Vec<f64> = records
        .iter()
        .filter(|r| {
            !r["warmup"].as_bool().unwrap() && r["status"] == "ok" && r["group"].is_object()
        })
        .map(|r| f(&r["group"], "parallel_efficiency"))
        .collect();
    // The report shows the centre of the logit-scale interval: the logistic of the mean logit.
    let mean_logit = groups.iter().map(|e| (e / (1.0 - e)).ln()).sum::<f64>() / groups.len() as f64;
    let center = 1.0 / (1.0 + (-mean_logit).exp());
    assert!(
        report.contains(&format!("| {:.1}% [", center * 100.0)),
        "efficiency {center} not in:\n{report}"
    );
    for section in [
        "## Question",
        "## Setup",
        "## Method",
        "## Results",
        "### Concurrent agents",
        "## Threats to validity",
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
    assert!(
        report.contains("SmolLM2-135M-Instruct"),
        "model named in the setup"
    );
    for figure in ["throughput", "ttft", "efficiency"] {
        let svg = std::fs::read_to_string(
            dir.path()
                .join(format!("reports/figures/TR950-{figure}.svg")),
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{figure}"
        );
    }
}

#[test]
fn kill_nine_mid_experiment_then_resume_gives_exactly_the_plan() {
    let _serial = serial();
    let spec = TWO_CELLS
        .replace("repetitions: 3", "repetitions: 8")
        .replace("max_tokens: 24", "max_tokens: 32");
    let dir = project(&[("TR950.yaml", &spec)]);
    let (server, model) = llama_server_and_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_banterhearts"))
        .env("BANTERHEARTS_LLAMA_SERVER", &server)
        .env("BANTERHEARTS_MODEL", &model)
        .arg("-C")
        .arg(dir.path())
        .args(["run", "TR950", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = dir.path().join("data/TR950/runs.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&runs).map_or(0, |t| t.lines().count()) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "runner recorded nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = journal(dir.path(), "TR950").len();
    assert_servers_gone(&journal(dir.path(), "TR950"));
    assert!((3..16).contains(&partial), "{partial} runs before the kill");

    // A crash in the middle of an append leaves a torn line; the next run must cut it off,
    // keeping its bytes beside the journal and saying where.
    let mut text = std::fs::read(&runs).unwrap();
    text.extend_from_slice(br#"{"tr":"TR950","run_id":"torn"#);
    std::fs::write(&runs, text).unwrap();

    let out = banterhearts_with_model(dir.path(), &["run", "TR950"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("resuming; {partial} of 16 runs already recorded")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("its last line was torn"),
        "{}",
        out.stderr
    );
    let set_aside: Vec<_> = std::fs::read_dir(runs.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("runs.jsonl.torn-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(
        std::fs::read(&set_aside[0]).unwrap(),
        br#"{"tr":"TR950","run_id":"torn"#
    );
    let records = journal(dir.path(), "TR950");
    assert_eq!(records.len(), 16, "exactly the planned runs");
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16, "no duplicates");
    let plan = banterhearts_with_model(dir.path(), &["plan", "TR950", "--format", "json"]);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let mut planned: Vec<&str> = plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    planned.sort();
    assert_eq!(ids, planned);
    let sessions: std::collections::BTreeSet<u64> = records
        .iter()
        .map(|r| r["session"].as_u64().unwrap())
        .collect();
    assert_eq!(sessions.len(), 2, "two runner sessions");
}

/// The llama-servers a runner launched must not outlive it (their pids are in the records).
fn assert_servers_gone(records: &[Value]) {
    let pids: std::collections::BTreeSet<u64> = records
        .iter()
        .flat_map(|r| {
            r["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["pid"].as_u64().unwrap())
        })
        .collect();
    assert!(!pids.is_empty());
    assert_gone(&pids, "llama-server");
}

/// Waits until no process in `pids` is alive (5 s at most).
fn assert_gone(pids: &std::collections::BTreeSet<u64>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        // A zombie still has /proc/<pid>; its state is Z. Anything else is a live orphan.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        };
        while alive() {
            assert!(
                Instant::now() < deadline,
                "{what} {pid} outlived the runner"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The runner's child processes now (the llama-servers it is launching).
fn children(pid: u32) -> std::collections::BTreeSet<u64> {
    let mut out = std::collections::BTreeSet::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let path = task.unwrap().path().join("children");
        for child in std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
        {
            out.insert(child.parse().unwrap());
        }
    }
    out
}

fn spawn_runner(root: &std::path::Path) -> std::process::Child {
    let (server, model) = llama_server_and_model();
    Command::new(env!("CARGO_BIN_EXE_banterhearts"))
        .env("BANTERHEARTS_LLAMA_SERVER", &server)
        .env("BANTERHEARTS_MODEL", &model)
        .arg("-C")
        .arg(root)
        .args(["run", "TR950"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Checks a runner stopped by a signal: exit 130, how to resume, the lock free and its entry
/// cleared.
fn assert_stopped_cleanly(child: std::process::Child, root: &std::path::Path, signal: &str) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{signal}: {stderr}");
    assert!(
        stderr.contains("run `banterhearts run TR950` again to resume"),
        "{signal}: {stderr}"
    );
    let lock = root.join("data/TR950/.lock");
    let file = std::fs::File::open(&lock).unwrap();
    assert!(file.try_lock().is_ok(), "{signal}: the lock was let go");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "", "{signal}");
}

/// Ctrl-C (SIGINT) and SIGTERM stop the runner cleanly, mid-experiment and while its servers
/// are still starting: servers stopped, lock let go, how to resume printed, every finished run
/// kept and the one in flight dropped.
#[test]
fn sigint_and_sigterm_stop_cleanly_keep_finished_runs_and_say_how_to_resume() {
    let _serial = serial();
    let spec = TWO_CELLS.replace("repetitions: 3", "repetitions: 20");
    for (name, signal) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)] {
        let dir = project(&[("TR950.yaml", &spec)]);
        let child = spawn_runner(dir.path());
        common::wait_for_lines(
            &dir.path().join("data/TR950/runs.jsonl"),
            2,
            Duration::from_secs(120),
        );
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        assert_stopped_cleanly(child, dir.path(), name);
        let records = journal(dir.path(), "TR950");
        assert!(records.len() >= 2 && records.len() < 40);
        assert!(
            records.iter().all(|r| r["status"] == "ok"),
            "an interrupted run is dropped, not recorded as degraded"
        );
        assert_servers_gone(&records);

        // While the server is starting: as soon as the runner has launched it.
        let dir = project(&[("TR950.yaml", &spec)]);
        let child = spawn_runner(dir.path());
        let started = Instant::now();
        let launched = loop {
            let c = children(child.id());
            if !c.is_empty() {
                break c;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no server launched"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        assert_stopped_cleanly(child, dir.path(), &format!("{name} at start-up"));
        assert_gone(&launched, "the llama-server launched at start-up");
        assert!(journal(dir.path(), "TR950").is_empty());
    }
    common::reliability(
        "SIGINT and SIGTERM, mid-experiment and while llama-server starts",
        4,
        "exit 130; servers stopped, lock let go, how to resume printed; the run in flight dropped",
        "nothing (every finished run kept)",
    );
}

/// Starts llama-server with the test model and `extra` arguments on a free loopback port and
/// waits until it is healthy; returns the process and its base URL.
fn start_llama_server(ctx: &str, extra: &[&str]) -> (std::process::Child, String) {
    let (server, model) = llama_server_and_model();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&server)
        .arg("-m")
        .arg(&model)
        .args(["-c", ctx, "-t", "2", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !Command::new("curl")
        .args(["-sf", &format!("{url}/health")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "llama-server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

#[test]
fn a_server_killed_mid_stream_gives_a_degraded_run_and_the_experiment_continues() {
    let _serial = serial();
    let (mut llama, url) = start_llama_server("2048", &[]);
    let spec = format!(
        "id: TR951\ntitle: t\nstatus: running\nquestion: q\nbackends:\n  ext: {{kind: llama-cpp, endpoints: ['{url}'], timeout_s: 30}}\n\
         workload: {{prompts: ['Tell a long story.'], max_tokens: 1500, ignore_eos: true}}\nrepetitions: 3\n"
    );
    let dir = project(&[("TR951.yaml", &spec)]);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        llama.kill().unwrap();
        llama.wait().unwrap();
    });
    let out = banterhearts_with_model(dir.path(), &["run", "TR951"]);
    killer.join().unwrap();
    assert_eq!(
        out.code, 1,
        "degraded runs give exit code 1\n{}",
        out.stderr
    );
    let records = journal(dir.path(), "TR951");
    assert_eq!(
        records.len(),
        3,
        "every planned run is recorded, none dropped"
    );
    assert!(
        records.iter().all(|r| r["status"] == "degraded"),
        "{records:?}"
    );
    let first = records[0]["reason"].as_str().unwrap();
    assert!(first.contains("truncated stream"), "{first}");
    assert!(
        records[0]["agents"][0]["chunks"].as_u64().unwrap() > 0,
        "it was mid-stream"
    );
    for later in &records[1..] {
        assert!(
            later["reason"].as_str().unwrap().contains("connect failed"),
            "{later}"
        );
    }
}

#[test]
fn a_second_runner_on_the_same_tr_is_refused() {
    let _serial = serial();
    let dir = project(&[("TR950.yaml", TWO_CELLS)]);
    let paths = banterhearts::store::TrPaths::new(dir.path(), "TR950");
    let (_held, _, _) = banterhearts::record::journal::Journal::open(&paths).unwrap();
    let out = banterhearts_with_model(dir.path(), &["run", "TR950"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("another runner holds"),
        "{}",
        out.stderr
    );
}

#[test]
fn openai_protocol_against_llama_server_reads_usage_and_timings() {
    let _serial = serial();
    let spec = TWO_CELLS
        .replace("kind: llama-cpp", "kind: openai")
        .replace("temperature: [0.2, 0.8]", "temperature: [0.5]")
        .replace("repetitions: 3", "repetitions: 2");
    let dir = project(&[("TR950.yaml", &spec)]);
    let out = banterhearts_with_model(dir.path(), &["run", "TR950"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for r in journal(dir.path(), "TR950") {
        let a = &r["agents"][0];
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(a["output_tokens"], 24, "usage.completion_tokens");
        assert!(
            a["prompt_tokens"].as_u64().unwrap() > 5,
            "chat template adds tokens: {a}"
        );
        assert!(f(a, "ttft_ms") >= f(a, "server_prompt_ms"));
        assert!(!a["text"].as_str().unwrap().is_empty());
    }
}

/// The two reference agents (Rust and Python) run the same workflow against a real
/// llama-server as command scenarios, and the report shows their process figures.
#[test]
fn reference_agents_in_rust_and_python_run_against_llama_server() {
    let _serial = serial();
    let examples = std::path::Path::new(env!("CARGO_BIN_EXE_banterhearts"))
        .parent()
        .unwrap()
        .join("examples/reference_agent");
    assert!(
        examples.is_file(),
        "cargo test builds the example: {}",
        examples.display()
    );
    let python = common::repo_root().join("agents/python/agent.py");
    let spec = format!(
        r#"id: TR955
title: reference agents
status: running
question: do both reference agents run the workflow?
backends:
  llama:
    kind: llama-cpp
    launch: {{count: 1, args: ["-m", "${{BANTERHEARTS_MODEL}}", "-c", "2048", "-np", "2", "-t", "2"]}}
agents:
  rust: {{command: ["{rust}"], timeout_s: 120, cold_start: true, env: {{BANTERHEARTS_MAX_TOKENS: "8"}}}}
  python: {{command: ["python3", "{python}"], timeout_s: 120, env: {{BANTERHEARTS_MAX_TOKENS: "8"}}}}
matrix:
  agent: [rust, python]
  scenario: [{{kind: command}}]
repetitions: 2
"#,
        rust = examples.display(),
        python = python.display()
    );
    let dir = project(&[("TR955.yaml", &spec)]);
    let out = banterhearts_with_model(dir.path(), &["run", "TR955", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR955");
    assert_eq!(records.len(), 4);
    // cold_start: every Rust run meets a freshly started server.
    let rust_servers: Vec<u64> = records
        .iter()
        .filter(|r| r["params"]["agent"] == "rust")
        .map(|r| r["servers"][0]["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(rust_servers.len(), 2);
    assert_ne!(
        rust_servers[0], rust_servers[1],
        "a cold start restarts the server"
    );
    for r in &records {
        let a = &r["agents"][0];
        assert_eq!(a["status"], "ok", "{a}");
        let steps: Vec<&str> = a["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["ingest", "analyse", "report"], "{a}");
        assert!(
            a["requests"]
                .as_array()
                .unwrap()
                .iter()
                .all(|q| q["output_tokens"] == 8),
            "exactly max_tokens per step: {a}"
        );
        assert_eq!(a["output_tokens"], 24);
        assert!(
            f(a, "startup_ms") < f(a, "e2e_ms") && f(a, "process_peak_rss_mb") > 1.0,
            "{a}"
        );
    }
    copy_templates(dir.path());
    let out = banterhearts(dir.path(), &["report", "TR955"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = std::fs::read_to_string(dir.path().join("reports/TR955.md")).unwrap();
    assert!(
        report.contains("### Agent programs") && report.contains("| C1 | agent=rust"),
        "{report}"
    );
}

/// A workflow run: three steps, each prompt built from the earlier steps' text, each measured,
/// the final text scored by the spec's rules; two agents run it together as a group.
#[test]
fn a_workflow_runs_its_steps_in_order_and_scores_the_final_output() {
    let _serial = serial();
    let spec = r#"id: TR956
title: workflow
status: running
question: does a three-step workflow run and get scored?
backends:
  llama: {kind: llama-cpp, launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "2048", "-np", "2", "-t", "2"]}}
workload: {prompts: ["Two agents shared one server and their first tokens came late."], max_tokens: 12, seed: 42, ignore_eos: true}
workflow:
  steps:
    - {id: summarise, prompt: "Summarise: {{ input }}\nSummary:"}
    - {id: risks, prompt: "Name two risks of this: {{ steps.summarise }}\nRisks:"}
    - {id: report, prompt: "Report.\nSummary: {{ steps.summarise }}\nRisks: {{ steps.risks }}\n", max_tokens: 20}
  quality: {required_sections: [Zebra Appendix], min_words: 1, max_words: 400}
matrix:
  scenario: [{kind: workflow}, {kind: workflow, agents: 2}]
repetitions: 1
"#;
    let dir = project(&[("TR956.yaml", spec)]);
    let out = banterhearts_with_model(dir.path(), &["run", "TR956", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR956");
    assert_eq!(records.len(), 2);
    for r in &records {
        for a in r["agents"].as_array().unwrap() {
            let steps: Vec<(&str, u64)> = a["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| {
                    (
                        q["step"].as_str().unwrap(),
                        q["output_tokens"].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                steps,
                [("summarise", 12), ("risks", 12), ("report", 20)],
                "{a}"
            );
            let step_time: f64 = a["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| f(q, "e2e_ms"))
                .sum();
            assert!(
                f(a, "e2e_ms") >= step_time,
                "the workflow's time covers its steps: {a}"
            );
            // The final text has no "Zebra Appendix" section (nothing asks for one),
            // while the length rules hold: two of three rules met.
            assert!((f(a, "quality_score") - 2.0 / 3.0).abs() < 1e-9, "{a}");
            assert_eq!(
                a["quality_missed"],
                serde_json::json!(["section `Zebra Appendix`"])
            );
        }
    }
    let group = records
        .iter()
        .find(|r| r["agents"].as_array().unwrap().len() == 2)
        .unwrap();
    assert!(f(&group["group"], "parallel_efficiency") > 0.3, "{group}");
    let out = banterhearts(dir.path(), &["analyze", "TR956"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = std::fs::read_to_string(dir.path().join("data/TR956/summary.csv")).unwrap();
    assert!(
        summary.lines().any(|l| l.contains(",quality_score,")),
        "quality is summarised like any metric"
    );
}

/// llama-server started with `--api-key` protects `/props` and the completion endpoints: a
/// spec without the key stops before measuring with the server's 401 and what to do; with the
/// key (from `api_key_env`, or the `--api-key` of a launched server) every request carries it,
/// the description request too, and the build the server reports is recorded.
#[test]
fn llama_server_with_api_key_needs_it_and_gets_it() {
    let _serial = serial();
    let (server, model) = llama_server_and_model();
    let (mut child, url) = start_llama_server("1024", &["--api-key", "bh-test-key"]);
    let spec = |backend: &str| {
        TWO_CELLS
            .replace(
                "    kind: llama-cpp\n    launch: {count: 1, args: [\"-m\", \"${BANTERHEARTS_MODEL}\", \"-c\", \"1024\", \"-t\", \"2\"]}\n",
                backend,
            )
            .replace("temperature: [0.2, 0.8]", "temperature: [0.5]")
            .replace("repetitions: 3", "repetitions: 1")
    };
    let key = std::path::Path::new("bh-test-key");

    let without = spec(&format!(
        "    kind: llama-cpp\n    endpoints: [\"{url}\"]\n"
    ));
    let dir = project(&[("TR950.yaml", &without)]);
    let out = banterhearts(dir.path(), &["run", "TR950"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("/props answered HTTP 401: Invalid API Key")
            && out.stderr.contains("(no API key was sent)")
            && out.stderr.contains("TR950.yaml:7:")
            && out.stderr.contains("api_key_env"),
        "{}",
        out.stderr
    );
    assert!(journal(dir.path(), "TR950").is_empty());

    for kind in ["llama-cpp", "openai\n    server: llama-server"] {
        let with = spec(&format!(
            "    kind: {kind}\n    endpoints: [\"{url}\"]\n    api_key_env: BH_LLAMA_KEY\n"
        ));
        let dir = project(&[("TR950.yaml", &with)]);
        let out = common::banterhearts_env(dir.path(), &["run", "TR950"], &[("BH_LLAMA_KEY", key)]);
        assert_eq!(out.code, 0, "{kind}: {}", out.stderr);
        let records = journal(dir.path(), "TR950");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["status"], "ok", "{kind}: {}", records[0]);
        let manifest =
            std::fs::read_to_string(dir.path().join("data/TR950/manifest.json")).unwrap();
        let manifest: Value = serde_json::from_str(&manifest).unwrap();
        let build = manifest["sessions"][0]["servers"][0]["build"]
            .as_str()
            .unwrap_or_default();
        assert!(
            build.starts_with('b') && !build.contains("unknown"),
            "{kind}: /props build_info read with the key: {build:?}"
        );
        assert!(
            !manifest.to_string().contains("bh-test-key"),
            "the key is never stored"
        );
    }
    let _ = child.kill();
    let _ = child.wait();

    // A launched server started with --api-key: the runner sends that key.
    let launched = spec(
        "    kind: openai\n    launch: {count: 1, args: [\"-m\", \"${BANTERHEARTS_MODEL}\", \"-c\", \"1024\", \"-t\", \"2\", \"--api-key\", \"${BH_LLAMA_KEY}\"]}\n",
    );
    let dir = project(&[("TR950.yaml", &launched)]);
    let out = common::banterhearts_env(
        dir.path(),
        &["run", "TR950"],
        &[
            ("BH_LLAMA_KEY", key),
            ("BANTERHEARTS_LLAMA_SERVER", &server),
            ("BANTERHEARTS_MODEL", &model),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(journal(dir.path(), "TR950")[0]["status"], "ok");
    for (name, bytes) in common::files(&dir.path().join("data")) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("bh-test-key"),
            "the key is in {name}"
        );
    }
}
