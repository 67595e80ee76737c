//! Progress for humans: an indicatif bar with ETA and live tok/s on a terminal, one plain line
//! per run otherwise (logs, CI), nothing with --quiet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::load::Live;

pub enum Progress {
    Bar(ProgressBar),
    Lines { total: usize, done: usize },
    Quiet,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} runs  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Progress::Bar(bar)
        } else {
            Progress::Lines { total, done: 0 }
        }
    }

    /// Reports one finished run.
    pub fn finished(&mut self, line: &str, short: &str) {
        match self {
            Progress::Bar(bar) => {
                bar.set_message(short.to_owned());
                bar.inc(1);
            }
            Progress::Lines { total, done } => {
                *done += 1;
                eprintln!(
                    "[{done:>width$}/{total}] {line}",
                    width = total.to_string().len()
                );
            }
            Progress::Quiet => {}
        }
    }

    /// A message that must not be overdrawn by the bar.
    pub fn note(&self, text: &str) {
        match self {
            Progress::Bar(bar) => bar.println(text),
            Progress::Lines { .. } => eprintln!("{text}"),
            Progress::Quiet => {}
        }
    }

    /// Follows a load period while it runs: offered against achieved rate, requests in
    /// flight, errors and output tok/s, on the bar twice a second, or as a line every 10 s.
    /// Abort the returned task when the period ends.
    pub fn follow_load(
        &self,
        live: Arc<Live>,
        offered_rate: Option<f64>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (bar, every) = match self {
            Progress::Bar(bar) => (Some(bar.clone()), Duration::from_millis(500)),
            Progress::Lines { .. } => (None, Duration::from_secs(10)),
            Progress::Quiet => return None,
        };
        let started = Instant::now();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let line = live_line(&live, offered_rate, started.elapsed());
                match &bar {
                    Some(bar) => bar.set_message(line),
                    None => eprintln!("  {line}"),
                }
            }
        }))
    }

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// One line of a load period's state.
fn live_line(live: &Live, offered_rate: Option<f64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let sent = live.sent.load(Ordering::Relaxed);
    let finished = live.finished.load(Ordering::Relaxed);
    let offered = offered_rate.map_or("closed loop".to_owned(), |r| format!("offered {r:.2}/s"));
    format!(
        "{offered}, sent {sent} ({:.2}/s so far, warm-up included), {} in flight, {} errors, {:.0} tok/s",
        sent as f64 / secs,
        sent.saturating_sub(finished),
        live.errors.load(Ordering::Relaxed),
        live.output_tokens.load(Ordering::Relaxed) as f64 / secs
    )
}
