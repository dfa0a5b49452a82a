//! Before a stage's first step: its images pulled (stopped by Ctrl-C or a
//! timeout), its published ports checked, its sandbox stage started. What
//! goes wrong here fails the stage with a reason saying what to do.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::cancel::Deadline;
use super::pull::{PullError, Stop, Wanted};
use super::resolve::StageContext;
use super::stage::{all_steps, RunShared};
use crate::image::Image;
use crate::sandbox::{self, NetworkMode, PortForward, StageSpec};

/// Why a stage did not get to its first step.
pub(super) enum NotStarted {
    Failed(String),
    TimedOut(String),
    Interrupted(String),
}

/// What a stage has once it can run steps.
pub(super) struct Prepared {
    pub images: BTreeMap<String, Image>,
    pub sandbox: sandbox::Stage,
    pub shared: Vec<(PathBuf, String)>,
    /// Step groups' sharedPaths: (group key, host dir, path in the sandbox).
    pub group_shared: Vec<(String, PathBuf, String)>,
    pub hosts: Vec<(String, String)>,
    /// Mounted at `/harness`.
    pub workspace: PathBuf,
}

/// Pulls the stage's images, checks its published ports and starts its
/// sandbox stage (holder, user + network namespaces, port forwards).
pub(super) fn prepare(
    run: &RunShared<'_>,
    sc: &StageContext<'_>,
    deadline: Option<&Deadline>,
) -> Result<Prepared, NotStarted> {
    let stage = sc.stage();
    let stage_id = stage.id.value.clone();
    let file = sc.run().pipeline().file.clone();
    let mut steps = Vec::new();
    all_steps(&stage.execution, &[], &mut steps);
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut ports: Vec<Published> = Vec::new();
    for (s, groups) in &steps {
        let preview = sc.preview_step(s, groups).map_err(|err| {
            NotStarted::Failed(format!("step {}: {}", s.id.value, crate::error_chain(&err)))
        })?;
        if let Some(image) = &preview.image {
            if !wanted.iter().any(|w| &w.image == image) {
                wanted.push(Wanted {
                    image: image.clone(),
                    step: preview.id.clone(),
                    policy: preview.pull_policy,
                    connector: preview.connector.clone(),
                });
            }
        }
        for &(host_port, container_port) in &preview.ports {
            let forward = PortForward {
                host_port,
                container_port,
            };
            if !ports.iter().any(|p| p.forward == forward) {
                let line = s
                    .spec
                    .port_bindings
                    .iter()
                    .find(|b| b.host.literal() == Some(host_port))
                    .map_or(s.loc.line, |b| b.loc.line);
                ports.push(Published {
                    forward,
                    step: preview.id.clone(),
                    at: format!("{}:{line}", file.display()),
                });
            }
        }
    }
    let network = run.settings.network;
    if network == NetworkMode::Host && !ports.is_empty() {
        tracing::info!("--network host: portBindings are the host's ports already");
        ports.clear();
    }
    // Before the pulls: a bad or busy port should not cost a download.
    check_inside(&ports).map_err(NotStarted::Failed)?;
    check_ports(&ports).map_err(NotStarted::Failed)?;
    let stop = Stop {
        cancel: &run.cancel,
        deadline,
    };
    let images = run
        .settings
        .pull(sc.run().secrets(), &wanted, run.events.clone(), &stop)
        .map_err(|err| match err {
            PullError::Interrupted { signal } => NotStarted::Interrupted(format!(
                "interrupted by signal {signal} while pulling images; no step ran"
            )),
            PullError::TimedOut { what } => NotStarted::TimedOut(format!(
                "{what} was reached while pulling images; no step ran"
            )),
            other => NotStarted::Failed(pull_failure(&other)),
        })?;
    if let Some(signal) = run.cancel.signal() {
        return Err(NotStarted::Interrupted(format!(
            "interrupted by signal {signal} before its first step"
        )));
    }
    // Again: another program may have taken a port during the pulls.
    check_ports(&ports).map_err(NotStarted::Failed)?;
    let shared_root = run.run_dir.join("shared").join(&stage_id);
    let mut shared = Vec::new();
    for (n, path) in stage.spec.shared_paths.iter().enumerate() {
        let dir = shared_root.join(n.to_string());
        shared.push((shared_dir(&dir, &path.value)?, path.value.clone()));
    }
    // A step group's sharedPaths: one directory per group (a looped
    // group's copies are groups of their own), mounted in its steps only.
    let mut group_shared = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (_, groups) in &steps {
        for depth in 1..=groups.len() {
            let key = super::step::group_key(&groups[..depth]);
            if !seen.insert(key.clone()) {
                continue;
            }
            for (n, path) in groups[depth - 1].shared_paths.iter().enumerate() {
                let dir = shared_root.join(format!("group-{key}")).join(n.to_string());
                let dir = shared_dir(&dir, &path.value)?;
                group_shared.push((key.clone(), dir, path.value.clone()));
            }
        }
    }
    let workspace = run.workspaces.prepare(sc).map_err(|err| {
        NotStarted::Failed(format!(
            "cannot make its workspace: {}",
            crate::error_chain(&err)
        ))
    })?;
    let hosts = sc
        .step_hosts()
        .into_iter()
        .map(|(name, ip)| (name, ip.to_string()))
        .collect();
    let spec = StageSpec {
        network,
        ports: ports.iter().map(|p| p.forward).collect(),
        run_dir: sandbox::new_run_dir(&run.settings.store_dir.join("run"), &stage_id),
        exe: run.settings.exe.clone(),
    };
    let sandbox = sandbox::Stage::start(spec).map_err(|err| {
        // Another stage (or program) may have taken a port since the check.
        if let Err(busy) = check_ports(&ports) {
            return NotStarted::Failed(busy);
        }
        let chain = crate::error_chain(&err);
        if chain.contains("already in use") {
            // Taken and freed again in between: name the bindings, not the
            // launcher's own advice (which is `corral exec`'s `-p`).
            let list: Vec<String> = ports
                .iter()
                .map(|p| format!("{} (step {}, {})", p.forward.host_port, p.step, p.at))
                .collect();
            return NotStarted::Failed(format!(
                "a host port of its portBindings was taken while the stage started: {}; run again or change the host ports",
                list.join(", ")
            ));
        }
        NotStarted::Failed(format!(
            "failed to start its sandbox: {}; `corral info` shows what this host allows",
            crate::error_chain(&err)
        ))
    })?;
    Ok(Prepared {
        images,
        sandbox,
        shared,
        group_shared,
        hosts,
        workspace,
    })
}

