//! The OpenAI-compatible client against transcripts in vLLM's formats. vLLM cannot run on our
//! machines, so a local axum server replays what its source writes (vllm-project/vllm,
//! entrypoints/openai: `chat_completion_stream_generator` dumps chunks with
//! `model_dump_json(exclude_unset=True)`; `DeltaMessage.reasoning` for reasoning text; usage
//! in every chunk with `stream_options.continuous_usage_stats`, starting with the role chunk's
//! `completion_tokens: 0`; `completion_tokens_details.reasoning_tokens`; mid-stream errors as
//! `data: {"error": {...}}` followed by `[DONE]`; `GET /version`; `/v1/models` as a ModelList;
//! `--api-key` checks every `/v1` path and answers 401 `{"error":"Unauthorized"}`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{banterhearts_env, journal, project, serve_in_background};
use futures_util::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "vllm-test-key";
const MODEL: &str = "Qwen/Qwen3-0.6B";

type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

fn chunk(choices: Value, usage: Option<Value>) -> String {
    let mut v = json!({"id": "chatcmpl-84fd71592962667f", "object": "chat.completion.chunk", "created": 1779158289, "model": MODEL, "choices": choices});
    if let Some(u) = usage {
        v["usage"] = u;
    }
    format!("data: {}\n\n", serde_json::to_string(&v).unwrap())
}

fn usage(completion: u64, reasoning: Option<u64>) -> Value {
    let mut u = json!({"prompt_tokens": 14, "total_tokens": 14 + completion, "completion_tokens": completion});
    if let Some(r) = reasoning {
        u["completion_tokens_details"] = json!({"reasoning_tokens": r});
    }
    u
}

/// A reasoning model's stream with continuous usage stats: role chunk, three reasoning deltas,
/// two answer deltas, the finish chunk, the final usage chunk and `[DONE]`, 20 ms apart.
/// `variant` cuts or breaks it the ways servers do.
fn transcript(variant: &str) -> Vec<String> {
    let delta = |d: Value, finish: Value| json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}]);
    let mut lines = vec![chunk(
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        Some(usage(0, None)),
    )];
    let mut n = 0;
    for text in ["Okay,", " the", " user"] {
        n += 1;
        lines.push(chunk(
            delta(json!({"reasoning": text}), Value::Null),
            Some(usage(n, None)),
        ));
    }
    if variant == "abort" {
        // vLLM's finish reason for a request it aborted (output.finish_reason "abort").
        lines.push(chunk(
            delta(json!({}), json!("abort")),
            Some(usage(n, None)),
        ));
        lines.push("data: [DONE]\n\n".into());
        return lines;
    }
    if variant == "mid-error" {
        lines.push(
            "data: {\"error\": {\"message\": \"Internal server error\", \"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n".into(),
        );
        lines.push("data: [DONE]\n\n".into());
        return lines;
    }
    for text in ["Hello", "!"] {
        n += 1;
        lines.push(chunk(
            delta(json!({"content": text}), Value::Null),
            Some(usage(n, None)),
        ));
    }
    let mut finish: Value =
        serde_json::from_str(&chunk(delta(json!({}), json!("length")), Some(usage(n, None)))[6..])
            .unwrap();
    finish["choices"][0]["stop_reason"] = Value::Null;
    lines.push(format!("data: {finish}\n\n"));
    if variant == "no-done" {
        return lines;
    }
    lines.push(chunk(json!([]), Some(usage(n, Some(3)))));
    lines.push("data: [DONE]\n\n".into());
    lines
}

fn sse(lines: Vec<String>) -> Response {
    let stream = futures_util::stream::iter(lines).then(|line| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, std::convert::Infallible>(line)
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "Unauthorized"})),
    )
        .into_response()
}

async fn chat(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let auth = bearer(&headers);
    seen.lock()
        .unwrap()
        .push(("/v1/chat/completions".into(), auth.clone(), body.clone()));
    if auth.as_deref() != Some(&format!("Bearer {KEY}")) {
        return unauthorized();
    }
    let variant = body["messages"][0]["content"].as_str().unwrap_or_default();
    sse(transcript(variant))
}

async fn models(State(seen): State<Seen>, headers: HeaderMap) -> Response {
    let auth = bearer(&headers);
    seen.lock()
        .unwrap()
        .push(("/v1/models".into(), auth.clone(), Value::Null));
    if auth.as_deref() != Some(&format!("Bearer {KEY}")) {
        return unauthorized();
    }
    Json(json!({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1779158200, "owned_by": "vllm", "root": "/models/qwen3", "parent": null, "max_model_len": 32768, "permission": []}]})).into_response()
}

