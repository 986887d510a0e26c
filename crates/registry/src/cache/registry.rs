//! The cache in a registry repository: one tagged manifest per entry.

use std::collections::BTreeSet;

use super::{Entry, REFRESH_AFTER, Step, TAG_PREFIX, Unusable, empty_config, parallel, tag_of};
use crate::client::{Client, ClientOptions, Endpoint};
use crate::error::{RegistryError, Result};
use crate::push::{Source, mount_sources, push_blobs};
use crate::reference::Reference;
use hoist_oci::image::Descriptor;
use hoist_oci::{Digest, media_type};
use hoist_store::Store;

/// A registry repository holding cache entries (`--cache-to
/// type=registry,ref=REPO`).
pub struct RegistryCache {
    client: Client,
    endpoint: Endpoint,
    repository: Reference,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    /// Entries written, and entries the registry already had (written
    /// recently with the same result).
    pub written: usize,
    pub kept: usize,
    /// Layer blobs uploaded (and their bytes), mounted from another
    /// repository of the registry, or already there.
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries deleted, and entries young enough to stay.
    pub deleted: usize,
    pub kept: usize,
    /// Entries left alone because this hoist cannot read them (a newer
    /// format): their writer's rules apply.
    pub unreadable: usize,
    /// Tags of the repository that are not cache entries, left alone.
    pub other_tags: usize,
}

impl RegistryCache {
    /// The cache in `repository` (its tag, if any, is ignored). A cache is
    /// an optional speed-up, so its requests are retried once, not as
    /// often as a pull's.
    pub fn new(repository: &Reference, options: ClientOptions) -> RegistryCache {
        let options = ClientOptions {
            attempts: options.attempts.min(2),
            ..options
        };
        let client = Client::new(options);
        let endpoint = client.endpoint(repository.api_host());
        RegistryCache {
            client,
            endpoint,
            repository: Reference {
                tag: None,
                digest: None,
                ..repository.clone()
            },
        }
    }

