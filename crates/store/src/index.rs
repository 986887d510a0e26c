//! Tags: `index.json` lists every tagged image as a manifest descriptor
//! annotated with `org.opencontainers.image.ref.name`, whose value is the
//! full normalised reference (`docker.io/library/app:latest`).
//!
//! A tag is never written for a manifest blob the store does not hold, and
//! `index.json` is never rewritten in place: every change happens under the
//! index lock and replaces the file by rename. Entries are kept sorted so
//! that the same tags always give the same bytes.

use serde_json::Value;

use super::Store;
use super::error::{Result, StoreError};
use super::fsutil::write_atomically;
use super::json::{Descriptor, REF_NAME, canonical, descriptor_from_json, descriptor_to_json};
use super::lock::{ExclusiveLock, INDEX_LOCK};

impl Store {
    /// Points `reference` at the manifest (or index) `descriptor`,
    /// replacing whatever it pointed at. The blob must be in the store with
    /// the descriptor's size.
    pub fn tag(&self, reference: &str, descriptor: &Descriptor) -> Result<()> {
        check_reference(reference)?;
        let actual = self.blob_size(&descriptor.digest)?;
        if actual != descriptor.size {
            return Err(StoreError::SizeMismatch {
                digest: descriptor.digest,
                expected: descriptor.size,
                actual,
            });
        }
        let mut entry = descriptor.clone();
        entry
            .annotations
            .insert(REF_NAME.to_owned(), reference.to_owned());
        let entry = descriptor_to_json(&entry);
        self.update_index(|manifests| {
            manifests.retain(|m| ref_name(m) != Some(reference));
            manifests.push(entry);
        })
    }

    /// Removes the tag `reference`, returning what it pointed at (`None`
    /// when there was no such tag). Blobs stay until `prune`.
    pub fn untag(&self, reference: &str) -> Result<Option<Descriptor>> {
        check_reference(reference)?;
        let removed = self.update_index(|manifests| {
            let at = manifests
                .iter()
                .position(|m| ref_name(m) == Some(reference))?;
            Some(manifests.remove(at))
        })?;
        removed.map(|m| self.tagged(reference, &m)).transpose()
    }

    /// The descriptor `reference` points at, as it was given to
    /// [`tag`](Store::tag) (without the ref-name annotation).
    pub fn resolve(&self, reference: &str) -> Result<Option<Descriptor>> {
        check_reference(reference)?;
        let index = self.read_index()?;
        manifests(&index)
            .iter()
            .find(|m| ref_name(m) == Some(reference))
            .map(|m| self.tagged(reference, m))
            .transpose()
    }

    /// Every tag and what it points at, sorted by reference. Entries of
    /// `index.json` without a ref name (written by other tools) are left
    /// out.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = self.read_index()?;
        let mut tags = manifests(&index)
            .iter()
            .filter_map(|m| Some((ref_name(m)?.to_owned(), m)))
            .map(|(reference, m)| {
                let descriptor = self.tagged(&reference, m)?;
                Ok((reference, descriptor))
            })
            .collect::<Result<Vec<_>>>()?;
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }

    /// Reads `index.json`, checking that it is an object with a
    /// `manifests` array.
    pub(crate) fn read_index(&self) -> Result<Value> {
        let path = self.path("index.json");
        let index = super::read_json_file(&path)?.ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            reason: "it is missing".into(),
        })?;
        if !index.get("manifests").is_some_and(Value::is_array) {
            return Err(StoreError::Corrupt {
                path,
                reason: "it has no `manifests` array".into(),
            });
        }
        Ok(index)
    }

    /// Reads, changes and replaces `index.json` under the index lock.
    /// Nothing is written when `change` leaves the entries as they were.
    fn update_index<T>(&self, change: impl FnOnce(&mut Vec<Value>) -> T) -> Result<T> {
        let _lock = ExclusiveLock::wait(&self.root, INDEX_LOCK)?;
        let mut index = self.read_index()?;
        let before = canonical(&index);
        let Some(Value::Array(manifests)) = index.get_mut("manifests") else {
            unreachable!("read_index checked the manifests array");
        };
        let out = change(manifests);
        // Sorted by reference, then by content, so the file depends only
        // on the set of entries, not on the order they were tagged in.
        manifests.sort_by_cached_key(|m| (ref_name(m).map(str::to_owned), canonical(m)));
        let after = canonical(&index);
        if after != before {
            write_atomically(&self.tmp_dir(), &self.path("index.json"), &after)?;
        }
        Ok(out)
    }

    /// The descriptor of a tagged entry, without its ref-name annotation.
    fn tagged(&self, reference: &str, entry: &Value) -> Result<Descriptor> {
        let mut descriptor = descriptor_from_json(entry).map_err(|reason| StoreError::Corrupt {
            path: self.path("index.json"),
            reason: format!("the entry for `{reference}` is not a descriptor: {reason}"),
        })?;
        descriptor.annotations.remove(REF_NAME);
        Ok(descriptor)
    }
}

