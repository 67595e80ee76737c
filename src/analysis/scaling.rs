//! Scaling efficiency: what N concurrent agents produced together against what N lone agents
//! would have, aggregate throughput / (N x the single-agent throughput of the same
//! configuration). Parallel efficiency (the seed's overlap efficiency, sum of agent times /
//! (N x wall)) says how well the agents' requests overlapped; scaling efficiency says how much
//! work the overlap bought. One shared server shows nearly perfect overlap at about half the
//! scaling: both agents were in flight the whole time, each at half speed.

use std::collections::HashMap;

use polars::prelude::*;

use super::contention::config_key;
use super::frame::Frames;
use super::summary::run_tokens_and_seconds;
use crate::stats;

/// Per measured run of each multi-agent cell that has a single-agent baseline: (cell, scaling
/// efficiency). The baseline is the single cell's total tokens over its total time.
pub fn run_values(frames: &Frames) -> PolarsResult<Vec<(usize, f64)>> {
    let mut baselines: HashMap<String, f64> = HashMap::new();
    for (i, cell) in frames
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.agents == 1)
    {
        let (tokens, seconds) = run_tokens_and_seconds(frames, i)?;
        let rate = stats::ratio_estimate(&tokens, &seconds, 0.95)
            .map(|r| r.center)
            .or_else(|| {
                let s: f64 = seconds.iter().sum();
                (s > 0.0).then(|| tokens.iter().sum::<f64>() / s)
            });
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            baselines.insert(config_key(&cell.params), rate);
        }
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
        let (tokens, seconds) = run_tokens_and_seconds(frames, i)?;
        for (t, s) in tokens.iter().zip(&seconds) {
            out.push((i, t / s / (cell.agents as f64 * lone)));
        }
    }
    Ok(out)
}
