//! The pacer: a streaming server that emits tokens on an exact schedule (first after
//! `ttft_ms`, then one every `itl_ms`). It speaks llama.cpp's `/completion`, the OpenAI
//! `/v1/chat/completions` SSE format and Ollama's `/api/generate` and `/api/chat` NDJSON, so
//! the runner can be pointed at it to measure the harness itself: the final event reports when
//! the tokens were really sent, so any difference between what the runner records and those
//! times is the harness's own error. A calibrated signal source, not a stand-in for a server.
//!
//! Like a reasoning model, it can spend the first `reasoning_tokens` of each response
//! thinking: those go out as `delta.reasoning_content` (llama-server, older vLLM) or
//! `delta.reasoning` (vLLM) on the chat endpoint and as `thinking` / `message.thinking` on
//! Ollama's; llama.cpp's raw `/completion` has no reasoning field, so there every token is text.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub ttft: Duration,
    pub itl: Duration,
    /// Tokens per response when the request does not set a limit.
    pub tokens: u32,
    /// The first this many tokens of each response are reasoning.
    pub reasoning_tokens: u32,
    pub reasoning_field: ReasoningField,
}

/// The delta field the chat endpoint streams reasoning in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReasoningField {
    /// llama-server and vLLM before late 2025.
    ReasoningContent,
    /// vLLM since.
    Reasoning,
}

impl ReasoningField {
    fn key(self) -> &'static str {
        match self {
            ReasoningField::ReasoningContent => "reasoning_content",
            ReasoningField::Reasoning => "reasoning",
        }
    }
}

/// The true timings of every finished response, one JSON line each, for clients that do not
/// record the server's final event (other benchmark tools measured against the same pacer):
/// `prompt_ms` and `predicted_ms` as in the final event, and, so that a client's requests can
/// be paired with these lines and its send times judged here, the request's arrival (when the
/// handler got it) and the first and last token's sends as Unix-epoch nanoseconds, and what
/// tells the request apart (`Identity`).
type TruthLog = Option<Arc<Mutex<std::fs::File>>>;

#[derive(Clone)]
struct Pacer {
    schedule: Schedule,
    log: TruthLog,
    /// Ollama: the model and context length of the last request, for `/api/ps`.
    loaded: Arc<Mutex<Option<(String, u64)>>>,
}

#[derive(Clone, Copy)]
enum Format {
    LlamaCpp,
    OpenAi(ReasoningField),
    OllamaGenerate,
    OllamaChat,
}

fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn ndjson(v: &Value) -> String {
    format!("{v}\n")
}

const MODEL: &str = "pacer";
const CREATED_AT: &str = "2026-01-01T00:00:00Z";

impl Format {
    /// The event that carries token `i`, reasoning or answer text.
    fn token(self, i: u32, reasoning: bool) -> String {
        let text = format!(" t{i}");
        match self {
            Format::LlamaCpp => {
                sse(&json!({"content": text, "stop": false, "tokens_predicted": i + 1}))
            }
            Format::OpenAi(field) => {
                let key = if reasoning { field.key() } else { "content" };
                sse(
                    &json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {key: text}, "finish_reason": null}]}),
                )
            }
            Format::OllamaGenerate => {
                let mut v = json!({"model": MODEL, "created_at": CREATED_AT, "response": "", "done": false});
                v[if reasoning { "thinking" } else { "response" }] = json!(text);
                ndjson(&v)
            }
            Format::OllamaChat => {
                let mut message = json!({"role": "assistant", "content": ""});
                message[if reasoning { "thinking" } else { "content" }] = json!(text);
                ndjson(
                    &json!({"model": MODEL, "created_at": CREATED_AT, "message": message, "done": false}),
                )
            }
        }
    }

    /// The closing events: counts, and the timings as they happened.
    fn tail(self, tokens: u32, prompt_ms: f64, predicted_ms: f64) -> String {
        let timings = json!({"prompt_n": 1, "prompt_ms": prompt_ms, "cache_n": 0, "predicted_n": tokens, "predicted_ms": predicted_ms});
        let ns = |ms: f64| (ms * 1e6).round() as u64;
        let ollama_last = |v: &mut Value| {
            for (k, x) in [
                ("done", json!(true)),
                ("done_reason", json!("length")),
                ("total_duration", json!(ns(prompt_ms + predicted_ms))),
                ("load_duration", json!(0)),
                ("prompt_eval_count", json!(1)),
                ("prompt_eval_duration", json!(ns(prompt_ms))),
                ("eval_count", json!(tokens)),
                ("eval_duration", json!(ns(predicted_ms))),
            ] {
                v[k] = x;
            }
        };
        match self {
            Format::LlamaCpp => {
                sse(&json!({"content": "", "stop": true, "stop_type": "limit", "timings": timings}))
            }
            Format::OpenAi(_) => format!(
                "{}{}data: [DONE]\n\n",
                sse(
                    &json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
                ),
                sse(
                    &json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": tokens}, "timings": timings})
                ),
            ),
            Format::OllamaGenerate => {
                let mut v = json!({"model": MODEL, "created_at": CREATED_AT, "response": ""});
                ollama_last(&mut v);
                ndjson(&v)
            }
            Format::OllamaChat => {
                let mut v = json!({"model": MODEL, "created_at": CREATED_AT, "message": {"role": "assistant", "content": ""}});
                ollama_last(&mut v);
                ndjson(&v)
            }
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::LlamaCpp | Format::OpenAi(_) => "text/event-stream",
            Format::OllamaGenerate | Format::OllamaChat => "application/x-ndjson",
        }
    }
}

