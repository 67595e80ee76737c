//! Intervals that respect what a quantity can be. A throughput or a latency is positive, an
//! efficiency or a quality score lies in [0, 1], a rate of events is a proportion: a Student-t
//! interval on the raw values can cross those bounds at small n (4 runs on a busy machine gave
//! decode throughput 39.6 [-28.6, 107.8] tok/s, an efficiency 99.7% [99.2%, 100.2%]). So the
//! t interval is taken where the quantity is unbounded: on the log scale for positive values
//! (an interval for the geometric mean), on the logit scale for fractions, and Wilson's score
//! interval for a count of events out of trials. Definitions: docs/metrics.md.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// The scale on which a metric's mean gets its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Any real value (overheads, differences): the plain t interval of the mean.
    Linear,
    /// Positive values (throughput, latency, memory): the t interval of mean(ln x),
    /// back-transformed: an interval for the geometric mean, never below zero.
    Log,
    /// Fractions in [0, 1] (efficiencies, scores): the t interval of mean(logit x),
    /// back-transformed, never outside [0, 1].
    Logit,
}

/// A two-sided interval and the point it is centred on, on the original scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The back-transformed mean of the transformed values: the arithmetic mean (linear),
    /// the geometric mean (log), the logistic of the mean logit (logit).
    pub center: f64,
    pub low: f64,
    pub high: f64,
}

fn t_quantile(df: f64, level: f64) -> Option<f64> {
    Some(
        StudentsT::new(0.0, 1.0, df)
            .ok()?
            .inverse_cdf(0.5 + level / 2.0),
    )
}

fn mean_and_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The two-sided `level` interval of the mean of `values` on `scale`. `None` below two
/// values, or when a value lies outside the scale's domain (a non-positive value on the log
/// scale, one outside [0, 1] on the logit scale): such a metric is not what its scale says.
///
/// Fractions of exactly 0 or 1 (a perfect score, no contention) have no logit. Squeezing them
/// inwards would move them by up to 1/(2n) of the range, enough at 3 to 5 runs to put the
/// interval beside the data, so such samples get the linear t interval clipped to [0, 1]
/// instead, reported as `Linear` (`mean_interval_on` says which scale was used).
pub fn mean_interval(values: &[f64], scale: Scale, level: f64) -> Option<Interval> {
    mean_interval_on(values, scale, level).map(|(i, _)| i)
}

/// [`mean_interval`] and the scale it was taken on.
pub fn mean_interval_on(values: &[f64], scale: Scale, level: f64) -> Option<(Interval, Scale)> {
    let n = values.len();
    if n < 2 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let t = t_quantile((n - 1) as f64, level)?;
    let half = |sd: f64| t * sd / (n as f64).sqrt();
    // Mean and sd of the transformed values without a copy: a million-run cell would
    // otherwise allocate its values again per metric.
    // Welford's one pass: each value transformed once (a logarithm per value per metric is
    // a real cost on a million runs), numerically stable.
    let moments = |f: &dyn Fn(f64) -> f64| {
        let (mut mean, mut m2) = (0.0_f64, 0.0_f64);
        for (k, v) in values.iter().enumerate() {
            let x = f(*v);
            let delta = x - mean;
            mean += delta / (k + 1) as f64;
            m2 += delta * (x - mean);
        }
        (mean, (m2 / (n - 1) as f64).sqrt())
    };
    match scale {
        Scale::Linear => {
            let (m, sd) = moments(&|v| v);
            Some((
                Interval {
                    center: m,
                    low: m - half(sd),
                    high: m + half(sd),
                },
                Scale::Linear,
            ))
        }
        Scale::Log => {
            if values.iter().any(|v| *v <= 0.0) {
                return None;
            }
            let (m, sd) = moments(&f64::ln);
            Some((
                Interval {
                    center: m.exp(),
                    low: (m - half(sd)).exp(),
                    high: (m + half(sd)).exp(),
                },
                Scale::Log,
            ))
        }
        Scale::Logit => {
            if values.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return None;
            }
            if values.iter().any(|v| *v == 0.0 || *v == 1.0) {
                let (m, sd) = moments(&|v| v);
                return Some((
                    Interval {
                        center: m,
                        low: (m - half(sd)).max(0.0),
                        high: (m + half(sd)).min(1.0),
                    },
                    Scale::Linear,
                ));
            }
            let (m, sd) = moments(&logit);
            Some((
                Interval {
                    center: logistic(m),
                    low: logistic(m - half(sd)),
                    high: logistic(m + half(sd)),
                },
                Scale::Logit,
            ))
        }
    }
}

