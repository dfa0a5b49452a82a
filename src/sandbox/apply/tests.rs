use super::*;
use crate::sandbox::sys::{Call, RecordingSys};

#[test]
fn proc_falls_back_to_rbind_and_read_only_binds_use_mount_setattr() {
    let mut sys = RecordingSys {
        fail_fstypes: vec!["proc".into()],
        ..Default::default()
    };
    apply(
        &mut sys,
        &[
            SetupOp::MountProc {
                target: "/r/proc".into(),
            },
            SetupOp::ReadOnly {
                path: "/r/proc/sys".into(),
            },
        ],
    )
    .unwrap();
    assert_eq!(
        sys.calls[1..],
        [
            Call::bind("/proc", "/r/proc", BIND | REC),
            Call::bind("/r/proc/sys", "/r/proc/sys", BIND | REC),
            Call::MakeReadOnly {
                target: "/r/proc/sys".into(),
                recursive: true
            },
        ]
    );
}

/// Mask ops for (path, usually a directory).
fn masks(paths: &[(&str, bool)]) -> Vec<SetupOp> {
    paths
        .iter()
        .map(|&(path, dir)| SetupOp::Mask {
            path: path.into(),
            dir,
        })
        .collect()
}

#[test]
fn masked_dirs_after_the_first_get_a_bind_of_its_empty_tmpfs() {
    let mut sys = RecordingSys {
        dirs: vec!["/r/proc/acpi".into(), "/r/sys/firmware".into()],
        ..Default::default()
    };
    apply(
        &mut sys,
        &masks(&[("/r/proc/acpi", true), ("/r/sys/firmware", true)]),
    )
    .unwrap();
    assert!(matches!(&sys.calls[0], Call::Mount { fstype, flags, .. }
        if fstype == "tmpfs" && flags & RDONLY != 0));
    assert_eq!(
        sys.calls[1..],
        [Call::bind("/r/proc/acpi", "/r/sys/firmware", BIND)]
    );
}

#[test]
fn mask_uses_tmpfs_for_dirs_and_dev_null_for_files() {
    let mut sys = RecordingSys {
        dirs: vec!["/r/proc/acpi".into()],
        files: vec!["/r/proc/kcore".into()],
        missing: vec!["/r/proc/scsi".into()],
        ..Default::default()
    };
    apply(
        &mut sys,
        &masks(&[
            ("/r/proc/acpi", true),
            ("/r/proc/kcore", false),
            ("/r/proc/scsi", true),
        ]),
    )
    .unwrap();
    assert!(matches!(&sys.calls[0], Call::Mount { fstype, .. } if fstype == "tmpfs"));
    assert!(
        matches!(&sys.calls[1], Call::Mount { source, flags, .. } if source == "/dev/null" && *flags == BIND)
    );
    // Nothing to hide: the one attempt failed with ENOENT, and that is fine.
    assert_eq!(sys.calls.len(), 3);
    assert!(
        matches!(&sys.calls[2], Call::Mount { target, .. } if target == Path::new("/r/proc/scsi"))
    );
}

