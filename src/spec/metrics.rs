//! The metric names, defined once: the frames' columns, the names `compare` accepts and the
//! names a claim may use. Definitions: docs/metrics.md.

/// Request-level: one value per agent per run.
pub const AGENT_METRICS: &[&str] = &[
    "ttft_ms",
    "e2e_ms",
    "output_tokens",
    "prompt_tokens",
    "decode_tok_s",
    "throughput_tok_s",
    "server_decode_tok_s",
    "server_prefill_tok_s",
    "load_ms",
    "cache_n",
    "itl_p50_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "prefill_overhead_ms",
    "decode_overhead_ms",
    "startup_ms",
    "process_peak_rss_mb",
    "process_cpu_s",
    "quality_score",
    "ttft_answer_ms",
    "reasoning_tokens",
    "ttft_cold_ms",
    "ttft_warm_ms",
    "output_reached",
    "cached_share",
];

/// Run-level: one value per run (group, harness and server telemetry).
pub const RUN_METRICS: &[&str] = &[
    "aggregate_tok_s",
    "wall_ms",
    "speedup",
    "parallel_efficiency",
    "harness_lag_p99_ms",
    "harness_lag_max_ms",
    "client_rss_mb",
    "server_rss_mb",
    "server_cpu_s",
    "gpu_power_w",
    "background_share",
    // Load runs (`scenario: {kind: load}`): the period's run-level figures (docs/metrics.md).
    "offered_rate",
    "achieved_rate",
    "rate_shortfall",
    "request_throughput",
    "output_tok_s",
    "error_rate",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "ttft_sched_p50_ms",
    "ttft_sched_p99_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p95_ms",
    "tpot_p99_ms",
    "itl_run_p50_ms",
    "itl_run_p99_ms",
    "e2e_p50_ms",
    "e2e_p90_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "e2e_sched_p50_ms",
    "e2e_sched_p99_ms",
    "dispatch_lag_p50_ms",
    "dispatch_lag_p99_ms",
    "dispatch_lag_max_ms",
    "in_flight_max",
    "cache_hit_rate",
    "reached_output_share",
    // The servers' own account (`/metrics`) over the measured period: their token counts
    // against the client's (server / client - 1), and their queue, running requests and KV
    // cache use.
    "server_output_token_diff",
    "server_prompt_token_diff",
    "server_queue_mean",
    "server_queue_max",
    "server_running_mean",
    "server_kv_cache_max",
    // Against the spec's `slo`, computed by the analysis from the stored requests.
    "goodput",
    "slo_share",
];

/// Derived per cell by the analysis.
pub const DERIVED_METRICS: &[&str] = &[
    "contention_rate",
    "scaling_efficiency",
    "degraded_rate",
    "usd_per_1m_tokens",
    "spot_usd_per_1m_tokens",
    "kwh_per_1m_tokens",
    "gco2e_per_1m_tokens",
    "tokens_per_kwh",
];

/// Figures of a rate sweep (the load cells that differ only in `rate`), found by the analysis
/// with a bootstrap interval over each rate's runs; a claim selects one sweep.
pub const SWEEP_METRICS: &[&str] = &["knee_rate", "max_rate_at_slo"];

/// The axes a sweep runs along: the offered rate of an open loop, or the users of a closed
/// one (whose offered load grows with them). A cell with both is on the rate's sweep.
pub const SWEEP_AXES: &[&str] = &["rate", "concurrency"];

pub fn is_sweep(name: &str) -> bool {
    SWEEP_METRICS.contains(&name)
}

/// Metrics with a value per run, which can be compared between selections of runs.
pub fn per_run() -> impl Iterator<Item = &'static str> {
    AGENT_METRICS.iter().chain(RUN_METRICS).copied()
}

pub fn all() -> impl Iterator<Item = &'static str> {
    per_run()
        .chain(DERIVED_METRICS.iter().copied())
        .chain(SWEEP_METRICS.iter().copied())
}

pub fn is_known(name: &str) -> bool {
    all().any(|m| m == name)
}

/// The scale a metric's interval is taken on (`stats::mean_interval`): fractions in [0, 1] on
/// the logit scale, quantities that can be negative (differences between two clocks) on the
/// linear one, and everything else, which is never negative, on the log scale (scaling
/// efficiency among them: N agents can beat N lone ones, so it is not bounded by 1).
pub fn scale(name: &str) -> crate::stats::Scale {
    use crate::stats::Scale;
    match name {
        "parallel_efficiency"
        | "quality_score"
        | "contention_rate"
        | "degraded_rate"
        | "background_share"
        | "error_rate"
        | "cache_hit_rate"
        | "reached_output_share"
        | "output_reached"
        | "cached_share"
        | "server_kv_cache_max"
        | "slo_share" => Scale::Logit,
        // Differences that can be zero or negative: a schedule kept exactly has no lag, and
        // a client can send faster than offered.
        "prefill_overhead_ms"
        | "decode_overhead_ms"
        | "rate_shortfall"
        | "dispatch_lag_p50_ms"
        | "dispatch_lag_p99_ms"
        | "dispatch_lag_max_ms"
        // The servers' counts against the client's: zero when they agree. An idle queue is
        // empty.
        | "server_output_token_diff"
        | "server_prompt_token_diff"
        | "server_queue_mean"
        | "server_queue_max"
        | "server_running_mean" => Scale::Linear,
        _ => Scale::Log,
    }
}
