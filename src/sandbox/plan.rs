//! Spec → ordered list of setup operations (bubblewrap's op list). Pure: the
//! applier in `apply.rs` turns each op into kernel calls.
//!
//! Everything a sandbox writes lives on a tmpfs mounted over the stage's
//! `mnt` dir inside the sandbox's own mount namespace: the overlay's upper
//! and work dirs, the new root's mount point and the generated /etc files.
//! It vanishes with the namespace, so teardown deletes nothing on disk and a
//! crash leaves nothing owned by subordinate IDs behind.

use std::path::{Path, PathBuf};

use super::spec::{Rootfs, SandboxSpec};

/// Paths on the sandbox's private scratch tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDirs {
    /// Mount point of the scratch tmpfs (shared by all steps of a stage:
    /// each mounts its own tmpfs there, in its own mount namespace).
    pub scratch: PathBuf,
    /// Mount point of the new root.
    pub root: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Generated `hosts`, `hostname`, `resolv.conf`.
    pub etc: PathBuf,
}

impl StepDirs {
    pub fn under(scratch: &Path) -> StepDirs {
        StepDirs {
            scratch: scratch.to_path_buf(),
            root: scratch.join("root"),
            upper: scratch.join("upper"),
            work: scratch.join("work"),
            etc: scratch.join("etc"),
        }
    }
}

