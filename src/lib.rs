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
