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

/// Removes what runners killed mid-run left in the request folder: temporary files of a
/// write cut short, and request files of runs the journal does not have (written, then killed
/// before the journal line). Call it holding the journal's lock, so no other runner is
/// writing. Returns how many files went.
pub fn sweep(paths: &TrPaths, recorded: impl Fn(&str) -> bool) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(paths.requests_dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = if name.starts_with('.') && name.ends_with(".tmp") {
            true
        } else {
            name.strip_suffix(".jsonl").is_some_and(|id| !recorded(id))
        };
        if stale {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
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
            input_tokens_requested: Some(8),
            output_tokens_requested: None,
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
    fn a_sweep_removes_what_killed_runners_left_and_keeps_recorded_runs() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TrPaths::new(dir.path(), "TR990");
        assert_eq!(sweep(&paths, |_| true).unwrap(), 0, "no folder yet");
        write(&paths, "kept", &[request(0)]).unwrap();
        write(&paths, "orphan", &[request(0)]).unwrap();
        let folder = paths.requests("kept").parent().unwrap().to_path_buf();
        std::fs::write(folder.join(".kept.jsonl.123-0.tmp"), "{\"index\":0,").unwrap();
        assert_eq!(sweep(&paths, |id| id == "kept").unwrap(), 2);
        let left: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["kept.jsonl"]);
        assert_eq!(read(&paths, "kept").unwrap(), [request(0)]);
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
