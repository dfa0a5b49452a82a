//! Where things are in a pipeline file: line/column locations, document
//! paths (`stages[0].stage.spec`) and the diagnostics that carry both.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(line: usize, column: usize) -> Self {
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A path inside the document, such as `stages[0].stage.spec.execution`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocPath(String);

impl DocPath {
    pub fn root() -> Self {
        DocPath(String::new())
    }

    /// The path of a mapping key below this one.
    pub fn key(&self, key: &str) -> Self {
        if self.0.is_empty() {
            DocPath(key.to_string())
        } else {
            DocPath(format!("{}.{key}", self.0))
        }
    }

    /// The path of a sequence element below this one.
    pub fn index(&self, index: usize) -> Self {
        DocPath(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(document root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem found in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub doc_path: DocPath,
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn location(&self) -> Location {
        Location::new(self.line, self.column)
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error: message`, then the document path and the hint
    /// on indented lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )?;
        if !self.doc_path.as_str().is_empty() {
            write!(f, "\n  at: {}", self.doc_path)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file while it is read.
#[derive(Debug)]
pub struct Diagnostics {
    file: PathBuf,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &Path) -> Self {
        Diagnostics {
            file: file.to_path_buf(),
            items: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        severity: Severity,
        at: Location,
        path: &DocPath,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            doc_path: path.clone(),
            message: message.into(),
            hint,
        });
    }

    pub fn error(&mut self, at: Location, path: &DocPath, message: impl Into<String>) {
        self.push(Severity::Error, at, path, message, None);
    }

    pub fn error_hint(
        &mut self,
        at: Location,
        path: &DocPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Error, at, path, message, Some(hint.into()));
    }

    pub fn warn(&mut self, at: Location, path: &DocPath, message: impl Into<String>) {
        self.push(Severity::Warning, at, path, message, None);
    }

    pub fn warn_hint(
        &mut self,
        at: Location,
        path: &DocPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Severity::Warning, at, path, message, Some(hint.into()));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// All diagnostics in file order (errors before warnings at one spot).
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items
            .sort_by(|a, b| (a.line, a.column, b.severity).cmp(&(b.line, b.column, a.severity)));
        self.items.dedup();
        self.items
    }
}

/// `did you mean `x`?` for the closest candidate, when one is close enough.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = if c.to_ascii_lowercase() == lower {
                1.0
            } else {
                strsim::jaro_winkler(&lower, &c.to_ascii_lowercase())
            };
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_paths_read_like_accessors() {
        let p = DocPath::root().key("stages").index(0).key("stage");
        assert_eq!(p.as_str(), "stages[0].stage");
        assert_eq!(DocPath::root().to_string(), "(document root)");
    }

    #[test]
    fn suggestions_pick_the_closest_candidate() {
        let shells = ["Sh", "Bash", "Powershell", "Pwsh", "Python"];
        let cases = [
            ("bash", Some("Bash")),
            ("Bsh", Some("Bash")),
            ("powershel", Some("Powershell")),
            ("zsh", None),
        ];
        for (word, want) in cases {
            let got = suggest(word, shells);
            assert_eq!(
                got,
                want.map(|w| format!("did you mean `{w}`?")),
                "for {word}"
            );
        }
    }

    #[test]
    fn diagnostics_display_file_line_column() {
        let mut d = Diagnostics::new(Path::new("p.yaml"));
        d.error_hint(
            Location::new(3, 7),
            &DocPath::root().key("stages"),
            "bad thing",
            "fix it",
        );
        let text = d.into_sorted()[0].to_string();
        assert_eq!(
            text,
            "p.yaml:3:7: error: bad thing\n  at: stages\n  hint: fix it"
        );
    }
}
