//! A server's `/metrics` page (Prometheus text format) read into the few figures a load period
//! needs: running and waiting requests, KV-cache use, and the token and request counters.
//! llama-server (`--metrics`) and vLLM name them differently; both are read, whichever the page
//! has. Parsing is the `openmetrics-parser` crate's; this module only picks the families.

use openmetrics_parser::PrometheusValue;

use crate::record::ServerCounters;

/// How several series of one family (vLLM labels them per engine and model) become one value.
#[derive(Clone, Copy)]
enum Combine {
    Sum,
    Max,
}

/// Which figure a family feeds.
#[derive(Clone, Copy)]
enum Field {
    Running,
    Waiting,
    KvCacheUsage,
    /// llama-server counts computed prompt tokens and cached ones apart; their sum is the
    /// prompt tokens handled.
    PromptComputed,
    PromptTotal,
    PromptCached,
    Output,
    RequestsFinished,
}

/// The families read, by server. A name that appears on no page is simply absent.
const FAMILIES: &[(&str, Field, Combine)] = &[
    // llama-server (tools/server, `--metrics`)
    ("llamacpp:requests_processing", Field::Running, Combine::Sum),
    ("llamacpp:requests_deferred", Field::Waiting, Combine::Sum),
    (
        "llamacpp:kv_cache_usage_ratio",
        Field::KvCacheUsage,
        Combine::Max,
    ),
    (
        "llamacpp:prompt_tokens_total",
        Field::PromptComputed,
        Combine::Sum,
    ),
    (
        "llamacpp:prompt_tokens_cached_total",
        Field::PromptCached,
        Combine::Sum,
    ),
    (
        "llamacpp:tokens_predicted_total",
        Field::Output,
        Combine::Sum,
    ),
    // vLLM (v1 engine; `gpu_cache_usage_perc` before 0.10)
    ("vllm:num_requests_running", Field::Running, Combine::Sum),
    ("vllm:num_requests_waiting", Field::Waiting, Combine::Sum),
    (
        "vllm:kv_cache_usage_perc",
        Field::KvCacheUsage,
        Combine::Max,
    ),
    (
        "vllm:gpu_cache_usage_perc",
        Field::KvCacheUsage,
        Combine::Max,
    ),
    ("vllm:prompt_tokens_total", Field::PromptTotal, Combine::Sum),
    (
        "vllm:prefix_cache_hits_total",
        Field::PromptCached,
        Combine::Sum,
    ),
    ("vllm:generation_tokens_total", Field::Output, Combine::Sum),
    (
        "vllm:request_success_total",
        Field::RequestsFinished,
        Combine::Sum,
    ),
];

fn number(value: &PrometheusValue) -> Option<f64> {
    match value {
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => Some(n.as_f64()),
        PrometheusValue::Counter(c) => Some(c.value.as_f64()),
        _ => None,
    }
}

/// Whether a page's generated-token counter grows as tokens are generated (vLLM adds each
/// engine step's tokens), rather than when a request finishes (llama-server): then a request in
/// flight at a scrape is counted partly on each side of it.
pub fn counts_output_per_step(page: &str) -> bool {
    page.contains("vllm:generation_tokens")
}

/// Reads one `/metrics` page. An error names what could not be read; a page with none of the
/// families gives empty counters (the caller says that the server exposes nothing usable).
pub fn parse(page: &str) -> Result<ServerCounters, String> {
    let exposition = openmetrics_parser::prometheus::parse_prometheus(page)
        .map_err(|e| format!("not Prometheus text: {e}"))?;
    let mut out = ServerCounters::default();
    let mut computed = None;
    for (name, field, combine) in FAMILIES {
        let Some(family) = exposition.families.get(*name) else {
            continue;
        };
        let values: Vec<f64> = family
            .iter_samples()
            .filter_map(|s| number(&s.value))
            .collect();
        if values.is_empty() {
            continue;
        }
        let v = match combine {
            Combine::Sum => values.iter().sum(),
            Combine::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        };
        let slot = match field {
            Field::Running => &mut out.running,
            Field::Waiting => &mut out.waiting,
            Field::KvCacheUsage => &mut out.kv_cache_usage,
            Field::PromptComputed => &mut computed,
            Field::PromptTotal => &mut out.prompt_tokens,
            Field::PromptCached => &mut out.cached_prompt_tokens,
            Field::Output => &mut out.output_tokens,
            Field::RequestsFinished => &mut out.requests_finished,
        };
        *slot = Some(v);
    }
    if let Some(c) = computed {
        out.prompt_tokens = Some(c + out.cached_prompt_tokens.unwrap_or(0.0));
    }
    Ok(out)
}

