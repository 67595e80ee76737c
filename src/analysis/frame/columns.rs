//! Journal lines -> column builders: the lean record types (only the fields analysis reads)
//! and the per-cell columns each parsing thread fills, in the metric lists' order.

use polars::prelude::*;
use polars_arrow::bitmap::MutableBitmap;
use serde::Deserialize;

use super::{AGENT_METRICS, RUN_METRICS};
use crate::record::RunStatus;

/// Only the fields analysis reads; the response text and the rest are skipped while parsing.
/// The cell's parameters are not among them: they are read (with serde_json, from the line as
/// written) only the first time a cell is seen.
#[derive(Deserialize)]
pub(super) struct LeanRecord<'a> {
    #[serde(borrow)]
    pub(super) run_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(super) cell_id: std::borrow::Cow<'a, str>,
    /// Unused, but required as the runner requires it (journal::DigestLine): both refuse the
    /// same lines.
    #[allow(dead_code)]
    pub(super) session: serde::de::IgnoredAny,
    pub(super) warmup: bool,
    #[serde(default)]
    pub(super) repetition: u32,
    pub(super) status: RunStatus,
    pub(super) agents: Vec<LeanAgent>,
    #[serde(default)]
    pub(super) group: Option<LeanGroup>,
    pub(super) harness_lag: LeanLag,
    pub(super) client_rss_mb: Option<f64>,
    #[serde(default)]
    pub(super) servers: Vec<LeanServer>,
    #[serde(default)]
    pub(super) gpu: Option<LeanGpu>,
    #[serde(default)]
    pub(super) background: Option<LeanBackground>,
    #[serde(default)]
    pub(super) load: Option<LeanLoad>,
}

#[derive(Deserialize)]
pub(super) struct LeanLoad {
    pub(super) summary: crate::record::LoadSummary,
    #[serde(default)]
    server_metrics: Option<LeanServerMetrics>,
}

#[derive(Deserialize)]
struct LeanServerMetrics {
    #[serde(default)]
    summary: Option<crate::record::ServerMetricsSummary>,
}

/// A load run's figures, in the order of RUN_METRICS' load part.
pub(super) fn load_values(load: Option<&LeanLoad>) -> [Option<f64>; LOAD_METRICS] {
    let Some(s) = load.map(|l| &l.summary) else {
        return [None; LOAD_METRICS];
    };
    let server = load
        .and_then(|l| l.server_metrics.as_ref())
        .and_then(|m| m.summary.as_ref());
    let from_server =
        |f: fn(&crate::record::ServerMetricsSummary) -> Option<f64>| server.and_then(f);
    let shortfall = s
        .offered_rate
        .zip(s.achieved_rate)
        .filter(|(o, _)| *o > 0.0)
        .map(|(o, a)| 1.0 - a / o);
    [
        s.offered_rate,
        s.achieved_rate,
        shortfall,
        s.request_throughput,
        s.output_tok_s,
        Some(s.error_rate),
        s.ttft_ms.p50,
        s.ttft_ms.p90,
        s.ttft_ms.p95,
        s.ttft_ms.p99,
        s.ttft_from_schedule_ms.p50,
        s.ttft_from_schedule_ms.p99,
        s.tpot_ms.p50,
        s.tpot_ms.p90,
        s.tpot_ms.p95,
        s.tpot_ms.p99,
        s.itl_ms.p50,
        s.itl_ms.p99,
        s.e2e_ms.p50,
        s.e2e_ms.p90,
        s.e2e_ms.p95,
        s.e2e_ms.p99,
        s.e2e_from_schedule_ms.p50,
        s.e2e_from_schedule_ms.p99,
        s.dispatch_lag_p50_ms,
        s.dispatch_lag_p99_ms,
        s.dispatch_lag_max_ms,
        Some(f64::from(s.in_flight_max)),
        s.cache_hit_rate,
        s.reached_output_share,
        from_server(|m| m.output_token_diff),
        from_server(|m| m.prompt_token_diff),
        from_server(|m| m.waiting_mean),
        from_server(|m| m.waiting_max),
        from_server(|m| m.running_mean),
        from_server(|m| m.kv_cache_usage_max),
        // goodput and slo_share: filled by the analysis from the request files (serving).
        None,
        None,
    ]
}

/// RUN_METRICS: the figures every run has, then a load run's.
pub(super) const BASE_RUN_METRICS: usize = 11;
pub(super) const LOAD_METRICS: usize = RUN_METRICS.len() - BASE_RUN_METRICS;

