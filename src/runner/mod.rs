//! The runner: executes a TR's plan against real servers, one journal line per finished run.
//!
//! Order of events: check the plan can run (before touching anything), lock the journal,
//! launch servers, record provenance, run every pending run, stop servers. Ctrl-C stops after
//! dropping the run in flight; every finished run is already on disk.

mod backends;
mod background;
mod cells;
mod identity;
pub mod load;
pub mod measure;
mod outcome;
pub mod program;
mod progress;
mod prompts;
pub mod scrape;
pub mod servers;
pub mod session;
pub mod telemetry;
pub mod workflow;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::{self, PlannedRun, shard::Shard};
use crate::spec::{LoadedSpec, Scenario, matrix::label_of};

/// A cell's parameters: axis name -> value.
type Params = indexmap::IndexMap<String, Value>;
use crate::record::manifest::{self, Session};
use crate::record::{Journal, JournalError, RunRecord, RunStatus};
use crate::store::{self, TrPaths};
use backends::{Servers, loaded_models, provenance, restart_backend, start_servers, stop_servers};
use cells::{
    cell_backend, cell_scenario, check_runnable, cold_backend, program_targets, prompts, targets,
};
use measure::LagMonitor;
use outcome::{Measured, load_run, summary_line};
use scrape::scrape_urls;
use servers::LaunchError;

/// Seconds an agent program may run before it is killed, unless its spec says otherwise.
const DEFAULT_PROGRAM_TIMEOUT_S: f64 = 300.0;
const ROUTING_AXES: &[&str] = &[
    "backend",
    "scenario",
    "max_tokens",
    "agent",
    "hardware",
    "model",
];
const DEFAULT_TIMEOUT_S: f64 = 300.0;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub quiet: bool,
    /// Run only this part of the plan, into its own journal under `data/<TR>/shards/`.
    pub shard: Option<Shard>,
    /// Run the plan again into `data/<TR>/replications/<name>/`, beside the original data.
    pub replication: Option<String>,
}

