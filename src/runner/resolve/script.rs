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

/// Where a step's script is written in its sandbox: a tmpfs (`/run`), so
/// that neither a process's argv (world-readable through `ps`) nor a disk
/// ever holds a command, which may carry secrets.
pub const SCRIPT_DIR: &str = "/run/corral";

/// A step's `command` with the lines corral appends, as a file the argv
/// of [`shell_command`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Absolute path inside the sandbox.
    pub path: String,
    pub text: String,
}

/// Harness's wrapper per shell (`SerializerUtils`), with the script read
/// from a file in `dir` instead of being argv: Sh/Bash `sh -c "set -e; .
/// FILE"` (the same `$0`, stdin, `set -e` and exit codes as `sh -c "set -e;
/// CMD"`), Python `python3 -c` running the file's code as `-c` would (the
/// same `sys.argv`, `sys.path` and `<string>` in tracebacks), Pwsh and
/// Powershell `-Command` dot-sourcing the file after setting
/// `$ErrorActionPreference`.
pub fn shell_command(
    shell: Shell,
    command: &str,
    outputs: &[OutputSpec],
    dir: &str,
) -> (Vec<String>, Script) {
    let file = |ext: &str| format!("{}/step.{ext}", dir.trim_end_matches('/'));
    let (argv, path, lines) = match shell {
        Shell::Sh | Shell::Bash => {
            let path = file("sh");
            let program = if shell == Shell::Sh { "sh" } else { "bash" };
            let argv = vec![
                program.to_string(),
                "-c".to_string(),
                format!("set -e; . {}", sh_quote(&path)),
            ];
            (argv, path, posix_lines(outputs))
        }
        Shell::Python => {
            let path = file("py");
            let code = format!(
                "exec(compile(open({path:?}, encoding='utf-8').read(), '<string>', 'exec'))"
            );
            (
                vec!["python3".into(), "-c".into(), code],
                path,
                python_lines(outputs),
            )
        }
        Shell::Pwsh | Shell::Powershell => {
            let path = file("ps1");
            let program = if shell == Shell::Pwsh {
                "pwsh"
            } else {
                "powershell"
            };
            let argv = vec![
                program.to_string(),
                "-Command".to_string(),
                format!(
                    "$ErrorActionPreference = 'Stop'; . '{}'",
                    path.replace('\'', "''")
                ),
            ];
            (argv, path, powershell_lines(outputs))
        }
    };
    let text = format!("{command}{lines}");
    (argv, Script { path, text })
}

/// `s` for a POSIX shell: as is when it needs no quoting, else in `'…'`.
fn sh_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
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
    fn argv_per_shell_names_the_script_file_only() {
        let cases = [
            (Shell::Sh, "sh", "set -e; . /run/corral/step.sh", "sh"),
            (Shell::Bash, "bash", "set -e; . /run/corral/step.sh", "sh"),
            (
                Shell::Python,
                "python3",
                "exec(compile(open(\"/run/corral/step.py\", encoding='utf-8').read(), '<string>', 'exec'))",
                "py",
            ),
            (
                Shell::Pwsh,
                "pwsh",
                "$ErrorActionPreference = 'Stop'; . '/run/corral/step.ps1'",
                "ps1",
            ),
            (
                Shell::Powershell,
                "powershell",
                "$ErrorActionPreference = 'Stop'; . '/run/corral/step.ps1'",
                "ps1",
            ),
        ];
        for (shell, program, arg, ext) in cases {
            let (argv, script) = shell_command(shell, "echo hi", &[], SCRIPT_DIR);
            let flag = if program.starts_with('p') && program != "python3" {
                "-Command"
            } else {
                "-c"
            };
            assert_eq!(argv, [program, flag, arg], "{shell:?}");
            assert_eq!(script.path, format!("/run/corral/step.{ext}"));
            assert_eq!(script.text, "echo hi");
        }
    }

    /// Runs `argv` (a script written to its file) with `stdin`; the file
    /// lives in `dir`.
    fn run_script(
        argv: &[String],
        script: &Script,
        stdin: &str,
        env: &[(&str, &std::path::Path)],
    ) -> std::process::Output {
        use std::io::Write;
        std::fs::write(&script.path, &script.text).unwrap();
        let mut child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A script that exits without reading its stdin closes the pipe.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// The script file behaves as the command in argv did: `$0`, stdin,
    /// `set -e` and exit codes are the same, for sh and bash.
    #[test]
    fn a_sourced_script_behaves_like_the_inline_command() {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().to_str().unwrap();
        let commands = [
            "echo \"0=$0 #=$#\"; read line; echo \"got $line\"; false; echo not reached",
            "echo a\nexit 7\necho b",
            "if false; then :; fi; f() { return 3; }; f || echo caught; (exit 4)",
            "cat; echo done",
        ];
        for shell in [Shell::Sh, Shell::Bash] {
            let program = if shell == Shell::Sh { "sh" } else { "bash" };
            for command in commands {
                let (argv, script) = shell_command(shell, command, &[], dir_s);
                let got = run_script(&argv, &script, "one\ntwo\n", &[]);
                let want = run_script(
                    &[program.into(), "-c".into(), format!("set -e; {command}")],
                    &script,
                    "one\ntwo\n",
                    &[],
                );
                assert_eq!(
                    got.status.code(),
                    want.status.code(),
                    "{program}: {command}"
                );
                assert_eq!(got.stdout, want.stdout, "{program}: {command}");
                assert!(!argv.iter().any(|a| a.contains(command)));
            }
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
        let (argv, script) = shell_command(
            Shell::Sh,
            "PLAIN='a b \"c\" $x'\ninner=\"line1\nline2\"",
            &specs,
            dir.path().to_str().unwrap(),
        );
        let status = run_script(&argv, &script, "", &[("HARNESS_OUTPUT_FILE", &file)]).status;
        assert!(status.success());
        let text = std::fs::read_to_string(&file).unwrap();
        let declared: Vec<String> = ["PLAIN", "RENAMED", "UNSET"].map(String::from).to_vec();
        let got = parse_output_file(&text, &declared);
        assert_eq!(got["PLAIN"], "a b \"c\" $x");
        assert_eq!(got["RENAMED"], "line1\nline2");
        assert_eq!(got["UNSET"], "");
    }

    #[test]
    fn python_outputs_read_the_environment_and_argv_is_as_with_c() {
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
        let (argv, script) = shell_command(
            Shell::Python,
            "import os, sys\nprint(sys.argv, repr(sys.path[0]))\nos.environ['V'] = 'x y=z'",
            &[out("V")],
            dir.path().to_str().unwrap(),
        );
        let got = run_script(&argv, &script, "", &[("HARNESS_OUTPUT_FILE", &file)]);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&got.stdout), "['-c'] ''\n");
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
