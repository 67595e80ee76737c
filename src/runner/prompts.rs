//! Requests built to the workload's exact lengths (`workload.input_tokens`, `output_tokens`,
//! `prefix`, `cache`, or the axes of those names): prompts cut from the corpus with the
//! server's own tokenizer, checked to tokenize to exactly the length asked for, built before
//! the run is measured. The corpus is tokenized once per server, and each server's chat
//! template overhead (prompt tokens the server reports beyond those sent) is measured once.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::measure::Target;
use crate::backend::tokenize::{Tokenizer, TokenizerApi};
use crate::backend::{GenerationRequest, Protocol};
use crate::record::PromptBuild;
use crate::schedule::seed_for;
use crate::spec::params::{Dialect, OpenAiServer};
use crate::spec::{Backend, CacheMode, Workload};
use crate::workload::lengths::Length;
use crate::workload::{Corpus, DEFAULT_CORPUS, nonce};

/// What a cell asks of its requests' shape: each from its axis, else the workload.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shape {
    pub input: Option<Length>,
    pub output: Option<Length>,
    pub cache: CacheMode,
    pub prefix: Option<(usize, usize)>,
}

impl Shape {
    /// The shape of a cell with `params` under `workload`; None when it asks for nothing
    /// (prompts as written, `max_tokens` as given).
    pub fn of(workload: &Workload, params: &indexmap::IndexMap<String, Value>) -> Option<Shape> {
        let length = |axis: &str, written: &Option<Length>| {
            params
                .get(axis)
                .and_then(|v| serde_json::from_value::<Length>(v.clone()).ok())
                .or_else(|| written.clone())
        };
        let cache = params
            .get("cache")
            .and_then(|v| serde_json::from_value::<CacheMode>(v.clone()).ok())
            .or(workload.cache)
            .unwrap_or_default();
        let shape = Shape {
            input: length("input_tokens", &workload.input_tokens),
            output: length("output_tokens", &workload.output_tokens),
            cache,
            prefix: workload
                .prefix
                .map(|p| (p.tokens.max(1) as usize, p.groups.max(1) as usize)),
        };
        let plain = shape.input.is_none() && shape.output.is_none() && cache == CacheMode::Warm;
        (!plain).then_some(shape)
    }
}

/// A server's tokenizer API, where it has one.
fn tokenizer_api(dialect: Dialect, model: Option<&str>) -> Option<TokenizerApi> {
    match dialect {
        Dialect::LlamaCompletion | Dialect::Chat(OpenAiServer::LlamaServer) => {
            Some(TokenizerApi::LlamaServer)
        }
        Dialect::Chat(OpenAiServer::Vllm) => Some(TokenizerApi::Vllm {
            model: model.map(str::to_owned),
        }),
        _ => None,
    }
}

/// One server's tokenizer, its tokens of the corpus and its template overhead.
struct Prepared {
    tokenizer: Tokenizer,
    corpus: Corpus,
    overhead: Option<i64>,
}

/// The prompt builder of a runner session: what it has prepared per server.
#[derive(Default)]
pub(super) struct Shaper {
    prepared: HashMap<String, Prepared>,
    corpus_text: HashMap<String, (String, String)>,
}

/// Requests built for a closed-loop period, whose count is not known before it runs; its users
/// take them in turn.
pub(super) const CLOSED_LOOP_POOL: usize = 512;

/// Prompt tokens of the probe that measures a server's template overhead.
const PROBE_TOKENS: usize = 16;

