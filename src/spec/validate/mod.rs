//! Per-file semantic checks: everything serde cannot express, each pointing at its line.
//! Checks across files (unique ids, supersession) live in `registry`.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value;

use super::matrix::{Matrix, MatrixError, values_equal};
use super::source_map::{SourceMap, child_path, index_path};
use super::{Backend, BackendKind, Cell, Placement, Scenario, Spec, is_valid_tr_id, params};
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};

mod claims;
mod scaling;
use claims::{check_claims, check_pooling};

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    map: &'a SourceMap,
    errors: Diagnostics,
    warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>, help: impl Into<String>) {
        self.errors.push(self.diag(field, message).help(help));
    }

    fn warn(&mut self, field: &str, message: impl Into<String>, help: impl Into<String>) {
        let d = self.diag(field, message).help(help).as_warning();
        self.warnings.push(d);
    }

    /// Like `error` but points at the key rather than the value (for names that are wrong).
    fn error_at_key(&mut self, field: &str, message: impl Into<String>, help: impl Into<String>) {
        let d = Diagnostic::new(message)
            .in_file(self.path)
            .at(self.map.key(field), self.source)
            .field(field)
            .help(help);
        self.errors.push(d);
    }

    fn diag(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message)
            .in_file(self.path)
            .at(self.map.value(field), self.source)
            .field(field)
    }
}

/// What a spec that passed its checks is: its matrix, its cells, and what may mislead in it.
pub(super) struct Checked {
    pub matrix: Matrix,
    pub cells: Vec<Cell>,
    pub warnings: Vec<Diagnostic>,
}

/// Runs every per-file check; on success returns the parsed matrix, its cells and warnings.
pub(super) fn check(
    path: &Path,
    source: &str,
    map: &SourceMap,
    spec: &Spec,
) -> Result<Checked, Diagnostics> {
    let mut c = Checker {
        path,
        source,
        map,
        errors: Diagnostics::default(),
        warnings: Vec::new(),
    };
    check_identity(&mut c, spec);
    check_counts(&mut c, spec);
    for (name, backend) in &spec.backends {
        check_backend(&mut c, &format!("backends.{name}"), backend);
    }
    check_workload(&mut c, spec);
    check_slo(&mut c, spec);
    check_recorded_and_cost(&mut c, spec);
    let matrix = parse_matrix(&mut c, spec);
    let cells = match &matrix {
        Some(m) => expand(&mut c, m),
        None => None,
    };
    if let (Some(matrix), Some(cells)) = (&matrix, &cells) {
        check_axis_references(&mut c, spec, matrix, cells);
        check_request_params(&mut c, spec, matrix, cells);
        check_agent_programs(&mut c, spec, matrix);
        check_hardware(&mut c, spec, matrix);
        check_workflow(&mut c, spec);
        check_claims(&mut c, spec, matrix, cells);
        check_pooling(&mut c, spec, cells);
        scaling::check_scaling(&mut c, spec, matrix, cells);
    }
    match (matrix, cells) {
        (Some(matrix), Some(cells)) if c.errors.is_empty() => Ok(Checked {
            matrix,
            cells,
            warnings: c.warnings,
        }),
        _ => Err(c.errors),
    }
}