/// What tells a request apart in the truth log, so that a client's own per-request records can
/// be paired with its lines exactly: the `X-Request-ID` header where the client sends one
/// (AIPerf does), and the FNV-1a 64-bit hash (hex) of the prompt's text (the last message's
/// content, its text parts joined, or `prompt`), which tells apart clients that vary prompts.
#[derive(Default)]
struct Identity {
    request_id: Option<String>,
    prompt_fnv1a: Option<String>,
}

impl Identity {
    /// Only worth the work when there is a log to write it to.
    fn of(log: &TruthLog, headers: &HeaderMap, body: &Value) -> Identity {
        if log.is_none() {
            return Identity::default();
        }
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = match body.pointer("/messages").and_then(Value::as_array) {
            Some(messages) => match messages.last().map(|m| &m["content"]) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(parts)) => Some(
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<String>(),
                ),
                _ => None,
            },
            None => body["prompt"].as_str().map(str::to_owned),
        };
        let fnv1a = |s: &str| {
            s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        Identity {
            request_id,
            prompt_fnv1a: text.map(|t| format!("{:016x}", fnv1a(&t))),
        }
    }
}

/// Send times of a response's tokens, kept by the stream that sends them.
struct Sent {
    log: TruthLog,
    id: Identity,
    next: u32,
    first: Option<Instant>,
    last: Option<Instant>,
    done: bool,
}

/// The response body: one event per token at its scheduled time, then the final events with
/// server-side counts and the timings as they happened: `prompt_ms` from the request's
/// arrival to the first token's send, `predicted_ms` from the first send to the last. Any
/// difference between these and what a client measures is the client's own error.
fn paced(schedule: Schedule, log: TruthLog, id: Identity, tokens: u32, format: Format) -> Response {
    let received = Instant::now();
    // The wall clock at arrival, for the truth log; later instants are placed by the monotonic
    // clock's offsets from `received`, so a wall-clock step cannot bend them.
    let received_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = tokio::time::Instant::from_std(received);
    let state = Sent {
        log,
        id,
        next: 0,
        first: None,
        last: None,
        done: false,
    };
    let reasoning = match format {
        Format::LlamaCpp => 0,
        _ => schedule.reasoning_tokens,
    };
    let stream = futures_util::stream::unfold(state, move |mut sent| async move {
        if sent.next < tokens {
            let i = sent.next;
            tokio::time::sleep_until(start + schedule.ttft + schedule.itl * i).await;
            let now = Instant::now();
            sent.first.get_or_insert(now);
            sent.last = Some(now);
            sent.next += 1;
            return Some((Ok::<_, Infallible>(format.token(i, i < reasoning)), sent));
        }
        if sent.done {
            return None;
        }
        sent.done = true;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let prompt_ms = sent.first.map_or(0.0, |f| ms(f.duration_since(received)));
        let predicted_ms = sent
            .first
            .zip(sent.last)
            .map_or(0.0, |(f, l)| ms(l.duration_since(f)));
        if let Some(file) = &sent.log
            && let Ok(mut f) = file.lock()
        {
            let unix_ns = |t: Option<Instant>| {
                t.map(|t| received_unix_ns + t.duration_since(received).as_nanos() as u64)
            };
            let _ = writeln!(
                f,
                "{}",
                json!({
                    "prompt_ms": prompt_ms,
                    "predicted_ms": predicted_ms,
                    "tokens": tokens,
                    "arrival_unix_ns": received_unix_ns,
                    "first_token_unix_ns": unix_ns(sent.first),
                    "last_token_unix_ns": unix_ns(sent.last),
                    "request_id": sent.id.request_id,
                    "prompt_fnv1a": sent.id.prompt_fnv1a,
                })
            );
        }
        Some((Ok(format.tail(tokens, prompt_ms, predicted_ms)), sent))
    });
    (
        [("content-type", format.content_type())],
        Body::from_stream(stream),
    )
        .into_response()
}

