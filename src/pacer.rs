//! The pacer: a streaming server that emits tokens on an exact schedule (first after
//! `ttft_ms`, then one every `itl_ms`). It speaks llama.cpp's `/completion` and the OpenAI
//! `/v1/chat/completions` SSE formats, so the runner can be pointed at it to measure the
//! harness itself: the final event reports when the tokens were really sent, so any
//! difference between what the runner records and those times is the harness's own error.
//! A calibrated signal source, not a stand-in for a real server.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
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
}

/// The true timings of every finished response, one JSON line each, for clients that do not
/// record the server's final event (other benchmark tools measured against the same pacer).
type TruthLog = Option<Arc<Mutex<std::fs::File>>>;

#[derive(Clone)]
struct Pacer {
    schedule: Schedule,
    log: TruthLog,
}

#[derive(Clone, Copy)]
enum Format {
    LlamaCpp,
    OpenAi,
}

fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// Send times of a response's tokens, kept by the stream that sends them.
struct Sent {
    log: TruthLog,
    next: u32,
    first: Option<Instant>,
    last: Option<Instant>,
    done: bool,
}

/// The response body: one SSE event per token at its scheduled time, then the final events
/// with server-side counts and the timings as they happened: `prompt_ms` from the request's
/// arrival to the first token's send, `predicted_ms` from the first send to the last. Any
/// difference between these and what a client measures is the client's own error.
fn paced(schedule: Schedule, log: TruthLog, tokens: u32, format: Format) -> Response {
    let received = Instant::now();
    let start = tokio::time::Instant::from_std(received);
    let state = Sent {
        log,
        next: 0,
        first: None,
        last: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut sent| async move {
        if sent.next < tokens {
            let i = sent.next;
            tokio::time::sleep_until(start + schedule.ttft + schedule.itl * i).await;
            let now = Instant::now();
            sent.first.get_or_insert(now);
            sent.last = Some(now);
            sent.next += 1;
            let text = format!(" t{i}");
            let body = match format {
                Format::LlamaCpp => {
                    sse(&json!({"content": text, "stop": false, "tokens_predicted": i + 1}))
                }
                Format::OpenAi => sse(
                    &json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}),
                ),
            };
            return Some((Ok::<_, Infallible>(body), sent));
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
        let timings = json!({"prompt_n": 1, "prompt_ms": prompt_ms, "cache_n": 0, "predicted_n": tokens, "predicted_ms": predicted_ms});
        if let Some(file) = &sent.log
            && let Ok(mut f) = file.lock()
        {
            let _ = writeln!(
                f,
                "{}",
                json!({"prompt_ms": prompt_ms, "predicted_ms": predicted_ms, "tokens": tokens})
            );
        }
        let tail = match format {
            Format::LlamaCpp => sse(&json!({"content": "", "stop": true, "timings": timings})),
            Format::OpenAi => format!(
                "{}{}data: [DONE]\n\n",
                sse(
                    &json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
                ),
                sse(
                    &json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": tokens}, "timings": timings})
                ),
            ),
        };
        Some((Ok(tail), sent))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn requested_tokens(body: &Value, key: &str, default: u32) -> u32 {
    body.get(key)
        .and_then(Value::as_u64)
        .map_or(default, |n| n as u32)
}

async fn completion(State(p): State<Pacer>, Json(body): Json<Value>) -> Response {
    let tokens = requested_tokens(&body, "n_predict", p.schedule.tokens);
    paced(p.schedule, p.log, tokens, Format::LlamaCpp)
}

async fn chat(State(p): State<Pacer>, Json(body): Json<Value>) -> Response {
    // OpenAI clients name the limit max_tokens or max_completion_tokens.
    let tokens = requested_tokens(
        &body,
        "max_tokens",
        requested_tokens(&body, "max_completion_tokens", p.schedule.tokens),
    );
    paced(p.schedule, p.log, tokens, Format::OpenAi)
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
    let app = axum::Router::new()
        .route("/completion", post(completion))
        .route("/v1/chat/completions", post(chat))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        // OpenAI clients (GuideLLM among them) ask which models a server has before they send.
        .route("/v1/models", get(|| async { Json(json!({"object": "list", "data": [{"id": "pacer", "object": "model", "owned_by": "banterhearts"}]})) }))
        .route("/props", get(|| async { Json(json!({"build_info": concat!("banterhearts-pacer ", env!("CARGO_PKG_VERSION")), "total_slots": 4096})) }))
        .with_state(Pacer { schedule, log });
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    println!("pacer listening on http://{}", listener.local_addr()?);
    // Without TCP_NODELAY a token written while the headers are still unacknowledged waits for
    // the client's delayed ACK (up to 40 ms), which would be charged to the harness.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
