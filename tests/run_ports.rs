//! `portBindings` whose host port differs from the container port: the
//! host port is published on the host and, for steps that run on the host
//! (no image, as on a Harness Cloud VM), inside the stage's network
//! namespace too; a step that binds it there gets EADDRINUSE; the
//! forwarders go with the stage.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{leftover_processes, pipeline, row, setup, stderr, stdout, step};

/// A port nothing listens on right now (the kernel's pick).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_host_step_reaches_a_service_on_its_published_host_port() {
    let Some(env) = setup("published_port_inside", true) else {
        return;
    };
    let host = free_port();
    // Sends PING to ADDR over bash's /dev/tcp until redis answers. Before
    // redis listens the forwarder accepts and closes at once: the failed
    // `read` must not end the script under `set -e`.
    let ping = |addr: &str| {
        format!(
            "ok=; for i in $(seq 150); do if exec 3<>/dev/tcp/{addr}/{host}; then printf 'PING\\r\\n' >&3; read -r -t 5 reply <&3 || reply=; exec 3<&-; case $reply in +PONG*) ok=1; break;; esac; fi; sleep 0.1; done 2>/dev/null\necho \"{addr}: ${{ok:+PONG}}\""
        )
    };
    let client = [
        ping("localhost"),
        ping("127.0.0.1"),
        // ::1 only where the kernel gives the namespace IPv6.
        format!(
            "if [ -e /proc/net/if_inet6 ]; then\n{}\nelse echo '::1: PONG'; fi",
            ping("::1")
        ),
    ]
    .join("\n");
    let yaml = pipeline(
        &(step("Background", "db", Some("redis:7"), "")
            + &format!("      portBindings:\n        \"{host}\": \"6379\"\n")
            + &step("Run", "on_host", None, &client)
            + "    timeout: 60s\n"
            + &step(
                "Run",
                "squatter",
                Some("busybox"),
                &format!("nc -l -p {host} 2>&1 || echo \"nc exited $?\""),
            )
            + "    timeout: 20s\n"),
    );
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    let said = |step: &str, what: &str| {
        text.lines()
            .any(|l| l.starts_with(step) && l.contains(&format!("| {what}")))
    };
    for addr in ["localhost", "127.0.0.1", "::1"] {
        assert!(
            said("on_host", &format!("{addr}: PONG")),
            "{addr} reached the service:\n{text}"
        );
    }
    // The host port inside the stage belongs to the forwarder.
    assert!(said("squatter", "nc: bind: Address"), "{text}");
    assert!(text.contains("in use"), "{text}");
    assert!(said("squatter", "nc exited 1"), "{text}");
    assert_eq!(row(&out, "on_host")[3], "Success");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Nothing of the stage is left: no process, and the host port is free.
    assert_eq!(leftover_processes(&env.store), Vec::<String>::new());
    std::net::TcpListener::bind(("0.0.0.0", host)).expect("the host port is free again");
}

#[test]
fn a_container_port_equal_to_another_bindings_host_port_is_refused_up_front() {
    let Some(env) = setup("published_port_collision", false) else {
        return;
    };
    let (a, b) = (free_port(), free_port());
    // Inside the stage `a` forwards to 6379, so a service listening on `a`
    // (the container port of `b`) could not bind it.
    let yaml = pipeline(
        &(step("Background", "one", None, "sleep 100")
            + &format!("      portBindings:\n        \"{a}\": \"6379\"\n")
            + &step("Background", "two", None, "sleep 100")
            + &format!("      portBindings:\n        \"{b}\": \"{a}\"\n")
            + &step("Run", "after", None, "touch /harness/ran")
            + "    timeout: 20s\n"),
    );
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "error: stage s: step two: portBindings at",
        &format!("p.yaml:30 map host port {b} to container port {a}"),
        &format!("step one publishes host port {a} (at "),
        "p.yaml:21) and corral forwards",
        "change one of the ports",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!env.ws("ran").exists(), "no step ran");
}
