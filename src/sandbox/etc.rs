//! Generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`: files in
//! the step's state dir, bind-mounted over the image's (never written into it).

use super::spec::SandboxSpec;

pub fn hosts(spec: &SandboxSpec) -> String {
    let mut out = format!(
        "127.0.0.1\tlocalhost {name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        name = spec.hostname
    );
    for (name, addr) in &spec.extra_hosts {
        out.push_str(&format!("{addr}\t{name}\n"));
    }
    out
}

/// The host's resolvers, minus loopback ones a new netns cannot reach
/// (systemd-resolved's 127.0.0.53 is replaced by its upstream file).
pub fn resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let text = if names_loopback(&host) {
        std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or(host)
    } else {
        host
    };
    filter_loopback(&text)
}

fn is_loopback_server(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("nameserver")
        && words
            .next()
            .is_some_and(|addr| addr.starts_with("127.") || addr == "::1")
}

fn names_loopback(text: &str) -> bool {
    text.lines().any(is_loopback_server)
}

fn filter_loopback(text: &str) -> String {
    text.lines()
        .filter(|l| !is_loopback_server(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::Rootfs;

    #[test]
    fn hosts_has_localhost_hostname_and_extras() {
        let mut spec = SandboxSpec::new(Rootfs::HostRoot, vec![]);
        spec.hostname = "box".into();
        spec.extra_hosts.push(("db".into(), "127.0.0.1".into()));
        assert_eq!(
            hosts(&spec),
            "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\tdb\n"
        );
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        let text = "search x\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n";
        assert!(names_loopback(text));
        assert_eq!(filter_loopback(text), "search x\nnameserver 10.0.0.1\n");
    }
}
