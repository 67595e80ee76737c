//! Run records -> polars frames. One frame has a row per agent per run (request-level
//! metrics), the other a row per run (group, harness and server metrics). Cells are keyed by
//! `cell_id`, the hash of their parameters, so records from an older version of the plan
//! still land in the right cell.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use indexmap::IndexMap;
use polars::prelude::*;
use polars_arrow::bitmap::MutableBitmap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::record::RunStatus;
use crate::record::journal::{RecordParams, is_whole_json, line_error};

pub use crate::spec::metrics::{AGENT_METRICS, RUN_METRICS};

/// Only the fields analysis reads; the response text and the rest are skipped while parsing.
/// The cell's parameters are not among them: they are read (with serde_json, from the line as
/// written) only the first time a cell is seen.
#[derive(Deserialize)]
struct LeanRecord<'a> {
    #[serde(borrow)]
    run_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    cell_id: std::borrow::Cow<'a, str>,
    /// Unused, but required as the runner requires it (journal::DigestLine): both refuse the
    /// same lines.
    #[allow(dead_code)]
    session: serde::de::IgnoredAny,
    warmup: bool,
    #[serde(default)]
    repetition: u32,
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
    #[serde(default)]
    background: Option<LeanBackground>,
    #[serde(default)]
    load: Option<LeanLoad>,
}

#[derive(Deserialize)]
struct LeanLoad {
    summary: crate::record::LoadSummary,
}

/// A load run's figures, in the order of RUN_METRICS' load part.
fn load_values(load: Option<&LeanLoad>) -> [Option<f64>; LOAD_METRICS] {
    let Some(s) = load.map(|l| &l.summary) else {
        return [None; LOAD_METRICS];
    };
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
    ]
}

/// RUN_METRICS: the figures every run has, then a load run's.
const BASE_RUN_METRICS: usize = 11;
const LOAD_METRICS: usize = RUN_METRICS.len() - BASE_RUN_METRICS;

#[derive(Deserialize)]
struct LeanBackground {
    share: f64,
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
    #[serde(default)]
    startup_ms: Option<f64>,
    #[serde(default)]
    process_peak_rss_mb: Option<f64>,
    #[serde(default)]
    process_cpu_s: Option<f64>,
    #[serde(default)]
    quality_score: Option<f64>,
    #[serde(default)]
    ttft_answer_ms: Option<f64>,
    #[serde(default)]
    reasoning_tokens: Option<f64>,
}

