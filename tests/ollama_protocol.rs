//! The Ollama adapter, tested against transcripts that follow Ollama's documented API
//! (docs/api.md of the Ollama project: NDJSON streaming, `options`, top-level `keep_alive`,
//! durations in nanoseconds, `{"error": ...}` objects) and its source (api/types.go:
//! `thinking` / `message.thinking` with omitempty, `think` at the top level; server/routes.go:
//! a final `done` object that can carry text, an error before any output sent with its
//! status; `PsHandler`'s `context_length`). Ollama itself cannot be installed on
//! our machines, so a local axum server replays these transcripts with real network timing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{banterhearts, journal, project, serve_in_background};
use futures_util::StreamExt;
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A documented /api/generate or /api/chat stream: three content objects 30 ms apart, then the
/// final object with counts and nanosecond durations.
fn transcript(chat: bool) -> Vec<String> {
    let piece = |text: &str| {
        if chat {
            json!({"model": "smollm2:135m", "created_at": "2025-10-17T23:14:07.414671Z", "message": {"role": "assistant", "content": text}, "done": false})
        } else {
            json!({"model": "smollm2:135m", "created_at": "2025-10-17T23:14:07.414671Z", "response": text, "done": false})
        }
    };
    let mut last = json!({
        "model": "smollm2:135m", "created_at": "2025-10-17T23:14:07.514671Z", "done": true, "done_reason": "length",
        "total_duration": 174560334u64, "load_duration": 101397084u64, "prompt_eval_count": 11,
        "prompt_eval_duration": 13074791u64, "eval_count": 3, "eval_duration": 52479709u64
    });
    last[if chat { "message" } else { "response" }] = if chat {
        json!({"role": "assistant", "content": ""})
    } else {
        json!("")
    };
    [piece("Hello"), piece("!"), piece(" There"), last]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect()
}

fn ndjson(lines: Vec<String>, gap: Duration) -> Response {
    let stream = futures_util::stream::iter(lines).then(move |line| async move {
        tokio::time::sleep(gap).await;
        Ok::<_, std::convert::Infallible>(line)
    });
    (
        [("content-type", "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A thinking model's /api/generate stream (api.GenerateResponse field order): two thinking
/// objects, one answer object, and the final object that carries the answer's last words.
fn thinking_transcript() -> Vec<String> {
    let at = "2025-10-26T17:21:21.196249Z";
    [
        json!({"model": "qwen3", "created_at": at, "response": "", "thinking": "Okay,", "done": false}),
        json!({"model": "qwen3", "created_at": at, "response": "", "thinking": " so", "done": false}),
        json!({"model": "qwen3", "created_at": at, "response": "Hi", "done": false}),
        json!({"model": "qwen3", "created_at": at, "response": " there.", "done": true, "done_reason": "stop",
               "context": [1, 2, 3], "total_duration": 174560334u64, "load_duration": 101397084u64,
               "prompt_eval_count": 11, "prompt_eval_duration": 13074791u64, "eval_count": 4, "eval_duration": 52479709u64}),
    ]
    .iter()
    .map(|v| format!("{v}\n"))
    .collect()
}

async fn generate(State(seen): State<Seen>, Json(body): Json<Value>) -> Response {
    seen.lock()
        .unwrap()
        .push(("/api/generate".into(), body.clone()));
    match body["model"].as_str() {
        Some("qwen3") => ndjson(thinking_transcript(), Duration::from_millis(30)),
        // streamResponse: an error before any output goes out with its status, as JSON.
        Some("fails") => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "llama runner process has terminated: signal: killed"})),
        )
            .into_response(),
        Some("missing") => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "model 'missing' not found"})),
        )
            .into_response(),
        Some("crashes") => {
            let mut lines = transcript(false)[..1].to_vec();
            lines.push("{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n".into());
            ndjson(lines, Duration::from_millis(30))
        }
        _ => ndjson(transcript(false), Duration::from_millis(30)),
    }
}

async fn chat(State(seen): State<Seen>, Json(body): Json<Value>) -> Response {
    seen.lock().unwrap().push(("/api/chat".into(), body));
    ndjson(transcript(true), Duration::from_millis(30))
}

