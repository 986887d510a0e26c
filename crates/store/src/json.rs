//! The little JSON the store itself needs: canonical serialisation and
//! content descriptors.
//!
//! Everything the store writes goes through [`canonical`]: object keys
//! sorted by their bytes, no whitespace, so equal documents are equal bytes
//! whatever map type serde_json was built with (the `preserve_order`
//! feature, switched on by any crate in the build, would otherwise change
//! key order). Manifests are walked generically as `serde_json::Value`; the
//! full OCI types live in the image module.

use serde_json::Value;

/// The annotation that names a tagged image in `index.json`.
pub use hoist_oci::image::archive::REF_NAME;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Content descriptors are the image module's: one type for what a
/// manifest, an index or the store's `index.json` says about a blob.
pub use hoist_oci::image::Descriptor;

/// A descriptor as a JSON value.
pub fn descriptor_to_json(descriptor: &Descriptor) -> Value {
    serde_json::to_value(descriptor).expect("a descriptor always serialises")
}

/// Reads a descriptor; fails on a missing or malformed field.
pub fn descriptor_from_json(value: &Value) -> Result<Descriptor, String> {
    <Descriptor as serde::Deserialize>::deserialize(value).map_err(|e| e.to_string())
}

/// `value` as canonical JSON: keys sorted by bytes, no whitespace (the
/// image module's writer, which sorts keys itself).
pub fn canonical(value: &Value) -> Vec<u8> {
    hoist_oci::image::canonical_json(value).expect("a JSON value always serialises")
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
    use hoist_oci::Digest;

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
        let plain = String::from_utf8(canonical(&descriptor_to_json(&descriptor))).unwrap();
        assert_eq!(
            plain,
            format!(
                r#"{{"digest":"{}","mediaType":"{OCI_MANIFEST}","size":1}}"#,
                Digest::of(b"m")
            )
        );
        descriptor.annotations.insert(REF_NAME.into(), "a:b".into());
        let value: Value =
            serde_json::from_slice(&canonical(&descriptor_to_json(&descriptor))).unwrap();
        assert_eq!(descriptor_from_json(&value).unwrap(), descriptor);
        assert!(descriptor_from_json(&serde_json::json!({ "digest": "sha256:00" })).is_err());
    }
}
