//! The runner: executes a TR's plan against real servers, one journal line per finished run.
//!
//! Order of events: check the plan can run (before touching anything), lock the journal,
//! launch servers, record provenance, run every pending run, stop servers. Ctrl-C stops after
//! dropping the run in flight; every finished run is already on disk.

mod background;
mod identity;
pub mod measure;
pub mod program;
mod progress;
pub mod servers;
pub mod telemetry;
pub mod workflow;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::backend::{self, GenerationRequest};
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::plan::{self, Plan, PlannedRun};
use crate::spec::{
    AgentProgram, Backend, BackendKind, LoadedSpec, Scenario, Spec, matrix::label_of, params,
};

/// A cell's parameters: axis name -> value.
type Params = indexmap::IndexMap<String, Value>;
use crate::record::manifest::{self, ServerProvenance, Session};
use crate::record::{Journal, JournalError, RunRecord, RunStatus};
use crate::store::{self, TrPaths};
use measure::{LagMonitor, Target};
use servers::{LaunchError, ManagedServer};

/// Seconds an agent program may run before it is killed, unless its spec says otherwise.
const DEFAULT_PROGRAM_TIMEOUT_S: f64 = 300.0;
const ROUTING_AXES: &[&str] = &["backend", "scenario", "max_tokens", "agent"];
const DEFAULT_TIMEOUT_S: f64 = 300.0;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub quiet: bool,
}

#[derive(Debug, Default)]
pub struct RunSummary {
    pub planned: usize,
    pub already_recorded: usize,
    pub recorded: usize,
    pub degraded: usize,
    pub interrupted: bool,
    /// Contention flags over every recorded run of the TR, this session's and earlier ones.
    pub contention: Option<crate::analysis::contention::Contention>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Input(Diagnostics),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("{0}")]
    Other(String),
}

/// A backend's servers for this session.
struct Servers {
    name: String,
    urls: Vec<String>,
    launched: Vec<ManagedServer>,
    /// The model requests name: the spec's, else the one the server lists.
    model: Option<String>,
    /// Sent with every request; never stored.
    api_key: Option<String>,
}

/// Checks that every axis maps to something the runner can set, before any server starts.
fn check_runnable(loaded: &LoadedSpec) -> Result<(), Diagnostics> {
    let spec = &loaded.spec;
    let mut errors = Diagnostics::default();
    let all_command = !loaded.cells.is_empty()
        && loaded
            .cells
            .iter()
            .all(|c| matches!(cell_scenario(&c.params), Some(Scenario::Command { .. })));
    if spec.backends.is_empty() && !all_command {
        errors.push(
            loaded
                .error_at("", "this TR has no backends, so there is nothing to run")
                .help("add a `backends:` entry (see docs/spec.md)"),
        );
    }
    if spec.workload.is_none() && !all_command {
        errors.push(
            loaded
                .error_at("", "this TR has no workload, so there is nothing to send")
                .help("add `workload: {prompts: [...], max_tokens: 64}`"),
        );
    }
    let known: Vec<&str> = params::REQUEST_PARAMS
        .iter()
        .chain(ROUTING_AXES)
        .copied()
        .collect();
    for axis in loaded.matrix.axes.keys() {
        // Agent programs receive every axis in their environment, so any axis is theirs to use.
        if !known.contains(&axis.as_str()) && !all_command {
            let help = did_you_mean(axis, known.iter().copied())
                .unwrap_or_else(|| format!("the runner can vary: {}", known.join(", ")));
            errors.push(
                loaded
                    .error_at(
                        &format!("matrix.{axis}"),
                        format!("axis `{axis}` is not a parameter the runner can set"),
                    )
                    .help(help),
            );
        }
    }
    for (name, b) in &spec.backends {
        if let Some(var) = &b.api_key_env
            && std::env::var(var).is_err()
        {
            errors.push(
                loaded
                    .error_at(
                        &format!("backends.{name}.api_key_env"),
                        format!("environment variable `{var}` is not set"),
                    )
                    .help(format!("export {var}=<key> before running")),
            );
        }
    }
    errors.into_result(())
}

