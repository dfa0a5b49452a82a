//! Templates: literal text around `<+...>` expressions, plus the modifiers
//! of `<+input>` and method calls that follow a whole-field expression.

use super::{PResult, Parser};
use crate::pipeline::expr::ast::{InputSpec, Kind, Method, Node, Part};

impl<'s> Parser<'s> {
    /// Splits a string field into literal text and expressions.
    pub fn template(mut self) -> PResult<Vec<Part>> {
        let mut parts = Vec::new();
        loop {
            let Some(found) = self.rest().find("<+") else {
                push_text(&mut parts, self.rest());
                break;
            };
            push_text(&mut parts, &self.rest()[..found]);
            self.pos += found;
            let mut node = self.nested()?;
            if let Kind::Input(spec) = &mut node.kind {
                self.input_modifiers(spec)?;
            } else {
                node = self.trailing_calls(node)?;
            }
            parts.push(Part::Expr(node));
        }
        Ok(parts)
    }

    /// `<+input>.default(x).allowedValues(a,b).executionInput()`: the
    /// modifiers stand outside the brackets and take raw, unquoted text.
    fn input_modifiers(&mut self, spec: &mut InputSpec) -> PResult<()> {
        while self.peek() == Some('.') {
            let start = self.pos;
            self.pos += 1;
            let name = self.ident_raw();
            if name.is_empty() || self.peek() != Some('(') {
                // `<+input>.txt`: plain text after the expression.
                self.pos = start;
                break;
            }
            self.pos += 1;
            let args = self.raw_args(start)?;
            match name {
                "default" => {
                    if args.len() != 1 {
                        return self.err(start, "`.default()` takes exactly one value");
                    }
                    spec.default = args.into_iter().next();
                }
                "allowedValues" | "selectOneFrom" | "selectManyFrom" => spec.allowed = args,
                "regex" => spec.regex = Some(args.join(",")),
                "executionInput" => spec.execution_input = true,
                other => {
                    return self.err(
                        start,
                        format!(
                            "unknown runtime input modifier `.{other}()`; known: .default(), \
                             .allowedValues(), .selectOneFrom(), .regex(), .executionInput()"
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    /// Comma-separated raw arguments up to the matching `)`, which is consumed.
    fn raw_args(&mut self, start: usize) -> PResult<Vec<String>> {
        let mut args = Vec::new();
        let mut current = String::new();
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        loop {
            let Some(c) = self.peek() else {
                return self.err(start, "unclosed `(` in runtime input modifier");
            };
            self.pos += c.len_utf8();
            match (quote, c) {
                (Some(q), c) if c == q => {
                    quote = None;
                    current.push(c);
                }
                (Some(_), c) => current.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    current.push(c);
                }
                (None, '(' | '[' | '{') => {
                    depth += 1;
                    current.push(c);
                }
                (None, ')') if depth == 0 => break,
                (None, ')' | ']' | '}') => {
                    depth = depth.saturating_sub(1);
                    current.push(c);
                }
                (None, ',') if depth == 0 => args.push(std::mem::take(&mut current)),
                (None, c) => current.push(c),
            }
        }
        if !current.trim().is_empty() || !args.is_empty() {
            args.push(current);
        }
        Ok(args.iter().map(|a| unquote(a.trim()).to_string()).collect())
    }

    /// `<+X>.split(',')` as a whole field (a matrix axis in real pipelines):
    /// method calls (and `[i]`) right after the brackets apply to the
    /// expression when they run to the end of the field; anywhere else they
    /// are plain text.
    fn trailing_calls(&mut self, node: Node) -> PResult<Node> {
        let save = self.pos;
        if !self.rest().starts_with('.') {
            return Ok(node);
        }
        let mut attempt = Parser {
            src: self.src,
            pos: self.pos,
            depth: self.depth,
        };
        let mut current = node.clone();
        while matches!(attempt.peek(), Some('.' | '[')) {
            if attempt.peek() == Some('.') {
                let dot = attempt.pos;
                attempt.pos += 1;
                let name = attempt.ident_raw();
                if Method::from_name(name).is_none() || attempt.peek() != Some('(') {
                    self.pos = save;
                    return Ok(node);
                }
                attempt.pos = dot;
            }
            match attempt.postfix_once(current.clone()) {
                Ok(Some(next)) => current = next,
                _ => {
                    self.pos = save;
                    return Ok(node);
                }
            }
        }
        if attempt.rest().trim().is_empty() {
            self.pos = attempt.pos;
            Ok(current)
        } else {
            self.pos = save;
            Ok(node)
        }
    }
}

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Part::Text(prev)) = parts.last_mut() {
        prev.push_str(text);
    } else {
        parts.push(Part::Text(text.to_string()));
    }
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}
