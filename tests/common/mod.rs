//! Helpers shared by the integration tests: they drive the real binary on temp project roots.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `banterhearts -C <root> <args>`.
pub fn banterhearts(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_banterhearts"))
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .expect("the banterhearts binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temp project root with the given specs written under `experiments/`.
pub fn project(specs: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    for (name, text) in specs {
        std::fs::write(dir.path().join("experiments").join(name), text).unwrap();
    }
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