    /// `domain/path`, as remote blob records and messages name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.repository.domain, self.repository.path)
    }

    /// The entry for `key`: `None` when the repository has none, else the
    /// entry or why it cannot be used. One request.
    pub fn lookup(&self, key: &Digest) -> Result<Option<Result<Entry, Unusable>>> {
        let path = &self.repository.path;
        let fetched = match self.client.get_manifest(&self.endpoint, path, &tag_of(key)) {
            Ok(fetched) => fetched,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(claimed) = fetched.header_digest
            && claimed != Digest::of(&fetched.bytes)
        {
            return Ok(Some(Err(Unusable::Malformed(format!(
                "its manifest does not have the digest {claimed} the registry gives it"
            )))));
        }
        Ok(Some(Entry::from_manifest(key, &fetched.bytes)))
    }

    /// Writes `entries` (their layers from `store`, which holds them or
    /// knows where they are): an entry the repository has with the same
    /// result, written less than [`REFRESH_AFTER`] before `now`, is kept
    /// as it is; the others are written with `created` = `now`. Layers go
    /// first (mounted when the registry has them in another repository),
    /// each entry's manifest last, so no reader sees an entry whose layer
    /// is not there yet.
    pub fn export(&self, store: &Store, entries: &[Entry], now: u64) -> Result<Exported> {
        let current = parallel(entries, |entry| match self.lookup(&entry.key) {
            Ok(Some(Ok(found))) => {
                Ok(found.same_step(entry) && now.saturating_sub(found.created) < REFRESH_AFTER)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        });
        let mut to_write = Vec::new();
        let mut exported = Exported::default();
        for (entry, current) in entries.iter().zip(current) {
            if current? {
                exported.kept += 1;
            } else {
                to_write.push(Entry {
                    created: now,
                    ..entry.clone()
                });
            }
        }
        if to_write.is_empty() {
            return Ok(exported);
        }
        let config = empty_config();
        let store_error = |source| RegistryError::Store {
            registry: self.endpoint.host.clone(),
            source,
        };
        store
            .put_blob_bytes(b"{}", Some(&config.digest))
            .map_err(store_error)?;
        let mut seen = BTreeSet::new();
        let blobs: Vec<Descriptor> = to_write
            .iter()
            .filter_map(|entry| match &entry.step {
                Step::Layer(layer) => Some(super::layer_descriptor(layer)),
                Step::Empty => None,
            })
            .chain([Descriptor::new(
                media_type::OCI_EMPTY,
                config.digest,
                config.size,
            )])
            .filter(|blob| seen.insert(blob.digest))
            .collect();
        let mounts = mount_sources(store, &self.repository, &blobs).map_err(store_error)?;
        let path = &self.repository.path;
        let counts = push_blobs(
            &self.client,
            Source::Store(store),
            &self.endpoint,
            path,
            &blobs,
            &mounts,
            &|_, _| {},
        )?;
        exported.blobs_uploaded = counts.uploaded;
        exported.bytes_uploaded = counts.bytes;
        exported.blobs_mounted = counts.mounted;
        exported.blobs_present = counts.present;
        for written in parallel(&to_write, |entry| self.put_entry(store, entry)) {
            written?;
            exported.written += 1;
        }
        Ok(exported)
    }

    /// PUTs `entry`'s manifest. registry:2 can lose track of a blob that
    /// several clients upload at once (another runner exporting a step
    /// with the same layer, or the empty config) and then refuse the
    /// manifest with `MANIFEST_BLOB_UNKNOWN`: the blobs are sent again
    /// and the manifest retried, a few times.
    fn put_entry(&self, store: &Store, entry: &Entry) -> Result<Digest> {
        let path = &self.repository.path;
        let mut attempt = 0;
        loop {
            let put = self.client.put_manifest(
                &self.endpoint,
                path,
                &tag_of(&entry.key),
                media_type::OCI_MANIFEST,
                &entry.to_manifest(),
            );
            match put {
                Err(RegistryError::Status {
                    status: 400,
                    detail,
                    ..
                }) if detail.contains("BLOB_UNKNOWN") && attempt < 3 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
                    let config = empty_config();
                    let blobs: Vec<Descriptor> = match &entry.step {
                        Step::Layer(layer) => vec![super::layer_descriptor(layer)],
                        Step::Empty => Vec::new(),
                    }
                    .into_iter()
                    .chain([Descriptor::new(
                        media_type::OCI_EMPTY,
                        config.digest,
                        config.size,
                    )])
                    .collect();
                    push_blobs(
                        &self.client,
                        Source::Store(store),
                        &self.endpoint,
                        path,
                        &blobs,
                        &Default::default(),
                        &|_, _| {},
                    )?;
                }
                result => return result,
            }
        }
    }

    /// Deletes the entries written more than `keep_for` seconds before
    /// `now` (an entry a build uses is written again at least daily, see
    /// [`REFRESH_AFTER`]). Deleting a manifest by digest leaves a newer
    /// manifest a concurrent export put under the same tag in place.
    pub fn prune(&self, keep_for: u64, now: u64) -> Result<Pruned> {
        let path = &self.repository.path;
        let tags = self.client.list_tags(&self.endpoint, path)?;
        let mut pruned = Pruned::default();
        let mut entries = Vec::new();
        for tag in tags {
            match tag
                .strip_prefix(TAG_PREFIX)
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            {
                Some(key) => entries.push((tag, key)),
                None => pruned.other_tags += 1,
            }
        }
        let verdicts = parallel(&entries, |(tag, key)| -> Result<Verdict> {
            let fetched = match self.client.get_manifest(&self.endpoint, path, tag) {
                Ok(fetched) => fetched,
                // Deleted by another prune meanwhile.
                Err(RegistryError::NotFound { .. }) => return Ok(Verdict::Gone),
                Err(e) => return Err(e),
            };
            let digest = Digest::of(&fetched.bytes);
            match Entry::from_manifest(key, &fetched.bytes) {
                Ok(entry) if now.saturating_sub(entry.created) > keep_for => {
                    self.client.delete_manifest(&self.endpoint, path, &digest)?;
                    Ok(Verdict::Deleted)
                }
                Ok(_) => Ok(Verdict::Kept),
                Err(Unusable::NewerFormat(_)) => Ok(Verdict::Unreadable),
                // Not an entry any hoist wrote well: deleted whatever its
                // age, as nothing can use it.
                Err(_) => {
                    self.client.delete_manifest(&self.endpoint, path, &digest)?;
                    Ok(Verdict::Deleted)
                }
            }
        });
        for verdict in verdicts {
            match verdict? {
                Verdict::Deleted => pruned.deleted += 1,
                Verdict::Kept => pruned.kept += 1,
                Verdict::Unreadable => pruned.unreadable += 1,
                Verdict::Gone => {}
            }
        }
        Ok(pruned)
    }
}

enum Verdict {
    Deleted,
    Kept,
    Unreadable,
    Gone,
}
