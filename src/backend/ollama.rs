//! Ollama's native API: `/api/generate` or `/api/chat`, newline-delimited JSON. Sampling goes in
//! `options` (temperature, num_ctx, num_gpu, seed; `num_predict` is the output limit),
//! `keep_alive` at the top level. The final object (`done: true`) carries counts and durations
//! in nanoseconds.

use serde_json::{Map, Value, json};

use super::{GenerationRequest, Protocol, ServerReport, StreamEvent, f64_at, parse_json, u64_at};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OllamaEndpoint {
    Generate,
    Chat,
}

pub struct Ollama {
    pub endpoint: OllamaEndpoint,
}

const NS_PER_MS: f64 = 1e6;

impl Protocol for Ollama {
    fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        req: &GenerationRequest,
    ) -> reqwest::RequestBuilder {
        let mut options = Map::new();
        options.insert("num_predict".into(), json!(req.max_tokens));
        let mut body = json!({"model": req.model.clone().unwrap_or_default(), "stream": true});
        for (k, v) in &req.options {
            if k == "keep_alive" {
                body["keep_alive"] = v.clone();
            } else {
                options.insert(k.clone(), v.clone());
            }
        }
        body["options"] = Value::Object(options);
        let path = match self.endpoint {
            OllamaEndpoint::Generate => {
                body["prompt"] = json!(req.prompt);
                "/api/generate"
            }
            OllamaEndpoint::Chat => {
                body["messages"] = json!([{"role": "user", "content": req.prompt}]);
                "/api/chat"
            }
        };
        client.post(format!("{base}{path}")).json(&body)
    }

    fn decode_line(&self, line: &str) -> Result<Vec<StreamEvent>, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Vec::new());
        }
        let v = parse_json(line)?;
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            return Err(format!("server error: {err}"));
        }
        let text = match self.endpoint {
            OllamaEndpoint::Generate => v.get("response"),
            OllamaEndpoint::Chat => v.pointer("/message/content"),
        };
        let mut events = Vec::new();
        if let Some(text) = text.and_then(Value::as_str).filter(|t| !t.is_empty()) {
            events.push(StreamEvent::Content(text.to_owned()));
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            let ms = |key: &str| f64_at(&v, key).map(|ns| ns / NS_PER_MS);
            events.push(StreamEvent::Report(ServerReport {
                prompt_tokens: u64_at(&v, "prompt_eval_count"),
                output_tokens: u64_at(&v, "eval_count"),
                prompt_eval_tokens: u64_at(&v, "prompt_eval_count"),
                prompt_ms: ms("prompt_eval_duration"),
                decode_ms: ms("eval_duration"),
                cache_n: None,
                load_ms: ms("load_duration"),
            }));
            events.push(StreamEvent::Done);
        }
        Ok(events)
    }

    fn info_path(&self) -> &'static str {
        "/api/version"
    }
}
