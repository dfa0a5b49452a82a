//! Registry credentials: a Harness connector's, then docker's
//! `config.json` (`credHelpers`, `auths`, `credsStore`), then podman's
//! `auth.json`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

/// The username docker uses for an identity (OAuth2 refresh) token, which
/// is then the password.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// A username and password (or token). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read registry credentials file {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse registry credentials file {path}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid base64 `auth` for {registry} in {path}")]
    BadAuth { registry: String, path: PathBuf },
    #[error("credential helper docker-credential-{helper} failed for {registry}: {detail}")]
    Helper {
        helper: String,
        registry: String,
        detail: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Where to look. `Default` reads the process environment.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// Explicit docker config dir (else `$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
    /// Explicit podman auth file (else `$REGISTRY_AUTH_FILE`, else
    /// `$XDG_RUNTIME_DIR/containers/auth.json`).
    pub podman_auth_file: Option<PathBuf>,
}

impl CredentialSources {
    fn docker_config(&self) -> Option<PathBuf> {
        let dir = self
            .docker_config_dir
            .clone()
            .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
        Some(dir.join("config.json"))
    }

    fn podman_auth(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.podman_auth_file {
            return vec![p.clone()];
        }
        let mut out = Vec::new();
        if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
            out.push(PathBuf::from(p));
        }
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            out.push(PathBuf::from(dir).join("containers/auth.json"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            out.push(PathBuf::from(home).join(".config/containers/auth.json"));
        }
        out
    }
}

/// Looks up credentials for `registry` (as named in references, e.g.
/// `docker.io` or `localhost:5000`). `connector` (from a Harness
/// `connectorRef`) wins over every file.
pub fn lookup(
    registry: &str,
    connector: Option<&Credentials>,
    sources: &CredentialSources,
) -> Result<Option<Credentials>, CredentialError> {
    if let Some(c) = connector {
        return Ok(Some(c.clone()));
    }
    let keys = config_keys(registry);
    if let Some(path) = sources.docker_config() {
        if let Some(file) = read_auth_file(&path)? {
            if let Some(found) = from_auth_file(&file, &path, &keys)? {
                return Ok(Some(found));
            }
        }
    }
    for path in sources.podman_auth() {
        if let Some(file) = read_auth_file(&path)? {
            if let Some(found) = from_auth_file(&file, &path, &keys)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// The keys a registry may be stored under.
fn config_keys(registry: &str) -> Vec<String> {
    if registry == super::super::reference::DOCKER_HUB {
        vec![
            "https://index.docker.io/v1/".to_string(),
            "index.docker.io".to_string(),
            "docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
            format!("https://{registry}/v1/"),
            format!("https://{registry}/v2/"),
        ]
    }
}

fn read_auth_file(path: &Path) -> Result<Option<AuthFile>, CredentialError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(source) => {
            return Err(CredentialError::ReadConfig {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CredentialError::ParseConfig {
            path: path.to_path_buf(),
            source,
        })
}

fn from_auth_file(
    file: &AuthFile,
    path: &Path,
    keys: &[String],
) -> Result<Option<Credentials>, CredentialError> {
    for key in keys {
        if let Some(helper) = file.cred_helpers.get(key) {
            return run_helper(helper, &keys[0]);
        }
    }
    for key in keys {
        if let Some(entry) = file.auths.get(key) {
            if let Some(found) = decode_entry(entry, key, path)? {
                return Ok(Some(found));
            }
        }
    }
    match &file.creds_store {
        Some(store) if !store.is_empty() => run_helper(store, &keys[0]),
        _ => Ok(None),
    }
}

fn decode_entry(
    entry: &AuthEntry,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, CredentialError> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials {
            username: IDENTITY_TOKEN_USER.to_string(),
            password: token.to_string(),
        }));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || CredentialError::BadAuth {
            registry: registry.to_string(),
            path: path.to_path_buf(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// `docker-credential-NAME get` with the server URL on stdin.
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>, CredentialError> {
    let err = |detail: String| CredentialError::Helper {
        helper: name.to_string(),
        registry: server.to_string(),
        detail,
    };
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| err(format!("cannot write to it: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("cannot wait for it: {e}")))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The protocol's way of saying "nothing stored".
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!("exited with {}", out.status)));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|e| err(format!("unreadable answer: {e}")))?;
    // `<token>` marks an identity token; the client exchanges it by OAuth2.
    if answer.username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path) -> CredentialSources {
        CredentialSources {
            docker_config_dir: Some(dir.to_path_buf()),
            podman_auth_file: Some(dir.join("auth.json")),
        }
    }

    #[test]
    fn reads_auths_base64_and_docker_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        std::fs::write(
            dir.path().join("config.json"),
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"localhost:5000":{{"username":"a","password":"b"}}}}}}"#
            ),
        )
        .unwrap();
        let s = sources(dir.path());
        let hub = lookup("docker.io", None, &s).unwrap().unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("u", "p:w"));
        let local = lookup("localhost:5000", None, &s).unwrap().unwrap();
        assert_eq!(local.username, "a");
        assert!(lookup("other.io", None, &s).unwrap().is_none());
        assert!(!format!("{hub:?}").contains("p:w"));
    }

    #[test]
    fn connector_wins_and_podman_is_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("auth.json"),
            r#"{"auths":{"quay.io":{"auth":"cTpy"}}}"#,
        )
        .unwrap();
        let s = sources(dir.path());
        let q = lookup("quay.io", None, &s).unwrap().unwrap();
        assert_eq!((q.username.as_str(), q.password.as_str()), ("q", "r"));
        let conn = Credentials {
            username: "c".into(),
            password: "d".into(),
        };
        assert_eq!(lookup("quay.io", Some(&conn), &s).unwrap(), Some(conn));
    }

    #[test]
    fn bad_auth_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"x.io":{"auth":"!!!"}}}"#,
        )
        .unwrap();
        let err = lookup("x.io", None, &sources(dir.path())).unwrap_err();
        assert!(err.to_string().contains("x.io"), "{err}");
    }

    #[test]
    fn credential_helper_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-corraltest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\necho \"{\\\"Username\\\":\\\"h-$server\\\",\\\"Secret\\\":\\\"s\\\"}\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"reg.example":"corraltest"}}"#,
        )
        .unwrap();
        let found = run_helper_with_path(dir.path(), || {
            lookup("reg.example", None, &sources(dir.path()))
        });
        let c = found.unwrap().unwrap();
        assert_eq!(c.username, "h-reg.example");
        assert_eq!(c.password, "s");
    }

    fn run_helper_with_path<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
        // The helper is found through PATH; prepend our temp dir.
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(std::env::split_paths(&old));
        std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
        f()
    }
}
