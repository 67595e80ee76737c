//! Server protocols behind one small trait. A protocol knows how to phrase a streaming request
//! and how to read one line of the response; timing is the runner's job, so every backend is
//! measured by the same code.

mod llamacpp;
mod ollama;
mod openai;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use llamacpp::LlamaCpp;
pub use ollama::{Ollama, OllamaEndpoint};
pub use openai::OpenAi;

use crate::spec::{BackendKind, OllamaApi};

/// One generation request, as the runner builds it from a cell.
#[derive(Debug, Clone, Default)]
pub struct GenerationRequest {
    pub prompt: String,
    pub max_tokens: u32,
    pub model: Option<String>,
    /// Sampling and server options from the cell (temperature, seed, top_p, num_ctx, ...).
    pub options: Map<String, Value>,
    /// Bearer token for OpenAI-compatible servers; never stored.
    pub api_key: Option<String>,
}

/// What one line of a streamed response contains.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Generated text (chunks are not tokens; counts come from the server).
    Content(String),
    /// Server-side counts and timings, usually in the last chunk.
    Report(ServerReport),
    /// The server says the response is complete.
    Done,
}

/// Server-reported counts and timings of one request. Durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Prompt tokens actually evaluated (llama.cpp `prompt_n`, Ollama `prompt_eval_count`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_eval_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_ms: Option<f64>,
    /// Prompt tokens served from the KV cache (llama.cpp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_n: Option<u64>,
    /// Model load time (Ollama).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
}

impl ServerReport {
    /// Fills fields this report lacks from `other` (usage and timings may come in separate chunks).
    pub fn merge(&mut self, other: ServerReport) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            prompt_tokens,
            output_tokens,
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
    /// Reads one line of the response body. An `Err` is a server-reported failure.
    fn decode_line(&self, line: &str) -> Result<Vec<StreamEvent>, String>;
    /// Path that describes the server build and model (`/props`, `/api/version`, `/v1/models`).
    fn info_path(&self) -> &'static str;
}

/// The protocol a spec backend speaks.
pub fn protocol(backend: &crate::spec::Backend) -> Box<dyn Protocol> {
    match backend.kind {
        BackendKind::LlamaCpp => Box::new(LlamaCpp),
        BackendKind::Openai => Box::new(OpenAi),
        BackendKind::Ollama => Box::new(Ollama {
            endpoint: match backend.endpoint {
                Some(OllamaApi::Chat) => OllamaEndpoint::Chat,
                _ => OllamaEndpoint::Generate,
            },
        }),
    }
}

/// Adds the cell's options as top-level request fields (llama.cpp and OpenAI-style bodies).
pub(crate) fn with_options(mut body: Value, options: &Map<String, Value>) -> Value {
    for (k, v) in options {
        body[k.as_str()] = v.clone();
    }
    body
}

/// The JSON payload of a Server-Sent Events `data:` line; `None` for other SSE lines.
pub(crate) fn sse_data(line: &str) -> Option<&str> {
    line.strip_prefix("data:").map(str::trim)
}

pub(crate) fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("malformed JSON from server ({e}): {}", truncate(text, 200)))
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

pub(crate) fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub(crate) fn f64_at(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}
