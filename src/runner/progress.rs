//! Progress for humans: an indicatif bar with ETA and live tok/s on a terminal, one plain line
//! per run otherwise (logs, CI), nothing with --quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

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

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
