//! Per-cell statistics of every metric, computed with polars (lazy) over the frames:
//! n, mean, median, std, CV, min, max, p50/p95/p99, the Student-t 95% CI of the mean,
//! median/MAD outlier counts, and per-cell degraded rates. Warm-up runs are excluded and
//! degraded runs are counted, never averaged.

use polars::prelude::*;
use serde::Serialize;

use super::frame::{AGENT_METRICS, Frames, RUN_METRICS};
use crate::stats::{self, Summary, t_ci_half_width};

/// The modified z-score cut-off (3.5) divided by 0.6745, applied to |x - median| / MAD.
const MAD_CUTOFF: f64 = 3.5 / 0.6745;

#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub cell: usize,
    pub metric: String,
    #[serde(flatten)]
    pub stats: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellRuns {
    pub cell: usize,
    /// Measured (non-warm-up) runs recorded.
    pub runs: u32,
    pub degraded: u32,
    pub degraded_rate: f64,
}

fn group_stats(frame: &DataFrame, metrics: &[&str]) -> PolarsResult<Vec<MetricSummary>> {
    let measured = frame
        .clone()
        .lazy()
        .filter(col("ok").and(col("warmup").not()));
    let mut aggs = Vec::new();
    for m in metrics {
        aggs.extend([
            col(*m)
                .count()
                .cast(DataType::UInt32)
                .alias(format!("{m}__n")),
            col(*m).mean().alias(format!("{m}__mean")),
            col(*m).median().alias(format!("{m}__median")),
            col(*m).std(1).alias(format!("{m}__std")),
            col(*m).min().alias(format!("{m}__min")),
            col(*m).max().alias(format!("{m}__max")),
            col(*m)
                .quantile(lit(0.95), QuantileMethod::Linear)
                .alias(format!("{m}__p95")),
            col(*m)
                .quantile(lit(0.99), QuantileMethod::Linear)
                .alias(format!("{m}__p99")),
        ]);
    }
    let stats = measured
        .clone()
        .group_by([col("cell")])
        .agg(aggs)
        .collect()?;
    // Outliers by median/MAD: the per-cell medians are joined back (a join with a frame of one
    // row per cell is much cheaper than a window expression per metric), then the median of
    // the absolute deviations is taken per cell, and the rows beyond the cut-off are counted.
    let medians = stats.clone().lazy().select(
        std::iter::once(col("cell"))
            .chain(metrics.iter().map(|m| col(format!("{m}__median"))))
            .collect::<Vec<_>>(),
    );
    let by_cell = |other: LazyFrame, lf: LazyFrame| {
        lf.join(
            other,
            [col("cell")],
            [col("cell")],
            JoinArgs::new(JoinType::Inner),
        )
    };
    let deviations = by_cell(medians, measured).select(
        std::iter::once(col("cell"))
            .chain(metrics.iter().map(|m| {
                let dev = col(*m) - col(format!("{m}__median"));
                when(dev.clone().lt(lit(0.0)))
                    .then(lit(0.0) - dev.clone())
                    .otherwise(dev)
                    .alias(format!("{m}__absdev"))
            }))
            .collect::<Vec<_>>(),
    );
    let mads = deviations.clone().group_by([col("cell")]).agg(
        metrics
            .iter()
            .map(|m| {
                col(format!("{m}__absdev"))
                    .median()
                    .alias(format!("{m}__mad"))
            })
            .collect::<Vec<_>>(),
    );
    let outliers = by_cell(mads, deviations).group_by([col("cell")]).agg(
        metrics
            .iter()
            .map(|m| {
                let (absdev, mad) = (col(format!("{m}__absdev")), col(format!("{m}__mad")));
                (mad.clone()
                    .gt(lit(0.0))
                    .and(absdev.gt(mad * lit(MAD_CUTOFF))))
                .cast(DataType::UInt32)
                .sum()
                .alias(format!("{m}__outliers"))
            })
            .collect::<Vec<_>>(),
    );
    let out = by_cell(outliers, stats.lazy())
        .sort(["cell"], Default::default())
        .collect()?;
    let cells = out.column("cell")?.u32()?.clone();
    let f = |name: String| -> PolarsResult<Float64Chunked> {
        Ok(out.column(&name)?.cast(&DataType::Float64)?.f64()?.clone())
    };
    let mut rows = Vec::new();
    for m in metrics {
        let (n, mean, median, std) = (
            out.column(&format!("{m}__n"))?.u32()?.clone(),
            f(format!("{m}__mean"))?,
            f(format!("{m}__median"))?,
            f(format!("{m}__std"))?,
        );
        let (min, max, p95, p99) = (
            f(format!("{m}__min"))?,
            f(format!("{m}__max"))?,
            f(format!("{m}__p95"))?,
            f(format!("{m}__p99"))?,
        );
        let outliers = out
            .column(&format!("{m}__outliers"))?
            .cast(&DataType::UInt32)?
            .u32()?
            .clone();
        for i in 0..out.height() {
            let count = n.get(i).unwrap_or(0);
            if count == 0 {
                continue;
            }
            let get = |c: &Float64Chunked| c.get(i).unwrap_or(f64::NAN);
            let (mu, sd) = (get(&mean), get(&std));
            let half = t_ci_half_width(sd, count as usize, 0.95).unwrap_or(f64::NAN);
            rows.push(MetricSummary {
                cell: cells.get(i).unwrap_or(0) as usize,
                metric: (*m).to_owned(),
                stats: Summary {
                    n: count as usize,
                    mean: mu,
                    median: get(&median),
                    std: sd,
                    cv: sd / mu,
                    min: get(&min),
                    max: get(&max),
                    p95: get(&p95),
                    p99: get(&p99),
                    ci_low: mu - half,
                    ci_high: mu + half,
                    outliers: outliers.get(i).unwrap_or(0) as usize,
                },
            });
        }
    }
    Ok(rows)
}

/// Metrics per query: a few at a time keeps the intermediate frames small (a million runs
/// stay under 1 GiB) at almost no cost in time, since each query reads only its columns.
const METRICS_PER_QUERY: usize = 4;

/// Statistics of every request- and run-level metric, per cell.
pub fn summarize(frames: &Frames) -> PolarsResult<Vec<MetricSummary>> {
    let mut rows = Vec::new();
    for (frame, metrics) in [(&frames.agents, AGENT_METRICS), (&frames.runs, RUN_METRICS)] {
        for group in metrics.chunks(METRICS_PER_QUERY) {
            rows.extend(group_stats(frame, group)?);
        }
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
            let stats = stats::summarize(&v)?;
            Some(MetricSummary {
                cell,
                metric: metric.to_owned(),
                stats,
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
            }
        })
        .collect())
}
