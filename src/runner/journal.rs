//! The run journal: `data/<TR>/runs.jsonl`, one JSON line per finished run, appended and
//! fsynced before the next run starts. A lock file keeps a second runner out; a line torn by a
//! crash mid-write is cut off when the journal is next opened.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::measure::{AgentRun, GroupStats, LagStats, RunStatus};
use crate::store::TrPaths;

/// One finished run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub tr: String,
    pub run_id: String,
    pub cell: usize,
    pub cell_id: String,
    pub params: serde_json::Map<String, Value>,
    pub repetition: u32,
    pub warmup: bool,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall-clock start, Unix milliseconds (ordering and provenance only; durations use a monotonic clock).
    pub started_unix_ms: u64,
    /// Which runner invocation recorded it (see manifest.json sessions).
    pub session: u32,
    pub agents: Vec<AgentRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupStats>,
    pub harness_lag: LagStats,
    pub client_rss_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<super::telemetry::ServerSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<super::telemetry::GpuSample>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "another runner holds {0}; wait for it to finish (or, if none is running, the lock is stale only if no banterhearts process is alive)"
    )]
    Locked(PathBuf),
    #[error(
        "{path}:{line}: unreadable run record ({message}); the journal was not changed: move the line aside by hand if it is damaged"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Journal {
    file: File,
    path: PathBuf,
    // Held for the journal's lifetime; the OS releases it if the process dies.
    _lock: File,
    ids: HashSet<String>,
}

/// Reads a journal without locking it (for analysis and reports).
pub fn read_records(path: &Path) -> Result<Vec<RunRecord>, JournalError> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_string(&mut text).map_err(io(path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    parse_complete_lines(path, &text).map(|(records, _)| records)
}

/// Parses every newline-terminated line; returns the records and the byte length they span
/// (anything after it is a torn final line).
fn parse_complete_lines(path: &Path, text: &str) -> Result<(Vec<RunRecord>, usize), JournalError> {
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let mut records = Vec::new();
    for (i, line) in text[..complete].lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        records.push(record);
    }
    Ok((records, complete))
}

impl Journal {
    /// Locks and opens the journal, cutting off a torn last line. Returns the records so far.
    pub fn open(paths: &TrPaths) -> Result<(Journal, Vec<RunRecord>), JournalError> {
        std::fs::create_dir_all(&paths.data_dir).map_err(io(&paths.data_dir))?;
        let lock_path = paths.lock();
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked(lock_path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let path = paths.runs();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io(&path))?;
        let (records, complete) = parse_complete_lines(&path, &text)?;
        if complete < text.len() {
            // Only a crash mid-append leaves bytes after the last newline; that run is not finished.
            file.set_len(complete as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        let ids = records.iter().map(|r| r.run_id.clone()).collect();
        Ok((
            Journal {
                file,
                path,
                _lock: lock,
                ids,
            },
            records,
        ))
    }

    pub fn contains(&self, run_id: &str) -> bool {
        self.ids.contains(run_id)
    }

    /// Appends one record as a single write and fsyncs it; a record whose id is already in the
    /// journal is refused, so a run is never stored twice.
    pub fn append(&mut self, record: &RunRecord) -> Result<(), JournalError> {
        if self.ids.contains(&record.run_id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(record).expect("run records serialize");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.ids.insert(record.run_id.clone());
        Ok(())
    }
}
