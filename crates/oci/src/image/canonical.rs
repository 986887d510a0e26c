//! Canonical JSON: the one byte form hoist gives every document it hashes.
//!
//! [`canonical_json`] takes any `Serialize` value and writes it with the
//! keys of every object sorted by their UTF-8 bytes (struct fields too),
//! no whitespace, and serde_json's escaping (only `"`, `\` and control
//! characters are escaped; Go would also escape `<`, `>` and `&`, which
//! changes nothing about determinism). The same value always gives the
//! same bytes, so the same build gives the same digest. Key order is
//! imposed here, not inherited from serde_json's map type: a dependency
//! that turned on serde_json's `preserve_order` feature would otherwise
//! change every digest without a line of hoist changing.

use serde::Serialize;
use serde_json::Value;

use crate::Digest;

/// A document's canonical bytes with their digest and length: everything a
/// descriptor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub size: u64,
}

impl Encoded {
    /// Hashes bytes that are already final (a pulled document's raw bytes
    /// must be hashed as they came, never re-serialised).
    pub fn from_bytes(bytes: Vec<u8>) -> Encoded {
        Encoded {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            bytes,
        }
    }

    /// A descriptor of these bytes with the given media type.
    pub fn descriptor(&self, media_type: &str) -> super::Descriptor {
        super::Descriptor::new(media_type, self.digest, self.size)
    }
}

/// Serialises `value` as canonical JSON.
///
/// Fails only where serde_json would: a map whose keys are not strings, or
/// a `Serialize` impl that reports an error. hoist's image types do neither.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::new();
    write_value(&value, &mut out)?;
    Ok(out)
}

/// Serialises `value` as canonical JSON and digests the bytes.
pub fn digest_of<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Encoded> {
    canonical_json(value).map(Encoded::from_bytes)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
        // Scalars print the same whatever the map type; serde_json writes
        // integers in decimal and strings with minimal escaping.
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level_without_whitespace() {
        let value = serde_json::json!({
            "b": [ {"z": 1, "a": null} ],
            "a": {"y": "é\"\n", "x": true},
            "B": 1
        });
        let bytes = canonical_json(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"B":1,"a":{"x":true,"y":"é\"\n"},"b":[{"a":null,"z":1}]}"#
        );
    }

    #[test]
    fn struct_fields_and_hash_maps_come_out_sorted() {
        #[derive(Serialize)]
        struct Doc {
            zeta: u8,
            alpha: HashMap<&'static str, u8>,
        }
        let alpha: HashMap<_, _> = (0..20u8)
            .map(|i| (["k0", "k1", "k2", "k3", "k4"][usize::from(i % 5)], i))
            .collect();
        let bytes = canonical_json(&Doc { zeta: 1, alpha }).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"alpha":{"k0":15,"k1":16,"k2":17,"k3":18,"k4":19},"zeta":1}"#
        );
    }

    #[test]
    fn digest_of_hashes_the_canonical_bytes() {
        let encoded = digest_of(&serde_json::json!({"b": 1, "a": 2})).unwrap();
        assert_eq!(encoded.bytes, br#"{"a":2,"b":1}"#);
        assert_eq!(encoded.digest, Digest::of(br#"{"a":2,"b":1}"#));
        assert_eq!(encoded.size, 13);
    }
}
