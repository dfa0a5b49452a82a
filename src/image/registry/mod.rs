//! Registry client (distribution-spec, pull only): endpoints with mirrors
//! and plain-HTTP rules, `/v2/` ping, Basic and Bearer auth with a token
//! cache, and retries with jittered backoff.

pub mod auth;
pub mod blob;
pub mod credentials;
pub mod error;
pub mod fetch_manifest;
pub mod options;
mod request;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use self::auth::AuthScheme;
pub use self::blob::{PartialWatcher, Watcher};
pub use self::credentials::{CredentialError, CredentialSources, Credentials};
pub use self::error::RegistryError;
pub use self::options::{Mirror, RegistryOptions};
use super::reference::Reference;

/// One place to fetch from: a mirror or the registry itself.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:5000` (no trailing slash, no path).
    pub base: String,
    /// `host[:port]` for messages and credential lookup.
    pub host: String,
    pub is_mirror: bool,
}

/// A cached bearer token.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// A registry client shared by all pulls of a process.
pub struct Client {
    http: reqwest::Client,
    pub options: RegistryOptions,
    schemes: Mutex<HashMap<String, AuthScheme>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    host_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Client {
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(options.read_timeout)
            // The default policy (10 hops) strips Authorization on cross-origin hops.
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(RegistryError::BuildClient)?;
        Ok(Client {
            http,
            options,
            schemes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            host_slots: Mutex::new(HashMap::new()),
        })
    }

    /// Mirrors for the reference's registry in order, then the registry.
    pub fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .options
            .mirrors
            .iter()
            .filter(|m| m.registry == reference.registry())
            .filter_map(|m| {
                let url = reqwest::Url::parse(&m.url).ok()?;
                let host = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str()?),
                    None => url.host_str()?.to_string(),
                };
                Some(Endpoint {
                    base: format!("{}://{host}", url.scheme()),
                    host,
                    is_mirror: true,
                })
            })
            .collect();
        let host = reference.api_host().to_string();
        let scheme = if is_loopback(&host) || self.options.insecure.contains(&host) {
            "http"
        } else {
            "https"
        };
        out.push(Endpoint {
            base: format!("{scheme}://{host}"),
            host: reference.registry().to_string(),
            is_mirror: false,
        });
        out
    }

    /// Runs `op` against each endpoint in turn until one succeeds.
    pub async fn with_endpoints<T, F, Fut>(
        &self,
        reference: &Reference,
        what: &str,
        mut op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        if self.options.offline {
            return Err(RegistryError::Offline {
                reference: reference.to_string(),
                what: what.to_string(),
            });
        }
        let endpoints = self.endpoints(reference);
        let last = endpoints.len() - 1;
        let mut result = None;
        // What each mirror said, for the error if the registry fails too:
        // its own failure alone (say a DNS error) hides the mirror's answer.
        let mut mirrors: Vec<String> = Vec::new();
        for (i, ep) in endpoints.into_iter().enumerate() {
            let base = ep.base.clone();
            match op(ep).await {
                Ok(v) => return Ok(v),
                Err(e) if i < last && e.is_endpoint_failure() => {
                    tracing::warn!(
                        "mirror {base} failed for {what} of {reference}: {e}; trying the next"
                    );
                    mirrors.push(format!("mirror {base}: {}", crate::error_chain(&e)));
                }
                Err(e) if !mirrors.is_empty() && e.is_endpoint_failure() => {
                    result = Some(RegistryError::MirrorsAndUpstream {
                        reference: reference.to_string(),
                        what: what.to_string(),
                        mirrors: mirrors.join("; "),
                        registry: reference.registry().to_string(),
                        source: Box::new(e),
                    });
                    break;
                }
                Err(e) => {
                    result = Some(e);
                    break;
                }
            }
        }
        Err(result.unwrap_or(RegistryError::Offline {
            reference: reference.to_string(),
            what: what.to_string(),
        }))
    }

    /// A slot among the concurrent downloads allowed for `host`.
    pub async fn download_slot(&self, host: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let sem = {
            let mut slots = self.host_slots.lock().ok()?;
            slots
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.options.downloads_per_host.max(1))))
                .clone()
        };
        sem.acquire_owned().await.ok()
    }

    fn credentials_for(&self, ep: &Endpoint) -> Result<Option<Credentials>, RegistryError> {
        if let Ok(cache) = self.credentials.lock() {
            if let Some(found) = cache.get(&ep.base) {
                return Ok(found.clone());
            }
        }
        let connector = if ep.is_mirror {
            None
        } else {
            self.options.connector.as_ref()
        };
        let found = credentials::lookup(&ep.host, connector, &self.options.credential_sources)
            .map_err(|source| RegistryError::LookupCredentials {
                registry: ep.host.clone(),
                source,
            })?;
        if let Ok(mut cache) = self.credentials.lock() {
            cache.insert(ep.base.clone(), found.clone());
        }
        Ok(found)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Loopback registries may use plain HTTP without being configured.
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:80",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "192.168.1.1",
            "example.com",
            "[fe80::1]:1",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn endpoints_order_and_schemes() {
        let opts = RegistryOptions {
            mirrors: vec![
                Mirror::parse("docker.io=http://127.0.0.1:5000").unwrap(),
                Mirror::parse("index.docker.io=https://mirror.example/").unwrap(),
                Mirror::parse("quay.io=https://q.example").unwrap(),
            ],
            insecure: vec!["reg.lan:5000".into()],
            ..RegistryOptions::default()
        };
        let c = Client::new(opts).unwrap();
        let eps = c.endpoints(&Reference::parse("alpine").unwrap());
        let bases: Vec<_> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "http://127.0.0.1:5000",
                "https://mirror.example",
                "https://registry-1.docker.io"
            ]
        );
        let eps = c.endpoints(&Reference::parse("reg.lan:5000/x").unwrap());
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].base, "http://reg.lan:5000");
        let eps = c.endpoints(&Reference::parse("reg.lan:5001/x").unwrap());
        assert_eq!(eps[0].base, "https://reg.lan:5001");
    }

    #[test]
    fn mirror_parsing() {
        assert!(Mirror::parse("docker.io").is_err());
        assert!(Mirror::parse("docker.io=ftp://x").is_err());
        assert!(Mirror::parse("=http://x").is_err());
        assert_eq!(
            Mirror::parse("docker.io=http://127.0.0.1:5000/")
                .unwrap()
                .url,
            "http://127.0.0.1:5000"
        );
    }

    #[test]
    fn backoff_honours_retry_after_and_caps() {
        let opts = RegistryOptions {
            retry_base_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(2),
            ..RegistryOptions::default()
        };
        let c = Client::new(opts).unwrap();
        assert_eq!(
            c.backoff(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            c.backoff(1, Some(Duration::from_secs(100))),
            Duration::from_secs(2)
        );
        let d = c.backoff(1, None);
        assert!(
            d >= Duration::from_millis(50) && d <= Duration::from_millis(150),
            "{d:?}"
        );
        assert!(c.backoff(30, None) <= Duration::from_secs(2));
    }
}
