//! The two checkable forms of a claim, parsed: a stated value ("+15.2%", "58 ms", "2.3x",
//! "$0.27") with the precision it was written at, and an assertion ("ci_low >= 0.95",
//! "not_detectable"). Pure: validation parses them to point at typos, the analysis checks them.

use std::fmt;

/// How a value is written; decides how a claim's figure is derived and printed.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// `%`: a percent change between two sides, or a percentage.
    Percent,
    /// `pp`: a difference of percentages, in percentage points.
    Points,
    /// `x`: a ratio between two sides.
    Times,
    /// `$` before the number.
    Dollars,
    /// Anything else after the number (`ms`, `tok/s`, `runs`, ...), or nothing.
    Other(String),
}

/// A value as a report states it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stated {
    pub value: f64,
    /// Digits after the decimal point as written: "+15.2%" has 1, so it stands for [15.15, 15.25].
    pub decimals: usize,
    pub unit: Unit,
    /// Written with an explicit sign ("+15.2%"), so the figure is a change, not a level.
    pub signed: bool,
}

impl Stated {
    pub fn parse(text: &str) -> Result<Stated, String> {
        let t = text.trim();
        let (dollars, t) = match t.strip_prefix('$') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let signed = t.starts_with('+') || t.starts_with('-') || t.starts_with('−');
        let end = t
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_digit() || c == '.' || c == ',' || (i == 0 && "+-−".contains(c)))
            })
            .map_or(t.len(), |(i, _)| i);
        let (number, unit) = t.split_at(end);
        let unsigned = number.trim_start_matches(['+', '-', '−']);
        // Commas only as thousands separators: "1,234" but not "1,5" (a decimal comma).
        if let Some((whole, _)) = unsigned.split_once('.').or(Some((unsigned, "")))
            && whole.contains(',')
        {
            let groups: Vec<&str> = whole.split(',').collect();
            if groups[0].is_empty()
                || groups[0].len() > 3
                || groups[1..].iter().any(|g| g.len() != 3)
            {
                return Err(format!(
                    "`{text}`: commas separate thousands (1,234); write decimals with a point"
                ));
            }
        }
        let digits = number.replace(',', "").replace('−', "-");
        let value: f64 = digits
            .parse()
            .map_err(|_| format!("`{text}` does not start with a number"))?;
        let decimals = digits.split_once('.').map_or(0, |(_, frac)| frac.len());
        let unit_text = unit.trim();
        // "1.5k tok/s" would read as 1.5 of a unit "k tok/s": magnitude suffixes must be spelt out.
        if unit.starts_with(['k', 'K', 'M', 'B', 'G'])
            && !unit.starts_with("ms")
            && !unit.starts_with("MB")
            && !unit.starts_with("GB")
            && !unit.starts_with("KB")
        {
            return Err(format!(
                "`{text}`: write the number in full (1500, not 1.5k)"
            ));
        }
        let unit = match unit_text {
            _ if dollars => Unit::Dollars,
            "%" => Unit::Percent,
            "pp" | "percentage points" => Unit::Points,
            "x" | "×" => Unit::Times,
            other if other.split_whitespace().count() > 1 => {
                return Err(format!(
                    "`{text}`: after the number, write only its unit (`+15.2%`, `58 ms`, `1,234 runs`), no other words"
                ));
            }
            other => Unit::Other(other.to_owned()),
        };
        if dollars && !unit_is_empty(t, end) {
            return Err(format!(
                "`{text}`: write dollars as `$0.27` with nothing after the number"
            ));
        }
        Ok(Stated {
            value,
            decimals,
            unit,
            signed,
        })
    }

    /// Half a unit in the last written digit: "+15.2%" allows 0.05.
    pub fn tolerance(&self) -> f64 {
        0.5 * 10f64.powi(-(self.decimals as i32))
    }

    /// Whether `derived`, rounded as the statement was, gives the stated value.
    pub fn holds_for(&self, derived: f64) -> bool {
        // The small slack keeps values that sit exactly on a rounding edge (15.25 for "15.2")
        // from failing on float noise: the statement could have been rounded either way.
        derived.is_finite()
            && (derived - self.value).abs() <= self.tolerance() * (1.0 + 1e-9) + 1e-12
    }

    /// `derived` written the way the statement is (same decimals, sign and unit).
    pub fn format(&self, derived: f64) -> String {
        let d = self.decimals;
        let number = if self.signed {
            format!("{derived:+.d$}")
        } else {
            format!("{derived:.d$}")
        };
        match &self.unit {
            Unit::Percent => format!("{number}%"),
            Unit::Points => format!("{number}pp"),
            Unit::Times => format!("{number}x"),
            Unit::Dollars => format!("${number}"),
            Unit::Other(u) if u.is_empty() => number,
            Unit::Other(u) => format!("{number} {u}"),
        }
    }
}