/// Whether a request found its prompt in the server's KV cache: warm when at least half its
/// prompt tokens were cached (llama-server caches all but the last token of a prompt it has
/// seen), cold below that; unknown where the server does not say.
fn cache_state(a: &LeanAgent) -> Option<bool> {
    let (cached, prompt) = (a.cache_n?, a.prompt_tokens?);
    (prompt > 0.0).then(|| cached >= prompt / 2.0)
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

/// The cells seen so far, shared by the parsing threads so that cell indices are global.
type CellRegistry = std::sync::Mutex<IndexMap<String, CellInfo>>;

/// A float column under construction: values and a validity mask, both of which polars takes
/// over without copying (a `Vec<Option<f64>>` had to be rebuilt value by value). A column with
/// no value yet is only counted: many metrics are absent from whole journals (GPU power on a
/// CPU, agent-program figures in a request benchmark) and cost nothing to carry.
#[derive(Default)]
struct Floats {
    len: usize,
    /// Whether `values` and `valid` hold the column; until then every row is null.
    seen_value: bool,
    values: Vec<f64>,
    valid: MutableBitmap,
}

impl Floats {
    fn push(&mut self, value: Option<f64>) {
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
    fn hold_nulls(&mut self) {
        self.values.resize(self.len, 0.0);
        self.valid.extend_constant(self.len, false);
        self.seen_value = true;
    }

    fn append(&mut self, other: &Floats) {
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

    fn clear(&mut self) {
        self.len = 0;
        self.seen_value = false;
        self.values.clear();
        self.valid.clear();
    }

    fn into_column(self, name: &str) -> Column {
        if !self.seen_value {
            return Column::full_null(name.into(), self.len, &DataType::Float64);
        }
        Float64Chunked::from_vec_validity(name.into(), self.values, self.valid.into()).into_column()
    }
}

/// One cell's rows under construction: a parsing thread's share of one batch, or (once the
/// batches are appended in file order) all of the cell's rows.
#[derive(Default)]
struct Columns {
    agent_run: Vec<u64>,
    agent_repetition: Vec<u32>,
    run_repetition: Vec<u32>,
    agent_ok: Vec<bool>,
    agent_warmup: Vec<bool>,
    agent_values: Vec<Floats>,
    run_ok: Vec<bool>,
    run_warmup: Vec<bool>,
    run_values: Vec<Floats>,
}

impl Columns {
    fn new() -> Columns {
        Columns {
            agent_values: AGENT_METRICS.iter().map(|_| Floats::default()).collect(),
            run_values: RUN_METRICS.iter().map(|_| Floats::default()).collect(),
            ..Columns::default()
        }
    }

    fn push(&mut self, run: u64, r: &LeanRecord) {
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
    fn append(&mut self, other: &Columns) {
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
    fn clear(&mut self) {
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

    /// The rows as (agents, runs) frames of cell `cell`.
    fn into_frames(self, cell: u32) -> PolarsResult<(DataFrame, DataFrame)> {
        let mut agent_cols: Vec<Column> = vec![
            Column::new("cell".into(), vec![cell; self.agent_run.len()]),
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
            Column::new("cell".into(), vec![cell; self.run_ok.len()]),
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

pub struct Frames {
    /// Row per agent per run: `cell`, `run`, `ok` (the agent and its run finished), `warmup`,
    /// `repetition` and AGENT_METRICS, sorted by cell.
    pub agents: DataFrame,
    /// Row per run: `cell`, `ok`, `warmup`, `repetition` and RUN_METRICS, sorted by cell.
    pub runs: DataFrame,
    /// Indexed by the `cell` column, in order of first appearance.
    pub cells: Vec<CellInfo>,
    /// Each cell's rows of `agents` and of `runs` (the frames are sorted by cell).
    agent_rows: Vec<Range<usize>>,
    run_rows: Vec<Range<usize>>,
    /// Values already selected from the frames, by a caller's key.
    selections: std::sync::Mutex<HashMap<String, Vec<f64>>>,
    /// Bytes after the journal's last newline that are no whole record (a run being written,
    /// or torn by a crash), left out.
    pub torn_bytes: usize,
}

impl Frames {
    /// The agent rows of `cells`, in the order given; slices of `agents`, so nothing is copied
    /// (a join against the wanted cells hashed every row).
    pub fn agents_of(&self, cells: &[u32]) -> PolarsResult<DataFrame> {
        rows_of(&self.agents, &self.agent_rows, cells)
    }

    /// The agent rows of one cell, with `run` marked sorted (a cell's rows are in record
    /// order): polars then groups them by run as slices, without hashing.
    pub fn agents_of_cell(&self, cell: u32) -> PolarsResult<DataFrame> {
        let mut rows = self.agents_of(&[cell])?;
        mark_sorted(&mut rows, "run")?;
        Ok(rows)
    }

    /// Each cell's rows of `agents`, by cell index.
    pub fn agent_rows(&self) -> &[Range<usize>] {
        &self.agent_rows
    }

    /// Each cell's rows of `runs`, by cell index.
    pub fn run_rows(&self) -> &[Range<usize>] {
        &self.run_rows
    }

    /// The values `select` gives for `key`, computed once.
    pub fn remembered(
        &self,
        key: String,
        select: impl FnOnce() -> PolarsResult<Vec<f64>>,
    ) -> PolarsResult<Vec<f64>> {
        let memo = || self.selections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(values) = memo().get(&key) {
            return Ok(values.clone());
        }
        let values = select()?;
        memo().insert(key, values.clone());
        Ok(values)
    }

    /// The run rows of `cells`, in the order given, as `agents_of`.
    pub fn runs_of(&self, cells: &[u32]) -> PolarsResult<DataFrame> {
        rows_of(&self.runs, &self.run_rows, cells)
    }
}

/// Tells polars that `column` is in ascending order (which the caller knows to be true).
fn mark_sorted(frame: &mut DataFrame, column: &str) -> PolarsResult<()> {
    let mut sorted = frame.column(column)?.as_materialized_series().clone();
    sorted.set_sorted_flag(polars::series::IsSorted::Ascending);
    frame.with_column(sorted.into_column())?;
    Ok(())
}

fn rows_of(frame: &DataFrame, rows: &[Range<usize>], cells: &[u32]) -> PolarsResult<DataFrame> {
    let mut out = frame.clear();
    for &cell in cells {
        if let Some(r) = rows.get(cell as usize) {
            out.vstack_mut_owned(frame.slice(r.start as i64, r.len()))?;
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: unreadable run record ({message}); the journal was not changed: move the line aside by hand if it is damaged"
    )]
    Record {
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: run {run_id} is recorded twice (lines {} and {}); the journal was not changed: keep one copy (was it merged by hand?)",
        lines.0,
        lines.1
    )]
    DuplicateRun {
        path: String,
        run_id: String,
        lines: (usize, usize),
    },
    #[error("building frames: {0}")]
    Polars(#[from] PolarsError),
}

/// Bytes per batch: bounds the memory held by text and column buffers while parsing, and small
/// enough that a block is still in cache when it is parsed (1 MB took 5% less CPU than 8 MB).
const BATCH_BYTES: usize = 1 << 20;

/// The 1-based line number at byte `offset` of the file (only computed for error messages).
fn line_at(path: &Path, offset: usize) -> usize {
    std::fs::read(path).map_or(0, |bytes| {
        bytes[..offset.min(bytes.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    })
}

/// A parsing thread's buffers, kept from one batch to the next.
#[derive(Default)]
struct Parser {
    /// The batch's rows by cell index.
    by_cell: Vec<Columns>,
    /// Cell ids already registered, so the shared registry is locked only for new ones.
    known: HashMap<String, u32>,
    /// A hash of every run id this thread parsed, to find a run recorded twice.
    run_ids: Vec<u64>,
}

/// Parses one batch of complete journal lines into `parser.by_cell`. Run numbers are
/// `batch << 32 | line`, unique without counting the lines of earlier batches. A new cell's
/// parameters are parsed from its first line only; every other line skips them.
fn parse_batch(
    path: &Path,
    (batch, start, bytes): (u64, usize, &[u8]),
    cells: &CellRegistry,
    parser: &mut Parser,
) -> Result<(), FrameError> {
    let Parser {
        by_cell,
        known,
        run_ids,
    } = parser;
    let mut line_start = 0;
    // memchr finds line ends with SIMD: splitting byte by byte cost a second per gigabyte.
    for (i, line_end) in memchr::memchr_iter(b'\n', bytes).enumerate() {
        let begin = line_start;
        let at = start + begin;
        let line = &bytes[begin..line_end];
        line_start = line_end + 1;
        let unreadable = |message: String| FrameError::Record {
            path: path.display().to_string(),
            line: line_at(path, at),
            message,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // One UTF-8 check per line (while the line is in cache) lets serde_json read it as a
        // str, which it parses without re-checking every string; an invalid line is read as
        // bytes, so that the error says what is wrong with it.
        let record: LeanRecord = match std::str::from_utf8(line) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(line),
        }
        .map_err(|e| unreadable(line_error(&e)))?;
        let cell = match known.get(record.cell_id.as_ref()) {
            Some(&cell) => cell,
            None => {
                let mut registry = cells.lock().unwrap_or_else(|p| p.into_inner());
                let cell = match registry.get_index_of(record.cell_id.as_ref()) {
                    Some(cell) => cell,
                    None => {
                        let RecordParams { params } =
                            serde_json::from_slice(line).map_err(|e| unreadable(line_error(&e)))?;
                        let cell_id = record.cell_id.to_string();
                        let info = CellInfo {
                            cell_id: cell_id.clone(),
                            params,
                            agents: record.agents.len(),
                        };
                        registry.insert_full(cell_id, info).0
                    }
                } as u32;
                known.insert(record.cell_id.to_string(), cell);
                cell
            }
        };
        let slot = cell as usize;
        if by_cell.len() <= slot {
            by_cell.resize_with(slot + 1, Columns::new);
        }
        by_cell[slot].push(batch << 32 | i as u64, &record);
        run_ids.push(std::hash::BuildHasher::hash_one(
            &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
            record.run_id.as_ref(),
        ));
    }
    Ok(())
}

/// Appends parsed batches to each cell's rows in file order, whatever order the threads
/// finish them in, so that every cell's rows are in record order and sums come out the same
/// on every analysis.
#[derive(Default)]
struct Merger {
    /// The next batch to append.
    next: u64,
    /// Batches parsed before their turn.
    waiting: BTreeMap<u64, (Result<(), FrameError>, Vec<Columns>)>,
    by_cell: Vec<Columns>,
    /// Emptied buffers, for threads that left theirs in `waiting`.
    spare: Vec<Vec<Columns>>,
    /// The first unreadable record in file order; later batches are not appended.
    error: Option<FrameError>,
}

impl Merger {
    /// Takes a thread's parsed batch and gives back (empty) buffers for its next one.
    fn hand_in(
        &mut self,
        batch: u64,
        parsed: Result<(), FrameError>,
        mut buffers: Vec<Columns>,
    ) -> Vec<Columns> {
        if batch != self.next {
            self.waiting.insert(batch, (parsed, buffers));
            return self.spare.pop().unwrap_or_default();
        }
        self.append(parsed, &mut buffers);
        while let Some((parsed, mut waited)) = self.waiting.remove(&self.next) {
            self.append(parsed, &mut waited);
            self.spare.push(waited);
        }
        buffers
    }

    fn append(&mut self, parsed: Result<(), FrameError>, buffers: &mut [Columns]) {
        self.next += 1;
        match parsed {
            Err(e) if self.error.is_none() => self.error = Some(e),
            Ok(()) if self.error.is_none() => {
                if self.by_cell.len() < buffers.len() {
                    self.by_cell.resize_with(buffers.len(), Columns::new);
                }
                for (all, batch) in self.by_cell.iter_mut().zip(buffers.iter()) {
                    all.append(batch);
                }
            }
            _ => {}
        }
        buffers.iter_mut().for_each(Columns::clear);
    }

    /// The frames, each cell's rows one contiguous chunk, cells in index order, with the cell
    /// column marked sorted: polars then groups by slices instead of gathering every group.
    fn into_frames(self, cells: Vec<CellInfo>) -> Result<Frames, FrameError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (mut agents, mut runs) = Columns::new().into_frames(0)?;
        let (mut agent_rows, mut run_rows) = (Vec::new(), Vec::new());
        let mut by_cell = self.by_cell;
        by_cell.resize_with(cells.len(), Columns::new);
        for (cell, columns) in by_cell.into_iter().enumerate() {
            let (a, r) = columns.into_frames(cell as u32)?;
            agent_rows.push(agents.height()..agents.height() + a.height());
            run_rows.push(runs.height()..runs.height() + r.height());
            agents.vstack_mut_owned(a)?;
            runs.vstack_mut_owned(r)?;
        }
        mark_sorted(&mut agents, "cell")?;
        mark_sorted(&mut runs, "cell")?;
        Ok(Frames {
            agents,
            runs,
            cells,
            agent_rows,
            run_rows,
            selections: Default::default(),
            torn_bytes: 0,
        })
    }
}

/// Reads a journal into frames. A pool of threads (one per core) each reads a block of whole
/// lines and parses it in place. Blocks and column buffers are reused, so a gigabyte is read
/// through a handful of buffers instead of fresh (zeroed, faulted-in) memory, and each value
/// is copied once, from a batch's buffer to its cell's column.
pub fn load(path: &Path) -> Result<Frames, FrameError> {
    load_in_batches(path, BATCH_BYTES)
}

fn load_in_batches(path: &Path, batch_bytes: usize) -> Result<Frames, FrameError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let io = |source| FrameError::Io {
        path: path.display().to_string(),
        source,
    };
    let reader = std::sync::Mutex::new(BatchReader {
        file: std::fs::File::open(path).map_err(io)?,
        carry: Vec::new(),
        next: 0,
        consumed: 0,
        batch_bytes,
        torn: 0,
    });
    let cells: CellRegistry = std::sync::Mutex::new(IndexMap::new());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let merger = std::sync::Mutex::new(Merger::default());
    let run_ids = std::sync::Mutex::new(Vec::new());
    let read_error = std::sync::Mutex::new(None);
    // Set at the first unreadable record or read error: the rest of the file need not be read.
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (reader, merger, cells, failed, read_error, run_ids) =
                (&reader, &merger, &cells, &failed, &read_error, &run_ids);
            scope.spawn(move || {
                let (mut parser, mut block) = (Parser::default(), Vec::new());
                while !failed.load(Ordering::Relaxed) {
                    // Each thread reads its own batch, so the text is in its core's cache
                    // when it parses it.
                    let next = reader
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .next_batch(&mut block);
                    let (index, start, len) = match next {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            *read_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            break;
                        }
                    };
                    let parsed =
                        parse_batch(path, (index, start, &block[..len]), cells, &mut parser);
                    if parsed.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    let buffers = std::mem::take(&mut parser.by_cell);
                    parser.by_cell = merger
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .hand_in(index, parsed, buffers);
                }
                run_ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut parser.run_ids);
            });
        }
    });
    if let Some(e) = read_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(io(e));
    }
    let cells = cells
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_values()
        .collect();
    let torn = reader.into_inner().unwrap_or_else(|p| p.into_inner()).torn;
    let mut frames = merger
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_frames(cells)?;
    frames.torn_bytes = torn;
    let mut run_ids = run_ids.into_inner().unwrap_or_else(|p| p.into_inner());
    run_ids.sort_unstable();
    if run_ids.windows(2).any(|w| w[0] == w[1]) {
        check_run_ids_once(path)?;
    }
    Ok(frames)
}

/// Finds a run recorded twice (its id hashed alike on two lines: read again to be sure, and to
/// name the lines). Counting it twice would weigh it double; which copy is right is the user's
/// call.
fn check_run_ids_once(path: &Path) -> Result<(), FrameError> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        run_id: std::borrow::Cow<'a, str>,
    }
    let text = std::fs::read(path).map_err(|source| FrameError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let Ok(Id { run_id }) = serde_json::from_slice(line) else {
            continue;
        };
        if let Some(&first) = first_line.get(run_id.as_ref()) {
            return Err(FrameError::DuplicateRun {
                path: path.display().to_string(),
                run_id: run_id.into_owned(),
                lines: (first, i + 1),
            });
        }
        first_line.insert(run_id.into_owned(), i + 1);
    }
    Ok(())
}

/// Cuts a journal into batches of whole lines, read by whichever thread asks next.
struct BatchReader {
    file: std::fs::File,
    /// Bytes after the last newline read so far: the start of the next batch.
    carry: Vec<u8>,
    next: u64,
    /// Bytes handed out so far (the file offset of the next batch).
    consumed: usize,
    batch_bytes: usize,
    /// Bytes of a torn last line, left out.
    torn: usize,
}

impl BatchReader {
    /// At the end of the file, what follows the last newline (`block[..filled]`): a last
    /// batch if it is whole JSON (a record that only lacks its newline, as the runner keeps it
    /// too); otherwise a line still being written or torn by a crash, which is no finished
    /// run, and is counted in `torn` and left out.
    fn last_line(&mut self, block: &mut Vec<u8>, filled: usize) -> Option<(u64, usize, usize)> {
        let rest = &block[..filled];
        self.carry.clear();
        if rest.trim_ascii().is_empty() {
            return None;
        }
        if !is_whole_json(rest) {
            self.torn = filled;
            return None;
        }
        block.truncate(filled);
        block.push(b'\n');
        let batch = (self.next, self.consumed, filled + 1);
        self.next += 1;
        self.consumed += filled;
        Some(batch)
    }

    /// Reads the next batch into `block`: (batch index, its offset in the file, bytes of
    /// whole lines), or None at the end.
    fn next_batch(&mut self, block: &mut Vec<u8>) -> std::io::Result<Option<(u64, usize, usize)>> {
        use std::io::Read;
        let mut filled = self.carry.len();
        if block.len() < filled + self.batch_bytes {
            block.resize(filled + self.batch_bytes, 0);
        }
        block[..filled].copy_from_slice(&self.carry);
        loop {
            // A line longer than a block (never written by the runner, but possible) grows it.
            if block.len() < filled + self.batch_bytes / 2 {
                block.resize(filled + self.batch_bytes, 0);
            }
            let n = self.file.read(&mut block[filled..])?;
            filled += n;
            if let Some(last) = memchr::memrchr(b'\n', &block[..filled]) {
                self.carry.clear();
                self.carry.extend_from_slice(&block[last + 1..filled]);
                let batch = (self.next, self.consumed, last + 1);
                self.next += 1;
                self.consumed += last + 1;
                return Ok(Some(batch));
            }
            if n == 0 {
                return Ok(self.last_line(block, filled));
            }
        }
    }
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
        let line = r#"{"run_id":"r1","session":1,"cell_id":"c","params":{},"warmup":false,"status":"ok","agents":[{"status":"ok","ttft_ms":1.0,"e2e_ms":2.0,"output_tokens":3.0,"prompt_tokens":4.0,"decode_tok_s":5.0,"server_decode_tok_s":7.0,"server_prefill_tok_s":8.0,"load_ms":9.0,"cache_n":10.0,"itl_p50_ms":11.0,"itl_p95_ms":12.0,"itl_p99_ms":13.0,"prefill_overhead_ms":14.0,"decode_overhead_ms":15.0}],"harness_lag":{"p99_ms":0.5,"max_ms":0.9},"client_rss_mb":12.0}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        // The second line is torn (no newline): it is not a finished run and is ignored.
        std::fs::write(&path, format!("{line}\n{{\"cell_id\":")).unwrap();
        let frames = load(&path).unwrap();
        assert_eq!(frames.runs.height(), 1);
        assert_eq!(frames.torn_bytes, "{\"cell_id\":".len());
        // A whole record that only lacks its newline (a hand edit) is a finished run.
        std::fs::write(&path, format!("{line}\n{}", line.replace("r1", "r2"))).unwrap();
        let whole = load(&path).unwrap();
        assert_eq!((whole.runs.height(), whole.torn_bytes), (2, 0));
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
        assert_eq!(frames.agents.width(), 5 + AGENT_METRICS.len());
        assert_eq!(frames.runs.width(), 4 + RUN_METRICS.len());
        assert_eq!(RUN_METRICS[BASE_RUN_METRICS], "offered_rate");
        assert_eq!(RUN_METRICS.last(), Some(&"in_flight_max"));
    }

    // A degraded run is counted, not averaged: the agent that finished beside the failed one
    // is not measured. A run missing one agent's token count has no aggregate throughput.
    #[test]
    fn degraded_runs_and_missing_token_counts_give_no_measured_values() {
        let run = |id: &str, status: &str, second: &str| {
            format!(
                r#"{{"run_id":"{id}","session":1,"cell_id":"c","params":{{}},"warmup":false,"status":"{status}","agents":[{{"status":"ok","ttft_ms":1.0,"e2e_ms":1000.0,"output_tokens":10.0}},{second}],"group":{{"wall_ms":1000.0,"speedup":1.9,"parallel_efficiency":0.95}},"harness_lag":{{}},"client_rss_mb":null}}"#
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        let journal = [
            run(
                "r1",
                "ok",
                r#"{"status":"ok","e2e_ms":1000.0,"output_tokens":20.0}"#,
            ),
            run("r2", "degraded", r#"{"status":"degraded"}"#),
            run(
                "r3",
                "ok",
                r#"{"status":"ok","e2e_ms":1000.0,"output_tokens":null}"#,
            ),
        ]
        .join("\n");
        std::fs::write(&path, journal + "\n").unwrap();
        let frames = load(&path).unwrap();
        let ok: Vec<Option<bool>> = frames
            .agents
            .column("ok")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ok, [true, true, false, false, true, true].map(Some));
        let aggregate = frames
            .runs
            .column("aggregate_tok_s")
            .unwrap()
            .f64()
            .unwrap();
        assert_eq!(aggregate.get(0), Some(30.0), "30 tokens in 1 s");
        assert_eq!(aggregate.get(2), None, "one agent's count is missing");
    }

    // Blocks are reused and cut at line ends: a record longer than a block, and records on
    // both sides of it, must all be read, in order, with none split or repeated.
    #[test]
    fn a_record_longer_than_a_block_is_read_whole() {
        let record = |cell: &str, text: &str, ttft: f64| {
            format!(
                r#"{{"run_id":"{ttft}","session":1,"cell_id":"{cell}","params":{{"cell":"{cell}"}},"warmup":false,"status":"ok","agents":[{{"status":"ok","text":"{text}","ttft_ms":{ttft},"e2e_ms":2.0,"output_tokens":3.0,"prompt_tokens":4.0,"decode_tok_s":5.0,"server_decode_tok_s":7.0,"server_prefill_tok_s":8.0,"load_ms":null,"cache_n":0,"itl_p50_ms":1.0,"itl_p95_ms":1.0,"itl_p99_ms":1.0,"prefill_overhead_ms":0.1,"decode_overhead_ms":0.1}}],"harness_lag":{{"p99_ms":0.5,"max_ms":0.9}},"client_rss_mb":12.0}}"#
            )
        };
        let long = "x".repeat(BATCH_BYTES + BATCH_BYTES / 2);
        let mut journal = String::new();
        for i in 0..2000 {
            journal += &record(if i % 2 == 0 { "a" } else { "b" }, "short", i as f64);
            journal.push('\n');
        }
        journal += &record("b", &long, 2000.0);
        journal.push('\n');
        journal += &record("a", "short", 2001.0);
        journal.push('\n');
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(&path, journal).unwrap();
        let frames = load(&path).unwrap();
        assert_eq!(frames.runs.height(), 2002);
        let ttft: Vec<f64> = floats(&frames.agents, "ttft_ms").unwrap();
        // Rows come grouped by cell (a first: it was seen first), each in record order.
        let want_a: Vec<f64> = (0..2000)
            .step_by(2)
            .map(f64::from)
            .chain([2001.0])
            .collect();
        let want_b: Vec<f64> = (1..2000)
            .step_by(2)
            .map(f64::from)
            .chain([2000.0])
            .collect();
        assert_eq!(ttft[..want_a.len()], want_a[..]);
        assert_eq!(ttft[want_a.len()..], want_b[..]);
        assert_eq!(frames.cells.len(), 2);
        assert_eq!(frames.cells[1].params["cell"], "b");
    }

    fn record(cell: &str, ttft: f64) -> String {
        format!(
            r#"{{"run_id":"{ttft}","session":1,"cell_id":"{cell}","params":{{"cell":"{cell}"}},"warmup":false,"status":"ok","agents":[{{"status":"ok","text":"é","ttft_ms":{ttft},"e2e_ms":2.0,"output_tokens":3.0}}],"harness_lag":{{"p99_ms":0.5,"max_ms":0.9}},"client_rss_mb":12.0}}"#
        )
    }

    // Many small batches parsed by several threads finish in any order; each cell's rows must
    // still come out complete and in record order.
    #[test]
    fn small_batches_come_out_in_record_order() {
        let cells = ["a", "b", "c"];
        let journal: String = (0..3000)
            .map(|i| record(cells[i % 3], i as f64) + "\n")
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(&path, journal).unwrap();
        let frames = load_in_batches(&path, 1024).unwrap();
        assert_eq!(frames.runs.height(), 3000);
        for (index, info) in frames.cells.iter().enumerate() {
            let first = cells
                .iter()
                .position(|c| *c == info.params["cell"])
                .unwrap();
            let want: Vec<f64> = (first..3000).step_by(3).map(|i| i as f64).collect();
            let got = floats(&frames.agents_of(&[index as u32]).unwrap(), "ttft_ms").unwrap();
            assert_eq!(got, want, "cell {}", info.cell_id);
            assert_eq!(frames.runs_of(&[index as u32]).unwrap().height(), 1000);
        }
    }

    // The error names the first unreadable line in the file, whichever thread meets it first,
    // and a line with invalid UTF-8 is named too (its block is read as bytes).
    #[test]
    fn the_first_unreadable_line_is_reported() {
        let mut journal: Vec<u8> = Vec::new();
        for i in 0..400 {
            let line = match i {
                150 => b"{\"cell_id\":\"a\xff\"}".to_vec(),
                300 => b"not json".to_vec(),
                _ => record("a", i as f64).into_bytes(),
            };
            journal.extend(line);
            journal.push(b'\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(&path, &journal).unwrap();
        for batch_bytes in [1024, BATCH_BYTES] {
            let Err(FrameError::Record { line, .. }) = load_in_batches(&path, batch_bytes) else {
                panic!("an unreadable journal loaded");
            };
            assert_eq!(line, 151, "batches of {batch_bytes} bytes");
        }
    }

    // A run recorded twice (a journal merged by hand) would weigh double: it is refused, with
    // both lines named, however the batches fall.
    #[test]
    fn a_run_recorded_twice_is_refused_with_both_lines() {
        let mut journal: String = (0..400).map(|i| record("a", i as f64) + "\n").collect();
        journal += &(record("a", 123.0) + "\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(&path, &journal).unwrap();
        for batch_bytes in [1024, BATCH_BYTES] {
            let Err(FrameError::DuplicateRun { run_id, lines, .. }) =
                load_in_batches(&path, batch_bytes)
            else {
                panic!("a run recorded twice was loaded");
            };
            assert_eq!((run_id.as_str(), lines), ("123", (124, 401)));
        }
    }

    // The merger appends batches in file order, from whichever thread hands them in.
    #[test]
    fn the_merger_appends_batches_in_file_order() {
        let batch = |ttft: f64| {
            let mut columns = Columns::new();
            let line = record("a", ttft);
            columns.push(0, &serde_json::from_str(&line).unwrap());
            vec![columns]
        };
        let mut merger = Merger::default();
        for i in [2u64, 0, 3, 1] {
            merger.hand_in(i, Ok(()), batch(i as f64));
        }
        assert!(merger.waiting.is_empty());
        assert_eq!(
            merger.by_cell[0].agent_values[0].values,
            [0.0, 1.0, 2.0, 3.0]
        );
    }

    // A column holds nothing until its first value; the nulls before it, and columns that
    // never get one, must still come out as nulls in the right rows.
    #[test]
    fn a_column_counts_its_nulls_until_its_first_value() {
        let floats = |values: &[Option<f64>]| {
            let mut f = Floats::default();
            values.iter().for_each(|v| f.push(*v));
            f
        };
        let mut column = floats(&[None, None]);
        column.append(&floats(&[None]));
        column.append(&floats(&[None, Some(1.5)]));
        column.append(&floats(&[None]));
        column.push(Some(2.0));
        let column = column.into_column("x");
        let got: Vec<Option<f64>> = column.f64().unwrap().iter().collect();
        let mut want = vec![None; 4];
        want.extend([Some(1.5), None, Some(2.0)]);
        assert_eq!(got, want);
        let empty = floats(&[None, None, None]).into_column("y");
        assert_eq!((empty.len(), empty.null_count()), (3, 3));
        assert_eq!(empty.dtype(), &DataType::Float64);
    }
}
