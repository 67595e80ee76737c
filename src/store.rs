//! Where artifacts live, and writing them so a crash never leaves a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Paths of one TR's artifacts under the project root.
#[derive(Debug, Clone)]
pub struct TrPaths {
    pub data_dir: PathBuf,
}

impl TrPaths {
    pub fn new(root: &Path, tr: &str) -> TrPaths {
        TrPaths {
            data_dir: root.join("data").join(tr),
        }
    }
    /// A replication's data set: the same layout, beside the original data.
    pub fn replication(root: &Path, tr: &str, name: &str) -> TrPaths {
        TrPaths {
            data_dir: Self::new(root, tr).replications_dir().join(name),
        }
    }
    pub fn replications_dir(&self) -> PathBuf {
        self.data_dir.join("replications")
    }
    /// One shard of this data set: the same layout under `shards/`.
    pub fn shard(&self, shard: &crate::plan::shard::Shard) -> TrPaths {
        TrPaths {
            data_dir: self.shards_dir().join(shard.dir_name()),
        }
    }
    pub fn shards_dir(&self) -> PathBuf {
        self.data_dir.join("shards")
    }
    pub fn runs(&self) -> PathBuf {
        self.data_dir.join("runs.jsonl")
    }
    pub fn manifest(&self) -> PathBuf {
        self.data_dir.join("manifest.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.data_dir.join(".lock")
    }
    /// A load run's requests: one file per run, written whole before the run's journal line.
    pub fn requests(&self, run_id: &str) -> PathBuf {
        self.requests_dir().join(format!("{run_id}.jsonl"))
    }
    pub fn requests_dir(&self) -> PathBuf {
        self.data_dir.join("requests")
    }
    pub fn logs(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, fsyncing both, so readers see
/// the old file or the new one and never a torn one. The temporary file is this writer's own
/// (process id and a counter, created exclusively): two commands writing the same file at once
/// each rename a whole file, where a shared name let one move the other's half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // Persist the rename itself.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex, by table: formatting byte by byte was most of the time a million-run plan
/// took.
fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * digest.len());
    for &b in digest {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

/// SHA-256 of a file, streamed (model files are hundreds of MB).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Wall-clock now in Unix milliseconds (ordering and provenance only; durations use a
/// monotonic clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Writers racing on one file: a reader only ever sees one writer's whole file, every write
    // succeeds, and no temporary file is left behind.
    #[test]
    fn concurrent_writers_never_leave_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.csv");
        write_atomic(&path, &[b'0'; 1 << 16]).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let bytes = std::fs::read(&path).unwrap();
                    assert_eq!(bytes.len(), 1 << 16, "a torn file was seen");
                    assert!(
                        bytes.iter().all(|b| *b == bytes[0]),
                        "two writers' bytes mixed"
                    );
                }
            });
            let writers: Vec<_> = (b'a'..b'i')
                .map(|byte| {
                    let path = &path;
                    scope.spawn(move || {
                        (0..25).try_for_each(|_| write_atomic(path, &[byte; 1 << 16]))
                    })
                })
                .collect();
            let written: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            reader.join().unwrap();
            for w in written {
                w.unwrap();
            }
        });
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    }
}
