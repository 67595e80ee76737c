//! Measuring one request and one group of concurrent requests. All client-side timing lives
//! here, so every protocol is measured by the same code. Definitions: docs/metrics.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::{GenerationRequest, Protocol, ServerReport, StreamEvent};
use crate::stats::percentile;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Ok,
    Degraded,
}

/// One agent's request: what the client saw, what the server reported, and the difference.
/// For an agent program (`scenario: command`), one program's run: its own reported requests
/// summarised, plus what the runner measured of the process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentRun {
    pub agent: u32,
    pub server: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When this agent's request was sent, after the group's first send.
    pub sent_offset_ms: f64,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    /// Content chunks received (not tokens).
    pub chunks: u32,
    pub output_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub cache_n: Option<u64>,
    pub load_ms: Option<f64>,
    /// (output_tokens - 1) / (e2e - ttft): the client's view of decode speed.
    pub decode_tok_s: Option<f64>,
    pub server_decode_tok_s: Option<f64>,
    pub server_prefill_tok_s: Option<f64>,
    pub server_prompt_ms: Option<f64>,
    pub server_decode_ms: Option<f64>,
    /// ttft - server prompt time: request transfer, queueing, first-chunk delivery.
    pub prefill_overhead_ms: Option<f64>,
    /// (e2e - ttft) - server decode time: streaming and client overhead during decode.
    pub decode_overhead_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p95_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub text: String,
    /// Agent programs: exec until the program's ready line (or first reported request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
    /// Agent programs: peak resident memory of the program's process group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_peak_rss_mb: Option<f64>,
    /// Agent programs: user + system CPU seconds of the program and its children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_cpu_s: Option<f64>,
    /// Agent programs: how the process ended ("exit 0", "exit 3", "signal 9", "killed at timeout").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// Workflows: the share of the spec's quality rules the final output meets, and the missed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality_missed: Vec<String>,
    /// Agent programs and workflows: the requests made (reported by the program, or the steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<super::program::ReportedRequest>,
}

/// What a group of agents released together achieved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupStats {
    pub agents: u32,
    /// First send -> last finish.
    pub wall_ms: f64,
    /// Sum of agent e2e / wall.
    pub speedup: f64,
    /// speedup / agents.
    pub parallel_efficiency: f64,
    /// All agents' output tokens / wall.
    pub aggregate_tok_s: Option<f64>,
}

/// Delay of the harness's own event loop while the run was in flight.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LagStats {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

pub struct Target {
    pub server: String,
    pub request: GenerationRequest,
}

/// Raw observations of one request, before derived metrics.
struct Observed {
    sent: Instant,
    content_at: Vec<Instant>,
    done_at: Option<Instant>,
    report: ServerReport,
    text: String,
    failure: Option<String>,
}

async fn observe(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    target: &Target,
    deadline: tokio::time::Instant,
) -> Observed {
    let mut sent = Instant::now();
    let mut obs = Observed {
        sent,
        failure: None,
        ..Observed::failed(String::new())
    };
    let mut attempt = 0;
    let response = loop {
        let builder = protocol.request(client, &target.server, &target.request);
        sent = Instant::now();
        obs.sent = sent;
        match tokio::time::timeout_at(deadline, builder.send()).await {
            Err(_) => return obs.fail(timeout_reason(sent)),
            // A pooled connection the server had already closed fails before the request is
            // read (llama-server closes some after a stream): send once more, timed afresh.
            Ok(Err(e)) if attempt == 0 && closed_before_response(&e) => attempt += 1,
            Ok(Err(e)) => return obs.fail(request_error(&e)),
            Ok(Ok(r)) => break r,
        }
    };
    if !response.status().is_success() {
        let status = response.status();
        let body = tokio::time::timeout_at(deadline, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        return obs.fail(format!(
            "HTTP {status}: {}",
            crate::backend::truncate(body.trim(), 200)
        ));
    }
    let mut stream = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return obs.fail(timeout_reason(sent)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return obs.fail(format!("truncated stream: {}", error_chain(&e))),
            Ok(Some(Ok(bytes))) => bytes,
        };
        // Every line in one network read arrived at the same moment.
        let arrived = Instant::now();
        pending.extend_from_slice(&chunk);
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            if let Err(reason) = obs.take_line(protocol, &String::from_utf8_lossy(&line), arrived) {
                return obs.fail(reason);
            }
        }
    }
    if !pending.is_empty() {
        let rest = String::from_utf8_lossy(&pending).into_owned();
        if let Err(reason) = obs.take_line(protocol, &rest, Instant::now()) {
            return obs.fail(reason);
        }
    }
    if obs.done_at.is_none() {
        return obs.fail(
            "truncated stream: the connection closed before the server's final chunk".into(),
        );
    }
    obs
}