fn check_identity(c: &mut Checker, spec: &Spec) {
    if !is_valid_tr_id(&spec.id) {
        c.error(
            "id",
            format!("invalid TR id `{}`", spec.id),
            "write `TR` and a number, optionally followed by a suffix of letters, digits, `_`, `-` or `.` (TR124, TR114_v2)",
        );
    } else {
        let stem = c
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != spec.id {
            c.error(
                "id",
                format!(
                    "id `{}` does not match the file name `{}`",
                    spec.id,
                    file_name(c.path)
                ),
                format!("rename the file to `{}.yaml` or set `id: {stem}`", spec.id),
            );
        }
    }
    for (field, text) in [("title", &spec.title), ("question", &spec.question)] {
        if text.trim().is_empty() {
            c.error(
                field,
                format!("`{field}` is empty"),
                format!("write the report's {field}"),
            );
        }
    }
    if let Some(sup) = &spec.supersedes {
        if !is_valid_tr_id(&sup.id) {
            c.error(
                "supersedes.id",
                format!("invalid TR id `{}`", sup.id),
                "name an existing TR, e.g. `TR114`",
            );
        } else if sup.id == spec.id {
            c.error(
                "supersedes.id",
                format!("`{}` supersedes itself", spec.id),
                "name the earlier report this one replaces",
            );
        }
        if sup.reason.trim().is_empty() {
            c.error(
                "supersedes.reason",
                "supersession without a reason",
                "say why the earlier report is replaced",
            );
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_counts(c: &mut Checker, spec: &Spec) {
    if spec.repetitions < 1 {
        c.error(
            "repetitions",
            format!("repetitions must be at least 1, got {}", spec.repetitions),
            "give the number of measured runs per cell (3 or more for statistics)",
        );
    }
    if spec.warmup < 0 {
        c.error(
            "warmup",
            format!("warmup cannot be negative, got {}", spec.warmup),
            "use 0 for no warm-up runs",
        );
    }
}

fn check_backend(c: &mut Checker, at: &str, b: &Backend) {
    match (&b.launch, b.endpoints.is_empty()) {
        (Some(_), false) => c.error(
            at,
            "backend has both `launch` and `endpoints`",
            "keep one: `launch` starts servers, `endpoints` uses running ones",
        ),
        (None, true) => c.error(
            at,
            "backend has neither `launch` nor `endpoints`",
            "add `launch: {count: 1, args: [...]}` or `endpoints: [http://127.0.0.1:8080]`",
        ),
        _ => {}
    }
    if let Some(launch) = &b.launch {
        if b.kind == BackendKind::Ollama {
            c.error(
                &child_path(at, "launch"),
                "the runner launches llama-server only (kinds llama-cpp and openai)",
                "start Ollama yourself and list it under `endpoints`",
            );
        }
        if launch.count < 1 {
            c.error(
                &child_path(at, "launch.count"),
                format!("launch count must be at least 1, got {}", launch.count),
                "give the number of servers to start",
            );
        }
    }
    for (i, url) in b.endpoints.iter().enumerate() {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty()) {
            c.error(
                &index_path(&child_path(at, "endpoints"), i),
                format!("`{url}` is not an http(s) URL"),
                "write it as http://host:port",
            );
        }
    }
    if b.endpoint.is_some() && b.kind != BackendKind::Ollama {
        c.error(
            &child_path(at, "endpoint"),
            "`endpoint` applies to ollama backends only",
            "remove it; use kind `openai` for chat completions",
        );
    }
    if let (Some(server), Some(_)) = (b.server, &b.launch)
        && server != params::OpenAiServer::LlamaServer
    {
        c.error(
            &child_path(at, "server"),
            "a launched backend is llama-server, whatever `server` says",
            "remove `server`, or set it to `llama-server`; for another server list it under `endpoints`",
        );
    }
    if b.server.is_some() && b.kind != BackendKind::Openai {
        c.error(
            &child_path(at, "server"),
            "`server` says which OpenAI-compatible server an openai backend is",
            "remove it: a llama-cpp or ollama backend's server is known by its kind",
        );
    }
    if b.kind == BackendKind::Ollama && b.model.is_none() {
        c.error(
            at,
            "an ollama backend needs `model`",
            "add `model: <name>` as listed by `ollama list`",
        );
    }
    if b.timeout_s.is_some_and(|t| !t.is_finite() || t <= 0.0) {
        c.error(
            &child_path(at, "timeout_s"),
            "timeout must be positive",
            "give seconds, e.g. `timeout_s: 120`",
        );
    }
    if let Some(ms) = b.scrape_ms {
        if !ms.is_finite() || ms < 0.0 || (ms > 0.0 && ms < 100.0) {
            c.error(
                &child_path(at, "scrape_ms"),
                format!("`scrape_ms` is {ms}: scrapes closer than 100 ms apart load the server they measure"),
                "give milliseconds of at least 100 (`scrape_ms: 1000`, the default), or 0 to turn scraping off",
            );
        } else if b.server == Some(crate::spec::params::OpenAiServer::Openai) && ms > 0.0 {
            c.error(
                &child_path(at, "scrape_ms"),
                "the OpenAI API serves no `/metrics` page to scrape",
                "remove `scrape_ms`",
            );
        } else if b.kind == BackendKind::Ollama && ms > 0.0 {
            c.error(
                &child_path(at, "scrape_ms"),
                "Ollama serves no `/metrics` page to scrape",
                "remove `scrape_ms` (Ollama backends are not scraped)",
            );
        }
    }
}

fn check_workload(c: &mut Checker, spec: &Spec) {
    let Some(w) = &spec.workload else { return };
    // Prompts may come from the corpus instead: lengths by an axis, or a trace's.
    let input_axis = spec.matrix.as_ref().is_some_and(|m| {
        m.contains_key("input_tokens")
            || m.get("scenario")
                .and_then(Value::as_array)
                .is_some_and(|values| values.iter().any(|v| v.get("trace").is_some()))
    });
    match (&w.prompts_file, w.prompts.is_empty()) {
        (Some(_), false) => c.error(
            "workload",
            "workload has both `prompts` and `prompts_file`",
            "keep one of them",
        ),
        (None, true) if w.input_tokens.is_none() && !input_axis => c.error(
            "workload",
            "workload has no prompts",
            "add `prompts: [\"...\"]`, `prompts_file: prompts/<name>.yaml` or `input_tokens: 512` (prompts cut from the corpus)",
        ),
        (None, true) => {}
        (_, _) if w.input_tokens.is_some() => c.error(
            "workload.input_tokens",
            "workload has both prompts and `input_tokens`: which is sent?",
            "keep `input_tokens` (prompts of exact lengths cut from the corpus) or the prompts",
        ),
        (Some(file), true) => {
            let resolved = c.path.parent().unwrap_or(Path::new(".")).join(file);
            if !resolved.is_file() {
                c.error(
                    "workload.prompts_file",
                    format!("prompts file `{}` not found", resolved.display()),
                    "paths are relative to the spec's directory",
                );
            }
        }
        (None, false) => {}
    }
    if w.output_tokens.is_none() && w.max_tokens < 1 {
        c.error(
            "workload.max_tokens",
            format!("max_tokens must be at least 1, got {}", w.max_tokens),
            "give the number of tokens to generate per request, or `output_tokens`",
        );
    }
    for (field, length) in [
        ("input_tokens", &w.input_tokens),
        ("output_tokens", &w.output_tokens),
    ] {
        if let Some(problem) = length.as_ref().and_then(|l| l.problem()) {
            c.error(
                &format!("workload.{field}"),
                format!("`{field}`: {problem}"),
                "write a number of tokens (`512`) or `{dist: uniform, min: 128, max: 1024}`",
            );
        }
    }
    if let Some(p) = &w.prefix {
        if p.tokens < 1 || p.groups < 1 {
            c.error(
                "workload.prefix",
                format!(
                    "a shared prefix needs at least 1 token and 1 group, got {} tokens in {} groups",
                    p.tokens, p.groups
                ),
                "write e.g. `prefix: {tokens: 512, groups: 4}`",
            );
        }
        if w.input_tokens.is_none() && !input_axis {
            c.error(
                "workload.prefix",
                "shared prefixes are cut from the corpus, so they need `input_tokens`",
                "add `input_tokens` (each request's whole length, its prefix included)",
            );
        }
    }
    if let Some(session) = &w.session {
        if session.turns < 1 || !(session.think_time_ms.is_finite() && session.think_time_ms >= 0.0)
        {
            c.error(
                "workload.session",
                format!(
                    "a session needs at least 1 turn and a think time of 0 ms or more, got {} turns and {} ms",
                    session.turns, session.think_time_ms
                ),
                "write e.g. `session: {turns: 3, think_time_ms: 500}`",
            );
        }
        let other = spec
            .matrix
            .as_ref()
            .and_then(|m| m.get("scenario"))
            .and_then(Value::as_array)
            .and_then(|values| {
                values.iter().find_map(|v| {
                    let kind = v.get("kind").and_then(Value::as_str)?;
                    (!matches!(kind, "single" | "concurrent")).then(|| kind.to_owned())
                })
            });
        if let Some(kind) = other {
            c.error(
                "workload.session",
                format!(
                    "sessions run in single and concurrent scenarios, and this TR has a {kind} one"
                ),
                "give the load or program cells a TR of their own, or drop `session`",
            );
        }
    }
    if let Some(corpus) = &w.corpus {
        let root = c
            .path
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        if !root.join(corpus).is_file() {
            c.error(
                "workload.corpus",
                format!("corpus `{corpus}` not found"),
                "the path is relative to the project root (the folder holding experiments/)",
            );
        }
    }
}

fn check_slo(c: &mut Checker, spec: &Spec) {
    let Some(slo) = &spec.slo else { return };
    let terms = [
        ("ttft_ms", slo.ttft_ms),
        ("tpot_ms", slo.tpot_ms),
        ("e2e_ms", slo.e2e_ms),
    ];
    if terms.iter().all(|(_, v)| v.is_none()) {
        c.error(
            "slo",
            "an SLO needs at least one of `ttft_ms`, `tpot_ms` and `e2e_ms`",
            "write e.g. `slo: {ttft_ms: 500, tpot_ms: 50, percentile: p99}`",
        );
    }
    for (field, value) in terms {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            c.error(
                &format!("slo.{field}"),
                format!("`{field}` must be a positive number of milliseconds, got {v}"),
                "write the latency a request may take at most",
            );
        }
    }
    if slo.parse_percentile().is_none() {
        c.error(
            "slo.percentile",
            format!(
                "`percentile` is p50, p90, p95 or p99, not `{}`",
                slo.percentile.as_deref().unwrap_or_default()
            ),
            "write `percentile: p99`",
        );
    }
    if let Some(from) = &slo.from
        && from != "send"
        && from != "schedule"
    {
        c.error(
            "slo.from",
            format!("`from` is `schedule` or `send`, not `{from}`"),
            "`schedule` (the default) times each request from when it was due, so client-side queueing counts",
        );
    }
}

fn check_recorded_and_cost(c: &mut Checker, spec: &Spec) {
    for (name, r) in &spec.recorded {
        if r.source.trim().is_empty() {
            c.error(
                &format!("recorded.{name}.source"),
                "recorded figure without a source",
                "say where the figure comes from (report, table, page)",
            );
        }
        if !r.value.is_finite() {
            c.error(
                &format!("recorded.{name}.value"),
                "recorded value is not a finite number",
                "write the figure as a plain number",
            );
        }
    }
    if let Some(t) = &spec.contention {
        if !(t.decode_drop > 0.0 && t.decode_drop < 1.0) {
            c.error(
                "contention.decode_drop",
                format!("decode_drop must be between 0 and 1, got {}", t.decode_drop),
                "write a fraction, e.g. 0.10 for 10%",
            );
        }
        if !(t.ttft_factor > 1.0 && t.ttft_factor.is_finite()) {
            c.error(
                "contention.ttft_factor",
                format!("ttft_factor must be above 1, got {}", t.ttft_factor),
                "write a factor, e.g. 2.0",
            );
        }
    }
    if let Some(t) = &spec.validity {
        for (field, v) in [
            ("background_share", t.background_share),
            ("cv", t.cv),
            ("degraded_rate", t.degraded_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                c.error(
                    &format!("validity.{field}"),
                    format!("{field} must be a fraction between 0 and 1, got {v}"),
                    "write a fraction, e.g. 0.10 for 10%",
                );
            }
        }
        if t.min_runs < 2 {
            c.error(
                "validity.min_runs",
                format!("min_runs must be at least 2, got {}", t.min_runs),
                "an interval needs two runs; 3 is the usual floor",
            );
        }
    }
    let Some(cost) = &spec.cost else { return };
    for (field, v) in [
        ("hourly_usd", cost.hourly_usd),
        ("spot_hourly_usd", cost.spot_hourly_usd),
        ("power_w", cost.power_w),
        ("carbon_g_per_kwh", cost.carbon_g_per_kwh),
    ] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            c.error(
                &format!("cost.{field}"),
                format!("`{field}` must be a non-negative number"),
                "use the figure from your price list or meter",
            );
        }
    }
}

