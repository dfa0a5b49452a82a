//! Stage executor: turns validated pipelines into sandboxes, supervises them,
//! streams masked logs and reports results.
//!
//! - `logs`: step output, line by line, masked, to the terminal, files, events
//! - `events`: the versioned JSON-lines event stream (`--events`)
//! - `report`: step and stage results, the summary table, the exit code
//! - `supervise`: timeouts, failure strategies and `when` gating
//! - `resolve`: model step + run state -> a concrete step to launch
//! - `status`: Harness's status strings for `<+...status>` expressions
//! - `executor`: a whole run ([`run_pipeline`], [`execute`]); `batch`:
//!   stages at once; `stage`, `prepare`, `items`, `step`, `pull`: one
//!   stage, its start, its items, one sandbox, its images
//! - `shared`: what a run shares with its stages
//! - `cancel`: Ctrl-C / SIGTERM stop the run
//! - `workspace`, `checkout`: each stage instance's `/harness`, the
//!   `cloneCodebase` copy of the git checkout
//! - `sequence`: the per-pipeline run counter (`<+pipeline.sequenceId>`)

mod batch;
pub mod cancel;
mod checkout;
pub mod events;
mod executor;
mod failure;
mod items;
pub mod logs;
pub mod plan;
mod prepare;
mod pull;
pub mod report;
pub mod resolve;
pub mod runs;
pub mod sequence;
mod service;
mod shared;
mod stage;
pub mod status;
pub mod step;
pub mod supervise;
mod workspace;

pub use cancel::{install_signal_handlers, Cancel};
pub use executor::{
    execute, run_pipeline, RunError, RunOptions, RunReport, Settings, DEFAULT_GRACE,
};
