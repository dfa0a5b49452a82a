//! Rendering model strings with error locations, and the lenient scope of
//! `run --dry-run`: values only known at run time (step outputs and
//! statuses) stay visible as their expression text.

use std::cell::Cell;
use std::path::Path;

use super::error::ResolveError;
use crate::pipeline::expr::{
    self, classify, parse_condition, parse_template, ExprError, Known, Rendered, Scope,
    SecretScope, Value,
};
use crate::pipeline::model::Str;

/// A scope that answers run-time-only paths with their own text.
pub struct Lenient<'a> {
    pub inner: &'a dyn Scope,
    /// Set when an answer was a placeholder.
    pub deferred: Cell<bool>,
}

impl<'a> Lenient<'a> {
    pub fn new(inner: &'a dyn Scope) -> Self {
        Lenient {
            inner,
            deferred: Cell::new(false),
        }
    }
}

fn run_time_only(path: &[String]) -> bool {
    matches!(
        classify(path),
        Some(Known::StepOutput { .. } | Known::StepField { .. })
    ) || matches!(classify(path), Some(Known::StageField { field, .. }) if field == "status")
        || matches!(classify(path), Some(Known::PipelineField(f)) if f == "status")
}

impl Scope for Lenient<'_> {
    fn lookup(&self, path: &[String]) -> Option<Value> {
        if let Some(v) = self.inner.lookup(path) {
            return Some(v);
        }
        if run_time_only(path) {
            self.deferred.set(true);
            return Some(Value::Str(format!("<+{}>", path.join("."))));
        }
        if expr::is_unprovided(path) {
            return Some(Value::Null);
        }
        None
    }
    fn secret(&self, scope: SecretScope, id: &str) -> Option<String> {
        self.inner.secret(scope, id)
    }
    fn is_secret(&self, path: &[String]) -> bool {
        self.inner.is_secret(path)
    }
}

/// The error of a failed expression, located in the file.
pub fn located(file: &Path, s: &Str, what: &str, source: ExprError) -> ResolveError {
    let at = s.loc_at(source.offset());
    ResolveError::Expression {
        what: what.to_string(),
        file: file.to_path_buf(),
        line: at.line,
        column: at.column,
        source,
    }
}

/// Renders a model string (literal strings pass through untouched).
pub fn render(
    file: &Path,
    s: &Str,
    what: &str,
    scope: &dyn Scope,
) -> Result<Rendered, ResolveError> {
    if !s.is_expression() {
        return Ok(Rendered {
            text: s.value.clone(),
            has_secret: false,
            secret_values: Vec::new(),
        });
    }
    let template = parse_template(&s.value).map_err(|e| located(file, s, what, e))?;
    expr::render(&template, scope).map_err(|e| located(file, s, what, e))
}

/// Evaluates a `when.condition`.
pub fn condition(
    file: &Path,
    s: &Str,
    what: &str,
    scope: &dyn Scope,
) -> Result<bool, ResolveError> {
    let c = parse_condition(&s.value).map_err(|e| located(file, s, what, e))?;
    expr::eval_condition(&c, scope).map_err(|e| located(file, s, what, e))
}
