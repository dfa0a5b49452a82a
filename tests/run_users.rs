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
    let info = common::corral(&env.store)
        .args(["info", "--json"])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    if info["modes"]["id_mapping"]
        .as_str()
        .unwrap()
        .starts_with("single")
    {
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
