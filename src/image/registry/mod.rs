//! Registry client (distribution-spec, pull only): endpoints with mirrors
//! and plain-HTTP rules, `/v2/` ping, Basic and Bearer auth with a token
//! cache, and retries with jittered backoff.

pub mod auth;
pub mod blob;
pub mod credentials;
pub mod fetch_manifest;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::sync::Semaphore;

use self::auth::{parse_www_authenticate, pull_scope, scheme_from_challenges, AuthScheme};
pub use self::credentials::{CredentialError, CredentialSources, Credentials};
use super::platform::Platform;
use super::reference::Reference;

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

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry mirror {value:?}: {reason}")]
    InvalidMirror { value: String, reason: String },
    #[error("cannot build the HTTP client")]
    BuildClient(#[source] reqwest::Error),
    #[error("request to registry {registry} for {what} failed")]
    Request {
        registry: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry} answered {status} for {what}")]
    Status {
        registry: String,
        what: String,
        status: u16,
    },
    #[error("{what} not found on registry {registry}")]
    NotFound { registry: String, what: String },
    #[error("registry {registry} denied access to {repository} ({status}); check the credentials (docker login {registry}, or the connector)")]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
    },
    #[error("{url} is not a registry (GET /v2/ answered {status})")]
    NotARegistry { url: String, status: u16 },
    #[error("token request to {realm} failed")]
    TokenRequest {
        realm: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("token service {realm} answered {status} for {scope}")]
    TokenStatus {
        realm: String,
        scope: String,
        status: u16,
    },
    #[error("token service {realm} returned no token for {scope}")]
    NoToken { realm: String, scope: String },
    #[error("invalid token realm {realm:?} from registry {registry}")]
    BadRealm { registry: String, realm: String },
    #[error("cannot look up credentials for {registry}")]
    LookupCredentials {
        registry: String,
        #[source]
        source: CredentialError,
    },
    #[error("registry {registry} sent {what} that does not match its digest (got {actual})")]
    DigestMismatch {
        registry: String,
        what: String,
        actual: String,
    },
    #[error("registry {registry} sent more than the {limit} bytes expected for {what}")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("registry {registry} sent {got} of {expected} bytes of {what}")]
    Truncated {
        registry: String,
        what: String,
        got: u64,
        expected: u64,
    },
    #[error("registry {registry} sent an invalid digest header {value:?} for {what}")]
    BadDigestHeader {
        registry: String,
        what: String,
        value: String,
    },
    #[error("cannot write download {path}")]
    WriteBlob {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no platform {platform} in {reference} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("image index nesting in {reference} is deeper than {limit}")]
    IndexTooDeep { reference: String, limit: usize },
    #[error(
        "offline: {what} of {reference} is not in the store and --offline forbids the network"
    )]
    Offline { reference: String, what: String },
    #[error("invalid manifest of {reference}")]
    Manifest {
        reference: String,
        #[source]
        source: super::manifest::ManifestError,
    },
}

