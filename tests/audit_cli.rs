//! `banterhearts audit` with planted faults: each is caught with a message that says what is
//! wrong and where. Faults are planted in a temp copy of the repository's own TR124 (real
//! llama-server data) or in small spec-only projects.

mod common;

use std::path::Path;

use common::{banterhearts, copy_templates, project, repo_copy};
use serde_json::Value;

/// Runs `audit --format json` and returns (exit code, findings).
fn audit(root: &Path, trs: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["audit", "--format", "json"];
    args.extend(trs);
    let out = banterhearts(root, &args);
    let json: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, json["findings"].as_array().unwrap().clone())
}

fn with<'a>(findings: &'a [Value], check: &str, severity: &str) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| f["check"] == check && f["severity"] == severity)
        .collect()
}

fn show(findings: &[Value]) -> String {
    serde_json::to_string_pretty(findings).unwrap()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The repository's own audit: the reports measured here (TR124, TR125) have only validity
/// findings, which are true of their data (runs on a shared 2-core machine vary by more than
/// the default 10% CV); every other finding is true of the imported catalogue's content, and
/// nothing is stale or drifted.
#[test]
fn the_repository_audits_clean_apart_from_what_is_true_of_the_seed() {
    let dir = repo_copy();
    let (code, findings) = audit(dir.path(), &[]);
    for f in findings
        .iter()
        .filter(|f| f["tr"] == "TR124" || f["tr"] == "TR125")
    {
        let message = f["message"].as_str().unwrap();
        assert!(
            f["check"] == "validity"
                && ((f["severity"] == "warning"
                    && message.contains("varies a lot between runs (CV"))
                    || (f["severity"] == "note"
                        && message.contains("mixes warm and cold prefill"))),
            "{}",
            show(std::slice::from_ref(f))
        );
    }
    for f in &findings {
        let check = f["check"].as_str().unwrap();
        assert!(
            matches!(
                check,
                "claim" | "plan-vs-data" | "supersession" | "validity"
            ),
            "{}",
            show(std::slice::from_ref(f))
        );
        if f["severity"] == "error" {
            let message = f["message"].as_str().unwrap();
            assert!(
                message.contains("does not follow from its recorded figures")
                    || (f["tr"] == "catalogue" && message.contains("does not hold")),
                "{f}"
            );
        }
    }
    // The seed's derived figures that its own numbers do not give, at the precision stated.
    let mut failing: Vec<String> = findings
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            format!(
                "{} {}",
                f["tr"].as_str().unwrap(),
                f["message"].as_str().unwrap().split('`').nth(1).unwrap()
            )
        })
        .collect();
    failing.sort();
    assert_eq!(
        failing,
        [
            "TR111_v2 faster_than_python",
            "TR112_v2 memory_reduction",
            "TR112_v2 startup_reduction",
            "TR112_v2 throughput_gain",
            "TR114_v2 contention_change_low",
            // The seed index's own totals, which its specs do not give: 21 reports, not 20;
            // 4 superseded, not 5; 1643 runs, not 2000+.
            "catalogue seed_all_runs",
            "catalogue seed_historical",
            "catalogue seed_reports",
        ]
    );
    assert_eq!(code, 1);
}

/// The validity thresholds are the spec's: loosened to a CV of 50%, TR124 audits clean; with
/// `min_runs: 6`, each claim that rests on its 5-run cells is named at its place.
#[test]
fn validity_findings_follow_the_specs_thresholds() {
    let dir = repo_copy();
    let spec = dir.path().join("experiments/TR124.yaml");
    let original = std::fs::read_to_string(&spec).unwrap();
    let with = |validity: &str| {
        original.replace(
            "cost: {profile: cpu-2core}",
            &format!("cost: {{profile: cpu-2core}}\nvalidity: {validity}"),
        )
    };
    std::fs::write(&spec, with("{cv: 0.5}")).unwrap();
    // The spec changed, so the committed report is stale; render it afresh first.
    assert_eq!(banterhearts(dir.path(), &["report", "TR124"]).code, 0);
    let text = banterhearts(dir.path(), &["audit", "TR124"]);
    assert_eq!(text.code, 0, "{}", text.stdout);
    assert!(
        text.stdout.contains("0 error(s), 0 warning(s)"),
        "{}",
        text.stdout
    );

    std::fs::write(&spec, with("{cv: 0.5, min_runs: 6}")).unwrap();
    assert_eq!(banterhearts(dir.path(), &["report", "TR124"]).code, 0);
    let (code, findings) = audit(dir.path(), &["TR124"]);
    assert_eq!(code, 1);
    let few: Vec<&Value> = findings
        .iter()
        .filter(|f| f["message"].as_str().unwrap().contains("fewer than 6"))
        .collect();
    assert!(!few.is_empty(), "{}", show(&findings));
    let efficiency = few
        .iter()
        .find(|f| f["message"].as_str().unwrap().starts_with("claim `server_each_efficiency_64` rests on cell max_tokens=64 scenario={agents: 2, kind: concurrent, placement: server-per-agent}: only 5 measured run(s)"))
        .unwrap_or_else(|| panic!("{}", show(&findings)));
    assert!(
        efficiency["location"]
            .as_str()
            .unwrap()
            .contains("TR124.yaml:"),
        "{efficiency}"
    );
}

