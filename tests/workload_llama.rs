//! Workloads shaped like production, against a real llama-server with SmolLM2-135M: prompts
//! of exact token lengths (the server's own count is the length asked for plus its chat
//! template's tokens), and shared prefixes whose cache a warm cell reuses and a cold cell
//! cannot.

mod common;

use common::{
    assert_ran_but_for_client_lateness, banterhearts_with_model, journal, project, serial,
};

fn requests(
    root: &std::path::Path,
    tr: &str,
    record: &serde_json::Value,
) -> Vec<serde_json::Value> {
    let file = root
        .join("data")
        .join(tr)
        .join(record["load"]["requests_file"].as_str().unwrap());
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The server's count of `tokens` ("output" or "prompt") over a scrape window agrees with
/// the client's: within `share` of it, or within the tokens too close to a boundary scrape to
/// say on which side the server counted them.
fn assert_agree(summary: &serde_json::Value, tokens: &str, share: f64) {
    let client = summary[format!("client_{tokens}_tokens")].as_f64().unwrap();
    let server = summary["delta"][format!("{tokens}_tokens")]
        .as_f64()
        .unwrap();
    let near = summary[format!("boundary_{tokens}_tokens")]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (server - client).abs() <= (share * client).max(near),
        "{tokens} tokens: server {server}, client {client}: {summary}"
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn exact_input_lengths_and_a_warm_cache_against_a_cold_one() {
    let _serial = serial();
    // Fixed and drawn lengths, each warm and cold, every prompt starting with one shared
    // 160-token prefix (a cold prompt starts with its nonce, so it shares nothing).
    let spec = r#"id: TR970
title: shaped workloads
status: running
question: are input lengths exact, and does a warm prefix cache show?
backends:
  llama:
    kind: openai
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "4096", "-np", "1", "-t", "2"]}
    timeout_s: 120
workload: {output_tokens: 4, prefix: {tokens: 160, groups: 1}}
matrix:
  input_tokens: [200, {dist: uniform, min: 180, max: 320}]
  cache: [warm, cold]
  scenario: [{kind: load, concurrency: 1, requests: 8}]
repetitions: 1
"#;
    let dir = project(&[("TR970.yaml", spec)]);
    common::copy_corpus(dir.path());
    let out = banterhearts_with_model(dir.path(), &["run", "TR970"]);
    let records = journal(dir.path(), "TR970");
    assert_ran_but_for_client_lateness(&out, &records);
    assert_eq!(records.len(), 4);
    let mut ttft = std::collections::HashMap::new();
    for r in &records {
        let build = &r["prompts"];
        let overhead = build["template_overhead_tokens"]
            .as_i64()
            .expect("measured");
        assert!(
            (1..100).contains(&overhead),
            "a chat template adds tokens: {build}"
        );
        assert_eq!(build["corpus"], "data/corpus/shakespeare.txt");
        let reqs = requests(dir.path(), "TR970", r);
        assert_eq!(reqs.len(), 8);
        assert_eq!(
            r["load"]["summary"]["reached_output_share"], 1.0,
            "every request reached its output length"
        );
        for q in &reqs {
            let asked = q["input_tokens_requested"].as_i64().unwrap();
            assert_eq!(
                q["prompt_tokens"].as_i64().unwrap(),
                asked + overhead,
                "every prompt is its length plus the template: {q}"
            );
            assert_eq!(q["output_tokens"], 4, "output length reached: {q}");
        }
        let cache = r["params"]["cache"].as_str().unwrap();
        let lengths: std::collections::HashSet<i64> = reqs
            .iter()
            .map(|q| q["input_tokens_requested"].as_i64().unwrap())
            .collect();
        if r["params"]["input_tokens"] == 200 {
            assert_eq!(lengths, [200].into());
        } else {
            assert!(lengths.len() > 4, "drawn lengths vary: {lengths:?}");
            assert!(lengths.iter().all(|n| (180..=320).contains(n)));
        }
        let cached: Vec<i64> = reqs[1..]
            .iter()
            .map(|q| q["cache_n"].as_i64().unwrap())
            .collect();
        match cache {
            // After the first request, the shared prefix (and the template's head) is in the
            // cache for every later one.
            "warm" => assert!(cached.iter().all(|c| *c >= 160), "{cached:?}"),
            _ => assert!(cached.iter().all(|c| *c == 0), "{cached:?}"),
        }
        let key = format!("{cache} {}", r["params"]["input_tokens"]);
        ttft.insert(
            key,
            median(
                reqs[1..]
                    .iter()
                    .map(|q| q["ttft_ms"].as_f64().unwrap())
                    .collect(),
            ),
        );
    }
    assert!(
        ttft["warm 200"] < ttft["cold 200"],
        "prefill of a cached prefix is skipped: {ttft:?}"
    );
}

