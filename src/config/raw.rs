//! The TOML shape of the config file and its checks. Unknown keys are
//! errors (a typo would otherwise silently drop a setting) with the file,
//! line and the closest known key.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{secret_message, Config, ConfigError, ConnectorConfig, RegistryConfig, RunDefaults};
use crate::cli::NetworkMode;
use crate::pipeline::secret::SecretSource;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: Option<Spanned<String>>,
    #[serde(default)]
    registry: Vec<RawRegistry>,
    #[serde(default)]
    connectors: BTreeMap<String, Spanned<RawConnector>>,
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    run: RawRun,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    prefix: Spanned<String>,
    #[serde(default)]
    mirrors: Vec<Spanned<String>>,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    registry: Spanned<String>,
    username: Option<String>,
    password_secret: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRun {
    grace_period: Option<Spanned<String>>,
    network: Option<Spanned<String>>,
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ConfigError::at(path, text, offset, describe(e.message()))
    })?;
    let err = |offset: usize, message: String| ConfigError::at(path, text, offset, message);
    let base = path.parent().unwrap_or(Path::new(""));

    let store = match raw.store {
        Some(s) if s.get_ref().trim().is_empty() => {
            return Err(err(s.span().start, "`store` is empty".into()))
        }
        Some(s) => Some(base.join(s.into_inner())),
        None => None,
    };

    let mut registries = Vec::new();
    for r in raw.registry {
        let prefix = r.prefix.get_ref().trim().to_string();
        if prefix.is_empty() {
            return Err(err(
                r.prefix.span().start,
                "registry `prefix` is empty".into(),
            ));
        }
        if prefix.contains("://") {
            return Err(err(
                r.prefix.span().start,
                "registry `prefix` is a host[:port][/path] such as `docker.io`, not a URL; \
                 put URLs in `mirrors`"
                    .to_string(),
            ));
        }
        let mut mirrors = Vec::new();
        for m in r.mirrors {
            let url = m.get_ref().trim_end_matches('/').to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(err(
                    m.span().start,
                    format!("mirror `{url}` must be an http:// or https:// URL"),
                ));
            }
            mirrors.push(url);
        }
        registries.push(RegistryConfig {
            prefix,
            mirrors,
            insecure: r.insecure,
        });
    }

    let mut connectors = BTreeMap::new();
    for (id, spanned) in raw.connectors {
        let at = spanned.span().start;
        let c = spanned.into_inner();
        if c.registry.get_ref().trim().is_empty() {
            return Err(err(
                c.registry.span().start,
                format!("connector `{id}`: `registry` is empty"),
            ));
        }
        if c.password_secret.is_some() && c.username.is_none() {
            return Err(err(
                at,
                format!("connector `{id}`: `password_secret` needs a `username`"),
            ));
        }
        connectors.insert(
            id,
            ConnectorConfig {
                registry: c.registry.into_inner(),
                username: c.username,
                password_secret: c.password_secret.map(Spanned::into_inner),
            },
        );
    }

    let mut secrets = BTreeMap::new();
    for (id, spec) in raw.secrets {
        let source = SecretSource::parse(&id, spec.get_ref())
            .map_err(|e| err(spec.span().start, secret_message(&e, &id)))?;
        let source = match source {
            SecretSource::File(p) => SecretSource::File(base.join(p)),
            env => env,
        };
        secrets.insert(id, source);
    }

    let mut run = RunDefaults::default();
    if let Some(g) = raw.run.grace_period {
        let d = humantime::parse_duration(g.get_ref().trim()).map_err(|e| {
            err(
                g.span().start,
                format!("`grace_period` is not a duration such as \"10s\" or \"1m30s\": {e}"),
            )
        })?;
        run.grace_period = Some(d);
    }
    if let Some(n) = raw.run.network {
        let mode =
            <NetworkMode as clap::ValueEnum>::from_str(n.get_ref().trim(), true).map_err(|_| {
                err(
                    n.span().start,
                    format!(
                        "`network` is `{}`; expected one of private, none, host",
                        n.get_ref()
                    ),
                )
            })?;
        run.network = Some(mode);
    }

    Ok(Config {
        source: Some(path.to_path_buf()),
        store,
        registries,
        connectors,
        secrets,
        run,
        env: None,
    })
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a
/// message with the closest known key.
fn describe(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    // A small edit distance, or a shortened key (`grace` for `grace_period`).
    let closest = known
        .iter()
        .map(|k| (strsim::levenshtein(field, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .or_else(|| {
            known
                .iter()
                .find(|k| field.len() >= 3 && (k.starts_with(field) || field.starts_with(*k)))
                .map(|k| (0, *k))
        });
    let list = known.join(", ");
    match closest {
        Some((_, k)) => format!("unknown key `{field}`; did you mean `{k}`? (known keys: {list})"),
        None if known.is_empty() => format!("unknown key `{field}`"),
        None => format!("unknown key `{field}` (known keys: {list})"),
    }
}