/// Serves the transcripts on a loopback port from a background runtime.
fn ollama_transcript_server() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new()
        .route("/api/generate", post(generate))
        .route("/api/chat", post(chat))
        .route(
            "/api/version",
            get(|| async { Json(json!({"version": "0.12.6"})) }),
        )
        .route(
            "/api/ps",
            get(|| async {
                Json(json!({"models": [{"name": "qwen3:latest", "model": "qwen3:latest", "size": 5137025024u64,
                    "digest": "500a1f067a9f", "details": {"format": "gguf", "family": "qwen3"},
                    "expires_at": "2025-10-26T17:26:21Z", "size_vram": 5137025024u64, "context_length": 4096}]}))
            }),
        )
        .with_state(state);
    (serve_in_background(app), seen)
}

fn spec(port: u16, model: &str, endpoint: &str) -> String {
    format!(
        "id: TR960\ntitle: Ollama transcript\nstatus: running\nquestion: q\n\
         backends:\n  ollama: {{kind: ollama, model: {model}, endpoint: {endpoint}, endpoints: ['http://127.0.0.1:{port}']}}\n\
         workload: {{prompts: ['Say hello.'], max_tokens: 3, seed: 7}}\n\
         matrix:\n  num_ctx: [512, 1024]\n  temperature: [0.8]\n  keep_alive: [0]\n"
    )
}

