//! Errors of step resolution. Every message names the file and line (and
//! the step or variable); none of them carries a value, so a secret never
//! reaches an error message.

use std::path::PathBuf;

use crate::image::reference::ReferenceError;
use crate::pipeline::expr::ExprError;
use crate::pipeline::secret::SecretError;
use crate::pipeline::strategy::StrategyError;

/// A secret reference nobody gave a value for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    pub id: String,
    /// `step `Sauce_Connect``, `variable `token``, `connector `hub``.
    pub user: String,
    pub file: PathBuf,
    pub line: usize,
}

fn list_missing(missing: &[MissingSecret]) -> String {
    missing
        .iter()
        .map(|m| {
            format!(
                "{}:{}: secret `{}` used by {}",
                m.file.display(),
                m.line,
                m.id,
                m.user
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid --var `{arg}`: expected NAME=VALUE")]
    ParseVar { arg: String },
    #[error("--var `{name}` names no variable of the pipeline, its stages or step groups{hint}")]
    UnknownVar { name: String, hint: String },
    #[error("--var `{name}`: `{value}` is not one of the allowed values ({})", allowed.join(", "))]
    NotAllowed {
        name: String,
        value: String,
        allowed: Vec<String>,
    },
    #[error("--stage `{id}` names no stage of {}{hint}", file.display())]
    UnknownStage {
        id: String,
        file: PathBuf,
        hint: String,
    },
    #[error(
        "{} secret(s) the pipeline needs were not given: {}; pass each with --secret ID (from the environment variable ID), --secret ID=env:VAR, --secret ID=file:PATH or --secrets-file",
        missing.len(), list_missing(missing)
    )]
    MissingSecrets { missing: Vec<MissingSecret> },
    #[error("failed to read a secret the pipeline needs")]
    ReadSecret(#[source] SecretError),
    #[error(
        "{}:{line}: variable `{name}` is a runtime input (`<+input>`) without a default; give it with --var {name}=VALUE",
        file.display()
    )]
    Input {
        name: String,
        file: PathBuf,
        line: usize,
    },
    #[error("{}:{line}: variable `{name}` is required but has no value; give it with --var {name}=VALUE", file.display())]
    Required {
        name: String,
        file: PathBuf,
        line: usize,
    },
    #[error("{}:{line}:{column}: failed to resolve {what}", file.display())]
    Expression {
        what: String,
        file: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: ExprError,
    },
    #[error("{}:{line}: {what} of step `{step}` is `{value}`, not {expected}", file.display())]
    BadValue {
        what: &'static str,
        step: String,
        value: String,
        expected: &'static str,
        file: PathBuf,
        line: usize,
    },
    #[error("{}:{line}: {what} of stage `{stage}` is `{value}`, not {expected}", file.display())]
    BadStageValue {
        what: &'static str,
        stage: String,
        value: String,
        expected: &'static str,
        file: PathBuf,
        line: usize,
    },
    #[error("{}:{line}: invalid image of step `{step}`", file.display())]
    Image {
        step: String,
        file: PathBuf,
        line: usize,
        #[source]
        source: ReferenceError,
    },
    #[error("{}: failed to expand the strategy of stage `{stage}`", file.display())]
    Strategy {
        stage: String,
        file: PathBuf,
        #[source]
        source: StrategyError,
    },
}