/// Splits the raw matrix map into axes, exclude and include, checking their shapes.
fn parse_matrix(c: &mut Checker, spec: &Spec) -> Option<Matrix> {
    let Some(raw) = &spec.matrix else {
        return Some(Matrix::default());
    };
    let errors_before = c.errors.0.len();
    let mut m = Matrix::default();
    for (key, value) in raw {
        let at = child_path("matrix", key);
        match key.as_str() {
            "exclude" | "include" => {
                let Some(items) = value.as_array() else {
                    c.error(
                        &at,
                        format!("`{key}` must be a list of axis -> value maps"),
                        format!("write `{key}: [{{axis: value}}]`"),
                    );
                    continue;
                };
                let mut selectors = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match serde_json::from_value::<IndexMap<String, Value>>(item.clone()) {
                        Ok(sel) if !sel.is_empty() => selectors.push(sel),
                        _ => c.error(
                            &index_path(&at, i),
                            format!("each `{key}` entry must be a non-empty map of axis -> value"),
                            "write e.g. `{temperature: 0.6}`",
                        ),
                    }
                }
                if key == "exclude" {
                    m.exclude = selectors
                } else {
                    m.include = selectors
                }
            }
            _ => match value.as_array() {
                Some(values) if values.is_empty() => {
                    c.error(
                        &at,
                        format!("axis `{key}` has no values"),
                        "list at least one value, or remove the axis",
                    );
                }
                Some(values) => {
                    let mut seen = std::collections::HashSet::new();
                    for (i, v) in values.iter().enumerate() {
                        if !seen.insert(super::matrix::equality_key(v)) {
                            c.error(
                                &index_path(&at, i),
                                format!("axis `{key}` lists a value twice"),
                                "remove the duplicate; use `repetitions` to repeat runs",
                            );
                        }
                    }
                    m.axes.insert(key.clone(), values.clone());
                }
                None => c.error(
                    &at,
                    format!("axis `{key}` must be a list of values"),
                    format!("write `{key}: [{}]`", compact(value)),
                ),
            },
        }
    }
    if m.axes.is_empty() && errors_before == c.errors.0.len() {
        c.error("matrix", "the matrix has no axes", "add an axis such as `temperature: [0.6, 0.8]`, or remove `matrix` for a single-cell TR");
    }
    for (list, selectors) in [("exclude", &m.exclude), ("include", &m.include)] {
        for (i, sel) in selectors.iter().enumerate() {
            for key in sel.keys() {
                if !m.axes.contains_key(key) {
                    let at = child_path(&index_path(&format!("matrix.{list}"), i), key);
                    let help =
                        did_you_mean(key, m.axes.keys().map(String::as_str)).unwrap_or_else(|| {
                            format!(
                                "the axes are: {}",
                                m.axes.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        });
                    c.error_at_key(&at, format!("{list} names unknown axis `{key}`"), help);
                }
            }
        }
    }
    (c.errors.0.len() == errors_before).then_some(m)
}

