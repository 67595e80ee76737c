//! Pacing: when each request of a load period is due. One small abstraction, as vegeta's
//! `lib/pacer.go` has it: a [`Pacer`] answers "when is the next request due?", and every kind
//! of load (open-loop arrivals at a constant, Poisson or gamma rate; closed-loop users; later,
//! trace replay) is a pacer behind it. Due times are offsets from the period's start, so the
//! caller waits for absolute deadlines ([`release`]) and never chains `sleep(interval)`, which
//! drifts by each sleep's overshoot.
//!
//! Open-loop schedules are drawn in full before the period from a seed derived from the run
//! id: the same schedule on every machine and on every resume, and it can be recorded with
//! the run.
//!
//! The `load` scenario (`spec::load`) chooses the pacer; `runner::load` runs a period on it.

mod release;

use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution, Exp, Gamma};

pub use release::{SPIN_WINDOW, release};

/// How requests arrive in an open-loop period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Exactly 1/rate apart.
    Constant,
    /// Exponential gaps of mean 1/rate: independent arrivals.
    Poisson,
    /// Gamma gaps of mean 1/rate and shape `burstiness`: below 1 burstier than Poisson, above
    /// 1 more regular; 1 is Poisson.
    Gamma { burstiness: f64 },
}

/// Where a period ends: after a duration, or after a number of requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Duration(Duration),
    Requests(u64),
}

/// What the pacer is told about the period so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Requests released so far.
    pub sent: u64,
    /// Requests finished so far (closed loop releases one per finished one).
    pub finished: u64,
    /// Time since the period started.
    pub elapsed: Duration,
}

/// When the next request is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Due {
    /// At this offset from the period's start (in the past when the caller is behind: send
    /// now, and record the lateness).
    At(Duration),
    /// When an in-flight request finishes (closed loop with every user busy).
    WhenOneFinishes,
    /// The period has no more requests.
    Done,
}

/// The one pacing interface: given the period's progress, when is the next request due?
pub trait Pacer: Send {
    fn next(&mut self, progress: Progress) -> Due;
}

/// A seed for a run's schedule, from its id (stable across machines and resumes).
pub fn seed_for(run_id: &str) -> u64 {
    let digest = crate::store::sha256_hex(run_id.as_bytes());
    u64::from_str_radix(&digest[..16], 16).unwrap_or(0)
}

/// An open-loop schedule: every request's due offset, drawn in advance.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoop {
    offsets: Vec<Duration>,
}

/// Why a schedule cannot be drawn (validation refuses these before any run).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("rate must be a positive number of requests per second, got {0}")]
    Rate(f64),
    #[error("burstiness must be positive, got {0}")]
    Burstiness(f64),
}