/// The `manifests` array of an index checked by `read_index`.
pub(crate) fn manifests(index: &Value) -> &[Value] {
    index["manifests"].as_array().map_or(&[], Vec::as_slice)
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

fn check_reference(reference: &str) -> Result<()> {
    if reference.is_empty() {
        return Err(StoreError::EmptyReference);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::OCI_MANIFEST;
    use hoist_oci::Digest;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn manifest(store: &Store, text: &str) -> Descriptor {
        let (digest, size) = store.put_blob_bytes(text.as_bytes(), None).unwrap();
        Descriptor::new(OCI_MANIFEST, digest, size)
    }

    #[test]
    fn tag_resolve_list_and_untag() {
        let (_dir, store) = store();
        let app = manifest(&store, r#"{"app":1}"#);
        let mut web = manifest(&store, r#"{"web":1}"#);
        web.annotations.insert("org.example".into(), "kept".into());
        store.tag("docker.io/library/web:latest", &web).unwrap();
        store.tag("docker.io/library/app:latest", &app).unwrap();
        store.tag("docker.io/library/app:v1", &app).unwrap();

        assert_eq!(
            store.resolve("docker.io/library/web:latest").unwrap(),
            Some(web.clone())
        );
        assert_eq!(store.resolve("docker.io/library/app:v2").unwrap(), None);
        let list = store.list().unwrap();
        let names: Vec<_> = list.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/app:latest",
                "docker.io/library/app:v1",
                "docker.io/library/web:latest"
            ]
        );
        assert_eq!(list[0].1, app);

        assert_eq!(
            store.untag("docker.io/library/app:v1").unwrap(),
            Some(app.clone())
        );
        assert_eq!(store.untag("docker.io/library/app:v1").unwrap(), None);
        assert_eq!(store.resolve("docker.io/library/app:v1").unwrap(), None);
        assert_eq!(store.list().unwrap().len(), 2);
        // Untagging leaves the blob for prune to judge.
        assert!(store.has_blob(&app.digest));
    }

    #[test]
    fn retagging_moves_the_tag() {
        let (_dir, store) = store();
        let one = manifest(&store, "one");
        let two = manifest(&store, "two");
        store.tag("example.com/app:latest", &one).unwrap();
        store.tag("example.com/app:latest", &two).unwrap();
        assert_eq!(
            store.list().unwrap(),
            [("example.com/app:latest".into(), two)]
        );
    }

    #[test]
    fn index_json_is_canonical_and_independent_of_tag_order() {
        let (dir_a, a) = store();
        let (dir_b, b) = store();
        for (store, order) in [(&a, ["x:1", "y:1", "z:1"]), (&b, ["z:1", "x:1", "y:1"])] {
            for reference in order {
                let descriptor = manifest(store, reference);
                store.tag(reference, &descriptor).unwrap();
            }
        }
        let text = fs::read_to_string(dir_a.path().join("index.json")).unwrap();
        assert_eq!(
            text,
            fs::read_to_string(dir_b.path().join("index.json")).unwrap()
        );
        let digest = Digest::of(b"x:1");
        let entry = format!(
            r#"{{"annotations":{{"{REF_NAME}":"x:1"}},"digest":"{digest}","mediaType":"{OCI_MANIFEST}","size":3}}"#
        );
        assert!(
            text.starts_with(&format!(r#"{{"manifests":[{entry},"#)),
            "{text}"
        );
    }

    #[test]
    fn tag_refuses_missing_blobs_wrong_sizes_and_empty_references() {
        let (_dir, store) = store();
        let missing = Descriptor::new(OCI_MANIFEST, Digest::of(b"nowhere"), 7);
        let err = store.tag("a:b", &missing).unwrap_err();
        assert!(matches!(err, StoreError::BlobNotFound { .. }), "{err:?}");
        let mut wrong = manifest(&store, "four");
        wrong.size = 5;
        let err = store.tag("a:b", &wrong).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SizeMismatch {
                    expected: 5,
                    actual: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let good = manifest(&store, "good");
        assert!(matches!(
            store.tag("", &good),
            Err(StoreError::EmptyReference)
        ));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn entries_from_other_tools_are_kept() {
        let (dir, store) = store();
        let other = manifest(&store, "other tool");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [ descriptor_to_json(&other) ],
            "annotations": { "com.example": "index note" },
        });
        fs::write(dir.path().join("index.json"), canonical(&index)).unwrap();
        let mine = manifest(&store, "mine");
        store.tag("mine:1", &mine).unwrap();
        assert_eq!(store.list().unwrap(), [("mine:1".into(), mine)]);
        let index = store.read_index().unwrap();
        assert_eq!(manifests(&index)[0], descriptor_to_json(&other));
        assert_eq!(index["annotations"]["com.example"], "index note");
    }
}
