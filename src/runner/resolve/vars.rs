//! Pipeline, stage and step group variables: runtime inputs from `--var`,
//! secret-typed variables from the secret store, values that refer to
//! other values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::error::{MissingSecret, ResolveError};
use super::render::located;
use crate::pipeline::expr::{
    parse_template, ExprError, InputSpec, MapScope, Scope, SecretScope, Value,
};
use crate::pipeline::model::{Str, Variable, VariableType};
use crate::pipeline::secret::SecretStore;

/// `account.id` -> (Account, `id`); a bare id is project scope.
pub fn secret_ref(id: &str) -> (SecretScope, &str) {
    if let Some(rest) = id.strip_prefix("account.") {
        (SecretScope::Account, rest)
    } else if let Some(rest) = id.strip_prefix("org.") {
        (SecretScope::Org, rest)
    } else {
        (SecretScope::Project, id)
    }
}

/// The runtime input spec when a variable's value is `<+input>...`.
pub fn input_spec(var: &Variable) -> Option<InputSpec> {
    var.value
        .as_ref()
        .filter(|v| v.is_expression())
        .and_then(|v| parse_template(&v.value).ok())
        .and_then(|t| t.as_input().cloned())
}

/// `--var` values. A name that some runtime input (`<+input>`) carries
/// goes to the inputs of that name only; any other name overrides the
/// fixed values of that name (a local-run convenience Harness lacks).
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub values: BTreeMap<String, String>,
    pub input_names: BTreeSet<String>,
}

impl Given {
    fn for_variable(&self, var: &Variable, is_input: bool) -> Option<&String> {
        let name = &var.name.value;
        if is_input || !self.input_names.contains(name) {
            self.values.get(name)
        } else {
            None
        }
    }
}

/// The text of a variable before expressions in it are rendered.
fn raw_value(var: &Variable, given: &Given, file: &Path) -> Result<String, ResolveError> {
    let name = &var.name.value;
    let input = input_spec(var);
    let given = given.for_variable(var, input.is_some());
    if let Some(given) = given {
        if let Some(spec) = &input {
            if !spec.allowed.is_empty() && !spec.allowed.contains(given) {
                return Err(ResolveError::NotAllowed {
                    name: name.clone(),
                    value: given.clone(),
                    allowed: spec.allowed.clone(),
                });
            }
        }
        return Ok(given.clone());
    }
    if let Some(spec) = input {
        return match spec
            .default
            .or_else(|| var.default.as_ref().map(|d| d.value.clone()))
        {
            Some(d) => Ok(d),
            None => Err(ResolveError::Input {
                name: name.clone(),
                file: file.to_path_buf(),
                line: var.loc.line,
            }),
        };
    }
    match (&var.value, &var.default) {
        (Some(v), _) => Ok(v.value.clone()),
        (None, Some(d)) => Ok(d.value.clone()),
        (None, None) if var.required => Err(ResolveError::Required {
            name: name.clone(),
            file: file.to_path_buf(),
            line: var.loc.line,
        }),
        (None, None) => Ok(String::new()),
    }
}

/// Where each scope path came from, for error locations.
pub type Origins = BTreeMap<String, Str>;

/// Sets `PREFIX.NAME` for each variable (`pipeline.variables`,
/// `stage.variables`, `stepGroup.variables`).
pub fn set_variables(
    scope: &mut MapScope<'_>,
    origins: &mut Origins,
    prefix: &str,
    vars: &[Variable],
    given: &Given,
    secrets: &SecretStore,
    file: &Path,
) -> Result<(), ResolveError> {
    for var in vars {
        let path = format!("{prefix}.{}", var.name.value);
        let text = raw_value(var, given, file)?;
        let origin = var
            .value
            .clone()
            .unwrap_or_else(|| Str::new(text.clone(), var.loc));
        match var.kind {
            VariableType::Secret => {
                let (secret_scope, id) = secret_ref(text.trim());
                let Some(value) = secrets.get(secret_scope, id) else {
                    return Err(ResolveError::MissingSecrets {
                        missing: vec![MissingSecret {
                            id: text.trim().to_string(),
                            user: format!("variable `{}`", var.name.value),
                            file: file.to_path_buf(),
                            line: var.loc.line,
                        }],
                    });
                };
                scope.set_secret(&path, value.expose());
            }
            VariableType::Number => match text.trim().parse::<f64>() {
                Ok(n) => scope.set(&path, n),
                Err(_) => scope.set_template(&path, text),
            },
            VariableType::String => scope.set_template(&path, text),
        }
        origins.insert(path, origin);
    }
    scope
        .resolve_nested()
        .map_err(|e| nested_error(e, origins, file))
}

fn nested_error(e: ExprError, origins: &Origins, file: &Path) -> ResolveError {
    let path = match &e {
        ExprError::ResolveValue { path, .. } => path.clone(),
        ExprError::Cycle { paths } => paths.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let origin = origins
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Str::new("", Default::default()));
    located(file, &origin, &format!("the value of `{path}`"), e)
}

/// Env entries for variables: (name, value, secret).
pub fn variable_env(
    scope: &MapScope<'_>,
    prefix: &str,
    vars: &[Variable],
) -> Vec<(String, String, bool)> {
    vars.iter()
        .filter_map(|v| {
            let path: Vec<String> = prefix
                .split('.')
                .map(String::from)
                .chain([v.name.value.clone()])
                .collect();
            let value = scope.lookup(&path)?;
            let text = match value {
                Value::Null => String::new(),
                other => other.to_string(),
            };
            Some((v.name.value.clone(), text, scope.is_secret(&path)))
        })
        .collect()
}
