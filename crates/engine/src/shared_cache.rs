//! The shared build cache, build side: `--cache-from` and `--cache-to`
//! specs (buildx's syntax), step keys answered from a registry repository
//! or a directory after the store misses, and the steps of the build
//! exported when it is done. Both transports and the entry format are in
//! [`hoist_registry::cache`].
//!
//! A shared cache is a speed-up, never a requirement: an unreachable
//! registry, refused access or an unusable entry is a warning and the step
//! is built; a layer of an entry that turns out not to be fetchable makes
//! the build start again without the shared cache, so a damaged cache
//! never yields a damaged image.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use hoist_oci::image::Descriptor;
use hoist_oci::{Digest, media_type};
use hoist_registry::cache::{DirectoryCache, Entry, RegistryCache, Step, layer_descriptor};
use hoist_registry::{ClientOptions, Reference};
use hoist_store::{CacheRecord, CacheValue, RemoteBlob, Store};

use crate::engine::{Builder, Event};
use crate::error::{BuildError, StepError};
use hoist_dockerfile::plan::{Base, Plan};

/// Which steps a `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The steps of the target's stage and the stages it is built on
    /// (the layers of the image), as buildx's default.
    #[default]
    Min,
    /// Every step of every stage built.
    Max,
}

/// Where a shared cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// `type=registry,ref=REPO`.
    Registry(Reference),
    /// `type=local,src=DIR` or `dest=DIR`.
    Directory(PathBuf),
}

/// One `--cache-from` or `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub location: CacheLocation,
    pub mode: Mode,
}

/// Whether a spec is read from or written to: the attributes differ
/// (`src=` and `dest=`, `mode=` only for exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    From,
    To,
}

/// Attributes buildx defines that change nothing here (compression and
/// media types are hoist's own; a cache error never fails the build).
const IGNORED: &[&str] = &[
    "ignore-error",
    "oci-mediatypes",
    "image-manifest",
    "compression",
    "compression-level",
    "force-compression",
];

impl CacheSpec {
    /// Parses `type=registry,ref=REPO[,mode=min|max]`,
    /// `type=local,src=DIR` (`dest=DIR` for `--cache-to`), or a bare
    /// `REPO` (a registry cache).
    pub fn parse(text: &str, direction: Direction) -> Result<CacheSpec, String> {
        let flag = match direction {
            Direction::From => "--cache-from",
            Direction::To => "--cache-to",
        };
        let text = text.trim();
        if !text.contains('=') {
            return registry(text, flag).map(|reference| CacheSpec {
                location: CacheLocation::Registry(reference),
                mode: Mode::Min,
            });
        }
        let mut kind = None;
        let mut reference = None;
        let mut dir = None;
        let mut mode = Mode::Min;
        for field in text.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                format!("{flag} {text}: `{field}` is not KEY=VALUE; write e.g. type=registry,ref=registry.example/app/cache")
            })?;
            match (key.trim(), direction) {
                ("type", _) => kind = Some(value.trim()),
                ("ref", _) => reference = Some(value.trim()),
                ("src", Direction::From) | ("dest", Direction::To) => {
                    dir = Some(PathBuf::from(value.trim()))
                }
                ("mode", Direction::To) => {
                    mode = match value.trim() {
                        "min" => Mode::Min,
                        "max" => Mode::Max,
                        other => {
                            return Err(format!(
                                "{flag} {text}: mode={other} is not a mode; use mode=min (the \
                                 image's steps) or mode=max (every stage's)"
                            ));
                        }
                    }
                }
                (key, _) if IGNORED.contains(&key) => {}
                (key, _) => {
                    let expected = match direction {
                        Direction::From => "type, ref and src",
                        Direction::To => "type, ref, dest and mode",
                    };
                    return Err(format!(
                        "{flag} {text}: unknown attribute `{key}`; {flag} takes {expected}"
                    ));
                }
            }
        }
        let location = match kind.unwrap_or("registry") {
            "registry" => CacheLocation::Registry(registry(
                reference
                    .ok_or_else(|| format!("{flag} {text}: type=registry needs ref=REPOSITORY"))?,
                flag,
            )?),
            "local" => CacheLocation::Directory(dir.ok_or_else(|| {
                let key = match direction {
                    Direction::From => "src",
                    Direction::To => "dest",
                };
                format!("{flag} {text}: type=local needs {key}=DIRECTORY")
            })?),
            other => {
                return Err(format!(
                    "{flag} {text}: cache type `{other}` is not supported; use type=registry \
                     (a registry repository) or type=local (a directory)"
                ));
            }
        };
        Ok(CacheSpec { location, mode })
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        match &self.location {
            CacheLocation::Registry(r) => format!("registry cache {}/{}", r.domain, r.path),
            CacheLocation::Directory(d) => format!("cache directory {}", d.display()),
        }
    }
}

