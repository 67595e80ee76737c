#!/usr/bin/env python3
"""Reference values for the statistics tests, computed with scipy/numpy independently of the
Rust code. Usage: python3 scripts/reference-stats.py > tests/fixtures/stats_reference.json
(needs scipy and numpy: pip install scipy numpy)."""
import json

import numpy as np
import scipy
from scipy import stats

samples = {
    "fast": [114.2, 115.9, 113.8, 116.4, 112.9],
    "slow": [99.1, 100.2, 98.7, 99.9, 99.8],
    "c": [10.1, 9.8, 10.4],
    "d": [10.0, 10.3, 9.9],
    "ties_a": [1, 2, 2, 3, 5, 8],
    "ties_b": [2, 4, 4, 6, 9, 10, 11],
    "with_outlier": [50.1, 49.8, 50.3, 50.0, 49.9, 50.2, 71.0],
}


def describe(x):
    x = np.array(x, dtype=float)
    n = len(x)
    half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return {
        "n": n, "mean": x.mean(), "median": float(np.median(x)), "std": x.std(ddof=1),
        "p95": float(np.percentile(x, 95)), "p99": float(np.percentile(x, 99)),
        "ci_low": x.mean() - half, "ci_high": x.mean() + half,
    }


def hedges_g(a, b):
    a, b = np.array(a, float), np.array(b, float)
    na, nb = len(a), len(b)
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return (1 - 3 / (4 * (na + nb) - 9)) * (a.mean() - b.mean()) / pooled


def compare(a, b):
    w = stats.ttest_ind(a, b, equal_var=False)
    logs = stats.ttest_ind(np.log(a), np.log(b), equal_var=False)
    ci = logs.confidence_interval(0.95)
    return {
        "welch_t": float(w.statistic), "welch_df": float(w.df), "p": float(w.pvalue),
        "ratio": float(np.exp(np.mean(np.log(a)) - np.mean(np.log(b)))),
        "ratio_ci_low": float(np.exp(ci.low)), "ratio_ci_high": float(np.exp(ci.high)),
        "hedges_g": float(hedges_g(a, b)),
    }


mw = stats.mannwhitneyu(samples["ties_a"], samples["ties_b"], alternative="two-sided", method="asymptotic")
mw_lower_first = stats.mannwhitneyu(samples["slow"], samples["fast"], alternative="two-sided", method="asymptotic")
holm_p = [0.01, 0.04, 0.03, 0.005, 0.2]
# Holm by hand from its definition (statsmodels is not needed for five numbers).
order = np.argsort(holm_p)
adjusted = np.empty(len(holm_p))
running = 0.0
for rank, i in enumerate(order):
    running = max(running, min(1.0, (len(holm_p) - rank) * holm_p[i]))
    adjusted[i] = running

# Bounded intervals (src/stats/interval.rs), each from its definition with scipy's quantiles,
# or from scipy's own implementation where it has one.
bounded = {
    "busy_tput": [75.0, 1.5, 75.0, 1.5],
    "efficiency": [0.999, 0.995, 0.998, 0.9995],
    "scores": [1.0, 0.75, 1.0, 1.0, 0.5],
}


