//! The typed spec: what a researcher writes in `experiments/<TR>.yaml`.
//!
//! Field docs double as descriptions in `banterhearts schema`, so editors show them.
//! Semantic rules (ranges, cross-references, matrix shape) live in `validate/`, where they
//! can point at the offending line.

use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One technical report: its question, how to measure it, and what it claims.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `TR<number>` with an optional suffix (`TR114_v2`, `TR118_v2.2`); equals the file name.
    pub id: String,
    pub title: String,
    /// Research phase this report belongs to, used to group the reports index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// planned | running | complete. "superseded" is derived from another TR's `supersedes`.
    pub status: Status,
    /// The earlier report this one replaces, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Supersedes>,
    /// Earlier reports this one builds on or compares against (not replaces): edges of the
    /// index's relationship graph.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds_on: Vec<String>,
    /// The question the experiment answers.
    pub question: String,
    /// Named LLM servers: launched by the runner or reached at external endpoints.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub backends: IndexMap<String, Backend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// A multi-step workflow the runner itself drives for `scenario: {kind: workflow}`: each run
    /// is the whole sequence of LLM calls, and its final output is scored by the quality rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Workflow>,
    /// A service-level objective for the load cells: goodput, the share of requests meeting
    /// it, and the highest rate of a `rate` sweep meeting it at its percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// Agent programs the runner launches for `scenario: {kind: command}` (any language; the
    /// protocol is in docs/agent-protocol.md). An `agent` axis picks one by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub agents: IndexMap<String, AgentProgram>,
    /// Where cells run when the plan is submitted to a scheduler (`submit --slurm`, `--k8s`):
    /// name -> placement. A `hardware` axis picks one per cell; comparisons along that axis
    /// compare machines on purpose.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub hardware: IndexMap<String, Hardware>,
    /// Axes to sweep (name -> list of values) plus optional `exclude` and `include` lists,
    /// with GitHub Actions semantics: include is applied after exclude. Omit for one cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "matrix_schema")]
    pub matrix: Option<IndexMap<String, Value>>,
    /// Measured runs per cell.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub repetitions: i64,
    /// Warm-up runs per cell, recorded but excluded from statistics.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub warmup: i64,
    /// interleaved (default) | sequential | randomized(<seed>)
    #[serde(default)]
    #[schemars(
        with = "String",
        regex(pattern = r"^(interleaved|sequential|randomized\([0-9]+\))$")
    )]
    pub order: RunOrder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// When a concurrent agent counts as slowed by contention (defaults: 10% decode drop, 2x TTFT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contention: Option<ContentionThresholds>,
    /// When the data is too thin or too noisy to trust: the thresholds of the threats section
    /// and of the audit's validity findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<ValidityThresholds>,
    /// Figures imported from elsewhere, with no raw data in this repository.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub recorded: IndexMap<String, Recorded>,
    /// Power laws fitted across cells: how a metric scales with model size or a numeric axis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaling: Vec<Scaling>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportSettings>,
}

fn one() -> i64 {
    1
}

