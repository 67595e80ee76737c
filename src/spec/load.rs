//! A cell's load period, resolved: the `load` scenario's fields with the cell's load axes
//! (`rate: [1, 2, 4]` in the matrix fills each cell's `rate`), checked once, so validation
//! and the runner agree on what a cell runs. Pure; no I/O.

use indexmap::IndexMap;
use serde_json::Value;

use super::{ArrivalKind, LoadScenario};

/// Matrix axes that set a field of a cell's load scenario.
pub const LOAD_AXES: &[&str] = &[
    "rate",
    "concurrency",
    "arrival",
    "burstiness",
    "max_concurrency",
];

/// Grace for requests still in flight after the period, unless the scenario sets one.
pub const DEFAULT_GRACE_S: f64 = 30.0;

/// Who decides when requests go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Arrivals on a drawn schedule at `rate` per second, whatever is in flight.
    Open {
        arrival: ArrivalKind,
        rate: f64,
        /// Gamma only.
        burstiness: Option<f64>,
    },
    /// `users` users, each sending its next request when its previous one ends.
    Closed { users: u32 },
    /// A trace's requests on its own timestamps, divided by `time_scale`.
    Trace { time_scale: f64 },
}

/// Where the measured period ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extent {
    Seconds(f64),
    Requests(u64),
    /// A trace, replayed to its end.
    Whole,
}

/// One cell's load period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadShape {
    pub pattern: Pattern,
    pub extent: Extent,
    pub max_concurrency: Option<u32>,
    pub warmup_s: f64,
    pub grace_s: f64,
}

/// What is wrong with a cell's load, and where: `field` is the scenario field (or the axis of
/// that name when `from_axis`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProblem {
    pub field: &'static str,
    pub from_axis: bool,
    pub message: String,
    pub help: String,
}

fn problem(field: &'static str, message: String, help: &str) -> LoadProblem {
    LoadProblem {
        field,
        from_axis: false,
        message,
        help: help.to_owned(),
    }
}

/// Each load field: the scenario's, or the axis's (both is an error: which one counts?).
fn pick<T: Clone>(
    field: &'static str,
    written: &Option<T>,
    params: &IndexMap<String, Value>,
    parse: impl Fn(&Value) -> Option<T>,
    expected: &str,
) -> Result<(Option<T>, bool), LoadProblem> {
    match (written, params.get(field)) {
        (Some(_), Some(_)) => Err(problem(
            field,
            format!("`{field}` is set both in the load scenario and by the `{field}` axis"),
            &format!("keep one: remove `{field}` from the scenario or drop the axis"),
        )),
        (Some(v), None) => Ok((Some(v.clone()), false)),
        (None, Some(v)) => match parse(v) {
            Some(t) => Ok((Some(t), true)),
            None => Err(LoadProblem {
                from_axis: true,
                ..problem(
                    field,
                    format!("the `{field}` axis value {v} is not {expected}"),
                    &format!("write {expected}"),
                )
            }),
        },
        (None, None) => Ok((None, false)),
    }
}

