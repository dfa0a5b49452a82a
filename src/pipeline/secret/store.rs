//! Where secret values come from: `--secret ID` (environment variable ID),
//! `--secret ID=env:VAR`, `--secret ID=file:PATH`, `--secrets-file` (dotenv)
//! and the `[secrets]` table of the config file. Never a literal value on
//! the command line: it would land in shell history and `ps` output.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Masker, Secret};
use crate::pipeline::expr::SecretScope;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret `{id}` is given as a literal value; pass it as `--secret {id}=env:VAR`, \
         `--secret {id}=file:PATH` or in a --secrets-file, so it stays out of shell history and process listings"
    )]
    LiteralValue { id: String },
    #[error("a secret spec needs an id: ID, ID=env:VAR or ID=file:PATH")]
    EmptyId,
    #[error("secret id `{id}` contains whitespace or control characters")]
    InvalidId { id: String },
    #[error("secret `{id}`: `{kind}:` needs a name after the colon")]
    EmptySource { id: String, kind: &'static str },
    #[error("secret `{id}`: environment variable `{var}` is not set")]
    ReadEnv { id: String, var: String },
    #[error("secret `{id}`: environment variable `{var}` is not valid UTF-8")]
    DecodeEnv { id: String, var: String },
    #[error("secret `{id}`: failed to read file {path}")]
    ReadFile {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret `{id}`: file {path} is not valid UTF-8")]
    DecodeFile { id: String, path: PathBuf },
    #[error("failed to read secrets file {path}")]
    ReadSecretsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    ParseSecretsFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Where one secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Parses `env:VAR` or `file:PATH`; anything else is a literal value,
    /// which is refused without repeating it.
    pub fn parse(id: &str, spec: &str) -> Result<SecretSource, SecretError> {
        if let Some(var) = spec.strip_prefix("env:") {
            if var.is_empty() {
                return Err(SecretError::EmptySource {
                    id: id.to_string(),
                    kind: "env",
                });
            }
            Ok(SecretSource::Env(var.to_string()))
        } else if let Some(path) = spec.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::EmptySource {
                    id: id.to_string(),
                    kind: "file",
                });
            }
            Ok(SecretSource::File(PathBuf::from(path)))
        } else {
            Err(SecretError::LiteralValue { id: id.to_string() })
        }
    }

    /// Parses one `--secret` argument into its id and source.
    pub fn parse_cli(spec: &str) -> Result<(String, SecretSource), SecretError> {
        let (id, source) = match spec.split_once('=') {
            Some((id, rest)) => (id, Some(rest)),
            None => (spec, None),
        };
        let id = id.trim();
        check_id(id)?;
        let source = match source {
            Some(rest) => SecretSource::parse(id, rest)?,
            None => SecretSource::Env(id.to_string()),
        };
        Ok((id.to_string(), source))
    }

    fn read(
        &self,
        id: &str,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(var) => {
                let value = env(var).ok_or_else(|| SecretError::ReadEnv {
                    id: id.to_string(),
                    var: var.clone(),
                })?;
                let value = value.into_string().map_err(|_| SecretError::DecodeEnv {
                    id: id.to_string(),
                    var: var.clone(),
                })?;
                Ok(Secret::new(value))
            }
            SecretSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| SecretError::ReadFile {
                    id: id.to_string(),
                    path: path.clone(),
                    source,
                })?;
                let mut value = String::from_utf8(bytes).map_err(|_| SecretError::DecodeFile {
                    id: id.to_string(),
                    path: path.clone(),
                })?;
                // `echo token > file` adds one newline that is not part of the token.
                if value.ends_with('\n') {
                    value.pop();
                    if value.ends_with('\r') {
                        value.pop();
                    }
                }
                Ok(Secret::new(value))
            }
        }
    }
}

