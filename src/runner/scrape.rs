//! The servers' own account of a load period: their `/metrics` scraped at a fixed interval
//! from the period's start, once more just before the warm-up ends, and once after the last
//! request finished or was cancelled. The counters' differences between those two last
//! scrapes are the measured period as the servers saw it (never counts since the server
//! started, never the warm-up), reconciled with what the client counted over the same window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backend::metrics;
use crate::record::{
    LoadRequest, RunStatus, ServerCounters, ServerMetrics, ServerMetricsSummary, ServerScrape,
};

/// How long one scrape may take before it counts as failed.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long before the end of the warm-up the window's first scrape is sent. The measured
/// schedule's first request is due exactly then; a scrape sent before it is answered before
/// the server reads that request (it handles its tasks in order), so that request falls on
/// one side of the boundary for both the server and the client.
pub const MARK_LEAD: Duration = Duration::from_millis(20);

/// How near a boundary scrape's answer a client event may be and still be on either side of
/// it for the server: a token's arrival and a scrape's answer are timestamped by different
/// tasks, which a busy machine can run tens of milliseconds apart, in either order.
pub const BOUNDARY_GUARD: Duration = Duration::from_millis(25);

/// Default scrape interval when a backend names none.
pub const DEFAULT_INTERVAL_MS: f64 = 1000.0;

