//! A server's own tokenizer, over HTTP: llama-server's `/tokenize` and `/detokenize`
//! (`{content}` -> `{tokens}`, `{tokens}` -> `{content}`) and vLLM's (`{model, prompt}` ->
//! `{tokens}`, `{model, tokens}` -> `{prompt}`). Exact input lengths are built and checked with
//! it, so a prompt of 512 tokens is 512 of the server's tokens, not an estimate.

use serde_json::{Value, json};

use super::authorized;

/// Which tokenizer API a server speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerApi {
    LlamaServer,
    /// vLLM wants the model name in every call.
    Vllm {
        model: Option<String>,
    },
}

/// A server's tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    pub client: reqwest::Client,
    pub base: String,
    pub api: TokenizerApi,
    pub api_key: Option<String>,
}

impl Tokenizer {
    async fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = || authorized(self.client.post(&url).json(&body), self.api_key.as_deref());
        let response = super::send_repeatable(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{url} answered HTTP {}: {}",
                status.as_u16(),
                super::excerpt(&text, 200)
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("{url}: unreadable answer ({e})"))
    }

    fn with_model(&self, mut body: Value) -> Value {
        if let TokenizerApi::Vllm { model: Some(m) } = &self.api {
            body["model"] = json!(m);
        }
        body
    }

    /// The tokens of `text`, without special tokens added (a chat template or BOS adds its
    /// own, measured separately as the template's overhead).
    pub async fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        let body = match self.api {
            TokenizerApi::LlamaServer => json!({"content": text, "add_special": false}),
            TokenizerApi::Vllm { .. } => {
                self.with_model(json!({"prompt": text, "add_special_tokens": false}))
            }
        };
        let v = self.call("/tokenize", body).await?;
        v.get("tokens")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_u64().or_else(|| t.get("id")?.as_u64()))
                    .map(|t| t as u32)
                    .collect()
            })
            .ok_or_else(|| {
                format!(
                    "{}/tokenize: no `tokens` in {}",
                    self.base,
                    super::excerpt(&v.to_string(), 200)
                )
            })
    }

    /// The text of `tokens`.
    pub async fn detokenize(&self, tokens: &[u32]) -> Result<String, String> {
        let v = self
            .call("/detokenize", self.with_model(json!({"tokens": tokens})))
            .await?;
        v.get("content")
            .or_else(|| v.get("prompt"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "{}/detokenize: no text in {}",
                    self.base,
                    super::excerpt(&v.to_string(), 200)
                )
            })
    }
}