fn compact(v: &Value) -> String {
    super::matrix::display_value(v)
}

fn expand(c: &mut Checker, m: &Matrix) -> Option<Vec<Cell>> {
    match m.expand() {
        Ok(cells) => Some(cells),
        Err(e) => {
            let (field, message, help) = match e {
                MatrixError::ExcludeMatchesNothing(i) => (
                    format!("matrix.exclude[{i}]"),
                    "exclude matches no cell of the matrix".to_owned(),
                    "check the values against the axes, or remove this entry".to_owned(),
                ),
                MatrixError::ExcludesEverything => (
                    "matrix.exclude".into(),
                    "exclude removes every cell; nothing would run".into(),
                    "narrow the exclude entries".into(),
                ),
                MatrixError::IncludeMissingAxis { index, axis } => (
                    format!("matrix.include[{index}]"),
                    format!("include adds a new cell but gives no value for axis `{axis}`"),
                    format!("add `{axis}: <value>` to this entry"),
                ),
                MatrixError::IncludeDuplicate { index, cell } => (
                    format!("matrix.include[{index}]"),
                    format!("include adds nothing: cell `{cell}` is already in the matrix"),
                    "remove this entry, or change a value so it adds a new cell".into(),
                ),
            };
            c.error(&field, message, help);
            None
        }
    }
}

