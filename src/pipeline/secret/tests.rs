use std::collections::BTreeMap;
use std::ffi::OsString;

use super::*;
use crate::pipeline::expr::SecretScope;

fn masker(values: &[&str]) -> Masker {
    let mut m = Masker::new();
    for v in values {
        m.add(v);
    }
    m
}

#[test]
fn masks_values_and_variants() {
    let pem = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2E\nQQQ==\n}\n-----END KEY-----";
    let m = masker(&[
        "a/b/c",
        "hunter2",
        "hunter2-longer",
        "p@ss word&=x",
        "\"quoted-val\"",
        pem,
        "x",
    ]);
    let cases: &[(&str, &str)] = &[
        ("no secrets here", "no secrets here"),
        ("pw=hunter2.", "pw=**************."),
        ("hunter2hunter2", "****************************"),
        // longest first: never `**************-longer`
        ("hunter2-longer", "**************"),
        ("a p@ss word&=x b", "a ************** b"),
        ("url: p%40ss%20word%26%3Dx", "url: **************"),
        ("quoted-val without quotes", "************** without quotes"),
        ("json: \\\"quoted-val\\\"", "json: **************"),
        ("json: a\\/b\\/c", "json: **************"),
        // each line of a multi-line secret, printed alone
        (
            "key line AAAAB3NzaC1yc2E end",
            "key line ************** end",
        ),
        ("-----END KEY-----", "**************"),
        ("QQQ==", "**************"),
        // `}` alone is too short to mask
        ("fn() {}", "fn() {}"),
        // a one-character whole value is still masked
        ("xyz", "**************yz"),
        ("", ""),
    ];
    let mut blank = Masker::new();
    blank.add("  \n\t");
    blank.add("");
    assert!(blank.is_empty());
    for (input, want) in cases {
        assert_eq!(m.mask(input), *want, "{input:?}");
    }
    assert_eq!(m.mask(pem), MASK);
}

#[test]
fn overlapping_secrets_become_one_mask() {
    let m = masker(&["abcdef", "defghi"]);
    assert_eq!(m.mask("xxabcdefghixx"), "xx**************xx");
    assert_eq!(m.mask("abcdef defghi"), "************** **************");
}

#[test]
fn multi_line_secret_leaves_no_line_visible() {
    let pem = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2E\n-----END KEY-----";
    let m = masker(&[pem]);
    let out = m.mask(&format!("before\n{pem}\nafter")).into_owned();
    assert!(
        !out.contains("BEGIN") && !out.contains("AAAA") && !out.contains("END"),
        "{out}"
    );
    assert!(
        out.starts_with("before\n") && out.ends_with("\nafter"),
        "{out}"
    );
}

#[test]
fn clones_share_patterns_added_later() {
    let m = Masker::new();
    let mut writer = m.clone();
    writer.add("late-secret");
    assert_eq!(m.mask("a late-secret"), "a **************");
    assert!(!m.is_empty());
}

