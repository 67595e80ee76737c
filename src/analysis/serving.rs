//! The serving figures of a rate sweep: per load run, goodput under the spec's `slo` (requests
//! per second that met every term) and the SLO margin at its percentile; along a `rate` axis,
//! the knee and the highest rate that meets the SLO, each with an interval from the
//! repetitions (a bootstrap over each rate's runs). Definitions, with a worked example:
//! docs/metrics.md. The arithmetic is pure; `slo_runs` reads the request files.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use crate::record::{LoadRequest, RunStatus};
use crate::spec::Slo;

/// A request's latency when it did not finish well: past any threshold, so that it fails
/// the SLO and counts in a percentile as the slowest (an infinity would make the
/// interpolation between two of them undefined).
const FAILED: f64 = 1e300;

/// One request's terms against the SLO: (its value, the threshold) for each term the SLO sets.
fn terms(slo: &Slo, r: &LoadRequest) -> Vec<(f64, f64)> {
    let ok = r.status == RunStatus::Ok;
    let from_schedule = slo.from_schedule();
    let value = |v: Option<f64>| v.filter(|_| ok).unwrap_or(FAILED);
    let mut out = Vec::new();
    if let Some(t) = slo.ttft_ms {
        let v = if from_schedule {
            r.ttft_from_schedule_ms
        } else {
            r.ttft_ms
        };
        out.push((value(v), t));
    }
    if let Some(t) = slo.tpot_ms {
        // A one-token answer has no time per output token: nothing to miss.
        let v = if ok { r.tpot_ms.unwrap_or(0.0) } else { FAILED };
        out.push((v, t));
    }
    if let Some(t) = slo.e2e_ms {
        let v = if from_schedule {
            r.e2e_from_schedule_ms
        } else {
            r.e2e_ms
        };
        out.push((value(v), t));
    }
    out
}

/// Whether a request met every term of the SLO (a failed or cancelled one never does).
pub fn meets(slo: &Slo, r: &LoadRequest) -> bool {
    r.status == RunStatus::Ok && terms(slo, r).iter().all(|(v, t)| v <= t)
}

/// A load run judged by the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SloRun {
    /// Requests that met the SLO, per second of the measured period (first send to last
    /// finish of the measured requests).
    pub goodput: f64,
    /// Of the measured requests, the share that met it.
    pub slo_share: f64,
    /// The worst term's percentile latency over its threshold (failed requests counted as the
    /// slowest): at most 1 when the run meets the SLO at its percentile.
    pub slo_margin: f64,
}

/// Judges one run's requests (warm-up ones are left out).
pub fn judge(slo: &Slo, requests: &[LoadRequest]) -> Option<SloRun> {
    let measured: Vec<&LoadRequest> = requests.iter().filter(|r| !r.warmup).collect();
    if measured.is_empty() {
        return None;
    }
    let good = measured.iter().filter(|r| meets(slo, r)).count();
    let start = measured
        .iter()
        .map(|r| r.sent_ms)
        .fold(f64::INFINITY, f64::min);
    let end = measured
        .iter()
        .filter_map(|r| r.e2e_ms.map(|e| r.sent_ms + e))
        .fold(f64::NEG_INFINITY, f64::max);
    let span_s = (end - start) / 1000.0;
    let per_term: Vec<Vec<(f64, f64)>> = measured.iter().map(|r| terms(slo, r)).collect();
    let n_terms = per_term.first().map_or(0, Vec::len);
    let mut margin: f64 = 0.0;
    for k in 0..n_terms {
        // A failed request counts as slow as the slowest that finished: a lower bound on how
        // late it was, so that one failure does not put the margin at infinity (and a run
        // where nothing finished stays beyond any threshold).
        let slowest = per_term
            .iter()
            .map(|t| t[k].0)
            .filter(|v| *v < FAILED)
            .fold(f64::NEG_INFINITY, f64::max);
        let values: Vec<f64> = per_term
            .iter()
            .map(|t| match t[k].0 {
                v if v >= FAILED && slowest.is_finite() => slowest,
                v => v,
            })
            .collect();
        let threshold = per_term[0][k].1;
        let q = crate::stats::percentile(&values, slo.quantile())?;
        margin = margin.max(q / threshold);
    }
    Some(SloRun {
        goodput: if span_s > 0.0 {
            good as f64 / span_s
        } else {
            0.0
        },
        slo_share: good as f64 / measured.len() as f64,
        slo_margin: margin,
    })
}

