//! Users by name: `corral exec -u USER[:GROUP]` and an image's `User`,
//! resolved in the image's own /etc/passwd and /etc/group as Docker does
//! (primary gid from passwd, supplementary groups from the group file);
//! and `apt-get install` in a debootstrap-built Debian image (the redis
//! fixture carries a local repository): it works as root and with a subuid
//! range; with a single-ID map it fails and corral says why in one line.
#![allow(clippy::unwrap_used)]
mod common;

use std::process::Output;

struct Env {
    store: common::TestDir,
    registry: String,
}

fn setup(test: &str) -> Option<Env> {
    if !common::require_namespaces(test) {
        return None;
    }
    common::require_fixtures(test)?;
    let registry = common::require_registry(test)?;
    Some(Env {
        store: common::tempdir(),
        registry,
    })
}

impl Env {
    fn exec(&self, args: &[&str]) -> Output {
        let out = common::corral(self.store.path())
            .args(["-q", "exec", "--network", "none", "--registry-mirror"])
            .arg(format!("docker.io=http://{}", self.registry))
            .args(args)
            .output()
            .unwrap();
        eprintln!(
            "exec {args:?}\n--- stdout\n{}--- stderr\n{}---",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// `id` in the redis image as `-u user` (no `-u` when empty).
    fn id_in_redis(&self, user: &str) -> Output {
        let mut args = vec!["--entrypoint", "id"];
        if !user.is_empty() {
            args.extend(["-u", user]);
        }
        args.push("redis:7");
        self.exec(&args)
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const ONE_ID: &str = "only one ID is mapped into the sandbox";

#[test]
fn exec_user_names_resolve_in_the_images_passwd_and_group() {
    let Some(env) = setup("exec_user_names_resolve_in_the_images_passwd_and_group") else {
        return;
    };
    // Root works with every mapping.
    for user in ["", "root", "0:0"] {
        let out = env.id_in_redis(user);
        assert!(out.status.success(), "{user}: {}", stderr(&out));
        assert_eq!(stdout(&out), "uid=0(root) gid=0(root) groups=0(root)\n");
    }
    let cases = [
        ("redis", "uid=100(redis) gid=101(redis) groups=101(redis)\n"),
        (
            "app",
            "uid=1000(app) gid=1000(app) groups=1000(app),50(staff),100(users)\n",
        ),
        (
            "1000",
            "uid=1000(app) gid=1000(app) groups=1000(app),50(staff),100(users)\n",
        ),
        (
            "1000:1000",
            "uid=1000(app) gid=1000(app) groups=1000(app)\n",
        ),
        (
            "app:100",
            "uid=1000(app) gid=100(users) groups=100(users)\n",
        ),
        (
            "nobody:nogroup",
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n",
        ),
        ("4242", "uid=4242 gid=0(root) groups=0(root)\n"),
    ];
    let single = common::single_id_mapping(env.store.path());
    for (user, want) in cases {
        let out = env.id_in_redis(user);
        if single {
            // Refused before anything starts, saying why and how to fix it.
            assert_eq!(out.status.code(), Some(125), "{user}");
            let err = stderr(&out);
            assert!(err.contains("cannot run as uid"), "{user}: {err}");
            assert!(err.contains(ONE_ID), "{user}: {err}");
            assert!(err.contains("usermod --add-subuids"), "{user}: {err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
        } else {
            assert!(out.status.success(), "{user}: {}", stderr(&out));
            assert_eq!(stdout(&out), want, "-u {user}");
        }
    }
    // HOME follows the user's passwd entry.
    let home = env.exec(&[
        "--entrypoint",
        "sh",
        "-u",
        "app",
        "redis:7",
        "--",
        "-c",
        "echo $HOME",
    ]);
    if !single {
        assert_eq!(stdout(&home), "/home/app\n");
    }
    for (user, what) in [
        (
            "postgres",
            "user postgres not found in /etc/passwd of image redis:7",
        ),
        (
            "app:wheel",
            "group wheel not found in /etc/group of image redis:7",
        ),
    ] {
        let out = env.id_in_redis(user);
        assert_eq!(out.status.code(), Some(125), "{user}");
        assert!(stderr(&out).contains(what), "{user}: {}", stderr(&out));
    }
}

#[test]
fn exec_applies_the_image_config_user_unless_u_overrides_it() {
    let Some(env) = setup("exec_applies_the_image_config_user_unless_u_overrides_it") else {
        return;
    };
    let out = env.exec(&["-u", "root", "busybox:user", "--", "id"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "uid=0(root) gid=0(root) groups=0(root)\n");
    let out = env.exec(&["busybox:user", "--", "id"]);
    if common::single_id_mapping(env.store.path()) {
        // The image's own User cannot be held: root, with one warning line.
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "uid=0(root) gid=0(root) groups=0(root)\n");
        let err = stderr(&out);
        assert!(
            err.starts_with("warning: image busybox:user sets User app; running as root instead: only one ID is mapped"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        // Asked for explicitly, the same user is an error.
        let out = env.exec(&["-u", "app", "busybox:user", "--", "id"]);
        assert_eq!(out.status.code(), Some(125));
        assert!(stderr(&out).contains(ONE_ID), "{}", stderr(&out));
    } else {
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"
        );
    }
}

/// Points apt at the image's local repository (no network) and installs a
/// package with a daemon-owned file and a postinst that adds a system user
/// and chowns to it.
const APT_INSTALL: &str = "set -e
echo 'deb [trusted=yes] file:/srv/corral-apt ./' >/etc/apt/sources.list
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq corral-owned >/dev/null 2>&1 || {
  echo apt-get install failed >&2; exit 100; }
stat -c '%n %U:%G' /var/lib/corral-owned/data /var/lib/corral-owned/state";

#[test]
fn apt_get_install_works_with_a_subuid_range_and_says_why_without() {
    let Some(env) = setup("apt_get_install_works_with_a_subuid_range_and_says_why_without") else {
        return;
    };
    let out = env.exec(&["--entrypoint", "sh", "redis:7", "--", "-c", APT_INSTALL]);
    let err = stderr(&out);
    if common::single_id_mapping(env.store.path()) {
        assert!(!out.status.success());
        // apt's own complaint, then ours: one line with the cause and the fix.
        assert!(err.contains("setgroups"), "{err}");
        let notes: Vec<&str> = err.lines().filter(|l| l.contains(ONE_ID)).collect();
        assert_eq!(notes.len(), 1, "{err}");
        assert!(notes[0].contains("apt-get"), "{err}");
        assert!(
            notes[0].contains("usermod --add-subuids 100000-165535 --add-subgids 100000-165535"),
            "{err}"
        );
    } else {
        assert!(out.status.success(), "{err}");
        assert_eq!(
            stdout(&out),
            "/var/lib/corral-owned/data daemon:daemon\n/var/lib/corral-owned/state corral-svc:corral-svc\n"
        );
        assert!(!err.contains(ONE_ID), "{err}");
    }
}
