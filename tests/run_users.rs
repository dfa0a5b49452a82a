//! `corral run`: a step runs as `runAsUser`, else as its image's `User`,
//! both resolved in the image's /etc/passwd and /etc/group; a runAsUser the
//! stage's ID map cannot hold fails the step before it starts, saying why
//! (an image's own User falls back to root with a warning).

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{pipeline, row, setup, stderr, stdout, step};

#[test]
fn steps_run_as_run_as_user_else_the_image_user() {
    let Some(env) = setup("run_as_users", true) else {
        return;
    };
    let steps = [
        step("Run", "root_in_redis", Some("redis:7"), "id"),
        // runAsUser 0 overrides the image's User.
        step("Run", "root_over_config", Some("busybox:user"), "id") + "      runAsUser: 0\n",
        step(
            "Run",
            "config_user",
            Some("busybox:user"),
            "id; echo home=$HOME",
        ),
        step("Run", "redis_by_uid", Some("redis:7"), "id") + "      runAsUser: 100\n",
    ];
    let file = env.write("p.yaml", &pipeline(&steps.concat()));
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    let root = "uid=0(root) gid=0(root) groups=0(root)";
    assert!(
        text.contains(&format!("root_in_redis    | {root}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("root_over_config | {root}")),
        "{text}"
    );
    if common::single_id_mapping(&env.store) {
        // The image's User falls back to root with a warning; runAsUser
        // cannot, and fails the step before it starts.
        assert!(
            text.contains(&format!("config_user      | {root}")),
            "{text}"
        );
        let err = stderr(&out);
        assert!(err.contains("step config_user: image docker.io/library/busybox:user sets User app; running as root instead: only one ID is mapped"), "{err}");
        assert_eq!(out.status.code(), Some(1));
        assert!(text.contains("redis_by_uid     | failed: step redis_by_uid: cannot run as uid 100 gid 101: only one ID is mapped into the sandbox"), "{text}");
        assert_eq!(row(&out, "redis_by_uid")[3], "Failed");
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            text.contains(
                "config_user      | uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"
            ),
            "{text}"
        );
        assert!(text.contains("config_user      | home=/home/app"), "{text}");
        assert!(
            text.contains("redis_by_uid     | uid=100(redis) gid=101(redis) groups=101(redis)"),
            "{text}"
        );
    }
}

#[test]
fn apt_get_in_a_step_works_with_a_subuid_range_and_the_run_says_why_without() {
    let Some(env) = setup("run_apt_get", true) else {
        return;
    };
    let install = "echo 'deb [trusted=yes] file:/srv/corral-apt ./' >/etc/apt/sources.list
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq corral-owned >/dev/null 2>&1
stat -c '%U:%G' /var/lib/corral-owned/data /var/lib/corral-owned/state";
    let file = env.write(
        "p.yaml",
        &pipeline(&step("Run", "apt", Some("redis:7"), install)),
    );
    let out = env.run(&file, &["--network", "none"]);
    let (text, err) = (stdout(&out), stderr(&out));
    let note = "note: only one ID is mapped into the sandbox";
    if common::single_id_mapping(&env.store) {
        assert_ne!(out.status.code(), Some(0));
        assert_eq!(err.matches(note).count(), 1, "{err}");
        assert!(err.contains("usermod --add-subuids"), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(text.contains("apt | daemon:daemon\n"), "{text}");
        assert!(text.contains("apt | corral-svc:corral-svc\n"), "{text}");
        assert!(!err.contains(note), "{err}");
    }
}

#[test]
fn an_image_user_writes_the_workspace_and_its_output_variables() {
    let Some(env) = setup("run_user_workspace", true) else {
        return;
    };
    let steps = [
        step(
            "Run",
            "produce",
            Some("busybox:user"),
            "id -un; echo built >/harness/artifact; VERSION=1.2; mkdir -p /harness/out/deep",
        ) + "      outputVariables:\n        - name: VERSION\n",
        step(
            "Run",
            "consume",
            Some("busybox:user"),
            r#"cat /harness/artifact; echo "got <+steps.produce.output.outputVariables.VERSION>""#,
        ),
    ];
    let file = env.write("p.yaml", &pipeline(&steps.concat()));
    // corral's own workspace is open to the image's user, as Harness's
    // emptyDir volume is (a --workspace DIR keeps DIR's permissions).
    let out = env.run_own(&file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    // With one ID mapped the image's User falls back to root (see above).
    let user = if common::single_id_mapping(&env.store) {
        "root"
    } else {
        "app"
    };
    assert!(text.contains(&format!("produce | {user}\n")), "{text}");
    assert!(text.contains("consume | built\n"), "{text}");
    assert!(text.contains("consume | got 1.2\n"), "{text}");
}

#[test]
fn an_image_named_by_a_secret_is_masked_in_the_user_fallback_warning() {
    let Some(env) = setup("run_user_secret_image", true) else {
        return;
    };
    let image = r#"busybox:<+secrets.getValue("tag")>"#;
    let file = env.write(
        "p.yaml",
        &pipeline(&step("Run", "who", Some(image), "id -un")),
    );
    let out = env
        .command(&file)
        .env("USER_TAG", "user")
        .args(["--secret", "tag=env:USER_TAG"])
        .output()
        .unwrap();
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(!text.contains("busybox:user"), "{text}");
    assert!(!err.contains("busybox:user"), "{err}");
    if common::single_id_mapping(&env.store) {
        // The warning is there, naming the image masked.
        assert!(
            err.contains("step who: image docker.io/library/busybox:"),
            "{err}"
        );
        assert!(
            err.contains("sets User app; running as root instead"),
            "{err}"
        );
        assert!(text.contains("who | root\n"), "{text}");
    } else {
        assert!(text.contains("who | app\n"), "{text}");
    }
}
