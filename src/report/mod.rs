//! Reports: a technical report rendered from a spec, its data and a template, with SVG
//! figures; and the reports index. Rendering reads only experiments/, data/ and templates/:
//! no network, no servers, no clock, so the same inputs give byte-identical output.

pub mod figures;
pub mod filters;
mod index;

pub use index::{catalogue_counts, measured_runs, render_index};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::analysis::{self, Analysis};
use crate::diagnostic::{Diagnostic, Location};
use crate::record::{self, Manifest};
use crate::registry::{EffectiveStatus, Registry};
use crate::spec::LoadedSpec;
use crate::spec::matrix::axis_label;
use crate::stats::Summary;
use crate::store::{TrPaths, sha256_file, sha256_hex, write_atomic};

pub const DEFAULT_TEMPLATE: &str = "report.md.j2";
pub const INDEX_TEMPLATE: &str = "index.md.j2";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Input(Diagnostic),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<Diagnostic> for ReportError {
    fn from(d: Diagnostic) -> Self {
        ReportError::Input(d)
    }
}

impl From<record::JournalError> for ReportError {
    fn from(e: record::JournalError) -> Self {
        ReportError::Input(Diagnostic::new(e.to_string()))
    }
}

/// Figure files: file name -> SVG text.
pub type FigureFiles = Vec<(String, String)>;

/// A rendered report: the Markdown and its figures (file name -> SVG).
pub struct Rendered {
    pub tr: String,
    pub markdown: String,
    pub figures: FigureFiles,
    /// The claims as the report shows them, re-derived (the audit reads them from here).
    pub claims: Vec<analysis::claims::ClaimCheck>,
    /// The threats to validity the spec's thresholds find, per cell.
    pub issues: Vec<ValidityIssue>,
    /// Each replication kept beside the data, with its verdict per claim.
    pub replications: Vec<analysis::replication::Replication>,
    /// The inputs' hashes as printed in the footer (the audit's staleness check compares
    /// them with the committed report's, without hashing the journal again).
    pub footer: Footer,
}

fn templates_dir(root: &Path) -> PathBuf {
    root.join("templates")
}

pub fn reports_dir(root: &Path) -> PathBuf {
    root.join("reports")
}

/// A template error as a diagnostic naming the template file and line.
fn template_error(root: &Path, e: &minijinja::Error) -> Diagnostic {
    let file = templates_dir(root).join(e.name().unwrap_or("?"));
    let source = std::fs::read_to_string(&file).unwrap_or_default();
    let location = e.line().map(|line| Location { line, column: 1 });
    let mut message = e.to_string();
    if let Some(i) = message.find(" (in ") {
        message.truncate(i);
    }
    Diagnostic::new(format!("template error: {message}"))
        .in_file(&file)
        .at(location, &source)
        .help("fix the template; values a report can use are listed in docs/reports.md")
}

/// An environment with strict undefined values, the number filters, and the given templates.
fn environment(root: &Path, names: &[&str]) -> Result<Environment<'static>, Diagnostic> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Block tags on their own lines leave no blank lines behind: Markdown tables stay intact.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    filters::register(&mut env);
    for name in names {
        let path = templates_dir(root).join(name);
        let source = std::fs::read_to_string(&path).map_err(|e| {
            Diagnostic::new(format!("cannot read template: {e}"))
                .in_file(&path)
                .help("templates live in templates/; check `report.template` in the spec")
        })?;
        env.add_template_owned(name.to_string(), source)
            .map_err(|e| template_error(root, &e))?;
    }
    Ok(env)
}

#[derive(Serialize)]
struct CellView {
    /// 1-based, as in the figures (C1, C2, ...).
    n: usize,
    label: String,
    params: IndexMap<String, String>,
    concurrent: bool,
    runs: u32,
    degraded: u32,
    degraded_rate: f64,
    /// Every known metric: null when the cell has no values for it, so templates can test it.
    metrics: BTreeMap<String, Option<Summary>>,
    contended: Option<u32>,
    agents_compared: Option<u32>,
    cost: Option<analysis::cost::CellCost>,
    /// The cell's name in figures: the values of the axes that vary between the cells.
    figure_label: String,
    /// Per metric, each run's value, for figures.
    #[serde(skip)]
    run_values: BTreeMap<String, Vec<f64>>,
    /// A load cell (`scenario: {kind: load}`): its runs have run-level load figures.
    load: bool,
    /// A load cell's first measured run: requests in flight over its period, for figures.
    #[serde(skip)]
    in_flight: Option<figures::Timeline>,
    /// The sweep the cell belongs to: its index in the analysis' sweeps, its label, the
    /// cell's value on its axis, and the axis (`rate` or `concurrency`).
    #[serde(skip)]
    sweep: Option<(usize, String, f64, &'static str)>,
    /// A load cell's latency percentiles over all its measured requests pooled.
    pooled: Option<analysis::serving::PooledLatency>,
}

/// One load run over its period, for the timeline figure: the cell and run it is, the
/// counts over time, each request's TTFT at its send, and the end of the warm-up.
struct RunTimeline {
    caption: String,
    counts: Vec<figures::Steps>,
    latency: Vec<(f64, f64, bool)>,
    warmup_s: f64,
}

/// The run the timeline shows: in the first sweep with a knee, the first rate past the knee
/// (where the queue starts to build); else the first sweep's highest rate; else the first
/// load cell. Its first measured run that finished well, with its requests and its servers'
/// scrapes.
fn run_timeline(
    paths: &TrPaths,
    a: &analysis::Analysis,
    cells: &[CellView],
    records: &[record::RunRecord],
) -> Result<Option<RunTimeline>, ReportError> {
    let past_knee = a.sweeps.iter().find_map(|s| {
        let knee = s.knee_rate.value?;
        let i = s.rates.iter().position(|r| *r > knee)?;
        Some((s.cells[i], "the first step past the knee"))
    });
    let chosen = past_knee
        .or_else(|| {
            a.sweeps.first().and_then(|s| {
                s.cells
                    .last()
                    .map(|c| (*c, "the sweep's highest offered rate"))
            })
        })
        .or_else(|| {
            let order = a.cells_in_order();
            order
                .iter()
                .zip(cells)
                .find(|(_, v)| v.load)
                .map(|(c, _)| (*c, "the first load cell"))
        });
    let Some((cell, why)) = chosen else {
        return Ok(None);
    };
    let cell_id = &a.cells[cell].cell_id;
    let Some((record, load)) = records
        .iter()
        .filter(|r| &r.cell_id == cell_id && !r.warmup && r.status == record::RunStatus::Ok)
        .find_map(|r| r.load.as_ref().map(|l| (r, l)))
    else {
        return Ok(None);
    };
    let requests = record::requests::read(paths, &record.run_id)
        .map_err(|e| ReportError::Input(Diagnostic::new(e.to_string())))?;
    const STEP_MS: f64 = 100.0;
    let in_flight = record::in_flight(requests.iter(), 0.0, STEP_MS);
    let mut counts = vec![figures::Steps {
        label: "in flight at the client".into(),
        points: in_flight
            .iter()
            .enumerate()
            .map(|(k, n)| (k as f64 * STEP_MS / 1000.0, f64::from(*n)))
            .collect(),
    }];
    if let Some(m) = &load.server_metrics {
        for (label, value) in [
            (
                "running at the server",
                (|c: &record::ServerCounters| c.running)
                    as fn(&record::ServerCounters) -> Option<f64>,
            ),
            ("queued at the server", |c| c.waiting),
        ] {
            let points: Vec<(f64, f64)> = m
                .scrapes
                .iter()
                .filter_map(|s| value(&s.counters).map(|v| (s.t_ms / 1000.0, v)))
                .collect();
            if !points.is_empty() {
                counts.push(figures::Steps {
                    label: label.into(),
                    points,
                });
            }
        }
    }
    let latency = requests
        .iter()
        .filter_map(|r| r.ttft_ms.map(|t| (r.sent_ms / 1000.0, t, r.warmup)))
        .collect();
    let label = cells
        .iter()
        .zip(a.cells_in_order())
        .find(|(_, c)| *c == cell)
        .map_or_else(|| a.labels[cell].clone(), |(v, _)| v.figure_label.clone());
    Ok(Some(RunTimeline {
        caption: format!(
            "One run over its period: {label} ({why}), run {} (repetition {}). Above, requests in flight at the client every 100 ms and, where the server was scraped, its running and queued requests; below, each request's time to first token at the moment it was sent, warm-up requests in grey. The grey vertical line ends the warm-up.",
            record.run_id, record.repetition
        ),
        counts,
        latency,
        warmup_s: load.warmup_s,
    }))
}

#[derive(Serialize)]
struct Figure {
    file: String,
    caption: String,
}

/// A scaling fit as its figure draws it, x in the units shown (file sizes in MB): each cell's
/// runs and mean, and the fitted line.
struct ScalingFigure {
    id: String,
    metric: String,
    /// What x is, in words (`parameters`, `model file size (MB)`, an axis' name).
    x_label: String,
    /// Writes x as its ticks do.
    x_tick: fn(f64) -> String,
    points: Vec<figures::ScalingPoint>,
    line: Option<figures::FittedLine>,
}

/// What a scaling fit is against, in words, how its ticks read, and the factor from x as
/// fitted to x as shown.
fn fit_axis(against: &str) -> (String, fn(f64) -> String, f64) {
    match against {
        "params" => (
            "parameters".into(),
            |x| analysis::fits::x_text("params", x),
            1.0,
        ),
        "file_bytes" => ("model file size (MB)".into(), figures::tick, 1e-6),
        axis => (axis.to_owned(), figures::tick, 1.0),
    }
}

/// A validity issue with the cell it is about.
#[derive(Debug, Clone)]
pub struct ValidityIssue {
    pub issue: analysis::validity::Issue,
    /// The cell's label in the plan's axis order, and its id.
    pub cell_label: String,
    pub cell_id: String,
}

/// What a report was rendered from; printed in its footer, read back by the audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Footer {
    pub spec_sha256: String,
    pub data_sha256: String,
    pub template_sha256: String,
    pub tool_version: String,
}

