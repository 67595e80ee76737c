//! Comparing two samples: Welch's t-test, the ratio of means with a confidence interval from
//! Welch's t on log values, Hedges' g, Mann-Whitney U, Holm's correction, and the verdict rules.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn var(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64
}

/// Welch's view of mean(a) - mean(b): (difference, its standard error, Welch-Satterthwaite
/// degrees of freedom; NaN when neither side varies). Needs n >= 2 per side.
fn welch_parts(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (va, vb) = (var(a) / a.len() as f64, var(b) / b.len() as f64);
    let se2 = va + vb;
    let df = se2 * se2 / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    Some((mean(a) - mean(b), se2.sqrt(), df))
}

/// Welch's unequal-variance t-test: (t, degrees of freedom, two-sided p). Needs n >= 2 per
/// side and some variation.
pub fn welch_t(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    let (d, se, df) = welch_parts(a, b)?;
    if se == 0.0 {
        return None;
    }
    let t = d / se;
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some((t, df, 2.0 * dist.cdf(-t.abs())))
}

/// Hedges' g: Cohen's d with the pooled standard deviation, times the small-sample correction
/// J = 1 - 3 / (4 (na + nb) - 9).
pub fn hedges_g(a: &[f64], b: &[f64]) -> Option<f64> {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let pooled = (((na - 1.0) * var(a) + (nb - 1.0) * var(b)) / (na + nb - 2.0)).sqrt();
    if pooled == 0.0 {
        return None;
    }
    Some((1.0 - 3.0 / (4.0 * (na + nb) - 9.0)) * (mean(a) - mean(b)) / pooled)
}

/// Mann-Whitney U of `a` and the two-sided p-value from the normal approximation with tie and
/// continuity corrections (scipy's `method="asymptotic"`). statrs' exact p-value is wrong when
/// the first sample is the lower one, so it is not used.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (na, nb) = (a.len(), b.len());
    if na == 0 || nb == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|x| (*x, true))
        .chain(b.iter().map(|x| (*x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let tied = (j - i + 1) as f64;
        tie_term += tied * tied * tied - tied;
        rank_sum_a += all[i..=j].iter().filter(|(_, in_a)| *in_a).count() as f64 * rank;
        i = j + 1;
    }
    let (na, nb) = (na as f64, nb as f64);
    let u = rank_sum_a - na * (na + 1.0) / 2.0;
    let n = na + nb;
    let mu = na * nb / 2.0;
    let sigma = (na * nb / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    if sigma == 0.0 {
        return Some((u, 1.0));
    }
    let z = ((u - mu).abs() - 0.5) / sigma;
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some((u, (2.0 * (1.0 - normal.cdf(z.max(0.0)))).min(1.0)))
}

/// Mann-Whitney U of `a` and its two-sided p-value: exact (the null distribution counted,
/// scipy's `method="exact"`) when no value is tied and the samples are small enough to count,
/// else the normal approximation of [`mann_whitney_u`]. At 5 runs per arm the approximation
/// is off by a factor of about 1.5 (0.0122 for an exact 0.0079).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (u, asymptotic) = mann_whitney_u(a, b)?;
    let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
    all.sort_by(f64::total_cmp);
    let tied = all.windows(2).any(|w| w[0] == w[1]);
    let exact = (!tied)
        .then(|| super::interval::mann_whitney_exact_p(u, a.len(), b.len()))
        .flatten();
    Some((u, exact.unwrap_or(asymptotic)))
}

/// Holm's step-down adjustment of a family of p-values, returned in the input order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// What a comparison lets a report say.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The 95% CI of the ratio excludes 1.
    Higher,
    Lower,
    /// The CI includes 1: "not detectable at n=k".
    NotDetectable {
        n: usize,
    },
    /// No interval: too few runs, or values a log cannot take.
    Insufficient {
        reason: String,
    },
}

/// A vs B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub n_a: usize,
    pub n_b: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// mean(a) / mean(b).
    pub ratio_of_means: f64,
    /// exp(mean(log a) - mean(log b)): the ratio the interval below belongs to.
    pub ratio: Option<f64>,
    pub ratio_ci_low: Option<f64>,
    pub ratio_ci_high: Option<f64>,
    pub welch_t: Option<f64>,
    pub welch_df: Option<f64>,
    pub p_value: Option<f64>,
    pub hedges_g: Option<f64>,
    /// Mann-Whitney (U, p), only with at least 4 runs per arm.
    pub mann_whitney: Option<(f64, f64)>,
    pub verdict: Verdict,
    pub warnings: Vec<String>,
}

impl Comparison {
    /// One line for a report: "+15.2% [+11.0%, +19.6%]" or "not detectable at n=3". The
    /// change is the geometric-mean ratio's, the one its interval belongs to (the ratio of
    /// arithmetic means can fall outside it when one arm has an outlier).
    pub fn sentence(&self) -> String {
        let pct = |r: f64| format!("{:+.1}%", (r - 1.0) * 100.0);
        match (
            &self.verdict,
            self.ratio,
            self.ratio_ci_low,
            self.ratio_ci_high,
        ) {
            (Verdict::Higher | Verdict::Lower, Some(r), Some(lo), Some(hi)) => {
                format!("{} [95% CI {}, {}]", pct(r), pct(lo), pct(hi))
            }
            (Verdict::NotDetectable { n }, ..) => format!("not detectable at n={n}"),
            (Verdict::Insufficient { reason }, ..) => reason.clone(),
            _ => "no interval".into(),
        }
    }
}

