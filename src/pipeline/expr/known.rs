//! What a dotted path refers to. The several spellings of a step output
//! (`steps.S...`, `execution.steps.G.steps.S...`,
//! `pipeline.stages.X.spec.execution.steps.S...`) come out as one form, so
//! the model can check them and a `Scope` can resolve them the same way.

/// A path of a known kind; `classify` returns `None` for anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// `pipeline.variables.X`
    PipelineVariable(String),
    /// `pipeline.identifier`, `pipeline.sequenceId`, `pipeline.execution.url`...
    /// (the part after `pipeline.`, dotted).
    PipelineField(String),
    /// `stage.variables.X` (`stage: None`: the current stage) or
    /// `pipeline.stages.S.variables.X`.
    StageVariable { stage: Option<String>, name: String },
    /// `stage.identifier|name`, `pipeline.stages.S.status|name|identifier`.
    StageField {
        stage: Option<String>,
        field: String,
    },
    /// `step.identifier|name` of the current step.
    CurrentStep(String),
    /// An output variable of a step; `groups` are the enclosing step groups
    /// as written in the path (outermost first).
    StepOutput {
        stage: Option<String>,
        groups: Vec<String>,
        step: String,
        variable: String,
    },
    /// `steps.S.status`, `steps.S.retryCount`... (`field` dotted).
    StepField {
        stage: Option<String>,
        groups: Vec<String>,
        step: String,
        field: String,
    },
    /// `codebase.branch`, `codebase.build.type`... (dotted).
    Codebase(String),
    /// `matrix.KEY`
    Matrix(String),
    /// `repeat.item`
    RepeatItem,
    /// `strategy.iteration` (0-based)
    StrategyIteration,
    /// `strategy.iterations` (the count)
    StrategyIterations,
    /// `trigger.*`: no trigger exists in a local run.
    Trigger(String),
    /// `eventPayload.*`: no webhook payload exists in a local run.
    EventPayload(String),
    /// `account.identifier`, `org.identifier`, `project.identifier`.
    ScopeIdentifier(String),
}

const PIPELINE_FIELDS: &[&str] = &[
    "identifier",
    "name",
    "sequenceId",
    "executionId",
    "startTs",
    "executionUrl",
    "triggerType",
    "orgIdentifier",
    "projectIdentifier",
    "tags",
    "description",
    "status",
];

/// Classifies a path as returned in `Reference::Path`.
pub fn classify(path: &[String]) -> Option<Known> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let rest = |from: usize| p[from..].join(".");
    Some(match p.as_slice() {
        ["pipeline", "variables", name] => Known::PipelineVariable(name.to_string()),
        ["pipeline", "stages", stage, more @ ..] | ["stages", stage, more @ ..] => {
            stage_path(Some(stage), more)?
        }
        ["pipeline", "execution", "url"] | ["pipeline", "triggeredBy", "name" | "email"] => {
            Known::PipelineField(rest(1))
        }
        ["pipeline", field] if PIPELINE_FIELDS.contains(field) => {
            Known::PipelineField(field.to_string())
        }
        ["stage", more @ ..] => stage_path(None, more)?,
        ["step", field @ ("identifier" | "name")] => Known::CurrentStep(field.to_string()),
        ["steps", more @ ..] | ["execution", "steps", more @ ..] => step_path(None, more)?,
        ["codebase", _, ..] => Known::Codebase(rest(1)),
        ["matrix", key] => Known::Matrix(key.to_string()),
        ["repeat", "item"] => Known::RepeatItem,
        ["strategy", "iteration"] => Known::StrategyIteration,
        ["strategy", "iterations"] => Known::StrategyIterations,
        ["trigger", _, ..] => Known::Trigger(rest(1)),
        ["eventPayload", _, ..] => Known::EventPayload(rest(1)),
        [scope @ ("account" | "org" | "project"), "identifier"] => {
            Known::ScopeIdentifier(scope.to_string())
        }
        _ => return None,
    })
}

/// A path under `pipeline`, `stage` or `step` that names no field corral
/// provides (`step.setupId`): Harness renders what it cannot resolve as
/// `null`, and so do validation (a warning) and a run.
pub fn is_unprovided(path: &[String]) -> bool {
    matches!(
        path.first().map(String::as_str),
        Some("pipeline" | "stage" | "step")
    ) && classify(path).is_none()
}