/// Creates the host directory `dir` behind the sharedPath `path`, open to
/// whatever user each step runs as (it is inside the 0700 store).
fn shared_dir(dir: &std::path::Path, path: &str) -> Result<PathBuf, NotStarted> {
    std::fs::create_dir_all(dir).map_err(|err| {
        NotStarted::Failed(format!(
            "cannot create the directory {} for sharedPath {path}: {err}",
            dir.display()
        ))
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|err| {
        NotStarted::Failed(format!(
            "cannot open up the directory {} for sharedPath {path}: {err}",
            dir.display()
        ))
    })?;
    Ok(dir.to_path_buf())
}

/// A host port a step publishes, and where its binding is written.
struct Published {
    forward: PortForward,
    step: String,
    /// `file:line` of the binding.
    at: String,
}

/// A busy or forbidden host port is an error before anything starts,
/// naming the step and its `portBindings` line.
fn check_ports(ports: &[Published]) -> Result<(), String> {
    for p in ports {
        let port = p.forward.host_port;
        if let Err(err) = std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)) {
            let why = match err.kind() {
                std::io::ErrorKind::AddrInUse => "which is already in use; stop what listens there or change the host port (the key) of that binding".to_string(),
                std::io::ErrorKind::PermissionDenied => format!(
                    "which this user may not bind (ports below {} need privileges, see sysctl net.ipv4.ip_unprivileged_port_start); pick a higher host port",
                    unprivileged_port_start()
                ),
                _ => format!("which cannot be bound ({err})"),
            };
            return Err(format!(
                "step {}: portBindings at {} publish host port {port} (to container port {}), {why}",
                p.step, p.at, p.forward.container_port
            ));
        }
    }
    Ok(())
}

/// Inside the stage a host port that differs from its container port is
/// held by the forwarder (on loopback, for steps on the host's root), so
/// no binding may use it as its container port: that service could not
/// listen. Found here rather than as EADDRINUSE in a service's log.
fn check_inside(ports: &[Published]) -> Result<(), String> {
    for held in ports
        .iter()
        .filter(|p| p.forward.host_port != p.forward.container_port)
    {
        let port = held.forward.host_port;
        if let Some(user) = ports.iter().find(|p| p.forward.container_port == port) {
            return Err(format!(
                "step {}: portBindings at {} map host port {} to container port {port}, but inside the stage port {port} is taken: step {} publishes host port {port} (at {}) and corral forwards 127.0.0.1:{port} to container port {} there, for steps that run on the host; change one of the ports",
                user.step, user.at, user.forward.host_port, held.step, held.at, held.forward.container_port
            ));
        }
    }
    Ok(())
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// A failed pull: what failed and what to do about it.
pub(super) fn pull_failure(err: &PullError) -> String {
    let chain = crate::error_chain(err);
    let mut source: Option<&dyn std::error::Error> = Some(err);
    let mut offline_or_never = false;
    while let Some(e) = source {
        if let Some(image_err) = e.downcast_ref::<crate::image::ImageError>() {
            offline_or_never |= matches!(
                image_err,
                crate::image::ImageError::Offline { .. }
                    | crate::image::ImageError::NotPresent { .. }
            );
        }
        source = e.source();
    }
    // Advice about references and registries helps none of these.
    let no_advice = matches!(
        err,
        PullError::ConnectorSecret { .. }
            | PullError::Interrupted { .. }
            | PullError::TimedOut { .. }
    );
    if offline_or_never || no_advice {
        chain
    } else {
        format!("{chain}; check the image reference and the registry (--registry-mirror, --insecure-registry), or import the image with `corral import`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_pull_gets_no_registry_advice() {
        for err in [
            PullError::Interrupted { signal: 2 },
            PullError::TimedOut {
                what: "the stage's timeout of 1s".to_string(),
            },
        ] {
            let message = pull_failure(&err);
            assert_eq!(message, err.to_string());
            assert!(!message.contains("corral import"), "{message}");
        }
    }
}
