//! The dotenv format of `--secrets-file`: `KEY=value` lines, `#` comments,
//! an optional `export ` prefix, and values in double quotes (with `\n`,
//! `\"`, `\\` escapes; may span lines), single quotes (literal; may span
//! lines) or bare (trailing ` # comment` removed, whitespace trimmed).
//! Errors give the line and never the value.

/// Parses `text`; on error returns the 1-based line and the reason.
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut entries = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, rest)) = line.split_once('=') else {
            return Err((line_no, "expected KEY=value".to_string()));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err((
                line_no,
                "a key may hold only letters, digits, `_`, `.` and `-`".to_string(),
            ));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // The value may continue on the following lines.
                let mut raw = rest[1..].to_string();
                let (value, after) = loop {
                    if let Some(found) = quoted(&raw, q) {
                        break found;
                    }
                    let Some(next) = lines.get(i) else {
                        return Err((line_no, format!("unclosed {q} quote")));
                    };
                    raw.push('\n');
                    raw.push_str(next);
                    i += 1;
                };
                let after = after.trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err((
                        line_no,
                        "unexpected text after the closing quote".to_string(),
                    ));
                }
                value
            }
            _ => match rest.find(" #") {
                Some(comment) => rest[..comment].trim_end().to_string(),
                None => rest.trim_end().to_string(),
            },
        };
        entries.push((key.to_string(), value));
    }
    Ok(entries)
}

/// The value up to the closing quote and the text after it, or `None` when
/// the quote is not closed in `raw`.
fn quoted(raw: &str, quote: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some((value, &raw[i + 1..]));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, e @ ('"' | '\\' | '$'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            }
            continue;
        }
        value.push(c);
    }
    None
}
