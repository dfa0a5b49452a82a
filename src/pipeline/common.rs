//! Fields shared by pipelines, stages, groups and steps: variables, `when`,
//! looping strategies and timeouts.

use std::time::Duration;

use super::duration;
use super::failure::fields_hint;
use super::fields::{self, check_identifier, list, number_setting, one_of, Fields};
use super::location::{Diagnostics, DocPath};
use super::model::{Setting, Status, Str, Variable, VariableType, When};
use super::strategy::{Axis, Matrix, Repeat, RepeatSource, Strategy};
use super::yaml::{Node, Value};

const VARIABLE_FIELDS: &[&str] = &[
    "name",
    "type",
    "value",
    "default",
    "description",
    "required",
];

pub fn variables(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<Variable> {
    let mut out = Vec::new();
    for (i, item) in list(d, node, path, "variables").iter().enumerate() {
        let path = path.index(i);
        let Some(f) = Fields::of(d, item, &path, "a variable", VARIABLE_FIELDS) else {
            continue;
        };
        let name = f.required(d, "name", "a variable");
        let kind = match f.get("type") {
            Some((n, p)) => one_of(
                d,
                n,
                &p,
                "variable type",
                &[
                    ("String", VariableType::String),
                    ("Number", VariableType::Number),
                    ("Secret", VariableType::Secret),
                ],
            ),
            None => {
                d.error(
                    f.loc,
                    &path,
                    "a variable is missing the required field `type`",
                );
                None
            }
        };
        let required = match f.get("required") {
            Some((n, p)) => fields::bool_setting(d, n, &p)
                .and_then(|s| s.literal())
                .unwrap_or(false),
            None => false,
        };
        if let Some(name) = &name {
            check_identifier(d, name, &path.key("name"), "variable name");
        }
        let value = f.string(d, "value");
        if let (Some(VariableType::Secret), Some(v)) = (kind, &value) {
            if v.value.contains("<+secrets.getValue(") {
                d.error_hint(
                    v.loc,
                    &path.key("value"),
                    "a Secret variable's value is the secret identifier, not an expression",
                    "write the identifier alone, e.g. `value: my_secret`",
                );
            }
        }
        if let Some(n) = &name {
            if let Some(first) = out.iter().find(|v: &&Variable| v.name.value == n.value) {
                d.error_hint(
                    n.loc,
                    &path.key("name"),
                    format!(
                        "duplicate variable `{}` (first at line {})",
                        n.value, first.name.loc.line
                    ),
                    "give each variable its own name",
                );
            }
        }
        if let (Some(name), Some(kind)) = (name, kind) {
            out.push(Variable {
                name,
                kind,
                value,
                default: f.string(d, "default"),
                required,
                loc: item.loc,
            });
        }
    }
    out
}

const STATUSES: &[(&str, Status)] = &[
    ("Success", Status::Success),
    ("Failure", Status::Failure),
    ("All", Status::All),
];

/// `when` of a stage (`status_key` = `pipelineStatus`) or of a step or
/// group (`stageStatus`).
pub fn when(d: &mut Diagnostics, node: &Node, path: &DocPath, status_key: &str) -> Option<When> {
    let known = [status_key, "condition"];
    let f = Fields::of(d, node, path, "`when`", &known)?;
    let status = match f.get(status_key) {
        Some((n, p)) => one_of(d, n, &p, status_key, STATUSES)?,
        None => {
            d.error_hint(
                f.loc,
                path,
                format!("`when` is missing the required field `{status_key}`"),
                format!("add `{status_key}: Success` (or Failure, All)"),
            );
            return None;
        }
    };
    Some(When {
        status,
        condition: f.string(d, "condition"),
        loc: node.loc,
    })
}

/// A `timeout` field: `""` means the default; an expression cannot be
/// checked here, so it falls back to the default with a warning.
pub fn timeout(d: &mut Diagnostics, f: &Fields<'_>) -> Option<Duration> {
    let s = f.string(d, "timeout")?;
    let path = f.path.key("timeout");
    if s.value.trim().is_empty() {
        return None;
    }
    let input = super::expr::parse_template(&s.value)
        .ok()
        .and_then(|t| t.as_input().cloned());
    let text = match input {
        // A runtime input has no name --var could give it: its default
        // is the value, and without one it is an error, as for any field.
        Some(spec) => match spec.default {
            Some(default) => default,
            None => {
                d.error_hint(
                    s.loc,
                    &path,
                    "`timeout` is a runtime input (`<+input>`) without a default",
                    "write a duration such as `10m`, or `<+input>.default(10m)`",
                );
                return None;
            }
        },
        None if s.is_expression() => {
            d.warn(
                s.loc,
                &path,
                "timeout expressions are not evaluated; the default applies",
            );
            return None;
        }
        None => s.value.clone(),
    };
    match duration::parse(&text) {
        Ok(t) => Some(t),
        Err(e) => {
            d.error_hint(s.loc, &path, e.to_string(), duration::HINT);
            None
        }
    }
}

fn axis(d: &mut Diagnostics, node: &Node, path: &DocPath, what: &str) -> Option<Axis> {
    match &node.value {
        Value::Scalar(s) if s.text.contains("<+") => {
            Some(Axis::Expr(Str::new(s.text.clone(), node.loc)))
        }
        Value::Seq(items) => {
            let mut values = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match &item.value {
                    Value::Scalar(s) => values.push(Str::new(s.text.clone(), item.loc)),
                    _ => d.error(
                        item.loc,
                        &path.index(i),
                        format!(
                            "{what} values must be strings or numbers, found {}",
                            item.kind_name()
                        ),
                    ),
                }
            }
            if values.is_empty() {
                d.error(node.loc, path, format!("{what} has no values"));
            }
            Some(Axis::Values(values))
        }
        _ => {
            d.error_hint(
                node.loc,
                path,
                format!("{what} must be a list, found {}", node.kind_name()),
                "write a list such as `[a, b]` or an expression `<+...>`",
            );
            None
        }
    }
}

