//! Checks `RunContext::new` makes before anything runs: `--stage` ids,
//! `--var` names, and every secret the selected stages need.

use std::collections::BTreeMap;

use super::error::{MissingSecret, ResolveError};
use super::{stage, vars};
use crate::config::Config;
use crate::pipeline::expr::{parse_template, Reference, SecretScope};
use crate::pipeline::model::{Pipeline, Str, Variable, VariableType};
use crate::pipeline::secret::SecretStore;

pub fn select_stages(pipeline: &Pipeline, wanted: &[String]) -> Result<Vec<usize>, ResolveError> {
    if wanted.is_empty() {
        return Ok((0..pipeline.stages.len()).collect());
    }
    for id in wanted {
        if !pipeline.stages.iter().any(|s| &s.id.value == id) {
            let hint = crate::pipeline::location::suggest(
                id,
                pipeline.stages.iter().map(|s| s.id.as_str()),
            )
            .map(|h| format!("; {h}"))
            .unwrap_or_else(|| {
                let ids: Vec<&str> = pipeline.stages.iter().map(|s| s.id.as_str()).collect();
                format!("; its stages are {}", ids.join(", "))
            });
            return Err(ResolveError::UnknownStage {
                id: id.clone(),
                file: pipeline.file.clone(),
                hint,
            });
        }
    }
    Ok(pipeline
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| wanted.contains(&s.id.value))
        .map(|(i, _)| i)
        .collect())
}

/// Checks that each `--var` names a variable, and sorts out which
/// variables it sets (see [`vars::Given`]).
pub fn given_vars(
    pipeline: &Pipeline,
    values: &BTreeMap<String, String>,
) -> Result<vars::Given, ResolveError> {
    let mut all: Vec<&Variable> = pipeline.variables.iter().collect();
    for stage in &pipeline.stages {
        all.extend(&stage.variables);
        stage::for_each_group(&stage.execution, &mut |g| all.extend(&g.variables));
    }
    for name in values.keys() {
        if !all.iter().any(|v| &v.name.value == name) {
            let hint =
                crate::pipeline::location::suggest(name, all.iter().map(|v| v.name.as_str()))
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
            return Err(ResolveError::UnknownVar {
                name: name.clone(),
                hint,
            });
        }
    }
    Ok(vars::Given {
        values: values.clone(),
        input_names: all
            .iter()
            .filter(|v| vars::input_spec(v).is_some())
            .map(|v| v.name.value.clone())
            .collect(),
    })
}

/// Reads every secret the selected stages refer to (config-file sources
/// are read now), and lists those nobody gave.
pub fn require_secrets(
    pipeline: &Pipeline,
    selected: &[usize],
    secrets: &mut SecretStore,
    config: &Config,
) -> Result<(), ResolveError> {
    let mut wanted: Vec<(String, String, usize)> = Vec::new();
    let templates = |s: &Str, user: &str, wanted: &mut Vec<(String, String, usize)>| {
        if !s.is_expression() {
            return;
        }
        if let Ok(t) = parse_template(&s.value) {
            for r in t.references() {
                if let Reference::Secret { scope, id } = r {
                    let full = match scope {
                        SecretScope::Project => id,
                        SecretScope::Org => format!("org.{id}"),
                        SecretScope::Account => format!("account.{id}"),
                    };
                    wanted.push((full, user.to_string(), s.loc.line));
                }
            }
        }
    };
    let var_secrets = |vars: &[Variable], wanted: &mut Vec<(String, String, usize)>| {
        for v in vars {
            let user = format!("variable `{}`", v.name.value);
            match (&v.kind, &v.value) {
                (VariableType::Secret, Some(value)) if !value.is_expression() => {
                    wanted.push((value.value.trim().to_string(), user, value.loc.line))
                }
                (_, Some(value)) => templates(value, &user, wanted),
                _ => {}
            }
        }
    };
    var_secrets(&pipeline.variables, &mut wanted);
    for &i in selected {
        let stage = &pipeline.stages[i];
        var_secrets(&stage.variables, &mut wanted);
        stage::for_each_group(&stage.execution, &mut |g| {
            var_secrets(&g.variables, &mut wanted)
        });
        for step in stage.steps() {
            let user = format!("step `{}`", step.id.value);
            let spec = &step.spec;
            let singles = [&spec.image, &spec.command, &spec.connector_ref];
            for s in singles.into_iter().flatten() {
                templates(s, &user, &mut wanted);
            }
            for (_, v) in &spec.env {
                templates(v, &user, &mut wanted);
            }
            for e in &spec.entrypoint {
                templates(e, &user, &mut wanted);
            }
            if let Some(connector) = spec
                .connector_ref
                .as_ref()
                .and_then(|c| config.connector(&c.value))
            {
                if let Some(pw) = &connector.password_secret {
                    let user = format!("the connector of step `{}`", step.id.value);
                    let line = spec
                        .connector_ref
                        .as_ref()
                        .map_or(step.loc.line, |c| c.loc.line);
                    wanted.push((pw.clone(), user, line));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for (id, user, line) in wanted {
        let (scope, bare) = vars::secret_ref(&id);
        if !secrets
            .require(scope, bare)
            .map_err(ResolveError::ReadSecret)?
        {
            let m = MissingSecret {
                id,
                user,
                file: pipeline.file.clone(),
                line,
            };
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ResolveError::MissingSecrets { missing })
    }
}
