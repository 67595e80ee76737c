//! The percentile bootstrap of a figure computed from the means of independent groups (one
//! group: a mean; two: a change, ratio or difference of means).

use rand::{RngExt, SeedableRng};

/// A `level` interval of `figure(group means)`: each group resampled with replacement,
/// independently, `resamples` times, from a seeded stream (the same data give the same
/// interval). None when a group is empty or fewer than half the resamples give a figure.
pub fn bootstrap_means(
    groups: &[&[f64]],
    figure: impl Fn(&[f64]) -> Option<f64>,
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if groups.is_empty() || groups.iter().any(|g| g.is_empty()) {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means = vec![0.0; groups.len()];
    let mut found = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for (mean, group) in means.iter_mut().zip(groups) {
            let sum: f64 = (0..group.len())
                .map(|_| group[rng.random_range(0..group.len())])
                .sum();
            *mean = sum / group.len() as f64;
        }
        if let Some(v) = figure(&means).filter(|v| v.is_finite()) {
            found.push(v);
        }
    }
    if found.len() * 2 < resamples.max(1) {
        return None;
    }
    found.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0 * 100.0;
    Some((
        super::percentile_sorted(&found, tail)?,
        super::percentile_sorted(&found, 100.0 - tail)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // One group: the interval of a mean sits around it, narrows as the data grow, and matches
    // the normal-theory interval of a large sample; the seed fixes it.
    #[test]
    fn the_interval_of_a_mean_behaves() {
        let small: Vec<f64> = (0..10).map(|i| 10.0 + (i % 5) as f64).collect();
        let large: Vec<f64> = (0..1000).map(|i| 10.0 + (i % 5) as f64).collect();
        let mean = |m: &[f64]| Some(m[0]);
        let (lo_s, hi_s) = bootstrap_means(&[&small], mean, 4000, 0.95, 1).unwrap();
        let (lo_l, hi_l) = bootstrap_means(&[&large], mean, 4000, 0.95, 1).unwrap();
        assert!(lo_s < 12.0 && 12.0 < hi_s);
        assert!(hi_l - lo_l < (hi_s - lo_s) / 5.0);
        // sd of 0..4 is sqrt(2); 1.96 sqrt(2 / 1000) = 0.0877.
        let half = (hi_l - lo_l) / 2.0;
        assert!((half - 0.0877).abs() < 0.01, "{half}");
        assert_eq!(
            bootstrap_means(&[&small], mean, 4000, 0.95, 1),
            Some((lo_s, hi_s))
        );
        assert_eq!(bootstrap_means(&[&small, &[]], mean, 100, 0.95, 1), None);
    }

    // Two groups: the interval of a change of means covers the true change.
    #[test]
    fn the_interval_of_a_change_covers_it() {
        let a: Vec<f64> = (0..20).map(|i| 50.0 + (i % 4) as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| 100.0 + (i % 4) as f64).collect();
        let change = |m: &[f64]| Some((m[0] / m[1] - 1.0) * 100.0);
        let (lo, hi) = bootstrap_means(&[&a, &b], change, 2000, 0.95, 7).unwrap();
        let truth = (51.5 / 101.5 - 1.0) * 100.0;
        assert!(lo < truth && truth < hi && hi - lo < 2.0, "[{lo}, {hi}]");
    }
}
