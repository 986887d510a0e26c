//! The little JSON the store itself needs: canonical serialisation and
//! content descriptors.
//!
//! Everything the store writes goes through [`canonical`]: object keys
//! sorted by their bytes, no whitespace, so equal documents are equal bytes
//! whatever map type serde_json was built with (the `preserve_order`
//! feature, switched on by any crate in the build, would otherwise change
//! key order). Manifests are walked generically as `serde_json::Value`; the
//! full OCI types live in the image module.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::layer::Digest;

/// The annotation that names a tagged image in `index.json`.
pub use crate::image::archive::REF_NAME;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A content descriptor: what a manifest or `index.json` says about a blob.
/// Only the fields the store needs; other fields of descriptors it reads
/// (`platform`, `urls`) stay untouched in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: BTreeMap::new(),
        }
    }

    /// The descriptor as a JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a descriptor always serialises")
    }

    /// Reads a descriptor; fails on a missing or malformed field.
    pub fn from_json(value: &Value) -> Result<Descriptor, String> {
        <Descriptor as serde::Deserialize>::deserialize(value).map_err(|e| e.to_string())
    }

    /// The descriptor in canonical JSON.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        canonical(&self.to_json())
    }
}

/// `value` as canonical JSON: keys sorted by bytes, no whitespace.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_canonical(out, value);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

/// The `index.json` of an empty store.
pub(crate) fn empty_index() -> Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_without_whitespace() {
        let value = serde_json::json!({
            "b": [ { "z": 1, "a": "x y" } ],
            "a": { "é": true, "e": null },
            "B": -1.5,
        });
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            r#"{"B":-1.5,"a":{"e":null,"é":true},"b":[{"a":"x y","z":1}]}"#
        );
    }

    #[test]
    fn descriptor_round_trips_through_canonical_json() {
        let mut descriptor = Descriptor::new(OCI_MANIFEST, Digest::of(b"m"), 1);
        let plain = String::from_utf8(descriptor.to_canonical_json()).unwrap();
        assert_eq!(
            plain,
            format!(
                r#"{{"digest":"{}","mediaType":"{OCI_MANIFEST}","size":1}}"#,
                Digest::of(b"m")
            )
        );
        descriptor.annotations.insert(REF_NAME.into(), "a:b".into());
        let value: Value = serde_json::from_slice(&descriptor.to_canonical_json()).unwrap();
        assert_eq!(Descriptor::from_json(&value).unwrap(), descriptor);
        assert!(Descriptor::from_json(&serde_json::json!({ "digest": "sha256:00" })).is_err());
    }
}