/// One hardware value's placement on the schedulers `submit` writes for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Slurm partition (`sbatch --partition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Slurm generic resources per task (`sbatch --gres`), e.g. `gpu:h100:1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// Kubernetes node labels the shard's pods must match (`nodeSelector`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub node_selector: IndexMap<String, String>,
    /// Kubernetes resource limits per pod, e.g. `nvidia.com/gpu: "1"`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub resources: IndexMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Planned,
    Running,
    Complete,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Planned => "planned",
            Status::Running => "running",
            Status::Complete => "complete",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Supersedes {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    LlamaCpp,
    Openai,
    Ollama,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// llama-cpp | openai | ollama
    pub kind: BackendKind,
    /// Start `count` llama-server processes on free loopback ports (kinds llama-cpp and openai).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    /// Base URLs of servers that are already running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Model name sent with each request (required for ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key; the key itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Per-request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Ollama only: `generate` (/api/generate, the default) or `chat` (/api/chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<OllamaApi>,
    /// Kind openai only: which server it is (vllm | llama-server | openai | generic), so that
    /// parameters only some servers take are sent under their names, or refused. A launched
    /// backend is llama-server; an endpoint without `server` is generic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<super::params::OpenAiServer>,
    /// Load runs: scrape each server's `/metrics` (Prometheus text) every this many ms
    /// (default 1000; 0 turns it off). Launched llama-servers get `--metrics` unless it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OllamaApi {
    Generate,
    Chat,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub count: i64,
    /// Extra llama-server arguments; `${VAR}` is expanded from the environment at run time.
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Prompts written inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
    /// A YAML file with a list of prompts, relative to the spec's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts_file: Option<String>,
    /// Output tokens per request (at most; exactly with `ignore_eos`). Required unless
    /// `output_tokens` is given.
    #[serde(default)]
    pub max_tokens: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Keep generating past the end-of-sequence token, so every request produces exactly
    /// `max_tokens` (llama.cpp and vLLM honour it). Makes throughput comparable across runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_eos: bool,
    /// Prompts of exact token lengths instead of `prompts`: a number (`512`) or a seeded
    /// distribution (`{dist: uniform, min: 128, max: 1024}`, `{dist: normal | lognormal,
    /// mean, std}`), cut from `corpus` and made exact with the server's own tokenizer. Also
    /// an axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<crate::workload::lengths::Length>,
    /// Output lengths as `input_tokens`: each request asks for its drawn length with
    /// `ignore_eos`, so it generates exactly that many. Replaces `max_tokens`. Also an axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<crate::workload::lengths::Length>,
    /// Shared prefixes: each request starts with one of `groups` prefixes of `tokens` tokens
    /// (request i takes prefix i mod groups), then its own part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
    /// `warm` (the default: the server may reuse cached prefixes) or `cold`: every request
    /// starts with a unique nonce and llama.cpp is sent `cache_prompt: false`, so none can
    /// reuse another's cache. Also an axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheMode>,
    /// The text prompts are cut from, relative to the project root (default
    /// data/corpus/shakespeare.txt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<String>,
    /// Multi-turn sessions (single and concurrent scenarios): each agent sends `turns`
    /// messages in one conversation, each turn resending the conversation so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionShape>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionShape {
    pub turns: i64,
    /// Pause between a turn's answer and the next turn, as a user reading it.
    #[serde(default)]
    pub think_time_ms: f64,
}

/// A service-level objective for load runs: a request meets it when it finished well and
/// every term it sets holds; a run meets it when the `percentile` of each term does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
    /// p50, p90, p95 or p99 (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<String>,
    /// `schedule` (the default: TTFT and E2E from the scheduled time, so a client that fell
    /// behind cannot hide queueing) or `send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Slo {
    /// The percentile as a number (99 for p99); None when it is not one of the four.
    pub fn parse_percentile(&self) -> Option<f64> {
        match self.percentile.as_deref().unwrap_or("p99") {
            "p50" => Some(50.0),
            "p90" => Some(90.0),
            "p95" => Some(95.0),
            "p99" => Some(99.0),
            _ => None,
        }
    }

    pub fn quantile(&self) -> f64 {
        self.parse_percentile().unwrap_or(99.0)
    }

    pub fn from_schedule(&self) -> bool {
        self.from.as_deref() != Some("send")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prefix {
    pub tokens: i64,
    pub groups: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    #[default]
    Warm,
    Cold,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// A profile from `data/pricing.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_hourly_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_g_per_kwh: Option<f64>,
}

/// An agent is contended when its decode_tok_s is more than `decode_drop` below, or its TTFT
/// more than `ttft_factor` times, the same configuration's single-agent median.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentionThresholds {
    #[serde(default = "default_decode_drop")]
    pub decode_drop: f64,
    #[serde(default = "default_ttft_factor")]
    pub ttft_factor: f64,
}

