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

out = {
    "versions": {"scipy": scipy.__version__, "numpy": np.__version__},
    "samples": samples,
    "t_quantile_0975_df10": float(stats.t.ppf(0.975, 10)),
    "describe": {k: describe(v) for k, v in samples.items()},
    "compare_fast_slow": compare(samples["fast"], samples["slow"]),
    "compare_c_d": compare(samples["c"], samples["d"]),
    "mann_whitney_ties": {"u": float(mw.statistic), "p": float(mw.pvalue)},
    "mann_whitney_lower_first": {"u": float(mw_lower_first.statistic), "p": float(mw_lower_first.pvalue)},
    "holm": {"p": holm_p, "adjusted": adjusted.tolist()},
}
print(json.dumps(out, indent=2, default=float))
