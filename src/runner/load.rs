//! One load period: requests released on a pacer's schedule (`schedule::Pacer`), each measured
//! as any request is, with its scheduled and actual send times, so that dispatch lag and
//! client-side queueing are recorded rather than hidden. A request the client releases late is
//! sent late and marked by its lag, never dropped; requests still in flight when the schedule
//! is over get a grace period, then are cancelled and recorded as cancelled.
//!
//! A spec's `load` scenario reaches it through `runner::run`, which stores the requests
//! (`record::requests`) before the run's journal line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::measure::{Target, measure_from, ms};
use crate::backend::Protocol;
use crate::record::{
    AgentRun, DEGRADED_LAG_P99_MS, LoadRequest, LoadSummary, Percentiles, RunStatus,
};
use crate::schedule::{
    Arrival, ClosedLoop, Due, Limit, OpenLoop, OpenLoopPacer, Pacer, Progress, release, seed_for,
};
use crate::spec::ArrivalKind;
use crate::spec::load::{Extent, LoadShape, Pattern};
use crate::stats::percentile;
use crate::workload::trace::TraceRequest;

/// How a period runs besides its schedule.
#[derive(Debug, Clone, Copy)]
pub struct PeriodLimits {
    /// At most this many requests in flight; a due request waits for one to finish (and is
    /// then late by that wait).
    pub max_concurrency: Option<usize>,
    /// How long requests still in flight after the schedule may take to finish.
    pub grace: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// The lead before the first request, so that it too is released on a deadline.
const LEAD: Duration = Duration::from_millis(2);

/// What a period has done so far, for live progress: updated as requests go and finish.
#[derive(Debug, Default)]
pub struct Live {
    /// When the period's schedule starts (set as it begins): what its offsets count from.
    pub origin: std::sync::OnceLock<Instant>,
    /// When the grace ran out with requests still in flight, which were then cancelled.
    pub cut: std::sync::OnceLock<Instant>,
    pub sent: AtomicU64,
    pub finished: AtomicU64,
    pub errors: AtomicU64,
    pub output_tokens: AtomicU64,
}

impl Live {
    fn count(&self, r: &LoadRequest) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        if r.status != RunStatus::Ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.output_tokens
            .fetch_add(r.output_tokens.unwrap_or(0), Ordering::Relaxed);
    }
}

fn to_record(index: u64, scheduled: Duration, run: &AgentRun) -> LoadRequest {
    let scheduled_ms = ms(scheduled);
    let lag = run.sent_offset_ms - scheduled_ms;
    let tpot_ms = match (run.ttft_ms, run.last_token_ms, run.output_tokens) {
        (Some(first), Some(last), Some(n)) if n > 1 => Some((last - first) / (n - 1) as f64),
        _ => None,
    };
    LoadRequest {
        index,
        scheduled_ms,
        sent_ms: run.sent_offset_ms,
        dispatch_lag_ms: lag,
        status: run.status,
        reason: run.reason.clone(),
        cancelled: false,
        ttft_ms: run.ttft_ms,
        e2e_ms: run.e2e_ms,
        ttft_from_schedule_ms: run.ttft_ms.map(|t| t + lag),
        e2e_from_schedule_ms: run.e2e_ms.map(|t| t + lag),
        tpot_ms,
        itl_p50_ms: run.itl_p50_ms,
        itl_p99_ms: run.itl_p99_ms,
        output_tokens: run.output_tokens,
        prompt_tokens: run.prompt_tokens,
        cache_n: run.cache_n,
        input_tokens_requested: run.input_tokens_requested,
        output_tokens_requested: run.output_tokens_requested,
        warmup: false,
    }
}

