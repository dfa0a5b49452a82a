//! `corral exec`: one sandbox in a one-step stage, like `docker run --rm`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use corral::cli::{ExecArgs, GlobalArgs, NetworkMode as CliNetwork};
use corral::sandbox::{
    self, BindMount, Limits, NetworkMode, PortForward, Rootfs, SandboxSpec, StageSpec, Step,
    StepStdio,
};

/// The parts of an image config `exec` applies.
#[derive(Debug, Default, Clone)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// An image resolved through the store: its flattened rootfs and config.
pub struct ResolvedImage {
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

/// The one place `exec` reaches the image store: pulled when missing
/// (`--offline` never touches the network), like `docker run`.
fn resolve_image(
    store: &Path,
    image: &str,
    args: &ExecArgs,
    quiet: bool,
) -> anyhow::Result<ResolvedImage> {
    let store = corral::image::Store::open(store)
        .with_context(|| format!("cannot open the store at {}", store.display()))?;
    if let Some(found) = stored_image(&store, image) {
        return Ok(found);
    }
    let options = super::image::registry_options(&args.registry)?;
    let progress = super::image::Reporter::new(quiet);
    let found = corral::image::ensure(
        &store,
        image,
        corral::image::PullPolicy::IfNotPresent,
        &options,
        &progress,
    )
    .with_context(|| format!("cannot get image {image}"))?;
    progress.finish();
    Ok(resolved(found))
}

/// A warm image straight from the store index, as `ensure` would find it
/// first, without its runtime threads and registry client (milliseconds
/// per `corral exec`). `None` sends the caller the full way (pull, errors).
fn stored_image(store: &corral::image::Store, image: &str) -> Option<ResolvedImage> {
    let reference = corral::image::Reference::parse(image).ok()?;
    // Shared, like a pull: prune takes it exclusively.
    let _gc = store.lock("gc", false).ok()?;
    let found = corral::image::Image::stored(store, &reference).ok()??;
    Some(resolved(found))
}

fn resolved(found: corral::image::Image) -> ResolvedImage {
    let config = found.config;
    ResolvedImage {
        rootfs: found.rootfs,
        config: ImageConfig {
            env: config.env,
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            working_dir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
        },
    }
}

pub fn run(global: &GlobalArgs, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let store = super::store_dir(global)?;
    let (rootfs, config) = if args.host_root {
        (Rootfs::HostRoot, ImageConfig::default())
    } else if let Some(dir) = &args.rootfs {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("invalid --rootfs {}", dir.display()))?;
        if !dir.is_dir() {
            bail!("--rootfs {} is not a directory", dir.display());
        }
        (Rootfs::Dir(dir), ImageConfig::default())
    } else {
        let image = args
            .image
            .as_deref()
            .context("an image, --rootfs or --host-root is required")?;
        let resolved = resolve_image(&store, image, &args, global.quiet > 0)?;
        (
            Rootfs::Image {
                lower: resolved.rootfs,
            },
            resolved.config,
        )
    };
    let spec = sandbox_spec(rootfs, &config, &args)?;
    let limits_warnings = sandbox::rlimits::warnings(&spec.limits);
    for warning in limits_warnings {
        eprintln!("warning: {warning}");
    }
    let run_root = store.join("run");
    let exe = sandbox::default_exe();
    if let Err(err) = sandbox::remove_stale(&run_root, &exe) {
        tracing::warn!("could not remove stale sandbox state: {err}");
    }
    let stage_spec = StageSpec {
        network: match args.network {
            CliNetwork::Private => NetworkMode::Private,
            CliNetwork::None => NetworkMode::None,
            CliNetwork::Host => NetworkMode::Host,
        },
        ports: parse_ports(&args.publish)?,
        // Shared by all one-off sandboxes: only a mount point (see run_once).
        run_dir: run_root.join(sandbox::EXEC_MOUNT_POINT),
        exe,
    };
    if stage_spec.network == NetworkMode::Host && !stage_spec.ports.is_empty() {
        bail!("-p needs a private network; with --network host the port is the host's already");
    }
    // Block the signals we forward before any thread or child exists; the
    // children get a clean mask from std::process::Command.
    let signals = SignalFd::new()?;
    // One sandbox needs no stage holder: its own process makes the namespaces.
    let mut step = sandbox::run_once(stage_spec, &spec, StepStdio::Inherit)
        .context("failed to start the sandbox")?;
    let code = wait_forwarding_signals(&mut step, &signals)?;
    if let Some(note) = sandbox::idmap::note_after_failure([code]) {
        eprintln!("corral: note: {note}");
    }
    // Exit now: the sandbox's init tears it down once the step's report
    // pipe closes, which our exit does; and everything else we hold is
    // memory shared copy-on-write with that init, so freeing it piece by
    // piece would only copy pages.
    std::process::exit(code)
}

