//! Reclaiming space and checking content: `prune`, `verify` and
//! `remove_image`.
//!
//! Prune marks every blob reachable from a tag (index -> manifests ->
//! config, layers, subject) or listed by a cache record, then removes the
//! rest and every temp file. It must never remove a blob that something may
//! still use, so it runs only with the store lock held exclusively (no other
//! handle open, see the lock protocol in [`crate`]), and it stops
//! rather than guesses when `index.json` cannot be read: an unreadable root
//! would make everything look unreachable.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use serde_json::Value;

use super::Store;
use super::error::{Result, StoreError, io_error};
use super::fsutil::sync_dir;
use super::index::manifests;
use super::json::{Descriptor, OCI_INDEX, OCI_MANIFEST};
use hoist_oci::Digest;

/// The largest manifest or index prune reads to find what it refers to:
/// registries (distribution, Docker Hub) refuse manifests over 4 MiB.
pub(crate) const DOCUMENT_LIMIT: u64 = 4 << 20;

/// Media types of documents that point at other blobs (and so keep them).
pub(crate) fn refers_to_blobs(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST
            | OCI_INDEX
            | "application/vnd.oci.artifact.manifest.v1+json"
            | "application/vnd.docker.distribution.manifest.v2+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    )
}

/// How [`Store::prune_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// Re-hash every blob first and remove the damaged ones (slow: reads
    /// the whole store). Without it, prune still checks the manifests it
    /// reads and the size of every blob a descriptor names.
    pub verify: bool,
    /// Wait for other hoist processes to close the store; otherwise fail
    /// with [`StoreError::Busy`] at once.
    pub wait: bool,
    /// Also empty `mounts/` (RUN's `--mount=type=cache` directories),
    /// which prune otherwise never touches: they hold what builds
    /// downloaded, not layers.
    pub cache_mounts: bool,
}

impl Default for PruneOptions {
    fn default() -> PruneOptions {
        PruneOptions {
            verify: false,
            wait: true,
            cache_mounts: false,
        }
    }
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs nothing referred to, by digest.
    pub removed_blobs: Vec<Digest>,
    /// Bytes of every blob removed, unreachable or damaged.
    pub freed_bytes: u64,
    /// Temp files left by interrupted writes.
    pub removed_temps: usize,
    /// Damaged blobs (content not matching the name), removed.
    pub corrupt: Vec<Digest>,
    /// Cache records that were damaged or lacked a blob, removed.
    pub removed_cache_records: usize,
    /// Extracted layers no kept image or cache record uses, removed.
    pub removed_snapshots: usize,
    /// Cache mount directories removed (only when asked).
    pub removed_cache_mounts: usize,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs whose content matches their name.
    pub checked: usize,
    /// Their total size.
    pub bytes: u64,
    /// Blobs whose content does not match their name.
    pub corrupt: Vec<Digest>,
}

/// What [`Store::remove_image`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedImage {
    /// What the tag pointed at.
    pub descriptor: Descriptor,
    /// Blobs of the image that no other tag or cache record used.
    pub removed_blobs: Vec<Digest>,
    pub freed_bytes: u64,
}

impl Store {
    /// Removes every blob no tag or cache record reaches, and every temp
    /// file, waiting for every other handle on the store to be dropped
    /// first: other processes', and this process's own (so never call it
    /// while this process holds a second handle, or it waits forever).
    pub fn prune(&mut self) -> Result<PruneReport> {
        self.prune_with(&PruneOptions::default())
    }

    /// [`prune`](Store::prune) with options.
    pub fn prune_with(&mut self, options: &PruneOptions) -> Result<PruneReport> {
        self.with_exclusive(options.wait, |store| {
            let mut report = store.prune_locked(options.verify)?;
            if options.cache_mounts {
                report.removed_cache_mounts = store.remove_cache_mounts()?;
            }
            Ok(report)
        })
    }