/// Workflow steps have unique ids and refer only to earlier steps; quality bounds make sense.
fn check_workflow(c: &mut Checker, spec: &Spec) {
    let Some(w) = &spec.workflow else { return };
    if w.steps.is_empty() {
        c.error(
            "workflow.steps",
            "the workflow has no steps",
            "add at least one `{id, prompt}`",
        );
    }
    let mut earlier: Vec<&str> = Vec::new();
    for (i, step) in w.steps.iter().enumerate() {
        let at = format!("workflow.steps[{i}]");
        if step.id.trim().is_empty()
            || !step
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            c.error(
                &format!("{at}.id"),
                format!(
                    "step id `{}` must be letters, digits and underscores",
                    step.id
                ),
                "e.g. `id: summarise`",
            );
        } else if earlier.contains(&step.id.as_str()) {
            c.error(
                &format!("{at}.id"),
                format!("step id `{}` is used twice", step.id),
                "give each step its own id",
            );
        }
        for name in step_references(&step.prompt) {
            if !earlier.contains(&name) {
                let help = if w.steps.iter().any(|s| s.id == name) {
                    format!("step `{name}` runs later; a prompt can use only the steps before it")
                } else {
                    did_you_mean(name, earlier.iter().copied()).unwrap_or_else(|| {
                        format!(
                            "earlier steps: {}",
                            if earlier.is_empty() {
                                "none".into()
                            } else {
                                earlier.join(", ")
                            }
                        )
                    })
                };
                c.error(
                    &format!("{at}.prompt"),
                    format!("the prompt uses `steps.{name}`, which is not an earlier step"),
                    help,
                );
            }
        }
        if step.max_tokens.is_some_and(|n| n < 1) {
            c.error(
                &format!("{at}.max_tokens"),
                "max_tokens must be at least 1",
                "e.g. `max_tokens: 64`",
            );
        }
        earlier.push(&step.id);
    }
    if let Some(q) = &w.quality
        && let (Some(lo), Some(hi)) = (q.min_words, q.max_words)
        && lo > hi
    {
        c.error(
            "workflow.quality.min_words",
            format!("min_words {lo} is above max_words {hi}"),
            "swap them or widen the range",
        );
    }
}

/// The step ids a prompt template refers to as `steps.<id>`.
pub fn step_references(prompt: &str) -> Vec<&str> {
    prompt
        .match_indices("steps.")
        .filter(|(i, _)| *i == 0 || !prompt.as_bytes()[i - 1].is_ascii_alphanumeric())
        .map(|(i, m)| {
            let rest = &prompt[i + m.len()..];
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Agent programs can be started, and an `agent` axis names them.
fn check_agent_programs(c: &mut Checker, spec: &Spec, m: &Matrix) {
    for (name, program) in &spec.agents {
        if program.command.first().is_none_or(|p| p.trim().is_empty()) {
            c.error(
                &format!("agents.{name}.command"),
                "the command is empty",
                "give the program and its arguments: `[\"python3\", \"agents/python/agent.py\"]`",
            );
        }
        if program
            .timeout_s
            .is_some_and(|t| !(t > 0.0 && t.is_finite()))
        {
            c.error(
                &format!("agents.{name}.timeout_s"),
                "timeout_s must be a positive number of seconds",
                "e.g. `timeout_s: 300`",
            );
        }
        if let Some(b) = &program.backend
            && !spec.backends.contains_key(b)
        {
            let help = did_you_mean(b, spec.backends.keys().map(String::as_str))
                .unwrap_or_else(|| "name a backend defined under `backends:`".into());
            c.error(
                &format!("agents.{name}.backend"),
                format!("backend `{b}` is not defined"),
                help,
            );
        }
    }
    let names: Vec<&str> = spec.agents.keys().map(String::as_str).collect();
    for (at, value) in axis_values(m, "agent") {
        let name = value.as_str().unwrap_or_default();
        if !spec.agents.contains_key(name) {
            let help = did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
                format!("define it under `agents:` (defined: {})", names.join(", "))
            });
            c.error(
                &at,
                format!("agent program `{}` is not defined", compact(value)),
                help,
            );
        }
    }
}

/// A `hardware` axis names placements defined under `hardware:`, and several placements
/// need the axis that says which cell runs where.
fn check_hardware(c: &mut Checker, spec: &Spec, m: &Matrix) {
    let names: Vec<&str> = spec.hardware.keys().map(String::as_str).collect();
    if spec.hardware.len() > 1 && !m.axes.contains_key("hardware") {
        c.error(
            "hardware",
            "several hardware placements but no `hardware` axis says which cell runs where",
            format!("add `hardware: [{}]` to the matrix", names.join(", ")),
        );
    }
    for (name, h) in &spec.hardware {
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            c.error_at_key(
                &format!("hardware.{name}"),
                format!("hardware name `{name}` is not a plain name"),
                "use letters, digits, `-`, `_` and `.`: it names a directory and a job",
            );
        }
        if h.partition.as_deref().is_some_and(|p| p.trim().is_empty()) {
            c.error(
                &format!("hardware.{name}.partition"),
                "the partition is empty",
                "name a Slurm partition, or leave `partition` out for the default one",
            );
        }
    }
    for (at, value) in axis_values(m, "hardware") {
        let name = value.as_str().unwrap_or_default();
        if !spec.hardware.contains_key(name) {
            let help = did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
                if names.is_empty() {
                    "define it under `hardware:`, e.g. `hardware: {cpu-a: {partition: a}}`"
                        .to_owned()
                } else {
                    format!(
                        "define it under `hardware:` (defined: {})",
                        names.join(", ")
                    )
                }
            });
            c.error(
                &at,
                format!("hardware `{}` is not defined", compact(value)),
                help,
            );
        }
    }
}