fn vllm_transcript_server() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        // Outside /v1, so public even with --api-key.
        .route(
            "/version",
            get(|| async { Json(json!({"version": "0.11.2"})) }),
        )
        .with_state(state);
    (serve_in_background(app), seen)
}

/// A spec naming no model, with the prompt choosing the transcript's variant.
fn spec(port: u16, prompt: &str, key_env: Option<&str>) -> String {
    let key = key_env.map_or(String::new(), |k| format!(", api_key_env: {k}"));
    format!(
        "id: TR961\ntitle: vLLM transcript\nstatus: running\nquestion: q\n\
         backends:\n  vllm: {{kind: openai, server: vllm, endpoints: ['http://127.0.0.1:{port}']{key}}}\n\
         workload: {{prompts: ['{prompt}'], max_tokens: 5, seed: 7, ignore_eos: true}}\n\
         matrix:\n  repeat_penalty: [1.1]\n  reasoning_effort: [low]\n"
    )
}

fn run(dir: &std::path::Path) -> common::Output {
    banterhearts_env(
        dir,
        &["run", "TR961", "--quiet"],
        &[("BH_VLLM_KEY", std::path::Path::new(KEY))],
    )
}

#[test]
fn vllm_reasoning_stream_two_ttfts_latest_usage_and_discovered_model() {
    let (port, seen) = vllm_transcript_server();
    let dir = project(&[("TR961.yaml", &spec(port, "full", Some("BH_VLLM_KEY")))]);
    let out = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR961");
    let a = &records[0]["agents"][0];
    assert_eq!(a["status"], "ok", "{a}");
    assert_eq!(a["text"], "Hello!", "answer text only");
    assert_eq!(
        (a["chunks"].as_u64(), a["reasoning_chunks"].as_u64()),
        (Some(5), Some(3))
    );
    // The latest usage wins: the role chunk's completion_tokens 0 would zero throughput.
    assert_eq!(a["output_tokens"], 5);
    assert_eq!(a["reasoning_tokens"], 3);
    assert!(a["decode_tok_s"].as_f64().unwrap() > 0.0, "{a}");
    assert_eq!(a["finish_reason"], "length");
    assert!(a.get("ended_without_done").is_none(), "[DONE] came");
    // Lines 20 ms apart: first reasoning delta after 2 lines, first answer delta 3 lines later.
    let (ttft, answer) = (
        a["ttft_ms"].as_f64().unwrap(),
        a["ttft_answer_ms"].as_f64().unwrap(),
    );
    assert!(
        ttft >= 40.0 && answer - ttft >= 55.0,
        "ttft {ttft}, answer {answer}"
    );
    let seen = seen.lock().unwrap();
    let (_, auth, body) = seen
        .iter()
        .find(|(p, ..)| p == "/v1/chat/completions")
        .unwrap();
    assert_eq!(auth.as_deref(), Some("Bearer vllm-test-key"));
    assert_eq!(body["model"], MODEL, "discovered from /v1/models");
    assert_eq!(body["repetition_penalty"], 1.1, "vLLM's name");
    assert!(body.get("repeat_penalty").is_none());
    assert_eq!(body["ignore_eos"], true);
    assert_eq!(body["reasoning_effort"], "low");
    assert_eq!(body["max_tokens"], 5);
    let (_, models_auth, _) = seen.iter().find(|(p, ..)| p == "/v1/models").unwrap();
    assert_eq!(
        models_auth.as_deref(),
        Some("Bearer vllm-test-key"),
        "the description request carries the key too"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR961/manifest.json")).unwrap(),
    )
    .unwrap();
    let server = &manifest["sessions"][0]["servers"][0];
    assert_eq!(server["build"], "vllm 0.11.2", "from /version");
    assert_eq!(server["model"], MODEL);
    assert!(
        !manifest.to_string().contains(KEY),
        "the key is never stored"
    );
}

#[test]
fn vllm_stream_ending_at_its_finish_reason_without_done_is_complete() {
    let (port, _) = vllm_transcript_server();
    let dir = project(&[("TR961.yaml", &spec(port, "no-done", Some("BH_VLLM_KEY")))]);
    let out = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let a = &journal(dir.path(), "TR961")[0]["agents"][0];
    assert_eq!(a["status"], "ok", "{a}");
    assert_eq!(a["ended_without_done"], true);
    assert_eq!(a["finish_reason"], "length");
    assert_eq!(
        a["output_tokens"], 5,
        "from the finish chunk's continuous usage"
    );
}

