//! Maps field paths (`matrix.exclude[0].num_ctx`) to line and column in the YAML source.
//!
//! serde gives typed values without positions; semantic checks run after deserialization and
//! still need to point at the right line, so we index the YAML event stream once.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

use crate::diagnostic::Location;

#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// path -> (position of the key, position of the value)
    entries: HashMap<String, (Location, Location)>,
}

enum Frame {
    Mapping {
        path: String,
        key: Option<(String, Location)>,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Where a YAML error belongs that the deserializer gives no position: a second document,
/// a merge (`<<:`) of something that is no mapping, aliases expanded past the repetition limit,
/// or an empty file. Found in the event stream; the file's start when nothing fits, so that
/// every YAML error still says `file:line:column`.
pub fn unplaced_error(source: &str, message: &str) -> Location {
    let fallback = Location { line: 1, column: 1 };
    let documents = message.contains("more than one document");
    let merge = message.contains("merg");
    let repetition = message.contains("repetition limit");
    let mut seen_documents = 0;
    for item in Parser::new_from_str(source) {
        let Ok((event, span)) = item else { break };
        match event {
            Event::DocumentStart(_) if documents => {
                seen_documents += 1;
                if seen_documents == 2 {
                    return location(&span);
                }
            }
            Event::Scalar(text, ..) if merge && text == "<<" => return location(&span),
            Event::Alias(_) if repetition => return location(&span),
            _ => {}
        }
    }
    fallback
}

/// Lines as YAML counts them: LF, CR, CRLF and Unicode's line and paragraph separators break
/// them (libyaml's `IS_BREAK`).
fn yaml_lines(source: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            lines.push(&source[start..i]);
            if c == '\r' && chars.peek().is_some_and(|(_, next)| *next == '\n') {
                chars.next();
            }
            start = chars.peek().map_or(source.len(), |(j, _)| *j);
        }
    }
    lines.push(&source[start..]);
    lines
}

/// `at`, or the end of the last line when `at` lies past it: libyaml places an error at the end
/// of a file without a final newline on the line after the last, which no editor can show.
pub fn within(source: &str, at: Location) -> Location {
    let lines = yaml_lines(source);
    match lines.last() {
        Some(last) if at.line > lines.len() => Location {
            line: lines.len(),
            column: last.chars().count() + 1,
        },
        _ => at,
    }
}

impl SourceMap {
    /// Indexes `source`; a document that does not parse yields an empty map (the YAML error
    /// itself is reported by the deserializer, with its own position).
    pub fn new(source: &str) -> SourceMap {
        let mut map = SourceMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(source) {
            let Ok((event, span)) = item else { break };
            let here = location(&span);
            match event {
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                Event::Scalar(..)
                | Event::Alias(_)
                | Event::MappingStart(..)
                | Event::SequenceStart(..) => {}
                _ => continue,
            }
            // A scalar in key position of a mapping is a key, not a value.
            if let Some(Frame::Mapping { key, .. }) = stack.last_mut()
                && key.is_none()
            {
                let name = match &event {
                    Event::Scalar(text, ..) => text.to_string(),
                    _ => "?".to_owned(),
                };
                *key = Some((name, here));
                if matches!(event, Event::MappingStart(..) | Event::SequenceStart(..)) {
                    // Complex keys are not used by specs; skip their contents.
                    stack.push(Frame::Sequence {
                        path: "?".into(),
                        next_index: 0,
                    });
                }
                continue;
            }
            let (path, key_loc) = match stack.last_mut() {
                None => (String::new(), here),
                Some(Frame::Mapping { path, key }) => {
                    let (name, key_loc) = key.take().unwrap_or_else(|| ("?".into(), here));
                    (child_path(path, &name), key_loc)
                }
                Some(Frame::Sequence { path, next_index }) => {
                    *next_index += 1;
                    (index_path(path, *next_index - 1), here)
                }
            };
            map.entries.entry(path.clone()).or_insert((key_loc, here));
            match event {
                Event::MappingStart(..) => stack.push(Frame::Mapping { path, key: None }),
                Event::SequenceStart(..) => stack.push(Frame::Sequence {
                    path,
                    next_index: 0,
                }),
                _ => {}
            }
        }
        map
    }

    /// Where the value at `path` starts; falls back to the nearest ancestor that exists.
    pub fn value(&self, path: &str) -> Option<Location> {
        self.lookup(path).map(|(_, v)| v)
    }

    /// Where the key of `path` is written; falls back to the nearest ancestor that exists.
    pub fn key(&self, path: &str) -> Option<Location> {
        self.lookup(path).map(|(k, _)| k)
    }

    fn lookup(&self, path: &str) -> Option<(Location, Location)> {
        let mut path = path;
        loop {
            if let Some(found) = self.entries.get(path) {
                return Some(*found);
            }
            if path.is_empty() {
                return None;
            }
            path = match path.rfind(['.', '[']) {
                Some(i) => &path[..i],
                None => "",
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "id: TR1\nmatrix:\n  temperature: [0.6, 0.8]\n  exclude:\n    - {temperature: 0.6}\n    - temperature: 0.8\n";

    #[test]
    fn finds_keys_values_and_sequence_items() {
        let map = SourceMap::new(DOC);
        assert_eq!(map.key("id"), Some(Location { line: 1, column: 1 }));
        assert_eq!(map.value("id"), Some(Location { line: 1, column: 5 }));
        assert_eq!(
            map.value("matrix.temperature[1]"),
            Some(Location {
                line: 3,
                column: 22
            })
        );
        assert_eq!(
            map.value("matrix.exclude[0].temperature"),
            Some(Location {
                line: 5,
                column: 21
            })
        );
        assert_eq!(
            map.key("matrix.exclude[1].temperature"),
            Some(Location { line: 6, column: 7 })
        );
    }

    // Found by tests/hostile_input.rs: these errors reached the user without a line.
    #[test]
    fn places_errors_the_parser_leaves_unplaced() {
        let two = "id: TR1\n---\nid: TR2\n";
        let message = "deserializing from YAML containing more than one document is not supported";
        assert_eq!(
            unplaced_error(two, message),
            Location { line: 2, column: 1 }
        );
        let merge = "id: TR1\nmatrix:\n  <<: 1\n";
        let message = "expected a mapping or list of mappings for merging, but found scalar";
        assert_eq!(
            unplaced_error(merge, message),
            Location { line: 3, column: 3 }
        );
        assert_eq!(
            unplaced_error("", "EOF while parsing a value"),
            Location { line: 1, column: 1 }
        );
    }

    #[test]
    fn a_position_past_the_last_line_moves_to_its_end() {
        let at = |line, column| Location { line, column };
        assert_eq!(within("a: 1\nmatrix", at(3, 1)), at(2, 7));
        // A lone CR ends a YAML line too: line 3 of this file exists.
        assert_eq!(within("a: 1\rb: 2\rc", at(3, 1)), at(3, 1));
        assert_eq!(within("a: 1\r\nb", at(3, 1)), at(2, 2));
        assert_eq!(within("a: 1\n", at(2, 1)), at(2, 1));
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let map = SourceMap::new(DOC);
        assert_eq!(
            map.value("matrix.exclude[1].missing"),
            map.value("matrix.exclude[1]")
        );
        // The document root is the last resort, so every path gets some location.
        assert_eq!(
            map.value("nothing.here"),
            Some(Location { line: 1, column: 1 })
        );
    }
}
