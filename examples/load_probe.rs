//! Probe of the load engine (`runner::load`) for `scripts/bench-load`: one open-loop period at
//! a constant or Poisson rate against an OpenAI-compatible server (the pacer), printed as the
//! period's run-level figures in JSON. A measuring tool for the engine while the `load`
//! scenario that will drive it from a spec is being built.
//!
//! Usage: load_probe URL constant|poisson RATE SECONDS TOKENS

use std::sync::Arc;
use std::time::Duration;

use banterhearts::backend::{GenerationRequest, OpenAi};
use banterhearts::runner::load::{PeriodLimits, run_period, summarize};
use banterhearts::runner::measure::Target;
use banterhearts::schedule::{Arrival, Limit, OpenLoop, OpenLoopPacer, seed_for};
use banterhearts::spec::params::{Dialect, OpenAiServer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, arrival, rate, seconds, tokens] = args.as_slice() else {
        eprintln!("usage: load_probe URL constant|poisson RATE SECONDS TOKENS");
        std::process::exit(2);
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
    let seed = seed_for(&format!("load-probe {arrival:?} {rate}"));
    let schedule = OpenLoop::draw(
        arrival,
        rate,
        Limit::Duration(Duration::from_secs_f64(seconds)),
        seed,
    )
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
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
    let cpu_before = cpu(libc::RUSAGE_SELF);
    let records = runtime.block_on(run_period(&client, protocol, &target, &mut pacer, limits));
    let cpu_s = cpu(libc::RUSAGE_SELF) - cpu_before;
    let summary = summarize(&records, drawn);
    let mut out = serde_json::to_value(&summary).expect("a summary serializes");
    out["in_flight"] = serde_json::Value::Null;
    out["client_cpu_s"] = cpu_s.into();
    println!("{out}");
}
