//! `MapScope`: a ready `Scope` over a map of values and a `SecretStore`.
//! Step outputs and step fields (`status`, `retryCount`) are stored once
//! per (stage, step) and found through any of their spellings (see
//! `known`); so are stage fields (`pipeline.stages.S.status`,
//! `stages.S.status`, `stage.status`).

use std::collections::{BTreeMap, BTreeSet};

use super::known::{classify, Known};
use super::{parse_template, render, ExprError, Scope, SecretScope, Template, Value};
use crate::pipeline::secret::SecretStore;

#[derive(Debug, Default, Clone)]
pub struct MapScope<'a> {
    values: BTreeMap<String, Value>,
    /// (stage, step, variable) -> value
    outputs: BTreeMap<(String, String, String), Value>,
    secret_paths: BTreeSet<String>,
    /// Paths set with `set_template` that `resolve_nested` has yet to render.
    templates: BTreeSet<String>,
    secret_outputs: BTreeSet<(String, String, String)>,
    /// (stage, step, field) -> value, for `steps.S.status|retryCount`.
    step_fields: BTreeMap<(String, String, String), Value>,
    current_stage: Option<String>,
    secrets: Option<&'a SecretStore>,
}

impl<'a> MapScope<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_secrets(mut self, secrets: &'a SecretStore) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Sets a dotted path such as `pipeline.variables.x` or `matrix.os` to
    /// a value taken as it is (a commit message holding `<+` stays text).
    pub fn set(&mut self, path: &str, value: impl Into<Value>) {
        self.templates.remove(path);
        self.values.insert(path.to_string(), value.into());
    }

    /// Sets a path to a value written in the pipeline (a variable's), whose
    /// expressions `resolve_nested` renders.
    pub fn set_template(&mut self, path: &str, value: impl Into<Value>) {
        self.set(path, value);
        self.templates.insert(path.to_string());
    }

    /// Sets a path whose value is secret (a pipeline or stage variable of
    /// type Secret): renders that use it report it for masking.
    pub fn set_secret(&mut self, path: &str, value: impl Into<Value>) {
        self.secret_paths.insert(path.to_string());
        self.set(path, value);
    }

    pub fn remove(&mut self, path: &str) {
        self.secret_paths.remove(path);
        self.templates.remove(path);
        self.values.remove(path);
    }

    /// The stage `steps.S...` and `stage.*` refer to.
    pub fn set_current_stage(&mut self, stage: &str) {
        self.current_stage = Some(stage.to_string());
    }

    pub fn set_step_output(
        &mut self,
        stage: &str,
        step: &str,
        variable: &str,
        value: impl Into<Value>,
    ) {
        self.outputs.insert(
            (stage.to_string(), step.to_string(), variable.to_string()),
            value.into(),
        );
    }

    /// An output variable of type Secret.
    pub fn set_secret_step_output(
        &mut self,
        stage: &str,
        step: &str,
        variable: &str,
        value: impl Into<Value>,
    ) {
        let key = (stage.to_string(), step.to_string(), variable.to_string());
        self.secret_outputs.insert(key.clone());
        self.outputs.insert(key, value.into());
    }

    /// A field of a step: `status` or `retryCount`.
    pub fn set_step_field(
        &mut self,
        stage: &str,
        step: &str,
        field: &str,
        value: impl Into<Value>,
    ) {
        self.step_fields.insert(
            (stage.to_string(), step.to_string(), field.to_string()),
            value.into(),
        );
    }

    /// A field of a stage (`status`), found by every spelling.
    pub fn set_stage_field(&mut self, stage: &str, field: &str, value: impl Into<Value>) {
        self.set(&format!("pipeline.stages.{stage}.{field}"), value);
    }

    fn output_key(&self, path: &[String]) -> Option<(String, String, String)> {
        match classify(path)? {
            Known::StepOutput {
                stage,
                step,
                variable,
                ..
            } => Some((
                stage.or_else(|| self.current_stage.clone())?,
                step,
                variable,
            )),
            _ => None,
        }
    }
}