fn integer(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// Resolves a load scenario with its cell's axes.
pub fn resolve(
    load: &LoadScenario,
    params: &IndexMap<String, Value>,
) -> Result<LoadShape, LoadProblem> {
    let (rate, rate_axis) = pick("rate", &load.rate, params, Value::as_f64, "a number")?;
    let (users, users_axis) = pick(
        "concurrency",
        &load.concurrency,
        params,
        integer,
        "a whole number",
    )?;
    let (arrival, arrival_axis) = pick(
        "arrival",
        &load.arrival,
        params,
        |v| serde_json::from_value::<ArrivalKind>(v.clone()).ok(),
        "constant, poisson or gamma",
    )?;
    let (burstiness, burst_axis) = pick(
        "burstiness",
        &load.burstiness,
        params,
        Value::as_f64,
        "a number",
    )?;
    let (cap, cap_axis) = pick(
        "max_concurrency",
        &load.max_concurrency,
        params,
        integer,
        "a whole number",
    )?;
    let at = |field: &'static str, from_axis: bool, message: String, help: &str| LoadProblem {
        from_axis,
        ..problem(field, message, help)
    };
    if load.trace.is_some() {
        return resolve_trace(load, rate.is_some() || users.is_some(), arrival.is_some());
    }
    if load.time_scale.is_some() {
        return Err(problem(
            "time_scale",
            "`time_scale` speeds up a trace, and this load scenario replays none".into(),
            "add `trace: traces/<file>.jsonl`, or remove `time_scale`",
        ));
    }
    let pattern = match (rate, users) {
        (Some(_), Some(_)) => {
            return Err(at(
                "rate",
                rate_axis,
                "a load scenario with `concurrency` is closed-loop and cannot also have a `rate`"
                    .into(),
                "open loop: `{kind: load, rate: 4, duration_s: 60}`; closed loop: `{kind: load, concurrency: 4, duration_s: 60}`",
            ));
        }
        (None, None) => {
            return Err(problem(
                "rate",
                "a load scenario needs a `rate` (open loop) or a `concurrency` (closed loop)"
                    .into(),
                "add `rate: 4` (requests per second) or `concurrency: 4` (users), or a `rate` axis",
            ));
        }
        (Some(rate), None) => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(at(
                    "rate",
                    rate_axis,
                    format!("`rate` must be a positive number of requests per second, got {rate}"),
                    "write a rate above 0, e.g. `rate: 2.5`",
                ));
            }
            let arrival = arrival.unwrap_or(ArrivalKind::Poisson);
            match (arrival, burstiness) {
                (ArrivalKind::Gamma, None) => {
                    return Err(at(
                        "burstiness",
                        false,
                        "gamma arrivals need a `burstiness` (the gaps' shape)".into(),
                        "add `burstiness: 0.5` (burstier than Poisson) or `1` (Poisson)",
                    ));
                }
                (ArrivalKind::Gamma, Some(k)) if !(k.is_finite() && k > 0.0) => {
                    return Err(at(
                        "burstiness",
                        burst_axis,
                        format!("`burstiness` must be positive, got {k}"),
                        "below 1 is burstier than Poisson, 1 is Poisson, above 1 more regular",
                    ));
                }
                (ArrivalKind::Constant | ArrivalKind::Poisson, Some(_)) => {
                    return Err(at(
                        "burstiness",
                        burst_axis,
                        format!(
                            "`burstiness` applies to gamma arrivals only, and these are {}",
                            arrival_name(arrival)
                        ),
                        "add `arrival: gamma`, or remove `burstiness`",
                    ));
                }
                _ => {}
            }
            Pattern::Open {
                arrival,
                rate,
                burstiness,
            }
        }
        (None, Some(users)) => {
            if users < 1 || users > u32::MAX as i64 {
                return Err(at(
                    "concurrency",
                    users_axis,
                    format!("`concurrency` must be at least 1 user, got {users}"),
                    "write `concurrency: 1` or more",
                ));
            }
            for (field, set, axis) in [
                ("arrival", arrival.is_some(), arrival_axis),
                ("burstiness", burstiness.is_some(), burst_axis),
                ("max_concurrency", cap.is_some(), cap_axis),
            ] {
                if set {
                    return Err(at(
                        field,
                        axis,
                        format!(
                            "`{field}` applies to open-loop load (with a `rate`), and this one is closed-loop (`concurrency`)"
                        ),
                        &format!(
                            "remove `{field}`: closed-loop users send when their last request ends"
                        ),
                    ));
                }
            }
            Pattern::Closed {
                users: users as u32,
            }
        }
    };
    let extent = match (load.duration_s, load.requests) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(problem(
                "duration_s",
                format!(
                    "a load scenario needs exactly one of `duration_s` and `requests`, and this one has {}",
                    if load.duration_s.is_some() {
                        "both"
                    } else {
                        "neither"
                    }
                ),
                "write `duration_s: 60` (a timed period) or `requests: 500` (a counted one)",
            ));
        }
        (Some(d), None) if !(d.is_finite() && d > 0.0) => {
            return Err(problem(
                "duration_s",
                format!("`duration_s` must be a positive number of seconds, got {d}"),
                "write e.g. `duration_s: 60`",
            ));
        }
        (Some(d), None) => Extent::Seconds(d),
        (None, Some(n)) if n < 1 => {
            return Err(problem(
                "requests",
                format!("`requests` must be at least 1, got {n}"),
                "write e.g. `requests: 500`",
            ));
        }
        (None, Some(n)) => Extent::Requests(n as u64),
    };
    let max_concurrency = match cap {
        Some(c) if c < 1 || c > u32::MAX as i64 => {
            return Err(at(
                "max_concurrency",
                cap_axis,
                format!("`max_concurrency` must be at least 1, got {c}"),
                "write `max_concurrency: 1` or more, or remove it for no cap",
            ));
        }
        c => c.map(|c| c as u32),
    };
    for (field, value) in [("warmup_s", load.warmup_s), ("grace_s", load.grace_s)] {
        if let Some(v) = value
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(problem(
                field,
                format!("`{field}` must be a number of seconds, 0 or more, got {v}"),
                "write e.g. `10`",
            ));
        }
    }
    Ok(LoadShape {
        pattern,
        extent,
        max_concurrency,
        warmup_s: load.warmup_s.unwrap_or(0.0),
        grace_s: load.grace_s.unwrap_or(DEFAULT_GRACE_S),
    })
}