fn unit_is_empty(t: &str, end: usize) -> bool {
    t[end..].trim().is_empty()
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Ge => left >= right,
            Op::Gt => left > right,
            Op::Le => left <= right,
            Op::Lt => left < right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        })
    }
}

/// Statistics an assertion over one selection can name (a summary of the metric).
pub const SUMMARY_STATS: &[&str] = &[
    "n", "mean", "median", "std", "cv", "min", "max", "p95", "p99", "ci_low", "ci_high",
];
/// Statistics an assertion over a comparison can name.
pub const COMPARISON_STATS: &[&str] = &[
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "change",
    "change_ci_low",
    "change_ci_high",
    "delta_pp",
    "p",
    "p_holm",
    "hedges_g",
    "mean_a",
    "mean_b",
];
/// Verdicts an assertion over a comparison can require.
pub const VERDICTS: &[&str] = &["higher", "lower", "not_detectable"];
/// Statistics an assertion over a sweep figure (`knee_rate`, `max_rate_at_slo`) can name: the
/// figure, its bootstrap interval, and the share of resamples in which it exists at all.
pub const SWEEP_STATS: &[&str] = &["value", "ci_low", "ci_high", "found_share"];
/// Statistics an assertion over a scaling fit (`fit: <id>`) can name: the exponent, its t
/// interval, the share of the variance the line explains, and the runs fitted.
pub const FIT_STATS: &[&str] = &["exponent", "ci_low", "ci_high", "r_squared", "n"];

/// What an assertion is about, which decides the statistics it may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One selection of runs, summarised.
    Summary,
    /// Two selections compared.
    Comparison,
    /// One figure found along a rate sweep.
    Sweep,
    /// A scaling fit's exponent.
    Fit,
}

