//! The run journal: `data/<TR>/runs.jsonl`, one JSON line per finished run, appended and
//! fsynced before the next run starts. A lock file keeps a second runner out; a line torn by a
//! crash mid-write is set aside and cut off when the journal is next opened.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::run::{RunRecord, RunStatus};
use crate::store::TrPaths;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("another runner holds {}{}; wait for it to finish, or stop it", .0.display(), .1.as_ref().map_or(String::new(), |h| format!(" ({})", h.describe())))]
    Locked(PathBuf, Option<Holder>),
    #[error(
        "{}: cannot record run {run_id}: {source}; that run was not recorded, and the journal keeps every run before it",
        path.display()
    )]
    Append {
        path: PathBuf,
        run_id: String,
        source: std::io::Error,
    },
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

/// A JSON error about one journal line, placed by column: serde_json counts lines within the
/// text it was given (always "line 1" here), which would contradict the journal line number.
pub(crate) fn line_error(e: &serde_json::Error) -> String {
    match e.column() {
        0 => json_message(e),
        column => format!("{}, column {column}", json_message(e)),
    }
}

/// Whether bytes after a journal's last newline are a whole JSON value: a record whose newline
/// is missing (an editor dropped it), not a line torn by a crash mid-write. The runner and the
/// analysis both count such a record.
pub(crate) fn is_whole_json(bytes: &[u8]) -> bool {
    !bytes.trim_ascii().is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// What serde_json says is wrong, without its own "at line L column C".
pub(crate) fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.rsplit_once(" at line ")
        .map_or(text.clone(), |(what, _)| what.to_owned())
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
    lock: Lock,
    ids: HashSet<String>,
}

/// Reads a journal's records whole, without locking it (tests and small journals).
pub fn read_records(path: &Path) -> Result<Vec<RunRecord>, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    numbered_records(path, &bytes).map(|records| records.into_iter().map(|(_, r)| r).collect())
}

/// What bookkeeping needs of a record (which run, which cell, how it ended, in which session),
/// without its measurements. Reports and the audit read journals through it: a million-run
/// journal read as whole records took 5 GB and over 20 s.
#[derive(Debug, Clone)]
pub struct RunDigest {
    pub run_id: String,
    pub cell_id: String,
    pub warmup: bool,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub session: u32,
    /// Share of the CPUs other processes used during the run (`background.share`).
    pub background_share: Option<f64>,
    /// A load run's schedule-keeping figures, for the validity gates.
    pub load: Option<LoadGate>,
}

/// What a load run's validity gates read: did the client keep the schedule, did the server
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct LoadGate {
    pub offered_rate: Option<f64>,
    pub achieved_rate: Option<f64>,
    pub dispatch_lag_p99_ms: Option<f64>,
    pub error_rate: f64,
    pub requests: u64,
}

#[derive(Deserialize)]
struct DigestLoad {
    summary: LoadGate,
}

/// A journal's run digests, in file order, and each cell's parameters by cell id.
#[derive(Debug, Default)]
pub struct Digests {
    pub runs: Vec<RunDigest>,
    pub params: HashMap<String, serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct DigestLine<'a> {
    #[serde(borrow)]
    run_id: Cow<'a, str>,
    #[serde(borrow)]
    cell_id: Cow<'a, str>,
    warmup: bool,
    status: RunStatus,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    session: u32,
    // Not used here, but required as the analysis requires them: a line the analysis would
    // refuse is refused by the runner too, before more runs are appended to the journal.
    #[allow(dead_code)]
    agents: Vec<DigestAgent>,
    #[allow(dead_code)]
    harness_lag: serde::de::IgnoredAny,
    #[serde(default)]
    background: Option<super::Background>,
    #[serde(default)]
    load: Option<DigestLoad>,
}

#[derive(Deserialize)]
struct DigestAgent {
    #[allow(dead_code)]
    status: RunStatus,
}

/// A record's cell parameters alone, and its model where a `model` axis chose one: what every
/// run of the cell shares, read from its line when a reader first meets the cell (the analysis
/// reads the rest of the line without them).
#[derive(Deserialize)]
pub(crate) struct RecordParams {
    pub params: serde_json::Map<String, Value>,
    #[serde(default)]
    pub model: Option<super::ModelRun>,
}

/// Whether the journal holds at least one finished run (a complete, non-blank line). A journal
/// created by a runner stopped before its first run finished is empty: no data yet.
pub fn has_finished_runs(path: &Path) -> bool {
    use std::io::BufRead;
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if !line.ends_with(b"\n") => return false,
            Ok(_) if !line.trim_ascii().is_empty() => return true,
            Ok(_) => {}
        }
    }
}