#[test]
fn line_stream_masks_secrets_split_across_reads() {
    let m = masker(&["topsecret"]);
    let mut stream = m.line_stream();
    assert!(stream.push(b"one top").is_empty());
    assert_eq!(
        stream.push(b"secret two\nthree topse"),
        vec!["one ************** two"]
    );
    assert_eq!(stream.push(b"cret\n"), vec!["three **************"]);
    assert_eq!(stream.push(b"tail topsecret"), Vec::<String>::new());
    assert_eq!(stream.finish().as_deref(), Some("tail **************"));
    assert_eq!(stream.finish(), None);
    // invalid UTF-8 is replaced, not dropped
    assert_eq!(
        stream.push(b"\xff topsecret\n"),
        vec!["\u{fffd} **************"]
    );
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: BTreeMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn parses_cli_specs() {
    let ok: &[(&str, &str, SecretSource)] = &[
        ("TOKEN", "TOKEN", SecretSource::Env("TOKEN".into())),
        (
            "tok=env:MY_TOKEN",
            "tok",
            SecretSource::Env("MY_TOKEN".into()),
        ),
        (
            "account.gh=file:/run/gh",
            "account.gh",
            SecretSource::File("/run/gh".into()),
        ),
        (
            "k=file:rel/path=x",
            "k",
            SecretSource::File("rel/path=x".into()),
        ),
    ];
    for (spec, id, source) in ok {
        assert_eq!(
            SecretSource::parse_cli(spec).unwrap(),
            (id.to_string(), source.clone()),
            "{spec}"
        );
    }
    let literal = SecretSource::parse_cli("tok=hunter2-literal").unwrap_err();
    let msg = literal.to_string();
    assert!(
        msg.contains("tok=env:VAR") && msg.contains("file:PATH"),
        "{msg}"
    );
    assert!(
        !msg.contains("hunter2"),
        "the literal must not be echoed: {msg}"
    );
    assert!(!format!("{literal:?}").contains("hunter2"));
    for (spec, words) in [
        ("=env:X", "needs an id"),
        ("", "needs an id"),
        ("a b=env:X", "whitespace"),
        ("t=env:", "`env:` needs a name"),
        ("t=file:", "`file:` needs a name"),
    ] {
        let err = SecretSource::parse_cli(spec).unwrap_err().to_string();
        assert!(err.contains(words), "{spec}: {err}");
    }
}

#[test]
fn loads_from_env_files_and_config_with_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tok");
    std::fs::write(&file, "from-file\n").unwrap();
    let dotenv = dir.path().join("secrets.env");
    std::fs::write(
        &dotenv,
        "# comment\nexport A=dotenv-a\nB='dotenv b'\nOVERRIDE=dotenv\n",
    )
    .unwrap();
    let mut config = BTreeMap::new();
    config.insert("C".to_string(), SecretSource::Env("C_VAR".into()));
    config.insert("OVERRIDE".to_string(), SecretSource::Env("CFG".into()));
    config.insert("UNUSED".to_string(), SecretSource::Env("NOT_SET".into()));
    let env = env_of(&[("X", "from-env-x"), ("C_VAR", "from-config"), ("V", "cli")]);
    let cli = vec![
        "X".to_string(),
        format!("F=file:{}", file.display()),
        "OVERRIDE=env:V".to_string(),
    ];
    let mut store = SecretStore::load_with_env(&cli, Some(&dotenv), &config, &env).unwrap();
    let get = |s: &SecretStore, id: &str| {
        s.get(SecretScope::Project, id)
            .map(|v| v.expose().to_string())
    };
    assert_eq!(get(&store, "X").as_deref(), Some("from-env-x"));
    assert_eq!(get(&store, "F").as_deref(), Some("from-file"));
    assert_eq!(get(&store, "A").as_deref(), Some("dotenv-a"));
    assert_eq!(get(&store, "B").as_deref(), Some("dotenv b"));
    assert_eq!(get(&store, "OVERRIDE").as_deref(), Some("cli"));
    // config sources are read on demand
    assert_eq!(get(&store, "C"), None);
    assert!(store
        .require_with_env(SecretScope::Project, "C", &env)
        .unwrap());
    assert_eq!(get(&store, "C").as_deref(), Some("from-config"));
    assert!(!store
        .require_with_env(SecretScope::Project, "nobody", &env)
        .unwrap());
    let err = store
        .require_with_env(SecretScope::Project, "UNUSED", &env)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret `UNUSED`: environment variable `NOT_SET` is not set"
    );
    assert_eq!(
        store.ids().collect::<Vec<_>>(),
        vec!["A", "B", "C", "F", "OVERRIDE", "UNUSED", "X"]
    );
    let m = store.masker();
    assert_eq!(
        m.mask("from-env-x dotenv b"),
        "************** **************"
    );
}

