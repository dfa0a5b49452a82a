//! Config file (TOML): store path, registries, mirrors, credentials, connectors, secrets.
//!
//! ```toml
//! store = "/srv/corral"              # relative paths are relative to this file
//!
//! [[registry]]
//! prefix = "docker.io"               # host, or host/path prefix of image references
//! mirrors = ["http://127.0.0.1:5000"]
//! insecure = true                    # plain HTTP / unverified TLS for this registry
//!
//! [connectors.dockerhub]             # a Harness `connectorRef` id
//! registry = "docker.io"
//! username = "me"
//! password_secret = "dockerhub_pat"  # a secret id, see [secrets]
//!
//! [secrets]
//! dockerhub_pat = "env:DOCKERHUB_PAT"
//! signing_key = "file:/run/keys/cosign.key"
//!
//! [run]
//! grace_period = "10s"
//! network = "private"                # private | none | host
//! ```
//!
//! Lookup: `--config FILE` (or `CORRAL_CONFIG`), which must exist; else the
//! first of `$XDG_CONFIG_HOME/corral/config.toml` (default
//! `~/.config/corral/config.toml`) and `/etc/corral/config.toml` that exists;
//! else built-in defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::NetworkMode;
use crate::pipeline::secret::{SecretError, SecretSource};

const SYSTEM_CONFIG: &str = "/etc/corral/config.toml";
const ROOT_STORE: &str = "/var/lib/corral";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist (given with --config or CORRAL_CONFIG)")]
    NotFound { path: PathBuf },
    #[error("failed to read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "invalid --registry-mirror `{arg}`: expected REGISTRY=URL with an http:// or https:// URL"
    )]
    ParseMirrorArg { arg: String },
    #[error("invalid --insecure-registry `{arg}`: expected HOST[:PORT]")]
    ParseInsecureArg { arg: String },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The process environment that decides default paths (injected in tests).
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub is_root: bool,
    pub uid: u32,
}

impl ConfigEnv {
    pub fn from_process() -> Self {
        // XDG says relative values are invalid and must be ignored.
        let abs = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let uid = rustix::process::geteuid().as_raw();
        ConfigEnv {
            home: abs("HOME"),
            xdg_config_home: abs("XDG_CONFIG_HOME"),
            xdg_data_home: abs("XDG_DATA_HOME"),
            is_root: uid == 0,
            uid,
        }
    }

    /// Default config files, in lookup order.
    pub fn default_config_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        if let Some(dir) = &self.xdg_config_home {
            paths.push(dir.join("corral/config.toml"));
        } else if let Some(home) = &self.home {
            paths.push(home.join(".config/corral/config.toml"));
        }
        paths.push(PathBuf::from(SYSTEM_CONFIG));
        paths
    }

    pub fn default_store(&self) -> PathBuf {
        if self.is_root {
            PathBuf::from(ROOT_STORE)
        } else if let Some(dir) = &self.xdg_data_home {
            dir.join("corral")
        } else if let Some(home) = &self.home {
            home.join(".local/share/corral")
        } else {
            // No HOME at all (rare: some service managers); stay per-user.
            std::env::temp_dir().join(format!("corral-{}", self.uid))
        }
    }
}

/// A registry host (or host/path prefix) with its mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub prefix: String,
    /// Mirror base URLs, tried in order before the registry itself.
    pub mirrors: Vec<String>,
    /// Allow plain HTTP (and unverified TLS) to this registry and its mirrors.
    pub insecure: bool,
}

/// Credentials of a Harness `connectorRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub registry: String,
    pub username: Option<String>,
    /// Secret id of the password or token (resolved through the secret store).
    pub password_secret: Option<String>,
}

/// Defaults of `corral run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDefaults {
    /// SIGTERM-to-SIGKILL grace period when stopping Background steps.
    pub grace_period: Option<Duration>,
    pub network: Option<NetworkMode>,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file this came from; `None` when no file was found.
    pub source: Option<PathBuf>,
    /// `store`, made absolute against the config file's directory.
    pub store: Option<PathBuf>,
    pub registries: Vec<RegistryConfig>,
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// `[secrets]`: sources only; values are read when needed.
    pub secrets: BTreeMap<String, SecretSource>,
    pub run: RunDefaults,
    env: Option<ConfigEnv>,
}