/// One run of a rate sweep: what the knee and the SLO rate are found from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepRun {
    /// Requests that finished well, per second.
    pub throughput: f64,
    pub ttft_p99_ms: f64,
    /// The run's SLO margin, where the spec has an SLO.
    pub margin: Option<f64>,
}

/// A figure found along a rate axis, with its interval from the repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepFigure {
    /// None: not within the measured rates (no knee; the SLO met nowhere, or everywhere).
    pub value: Option<f64>,
    /// 2.5th and 97.5th percentiles of the bootstrap estimates that found one.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Of the bootstrap resamples, the share that found one at all.
    pub found_share: f64,
    /// For the SLO rate: every measured rate met it, so the true one is at least `value`.
    pub at_least: bool,
}

/// How much of the offered increase the served throughput must follow, at most, for the step
/// to count as the server's limit: less than half.
pub const KNEE_TOLERANCE: f64 = 0.5;

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.max(1e-300).ln()).sum::<f64>() / v.len().max(1) as f64).exp()
}

/// The knee of a sweep given each rate's runs, rates ascending: the lowest rate r_i from which
/// the step to r_(i+1) serves less than half of the offered increase, (X_(i+1) / X_i - 1) <
/// 0.5 (r_(i+1) / r_i - 1) with X the mean throughput, while the mean TTFT p99 grows faster than
/// the offered rate, L_(i+1) / L_i > r_(i+1) / r_i.
pub fn knee(sweep: &[(f64, Vec<SweepRun>)]) -> Option<f64> {
    let points: Vec<(f64, f64, f64)> = sweep
        .iter()
        .filter(|(_, runs)| !runs.is_empty())
        .map(|(r, runs)| {
            let x: Vec<f64> = runs.iter().map(|s| s.throughput).collect();
            let l: Vec<f64> = runs.iter().map(|s| s.ttft_p99_ms).collect();
            (*r, mean(&x), mean(&l))
        })
        .collect();
    points.windows(2).find_map(|w| {
        let ((r0, x0, l0), (r1, x1, l1)) = (w[0], w[1]);
        let offered = r1 / r0 - 1.0;
        let served = x1 / x0 - 1.0;
        (served < KNEE_TOLERANCE * offered && l1 / l0 > r1 / r0).then_some(r0)
    })
}

/// The highest rate meeting the SLO, given each rate's runs, rates ascending: the geometric
/// mean margin m_i over each rate's runs; from the first rate r_i with m_i <= 1 followed by one
/// with m_(i+1) > 1, the rate where log m crosses 0 on the line between them. Every rate
/// meeting it gives the highest measured rate (`at_least`); none meeting it, None.
pub fn max_rate_at_slo(sweep: &[(f64, Vec<SweepRun>)]) -> (Option<f64>, bool) {
    let points: Vec<(f64, f64)> = sweep
        .iter()
        .filter_map(|(r, runs)| {
            let m: Vec<f64> = runs.iter().filter_map(|s| s.margin).collect();
            (!m.is_empty()).then(|| (*r, geomean(&m).ln()))
        })
        .collect();
    match points.first() {
        None => return (None, false),
        Some((_, lm)) if *lm > 0.0 => return (None, false),
        _ => {}
    }
    for w in points.windows(2) {
        let ((r0, m0), (r1, m1)) = (w[0], w[1]);
        if m1 > 0.0 {
            return (Some(r0 + (r1 - r0) * (0.0 - m0) / (m1 - m0)), false);
        }
    }
    (points.last().map(|(r, _)| *r), true)
}