/// A request given up on: in flight after the grace period, or lost with its task.
fn cancelled(index: u64, scheduled: Duration, sent: Duration, reason: &str) -> LoadRequest {
    let (scheduled_ms, sent_ms) = (ms(scheduled), ms(sent));
    LoadRequest {
        index,
        scheduled_ms,
        sent_ms,
        dispatch_lag_ms: sent_ms - scheduled_ms,
        status: RunStatus::Degraded,
        reason: Some(reason.to_owned()),
        cancelled: true,
        ttft_ms: None,
        e2e_ms: None,
        ttft_from_schedule_ms: None,
        e2e_from_schedule_ms: None,
        tpot_ms: None,
        itl_p50_ms: None,
        itl_p99_ms: None,
        output_tokens: None,
        prompt_tokens: None,
        cache_n: None,
        input_tokens_requested: None,
        output_tokens_requested: None,
        warmup: false,
    }
}

type Finished = (u64, AgentRun);

/// The requests in flight: when each was due and (about) when it went out.
struct InFlight<'l> {
    set: JoinSet<Finished>,
    due: HashMap<u64, (Duration, Duration)>,
    live: &'l Live,
}

impl InFlight<'_> {
    fn take(
        &mut self,
        joined: Result<Finished, tokio::task::JoinError>,
        out: &mut Vec<LoadRequest>,
    ) {
        if let Ok((index, run)) = joined
            && let Some((scheduled, _)) = self.due.remove(&index)
        {
            let record = to_record(index, scheduled, &run);
            self.live.count(&record);
            out.push(record);
        }
        // A task that failed leaves its entry; it is recorded as cancelled at the end.
    }
}

/// Runs one period against `target` on `pacer`'s schedule and returns every request of it,
/// in schedule order.
pub async fn run_period(
    client: &reqwest::Client,
    protocol: Arc<dyn Protocol>,
    target: &Target,
    pacer: &mut dyn Pacer,
    limits: PeriodLimits,
) -> Vec<LoadRequest> {
    let live = Live::default();
    let targets = std::slice::from_ref(target);
    run_period_with(
        client,
        protocol,
        targets,
        pacer,
        limits,
        Duration::ZERO,
        &live,
    )
    .await
}

/// Runs one period on `pacer`'s schedule: request `i` goes to `targets[i % len]` (their
/// prompts and servers in turn), requests due before `warmup` are marked as warm-up, and
/// `live` follows it as it goes. Returns every request, in schedule order.
pub async fn run_period_with(
    client: &reqwest::Client,
    protocol: Arc<dyn Protocol>,
    targets: &[Target],
    pacer: &mut dyn Pacer,
    limits: PeriodLimits,
    warmup: Duration,
    live: &Live,
) -> Vec<LoadRequest> {
    let origin = *live.origin.get_or_init(|| Instant::now() + LEAD);
    let mut progress = Progress::default();
    let mut flight = InFlight {
        set: JoinSet::new(),
        due: HashMap::new(),
        live,
    };
    let mut out = Vec::new();
    loop {
        // Collect what has finished without waiting, so the pacer sees it.
        while let Some(joined) = flight.set.try_join_next() {
            flight.take(joined, &mut out);
            progress.finished += 1;
        }
        progress.elapsed = Instant::now().saturating_duration_since(origin);
        let offset = match pacer.next(progress) {
            Due::Done => break,
            Due::WhenOneFinishes => {
                match flight.set.join_next().await {
                    Some(joined) => {
                        flight.take(joined, &mut out);
                        progress.finished += 1;
                    }
                    // Nothing in flight to wait for: the pacer cannot go on.
                    None => break,
                }
                continue;
            }
            Due::At(offset) => offset,
        };
        if limits
            .max_concurrency
            .is_some_and(|cap| flight.set.len() >= cap)
            && let Some(joined) = flight.set.join_next().await
        {
            flight.take(joined, &mut out);
            progress.finished += 1;
            continue;
        }
        release(origin + offset).await;
        let index = progress.sent;
        progress.sent += 1;
        live.sent.fetch_add(1, Ordering::Relaxed);
        flight.due.insert(
            index,
            (offset, Instant::now().saturating_duration_since(origin)),
        );
        let target = targets[index as usize % targets.len()].clone();
        let (client, protocol) = (client.clone(), protocol.clone());
        let deadline = tokio::time::Instant::now() + limits.timeout;
        flight.set.spawn(async move {
            let run = measure_from(&client, protocol.as_ref(), &target, deadline, origin).await;
            (index, run)
        });
    }
    let grace_ends = tokio::time::Instant::now() + limits.grace;
    loop {
        match tokio::time::timeout_at(grace_ends, flight.set.join_next()).await {
            Ok(Some(joined)) => flight.take(joined, &mut out),
            Ok(None) => break,
            Err(_) => {
                let _ = live.cut.set(Instant::now());
                flight.set.abort_all();
                // A request that finished as the grace ran out is kept, not cancelled.
                while let Some(joined) = flight.set.join_next().await {
                    flight.take(joined, &mut out);
                }
                break;
            }
        }
    }
    let reason = format!(
        "cancelled: still in flight {:.1} s after the schedule ended",
        limits.grace.as_secs_f64()
    );
    for (index, (scheduled, sent)) in flight.due.drain() {
        let record = cancelled(index, scheduled, sent, &reason);
        live.count(&record);
        out.push(record);
    }
    out.sort_by_key(|r| r.index);
    for r in &mut out {
        r.warmup = Duration::from_secs_f64(r.scheduled_ms / 1000.0) < warmup;
    }
    out
}

