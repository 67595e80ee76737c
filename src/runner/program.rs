//! Agent programs (`scenario: {kind: command}`): the runner starts an external program per
//! agent, in its own process group, and measures what only the outside can see (startup, wall
//! time, peak memory and CPU time of the process tree, how it ended) while the program reports
//! its own requests as JSON lines on stdout (docs/agent-protocol.md). A malformed line, a
//! timeout or a crash makes the run degraded with the reason; the whole process group is
//! killed at the end, so nothing the program started outlives its run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::measure::{ms, place_in_group};
use crate::record::{AgentRun, GroupStats, ReportedRequest, RunStatus};

/// A line of the protocol. Anything else on stdout is an error: logs go to stderr.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    /// Start-up is over: the program is about to send its first request.
    Ready,
    Request {
        #[serde(default)]
        step: Option<String>,
        ttft_ms: f64,
        e2e_ms: f64,
        output_tokens: u64,
        #[serde(default)]
        prompt_tokens: Option<u64>,
    },
}

/// Parses and checks one stdout line.
fn parse_line(line: &str) -> Result<Option<ReportedRequest>, String> {
    match serde_json::from_str::<Line>(line).map_err(|e| e.to_string())? {
        Line::Ready => Ok(None),
        Line::Request {
            step,
            ttft_ms,
            e2e_ms,
            output_tokens,
            prompt_tokens,
        } => {
            if !(ttft_ms.is_finite() && e2e_ms.is_finite() && ttft_ms >= 0.0 && e2e_ms >= ttft_ms) {
                return Err(format!(
                    "needs 0 <= ttft_ms <= e2e_ms, got ttft_ms {ttft_ms} and e2e_ms {e2e_ms}"
                ));
            }
            Ok(Some(ReportedRequest {
                step,
                ttft_ms,
                e2e_ms,
                output_tokens,
                prompt_tokens,
                cache_n: None,
            }))
        }
    }
}

/// What to start for one agent.
pub struct ProgramTarget {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The server URL the program was given (recorded with its run).
    pub server: String,
    /// Where the program's stderr goes.
    pub log: PathBuf,
}

/// Process groups still alive; killed when the group finishes or is abandoned (Ctrl-C).
#[derive(Clone, Default)]
struct Groups(Arc<Mutex<Vec<i32>>>);

impl Groups {
    fn add(&self, pgid: i32) {
        if let Ok(mut g) = self.0.lock() {
            g.push(pgid);
        }
    }

    /// Called once a group's leader is reaped: its pgid may be reused from then on.
    fn remove(&self, pgid: i32) {
        if let Ok(mut g) = self.0.lock() {
            g.retain(|&p| p != pgid);
        }
    }

    fn kill_all(&self) {
        if let Ok(groups) = self.0.lock() {
            for &pgid in groups.iter() {
                kill_group(pgid);
            }
        }
    }
}

struct KillOnDrop(Groups);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill_all();
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: killpg only sends a signal; a group that no longer exists gives ESRCH.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Peak memory of a process group, from samples of /proc.
#[derive(Default)]
struct MemoryPeak {
    /// Highest sum of the members' resident memory seen in one sample, in kB.
    group_kb: u64,
    /// The program's own high-water mark (`VmHWM`, reset by exec, so the runner's memory that
    /// the child shares between fork and exec is not counted): catches spikes between samples.
    program_kb: u64,
}

impl MemoryPeak {
    /// Samples the program and its descendants (walked through /proc/<pid>/task/*/children, so
    /// a sample costs a few reads however many processes the machine runs).
    fn sample(&mut self, pid: i32) {
        let mut pending = vec![pid];
        let mut total = 0;
        let mut seen = 0;
        while let Some(p) = pending.pop() {
            seen += 1;
            if seen > 4096 {
                break;
            }
            let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
                continue;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            total += field("VmRSS:");
            if p == pid {
                self.program_kb = self.program_kb.max(field("VmHWM:"));
            }
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                    pending.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<i32>().ok()),
                    );
                }
            }
        }
        self.group_kb = self.group_kb.max(total);
    }

    fn mb(&self) -> Option<f64> {
        let kb = self.group_kb.max(self.program_kb);
        (kb > 0).then(|| kb as f64 / 1024.0)
    }
}

/// How a waited-for process ended, and its resource use (with its waited-for children's).
struct Ended {
    status: i32,
    cpu_s: f64,
}

enum Event {
    Line(Instant, std::io::Result<String>),
    Eof,
    Exited(Ended, Instant),
}

