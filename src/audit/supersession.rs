//! Supersession integrity (from the registry's checks: targets exist, no cycles, one current
//! successor, a reason on every link) and what changed between a report and its predecessor.

use super::{Finding, Severity};
use crate::diagnostic::Diagnostics;
use crate::registry::Registry;
use crate::spec::LoadedSpec;

pub fn check(registry: &Registry, problems: &Diagnostics, audited: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in &problems.0 {
        let tr = d
            .file
            .as_ref()
            .and_then(|f| f.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !audited.contains(&tr) {
            continue;
        }
        let check = if d
            .field
            .as_deref()
            .is_some_and(|f| f.starts_with("supersedes"))
        {
            "supersession"
        } else {
            "spec"
        };
        out.push(Finding::from_diagnostic(&tr, check, d));
    }
    for id in audited {
        let Some(new) = registry.specs.get(id) else {
            continue;
        };
        let Some(link) = &new.spec.supersedes else {
            continue;
        };
        let Some(old) = registry.specs.get(&link.id) else {
            continue;
        };
        if link.reason.trim().is_empty() {
            out.push(
                Finding::new(
                    id,
                    Severity::Error,
                    "supersession",
                    format!("supersedes {} without a reason", old.spec.id),
                )
                .at(new.path.display().to_string()),
            );
        }
        let changes = what_changed(old, new);
        if !changes.is_empty() {
            out.push(Finding::new(
                id,
                Severity::Note,
                "supersession",
                format!("changed since {}: {}", old.spec.id, changes.join("; ")),
            ));
        }
    }
    out
}

/// Method and headline figures that differ between two versions.
pub fn what_changed(old: &LoadedSpec, new: &LoadedSpec) -> Vec<String> {
    let mut out = Vec::new();
    let (o, n) = (&old.spec, &new.spec);
    if old.cells.len() != new.cells.len() {
        out.push(format!("cells {} -> {}", old.cells.len(), new.cells.len()));
    }
    if o.repetitions != n.repetitions {
        out.push(format!(
            "repetitions {} -> {}",
            o.repetitions, n.repetitions
        ));
    }
    let (old_axes, new_axes): (Vec<&String>, Vec<&String>) = (
        old.matrix.axes.keys().collect(),
        new.matrix.axes.keys().collect(),
    );
    if old_axes != new_axes {
        let names = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        out.push(format!(
            "axes [{}] -> [{}]",
            names(&old_axes),
            names(&new_axes)
        ));
    }
    if o.order != n.order {
        out.push(format!("order {} -> {}", o.order, n.order));
    }
    for (name, was) in &o.recorded {
        if let Some(now) = n.recorded.get(name)
            && was.value != now.value
        {
            let unit = now
                .unit
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            // Percentages change by points; other figures by a relative change.
            let change = if now.unit.as_deref() == Some("%") {
                format!(" ({:+.3}pp)", now.value - was.value)
            } else if was.value != 0.0 {
                format!(" ({:+.1}%)", (now.value / was.value - 1.0) * 100.0)
            } else {
                String::new()
            };
            out.push(format!(
                "{name} {}{unit} -> {}{unit}{change}",
                was.value, now.value
            ));
        }
    }
    for claim in &o.claims {
        if let Some(now) = n.claims.iter().find(|c| c.id == claim.id)
            && now.stated != claim.stated
        {
            let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "nothing".into());
            out.push(format!(
                "claim `{}` stated {} -> {}",
                claim.id,
                show(&claim.stated),
                show(&now.stated)
            ));
        }
    }
    out
}