/// The scenario of a cell (single when the matrix has no scenario axis).
fn cell_scenario(params: &Params) -> Option<Scenario> {
    match params.get("scenario") {
        Some(v) => serde_json::from_value(v.clone()).ok(),
        None => Some(Scenario::Single),
    }
}

/// An axis value as an agent program receives it: strings bare, everything else as JSON.
fn env_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The agent program a cell runs: its `agent` axis, else the first program defined.
fn agent_program<'a>(spec: &'a Spec, params: &Params) -> Option<(&'a str, &'a AgentProgram)> {
    let name = params
        .get("agent")
        .and_then(Value::as_str)
        .or_else(|| spec.agents.keys().next().map(String::as_str))?;
    spec.agents
        .get_key_value(name)
        .map(|(n, p)| (n.as_str(), p))
}

/// The backend a cell's requests go to: for a command cell its program's own `backend`, else
/// the cell's `backend` axis, else the first backend defined.
fn cell_backend(spec: &Spec, params: &Params) -> Option<String> {
    let program_backend = match cell_scenario(params) {
        Some(Scenario::Command { .. }) => {
            agent_program(spec, params).and_then(|(_, p)| p.backend.as_deref())
        }
        _ => None,
    };
    program_backend
        .or_else(|| params.get("backend").and_then(Value::as_str))
        .or_else(|| spec.backends.keys().next().map(String::as_str))
        .map(str::to_owned)
}

/// The backend to restart before a command run whose program asks for a cold start.
fn cold_backend<'a>(loaded: &'a LoadedSpec, params: &Params) -> Option<(&'a str, &'a Backend)> {
    let spec = &loaded.spec;
    agent_program(spec, params).filter(|(_, p)| p.cold_start)?;
    let backend = cell_backend(spec, params)?;
    spec.backends
        .get_key_value(&backend)
        .filter(|(_, b)| b.launch.is_some())
        .map(|(n, b)| (n.as_str(), b))
}