impl OpenLoop {
    /// Draws the schedule: arrivals at `rate` per second until `limit`, from `seed`.
    pub fn draw(
        arrival: Arrival,
        rate: f64,
        limit: Limit,
        seed: u64,
    ) -> Result<OpenLoop, ScheduleError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(ScheduleError::Rate(rate));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mean_gap = 1.0 / rate;
        // Random gaps, for the arrivals that have them (constant ones are n / rate exactly).
        type Gap = Box<dyn FnMut(&mut rand_chacha::ChaCha8Rng) -> f64>;
        let mut random_gap: Option<Gap> = match arrival {
            Arrival::Constant => None,
            Arrival::Poisson => {
                let exp = Exp::new(rate).map_err(|_| ScheduleError::Rate(rate))?;
                Some(Box::new(move |rng| exp.sample(rng)))
            }
            Arrival::Gamma { burstiness } => {
                if !(burstiness.is_finite() && burstiness > 0.0) {
                    return Err(ScheduleError::Burstiness(burstiness));
                }
                let gamma = Gamma::new(burstiness, mean_gap / burstiness)
                    .map_err(|_| ScheduleError::Burstiness(burstiness))?;
                Some(Box::new(move |rng| gamma.sample(rng)))
            }
        };
        let mut offsets = Vec::new();
        // The first request goes at the start; each later one a gap after the one before, so
        // the drawn rate over the period is what it is, and is reported as such.
        let mut at = 0.0_f64;
        loop {
            let done = match limit {
                Limit::Requests(n) => offsets.len() as u64 >= n,
                Limit::Duration(d) => at >= d.as_secs_f64(),
            };
            if done {
                break;
            }
            offsets.push(Duration::from_secs_f64(at));
            at = match &mut random_gap {
                Some(gap) => at + gap(&mut rng),
                // n / rate exactly: a running sum of 0.1 s reaches 0.9999999999999999, and one
                // request too many would fit in a one-second period.
                None => offsets.len() as f64 * mean_gap,
            };
        }
        Ok(OpenLoop { offsets })
    }

    /// A warm-up before a measured schedule: `warm`'s arrivals before `warmup`, then
    /// `measured`'s, shifted to start at `warmup`. The measured part keeps its own draw (and
    /// seed), so adding a warm-up does not change what is measured.
    pub fn after_warmup(warm: &OpenLoop, warmup: Duration, measured: &OpenLoop) -> OpenLoop {
        let offsets = (warm.offsets.iter().copied())
            .filter(|at| *at < warmup)
            .chain(measured.offsets.iter().map(|at| *at + warmup))
            .collect();
        OpenLoop { offsets }
    }

    /// A schedule given in full (a trace's times), in order.
    pub fn from_offsets(mut offsets: Vec<Duration>) -> OpenLoop {
        offsets.sort();
        OpenLoop { offsets }
    }

    pub fn offsets(&self) -> &[Duration] {
        &self.offsets
    }

    /// The schedule's own rate: requests over the span from the first to the last arrival,
    /// counting the gaps (n - 1 gaps for n requests). What an achieved rate is judged against:
    /// a Poisson draw differs from its nominal rate by sampling.
    pub fn drawn_rate(&self) -> Option<f64> {
        let (first, last) = (self.offsets.first()?, self.offsets.last()?);
        let span = (*last - *first).as_secs_f64();
        (self.offsets.len() > 1 && span > 0.0).then(|| (self.offsets.len() - 1) as f64 / span)
    }
}

/// Paces a drawn open-loop schedule: each request at its offset, whatever is in flight.
pub struct OpenLoopPacer {
    schedule: OpenLoop,
}

impl OpenLoopPacer {
    pub fn new(schedule: OpenLoop) -> OpenLoopPacer {
        OpenLoopPacer { schedule }
    }
}

impl Pacer for OpenLoopPacer {
    fn next(&mut self, progress: Progress) -> Due {
        self.schedule
            .offsets
            .get(progress.sent as usize)
            .map_or(Due::Done, |at| Due::At(*at))
    }
}

/// Closed loop: `users` users, each sending its next request when its previous one ends,
/// for `warmup`, then until `limit` (a number of requests after the warm-up, or a duration
/// after it, past which no new request starts).
pub struct ClosedLoop {
    pub users: u64,
    pub limit: Limit,
    pub warmup: Duration,
    /// Requests sent during the warm-up, known once it is over.
    warm_sent: Option<u64>,
}

impl ClosedLoop {
    pub fn new(users: u64, limit: Limit, warmup: Duration) -> ClosedLoop {
        ClosedLoop {
            users,
            limit,
            warmup,
            // Without a warm-up every request is measured.
            warm_sent: warmup.is_zero().then_some(0),
        }
    }
}

impl Pacer for ClosedLoop {
    fn next(&mut self, progress: Progress) -> Due {
        if progress.elapsed >= self.warmup && self.warm_sent.is_none() {
            self.warm_sent = Some(progress.sent);
        }
        let over = match (self.limit, self.warm_sent) {
            (_, None) => false,
            (Limit::Requests(n), Some(warm)) => progress.sent - warm >= n,
            (Limit::Duration(d), Some(_)) => progress.elapsed >= self.warmup + d,
        };
        if over {
            return Due::Done;
        }
        // A user is free when fewer requests are in flight than there are users: it sends now.
        if progress.sent - progress.finished.min(progress.sent) < self.users {
            Due::At(progress.elapsed)
        } else {
            Due::WhenOneFinishes
        }
    }
}

#[cfg(test)]
mod tests;
