//! Model step + scope -> `ResolvedStep`.

use std::collections::BTreeMap;

use super::error::ResolveError;
use super::render::render;
use super::script::{shell_command, OutputSpec, SCRIPT_DIR};
use super::vars::variable_env;
use super::{ResolvedStep, RunContext, OUTPUT_DIR, WORKSPACE};
use crate::image::reference::Reference;
use crate::pipeline::expr::{MapScope, Scope};
use crate::pipeline::model::{OutputType, PullPolicy, Setting, Stage, Step, StepGroup, Str};
use crate::pipeline::secret::MASK;

/// Collects env entries and the secret values that went into them.
#[derive(Default)]
struct Env {
    vars: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl Env {
    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_string(), value.into());
    }
    fn secret(&mut self, value: &str) {
        if !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_string());
        }
    }
}

pub fn resolve(
    run: &RunContext,
    stage: &Stage,
    values: &MapScope<'_>,
    scope: &dyn Scope,
    step: &Step,
    groups: &[&StepGroup],
    preview: bool,
) -> Result<ResolvedStep, ResolveError> {
    // In a preview, a value still holding a run-time expression is shown
    // as written (image) or left out (numbers) instead of failing.
    let deferred = |text: &str| preview && text.contains("<+");
    let file = &run.pipeline.file;
    let sid = &step.id.value;
    let id = groups
        .iter()
        .map(|g| g.id.as_str())
        .chain([sid.as_str()])
        .collect::<Vec<_>>()
        .join("_");
    let output_key = super::step_key(step, groups);
    let mut env = Env::default();
    let field = |s: &Str, what: &str, env: &mut Env| -> Result<String, ResolveError> {
        let r = render(file, s, &format!("{what} of step `{sid}`"), scope)?;
        for v in &r.secret_values {
            env.secret(v.expose());
        }
        Ok(r.text)
    };

    // Built-in variables first, so the pipeline's own win.
    let opts = &run.options;
    env.set("CI", "true");
    env.set("HARNESS_WORKSPACE", WORKSPACE);
    env.set("HARNESS_STAGE_ID", stage.id.as_str());
    env.set("HARNESS_STEP_ID", sid.as_str());
    env.set("HARNESS_PIPELINE_ID", run.pipeline.id());
    if let Some(org) = &run.pipeline.org_identifier {
        env.set("HARNESS_ORG_ID", org.as_str());
    }
    if let Some(project) = &run.pipeline.project_identifier {
        env.set("HARNESS_PROJECT_ID", project.as_str());
    }
    env.set("HARNESS_BUILD_ID", opts.sequence_id().to_string());
    env.set("DRONE_BUILD_NUMBER", opts.sequence_id().to_string());
    env.set("HARNESS_EXECUTION_ID", opts.execution_id.as_str());
    let iteration = step
        .iteration
        .as_ref()
        .or_else(|| groups.iter().rev().find_map(|g| g.iteration.as_ref()))
        .or(stage.iteration.as_ref());
    if let Some(it) = iteration {
        env.set("HARNESS_NODE_INDEX", it.index.to_string());
        env.set("HARNESS_NODE_TOTAL", it.count.to_string());
    }
    if let Some(cb) = &run.codebase {
        for (k, v) in cb.drone_env() {
            env.set(k, v);
        }
    }
    let mut levels: Vec<(&str, &[crate::pipeline::model::Variable])> = vec![
        ("pipeline.variables", &run.pipeline.variables),
        ("stage.variables", &stage.variables),
    ];
    for g in groups {
        levels.push(("stepGroup.variables", &g.variables));
    }
    for (i, (prefix, vars)) in levels.iter().enumerate() {
        // Nested groups share a prefix: only the innermost value is in the
        // scope, so outer group levels read theirs from their own list.
        let vars: Vec<_> = vars
            .iter()
            .filter(|v| {
                !levels[i + 1..]
                    .iter()
                    .any(|(p, later)| p == prefix && later.iter().any(|l| l.name == v.name))
            })
            .cloned()
            .collect();
        for (name, value, secret) in variable_env(values, prefix, &vars) {
            if secret {
                env.secret(&value);
            }
            env.set(&name, value);
        }
    }
    for (k, v) in &step.spec.env {
        let value = field(v, &format!("envVariables.{}", k.value), &mut env)?;
        env.set(&k.value, value);
    }
    // Per run and stage instance: copies of a looped stage, and runs at
    // the same time, may share a `--workspace DIR`.
    let output_file = format!(
        "{OUTPUT_DIR}/{}/{}/{id}.env",
        opts.execution_id, stage.id.value
    );
    env.set("DRONE_OUTPUT", output_file.as_str());
    env.set("HARNESS_OUTPUT_FILE", output_file.as_str());

    let spec = &step.spec;
    let image = match &spec.image {
        Some(img) => {
            let text = field(img, "image", &mut env)?;
            if deferred(&text) {
                Some(Err(text))
            } else {
                let reference =
                    Reference::parse(text.trim()).map_err(|source| ResolveError::Image {
                        step: sid.clone(),
                        file: file.clone(),
                        line: img.loc.line,
                        source,
                    })?;
                Some(Ok(reference))
            }
        }
        None => None,
    };
    let pull_policy = match (spec.image_pull_policy, &image) {
        (Some(p), _) => p,
        // Harness pulls `:latest` under the default policy.
        (None, Some(Ok(r))) if r.digest().is_none() && r.tag() == Some("latest") => {
            PullPolicy::Always
        }
        (None, _) => PullPolicy::IfNotPresent,
    };
    let connector_ref = match &spec.connector_ref {
        Some(c) => Some(field(c, "connectorRef", &mut env)?),
        None => None,
    };
    let connector = connector_ref
        .as_ref()
        .filter(|c| run.connectors.contains_key(c.as_str()) || connector_known(run, c))
        .cloned();

    let outputs: Vec<OutputSpec> = spec
        .output_variables
        .iter()
        .map(|o| OutputSpec {
            name: o.name.value.clone(),
            source: o
                .value
                .as_ref()
                .map_or(o.name.value.clone(), |v| v.value.clone()),
        })
        .collect();
    let mut script = None;
    let argv = if !spec.entrypoint.is_empty() {
        let mut argv = Vec::new();
        for (i, e) in spec.entrypoint.iter().enumerate() {
            argv.push(field(e, &format!("entrypoint[{i}]"), &mut env)?);
        }
        Some(argv)
    } else if let Some(cmd) = &spec.command {
        let text = field(cmd, "command", &mut env)?;
        let (argv, file) = shell_command(spec.shell, &text, &outputs, SCRIPT_DIR);
        script = Some(file);
        Some(argv)
    } else {
        None
    };

    let number =
        |s: &Setting<u64>, what: &'static str, parse: fn(&str) -> Option<u64>, env: &mut Env| {
            match s {
                Setting::Value(v) => Ok(Some(*v)),
                Setting::Expr(e) => {
                    let text = field(e, what, env)?;
                    if deferred(&text) {
                        return Ok(None);
                    }
                    parse(text.trim())
                        .map(Some)
                        .ok_or_else(|| bad(what, sid, &text, "a valid quantity", file, e, env))
                }
            }
        };
    let mut ports = Vec::new();
    for b in &spec.port_bindings {
        let port = |s: &Setting<u16>, env: &mut Env| -> Result<Option<u16>, ResolveError> {
            match s {
                Setting::Value(v) => Ok(Some(*v)),
                Setting::Expr(e) => {
                    let text = field(e, "portBindings", env)?;
                    if deferred(&text) {
                        return Ok(None);
                    }
                    text.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .map(Some)
                        .ok_or_else(|| {
                            bad(
                                "a port",
                                sid,
                                &text,
                                "a port number (1-65535)",
                                file,
                                e,
                                env,
                            )
                        })
                }
            }
        };
        let host = port(&b.host, &mut env)?;
        let container = port(&b.container, &mut env)?;
        if let (Some(h), Some(c)) = (host, container) {
            ports.push((h, c));
        }
    }
    let privileged = match &spec.privileged {
        None => false,
        Some(Setting::Value(b)) => *b,
        Some(Setting::Expr(e)) => {
            let text = field(e, "privileged", &mut env)?;
            match text.trim() {
                "true" => true,
                "false" => false,
                _ if deferred(&text) => false,
                other => {
                    return Err(bad(
                        "privileged",
                        sid,
                        other,
                        "true or false",
                        file,
                        e,
                        &env,
                    ))
                }
            }
        }
    };
    let run_as_user = match &spec.run_as_user {
        None => None,
        Some(Setting::Value(u)) => Some(*u),
        Some(Setting::Expr(e)) => {
            let text = field(e, "runAsUser", &mut env)?;
            if deferred(&text) {
                None
            } else {
                Some(
                    text.trim()
                        .parse::<u32>()
                        .map_err(|_| bad("runAsUser", sid, &text, "a user id", file, e, &env))?,
                )
            }
        }
    };
    let memory_bytes = match &spec.limits.memory_bytes {
        Some(s) => number(
            s,
            "the memory limit",
            crate::pipeline::parse_memory,
            &mut env,
        )?,
        None => None,
    };
    let cpu_millis = match &spec.limits.cpu_millis {
        Some(s) => number(s, "the cpu limit", crate::pipeline::parse_cpu, &mut env)?,
        None => None,
    };

    Ok(ResolvedStep {
        id,
        output_key,
        name: step.name.value.clone(),
        kind: step.kind,
        image: image.map(|r| match r {
            Ok(r) => r.to_string(),
            Err(text) => text,
        }),
        pull_policy,
        connector,
        connector_ref,
        argv,
        script,
        env: env.vars.into_iter().collect(),
        ports,
        privileged,
        run_as_user,
        memory_bytes,
        cpu_millis,
        timeout: step.timeout,
        output_variables: spec
            .output_variables
            .iter()
            .map(|o| o.name.value.clone())
            .collect(),
        secret_outputs: spec
            .output_variables
            .iter()
            .filter(|o| o.kind == OutputType::Secret)
            .map(|o| o.name.value.clone())
            .collect(),
        output_file,
        secret_values: env.secrets,
    })
}

fn connector_known(run: &RunContext, c: &str) -> bool {
    let bare = c
        .strip_prefix("account.")
        .or_else(|| c.strip_prefix("org."));
    bare.is_some_and(|b| run.connectors.contains_key(b))
}

/// A rendered value of the wrong kind; a value holding a secret is masked.
fn bad(
    what: &'static str,
    step: &str,
    value: &str,
    expected: &'static str,
    file: &std::path::Path,
    at: &Str,
    env: &Env,
) -> ResolveError {
    let shown = if env.secrets.iter().any(|s| value.contains(s.as_str())) {
        MASK.to_string()
    } else {
        value.to_string()
    };
    ResolveError::BadValue {
        what,
        step: step.to_string(),
        value: shown,
        expected,
        file: file.to_path_buf(),
        line: at.loc.line,
    }
}