/// A figure of the sweep and its bootstrap interval: `resamples` resamples of each rate's runs
/// (with replacement, seeded, so the same data give the same interval).
fn with_interval(
    sweep: &[(f64, Vec<SweepRun>)],
    figure: impl Fn(&[(f64, Vec<SweepRun>)]) -> Option<f64>,
    at_least: bool,
    resamples: usize,
) -> SweepFigure {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5EED);
    let mut found = Vec::new();
    for _ in 0..resamples {
        let resampled: Vec<(f64, Vec<SweepRun>)> = sweep
            .iter()
            .map(|(r, runs)| {
                let pick = (0..runs.len())
                    .map(|_| runs[rng.random_range(0..runs.len())])
                    .collect();
                (*r, pick)
            })
            .collect();
        if let Some(v) = figure(&resampled) {
            found.push(v);
        }
    }
    found.sort_by(f64::total_cmp);
    let pct = |p: f64| crate::stats::percentile(&found, p);
    SweepFigure {
        value: figure(sweep),
        ci_low: pct(2.5),
        ci_high: pct(97.5),
        found_share: found.len() as f64 / resamples.max(1) as f64,
        at_least,
    }
}

/// Resamples behind each sweep figure's interval.
pub const RESAMPLES: usize = 2000;

pub use crate::spec::metrics::SWEEP_AXES;

/// One sweep: the cells that differ only in the sweep's axis, and what was found along it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// `rate` or `concurrency`.
    pub axis: &'static str,
    /// The parameters the sweep's cells share (every axis but `axis`).
    pub fixed: serde_json::Map<String, Value>,
    /// Its cells, by the axis' value ascending.
    pub cells: Vec<usize>,
    /// The axis' values: offered rates, or users. The figures below are in the same unit.
    pub rates: Vec<f64>,
    pub knee_rate: SweepFigure,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rate_at_slo: Option<SweepFigure>,
}

/// The sweeps of a TR: load cells grouped by their sweep axis (`SWEEP_AXES`) and every other
/// axis, each group with at least two values; `runs` holds each cell's runs.
pub fn sweeps(
    cells: &[(usize, &serde_json::Map<String, Value>)],
    runs: &BTreeMap<usize, Vec<SweepRun>>,
    with_slo: bool,
) -> Vec<Sweep> {
    // Each group: its axis, the parameters its cells share, and its (value, cell) members.
    type Group = (
        &'static str,
        serde_json::Map<String, Value>,
        Vec<(f64, usize)>,
    );
    let mut groups: Vec<Group> = Vec::new();
    for (cell, params) in cells {
        let Some((axis, at)) = SWEEP_AXES
            .iter()
            .find_map(|a| params.get(*a).and_then(Value::as_f64).map(|v| (*a, v)))
        else {
            continue;
        };
        let mut fixed = (*params).clone();
        fixed.remove(axis);
        match groups
            .iter_mut()
            .find(|(a, f, _)| *a == axis && *f == fixed)
        {
            Some((_, _, members)) => members.push((at, *cell)),
            None => groups.push((axis, fixed, vec![(at, *cell)])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, _, members)| members.len() >= 2)
        .map(|(axis, fixed, mut members)| {
            members.sort_by(|a, b| a.0.total_cmp(&b.0));
            let sweep: Vec<(f64, Vec<SweepRun>)> = members
                .iter()
                .map(|(r, c)| (*r, runs.get(c).cloned().unwrap_or_default()))
                .collect();
            let (_, at_least) = max_rate_at_slo(&sweep);
            Sweep {
                axis,
                fixed,
                cells: members.iter().map(|(_, c)| *c).collect(),
                rates: members.iter().map(|(r, _)| *r).collect(),
                knee_rate: with_interval(&sweep, knee, false, RESAMPLES),
                max_rate_at_slo: with_slo
                    .then(|| with_interval(&sweep, |s| max_rate_at_slo(s).0, at_least, RESAMPLES)),
            }
        })
        .collect()
}

/// A cell's latency percentiles over all its measured requests pooled (every measured run's
/// requests that finished well, together): what a single long run would show, without an
/// interval (the requests of one run are not independent). Beside the run-level percentiles,
/// whose mean over runs has one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PooledLatency {
    pub cell: usize,
    /// Requests pooled, and the runs they came from.
    pub requests: usize,
    pub runs: usize,
    pub ttft_ms: crate::record::Percentiles,
    pub tpot_ms: crate::record::Percentiles,
    pub e2e_ms: crate::record::Percentiles,
}

