//! Run records -> polars frames. One frame has a row per agent per run (request-level
//! metrics), the other a row per run (group, harness and server metrics). Cells are keyed by
//! `cell_id`, the hash of their parameters, so records from an older version of the plan
//! still land in the right cell.

use std::collections::HashMap;
use std::path::Path;

use indexmap::IndexMap;
use polars::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::runner::measure::RunStatus;

pub use crate::spec::metrics::{AGENT_METRICS, RUN_METRICS};

/// Only the fields analysis reads; the response text and the rest are skipped while parsing.
#[derive(Deserialize)]
struct LeanRecord {
    cell_id: String,
    params: Map<String, Value>,
    warmup: bool,
    status: RunStatus,
    agents: Vec<LeanAgent>,
    #[serde(default)]
    group: Option<LeanGroup>,
    harness_lag: LeanLag,
    client_rss_mb: Option<f64>,
    #[serde(default)]
    servers: Vec<LeanServer>,
    #[serde(default)]
    gpu: Option<LeanGpu>,
}

#[derive(Deserialize)]
struct LeanAgent {
    status: RunStatus,
    ttft_ms: Option<f64>,
    e2e_ms: Option<f64>,
    output_tokens: Option<f64>,
    prompt_tokens: Option<f64>,
    decode_tok_s: Option<f64>,
    server_decode_tok_s: Option<f64>,
    server_prefill_tok_s: Option<f64>,
    load_ms: Option<f64>,
    cache_n: Option<f64>,
    itl_p50_ms: Option<f64>,
    itl_p95_ms: Option<f64>,
    itl_p99_ms: Option<f64>,
    prefill_overhead_ms: Option<f64>,
    decode_overhead_ms: Option<f64>,
}

#[derive(Deserialize)]
struct LeanGroup {
    wall_ms: f64,
    speedup: f64,
    parallel_efficiency: f64,
}

#[derive(Deserialize)]
struct LeanLag {
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

#[derive(Deserialize)]
struct LeanServer {
    rss_mb: f64,
    cpu_s: f64,
}

#[derive(Deserialize)]
struct LeanGpu {
    power_w: Option<f64>,
}

/// A cell as the records describe it.
#[derive(Debug, Clone)]
pub struct CellInfo {
    pub cell_id: String,
    pub params: Map<String, Value>,
    /// Agents per run (1 for single).
    pub agents: usize,
}

/// Columns under construction; kept per parsing thread and concatenated.
#[derive(Default)]
struct Columns {
    agent_cell: Vec<u32>,
    agent_run: Vec<u32>,
    agent_ok: Vec<bool>,
    agent_warmup: Vec<bool>,
    agent_values: Vec<Vec<Option<f64>>>,
    run_cell: Vec<u32>,
    run_ok: Vec<bool>,
    run_warmup: Vec<bool>,
    run_values: Vec<Vec<Option<f64>>>,
    cells: IndexMap<String, CellInfo>,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            agent_values: vec![Vec::new(); AGENT_METRICS.len()],
            run_values: vec![Vec::new(); RUN_METRICS.len()],
            ..Columns::default()
        }
    }

    fn push(&mut self, run: u32, r: LeanRecord) {
        let next = self.cells.len();
        let cell = match self.cells.get_index_of(&r.cell_id) {
            Some(i) => i,
            None => {
                self.cells.insert(
                    r.cell_id.clone(),
                    CellInfo {
                        cell_id: r.cell_id.clone(),
                        params: r.params,
                        agents: r.agents.len(),
                    },
                );
                next
            }
        } as u32;
        let mut tokens = 0.0;
        let mut longest_e2e: f64 = 0.0;
        for a in &r.agents {
            let throughput = a
                .output_tokens
                .zip(a.e2e_ms)
                .filter(|(_, e)| *e > 0.0)
                .map(|(n, e)| n / (e / 1000.0));
            tokens += a.output_tokens.unwrap_or(0.0);
            longest_e2e = longest_e2e.max(a.e2e_ms.unwrap_or(0.0));
            let values = [
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
            ];
            for (column, v) in self.agent_values.iter_mut().zip(values) {
                column.push(v);
            }
            self.agent_cell.push(cell);
            self.agent_run.push(run);
            self.agent_ok.push(a.status == RunStatus::Ok);
            self.agent_warmup.push(r.warmup);
        }
        let wall = r.group.as_ref().map_or(longest_e2e, |g| g.wall_ms);
        let values = [
            (wall > 0.0).then(|| tokens / (wall / 1000.0)),
            Some(wall),
            r.group.as_ref().map(|g| g.speedup),
            r.group.as_ref().map(|g| g.parallel_efficiency),
            r.harness_lag.p99_ms,
            r.harness_lag.max_ms,
            r.client_rss_mb,
            r.servers.iter().map(|s| s.rss_mb).reduce(f64::max),
            (!r.servers.is_empty()).then(|| r.servers.iter().map(|s| s.cpu_s).sum()),
            r.gpu.and_then(|g| g.power_w),
        ];
        for (column, v) in self.run_values.iter_mut().zip(values) {
            column.push(v);
        }
        self.run_cell.push(cell);
        self.run_ok.push(r.status == RunStatus::Ok);
        self.run_warmup.push(r.warmup);
    }

    /// Appends `other`, renumbering its cells into this one's.
    fn append(&mut self, other: Columns, run_offset: u32) {
        let remap: Vec<u32> = other
            .cells
            .into_values()
            .map(|info| {
                let next = self.cells.len();
                match self.cells.get_index_of(&info.cell_id) {
                    Some(i) => i as u32,
                    None => {
                        self.cells.insert(info.cell_id.clone(), info);
                        next as u32
                    }
                }
            })
            .collect();
        self.agent_cell
            .extend(other.agent_cell.iter().map(|c| remap[*c as usize]));
        self.agent_run
            .extend(other.agent_run.iter().map(|r| r + run_offset));
        self.agent_ok.extend(other.agent_ok);
        self.agent_warmup.extend(other.agent_warmup);
        for (mine, theirs) in self.agent_values.iter_mut().zip(other.agent_values) {
            mine.extend(theirs);
        }
        self.run_cell
            .extend(other.run_cell.iter().map(|c| remap[*c as usize]));
        self.run_ok.extend(other.run_ok);
        self.run_warmup.extend(other.run_warmup);
        for (mine, theirs) in self.run_values.iter_mut().zip(other.run_values) {
            mine.extend(theirs);
        }
    }
}