/// Wilson's score interval for a proportion: `events` out of `trials`, at `level`. Stays in
/// [0, 1] and is sensible at 0 and at `trials` events, where the Wald interval collapses.
pub fn wilson(events: u64, trials: u64, level: f64) -> Option<(f64, f64)> {
    if trials == 0 || events > trials {
        return None;
    }
    let z = Normal::standard().inverse_cdf(0.5 + level / 2.0);
    let (k, n) = (events as f64, trials as f64);
    let p = k / n;
    let z2 = z * z;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At the edges the formula gives exactly 0 or 1, up to rounding.
    let low = if events == 0 { 0.0 } else { center - half };
    let high = if events == trials { 1.0 } else { center + half };
    Some((low, high))
}

/// The ratio estimator R = sum(y) / sum(x) over units (runs): total tokens over total time,
/// for instance, rather than the mean of each run's rate, which overweights short runs. Its
/// interval comes from the linearised variance, var(R) = sum (y_i - R x_i)^2 / (n (n - 1)
/// mean(x)^2), with a t quantile on n - 1 degrees of freedom, taken on the log scale so that
/// a positive ratio keeps a positive lower bound. Needs positive sums and n >= 2 units.
pub fn ratio_estimate(y: &[f64], x: &[f64], level: f64) -> Option<Interval> {
    let n = y.len();
    if n < 2 || x.len() != n || y.iter().chain(x).any(|v| !v.is_finite()) {
        return None;
    }
    let (sy, sx): (f64, f64) = (y.iter().sum(), x.iter().sum());
    if sy <= 0.0 || sx <= 0.0 {
        return None;
    }
    let r = sy / sx;
    let nf = n as f64;
    let mean_x = sx / nf;
    let residuals: f64 = y.iter().zip(x).map(|(y, x)| (y - r * x).powi(2)).sum();
    let se = (residuals / (nf * (nf - 1.0))).sqrt() / mean_x;
    let t = t_quantile(nf - 1.0, level)?;
    // Delta method on ln R: se(ln R) = se(R) / R.
    let half = t * se / r;
    Some(Interval {
        center: r,
        low: r * (-half).exp(),
        high: r * half.exp(),
    })
}

/// The exact two-sided p-value of the Mann-Whitney U statistic `u` of samples of sizes `m`
/// and `n` without ties (scipy's `method="exact"`): twice the smaller tail of U's null
/// distribution, capped at 1. The distribution is counted by the recurrence
/// f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u). `None` when it would be too large to count
/// (m n > 10,000) or `u` is not a possible value.
pub fn mann_whitney_exact_p(u: f64, m: usize, n: usize) -> Option<f64> {
    if m == 0 || n == 0 || m * n > 10_000 || u < 0.0 || u > (m * n) as f64 || u.fract() != 0.0 {
        return None;
    }
    let max = m * n;
    // counts[j][u]: arrangements of i values of the first sample and j of the second with
    // U = u, built up row by row over i.
    let mut counts: Vec<Vec<f64>> = (0..=n)
        .map(|_| {
            let mut c = vec![0.0; max + 1];
            c[0] = 1.0;
            c
        })
        .collect();
    for i in 1..=m {
        let mut next: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n + 1];
        next[0][0] = 1.0;
        for j in 1..=n {
            for v in 0..=i * j {
                // The largest value belongs to the first sample (it beats all j of the
                // second: U grows by j) or to the second (U unchanged).
                let first = if v >= j { counts[j][v - j] } else { 0.0 };
                next[j][v] = first + next[j - 1][v];
            }
        }
        counts = next;
    }
    let dist = &counts[n];
    let total: f64 = dist.iter().sum();
    let u = u as usize;
    let lower: f64 = dist[..=u].iter().sum::<f64>() / total;
    let upper: f64 = dist[u..].iter().sum::<f64>() / total;
    Some((2.0 * lower.min(upper)).min(1.0))
}