/// Reads a journal's digests line by line, without locking it. As when the journal is opened,
/// a torn last line (no newline) is not a finished run and is left out; a cell's parameters
/// are parsed from its first line only.
pub fn read_digests(path: &Path) -> Result<Digests, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Digests::default()),
        Err(e) => return Err(io(path)(e)),
    };
    scan_digests(&file, path).map(|(digests, _)| digests)
}

/// What follows a journal's last newline.
#[derive(Debug, Default)]
struct Tail {
    /// Bytes up to and including the last newline.
    complete: u64,
    /// The bytes after it, and their line number.
    rest: Vec<u8>,
    line: usize,
    /// Whether `rest` is a whole JSON value (a record whose newline is missing, as an editor
    /// that drops the final newline leaves it) rather than a line torn by a crash mid-write.
    whole: bool,
}

/// The digests of every line of `file`, from its current position, and what follows the last
/// newline. A last line without its newline counts if it is whole JSON: nothing a user wrote
/// is dropped for a missing newline.
fn scan_digests(file: &File, path: &Path) -> Result<(Digests, Tail), JournalError> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let (mut digests, mut line, mut tail) = (Digests::default(), Vec::new(), Tail::default());
    for number in 1.. {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io(path))?;
        if read == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            tail.whole = is_whole_json(&line);
            tail.rest = std::mem::take(&mut line);
            tail.line = number;
            if !tail.whole {
                break;
            }
            line = tail.rest.clone();
        } else {
            tail.complete += read as u64;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let corrupt = |e: serde_json::Error| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: number,
            message: line_error(&e),
        };
        let d: DigestLine = serde_json::from_slice(&line).map_err(corrupt)?;
        if !digests.params.contains_key(d.cell_id.as_ref()) {
            let RecordParams { params, .. } = serde_json::from_slice(&line).map_err(corrupt)?;
            digests.params.insert(d.cell_id.to_string(), params);
        }
        digests.runs.push(RunDigest {
            run_id: d.run_id.into_owned(),
            cell_id: d.cell_id.into_owned(),
            warmup: d.warmup,
            status: d.status,
            reason: d.reason.map(Cow::into_owned),
            session: d.session,
            background_share: d.background.map(|b| b.share),
            load: d.load.map(|l| l.summary),
        });
    }
    Ok((digests, tail))
}

/// Every finished run's record with its 1-based line number: each newline-terminated line, and
/// a last line that is whole JSON without its newline (as the digests and the runner count
/// it); a torn last line (a run being written, cut anywhere, even inside a character) is no
/// finished run and is left out. Bytes, not text: a cut character must not fail the whole read.
pub(crate) fn numbered_records(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(usize, RunRecord)>, JournalError> {
    let complete = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1);
    let end = if is_whole_json(&bytes[complete..]) {
        bytes.len()
    } else {
        complete
    };
    let mut records = Vec::new();
    for (i, line) in bytes[..end].split(|b| *b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let record = serde_json::from_slice(line).map_err(|e| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
            message: line_error(&e),
        })?;
        records.push((i + 1, record));
    }
    Ok(records)
}

/// Who holds a data set's lock. The holder writes itself into the lock file and clears it when
/// it lets go, so that a second runner can say who is in its way, and a runner that finds
/// another's entry in a lock nobody holds knows that one died holding it (killed, or crashed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started_unix_ms: u64,
    /// Its command line.
    pub command: String,
}

impl Holder {
    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            host: sysinfo::System::host_name().unwrap_or_default(),
            started_unix_ms: crate::store::unix_ms(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    /// "pid 4242 on node1 since Tue, 01 Dec 2026 18:40:01 GMT: `banterhearts run TR1`".
    pub fn describe(&self) -> String {
        let since = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.started_unix_ms);
        format!(
            "pid {} on {} since {}: `{}`",
            self.pid,
            self.host,
            httpdate::fmt_http_date(since),
            self.command
        )
    }
}

/// A data set's lock, held while this value lives: a second runner (or a merge of a shard
/// still running) is refused. The OS releases it if the process dies.
pub(crate) struct Lock {
    file: File,
    /// The entry of a holder that died holding the lock, found when it was taken.
    pub left_by: Option<Holder>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Letting go cleanly: no entry is left to be taken for a dead holder's.
        let _ = self.file.set_len(0);
    }
}

/// The entry a lock file holds, if it holds one.
fn holder(file: &mut File) -> Option<Holder> {
    let mut entry = String::new();
    file.read_to_string(&mut entry).ok()?;
    serde_json::from_str(entry.trim()).ok()
}

