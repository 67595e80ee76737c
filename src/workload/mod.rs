//! What requests send: prompts of exact token lengths cut from a corpus with the server's own
//! tokenizer, shared prefixes, cache-defeating nonces, and the lengths themselves (`lengths`).
//! Prompts are built before a run is measured, so building them costs the run nothing.

pub mod lengths;
pub mod trace;

use rand::{RngExt, SeedableRng};

use crate::backend::tokenize::Tokenizer;

/// Matrix axes that set a field of the workload for their cells.
pub const WORKLOAD_AXES: &[&str] = &["input_tokens", "output_tokens", "cache"];

/// The corpus prompts are cut from, shipped in the repository (data/corpus/README.md).
pub const DEFAULT_CORPUS: &str = "data/corpus/shakespeare.txt";

/// A corpus as one server tokenizes it.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub tokens: Vec<u32>,
}

/// Attempts at a slice whose text tokenizes back to exactly its tokens before giving up.
const ATTEMPTS: u64 = 64;

impl Corpus {
    pub async fn tokenize(text: &str, tokenizer: &Tokenizer) -> Result<Corpus, String> {
        let tokens = tokenizer.tokenize(text).await?;
        if tokens.len() < 64 {
            return Err(format!(
                "the corpus is only {} tokens long: prompts need a longer text",
                tokens.len()
            ));
        }
        Ok(Corpus { tokens })
    }

    /// A prompt of exactly `head.len() + body` tokens: `head` (a shared prefix, a nonce, or
    /// nothing) followed by `body` tokens of the corpus from a seeded place. Returns its text
    /// and its tokens, checked with the tokenizer: the text tokenizes back to exactly these
    /// tokens, so the server sees the length asked for and every request with the same head
    /// shares those tokens. A slice whose text does not round-trip (a merge across the joint)
    /// is replaced by another.
    pub async fn compose(
        &self,
        tokenizer: &Tokenizer,
        head: &[u32],
        body: usize,
        seed: u64,
    ) -> Result<(String, Vec<u32>), String> {
        if body > self.tokens.len() {
            return Err(format!(
                "a prompt of {body} corpus tokens was asked for, but the corpus has {}",
                self.tokens.len()
            ));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let start = rng.random_range(0..=self.tokens.len() - body);
            let mut tokens = head.to_vec();
            tokens.extend_from_slice(&self.tokens[start..start + body]);
            let text = tokenizer.detokenize(&tokens).await?;
            // A chat template puts text right before and after the prompt ("user\n" ...
            // "<|im_end|>"), where leading or trailing whitespace can merge with it: such a
            // prompt would not be its own length inside the template.
            if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
                last = "its text begins or ends with whitespace".into();
                continue;
            }
            let back = tokenizer.tokenize(&text).await?;
            if back == tokens {
                return Ok((text, tokens));
            }
            last = format!("{} tokens came back as {}", tokens.len(), back.len());
        }
        Err(format!(
            "no slice of the corpus round-trips through the tokenizer after {ATTEMPTS} attempts ({last})"
        ))
    }
}

/// Characters per token of the shipped corpus under SmolLM2's tokenizer (262,124 characters,
/// 80,209 tokens): the length of an approximate prompt where the server has no tokenizer to
/// ask. Measured error of such prompts against that tokenizer (docs/metrics.md): -16% to +38%
/// at 32 tokens, -13% to +13% at 128, -11% to +13% at 512, -6% to +11% at 2048.
pub const APPROX_CHARS_PER_TOKEN: f64 = 3.27;

impl Corpus {
    /// `tokens` token ids of the corpus from a seeded place, unchecked: for an endpoint that
    /// takes ids (llama.cpp `/completion`), whose prompt is then exactly these tokens.
    pub fn slice(&self, tokens: usize, seed: u64) -> Result<&[u32], String> {
        if tokens > self.tokens.len() {
            return Err(format!(
                "{tokens} corpus tokens were asked for, but the corpus has {}",
                self.tokens.len()
            ));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let start = rng.random_range(0..=self.tokens.len() - tokens);
        Ok(&self.tokens[start..start + tokens])
    }
}

/// About `tokens` tokens of `text` from a seeded place, for servers without a tokenizer:
/// `APPROX_CHARS_PER_TOKEN` characters a token, cut at word boundaries.
pub fn approximate(text: &str, tokens: usize, seed: u64) -> String {
    let chars = ((tokens as f64 * APPROX_CHARS_PER_TOKEN).round() as usize).clamp(1, text.len());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut start = rng.random_range(0..=text.len() - chars);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + chars).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[start..end].trim().to_owned()
}

/// A unique leading text for a request, so that no request can reuse another's cached prefix.
pub fn nonce(run_id: &str, index: u64) -> String {
    let digest = crate::store::sha256_hex(format!("{run_id}/{index}").as_bytes());
    format!("[{}]\n", &digest[..12])
}
