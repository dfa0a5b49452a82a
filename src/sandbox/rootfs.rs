//! The writable rootfs over an image: overlayfs, else fuse-overlayfs, else
//! a private copy. The upper dir is seeded before the mount with the mount
//! points and the generated /etc files, so setup never writes through the
//! overlay (each such write copies a directory up and costs a mount).

use std::path::Path;

use super::apply::{at, ApplyError};
use super::sys::flags::{BIND, REC};
use super::sys::Sys;

/// Puts `dirs` (mount points) and `etc` (name, contents) into `upper`, as
/// they should appear in the rootfs over `lower`. The upper `etc` takes the
/// mode and owner of the image's, which it replaces in the merged view.
pub(crate) fn seed_upper(
    sys: &mut dyn Sys,
    lower: &Path,
    upper: &Path,
    dirs: &[String],
    etc: &[(String, String)],
) -> Result<(), ApplyError> {
    for dir in dirs {
        // A directory of the image's serves as it is: a lookup in the
        // overlay then finds one layer, not two to merge (and a stat costs
        // less than a mkdir).
        if sys
            .stat(&lower.join(dir), false)
            .is_some_and(|st| st.is_dir)
        {
            continue;
        }
        let path = upper.join(dir);
        sys.mkdir_all(&path, 0o755)
            .map_err(at("create directory", &path))?;
    }
    let lower_etc = lower.join("etc");
    let (mode, owner) = match sys.stat(&lower_etc, false) {
        None => (0o755, None),
        Some(st) if st.is_dir => (st.mode, Some((st.uid, st.gid)).filter(|o| *o != (0, 0))),
        // A directory here would hide the image's /etc behind it.
        Some(_) => return Err(ApplyError::EtcNotADirectory { path: lower_etc }),
    };
    let upper_etc = upper.join("etc");
    sys.mkdir_all(&upper_etc, mode)
        .map_err(at("create directory", &upper_etc))?;
    // mkdir's mode went through the umask; an unmapped owner stays ours.
    if sys.set_attrs(&upper_etc, mode, owner).is_err() {
        sys.set_attrs(&upper_etc, mode, None)
            .map_err(at("set the mode of", &upper_etc))?;
    }
    for (name, contents) in etc {
        let path = upper_etc.join(name);
        sys.write_file(&path, contents)
            .map_err(at("write", &path))?;
    }
    Ok(())
}

/// How the writable rootfs is made, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootfsMethod {
    Overlay,
    FuseOverlayfs,
    Copy,
}

impl RootfsMethod {
    pub fn name(self) -> &'static str {
        match self {
            RootfsMethod::Overlay => "overlay",
            RootfsMethod::FuseOverlayfs => "fuse-overlayfs",
            RootfsMethod::Copy => "copy",
        }
    }
}

/// `$CORRAL_ROOTFS` (`overlay`, `fuse-overlayfs` or `copy`): the method to
/// start from, skipping the ones before it (to use or test a fallback).
pub fn forced_method() -> Option<RootfsMethod> {
    match std::env::var("CORRAL_ROOTFS").ok()?.as_str() {
        "overlay" => Some(RootfsMethod::Overlay),
        "fuse-overlayfs" => Some(RootfsMethod::FuseOverlayfs),
        "copy" => Some(RootfsMethod::Copy),
        _ => None,
    }
}

/// Mounts `lower` (read-only) under the seeded `upper` at `target`, by the
/// first method from `first` on that works.
pub(crate) fn mount_overlay(
    sys: &mut dyn Sys,
    lower: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
    first: RootfsMethod,
) -> Result<(), ApplyError> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(lower),
        escape(upper),
        escape(work)
    );
    // Inside a user namespace overlay keeps its own xattrs in user.*.
    // `volatile` skips syncing the upper fs, which otherwise makes the
    // unmount at sandbox exit wait for a journal flush (tens of ms); the
    // upper dir is thrown away anyway. Older kernels lack both options.
    let skipped = || std::io::Error::other(format!("skipped: CORRAL_ROOTFS={}", first.name()));
    let native = if first > RootfsMethod::Overlay {
        Err(skipped())
    } else {
        sys.mount(
            "overlay",
            target,
            "overlay",
            0,
            &format!("{options},userxattr,volatile"),
        )
        .or_else(|_| {
            sys.mount(
                "overlay",
                target,
                "overlay",
                0,
                &format!("{options},userxattr"),
            )
        })
        .or_else(|_| sys.mount("overlay", target, "overlay", 0, &options))
    };
    let err = match native {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    if first <= RootfsMethod::FuseOverlayfs {
        // The daemon must not have the sandbox's root as its own: pivot_root
        // would hand it the FUSE mount it serves, and its first absolute
        // path (/proc/self/fd/...) would wait on itself. So it runs in a
        // bind of the host's tree, mounts there, and we bind that mount.
        let host = upper.with_file_name("host");
        let mounted_in_host = host.join(target.strip_prefix("/").unwrap_or(target));
        let fuse = sys
            .mkdir_all(&host, 0o755)
            .and_then(|()| sys.mount("/", &host, "", BIND | REC, ""))
            .and_then(|()| {
                sys.run_in(
                    &host,
                    "fuse-overlayfs",
                    &[
                        "-o".to_string(),
                        options.clone(),
                        target.to_string_lossy().into_owned(),
                    ],
                )
            })
            .and_then(|()| sys.mount(&mounted_in_host.to_string_lossy(), target, "", BIND, ""));
        if fuse.is_ok() {
            return Ok(());
        }
    }
    // Last resort: a private copy of the lower tree, the seeded upper on top.
    let copy = upper.with_file_name("copy");
    let cp = |sys: &mut dyn Sys, from: &Path| {
        sys.run(
            "cp",
            &[
                "-a".to_string(),
                format!("{}/.", from.display()),
                copy.to_string_lossy().into_owned(),
            ],
        )
    };
    let copied = sys
        .mkdir_all(&copy, 0o755)
        .and_then(|()| cp(sys, lower))
        .and_then(|()| cp(sys, upper))
        .and_then(|()| sys.mount(&copy.to_string_lossy(), target, "", BIND, ""));
    copied.map_err(|_| ApplyError::MountRootfs {
        lower: lower.to_path_buf(),
        source: err,
    })
}

