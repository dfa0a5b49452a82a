//! Harness durations (`10m`, `1h30m`, `3h 30m`, `2d`, `1w`), used by
//! timeouts and retry intervals.

use std::time::Duration;

/// Step timeout when none is given (`CIStepInfo.DEFAULT_TIMEOUT`).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{text}` is not a duration: {reason}")]
    Invalid { text: String, reason: &'static str },
}

/// Parses a Harness duration: one or more `<number><unit>` parts with
/// units s, m, h, d, w, optionally separated by spaces.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let invalid = |reason| DurationError::Invalid {
        text: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in trimmed.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' if digits.is_empty() => {}
            's' | 'm' | 'h' | 'd' | 'w' => {
                if digits.is_empty() {
                    return Err(invalid("a unit must follow a number"));
                }
                let n: u64 = digits
                    .parse()
                    .map_err(|_| invalid("the number is too large"))?;
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86_400,
                    _ => 604_800,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|v| total.checked_add(v))
                    .ok_or_else(|| invalid("the number is too large"))?;
                digits.clear();
            }
            _ => return Err(invalid("expected numbers followed by s, m, h, d or w")),
        }
    }
    if !digits.is_empty() {
        return Err(invalid("the last number has no unit (s, m, h, d or w)"));
    }
    if total == 0 {
        return Err(invalid("it must be longer than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// The hint shown with a bad duration.
pub const HINT: &str = "write numbers with units s, m, h, d or w, such as `10m`, `1h30m` or `2d`";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_harness_durations() {
        let cases = [
            ("10m", 600),
            ("1h30m", 5400),
            ("3h 30m", 12600),
            ("2d", 172_800),
            ("1w", 604_800),
            ("10s", 10),
            ("1m30s", 90),
            (" 5m ", 300),
        ];
        for (text, secs) in cases {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "",
            "10",
            "m",
            "10x",
            "1.5h",
            "0m",
            "-5m",
            "99999999999999999999w",
        ] {
            assert!(parse(text).is_err(), "{text:?} should fail");
        }
    }
}
