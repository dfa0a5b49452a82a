//! The host's root as a sandbox rootfs: a tmpfs holding read-only binds of
//! the host's top-level entries, so the host stays read-only while mount
//! points the host lacks (the workspace at `/harness`) can be created.
//!
//! A mount point below a host directory that exists (`/root/.m2`,
//! `/var/cache/x`) cannot be created in its read-only bind. For each such
//! mount the deepest host directory on its path is *shadowed*: a tmpfs over
//! it holding read-only binds of its entries, in which the missing rest of
//! the path can be made (what `bwrap --tmpfs DIR` plus a bind per entry
//! would do). Only mounts that need it cost mounts: none in the common case.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::apply::resolve_in_root;
use super::plan::{SetupOp, MOUNT_POINTS};
use super::spec::BindMount;
use super::sys::flags::{NODEV, NOSUID};
use super::sys::{read_entries, DirEntry, EntryKind};

/// The setup of a host-root sandbox at `root` from the host's `host` dir
/// (`/`), ready for `mounts` to be bound into it.
pub fn ops(root: &Path, host: &Path, mounts: &[BindMount]) -> Vec<SetupOp> {
    let mut ops = vec![SetupOp::MountTmpfs {
        target: root.to_path_buf(),
        mode: 0o755,
        flags: NOSUID | NODEV,
    }];
    for entry in read_entries(host).unwrap_or_default() {
        // Made fresh for every sandbox.
        if MOUNT_POINTS.iter().any(|n| entry.name == *n) {
            continue;
        }
        ops.extend(entry_ops(host, root, &entry));
    }
    let mut shadows: Vec<(PathBuf, bool, &str)> = Vec::new();
    for mount in mounts {
        if let Some((dir, searchable)) = dir_to_shadow(host, &mount.target) {
            if !shadows.iter().any(|(d, ..)| *d == dir) {
                shadows.push((dir, searchable, &mount.target));
            }
        }
    }
    // A shadow inside another one goes on top of the bind the outer made.
    shadows.sort_by_key(|(dir, ..)| dir.components().count());
    for (dir, searchable, mount) in shadows {
        let rel = dir.strip_prefix(host).unwrap_or(&dir);
        ops.push(SetupOp::Shadow {
            source: dir.clone(),
            target: root.join(rel),
            list: searchable,
            mount: mount.to_string(),
        });
    }
    ops
}

/// What recreates `entry` of `source_dir` in `target_dir`: a copied
/// symlink, or a read-only bind (recursive for directories) on a new mount
/// point.
pub fn entry_ops(source_dir: &Path, target_dir: &Path, entry: &DirEntry) -> Vec<SetupOp> {
    let source = source_dir.join(&entry.name);
    let target = target_dir.join(&entry.name);
    match &entry.kind {
        EntryKind::Symlink(link) => vec![SetupOp::Symlink {
            target: link.to_string_lossy().into_owned(),
            link: target,
        }],
        EntryKind::Dir => vec![
            SetupOp::Mkdir {
                path: target.clone(),
                mode: 0o755,
            },
            SetupOp::Bind {
                source,
                target,
                recursive: true,
                read_only: true,
            },
        ],
        EntryKind::File => vec![
            SetupOp::Touch {
                path: target.clone(),
            },
            SetupOp::Bind {
                source,
                target,
                recursive: false,
                read_only: true,
            },
        ],
    }
}

