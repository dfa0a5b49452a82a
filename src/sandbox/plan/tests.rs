use super::*;
use crate::sandbox::spec::BindMount;

fn dirs() -> StepDirs {
    StepDirs::under(Path::new("/run/s1"))
}

fn plan(spec: &SandboxSpec, dirs: &StepDirs) -> Vec<SetupOp> {
    super::plan(spec, dirs, "nameserver 192.0.2.1\n")
}

#[test]
fn image_rootfs_starts_with_scratch_then_overlay_and_ends_with_pivot() {
    let spec = SandboxSpec::new(
        Rootfs::Image {
            lower: "/store/img".into(),
        },
        vec!["true".into()],
    );
    let ops = plan(&spec, &dirs());
    let mkdir = |path: &str| SetupOp::Mkdir {
        path: path.into(),
        mode: 0o755,
    };
    assert_eq!(
        ops[..8],
        [
            SetupOp::MakeMountsPrivate,
            SetupOp::MountTmpfs {
                target: "/run/s1".into(),
                mode: 0o700,
                flags: NOSUID | NODEV
            },
            mkdir("/run/s1/root"),
            mkdir("/run/s1/upper"),
            mkdir("/run/s1/work"),
            SetupOp::SeedUpper {
                lower: "/store/img".into(),
                upper: "/run/s1/upper".into(),
                dirs: MOUNT_POINTS.iter().map(|d| d.to_string()).collect(),
                etc: vec![
                    (
                        "hosts".into(),
                        "127.0.0.1\tlocalhost corral\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                            .into()
                    ),
                    ("hostname".into(), "corral\n".into()),
                    ("resolv.conf".into(), "nameserver 192.0.2.1\n".into()),
                ]
            },
            SetupOp::MountOverlay {
                lower: "/store/img".into(),
                upper: "/run/s1/upper".into(),
                work: "/run/s1/work".into(),
                target: "/run/s1/root".into(),
            },
            SetupOp::MountProc {
                target: "/run/s1/root/proc".into(),
            },
        ]
    );
    // Nothing is created or bound through the overlay (/dev is a scratch dir).
    assert!(!ops.iter().any(|op| match op {
        SetupOp::Mkdir { path, .. } | SetupOp::Touch { path } =>
            path.starts_with("/run/s1/root")
                && path != Path::new("/run/s1/root")
                && !path.starts_with("/run/s1/root/dev"),
        SetupOp::Bind { target, .. } => target.starts_with("/run/s1/root/etc"),
        _ => false,
    }));
    assert_eq!(
        ops[ops.len() - 2..],
        [
            SetupOp::PivotRoot {
                new_root: "/run/s1/root".into()
            },
            SetupOp::SetHostname {
                name: "corral".into()
            },
        ]
    );
    assert!(!ops
        .iter()
        .any(|op| matches!(op, SetupOp::RootReadOnly { .. })));
}

#[test]
fn dev_is_minimal_with_shm_1777_and_private_devpts() {
    let ops = dev_ops(Path::new("/r/dev"), Path::new("/s"));
    assert_eq!(ops.len(), 1 + 2 * DEVICES.len() + 5 + 4);
    assert_eq!(
        ops[0],
        SetupOp::ScratchDir {
            dir: "/s/dev".into(),
            mode: 0o755,
            target: "/r/dev".into()
        }
    );
    let shm = ops
        .iter()
        .position(|op| {
            op == &SetupOp::ScratchDir {
                dir: "/s/shm".into(),
                mode: 0o1777,
                target: "/r/dev/shm".into(),
            }
        })
        .expect("a scratch dir for /dev/shm");
    // Its mount point first, inside /dev.
    assert!(
        matches!(&ops[shm - 1], SetupOp::Mkdir { path, .. } if path == Path::new("/r/dev/shm"))
    );
    assert!(ops.contains(&SetupOp::MountDevpts {
        target: "/r/dev/pts".into()
    }));
    assert!(ops.contains(&SetupOp::Bind {
        source: "/dev/urandom".into(),
        target: "/r/dev/urandom".into(),
        recursive: false,
        read_only: false
    }));
}