#[test]
fn a_masked_path_of_the_other_kind_is_masked_after_a_stat() {
    // A kernel where the usual directory is a file, and the other way round.
    let mut sys = RecordingSys {
        dirs: vec!["/r/proc/kcore".into()],
        files: vec!["/r/proc/acpi".into()],
        ..Default::default()
    };
    apply(
        &mut sys,
        &masks(&[("/r/proc/acpi", true), ("/r/proc/kcore", false)]),
    )
    .unwrap();
    let mounted: Vec<_> = sys
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Mount { source, target, .. } => Some((source.as_str(), target.to_str().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(
        mounted,
        [
            ("tmpfs", "/r/proc/acpi"),
            ("/dev/null", "/r/proc/acpi"),
            ("/dev/null", "/r/proc/kcore"),
            ("tmpfs", "/r/proc/kcore"),
        ]
    );
}

#[test]
fn bind_targets_resolve_symlinks_inside_the_root() {
    let links = |p: &Path| -> Option<PathBuf> {
        match p.to_str()? {
            "/r/work" => Some("/srv/data".into()),
            "/r/srv/data/up" => Some("../../../../etc".into()),
            "/r/loop" => Some("loop".into()),
            _ => None,
        }
    };
    assert_eq!(
        resolve_in_root(Path::new("/r"), "/work/x", links),
        Path::new("/r/srv/data/x")
    );
    assert_eq!(
        resolve_in_root(Path::new("/r"), "/work/up/passwd", links),
        Path::new("/r/etc/passwd")
    );
    assert_eq!(
        resolve_in_root(Path::new("/r"), "/../../a", links),
        Path::new("/r/a")
    );
    assert_eq!(
        resolve_in_root(Path::new("/r"), "/loop", links),
        Path::new("/r/loop")
    );
}

#[test]
fn a_shadow_is_a_tmpfs_with_read_only_binds_of_the_entries() {
    use crate::sandbox::sys::{DirEntry, EntryKind};
    let entry = |name: &str, kind| DirEntry {
        name: name.into(),
        kind,
    };
    let mut sys = RecordingSys {
        dirs: vec!["/var/cache".into()],
        listings: vec![(
            "/var/cache".into(),
            vec![
                entry("apt", EntryKind::Dir),
                entry("ld.so.cache", EntryKind::File),
                entry("link", EntryKind::Symlink("apt".into())),
            ],
        )],
        ..Default::default()
    };
    let op = SetupOp::Shadow {
        source: "/var/cache".into(),
        target: "/r/var/cache".into(),
        list: true,
        mount: "/var/cache/x".into(),
    };
    apply(&mut sys, &[op]).unwrap();
    assert_eq!(
        sys.calls,
        [
            Call::Mount {
                source: "tmpfs".into(),
                target: "/r/var/cache".into(),
                fstype: "tmpfs".into(),
                flags: NOSUID | NODEV,
                data: "mode=755".into(),
            },
            Call::SetAttrs {
                path: "/r/var/cache".into(),
                mode: 0o755,
                owner: Some((0, 0)),
            },
            Call::MkdirAll {
                path: "/r/var/cache/apt".into(),
                mode: 0o755
            },
            Call::bind("/var/cache/apt", "/r/var/cache/apt", BIND | REC),
            Call::MakeReadOnly {
                target: "/r/var/cache/apt".into(),
                recursive: true
            },
            Call::Touch {
                path: "/r/var/cache/ld.so.cache".into()
            },
            Call::bind("/var/cache/ld.so.cache", "/r/var/cache/ld.so.cache", BIND),
            Call::MakeReadOnly {
                target: "/r/var/cache/ld.so.cache".into(),
                recursive: false
            },
            Call::Symlink {
                target: "apt".into(),
                link: "/r/var/cache/link".into()
            },
        ]
    );
}

#[test]
fn an_unlistable_shadow_names_the_mount_and_the_dir() {
    let mut sys = RecordingSys::default();
    let op = SetupOp::Shadow {
        source: "/home/x".into(),
        target: "/r/home/x".into(),
        list: true,
        mount: "/home/x/.cache/y".into(),
    };
    let err = crate::error_chain(&apply(&mut sys, &[op]).unwrap_err());
    assert!(
        err.starts_with("cannot mount at /home/x/.cache/y in the sandbox: /home/x is read-only here and cannot be listed"),
        "{err}"
    );
    assert!(sys.calls.is_empty());
}

#[test]
fn inline_files_go_to_memory_only_and_belong_to_the_user() {
    let op = |path: &str| SetupOp::WriteInline {
        root: "/r".into(),
        path: path.into(),
        contents: "echo secret".into(),
        owner: Some((1000, 1000)),
    };
    let mut sys = RecordingSys::default();
    apply(&mut sys, &[op("/run/corral/step.sh")]).unwrap();
    assert_eq!(
        sys.calls[1..],
        [
            Call::WriteFile {
                path: "/r/run/corral/step.sh".into(),
                contents: "echo secret".into()
            },
            Call::SetAttrs {
                path: "/r/run/corral/step.sh".into(),
                mode: 0o400,
                owner: Some((1000, 1000))
            },
        ]
    );
    let mut sys = RecordingSys {
        disk_dirs: vec!["/r/run/corral".into()],
        ..Default::default()
    };
    let err = apply(&mut sys, &[op("/run/corral/step.sh")]).unwrap_err();
    assert!(err.to_string().contains("is not a tmpfs"), "{err}");
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::WriteFile { .. })));
}

#[test]
fn a_scratch_dir_gets_its_exact_mode_then_a_plain_bind() {
    let mut sys = RecordingSys::default();
    apply(
        &mut sys,
        &[SetupOp::ScratchDir {
            dir: "/s/tmp".into(),
            mode: 0o1777,
            target: "/r/tmp".into(),
        }],
    )
    .unwrap();
    assert_eq!(
        sys.calls,
        [
            Call::MkdirAll {
                path: "/s/tmp".into(),
                mode: 0o1777
            },
            Call::SetAttrs {
                path: "/s/tmp".into(),
                mode: 0o1777,
                owner: None
            },
            Call::bind("/s/tmp", "/r/tmp", BIND),
        ]
    );
}
