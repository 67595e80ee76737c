//! Every fault the pacer can play, in every protocol the runner speaks: the faulted run is
//! degraded with a reason that says what the server did, the experiment goes on, and the run
//! after it is measured normally. The pacer faults every second request to an endpoint, so
//! each backend's three repetitions are: normal, faulted, normal.

mod common;

use common::{
    assert_ran_but_for_client_lateness, banterhearts, journal, pacer, project, reliability,
};
use serde_json::Value;

/// The protocols, each its own backend on the one pacer: llama.cpp `/completion`, OpenAI
/// chat (vLLM's dialect), Ollama generate and chat.
const PROTOCOLS: [&str; 4] = ["llama", "openai", "generate", "chat"];

const TOKENS: u64 = 6;

fn spec(url: &str, timeout_s: f64) -> String {
    let b =
        |kind: &str| format!("{{{kind}, endpoints: [\"http://{url}\"], timeout_s: {timeout_s}}}");
    format!(
        "id: TR980\ntitle: faults\nstatus: running\nquestion: does a server's fault cost more than its own run?\nbackends:\n  llama: {}\n  openai: {}\n  generate: {}\n  chat: {}\nworkload: {{prompts: [a], max_tokens: {TOKENS}}}\nmatrix:\n  backend: [llama, openai, generate, chat]\nrepetitions: 3\n",
        b("kind: llama-cpp"),
        b("kind: openai, server: vllm, model: pacer"),
        b("kind: ollama, model: pacer"),
        b("kind: ollama, model: pacer, endpoint: chat"),
    )
}

/// A pacer of six-token responses (first after 5 ms, then every 2 ms) that plays `fault` on
/// every `every`-th request to an endpoint.
fn fault_pacer(fault: &str, every: u32, extra: &[&str]) -> common::Pacer {
    let every = every.to_string();
    let mut args = vec!["--ttft-ms", "5", "--itl-ms", "2", "--tokens", "6"];
    args.extend(["--fault", fault, "--fault-every", &every]);
    args.extend(extra);
    pacer(&args)
}

/// Runs TR980 against a pacer playing `fault` (with `extra` pacer arguments) and checks, per
/// protocol, that repetition 1 is degraded with a reason for which `reason_ok` holds and
/// repetitions 0 and 2 are whole. Returns the records, for the fault's own checks.
fn faulted(
    fault: &str,
    extra: &[&str],
    timeout_s: f64,
    reason_ok: impl Fn(&str) -> bool,
) -> (tempfile::TempDir, Vec<Value>) {
    let _serial = common::serial();
    let p = fault_pacer(fault, 2, extra);
    let dir = project(&[("TR980.yaml", &spec(&p.addr, timeout_s))]);
    let out = banterhearts(dir.path(), &["run", "TR980", "-q"]);
    // Degraded runs are data: the experiment finished, and says some runs are degraded.
    assert_eq!(out.code, 1, "{fault}: {}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let records = journal(dir.path(), "TR980");
    assert_eq!(records.len(), 12, "{fault}: every run is recorded");
    for protocol in PROTOCOLS {
        let rep = |n: u64| {
            records
                .iter()
                .find(|r| r["params"]["backend"] == protocol && r["repetition"] == n)
                .unwrap_or_else(|| panic!("{fault}: {protocol} repetition {n} is missing"))
        };
        for n in [0, 2] {
            let r = rep(n);
            let a = &r["agents"][0];
            assert_eq!(r["status"], "ok", "{fault} {protocol} rep {n}: {r}");
            assert_eq!(
                a["output_tokens"], TOKENS,
                "{fault} {protocol} rep {n}: {a}"
            );
            assert_eq!(a["chunks"], TOKENS, "{fault} {protocol} rep {n}: {a}");
            assert!(a["ttft_ms"].as_f64().is_some_and(|t| t >= 5.0), "{a}");
        }
        let r = rep(1);
        assert_eq!(r["status"], "degraded", "{fault} {protocol}: {r}");
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason_ok(reason),
            "{fault} {protocol}: unexpected reason {reason:?}"
        );
        assert!(
            !reason.chars().any(char::is_control),
            "{fault} {protocol}: a control character reached the reason: {reason:?}"
        );
    }
    reliability(
        &format!(
            "pacer fault `{fault}`{} on every second run, in each protocol (llama.cpp, OpenAI chat, Ollama generate and chat)",
            if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(" "))
            }
        ),
        PROTOCOLS.len() * 3,
        &format!(
            "the faulted run degraded ({}), the next measured normally",
            first_reason(&records)
        ),
        "nothing",
    );
    (dir, records)
}

