use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/corral/test.toml"))
}

const FULL: &str = r#"
store = "store-dir"

[[registry]]
prefix = "docker.io"
mirrors = ["http://127.0.0.1:5000/"]
insecure = true

[[registry]]
prefix = "docker.io/myorg"
mirrors = ["https://mirror.example"]

[connectors.dockerhub]
registry = "docker.io"
username = "me"
password_secret = "dockerhub_pat"

[connectors.anon]
registry = "ghcr.io"

[secrets]
dockerhub_pat = "env:DOCKERHUB_PAT"
key = "file:keys/cosign.key"
abs = "file:/run/k"

[run]
grace_period = "1m 30s"
network = "none"
"#;

#[test]
fn parses_a_full_config() {
    let c = parse(FULL).unwrap();
    assert_eq!(
        c.source.as_deref(),
        Some(Path::new("/etc/corral/test.toml"))
    );
    assert_eq!(c.store.as_deref(), Some(Path::new("/etc/corral/store-dir")));
    assert_eq!(
        c.registries[0],
        RegistryConfig {
            prefix: "docker.io".into(),
            mirrors: vec!["http://127.0.0.1:5000".into()],
            insecure: true
        }
    );
    assert_eq!(
        c.connectors["dockerhub"],
        ConnectorConfig {
            registry: "docker.io".into(),
            username: Some("me".into()),
            password_secret: Some("dockerhub_pat".into())
        }
    );
    assert_eq!(c.connectors["anon"].username, None);
    assert_eq!(
        c.secrets["dockerhub_pat"],
        SecretSource::Env("DOCKERHUB_PAT".into())
    );
    assert_eq!(
        c.secrets["key"],
        SecretSource::File("/etc/corral/keys/cosign.key".into())
    );
    assert_eq!(c.secrets["abs"], SecretSource::File("/run/k".into()));
    assert_eq!(c.run.grace_period, Some(Duration::from_secs(90)));
    assert_eq!(c.run.network, Some(NetworkMode::None));
}

#[test]
fn looks_up_registries_and_connectors() {
    let c = parse(FULL).unwrap();
    let prefix = |r: &str| c.registry_for(r).map(|r| r.prefix.as_str());
    assert_eq!(prefix("docker.io/library/alpine:3"), Some("docker.io"));
    assert_eq!(
        prefix("docker.io/myorg/app@sha256:00"),
        Some("docker.io/myorg")
    );
    assert_eq!(prefix("docker.io/myorganisation/app"), Some("docker.io"));
    assert_eq!(prefix("docker.io"), Some("docker.io"));
    assert_eq!(prefix("docker.iox/a"), None);
    assert_eq!(prefix("quay.io/a/b"), None);
    assert!(c.connector("dockerhub").is_some());
    assert!(c.connector("account.dockerhub").is_some());
    assert!(c.connector("org.anon").is_some());
    assert!(c.connector("account.nope").is_none());
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert!(c.registries.is_empty() && c.connectors.is_empty() && c.secrets.is_empty());
    assert_eq!(c.run, RunDefaults::default());
    assert_eq!(c.store, None);
}