#[test]
fn vllm_error_in_the_stream_is_a_degraded_run_with_the_servers_message() {
    let (port, _) = vllm_transcript_server();
    let dir = project(&[("TR961.yaml", &spec(port, "mid-error", Some("BH_VLLM_KEY")))]);
    let out = run(dir.path());
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = &journal(dir.path(), "TR961")[0];
    assert_eq!(r["status"], "degraded");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("server error: Internal server error"),
        "{reason}"
    );
    assert_eq!(
        r["agents"][0]["reasoning_chunks"], 3,
        "what came before is kept"
    );
}

#[test]
fn vllm_without_the_key_stops_before_measuring_with_the_401() {
    let (port, seen) = vllm_transcript_server();
    let dir = project(&[("TR961.yaml", &spec(port, "full", None))]);
    let out = run(dir.path());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("/v1/models answered HTTP 401: Unauthorized")
            && out.stderr.contains("api_key_env")
            && out.stderr.contains("TR961.yaml:6:"),
        "{}",
        out.stderr
    );
    assert!(journal(dir.path(), "TR961").is_empty(), "nothing measured");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(p, ..)| p != "/v1/chat/completions"));
}

#[test]
fn vllm_request_it_aborted_is_degraded_not_complete() {
    let (port, _) = vllm_transcript_server();
    let dir = project(&[("TR961.yaml", &spec(port, "abort", Some("BH_VLLM_KEY")))]);
    let out = run(dir.path());
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = &journal(dir.path(), "TR961")[0];
    assert_eq!(r["status"], "degraded");
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("finish reason `abort`"), "{reason}");
}

/// vLLM's tokenizer endpoints (entrypoints/openai/serving_tokenization.py): `POST /tokenize`
/// takes `{model, prompt, add_special_tokens}` and answers `{count, max_model_len, tokens}`;
/// `POST /detokenize` takes `{model, tokens}` and answers `{prompt}`. The replay's tokenizer is
/// one token per byte, which is enough to check that the client speaks the format, names the
/// model, asks for no special tokens, and that exact prompts are built through it.
#[test]
fn exact_prompts_are_built_through_vllms_tokenizer_endpoints() {
    use banterhearts::backend::tokenize::{Tokenizer, TokenizerApi};
    let seen: Seen = Arc::default();
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route(
            "/tokenize",
            post(move |Json(body): Json<Value>| async move {
                s1.lock()
                    .unwrap()
                    .push(("/tokenize".into(), None, body.clone()));
                let tokens: Vec<u32> = body["prompt"]
                    .as_str()
                    .unwrap_or_default()
                    .bytes()
                    .map(u32::from)
                    .collect();
                Json(json!({"count": tokens.len(), "max_model_len": 40960, "tokens": tokens}))
            }),
        )
        .route(
            "/detokenize",
            post(move |Json(body): Json<Value>| async move {
                s2.lock()
                    .unwrap()
                    .push(("/detokenize".into(), None, body.clone()));
                let bytes: Vec<u8> = body["tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap() as u8)
                    .collect();
                Json(json!({"prompt": String::from_utf8(bytes).unwrap()}))
            }),
        );
    let port = serve_in_background(app);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tokenizer = Tokenizer {
        client: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
        api: TokenizerApi::Vllm {
            model: Some(MODEL.into()),
        },
        api_key: None,
    };
    let corpus_text =
        std::fs::read_to_string(common::repo_root().join("data/corpus/shakespeare.txt")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (text, tokens) = rt.block_on(async {
        let corpus = banterhearts::workload::Corpus::tokenize(&corpus_text[..20_000], &tokenizer)
            .await
            .unwrap();
        corpus.compose(&tokenizer, &[], 37, 5).await.unwrap()
    });
    assert_eq!(tokens.len(), 37);
    assert_eq!(text.len(), 37, "one byte a token: {text:?}");
    assert!(!text.starts_with(char::is_whitespace) && !text.ends_with(char::is_whitespace));
    let calls = seen.lock().unwrap();
    assert!(
        calls.iter().all(|(_, _, body)| body["model"] == MODEL),
        "every call names the model"
    );
    let tokenize = calls
        .iter()
        .find(|(path, _, _)| path == "/tokenize")
        .unwrap();
    assert_eq!(tokenize.2["add_special_tokens"], false);
}
