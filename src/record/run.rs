//! What one finished run recorded: the run record (one journal line), its agents' requests,
//! the group's figures and the telemetry samples taken around it. Written by the runner; read
//! by analysis, report and audit.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// The status of an error response (the request failed before its body streamed), and
    /// the start of the body the server sent with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_body: Option<String>,
    /// How long the server asked to be left alone (`Retry-After` with an error status), in
    /// seconds; the runner waits that long, up to 5 minutes, before the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<f64>,
    /// When this agent's request was sent, after the group's first send.
    pub sent_offset_ms: f64,
    /// Sent -> first generated token of any kind (reasoning or answer).
    pub ttft_ms: Option<f64>,
    /// Sent -> first answer token; after `ttft_ms` when the model reasons first, absent when
    /// it spent its whole budget reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_answer_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    /// Sent -> last generated chunk: the end of the decode window (`e2e_ms` ends at the
    /// server's final message, which may come later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_token_ms: Option<f64>,
    /// Generated chunks received, reasoning and answer (chunks are not tokens).
    pub chunks: u32,
    /// Of `chunks`, those that carried reasoning.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_chunks: u32,
    /// Why the server stopped (OpenAI `finish_reason`, Ollama `done_reason`, llama.cpp
    /// `stop_type`): stop, length, eos, limit, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The body closed after the finish reason without the protocol's end marker (`[DONE]`);
    /// the response is complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended_without_done: bool,
    /// Every generated token, reasoning included (server-reported).
    pub output_tokens: Option<u64>,
    /// Of `output_tokens`, those spent reasoning, where the server says
    /// (`usage.completion_tokens_details.reasoning_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// The server reported reasoning tokens but streamed none of them (the OpenAI API's
    /// reasoning models): `ttft_ms` is then the first visible token, after the hidden
    /// reasoning, and `decode_tok_s` counts the answer tokens only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reasoning_hidden: bool,
    pub prompt_tokens: Option<u64>,
    /// The prompt and output lengths the request was built to (`workload.input_tokens`,
    /// `output_tokens`), in the server's tokens; the template's own tokens are not in them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_requested: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_requested: Option<u64>,
    pub cache_n: Option<u64>,
    pub load_ms: Option<f64>,
    /// (output_tokens - 1) / (e2e - ttft): the client's view of decode speed, reasoning
    /// tokens included.
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
    pub requests: Vec<ReportedRequest>,
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

/// One request as the program reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub ttft_ms: f64,
    pub e2e_ms: f64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Of the prompt tokens, those the server found cached (sessions: the conversation so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_n: Option<u64>,
}

/// One finished run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub tr: String,
    pub run_id: String,
    pub cell: usize,
    pub cell_id: String,
    pub params: serde_json::Map<String, Value>,
    pub repetition: u32,
    pub warmup: bool,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall-clock start, Unix milliseconds (ordering and provenance only; durations use a monotonic clock).
    pub started_unix_ms: u64,
    /// Which runner invocation recorded it (see manifest.json sessions).
    pub session: u32,
    pub agents: Vec<AgentRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupStats>,
    pub harness_lag: LagStats,
    pub client_rss_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSample>,
    /// CPU time used during the run by processes other than the runner, its children and the
    /// servers it launched (absent where /proc is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Background>,
    /// Ollama: what each server had loaded after the run (`/api/ps`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded_models: Vec<LoadedModel>,
    /// A load run: how its requests were paced and its run-level figures (its requests are
    /// in their own file, `requests/<run id>.jsonl`; `agents` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadRun>,
    /// How the run's prompts were built, where the workload asks for exact lengths, prefixes
    /// or a cold cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PromptBuild>,
    /// The model the run's servers loaded, where the cell chose one (`model` axis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRun>,
}

/// A model as reports state it: what it is called, whether its weights are random, and what
/// its file's header says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRun {
    pub label: String,
    /// Random weights: its speed is a real model's of that shape, its text is noise.
    pub synthetic: bool,
    /// Elements of all its tensors (llama-server's `n_params`).
    pub params: u64,
    pub file_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

/// How a run's prompts were built: the corpus and tokenizer used, the template's overhead, and
/// the cache setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptBuild {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_sha256: Option<String>,
    /// The tokenizer endpoint the lengths were made exact with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Prompt tokens the server counts beyond those sent (its chat template, a BOS token),
    /// measured once per server with a 16-token probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_overhead_tokens: Option<i64>,
    /// `warm` or `cold`.
    pub cache: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_groups: Option<u64>,
}

