//! Image documents: the config, manifest and index of an OCI or Docker
//! image, their canonical JSON, and exports of whole images.
//!
//! The types here ([`ImageConfig`], [`Manifest`], [`Index`],
//! [`Descriptor`]) read OCI and Docker schema-2 documents leniently
//! (unknown fields ignored, Go's `null` for empty collections accepted)
//! and write them only through [`canonical_json`] (sorted keys, no
//! whitespace), so one build gives one digest on every machine. Maps are
//! `BTreeMap`s, never `HashMap`s. Parsing is lossy by design: a pulled
//! document must be stored, hashed and pushed as its original bytes, never
//! re-serialised from these types. [`archive`] writes images out as an
//! OCI image layout, an OCI archive or a `docker load` archive, streaming
//! every blob: nothing in this module holds a layer in memory.

pub mod archive;
mod blobs;
mod canonical;
mod config;
pub mod convert;
mod descriptor;
mod layout;
mod manifest;
pub(crate) mod serde_util;

pub use archive::{ArchiveError, ExportImage, write_docker_archive, write_oci_archive};
pub use blobs::{BlobSource, MemoryBlobs};
pub use canonical::{Encoded, canonical_json, digest_of};
pub use config::{
    Healthcheck, History, ImageConfig, RootFs, RunConfig, parse_rfc3339_utc, rfc3339_utc,
};
pub use convert::{ConvertError, to_docker_manifest, to_docker_manifest_list};
pub use descriptor::Descriptor;
pub use layout::write_oci_layout;
pub use manifest::{Index, Manifest, ManifestOrIndex, SCHEMA_VERSION};

/// Why an image document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid {document} JSON; the document is not an OCI or Docker schema-2 {document}")]
    Json {
        document: &'static str,
        source: serde_json::Error,
    },
    #[error("{document} has schemaVersion {found}; only schema version 2 is supported")]
    SchemaVersion { document: &'static str, found: u32 },
    #[error(
        "{document} has media type `{found}`, which is not a {document} media type hoist knows"
    )]
    MediaType {
        document: &'static str,
        found: String,
    },
    #[error(
        "document has no mediaType and neither `manifests` nor `config`/`layers`; it is not a manifest or an index"
    )]
    Shape,
}

/// A document hoist writes: serialised only as canonical JSON.
pub trait Document: serde::Serialize {
    /// The canonical bytes, their digest and size.
    fn encode(&self) -> Encoded {
        // hoist's document types have string-keyed maps and no fallible
        // `Serialize` impls, the only ways serde_json can fail.
        digest_of(self).expect("image documents always serialise")
    }
}

impl Document for ImageConfig {}
impl Document for Manifest {}
impl Document for Index {}
impl Document for Descriptor {}

impl ImageConfig {
    /// Reads an OCI or Docker image config, ignoring unknown fields.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, ImageError> {
        parse("image config", bytes)
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(
    document: &'static str,
    bytes: &'a [u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json { document, source })
}

#[cfg(test)]
mod tests;
