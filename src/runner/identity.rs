//! Who the runner is talking to, asked before the first run and recorded as provenance: the
//! server's build and version (llama.cpp `/props` build_info, vLLM `/version`, Ollama
//! `/api/version`), the model it serves (`/v1/models`, which also names the model when the spec
//! does not), and whether it accepts our API key. Every request carries the key, these too:
//! llama-server started with `--api-key` protects `/props`, vLLM protects `/v1/*`.
//! After each run an Ollama server is asked what it has loaded (`/api/ps`), so a reader can
//! see that `num_ctx` and `num_gpu` took effect.

use std::time::Duration;

use serde_json::Value;

use crate::backend::authorized;
use crate::record::{LoadedModel, ServerProvenance};
use crate::spec::{Backend, BackendKind};

const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server refused our credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub url: String,
    pub path: &'static str,
    pub status: u16,
    pub message: String,
}

/// What a description request found: the JSON it returned, nothing usable (a path this server
/// does not have, a server that is down), or a refusal of our credentials.
enum Fetched {
    Json(Value),
    Nothing,
    Refused(Refused),
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    path: &'static str,
    key: Option<&str>,
) -> Fetched {
    let request = authorized(client.get(format!("{url}{path}")), key).timeout(DESCRIBE_TIMEOUT);
    let Ok(response) = request.send().await else {
        return Fetched::Nothing;
    };
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        let body = response.text().await.unwrap_or_default();
        let message = crate::backend::error_body_message(&body, 200);
        return Fetched::Refused(Refused {
            url: url.to_owned(),
            path,
            status: status.as_u16(),
            message,
        });
    }
    if !status.is_success() {
        return Fetched::Nothing;
    }
    response
        .json::<Value>()
        .await
        .map_or(Fetched::Nothing, Fetched::Json)
}

/// One server's description.
pub struct Identity {
    pub provenance: ServerProvenance,
    /// The ids `/v1/models` lists (OpenAI-compatible servers).
    pub models: Vec<String>,
}

/// Asks the server at `url` who it is. `model_file` is the model a launched server was given.
pub async fn identify(
    client: &reqwest::Client,
    backend_name: &str,
    b: &Backend,
    url: &str,
    key: Option<&str>,
    model_file: Option<String>,
) -> Result<Identity, Refused> {
    let paths: &[&'static str] = match b.kind {
        BackendKind::LlamaCpp => &["/props"],
        // llama-server answers /props, vLLM /version; each server lacks the other's.
        BackendKind::Openai => &["/v1/models", "/props", "/version"],
        BackendKind::Ollama => &["/api/version"],
    };
    let mut found = serde_json::Map::new();
    for path in paths {
        match fetch(client, url, path, key).await {
            Fetched::Json(v) => {
                found.insert((*path).to_owned(), v);
            }
            Fetched::Nothing => {}
            Fetched::Refused(r) => return Err(r),
        }
    }
    let at = |path: &str, ptr: &str| found.get(path).and_then(|v| v.pointer(ptr)).cloned();
    let text = |path: &str, ptr: &str| at(path, ptr).and_then(|v| v.as_str().map(str::to_owned));
    let models: Vec<String> = at("/v1/models", "/data")
        .and_then(|d| d.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let build = text("/props", "/build_info")
        .or_else(|| text("/version", "/version").map(|v| format!("vllm {v}")))
        .or_else(|| text("/api/version", "/version").map(|v| format!("ollama {v}")));
    let null = || Value::Null;
    let info = match b.kind {
        BackendKind::Ollama => found.get("/api/version").cloned().unwrap_or_else(null),
        _ => {
            let mut info = serde_json::Map::new();
            if found.contains_key("/props") {
                info.insert(
                    "build_info".into(),
                    at("/props", "/build_info").unwrap_or_else(null),
                );
                info.insert(
                    "total_slots".into(),
                    at("/props", "/total_slots").unwrap_or_else(null),
                );
                info.insert(
                    "n_ctx".into(),
                    at("/props", "/default_generation_settings/n_ctx").unwrap_or_else(null),
                );
                info.insert(
                    "model_path".into(),
                    at("/props", "/model_path").unwrap_or_else(null),
                );
            }
            if let Some(v) = at("/version", "/version") {
                info.insert("version".into(), v);
            }
            if b.kind == BackendKind::Openai {
                info.insert(
                    "models".into(),
                    at("/v1/models", "/data").unwrap_or_else(null),
                );
            }
            Value::Object(info)
        }
    };
    let model = b
        .model
        .clone()
        .or_else(|| (models.len() == 1).then(|| models[0].clone()))
        .or_else(|| text("/props", "/model_path"))
        .or(model_file);
    Ok(Identity {
        provenance: ServerProvenance {
            backend: backend_name.to_owned(),
            url: url.to_owned(),
            launched: b.launch.is_some(),
            build,
            model,
            model_sha256: None,
            model_file: None,
            info,
        },
        models,
    })
}

/// What an Ollama server has loaded now (`/api/ps`): the entry of `model`, if it is loaded.
pub async fn loaded_model(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    model: &str,
) -> Option<LoadedModel> {
    let Fetched::Json(ps) = fetch(client, url, "/api/ps", key).await else {
        return None;
    };
    let entry = ps
        .get("models")?
        .as_array()?
        .iter()
        .find(|m| {
            [m.get("name"), m.get("model")]
                .iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .any(|n| same_ollama_model(n, model))
        })?
        .clone();
    let number = |k: &str| entry.get(k).and_then(Value::as_u64);
    Some(LoadedModel {
        server: url.to_owned(),
        model: model.to_owned(),
        context_length: number("context_length"),
        size: number("size"),
        size_vram: number("size_vram"),
    })
}

/// Whether two Ollama model names are the same model: a name without a tag means `:latest`
/// (`/api/ps` lists `qwen3:latest` for a request that named `qwen3`).
fn same_ollama_model(a: &str, b: &str) -> bool {
    let tagged = |n: &str| {
        if n.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            n.to_owned()
        } else {
            format!("{n}:latest")
        }
    };
    tagged(a) == tagged(b)
}

