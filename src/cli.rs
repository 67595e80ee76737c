//! Command-line interface: argument parsing and output formatting only; the work happens in
//! the library modules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan;
use crate::registry::{Registry, experiments_dir};
use crate::runner;
use crate::spec::{self, Spec, matrix::display_value};

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
        /// Spec files to check (default: all of experiments/).
        specs: Vec<PathBuf>,
    },
    /// Show the cells and runs a TR expands to.
    Plan {
        /// TR id (TR124) or spec file.
        tr: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a TR's plan against its servers; resumes where an earlier run stopped.
    Run {
        /// TR id (TR124) or spec file.
        tr: String,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
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
    },
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
        Command::Plan { tr, format } => show_plan(&cli.root, tr, *format),
        Command::Run { tr, quiet } => run_tr(&cli.root, tr, *quiet),
        Command::Pacer {
            host,
            port,
            ttft_ms,
            itl_ms,
            tokens,
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
            };
            runtime
                .block_on(crate::pacer::serve(host, *port, schedule))
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
                    Ok(s) => checked.push(s.spec.id),
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
    Ok(ExitCode::SUCCESS)
}

fn run_tr(root: &Path, tr: &str, quiet: bool) -> Result<ExitCode, Diagnostics> {
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
    let options = runner::RunOptions { quiet };
    let summary = match runtime.block_on(runner::run(root, loaded, &options)) {
        Ok(s) => s,
        Err(runner::RunError::Input(d)) => return Err(d),
        Err(e) => {
            return Err(Diagnostic::new(e.to_string())
                .help("nothing recorded so far was lost; fix the cause and run again to resume")
                .into());
        }
    };
    let id = &loaded.spec.id;
    if summary.interrupted {
        eprintln!(
            "interrupted: {} run(s) recorded in this session, {} of {} in total; the run in flight was dropped.\nrun `banterhearts run {id}` again to resume.",
            summary.recorded,
            summary.already_recorded + summary.recorded,
            summary.planned
        );
        return Ok(ExitCode::from(130));
    }
    if summary.recorded > 0 && !quiet {
        eprintln!(
            "{id}: recorded {} run(s) ({} degraded) in {}",
            summary.recorded,
            summary.degraded,
            crate::store::TrPaths::new(root, id).runs().display()
        );
    }
    let c = &summary.contention;
    if !quiet && (!c.agents.is_empty() || c.without_baseline > 0) {
        let t = loaded.spec.contention.unwrap_or_default();
        eprintln!(
            "contention: {} of {} concurrent agents flagged (decode more than {:.0}% below, or TTFT more than {}x, the single-agent median of the same configuration)",
            c.contended(),
            c.agents.len(),
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

fn show_plan(root: &Path, tr: &str, format: Format) -> Result<ExitCode, Diagnostics> {
    let registry = load_one(root, tr)?;
    let loaded = registry.resolve(tr).map_err(Diagnostics::from)?;
    let plan = plan::build(loaded);
    match format {
        Format::Json => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&plan).expect("plan serializes")
        )),
        Format::Table => print_out(&plan_table(&loaded.spec, &plan)),
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_table(spec: &Spec, plan: &plan::Plan) -> String {
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN);
    let mut header = vec!["#".to_owned(), "cell".to_owned()];
    header.extend(plan.axes.iter().cloned());
    header.push("runs".into());
    table.set_header(header);
    for cell in &plan.cells {
        let runs = plan
            .runs
            .iter()
            .filter(|r| r.cell == cell.index && !r.warmup)
            .count();
        let mut row = vec![(cell.index + 1).to_string(), cell.id.clone()];
        row.extend(cell.params.values().map(display_value));
        row.push(runs.to_string());
        table.add_row(row);
    }
    let warm = match plan.warmup_runs() {
        0 => String::new(),
        n => format!(" (+{n} warm-up runs)"),
    };
    format!(
        "{}: {}\norder: {}, repetitions: {}, warm-up per cell: {}\n\n{table}\n\n{} cells x {} repetitions = {} measured runs{warm}\n",
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