impl Observed {
    fn failed(reason: String) -> Observed {
        Observed {
            sent: Instant::now(),
            content_at: Vec::new(),
            done_at: None,
            report: ServerReport::default(),
            text: String::new(),
            failure: Some(reason),
        }
    }

    fn fail(mut self, reason: String) -> Observed {
        self.failure = Some(reason);
        self
    }

    fn take_line(
        &mut self,
        protocol: &dyn Protocol,
        line: &str,
        at: Instant,
    ) -> Result<(), String> {
        for event in protocol.decode_line(line.trim_end_matches(['\r', '\n']))? {
            match event {
                StreamEvent::Content(text) => {
                    self.content_at.push(at);
                    self.text.push_str(&text);
                }
                StreamEvent::Report(r) => self.report.merge(r),
                StreamEvent::Done => self.done_at = Some(at),
            }
        }
        Ok(())
    }
}

fn timeout_reason(sent: Instant) -> String {
    format!("timeout after {:.1} s", sent.elapsed().as_secs_f64())
}

fn request_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("connect failed: {}", error_chain(e))
    } else {
        format!("request failed: {}", error_chain(e))
    }
}

/// The error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(count: Option<u64>, millis: Option<f64>) -> Option<f64> {
    match (count, millis) {
        (Some(n), Some(t)) if t > 0.0 => Some(n as f64 / (t / 1000.0)),
        _ => None,
    }
}

fn derive(agent: u32, server: String, group_start: Instant, obs: Observed) -> AgentRun {
    let since = |t: Instant| ms(t.duration_since(obs.sent));
    let ttft = obs.content_at.first().map(|t| since(*t));
    let end = obs.done_at.or(obs.content_at.last().copied());
    let e2e = end.map(since);
    let gaps: Vec<f64> = obs
        .content_at
        .windows(2)
        .map(|w| ms(w[1].duration_since(w[0])))
        .collect();
    let r = &obs.report;
    let decode_window = match (ttft, e2e) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let decode_tok_s = match (r.output_tokens, decode_window) {
        (Some(n), Some(w)) if n > 1 && w > 0.0 => Some((n - 1) as f64 / (w / 1000.0)),
        _ => None,
    };
    let mut status = RunStatus::Ok;
    let mut reason = obs.failure.clone();
    if reason.is_none() && ttft.is_none() {
        reason = Some("empty response: the server sent no content".into());
    }
    if reason.is_some() {
        status = RunStatus::Degraded;
    }
    // Server decode covers tokens 2..n (the first is sampled at the end of prefill).
    let server_decode_tok_s = rate(r.output_tokens.map(|n| n.saturating_sub(1)), r.decode_ms);
    AgentRun {
        agent,
        server,
        status,
        reason,
        sent_offset_ms: ms(obs.sent.duration_since(group_start)),
        ttft_ms: ttft,
        e2e_ms: e2e,
        chunks: obs.content_at.len() as u32,
        output_tokens: r.output_tokens,
        prompt_tokens: r.prompt_tokens,
        cache_n: r.cache_n,
        load_ms: r.load_ms,
        decode_tok_s,
        server_decode_tok_s,
        server_prefill_tok_s: rate(r.prompt_eval_tokens, r.prompt_ms),
        server_prompt_ms: r.prompt_ms,
        server_decode_ms: r.decode_ms,
        prefill_overhead_ms: ttft.zip(r.prompt_ms).map(|(c, s)| c - s),
        decode_overhead_ms: decode_window.zip(r.decode_ms).map(|(c, s)| c - s),
        itl_p50_ms: percentile(&gaps, 50.0),
        itl_p95_ms: percentile(&gaps, 95.0),
        itl_p99_ms: percentile(&gaps, 99.0),
        text: obs.text,
        ..AgentRun::default()
    }
}

/// Measures how late the runtime polls a task that is ready: an OS thread wakes a tokio task
/// every millisecond and the task records how long the wake-up took to be served. Unlike a
/// tokio interval, this is not rounded to the timer wheel's 1 ms granularity.
pub struct LagMonitor {
    stop: Arc<AtomicBool>,
    collector: tokio::task::JoinHandle<Vec<f64>>,
}