#[test]
fn user_mounts_masks_and_read_only_root_come_before_pivot() {
    let mut spec = SandboxSpec::new(Rootfs::Dir("/d".into()), vec!["sh".into()]);
    spec.read_only = true;
    spec.hostname = "box".into();
    spec.mounts.push(BindMount {
        source: "/src".into(),
        target: "/work/src".into(),
        read_only: true,
    });
    let ops = plan(&spec, &dirs());
    // A read-only rootfs keeps the generated files writable.
    assert!(ops.contains(&SetupOp::Bind {
        source: "/run/s1/upper/etc/resolv.conf".into(),
        target: "/run/s1/root/etc/resolv.conf".into(),
        recursive: false,
        read_only: false
    }));
    // No user mount in /proc: /proc's masks went before sysfs; the user
    // mount and the masks of /sys come after it.
    let root = Path::new("/run/s1/root");
    let in_proc = |p: &&str| p.starts_with("proc/");
    let mut want_proc: Vec<_> = MASKED_PATHS
        .iter()
        .filter(|(p, _)| in_proc(p))
        .map(|&(p, dir)| SetupOp::Mask {
            path: root.join(p),
            dir,
        })
        .collect();
    want_proc.extend(
        READ_ONLY_PATHS
            .iter()
            .map(|p| SetupOp::ReadOnly { path: root.join(p) }),
    );
    let sys = ops
        .iter()
        .position(|op| matches!(op, SetupOp::MountSys { .. }))
        .unwrap();
    assert_eq!(ops[sys - want_proc.len()..sys], want_proc);
    let mut want = vec![
        SetupOp::MountSys {
            target: root.join("sys"),
        },
        SetupOp::BindUser {
            source: "/src".into(),
            root: root.into(),
            target: "/work/src".into(),
            read_only: true,
        },
    ];
    want.extend(
        MASKED_PATHS
            .iter()
            .filter(|(p, _)| !in_proc(p))
            .map(|&(p, dir)| SetupOp::Mask {
                path: root.join(p),
                dir,
            }),
    );
    want.push(SetupOp::RootReadOnly { root: root.into() });
    want.push(SetupOp::PivotRoot {
        new_root: root.into(),
    });
    want.push(SetupOp::SetHostname { name: "box".into() });
    assert_eq!(ops[sys..], want);
}

#[test]
fn a_user_mount_in_proc_is_masked_all_the_same() {
    let mut spec = SandboxSpec::new(Rootfs::Dir("/d".into()), vec!["sh".into()]);
    spec.mounts.push(BindMount {
        source: "/src".into(),
        target: "/proc/keys".into(),
        read_only: false,
    });
    let ops = plan(&spec, &dirs());
    let position = |want: &SetupOp| ops.iter().position(|op| op == want).unwrap();
    let user = position(&SetupOp::BindUser {
        source: "/src".into(),
        root: "/run/s1/root".into(),
        target: "/proc/keys".into(),
        read_only: false,
    });
    let mask = position(&SetupOp::Mask {
        path: "/run/s1/root/proc/keys".into(),
        dir: false,
    });
    assert!(mask > user, "the mask must come after the user's mount");
}

#[test]
fn host_root_is_a_read_only_rbind_with_private_tmp() {
    let spec = SandboxSpec::new(Rootfs::HostRoot, vec!["sh".into()]);
    let ops = plan(&spec, &dirs());
    assert!(ops.contains(&SetupOp::Bind {
        source: "/usr".into(),
        target: "/run/s1/root/usr".into(),
        recursive: true,
        read_only: true
    }));
    assert!(!ops
        .iter()
        .any(|op| matches!(op, SetupOp::Bind { source, .. } if source == Path::new("/"))));
    assert!(ops.contains(&SetupOp::ScratchDir {
        dir: "/run/s1/tmp".into(),
        mode: 0o1777,
        target: "/run/s1/root/tmp".into(),
    }));
    assert!(ops.contains(&SetupOp::Bind {
        source: "/run/s1/etc/hosts".into(),
        target: "/run/s1/root/etc/hosts".into(),
        recursive: false,
        read_only: false
    }));
}
