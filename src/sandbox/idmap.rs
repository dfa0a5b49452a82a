//! ID maps of the stage's user namespace: root maps everything to itself, a
//! user with an `/etc/subuid` range gets it through newuidmap/newgidmap, any
//! other user is mapped alone to 0 with `setgroups` denied.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::spec::IdMapping;

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("failed to write {path}")]
    WriteMap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to run {program} for pid {pid}")]
    RunHelper {
        program: &'static str,
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("{program} failed for pid {pid}: {stderr}")]
    HelperFailed {
        program: &'static str,
        pid: i32,
        stderr: String,
    },
}

/// The mapping this process should give its stage.
pub fn choose() -> IdMapping {
    // SAFETY: getters without preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return IdMapping::Identity;
    }
    let name = user_name(uid);
    let sub_uid = subordinate_range(Path::new("/etc/subuid"), uid, name.as_deref());
    let sub_gid = subordinate_range(Path::new("/etc/subgid"), uid, name.as_deref());
    match (sub_uid, sub_gid, helpers_present()) {
        (Some(sub_uid), Some(sub_gid), true) => IdMapping::SubordinateRange {
            uid,
            gid,
            sub_uid,
            sub_gid,
        },
        _ => IdMapping::Single { uid, gid },
    }
}

/// The single-ID note when one of the exit `codes` is a program's own
/// failure (1..=124: not ours, not a signal) and sandboxes map only one ID.
pub fn note_after_failure(codes: impl IntoIterator<Item = i32>) -> Option<String> {
    let failed = codes.into_iter().any(|code| (1..125).contains(&code));
    (failed && matches!(choose(), IdMapping::Single { .. })).then(single_id_note)
}

/// One line for a sandbox with a single-ID map: what fails there, why this
/// user has no range, and the fix.
pub fn single_id_note() -> String {
    // SAFETY: getter without preconditions.
    let uid = unsafe { libc::geteuid() };
    let name = user_name(uid);
    let me = name.clone().unwrap_or_else(|| uid.to_string());
    let ranged = subordinate_range(Path::new("/etc/subuid"), uid, name.as_deref()).is_some()
        && subordinate_range(Path::new("/etc/subgid"), uid, name.as_deref()).is_some();
    let usermod = format!("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {me}");
    let (why, fix) = match (ranged, helpers_present()) {
        (true, _) => (
            "newuidmap is not installed".to_string(),
            "apt-get install uidmap".to_string(),
        ),
        (false, true) => (format!("{me} has no subuid range"), usermod),
        (false, false) => (
            format!("{me} has no subuid range and newuidmap is not installed"),
            format!("{usermod} and apt-get install uidmap"),
        ),
    };
    format!("only one ID is mapped into the sandbox ({why}), so programs that switch users or chown (apt-get, dpkg, su) fail; fix: {fix}")
}

pub fn helpers_present() -> bool {
    ["newuidmap", "newgidmap"]
        .iter()
        .all(|p| find_in_path(p).is_some())
}

pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The login name of `uid` from `/etc/passwd` (subuid files may use either).
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// The first `start:count` range of the user in a subuid/subgid file.
pub fn subordinate_range(file: &Path, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subordinate(&text, uid, name)
}

fn parse_subordinate(text: &str, uid: u32, name: Option<&str>) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let who = fields.next()?;
        let start = fields.next()?.parse().ok()?;
        let count: u32 = fields.next()?.parse().ok()?;
        let mine = Some(who) == name || who.parse::<u32>().ok() == Some(uid);
        (mine && count > 0).then_some((start, count))
    })
}

/// Writes the maps of the user namespace of `pid` (which just unshared it).
pub fn write_maps(pid: i32, mapping: IdMapping) -> Result<(), IdMapError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    match mapping {
        IdMapping::Identity => {
            write(&proc_dir.join("uid_map"), "0 0 4294967295\n")?;
            write(&proc_dir.join("gid_map"), "0 0 4294967295\n")
        }
        IdMapping::Single { uid, gid } => {
            write(&proc_dir.join("setgroups"), "deny")?;
            write(&proc_dir.join("uid_map"), &format!("0 {uid} 1\n"))?;
            write(&proc_dir.join("gid_map"), &format!("0 {gid} 1\n"))
        }
        IdMapping::SubordinateRange {
            uid,
            gid,
            sub_uid,
            sub_gid,
        } => {
            // Both at once: each is a setuid exec of its own, and the
            // kernel takes the two maps independently.
            let uids = spawn_helper("newuidmap", pid, uid, sub_uid)?;
            let gids = spawn_helper("newgidmap", pid, gid, sub_gid);
            let uids = finish_helper("newuidmap", pid, uids);
            uids.and(finish_helper("newgidmap", pid, gids?))
        }
    }
}

fn write(path: &Path, content: &str) -> Result<(), IdMapError> {
    std::fs::write(path, content).map_err(|source| IdMapError::WriteMap {
        path: path.to_path_buf(),
        source,
    })
}

fn spawn_helper(
    program: &'static str,
    pid: i32,
    own: u32,
    range: (u32, u32),
) -> Result<std::process::Child, IdMapError> {
    Command::new(program)
        .args(helper_args(pid, own, range))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| IdMapError::RunHelper {
            program,
            pid,
            source,
        })
}

/// Waits for a helper; its stderr (a line at most) fits in the pipe, so
/// the other helper never blocks on its own while we wait for this one.
fn finish_helper(
    program: &'static str,
    pid: i32,
    child: std::process::Child,
) -> Result<(), IdMapError> {
    let out = child
        .wait_with_output()
        .map_err(|source| IdMapError::RunHelper {
            program,
            pid,
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(IdMapError::HelperFailed {
            program,
            pid,
            stderr,
        })
    }
}

fn helper_args(pid: i32, own: u32, (start, count): (u32, u32)) -> Vec<String> {
    [pid as u32, 0, own, 1, 1, start, count]
        .iter()
        .map(u32::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_match_by_name_or_uid() {
        let text = "alice:100000:65536\n1002:200000:1000\nbob:300000:0\n";
        assert_eq!(
            parse_subordinate(text, 1001, Some("alice")),
            Some((100000, 65536))
        );
        assert_eq!(
            parse_subordinate(text, 1002, Some("carol")),
            Some((200000, 1000))
        );
        assert_eq!(parse_subordinate(text, 1003, Some("bob")), None);
    }

    #[test]
    fn helper_maps_the_user_to_root_and_the_range_above() {
        assert_eq!(
            helper_args(42, 1001, (100000, 65536)),
            ["42", "0", "1001", "1", "1", "100000", "65536"]
        );
    }
}
