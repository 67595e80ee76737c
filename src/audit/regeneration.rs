//! Staleness (the committed report's footer hashes against today's spec, data, template and
//! tool) and drift (the report re-rendered in memory against the committed one, down to the
//! numbers that changed and where they sit).

use std::path::Path;

use similar::{DiffTag, TextDiff};

use super::{Finding, Severity};
use crate::report::{self, Footer, Rendered, ReportError};
use crate::spec::{LoadedSpec, Status};

/// Changed lines reported per report before the rest are summarised.
const MAX_DRIFT_FINDINGS: usize = 12;

/// `rendered` is the report rendered now, in memory.
pub fn check(
    root: &Path,
    loaded: &LoadedSpec,
    rendered: &Result<Rendered, ReportError>,
) -> Vec<Finding> {
    let id = &loaded.spec.id;
    let path = report::reports_dir(root).join(format!("{id}.md"));
    let shown = path.display().to_string();
    let Ok(committed) = std::fs::read_to_string(&path) else {
        if loaded.spec.status == Status::Planned {
            return Vec::new();
        }
        return vec![
            Finding::new(
                id,
                Severity::Warning,
                "staleness",
                format!("no rendered report; `banterhearts report {id}` writes it"),
            )
            .at(shown),
        ];
    };
    let mut out = Vec::new();
    let now = match rendered {
        Ok(r) => r.footer.clone(),
        Err(_) => Footer::current(root, loaded),
    };
    match Footer::parse(&committed) {
        None => out.push(
            Finding::new(
                id,
                Severity::Warning,
                "staleness",
                "the report has no banterhearts footer, so its inputs cannot be told apart",
            )
            .at(&*shown),
        ),
        Some(then) => {
            for (what, was, is) in [
                ("spec", &then.spec_sha256, &now.spec_sha256),
                ("data", &then.data_sha256, &now.data_sha256),
                ("template", &then.template_sha256, &now.template_sha256),
                ("tool version", &then.tool_version, &now.tool_version),
            ] {
                if was != is {
                    out.push(
                        Finding::new(id, Severity::Warning, "staleness", format!("stale: the {what} changed since the report was rendered ({} then, {} now)", short(was), short(is)))
                            .at(&*shown),
                    );
                }
            }
        }
    }
    let rendered = match rendered {
        Ok(r) => r,
        Err(ReportError::Input(d)) => {
            return [out, vec![Finding::from_diagnostic(id, "regeneration", d)]].concat();
        }
        Err(e) => {
            return [
                out,
                vec![Finding::new(
                    id,
                    Severity::Error,
                    "regeneration",
                    e.to_string(),
                )],
            ]
            .concat();
        }
    };
    out.extend(drift(
        id,
        &shown,
        &without_footer(&committed),
        &without_footer(&rendered.markdown),
    ));
    for (file, svg) in &rendered.figures {
        let figure = report::reports_dir(root).join("figures").join(file);
        match std::fs::read_to_string(&figure) {
            Ok(old) if old == *svg => {}
            Ok(_) => out.push(
                Finding::new(
                    id,
                    Severity::Warning,
                    "regeneration",
                    "the figure differs from one drawn from the data now",
                )
                .at(figure.display().to_string()),
            ),
            Err(_) => out.push(
                Finding::new(
                    id,
                    Severity::Warning,
                    "regeneration",
                    "the figure is missing",
                )
                .at(figure.display().to_string()),
            ),
        }
    }
    out
}

