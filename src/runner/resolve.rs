//! Step resolution: a validated model step plus what is known when it starts
//! (variables, secrets, codebase, strategy iteration, earlier steps' output
//! variables) becomes a [`ResolvedStep`]: concrete image reference, argv,
//! environment, ports and limits. Used by `run --dry-run` (with unknown
//! outputs shown as their expressions) and by the stage executor at the
//! moment each step starts.
//!
//! API contract (the executor codes against these names):
//! - [`RunContext::new`] once per run (pipeline, vars from `--var`, secrets,
//!   workspace info, codebase read from the local git checkout); it expands
//!   strategies and fails before anything runs when a secret is missing;
//! - [`RunContext::stage`] once per stage, giving a [`StageContext`];
//! - [`StageContext::resolve_step`] when a step starts, with the outputs of
//!   the steps that ran before it;
//! - [`StageContext::step_hosts`] for `/etc/hosts` (every step id, and
//!   `group_step`, on 127.0.0.1).
//! - [`StageContext::step_when`] / [`StageContext::group_when`] /
//!   [`StageContext::stage_when`] give the `when` with its condition
//!   evaluated, for `supervise::gate`.

mod checks;
mod codebase;
mod error;
mod render;
pub mod script;
mod stage;
mod step;
#[cfg(test)]
mod tests;
mod unset;
mod vars;
mod when;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use codebase::Codebase;
pub use error::{MissingSecret, ResolveError};
pub use script::{parse_output_file, Script};
pub use stage::{for_each_step, Condition, StageContext};

use super::status::HarnessStatus;
use crate::config::{Config, ConnectorConfig};
use crate::pipeline::expr::parse_template;
use crate::pipeline::model::{Pipeline, PullPolicy, Stage, StepGroup, StepKind, Str};
use crate::pipeline::secret::{Masker, SecretStore};
use crate::pipeline::strategy::{self, Inputs};

/// Output variables of the steps that have finished, by step identifier
/// (and `group.step` for steps inside groups; `outer.inner.step` nested).
pub type StepOutputs = BTreeMap<String, BTreeMap<String, String>>;

/// Statuses of the steps that have started, keyed as [`StepOutputs`], for
/// `<+steps.ID.status>` and `<+steps.ID.retryCount>`.
pub type StepStatuses = BTreeMap<String, StepState>;

/// Where a step is: its Harness status and how often it was retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepState {
    pub status: HarnessStatus,
    pub retry_count: u32,
}

/// The key of a step in [`StepOutputs`] and [`StepStatuses`]: its groups
/// and its id, joined by dots.
pub fn step_key(step: &crate::pipeline::model::Step, groups: &[&StepGroup]) -> String {
    groups
        .iter()
        .map(|g| g.id.as_str())
        .chain([step.id.as_str()])
        .collect::<Vec<_>>()
        .join(".")
}

/// The workspace inside every sandbox.
pub const WORKSPACE: &str = "/harness";

/// Where step output files live inside the sandbox:
/// `OUTPUT_DIR/<execution-id>/<stage-id>/<step-id>.env` under the
/// workspace mount (the executor creates the stage's directory before the
/// stage starts and, in a `--workspace DIR`, removes the run's directory
/// when the run ends; nothing else is mounted for it).
pub const OUTPUT_DIR: &str = "/harness/.corral/outputs";

/// Everything the executor needs to start one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStep {
    /// Unique in the stage: `group_step` inside step groups, suffixed `_N`
    /// for strategy copies.
    pub id: String,
    /// The key of this step's outputs in [`StepOutputs`] (`group.step`).
    pub output_key: String,
    pub name: String,
    pub kind: StepKind,
    /// Fully qualified (`docker.io/library/alpine:latest`); `None` runs on
    /// the host's root, read-only, as Harness Cloud runs imageless steps.
    pub image: Option<String>,
    pub pull_policy: PullPolicy,
    /// The `connectorRef`, when the config maps it to credentials.
    pub connector: Option<String>,
    /// The `connectorRef` as written (rendered), configured or not.
    pub connector_ref: Option<String>,
    /// Exec argv; `None` means the image's Entrypoint + Cmd.
    pub argv: Option<Vec<String>>,
    /// The `command` (with corral's lines) that `argv` runs from a file, so
    /// that it never shows in argv; written into the sandbox's memory.
    pub script: Option<Script>,
    /// Merged env: pipeline vars < stage vars < group vars < step env, plus
    /// HARNESS_*, DRONE_*, CI=true and the output-file variables. Image Env
    /// goes under these (the executor adds it once the image is known).
    /// Sorted by name.
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
    /// Names of output variables of type Secret (mask their values).
    pub secret_outputs: Vec<String>,
    /// `OUTPUT_DIR/<execution-id>/<stage-id>/<id>.env`, inside the sandbox.
    pub output_file: String,
    /// Every secret value rendered into this step (for the masker).
    pub secret_values: Vec<String>,
}

