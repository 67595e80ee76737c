//! Measuring one request and one group of concurrent requests. All client-side timing lives
//! here, so every protocol is measured by the same code. Definitions: docs/metrics.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::backend::{Decoder, GenerationRequest, Protocol, ServerReport, StreamEvent};
use crate::record::{AgentRun, GroupStats, LagStats, RunStatus};
use crate::stats::percentile;

#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub request: GenerationRequest,
}

/// Raw observations of one request, before derived metrics.
struct Observed {
    sent: Instant,
    /// Arrival of every generated chunk, reasoning and answer alike, in order.
    generated_at: Vec<Instant>,
    first_answer_at: Option<Instant>,
    reasoning_chunks: u32,
    finish_reason: Option<String>,
    done_at: Option<Instant>,
    /// The body ended after a finish reason but without the protocol's end marker.
    ended_without_done: bool,
    report: ServerReport,
    text: String,
    http_status: Option<u16>,
    http_body: Option<String>,
    /// What an error response's `Retry-After` asked for, in seconds.
    retry_after_s: Option<f64>,
    failure: Option<String>,
    /// When the response headers came, and how much of the body came after them, for saying
    /// where a request that timed out was stuck.
    headers_at: Option<Instant>,
    body_bytes: usize,
    last_byte_at: Option<Instant>,
}

/// Finish reasons that mean the server gave up rather than finished: vLLM ends a request it
/// aborted or failed with `abort` or `error`.
const FAILED_ENDINGS: &[&str] = &["abort", "error", "cancelled"];

/// How much of an error response's body a record keeps.
const ERROR_BODY_CHARS: usize = 500;

/// How much of an error response's body is read: the record keeps its start only, and a
/// hostile server could send gigabytes.
const ERROR_BODY_READ_BYTES: usize = 64 * 1024;

/// The longest wait a `Retry-After` is taken at its word for.
pub const MAX_RETRY_AFTER_S: f64 = 300.0;

async fn observe(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    target: &Target,
    deadline: tokio::time::Instant,
) -> Observed {
    let mut sent = Instant::now();
    let mut obs = Observed::new(sent);
    let mut attempt = 0;
    let response = loop {
        let builder = protocol.request(client, &target.server, &target.request);
        sent = Instant::now();
        obs.sent = sent;
        match tokio::time::timeout_at(deadline, builder.send()).await {
            Err(_) => return obs.timed_out(),
            // A pooled connection the server had already closed fails before the request is
            // read (llama-server closes some after a stream): send once more, timed afresh.
            Ok(Err(e)) if attempt == 0 && closed_before_response(&e) => attempt += 1,
            Ok(Err(e)) => return obs.fail(request_error(&e)),
            Ok(Ok(r)) => break r,
        }
    };
    obs.headers_at = Some(Instant::now());
    if !response.status().is_success() {
        let status = response.status();
        obs.http_status = Some(status.as_u16());
        obs.retry_after_s = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after_s);
        let body = tokio::time::timeout_at(deadline, error_body(response))
            .await
            .unwrap_or_default();
        obs.http_body = Some(crate::backend::excerpt(&body, ERROR_BODY_CHARS));
        let mut reason = http_error_reason(status, &body);
        if let Some(s) = obs.retry_after_s {
            reason.push_str(&format!(" (Retry-After: {s} s)"));
        }
        return obs.fail(reason);
    }
    let mut stream = response.bytes_stream();
    let mut decoder = Decoder::new(protocol);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return obs.timed_out(),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let reason = format!(
                    "truncated stream after {}: {}",
                    chunks(obs.generated_at.len()),
                    error_chain(&e)
                );
                return obs.fail(reason);
            }
            Ok(Some(Ok(bytes))) => bytes,
        };
        // Every message completed by one network read arrived at the same moment.
        let at = Instant::now();
        obs.body_bytes += chunk.len();
        obs.last_byte_at = Some(at);
        if let Err(reason) = obs.read(&mut decoder, &chunk, at) {
            return obs.fail(reason);
        }
    }
    obs.end(&mut decoder, Instant::now());
    obs
}

