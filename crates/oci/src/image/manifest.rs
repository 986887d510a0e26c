//! Image manifests and indexes (image-spec `manifest.md`, `image-index.md`;
//! Docker's manifest schema 2 and manifest list), and [`ManifestOrIndex`]
//! for documents whose kind is known only once read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ImageError;
use super::descriptor::Descriptor;
use super::serde_util::nullable;
use crate::media_type;

/// The only schema version either spec defines for these documents.
pub const SCHEMA_VERSION: u32 = 2;

/// An image manifest: one config and its layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    /// Optional in OCI (but "SHOULD" be set, and hoist always sets it);
    /// required by Docker schema 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "nullable")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// An OCI image manifest for `config` and `layers`.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Reads an OCI or Docker schema-2 manifest, ignoring unknown fields.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ImageError> {
        let manifest: Manifest = super::parse("manifest", bytes)?;
        check_schema_version("manifest", manifest.schema_version)?;
        check_media_type("manifest", &manifest.media_type, media_type::is_manifest)?;
        Ok(manifest)
    }

    /// The media type this manifest is stored and served under: its own
    /// `mediaType`, or OCI's when it has none.
    pub fn effective_media_type(&self) -> &str {
        self.media_type
            .as_deref()
            .unwrap_or(media_type::OCI_MANIFEST)
    }
}

/// An image index (Docker: manifest list): manifests for several
/// platforms, or several tags in an image layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An OCI image index of `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: SCHEMA_VERSION,
            media_type: Some(media_type::OCI_INDEX.to_owned()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Reads an OCI index or a Docker manifest list, ignoring unknown
    /// fields.
    pub fn from_json(bytes: &[u8]) -> Result<Index, ImageError> {
        let index: Index = super::parse("index", bytes)?;
        check_schema_version("index", index.schema_version)?;
        check_media_type("index", &index.media_type, media_type::is_index)?;
        Ok(index)
    }
}

/// A document that is either a manifest or an index, as a registry
/// answers a pull by tag.
// Both variants are a few hundred bytes and the value is short-lived (one
// per pull), so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestOrIndex {
    Manifest(Manifest),
    Index(Index),
}

impl ManifestOrIndex {
    /// Reads the document by its `mediaType`, or by its shape when it has
    /// none (OCI makes the field optional): `manifests` means an index,
    /// `config` or `layers` a manifest.
    pub fn from_json(bytes: &[u8]) -> Result<ManifestOrIndex, ImageError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Shape {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
            config: Option<serde::de::IgnoredAny>,
            layers: Option<serde::de::IgnoredAny>,
        }
        let shape: Shape = super::parse("manifest or index", bytes)?;
        match shape.media_type.as_deref() {
            Some(t) if media_type::is_manifest(t) => {
                Manifest::from_json(bytes).map(ManifestOrIndex::Manifest)
            }
            Some(t) if media_type::is_index(t) => {
                Index::from_json(bytes).map(ManifestOrIndex::Index)
            }
            Some(other) => Err(ImageError::MediaType {
                document: "manifest or index",
                found: other.to_owned(),
            }),
            None if shape.manifests.is_some() => {
                Index::from_json(bytes).map(ManifestOrIndex::Index)
            }
            None if shape.config.is_some() || shape.layers.is_some() => {
                Manifest::from_json(bytes).map(ManifestOrIndex::Manifest)
            }
            None => Err(ImageError::Shape),
        }
    }
}

fn check_schema_version(document: &'static str, found: u32) -> Result<(), ImageError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(ImageError::SchemaVersion { document, found })
    }
}

fn check_media_type(
    document: &'static str,
    found: &Option<String>,
    accepted: fn(&str) -> bool,
) -> Result<(), ImageError> {
    match found {
        Some(t) if !accepted(t) => Err(ImageError::MediaType {
            document,
            found: t.clone(),
        }),
        _ => Ok(()),
    }
}
