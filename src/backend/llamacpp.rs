//! llama.cpp's native `/completion` endpoint: SSE lines `data: {"content": .., "stop": ..}`,
//! the last one with `timings` (prompt_n, prompt_ms, predicted_n, predicted_ms, cache_n).

use serde_json::{Value, json};

use super::{
    GenerationRequest, Protocol, ServerReport, StreamEvent, f64_at, parse_json, sse_data, u64_at,
    with_options,
};

pub struct LlamaCpp;

/// Reads llama.cpp's `timings` object, shared by `/completion` and its OpenAI endpoint.
pub(crate) fn timings_report(t: &Value) -> ServerReport {
    let prompt_n = u64_at(t, "prompt_n");
    let cache_n = u64_at(t, "cache_n");
    ServerReport {
        prompt_tokens: prompt_n.map(|n| n + cache_n.unwrap_or(0)),
        output_tokens: u64_at(t, "predicted_n"),
        prompt_eval_tokens: prompt_n,
        prompt_ms: f64_at(t, "prompt_ms"),
        decode_ms: f64_at(t, "predicted_ms"),
        cache_n,
        load_ms: None,
    }
}

impl Protocol for LlamaCpp {
    fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        req: &GenerationRequest,
    ) -> reqwest::RequestBuilder {
        let body = with_options(
            json!({"prompt": req.prompt, "n_predict": req.max_tokens, "stream": true}),
            &req.options,
        );
        client.post(format!("{base}/completion")).json(&body)
    }

    fn decode_line(&self, line: &str) -> Result<Vec<StreamEvent>, String> {
        let Some(data) = sse_data(line) else {
            return Ok(Vec::new());
        };
        let v = parse_json(data)?;
        if let Some(err) = v.get("error") {
            return Err(format!("server error: {err}"));
        }
        let mut events = Vec::new();
        if let Some(text) = v
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            events.push(StreamEvent::Content(text.to_owned()));
        }
        if let Some(t) = v.get("timings") {
            events.push(StreamEvent::Report(timings_report(t)));
        }
        if v.get("stop").and_then(Value::as_bool) == Some(true) {
            events.push(StreamEvent::Done);
        }
        Ok(events)
    }

    fn info_path(&self) -> &'static str {
        "/props"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_and_final_timings() {
        let p = LlamaCpp;
        let chunk = r#"data: {"index":0,"content":" Alex","tokens":[5325],"stop":false}"#;
        assert_eq!(
            p.decode_line(chunk).unwrap(),
            vec![StreamEvent::Content(" Alex".into())]
        );
        let last = r#"data: {"content":"","stop":true,"timings":{"cache_n":2,"prompt_n":5,"prompt_ms":151.0,"predicted_n":8,"predicted_ms":167.4}}"#;
        let events = p.decode_line(last).unwrap();
        assert_eq!(events.len(), 2);
        let StreamEvent::Report(r) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (
                r.prompt_tokens,
                r.prompt_eval_tokens,
                r.output_tokens,
                r.cache_n
            ),
            (Some(7), Some(5), Some(8), Some(2))
        );
        assert_eq!(events[1], StreamEvent::Done);
        assert!(p.decode_line("").unwrap().is_empty());
        assert!(
            p.decode_line(r#"data: {"error":{"code":500,"message":"boom"}}"#)
                .is_err()
        );
    }
}