/// The start of an error response's body, read up to `ERROR_BODY_READ_BYTES`; what does not
/// arrive (a broken connection) is simply not there.
async fn error_body(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(bytes)) = stream.next().await {
        let room = ERROR_BODY_READ_BYTES - body.len();
        body.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if body.len() == ERROR_BODY_READ_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A `Retry-After` value in seconds: a number of seconds, or an HTTP date (RFC 9110 10.2.3),
/// counted from now; none for anything else, or a wait in the past.
fn retry_after_s(value: &str) -> Option<f64> {
    let value = value.trim();
    if let Ok(s) = value.parse::<u64>() {
        return Some(s as f64);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let wait = when.duration_since(std::time::SystemTime::now()).ok()?;
    Some(wait.as_secs() as f64)
}

/// "1 chunk", "3 chunks".
fn chunks(n: usize) -> String {
    match n {
        1 => "1 chunk".into(),
        n => format!("{n} chunks"),
    }
}

/// The reason of a request the server answered with an error status: the status, and the
/// server's own message (the `error` of a JSON body, else the body's start).
fn http_error_reason(status: reqwest::StatusCode, body: &str) -> String {
    let message = crate::backend::error_body_message(body, ERROR_BODY_CHARS);
    let hint = match status.as_u16() {
        401 | 403 => {
            " (the server wants a valid API key: name the variable that holds it in the backend's `api_key_env`)"
        }
        _ => "",
    };
    format!("HTTP {status}: {message}{hint}")
}

impl Observed {
    fn new(sent: Instant) -> Observed {
        Observed {
            sent,
            generated_at: Vec::new(),
            first_answer_at: None,
            reasoning_chunks: 0,
            finish_reason: None,
            done_at: None,
            ended_without_done: false,
            report: ServerReport::default(),
            text: String::new(),
            http_status: None,
            http_body: None,
            retry_after_s: None,
            failure: None,
            headers_at: None,
            body_bytes: 0,
            last_byte_at: None,
        }
    }

    fn failed(reason: String) -> Observed {
        Observed::new(Instant::now()).fail(reason)
    }

    fn fail(mut self, reason: String) -> Observed {
        self.failure = Some(reason);
        self
    }

    /// The request's time ran out: where it was stuck says what the server did wrong.
    fn timed_out(self) -> Observed {
        let now = Instant::now();
        let waited = now.duration_since(self.sent).as_secs_f64();
        let reason = match (self.headers_at, self.last_byte_at) {
            (None, _) => format!(
                "timeout after {waited:.1} s waiting for the response headers (the server took the request and answered nothing)"
            ),
            (Some(headers), last) => {
                let quiet = now.duration_since(last.unwrap_or(headers)).as_secs_f64();
                let got = chunks(self.generated_at.len());
                // Silent for most of the wait: stuck. Still sending: slow.
                if quiet >= waited / 2.0 {
                    format!(
                        "timeout after {waited:.1} s: the stream stalled after {got} ({} bytes, then nothing for {quiet:.1} s)",
                        self.body_bytes
                    )
                } else {
                    format!(
                        "timeout after {waited:.1} s with the body still arriving ({got}, {} bytes, the last {quiet:.1} s ago): the server is too slow for the backend's `timeout_s`",
                        self.body_bytes
                    )
                }
            }
        };
        self.fail(reason)
    }

    /// Takes one read of the body, arrived at `at`.
    fn read(&mut self, decoder: &mut Decoder, bytes: &[u8], at: Instant) -> Result<(), String> {
        let mut events = Vec::new();
        let fed = decoder.feed(bytes, &mut events);
        // What came before a failure in the same read is kept.
        self.take(events, at);
        fed
    }

    /// The body has ended at `at`: takes what the decoder still holds, and judges whether the
    /// response was complete.
    fn end(&mut self, decoder: &mut Decoder, at: Instant) {
        let mut events = Vec::new();
        let finished = decoder.finish(&mut events);
        self.take(events, at);
        if let Err(reason) = finished {
            self.failure = Some(reason);
            return;
        }
        if let Some(reason) = self
            .finish_reason
            .as_deref()
            .filter(|r| FAILED_ENDINGS.contains(r))
        {
            self.failure = Some(format!(
                "the server ended generation with finish reason `{reason}`"
            ));
            return;
        }
        if self.done_at.is_none() {
            if self.finish_reason.is_some() {
                // The server said why it stopped; only the end marker is missing.
                self.done_at = Some(at);
                self.ended_without_done = true;
            } else {
                self.failure = Some(format!(
                    "truncated stream: the connection closed after {} without the server's final message",
                    chunks(self.generated_at.len())
                ));
            }
        }
    }

    fn take(&mut self, events: Vec<StreamEvent>, at: Instant) {
        for event in events {
            match event {
                StreamEvent::Content(text) => {
                    self.generated_at.push(at);
                    self.first_answer_at.get_or_insert(at);
                    self.text.push_str(&text);
                }
                StreamEvent::Reasoning(_) => {
                    self.generated_at.push(at);
                    self.reasoning_chunks += 1;
                }
                StreamEvent::Report(r) => self.report.update(r),
                StreamEvent::Finish(reason) => self.finish_reason = Some(reason),
                StreamEvent::Done => {
                    self.done_at.get_or_insert(at);
                }
            }
        }
    }
}

/// Measures a response body given as reads with their arrival times, as if it had come over
/// the network after a request sent at `sent` (tests of the decoders and of the metrics).
pub fn measure_body(
    protocol: &dyn Protocol,
    sent: Instant,
    reads: &[(Instant, &[u8])],
) -> AgentRun {
    let mut obs = Observed::new(sent);
    let mut decoder = Decoder::new(protocol);
    for (at, bytes) in reads {
        if let Err(reason) = obs.read(&mut decoder, bytes, *at) {
            obs.failure = Some(reason);
            return derive(0, String::new(), sent, obs);
        }
    }
    let end = reads.last().map_or(sent, |(at, _)| *at);
    obs.end(&mut decoder, end);
    derive(0, String::new(), sent, obs)
}

fn request_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("connect failed: {}", error_chain(e))
    } else {
        format!("request failed: {}", error_chain(e))
    }
}