/// Takes a data set's lock and writes this process into it.
pub(crate) fn lock(paths: &TrPaths) -> Result<Lock, JournalError> {
    let lock_path = paths.lock();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(JournalError::Locked(lock_path, holder(&mut file)));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let left_by = holder(&mut file);
    let mut me = serde_json::to_vec(&Holder::me()).expect("a lock entry serializes");
    me.push(b'\n');
    file.set_len(0).map_err(io(&lock_path))?;
    std::os::unix::fs::FileExt::write_all_at(&file, &me, 0).map_err(io(&lock_path))?;
    Ok(Lock { file, left_by })
}

/// A torn last line moved out of the journal.
#[derive(Debug)]
pub struct SetAside {
    pub bytes: usize,
    pub to: PathBuf,
}

/// Makes the journal end with a newline before anything is appended. A last line that is
/// whole JSON only lacks its newline (a hand edit) and gets it. Otherwise it is a run torn by a
/// crash mid-write: it is copied beside the journal and then cut off, so even those bytes are
/// kept. Bytes with a carriage return are no torn line of ours (JSON escapes it): a journal
/// with CR-only line ends would be cut whole, so it is refused, unchanged.
fn end_with_a_newline(
    file: &mut File,
    path: &Path,
    tail: Tail,
) -> Result<Option<SetAside>, JournalError> {
    if tail.rest.is_empty() {
        return Ok(None);
    }
    if tail.whole {
        file.write_all(b"\n").map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        return Ok(None);
    }
    if tail.rest.contains(&b'\r') {
        return Err(JournalError::Corrupt {
            path: path.to_path_buf(),
            line: tail.line,
            message: format!(
                "its last {} bytes have no newline and are no run record; if its lines end in CR only, convert them to LF",
                tail.rest.len()
            ),
        });
    }
    let mut set_aside = None;
    if !tail.rest.trim_ascii().is_empty() {
        let to = path.with_extension(format!("jsonl.torn-{}", crate::store::unix_ms()));
        crate::store::write_atomic(&to, &tail.rest).map_err(io(&to))?;
        set_aside = Some(SetAside {
            bytes: tail.rest.len(),
            to,
        });
    }
    file.set_len(tail.complete).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(set_aside)
}

impl Journal {
    /// Locks and opens the journal, so that it ends with a newline (see `end_with_a_newline`).
    /// Returns the digests of the runs so far (resuming needs their ids and sessions, not
    /// their measurements: whole records of a million runs would take gigabytes) and where a
    /// torn last line was put, if there was one.
    pub fn open(paths: &TrPaths) -> Result<(Journal, Digests, Option<SetAside>), JournalError> {
        std::fs::create_dir_all(&paths.data_dir).map_err(io(&paths.data_dir))?;
        let lock = lock(paths)?;
        let path = paths.runs();
        let new = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if new {
            // The journal's directory entry must survive a power cut too, or the fsynced runs in
            // it would be lost with it. (Some filesystems cannot sync a directory: best effort.)
            if let Ok(dir) = File::open(&paths.data_dir) {
                let _ = dir.sync_all();
            }
        }
        let (digests, tail) = scan_digests(&file, &path)?;
        let set_aside = end_with_a_newline(&mut file, &path, tail)?;
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        let ids = digests.runs.iter().map(|r| r.run_id.clone()).collect();
        Ok((
            Journal {
                file,
                path,
                lock,
                ids,
            },
            digests,
            set_aside,
        ))
    }

    pub fn contains(&self, run_id: &str) -> bool {
        self.ids.contains(run_id)
    }

    /// The runner that died holding this journal's lock, if one did.
    pub fn left_by(&self) -> Option<&Holder> {
        self.lock.left_by.as_ref()
    }

