//! Specs: parsing a TR's YAML into typed values, validating it, and expanding its matrix.

pub mod claim;
pub mod load;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod params;
mod source_map;
mod types;
mod validate;

use std::path::{Path, PathBuf};

pub use matrix::{Cell, Matrix};
pub use source_map::SourceMap;
pub use types::*;

use crate::diagnostic::{Diagnostic, Diagnostics, Location, did_you_mean};

/// A spec that parsed and passed every per-file check, with its expanded cells.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub source: String,
    pub spec: Spec,
    pub matrix: Matrix,
    pub cells: Vec<Cell>,
    pub source_map: SourceMap,
    /// What may mislead in the spec without making it invalid (a claim pooling cells).
    pub warnings: Vec<Diagnostic>,
}

impl LoadedSpec {
    /// Whether any cell runs a `load` scenario (its runs have request files and load figures).
    pub fn has_load_cells(&self) -> bool {
        self.cells.iter().any(|c| {
            c.params
                .get("scenario")
                .is_some_and(|s| s.get("kind").and_then(serde_json::Value::as_str) == Some("load"))
        })
    }

    /// A diagnostic for `field` of this spec, pointing at the field's value.
    pub fn error_at(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message)
            .in_file(&self.path)
            .at(self.source_map.value(field), &self.source)
            .field(field)
    }
}

/// Reads, parses and validates one spec file.
pub fn load(path: &Path) -> Result<LoadedSpec, Diagnostics> {
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::new(format!("cannot read spec: {e}"))
            .in_file(path)
            .help("check the path; specs live in experiments/<TR>.yaml")
    })?;
    parse(path, crate::diagnostic::utf8_text(path, bytes)?)
}

/// Parses and validates spec text; `path` names the file in messages and anchors relative paths.
pub fn parse(path: &Path, source: String) -> Result<LoadedSpec, Diagnostics> {
    let spec: Spec = yaml_serde::from_str(&source).map_err(|e| yaml_error(path, &source, &e))?;
    let source_map = SourceMap::new(&source);
    let validate::Checked {
        matrix,
        cells,
        warnings,
    } = validate::check(path, &source, &source_map, &spec)?;
    Ok(LoadedSpec {
        path: path.to_path_buf(),
        source,
        spec,
        matrix,
        cells,
        source_map,
        warnings,
    })
}

/// Turns a serde/YAML error into a diagnostic with the field path and a suggestion.
fn yaml_error(path: &Path, source: &str, err: &yaml_serde::Error) -> Diagnostic {
    let mut text = err.to_string();
    if let Some(i) = text.find(" at line ") {
        text.truncate(i);
    }
    // The syntax hint fits only a position the parser chose itself.
    let placed = err.location().is_some();
    let location = Some(yaml_location(source, err));
    // yaml_serde prefixes the field path ("matrix.exclude[0]: ...") unless the error is at the root.
    let (mut field, message) = match text.split_once(": ") {
        Some((p, rest)) if !p.contains(char::is_whitespace) => (p.to_owned(), rest.to_owned()),
        _ => (String::new(), text.clone()),
    };
    let message = plain_type_names(&message);
    let expected = backticked_after(&message, "expected");
    let help = if let Some(name) =
        first_backticked(&message).filter(|_| message.starts_with("unknown field"))
    {
        field = source_map::child_path(&field, &name);
        Some(
            did_you_mean(&name, expected.iter().map(String::as_str)).unwrap_or_else(|| {
                format!("remove `{name}`; allowed here: {}", expected.join(", "))
            }),
        )
    } else if let Some(name) =
        first_backticked(&message).filter(|_| message.starts_with("unknown variant"))
    {
        let hint = did_you_mean(&name, expected.iter().map(String::as_str))
            .unwrap_or_else(|| format!("use one of: {}", expected.join(", ")));
        Some(if name == "superseded" {
            "`superseded` is derived from the successor's `supersedes`; set this TR's status to `complete`".into()
        } else {
            hint
        })
    } else if let Some(name) =
        first_backticked(&message).filter(|_| message.starts_with("missing field"))
    {
        Some(format!(
            "add `{name}:` {}",
            if field.is_empty() {
                "at the top level".into()
            } else {
                format!("under `{field}`")
            }
        ))
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        message
            .split_once("expected ")
            .map(|(_, want)| format!("write {want} here"))
    } else if !expected.is_empty() {
        Some(format!("use one of: {}", expected.join(", ")))
    } else if message.contains("more than one document") {
        Some("a spec is one YAML document: remove the `---` here and what follows it, or merge the two".into())
    } else if placed && field.is_empty() && !message.contains('`') {
        Some("fix the YAML syntax at this position (indentation, a missing `:` or an unclosed bracket)".into())
    } else {
        None
    };
    let mut d = Diagnostic::new(message)
        .in_file(path)
        .at(location, source)
        .field(field);
    d.help = help;
    d
}

/// Where a YAML error is, always inside the file: yaml_serde gives some errors no position,
/// and places one at the end of a file without a final newline on a line past its last.
pub fn yaml_location(source: &str, err: &yaml_serde::Error) -> Location {
    match err.location() {
        Some(l) => source_map::within(
            source,
            Location {
                line: l.line(),
                column: l.column(),
            },
        ),
        None => source_map::unplaced_error(source, &err.to_string()),
    }
}

/// serde speaks Rust ("expected i64"); users write YAML.
fn plain_type_names(message: &str) -> String {
    let Some((head, want)) = message.rsplit_once("expected ") else {
        return message.to_owned();
    };
    let want = match want {
        "i64" | "i32" | "u64" | "u32" | "usize" => "a whole number",
        "f64" | "f32" => "a number",
        "a sequence" => "a list",
        "a string" => "text",
        w if w.starts_with("struct ") || w == "a map" => "a mapping (`key: value` lines)",
        w => w,
    };
    format!("{head}expected {want}")
}

fn first_backticked(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_owned())
}

/// All `quoted` names after `word`, e.g. the allowed fields in "expected one of `a`, `b`".
fn backticked_after(text: &str, word: &str) -> Vec<String> {
    let Some(i) = text.find(word) else {
        return Vec::new();
    };
    text[i..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `TR<digits>` followed by an optional suffix of letters, digits, `_`, `-` or `.`;
/// never a path (no `/`, no `..`).
pub fn is_valid_tr_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("TR") else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let suffix = &rest[digits..];
    digits > 0
        && !suffix.contains("..")
        && suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !suffix.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tr_ids() {
        for ok in [
            "TR1",
            "TR124",
            "TR114_v2",
            "TR118_v2.2",
            "TR121v1",
            "TR117_multi_agent",
        ] {
            assert!(is_valid_tr_id(ok), "{ok}");
        }
        for bad in [
            "../x",
            "TR",
            "tr124",
            "TR124/../x",
            "TRx",
            "TR12..3",
            "TR12 ",
            "TR1.",
        ] {
            assert!(!is_valid_tr_id(bad), "{bad}");
        }
    }
}
