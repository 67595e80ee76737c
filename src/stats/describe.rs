//! Describing one sample: summary statistics, Student-t confidence interval, percentiles and
//! median/MAD outliers.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::interval::{Scale, mean_interval, mean_interval_on};

/// Percentile `p` (0..=100) of already sorted data, interpolating linearly between the two
/// nearest ranks (numpy's default "linear" method). `None` for empty input.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let (first, last) = (sorted.first()?, sorted.last()?);
    if sorted.len() == 1 || p <= 0.0 {
        return Some(*first);
    }
    if p >= 100.0 {
        return Some(*last);
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[(lo + 1).min(sorted.len() - 1)] - sorted[lo]) * frac)
}

/// Percentile of unsorted data (sorts a copy; NaNs sort last).
pub fn percentile(data: &[f64], p: f64) -> Option<f64> {
    let mut sorted = data.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, p)
}

/// Half-width of the two-sided `level` (e.g. 0.95) Student-t confidence interval of the mean.
/// `None` below two observations or with zero spread information.
pub fn t_ci_half_width(std: f64, n: usize, level: f64) -> Option<f64> {
    if n < 2 || !std.is_finite() {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .ok()?
        .inverse_cdf(0.5 + level / 2.0);
    Some(t * std / (n as f64).sqrt())
}

/// The outlier rule, hyperfine's (DESIGN.md): a value lies more than 10 robust standard
/// deviations from the median, |x - median| / MAD > 10 x 1.4826 (1.4826 MAD estimates the
/// standard deviation of normal data). `deviation` is |x - median|. A MAD of zero (most values
/// equal) becomes the smallest positive float, so any value off the common one is flagged
/// rather than none.
fn is_mad_outlier(deviation: f64, mad: f64) -> bool {
    const ROBUST_SDS: f64 = 10.0 * 1.4826;
    deviation / mad.max(f64::EPSILON) > ROBUST_SDS
}

/// Indices of outliers by [`is_mad_outlier`]. Flagged, never dropped.
pub fn mad_outliers(data: &[f64]) -> Vec<usize> {
    let Some(median) = percentile(data, 50.0) else {
        return Vec::new();
    };
    let deviations: Vec<f64> = data.iter().map(|x| (x - median).abs()).collect();
    let mad = percentile(&deviations, 50.0).unwrap_or(0.0);
    data.iter()
        .enumerate()
        .filter(|(_, x)| is_mad_outlier((*x - median).abs(), mad))
        .map(|(i, _)| i)
        .collect()
}

/// Descriptive statistics of one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// Sample standard deviation (n - 1); NaN for n < 2.
    pub std: f64,
    /// std / mean.
    pub cv: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
    pub p99: f64,
    /// 95% Student-t interval of the mean; NaN for n < 2.
    pub ci_low: f64,
    pub ci_high: f64,
    pub outliers: usize,
    /// The point the interval is centred on: the arithmetic mean on the linear scale, the
    /// geometric mean on the log scale, the logistic of the mean logit on the logit scale.
    pub center: f64,
    /// The independent units behind the spread and the interval: runs. Equal to `n` where
    /// each run gives one value; fewer where a run gives one per agent.
    pub runs: usize,
    /// The scale the interval was taken on.
    pub scale: Scale,
}

/// Summary of the finite values in `data`; `None` when there are none.
pub fn summarize(data: &[f64]) -> Option<Summary> {
    let mut values: Vec<f64> = data.iter().copied().filter(|x| x.is_finite()).collect();
    summarize_in_place(&mut values)
}

