//! Content descriptors (image-spec `descriptor.md`): how one document
//! points at another blob by media type, digest and size.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::serde_util::nullable;
use crate::Digest;
use crate::Platform;

/// A content descriptor. Optional fields are left out when empty, as Go's
/// `omitempty` leaves them out in every other builder's output, so the same
/// descriptor prints the same wherever it was made.
///
/// Only `sha256` digests are accepted (see [`Digest`]): a document naming
/// a blob by another algorithm fails to parse rather than being trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Embedded content, base64 (image-spec 1.1); kept as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            data: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// Adds one annotation.
    pub fn with_annotation(mut self, key: &str, value: &str) -> Descriptor {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the platform (index entries).
    pub fn with_platform(mut self, platform: Platform) -> Descriptor {
        self.platform = Some(platform);
        self
    }
}
