//! Validity: results the data is too thin or too noisy to carry, by the spec's `validity`
//! thresholds (analysis::validity, the same issues the report lists as threats). A cell with
//! too few runs is placed at each claim that uses it; the rest at the journal. Requests mixing
//! warm and cold prompt caches are a note: they say how to read TTFT, not that runs failed.

use indexmap::IndexMap;
use serde_json::Value;

use super::claims::selects;
use super::{Finding, Severity};
use crate::analysis::validity::IssueKind;
use crate::report::ValidityIssue;
use crate::spec::LoadedSpec;

/// Whether a cell's parameters fall within a claim's selections (`where` merged with each
/// compared side, or `where` alone).
fn uses_cell(claim: &crate::spec::Claim, params: &IndexMap<String, Value>) -> bool {
    let get = |k: &str| params.get(k);
    match &claim.compare {
        Some(c) => selects(claim, &c.a, get) || selects(claim, &c.b, get),
        None => selects(claim, &IndexMap::new(), get),
    }
}

pub fn check(
    root: &std::path::Path,
    loaded: &LoadedSpec,
    issues: &[ValidityIssue],
) -> Vec<Finding> {
    let id = &loaded.spec.id;
    let journal = crate::store::TrPaths::new(root, id).runs();
    let mut out = Vec::new();
    for v in issues {
        let message = format!("cell {}: {}", v.cell_label, v.issue.message);
        let cell = loaded
            .cells
            .iter()
            .find(|c| crate::plan::cell_id(c) == v.cell_id);
        let claims: Vec<usize> = match (v.issue.kind, cell) {
            (IssueKind::FewRuns, Some(cell)) => loaded
                .spec
                .claims
                .iter()
                .enumerate()
                .filter(|(_, c)| c.metric.is_some() && uses_cell(c, &cell.params))
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        };
        // Mixed cache states are context for reading TTFT, not a flaw of the runs.
        let severity = match v.issue.kind {
            IssueKind::MixedCache => Severity::Note,
            _ => Severity::Warning,
        };
        if claims.is_empty() {
            out.push(
                Finding::new(id, severity, "validity", message.clone())
                    .at(journal.display().to_string()),
            );
        }
        for i in claims {
            let claim = &loaded.spec.claims[i];
            let place = loaded
                .error_at(&format!("claims[{i}]"), "")
                .place()
                .unwrap_or_default();
            out.push(
                Finding::new(
                    id,
                    Severity::Warning,
                    "validity",
                    format!("claim `{}` rests on {message}", claim.id),
                )
                .at(place),
            );
        }
    }
    out
}
