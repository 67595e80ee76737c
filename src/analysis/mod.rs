//! Analysis: raw runs -> per-cell statistics, contention, comparisons, cost and energy.
//! `frame` turns the journal into polars frames; `summary`, `contention` and `compare` are the
//! only code that works on frames; the arithmetic lives in `stats` and `cost`.

pub mod claims;
pub mod compare;
pub mod contention;
pub mod cost;
pub mod fits;
pub mod frame;
pub mod replication;
pub mod scaling;
pub mod serving;
pub mod summary;
pub mod validity;

use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_io::SerWriter;
use polars_io::csv::write::CsvWriter;
use polars_io::parquet::write::ParquetWriter;

use crate::diagnostic::Diagnostic;
use crate::plan;
use crate::spec::matrix::label_of as matrix_label;
use crate::spec::{LoadedSpec, RunOrder};
use crate::stats;
use crate::store::{TrPaths, write_atomic};
use compare::ClaimComparison;
use contention::Contention;
use cost::CellCost;
use frame::{CellInfo, Frames};
use summary::{CellRuns, MetricSummary};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{0}")]
    Input(Diagnostic),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("analysis: {0}")]
    Polars(#[from] PolarsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A number with at most four decimals and no trailing zeros (50, not 50.0000; 0.35; never
/// "-0"): for explanations, axis ticks and short figures, not for report tables.
pub fn trimmed(x: f64) -> String {
    let text = format!("{x:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

pub struct Analysis {
    pub tr: String,
    pub cells: Vec<CellInfo>,
    /// Per cell: its label in the plan's axis order (or from the record when the plan has
    /// changed since), and its position in the plan for sorting.
    pub labels: Vec<String>,
    pub plan_order: Vec<usize>,
    pub metrics: Vec<MetricSummary>,
    pub runs: Vec<CellRuns>,
    pub contention: Contention,
    pub cost: Vec<CellCost>,
    pub comparisons: Vec<ClaimComparison>,
    /// Every claim re-derived and checked.
    pub claims: Vec<claims::ClaimCheck>,
    /// The TR's rate sweeps: knee and highest rate at the SLO, each with an interval.
    pub sweeps: Vec<serving::Sweep>,
    /// Per load cell, latency percentiles over all its measured requests pooled.
    pub pooled: Vec<serving::PooledLatency>,
    /// The spec's scaling fits, in its order.
    pub fits: Vec<fits::Fit>,
    pub warnings: Vec<String>,
    /// Per cell, its rows of `metrics` (sorted by cell): a lookup scanned every cell's
    /// metrics, which made a 5,000-cell table take seconds.
    metric_rows: Vec<std::ops::Range<usize>>,
}

impl Analysis {
    /// Cell indices in plan order.
    pub fn cells_in_order(&self) -> Vec<usize> {
        let mut cells: Vec<usize> = (0..self.cells.len()).collect();
        // Cells no longer in the plan sort by id: their index depends on parsing order.
        cells.sort_by(|&a, &b| {
            (self.plan_order[a], &self.cells[a].cell_id)
                .cmp(&(self.plan_order[b], &self.cells[b].cell_id))
        });
        cells
    }

    /// Every metric summary of one cell.
    pub fn metrics_of(&self, cell: usize) -> &[MetricSummary] {
        self.metric_rows
            .get(cell)
            .map_or(&[], |rows| &self.metrics[rows.clone()])
    }

    pub fn metric(&self, cell: usize, name: &str) -> Option<&MetricSummary> {
        let rows = self.metric_rows.get(cell)?.clone();
        self.metrics[rows].iter().find(|m| m.metric == name)
    }
}

/// Analyses a TR's journal.
pub fn analyze(root: &Path, loaded: &LoadedSpec) -> Result<Analysis, AnalysisError> {
    analyze_set(root, loaded, &TrPaths::new(root, &loaded.spec.id))
}

/// The analysis of one data set of the TR: its own data, or a replication's (`set`).
pub fn analyze_set(
    root: &Path,
    loaded: &LoadedSpec,
    set: &TrPaths,
) -> Result<Analysis, AnalysisError> {
    let journal = set.runs();
    if !journal.is_file() {
        return Err(AnalysisError::Input(no_runs(
            loaded,
            &journal,
            "has no recorded runs",
        )));
    }
    let started = std::time::Instant::now();
    let frames = frame::load(&journal)?;
    phase("read journal into frames", started);
    if frames.runs.height() == 0 {
        // Stopped before its first run finished: as good as no journal.
        return Err(AnalysisError::Input(no_runs(
            loaded,
            &journal,
            NO_FINISHED_RUNS,
        )));
    }
    analyze_frames(root, set, loaded, frames)
}

/// The serving figures of a TR's load runs: with an SLO, each run judged by it from its
/// request file (goodput and slo_share become run-level columns of the frames, so statistics
/// and claims see them); and the rate sweeps' knee and highest rate at the SLO. A TR without
/// load runs reads nothing more.
fn serving_figures(
    paths: &TrPaths,
    loaded: &LoadedSpec,
    frames: &mut Frames,
) -> Result<Serving, AnalysisError> {
    if !loaded.has_load_cells() {
        return Ok(Serving::default());
    }
    let index: std::collections::HashMap<String, usize> = frame::cell_index(&frames.cells)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let records = crate::record::journal::read_records(&paths.runs())
        .map_err(|e| AnalysisError::Input(Diagnostic::new(e.to_string())))?;
    let slo = loaded.spec.slo.as_ref();
    // Each cell's runs in journal order, as the frame holds them: judged or not.
    let mut judged: Vec<Vec<Option<serving::SloRun>>> = vec![Vec::new(); frames.cells.len()];
    let mut by_cell: std::collections::BTreeMap<usize, Vec<serving::SweepRun>> = Default::default();
    let mut pools: std::collections::BTreeMap<usize, serving::Pool> = Default::default();
    for r in &records {
        let Some(&cell) = index.get(r.cell_id.as_str()) else {
            continue;
        };
        let slot = judged[cell].len();
        judged[cell].push(None);
        let Some(load) = &r.load else { continue };
        if r.warmup || r.status != crate::record::RunStatus::Ok {
            continue;
        }
        let requests = crate::record::requests::read(paths, &r.run_id)
            .map_err(|e| AnalysisError::Input(Diagnostic::new(e.to_string())))?;
        pools.entry(cell).or_default().add_run(&requests);
        let margin = slo.and_then(|slo| {
            judged[cell][slot] = serving::judge(slo, &requests);
            judged[cell][slot].map(|j| j.slo_margin)
        });
        if let (Some(throughput), Some(ttft)) =
            (load.summary.request_throughput, load.summary.ttft_ms.p99)
        {
            by_cell.entry(cell).or_default().push(serving::SweepRun {
                throughput,
                ttft_p99_ms: ttft,
                margin,
            });
        }
    }
    if slo.is_some() {
        let column = |value: fn(&serving::SloRun) -> f64| -> Vec<Option<f64>> {
            judged
                .iter()
                .flat_map(|runs| runs.iter().map(move |j| j.as_ref().map(value)))
                .collect()
        };
        frames.set_run_column("goodput", column(|j| j.goodput))?;
        frames.set_run_column("slo_share", column(|j| j.slo_share))?;
    }
    let cells: Vec<(usize, &serde_json::Map<String, serde_json::Value>)> = frames
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (i, &c.params))
        .collect();
    Ok(Serving {
        sweeps: serving::sweeps(&cells, &by_cell, slo.is_some()),
        pooled: pools
            .into_iter()
            .map(|(cell, pool)| pool.finish(cell))
            .collect(),
    })
}

/// What `serving_figures` finds: the rate sweeps' figures and each load cell's pooled
/// latency percentiles.
#[derive(Default)]
struct Serving {
    sweeps: Vec<serving::Sweep>,
    pooled: Vec<serving::PooledLatency>,
}

/// A TR's frames as the analysis sees them: the journal read, and its load runs judged by
/// the spec's SLO (for commands that compare runs without the whole analysis).
pub fn frames_of(root: &Path, loaded: &LoadedSpec) -> Result<Frames, AnalysisError> {
    let paths = TrPaths::new(root, &loaded.spec.id);
    let mut frames = frame::load(&paths.runs())?;
    serving_figures(&paths, loaded, &mut frames)?;
    Ok(frames)
}

/// A claim figure's 95% interval, if it has one.
type ClaimInterval = Option<(f64, f64)>;

/// Every claim checked on one data set, with its figure's 95% interval there.
fn claims_on(
    loaded: &LoadedSpec,
    set: &TrPaths,
) -> Result<(Vec<claims::ClaimCheck>, Vec<ClaimInterval>), AnalysisError> {
    let mut frames = frame::load(&set.runs())?;
    let Serving { sweeps, .. } = serving_figures(set, loaded, &mut frames)?;
    let comparisons = compare::claim_comparisons(&frames, loaded)?;
    let fits = fits::fits(&frames, loaded)?;
    let evidence = claims::Evidence {
        frames: Some(&frames),
        comparisons: &comparisons,
        sweeps: &sweeps,
        fits: &fits,
    };
    let checks = claims::evaluate(loaded, evidence)?;
    let intervals = (loaded.spec.claims.iter())
        .map(|c| claims::interval(loaded, c, evidence))
        .collect::<PolarsResult<_>>()?;
    Ok((checks, intervals))
}

/// The replications of a TR kept beside its data, by name.
pub fn replication_names(root: &Path, tr: &str) -> Vec<String> {
    let dir = TrPaths::new(root, tr).replications_dir();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("runs.jsonl").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every claim of a TR checked on its own data (what a replication is judged against).
pub fn original_claims(
    root: &Path,
    loaded: &LoadedSpec,
) -> Result<Vec<claims::ClaimCheck>, AnalysisError> {
    claims_on(loaded, &TrPaths::new(root, &loaded.spec.id)).map(|(checks, _)| checks)
}

/// Judges each claim of a TR on its replication `name`: the original figure (from
/// `original`, the claims checked on the TR's own data) against the replication's interval.
pub fn replication(
    root: &Path,
    loaded: &LoadedSpec,
    original: &[claims::ClaimCheck],
    name: &str,
) -> Result<replication::Replication, AnalysisError> {
    let tr = &loaded.spec.id;
    let set = TrPaths::replication(root, tr, name);
    if !crate::record::journal::has_finished_runs(&set.runs()) {
        return Err(AnalysisError::Input(
            Diagnostic::new(format!("replication `{name}` of {tr} has no finished runs"))
                .in_file(set.runs())
                .help(format!(
                    "run it: `banterhearts replicate {tr} --name {name}`"
                )),
        ));
    }
    let (replicated, intervals) = claims_on(loaded, &set)?;
    let digests = crate::record::journal::read_digests(&set.runs())
        .map_err(|e| AnalysisError::Input(Diagnostic::new(e.to_string())))?;
    let planned = plan::build(loaded);
    let ids: std::collections::HashSet<&str> = planned
        .runs
        .iter()
        .filter(|r| !r.warmup)
        .map(|r| r.run_id.as_str())
        .collect();
    let runs = digests
        .runs
        .iter()
        .filter(|r| ids.contains(r.run_id.as_str()))
        .count();
    let mut machines: Vec<String> = crate::record::read_manifest(&set)
        .map_err(AnalysisError::Input)?
        .into_iter()
        .flat_map(|m| m.sessions)
        .map(|s| format!("{} ({} logical CPUs)", s.host.cpu, s.host.logical_cpus))
        .collect();
    machines.sort();
    machines.dedup();
    Ok(replication::Replication {
        name: name.to_owned(),
        runs,
        planned: planned.measured_runs(),
        machines,
        claims: replication::judge(loaded, original, &replicated, &intervals),
    })
}

/// What a TR without runs to analyse is said to have.
pub const NO_FINISHED_RUNS: &str = "has no finished runs yet";

/// "TR... <what>", in the journal, with what to do: run the TR.
pub fn no_runs(loaded: &LoadedSpec, journal: &Path, what: &str) -> Diagnostic {
    Diagnostic::new(format!("{} {what}", loaded.spec.id))
        .in_file(journal)
        .help(format!("run `banterhearts run {}` first", loaded.spec.id))
}

/// With BANTERHEARTS_TIMINGS set, says how long each analysis phase took (on stderr).
fn phase(name: &str, since: std::time::Instant) {
    if std::env::var_os("BANTERHEARTS_TIMINGS").is_some() {
        eprintln!("timing: {name}: {:.3} s", since.elapsed().as_secs_f64());
    }
}

pub fn analyze_frames(
    root: &Path,
    set: &TrPaths,
    loaded: &LoadedSpec,
    mut frames: Frames,
) -> Result<Analysis, AnalysisError> {
    // Load runs against the SLO first: goodput is a run-level metric like any other, so the
    // statistics and claims below see it.
    let started = std::time::Instant::now();
    let Serving { sweeps, pooled } = serving_figures(set, loaded, &mut frames)?;
    phase("serving: SLO, knee, rate at SLO", started);
    // The per-cell statistics keep every core busy on their own; the relational work (counts,
    // contention, comparisons, claims) is mostly single-threaded, so it runs beside them.
    let started = std::time::Instant::now();
    let (metrics, relational) = std::thread::scope(|scope| {
        let relational = scope.spawn(|| -> PolarsResult<_> {
            let runs = summary::run_counts(&frames)?;
            let contention =
                contention::compute(&frames, loaded.spec.contention.unwrap_or_default())?;
            let comparisons = compare::claim_comparisons(&frames, loaded)?;
            let fits = fits::fits(&frames, loaded)?;
            let claims = claims::evaluate(
                loaded,
                claims::Evidence {
                    frames: Some(&frames),
                    comparisons: &comparisons,
                    sweeps: &sweeps,
                    fits: &fits,
                },
            )?;
            phase(
                "counts, contention, comparisons, fits and claims (in parallel)",
                started,
            );
            Ok((runs, contention, comparisons, fits, claims))
        });
        let metrics = summary::summarize(&frames);
        phase("per-cell statistics (in parallel)", started);
        let relational = relational
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (metrics, relational)
    });
    let (mut metrics, (runs, contention, comparisons, fits, claims)) = (metrics?, relational?);
    let started = std::time::Instant::now();
    metrics.extend(summary::from_values(
        "contention_rate",
        &contention.run_rates,
    ));
    phase("contention rates", started);
    // Each cell's runs' tokens and seconds: scaling efficiency and cost both read them.
    let rates = (0..frames.cells.len())
        .map(|cell| summary::run_tokens_and_seconds(&frames, cell))
        .collect::<PolarsResult<Vec<_>>>()?;
    phase("tokens and seconds per run", started);
    metrics.extend(summary::from_values(
        "scaling_efficiency",
        &scaling::run_values(&frames, &rates, loaded.spec.order == RunOrder::Interleaved),
    ));
    phase("scaling efficiency", started);
    let mut warnings = Vec::new();
    if frames.torn_bytes > 0 {
        warnings.push(format!(
            "the journal's last {} bytes are no whole record (a run still being written, or cut short by a crash) and were left out",
            frames.torn_bytes
        ));
    }
    if loaded.spec.order != RunOrder::Interleaved {
        warnings.push(format!(
            "run order is {}, not interleaved: drift over time can bias one cell against another",
            loaded.spec.order
        ));
    }
    for r in &runs {
        // Degraded runs are counted, not measured: they do not narrow an interval.
        let measured = r.runs - r.degraded;
        if measured < 3 {
            warnings.push(format!(
                "cell {} has {measured} measured run(s): below 3, intervals are wide or absent",
                matrix_label(&frames.cells[r.cell].params),
            ));
        }
    }
    for f in &fits {
        warnings.extend(
            f.left_out
                .iter()
                .map(|why| format!("scaling fit `{}`: {why}", f.id)),
        );
        if f.law.is_none() {
            warnings.push(format!(
                "scaling fit `{}`: {} measured run(s) at {} distinct {}: a fit needs at least 3 runs at 2 values",
                f.id,
                f.runs(),
                f.distinct_x(),
                f.against
            ));
        }
    }
    for c in &comparisons {
        warnings.extend(
            c.comparison
                .warnings
                .iter()
                .map(|w| format!("claim `{}`: {w}", c.claim)),
        );
    }
    let cost = match &loaded.spec.cost {
        None => Vec::new(),
        Some(spec_cost) => {
            let profile = cost::resolve(root, spec_cost).map_err(AnalysisError::Input)?;
            let by_cell = |cell: usize, name: &str| {
                metrics.iter().find(|m| m.cell == cell && m.metric == name)
            };
            (0..frames.cells.len())
                .filter_map(|cell| {
                    // Total tokens over total time (the ratio estimator), not the mean of each
                    // run's rate, which would give a short run as much weight as a long one.
                    let (tokens, seconds, _) = &rates[cell];
                    // One run has a rate but no interval.
                    let rate = match stats::ratio_estimate(tokens, seconds, 0.95) {
                        Some(r) => (r.center, (r.low, r.high)),
                        None => (summary::total_rate(tokens, seconds)?, (f64::NAN, f64::NAN)),
                    };
                    let measured_runs = runs
                        .iter()
                        .find(|r| r.cell == cell)
                        .map_or(0, |r| r.runs - r.degraded);
                    // Measured power only when every measured run has a reading.
                    let power = by_cell(cell, "gpu_power_w")
                        .filter(|p| p.stats.n == measured_runs as usize)
                        .map(|p| p.stats.mean);
                    Some(cost::cell_cost(cell, rate.0, rate.1, &profile, power))
                })
                .collect()
        }
    };
    phase("cost", started);

    let plan_cells = crate::plan::planned_cells(loaded);
    let by_id: std::collections::HashMap<&str, usize> = (plan_cells.iter().enumerate())
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let position = |cell: &CellInfo| by_id.get(cell.cell_id.as_str()).copied();
    let labels = frames
        .cells
        .iter()
        .map(|c| {
            position(c).map_or_else(|| matrix_label(&c.params), |i| plan_cells[i].label.clone())
        })
        .collect();
    let plan_order = frames
        .cells
        .iter()
        .map(|c| position(c).unwrap_or(usize::MAX))
        .collect();
    let mut a = Analysis {
        tr: loaded.spec.id.clone(),
        cells: frames.cells,
        labels,
        plan_order,
        metrics,
        runs,
        contention,
        cost,
        comparisons,
        claims,
        sweeps,
        pooled,
        fits,
        warnings,
        metric_rows: Vec::new(),
    };
    // Report cells in plan order, whatever order the runs were recorded in.
    let rank: Vec<usize> = {
        let in_order = a.cells_in_order();
        let mut rank = vec![0; in_order.len()];
        for (position, cell) in in_order.into_iter().enumerate() {
            rank[cell] = position;
        }
        rank
    };
    a.metrics.sort_by_key(|m| rank[m.cell]);
    a.runs.sort_by_key(|r| rank[r.cell]);
    a.cost.sort_by_key(|c| rank[c.cell]);
    a.metric_rows = vec![0..0; a.cells.len()];
    let mut start = 0;
    for i in 1..=a.metrics.len() {
        if i == a.metrics.len() || a.metrics[i].cell != a.metrics[start].cell {
            a.metric_rows[a.metrics[start].cell] = start..i;
            start = i;
        }
    }
    Ok(a)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnalysisError + '_ {
    move |source| AnalysisError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_csv(path: &Path, df: &mut DataFrame) -> Result<(), AnalysisError> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(df)?;
    write_atomic(path, &bytes).map_err(io(path))
}

/// Writes summary.csv, summary.parquet, and when present cost.csv and comparisons.json.
pub fn write(root: &Path, a: &Analysis) -> Result<Vec<PathBuf>, AnalysisError> {
    let paths = TrPaths::new(root, &a.tr);
    let label = |cell: usize| a.labels[cell].clone();
    // Indexed once: a search of every cell's counts per metric row was quadratic in cells.
    let mut by_cell: Vec<Option<&CellRuns>> = vec![None; a.cells.len()];
    for r in &a.runs {
        by_cell[r.cell] = Some(r);
    }
    let runs_of = |cell: usize| by_cell.get(cell).copied().flatten();
    let m = &a.metrics;
    let mut summary = df!(
        "cell_id" => m.iter().map(|r| a.cells[r.cell].cell_id.clone()).collect::<Vec<_>>(),
        "cell" => m.iter().map(|r| label(r.cell)).collect::<Vec<_>>(),
        "metric" => m.iter().map(|r| r.metric.clone()).collect::<Vec<_>>(),
        // Values (one per request) and the runs they come from, the unit of std, cv and the
        // interval.
        "requests" => m.iter().map(|r| r.stats.n as u32).collect::<Vec<_>>(),
        "runs" => m.iter().map(|r| r.stats.runs as u32).collect::<Vec<_>>(),
        "mean" => m.iter().map(|r| r.stats.mean).collect::<Vec<_>>(),
        "median" => m.iter().map(|r| r.stats.median).collect::<Vec<_>>(),
        "std" => m.iter().map(|r| r.stats.std).collect::<Vec<_>>(),
        "cv" => m.iter().map(|r| r.stats.cv).collect::<Vec<_>>(),
        "min" => m.iter().map(|r| r.stats.min).collect::<Vec<_>>(),
        "max" => m.iter().map(|r| r.stats.max).collect::<Vec<_>>(),
        "p50" => m.iter().map(|r| r.stats.median).collect::<Vec<_>>(),
        "p95" => m.iter().map(|r| r.stats.p95).collect::<Vec<_>>(),
        "p99" => m.iter().map(|r| r.stats.p99).collect::<Vec<_>>(),
        "ci95_low" => m.iter().map(|r| r.stats.ci_low).collect::<Vec<_>>(),
        "ci95_high" => m.iter().map(|r| r.stats.ci_high).collect::<Vec<_>>(),
        "ci_center" => m.iter().map(|r| r.stats.center).collect::<Vec<_>>(),
        "ci_scale" => m.iter().map(|r| format!("{:?}", r.stats.scale).to_lowercase()).collect::<Vec<_>>(),
        "outliers" => m.iter().map(|r| r.stats.outliers as u32).collect::<Vec<_>>(),
        "runs_recorded" => m.iter().map(|r| runs_of(r.cell).map_or(0, |c| c.runs)).collect::<Vec<_>>(),
        "degraded" => m.iter().map(|r| runs_of(r.cell).map_or(0, |c| c.degraded)).collect::<Vec<_>>(),
        "degraded_rate" => m.iter().map(|r| runs_of(r.cell).map_or(0.0, |c| c.degraded_rate)).collect::<Vec<_>>(),
        "degraded_rate_ci95_low" => m.iter().map(|r| runs_of(r.cell).and_then(|c| c.degraded_rate_ci).map(|c| c.0)).collect::<Vec<_>>(),
        "degraded_rate_ci95_high" => m.iter().map(|r| runs_of(r.cell).and_then(|c| c.degraded_rate_ci).map(|c| c.1)).collect::<Vec<_>>(),
    )?;
    let mut written = Vec::new();
    let csv = paths.data_dir.join("summary.csv");
    write_csv(&csv, &mut summary)?;
    written.push(csv);
    let parquet = paths.data_dir.join("summary.parquet");
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(&mut summary)?;
    write_atomic(&parquet, &bytes).map_err(io(&parquet))?;
    written.push(parquet);
    if !a.cost.is_empty() {
        let c = &a.cost;
        let mut cost = df!(
            "cell_id" => c.iter().map(|r| a.cells[r.cell].cell_id.clone()).collect::<Vec<_>>(),
            "cell" => c.iter().map(|r| label(r.cell)).collect::<Vec<_>>(),
            "tok_s" => c.iter().map(|r| r.tok_s).collect::<Vec<_>>(),
            "usd_per_1m" => c.iter().map(|r| r.usd_per_1m).collect::<Vec<_>>(),
            "usd_per_1m_ci95_low" => c.iter().map(|r| r.usd_per_1m_ci_low).collect::<Vec<_>>(),
            "usd_per_1m_ci95_high" => c.iter().map(|r| r.usd_per_1m_ci_high).collect::<Vec<_>>(),
            "spot_usd_per_1m" => c.iter().map(|r| r.spot_usd_per_1m).collect::<Vec<_>>(),
            "spot_savings_pct" => c.iter().map(|r| r.spot_savings_pct).collect::<Vec<_>>(),
            "kwh_per_1m" => c.iter().map(|r| r.kwh_per_1m).collect::<Vec<_>>(),
            "gco2e_per_1m" => c.iter().map(|r| r.gco2e_per_1m).collect::<Vec<_>>(),
            "tokens_per_kwh" => c.iter().map(|r| r.tokens_per_kwh).collect::<Vec<_>>(),
            "power_w" => c.iter().map(|r| r.power_w).collect::<Vec<_>>(),
            "power_source" => c.iter().map(|r| r.power_source.clone()).collect::<Vec<_>>(),
        )?;
        let path = paths.data_dir.join("cost.csv");
        write_csv(&path, &mut cost)?;
        written.push(path);
    } else {
        remove_stale(&paths.data_dir.join("cost.csv"))?;
    }
    write_json_or_remove(
        &paths.data_dir.join("comparisons.json"),
        &a.comparisons,
        &mut written,
    )?;
    write_json_or_remove(&paths.data_dir.join("claims.json"), &a.claims, &mut written)?;
    write_json_or_remove(&paths.data_dir.join("fits.json"), &a.fits, &mut written)?;
    Ok(written)
}

/// Writes `items` as pretty JSON to `path` (noting it in `written`), or removes the file when
/// there are none.
fn write_json_or_remove<T: serde::Serialize>(
    path: &Path,
    items: &[T],
    written: &mut Vec<PathBuf>,
) -> Result<(), AnalysisError> {
    if items.is_empty() {
        return remove_stale(path);
    }
    let text = serde_json::to_string_pretty(items).expect("analysis outputs serialize");
    write_atomic(path, text.as_bytes()).map_err(io(path))?;
    written.push(path.to_path_buf());
    Ok(())
}

/// Removes an output this analysis has nothing for (the spec lost its cost or claims), so no
/// file from an earlier analysis sits beside the new summary as if it were current.
fn remove_stale(path: &Path) -> Result<(), AnalysisError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}