/// Waits for `pid` to end (on its own thread, so the exit time is exact), then ends the rest
/// of its process group and reaps it. The group is killed while the exited leader is still a
/// zombie, so its pgid cannot have been reused by another process yet.
fn wait_end_and_reap(pid: i32, groups: &Groups) -> (Ended, Instant) {
    loop {
        // SAFETY: an all-zero siginfo is valid for waitid to fill in; WNOWAIT leaves the
        // child waitable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let at = Instant::now();
    // Whatever it started may still hold stdout open: the group goes with it.
    kill_group(pid);
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only to the two out-pointers, which are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid
            || (r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
        {
            break;
        }
    }
    groups.remove(pid);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // ru_maxrss is not used: it includes the runner's own memory, shared by the child between
    // fork and exec.
    (
        Ended {
            status,
            cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
        },
        at,
    )
}

fn describe_status(status: i32) -> (bool, String) {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code == 0, format!("exit {code}"))
    } else if libc::WIFSIGNALED(status) {
        (false, format!("signal {}", libc::WTERMSIG(status)))
    } else {
        (false, format!("status {status}"))
    }
}

/// The last non-empty line of the program's stderr, for the reason of a failed run.
fn last_stderr_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(crate::backend::excerpt(line.trim(), 200))
}

/// Runs one agent program; returns its run and when it was started.
fn run_one(
    agent: u32,
    target: ProgramTarget,
    root: &Path,
    timeout: Duration,
    barrier: &Barrier,
    groups: &Groups,
) -> (AgentRun, Instant) {
    let mut run = AgentRun {
        agent,
        server: target.server.clone(),
        ..AgentRun::default()
    };
    let degrade = |run: &mut AgentRun, reason: String| {
        if run.status == RunStatus::Ok {
            run.status = RunStatus::Degraded;
            run.reason = Some(reason);
        }
    };
    let stderr = std::fs::File::create(&target.log);
    barrier.wait();
    let started = Instant::now();
    let mut command = Command::new(&target.argv[0]);
    command
        .args(&target.argv[1..])
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command.stderr(stderr.map_or(Stdio::null(), Stdio::from));
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            degrade(&mut run, format!("cannot start `{}`: {e}", target.argv[0]));
            return (run, started);
        }
    };
    let pid = child.id() as i32;
    groups.add(pid);
    let deadline = started + timeout;
    // One channel for everything the program does: lines, end of output, exit.
    // Bounded: a program that floods stdout waits for the runner instead of filling memory.
    let (tx, rx) = mpsc::sync_channel::<Event>(4096);
    let mut eof = child.stdout.is_none();
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(Event::Line(Instant::now(), line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Eof);
        });
    }
    let waiter_groups = groups.clone();
    std::thread::spawn(move || {
        let (ended, at) = wait_end_and_reap(pid, &waiter_groups);
        let _ = tx.send(Event::Exited(ended, at));
    });
    let mut memory = MemoryPeak::default();
    let mut sampled = Instant::now() - Duration::from_secs(1);
    let mut ready_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut exited: Option<(Ended, Instant)> = None;
    let mut line_no = 0;
    while !(eof && exited.is_some()) {
        let now = Instant::now();
        // Memory every 10 ms, whether or not the program is printing.
        if exited.is_none() && now.duration_since(sampled) >= Duration::from_millis(10) {
            memory.sample(pid);
            sampled = now;
        }
        // The deadline holds however much the program prints. The waiter reaps the leader
        // after a kill, so this only signals a group whose leader is not yet reaped.
        if exited.is_none() && now >= deadline && !timed_out {
            timed_out = true;
            kill_group(pid);
        }
        // Output held open past the exit by something outside the group: stop waiting.
        let stuck = exited
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(2))
            || now > deadline + Duration::from_secs(10);
        if stuck {
            break;
        }
        let wait = if exited.is_none() && !timed_out {
            deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(10))
        } else {
            Duration::from_millis(10)
        };
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(Event::Line(at, Ok(line))) => {
                line_no += 1;
                if line.trim().is_empty() {
                    continue;
                }
                match parse_line(&line) {
                    Ok(request) => {
                        ready_at.get_or_insert(at);
                        run.requests.extend(request);
                    }
                    Err(e) => degrade(
                        &mut run,
                        format!(
                            "malformed metrics line {line_no}: `{}`: {e}",
                            crate::backend::excerpt(line.trim(), 200)
                        ),
                    ),
                }
            }
            Ok(Event::Line(_, Err(e))) => {
                degrade(&mut run, format!("cannot read the program's output: {e}"))
            }
            Ok(Event::Eof) => eof = true,
            Ok(Event::Exited(e, at)) => exited = Some((e, at)),
            Err(_) => {}
        }
    }
    let (ended, finished) = exited.unwrap_or((
        Ended {
            status: 0,
            cpu_s: 0.0,
        },
        Instant::now(),
    ));
    run.e2e_ms = Some(ms(finished.duration_since(started)));
    run.startup_ms = ready_at.map(|t| ms(t.duration_since(started)));
    run.process_peak_rss_mb = memory.mb();
    run.process_cpu_s = Some(ended.cpu_s);
    let (clean, how) = describe_status(ended.status);
    if timed_out {
        run.exit = Some("killed at timeout".into());
        degrade(
            &mut run,
            format!(
                "timed out after {:.0} s; the program was killed",
                timeout.as_secs_f64()
            ),
        );
    } else {
        run.exit = Some(how.clone());
        if !clean {
            let stderr = last_stderr_line(&target.log)
                .map(|l| format!("; last stderr line: {l}"))
                .unwrap_or_default();
            degrade(&mut run, format!("the program ended with {how}{stderr}"));
        }
    }
    if run.requests.is_empty() {
        degrade(
            &mut run,
            "the program reported no requests (docs/agent-protocol.md)".into(),
        );
    }
    summarise_requests(&mut run);
    (run, started)
}

