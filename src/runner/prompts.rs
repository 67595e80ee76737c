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
use crate::workload::{APPROX_CHARS_PER_TOKEN, Corpus, DEFAULT_CORPUS, approximate, nonce};

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

/// How a server's prompts are made to length.
enum Exact {
    /// Token ids sent as the prompt (llama.cpp `/completion`): exact by construction.
    Ids(Tokenizer, Corpus),
    /// Text checked with the server's tokenizer to be exactly its tokens.
    Text(Tokenizer, Corpus),
    /// No tokenizer to ask: about `APPROX_CHARS_PER_TOKEN` characters a token.
    Approximate,
}

/// One server's way to exact lengths and its template overhead.
struct Prepared {
    exact: Exact,
    overhead: Option<i64>,
}

/// One request's shape: its lengths and the shared blocks its prompt starts with.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Planned {
    pub input: Option<u32>,
    pub output: Option<u32>,
    /// Shared blocks, each (id, tokens used, tokens in the block): requests naming the same
    /// id have the same tokens there (a prefix group, or a trace's hash block, whose last one
    /// a prompt may use only the start of).
    pub blocks: Vec<(u64, usize, usize)>,
}

/// The prompt builder of a runner session: what it has prepared per server.
#[derive(Default)]
pub(super) struct Shaper {
    prepared: HashMap<String, Prepared>,
    /// Each corpus file read, with its SHA-256: read once per session, shared by every run.
    corpus_text: HashMap<String, (std::sync::Arc<str>, String)>,
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
    ) -> Result<(String, std::sync::Arc<str>, String), String> {
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
        let text: std::sync::Arc<str> = text.into();
        self.corpus_text
            .insert(rel.clone(), (text.clone(), sha.clone()));
        Ok((rel, text, sha))
    }

    /// How `first`'s server makes prompts exact, found (and its overhead measured) once.
    async fn prepare(
        &mut self,
        client: &reqwest::Client,
        protocol: &dyn Protocol,
        dialect: Dialect,
        first: &Target,
        text: &str,
    ) -> Result<&Prepared, String> {
        let server = first.server.clone();
        if !self.prepared.contains_key(&server) {
            let tokenizer =
                tokenizer_api(dialect, first.request.model.as_deref()).map(|api| Tokenizer {
                    client: client.clone(),
                    base: server.clone(),
                    api,
                    api_key: first.request.api_key.clone(),
                });
            let exact = match tokenizer {
                None => Exact::Approximate,
                Some(t) => match Corpus::tokenize(text, &t).await {
                    Ok(corpus) if dialect == Dialect::LlamaCompletion => Exact::Ids(t, corpus),
                    Ok(corpus) => Exact::Text(t, corpus),
                    // A server that has no tokenizer after all (a stand-in speaking the
                    // protocol): approximate, and say so in the record.
                    Err(e) if e.contains("HTTP 404") => Exact::Approximate,
                    Err(e) => return Err(e),
                },
            };
            let overhead = template_overhead(client, protocol, first, &exact).await;
            self.prepared
                .insert(server.clone(), Prepared { exact, overhead });
        }
        Ok(&self.prepared[&server])
    }

    /// Builds one request per entry of `planned` for run `run_id` from `base` (request i
    /// takes `base[i % len]`'s server and parameters), and says how they were built.
    #[allow(clippy::too_many_arguments)]
    pub async fn build(
        &mut self,
        client: &reqwest::Client,
        protocol: &dyn Protocol,
        root: &Path,
        workload: &Workload,
        backend: &Backend,
        cache: CacheMode,
        run_id: &str,
        base: &[Target],
        planned: &[Planned],
    ) -> Result<(Vec<Target>, PromptBuild), String> {
        let first = base.first().ok_or("no target to build requests for")?;
        let dialect = Dialect::of(backend);
        let (corpus_file, text, corpus_sha256) = self.corpus_text(root, workload)?;
        let wants_input = planned.iter().any(|p| p.input.is_some());
        let prepared = if wants_input {
            Some(
                self.prepare(client, protocol, dialect, first, &text)
                    .await?,
            )
        } else {
            None
        };
        let cold = cache == CacheMode::Cold;
        let mut blocks: HashMap<(u64, usize), Vec<u32>> = HashMap::new();
        let mut out = Vec::with_capacity(planned.len());
        for (i, plan) in planned.iter().enumerate() {
            let from = &base[i % base.len()];
            let mut request: GenerationRequest = from.request.clone();
            if let Some(n) = plan.output {
                request.max_tokens = n;
                request.output_tokens = Some(n);
                match dialect {
                    // Ollama cannot be held to a length; the record says which requests reached it.
                    Dialect::Ollama => {}
                    // The OpenAI API and unknown servers take neither field (spec::params).
                    Dialect::Chat(OpenAiServer::Openai | OpenAiServer::Generic) => {}
                    Dialect::Chat(OpenAiServer::Vllm) => {
                        request.params.insert("ignore_eos".into(), json!(true));
                        request.params.insert("min_tokens".into(), json!(n));
                    }
                    _ => {
                        request.params.insert("ignore_eos".into(), json!(true));
                    }
                }
            }
            if cold
                && matches!(
                    dialect,
                    Dialect::LlamaCompletion | Dialect::Chat(OpenAiServer::LlamaServer)
                )
            {
                request.params.insert("cache_prompt".into(), json!(false));
            }
            let nonce_text = cold.then(|| nonce(run_id, i as u64));
            let prompt_seed = seed_for(&format!("{run_id}/prompt/{i}"));
            match (plan.input, prepared.map(|p| &p.exact)) {
                (Some(want), Some(Exact::Ids(tok, corpus) | Exact::Text(tok, corpus))) => {
                    let mut head = match &nonce_text {
                        Some(n) => tok.tokenize(n).await?,
                        None => Vec::new(),
                    };
                    for &(id, len, full) in &plan.blocks {
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            blocks.entry((id, full))
                        {
                            let seed = seed_for(&format!("block/{id}"));
                            // Text must round-trip on its own too, so that it starts a prompt
                            // the way it reads; ids are exact as they are.
                            let t = match prepared.map(|p| &p.exact) {
                                Some(Exact::Text(..)) => {
                                    corpus.compose(tok, &[], full, seed).await?.1
                                }
                                _ => corpus.slice(full, seed)?.to_vec(),
                            };
                            slot.insert(t);
                        }
                        head.extend_from_slice(&blocks[&(id, full)][..len.min(full)]);
                    }
                    let want = want as usize;
                    let body = want.checked_sub(head.len()).ok_or_else(|| {
                        format!(
                            "request {i} is {want} tokens long, shorter than its {} tokens of shared blocks{}",
                            head.len(),
                            if cold { " and nonce" } else { "" }
                        )
                    })?;
                    // A session resends its conversation as text, so its turns go as text too.
                    let as_ids = matches!(prepared.map(|p| &p.exact), Some(Exact::Ids(..)))
                        && workload.session.is_none();
                    let tokens = if as_ids {
                        let mut t = head;
                        t.extend_from_slice(corpus.slice(body, prompt_seed)?);
                        request.prompt.clear();
                        t
                    } else {
                        let (text, t) = corpus.compose(tok, &head, body, prompt_seed).await?;
                        request.prompt = text;
                        t
                    };
                    request.input_tokens = Some(tokens.len() as u32);
                    if as_ids {
                        request.prompt_ids = Some(std::sync::Arc::new(tokens));
                    }
                }
                (Some(want), _) => {
                    let mut prompt = nonce_text.clone().unwrap_or_default();
                    let mut covered = 0;
                    for &(id, len, full) in &plan.blocks {
                        // The block's text, cut where its first `len` tokens would end.
                        let block = approximate(&text, full, seed_for(&format!("block/{id}")));
                        let mut cut =
                            ((len as f64 * APPROX_CHARS_PER_TOKEN) as usize).min(block.len());
                        while !block.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        prompt.push_str(&block[..cut]);
                        prompt.push('\n');
                        covered += len;
                    }
                    let rest = (want as usize).saturating_sub(covered).max(1);
                    prompt.push_str(&approximate(&text, rest, prompt_seed));
                    request.prompt = prompt;
                    request.input_tokens = Some(want);
                }
                (None, _) => {
                    if let Some(n) = &nonce_text {
                        request.prompt = format!("{n}{}", request.prompt);
                    }
                }
            }
            out.push(Target {
                server: from.server.clone(),
                request,
            });
        }
        let (tokenizer, overhead) = match prepared {
            Some(Prepared {
                exact: Exact::Ids(t, _),
                overhead,
            }) => (
                Some(format!("{}/tokenize (prompts sent as token ids)", t.base)),
                *overhead,
            ),
            Some(Prepared {
                exact: Exact::Text(t, _),
                overhead,
            }) => (Some(format!("{}/tokenize", t.base)), *overhead),
            Some(Prepared {
                exact: Exact::Approximate,
                overhead,
            }) => (
                Some(format!(
                    "none on this server: approximate, {APPROX_CHARS_PER_TOKEN} characters a token"
                )),
                *overhead,
            ),
            None => (None, None),
        };
        let build = PromptBuild {
            corpus: wants_input.then_some(corpus_file),
            corpus_sha256: wants_input.then_some(corpus_sha256),
            tokenizer,
            template_overhead_tokens: overhead,
            cache: match cache {
                CacheMode::Warm => "warm".into(),
                CacheMode::Cold => "cold".into(),
            },
            prefix_tokens: workload.prefix.map(|p| p.tokens as u64),
            prefix_groups: workload.prefix.map(|p| p.groups as u64),
        };
        Ok((out, build))
    }
}

