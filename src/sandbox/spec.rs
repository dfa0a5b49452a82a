//! What to run and how: pure data, serialisable so the re-executed child
//! processes receive it as JSON on a pipe.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Network of a stage (all its sandboxes share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NetworkMode {
    /// A new network namespace with `lo` up, plus egress through `pasta` or
    /// `slirp4netns` when installed.
    #[default]
    Private,
    /// A new network namespace with only `lo`.
    None,
    /// The host's network namespace.
    Host,
}

/// A host TCP port published into the stage's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub host_port: u16,
    pub container_port: u16,
}

/// One stage: the user and network namespaces its sandboxes share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub network: NetworkMode,
    pub ports: Vec<PortForward>,
    /// State of this stage (overlay upper dirs, generated /etc files). Created
    /// by [`crate::sandbox::Stage::start`], removed by `shutdown`; must lie
    /// under the store's `run/` so [`crate::sandbox::remove_stale`] finds it
    /// after a crash.
    pub run_dir: PathBuf,
    /// Our own binary, re-executed as `corral __sandbox …`
    /// (default: `$CORRAL_EXE`, else `/proc/self/exe`; see [`default_exe`]).
    pub exe: PathBuf,
}

/// Where the root filesystem of a sandbox comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rootfs {
    /// A flattened image rootfs from the store, used as the read-only lower
    /// layer of an overlay; writes go to a per-sandbox upper dir.
    Image { lower: PathBuf },
    /// A plain directory, used exactly like an image rootfs (never written).
    Dir(PathBuf),
    /// The host's `/`, read-only, with a private `/tmp`.
    HostRoot,
}

/// A host path bind-mounted into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: String,
    pub read_only: bool,
}

/// A file written into the sandbox just before its command starts, after
/// every mount. Its directory (created when missing) must be on a tmpfs
/// (`/run`, `/tmp`), so the contents never reach a disk: a script holding
/// secrets, which in argv every host user could read through `ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineFile {
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Owned by the command's user, mode 0400.
    pub contents: String,
}

/// IDs the command runs as, inside the sandbox's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid among them, as Docker sets).
    pub groups: Vec<u32>,
}

/// Resource limits; see `corral info` for how they are enforced here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
}

/// One sandbox (a step) inside a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: Rootfs,
    /// The command; `argv[0]` is looked up in `PATH` of `env` when it has no `/`.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the sandbox.
    pub cwd: String,
    /// The user inside the sandbox (default root, groups untouched).
    pub user: Option<User>,
    pub hostname: String,
    /// Extra `/etc/hosts` entries: (name, address).
    pub extra_hosts: Vec<(String, String)>,
    pub mounts: Vec<BindMount>,
    pub files: Vec<InlineFile>,
    /// Mount the rootfs read-only.
    pub read_only: bool,
    /// Keep every capability of the stage's user namespace and skip seccomp.
    pub privileged: bool,
    pub limits: Limits,
}

impl SandboxSpec {
    /// A spec with the defaults `docker run` would use for `argv`.
    pub fn new(rootfs: Rootfs, argv: Vec<String>) -> SandboxSpec {
        SandboxSpec {
            rootfs,
            argv,
            env: vec![("PATH".to_string(), DEFAULT_PATH.to_string())],
            cwd: "/".to_string(),
            user: None,
            hostname: "corral".to_string(),
            extra_hosts: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            read_only: false,
            privileged: false,
            limits: Limits::default(),
        }
    }
}

/// `PATH` when neither the image nor the caller sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The binary to re-execute: `$CORRAL_EXE`, else `/proc/self/exe`.
pub fn default_exe() -> PathBuf {
    std::env::var_os("CORRAL_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// How the stage's user namespace maps IDs (decided by the launcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdMapping {
    /// Root: 0→0 over the whole ID space.
    Identity,
    /// The user to 0 and the `/etc/subuid` / `/etc/subgid` ranges from 1.
    SubordinateRange {
        uid: u32,
        gid: u32,
        sub_uid: (u32, u32),
        sub_gid: (u32, u32),
    },
    /// Only the user, as 0, with `setgroups` denied.
    Single { uid: u32, gid: u32 },
}

/// What the `step` child receives on its spec pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRequest {
    pub spec: SandboxSpec,
    /// The holder whose user and network namespaces to join; 0 for a
    /// one-off sandbox that creates its own (see `network` and `ports`).
    pub holder_pid: i32,
    /// The stage's network (with a holder: whether to join its netns).
    pub network: NetworkMode,
    /// Published ports of a one-off sandbox (ignored with a holder).
    pub ports: Vec<PortForward>,
    /// PID of the process that spawned the step (PDEATHSIG race check).
    pub parent_pid: i32,
    /// Where the step mounts its private scratch tmpfs (overlay upper/work,
    /// root mount point, /etc files): the stage's `mnt` dir.
    pub step_dir: PathBuf,
    pub mapping: IdMapping,
}

/// What the `holder` child receives on its control pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HolderRequest {
    pub network: NetworkMode,
    pub ports: Vec<PortForward>,
    pub parent_pid: i32,
}
