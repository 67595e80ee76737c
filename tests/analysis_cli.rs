//! `banterhearts analyze` and `compare` on a journal whose values are the scipy reference
//! samples (tests/fixtures/stats_reference.json), so the polars path is checked against
//! independently computed statistics.

mod common;

use common::{banterhearts, project, repo_root};
use serde_json::{Value, json};

const SPEC: &str = r#"id: TR970
title: Analysis fixture
status: complete
question: Does the analysis reproduce the reference statistics?
backends:
  llama: {kind: llama-cpp, launch: {count: 2, args: []}}
workload: {prompts: ["x"], max_tokens: 64}
matrix:
  temperature: [0.2, 0.8, 1.0]
  scenario: [{kind: single}, {kind: concurrent, agents: 2, placement: server-per-agent}]
  exclude: [{temperature: 0.8, scenario: {kind: concurrent, agents: 2, placement: server-per-agent}}, {temperature: 1.0, scenario: {kind: concurrent, agents: 2, placement: server-per-agent}}]
repetitions: 7
cost: {profile: cpu-2core}
claims:
  - {id: faster, metric: decode_tok_s, compare: {a: {temperature: 0.2, scenario: {kind: single}}, b: {temperature: 0.8}}, stated: "+15.2%"}
"#;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/stats_reference.json")).unwrap()
}

fn agent(decode: f64, ok: bool) -> Value {
    json!({"agent": 0, "server": "s", "status": if ok { "ok" } else { "degraded" }, "sent_offset_ms": 0.0, "ttft_ms": 40.0, "e2e_ms": 800.0,
           "chunks": 64, "output_tokens": 64, "prompt_tokens": 10, "cache_n": 0, "load_ms": null, "decode_tok_s": decode,
           "server_decode_tok_s": decode, "server_prefill_tok_s": 500.0, "server_prompt_ms": 38.0, "server_decode_ms": 700.0,
           "prefill_overhead_ms": 2.0, "decode_overhead_ms": 0.5, "itl_p50_ms": 11.0, "itl_p95_ms": 12.0, "itl_p99_ms": 13.0, "text": ""})
}

fn record(
    run: usize,
    temperature: f64,
    concurrent: bool,
    warmup: bool,
    agents: Vec<Value>,
) -> String {
    let scenario = if concurrent {
        json!({"kind": "concurrent", "agents": 2, "placement": "server-per-agent"})
    } else {
        json!({"kind": "single"})
    };
    let params = json!({"temperature": temperature, "scenario": scenario});
    let cell_id = {
        // The plan's cell id: first 12 hex digits of SHA-256 over the canonical parameters.
        let key = serde_json::to_string(&params).unwrap();
        banterhearts::store::sha256_hex(key.as_bytes())[..12].to_owned()
    };
    let ok = agents.iter().all(|a| a["status"] == "ok");
    let mut r = json!({"tr": "TR970", "run_id": format!("{run:016x}"), "cell": 0, "cell_id": cell_id, "params": params, "repetition": run,
        "warmup": warmup, "status": if ok { "ok" } else { "degraded" }, "started_unix_ms": 0, "session": 1, "agents": agents,
        "harness_lag": {"samples": 10, "p50_ms": 0.02, "p99_ms": 0.1, "max_ms": 0.3}, "client_rss_mb": 12.0});
    if !ok {
        r["reason"] = json!("agent 0: truncated stream");
    }
    if concurrent {
        r["group"] = json!({"agents": 2, "wall_ms": 820.0, "speedup": 1.95, "parallel_efficiency": 0.975, "aggregate_tok_s": 156.0});
    }
    format!("{r}\n")
}

