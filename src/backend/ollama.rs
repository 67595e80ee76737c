//! Ollama's native API: `/api/generate` or `/api/chat`, newline-delimited JSON. Sampling goes in
//! `options` (temperature, num_ctx, num_gpu, seed; `num_predict` is the output limit),
//! `keep_alive` and `think` at the top level. Thinking-capable models think unless `think` is
//! false (Ollama turns it on when the field is absent, since 0.12.4), streaming the trace as
//! `thinking` (generate) or `message.thinking` (chat). The final object (`done: true`) carries
//! counts and durations in nanoseconds, and may carry text of its own.
//!
//! `prompt_eval_count` counts every prompt token, the ones reused from the KV cache too, while
//! `prompt_eval_duration` covers only those evaluated anew (server/routes.go, llm/llama_server.go
//! `promptEvalCount`): their ratio is no prefill rate, so none is derived (docs/metrics.md).

use serde_json::{Value, json};

use super::framing::Framing;
use super::{
    GenerationRequest, Protocol, ServerReport, StreamEvent, authorized, body, f64_at, parse_json,
    server_error, text_at, u64_at,
};
use crate::spec::params::Dialect;

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
        let mut start =
            json!({"model": req.model.clone().unwrap_or_default(), "stream": true, "options": {}});
        let path = match self.endpoint {
            OllamaEndpoint::Generate => {
                start["prompt"] = json!(req.document());
                "/api/generate"
            }
            OllamaEndpoint::Chat => {
                start["messages"] = req.messages();
                "/api/chat"
            }
        };
        let builder = client
            .post(format!("{base}{path}"))
            .json(&body(Dialect::Ollama, start, req));
        authorized(builder, req.api_key.as_deref())
    }

    fn framing(&self) -> Framing {
        Framing::Ndjson
    }

    fn decode(&self, line: &str) -> Result<Vec<StreamEvent>, String> {
        let v = parse_json(line.trim())?;
        if let Some(err) = server_error(&v) {
            return Err(err);
        }
        let (thinking, text) = match self.endpoint {
            OllamaEndpoint::Generate => (text_at(&v, "/thinking"), text_at(&v, "/response")),
            OllamaEndpoint::Chat => (
                text_at(&v, "/message/thinking"),
                text_at(&v, "/message/content"),
            ),
        };
        let mut events = Vec::new();
        if let Some(t) = thinking {
            events.push(StreamEvent::Reasoning(t.to_owned()));
        }
        if let Some(t) = text {
            events.push(StreamEvent::Content(t.to_owned()));
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            let ms = |key: &str| f64_at(&v, key).map(|ns| ns / NS_PER_MS);
            events.push(StreamEvent::Report(ServerReport {
                prompt_tokens: u64_at(&v, "prompt_eval_count"),
                // Thinking tokens included: Ollama counts every generated token.
                output_tokens: u64_at(&v, "eval_count"),
                reasoning_tokens: None,
                // Unknown: the count includes cached tokens the duration does not cover.
                prompt_eval_tokens: None,
                prompt_ms: ms("prompt_eval_duration"),
                decode_ms: ms("eval_duration"),
                cache_n: None,
                load_ms: ms("load_duration"),
            }));
            if let Some(reason) = text_at(&v, "/done_reason") {
                events.push(StreamEvent::Finish(reason.to_owned()));
            }
            events.push(StreamEvent::Done);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinking_content_and_a_final_line_with_text() {
        // Lines as Ollama's encoding/json writes api.ChatResponse (omitempty `thinking`).
        let p = Ollama {
            endpoint: OllamaEndpoint::Chat,
        };
        let think = r#"{"model":"qwen3","created_at":"2025-10-26T17:21:21.196249Z","message":{"role":"assistant","content":"","thinking":"Okay"},"done":false}"#;
        assert_eq!(
            p.decode(think).unwrap(),
            vec![StreamEvent::Reasoning("Okay".into())]
        );
        let last = r#"{"model":"qwen3","created_at":"2025-10-26T17:21:21.3Z","message":{"role":"assistant","content":" end."},"done":true,"done_reason":"stop","total_duration":174560334,"load_duration":101397084,"prompt_eval_count":11,"prompt_eval_duration":13074791,"eval_count":3,"eval_duration":52479709}"#;
        let events = p.decode(last).unwrap();
        assert_eq!(events[0], StreamEvent::Content(" end.".into()));
        let StreamEvent::Report(r) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!((r.prompt_tokens, r.prompt_eval_tokens), (Some(11), None));
        assert_eq!(
            &events[2..],
            &[StreamEvent::Finish("stop".into()), StreamEvent::Done]
        );
    }
}
