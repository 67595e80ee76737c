//! OpenAI-compatible `/v1/chat/completions` with SSE streaming and
//! `stream_options.include_usage` (vLLM, llama-server, the OpenAI API). Reasoning models stream
//! their thinking as `delta.reasoning` (vLLM since late 2025) or `delta.reasoning_content`
//! (llama-server, older vLLM; vLLM sent both names for a while); counts come in `usage`, which
//! vLLM may send in every chunk (`continuous_usage_stats`). llama-server adds its `timings` to
//! the last chunk.

use serde_json::{Value, json};

use super::framing::Framing;
use super::llamacpp::timings_report;
use super::{
    GenerationRequest, Protocol, ServerReport, StreamEvent, authorized, body, parse_json,
    server_error, text_at, u64_at,
};
use crate::spec::params::Dialect;

pub struct OpenAi {
    pub dialect: Dialect,
}

impl Protocol for OpenAi {
    fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        req: &GenerationRequest,
    ) -> reqwest::RequestBuilder {
        let mut base_body = json!({
            "messages": req.messages(),
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(model) = &req.model {
            base_body["model"] = json!(model);
        }
        let builder = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body(self.dialect, base_body, req));
        authorized(builder, req.api_key.as_deref())
    }

    fn framing(&self) -> Framing {
        Framing::Sse
    }

    fn decode(&self, data: &str) -> Result<Vec<StreamEvent>, String> {
        if data.trim() == "[DONE]" {
            return Ok(vec![StreamEvent::Done]);
        }
        let v = parse_json(data)?;
        if let Some(err) = server_error(&v) {
            return Err(err);
        }
        let mut events = Vec::new();
        let choices = v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for choice in choices {
            // One of the two names, never both counted: vLLM sent the same text under each.
            let reasoning = text_at(choice, "/delta/reasoning")
                .or_else(|| text_at(choice, "/delta/reasoning_content"));
            if let Some(text) = reasoning {
                events.push(StreamEvent::Reasoning(text.to_owned()));
            }
            if let Some(text) = text_at(choice, "/delta/content") {
                events.push(StreamEvent::Content(text.to_owned()));
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                events.push(StreamEvent::Finish(reason.to_owned()));
            }
        }
        let mut report = v.get("timings").map(timings_report).unwrap_or_default();
        if let Some(usage) = v.get("usage").filter(|u| !u.is_null()) {
            report.update(ServerReport {
                prompt_tokens: u64_at(usage, "prompt_tokens"),
                output_tokens: u64_at(usage, "completion_tokens"),
                reasoning_tokens: usage
                    .pointer("/completion_tokens_details/reasoning_tokens")
                    .and_then(Value::as_u64),
                cache_n: usage
                    .pointer("/prompt_tokens_details/cached_tokens")
                    .and_then(Value::as_u64),
                ..ServerReport::default()
            });
        }
        if report != ServerReport::default() {
            events.push(StreamEvent::Report(report));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::params::OpenAiServer;

    fn vllm() -> OpenAi {
        OpenAi {
            dialect: Dialect::Chat(OpenAiServer::Vllm),
        }
    }

    #[test]
    fn reads_deltas_usage_and_done() {
        let p = vllm();
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}"#;
        assert!(p.decode(role).unwrap().is_empty());
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Hello"}}]}"#;
        assert_eq!(
            p.decode(text).unwrap(),
            vec![StreamEvent::Content("Hello".into())]
        );
        let usage = r#"{"choices":[],"usage":{"completion_tokens":4,"prompt_tokens":31,"total_tokens":35}}"#;
        let StreamEvent::Report(r) = &p.decode(usage).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            (r.prompt_tokens, r.output_tokens, r.decode_ms),
            (Some(31), Some(4), None)
        );
        assert_eq!(p.decode("[DONE]").unwrap(), vec![StreamEvent::Done]);
    }

    #[test]
    fn reasoning_under_either_name_counted_once() {
        let p = vllm();
        // vLLM between PR #27752 and #33402 sent the text under both names.
        let both =
            r#"{"choices":[{"index":0,"delta":{"reasoning":"Hm","reasoning_content":"Hm"}}]}"#;
        assert_eq!(
            p.decode(both).unwrap(),
            vec![StreamEvent::Reasoning("Hm".into())]
        );
        let llama = r#"{"choices":[{"index":0,"delta":{"reasoning_content":"So"}}]}"#;
        assert_eq!(
            p.decode(llama).unwrap(),
            vec![StreamEvent::Reasoning("So".into())]
        );
    }

    #[test]
    fn a_null_error_is_no_error_and_a_real_one_is() {
        let p = vllm();
        let ok = r#"{"error":null,"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#;
        assert_eq!(
            p.decode(ok).unwrap(),
            vec![
                StreamEvent::Content("a".into()),
                StreamEvent::Finish("stop".into())
            ]
        );
        let bad = r#"{"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}"#;
        assert_eq!(
            p.decode(bad),
            Err("server error: Internal server error".into())
        );
    }

    #[test]
    fn body_uses_each_servers_names() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let req = GenerationRequest {
            prompt: "hi".into(),
            max_tokens: 8,
            model: Some("m".into()),
            params: serde_json::from_str(r#"{"repeat_penalty":1.1,"seed":3}"#).unwrap(),
            api_key: Some("k".into()),
            ..GenerationRequest::default()
        };
        let sent = vllm()
            .request(&client, "http://127.0.0.1:1", &req)
            .build()
            .unwrap();
        let body: Value = serde_json::from_slice(sent.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body["repetition_penalty"], json!(1.1));
        assert!(body.get("repeat_penalty").is_none());
        assert_eq!(body["max_tokens"], json!(8));
        assert_eq!(sent.headers()["authorization"], "Bearer k");
        let openai = OpenAi {
            dialect: Dialect::Chat(OpenAiServer::Openai),
        };
        let sent = openai
            .request(&client, "http://127.0.0.1:1", &req)
            .build()
            .unwrap();
        let body: Value = serde_json::from_slice(sent.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body["max_completion_tokens"], json!(8));
        assert!(body.get("max_tokens").is_none());
    }
}