/// One setup operation, applied in order inside the new mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOp {
    /// Stop mount events from propagating back to the host.
    MakeMountsPrivate,
    /// A file with generated contents (on the scratch tmpfs).
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    /// Before the overlay: `dirs` and the generated `etc` files (name,
    /// contents) in `upper`, its `etc` like the one in `lower`.
    SeedUpper {
        lower: PathBuf,
        upper: PathBuf,
        dirs: Vec<String>,
        etc: Vec<(String, String)>,
    },
    /// Overlay of `lower` (read-only) and `upper` at `target`; falls back to
    /// fuse-overlayfs, then to a copy.
    MountOverlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// Bind mount; `recursive` takes submounts along.
    Bind {
        source: PathBuf,
        target: PathBuf,
        recursive: bool,
        read_only: bool,
    },
    /// A bind mount from the spec: `target` is a path inside the sandbox,
    /// resolved under `root` with symlinks followed as if `root` were `/`;
    /// the mount point is created as a file or a directory after the source.
    BindUser {
        source: PathBuf,
        root: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A read-only host directory rebuilt so that a mount point can be made
    /// in it: a tmpfs over `target` with `source`'s mode and owner, holding
    /// read-only binds of `source`'s entries (symlinks copied). Without
    /// `list` (we may not search `source`, so nothing in it is reachable
    /// anyway) the tmpfs stays empty. `mount` is the sandbox path it is for.
    Shadow {
        source: PathBuf,
        target: PathBuf,
        list: bool,
        mount: String,
    },
    /// A spec's [`super::spec::InlineFile`]: `path` resolved under `root`
    /// like a bind target, owned by `owner` (default root), mode 0400.
    WriteInline {
        root: PathBuf,
        path: String,
        contents: String,
        owner: Option<(u32, u32)>,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Touch {
        path: PathBuf,
    },
    Symlink {
        target: String,
        link: PathBuf,
    },
    /// A fresh procfs; falls back to a recursive bind of the host's.
    MountProc {
        target: PathBuf,
    },
    /// A fresh read-only sysfs; falls back to a read-only rbind of the host's.
    MountSys {
        target: PathBuf,
    },
    MountTmpfs {
        target: PathBuf,
        mode: u32,
        flags: u64,
    },
    /// A directory of the scratch tmpfs, made with exactly `mode`, bound at
    /// `target`: as private as a tmpfs of its own, without the superblock
    /// the kernel would make and later tear down (its flags are the
    /// scratch's, nosuid and nodev).
    ScratchDir {
        dir: PathBuf,
        mode: u32,
        target: PathBuf,
    },
    /// A private devpts instance (`newinstance`).
    MountDevpts {
        target: PathBuf,
    },
    /// Hide a path: `/dev/null` over files, an empty read-only tmpfs over
    /// directories; missing paths are skipped. `dir`: what the path is on
    /// a usual kernel, tried first (a stat only when that is wrong).
    Mask {
        path: PathBuf,
        dir: bool,
    },
    /// Bind a path over itself read-only; missing paths are skipped.
    ReadOnly {
        path: PathBuf,
    },
    /// A mount itself read-only, not the mounts below it (the root, or a
    /// shadow, after all mounts below it).
    RootReadOnly {
        root: PathBuf,
    },
    PivotRoot {
        new_root: PathBuf,
    },
    SetHostname {
        name: String,
    },
}

/// Devices bound from the host into the minimal `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// runc's masked paths, each with whether it is a directory.
pub const MASKED_PATHS: [(&str, bool); 11] = [
    ("proc/acpi", true),
    ("proc/asound", true),
    ("proc/kcore", false),
    ("proc/keys", false),
    ("proc/latency_stats", false),
    ("proc/timer_list", false),
    ("proc/timer_stats", false),
    ("proc/sched_debug", false),
    ("proc/scsi", true),
    ("sys/firmware", true),
    ("sys/devices/virtual/powercap", true),
];

/// runc's read-only paths.
pub const READ_ONLY_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

use super::sys::flags::{NODEV, NOSUID};

/// Directories every rootfs gets (something is mounted on each).
pub const MOUNT_POINTS: [&str; 5] = ["proc", "dev", "sys", "tmp", "run"];

/// The generated files in `/etc`.
pub const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// Builds the setup of one sandbox; `resolv_conf` is the generated
/// `/etc/resolv.conf` (read from the host by the caller).
pub fn plan(spec: &SandboxSpec, dirs: &StepDirs, resolv_conf: &str) -> Vec<SetupOp> {
    let root = &dirs.root;
    let mut ops = vec![
        SetupOp::MakeMountsPrivate,
        SetupOp::MountTmpfs {
            target: dirs.scratch.clone(),
            mode: 0o700,
            flags: NOSUID | NODEV,
        },
    ];
    let etc: Vec<(String, String)> = ETC_FILES
        .iter()
        .map(|name| name.to_string())
        .zip([
            super::etc::hosts(spec),
            format!("{}\n", spec.hostname),
            resolv_conf.to_string(),
        ])
        .collect();
    // Where the generated files are, for bind mounts onto the rootfs's.
    let etc_dir = match &spec.rootfs {
        Rootfs::Image { lower } | Rootfs::Dir(lower) => {
            for dir in [root, &dirs.upper, &dirs.work] {
                ops.push(SetupOp::Mkdir {
                    path: dir.clone(),
                    mode: 0o755,
                });
            }
            ops.push(SetupOp::SeedUpper {
                lower: lower.clone(),
                upper: dirs.upper.clone(),
                dirs: MOUNT_POINTS.iter().map(|d| d.to_string()).collect(),
                etc,
            });
            ops.push(SetupOp::MountOverlay {
                lower: lower.clone(),
                upper: dirs.upper.clone(),
                work: dirs.work.clone(),
                target: root.clone(),
            });
            dirs.upper.join("etc")
        }
        Rootfs::HostRoot => {
            for dir in [root, &dirs.etc] {
                ops.push(SetupOp::Mkdir {
                    path: dir.clone(),
                    mode: 0o755,
                });
            }
            for (name, contents) in etc {
                ops.push(SetupOp::WriteFile {
                    path: dirs.etc.join(name),
                    contents,
                });
            }
            ops.extend(super::hostroot::ops(root, Path::new("/"), &spec.mounts));
            for dir in MOUNT_POINTS.iter().chain(&["etc"]) {
                ops.push(SetupOp::Mkdir {
                    path: root.join(dir),
                    mode: 0o755,
                });
            }
            dirs.etc.clone()
        }
    };
    ops.push(SetupOp::MountProc {
        target: root.join("proc"),
    });
    ops.extend(dev_ops(&root.join("dev"), &dirs.scratch));
    for (name, mode) in [("tmp", 0o1777), ("run", 0o755)] {
        ops.push(SetupOp::ScratchDir {
            dir: dirs.scratch.join(name),
            mode,
            target: root.join(name),
        });
    }
    // Files in the overlay's upper dir need no mount, unless the rootfs
    // turns read-only (they stay writable, as Docker's do).
    if spec.rootfs == Rootfs::HostRoot || spec.read_only {
        for file in ETC_FILES {
            let target = root.join("etc").join(file);
            ops.push(SetupOp::Touch {
                path: target.clone(),
            });
            ops.push(SetupOp::Bind {
                source: etc_dir.join(file),
                target,
                recursive: false,
                read_only: false,
            });
        }
    }
    // Masks take precedence over user mounts, so they come after them; but
    // with no user mount in /proc, /proc's masks go first: init joins its
    // network namespace, which a helper may still be making (netns.rs),
    // just before sysfs, and the more work before that, the less it waits.
    let proc_first = !spec
        .mounts
        .iter()
        .any(|m| Path::new(&m.target).starts_with("/proc"));
    if proc_first {
        ops.extend(confinement_ops(root, true));
    }
    // As late as it can be: it shows the network namespace of the process
    // that mounts it, which may still be joining its own (`netns`).
    ops.push(SetupOp::MountSys {
        target: root.join("sys"),
    });
    for mount in &spec.mounts {
        ops.push(SetupOp::BindUser {
            source: mount.source.clone(),
            root: root.clone(),
            target: mount.target.clone(),
            read_only: mount.read_only,
        });
    }
    // Shadows hold their mount points now: read-only like the host dirs
    // they stand for (the mounts on them keep their own flags).
    let shadows: Vec<PathBuf> = ops
        .iter()
        .filter_map(|op| match op {
            SetupOp::Shadow { target, .. } => Some(target.clone()),
            _ => None,
        })
        .collect();
    ops.extend(
        shadows
            .into_iter()
            .map(|root| SetupOp::RootReadOnly { root }),
    );
    for file in &spec.files {
        ops.push(SetupOp::WriteInline {
            root: root.clone(),
            path: file.path.clone(),
            contents: file.contents.clone(),
            owner: spec.user.as_ref().map(|u| (u.uid, u.gid)),
        });
    }
    if !proc_first {
        ops.extend(confinement_ops(root, true));
    }
    ops.extend(confinement_ops(root, false));
    if spec.read_only && spec.rootfs != Rootfs::HostRoot {
        ops.push(SetupOp::RootReadOnly { root: root.clone() });
    }
    ops.push(SetupOp::PivotRoot {
        new_root: root.clone(),
    });
    ops.push(SetupOp::SetHostname {
        name: spec.hostname.clone(),
    });
    ops
}

/// runc's masked and read-only paths: those in /proc, or the others.
fn confinement_ops(root: &Path, in_proc: bool) -> Vec<SetupOp> {
    let masks = MASKED_PATHS
        .iter()
        .filter(|(p, _)| p.starts_with("proc/") == in_proc)
        .map(|&(p, dir)| SetupOp::Mask {
            path: root.join(p),
            dir,
        });
    let read_only = READ_ONLY_PATHS
        .iter()
        .filter(|p| p.starts_with("proc/") == in_proc)
        .map(|p| SetupOp::ReadOnly { path: root.join(p) });
    masks.chain(read_only).collect()
}

/// `/dev` and `/dev/shm` are directories of the scratch tmpfs.
fn dev_ops(dev: &Path, scratch: &Path) -> Vec<SetupOp> {
    let mut ops = vec![SetupOp::ScratchDir {
        dir: scratch.join("dev"),
        mode: 0o755,
        target: dev.to_path_buf(),
    }];
    for name in DEVICES {
        ops.push(SetupOp::Touch {
            path: dev.join(name),
        });
        ops.push(SetupOp::Bind {
            source: Path::new("/dev").join(name),
            target: dev.join(name),
            recursive: false,
            read_only: false,
        });
    }
    ops.push(SetupOp::Mkdir {
        path: dev.join("pts"),
        mode: 0o755,
    });
    ops.push(SetupOp::MountDevpts {
        target: dev.join("pts"),
    });
    ops.push(SetupOp::Symlink {
        target: "pts/ptmx".into(),
        link: dev.join("ptmx"),
    });
    ops.push(SetupOp::Mkdir {
        path: dev.join("shm"),
        mode: 0o755,
    });
    ops.push(SetupOp::ScratchDir {
        dir: scratch.join("shm"),
        mode: 0o1777,
        target: dev.join("shm"),
    });
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        ops.push(SetupOp::Symlink {
            target: target.into(),
            link: dev.join(link),
        });
    }
    ops
}

#[cfg(test)]
mod tests;
