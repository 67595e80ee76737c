//! A session's servers: the ones a TR launches (started, restarted for cold starts, stopped)
//! and the external ones it reaches, who each of them is (provenance), and what an Ollama server
//! has loaded after a run.

use std::time::Duration;

use super::servers::{self, ManagedServer};
use super::{Params, RunError, cells::cell_backend, identity, progress};
use crate::diagnostic::Diagnostic;
use crate::record::manifest::ServerProvenance;
use crate::spec::{Backend, BackendKind, LoadedSpec};
use crate::store::{self, TrPaths};

/// A backend's servers for this session.
pub(super) struct Servers {
    pub(super) name: String,
    pub(super) urls: Vec<String>,
    pub(super) launched: Vec<ManagedServer>,
    /// The model requests name: the spec's, else the one the server lists.
    pub(super) model: Option<String>,
    /// Sent with every request; never stored.
    pub(super) api_key: Option<String>,
}

pub(super) async fn start_servers(
    loaded: &LoadedSpec,
    paths: &TrPaths,
    needed: &[String],
    progress: &progress::Progress,
) -> Result<Vec<Servers>, RunError> {
    let mut all = Vec::new();
    for (name, b) in &loaded.spec.backends {
        if !needed.contains(name) {
            continue;
        }
        let mut entry = Servers {
            name: name.clone(),
            urls: b
                .endpoints
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            launched: Vec::new(),
            model: b.model.clone(),
            api_key: identity::api_key(
                b,
                &b.launch
                    .as_ref()
                    .and_then(|l| servers::expand_args(name, &l.args).ok())
                    .unwrap_or_default(),
            ),
        };
        match launch_backend(name, b, paths, progress).await {
            Ok(launched) => {
                entry
                    .urls
                    .extend(launched.iter().map(|m| m.base_url.clone()));
                entry.launched = launched;
            }
            Err(e) => {
                stop_servers(std::mem::take(&mut all)).await;
                return Err(e);
            }
        }
        all.push(entry);
    }
    Ok(all)
}

/// Starts the llama-servers a backend launches (none for external endpoints); on failure the
/// ones already started are stopped.
pub(super) async fn launch_backend(
    name: &str,
    b: &Backend,
    paths: &TrPaths,
    progress: &progress::Progress,
) -> Result<Vec<ManagedServer>, RunError> {
    let Some(launch) = &b.launch else {
        return Ok(Vec::new());
    };
    let binary = servers::find_llama_server()?;
    let mut args = servers::expand_args(name, &launch.args)?;
    // The page scraped during load runs; llama-server serves it only when asked.
    if super::scrape::scrapes(b) && !args.iter().any(|a| a == "--metrics") {
        args.push("--metrics".into());
    }
    let mut started = Vec::new();
    for i in 0..launch.count.max(1) {
        progress.note(&format!(
            "starting llama-server {} of {} for backend `{name}`",
            i + 1,
            launch.count
        ));
        let log = paths.logs().join(format!("server-{name}-{i}.log"));
        match ManagedServer::launch(&binary, &args, log, Duration::from_secs(180)).await {
            Ok(server) => started.push(server),
            Err(e) => {
                for s in started {
                    s.stop().await;
                }
                return Err(e.into());
            }
        }
    }
    Ok(started)
}

/// A cold start for an agent program: the backend's launched servers are stopped and started
/// again (new processes, empty caches); external endpoints are left as they are.
pub(super) async fn restart_backend(
    entry: &mut Servers,
    b: &Backend,
    paths: &TrPaths,
    progress: &progress::Progress,
) -> Result<(), RunError> {
    let old: Vec<String> = entry.launched.iter().map(|m| m.base_url.clone()).collect();
    for server in std::mem::take(&mut entry.launched) {
        server.stop().await;
    }
    entry.urls.retain(|u| !old.contains(u));
    let launched = launch_backend(&entry.name, b, paths, progress).await?;
    entry
        .urls
        .extend(launched.iter().map(|m| m.base_url.clone()));
    entry.launched = launched;
    Ok(())
}