#[test]
fn an_edited_number_in_a_committed_report_is_located() {
    let dir = repo_copy();
    let report = dir.path().join("reports/TR124.md");
    let text = std::fs::read_to_string(&report).unwrap();
    // The first results row: change its mean decode rate by 0.1.
    let (n, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("| C1 |"))
        .unwrap();
    let mean = line
        .split(" | ")
        .nth(4)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let edited: f64 = mean.parse::<f64>().unwrap() + 0.1;
    let edited = format!("{edited:.1}");
    let column = line.find(&format!("| {mean} [")).unwrap() + 3;
    std::fs::write(
        &report,
        text.replacen(&format!("| {mean} ["), &format!("| {edited} ["), 1),
    )
    .unwrap();

    let (code, findings) = audit(dir.path(), &["TR124"]);
    assert_eq!(code, 1);
    let drift = with(&findings, "regeneration", "error");
    assert_eq!(drift.len(), 1, "{}", show(&findings));
    assert_eq!(
        drift[0]["message"],
        format!("the report says `{edited}` where the data gives `{mean}`")
    );
    assert!(
        drift[0]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("reports/TR124.md:{}:{column}", n + 1)),
        "{}",
        show(&findings)
    );
    assert!(
        with(&findings, "staleness", "warning").is_empty(),
        "the inputs did not change"
    );
}

#[test]
fn a_changed_data_file_makes_the_report_stale_and_its_numbers_drift() {
    let dir = repo_copy();
    let runs = dir.path().join("data/TR124/runs.jsonl");
    let text = std::fs::read_to_string(&runs).unwrap();
    // Halve every measured decode rate of one run: its cell's mean moves.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| l.contains("\"warmup\":false"))
        .unwrap();
    let mut record: Value = serde_json::from_str(&lines[i]).unwrap();
    for agent in record["agents"].as_array_mut().unwrap() {
        let d = agent["decode_tok_s"].as_f64().unwrap();
        agent["decode_tok_s"] = (d / 2.0).into();
    }
    lines[i] = serde_json::to_string(&record).unwrap();
    std::fs::write(&runs, lines.join("\n") + "\n").unwrap();

    let (code, findings) = audit(dir.path(), &["TR124"]);
    assert_eq!(code, 1);
    let stale = with(&findings, "staleness", "warning");
    assert_eq!(stale.len(), 1, "{}", show(&findings));
    assert!(
        stale[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("stale: the data changed since the report was rendered"),
        "{}",
        show(&findings)
    );
    let drift = with(&findings, "regeneration", "error");
    assert!(
        drift.iter().any(|f| f["message"]
            .as_str()
            .unwrap()
            .starts_with("the report says `")
            && f["location"]
                .as_str()
                .unwrap()
                .contains("reports/TR124.md:")),
        "{}",
        show(&findings)
    );
}

#[test]
fn a_stated_percentage_off_by_more_than_its_precision_fails() {
    let dir = repo_copy();
    let spec = dir.path().join("experiments/TR124.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let stated = text
        .lines()
        .find(|l| l.trim_start().starts_with("stated: \"+63."))
        .unwrap()
        .trim()
        .to_owned();
    let value: f64 = stated
        .trim_start_matches("stated: \"+")
        .trim_end_matches("%\"")
        .parse()
        .unwrap();
    // Off by 0.1: more than the ±0.05 one decimal allows.
    let wrong = format!("stated: \"+{:.1}%\"", value + 0.1);
    edit(&spec, &stated, &wrong);
    let line = std::fs::read_to_string(&spec)
        .unwrap()
        .lines()
        .position(|l| l.contains(&wrong))
        .unwrap()
        + 1;

    let (code, findings) = audit(dir.path(), &["TR124"]);
    assert_eq!(code, 1);
    let claims = with(&findings, "claim", "error");
    assert_eq!(claims.len(), 1, "{}", show(&findings));
    let message = claims[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("claim `server_each_aggregate` does not hold"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "stated +{:.1}% but the figures give +{value:.1}%",
            value + 0.1
        )) && message.contains("more than the ±0.05 its precision allows"),
        "{message}"
    );
    assert!(
        claims[0]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("TR124.yaml:{line}:13")),
        "{}",
        show(&findings)
    );

    // Within the precision, the claim holds: +63.74 may be stated as +63.7 but not as +63.8.
    edit(&spec, &wrong, &stated);
    let (_, findings) = audit(dir.path(), &["TR124"]);
    assert!(
        with(&findings, "claim", "error").is_empty(),
        "{}",
        show(&findings)
    );
}

