//! Power laws, y = a x^b, fitted by least squares on logarithms: the shape of scaling (decode
//! speed against parameters, say), where the exponent b is the finding and its interval says
//! how well the runs pin it down. Each run is a point, so the interval reflects the spread of
//! repeated runs as well as how far the cells stray from one line.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// A fitted power law and its exponent's interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PowerLaw {
    /// b: the slope of ln y against ln x.
    pub exponent: f64,
    /// The t interval of the exponent at the level asked for (n - 2 degrees of freedom).
    pub exponent_low: f64,
    pub exponent_high: f64,
    /// Its standard error.
    pub exponent_se: f64,
    /// a: y at x = 1.
    pub prefactor: f64,
    /// Of the variance of ln y, the share the line explains.
    pub r_squared: f64,
    /// Points fitted, and how many distinct x among them.
    pub n: usize,
    pub distinct_x: usize,
}

impl PowerLaw {
    /// The fitted y at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.prefactor * x.powf(self.exponent)
    }
}

/// Fits y = a x^b to the points with x > 0 and y > 0 (a logarithm needs both). None with fewer
/// than 3 such points or fewer than 2 distinct x. A constant y is fitted all the same: exponent
/// 0, with an interval of zero width, as the data say.
pub fn power_law(x: &[f64], y: &[f64], level: f64) -> Option<PowerLaw> {
    let points: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(x, y)| x.is_finite() && y.is_finite() && **x > 0.0 && **y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let n = points.len();
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if n < 3 || xs.len() < 2 {
        return None;
    }
    let nf = n as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / nf;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (lx, ly) in &points {
        let (dx, dy) = (lx - mean_x, ly - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    // Residual sum of squares, computed from the residuals (not syy - slope * sxy, which
    // cancels badly when the fit is close).
    let sse: f64 = points
        .iter()
        .map(|(lx, ly)| (ly - intercept - slope * lx).powi(2))
        .sum();
    let se = (sse / (nf - 2.0) / sxx).sqrt();
    let t = StudentsT::new(0.0, 1.0, nf - 2.0)
        .ok()?
        .inverse_cdf(0.5 + level / 2.0);
    Some(PowerLaw {
        exponent: slope,
        exponent_low: slope - t * se,
        exponent_high: slope + t * se,
        exponent_se: se,
        prefactor: intercept.exp(),
        r_squared: if syy > 0.0 { 1.0 - sse / syy } else { 1.0 },
        n,
        distinct_x: xs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Exact power-law data give the exponent exactly and an interval of zero width; points a
    // logarithm cannot take are left out, and too little data gives no fit.
    #[test]
    fn exact_data_and_unusable_points() {
        let x = [1e6, 1e7, 1e8, 1e9, 0.0, -3.0];
        let y: Vec<f64> = x.iter().map(|x: &f64| 5e4 * x.powf(-0.75)).collect();
        let fit = power_law(&x, &y, 0.95).unwrap();
        assert!((fit.exponent + 0.75).abs() < 1e-12, "{fit:?}");
        assert!((fit.exponent_high - fit.exponent_low).abs() < 1e-9);
        assert!((fit.at(1e7) / y[1] - 1.0).abs() < 1e-9);
        assert_eq!((fit.n, fit.distinct_x), (4, 4));
        assert!(power_law(&[1.0, 2.0], &[1.0, 2.0], 0.95).is_none());
        assert!(power_law(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0], 0.95).is_none());
    }
}