fn requested_tokens(body: &Value, pointer: &str, default: u32) -> u32 {
    body.pointer(pointer)
        .and_then(Value::as_u64)
        .map_or(default, |n| n as u32)
}

async fn completion(
    State(p): State<Pacer>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let tokens = requested_tokens(&body, "/n_predict", p.schedule.tokens);
    let id = Identity::of(&p.log, &headers, &body);
    paced(p.schedule, p.log, id, tokens, Format::LlamaCpp)
}

async fn chat(State(p): State<Pacer>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    // OpenAI clients name the limit max_tokens or max_completion_tokens.
    let tokens = requested_tokens(
        &body,
        "/max_tokens",
        requested_tokens(&body, "/max_completion_tokens", p.schedule.tokens),
    );
    let format = Format::OpenAi(p.schedule.reasoning_field);
    let id = Identity::of(&p.log, &headers, &body);
    paced(p.schedule, p.log, id, tokens, format)
}

async fn ollama(p: Pacer, headers: HeaderMap, body: Value, format: Format) -> Response {
    let tokens = requested_tokens(&body, "/options/num_predict", p.schedule.tokens);
    let model = body["model"].as_str().unwrap_or(MODEL).to_owned();
    let num_ctx = body.pointer("/options/num_ctx").and_then(Value::as_u64);
    if let Ok(mut loaded) = p.loaded.lock() {
        *loaded = Some((model, num_ctx.unwrap_or(2048)));
    }
    let id = Identity::of(&p.log, &headers, &body);
    paced(p.schedule, p.log, id, tokens, format)
}

async fn ollama_generate(
    State(p): State<Pacer>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    ollama(p, headers, body, Format::OllamaGenerate).await
}

async fn ollama_chat(
    State(p): State<Pacer>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    ollama(p, headers, body, Format::OllamaChat).await
}

/// Ollama's `/api/ps`: the model of the last request, with the context length it asked for.
async fn ollama_ps(State(p): State<Pacer>) -> Json<Value> {
    let loaded = p.loaded.lock().ok().and_then(|l| l.clone());
    Json(
        json!({"models": loaded.map_or_else(Vec::new, |(model, ctx)| vec![
            json!({"name": model, "model": model, "size": 0, "size_vram": 0, "context_length": ctx})
        ])}),
    )
}

/// Serves until the process is stopped. Prints the URL once listening.
pub async fn serve(
    host: &str,
    port: u16,
    schedule: Schedule,
    log: Option<&std::path::Path>,
) -> std::io::Result<()> {
    let log = log
        .map(std::fs::File::create)
        .transpose()?
        .map(|f| Arc::new(Mutex::new(f)));
    let build = concat!("banterhearts-pacer ", env!("CARGO_PKG_VERSION"));
    let app = axum::Router::new()
        .route("/completion", post(completion))
        .route("/v1/chat/completions", post(chat))
        .route("/api/generate", post(ollama_generate))
        .route("/api/chat", post(ollama_chat))
        .route("/api/ps", get(ollama_ps))
        .route("/api/version", get(move || async move { Json(json!({"version": build})) }))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        // OpenAI clients (GuideLLM among them) ask which models a server has before they send.
        .route("/v1/models", get(|| async { Json(json!({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "banterhearts"}]})) }))
        .route("/props", get(move || async move { Json(json!({"build_info": build, "total_slots": 4096})) }))
        .with_state(Pacer {
            schedule,
            log,
            loaded: Arc::default(),
        });
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    println!("pacer listening on http://{}", listener.local_addr()?);
    // Without TCP_NODELAY a token written while the headers are still unacknowledged waits for
    // the client's delayed ACK (up to 40 ms), which would be charged to the harness.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