/// The program's requests as one agent's figures: TTFT of its first request (the cold one),
/// tokens summed, decode rate over all decode time.
pub fn summarise_requests(run: &mut AgentRun) {
    let r = &run.requests;
    run.ttft_ms = r.first().map(|q| q.ttft_ms);
    if r.is_empty() {
        return;
    }
    run.output_tokens = Some(r.iter().map(|q| q.output_tokens).sum());
    run.prompt_tokens = r.iter().map(|q| q.prompt_tokens).sum();
    let decoded: u64 = r.iter().map(|q| q.output_tokens.saturating_sub(1)).sum();
    let window_ms: f64 = r
        .iter()
        .filter(|q| q.output_tokens > 1)
        .map(|q| q.e2e_ms - q.ttft_ms)
        .sum();
    run.decode_tok_s =
        (decoded > 0 && window_ms > 0.0).then(|| decoded as f64 / (window_ms / 1000.0));
}

/// Starts every target at once (one barrier) and measures each program; the group figures
/// as for concurrent requests. Dropping the returned future kills every program started.
pub async fn run_group(
    targets: Vec<ProgramTarget>,
    root: &Path,
    timeout: Duration,
) -> (Vec<AgentRun>, Option<GroupStats>) {
    let groups = Groups::default();
    let _guard = KillOnDrop(groups.clone());
    let barrier = Arc::new(Barrier::new(targets.len()));
    let mut tasks = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        let (root, barrier, groups) = (root.to_path_buf(), barrier.clone(), groups.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            run_one(i as u32, target, &root, timeout, &barrier, &groups)
        }));
    }
    let mut ran = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        ran.push(task.await.unwrap_or_else(|e| {
            let failed = AgentRun {
                agent: i as u32,
                status: RunStatus::Degraded,
                reason: Some(format!("measurement thread failed: {e}")),
                ..AgentRun::default()
            };
            (failed, Instant::now())
        }));
    }
    // e2e counts from each program's own start; the offset places it in the group.
    place_in_group(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_are_checked() {
        assert_eq!(parse_line(r#"{"event": "ready"}"#), Ok(None));
        let r = parse_line(r#"{"event": "request", "step": "analyse", "ttft_ms": 120.5, "e2e_ms": 900, "output_tokens": 64, "prompt_tokens": 30}"#).unwrap().unwrap();
        assert_eq!(
            (r.step.as_deref(), r.ttft_ms, r.output_tokens),
            (Some("analyse"), 120.5, 64)
        );
        assert!(
            parse_line(r#"{"event": "request", "ttft": 1, "e2e_ms": 2, "output_tokens": 3}"#)
                .unwrap_err()
                .contains("unknown field `ttft`")
        );
        assert!(
            parse_line(r#"{"event": "request", "ttft_ms": 5, "e2e_ms": 2, "output_tokens": 3}"#)
                .unwrap_err()
                .contains("ttft_ms <= e2e_ms")
        );
        assert!(parse_line("starting up...").is_err());
        assert!(
            parse_line(r#"{"event": "done"}"#)
                .unwrap_err()
                .contains("unknown variant `done`")
        );
    }

    #[test]
    fn requests_summarise_into_one_agent() {
        let mut run = AgentRun {
            requests: vec![
                ReportedRequest {
                    step: None,
                    ttft_ms: 300.0,
                    e2e_ms: 1300.0,
                    output_tokens: 101,
                    prompt_tokens: Some(10),
                    cache_n: None,
                },
                ReportedRequest {
                    step: None,
                    ttft_ms: 50.0,
                    e2e_ms: 1050.0,
                    output_tokens: 101,
                    prompt_tokens: Some(20),
                    cache_n: None,
                },
            ],
            ..AgentRun::default()
        };
        summarise_requests(&mut run);
        assert_eq!(
            (run.ttft_ms, run.output_tokens, run.prompt_tokens),
            (Some(300.0), Some(202), Some(30))
        );
        assert_eq!(run.decode_tok_s, Some(100.0));
    }
}
