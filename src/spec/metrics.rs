//! Names of the metrics a claim can refer to. Definitions: docs/metrics.md.

/// Recorded for every run.
pub const RUN_METRICS: &[&str] = &[
    "ttft_ms",
    "e2e_ms",
    "output_tokens",
    "prompt_tokens",
    "decode_tok_s",
    "throughput_tok_s",
    "prefill_overhead_ms",
    "decode_overhead_ms",
    "server_decode_tok_s",
    "server_prefill_tok_s",
    "load_ms",
    "cache_n",
    "itl_p50_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "harness_lag_p99_ms",
    "harness_lag_max_ms",
    "client_rss_mb",
    "server_rss_mb",
    "server_cpu_s",
    "gpu_power_w",
];

/// Recorded once per concurrent group.
pub const GROUP_METRICS: &[&str] = &[
    "wall_ms",
    "speedup",
    "parallel_efficiency",
    "aggregate_tok_s",
    "contention_rate",
];

/// Derived per cell by the analysis.
pub const DERIVED_METRICS: &[&str] = &[
    "degraded_rate",
    "usd_per_1m_tokens",
    "spot_usd_per_1m_tokens",
    "kwh_per_1m_tokens",
    "gco2e_per_1m_tokens",
    "tokens_per_kwh",
];

pub fn all() -> impl Iterator<Item = &'static str> {
    RUN_METRICS
        .iter()
        .chain(GROUP_METRICS)
        .chain(DERIVED_METRICS)
        .copied()
}

pub fn is_known(name: &str) -> bool {
    all().any(|m| m == name)
}