/// The `model` axis: each value a GGUF or a synthetic model, loaded by launched llama-servers
/// (an external server's model is not ours to choose).
fn check_model_axis(c: &mut Checker, spec: &Spec, m: &Matrix, cells: &[Cell]) {
    let mut ok = true;
    // A name (`qwen2.5`) describes a model served elsewhere, as catalogue specs do; a map is a
    // model file for launched servers.
    for (at, value) in axis_values(m, "model")
        .into_iter()
        .filter(|(_, v)| v.is_object())
    {
        if let Err(e) = super::model::ModelValue::from_value(value) {
            ok = false;
            c.error(
                &at,
                format!("invalid model: {e}"),
                "write `{gguf: path/to/model.gguf}` or `{synthetic: {params: 50M}}` (docs/spec.md, \"Models\")",
            );
        }
    }
    if !ok {
        return;
    }
    let mut refused: Vec<&str> = Vec::new();
    for cell in cells
        .iter()
        .filter(|c| c.params.get("model").is_some_and(Value::is_object))
    {
        let backend = cell
            .params
            .get("backend")
            .and_then(Value::as_str)
            .or_else(|| spec.backends.keys().next().map(String::as_str));
        if let Some((name, b)) = backend.and_then(|n| spec.backends.get_key_value(n))
            && b.launch.is_none()
            && !refused.contains(&name.as_str())
        {
            refused.push(name);
            c.error(
                "matrix.model",
                format!("the `model` axis sets what launched llama-servers load, and backend `{name}` launches none"),
                format!("give backend `{name}` a `launch:` (its `-m` is replaced per cell), or leave it out of the cells with a model"),
            );
        }
    }
}

