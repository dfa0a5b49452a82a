use std::ffi::OsString;

use clap::Parser;
use corral::cli::Cli;

use super::parse;

fn argv(line: &str) -> Vec<OsString> {
    std::iter::once("corral")
        .chain(line.split(' ').filter(|w| !w.is_empty()))
        .map(OsString::from)
        .collect()
}

fn real_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Both parsers on `argv`: ours, and clap's (as `{:?}`, or its error).
fn both(argv: &[OsString]) -> (Option<String>, Result<String, String>) {
    let ours = parse(argv, real_env).map(|cli| format!("{cli:?}"));
    let clap = Cli::try_parse_from(argv)
        .map(|cli| format!("{cli:?}"))
        .map_err(|e| e.to_string());
    (ours, clap)
}

#[test]
fn plain_exec_lines_parse_as_clap_parses_them() {
    let lines = [
        "exec alpine",
        "exec alpine -- /bin/true",
        "exec alpine -- sh -c -x --help",
        "exec --network none alpine -- /bin/true",
        "exec --network=host alpine",
        "exec alpine --network private --read-only",
        "--store /tmp/s exec alpine -- true",
        "--store=/tmp/s --config /etc/c.toml exec alpine",
        "-v exec alpine",
        "-vv -q --quiet --verbose exec alpine",
        "--color never exec alpine",
        "exec alpine --color=always",
        "exec --store /tmp/s alpine",
        "exec -e A=1 --env B=2 --env=C=3 -v /a:/b -v /c:/d:ro --volume=/e:/f alpine",
        "exec -p 8080:80 --publish 9090:90 -w /work -u 1000:1000 alpine",
        "exec --workdir=/w --user nobody --entrypoint= --hostname h alpine",
        "exec --memory 512m --cpus 0.5 --privileged alpine -- id",
        "exec --env-file /tmp/e --env-file=/tmp/f alpine",
        "exec --rootfs /tmp/root -- /bin/true",
        "exec --host-root -- uname -a",
        "exec --offline --platform linux/arm64 --registry-mirror docker.io=http://m alpine",
        "exec --insecure-registry localhost:5000 localhost:5000/busybox:1 --",
        "exec - -- true",
    ];
    for line in lines {
        let (ours, clap) = both(&argv(line));
        let ours = ours.unwrap_or_else(|| panic!("not parsed: {line}"));
        assert_eq!(Ok(ours), clap, "{line}");
    }
}

#[test]
fn empty_words_parse_as_clap_parses_them_or_are_left_to_it() {
    let lines: [&[&str]; 4] = [
        &["exec", ""],
        &["exec", "alpine", "--", ""],
        &["exec", "-e", "", "alpine"],
        &["--store", "", "exec", "alpine"],
    ];
    for words in lines {
        let line: Vec<OsString> = std::iter::once("corral")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        let (ours, clap) = both(&line);
        if let Some(ours) = ours {
            assert_eq!(Ok(ours), clap, "{words:?}");
        }
    }
}

#[test]
fn anything_else_is_left_to_clap() {
    let lines = [
        "exec",
        "exec --help",
        "exec -h alpine",
        "--version exec alpine",
        "exec -eA=1 alpine",
        "exec -e=A=1 alpine",
        "exec --network none --network host alpine",
        "exec --network bridge alpine",
        "exec --read-only --read-only alpine",
        "exec --host-root alpine",
        "exec --rootfs /r alpine",
        "exec --host-root --rootfs /r",
        "exec alpine busybox",
        "exec alpine -q",
        "exec --nope alpine",
        "exec -e",
        "exec -e -x alpine",
        "exec --rootfs= -- true",
        "--store /a exec --store /b alpine",
        "--color never exec --color=always alpine",
        "-vq exec alpine",
        "validate exec",
        "run exec.yaml",
        "exec -- alpine",
    ];
    for line in lines {
        assert_eq!(
            parse(&argv(line), real_env).map(|c| format!("{c:?}")),
            None,
            "{line}"
        );
    }
    // Not UTF-8: clap's to judge (it takes it after `--` as lossy text).
    let mut bad = argv("exec alpine --");
    bad.push(std::os::unix::ffi::OsStringExt::from_vec(vec![0xff]));
    assert!(parse(&bad, real_env).is_none());
}

#[test]
fn variables_fill_in_the_store_and_config() {
    let env = |name: &str| match name {
        "CORRAL_STORE" => Some(OsString::from("/from/env")),
        "CORRAL_CONFIG" => Some(OsString::from("")),
        _ => None,
    };
    // An empty variable is an error for clap: left to it.
    assert!(parse(&argv("exec alpine"), env).is_none());
    let env = |name: &str| (name == "CORRAL_STORE").then(|| OsString::from("/from/env"));
    let cli = parse(&argv("exec alpine"), env).expect("parsed");
    assert_eq!(cli.global.store.as_deref(), Some("/from/env".as_ref()));
    assert_eq!(cli.global.config, None);
    let cli = parse(&argv("--store /given exec alpine"), env).expect("parsed");
    assert_eq!(cli.global.store.as_deref(), Some("/given".as_ref()));
}

/// Command lines drawn from the options' spellings, with a fixed seed:
/// every one we accept must come out of clap the same.
#[test]
fn drawn_command_lines_agree_with_clap() {
    // Before `exec`; after it, mostly whole options with a value, and
    // some stray words that make a line wrong.
    let globals = [
        "-v",
        "-vv",
        "-q",
        "--verbose",
        "--store /s",
        "--store=/t",
        "--config /c",
        "--color never",
        "--color=auto",
        "--store",
    ];
    let units = [
        "alpine",
        "busybox",
        "-- true",
        "-- sh -c --x",
        "--",
        "-",
        "-e A=1",
        "--env B=2",
        "--env=C=3",
        "--env-file /f",
        "-p 80:80",
        "--publish 1:2",
        "-w /w",
        "--workdir=/x",
        "-u 0",
        "--user 1:1",
        "--entrypoint",
        "--entrypoint /e",
        "--hostname h",
        "--memory 1g",
        "--cpus 2",
        "--network none",
        "--network host",
        "--network=private",
        "--network bridge",
        "--read-only",
        "--host-root",
        "--rootfs /r",
        "--privileged",
        "--offline",
        "--platform linux/amd64",
        "--registry-mirror r=http://m",
        "--insecure-registry h:5000",
        "--volume /a:/b:ro",
        "-v /c:/d",
        "--store /u",
        "--color=always",
        "-h",
        "--help",
        "-x",
        "-q",
        "-e",
        "--rootfs=",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    let (mut accepted, mut agreed_errors) = (0, 0);
    for _ in 0..8_000 {
        let mut line = String::new();
        for _ in 0..next(3) {
            line = line + globals[next(globals.len())] + " ";
        }
        line += "exec ";
        let (count, image_at) = (next(6), next(8));
        for at in 0..count.max(image_at + 1) {
            if at == image_at {
                line += "alpine ";
            }
            if at < count {
                line = line + units[next(units.len())] + " ";
            }
        }
        let line = argv(&line);
        let (ours, clap) = both(&line);
        match ours {
            Some(ours) => {
                accepted += 1;
                assert_eq!(Ok(ours), clap, "{line:?}");
            }
            None => agreed_errors += usize::from(clap.is_err()),
        }
    }
    // Not a vacuous pass: a good share of the lines are ours to parse, and
    // many that we leave are ones clap refuses.
    assert!(accepted > 2_000, "only {accepted} lines accepted");
    assert!(agreed_errors > 2_000, "{agreed_errors}");
}
