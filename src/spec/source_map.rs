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
