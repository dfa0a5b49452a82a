//! Fetching manifests and small blobs (configs): capped, hashed ourselves.

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};

use super::{Client, Endpoint, RegistryError};
use crate::image::digest::Digest;
use crate::image::manifest::{ACCEPT as MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES};
use crate::image::reference::Reference;

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// sha256 of the bytes, computed here.
    pub digest: Digest,
    pub bytes: Vec<u8>,
    /// `Content-Type`, a hint when the document has no `mediaType`.
    pub media_type: Option<String>,
}

impl Client {
    /// Resolves a reference (tag or digest) to its manifest. A tag is
    /// resolved with `HEAD` then fetched by digest; if `HEAD` gives no
    /// digest, the tag is fetched directly and hashed here.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        if let Some(digest) = reference.digest() {
            return self.fetch_manifest_digest(reference, digest).await;
        }
        let what = format!("manifest {}", reference.locator());
        let what = what.as_str();
        self.with_endpoints(reference, what, |ep| async move {
            let url = manifest_url(&ep, reference, &reference.locator());
            let head = self
                .send(&ep, reference.repository(), what, |http| {
                    http.head(&url).header(ACCEPT, MANIFEST_ACCEPT)
                })
                .await?;
            let head_digest = match head.status() {
                s if s.is_success() => head
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Digest::parse(v).ok()),
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        registry: ep.host.clone(),
                        what: format!("{reference}"),
                    })
                }
                _ => None,
            };
            let locator = match &head_digest {
                Some(d) => d.to_string(),
                None => reference.locator(),
            };
            let fetched = self.get_manifest(&ep, reference, &locator, what).await?;
            if let Some(expected) = head_digest {
                if fetched.digest != expected {
                    return Err(RegistryError::DigestMismatch {
                        registry: ep.host.clone(),
                        what: format!("manifest {expected} of {reference}"),
                        actual: fetched.digest.to_string(),
                    });
                }
            }
            Ok(fetched)
        })
        .await
    }

    /// Fetches a manifest by digest and checks the bytes against it.
    pub async fn fetch_manifest_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<FetchedManifest, RegistryError> {
        let what = format!("manifest {digest}");
        let what = what.as_str();
        self.with_endpoints(reference, what, |ep| async move {
            let fetched = self
                .get_manifest(&ep, reference, &digest.to_string(), what)
                .await?;
            if !digest.verify(&fetched.bytes) {
                return Err(RegistryError::DigestMismatch {
                    registry: ep.host.clone(),
                    what: format!("manifest {digest} of {reference}"),
                    actual: fetched.digest.to_string(),
                });
            }
            Ok(FetchedManifest {
                digest: digest.clone(),
                ..fetched
            })
        })
        .await
    }

    async fn get_manifest(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        locator: &str,
        what: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = manifest_url(ep, reference, locator);
        let resp = self
            .send(ep, reference.repository(), what, |http| {
                http.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let resp = check_status(resp, ep, reference, what)?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_capped(resp, MAX_DOCUMENT_BYTES, ep, what).await?;
        Ok(FetchedManifest {
            digest: Digest::sha256_of(&bytes),
            bytes,
            media_type,
        })
    }

    /// Fetches a small blob (an image config) into memory, verified.
    pub async fn fetch_small_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("config {digest}");
        let what = what.as_str();
        let limit = size.min(MAX_DOCUMENT_BYTES);
        self.with_endpoints(reference, what, |ep| async move {
            let url = blob_url(&ep, reference, digest);
            let resp = self
                .send(&ep, reference.repository(), what, |http| http.get(&url))
                .await?;
            let resp = check_status(resp, &ep, reference, what)?;
            let bytes = read_capped(resp, limit, &ep, what).await?;
            if !digest.verify(&bytes) {
                return Err(RegistryError::DigestMismatch {
                    registry: ep.host.clone(),
                    what: format!("{what} of {reference}"),
                    actual: Digest::sha256_of(&bytes).to_string(),
                });
            }
            Ok(bytes)
        })
        .await
    }
}

pub(super) fn manifest_url(ep: &Endpoint, reference: &Reference, locator: &str) -> String {
    format!(
        "{}/v2/{}/manifests/{locator}",
        ep.base,
        reference.repository()
    )
}

pub(super) fn blob_url(ep: &Endpoint, reference: &Reference, digest: &Digest) -> String {
    format!("{}/v2/{}/blobs/{digest}", ep.base, reference.repository())
}

pub(super) fn check_status(
    resp: Response,
    ep: &Endpoint,
    reference: &Reference,
    what: &str,
) -> Result<Response, RegistryError> {
    match resp.status() {
        s if s.is_success() => Ok(resp),
        StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
            registry: ep.host.clone(),
            what: format!("{what} of {reference}"),
        }),
        s => Err(RegistryError::Status {
            registry: ep.host.clone(),
            what: format!("{what} of {reference}"),
            status: s.as_u16(),
        }),
    }
}

async fn read_capped(
    resp: Response,
    limit: u64,
    ep: &Endpoint,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: ep.host.clone(),
        what: what.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Request {
            registry: ep.host.clone(),
            what: what.to_string(),
            source,
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
