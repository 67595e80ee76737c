//! Every claim of a TR re-derived: its figure from the runs or from `recorded:` figures,
//! checked against the stated value at its stated precision, and its assertion evaluated.
//! Reports print the result; the audit turns failures and unverifiable claims into findings.

use indexmap::IndexMap;
use polars::prelude::PolarsResult;
use serde::Serialize;
use serde_json::Value;

use super::compare::{ClaimComparison, is_fraction, select};
use super::fits::Fit;
use super::frame::Frames;
use super::serving::{Sweep, SweepFigure};
use super::trimmed;
use crate::spec::claim::{Assertion, Form, Op, Stated, Unit};
use crate::spec::matrix::label_of;
use crate::spec::matrix::values_equal;
use crate::spec::{Claim, Derive, LoadedSpec};
use crate::stats::{self, PowerLaw, Verdict};

/// What a claim's figure rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Runs recorded here.
    Data,
    /// Only figures imported under `recorded:`: arithmetic can be checked, the figures cannot.
    Recorded,
    /// Runs on one side, an imported figure on the other.
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Holds,
    Fails,
    /// The runs it needs are not recorded (yet).
    NoData,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimCheck {
    pub id: String,
    pub text: Option<String>,
    pub stated: Option<String>,
    pub assert: Option<String>,
    /// The figure re-derived, in the stated unit, and written as the statement is.
    pub derived: Option<f64>,
    pub derived_text: Option<String>,
    pub basis: Basis,
    pub outcome: Outcome,
    /// How the figure was derived and why the claim holds or fails, in one or two sentences.
    pub detail: String,
    /// What the claim's figures pool (`max_tokens 32 and 64`); empty when each side is one
    /// configuration.
    pub pooled: String,
}

/// One side of a claim: a figure with where it came from.
struct Side {
    label: String,
    /// Per-run values (data) or the one recorded figure.
    values: Vec<f64>,
    recorded: bool,
}

impl Side {
    fn mean(&self) -> Option<f64> {
        (!self.values.is_empty())
            .then(|| self.values.iter().sum::<f64>() / self.values.len() as f64)
    }
}

fn side(
    loaded: &LoadedSpec,
    claim: &Claim,
    frames: Option<&Frames>,
    sel: &IndexMap<String, Value>,
) -> PolarsResult<Side> {
    if let Some(name) = sel.get("recorded").and_then(Value::as_str) {
        let r = loaded.spec.recorded.get(name);
        let unit = r
            .and_then(|r| r.unit.as_deref())
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        return Ok(Side {
            label: format!(
                "recorded `{name}` = {}{unit}",
                r.map_or("?".into(), |r| r.value.to_string())
            ),
            values: r.map(|r| r.value).into_iter().collect(),
            recorded: true,
        });
    }
    // `where` narrows every side.
    let mut merged = claim.selection.clone();
    merged.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
    let metric = claim.metric.as_deref().unwrap_or_default();
    let values = match frames {
        Some(f) if !metric.is_empty() => select(f, metric, &merged)?,
        _ => Vec::new(),
    };
    let label = if merged.is_empty() {
        "all runs".to_owned()
    } else {
        label_of(&merged)
    };
    Ok(Side {
        label: format!("{metric} over {label} (n={})", values.len()),
        values,
        recorded: false,
    })
}

fn basis(sides: &[&Side]) -> Basis {
    match (
        sides.iter().all(|s| s.recorded),
        sides.iter().any(|s| s.recorded),
    ) {
        (true, _) => Basis::Recorded,
        (false, true) => Basis::Mixed,
        _ => Basis::Data,
    }
}

/// What claims are checked against: the runs, the analysis' Holm-adjusted comparisons (which
/// assertions over two sides read) and the rate sweeps' figures.
#[derive(Clone, Copy, Default)]
pub struct Evidence<'a> {
    /// None when the TR has no runs.
    pub frames: Option<&'a Frames>,
    pub comparisons: &'a [ClaimComparison],
    pub sweeps: &'a [Sweep],
    pub fits: &'a [Fit],
}

/// Evaluates every claim.
pub fn evaluate(loaded: &LoadedSpec, evidence: Evidence) -> PolarsResult<Vec<ClaimCheck>> {
    loaded
        .spec
        .claims
        .iter()
        .map(|claim| evaluate_one(loaded, claim, evidence))
        .collect()
}