/// Thresholds past which a run or a cell is named as a threat to validity (the report) and a
/// warning (the audit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidityThresholds {
    /// A run is flagged when other processes used more than this share of all CPUs during it
    /// (0.10: a tenth of the machine).
    #[serde(default = "default_background_share")]
    pub background_share: f64,
    /// A metric whose coefficient of variation between runs passes this varies too much.
    #[serde(default = "default_cv")]
    pub cv: f64,
    /// A cell with fewer measured runs than this has intervals too wide to compare.
    #[serde(default = "default_min_runs")]
    pub min_runs: u32,
    /// A cell whose share of degraded runs passes this is flagged.
    #[serde(default = "default_degraded_rate")]
    pub degraded_rate: f64,
    /// Load runs: a run whose achieved request rate is more than this share below its
    /// schedule's is flagged (0.01: 1%).
    #[serde(default = "default_rate_shortfall")]
    pub rate_shortfall: f64,
    /// Load runs: a run whose dispatch lag p99 passes this many ms is flagged (past 10 ms the
    /// run is degraded: the client could not keep the schedule).
    #[serde(default = "default_dispatch_lag_p99_ms")]
    pub dispatch_lag_p99_ms: f64,
    /// Load runs: a run whose share of failed or cancelled requests passes this is flagged.
    #[serde(default = "default_error_rate")]
    pub error_rate: f64,
}

fn default_rate_shortfall() -> f64 {
    0.01
}

fn default_dispatch_lag_p99_ms() -> f64 {
    1.0
}

fn default_error_rate() -> f64 {
    0.01
}

fn default_background_share() -> f64 {
    0.10
}

fn default_cv() -> f64 {
    0.10
}

fn default_min_runs() -> u32 {
    3
}

fn default_degraded_rate() -> f64 {
    0.0
}

impl Default for ValidityThresholds {
    fn default() -> Self {
        ValidityThresholds {
            background_share: default_background_share(),
            cv: default_cv(),
            min_runs: default_min_runs(),
            degraded_rate: default_degraded_rate(),
            rate_shortfall: default_rate_shortfall(),
            dispatch_lag_p99_ms: default_dispatch_lag_p99_ms(),
            error_rate: default_error_rate(),
        }
    }
}

fn default_decode_drop() -> f64 {
    0.10
}

fn default_ttft_factor() -> f64 {
    2.0
}

impl Default for ContentionThresholds {
    fn default() -> Self {
        ContentionThresholds {
            decode_drop: default_decode_drop(),
            ttft_factor: default_ttft_factor(),
        }
    }
}

/// A figure imported from elsewhere (e.g. an older report whose raw data is gone).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Where the figure comes from: required, since nothing here can re-derive it.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A power law y = a x^b fitted by least squares on logarithms to every measured run of the
/// cells selected, y a per-run metric and x what sets the cell apart: its model's parameters or
/// file size, or a numeric axis. The exponent b, with its interval, is the finding.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// Names the fit for claims (`fit: <id>`) and the figure's file.
    pub id: String,
    /// A per-run metric (docs/metrics.md), e.g. `decode_tok_s`.
    pub metric: String,
    /// `params` or `file_bytes` of each cell's model (a `model` axis), or a numeric axis.
    pub against: String,
    /// Restricts the fit to cells whose axes have these values; every other axis must then
    /// be fixed, so that the fit spans only what it is against.
    #[serde(default, rename = "where", skip_serializing_if = "IndexMap::is_empty")]
    pub selection: IndexMap<String, Value>,
    /// Bounds on x, inclusive: the stretch of the range the fit is over (`from: 50M`), for a
    /// relation that is a power law only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

impl Scaling {
    /// `from` and `to` as numbers: plain, or counts written with a suffix (`50M`, `1.5B`).
    pub fn bounds(&self) -> Result<(Option<f64>, Option<f64>), String> {
        Ok((Self::bound(&self.from)?, Self::bound(&self.to)?))
    }

    /// One bound as a number; None when it is not given. A string may carry a K, M or B suffix
    /// (thousands, millions, billions), and is otherwise read as the number it spells.
    pub fn bound(v: &Option<Value>) -> Result<Option<f64>, String> {
        let Some(v) = v else { return Ok(None) };
        match super::model::parse_suffixed(v) {
            Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
            _ => Err(format!(
                "`{v}` is no positive number: write e.g. 90M, 1.5B or 0.25"
            )),
        }
    }

    /// Whether x is within the fit's bounds (`bounds` read, invalid bounds as none).
    pub fn admits(&self, x: f64) -> bool {
        let (from, to) = self.bounds().unwrap_or_default();
        from.is_none_or(|f| x >= f) && to.is_none_or(|t| x <= t)
    }
}

