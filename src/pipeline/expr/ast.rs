//! Syntax tree of `<+...>` expressions and conditions. Every node keeps the
//! byte offset of its first character in the parsed source, so evaluation
//! errors point at the expression that failed.

use super::{SecretScope, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub at: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Lit(Value),
    /// A string literal that contains nested `<+...>` expressions.
    Interp(Vec<Part>),
    /// A dotted path (`pipeline.variables.x`), possibly with computed segments.
    Path(Vec<Segment>),
    Secret {
        scope: SecretScope,
        id: Box<Node>,
    },
    Input(InputSpec),
    Call {
        recv: Box<Node>,
        method: Method,
        args: Vec<Node>,
    },
    Index {
        base: Box<Node>,
        index: Box<Node>,
    },
    /// `<+...>` inside an expression: evaluated first, then used as a value.
    Nested(Box<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Ternary {
        cond: Box<Node>,
        then: Box<Node>,
        otherwise: Box<Node>,
    },
}

/// A piece of a template or of an interpolated string literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    Expr(Node),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Name(String),
    /// `pipeline.variables.<+stage.variables.name>`: the segment's name is
    /// the value of an expression.
    Computed(Node),
}

/// The modifiers of a runtime input: `<+input>.default(x).allowedValues(a,b)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputSpec {
    /// The raw default, quotes stripped (`.default(qa)` gives `qa`).
    pub default: Option<String>,
    /// `.allowedValues(a,b)` or `.selectOneFrom(a,b)`; empty when unrestricted.
    pub allowed: Vec<String>,
    /// `.regex(re)`, kept for the caller to check given values.
    pub regex: Option<String>,
    /// `.executionInput()`: Harness asks for the value while the run is going.
    pub execution_input: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Java string (and list) methods seen in Harness pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    ToLowerCase,
    ToUpperCase,
    Trim,
    Length,
    Size,
    IsEmpty,
    ToString,
    Contains,
    StartsWith,
    EndsWith,
    Equals,
    EqualsIgnoreCase,
    Concat,
    IndexOf,
    Split,
    Replace,
    Substring,
}

impl Method {
    pub const NAMES: &'static [&'static str] = &[
        "toLowerCase",
        "toUpperCase",
        "trim",
        "length",
        "size",
        "isEmpty",
        "toString",
        "contains",
        "startsWith",
        "endsWith",
        "equals",
        "equalsIgnoreCase",
        "concat",
        "indexOf",
        "split",
        "replace",
        "substring",
    ];

    pub fn from_name(name: &str) -> Option<Method> {
        use Method::*;
        Some(match name {
            "toLowerCase" => ToLowerCase,
            "toUpperCase" => ToUpperCase,
            "trim" => Trim,
            "length" => Length,
            "size" => Size,
            "isEmpty" => IsEmpty,
            "toString" => ToString,
            "contains" => Contains,
            "startsWith" => StartsWith,
            "endsWith" => EndsWith,
            "equals" => Equals,
            "equalsIgnoreCase" => EqualsIgnoreCase,
            "concat" => Concat,
            "indexOf" => IndexOf,
            "split" => Split,
            "replace" => Replace,
            "substring" => Substring,
            _ => return None,
        })
    }

    /// Accepted argument counts (inclusive range).
    pub fn arity(self) -> (usize, usize) {
        use Method::*;
        match self {
            ToLowerCase | ToUpperCase | Trim | Length | Size | IsEmpty | ToString => (0, 0),
            Contains | StartsWith | EndsWith | Equals | EqualsIgnoreCase | Concat | IndexOf
            | Split => (1, 1),
            Replace => (2, 2),
            Substring => (1, 2),
        }
    }
}