fn check_id(id: &str) -> Result<(), SecretError> {
    if id.is_empty() {
        return Err(SecretError::EmptyId);
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SecretError::InvalidId { id: id.to_string() });
    }
    Ok(())
}

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// The secrets of one run, by id.
///
/// Values from the command line and the secrets file are read at once;
/// sources from the config file are read when a pipeline first needs them
/// (`require`), so an unused entry with an unset variable is no error.
#[derive(Clone, Default)]
pub struct SecretStore {
    values: BTreeMap<String, Secret>,
    pending: BTreeMap<String, SecretSource>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("ids", &self.values.keys().collect::<Vec<_>>())
            .field("pending", &self.pending)
            .finish()
    }
}

impl SecretStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the store of a run. Later sources win: config file, then the
    /// secrets file, then `--secret` arguments.
    pub fn load(
        cli_specs: &[String],
        secrets_file: Option<&Path>,
        config: &BTreeMap<String, SecretSource>,
    ) -> Result<SecretStore, SecretError> {
        Self::load_with_env(cli_specs, secrets_file, config, &process_env)
    }

    /// `load` with an injected environment (for tests).
    pub fn load_with_env(
        cli_specs: &[String],
        secrets_file: Option<&Path>,
        config: &BTreeMap<String, SecretSource>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<SecretStore, SecretError> {
        let mut store = SecretStore::new();
        for (id, source) in config {
            check_id(id)?;
            store.pending.insert(id.clone(), source.clone());
        }
        if let Some(path) = secrets_file {
            store.add_secrets_file(path)?;
        }
        for spec in cli_specs {
            let (id, source) = SecretSource::parse_cli(spec)?;
            let value = source.read(&id, env)?;
            store.insert(id, value);
        }
        Ok(store)
    }

    pub fn insert(&mut self, id: impl Into<String>, value: Secret) {
        let id = id.into();
        self.pending.remove(&id);
        self.values.insert(id, value);
    }

    /// Adds every `KEY=value` of a dotenv file.
    pub fn add_secrets_file(&mut self, path: &Path) -> Result<(), SecretError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SecretError::ReadSecretsFile {
                path: path.to_path_buf(),
                source,
            })?;
        let entries = super::dotenv::parse(&text).map_err(|(line, reason)| {
            SecretError::ParseSecretsFile {
                path: path.to_path_buf(),
                line,
                reason,
            }
        })?;
        for (id, value) in entries {
            check_id(&id)?;
            self.insert(id, Secret::new(value));
        }
        Ok(())
    }

    /// Candidate keys of a reference: `account.id` first, then `id`.
    fn keys(scope: SecretScope, id: &str) -> Vec<String> {
        match scope {
            SecretScope::Project => vec![id.to_string()],
            SecretScope::Org => vec![format!("org.{id}"), id.to_string()],
            SecretScope::Account => vec![format!("account.{id}"), id.to_string()],
        }
    }

    /// Reads a config-file source the reference needs, if not read yet.
    /// `Ok(false)` when nobody gave the secret.
    pub fn require(&mut self, scope: SecretScope, id: &str) -> Result<bool, SecretError> {
        self.require_with_env(scope, id, &process_env)
    }

    pub fn require_with_env(
        &mut self,
        scope: SecretScope,
        id: &str,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<bool, SecretError> {
        for key in Self::keys(scope, id) {
            if self.values.contains_key(&key) {
                return Ok(true);
            }
            if let Some(source) = self.pending.get(&key) {
                let value = source.read(&key, env)?;
                self.insert(key, value);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The value of a reference, if read (`require` reads pending ones).
    pub fn get(&self, scope: SecretScope, id: &str) -> Option<&Secret> {
        Self::keys(scope, id)
            .iter()
            .find_map(|key| self.values.get(key))
    }

    /// Ids with a value or a pending source.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        let mut ids: Vec<&str> = self
            .values
            .keys()
            .chain(self.pending.keys())
            .map(String::as_str)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
    }

    /// Adds every value read so far to `masker`. Harness masks all secrets
    /// of a run, used or not.
    pub fn add_to_masker(&self, masker: &mut Masker) {
        for value in self.values.values() {
            masker.add(value.expose());
        }
    }

    pub fn masker(&self) -> Masker {
        let mut masker = Masker::new();
        self.add_to_masker(&mut masker);
        masker
    }
}