#[test]
fn scoped_ids_try_the_full_id_first() {
    let mut store = SecretStore::new();
    store.insert("gh", Secret::new("bare"));
    store.insert("account.gh", Secret::new("account"));
    store.insert("only", Secret::new("only-bare"));
    assert_eq!(
        store.get(SecretScope::Account, "gh").unwrap().expose(),
        "account"
    );
    assert_eq!(store.get(SecretScope::Org, "gh").unwrap().expose(), "bare");
    assert_eq!(
        store.get(SecretScope::Project, "gh").unwrap().expose(),
        "bare"
    );
    assert_eq!(
        store.get(SecretScope::Account, "only").unwrap().expose(),
        "only-bare"
    );
    assert!(store.get(SecretScope::Project, "account.only").is_none());
}

#[test]
fn source_errors_name_id_and_source_but_not_value() {
    let env = env_of(&[]);
    let err =
        SecretStore::load_with_env(&["MISSING".into()], None, &BTreeMap::new(), &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret `MISSING`: environment variable `MISSING` is not set"
    );
    let err = SecretStore::load_with_env(
        &["k=file:/nonexistent/corral-secret".into()],
        None,
        &BTreeMap::new(),
        &env,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret `k`: failed to read file /nonexistent/corral-secret"
    );
    assert!(std::error::Error::source(&err).is_some());

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, "OK=1\nthis line has hunter2 no equals\n").unwrap();
    let err = SecretStore::load_with_env(&[], Some(&bad), &BTreeMap::new(), &env).unwrap_err();
    let msg = err.to_string();
    assert!(msg.ends_with("bad.env:2: expected KEY=value"), "{msg}");
    assert!(!msg.contains("hunter2"));
    let err = SecretStore::load_with_env(
        &[],
        Some(&dir.path().join("none.env")),
        &BTreeMap::new(),
        &env,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("failed to read secrets file"),
        "{err}"
    );
}

#[test]
fn dotenv_forms() {
    let text = "\
# a comment
export PLAIN = value with spaces   # trailing comment
EMPTY=
HASH=a#b
DQ=\"line1\\nline2 \\\"q\\\" \\\\ \"  # c
SQ='no \\n escapes'
MULTI=\"-----BEGIN-----
body
-----END-----\"
SQMULTI='a
b'
dotted.key-1=x
";
    let entries = dotenv::parse(text).unwrap();
    let want: Vec<(String, String)> = [
        ("PLAIN", "value with spaces"),
        ("EMPTY", ""),
        ("HASH", "a#b"),
        ("DQ", "line1\nline2 \"q\" \\ "),
        ("SQ", "no \\n escapes"),
        ("MULTI", "-----BEGIN-----\nbody\n-----END-----"),
        ("SQMULTI", "a\nb"),
        ("dotted.key-1", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(entries, want);
    for (text, line, words) in [
        ("A=1\nB=\"open\n", 2, "unclosed \" quote"),
        ("A='x' y", 1, "after the closing quote"),
        ("bad key=1", 1, "a key may hold"),
        ("=1", 1, "a key may hold"),
        ("\n\nnovalue", 3, "expected KEY=value"),
    ] {
        let (got_line, reason) = dotenv::parse(text).unwrap_err();
        assert_eq!(got_line, line, "{text:?}");
        assert!(reason.contains(words), "{text:?}: {reason}");
    }
}

#[test]
fn debug_of_secret_holders_shows_no_value() {
    let value = "super-secret-value-42";
    let secret = Secret::new(value);
    assert_eq!(format!("{secret:?}"), MASK);
    assert_eq!(format!("{secret}"), MASK);
    let mut store = SecretStore::new();
    store.insert("id", secret.clone());
    let m = store.masker();
    let rendered = crate::pipeline::expr::Rendered {
        text: format!("token={value}"),
        has_secret: true,
        secret_values: vec![secret.clone()],
    };
    for shown in [
        format!("{store:?}"),
        format!("{m:?}"),
        format!("{:?}", m.line_stream()),
        format!("{rendered:?}"),
        format!("{:?}", Some(&secret)),
        format!("{:#?}", vec![secret.clone()]),
    ] {
        assert!(!shown.contains(value), "{shown}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }
}
