//! Run records -> polars frames. One frame has a row per agent per run (request-level
//! metrics), the other a row per run (group, harness and server metrics). Cells are keyed by
//! `cell_id`, the hash of their parameters, so records from an older version of the plan
//! still land in the right cell.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use indexmap::IndexMap;
use polars::prelude::*;
use serde_json::{Map, Value};

pub use crate::spec::metrics::{AGENT_METRICS, RUN_METRICS};

mod batches;
mod columns;

pub struct CellInfo {
    pub cell_id: String,
    pub params: Map<String, Value>,
    /// The model its servers loaded, where a `model` axis chose one (the same for every run of
    /// the cell): what a scaling fit against parameters reads.
    pub model: Option<crate::record::ModelRun>,
    /// Agents per run (1 for single).
    pub agents: usize,
}

/// The cells seen so far, shared by the parsing threads so that cell indices are global.
pub(super) type CellRegistry = std::sync::Mutex<IndexMap<String, CellInfo>>;

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

    /// Replaces run-level column `name` with `values`, one per run row in frame order (cell by
    /// cell, each cell's runs in journal order): for figures computed after the frames were
    /// read (goodput against the spec's SLO, from the request files).
    pub fn set_run_column(&mut self, name: &str, values: Vec<Option<f64>>) -> PolarsResult<()> {
        let column = Column::new(name.into(), values);
        self.runs.with_column(column)?;
        self.selections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
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
pub fn load(path: &Path) -> Result<Frames, FrameError> {
    batches::load_in_batches(path, batches::BATCH_BYTES)
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
    use super::batches::*;
    use super::columns::*;
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
        assert_eq!(RUN_METRICS.last(), Some(&"slo_share"));
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
            let mut batch = batches::Batch::default();
            let line = record("a", ttft);
            batch.rows(0).push(0, &serde_json::from_str(&line).unwrap());
            batch
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
