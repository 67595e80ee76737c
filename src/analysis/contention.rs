//! Contention flags: a concurrent agent is contended when its decode throughput is more than
//! `decode_drop` below, or its TTFT more than `ttft_factor` times, the single-agent median of
//! the same configuration (same cell parameters apart from `scenario`). They need every
//! single-agent run of the TR, so they are derived from the journal rather than stored in it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::runner::journal::RunRecord;
use crate::runner::measure::RunStatus;
use crate::spec::ContentionThresholds;
use crate::stats::percentile;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentContention {
    pub run_id: String,
    pub agent: u32,
    /// This agent's decode_tok_s / single-agent median.
    pub decode_ratio: Option<f64>,
    /// This agent's TTFT / single-agent median.
    pub ttft_ratio: Option<f64>,
    pub contended: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContentionReport {
    pub agents: Vec<AgentContention>,
    /// Concurrent agents whose configuration has no single-agent runs to compare with.
    pub without_baseline: usize,
}

impl ContentionReport {
    pub fn contended(&self) -> usize {
        self.agents.iter().filter(|a| a.contended).count()
    }
}

/// The configuration key of a cell: its parameters without `scenario`, canonical JSON.
fn config_key(params: &Map<String, Value>) -> String {
    let rest: BTreeMap<&String, &Value> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "scenario")
        .collect();
    serde_json::to_string(&rest).unwrap_or_default()
}

fn is_single(record: &RunRecord) -> bool {
    record.agents.len() == 1
        && record
            .params
            .get("scenario")
            .and_then(|s| s.get("kind"))
            .is_none_or(|k| k == "single")
}

/// Flags every agent of every measured, concurrent, ok run against its configuration's
/// single-agent medians (measured ok runs only).
pub fn flag(records: &[RunRecord], thresholds: ContentionThresholds) -> ContentionReport {
    let usable = |r: &&RunRecord| !r.warmup && r.status == RunStatus::Ok;
    let mut baselines: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in records.iter().filter(usable).filter(|r| is_single(r)) {
        let entry = baselines.entry(config_key(&r.params)).or_default();
        entry.0.extend(r.agents[0].decode_tok_s);
        entry.1.extend(r.agents[0].ttft_ms);
    }
    let medians: BTreeMap<String, (Option<f64>, Option<f64>)> = baselines
        .into_iter()
        .map(|(k, (decode, ttft))| (k, (percentile(&decode, 50.0), percentile(&ttft, 50.0))))
        .collect();
    let mut report = ContentionReport::default();
    for r in records.iter().filter(usable).filter(|r| r.agents.len() > 1) {
        let Some((decode_median, ttft_median)) = medians.get(&config_key(&r.params)) else {
            report.without_baseline += r.agents.len();
            continue;
        };
        for a in &r.agents {
            let decode_ratio = a.decode_tok_s.zip(*decode_median).map(|(v, m)| v / m);
            let ttft_ratio = a.ttft_ms.zip(*ttft_median).map(|(v, m)| v / m);
            let contended = decode_ratio.is_some_and(|d| d < 1.0 - thresholds.decode_drop)
                || ttft_ratio.is_some_and(|t| t > thresholds.ttft_factor);
            report.agents.push(AgentContention {
                run_id: r.run_id.clone(),
                agent: a.agent,
                decode_ratio,
                ttft_ratio,
                contended,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(run_id: &str, scenario: Value, agents: &[(f64, f64)]) -> RunRecord {
        let agents: Vec<Value> = agents
            .iter()
            .enumerate()
            .map(|(i, (tok_s, ttft))| json!({"agent": i, "server": "s", "status": "ok", "sent_offset_ms": 0.0, "ttft_ms": ttft, "e2e_ms": 100.0, "chunks": 1, "output_tokens": 10, "prompt_tokens": 1, "cache_n": null, "load_ms": null, "decode_tok_s": tok_s, "server_decode_tok_s": null, "server_prefill_tok_s": null, "server_prompt_ms": null, "server_decode_ms": null, "prefill_overhead_ms": null, "decode_overhead_ms": null, "itl_p50_ms": null, "itl_p95_ms": null, "itl_p99_ms": null, "text": ""}))
            .collect();
        serde_json::from_value(json!({
            "tr": "TR1", "run_id": run_id, "cell": 0, "cell_id": "c", "params": {"temperature": 0.8, "scenario": scenario},
            "repetition": 0, "warmup": false, "status": "ok", "started_unix_ms": 0, "session": 1, "agents": agents,
            "harness_lag": {"samples": 0}, "client_rss_mb": null
        }))
        .unwrap()
    }

    #[test]
    fn flags_agents_against_the_single_agent_median_of_the_same_configuration() {
        let single = json!({"kind": "single"});
        let pair = json!({"kind": "concurrent", "agents": 2});
        let records = vec![
            record("s1", single.clone(), &[(100.0, 20.0)]),
            record("s2", single.clone(), &[(90.0, 30.0)]),
            record("s3", single, &[(110.0, 25.0)]),
            // Median single: 100 tok/s, 25 ms. Agent 1 decodes 11% slower; agent 0 is fine.
            record("c1", pair.clone(), &[(95.0, 40.0), (89.0, 30.0)]),
            // TTFT 2.4x the median: contended although decode is fine.
            record("c2", pair, &[(100.0, 60.0), (100.0, 50.0)]),
        ];
        let report = flag(&records, ContentionThresholds::default());
        let flags: Vec<(&str, u32, bool)> = report
            .agents
            .iter()
            .map(|a| (a.run_id.as_str(), a.agent, a.contended))
            .collect();
        assert_eq!(
            flags,
            vec![
                ("c1", 0, false),
                ("c1", 1, true),
                ("c2", 0, true),
                ("c2", 1, false)
            ]
        );
        assert_eq!(report.contended(), 2);
        assert!((report.agents[1].decode_ratio.unwrap() - 0.89).abs() < 1e-12);
        assert_eq!(report.without_baseline, 0);
    }

    #[test]
    fn configurations_without_single_runs_are_counted_not_flagged() {
        let records = vec![record(
            "c1",
            json!({"kind": "concurrent", "agents": 2}),
            &[(1.0, 1000.0), (1.0, 1000.0)],
        )];
        let report = flag(&records, ContentionThresholds::default());
        assert!(report.agents.is_empty());
        assert_eq!(report.without_baseline, 2);
    }
}
