//! Scaling efficiency: what N concurrent agents produced together against what N lone agents
//! would have, aggregate throughput / (N x the single-agent throughput of the same
//! configuration). Parallel efficiency (the seed's overlap efficiency, sum of agent times /
//! (N x wall)) says how well the agents' requests overlapped; scaling efficiency says how much
//! work the overlap bought. One shared server shows nearly perfect overlap at about half the
//! scaling: both agents were in flight the whole time, each at half speed.
//!
//! The lone agents' throughput is uncertain too. With interleaved runs each repetition is a
//! block, so a group run is divided by the single-agent throughput of its own repetition, and
//! the baseline's variation enters the per-run values (and so the interval); otherwise, or for
//! a repetition without a single-agent run, by the single cell's total tokens over total time.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;

use super::contention::config_key;
use super::frame::Frames;
use super::summary::run_tokens_and_seconds;

/// The lone agent's throughput of one configuration: over all its runs, and per repetition.
struct Baseline {
    pooled: f64,
    by_repetition: BTreeMap<u32, f64>,
}

fn rate(tokens: &[f64], seconds: &[f64]) -> Option<f64> {
    let s: f64 = seconds.iter().sum();
    (s > 0.0)
        .then(|| tokens.iter().sum::<f64>() / s)
        .filter(|r| *r > 0.0)
}

/// Per measured run of each multi-agent cell that has a single-agent baseline: (cell, scaling
/// efficiency). `paired`: the runs were interleaved, so repetitions are blocks.
pub fn run_values(frames: &Frames, paired: bool) -> PolarsResult<Vec<(usize, f64)>> {
    let mut baselines: HashMap<String, Baseline> = HashMap::new();
    for (i, cell) in frames
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.agents == 1)
    {
        let (tokens, seconds, reps) = run_tokens_and_seconds(frames, i)?;
        let Some(pooled) = rate(&tokens, &seconds) else {
            continue;
        };
        let mut per_rep: BTreeMap<u32, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for ((t, s), r) in tokens.iter().zip(&seconds).zip(&reps) {
            let e = per_rep.entry(*r).or_default();
            e.0.push(*t);
            e.1.push(*s);
        }
        let by_repetition = per_rep
            .into_iter()
            .filter_map(|(r, (t, s))| rate(&t, &s).map(|v| (r, v)))
            .collect();
        baselines.insert(
            config_key(&cell.params),
            Baseline {
                pooled,
                by_repetition,
            },
        );
    }
    let mut out = Vec::new();
    for (i, cell) in frames
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.agents > 1)
    {
        let Some(lone) = baselines.get(&config_key(&cell.params)) else {
            continue;
        };
        let (tokens, seconds, reps) = run_tokens_and_seconds(frames, i)?;
        for ((t, s), r) in tokens.iter().zip(&seconds).zip(&reps) {
            let base = match lone.by_repetition.get(r) {
                Some(b) if paired => *b,
                _ => lone.pooled,
            };
            out.push((i, t / s / (cell.agents as f64 * base)));
        }
    }
    Ok(out)
}