fn registry(text: &str, flag: &str) -> Result<Reference, String> {
    let reference =
        Reference::parse(text).map_err(|e| format!("{flag} {text}: not a repository: {e}"))?;
    if reference.digest.is_some() {
        return Err(format!(
            "{flag} {text}: a cache is a repository; drop the @digest"
        ));
    }
    Ok(reference)
}

/// Where a step the store did not have was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHit {
    /// In the store.
    Local,
    /// In a registry cache (`--cache-from type=registry`).
    Registry,
    /// In a cache directory (`--cache-from type=local`).
    Directory,
}

impl CacheHit {
    pub fn label(self) -> &'static str {
        match self {
            CacheHit::Local => "local",
            CacheHit::Registry => "registry",
            CacheHit::Directory => "directory",
        }
    }
}

/// A `--cache-from` source during a build.
enum Source {
    Registry(Box<RegistryCache>),
    Directory(DirectoryCache),
}

/// The build's shared caches and what they did.
pub(crate) struct SharedCache {
    sources: Vec<(Source, String, Cell<bool>)>,
    /// Every key a step looked up, with the stage it belongs to.
    pub looked_up: RefCell<Vec<(usize, Digest)>>,
    /// Keys answered from a source, and their layer (if any), and which
    /// kind of source answered each.
    pub adopted: RefCell<Vec<(Digest, Option<Digest>)>>,
    pub adopted_from: RefCell<Vec<CacheHit>>,
    /// Where the last hit came from (read by the step's progress).
    pub last_hit: Cell<Option<CacheHit>>,
    pub warnings: RefCell<Vec<String>>,
    /// Bytes copied from cache directories.
    pub bytes_imported: Cell<u64>,
    /// Keys no source had (a step looks its key up more than once).
    missed: RefCell<std::collections::HashSet<Digest>>,
}

impl SharedCache {
    pub fn new(from: &[CacheSpec], client: &ClientOptions) -> SharedCache {
        let sources = from
            .iter()
            .map(|spec| {
                let source = match &spec.location {
                    CacheLocation::Registry(r) => {
                        Source::Registry(Box::new(RegistryCache::new(r, client.clone())))
                    }
                    CacheLocation::Directory(d) => Source::Directory(DirectoryCache::new(d)),
                };
                (source, spec.describe(), Cell::new(true))
            })
            .collect();
        SharedCache {
            sources,
            looked_up: RefCell::default(),
            adopted: RefCell::default(),
            adopted_from: RefCell::default(),
            last_hit: Cell::default(),
            warnings: RefCell::default(),
            bytes_imported: Cell::default(),
            missed: RefCell::default(),
        }
    }

    /// Answers `key` from the sources, in order, and records the answer in
    /// the store as a local record would be (a registry layer as a remote
    /// blob of the store, a directory's layer copied in).
    pub fn lookup(&self, store: &Store, key: &Digest) -> Option<CacheRecord> {
        if self.sources.is_empty() || self.missed.borrow().contains(key) {
            return None;
        }
        for (source, name, usable) in &self.sources {
            if !usable.get() {
                continue;
            }
            let found = match source {
                Source::Registry(cache) => cache.lookup(key).map_err(|e| hoist_oci::error_line(&e)),
                Source::Directory(cache) => {
                    cache.lookup(key).map_err(|e| hoist_oci::error_line(&e))
                }
            };
            let entry = match found {
                Ok(None) => continue,
                Ok(Some(Ok(entry))) => entry,
                Ok(Some(Err(unusable))) => {
                    self.warn(format!(
                        "{name}: the entry for step key {key} is not used: {unusable}"
                    ));
                    continue;
                }
                Err(reason) => {
                    usable.set(false);
                    self.warn(format!(
                        "{name} is not used for the rest of this build: {reason}"
                    ));
                    continue;
                }
            };
            match self.adopt(store, source, &entry) {
                Ok(record) => {
                    let hit = match source {
                        Source::Registry(_) => CacheHit::Registry,
                        Source::Directory(_) => CacheHit::Directory,
                    };
                    self.last_hit.set(Some(hit));
                    self.adopted_from.borrow_mut().push(hit);
                    return Some(record);
                }
                Err(reason) => self.warn(format!(
                    "{name}: the entry for step key {key} is not used: {reason}"
                )),
            }
        }
        self.missed.borrow_mut().insert(*key);
        None
    }

