//! Workloads shaped like production, against a real llama-server with SmolLM2-135M: prompts
//! of exact token lengths (the server's own count is the length asked for plus its chat
//! template's tokens), and shared prefixes whose cache a warm cell reuses and a cold cell
//! cannot.

mod common;

use common::{banterhearts_with_model, journal, project};

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn exact_input_lengths_and_a_warm_cache_against_a_cold_one() {
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
    std::fs::create_dir_all(dir.path().join("data/corpus")).unwrap();
    std::fs::copy(
        common::repo_root().join("data/corpus/shakespeare.txt"),
        dir.path().join("data/corpus/shakespeare.txt"),
    )
    .unwrap();
    let out = banterhearts_with_model(dir.path(), &["run", "TR970"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records = journal(dir.path(), "TR970");
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
