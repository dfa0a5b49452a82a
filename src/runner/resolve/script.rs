//! Exec argv of a step: the shell wrapper Harness puts around `command`,
//! and the lines appended to it that write declared output variables to
//! the step's output file.
//!
//! Output values are written as `NAME=__B64__<base64>` (the lite-engine
//! encoding) so values with spaces, quotes or newlines survive the dotenv
//! file; `parse_output_file` reads both that and plain `NAME=value` lines
//! that scripts write themselves (`echo "X=1" >> "$DRONE_OUTPUT"`).

use std::collections::BTreeMap;

use base64::Engine;

use crate::pipeline::model::Shell;

/// Marks a base64-encoded value in the output file.
pub const B64_PREFIX: &str = "__B64__";

/// An output to write: the name it is published under and the variable
/// of the script that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub source: String,
}

/// `[shell, flag, prefix + command + output lines]` per Harness's
/// `SerializerUtils`.
pub fn shell_argv(shell: Shell, command: &str, outputs: &[OutputSpec]) -> Vec<String> {
    let script = |prefix: &str, lines: String| format!("{prefix}{command}{lines}");
    match shell {
        Shell::Sh => vec![
            "sh".into(),
            "-c".into(),
            script("set -e; ", posix_lines(outputs)),
        ],
        Shell::Bash => vec![
            "bash".into(),
            "-c".into(),
            script("set -e; ", posix_lines(outputs)),
        ],
        Shell::Python => vec![
            "python3".into(),
            "-c".into(),
            script("", python_lines(outputs)),
        ],
        Shell::Pwsh => vec![
            "pwsh".into(),
            "-Command".into(),
            script(
                "$ErrorActionPreference = 'Stop'; ",
                powershell_lines(outputs),
            ),
        ],
        Shell::Powershell => vec![
            "powershell".into(),
            "-Command".into(),
            script(
                "$ErrorActionPreference = 'Stop'; ",
                powershell_lines(outputs),
            ),
        ],
    }
}

/// Base64 when the image has `base64`, else the raw value (which then
/// must not contain newlines to read back whole).
fn posix_lines(outputs: &[OutputSpec]) -> String {
    if outputs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n__corral_output() { if command -v base64 >/dev/null 2>&1; then \
         printf '%s=__B64__%s\\n' \"$1\" \"$(printf '%s' \"$2\" | base64 | tr -d '\\n')\"; \
         else printf '%s=%s\\n' \"$1\" \"$2\"; fi >> \"$HARNESS_OUTPUT_FILE\"; }",
    );
    for o in outputs {
        s.push_str(&format!(
            "\n__corral_output '{}' \"${{{}:-}}\"",
            o.name, o.source
        ));
    }
    s
}

/// Python reads the environment, as lite-engine's Python wrapper does:
/// scripts publish with `os.environ['V'] = ...`.
fn python_lines(outputs: &[OutputSpec]) -> String {
    if outputs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\nimport os as __corral_os, base64 as __corral_b64\n\
         with open(__corral_os.environ['HARNESS_OUTPUT_FILE'], 'a') as __corral_f:",
    );
    for o in outputs {
        s.push_str(&format!(
            "\n    __corral_f.write('{}=__B64__' + __corral_b64.b64encode(__corral_os.getenv('{}', '').encode()).decode() + '\\n')",
            o.name, o.source
        ));
    }
    s
}

fn powershell_lines(outputs: &[OutputSpec]) -> String {
    let mut s = String::new();
    for o in outputs {
        s.push_str(&format!(
            "\nAdd-Content -Path $Env:HARNESS_OUTPUT_FILE -Value ('{}=__B64__' + \
             [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes(\"$Env:{}\")))",
            o.name, o.source
        ));
    }
    s
}

/// Reads a step's output file: `NAME=value` lines (last one wins), values
/// optionally `__B64__`-encoded or quoted. Lines that are not assignments
/// are skipped. Only `declared` names are kept when it is not empty.
pub fn parse_output_file(text: &str, declared: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || (!declared.is_empty() && !declared.iter().any(|d| d == name)) {
            continue;
        }
        let value = match value.strip_prefix(B64_PREFIX) {
            Some(encoded) => match base64::engine::general_purpose::STANDARD.decode(encoded.trim())
            {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => value.to_string(),
            },
            None => unquote(value).to_string(),
        };
        out.insert(name.to_string(), value);
    }
    out
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str) -> OutputSpec {
        OutputSpec {
            name: name.into(),
            source: name.into(),
        }
    }

    #[test]
    fn argv_per_shell() {
        let cases = [
            (Shell::Sh, ["sh", "-c", "set -e; echo hi"]),
            (Shell::Bash, ["bash", "-c", "set -e; echo hi"]),
            (Shell::Python, ["python3", "-c", "echo hi"]),
            (
                Shell::Pwsh,
                [
                    "pwsh",
                    "-Command",
                    "$ErrorActionPreference = 'Stop'; echo hi",
                ],
            ),
            (
                Shell::Powershell,
                [
                    "powershell",
                    "-Command",
                    "$ErrorActionPreference = 'Stop'; echo hi",
                ],
            ),
        ];
        for (shell, want) in cases {
            assert_eq!(shell_argv(shell, "echo hi", &[]), want, "{shell:?}");
        }
    }

    /// The appended lines really write a value with spaces, quotes and a
    /// newline that `parse_output_file` reads back unchanged.
    #[test]
    fn sh_outputs_round_trip_through_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.env");
        let specs = [
            out("PLAIN"),
            OutputSpec {
                name: "RENAMED".into(),
                source: "inner".into(),
            },
            out("UNSET"),
        ];
        let argv = shell_argv(
            Shell::Sh,
            "PLAIN='a b \"c\" $x'\ninner=\"line1\nline2\"",
            &specs,
        );
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("HARNESS_OUTPUT_FILE", &file)
            .status()
            .unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&file).unwrap();
        let declared: Vec<String> = ["PLAIN", "RENAMED", "UNSET"].map(String::from).to_vec();
        let got = parse_output_file(&text, &declared);
        assert_eq!(got["PLAIN"], "a b \"c\" $x");
        assert_eq!(got["RENAMED"], "line1\nline2");
        assert_eq!(got["UNSET"], "");
    }

    #[test]
    fn python_outputs_read_the_environment() {
        if std::process::Command::new("python3")
            .arg("-c")
            .arg("pass")
            .status()
            .is_err()
        {
            eprintln!("SKIP python_outputs_read_the_environment: no python3");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.env");
        let argv = shell_argv(
            Shell::Python,
            "import os\nos.environ['V'] = 'x y=z'",
            &[out("V")],
        );
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("HARNESS_OUTPUT_FILE", &file)
            .status()
            .unwrap();
        assert!(status.success());
        let got = parse_output_file(&std::fs::read_to_string(&file).unwrap(), &[]);
        assert_eq!(got["V"], "x y=z");
    }

    #[test]
    fn plain_lines_written_by_scripts_are_read() {
        let got = parse_output_file(
            "A=1\nexport B=\"two words\"\nnot an assignment\nA=3\nC=__B64__!!\n",
            &[],
        );
        assert_eq!(got["A"], "3");
        assert_eq!(got["B"], "two words");
        assert_eq!(got["C"], "__B64__!!");
        let only = parse_output_file("A=1\nB=2\n", &["B".to_string()]);
        assert_eq!(only.len(), 1);
    }
}