impl RunOptions {
    /// Where this invocation's journal, manifest, requests and logs go.
    pub fn paths(&self, root: &Path, tr: &str) -> TrPaths {
        let set = match &self.replication {
            Some(name) => TrPaths::replication(root, tr, name),
            None => TrPaths::new(root, tr),
        };
        match &self.shard {
            Some(shard) => set.shard(shard),
            None => set,
        }
    }
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

/// Runs every planned run that the journal does not have yet.
pub async fn run(
    root: &Path,
    loaded: &LoadedSpec,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    check_runnable(loaded).map_err(RunError::Input)?;
    let prompts = prompts(loaded)?;
    let plan = plan::build(loaded);
    let paths = opts.paths(root, &loaded.spec.id);
    let mine: Vec<&PlannedRun> = match &opts.shard {
        Some(shard) => shard.runs(&plan, |c| plan::hardware_of(&plan.cells[c])),
        None => plan.runs.iter().collect(),
    };
    let (mut journal, recorded, set_aside) = Journal::open(&paths)?;
    let manifest = manifest::read_manifest(&paths).map_err(|d| RunError::Input(d.into()))?;
    let pending: Vec<&PlannedRun> = mine
        .iter()
        .copied()
        .filter(|r| !journal.contains(&r.run_id))
        .collect();
    let mut summary = RunSummary {
        planned: mine.len(),
        already_recorded: mine.len() - pending.len(),
        ..RunSummary::default()
    };
    let plan_name = match &opts.shard {
        Some(shard) => format!("{} {shard}", plan.tr),
        None => plan.tr.clone(),
    };
    crate::record::requests::sweep(&paths, |id| journal.contains(id))
        .map_err(|e| RunError::Other(format!("{}: {e}", paths.requests_dir().display())))?;
    let mut progress = progress::Progress::new(pending.len(), opts.quiet);
    if let Some(dead) = journal.left_by() {
        progress.note(&format!(
            "{}: the runner before this one ({}) ended without letting go of it: it was killed or crashed. Its lock is taken over; every run it finished is in the journal.",
            paths.lock().display(),
            dead.describe()
        ));
    }
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
            "{plan_name}: all {} planned runs are recorded in {}",
            mine.len(),
            paths.runs().display()
        ));
        return Ok(summary);
    }
    if summary.already_recorded > 0 {
        progress.note(&format!(
            "{plan_name}: resuming; {} of {} runs already recorded, {} to go",
            summary.already_recorded,
            mine.len(),
            pending.len()
        ));
    }
    // Each backend the pending runs use, once per model their cells load.
    let mut wanted: Vec<(String, Option<&Value>)> = Vec::new();
    for r in &pending {
        let params = &plan.cells[r.cell].params;
        let name = cell_backend(&loaded.spec, params).unwrap_or_default();
        let want = (name, params.get("model"));
        if !wanted.contains(&want) {
            wanted.push(want);
        }
    }
    let needed = needed_servers(wanted, &progress)?;
    // Watched from here on: a signal while servers start (a model can take minutes to load)
    // stops them too, and says how to resume, instead of killing the runner outright.
    let mut interrupt =
        Interrupt::new().map_err(|e| RunError::Other(format!("cannot watch for Ctrl-C: {e}")))?;
    let mut running = tokio::select! {
        started = start_servers(loaded, &paths, &needed, &progress) => started?,
        // Servers being launched are killed as their futures are dropped (`kill_on_drop`).
        _ = interrupt.recv() => {
            summary.interrupted = true;
            return Ok(summary);
        }
    };
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
        planned_runs: mine.len(),
        pending_runs: pending.len(),
        shard: opts.shard.clone(),
        merged_from: None,
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
    let server_per_model = plan.cells.iter().any(|c| c.params.contains_key("model"));
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

    let mut shaper = prompts::Shaper::default();
    let outcome: Result<(), RunError> = async {
        for (done, run) in pending.iter().enumerate() {
            let cell = &plan.cells[run.cell];
            let scenario = cell_scenario(&cell.params);
            // A load cell's period, drawn before anything is measured.
            let load_period = match &scenario {
                Some(Scenario::Load(load)) => {
                    let shape = crate::spec::load::resolve(load, &cell.params)
                        .map_err(|p| RunError::Other(format!("cell {}: {}", label_of(&cell.params), p.message)))?;
                    let trace = match &load.trace {
                        Some(file) => crate::workload::trace::read(&loaded.path.parent().unwrap_or(Path::new(".")).join(file))
                            .map_err(|d| RunError::Input(d.into()))?,
                        None => Vec::new(),
                    };
                    let period = load::period_for(&shape, &run.run_id, &trace).map_err(|e| RunError::Other(e.to_string()))?;
                    Some((shape, period, trace))
                }
                _ => None,
            };
            // Requests built to exact lengths are built now, outside the measured run.
            let mut prompt_build = None;
            let built = match (&loaded.spec.workload, &scenario) {
                (_, Some(Scenario::Command { .. })) | (None, _) => None,
                (Some(w), _) => {
                    let (base, protocol) = targets(loaded, &plan, run, &running, &prompts).map_err(RunError::Other)?;
                    let trace = load_period.as_ref().map(|(_, _, t)| t.as_slice()).unwrap_or_default();
                    let shape = prompts::Shape::of(w, &cell.params);
                    let n = match &load_period {
                        Some((_, period, _)) => period.requests.unwrap_or(prompts::CLOSED_LOOP_POOL),
                        // A session's turns: request i is agent i mod N's turn i / N.
                        None => base.len() * session_turns(w),
                    };
                    // A trace's requests are shaped by the trace; others by the workload, if it asks.
                    let planned = if trace.is_empty() {
                        shape.as_ref().map(|s| prompts::plan(s, &run.run_id, n))
                    } else {
                        Some(prompts::from_trace(&trace[..n.min(trace.len())]))
                    };
                    match planned {
                        None => Some((base, protocol)),
                        Some(planned) => {
                            let name = cell_backend(&loaded.spec, &cell.params).unwrap_or_default();
                            let b = &loaded.spec.backends[&name];
                            let cache = shape.as_ref().map(|s| s.cache).unwrap_or_default();
                            let (shaped, build) = shaper
                                .build(&client, protocol.as_ref(), root, w, b, cache, &run.run_id, &base, &planned)
                                .await
                                .map_err(|e| RunError::Other(format!("cell {}: building its prompts: {e}", label_of(&cell.params))))?;
                            prompt_build = Some(build);
                            Some((shaped, protocol))
                        }
                    }
                }
            };
            telemetry.begin_run();
            let started = store::unix_ms();
            let lag = LagMonitor::start();
            let measured = if let Some((shape, mut period, _)) = load_period {
                let (targets, protocol) = built.ok_or_else(|| RunError::Other("a load cell needs a workload".into()))?;
                let backend_name = cell_backend(&loaded.spec, &cell.params).unwrap_or_default();
                let limits = load::PeriodLimits {
                    max_concurrency: period.max_concurrency,
                    grace: period.grace,
                    timeout: timeout_for(&backend_name),
                };
                let live = Arc::new(load::Live::default());
                let ticker = progress.follow_load(live.clone(), period.offered_rate);
                let scraper = scrape_urls(&loaded.spec.backends[&backend_name], &targets)
                    .map(|(urls, interval)| scrape::Scraper::start(client.clone(), urls, interval, live.clone(), period.warmup));
                let requests = tokio::select! {
                    r = load::run_period_with(&client, protocol, &targets, period.pacer.as_mut(), limits, period.warmup, &live) => Some(r),
                    _ = interrupt.recv() => None,
                };
                if let Some(t) = ticker {
                    t.abort();
                }
                match (requests, scraper) {
                    (Some(r), Some(s)) => {
                        let metrics = s.finish(&live, period.warmup, &r).await;
                        Some(Measured::Load(r, shape, period, Some(Box::new(metrics))))
                    }
                    (r, _) => r.map(|r| Measured::Load(r, shape, period, None)),
                }
            } else if matches!(scenario, Some(Scenario::Command { .. })) {
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
                    m = program::run_group(programs, root, timeout) => Some(Measured::Agents(m)),
                    _ = interrupt.recv() => None,
                }
            } else {
                let (targets, protocol) = built.ok_or_else(|| RunError::Other("this cell needs a workload".into()))?;
                let backend_name = cell_backend(&loaded.spec, &cell.params).unwrap_or_default();
                let workflow = loaded.spec.workflow.clone().filter(|_| matches!(scenario, Some(Scenario::Workflow { .. })));
                let session = loaded.spec.workload.as_ref().and_then(|w| w.session);
                if let Some(session) = session.filter(|_| workflow.is_none()) {
                    let agents = plan_agents(&scenario);
                    let sessions = session_targets(targets, agents, session.turns.max(1) as usize, &prompts, cells::first_prompt(&plan, run));
                    let think = Duration::from_secs_f64(session.think_time_ms.max(0.0) / 1000.0);
                    tokio::select! {
                        m = session::run_group(&client, protocol, sessions, think, timeout_for(&backend_name)) => Some(Measured::Agents(m)),
                        _ = interrupt.recv() => None,
                    }
                } else {
                match workflow {
                    Some(steps) => {
                        // Each agent's workflow starts from its run's workload prompt.
                        let agents = targets.into_iter().map(|t| workflow::WorkflowTarget { server: t.server, input: t.request.prompt.clone(), base: t.request }).collect();
                        tokio::select! {
                            m = workflow::run_group(&client, protocol, Arc::new(steps), agents, timeout_for(&backend_name)) => Some(Measured::Agents(m)),
                            _ = interrupt.recv() => None,
                        }
                    }
                    None => tokio::select! {
                        m = measure::run_group(&client, protocol, targets, timeout_for(&backend_name)) => Some(Measured::Agents(m)),
                        _ = interrupt.recv() => None,
                    },
                }
                }
            };
            let harness_lag = lag.finish().await;
            let Some(measured) = measured else {
                summary.interrupted = true;
                return Ok(());
            };
            let telemetry::RunTelemetry { client_rss_mb, mut servers, gpu, background } = telemetry.end_run();
            let cell_servers = cell_backend(&loaded.spec, &cell.params)
                .and_then(|name| cells::servers_for(&running, &name, &cell.params));
            if server_per_model {
                // Servers of other models idle beside this cell's: their memory is not its.
                let mine: Vec<u32> = cell_servers.iter().flat_map(|s| s.launched.iter().map(|m| m.pid)).collect();
                servers.retain(|s| mine.contains(&s.pid));
            }
            let model = cell_servers.and_then(|s| s.model_file.as_ref()).map(backends::model_run);
            let loaded_models = loaded_models(&client, loaded, &cell.params, &running).await;
            let (mut agents, group, load, reason) = match measured {
                Measured::Agents((agents, group)) => {
                    let reason = agents.iter().find(|a| a.status == RunStatus::Degraded)
                        .map(|a| format!("agent {}: {}", a.agent, a.reason.as_deref().unwrap_or("degraded")));
                    (agents, group, None, reason)
                }
                Measured::Load(requests, shape, period, server_metrics) => {
                    // The requests are on disk before the journal line that points at them.
                    let sha256 = crate::record::requests::write(&paths, &run.run_id, &requests)
                        .map_err(|e| RunError::Other(e.to_string()))?;
                    let mut load = load_run(&shape, &period, &requests, &run.run_id, sha256);
                    load.server_metrics = server_metrics.map(|m| *m);
                    let reason = load::degraded_reason(&load.summary);
                    (Vec::new(), None, Some(load), reason)
                }
            };
            if model.as_ref().is_some_and(|m| m.synthetic) {
                // Random weights write noise: scoring it would be a quality figure of nothing.
                for a in &mut agents {
                    a.quality_score = None;
                }
            }
            let record = RunRecord {
                tr: plan.tr.clone(),
                run_id: run.run_id.clone(),
                cell: run.cell,
                cell_id: cell.id.clone(),
                params: cell.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                repetition: run.repetition,
                warmup: run.warmup,
                status: if reason.is_some() { RunStatus::Degraded } else { RunStatus::Ok },
                reason,
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
                load,
                prompts: prompt_build,
                model,
            };
            journal.append(&record)?;
            summary.recorded += 1;
            if record.status == RunStatus::Degraded {
                summary.degraded += 1;
            }
            let (line, short) = summary_line(&record, &label_of(&cell.params));
            progress.finished(&line, &short);
            if let Some(wait) = retry_after(&record).filter(|_| done + 1 < pending.len()) {
                progress.note(&format!(
                    "the server asked for {wait:.0} s without requests (Retry-After); the next run waits"
                ));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {}
                    _ = interrupt.recv() => {
                        summary.interrupted = true;
                        return Ok(());
                    }
                }
            }
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

