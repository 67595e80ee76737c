//! Token lengths of requests: a fixed number, or a seeded draw from a distribution, so that a
//! run's lengths are the same on every machine and every resume. Pure; no I/O.

use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal, Normal, Uniform};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long each request's input (or output) is, in tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Length {
    /// Every request this many tokens.
    Fixed(i64),
    /// A draw per request, rounded to whole tokens and kept within `[min, max]`.
    Drawn(Dist),
}

/// A distribution of lengths. `normal` and `lognormal` take the mean and standard deviation of
/// the lengths themselves (for lognormal the parameters of the underlying normal follow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum Dist {
    Uniform {
        min: i64,
        max: i64,
    },
    Normal {
        mean: f64,
        std: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    Lognormal {
        mean: f64,
        std: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
}

impl Length {
    /// What is wrong with it, if anything (validation names the field).
    pub fn problem(&self) -> Option<String> {
        let bounds = |min: Option<i64>, max: Option<i64>| match (min, max) {
            (Some(lo), _) if lo < 1 => Some(format!("`min` must be at least 1, got {lo}")),
            (Some(lo), Some(hi)) if hi < lo => {
                Some(format!("`max` ({hi}) must not be below `min` ({lo})"))
            }
            (None, Some(hi)) if hi < 1 => Some(format!("`max` must be at least 1, got {hi}")),
            _ => None,
        };
        let shape = |mean: f64, std: f64| {
            if !(mean.is_finite() && mean > 0.0) {
                Some(format!(
                    "`mean` must be a positive number of tokens, got {mean}"
                ))
            } else if !(std.is_finite() && std >= 0.0) {
                Some(format!("`std` must be 0 or more, got {std}"))
            } else {
                None
            }
        };
        match self {
            Length::Fixed(n) if *n < 1 => {
                Some(format!("a length must be at least 1 token, got {n}"))
            }
            Length::Fixed(_) => None,
            Length::Drawn(Dist::Uniform { min, max }) => bounds(Some(*min), Some(*max)),
            Length::Drawn(Dist::Normal {
                mean,
                std,
                min,
                max,
            })
            | Length::Drawn(Dist::Lognormal {
                mean,
                std,
                min,
                max,
            }) => shape(*mean, *std).or_else(|| bounds(*min, *max)),
        }
    }

    /// `n` lengths drawn from `seed` (a fixed length repeated). Assumes `problem()` is None.
    pub fn draw(&self, n: usize, seed: u64) -> Vec<u32> {
        let dist = match self {
            Length::Fixed(k) => return vec![(*k).max(1) as u32; n],
            Length::Drawn(d) => d,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (lo, hi) = match dist {
            Dist::Uniform { min, max } => (*min, *max),
            Dist::Normal { min, max, .. } | Dist::Lognormal { min, max, .. } => {
                (min.unwrap_or(1), max.unwrap_or(i64::from(u32::MAX)))
            }
        };
        let clamp = |x: f64| (x.round() as i64).clamp(lo.max(1), hi.max(1)) as u32;
        match dist {
            Dist::Uniform { min, max } => {
                let u = Uniform::new_inclusive(*min, *max).expect("min <= max, checked");
                (0..n).map(|_| clamp(u.sample(&mut rng) as f64)).collect()
            }
            Dist::Normal { mean, std, .. } => {
                let d = Normal::new(*mean, *std).expect("std >= 0, checked");
                (0..n).map(|_| clamp(d.sample(&mut rng))).collect()
            }
            Dist::Lognormal { mean, std, .. } => {
                // The underlying normal's parameters from the lengths' mean m and std s:
                // sigma^2 = ln(1 + s^2/m^2), mu = ln m - sigma^2 / 2.
                let sigma2 = (1.0 + (std / mean).powi(2)).ln();
                let mu = mean.ln() - sigma2 / 2.0;
                let d = LogNormal::new(mu, sigma2.sqrt()).expect("sigma >= 0, checked");
                (0..n).map(|_| clamp(d.sample(&mut rng))).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Length {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn fixed_and_drawn_lengths_parse_and_draw_within_bounds() {
        assert_eq!(parse("512").draw(3, 1), [512, 512, 512]);
        let u = parse("{dist: uniform, min: 100, max: 200}").draw(2000, 7);
        assert!(u.iter().all(|n| (100..=200).contains(n)));
        assert!(u.contains(&100) && u.contains(&200), "both ends reachable");
        let clipped = parse("{dist: normal, mean: 50, std: 40, min: 10, max: 90}").draw(2000, 7);
        assert!(clipped.iter().all(|n| (10..=90).contains(n)));
    }

    #[test]
    fn lognormal_lengths_have_the_mean_and_spread_asked_for() {
        let v = parse("{dist: lognormal, mean: 400, std: 200}").draw(40_000, 3);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((mean / 400.0 - 1.0).abs() < 0.02, "mean {mean}");
        assert!(
            (var.sqrt() / 200.0 - 1.0).abs() < 0.05,
            "std {}",
            var.sqrt()
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_lengths() {
        let l = parse("{dist: normal, mean: 256, std: 64}");
        assert_eq!(l.draw(100, 9), l.draw(100, 9));
        assert_ne!(l.draw(100, 9), l.draw(100, 10));
    }

    #[test]
    fn bad_lengths_are_named() {
        for (yaml, says) in [
            ("0", "at least 1 token"),
            (
                "{dist: uniform, min: 0, max: 5}",
                "`min` must be at least 1",
            ),
            ("{dist: uniform, min: 9, max: 5}", "must not be below"),
            (
                "{dist: normal, mean: -3, std: 1}",
                "`mean` must be a positive",
            ),
            (
                "{dist: lognormal, mean: 30, std: -1}",
                "`std` must be 0 or more",
            ),
        ] {
            let p = parse(yaml).problem().unwrap_or_default();
            assert!(p.contains(says), "{yaml}: {p}");
        }
        assert_eq!(parse("{dist: normal, mean: 30, std: 5}").problem(), None);
    }
}