    /// Removes every cache mount directory (and its lock file) under
    /// `mounts/cache`. No build runs meanwhile: the caller holds the
    /// store exclusively.
    fn remove_cache_mounts(&self) -> Result<usize> {
        let dir = self.path("mounts/cache");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(io_error("read directory", &dir))?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
                removed += 1;
            } else {
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
            }
        }
        Ok(removed)
    }

    /// Re-hashes every blob and reports those whose content does not match
    /// their name. Changes nothing; `prune_with` (with `verify`) removes them.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for digest in self.blobs()? {
            match self.verify_blob(&digest) {
                Ok(()) => {
                    report.checked += 1;
                    report.bytes += self.blob_size(&digest)?;
                }
                Err(StoreError::CorruptBlob { .. }) => report.corrupt.push(digest),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Untags `reference` (`hoist rmi`) and removes the image's blobs that
    /// no other tag or cache record uses. Like prune, waits for other hoist
    /// processes to close the store.
    pub fn remove_image(&mut self, reference: &str) -> Result<RemovedImage> {
        self.with_exclusive(true, |store| {
            let descriptor = store
                .untag(reference)?
                .ok_or_else(|| StoreError::ImageNotFound {
                    reference: reference.to_owned(),
                })?;
            let mut image = Marker::new(store);
            image.mark(descriptor.digest, Some(&descriptor.media_type), None)?;
            let mut others = Marker::new(store);
            others.mark_tags()?;
            for (_, record) in store.cache_records()? {
                if let Ok(record) = record {
                    others.live.extend(record.blobs);
                }
            }
            let mut removed = RemovedImage {
                descriptor,
                removed_blobs: Vec::new(),
                freed_bytes: 0,
            };
            for digest in image.live.difference(&others.live) {
                removed.freed_bytes += store.remove_blob(digest)?;
                removed.removed_blobs.push(*digest);
            }
            sync_dir(&store.path("blobs/sha256"))?;
            Ok(removed)
        })
    }

    fn prune_locked(&self, verify: bool) -> Result<PruneReport> {
        let mut report = PruneReport {
            // No handle but this one is open, and it has no write in flight:
            // every temp file is left over from a crash.
            removed_temps: self.remove_temps()?,
            ..PruneReport::default()
        };
        if verify {
            for digest in self.verify()?.corrupt {
                report.freed_bytes += self.remove_blob(&digest)?;
                report.corrupt.push(digest);
            }
            // Every blob was just checked: what builds noted is settled.
            self.clear_damage_notes()?;
        }

        let mut marker = Marker::new(self);
        marker.mark_tags()?;
        for (path, record) in self.cache_records()? {
            match record {
                Ok(record)
                    if record
                        .blobs
                        .iter()
                        .all(|d| self.knows_blob(d) && !marker.corrupt.contains(d)) =>
                {
                    marker.live.extend(record.blobs);
                }
                // A damaged record, or one whose blobs are gone, can only
                // ever be a miss; removing it lets its other blobs go.
                _ => {
                    fs::remove_file(&path).map_err(io_error("remove", &path))?;
                    report.removed_cache_records += 1;
                }
            }
        }
        for digest in &marker.corrupt {
            report.freed_bytes += self.remove_blob(digest)?;
            report.corrupt.push(*digest);
        }
        for digest in self.blobs()? {
            if !marker.live.contains(&digest) {
                report.freed_bytes += self.remove_blob(&digest)?;
                report.removed_blobs.push(digest);
            }
        }
        report.corrupt.sort_unstable();
        sync_dir(&self.path("blobs/sha256"))?;
        report.removed_snapshots = self.prune_snapshots(&marker.live)?;
        // Where a blob is: kept only for a blob some image or cache record
        // still names and the store does not hold.
        for digest in self.remote_blobs()? {
            if !marker.live.contains(&digest) || self.has_blob(&digest) {
                self.remove_remote(&digest)?;
            }
        }
        self.prune_block_indexes()?;
        Ok(report)
    }

    /// Removes the extracted layers (`snapshots/<diffID hex>`) of layers no
    /// kept image config and no cache record names any more.
    fn prune_snapshots(&self, live: &BTreeSet<Digest>) -> Result<usize> {
        let dir = self.snapshots_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for digest in live {
            if self
                .blob_size(digest)
                .is_ok_and(|size| size <= DOCUMENT_LIMIT)
                && let Ok(bytes) = self.read_blob_bytes(digest, DOCUMENT_LIMIT)
                && let Ok(doc) = serde_json::from_slice::<Value>(&bytes)
                && let Some(ids) = doc.pointer("/rootfs/diff_ids").and_then(Value::as_array)
            {
                wanted.extend(
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(|d| d.trim_start_matches("sha256:").to_owned()),
                );
            }
        }
        for (_, record) in self.cache_records()? {
            if let Ok(record) = record
                && let crate::CacheValue::Layer(layer) = record.value
            {
                wanted.insert(layer.diff_id.hex());
            }
        }
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(io_error("read directory", &dir))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !wanted.contains(&name) {
                fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
                removed += 1;
                continue;
            }
            // Extractions a killed build left half done; no build runs
            // while prune holds the store.
            for part in fs::read_dir(&path).map_err(io_error("read directory", &path))? {
                let part = part.map_err(io_error("read directory", &path))?.path();
                if part
                    .file_name()
                    .is_some_and(|n| super::snapshot::is_partial(&n.to_string_lossy()))
                {
                    fs::remove_dir_all(&part).map_err(io_error("remove", &part))?;
                }
            }
        }
        Ok(removed)
    }

    fn remove_temps(&self) -> Result<usize> {
        let tmp = self.tmp_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(io_error("read directory", &tmp))? {
            let path = entry.map_err(io_error("read directory", &tmp))?.path();
            let result = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(io_error("remove", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes a blob, returning its size (0 if it was already gone).
    fn remove_blob(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        let size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error("remove", &path)(e)),
        }
    }
}

/// The mark phase: which blobs are reachable, and which reachable ones
/// turned out damaged.
struct Marker<'a> {
    store: &'a Store,
    live: BTreeSet<Digest>,
    corrupt: BTreeSet<Digest>,
}

