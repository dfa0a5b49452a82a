//! OCI images: references, registry client, content-addressed store, safe
//! layer unpacking and offline import. Knows nothing of pipelines or steps.

pub mod unpack;
