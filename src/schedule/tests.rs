use std::time::{Duration, Instant};

use super::*;

fn gaps(s: &OpenLoop) -> Vec<f64> {
    s.offsets()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

/// The one-sample Kolmogorov-Smirnov statistic of `x` against the CDF `f`.
fn ks_one(x: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut x = x.to_vec();
    x.sort_by(f64::total_cmp);
    let n = x.len() as f64;
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let c = f(*v);
            (c - i as f64 / n).abs().max(((i + 1) as f64 / n - c).abs())
        })
        .fold(0.0, f64::max)
}

/// The two-sample Kolmogorov-Smirnov statistic.
fn ks_two(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let ecdf = |s: &[f64], v: f64| s.partition_point(|x| *x <= v) as f64 / s.len() as f64;
    a.iter()
        .chain(&b)
        .map(|v| (ecdf(&a, *v) - ecdf(&b, *v)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn constant_arrivals_are_exact_and_limits_end_the_period() {
    let s = OpenLoop::draw(
        Arrival::Constant,
        10.0,
        Limit::Duration(Duration::from_secs(1)),
        1,
    )
    .unwrap();
    assert_eq!(s.offsets().len(), 10, "0.0, 0.1, ..., 0.9 s");
    for (i, at) in s.offsets().iter().enumerate() {
        assert!((at.as_secs_f64() - i as f64 / 10.0).abs() < 1e-9);
    }
    assert!((s.drawn_rate().unwrap() - 10.0).abs() < 1e-9);
    let n = OpenLoop::draw(Arrival::Poisson, 50.0, Limit::Requests(37), 1).unwrap();
    assert_eq!(n.offsets().len(), 37);
}

#[test]
fn poisson_gaps_pass_kolmogorov_smirnov_against_the_exponential() {
    let rate = 100.0;
    let s = OpenLoop::draw(Arrival::Poisson, rate, Limit::Requests(2001), 7).unwrap();
    let g = gaps(&s);
    let d = ks_one(&g, |x| 1.0 - (-rate * x).exp());
    // Critical value at alpha = 0.01: 1.628 / sqrt(n).
    let critical = 1.628 / (g.len() as f64).sqrt();
    assert!(d < critical, "D = {d}, critical {critical}");
    // And a wrong rate is rejected, so the test can fail.
    let wrong = ks_one(&g, |x| 1.0 - (-1.5 * rate * x).exp());
    assert!(wrong > critical, "D = {wrong} against the wrong rate");
}

#[test]
fn gamma_with_burstiness_one_is_poisson_and_lower_burstiness_is_burstier() {
    let limit = Limit::Requests(2001);
    let gamma =
        gaps(&OpenLoop::draw(Arrival::Gamma { burstiness: 1.0 }, 100.0, limit, 11).unwrap());
    let poisson = gaps(&OpenLoop::draw(Arrival::Poisson, 100.0, limit, 12).unwrap());
    let (n, m) = (gamma.len() as f64, poisson.len() as f64);
    let critical = 1.628 * ((n + m) / (n * m)).sqrt();
    let d = ks_two(&gamma, &poisson);
    assert!(d < critical, "D = {d}, critical {critical}");
    // Gamma gaps with shape k have a CV of 1/sqrt(k): 2 for k = 0.25.
    let bursty =
        gaps(&OpenLoop::draw(Arrival::Gamma { burstiness: 0.25 }, 100.0, limit, 13).unwrap());
    let mean = bursty.iter().sum::<f64>() / bursty.len() as f64;
    let sd =
        (bursty.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (bursty.len() - 1) as f64).sqrt();
    assert!((sd / mean - 2.0).abs() < 0.3, "CV {}", sd / mean);
    assert!((mean - 0.01).abs() < 0.0015, "mean gap {mean}");
}

#[test]
fn the_same_run_id_gives_the_same_schedule() {
    let seed = seed_for("TR126-3f2a9c01");
    assert_eq!(seed, seed_for("TR126-3f2a9c01"));
    assert_ne!(seed, seed_for("TR126-3f2a9c02"));
    let a = OpenLoop::draw(
        Arrival::Poisson,
        20.0,
        Limit::Duration(Duration::from_secs(5)),
        seed,
    )
    .unwrap();
    let b = OpenLoop::draw(
        Arrival::Poisson,
        20.0,
        Limit::Duration(Duration::from_secs(5)),
        seed,
    )
    .unwrap();
    assert_eq!(a, b);
    let c = OpenLoop::draw(
        Arrival::Poisson,
        20.0,
        Limit::Duration(Duration::from_secs(5)),
        seed + 1,
    )
    .unwrap();
    assert_ne!(a, c);
}

#[test]
fn bad_rates_and_burstiness_are_refused() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(OpenLoop::draw(Arrival::Constant, rate, Limit::Requests(1), 0).is_err());
    }
    assert_eq!(
        OpenLoop::draw(
            Arrival::Gamma { burstiness: 0.0 },
            1.0,
            Limit::Requests(1),
            0
        ),
        Err(ScheduleError::Burstiness(0.0))
    );
}

#[test]
fn pacers_answer_when_the_next_request_is_due() {
    let s = OpenLoop::draw(Arrival::Constant, 4.0, Limit::Requests(2), 0).unwrap();
    let mut open = OpenLoopPacer::new(s);
    let at = |sent| Progress {
        sent,
        ..Progress::default()
    };
    assert_eq!(open.next(at(0)), Due::At(Duration::ZERO));
    assert_eq!(open.next(at(1)), Due::At(Duration::from_millis(250)));
    assert_eq!(open.next(at(2)), Due::Done);
    let mut closed = ClosedLoop::new(2, Limit::Requests(3), Duration::ZERO);
    let now = Duration::from_millis(70);
    let p = |sent, finished| Progress {
        sent,
        finished,
        elapsed: now,
    };
    assert_eq!(closed.next(p(1, 0)), Due::At(now), "a free user sends now");
    assert_eq!(closed.next(p(2, 0)), Due::WhenOneFinishes);
    assert_eq!(closed.next(p(2, 1)), Due::At(now));
    assert_eq!(closed.next(p(3, 1)), Due::Done);
    let mut timed = ClosedLoop::new(
        1,
        Limit::Duration(Duration::from_millis(50)),
        Duration::ZERO,
    );
    assert_eq!(
        timed.next(p(0, 0)),
        Due::Done,
        "no new request after the period"
    );
}

/// Releases are never early, and a late deadline is released at once with its lateness. How
/// close to on time they are depends on the machine; scripts/bench-load measures it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_keep_absolute_deadlines_and_report_lateness() {
    let start = Instant::now() + Duration::from_millis(5);
    let mut late = Vec::new();
    for i in 0..40u32 {
        let deadline = start + Duration::from_millis(2) * i;
        let lateness = release(deadline).await;
        assert!(Instant::now() >= deadline, "released early");
        late.push(lateness);
    }
    late.sort();
    assert!(
        late[20] < Duration::from_millis(5),
        "median lateness {:?}",
        late[20]
    );
    let past = Instant::now() - Duration::from_millis(30);
    assert!(release(past).await >= Duration::from_millis(30));
}

