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

use std::collections::HashMap;

use super::contention::config_key;
use super::frame::Frames;
use super::summary::{RunRates, total_rate};

/// The lone agent's throughput of one configuration: over all its runs, and per repetition.
struct Baseline {
    pooled: f64,
    by_repetition: HashMap<u32, f64>,
}

/// Per measured run of each multi-agent cell that has a single-agent baseline: (cell, scaling
/// efficiency). `rates` are each cell's runs' tokens and seconds; `paired`: the runs were
/// interleaved, so repetitions are blocks.
pub fn run_values(frames: &Frames, rates: &[RunRates], paired: bool) -> Vec<(usize, f64)> {
    let mut baselines: HashMap<String, Baseline> = HashMap::new();
    for (i, cell) in frames
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.agents == 1)
    {
        let (tokens, seconds, reps) = &rates[i];
        let Some(pooled) = total_rate(tokens, seconds).filter(|r| *r > 0.0) else {
            continue;
        };
        // Per repetition, its runs' total tokens and seconds (sums, not lists: a
        // million-run journal has a hundred thousand repetitions per cell).
        let mut per_rep: HashMap<u32, (f64, f64)> = HashMap::new();
        for ((t, s), r) in tokens.iter().zip(seconds).zip(reps) {
            let e = per_rep.entry(*r).or_default();
            e.0 += t;
            e.1 += s;
        }
        let by_repetition = per_rep
            .into_iter()
            .filter(|(_, (t, s))| *s > 0.0 && *t > 0.0)
            .map(|(r, (t, s))| (r, t / s))
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
        let (tokens, seconds, reps) = &rates[i];
        for ((t, s), r) in tokens.iter().zip(seconds).zip(reps) {
            let base = match lone.by_repetition.get(r) {
                Some(b) if paired => *b,
                _ => lone.pooled,
            };
            out.push((i, t / s / (cell.agents as f64 * base)));
        }
    }
    out
}
