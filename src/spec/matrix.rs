//! Run-matrix expansion: the cartesian product of the axes, minus `exclude`, plus `include`
//! (GitHub Actions semantics: include is applied after exclude). Pure; no I/O.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

/// A matrix after shape checks: axes in declared order, each with at least one value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    pub axes: IndexMap<String, Vec<Value>>,
    pub exclude: Vec<IndexMap<String, Value>>,
    pub include: Vec<IndexMap<String, Value>>,
}

/// One configuration: a value for every axis, in axis order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Cell {
    pub params: IndexMap<String, Value>,
}

/// The axes whose values differ among `cells` (each given as its (axis, value) pairs), each
/// with its values in order of first appearance.
pub fn varying_axes<'c, P>(cells: impl IntoIterator<Item = P>) -> Vec<(String, Vec<Value>)>
where
    P: IntoIterator<Item = (&'c String, &'c Value)>,
{
    // Values found by key, not compared pairwise: an axis of 20,000 values was quadratic.
    let mut seen: Vec<(String, Vec<Value>, std::collections::HashSet<String>)> = Vec::new();
    for params in cells {
        for (axis, value) in params {
            match seen.iter_mut().find(|(a, _, _)| a == axis) {
                Some((_, values, keys)) => {
                    if keys.insert(equality_key(value)) {
                        values.push(value.clone());
                    }
                }
                None => seen.push((
                    axis.clone(),
                    vec![value.clone()],
                    std::collections::HashSet::from([equality_key(value)]),
                )),
            }
        }
    }
    seen.into_iter()
        .filter(|(_, values, _)| values.len() > 1)
        .map(|(axis, values, _)| (axis, values))
        .collect()
}

/// The axes whose values differ among the cells `selection` picks: what a statistic over
/// that selection pools.
pub fn pooled_axes<'c>(
    cells: impl IntoIterator<Item = &'c IndexMap<String, Value>>,
    selection: &IndexMap<String, Value>,
) -> Vec<(String, Vec<Value>)> {
    varying_axes(cells.into_iter().filter(|params| {
        selection
            .iter()
            .all(|(k, v)| params.get(k).is_some_and(|w| values_equal(v, w)))
    }))
}

/// Why a matrix could not be expanded; the index says which exclude/include entry.
#[derive(Debug, Clone, PartialEq)]
pub enum MatrixError {
    ExcludeMatchesNothing(usize),
    ExcludesEverything,
    IncludeMissingAxis { index: usize, axis: String },
    IncludeDuplicate { index: usize, cell: String },
}

impl Cell {
    /// Canonical text of the cell: sorted keys, no whitespace. Stable across axis reordering,
    /// so it identifies the configuration in run ids.
    pub fn key(&self) -> String {
        let sorted: std::collections::BTreeMap<&String, Value> =
            self.params.iter().map(|(k, v)| (k, canonical(v))).collect();
        serde_json::to_string(&sorted).expect("JSON values always serialize")
    }

    /// Short human label: `temperature=0.6 num_ctx=512`.
    pub fn label(&self) -> String {
        label_of(&self.params)
    }

    fn matches(&self, selector: &IndexMap<String, Value>) -> bool {
        selector.iter().all(|(axis, want)| {
            self.params
                .get(axis)
                .is_some_and(|have| values_equal(have, want))
        })
    }
}

/// Short human label of cell parameters: `temperature=0.6 num_ctx=512`.
pub fn label_of<'a>(params: impl IntoIterator<Item = (&'a String, &'a Value)>) -> String {
    let parts: Vec<String> = params
        .into_iter()
        .map(|(k, v)| format!("{k}={}", axis_label(k, v)))
        .collect();
    if parts.is_empty() {
        "(single cell)".into()
    } else {
        parts.join(" ")
    }
}

/// A value of `axis` as it reads in a table: a model by its name ("synthetic 50M q8_0"),
/// anything else as `display_value` has it.
pub fn axis_label(axis: &str, v: &Value) -> String {
    if axis == "model"
        && let Ok(model) = super::model::ModelValue::from_value(v)
    {
        return model.label();
    }
    display_value(v)
}

/// A value as it reads in a table: strings bare, maps as `{kind: concurrent, agents: 2}`.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", display_value(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(display_value).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// Equality as a user means it: `1` and `1.0` are the same temperature.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    values_equal_by(a, b, &|x, y| x == y)
}