#[test]
fn a_third_of_the_planned_runs_missing_is_reported_per_cell() {
    let dir = repo_copy();
    let runs = dir.path().join("data/TR124/runs.jsonl");
    let text = std::fs::read_to_string(&runs).unwrap();
    // Drop every third measured run (10 of 30), keeping warm-ups.
    let mut measured = 0;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            if l.contains("\"warmup\":true") {
                return true;
            }
            measured += 1;
            measured % 3 != 0
        })
        .collect();
    std::fs::write(&runs, kept.join("\n") + "\n").unwrap();

    let (code, findings) = audit(dir.path(), &["TR124"]);
    assert_eq!(code, 1);
    let gaps = with(&findings, "plan-vs-data", "warning");
    assert_eq!(gaps.len(), 1, "{}", show(&findings));
    let message = gaps[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the data lacks 10 of 30 planned measured runs (33%): C"),
        "{message}"
    );
    assert!(
        message.ends_with("`banterhearts run TR124` resumes"),
        "{message}"
    );
}

const OLD: &str = "id: TR990\ntitle: old\nstatus: running\nquestion: q?\n";

fn successor(id: &str, of: &str) -> String {
    format!(
        "id: {id}\ntitle: {id}\nstatus: running\nquestion: q?\nsupersedes: {{id: {of}, reason: \"fixed the statistics\"}}\n"
    )
}

