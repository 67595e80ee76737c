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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&server)
        .arg("-m")
        .arg(&file.path)
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
        assert!(
            Instant::now() < deadline,
            "llama-server did not load the synthetic model"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
