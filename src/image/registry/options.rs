//! How to reach registries: mirrors, plain-HTTP hosts, offline, platform,
//! credentials, retry and concurrency limits.

use std::time::Duration;

use super::credentials::{CredentialSources, Credentials};
use super::RegistryError;
use crate::image::platform::Platform;

/// Everything about how to reach registries. The command line and the
/// config file both fill this.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Mirrors, tried in order before the registry itself.
    pub mirrors: Vec<Mirror>,
    /// `host[:port]` entries allowed over plain HTTP (loopback always is).
    pub insecure: Vec<String>,
    /// Never touch the network.
    pub offline: bool,
    /// Platform to pick from multi-arch images (default: the host's).
    pub platform: Option<Platform>,
    /// Credentials of a Harness connector for the image's own registry;
    /// they win over docker/podman credential files. Not sent to mirrors.
    pub connector: Option<Credentials>,
    pub credential_sources: CredentialSources,
    /// Attempts per request for 429, 5xx and connection errors.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub retry_base_delay: Duration,
    pub max_retry_delay: Duration,
    /// Concurrent blob downloads per registry host.
    pub downloads_per_host: usize,
    /// Idle time after which a stalled transfer is retried.
    pub read_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            mirrors: Vec::new(),
            insecure: Vec::new(),
            offline: false,
            platform: None,
            connector: None,
            credential_sources: CredentialSources::default(),
            max_attempts: 5,
            retry_base_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(30),
            downloads_per_host: 3,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// `docker.io=http://127.0.0.1:5000`: the registry named in references, and
/// the base URL of a mirror for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub registry: String,
    pub url: String,
}

impl Mirror {
    pub fn parse(value: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidMirror {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let (registry, url) = value
            .split_once('=')
            .ok_or_else(|| invalid("expected REGISTRY=URL"))?;
        let registry = match registry.trim() {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            r if !r.is_empty() => r.to_string(),
            _ => return Err(invalid("empty registry name")),
        };
        let url = url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(url).map_err(|_| invalid("the URL does not parse"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid("the URL must be http:// or https:// with a host"));
        }
        Ok(Mirror {
            registry,
            url: url.to_string(),
        })
    }
}
