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
    pub fn runs(&self) -> PathBuf {
        self.data_dir.join("runs.jsonl")
    }
    pub fn manifest(&self) -> PathBuf {
        self.data_dir.join("manifest.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.data_dir.join(".lock")
    }
    pub fn logs(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, fsyncing both, so readers see
/// the old file or the new one and never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Persist the rename itself.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    // By table: formatting byte by byte was most of the time a million-run plan took.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
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
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
