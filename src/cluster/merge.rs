//! `merge`: the shard journals of a data set, put together into its own journal.
//!
//! Every shard's runs are checked before anything is written: each belongs to the plan, each
//! shard was recorded from the same spec version, and a run recorded in two places has the
//! same content in both (then it is kept once) or the merge stops naming both places. Each
//! shard session becomes a session of the merged manifest with its provenance (host, servers,
//! builds, the shard) and `merged_from`, so every merged run still says where it ran; merging
//! again finds those sessions and the runs already there, and changes nothing.
//!
//! Order of writes, so that a crash at any point loses nothing and a rerun completes it: the
//! request files of load runs, then the manifest, then the journal lines (fsynced one by one).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics, Location};
use crate::plan;
use crate::record::manifest::{self, Manifest, MergedFrom, Session};
use crate::record::{Journal, RunRecord, journal, shards};
use crate::spec::LoadedSpec;
use crate::store::{self, TrPaths};

/// What one shard contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMerge {
    /// Relative to the shards directory: `0-of-2`, `h100/1-of-4`.
    pub shard: String,
    pub runs: usize,
    pub added: usize,
}

#[derive(Debug, Default)]
pub struct MergeSummary {
    pub shards: Vec<ShardMerge>,
    pub sessions_added: usize,
    /// Runs of the data set after the merge, and how many the plan has.
    pub recorded: usize,
    pub planned: usize,
}

/// One shard directory's data, read and locked.
struct ShardData {
    name: String,
    paths: TrPaths,
    text: String,
    records: Vec<(usize, RunRecord)>,
    manifest: Manifest,
    _lock: journal::Lock,
}