/// Whether a page gave any figure at all.
pub fn is_empty(c: &ServerCounters) -> bool {
    *c == ServerCounters::default()
}

/// Several servers' scrapes as one: counts summed, the KV-cache use the largest.
pub fn combine(parts: &[ServerCounters]) -> ServerCounters {
    let sum = |f: fn(&ServerCounters) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = parts.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    ServerCounters {
        running: sum(|c| c.running),
        waiting: sum(|c| c.waiting),
        kv_cache_usage: parts
            .iter()
            .filter_map(|c| c.kv_cache_usage)
            .reduce(f64::max),
        prompt_tokens: sum(|c| c.prompt_tokens),
        cached_prompt_tokens: sum(|c| c.cached_prompt_tokens),
        output_tokens: sum(|c| c.output_tokens),
        requests_finished: sum(|c| c.requests_finished),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A page as this project's llama-server build serves it after one request of 31 prompt
    /// tokens and 16 generated ones.
    #[test]
    fn llama_server_metrics() {
        let c = parse(&fixture("llama-server-metrics.txt")).unwrap();
        assert_eq!(c.output_tokens, Some(16.0));
        // Computed plus cached: 31 + 0.
        assert_eq!(c.prompt_tokens, Some(31.0));
        assert_eq!(c.cached_prompt_tokens, Some(0.0));
        assert_eq!(c.running, Some(0.0));
        assert_eq!(c.waiting, Some(0.0));
        // This build no longer exports KV-cache use.
        assert_eq!(c.kv_cache_usage, None);
    }

    /// A transcript in vLLM's format (prometheus_client's text output: `_total` counters
    /// with their `_created` gauges, per-engine labels, histograms), two engines summed.
    #[test]
    fn vllm_metrics_transcript() {
        let page = fixture("vllm-metrics-transcript.txt");
        assert!(counts_output_per_step(&page));
        assert!(!counts_output_per_step(&fixture(
            "llama-server-metrics.txt"
        )));
        let c = parse(&page).unwrap();
        assert_eq!(c.running, Some(3.0));
        assert_eq!(c.waiting, Some(5.0));
        assert_eq!(c.kv_cache_usage, Some(0.42));
        assert_eq!(c.prompt_tokens, Some(12_000.0 + 3_000.0));
        assert_eq!(c.cached_prompt_tokens, Some(4_096.0));
        assert_eq!(c.output_tokens, Some(2_048.0 + 512.0));
        assert_eq!(c.requests_finished, Some(60.0 + 4.0 + 16.0));
    }

    #[test]
    fn a_page_without_the_families_is_empty_and_garbage_is_an_error() {
        let c = parse("# TYPE other gauge\nother 3\n").unwrap();
        assert!(is_empty(&c));
        assert!(parse("<html>not metrics</html>").is_err());
    }

    #[test]
    fn servers_combine_by_sum_and_cache_by_max() {
        let a = ServerCounters {
            running: Some(2.0),
            kv_cache_usage: Some(0.5),
            output_tokens: Some(10.0),
            ..Default::default()
        };
        let b = ServerCounters {
            running: Some(1.0),
            kv_cache_usage: Some(0.75),
            ..Default::default()
        };
        let c = combine(&[a, b]);
        assert_eq!(c.running, Some(3.0));
        assert_eq!(c.kv_cache_usage, Some(0.75));
        assert_eq!(c.output_tokens, Some(10.0));
        assert_eq!(c.waiting, None);
    }
}