/// A cell's period made ready to run: its pacer, and what the record says of its schedule.
pub struct Period {
    pub pacer: Box<dyn Pacer>,
    pub warmup: Duration,
    pub grace: Duration,
    pub max_concurrency: Option<usize>,
    /// The measured schedule's own rate (open loop).
    pub offered_rate: Option<f64>,
    /// Requests the period sends, warm-up included, where the schedule knows (open loop).
    pub requests: Option<usize>,
    pub seed: Option<u64>,
}

/// The pacer of a cell's load `shape` for run `run_id`: open-loop schedules are drawn from
/// the run id's seed (the warm-up from its own), so every machine and every resume sends the
/// same schedule.
pub fn period_for(
    shape: &LoadShape,
    run_id: &str,
    trace: &[TraceRequest],
) -> Result<Period, crate::schedule::ScheduleError> {
    let warmup = Duration::from_secs_f64(shape.warmup_s);
    let limit = match shape.extent {
        Extent::Seconds(s) => Limit::Duration(Duration::from_secs_f64(s)),
        Extent::Requests(n) => Limit::Requests(n),
        Extent::Whole => Limit::Requests(trace.len() as u64),
    };
    let grace = Duration::from_secs_f64(shape.grace_s);
    let max_concurrency = shape.max_concurrency.map(|c| c as usize);
    Ok(match shape.pattern {
        Pattern::Open {
            arrival,
            rate,
            burstiness,
        } => {
            let arrival = match arrival {
                ArrivalKind::Constant => Arrival::Constant,
                ArrivalKind::Poisson => Arrival::Poisson,
                ArrivalKind::Gamma => Arrival::Gamma {
                    burstiness: burstiness.unwrap_or(1.0),
                },
            };
            let seed = seed_for(run_id);
            let measured = OpenLoop::draw(arrival, rate, limit, seed)?;
            let offered_rate = measured.drawn_rate();
            let schedule = if warmup.is_zero() {
                measured
            } else {
                let warm = OpenLoop::draw(
                    arrival,
                    rate,
                    Limit::Duration(warmup),
                    seed_for(&format!("{run_id}/warmup")),
                )?;
                OpenLoop::after_warmup(&warm, warmup, &measured)
            };
            Period {
                requests: Some(schedule.offsets().len()),
                pacer: Box::new(OpenLoopPacer::new(schedule)),
                warmup,
                grace,
                max_concurrency,
                offered_rate,
                seed: Some(seed),
            }
        }
        Pattern::Trace { time_scale } => {
            // The trace's own times, from its first request, sped up by `time_scale`; its
            // first `warmup` seconds are the warm-up.
            let first = trace.first().map_or(0.0, |r| r.timestamp);
            let offsets: Vec<Duration> = trace
                .iter()
                .map(|r| Duration::from_secs_f64((r.timestamp - first) / 1000.0 / time_scale))
                .enumerate()
                .take_while(|(i, at)| match limit {
                    Limit::Requests(n) => (*i as u64) < n,
                    Limit::Duration(d) => *at < warmup + d,
                })
                .map(|(_, at)| at)
                .collect();
            let schedule = OpenLoop::from_offsets(offsets);
            let measured = OpenLoop::from_offsets(
                schedule
                    .offsets()
                    .iter()
                    .copied()
                    .filter(|at| *at >= warmup)
                    .collect(),
            );
            Period {
                requests: Some(schedule.offsets().len()),
                offered_rate: measured.drawn_rate(),
                pacer: Box::new(OpenLoopPacer::new(schedule)),
                warmup,
                grace,
                max_concurrency,
                seed: None,
            }
        }
        Pattern::Closed { users } => Period {
            pacer: Box::new(ClosedLoop::new(users as u64, limit, warmup)),
            warmup,
            grace,
            max_concurrency: None,
            offered_rate: None,
            // Known only for a counted period without warm-up.
            requests: match shape.extent {
                Extent::Requests(n) if warmup.is_zero() => Some(n as usize),
                _ => None,
            },
            seed: None,
        },
    })
}