/// What a run knows besides the pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--var NAME=VALUE` (see [`RunOptions::parse_vars`]).
    pub vars: BTreeMap<String, String>,
    /// `--stage` ids; empty runs every stage. A looped stage's id selects
    /// all its copies.
    pub stages: Vec<String>,
    /// `<+pipeline.sequenceId>`, `HARNESS_BUILD_ID`. `None`: the executor
    /// takes the next number of the pipeline's counter in the store when
    /// the run starts (`--dry-run` shows 1).
    pub sequence_id: Option<u64>,
    /// `<+pipeline.executionId>`, `HARNESS_EXECUTION_ID`.
    pub execution_id: String,
    /// `<+pipeline.startTs>`: when the run started, in milliseconds since
    /// the epoch, as Harness gives it.
    pub start_ts: i64,
    /// Checkout the codebase is read from; default: the pipeline file's
    /// directory.
    pub codebase_dir: Option<PathBuf>,
    /// False: no git lookups at all (codebase values are null).
    pub read_codebase: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        let execution_id: String = (0..22)
            .map(|_| {
                let chars = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                chars[fastrand::usize(..chars.len())] as char
            })
            .collect();
        RunOptions {
            vars: BTreeMap::new(),
            stages: Vec::new(),
            sequence_id: None,
            execution_id,
            start_ts: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            codebase_dir: None,
            read_codebase: true,
        }
    }
}

impl RunOptions {
    /// The sequence number of this run.
    pub fn sequence_id(&self) -> u64 {
        self.sequence_id.unwrap_or(1)
    }

    /// Parses `--var NAME=VALUE` arguments (the last of a name wins).
    pub fn parse_vars(args: &[String]) -> Result<BTreeMap<String, String>, ResolveError> {
        let mut vars = BTreeMap::new();
        for arg in args {
            match arg.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() => {
                    vars.insert(name.trim().to_string(), value.to_string());
                }
                _ => return Err(ResolveError::ParseVar { arg: arg.clone() }),
            }
        }
        Ok(vars)
    }
}

/// The state of one run shared by its stages.
#[derive(Debug)]
pub struct RunContext {
    /// Strategies expanded; every stage, selected or not.
    pipeline: Pipeline,
    selected: Vec<usize>,
    secrets: SecretStore,
    connectors: BTreeMap<String, ConnectorConfig>,
    codebase: Option<Codebase>,
    given: vars::Given,
    options: RunOptions,
    /// Outputs of finished stages, by stage id.
    stage_outputs: BTreeMap<String, StepOutputs>,
    /// Statuses of finished stages and of their steps, by stage id.
    stage_statuses: BTreeMap<String, (HarnessStatus, StepStatuses)>,
}

