//! Does a finding replicate? Each claim's figure re-derived from the original data, against
//! the same figure and its 95% interval from a replication's runs (the plan run again, here or
//! elsewhere, into `data/<TR>/replications/<name>/`).

use serde::Serialize;

use super::claims::{ClaimCheck, Outcome};
use crate::spec::claim::{Stated, Unit};
use crate::spec::{Claim, LoadedSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// The original figure lies inside the replication's interval.
    Consistent,
    /// It lies outside: `difference` says by how much.
    Differs,
    /// The replication has the figure but no interval to judge it by (too few runs, or a
    /// figure of two sweeps).
    NoInterval,
    /// The figure rests on imported figures: there is nothing to measure again.
    NotReplicable,
    /// The original or the replication has no runs for it.
    NoData,
}

impl Agreement {
    pub fn label(self) -> &'static str {
        match self {
            Agreement::Consistent => "consistent",
            Agreement::Differs => "differs",
            Agreement::NoInterval => "no interval",
            Agreement::NotReplicable => "not replicable",
            Agreement::NoData => "no data",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimReplication {
    pub id: String,
    /// The figure from the original runs, and as the claim states it.
    pub original: Option<f64>,
    pub stated: Option<String>,
    /// The figure from the replication's runs, and its 95% interval.
    pub replicated: Option<f64>,
    pub interval: Option<(f64, f64)>,
    pub agreement: Agreement,
    /// Replicated minus original, in the claim's unit.
    pub difference: Option<f64>,
    /// The claim's own check (stated value at its precision, assertion) on the replication.
    pub outcome: Outcome,
    /// The judgement in one sentence.
    pub sentence: String,
    /// The figures as the claim writes them, for tables: the original, the replication's
    /// with its interval, and the verdict with the difference.
    pub original_text: Option<String>,
    pub replicated_text: Option<String>,
    pub verdict_text: String,
}

/// One replication of a TR and its verdicts.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub name: String,
    /// Measured runs recorded in the replication, and planned.
    pub runs: usize,
    pub planned: usize,
    /// The machines it ran on (CPU model, logical CPUs), from its manifest.
    pub machines: Vec<String>,
    pub claims: Vec<ClaimReplication>,
}

impl Replication {
    pub fn count(&self, a: Agreement) -> usize {
        self.claims.iter().filter(|c| c.agreement == a).count()
    }
}

/// Judges every claim: `original` and `replicated` are the claim checks of the two data sets,
/// `intervals` the replication's interval per claim, all in the spec's claim order.
pub fn judge(
    loaded: &LoadedSpec,
    original: &[ClaimCheck],
    replicated: &[ClaimCheck],
    intervals: &[Option<(f64, f64)>],
) -> Vec<ClaimReplication> {
    loaded
        .spec
        .claims
        .iter()
        .zip(original.iter().zip(replicated).zip(intervals))
        .map(|(claim, ((o, r), interval))| judge_one(claim, o, r, *interval))
        .collect()
}

fn judge_one(
    claim: &Claim,
    original: &ClaimCheck,
    replicated: &ClaimCheck,
    interval: Option<(f64, f64)>,
) -> ClaimReplication {
    use super::claims::Basis;
    let stated = claim.stated.as_deref().and_then(|s| Stated::parse(s).ok());
    let fraction = claim
        .metric
        .as_deref()
        .is_some_and(super::compare::is_fraction);
    let show = |x: f64| match &stated {
        Some(s) => s.format(x),
        // Fractions (efficiency) are derived in percent.
        None if fraction => format!("{x:.1}%"),
        None => format!("{}", (x * 1000.0).round() / 1000.0),
    };
    // Two changes in percent differ in percentage points.
    let points = stated
        .as_ref()
        .filter(|s| s.unit == Unit::Percent)
        .map(|s| Stated {
            unit: Unit::Points,
            ..s.clone()
        });
    let show_difference = |x: f64| match &points {
        Some(p) => p.format(x),
        None => show(x),
    };
    let (o, r) = (original.derived, replicated.derived);
    let difference = o.zip(r).map(|(o, r)| r - o);
    let agreement = if original.basis == Basis::Recorded {
        Agreement::NotReplicable
    } else {
        match (o, r, interval) {
            (None, _, _) | (_, None, _) => Agreement::NoData,
            (Some(_), Some(_), None) => Agreement::NoInterval,
            (Some(o), Some(_), Some((lo, hi))) if lo <= o && o <= hi => Agreement::Consistent,
            _ => Agreement::Differs,
        }
    };
    let with_interval = |r: f64| match interval {
        Some((lo, hi)) => format!("{} [{}, {}]", show(r), show(lo), show(hi)),
        None => show(r),
    };
    let sentence = match (agreement, o, r) {
        (Agreement::NotReplicable, ..) => {
            "rests on imported figures: nothing here to measure again".to_owned()
        }
        (Agreement::NoData, None, _) => "the original data have no runs for it".to_owned(),
        (Agreement::NoData, ..) => "the replication has no runs for it".to_owned(),
        (Agreement::Consistent, Some(o), Some(r)) => format!(
            "original {} lies inside the replication's {}",
            show(o),
            with_interval(r)
        ),
        (Agreement::Differs, Some(o), Some(r)) => {
            let (lo, hi) = interval.unwrap_or((r, r));
            let outside = if o < lo { lo - o } else { o - hi };
            format!(
                "original {} lies outside the replication's {}: the replication differs by {} ({} beyond its interval)",
                show(o),
                with_interval(r),
                signed(show_difference(r - o)),
                show_difference(outside).trim_start_matches('+')
            )
        }
        (_, Some(o), Some(r)) => format!(
            "original {}, replication {} (no interval: too few runs)",
            show(o),
            show(r)
        ),
        _ => String::new(),
    };
    let verdict_text = match (agreement, difference) {
        (Agreement::Differs, Some(d)) => format!("differs by {}", signed(show_difference(d))),
        (a, _) => a.label().to_owned(),
    };
    ClaimReplication {
        original_text: o.map(show),
        replicated_text: r.map(with_interval),
        verdict_text,
        id: claim.id.clone(),
        original: o,
        stated: claim.stated.clone(),
        replicated: r,
        interval,
        agreement,
        difference,
        outcome: replicated.outcome,
        sentence,
    }
}

fn signed(text: String) -> String {
    if text.starts_with(['-', '+']) {
        text
    } else {
        format!("+{text}")
    }
}