/// How a load run's requests were paced, where they are, and what the period achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRun {
    /// `open` (a drawn schedule) or `closed` (users).
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<String>,
    /// The nominal rate asked for (requests per second); the drawn schedule's own rate is
    /// `summary.offered_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burstiness: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// The seed of the drawn schedule (`schedule::seed_for` of the run id); the warm-up's is
    /// that of `<run id>/warmup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub warmup_s: f64,
    pub warmup_requests: u64,
    /// The request file, relative to the TR's data folder, and the SHA-256 of its bytes.
    pub requests_file: String,
    pub requests_sha256: String,
    pub summary: LoadSummary,
    /// What the servers said of themselves on `/metrics` during the period, where they expose
    /// it and the backend scrapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<ServerMetrics>,
}

/// One scrape of the servers' `/metrics`, summed over the servers a period sends to (the KV
/// cache use is the largest of theirs). Counters count since each server started; only their
/// differences between two scrapes mean anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Requests being processed, and waiting for a slot (the server's queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<f64>,
    /// Share of the KV cache in use, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage: Option<f64>,
    /// Prompt tokens the server handled (computed and found in its cache), of them those found
    /// in its cache, and tokens it generated: counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<f64>,
    /// Requests the server finished: a counter (vLLM's request_success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_finished: Option<f64>,
}

/// A scrape at `t_ms` from the period's start (when its answer arrived).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerScrape {
    pub t_ms: f64,
    #[serde(flatten)]
    pub counters: ServerCounters,
}

/// The servers' own account of a load period: the scrapes, and the counters' differences over
/// the measured period reconciled with the client's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    /// The `/metrics` URLs scraped.
    pub urls: Vec<String>,
    pub interval_ms: f64,
    /// Every scrape that answered, in time order.
    pub scrapes: Vec<ServerScrape>,
    /// Scrapes that failed, and the first one's reason.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ServerMetricsSummary>,
    /// A server counted generated tokens step by step (vLLM) rather than as each request
    /// finished (llama-server): output tokens are matched only when no request straddled the
    /// window's edges.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_counted_per_step: bool,
}

/// The measured period as the servers counted it: from the scrape sent just before the warm-up ends
/// to the one after the last request finished or was cancelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsSummary {
    /// The two scrapes the differences are taken between (ms from the period's start): the
    /// one sent just before the warm-up ends, and the last (before the cut, if requests were cut off).
    pub from_ms: f64,
    pub to_ms: f64,
    /// Counter differences between them.
    pub delta: ServerCounters,
    /// The client's counts over the same window: the requests that finished well between the
    /// two scrapes (a warm-up request finishing after the first is one of them, and counted)
    /// and their output tokens; the prompt tokens of the requests whose first token came
    /// between them (when the server reads a prompt).
    pub client_requests: u64,
    pub client_warmup_requests: u64,
    pub client_output_tokens: u64,
    pub client_prompt_tokens: u64,
    /// Requests of the period that did not finish well (failed or cancelled): a server may
    /// have counted part of their work.
    pub client_not_finished: u64,
    /// Output tokens too close to a boundary scrape to say on which side of it the server
    /// counted them: those of requests that finished within `runner::scrape::BOUNDARY_GUARD`
    /// of either boundary scrape's answer. The client timestamps a token and a scrape's answer
    /// in different tasks, so their order can invert by a scheduling delay; a difference
    /// within these is no disagreement.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub boundary_output_tokens: u64,
    /// Prompt tokens so placed: those of requests whose first token came that near a boundary.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub boundary_prompt_tokens: u64,
    /// server / client - 1, for output tokens and for prompt tokens (none for prompts when
    /// requests were cut off: the server read prompts the client lost with them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_token_diff: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_token_diff: Option<f64>,
    /// The queue (waiting requests) and the running requests over the window's scrapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage_max: Option<f64>,
}

/// Load on the machine from outside the experiment during one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Background {
    /// CPU seconds of other processes.
    pub cpu_s: f64,
    /// Those seconds over the run's wall time times the CPUs: 0.5 on 2 CPUs is one core busy.
    pub share: f64,
}

