//! The checks of a spec's claims: each claim's form (metric, selections, assertion, stated
//! figure) and whether it pools cells that differ in some axis.

use indexmap::IndexMap;
use serde_json::Value;

use super::{Checker, compact};
use crate::diagnostic::did_you_mean;
use crate::spec::matrix::{Matrix, values_equal};
use crate::spec::source_map::{child_path, index_path};
use crate::spec::{Cell, Claim, Derive, Spec, metrics};

/// A claim whose selection takes in cells that differ in some axis states a figure for all of
/// them together, which can hold where no single cell does (TR124's efficiency claim held only
/// with its 32- and 64-token cells pooled). Unless the claim says `pool: true`, that is a
/// warning naming the axes.
pub(super) fn check_pooling(c: &mut Checker, spec: &Spec, cells: &[Cell]) {
    for (i, claim) in spec.claims.iter().enumerate() {
        // A sweep figure cannot pool: check_sweep_claim insists on one sweep per side.
        if claim.pool || claim.metric.as_deref().is_none_or(metrics::is_sweep) {
            continue;
        }
        let params: Vec<IndexMap<String, Value>> = cells.iter().map(|c| c.params.clone()).collect();
        let pooled = crate::spec::claim::pooled_axes(claim, &params);
        if pooled.is_empty() {
            continue;
        }
        let what: Vec<String> = pooled
            .iter()
            .map(|(axis, values)| {
                let values: Vec<String> = values.iter().map(compact).collect();
                format!("{axis} ({})", values.join(", "))
            })
            .collect();
        let first = &pooled[0];
        c.warn(
            &index_path("claims", i),
            format!(
                "claim `{}` pools cells that differ in {}: its figure is for them together, and may hold where no single cell does",
                claim.id,
                what.join(" and ")
            ),
            format!(
                "narrow `where` to one value (e.g. `{}: {}`), or add `pool: true` if pooling is meant",
                first.0,
                compact(&first.1[0])
            ),
        );
    }
}

pub(super) fn check_claims(c: &mut Checker, spec: &Spec, m: &Matrix, cells: &[Cell]) {
    for (i, claim) in spec.claims.iter().enumerate() {
        let at = index_path("claims", i);
        if spec.claims[..i].iter().any(|other| other.id == claim.id) {
            c.error(
                &format!("{at}.id"),
                format!("claim id `{}` is used twice", claim.id),
                "give each claim its own id",
            );
        }
        if claim.assert.is_none() && claim.stated.is_none() {
            c.error(
                &at,
                format!("claim `{}` has neither `assert` nor `stated`", claim.id),
                format!(
                    "add `assert: \"{}\"` or `stated: \"+15.2%\"` so the audit can check it",
                    assertion_example(claim)
                ),
            );
        }
        check_claim_form(c, spec, claim, &at);
        if let Some(metric) = &claim.metric
            && !metrics::is_known(metric)
        {
            let help = did_you_mean(metric, metrics::all())
                .unwrap_or_else(|| "see docs/metrics.md for the metric names".into());
            c.error(
                &format!("{at}.metric"),
                format!("unknown metric `{metric}`"),
                help,
            );
        }
        let mut selections = vec![(format!("{at}.where"), &claim.selection)];
        if let Some(cmp) = &claim.compare {
            selections.push((format!("{at}.compare.a"), &cmp.a));
            selections.push((format!("{at}.compare.b"), &cmp.b));
        }
        for (sel_at, sel) in selections {
            check_selection(c, spec, m, cells, &sel_at, sel);
        }
        if claim.metric.as_deref().is_some_and(metrics::is_sweep) {
            check_sweep_claim(c, spec, m, cells, claim, &at);
        }
    }
}