impl Config {
    /// Loads the explicit file (which must exist) or the first default file
    /// that exists, else returns defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with(explicit, ConfigEnv::from_process())
    }

    pub fn load_with(explicit: Option<&Path>, env: ConfigEnv) -> Result<Config, ConfigError> {
        let mut config = match explicit {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Self::parse(&text, path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ConfigError::NotFound {
                        path: path.to_path_buf(),
                    })
                }
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            },
            None => {
                let mut found = None;
                for path in env.default_config_paths() {
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            found = Some(Self::parse(&text, &path)?);
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(ConfigError::Read { path, source }),
                    }
                }
                found.unwrap_or_default()
            }
        };
        match &config.source {
            Some(path) => tracing::debug!(path = %path.display(), "loaded config file"),
            None => tracing::debug!("no config file; using defaults"),
        }
        config.env = Some(env);
        Ok(config)
    }

    /// Parses config text; `path` names the file in errors and anchors
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        raw::parse(text, path)
    }

    /// The store directory: `--store`/`CORRAL_STORE`, else `store` of the
    /// config file, else `/var/lib/corral` for root and
    /// `$XDG_DATA_HOME/corral` (default `~/.local/share/corral`) otherwise.
    pub fn store_dir(&self, cli_override: Option<&Path>) -> PathBuf {
        if let Some(dir) = cli_override {
            return dir.to_path_buf();
        }
        if let Some(dir) = &self.store {
            return dir.clone();
        }
        match &self.env {
            Some(env) => env.default_store(),
            None => ConfigEnv::from_process().default_store(),
        }
    }

    /// The registry entry with the longest prefix matching `reference`
    /// (`docker.io` matches `docker.io/library/alpine:3`). Give the
    /// normalized reference: `alpine` must already read `docker.io/library/alpine`.
    pub fn registry_for(&self, reference: &str) -> Option<&RegistryConfig> {
        self.registries
            .iter()
            .filter(|r| prefix_matches(&r.prefix, reference))
            .max_by_key(|r| r.prefix.len())
    }

    /// Merges `--registry-mirror REGISTRY=URL` and `--insecure-registry HOST`:
    /// command-line mirrors are tried before those of the config file.
    pub fn apply_registry_args(
        &mut self,
        mirrors: &[String],
        insecure: &[String],
    ) -> Result<(), ConfigError> {
        for arg in mirrors.iter().rev() {
            let parsed = arg.split_once('=').and_then(|(registry, url)| {
                let registry = registry.trim().trim_end_matches('/');
                let url = url.trim().trim_end_matches('/');
                let ok = !registry.is_empty()
                    && !registry.contains("://")
                    && (url.starts_with("http://") || url.starts_with("https://"));
                ok.then(|| (registry.to_string(), url.to_string()))
            });
            let Some((registry, url)) = parsed else {
                return Err(ConfigError::ParseMirrorArg { arg: arg.clone() });
            };
            let entry = self.registry_entry(&registry);
            entry.mirrors.retain(|m| m != &url);
            entry.mirrors.insert(0, url);
        }
        for arg in insecure {
            let host = arg.trim().trim_end_matches('/');
            if host.is_empty() || host.contains("://") || host.contains('/') {
                return Err(ConfigError::ParseInsecureArg { arg: arg.clone() });
            }
            self.registry_entry(host).insecure = true;
        }
        Ok(())
    }

    /// The entry whose prefix is exactly `prefix`, created when missing.
    fn registry_entry(&mut self, prefix: &str) -> &mut RegistryConfig {
        let index = match self.registries.iter().position(|r| r.prefix == prefix) {
            Some(i) => i,
            None => {
                self.registries.push(RegistryConfig {
                    prefix: prefix.to_string(),
                    mirrors: Vec::new(),
                    insecure: false,
                });
                self.registries.len() - 1
            }
        };
        &mut self.registries[index]
    }

    /// Credentials for an image without a `connectorRef`: the connector
    /// whose `registry` is the longest prefix of `reference`.
    pub fn connector_for_image(&self, reference: &str) -> Option<(&str, &ConnectorConfig)> {
        self.connectors
            .iter()
            .filter(|(_, c)| prefix_matches(&c.registry, reference))
            .max_by_key(|(_, c)| c.registry.len())
            .map(|(id, c)| (id.as_str(), c))
    }

    /// A connector by its `connectorRef`; `account.x`/`org.x` fall back to `x`.
    pub fn connector(&self, connector_ref: &str) -> Option<&ConnectorConfig> {
        self.connectors.get(connector_ref).or_else(|| {
            let bare = connector_ref
                .strip_prefix("account.")
                .or_else(|| connector_ref.strip_prefix("org."))?;
            self.connectors.get(bare)
        })
    }
}

/// `docker.io` matches `docker.io`, `docker.io/x` and `docker.io:443/x`'s
/// host part, but not `docker.iox/x`.
fn prefix_matches(prefix: &str, reference: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    reference == p
        || reference
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with(['/', ':', '@']))
}

mod raw;

impl ConfigError {
    fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, column) = crate::pipeline::expr::line_col(text, offset);
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Message for a `[secrets]` value that is not `env:` or `file:`.
fn secret_message(err: &SecretError, id: &str) -> String {
    match err {
        SecretError::LiteralValue { .. } => format!(
            "secret `{id}` holds a literal value; write `{id} = \"env:VAR\"` or \
             `{id} = \"file:PATH\"` so the value stays out of the config file"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
