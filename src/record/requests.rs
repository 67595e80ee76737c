//! A load run's requests, kept beside the journal: `data/<TR>/requests/<run id>.jsonl`, one
//! JSON line per request, in schedule order. The runner writes the whole file atomically
//! (temporary file, fsync, rename, fsync of the folder) before it appends the run's journal
//! line, so a run in the journal always has all its requests on disk, and `kill -9` at any
//! moment leaves at worst a request file of a run the journal does not have, which the
//! resumed run replaces. Readers only read the files of runs the journal lists.

use std::io::Write as _;

use super::run::LoadRequest;
use crate::store::{TrPaths, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum RequestsError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: unreadable request record ({message}); the file was not changed")]
    Corrupt {
        path: std::path::PathBuf,
        line: usize,
        message: String,
    },
}

/// Writes `run_id`'s requests, replacing any file an interrupted attempt left; returns the
/// SHA-256 of the bytes written, for the run record.
pub fn write(
    paths: &TrPaths,
    run_id: &str,
    requests: &[LoadRequest],
) -> Result<String, RequestsError> {
    let path = paths.requests(run_id);
    let mut bytes = Vec::with_capacity(requests.len() * 256);
    for r in requests {
        serde_json::to_writer(&mut bytes, r).expect("a request record serializes");
        bytes.push(b'\n');
    }
    let _ = bytes.flush();
    write_atomic(&path, &bytes).map_err(|source| RequestsError::Io { path, source })?;
    Ok(crate::store::sha256_hex(&bytes))
}

/// Reads `run_id`'s requests; none when the run has no request file.
pub fn read(paths: &TrPaths, run_id: &str) -> Result<Vec<LoadRequest>, RequestsError> {
    let path = paths.requests(run_id);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RequestsError::Io { path, source }),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| RequestsError::Corrupt {
                path: path.clone(),
                line: i + 1,
                message: super::journal::line_error(&e),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus;

    fn request(index: u64) -> LoadRequest {
        LoadRequest {
            index,
            scheduled_ms: index as f64 * 10.0,
            sent_ms: index as f64 * 10.0 + 0.05,
            dispatch_lag_ms: 0.05,
            status: RunStatus::Ok,
            reason: None,
            cancelled: false,
            ttft_ms: Some(12.5),
            e2e_ms: Some(40.0),
            ttft_from_schedule_ms: Some(12.55),
            e2e_from_schedule_ms: Some(40.05),
            tpot_ms: Some(2.0),
            itl_p50_ms: Some(2.0),
            itl_p99_ms: Some(2.4),
            output_tokens: Some(16),
            prompt_tokens: Some(9),
            cache_n: None,
            warmup: index < 3,
        }
    }

    #[test]
    fn written_whole_read_back_exactly_and_an_interrupted_attempt_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TrPaths::new(dir.path(), "TR990");
        assert!(
            read(&paths, "r1").unwrap().is_empty(),
            "no file, no requests"
        );
        // What a crash mid-write could leave: a partial file from an earlier attempt.
        std::fs::create_dir_all(paths.requests("r1").parent().unwrap()).unwrap();
        std::fs::write(paths.requests("r1"), "{\"index\":0,\"sched").unwrap();
        let requests: Vec<LoadRequest> = (0..1000).map(request).collect();
        write(&paths, "r1", &requests).unwrap();
        assert_eq!(read(&paths, "r1").unwrap(), requests);
        let leftovers: Vec<_> = std::fs::read_dir(paths.requests("r1").parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn a_damaged_line_is_named_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TrPaths::new(dir.path(), "TR990");
        write(&paths, "r2", &[request(0), request(1)]).unwrap();
        let path = paths.requests("r2");
        let text =
            std::fs::read_to_string(&path)
                .unwrap()
                .replacen("\"index\":1", "\"index\":\"x\"", 1);
        std::fs::write(&path, text).unwrap();
        let err = read(&paths, "r2").unwrap_err().to_string();
        assert!(
            err.contains("r2.jsonl:2: unreadable request record"),
            "{err}"
        );
    }
}
