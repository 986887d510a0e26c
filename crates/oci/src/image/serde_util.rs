//! Small serde helpers shared by the image documents: Go writes `null` for
//! empty slices and maps, so every optional collection reads `null` as
//! empty, and Docker's "set of strings" objects (`{"80/tcp": {}}`) read
//! into a sorted set.

use std::collections::BTreeSet;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};

/// Reads `null` (or a missing field, with `#[serde(default)]`) as the
/// type's default.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// For `skip_serializing_if`: Go's `omitempty` on a bool.
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// For `skip_serializing_if`: Go's `omitempty` on an integer.
pub(crate) fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// `{"a": {}, "b": {}}` <-> a sorted set of keys (`ExposedPorts`,
/// `Volumes`). The values are empty objects in every writer; whatever a
/// reader finds there is ignored, as Docker ignores it.
pub(super) mod key_set {
    use super::*;

    pub fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Empty {}
        let mut map = serializer.serialize_map(Some(set.len()))?;
        for key in set {
            map.serialize_entry(key, &Empty {})?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeSet<String>, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = BTreeSet<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object whose keys are the set's members, or null")
            }
            fn visit_unit<E>(self) -> Result<BTreeSet<String>, E> {
                Ok(BTreeSet::new())
            }
            fn visit_none<E>(self) -> Result<BTreeSet<String>, E> {
                Ok(BTreeSet::new())
            }
            fn visit_some<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<BTreeSet<String>, D::Error> {
                deserializer.deserialize_map(KeysVisitor)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<BTreeSet<String>, A::Error> {
                let mut set = BTreeSet::new();
                while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    set.insert(key);
                }
                Ok(set)
            }
        }
        deserializer.deserialize_option(KeysVisitor)
    }
}