/// The planned shape of `n` requests of a cell with `shape` in run `run_id`: drawn lengths and
/// prefix groups (request i takes group i mod groups).
pub(super) fn plan(shape: &Shape, run_id: &str, n: usize) -> Vec<Planned> {
    let inputs = shape
        .input
        .as_ref()
        .map(|l| l.draw(n, seed_for(&format!("{run_id}/input"))));
    let outputs = shape
        .output
        .as_ref()
        .map(|l| l.draw(n, seed_for(&format!("{run_id}/output"))));
    (0..n)
        .map(|i| Planned {
            input: inputs.as_ref().map(|v| v[i]),
            output: outputs.as_ref().map(|v| v[i]),
            blocks: shape
                .prefix
                .map(|(tokens, groups)| vec![((i % groups) as u64, tokens, tokens)])
                .unwrap_or_default(),
        })
        .collect()
}

/// Prompt tokens the server counts beyond those sent (a chat template's, a BOS token): one
/// request of a 16-token prompt for a single token, its reported prompt tokens minus 16.
async fn template_overhead(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    base: &Target,
    exact: &Exact,
) -> Option<i64> {
    let mut request = base.request.clone();
    let sent = match exact {
        Exact::Ids(_, corpus) => {
            let ids = corpus
                .slice(PROBE_TOKENS, seed_for("template probe"))
                .ok()?
                .to_vec();
            request.prompt_ids = Some(std::sync::Arc::new(ids));
            PROBE_TOKENS
        }
        Exact::Text(tok, corpus) => {
            let (text, tokens) = corpus
                .compose(tok, &[], PROBE_TOKENS, seed_for("template probe"))
                .await
                .ok()?;
            request.prompt = text;
            tokens.len()
        }
        // Nothing exact to compare the server's count with.
        Exact::Approximate => return None,
    };
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
    run.prompt_tokens.map(|p| p as i64 - sent as i64)
}

/// The planned shape of a trace's requests: its lengths, and its hash ids as 512-token shared
/// blocks (the last one partial where the input ends inside it).
pub(super) fn from_trace(trace: &[crate::workload::trace::TraceRequest]) -> Vec<Planned> {
    use crate::workload::trace::BLOCK_TOKENS;
    trace
        .iter()
        .map(|r| {
            let input = r.input_length.max(1) as usize;
            let blocks = r
                .hash_ids
                .iter()
                .enumerate()
                .map_while(|(k, id)| {
                    let left = input.checked_sub(k * BLOCK_TOKENS).filter(|l| *l > 0)?;
                    Some((*id, left.min(BLOCK_TOKENS), BLOCK_TOKENS))
                })
                .collect();
            Planned {
                input: Some(input as u32),
                output: Some(r.output_length.max(1) as u32),
                blocks,
            }
        })
        .collect()
}
