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
//!
//! It can also misbehave on purpose, the way real servers do under crashes, overload and bugs
//! (`Fault`): every `every`-th generation request to an endpoint gets the fault, the others a
//! normal response, so a test sees both the failure and that the next run is measured normally.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
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

/// One way of misbehaving. Faults that act mid-stream (reset, stall, garbage, long line) do so
/// after the first token, so a client has begun measuring when they strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    /// Reset the connection (TCP RST) after the first token.
    Reset,
    /// Send the first token, then nothing, without closing.
    StallAfterFirstToken,
    /// Accept the request and never send the response headers.
    StallBeforeHeaders,
    /// After the first token, a message that is not JSON (control and non-UTF-8 bytes).
    Garbage,
    /// After the first token, one 10 MB line (a well-formed token message of 10 MB of text).
    LongLine,
    /// Answer 429 Too Many Requests, with the server's own error body.
    #[value(name = "http-429")]
    Http429,
    /// Answer 500 Internal Server Error.
    #[value(name = "http-500")]
    Http500,
    /// Answer 503 Service Unavailable.
    #[value(name = "http-503")]
    Http503,
    /// Stream every token, then close without the final event (no counts, no end marker).
    NoFinalEvent,
    /// Send the whole normal response one byte per second.
    Drip,
}

impl FaultKind {
    fn status(self) -> Option<u16> {
        match self {
            FaultKind::Http429 => Some(429),
            FaultKind::Http500 => Some(500),
            FaultKind::Http503 => Some(503),
            _ => None,
        }
    }
}

/// Which requests misbehave, and how.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub kind: FaultKind,
    /// Every this many generation requests per endpoint (1: all), counting from the first.
    pub every: u32,
    /// Seconds to send in `Retry-After` with an error status.
    pub retry_after_s: Option<u32>,
}

/// How long the 10 MB line is.
const LONG_LINE_BYTES: usize = 10 * 1000 * 1000;

#[derive(Clone)]
struct Pacer {
    schedule: Schedule,
    log: TruthLog,
    fault: Option<Fault>,
    /// Generation requests so far, per endpoint (the `Format`'s index).
    requests: Arc<[std::sync::atomic::AtomicU32; 4]>,
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

impl Pacer {
    /// The fault this request gets, if it is one of every `every`-th to its endpoint.
    fn fault_for(&self, format: Format) -> Option<FaultKind> {
        let fault = self.fault?;
        let index = match format {
            Format::LlamaCpp => 0,
            Format::OpenAi(_) => 1,
            Format::OllamaGenerate => 2,
            Format::OllamaChat => 3,
        };
        let n = self.requests[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        n.is_multiple_of(fault.every.max(1)).then_some(fault.kind)
    }
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
        self.chunk(&format!(" t{i}"), i + 1, reasoning)
    }