fn wait_forwarding_signals(step: &mut Step, signals: &SignalFd) -> anyhow::Result<i32> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: step.exit_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if fds[1].revents & libc::POLLIN != 0 {
            // A terminal's ^C already reached the sandbox's process group.
            if let Some((sig, from_tty)) = signals.read() {
                if !from_tty {
                    let _ = step.signal(sig);
                }
            }
        }
        // A pipe whose writer died without a report only hangs up.
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            // Setup failures surface here: run_once does not wait for them.
            let exit = step.wait().context("failed to start the sandbox")?;
            return Ok(exit.code());
        }
    }
}

const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    fn new() -> anyhow::Result<SignalFd> {
        // SAFETY: sigset manipulation and signalfd on valid pointers.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in FORWARDED {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("failed to create a signalfd");
            }
            Ok(SignalFd {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The signal and whether the kernel (a terminal) sent it.
    fn read(&self) -> Option<(i32, bool)> {
        // SAFETY: reading one signalfd_siginfo into a zeroed struct.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            );
            (n == size as isize)
                .then_some((info.ssi_signo as i32, info.ssi_code == libc::SI_KERNEL))
        }
    }
}

fn sandbox_spec(
    rootfs: Rootfs,
    config: &ImageConfig,
    args: &ExecArgs,
) -> anyhow::Result<SandboxSpec> {
    // As `docker run --entrypoint`: the image's Cmd goes with its Entrypoint.
    let (mut argv, cmd) = match &args.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), &[][..]),
        Some(e) => (vec![e.clone()], &[][..]),
        None => (config.entrypoint.clone(), &config.cmd[..]),
    };
    if args.command.is_empty() {
        argv.extend(cmd.iter().cloned());
    } else {
        argv.extend(args.command.iter().cloned());
    }
    if argv.is_empty() {
        bail!("no command given (put it after `--`) and the image has no entrypoint or cmd");
    }
    let mut spec = SandboxSpec::new(rootfs, argv);
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String| {
        env.retain(|(key, _)| *key != k);
        env.push((k, v));
    };
    set("PATH".into(), sandbox::spec::DEFAULT_PATH.into());
    for kv in &config.env {
        if let Some((k, v)) = kv.split_once('=') {
            set(k.into(), v.into());
        }
    }
    set(
        "HOSTNAME".into(),
        args.hostname.clone().unwrap_or_else(|| "corral".into()),
    );
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("failed to read env file {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = parse_env(line)
                .with_context(|| format!("{}:{}: expected K=V", file.display(), n + 1))?;
            set(k, v);
        }
    }
    for kv in &args.env {
        let (k, v) = parse_env(kv).with_context(|| format!("-e {kv}: expected K=V or K"))?;
        set(k, v);
    }
    let exec_user = resolve_user(&config.user, &spec.rootfs, args)?;
    if !env.iter().any(|(k, _)| k == "HOME") {
        let home = exec_user.as_ref().and_then(|u| u.home.clone());
        env.push(("HOME".into(), home.unwrap_or_else(|| "/root".into())));
    }
    spec.env = env;
    spec.user = exec_user.map(|u| u.user);
    spec.cwd = args.workdir.clone().unwrap_or_else(|| {
        if config.working_dir.is_empty() {
            "/".into()
        } else {
            config.working_dir.clone()
        }
    });
    if !spec.cwd.starts_with('/') {
        bail!("-w {}: the working directory must be absolute", spec.cwd);
    }
    spec.hostname = args.hostname.clone().unwrap_or_else(|| "corral".into());
    spec.mounts = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<_>>()?;
    spec.read_only = args.read_only;
    spec.privileged = args.privileged;
    spec.limits = Limits {
        memory_bytes: args.memory.as_deref().map(parse_size).transpose()?,
        cpus: args
            .cpus
            .as_deref()
            .map(|c| {
                c.parse::<f64>()
                    .ok()
                    .filter(|v| *v > 0.0)
                    .with_context(|| format!("--cpus {c}: expected a positive number"))
            })
            .transpose()?,
    };
    Ok(spec)
}

