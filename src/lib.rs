//! corral: a daemonless, rootless sandbox runner for CI pipelines.
//!
//! Data flow:
//!
//! ```text
//! YAML -> pipeline::yaml (raw) -> pipeline::model (validated) -> resolved steps
//!      -> image (pull / unpack into the store) -> sandbox::spec -> launch
//!      -> runner::supervise -> results -> exit code
//! ```
//!
//! Modules point one way: `sandbox` never imports `pipeline`; `image` knows
//! nothing of steps; `runner` ties them together.

pub mod cli;
pub mod config;
pub mod image;
pub mod pipeline;
pub mod runner;
pub mod sandbox;

/// An error and its causes on one line (`err: cause: cause`), for messages
/// that cross a pipe or name a failure inside another one. Every module uses
/// this one.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
