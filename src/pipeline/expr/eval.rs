//! Evaluation of parsed expressions against a `Scope`, with JEXL's loose
//! comparisons (Harness substitutes `<+...>` as text before JEXL runs, so
//! `"3" > 2` and `"true" == true` must hold).

use super::ast::{BinOp, Kind, Method, Node, Part, Segment};
use super::{ExprError, Scope, SecretScope, Value};
use crate::pipeline::secret::{Secret, MASK};

/// A value plus whether a secret went into it.
#[derive(Clone)]
pub(crate) struct Tainted {
    pub value: Value,
    pub secret: bool,
}

impl Tainted {
    fn clean(value: Value) -> Self {
        Tainted {
            value,
            secret: false,
        }
    }
}

pub(crate) struct Evaluator<'a> {
    pub scope: &'a dyn Scope,
    /// Rendered forms of secret-derived values, for the masker.
    pub secret_values: Vec<Secret>,
}

type EResult<T> = Result<T, ExprError>;

fn eval_err<T>(at: usize, reason: impl Into<String>) -> EResult<T> {
    Err(ExprError::Eval {
        offset: at,
        reason: reason.into(),
    })
}

impl<'a> Evaluator<'a> {
    pub fn new(scope: &'a dyn Scope) -> Self {
        Evaluator {
            scope,
            secret_values: Vec::new(),
        }
    }

