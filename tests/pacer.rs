//! The pacer as a calibrated signal source: tokens on its schedule, and a final event that
//! reports when they were really sent, so the runner's TTFT error is its TTFT minus that.

mod common;

use common::{banterhearts, journal, project, start_pacer};

#[test]
fn the_pacer_reports_its_real_send_times_and_the_runner_reconciles_them() {
    let (mut pacer, url) = start_pacer(&["--ttft-ms", "30", "--itl-ms", "5", "--tokens", "20"]);
    let spec = format!(
        "id: TR957\ntitle: pacer\nstatus: running\nquestion: does the pacer report its send times?\nbackends:\n  pacer: {{kind: llama-cpp, endpoints: [\"http://{url}\"]}}\nworkload: {{prompts: [x], max_tokens: 20}}\nmatrix:\n  scenario: [{{kind: single}}, {{kind: concurrent, agents: 8, placement: shared}}]\nrepetitions: 2\n"
    );
    let dir = project(&[("TR957.yaml", &spec)]);
    let out = banterhearts(dir.path(), &["run", "TR957", "--quiet"]);
    let _ = pacer.kill();
    let _ = pacer.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    for r in journal(dir.path(), "TR957") {
        for a in r["agents"].as_array().unwrap() {
            let f = |k: &str| a[k].as_f64().unwrap();
            // The pacer never sends early: first token no sooner than 30 ms, the other 19 at
            // 5 ms intervals after it, so the last no sooner than 30 + 19 x 5 = 125 ms. How late
            // it runs depends on the machine's load, so only a unit slip (s or us for ms) is
            // bounded above.
            let prompt = f("server_prompt_ms");
            assert!((30.0..1000.0).contains(&prompt), "{a}");
            let last = prompt + f("server_decode_ms");
            assert!((125.0..2000.0).contains(&last), "{a}");
            // Reconciliation: the client cannot see a token before the pacer reports sending
            // it, so the overheads are never negative and are what the two clocks differ by.
            assert!(f("prefill_overhead_ms") >= 0.0, "{a}");
            assert!(
                (f("ttft_ms") - prompt - f("prefill_overhead_ms")).abs() < 1e-6,
                "{a}"
            );
            assert!(f("e2e_ms") >= last, "{a}");
            assert_eq!(a["output_tokens"], 20);
        }
    }
}

/// A reasoning model's schedule in every protocol that streams reasoning: 5 reasoning tokens
/// then 7 answer tokens, the first at 30 ms and one every 10 ms, so the first answer token is
/// sent at 30 + 5 x 10 = 80 ms. Each TTFT is measured against that known schedule.
#[test]
fn both_ttfts_follow_the_pacers_reasoning_schedule_in_every_protocol() {
    let schedule = [
        "--ttft-ms",
        "30",
        "--itl-ms",
        "10",
        "--tokens",
        "12",
        "--reasoning-tokens",
        "5",
    ];
    let (mut llama_style, llama_url) = start_pacer(&schedule);
    let mut vllm_args = schedule.to_vec();
    vllm_args.extend(["--reasoning-field", "reasoning"]);
    let (mut vllm_style, vllm_url) = start_pacer(&vllm_args);
    let spec = format!(
        "id: TR958\ntitle: reasoning pacer\nstatus: running\nquestion: are both TTFTs measured?\n\
         backends:\n\
         \x20 chat_reasoning_content: {{kind: openai, endpoints: [\"http://{llama_url}\"]}}\n\
         \x20 chat_reasoning: {{kind: openai, server: vllm, endpoints: [\"http://{vllm_url}\"]}}\n\
         \x20 ollama_generate: {{kind: ollama, model: pacer, endpoints: [\"http://{llama_url}\"]}}\n\
         \x20 ollama_chat: {{kind: ollama, model: pacer, endpoint: chat, endpoints: [\"http://{llama_url}\"]}}\n\
         workload: {{prompts: [x], max_tokens: 12}}\n\
         matrix:\n  backend: [chat_reasoning_content, chat_reasoning, ollama_generate, ollama_chat]\n\
         repetitions: 2\n"
    );
    let dir = project(&[("TR958.yaml", &spec)]);
    let out = banterhearts(dir.path(), &["run", "TR958", "--quiet"]);
    for p in [&mut llama_style, &mut vllm_style] {
        let _ = p.kill();
        let _ = p.wait();
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR958");
    assert_eq!(records.len(), 8);
    for r in &records {
        let a = &r["agents"][0];
        let f = |k: &str| a[k].as_f64().unwrap_or_else(|| panic!("{k}: {a}"));
        let (ttft, answer) = (f("ttft_ms"), f("ttft_answer_ms"));
        // Never early: the pacer sends on absolute deadlines. Upper bounds catch a unit slip
        // or a TTFT that waited for the answer (the reasoning trace counted as prefill).
        assert!((30.0..1000.0).contains(&ttft), "{}: {a}", r["params"]);
        assert!(
            answer >= 80.0 && answer - ttft < 1000.0,
            "{}: {a}",
            r["params"]
        );
        assert!(
            ttft + 5.0 * 10.0 * 0.5 < answer,
            "the answer comes 5 tokens later: {a}"
        );
        assert_eq!(a["reasoning_chunks"], 5, "{a}");
        assert_eq!(a["chunks"], 12, "{a}");
        assert_eq!(
            a["text"], " t5 t6 t7 t8 t9 t10 t11",
            "answer text only: {a}"
        );
        assert_eq!(
            a["output_tokens"], 12,
            "reasoning tokens are generated tokens"
        );
        // Decode throughput over the whole generation, reasoning included: 11 tokens after the
        // first, 10 ms apart, so about 100 tok/s (more when the first token ran late). Counted
        // from the first answer token it would be about 1.8 times that.
        let decode = f("decode_tok_s");
        assert!((50.0..150.0).contains(&decode), "{decode}: {a}");
        assert_eq!(a["finish_reason"], "length");
    }
}

/// A busy machine is detected, not silently measured: while threads of this test process (not
/// the runner, not a server it launched) burn every core, each run records their CPU time as
/// background load, and the report names the runs.
#[test]
fn runs_under_background_load_are_recorded_and_named() {
    let (mut pacer, url) = start_pacer(&["--ttft-ms", "20", "--itl-ms", "10", "--tokens", "60"]);
    let spec = format!(
        "id: TR959\ntitle: busy machine\nstatus: running\nquestion: is background load seen?\nbackends:\n  pacer: {{kind: llama-cpp, endpoints: [\"http://{url}\"]}}\nworkload: {{prompts: [x], max_tokens: 60}}\nrepetitions: 2\n"
    );
    let dir = project(&[("TR959.yaml", &spec)]);
    common::copy_templates(dir.path());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burners: Vec<_> = (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                let mut x = 1u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < deadline
                {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                }
                std::hint::black_box(x);
            })
        })
        .collect();
    let out = banterhearts(dir.path(), &["run", "TR959", "--quiet"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    let _ = pacer.kill();
    let _ = pacer.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR959");
    for r in &records {
        let share = r["background"]["share"].as_f64().unwrap();
        assert!(
            share > 0.3,
            "every core was busy elsewhere: {}",
            r["background"]
        );
    }
    let report = banterhearts(dir.path(), &["report", "TR959"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let text = std::fs::read_to_string(dir.path().join("reports/TR959.md")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("ran while other processes used more than 10% of the CPUs"))
        .unwrap_or_else(|| panic!("{text}"));
    let id = records[0]["run_id"].as_str().unwrap();
    assert!(
        line.starts_with("- C1: 2 of 2 runs") && line.contains(id),
        "{line}"
    );
}