/// The one sweep a side of a sweep claim selects, and its figure of the claim's metric; or
/// why there is none.
fn sweep_figure<'a>(
    loaded: &LoadedSpec,
    claim: &Claim,
    sweeps: &'a [Sweep],
    side: &IndexMap<String, Value>,
) -> Result<(&'a SweepFigure, String), String> {
    let mut sel = claim.selection.clone();
    sel.extend(side.iter().map(|(k, v)| (k.clone(), v.clone())));
    let metric = claim.metric.as_deref().unwrap_or_default();
    let label = if sel.is_empty() {
        "the sweep".to_owned()
    } else {
        format!("the sweep at {}", label_of(&sel))
    };
    let matching: Vec<&Sweep> = sweeps
        .iter()
        .filter(|s| {
            sel.iter()
                .all(|(k, v)| s.fixed.get(k).is_some_and(|w| values_equal(v, w)))
        })
        .collect();
    let sweep = match matching.as_slice() {
        [one] => *one,
        [] => return Err(format!("no measured sweep matches for {label}")),
        more => {
            return Err(format!(
                "{label} selects {} sweeps; a sweep figure is of one",
                more.len()
            ));
        }
    };
    let figure = match metric {
        "knee_rate" => Some(&sweep.knee_rate),
        _ if loaded.spec.slo.is_none() => None,
        _ => sweep.max_rate_at_slo.as_ref(),
    }
    .ok_or_else(|| format!("{metric} needs the spec's `slo`"))?;
    let rates: Vec<String> = sweep.rates.iter().map(|r| trimmed(*r)).collect();
    Ok((
        figure,
        format!("{metric} of {label} ({} {})", sweep.axis, rates.join(", ")),
    ))
}

/// The fit a claim names, and its exponent in words; or why there is none.
fn fit_figure<'a>(fits: &'a [Fit], id: &str) -> Result<(&'a Fit, &'a PowerLaw, String), String> {
    let fit = fits
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| format!("no scaling fit `{id}`"))?;
    let law = fit.law.as_ref().ok_or_else(|| {
        format!(
            "fit `{id}` has {} measured run(s): too few to fit",
            fit.runs()
        )
    })?;
    Ok((
        fit,
        law,
        format!(
            "{} against {} over {} runs of {} cells: exponent {} (95% CI [{}, {}]), R² {}",
            fit.metric,
            fit.against,
            law.n,
            fit.cells.len(),
            trimmed(law.exponent),
            trimmed(law.exponent_low),
            trimmed(law.exponent_high),
            trimmed(law.r_squared)
        ),
    ))
}

/// A sweep figure in words: its value and interval, or that it lies outside the rates measured.
fn figure_text(metric: &str, f: &SweepFigure) -> String {
    let interval = match (f.ci_low, f.ci_high) {
        (Some(lo), Some(hi)) => format!(
            ", 95% bootstrap interval [{}, {}], found in {}% of resamples",
            trimmed(lo),
            trimmed(hi),
            trimmed(f.found_share * 100.0)
        ),
        _ => String::new(),
    };
    match f.value {
        Some(v) if f.at_least => format!(
            "at least {} (every measured rate met the SLO){interval}",
            trimmed(v)
        ),
        Some(v) => format!("{}{interval}", trimmed(v)),
        None if metric == "knee_rate" => {
            format!("none within the measured rates (the server kept up){interval}")
        }
        None => format!("none: the lowest measured rate already misses the SLO{interval}"),
    }
}

