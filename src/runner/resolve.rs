//! Step resolution: a validated model step plus what is known when it starts
//! (variables, secrets, codebase, strategy iteration, earlier steps' output
//! variables) becomes a [`ResolvedStep`]: concrete image reference, argv,
//! environment, ports and limits. Used by `run --dry-run` (with unknown
//! outputs shown as their expressions) and by the stage executor at the
//! moment each step starts.
//!
//! API contract (the executor codes against these names):
//! - [`RunContext::new`] once per run (pipeline, vars from `--var`, secrets,
//!   workspace info, codebase read from the local git checkout);
//! - [`RunContext::stage`] once per stage, giving a [`StageContext`];
//! - [`StageContext::resolve_step`] when a step starts, with the outputs of
//!   the steps that ran before it;
//! - [`StageContext::step_hosts`] for `/etc/hosts` (every step id, and
//!   `group_step`, on 127.0.0.1).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pipeline::model::{PullPolicy, StepKind};

/// Output variables of the steps that have finished, by step identifier
/// (and `group.step` for steps inside groups).
pub type StepOutputs = BTreeMap<String, BTreeMap<String, String>>;

/// Everything the executor needs to start one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStep {
    /// Unique in the stage: `group_step` inside step groups, suffixed `_N`
    /// for strategy copies.
    pub id: String,
    pub name: String,
    pub kind: StepKind,
    /// Fully qualified (`docker.io/library/alpine:latest`); `None` runs on
    /// the host's root, read-only, as Harness Cloud runs imageless steps.
    pub image: Option<String>,
    pub pull_policy: PullPolicy,
    /// The `connectorRef`, when the config maps it to credentials.
    pub connector: Option<String>,
    /// Exec argv; `None` means the image's Entrypoint + Cmd.
    pub argv: Option<Vec<String>>,
    /// Merged env: pipeline vars < stage vars < group vars < step env, plus
    /// HARNESS_*, DRONE_*, CI=true and the output-file variables. Image Env
    /// goes under these (the executor adds it once the image is known).
    pub env: Vec<(String, String)>,
    /// Container ports published from the host: (host, container).
    pub ports: Vec<(u16, u16)>,
    pub privileged: bool,
    pub run_as_user: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub timeout: Duration,
    /// Output variable names to read back from the step's output file.
    pub output_variables: Vec<String>,
    /// Every secret value rendered into this step (for the masker).
    pub secret_values: Vec<String>,
}
