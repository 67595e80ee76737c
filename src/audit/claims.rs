//! Claims re-evaluated from the data (or their recorded figures), and comparisons whose two
//! sides were recorded on different machines or server builds.

use std::collections::BTreeSet;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value;

use super::{Finding, Severity};
use crate::analysis::{self, claims::Basis, claims::ClaimCheck, claims::Outcome};
use crate::record::{self, journal};
use crate::spec::matrix::values_equal;
use crate::spec::{Claim, LoadedSpec, Status};
use crate::store::TrPaths;

/// Where a claim's field sits in the spec, as `file:line:column`.
fn location(loaded: &LoadedSpec, index: usize, field: &str) -> String {
    let d = loaded.error_at(&format!("claims[{index}].{field}"), "");
    d.place()
        .unwrap_or_else(|| loaded.path.display().to_string())
}

/// `rendered` holds the claims as the report rendered now shows them; without it (the report
/// does not render) they are evaluated here. `digests` is the TR's journal, when it has one
/// and it could be read (for the provenance check).
pub fn check(
    root: &Path,
    loaded: &LoadedSpec,
    rendered: Option<&[ClaimCheck]>,
    digests: Option<&journal::Digests>,
) -> Vec<Finding> {
    let id = &loaded.spec.id;
    if loaded.spec.claims.is_empty() {
        return Vec::new();
    }
    let has_runs = journal::has_finished_runs(&TrPaths::new(root, id).runs());
    let evaluated = match rendered {
        Some(checks) => Ok(checks.to_vec()),
        None if has_runs => analysis::analyze(root, loaded)
            .map(|a| a.claims)
            .map_err(|e| format!("cannot analyse the data to check the claims: {e}")),
        None => analysis::claims::evaluate(loaded, Default::default())
            .map_err(|e| format!("cannot evaluate the claims: {e}")),
    };
    let checks = match evaluated {
        Ok(c) => c,
        Err(message) => return vec![Finding::new(id, Severity::Error, "claim", message)],
    };
    let mut out = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        let field = if c.stated.is_some() {
            "stated"
        } else {
            "assert"
        };
        let at = location(loaded, i, field);
        let finding = match (c.outcome, c.basis) {
            (Outcome::Fails, Basis::Recorded) => Some(Finding::new(
                id,
                Severity::Error,
                "claim",
                format!(
                    "claim `{}` does not follow from its recorded figures: {}",
                    c.id, c.detail
                ),
            )),
            (Outcome::Fails, _) => Some(Finding::new(
                id,
                Severity::Error,
                "claim",
                format!("claim `{}` does not hold: {}", c.id, c.detail),
            )),
            (Outcome::Holds, Basis::Recorded) => Some(Finding::new(
                id,
                Severity::Warning,
                "claim",
                format!(
                    "claim `{}` is unverifiable: it rests only on recorded figures (its arithmetic holds: {})",
                    c.id, c.detail
                ),
            )),
            (Outcome::Holds, Basis::Mixed) => Some(Finding::new(
                id,
                Severity::Warning,
                "claim",
                format!(
                    "claim `{}` rests partly on recorded figures, which cannot be checked here ({})",
                    c.id, c.detail
                ),
            )),
            (Outcome::Holds, Basis::Data) => None,
            (Outcome::NoData, _) => {
                let severity = if loaded.spec.status == Status::Complete {
                    Severity::Warning
                } else {
                    Severity::Note
                };
                Some(Finding::new(
                    id,
                    severity,
                    "claim",
                    format!("claim `{}` cannot be checked yet: {}", c.id, c.detail),
                ))
            }
        };
        out.extend(finding.map(|f| f.at(at)));
    }
    if let Some(digests) = digests {
        out.extend(mixed_provenance(root, loaded, digests));
    }
    out
}