#[derive(Deserialize)]
pub(super) struct LeanBackground {
    pub(super) share: f64,
}

#[derive(Deserialize)]
pub(super) struct LeanAgent {
    pub(super) status: RunStatus,
    pub(super) ttft_ms: Option<f64>,
    e2e_ms: Option<f64>,
    pub(super) output_tokens: Option<f64>,
    pub(super) prompt_tokens: Option<f64>,
    pub(super) decode_tok_s: Option<f64>,
    pub(super) server_decode_tok_s: Option<f64>,
    pub(super) server_prefill_tok_s: Option<f64>,
    pub(super) load_ms: Option<f64>,
    pub(super) cache_n: Option<f64>,
    itl_p50_ms: Option<f64>,
    itl_p95_ms: Option<f64>,
    itl_p99_ms: Option<f64>,
    pub(super) prefill_overhead_ms: Option<f64>,
    pub(super) decode_overhead_ms: Option<f64>,
    #[serde(default)]
    pub(super) startup_ms: Option<f64>,
    #[serde(default)]
    pub(super) process_peak_rss_mb: Option<f64>,
    #[serde(default)]
    pub(super) process_cpu_s: Option<f64>,
    #[serde(default)]
    pub(super) quality_score: Option<f64>,
    #[serde(default)]
    pub(super) ttft_answer_ms: Option<f64>,
    #[serde(default)]
    pub(super) reasoning_tokens: Option<f64>,
    #[serde(default)]
    pub(super) output_tokens_requested: Option<f64>,
}

/// Whether a request found its prompt in the server's KV cache: warm when at least half its
/// prompt tokens were cached (llama-server caches all but the last token of a prompt it has
/// seen), cold below that; unknown where the server does not say.
pub(super) fn cache_state(a: &LeanAgent) -> Option<bool> {
    let (cached, prompt) = (a.cache_n?, a.prompt_tokens?);
    (prompt > 0.0).then(|| cached >= prompt / 2.0)
}

#[derive(Deserialize)]
pub(super) struct LeanGroup {
    pub(super) wall_ms: f64,
    pub(super) speedup: f64,
    pub(super) parallel_efficiency: f64,
}

#[derive(Deserialize)]
pub(super) struct LeanLag {
    p99_ms: Option<f64>,
    pub(super) max_ms: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct LeanServer {
    pub(super) rss_mb: f64,
    pub(super) cpu_s: f64,
}

#[derive(Deserialize)]
pub(super) struct LeanGpu {
    pub(super) power_w: Option<f64>,
}

/// A cell as the records describe it.
#[derive(Debug, Clone)]

/// A float column under construction: values and a validity mask, both of which polars takes
/// over without copying (a `Vec<Option<f64>>` had to be rebuilt value by value). A column with
/// no value yet is only counted: many metrics are absent from whole journals (GPU power on a
/// CPU, agent-program figures in a request benchmark) and cost nothing to carry.
#[derive(Default)]
pub(super) struct Floats {
    pub(super) len: usize,
    /// Whether `values` and `valid` hold the column; until then every row is null.
    pub(super) seen_value: bool,
    pub(super) values: Vec<f64>,
    pub(super) valid: MutableBitmap,
}

impl Floats {
    pub(super) fn push(&mut self, value: Option<f64>) {
        if value.is_some() && !self.seen_value {
            self.hold_nulls();
        }
        if self.seen_value {
            self.values.push(value.unwrap_or_default());
            self.valid.push(value.is_some());
        }
        self.len += 1;
    }

    /// Starts holding the column: the rows so far are nulls.
    pub(super) fn hold_nulls(&mut self) {
        self.values.resize(self.len, 0.0);
        self.valid.extend_constant(self.len, false);
        self.seen_value = true;
    }

    pub(super) fn append(&mut self, other: &Floats) {
        if other.seen_value && !self.seen_value {
            self.hold_nulls();
        }
        if other.seen_value {
            self.values.extend_from_slice(&other.values);
            self.valid
                .extend_from_slice(other.valid.as_slice(), 0, other.valid.len());
        } else if self.seen_value {
            self.values.resize(self.values.len() + other.len, 0.0);
            self.valid.extend_constant(other.len, false);
        }
        self.len += other.len;
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.seen_value = false;
        self.values.clear();
        self.valid.clear();
    }

