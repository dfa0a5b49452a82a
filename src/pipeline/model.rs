//! The validated pipeline: what the stage executor consumes.
//!
//! Every string a user wrote stays raw (a [`Str`] with its location) so
//! expressions are rendered later, per stage, step and loop iteration.

use std::path::PathBuf;
use std::time::Duration;

use super::location::Location;
use super::strategy::{Iteration, Strategy};

/// A string exactly as written in the YAML, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str {
    pub value: String,
    pub loc: Location,
}

impl Str {
    pub fn new(value: impl Into<String>, loc: Location) -> Self {
        Str {
            value: value.into(),
            loc,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The location of the byte at `offset` in the value. Exact for plain
    /// one-line and literal block (`|`) scalars, approximate for others.
    pub fn loc_at(&self, offset: usize) -> Location {
        let before = self.value.get(..offset).unwrap_or(&self.value);
        match before.rfind('\n') {
            Some(nl) => Location::new(
                self.loc.line + before.matches('\n').count(),
                self.loc.column + before[nl + 1..].chars().count(),
            ),
            None => Location::new(self.loc.line, self.loc.column + before.chars().count()),
        }
    }

    /// True when the whole value is (or contains) a `<+...>` expression.
    pub fn is_expression(&self) -> bool {
        self.value.contains("<+")
    }
}

/// A typed setting that may instead be an expression resolved at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting<T> {
    Value(T),
    Expr(Str),
}

impl<T: Copy> Setting<T> {
    /// The literal value, if it is not an expression.
    pub fn literal(&self) -> Option<T> {
        match self {
            Setting::Value(v) => Some(*v),
            Setting::Expr(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub file: PathBuf,
    /// None for a file with bare `stages:`.
    pub name: Option<Str>,
    pub identifier: Option<Str>,
    pub project_identifier: Option<Str>,
    pub org_identifier: Option<Str>,
    pub codebase: Option<Codebase>,
    pub variables: Vec<Variable>,
    pub timeout: Option<Duration>,
    /// In order; stages sharing a `parallel_group` run concurrently.
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// The pipeline's identifier; `local` for a file with bare `stages:`.
    pub fn id(&self) -> &str {
        self.identifier.as_ref().map_or("local", |i| i.as_str())
    }
}

/// `properties.ci.codebase`.
#[derive(Debug, Clone, PartialEq)]
pub struct Codebase {
    pub connector_ref: Option<Str>,
    pub repo_name: Option<Str>,
    pub build: Option<CodebaseBuild>,
    pub depth: Option<Str>,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CodebaseBuild {
    /// `build: <+input>`.
    Input(Str),
    /// `{type: branch|tag|PR|commitSha, spec: {branch|tag|number|commitSha}}`.
    Spec { kind: Str, value: Option<Str> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableType {
    String,
    Number,
    Secret,
}

/// A pipeline, stage or step group variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: Str,
    pub kind: VariableType,
    /// For `Secret`, the secret identifier (a reference, not the value).
    pub value: Option<Str>,
    pub default: Option<Str>,
    pub required: bool,
    pub loc: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    All,
}

/// `when` of a stage (`pipelineStatus`) or a step/group (`stageStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    pub status: Status,
    /// JEXL condition, raw.
    pub condition: Option<Str>,
    pub loc: Location,
}

/// One `onFailure` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureStrategy {
    /// Error types as written (`AllErrors`, `Timeout`, …); empty means none.
    pub errors: Vec<Str>,
    pub action: FailureAction,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FailureAction {
    Ignore,
    Retry {
        count: u32,
        /// Waits between attempts; the last one repeats when shorter.
        intervals: Vec<Duration>,
        on_retry_failure: Box<FailureAction>,
    },
    MarkAsSuccess,
    Abort,
    MarkAsFailure,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub id: Str,
    pub name: Str,
    pub description: Option<Str>,
    pub variables: Vec<Variable>,
    pub when: Option<When>,
    pub failure_strategies: Vec<FailureStrategy>,
    /// The looping strategy as written; `None` once expanded.
    pub strategy: Option<Strategy>,
    /// Set on the copies made by expanding `strategy`.
    pub iteration: Option<Iteration>,
    pub timeout: Option<Duration>,
    pub spec: StageSpec,
    pub execution: Vec<ExecutionItem>,
    /// Stages with the same group came from one `parallel:` block.
    pub parallel_group: Option<usize>,
    /// On the copies of a looped stage: how many of them run at once (the
    /// strategy's `maxConcurrency`); `None` = all.
    pub max_concurrency: Option<usize>,
    /// Shared by the copies of one looped stage (they also share a
    /// `parallel_group`: their own, or that of the `parallel:` block the
    /// looped stage is in).
    pub loop_group: Option<usize>,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// `None` when not written (Harness then clones).
    pub clone_codebase: Option<Setting<bool>>,
    pub platform_os: Option<Str>,
    pub platform_arch: Option<Str>,
    /// Accepted and recorded; every kind runs in the local sandbox.
    pub infrastructure: Infrastructure,
    pub shared_paths: Vec<Str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Infrastructure {
    Unspecified,
    Cloud,
    Docker,
    KubernetesDirect,
    Vm,
    /// Reuse another stage's infrastructure.
    UseFromStage(Str),
    /// Another type, accepted with a warning.
    Other(Str),
}

// Steps dominate execution lists, so boxing them would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionItem {
    Step(Step),
    Parallel(Parallel),
    Group(StepGroup),
}

/// Items run concurrently; each item's own steps stay sequential.
#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    pub items: Vec<ExecutionItem>,
    /// How many run at once (from a strategy's `maxConcurrency`); `None` = all.
    pub max_concurrency: Option<usize>,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepGroup {
    pub id: Str,
    pub name: Str,
    pub variables: Vec<Variable>,
    pub shared_paths: Vec<Str>,
    pub when: Option<When>,
    pub failure_strategies: Vec<FailureStrategy>,
    pub strategy: Option<Strategy>,
    pub iteration: Option<Iteration>,
    pub steps: Vec<ExecutionItem>,
    pub loc: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Run,
    Background,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: Str,
    pub name: Str,
    pub description: Option<Str>,
    pub kind: StepKind,
    pub spec: StepSpec,
    /// Written value, or the 2h default; an expression also falls back to it.
    pub timeout: Duration,
    pub when: Option<When>,
    pub failure_strategies: Vec<FailureStrategy>,
    pub strategy: Option<Strategy>,
    pub iteration: Option<Iteration>,
    pub loc: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shell {
    #[default]
    Sh,
    Bash,
    Powershell,
    Pwsh,
    Python,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Never,
    IfNotPresent,
}

/// The spec of a Run or Background step. Fields that only one kind has
/// stay empty for the other (validation enforces that).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepSpec {
    pub connector_ref: Option<Str>,
    pub image: Option<Str>,
    pub shell: Shell,
    pub command: Option<Str>,
    /// Background only: exec form replacing ENTRYPOINT and `command`.
    pub entrypoint: Vec<Str>,
    /// In the order written.
    pub env: Vec<(Str, Str)>,
    /// Background only.
    pub port_bindings: Vec<PortBinding>,
    pub privileged: Option<Setting<bool>>,
    pub run_as_user: Option<Setting<u32>>,
    pub image_pull_policy: Option<PullPolicy>,
    pub limits: Limits,
    /// JUnit report globs.
    pub reports: Vec<Str>,
    /// Run only.
    pub output_variables: Vec<OutputVariable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub host: Setting<u16>,
    pub container: Setting<u16>,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    pub memory_bytes: Option<Setting<u64>>,
    pub cpu_millis: Option<Setting<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputType {
    #[default]
    String,
    Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputVariable {
    pub name: Str,
    pub kind: OutputType,
    /// Newer form: the shell variable to read, when it differs from `name`.
    pub value: Option<Str>,
}

impl ExecutionItem {
    /// Calls `f` on every step below this item, depth first.
    pub fn for_each_step<'a>(&'a self, f: &mut dyn FnMut(&'a Step)) {
        match self {
            ExecutionItem::Step(step) => f(step),
            ExecutionItem::Parallel(p) => p.items.iter().for_each(|i| i.for_each_step(f)),
            ExecutionItem::Group(g) => g.steps.iter().for_each(|i| i.for_each_step(f)),
        }
    }
}

impl Stage {
    /// Every step of the stage, groups and parallel blocks flattened.
    pub fn steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        for item in &self.execution {
            item.for_each_step(&mut |s| out.push(s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_source_locations() {
        let block = Str::new("echo a\necho <+x>\n", Location::new(10, 9));
        assert_eq!(block.loc_at(0), Location::new(10, 9));
        assert_eq!(block.loc_at(12), Location::new(11, 14));
        let plain = Str::new("pre <+x>", Location::new(3, 20));
        assert_eq!(plain.loc_at(4), Location::new(3, 24));
    }
}
