//! Background load: CPU time that processes other than the runner, its children and the
//! servers it launched used during a run. A run measured while another program loaded the
//! cores is slow for reasons outside the experiment (a TR run on a busy machine had two servers
//! alternating between 75 and 1.5 tok/s, and nothing said why); this makes it visible.
//!
//! The machine's busy time comes from the first line of /proc/stat (user, nice, system, irq,
//! softirq and steal ticks over all CPUs); the known processes' from /proc/<pid>/stat (utime,
//! stime, and cutime, cstime for the children they have waited for: agent programs, and
//! nvidia-smi). The share is over every CPU of the host, as /proc/stat counts them. A server
//! the runner did not launch (an Ollama or vLLM on this machine) is not known to it, so its
//! CPU time counts as background: for such endpoints the flag means "the machine was busy",
//! which includes the server. Linux only; elsewhere nothing is recorded.

use std::time::Instant;

use crate::record::Background;

struct Snapshot {
    at: Instant,
    busy_ticks: u64,
    known_ticks: u64,
    /// The CPUs /proc/stat's total covers.
    cpus: usize,
}

pub struct BackgroundMeter {
    pids: Vec<u32>,
    start: Option<Snapshot>,
}

/// Busy ticks of all CPUs together since boot.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// utime + stime + cutime + cstime of a process, from its /proc/<pid>/stat line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) .. cstime (17) are at 11..=14 here.
    (11..=14).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The CPUs the busy ticks are summed over: /proc/stat's `cpuN` lines, every online CPU of
/// the host. Not `available_parallelism`, which a cgroup quota or an affinity mask lowers: a
/// container limited to 2 of 16 cores would otherwise see its neighbours as a full machine.
fn cpus_in(stat: &str) -> usize {
    stat.lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
        .max(1)
}

impl BackgroundMeter {
    /// Counts the runner and `server_pids` as known.
    pub fn new(server_pids: &[u32]) -> BackgroundMeter {
        BackgroundMeter {
            pids: server_pids.to_vec(),
            start: None,
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        let stat = read("/proc/stat")?;
        let busy_ticks = busy_ticks(&stat)?;
        let own = process_ticks(&read("/proc/self/stat")?)?;
        // A server that has exited has no ticks to count any more.
        let servers: u64 = self
            .pids
            .iter()
            .filter_map(|p| read(&format!("/proc/{p}/stat")).and_then(|s| process_ticks(&s)))
            .sum();
        Some(Snapshot {
            at: Instant::now(),
            busy_ticks,
            known_ticks: own + servers,
            cpus: cpus_in(&stat),
        })
    }

    pub fn begin(&mut self) {
        self.start = self.snapshot();
    }

    /// The background load since `begin`: CPU seconds, and their share of the machine's
    /// capacity over the run (1.0 = every CPU busy with something else the whole time).
    pub fn end(&mut self) -> Option<Background> {
        let start = self.start.take()?;
        let end = self.snapshot()?;
        let wall_s = end.at.duration_since(start.at).as_secs_f64();
        let busy = end.busy_ticks.saturating_sub(start.busy_ticks);
        let known = end.known_ticks.saturating_sub(start.known_ticks);
        let cpu_s = busy.saturating_sub(known) as f64 / clock_ticks_per_second();
        let capacity = wall_s * end.cpus as f64;
        Some(Background {
            cpu_s,
            share: if capacity > 0.0 {
                (cpu_s / capacity).min(1.0)
            } else {
                0.0
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat_and_process_stat_lines() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\ncpu1 50 3 25 500 10 2 1 1 0 0\nintr 5\n";
        assert_eq!(busy_ticks(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        assert_eq!(cpus_in(stat), 2);
        // A name with spaces and a parenthesis, as /proc allows.
        let line = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194304 100 0 0 0 70 30 5 2 20 0 1 0";
        assert_eq!(process_ticks(line), Some(70 + 30 + 5 + 2));
    }

    #[test]
    fn this_process_burning_a_core_is_not_background() {
        let mut meter = BackgroundMeter::new(&[]);
        meter.begin();
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = meter.end().expect("Linux has /proc");
        // Other tests may run beside this one; what is checked is that our own core's worth of
        // work (0.3 s) is not charged as background.
        assert!(b.cpu_s >= 0.0 && b.share <= 1.0, "{b:?}");
    }
}
