//! Scaling fits end to end on a journal built to a known power law: `analyze` recovers the
//! exponent from the runs' own model records (not the sizes asked for), bounds narrow the fit,
//! claims on the exponent hold or fail as stated, and the report draws the fit.

mod common;

use common::{banterhearts, copy_templates, project};
use serde_json::{Value, json};

const SPEC: &str = r#"id: TR971
title: Scaling fixture
status: complete
question: Does the fit recover a known exponent?
backends:
  llama: {kind: llama-cpp, launch: {count: 1, args: []}}
workload: {prompts: ["x"], max_tokens: 16}
matrix:
  model:
    - {synthetic: {params: 5M}}
    - {synthetic: {params: 20M}}
    - {synthetic: {params: 80M}}
    - {synthetic: {params: 320M}}
repetitions: 4
scaling:
  - {id: decode_vs_params, metric: decode_tok_s, against: params}
  - {id: decode_from_10m, metric: decode_tok_s, against: params, from: 10M}
  # The 80M model has 79.7M parameters: just outside, and said so.
  - {id: decode_from_80m, metric: decode_tok_s, against: params, from: 80M}
claims:
  - {id: exponent, fit: decode_vs_params, stated: "-0.80", assert: "ci_high < 0"}
  - {id: wrong, fit: decode_vs_params, stated: "-0.70"}
  - {id: rises, fit: decode_vs_params, assert: "ci_low > 0"}
"#;

/// The sizes asked for, and the counts the "models" really have: a fit must use the latter.
const TARGETS: [(&str, f64); 4] = [
    ("5M", 4.98e6),
    ("20M", 20.06e6),
    ("80M", 79.7e6),
    ("320M", 321.3e6),
];
/// Per repetition, the run's deviation from the line in ln y: symmetric at every size, so the
/// least-squares line through ln y is exactly the one they were drawn around.
const SPREAD: [f64; 4] = [0.05, -0.05, 0.02, -0.02];
const EXPONENT: f64 = -0.8;

fn journal() -> String {
    let mut text = String::new();
    let mut run = 0;
    for (rep, spread) in SPREAD.iter().enumerate() {
        for (target, params) in TARGETS {
            let decode = 2e7 * params.powf(EXPONENT) * spread.exp();
            let record_params = json!({"model": {"synthetic": {"params": target}}});
            let cell_id = banterhearts::store::sha256_hex(
                serde_json::to_string(&record_params).unwrap().as_bytes(),
            )[..12]
                .to_owned();
            let r = json!({"tr": "TR971", "run_id": format!("{run:016x}"), "cell": 0, "cell_id": cell_id,
                "params": record_params, "repetition": rep, "warmup": false, "status": "ok", "started_unix_ms": 0,
                "session": 1, "harness_lag": {"samples": 10, "p50_ms": 0.02, "p99_ms": 0.1, "max_ms": 0.3},
                "client_rss_mb": 12.0,
                "model": {"label": format!("synthetic {target} q8_0"), "synthetic": true, "params": params as u64,
                          "file_bytes": (params * 1.07) as u64, "quant": "Q8_0", "architecture": "llama"},
                "agents": [{"agent": 0, "server": "s", "status": "ok", "sent_offset_ms": 0.0, "ttft_ms": 40.0,
                            "e2e_ms": 800.0, "chunks": 16, "output_tokens": 16, "prompt_tokens": 10, "cache_n": 0,
                            "decode_tok_s": decode, "text": ""}]});
            text.push_str(&format!("{r}\n"));
            run += 1;
        }
    }
    text
}

#[test]
fn a_fit_recovers_the_exponent_and_claims_on_it_are_checked() {
    let dir = project(&[("TR971.yaml", SPEC)]);
    let root = dir.path();
    std::fs::create_dir_all(root.join("data/TR971")).unwrap();
    std::fs::write(root.join("data/TR971/runs.jsonl"), journal()).unwrap();
    let out = banterhearts(root, &["analyze", "TR971"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "fit `decode_vs_params`: decode_tok_s against params over 16 runs of 4 cells"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "scaling fit `decode_from_80m`: the cell at 79.7M is just outside the bounds"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("scaling fit `decode_from_80m`: 4 measured run(s) at 1 distinct params"),
        "{}",
        out.stdout
    );
    let fits: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("data/TR971/fits.json")).unwrap())
            .unwrap();
    let all = &fits[0]["law"];
    let b = all["exponent"].as_f64().unwrap();
    assert!((b - EXPONENT).abs() < 1e-9, "{all}");
    let (lo, hi) = (
        all["exponent_low"].as_f64().unwrap(),
        all["exponent_high"].as_f64().unwrap(),
    );
    assert!(lo < b && b < hi && hi < 0.0, "{all}");
    let r2 = all["r_squared"].as_f64().unwrap();
    assert!(r2 > 0.9 && r2 < 1.0, "{all}");
    assert_eq!(all["n"], 16);
    // x is each model's real count from its records: the lowest is 4.98M, not the 5M asked for.
    assert_eq!(fits[0]["cells"][0]["x"].as_f64(), Some(4.98e6));
    // `from: 10M` leaves the smallest model out.
    assert_eq!(fits[1]["law"]["n"], 12);
    assert_eq!(fits[1]["cells"].as_array().unwrap().len(), 3);

    let claims: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("data/TR971/claims.json")).unwrap(),
    )
    .unwrap();
    let outcome = |id: &str| {
        claims
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| {
                (
                    c["outcome"].as_str().unwrap().to_owned(),
                    c["detail"].to_string(),
                )
            })
            .unwrap()
    };
    assert_eq!(outcome("exponent").0, "holds", "{:?}", outcome("exponent"));
    assert_eq!(outcome("wrong").0, "fails", "{:?}", outcome("wrong"));
    assert_eq!(outcome("rises").0, "fails", "{:?}", outcome("rises"));
    assert!(
        outcome("wrong").1.contains("-0.8"),
        "{:?}",
        outcome("wrong")
    );

    copy_templates(root);
    let out = banterhearts(root, &["report", "TR971"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = std::fs::read_to_string(root.join("reports/TR971.md")).unwrap();
    let row = report
        .lines()
        .find(|l| l.contains("(`decode_vs_params`)"))
        .unwrap_or_else(|| panic!("no fit row in:\n{report}"));
    assert!(row.contains("| 16 (4) | 4.98M, 321.3M | -0.800 ["), "{row}");
    // Doubling the parameters multiplies decode speed by 2^-0.8.
    assert!(
        row.contains(&format!("{:.2}x", 2f64.powf(EXPONENT))),
        "{row}"
    );
    let svg = std::fs::read_to_string(root.join("reports/figures/TR971-fit-decode_vs_params.svg"))
        .unwrap();
    assert!(
        svg.contains("fit: y ∝ x^-0.800"),
        "the fitted line is not in the figure"
    );
    assert!(report.contains("figures/TR971-fit-decode_vs_params.svg"));
}
