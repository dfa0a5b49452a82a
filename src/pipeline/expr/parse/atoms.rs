//! Literals and calls: numbers, strings (with nested expressions), method
//! arguments and `secrets.getValue()`.

use super::{PResult, Parser};
use crate::pipeline::expr::ast::{Kind, Method, Node, Part, Segment};
use crate::pipeline::expr::{SecretScope, Value};

impl<'s> Parser<'s> {
    pub(super) fn call_args(&mut self) -> PResult<Vec<Node>> {
        let mut args = Vec::new();
        self.skip_ws();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr(false)?);
            self.skip_ws();
            if self.eat(")") {
                return Ok(args);
            }
            if !self.eat(",") {
                return self.err(
                    self.pos,
                    format!(
                        "expected `,` or `)` in arguments, found {}",
                        self.describe_here()
                    ),
                );
            }
        }
    }

    pub(super) fn make_call(
        &self,
        recv: Node,
        name: &str,
        name_at: usize,
        args: Vec<Node>,
    ) -> PResult<Node> {
        if name == "getValue" {
            if !matches!(&recv.kind, Kind::Path(s) if matches!(s.as_slice(), [Segment::Name(n)] if n == "secrets"))
            {
                return self.err(
                    name_at,
                    "`getValue` is only known as `secrets.getValue('id')`",
                );
            }
            return self.secret(recv.at, name_at, args);
        }
        let Some(method) = Method::from_name(name) else {
            return self.err(
                name_at,
                format!(
                    "unknown method `{name}()`; supported: {}",
                    Method::NAMES.join(", ")
                ),
            );
        };
        let (min, max) = method.arity();
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} or {max}")
            };
            return self.err(
                name_at,
                format!("`{name}()` takes {want} argument(s), got {}", args.len()),
            );
        }
        Ok(Node {
            at: recv.at,
            kind: Kind::Call {
                recv: Box::new(recv),
                method,
                args,
            },
        })
    }

    /// `secrets.getValue("org.id")`: the id is a string literal, possibly
    /// with nested expressions; its scope prefix moves into `scope`.
    fn secret(&self, at: usize, name_at: usize, mut args: Vec<Node>) -> PResult<Node> {
        if args.len() != 1 {
            return self.err(name_at, "`secrets.getValue()` takes one quoted secret id");
        }
        let mut id = args.remove(0);
        let first_text = match &mut id.kind {
            Kind::Lit(Value::Str(s)) => s,
            Kind::Interp(parts) => match parts.first_mut() {
                Some(Part::Text(s)) => s,
                _ => return Ok(secret_node(at, SecretScope::Project, id)),
            },
            _ => return self.err(id.at, "the secret id must be a quoted string"),
        };
        let scope = if let Some(rest) = first_text.strip_prefix("account.") {
            *first_text = rest.to_string();
            SecretScope::Account
        } else if let Some(rest) = first_text.strip_prefix("org.") {
            *first_text = rest.to_string();
            SecretScope::Org
        } else {
            SecretScope::Project
        };
        if matches!(&id.kind, Kind::Lit(Value::Str(s)) if s.trim().is_empty()) {
            return self.err(id.at, "empty secret id");
        }
        Ok(secret_node(at, scope, id))
    }

    pub(super) fn number(&mut self) -> PResult<Node> {
        let at = self.pos;
        while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.peek_at(0) == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            while self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            return self.err(at, "a name cannot start with a digit");
        }
        match self.src[at..self.pos].parse::<f64>() {
            Ok(n) => Ok(Node {
                at,
                kind: Kind::Lit(Value::Num(n)),
            }),
            Err(_) => self.err(at, "malformed number"),
        }
    }

    /// A quoted string; `<+...>` inside it is evaluated (Harness resolves
    /// nested expressions innermost first).
    pub(super) fn string(&mut self, quote: char) -> PResult<Node> {
        let at = self.pos;
        self.pos += 1;
        let mut parts = Vec::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err(at, format!("unterminated string: no closing {quote}"));
            };
            if c == quote {
                self.pos += 1;
                break;
            }
            if c == '\\' {
                self.pos += 1;
                let Some(e) = self.peek() else {
                    return self.err(at, format!("unterminated string: no closing {quote}"));
                };
                self.pos += e.len_utf8();
                match e {
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'r' => text.push('\r'),
                    '\\' | '\'' | '"' => text.push(e),
                    other => {
                        text.push('\\');
                        text.push(other);
                    }
                }
                continue;
            }
            if self.rest().starts_with("<+") {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Expr(self.nested()?));
                continue;
            }
            text.push(c);
            self.pos += c.len_utf8();
        }
        if parts.is_empty() {
            return Ok(Node {
                at,
                kind: Kind::Lit(Value::Str(text)),
            });
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Node {
            at,
            kind: Kind::Interp(parts),
        })
    }
}

fn secret_node(at: usize, scope: SecretScope, id: Node) -> Node {
    Node {
        at,
        kind: Kind::Secret {
            scope,
            id: Box::new(id),
        },
    }
}
