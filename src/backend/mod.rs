//! Server protocols behind one small trait. A protocol knows how to phrase a streaming request
//! and how to read one message of the response; framing (SSE events, NDJSON lines) is shared
//! in `framing`, and timing is the runner's job, so every backend is measured by the same code.

pub mod framing;
mod llamacpp;
pub mod metrics;
mod ollama;
mod openai;
pub mod tokenize;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use framing::{Decoder, Framing};
pub use llamacpp::LlamaCpp;
pub use ollama::{Ollama, OllamaEndpoint};
pub use openai::OpenAi;

use crate::spec::params::{self, Dialect, Field};
use crate::spec::{BackendKind, OllamaApi};

/// One generation request, as the runner builds it from a cell.
#[derive(Debug, Clone, Default)]
pub struct GenerationRequest {
    pub prompt: String,
    pub max_tokens: u32,
    pub model: Option<String>,
    /// Request parameters from the cell, by the spec's names (temperature, seed, think, ...);
    /// each protocol sends them under its server's names (`spec::params`).
    pub params: Map<String, Value>,
    /// Bearer token; never stored.
    pub api_key: Option<String>,
    /// The lengths this request was built to, where the workload asks for exact ones: its
    /// prompt in the server's tokens (template excluded) and its output (`max_tokens` with
    /// `ignore_eos`). Recorded with the request, not sent.
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    /// The prompt as token ids, sent instead of `prompt` where the endpoint takes them
    /// (llama.cpp `/completion`): exact by construction, shared prefixes token for token.
    pub prompt_ids: Option<std::sync::Arc<Vec<u32>>>,
    /// Earlier turns of a multi-turn session, oldest first: chat endpoints send them as the
    /// messages before `prompt`; completion endpoints, as the text before it.
    pub history: Vec<Turn>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

impl GenerationRequest {
    /// The conversation as chat messages: the history, then the prompt as the user's.
    pub fn messages(&self) -> Value {
        let mut messages: Vec<Value> = self
            .history
            .iter()
            .map(|t| json!({"role": t.role, "content": t.content}))
            .collect();
        messages.push(json!({"role": "user", "content": self.prompt}));
        Value::Array(messages)
    }

    /// The conversation as one text, for completion endpoints: each earlier message on its
    /// own lines, then the prompt, so that every turn's text starts with the one before.
    pub fn document(&self) -> String {
        let mut text = String::new();
        for t in &self.history {
            text.push_str(&t.content);
            text.push_str("\n\n");
        }
        text.push_str(&self.prompt);
        text
    }
}

/// What one message of a streamed response contains.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Answer text (chunks are not tokens; counts come from the server).
    Content(String),
    /// Reasoning text ("thinking"), generated before or between answer text.
    Reasoning(String),
    /// Server-side counts and timings; a later report replaces an earlier one field by field.
    Report(ServerReport),
    /// The server's reason for ending generation (OpenAI `finish_reason`, Ollama `done_reason`).
    Finish(String),
    /// The protocol's end-of-stream marker (`[DONE]`, `stop: true`, `done: true`).
    Done,
}

/// Server-reported counts and timings of one request. Durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Every generated token, reasoning included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Of `output_tokens`, those spent reasoning (OpenAI `completion_tokens_details`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Prompt tokens evaluated in `prompt_ms` (llama.cpp `prompt_n`); unknown where the server
    /// counts cached tokens with the evaluated ones (Ollama).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_eval_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_ms: Option<f64>,
    /// Prompt tokens served from the KV cache (llama.cpp `cache_n`, OpenAI `cached_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_n: Option<u64>,
    /// Model load time (Ollama).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
}

impl ServerReport {
    /// Takes every field `later` has: usage may come in several chunks (vLLM's
    /// `continuous_usage_stats` sends it with every chunk, starting with the role chunk's
    /// `completion_tokens: 0`), and the latest count is the one that covers the whole response.
    pub fn update(&mut self, later: ServerReport) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            prompt_tokens,
            output_tokens,
            reasoning_tokens,
            prompt_eval_tokens,
            prompt_ms,
            decode_ms,
            cache_n,
            load_ms
        );
    }
}

