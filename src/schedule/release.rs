//! Releasing a request at its deadline. tokio's timer has about 1 ms granularity (measured
//! here: `sleep(100 us)` overshoots by a median 0.97 ms, more when the workers are busy),
//! while a thread's `sleep` on Linux wakes within tens of microseconds (high-resolution
//! timers, 50 us of timer slack). So the wait sleeps on tokio's timer until `SPIN_WINDOW`
//! (3 ms: 1.5 ms let Poisson bursts through late) before the deadline, hands the rest to a
//! blocking thread that sleeps until `BLOCKING_SPIN` before it and spins the last stretch,
//! and resumes when that thread returns. Spinning 1.5 ms on a runtime worker instead cost a
//! core at 1,000 releases a second (docs/benchmarks.md). Deadlines are absolute instants: a
//! late release does not move the next one.

use std::time::{Duration, Instant};

/// How long before a deadline tokio's timer gives way to the precise wait.
pub const SPIN_WINDOW: Duration = Duration::from_micros(3000);

/// How long before the deadline the precise wait stops sleeping and spins.
const BLOCKING_SPIN: Duration = Duration::from_micros(80);

/// A deadline this close is spun for on the caller's thread.
const INLINE_SPIN: Duration = Duration::from_micros(150);

/// Waits until `deadline` and returns how late it was released (zero when on time; a deadline
/// already past returns at once with its lateness, so a request that fell behind is sent
/// late, never dropped).
pub async fn release(deadline: Instant) -> Duration {
    if let Some(early) = deadline.checked_sub(SPIN_WINDOW)
        && early > Instant::now()
    {
        tokio::time::sleep_until(tokio::time::Instant::from_std(early)).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() && left <= INLINE_SPIN {
        // Too close to hand to another thread (the handoff takes about as long): spin here.
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
    } else if !left.is_zero() {
        let precise = tokio::task::spawn_blocking(move || {
            if let Some(wake) = deadline.checked_sub(BLOCKING_SPIN) {
                let now = Instant::now();
                if wake > now {
                    std::thread::sleep(wake - now);
                }
            }
            while Instant::now() < deadline {
                std::hint::spin_loop();
            }
        });
        // Without a blocking pool (a current-thread runtime in a test), spin here instead.
        if precise.await.is_err() {
            while Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
        }
    }
    Instant::now().saturating_duration_since(deadline)
}
