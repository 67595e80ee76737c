//! Command-line interface: argument parsing and output formatting only; the work happens in
//! the library modules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets};

use crate::analysis;
use crate::audit;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan;
use crate::record::JournalError;
use crate::registry::{Registry, experiments_dir};
use crate::report;
use crate::runner;
use crate::spec::{self, Spec, matrix::axis_label};

mod cluster;

/// Exit code for a usage or input error (bad spec, unknown TR).
pub const EXIT_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "banterhearts",
    version,
    about = "Declarative LLM-performance technical reports"
)]
pub struct Cli {
    /// Project root holding experiments/, data/, reports/ and templates/.
    #[arg(short = 'C', long, global = true, default_value = ".")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs: every spec under experiments/, or the files given.
    Validate {
        /// Spec files or TR ids to check (default: all of experiments/).
        specs: Vec<PathBuf>,
    },
    /// Start a new spec: from templates/new-spec.yaml, as a copy of another TR (--from), or as
    /// the next version of one (--supersedes with --reason). Never overwrites.
    New {
        /// The new TR id (TR125, TR114_v3).
        id: String,
        /// Copy this TR's spec (comments kept; status set to planned).
        #[arg(long, conflicts_with = "supersedes")]
        from: Option<String>,
        /// The TR this one replaces; it becomes "superseded" and its report gets a banner.
        #[arg(long, requires = "reason")]
        supersedes: Option<String>,
        /// Why the new version replaces the old one (shown in both reports and the index).
        #[arg(long, requires = "supersedes")]
        reason: Option<String>,
    },
    /// Show the cells and runs a TR expands to.
    Plan {
        /// TR id (TR124) or spec file.
        tr: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Every cell of a large plan's table (by default the first 50 and the totals).
        #[arg(long)]
        all: bool,
    },
    /// Run a TR's plan against its servers; resumes where an earlier run stopped.
    Run {
        /// TR id (TR124) or spec file.
        tr: String,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        part: cluster::PartArgs,
    },
    /// Put a TR's shards together into its data (every run once; conflicts and other spec
    /// versions refused). Safe to repeat.
    Merge {
        /// TR id (TR124) or spec file.
        tr: String,
        /// Merge the shards of this replication instead of the original data.
        #[arg(long)]
        replication: Option<String>,
    },
    /// Run a TR's shards on a scheduler: a Slurm job array plus a dependent merge, analyze and
    /// report job, or Kubernetes Indexed Job manifests.
    Submit(cluster::SubmitArgs),
    /// Run a TR's plan again into a replication data set beside its data, and judge each
    /// claim: does the original figure fall in the replication's interval?
    Replicate(cluster::ReplicateArgs),
    /// Statistics per cell, contention, claim comparisons, cost and energy: writes
    /// data/TR/summary.{csv,parquet} (and cost.csv, comparisons.json when the spec has them).
    Analyze {
        /// TR id (TR124) or spec file.
        tr: String,
    },
    /// Compare a metric between two selections of a TR's runs (ratio with 95% CI, Welch p,
    /// Hedges' g, Mann-Whitney from 4 runs per arm).
    Compare {
        /// TR id (TR124) or spec file.
        tr: String,
        /// Metric to compare (see docs/metrics.md), e.g. decode_tok_s.
        #[arg(long)]
        metric: String,
        /// Selection A as axis=value (repeatable); values are YAML: `scenario={kind: single}`.
        #[arg(long = "a", required = true)]
        a: Vec<String>,
        /// Selection B, same form.
        #[arg(long = "b", required = true)]
        b: Vec<String>,
    },
    /// Render reports/TR.md and its figures from the spec, its data and its template.
    Report {
        /// TR id (TR124) or spec file.
        #[arg(required_unless_present = "all")]
        tr: Option<String>,
        /// Every TR under experiments/ (and the index).
        #[arg(long, conflicts_with = "tr")]
        all: bool,
    },
    /// Render reports/README.md: all reports by phase and status, with key findings.
    Index,
    /// Check which results stand: supersession, stale reports, numbers that no longer follow
    /// from the data, claims, plan vs data, mixed provenance. Exit 1 on errors or warnings.
    Audit {
        /// TR ids to audit (default: all).
        trs: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: AuditFormat,
    },
    /// Print the JSON Schema of the spec format (for editor autocompletion).
    Schema,
    /// Serve tokens on an exact schedule (llama.cpp and OpenAI streaming formats), to measure
    /// the harness itself: point a TR's endpoints at it.
    Pacer {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// Delay before the first token, in ms.
        #[arg(long, default_value_t = 20.0)]
        ttft_ms: f64,
        /// Gap between tokens, in ms.
        #[arg(long, default_value_t = 10.0)]
        itl_ms: f64,
        /// Tokens per response when the request sets no limit.
        #[arg(long, default_value_t = 64)]
        tokens: u32,
        /// Also write each response's true timings here, one JSON line each.
        #[arg(long)]
        log: Option<PathBuf>,
        /// The first this many tokens of each response are reasoning (chat and Ollama
        /// endpoints), like a thinking model's trace before its answer.
        #[arg(long, default_value_t = 0)]
        reasoning_tokens: u32,
        /// The delta field the chat endpoint streams reasoning in.
        #[arg(long, value_enum, default_value = "reasoning-content")]
        reasoning_field: crate::pacer::ReasoningField,
        /// Misbehave on purpose, as crashed, overloaded or buggy servers do (for reliability
        /// tests): see `--fault-every`.
        #[arg(long, value_enum)]
        fault: Option<crate::pacer::FaultKind>,
        /// The fault strikes every this many generation requests to an endpoint, counted from
        /// the first (1: every request); the others are answered normally.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), requires = "fault")]
        fault_every: u32,
        /// With a status fault, send `Retry-After: SECONDS`.
        #[arg(long, value_name = "SECONDS", requires = "fault")]
        retry_after: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// Grouped by TR and severity, for people.
    Text,
    /// Every finding with TR, severity, check, message and location, for CI.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Parses the arguments, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            ExitCode::from(EXIT_INPUT)
        }
    }
}