    /// Records `entry` in the store; returns its record.
    fn adopt(&self, store: &Store, source: &Source, entry: &Entry) -> Result<CacheRecord, String> {
        let record = match &entry.step {
            Step::Empty => CacheRecord::empty(),
            Step::Layer(layer) => {
                match source {
                    Source::Registry(cache) if !store.has_blob(&layer.digest) => {
                        let remote = RemoteBlob {
                            repository: cache.name(),
                            media_type: media_type::OCI_LAYER_TAR_GZIP.to_owned(),
                            size: layer.size,
                            mirror: None,
                        };
                        store
                            .record_remote(&layer.digest, &remote)
                            .map_err(|e| hoist_oci::error_line(&e))?;
                    }
                    Source::Registry(_) => {}
                    Source::Directory(cache) => {
                        if !store.has_blob(&layer.digest) {
                            cache
                                .import(store, &layer.digest)
                                .map_err(|e| hoist_oci::error_line(&e))?;
                            self.bytes_imported
                                .set(self.bytes_imported.get() + layer.size);
                        }
                    }
                }
                CacheRecord::layer(*layer)
            }
        };
        store
            .cache_put(&entry.key.hex(), &record)
            .map_err(|e| hoist_oci::error_line(&e))?;
        let layer = match &entry.step {
            Step::Layer(layer) => Some(layer.digest),
            Step::Empty => None,
        };
        self.adopted.borrow_mut().push((entry.key, layer));
        Ok(record)
    }

    fn warn(&self, message: String) {
        self.warnings.borrow_mut().push(message);
    }

    /// Forgets what the sources answered (their records in the store),
    /// for a build that starts again without them.
    pub fn forget_adopted(&self, store: &Store) {
        for (key, _) in self.adopted.borrow().iter() {
            let _ = store.cache_forget(&key.hex());
        }
    }
}

/// The entries to export for `keys`: each key's record in the store.
pub(crate) fn entries(store: &Store, keys: &[Digest], now: u64) -> Vec<Entry> {
    let mut seen = std::collections::BTreeSet::new();
    keys.iter()
        .filter(|key| seen.insert(**key))
        .filter_map(|key| {
            let record = store.cache_get(&key.hex()).ok()??;
            let step = match record.value {
                CacheValue::Layer(layer) => Step::Layer(layer),
                CacheValue::Empty => Step::Empty,
                CacheValue::Alias { .. } => return None,
            };
            Some(Entry {
                key: *key,
                step,
                created: now,
            })
        })
        .collect()
}

/// Where a build's cached steps came from, what it fetched, and what its
/// `--cache-to` exports did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheReport {
    /// Steps answered by the store, by a registry cache, by a cache
    /// directory.
    pub local: usize,
    pub registry: usize,
    pub directory: usize,
    /// Layer bytes fetched from registries (bases and shared cache
    /// layers) or copied from cache directories.
    pub bytes_downloaded: u64,
    pub exports: Vec<CacheExport>,
}