impl Shaper {
    fn corpus_text(
        &mut self,
        root: &Path,
        workload: &Workload,
    ) -> Result<(String, String, String), String> {
        let rel = workload
            .corpus
            .clone()
            .unwrap_or_else(|| DEFAULT_CORPUS.to_owned());
        if let Some((text, sha)) = self.corpus_text.get(&rel) {
            return Ok((rel, text.clone(), sha.clone()));
        }
        let path = root.join(&rel);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("corpus {}: {e}", path.display()))?;
        let sha = crate::store::sha256_hex(text.as_bytes());
        self.corpus_text
            .insert(rel.clone(), (text.clone(), sha.clone()));
        Ok((rel, text, sha))
    }

    /// Builds `n` requests of `shape` for run `run_id` from `base` (request i takes
    /// `base[i % len]`'s server and parameters), and says how they were built.
    #[allow(clippy::too_many_arguments)]
    pub async fn build(
        &mut self,
        client: &reqwest::Client,
        protocol: &dyn Protocol,
        root: &Path,
        workload: &Workload,
        backend: &Backend,
        shape: &Shape,
        run_id: &str,
        base: &[Target],
        n: usize,
    ) -> Result<(Vec<Target>, PromptBuild), String> {
        let first = base.first().ok_or("no target to build requests for")?;
        let dialect = Dialect::of(backend);
        let (corpus_file, text, corpus_sha256) = self.corpus_text(root, workload)?;
        let server = first.server.clone();
        if !self.prepared.contains_key(&server) && shape.input.is_some() {
            let api = tokenizer_api(dialect, first.request.model.as_deref()).ok_or_else(|| {
                format!(
                    "exact input lengths need the server's tokenizer, and {} has none that banterhearts can call (llama-server and vLLM do)",
                    dialect.name()
                )
            })?;
            let tokenizer = Tokenizer {
                client: client.clone(),
                base: server.clone(),
                api,
                api_key: first.request.api_key.clone(),
            };
            let corpus = Corpus::tokenize(&text, &tokenizer).await?;
            let overhead = template_overhead(client, protocol, first, &tokenizer, &corpus).await;
            self.prepared.insert(
                server.clone(),
                Prepared {
                    tokenizer,
                    corpus,
                    overhead,
                },
            );
        }
        let prepared = self.prepared.get(&server);
        let inputs = shape
            .input
            .as_ref()
            .map(|l| l.draw(n, seed_for(&format!("{run_id}/input"))));
        let outputs = shape
            .output
            .as_ref()
            .map(|l| l.draw(n, seed_for(&format!("{run_id}/output"))));
        let prefixes = match (shape.prefix, prepared) {
            (Some((tokens, groups)), Some(p)) => {
                // The same prefixes in every run of the TR: they are what requests share.
                p.corpus
                    .prefixes(&p.tokenizer, groups, tokens, seed_for("prefix"))
                    .await?
            }
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let from = &base[i % base.len()];
            let mut request: GenerationRequest = from.request.clone();
            if let Some(outputs) = &outputs {
                request.max_tokens = outputs[i];
                request.output_tokens = Some(outputs[i]);
                if dialect != Dialect::Ollama {
                    request.params.insert("ignore_eos".into(), json!(true));
                }
            }
            let cold = shape.cache == CacheMode::Cold;
            if cold
                && matches!(
                    dialect,
                    Dialect::LlamaCompletion | Dialect::Chat(OpenAiServer::LlamaServer)
                )
            {
                request.params.insert("cache_prompt".into(), json!(false));
            }
            match (&inputs, prepared) {
                (Some(inputs), Some(p)) => {
                    let mut head = Vec::new();
                    if cold {
                        head = p.tokenizer.tokenize(&nonce(run_id, i as u64)).await?;
                    }
                    if let Some(prefix) = prefixes.get(i % prefixes.len().max(1)) {
                        head.extend_from_slice(prefix);
                    }
                    let want = inputs[i] as usize;
                    let body = want.checked_sub(head.len()).ok_or_else(|| {
                        format!(
                            "request {i} is {want} tokens long, shorter than its {} tokens of prefix{}",
                            head.len(),
                            if cold { " and nonce" } else { "" }
                        )
                    })?;
                    let seed = seed_for(&format!("{run_id}/prompt/{i}"));
                    let (text, tokens) = p.corpus.compose(&p.tokenizer, &head, body, seed).await?;
                    request.prompt = text;
                    request.input_tokens = Some(tokens.len() as u32);
                }
                _ if cold => {
                    request.prompt = format!("{}{}", nonce(run_id, i as u64), request.prompt)
                }
                _ => {}
            }
            out.push(Target {
                server: from.server.clone(),
                request,
            });
        }
        let build = PromptBuild {
            corpus: shape.input.as_ref().map(|_| corpus_file),
            corpus_sha256: shape.input.as_ref().map(|_| corpus_sha256),
            tokenizer: prepared.map(|p| format!("{}/tokenize", p.tokenizer.base)),
            template_overhead_tokens: prepared.and_then(|p| p.overhead),
            cache: match shape.cache {
                CacheMode::Warm => "warm".into(),
                CacheMode::Cold => "cold".into(),
            },
            prefix_tokens: shape.prefix.map(|(t, _)| t as u64),
            prefix_groups: shape.prefix.map(|(_, g)| g as u64),
        };
        Ok((out, build))
    }
}

/// Prompt tokens the server counts beyond those sent (a chat template's, a BOS token): one
/// request of a 16-token prompt for a single token, its reported prompt tokens minus 16.
async fn template_overhead(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    base: &Target,
    tokenizer: &Tokenizer,
    corpus: &Corpus,
) -> Option<i64> {
    let (text, tokens) = corpus
        .compose(tokenizer, &[], PROBE_TOKENS, seed_for("template probe"))
        .await
        .ok()?;
    let mut request = base.request.clone();
    request.prompt = text;
    request.max_tokens = 1;
    let probe = Target {
        server: base.server.clone(),
        request,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let run = super::measure::measure_from(
        client,
        protocol,
        &probe,
        deadline,
        std::time::Instant::now(),
    )
    .await;
    run.prompt_tokens.map(|p| p as i64 - tokens.len() as i64)
}
