//! What requests send: prompts of exact token lengths cut from a corpus with the server's own
//! tokenizer, shared prefixes, cache-defeating nonces, and the lengths themselves (`lengths`).
//! Prompts are built before a run is measured, so building them costs the run nothing.

pub mod lengths;

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

    /// `count` shared prefixes of `tokens` tokens each, from seeded places.
    pub async fn prefixes(
        &self,
        tokenizer: &Tokenizer,
        count: usize,
        tokens: usize,
        seed: u64,
    ) -> Result<Vec<Vec<u32>>, String> {
        let mut out = Vec::with_capacity(count);
        for g in 0..count as u64 {
            let (_, t) = self
                .compose(
                    tokenizer,
                    &[],
                    tokens,
                    seed ^ (g + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )
                .await?;
            out.push(t);
        }
        Ok(out)
    }
}

/// A unique leading text for a request, so that no request can reuse another's cached prefix.
pub fn nonce(run_id: &str, index: u64) -> String {
    let digest = crate::store::sha256_hex(format!("{run_id}/{index}").as_bytes());
    format!("[{}]\n", &digest[..12])
}