/// Compares two samples of a positive metric (throughput, latency).
pub fn compare(a: &[f64], b: &[f64]) -> Comparison {
    let (n_a, n_b) = (a.len(), b.len());
    let mut warnings = Vec::new();
    if n_a < 3 || n_b < 3 {
        warnings.push(format!(
            "low n: {n_a} vs {n_b} runs (at least 3 per arm recommended)"
        ));
    }
    let positive = a.iter().chain(b).all(|x| *x > 0.0);
    let la: Vec<f64> = a.iter().map(|x| x.ln()).collect();
    let lb: Vec<f64> = b.iter().map(|x| x.ln()).collect();
    let interval = match welch_parts(&la, &lb) {
        None => Err("too few runs to compare (at least 2 per arm)"),
        Some(_) if !positive => Err("values are not all positive: no ratio on a log scale"),
        // Neither arm varies: the ratio is exact and the interval has no width.
        Some((d, 0.0, _)) => {
            warnings.push("no variation within either arm: the interval has no width".into());
            Ok((d.exp(), d.exp(), d.exp()))
        }
        Some((d, se, df)) => match StudentsT::new(0.0, 1.0, df) {
            Ok(t) => {
                let q = t.inverse_cdf(0.975);
                Ok((d.exp(), (d - q * se).exp(), (d + q * se).exp()))
            }
            Err(_) => Err("no interval: the degrees of freedom are undefined"),
        },
    };
    let verdict = match interval {
        Err(reason) => Verdict::Insufficient {
            reason: reason.into(),
        },
        Ok((_, low, _)) if low > 1.0 => Verdict::Higher,
        Ok((_, _, high)) if high < 1.0 => Verdict::Lower,
        Ok(_) => Verdict::NotDetectable { n: n_a.min(n_b) },
    };
    let (ratio, lo, hi) =
        interval.map_or((None, None, None), |(r, l, h)| (Some(r), Some(l), Some(h)));
    let welch = welch_t(a, b);
    Comparison {
        n_a,
        n_b,
        mean_a: if n_a > 0 { mean(a) } else { f64::NAN },
        mean_b: if n_b > 0 { mean(b) } else { f64::NAN },
        ratio_of_means: mean(a) / mean(b),
        ratio,
        ratio_ci_low: lo,
        ratio_ci_high: hi,
        welch_t: welch.map(|w| w.0),
        welch_df: welch.map(|w| w.1),
        p_value: welch.map(|w| w.2),
        hedges_g: hedges_g(a, b),
        mann_whitney: (n_a >= 4 && n_b >= 4).then(|| mann_whitney(a, b)).flatten(),
        verdict,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Equal log means (integer metrics sorted alike) give a ratio of 1 with a finite interval,
    // not 0/0. Reference (numpy/scipy): se 0.0074238, df 4, t(0.975, 4) 2.7764451, so the
    // interval is [0.9795991, 1.0208258].
    #[test]
    fn equal_log_means_give_a_finite_interval_around_one() {
        let c = compare(&[63.0, 64.0, 64.0], &[64.0, 64.0, 63.0]);
        assert_eq!(c.ratio, Some(1.0));
        let (lo, hi) = (c.ratio_ci_low.unwrap(), c.ratio_ci_high.unwrap());
        assert!((lo - 0.9795991).abs() < 1e-7, "{lo}");
        assert!((hi - 1.0208258).abs() < 1e-7, "{hi}");
        assert_eq!(c.verdict, Verdict::NotDetectable { n: 3 });
    }

    // Arms without variation have an exact ratio: a verdict, with a warning, not "too few runs".
    #[test]
    fn constant_arms_compare_exactly() {
        let c = compare(&[64.0; 5], &[32.0; 5]);
        for bound in [c.ratio, c.ratio_ci_low, c.ratio_ci_high] {
            assert!((bound.unwrap() - 2.0).abs() < 1e-12, "{bound:?}");
        }
        assert_eq!(c.verdict, Verdict::Higher);
        assert!(c.warnings.iter().any(|w| w.contains("no variation")));
        assert_eq!(c.sentence(), "+100.0% [95% CI +100.0%, +100.0%]");
    }

    // Why there is no interval is said as it is.
    #[test]
    fn no_interval_says_why() {
        let negative = compare(&[-1.0, 0.5, 0.7], &[0.2, 0.3, 0.4]);
        assert!(
            negative.sentence().contains("not all positive"),
            "{}",
            negative.sentence()
        );
        let single = compare(&[1.0], &[2.0, 3.0]);
        assert!(
            single.sentence().contains("too few runs"),
            "{}",
            single.sentence()
        );
    }

    // The stated change is the one the interval belongs to. One outlier in B pulls its
    // arithmetic mean above A's; the geometric-mean ratio and its interval stay above 1.
    #[test]
    fn the_sentence_states_the_ratio_its_interval_belongs_to() {
        let a: Vec<f64> = (0..50).map(|i| 100.0 + (i % 5) as f64).collect();
        let mut b: Vec<f64> = (0..50).map(|i| 80.0 + (i % 5) as f64).collect();
        b[0] = 2000.0;
        let c = compare(&a, &b);
        assert!(c.ratio_of_means < 1.0 && c.ratio.unwrap() > 1.0);
        assert!(c.ratio_ci_low.unwrap() <= c.ratio.unwrap());
        assert!(c.sentence().starts_with('+'), "{}", c.sentence());
    }
}