/// `backend` and `scenario` axes refer to things the spec must define correctly.
fn check_axis_references(c: &mut Checker, spec: &Spec, m: &Matrix, cells: &[Cell]) {
    let names: Vec<&str> = spec.backends.keys().map(String::as_str).collect();
    if spec.backends.len() > 1 && !m.axes.contains_key("backend") {
        c.error(
            "backends",
            "several backends but no `backend` axis says which cell uses which",
            format!("add `backend: [{}]` to the matrix", names.join(", ")),
        );
    }
    for (at, value) in axis_values(m, "backend") {
        let name = value.as_str().unwrap_or_default();
        if !spec.backends.contains_key(name) {
            let help = did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
                format!(
                    "define it under `backends:` (defined: {})",
                    names.join(", ")
                )
            });
            c.error(
                &at,
                format!("backend `{}` is not defined", compact(value)),
                help,
            );
        }
    }
    check_load_axes(c, m, cells);
    check_workload_axes(c, spec, m);
    check_model_axis(c, spec, m, cells);
    let mut scenario_ok = true;
    for (at, value) in axis_values(m, "scenario") {
        if let Err(e) = serde_json::from_value::<Scenario>(value.clone()) {
            scenario_ok = false;
            c.error(&at, format!("invalid scenario: {e}"), "write `{kind: single}`, `{kind: concurrent, agents: 2, placement: shared | server-per-agent}`, `{kind: command, agents: 1}` or `{kind: load, rate: 4, duration_s: 60}`");
        }
    }
    if !scenario_ok {
        return;
    }
    for cell in cells {
        let Some(Ok(scenario)) = cell
            .params
            .get("scenario")
            .map(|v| serde_json::from_value::<Scenario>(v.clone()))
        else {
            continue;
        };
        let (kind, agents, placement) = match scenario {
            Scenario::Single => continue,
            Scenario::Load(load) => {
                if let Some(file) = &load.trace
                    && let Err(mut d) = crate::workload::trace::read(
                        &c.path.parent().unwrap_or(Path::new(".")).join(file),
                    )
                {
                    if d.location.is_none() {
                        // The trace cannot be read at all (missing, a folder, unreadable): the
                        // line to fix is the spec's `trace:`, not a place in the trace.
                        let at = axis_values(m, "scenario")
                            .into_iter()
                            .find(|(_, v)| {
                                cell.params
                                    .get("scenario")
                                    .is_some_and(|s| values_equal(v, s))
                            })
                            .map_or_else(|| "matrix.scenario".to_owned(), |(at, _)| at);
                        let at = child_path(&at, "trace");
                        let why = d.message.strip_prefix("cannot read trace: ");
                        let message =
                            format!("cannot read trace `{file}`: {}", why.unwrap_or(&d.message));
                        d = c.diag(&at, message).help(d.help.unwrap_or_default());
                    }
                    if !c.errors.0.iter().any(|e| e.message == d.message) {
                        c.errors.push(d);
                    }
                }
                if let Err(p) = super::load::resolve(&load, &cell.params) {
                    let at = load_problem_path(m, cell, &p);
                    if !c
                        .errors
                        .0
                        .iter()
                        .any(|d| d.field.as_deref() == Some(at.as_str()))
                    {
                        c.error(&at, p.message, p.help);
                    }
                }
                continue;
            }
            Scenario::Concurrent { agents, placement } => ("concurrent", agents, placement),
            Scenario::Workflow { agents, placement } => ("workflow", agents, placement),
            Scenario::Command { agents, placement } => ("command", agents, placement),
        };
        // What a workflow or command scenario runs must be defined.
        let undefined = match kind {
            "workflow" if spec.workflow.as_ref().is_none_or(|w| w.steps.is_empty()) => Some((
                "a workflow scenario runs the spec's workflow, but `workflow:` has no steps",
                "add `workflow: {steps: [{id: summarise, prompt: \"Summarise: {{ input }}\"}]}`",
            )),
            "command" if spec.agents.is_empty() => Some((
                "a command scenario runs an agent program, but `agents:` defines none",
                "add `agents: {name: {command: [\"python3\", \"agents/python/agent.py\"]}}`",
            )),
            _ => None,
        };
        if let Some((message, help)) = undefined {
            c.error("matrix.scenario", message, help);
            return;
        }
        let too_few = match kind {
            "concurrent" if agents < 2 => Some((
                format!("a concurrent scenario needs at least 2 agents, got {agents}"),
                "use `kind: single` for one agent",
            )),
            _ if agents < 1 => Some((
                format!("a {kind} scenario needs at least 1 agent"),
                "set `agents: 1` or more",
            )),
            _ => None,
        };
        if let Some((message, help)) = too_few {
            c.error("matrix.scenario", message, help);
            return;
        }
        let backend = match cell.params.get("backend").and_then(Value::as_str) {
            Some(name) => spec.backends.get(name).map(|b| (name, b)),
            None => spec.backends.iter().next().map(|(n, b)| (n.as_str(), b)),
        };
        if let (Placement::ServerPerAgent, Some((name, b))) = (placement, backend) {
            let servers = b
                .launch
                .as_ref()
                .map_or(b.endpoints.len(), |l| l.count.max(0) as usize);
            if servers < agents as usize {
                c.error(
                    &format!("backends.{name}"),
                    format!("cell `{}` puts {agents} agents on a server each, but backend `{name}` has {servers}", cell.label()),
                    format!("launch at least {agents} servers (`launch: {{count: {agents}}}`) or list {agents} endpoints"),
                );
                return;
            }
        }
    }
}

/// Where a load problem is written: the axis value that set the field, else the field in the
/// scenario, else (a field that is missing) the scenario itself.
fn load_problem_path(m: &Matrix, cell: &Cell, p: &super::load::LoadProblem) -> String {
    let written = |axis: &str| {
        let value = cell.params.get(axis)?;
        axis_values(m, axis)
            .into_iter()
            .find(|(_, v)| values_equal(v, value))
            .map(|(at, _)| at)
    };
    if p.from_axis {
        return written(p.field).unwrap_or_else(|| format!("matrix.{}", p.field));
    }
    let scenario = written("scenario").unwrap_or_else(|| "matrix.scenario".to_owned());
    let field = child_path(&scenario, p.field);
    let has_field = cell
        .params
        .get("scenario")
        .and_then(|s| s.get(p.field))
        .is_some();
    if has_field { field } else { scenario }
}