pub(super) async fn stop_servers(all: Vec<Servers>) {
    for s in all {
        for server in s.launched {
            server.stop().await;
        }
    }
}

/// Asks every server who it is (build, version, model) before the first run, and settles the
/// model of a backend whose spec names none. A server that refuses our credentials stops the
/// run here, with what to do, instead of degrading every run with the same 401.
pub(super) async fn provenance(
    client: &reqwest::Client,
    loaded: &LoadedSpec,
    running: &mut [Servers],
) -> Result<Vec<ServerProvenance>, Diagnostic> {
    let mut out = Vec::new();
    for s in running.iter_mut() {
        let b = &loaded.spec.backends[&s.name];
        let args = b
            .launch
            .as_ref()
            .map(|l| servers::expand_args(&s.name, &l.args).unwrap_or_default())
            .unwrap_or_default();
        let model_file = servers::model_path(&args);
        let model_sha256 = model_file
            .as_deref()
            .and_then(|p| store::sha256_file(p).ok());
        let file_name = model_file.as_ref().map(|p| p.display().to_string());
        let mut listed: Vec<String> = Vec::new();
        for url in &s.urls {
            let found = identity::identify(
                client,
                &s.name,
                b,
                url,
                s.api_key.as_deref(),
                file_name.clone(),
            )
            .await;
            let mut id = found.map_err(|r| refused(loaded, &s.name, b, &r))?;
            id.provenance.model_sha256 = model_sha256.clone();
            for m in id.models {
                if !listed.contains(&m) {
                    listed.push(m);
                }
            }
            out.push(id.provenance);
        }
        if s.model.is_none() && b.kind == BackendKind::Openai {
            match listed.as_slice() {
                [one] => s.model = Some(one.clone()),
                [] => {}
                many => {
                    return Err(loaded
                        .error_at(
                            &format!("backends.{}", s.name),
                            format!(
                                "backend `{}` names no model, and its servers serve {}: {}",
                                s.name,
                                many.len(),
                                many.join(", ")
                            ),
                        )
                        .help(format!(
                            "add `model: {}` (or another of them) to the backend",
                            many[0]
                        )));
                }
            }
        }
    }
    Ok(out)
}

/// The error for a server that refused our API key, or its absence.
fn refused(loaded: &LoadedSpec, name: &str, b: &Backend, r: &identity::Refused) -> Diagnostic {
    let field = match &b.api_key_env {
        Some(_) => format!("backends.{name}.api_key_env"),
        None => format!("backends.{name}"),
    };
    let (sent, help) = match &b.api_key_env {
        Some(var) => (
            format!("the key in ${var} was sent"),
            format!("export the key this server was started with as ${var}"),
        ),
        None => (
            "no API key was sent".to_owned(),
            format!(
                "the server wants an API key: export it (e.g. `export MY_KEY=...`) and add `api_key_env: MY_KEY` to backend `{name}`"
            ),
        ),
    };
    loaded
        .error_at(
            &field,
            format!(
                "{}{} answered HTTP {}: {} ({sent})",
                r.url, r.path, r.status, r.message
            ),
        )
        .help(help)
}

/// For a cell on an Ollama backend: what each of its servers has loaded after the run.
pub(super) async fn loaded_models(
    client: &reqwest::Client,
    loaded: &LoadedSpec,
    params: &Params,
    running: &[Servers],
) -> Vec<crate::record::LoadedModel> {
    let Some(name) = cell_backend(&loaded.spec, params) else {
        return Vec::new();
    };
    let (Some(b), Some(entry)) = (
        loaded.spec.backends.get(&name),
        running.iter().find(|s| s.name == name),
    ) else {
        return Vec::new();
    };
    let Some(model) = entry
        .model
        .as_deref()
        .filter(|_| b.kind == BackendKind::Ollama)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for url in &entry.urls {
        out.extend(identity::loaded_model(client, url, entry.api_key.as_deref(), model).await);
    }
    out
}
