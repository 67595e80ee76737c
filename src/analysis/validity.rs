//! What in the data is too thin or too noisy to trust, by the spec's `validity` thresholds:
//! cells with fewer runs than `min_runs`, a degraded share above `degraded_rate`, metrics whose
//! runs vary by more than `cv`, and runs measured while other processes used more than
//! `background_share` of the CPUs. The report lists these as threats to validity; the audit
//! raises each as a warning. One function, so both say the same.

use serde::Serialize;

use super::Analysis;
use crate::record::RunStatus;
use crate::record::journal::{Digests, LoadGate};
use crate::spec::{LoadedSpec, ValidityThresholds};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    FewRuns,
    Degraded,
    HighCv,
    BackgroundLoad,
    /// Some requests found their prompt cached and others did not.
    MixedCache,
    /// Load runs whose client sent fewer requests per second than the schedule offered.
    RateShortfall,
    /// Load runs whose requests left late (dispatch lag p99 above the threshold).
    DispatchLag,
    /// Load runs with more failed or cancelled requests than the threshold.
    Errors,
}

#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub cell: usize,
    pub kind: IssueKind,
    /// The metric, for a high CV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// What is wrong, as a sentence without the cell's name.
    pub message: String,
}

/// The metrics whose variation between runs is judged: the headline ones, every metric a
/// claim is about and every metric a scaling fit is of.
pub fn judged_metrics(loaded: &LoadedSpec) -> Vec<String> {
    let mut out: Vec<String> = vec!["decode_tok_s".into(), "ttft_ms".into()];
    let named = (loaded.spec.claims.iter().filter_map(|c| c.metric.as_ref()))
        .chain(loaded.spec.scaling.iter().map(|f| &f.metric));
    for m in named {
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    out
}

/// A cell's coefficient of variation between runs of `name`, and its runs, where one means
/// something: not for a quantity whose mean can be zero (a rate shortfall, a dispatch lag, a
/// clock difference), which has other gates.
pub fn judged_cv(a: &Analysis, cell: usize, name: &str) -> Option<(f64, usize)> {
    if crate::spec::metrics::scale(name) == crate::stats::Scale::Linear {
        return None;
    }
    a.metric(cell, name).map(|m| (m.stats.cv, m.stats.runs))
}

/// The issues of `a`, whose journal's `digests` say which runs had background load.
pub fn assess(loaded: &LoadedSpec, a: &Analysis, digests: &Digests) -> Vec<Issue> {
    let t: ValidityThresholds = loaded.spec.validity.unwrap_or_default();
    let metrics = judged_metrics(loaded);
    let mut out = Vec::new();
    // Indexed once; a search per cell made the assessment quadratic in cells.
    let runs_of: std::collections::HashMap<usize, _> = a.runs.iter().map(|r| (r.cell, r)).collect();
    let mut loads_of: std::collections::HashMap<&str, Vec<(&str, LoadGate)>> = Default::default();
    let mut measured_of: std::collections::HashMap<&str, Vec<(&str, f64)>> = Default::default();
    for r in digests.runs.iter().filter(|r| !r.warmup) {
        if let (RunStatus::Ok, Some(share)) = (r.status, r.background_share) {
            measured_of
                .entry(r.cell_id.as_str())
                .or_default()
                .push((r.run_id.as_str(), share));
        }
        if let Some(l) = r.load {
            loads_of
                .entry(r.cell_id.as_str())
                .or_default()
                .push((r.run_id.as_str(), l));
        }
    }
    for cell in a.cells_in_order() {
        let mut push = |kind, metric: Option<String>, message: String| {
            out.push(Issue {
                cell,
                kind,
                metric,
                message,
            })
        };
        if let Some(r) = runs_of.get(&cell) {
            let measured = r.runs - r.degraded;
            if measured < t.min_runs {
                push(
                    IssueKind::FewRuns,
                    None,
                    format!(
                        "only {measured} measured run(s), fewer than {}: its intervals are wide or absent",
                        t.min_runs
                    ),
                );
            }
            if r.runs > 0 && r.degraded_rate > t.degraded_rate {
                push(
                    IssueKind::Degraded,
                    None,
                    format!(
                        "{} of {} runs degraded ({:.0}%, above {:.0}%); they are counted, not averaged",
                        r.degraded,
                        r.runs,
                        r.degraded_rate * 100.0,
                        t.degraded_rate * 100.0
                    ),
                );
            }
        }
        for name in &metrics {
            if let Some((cv, runs)) = judged_cv(a, cell, name)
                && cv > t.cv
            {
                push(
                    IssueKind::HighCv,
                    Some(name.clone()),
                    format!(
                        "{name} varies a lot between runs (CV {:.1}% over {runs} runs, above {:.0}%)",
                        cv * 100.0,
                        t.cv * 100.0
                    ),
                );
            }
        }
        if let (Some(cold), Some(warm)) = (
            a.metric(cell, "ttft_cold_ms"),
            a.metric(cell, "ttft_warm_ms"),
        ) {
            push(
                IssueKind::MixedCache,
                None,
                format!(
                    "{} request(s) found their prompt in the server's cache and {} did not, so its TTFT mixes warm and cold prefill (median {:.1} ms warm, {:.1} ms cold; ttft_warm_ms and ttft_cold_ms hold them apart)",
                    warm.stats.n, cold.stats.n, warm.stats.median, cold.stats.median
                ),
            );
        }
        let loads = loads_of
            .get(a.cells[cell].cell_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        load_gates(&t, loads, &mut push);
        let measured = measured_of
            .get(a.cells[cell].cell_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        let flagged: Vec<&(&str, f64)> = measured
            .iter()
            .filter(|(_, s)| *s > t.background_share)
            .collect();
        if !flagged.is_empty() {
            let worst = flagged.iter().map(|(_, s)| *s).fold(0.0, f64::max);
            let ids: Vec<&str> = flagged.iter().map(|(id, _)| *id).collect();
            push(
                IssueKind::BackgroundLoad,
                None,
                format!(
                    "{} of {} runs ran while other processes used more than {:.0}% of the CPUs (up to {:.0}%): their timings may be slow for reasons outside the experiment (runs {})",
                    flagged.len(),
                    measured.len(),
                    t.background_share * 100.0,
                    worst * 100.0,
                    ids.join(", ")
                ),
            );
        }
    }
    out
}

/// The load runs' gates: the client kept the schedule (its achieved rate and its dispatch
/// lag) and the server answered (the error rate). A run degraded by its lag is counted among
/// the degraded runs as well; it is named here so that the reason is plain.
fn load_gates(
    t: &ValidityThresholds,
    runs: &[(&str, LoadGate)],
    push: &mut impl FnMut(IssueKind, Option<String>, String),
) {
    if runs.is_empty() {
        return;
    }
    let flagged = |test: &dyn Fn(&LoadGate) -> Option<f64>| -> Vec<(&str, f64)> {
        runs.iter()
            .filter_map(|(id, g)| test(g).map(|v| (*id, v)))
            .collect()
    };
    let ids = |f: &[(&str, f64)]| f.iter().map(|(id, _)| *id).collect::<Vec<_>>().join(", ");
    let short = flagged(&|g| {
        let (offered, achieved) = (g.offered_rate?, g.achieved_rate?);
        let shortfall = 1.0 - achieved / offered;
        (shortfall > t.rate_shortfall).then_some(shortfall)
    });
    if !short.is_empty() {
        let worst = short.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        push(
            IssueKind::RateShortfall,
            None,
            format!(
                "{} of {} load runs achieved a request rate more than {:.1}% below their schedule's (up to {:.1}% below): the client could not send what was offered (runs {})",
                short.len(),
                runs.len(),
                t.rate_shortfall * 100.0,
                worst * 100.0,
                ids(&short)
            ),
        );
    }
    let late = flagged(&|g| g.dispatch_lag_p99_ms.filter(|l| *l > t.dispatch_lag_p99_ms));
    if !late.is_empty() {
        let worst = late.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        push(
            IssueKind::DispatchLag,
            None,
            format!(
                "{} of {} load runs sent requests late: dispatch lag p99 above {} ms (up to {worst:.2} ms{}); latencies from the scheduled time (ttft_sched, e2e_sched) include the lateness (runs {})",
                late.len(),
                runs.len(),
                t.dispatch_lag_p99_ms,
                if worst > crate::record::DEGRADED_LAG_P99_MS {
                    "; past 10 ms a run is degraded"
                } else {
                    ""
                },
                ids(&late)
            ),
        );
    }
    let failing = flagged(&|g| (g.error_rate > t.error_rate).then_some(g.error_rate));
    if !failing.is_empty() {
        let worst = failing.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        push(
            IssueKind::Errors,
            None,
            format!(
                "{} of {} load runs had more than {:.1}% of their requests fail or be cancelled (up to {:.1}%): latency percentiles cover the requests that finished (runs {})",
                failing.len(),
                runs.len(),
                t.error_rate * 100.0,
                worst * 100.0,
                ids(&failing)
            ),
        );
    }
}