fn evaluate_one(
    loaded: &LoadedSpec,
    claim: &Claim,
    evidence: Evidence,
) -> PolarsResult<ClaimCheck> {
    let Evidence { frames, sweeps, .. } = evidence;
    let sweep_metric = claim
        .metric
        .as_deref()
        .is_some_and(crate::spec::metrics::is_sweep);
    let stated = claim.stated.as_deref().and_then(|s| Stated::parse(s).ok());
    let fraction = claim.metric.as_deref().is_some_and(is_fraction);
    // Fraction metrics (efficiency) are stated in percent: 0.93 is "93%".
    let level = |s: &Side, x: f64| {
        if fraction && !s.recorded {
            x * 100.0
        } else {
            x
        }
    };
    let mut notes: Vec<String> = Vec::new();
    // For a fraction stated in %, the difference in points, in case points were meant.
    let mut as_points = None;
    // A sweep figure outside the measured rates fails a stated value outright.
    let mut holds_override = None;
    let (derived, basis_of, missing): (Option<f64>, Basis, Option<String>) = if let Some(id) =
        &claim.fit
    {
        match fit_figure(evidence.fits, id) {
            Ok((_, law, text)) => {
                if claim.stated.is_some() || claim.assert.is_none() {
                    notes.push(text);
                }
                (Some(law.exponent), Basis::Data, None)
            }
            Err(why) => (None, Basis::Data, Some(why)),
        }
    } else if sweep_metric {
        let metric = claim.metric.as_deref().unwrap_or_default();
        let sides = match &claim.compare {
            Some(cmp) => vec![cmp.a.clone(), cmp.b.clone()],
            None => vec![IndexMap::new()],
        };
        let found: Result<Vec<(&SweepFigure, String)>, String> = sides
            .iter()
            .map(|side| sweep_figure(loaded, claim, sweeps, side))
            .collect();
        match found {
            Err(why) => (None, Basis::Data, Some(why)),
            Ok(found) => {
                // With only an assertion, the assertion's own statistic says it better.
                if claim.stated.is_some() || claim.assert.is_none() {
                    for (f, label) in &found {
                        notes.push(format!("{label}: {}", figure_text(metric, f)));
                    }
                }
                let values: Option<Vec<f64>> = found.iter().map(|(f, _)| f.value).collect();
                // A lower bound (every measured rate met the SLO) is not the figure: a stated
                // value would hold for any rate at least that high.
                if claim.stated.is_some() && found.iter().any(|(f, _)| f.at_least) {
                    holds_override = Some(false);
                    notes.push(
                        "the figure is only a lower bound (every measured value met the SLO): measure higher to state it".into(),
                    );
                }
                match (values.as_deref(), found.len()) {
                    (Some(&[v]), 1) => (Some(v), Basis::Data, None),
                    (Some(&[a, b]), 2) => {
                        let (value, formula) = two_sides(claim, stated.as_ref(), a, b);
                        let (value, formula) = scaled(claim, value, formula.to_owned());
                        notes.push(format!("{formula} = {}", trimmed(value)));
                        (Some(value), Basis::Data, None)
                    }
                    // A figure outside the measured rates cannot be stated as a number; an
                    // assertion on its interval or found share still can be checked.
                    _ if claim.stated.is_some() => {
                        holds_override = Some(false);
                        notes.push(format!(
                            "stated {} but there is no such figure to state",
                            claim.stated.as_deref().unwrap_or_default()
                        ));
                        (None, Basis::Data, None)
                    }
                    _ => (None, Basis::Data, None),
                }
            }
        }
    } else if !claim.of.is_empty() {
        let figures: Vec<Side> = claim
            .of
            .iter()
            .map(|name| {
                side(
                    loaded,
                    claim,
                    frames,
                    &IndexMap::from([("recorded".to_owned(), Value::from(name.clone()))]),
                )
            })
            .collect::<PolarsResult<_>>()?;
        let values: Vec<f64> = figures.iter().filter_map(Side::mean).collect();
        let sum: f64 = values.iter().sum();
        let (value, how) = match claim.derive {
            Some(Derive::Mean) => (sum / values.len().max(1) as f64, "mean"),
            _ => (sum, "sum"),
        };
        let (value, how) = scaled(claim, value, how.to_owned());
        notes.push(format!(
            "{how} of {}",
            figures
                .iter()
                .map(|f| f.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        (Some(value), Basis::Recorded, None)
    } else if let Some(cmp) = &claim.compare {
        let (a, b) = (
            side(loaded, claim, frames, &cmp.a)?,
            side(loaded, claim, frames, &cmp.b)?,
        );
        let basis_of = basis(&[&a, &b]);
        match (a.mean(), b.mean()) {
            (Some(ma), Some(mb)) => {
                let (ma, mb) = (level(&a, ma), level(&b, mb));
                if fraction
                    && claim.derive.is_none()
                    && derive_of(claim, stated.as_ref()) == Derive::Change
                {
                    as_points = Some(ma - mb);
                }
                let (value, formula) = two_sides(claim, stated.as_ref(), ma, mb);
                let (value, formula) = scaled(claim, value, formula.to_owned());
                // A recorded side's label already shows its value; a side of runs shows its mean.
                let shown = |s: &Side, m: f64| {
                    if s.recorded {
                        s.label.clone()
                    } else {
                        format!("{} mean {}", s.label, trimmed(m))
                    }
                };
                notes.push(format!(
                    "A: {}; B: {}; {formula} = {}",
                    shown(&a, ma),
                    shown(&b, mb),
                    trimmed(value)
                ));
                (Some(value), basis_of, None)
            }
            _ => {
                let empty: Vec<&str> = [(&a, "A"), (&b, "B")]
                    .iter()
                    .filter(|(s, _)| s.values.is_empty())
                    .map(|(s, n)| if s.recorded { *n } else { s.label.as_str() })
                    .collect();
                (
                    None,
                    basis_of,
                    Some(format!("no measured runs for {}", empty.join(" and "))),
                )
            }
        }
    } else {
        // A recorded selection is the figure itself; otherwise `where` selects the runs.
        let sel = if claim.selection.contains_key("recorded") {
            claim.selection.clone()
        } else {
            IndexMap::new()
        };
        let s = side(loaded, claim, frames, &sel)?;
        match s.mean() {
            Some(m) => {
                let value = level(&s, m);
                // With only an assertion, the assertion's own statistic says it better.
                if claim.stated.is_some() || claim.assert.is_none() {
                    notes.push(format!(
                        "{}{}: {}",
                        if s.recorded { "" } else { "mean " },
                        s.label,
                        trimmed(value)
                    ));
                }
                (Some(value), basis(&[&s]), None)
            }
            None => (
                None,
                basis(&[&s]),
                Some(format!("no measured runs for {}", s.label)),
            ),
        }
    };

    let mut holds = holds_override.unwrap_or(true);
    if let (Some(st), Some(value)) = (&stated, derived) {
        let ok = st.holds_for(value);
        holds &= ok;
        notes.push(if ok {
            format!("stated {} holds at its precision (±{})", claim.stated.as_deref().unwrap_or_default(), st.tolerance())
        } else {
            let points = as_points
                .filter(|p| st.holds_for(*p))
                .map(|p| {
                    format!(
                        "; as a difference in percentage points it is {}pp: write pp if points are meant",
                        trimmed(p)
                    )
                })
                .unwrap_or_default();
            format!(
                "stated {} but the figures give {} (off by {}, more than the ±{} its precision allows{points})",
                claim.stated.as_deref().unwrap_or_default(),
                st.format(value),
                trimmed((value - st.value).abs()),
                st.tolerance()
            )
        });
    }
    let mut assertion_missing = None;
    if let Some(text) = &claim.assert {
        match assertion(loaded, claim, evidence, text)? {
            Some((ok, why)) => {
                holds &= ok;
                notes.push(why);
            }
            None => {
                assertion_missing = Some("no measured runs to test the assertion on".to_owned())
            }
        }
    }
    // A check that failed decides the outcome even when another part lacks data.
    let outcome = match missing.or(assertion_missing) {
        _ if !holds => Outcome::Fails,
        Some(why) => {
            notes.push(why);
            Outcome::NoData
        }
        None => Outcome::Holds,
    };
    Ok(ClaimCheck {
        id: claim.id.clone(),
        text: claim.text.clone(),
        stated: claim.stated.clone(),
        assert: claim.assert.clone(),
        derived,
        derived_text: derived.zip(stated.as_ref()).map(|(v, s)| s.format(v)),
        basis: basis_of,
        outcome,
        detail: notes.join("; "),
        // A fit spans what it is against by definition, and its own `where` fixes the rest.
        pooled: frames
            .filter(|_| claim.fit.is_none())
            .map_or_else(String::new, |f| {
                let cells: Vec<IndexMap<String, Value>> = f
                    .cells
                    .iter()
                    .map(|c| {
                        c.params
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .collect();
                let mut pooled = crate::spec::claim::pooled_axes(claim, &cells);
                // A sweep figure spans its axis by definition; that is not pooling.
                if sweep_metric {
                    pooled.retain(|(axis, _)| !super::serving::SWEEP_AXES.contains(&axis.as_str()));
                }
                crate::spec::claim::pooled_text(&pooled)
            }),
    })
}

/// Resamples behind a claim's interval.
const INTERVAL_RESAMPLES: usize = 2000;

/// A 95% interval of a claim's figure from `evidence`, as `evaluate` derives the figure: a
/// percentile bootstrap of the runs behind each side (the run is the unit), or a sweep
/// figure's own bootstrap interval. None where the figure rests on imported figures, compares
/// two sweeps (their figures are not means of runs), or has no runs.
pub fn interval(
    loaded: &LoadedSpec,
    claim: &Claim,
    evidence: Evidence,
) -> PolarsResult<Option<(f64, f64)>> {
    if let Some(id) = &claim.fit {
        return Ok(fit_figure(evidence.fits, id)
            .ok()
            .map(|(_, law, _)| (law.exponent_low, law.exponent_high)));
    }
    let metric = claim.metric.as_deref().unwrap_or_default();
    if crate::spec::metrics::is_sweep(metric) {
        if claim.compare.is_some() {
            return Ok(None);
        }
        let figure = sweep_figure(loaded, claim, evidence.sweeps, &IndexMap::new()).ok();
        return Ok(figure.and_then(|(f, _)| f.ci_low.zip(f.ci_high)));
    }
    if !claim.of.is_empty() {
        return Ok(None);
    }
    let stated = claim.stated.as_deref().and_then(|s| Stated::parse(s).ok());
    let level = |x: f64| if is_fraction(metric) { x * 100.0 } else { x };
    let sides = match &claim.compare {
        Some(cmp) => vec![
            side(loaded, claim, evidence.frames, &cmp.a)?,
            side(loaded, claim, evidence.frames, &cmp.b)?,
        ],
        None => {
            let sel = if claim.selection.contains_key("recorded") {
                claim.selection.clone()
            } else {
                IndexMap::new()
            };
            vec![side(loaded, claim, evidence.frames, &sel)?]
        }
    };
    if sides.iter().any(|s| s.recorded) {
        return Ok(None);
    }
    let groups: Vec<&[f64]> = sides.iter().map(|s| s.values.as_slice()).collect();
    let figure = |means: &[f64]| match means {
        [m] => Some(level(*m)),
        [a, b] => {
            let (value, _) = two_sides(claim, stated.as_ref(), level(*a), level(*b));
            Some(scaled(claim, value, String::new()).0)
        }
        _ => None,
    };
    Ok(stats::bootstrap_means(
        &groups,
        figure,
        INTERVAL_RESAMPLES,
        0.95,
        0x5EED,
    ))
}

/// How a claim's two sides give its figure: `derive`, or else what the stated unit implies.
fn derive_of(claim: &Claim, stated: Option<&Stated>) -> Derive {
    claim.derive.unwrap_or(match stated.map(|s| &s.unit) {
        Some(Unit::Percent) | None => Derive::Change,
        Some(Unit::Times) => Derive::Ratio,
        Some(_) => Derive::Difference,
    })
}

/// The figure from the two sides' values, and its formula.
fn two_sides(claim: &Claim, stated: Option<&Stated>, a: f64, b: f64) -> (f64, &'static str) {
    match derive_of(claim, stated) {
        Derive::Savings => ((1.0 - a / b) * 100.0, "(1 - A/B) x 100"),
        Derive::Ratio => (a / b, "A/B"),
        Derive::Share => (a / b * 100.0, "A/B x 100"),
        Derive::Difference => (a - b, "A - B"),
        _ => ((a / b - 1.0) * 100.0, "(A/B - 1) x 100"),
    }
}

/// The figure times the claim's `scale`, with the formula saying so.
fn scaled(claim: &Claim, value: f64, formula: String) -> (f64, String) {
    match claim.scale {
        Some(k) => (value * k, format!("{formula} x {}", trimmed(k))),
        None => (value, formula),
    }
}

/// Evaluates an assertion; None when there are no runs to evaluate it on.
fn assertion(
    loaded: &LoadedSpec,
    claim: &Claim,
    evidence: Evidence,
    text: &str,
) -> PolarsResult<Option<(bool, String)>> {
    let Evidence {
        frames,
        comparisons,
        sweeps,
        fits,
    } = evidence;
    let form = Form::of(claim);
    let Ok(parsed) = Assertion::parse(text, form) else {
        return Ok(None);
    };
    if form == Form::Fit {
        let Some(Ok((fit, law, _))) = claim.fit.as_deref().map(|id| fit_figure(fits, id)) else {
            return Ok(None);
        };
        let Assertion::Compare { stat, op, value } = parsed else {
            return Ok(None);
        };
        let got = match stat.as_str() {
            "exponent" => Some(law.exponent),
            "ci_low" => Some(law.exponent_low),
            "ci_high" => Some(law.exponent_high),
            "r_squared" => Some(law.r_squared),
            "n" => Some(law.n as f64),
            _ => None,
        };
        let (ok, why) = compare_stat(text, &stat, got, op, value);
        return Ok(Some((
            ok,
            format!("{why} for {} against {}", fit.metric, fit.against),
        )));
    }
    if form == Form::Sweep {
        // One sweep: validation refuses assertions on two.
        if claim.compare.is_some() {
            return Ok(None);
        }
        let Ok((figure, label)) = sweep_figure(loaded, claim, sweeps, &IndexMap::new()) else {
            return Ok(None);
        };
        let Assertion::Compare { stat, op, value } = parsed else {
            return Ok(None);
        };
        let got = match stat.as_str() {
            "value" => figure.value,
            "ci_low" => figure.ci_low,
            "ci_high" => figure.ci_high,
            "found_share" => Some(figure.found_share),
            _ => None,
        };
        let (mut ok, mut why) = compare_stat(text, &stat, got, op, value);
        // A lower bound cannot bound the true rate from above.
        if figure.at_least && stat != "found_share" && matches!(op, Op::Lt | Op::Le | Op::Eq) {
            ok = false;
            why.push_str(" (a lower bound only: every measured rate met the SLO)");
        }
        return Ok(Some((ok, format!("{why} over {label}"))));
    }
    if claim.compare.is_some() {
        let Some(c) = comparisons.iter().find(|c| c.claim == claim.id) else {
            return Ok(None);
        };
        let k = &c.comparison;
        if k.n_a == 0 || k.n_b == 0 {
            return Ok(None);
        }
        return Ok(Some(match parsed {
            Assertion::Verdict(want) => {
                let got = match k.verdict {
                    Verdict::Higher => "higher",
                    Verdict::Lower => "lower",
                    Verdict::NotDetectable { .. } => "not_detectable",
                    Verdict::Insufficient { .. } => "insufficient",
                };
                (
                    got == want,
                    format!("assertion `{text}`: the comparison's verdict is {got}"),
                )
            }
            Assertion::Compare { stat, op, value } => {
                let pct = |r: Option<f64>| r.map(|r| (r - 1.0) * 100.0);
                let got = match stat.as_str() {
                    "ratio" => Some(k.ratio_of_means),
                    "ratio_ci_low" => k.ratio_ci_low,
                    "ratio_ci_high" => k.ratio_ci_high,
                    "change" => pct(Some(k.ratio_of_means)),
                    "change_ci_low" => pct(k.ratio_ci_low),
                    "change_ci_high" => pct(k.ratio_ci_high),
                    "delta_pp" => c.delta_pp,
                    "p" => k.p_value,
                    "p_holm" => c.p_holm,
                    "hedges_g" => k.hedges_g,
                    "mean_a" => Some(k.mean_a),
                    "mean_b" => Some(k.mean_b),
                    _ => None,
                };
                compare_stat(text, &stat, got, op, value)
            }
        }));
    }
    let s = side(loaded, claim, frames, &IndexMap::new())?;
    let Some(summary) = stats::summarize(&s.values) else {
        return Ok(None);
    };
    // Each value is a run's: the same spread and interval as the cell summaries.
    let metric = claim.metric.as_deref().unwrap_or_default();
    let summary = stats::with_run_spread(summary, &s.values, crate::spec::metrics::scale(metric));
    let Assertion::Compare { stat, op, value } = parsed else {
        return Ok(None);
    };
    let got = match stat.as_str() {
        "n" => Some(summary.n as f64),
        "mean" => Some(summary.mean),
        "median" => Some(summary.median),
        "std" => Some(summary.std),
        "cv" => Some(summary.cv),
        "min" => Some(summary.min),
        "max" => Some(summary.max),
        "p95" => Some(summary.p95),
        "p99" => Some(summary.p99),
        "ci_low" => Some(summary.ci_low),
        "ci_high" => Some(summary.ci_high),
        _ => None,
    }
    .filter(|v| v.is_finite());
    let (ok, why) = compare_stat(text, &stat, got, op, value);
    Ok(Some((ok, format!("{why} over {}", s.label))))
}

fn compare_stat(text: &str, stat: &str, got: Option<f64>, op: Op, value: f64) -> (bool, String) {
    match got {
        Some(g) => (
            op.holds(g, value),
            format!("assertion `{text}`: {stat} = {}", trimmed(g)),
        ),
        None => (
            false,
            format!("assertion `{text}`: {stat} cannot be computed from these runs"),
        ),
    }
}
