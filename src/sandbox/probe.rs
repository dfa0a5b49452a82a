//! What this host allows, for `corral info`: user namespaces and the knobs
//! that forbid them, ID mapping helpers, overlay inside a user namespace
//! (actually tried), egress helpers, /dev/net/tun, cgroup v2 delegation.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::idmap;
use super::spec::IdMapping;

/// One checked fact: what was found, whether it is fine, and the fix.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The resulting choices of corral on this host.
#[derive(Debug, Clone, Serialize)]
pub struct Modes {
    pub id_mapping: String,
    pub rootfs: String,
    pub network: String,
    pub limits: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub modes: Modes,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn check(name: &str, value: impl Into<String>, ok: bool, fix: Option<&str>) -> Check {
    Check {
        name: name.into(),
        value: value.into(),
        ok,
        fix: if ok { None } else { fix.map(str::to_string) },
    }
}

/// Probes the host; `exe` is re-executed to try overlay in a user namespace
/// with a scratch dir under `scratch` (the store, so its filesystem counts).
pub fn probe(exe: &Path, scratch: &Path) -> Report {
    let mut checks = Vec::new();
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    checks.push(check("kernel", kernel, true, None));
    let userns = userns_works();
    checks.push(check(
        "user namespaces",
        if userns { "usable" } else { "refused" },
        userns,
        Some("see the sysctls below"),
    ));
    let max = read_trim("/proc/sys/user/max_user_namespaces").unwrap_or_else(|| "unknown".into());
    checks.push(check(
        "user.max_user_namespaces",
        max.clone(),
        max != "0",
        Some("sysctl -w user.max_user_namespaces=15000"),
    ));
    if let Some(v) = read_trim("/proc/sys/kernel/unprivileged_userns_clone") {
        checks.push(check(
            "kernel.unprivileged_userns_clone",
            v.clone(),
            v != "0",
            Some("sysctl -w kernel.unprivileged_userns_clone=1"),
        ));
    }
    if let Some(v) = read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        checks.push(check(
            "kernel.apparmor_restrict_unprivileged_userns",
            v.clone(),
            v != "1",
            Some("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile granting `userns` to corral"),
        ));
    }
    // SAFETY: getters without preconditions.
    let uid = unsafe { libc::geteuid() };
    let name = idmap::user_name(uid);
    let sub = idmap::subordinate_range(Path::new("/etc/subuid"), uid, name.as_deref());
    checks.push(check(
        "subuid range",
        match (uid, sub) {
            (0, _) => "root: identity mapping".to_string(),
            (_, Some((start, count))) => format!("{start}:{count}"),
            (_, None) => "none".to_string(),
        },
        uid == 0 || sub.is_some(),
        Some("add `USER:100000:65536` to /etc/subuid and /etc/subgid for multi-ID images (apt, postgres)"),
    ));
    for helper in ["newuidmap", "newgidmap"] {
        let found = idmap::find_in_path(helper);
        let value = match &found {
            Some(path) => format!("{} ({})", path.display(), privilege_of(path)),
            None => "missing".into(),
        };
        checks.push(check(
            helper,
            value,
            found.is_some() || uid == 0,
            Some("apt-get install uidmap"),
        ));
    }
    let overlay = overlay_in_userns(exe, scratch);
    checks.push(check(
        "overlay in a user namespace",
        overlay.clone().err().unwrap_or_else(|| "works".into()),
        overlay.is_ok(),
        Some("needs Linux ≥ 5.11; otherwise fuse-overlayfs is used when installed, else a copy"),
    ));
    let fuse_ovl = idmap::find_in_path("fuse-overlayfs");
    checks.push(check(
        "fuse-overlayfs",
        path_or_missing(&fuse_ovl),
        true,
        None,
    ));
    let pasta = idmap::find_in_path("pasta");
    let slirp = idmap::find_in_path("slirp4netns");
    checks.push(check(
        "slirp4netns",
        path_or_missing(&slirp),
        pasta.is_some() || slirp.is_some(),
        Some("apt-get install slirp4netns (egress for private networks)"),
    ));
    checks.push(check("pasta", path_or_missing(&pasta), true, None));
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .is_ok();
    checks.push(check(
        "/dev/net/tun",
        if tun { "usable" } else { "not usable" },
        tun,
        Some("chmod 0666 /dev/net/tun (slirp4netns and pasta need it for egress)"),
    ));
    let cgroup = cgroup_v2_delegation();
    checks.push(check("cgroup v2 delegation", cgroup.clone().unwrap_or_else(|e| e), cgroup.is_ok(), Some(
        "boot with a unified cgroup v2 hierarchy and delegate a subtree to the user (systemd: Delegate=yes)",
    )));
    let fs = filesystem_of(scratch);
    checks.push(check(
        "store",
        format!("{} ({fs})", scratch.display()),
        true,
        None,
    ));
    let mapping = match idmap::choose() {
        IdMapping::Identity => "identity (root; Docker's default capabilities inside)".to_string(),
        IdMapping::SubordinateRange { sub_uid, .. } => {
            format!("subuid range: you as 0, {}:{} as 1..", sub_uid.0, sub_uid.1)
        }
        IdMapping::Single { uid, .. } => {
            format!("single ID: {uid} as 0 (no subuid range or newuidmap)")
        }
    };
    // The same order the sandbox tries them in, from CORRAL_ROOTFS's pick on.
    use super::rootfs::{forced_method, RootfsMethod};
    let first = forced_method().unwrap_or(RootfsMethod::Overlay);
    let method = if first == RootfsMethod::Overlay && overlay.is_ok() {
        "overlay (native, in the user namespace)"
    } else if first <= RootfsMethod::FuseOverlayfs && fuse_ovl.is_some() {
        "fuse-overlayfs"
    } else {
        "copy"
    };
    let rootfs = match forced_method() {
        Some(m) => format!("{method} (CORRAL_ROOTFS={})", m.name()),
        None => method.to_string(),
    };
    // The same choice the launcher makes, so `info` tells the truth.
    let helper = super::net::egress_helper();
    let network = match (helper, tun, userns) {
        (_, _, false) => "unavailable".to_string(),
        (Some(h), true, true) => {
            format!("private netns per stage, egress through {h}, -p through corral's forwarder")
        }
        _ => "private netns per stage, loopback only (no usable egress helper), -p through corral's forwarder"
            .to_string(),
    };
    // The launcher does not place sandboxes in cgroups (yet), delegated or not.
    let limits = format!(
        "rlimits only: --memory as {}; --cpus not enforced, warned",
        super::rlimits::MEMORY_LIMIT_KIND
    );
    Report {
        checks,
        modes: Modes {
            id_mapping: mapping,
            rootfs,
            network,
            limits,
        },
    }
}

