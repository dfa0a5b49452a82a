//! Secrets: a redacting value type, the sources values come from, and the
//! masker every printed byte goes through.
//!
//! API contract: `Secret` never shows its value through Debug/Display;
//! `Masker` is cheap to clone and shared by logs, errors, events and reports.
//!
//! Masking rules (as Harness lite-engine does, see `Masker::add`):
//! - every occurrence of a value becomes `MASK`, longest values first, and
//!   overlapping matches become one `MASK`;
//! - each line of a multi-line value is masked on its own, so a value still
//!   masks when printed line by line; lines (after trimming) shorter than
//!   `MIN_PART_LEN` characters are skipped, since masking `}` or `-` would
//!   hide most of the log and tell a reader which characters a key holds;
//! - the quote-stripped, URL-encoded and JSON-escaped forms of a value are
//!   masked too (same length rule), as scripts often print them;
//! - a whole value is masked whatever its length, unless it is only
//!   whitespace.

mod dotenv;
mod store;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

pub use store::{SecretError, SecretSource, SecretStore};

/// What a masked secret looks like in output (as Harness prints it).
pub const MASK: &str = "**************";

/// Lines and variants of a value shorter than this are not masked alone.
pub const MIN_PART_LEN: usize = 3;

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
///
/// Clones share their patterns: a value added through one handle (say, a
/// secret output variable of a step) is masked by every other from then on.
#[derive(Clone, Default)]
pub struct Masker {
    patterns: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.read().len())
            .finish()
    }
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        // A panic while holding the lock cannot leave the list half-written
        // (push and sort only), so a poisoned lock is still usable.
        self.patterns.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns a secret value and its variants (see the module rules).
    pub fn add(&mut self, value: &str) {
        // Masking every space or newline would hide the whole log.
        if value.trim().is_empty() {
            return;
        }
        let mut patterns = self.patterns.write().unwrap_or_else(|e| e.into_inner());
        for p in variants(value) {
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        // Longest first, so a value is never half-masked by a shorter one.
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Masks all occurrences in `text` (one line or many).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let patterns = self.read();
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for p in patterns.iter() {
            hits.extend(
                text.match_indices(p.as_str())
                    .map(|(i, m)| (i, i + m.len())),
            );
        }
        if hits.is_empty() {
            return Cow::Borrowed(text);
        }
        hits.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut iter = hits.into_iter().peekable();
        while let Some((start, mut end)) = iter.next() {
            // Merge overlapping matches into one masked span.
            while let Some(&(next_start, next_end)) = iter.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                iter.next();
            }
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// The per-line entry point of log streamers (same as `mask`).
    pub fn mask_line<'a>(&self, line: &'a str) -> Cow<'a, str> {
        self.mask(line)
    }

    /// A line splitter for streamed output that masks whole lines only.
    pub fn line_stream(&self) -> LineMasker {
        LineMasker {
            masker: self.clone(),
            pending: Vec::new(),
        }
    }
}

/// The strings `add` masks for `value`.
fn variants(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    let mut push = |v: String| {
        if v.trim().chars().count() >= MIN_PART_LEN && !out.contains(&v) {
            out.push(v);
        }
    };
    if value.contains('\n') {
        for line in value.lines() {
            push(line.trim().to_string());
        }
    }
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            push(inner.to_string());
        }
    }
    push(url_encode(value));
    if let Ok(json) = serde_json::to_string(value) {
        let escaped = json[1..json.len() - 1].to_string();
        // Some encoders (PHP, Java) also escape `/`.
        push(escaped.replace('/', "\\/"));
        push(escaped);
    }
    out
}

/// Percent-encoding of everything but RFC 3986 unreserved characters.
fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Longest line `LineMasker` buffers; a longer run without `\n` is masked
/// and passed on in pieces of this size.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// Splits streamed bytes into lines and masks each complete line, so a
/// secret split across two reads is still found. Invalid UTF-8 is replaced.
#[derive(Debug)]
pub struct LineMasker {
    masker: Masker,
    pending: Vec<u8>,
}

impl LineMasker {
    /// Feeds bytes; returns the masked complete lines (without `\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            lines.push(self.masker.mask(&text).into_owned());
        }
        if self.pending.len() >= MAX_LINE_LEN {
            if let Some(rest) = self.finish() {
                lines.push(rest);
            }
        }
        lines
    }

    /// The masked last line when the stream did not end with `\n`.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.pending);
        let text = String::from_utf8_lossy(&rest);
        Some(self.masker.mask(&text).into_owned())
    }
}

#[cfg(test)]
mod tests;
