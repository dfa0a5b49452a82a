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
//!
//! Supported inside `<+...>`: dotted paths (`pipeline.variables.x`,
//! `steps.S.output.outputVariables.V`, `pipeline.stages.S.status`, ...; the
//! `Scope` resolves them),
//! `secrets.getValue('id')` with `account.`/`org.` prefixes, `<+input>` with
//! its `.default()`/`.allowedValues()`/`.executionInput()` modifiers, string
//! and number literals, the string methods of `ast::Method`, `[i]` on lists,
//! `+ - * / %`, comparisons, `&& || !` (and `and or not`), `? :`, and nested
//! expressions: `<+<+a>.toLowerCase()>`, `<+pipeline.variables.<+b>>`,
//! `"id<+c>"` inside string literals, and `pipeline.stages.<a.b>.status`.
//! JEXL scripts (`var`, `for`, `return`, `;`) are rejected.
//!
//! Inside `<+...>` an unparenthesized `>` ends the expression, so a
//! comparison there needs parentheses: `<+(a > 1)>`. Conditions are whole
//! expressions: there `a > 1` compares.

mod ast;
mod eval;
mod known;
mod parse;
mod scope;
#[cfg(test)]
mod tests;

use std::fmt;

pub use ast::InputSpec;
use ast::{Kind, Node, Part, Segment};
pub use known::{classify, is_unprovided, Known};
pub use scope::MapScope;

use crate::pipeline::secret::{Masker, Secret};

/// A value an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// The result of `split()` or a list default such as `.default(["a","b"])`.
    List(Vec<Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Num(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
            // As Java prints a list, which is what Harness shows.
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
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
    /// Ids built from nested expressions are not listed (only known when
    /// rendering); the nested expressions themselves are.
    Secret { scope: SecretScope, id: String },
    /// A dotted path such as `pipeline.variables.X` or
    /// `steps.S.output.outputVariables.V`, split at the dots. Paths with a
    /// computed segment (`pipeline.variables.<+x>`) are not listed.
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
    /// Whether the value at `path` is secret (a variable of type Secret, a
    /// Secret output variable), so what it flows into gets masked.
    fn is_secret(&self, _path: &[String]) -> bool {
        false
    }
    /// Why a path `lookup` does not know has no value yet (a status of a
    /// stage or step that has not started), so the error says so instead
    /// of "unknown reference".
    fn not_yet(&self, _path: &[String]) -> Option<String> {
        None
    }
}

/// Every variant carries the byte offset (in the parsed text) of the
/// expression at fault; `offset()` gives it and `line_col` turns it into a
/// position. Messages leave it out, so callers print `file:line:col: {err}`.
#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    #[error("malformed expression: {reason}")]
    Parse { offset: usize, reason: String },
    #[error("cannot evaluate expression: {reason}")]
    Eval { offset: usize, reason: String },
    #[error("unknown reference `{path}`")]
    UnknownReference { path: String, offset: usize },
    #[error("`{path}` has no value yet: {reason}")]
    NotYet {
        path: String,
        reason: String,
        offset: usize,
    },
    #[error("secret `{id}` was not given (pass it with --secret {id}=env:VAR or --secrets-file)")]
    MissingSecret { id: String, offset: usize },
    #[error("runtime input `<+input>` needs a value (give it with --var)")]
    Input { offset: usize },
    /// An expression inside the value of a variable failed; `offset` is in
    /// that value.
    #[error("failed to resolve the value of `{path}`")]
    ResolveValue {
        path: String,
        #[source]
        source: Box<ExprError>,
    },
    #[error("values refer to each other in a cycle: {}", paths.join(", "))]
    Cycle { paths: Vec<String> },
}

