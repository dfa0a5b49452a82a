//! Reading typed fields out of located YAML nodes, reporting every problem
//! to [`Diagnostics`] instead of stopping at the first.

use super::location::{suggest, Diagnostics, DocPath, Location};
use super::model::{Setting, Str};
use super::yaml::{Entry, Node, Value};

/// The entries of one mapping, with the field names it knows.
pub struct Fields<'n> {
    entries: &'n [Entry],
    pub path: DocPath,
    pub loc: Location,
}

impl<'n> Fields<'n> {
    /// Reads a mapping (a null counts as an empty one) and warns about
    /// keys not in `known`, suggesting the closest known one.
    pub fn of(
        d: &mut Diagnostics,
        node: &'n Node,
        path: &DocPath,
        what: &str,
        known: &[&str],
    ) -> Option<Self> {
        let entries: &'n [Entry] = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                d.error(
                    node.loc,
                    path,
                    format!("{what} must be a mapping, found {}", node.kind_name()),
                );
                return None;
            }
        };
        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                let hint = suggest(&entry.key, known.iter().copied());
                d.push(
                    super::location::Severity::Warning,
                    entry.key_loc,
                    &path.key(&entry.key),
                    format!("unknown field `{}` in {what} is ignored", entry.key),
                    hint,
                );
            }
        }
        Some(Fields {
            entries,
            path: path.clone(),
            loc: node.loc,
        })
    }

    /// The value of `key`, unless missing or null.
    pub fn get(&self, key: &str) -> Option<(&'n Node, DocPath)> {
        self.entry(key)
            .filter(|e| !e.value.is_null())
            .map(|e| (&e.value, self.path.key(key)))
    }

    pub fn entry(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// A string field (numbers and booleans are kept as written).
    pub fn string(&self, d: &mut Diagnostics, key: &str) -> Option<Str> {
        let (node, path) = self.get(key)?;
        string(d, node, &path)
    }

    /// A string field that must be present.
    pub fn required(&self, d: &mut Diagnostics, key: &str, what: &str) -> Option<Str> {
        let value = self.string(d, key);
        if value.is_none() && self.get(key).is_none() {
            d.error(
                self.loc,
                &self.path,
                format!("{what} is missing the required field `{key}`"),
            );
        }
        value
    }
}

pub fn string(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Str> {
    match &node.value {
        Value::Scalar(s) => Some(Str::new(s.text.clone(), node.loc)),
        _ => {
            d.error(
                node.loc,
                path,
                format!("expected a string, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// A list of strings; a null is an empty list.
pub fn string_list(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<Str> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(d, item, &path.index(i)))
            .collect(),
        _ if node.is_null() => Vec::new(),
        _ => {
            d.error(
                node.loc,
                path,
                format!("expected a list of strings, found {}", node.kind_name()),
            );
            Vec::new()
        }
    }
}

/// The items of a list; a null is an empty list.
pub fn list<'n>(d: &mut Diagnostics, node: &'n Node, path: &DocPath, what: &str) -> &'n [Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ if node.is_null() => &[],
        _ => {
            d.error(
                node.loc,
                path,
                format!("{what} must be a list, found {}", node.kind_name()),
            );
            &[]
        }
    }
}

/// A mapping of strings to strings (env vars), in order. A null value is
/// an empty string.
pub fn string_map(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<(Str, Str)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|e| {
                let key = Str::new(e.key.clone(), e.key_loc);
                let value = if e.value.is_null() {
                    Some(Str::new("", e.value.loc))
                } else {
                    string(d, &e.value, &path.key(&e.key))
                };
                value.map(|v| (key, v))
            })
            .collect(),
        _ if node.is_null() => Vec::new(),
        _ => {
            d.error(
                node.loc,
                path,
                format!("expected a mapping, found {}", node.kind_name()),
            );
            Vec::new()
        }
    }
}

/// `true`/`false`, or an expression.
pub fn bool_setting(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Setting<bool>> {
    let s = string(d, node, path)?;
    if s.is_expression() {
        return Some(Setting::Expr(s));
    }
    match s.value.to_ascii_lowercase().as_str() {
        "true" => Some(Setting::Value(true)),
        "false" => Some(Setting::Value(false)),
        _ => {
            d.error_hint(
                node.loc,
                path,
                format!("`{}` is not a boolean", s.value),
                "write `true` or `false`",
            );
            None
        }
    }
}

/// A whole number, or an expression.
pub fn number_setting<T: std::str::FromStr>(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
    what: &str,
) -> Option<Setting<T>> {
    let s = string(d, node, path)?;
    if s.is_expression() {
        return Some(Setting::Expr(s));
    }
    match s.value.trim().parse() {
        Ok(n) => Some(Setting::Value(n)),
        Err(_) => {
            d.error(
                node.loc,
                path,
                format!("{what} `{}` is not a whole number", s.value),
            );
            None
        }
    }
}

/// One of a fixed set of names, matched exactly as Harness does.
pub fn one_of<T: Copy>(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
    what: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let s = string(d, node, path)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s.value) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = suggest(&s.value, names.iter().copied()).unwrap_or_else(|| {
        let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        format!("use one of {}", quoted.join(", "))
    });
    d.error_hint(
        node.loc,
        path,
        format!("`{}` is not a valid {what}", s.value),
        hint,
    );
    None
}

/// Harness identifiers: `^[a-zA-Z_][0-9a-zA-Z_]{0,127}$`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An identifier field: required, and checked against the pattern.
pub fn identifier(d: &mut Diagnostics, fields: &Fields<'_>, what: &str) -> Option<Str> {
    let id = fields.required(d, "identifier", what)?;
    check_identifier(d, &id, &fields.path.key("identifier"), "identifier");
    Some(id)
}

pub fn check_identifier(d: &mut Diagnostics, id: &Str, path: &DocPath, what: &str) {
    if is_identifier(&id.value) {
        return;
    }
    let mut fixed: String = id
        .value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(128)
        .collect();
    if fixed.starts_with(|c: char| c.is_ascii_digit()) || fixed.is_empty() {
        fixed.insert(0, '_');
    }
    d.error_hint(
        id.loc,
        path,
        format!("`{}` is not a valid {what}", id.value),
        format!(
            "it must start with a letter or `_` and hold only letters, digits and `_` \
             (at most 128); did you mean `{fixed}`?"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_harness_pattern() {
        let cases = [
            ("build", true),
            ("_x1", true),
            ("Wait_for_SC", true),
            ("1abc", false),
            ("has-dash", false),
            ("has space", false),
            ("", false),
        ];
        for (id, ok) in cases {
            assert_eq!(is_identifier(id), ok, "{id:?}");
        }
        assert!(is_identifier(&"a".repeat(128)));
        assert!(!is_identifier(&"a".repeat(129)));
    }
}