/// The error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(count: Option<u64>, millis: Option<f64>) -> Option<f64> {
    match (count, millis) {
        (Some(n), Some(t)) if t > 0.0 => Some(n as f64 / (t / 1000.0)),
        _ => None,
    }
}

fn derive(agent: u32, server: String, group_start: Instant, obs: Observed) -> AgentRun {
    let since = |t: Instant| ms(t.duration_since(obs.sent));
    // The first generated token of any kind: a reasoning model's first thought is its first
    // token, and its answer's first token is `ttft_answer_ms`.
    let ttft = obs.generated_at.first().map(|t| since(*t));
    let end = obs.done_at.or(obs.generated_at.last().copied());
    let e2e = end.map(since);
    let gaps: Vec<f64> = obs
        .generated_at
        .windows(2)
        .map(|w| ms(w[1].duration_since(w[0])))
        .collect();
    let r = &obs.report;
    // Reasoning the server counted but did not stream (the OpenAI API's reasoning models):
    // the visible stream is the answer alone, so the decode window covers answer tokens only.
    let hidden_reasoning = r
        .reasoning_tokens
        .filter(|n| *n > 0 && obs.reasoning_chunks == 0);
    let last_generated = obs.generated_at.last().map(|t| since(*t));
    let decode_window = match (ttft, last_generated) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let streamed_tokens = r
        .output_tokens
        .map(|n| n.saturating_sub(hidden_reasoning.unwrap_or(0)));
    // Every streamed token, reasoning included, over the window they were generated in:
    // first generated chunk to last.
    let decode_tok_s = match (streamed_tokens, decode_window) {
        (Some(n), Some(w)) if n > 1 && w > 0.0 => Some((n - 1) as f64 / (w / 1000.0)),
        _ => None,
    };
    let mut status = RunStatus::Ok;
    let mut reason = obs.failure.clone();
    if reason.is_none() && ttft.is_none() {
        reason = Some("empty response: the server generated nothing".into());
    }
    if reason.is_some() {
        status = RunStatus::Degraded;
    }
    // Server decode covers tokens 2..n (the first is sampled at the end of prefill).
    let server_decode_tok_s = rate(r.output_tokens.map(|n| n.saturating_sub(1)), r.decode_ms);
    AgentRun {
        agent,
        server,
        status,
        reason,
        http_status: obs.http_status,
        http_body: obs.http_body.clone(),
        retry_after_s: obs.retry_after_s,
        sent_offset_ms: ms(obs.sent.duration_since(group_start)),
        ttft_ms: ttft,
        ttft_answer_ms: obs.first_answer_at.map(since),
        e2e_ms: e2e,
        last_token_ms: last_generated,
        chunks: obs.generated_at.len() as u32,
        reasoning_chunks: obs.reasoning_chunks,
        finish_reason: obs.finish_reason.clone(),
        ended_without_done: obs.ended_without_done,
        reasoning_hidden: hidden_reasoning.is_some(),
        output_tokens: r.output_tokens,
        reasoning_tokens: r.reasoning_tokens,
        prompt_tokens: r.prompt_tokens,
        cache_n: r.cache_n,
        load_ms: r.load_ms,
        decode_tok_s,
        server_decode_tok_s,
        server_prefill_tok_s: rate(r.prompt_eval_tokens, r.prompt_ms),
        server_prompt_ms: r.prompt_ms,
        server_decode_ms: r.decode_ms,
        prefill_overhead_ms: ttft.zip(r.prompt_ms).map(|(c, s)| c - s),
        decode_overhead_ms: decode_window.zip(r.decode_ms).map(|(c, s)| c - s),
        itl_p50_ms: percentile(&gaps, 50.0),
        itl_p95_ms: percentile(&gaps, 95.0),
        itl_p99_ms: percentile(&gaps, 99.0),
        text: obs.text,
        ..AgentRun::default()
    }
}