fn stage_path(stage: Option<&str>, more: &[&str]) -> Option<Known> {
    let stage = stage.map(str::to_string);
    Some(match more {
        ["variables", name] => Known::StageVariable {
            stage,
            name: name.to_string(),
        },
        ["spec", "execution", "steps", steps @ ..] => step_path(stage, steps)?,
        [field @ ("identifier" | "name" | "status" | "type" | "description")] => {
            Known::StageField {
                stage,
                field: field.to_string(),
            }
        }
        _ => return None,
    })
}

/// `S.output.outputVariables.V`, `S.status`, or `G.steps.` + that, nested.
fn step_path(stage: Option<String>, mut more: &[&str]) -> Option<Known> {
    let mut groups = Vec::new();
    while let [group, "steps", inner @ ..] = more {
        groups.push(group.to_string());
        more = inner;
    }
    Some(match more {
        [step, "output", "outputVariables", variable] => Known::StepOutput {
            stage,
            groups,
            step: step.to_string(),
            variable: variable.to_string(),
        },
        [step, field @ ..] if !field.is_empty() && field[0] != "output" => Known::StepField {
            stage,
            groups,
            step: step.to_string(),
            field: field.join("."),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(path: &str) -> Option<Known> {
        let v: Vec<String> = path.split('.').map(String::from).collect();
        classify(&v)
    }

    fn out(stage: Option<&str>, groups: &[&str], step: &str, var: &str) -> Option<Known> {
        Some(Known::StepOutput {
            stage: stage.map(String::from),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            step: step.into(),
            variable: var.into(),
        })
    }

    #[test]
    fn classifies_paths() {
        let s = String::from;
        let cases: Vec<(&str, Option<Known>)> = vec![
            ("pipeline.variables.X", Some(Known::PipelineVariable(s("X")))),
            ("pipeline.sequenceId", Some(Known::PipelineField(s("sequenceId")))),
            ("pipeline.execution.url", Some(Known::PipelineField(s("execution.url")))),
            ("pipeline.triggeredBy.email", Some(Known::PipelineField(s("triggeredBy.email")))),
            ("pipeline.nope", None),
            ("stage.variables.V", Some(Known::StageVariable { stage: None, name: s("V") })),
            (
                "pipeline.stages.build.variables.ENV",
                Some(Known::StageVariable { stage: Some(s("build")), name: s("ENV") }),
            ),
            ("stage.identifier", Some(Known::StageField { stage: None, field: s("identifier") })),
            (
                "pipeline.stages.ci.status",
                Some(Known::StageField { stage: Some(s("ci")), field: s("status") }),
            ),
            ("stage.spec.infrastructure.spec.os", None),
            ("step.identifier", Some(Known::CurrentStep(s("identifier")))),
            ("step.spec.image", None),
            ("steps.Run_1.output.outputVariables.types", out(None, &[], "Run_1", "types")),
            ("execution.steps.Run_1.output.outputVariables.v", out(None, &[], "Run_1", "v")),
            ("execution.steps.SG.steps.S.output.outputVariables.v", out(None, &["SG"], "S", "v")),
            ("execution.steps.A.steps.B.steps.S.output.outputVariables.v", out(None, &["A", "B"], "S", "v")),
            (
                "pipeline.stages.DetermineMatrix.spec.execution.steps.Run_1.output.outputVariables.types",
                out(Some("DetermineMatrix"), &[], "Run_1", "types"),
            ),
            ("stages.X.spec.execution.steps.G.steps.S.output.outputVariables.v", out(Some("X"), &["G"], "S", "v")),
            (
                "steps.S.status",
                Some(Known::StepField { stage: None, groups: vec![], step: s("S"), field: s("status") }),
            ),
            ("steps.S.output.outputVariables", None),
            ("steps.S", None),
            ("codebase.commitSha", Some(Known::Codebase(s("commitSha")))),
            ("codebase.build.type", Some(Known::Codebase(s("build.type")))),
            ("codebase", None),
            ("matrix.nodeVersion", Some(Known::Matrix(s("nodeVersion")))),
            ("repeat.item", Some(Known::RepeatItem)),
            ("strategy.iteration", Some(Known::StrategyIteration)),
            ("strategy.iterations", Some(Known::StrategyIterations)),
            ("trigger.prLabels", Some(Known::Trigger(s("prLabels")))),
            ("eventPayload.commits.0", Some(Known::EventPayload(s("commits.0")))),
            ("account.identifier", Some(Known::ScopeIdentifier(s("account")))),
            ("env.variables.x", None),
            ("foo", None),
        ];
        for (path, want) in cases {
            assert_eq!(c(path), want, "{path}");
        }
    }
}
