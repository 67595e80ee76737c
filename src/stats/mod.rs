//! Pure statistics: numbers in, numbers out. No I/O, no frames.

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
