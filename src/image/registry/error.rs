//! Errors of the registry client. Each names the registry and what was
//! being fetched.

use super::credentials::CredentialError;

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
    /// Every mirror failed, then the registry itself: both are named.
    #[error("no mirror had {what} of {reference} ({mirrors}) and registry {registry} failed too; push the image to the mirror, or make {registry} reachable")]
    MirrorsAndUpstream {
        reference: String,
        what: String,
        mirrors: String,
        registry: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("invalid manifest of {reference}")]
    Manifest {
        reference: String,
        #[source]
        source: crate::image::manifest::ManifestError,
    },
}

impl RegistryError {
    /// Worth trying the next endpoint (mirror) for.
    pub(super) fn is_endpoint_failure(&self) -> bool {
        !matches!(
            self,
            RegistryError::WriteBlob { .. } | RegistryError::Offline { .. }
        )
    }
}