/// The reason of the first degraded run, without the agent prefix, for the reliability table.
fn first_reason(records: &[Value]) -> String {
    let reason = records
        .iter()
        .find_map(|r| r["reason"].as_str())
        .unwrap_or_default();
    reason
        .strip_prefix("agent 0: ")
        .unwrap_or(reason)
        .to_owned()
}

fn agent<'a>(records: &'a [Value], protocol: &str, rep: u64) -> &'a Value {
    let r = records
        .iter()
        .find(|r| r["params"]["backend"] == protocol && r["repetition"] == rep)
        .unwrap();
    &r["agents"][0]
}

#[test]
fn a_connection_reset_mid_stream_degrades_that_run_only() {
    let (_dir, records) = faulted("reset", &[], 5.0, |r| {
        r.contains("truncated stream after 1 chunk") && r.to_lowercase().contains("reset")
    });
    // The token before the reset is kept with the degraded run.
    assert_eq!(agent(&records, "llama", 1)["chunks"], 1);
}

#[test]
fn a_stream_that_stalls_after_its_first_token_times_out_as_stalled() {
    faulted("stall-after-first-token", &[], 1.0, |r| {
        r.contains("timeout after 1.0 s: the stream stalled after 1 chunk")
    });
}

#[test]
fn a_server_that_never_sends_headers_times_out_waiting_for_them() {
    faulted("stall-before-headers", &[], 1.0, |r| {
        r.contains("timeout after 1.0 s waiting for the response headers")
    });
}

#[test]
fn garbage_in_a_stream_is_refused_and_its_bytes_never_reach_the_terminal() {
    faulted("garbage", &[], 5.0, |r| {
        r.contains("malformed JSON from server")
    });
}

#[test]
fn a_ten_megabyte_line_is_refused_without_holding_it() {
    let (dir, _) = faulted("long-line", &[], 10.0, |r| {
        r.contains("a message of over 4 MiB")
    });
    // The 10 MB line was not stored: twelve runs' records stay small.
    let size = std::fs::metadata(dir.path().join("data/TR980/runs.jsonl"))
        .unwrap()
        .len();
    assert!(size < 100_000, "the journal holds {size} bytes");
}

#[test]
fn a_stream_closed_without_its_final_event_is_truncated() {
    let (_dir, records) = faulted("no-final-event", &[], 5.0, |r| {
        r.contains("the connection closed after 6 chunks without the server's final message")
    });
    assert_eq!(agent(&records, "chat", 1)["chunks"], TOKENS);
}

#[test]
fn a_server_dripping_a_byte_a_second_times_out_as_slow_not_stalled() {
    faulted("drip", &[], 2.5, |r| {
        r.contains("timeout after 2.5 s with the body still arriving")
    });
}

/// Checks an error status: the status in the reason and record, the server's message, and a
/// `Retry-After` both in the reason and obeyed: the next run starts no sooner.
fn status(code: u16, text: &str, retry_after: Option<&str>) {
    let extra: Vec<&str> = retry_after.map_or(vec![], |s| vec!["--retry-after", s]);
    let want = format!("HTTP {code} {text}: pacer: injected HTTP {code}");
    let suffix = retry_after.map(|s| format!("(Retry-After: {s} s)"));
    let fault = format!("http-{code}");
    let (_dir, records) = faulted(&fault, &extra, 5.0, |r| {
        r.contains(&want) && suffix.as_ref().is_none_or(|s| r.ends_with(s.as_str()))
    });
    for protocol in PROTOCOLS {
        let a = agent(&records, protocol, 1);
        assert_eq!(a["http_status"], code, "{a}");
        match retry_after {
            Some(s) => assert_eq!(a["retry_after_s"].as_f64(), s.parse().ok(), "{a}"),
            None => assert!(a.get("retry_after_s").is_none(), "{a}"),
        }
    }
    if let Some(s) = retry_after {
        // Runs go in the journal's order; each faulted one is followed by a wait.
        let wait_ms = s.parse::<f64>().unwrap() * 1000.0;
        for pair in records.windows(2) {
            if pair[0]["status"] == "degraded" {
                let gap = pair[1]["started_unix_ms"].as_f64().unwrap()
                    - pair[0]["started_unix_ms"].as_f64().unwrap();
                assert!(
                    gap >= wait_ms,
                    "the run after a Retry-After started {gap} ms later"
                );
            }
        }
    }
}

