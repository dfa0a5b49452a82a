//! Who owns a pulled image's files: root keeps the image's owners; a user
//! with a subuid range keeps them too, shifted into the range (image uid N
//! is host uid `start + N - 1`, image root is the user), because layers are
//! unpacked in a mapped user namespace; any other user owns everything,
//! with the image's owner recorded in `user.containers.override_stat`.
//! scripts/test.sh runs this as root, `corral-sub` and `corral-nosub`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use corral::image::userns::{caller_sub_ids, SubIds};

/// `stat -c '%u:%g %a' path` as seen from a user namespace with the
/// unpacker's mapping (user → 0, subuid range → 1…), made with newuidmap.
fn stat_in_userns(ids: &SubIds, path: &Path) -> String {
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "sh",
            "-c",
            "read go && exec stat -c '%u:%g %a' \"$0\"",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
    // `unshare` execs sh in place: wait until it has its own namespace.
    for _ in 0..5000 {
        if std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|ns| ns != ours) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for (program, own, (start, count)) in [
        ("newuidmap", ids.uid, ids.sub_uid),
        ("newgidmap", ids.gid, ids.sub_gid),
    ] {
        let status = Command::new(program)
            .args([pid, 0, own, 1, 1, start, count].map(|n| n.to_string()))
            .status()
            .unwrap();
        assert!(status.success(), "{program} failed");
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(child.wait().unwrap().success());
    line.trim().to_string()
}

/// `/etc/subuid` and `/etc/subgid` both list this user (by name or uid) and
/// newuidmap/newgidmap are installed: what a subuid-mapped unpack needs.
fn has_subordinate_ranges() -> bool {
    let uid = rustix::process::geteuid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find(|l| l.split(':').nth(2) == Some(&uid.to_string()))
        .and_then(|l| l.split(':').next().map(str::to_owned));
    let listed = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(':').next())
            .any(|who| who == uid.to_string() || Some(who) == name.as_deref())
    };
    let installed = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    listed("/etc/subuid")
        && listed("/etc/subgid")
        && installed("newuidmap")
        && installed("newgidmap")
}

fn owner(p: &Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(p).unwrap();
    (md.uid(), md.gid())
}

fn chain_dirs(store: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(store.join("layers")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn corral_ok(store: &Path, args: &[&str]) -> String {
    let out = common::corral(store).args(args).output().unwrap();
    common::assert_success(&out, &format!("corral {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pulled_owners_follow_the_users_id_range() {
    let Some(reg) = common::require_registry("pulled_owners_follow_the_users_id_range") else {
        return;
    };
    let store = common::tempdir();
    let image = format!("{reg}/corral-test/basic:v1");
    corral_ok(store.path(), &["-q", "pull", &image]);
    let inspect = corral_ok(store.path(), &["image", "inspect", &image]);
    let chains = chain_dirs(store.path());
    let rootfs = chains
        .iter()
        .find(|c| inspect.contains(&*c.to_string_lossy()))
        .unwrap_or_else(|| panic!("no chain dir of {chains:?} in inspect output {inspect}"));
    // `home/user/owned` is 1000:1000 0640 in the image, `etc/motd` 0:0.
    let owned = rootfs.join("home/user/owned");
    let motd = rootfs.join("etc/motd");
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    // Which branch applies is decided here without corral's own parser, so
    // a wrong "no range" from the library cannot pick its own expectation.
    if !common::is_root() {
        assert_eq!(
            caller_sub_ids().is_some(),
            has_subordinate_ranges(),
            "corral's view of this user's subuid range"
        );
    }
    if common::is_root() {
        let recorded = common::xattr(&owned, "user.containers.override_stat");
        assert_eq!(owner(&owned), (1000, 1000));
        assert_eq!(owner(&motd), (0, 0));
        assert_eq!(recorded, None);
    } else if let Some(ids) = caller_sub_ids() {
        // `home/user` (1000:1000 0750) is not even searchable by us on
        // the host; inside the namespace it is the image's view.
        let home = rootfs.join("home/user");
        let shifted = (ids.sub_uid.0 + 999, ids.sub_gid.0 + 999);
        assert_eq!(owner(&home), shifted, "uid 1000 lands in the subuid range");
        assert_eq!(owner(&motd), me, "image root is the user");
        assert_eq!(common::xattr(&home, "user.containers.override_stat"), None);
        assert_eq!(stat_in_userns(&ids, &owned), "1000:1000 640");
        assert_eq!(stat_in_userns(&ids, &motd), "0:0 644");
    } else {
        let recorded = common::xattr(&owned, "user.containers.override_stat");
        assert_eq!(owner(&owned), me);
        assert_eq!(owner(&motd), me);
        assert_eq!(recorded.as_deref(), Some(&b"1000:1000:0640"[..]));
        assert_eq!(common::xattr(&motd, "user.containers.override_stat"), None);
    }

    // Chain dirs holding subuid-owned 0750 directories can only be removed
    // from inside the namespace: prune must still empty the store.
    corral_ok(store.path(), &["rmi", &image]);
    corral_ok(store.path(), &["prune"]);
    assert_eq!(chain_dirs(store.path()), Vec::<PathBuf>::new());
}
