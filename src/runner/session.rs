//! Multi-turn sessions (`workload.session: {turns, think_time_ms}`): each agent holds one
//! conversation, sending turn after turn, each with the whole conversation so far (its earlier
//! prompts and the answers), so later turns show how much of a growing prompt the server
//! reuses from its cache. Each turn is measured like any request and kept in the agent's
//! `requests` (step `turn 1`, `turn 2`, ...); the run is the whole session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::measure::{self, Target};
use super::program::summarise_requests;
use crate::backend::{GenerationRequest, Protocol, Turn};
use crate::record::{AgentRun, GroupStats};

/// One agent's session: where it sends and each turn's new message.
pub struct SessionTarget {
    pub server: String,
    pub turns: Vec<GenerationRequest>,
}

async fn run_one(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    target: SessionTarget,
    think: Duration,
    deadline: tokio::time::Instant,
) -> (AgentRun, Instant) {
    let started = Instant::now();
    let mut run = AgentRun {
        server: target.server.clone(),
        ..AgentRun::default()
    };
    let mut history: Vec<Turn> = Vec::new();
    let last = target.turns.len().saturating_sub(1);
    for (k, mut request) in target.turns.into_iter().enumerate() {
        request.history = history.clone();
        let prompt = request.prompt.clone();
        let measured = measure::measure_one(
            client,
            protocol,
            &Target {
                server: target.server.clone(),
                request,
            },
            deadline,
        )
        .await;
        let turn = format!("turn {}", k + 1);
        if !measure::keep_step(&mut run, turn.clone(), &turn, &measured) {
            break;
        }
        history.push(Turn {
            role: "user",
            content: prompt,
        });
        history.push(Turn {
            role: "assistant",
            content: measured.text.clone(),
        });
        run.text = measured.text;
        if k < last && !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
    run.e2e_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    summarise_requests(&mut run);
    // The session's prompt and cache counts are its last turn's: the whole conversation.
    if let Some(q) = run.requests.last() {
        run.prompt_tokens = q.prompt_tokens;
        run.cache_n = q.cache_n;
    }
    (run, started)
}

/// Runs one session per target, all started together; group figures as for requests.
pub async fn run_group(
    client: &reqwest::Client,
    protocol: Arc<dyn Protocol>,
    targets: Vec<SessionTarget>,
    think: Duration,
    timeout: Duration,
) -> (Vec<AgentRun>, Option<GroupStats>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let client = client.clone();
    measure::together(targets, "session", move |target| {
        let (client, protocol) = (client.clone(), protocol.clone());
        async move { run_one(&client, protocol.as_ref(), target, think, deadline).await }
    })
    .await
}
