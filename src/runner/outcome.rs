//! What a finished run becomes: its record's load part, and its line in the progress output.

use super::load;
use crate::record::{RunRecord, RunStatus};

pub(super) fn summary_line(record: &RunRecord, label: &str) -> (String, String) {
    let kind = if record.warmup { "warm-up" } else { "run" };
    let head = format!(
        "{kind} {} rep {} [{label}]",
        record.run_id, record.repetition
    );
    match record.status {
        RunStatus::Degraded => (
            format!(
                "{head} DEGRADED: {}",
                record.reason.as_deref().unwrap_or("?")
            ),
            "degraded".into(),
        ),
        RunStatus::Ok if record.load.is_some() => {
            let s = &record.load.as_ref().expect("a load run").summary;
            let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
            let short = format!("{} req/s", f(s.achieved_rate));
            (
                format!(
                    "{head} ok  {} requests, {} achieved {}/s, ttft p50 {} p99 {} ms, errors {:.1}%, lag p99 {} ms",
                    s.requests,
                    s.offered_rate
                        .map_or("closed loop,".to_owned(), |r| format!("offered {r:.2}/s")),
                    f(s.achieved_rate),
                    f(s.ttft_ms.p50),
                    f(s.ttft_ms.p99),
                    s.error_rate * 100.0,
                    f(s.dispatch_lag_p99_ms)
                ),
                short,
            )
        }
        RunStatus::Ok => {
            let tok_s: Vec<String> = record
                .agents
                .iter()
                .filter_map(|a| a.decode_tok_s)
                .map(|t| format!("{t:.1}"))
                .collect();
            let ttft: Vec<String> = record
                .agents
                .iter()
                .filter_map(|a| a.ttft_ms)
                .map(|t| format!("{t:.0}"))
                .collect();
            let eff = record
                .group
                .as_ref()
                .map(|g| format!("  efficiency {:.1}%", g.parallel_efficiency * 100.0))
                .unwrap_or_default();
            let short = format!("{} tok/s", tok_s.join("+"));
            (
                format!("{head} ok  ttft {} ms  {short}{eff}", ttft.join("/")),
                short,
            )
        }
    }
}

/// What one run measured: its agents (and their group), or a load period's requests.
pub(super) enum Measured {
    Agents(
        (
            Vec<crate::record::AgentRun>,
            Option<crate::record::GroupStats>,
        ),
    ),
    Load(
        Vec<crate::record::LoadRequest>,
        crate::spec::load::LoadShape,
        load::Period,
        Option<Box<crate::record::ServerMetrics>>,
    ),
}

/// The record of a load period: how it was paced, where its requests are, what it achieved.
pub(super) fn load_run(
    shape: &crate::spec::load::LoadShape,
    period: &load::Period,
    requests: &[crate::record::LoadRequest],
    run_id: &str,
    requests_sha256: String,
) -> crate::record::LoadRun {
    use crate::spec::load::Pattern;
    let (pattern, arrival, rate, burstiness, users) = match shape.pattern {
        Pattern::Open {
            arrival,
            rate,
            burstiness,
        } => (
            "open",
            Some(crate::spec::load::arrival_name(arrival).to_owned()),
            Some(rate),
            burstiness,
            None,
        ),
        Pattern::Closed { users } => ("closed", None, None, None, Some(users)),
        Pattern::Trace { .. } => ("trace", None, None, None, None),
    };
    crate::record::LoadRun {
        pattern: pattern.into(),
        arrival,
        rate,
        burstiness,
        users,
        max_concurrency: shape.max_concurrency,
        seed: period.seed,
        warmup_s: shape.warmup_s,
        warmup_requests: requests.iter().filter(|r| r.warmup).count() as u64,
        requests_file: format!("requests/{run_id}.jsonl"),
        requests_sha256,
        summary: load::summarize(requests, period.offered_rate),
        server_metrics: None,
    }
}
