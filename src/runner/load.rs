//! One load period: requests released on a pacer's schedule (`schedule::Pacer`), each measured
//! as any request is, with its scheduled and actual send times, so that dispatch lag and
//! client-side queueing are recorded rather than hidden. A request the client releases late is
//! sent late and marked by its lag, never dropped; requests still in flight when the schedule
//! is over get a grace period, then are cancelled and recorded as cancelled.
//!
//! Not yet reachable from a spec: the `load` scenario, its storage and its report come next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::measure::{Target, measure_from, ms};
use crate::backend::Protocol;
use crate::record::{AgentRun, LoadRequest, RunStatus};
use crate::schedule::{Due, Pacer, Progress, release};

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
    }
}

type Finished = (u64, AgentRun);

/// The requests in flight: when each was due and (about) when it went out.
struct InFlight {
    set: JoinSet<Finished>,
    due: HashMap<u64, (Duration, Duration)>,
}

impl InFlight {
    fn take(
        &mut self,
        joined: Result<Finished, tokio::task::JoinError>,
        out: &mut Vec<LoadRequest>,
    ) {
        if let Ok((index, run)) = joined
            && let Some((scheduled, _)) = self.due.remove(&index)
        {
            out.push(to_record(index, scheduled, &run));
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
    let origin = Instant::now() + LEAD;
    let mut progress = Progress::default();
    let mut flight = InFlight {
        set: JoinSet::new(),
        due: HashMap::new(),
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
        flight.due.insert(
            index,
            (offset, Instant::now().saturating_duration_since(origin)),
        );
        let (client, protocol, target) = (client.clone(), protocol.clone(), target.clone());
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
        out.push(cancelled(index, scheduled, sent, &reason));
    }
    out.sort_by_key(|r| r.index);
    out
}
