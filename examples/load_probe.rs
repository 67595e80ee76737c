//! Probe of the load engine (`runner::load`) for `scripts/bench-load`: one open-loop period at
//! a constant or Poisson rate against an OpenAI-compatible server (the pacer), printed as the
//! period's run-level figures in JSON: the engine alone, without a spec, journal or servers
//! to launch, so that scripts/bench-load measures exactly what the `load` scenario runs.
//!
//! Usage: load_probe URL constant|poisson RATE SECONDS TOKENS [WARMUP_SECONDS [RECORDS]]
//!
//! With WARMUP_SECONDS, a period at the same arrival and rate runs first on the same client
//! (connections opened, code paths warm), unmeasured. With RECORDS, the measured period's
//! requests are written there as JSON lines: first `{"origin_unix_ns": ...}`, the wall clock at
//! the period's origin (to within a few microseconds), then one `LoadRequest` a line, whose
//! offsets are from that origin, so that other clocks (the pacer's truth log) can be paired
//! with them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banterhearts::backend::{GenerationRequest, OpenAi};
use banterhearts::runner::load::{PeriodLimits, run_period, summarize};
use banterhearts::runner::measure::Target;
use banterhearts::schedule::{Arrival, Limit, OpenLoop, OpenLoopPacer, seed_for};
use banterhearts::spec::params::{Dialect, OpenAiServer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, arrival, rate, seconds, tokens, warmup, dump) = match args.as_slice() {
        [_, u, a, r, s, t, rest @ ..] if rest.len() <= 2 => {
            (u, a, r, s, t, rest.first(), rest.get(1))
        }
        _ => {
            eprintln!(
                "usage: load_probe URL constant|poisson RATE SECONDS TOKENS [WARMUP_SECONDS [RECORDS]]"
            );
            std::process::exit(2);
        }
    };
    let arrival = match arrival.as_str() {
        "constant" => Arrival::Constant,
        "poisson" => Arrival::Poisson,
        other => {
            eprintln!("unknown arrival `{other}`: constant or poisson");
            std::process::exit(2);
        }
    };
    let number = |s: &str| -> f64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("`{s}` is not a number");
            std::process::exit(2)
        })
    };
    let (rate, seconds, tokens) = (number(rate), number(seconds), number(tokens) as u32);
    let warmup = warmup.map_or(0.0, |w| number(w));
    let draw = |seconds: f64, label: &str| {
        let seed = seed_for(&format!("load-probe {arrival:?} {rate}{label}"));
        OpenLoop::draw(
            arrival,
            rate,
            Limit::Duration(Duration::from_secs_f64(seconds)),
            seed,
        )
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        })
    };
    let schedule = draw(seconds, "");
    let drawn = schedule.drawn_rate();
    let mut pacer = OpenLoopPacer::new(schedule);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client");
    let target = Target {
        server: url.trim_end_matches('/').to_owned(),
        request: GenerationRequest {
            prompt: "x".into(),
            max_tokens: tokens,
            ..GenerationRequest::default()
        },
    };
    let protocol = Arc::new(OpenAi {
        dialect: Dialect::Chat(OpenAiServer::LlamaServer),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let limits = PeriodLimits {
        max_concurrency: None,
        grace: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
    };
    let cpu = |who| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        u.ru_utime.tv_sec as f64
            + u.ru_utime.tv_usec as f64 / 1e6
            + u.ru_stime.tv_sec as f64
            + u.ru_stime.tv_usec as f64 / 1e6
    };
    if warmup > 0.0 {
        let mut pacer = OpenLoopPacer::new(draw(warmup, " warm-up"));
        runtime.block_on(run_period(
            &client,
            protocol.clone(),
            &target,
            &mut pacer,
            limits,
        ));
    }
    let cpu_before = cpu(libc::RUSAGE_SELF);
    // `run_period` puts its origin this lead (runner::load's LEAD) after it is called.
    let origin_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        + Duration::from_millis(2).as_nanos();
    let records = runtime.block_on(run_period(&client, protocol, &target, &mut pacer, limits));
    let cpu_s = cpu(libc::RUSAGE_SELF) - cpu_before;
    if let Some(path) = dump {
        let mut lines = serde_json::json!({ "origin_unix_ns": origin_unix_ns }).to_string() + "\n";
        for r in &records {
            lines += &serde_json::to_string(r).expect("a request record serializes");
            lines.push('\n');
        }
        std::fs::write(path, lines).unwrap_or_else(|e| {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1)
        });
    }
    let summary = summarize(&records, drawn);
    let mut out = serde_json::to_value(&summary).expect("a summary serializes");
    out["in_flight"] = serde_json::Value::Null;
    out["client_cpu_s"] = cpu_s.into();
    println!("{out}");
}