pub fn run(cli: &Cli) -> Result<ExitCode, Diagnostics> {
    match &cli.command {
        Command::Validate { specs } => validate(&cli.root, specs),
        Command::Plan { tr, format, all } => show_plan(&cli.root, tr, *format, *all),
        Command::Run { tr, quiet, part } => {
            let options = part.options(&cli.root, tr, *quiet)?;
            run_tr(&cli.root, tr, options)
        }
        Command::Merge { tr, replication } => {
            cluster::merge_cmd(&cli.root, tr, replication.as_deref())
        }
        Command::Submit(args) => cluster::submit_cmd(&cli.root, args),
        Command::Replicate(args) => cluster::replicate_cmd(&cli.root, args),
        Command::Analyze { tr } => analyze_tr(&cli.root, tr),
        Command::Report { tr, all } => report_cmd(&cli.root, tr.as_deref(), *all),
        Command::Index => index_cmd(&cli.root),
        Command::New {
            id,
            from,
            supersedes,
            reason,
        } => new_spec(
            &cli.root,
            id,
            from.as_deref(),
            supersedes.as_deref(),
            reason.as_deref(),
        ),
        Command::Audit { trs, format } => audit_cmd(&cli.root, trs, *format),
        Command::Compare { tr, metric, a, b } => compare_tr(&cli.root, tr, metric, a, b),
        Command::Pacer {
            host,
            port,
            ttft_ms,
            itl_ms,
            tokens,
            log,
            reasoning_tokens,
            reasoning_field,
            fault,
            fault_every,
            retry_after,
        } => {
            let bad = |name: &str| {
                Diagnostics::from(Diagnostic::new(format!(
                    "--{name} must be a non-negative number of milliseconds"
                )))
            };
            let ttft = Duration::try_from_secs_f64(ttft_ms / 1000.0).map_err(|_| bad("ttft-ms"))?;
            let itl = Duration::try_from_secs_f64(itl_ms / 1000.0).map_err(|_| bad("itl-ms"))?;
            let runtime = runtime()?;
            let schedule = crate::pacer::Schedule {
                ttft,
                itl,
                tokens: *tokens,
                reasoning_tokens: *reasoning_tokens,
                reasoning_field: *reasoning_field,
            };
            let fault = fault.map(|kind| crate::pacer::Fault {
                kind,
                every: *fault_every,
                retry_after_s: *retry_after,
            });
            runtime
                .block_on(crate::pacer::serve(
                    host,
                    *port,
                    schedule,
                    fault,
                    log.as_deref(),
                ))
                .map_err(|e| {
                    Diagnostic::new(format!("pacer: cannot serve on {host}:{port}: {e}"))
                        .help("pick another --port")
                })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            let schema = schemars::schema_for!(Spec);
            print_out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&schema).expect("schema serializes")
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes to stdout, treating a closed pipe (`| head`) as a normal end.
fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn validate(root: &Path, files: &[PathBuf]) -> Result<ExitCode, Diagnostics> {
    let (registry, problems) = Registry::load(root);
    let mut shown = Diagnostics::default();
    let mut checked: Vec<String> = Vec::new();
    // Warnings of files checked outside the registry.
    let mut outside: Vec<Diagnostic> = Vec::new();
    if files.is_empty() {
        shown = problems;
        checked.extend(registry.specs.keys().cloned());
        if checked.is_empty() && shown.is_empty() {
            shown.push(
                Diagnostic::new("no specs found")
                    .in_file(experiments_dir(root))
                    .help("write experiments/TR<number>.yaml (see README.md)"),
            );
        }
    } else {
        let in_registry = |f: &Path| {
            registry
                .specs
                .values()
                .map(|s| s.path.as_path())
                .chain(registry.broken.values().map(PathBuf::as_path))
                .any(|p| same_file(p, f))
        };
        for file in files {
            // A TR id names experiments/<id>.yaml, as in every other command.
            let by_id = experiments_dir(root).join(file).with_extension("yaml");
            let file = if !file.exists() && by_id.is_file() {
                &by_id
            } else {
                file
            };
            if in_registry(file) {
                // Checked with its neighbours, so supersession problems show up too.
                shown.0.extend(
                    problems
                        .0
                        .iter()
                        .filter(|d| d.file.as_deref().is_some_and(|p| same_file(p, file)))
                        .cloned(),
                );
                if let Some(s) = registry.specs.values().find(|s| same_file(&s.path, file)) {
                    checked.push(s.spec.id.clone());
                }
            } else {
                match spec::load(file) {
                    Ok(s) => {
                        outside.extend(s.warnings.iter().cloned());
                        checked.push(s.spec.id);
                    }
                    Err(e) => shown.0.extend(e.0),
                }
            }
        }
    }
    if !shown.is_empty() {
        let files_with_errors: std::collections::BTreeSet<_> =
            shown.0.iter().filter_map(|d| d.file.clone()).collect();
        shown.push(Diagnostic::new(format!(
            "{} problem(s) in {} file(s); nothing was run or written",
            shown.0.len(),
            files_with_errors.len()
        )));
        return Err(shown);
    }
    let mut lines = String::new();
    for id in &checked {
        let line = match registry.specs.get(id) {
            Some(s) => {
                let p = plan::build(s);
                let status = registry
                    .effective_status(id)
                    .map(|st| st.label())
                    .unwrap_or_default();
                format!(
                    "ok  {id:<20} {status:<24} {} cells, {} runs\n",
                    p.cells.len(),
                    p.measured_runs()
                )
            }
            None => format!("ok  {id}\n"),
        };
        lines.push_str(&line);
    }
    lines.push_str(&format!("{} spec(s) valid\n", checked.len()));
    print_out(&lines);
    // What may mislead, for the specs checked: on stderr, not failing validation.
    let warnings: Vec<&Diagnostic> = checked
        .iter()
        .filter_map(|id| registry.specs.get(id))
        .flat_map(|s| &s.warnings)
        .chain(&outside)
        .collect();
    for w in &warnings {
        eprintln!("{w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_tr(root: &Path, tr: &str, options: runner::RunOptions) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, tr)?;
    let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
    // Only the ring provider is compiled in; install it for HTTPS endpoints.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Diagnostics::from(Diagnostic::new(format!(
                "cannot start the async runtime: {e}"
            )))
        })?;
    let quiet = options.quiet;
    let summary = match runtime.block_on(runner::run(root, loaded, &options)) {
        Ok(s) => s,
        Err(runner::RunError::Input(d)) => return Err(d),
        Err(e) => {
            let resume = cluster::resume_command(&loaded.spec.id, &options);
            let help = match &e {
                runner::RunError::Journal(JournalError::Append { source, .. })
                    if source.raw_os_error() == Some(libc::ENOSPC) =>
                {
                    format!("the disk is full: free space on it, then run `{resume}` to resume")
                }
                _ => format!(
                    "nothing recorded so far was lost; fix the cause and run `{resume}` to resume"
                ),
            };
            return Err(Diagnostic::new(e.to_string()).help(help).into());
        }
    };
    let id = &loaded.spec.id;
    if summary.interrupted {
        eprintln!(
            "interrupted: {} run(s) recorded in this session, {} of {} in total; the run in flight was dropped.\nrun `{}` again to resume.",
            summary.recorded,
            summary.already_recorded + summary.recorded,
            summary.planned,
            cluster::resume_command(id, &options)
        );
        return Ok(ExitCode::from(130));
    }
    // Quiet still says why the exit code is 1: degraded runs are kept, and named here.
    if summary.recorded > 0 && (!quiet || summary.degraded > 0) {
        eprintln!(
            "{id}: recorded {} run(s) ({} degraded) in {}",
            summary.recorded,
            summary.degraded,
            options.paths(root, id).runs().display()
        );
    }
    if let Some(c) = summary
        .contention
        .as_ref()
        .filter(|c| !quiet && (c.agents() > 0 || c.without_baseline > 0))
    {
        let t = loaded.spec.contention.unwrap_or_default();
        eprintln!(
            "contention: {} of {} concurrent agents flagged (decode more than {:.0}% below, or TTFT more than {}x, the single-agent median of the same configuration)",
            c.contended(),
            c.agents(),
            t.decode_drop * 100.0,
            t.ttft_factor
        );
        if c.without_baseline > 0 {
            eprintln!(
                "contention: {} concurrent agents have no single-agent runs of the same configuration to compare with",
                c.without_baseline
            );
        }
    }
    Ok(if summary.degraded > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn report_error(e: report::ReportError) -> Diagnostics {
    match e {
        report::ReportError::Input(d) => d.into(),
        other => Diagnostic::new(other.to_string()).into(),
    }
}

fn report_cmd(root: &Path, tr: Option<&str>, all: bool) -> Result<ExitCode, Diagnostics> {
    let registry = if all {
        let (registry, problems) = Registry::load(root);
        if !problems.is_empty() {
            return Err(problems);
        }
        registry
    } else {
        load_one(root, tr.unwrap_or_default())?
    };
    let targets: Vec<&spec::LoadedSpec> = match tr {
        Some(tr) if !all => vec![registry.resolve(tr).map_err(Diagnostics::from)?],
        _ => registry.specs.values().collect(),
    };
    let mut out = String::new();
    for loaded in targets {
        let rendered = report::render(root, &registry, loaded).map_err(report_error)?;
        let written = report::write(root, &rendered).map_err(report_error)?;
        out.push_str(&format!(
            "{}: {}\n",
            loaded.spec.id,
            written
                .last()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    if all {
        out.push_str(&write_index(root, &registry)?);
    }
    print_out(&out);
    Ok(ExitCode::SUCCESS)
}

fn write_index(root: &Path, registry: &Registry) -> Result<String, Diagnostics> {
    let text = report::render_index(root, registry).map_err(report_error)?;
    let path = report::reports_dir(root).join("README.md");
    crate::store::write_atomic(&path, text.as_bytes())
        .map_err(|e| Diagnostics::from(Diagnostic::new(format!("{}: {e}", path.display()))))?;
    Ok(format!("index: {}\n", path.display()))
}

fn new_spec(
    root: &Path,
    id: &str,
    from: Option<&str>,
    supersedes: Option<&str>,
    reason: Option<&str>,
) -> Result<ExitCode, Diagnostics> {
    use crate::scaffold::{Origin, create};
    let origin = match (from, supersedes) {
        (Some(from), _) => Origin::CopyOf(from),
        (None, Some(old)) => Origin::Supersedes {
            id: old,
            reason: reason.unwrap_or_default(),
        },
        (None, None) => Origin::Starter,
    };
    let path = create(root, id, origin)?;
    print_out(&format!(
        "wrote {}
next: edit it, then `banterhearts validate {id}` and `banterhearts plan {id}`
",
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn audit_cmd(root: &Path, trs: &[String], format: AuditFormat) -> Result<ExitCode, Diagnostics> {
    let (registry, problems) = Registry::load(root);
    for tr in trs {
        if !registry.specs.contains_key(tr) && !registry.broken.contains_key(tr) {
            registry.resolve(tr).map_err(Diagnostics::from)?;
        }
    }
    let result = audit::audit(root, &registry, &problems, trs);
    match format {
        AuditFormat::Text => print_out(&result.to_text()),
        AuditFormat::Json => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&result).expect("findings serialize")
        )),
    }
    Ok(if result.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn index_cmd(root: &Path) -> Result<ExitCode, Diagnostics> {
    let (registry, problems) = Registry::load(root);
    if !problems.is_empty() {
        return Err(problems);
    }
    print_out(&write_index(root, &registry)?);
    Ok(ExitCode::SUCCESS)
}

fn outcome_word(c: &analysis::claims::ClaimCheck) -> &'static str {
    use analysis::claims::{Basis, Outcome};
    match (c.outcome, c.basis) {
        (Outcome::Holds, Basis::Recorded) => {
            "follows from its recorded figures (unverifiable here)"
        }
        (Outcome::Holds, _) => "holds",
        (Outcome::Fails, _) => "FAILS",
        (Outcome::NoData, _) => "has no data",
    }
}

fn analysis_error(e: analysis::AnalysisError) -> Diagnostics {
    match e {
        analysis::AnalysisError::Input(d) => d.into(),
        other => Diagnostic::new(other.to_string()).into(),
    }
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The load cells' run-level figures: each the centre of its interval over the runs.
fn load_table(a: &analysis::Analysis, cells: &[usize]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN);
    table.set_header(vec![
        "load cell",
        "runs",
        "degraded",
        "offered req/s",
        "achieved req/s (95% CI)",
        "output tok/s",
        "TTFT p50 / p99 ms",
        "E2E p50 / p99 ms",
        "errors",
        "lag p99 ms (worst)",
    ]);
    let runs_of: std::collections::HashMap<usize, &analysis::summary::CellRuns> =
        a.runs.iter().map(|r| (r.cell, r)).collect();
    for &i in cells.iter().take(TABLE_ROWS) {
        let runs = runs_of.get(&i).copied();
        let m = |name: &str| a.metric(i, name).map(|s| &s.stats);
        let center = |name: &str| m(name).map_or("-".into(), |s| fmt_num(s.center));
        let pair = |lo: &str, hi: &str| format!("{} / {}", center(lo), center(hi));
        table.add_row(vec![
            a.labels[i].clone(),
            runs.map_or(0, |r| r.runs).to_string(),
            runs.map_or(0, |r| r.degraded).to_string(),
            m("offered_rate").map_or("closed loop".into(), |s| fmt_num(s.center)),
            m("achieved_rate").map_or("-".into(), |s| {
                format!(
                    "{} [{}, {}]",
                    fmt_num(s.center),
                    fmt_num(s.ci_low),
                    fmt_num(s.ci_high)
                )
            }),
            center("output_tok_s"),
            pair("ttft_p50_ms", "ttft_p99_ms"),
            pair("e2e_p50_ms", "e2e_p99_ms"),
            m("error_rate").map_or("-".into(), |s| format!("{:.1}%", s.mean * 100.0)),
            m("dispatch_lag_p99_ms").map_or("-".into(), |s| format!("{:.3}", s.max)),
        ]);
    }
    table
}

fn analyze_tr(root: &Path, tr: &str) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, tr)?;
    let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
    let a = analysis::analyze(root, loaded).map_err(analysis_error)?;
    let written = analysis::write(root, &a).map_err(analysis_error)?;
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN);
    table.set_header(vec![
        "cell",
        "runs",
        "degraded",
        "decode tok/s (95% CI)",
        "TTFT p50 ms",
        "e2e mean ms",
        "efficiency",
        "contended",
        "$/1M tok",
    ]);
    let is_load = |i: usize| a.metric(i, "error_rate").is_some();
    let (load_cells, agent_cells): (Vec<usize>, Vec<usize>) =
        a.cells_in_order().into_iter().partition(|i| is_load(*i));
    // Looked up by cell through indexes: searching per cell made large tables quadratic.
    let runs_of: std::collections::HashMap<usize, &analysis::summary::CellRuns> =
        a.runs.iter().map(|r| (r.cell, r)).collect();
    let contention_of: std::collections::HashMap<usize, _> =
        a.contention.cells.iter().map(|c| (c.cell, c)).collect();
    let cost_of: std::collections::HashMap<usize, _> = a.cost.iter().map(|c| (c.cell, c)).collect();
    let mut more = 0;
    for (shown, i) in agent_cells.iter().copied().enumerate() {
        if shown == TABLE_ROWS {
            more = agent_cells.len() - shown;
            break;
        }
        let runs = runs_of.get(&i).copied();
        let m = |name: &str| a.metric(i, name);
        let decode = m("decode_tok_s").map_or("-".into(), |s| {
            format!(
                "{} [{}, {}]",
                fmt_num(s.stats.mean),
                fmt_num(s.stats.ci_low),
                fmt_num(s.stats.ci_high)
            )
        });
        let eff = m("parallel_efficiency")
            .map_or("-".into(), |s| format!("{:.1}%", s.stats.mean * 100.0));
        let contended = contention_of
            .get(&i)
            .map_or("-".into(), |c| format!("{}/{}", c.contended, c.agents));
        let usd = cost_of
            .get(&i)
            .and_then(|c| c.usd_per_1m)
            .map_or("-".into(), |u| format!("{u:.4}"));
        table.add_row(vec![
            a.labels[i].clone(),
            runs.map_or(0, |r| r.runs).to_string(),
            runs.map_or(0, |r| r.degraded).to_string(),
            decode,
            m("ttft_ms").map_or("-".into(), |s| fmt_num(s.stats.median)),
            m("e2e_ms").map_or("-".into(), |s| fmt_num(s.stats.mean)),
            eff,
            contended,
            usd,
        ]);
    }
    let mut out = format!("{}: {}\n", loaded.spec.id, loaded.spec.title);
    if !agent_cells.is_empty() {
        out.push_str(&format!("\n{table}\n"));
    }
    if more > 0 {
        out.push_str(&format!(
            "... and {more} more cells: every cell is in {}\n",
            crate::store::TrPaths::new(root, &loaded.spec.id)
                .data_dir
                .join("summary.csv")
                .display()
        ));
    }
    if !load_cells.is_empty() {
        out.push_str(&format!("\n{}\n", load_table(&a, &load_cells)));
        if load_cells.len() > TABLE_ROWS {
            out.push_str(&format!(
                "... and {} more load cells: every cell is in {}\n",
                load_cells.len() - TABLE_ROWS,
                crate::store::TrPaths::new(root, &loaded.spec.id)
                    .data_dir
                    .join("summary.csv")
                    .display()
            ));
        }
    }
    for c in &a.comparisons {
        let holm = c
            .p_holm
            .map_or(String::new(), |p| format!(", Holm p = {p:.4}"));
        out.push_str(&format!(
            "\nclaim `{}` ({}): A vs B {}{holm}",
            c.claim,
            c.metric,
            c.comparison.sentence()
        ));
        if let Some(pp) = c.delta_pp {
            out.push_str(&format!(", {pp:+.2} pp"));
        }
    }
    if !a.comparisons.is_empty() {
        out.push('\n');
    }
    for f in &a.fits {
        let x = |v: f64| analysis::fits::x_text(&f.against, v);
        let range = match (f.cells.first(), f.cells.last()) {
            (Some(lo), Some(hi)) => format!(" from {} to {}", x(lo.x), x(hi.x)),
            _ => String::new(),
        };
        out.push_str(&format!(
            "\nfit `{}`: {} against {} over {} runs of {} cells{range}: ",
            f.id,
            f.metric,
            f.against,
            f.runs(),
            f.cells.len()
        ));
        out.push_str(&match &f.law {
            Some(l) => format!(
                "exponent {:.3} [{:.3}, {:.3}], R² {:.3}",
                l.exponent, l.exponent_low, l.exponent_high, l.r_squared
            ),
            None => "too few runs to fit".into(),
        });
    }
    if !a.fits.is_empty() {
        out.push('\n');
    }
    for c in &a.claims {
        out.push_str(&format!(
            "\nclaim `{}` {}: {}",
            c.id,
            outcome_word(c),
            c.detail
        ));
    }
    if !a.claims.is_empty() {
        out.push('\n');
    }
    for w in &a.warnings {
        out.push_str(&format!("\nwarning: {w}"));
    }
    out.push_str("\n\nwrote:");
    for p in written {
        out.push_str(&format!(" {}", p.display()));
    }
    out.push('\n');
    print_out(&out);
    Ok(ExitCode::SUCCESS)
}

/// Parses `axis=value` selections; values are YAML so maps can be given inline.
fn parse_selection(
    items: &[String],
    which: &str,
) -> Result<indexmap::IndexMap<String, serde_json::Value>, Diagnostics> {
    items
        .iter()
        .map(|item| {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Diagnostics::from(
                    Diagnostic::new(format!("--{which} `{item}` is not axis=value"))
                        .help("write e.g. --a max_tokens=32 or --a 'scenario={kind: single}'"),
                )
            })?;
            let value: serde_json::Value = yaml_serde::from_str(v).map_err(|e| {
                Diagnostics::from(Diagnostic::new(format!(
                    "--{which} `{item}`: the value is not valid YAML: {e}"
                )))
            })?;
            Ok((k.trim().to_owned(), value))
        })
        .collect()
}