    /// Appends one record as a single write and fsyncs it; a record whose id is already in the
    /// journal is refused, so a run is never stored twice.
    pub fn append(&mut self, record: &RunRecord) -> Result<(), JournalError> {
        if self.ids.contains(&record.run_id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(record).expect("run records serialize");
        line.push(b'\n');
        let end = self.file.metadata().map(|m| m.len());
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // A full disk takes part of a line: cut it off again, so the journal ends where the
            // last whole record does (opening it again would set the piece aside all the same).
            if let Ok(end) = end {
                let _ = self.file.set_len(end);
                let _ = self.file.sync_data();
            }
            return Err(JournalError::Append {
                path: self.path.clone(),
                run_id: record.run_id.clone(),
                source,
            });
        }
        self.ids.insert(record.run_id.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(run: &str, cell: &str, warmup: bool, reason: Option<&str>) -> String {
        let status = if reason.is_some() { "degraded" } else { "ok" };
        let reason = reason.map_or(String::new(), |r| format!(r#","reason":"{r}""#));
        format!(
            r#"{{"tr":"TR1","run_id":"{run}","cell":0,"cell_id":"{cell}","params":{{"n":"{cell}"}},"repetition":0,"warmup":{warmup},"status":"{status}"{reason},"started_unix_ms":0,"session":2,"agents":[{{"agent":0,"status":"{status}","text":"x"}}],"harness_lag":{{}},"client_rss_mb":null}}"#
        ) + "\n"
    }

    // Digests keep what bookkeeping needs, parse a cell's parameters once, and leave out a
    // torn last line, as opening the journal does.
    #[test]
    fn digests_keep_ids_status_and_reasons_and_skip_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        let text = line("r1", "a", false, None)
            + &line("r2", "b", false, Some("agent 0: server closed"))
            + &line("r3", "a", true, None)
            + r#"{"tr":"TR1","run_id":"torn"#;
        std::fs::write(&path, text).unwrap();
        let d = read_digests(&path).unwrap();
        let ids: Vec<&str> = d.runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["r1", "r2", "r3"]);
        assert_eq!(d.runs[1].status, RunStatus::Degraded);
        assert_eq!(d.runs[1].reason.as_deref(), Some("agent 0: server closed"));
        assert!(d.runs[2].warmup && d.runs[2].session == 2);
        assert_eq!(d.params.len(), 2);
        assert_eq!(d.params["b"]["n"], "b");
        assert!(
            read_digests(&dir.path().join("none.jsonl"))
                .unwrap()
                .runs
                .is_empty()
        );
    }

    #[test]
    fn a_broken_line_is_named_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        std::fs::write(&path, line("r1", "a", false, None) + "\n{not json}\n").unwrap();
        let Err(JournalError::Corrupt { line: at, .. }) = read_digests(&path) else {
            panic!("a broken journal was read");
        };
        assert_eq!(at, 3, "the blank line 2 counts");
        // A record the analysis could not read (no agents) is refused here too.
        let no_agents = line("r2", "a", false, None)
            .replace(r#""agents":[{"agent":0,"status":"ok","text":"x"}],"#, "");
        assert!(!no_agents.contains("agents"));
        std::fs::write(&path, line("r1", "a", false, None) + &no_agents).unwrap();
        let Err(JournalError::Corrupt {
            line: at, message, ..
        }) = read_digests(&path)
        else {
            panic!("a record without agents was read");
        };
        assert_eq!(at, 2);
        assert!(message.contains("agents"), "{message}");
    }

    // Opening for a resume keeps every finished run: a torn last line is moved beside the
    // journal, a whole record that only lacks its newline gets one, and a journal it cannot
    // read safely (a damaged line, CR-only line ends) is refused with the file left as it was.
    #[test]
    fn opening_keeps_every_finished_run_and_refuses_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TrPaths::new(dir.path(), "TR1");
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        let finished = line("r1", "a", false, None) + &line("r2", "b", true, None);
        let torn = r#"{"tr":"TR1","run_"#;
        std::fs::write(paths.runs(), finished.clone() + torn).unwrap();
        let (journal, recorded, set_aside) = Journal::open(&paths).unwrap();
        assert!(journal.contains("r1") && journal.contains("r2"));
        assert_eq!(recorded.runs.len(), 2);
        assert_eq!(recorded.runs[1].session, 2);
        assert_eq!(std::fs::read_to_string(paths.runs()).unwrap(), finished);
        let set_aside = set_aside.expect("the torn line is kept");
        assert_eq!(std::fs::read_to_string(&set_aside.to).unwrap(), torn);
        drop(journal);

        let last = line("r3", "a", false, None);
        std::fs::write(paths.runs(), finished.clone() + last.trim_end()).unwrap();
        let (journal, recorded, set_aside) = Journal::open(&paths).unwrap();
        assert!(journal.contains("r3") && set_aside.is_none());
        assert_eq!(recorded.runs.len(), 3);
        assert_eq!(
            std::fs::read_to_string(paths.runs()).unwrap(),
            finished.clone() + &last
        );
        drop(journal);

        for damaged in [
            finished.clone() + "{not json}\n" + &line("r3", "a", false, None),
            finished.replace('\n', "\r"),
        ] {
            std::fs::write(paths.runs(), &damaged).unwrap();
            let Err(JournalError::Corrupt { .. }) = Journal::open(&paths) else {
                panic!("a damaged journal was opened");
            };
            assert_eq!(std::fs::read_to_string(paths.runs()).unwrap(), damaged);
        }
    }
}