/// What a scaling fit can be against besides a numeric axis: the facts of each cell's model.
pub const MODEL_FACTS: [&str; 2] = ["params", "file_bytes"];

/// A statement the report makes, checked against the data by `audit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A per-run metric (see docs/metrics.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// A scaling fit's id: the claim's figure is that fit's exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<String>,
    /// Restricts the claim to cells whose axes have these values.
    #[serde(default, rename = "where", skip_serializing_if = "IndexMap::is_empty")]
    pub selection: IndexMap<String, Value>,
    /// Two selections to compare; each is axis -> value, or `{recorded: <name>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
    /// A condition over the claim's statistics, e.g. `ci_low >= 0.95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assert: Option<String>,
    /// The value as the report states it, e.g. `+15.2%`, `58 ms`, `99.25%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated: Option<String>,
    /// How the stated figure follows from the two sides (default: from the stated unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<Derive>,
    /// Recorded figures a total (or mean) is computed over: `of: [runs_a, runs_b]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub of: Vec<String>,
    /// Multiplies the derived figure, for unit changes: `derive: ratio, scale: 12` turns years
    /// into months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The claim pools cells that differ in some axis on purpose (validation warns otherwise);
    /// the report names the axes pooled either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pool: bool,
}

/// How a claim's figure is computed from its sides (a, b) or from `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Derive {
    /// (a / b - 1) x 100, in %: the default for a stated `%` with `compare`.
    Change,
    /// (1 - a / b) x 100, in %: what a cheaper a saves against b.
    Savings,
    /// a / b: the default for a stated `x`.
    Ratio,
    /// a / b x 100, in %: what part of b a is (90 of 360 runs is 25%).
    Share,
    /// a - b (in percentage points for fraction metrics): the default for `pp` and other units.
    Difference,
    /// The sum of the `of` figures: the default with `of`.
    Sum,
    /// The mean of the `of` figures.
    Mean,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub a: IndexMap<String, Value>,
    pub b: IndexMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Template file under `templates/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// One line for the reports index; may use template expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_finding: Option<String>,
    /// Changes to the report after it was first published, and why: a claim re-stated when a
    /// better analysis of the same data changed what it supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// When, as YYYY-MM-DD.
    pub date: String,
    /// What changed and why.
    pub change: String,
}

/// The order in which a plan's runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunOrder {
    /// Repetition-major: every cell once, then every cell again. Spreads drift over all cells.
    #[default]
    Interleaved,
    /// Cell-major: all repetitions of a cell back to back.
    Sequential,
    /// A seeded shuffle of all measured runs.
    Randomized(u64),
}

impl fmt::Display for RunOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOrder::Interleaved => f.write_str("interleaved"),
            RunOrder::Sequential => f.write_str("sequential"),
            RunOrder::Randomized(seed) => write!(f, "randomized({seed})"),
        }
    }
}

impl std::str::FromStr for RunOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "interleaved" => return Ok(RunOrder::Interleaved),
            "sequential" => return Ok(RunOrder::Sequential),
            _ => {}
        }
        s.strip_prefix("randomized(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|seed| seed.trim().parse().ok())
            .map(RunOrder::Randomized)
            .ok_or_else(|| {
                format!("unknown run order `{s}`, expected `interleaved`, `sequential` or `randomized(<seed>)`")
            })
    }
}

impl Serialize for RunOrder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor (rather than parsing a String afterwards) lets the YAML deserializer attach
        // the field path and position to the error.
        struct OrderVisitor;
        impl serde::de::Visitor<'_> for OrderVisitor {
            type Value = RunOrder;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`interleaved`, `sequential` or `randomized(<seed>)`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RunOrder, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(OrderVisitor)
    }
}

fn matrix_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Axes (name -> non-empty list of values) plus optional exclude/include lists of axis -> value maps.",
        "properties": {
            "exclude": {"type": "array", "items": {"type": "object"}},
            "include": {"type": "array", "items": {"type": "object"}}
        },
        "additionalProperties": {"type": "array", "minItems": 1}
    })
}

/// Steps run in order; a step's prompt is a template over `input` (the run's workload prompt)
/// and `steps.<id>` (the text of an earlier step).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub steps: Vec<WorkflowStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityRules>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStep {
    pub id: String,
    /// e.g. "List three risks in: {{ steps.summarise }}"
    pub prompt: String,
    /// Tokens for this step (default: the workload's `max_tokens` or the cell's axis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
}

/// Rules the final step's output is scored by: the score is the share of rules it meets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityRules {
    /// Section names that must start a line (as a Markdown heading, or followed by a colon).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_sections: Vec<String>,
    /// Terms that must appear (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_terms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_words: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_words: Option<u64>,
}

/// An external agent program: launched once per agent per run, with the cell's parameters in
/// its environment (`BANTERHEARTS_<AXIS>`) and `{axis}` placeholders in its arguments.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentProgram {
    /// Program and arguments, run in the project root: `["python3", "agents/python/agent.py"]`.
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// Seconds before the program is killed and its run recorded as degraded (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Restart launched servers before every run, so the program meets a cold server (for
    /// Ollama, the program receives BANTERHEARTS_KEEP_ALIVE=0 instead).
    #[serde(default)]
    pub cold_start: bool,
    /// The backend whose server URL the program receives (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// How the agents of one run talk to the servers: the value of a `scenario` matrix axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Scenario {
    /// One agent, one request at a time.
    Single,
    /// `agents` agents released together by one barrier.
    Concurrent {
        agents: u32,
        #[serde(default)]
        placement: Placement,
    },
    /// `agents` agents, each running the spec's `workflow` from first step to last.
    Workflow {
        #[serde(default = "one_agent")]
        agents: u32,
        #[serde(default)]
        placement: Placement,
    },
    /// `agents` copies of an agent program (see `agents:`), released together.
    Command {
        #[serde(default = "one_agent")]
        agents: u32,
        #[serde(default)]
        placement: Placement,
    },
    /// Serving load: one timed period of requests, released open-loop at `rate` per second
    /// (`arrival: constant | poisson | gamma`) or closed-loop by `concurrency` users, each
    /// sending its next request when its previous one ends. Any of `rate`, `concurrency`,
    /// `arrival`, `burstiness` and `max_concurrency` may come from a matrix axis of that
    /// name instead (`rate: [1, 2, 4, 8]` is a sweep). See docs/spec.md.
    Load(LoadScenario),
}

/// The fields of a `load` scenario, as written; `spec::load::resolve` checks them with the
/// cell's axes and gives the period's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadScenario {
    /// How open-loop requests arrive (default poisson, as `vllm bench serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<ArrivalKind>,
    /// Open loop: requests per second offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Gamma arrivals only: the shape of the gaps; below 1 burstier than Poisson, 1 Poisson.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burstiness: Option<f64>,
    /// Closed loop: this many users, each with one request in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i64>,
    /// The measured period lasts this long (no request is scheduled after it) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// ... or sends this many requests: exactly one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<i64>,
    /// Open loop: at most this many requests in flight; a due request waits for a free slot
    /// and is recorded as late by that wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    /// Seconds of the same load before the measured period, recorded but not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    /// Seconds requests still in flight after the period may take before they are cancelled
    /// (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<f64>,
    /// Replay a request trace (Mooncake JSONL, relative to the spec's folder) on its own
    /// timestamps, with its lengths and shared blocks, instead of a rate or users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Trace replay: divide the trace's timestamps by this (2: twice as fast; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalKind {
    /// Exactly 1/rate apart.
    Constant,
    /// Independent arrivals: exponential gaps.
    Poisson,
    /// Gamma gaps of shape `burstiness`.
    Gamma,
}

fn one_agent() -> u32 {
    1
}

impl Scenario {
    /// Agents in the run and whether each gets a server of its own.
    pub fn shape(&self) -> (u32, bool) {
        match self {
            Scenario::Single => (1, false),
            Scenario::Concurrent { agents, placement }
            | Scenario::Workflow { agents, placement }
            | Scenario::Command { agents, placement } => {
                (*agents, *placement == Placement::ServerPerAgent)
            }
            // One stream of requests to the backend's servers.
            Scenario::Load(_) => (1, false),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// All agents share one server.
    #[default]
    Shared,
    /// Each agent gets a server of its own.
    ServerPerAgent,
}
