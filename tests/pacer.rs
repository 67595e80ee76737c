//! The pacer as a calibrated signal source: tokens on its schedule, and a final event that
//! reports when they were really sent, so the runner's TTFT error is its TTFT minus that.

mod common;

use std::process::{Command, Stdio};

use common::{banterhearts, journal, project};

#[test]
fn the_pacer_reports_its_real_send_times_and_the_runner_reconciles_them() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut pacer = Command::new(env!("CARGO_BIN_EXE_banterhearts"))
        .args([
            "pacer",
            "--port",
            &port.to_string(),
            "--ttft-ms",
            "30",
            "--itl-ms",
            "5",
            "--tokens",
            "20",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&url).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