    /// The event that carries `text`, the `predicted`-th token, reasoning or answer.
    fn chunk(self, text: &str, predicted: u32, reasoning: bool) -> String {
        match self {
            Format::LlamaCpp => {
                sse(&json!({"content": text, "stop": false, "tokens_predicted": predicted}))
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

    /// The error body each server sends with an error status, in its own shape.
    fn error_body(self, status: u16) -> Value {
        let message = format!("pacer: injected HTTP {status}");
        match self {
            Format::LlamaCpp => {
                json!({"error": {"code": status, "message": message, "type": "unavailable_error"}})
            }
            Format::OpenAi(_) => {
                json!({"error": {"message": message, "type": "server_error", "code": status}})
            }
            Format::OllamaGenerate | Format::OllamaChat => json!({"error": message}),
        }
    }

    /// A framed message whose payload is no JSON: control bytes, invalid UTF-8, braces.
    fn garbage(self) -> Vec<u8> {
        let noise: &[u8] = b"\x00\x01\xff\xfe{{\x7f\x1b[31m<html>\xc3\x28 not json";
        match self {
            Format::LlamaCpp | Format::OpenAi(_) => [b"data: ", noise, b"\n\n"].concat(),
            Format::OllamaGenerate | Format::OllamaChat => [noise, b"\n"].concat(),
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
    /// A mid-stream fault still to strike (it does once, after the first token).
    fault: Option<FaultKind>,
}

type Chunk = Result<Bytes, std::io::Error>;

/// The response body: one event per token at its scheduled time, then the final events with
/// server-side counts and the timings as they happened: `prompt_ms` from the request's
/// arrival to the first token's send, `predicted_ms` from the first send to the last. Any
/// difference between these and what a client measures is the client's own error. A fault
/// bends this body (or replaces it, for the status faults, or delays it without end).
async fn paced(p: Pacer, id: Identity, tokens: u32, format: Format) -> Response {
    let schedule = p.schedule;
    let fault = p.fault_for(format);
    let received = Instant::now();
    if let Some(status) = fault.and_then(FaultKind::status) {
        let mut response = (
            axum::http::StatusCode::from_u16(status).unwrap_or_default(),
            Json(format.error_body(status)),
        )
            .into_response();
        if let Some(s) = p.fault.and_then(|f| f.retry_after_s) {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(s));
        }
        return response;
    }
    if fault == Some(FaultKind::StallBeforeHeaders) {
        std::future::pending::<()>().await;
    }
    // The wall clock at arrival, for the truth log; later instants are placed by the monotonic
    // clock's offsets from `received`, so a wall-clock step cannot bend them.
    let received_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = tokio::time::Instant::from_std(received);
    let state = Sent {
        log: p.log,
        id,
        next: 0,
        first: None,
        last: None,
        done: false,
        fault,
    };
    let reasoning = match format {
        Format::LlamaCpp => 0,
        _ => schedule.reasoning_tokens,
    };
    let stream = futures_util::stream::unfold(state, move |mut sent| async move {
        if sent.next == 1 {
            match sent.fault.take() {
                Some(FaultKind::StallAfterFirstToken) => std::future::pending::<()>().await,
                Some(FaultKind::Reset) => {
                    // An error from the body makes hyper drop the connection; with the linger
                    // time set to zero (`serve`), the kernel sends a RST instead of a FIN. A RST
                    // discards what the client has not read yet, so the first token gets a
                    // moment to be read first.
                    tokio::time::sleep(schedule.itl.max(Duration::from_millis(50))).await;
                    let e = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fault");
                    return Some((Err(e), sent));
                }
                Some(FaultKind::Garbage) => {
                    return Some((Ok(Bytes::from(format.garbage())), sent));
                }
                Some(FaultKind::LongLine) => {
                    let text = "x".repeat(LONG_LINE_BYTES);
                    return Some((Ok(Bytes::from(format.chunk(&text, 2, false))), sent));
                }
                other => sent.fault = other,
            }
        }
        if sent.next < tokens {
            let i = sent.next;
            tokio::time::sleep_until(start + schedule.ttft + schedule.itl * i).await;
            let now = Instant::now();
            sent.first.get_or_insert(now);
            sent.last = Some(now);
            sent.next += 1;
            return Some((Ok(Bytes::from(format.token(i, i < reasoning))), sent));
        }
        if sent.done || sent.fault == Some(FaultKind::NoFinalEvent) {
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
        Some((
            Ok(Bytes::from(format.tail(tokens, prompt_ms, predicted_ms))),
            sent,
        ))
    });
    let body = if fault == Some(FaultKind::Drip) {
        Body::from_stream(drip(stream))
    } else {
        Body::from_stream(stream)
    };
    ([("content-type", format.content_type())], body).into_response()
}

/// The body's bytes one a second, each as its own write, the first at once.
fn drip(
    body: impl futures_util::Stream<Item = Chunk> + Send + 'static,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    use futures_util::StreamExt;
    body.flat_map(|chunk| {
        let bytes: Vec<Chunk> = match chunk {
            Ok(b) => b
                .iter()
                .map(|x| Ok(Bytes::copy_from_slice(&[*x])))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(bytes)
    })
    .enumerate()
    .then(|(i, byte)| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        byte
    })
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
    paced(p, id, tokens, Format::LlamaCpp).await
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
    paced(p, id, tokens, format).await
}

async fn ollama(p: Pacer, headers: HeaderMap, body: Value, format: Format) -> Response {
    let tokens = requested_tokens(&body, "/options/num_predict", p.schedule.tokens);
    let model = body["model"].as_str().unwrap_or(MODEL).to_owned();
    let num_ctx = body.pointer("/options/num_ctx").and_then(Value::as_u64);
    if let Ok(mut loaded) = p.loaded.lock() {
        *loaded = Some((model, num_ctx.unwrap_or(2048)));
    }
    let id = Identity::of(&p.log, &headers, &body);
    paced(p, id, tokens, format).await
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
    fault: Option<Fault>,
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
            fault,
            requests: Arc::default(),
            loaded: Arc::default(),
        });
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    println!("pacer listening on http://{}", listener.local_addr()?);
    // Without TCP_NODELAY a token written while the headers are still unacknowledged waits for
    // the client's delayed ACK (up to 40 ms), which would be charged to the harness.
    let reset = fault.is_some_and(|f| f.kind == FaultKind::Reset);
    let listener = listener.tap_io(move |tcp| {
        let _ = tcp.set_nodelay(true);
        if reset {
            // Deprecated because a positive linger time blocks the thread that drops the
            // socket; a zero one aborts the connection at once, which is the point here.
            #[allow(deprecated)]
            let _ = tcp.set_linger(Some(Duration::ZERO));
        }
    });
    axum::serve(listener, app).await
}