fn journal() -> String {
    let f = fixture();
    let sample = |name: &str| {
        f["samples"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    let mut text = String::new();
    let mut run = 0;
    let mut push = |t: f64, conc: bool, warm: bool, agents: Vec<Value>| {
        text.push_str(&record(run, t, conc, warm, agents));
        run += 1;
    };
    push(0.2, false, true, vec![agent(5000.0, true)]); // a warm-up: must not count
    for v in sample("fast") {
        push(0.2, false, false, vec![agent(v, true)]);
    }
    push(0.2, false, false, vec![agent(1.0, false)]); // degraded: counted, not averaged
    for v in sample("slow") {
        push(0.8, false, false, vec![agent(v, true)]);
    }
    for v in sample("with_outlier") {
        push(1.0, false, false, vec![agent(v, true)]);
    }
    // Concurrent runs at 0.2: agent 1 decodes 20% below the single-agent median (114.2).
    for _ in 0..3 {
        push(
            0.2,
            true,
            false,
            vec![agent(114.0, true), agent(91.0, true)],
        );
    }
    text
}

fn setup() -> tempfile::TempDir {
    let dir = project(&[("TR970.yaml", SPEC)]);
    std::fs::create_dir_all(dir.path().join("data/TR970")).unwrap();
    std::fs::copy(
        repo_root().join("data/pricing.yaml"),
        dir.path().join("data/pricing.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("data/TR970/runs.jsonl"), journal()).unwrap();
    dir
}

fn summary_row<'a>(csv: &'a str, cell: &str, metric: &str) -> Vec<&'a str> {
    // Labels contain commas inside quotes; split the quoted label off first.
    csv.lines()
        .find(|l| l.contains(cell) && l.contains(&format!(",{metric},")))
        .map(|l| {
            let rest = &l[l.find(&format!(",{metric},")).unwrap() + 1..];
            rest.split(',').collect()
        })
        .unwrap_or_else(|| panic!("no {metric} row for {cell} in\n{csv}"))
}

fn close(field: &str, reference: &Value, what: &str) {
    let (a, b) = (field.parse::<f64>().unwrap(), reference.as_f64().unwrap());
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: {a} vs reference {b}"
    );
}

#[test]
fn summary_statistics_match_the_reference_and_exclude_warmups_and_degraded_runs() {
    let dir = setup();
    let out = banterhearts(dir.path(), &["analyze", "TR970"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let csv = std::fs::read_to_string(dir.path().join("data/TR970/summary.csv")).unwrap();
    assert!(
        dir.path()
            .join("data/TR970/summary.parquet")
            .metadata()
            .unwrap()
            .len()
            > 0
    );
    let f = fixture();
    // Columns after the label: metric,requests,runs,mean,median,std,cv,min,max,p50,p95,p99,
    // ci95_low,ci95_high,ci_center,ci_scale,outliers,runs_recorded,degraded,degraded_rate,
    // degraded_rate_ci95_low,degraded_rate_ci95_high
    let fast = summary_row(
        &csv,
        "temperature=0.2 scenario={kind: single}",
        "decode_tok_s",
    );
    let reference = &f["describe"]["fast"];
    assert_eq!(
        (fast[1], fast[2]),
        ("5", "5"),
        "warm-up and degraded runs are not counted"
    );
    for (i, key) in [
        (3, "mean"),
        (4, "median"),
        (5, "std"),
        (10, "p95"),
        (11, "p99"),
    ] {
        close(fast[i], &reference[key], &format!("fast {key}"));
    }
    // A throughput is positive: its interval is the t interval of the log values.
    assert_eq!(fast[15], "log");
    let log = &f["describe_log"]["fast"];
    close(fast[12], &log["low"], "fast log-scale ci_low");
    close(fast[13], &log["high"], "fast log-scale ci_high");
    close(
        fast[14],
        &log["center"],
        "fast geometric mean, the interval's centre",
    );
    assert_eq!(
        (fast[17], fast[18]),
        ("6", "1"),
        "6 measured runs, 1 degraded"
    );
    // ...and its degraded rate, 1 of 6 independent runs, gets Wilson's interval.
    let wilson = &f["bounded"]["wilson_1_of_6"];
    close(fast[20], &wilson["low"], "degraded rate Wilson low");
    close(fast[21], &wilson["high"], "degraded rate Wilson high");
    let outlier = summary_row(
        &csv,
        "temperature=1.0 scenario={kind: single}",
        "decode_tok_s",
    );
    assert_eq!(outlier[16], "1", "the 71.0 run is flagged as an outlier");
    close(
        outlier[3],
        &f["describe"]["with_outlier"]["mean"],
        "outliers are kept in the mean",
    );

    // The run is the unit: each concurrent run's agents decode 114 and 91, so every run's mean
    // is 102.5: no spread between runs and an interval without width, although the six
    // requests spread from 91 to 114.
    let requests = summary_row(&csv, "temperature=0.2 scenario={agents: 2", "decode_tok_s");
    assert_eq!(
        (requests[1], requests[2]),
        ("6", "3"),
        "6 requests in 3 runs"
    );
    assert_eq!(
        (requests[5], requests[6]),
        ("0.0", "0.0"),
        "std and CV between runs"
    );
    assert_eq!(
        (requests[7], requests[8]),
        ("91.0", "114.0"),
        "min and max of requests"
    );
    assert_eq!((requests[12], requests[13]), ("102.5", "102.5"));

    let contention = summary_row(
        &csv,
        "temperature=0.2 scenario={agents: 2",
        "contention_rate",
    );
    assert_eq!(
        (contention[1], contention[3]),
        ("3", "0.5"),
        "one of two agents contended in each of 3 runs"
    );
    let efficiency = summary_row(
        &csv,
        "temperature=0.2 scenario={agents: 2",
        "parallel_efficiency",
    );
    assert_eq!(efficiency[3], "0.975");
    assert_eq!(
        efficiency[15], "logit",
        "a fraction's interval stays in [0, 1]"
    );

    let cost = std::fs::read_to_string(dir.path().join("data/TR970/cost.csv")).unwrap();
    assert!(
        cost.lines()
            .next()
            .unwrap()
            .starts_with("cell_id,cell,tok_s,usd_per_1m"),
        "{cost}"
    );
    assert!(cost.contains("estimated"));
    // 64 tokens in 800 ms = 80 tok/s: 0.08925 / 3600 / 80 * 1e6 = 0.3098958...
    assert!(cost.contains(",80.0,0.30989583333333"), "{cost}");

    let comparisons: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR970/comparisons.json")).unwrap(),
    )
    .unwrap();
    let c = &comparisons[0]["comparison"];
    close(
        &c["ratio_ci_low"].to_string(),
        &f["compare_fast_slow"]["ratio_ci_low"],
        "claim ratio CI low",
    );
    close(
        &c["p_value"].to_string(),
        &f["compare_fast_slow"]["p"],
        "claim Welch p",
    );
    assert_eq!(
        comparisons[0]["p_holm"], c["p_value"],
        "a family of one is not adjusted"
    );
    assert!(
        out.stdout
            .contains("claim `faster` (decode_tok_s): A vs B +15.2% [95% CI +13.4%, +17.0%]"),
        "{}",
        out.stdout
    );
}

#[test]
fn compare_reports_ratio_interval_and_effect_size() {
    let dir = setup();
    let out = banterhearts(
        dir.path(),
        &[
            "compare",
            "TR970",
            "--metric",
            "decode_tok_s",
            "--a",
            "temperature=0.2",
            "--a",
            "scenario={kind: single}",
            "--b",
            "temperature=0.8",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let f = fixture();
    let r = &f["compare_fast_slow"];
    assert!(
        out.stdout.contains(&format!(
            "[95% CI {:.4}, {:.4}]",
            r["ratio_ci_low"].as_f64().unwrap(),
            r["ratio_ci_high"].as_f64().unwrap()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("Hedges' g={:.3}", r["hedges_g"].as_f64().unwrap())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Mann-Whitney U=25"),
        "5 vs 5 runs allow Mann-Whitney: {}",
        out.stdout
    );

    // A misspelt metric or axis is named, with the right spelling.
    for (metric, a, hint) in [
        (
            "decode_toks",
            "temperature=0.2",
            "did you mean `decode_tok_s`?",
        ),
        (
            "decode_tok_s",
            "temprature=0.2",
            "did you mean `temperature`?",
        ),
    ] {
        let bad = banterhearts(
            dir.path(),
            &[
                "compare",
                "TR970",
                "--metric",
                metric,
                "--a",
                a,
                "--b",
                "temperature=0.8",
            ],
        );
        assert_eq!(bad.code, 2);
        assert!(bad.stderr.contains(hint), "{}", bad.stderr);
    }
}

#[test]
fn analyze_without_runs_says_what_to_do() {
    let dir = project(&[("TR970.yaml", SPEC)]);
    let out = banterhearts(dir.path(), &["analyze", "TR970"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("TR970 has no recorded runs")
            && out.stderr.contains("banterhearts run TR970"),
        "{}",
        out.stderr
    );
    // A runner stopped before its first run finished leaves an empty journal: still no data,
    // for analyze and compare alike, and nothing written.
    let data = dir.path().join("data/TR970");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("runs.jsonl"), "").unwrap();
    for args in [
        &["analyze", "TR970"][..],
        &[
            "compare",
            "TR970",
            "--metric",
            "ttft_ms",
            "--a",
            "temperature=0.2",
            "--b",
            "temperature=0.8",
        ],
    ] {
        let out = banterhearts(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(
            out.stderr.contains("TR970 has no finished runs yet")
                && out.stderr.contains("banterhearts run TR970"),
            "{}",
            out.stderr
        );
    }
    assert!(!data.join("summary.csv").exists());
}

/// Two numbers agree to 1e-12 relative: debug and release builds may round a last digit
/// differently (p95 of TR124's TTFT is 18.452491 in one and 18.452491000000002 in the other).
fn same_number(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) || (a.is_nan() && b.is_nan())
}

/// CSV or JSON text equal field by field. In CSV files every figure must be identical except
/// the confidence bounds, which go through libm (t quantiles) and may differ in the last digit
/// between C libraries; order statistics, means and costs are plain arithmetic on the recorded
/// values, so a difference there means the values were read differently. In JSON files (p-values,
/// intervals) numbers are compared to within `same_number`.
fn same_figures(a: &str, b: &str) -> Result<(), String> {
    if let (Ok(x), Ok(y)) = (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        return match banterhearts::spec::matrix::values_equal_by(&x, &y, &same_number) {
            true => Ok(()),
            false => Err("the JSON differs".into()),
        };
    }
    // Fields split at commas outside quotes (labels such as `{agents: 2, kind: ...}` are quoted).
    let fields = |line: &str| -> Vec<String> {
        let mut quoted = false;
        line.split(|c| {
            quoted ^= c == '"';
            c == ',' && !quoted
        })
        .map(str::to_owned)
        .collect()
    };
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if x.len() != y.len() {
        return Err(format!("{} lines against {}", x.len(), y.len()));
    }
    let header = fields(x.first().copied().unwrap_or_default());
    for (line, (p, q)) in x.iter().zip(&y).enumerate() {
        let (p, q) = (fields(p), fields(q));
        let same = p.len() == q.len()
            && p.iter().zip(&q).enumerate().all(|(i, (p, q))| {
                let interval = header.get(i).is_some_and(|h| h.contains("ci95"));
                match (p.parse::<f64>(), q.parse::<f64>()) {
                    (Ok(p), Ok(q)) if interval => same_number(p, q),
                    _ => p == q,
                }
            });
        if !same {
            return Err(format!("line {}: {p:?} against {q:?}", line + 1));
        }
    }
    Ok(())
}

/// The committed analysis files of every TR with runs are what `analyze` derives from its
/// journal today: a change to the statistics that moves a figure must re-derive and commit
/// them, never leave stale numbers beside the raw data.
#[test]
fn committed_analysis_files_are_what_analyze_derives_from_the_journals() {
    let repo = repo_root();
    let dir = common::repo_copy();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo.join("data")).unwrap() {
        let tr_dir = entry.unwrap().path();
        if !tr_dir.join("runs.jsonl").is_file() || !tr_dir.join("summary.csv").is_file() {
            continue;
        }
        let tr = tr_dir.file_name().unwrap().to_str().unwrap().to_owned();
        let out = banterhearts(dir.path(), &["analyze", &tr]);
        assert_eq!(out.code, 0, "{tr}: {}", out.stderr);
        for file in ["summary.csv", "cost.csv", "comparisons.json", "claims.json"] {
            let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
            let committed = read(tr_dir.join(file));
            let derived = read(dir.path().join("data").join(&tr).join(file));
            if let Err(difference) = same_figures(&committed, &derived) {
                panic!(
                    "data/{tr}/{file} differs from what `banterhearts analyze {tr}` writes \
                     ({difference}): re-run it and commit"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} TRs with committed analyses");
}

/// Outputs the spec no longer asks for are removed, so no earlier cost or claims file sits
/// beside a fresh summary as if it were current.
#[test]
fn outputs_the_spec_no_longer_asks_for_are_removed() {
    let dir = setup();
    let data = dir.path().join("data/TR970");
    assert_eq!(banterhearts(dir.path(), &["analyze", "TR970"]).code, 0);
    for file in ["cost.csv", "claims.json", "comparisons.json"] {
        assert!(data.join(file).is_file(), "{file}");
    }
    let lean = SPEC
        .replace("cost: {profile: cpu-2core}\n", "")
        .split("claims:")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(dir.path().join("experiments/TR970.yaml"), lean).unwrap();
    let out = banterhearts(dir.path(), &["analyze", "TR970"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for file in ["cost.csv", "claims.json", "comparisons.json"] {
        assert!(!data.join(file).exists(), "{file} left behind");
    }
    assert!(data.join("summary.csv").is_file());
}

/// Efficiency is a fraction: "+5.0%" of it is a relative change, "+5.0pp" a difference in
/// points. A claim that says % where the figures match in points fails, and says so.
#[test]
fn a_fraction_claim_stated_in_percent_hints_at_points() {
    let spec = SPEC
        .replace("cost: {profile: cpu-2core}\n", "")
        .replace(
            "  exclude: [{temperature: 0.8, scenario: {kind: concurrent, agents: 2, placement: server-per-agent}}, {temperature: 1.0, scenario: {kind: concurrent, agents: 2, placement: server-per-agent}}]\n",
            "",
        )
        .split("claims:")
        .next()
        .unwrap()
        .to_owned()
        + "claims:\n  - {id: pct, metric: parallel_efficiency, compare: {a: {temperature: 0.2}, b: {temperature: 0.8}}, stated: \"+5.0%\"}\n  - {id: pts, metric: parallel_efficiency, compare: {a: {temperature: 0.2}, b: {temperature: 0.8}}, stated: \"+5.0pp\"}\n";
    let dir = project(&[("TR970.yaml", &spec)]);
    std::fs::create_dir_all(dir.path().join("data/TR970")).unwrap();
    let mut journal = String::new();
    for (run, (temperature, efficiency)) in [(0.2, 0.95), (0.8, 0.90)]
        .iter()
        .flat_map(|c| std::iter::repeat_n(*c, 3))
        .enumerate()
    {
        let mut r: Value = serde_json::from_str(&record(
            run,
            temperature,
            true,
            false,
            vec![agent(100.0, true), agent(100.0, true)],
        ))
        .unwrap();
        r["group"]["parallel_efficiency"] = json!(efficiency);
        journal += &format!("{r}\n");
    }
    std::fs::write(dir.path().join("data/TR970/runs.jsonl"), journal).unwrap();
    let out = banterhearts(dir.path(), &["analyze", "TR970"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let claims: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR970/claims.json")).unwrap(),
    )
    .unwrap();
    let text = claims.to_string();
    assert!(
        text.contains("as a difference in percentage points it is 5pp"),
        "{text}"
    );
    let outcome = |id: &str| {
        claims
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["outcome"].clone())
            .unwrap()
    };
    assert_eq!(
        (outcome("pct"), outcome("pts")),
        (json!("fails"), json!("holds"))
    );
}

/// Interleaved runs make each repetition a block: a claim's comparison is also paired by
/// repetition, on log ratios, and matches scipy's paired t-test on the same values.
#[test]
fn comparisons_are_paired_by_repetition_when_runs_are_interleaved() {
    let f = fixture();
    let spec = SPEC
        .replace("repetitions: 7", "repetitions: 5")
        .replace(
            "compare: {a: {temperature: 0.2, scenario: {kind: single}}, b: {temperature: 0.8}}",
            "compare: {a: {temperature: 0.2, scenario: {kind: single}}, b: {temperature: 0.8}}, pool: true",
        );
    let dir = project(&[("TR970.yaml", &spec)]);
    std::fs::create_dir_all(dir.path().join("data/TR970")).unwrap();
    std::fs::copy(
        repo_root().join("data/pricing.yaml"),
        dir.path().join("data/pricing.yaml"),
    )
    .unwrap();
    let numbers = |key: &str| -> Vec<f64> {
        f["paired"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (a, b) = (numbers("a"), numbers("b"));
    let mut text = String::new();
    for rep in 0..5 {
        for (i, (t, v)) in [(0.2, a[rep]), (0.8, b[rep])].into_iter().enumerate() {
            let mut line: Value =
                serde_json::from_str(&record(rep * 2 + i, t, false, false, vec![agent(v, true)]))
                    .unwrap();
            line["repetition"] = json!(rep);
            text.push_str(&format!("{line}\n"));
        }
    }
    std::fs::write(dir.path().join("data/TR970/runs.jsonl"), text).unwrap();
    let out = banterhearts(dir.path(), &["analyze", "TR970"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let comparisons: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/TR970/comparisons.json")).unwrap(),
    )
    .unwrap();
    let paired = &comparisons[0]["paired"];
    for key in ["ratio", "ci_low", "ci_high", "p", "block_share"] {
        close(
            &paired[key].to_string(),
            &f["paired"][key],
            &format!("paired {key}"),
        );
    }
    assert_eq!(paired["pairs"], 5);
}