/// The hash of a report's data: its journal's, or with replications kept beside it, of the
/// journal's and each replication journal's hashes together (a new replication run makes the
/// report stale as new runs do).
fn data_hash(root: &Path, tr: &str) -> String {
    let own = file_hash(&TrPaths::new(root, tr).runs());
    let names = analysis::replication_names(root, tr);
    if names.is_empty() {
        return own;
    }
    let mut text = own;
    for name in names {
        text.push_str(&format!(
            "\n{name} {}",
            file_hash(&TrPaths::replication(root, tr, &name).runs())
        ));
    }
    sha256_hex(text.as_bytes())
}

impl Footer {
    /// The footer a report of `loaded` rendered now would carry.
    pub fn current(root: &Path, loaded: &LoadedSpec) -> Footer {
        Footer {
            spec_sha256: sha256_hex(loaded.source.as_bytes()),
            data_sha256: data_hash(root, &loaded.spec.id),
            template_sha256: file_hash(&templates_dir(root).join(template_name(loaded))),
            tool_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Reads the footer back from a rendered report (the default template's wording).
    pub fn parse(markdown: &str) -> Option<Footer> {
        let after = |key: &str| -> Option<String> {
            let start = markdown.rfind(key)? + key.len();
            let rest = &markdown[start..];
            Some(rest[..rest.find('`')?].to_owned())
        };
        let version = markdown.rfind("Rendered by banterhearts ").map(|i| {
            let rest = &markdown[i + "Rendered by banterhearts ".len()..];
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })?;
        Some(Footer {
            spec_sha256: after("spec sha256 `")?,
            data_sha256: after("data sha256 `")?,
            template_sha256: after("template sha256 `")?,
            tool_version: version,
        })
    }
}

/// The template a spec's report uses.
pub fn template_name(loaded: &LoadedSpec) -> String {
    loaded
        .spec
        .report
        .as_ref()
        .and_then(|r| r.template.clone())
        .unwrap_or_else(|| DEFAULT_TEMPLATE.into())
}

fn file_hash(path: &Path) -> String {
    sha256_file(path).unwrap_or_else(|_| "none".into())
}

/// Why measured runs degraded, per cell id: reason (without its agent prefix) -> count.
fn degraded_reasons(digests: &record::journal::Digests) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for r in &digests.runs {
        if r.warmup || r.status != record::RunStatus::Degraded {
            continue;
        }
        let reason = r
            .reason
            .clone()
            .unwrap_or_else(|| "no reason recorded".into());
        let reason = match reason.split_once(": ") {
            Some((agent, rest)) if agent.starts_with("agent ") => rest.to_owned(),
            _ => reason,
        };
        *out.entry(r.cell_id.clone())
            .or_default()
            .entry(reason)
            .or_default() += 1;
    }
    out
}

/// The measured, ok runs of each cell (by cell id), in journal order.
fn measured_ok_by_cell(records: &[record::RunRecord]) -> HashMap<&str, Vec<&record::RunRecord>> {
    let mut by_cell: HashMap<&str, Vec<&record::RunRecord>> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| !r.warmup && r.status == record::RunStatus::Ok)
    {
        by_cell.entry(r.cell_id.as_str()).or_default().push(r);
    }
    by_cell
}

/// Threats to validity that follow from the data itself. Cells are named C1, C2, ... as in
/// the report's tables.
fn threats(
    loaded: &LoadedSpec,
    a: &Analysis,
    manifest: Option<&Manifest>,
    issues: &[analysis::validity::Issue],
    reasons: &BTreeMap<String, BTreeMap<String, u32>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut issues_of: HashMap<usize, Vec<&analysis::validity::Issue>> = HashMap::new();
    for i in issues {
        issues_of.entry(i.cell).or_default().push(i);
    }
    for (n, cell) in a.cells_in_order().into_iter().enumerate() {
        let label = format!("C{}", n + 1);
        for issue in issues_of.get(&cell).into_iter().flatten().copied() {
            let why = match issue.kind {
                analysis::validity::IssueKind::Degraded => {
                    let why: Vec<String> = reasons
                        .get(&a.cells[cell].cell_id)
                        .into_iter()
                        .flatten()
                        .map(|(reason, k)| format!("{k}x {reason}"))
                        .collect();
                    format!(" ({})", why.join("; "))
                }
                _ => String::new(),
            };
            out.push(format!("{label}: {}{why}.", issue.message));
        }
        for name in ["decode_tok_s", "ttft_ms"] {
            if let Some(m) = a.metric(cell, name)
                && m.stats.outliers > 0
            {
                out.push(format!(
                    "{label}: {} outlier(s) in {name} by median/MAD, kept in the statistics.",
                    m.stats.outliers
                ));
            }
        }
    }
    // A spec may accept noisier runs than the default (a shared machine): the cells that the
    // default would have flagged are still named, with the spec's reason left to its text.
    let accepted = loaded.spec.validity.unwrap_or_default().cv;
    let default = crate::spec::ValidityThresholds::default().cv;
    if accepted > default {
        // The metrics the validity check judges (decode, TTFT and those claims are about).
        let judged = analysis::validity::judged_metrics(loaded);
        let noisy: Vec<String> = a
            .cells_in_order()
            .into_iter()
            .enumerate()
            .flat_map(|(n, cell)| {
                judged.iter().filter_map(move |name| {
                    let (cv, _) = analysis::validity::judged_cv(a, cell, name)?;
                    (cv > default && cv <= accepted)
                        .then(|| format!("C{} {name} {:.1}%", n + 1, cv * 100.0))
                })
            })
            .collect();
        out.push(format!(
            "This spec accepts runs that vary by up to {:.0}% between runs (`validity.cv`; the default is {:.0}%){}.",
            accepted * 100.0,
            default * 100.0,
            if noisy.is_empty() {
                String::new()
            } else {
                format!(", and these exceed the default: {}", noisy.join(", "))
            }
        ));
    }
    if loaded.spec.order != crate::spec::RunOrder::Interleaved {
        out.push(format!(
            "Runs were executed in {} order, not interleaved: slow drift can favour one cell.",
            loaded.spec.order
        ));
    }
    if let Some(m) = manifest {
        let hosts: std::collections::BTreeSet<String> = m
            .sessions
            .iter()
            .map(|s| format!("{} / {} cores", s.host.cpu, s.host.logical_cpus))
            .collect();
        if hosts.len() > 1 {
            out.push(format!(
                "Data was recorded on different machines: {}.",
                hosts.into_iter().collect::<Vec<_>>().join("; ")
            ));
        }
        let builds: std::collections::BTreeSet<String> = m
            .sessions
            .iter()
            .flat_map(|s| s.servers.iter().filter_map(|v| v.build.clone()))
            .collect();
        if builds.len() > 1 {
            out.push(format!(
                "Data mixes server builds: {}.",
                builds.into_iter().collect::<Vec<_>>().join("; ")
            ));
        }
    }
    out
}

/// A cell's name in figures: the values of the axes that vary between `cells`, short
/// (`max_tokens=32, 2 agents, shared`), so a figure can be read without the table.
fn figure_labels(cells: &[&serde_json::Map<String, serde_json::Value>]) -> Vec<String> {
    let varying = crate::spec::matrix::varying_axes(cells.iter().map(|c| c.iter()));
    cells
        .iter()
        .map(|c| {
            let parts: Vec<String> = varying
                .iter()
                .filter_map(|(axis, _)| c.get(axis).map(|v| short_value(axis, v)))
                .collect();
            if parts.is_empty() {
                "all runs".to_owned()
            } else {
                parts.join(", ")
            }
        })
        .collect()
}

/// An axis value in a figure label: scenarios by their shape, other axes as `axis=value`.
fn short_value(axis: &str, v: &serde_json::Value) -> String {
    if axis == "scenario" {
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("single");
        let agents = v.get("agents").and_then(|a| a.as_u64()).unwrap_or(1);
        let placement = v.get("placement").and_then(|p| p.as_str());
        let shape = match placement {
            Some("server-per-agent") => ", a server each",
            Some(_) => ", one server",
            None => "",
        };
        if kind == "load" {
            return load_label(v);
        }
        return match kind {
            "single" => "single agent".to_owned(),
            "concurrent" => format!("{agents} agents{shape}"),
            "workflow" => format!("workflow x{agents}{shape}"),
            "command" => format!("program x{agents}{shape}"),
            other => other.to_owned(),
        };
    }
    format!("{axis}={}", axis_label(axis, v))
}

/// Per cell and turn of its sessions, over its measured runs' agents: mean prompt tokens,
/// mean cached tokens and median TTFT.
fn session_turns(
    cells: &[CellView],
    analysed: Option<&analysis::Analysis>,
    records: &[record::RunRecord],
) -> Vec<serde_json::Value> {
    let Some(a) = analysed else { return Vec::new() };
    let order = a.cells_in_order();
    let by_cell = measured_ok_by_cell(records);
    let mut out = Vec::new();
    for (view, &cell) in cells.iter().zip(&order) {
        let cell_id = &a.cells[cell].cell_id;
        let mut turns: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = Vec::new();
        for r in by_cell.get(cell_id.as_str()).into_iter().flatten() {
            for agent in &r.agents {
                for (k, q) in agent.requests.iter().enumerate() {
                    if turns.len() <= k {
                        turns.push(Default::default());
                    }
                    turns[k].0.extend(q.prompt_tokens.map(|p| p as f64));
                    turns[k].1.extend(q.cache_n.map(|c| c as f64));
                    turns[k].2.push(q.ttft_ms);
                }
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let rows: Vec<serde_json::Value> = turns
            .iter()
            .enumerate()
            .map(|(k, (p, c, t))| {
                let mut t = t.clone();
                t.sort_by(f64::total_cmp);
                serde_json::json!({
                    "turn": k + 1, "prompt_tokens": mean(p), "cache_n": mean(c),
                    "ttft_median_ms": t.get(t.len() / 2), "n": t.len(),
                })
            })
            .collect();
        if !rows.is_empty() {
            out.push(serde_json::json!({"n": view.n, "label": view.label, "turns": rows}));
        }
    }
    out
}

/// A length as a reader says it: `512 tokens`, `uniform 128-1024 tokens`.
fn length_text(l: &crate::workload::lengths::Length) -> String {
    use crate::workload::lengths::{Dist, Length};
    match l {
        Length::Fixed(n) => format!("{n} tokens"),
        Length::Drawn(Dist::Uniform { min, max }) => format!("uniform {min}-{max} tokens"),
        Length::Drawn(Dist::Normal { mean, std, .. }) => {
            format!("normal, mean {mean} and sd {std} tokens")
        }
        Length::Drawn(Dist::Lognormal { mean, std, .. }) => {
            format!("lognormal, mean {mean} and sd {std} tokens")
        }
    }
}

/// A load scenario in a figure label: what it holds of its pattern (`poisson 4/s`,
/// `closed loop, 8 users`); fields set by axes appear as those axes' own labels.
fn load_label(v: &serde_json::Value) -> String {
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
    let mut parts = Vec::new();
    if let Some(users) = num("concurrency") {
        parts.push(format!("closed loop, {users} users"));
    } else {
        let arrival = v.get("arrival").and_then(|a| a.as_str()).unwrap_or("load");
        parts.push(match num("rate") {
            Some(rate) => format!("{arrival} {rate}/s"),
            None => arrival.to_owned(),
        });
    }
    if let Some(k) = num("burstiness") {
        parts.push(format!("burstiness {k}"));
    }
    if let Some(c) = num("max_concurrency") {
        parts.push(format!("at most {c} in flight"));
    }
    parts.join(", ")
}

/// A sweep of the report: its index among the analysis' sweeps, its label, and its cells with
/// their rates, by rate.
type SweepCells<'c> = (usize, String, &'static str, Vec<(&'c CellView, f64)>);

fn sweeps_of(cells: &[CellView]) -> Vec<SweepCells<'_>> {
    let mut sweeps: Vec<SweepCells> = Vec::new();
    for c in cells {
        if let Some((k, label, at, axis)) = &c.sweep {
            match sweeps.iter_mut().find(|(j, _, _, _)| j == k) {
                Some((_, _, _, members)) => members.push((c, *at)),
                None => sweeps.push((*k, label.clone(), axis, vec![(c, *at)])),
            }
        }
    }
    for (_, _, _, members) in &mut sweeps {
        members.sort_by(|a, b| a.1.total_cmp(&b.1));
    }
    sweeps
}

/// A value on a sweep's axis as a tag: `4/s`, `8 users`.
fn axis_value(axis: &str, at: f64) -> String {
    match axis {
        "rate" => format!("{}/s", figures::tick(at)),
        _ => format!("{} users", figures::tick(at)),
    }
}

/// The frontier's lines: one per sweep (its cells by rate), or one of every load cell when
/// the TR has no sweep; Pareto-optimal cells found over all of them together.
fn frontier_series(cells: &[CellView], sweeps: &[SweepCells]) -> Vec<figures::FrontierSeries> {
    let point = |c: &CellView, tag: String| -> Option<figures::FrontierPoint> {
        let x = c.metrics.get("output_tok_s").cloned().flatten()?;
        let tpot = c.metrics.get("tpot_p50_ms").cloned().flatten()?;
        let per_user = |ms: f64| if ms > 0.0 { 1000.0 / ms } else { f64::NAN };
        let xs = c
            .run_values
            .get("output_tok_s")
            .cloned()
            .unwrap_or_default();
        let ts = c.run_values.get("tpot_p50_ms").cloned().unwrap_or_default();
        // Runs pair up only when every run has both figures.
        let runs = if xs.len() == ts.len() {
            xs.iter()
                .zip(&ts)
                .map(|(x, t)| (*x, per_user(*t)))
                .collect()
        } else {
            Vec::new()
        };
        Some(figures::FrontierPoint {
            x: x.center,
            y: per_user(tpot.center),
            x_interval: Some((x.ci_low, x.ci_high)),
            // Faster tokens are a shorter TPOT: the interval's ends swap.
            y_interval: Some((per_user(tpot.ci_high), per_user(tpot.ci_low))),
            runs,
            optimal: false,
            tag,
        })
    };
    let mut series: Vec<figures::FrontierSeries> = sweeps
        .iter()
        .map(|(_, label, axis, members)| figures::FrontierSeries {
            label: if label.is_empty() {
                format!("{axis} sweep")
            } else {
                label.clone()
            },
            points: members
                .iter()
                .filter_map(|(c, at)| point(c, axis_value(axis, *at)))
                .collect(),
            joined: true,
        })
        .collect();
    // Load cells on no sweep: points of their own, tagged by cell, not joined.
    let alone: Vec<figures::FrontierPoint> = cells
        .iter()
        .filter(|c| c.load && c.sweep.is_none())
        .filter_map(|c| point(c, format!("C{}", c.n)))
        .collect();
    if !alone.is_empty() {
        series.push(figures::FrontierSeries {
            label: "load cells".into(),
            points: alone,
            joined: false,
        });
    }
    let centres: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| (p.x, p.y)))
        .collect();
    let mut optimal = analysis::serving::pareto(&centres).into_iter();
    for s in &mut series {
        for p in &mut s.points {
            p.optimal = optimal.next().unwrap_or(false);
        }
    }
    series
}

/// The report's figures, drawn from its cells: (figure views for the template, file -> SVG).
/// A figure whose values no cell has is left out. Each shows every run as a point with the
/// cell's mean and 95% interval.
fn draw_figures(
    id: &str,
    cells: &[CellView],
    fits: &[ScalingFigure],
    timeline: Option<&RunTimeline>,
    slo: Option<&crate::spec::Slo>,
    hourly_usd: Option<f64>,
) -> Result<(Vec<Figure>, FigureFiles), ReportError> {
    let mut views = Vec::new();
    let mut files = Vec::new();
    let mut add =
        |file: String, caption: &str, svg: Result<String, String>| -> Result<(), ReportError> {
            let svg = svg.map_err(|e| ReportError::Input(Diagnostic::new(e)))?;
            views.push(Figure {
                file: format!("figures/{file}"),
                caption: caption.into(),
            });
            files.push((file, svg));
            Ok(())
        };
    let summary = |c: &CellView, metric: &str| c.metrics.get(metric).cloned().flatten();
    // A cell's row of `metric` (times `scale`), or None when it has no values.
    let row = |c: &CellView, metric: &str, scale: f64, series: usize, suffix: &str| {
        summary(c, metric).map(|s| figures::Row {
            label: format!("{}{suffix}", c.figure_label),
            runs: c
                .run_values
                .get(metric)
                .map(|v| v.iter().map(|x| x * scale).collect())
                .unwrap_or_default(),
            mean: s.center * scale,
            interval: Some((s.ci_low * scale, s.ci_high * scale)),
            series,
        })
    };
    let rows = |metric: &str| -> Vec<figures::Row> {
        cells
            .iter()
            .filter_map(|c| row(c, metric, 1.0, 0, ""))
            .collect()
    };
    // Each scaling fit on log-log axes, where the power law is the straight line drawn.
    for f in fits {
        let caption = format!(
            "{} against {} on log-log axes: each run (a faint point), each cell's mean (dot) with its 95% CI (line), and the power law fitted to the runs (dashed){}.",
            f.metric,
            f.x_label,
            if f.line.is_none() {
                "; too few runs for a fit"
            } else {
                ""
            }
        );
        add(
            format!("{id}-fit-{}.svg", f.id),
            &caption,
            figures::scaling(
                &format!("{} against {}", f.metric, f.x_label),
                &f.x_label,
                &f.metric,
                &f.points,
                f.line.as_ref(),
                f.x_tick,
            ),
        )?;
    }
    let throughput = rows("decode_tok_s");
    if !throughput.is_empty() {
        add(
            format!("{id}-throughput.svg"),
            "Decode throughput: each run (a point; a multi-agent run's mean), the cell's mean (tick) and its 95% CI (line).",
            figures::runs_per_cell("Decode throughput per run", "tok/s", &throughput),
        )?;
    }
    let ttft = rows("ttft_ms");
    if !ttft.is_empty() {
        add(
            format!("{id}-ttft.svg"),
            "Time to first token: each run (a point; a multi-agent run's mean), the cell's mean (tick) and its 95% CI (line).",
            figures::runs_per_cell("Time to first token per run", "ms", &ttft),
        )?;
    }
    // Only concurrent cells have efficiencies: both, one above the other, in percent.
    let efficiency: Vec<figures::Row> = cells
        .iter()
        .flat_map(|c| {
            [
                row(c, "parallel_efficiency", 100.0, 0, " · overlap"),
                row(c, "scaling_efficiency", 100.0, 1, " · scaling"),
            ]
        })
        .flatten()
        .collect();
    if !efficiency.is_empty() {
        add(
            format!("{id}-efficiency.svg"),
            "Efficiency of the concurrent groups, per run: overlap (parallel) efficiency in blue, scaling efficiency (aggregate throughput over N lone agents') in orange; mean (tick) and 95% CI (line).",
            figures::runs_per_cell("Overlap and scaling efficiency per run", "%", &efficiency),
        )?;
    }
    // Load cells: each run's latency percentiles, p50 and p99 one above the other.
    for (metric, name, what) in [
        ("ttft", "TTFT", "time to first token"),
        ("e2e", "E2E", "end-to-end latency"),
    ] {
        let percentiles: Vec<figures::Row> = cells
            .iter()
            .flat_map(|c| {
                [
                    row(c, &format!("{metric}_p50_ms"), 1.0, 0, " · p50"),
                    row(c, &format!("{metric}_p99_ms"), 1.0, 1, " · p99"),
                ]
            })
            .flatten()
            .collect();
        if !percentiles.is_empty() {
            add(
                format!("{id}-load-{metric}.svg"),
                &format!(
                    "Load runs, {what}: each run's p50 (blue) and p99 (orange) over its requests (a point per run), the cell's mean over runs (tick) and its 95% CI (line)."
                ),
                figures::runs_per_cell(
                    &format!("{name} percentiles per load run"),
                    "ms",
                    &percentiles,
                ),
            )?;
        }
    }
    let achieved = rows("achieved_rate");
    if !achieved.is_empty() {
        add(
            format!("{id}-load-rate.svg"),
            "Load runs, achieved request rate: each run's (a point), the cell's mean (tick) and its 95% CI (line). A run that kept its schedule sits at its schedule's own rate.",
            figures::runs_per_cell(
                "Achieved request rate per load run",
                "requests/s",
                &achieved,
            ),
        )?;
    }
    // Along each rate sweep: latency percentiles, and what was achieved against what was
    // offered, each point with its interval over the runs and the runs themselves.
    for (k, label, axis, members) in sweeps_of(cells) {
        let x_label = match axis {
            "rate" => "offered rate (requests/s)",
            _ => "concurrent users (closed loop)",
        };
        let against = match axis {
            "rate" => "offered rate",
            _ => "concurrent users",
        };
        let diagonal = if axis == "rate" {
            " A server that keeps up sits on the diagonal."
        } else {
            ""
        };
        let band = |metric: &str, name: &str| -> Option<figures::Band> {
            let mut points = Vec::new();
            let mut runs = Vec::new();
            for (c, rate) in &members {
                let s = summary(c, metric)?;
                points.push((*rate, s.center, s.ci_low, s.ci_high));
                runs.extend(
                    c.run_values
                        .get(metric)
                        .into_iter()
                        .flatten()
                        .map(|v| (*rate, *v)),
                );
            }
            Some(figures::Band {
                label: name.to_owned(),
                points,
                runs,
            })
        };
        let suffix = if label.is_empty() {
            String::new()
        } else {
            format!(" ({label})")
        };
        let file = |what: &str| format!("{id}-sweep{}-{what}.svg", k + 1);
        // An SLO at p99 is drawn as dashed lines on the statistic it judges: TTFT p99 timed as
        // the SLO times it (from the schedule, by default) and TPOT p99.
        // At another percentile the figure has no such statistic, and no lines.
        let slo_p99 = slo.filter(|s| s.quantile() == 99.0);
        let ttft_judged = match slo_p99 {
            Some(s) if s.from_schedule() => Some(("ttft_sched_p99_ms", "TTFT p99 from schedule")),
            Some(_) => Some(("ttft_p99_ms", "TTFT p99")),
            None => None,
        };
        // The TTFT p99 shown is the one the SLO judges (the two differ by the dispatch lag).
        let shown = [
            ("ttft_p50_ms", "TTFT p50"),
            ttft_judged.unwrap_or(("ttft_p99_ms", "TTFT p99")),
            ("tpot_p99_ms", "TPOT p99"),
        ];
        let latency: Vec<(&str, figures::Band)> = shown
            .iter()
            .filter_map(|(m, n)| band(m, n).map(|b| (*m, b)))
            .collect();
        let slo_lines: Vec<figures::Reference> = slo_p99
            .into_iter()
            .flat_map(|s| {
                [
                    (s.ttft_ms, "TTFT", ttft_judged.map(|j| j.0)),
                    (s.tpot_ms, "TPOT", Some("tpot_p99_ms")),
                ]
            })
            .filter_map(|(value, what, metric)| {
                let band = latency.iter().position(|(m, _)| Some(*m) == metric)?;
                Some(figures::Reference {
                    label: format!("SLO: {what} {} ms", figures::tick(value?)),
                    value: value?,
                    band,
                })
            })
            .collect();
        let latency: Vec<figures::Band> = latency.into_iter().map(|(_, b)| b).collect();
        if !latency.is_empty() {
            add(
                file("latency"),
                &format!(
                    "Latency against the {against}{suffix}: each run's percentile (a point), the mean over runs (line) and its 95% CI (band).{}",
                    if slo_lines.is_empty() {
                        ""
                    } else {
                        " Dashed: the SLO's thresholds, each in the colour of the p99 it judges."
                    }
                ),
                figures::along(
                    &format!("Latency against {against}{suffix}"),
                    x_label,
                    "ms",
                    &latency,
                    &slo_lines,
                ),
            )?;
        }
        let served: Vec<figures::Band> = [
            ("achieved_rate", "sent (achieved rate)"),
            ("request_throughput", "finished"),
            ("goodput", "goodput (meeting the SLO)"),
        ]
        .iter()
        .filter_map(|(m, n)| band(m, n))
        .collect();
        if !served.is_empty() {
            add(
                file("throughput"),
                &format!(
                    "Requests per second against the {against}{suffix}: sent, finished, and meeting the SLO; each run (a point), the mean over runs (line) and its 95% CI (band).{diagonal}"
                ),
                figures::along(
                    &format!("Served against {against}{suffix}"),
                    x_label,
                    "requests/s",
                    &served,
                    &[],
                ),
            )?;
        }
    }
    // At most six cells' timelines, spread over the load cells, so the lines stay apart.
    let timelines: Vec<&figures::Timeline> =
        cells.iter().filter_map(|c| c.in_flight.as_ref()).collect();
    if !timelines.is_empty() {
        let shown: Vec<figures::Timeline> = if timelines.len() <= 6 {
            timelines.into_iter().cloned().collect()
        } else {
            (0..6)
                .map(|k| timelines[k * (timelines.len() - 1) / 5].clone())
                .collect()
        };
        add(
            format!("{id}-load-in-flight.svg"),
            "Requests in flight during the measured period of each load cell's first measured run, sampled every 100 ms (the measured period's requests; warm-up requests still in flight at its start are not counted).",
            figures::over_time("Requests in flight", "requests", &shown),
        )?;
    }
    // The interactivity-throughput frontier: each load cell's output tokens per second per
    // server against per user (1000 / its TPOT p50), a sweep's cells joined by rate.
    let frontier = frontier_series(cells, &sweeps_of(cells));
    if frontier.iter().map(|s| s.points.len()).sum::<usize>() >= 2 {
        add(
            format!("{id}-frontier.svg"),
            "Interactivity against throughput: per load cell, output tokens per second served (x; all the servers a period sends to) and per user, 1000 / TPOT p50 (y); each run a faint point, the cell's means a dot with their 95% CIs as a cross, a sweep's cells joined in order along its axis. Ringed cells are Pareto-optimal over all load cells: no other cell gives both more throughput and more speed per user. Tags are the swept values (offered rates, users) or cell numbers.",
            figures::frontier(
                "Interactivity against throughput",
                "output tok/s served",
                "output tok/s per user (1000 / TPOT p50)",
                &frontier,
            ),
        )?;
    }
    if let Some(t) = timeline {
        add(
            format!("{id}-timeline.svg"),
            &t.caption,
            figures::timeline(
                "One run over its period",
                &t.counts,
                "TTFT, ms",
                &t.latency,
                t.warmup_s,
            ),
        )?;
    }
    let costs: Vec<figures::Row> = cells
        .iter()
        .filter_map(|c| {
            let k = c.cost.as_ref()?;
            let hourly = hourly_usd?;
            let per_run = c.run_values.get("aggregate_tok_s").map(|rates| {
                rates
                    .iter()
                    .filter(|r| **r > 0.0)
                    .map(|r| analysis::cost::usd_per_million(hourly, *r))
                    .collect()
            });
            Some(figures::Row {
                label: c.figure_label.clone(),
                runs: per_run.unwrap_or_default(),
                mean: k.usd_per_1m?,
                interval: k.usd_per_1m_ci_low.zip(k.usd_per_1m_ci_high),
                series: 0,
            })
        })
        .collect();
    if !costs.is_empty() {
        add(
            format!("{id}-cost.svg"),
            "On-demand cost per 1M output tokens: each run's (a point), and the cell's from total tokens over total time (tick) with its 95% CI (line).",
            figures::runs_per_cell("Cost per 1M output tokens per run", "USD", &costs),
        )?;
    }
    Ok((views, files))
}

/// Everything a report template can use (documented in docs/reports.md).
/// Figures are not in it (`figures` is added by `render`): the cells they are drawn from are
/// returned beside it.
fn context(root: &Path, registry: &Registry, loaded: &LoadedSpec) -> Result<Context, ReportError> {
    let spec = &loaded.spec;
    let paths = TrPaths::new(root, &spec.id);
    let analysed = if record::journal::has_finished_runs(&paths.runs()) {
        Some(analysis::analyze(root, loaded).map_err(|e| match e {
            analysis::AnalysisError::Input(d) => ReportError::Input(d),
            other => ReportError::Input(Diagnostic::new(other.to_string())),
        })?)
    } else {
        None
    };
    let manifest = record::read_manifest(&paths)?;
    // Whole records are read (once) only for what the frames lack: load cells' in-flight
    // series, how prompts were built (exact lengths, a trace), sessions' turns.
    let shaped = spec.workload.as_ref().is_some_and(|w| {
        w.input_tokens.is_some() || w.output_tokens.is_some() || w.cache.is_some()
    }) || loaded
        .matrix
        .axes
        .keys()
        .any(|k| crate::workload::WORKLOAD_AXES.contains(&k.as_str()))
        || loaded.cells.iter().any(|c| {
            c.params
                .get("scenario")
                .is_some_and(|s| s.get("trace").is_some())
        });
    let with_sessions = spec.workload.as_ref().is_some_and(|w| w.session.is_some());
    let records = if analysed.is_some() && (loaded.has_load_cells() || shaped || with_sessions) {
        record::journal::read_records(&paths.runs())?
    } else {
        Vec::new()
    };
    let mut cells = Vec::new();
    if let Some(a) = &analysed {
        // Everything per cell looked up through an index: searching the lists for each cell
        // made a 20,000-cell report take most of a minute.
        let runs_of: HashMap<usize, _> = a.runs.iter().map(|r| (r.cell, r)).collect();
        let contention_of: HashMap<usize, _> =
            a.contention.cells.iter().map(|c| (c.cell, c)).collect();
        let cost_of: HashMap<usize, _> = a.cost.iter().map(|c| (c.cell, c)).collect();
        let pooled_of: HashMap<usize, _> = a.pooled.iter().map(|p| (p.cell, p)).collect();
        let mut sweep_of: HashMap<usize, (usize, usize)> = HashMap::new();
        for (k, s) in a.sweeps.iter().enumerate() {
            for (i, c) in s.cells.iter().enumerate() {
                sweep_of.entry(*c).or_insert((k, i));
            }
        }
        for (n, cell) in a.cells_in_order().into_iter().enumerate() {
            let r = runs_of.get(&cell).copied();
            let contention = contention_of.get(&cell).copied();
            cells.push(CellView {
                n: n + 1,
                label: a.labels[cell].clone(),
                params: a.cells[cell]
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), axis_label(k, v)))
                    .collect(),
                concurrent: a.cells[cell].agents > 1,
                runs: r.map_or(0, |r| r.runs),
                degraded: r.map_or(0, |r| r.degraded),
                degraded_rate: r.map_or(0.0, |r| r.degraded_rate),
                metrics: crate::spec::metrics::all()
                    .map(|name| {
                        (
                            name.to_owned(),
                            a.metric(cell, name).map(|m| m.stats.clone()),
                        )
                    })
                    .collect(),
                contended: contention.map(|c| c.contended),
                agents_compared: contention.map(|c| c.agents),
                cost: cost_of.get(&cell).map(|c| (*c).clone()),
                figure_label: String::new(),
                run_values: a
                    .metrics_of(cell)
                    .iter()
                    .filter(|m| !m.run_values.is_empty())
                    .map(|m| (m.metric.clone(), m.run_values.clone()))
                    .collect(),
                load: a.metric(cell, "achieved_rate").is_some()
                    || a.metric(cell, "error_rate").is_some(),
                in_flight: None,
                pooled: pooled_of.get(&cell).map(|p| (*p).clone()),
                sweep: sweep_of.get(&cell).map(|&(k, i)| {
                    let s = &a.sweeps[k];
                    let fixed: Vec<String> = s
                        .fixed
                        .iter()
                        .filter(|(k, _)| k.as_str() != "scenario")
                        .map(|(k, v)| format!("{k}={}", axis_label(k, v)))
                        .collect();
                    (k, fixed.join(" "), s.rates[i], s.axis)
                }),
            });
        }
        if cells.iter().any(|c| c.load) {
            let order = a.cells_in_order();
            let by_cell = measured_ok_by_cell(&records);
            for (view, &cell) in cells.iter_mut().zip(&order) {
                view.in_flight = (by_cell.get(a.cells[cell].cell_id.as_str()))
                    .into_iter()
                    .flatten()
                    .find_map(|r| r.load.as_ref())
                    .map(|l| figures::Timeline {
                        label: String::new(),
                        step_ms: l.summary.in_flight_step_ms,
                        values: l.summary.in_flight.iter().map(|v| f64::from(*v)).collect(),
                    });
            }
        }
        let order = a.cells_in_order();
        let params: Vec<&serde_json::Map<String, serde_json::Value>> =
            order.iter().map(|&c| &a.cells[c].params).collect();
        for (view, label) in cells.iter_mut().zip(figure_labels(&params)) {
            if let Some(t) = &mut view.in_flight {
                t.label = label.clone();
            }
            view.figure_label = label;
        }
    }
    let timeline = match &analysed {
        Some(a) if cells.iter().any(|c| c.load) => run_timeline(&paths, a, &cells, &records)?,
        _ => None,
    };
    // How prompts were built, each distinct way once.
    // Builds that differ only in which server's tokenizer made them exact (one per model or
    // server, each on its own loopback port) are one way of building, with its tokenizers.
    // Each kept without its tokenizer, beside the tokenizers it was made with.
    let mut prompt_builds: Vec<(record::PromptBuild, Vec<String>)> = Vec::new();
    for b in records.iter().filter_map(|r| r.prompts.as_ref()) {
        let key = record::PromptBuild {
            tokenizer: None,
            ..b.clone()
        };
        match prompt_builds.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, tokenizers)) => tokenizers.extend(b.tokenizer.clone()),
            None => prompt_builds.push((key, b.tokenizer.clone().into_iter().collect())),
        }
    }
    for (_, tokenizers) in &mut prompt_builds {
        tokenizers.sort();
        tokenizers.dedup();
    }
    let session_rows = if with_sessions {
        session_turns(&cells, analysed.as_ref(), &records)
    } else {
        Vec::new()
    };
    let status = registry.effective_status(&spec.id);
    let successor = match &status {
        Some(EffectiveStatus::Superseded { by, reason }) => {
            Some(serde_json::json!({"id": by, "reason": reason}))
        }
        _ => None,
    };
    let predecessor = spec.supersedes.as_ref().and_then(|s| registry.specs.get(&s.id)).map(|p| {
        serde_json::json!({
            "id": p.spec.id, "title": p.spec.title, "question": p.spec.question, "reason": spec.supersedes.as_ref().map(|s| s.reason.clone()),
            "cells": p.cells.len(), "repetitions": p.spec.repetitions, "axes": p.matrix.axes.keys().collect::<Vec<_>>(),
        })
    });
    let plan = crate::plan::build(loaded);
    let provenance = manifest.as_ref().and_then(|m| m.sessions.last()).map(|s| {
        // Launched processes of one backend share build and model: one line each, with a count.
        // Servers a `model` axis chose are one line per backend and build: which models, and
        // each one's file and hash, are the Models table's (over every session, not this one's).
        let mut servers: IndexMap<String, serde_json::Value> = IndexMap::new();
        for v in &s.servers {
            let chosen = v.model_file.is_some();
            let key = if chosen {
                format!("{}\0{:?}", v.backend, v.build)
            } else {
                format!("{}\0{:?}\0{:?}\0{:?}", v.backend, v.build, v.model, v.model_sha256)
            };
            let entry = servers.entry(key).or_insert_with(|| {
                serde_json::json!({"backend": v.backend, "launched": v.launched, "build": v.build, "model": v.model, "model_sha256": v.model_sha256, "processes": 0, "model_axis": chosen})
            });
            entry["processes"] = (entry["processes"].as_u64().unwrap_or(0) + 1).into();
        }
        serde_json::json!({
            "host": s.host, "tool_version": s.tool_version, "git_commit": s.git_commit, "servers": servers.into_values().collect::<Vec<_>>(),
        })
    });
    // The models a `model` axis chose, once each, smallest first: what each is, from its header.
    // A label served from two different files over the sessions is two rows, each with its hash.
    let mut models: Vec<(&crate::record::ModelRun, Option<&str>)> = Vec::new();
    for v in manifest
        .iter()
        .flat_map(|m| &m.sessions)
        .flat_map(|s| &s.servers)
    {
        let sha256 = v.model_sha256.as_deref();
        if let Some(m) = &v.model_file
            && !models
                .iter()
                .any(|(seen, hash)| seen.label == m.label && *hash == sha256)
        {
            models.push((m, sha256));
        }
    }
    models.sort_by_key(|(m, _)| m.params);
    let models: Vec<serde_json::Value> = models
        .iter()
        .map(|(m, sha256)| serde_json::json!({"label": m.label, "synthetic": m.synthetic, "params": m.params, "file_mb": m.file_bytes as f64 / 1e6, "quant": m.quant, "architecture": m.architecture, "sha256": sha256}))
        .collect();
    // The scaling fits: a row each for the table, and the points of each one's figure.
    let mut fit_rows: Vec<serde_json::Value> = Vec::new();
    let mut fit_figures: Vec<ScalingFigure> = Vec::new();
    for (a, f) in analysed
        .iter()
        .flat_map(|a| a.fits.iter().map(move |f| (a, f)))
    {
        let (x_label, x_tick, x_shown) = fit_axis(&f.against);
        let law = f.law.as_ref();
        let xs: Vec<f64> = f.cells.iter().map(|c| c.x).collect();
        fit_rows.push(serde_json::json!({
            "id": f.id, "metric": f.metric, "against": f.against, "against_label": x_label,
            "cells": f.cells.len(), "runs": f.runs(),
            "x_low": xs.first().map(|x| x_tick(x * x_shown)),
            "x_high": xs.last().map(|x| x_tick(x * x_shown)),
            "exponent": law.map(|l| l.exponent), "ci_low": law.map(|l| l.exponent_low),
            "ci_high": law.map(|l| l.exponent_high), "se": law.map(|l| l.exponent_se),
            "r_squared": law.map(|l| l.r_squared), "prefactor": law.map(|l| l.prefactor),
            "n": law.map(|l| l.n),
            "per_doubling": law.map(|l| 2f64.powf(l.exponent)),
            "per_doubling_low": law.map(|l| 2f64.powf(l.exponent_low)),
            "per_doubling_high": law.map(|l| 2f64.powf(l.exponent_high)),
        }));
        fit_figures.push(ScalingFigure {
            id: f.id.clone(),
            metric: f.metric.clone(),
            x_label,
            x_tick,
            points: f
                .cells
                .iter()
                .map(|c| {
                    let s = a.metric(c.cell, &f.metric).map(|m| &m.stats);
                    figures::ScalingPoint {
                        x: c.x * x_shown,
                        runs: c.values.clone(),
                        centre: s.map_or(f64::NAN, |s| s.center),
                        interval: s.map(|s| (s.ci_low, s.ci_high)),
                    }
                })
                .collect(),
            // The line in shown units: a x^b = (a / k^b) (k x)^b.
            line: law.map(|l| figures::FittedLine {
                prefactor: l.prefactor / x_shown.powf(l.exponent),
                exponent: l.exponent,
                label: format!(
                    "fit: y ∝ x^{:.3} [95% CI {:.3}, {:.3}], R² {:.3}",
                    l.exponent, l.exponent_low, l.exponent_high, l.r_squared
                ),
            }),
        });
    }
    // Each comparison with its two selections spelt as in the tables (a_label, b_label).
    let selection_label = |sel: &IndexMap<String, serde_json::Value>| {
        sel.iter()
            .map(|(k, v)| format!("{k}={}", axis_label(k, v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let comparisons: Vec<serde_json::Value> = analysed
        .iter()
        .flat_map(|a| &a.comparisons)
        .map(|c| {
            let mut v = serde_json::json!(c);
            v["a_label"] = selection_label(&c.a).into();
            v["b_label"] = selection_label(&c.b).into();
            v
        })
        .collect();
    let digests = match &analysed {
        Some(_) => Some(record::journal::read_digests(&paths.runs())?),
        None => None,
    };
    let reasons = digests.as_ref().map(degraded_reasons);
    let issues: Vec<analysis::validity::Issue> = analysed
        .as_ref()
        .zip(digests.as_ref())
        .map(|(a, d)| analysis::validity::assess(loaded, a, d))
        .unwrap_or_default();
    // Every claim re-derived (from runs or recorded figures), with its comparison when it has one.
    let checks = match &analysed {
        Some(a) => a.claims.clone(),
        None => analysis::claims::evaluate(loaded, Default::default())
            .map_err(|e| ReportError::Input(Diagnostic::new(format!("evaluating claims: {e}"))))?,
    };
    let claims: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            let mut v = serde_json::json!(c);
            v["comparison"] = comparisons
                .iter()
                .find(|k| k["claim"] == c.id.as_str())
                .cloned()
                .unwrap_or_default();
            v
        })
        .collect();
    let footer = Footer::current(root, loaded);
    // Judged against the claims this report derived already, not derived again.
    let replications = analysed
        .as_ref()
        .map(|a| {
            analysis::replication_names(root, &spec.id)
                .iter()
                .map(|name| analysis::replication(root, loaded, &a.claims, name))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| match e {
            analysis::AnalysisError::Input(d) => ReportError::Input(d),
            other => ReportError::Input(Diagnostic::new(other.to_string())),
        })?
        .unwrap_or_default();
    let ctx = serde_json::json!({
        "tr": {
            "id": spec.id, "title": spec.title, "phase": spec.phase, "question": spec.question,
            "status": status.as_ref().map(|s| s.label()).unwrap_or_default(), "declared_status": spec.status.to_string(),
            "successor": successor, "predecessor": predecessor,
            "revisions": spec.report.as_ref().map(|r| r.revisions.clone()).unwrap_or_default(),
        },
        "method": {
            "axes": loaded.matrix.axes.iter().map(|(k, v)| serde_json::json!({"name": k, "values": v.iter().map(|x| axis_label(k, x)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "cells": plan.cells.len(), "repetitions": plan.repetitions, "warmup": plan.warmup, "order": plan.order,
            "measured_runs": plan.measured_runs(), "warmup_runs": plan.warmup_runs(),
        },
        "backends": spec.backends.iter().map(|(name, b)| serde_json::json!({
            "name": name, "kind": b.kind, "launched": b.launch.as_ref().map(|l| l.count), "args": b.launch.as_ref().map(|l| l.args.join(" ")),
            "endpoints": b.endpoints.len(), "model": b.model,
        })).collect::<Vec<_>>(),
        "workload": spec.workload.as_ref().map(|w| serde_json::json!({
            "max_tokens": w.max_tokens, "prompts": if w.prompts_file.is_some() { serde_json::Value::Null } else { w.prompts.len().into() },
            "prompts_file": w.prompts_file, "seed": w.seed, "ignore_eos": w.ignore_eos,
            "input_tokens": w.input_tokens.as_ref().map(length_text), "output_tokens": w.output_tokens.as_ref().map(length_text),
            "prefix": w.prefix.map(|p| serde_json::json!({"tokens": p.tokens, "groups": p.groups})),
            "cache": w.cache.map(|c| if c == crate::spec::CacheMode::Cold { "cold" } else { "warm" }),
            "session": w.session.map(|s| serde_json::json!({"turns": s.turns, "think_time_ms": s.think_time_ms})),
        })),
        // Every field present (null when the record omits it), so a template can test any.
        "prompt_builds": prompt_builds.iter().map(|(b, tokenizers)| serde_json::json!({
            "corpus": b.corpus, "corpus_sha256": b.corpus_sha256,
            "tokenizer": if tokenizers.len() == 1 { tokenizers.first() } else { None },
            "tokenizers": tokenizers.len(),
            "template_overhead_tokens": b.template_overhead_tokens, "cache": b.cache,
            "prefix_tokens": b.prefix_tokens, "prefix_groups": b.prefix_groups,
        })).collect::<Vec<_>>(),
        "slo": spec.slo.as_ref().map(|slo| serde_json::json!({
            "ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2e_ms": slo.e2e_ms,
            "percentile": slo.percentile.clone().unwrap_or_else(|| "p99".into()),
            "from": if slo.from_schedule() { "the scheduled time" } else { "the send" },
        })),
        "sweeps": analysed.iter().flat_map(|a| &a.sweeps).map(|s| {
            let fixed: Vec<String> = s.fixed.iter().filter(|(k, _)| k.as_str() != "scenario").map(|(k, v)| format!("{k}={}", axis_label(k, v))).collect();
            serde_json::json!({
                "label": if fixed.is_empty() { format!("{} sweep", s.axis) } else { fixed.join(" ") },
                "axis": s.axis,
                "rates": s.rates.iter().map(|r| as_written(*r)).collect::<Vec<_>>(),
                "knee": s.knee_rate, "slo_rate": s.max_rate_at_slo,
            })
        }).collect::<Vec<_>>(),
        "session_turns": session_rows,
        "provenance": provenance,
        "models": models,
        "fits": fit_rows,
        // The same rows keyed by fit id, for key findings and prose: fit.<id>.exponent.
        "fit": fit_rows.iter().map(|f| (f["id"].as_str().unwrap_or_default().to_owned(), f.clone())).collect::<serde_json::Map<_, _>>(),
        "sessions": manifest.as_ref().map_or(0, |m| m.sessions.len()),
        "has_data": analysed.is_some(),
        "cells": cells,
        "comparisons": comparisons,
        // The same comparisons keyed by claim id, for key findings and prose: measured.<id>.comparison.
        "measured": comparisons.iter().map(|c| (c["claim"].as_str().unwrap_or_default().to_owned(), c.clone())).collect::<serde_json::Map<_, _>>(),
        "contention": analysed.as_ref().map(|a| serde_json::json!({"agents": a.contention.agents(), "contended": a.contention.contended(), "without_baseline": a.contention.without_baseline})),
        "cost_profile": spec.cost.as_ref().map(|c| analysis::cost::resolve(root, c)).transpose().map_err(ReportError::Input)?,
        "validity": loaded.spec.validity.unwrap_or_default(),
        "threats": analysed.as_ref().map(|a| threats(loaded, a, manifest.as_ref(), &issues, reasons.as_ref().unwrap_or(&BTreeMap::new()))).unwrap_or_default(),
        "claims": claims,
        "replications": replications,
        "recorded": spec.recorded.iter().map(|(k, r)| (k.clone(), serde_json::json!({"value": as_written(r.value), "unit": r.unit, "source": r.source, "note": r.note}))).collect::<serde_json::Map<String, serde_json::Value>>(),
        "footer": &footer,
    });
    let issues = issues
        .into_iter()
        .map(|issue| ValidityIssue {
            cell_label: analysed
                .as_ref()
                .map(|a| a.labels[issue.cell].clone())
                .unwrap_or_default(),
            cell_id: analysed
                .as_ref()
                .map(|a| a.cells[issue.cell].cell_id.clone())
                .unwrap_or_default(),
            issue,
        })
        .collect();
    Ok(Context {
        values: ctx,
        cells,
        fits: fit_figures,
        timeline,
        claims: checks,
        issues,
        replications,
        footer,
    })
}

/// What a report is rendered from: the template's values, the cells the figures are drawn
/// from, the claims re-derived, and the footer.
struct Context {
    values: serde_json::Value,
    cells: Vec<CellView>,
    fits: Vec<ScalingFigure>,
    timeline: Option<RunTimeline>,
    claims: Vec<analysis::claims::ClaimCheck>,
    issues: Vec<ValidityIssue>,
    replications: Vec<analysis::replication::Replication>,
    footer: Footer,
}

/// A recorded figure as its author wrote it: whole numbers print without ".0".
fn as_written(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        (value as i64).into()
    } else {
        value.into()
    }
}

/// Renders one TR's report (in memory; `write` puts it on disk).
pub fn render(
    root: &Path,
    registry: &Registry,
    loaded: &LoadedSpec,
) -> Result<Rendered, ReportError> {
    let template = template_name(loaded);
    let env = environment(root, &[&template])?;
    let Context {
        values: mut ctx,
        cells,
        fits,
        timeline,
        claims,
        issues,
        replications,
        footer,
    } = context(root, registry, loaded)?;
    let hourly_usd = ctx["cost_profile"]["hourly_usd"].as_f64();
    let (views, figures) = draw_figures(
        &loaded.spec.id,
        &cells,
        &fits,
        timeline.as_ref(),
        loaded.spec.slo.as_ref(),
        hourly_usd,
    )?;
    ctx["figures"] = serde_json::json!(views);
    let ctx = Value::from(Serde(ctx));
    let tmpl = env
        .get_template(&template)
        .map_err(|e| template_error(root, &e))?;
    let markdown = tmpl.render(&ctx).map_err(|e| template_error(root, &e))?;
    Ok(Rendered {
        tr: loaded.spec.id.clone(),
        markdown,
        figures,
        claims,
        issues,
        replications,
        footer,
    })
}

/// The key finding of a TR: its `report.key_finding` expression rendered with the report's
/// context, so the sentence cites numbers from the data or from `recorded:`.
pub fn key_finding(
    root: &Path,
    registry: &Registry,
    loaded: &LoadedSpec,
) -> Result<Option<String>, ReportError> {
    let Some(text) = loaded
        .spec
        .report
        .as_ref()
        .and_then(|r| r.key_finding.clone())
    else {
        return Ok(None);
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    filters::register(&mut env);
    // A one-line finding cites numbers, not figures: none are drawn for it.
    let mut ctx = context(root, registry, loaded)?.values;
    ctx["figures"] = serde_json::json!([]);
    let ctx = Value::from(Serde(ctx));
    let has_data = record::journal::has_finished_runs(&TrPaths::new(root, &loaded.spec.id).runs());
    env.render_str(&text, ctx)
        .map(Some)
        .or_else(|e| {
            // A finding that cites measured values has nothing to cite before the first run.
            if !has_data && e.kind() == minijinja::ErrorKind::UndefinedError {
                return Ok(None);
            }
            Err(e)
        })
        .map_err(|e| {
            ReportError::Input(
                loaded
                    .error_at(
                        "report.key_finding",
                        format!("key finding does not render: {e}"),
                    )
                    .help("it is a template expression over the report's values (docs/reports.md)"),
            )
        })
}

/// Writes reports/<TR>.md and its figures, atomically; returns the paths written.
pub fn write(root: &Path, r: &Rendered) -> Result<Vec<PathBuf>, ReportError> {
    let dir = reports_dir(root);
    let mut written = Vec::new();
    for (file, svg) in &r.figures {
        let path = dir.join("figures").join(file);
        write_atomic(&path, svg.as_bytes()).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    let path = dir.join(format!("{}.md", r.tr));
    write_atomic(&path, r.markdown.as_bytes()).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    written.push(path);
    Ok(written)
}
