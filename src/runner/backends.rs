//! A session's servers: the ones a TR launches (started, restarted for cold starts, stopped)
//! and the external ones it reaches, who each of them is (provenance), and what an Ollama server
//! has loaded after a run.

use std::time::Duration;

use super::servers::{self, LaunchError, ManagedServer};
use super::{Params, RunError, cells::cell_backend, identity, progress};
use crate::diagnostic::Diagnostic;
use crate::record::manifest::ServerProvenance;
use crate::spec::{Backend, BackendKind, LoadedSpec};
use crate::store::{self, TrPaths};

/// A backend's servers for this session: one set per model the cells on it load.
pub(super) struct Servers {
    pub(super) name: String,
    /// The cells' `model` value these servers load (`cells::model_key`), and its file.
    pub(super) model_key: Option<String>,
    pub(super) model_file: Option<crate::model::ModelFile>,
    pub(super) urls: Vec<String>,
    pub(super) launched: Vec<ManagedServer>,
    /// The model requests name: the spec's, else the one the server lists.
    pub(super) model: Option<String>,
    /// Sent with every request; never stored.
    pub(super) api_key: Option<String>,
}

/// What a session needs running: a backend, and the model its servers load where the cells
/// have a `model` axis.
pub(super) struct Needed {
    pub(super) backend: String,
    pub(super) model: Option<(String, crate::model::ModelFile)>,
}

pub(super) async fn start_servers(
    loaded: &LoadedSpec,
    paths: &TrPaths,
    needed: &[Needed],
    progress: &progress::Progress,
) -> Result<Vec<Servers>, RunError> {
    let mut all = Vec::new();
    for need in needed {
        let Some((name, b)) = loaded.spec.backends.get_key_value(&need.backend) else {
            continue;
        };
        let model = need.model.as_ref().map(|(_, file)| file);
        let mut entry = Servers {
            name: name.clone(),
            model_key: need.model.as_ref().map(|(key, _)| key.clone()),
            model_file: model.cloned(),
            urls: b
                .endpoints
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            launched: Vec::new(),
            model: b.model.clone(),
            api_key: identity::api_key(b, &launch_args(name, b, model).unwrap_or_default()),
        };
        match launch_backend(name, b, model, paths, progress).await {
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

/// A launched backend's llama-server arguments, loading `model` where a cell chose one (its
/// `-m` replaced, or added).
pub(super) fn launch_args(
    name: &str,
    b: &Backend,
    model: Option<&crate::model::ModelFile>,
) -> Result<Vec<String>, LaunchError> {
    let Some(launch) = &b.launch else {
        return Ok(Vec::new());
    };
    let mut args = servers::expand_args(name, &launch.args)?;
    if let Some(model) = model {
        servers::set_model(&mut args, &model.path);
    }
    Ok(args)
}

/// Starts the llama-servers a backend launches (none for external endpoints); on failure the
/// ones already started are stopped.
pub(super) async fn launch_backend(
    name: &str,
    b: &Backend,
    model: Option<&crate::model::ModelFile>,
    paths: &TrPaths,
    progress: &progress::Progress,
) -> Result<Vec<ManagedServer>, RunError> {
    let Some(launch) = &b.launch else {
        return Ok(Vec::new());
    };
    let binary = servers::find_llama_server()?;
    let mut args = launch_args(name, b, model)?;
    // The page scraped during load runs; llama-server serves it only when asked.
    if super::scrape::scrapes(b) && !args.iter().any(|a| a == "--metrics") {
        args.push("--metrics".into());
    }
    let mut started = Vec::new();
    for i in 0..launch.count.max(1) {
        let with = model.map_or(String::new(), |m| format!(" with {}", m.label));
        progress.note(&format!(
            "starting llama-server {} of {} for backend `{name}`{with}",
            i + 1,
            launch.count
        ));
        // One log per model too: the label, as a file name.
        let model_part = model.map_or(String::new(), |m| {
            let safe: String = m
                .label
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("-{safe}")
        });
        let log = paths
            .logs()
            .join(format!("server-{name}{model_part}-{i}.log"));
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
    let launched =
        launch_backend(&entry.name, b, entry.model_file.as_ref(), paths, progress).await?;
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
        let args = launch_args(&s.name, b, s.model_file.as_ref()).unwrap_or_default();
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
            id.provenance.model_file = s.model_file.as_ref().map(model_run);
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
        super::cells::servers_for(running, &name, params),
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

/// A model file as its runs record it.
pub(super) fn model_run(file: &crate::model::ModelFile) -> crate::record::ModelRun {
    crate::record::ModelRun {
        label: file.label.clone(),
        synthetic: file.synthetic,
        params: file.info.params,
        file_bytes: file.info.file_bytes,
        quant: file.info.quant.clone(),
        architecture: file.info.architecture.clone(),
    }
}
