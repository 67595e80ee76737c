//! llama.cpp's native `/completion` endpoint: SSE lines `data: {"content": .., "stop": ..}`,
//! the last one with `timings` (prompt_n, prompt_ms, predicted_n, predicted_ms, cache_n).

use serde_json::{Value, json};

use super::framing::Framing;
use super::{
    GenerationRequest, Protocol, ServerReport, StreamEvent, authorized, body, f64_at, parse_json,
    server_error, text_at, u64_at,
};
use crate::spec::params::Dialect;

pub struct LlamaCpp;

/// Reads llama.cpp's `timings` object, shared by `/completion` and its OpenAI endpoint.
pub(crate) fn timings_report(t: &Value) -> ServerReport {
    let prompt_n = u64_at(t, "prompt_n");
    let cache_n = u64_at(t, "cache_n");
    ServerReport {
        prompt_tokens: prompt_n.map(|n| n + cache_n.unwrap_or(0)),
        output_tokens: u64_at(t, "predicted_n"),
        reasoning_tokens: None,
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
        let body = body(
            Dialect::LlamaCompletion,
            match &req.prompt_ids {
                Some(ids) => json!({"prompt": ids.as_slice(), "stream": true}),
                None => json!({"prompt": req.document(), "stream": true}),
            },
            req,
        );
        let builder = client.post(format!("{base}/completion")).json(&body);
        authorized(builder, req.api_key.as_deref())
    }

    fn framing(&self) -> Framing {
        Framing::Sse
    }

    fn decode(&self, data: &str) -> Result<Vec<StreamEvent>, String> {
        let v = parse_json(data)?;
        if let Some(err) = server_error(&v) {
            return Err(err);
        }
        let mut events = Vec::new();
        if let Some(text) = text_at(&v, "/content") {
            events.push(StreamEvent::Content(text.to_owned()));
        }
        if let Some(t) = v.get("timings") {
            events.push(StreamEvent::Report(timings_report(t)));
        }
        if v.get("stop").and_then(Value::as_bool) == Some(true) {
            // `stop_type`: eos, limit (n_predict reached) or word (a stop string).
            if let Some(kind) = text_at(&v, "/stop_type") {
                events.push(StreamEvent::Finish(kind.to_owned()));
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
    fn reads_content_and_final_timings() {
        let p = LlamaCpp;
        let chunk = r#"{"index":0,"content":" Alex","tokens":[5325],"stop":false}"#;
        assert_eq!(
            p.decode(chunk).unwrap(),
            vec![StreamEvent::Content(" Alex".into())]
        );
        let last = r#"{"content":"","stop":true,"timings":{"cache_n":2,"prompt_n":5,"prompt_ms":151.0,"predicted_n":8,"predicted_ms":167.4}}"#;
        let events = p.decode(last).unwrap();
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
        assert_eq!(
            p.decode(r#"{"error":{"code":500,"message":"boom","type":"server_error"}}"#),
            Err("server error: boom".into())
        );
        assert_eq!(
            p.decode(r#"{"content":"x","error":null}"#).unwrap().len(),
            1
        );
    }
}