/// overlayfs splits options on `,` and lower dirs on `:`.
fn escape(path: &Path) -> String {
    path.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::sys::{Call, RecordingSys};

    fn overlay(sys: &mut RecordingSys) -> Result<(), ApplyError> {
        overlay_from(sys, RootfsMethod::Overlay)
    }

    fn overlay_from(sys: &mut RecordingSys, first: RootfsMethod) -> Result<(), ApplyError> {
        mount_overlay(
            sys,
            Path::new("/l"),
            Path::new("/s/upper"),
            Path::new("/s/work"),
            Path::new("/t"),
            first,
        )
    }

    #[test]
    fn a_forced_method_skips_the_ones_before_it() {
        let mut sys = RecordingSys::default();
        overlay_from(&mut sys, RootfsMethod::FuseOverlayfs).unwrap();
        assert!(
            matches!(&sys.calls[2], Call::RunIn { program, .. } if program == "fuse-overlayfs")
        );
        assert!(!sys
            .calls
            .iter()
            .any(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay")));
        let mut sys = RecordingSys::default();
        overlay_from(&mut sys, RootfsMethod::Copy).unwrap();
        assert!(
            matches!(&sys.calls[0], Call::MkdirAll { path, .. } if path == Path::new("/s/copy"))
        );
        assert!(!sys
            .calls
            .iter()
            .any(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay")));
    }

    const OPTS: &str = "lowerdir=/l,upperdir=/s/upper,workdir=/s/work";

    #[test]
    fn overlay_falls_back_to_fuse_overlayfs() {
        let mut sys = RecordingSys {
            fail_fstypes: vec!["overlay".into()],
            ..Default::default()
        };
        overlay(&mut sys).unwrap();
        let mount = |data: String| Call::Mount {
            source: "overlay".into(),
            target: "/t".into(),
            fstype: "overlay".into(),
            flags: 0,
            data,
        };
        assert_eq!(
            sys.calls,
            vec![
                mount(format!("{OPTS},userxattr,volatile")),
                mount(format!("{OPTS},userxattr")),
                mount(OPTS.to_string()),
                Call::MkdirAll {
                    path: "/s/host".into(),
                    mode: 0o755
                },
                Call::bind("/", "/s/host", BIND | REC),
                Call::RunIn {
                    root: "/s/host".into(),
                    program: "fuse-overlayfs".into(),
                    args: vec!["-o".into(), OPTS.into(), "/t".into()]
                },
                Call::bind("/s/host/t", "/t", BIND),
            ]
        );
    }

    #[test]
    fn copy_fallback_puts_the_seeded_upper_over_a_copy_of_the_image() {
        let mut sys = RecordingSys {
            fail_fstypes: vec!["overlay".into()],
            fail_programs: vec!["fuse-overlayfs".into()],
            ..Default::default()
        };
        overlay(&mut sys).unwrap();
        let cp = |from: &str| Call::Run {
            program: "cp".into(),
            args: vec!["-a".into(), format!("{from}/."), "/s/copy".into()],
        };
        assert_eq!(
            sys.calls[6..],
            [
                Call::MkdirAll {
                    path: "/s/copy".into(),
                    mode: 0o755
                },
                cp("/l"),
                cp("/s/upper"),
                Call::bind("/s/copy", "/t", BIND),
            ]
        );
    }

    #[test]
    fn upper_gets_missing_mount_points_and_etc_files_with_the_image_etc_mode() {
        let mut sys = RecordingSys {
            dirs: vec!["/l/etc".into(), "/l/dev".into()],
            files: vec!["/l/run".into()],
            ..Default::default()
        };
        let etc = [("hosts".to_string(), "127.0.0.1 localhost\n".to_string())];
        seed_upper(
            &mut sys,
            Path::new("/l"),
            Path::new("/u"),
            &["proc".into(), "dev".into(), "run".into()],
            &etc,
        )
        .unwrap();
        // The image's /dev is used as it is; a file where a mount point
        // goes is hidden by a directory.
        assert_eq!(
            sys.calls,
            [
                Call::MkdirAll {
                    path: "/u/proc".into(),
                    mode: 0o755
                },
                Call::MkdirAll {
                    path: "/u/run".into(),
                    mode: 0o755
                },
                Call::MkdirAll {
                    path: "/u/etc".into(),
                    mode: 0o755
                },
                Call::SetAttrs {
                    path: "/u/etc".into(),
                    mode: 0o755,
                    owner: None
                },
                Call::WriteFile {
                    path: "/u/etc/hosts".into(),
                    contents: "127.0.0.1 localhost\n".into()
                },
            ]
        );
    }

    #[test]
    fn an_image_etc_that_is_no_directory_is_an_error() {
        let mut sys = RecordingSys {
            files: vec!["/l/etc".into()],
            ..Default::default()
        };
        let err = seed_upper(&mut sys, Path::new("/l"), Path::new("/u"), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("/l/etc"), "{err}");
    }

    #[test]
    fn overlay_options_escape_commas_and_colons() {
        assert_eq!(escape(Path::new("/a,b:c")), "/a\\,b\\:c");
    }
}