/// Measures how late the runtime polls a task that is ready: an OS thread wakes a tokio task
/// every millisecond and the task records how long the wake-up took to be served. Unlike a
/// tokio interval, this is not rounded to the timer wheel's 1 ms granularity.
pub struct LagMonitor {
    stop: Arc<AtomicBool>,
    collector: tokio::task::JoinHandle<Vec<f64>>,
}

impl LagMonitor {
    pub fn start() -> LagMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let thread_stop = stop.clone();
        std::thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        let collector = tokio::spawn(async move {
            let mut lags = Vec::new();
            while let Some(sent) = rx.recv().await {
                lags.push(ms(sent.elapsed()));
            }
            lags
        });
        LagMonitor { stop, collector }
    }

    pub async fn finish(self) -> LagStats {
        self.stop.store(true, Ordering::Relaxed);
        let lags = self.collector.await.unwrap_or_default();
        LagStats {
            samples: lags.len(),
            p50_ms: percentile(&lags, 50.0),
            p99_ms: percentile(&lags, 99.0),
            max_ms: lags.iter().copied().reduce(f64::max),
        }
    }
}

/// Whether a request failed because its (reused) connection was closed before any response.
fn closed_before_response(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Sends one request and measures it (a workflow step).
pub async fn measure_one(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    target: &Target,
    deadline: tokio::time::Instant,
) -> AgentRun {
    let obs = observe(client, protocol, target, deadline).await;
    let sent = obs.sent;
    derive(0, target.server.clone(), sent, obs)
}

/// Sends one request and measures it, placing its send by its offset from `origin` (the start
/// of a load period) in `sent_offset_ms`.
pub async fn measure_from(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    target: &Target,
    deadline: tokio::time::Instant,
    origin: Instant,
) -> AgentRun {
    let obs = observe(client, protocol, target, deadline).await;
    with_requested(
        derive(0, target.server.clone(), origin, obs),
        &target.request,
    )
}

/// The lengths the request was built to, on its record.
fn with_requested(mut run: AgentRun, request: &GenerationRequest) -> AgentRun {
    run.input_tokens_requested = request.input_tokens.map(u64::from);
    run.output_tokens_requested = request.output_tokens.map(u64::from);
    run
}

/// Sends every target's request at once (released by one barrier) and measures each.
pub async fn run_group(
    client: &reqwest::Client,
    protocol: Arc<dyn Protocol>,
    targets: Vec<Target>,
    timeout: Duration,
) -> (Vec<AgentRun>, Option<GroupStats>) {
    let n = targets.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let deadline = tokio::time::Instant::now() + timeout;
    let servers: Vec<String> = targets.iter().map(|t| t.server.clone()).collect();
    let requests: Vec<GenerationRequest> = targets.iter().map(|t| t.request.clone()).collect();
    let mut tasks = Vec::with_capacity(n);
    for target in targets {
        let (client, protocol, barrier) = (client.clone(), protocol.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            observe(&client, protocol.as_ref(), &target, deadline).await
        }));
    }
    let mut observed = Vec::with_capacity(n);
    for (task, server) in tasks.into_iter().zip(servers) {
        let obs = task
            .await
            .unwrap_or_else(|e| Observed::failed(format!("measurement task failed: {e}")));
        observed.push((server, obs));
    }
    let start = observed
        .iter()
        .map(|(_, o)| o.sent)
        .min()
        .unwrap_or_else(Instant::now);
    let agents: Vec<AgentRun> = observed
        .into_iter()
        .enumerate()
        .zip(&requests)
        .map(|((i, (server, obs)), request)| {
            with_requested(derive(i as u32, server, start, obs), request)
        })
        .collect();
    let group = group_stats(&agents);
    (agents, group)
}