def t_interval(x):
    x = np.asarray(x, float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def log_interval(x):
    m, lo, hi = t_interval(np.log(x))
    return {"center": np.exp(m), "low": np.exp(lo), "high": np.exp(hi)}


def logit_interval(x):
    x = np.asarray(x, float)
    if np.any((x == 0) | (x == 1)):
        # No logit at a bound: the t interval clipped to [0, 1].
        m, lo, hi = t_interval(x)
        return {"center": m, "low": max(lo, 0.0), "high": min(hi, 1.0)}
    m, lo, hi = t_interval(np.log(x / (1 - x)))
    expit = lambda v: 1 / (1 + np.exp(-v))
    return {"center": expit(m), "low": expit(lo), "high": expit(hi)}


def wilson(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"low": ci.low, "high": ci.high}


def ratio_estimate(y, x):
    y, x = np.asarray(y, float), np.asarray(x, float)
    n = len(y)
    r = y.sum() / x.sum()
    se = np.sqrt(((y - r * x) ** 2).sum() / (n * (n - 1))) / x.mean()
    half = stats.t.ppf(0.975, n - 1) * se / r
    return {"center": r, "low": r * np.exp(-half), "high": r * np.exp(half)}


def paired(a, b):
    la, lb = np.log(a), np.log(b)
    t = stats.ttest_rel(la, lb)
    ci = t.confidence_interval(0.95)
    d = la - lb
    return {
        "ratio": float(np.exp(d.mean())), "ci_low": float(np.exp(ci.low)),
        "ci_high": float(np.exp(ci.high)), "p": float(t.pvalue),
        "block_share": float(1 - d.var(ddof=1) / (la.var(ddof=1) + lb.var(ddof=1))),
    }


# Tokens and seconds of five runs, for total-over-total rates.
tokens = [640.0, 512.0, 700.0, 655.0, 590.0]
seconds = [7.1, 5.2, 8.3, 7.4, 6.0]
# Two arms over five interleaved repetitions whose blocks differ (a slow third block).
block_a = [80.0, 82.0, 40.0, 81.0, 79.5]
block_b = [70.0, 73.0, 36.0, 71.5, 69.0]
# A scaling study's runs: decode tok/s of three runs at each of six model sizes (synthetic,
# roughly b = -0.6 with run-to-run noise), fitted as a power law on logarithms.
scaling_x = [5e6] * 3 + [2e7] * 3 + [5e7] * 3 + [1.35e8] * 3 + [3.5e8] * 3 + [1e9] * 3
scaling_y = [1210.0, 1185.0, 1242.0, 520.0, 538.0, 509.0, 301.0, 296.0, 312.0,
             158.0, 166.0, 161.0, 88.5, 91.2, 86.9, 46.1, 44.8, 47.3]


def power_law(x, y):
    fit = stats.linregress(np.log(x), np.log(y))
    t = stats.t.ppf(0.975, len(x) - 2)
    return {"x": x, "y": y, "exponent": fit.slope, "exponent_se": fit.stderr,
            "exponent_low": fit.slope - t * fit.stderr, "exponent_high": fit.slope + t * fit.stderr,
            "prefactor": float(np.exp(fit.intercept)), "r_squared": fit.rvalue ** 2}


mw_exact = stats.mannwhitneyu(samples["fast"], samples["slow"], alternative="two-sided", method="exact")
mw_exact_small = stats.mannwhitneyu([3.1, 1.2, 5.5], [2.0, 4.4, 6.3, 7.7], alternative="two-sided", method="exact")

out = {
    "versions": {"scipy": scipy.__version__, "numpy": np.__version__},
    "samples": samples,
    "t_quantile_0975_df10": float(stats.t.ppf(0.975, 10)),
    "describe": {k: describe(v) for k, v in samples.items()},
    "describe_log": {k: log_interval(v) for k, v in samples.items() if min(v) > 0},
    "compare_fast_slow": compare(samples["fast"], samples["slow"]),
    "compare_c_d": compare(samples["c"], samples["d"]),
    "mann_whitney_ties": {"u": float(mw.statistic), "p": float(mw.pvalue)},
    "mann_whitney_lower_first": {"u": float(mw_lower_first.statistic), "p": float(mw_lower_first.pvalue)},
    "holm": {"p": holm_p, "adjusted": adjusted.tolist()},
    "bounded": {
        "samples": bounded,
        "log_busy_tput": log_interval(bounded["busy_tput"]),
        "logit_efficiency": logit_interval(bounded["efficiency"]),
        "logit_scores": logit_interval(bounded["scores"]),
        "wilson_0_of_5": wilson(0, 5),
        "wilson_3_of_8": wilson(3, 8),
        "wilson_12_of_12": wilson(12, 12),
        "wilson_1_of_6": wilson(1, 6),
    },
    "ratio_estimate": {"tokens": tokens, "seconds": seconds, **ratio_estimate(tokens, seconds)},
    "paired": {"a": block_a, "b": block_b, **paired(block_a, block_b)},
    "power_law": power_law(scaling_x, scaling_y),
    "mann_whitney_exact": {"u": float(mw_exact.statistic), "p": float(mw_exact.pvalue),
                           "small_u": float(mw_exact_small.statistic), "small_p": float(mw_exact_small.pvalue)},
}
print(json.dumps(out, indent=2, default=float))
