//! All specs under `experiments/`, checked together: unique ids and the supersession graph
//! (targets exist, no cycles, one current head per chain). "superseded" is derived here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::spec::{self, LoadedSpec, Status};

#[derive(Debug, Default)]
pub struct Registry {
    pub root: PathBuf,
    /// Valid specs by id, in id order.
    pub specs: BTreeMap<String, LoadedSpec>,
    /// Spec files that failed to load, by the id their file name claims.
    pub broken: BTreeMap<String, PathBuf>,
    /// id -> ids of the reports that supersede it.
    successors: BTreeMap<String, Vec<String>>,
}

/// The status a reader sees: the spec's own, or superseded when a successor exists.
#[derive(Debug, Clone, PartialEq)]
pub enum EffectiveStatus {
    Declared(Status),
    Superseded { by: String, reason: String },
}

impl EffectiveStatus {
    pub fn label(&self) -> String {
        match self {
            EffectiveStatus::Declared(s) => s.to_string(),
            EffectiveStatus::Superseded { by, .. } => format!("superseded by {by}"),
        }
    }
}

pub fn experiments_dir(root: &Path) -> PathBuf {
    // `experiments/x.yaml` reads better in messages than `./experiments/x.yaml`.
    if root == Path::new(".") {
        PathBuf::from("experiments")
    } else {
        root.join("experiments")
    }
}

/// Spec files directly under `dir` (subfolders such as `prompts/` hold other YAML), sorted.
pub fn spec_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diagnostic::new(format!("cannot read the experiments folder: {e}"))
            .in_file(dir)
            .help("run banterhearts in the project root, or pass --root <dir>")
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl Registry {
    /// Loads every spec under `root/experiments`. Returns whatever loaded, plus every problem
    /// found; callers decide whether a problem elsewhere blocks what they are doing.
    pub fn load(root: &Path) -> (Registry, Diagnostics) {
        let mut problems = Diagnostics::default();
        let mut reg = Registry {
            root: root.to_path_buf(),
            ..Registry::default()
        };
        let files = match spec_files(&experiments_dir(root)) {
            Ok(files) => files,
            Err(d) => return (reg, d.into()),
        };
        for file in files {
            match spec::load(&file) {
                Ok(loaded) => {
                    if let Some(first) = reg.specs.get(&loaded.spec.id) {
                        problems.push(
                            loaded
                                .error_at("id", format!("duplicate id `{}`", loaded.spec.id))
                                .help(format!(
                                    "`{}` already defines it; give one of them a new id",
                                    first.path.display()
                                )),
                        );
                    } else {
                        reg.specs.insert(loaded.spec.id.clone(), loaded);
                    }
                }
                Err(errors) => {
                    let stem = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    reg.broken.insert(stem, file);
                    problems.0.extend(errors.0);
                }
            }
        }
        reg.check_supersession(&mut problems);
        (reg, problems)
    }

    fn check_supersession(&mut self, problems: &mut Diagnostics) {
        for (id, loaded) in &self.specs {
            for (i, target) in loaded.spec.builds_on.iter().enumerate() {
                if !self.specs.contains_key(target) && !self.broken.contains_key(target) {
                    let others = self
                        .specs
                        .keys()
                        .map(String::as_str)
                        .filter(|other| other != id);
                    let help = did_you_mean(target, others)
                        .unwrap_or_else(|| format!("add experiments/{target}.yaml or fix the id"));
                    problems.push(
                        loaded
                            .error_at(
                                &format!("builds_on[{i}]"),
                                format!("`{id}` builds on `{target}`, which does not exist"),
                            )
                            .help(help),
                    );
                }
            }
            let Some(sup) = &loaded.spec.supersedes else {
                continue;
            };
            if self.specs.contains_key(&sup.id) {
                self.successors
                    .entry(sup.id.clone())
                    .or_default()
                    .push(id.clone());
            } else if !self.broken.contains_key(&sup.id) {
                let others = self
                    .specs
                    .keys()
                    .map(String::as_str)
                    .filter(|other| other != id);
                let help = did_you_mean(&sup.id, others)
                    .unwrap_or_else(|| format!("add experiments/{}.yaml or fix the id", sup.id));
                problems.push(
                    loaded
                        .error_at(
                            "supersedes.id",
                            format!("`{id}` supersedes `{}`, which does not exist", sup.id),
                        )
                        .help(help),
                );
            }
        }
        for (target, succ) in &self.successors {
            if succ.len() > 1 {
                let later = &self.specs[&succ[1]];
                problems.push(
                    later
                        .error_at("supersedes.id", format!("`{target}` has two current successors: {}", succ.join(" and ")))
                        .help(format!("a report has one successor; to continue the chain, make `{}` supersede `{}`", succ[1], succ[0])),
                );
            }
        }
        let mut reported = BTreeSet::new();
        for start in self.specs.keys() {
            let mut chain = vec![start.clone()];
            let mut current = start.clone();
            while let Some(next) = self
                .specs
                .get(&current)
                .and_then(|s| s.spec.supersedes.as_ref())
                .map(|s| s.id.clone())
            {
                if let Some(pos) = chain.iter().position(|c| *c == next) {
                    let cycle: Vec<String> = chain[pos..].to_vec();
                    let first = cycle.iter().min().cloned().unwrap_or_default();
                    if reported.insert(first.clone()) {
                        let mut shown = cycle.clone();
                        let rotate = shown.iter().position(|c| *c == first).unwrap_or(0);
                        shown.rotate_left(rotate);
                        shown.push(first.clone());
                        problems.push(
                            self.specs[&first]
                                .error_at("supersedes.id", format!("supersession cycle: {}", shown.join(" supersedes ")))
                                .help("an older report cannot supersede a newer one; remove `supersedes` from the oldest"),
                        );
                    }
                    break;
                }
                chain.push(next.clone());
                current = next;
            }
        }
    }

    /// Finds a spec by id, or by the path of its file.
    pub fn resolve(&self, name: &str) -> Result<&LoadedSpec, Diagnostic> {
        if let Some(s) = self.specs.get(name) {
            return Ok(s);
        }
        let as_path = Path::new(name);
        if let Some(s) = as_path
            .file_stem()
            .and_then(|stem| self.specs.get(stem.to_str()?))
            && as_path.extension().is_some()
        {
            return Ok(s);
        }
        if let Some(file) = self.broken.get(name) {
            return Err(Diagnostic::new(format!("`{name}` has errors"))
                .in_file(file)
                .help(format!(
                    "run `banterhearts validate {}` to see them",
                    file.display()
                )));
        }
        let help = did_you_mean(name, self.specs.keys().map(String::as_str)).unwrap_or_else(|| {
            format!(
                "known TRs: {}",
                self.specs.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        });
        Err(Diagnostic::new(format!(
            "no TR `{name}` in {}",
            experiments_dir(&self.root).display()
        ))
        .help(help))
    }

    pub fn effective_status(&self, id: &str) -> Option<EffectiveStatus> {
        let loaded = self.specs.get(id)?;
        Some(match self.successor(id) {
            Some(by) => EffectiveStatus::Superseded {
                by: by.to_owned(),
                reason: self.specs[by]
                    .spec
                    .supersedes
                    .as_ref()
                    .map(|s| s.reason.clone())
                    .unwrap_or_default(),
            },
            None => EffectiveStatus::Declared(loaded.spec.status),
        })
    }

    /// The report that replaces `id`, if any (the first, when the graph is invalid).
    pub fn successor(&self, id: &str) -> Option<&str> {
        self.successors
            .get(id)
            .and_then(|s| s.first())
            .map(String::as_str)
    }
}