/// Why a load run's figures cannot stand for the cell, if they cannot.
pub fn degraded_reason(summary: &LoadSummary) -> Option<String> {
    if summary.requests == 0 {
        return Some("no request was measured".into());
    }
    if summary.ok == 0 {
        return Some(format!(
            "none of its {} requests finished well",
            summary.requests
        ));
    }
    summary
        .dispatch_lag_p99_ms
        .filter(|lag| *lag > DEGRADED_LAG_P99_MS)
        .map(|lag| {
            format!(
                "the client could not keep the schedule: dispatch lag p99 {lag:.1} ms (over {DEGRADED_LAG_P99_MS} ms)"
            )
        })
}

/// The step of the in-flight series.
const IN_FLIGHT_STEP_MS: f64 = 100.0;

fn percentiles(values: impl Iterator<Item = f64>) -> Percentiles {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    Percentiles {
        p50: percentile(&v, 50.0),
        p90: percentile(&v, 90.0),
        p95: percentile(&v, 95.0),
        p99: percentile(&v, 99.0),
    }
}

/// The run-level figures of a period's measured `requests` (warm-up ones are left out), whose
/// schedule offered `offered_rate`. Latencies are over the requests that finished well; the
/// error rate counts the others.
pub fn summarize(requests: &[LoadRequest], offered_rate: Option<f64>) -> LoadSummary {
    let requests: Vec<&LoadRequest> = requests.iter().filter(|r| !r.warmup).collect();
    let ok: Vec<&LoadRequest> = requests
        .iter()
        .copied()
        .filter(|r| r.status == RunStatus::Ok)
        .collect();
    let n = requests.len() as u64;
    let first_send = requests
        .iter()
        .map(|r| r.sent_ms)
        .fold(f64::INFINITY, f64::min);
    let last_send = requests
        .iter()
        .map(|r| r.sent_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let end = |r: &&LoadRequest| r.e2e_ms.map(|e| r.sent_ms + e);
    let last_end = ok.iter().filter_map(end).fold(f64::NEG_INFINITY, f64::max);
    let achieved_rate = (n > 1 && last_send > first_send)
        .then(|| (n - 1) as f64 / ((last_send - first_send) / 1000.0));
    let span_s = (last_end - first_send) / 1000.0;
    let tokens: u64 = ok.iter().filter_map(|r| r.output_tokens).sum();
    let lags: Vec<f64> = requests.iter().map(|r| r.dispatch_lag_ms).collect();
    let in_flight =
        crate::record::in_flight(requests.iter().copied(), first_send, IN_FLIGHT_STEP_MS);
    LoadSummary {
        requests: n,
        ok: ok.len() as u64,
        cancelled: requests.iter().filter(|r| r.cancelled).count() as u64,
        error_rate: if n > 0 {
            (n - ok.len() as u64) as f64 / n as f64
        } else {
            0.0
        },
        offered_rate,
        achieved_rate,
        request_throughput: (span_s > 0.0).then(|| ok.len() as f64 / span_s),
        output_tok_s: (span_s > 0.0).then(|| tokens as f64 / span_s),
        ttft_ms: percentiles(ok.iter().filter_map(|r| r.ttft_ms)),
        ttft_from_schedule_ms: percentiles(ok.iter().filter_map(|r| r.ttft_from_schedule_ms)),
        tpot_ms: percentiles(ok.iter().filter_map(|r| r.tpot_ms)),
        itl_ms: percentiles(ok.iter().filter_map(|r| r.itl_p50_ms)),
        e2e_ms: percentiles(ok.iter().filter_map(|r| r.e2e_ms)),
        e2e_from_schedule_ms: percentiles(ok.iter().filter_map(|r| r.e2e_from_schedule_ms)),
        dispatch_lag_p50_ms: percentile(&lags, 50.0),
        dispatch_lag_p99_ms: percentile(&lags, 99.0),
        dispatch_lag_max_ms: lags.iter().copied().reduce(f64::max),
        cache_hit_rate: {
            let (cached, prompt) = ok
                .iter()
                .filter_map(|r| r.cache_n.zip(r.prompt_tokens))
                .fold((0u64, 0u64), |(c, p), (rc, rp)| (c + rc, p + rp));
            (prompt > 0).then(|| cached as f64 / prompt as f64)
        },
        reached_output_share: {
            let asked: Vec<&&LoadRequest> = ok
                .iter()
                .filter(|r| r.output_tokens_requested.is_some())
                .collect();
            (!asked.is_empty()).then(|| {
                asked
                    .iter()
                    .filter(|r| r.output_tokens == r.output_tokens_requested)
                    .count() as f64
                    / asked.len() as f64
            })
        },
        in_flight_max: in_flight.iter().copied().max().unwrap_or(0),
        in_flight_step_ms: IN_FLIGHT_STEP_MS,
        in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(index: u64, sent: f64, e2e: Option<f64>, ok: bool) -> LoadRequest {
        let mut r = cancelled(
            index,
            Duration::from_millis(index * 100),
            Duration::from_secs_f64(sent / 1000.0),
            "x",
        );
        r.cancelled = !ok && e2e.is_none();
        if ok {
            r.status = RunStatus::Ok;
            r.reason = None;
            r.ttft_ms = Some(20.0);
            r.e2e_ms = e2e;
            r.ttft_from_schedule_ms = Some(20.0 + r.dispatch_lag_ms);
            r.e2e_from_schedule_ms = e2e.map(|e| e + r.dispatch_lag_ms);
            r.output_tokens = Some(10);
        }
        r
    }

    /// Ten requests 100 ms apart, each 250 ms long, the last one cancelled: the rates, the
    /// error rate, the in-flight series and the lag, worked by hand.
    #[test]
    fn run_level_figures_worked_by_hand() {
        let mut requests: Vec<LoadRequest> = (0..9)
            .map(|i| req(i, i as f64 * 100.0 + 0.5, Some(250.0), true))
            .collect();
        requests.push(req(9, 900.5, None, false));
        let s = summarize(&requests, Some(10.0));
        assert_eq!((s.requests, s.ok, s.cancelled), (10, 9, 1));
        assert!((s.error_rate - 0.1).abs() < 1e-12);
        assert!(
            (s.achieved_rate.unwrap() - 10.0).abs() < 1e-9,
            "9 gaps over 900 ms"
        );
        // 9 finished requests of 10 tokens between 0.5 ms and 1050.5 ms.
        assert!((s.request_throughput.unwrap() - 9.0 / 1.05).abs() < 1e-9);
        assert!((s.output_tok_s.unwrap() - 90.0 / 1.05).abs() < 1e-9);
        assert_eq!(s.e2e_ms.p50, Some(250.0));
        assert!((s.dispatch_lag_max_ms.unwrap() - 0.5).abs() < 1e-9);
        // At 0, 100, 200 ms: 1, 2, 3 in flight; from then on 3 (each lasts 2.5 gaps), and the
        // cancelled one counts until the end.
        assert_eq!(&s.in_flight[..4], &[1, 2, 3, 3]);
        assert_eq!(s.in_flight_max, 3);
    }
}