impl Builder<'_> {
    /// The report of a build that is done, after its `--cache-to`
    /// exports (each a warning when it fails: the image is built).
    pub(crate) fn shared_cache_report(
        &mut self,
        planned: &Plan,
        events: &mut dyn FnMut(Event),
    ) -> CacheReport {
        let mut report = CacheReport {
            bytes_downloaded: self.bytes_fetched + self.shared.bytes_imported.get(),
            ..CacheReport::default()
        };
        let adopted = self.shared.adopted.borrow().len();
        report.registry = self
            .shared
            .adopted_from
            .borrow()
            .iter()
            .filter(|hit| **hit == CacheHit::Registry)
            .count();
        report.directory = adopted - report.registry;
        report.local = self.cached.saturating_sub(adopted);
        for spec in &self.request.cache_to {
            match self.export(spec, planned) {
                Ok(export) => report.exports.push(export),
                Err(reason) => events(Event::Warning(format!(
                    "the build's steps were not written to the {}: {reason}",
                    spec.describe()
                ))),
            }
        }
        for warning in self.shared.warnings.take() {
            events(Event::Warning(warning));
        }
        report
    }

    /// Writes the steps `spec.mode` selects to `spec`'s cache.
    fn export(&mut self, spec: &CacheSpec, planned: &Plan) -> Result<CacheExport, String> {
        let stages: Vec<usize> = match spec.mode {
            Mode::Max => planned.order.clone(),
            // The target and the stages it is built on: the image's layers.
            Mode::Min => {
                std::iter::successors(Some(planned.target), |&i| match planned.stages[i].base {
                    Base::Stage(below) => Some(below),
                    _ => None,
                })
                .collect()
            }
        };
        let keys: Vec<Digest> = self
            .shared
            .looked_up
            .borrow()
            .iter()
            .filter(|(stage, _)| stages.contains(stage))
            .map(|(_, key)| *key)
            .collect();
        let now = hoist_registry::cache::now();
        let entries = entries(self.store, &keys, now);
        let name = spec.describe();
        match &spec.location {
            CacheLocation::Registry(reference) => {
                let cache = RegistryCache::new(reference, self.request.pull.client_options());
                let done = cache
                    .export(self.store, &entries, now)
                    .map_err(|e| hoist_oci::error_line(&e))?;
                Ok(CacheExport {
                    name,
                    written: done.written,
                    kept: done.kept,
                    bytes_uploaded: done.bytes_uploaded,
                })
            }
            CacheLocation::Directory(dir) => {
                // A directory holds bytes: layers still in a registry are
                // fetched first.
                let layers: Vec<Descriptor> = entries
                    .iter()
                    .filter_map(|entry| match &entry.step {
                        Step::Layer(layer) => Some(layer_descriptor(layer)),
                        Step::Empty => None,
                    })
                    .collect();
                self.bytes_fetched += hoist_registry::fetch_remote(
                    &self.registry,
                    self.store,
                    &layers,
                    &|_| None,
                    &self.request.pull.mirrors,
                )
                .map_err(|e| hoist_oci::error_line(&e))?;
                let done = DirectoryCache::new(dir)
                    .export(self.store, &entries, now)
                    .map_err(|e| hoist_oci::error_line(&e))?;
                Ok(CacheExport {
                    name,
                    written: done.written,
                    kept: done.kept,
                    bytes_uploaded: done.bytes_copied,
                })
            }
        }
    }
}

/// Whether a build failed because a layer could not be fetched or read
/// back whole: what a damaged shared cache causes.
pub(crate) fn is_fetch_failure(error: &BuildError) -> bool {
    matches!(
        error,
        BuildError::Step { source, .. } if matches!(**source, StepError::Fetch(_) | StepError::Layer(_))
    )
}

/// What one `--cache-to` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// How the cache is named (`registry cache 127.0.0.1:5000/app/cache`).
    pub name: String,
    pub written: usize,
    pub kept: usize,
    pub bytes_uploaded: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_take_buildx_syntax() {
        let from = |t: &str| CacheSpec::parse(t, Direction::From);
        let to = |t: &str| CacheSpec::parse(t, Direction::To);
        let repo = |t: &str| CacheLocation::Registry(Reference::parse(t).unwrap());
        assert_eq!(
            to("type=registry,ref=127.0.0.1:5000/app/cache,mode=max").unwrap(),
            CacheSpec {
                location: repo("127.0.0.1:5000/app/cache"),
                mode: Mode::Max
            }
        );
        assert_eq!(
            from("127.0.0.1:5000/app/cache").unwrap().location,
            repo("127.0.0.1:5000/app/cache")
        );
        assert_eq!(
            from("type=local,src=/var/cache/hoist").unwrap().location,
            CacheLocation::Directory("/var/cache/hoist".into())
        );
        assert_eq!(
            to("type=local,dest=/var/cache/hoist,mode=min,ignore-error=true")
                .unwrap()
                .mode,
            Mode::Min
        );
        let refused = [
            (to("type=gha"), "cache type `gha` is not supported"),
            (to("type=registry"), "needs ref=REPOSITORY"),
            (to("type=local,src=/x"), "unknown attribute `src`"),
            (from("type=local,dest=/x"), "unknown attribute `dest`"),
            (
                from("type=registry,ref=r,mode=max"),
                "unknown attribute `mode`",
            ),
            (to("type=registry,ref=r,mode=all"), "mode=all is not a mode"),
            (
                to(
                    "type=registry,ref=r@sha256:0123456789012345678901234567890123456789012345678901234567890123",
                ),
                "drop the @digest",
            ),
            (to("type=registry,ref=team/App"), "not a repository"),
            (to("type=registry,,ref=r"), "is not KEY=VALUE"),
        ];
        for (result, message) in refused {
            let error = result.unwrap_err();
            assert!(error.contains(message), "{error}");
        }
    }
}