    /// Renders parts into text, remembering secret-derived pieces.
    pub fn render_parts(&mut self, parts: &[Part]) -> EResult<Tainted> {
        let mut text = String::new();
        let mut secret = false;
        for part in parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Expr(node) => {
                    let v = self.eval(node)?;
                    let shown = v.value.to_string();
                    if v.secret {
                        secret = true;
                        self.secret_values.push(Secret::new(shown.clone()));
                    }
                    text.push_str(&shown);
                }
            }
        }
        Ok(Tainted {
            value: Value::Str(text),
            secret,
        })
    }

    pub fn eval(&mut self, node: &Node) -> EResult<Tainted> {
        let at = node.at;
        match &node.kind {
            Kind::Lit(v) => Ok(Tainted::clean(v.clone())),
            Kind::Interp(parts) => self.render_parts(parts),
            Kind::Path(segs) => self.path(at, segs),
            Kind::Secret { scope, id } => {
                let id = self.eval(id)?;
                let id_secret = id.secret;
                let id = id.value.to_string();
                match self.scope.secret(*scope, &id) {
                    Some(value) => Ok(Tainted {
                        value: Value::Str(value),
                        secret: true,
                    }),
                    None => Err(ExprError::MissingSecret {
                        id: if id_secret {
                            MASK.to_string()
                        } else {
                            scoped_id(*scope, &id)
                        },
                        offset: at,
                    }),
                }
            }
            Kind::Input(spec) => match &spec.default {
                Some(raw) => Ok(Tainted::clean(input_default(raw))),
                None => Err(ExprError::Input { offset: at }),
            },
            Kind::Call { recv, method, args } => {
                let recv = self.eval(recv)?;
                let mut secret = recv.secret;
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    let v = self.eval(arg)?;
                    secret |= v.secret;
                    values.push(v.value);
                }
                let value = call(at, *method, recv.value, &values)?;
                Ok(Tainted { value, secret })
            }
            Kind::Index { base, index } => {
                let base = self.eval(base)?;
                let idx = self.eval(index)?;
                let value = index_value(at, base.value, &idx.value)?;
                Ok(Tainted {
                    value,
                    secret: base.secret || idx.secret,
                })
            }
            Kind::Nested(inner) => self.eval(inner),
            Kind::Not(inner) => {
                let v = self.eval(inner)?;
                Ok(Tainted {
                    value: Value::Bool(!truthy(&v.value)),
                    secret: v.secret,
                })
            }
            Kind::Neg(inner) => {
                let v = self.eval(inner)?;
                match as_number(&v.value) {
                    Some(n) => Ok(Tainted {
                        value: Value::Num(-n),
                        secret: v.secret,
                    }),
                    None => eval_err(at, "`-` needs a number"),
                }
            }
            Kind::Binary { op, lhs, rhs } => self.binary(at, *op, lhs, rhs),
            Kind::Ternary {
                cond,
                then,
                otherwise,
            } => {
                if truthy(&self.eval(cond)?.value) {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
        }
    }

    fn path(&mut self, at: usize, segs: &[Segment]) -> EResult<Tainted> {
        let mut names = Vec::with_capacity(segs.len());
        // The path as errors show it: secret-derived segments masked.
        let mut shown = Vec::with_capacity(segs.len());
        let mut secret = false;
        for seg in segs {
            match seg {
                Segment::Name(n) => {
                    names.push(n.clone());
                    shown.push(n.clone());
                }
                Segment::Computed(node) => {
                    let v = self.eval(node)?;
                    secret |= v.secret;
                    let name = v.value.to_string();
                    shown.push(if v.secret {
                        MASK.to_string()
                    } else {
                        name.clone()
                    });
                    names.push(name);
                }
            }
        }
        match self.scope.lookup(&names) {
            Some(value) => Ok(Tainted {
                secret: secret || self.scope.is_secret(&names),
                value,
            }),
            None => match self.scope.not_yet(&names) {
                Some(reason) => Err(ExprError::NotYet {
                    path: shown.join("."),
                    reason,
                    offset: at,
                }),
                None => Err(ExprError::UnknownReference {
                    path: shown.join("."),
                    offset: at,
                }),
            },
        }
    }

    fn binary(&mut self, at: usize, op: BinOp, lhs: &Node, rhs: &Node) -> EResult<Tainted> {
        let l = self.eval(lhs)?;
        // `&&` and `||` short-circuit, so `x != null && x.contains(..)` works.
        match op {
            BinOp::And if !truthy(&l.value) => return Ok(Tainted::clean(Value::Bool(false))),
            BinOp::Or if truthy(&l.value) => return Ok(Tainted::clean(Value::Bool(true))),
            _ => {}
        }
        let r = self.eval(rhs)?;
        let secret = l.secret || r.secret;
        let (a, b) = (&l.value, &r.value);
        let value = match op {
            BinOp::And | BinOp::Or => Value::Bool(truthy(b)),
            BinOp::Eq => Value::Bool(loose_eq(a, b)),
            BinOp::Ne => Value::Bool(!loose_eq(a, b)),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let Some(ord) = loose_cmp(a, b) else {
                    return eval_err(
                        at,
                        "these values cannot be ordered (compare numbers or strings)",
                    );
                };
                Value::Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            BinOp::Add => match (as_number(a), as_number(b)) {
                (Some(x), Some(y))
                    if !(matches!(a, Value::Str(_)) && matches!(b, Value::Str(_))) =>
                {
                    Value::Num(x + y)
                }
                _ if matches!(a, Value::Null) || matches!(b, Value::Null) => {
                    return eval_err(at, "`+` on a null value")
                }
                _ => Value::Str(format!("{a}{b}")),
            },
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                let (Some(x), Some(y)) = (as_number(a), as_number(b)) else {
                    return eval_err(at, "arithmetic needs numbers");
                };
                if matches!(op, BinOp::Div | BinOp::Rem) && y == 0.0 {
                    return eval_err(at, "division by zero");
                }
                Value::Num(match op {
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    _ => x % y,
                })
            }
        };
        Ok(Tainted { value, secret })
    }
}

fn scoped_id(scope: SecretScope, id: &str) -> String {
    match scope {
        SecretScope::Project => id.to_string(),
        SecretScope::Org => format!("org.{id}"),
        SecretScope::Account => format!("account.{id}"),
    }
}

/// `.default(["usw","use"])` is a list; anything else is the raw text.
fn input_default(raw: &str) -> Value {
    if raw.trim_start().starts_with('[') {
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(raw)
        {
            return Value::List(items.into_iter().map(json_to_value).collect());
        }
    }
    Value::Str(raw.to_string())
}

fn json_to_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => n.as_f64().map_or(Value::Null, Value::Num),
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(json_to_value).collect()),
        other @ serde_json::Value::Object(_) => Value::Str(other.to_string()),
    }
}

/// JEXL truthiness: null, false, 0, "", "false" and empty lists are false.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::Num(n) => *n != 0.0,
        Value::Str(s) => !s.is_empty() && s != "false",
        Value::List(items) => !items.is_empty(),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Num(n) => Some(*n),
        Value::Str(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

pub(crate) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Num(x), Value::Num(y)) => x == y,
        (Value::Num(x), Value::Str(_)) => as_number(b) == Some(*x),
        (Value::Str(_), Value::Num(y)) => as_number(a) == Some(*y),
        (Value::Bool(x), Value::Str(s)) | (Value::Str(s), Value::Bool(x)) => {
            s.eq_ignore_ascii_case(if *x { "true" } else { "false" })
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q))
        }
        _ => a.to_string() == b.to_string(),
    }
}