#[test]
fn ollama_documented_generate_stream_is_measured_and_converted_from_nanoseconds() {
    let (port, seen) = ollama_transcript_server();
    let dir = project(&[("TR960.yaml", &spec(port, "smollm2:135m", "generate"))]);
    let out = banterhearts(dir.path(), &["run", "TR960"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR960");
    assert_eq!(records.len(), 2);
    for r in &records {
        let a = &r["agents"][0];
        assert_eq!(a["text"], "Hello! There");
        assert_eq!(a["chunks"], 3);
        assert_eq!(a["output_tokens"], 3, "eval_count");
        assert_eq!(a["prompt_tokens"], 11, "prompt_eval_count");
        assert!(
            (a["server_decode_ms"].as_f64().unwrap() - 52.479709).abs() < 1e-9,
            "eval_duration ns -> ms"
        );
        assert!((a["server_prompt_ms"].as_f64().unwrap() - 13.074791).abs() < 1e-9);
        assert!((a["load_ms"].as_f64().unwrap() - 101.397084).abs() < 1e-9);
        // First object after 30 ms, then 30 ms gaps: the client sees the server's pacing.
        assert!(a["ttft_ms"].as_f64().unwrap() >= 30.0, "{a}");
        let itl = a["itl_p50_ms"].as_f64().unwrap();
        assert!(
            (15.0..90.0).contains(&itl),
            "itl {itl}: the 30 ms pacing, give or take scheduling on a loaded machine"
        );
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (path, body) = &seen[0];
    assert_eq!(path, "/api/generate");
    assert_eq!(body["model"], "smollm2:135m");
    assert_eq!(body["prompt"], "Say hello.");
    assert_eq!(body["stream"], true);
    assert_eq!(body["keep_alive"], 0, "keep_alive is top-level");
    assert_eq!(body["options"]["num_predict"], 3);
    assert_eq!(body["options"]["temperature"], 0.8);
    assert_eq!(body["options"]["seed"], 7);
    assert!(body["options"].get("keep_alive").is_none());
    let ctx: Vec<&Value> = seen.iter().map(|(_, b)| &b["options"]["num_ctx"]).collect();
    assert_eq!(ctx, vec![&json!(512), &json!(1024)]);
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR960/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["sessions"][0]["servers"][0]["build"], "ollama 0.12.6",
        "from /api/version"
    );
}

#[test]
fn ollama_documented_chat_stream_reads_message_content() {
    let (port, seen) = ollama_transcript_server();
    let dir = project(&[("TR960.yaml", &spec(port, "smollm2:135m", "chat"))]);
    let out = banterhearts(dir.path(), &["run", "TR960", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR960");
    assert_eq!(records[0]["agents"][0]["text"], "Hello! There");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "/api/chat");
    assert_eq!(
        seen[0].1["messages"],
        json!([{"role": "user", "content": "Say hello."}])
    );
}

#[test]
fn ollama_documented_errors_become_degraded_runs_with_the_servers_words() {
    let (port, _) = ollama_transcript_server();
    let dir = project(&[("TR960.yaml", &spec(port, "missing", "generate"))]);
    let out = banterhearts(dir.path(), &["run", "TR960", "--quiet"]);
    assert_eq!(out.code, 1);
    let records = journal(dir.path(), "TR960");
    assert_eq!(records.len(), 2);
    let reason = records[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 404") && reason.contains("model 'missing' not found"),
        "{reason}"
    );

    let dir = project(&[("TR960.yaml", &spec(port, "crashes", "generate"))]);
    let out = banterhearts(dir.path(), &["run", "TR960", "--quiet"]);
    assert_eq!(out.code, 1);
    let records = journal(dir.path(), "TR960");
    let reason = records[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("server error") && reason.contains("unexpected EOF"),
        "{reason}"
    );
    assert_eq!(
        records[0]["agents"][0]["chunks"], 1,
        "the chunk before the error is kept"
    );
}

#[test]
fn ollama_thinking_stream_gives_both_ttfts_and_keeps_the_final_lines_text() {
    let (port, seen) = ollama_transcript_server();
    let spec = format!(
        "id: TR960\ntitle: Ollama thinking\nstatus: running\nquestion: q\n\
         backends:\n  ollama: {{kind: ollama, model: qwen3, endpoints: ['http://127.0.0.1:{port}']}}\n\
         workload: {{prompts: ['Say hello.'], max_tokens: 8}}\n\
         matrix:\n  think: [true, \"high\"]\n  num_ctx: [4096]\n"
    );
    let dir = project(&[("TR960.yaml", &spec)]);
    let out = banterhearts(dir.path(), &["run", "TR960", "--quiet"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR960");
    assert_eq!(records.len(), 2);
    let a = &records[0]["agents"][0];
    assert_eq!(a["status"], "ok");
    assert_eq!(
        a["text"], "Hi there.",
        "the final object's text is part of the answer"
    );
    assert_eq!(
        (a["chunks"].as_u64(), a["reasoning_chunks"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(
        a["output_tokens"], 4,
        "eval_count counts thinking tokens too"
    );
    assert_eq!(a["finish_reason"], "stop");
    let (ttft, answer) = (
        a["ttft_ms"].as_f64().unwrap(),
        a["ttft_answer_ms"].as_f64().unwrap(),
    );
    // Objects 30 ms apart: thinking from the first, the answer two objects later.
    assert!(
        ttft >= 30.0 && answer - ttft >= 45.0,
        "ttft {ttft}, answer {answer}"
    );
    assert!(
        a.get("server_prefill_tok_s").is_none_or(Value::is_null),
        "prompt_eval_count includes cached tokens that prompt_eval_duration does not cover: {a}"
    );
    assert!(a["server_prompt_ms"].as_f64().is_some());
    assert_eq!(
        records[0]["loaded_models"],
        json!([{"server": format!("http://127.0.0.1:{port}"), "model": "qwen3", "context_length": 4096, "size": 5137025024u64, "size_vram": 5137025024u64}]),
        "/api/ps after the run"
    );
    let seen = seen.lock().unwrap();
    let thinks: Vec<&Value> = seen.iter().map(|(_, b)| &b["think"]).collect();
    assert_eq!(
        thinks,
        vec![&json!(true), &json!("high")],
        "top-level think"
    );
    assert!(seen[0].1["options"].get("think").is_none());
}

#[test]
fn ollama_http_500_before_the_first_byte_keeps_status_and_message() {
    let (port, _) = ollama_transcript_server();
    let dir = project(&[("TR960.yaml", &spec(port, "fails", "generate"))]);
    let out = banterhearts(dir.path(), &["run", "TR960", "--quiet"]);
    assert_eq!(out.code, 1);
    let r = &journal(dir.path(), "TR960")[0];
    let a = &r["agents"][0];
    assert_eq!(a["http_status"], 500);
    assert_eq!(
        a["http_body"],
        r#"{"error":"llama runner process has terminated: signal: killed"}"#
    );
    let reason = a["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("HTTP 500 Internal Server Error: llama runner process has terminated"),
        "{reason}"
    );
}
