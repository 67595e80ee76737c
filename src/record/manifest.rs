//! Provenance: `data/<TR>/manifest.json`, one entry per runner session (tool version, host,
//! servers and their builds). Appended by the runner, read by report and audit.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Location};
use crate::plan::shard::Shard;
use crate::store::{self, TrPaths};

/// Provenance of every runner invocation on a TR (data/<TR>/manifest.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub tr: String,
    pub sessions: Vec<Session>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: u32,
    pub started_unix_ms: u64,
    pub tool_version: String,
    pub git_commit: Option<String>,
    pub spec_sha256: String,
    pub host: HostInfo,
    pub servers: Vec<ServerProvenance>,
    pub planned_runs: usize,
    pub pending_runs: usize,
    /// The part of the plan this session ran, when it ran a shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Set on the sessions `merge` copied into the TR's data: where they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<MergedFrom>,
}

/// A merged session's origin: the shard directory (relative to the TR's data directory) and
/// the session's number there. Merging again finds it by these and adds nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedFrom {
    pub shard: String,
    pub session: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerProvenance {
    pub backend: String,
    pub url: String,
    pub launched: bool,
    pub build: Option<String>,
    pub model: Option<String>,
    pub model_sha256: Option<String>,
    /// What the model file is, where a cell chose it (`model` axis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<super::ModelRun>,
    /// Selected fields of the server's own description (/props, /api/version, /v1/models).
    pub info: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpu: String,
    pub logical_cpus: usize,
    pub physical_cores: Option<usize>,
    pub memory_gb: f64,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    #[serde(default)]
    pub gpu: Option<String>,
}

/// The TR's manifest; None before its first run. A manifest that cannot be read is an error,
/// never an empty one: the next run would otherwise write over earlier sessions' provenance.
pub fn read_manifest(paths: &TrPaths) -> Result<Option<Manifest>, Diagnostic> {
    let path = paths.manifest();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Diagnostic::new(e.to_string()).in_file(&path)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        let at = Location {
            line: e.line(),
            column: e.column(),
        };
        Diagnostic::new(format!("unreadable manifest ({})", super::journal::json_message(&e)))
        .in_file(&path)
        .at((e.line() > 0).then_some(at), &text)
        .help("it holds the provenance of every session so far: repair it, or move it aside to start a new one")
    })
}

pub fn append_session(
    paths: &TrPaths,
    tr: &str,
    manifest: Option<Manifest>,
    session: Session,
) -> Result<(), String> {
    let mut manifest = manifest.unwrap_or_else(|| Manifest {
        tr: tr.to_owned(),
        sessions: Vec::new(),
    });
    manifest.sessions.push(session);
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    store::write_atomic(&paths.manifest(), text.as_bytes())
        .map_err(|e| format!("{}: {e}", paths.manifest().display()))
}