/// Summary of `values`, which must all be finite, reordering them instead of copying:
/// order statistics come from selection (linear time) rather than a sort, which is what keeps
/// the analysis of a million runs fast. Sums run in the given order, so the same values in the
/// same order give bit-identical results. `None` when empty.
pub fn summarize_in_place(values: &mut [f64]) -> Option<Summary> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = compensated_sum(values.iter().copied()) / n as f64;
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    let std = if n > 1 {
        (compensated_sum(values.iter().map(|x| (x - mean) * (x - mean))) / (n - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    let [median, p95, p99] = select_percentiles(values, [50.0, 95.0, 99.0]);
    // Absolute deviations replace the values (no longer needed); their median is the MAD.
    for x in values.iter_mut() {
        *x = (*x - median).abs();
    }
    let [mad] = select_percentiles(values, [50.0]);
    let outliers = values.iter().filter(|d| is_mad_outlier(**d, mad)).count();
    let half = t_ci_half_width(std, n, 0.95).unwrap_or(f64::NAN);
    Some(Summary {
        n,
        mean,
        median,
        std,
        cv: std / mean,
        min,
        max,
        p95,
        p99,
        ci_low: mean - half,
        ci_high: mean + half,
        outliers,
        center: mean,
        runs: n,
        scale: Scale::Linear,
    })
}

/// Spread and interval over runs, the replication unit (see [`with_run_spread`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpread {
    pub runs: usize,
    pub std: f64,
    pub cv: f64,
    /// The point the interval is centred on (the geometric mean on the log scale).
    pub center: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub scale: Scale,
}

/// The spread (std, CV) and 95% interval of `runs`, one value per independent run, on
/// `scale`. A log-scale metric with a zero among its runs (a count, a gap) gets the linear
/// interval with its lower bound held at zero, the bound of the quantity; runs that all have
/// one value get that value as both bounds.
pub fn run_spread(runs: &[f64], scale: Scale) -> RunSpread {
    let n = runs.len();
    let mean = if n > 0 {
        compensated_sum(runs.iter().copied()) / n as f64
    } else {
        f64::NAN
    };
    let (std, cv) = if n > 1 {
        let std =
            (compensated_sum(runs.iter().map(|x| (x - mean) * (x - mean))) / (n - 1) as f64).sqrt();
        (std, std / mean)
    } else {
        (f64::NAN, f64::NAN)
    };
    let constant = runs.windows(2).all(|w| w[0] == w[1]);
    let (interval, scale) = match scale {
        _ if constant && n > 1 => (
            Some(super::interval::Interval {
                center: runs[0],
                low: runs[0],
                high: runs[0],
            }),
            scale,
        ),
        Scale::Log if runs.iter().any(|v| *v <= 0.0) => (
            mean_interval(runs, Scale::Linear, 0.95).map(|i| super::interval::Interval {
                low: i.low.max(0.0),
                ..i
            }),
            Scale::Linear,
        ),
        _ => match mean_interval_on(runs, scale, 0.95) {
            Some((i, used)) => (Some(i), used),
            None => (None, scale),
        },
    };
    RunSpread {
        runs: n,
        std,
        cv,
        center: interval.map_or(mean, |i| i.center),
        ci_low: interval.map_or(f64::NAN, |i| i.low),
        ci_high: interval.map_or(f64::NAN, |i| i.high),
        scale,
    }
}

/// `summary` with its spread, centre and interval from `spread`.
pub fn with_spread(mut summary: Summary, spread: RunSpread) -> Summary {
    summary.runs = spread.runs;
    summary.std = spread.std;
    summary.cv = spread.cv;
    summary.center = spread.center;
    summary.ci_low = spread.ci_low;
    summary.ci_high = spread.ci_high;
    summary.scale = spread.scale;
    summary
}

/// `summary` with its spread (std, CV) and its 95% interval taken from `runs`, one value per
/// independent run, on `scale`: the run is the replication unit, so the requests of one
/// multi-agent run, which share its contention, do not count as replicates.
pub fn with_run_spread(summary: Summary, runs: &[f64], scale: Scale) -> Summary {
    with_spread(summary, run_spread(runs, scale))
}

/// Neumaier's compensated sum: a plain running sum of 100,000 copies of 1.2 is off in the
/// 12th digit, enough to give a constant metric a non-zero standard deviation.
fn compensated_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut compensation) = (0.0_f64, 0.0_f64);
    for x in values {
        let t = sum + x;
        compensation += if sum.abs() >= x.abs() {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
    }
    sum + compensation
}