/// A trace replay: its own schedule and lengths, so no rate, users or arrival; the whole trace
/// unless `duration_s` or `requests` cuts it short.
fn resolve_trace(
    load: &LoadScenario,
    paced: bool,
    arrival: bool,
) -> Result<LoadShape, LoadProblem> {
    if paced || arrival {
        return Err(problem(
            if paced { "rate" } else { "arrival" },
            "a trace replay sends on the trace's own timestamps, so it takes no `rate`, `concurrency` or `arrival`".into(),
            "remove them (and any such axis), or remove `trace`",
        ));
    }
    let time_scale = load.time_scale.unwrap_or(1.0);
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return Err(problem(
            "time_scale",
            format!("`time_scale` must be a positive number, got {time_scale}"),
            "2 replays the trace twice as fast, 0.5 at half speed",
        ));
    }
    let extent = match (load.duration_s, load.requests) {
        (Some(_), Some(_)) => {
            return Err(problem(
                "duration_s",
                "a trace replay takes at most one of `duration_s` and `requests`, and this one has both".into(),
                "keep one, or neither to replay the whole trace",
            ));
        }
        (Some(d), None) if d.is_finite() && d > 0.0 => Extent::Seconds(d),
        (None, Some(n)) if n >= 1 => Extent::Requests(n as u64),
        (None, None) => Extent::Whole,
        _ => {
            return Err(problem(
                "duration_s",
                "`duration_s` and `requests` must be positive".into(),
                "write e.g. `requests: 1000`",
            ));
        }
    };
    Ok(LoadShape {
        pattern: Pattern::Trace { time_scale },
        extent,
        max_concurrency: None,
        warmup_s: load.warmup_s.unwrap_or(0.0),
        grace_s: load.grace_s.unwrap_or(DEFAULT_GRACE_S),
    })
}

pub fn arrival_name(a: ArrivalKind) -> &'static str {
    match a {
        ArrivalKind::Constant => "constant",
        ArrivalKind::Poisson => "poisson",
        ArrivalKind::Gamma => "gamma",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(load: Value, axes: Value) -> Result<LoadShape, LoadProblem> {
        let load: LoadScenario = serde_json::from_value(load).unwrap();
        let params: IndexMap<String, Value> = serde_json::from_value(axes).unwrap();
        resolve(&load, &params)
    }

    #[test]
    fn axes_fill_the_scenario_and_defaults_apply() {
        let s = shape(json!({"duration_s": 10}), json!({"rate": 4})).unwrap();
        assert_eq!(
            s.pattern,
            Pattern::Open {
                arrival: ArrivalKind::Poisson,
                rate: 4.0,
                burstiness: None
            }
        );
        assert_eq!(s.extent, Extent::Seconds(10.0));
        assert_eq!((s.warmup_s, s.grace_s), (0.0, DEFAULT_GRACE_S));
        let s = shape(
            json!({"requests": 20, "warmup_s": 2}),
            json!({"concurrency": 3}),
        )
        .unwrap();
        assert_eq!(s.pattern, Pattern::Closed { users: 3 });
        assert_eq!(s.extent, Extent::Requests(20));
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            (
                json!({"rate": 0, "duration_s": 1}),
                json!({}),
                "rate",
                false,
            ),
            (json!({"duration_s": 1}), json!({"rate": -2}), "rate", true),
            (json!({"rate": 1}), json!({}), "duration_s", false),
            (
                json!({"rate": 1, "duration_s": 1, "requests": 5}),
                json!({}),
                "duration_s",
                false,
            ),
            (
                json!({"rate": 1, "burstiness": 0.5, "duration_s": 1}),
                json!({}),
                "burstiness",
                false,
            ),
            (
                json!({"rate": 1, "arrival": "gamma", "duration_s": 1}),
                json!({}),
                "burstiness",
                false,
            ),
            (
                json!({"rate": 1, "max_concurrency": 0, "duration_s": 1}),
                json!({}),
                "max_concurrency",
                false,
            ),
            (
                json!({"concurrency": 2, "duration_s": 1}),
                json!({"rate": 3}),
                "rate",
                true,
            ),
            (
                json!({"rate": 2, "duration_s": 1}),
                json!({"rate": 3}),
                "rate",
                false,
            ),
            (
                json!({"concurrency": 0, "requests": 3}),
                json!({}),
                "concurrency",
                false,
            ),
            (json!({"requests": 3}), json!({}), "rate", false),
        ];
        for (load, axes, field, from_axis) in cases {
            let p = shape(load.clone(), axes.clone()).unwrap_err();
            assert_eq!(
                (p.field, p.from_axis),
                (field, from_axis),
                "{load} {axes}: {}",
                p.message
            );
        }
    }
}