/// The text with its banterhearts footer line blanked (line numbers stay as they are).
fn without_footer(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.contains("Rendered by banterhearts ") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// Numbers in a line with their 1-based columns: "12", "-3.5", "1,234", "0.2755".
fn numbers(line: &str) -> Vec<(usize, &str)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            || ((bytes[i] == b'-' || bytes[i] == b'+')
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        // Digits inside words (TR124, C1, sha256, hex hashes) are names, not numbers.
        let in_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && !in_word {
            let start = i;
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit()
                    || ((bytes[i] == b'.' || bytes[i] == b',')
                        && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            if !(i < bytes.len()
                && bytes[i].is_ascii_alphabetic()
                && !line[i..].starts_with("ms")
                && !line[i..].starts_with("pp")
                && !line[i..].starts_with('x'))
            {
                out.push((start + 1, &line[start..i]));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Lines of the committed report that differ from the re-rendered one, with the numbers that
/// changed located by line and column.
pub fn drift(id: &str, shown: &str, committed: &str, rendered: &str) -> Vec<Finding> {
    if committed == rendered {
        return Vec::new();
    }
    let diff = TextDiff::from_lines(committed, rendered);
    let old: Vec<&str> = committed.lines().collect();
    let new: Vec<&str> = rendered.lines().collect();
    let mut out = Vec::new();
    for op in diff.ops() {
        let (tag, old_range, new_range) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            continue;
        }
        let pairs = old_range.len().max(new_range.len());
        for k in 0..pairs {
            let (o, n) = (old_range.start + k, new_range.start + k);
            let (was, is) = (
                old.get(o).filter(|_| o < old_range.end),
                new.get(n).filter(|_| n < new_range.end),
            );
            let line = o.min(old.len().saturating_sub(1)) + 1;
            // Blank lines come and go with the sections around them: no finding of their own.
            let (was, is) = (
                was.filter(|l| !l.trim().is_empty()),
                is.filter(|l| !l.trim().is_empty()),
            );
            match (was, is) {
                (Some(was), Some(is)) => {
                    let (a, b) = (numbers(was), numbers(is));
                    let differing: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x.1 != y.1).collect();
                    let changed: Vec<String> = differing
                        .iter()
                        .map(|(x, y)| {
                            if differing.len() == 1 {
                                format!("`{}` where the data gives `{}`", x.1, y.1)
                            } else {
                                format!("`{}` (col {}) where the data gives `{}`", x.1, x.0, y.1)
                            }
                        })
                        .collect();
                    if a.len() == b.len() && !changed.is_empty() {
                        let column = a
                            .iter()
                            .zip(&b)
                            .find(|(x, y)| x.1 != y.1)
                            .map_or(1, |(x, _)| x.0);
                        out.push(
                            Finding::new(
                                id,
                                Severity::Error,
                                "regeneration",
                                format!("the report says {}", changed.join(", ")),
                            )
                            .at(format!("{shown}:{line}:{column}")),
                        );
                    } else {
                        out.push(
                            Finding::new(id, Severity::Error, "regeneration", {
                                let (a, b) = clip_pair(was, is);
                                format!(
                                    "the line differs from a fresh render: `{a}` would now be `{b}`"
                                )
                            })
                            .at(format!("{shown}:{line}:1")),
                        );
                    }
                }
                (Some(was), None) => out.push(
                    Finding::new(
                        id,
                        Severity::Error,
                        "regeneration",
                        format!("a fresh render does not have this line: `{}`", clip(was)),
                    )
                    .at(format!("{shown}:{line}:1")),
                ),
                (None, Some(is)) => out.push(
                    Finding::new(
                        id,
                        Severity::Error,
                        "regeneration",
                        format!("a fresh render adds a line here: `{}`", clip(is)),
                    )
                    .at(format!("{shown}:{line}:1")),
                ),
                (None, None) => {}
            }
        }
    }
    if out.len() > MAX_DRIFT_FINDINGS {
        let more = out.len() - MAX_DRIFT_FINDINGS;
        out.truncate(MAX_DRIFT_FINDINGS);
        out.push(
            Finding::new(
                id,
                Severity::Error,
                "regeneration",
                format!(
                    "and {more} more changed line(s); `banterhearts report {id}` re-renders it"
                ),
            )
            .at(shown),
        );
    }
    out
}

/// Two versions of a line, cut to where they start to differ.
fn clip_pair(was: &str, is: &str) -> (String, String) {
    let common = was
        .chars()
        .zip(is.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let skip = common.saturating_sub(24);
    let cut = |s: &str| {
        let rest: String = s.chars().skip(skip).collect();
        if skip > 0 {
            format!("…{}", clip(&rest))
        } else {
            clip(&rest)
        }
    };
    (cut(was), cut(is))
}

fn clip(line: &str) -> String {
    const MAX: usize = 100;
    if line.chars().count() > MAX {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_skip_names_and_keep_units_apart() {
        let found: Vec<&str> = numbers(
            "| C1 | TR124 | 75.5 [64.4, 86.6] | 13.3 ms | -46.9% | 1,234 | sha256 `ab12` | 2x |",
        )
        .into_iter()
        .map(|(_, n)| n)
        .collect();
        assert_eq!(
            found,
            ["75.5", "64.4", "86.6", "13.3", "-46.9", "1,234", "2"]
        );
    }

    #[test]
    fn an_edited_number_is_located_by_line_and_column() {
        let committed = "# TR1\n\n| C1 | 75.6 [64.4, 86.6] |\nend\n";
        let rendered = "# TR1\n\n| C1 | 75.5 [64.4, 86.6] |\nend\n";
        let f = drift("TR1", "reports/TR1.md", committed, rendered);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].location.as_deref(), Some("reports/TR1.md:3:8"));
        assert_eq!(
            f[0].message,
            "the report says `75.6` where the data gives `75.5`"
        );
    }
}