/// The key for a backend's requests: from the variable `api_key_env` names, else the key its
/// launched llama-server was started with (after `${VAR}` expansion).
pub fn api_key(b: &Backend, launch_args: &[String]) -> Option<String> {
    if let Some(key) = b.api_key_env.as_ref().and_then(|v| std::env::var(v).ok()) {
        return Some(key);
    }
    b.launch.as_ref()?;
    launched_key(launch_args)
}

/// The key a launched llama-server requires: `--api-key K` or `--api-key=K` (of a
/// comma-separated list, the first), the first line of `--api-key-file F`, or, failing those,
/// `LLAMA_API_KEY`, which the server reads from the environment it inherits from us.
fn launched_key(args: &[String]) -> Option<String> {
    let value = |flag: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_owned)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        })
    };
    let first = |list: String| list.split(',').next().map(str::trim).map(str::to_owned);
    if let Some(list) = value("--api-key") {
        return first(list);
    }
    if let Some(file) = value("--api-key-file") {
        return std::fs::read_to_string(file).ok().and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        });
    }
    std::env::var("LLAMA_API_KEY").ok().and_then(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_launched_servers_key_in_each_form() {
        assert_eq!(
            launched_key(&args(&["-m", "x", "--api-key", "k1"])).as_deref(),
            Some("k1")
        );
        assert_eq!(
            launched_key(&args(&["--api-key=k2,k3"])).as_deref(),
            Some("k2")
        );
        let file = std::env::temp_dir().join(format!("bh-key-{}", std::process::id()));
        std::fs::write(&file, "\n k4 \nother\n").unwrap();
        let listed = args(&["--api-key-file", file.to_str().unwrap()]);
        assert_eq!(launched_key(&listed).as_deref(), Some("k4"));
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn ollama_names_without_a_tag_are_latest() {
        assert!(same_ollama_model("qwen3:latest", "qwen3"));
        assert!(same_ollama_model("qwen3:0.6b", "qwen3:0.6b"));
        assert!(!same_ollama_model("qwen3:0.6b", "qwen3"));
        assert!(same_ollama_model(
            "registry.local:5000/team/m",
            "registry.local:5000/team/m:latest"
        ));
    }
}