impl MapScope<'_> {
    /// Renders the values set with `set_template` that contain
    /// expressions (`value: <+pipeline.variables.base>-x`), in dependency
    /// order, as Harness resolves variables before a stage runs; each is
    /// rendered once. A value built from a secret becomes secret. Values of
    /// `<+input>` must have been replaced by the caller first.
    pub fn resolve_nested(&mut self) -> Result<(), ExprError> {
        let mut pending: BTreeMap<String, Template> = BTreeMap::new();
        for path in std::mem::take(&mut self.templates) {
            if let Some(Value::Str(text)) = self.values.get(&path) {
                if text.contains("<+") {
                    let template = parse_template(text).map_err(|e| ExprError::ResolveValue {
                        path: path.clone(),
                        source: Box::new(e),
                    })?;
                    pending.insert(path.clone(), template);
                }
            }
        }
        while !pending.is_empty() {
            let mut progressed = false;
            for path in pending.keys().cloned().collect::<Vec<_>>() {
                let view = Pending {
                    inner: self,
                    pending: &pending,
                };
                let result = pending.get(&path).map(|t| render(t, &view));
                match result {
                    Some(Ok(rendered)) => {
                        if rendered.has_secret {
                            self.secret_paths.insert(path.clone());
                        }
                        self.values.insert(path.clone(), Value::Str(rendered.text));
                        pending.remove(&path);
                        progressed = true;
                    }
                    // Refers to a value not resolved yet: retry next round.
                    Some(Err(ExprError::UnknownReference { path: missing, .. }))
                        if pending.contains_key(&missing) => {}
                    Some(Err(e)) => {
                        return Err(ExprError::ResolveValue {
                            path,
                            source: Box::new(e),
                        })
                    }
                    None => {}
                }
            }
            if !progressed {
                return Err(ExprError::Cycle {
                    paths: pending.into_keys().collect(),
                });
            }
        }
        Ok(())
    }
}

/// `MapScope` with the values still being resolved hidden.
struct Pending<'a, 'b> {
    inner: &'a MapScope<'b>,
    pending: &'a BTreeMap<String, Template>,
}

impl Scope for Pending<'_, '_> {
    fn lookup(&self, path: &[String]) -> Option<Value> {
        if self.pending.contains_key(&path.join(".")) {
            return None;
        }
        self.inner.lookup(path)
    }
    fn secret(&self, scope: SecretScope, id: &str) -> Option<String> {
        self.inner.secret(scope, id)
    }
    fn is_secret(&self, path: &[String]) -> bool {
        self.inner.is_secret(path)
    }
    fn not_yet(&self, path: &[String]) -> Option<String> {
        self.inner.not_yet(path)
    }
}

