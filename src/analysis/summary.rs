//! Per-cell statistics of every metric, read from each cell's slice of the frames:
//! n, mean, median, std, CV, min, max, p50/p95/p99, the Student-t 95% CI of the mean (with the
//! run as the unit in multi-agent cells), median/MAD outlier counts, and per-cell degraded
//! rates. Warm-up runs are excluded and degraded runs are counted, never averaged.

use std::ops::Range;

use polars::prelude::*;
use serde::Serialize;

use super::frame::{AGENT_METRICS, Frames, RUN_METRICS};
use crate::spec::metrics;
use crate::stats::{self, Summary};

#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub cell: usize,
    pub metric: String,
    #[serde(flatten)]
    pub stats: Summary,
    /// The value of each run (a multi-agent run's mean), in journal order, for figures that
    /// show every run; empty for cells with more runs than a figure can show.
    #[serde(skip)]
    pub run_values: Vec<f64>,
}

/// Cells with more runs than this keep no per-run values (a figure of them would be a smear,
/// and a million-run journal would hold them all in memory).
const MAX_RUN_VALUES: usize = 500;

fn kept_run_values(runs: &[f64]) -> Vec<f64> {
    if runs.len() <= MAX_RUN_VALUES {
        runs.to_vec()
    } else {
        Vec::new()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CellRuns {
    pub cell: usize,
    /// Measured (non-warm-up) runs recorded.
    pub runs: u32,
    pub degraded: u32,
    pub degraded_rate: f64,
    /// Wilson's 95% interval of the degraded rate: each run degrades or not, independently.
    pub degraded_rate_ci: Option<(f64, f64)>,
}

/// Which rows are measured: ok and not warm-up.
fn measured_rows(frame: &DataFrame) -> PolarsResult<Vec<bool>> {
    let ok = frame.column("ok")?.bool()?;
    let warmup = frame.column("warmup")?.bool()?;
    Ok(ok
        .iter()
        .zip(warmup.iter())
        .map(|(ok, warmup)| ok == Some(true) && warmup == Some(false))
        .collect())
}

/// One metric's measured values, per cell, in record order; nulls and non-finite values left
/// out. Each cell's rows are one slice of the frame, read without a null or row check when
/// every row counts.
fn values_by_cell(
    frame: &DataFrame,
    rows: &[Range<usize>],
    measured: &[bool],
    metric: &str,
) -> PolarsResult<Vec<Vec<f64>>> {
    let column = frame.column(metric)?.f64()?;
    let mut by_cell = vec![Vec::new(); rows.len()];
    if column.null_count() == column.len() {
        return Ok(by_cell);
    }
    for (values, range) in by_cell.iter_mut().zip(rows) {
        let slice = column.slice(range.start as i64, range.len());
        let mut keep = &measured[range.clone()];
        for chunk in slice.downcast_iter() {
            let (here, rest) = keep.split_at(chunk.len());
            keep = rest;
            let all_kept =
                chunk.validity().is_none_or(|v| v.unset_bits() == 0) && here.iter().all(|k| *k);
            if all_kept {
                values.extend(chunk.values().iter().copied().filter(|v| v.is_finite()));
            } else {
                values.extend(
                    chunk
                        .iter()
                        .zip(here)
                        .filter_map(|(v, k)| v.filter(|v| *k && v.is_finite()).copied()),
                );
            }
        }
    }
    Ok(by_cell)
}

/// Where each run's rows start within each multi-agent cell's agent rows (a run's agents are
/// adjacent rows); None for single-agent cells. Found once, shared by every metric.
fn run_starts(frames: &Frames) -> PolarsResult<Vec<Option<Vec<usize>>>> {
    let runs = frames.agents.column("run")?.u64()?;
    frames
        .agent_rows()
        .iter()
        .zip(&frames.cells)
        .map(|(range, cell)| {
            if cell.agents < 2 {
                return Ok(None);
            }
            let ids = runs.slice(range.start as i64, range.len());
            let mut starts = Vec::new();
            let mut previous = None;
            for (row, id) in ids.iter().enumerate() {
                if id != previous || row == 0 {
                    starts.push(row);
                    previous = id;
                }
            }
            Ok(Some(starts))
        })
        .collect()
}

/// Per run, the (sum, count) of one metric's measured values in one cell's agent rows, for
/// runs with at least one: what the run-as-unit interval needs.
fn run_totals(
    frame: &DataFrame,
    range: &Range<usize>,
    measured: &[bool],
    metric: &str,
    starts: &[usize],
) -> PolarsResult<Vec<(f64, usize)>> {
    let column = frame.column(metric)?.f64()?;
    let slice = column.slice(range.start as i64, range.len());
    // One chunk, so that `starts` index it directly.
    let rechunked = slice.rechunk();
    let Some(chunk) = rechunked.downcast_iter().next() else {
        return Ok(Vec::new());
    };
    let (values, validity) = (chunk.values(), chunk.validity());
    let keep = &measured[range.clone()];
    let mut totals = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(values.len());
        let (mut sum, mut count) = (0.0, 0);
        for row in start..end {
            let value = values[row];
            if keep[row] && value.is_finite() && validity.is_none_or(|v| v.get_bit(row)) {
                sum += value;
                count += 1;
            }
        }
        if count > 0 {
            totals.push((sum, count));
        }
    }
    Ok(totals)
}

/// Statistics of every request- and run-level metric, per cell. polars holds the frames; the
/// arithmetic is `stats::summarize_in_place` on each cell's values, which finds the median,
/// p95, p99 and MAD by selection on one copy. (polars' group_by took a copy and a pass for
/// each order statistic and two joins for the MAD: 1.6 s of the 4 s a million runs took.)
/// The metrics are spread over the cores.
pub fn summarize(frames: &Frames) -> PolarsResult<Vec<MetricSummary>> {
    let mut inputs = Vec::new();
    for (frame, rows, metrics) in [
        (&frames.agents, frames.agent_rows(), AGENT_METRICS),
        (&frames.runs, frames.run_rows(), RUN_METRICS),
    ] {
        inputs.push((frame, rows, measured_rows(frame)?, metrics));
    }
    let starts = run_starts(frames)?;
    let jobs: Vec<(usize, &str)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, _, _, metrics))| metrics.iter().map(move |m| (i, *m)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<PolarsResult<Vec<MetricSummary>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(jobs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut rows = Vec::new();
                    while let Some(&(input, metric)) =
                        jobs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let (frame, cell_rows, measured, _) = &inputs[input];
                        let by_cell = values_by_cell(frame, cell_rows, measured, metric)?;
                        for (cell, mut values) in by_cell.into_iter().enumerate() {
                            // The replication unit is the run: the requests of one
                            // multi-agent run share its contention and are not independent,
                            // so spread and interval come from each run's mean.
                            let clustered = std::ptr::eq(*frame, &frames.agents);
                            let scale = metrics::scale(metric);
                            // Spread over runs first: a single-agent cell's values are its
                            // runs, and summarize_in_place reorders and overwrites them.
                            let (spread, run_values) =
                                match (&starts[cell], clustered && !values.is_empty()) {
                                    (Some(starts), true) => {
                                        let runs: Vec<f64> = run_totals(
                                            frame,
                                            &cell_rows[cell],
                                            measured,
                                            metric,
                                            starts,
                                        )?
                                        .into_iter()
                                        .map(|(sum, count)| sum / count as f64)
                                        .collect();
                                        (stats::run_spread(&runs, scale), kept_run_values(&runs))
                                    }
                                    _ => (
                                        stats::run_spread(&values, scale),
                                        kept_run_values(&values),
                                    ),
                                };
                            if let Some(stats) = stats::summarize_in_place(&mut values) {
                                let stats = stats::with_spread(stats, spread);
                                rows.push(MetricSummary {
                                    cell,
                                    metric: metric.to_owned(),
                                    stats,
                                    run_values,
                                });
                            }
                        }
                    }
                    Ok(rows)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut rows = Vec::new();
    for part in results {
        rows.extend(part?);
    }
    let order = |m: &str| {
        AGENT_METRICS
            .iter()
            .chain(RUN_METRICS)
            .position(|x| *x == m)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by_key(|r| (r.cell, order(&r.metric)));
    Ok(rows)
}

/// Statistics of per-run values computed outside the frames (e.g. contention rates).
pub fn from_values(metric: &str, values: &[(usize, f64)]) -> Vec<MetricSummary> {
    let mut cells: Vec<usize> = values.iter().map(|(c, _)| *c).collect();
    cells.sort_unstable();
    cells.dedup();
    cells
        .into_iter()
        .filter_map(|cell| {
            let v: Vec<f64> = values
                .iter()
                .filter(|(c, _)| *c == cell)
                .map(|(_, v)| *v)
                .collect();
            let stats = stats::with_run_spread(stats::summarize(&v)?, &v, metrics::scale(metric));
            Some(MetricSummary {
                cell,
                metric: metric.to_owned(),
                stats,
                run_values: kept_run_values(&v),
            })
        })
        .collect()
}

/// Measured and degraded run counts per cell.
pub fn run_counts(frames: &Frames) -> PolarsResult<Vec<CellRuns>> {
    let out = frames
        .runs
        .clone()
        .lazy()
        .filter(col("warmup").not())
        .group_by([col("cell")])
        .agg([
            len().cast(DataType::UInt32).alias("runs"),
            col("ok")
                .not()
                .cast(DataType::UInt32)
                .sum()
                .alias("degraded"),
        ])
        .sort(["cell"], Default::default())
        .collect()?;
    let (cells, runs, degraded) = (
        out.column("cell")?.u32()?.clone(),
        out.column("runs")?.u32()?.clone(),
        out.column("degraded")?
            .cast(&DataType::UInt32)?
            .u32()?
            .clone(),
    );
    Ok((0..out.height())
        .map(|i| {
            let (r, d) = (runs.get(i).unwrap_or(0), degraded.get(i).unwrap_or(0));
            CellRuns {
                cell: cells.get(i).unwrap_or(0) as usize,
                runs: r,
                degraded: d,
                degraded_rate: if r > 0 { d as f64 / r as f64 } else { 0.0 },
                degraded_rate_ci: stats::wilson(d as u64, r as u64, 0.95),
            }
        })
        .collect())
}

/// Per measured run of `cell`: the tokens it produced (all agents), the seconds of wall time
/// they took and its repetition, for runs that have both; the input of total-over-total rates.
/// Total tokens over total seconds; None without time.
pub fn total_rate(tokens: &[f64], seconds: &[f64]) -> Option<f64> {
    let s: f64 = seconds.iter().sum();
    (s > 0.0).then(|| tokens.iter().sum::<f64>() / s)
}

/// A cell's runs' (tokens, seconds, repetitions), as [`run_tokens_and_seconds`] gives them.
pub type RunRates = (Vec<f64>, Vec<f64>, Vec<u32>);

pub fn run_tokens_and_seconds(frames: &Frames, cell: usize) -> PolarsResult<RunRates> {
    let rows = frames.runs_of(&[cell as u32])?;
    let measured = measured_rows(&rows)?;
    let rate = rows.column("aggregate_tok_s")?.f64()?;
    let wall = rows.column("wall_ms")?.f64()?;
    let reps = rows.column("repetition")?.u32()?;
    let (mut tokens, mut seconds, mut repetitions) = (Vec::new(), Vec::new(), Vec::new());
    for (((keep, rate), wall), rep) in measured
        .iter()
        .zip(rate.iter())
        .zip(wall.iter())
        .zip(reps.iter())
    {
        if let (true, Some(rate), Some(wall)) = (*keep, rate, wall)
            && rate.is_finite()
            && wall > 0.0
        {
            tokens.push(rate * wall / 1000.0);
            seconds.push(wall / 1000.0);
            repetitions.push(rep.unwrap_or(0));
        }
    }
    Ok((tokens, seconds, repetitions))
}
