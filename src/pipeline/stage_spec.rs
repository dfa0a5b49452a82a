//! Stage `spec` settings (platform, runtime, infrastructure, shared paths)
//! and the pipeline's codebase: accepted and recorded, since every kind
//! of infrastructure means the local sandbox.

use super::fields::{self, one_of, Fields};
use super::location::{Diagnostics, DocPath};
use super::model::{Codebase, CodebaseBuild, Infrastructure, StageSpec, Str};
use super::yaml::Node;

pub fn codebase(d: &mut Diagnostics, pipeline: &Fields<'_>) -> Option<Codebase> {
    let (props, p) = pipeline.get("properties")?;
    let props = Fields::of(d, props, &p, "`properties`", &["ci"])?;
    let (ci, p) = props.get("ci")?;
    let ci = Fields::of(d, ci, &p, "`properties.ci`", &["codebase"])?;
    let (node, p) = ci.get("codebase")?;
    let known = [
        "connectorRef",
        "repoName",
        "build",
        "depth",
        "prCloneStrategy",
        "sslVerify",
        "lfs",
        "debug",
        "resources",
        "submoduleStrategy",
        "sparseCheckout",
        "cloneDirectory",
        "detectBuildTool",
    ];
    let f = Fields::of(d, node, &p, "`codebase`", &known)?;
    let build = match f.get("build") {
        Some((n, bp)) if n.as_scalar().is_some() => {
            fields::string(d, n, &bp).map(CodebaseBuild::Input)
        }
        Some((n, bp)) => {
            Fields::of(d, n, &bp, "`codebase.build`", &["type", "spec"]).and_then(|b| {
                let kind = b.required(d, "type", "`codebase.build`")?;
                let value = b.get("spec").and_then(|(n, sp)| {
                    let s = Fields::of(
                        d,
                        n,
                        &sp,
                        "`build.spec`",
                        &["branch", "tag", "number", "commitSha"],
                    )?;
                    ["branch", "tag", "number", "commitSha"]
                        .iter()
                        .find_map(|k| s.string(d, k))
                });
                Some(CodebaseBuild::Spec { kind, value })
            })
        }
        None => None,
    };
    Some(Codebase {
        connector_ref: f.string(d, "connectorRef"),
        repo_name: f.string(d, "repoName"),
        build,
        depth: f.string(d, "depth"),
        loc: node.loc,
    })
}

pub fn stage_spec(d: &mut Diagnostics, s: &Fields<'_>) -> StageSpec {
    let clone_codebase = s
        .get("cloneCodebase")
        .and_then(|(n, p)| fields::bool_setting(d, n, &p));
    let (mut platform_os, mut platform_arch) = (None, None);
    if let Some((n, p)) = s.get("platform") {
        if let Some(pf) = Fields::of(d, n, &p, "`platform`", &["os", "arch"]) {
            platform_os = pf.string(d, "os");
            platform_arch = pf.string(d, "arch");
            if let Some(os) = platform_os
                .as_ref()
                .filter(|os| os.value != "Linux" && !os.is_expression())
            {
                d.warn_hint(
                    os.loc,
                    &p.key("os"),
                    format!(
                        "platform os `{}` is ignored: corral runs steps in Linux sandboxes",
                        os.value
                    ),
                    "steps that need Windows or macOS tools will fail",
                );
            }
        }
    }
    let mut infrastructure = Infrastructure::Unspecified;
    if let Some((n, p)) = s.get("runtime") {
        if let Some(rt) = Fields::of(d, n, &p, "`runtime`", &["type", "spec"]) {
            infrastructure = match rt.get("type") {
                Some((n, tp)) => match one_of(
                    d,
                    n,
                    &tp,
                    "runtime type",
                    &[("Cloud", true), ("Docker", false)],
                ) {
                    Some(true) => Infrastructure::Cloud,
                    Some(false) => Infrastructure::Docker,
                    None => Infrastructure::Unspecified,
                },
                None => {
                    d.error(rt.loc, &p, "`runtime` is missing the required field `type`");
                    Infrastructure::Unspecified
                }
            };
        }
    }
    if let Some((n, p)) = s.get("infrastructure") {
        if let Some(infra) = infrastructure_of(d, n, &p) {
            infrastructure = infra;
        }
    }
    let shared_paths = s
        .get("sharedPaths")
        .map(|(n, p)| shared_paths(d, n, &p))
        .unwrap_or_default();
    StageSpec {
        clone_codebase,
        platform_os,
        platform_arch,
        infrastructure,
        shared_paths,
    }
}

fn infrastructure_of(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Infrastructure> {
    let f = Fields::of(
        d,
        node,
        path,
        "`infrastructure`",
        &["type", "spec", "useFromStage"],
    )?;
    if let Some(from) = f.string(d, "useFromStage") {
        return Some(Infrastructure::UseFromStage(from));
    }
    let Some(kind) = f.string(d, "type") else {
        d.warn(
            f.loc,
            path,
            "`infrastructure` has no `type`; corral runs the stage in the local sandbox",
        );
        return None;
    };
    Some(match kind.value.as_str() {
        "KubernetesDirect" => Infrastructure::KubernetesDirect,
        "VM" => Infrastructure::Vm,
        "UseFromStage" => {
            let from = f
                .get("spec")
                .and_then(|(n, p)| Fields::of(d, n, &p, "`infrastructure.spec`", &["useFromStage"]))
                .and_then(|s| s.string(d, "useFromStage"));
            Infrastructure::UseFromStage(from.unwrap_or_else(|| Str::new("", kind.loc)))
        }
        _ => {
            d.warn_hint(
                kind.loc,
                &path.key("type"),
                format!("infrastructure type `{}` is unknown; corral runs the stage in the local sandbox", kind.value),
                "Harness infrastructure types are KubernetesDirect, VM and UseFromStage; `Cloud` belongs under `runtime`",
            );
            Infrastructure::Other(kind)
        }
    })
}

/// `sharedPaths`: absolute directories (or expressions) shared by the
/// steps of a stage or group.
pub fn shared_paths(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<Str> {
    let paths = fields::string_list(d, node, path);
    for (i, p) in paths.iter().enumerate() {
        if !is_absolute(&p.value) && !p.is_expression() {
            d.error_hint(
                p.loc,
                &path.index(i),
                format!("shared path `{}` is not absolute", p.value),
                format!(
                    "write it from the root, e.g. `/{}`",
                    p.value.trim_start_matches("./")
                ),
            );
        }
    }
    paths
}

/// Absolute on Linux, or a Windows drive path (Windows pipelines already
/// get a platform warning).
fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    path.starts_with('/')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
}