/// Merges every shard of the data set at `set` into it.
pub fn merge(loaded: &LoadedSpec, set: &TrPaths) -> Result<MergeSummary, Diagnostics> {
    let tr = &loaded.spec.id;
    let shards = read_shards(set)?;
    if shards.is_empty() {
        return Err(Diagnostic::new(format!("{tr} has no shards to merge"))
            .in_file(set.shards_dir())
            .help(format!("run the shards first: `banterhearts run {tr} --shard 0/2` and `--shard 1/2`, or `banterhearts submit {tr} --slurm`"))
            .into());
    }
    check_one_spec_version(&shards)?;
    let plan = plan::build(loaded);
    let planned: HashMap<&str, ()> = plan.runs.iter().map(|r| (r.run_id.as_str(), ())).collect();
    let mut errors = Diagnostics::default();
    for shard in &shards {
        for (line, record) in &shard.records {
            if !planned.contains_key(record.run_id.as_str()) {
                errors.push(
                    at_line(&shard.paths.runs(), &shard.text, *line, format!(
                        "run {} is not in {tr}'s plan: the spec's matrix changed after this shard ran",
                        record.run_id
                    ))
                    .help("restore the spec the shard ran with, or run the shard again with this spec (move its directory aside first)"),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut journal = Journal::open(set)
        .map(|(j, _, _)| j)
        .map_err(|e| Diagnostics::from(Diagnostic::new(e.to_string()).in_file(set.runs())))?;
    let (_, main) = read_journal(&set.runs())?;
    // Where each run is already recorded: the merged journal first, then shard by shard.
    let mut places: HashMap<String, (PathBuf, usize, serde_json::Value)> = HashMap::new();
    for (line, record) in &main {
        places.insert(record.run_id.clone(), (set.runs(), *line, content(record)));
    }
    let mut manifest = manifest::read_manifest(set)
        .map_err(Diagnostics::from)?
        .unwrap_or_else(|| Manifest {
            tr: tr.clone(),
            sessions: Vec::new(),
        });
    let mut next_session = manifest
        .sessions
        .iter()
        .map(|s| s.id)
        .max()
        .unwrap_or(0)
        .max(main.iter().map(|(_, r)| r.session).max().unwrap_or(0));
    let mut summary = MergeSummary {
        planned: plan.runs.len(),
        ..MergeSummary::default()
    };
    let mut to_add: Vec<RunRecord> = Vec::new();
    for shard in &shards {
        let mut session_ids: BTreeMap<u32, u32> = BTreeMap::new();
        let mut added = 0;
        for (line, record) in &shard.records {
            let here = content(record);
            if let Some((path, other_line, there)) = places.get(&record.run_id) {
                if *there != here {
                    let other = format!("{}:{other_line}", path.display());
                    errors.push(
                        at_line(&shard.paths.runs(), &shard.text, *line, format!(
                            "run {} is recorded twice with different measurements: here and at {other}",
                            record.run_id
                        ))
                        .help("keep one of the two (move the other shard's directory aside, or remove the line) and merge again; nothing was merged"),
                    );
                }
                continue;
            }
            let Some(session) = shard
                .manifest
                .sessions
                .iter()
                .find(|s| s.id == record.session)
            else {
                errors.push(
                    at_line(&shard.paths.runs(), &shard.text, *line, format!(
                        "run {} names session {}, which {} does not list",
                        record.run_id,
                        record.session,
                        shard.paths.manifest().display()
                    ))
                    .help("the shard's manifest is incomplete: restore it from a backup, or run the shard again"),
                );
                continue;
            };
            let id = match session_ids.get(&session.id) {
                Some(id) => *id,
                None => {
                    let origin = MergedFrom {
                        shard: shard.name.clone(),
                        session: session.id,
                    };
                    let id = match manifest
                        .sessions
                        .iter()
                        .find(|s| s.merged_from.as_ref() == Some(&origin))
                    {
                        Some(s) => s.id,
                        None => {
                            next_session += 1;
                            manifest.sessions.push(Session {
                                id: next_session,
                                merged_from: Some(origin),
                                ..session.clone()
                            });
                            summary.sessions_added += 1;
                            next_session
                        }
                    };
                    session_ids.insert(session.id, id);
                    id
                }
            };
            let mut merged = record.clone();
            merged.session = id;
            places.insert(record.run_id.clone(), (shard.paths.runs(), *line, here));
            to_add.push(merged);
            added += 1;
        }
        summary.shards.push(ShardMerge {
            shard: shard.name.clone(),
            runs: shard.records.len(),
            added,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| {
        Diagnostics::from(
            Diagnostic::new(format!("{e}"))
                .in_file(path)
                .help("nothing already merged was lost; fix the cause and merge again"),
        )
    };
    let by_name: HashMap<&str, &ShardData> = shards.iter().map(|s| (s.name.as_str(), s)).collect();
    for record in &to_add {
        let Some(load) = &record.load else { continue };
        let origin = &manifest.sessions.iter().find(|s| s.id == record.session);
        let shard = origin
            .and_then(|s| s.merged_from.as_ref())
            .and_then(|m| by_name.get(m.shard.as_str()))
            .expect("every added record's session came from a shard");
        let from = shard.paths.requests(&record.run_id);
        let bytes = std::fs::read(&from).map_err(|e| io(&from, &e))?;
        if store::sha256_hex(&bytes) != load.requests_sha256 {
            return Err(Diagnostic::new(format!(
                "the requests of run {} do not match the SHA-256 its journal line records",
                record.run_id
            ))
            .in_file(&from)
            .help("the file was changed after the run: restore it, or run the shard again")
            .into());
        }
        let to = set.requests(&record.run_id);
        store::write_atomic(&to, &bytes).map_err(|e| io(&to, &e))?;
    }
    if summary.sessions_added > 0 {
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        store::write_atomic(&set.manifest(), text.as_bytes())
            .map_err(|e| io(&set.manifest(), &e))?;
    }
    for record in &to_add {
        journal.append(record).map_err(|e| io(&set.runs(), &e))?;
    }
    summary.recorded = main.len() + to_add.len();
    Ok(summary)
}

/// A record's measurements and identity, without the session number merge renumbers.
fn content(record: &RunRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(record).expect("run records serialize");
    if let Some(map) = value.as_object_mut() {
        map.remove("session");
    }
    value
}

fn at_line(path: &Path, text: &str, line: usize, message: String) -> Diagnostic {
    Diagnostic::new(message)
        .in_file(path)
        .at(Some(Location { line, column: 1 }), text)
}

/// A journal's bytes (none if it does not exist).
fn read_bytes(path: &Path) -> Result<Vec<u8>, Diagnostics> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Diagnostic::new(e.to_string()).in_file(path).into()),
    }
}

/// A journal as text for showing its lines in errors, and its records with their line numbers
/// (a torn last line is no finished run; a whole one without its newline is).
fn read_journal(path: &Path) -> Result<(String, Vec<(usize, RunRecord)>), Diagnostics> {
    let bytes = read_bytes(path)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let records = parse_lines(path, &bytes, &text)?;
    Ok((text, records))
}

fn parse_lines(
    path: &Path,
    bytes: &[u8],
    text: &str,
) -> Result<Vec<(usize, RunRecord)>, Diagnostics> {
    journal::numbered_records(path, bytes).map_err(|e| match e {
        journal::JournalError::Corrupt { line, message, .. } => at_line(
            path,
            text,
            line,
            format!("unreadable run record ({message})"),
        )
        .help("the journal is damaged: move the line aside by hand, then merge again")
        .into(),
        other => Diagnostic::new(other.to_string()).in_file(path).into(),
    })
}

/// Reads and locks every shard: a shard whose runner still holds its lock is not merged.
fn read_shards(set: &TrPaths) -> Result<Vec<ShardData>, Diagnostics> {
    let mut shards = Vec::new();
    for (name, paths) in shards::shard_dirs(set) {
        let lock = journal::lock(&paths).map_err(|e| match e {
            journal::JournalError::Locked(at, _) => Diagnostic::new(format!("shard {name} is still running"))
                .in_file(at)
                .help("wait for it to finish (a Slurm merge job waits with --dependency=afterok), then merge again"),
            other => Diagnostic::new(other.to_string()).in_file(paths.lock()),
        })?;
        let (text, records) = read_journal(&paths.runs())?;
        let manifest = manifest::read_manifest(&paths).map_err(Diagnostics::from)?;
        let manifest = match manifest {
            Some(m) => m,
            None if records.is_empty() => Manifest::default(),
            None => {
                return Err(Diagnostic::new(format!(
                    "shard {name} has runs but no manifest, so their provenance is unknown"
                ))
                .in_file(paths.manifest())
                .help("restore the shard's manifest.json, or run the shard again")
                .into());
            }
        };
        shards.push(ShardData {
            name,
            paths,
            text,
            records,
            manifest,
            _lock: lock,
        });
    }
    Ok(shards)
}

/// All shards' sessions were recorded from one version of the spec: shards of two versions
/// would put two different plans' runs into one data set.
fn check_one_spec_version(shards: &[ShardData]) -> Result<(), Diagnostics> {
    let mut first: Option<(&str, &Session)> = None;
    for shard in shards {
        for session in &shard.manifest.sessions {
            match first {
                None => first = Some((&shard.name, session)),
                Some((name, s)) if s.spec_sha256 != session.spec_sha256 => {
                    return Err(Diagnostic::new(format!(
                        "shards were recorded from different versions of the spec: shard {name} (session {}) from spec sha256 {}, shard {} (session {}) from {}",
                        s.id,
                        &s.spec_sha256[..12.min(s.spec_sha256.len())],
                        shard.name,
                        session.id,
                        &session.spec_sha256[..12.min(session.spec_sha256.len())],
                    ))
                    .in_file(shard.paths.manifest())
                    .help("run every shard from the same spec: move the other version's shard directories aside and run them again; nothing was merged")
                    .into());
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