#[test]
fn rejects_bad_configs_with_location_and_hint() {
    let cases: &[(&str, &str)] = &[
        ("stor = \"/x\"\n", "test.toml:1:1: unknown key `stor`; did you mean `store`?"),
        (
            "\n[[registry]]\nprefix = \"a\"\nmirror = [\"http://x\"]\n",
            "test.toml:4:1: unknown key `mirror`; did you mean `mirrors`?",
        ),
        ("[run]\ngrace = \"1s\"\n", "test.toml:2:1: unknown key `grace`; did you mean `grace_period`?"),
        ("[run]\nzzzzzzzz = 1\n", "test.toml:2:1: unknown key `zzzzzzzz` (known keys: grace_period, network)"),
        (
            "[connectors.x]\nregistry = \"r\"\npassword = \"p\"\n",
            "test.toml:3:1: unknown key `password`; did you mean `password_secret`?",
        ),
        ("[secrets]\ntok = \"hunter2\"\n", "test.toml:2:7: secret `tok` holds a literal value"),
        ("[secrets]\ntok = \"env:\"\n", "`env:` needs a name"),
        ("[run]\ngrace_period = \"soon\"\n", "test.toml:2:16: `grace_period` is not a duration"),
        ("[run]\nnetwork = \"bridge\"\n", "test.toml:2:11: `network` is `bridge`; expected one of private, none, host"),
        ("[[registry]]\nprefix = \"http://x\"\n", "test.toml:2:10: registry `prefix` is a host"),
        ("[[registry]]\nprefix = \"x\"\nmirrors = [\"x:5000\"]\n", "test.toml:3:12: mirror `x:5000` must be an http"),
        ("[[registry]]\nmirrors = []\n", "test.toml:1:1: missing field `prefix`"),
        ("[connectors.x]\nusername = \"u\"\nregistry = \"r\"\npassword_secret = \"s\"\nregistry = \"r\"\n", "test.toml:5:1"),
        ("[connectors.x]\nregistry = \"r\"\npassword_secret = \"s\"\n", "`password_secret` needs a `username`"),
        ("store = 5\n", "test.toml:1:9: invalid type"),
        ("store = \"\"\n", "`store` is empty"),
        ("[run\n", "test.toml:1:5"),
    ];
    let mut failures = Vec::new();
    for (text, want) in cases {
        match parse(text) {
            Err(e) if e.to_string().contains(want) => {}
            other => failures.push(format!("{text:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let err = parse("[secrets]\ntok = \"hunter2\"\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

fn env_in(dir: &Path, root: bool) -> ConfigEnv {
    ConfigEnv {
        home: Some(dir.join("home")),
        xdg_config_home: None,
        xdg_data_home: None,
        is_root: root,
        uid: if root { 0 } else { 1000 },
    }
}

#[test]
fn load_finds_default_files_and_requires_explicit_ones() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path(), false);
    // Nothing under HOME: defaults (unless this host has /etc/corral/config.toml).
    if !Path::new(SYSTEM_CONFIG).exists() {
        let c = Config::load_with(None, env.clone()).unwrap();
        assert_eq!(c.source, None);
    }
    let user_file = dir.path().join("home/.config/corral/config.toml");
    std::fs::create_dir_all(user_file.parent().unwrap()).unwrap();
    std::fs::write(&user_file, "store = \"/srv/s\"\n").unwrap();
    let c = Config::load_with(None, env.clone()).unwrap();
    assert_eq!(c.source.as_deref(), Some(user_file.as_path()));
    assert_eq!(c.store_dir(None), PathBuf::from("/srv/s"));

    let xdg = ConfigEnv {
        xdg_config_home: Some(dir.path().join("xdg")),
        ..env.clone()
    };
    let xdg_file = dir.path().join("xdg/corral/config.toml");
    std::fs::create_dir_all(xdg_file.parent().unwrap()).unwrap();
    std::fs::write(&xdg_file, "[run]\nnetwork = \"host\"\n").unwrap();
    let c = Config::load_with(None, xdg).unwrap();
    assert_eq!(c.source.as_deref(), Some(xdg_file.as_path()));
    assert_eq!(c.run.network, Some(NetworkMode::Host));

    let missing = dir.path().join("missing.toml");
    let err = Config::load_with(Some(&missing), env.clone()).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("missing.toml does not exist"),
        "{err}"
    );

    let err = Config::load_with(Some(dir.path()), env.clone()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");

    // /dev/null is an empty, valid config (what tests use to isolate).
    let c = Config::load_with(Some(Path::new("/dev/null")), env).unwrap();
    assert!(c.registries.is_empty());

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "\n\nfoo = 1\n").unwrap();
    let err = Config::load_with(Some(&bad), env_in(dir.path(), false)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:1: unknown key `foo` (known keys: store, registry, connectors, secrets, run)",
            bad.display()
        )
    );
}

#[test]
fn store_dir_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let user = env_in(dir.path(), false);
    let c = Config::load_with(Some(Path::new("/dev/null")), user.clone()).unwrap();
    assert_eq!(
        c.store_dir(None),
        dir.path().join("home/.local/share/corral")
    );
    assert_eq!(c.store_dir(Some(Path::new("/cli"))), PathBuf::from("/cli"));
    let xdg = ConfigEnv {
        xdg_data_home: Some(dir.path().join("data")),
        ..user.clone()
    };
    let c = Config::load_with(Some(Path::new("/dev/null")), xdg).unwrap();
    assert_eq!(c.store_dir(None), dir.path().join("data/corral"));
    let c = Config::load_with(Some(Path::new("/dev/null")), env_in(dir.path(), true)).unwrap();
    assert_eq!(c.store_dir(None), PathBuf::from("/var/lib/corral"));
    let no_home = ConfigEnv { home: None, ..user };
    assert_eq!(
        no_home.default_store(),
        std::env::temp_dir().join("corral-1000")
    );
    let mut c = parse("store = \"/from/config\"").unwrap();
    c.env = Some(env_in(dir.path(), true));
    assert_eq!(c.store_dir(None), PathBuf::from("/from/config"));
    assert_eq!(c.store_dir(Some(Path::new("/cli"))), PathBuf::from("/cli"));
}

#[test]
fn registry_args_merge_into_the_config() {
    let mut c = parse(FULL).unwrap();
    c.apply_registry_args(
        &[
            "docker.io=http://10.0.0.1:5000/".to_string(),
            "quay.io=https://q.mirror".to_string(),
        ],
        &["127.0.0.1:5000".to_string(), "quay.io".to_string()],
    )
    .unwrap();
    let docker = c.registry_for("docker.io/library/alpine").unwrap();
    assert_eq!(
        docker.mirrors,
        vec!["http://10.0.0.1:5000", "http://127.0.0.1:5000"]
    );
    let quay = c.registry_for("quay.io/a/b").unwrap();
    assert_eq!(quay.mirrors, vec!["https://q.mirror"]);
    assert!(quay.insecure);
    assert!(c.registry_for("127.0.0.1:5000/x").unwrap().insecure);
    for bad in [
        "docker.io",
        "=http://x",
        "docker.io=ftp://x",
        "http://a=http://b",
    ] {
        let err = c.apply_registry_args(&[bad.to_string()], &[]).unwrap_err();
        assert!(
            err.to_string().contains("--registry-mirror"),
            "{bad}: {err}"
        );
    }
    for bad in ["", "http://x", "a/b"] {
        let err = c.apply_registry_args(&[], &[bad.to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("--insecure-registry"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn connector_for_an_image_without_connector_ref() {
    let c = parse(FULL).unwrap();
    let id = |r: &str| c.connector_for_image(r).map(|(id, _)| id);
    assert_eq!(id("docker.io/me/app:1"), Some("dockerhub"));
    assert_eq!(id("ghcr.io/x/y"), Some("anon"));
    assert_eq!(id("quay.io/x"), None);
}
