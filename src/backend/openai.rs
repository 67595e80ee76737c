//! OpenAI-compatible `/v1/chat/completions` with SSE streaming and
//! `stream_options.include_usage` (vLLM, llama-server, LM Studio). llama-server also adds its
//! `timings` object to the usage chunk; other servers report only token counts.

use serde_json::{Value, json};

use super::llamacpp::timings_report;
use super::{
    GenerationRequest, Protocol, ServerReport, StreamEvent, parse_json, sse_data, u64_at,
    with_options,
};

pub struct OpenAi;

impl Protocol for OpenAi {
    fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        req: &GenerationRequest,
    ) -> reqwest::RequestBuilder {
        let body = with_options(
            json!({
                "model": req.model.clone().unwrap_or_else(|| "default".into()),
                "messages": [{"role": "user", "content": req.prompt}],
                "max_tokens": req.max_tokens,
                "stream": true,
                "stream_options": {"include_usage": true},
            }),
            &req.options,
        );
        let builder = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body);
        match &req.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    fn decode_line(&self, line: &str) -> Result<Vec<StreamEvent>, String> {
        let Some(data) = sse_data(line) else {
            return Ok(Vec::new());
        };
        if data == "[DONE]" {
            return Ok(vec![StreamEvent::Done]);
        }
        let v = parse_json(data)?;
        if let Some(err) = v.get("error") {
            return Err(format!("server error: {err}"));
        }
        let mut events = Vec::new();
        let deltas = v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for choice in deltas {
            if let Some(text) = choice
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                events.push(StreamEvent::Content(text.to_owned()));
            }
        }
        let mut report = v.get("timings").map(timings_report).unwrap_or_default();
        if let Some(usage) = v.get("usage").filter(|u| !u.is_null()) {
            report.merge(ServerReport {
                prompt_tokens: u64_at(usage, "prompt_tokens"),
                output_tokens: u64_at(usage, "completion_tokens"),
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

    fn info_path(&self) -> &'static str {
        "/v1/models"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deltas_usage_and_done() {
        let p = OpenAi;
        let role = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}"#;
        assert!(p.decode_line(role).unwrap().is_empty());
        let text = r#"data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}"#;
        assert_eq!(
            p.decode_line(text).unwrap(),
            vec![StreamEvent::Content("Hello".into())]
        );
        let usage = r#"data: {"choices":[],"usage":{"completion_tokens":4,"prompt_tokens":31,"total_tokens":35}}"#;
        let StreamEvent::Report(r) = &p.decode_line(usage).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            (r.prompt_tokens, r.output_tokens, r.decode_ms),
            (Some(31), Some(4), None)
        );
        assert_eq!(
            p.decode_line("data: [DONE]").unwrap(),
            vec![StreamEvent::Done]
        );
    }
}