/// A Mooncake-format trace replayed on llama.cpp's `/completion`, whose prompts go as token
/// ids: requests sharing a hash id share exactly that 512-token block, so each request finds
/// in the server's cache what it shares with the requests before it, and nothing else.
#[test]
fn a_trace_replay_reuses_exactly_its_shared_blocks() {
    let _serial = serial();
    let trace = [
        (0, 600, &[1][..]),
        (1500, 560, &[1][..]),
        (3000, 600, &[2][..]),
        (4500, 530, &[2][..]),
        (6000, 520, &[1][..]),
        (7500, 600, &[1][..]),
    ];
    let lines: String = trace
        .iter()
        .map(|(t, n, ids)| {
            format!(
                "{{\"timestamp\": {t}, \"input_length\": {n}, \"output_length\": 3, \"hash_ids\": {ids:?}}}\n"
            )
        })
        .collect();
    let spec = r#"id: TR971
title: trace replay
status: running
question: does a replay reuse what its trace shares?
backends:
  llama:
    kind: llama-cpp
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "4096", "-np", "1", "-t", "2"]}
    timeout_s: 120
workload: {max_tokens: 3}
matrix:
  scenario: [{kind: load, trace: traces/small.jsonl, time_scale: 3}]
repetitions: 1
"#;
    let dir = project(&[("TR971.yaml", spec)]);
    std::fs::create_dir_all(dir.path().join("experiments/traces")).unwrap();
    std::fs::write(dir.path().join("experiments/traces/small.jsonl"), lines).unwrap();
    common::copy_corpus(dir.path());
    let out = banterhearts_with_model(dir.path(), &["run", "TR971"]);
    let records = journal(dir.path(), "TR971");
    assert_ran_but_for_client_lateness(&out, &records);
    assert_eq!(records[0]["load"]["pattern"], "trace");
    assert_eq!(
        records[0]["prompts"]["template_overhead_tokens"], 0,
        "no template on /completion"
    );
    let reqs = requests(dir.path(), "TR971", &records[0]);
    assert_eq!(reqs.len(), trace.len());
    for (i, (q, (t, n, ids))) in reqs.iter().zip(trace).enumerate() {
        // On the trace's own times, three times as fast.
        let due = q["scheduled_ms"].as_f64().unwrap();
        assert!((due - t as f64 / 3.0).abs() < 1e-6, "{q}");
        assert_eq!(q["prompt_tokens"], n, "exact length: {q}");
        assert_eq!(q["output_tokens"], 3);
        // What it shares with an earlier request: one block when one of them names the same
        // id (llama-server keeps earlier prompts' states in its prompt cache, not only the
        // slot's last one).
        let shared = trace[..i].iter().any(|earlier| earlier.2 == ids);
        let cached = q["cache_n"].as_i64().unwrap();
        if shared {
            assert!(
                (511..=512).contains(&cached),
                "request {i} reuses its block: {q}"
            );
        } else {
            assert!(
                cached < 16,
                "request {i} shares nothing with the one before: {q}"
            );
        }
    }
}

/// A 3-turn session: each turn resends the conversation so far, so the prompt grows by the
/// last turn's answer and the new message, and the server finds the earlier turns cached.
#[test]
fn a_three_turn_session_grows_its_prompt_and_reuses_the_cache() {
    let _serial = serial();
    let spec = r#"id: TR972
title: sessions
status: running
question: does a session's prompt grow and its cache get reused?
backends:
  llama:
    kind: openai
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "4096", "-np", "1", "-t", "2"]}
    timeout_s: 120