#[test]
fn a_warm_up_comes_before_the_measured_schedule_and_leaves_it_unchanged() {
    let warm = OpenLoop::draw(
        Arrival::Constant,
        10.0,
        Limit::Duration(Duration::from_secs(1)),
        7,
    )
    .unwrap();
    let measured = OpenLoop::draw(Arrival::Poisson, 5.0, Limit::Requests(20), 8).unwrap();
    let both = OpenLoop::after_warmup(&warm, Duration::from_millis(500), &measured);
    assert_eq!(
        both.offsets().len(),
        5 + 20,
        "warm-up arrivals before 0.5 s only"
    );
    let shifted: Vec<Duration> = both.offsets()[5..]
        .iter()
        .map(|at| *at - Duration::from_millis(500))
        .collect();
    assert_eq!(shifted, measured.offsets());
    // Closed loop: requests during the warm-up do not count towards the limit.
    let mut closed = ClosedLoop::new(1, Limit::Requests(2), Duration::from_millis(100));
    let p = |sent, ms| Progress {
        sent,
        finished: sent,
        elapsed: Duration::from_millis(ms),
    };
    assert!(matches!(closed.next(p(5, 50)), Due::At(_)), "warming up");
    assert!(
        matches!(closed.next(p(6, 120)), Due::At(_)),
        "6 warm, 0 measured"
    );
    assert!(matches!(closed.next(p(7, 130)), Due::At(_)));
    assert_eq!(closed.next(p(8, 140)), Due::Done, "2 measured");
}