fn compare_tr(
    root: &Path,
    tr: &str,
    metric: &str,
    a: &[String],
    b: &[String],
) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, tr)?;
    let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
    let known: Vec<&str> = crate::spec::metrics::per_run().collect();
    if !known.contains(&metric) {
        let help = crate::diagnostic::did_you_mean(metric, known.iter().copied())
            .unwrap_or_else(|| format!("comparable metrics: {}", known.join(", ")));
        return Err(
            Diagnostic::new(format!("`{metric}` is not a per-run metric"))
                .help(help)
                .into(),
        );
    }
    let (sel_a, sel_b) = (parse_selection(a, "a")?, parse_selection(b, "b")?);
    for key in sel_a.keys().chain(sel_b.keys()) {
        if !loaded.matrix.axes.contains_key(key) {
            let help =
                crate::diagnostic::did_you_mean(key, loaded.matrix.axes.keys().map(String::as_str))
                    .unwrap_or_else(|| "select by the TR's matrix axes".into());
            return Err(
                Diagnostic::new(format!("`{key}` is not an axis of {}", loaded.spec.id))
                    .help(help)
                    .into(),
            );
        }
    }
    let journal = crate::store::TrPaths::new(root, &loaded.spec.id).runs();
    if !crate::record::journal::has_finished_runs(&journal) {
        return Err(analysis::no_runs(loaded, &journal, analysis::NO_FINISHED_RUNS).into());
    }
    let frames = analysis::frames_of(root, loaded).map_err(analysis_error)?;
    let (c, pp) = analysis::compare::compare_selections(&frames, metric, &sel_a, &sel_b)
        .map_err(|e| Diagnostics::from(Diagnostic::new(e.to_string())))?;
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    let mut out = format!("{} {metric}: A vs B {}\n", loaded.spec.id, c.sentence());
    out.push_str(&format!(
        "  A: n={} mean={}   B: n={} mean={}\n",
        c.n_a,
        fmt_num(c.mean_a),
        c.n_b,
        fmt_num(c.mean_b)
    ));
    out.push_str(&format!(
        "  ratio of means {:.4}; geometric ratio {} [95% CI {}, {}]; Welch t={} df={} p={}; Hedges' g={}\n",
        c.ratio_of_means,
        opt(c.ratio, 4),
        opt(c.ratio_ci_low, 4),
        opt(c.ratio_ci_high, 4),
        opt(c.welch_t, 3),
        opt(c.welch_df, 2),
        opt(c.p_value, 5),
        opt(c.hedges_g, 3)
    ));
    if let Some((u, p)) = c.mann_whitney {
        out.push_str(&format!("  Mann-Whitney U={u} p={p:.5}\n"));
    }
    if let Some(pp) = pp {
        out.push_str(&format!("  difference: {pp:+.2} percentage points\n"));
    }
    for w in &c.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    print_out(&out);
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime, Diagnostics> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Diagnostic::new(format!("cannot start the async runtime: {e}")).into())
}