/// How long the server asked to be left alone after this run: the longest `Retry-After` its
/// agents were answered with, at most `MAX_RETRY_AFTER_S`. A load period's requests are not
/// asked: an open-loop schedule must not bend to the server it measures.
fn retry_after(record: &RunRecord) -> Option<f64> {
    record
        .agents
        .iter()
        .filter_map(|a| a.retry_after_s)
        .reduce(f64::max)
        .map(|s| s.min(measure::MAX_RETRY_AFTER_S))
}

/// The server sets to start: per backend, and per model where cells choose one. Models are
/// resolved (a synthetic one written, the first time) before any server starts, so a model
/// that cannot be had costs no launch; a model two backends load is resolved once.
fn needed_servers(
    wanted: Vec<(String, Option<&Value>)>,
    progress: &progress::Progress,
) -> Result<Vec<backends::Needed>, RunError> {
    let mut files: Vec<(String, crate::model::ModelFile)> = Vec::new();
    let mut needed = Vec::new();
    for (backend, value) in wanted {
        let model = match value {
            None => None,
            Some(value) => {
                let key = value.to_string();
                match files.iter().find(|(k, _)| *k == key) {
                    Some(known) => Some(known.clone()),
                    None => {
                        let model = crate::spec::model::ModelValue::from_value(value)
                            .map_err(RunError::Other)?;
                        // Writing a model takes seconds; the runtime's other threads go on.
                        let file = tokio::task::block_in_place(|| {
                            crate::model::resolve(&model, &|m| progress.note(m))
                        })
                        .map_err(|e| RunError::Other(format!("model {}: {e}", model.label())))?;
                        files.push((key, file));
                        files.last().cloned()
                    }
                }
            }
        };
        needed.push(backends::Needed { backend, model });
    }
    Ok(needed)
}