#[test]
fn http_429_with_and_without_retry_after() {
    status(429, "Too Many Requests", Some("1"));
    status(429, "Too Many Requests", None);
}

#[test]
fn http_500_with_and_without_retry_after() {
    status(500, "Internal Server Error", Some("1"));
    status(500, "Internal Server Error", None);
}

#[test]
fn http_503_with_and_without_retry_after() {
    status(503, "Service Unavailable", Some("1"));
    status(503, "Service Unavailable", None);
}

/// Each fault and a piece of the reason it must give, for the load test.
const FAULTS: [(&str, &str); 10] = [
    ("reset", "truncated stream after 1 chunk"),
    (
        "stall-after-first-token",
        "the stream stalled after 1 chunk",
    ),
    ("stall-before-headers", "waiting for the response headers"),
    ("garbage", "malformed JSON from server"),
    ("long-line", "a message of over 4 MiB"),
    (
        "http-429",
        "HTTP 429 Too Many Requests: pacer: injected HTTP 429 (Retry-After: 1 s)",
    ),
    (
        "http-500",
        "HTTP 500 Internal Server Error: pacer: injected HTTP 500",
    ),
    (
        "http-503",
        "HTTP 503 Service Unavailable: pacer: injected HTTP 503 (Retry-After: 1 s)",
    ),
    (
        "no-final-event",
        "closed after 6 chunks without the server's final message",
    ),
    ("drip", "with the body still arriving"),
];

/// Under serving load a fault costs its own requests: every third request of a period is
/// faulted, and is recorded with its reason beside the others, which are measured normally.
/// An open-loop schedule does not wait out a `Retry-After` (it must not bend to the server
/// it measures), so the period's other requests go out on time.
#[test]
fn every_fault_in_a_load_period_costs_only_its_own_requests() {
    let _serial = common::serial();
    let mut cases = 0;
    for (fault, want) in FAULTS {
        let retry: &[&str] = if fault.starts_with("http-") && fault != "http-500" {
            &["--retry-after", "1"]
        } else {
            &[]
        };
        let p = fault_pacer(fault, 3, retry);
        let load = spec(&p.addr, 1.2).replace(
            "repetitions: 3\n",
            "  scenario: [{kind: load, rate: 20, arrival: constant, duration_s: 0.3}]\nrepetitions: 1\n",
        );
        let dir = project(&[("TR980.yaml", &load)]);
        eprintln!("under the fault {fault}:");
        let out = banterhearts(dir.path(), &["run", "TR980", "-q"]);
        let records = journal(dir.path(), "TR980");
        // A fault must not degrade the period; the client's own lateness may (the schedule
        // check below allows 40 ms).
        assert_ran_but_for_client_lateness(&out, &records);
        assert_eq!(records.len(), PROTOCOLS.len(), "{fault}");
        for r in &records {
            let protocol = &r["params"]["backend"];
            let file = dir
                .path()
                .join("data/TR980/requests")
                .join(format!("{}.jsonl", r["run_id"].as_str().unwrap()));
            let requests: Vec<Value> = std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(requests.len(), 6, "{fault} {protocol}");
            // The pacer faults every third request in the order they reach it, which
            // concurrent requests on new connections need not keep: two of the six, whichever.
            let mut faulted = 0;
            for (i, q) in requests.iter().enumerate() {
                if q["status"] == "degraded" {
                    let reason = q["reason"].as_str().unwrap_or_default();
                    assert!(reason.contains(want), "{fault} {protocol} {i}: {reason:?}");
                    faulted += 1;
                } else {
                    assert_eq!(q["status"], "ok", "{fault} {protocol} {i}: {q}");
                    assert_eq!(q["output_tokens"], TOKENS, "{fault} {protocol} {i}: {q}");
                }
                // On schedule: 50 ms apart, whatever the server did before.
                let lag = q["sent_ms"].as_f64().unwrap() - 50.0 * i as f64;
                assert!(lag < 40.0, "{fault} {protocol} {i} went out {lag} ms late");
            }
            assert_eq!(faulted, 2, "{fault} {protocol}: {requests:?}");
            cases += requests.len();
        }
    }
    reliability(
        "every pacer fault on every third request of a load period, in each protocol",
        cases,
        "each faulted request recorded with its reason; the others measured and sent on schedule",
        "nothing",
    );
}