impl Scope for MapScope<'_> {
    fn lookup(&self, path: &[String]) -> Option<Value> {
        if let Some(v) = self.values.get(&path.join(".")) {
            return Some(v.clone());
        }
        if let Some(key) = self.output_key(path) {
            return self.outputs.get(&key).cloned();
        }
        match classify(path)? {
            // `stage.variables.x` of the current stage, when set by the long name.
            Known::StageVariable { stage: None, name } => {
                let stage = self.current_stage.as_ref()?;
                self.values
                    .get(&format!("pipeline.stages.{stage}.variables.{name}"))
                    .cloned()
            }
            Known::StageVariable {
                stage: Some(stage),
                name,
            } if self.current_stage.as_ref() == Some(&stage) => {
                self.values.get(&format!("stage.variables.{name}")).cloned()
            }
            Known::StageField { stage, field } => {
                let stage = stage.or_else(|| self.current_stage.clone())?;
                self.values
                    .get(&format!("pipeline.stages.{stage}.{field}"))
                    .cloned()
            }
            Known::StepField {
                stage, step, field, ..
            } => {
                let stage = stage.or_else(|| self.current_stage.clone())?;
                self.step_fields.get(&(stage, step, field)).cloned()
            }
            // A local run has no trigger and no webhook payload: Harness
            // shows such values as null in manual runs.
            Known::Trigger(_) | Known::EventPayload(_) => Some(Value::Null),
            _ => None,
        }
    }

    fn not_yet(&self, path: &[String]) -> Option<String> {
        const EARLIER: &str =
            "a status can only be read of a stage or step that started before this point";
        let current = self.current_stage.as_deref().unwrap_or("the current stage");
        match classify(path)? {
            Known::StageField { stage, field } if field == "status" => {
                let stage = stage.as_deref().unwrap_or(current);
                Some(format!("stage `{stage}` has not run yet ({EARLIER})"))
            }
            Known::StepField {
                stage, step, field, ..
            } if field == "status" || field == "retryCount" => {
                let stage = stage.as_deref().unwrap_or(current);
                Some(format!(
                    "step `{step}` of stage `{stage}` has not started yet ({EARLIER})"
                ))
            }
            _ => None,
        }
    }

    fn is_secret(&self, path: &[String]) -> bool {
        self.secret_paths.contains(&path.join("."))
            || self
                .output_key(path)
                .is_some_and(|key| self.secret_outputs.contains(&key))
    }

    fn secret(&self, scope: SecretScope, id: &str) -> Option<String> {
        self.secrets?.get(scope, id).map(|s| s.expose().to_string())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Num(n)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Num(n as f64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::expr::{eval_condition, parse_condition, parse_template, render};
    use crate::pipeline::secret::Secret;

    #[test]
    fn resolves_every_spelling_of_a_step_output() {
        let mut store = SecretStore::new();
        store.insert("account.tok", Secret::new("tok-value"));
        let mut scope = MapScope::new().with_secrets(&store);
        scope.set("pipeline.variables.env", "prod");
        scope.set("pipeline.sequenceId", 12i64);
        scope.set("pipeline.stages.build.variables.ENV", "qa");
        scope.set_current_stage("build");
        scope.set_step_output("build", "Run_1", "types", "A,B");
        scope.set_step_output("other", "Run_1", "types", "X");
        let cases = [
            ("<+steps.Run_1.output.outputVariables.types>", "A,B"),
            (
                "<+execution.steps.Run_1.output.outputVariables.types>",
                "A,B",
            ),
            (
                "<+execution.steps.G.steps.Run_1.output.outputVariables.types>",
                "A,B",
            ),
            (
                "<+pipeline.stages.other.spec.execution.steps.Run_1.output.outputVariables.types>",
                "X",
            ),
            (
                "<+stages.build.spec.execution.steps.Run_1.output.outputVariables.types>",
                "A,B",
            ),
            ("<+stage.variables.ENV>", "qa"),
            (
                "<+pipeline.variables.env>-<+pipeline.sequenceId>",
                "prod-12",
            ),
            ("<+trigger.branch>", "null"),
            ("<+secrets.getValue('account.tok')>", "tok-value"),
        ];
        for (src, want) in cases {
            let got = render(&parse_template(src).unwrap(), &scope).unwrap();
            assert_eq!(got.text, want, "{src}");
        }
        let missing = render(
            &parse_template("<+steps.Nope.output.outputVariables.v>").unwrap(),
            &scope,
        )
        .unwrap_err();
        assert!(missing.to_string().contains("steps.Nope"), "{missing}");
        scope.set_secret("pipeline.variables.pw", "pw-value");
        scope.set_secret_step_output("build", "Login", "token", "out-token");
        for (src, secret) in [
            ("x <+pipeline.variables.pw.toUpperCase()>", "PW-VALUE"),
            ("<+steps.Login.output.outputVariables.token>", "out-token"),
            ("<+pipeline.variables.env>", ""),
        ] {
            let r = render(&parse_template(src).unwrap(), &scope).unwrap();
            let listed: Vec<&str> = r.secret_values.iter().map(|s| s.expose()).collect();
            assert_eq!(r.has_secret, !secret.is_empty(), "{src}");
            if !secret.is_empty() {
                assert_eq!(listed, vec![secret], "{src}");
            }
        }
        let c = parse_condition("<+trigger.branch> == 'main' || <+stage.variables.ENV> == 'qa'")
            .unwrap();
        assert!(eval_condition(&c, &scope).unwrap());
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;
    use crate::pipeline::secret::Secret;

    #[test]
    fn resolves_values_that_refer_to_each_other() {
        let mut store = SecretStore::new();
        store.insert("pw", Secret::new("hunter22"));
        let mut scope = MapScope::new().with_secrets(&store);
        scope.set_template("pipeline.variables.c", "<+pipeline.variables.b>/c");
        scope.set_template("pipeline.variables.b", "<+pipeline.variables.a>/b");
        scope.set("pipeline.variables.a", "root");
        scope.set_template(
            "stage.variables.url",
            "https://<+pipeline.variables.a>.test/<+pipeline.sequenceId>",
        );
        scope.set("pipeline.sequenceId", 3i64);
        scope.set_template("pipeline.variables.auth", "user:<+secrets.getValue('pw')>");
        scope.resolve_nested().unwrap();
        let get = |p: &str| scope.lookup(&p.split('.').map(String::from).collect::<Vec<_>>());
        assert_eq!(get("pipeline.variables.c"), Some(Value::from("root/b/c")));
        assert_eq!(
            get("stage.variables.url"),
            Some(Value::from("https://root.test/3"))
        );
        let auth: Vec<String> = "pipeline.variables.auth"
            .split('.')
            .map(String::from)
            .collect();
        assert!(scope.is_secret(&auth));
        let r = render(
            &parse_template("x <+pipeline.variables.auth>").unwrap(),
            &scope,
        )
        .unwrap();
        assert!(r.has_secret);
        assert_eq!(r.secret_values[0].expose(), "user:hunter22");
    }

    #[test]
    fn only_templates_are_resolved_and_only_once() {
        let mut store = SecretStore::new();
        store.insert("odd", Secret::new("pa<+ss"));
        let mut scope = MapScope::new().with_secrets(&store);
        // A commit message is text, whatever it holds.
        scope.set("codebase.commitMessage", "use <+pipeline.stages.S.status>");
        scope.set_secret("pipeline.variables.pw", "x<+y");
        scope.set_template("pipeline.variables.v", "<+secrets.getValue('odd')>");
        scope.resolve_nested().unwrap();
        // A second round (the stage's variables) leaves rendered values alone.
        scope.set_template("stage.variables.s", "<+pipeline.variables.v>!");
        scope.resolve_nested().unwrap();
        let get = |p: &str| scope.lookup(&p.split('.').map(String::from).collect::<Vec<_>>());
        assert_eq!(
            get("codebase.commitMessage"),
            Some(Value::from("use <+pipeline.stages.S.status>"))
        );
        assert_eq!(get("pipeline.variables.pw"), Some(Value::from("x<+y")));
        assert_eq!(get("pipeline.variables.v"), Some(Value::from("pa<+ss")));
        assert_eq!(get("stage.variables.s"), Some(Value::from("pa<+ss!")));
    }

    #[test]
    fn reports_cycles_and_bad_values() {
        let mut scope = MapScope::new();
        scope.set_template("pipeline.variables.a", "<+pipeline.variables.b>");
        scope.set_template("pipeline.variables.b", "x<+pipeline.variables.a>");
        scope.set("pipeline.variables.ok", "fine");
        let err = scope.resolve_nested().unwrap_err();
        assert_eq!(
            err.to_string(),
            "values refer to each other in a cycle: pipeline.variables.a, pipeline.variables.b"
        );
        let mut scope = MapScope::new();
        scope.set_template("pipeline.variables.a", "<+pipeline.variables.nope>");
        let err = scope.resolve_nested().unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to resolve the value of `pipeline.variables.a`"
        );
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, "unknown reference `pipeline.variables.nope`");
        assert_eq!(err.offset(), 2);
        let mut scope = MapScope::new();
        scope.set_template("pipeline.variables.a", "<+pipeline.variables.x");
        let err = scope.resolve_nested().unwrap_err();
        assert!(matches!(err, ExprError::ResolveValue { .. }), "{err:?}");
    }
}