/// The programs to start for a command run, with their environment and arguments.
fn program_targets(
    loaded: &LoadedSpec,
    plan: &Plan,
    run: &PlannedRun,
    running: &[Servers],
    paths: &TrPaths,
) -> Result<(Vec<program::ProgramTarget>, Duration), String> {
    let spec = &loaded.spec;
    let params = &plan.cells[run.cell].params;
    let (_, program) = agent_program(spec, params)
        .ok_or("the cell names no agent program defined under `agents:`")?;
    let backend_name = cell_backend(spec, params);
    let servers: Vec<String> = backend_name
        .as_ref()
        .and_then(|b| running.iter().find(|s| &s.name == b))
        .map(|s| s.urls.clone())
        .unwrap_or_default();
    let backend = backend_name.as_ref().and_then(|b| spec.backends.get(b));
    let (agents, per_agent) = cell_scenario(params).map_or((1, false), |s| s.shape());
    let mut env: Vec<(String, String)> = vec![
        ("BANTERHEARTS_TR".into(), spec.id.clone()),
        ("BANTERHEARTS_RUN_ID".into(), run.run_id.clone()),
        ("BANTERHEARTS_REPETITION".into(), run.repetition.to_string()),
        (
            "BANTERHEARTS_WARMUP".into(),
            u8::from(run.warmup).to_string(),
        ),
        ("BANTERHEARTS_AGENTS".into(), agents.to_string()),
    ];
    if let Some(b) = backend {
        env.push((
            "BANTERHEARTS_BACKEND_KIND".into(),
            serde_json::to_value(b.kind)
                .ok()
                .map(|v| env_value(&v))
                .unwrap_or_default(),
        ));
        if let Some(model) = &b.model {
            env.push(("BANTERHEARTS_MODEL_NAME".into(), model.clone()));
        }
        if program.cold_start && b.kind == BackendKind::Ollama {
            env.push(("BANTERHEARTS_KEEP_ALIVE".into(), "0".into()));
        }
    }
    if let Some(w) = &spec.workload {
        env.push(("BANTERHEARTS_MAX_TOKENS".into(), w.max_tokens.to_string()));
        if let Some(seed) = w.seed {
            env.push(("BANTERHEARTS_SEED".into(), seed.to_string()));
        }
        if let Some(file) = &w.prompts_file {
            let path = loaded.path.parent().unwrap_or(Path::new(".")).join(file);
            env.push((
                "BANTERHEARTS_PROMPTS_FILE".into(),
                std::fs::canonicalize(&path)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            ));
        }
    }
    // Cell parameters last, so an axis (max_tokens, say) wins over the workload's default.
    for (k, v) in params {
        if k != "scenario" {
            env.retain(|(key, _)| *key != format!("BANTERHEARTS_{}", k.to_uppercase()));
            env.push((format!("BANTERHEARTS_{}", k.to_uppercase()), env_value(v)));
        }
    }
    env.extend(program.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let targets = (0..agents as usize)
        .map(|agent| {
            let server = if servers.is_empty() {
                String::new()
            } else {
                servers[if per_agent { agent % servers.len() } else { 0 }].clone()
            };
            let mut env = env.clone();
            env.push(("BANTERHEARTS_ENDPOINT".into(), server.clone()));
            env.push(("BANTERHEARTS_AGENT".into(), agent.to_string()));
            let argv = program
                .command
                .iter()
                .map(|arg| {
                    let mut arg = arg
                        .replace("{endpoint}", &server)
                        .replace("{run_id}", &run.run_id)
                        .replace("{agent}", &agent.to_string());
                    for (k, v) in params {
                        arg = arg.replace(&format!("{{{k}}}"), &env_value(v));
                    }
                    arg
                })
                .collect();
            program::ProgramTarget {
                argv,
                env,
                server,
                log: paths
                    .logs()
                    .join(format!("agent-{}-{agent}.log", run.run_id)),
            }
        })
        .collect();
    Ok((
        targets,
        Duration::from_secs_f64(program.timeout_s.unwrap_or(DEFAULT_PROGRAM_TIMEOUT_S)),
    ))
}

fn prompts(loaded: &LoadedSpec) -> Result<Vec<String>, RunError> {
    let Some(w) = &loaded.spec.workload else {
        return Ok(Vec::new());
    };
    let Some(file) = &w.prompts_file else {
        return Ok(w.prompts.clone());
    };
    let path = loaded.path.parent().unwrap_or(Path::new(".")).join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError::Other(format!("{}: {e}", path.display())))?;
    let list: Vec<String> = yaml_serde::from_str(&text).map_err(|e| {
        RunError::Input(
            Diagnostic::new(format!("prompts file is not a list of strings: {e}"))
                .in_file(&path)
                .help("write one `- prompt text` line per prompt")
                .into(),
        )
    })?;
    if list.is_empty() {
        return Err(RunError::Input(
            Diagnostic::new("prompts file has no prompts")
                .in_file(&path)
                .into(),
        ));
    }
    Ok(list)
}

