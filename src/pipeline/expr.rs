//! Harness expressions: `<+...>` templates in string fields and the JEXL
//! subset of `when.condition`.
//!
//! API contract (other modules code against these signatures):
//! - `parse_template(src)` splits a string field into text and expressions,
//!   failing with the byte offset of a malformed expression;
//! - `Template::references()` lists what the template refers to, so the model
//!   can check that variables, steps and secrets exist;
//! - `render(&template, &scope)` produces the final string;
//! - `parse_condition` / `eval_condition` for `when.condition`.

use std::fmt;

/// A value an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Num(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
        }
    }
}

/// Scope prefix of a secret reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScope {
    Project,
    Org,
    Account,
}

/// Something a template refers to.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// `secrets.getValue('id')`, with its scope prefix stripped from `id`.
    Secret { scope: SecretScope, id: String },
    /// A dotted path such as `pipeline.variables.X` or
    /// `steps.S.output.outputVariables.V`, split at the dots.
    Path(Vec<String>),
    /// `<+input>` (possibly with `.default(...)` etc.).
    Input,
}

/// Looks up what templates and conditions refer to.
pub trait Scope {
    /// Value of a dotted path, `None` when unknown.
    fn lookup(&self, path: &[String]) -> Option<Value>;
    /// Value of a secret, `None` when nobody gave it.
    fn secret(&self, scope: SecretScope, id: &str) -> Option<String>;
}

#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    #[error("malformed expression at byte {offset}: {reason}")]
    Parse { offset: usize, reason: String },
    #[error("unknown reference `{0}`")]
    UnknownReference(String),
    #[error("secret `{0}` was not given")]
    MissingSecret(String),
    #[error("runtime input `<+input>` needs a value (give it with --var)")]
    Input,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
}

impl Template {
    pub fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
    pub fn source(&self) -> &str {
        &self.source
    }
}

pub fn parse_template(src: &str) -> Result<Template, ExprError> {
    Ok(Template {
        source: src.to_string(),
    })
}

/// The rendered string and whether a secret went into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub has_secret: bool,
}

pub fn render(template: &Template, _scope: &dyn Scope) -> Result<Rendered, ExprError> {
    Ok(Rendered {
        text: template.source.clone(),
        has_secret: false,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
}

pub fn parse_condition(src: &str) -> Result<Condition, ExprError> {
    Ok(Condition {
        source: src.to_string(),
    })
}

pub fn eval_condition(_condition: &Condition, _scope: &dyn Scope) -> Result<bool, ExprError> {
    Err(ExprError::Parse {
        offset: 0,
        reason: "conditions are not evaluated yet".into(),
    })
}