/// A claim on a sweep figure (`knee_rate`, `max_rate_at_slo`) needs a rate sweep to find it
/// on, and each of its sides must pick out one sweep: every axis but `rate` fixed.
fn check_sweep_claim(
    c: &mut Checker,
    spec: &Spec,
    m: &Matrix,
    cells: &[Cell],
    claim: &Claim,
    at: &str,
) {
    let metric = claim.metric.as_deref().unwrap_or_default();
    // The sweep's axis: the offered rate, or else the users of a closed loop.
    let Some(axis) = metrics::SWEEP_AXES
        .iter()
        .copied()
        .find(|a| m.axes.get(*a).is_some_and(|v| v.len() >= 2))
    else {
        c.error(
            &format!("{at}.metric"),
            format!("`{metric}` is found along a `rate` or `concurrency` axis, but the matrix sweeps neither"),
            "sweep the offered rate in the matrix, e.g. `rate: [1, 2, 4, 8]` (or the users, `concurrency: [1, 2, 4, 8]`)",
        );
        return;
    };
    if metric == "max_rate_at_slo" && spec.slo.is_none() {
        c.error(
            &format!("{at}.metric"),
            "`max_rate_at_slo` is the highest rate meeting the SLO, but the spec has no `slo`",
            "add `slo: {ttft_ms: 1000, tpot_ms: 50, percentile: p99}`",
        );
    }
    if claim.assert.is_some() && claim.compare.is_some() {
        c.error(
            &format!("{at}.assert"),
            "an assertion on two sweeps' figures is not supported: each has its own bootstrap interval, and their ratio has none",
            "state the ratio (`stated: \"2.0x\"`), or assert on each sweep in a claim of its own (`assert: \"ci_low > 3\"`)",
        );
    }
    let mut sides = vec![(format!("{at}.where"), claim.selection.clone())];
    if let Some(cmp) = &claim.compare {
        for (name, side) in [("a", &cmp.a), ("b", &cmp.b)] {
            let mut sel = claim.selection.clone();
            sel.extend(side.iter().map(|(k, v)| (k.clone(), v.clone())));
            sides.push((format!("{at}.compare.{name}"), sel));
        }
        sides.remove(0);
    }
    let params: Vec<IndexMap<String, Value>> = cells.iter().map(|c| c.params.clone()).collect();
    for (side_at, sel) in sides {
        if sel.contains_key(axis) {
            c.error_at_key(
                &child_path(&side_at, axis),
                format!(
                    "`{metric}` is found across every {axis} of a sweep, so it cannot select one"
                ),
                format!("remove `{axis}` from the selection"),
            );
            continue;
        }
        let others: Vec<(String, Vec<Value>)> = crate::spec::matrix::pooled_axes(&params, &sel)
            .into_iter()
            .filter(|(a, _)| a != axis)
            .collect();
        if let Some((axis, values)) = others.first() {
            let listed: Vec<String> = values.iter().map(compact).collect();
            c.error(
                &side_at,
                format!(
                    "`{metric}` is a figure of one sweep, but this selection takes in one sweep per {axis} ({})",
                    listed.join(", ")
                ),
                format!("select one, e.g. `{axis}: {}`", compact(&values[0])),
            );
        }
    }
}

