//! The checks of a spec's scaling fits (`scaling:`) and of the claims on them (`fit:`): a fit
//! needs a per-run metric, something positive and numeric to fit it against that varies across
//! the cells it takes in, and nothing else varying there.

use indexmap::IndexMap;
use serde_json::Value;

use super::claims::check_selection;
use super::{Checker, compact};
use crate::diagnostic::did_you_mean;
use crate::spec::matrix::Matrix;
use crate::spec::source_map::index_path;
use crate::spec::{Cell, MODEL_FACTS, Spec, metrics};

pub(super) fn check_scaling(c: &mut Checker, spec: &Spec, m: &Matrix, cells: &[Cell]) {
    for (i, fit) in spec.scaling.iter().enumerate() {
        let at = index_path("scaling", i);
        if spec.scaling[..i].iter().any(|other| other.id == fit.id) {
            c.error(
                &format!("{at}.id"),
                format!("scaling fit id `{}` is used twice", fit.id),
                "give each fit its own id",
            );
        }
        if !fit
            .id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            || fit.id.is_empty()
        {
            c.error(
                &format!("{at}.id"),
                format!("`{}` cannot name a figure's file", fit.id),
                "use letters, digits, `_` and `-`, e.g. `decode_vs_params`",
            );
        }
        if !metrics::per_run().any(|name| name == fit.metric) {
            let help = if metrics::is_known(&fit.metric) {
                format!(
                    "`{}` is not measured per run; fit a per-run metric (docs/metrics.md)",
                    fit.metric
                )
            } else {
                did_you_mean(&fit.metric, metrics::per_run())
                    .unwrap_or_else(|| "see docs/metrics.md for the per-run metrics".into())
            };
            c.error(
                &format!("{at}.metric"),
                format!("`{}` cannot be fitted run by run", fit.metric),
                help,
            );
        }
        for (field, bound) in [("from", &fit.from), ("to", &fit.to)] {
            if let Err(e) = crate::spec::Scaling::bound(bound) {
                c.error(
                    &format!("{at}.{field}"),
                    format!("cannot read the bound: {e}"),
                    "write a positive number, or a count such as 50M or 1.5B",
                );
            }
        }
        if let Ok((Some(from), Some(to))) = fit.bounds()
            && from >= to
        {
            c.error(
                &format!("{at}.to"),
                format!("`to` ({to}) is not above `from` ({from}): the fit would be over nothing"),
                "swap them, or widen the range",
            );
        }
        // What the fit runs along: the model axis for a model fact, else the axis named.
        let along = if MODEL_FACTS.contains(&fit.against.as_str()) {
            if !m.axes.contains_key("model") {
                c.error(
                    &format!("{at}.against"),
                    format!(
                        "`{}` is a fact of each cell's model, but the matrix has no `model` axis",
                        fit.against
                    ),
                    "add a `model` axis (docs/spec.md, Models), or fit against a numeric axis",
                );
                continue;
            }
            "model"
        } else if let Some(values) = m.axes.get(&fit.against) {
            if let Some(bad) = values.iter().find(|v| v.as_f64().is_none_or(|x| x <= 0.0)) {
                c.error(
                    &format!("{at}.against"),
                    format!(
                        "axis `{}` has the value {}, but a power law is fitted on logarithms of positive numbers",
                        fit.against,
                        compact(bad)
                    ),
                    format!(
                        "fit against a numeric axis, or against the model's {}",
                        MODEL_FACTS.join(" or ")
                    ),
                );
                continue;
            }
            fit.against.as_str()
        } else {
            let choices: Vec<&str> = MODEL_FACTS
                .iter()
                .copied()
                .chain(m.axes.keys().map(String::as_str))
                .collect();
            let help = did_you_mean(&fit.against, choices.iter().copied())
                .unwrap_or_else(|| format!("fit against one of: {}", choices.join(", ")));
            c.error(
                &format!("{at}.against"),
                format!("`{}` is neither a model fact nor an axis", fit.against),
                help,
            );
            continue;
        };
        let where_at = format!("{at}.where");
        if fit.selection.contains_key("recorded") {
            c.error(
                &where_at,
                "a fit is of measured runs, but `where` names a recorded figure",
                "select cells by their axes, e.g. `where: {backend: llama}`",
            );
            continue;
        }
        let errors_before = c.errors.0.len();
        check_selection(c, spec, m, cells, &where_at, &fit.selection);
        // A selection already found wrong says nothing more about what it would pool.
        if c.errors.0.len() > errors_before {
            continue;
        }
        if fit.selection.contains_key(along) {
            c.error(
                &where_at,
                format!("the fit runs along `{along}`, so `where` cannot fix it"),
                format!("remove `{along}` from `where`"),
            );
            continue;
        }
        let params: Vec<IndexMap<String, Value>> = cells.iter().map(|c| c.params.clone()).collect();
        let varying = crate::spec::matrix::pooled_axes(&params, &fit.selection);
        if let Some((axis, values)) = varying.iter().find(|(axis, _)| axis != along) {
            let listed: Vec<String> = values.iter().map(compact).collect();
            c.error(
                &where_at,
                format!(
                    "the fit would pool cells that differ in {axis} ({}) as well as in {along}: its exponent would mix the two",
                    listed.join(", ")
                ),
                format!(
                    "fix `{axis}` in `where` (e.g. `{axis}: {}`), one fit per value",
                    compact(&values[0])
                ),
            );
        } else if !varying.iter().any(|(axis, _)| axis == along) {
            c.error(
                &where_at,
                format!("the cells selected all have the same {along}: there is nothing to fit"),
                format!("give `{along}` at least two values in the matrix"),
            );
        }
    }
    for (i, claim) in spec.claims.iter().enumerate() {
        let Some(id) = &claim.fit else { continue };
        let at = index_path("claims", i);
        if !spec.scaling.iter().any(|f| &f.id == id) {
            let help = did_you_mean(id, spec.scaling.iter().map(|f| f.id.as_str()))
                .unwrap_or_else(|| "define the fit under `scaling:`".into());
            c.error(
                &format!("{at}.fit"),
                format!("scaling fit `{id}` is not defined"),
                help,
            );
        }
        let extra = [
            ("metric", claim.metric.is_some()),
            ("where", !claim.selection.is_empty()),
            ("compare", claim.compare.is_some()),
            ("of", !claim.of.is_empty()),
            ("derive", claim.derive.is_some()),
            ("scale", claim.scale.is_some()),
            ("pool", claim.pool),
        ];
        for (field, present) in extra {
            if present {
                c.error_at_key(
                    &format!("{at}.{field}"),
                    format!("a claim on a fit states its exponent; `{field}` has no place in it"),
                    "the fit's own `metric`, `against` and `where` say what is fitted: remove it",
                );
            }
        }
        // An exponent has no unit: "-0.8", not "-80%".
        if let Some(Ok(stated)) = claim
            .stated
            .as_deref()
            .map(crate::spec::claim::Stated::parse)
            && stated.unit != crate::spec::claim::Unit::Other(String::new())
        {
            c.error(
                &format!("{at}.stated"),
                "a fit's figure is its exponent, a plain number",
                "state it without a unit, e.g. `stated: \"-0.80\"`",
            );
        }
    }
}