impl LagMonitor {
    pub fn start() -> LagMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let thread_stop = stop.clone();
        std::thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        let collector = tokio::spawn(async move {
            let mut lags = Vec::new();
            while let Some(sent) = rx.recv().await {
                lags.push(ms(sent.elapsed()));
            }
            lags
        });
        LagMonitor { stop, collector }
    }

    pub async fn finish(self) -> LagStats {
        self.stop.store(true, Ordering::Relaxed);
        let lags = self.collector.await.unwrap_or_default();
        LagStats {
            samples: lags.len(),
            p50_ms: percentile(&lags, 50.0),
            p99_ms: percentile(&lags, 99.0),
            max_ms: lags.iter().copied().reduce(f64::max),
        }
    }
}

/// Whether a request failed because its (reused) connection was closed before any response.
fn closed_before_response(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Sends one request and measures it (a workflow step).
pub async fn measure_one(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    target: &Target,
    deadline: tokio::time::Instant,
) -> AgentRun {
    let obs = observe(client, protocol, target, deadline).await;
    let sent = obs.sent;
    derive(0, target.server.clone(), sent, obs)
}

/// Sends every target's request at once (released by one barrier) and measures each.
pub async fn run_group(
    client: &reqwest::Client,
    protocol: Arc<dyn Protocol>,
    targets: Vec<Target>,
    timeout: Duration,
) -> (Vec<AgentRun>, Option<GroupStats>) {
    let n = targets.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let deadline = tokio::time::Instant::now() + timeout;
    let servers: Vec<String> = targets.iter().map(|t| t.server.clone()).collect();
    let mut tasks = Vec::with_capacity(n);
    for target in targets {
        let (client, protocol, barrier) = (client.clone(), protocol.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            observe(&client, protocol.as_ref(), &target, deadline).await
        }));
    }
    let mut observed = Vec::with_capacity(n);
    for (task, server) in tasks.into_iter().zip(servers) {
        let obs = task
            .await
            .unwrap_or_else(|e| Observed::failed(format!("measurement task failed: {e}")));
        observed.push((server, obs));
    }
    let start = observed
        .iter()
        .map(|(_, o)| o.sent)
        .min()
        .unwrap_or_else(Instant::now);
    let agents: Vec<AgentRun> = observed
        .into_iter()
        .enumerate()
        .map(|(i, (server, obs))| derive(i as u32, server, start, obs))
        .collect();
    let group = group_stats(&agents);
    (agents, group)
}

/// Agents that each ran from their own start: numbered in order, placed in the group by their
/// start's offset from the first one, with the group's figures.
pub fn place_in_group(ran: Vec<(AgentRun, Instant)>) -> (Vec<AgentRun>, Option<GroupStats>) {
    let first = ran.iter().map(|(_, t)| *t).min();
    let agents: Vec<AgentRun> = ran
        .into_iter()
        .enumerate()
        .map(|(i, (mut run, started))| {
            run.agent = i as u32;
            run.sent_offset_ms = first.map_or(0.0, |f| ms(started.duration_since(f)));
            run
        })
        .collect();
    let group = group_stats(&agents);
    (agents, group)
}

/// Group figures of agents released together (DESIGN.md): wall from the first start to the
/// last finish, speedup = sum of agent times / wall, efficiency = speedup / N. Only when every
/// agent finished well: a failed agent's time says nothing about concurrency.
pub fn group_stats(agents: &[AgentRun]) -> Option<GroupStats> {
    let n = agents.len();
    (n > 1 && agents.iter().all(|a| a.status == RunStatus::Ok)).then(|| {
        let wall = agents
            .iter()
            .map(|a| a.sent_offset_ms + a.e2e_ms.unwrap_or(0.0))
            .fold(0.0, f64::max);
        let sum: f64 = agents.iter().filter_map(|a| a.e2e_ms).sum();
        let tokens: Option<u64> = agents.iter().map(|a| a.output_tokens).sum();
        let speedup = sum / wall;
        GroupStats {
            agents: n as u32,
            wall_ms: wall,
            speedup,
            parallel_efficiency: speedup / n as f64,
            aggregate_tok_s: rate(tokens, Some(wall)),
        }
    })
}
