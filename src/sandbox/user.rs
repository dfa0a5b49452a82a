//! Users by name, as `docker run -u` and an image's `User` take them:
//! `USER[:GROUP]`, each a name or a number, resolved against the rootfs's
//! own `/etc/passwd` and `/etc/group`. Docker's rules: a numeric user absent
//! from passwd runs with gid 0; without a group the primary gid comes from
//! passwd and the supplementary groups from the group file's member lists;
//! an explicit group replaces both.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

use super::spec::{IdMapping, User};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user {spec:?}: expected USER[:GROUP], each a name or a number")]
    Parse { spec: String },
    #[error("failed to read {file} of {image}")]
    ReadEtc {
        file: &'static str,
        image: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "user {name} not found in /etc/passwd of {image}; give a user it defines or a numeric uid"
    )]
    UnknownUser { name: String, image: String },
    #[error(
        "group {name} not found in /etc/group of {image}; give a group it defines or a numeric gid"
    )]
    UnknownGroup { name: String, image: String },
    #[error("cannot run as {user}: {reason}")]
    NotMapped { user: String, reason: String },
}

/// A user resolved for a sandbox, with what the environment needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub user: User,
    /// The passwd home directory (for `HOME` when nothing sets it).
    pub home: Option<String>,
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The `:`-separated fields of every entry of a passwd or group file that
/// has at least `min` of them (comments and blank lines skipped).
fn entries(text: &str, min: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min && !f[0].is_empty() && !f[0].starts_with('#'))
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    entries(text, 4)
        .filter_map(|f| {
            Some(Passwd {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    entries(text, 3)
        .filter_map(|f| {
            let members = f.get(3).copied().unwrap_or("").split(',');
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: members
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `spec` (`USER[:GROUP]`) against the texts of a passwd and a
/// group file (`None` when the image has none); `image` names the image in
/// errors.
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
    image: &str,
) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(UserError::Parse {
            spec: spec.to_string(),
        });
    }
    let users = parse_passwd(passwd.unwrap_or(""));
    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = users.iter().find(|p| match numeric_uid {
        Some(uid) => p.uid == uid,
        None => p.name == user_part,
    });
    let (uid, mut gid, name, home) = match (entry, numeric_uid) {
        (Some(p), _) => (p.uid, p.gid, Some(p.name.as_str()), Some(p.home.clone())),
        (None, Some(uid)) => (uid, 0, None, None),
        (None, None) => {
            return Err(UserError::UnknownUser {
                name: user_part.to_string(),
                image: image.to_string(),
            })
        }
    };
    let groups = parse_group(group.unwrap_or(""));
    let mut supplementary = Vec::new();
    match group_part {
        Some(g) => {
            let numeric_gid = g.parse::<u32>().ok();
            gid = match groups.iter().find(|e| match numeric_gid {
                Some(id) => e.gid == id,
                None => e.name == g,
            }) {
                Some(e) => e.gid,
                None => numeric_gid.ok_or_else(|| UserError::UnknownGroup {
                    name: g.to_string(),
                    image: image.to_string(),
                })?,
            };
        }
        None => {
            if let Some(name) = name {
                supplementary.extend(
                    groups
                        .iter()
                        .filter(|e| e.members.iter().any(|m| m == name))
                        .map(|e| e.gid),
                );
            }
        }
    }
    // The primary gid is a supplementary group too (containerd's fix for
    // CVE-2023-25173), so dropping it with setgid keeps no stale group.
    let mut all = vec![gid];
    for g in supplementary {
        if !all.contains(&g) {
            all.push(g);
        }
    }
    Ok(ExecUser {
        user: User {
            uid,
            gid,
            groups: all,
        },
        home: home.filter(|h| h.starts_with('/')),
    })
}

/// [`resolve`] against the files of the rootfs directory `root`.
pub fn resolve_in_rootfs(spec: &str, root: &Path, image: &str) -> Result<ExecUser, UserError> {
    let passwd = read_etc(root, "etc/passwd", image)?;
    let group = read_etc(root, "etc/group", image)?;
    resolve(spec, passwd.as_deref(), group.as_deref(), image)
}

/// Largest passwd/group file we read; real ones are a few KiB.
const MAX_ETC_BYTES: u64 = 4 << 20;

/// Reads `rel` of the rootfs `root`, every symlink resolved inside it (an
/// image's `/etc/passwd -> /host/file` must not read the host's); `None`
/// when it does not exist.
fn read_etc(root: &Path, rel: &'static str, image: &str) -> Result<Option<String>, UserError> {
    let err = |source: std::io::Error| UserError::ReadEtc {
        file: rel,
        image: image.to_string(),
        source,
    };
    let dir = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    // NONBLOCK: a FIFO planted at the path must not hang us.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let fd = match rfs::openat2(dir.as_fd(), rel, flags, Mode::empty(), resolve) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(err(e.into())),
    };
    let stat = rfs::fstat(&fd).map_err(|e| err(e.into()))?;
    if rfs::FileType::from_raw_mode(stat.st_mode) != rfs::FileType::RegularFile {
        return Err(err(std::io::Error::other("not a regular file")));
    }
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_ETC_BYTES)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(Some(text))
}

/// Whom a sandbox runs as: `requested` (`-u`, `runAsUser`), else the
/// image's own `User`, resolved in the rootfs `root`; `None` is root. A
/// requested user the ID mapping cannot hold is an error; the image's own
/// falls back to root with the returned warning, so a single-ID sandbox
/// still runs images that set a User (as `docker run -u 0` would).
pub fn choose(
    requested: Option<&str>,
    image_user: Option<&str>,
    root: &Path,
    image: &str,
    mapping: IdMapping,
) -> Result<(Option<ExecUser>, Option<String>), UserError> {
    let (wanted, from_image) = match (requested, image_user) {
        (Some(user), _) => (user, false),
        (None, Some(user)) if !user.is_empty() => (user, true),
        _ => return Ok((None, None)),
    };
    let found = resolve_in_rootfs(wanted, root, image)?;
    match check_mapped(&found.user, mapping) {
        Ok(()) => Ok((Some(found), None)),
        Err(UserError::NotMapped { reason, .. }) if from_image => Ok((
            None,
            Some(format!(
                "{image} sets User {wanted}; running as root instead: {reason}"
            )),
        )),
        Err(err) => Err(err),
    }
}

/// Whether `user` can exist in a user namespace mapped as `mapping`; the
/// error says why not and how to fix it.
pub fn check_mapped(user: &User, mapping: IdMapping) -> Result<(), UserError> {
    let who = format!("uid {} gid {}", user.uid, user.gid);
    match mapping {
        IdMapping::Identity => Ok(()),
        IdMapping::Single { .. } if user.uid != 0 || user.gid != 0 => Err(UserError::NotMapped {
            user: who,
            reason: super::idmap::single_id_note(),
        }),
        IdMapping::Single { .. } => Ok(()),
        IdMapping::SubordinateRange {
            sub_uid, sub_gid, ..
        } => {
            // 0 is the user, 1..=count the range.
            let gids = std::iter::once(&user.gid).chain(&user.groups);
            if user.uid > sub_uid.1 || gids.max().is_some_and(|g| *g > sub_gid.1) {
                Err(UserError::NotMapped {
                    user: who,
                    reason: format!(
                        "the sandbox maps ids 0 to {} (the subuid range of {}); ask for a larger range in /etc/subuid and /etc/subgid",
                        sub_uid.1.min(sub_gid.1),
                        current_user()
                    ),
                })
            } else {
                Ok(())
            }
        }
    }
}

fn current_user() -> String {
    // SAFETY: getter without preconditions.
    let uid = unsafe { libc::geteuid() };
    super::idmap::user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// The rootfs directory whose `/etc` names a sandbox's users.
pub fn etc_root(rootfs: &super::spec::Rootfs) -> PathBuf {
    match rootfs {
        super::spec::Rootfs::Image { lower } => lower.clone(),
        super::spec::Rootfs::Dir(dir) => dir.clone(),
        super::spec::Rootfs::HostRoot => PathBuf::from("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken:x:notanumber:1::/:\n\
        redis:x:100:101::/var/lib/redis:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        redis:x:101:\n\
        nogroup:x:65534:\n\
        users:x:100:app, redis\n\
        app:x:1000:\n\
        audio:x:29:app\n";

    fn res(spec: &str) -> Result<ExecUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP), "img:1")
    }

    fn ids(spec: &str) -> (u32, u32, Vec<u32>) {
        let u = res(spec).unwrap().user;
        (u.uid, u.gid, u.groups)
    }

    #[test]
    fn names_take_the_primary_gid_from_passwd_and_groups_from_the_group_file() {
        assert_eq!(ids("redis"), (100, 101, vec![101, 100]));
        assert_eq!(ids("app"), (1000, 1000, vec![1000, 100, 29]));
        assert_eq!(ids("root"), (0, 0, vec![0]));
        assert_eq!(
            res("redis").unwrap().home.as_deref(),
            Some("/var/lib/redis")
        );
    }

    #[test]
    fn numeric_users_match_passwd_or_run_with_gid_0() {
        assert_eq!(ids("1000"), (1000, 1000, vec![1000, 100, 29]));
        assert_eq!(ids("4242"), (4242, 0, vec![0]));
        assert_eq!(res("4242").unwrap().home, None);
    }

    #[test]
    fn an_explicit_group_replaces_primary_and_supplementary_groups() {
        assert_eq!(ids("nobody:nogroup"), (65534, 65534, vec![65534]));
        assert_eq!(ids("1000:1000"), (1000, 1000, vec![1000]));
        assert_eq!(ids("app:100"), (1000, 100, vec![100]));
        assert_eq!(ids("4242:777"), (4242, 777, vec![777]));
        assert_eq!(ids("redis:users"), (100, 100, vec![100]));
    }

    #[test]
    fn unknown_names_and_bad_specs_are_errors_naming_image_and_user() {
        let msg = res("postgres").unwrap_err().to_string();
        assert!(msg.starts_with(
            "user postgres not found in /etc/passwd of img:1; give a user it defines"
        ));
        let msg = res("app:wheel").unwrap_err().to_string();
        assert!(msg.starts_with("group wheel not found in /etc/group of img:1; give a group"));
        for bad in ["", ":1", "app:"] {
            assert!(matches!(res(bad), Err(UserError::Parse { .. })), "{bad}");
        }
        // No passwd at all: numbers still work, names cannot.
        assert_eq!(resolve("7", None, None, "i").unwrap().user.gid, 0);
        assert!(resolve("app", None, None, "i").is_err());
    }

    #[test]
    fn mappings_refuse_ids_they_cannot_hold() {
        let user = |uid, gid| User {
            uid,
            gid,
            groups: vec![gid],
        };
        let single = IdMapping::Single {
            uid: 1001,
            gid: 1001,
        };
        assert!(check_mapped(&user(0, 0), single).is_ok());
        let msg = check_mapped(&user(100, 101), single)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("cannot run as uid 100 gid 101: only one ID is mapped"),
            "{msg}"
        );
        // The fix named depends on this host and user (range, newuidmap).
        assert!(msg.contains("; fix: "), "{msg}");
        let range = IdMapping::SubordinateRange {
            uid: 1001,
            gid: 1001,
            sub_uid: (100000, 65536),
            sub_gid: (100000, 65536),
        };
        assert!(check_mapped(&user(65534, 65534), range).is_ok());
        assert!(check_mapped(&user(70000, 0), range).is_err());
        let mut in_big_group = user(1000, 1000);
        in_big_group.groups.push(70000);
        assert!(check_mapped(&in_big_group, range).is_err());
        assert!(check_mapped(&user(70000, 0), IdMapping::Identity).is_ok());
    }

    #[test]
    fn an_unmappable_image_user_falls_back_to_root_but_a_requested_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let single = IdMapping::Single {
            uid: 1001,
            gid: 1001,
        };
        let pick = |req, img, mapping| choose(req, img, dir.path(), "image i:1", mapping);
        let (user, warning) = pick(None, Some("app"), single).unwrap();
        assert_eq!(user, None);
        let warning = warning.unwrap();
        assert!(
            warning.starts_with("image i:1 sets User app; running as root instead: only one ID"),
            "{warning}"
        );
        assert!(pick(Some("app"), None, single).is_err());
        assert!(pick(Some("1000"), Some("root"), single).is_err());
        let (user, warning) = pick(Some("root"), Some("app"), single).unwrap();
        assert_eq!((user.unwrap().user.uid, warning), (0, None));
        let (user, warning) = pick(None, Some("app"), IdMapping::Identity).unwrap();
        assert_eq!((user.unwrap().user.uid, warning), (1000, None));
        assert_eq!(pick(None, Some(""), single).unwrap(), (None, None));
        assert!(pick(None, Some("ghost"), IdMapping::Identity).is_err());
    }

    #[test]
    fn etc_files_are_read_inside_the_rootfs_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "evil:x:7:7::/:\n").unwrap();
        // Absolute and `..` links are clamped to the rootfs, where neither exists.
        std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("etc/group")).unwrap();
        assert!(resolve_in_rootfs("evil", &root, "img").is_err());
        assert_eq!(read_etc(&root, "etc/group", "img").unwrap(), None);
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::fs::write(root.join("etc/passwd"), "app:x:5:6::/home/app:\n").unwrap();
        let found = resolve_in_rootfs("app", &root, "img").unwrap();
        assert_eq!((found.user.uid, found.user.gid), (5, 6));
    }
}