impl ExprError {
    pub fn offset(&self) -> usize {
        match self {
            ExprError::Parse { offset, .. }
            | ExprError::Eval { offset, .. }
            | ExprError::UnknownReference { offset, .. }
            | ExprError::NotYet { offset, .. }
            | ExprError::MissingSecret { offset, .. }
            | ExprError::Input { offset } => *offset,
            ExprError::ResolveValue { source, .. } => source.offset(),
            ExprError::Cycle { .. } => 0,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let before = &src[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        collect_parts(&self.parts, &mut out);
        out
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    /// True when the field holds no expression at all.
    pub fn is_literal(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Expr(_)))
    }
    /// The modifiers when the whole field is one `<+input>...` expression
    /// (the usual form of a runtime input), so `--var` values can be checked
    /// against `allowed`.
    pub fn as_input(&self) -> Option<&InputSpec> {
        match self.parts.as_slice() {
            [Part::Expr(Node {
                kind: Kind::Input(spec),
                ..
            })] => Some(spec),
            _ => None,
        }
    }
}

pub fn parse_template(src: &str) -> Result<Template, ExprError> {
    Ok(Template {
        source: src.to_string(),
        parts: parse::Parser::new(src).template()?,
    })
}

/// The rendered string and whether a secret went into it.
#[derive(Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub has_secret: bool,
    /// The text of every secret-derived value that went into `text` (a
    /// secret, or e.g. `secret.toLowerCase()`): add them to the `Masker`,
    /// since a transformed secret no longer matches the stored value.
    pub secret_values: Vec<Secret>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut masker = Masker::new();
        for s in &self.secret_values {
            masker.add(s.expose());
        }
        f.debug_struct("Rendered")
            .field("text", &masker.mask(&self.text))
            .field("has_secret", &self.has_secret)
            .field("secret_values", &self.secret_values)
            .finish()
    }
}

pub fn render(template: &Template, scope: &dyn Scope) -> Result<Rendered, ExprError> {
    let mut evaluator = eval::Evaluator::new(scope);
    // A whole-field expression keeps its type; a list renders as `[a, b]`.
    let text = evaluator.render_parts(&template.parts)?.value.to_string();
    let secret_values = evaluator.secret_values;
    Ok(Rendered {
        text,
        has_secret: !secret_values.is_empty(),
        secret_values,
    })
}

/// Evaluates a template that is one whole expression to its typed value
/// (a matrix axis `<+pipeline.variables.v.split(",")>` gives a list);
/// otherwise renders it to a string.
pub fn evaluate(template: &Template, scope: &dyn Scope) -> Result<Value, ExprError> {
    let mut evaluator = eval::Evaluator::new(scope);
    match template.parts.as_slice() {
        [Part::Expr(node)] => Ok(evaluator.eval(node)?.value),
        parts => Ok(evaluator.render_parts(parts)?.value),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    node: Node,
}

impl Condition {
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        collect(&self.node, &mut out);
        out
    }
    pub fn source(&self) -> &str {
        &self.source
    }
}

pub fn parse_condition(src: &str) -> Result<Condition, ExprError> {
    Ok(Condition {
        source: src.to_string(),
        node: parse::Parser::new(src).condition()?,
    })
}

/// JEXL truthiness of the result: null, false, 0, "" and "false" are false.
pub fn eval_condition(condition: &Condition, scope: &dyn Scope) -> Result<bool, ExprError> {
    let mut evaluator = eval::Evaluator::new(scope);
    Ok(eval::truthy(&evaluator.eval(&condition.node)?.value))
}

fn push_unique(out: &mut Vec<Reference>, r: Reference) {
    if !out.contains(&r) {
        out.push(r);
    }
}

fn collect_parts(parts: &[Part], out: &mut Vec<Reference>) {
    for part in parts {
        if let Part::Expr(node) = part {
            collect(node, out);
        }
    }
}

fn collect(node: &Node, out: &mut Vec<Reference>) {
    match &node.kind {
        Kind::Lit(_) => {}
        Kind::Interp(parts) => collect_parts(parts, out),
        Kind::Path(segs) => {
            let mut names = Vec::new();
            for seg in segs {
                match seg {
                    Segment::Name(n) => names.push(n.clone()),
                    Segment::Computed(inner) => collect(inner, out),
                }
            }
            if names.len() == segs.len() {
                push_unique(out, Reference::Path(names));
            }
        }
        Kind::Secret { scope, id } => match &id.kind {
            Kind::Lit(v) => push_unique(
                out,
                Reference::Secret {
                    scope: *scope,
                    id: v.to_string(),
                },
            ),
            _ => collect(id, out),
        },
        Kind::Input(_) => push_unique(out, Reference::Input),
        Kind::Call { recv, args, .. } => {
            collect(recv, out);
            args.iter().for_each(|a| collect(a, out));
        }
        Kind::Index { base, index } => {
            collect(base, out);
            collect(index, out);
        }
        Kind::Nested(inner) | Kind::Not(inner) | Kind::Neg(inner) => collect(inner, out),
        Kind::Binary { lhs, rhs, .. } => {
            collect(lhs, out);
            collect(rhs, out);
        }
        Kind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            collect(cond, out);
            collect(then, out);
            collect(otherwise, out);
        }
    }
}
