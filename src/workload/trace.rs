//! Request traces in the Mooncake JSONL format, one request a line: `timestamp` (ms from the
//! trace's start), `input_length` and `output_length` (tokens), and `hash_ids`, the ids of the
//! prompt's 512-token blocks (requests that share an id share that block, so a replay
//! reproduces the trace's prefix reuse). Pure parsing; no I/O beyond reading the file.

use std::path::Path;

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Location};

/// Tokens per hash block, as the Mooncake traces define them.
pub const BLOCK_TOKENS: usize = 512;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// Milliseconds from the trace's start.
    pub timestamp: f64,
    pub input_length: i64,
    pub output_length: i64,
    #[serde(default)]
    pub hash_ids: Vec<u64>,
}

/// Reads a trace; every problem is reported with its line (and the first line's column).
pub fn read(path: &Path) -> Result<Vec<TraceRequest>, Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(format!("cannot read trace: {e}"))
            .in_file(path)
            .help("the path is relative to the spec's folder")
    })?;
    parse(path, &text)
}

/// Parses trace text (`path` names it in messages).
pub fn parse(path: &Path, text: &str) -> Result<Vec<TraceRequest>, Diagnostic> {
    let at = |line: usize, field: &str, message: String, help: &str| {
        Diagnostic::new(message)
            .in_file(path)
            .at(Some(Location { line, column: 1 }), text)
            .field(field)
            .help(help)
    };
    let mut out: Vec<TraceRequest> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let r: TraceRequest = serde_json::from_str(raw).map_err(|e| {
            at(
                line,
                "line",
                format!("not a trace request: {e}"),
                "each line is {\"timestamp\": ms, \"input_length\": n, \"output_length\": n, \"hash_ids\": [ids]}",
            )
        })?;
        if !(r.timestamp.is_finite() && r.timestamp >= 0.0) {
            return Err(at(
                line,
                "timestamp",
                format!(
                    "timestamp {} is not a time: ms from the trace's start, 0 or more",
                    r.timestamp
                ),
                "write the request's arrival in ms from the first one",
            ));
        }
        if let Some(prev) = out.last()
            && r.timestamp < prev.timestamp
        {
            return Err(at(
                line,
                "timestamp",
                format!(
                    "timestamps go back: {} ms after {} ms on the line before",
                    r.timestamp, prev.timestamp
                ),
                "sort the trace by timestamp (`sort` by the field, or jq -s 'sort_by(.timestamp)[]')",
            ));
        }
        for (field, n) in [
            ("input_length", r.input_length),
            ("output_length", r.output_length),
        ] {
            if n < 1 {
                return Err(at(
                    line,
                    field,
                    format!("{field} must be at least 1 token, got {n}"),
                    "lengths are token counts",
                ));
            }
        }
        let covered = r.hash_ids.len() * BLOCK_TOKENS;
        if r.hash_ids.len() > 1 && (r.input_length as usize) <= covered - BLOCK_TOKENS {
            return Err(at(
                line,
                "hash_ids",
                format!(
                    "{} hash blocks of {BLOCK_TOKENS} tokens are more than an input of {} tokens holds",
                    r.hash_ids.len(),
                    r.input_length
                ),
                "each hash id names one 512-token block of the prompt; the last may be partial",
            ));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(Diagnostic::new("the trace has no requests")
            .in_file(path)
            .help("write one JSON request per line"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("t.jsonl"), text).unwrap_err().to_string()
    }

    #[test]
    fn a_trace_reads_in_order_with_its_blocks() {
        let t = parse(
            Path::new("t.jsonl"),
            "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 12, \"hash_ids\": [1, 2]}\n\n{\"timestamp\": 27.5, \"input_length\": 40, \"output_length\": 3, \"hash_ids\": [9]}\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].timestamp, 27.5);
        assert_eq!(t[0].hash_ids, [1, 2]);
    }

    #[test]
    fn bad_lines_are_named_by_line() {
        let ok = "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 2}\n";
        let cases = [
            (format!("{ok}{{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 2}}\n"), "t.jsonl:2:1", "timestamps go back"),
            (format!("{ok}{{\"timestamp\": 9, \"input_length\": -4, \"output_length\": 2}}\n"), "t.jsonl:2:1", "input_length must be at least 1"),
            (format!("{ok}{{\"timestamp\": 9, \"input_length\": 10\n"), "t.jsonl:2:1", "not a trace request"),
            (format!("{ok}{{\"timestamp\": 9, \"input_length\": 10, \"output_length\": 0}}\n"), "t.jsonl:2:1", "output_length must be at least 1"),
            ("{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 2, \"hash_ids\": [1, 2]}\n".to_owned(), "t.jsonl:1:1", "more than an input of 100 tokens holds"),
            ("\n".to_owned(), "t.jsonl", "no requests"),
        ];
        for (text, location, message) in cases {
            let e = err(&text);
            assert!(e.contains(location) && e.contains(message), "{text:?}: {e}");
        }
    }
}