/// A model an Ollama server had loaded right after a run: the context length and the memory
/// split that the run's `num_ctx` and `num_gpu` produced (a change of either reloads the model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    pub server: String,
    pub model: String,
    pub context_length: Option<u64>,
    /// Bytes the model takes in all, and of them in GPU memory.
    pub size: Option<u64>,
    pub size_vram: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSample {
    pub pid: u32,
    pub rss_mb: f64,
    /// CPU seconds the server used during this run.
    pub cpu_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpuSample {
    pub memory_used_mb: Option<f64>,
    /// Board power during the run: each GPU's mean over `power_samples` readings, summed over
    /// GPUs (one reading at the run's end when sampling gave none).
    pub power_w: Option<f64>,
    pub temperature_c: Option<f64>,
    /// Readings per GPU behind `power_w` (absent: a single reading after the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_samples: Option<usize>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// One request of a load period: when it was due, when it was sent, and what it measured,
/// from the send and from the schedule (the difference is client-side queueing, which a tool
/// that times only from the send hides: coordinated omission).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRequest {
    /// Its place in the schedule, from 0.
    pub index: u64,
    /// Due, and sent, as offsets from the period's start.
    pub scheduled_ms: f64,
    pub sent_ms: f64,
    /// sent - scheduled: how late the client released it.
    pub dispatch_lag_ms: f64,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Still in flight when the period and its grace were over, and cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// From the send.
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    /// From the scheduled time.
    pub ttft_from_schedule_ms: Option<f64>,
    pub e2e_from_schedule_ms: Option<f64>,
    /// (last token - first token) / (output tokens - 1): time per output token.
    pub tpot_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub output_tokens: Option<u64>,
    /// Prompt tokens the server counted, and of them those it found in its cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_n: Option<u64>,
    /// The lengths the request was built to, as for an agent's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_requested: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_requested: Option<u64>,
    /// Due in the warm-up before the measured period: kept, not measured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warmup: bool,
}

/// Requests in flight every `step_ms` from `from_ms` (offsets from the period's start) to the
/// last finish or send: sent at or before each step and not yet finished. A request without an
/// end (failed, cancelled) counts until the last step.
pub fn in_flight<'r>(
    requests: impl Iterator<Item = &'r LoadRequest> + Clone,
    from_ms: f64,
    step_ms: f64,
) -> Vec<u32> {
    let horizon = requests
        .clone()
        .map(|r| r.sent_ms + r.e2e_ms.unwrap_or(0.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut out = Vec::new();
    if !from_ms.is_finite() || step_ms <= 0.0 {
        return out;
    }
    let mut t = from_ms;
    while t <= horizon {
        let busy = requests
            .clone()
            .filter(|r| r.sent_ms <= t && r.e2e_ms.is_none_or(|e| t < r.sent_ms + e))
            .count() as u32;
        out.push(busy);
        t += step_ms;
    }
    out
}

/// Latency percentiles of a load run's requests, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Dispatch lag p99 past which a load run is degraded: the client could not keep the
/// schedule, so its figures describe the client rather than the server.
pub const DEGRADED_LAG_P99_MS: f64 = 10.0;

/// The run-level figures of one load period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub requests: u64,
    pub ok: u64,
    pub cancelled: u64,
    /// Degraded and cancelled requests over all.
    pub error_rate: f64,
    /// The schedule's own rate (requests per second), and what the client achieved: sends
    /// over the span from the first send to the last.
    pub offered_rate: Option<f64>,
    pub achieved_rate: Option<f64>,
    /// Finished requests, and their output tokens, per second of the period (first send to
    /// last finish).
    pub request_throughput: Option<f64>,
    pub output_tok_s: Option<f64>,
    pub ttft_ms: Percentiles,
    pub ttft_from_schedule_ms: Percentiles,
    pub tpot_ms: Percentiles,
    pub itl_ms: Percentiles,
    pub e2e_ms: Percentiles,
    pub e2e_from_schedule_ms: Percentiles,
    pub dispatch_lag_p50_ms: Option<f64>,
    pub dispatch_lag_p99_ms: Option<f64>,
    pub dispatch_lag_max_ms: Option<f64>,
    /// Prompt tokens the server found cached over all prompt tokens, of the requests that
    /// finished well and report both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_hit_rate: Option<f64>,
    /// Of the requests built to an output length, the share that generated exactly it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_output_share: Option<f64>,
    /// Requests in flight, sampled every `in_flight_step_ms` from the first send.
    pub in_flight_step_ms: f64,
    pub in_flight: Vec<u32>,
    pub in_flight_max: u32,
}