/// A cell's requests gathered run by run, for its pooled percentiles: only the latencies are
/// kept, not the requests.
#[derive(Debug, Default, Clone)]
pub struct Pool {
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    e2e: Vec<f64>,
    requests: usize,
    runs: usize,
}

impl Pool {
    /// Adds one run's requests (warm-up ones and those that did not finish well left out).
    pub fn add_run(&mut self, requests: &[LoadRequest]) {
        self.runs += 1;
        for r in requests
            .iter()
            .filter(|r| !r.warmup && r.status == RunStatus::Ok)
        {
            self.requests += 1;
            let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
            self.ttft.extend(finite(r.ttft_ms));
            self.tpot.extend(finite(r.tpot_ms));
            self.e2e.extend(finite(r.e2e_ms));
        }
    }

    pub fn finish(mut self, cell: usize) -> PooledLatency {
        let of = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let p = |q: f64| crate::stats::percentile_sorted(v, q);
            crate::record::Percentiles {
                p50: p(50.0),
                p90: p(90.0),
                p95: p(95.0),
                p99: p(99.0),
            }
        };
        PooledLatency {
            cell,
            requests: self.requests,
            runs: self.runs,
            ttft_ms: of(&mut self.ttft),
            tpot_ms: of(&mut self.tpot),
            e2e_ms: of(&mut self.e2e),
        }
    }
}