pub fn strategy(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Strategy> {
    let f = Fields::of(
        d,
        node,
        path,
        "`strategy`",
        &["matrix", "repeat", "parallelism", "maxConcurrency"],
    )?;
    let kinds: Vec<&str> = ["matrix", "repeat", "parallelism"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    if kinds.len() != 1 {
        d.error_hint(
            node.loc,
            path,
            format!(
                "`strategy` needs exactly one of matrix, repeat or parallelism (found {})",
                kinds.len()
            ),
            "keep one looping strategy",
        );
        return None;
    }
    let max = |d: &mut Diagnostics, f: &Fields<'_>| {
        f.get("maxConcurrency")
            .and_then(|(n, p)| number_setting::<u32>(d, n, &p, "maxConcurrency"))
    };
    // Harness reads `maxConcurrency` beside the looping key as well as
    // inside `matrix`/`repeat` (real pipelines write it beside `repeat`).
    let outer = max(d, &f);
    let inner_or_outer =
        |d: &mut Diagnostics, inner: Option<Setting<u32>>, kind: &str| match (inner, &outer) {
            (Some(inner), Some(_)) => {
                if let Some((n, p)) = f.get("maxConcurrency") {
                    d.warn_hint(
                        n.loc,
                        &p,
                        format!("`maxConcurrency` is given twice, here and inside `{kind}`"),
                        format!("the one inside `{kind}` applies; remove this one"),
                    );
                }
                Some(inner)
            }
            (inner, outer) => inner.or_else(|| outer.clone()),
        };
    if let Some((n, p)) = f.get("parallelism") {
        return Some(Strategy::Parallelism {
            count: number_setting(d, n, &p, "parallelism")?,
            max_concurrency: outer.clone(),
            loc: node.loc,
        });
    }
    if let Some((n, p)) = f.get("repeat") {
        let r = Fields::of(
            d,
            n,
            &p,
            "`repeat`",
            &[
                "times",
                "items",
                "maxConcurrency",
                "nodeName",
                "start",
                "end",
                "unit",
            ],
        )?;
        let source = match (r.get("times"), r.get("items")) {
            (Some((n, p)), None) => RepeatSource::Times(number_setting(d, n, &p, "times")?),
            (None, Some((n, p))) => RepeatSource::Items(axis(d, n, &p, "repeat items")?),
            _ => {
                d.error(
                    r.loc,
                    &p,
                    "`repeat` needs exactly one of `times` or `items`",
                );
                return None;
            }
        };
        let inner = max(d, &r);
        return Some(Strategy::Repeat(Repeat {
            source,
            max_concurrency: inner_or_outer(d, inner, "repeat"),
            loc: node.loc,
        }));
    }
    let (n, p) = f.get("matrix")?;
    let mut m = matrix(d, n, &p)?;
    m.max_concurrency = inner_or_outer(d, m.max_concurrency.take(), "matrix");
    Some(Strategy::Matrix(m))
}

fn matrix(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Matrix> {
    let Value::Map(entries) = &node.value else {
        d.error(
            node.loc,
            path,
            format!(
                "`matrix` must be a mapping of axes, found {}",
                node.kind_name()
            ),
        );
        return None;
    };
    let mut m = Matrix {
        axes: Vec::new(),
        exclude: Vec::new(),
        max_concurrency: None,
        loc: node.loc,
    };
    let mut exclude_node = None;
    for e in entries {
        let p = path.key(&e.key);
        match e.key.as_str() {
            "maxConcurrency" => {
                m.max_concurrency = number_setting(d, &e.value, &p, "maxConcurrency")
            }
            "exclude" => exclude_node = Some((&e.value, p)),
            "nodeName" => {}
            key => {
                let name = Str::new(key, e.key_loc);
                check_identifier(d, &name, &p, "matrix axis name");
                if let Some(a) = axis(d, &e.value, &p, &format!("matrix axis `{key}`")) {
                    m.axes.push((name, a));
                }
            }
        }
    }
    if m.axes.is_empty() {
        d.error(node.loc, path, "`matrix` has no axes");
    }
    if let Some((n, p)) = exclude_node {
        let axis_names: Vec<&str> = m.axes.iter().map(|(k, _)| k.value.as_str()).collect();
        let mut excludes = Vec::new();
        for (i, item) in list(d, n, &p, "`exclude`").iter().enumerate() {
            let pi = p.index(i);
            let pairs = fields::string_map(d, item, &pi);
            for (k, _) in &pairs {
                if !axis_names.contains(&k.value.as_str()) {
                    let hint = fields_hint(&k.value, &axis_names);
                    d.error_hint(
                        k.loc,
                        &pi.key(&k.value),
                        format!("`exclude` names `{}`, which is not a matrix axis", k.value),
                        hint,
                    );
                }
            }
            excludes.push(pairs);
        }
        m.exclude = excludes;
    }
    Some(m)
}