/// The stated value and the assertion parse, and the claim has something to derive them from.
fn check_claim_form(c: &mut Checker, spec: &Spec, claim: &Claim, at: &str) {
    use crate::spec::claim::{Assertion, Stated};
    if let Some(stated) = &claim.stated
        && let Err(e) = Stated::parse(stated)
    {
        c.error(&format!("{at}.stated"), format!("cannot read the stated value: {e}"), "write a number with its unit as the report does: \"+15.2%\", \"58 ms\", \"2.3x\", \"-1.5pp\", \"$0.27\"");
    }
    let recorded_side = claim.selection.contains_key("recorded")
        || claim
            .compare
            .as_ref()
            .is_some_and(|c| c.a.contains_key("recorded") || c.b.contains_key("recorded"));
    if let Some(metric) = &claim.metric
        && metrics::is_known(metric)
        && !metrics::is_sweep(metric)
        && !metrics::per_run().any(|m| m == metric)
    {
        c.error(&format!("{at}.metric"), format!("`{metric}` is derived per cell, so a claim cannot re-derive it from runs"), "claim a per-run metric (docs/metrics.md), e.g. `aggregate_tok_s` instead of a cost per 1M tokens");
    }
    if let Some(assert) = &claim.assert {
        if recorded_side || !claim.of.is_empty() {
            c.error(
                &format!("{at}.assert"),
                "an assertion is tested on runs, but this claim rests on recorded figures",
                "use `stated:` for recorded figures; keep `assert:` for claims over measured runs",
            );
        }
        if let Err(e) = Assertion::parse(assert, crate::spec::claim::Form::of(claim)) {
            c.error(
                &format!("{at}.assert"),
                format!("cannot read the assertion: {e}"),
                format!(
                    "write `<statistic> <op> <number>`, e.g. `{}`; see docs/spec.md",
                    assertion_example(claim)
                ),
            );
        }
        if claim.metric.is_none() && claim.fit.is_none() {
            c.error(
                &format!("{at}.assert"),
                "an assertion needs measured data, but the claim names no `metric`",
                "add `metric:` (assertions are about runs, not recorded figures)",
            );
        }
    }
    for (i, name) in claim.of.iter().enumerate() {
        if !spec.recorded.contains_key(name) {
            let help = did_you_mean(name, spec.recorded.keys().map(String::as_str))
                .unwrap_or_else(|| "add the figure under `recorded:`".into());
            c.error(
                &format!("{at}.of[{i}]"),
                format!("recorded figure `{name}` is not defined"),
                help,
            );
        }
    }
    let uses_recorded = |sel: &IndexMap<String, Value>| sel.contains_key("recorded");
    let needs_metric = !uses_recorded(&claim.selection)
        && claim.of.is_empty()
        && claim
            .compare
            .as_ref()
            .is_none_or(|cmp| !uses_recorded(&cmp.a) || !uses_recorded(&cmp.b));
    if needs_metric && claim.metric.is_none() && claim.fit.is_none() {
        c.error(at, format!("claim `{}` says nothing to derive its figure from", claim.id), "name a `metric` (with `where` or `compare`), a scaling `fit`, compare `{recorded: <name>}` figures, or list recorded figures in `of`");
    }
    match (claim.derive, claim.compare.is_some(), claim.of.is_empty()) {
        (Some(Derive::Sum | Derive::Mean), _, true) => c.error(
            &format!("{at}.derive"),
            "`sum` and `mean` need the figures to add up in `of`",
            "add `of: [<recorded name>, ...]`",
        ),
        (
            Some(
                Derive::Change
                | Derive::Savings
                | Derive::Ratio
                | Derive::Share
                | Derive::Difference,
            ),
            false,
            _,
        ) => c.error(
            &format!("{at}.derive"),
            "this derivation needs two sides",
            "add `compare: {a: ..., b: ...}`",
        ),
        _ => {}
    }
    if claim.compare.is_some() && !claim.of.is_empty() {
        c.error(
            &format!("{at}.of"),
            "a claim either compares two sides or totals `of` figures, not both",
            "split it into two claims",
        );
    }
}

/// A claim's selection must name real axes (or a recorded figure) and match at least one cell.
pub(super) fn check_selection(
    c: &mut Checker,
    spec: &Spec,
    m: &Matrix,
    cells: &[Cell],
    at: &str,
    sel: &IndexMap<String, Value>,
) {
    if let Some(name) = sel.get("recorded") {
        let name = name.as_str().unwrap_or_default();
        if !spec.recorded.contains_key(name) {
            let help = did_you_mean(name, spec.recorded.keys().map(String::as_str))
                .unwrap_or_else(|| "add the figure under `recorded:`".into());
            c.error(
                &format!("{at}.recorded"),
                format!("recorded figure `{name}` is not defined"),
                help,
            );
        }
        if sel.len() > 1 {
            c.error(
                at,
                "a `recorded` selection cannot also name axes",
                "keep only `recorded: <name>`",
            );
        }
        return;
    }
    let mut known = true;
    for key in sel.keys() {
        if !m.axes.contains_key(key) {
            known = false;
            let help = did_you_mean(key, m.axes.keys().map(String::as_str))
                .unwrap_or_else(|| "select by matrix axes, or use `recorded: <name>`".into());
            c.error_at_key(&child_path(at, key), format!("unknown axis `{key}`"), help);
        }
    }
    let matches = |cell: &Cell| {
        sel.iter()
            .all(|(k, v)| cell.params.get(k).is_some_and(|w| values_equal(v, w)))
    };
    if known && !sel.is_empty() && !cells.iter().any(matches) {
        c.error(
            at,
            "selection matches no cell of the matrix",
            "check the values against the matrix axes",
        );
    }
}

/// An assertion of the claim's own form, for help texts: a comparison's statistics differ
/// from a summary's and a sweep's.
fn assertion_example(claim: &crate::spec::Claim) -> &'static str {
    match crate::spec::claim::Form::of(claim) {
        crate::spec::claim::Form::Comparison => "ratio_ci_low > 1",
        crate::spec::claim::Form::Sweep => "ci_low >= 4",
        crate::spec::claim::Form::Fit => "ci_high < 0",
        crate::spec::claim::Form::Summary => "ci_low >= 0.95",
    }
}
