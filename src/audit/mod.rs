//! The audit: which results stand, which are superseded, and which numbers no longer follow from
//! the data. Each check is a function from the project's files to findings; nothing is written.

mod claims;
mod coverage;
mod regeneration;
mod supersession;
mod validity;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::registry::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A number or a structure is wrong.
    Error,
    /// Something a reader must know before relying on the report (stale, incomplete, unverifiable).
    Warning,
    /// Context, such as what changed between versions; does not fail the audit.
    Note,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub tr: String,
    pub severity: Severity,
    /// Which check found it: supersession, spec, staleness, regeneration, claim, plan-vs-data,
    /// provenance, validity.
    pub check: &'static str,
    pub message: String,
    /// `file:line:column` (or `file`) when the finding has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Finding {
    fn new(
        tr: &str,
        severity: Severity,
        check: &'static str,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            tr: tr.to_owned(),
            severity,
            check,
            message: message.into(),
            location: None,
        }
    }

    fn at(mut self, location: impl Into<String>) -> Finding {
        self.location = Some(location.into());
        self
    }

    /// A diagnostic (from validation or rendering) as a finding at its place.
    fn from_diagnostic(tr: &str, check: &'static str, d: &Diagnostic) -> Finding {
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            let _ = write!(message, " (help: {help})");
        }
        Finding {
            tr: tr.to_owned(),
            severity: Severity::Error,
            check,
            message,
            location: d.place(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Audit {
    /// The TRs audited, in id order.
    pub audited: Vec<String>,
    pub findings: Vec<Finding>,
}

impl Audit {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Errors and warnings fail the audit; notes do not.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.severity != Severity::Note)
    }

    /// Grouped by TR, then by severity.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for tr in &self.audited {
            let mine: Vec<&Finding> = self.findings.iter().filter(|f| &f.tr == tr).collect();
            if mine.is_empty() {
                let _ = writeln!(out, "{tr}: ok");
                continue;
            }
            let _ = writeln!(out, "{tr}:");
            for severity in [Severity::Error, Severity::Warning, Severity::Note] {
                for f in mine.iter().filter(|f| f.severity == severity) {
                    let at = f
                        .location
                        .as_ref()
                        .map(|l| format!("{l}: "))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  {:<7} {:<13} {at}{}",
                        severity.label(),
                        f.check,
                        f.message
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "\n{} report(s) audited: {} error(s), {} warning(s), {} note(s)",
            self.audited.len(),
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Note)
        );
        out
    }
}

/// Audits the given TRs (all when `only` is empty). `problems` are the registry's load
/// problems; those about an audited TR become findings.
pub fn audit(root: &Path, registry: &Registry, problems: &Diagnostics, only: &[String]) -> Audit {
    let mut audited: Vec<String> = registry
        .specs
        .keys()
        .chain(registry.broken.keys())
        .cloned()
        .collect();
    audited.sort();
    audited.dedup();
    if !only.is_empty() {
        audited.retain(|id| only.contains(id));
    }
    let mut findings = supersession::check(registry, problems, &audited);
    // Each TR's measured runs, from the journal read below, for the catalogue's counts.
    let mut recorded: HashMap<String, Option<usize>> = HashMap::new();
    for id in &audited {
        let Some(loaded) = registry.specs.get(id) else {
            continue;
        };
        // One read of the journal serves the plan-vs-data and provenance checks.
        let journal = crate::store::TrPaths::new(root, id).runs();
        let digests = crate::record::journal::has_finished_runs(&journal)
            .then(|| crate::record::journal::read_digests(&journal));
        match &digests {
            Some(Ok(d)) => {
                recorded.insert(id.clone(), Some(crate::report::measured_runs(d)));
            }
            None => {
                recorded.insert(id.clone(), None);
            }
            Some(Err(_)) => {}
        }
        findings.extend(coverage::check(root, loaded, digests.as_ref()));
        // One render serves the drift check and the claims (it re-derives them already).
        let rendered = crate::report::render(root, registry, loaded);
        findings.extend(claims::check(
            root,
            loaded,
            rendered.as_ref().ok().map(|r| r.claims.as_slice()),
            digests.as_ref().and_then(|d| d.as_ref().ok()),
        ));
        if let Ok(r) = &rendered {
            findings.extend(validity::check(root, loaded, &r.issues));
            findings.extend(claims::replications(loaded, &r.replications));
        }
        findings.extend(regeneration::check(root, loaded, &rendered));
    }
    if only.is_empty() {
        let (checked, more) = catalogue(root, registry, &recorded);
        findings.extend(more);
        if checked {
            audited.push(CATALOGUE.to_owned());
        }
    }
    // Stable output: by TR, then severity, then check; within that, in the order found.
    findings.sort_by(|a, b| (&a.tr, a.severity).cmp(&(&b.tr, b.severity)));
    Audit { audited, findings }
}

/// What catalogue findings are filed under.
pub const CATALOGUE: &str = "catalogue";

/// The catalogue's own claims (experiments/catalogue/claims.yaml), checked against the
/// specs; whether there were any, and the findings.
fn catalogue(
    root: &Path,
    registry: &Registry,
    recorded: &HashMap<String, Option<usize>>,
) -> (bool, Vec<Finding>) {
    let known: Vec<String> = registry.specs.keys().cloned().collect();
    let loaded = match crate::catalogue::load(root, &known) {
        Ok(Some(l)) => l,
        Ok(None) => return (false, Vec::new()),
        Err(errors) => {
            return (
                true,
                errors
                    .0
                    .iter()
                    .map(|d| Finding::from_diagnostic(CATALOGUE, "claim", d))
                    .collect(),
            );
        }
    };
    let counts = match crate::report::catalogue_counts(registry, recorded) {
        Ok(c) => c,
        Err(e) => {
            let f = Finding::new(
                CATALOGUE,
                Severity::Error,
                "claim",
                format!("cannot count the reports: {e}"),
            );
            return (true, vec![f]);
        }
    };
    let findings = crate::catalogue::check(&loaded.claims, &counts)
        .into_iter()
        .zip(&loaded.places)
        .filter(|(c, _)| !c.holds)
        .map(|(c, place)| {
            Finding::new(
                CATALOGUE,
                Severity::Error,
                "claim",
                format!(
                    "catalogue claim `{}` does not hold: {} (source: {})",
                    c.id, c.detail, loaded.claims.source
                ),
            )
            .at(place.clone())
        })
        .collect();
    (true, findings)
}