fn path_or_missing(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "missing".into())
}

fn privilege_of(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let setuid = path
        .metadata()
        .map(|m| m.permissions().mode() & 0o4000 != 0)
        .unwrap_or(false);
    if setuid {
        return "setuid".into();
    }
    let caps = Command::new("getcap")
        .arg(path)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match caps {
        Some(c) if c.contains("cap_set") => "file capabilities".into(),
        _ => "no setuid bit or capabilities: will fail for non-root".into(),
    }
}

fn userns_works() -> bool {
    Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--net",
            "--fork",
            "true",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn filesystem_of(path: &Path) -> String {
    let mut probe = path.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    // libc's constants differ in type between targets, as f_type does.
    let names = [
        (libc::BTRFS_SUPER_MAGIC as u64, "btrfs"),
        (libc::EXT4_SUPER_MAGIC as u64, "ext4"),
        (libc::TMPFS_MAGIC as u64, "tmpfs"),
        (libc::XFS_SUPER_MAGIC as u64, "xfs"),
        (libc::OVERLAYFS_SUPER_MAGIC as u64, "overlayfs"),
    ];
    match rustix::fs::statfs(&probe) {
        Ok(st) => {
            let magic = st.f_type as u64;
            names
                .iter()
                .find(|(m, _)| *m == magic)
                .map_or_else(|| format!("type {magic:#x}"), |(_, name)| name.to_string())
        }
        Err(err) => format!("unknown ({err})"),
    }
}

fn cgroup_v2_delegation() -> Result<String, String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    let Some(mount) = v2.first() else {
        return Err("no cgroup v2 hierarchy".into());
    };
    let controllers =
        std::fs::read_to_string(format!("{mount}/cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return Err(format!(
            "cgroup v2 at {mount} has no memory controller (controllers: {})",
            controllers.trim()
        ));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .to_string();
    let dir = format!("{mount}{rel}");
    // SAFETY: access(2) on a valid C string.
    let writable = std::ffi::CString::new(dir.clone())
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 })
        .unwrap_or(false);
    if writable {
        Ok(format!("delegated: {dir}"))
    } else {
        Err(format!("{dir} is not writable by this user"))
    }
}

/// Tries an overlay mount in a fresh user+mount namespace, in a child.
fn overlay_in_userns(exe: &Path, scratch: &Path) -> Result<(), String> {
    let base = if scratch.is_dir() {
        scratch.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(".overlay-probe-")
        .tempdir_in(&base)
        .map_err(|e| format!("cannot create a scratch dir in {}: {e}", base.display()))?;
    let out = Command::new(exe)
        .args(["__sandbox", "probe-overlay"])
        .arg(dir.path())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    // The kernel makes the overlay's work/work with mode 000, which an
    // unprivileged remove_dir_all cannot list, and the probe dir would stay.
    let _ = std::fs::set_permissions(
        dir.path().join("work/work"),
        std::fs::Permissions::from_mode(0o700),
    );
    if let Err(err) = dir.close() {
        tracing::warn!("cannot remove the overlay probe's scratch dir: {err}");
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `corral __sandbox probe-overlay DIR`: single-ID user namespace, overlay.
pub fn overlay_child() -> i32 {
    let Some(dir) = std::env::args_os().last().map(PathBuf::from) else {
        return 2;
    };
    // SAFETY: getters, then unshare in a single-threaded process.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } < 0 {
        eprintln!("unshare: {}", std::io::Error::last_os_error());
        return 1;
    }
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    let _ = std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"));
    let _ = std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"));
    for sub in ["lower", "upper", "work", "merged"] {
        if let Err(err) = std::fs::create_dir_all(dir.join(sub)) {
            eprintln!("mkdir: {err}");
            return 1;
        }
    }
    let mut sys = super::sys::LinuxSys;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.join("lower").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    use super::sys::Sys;
    let merged = dir.join("merged");
    match sys
        .mount(
            "overlay",
            &merged,
            "overlay",
            0,
            &format!("{opts},userxattr"),
        )
        .or_else(|_| sys.mount("overlay", &merged, "overlay", 0, &opts))
    {
        Ok(()) => {
            let _ = std::fs::write(merged.join("probe"), "x");
            0
        }
        Err(err) => {
            eprintln!("{err}");
            1
        }
    }
}
