//! Workflow scenario (`scenario: {kind: workflow}`): each agent runs the spec's steps in order,
//! a step's prompt rendered from the run's input and the earlier steps' text, each call measured
//! like any request. The run is the whole workflow; its final text is scored by the spec's
//! quality rules. Pure scoring is separate from the I/O so it can be tested on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::measure::{self, Target};
use super::program::summarise_requests;
use crate::backend::{GenerationRequest, Protocol};
use crate::record::{AgentRun, GroupStats, RunStatus};
use crate::spec::{QualityRules, Workflow};

fn has_rules(q: &QualityRules) -> bool {
    !q.required_sections.is_empty()
        || !q.required_terms.is_empty()
        || q.min_words.is_some()
        || q.max_words.is_some()
}

/// The share of quality rules the text meets, and the rules it misses.
pub fn score(text: &str, rules: &QualityRules) -> (f64, Vec<String>) {
    let lower = text.to_lowercase();
    let words = text.split_whitespace().count() as u64;
    let mut checks: Vec<(bool, String)> = Vec::new();
    for section in &rules.required_sections {
        let name = section.to_lowercase();
        let present = lower.lines().any(|line| {
            let line = line
                .trim_start()
                .trim_start_matches('#')
                .trim_start()
                .trim_start_matches("**");
            line.starts_with(&name)
                && line[name.len()..]
                    .trim_start_matches("**")
                    .trim()
                    .chars()
                    .next()
                    .is_none_or(|c| c == ':')
        });
        checks.push((present, format!("section `{section}`")));
    }
    for term in &rules.required_terms {
        checks.push((
            lower.contains(&term.to_lowercase()),
            format!("term `{term}`"),
        ));
    }
    if let Some(min) = rules.min_words {
        checks.push((words >= min, format!("at least {min} words (has {words})")));
    }
    if let Some(max) = rules.max_words {
        checks.push((words <= max, format!("at most {max} words (has {words})")));
    }
    if checks.is_empty() {
        return (1.0, Vec::new());
    }
    let met = checks.iter().filter(|(ok, _)| *ok).count();
    (
        met as f64 / checks.len() as f64,
        checks
            .into_iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, rule)| rule)
            .collect(),
    )
}

/// One agent's workflow: where it sends, its first prompt, and the request settings.
pub struct WorkflowTarget {
    pub server: String,
    pub input: String,
    pub base: GenerationRequest,
}

async fn run_one(
    client: &reqwest::Client,
    protocol: &dyn Protocol,
    workflow: &Workflow,
    target: WorkflowTarget,
    deadline: tokio::time::Instant,
) -> (AgentRun, Instant) {
    let started = Instant::now();
    let mut run = AgentRun {
        server: target.server.clone(),
        ..AgentRun::default()
    };
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let mut texts = serde_json::Map::new();
    let mut last_text = String::new();
    for step in &workflow.steps {
        let context = minijinja::Value::from(minijinja::value::Serde(
            json!({"input": target.input, "steps": texts}),
        ));
        let prompt = match env.render_str(&step.prompt, context) {
            Ok(p) => p,
            Err(e) => {
                run.status = RunStatus::Degraded;
                run.reason = Some(format!("step {}: the prompt does not render: {e}", step.id));
                break;
            }
        };
        let mut request = target.base.clone();
        request.prompt = prompt;
        if let Some(n) = step.max_tokens {
            request.max_tokens = n.max(1) as u32;
        }
        let measured = measure::measure_one(
            client,
            protocol,
            &Target {
                server: target.server.clone(),
                request,
            },
            deadline,
        )
        .await;
        let what = format!("step {}", step.id);
        if !measure::keep_step(&mut run, step.id.clone(), &what, &measured) {
            break;
        }
        texts.insert(step.id.clone(), measured.text.trim().into());
        last_text = measured.text;
    }
    run.e2e_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    summarise_requests(&mut run);
    if run.status == RunStatus::Ok {
        // Without rules there is nothing to score: no score rather than a perfect one.
        if let Some(rules) = workflow.quality.as_ref().filter(|q| has_rules(q)) {
            let (quality, missed) = score(&last_text, rules);
            run.quality_score = Some(quality);
            run.quality_missed = missed;
        }
        run.text = last_text;
    }
    (run, started)
}

/// Runs the workflow once per target, all released together; group figures as for requests.
pub async fn run_group(
    client: &reqwest::Client,
    protocol: Arc<dyn Protocol>,
    workflow: Arc<Workflow>,
    targets: Vec<WorkflowTarget>,
    timeout: Duration,
) -> (Vec<AgentRun>, Option<GroupStats>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let client = client.clone();
    measure::together(targets, "workflow", move |target| {
        let (client, protocol, workflow) = (client.clone(), protocol.clone(), workflow.clone());
        async move { run_one(&client, protocol.as_ref(), &workflow, target, deadline).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> QualityRules {
        QualityRules {
            required_sections: vec!["Summary".into(), "Risks".into()],
            required_terms: vec!["server".into()],
            min_words: Some(5),
            max_words: Some(40),
        }
    }

    #[test]
    fn every_rule_counts_once() {
        let good = "## Summary\nTwo agents shared one server.\n**Risks:** the server saturates.";
        assert_eq!(score(good, &rules()), (1.0, vec![]));
        let (s, missed) = score("Summary: fine.\nNothing else here at all", &rules());
        assert_eq!(missed, ["section `Risks`", "term `server`"]);
        assert!((s - 3.0 / 5.0).abs() < 1e-12);
        // A section name inside a sentence is not a section.
        assert_eq!(
            score("The summary of risks is short, says the server.", &rules()).1,
            ["section `Summary`", "section `Risks`"]
        );
        assert_eq!(score("anything", &QualityRules::default()), (1.0, vec![]));
    }
}