/// Structural equality of two JSON values, with numbers compared by `numbers_equal` (as f64).
pub fn values_equal_by(a: &Value, b: &Value, numbers_equal: &impl Fn(f64, f64) -> bool) -> bool {
    let equal = |a, b| values_equal_by(a, b, numbers_equal);
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => numbers_equal(x, y),
            (x, y) => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// A text equal for two values exactly when `values_equal` says so (numbers as f64, object
/// keys in any order), for finding equal values by hash rather than pairwise.
pub fn equality_key(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Number(n) => match n.as_f64() {
                // -0.0 == 0.0, as values_equal compares them.
                Some(x) => out.push_str(&format!("n{:?}", if x == 0.0 { 0.0 } else { x })),
                None => out.push_str(&format!("N{n}")),
            },
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    write(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (k, v) in entries {
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    write(v, out);
                    out.push(',');
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Sorts object keys recursively, independent of serde_json's map implementation.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

impl Matrix {
    /// Expands to cells in a deterministic order: the product with the last axis varying
    /// fastest, then included cells in the order written.
    pub fn expand(&self) -> Result<Vec<Cell>, MatrixError> {
        let mut cells = vec![Cell {
            params: IndexMap::new(),
        }];
        for (axis, values) in &self.axes {
            cells = cells
                .into_iter()
                .flat_map(|cell| {
                    values.iter().map(move |v| {
                        let mut params = cell.params.clone();
                        params.insert(axis.clone(), v.clone());
                        Cell { params }
                    })
                })
                .collect();
        }
        for (index, selector) in self.exclude.iter().enumerate() {
            if !cells.iter().any(|c| c.matches(selector)) {
                return Err(MatrixError::ExcludeMatchesNothing(index));
            }
        }
        let before = cells.len();
        cells.retain(|c| !self.exclude.iter().any(|sel| c.matches(sel)));
        if cells.is_empty() && before > 0 && self.include.is_empty() {
            return Err(MatrixError::ExcludesEverything);
        }
        for (index, extra) in self.include.iter().enumerate() {
            if let Some(axis) = self.axes.keys().find(|a| !extra.contains_key(*a)) {
                return Err(MatrixError::IncludeMissingAxis {
                    index,
                    axis: axis.clone(),
                });
            }
            // Keep axis order for the new cell, whatever order the include was written in.
            let params: IndexMap<String, Value> = self
                .axes
                .keys()
                .map(|a| (a.clone(), extra[a].clone()))
                .collect();
            let cell = Cell { params };
            if cells.iter().any(|c| c.matches(&cell.params)) {
                return Err(MatrixError::IncludeDuplicate {
                    index,
                    cell: cell.label(),
                });
            }
            cells.push(cell);
        }
        Ok(cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> IndexMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    fn matrix_3x2x2() -> Matrix {
        Matrix {
            // Built from pairs: a JSON object literal would sort the axes by name.
            axes: [
                ("temperature", json!([0.6, 0.8, 1.0])),
                ("num_ctx", json!([512, 1024])),
                (
                    "scenario",
                    json!([{"kind": "single"}, {"kind": "concurrent", "agents": 2}]),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.as_array().unwrap().clone()))
            .collect(),
            exclude: vec![map(
                json!({"temperature": 0.6, "num_ctx": 512, "scenario": {"kind": "single"}}),
            )],
            include: vec![map(
                json!({"temperature": 1.2, "num_ctx": 2048, "scenario": {"kind": "single"}}),
            )],
        }
    }

    #[test]
    fn product_minus_exclude_plus_include() {
        let cells = matrix_3x2x2().expand().unwrap();
        assert_eq!(cells.len(), 12);
        // Last axis varies fastest; the excluded first cell is gone.
        assert_eq!(
            cells[0].label(),
            "temperature=0.6 num_ctx=512 scenario={agents: 2, kind: concurrent}"
        );
        assert_eq!(
            cells[11].label(),
            "temperature=1.2 num_ctx=2048 scenario={kind: single}"
        );
    }

    #[test]
    fn partial_exclude_removes_every_matching_cell() {
        let mut m = matrix_3x2x2();
        m.exclude = vec![map(json!({"num_ctx": 512}))];
        m.include.clear();
        assert_eq!(m.expand().unwrap().len(), 6);
    }

    #[test]
    fn exclude_that_matches_nothing_is_an_error() {
        let mut m = matrix_3x2x2();
        m.exclude.push(map(json!({"temperature": 0.7})));
        assert_eq!(m.expand(), Err(MatrixError::ExcludeMatchesNothing(1)));
    }

    #[test]
    fn include_must_name_every_axis_and_be_new() {
        let mut m = matrix_3x2x2();
        m.include = vec![map(json!({"temperature": 1.2}))];
        assert_eq!(
            m.expand(),
            Err(MatrixError::IncludeMissingAxis {
                index: 0,
                axis: "num_ctx".into()
            })
        );
        m.include = vec![map(
            json!({"temperature": 0.8, "num_ctx": 512, "scenario": {"kind": "single"}}),
        )];
        assert!(matches!(
            m.expand(),
            Err(MatrixError::IncludeDuplicate { index: 0, .. })
        ));
    }

    #[test]
    fn include_re_adds_an_excluded_cell() {
        let mut m = matrix_3x2x2();
        m.include = m.exclude.clone();
        assert_eq!(m.expand().unwrap().len(), 12);
    }

    #[test]
    fn numbers_compare_by_value_and_keys_are_canonical() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        let a = Cell {
            params: map(json!({"b": 1, "a": {"y": 1, "x": 2}})),
        };
        let b = Cell {
            params: map(json!({"a": {"x": 2, "y": 1}, "b": 1})),
        };
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), r#"{"a":{"x":2,"y":1},"b":1}"#);
    }

    // The key agrees with values_equal on every pair of a mixed sample.
    #[test]
    fn equality_keys_agree_with_values_equal() {
        let values: Vec<Value> = [
            "1",
            "1.0",
            "-0.0",
            "0",
            "2",
            "\"1\"",
            "[1, 2]",
            "[1.0, 2]",
            "[2, 1]",
            "{\"a\": 1, \"b\": [1]}",
            "{\"b\": [1.0], \"a\": 1.0}",
            "{\"a\": 1}",
            "null",
            "true",
        ]
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
        for a in &values {
            for b in &values {
                assert_eq!(
                    equality_key(a) == equality_key(b),
                    values_equal(a, b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