/// Which points are Pareto-optimal when more is better on both axes: no other point is at
/// least as good on both and better on one. Points with a coordinate that is not finite are
/// never optimal.
pub fn pareto(points: &[(f64, f64)]) -> Vec<bool> {
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    points
        .iter()
        .map(|p| {
            finite(p)
                && !points
                    .iter()
                    .any(|q| finite(q) && q.0 >= p.0 && q.1 >= p.1 && (q.0 > p.0 || q.1 > p.1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(ttft: Option<f64>, tpot: Option<f64>) -> Slo {
        Slo {
            ttft_ms: ttft,
            tpot_ms: tpot,
            e2e_ms: None,
            percentile: Some("p99".into()),
            from: None,
        }
    }

    fn request(sent: f64, ttft: f64, tpot: f64, e2e: f64, ok: bool) -> LoadRequest {
        LoadRequest {
            index: 0,
            scheduled_ms: sent,
            sent_ms: sent,
            dispatch_lag_ms: 0.0,
            status: if ok {
                RunStatus::Ok
            } else {
                RunStatus::Degraded
            },
            reason: None,
            cancelled: false,
            ttft_ms: Some(ttft),
            e2e_ms: Some(e2e),
            ttft_from_schedule_ms: Some(ttft),
            e2e_from_schedule_ms: Some(e2e),
            tpot_ms: Some(tpot),
            itl_p50_ms: None,
            itl_p99_ms: None,
            output_tokens: Some(10),
            prompt_tokens: None,
            cache_n: None,
            input_tokens_requested: None,
            output_tokens_requested: None,
            warmup: false,
        }
    }

    /// The worked example of docs/metrics.md: five requests over 2 s against TTFT <= 500 ms
    /// and TPOT <= 50 ms.
    #[test]
    fn goodput_worked_by_hand() {
        let requests = [
            request(0.0, 200.0, 40.0, 560.0, true),    // meets both
            request(400.0, 650.0, 30.0, 920.0, true),  // TTFT too slow
            request(800.0, 300.0, 60.0, 840.0, true),  // TPOT too slow
            request(1200.0, 450.0, 45.0, 855.0, true), // meets both
            request(1600.0, 100.0, 20.0, 0.0, false),  // failed
        ];
        let s = slo(Some(500.0), Some(50.0));
        let run = judge(&s, &requests).unwrap();
        // Span: first send 0 ms to last finish 1200 + 855 = 2055 ms; 2 good requests.
        assert!((run.goodput - 2.0 / 2.055).abs() < 1e-12, "{run:?}");
        assert!((run.slo_share - 0.4).abs() < 1e-12);
        // The failed request counts as the slowest that finished (TTFT 650, TPOT 60), so the
        // p99 of each term is that: 650 / 500 = 1.3 and 60 / 50 = 1.2; the margin is 1.3.
        assert!((run.slo_margin - 1.3).abs() < 1e-12, "{run:?}");
        let lenient = Slo {
            percentile: Some("p50".into()),
            ..s.clone()
        };
        // p50 of TTFT over {200, 650, 300, 450, 650} is 450: 0.9 of 500; of TPOT
        // {40, 30, 60, 45, 60} it is 45: 0.9 of 50.
        assert!((judge(&lenient, &requests).unwrap().slo_margin - 0.9).abs() < 1e-12);
    }

    fn runs(throughput: f64, ttft: f64, margin: f64) -> Vec<SweepRun> {
        // Three repetitions around the point, spread by +-5%.
        [0.95, 1.0, 1.05]
            .iter()
            .map(|k| SweepRun {
                throughput: throughput * k,
                ttft_p99_ms: ttft * k,
                margin: Some(margin * k),
            })
            .collect()
    }

    /// A synthetic server with a capacity of 5 requests per second: it serves what is offered
    /// up to 4, and 5 of 8; TTFT p99 is flat then jumps. Known answers: the knee at 4, and the
    /// SLO margin crossing 1 between 4 (0.2) and 8 (4.0), at 4 + 4 x ln(5) / ln(20).
    #[test]
    fn the_knee_and_the_slo_rate_of_a_known_server() {
        let sweep = vec![
            (1.0, runs(1.0, 100.0, 0.1)),
            (2.0, runs(2.0, 105.0, 0.12)),
            (4.0, runs(4.0, 110.0, 0.2)),
            (8.0, runs(5.0, 2000.0, 4.0)),
        ];
        assert_eq!(knee(&sweep), Some(4.0));
        let (rate, at_least) = max_rate_at_slo(&sweep);
        // The geometric mean of a rate's three margins is g = (0.95 x 1.05)^(1/3) times its
        // centre, which shifts the crossing by -ln(g) / ln(20) of the step.
        let g = (0.95f64 * 1.05).powf(1.0 / 3.0);
        let expected = 4.0 + 4.0 * (5f64.ln() - g.ln()) / 20f64.ln();
        assert!(
            (rate.unwrap() - expected).abs() < 1e-9,
            "{rate:?} vs {expected}"
        );
        assert!(!at_least);
        let cells: Vec<(usize, serde_json::Map<String, Value>)> = [1.0, 2.0, 4.0, 8.0]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut m = serde_json::Map::new();
                m.insert("rate".into(), (*r).into());
                m.insert("np".into(), 2.into());
                (i, m)
            })
            .collect();
        let refs: Vec<(usize, &serde_json::Map<String, Value>)> =
            cells.iter().map(|(i, m)| (*i, m)).collect();
        let by_cell: BTreeMap<usize, Vec<SweepRun>> = sweep
            .iter()
            .enumerate()
            .map(|(i, (_, r))| (i, r.clone()))
            .collect();
        let found = sweeps(&refs, &by_cell, true);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.rates, [1.0, 2.0, 4.0, 8.0]);
        assert_eq!(f.knee_rate.value, Some(4.0));
        assert_eq!(
            f.knee_rate.found_share, 1.0,
            "every resample finds the knee"
        );
        let slo_rate = f.max_rate_at_slo.as_ref().unwrap();
        let (lo, hi) = (slo_rate.ci_low.unwrap(), slo_rate.ci_high.unwrap());
        assert!(
            lo <= expected && expected <= hi && hi - lo < 0.5,
            "[{lo}, {hi}]"
        );
    }

    /// Server throughput against per-user speed: more of both is better. (10, 50) and
    /// (20, 40) and (30, 10) trade one for the other; (15, 30) is beaten by (20, 40), and
    /// (20, 35) by the same; a point with no TPOT is left out.
    #[test]
    fn the_pareto_front_of_throughput_and_interactivity() {
        let points = [
            (10.0, 50.0),
            (15.0, 30.0),
            (20.0, 40.0),
            (20.0, 35.0),
            (30.0, 10.0),
            (40.0, f64::NAN),
        ];
        assert_eq!(pareto(&points), [true, false, true, false, true, false]);
        // Two equal points are both optimal: neither beats the other.
        assert_eq!(pareto(&[(1.0, 1.0), (1.0, 1.0)]), [true, true]);
    }

    #[test]
    fn pooled_percentiles_take_every_measured_request_of_the_cell() {
        let run = |ttfts: &[f64]| -> Vec<LoadRequest> {
            ttfts
                .iter()
                .map(|t| request(0.0, *t, 10.0, 100.0, true))
                .collect()
        };
        let mut first = run(&[10.0, 20.0, 30.0]);
        first[0].warmup = true; // not measured
        let mut second = run(&[40.0, 50.0]);
        second[1].status = RunStatus::Degraded; // did not finish well
        let mut pool = Pool::default();
        pool.add_run(&first);
        pool.add_run(&second);
        let p = pool.finish(3);
        assert_eq!((p.cell, p.requests, p.runs), (3, 3, 2));
        // 20, 30, 40: the median is 30.
        assert_eq!(p.ttft_ms.p50, Some(30.0));
        assert_eq!(p.e2e_ms.p50, Some(100.0));
    }

    /// A closed loop swept over its users is a sweep too: the same server saturating at 4
    /// users gives the knee at 4 users, and its cells group apart from a rate sweep's.
    #[test]
    fn a_concurrency_axis_is_a_sweep_of_its_own() {
        let cell = |axis: &str, v: f64| {
            let mut m = serde_json::Map::new();
            m.insert(axis.into(), v.into());
            m
        };
        let params = [
            cell("concurrency", 1.0),
            cell("concurrency", 2.0),
            cell("concurrency", 4.0),
            cell("concurrency", 8.0),
            cell("rate", 1.0),
            cell("rate", 2.0),
        ];
        let refs: Vec<(usize, &serde_json::Map<String, Value>)> =
            params.iter().enumerate().collect();
        let by_cell: BTreeMap<usize, Vec<SweepRun>> = [
            runs(1.0, 100.0, 0.1),
            runs(2.0, 105.0, 0.12),
            runs(4.0, 110.0, 0.2),
            runs(5.0, 2000.0, 4.0),
            runs(1.0, 100.0, 0.1),
            runs(2.0, 100.0, 0.1),
        ]
        .into_iter()
        .enumerate()
        .collect();
        let found = sweeps(&refs, &by_cell, false);
        assert_eq!(found.len(), 2);
        let users = found.iter().find(|s| s.axis == "concurrency").unwrap();
        assert_eq!(users.rates, [1.0, 2.0, 4.0, 8.0]);
        assert_eq!(users.knee_rate.value, Some(4.0));
        assert!(users.max_rate_at_slo.is_none(), "no SLO, no rate at it");
        let rate = found.iter().find(|s| s.axis == "rate").unwrap();
        assert_eq!(rate.cells, [4, 5]);
    }

    #[test]
    fn a_server_that_keeps_up_has_no_knee_and_meets_the_slo_everywhere() {
        let sweep = vec![
            (1.0, runs(1.0, 100.0, 0.1)),
            (2.0, runs(2.0, 101.0, 0.1)),
            (4.0, runs(4.0, 103.0, 0.2)),
        ];
        assert_eq!(knee(&sweep), None);
        assert_eq!(max_rate_at_slo(&sweep), (Some(4.0), true));
        let failing = vec![(1.0, runs(1.0, 900.0, 2.0)), (2.0, runs(2.0, 950.0, 3.0))];
        assert_eq!(max_rate_at_slo(&failing), (None, false));
    }
}