async fn start_servers(
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
async fn launch_backend(
    name: &str,
    b: &Backend,
    paths: &TrPaths,
    progress: &progress::Progress,
) -> Result<Vec<ManagedServer>, RunError> {
    let Some(launch) = &b.launch else {
        return Ok(Vec::new());
    };
    let binary = servers::find_llama_server()?;
    let args = servers::expand_args(name, &launch.args)?;
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
async fn restart_backend(
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

async fn stop_servers(all: Vec<Servers>) {
    for s in all {
        for server in s.launched {
            server.stop().await;
        }
    }
}

/// Asks every server who it is (build, version, model) before the first run, and settles the
/// model of a backend whose spec names none. A server that refuses our credentials stops the
/// run here, with what to do, instead of degrading every run with the same 401.
async fn provenance(
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
async fn loaded_models(
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

fn git_commit(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The agents of one run: which server each talks to and what it sends.
fn targets(
    loaded: &LoadedSpec,
    plan: &Plan,
    run: &PlannedRun,
    running: &[Servers],
    prompts: &[String],
) -> Result<(Vec<Target>, Arc<dyn backend::Protocol>), String> {
    let spec = &loaded.spec;
    let params = &plan.cells[run.cell].params;
    let backend_name = cell_backend(spec, params).unwrap_or_default();
    let b: &Backend = &spec.backends[&backend_name];
    let entry = running
        .iter()
        .find(|s| s.name == backend_name)
        .ok_or("backend has no running servers")?;
    let servers = &entry.urls;
    let (agents, per_agent) = cell_scenario(params)
        .ok_or("the cell's scenario is not valid")?
        .shape();
    let agents = agents as usize;
    let workload = spec.workload.as_ref().ok_or("no workload")?;
    let max_tokens = params
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(workload.max_tokens.max(1) as u64) as u32;
    // By the spec's names; the protocol sends each under its server's name (spec::params).
    let mut request_params = Map::new();
    if let Some(seed) = workload.seed {
        request_params.insert("seed".into(), json!(seed));
    }
    if workload.ignore_eos {
        request_params.insert("ignore_eos".into(), json!(true));
    }
    for (k, v) in params {
        if params::REQUEST_PARAMS.contains(&k.as_str()) {
            request_params.insert(k.clone(), v.clone());
        }
    }
    let targets = (0..agents)
        .map(|agent| Target {
            server: servers[if per_agent { agent % servers.len() } else { 0 }].clone(),
            request: GenerationRequest {
                prompt: prompts[prompt_index(plan, run.repetition, agent) % prompts.len()].clone(),
                max_tokens,
                model: entry.model.clone(),
                params: request_params.clone(),
                api_key: entry.api_key.clone(),
            },
        })
        .collect();
    Ok((targets, Arc::from(backend::protocol(b))))
}

/// Which prompt agent `agent` sends in repetition `repetition`: each repetition takes its own
/// block of as many prompts as the plan's largest group has agents, the same block in every
/// cell. So in one repetition every cell's agent k sends the same prompt, and no prompt of one
/// repetition comes back in the next, where it would find the server's cache warm for some
/// cells and not others (the old rotation, repetition + agent, gave agent 1 of repetition r the
/// prompt agent 0 sends in r + 1).
fn prompt_index(plan: &Plan, repetition: u32, agent: usize) -> usize {
    let block = plan
        .cells
        .iter()
        .filter_map(|c| cell_scenario(&c.params).map(|s| s.shape().0 as usize))
        .max()
        .unwrap_or(1)
        .max(1);
    repetition as usize * block + agent
}

fn summary_line(record: &RunRecord, label: &str) -> (String, String) {
    let kind = if record.warmup { "warm-up" } else { "run" };
    let head = format!(
        "{kind} {} rep {} [{label}]",
        record.run_id, record.repetition
    );
    match record.status {
        RunStatus::Degraded => (
            format!(
                "{head} DEGRADED: {}",
                record.reason.as_deref().unwrap_or("?")
            ),
            "degraded".into(),
        ),
        RunStatus::Ok => {
            let tok_s: Vec<String> = record
                .agents
                .iter()
                .filter_map(|a| a.decode_tok_s)
                .map(|t| format!("{t:.1}"))
                .collect();
            let ttft: Vec<String> = record
                .agents
                .iter()
                .filter_map(|a| a.ttft_ms)
                .map(|t| format!("{t:.0}"))
                .collect();
            let eff = record
                .group
                .as_ref()
                .map(|g| format!("  efficiency {:.1}%", g.parallel_efficiency * 100.0))
                .unwrap_or_default();
            let short = format!("{} tok/s", tok_s.join("+"));
            (
                format!("{head} ok  ttft {} ms  {short}{eff}", ttft.join("/")),
                short,
            )
        }
    }
}

/// Runs every planned run that the journal does not have yet.
pub async fn run(
    root: &Path,
    loaded: &LoadedSpec,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    check_runnable(loaded).map_err(RunError::Input)?;
    let prompts = prompts(loaded)?;
    let plan = plan::build(loaded);
    let paths = TrPaths::new(root, &loaded.spec.id);
    let (mut journal, recorded, set_aside) = Journal::open(&paths)?;
    let manifest = manifest::read_manifest(&paths).map_err(|d| RunError::Input(d.into()))?;
    let pending: Vec<&PlannedRun> = plan
        .runs
        .iter()
        .filter(|r| !journal.contains(&r.run_id))
        .collect();
    let mut summary = RunSummary {
        planned: plan.runs.len(),
        already_recorded: plan.runs.len() - pending.len(),
        ..RunSummary::default()
    };
    let mut progress = progress::Progress::new(pending.len(), opts.quiet);
    if let Some(torn) = &set_aside {
        progress.note(&format!(
            "{}: its last line was torn ({} bytes, a run cut short by a crash); moved to {}",
            paths.runs().display(),
            torn.bytes,
            torn.to.display()
        ));
    }
    if pending.is_empty() {
        progress.note(&format!(
            "{}: all {} planned runs are recorded in {}",
            plan.tr,
            plan.runs.len(),
            paths.runs().display()
        ));
        return Ok(summary);
    }
    if summary.already_recorded > 0 {
        progress.note(&format!(
            "{}: resuming; {} of {} runs already recorded, {} to go",
            plan.tr,
            summary.already_recorded,
            plan.runs.len(),
            pending.len()
        ));
    }
    let mut needed: Vec<String> = Vec::new();
    for r in &pending {
        let name = cell_backend(&loaded.spec, &plan.cells[r.cell].params).unwrap_or_default();
        if !needed.contains(&name) {
            needed.push(name);
        }
    }
    let mut running = start_servers(loaded, &paths, &needed, &progress).await?;
    // No cap on idle connections: with N concurrent agents, N connections made in the warm-up
    // stay open, so measured requests do not pay for connection setup (bench-fidelity found
    // SYN retries of 1 s at 256 streams when only 64 were kept).
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| RunError::Other(format!("HTTP client: {e}")))?;
    let previous = (recorded.runs.iter().map(|r| r.session))
        .chain(
            manifest
                .iter()
                .flat_map(|m| m.sessions.iter().map(|s| s.id)),
        )
        .max()
        .unwrap_or(0);
    let Some(session_id) = previous.checked_add(1) else {
        stop_servers(running).await;
        return Err(RunError::Input(
            Diagnostic::new(format!(
                "session numbers are used up ({previous} is the last)"
            ))
            .in_file(paths.runs())
            .help("a hand-edited `session` in the journal or manifest is likely: correct it")
            .into(),
        ));
    };
    let servers_info = match provenance(&client, loaded, &mut running).await {
        Ok(info) => info,
        Err(d) => {
            stop_servers(running).await;
            return Err(RunError::Input(d.into()));
        }
    };
    let session = Session {
        id: session_id,
        started_unix_ms: store::unix_ms(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(root),
        spec_sha256: store::sha256_hex(loaded.source.as_bytes()),
        host: telemetry::host_info(),
        servers: servers_info,
        planned_runs: plan.runs.len(),
        pending_runs: pending.len(),
    };
    if let Err(e) = manifest::append_session(&paths, &plan.tr, manifest, session) {
        stop_servers(running).await;
        return Err(RunError::Other(e));
    }
    let pids: Vec<u32> = running
        .iter()
        .flat_map(|s| s.launched.iter().map(|m| m.pid))
        .collect();
    let mut telemetry = telemetry::Telemetry::new(&pids);
    let timeout_for = |name: &str| {
        Duration::from_secs_f64(
            loaded
                .spec
                .backends
                .get(name)
                .and_then(|b| b.timeout_s)
                .unwrap_or(DEFAULT_TIMEOUT_S),
        )
    };

    let mut interrupt =
        Interrupt::new().map_err(|e| RunError::Other(format!("cannot watch for Ctrl-C: {e}")))?;
    let outcome: Result<(), RunError> = async {
        for run in &pending {
            let cell = &plan.cells[run.cell];
            let scenario = cell_scenario(&cell.params);
            telemetry.begin_run();
            let started = store::unix_ms();
            let lag = LagMonitor::start();
            let measured = if matches!(scenario, Some(Scenario::Command { .. })) {
                if let Some((name, b)) = cold_backend(loaded, &cell.params)
                    && let Some(entry) = running.iter_mut().find(|s| s.name == name)
                {
                    restart_backend(entry, b, &paths, &progress).await?;
                    let pids: Vec<u32> = running.iter().flat_map(|s| s.launched.iter().map(|m| m.pid)).collect();
                    telemetry = telemetry::Telemetry::new(&pids);
                    telemetry.begin_run();
                }
                let (programs, timeout) = program_targets(loaded, &plan, run, &running, &paths).map_err(RunError::Other)?;
                std::fs::create_dir_all(paths.logs()).map_err(|e| RunError::Other(format!("{}: {e}", paths.logs().display())))?;
                tokio::select! {
                    m = program::run_group(programs, root, timeout) => Some(m),
                    _ = interrupt.recv() => None,
                }
            } else {
                let (targets, protocol) = targets(loaded, &plan, run, &running, &prompts).map_err(RunError::Other)?;
                let backend_name = cell_backend(&loaded.spec, &cell.params).unwrap_or_default();
                let workflow = loaded.spec.workflow.clone().filter(|_| matches!(scenario, Some(Scenario::Workflow { .. })));
                match workflow {
                    Some(steps) => {
                        // Each agent's workflow starts from its run's workload prompt.
                        let agents = targets.into_iter().map(|t| workflow::WorkflowTarget { server: t.server, input: t.request.prompt.clone(), base: t.request }).collect();
                        tokio::select! {
                            m = workflow::run_group(&client, protocol, Arc::new(steps), agents, timeout_for(&backend_name)) => Some(m),
                            _ = interrupt.recv() => None,
                        }
                    }
                    None => tokio::select! {
                        m = measure::run_group(&client, protocol, targets, timeout_for(&backend_name)) => Some(m),
                        _ = interrupt.recv() => None,
                    },
                }
            };
            let harness_lag = lag.finish().await;
            let Some((agents, group)) = measured else {
                summary.interrupted = true;
                return Ok(());
            };
            let telemetry::RunTelemetry { client_rss_mb, servers, gpu, background } = telemetry.end_run();
            let loaded_models = loaded_models(&client, loaded, &cell.params, &running).await;
            let degraded = agents.iter().find(|a| a.status == RunStatus::Degraded);
            let record = RunRecord {
                tr: plan.tr.clone(),
                run_id: run.run_id.clone(),
                cell: run.cell,
                cell_id: cell.id.clone(),
                params: cell.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                repetition: run.repetition,
                warmup: run.warmup,
                status: if degraded.is_some() { RunStatus::Degraded } else { RunStatus::Ok },
                reason: degraded.map(|a| format!("agent {}: {}", a.agent, a.reason.as_deref().unwrap_or("degraded"))),
                started_unix_ms: started,
                session: session_id,
                agents,
                group,
                harness_lag,
                client_rss_mb,
                servers,
                gpu,
                background,
                loaded_models,
            };
            journal.append(&record)?;
            summary.recorded += 1;
            if record.status == RunStatus::Degraded {
                summary.degraded += 1;
            }
            let (line, short) = summary_line(&record, &label_of(&cell.params));
            progress.finished(&line, &short);
        }
        Ok(())
    }
    .await;
    progress.finish();
    stop_servers(running).await;
    // Over every run of the TR, earlier sessions' too; a failure here only costs the summary line.
    summary.contention = crate::analysis::frame::load(&paths.runs())
        .ok()
        .and_then(|frames| {
            crate::analysis::contention::compute(
                &frames,
                loaded.spec.contention.unwrap_or_default(),
            )
            .ok()
        });
    outcome.map(|_| summary)
}

/// Ctrl-C and SIGTERM, watched from before the first run so a signal that arrives between two
/// runs is not lost: it stops the runner before the next run starts.
struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> std::io::Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupt {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
