//! Describing one sample: summary statistics, Student-t confidence interval, percentiles and
//! median/MAD outliers.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

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

/// Indices of outliers by the modified z-score |0.6745 (x - median) / MAD| > 3.5
/// (Iglewicz and Hoaglin; hyperfine uses the same rule). Flagged, never dropped.
pub fn mad_outliers(data: &[f64]) -> Vec<usize> {
    let Some(median) = percentile(data, 50.0) else {
        return Vec::new();
    };
    let deviations: Vec<f64> = data.iter().map(|x| (x - median).abs()).collect();
    let mad = percentile(&deviations, 50.0).unwrap_or(0.0);
    if mad == 0.0 {
        return Vec::new();
    }
    data.iter()
        .enumerate()
        .filter(|(_, x)| (0.6745 * (*x - median) / mad).abs() > 3.5)
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
}

/// Summary of the finite values in `data`; `None` when there are none.
pub fn summarize(data: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = data.iter().copied().filter(|x| x.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    let half = t_ci_half_width(std, n, 0.95).unwrap_or(f64::NAN);
    Some(Summary {
        n,
        mean,
        median: percentile_sorted(&sorted, 50.0)?,
        std,
        cv: std / mean,
        min: sorted[0],
        max: sorted[n - 1],
        p95: percentile_sorted(&sorted, 95.0)?,
        p99: percentile_sorted(&sorted, 99.0)?,
        ci_low: mean - half,
        ci_high: mean + half,
        outliers: mad_outliers(&sorted).len(),
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
}