/// The host directory to shadow so that the mount point `target` (a
/// sandbox path) can be created, and whether we may search it; `None` when
/// nothing needs shadowing: the target exists already (a mount goes on any
/// existing path), or its missing part starts in a writable place (the
/// root's own tmpfs, `/tmp`, `/run`). A path the kernel will refuse
/// anyway (a file on the way, `/proc`) is left to fail at the mount with
/// its own error.
fn dir_to_shadow(host: &Path, target: &str) -> Option<(PathBuf, bool)> {
    let resolved = resolve_in_root(host, target, |p| std::fs::read_link(p).ok());
    let rel = resolved.strip_prefix(host).ok()?;
    let first = rel.components().next()?;
    if MOUNT_POINTS
        .iter()
        .any(|n| first == Component::Normal(std::ffi::OsStr::new(n)))
    {
        return None;
    }
    let mut dir = host.to_path_buf();
    for comp in rel.components() {
        let next = dir.join(comp);
        match next.symlink_metadata() {
            Ok(meta) if meta.is_dir() => dir = next,
            Ok(_) => return None,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return (dir != host).then_some((dir, true));
            }
            // Not searchable: nothing below it is reachable for us.
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                return (dir != host).then_some((dir, false));
            }
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(target: &str) -> BindMount {
        BindMount {
            source: "/src".into(),
            target: target.into(),
            read_only: false,
        }
    }

    fn shadows(ops: &[SetupOp]) -> Vec<(PathBuf, PathBuf, bool)> {
        ops.iter()
            .filter_map(|op| match op {
                SetupOp::Shadow {
                    source,
                    target,
                    list,
                    ..
                } => Some((source.clone(), target.clone(), *list)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_mounts_below_existing_read_only_dirs_shadow_their_deepest_dir() {
        let host = tempfile::tempdir().unwrap();
        let h = host.path();
        for dir in ["var/cache/apt", "root", "usr/lib", "tmp"] {
            std::fs::create_dir_all(h.join(dir)).unwrap();
        }
        std::fs::write(h.join("usr/lib/file"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", h.join("lib")).unwrap();
        let root = Path::new("/r");
        let ops = ops(
            root,
            h,
            &[
                mount("/harness"),             // top level, missing: root tmpfs
                mount("/var/cache/x"),         // missing below /var/cache
                mount("/var/cache/y/deeper"),  // same dir, shadowed once
                mount("/var/cache/apt"),       // exists: mounted over
                mount("/root/.m2"),            // missing below /root
                mount("/lib/new"),             // through the symlink
                mount("/tmp/x"),               // fresh tmpfs
                mount("/usr/lib/file/x"),      // a file on the way: fails later
                mount("/var/../root/.gradle"), // same as /root
            ],
        );
        assert_eq!(
            shadows(&ops),
            [
                (h.join("root"), root.join("root"), true),
                (h.join("var/cache"), root.join("var/cache"), true),
                (h.join("usr/lib"), root.join("usr/lib"), true),
            ]
        );
        // Top-level entries come first (the shadows go on their binds).
        let first_shadow = ops
            .iter()
            .position(|op| matches!(op, SetupOp::Shadow { .. }))
            .unwrap();
        assert!(ops[first_shadow..]
            .iter()
            .all(|op| matches!(op, SetupOp::Shadow { .. })));
        assert!(ops.contains(&SetupOp::Symlink {
            target: "usr/lib".into(),
            link: root.join("lib")
        }));
        assert!(!ops.iter().any(|op| matches!(
            op,
            SetupOp::Mkdir { path, .. } if path == &root.join("tmp")
        )));
    }

    #[test]
    fn no_mounts_no_shadows() {
        let ops = ops(Path::new("/r"), Path::new("/"), &[mount("/harness")]);
        assert!(shadows(&ops).is_empty());
        assert!(ops.contains(&SetupOp::Bind {
            source: "/usr".into(),
            target: "/r/usr".into(),
            recursive: true,
            read_only: true,
        }));
    }

    #[test]
    fn a_dir_we_may_not_search_is_shadowed_empty() {
        if rustix::process::geteuid().is_root() {
            // The suite's unprivileged passes run it.
            eprintln!(
                "SKIP a_dir_we_may_not_search_is_shadowed_empty: root searches any directory"
            );
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let host = tempfile::tempdir().unwrap();
        let closed = host.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ops = ops(Path::new("/r"), host.path(), &[mount("/closed/.m2")]);
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(shadows(&ops), [(closed, "/r/closed".into(), false)]);
    }
}