/// Claims comparing runs recorded under different hardware or server builds.
fn mixed_provenance(root: &Path, loaded: &LoadedSpec, journal: &journal::Digests) -> Vec<Finding> {
    let paths = TrPaths::new(root, &loaded.spec.id);
    let manifest = match record::read_manifest(&paths) {
        Ok(Some(manifest)) => manifest,
        Ok(None) => return Vec::new(),
        // Without the manifest, a change of machine or build between sessions cannot be seen.
        Err(d) => {
            return vec![Finding::new(
                &loaded.spec.id,
                Severity::Error,
                "provenance",
                format!(
                    "{}: {}; {}",
                    d.place().unwrap_or_default(),
                    d.message,
                    d.help.unwrap_or_default()
                ),
            )];
        }
    };
    let mut out = Vec::new();
    for (i, claim) in loaded.spec.claims.iter().enumerate() {
        let Some(cmp) = &claim.compare else { continue };
        if cmp.a.contains_key("recorded") || cmp.b.contains_key("recorded") {
            continue;
        }
        // Along the hardware axis the machines differ on purpose; each side must still be
        // one machine (and one build) of its own.
        let along_hardware = matches!(
            (cmp.a.get("hardware"), cmp.b.get("hardware")),
            (Some(a), Some(b)) if !values_equal(a, b)
        );
        let sides: Vec<(&str, Vec<&IndexMap<String, Value>>)> = if along_hardware {
            vec![(" on side A", vec![&cmp.a]), (" on side B", vec![&cmp.b])]
        } else {
            vec![("", vec![&cmp.a, &cmp.b])]
        };
        let mut mixed = Vec::new();
        for (side, selections) in sides {
            let sessions: BTreeSet<u32> = journal
                .runs
                .iter()
                .filter(|r| {
                    let Some(params) = journal.params.get(&r.cell_id) else {
                        return false;
                    };
                    !r.warmup
                        && selections
                            .iter()
                            .any(|sel| selects(claim, sel, |k| params.get(k)))
                })
                .map(|r| r.session)
                .collect();
            let used: Vec<&record::Session> = manifest
                .sessions
                .iter()
                .filter(|s| sessions.contains(&s.id))
                .collect();
            let hosts: BTreeSet<String> = used
                .iter()
                .map(|s| {
                    format!(
                        "{} ({} CPUs, {:.1} GB)",
                        s.host.cpu, s.host.logical_cpus, s.host.memory_gb
                    )
                })
                .collect();
            let builds: BTreeSet<String> = used
                .iter()
                .flat_map(|s| s.servers.iter().filter_map(|v| v.build.clone()))
                .collect();
            if hosts.len() > 1 {
                mixed.push(format!(
                    "machines{side} {}",
                    hosts.into_iter().collect::<Vec<_>>().join(" / ")
                ));
            }
            if builds.len() > 1 {
                mixed.push(format!(
                    "server builds{side} {}",
                    builds.into_iter().collect::<Vec<_>>().join(" / ")
                ));
            }
        }
        if !mixed.is_empty() {
            out.push(
                Finding::new(
                    &loaded.spec.id,
                    Severity::Warning,
                    "provenance",
                    if along_hardware {
                        format!(
                            "claim `{}` compares hardware values, as it may, but within a side its runs were recorded on different {}",
                            claim.id,
                            mixed.join(" and ")
                        )
                    } else {
                        format!(
                            "claim `{}` compares runs recorded on different {}",
                            claim.id,
                            mixed.join(" and ")
                        )
                    },
                )
                .at(location(loaded, i, "compare")),
            );
        }
    }
    out
}

/// Whether parameters (looked up by `param`) match a claim side, narrowed by the claim's
/// `where`.
pub(super) fn selects<'p>(
    claim: &Claim,
    side: &IndexMap<String, Value>,
    param: impl Fn(&str) -> Option<&'p Value>,
) -> bool {
    claim
        .selection
        .iter()
        .chain(side.iter())
        .all(|(k, v)| param(k).is_some_and(|w| values_equal(v, w)))
}

/// Each replication's verdicts: a claim whose original figure lies outside the replication's
/// interval does not replicate (a warning: the finding may be true of one machine only); a
/// replication short of runs is said so.
pub fn replications(
    loaded: &LoadedSpec,
    replications: &[analysis::replication::Replication],
) -> Vec<Finding> {
    use analysis::replication::Agreement;
    let id = &loaded.spec.id;
    let mut out = Vec::new();
    for r in replications {
        let place = format!("data/{id}/replications/{}/runs.jsonl", r.name);
        if r.runs < r.planned {
            out.push(
                Finding::new(
                    id,
                    Severity::Warning,
                    "replication",
                    format!(
                        "replication `{}` has {} of {} planned measured runs; `banterhearts replicate {id} --name {}` resumes it",
                        r.name, r.runs, r.planned, r.name
                    ),
                )
                .at(place.clone()),
            );
        }
        for (i, c) in r.claims.iter().enumerate() {
            if c.agreement == Agreement::Differs {
                out.push(
                    Finding::new(
                        id,
                        Severity::Warning,
                        "replication",
                        format!(
                            "claim `{}` does not replicate in `{}`: {}",
                            c.id, r.name, c.sentence
                        ),
                    )
                    .at(location(loaded, i, "id")),
                );
            }
        }
        out.push(Finding::new(
            id,
            Severity::Note,
            "replication",
            format!(
                "replication `{}` on {}: {} of {} claims consistent, {} differ",
                r.name,
                if r.machines.is_empty() {
                    "an unrecorded machine".to_owned()
                } else {
                    r.machines.join("; ")
                },
                r.count(Agreement::Consistent),
                r.claims.len(),
                r.count(Agreement::Differs)
            ),
        ));
    }
    out
}