/// The `/metrics` URLs of the servers a period sends to, and the interval, if the backend
/// scrapes: not Ollama (it has no such page), not with `scrape_ms: 0`.
pub fn scrape_urls(
    backend: &crate::spec::Backend,
    targets: &[super::measure::Target],
) -> Option<(Vec<String>, Duration)> {
    if !scrapes(backend) {
        return None;
    }
    let mut urls: Vec<String> = Vec::new();
    for t in targets {
        let url = format!("{}/metrics", t.server.trim_end_matches('/'));
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    let ms = backend.scrape_ms.unwrap_or(DEFAULT_INTERVAL_MS);
    (!urls.is_empty()).then(|| (urls, Duration::from_secs_f64(ms / 1000.0)))
}

/// Whether a backend's servers are scraped during load runs: by default llama-servers (kind
/// llama-cpp, launched ones, `server: llama-server`) and vLLM, which serve `/metrics`; any other
/// OpenAI-compatible endpoint only when the spec asks with `scrape_ms`; never Ollama.
pub fn scrapes(backend: &crate::spec::Backend) -> bool {
    use crate::spec::BackendKind;
    use crate::spec::params::OpenAiServer;
    if backend.scrape_ms == Some(0.0) {
        return false;
    }
    match backend.kind {
        BackendKind::Ollama => false,
        BackendKind::LlamaCpp => true,
        _ if backend.launch.is_some() => true,
        _ => {
            matches!(
                backend.server,
                Some(OpenAiServer::Vllm | OpenAiServer::LlamaServer)
            ) || backend.scrape_ms.is_some()
        }
    }
}

struct Collected {
    scrapes: Vec<(Instant, ServerCounters)>,
    /// Some server counts generated tokens step by step (vLLM), not at each request's end.
    per_step: bool,
    failed: u32,
    error: Option<String>,
}

/// A scrape running beside a period. Dropped without `finish` (the run was interrupted), it
/// stops its task.
pub struct Scraper {
    stop: Arc<Notify>,
    task: Option<tokio::task::JoinHandle<Collected>>,
    urls: Vec<String>,
    interval: Duration,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One round: every server's page, read and combined (and whether one counts generated
/// tokens step by step); the time is when the last answer arrived. A server reads its counters
/// for a scrape between batches, after sending the tokens of the batch it was running: a token
/// the client received before the answer was counted before the scrape, and one received after
/// it was counted after. (Timed at the round's midpoint instead, a scrape that waited for a
/// busy server's batch split that batch's prompts between the two sides.)
async fn scrape_round(
    client: &reqwest::Client,
    urls: &[String],
) -> (Instant, Result<(ServerCounters, bool), String>) {
    let pages = futures_util::future::join_all(urls.iter().map(|url| async move {
        let response = crate::backend::send_repeatable(|| client.get(url).timeout(SCRAPE_TIMEOUT))
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{url}: {e}"))?;
        let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
        let counters = metrics::parse(&text).map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>((counters, metrics::counts_output_per_step(&text)))
    }))
    .await;
    let answered = Instant::now();
    let parts: Result<Vec<(ServerCounters, bool)>, String> = pages.into_iter().collect();
    (
        answered,
        parts.map(|p| {
            let counters: Vec<ServerCounters> = p.iter().map(|(c, _)| *c).collect();
            (metrics::combine(&counters), p.iter().any(|(_, s)| *s))
        }),
    )
}

impl Scraper {
    /// Starts scraping `urls` (each a `/metrics` URL) every `interval` from `origin`, and at
    /// `origin + warmup`. `origin` is when the period's schedule starts; it is awaited, since
    /// the period sets it when it begins.
    pub fn start(
        client: reqwest::Client,
        urls: Vec<String>,
        interval: Duration,
        live: Arc<super::load::Live>,
        warmup: Duration,
    ) -> Scraper {
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let scrape_urls = urls.clone();
        let task = tokio::spawn(async move {
            let mut out = Collected {
                scrapes: Vec::new(),
                per_step: false,
                failed: 0,
                error: None,
            };
            let mut record = |(at, r): (Instant, Result<(ServerCounters, bool), String>)| match r {
                Ok((c, per_step)) => {
                    out.scrapes.push((at, c));
                    out.per_step |= per_step;
                }
                Err(e) => {
                    out.failed += 1;
                    out.error.get_or_insert(e);
                }
            };
            let stop_signal = stopped.notified();
            tokio::pin!(stop_signal);
            // The period sets its origin as it starts, a moment after this task does.
            let origin = loop {
                if let Some(o) = live.origin.get() {
                    break *o;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    _ = &mut stop_signal => return out,
                }
            };
            let mut k: u32 = 0;
            let mut warmup_done = false;
            loop {
                let tick = origin + interval * k;
                let mark = (origin + warmup).checked_sub(MARK_LEAD).unwrap_or(origin);
                let due = if !warmup_done && mark <= tick {
                    warmup_done = true;
                    // A tick at the very moment is that scrape.
                    if mark == tick {
                        k += 1;
                    }
                    mark
                } else {
                    k += 1;
                    tick
                };
                // Ticks missed while a slow round ran are skipped, not fired back to back.
                let now = Instant::now();
                if due < now && k > 0 {
                    let behind = now.saturating_duration_since(origin).as_secs_f64()
                        / interval.as_secs_f64().max(1e-9);
                    k = k.max(behind.ceil() as u32);
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = &mut stop_signal => break,
                }
                record(scrape_round(&client, &scrape_urls).await);
            }
            // After the last request: the end of the window.
            record(scrape_round(&client, &scrape_urls).await);
            out
        });
        Scraper {
            stop,
            task: Some(task),
            urls,
            interval,
        }
    }

    /// Stops after one last scrape, and reconciles the scrapes with the period's `requests`.
    pub async fn finish(
        mut self,
        live: &super::load::Live,
        warmup: Duration,
        requests: &[LoadRequest],
    ) -> ServerMetrics {
        let origin = live.origin.get().copied();
        self.stop.notify_one();
        let task = self.task.take();
        let joined = match task {
            Some(t) => t.await.ok(),
            None => None,
        };
        let collected = joined.unwrap_or(Collected {
            scrapes: Vec::new(),
            per_step: false,
            failed: 1,
            error: Some("the scrape task failed".into()),
        });
        let scrapes: Vec<ServerScrape> = match origin {
            Some(origin) => collected
                .scrapes
                .iter()
                .map(|(at, c)| ServerScrape {
                    t_ms: super::measure::ms(at.saturating_duration_since(origin)),
                    counters: *c,
                })
                .collect(),
            None => Vec::new(),
        };
        let empty = scrapes.iter().all(|s| metrics::is_empty(&s.counters));
        let error = collected.error.or_else(|| {
            (empty && !scrapes.is_empty())
                .then(|| "the pages have none of the figures read (docs/metrics.md)".to_owned())
        });
        ServerMetrics {
            urls: std::mem::take(&mut self.urls),
            interval_ms: super::measure::ms(self.interval),
            summary: summarize(
                &scrapes,
                super::measure::ms(warmup),
                origin
                    .zip(live.cut.get())
                    .map(|(o, cut)| super::measure::ms(cut.saturating_duration_since(o))),
                collected.per_step,
                requests,
            ),
            output_counted_per_step: collected.per_step,
            scrapes,
            failed: collected.failed,
            error,
        }
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).map(|(a, b)| b - a)
}

/// server / client - 1; None when the client counted nothing.
fn relative(server: Option<f64>, client: u64) -> Option<f64> {
    server
        .filter(|_| client > 0)
        .map(|s| s / client as f64 - 1.0)
}

/// The measured window's figures: from the scrape sent just before the end of the warm-up
/// (`MARK_LEAD` before `warmup_ms` from the period's start) to the last scrape, or, when
/// requests were cut off at
/// `cut_ms` and cancelled, the last scrape before the cut (a server counts a cancelled
/// request's work as it drops it, and the client never saw that work finish).
///
/// A server counts a request's generated tokens when it finishes, and its prompt tokens when
/// it has read the prompt (just before the first token). So the client's output tokens are
/// those of the requests that finished well in the window, and its prompt tokens those of the
/// requests whose first token came in it. After a cut the prompt count cannot be matched: the
/// server had read prompts of requests the client lost with their cancellation.
pub fn summarize(
    scrapes: &[ServerScrape],
    warmup_ms: f64,
    cut_ms: Option<f64>,
    output_per_step: bool,
    requests: &[LoadRequest],
) -> Option<ServerMetricsSummary> {
    // A scrape is timed when answered, after it was due.
    let due_ms = warmup_ms - super::measure::ms(MARK_LEAD);
    let from = scrapes.iter().find(|s| s.t_ms >= due_ms)?;
    let to = match cut_ms {
        Some(cut) => scrapes.iter().rev().find(|s| s.t_ms < cut)?,
        None => scrapes.last()?,
    };
    if to.t_ms <= from.t_ms {
        return None;
    }
    let within = |t: Option<f64>| t.is_some_and(|t| t > from.t_ms && t <= to.t_ms);
    let in_flight_at = |t: f64| {
        requests
            .iter()
            .any(|r| r.sent_ms <= t && r.e2e_ms.is_none_or(|e| r.sent_ms + e > t))
    };
    let ok = || requests.iter().filter(|r| r.status == RunStatus::Ok);
    let finished: Vec<&LoadRequest> = ok()
        .filter(|r| within(r.e2e_ms.map(|e| r.sent_ms + e)))
        .collect();
    let started: Vec<&LoadRequest> = ok()
        .filter(|r| within(r.ttft_ms.map(|t| r.sent_ms + t)))
        .collect();
    let cancelled = requests
        .iter()
        .filter(|r| r.status != RunStatus::Ok)
        .count() as u64;
    let client_output: u64 = finished.iter().filter_map(|r| r.output_tokens).sum();
    let prompts: Option<u64> = started.iter().map(|r| r.prompt_tokens).sum();
    let guard = super::measure::ms(BOUNDARY_GUARD);
    let near_boundary = |t: Option<f64>| {
        t.is_some_and(|t| [from.t_ms, to.t_ms].iter().any(|b| (t - b).abs() <= guard))
    };
    let boundary_output_tokens: u64 = ok()
        .filter(|r| near_boundary(r.e2e_ms.map(|e| r.sent_ms + e)))
        .filter_map(|r| r.output_tokens)
        .sum();
    let boundary_prompt_tokens: u64 = ok()
        .filter(|r| near_boundary(r.ttft_ms.map(|t| r.sent_ms + t)))
        .filter_map(|r| r.prompt_tokens)
        .sum();
    let delta = ServerCounters {
        running: None,
        waiting: None,
        kv_cache_usage: None,
        prompt_tokens: diff(from.counters.prompt_tokens, to.counters.prompt_tokens),
        cached_prompt_tokens: diff(
            from.counters.cached_prompt_tokens,
            to.counters.cached_prompt_tokens,
        ),
        output_tokens: diff(from.counters.output_tokens, to.counters.output_tokens),
        requests_finished: diff(
            from.counters.requests_finished,
            to.counters.requests_finished,
        ),
    };
    let window: Vec<&ServerScrape> = scrapes
        .iter()
        .filter(|s| s.t_ms >= from.t_ms && s.t_ms <= to.t_ms)
        .collect();
    let mean = |f: fn(&ServerCounters) -> Option<f64>| {
        let v: Vec<f64> = window.iter().filter_map(|s| f(&s.counters)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let max = |f: fn(&ServerCounters) -> Option<f64>| {
        window
            .iter()
            .filter_map(|s| f(&s.counters))
            .reduce(f64::max)
    };
    Some(ServerMetricsSummary {
        from_ms: from.t_ms,
        to_ms: to.t_ms,
        delta,
        client_requests: finished.len() as u64,
        client_warmup_requests: finished.iter().filter(|r| r.warmup).count() as u64,
        client_output_tokens: client_output,
        client_prompt_tokens: prompts.unwrap_or(0),
        client_not_finished: cancelled,
        boundary_output_tokens,
        boundary_prompt_tokens,
        // A server that counts generated tokens step by step (vLLM) has counted part of any
        // request in flight at the window's start, or cut off at its end: no match then.
        output_token_diff: relative(delta.output_tokens, client_output)
            .filter(|_| !output_per_step || (cut_ms.is_none() && !in_flight_at(from.t_ms))),
        prompt_token_diff: prompts
            .filter(|_| cut_ms.is_none())
            .and_then(|p| relative(delta.prompt_tokens, p)),
        waiting_mean: mean(|c| c.waiting),
        waiting_max: max(|c| c.waiting),
        running_mean: mean(|c| c.running),
        running_max: max(|c| c.running),
        kv_cache_usage_max: max(|c| c.kv_cache_usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(t_ms: f64, output: f64, prompt: f64, waiting: f64) -> ServerScrape {
        ServerScrape {
            t_ms,
            counters: ServerCounters {
                running: Some(1.0),
                waiting: Some(waiting),
                output_tokens: Some(output),
                prompt_tokens: Some(prompt),
                ..Default::default()
            },
        }
    }

    fn request(sent: f64, e2e: f64, output: u64, warmup: bool) -> LoadRequest {
        LoadRequest {
            index: 0,
            scheduled_ms: sent,
            sent_ms: sent,
            dispatch_lag_ms: 0.0,
            status: RunStatus::Ok,
            reason: None,
            cancelled: false,
            ttft_ms: Some(e2e / 2.0),
            e2e_ms: Some(e2e),
            ttft_from_schedule_ms: Some(e2e / 2.0),
            e2e_from_schedule_ms: Some(e2e),
            tpot_ms: None,
            itl_p50_ms: None,
            itl_p99_ms: None,
            output_tokens: Some(output),
            prompt_tokens: Some(10),
            cache_n: None,
            input_tokens_requested: None,
            output_tokens_requested: None,
            warmup,
        }
    }

    /// Counters at 0 ms (start), 980 ms (sent 20 ms before the end of the warm-up), 2000 and
    /// 3500 ms (the end): the window is 980 to 3500 ms. A warm-up request finishing at 1200 ms is in it; one
    /// finishing at 900 ms is not.
    #[test]
    fn the_window_runs_from_the_end_of_the_warm_up_to_the_last_scrape() {
        let scrapes = [
            scrape(0.0, 100.0, 1000.0, 0.0),
            scrape(980.0, 132.0, 1010.0, 2.0),
            scrape(2000.0, 196.0, 1030.0, 4.0),
            scrape(3500.0, 228.0, 1040.0, 0.0),
        ];
        let requests = [
            request(100.0, 800.0, 32, true), // finishes at 900: before the window
            request(500.0, 700.0, 32, true), // 1200: a warm-up request in the window
            request(1100.0, 900.0, 32, false), // 2000
            request(1600.0, 1000.0, 32, false), // 2600
            request(2500.0, 900.0, 0, false), // 3400, no output
        ];
        let s = summarize(&scrapes, 1000.0, None, false, &requests).unwrap();
        assert_eq!((s.from_ms, s.to_ms), (980.0, 3500.0));
        assert_eq!(s.delta.output_tokens, Some(96.0));
        assert_eq!(s.client_output_tokens, 96);
        assert_eq!(s.output_token_diff, Some(0.0));
        assert_eq!((s.client_requests, s.client_warmup_requests), (4, 1));
        // Prompts are counted when read, just before the first token (here half-way through
        // each request): the warm-up request's came at 850 ms, before the window, so the
        // client's are the last three requests', 3 x 10, as the server's 1040 - 1010.
        assert_eq!(s.client_prompt_tokens, 30);
        assert_eq!(s.prompt_token_diff, Some(0.0));
        // Cut off at 3000 ms: the window ends at 2000, and prompts cannot be matched.
        let cut = summarize(&scrapes, 1000.0, Some(3000.0), false, &requests).unwrap();
        assert_eq!(cut.to_ms, 2000.0);
        assert_eq!(cut.delta.output_tokens, Some(64.0));
        assert_eq!(cut.client_output_tokens, 64, "finished at 1200 and 2000 ms");
        assert_eq!(cut.prompt_token_diff, None);
        // A server counting step by step (vLLM) had part of the warm-up request in flight at
        // 980 ms (sent at 500, done at 1200) before the window: its output is not matched.
        let per_step = summarize(&scrapes, 1000.0, None, true, &requests).unwrap();
        assert_eq!(per_step.output_token_diff, None);
        assert_eq!(per_step.prompt_token_diff, Some(0.0));
        // The queue over the window's three scrapes: 2, 4, 0.
        assert_eq!(s.waiting_mean, Some(2.0));
        assert_eq!(s.waiting_max, Some(4.0));
    }

    #[test]
    fn a_server_that_counted_more_shows_the_difference_and_no_window_no_summary() {
        let scrapes = [scrape(0.0, 0.0, 0.0, 0.0), scrape(1000.0, 101.0, 0.0, 0.0)];
        let requests = [request(10.0, 500.0, 100, false)];
        let s = summarize(&scrapes, 0.0, None, false, &requests).unwrap();
        assert!((s.output_token_diff.unwrap() - 0.01).abs() < 1e-12);
        assert!(summarize(&scrapes[..1], 0.0, None, false, &requests).is_none());
        assert!(summarize(&[], 0.0, None, false, &requests).is_none());
        // Cut off at 900 ms: the window ends at the last scrape before, which is its start.
        assert!(summarize(&scrapes, 0.0, Some(900.0), false, &requests).is_none());
    }

    /// A request finishing 10 ms after the window's first scrape was answered may have been
    /// counted before it (the client timestamps the two in different tasks): the client counts
    /// it in the window, and says its tokens were too close to call. One finishing 40 ms after
    /// is clear of the boundary. So are first tokens, for the prompts.
    #[test]
    fn tokens_near_a_boundary_scrape_are_named_as_too_close_to_call() {
        let scrapes = [
            scrape(980.0, 132.0, 1010.0, 0.0),
            scrape(3500.0, 196.0, 1030.0, 0.0),
        ];
        let requests = [
            request(490.0, 500.0, 32, true),    // first token at 740, done at 990
            request(1020.0, 1000.0, 32, false), // first token at 1520, done at 2020
            request(500.0, 3010.0, 7, false),   // first token at 2005, done at 3510
            request(960.0, 40.0, 5, false),     // first token at 980, done at 1000
        ];
        let s = summarize(&scrapes, 1000.0, None, false, &requests).unwrap();
        // The third finished 10 ms after the last scrape: outside the window, near its end.
        assert_eq!(s.client_output_tokens, 32 + 32 + 5);
        assert_eq!(s.boundary_output_tokens, 32 + 7 + 5);
        assert_eq!(
            s.boundary_prompt_tokens, 10,
            "one first token on a boundary"
        );
        let clear = [request(490.0, 530.0, 32, true)]; // done at 1020
        let s = summarize(&scrapes, 1000.0, None, false, &clear).unwrap();
        assert_eq!(s.boundary_output_tokens, 0);
    }
}
