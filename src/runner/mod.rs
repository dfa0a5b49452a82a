//! Stage executor: turns validated pipelines into sandboxes, supervises them,
//! streams masked logs and reports results.
//!
//! - `logs`: step output, line by line, masked, to the terminal, files, events
//! - `events`: the versioned JSON-lines event stream (`--events`)
//! - `report`: step and stage results, the summary table, the exit code
//! - `supervise`: timeouts, failure strategies and `when` gating
//! - `resolve`: model step + run state -> a concrete step to launch

pub mod events;
pub mod logs;
pub mod plan;
pub mod report;
pub mod resolve;
pub mod supervise;