    pub(super) fn into_column(self, name: &str) -> Column {
        if !self.seen_value {
            return Column::full_null(name.into(), self.len, &DataType::Float64);
        }
        Float64Chunked::from_vec_validity(name.into(), self.values, self.valid.into()).into_column()
    }
}

/// One cell's rows under construction: a parsing thread's share of one batch, or (once the
/// batches are appended in file order) all of the cell's rows.
#[derive(Default)]
pub(super) struct Columns {
    pub(super) agent_run: Vec<u64>,
    pub(super) agent_repetition: Vec<u32>,
    pub(super) run_repetition: Vec<u32>,
    pub(super) agent_ok: Vec<bool>,
    pub(super) agent_warmup: Vec<bool>,
    pub(super) agent_values: Vec<Floats>,
    pub(super) run_ok: Vec<bool>,
    pub(super) run_warmup: Vec<bool>,
    pub(super) run_values: Vec<Floats>,
}

impl Columns {
    pub(super) fn new() -> Columns {
        Columns {
            agent_values: AGENT_METRICS.iter().map(|_| Floats::default()).collect(),
            run_values: RUN_METRICS.iter().map(|_| Floats::default()).collect(),
            ..Columns::default()
        }
    }

    pub(super) fn push(&mut self, run: u64, r: &LeanRecord) {
        // Aggregate throughput needs every agent's token count: one missing count would make
        // the total look smaller, not unknown.
        let mut tokens = Some(0.0);
        let mut longest_e2e: f64 = 0.0;
        for a in &r.agents {
            let throughput = a
                .output_tokens
                .zip(a.e2e_ms)
                .filter(|(_, e)| *e > 0.0)
                .map(|(n, e)| n / (e / 1000.0));
            tokens = tokens.zip(a.output_tokens).map(|(sum, n)| sum + n);
            longest_e2e = longest_e2e.max(a.e2e_ms.unwrap_or(0.0));
            // One value per metric, in AGENT_METRICS' order (the length is checked here).
            let values: [Option<f64>; AGENT_METRICS.len()] = [
                a.ttft_ms,
                a.e2e_ms,
                a.output_tokens,
                a.prompt_tokens,
                a.decode_tok_s,
                throughput,
                a.server_decode_tok_s,
                a.server_prefill_tok_s,
                a.load_ms,
                a.cache_n,
                a.itl_p50_ms,
                a.itl_p95_ms,
                a.itl_p99_ms,
                a.prefill_overhead_ms,
                a.decode_overhead_ms,
                a.startup_ms,
                a.process_peak_rss_mb,
                a.process_cpu_s,
                a.quality_score,
                a.ttft_answer_ms,
                a.reasoning_tokens,
                a.ttft_ms.filter(|_| cache_state(a) == Some(false)),
                a.ttft_ms.filter(|_| cache_state(a) == Some(true)),
                // 1 when a request built to an output length generated exactly it, else 0.
                a.output_tokens_requested
                    .map(|want| f64::from(u8::from(a.output_tokens == Some(want)))),
                // Of the request's prompt tokens, the share the server had cached.
                a.cache_n
                    .zip(a.prompt_tokens)
                    .filter(|(_, p)| *p > 0.0)
                    .map(|(c, p)| c / p),
            ];
            for (column, v) in self.agent_values.iter_mut().zip(values) {
                column.push(v);
            }
            self.agent_run.push(run);
            self.agent_repetition.push(r.repetition);
            // A degraded run is counted, not averaged: the agents that finished in it ran
            // beside one that failed, so their figures are not the cell's.
            self.agent_ok
                .push(r.status == RunStatus::Ok && a.status == RunStatus::Ok);
            self.agent_warmup.push(r.warmup);
        }
        // A load run has no agents: its throughput and span are its period's.
        let wall = match &r.load {
            Some(_) => None,
            None => Some(r.group.as_ref().map_or(longest_e2e, |g| g.wall_ms)),
        };
        let aggregate = match &r.load {
            Some(l) => l.summary.output_tok_s,
            None => tokens
                .zip(wall)
                .filter(|(_, w)| *w > 0.0)
                .map(|(t, w)| t / (w / 1000.0)),
        };
        let values: [Option<f64>; BASE_RUN_METRICS] = [
            aggregate,
            wall,
            r.group.as_ref().map(|g| g.speedup),
            r.group.as_ref().map(|g| g.parallel_efficiency),
            r.harness_lag.p99_ms,
            r.harness_lag.max_ms,
            r.client_rss_mb,
            r.servers.iter().map(|s| s.rss_mb).reduce(f64::max),
            (!r.servers.is_empty()).then(|| r.servers.iter().map(|s| s.cpu_s).sum()),
            r.gpu.as_ref().and_then(|g| g.power_w),
            r.background.as_ref().map(|b| b.share),
        ];
        let values = values.into_iter().chain(load_values(r.load.as_ref()));
        for (column, v) in self.run_values.iter_mut().zip(values) {
            column.push(v);
        }
        self.run_ok.push(r.status == RunStatus::Ok);
        self.run_warmup.push(r.warmup);
        self.run_repetition.push(r.repetition);
    }

