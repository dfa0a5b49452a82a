//! Recursive-descent parser for templates and conditions. It reads the source
//! directly (no separate lexer) because string literals may contain nested
//! `<+...>` expressions and because `>` closes an expression or compares,
//! depending on where it stands.
//!
//! Rule for `>`: inside `<+...>` and outside parentheses, `>` ends the
//! expression (as Harness finds the end textually); write `<+(a > b)>` to
//! compare. At the top level of a condition `>` and `>=` are comparisons.

mod atoms;
mod template;

use super::ast::{BinOp, InputSpec, Kind, Node, Segment};
use super::{ExprError, Value};

/// Words that start a JEXL script, which we do not run.
const SCRIPT_WORDS: &[&str] = &[
    "var", "let", "const", "for", "while", "if", "return", "function",
];

/// Deepest nesting of parentheses, `<+...>`, `!` and the like; real
/// expressions stay far below, and the limit keeps a hostile field from
/// overflowing the stack.
const MAX_DEPTH: usize = 64;

pub(crate) struct Parser<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
}

type PResult<T> = Result<T, ExprError>;

impl<'s> Parser<'s> {
    pub fn new(src: &'s str) -> Self {
        Parser {
            src,
            pos: 0,
            depth: 0,
        }
    }

    fn err<T>(&self, offset: usize, reason: impl Into<String>) -> PResult<T> {
        Err(ExprError::Parse {
            offset,
            reason: reason.into(),
        })
    }

    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + n).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            Some(c) => format!("`{c}`"),
            None => "the end of the text".to_string(),
        }
    }

    // ---- conditions ----

    pub fn condition(mut self) -> PResult<Node> {
        self.skip_ws();
        if self.peek().is_none() {
            return self.err(0, "empty condition");
        }
        let node = self.expr(false)?;
        self.skip_ws();
        if self.peek().is_some() {
            return self.err(
                self.pos,
                format!("unexpected {} after the condition", self.describe_here()),
            );
        }
        Ok(node)
    }

    // ---- expressions ----

    /// At `<+`: parses up to and including the closing `>`.
    fn nested(&mut self) -> PResult<Node> {
        let open = self.pos;
        self.pos += 2;
        self.skip_ws();
        match self.peek() {
            None => return self.err(open, "unclosed `<+`: no `>` ends this expression"),
            Some('>') => return self.err(open, "empty expression `<+>`"),
            _ => {}
        }
        let node = self.expr(true)?;
        self.skip_ws();
        match self.peek() {
            Some('>') => {
                self.pos += 1;
                Ok(node)
            }
            None => self.err(open, "unclosed `<+`: no `>` ends this expression"),
            Some(_) => self.err(
                self.pos,
                format!(
                    "expected `>` to end the expression, found {}",
                    self.describe_here()
                ),
            ),
        }
    }

    /// `closes`: a bare `>` ends the expression instead of comparing.
    fn expr(&mut self, closes: bool) -> PResult<Node> {
        let cond = self.binary(0, closes)?;
        self.skip_ws();
        if !self.eat("?") {
            return Ok(cond);
        }
        let then = self.expr(closes)?;
        self.skip_ws();
        if !self.eat(":") {
            return self.err(
                self.pos,
                format!("expected `:` of `? :`, found {}", self.describe_here()),
            );
        }
        let otherwise = self.expr(closes)?;
        Ok(Node {
            at: cond.at,
            kind: Kind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                otherwise: Box::new(otherwise),
            },
        })
    }

    /// The binary operator at the cursor (after whitespace), if any, as
    /// (operator, precedence level, length); the cursor does not move past it.
    fn binary_op(&mut self, closes: bool) -> Option<(BinOp, usize, usize)> {
        self.skip_ws();
        let r = self.rest();
        let word_op = |w: &str| {
            r.starts_with(w)
                && !r[w.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
        };
        // (operator, precedence level, length)
        let found = if r.starts_with("||") || word_op("or") {
            (BinOp::Or, 0, 2)
        } else if r.starts_with("&&") {
            (BinOp::And, 1, 2)
        } else if word_op("and") {
            (BinOp::And, 1, 3)
        } else if r.starts_with("==") {
            (BinOp::Eq, 2, 2)
        } else if r.starts_with("!=") {
            (BinOp::Ne, 2, 2)
        } else if r.starts_with("<=") {
            (BinOp::Le, 3, 2)
        } else if r.starts_with('<') && !r.starts_with("<+") {
            (BinOp::Lt, 3, 1)
        } else if r.starts_with(">=") && !closes {
            (BinOp::Ge, 3, 2)
        } else if r.starts_with('>') && !closes {
            (BinOp::Gt, 3, 1)
        } else if r.starts_with('+') {
            (BinOp::Add, 4, 1)
        } else if r.starts_with('-') {
            (BinOp::Sub, 4, 1)
        } else if r.starts_with('*') {
            (BinOp::Mul, 5, 1)
        } else if r.starts_with('/') {
            (BinOp::Div, 5, 1)
        } else if r.starts_with('%') {
            (BinOp::Rem, 5, 1)
        } else {
            return None;
        };
        Some(found)
    }

    fn binary(&mut self, min_level: usize, closes: bool) -> PResult<Node> {
        let mut lhs = self.unary()?;
        loop {
            let save = self.pos;
            let Some((op, level, len)) = self.binary_op(closes) else {
                self.pos = save;
                return Ok(lhs);
            };
            if level < min_level {
                self.pos = save;
                return Ok(lhs);
            }
            let op_at = self.pos;
            self.pos += len;
            if self.peek() == Some('=') && matches!(op, BinOp::Eq | BinOp::Ne) {
                return self.err(op_at, "`===` is not JEXL; use `==`");
            }
            let rhs = self.binary(level + 1, closes)?;
            lhs = Node {
                at: lhs.at,
                kind: Kind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
        }
    }

    /// Every nesting passes through here, so the depth is counted here.
    fn unary(&mut self) -> PResult<Node> {
        if self.depth >= MAX_DEPTH {
            return self.err(
                self.pos,
                format!("expression nests deeper than {MAX_DEPTH} levels"),
            );
        }
        self.depth += 1;
        let node = self.unary_inner();
        self.depth -= 1;
        node
    }

    fn unary_inner(&mut self) -> PResult<Node> {
        self.skip_ws();
        let at = self.pos;
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            let inner = self.unary()?;
            return Ok(Node {
                at,
                kind: Kind::Not(Box::new(inner)),
            });
        }
        if self.rest().starts_with("not")
            && self.rest()[3..].starts_with(|c: char| c.is_whitespace() || c == '(')
        {
            self.pos += 3;
            let inner = self.unary()?;
            return Ok(Node {
                at,
                kind: Kind::Not(Box::new(inner)),
            });
        }
        if self.eat("-") {
            let inner = self.unary()?;
            return Ok(Node {
                at,
                kind: Kind::Neg(Box::new(inner)),
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn postfix(&mut self, mut node: Node) -> PResult<Node> {
        while let Some(next) = self.postfix_once(node.clone())? {
            node = next;
        }
        if let Kind::Path(segs) = &node.kind {
            if matches!(segs.as_slice(), [Segment::Name(n)] if n == "input") {
                node.kind = Kind::Input(InputSpec::default());
            }
        }
        Ok(node)
    }

    /// One `.name`, `.method(args)`, `.<+expr>` or `[index]`; `None` when
    /// no postfix follows.
    fn postfix_once(&mut self, node: Node) -> PResult<Option<Node>> {
        let open = self.pos;
        if self.eat("[") {
            let index = self.expr(false).map_err(|e| self.unclosed(e, open, "["))?;
            self.skip_ws();
            if !self.eat("]") {
                return self.err(
                    self.pos,
                    format!("expected `]`, found {}", self.describe_here()),
                );
            }
            return Ok(Some(Node {
                at: node.at,
                kind: Kind::Index {
                    base: Box::new(node),
                    index: Box::new(index),
                },
            }));
        }
        if self.peek() != Some('.') {
            return Ok(None);
        }
        let dot = self.pos;
        self.pos += 1;
        // A computed segment: `.<+expr>`, or `.<path>` as written in real pipelines.
        if self.rest().starts_with('<') {
            let Kind::Path(mut segs) = node.kind else {
                return self.err(dot, "a computed name can only follow a path");
            };
            let computed = if self.rest().starts_with("<+") {
                self.nested()?
            } else {
                let open = self.pos;
                self.pos += 1;
                let inner = self.expr(true)?;
                self.skip_ws();
                if !self.eat(">") {
                    return self.err(open, "unclosed `<` in a computed path segment");
                }
                inner
            };
            segs.push(Segment::Computed(computed));
            return Ok(Some(Node {
                at: node.at,
                kind: Kind::Path(segs),
            }));
        }
        let name_at = self.pos;
        let name = self.ident_raw();
        if name.is_empty() {
            return self.err(
                name_at,
                format!("expected a name after `.`, found {}", self.describe_here()),
            );
        }
        if self.peek() == Some('(') {
            self.pos += 1;
            let args = self.call_args()?;
            return self.make_call(node, name, name_at, args).map(Some);
        }
        match node.kind {
            Kind::Path(mut segs) => {
                segs.push(Segment::Name(name.to_string()));
                Ok(Some(Node {
                    at: node.at,
                    kind: Kind::Path(segs),
                }))
            }
            _ => self.err(
                name_at,
                format!("property `{name}` of a computed value is not supported"),
            ),
        }
    }

    fn primary(&mut self) -> PResult<Node> {
        self.skip_ws();
        let at = self.pos;
        let Some(c) = self.peek() else {
            return self.err(at, "expected a value, found the end of the text");
        };
        match c {
            '(' => {
                self.pos += 1;
                let inner = self.expr(false).map_err(|e| self.unclosed(e, at, "("))?;
                self.skip_ws();
                if !self.eat(")") {
                    return self.err(at, "unclosed `(`");
                }
                Ok(inner)
            }
            '<' if self.rest().starts_with("<+") => {
                let inner = self.nested()?;
                Ok(Node {
                    at,
                    kind: Kind::Nested(Box::new(inner)),
                })
            }
            '"' | '\'' => self.string(c),
            '0'..='9' => self.number(),
            ';' | '{' | '}' => self.err(at, "JEXL scripts are not supported in expressions"),
            '=' => self.err(at, "assignment is not supported; compare with `==`"),
            c if is_ident_start(c) => {
                let word = self.ident_raw();
                let value = match word {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    "null" => Some(Value::Null),
                    _ => None,
                };
                if let Some(value) = value {
                    return Ok(Node {
                        at,
                        kind: Kind::Lit(value),
                    });
                }
                if SCRIPT_WORDS.contains(&word) && self.peek().is_some_and(|c| !c.is_alphanumeric())
                {
                    return self.err(
                        at,
                        format!("JEXL scripts (`{word} ...`) are not supported in expressions"),
                    );
                }
                Ok(Node {
                    at,
                    kind: Kind::Path(vec![Segment::Name(word.to_string())]),
                })
            }
            '>' => self.err(at, "expected a value, found `>`"),
            _ => self.err(at, format!("expected a value, found `{c}`")),
        }
    }

    /// An error at the very end inside brackets means they were never closed.
    fn unclosed(&self, err: ExprError, open: usize, bracket: &str) -> ExprError {
        if err.offset() >= self.src.len() {
            ExprError::Parse {
                offset: open,
                reason: format!("unclosed `{bracket}`"),
            }
        } else {
            err
        }
    }

    fn ident_raw(&mut self) -> &'s str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !(c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                break;
            }
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}