/// A paired comparison of `a` and `b` by block (the repetition, when runs are interleaved):
/// the t interval of the mean log ratio ln(a_i / b_i), back-transformed, its two-sided p, and
/// how much of the spread the blocks explain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedRatio {
    pub pairs: usize,
    /// exp(mean ln(a_i / b_i)): the ratio of geometric means within blocks.
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p: f64,
    /// 1 - var(ln a - ln b) / (var(ln a) + var(ln b)): the share of the two arms' variance
    /// that moves with the block (0 when blocks do not matter, near 1 when a block's runs are
    /// all fast or all slow together). Pairing helps exactly when it is positive.
    pub block_share: f64,
}

/// [`PairedRatio`] of positive values paired by index. `None` below two pairs or when a log
/// ratio does not vary.
pub fn paired_log_ratio(a: &[f64], b: &[f64], level: f64) -> Option<PairedRatio> {
    let n = a.len();
    if n < 2 || b.len() != n || a.iter().chain(b).any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    let (la, lb): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|v| v.ln()).collect(),
        b.iter().map(|v| v.ln()).collect(),
    );
    let d: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x - y).collect();
    let (m, sd) = mean_and_sd(&d);
    if sd == 0.0 {
        return None;
    }
    let df = (n - 1) as f64;
    let se = sd / (n as f64).sqrt();
    let t = t_quantile(df, level)?;
    let stat = m / se;
    let p = 2.0 * StudentsT::new(0.0, 1.0, df).ok()?.cdf(-stat.abs());
    let (_, sa) = mean_and_sd(&la);
    let (_, sb) = mean_and_sd(&lb);
    let arms = sa * sa + sb * sb;
    Some(PairedRatio {
        pairs: n,
        ratio: m.exp(),
        ci_low: (m - t * se).exp(),
        ci_high: (m + t * se).exp(),
        p,
        block_share: if arms > 0.0 {
            1.0 - sd * sd / arms
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_scales_never_cross_their_bounds() {
        // The busy-machine throughput: 75 and 1.5 tok/s alternating.
        let tput = [75.0, 1.5, 75.0, 1.5];
        let linear = mean_interval(&tput, Scale::Linear, 0.95).unwrap();
        assert!(linear.low < 0.0, "the t interval goes negative: {linear:?}");
        let log = mean_interval(&tput, Scale::Log, 0.95).unwrap();
        assert!(log.low > 0.0 && log.high > 75.0, "{log:?}");
        let eff = [0.999, 0.995, 0.998, 0.9995];
        let e = mean_interval(&eff, Scale::Logit, 0.95).unwrap();
        assert!(e.high < 1.0 && e.low > 0.99, "{e:?}");
        let perfect = mean_interval(&[1.0, 1.0, 1.0], Scale::Logit, 0.95).unwrap();
        assert!(perfect.high == 1.0 && perfect.low == 1.0, "{perfect:?}");
        // Values at a bound: the clipped linear interval, which holds the mean (a squeeze
        // towards the middle would give [82.1%, 84.0%] for a mean of 99.7%).
        let (near, used) = mean_interval_on(&[1.0, 1.0, 0.99], Scale::Logit, 0.95).unwrap();
        assert_eq!(used, Scale::Linear);
        assert!(near.low < 0.9967 && near.high == 1.0, "{near:?}");
        let (none, _) = mean_interval_on(&[0.0, 0.0, 0.0, 0.1], Scale::Logit, 0.95).unwrap();
        assert!(none.low == 0.0 && none.high > 0.025, "{none:?}");
        assert!(mean_interval(&[1.2, 0.5], Scale::Logit, 0.95).is_none());
        assert!(mean_interval(&[0.0, 2.0], Scale::Log, 0.95).is_none());
        let (lo, hi) = wilson(0, 5, 0.95).unwrap();
        assert!(lo == 0.0 && hi > 0.4 && hi < 0.45, "{hi}");
    }

    #[test]
    fn exact_mann_whitney_small_cases_by_hand() {
        // m = n = 2: U takes 0..=4 with counts 1, 1, 2, 1, 1 (six arrangements).
        assert!((mann_whitney_exact_p(0.0, 2, 2).unwrap() - 2.0 / 6.0).abs() < 1e-12);
        assert!((mann_whitney_exact_p(2.0, 2, 2).unwrap() - 1.0).abs() < 1e-12);
        assert!(mann_whitney_exact_p(0.5, 2, 2).is_none());
    }
}