/// Percentiles (ascending, strictly between 0 and 100) of non-empty finite `values`, with the
/// same linear interpolation as [`percentile_sorted`] and bit-identical results, found by
/// selection: each one narrows the part of `values` left to search.
fn select_percentiles<const K: usize>(values: &mut [f64], ps: [f64; K]) -> [f64; K] {
    let n = values.len();
    // values[..placed] hold the smallest `placed` values, and values[placed - 1] is in its
    // sorted position (the last one selected).
    let mut placed = 0;
    ps.map(|p| {
        let rank = p / 100.0 * (n - 1) as f64;
        let lo = rank.floor() as usize;
        let frac = rank - lo as f64;
        if lo >= placed {
            values[placed..].select_nth_unstable_by(lo - placed, f64::total_cmp);
            placed = lo + 1;
        }
        let at = values[lo];
        if lo + 1 >= n {
            return at;
        }
        // The next order statistic is the smallest of what lies above.
        let next = values[lo + 1..]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        at + (next - at) * frac
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear_percentiles() {
        // numpy.percentile([1, 2, 3, 4, 10], [50, 95, 99, 25]) -> 3.0, 8.8, 9.76, 2.0
        let data = [10.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&data, 50.0), Some(3.0));
        assert!((percentile(&data, 95.0).unwrap() - 8.8).abs() < 1e-12);
        assert!((percentile(&data, 99.0).unwrap() - 9.76).abs() < 1e-12);
        assert_eq!(percentile(&data, 25.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    // hyperfine's rule, worked by hand: in [10, 11, 12, 13, 50] the median is 12 and the MAD 1,
    // so only 50 (38 MADs away) lies beyond 14.826 MADs; 26 in [10, 11, 12, 13, 26] (14 MADs)
    // does not. With most values equal the MAD is 0 and any other value is flagged.
    #[test]
    fn outliers_follow_hyperfines_rule() {
        assert_eq!(mad_outliers(&[10.0, 11.0, 12.0, 13.0, 50.0]), [4]);
        assert!(mad_outliers(&[10.0, 11.0, 12.0, 13.0, 26.0]).is_empty());
        assert_eq!(mad_outliers(&[64.0, 64.0, 64.0, 64.0, 3.0]), [4]);
        assert_eq!(
            summarize(&[64.0, 64.0, 64.0, 64.0, 3.0]).unwrap().outliers,
            1
        );
        assert!(mad_outliers(&[5.0; 4]).is_empty());
    }

    #[test]
    fn a_constant_sample_has_its_value_as_mean_and_no_spread() {
        let s = summarize(&vec![1.2; 100_000]).unwrap();
        assert_eq!(s.mean, 1.2);
        assert_eq!(s.std, 0.0);
    }

    // Selection must give exactly what sorting gives, on awkward shapes: ties, sizes where
    // the ranks coincide, and runs where the next order statistic is a duplicate.
    #[test]
    fn selection_agrees_with_sorting_bit_for_bit() {
        let mut state = 0x2545f4914f6cdd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in (1..40).chain([99, 100, 101, 1000, 1001]) {
            for ties in [false, true] {
                let data: Vec<f64> = (0..n)
                    .map(|_| {
                        let x = next();
                        if ties {
                            (x % 7) as f64
                        } else {
                            (x % 100_000) as f64 / 7.0
                        }
                    })
                    .collect();
                let mut sorted = data.clone();
                sorted.sort_by(f64::total_cmp);
                let s = summarize(&data).unwrap();
                for (got, p) in [(s.median, 50.0), (s.p95, 95.0), (s.p99, 99.0)] {
                    let want = percentile_sorted(&sorted, p).unwrap();
                    assert_eq!(got.to_bits(), want.to_bits(), "n={n} ties={ties} p={p}");
                }
                assert_eq!(s.min, sorted[0]);
                assert_eq!(s.max, sorted[n - 1]);
                assert_eq!(s.outliers, mad_outliers(&data).len(), "n={n} ties={ties}");
            }
        }
    }
}
