//! What each cell runs: which backend and servers, which scenario, which agent program with
//! what environment, which prompt each agent sends; and the check, before anything starts,
//! that every axis is something the runner can set.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::measure::Target;
use super::{DEFAULT_PROGRAM_TIMEOUT_S, Params, ROUTING_AXES, RunError, Servers, program};
use crate::backend::{self, GenerationRequest};
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::plan::{Plan, PlannedRun};
use crate::spec::{AgentProgram, Backend, BackendKind, LoadedSpec, Scenario, Spec, params};
use crate::store::TrPaths;

/// Checks that every axis maps to something the runner can set, before any server starts.
pub(super) fn check_runnable(loaded: &LoadedSpec) -> Result<(), Diagnostics> {
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
        .chain(crate::spec::load::LOAD_AXES)
        .chain(crate::workload::WORKLOAD_AXES)
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
    // A model name describes a model served elsewhere; the runner loads model files.
    if let Some(values) = loaded.matrix.axes.get("model")
        && let Some(i) = values.iter().position(|v| !v.is_object())
    {
        errors.push(
            loaded
                .error_at(
                    &format!("matrix.model[{i}]"),
                    format!("model `{}` is a name, and the runner loads model files", crate::spec::matrix::display_value(&values[i])),
                )
                .help("write `{gguf: path/to/model.gguf}` or `{synthetic: {params: 50M}}` for a launched backend (docs/spec.md, \"Models\")"),
        );
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
pub(super) fn cell_scenario(params: &Params) -> Option<Scenario> {
    match params.get("scenario") {
        Some(v) => serde_json::from_value(v.clone()).ok(),
        None => Some(Scenario::Single),
    }
}

/// An axis value as an agent program receives it: strings bare, everything else as JSON.
pub(super) fn env_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The agent program a cell runs: its `agent` axis, else the first program defined.
pub(super) fn agent_program<'a>(
    spec: &'a Spec,
    params: &Params,
) -> Option<(&'a str, &'a AgentProgram)> {
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
pub(super) fn cell_backend(spec: &Spec, params: &Params) -> Option<String> {
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

/// Which of a backend's server sets a cell uses: the `model` value's JSON (as
/// `needed_servers` keys them), none without a `model` axis.
pub(super) fn model_key(params: &Params) -> Option<String> {
    params.get("model").map(Value::to_string)
}

/// The servers a cell's requests go to: its backend's, loading its model.
pub(super) fn servers_for<'a>(
    running: &'a [Servers],
    backend: &str,
    params: &Params,
) -> Option<&'a Servers> {
    let key = model_key(params);
    running
        .iter()
        .find(|s| s.name == backend && s.model_key == key)
}

/// The backend to restart before a command run whose program asks for a cold start.
pub(super) fn cold_backend<'a>(
    loaded: &'a LoadedSpec,
    params: &Params,
) -> Option<(&'a str, &'a Backend)> {
    let spec = &loaded.spec;
    agent_program(spec, params).filter(|(_, p)| p.cold_start)?;
    let backend = cell_backend(spec, params)?;
    spec.backends
        .get_key_value(&backend)
        .filter(|(_, b)| b.launch.is_some())
        .map(|(n, b)| (n.as_str(), b))
}

/// The programs to start for a command run, with their environment and arguments.
pub(super) fn program_targets(
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
        .and_then(|b| servers_for(running, b, params))
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

pub(super) fn prompts(loaded: &LoadedSpec) -> Result<Vec<String>, RunError> {
    let Some(w) = &loaded.spec.workload else {
        return Ok(Vec::new());
    };
    let Some(file) = &w.prompts_file else {
        // Prompts cut from the corpus are built per run (runner::prompts); until then each
        // target holds an empty one.
        if w.prompts.is_empty() {
            return Ok(vec![String::new()]);
        }
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

/// The agents of one run: which server each talks to and what it sends.
pub(super) fn targets(
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
    let entry =
        servers_for(running, &backend_name, params).ok_or("backend has no running servers")?;
    let servers = &entry.urls;
    let scenario = cell_scenario(params).ok_or("the cell's scenario is not valid")?;
    // A load period sends one request after another: a target per prompt, in turn, spread
    // over the backend's servers.
    let (agents, per_agent) = match scenario {
        Scenario::Load(_) => (prompts.len().max(1) as u32, true),
        other => other.shape(),
    };
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
    let first_prompt = first_prompt(plan, run);
    let targets = (0..agents)
        .map(|agent| Target {
            server: servers[if per_agent { agent % servers.len() } else { 0 }].clone(),
            request: GenerationRequest {
                prompt: prompts[(first_prompt + agent) % prompts.len()].clone(),
                max_tokens,
                model: entry.model.clone(),
                params: request_params.clone(),
                api_key: entry.api_key.clone(),
                input_tokens: None,
                output_tokens: None,
                prompt_ids: None,
                history: Vec::new(),
            },
        })
        .collect();
    Ok((targets, Arc::from(backend::protocol(b))))
}

/// The prompt agent 0 of `run` sends; agent k sends the k-th after it. Each repetition takes
/// its own block of as many prompts as the plan's largest group has agents, the same block in
/// every cell. So in one repetition every cell's agent k sends the same prompt, and no prompt of one
/// repetition comes back in the next, where it would find the server's cache warm for some
/// cells and not others (the old rotation, repetition + agent, gave agent 1 of repetition r the
/// prompt agent 0 sends in r + 1). Warm-up runs have blocks of their own.
pub(super) fn first_prompt(plan: &Plan, run: &PlannedRun) -> usize {
    let block = plan
        .cells
        .iter()
        .filter_map(|c| cell_scenario(&c.params).map(|s| s.shape().0 as usize))
        .max()
        .unwrap_or(1)
        .max(1);
    // Warm-ups take the blocks after the measured ones, so they warm no measured prompt.
    let slot = if run.warmup {
        plan.repetitions + run.repetition
    } else {
        run.repetition
    };
    slot as usize * block
}
