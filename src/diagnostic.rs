//! User-facing errors: what went wrong, where (file, line, column, field path) and what to do.
//!
//! Every error a user can cause ends up as a [`Diagnostic`]; the CLI prints them in a
//! compiler-like format and exits with code 2.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub file: Option<PathBuf>,
    pub location: Option<Location>,
    /// Dotted field path inside the file, e.g. `matrix.exclude[0].num_ctx`.
    pub field: Option<String>,
    pub message: String,
    /// What the user should do about it.
    pub help: Option<String>,
    /// The offending source line, for the caret snippet.
    #[serde(skip)]
    pub snippet: Option<String>,
    /// A warning says what may mislead but does not stop anything.
    #[serde(skip)]
    pub warning: bool,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            file: None,
            location: None,
            field: None,
            message: message.into(),
            help: None,
            snippet: None,
            warning: false,
        }
    }

    /// The same, as a warning.
    pub fn as_warning(mut self) -> Self {
        self.warning = true;
        self
    }

    pub fn in_file(mut self, file: impl AsRef<Path>) -> Self {
        self.file = Some(file.as_ref().to_path_buf());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Attaches a location and the source line it points into.
    pub fn at(mut self, location: Option<Location>, source: &str) -> Self {
        if let Some(loc) = location {
            self.snippet = source
                .lines()
                .nth(loc.line.saturating_sub(1))
                .map(str::to_owned);
            self.location = Some(loc);
        }
        self
    }
}

impl Diagnostic {
    /// `file:line:column`, or just `file` without a location; None without a file.
    pub fn place(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.location {
            Some(loc) => format!("{}:{}:{}", file.display(), loc.line, loc.column),
            None => file.display().to_string(),
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.warning { "warning" } else { "error" };
        writeln!(f, "{kind}: {}", self.message)?;
        if let Some(place) = self.place() {
            writeln!(f, "  --> {place}")?;
        }
        if let (Some(loc), Some(line)) = (self.location, &self.snippet) {
            let number = loc.line.to_string();
            let pad = " ".repeat(number.len());
            writeln!(f, "{pad} |")?;
            writeln!(f, "{number} | {line}")?;
            writeln!(f, "{pad} | {}^", " ".repeat(loc.column.saturating_sub(1)))?;
        }
        if let Some(field) = &self.field {
            writeln!(f, "  = field: {field}")?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// One or more diagnostics: the error type of everything that reads user input.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result<T>(self, ok: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() { Ok(ok) } else { Err(self) }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The text of a file a user writes (a spec, the catalogue), or an error at its first byte that
/// is not UTF-8. `read_to_string` would only say "stream did not contain valid UTF-8", which
/// leaves the user to hunt for a stray byte from a Latin-1 editor or a binary paste; the line
/// and column (in characters, as YAML parsers count them) find it.
pub fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    let error = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let bytes = error.as_bytes();
    let bad = error.utf8_error().valid_up_to();
    // Everything before the bad byte is valid UTF-8.
    let before = std::str::from_utf8(&bytes[..bad]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let location = Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    };
    Err(Diagnostic::new(format!(
        "not UTF-8 text: byte 0x{:02x} is no part of a character",
        bytes[bad]
    ))
    .in_file(path)
    .at(Some(location), &String::from_utf8_lossy(bytes))
    .help("save the file as UTF-8 (a stray byte from another encoding or a binary paste)"))
}

/// "did you mean `x`?" for a misspelled name, when one candidate is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["title", "status", "question"];
        assert_eq!(
            did_you_mean("titel", fields).as_deref(),
            Some("did you mean `title`?")
        );
        assert_eq!(did_you_mean("zzz", fields), None);
    }

    // Found by tests/hostile_input.rs: a spec with one stray byte was rejected without a line.
    #[test]
    fn a_byte_that_is_not_utf8_is_found_by_line_and_column() {
        let d = utf8_text(Path::new("x.yaml"), b"a: 1\nb: \xc3\xa9\xff\n".to_vec()).unwrap_err();
        assert_eq!(d.location, Some(Location { line: 2, column: 5 }));
        assert!(d.to_string().contains("--> x.yaml:2:5"), "{d}");
        assert!(d.message.contains("0xff"), "{d}");
        assert_eq!(
            utf8_text(Path::new("x.yaml"), b"ok".to_vec()).unwrap(),
            "ok"
        );
    }

    #[test]
    fn renders_caret_under_column() {
        let d = Diagnostic::new("bad")
            .in_file("x.yaml")
            .at(Some(Location { line: 2, column: 3 }), "a: 1\nb: oops\n")
            .field("b")
            .help("fix it");
        let text = d.to_string();
        assert!(text.contains("--> x.yaml:2:3"), "{text}");
        assert!(text.contains("2 | b: oops\n  |   ^"), "{text}");
        assert!(text.contains("= field: b"));
        assert!(text.contains("= help: fix it"));
    }
}