    /// Appends `other`'s rows after this one's.
    /// Room for every row of `parts`, reserved exactly: appended into columns that grew by
    /// doubling, a million runs would briefly need twice their memory.
    pub(super) fn reserve_for(&mut self, parts: &[Columns]) {
        let agents: usize = parts.iter().map(|c| c.agent_run.len()).sum();
        let runs: usize = parts.iter().map(|c| c.run_ok.len()).sum();
        self.agent_run.reserve_exact(agents);
        self.agent_repetition.reserve_exact(agents);
        self.agent_ok.reserve_exact(agents);
        self.agent_warmup.reserve_exact(agents);
        self.run_repetition.reserve_exact(runs);
        self.run_ok.reserve_exact(runs);
        self.run_warmup.reserve_exact(runs);
        let reserve = |mine: &mut Floats, seen: bool, rows: usize| {
            if seen {
                mine.values.reserve_exact(rows);
                mine.valid.reserve(rows);
            }
        };
        for (i, mine) in self.agent_values.iter_mut().enumerate() {
            reserve(
                mine,
                parts.iter().any(|c| c.agent_values[i].seen_value),
                agents,
            );
        }
        for (i, mine) in self.run_values.iter_mut().enumerate() {
            reserve(mine, parts.iter().any(|c| c.run_values[i].seen_value), runs);
        }
    }

    pub(super) fn append(&mut self, other: &Columns) {
        self.agent_run.extend_from_slice(&other.agent_run);
        self.agent_repetition
            .extend_from_slice(&other.agent_repetition);
        self.run_repetition.extend_from_slice(&other.run_repetition);
        self.agent_ok.extend_from_slice(&other.agent_ok);
        self.agent_warmup.extend_from_slice(&other.agent_warmup);
        for (mine, theirs) in self.agent_values.iter_mut().zip(&other.agent_values) {
            mine.append(theirs);
        }
        self.run_ok.extend_from_slice(&other.run_ok);
        self.run_warmup.extend_from_slice(&other.run_warmup);
        for (mine, theirs) in self.run_values.iter_mut().zip(&other.run_values) {
            mine.append(theirs);
        }
    }

    /// Empties the columns but keeps their capacity, so that a thread parses batch after batch
    /// into the same (already faulted-in) memory.
    pub(super) fn clear(&mut self) {
        self.agent_run.clear();
        self.agent_repetition.clear();
        self.run_repetition.clear();
        self.agent_ok.clear();
        self.agent_warmup.clear();
        self.agent_values.iter_mut().for_each(Floats::clear);
        self.run_ok.clear();
        self.run_warmup.clear();
        self.run_values.iter_mut().for_each(Floats::clear);
    }

    /// The rows as (agents, runs) frames, each row's cell given.
    pub(super) fn into_frames_of(
        self,
        agent_cells: Vec<u32>,
        run_cells: Vec<u32>,
    ) -> PolarsResult<(DataFrame, DataFrame)> {
        let mut agent_cols: Vec<Column> = vec![
            Column::new("cell".into(), agent_cells),
            UInt64Chunked::from_vec("run".into(), self.agent_run).into_column(),
            Column::new("ok".into(), self.agent_ok),
            Column::new("warmup".into(), self.agent_warmup),
            Column::new("repetition".into(), self.agent_repetition),
        ];
        agent_cols.extend(
            AGENT_METRICS
                .iter()
                .zip(self.agent_values)
                .map(|(name, v)| v.into_column(name)),
        );
        let mut run_cols: Vec<Column> = vec![
            Column::new("cell".into(), run_cells),
            Column::new("ok".into(), self.run_ok),
            Column::new("warmup".into(), self.run_warmup),
            Column::new("repetition".into(), self.run_repetition),
        ];
        run_cols.extend(
            RUN_METRICS
                .iter()
                .zip(self.run_values)
                .map(|(name, v)| v.into_column(name)),
        );
        Ok((
            DataFrame::new_infer_height(agent_cols)?,
            DataFrame::new_infer_height(run_cols)?,
        ))
    }
}
