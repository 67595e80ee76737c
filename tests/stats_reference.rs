//! The pure statistics against reference values computed with scipy/numpy
//! (scripts/reference-stats.py -> tests/fixtures/stats_reference.json).

use banterhearts::stats::{
    Scale, Verdict, compare, holm, mann_whitney_exact_p, mann_whitney_u, mean_interval,
    paired_log_ratio, power_law, ratio_estimate, summarize, t_ci_half_width, wilson,
};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/stats_reference.json")).unwrap()
}

fn sample(f: &Value, name: &str) -> Vec<f64> {
    f["samples"][name]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn close(actual: f64, expected: &Value, what: &str) {
    let expected = expected
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no reference"));
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} vs scipy {expected}"
    );
}

#[test]
fn t_quantile_matches_scipy() {
    let f = fixture();
    // Half-width with std = sqrt(n) and n = 11 is exactly t(0.975, 10).
    close(
        t_ci_half_width(11f64.sqrt(), 11, 0.95).unwrap(),
        &f["t_quantile_0975_df10"],
        "t(0.975, 10)",
    );
}

#[test]
fn summaries_and_t_intervals_match_numpy() {
    let f = fixture();
    for name in ["fast", "slow", "c", "d", "with_outlier"] {
        let s = summarize(&sample(&f, name)).unwrap();
        let r = &f["describe"][name];
        assert_eq!(s.n as u64, r["n"].as_u64().unwrap());
        for (value, key) in [
            (s.mean, "mean"),
            (s.median, "median"),
            (s.std, "std"),
            (s.p95, "p95"),
            (s.p99, "p99"),
            (s.ci_low, "ci_low"),
            (s.ci_high, "ci_high"),
        ] {
            close(value, &r[key], &format!("{name}.{key}"));
        }
    }
    assert_eq!(
        summarize(&sample(&f, "with_outlier")).unwrap().outliers,
        1,
        "71.0 is flagged by median/MAD"
    );
    assert_eq!(summarize(&sample(&f, "fast")).unwrap().outliers, 0);
}

#[test]
fn welch_ratio_interval_and_hedges_g_match_scipy() {
    let f = fixture();
    let c = compare(&sample(&f, "fast"), &sample(&f, "slow"));
    let r = &f["compare_fast_slow"];
    close(c.welch_t.unwrap(), &r["welch_t"], "welch t");
    close(c.welch_df.unwrap(), &r["welch_df"], "welch df");
    close(c.p_value.unwrap(), &r["p"], "welch p");
    close(c.ratio.unwrap(), &r["ratio"], "ratio");
    close(c.ratio_ci_low.unwrap(), &r["ratio_ci_low"], "ratio ci low");
    close(
        c.ratio_ci_high.unwrap(),
        &r["ratio_ci_high"],
        "ratio ci high",
    );
    close(c.hedges_g.unwrap(), &r["hedges_g"], "hedges g");
    assert_eq!(c.verdict, Verdict::Higher);
    assert!(
        c.mann_whitney.is_some(),
        "5 runs per arm allow Mann-Whitney"
    );

    let overlap = compare(&sample(&f, "c"), &sample(&f, "d"));
    let r = &f["compare_c_d"];
    close(overlap.p_value.unwrap(), &r["p"], "overlapping p");
    close(
        overlap.ratio_ci_low.unwrap(),
        &r["ratio_ci_low"],
        "overlapping ci low",
    );
    assert_eq!(overlap.verdict, Verdict::NotDetectable { n: 3 });
    assert_eq!(overlap.sentence(), "not detectable at n=3");
    assert!(
        overlap.mann_whitney.is_none(),
        "no Mann-Whitney below 4 runs per arm"
    );
}

#[test]
fn mann_whitney_matches_scipy_asymptotic_with_ties_and_lower_first_sample() {
    let f = fixture();
    let (u, p) = mann_whitney_u(&sample(&f, "ties_a"), &sample(&f, "ties_b")).unwrap();
    close(u, &f["mann_whitney_ties"]["u"], "U with ties");
    close(p, &f["mann_whitney_ties"]["p"], "p with ties");
    // statrs' exact test gets this case wrong (p = 1.0); ours must not.
    let (u, p) = mann_whitney_u(&sample(&f, "slow"), &sample(&f, "fast")).unwrap();
    close(u, &f["mann_whitney_lower_first"]["u"], "U lower first");
    close(p, &f["mann_whitney_lower_first"]["p"], "p lower first");
}

