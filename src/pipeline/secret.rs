//! Secrets: a redacting value type, the sources values come from, and the
//! masker every printed byte goes through.
//!
//! API contract: `Secret` never shows its value through Debug/Display;
//! `Masker` is cheap to clone and shared by logs, errors, events and reports.

use std::borrow::Cow;
use std::fmt;

/// What a masked secret looks like in output (as Harness prints it).
pub const MASK: &str = "**************";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Replaces every known secret value in text with `MASK`.
#[derive(Clone, Default)]
pub struct Masker {
    values: std::sync::Arc<Vec<String>>,
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, value: &str) {
        std::sync::Arc::make_mut(&mut self.values).push(value.to_string());
    }
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for v in self.values.iter().filter(|v| !v.is_empty()) {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }
}
