//! hoist's shared build cache: step results a build exports for other
//! machines (`--cache-to`) and imports from them (`--cache-from`), kept in
//! a registry repository ([`RegistryCache`]) or a directory
//! ([`DirectoryCache`]). docs/cache.md describes the format.
//!
//! One entry per step cache key, and each entry is its own document: an
//! OCI image manifest tagged `hoist-cache-<key hex>` (in a directory,
//! `entries/<key hex>.json`) whose annotations hold the step's result and
//! whose one layer, if the step made one, is the layer itself. Nothing is
//! shared between entries, so writers never overwrite each other's
//! records; two writers of one key write the same result. A lookup is one
//! small request; the layer is fetched only when something needs its
//! bytes, and mounted by a push to the registry holding it.

mod directory;
mod registry;

use std::collections::BTreeMap;

use hoist_oci::image::{Descriptor, Document, Manifest, parse_rfc3339_utc, rfc3339_utc};
use hoist_oci::{Digest, media_type};
use hoist_store::CachedLayer;

pub use directory::{DirectoryCache, DirectoryError, DirectoryExported};
pub use registry::{Exported, Pruned, RegistryCache};

/// The format of the entries this hoist writes and reads. An entry of a
/// newer format is a miss (with a warning), never misread.
pub const FORMAT: u32 = 1;

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.hoist.cache.step.v1";

/// The prefix of an entry's tag; the key's 64 hex digits follow.
pub const TAG_PREFIX: &str = "hoist-cache-";

const KEY: &str = "io.hoist.cache.key";
const VERSION: &str = "io.hoist.cache.version";
const CREATED: &str = "org.opencontainers.image.created";
const DIFF_ID: &str = "io.hoist.cache.diff-id";
const TAR_SIZE: &str = "io.hoist.cache.tar-size";

/// The tag (or file name, without `.json`) of the entry for `key`.
pub fn tag_of(key: &Digest) -> String {
    format!("{TAG_PREFIX}{}", key.hex())
}

/// The empty JSON object `{}`, every entry's config (as OCI artifacts
/// without a config of their own use).
pub fn empty_config() -> Descriptor {
    let mut config = Descriptor::new(media_type::OCI_EMPTY, Digest::of(b"{}"), 2);
    config.data = Some("e30=".to_owned());
    config
}

/// What a step left, as the cache shares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The step made this layer (gzip, as hoist writes every layer).
    Layer(CachedLayer),
    /// The step changed nothing (a RUN that wrote no file, a WORKDIR that
    /// exists).
    Empty,
}

/// One step's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Digest,
    pub step: Step,
    /// When it was written, in seconds since the Unix epoch: what `hoist
    /// cache prune --keep-for` ages it by (an export rewrites an entry
    /// older than [`REFRESH_AFTER`] that its build used).
    pub created: u64,
}

/// How old an entry a build used gets before its export writes it again,
/// so that pruning by age removes only what no build uses.
pub const REFRESH_AFTER: u64 = 24 * 3600;

/// Why an entry that was found cannot be used (a miss, with a warning).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("it was written by a newer hoist (cache format {0}; this hoist reads {FORMAT})")]
    NewerFormat(String),
    #[error("it is not a hoist cache entry ({0})")]
    Malformed(String),
    #[error("it is the entry of another key ({0})")]
    OtherKey(String),
}

impl Entry {
    /// The entry's manifest, in canonical JSON.
    pub fn to_manifest(&self) -> Vec<u8> {
        let layers = match &self.step {
            Step::Layer(layer) => vec![
                layer_descriptor(layer)
                    .with_annotation(DIFF_ID, &layer.diff_id.to_string())
                    .with_annotation(TAR_SIZE, &layer.tar_size.to_string()),
            ],
            Step::Empty => Vec::new(),
        };
        let mut manifest = Manifest::new(empty_config(), layers);
        manifest.artifact_type = Some(ARTIFACT_TYPE.to_owned());
        manifest.annotations = BTreeMap::from([
            (KEY.to_owned(), self.key.to_string()),
            (VERSION.to_owned(), FORMAT.to_string()),
            (CREATED.to_owned(), rfc3339_utc(self.created)),
        ]);
        manifest.encode().bytes
    }

    /// The entry `bytes` hold, checked to be the entry of `key` in a
    /// format this hoist reads.
    pub fn from_manifest(key: &Digest, bytes: &[u8]) -> Result<Entry, Unusable> {
        let manifest =
            Manifest::from_json(bytes).map_err(|e| Unusable::Malformed(e.to_string()))?;
        let annotation = |name: &str| manifest.annotations.get(name).map(String::as_str);
        match annotation(VERSION) {
            Some(version) if version == FORMAT.to_string() => {}
            Some(version) if version.parse::<u32>().is_ok_and(|v| v > FORMAT) => {
                return Err(Unusable::NewerFormat(version.to_owned()));
            }
            other => {
                return Err(Unusable::Malformed(format!(
                    "{VERSION} is {}",
                    other.unwrap_or("missing")
                )));
            }
        }
        let named = annotation(KEY).unwrap_or_default();
        if named != key.to_string() {
            return Err(Unusable::OtherKey(named.to_owned()));
        }
        let created = annotation(CREATED)
            .and_then(parse_rfc3339_utc)
            .ok_or_else(|| Unusable::Malformed(format!("{CREATED} is not an RFC 3339 UTC time")))?;
        let step = match &manifest.layers[..] {
            [] => Step::Empty,
            [layer] => {
                let layer_annotation = |name: &str| {
                    layer
                        .annotations
                        .get(name)
                        .ok_or_else(|| Unusable::Malformed(format!("its layer has no {name}")))
                };
                let diff_id = layer_annotation(DIFF_ID)?
                    .parse()
                    .map_err(|_| Unusable::Malformed(format!("{DIFF_ID} is not a digest")))?;
                let tar_size = layer_annotation(TAR_SIZE)?
                    .parse()
                    .map_err(|_| Unusable::Malformed(format!("{TAR_SIZE} is not a size")))?;
                if layer.media_type != media_type::OCI_LAYER_TAR_GZIP {
                    return Err(Unusable::Malformed(format!(
                        "its layer has media type {}",
                        layer.media_type
                    )));
                }
                Step::Layer(CachedLayer {
                    digest: layer.digest,
                    size: layer.size,
                    diff_id,
                    tar_size,
                })
            }
            more => {
                return Err(Unusable::Malformed(format!("{} layers", more.len())));
            }
        };
        Ok(Entry {
            key: *key,
            step,
            created,
        })
    }

    /// Whether this entry says the same as `other`, whenever written.
    pub fn same_step(&self, other: &Entry) -> bool {
        self.key == other.key && self.step == other.step
    }
}

/// The descriptor of a layer an entry names.
pub fn layer_descriptor(layer: &CachedLayer) -> Descriptor {
    Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, layer.digest, layer.size)
}

/// `f` over `items`, a few at once (as a push sends blobs), results in
/// order.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..crate::push::PARALLEL_BLOBS.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        return;
                    };
                    *results[i].lock().expect("poisoned") = Some(f(item));
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .expect("poisoned")
                .expect("every item was done")
        })
        .collect()
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