/// Loads the registry and fails with the TR's own problems (not other files') if it has any.
fn load_one(root: &Path, tr: &str) -> Result<Registry, Diagnostics> {
    let (registry, problems) = Registry::load(root);
    let file = match registry.resolve(tr) {
        Ok(s) => Some(s.path.clone()),
        Err(not_found) => match not_found.file.clone() {
            Some(f) => Some(f),
            None => return Err(not_found.into()),
        },
    };
    let own: Vec<Diagnostic> = problems
        .0
        .into_iter()
        .filter(|d| d.file.is_some() && d.file == file)
        .collect();
    if own.is_empty() {
        Ok(registry)
    } else {
        Err(Diagnostics(own))
    }
}

fn show_plan(root: &Path, tr: &str, format: Format, all: bool) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, tr)?;
    let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
    let plan = plan::build(loaded);
    match format {
        Format::Json => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&plan).expect("plan serializes")
        )),
        Format::Table => print_out(&format!(
            "{}{}",
            plan_table(&loaded.spec, &plan, all),
            cluster::progress_text(root, &plan)
        )),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every workload parameter that shapes requests, in one line (axes of the same names set
/// them per cell instead), or nothing when the workload sends its prompts as written.
fn workload_line(w: &crate::spec::Workload) -> String {
    let mut parts = Vec::new();
    if let Some(l) = &w.input_tokens {
        parts.push(format!("input_tokens {}", compact_json(l)));
    }
    if let Some(l) = &w.output_tokens {
        parts.push(format!("output_tokens {}", compact_json(l)));
    }
    if let Some(p) = &w.prefix {
        parts.push(format!("prefix {} tokens in {} groups", p.tokens, p.groups));
    }
    if let Some(c) = &w.cache {
        parts.push(format!("cache {}", compact_json(c)));
    }
    if w.input_tokens.is_some() {
        parts.push(format!(
            "corpus {} (tokenized by each server's /tokenize)",
            w.corpus
                .as_deref()
                .unwrap_or(crate::workload::DEFAULT_CORPUS)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("workload: {}\n", parts.join(", "))
    }
}

fn compact_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('"', "")
}

/// Rows of a plan's or an analysis' table (`plan --all` shows every cell; the analysis has
/// every cell in summary.csv).
const TABLE_ROWS: usize = 50;

fn plan_table(spec: &Spec, plan: &plan::Plan, all: bool) -> String {
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN);
    let mut header = vec!["#".to_owned(), "cell".to_owned()];
    header.extend(plan.axes.iter().cloned());
    header.push("runs".into());
    table.set_header(header);
    // Counted in one pass: per cell, a scan of every run made a 100,000-cell table quadratic.
    let mut measured = vec![0usize; plan.cells.len()];
    for r in plan.runs.iter().filter(|r| !r.warmup) {
        measured[r.cell] += 1;
    }
    let shown = if all {
        plan.cells.len()
    } else {
        TABLE_ROWS.min(plan.cells.len())
    };
    for cell in &plan.cells[..shown] {
        let runs = measured[cell.index];
        let mut row = vec![(cell.index + 1).to_string(), cell.id.clone()];
        row.extend(cell.params.iter().map(|(k, v)| axis_label(k, v)));
        row.push(runs.to_string());
        table.add_row(row);
    }
    let warm = match plan.warmup_runs() {
        0 => String::new(),
        n => format!(" (+{n} warm-up runs)"),
    };
    let workload = spec.workload.as_ref().map_or(String::new(), workload_line);
    let more = match plan.cells.len() - shown {
        0 => String::new(),
        n => format!(
            "\n... and {n} more cells (`--all` shows every one, `--format json` the whole plan)"
        ),
    };
    format!(
        "{}: {}\norder: {}, repetitions: {}, warm-up per cell: {}\n{workload}\n{table}{more}\n\n{} cells x {} repetitions = {} measured runs{warm}\n",
        spec.id,
        spec.title,
        plan.order,
        plan.repetitions,
        plan.warmup,
        plan.cells.len(),
        plan.repetitions,
        plan.measured_runs(),
    )
}
