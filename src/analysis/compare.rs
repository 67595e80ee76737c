//! Comparisons between two selections of runs: the replication unit is one run (for
//! request-level metrics, the mean over the run's agents), selected by cell parameters.
//! The comparisons a TR's claims make form one family for Holm's correction.

use indexmap::IndexMap;
use polars::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::frame::{AGENT_METRICS, Frames, RUN_METRICS, floats};
use crate::spec::LoadedSpec;
use crate::spec::matrix::values_equal;
use crate::stats::{self, Comparison};

/// Metrics that are fractions: their differences are reported in percentage points.
pub fn is_fraction(metric: &str) -> bool {
    matches!(
        metric,
        "parallel_efficiency" | "contention_rate" | "degraded_rate" | "quality_score"
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimComparison {
    pub claim: String,
    pub metric: String,
    pub a: IndexMap<String, Value>,
    pub b: IndexMap<String, Value>,
    pub comparison: Comparison,
    /// (mean a - mean b) x 100, for fraction metrics.
    pub delta_pp: Option<f64>,
    /// Holm-adjusted Welch p-value across the TR's comparisons.
    pub p_holm: Option<f64>,
    /// With interleaved runs, the same comparison paired by repetition (each repetition ran
    /// every cell once, back to back: a block).
    pub paired: Option<stats::PairedRatio>,
}

/// Per repetition, the mean of `metric`'s per-run values in the cells matching `selection`,
/// in repetition order.
fn by_repetition(
    frames: &Frames,
    metric: &str,
    selection: &IndexMap<String, Value>,
) -> PolarsResult<std::collections::BTreeMap<u32, f64>> {
    let per_run = per_run(frames, metric, selection)?;
    let reps = per_run.column("repetition")?.u32()?;
    let values = per_run.column("v")?.f64()?;
    let mut sums: std::collections::BTreeMap<u32, (f64, usize)> = Default::default();
    for (rep, v) in reps.iter().zip(values.iter()) {
        if let (Some(rep), Some(v)) = (rep, v.filter(|v| v.is_finite())) {
            let e = sums.entry(rep).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    Ok(sums
        .into_iter()
        .map(|(rep, (sum, n))| (rep, sum / n as f64))
        .collect())
}

/// The comparison of `a` and `b` paired by repetition, over the repetitions both have.
pub fn paired_by_repetition(
    frames: &Frames,
    metric: &str,
    a: &IndexMap<String, Value>,
    b: &IndexMap<String, Value>,
) -> PolarsResult<Option<stats::PairedRatio>> {
    let (ra, rb) = (
        remembered_by_repetition(frames, metric, a)?,
        remembered_by_repetition(frames, metric, b)?,
    );
    let (va, vb): (Vec<f64>, Vec<f64>) = ra
        .iter()
        .filter_map(|(rep, x)| rb.get(rep).map(|y| (*x, *y)))
        .unzip();
    Ok(stats::paired_log_ratio(&va, &vb, 0.95))
}

/// [`by_repetition`], computed once per selection (a claim's sides recur across claims).
fn remembered_by_repetition(
    frames: &Frames,
    metric: &str,
    selection: &IndexMap<String, Value>,
) -> PolarsResult<std::collections::BTreeMap<u32, f64>> {
    let key = format!(
        "{metric} {} by repetition",
        serde_json::to_string(selection).unwrap_or_default()
    );
    // The memo holds flat lists: repetition, mean, repetition, mean, ...
    let flat = frames.remembered(key, || {
        Ok(by_repetition(frames, metric, selection)?
            .into_iter()
            .flat_map(|(rep, mean)| [rep as f64, mean])
            .collect())
    })?;
    Ok(flat.chunks(2).map(|p| (p[0] as u32, p[1])).collect())
}

pub(super) fn matching_cells(frames: &Frames, selection: &IndexMap<String, Value>) -> Vec<u32> {
    frames
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            selection
                .iter()
                .all(|(k, v)| c.params.get(k).is_some_and(|w| values_equal(v, w)))
        })
        .map(|(i, _)| i as u32)
        .collect()
}

/// Per-run values of `metric` in the cells whose parameters match `selection`. A claim's two
/// sides are selected by its comparison and again by its check; the frames remember each
/// selection, so the second costs a lookup.
pub fn select(
    frames: &Frames,
    metric: &str,
    selection: &IndexMap<String, Value>,
) -> PolarsResult<Vec<f64>> {
    let key = format!(
        "{metric} {}",
        serde_json::to_string(selection).unwrap_or_default()
    );
    frames.remembered(key, || select_values(frames, metric, selection))
}

/// One row per measured run of the cells matching `selection`: `v`, the run's value of
/// `metric` (a request-level metric's is the mean over the run's agents), and `repetition`.
fn per_run(
    frames: &Frames,
    metric: &str,
    selection: &IndexMap<String, Value>,
) -> PolarsResult<DataFrame> {
    per_run_of(frames, metric, &matching_cells(frames, selection))
}

/// Each measured run's finite value of `metric` in one cell, in journal order.
pub fn cell_values(frames: &Frames, metric: &str, cell: u32) -> PolarsResult<Vec<f64>> {
    let values = per_run_of(frames, metric, &[cell])?;
    Ok(floats(&values, "v")?
        .into_iter()
        .filter(|v| v.is_finite())
        .collect())
}

/// `per_run` over the cells given.
fn per_run_of(frames: &Frames, metric: &str, cells: &[u32]) -> PolarsResult<DataFrame> {
    let measured = col("ok").and(col("warmup").not());
    if AGENT_METRICS.contains(&metric) {
        let per_cell = cells
            .iter()
            .map(|&cell| {
                Ok(frames
                    .agents_of_cell(cell)?
                    .lazy()
                    .filter(measured.clone())
                    // Stable: runs in journal order, so sums and files are the same every time.
                    .group_by_stable([col("run")])
                    .agg([
                        col(metric).mean().alias("v"),
                        col("repetition").first().alias("repetition"),
                    ]))
            })
            .collect::<PolarsResult<Vec<_>>>()?;
        if per_cell.is_empty() {
            Ok(df!("v" => Vec::<f64>::new(), "repetition" => Vec::<u32>::new())?)
        } else {
            concat(per_cell, UnionArgs::default())?.collect()
        }
    } else if RUN_METRICS.contains(&metric) {
        frames
            .runs_of(cells)?
            .lazy()
            .filter(measured)
            .select([col(metric).alias("v"), col("repetition")])
            .collect()
    } else {
        Err(PolarsError::ColumnNotFound(
            format!("`{metric}` is not a per-run metric that can be compared").into(),
        ))
    }
}

fn select_values(
    frames: &Frames,
    metric: &str,
    selection: &IndexMap<String, Value>,
) -> PolarsResult<Vec<f64>> {
    let values = per_run(frames, metric, selection)?;
    // Joins and group-bys may return rows in any order; sorted values make every sum, and so
    // every file written from them, the same on each analysis.
    let mut values: Vec<f64> = floats(&values, "v")?
        .into_iter()
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    Ok(values)
}

/// Compares two selections of runs.
pub fn compare_selections(
    frames: &Frames,
    metric: &str,
    a: &IndexMap<String, Value>,
    b: &IndexMap<String, Value>,
) -> PolarsResult<(Comparison, Option<f64>)> {
    let (va, vb) = (select(frames, metric, a)?, select(frames, metric, b)?);
    let comparison = stats::compare(&va, &vb);
    let delta_pp = is_fraction(metric).then_some((comparison.mean_a - comparison.mean_b) * 100.0);
    Ok((comparison, delta_pp))
}

/// Every claim with `compare` and a comparable metric, Holm-adjusted as one family.
pub fn claim_comparisons(
    frames: &Frames,
    loaded: &LoadedSpec,
) -> PolarsResult<Vec<ClaimComparison>> {
    let mut out = Vec::new();
    for claim in &loaded.spec.claims {
        let (Some(cmp), Some(metric)) = (&claim.compare, &claim.metric) else {
            continue;
        };
        if cmp.a.contains_key("recorded") || cmp.b.contains_key("recorded") {
            continue; // imported figures have no runs to compare
        }
        if !AGENT_METRICS.contains(&metric.as_str()) && !RUN_METRICS.contains(&metric.as_str()) {
            continue;
        }
        // `where` narrows both sides: compare.a and compare.b add to it.
        let side = |s: &IndexMap<String, Value>| {
            let mut merged = claim.selection.clone();
            merged.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
            merged
        };
        let (a, b) = (side(&cmp.a), side(&cmp.b));
        let (comparison, delta_pp) = compare_selections(frames, metric, &a, &b)?;
        // Interleaved runs make each repetition a block: run back to back, its cells share
        // whatever the machine was doing then.
        let paired = match loaded.spec.order {
            crate::spec::RunOrder::Interleaved => paired_by_repetition(frames, metric, &a, &b)?,
            _ => None,
        };
        out.push(ClaimComparison {
            claim: claim.id.clone(),
            metric: metric.clone(),
            a,
            b,
            comparison,
            delta_pp,
            p_holm: None,
            paired,
        });
    }
    let with_p: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].comparison.p_value.is_some())
        .collect();
    let p: Vec<f64> = with_p
        .iter()
        .filter_map(|&i| out[i].comparison.p_value)
        .collect();
    for (i, adjusted) in with_p.into_iter().zip(stats::holm(&p)) {
        out[i].p_holm = Some(adjusted);
    }
    Ok(out)
}
