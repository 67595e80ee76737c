//! The reports index (reports/README.md): every TR by phase and status, supersession, key
//! findings, a Mermaid graph, and totals counted from the specs and the journals; and the same
//! counts for the catalogue's own claims.

use std::path::Path;

use indexmap::IndexMap;
use minijinja::Value;
use minijinja::value::Serde;

use super::{INDEX_TEMPLATE, ReportError, environment, key_finding, reports_dir, template_error};
use crate::record;
use crate::registry::{EffectiveStatus, Registry};
use crate::spec::LoadedSpec;
use crate::store::TrPaths;

/// How many runs a report stands for, and where the figure comes from.
struct ReportRuns {
    /// Measured runs in its journal here, in its matrix, and as the report states them.
    recorded: Option<usize>,
    planned: Option<usize>,
    stated: Option<f64>,
    /// The best of those, and which it is.
    runs: Option<f64>,
    from: &'static str,
}

const PLANNED_NOT_RUN: &str = "planned, not run";

/// Measured runs in a journal's digests (warm-ups left out).
pub fn measured_runs(digests: &record::journal::Digests) -> usize {
    digests.runs.iter().filter(|x| !x.warmup).count()
}

/// Measured runs in a TR's journal here; None before its first finished run. A damaged
/// journal is an error: counting it as "no runs" would misstate every total built on it.
fn recorded_runs(root: &Path, id: &str) -> Result<Option<usize>, ReportError> {
    let journal = TrPaths::new(root, id).runs();
    if !record::journal::has_finished_runs(&journal) {
        return Ok(None);
    }
    Ok(Some(measured_runs(&record::journal::read_digests(
        &journal,
    )?)))
}

/// The best count there is: the runs `recorded` here, else the matrix, else the report's own
/// figure (`recorded.total_runs`).
fn report_runs(loaded: &LoadedSpec, recorded: Option<usize>) -> ReportRuns {
    let stated = loaded.spec.recorded.get("total_runs").map(|r| r.value);
    let planned =
        (!loaded.matrix.axes.is_empty()).then(|| crate::plan::build(loaded).measured_runs());
    let not_run = loaded.spec.status == crate::spec::Status::Planned;
    let (runs, from) = match (recorded, planned, stated) {
        (Some(n), _, _) => (Some(n as f64), "recorded here"),
        (None, Some(n), _) if not_run => (Some(n as f64), PLANNED_NOT_RUN),
        (None, Some(n), _) => (Some(n as f64), "matrix"),
        (None, None, Some(n)) => (Some(n), "stated"),
        _ => (None, ""),
    };
    ReportRuns {
        recorded,
        planned,
        stated,
        runs,
        from,
    }
}

/// Every report's counts as the index makes them, for the catalogue's claims. `recorded`
/// holds each TR's measured runs here (None: no finished runs), as its caller has already
/// read them from the journals; a TR missing from it is one whose journal could not be read.
pub fn catalogue_counts(
    registry: &Registry,
    recorded: &std::collections::HashMap<String, Option<usize>>,
) -> Result<Vec<crate::catalogue::ReportCount>, String> {
    registry
        .specs
        .iter()
        .map(|(id, loaded)| {
            let recorded = *recorded
                .get(id)
                .ok_or_else(|| format!("the journal of {id} could not be read"))?;
            let r = report_runs(loaded, recorded);
            let superseded = matches!(
                registry.effective_status(id),
                Some(EffectiveStatus::Superseded { .. })
            );
            let planned = loaded.spec.status == crate::spec::Status::Planned;
            Ok(crate::catalogue::ReportCount {
                id: id.clone(),
                current: !superseded && !planned,
                superseded,
                planned,
                runs: r.runs.filter(|_| r.from != PLANNED_NOT_RUN),
            })
        })
        .collect()
}

/// Renders reports/README.md: every TR by phase and status, supersession, key findings,
/// a Mermaid graph and totals counted from the specs and the data.
pub fn render_index(root: &Path, registry: &Registry) -> Result<String, ReportError> {
    let env = environment(root, &[INDEX_TEMPLATE])?;
    let mut reports = Vec::new();
    let mut total_runs = 0usize;
    for (id, loaded) in &registry.specs {
        let ReportRuns {
            recorded: recorded_runs,
            planned: planned_runs,
            stated: stated_runs,
            runs,
            from: runs_from,
        } = report_runs(loaded, recorded_runs(root, id)?);
        // Runs that were made count; runs only planned do not.
        if runs_from != PLANNED_NOT_RUN {
            total_runs += runs.unwrap_or(0.0) as usize;
        }
        let status = registry.effective_status(id);
        let (superseded_by, reason) = match &status {
            Some(EffectiveStatus::Superseded { by, reason }) => {
                (Some(by.clone()), Some(reason.clone()))
            }
            _ => (None, None),
        };
        reports.push(serde_json::json!({
            "id": id, "title": loaded.spec.title, "phase": loaded.spec.phase, "question": loaded.spec.question,
            "status": status.as_ref().map(|s| s.label()).unwrap_or_default(), "declared_status": loaded.spec.status.to_string(),
            "superseded_by": superseded_by, "supersession_reason": reason,
            "supersedes": loaded.spec.supersedes.as_ref().map(|s| s.id.clone()), "builds_on": loaded.spec.builds_on,
            "key_finding": key_finding(root, registry, loaded)?,
            "planned_runs": planned_runs, "recorded_runs": recorded_runs, "stated_runs": stated_runs,
            "runs": runs, "runs_from": runs_from,
            "has_report": reports_dir(root).join(format!("{id}.md")).is_file(),
        }));
    }
    let mut phases: IndexMap<Option<String>, Vec<serde_json::Value>> = IndexMap::new();
    for r in &reports {
        phases
            .entry(r["phase"].as_str().map(str::to_owned))
            .or_default()
            .push(r.clone());
    }
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| reports.iter().filter(|r| f(r)).count();
    let ctx = serde_json::json!({
        "phases": phases.into_iter().map(|(name, reports)| serde_json::json!({"name": name, "reports": reports})).collect::<Vec<_>>(),
        "totals": {
            "reports": reports.len(),
            "current": count(&|r| r["superseded_by"].is_null() && r["declared_status"] != "planned"),
            "superseded": count(&|r| !r["superseded_by"].is_null()),
            "planned": count(&|r| r["declared_status"] == "planned"),
            "runs": total_runs,
        },
        "reports": reports,
    });
    let tmpl = env
        .get_template(INDEX_TEMPLATE)
        .map_err(|e| template_error(root, &e))?;
    tmpl.render(Value::from(Serde(ctx)))
        .map_err(|e| ReportError::Input(template_error(root, &e)))
}
