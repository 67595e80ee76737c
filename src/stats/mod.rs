//! Pure statistics: numbers in, numbers out. No I/O, no frames, no spec types.
//! Reference values for the tests come from scipy (scripts/reference-stats.py ->
//! tests/fixtures/stats_reference.json).

mod bootstrap;
mod compare;
mod describe;
mod fit;
mod interval;

pub use bootstrap::bootstrap_means;
pub use compare::{
    Comparison, Verdict, compare, hedges_g, holm, mann_whitney, mann_whitney_u, welch_t,
};
pub use describe::{
    RunSpread, Summary, mad_outliers, percentile, percentile_sorted, run_spread, summarize,
    summarize_in_place, t_ci_half_width, with_run_spread, with_spread,
};
pub use fit::{PowerLaw, power_law};
pub use interval::{
    Interval, PairedRatio, Scale, mann_whitney_exact_p, mean_interval, mean_interval_on,
    paired_log_ratio, ratio_estimate, wilson,
};