workload: {input_tokens: 48, output_tokens: 6, session: {turns: 3, think_time_ms: 50}}
repetitions: 2
"#;
    let dir = project(&[("TR972.yaml", spec)]);
    common::copy_corpus(dir.path());
    let out = banterhearts_with_model(dir.path(), &["run", "TR972"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for r in journal(dir.path(), "TR972") {
        let turns = r["agents"][0]["requests"].as_array().unwrap().clone();
        assert_eq!(turns.len(), 3, "{r}");
        let prompt = |k: usize| turns[k]["prompt_tokens"].as_i64().unwrap();
        let cached = |k: usize| turns[k]["cache_n"].as_i64().unwrap();
        for (k, turn) in turns.iter().enumerate().skip(1) {
            assert_eq!(turn["step"], format!("turn {}", k + 1));
            // The previous prompt, its 6-token answer and the new 48-token message, plus the
            // template's few tokens around each message.
            let grew = prompt(k) - prompt(k - 1);
            assert!(
                (48 + 6..48 + 6 + 20).contains(&grew),
                "turn {}: grew by {grew}",
                k + 1
            );
            // Everything up to the last turn's answer is in the cache already.
            assert!(
                cached(k) >= prompt(k - 1) - 8,
                "turn {}: {} cached of {}",
                k + 1,
                cached(k),
                prompt(k)
            );
        }
    }
    common::copy_templates(dir.path());
    let out = common::banterhearts(dir.path(), &["report", "TR972"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = std::fs::read_to_string(dir.path().join("reports/TR972.md")).unwrap();
    assert!(
        report.contains("### Sessions") && report.contains("session of 3 turns"),
        "{report}"
    );
}

/// A load period against a real llama-server scrapes its `/metrics` (the runner launches it
/// with `--metrics`). Within capacity the server's counts of prompt and generated tokens match
/// the client's; one slot under twice the load it can take builds a queue the server
/// reports, and over the measured window the server's count of generated tokens agrees
/// with the client's within 1% (usually exactly; or within the tokens of requests that finished
/// too close to a boundary scrape to call), warm-up stragglers finishing in the window
/// included; a run whose requests were cut off ends its window before the cut.
#[test]
fn server_metrics_are_scraped_and_reconcile_with_the_client() {
    let _serial = serial();
    let spec = r#"id: TR972
title: server telemetry
status: running
question: does the server count what the client counted?
backends:
  llama:
    kind: llama-cpp
    launch: {count: 1, args: ["-m", "${BANTERHEARTS_MODEL}", "-c", "2048", "-np", "1", "-t", "2"]}
    timeout_s: 60
    scrape_ms: 250
workload: {prompts: [hello, "tell me a story"], max_tokens: 24, ignore_eos: true}
matrix:
  rate: [2, 8]
  scenario: [{kind: load, arrival: poisson, duration_s: 3, warmup_s: 1, grace_s: 15}]
repetitions: 1
"#;
    let dir = project(&[("TR972.yaml", spec)]);
    let out = banterhearts_with_model(dir.path(), &["run", "TR972"]);
    let records = journal(dir.path(), "TR972");
    assert_ran_but_for_client_lateness(&out, &records);
    assert_eq!(records.len(), 2);
    let at = |rate: f64| {
        let r = records
            .iter()
            .find(|r| r["params"]["rate"] == rate)
            .unwrap();
        r["load"]["server_metrics"].clone()
    };
    // Within capacity nothing is cut off, and both counts match.
    let light = &at(2.0)["summary"];
    assert_eq!(light["client_not_finished"], 0, "{light}");
    for tokens in ["output", "prompt"] {
        assert_agree(light, tokens, 0.01);
    }
    let m = &at(8.0);
    assert!(m["error"].is_null(), "{m}");
    assert_eq!(m["interval_ms"], 250.0);
    let scrapes = m["scrapes"].as_array().unwrap();
    // Every 250 ms over the 1 + 3 s schedule at least, plus the end of the warm-up and the
    // last one.
    assert!(scrapes.len() >= 17, "{} scrapes", scrapes.len());
    let s = &m["summary"];
    assert!(
        (s["from_ms"].as_f64().unwrap() - 1000.0).abs() < 50.0,
        "{s}"
    );
    assert!(s["client_output_tokens"].as_f64().unwrap() > 0.0, "{s}");
    assert_agree(s, "output", 0.01);
    // If requests were cut off at the end of the grace (a machine busy with other tests), the
    // window ends at the last scrape before the cut and prompts are not matched (the server
    // had read some the client lost); otherwise they match too.
    if s["client_not_finished"].as_u64().unwrap() > 0 {
        // The last scrape, after the cut, is not the window's end.
        let last = scrapes.last().unwrap()["t_ms"].as_f64().unwrap();
        assert!(s["to_ms"].as_f64().unwrap() < last, "{s}");
        assert!(s["prompt_token_diff"].is_null(), "{s}");
    } else {
        assert_agree(s, "prompt", 0.02);
    }
    assert!(
        s["waiting_max"].as_f64().unwrap() >= 1.0,
        "one slot at twice the load it can take queues: {s}"
    );
    assert_eq!(s["running_max"], 1.0, "one slot: {s}");
    // The frame carries the reconciliation as run-level metrics.
    let out = banterhearts_with_model(dir.path(), &["analyze", "TR972"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = std::fs::read_to_string(dir.path().join("data/TR972/summary.csv")).unwrap();
    let row = summary
        .lines()
        .find(|l| l.contains("server_output_token_diff"))
        .unwrap_or_else(|| panic!("no server_output_token_diff row:\n{summary}"));
    assert!(row.contains(",1,"), "one run per cell summarised: {row}");
}