fn parse_env(kv: &str) -> anyhow::Result<(String, String)> {
    match kv.split_once('=') {
        Some(("", _)) => bail!("empty variable name"),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Ok((kv.to_string(), std::env::var(kv).unwrap_or_default())),
    }
}

/// `-u`, else the image's `User`, resolved by name in the rootfs's
/// `/etc/passwd` and `/etc/group`. `None`: root, as the sandbox starts.
fn resolve_user(
    image_user: &str,
    rootfs: &Rootfs,
    args: &ExecArgs,
) -> anyhow::Result<Option<sandbox::user::ExecUser>> {
    if args.user.is_none() && image_user.is_empty() {
        return Ok(None); // no ID-map probe on the hot path
    }
    let image = match (rootfs, &args.image) {
        (Rootfs::HostRoot, _) => "the host".to_string(),
        (Rootfs::Dir(dir), _) => format!("rootfs {}", dir.display()),
        (Rootfs::Image { .. }, Some(image)) => format!("image {image}"),
        (Rootfs::Image { lower }, None) => format!("rootfs {}", lower.display()),
    };
    let (found, warning) = sandbox::user::choose(
        args.user.as_deref(),
        Some(image_user),
        &sandbox::user::etc_root(rootfs),
        &image,
        sandbox::idmap::choose(),
    )?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    Ok(found)
}

fn parse_volume(v: &str) -> anyhow::Result<BindMount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => bail!("-v {v}: expected HOST:CTR or HOST:CTR:ro"),
    };
    if !dst.starts_with('/') {
        bail!("-v {v}: the container path must be absolute");
    }
    let source = std::path::absolute(src).with_context(|| format!("-v {v}: invalid host path"))?;
    if !source.exists() {
        bail!("-v {v}: host path {} does not exist", source.display());
    }
    Ok(BindMount {
        source,
        target: dst.to_string(),
        read_only: ro,
    })
}

fn parse_ports(specs: &[String]) -> anyhow::Result<Vec<PortForward>> {
    specs
        .iter()
        .map(|p| {
            let (h, c) = p
                .split_once(':')
                .with_context(|| format!("-p {p}: expected HOSTPORT:CTRPORT"))?;
            let host_port = h
                .parse()
                .with_context(|| format!("-p {p}: invalid host port"))?;
            let container_port = c
                .trim_end_matches("/tcp")
                .parse()
                .with_context(|| format!("-p {p}: invalid container port"))?;
            Ok(PortForward {
                host_port,
                container_port,
            })
        })
        .collect()
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches('b').chars().last() {
        Some('k') => (&lower[..lower.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (lower.trim_end_matches('b'), 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--memory {s}: expected a size like 512m or 2g"))?;
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_volumes_and_ports_parse() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert_eq!(
            parse_ports(&["8080:80".into()]).unwrap(),
            vec![PortForward {
                host_port: 8080,
                container_port: 80
            }]
        );
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/x:ro").unwrap().read_only);
    }
}
