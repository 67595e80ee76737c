//! The model files a TR's launched servers load: a real GGUF named by path, or a synthetic one
//! (random weights of a chosen size or shape, `spec::model`), written on first use by gguf-py
//! and cached by what it is, so that every run of every TR asking for the same model loads
//! the same bytes.

pub mod gguf;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::spec::model::{ModelValue, Size};

/// The generator, run with the gguf-py environment's python (`python - ARGS < script`).
const GENERATOR: &str = include_str!("synthetic_gguf.py");
/// The environment's installer (scripts/setup-gguf), so a project without this repository's
/// scripts can make synthetic models too.
const SETUP_GGUF: &str = include_str!("../../scripts/setup-gguf");

/// A model resolved to a file, with what its header says.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub label: String,
    pub path: PathBuf,
    pub synthetic: bool,
    pub info: gguf::GgufInfo,
    /// A synthetic model's shape and the generator's account of it.
    pub generated: Option<Value>,
}

/// banterhearts' cache: `$BANTERHEARTS_CACHE`, else `~/.cache/banterhearts`.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("BANTERHEARTS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/banterhearts")))
}

/// The file a setup script cached for `var`, if it is there.
pub fn cached_model(var: &str) -> Option<String> {
    let path = cache_dir()?.join(crate::spec::model::setup_model_file(var)?);
    path.is_file().then(|| path.display().to_string())
}

/// Expands `${VAR}` from the environment; `${BANTERHEARTS_MODEL}` and `${BANTERHEARTS_GEMMA3}`
/// fall back to the models the setup scripts cache, so a TR names them the same way on every
/// machine. The error is the variable that is not set.
pub fn expand_vars(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let var = &rest[start + 2..start + len];
        let value = std::env::var(var)
            .ok()
            .or_else(|| cached_model(var))
            .ok_or_else(|| var.to_owned())?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves a `model` value to its file, writing a synthetic model first if it is not cached.
/// `progress` hears of a model being written (seconds to a minute).
pub fn resolve(value: &ModelValue, progress: &dyn Fn(&str)) -> Result<ModelFile, String> {
    if let Some(path) = &value.gguf {
        let path = PathBuf::from(expand_vars(path).map_err(unset)?);
        let info = gguf::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(ModelFile {
            label: value.label(),
            path,
            synthetic: false,
            info,
            generated: None,
        });
    }
    let Some(s) = &value.synthetic else {
        return Err("a model is `{gguf: PATH}` or `{synthetic: {...}}`".into());
    };
    let size = s.size()?;
    let tokenizer = PathBuf::from(expand_vars(s.tokenizer()).map_err(unset)?);
    let key = synthetic_key(&size, s.quant(), s.seed.unwrap_or(0), &tokenizer)?;
    let dir = cache_dir()
        .ok_or("no cache directory: set BANTERHEARTS_CACHE or HOME")?
        .join("models/synthetic");
    let path = dir.join(format!("{key}.gguf"));
    let account = dir.join(format!("{key}.json"));
    if !path.is_file() || !account.is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        progress(&format!("writing {} (cached for next time)", value.label()));
        let generated = generate(&size, s.quant(), s.seed.unwrap_or(0), &tokenizer, &path)?;
        crate::store::write_atomic(&account, format!("{generated:#}\n").as_bytes())
            .map_err(|e| format!("{}: {e}", account.display()))?;
    }
    let generated: Value = std::fs::read_to_string(&account)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| format!("{}: unreadable; delete it and run again", account.display()))?;
    let info = gguf::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(ModelFile {
        label: value.label(),
        path,
        synthetic: true,
        info,
        generated: Some(generated),
    })
}

fn unset(var: String) -> String {
    format!(
        "environment variable `{var}` is not set (export it, or run scripts/setup-llama-server for BANTERHEARTS_MODEL, scripts/setup-gemma3 for BANTERHEARTS_GEMMA3)"
    )
}

/// What makes a synthetic model what it is: its size, format and seed, its tokenizer (the
/// start of that file, where a GGUF keeps its metadata) and the generator's own text. Any of
/// them changed is another model.
fn synthetic_key(size: &Size, quant: &str, seed: u64, tokenizer: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(tokenizer)
        .and_then(|f| f.take(16 << 20).read_to_end(&mut head))
        .map_err(|e| format!("tokenizer {}: {e}", tokenizer.display()))?;
    let what = json!({
        "size": format!("{size:?}"),
        "quant": quant,
        "seed": seed,
        "tokenizer": crate::store::sha256_hex(&head),
        "generator": crate::store::sha256_hex(GENERATOR.as_bytes()),
    });
    Ok(crate::store::sha256_hex(what.to_string().as_bytes())[..16].to_owned())
}

/// The python of the gguf-py environment, installed on first use.
fn gguf_python() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .args(["-c", SETUP_GGUF, "setup-gguf"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run bash to install gguf-py: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .find_map(|l| l.strip_prefix("BANTERHEARTS_GGUF_PYTHON="))
    {
        Some(python) if out.status.success() => Ok(PathBuf::from(python.trim())),
        _ => Err(format!(
            "installing gguf-py for synthetic models failed ({}): it needs python3 with venv and pip, and PyPI the first time",
            out.status
        )),
    }
}

/// Writes the model with the generator; returns its account of what it wrote.
fn generate(
    size: &Size,
    quant: &str,
    seed: u64,
    tokenizer: &Path,
    out: &Path,
) -> Result<Value, String> {
    let python = gguf_python()?;
    let mut args: Vec<String> = vec![
        "-".into(),
        "--out".into(),
        out.display().to_string(),
        "--vocab-from".into(),
        tokenizer.display().to_string(),
        "--quant".into(),
        quant.into(),
        "--seed".into(),
        seed.to_string(),
    ];
    match size {
        Size::Params(n) => args.extend(["--params".into(), n.to_string()]),
        Size::Shape {
            layers,
            width,
            heads,
            kv_heads,
            ffn,
        } => {
            for (flag, v) in [
                ("--layers", layers),
                ("--width", width),
                ("--heads", heads),
                ("--kv-heads", kv_heads),
                ("--ffn", ffn),
            ] {
                args.extend([flag.to_owned(), v.to_string()]);
            }
        }
    }
    let mut child = Command::new(&python)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(GENERATOR.as_bytes())
            .map_err(|e| format!("the generator's input: {e}"))?;
    }
    let done = child.wait_with_output().map_err(|e| e.to_string())?;
    if !done.status.success() {
        let stderr = String::from_utf8_lossy(&done.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        return Err(format!(
            "writing the synthetic model failed ({}): {}",
            done.status,
            crate::backend::excerpt(last, 300)
        ));
    }
    serde_json::from_slice(&done.stdout)
        .map_err(|e| format!("the generator's account is no JSON: {e}"))
}
