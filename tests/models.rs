//! Model files: a real GGUF's header read for its parameters and quantisation, and synthetic
//! models written with gguf-py, cached, loaded on a real llama-server with the parameter count
//! asked for and generating with `ignore_eos`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banterhearts::model;
use banterhearts::spec::model::ModelValue;
use common::llama_server_and_model;
use serde_json::{Value, json};

#[test]
fn a_real_ggufs_header_gives_its_parameters_and_quantisation() {
    let (_, smollm2) = llama_server_and_model();
    let info = model::gguf::read(&smollm2).unwrap();
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.quant.as_deref(), Some("Q4_1"));
    // What llama-server reports as n_params for SmolLM2-135M.
    assert_eq!(info.params, 134_515_008);
    assert_eq!(info.file_bytes, std::fs::metadata(&smollm2).unwrap().len());
}

/// GET `path` from a llama-server as JSON.
fn get(url: &str) -> Value {
    let out = Command::new("curl").args(["-sf", url]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn a_synthetic_model_loads_with_the_parameters_asked_for_and_generates() {
    let _serial = common::serial();
    let (server, smollm2) = llama_server_and_model();
    // SAFETY: set before any thread of this test binary reads the environment for it.
    unsafe { std::env::set_var("BANTERHEARTS_MODEL", &smollm2) };
    let value = ModelValue::from_value(&json!({"synthetic": {"params": "5M", "seed": 7}})).unwrap();
    let started = Instant::now();
    let file = model::resolve(&value, &|_| {}).unwrap();
    let first = started.elapsed();
    assert!(file.synthetic);
    assert_eq!(file.label, "synthetic 5M q8_0");
    let asked = 5_000_000.0;
    assert!(
        (file.info.params as f64 / asked - 1.0).abs() < 0.01,
        "{} parameters for 5M",
        file.info.params
    );
    assert_eq!(file.info.quant.as_deref(), Some("Q8_0"));
    // Cached by what it is: the same value again is the same file, at once.
    let again = model::resolve(&value, &|_| {}).unwrap();
    assert_eq!(again.path, file.path);
    assert!(started.elapsed() - first < Duration::from_secs(1));

    let (mut child, url) = serve(&server, &file.path);
    let models = get(&format!("{url}/v1/models"));
    let n_params = models["data"][0]["meta"]["n_params"].as_u64();
    let out = Command::new("curl")
        .args(["-sf", &format!("{url}/completion"), "-d"])
        .arg(json!({"prompt": "Hello", "n_predict": 16, "ignore_eos": true}).to_string())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(n_params, Some(file.info.params), "{models}");
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["tokens_predicted"], 16, "{done}");
    assert!(done["timings"]["predicted_per_second"].as_f64().unwrap() > 0.0);
}

/// Starts llama-server on `model` (one thread, a small context) and waits for it to load: the
/// child and its URL.
fn serve(server: &std::path::Path, model: &std::path::Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(server)
        .arg("-m")
        .arg(model)
        .args([
            "-c",
            "256",
            "-t",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("{url}/health"))["status"] != "ok" {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("llama-server did not load {}", model.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

/// The second real model, from scripts/setup-gemma3's four PyPI pieces (scripts/test installs
/// it): named as `${BANTERHEARTS_GEMMA3}`, its header read for another architecture and a
/// K-quant, and the count what llama-server itself reports.
#[test]
fn gemma3_from_its_pypi_pieces_loads_with_the_parameters_its_header_states() {
    let (server, _) = llama_server_and_model();
    let value = ModelValue::from_value(&json!({"gguf": "${BANTERHEARTS_GEMMA3}"})).unwrap();
    let file = model::resolve(&value, &|_| {})
        .unwrap_or_else(|e| panic!("{e}: run scripts/setup-gemma3 (scripts/test does)"));
    assert!(!file.synthetic);
    assert_eq!(file.label, "gemma-3-270m-q4_k_m");
    assert_eq!(file.info.architecture.as_deref(), Some("gemma3"));
    assert_eq!(file.info.quant.as_deref(), Some("Q4_K_M"));
    let (mut child, url) = serve(&server, &file.path);
    let models = get(&format!("{url}/v1/models"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        models["data"][0]["meta"]["n_params"].as_u64(),
        Some(file.info.params),
        "{models}"
    );
    assert!(file.info.params > 250_000_000 && file.info.params < 290_000_000);
}

/// A `model` axis over a real and two synthetic models: one llama-server per model, each run
/// measured on its own model's server, recorded with what the model is, and its server's
/// memory only.
#[test]
fn a_model_axis_launches_a_server_per_model_and_records_each_models_facts() {
    let _serial = common::serial();
    let spec = r#"id: TR983
title: Three models
status: running
question: Does each cell run on the model it names?
backends:
  llama:
    kind: llama-cpp
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "512", "-t", "1"]}
workload: {prompts: ["Name a colour."], max_tokens: 8, ignore_eos: true}
matrix:
  model:
    - {gguf: "${BANTERHEARTS_MODEL}", name: SmolLM2-135M}
    - {synthetic: {params: 5M, seed: 7}}
    - {synthetic: {layers: 4, width: 128, heads: 2, ffn: 352}}
repetitions: 2
"#;
    let dir = common::project(&[("TR983.yaml", spec)]);
    let out = common::banterhearts_with_model(dir.path(), &["run", "TR983"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("with synthetic 5M q8_0"),
        "{}",
        out.stderr
    );
    let records = common::journal(dir.path(), "TR983");
    assert_eq!(records.len(), 6);
    let mut pids = std::collections::BTreeMap::new();
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        let model = &r["model"];
        let label = model["label"].as_str().unwrap().to_owned();
        let servers = r["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 1, "only the cell's own server: {r}");
        let pid = servers[0]["pid"].as_u64().unwrap();
        assert_eq!(*pids.entry(label.clone()).or_insert(pid), pid);
        assert_eq!(r["agents"][0]["output_tokens"], 8);
        match label.as_str() {
            "SmolLM2-135M" => {
                assert_eq!(model["synthetic"], false);
                assert_eq!(model["params"], 134_515_008);
                assert_eq!(model["quant"], "Q4_1");
            }
            "synthetic 5M q8_0" => {
                assert_eq!(model["synthetic"], true);
                let p = model["params"].as_f64().unwrap();
                assert!((p / 5e6 - 1.0).abs() < 0.01, "{p}");
            }
            "synthetic 4x128 q8_0" => {
                assert_eq!(model["synthetic"], true);
                // Embeddings (49,152 x 128, tied) + norms + 4 layers of attention and FFN.
                let (v, d, f, l) = (49_152u64, 128u64, 352u64, 4u64);
                assert_eq!(
                    model["params"].as_u64().unwrap(),
                    v * d + d + l * (2 * d + 4 * d * d + 3 * d * f)
                );
            }
            other => panic!("unexpected model {other}"),
        }
    }
    assert_eq!(pids.len(), 3, "a server per model: {pids:?}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR983/manifest.json")).unwrap(),
    )
    .unwrap();
    let servers = manifest["sessions"][0]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert!(
        servers
            .iter()
            .all(|s| s["model_file"]["params"].as_u64().is_some()),
        "{servers:?}"
    );
    let plan = common::banterhearts(dir.path(), &["plan", "TR983"]);
    assert!(
        plan.stdout.contains("synthetic 4x128 q8_0"),
        "{}",
        plan.stdout
    );
    // The report's Models table: a row per model, smallest first, each with its file's hash;
    // the note on random weights said once; one server line for the three servers.
    common::copy_templates(dir.path());
    let out = common::banterhearts(dir.path(), &["report", "TR983"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = std::fs::read_to_string(dir.path().join("reports/TR983.md")).unwrap();
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("| synthetic ") || l.starts_with("| SmolLM2-135M |"))
        .collect();
    assert_eq!(rows.len(), 3, "{report}");
    assert!(rows[0].starts_with("| synthetic 5M q8_0 |"), "{rows:?}");
    assert!(
        rows[2].starts_with("| SmolLM2-135M | 134,515,008 |"),
        "{rows:?}"
    );
    for row in &rows {
        let weights = if row.contains("SmolLM2") {
            "trained"
        } else {
            "random"
        };
        assert!(row.contains(&format!("| {weights} |")), "{row}");
    }
    for s in servers {
        let sha = s["model_sha256"].as_str().unwrap();
        let label = s["model_file"]["label"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| {label} |")))
            .unwrap();
        assert!(row.contains(&format!("`{}…`", &sha[..16])), "{row}");
    }
    assert_eq!(
        report.matches("it measures speed only").count(),
        1,
        "{report}"
    );
    let server_lines: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("- Server `llama`"))
        .collect();
    assert_eq!(server_lines.len(), 1, "{server_lines:?}");
    assert!(
        server_lines[0].contains("a set per model (each model's file"),
        "{server_lines:?}"
    );
}

/// A model named rather than given as a file describes one served elsewhere (catalogue specs
/// do): valid, but `run` cannot load a name and says so, at the value, before any server starts.
#[test]
fn a_model_name_is_valid_but_the_runner_asks_for_a_file() {
    let spec = r#"id: TR984
title: Named models
status: running
question: Can the runner load a model by name?
backends:
  llama: {kind: llama-cpp, launch: {args: ["-m", "${BANTERHEARTS_MODEL}"]}}
workload: {prompts: [a], max_tokens: 4}
matrix:
  model: [{gguf: "${BANTERHEARTS_MODEL}"}, qwen2.5]
"#;
    let dir = common::project(&[("TR984.yaml", spec)]);
    assert_eq!(common::banterhearts(dir.path(), &["validate"]).code, 0);
    let out = common::banterhearts_with_model(dir.path(), &["run", "TR984"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("model `qwen2.5` is a name, and the runner loads model files")
            && out.stderr.contains("TR984.yaml:9:44"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("data/TR984/runs.jsonl").exists());
}
