//! Reference agent (Rust, tokio + reqwest) for banterhearts' agent-program protocol.
//!
//! The same three-step workflow as agents/python/agent.py, against llama-server's native
//! /completion endpoint: ingest a set of notes, analyse them, write a short report from both
//! answers. Each request streams, is timed here (sent -> first text, sent -> last chunk) and is
//! reported as one JSON line on stdout (docs/agent-protocol.md). Logs go to stderr.
//!
//! Build: `cargo build --release --example reference_agent`.

use std::collections::HashMap;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Value, json};

const NOTES: &str = "Two agents shared one inference server. Time to first token doubled under load. \
Decode throughput per agent fell by about half. A second server restored it. \
Memory use stayed flat; CPU was saturated on both cores.";

const STEPS: [(&str, &str); 3] = [
    (
        "ingest",
        "Summarise these notes in three sentences:\n{notes}\nSummary:",
    ),
    (
        "analyse",
        "List three risks that follow from this summary:\n{ingest}\nRisks:",
    ),
    (
        "report",
        "Write a short report with the sections Summary and Risks.\nSummary: {ingest}\nRisks: {analyse}\nReport:",
    ),
];

struct Completion {
    text: String,
    ttft_ms: f64,
    e2e_ms: f64,
    output_tokens: u64,
    prompt_tokens: u64,
}

async fn complete(
    client: &reqwest::Client,
    endpoint: &str,
    prompt: &str,
    max_tokens: u64,
    seed: u64,
) -> Result<Completion, String> {
    let body = json!({
        "prompt": prompt, "n_predict": max_tokens, "stream": true, "ignore_eos": true,
        "seed": seed, "temperature": 0.7, "cache_prompt": false,
    });
    let sent = Instant::now();
    let response = client
        .post(format!("{endpoint}/completion"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut stream = response.bytes_stream();
    let (mut buffer, mut text, mut first, mut timings) =
        (Vec::new(), String::new(), None, Value::Null);
    'read: while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Some(data) = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.trim().strip_prefix("data: "))
            else {
                continue;
            };
            let event: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
            if let Some(content) = event["content"].as_str().filter(|c| !c.is_empty()) {
                first.get_or_insert_with(Instant::now);
                text.push_str(content);
            }
            if event["stop"].as_bool() == Some(true) {
                timings = event["timings"].clone();
                break 'read;
            }
        }
    }
    let done = Instant::now();
    let first = first.ok_or("the server sent no text")?;
    let ms = |t: Instant| t.duration_since(sent).as_secs_f64() * 1000.0;
    let count = |key: &str| timings[key].as_u64().unwrap_or(0);
    Ok(Completion {
        text,
        ttft_ms: ms(first),
        e2e_ms: ms(done),
        output_tokens: count("predicted_n"),
        prompt_tokens: count("prompt_n") + count("cache_n"),
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(endpoint) = std::env::var("BANTERHEARTS_ENDPOINT") else {
        eprintln!("BANTERHEARTS_ENDPOINT is not set: run me from a banterhearts command scenario");
        std::process::exit(2);
    };
    let (max_tokens, seed) = (
        env_u64("BANTERHEARTS_MAX_TOKENS", 64),
        env_u64("BANTERHEARTS_SEED", 42),
    );
    // A connection per request, as the Python agent does: llama-server may close a streamed
    // response's connection, and a pooled one that it closed fails the next request.
    let client = match reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("HTTP client: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", json!({"event": "ready"}));
    let mut answers: HashMap<&str, String> = HashMap::from([("notes", NOTES.to_owned())]);
    for (step, template) in STEPS {
        let prompt = answers.iter().fold(template.to_owned(), |p, (k, v)| {
            p.replace(&format!("{{{k}}}"), v)
        });
        match complete(&client, &endpoint, &prompt, max_tokens, seed).await {
            Ok(c) => {
                println!(
                    "{}",
                    json!({"event": "request", "step": step, "ttft_ms": (c.ttft_ms * 1000.0).round() / 1000.0, "e2e_ms": (c.e2e_ms * 1000.0).round() / 1000.0,
                           "output_tokens": c.output_tokens, "prompt_tokens": c.prompt_tokens})
                );
                answers.insert(step, c.text.trim().to_owned());
            }
            Err(e) => {
                eprintln!("step {step}: {e}");
                std::process::exit(1);
            }
        }
    }
    eprintln!(
        "report: {}",
        answers["report"].chars().take(200).collect::<String>()
    );
}