/// Keeps `measured`, one step of a multi-request run (a workflow step, a session turn), in
/// `run`'s requests under `step`; a step that did not finish well degrades the run (its
/// reason names it as `what`), and the caller stops.
pub fn keep_step(run: &mut AgentRun, step: String, what: &str, measured: &AgentRun) -> bool {
    if measured.status != RunStatus::Ok {
        run.status = RunStatus::Degraded;
        run.reason = Some(format!(
            "{what}: {}",
            measured.reason.as_deref().unwrap_or("degraded")
        ));
        return false;
    }
    run.requests.push(crate::record::ReportedRequest {
        step: Some(step),
        ttft_ms: measured.ttft_ms.unwrap_or(0.0),
        e2e_ms: measured.e2e_ms.unwrap_or(0.0),
        output_tokens: measured.output_tokens.unwrap_or(0),
        prompt_tokens: measured.prompt_tokens,
        cache_n: measured.cache_n,
    });
    true
}

/// Runs `one` for every target, all released together by one barrier, and places the agents'
/// runs in a group; a task that fails is a degraded agent, named by `what`.
pub async fn together<T, F, Fut>(
    targets: Vec<T>,
    what: &'static str,
    one: F,
) -> (Vec<AgentRun>, Option<GroupStats>)
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (AgentRun, Instant)> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(targets.len()));
    let mut tasks = Vec::new();
    for target in targets {
        let (barrier, one) = (barrier.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            one(target).await
        }));
    }
    let mut ran = Vec::new();
    for task in tasks {
        ran.push(task.await.unwrap_or_else(|e| {
            (
                AgentRun {
                    status: RunStatus::Degraded,
                    reason: Some(format!("{what} task failed: {e}")),
                    ..AgentRun::default()
                },
                Instant::now(),
            )
        }));
    }
    place_in_group(ran)
}

/// Agents that each ran from their own start: numbered in order, placed in the group by their
/// start's offset from the first one, with the group's figures.
pub fn place_in_group(ran: Vec<(AgentRun, Instant)>) -> (Vec<AgentRun>, Option<GroupStats>) {
    let first = ran.iter().map(|(_, t)| *t).min();
    let agents: Vec<AgentRun> = ran
        .into_iter()
        .enumerate()
        .map(|(i, (mut run, started))| {
            run.agent = i as u32;
            run.sent_offset_ms = first.map_or(0.0, |f| ms(started.duration_since(f)));
            run
        })
        .collect();
    let group = group_stats(&agents);
    (agents, group)
}