impl Form {
    /// The form of a claim's assertion.
    pub fn of(claim: &super::Claim) -> Form {
        if claim.fit.is_some() {
            return Form::Fit;
        }
        match claim.metric.as_deref() {
            Some(m) if super::metrics::is_sweep(m) => Form::Sweep,
            _ if claim.compare.is_some() => Form::Comparison,
            _ => Form::Summary,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Assertion {
    /// `<statistic> <op> <number>`
    Compare { stat: String, op: Op, value: f64 },
    /// `higher`, `lower` or `not_detectable`: the comparison's verdict.
    Verdict(String),
}

impl Assertion {
    /// Parses an assertion of the given form, which decides the statistics it may name.
    pub fn parse(text: &str, form: Form) -> Result<Assertion, String> {
        let t = text.trim();
        let comparison = form == Form::Comparison;
        let stats = match form {
            Form::Summary => SUMMARY_STATS,
            Form::Comparison => COMPARISON_STATS,
            Form::Sweep => SWEEP_STATS,
            Form::Fit => FIT_STATS,
        };
        if VERDICTS.contains(&t) {
            return if comparison {
                Ok(Assertion::Verdict(t.to_owned()))
            } else {
                Err(match form {
                    Form::Sweep => format!(
                        "`{t}` is a comparison verdict, but a sweep figure is one value with an interval"
                    ),
                    Form::Fit => format!(
                        "`{t}` is a comparison verdict, but a fit's exponent is one value with an interval"
                    ),
                    _ => format!("`{t}` is a comparison verdict, but this claim has no `compare`"),
                })
            };
        }
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let Some((pos, token, op)) = ops
            .iter()
            .filter_map(|(tok, op)| t.find(tok).map(|p| (p, *tok, *op)))
            .min_by_key(|(p, tok, _)| (*p, usize::MAX - tok.len()))
        else {
            return Err(format!(
                "`{t}` is not `<statistic> <op> <number>`{}",
                if comparison { " or a verdict" } else { "" }
            ));
        };
        let stat = t[..pos].trim();
        let number = t[pos + token.len()..].trim();
        if !stats.contains(&stat) {
            let hint = crate::diagnostic::did_you_mean(stat, stats.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(format!(
                "unknown statistic `{stat}`{hint}; one of: {}",
                stats.join(", ")
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{number}` is not a number"))?;
        Ok(Assertion::Compare {
            stat: stat.to_owned(),
            op,
            value,
        })
    }
}

/// The axes a claim pools: those whose values differ among the cells one of its sides takes
/// in (`where`, merged with `compare.a` or `compare.b` when it compares), each with its values.
/// `cells` are the parameters of every cell.
pub fn pooled_axes(
    claim: &super::Claim,
    cells: &[indexmap::IndexMap<String, serde_json::Value>],
) -> Vec<(String, Vec<serde_json::Value>)> {
    let sides: Vec<indexmap::IndexMap<String, serde_json::Value>> = match &claim.compare {
        Some(cmp) => [&cmp.a, &cmp.b]
            .into_iter()
            .filter(|side| !side.contains_key("recorded"))
            .map(|side| {
                let mut sel = claim.selection.clone();
                sel.extend(side.iter().map(|(k, v)| (k.clone(), v.clone())));
                sel
            })
            .collect(),
        None => vec![claim.selection.clone()],
    };
    let mut pooled: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for sel in &sides {
        for (axis, values) in super::matrix::pooled_axes(cells, sel) {
            if !pooled.iter().any(|(a, _)| *a == axis) {
                pooled.push((axis, values));
            }
        }
    }
    pooled
}

/// `max_tokens 32 and 64; temperature 0.6 and 0.8`: pooled axes in a sentence.
pub fn pooled_text(pooled: &[(String, Vec<serde_json::Value>)]) -> String {
    pooled
        .iter()
        .map(|(axis, values)| {
            let values: Vec<String> = values.iter().map(super::matrix::display_value).collect();
            format!("{axis} {}", values.join(" and "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stated_values_keep_their_precision_and_unit() {
        let s = Stated::parse("+15.2%").unwrap();
        assert_eq!(
            (s.value, s.decimals, s.unit.clone(), s.signed),
            (15.2, 1, Unit::Percent, true)
        );
        assert!(
            s.holds_for(15.249) && s.holds_for(15.15) && !s.holds_for(15.26) && !s.holds_for(15.14)
        );
        assert_eq!(s.format(15.2449), "+15.2%");
        let ms = Stated::parse("58 ms").unwrap();
        assert_eq!(
            (ms.value, ms.decimals, ms.unit.clone()),
            (58.0, 0, Unit::Other("ms".into()))
        );
        assert!(ms.holds_for(58.49) && !ms.holds_for(58.51));
        assert_eq!(Stated::parse("99.25%").unwrap().tolerance(), 0.005);
        assert_eq!(Stated::parse("-2.48pp").unwrap().unit, Unit::Points);
        assert_eq!(Stated::parse("2.3x").unwrap().unit, Unit::Times);
        let d = Stated::parse("$0.2755").unwrap();
        assert_eq!(
            (d.value, d.decimals, d.unit.clone()),
            (0.2755, 4, Unit::Dollars)
        );
        assert_eq!(d.format(0.27546), "$0.2755");
        assert_eq!(Stated::parse("1,234 runs").unwrap().value, 1234.0);
        assert!(Stated::parse("about 15%").is_err());
        assert!(
            Stated::parse("+15.2% faster")
                .unwrap_err()
                .contains("only its unit")
        );
        assert!(Stated::parse("1.5k tok/s").unwrap_err().contains("in full"));
        assert!(
            Stated::parse("1,5%")
                .unwrap_err()
                .contains("commas separate thousands")
        );
        assert_eq!(Stated::parse("12,345.6 tok/s").unwrap().value, 12345.6);
        assert_eq!(
            Stated::parse("58ms").unwrap().unit,
            Unit::Other("ms".into())
        );
        assert_eq!(
            Stated::parse("75 MB").unwrap().unit,
            Unit::Other("MB".into())
        );
    }

    #[test]
    fn assertions_name_known_statistics() {
        assert_eq!(
            Assertion::parse("ci_low >= 0.95", Form::Summary).unwrap(),
            Assertion::Compare {
                stat: "ci_low".into(),
                op: Op::Ge,
                value: 0.95
            }
        );
        assert_eq!(
            Assertion::parse("p_holm<0.05", Form::Comparison).unwrap(),
            Assertion::Compare {
                stat: "p_holm".into(),
                op: Op::Lt,
                value: 0.05
            }
        );
        assert_eq!(
            Assertion::parse("not_detectable", Form::Comparison).unwrap(),
            Assertion::Verdict("not_detectable".into())
        );
        assert!(
            Assertion::parse("not_detectable", Form::Summary)
                .unwrap_err()
                .contains("no `compare`")
        );
        assert!(
            Assertion::parse("ci_lo >= 1", Form::Summary)
                .unwrap_err()
                .contains("unknown statistic `ci_lo`")
        );
        assert!(
            Assertion::parse("mean >= fast", Form::Summary)
                .unwrap_err()
                .contains("not a number")
        );
        assert!(Assertion::parse("mean", Form::Summary).is_err());
        // A sweep figure names its own statistics: the value and its interval, not a summary.
        assert_eq!(
            Assertion::parse("ci_low > 3", Form::Sweep).unwrap(),
            Assertion::Compare {
                stat: "ci_low".into(),
                op: Op::Gt,
                value: 3.0
            }
        );
        assert!(
            Assertion::parse("mean > 3", Form::Sweep)
                .unwrap_err()
                .contains("one of: value, ci_low, ci_high, found_share")
        );
        assert!(Assertion::parse("higher", Form::Sweep).is_err());
    }
}
