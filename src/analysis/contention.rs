//! Contention: a concurrent agent is contended when its decode throughput is more than
//! `decode_drop` below, or its TTFT more than `ttft_factor` times, the single-agent median of
//! the same configuration (same cell parameters apart from `scenario`). It needs every
//! single-agent run of the TR, so it is derived from the frames, never stored in the journal.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use super::frame::{CellInfo, Frames};
use crate::spec::ContentionThresholds;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellContention {
    pub cell: usize,
    /// Concurrent agents compared with the baseline.
    pub agents: u32,
    pub contended: u32,
    pub contention_rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Contention {
    pub cells: Vec<CellContention>,
    /// Concurrent agents whose configuration has no single-agent runs to compare with.
    pub without_baseline: u32,
    /// (cell, share of the run's agents that were contended), one entry per measured run.
    pub run_rates: Vec<(usize, f64)>,
}

impl Contention {
    pub fn agents(&self) -> u32 {
        self.cells.iter().map(|c| c.agents).sum()
    }
    pub fn contended(&self) -> u32 {
        self.cells.iter().map(|c| c.contended).sum()
    }
}

/// The configuration of a cell: its parameters without `scenario`, as canonical JSON.
pub(super) fn config_key(params: &Map<String, Value>) -> String {
    let rest: BTreeMap<&String, &Value> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "scenario")
        .collect();
    serde_json::to_string(&rest).unwrap_or_default()
}

pub fn compute(frames: &Frames, t: ContentionThresholds) -> PolarsResult<Contention> {
    let cells: &[CellInfo] = &frames.cells;
    let measured = || col("ok").and(col("warmup").not());
    let singles: Vec<u32> = (0..cells.len())
        .filter(|&i| cells[i].agents == 1)
        .map(|i| i as u32)
        .collect();
    let medians = frames
        .agents_of(&singles)?
        .lazy()
        .filter(measured())
        .group_by([col("cell")])
        .agg([
            col("decode_tok_s").median().alias("decode"),
            col("ttft_ms").median().alias("ttft"),
        ])
        .collect()?;
    let mut baselines: HashMap<String, (Option<f64>, Option<f64>)> = HashMap::new();
    let (mc, md, mt) = (
        medians.column("cell")?.u32()?,
        medians.column("decode")?.f64()?,
        medians.column("ttft")?.f64()?,
    );
    for i in 0..medians.height() {
        if let Some(c) = mc.get(i) {
            baselines.insert(
                config_key(&cells[c as usize].params),
                (md.get(i), mt.get(i)),
            );
        }
    }
    let (mut compared, mut orphans) = (Vec::new(), Vec::new());
    for (i, cell) in cells.iter().enumerate().filter(|(_, c)| c.agents > 1) {
        match baselines.get(&config_key(&cell.params)) {
            Some(&baseline) => compared.push((i as u32, baseline)),
            None => orphans.push(i as u32),
        }
    }
    let without_baseline = frames
        .agents_of(&orphans)?
        .lazy()
        .filter(measured())
        .select([len().cast(DataType::UInt32).alias("n")])
        .collect()?
        .column("n")?
        .u32()?
        .get(0)
        .unwrap_or(0);
    // Per cell, with its baselines as literals: a cell's rows are one slice of the frame. A
    // missing baseline or value flags nothing.
    let flag = |metric: &str, limit: Option<f64>, beyond: fn(Expr, Expr) -> Expr| {
        limit.map_or(lit(false), |limit| {
            beyond(col(metric), lit(limit)).fill_null(lit(false))
        })
    };
    let mut per_run = Vec::new();
    for (cell, (decode, ttft)) in compared {
        per_run.push(
            frames
                .agents_of_cell(cell)?
                .lazy()
                .filter(measured())
                .with_column(
                    flag(
                        "decode_tok_s",
                        decode.map(|d| d * (1.0 - t.decode_drop)),
                        Expr::lt,
                    )
                    .or(flag("ttft_ms", ttft.map(|f| f * t.ttft_factor), Expr::gt))
                    .alias("contended"),
                )
                .group_by([col("run")])
                .agg([
                    lit(cell).cast(DataType::UInt32).alias("cell"),
                    len().cast(DataType::UInt32).alias("agents"),
                    col("contended")
                        .cast(DataType::UInt32)
                        .sum()
                        .alias("contended"),
                ]),
        );
    }
    let flagged = if per_run.is_empty() {
        df!(
            "cell" => Vec::<u32>::new(),
            "agents" => Vec::<u32>::new(),
            "contended" => Vec::<u32>::new()
        )?
    } else {
        concat(per_run, UnionArgs::default())?.collect()?
    };
    let run_rates = {
        let (c, a, n) = (
            flagged.column("cell")?.u32()?,
            flagged.column("agents")?.u32()?,
            flagged.column("contended")?.cast(&DataType::UInt32)?,
        );
        let n = n.u32()?;
        let mut rates: Vec<(usize, f64)> = (0..flagged.height())
            .map(|i| {
                (
                    c.get(i).unwrap_or(0) as usize,
                    n.get(i).unwrap_or(0) as f64 / a.get(i).unwrap_or(1).max(1) as f64,
                )
            })
            .collect();
        // group_by returns groups in any order; these rates are summed, so fix the order.
        rates.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        rates
    };
    let flagged = flagged
        .lazy()
        .group_by([col("cell")])
        .agg([
            col("agents").sum().alias("agents"),
            col("contended").sum().alias("contended"),
        ])
        .sort(["cell"], Default::default())
        .collect()?;
    let (fc, fa, fn_) = (
        flagged.column("cell")?.u32()?,
        flagged.column("agents")?.cast(&DataType::UInt32)?,
        flagged.column("contended")?.cast(&DataType::UInt32)?,
    );
    let fa = fa.u32()?;
    let fn_ = fn_.u32()?;
    let cells = (0..flagged.height())
        .map(|i| {
            let (agents, contended) = (fa.get(i).unwrap_or(0), fn_.get(i).unwrap_or(0));
            CellContention {
                cell: fc.get(i).unwrap_or(0) as usize,
                agents,
                contended,
                contention_rate: contended as f64 / agents.max(1) as f64,
            }
        })
        .collect();
    Ok(Contention {
        cells,
        without_baseline,
        run_rates,
    })
}