/// Group figures of agents released together (DESIGN.md): wall from the first start to the
/// last finish, speedup = sum of agent times / wall, efficiency = speedup / N. Only when every
/// agent finished well: a failed agent's time says nothing about concurrency.
pub fn group_stats(agents: &[AgentRun]) -> Option<GroupStats> {
    let n = agents.len();
    (n > 1 && agents.iter().all(|a| a.status == RunStatus::Ok)).then(|| {
        let wall = agents
            .iter()
            .map(|a| a.sent_offset_ms + a.e2e_ms.unwrap_or(0.0))
            .fold(0.0, f64::max);
        let sum: f64 = agents.iter().filter_map(|a| a.e2e_ms).sum();
        let tokens: Option<u64> = agents.iter().map(|a| a.output_tokens).sum();
        let speedup = sum / wall;
        GroupStats {
            agents: n as u32,
            wall_ms: wall,
            speedup,
            parallel_efficiency: speedup / n as f64,
            aggregate_tok_s: rate(tokens, Some(wall)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::OpenAi;
    use crate::spec::params::{Dialect, OpenAiServer};

    fn openai() -> OpenAi {
        OpenAi {
            dialect: Dialect::Chat(OpenAiServer::Openai),
        }
    }

    fn at(sent: Instant, ms: u64) -> Instant {
        sent + Duration::from_millis(ms)
    }

    // Both forms RFC 9110 allows: seconds, and an HTTP date, counted from now.
    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after_s("120"), Some(120.0));
        assert_eq!(retry_after_s(" 0 "), Some(0.0));
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        let wait = retry_after_s(&httpdate::fmt_http_date(later)).unwrap();
        assert!((88.0..=90.0).contains(&wait), "{wait}");
        assert_eq!(retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_s("soon"), None);
        assert_eq!(retry_after_s("-5"), None);
    }

    /// The OpenAI API's reasoning models count their reasoning in usage but stream only the
    /// answer: 1,000 hidden reasoning tokens and 5 answer tokens over 40 ms are 100 tok/s of
    /// answer, not 1,004 tokens in 40 ms.
    #[test]
    fn reasoning_the_server_hides_is_not_counted_in_the_visible_window() {
        let sent = Instant::now();
        let chunk = |t: &str| {
            format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n")
        };
        let mut reads: Vec<(Instant, String)> = (0..5)
            .map(|i| (at(sent, 900 + 10 * i), chunk("a")))
            .collect();
        reads.push((at(sent, 941), "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1005,\"completion_tokens_details\":{\"reasoning_tokens\":1000}}}\n\ndata: [DONE]\n\n".into()));
        let reads: Vec<(Instant, &[u8])> = reads.iter().map(|(t, b)| (*t, b.as_bytes())).collect();
        let run = measure_body(&openai(), sent, &reads);
        assert_eq!(run.status, RunStatus::Ok, "{:?}", run.reason);
        assert!(run.reasoning_hidden);
        assert_eq!(run.output_tokens, Some(1005));
        let tok_s = run.decode_tok_s.unwrap();
        assert!((tok_s - 100.0).abs() < 1e-6, "{tok_s}");
        assert!(
            (run.ttft_ms.unwrap() - 900.0).abs() < 1e-6,
            "first visible token"
        );
    }

    #[test]
    fn events_before_an_error_in_the_same_read_are_kept() {
        let sent = Instant::now();
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"Hm\"}}]}\n\ndata: {\"error\": {\"message\": \"Internal server error\", \"code\": 500}}\n\n";
        let run = measure_body(&openai(), sent, &[(at(sent, 30), body.as_bytes())]);
        assert_eq!(run.status, RunStatus::Degraded);
        assert_eq!(
            run.reason.as_deref(),
            Some("server error: Internal server error")
        );
        assert_eq!((run.chunks, run.reasoning_chunks), (1, 1));
        assert!((run.ttft_ms.unwrap() - 30.0).abs() < 1e-6);
    }

    #[test]
    fn a_finish_reason_that_means_failure_degrades_the_run() {
        let sent = Instant::now();
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"abort\"}]}\n\n";
        let run = measure_body(&openai(), sent, &[(at(sent, 5), body.as_bytes())]);
        assert_eq!(run.status, RunStatus::Degraded);
        assert!(run.reason.unwrap().contains("finish reason `abort`"));
    }

    #[test]
    fn a_body_cut_inside_a_message_says_truncated() {
        let sent = Instant::now();
        let body =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choi";
        let run = measure_body(&openai(), sent, &[(at(sent, 5), body.as_bytes())]);
        assert_eq!(run.status, RunStatus::Degraded);
        assert!(
            run.reason
                .unwrap()
                .starts_with("truncated stream: the body ended inside a message")
        );
    }
}