#[test]
fn holm_adjustment_matches_reference() {
    let f = fixture();
    let p: Vec<f64> = f["holm"]["p"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, adjusted) in holm(&p).iter().enumerate() {
        close(*adjusted, &f["holm"]["adjusted"][i], &format!("holm[{i}]"));
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn log_and_logit_intervals_match_their_scipy_definitions() {
    let f = fixture();
    let b = &f["bounded"];
    for (sample, scale, key) in [
        ("busy_tput", Scale::Log, "log_busy_tput"),
        ("efficiency", Scale::Logit, "logit_efficiency"),
        ("scores", Scale::Logit, "logit_scores"),
    ] {
        let i = mean_interval(&numbers(&b["samples"][sample]), scale, 0.95).unwrap();
        close(i.center, &b[key]["center"], &format!("{key}.center"));
        close(i.low, &b[key]["low"], &format!("{key}.low"));
        close(i.high, &b[key]["high"], &format!("{key}.high"));
    }
}

#[test]
fn wilson_matches_scipy_binomtest() {
    let f = fixture();
    for (k, n, key) in [
        (0, 5, "wilson_0_of_5"),
        (3, 8, "wilson_3_of_8"),
        (12, 12, "wilson_12_of_12"),
    ] {
        let (lo, hi) = wilson(k, n, 0.95).unwrap();
        close(lo, &f["bounded"][key]["low"], &format!("{key}.low"));
        close(hi, &f["bounded"][key]["high"], &format!("{key}.high"));
    }
}

#[test]
fn ratio_estimator_matches_its_definition() {
    let f = fixture();
    let r = &f["ratio_estimate"];
    let i = ratio_estimate(&numbers(&r["tokens"]), &numbers(&r["seconds"]), 0.95).unwrap();
    close(i.center, &r["center"], "ratio");
    close(i.low, &r["low"], "ratio.low");
    close(i.high, &r["high"], "ratio.high");
}

#[test]
fn paired_log_ratio_matches_scipy_ttest_rel() {
    let f = fixture();
    let p = &f["paired"];
    let got = paired_log_ratio(&numbers(&p["a"]), &numbers(&p["b"]), 0.95).unwrap();
    for (value, key) in [
        (got.ratio, "ratio"),
        (got.ci_low, "ci_low"),
        (got.ci_high, "ci_high"),
        (got.p, "p"),
        (got.block_share, "block_share"),
    ] {
        close(value, &p[key], &format!("paired.{key}"));
    }
}

#[test]
fn exact_mann_whitney_matches_scipy() {
    let f = fixture();
    let r = &f["mann_whitney_exact"];
    let (fast, slow) = (sample(&f, "fast"), sample(&f, "slow"));
    let (u, _) = mann_whitney_u(&fast, &slow).unwrap();
    close(u, &r["u"], "U");
    close(
        mann_whitney_exact_p(u, fast.len(), slow.len()).unwrap(),
        &r["p"],
        "exact p",
    );
    let (a, b) = ([3.1, 1.2, 5.5], [2.0, 4.4, 6.3, 7.7]);
    let (u, _) = mann_whitney_u(&a, &b).unwrap();
    close(u, &r["small_u"], "small U");
    close(
        mann_whitney_exact_p(u, 3, 4).unwrap(),
        &r["small_p"],
        "small exact p",
    );
}

#[test]
fn power_law_fit_matches_scipy_linregress_on_logarithms() {
    let f = fixture();
    let r = &f["power_law"];
    let column = |key: &str| -> Vec<f64> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let fit = power_law(&column("x"), &column("y"), 0.95).unwrap();
    for (value, key) in [
        (fit.exponent, "exponent"),
        (fit.exponent_se, "exponent_se"),
        (fit.exponent_low, "exponent_low"),
        (fit.exponent_high, "exponent_high"),
        (fit.prefactor, "prefactor"),
        (fit.r_squared, "r_squared"),
    ] {
        close(value, &r[key], &format!("power law {key}"));
    }
    assert_eq!((fit.n, fit.distinct_x), (18, 6));
}