fn loose_cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => match (as_number(a), as_number(b)) {
            (Some(p), Some(q)) => p.partial_cmp(&q),
            _ => Some(x.cmp(y)),
        },
        _ => as_number(a)?.partial_cmp(&as_number(b)?),
    }
}

fn index_value(at: usize, base: Value, index: &Value) -> EResult<Value> {
    let Value::List(items) = base else {
        if matches!(base, Value::Null) {
            return Ok(Value::Null);
        }
        return eval_err(
            at,
            "only lists (such as the result of `split()`) can be indexed",
        );
    };
    let Some(n) = as_number(index).filter(|n| n.fract() == 0.0 && *n >= 0.0) else {
        return eval_err(at, "a list index must be a whole number");
    };
    let len = items.len();
    items.into_iter().nth(n as usize).map_or_else(
        || eval_err(at, format!("index {n} is out of range for a list of {len}")),
        Ok,
    )
}

fn call(at: usize, method: Method, recv: Value, args: &[Value]) -> EResult<Value> {
    use Method::*;
    // JEXL is null-safe in Harness: a method on null gives null.
    if matches!(recv, Value::Null) {
        return Ok(Value::Null);
    }
    let arg = |i: usize| args.get(i).map(|v| v.to_string()).unwrap_or_default();
    if let Value::List(items) = &recv {
        return match method {
            Contains => Ok(Value::Bool(items.iter().any(|v| loose_eq(v, &args[0])))),
            Size | Length => Ok(Value::Num(items.len() as f64)),
            IsEmpty => Ok(Value::Bool(items.is_empty())),
            ToString => Ok(Value::Str(recv.to_string())),
            _ => eval_err(at, "this method works on strings, not on lists"),
        };
    }
    let s = recv.to_string();
    Ok(match method {
        ToLowerCase => Value::Str(s.to_lowercase()),
        ToUpperCase => Value::Str(s.to_uppercase()),
        Trim => Value::Str(s.trim().to_string()),
        ToString => Value::Str(s),
        Length | Size => Value::Num(s.chars().count() as f64),
        IsEmpty => Value::Bool(s.is_empty()),
        Contains => Value::Bool(s.contains(&arg(0))),
        StartsWith => Value::Bool(s.starts_with(&arg(0))),
        EndsWith => Value::Bool(s.ends_with(&arg(0))),
        Equals => Value::Bool(s == arg(0)),
        EqualsIgnoreCase => Value::Bool(s.to_lowercase() == arg(0).to_lowercase()),
        Concat => Value::Str(s + &arg(0)),
        IndexOf => Value::Num(
            s.find(&arg(0))
                .map_or(-1.0, |byte| s[..byte].chars().count() as f64),
        ),
        Split => Value::List(split(&s, &arg(0))),
        Replace => Value::Str(s.replace(&arg(0), &arg(1))),
        Substring => substring(at, &s, args)?,
    })
}

/// Java's `split` drops trailing empty strings; the separator is taken
/// literally (Java reads a regex, but pipelines split on `,` or `;`).
fn split(s: &str, sep: &str) -> Vec<Value> {
    let mut pieces: Vec<&str> = if sep.is_empty() {
        s.char_indices()
            .map(|(i, c)| &s[i..i + c.len_utf8()])
            .collect()
    } else {
        s.split(sep).collect()
    };
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces
        .into_iter()
        .map(|p| Value::Str(p.to_string()))
        .collect()
}

fn substring(at: usize, s: &str, args: &[Value]) -> EResult<Value> {
    let chars: Vec<char> = s.chars().collect();
    let bound = |v: &Value| {
        as_number(v)
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && (*n as usize) <= chars.len())
            .map(|n| n as usize)
    };
    let start = bound(&args[0]);
    let end = match args.get(1) {
        Some(v) => bound(v),
        None => Some(chars.len()),
    };
    match (start, end) {
        (Some(a), Some(b)) if a <= b => Ok(Value::Str(chars[a..b].iter().collect())),
        _ => eval_err(at, "substring bounds are out of range"),
    }
}
