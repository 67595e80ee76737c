//! Cost and energy per 1M tokens. Formulas (hand-worked examples in docs/metrics.md):
//! $/1M = hourly_usd / 3600 / tok_s * 1e6; kWh/1M = power_w * (1e6 / tok_s) / 3.6e6;
//! gCO2e/1M = kWh/1M * carbon intensity; tokens/kWh = tok_s * 3.6e6 / power_w.

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::diagnostic::{Diagnostic, Location, did_you_mean};
use crate::spec::Cost;

pub fn usd_per_million(hourly_usd: f64, tok_s: f64) -> f64 {
    hourly_usd / 3600.0 / tok_s * 1e6
}

pub fn kwh_per_million(power_w: f64, tok_s: f64) -> f64 {
    power_w * (1e6 / tok_s) / 3.6e6
}

pub fn tokens_per_kwh(power_w: f64, tok_s: f64) -> f64 {
    tok_s * 3.6e6 / power_w
}

pub fn savings_pct(on_demand: f64, spot: f64) -> f64 {
    (1.0 - spot / on_demand) * 100.0
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    pub hourly_usd: Option<f64>,
    pub spot_hourly_usd: Option<f64>,
    pub power_w: Option<f64>,
    pub carbon_g_per_kwh: Option<f64>,
    /// Where each figure comes from.
    #[serde(default)]
    pub sources: IndexMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pricing {
    profiles: IndexMap<String, Profile>,
}

pub fn pricing_path(root: &Path) -> std::path::PathBuf {
    root.join("data").join("pricing.yaml")
}

/// The spec's cost settings resolved against data/pricing.yaml; inline figures override the profile's.
pub fn resolve(root: &Path, cost: &Cost) -> Result<Profile, Diagnostic> {
    let mut profile = match &cost.profile {
        None => Profile::default(),
        Some(name) => {
            let path = pricing_path(root);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Diagnostic::new(format!("cannot read the price list: {e}")).in_file(&path).help("create data/pricing.yaml or give hourly_usd and power_w in the spec's `cost`"))?;
            let pricing: Pricing = yaml_serde::from_str(&text).map_err(|e| {
                let loc = e.location().map(|l| Location {
                    line: l.line(),
                    column: l.column(),
                });
                Diagnostic::new(format!("invalid price list: {e}"))
                    .in_file(&path)
                    .at(loc, &text)
            })?;
            pricing.profiles.get(name).cloned().ok_or_else(|| {
                let help = did_you_mean(name, pricing.profiles.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        format!(
                            "profiles in {}: {}",
                            path.display(),
                            pricing
                                .profiles
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    });
                Diagnostic::new(format!("cost profile `{name}` is not in the price list"))
                    .in_file(&path)
                    .field("cost.profile")
                    .help(help)
            })?
        }
    };
    for (slot, inline, name) in [
        (&mut profile.hourly_usd, cost.hourly_usd, "hourly_usd"),
        (
            &mut profile.spot_hourly_usd,
            cost.spot_hourly_usd,
            "spot_hourly_usd",
        ),
        (&mut profile.power_w, cost.power_w, "power_w"),
        (
            &mut profile.carbon_g_per_kwh,
            cost.carbon_g_per_kwh,
            "carbon_g_per_kwh",
        ),
    ] {
        if inline.is_some() {
            *slot = inline;
            profile
                .sources
                .insert(name.into(), "declared in the spec".into());
        }
    }
    Ok(profile)
}

/// Cost and energy of one cell, from its mean throughput (and the CI of that mean).
#[derive(Debug, Clone, Serialize)]
pub struct CellCost {
    pub cell: usize,
    pub tok_s: f64,
    pub usd_per_1m: Option<f64>,
    /// From the CI of the throughput: the high throughput bound gives the low cost bound.
    pub usd_per_1m_ci_low: Option<f64>,
    pub usd_per_1m_ci_high: Option<f64>,
    pub spot_usd_per_1m: Option<f64>,
    pub spot_savings_pct: Option<f64>,
    pub kwh_per_1m: Option<f64>,
    pub gco2e_per_1m: Option<f64>,
    pub tokens_per_kwh: Option<f64>,
    pub power_w: Option<f64>,
    /// `measured` (a power meter recorded it with every run) or `estimated` (declared).
    pub power_source: String,
}

pub fn cell_cost(
    cell: usize,
    tok_s: f64,
    tok_s_ci: (f64, f64),
    profile: &Profile,
    measured_power_w: Option<f64>,
) -> CellCost {
    let power = measured_power_w.or(profile.power_w);
    let usd = |h: f64, t: f64| (t > 0.0 && t.is_finite()).then(|| usd_per_million(h, t));
    let kwh = power
        .filter(|_| tok_s > 0.0)
        .map(|p| kwh_per_million(p, tok_s));
    CellCost {
        cell,
        tok_s,
        usd_per_1m: profile.hourly_usd.and_then(|h| usd(h, tok_s)),
        usd_per_1m_ci_low: profile.hourly_usd.and_then(|h| usd(h, tok_s_ci.1)),
        usd_per_1m_ci_high: profile.hourly_usd.and_then(|h| usd(h, tok_s_ci.0)),
        spot_usd_per_1m: profile.spot_hourly_usd.and_then(|h| usd(h, tok_s)),
        spot_savings_pct: profile
            .hourly_usd
            .zip(profile.spot_hourly_usd)
            .map(|(o, s)| savings_pct(o, s)),
        kwh_per_1m: kwh,
        gco2e_per_1m: kwh.zip(profile.carbon_g_per_kwh).map(|(k, c)| k * c),
        tokens_per_kwh: power.filter(|p| *p > 0.0).map(|p| tokens_per_kwh(p, tok_s)),
        power_w: power,
        power_source: if measured_power_w.is_some() {
            "measured".into()
        } else {
            "estimated".into()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of docs/metrics.md: 90 tok/s on the cpu-2core profile.
    #[test]
    fn worked_example_from_the_docs() {
        let profile = Profile {
            hourly_usd: Some(0.08925),
            spot_hourly_usd: Some(0.0312),
            power_w: Some(9.72),
            carbon_g_per_kwh: Some(379.069),
            ..Profile::default()
        };
        let c = cell_cost(0, 90.0, (80.0, 100.0), &profile, None);
        assert!((c.usd_per_1m.unwrap() - 0.275463).abs() < 1e-6);
        assert!((c.usd_per_1m_ci_low.unwrap() - 0.247917).abs() < 1e-6);
        assert!((c.usd_per_1m_ci_high.unwrap() - 0.309896).abs() < 1e-6);
        assert!((c.spot_usd_per_1m.unwrap() - 0.096296).abs() < 1e-6);
        assert!((c.spot_savings_pct.unwrap() - 65.042017).abs() < 1e-6);
        assert!((c.kwh_per_1m.unwrap() - 0.03).abs() < 1e-12);
        assert!((c.gco2e_per_1m.unwrap() - 11.37207).abs() < 1e-9);
        assert!((c.tokens_per_kwh.unwrap() - 33_333_333.333).abs() < 1e-3);
        assert_eq!(c.power_source, "estimated");
        assert_eq!(
            cell_cost(0, 90.0, (80.0, 100.0), &profile, Some(20.0)).power_source,
            "measured"
        );
    }
}