#[test]
fn a_supersession_cycle_is_an_error_at_the_supersedes_field() {
    let a = successor("TR990", "TR991");
    let b = successor("TR991", "TR990");
    let dir = project(&[("TR990.yaml", &a), ("TR991.yaml", &b)]);
    copy_templates(dir.path());
    let (code, findings) = audit(dir.path(), &[]);
    assert_eq!(code, 1);
    let cycle = with(&findings, "supersession", "error");
    assert_eq!(cycle.len(), 1, "{}", show(&findings));
    assert!(
        cycle[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("supersession cycle: TR990 supersedes TR991 supersedes TR990"),
        "{}",
        show(&findings)
    );
    assert!(
        cycle[0]["location"]
            .as_str()
            .unwrap()
            .ends_with("experiments/TR990.yaml:5:18"),
        "{}",
        show(&findings)
    );
}

#[test]
fn a_superseded_report_with_two_current_successors_is_an_error() {
    let b = successor("TR991", "TR990");
    let c = successor("TR992", "TR990");
    let dir = project(&[("TR990.yaml", OLD), ("TR991.yaml", &b), ("TR992.yaml", &c)]);
    copy_templates(dir.path());
    assert_eq!(
        banterhearts(dir.path(), &["report", "--all"]).code,
        2,
        "report refuses an invalid graph"
    );
    let (code, findings) = audit(dir.path(), &[]);
    assert_eq!(code, 1);
    let two = with(&findings, "supersession", "error");
    assert_eq!(two.len(), 1, "{}", show(&findings));
    assert_eq!(two[0]["tr"], "TR992");
    assert!(
        two[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("`TR990` has two current successors: TR991 and TR992"),
        "{}",
        show(&findings)
    );
}

#[test]
fn what_changed_between_versions_is_a_note_and_unrendered_reports_are_named() {
    let v2 = successor("TR991", "TR990").replace(
        "question: q?\n",
        "question: q?\nmatrix: {temperature: [0.2, 0.8]}\nrepetitions: 3\n",
    );
    let dir = project(&[("TR990.yaml", OLD), ("TR991.yaml", &v2)]);
    copy_templates(dir.path());
    let (code, findings) = audit(dir.path(), &[]);
    assert_eq!(code, 1, "no reports rendered yet: {}", show(&findings));
    let notes = with(&findings, "supersession", "note");
    assert_eq!(notes.len(), 1, "{}", show(&findings));
    assert_eq!(
        notes[0]["message"],
        "changed since TR990: cells 1 -> 2; repetitions 1 -> 3; axes [] -> [temperature]"
    );
    assert_eq!(
        with(&findings, "staleness", "warning").len(),
        2,
        "{}",
        show(&findings)
    );

    assert_eq!(banterhearts(dir.path(), &["report", "--all"]).code, 0);
    let (code, findings) = audit(dir.path(), &[]);
    assert_eq!(code, 0, "{}", show(&findings));
}

/// The catalogue's claims are checked like a report's: a count that holds is silent, one the
/// specs do not give is an error at its line, and a TR that does not exist is named with a fix.
#[test]
fn catalogue_claims_are_checked_against_the_specs() {
    let dir = repo_copy();
    let claims = dir.path().join("experiments/catalogue/claims.yaml");
    std::fs::write(
        &claims,
        "source: a test\nclaims:\n  - {id: measured_here, count: reports, of: [TR124, TR125], stated: \"2\"}\n  - {id: runs_here, count: runs, of: [TR124, TR125], stated: \"60+\"}\n",
    )
    .unwrap();
    let (_, findings) = audit(dir.path(), &[]);
    let catalogue: Vec<&Value> = findings.iter().filter(|f| f["tr"] == "catalogue").collect();
    assert_eq!(catalogue.len(), 1, "{}", show(&findings));
    assert!(
        catalogue[0]["message"]
            .as_str()
            .unwrap()
            .contains("`runs_here` does not hold: stated 60+ runs; the specs give 50"),
        "{}",
        show(&findings)
    );
    assert!(
        catalogue[0]["location"]
            .as_str()
            .unwrap()
            .ends_with("claims.yaml:4:5")
    );

    std::fs::write(
        &claims,
        "source: a test\nclaims:\n  - {id: typo, count: reports, of: [TR124, TR12], stated: \"2\"}\n",
    )
    .unwrap();
    let (_, findings) = audit(dir.path(), &[]);
    let f = findings.iter().find(|f| f["tr"] == "catalogue").unwrap();
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("counts `TR12`, which is not a TR"),
        "{message}"
    );
    assert!(
        f["location"]
            .as_str()
            .unwrap()
            .ends_with("claims.yaml:3:44"),
        "{f}"
    );
}

/// TR126's claims on its rate sweep (the knee, the highest rate meeting the SLO and that
/// rate's interval) are re-derived by the audit from the stored requests: they hold as
/// committed, a knee stated at the wrong rate fails, and a tighter SLO (no new runs) moves
/// the rate at the SLO so that its stated value and its bound fail.
#[test]
fn the_audit_rederives_a_sweeps_knee_and_rate_at_the_slo() {
    let dir = repo_copy();
    let spec = dir.path().join("experiments/TR126.yaml");
    let (_, findings) = audit(dir.path(), &["TR126"]);
    assert!(
        with(&findings, "claim", "error").is_empty(),
        "{}",
        show(&findings)
    );

    edit(&spec, "stated: \"4 req/s\"", "stated: \"8 req/s\"");
    let (code, findings) = audit(dir.path(), &["TR126"]);
    assert_eq!(code, 1);
    let claims = with(&findings, "claim", "error");
    assert_eq!(claims.len(), 1, "{}", show(&findings));
    let message = claims[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("claim `knee` does not hold")
            && message.contains("stated 8 req/s but the figures give 4 req/s"),
        "{message}"
    );
    edit(&spec, "stated: \"8 req/s\"", "stated: \"4 req/s\"");

    // At a 200 ms TTFT p99 the 4 req/s runs miss the SLO, so the rate at the SLO falls.
    edit(&spec, "slo: {ttft_ms: 1000,", "slo: {ttft_ms: 200,");
    let (_, findings) = audit(dir.path(), &["TR126"]);
    let failed: Vec<&str> = with(&findings, "claim", "error")
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    for id in ["capacity_at_slo", "capacity_at_slo_bounded"] {
        assert!(
            failed
                .iter()
                .any(|m| m.starts_with(&format!("claim `{id}` does not hold"))),
            "{id}: {failed:#?}"
        );
    }
    // The knee does not depend on the SLO.
    assert!(
        !failed.iter().any(|m| m.starts_with("claim `knee`")),
        "{failed:#?}"
    );

    // An SLO every rate meets makes the rate at the SLO a lower bound (the highest rate
    // measured), which no stated value can be.
    edit(
        &spec,
        "slo: {ttft_ms: 200,",
        "slo: {ttft_ms: 100000, e2e_ms: 100000,",
    );
    edit(&spec, "tpot_ms: 50,", "tpot_ms: 100000,");
    let (_, findings) = audit(dir.path(), &["TR126"]);
    let bound = with(&findings, "claim", "error")
        .into_iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .find(|m| m.starts_with("claim `capacity_at_slo` does not hold"))
        .unwrap_or_else(|| panic!("{}", show(&findings)));
    assert!(bound.contains("only a lower bound"), "{bound}");
}