impl RunContext {
    /// Prepares a run: checks `--var` names and `--stage` ids, reads the
    /// codebase, expands strategies and makes sure every secret the
    /// selected stages refer to was given (an error naming each one and
    /// where it is used, before anything runs).
    pub fn new(
        pipeline: &Pipeline,
        mut secrets: SecretStore,
        config: &Config,
        options: RunOptions,
    ) -> Result<RunContext, ResolveError> {
        let given = checks::given_vars(pipeline, &options.vars)?;
        let codebase = if options.read_codebase {
            let dir = options.codebase_dir.clone().unwrap_or_else(|| {
                pipeline
                    .file
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), PathBuf::from)
            });
            Codebase::read(&dir)
        } else {
            None
        };
        let selected_raw = checks::select_stages(pipeline, &options.stages)?;
        checks::require_secrets(pipeline, &selected_raw, &mut secrets, config)?;
        let mut ctx = RunContext {
            pipeline: pipeline.clone(),
            selected: Vec::new(),
            secrets,
            connectors: config.connectors.clone(),
            codebase,
            given,
            options,
            stage_outputs: BTreeMap::new(),
            stage_statuses: BTreeMap::new(),
        };
        ctx.expand(pipeline, &selected_raw)?;
        Ok(ctx)
    }

    /// Expands strategies stage by stage, with each stage's variables known.
    fn expand(&mut self, raw: &Pipeline, selected_raw: &[usize]) -> Result<(), ResolveError> {
        let mut next_group = raw
            .stages
            .iter()
            .filter_map(|s| s.parallel_group)
            .max()
            .unwrap_or(0)
            + 1;
        let mut stages = Vec::new();
        let mut selected = Vec::new();
        for (i, stage) in raw.stages.iter().enumerate() {
            let copies = {
                let scope = stage::StageScope::build(self, stage)?;
                let inputs = StrategyInputs {
                    scope: &scope,
                    file: &raw.file,
                };
                strategy::expand_stage(stage, &inputs, next_group).map_err(|source| {
                    ResolveError::Strategy {
                        stage: stage.id.value.clone(),
                        file: raw.file.clone(),
                        source,
                    }
                })?
            };
            if stage.strategy.is_some() {
                next_group += 1;
            }
            for copy in copies {
                if selected_raw.contains(&i) {
                    selected.push(stages.len());
                }
                stages.push(copy);
            }
        }
        self.pipeline.stages = stages;
        self.selected = selected;
        Ok(())
    }

    /// The pipeline with strategies expanded.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The stages to run, in order.
    pub fn stages(&self) -> Vec<&Stage> {
        self.selected
            .iter()
            .map(|&i| &self.pipeline.stages[i])
            .collect()
    }

    /// A masker knowing every secret value read for this run.
    pub fn masker(&self) -> Masker {
        self.secrets.masker()
    }

    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    pub fn codebase(&self) -> Option<&Codebase> {
        self.codebase.as_ref()
    }

    pub fn options(&self) -> &RunOptions {
        &self.options
    }

    /// Gives the run its sequence number (the executor does, from the
    /// store's counter). Strategies were expanded before it was known: a
    /// strategy built from `<+pipeline.sequenceId>` saw 1.
    pub fn set_sequence_id(&mut self, id: u64) {
        self.options.sequence_id = Some(id);
    }

    /// Records the outputs of a finished stage, for
    /// `<+pipeline.stages.S.spec.execution.steps.X.output.outputVariables.V>`.
    pub fn record_outputs(&mut self, stage_id: &str, outputs: StepOutputs) {
        self.stage_outputs.insert(stage_id.to_string(), outputs);
    }

    /// Records the status of a finished stage and of its steps, for
    /// `<+pipeline.stages.S.status>` and
    /// `<+pipeline.stages.S.spec.execution.steps.X.status>`. A step of the
    /// stage that never started counts as SKIPPED.
    pub fn record_statuses(
        &mut self,
        stage_id: &str,
        status: HarnessStatus,
        mut steps: StepStatuses,
    ) {
        if let Some(stage) = self.pipeline.stages.iter().find(|s| s.id.value == stage_id) {
            let _ = stage::for_each_step(&stage.execution, &[], &mut |step, groups| {
                steps.entry(step_key(step, groups)).or_insert(StepState {
                    status: HarnessStatus::Skipped,
                    retry_count: 0,
                });
                Ok::<(), ()>(())
            });
        }
        self.stage_statuses
            .insert(stage_id.to_string(), (status, steps));
    }

    /// Resolves every step of the selected stages as `--dry-run` does, so
    /// a bad image reference or a value of the wrong kind stops the run
    /// before its first step.
    pub fn check_plan(&self) -> Result<(), ResolveError> {
        for stage in self.stages() {
            let sc = self.stage(stage)?;
            sc.stage_when_preview()?;
            stage::for_each_step(&stage.execution, &[], &mut |step, groups| {
                sc.preview_step(step, groups).map(|_| ())
            })?;
        }
        Ok(())
    }

    /// The context of one stage of [`RunContext::pipeline`].
    pub fn stage<'r>(&'r self, stage: &'r Stage) -> Result<StageContext<'r>, ResolveError> {
        StageContext::new(self, stage)
    }
}

/// Resolves strategy expressions against a stage's scope.
struct StrategyInputs<'a> {
    scope: &'a stage::StageScope<'a>,
    file: &'a std::path::Path,
}

impl Inputs for StrategyInputs<'_> {
    fn list(&self, expr: &Str) -> Result<Vec<String>, String> {
        let template = parse_template(&expr.value).map_err(|e| e.to_string())?;
        match crate::pipeline::expr::evaluate(&template, &self.scope.scope) {
            Ok(crate::pipeline::expr::Value::List(items)) => {
                Ok(items.iter().map(|v| v.to_string()).collect())
            }
            Ok(other) => Ok(vec![other.to_string()]),
            Err(e) => Err(format!("{} ({}:{})", e, self.file.display(), expr.loc.line)),
        }
    }
    fn number(&self, expr: &Str) -> Result<u32, String> {
        let template = parse_template(&expr.value).map_err(|e| e.to_string())?;
        let v = crate::pipeline::expr::evaluate(&template, &self.scope.scope)
            .map_err(|e| e.to_string())?;
        let text = v.to_string();
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number"))
    }
}