/// Turns per session of the workload (1 without sessions).
fn session_turns(w: &crate::spec::Workload) -> usize {
    w.session.map_or(1, |s| s.turns.max(1) as usize)
}

/// Agents in a cell's runs.
fn plan_agents(scenario: &Option<Scenario>) -> usize {
    scenario.as_ref().map_or(1, |s| s.shape().0.max(1) as usize)
}

/// Each agent's session from the run's requests: built ones come as `agents x turns` (request
/// i is agent i mod agents' turn i / agents); otherwise turn k of agent a sends the listed
/// prompt after its first, k x agents further on, so no two turns of a run repeat a prompt
/// while the list lasts.
fn session_targets(
    targets: Vec<measure::Target>,
    agents: usize,
    turns: usize,
    prompts: &[String],
    first: usize,
) -> Vec<session::SessionTarget> {
    let built = targets.len() == agents * turns && turns > 1;
    (0..agents)
        .map(|a| {
            let server = targets[a % targets.len()].server.clone();
            let turns = (0..turns)
                .map(|k| {
                    if built {
                        targets[k * agents + a].request.clone()
                    } else {
                        let mut r = targets[a % targets.len()].request.clone();
                        r.prompt = prompts[(first + a + k * agents) % prompts.len().max(1)].clone();
                        r
                    }
                })
                .collect();
            session::SessionTarget { server, turns }
        })
        .collect()
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