impl<'a> Marker<'a> {
    fn new(store: &'a Store) -> Marker<'a> {
        Marker {
            store,
            live: BTreeSet::new(),
            corrupt: BTreeSet::new(),
        }
    }

    /// Marks everything `index.json` lists, tagged or not (an adopted
    /// layout's untagged images are kept too).
    fn mark_tags(&mut self) -> Result<()> {
        let index = self.store.read_index()?;
        for entry in manifests(&index) {
            let Some((digest, media_type, size)) = child(entry) else {
                return Err(StoreError::Corrupt {
                    path: self.store.path("index.json"),
                    reason: format!("an entry has no valid digest: {entry}"),
                });
            };
            self.mark(digest, media_type, size)?;
        }
        Ok(())
    }

    /// Marks `digest` and, when it is a manifest or index, everything it
    /// refers to. `media_type` and `size` come from the descriptor that
    /// named it.
    fn mark(&mut self, digest: Digest, media_type: Option<&str>, size: Option<u64>) -> Result<()> {
        let mut work = vec![(digest, media_type.map(str::to_owned), size)];
        while let Some((digest, media_type, size)) = work.pop() {
            if self.corrupt.contains(&digest) || !self.live.insert(digest) {
                continue;
            }
            let actual = match self.store.blob_size(&digest) {
                Ok(actual) => actual,
                Err(StoreError::BlobNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if size.is_some_and(|size| size != actual) {
                // The blob is damaged or the descriptor is wrong; only the
                // content can tell which, and a good blob must stay.
                match self.store.verify_blob(&digest) {
                    Ok(()) => {}
                    Err(StoreError::CorruptBlob { .. }) => {
                        self.damaged(digest);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let walk = match &media_type {
                Some(media_type) => refers_to_blobs(media_type),
                // No media type: look inside if it is small enough to be a
                // manifest, and trust the document's own `mediaType`.
                None => actual <= DOCUMENT_LIMIT,
            };
            if !walk {
                continue;
            }
            let bytes = match self.store.read_blob_bytes(&digest, DOCUMENT_LIMIT) {
                Ok(bytes) => bytes,
                Err(StoreError::CorruptBlob { .. }) => {
                    self.damaged(digest);
                    continue;
                }
                // Kept, but what it refers to cannot be known.
                Err(StoreError::TooLarge { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if media_type.is_none()
                && !doc
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .is_some_and(refers_to_blobs)
            {
                continue;
            }
            for entry in children(&doc) {
                if let Some((digest, media_type, size)) = child(entry) {
                    work.push((digest, media_type.map(str::to_owned), size));
                }
            }
        }
        Ok(())
    }

    fn damaged(&mut self, digest: Digest) {
        self.live.remove(&digest);
        self.corrupt.insert(digest);
    }
}

/// The descriptors a manifest, index or artifact manifest holds.
pub(crate) fn children(doc: &Value) -> impl Iterator<Item = &Value> {
    let single = ["config", "subject"]
        .into_iter()
        .filter_map(|key| doc.get(key));
    let lists = ["layers", "manifests", "blobs"]
        .into_iter()
        .filter_map(|key| doc.get(key)?.as_array())
        .flatten();
    single.chain(lists)
}

/// A descriptor's digest, media type and size, read generically.
pub(crate) fn child(descriptor: &Value) -> Option<(Digest, Option<&str>, Option<u64>)> {
    let digest = descriptor.get("digest")?.as_str()?.parse().ok()?;
    let media_type = descriptor.get("mediaType").and_then(Value::as_str);
    let size = descriptor.get("size").and_then(Value::as_u64);
    Some((digest, media_type, size))
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::json::descriptor_to_json;
    use crate::tests::put_image;
    use crate::{CacheRecord, canonical};

    const KEY: &str = "c0ffee";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn damage(store: &Store, digest: &Digest, content: &[u8]) {
        let path = store.blob_path(digest);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::write(path, content).unwrap();
    }

    fn sorted(mut digests: Vec<Digest>) -> Vec<Digest> {
        digests.sort_unstable();
        digests
    }

    #[test]
    fn prune_keeps_what_tags_and_cache_records_reach_and_removes_the_rest() {
        let (_dir, mut store) = store();
        let (app, app_blobs) = put_image(&store, "app", &[b"base layer", b"app layer"]);
        store.tag("example.com/app:1", &app).unwrap();
        // A multi-platform index whose manifest is reachable only through it.
        let (arm, arm_blobs) = put_image(&store, "arm", &[b"arm layer"]);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor_to_json(&arm)],
        });
        let (index_digest, index_size) = store.put_blob_bytes(&canonical(&index), None).unwrap();
        store
            .tag(
                "example.com/multi:1",
                &Descriptor::new(OCI_INDEX, index_digest, index_size),
            )
            .unwrap();
        let (cached, _) = store.put_blob_bytes(b"cached layer", None).unwrap();
        let record = CacheRecord::alias(Digest::of(b"a key"), Some(cached));
        store.cache_put(KEY, &record).unwrap();
        let (loose_a, size_a) = store.put_blob_bytes(b"loose a", None).unwrap();
        let (loose_b, size_b) = store.put_blob_bytes(b"loose bb", None).unwrap();
        fs::write(store.tmp_dir().join("blob-1-1"), b"half a blob").unwrap();
        // An extracted layer nothing refers to any more.
        fs::create_dir_all(store.snapshot(&Digest::of(b"gone")).content()).unwrap();
        // A RUN layer's snapshot a killed build left half made.
        fs::create_dir_all(store.snapshot_partial("adopt").join("etc")).unwrap();

        let report = store.prune().unwrap();
        assert_eq!(
            report,
            PruneReport {
                removed_blobs: sorted(vec![loose_a, loose_b]),
                freed_bytes: size_a + size_b,
                removed_temps: 1,
                corrupt: vec![],
                removed_cache_records: 0,
                removed_snapshots: 2,
                removed_cache_mounts: 0,
            }
        );
        let mut kept = vec![app.digest, arm.digest, index_digest, cached];
        kept.extend(app_blobs);
        kept.extend(arm_blobs);
        assert_eq!(store.blobs().unwrap(), sorted(kept));
        assert_eq!(store.cache_get(KEY).unwrap(), Some(record));
        assert_eq!(store.prune().unwrap(), PruneReport::default());
    }

    #[test]
    fn untagged_images_are_pruned() {
        let (_dir, mut store) = store();
        let (app, blobs) = put_image(&store, "app", &[b"layer"]);
        store.tag("app:1", &app).unwrap();
        store.untag("app:1").unwrap();
        let report = store.prune().unwrap();
        let mut expected = blobs;
        expected.push(app.digest);
        assert_eq!(report.removed_blobs, sorted(expected));
        assert!(store.blobs().unwrap().is_empty());
    }

    #[test]
    fn prune_removes_a_damaged_manifest_and_reports_it() {
        let (_dir, mut store) = store();
        let (app, blobs) = put_image(&store, "app", &[b"layer"]);
        store.tag("app:1", &app).unwrap();
        let original = store.read_blob_bytes(&app.digest, 1 << 20).unwrap();
        let mut damaged = original.clone();
        damaged[0] = b' ';
        damage(&store, &app.digest, &damaged);

        let report = store.prune().unwrap();
        assert_eq!(report.corrupt, [app.digest]);
        // What the damaged manifest named cannot be known, so it goes too.
        assert_eq!(report.removed_blobs, sorted(blobs));
        assert!(store.blobs().unwrap().is_empty());
        // The tag stays, pointing at a missing blob that a rebuild restores.
        assert_eq!(store.resolve("app:1").unwrap(), Some(app.clone()));
        store.put_blob_bytes(&original, Some(&app.digest)).unwrap();
    }

    #[test]
    fn verify_finds_a_damaged_layer_and_prune_with_verify_removes_it() {
        let (_dir, mut store) = store();
        let (app, blobs) = put_image(&store, "app", &[b"layer one", b"layer two"]);
        store.tag("app:1", &app).unwrap();
        assert_eq!(
            store.verify().unwrap(),
            VerifyReport {
                checked: 4,
                bytes: blobs
                    .iter()
                    .map(|d| store.blob_size(d).unwrap())
                    .sum::<u64>()
                    + app.size,
                corrupt: vec![],
            }
        );
        // Same size, different bytes: only re-hashing can tell.
        damage(&store, &blobs[2], b"layer TWO");
        let report = store.verify().unwrap();
        assert_eq!(
            (report.checked, report.corrupt.clone()),
            (3, vec![blobs[2]])
        );

        assert!(store.prune().unwrap().corrupt.is_empty());
        assert!(store.has_blob(&blobs[2]));
        let options = PruneOptions {
            verify: true,
            ..PruneOptions::default()
        };
        let report = store.prune_with(&options).unwrap();
        assert_eq!(report.corrupt, [blobs[2]]);
        assert_eq!(report.freed_bytes, 9);
        assert!(report.removed_blobs.is_empty());
        assert!(!store.has_blob(&blobs[2]));
        assert!(store.verify().unwrap().corrupt.is_empty());
    }

    #[test]
    fn a_truncated_blob_is_caught_by_its_descriptor_size() {
        let (_dir, mut store) = store();
        let (app, blobs) = put_image(&store, "app", &[b"a layer of some length"]);
        store.tag("app:1", &app).unwrap();
        damage(&store, &blobs[1], b"a layer");
        let report = store.prune().unwrap();
        assert_eq!(report.corrupt, [blobs[1]]);
        assert!(store.has_blob(&blobs[0]) && store.has_blob(&app.digest));
    }

    #[test]
    fn a_wrong_size_in_a_descriptor_never_removes_a_good_blob() {
        let (_dir, mut store) = store();
        let (layer, _) = store.put_blob_bytes(b"good layer", None).unwrap();
        let manifest = serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "layers": [{ "mediaType": "x", "digest": layer, "size": 3 }],
        });
        let (digest, size) = store.put_blob_bytes(&canonical(&manifest), None).unwrap();
        store
            .tag("odd:1", &Descriptor::new(OCI_MANIFEST, digest, size))
            .unwrap();
        let report = store.prune().unwrap();
        assert_eq!(report, PruneReport::default());
        assert!(store.has_blob(&layer));
    }

    #[test]
    fn the_snapshot_of_a_cached_layer_stays_and_an_unnamed_one_goes() {
        let (_dir, mut store) = store();
        let (blob, size) = store.put_blob_bytes(b"a cached layer", None).unwrap();
        let (cached, gone) = (Digest::of(b"cached tar"), Digest::of(b"other tar"));
        let layer = crate::CachedLayer {
            digest: blob,
            size,
            diff_id: cached,
            tar_size: 1024,
        };
        store.cache_put(KEY, &CacheRecord::layer(layer)).unwrap();
        for diff_id in [cached, gone] {
            fs::create_dir_all(store.snapshot(&diff_id).content()).unwrap();
        }
        let report = store.prune().unwrap();
        assert_eq!(report.removed_snapshots, 1);
        assert!(store.snapshot(&cached).content().is_dir());
        assert!(!store.snapshot(&gone).dir().exists());
    }

    #[test]
    fn prune_drops_cache_records_that_are_damaged_or_lack_a_blob() {
        let (dir, mut store) = store();
        let (gone, _) = store.put_blob_bytes(b"gone", None).unwrap();
        let (other, _) = store.put_blob_bytes(b"other", None).unwrap();
        let record = CacheRecord {
            value: crate::CacheValue::Empty,
            blobs: vec![gone, other],
        };
        store.cache_put(KEY, &record).unwrap();
        let path = store.blob_path(&gone);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::remove_file(path).unwrap();
        fs::create_dir_all(dir.path().join("cache/ff")).unwrap();
        fs::write(dir.path().join("cache/ff/ffff.json"), b"garbage").unwrap();

        let report = store.prune().unwrap();
        assert_eq!(report.removed_cache_records, 2);
        assert_eq!(report.removed_blobs, [other]);
        assert!(store.cache_records().unwrap().is_empty());
    }

    #[test]
    fn prune_stops_when_index_json_is_unreadable() {
        let (dir, mut store) = store();
        let (blob, _) = store.put_blob_bytes(b"maybe tagged", None).unwrap();
        fs::write(dir.path().join("index.json"), b"{").unwrap();
        let err = store.prune().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(store.has_blob(&blob));
    }

    #[test]
    fn remove_image_frees_only_blobs_nothing_else_uses() {
        let (_dir, mut store) = store();
        let (app, app_blobs) = put_image(&store, "app", &[b"shared base", b"app only"]);
        let (web, _) = put_image(&store, "web", &[b"shared base", b"web only"]);
        let (cached, _) = store.put_blob_bytes(b"cached", None).unwrap();
        store.tag("app:1", &app).unwrap();
        store.tag("app:latest", &app).unwrap();
        store.tag("web:1", &web).unwrap();
        let record = CacheRecord::alias(Digest::of(b"a key"), Some(cached));
        store.cache_put(KEY, &record).unwrap();

        // Another tag still names the image: only the tag goes.
        let removed = store.remove_image("app:1").unwrap();
        assert_eq!(
            (removed.descriptor, removed.removed_blobs.len()),
            (app.clone(), 0)
        );

        let config_size = store.blob_size(&app_blobs[0]).unwrap();
        let removed = store.remove_image("app:latest").unwrap();
        let expected = sorted(vec![app.digest, app_blobs[0], app_blobs[2]]);
        assert_eq!(removed.removed_blobs, expected);
        assert_eq!(
            removed.freed_bytes,
            app.size + b"app only".len() as u64 + config_size
        );
        assert!(store.has_blob(&app_blobs[1]), "the shared base layer stays");
        assert!(store.has_blob(&cached));
        let err = store.remove_image("app:latest").unwrap_err();
        assert!(matches!(err, StoreError::ImageNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("hoist images"));
    }
}