pub struct Frames {
    /// Row per agent per run: `cell`, `run`, `ok`, `warmup` and AGENT_METRICS.
    pub agents: DataFrame,
    /// Row per run: `cell`, `ok`, `warmup` and RUN_METRICS.
    pub runs: DataFrame,
    /// Indexed by the `cell` column, in order of first appearance.
    pub cells: Vec<CellInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: unreadable run record: {message}")]
    Record {
        path: String,
        line: usize,
        message: String,
    },
    #[error("building frames: {0}")]
    Polars(#[from] PolarsError),
}

fn parse_chunk(path: &Path, text: &str, first_line: usize) -> Result<(Columns, u32), FrameError> {
    let mut columns = Columns::new();
    let mut runs = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: LeanRecord = serde_json::from_str(line).map_err(|e| FrameError::Record {
            path: path.display().to_string(),
            line: first_line + i,
            message: e.to_string(),
        })?;
        columns.push(runs, record);
        runs += 1;
    }
    Ok((columns, runs))
}

/// Reads a journal into frames, parsing its halves on two threads.
pub fn load(path: &Path) -> Result<Frames, FrameError> {
    let text = std::fs::read_to_string(path).map_err(|source| FrameError::Io {
        path: path.display().to_string(),
        source,
    })?;
    // Only complete lines: a torn tail is not a finished run.
    let text = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let mut chunks = Vec::new();
    let mut start = 0;
    for k in 1..=threads {
        let target = text.len() * k / threads;
        let end = if k == threads {
            text.len()
        } else {
            text[target..]
                .find('\n')
                .map_or(text.len(), |i| target + i + 1)
                .max(start)
        };
        chunks.push((start, end));
        start = end;
    }
    let parsed: Vec<Result<(Columns, u32), FrameError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|&(s, e)| {
                let first_line = text[..s].bytes().filter(|b| *b == b'\n').count() + 1;
                scope.spawn(move || parse_chunk(path, &text[s..e], first_line))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parser thread does not panic"))
            .collect()
    });
    let mut all = Columns::new();
    let mut offset = 0;
    for part in parsed {
        let (columns, runs) = part?;
        all.append(columns, offset);
        offset += runs;
    }
    build(all)
}