impl RegistryError {
    /// Worth trying the next endpoint (mirror) for.
    fn is_endpoint_failure(&self) -> bool {
        !matches!(
            self,
            RegistryError::WriteBlob { .. } | RegistryError::Offline { .. }
        )
    }
}

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
        for (i, ep) in endpoints.into_iter().enumerate() {
            let base = ep.base.clone();
            match op(ep).await {
                Ok(v) => return Ok(v),
                Err(e) if i < last && e.is_endpoint_failure() => {
                    tracing::warn!(
                        "mirror {base} failed for {what} of {reference}: {e}; trying the next"
                    );
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

    /// `GET /v2/` once per endpoint to learn its auth scheme.
    async fn ping(&self, ep: &Endpoint) -> Result<AuthScheme, RegistryError> {
        if let Some(s) = self
            .schemes
            .lock()
            .ok()
            .and_then(|m| m.get(&ep.base).cloned())
        {
            return Ok(s);
        }
        let url = format!("{}/v2/", ep.base);
        let resp = self
            .retrying(ep, "the /v2/ ping", || self.http.get(&url))
            .await?;
        let scheme = match resp.status() {
            s if s.is_success() => AuthScheme::Anonymous,
            StatusCode::UNAUTHORIZED => scheme_of(resp.headers()).unwrap_or(AuthScheme::Anonymous),
            s => {
                return Err(RegistryError::NotARegistry {
                    url,
                    status: s.as_u16(),
                })
            }
        };
        if let Ok(mut m) = self.schemes.lock() {
            m.insert(ep.base.clone(), scheme.clone());
        }
        Ok(scheme)
    }

    /// Sends an authenticated request for `repository`, re-authenticating
    /// once on 401 and retrying 429/5xx/connection errors.
    pub async fn send(
        &self,
        ep: &Endpoint,
        repository: &str,
        what: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut scheme = self.ping(ep).await?;
        let scope = pull_scope(repository);
        let mut reauthenticated = false;
        loop {
            let resp = {
                let auth = self.authorization(ep, &scheme, &scope).await?;
                self.retrying(ep, what, || {
                    let req = make(&self.http);
                    match &auth {
                        Some(value) => req.header(AUTHORIZATION, value),
                        None => req,
                    }
                })
                .await?
            };
            let status = resp.status();
            let denied = status == StatusCode::UNAUTHORIZED
                || (status == StatusCode::FORBIDDEN && matches!(scheme, AuthScheme::Bearer { .. }));
            if denied && !reauthenticated {
                reauthenticated = true;
                if let Some(s) = scheme_of(resp.headers()) {
                    scheme = s;
                }
                if let Ok(mut tokens) = self.tokens.lock() {
                    tokens.remove(&(ep.base.clone(), scope.clone()));
                }
                continue;
            }
            if denied {
                return Err(RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    repository: repository.to_string(),
                    status: status.as_u16(),
                });
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` value for a request, fetching a token if needed.
    async fn authorization(
        &self,
        ep: &Endpoint,
        scheme: &AuthScheme,
        scope: &str,
    ) -> Result<Option<String>, RegistryError> {
        match scheme {
            AuthScheme::Anonymous => Ok(None),
            AuthScheme::Basic => Ok(self.credentials_for(ep)?.map(|c| basic(&c))),
            AuthScheme::Bearer { realm, service } => {
                let key = (ep.base.clone(), scope.to_string());
                if let Some(t) = self.tokens.lock().ok().and_then(|m| m.get(&key).cloned()) {
                    if t.expires > Instant::now() {
                        return Ok(Some(format!("Bearer {}", t.value)));
                    }
                }
                let token = self
                    .fetch_token(ep, realm, service.as_deref(), scope)
                    .await?;
                if let Ok(mut m) = self.tokens.lock() {
                    m.insert(key, token.clone());
                }
                Ok(Some(format!("Bearer {}", token.value)))
            }
        }
    }

    async fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, RegistryError> {
        let mut url = reqwest::Url::parse(realm).map_err(|_| RegistryError::BadRealm {
            registry: ep.host.clone(),
            realm: realm.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::BadRealm {
                registry: ep.host.clone(),
                realm: realm.to_string(),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let creds = self.credentials_for(ep)?;
        let resp = self
            .retrying(ep, "a token", || {
                let req = self.http.get(url.clone());
                match &creds {
                    Some(c) => req.basic_auth(&c.username, Some(&c.password)),
                    None => req,
                }
            })
            .await
            .map_err(|e| match e {
                RegistryError::Request { source, .. } => RegistryError::TokenRequest {
                    realm: realm.to_string(),
                    source,
                },
                other => other,
            })?;
        if !resp.status().is_success() {
            return Err(RegistryError::TokenStatus {
                realm: realm.to_string(),
                scope: scope.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let body: auth::TokenResponse =
            resp.json()
                .await
                .map_err(|source| RegistryError::TokenRequest {
                    realm: realm.to_string(),
                    source,
                })?;
        let (value, expires_in) = body.into_token().ok_or_else(|| RegistryError::NoToken {
            realm: realm.to_string(),
            scope: scope.to_string(),
        })?;
        // Renew a little early so a token never expires in flight.
        let lifetime = Duration::from_secs(expires_in.saturating_sub(5).max(5));
        Ok(Token {
            value,
            expires: Instant::now() + lifetime,
        })
    }

    /// Sends a request, retrying connection errors, 429 and 5xx with
    /// jittered exponential backoff (honouring `Retry-After`). The last
    /// retryable response is returned as is.
    async fn retrying(
        &self,
        ep: &Endpoint,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let attempts = self.options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match make().send().await {
                Err(source) => {
                    if attempt >= attempts {
                        return Err(RegistryError::Request {
                            registry: ep.host.clone(),
                            what: what.to_string(),
                            source,
                        });
                    }
                    tracing::debug!("{what} from {}: {source}; retrying", ep.host);
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || attempt >= attempts {
                        return Ok(resp);
                    }
                    let hint = retry_after(resp.headers());
                    tracing::debug!("{what} from {}: {status}; retrying", ep.host);
                    tokio::time::sleep(self.backoff(attempt, hint)).await;
                }
            }
        }
    }

    /// Delay before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = self.options.max_retry_delay;
        if let Some(hint) = retry_after {
            return hint.min(max);
        }
        let base = self.options.retry_base_delay.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
        let jittered = base * (0.5 + fastrand::f64());
        Duration::from_secs_f64(jittered).min(max)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

fn scheme_of(headers: &HeaderMap) -> Option<AuthScheme> {
    let mut challenges = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        if let Ok(text) = value.to_str() {
            challenges.extend(parse_www_authenticate(text));
        }
    }
    scheme_from_challenges(&challenges)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn basic(c: &Credentials) -> String {
    use base64::Engine;
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
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
