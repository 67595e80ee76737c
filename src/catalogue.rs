//! Claims about the catalogue as a whole: what an index says of itself ("20 reports, 15
//! production-ready", "903+ benchmark runs"), written in `experiments/catalogue/claims.yaml`
//! and checked by the audit against the specs, like any other claim. The counts are the
//! index's own (`report::catalogue_counts`): effective statuses from the registry, and each
//! report's runs as recorded here, else from its matrix, else as the report states them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::spec::SourceMap;
use crate::spec::claim::Stated;

/// Where the catalogue's claims live, below `root`.
pub fn claims_path(root: &Path) -> PathBuf {
    root.join("experiments")
        .join("catalogue")
        .join("claims.yaml")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueClaims {
    /// Where the stated figures come from.
    pub source: String,
    pub claims: Vec<CatalogueClaim>,
}

/// What a catalogue claim counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    /// Reports.
    Reports,
    /// Reports neither superseded nor planned.
    Current,
    Superseded,
    Planned,
    /// Measured runs (planned-only runs not counted).
    Runs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueClaim {
    pub id: String,
    #[serde(default)]
    pub text: Option<String>,
    pub count: Count,
    /// The reports counted; all when absent.
    #[serde(default)]
    pub of: Vec<String>,
    /// The figure as stated: `20`, or `903+` for "at least".
    pub stated: String,
}

/// The counts of one report, as the index makes them.
#[derive(Debug, Clone)]
pub struct ReportCount {
    pub id: String,
    pub current: bool,
    pub superseded: bool,
    pub planned: bool,
    /// Runs made (None when the report has no figure; planned runs are not made).
    pub runs: Option<f64>,
}

/// A loaded claims file: the claims and where each one starts.
pub struct Loaded {
    pub path: PathBuf,
    pub claims: CatalogueClaims,
    pub places: Vec<String>,
}

/// Reads the catalogue's claims, if the file exists. Errors name file, line, column and field.
pub fn load(root: &Path, known: &[String]) -> Result<Option<Loaded>, Diagnostics> {
    let path = claims_path(root);
    let text = match std::fs::read(&path) {
        Ok(bytes) => crate::diagnostic::utf8_text(&path, bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Diagnostic::new(format!("cannot read: {e}"))
                .in_file(&path)
                .into());
        }
    };
    let claims: CatalogueClaims = yaml_serde::from_str(&text).map_err(|e| {
        let loc = Some(crate::spec::yaml_location(&text, &e));
        Diagnostics::from(
            Diagnostic::new(format!("invalid catalogue claims: {e}"))
                .in_file(&path)
                .at(loc, &text)
                .help("each claim is {id, text, count: reports|current|superseded|planned|runs, of: [TR..], stated: \"20\" or \"903+\"}"),
        )
    })?;
    let map = SourceMap::new(&text);
    let at = |field: &str| {
        Diagnostic::new("")
            .in_file(&path)
            .at(map.value(field), &text)
            .place()
            .unwrap_or_default()
    };
    let mut errors = Diagnostics::default();
    for (i, c) in claims.claims.iter().enumerate() {
        if let Err(e) = parse_stated(&c.stated) {
            errors.push(
                Diagnostic::new(format!(
                    "claim `{}`: stated `{}` is not a count: {e}",
                    c.id, c.stated
                ))
                .in_file(&path)
                .at(map.value(&format!("claims[{i}].stated")), &text)
                .field(format!("claims[{i}].stated"))
                .help("write the number as the index states it, e.g. \"20\" or \"903+\""),
            );
        }
        for (j, id) in c.of.iter().enumerate() {
            if !known.contains(id) {
                let field = format!("claims[{i}].of[{j}]");
                let help = did_you_mean(id, known.iter().map(String::as_str))
                    .unwrap_or_else(|| "name a TR under experiments/".into());
                errors.push(
                    Diagnostic::new(format!("claim `{}` counts `{id}`, which is not a TR", c.id))
                        .in_file(&path)
                        .at(map.value(&field), &text)
                        .field(field)
                        .help(help),
                );
            }
        }
    }
    let places = (0..claims.claims.len())
        .map(|i| at(&format!("claims[{i}]")))
        .collect();
    errors.into_result(Some(Loaded {
        path,
        claims,
        places,
    }))
}

/// `903+` is (903, at least); `20` is (20, exactly, at its precision).
fn parse_stated(text: &str) -> Result<(Stated, bool), String> {
    let t = text.trim();
    let (t, at_least) = match t.strip_suffix('+') {
        Some(rest) => (rest, true),
        None => (t, false),
    };
    Stated::parse(t).map(|s| (s, at_least))
}

/// How a claim came out.
#[derive(Debug, Clone)]
pub struct Checked {
    pub id: String,
    pub holds: bool,
    /// The count the specs give, and over which reports.
    pub counted: f64,
    pub detail: String,
}

/// Checks every claim against the reports' counts.
pub fn check(claims: &CatalogueClaims, reports: &[ReportCount]) -> Vec<Checked> {
    claims
        .claims
        .iter()
        .map(|c| {
            let chosen: Vec<&ReportCount> = reports
                .iter()
                .filter(|r| c.of.is_empty() || c.of.contains(&r.id))
                .collect();
            let counted: f64 = match c.count {
                Count::Reports => chosen.len() as f64,
                Count::Current => chosen.iter().filter(|r| r.current).count() as f64,
                Count::Superseded => chosen.iter().filter(|r| r.superseded).count() as f64,
                Count::Planned => chosen.iter().filter(|r| r.planned).count() as f64,
                Count::Runs => chosen.iter().filter_map(|r| r.runs).sum(),
            };
            let Ok((stated, at_least)) = parse_stated(&c.stated) else {
                return Checked {
                    id: c.id.clone(),
                    holds: false,
                    counted,
                    detail: format!("stated `{}` is not a count", c.stated),
                };
            };
            let holds = if at_least {
                counted >= stated.value
            } else {
                (counted - stated.value).abs() <= stated.tolerance()
            };
            let what = match c.count {
                Count::Reports => "reports",
                Count::Current => "current reports",
                Count::Superseded => "superseded reports",
                Count::Planned => "planned reports",
                Count::Runs => "runs",
            };
            let over = if c.of.is_empty() {
                "all reports".to_owned()
            } else {
                format!("{} listed reports", chosen.len())
            };
            Checked {
                id: c.id.clone(),
                holds,
                counted,
                detail: format!(
                    "stated {} {what}; the specs give {counted} over {over}",
                    c.stated.trim()
                ),
            }
        })
        .collect()
}
