//! Harness CI pipeline YAML: located parsing (`yaml`), the validated model
//! (`model`), looping strategies (`strategy`), expressions (`expr`) and
//! secrets (`secret`).
//!
//! Entry point: [`load`] (or [`load_str`]) returns the pipeline and its
//! warnings, or every error found, each with `file:line:column`.

mod build;
mod common;
pub mod duration;
pub mod expr;
mod failure;
mod fields;
pub mod location;
pub mod model;
pub mod secret;
mod stage_spec;
mod step;
mod step_spec;
pub mod strategy;
mod validate;
pub mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use location::{Diagnostic, DocPath, Location, Severity};
pub use model::Pipeline;
pub use step_spec::{parse_cpu, parse_memory};

use location::Diagnostics;

/// Largest pipeline file we read.
pub const MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read pipeline file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file has errors; all of them (and its warnings) are here, sorted.
    #[error("{path} is not a valid pipeline ({} errors)", diagnostics.iter().filter(|d| d.is_error()).count())]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

/// Reads, parses and validates a pipeline file.
pub fn load(path: &Path) -> Result<(Pipeline, Vec<Diagnostic>), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let mut d = Diagnostics::new(path);
    if bytes.len() as u64 > MAX_FILE_SIZE {
        d.error_hint(
            Location::new(1, 1),
            &DocPath::root(),
            format!("the file is larger than {} MiB", MAX_FILE_SIZE >> 20),
            "pipeline files are small YAML documents; check that this is the right file",
        );
        return Err(invalid(path, d));
    }
    match String::from_utf8(bytes) {
        Ok(text) => load_str(&text, path),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            d.error_hint(
                Location::new(line, column),
                &DocPath::root(),
                "the file is not valid UTF-8",
                "save the file as UTF-8",
            );
            Err(invalid(path, d))
        }
    }
}

fn invalid(path: &Path, d: Diagnostics) -> LoadError {
    LoadError::Invalid {
        path: path.to_path_buf(),
        diagnostics: d.into_sorted(),
    }
}

/// Parses and validates pipeline text; `file` names it in diagnostics.
pub fn load_str(text: &str, file: &Path) -> Result<(Pipeline, Vec<Diagnostic>), LoadError> {
    let mut d = Diagnostics::new(file);
    let doc = match yaml::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let message = match &e {
                yaml::YamlError::Empty => "the file is empty: it holds no pipeline".to_string(),
                other => other.to_string(),
            };
            d.push(
                Severity::Error,
                e.location(),
                &DocPath::root(),
                message,
                e.hint(),
            );
            return Err(invalid(file, d));
        }
    };
    for dup in &doc.duplicates {
        d.warn_hint(
            dup.second,
            &dup.path,
            format!(
                "duplicate key `{}` (also at line {}); the last one is used",
                dup.key, dup.first.line
            ),
            "remove one of them",
        );
    }
    let pipeline = build::pipeline(&mut d, &doc.root, file);
    if let Some(p) = &pipeline {
        validate::check(&mut d, p);
    }
    match pipeline {
        Some(p) if !d.has_errors() => Ok((p, d.into_sorted())),
        _ => {
            if !d.has_errors() {
                d.error(
                    doc.root.loc,
                    &DocPath::root(),
                    "the pipeline could not be read",
                );
            }
            Err(invalid(file, d))
        }
    }
}

#[cfg(test)]
mod tests;