fn build(c: Columns) -> Result<Frames, FrameError> {
    let mut agent_cols: Vec<Column> = vec![
        Column::new("cell".into(), c.agent_cell),
        Column::new("run".into(), c.agent_run),
        Column::new("ok".into(), c.agent_ok),
        Column::new("warmup".into(), c.agent_warmup),
    ];
    agent_cols.extend(
        AGENT_METRICS
            .iter()
            .zip(c.agent_values)
            .map(|(name, v)| Column::new((*name).into(), v)),
    );
    let mut run_cols: Vec<Column> = vec![
        Column::new("cell".into(), c.run_cell),
        Column::new("ok".into(), c.run_ok),
        Column::new("warmup".into(), c.run_warmup),
    ];
    run_cols.extend(
        RUN_METRICS
            .iter()
            .zip(c.run_values)
            .map(|(name, v)| Column::new((*name).into(), v)),
    );
    Ok(Frames {
        agents: DataFrame::new_infer_height(agent_cols)?,
        runs: DataFrame::new_infer_height(run_cols)?,
        cells: c.cells.into_values().collect(),
    })
}

/// Keeps the rows of `frame` whose `cell` is in `cells` (an inner join with a one-column frame:
/// polars' `is_in` needs a feature we do not otherwise build).
pub fn only_cells(frame: LazyFrame, cells: Vec<u32>) -> PolarsResult<LazyFrame> {
    let keep = DataFrame::new_infer_height(vec![Column::new("cell".into(), cells)])?;
    Ok(frame.join(
        keep.lazy(),
        [col("cell")],
        [col("cell")],
        JoinArgs::new(JoinType::Inner),
    ))
}

/// Values of a float column, nulls skipped.
pub fn floats(frame: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    let ca = frame.column(name)?.f64()?.clone();
    Ok((0..ca.len()).filter_map(|i| ca.get(i)).collect())
}

/// Cell index by cell id, for callers that select cells by parameters.
pub fn cell_index(cells: &[CellInfo]) -> HashMap<&str, usize> {
    cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cell_id.as_str(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The column builders fill values positionally; they must match the metric lists.
    #[test]
    fn frame_columns_follow_the_metric_lists() {
        let line = r#"{"cell_id":"c","params":{},"warmup":false,"status":"ok","agents":[{"status":"ok","ttft_ms":1.0,"e2e_ms":2.0,"output_tokens":3.0,"prompt_tokens":4.0,"decode_tok_s":5.0,"server_decode_tok_s":7.0,"server_prefill_tok_s":8.0,"load_ms":9.0,"cache_n":10.0,"itl_p50_ms":11.0,"itl_p95_ms":12.0,"itl_p99_ms":13.0,"prefill_overhead_ms":14.0,"decode_overhead_ms":15.0}],"harness_lag":{"p99_ms":0.5,"max_ms":0.9},"client_rss_mb":12.0}"#;
        let (columns, runs) = parse_chunk(Path::new("x"), &format!("{line}\n"), 1).unwrap();
        assert_eq!(runs, 1);
        let frames = build(columns).unwrap();
        let get = |df: &DataFrame, name: &str| df.column(name).unwrap().f64().unwrap().get(0);
        assert_eq!(get(&frames.agents, "ttft_ms"), Some(1.0));
        assert_eq!(
            get(&frames.agents, "throughput_tok_s"),
            Some(1500.0),
            "3 tokens in 2 ms"
        );
        assert_eq!(get(&frames.agents, "decode_overhead_ms"), Some(15.0));
        assert_eq!(get(&frames.runs, "aggregate_tok_s"), Some(1500.0));
        assert_eq!(get(&frames.runs, "harness_lag_max_ms"), Some(0.9));
        assert_eq!(get(&frames.runs, "client_rss_mb"), Some(12.0));
        assert_eq!(frames.agents.width(), 4 + AGENT_METRICS.len());
        assert_eq!(frames.runs.width(), 3 + RUN_METRICS.len());
    }
}