/// A streaming protocol.
pub trait Protocol: Send + Sync {
    /// The streaming request for `req` against the server at `base` (no trailing slash).
    fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        req: &GenerationRequest,
    ) -> reqwest::RequestBuilder;
    /// How the response body is divided into messages.
    fn framing(&self) -> Framing;
    /// Reads one message: an SSE event's data or an NDJSON line. An `Err` is a
    /// server-reported failure or a message that cannot be read.
    fn decode(&self, message: &str) -> Result<Vec<StreamEvent>, String>;
}

/// The protocol a spec backend speaks.
pub fn protocol(backend: &crate::spec::Backend) -> Box<dyn Protocol> {
    let dialect = Dialect::of(backend);
    match backend.kind {
        BackendKind::LlamaCpp => Box::new(LlamaCpp),
        BackendKind::Openai => Box::new(OpenAi { dialect }),
        BackendKind::Ollama => Box::new(Ollama {
            endpoint: match backend.endpoint {
                Some(OllamaApi::Chat) => OllamaEndpoint::Chat,
                _ => OllamaEndpoint::Generate,
            },
        }),
    }
}

/// The request body: `base` plus the request's parameters and output limit under `dialect`'s
/// names. Parameters the dialect has no field for were refused by validation and are left out.
pub(crate) fn body(dialect: Dialect, mut base: Value, req: &GenerationRequest) -> Value {
    let mut put = |field: Field, value: Value| match field {
        Field::Top(name) => base[name] = value,
        Field::OllamaOption(name) => base["options"][name] = value,
    };
    put(params::max_tokens_field(dialect), json!(req.max_tokens));
    for (name, value) in &req.params {
        if let Ok(field) = params::field(dialect, name) {
            put(field, value.clone());
        }
    }
    base
}

/// A request with the API key, when there is one, as a bearer token.
pub(crate) fn authorized(
    builder: reqwest::RequestBuilder,
    key: Option<&str>,
) -> reqwest::RequestBuilder {
    match key {
        Some(key) => builder.bearer_auth(key),
        None => builder,
    }
}

pub(crate) fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("malformed JSON from server ({e}): {}", excerpt(text, 200)))
}

/// The server's own words in a message's `error` field: the string, or the object's `message`
/// (else the object itself); none for `"error": null` or no `error`.
pub(crate) fn error_message(v: &Value) -> Option<String> {
    match v.get("error")? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(
            other
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| other.to_string(), str::to_owned),
        ),
    }
}

/// A server-reported error in a message, if it carries one.
pub(crate) fn server_error(v: &Value) -> Option<String> {
    error_message(v).map(|m| format!("server error: {}", excerpt(&m, 500)))
}

/// What an error response's body says: its JSON `error`, else the body's first `max`
/// characters.
pub(crate) fn error_body_message(body: &str, max: usize) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| error_message(&v))
        .map_or_else(|| excerpt(body.trim(), max), |m| excerpt(&m, max))
}

/// Another process's text (a server's body, a program's output) as it may be shown: its first
/// `max` characters, with control characters escaped, so that a hostile or broken server cannot
/// send escape sequences to the user's terminal or break a report's table.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub(crate) fn f64_at(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// A non-empty string at `pointer`.
pub(crate) fn text_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// Sends a request that is safe to repeat (a tokenizer call, a `/metrics` scrape), and once
/// more if it failed before the server answered: llama-server closes a kept-alive connection
/// after a few requests, and the client may pick that connection just as it goes, which fails
/// the request without its ever reaching the server.
pub async fn send_repeatable(
    make: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    match make().send().await {
        // A timeout reached the server, or may have: not repeated.
        Err(e) if (e.is_request() || e.is_connect()) && !e.is_timeout() => make().send().await,
        other => other,
    }
}