/// The axes that set workload fields take what those fields take.
fn check_workload_axes(c: &mut Checker, spec: &Spec, m: &Matrix) {
    use crate::workload::lengths::Length;
    for axis in ["input_tokens", "output_tokens"] {
        for (at, value) in axis_values(m, axis) {
            let problem = match serde_json::from_value::<Length>(value.clone()) {
                Ok(l) => l.problem(),
                Err(_) => Some(format!("{} is not a length", compact(value))),
            };
            if let Some(p) = problem {
                c.error(
                    &at,
                    format!("`{axis}`: {p}"),
                    "write a number of tokens (`512`) or `{dist: uniform, min: 128, max: 1024}`",
                );
            }
        }
    }
    for (at, value) in axis_values(m, "cache") {
        if serde_json::from_value::<super::CacheMode>(value.clone()).is_err() {
            c.error(
                &at,
                format!("`cache` is warm or cold, not {}", compact(value)),
                "write `cache: [warm, cold]`",
            );
        }
    }
    let w = spec.workload.as_ref();
    if m.axes.contains_key("input_tokens")
        && w.is_some_and(|w| !w.prompts.is_empty() || w.prompts_file.is_some())
    {
        c.error(
            "matrix.input_tokens",
            "the `input_tokens` axis cuts prompts from the corpus, but the workload lists prompts too: which is sent?",
            "remove the workload's prompts",
        );
    }
}

/// The axes that fill a load scenario's fields mean nothing to any other scenario.
fn check_load_axes(c: &mut Checker, m: &Matrix, cells: &[Cell]) {
    for axis in super::load::LOAD_AXES {
        if !m.axes.contains_key(*axis) {
            continue;
        }
        let stray = cells.iter().find(|cell| {
            cell.params.contains_key(*axis)
                && !matches!(
                    cell.params
                        .get("scenario")
                        .and_then(|v| serde_json::from_value::<Scenario>(v.clone()).ok()),
                    Some(Scenario::Load(_))
                )
        });
        if let Some(cell) = stray {
            c.error(
                &format!("matrix.{axis}"),
                format!(
                    "the `{axis}` axis sets a field of load scenarios, but cell `{}` is not a load cell",
                    cell.label()
                ),
                "add `scenario: [{kind: load, duration_s: 60}]` to the matrix, or exclude the other cells from this axis",
            );
        }
    }
}

/// Every request parameter a cell sets must be one its backend's server takes, under some
/// name (`spec::params`): a server that ignores a field would silently measure something else.
fn check_request_params(c: &mut Checker, spec: &Spec, m: &Matrix, cells: &[Cell]) {
    // Each parameter once per backend (once per value for a value it cannot take).
    let mut reported: Vec<(String, String)> = Vec::new();
    for cell in cells {
        let scenario = cell
            .params
            .get("scenario")
            .and_then(|v| serde_json::from_value::<Scenario>(v.clone()).ok());
        // Agent programs get every axis in their environment and send what they like.
        if matches!(scenario, Some(Scenario::Command { .. })) {
            continue;
        }
        let backend = match cell.params.get("backend").and_then(Value::as_str) {
            Some(name) => spec.backends.get_key_value(name),
            None => spec.backends.iter().next(),
        };
        let Some((name, b)) = backend else { continue };
        let dialect = params::Dialect::of(b);
        let workload_eos = spec
            .workload
            .as_ref()
            .is_some_and(|w| w.ignore_eos)
            .then_some(("ignore_eos", true, Value::Bool(true)));
        let axes = cell
            .params
            .iter()
            .filter(|(k, _)| params::REQUEST_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), false, v.clone()));
        // Where a value is written, found only for a value in error: finding it for every
        // cell made a large matrix quadratic.
        let at_of = |param: &str, from_workload: bool, value: &Value| {
            if from_workload {
                return "workload.ignore_eos".to_owned();
            }
            axis_values(m, param)
                .into_iter()
                .find(|(_, written)| values_equal(written, value))
                .map_or_else(|| format!("matrix.{param}"), |(at, _)| at)
        };
        for (param, from_workload, value) in axes.chain(workload_eos) {
            let unsupported = (param.to_owned(), name.clone());
            if reported.contains(&unsupported) {
                continue;
            }
            if let Err(help) = params::field(dialect, param) {
                reported.push(unsupported);
                c.error(
                    &at_of(param, from_workload, &value),
                    format!(
                        "backend `{name}` ({}) does not take `{param}`: the server would ignore or refuse it",
                        dialect.name()
                    ),
                    help,
                );
            } else if let Err(help) = params::check_value(param, &value) {
                let bad_value = (param.to_owned(), format!("{name} {value}"));
                if reported.contains(&bad_value) {
                    continue;
                }
                reported.push(bad_value);
                c.error(
                    &at_of(param, from_workload, &value),
                    format!("`{param}` cannot be {}", compact(&value)),
                    help,
                );
            }
        }
    }
}

/// Every written value of an axis, from the axis list and from include entries, with its path.
fn axis_values<'m>(m: &'m Matrix, axis: &str) -> Vec<(String, &'m Value)> {
    let listed = m
        .axes
        .get(axis)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| (index_path(&format!("matrix.{axis}"), i), v));
    let included = m.include.iter().enumerate().filter_map(|(i, sel)| {
        sel.get(axis)
            .map(|v| (format!("matrix.include[{i}].{axis}"), v))
    });
    listed.chain(included).collect()
}
