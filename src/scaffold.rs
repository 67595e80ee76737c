//! `banterhearts new`: a new spec from the starter template, as a copy of another TR, or as the
//! successor of one. The text is edited line by line, so comments and layout survive; the
//! result is validated in memory and written only when it is valid. Nothing is overwritten.

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::registry::{Registry, experiments_dir};
use crate::spec::{self, is_valid_tr_id};
use crate::store::write_atomic;

/// The starter spec, under templates/ so a team can make it its own.
pub const STARTER: &str = "new-spec.yaml";

pub enum Origin<'a> {
    Starter,
    CopyOf(&'a str),
    Supersedes { id: &'a str, reason: &'a str },
}

/// Replaces the value of a top-level `key:` line, or inserts `key: value` after the `after`
/// key (or at the top).
fn set_top_level(source: &str, key: &str, value: &str, after: &str) -> String {
    let prefix = format!("{key}:");
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    let mut skipping = false;
    for line in source.lines() {
        if skipping {
            // A folded or nested value of the replaced key continues on indented lines.
            if line.starts_with(' ') || line.is_empty() {
                continue;
            }
            skipping = false;
        }
        if !replaced && line.starts_with(&prefix) {
            lines.push(format!("{key}: {value}"));
            replaced = true;
            skipping = true;
            continue;
        }
        lines.push(line.to_owned());
    }
    if !replaced {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{after}:")))
            .map_or(0, |i| i + 1);
        lines.insert(at, format!("{key}: {value}"));
    }
    lines.join("\n") + "\n"
}

/// Drops a top-level key with its indented continuation lines.
fn remove_top_level(source: &str, key: &str) -> String {
    let prefix = format!("{key}:");
    let mut out = String::new();
    let mut skipping = false;
    for line in source.lines() {
        if skipping && (line.starts_with(' ') || line.is_empty()) {
            continue;
        }
        skipping = line.starts_with(&prefix);
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Writes experiments/<id>.yaml and returns its path.
pub fn create(root: &Path, id: &str, origin: Origin<'_>) -> Result<PathBuf, Diagnostics> {
    if !is_valid_tr_id(id) {
        return Err(Diagnostic::new(format!("`{id}` is not a TR id"))
            .help("use TR<number> with an optional suffix: TR125, TR114_v3")
            .into());
    }
    let path = experiments_dir(root).join(format!("{id}.yaml"));
    if path.exists() {
        return Err(Diagnostic::new(format!("{id} already exists"))
            .in_file(&path)
            .help("pick the next free number; `new` never overwrites a spec")
            .into());
    }
    let (registry, _) = Registry::load(root);
    if registry.specs.contains_key(id) || registry.broken.contains_key(id) {
        let file = registry
            .specs
            .get(id)
            .map(|s| s.path.clone())
            .or_else(|| registry.broken.get(id).cloned())
            .unwrap_or(path.clone());
        return Err(Diagnostic::new(format!("{id} already exists"))
            .in_file(file)
            .help("pick the next free number; `new` never overwrites a spec")
            .into());
    }
    let source = match origin {
        Origin::Starter => {
            let template = root.join("templates").join(STARTER);
            let text = std::fs::read_to_string(&template).map_err(|e| {
                Diagnostic::new(format!("cannot read the starter spec: {e}"))
                    .in_file(&template)
                    .help("restore templates/new-spec.yaml, or use `--from <TR>`")
            })?;
            text.replace("{{ id }}", id)
        }
        Origin::CopyOf(from) => {
            let base = registry.resolve(from)?;
            let text = set_top_level(&base.source, "id", id, "");
            let text = set_top_level(&text, "status", "planned", "title");
            remove_top_level(&text, "supersedes")
        }
        Origin::Supersedes { id: old, reason } => {
            let base = registry.resolve(old)?;
            if let Some(by) = registry.successor(&base.spec.id) {
                return Err(Diagnostic::new(format!("{old} is already superseded by {by}"))
                    .help(format!("supersede the current head instead: `banterhearts new {id} --supersedes {by} --reason ...`"))
                    .into());
            }
            if reason.trim().is_empty() {
                return Err(Diagnostic::new("a supersession needs a reason")
                    .help("say what the new version fixes: --reason \"corrected the statistics\"")
                    .into());
            }
            let text = set_top_level(&base.source, "id", id, "");
            let text = set_top_level(&text, "status", "planned", "title");
            set_top_level(
                &text,
                "supersedes",
                &format!("{{id: {}, reason: {}}}", base.spec.id, quoted(reason)),
                "status",
            )
        }
    };
    // Validated before anything is written: a spec that would not load is never created.
    spec::parse(&path, source.clone())?;
    write_atomic(&path, source.as_bytes())
        .map_err(|e| Diagnostic::new(format!("cannot write the spec: {e}")).in_file(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_edits_keep_everything_else() {
        let src = "# comment\nid: TR1\ntitle: x\nstatus: complete\nquestion: >-\n  long\n  text\nrepetitions: 3\n";
        let out = set_top_level(src, "id", "TR2", "");
        assert_eq!(out, src.replace("id: TR1", "id: TR2"));
        let out = set_top_level(src, "question", "short", "title");
        assert_eq!(
            out,
            "# comment\nid: TR1\ntitle: x\nstatus: complete\nquestion: short\nrepetitions: 3\n"
        );
        let out = set_top_level(src, "supersedes", "{id: TR0, reason: \"r\"}", "status");
        assert!(out.contains("status: complete\nsupersedes: {id: TR0, reason: \"r\"}\nquestion:"));
        assert_eq!(
            remove_top_level(
                "a: 1\nsupersedes:\n  id: TR0\n  reason: r\nb: 2\n",
                "supersedes"
            ),
            "a: 1\nb: 2\n"
        );
    }
}
