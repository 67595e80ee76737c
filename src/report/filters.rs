//! Template filters that format numbers the same way everywhere: fixed decimals, a dash for
//! missing values, explicit signs for changes. Formatting never depends on locale or time.

use minijinja::Value;

fn number(v: &Value) -> Option<f64> {
    if v.is_undefined() || v.is_none() {
        return None;
    }
    f64::try_from(v.clone()).ok().filter(|x| x.is_finite())
}

const MISSING: &str = "–";

/// `{{ x | num(2) }}` -> "12.35"
pub fn num(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| format!("{x:.*}", digits.unwrap_or(2)))
}

/// A whole number with its thousands grouped: `{{ 134515008 | count }}` -> "134,515,008".
pub fn count(v: Value) -> String {
    number(&v).map_or(MISSING.into(), |x| {
        let digits = format!("{:.0}", x.abs());
        let mut grouped = String::new();
        for (i, d) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(d);
        }
        if x.round() < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    })
}

/// `{{ x | ms }}` -> "123.4 ms"
pub fn ms(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| {
        format!("{x:.*} ms", digits.unwrap_or(1))
    })
}

/// `x` times 100 with `digits` decimals (and a sign if `signed`). A hundredfold of 1e15 or
/// more (a hostile spec's 1e308 among them, whose hundredfold is past f64's range) is written
/// in scientific notation with the exponent raised by two: never hundreds of digits, never "inf".
fn hundredfold(x: f64, digits: usize, signed: bool) -> String {
    let scaled = x * 100.0;
    if scaled.abs() < 1e15 {
        return if signed {
            format!("{scaled:+.digits$}")
        } else {
            format!("{scaled:.digits$}")
        };
    }
    let sci = if signed {
        format!("{x:+.digits$e}")
    } else {
        format!("{x:.digits$e}")
    };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    format!("{mantissa}e{}", exponent.parse::<i32>().unwrap_or(0) + 2)
}

/// A fraction as a percentage: `{{ 0.9336 | pct }}` -> "93.4%"
pub fn pct(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| {
        format!("{}%", hundredfold(x, digits.unwrap_or(1), false))
    })
}

/// A difference of fractions in percentage points, signed: `{{ 0.0248 | pp }}` -> "+2.48 pp"
pub fn pp(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| {
        format!("{} pp", hundredfold(x, digits.unwrap_or(2), true))
    })
}

/// A ratio as a signed change: `{{ 1.152 | change }}` -> "+15.2%"
pub fn change(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| {
        format!("{}%", hundredfold(x - 1.0, digits.unwrap_or(1), true))
    })
}

/// A signed number: `{{ -3.2 | signed(1) }}` -> "-3.2"
pub fn signed(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| format!("{x:+.*}", digits.unwrap_or(2)))
}

/// A p-value: `{{ 0.00123 | pvalue }}` -> "0.0012", `{{ 1e-7 | pvalue }}` -> "< 0.0001"
pub fn pvalue(v: Value) -> String {
    match number(&v) {
        Some(p) if p < 1e-4 => "< 0.0001".into(),
        Some(p) => format!("{p:.4}"),
        None => MISSING.into(),
    }
}

/// Dollars: `{{ 0.27546 | usd }}` -> "$0.2755"
pub fn usd(v: Value, digits: Option<usize>) -> String {
    number(&v).map_or(MISSING.into(), |x| format!("${x:.*}", digits.unwrap_or(4)))
}

/// An interval from a summary's ci_low/ci_high: `{{ s | ci(1) }}` -> "[84.2, 100.6]"
pub fn ci(v: Value, digits: Option<usize>) -> String {
    let d = digits.unwrap_or(2);
    let field = |name: &str| v.get_attr(name).ok().and_then(|x| number(&x));
    match (field("ci_low"), field("ci_high")) {
        (Some(lo), Some(hi)) => format!("[{lo:.d$}, {hi:.d$}]"),
        _ => MISSING.into(),
    }
}

/// Text as a sentence: exactly one full stop at the end (`{{ reason | sentence }}`).
pub fn sentence(v: String) -> String {
    let t = v.trim_end();
    if t.ends_with(['.', '!', '?']) {
        t.to_owned()
    } else {
        format!("{t}.")
    }
}

/// Text safe inside a Markdown table cell: pipes escaped, line breaks folded into spaces.
pub fn cell(v: Value) -> String {
    if v.is_none() || v.is_undefined() {
        return MISSING.into();
    }
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

pub fn register(env: &mut minijinja::Environment<'_>) {
    env.add_filter("num", num);
    env.add_filter("count", count);
    env.add_filter("ms", ms);
    env.add_filter("pct", pct);
    env.add_filter("pp", pp);
    env.add_filter("change", change);
    env.add_filter("signed", signed);
    env.add_filter("usd", usd);
    env.add_filter("pvalue", pvalue);
    env.add_filter("sentence", sentence);
    env.add_filter("cell", cell);
    env.add_filter("ci", ci);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_fixed_and_signed() {
        assert_eq!(num(Value::from(12.3456), Some(2)), "12.35");
        assert_eq!(count(Value::from(134_515_008)), "134,515,008");
        assert_eq!(count(Value::from(999.6)), "1,000");
        assert_eq!(count(Value::from(-1234)), "-1,234");
        assert_eq!(count(Value::from(12)), "12");
        assert_eq!(ms(Value::from(123.44), None), "123.4 ms");
        assert_eq!(pct(Value::from(0.93365), None), "93.4%");
        assert_eq!(pp(Value::from(0.0248), None), "+2.48 pp");
        assert_eq!(pp(Value::from(-0.01), Some(1)), "-1.0 pp");
        assert_eq!(change(Value::from(1.152), None), "+15.2%");
        assert_eq!(change(Value::from(0.42), Some(0)), "-58%");
        assert_eq!(usd(Value::from(0.275463), None), "$0.2755");
        assert_eq!(pvalue(Value::from(0.00123)), "0.0012");
        assert_eq!(sentence("fixed it.".into()), "fixed it.");
        assert_eq!(
            cell(Value::from("Shared | per-agent\nservers")),
            "Shared \\| per-agent servers"
        );
        assert_eq!(sentence("fixed it ".into()), "fixed it.");
        assert_eq!(pvalue(Value::from(3e-7)), "< 0.0001");
        assert_eq!(num(Value::from(()), None), "–");
        assert_eq!(num(Value::from(f64::NAN), None), "–");
        let s = Value::from(minijinja::value::Serde(
            serde_json::json!({"ci_low": 84.22, "ci_high": 100.61}),
        ));
        assert_eq!(ci(s, Some(1)), "[84.2, 100.6]");
    }

    /// A hundredfold of 1e15 or more, up to past f64's range, keeps its digits and gains two
    /// in the exponent; below that the fixed form stands.
    #[test]
    fn percentages_of_absurd_values_are_written_not_infinite() {
        assert_eq!(pct(Value::from(1e307), None), "1.0e309%");
        assert_eq!(change(Value::from(-1e308), Some(2)), "-1.00e310%");
        assert_eq!(pp(Value::from(5e306), Some(0)), "+5e308 pp");
        assert_eq!(pct(Value::from(2.5e13), None), "2.5e15%");
        assert_eq!(pct(Value::from(9e12), Some(0)), "900000000000000%");
    }
}
