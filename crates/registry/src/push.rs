//! Pushing an image from the store to a registry: what `hoist push` and
//! `hoist build --push` do.
//!
//! [`push`] reads the image a store tag points at (a manifest, or an index
//! whose manifests are all in the store), converts the documents to
//! Docker's schema 2 when asked, then sends every blob the registry lacks,
//! a few at once, and the manifests last, the tagged document very last,
//! so the tag never names an incomplete image. A blob the repository holds
//! already (`HEAD`) is not sent; one that a push from this store put into
//! another repository of the same registry is mounted from there (one
//! `POST`, no bytes), falling back to an upload when the registry declines.
//! Blobs stream from their store files (see [`upload`](super::upload)).
//! Last, the push is recorded in the store ([`Store::pushed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::client::{Client, ClientOptions, Endpoint};
use super::error::{RegistryError, Result};
use super::reference::Reference;
use super::upload::{BlobFile, Started};
use hoist_oci::Digest;
use hoist_oci::image::{
    Descriptor, Document, Index, Manifest, ManifestOrIndex, to_docker_manifest,
    to_docker_manifest_list,
};
use hoist_oci::media_type;
use hoist_store::{PushRecord, Store};

/// Blobs sent at once: enough to fill a link while one waits on the
/// registry, few enough to be polite to it (Docker pushes 5, skopeo 1).
pub const PARALLEL_BLOBS: usize = 4;

/// The documents' media types a push writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// As the store holds them (OCI for what hoist builds).
    #[default]
    Oci,
    /// Docker's manifest schema 2 and manifest list.
    Docker,
}

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub format: Format,
    /// Registry hosts talked to over plain HTTP (loopback hosts always are).
    pub insecure: Vec<String>,
    /// Docker's `config.json`; `None` means the usual place.
    pub docker_config: Option<std::path::PathBuf>,
    /// CA certificates to trust, for some registries or all.
    pub ca_bundles: Vec<super::tls::CaBundle>,
    /// Put the image under its digest only, moving no tag (a later
    /// index names it, as `buildx`'s `push-by-digest`).
    pub by_digest: bool,
}

impl PushOptions {
    /// The client settings these options imply.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            insecure: self.insecure.clone(),
            docker_config: self.docker_config.clone(),
            ca_bundles: self.ca_bundles.clone(),
            ..ClientOptions::default()
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobEvent {
    /// The repository had it.
    Present,
    /// Mounted from this repository of the same registry.
    Mounted(String),
    /// Uploaded, this many bytes.
    Uploaded(u64),
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The destination, normalised, with its tag.
    pub reference: Reference,
    /// The digest of what the tag now names on the registry.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
}

impl Pushed {
    /// `REPOSITORY@DIGEST`, as `docker push` reports it and as a
    /// Kubernetes manifest pins it: `127.0.0.1:5000/app@sha256:...`.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.reference.repository(), self.digest)
    }
}

/// Pushes the image `source` (a store tag, normalised) to `destination`.
pub fn push(
    store: &Store,
    source: &str,
    destination: &Reference,
    options: &PushOptions,
    progress: &(dyn Fn(&Digest, &BlobEvent) + Sync),
) -> Result<Pushed> {
    let client = Client::new(options.client_options());
    push_with(
        &client,
        store,
        source,
        destination,
        (options.format, options.by_digest),
        progress,
    )
}

/// [`push`] with a client the caller keeps (tokens reused across pushes).
pub fn push_with(
    client: &Client,
    store: &Store,
    source: &str,
    destination: &Reference,
    (format, by_digest): (Format, bool),
    progress: &(dyn Fn(&Digest, &BlobEvent) + Sync),
) -> Result<Pushed> {
    let endpoint = client.endpoint(destination.api_host());
    let repository = destination.path.as_str();
    let image = Image::read(store, source, format)?;
    let wrap = |error: RegistryError| RegistryError::Push {
        registry: endpoint.host.clone(),
        repository: repository.to_owned(),
        source: Box::new(error),
    };
    let mounts =
        mount_sources(store, destination, &image.blobs).map_err(|e| RegistryError::StoreRead {
            reference: source.to_owned(),
            source: e,
        })?;
    let counts = push_blobs(
        client,
        Source::Store(store),
        &endpoint,
        repository,
        &image.blobs,
        &mounts,
        progress,
    )
    .map_err(wrap)?;
    for (digest, document) in &image.children {
        client
            .put_manifest(
                &endpoint,
                repository,
                &digest.to_string(),
                &document.media_type,
                &document.bytes,
            )
            .map_err(wrap)?;
    }
    let top = &image.top;
    let (put_as, reference) = if by_digest {
        let digest = Digest::of(&top.bytes);
        let reference = Reference {
            digest: Some(digest),
            tag: None,
            ..destination.clone()
        };
        (digest.to_string(), reference)
    } else {
        let tag = destination.tag.as_deref().unwrap_or("latest");
        let reference = Reference {
            digest: None,
            tag: Some(tag.to_owned()),
            ..destination.clone()
        };
        (tag.to_owned(), reference)
    };
    let digest = client
        .put_manifest(&endpoint, repository, &put_as, &top.media_type, &top.bytes)
        .map_err(wrap)?;
    let record = PushRecord {
        reference: reference.to_string(),
        digest,
        media_type: top.media_type.clone(),
        size: top.bytes.len() as u64,
        blobs: image.blobs.iter().map(|b| b.digest).collect(),
        pushed_at: hoist_oci::image::rfc3339_utc(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
    };
    store
        .record_push(&record)
        .map_err(|source| RegistryError::RecordPush {
            reference: reference.to_string(),
            source,
        })?;
    Ok(Pushed {
        reference,
        digest,
        media_type: record.media_type,
        size: record.size,
        blobs_present: counts.present,
        blobs_mounted: counts.mounted,
        blobs_uploaded: counts.uploaded,
        bytes_uploaded: counts.bytes,
    })
}

/// A document to PUT: its exact bytes and media type.
#[derive(Debug, Clone)]
struct Outgoing {
    media_type: String,
    bytes: Vec<u8>,
}

/// An image as it will be pushed.
struct Image {
    /// Config and layer blobs, each once.
    blobs: Vec<Descriptor>,
    /// An index's manifests, pushed by digest before it.
    children: Vec<(Digest, Outgoing)>,
    /// The document the tag names.
    top: Outgoing,
}

impl Image {
    fn read(store: &Store, source: &str, format: Format) -> Result<Image> {
        let read_error = |source_error| RegistryError::StoreRead {
            reference: source.to_owned(),
            source: source_error,
        };
        let tagged = store.resolve(source).map_err(read_error)?.ok_or_else(|| {
            RegistryError::NotInStore {
                reference: source.to_owned(),
            }
        })?;
        let bytes = read_document(store, source, &tagged.digest)?;
        let document =
            ManifestOrIndex::from_json(&bytes).map_err(|e| RegistryError::StoreRead {
                reference: source.to_owned(),
                source: hoist_store::StoreError::Corrupt {
                    path: store.blob_path(&tagged.digest),
                    reason: e.to_string(),
                },
            })?;
        let mut blobs = Vec::new();
        let mut seen = BTreeSet::new();
        let mut add_blobs = |manifest: &Manifest| {
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                // Foreign layers live at their `urls`, not in registries.
                if media_type::is_foreign_layer(&blob.media_type) && !store.has_blob(&blob.digest) {
                    continue;
                }
                if seen.insert(blob.digest) {
                    blobs.push(blob.clone());
                }
            }
        };
        let convert = |manifest: &Manifest| {
            to_docker_manifest(manifest).map_err(|e| RegistryError::Convert {
                reference: source.to_owned(),
                source: e,
            })
        };
        let image = match document {
            ManifestOrIndex::Manifest(manifest) => {
                add_blobs(&manifest);
                let top = match format {
                    Format::Oci => Outgoing {
                        media_type: tagged.media_type.clone(),
                        bytes,
                    },
                    Format::Docker => Outgoing {
                        media_type: media_type::DOCKER_MANIFEST.to_owned(),
                        bytes: convert(&manifest)?.encode().bytes,
                    },
                };
                Image {
                    blobs: Vec::new(),
                    children: Vec::new(),
                    top,
                }
            }
            ManifestOrIndex::Index(index) => {
                let mut children = Vec::new();
                let mut converted = Vec::new();
                for entry in &index.manifests {
                    let child = read_document(store, source, &entry.digest)?;
                    let manifest =
                        Manifest::from_json(&child).map_err(|e| RegistryError::StoreRead {
                            reference: source.to_owned(),
                            source: hoist_store::StoreError::Corrupt {
                                path: store.blob_path(&entry.digest),
                                reason: e.to_string(),
                            },
                        })?;
                    add_blobs(&manifest);
                    let document = match format {
                        Format::Oci => Outgoing {
                            media_type: entry.media_type.clone(),
                            bytes: child,
                        },
                        Format::Docker => {
                            let encoded = convert(&manifest)?.encode();
                            converted.push(encoded.descriptor(media_type::DOCKER_MANIFEST));
                            Outgoing {
                                media_type: media_type::DOCKER_MANIFEST.to_owned(),
                                bytes: encoded.bytes,
                            }
                        }
                    };
                    children.push((Digest::of(&document.bytes), document));
                }
                let top = match format {
                    Format::Oci => Outgoing {
                        media_type: tagged.media_type.clone(),
                        bytes,
                    },
                    Format::Docker => Outgoing {
                        media_type: media_type::DOCKER_MANIFEST_LIST.to_owned(),
                        bytes: docker_list(&index, &converted, source)?,
                    },
                };
                Image {
                    blobs: Vec::new(),
                    children,
                    top,
                }
            }
        };
        for blob in &blobs {
            // A remote blob is fetched, or mounted, when it is pushed.
            let remote = store.remote(&blob.digest).ok().flatten();
            if !store.has_blob(&blob.digest) && remote.is_none() {
                return Err(RegistryError::MissingBlob {
                    reference: source.to_owned(),
                    digest: blob.digest,
                });
            }
        }
        Ok(Image { blobs, ..image })
    }
}

fn docker_list(index: &Index, converted: &[Descriptor], source: &str) -> Result<Vec<u8>> {
    to_docker_manifest_list(index, converted)
        .map(|list| list.encode().bytes)
        .map_err(|e| RegistryError::Convert {
            reference: source.to_owned(),
            source: e,
        })
}

/// A manifest or index blob from the store, which must hold it.
fn read_document(store: &Store, source: &str, digest: &Digest) -> Result<Vec<u8>> {
    if !store.has_blob(digest) {
        return Err(RegistryError::MissingBlob {
            reference: source.to_owned(),
            digest: *digest,
        });
    }
    store
        .read_blob_bytes(digest, super::client::MAX_MANIFEST)
        .map_err(|e| RegistryError::StoreRead {
            reference: source.to_owned(),
            source: e,
        })
}

/// For each blob, a repository of the destination's registry (not the
/// destination itself) that likely holds it: one a push from this store
/// left it in, else one the store has an image from (a base image pulled
/// from that registry). A wrong guess costs nothing: the registry answers
/// the mount with an ordinary upload session.
pub(crate) fn mount_sources(
    store: &Store,
    destination: &Reference,
    blobs: &[Descriptor],
) -> hoist_store::Result<BTreeMap<Digest, String>> {
    let wanted: BTreeSet<Digest> = blobs.iter().map(|b| b.digest).collect();
    let mut sources = BTreeMap::new();
    let other_repository = |name: &str| {
        Reference::parse(name)
            .ok()
            .filter(|r| r.domain == destination.domain && r.path != destination.path)
    };
    let mut records = store.push_records()?;
    // The latest push first: the repository most likely to still exist.
    records.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at));
    for record in records {
        let Some(pushed) = other_repository(&record.reference) else {
            continue;
        };
        for blob in record.blobs.iter().filter(|b| wanted.contains(b)) {
            sources.entry(*blob).or_insert_with(|| pushed.path.clone());
        }
    }
    // A blob the store does not hold: where it is recorded to be, in its
    // repository's registry or the mirror that served it.
    for blob in &wanted {
        let Some(remote) = store.remote(blob)? else {
            continue;
        };
        let Ok(held) = Reference::parse(&remote.repository) else {
            continue;
        };
        let mirror_host = remote.mirror.as_deref().map(|m| {
            let m = m.trim_end_matches('/');
            m.split_once("://").map_or(m, |(_, host)| host)
        });
        let same_registry =
            held.domain == destination.domain || mirror_host == Some(destination.api_host());
        if same_registry && held.path != destination.path {
            sources.insert(*blob, held.path);
        }
    }
    for (name, tagged) in store.list()? {
        if sources.len() == wanted.len() {
            break;
        }
        let Some(image) = other_repository(&name) else {
            continue;
        };
        for digest in image_blobs(store, &tagged) {
            if wanted.contains(&digest) {
                sources.entry(digest).or_insert_with(|| image.path.clone());
            }
        }
    }
    Ok(sources)
}

/// The configs and layers of the image `tagged` names, as far as the store
/// holds its documents (a pulled index has only one platform's manifest).
fn image_blobs(store: &Store, tagged: &Descriptor) -> Vec<Digest> {
    let read = |digest: &Digest| {
        store
            .read_blob_bytes(digest, super::client::MAX_MANIFEST)
            .ok()
            .and_then(|bytes| ManifestOrIndex::from_json(&bytes).ok())
    };
    let manifests = match read(&tagged.digest) {
        Some(ManifestOrIndex::Manifest(manifest)) => vec![manifest],
        Some(ManifestOrIndex::Index(index)) => index
            .manifests
            .iter()
            .filter_map(|entry| match read(&entry.digest) {
                Some(ManifestOrIndex::Manifest(manifest)) => Some(manifest),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    manifests
        .iter()
        .flat_map(|m| std::iter::once(&m.config).chain(&m.layers))
        .map(|d| d.digest)
        .collect()
}

/// Where the bytes of the blobs a push sends are read from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The store's blob files; a blob the store knows only as held by
    /// another registry is fetched first.
    Store(&'a Store),
    /// Files anywhere, by digest (an artifact's plain files).
    Files(&'a BTreeMap<Digest, std::path::PathBuf>),
}

#[derive(Debug, Default)]
pub struct Counts {
    pub present: usize,
    pub mounted: usize,
    pub uploaded: usize,
    pub bytes: u64,
}

/// Sends the blobs the repository lacks, [`PARALLEL_BLOBS`] at once. The
/// first failure stops the others from starting new blobs.
pub(crate) fn push_blobs(
    client: &Client,
    source: Source<'_>,
    endpoint: &Endpoint,
    repository: &str,
    blobs: &[Descriptor],
    mounts: &BTreeMap<Digest, String>,
    progress: &(dyn Fn(&Digest, &BlobEvent) + Sync),
) -> Result<Counts> {
    // Largest first, so the long uploads overlap the short ones.
    let mut order: Vec<&Descriptor> = blobs.iter().collect();
    order.sort_by_key(|b| std::cmp::Reverse(b.size));
    let queue = Mutex::new(order.into_iter());
    let failed = AtomicBool::new(false);
    let error = Mutex::new(None::<RegistryError>);
    let (present, mounted, uploaded) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let bytes = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_BLOBS.min(blobs.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(blob) = queue.lock().expect("poisoned").next() else {
                        return;
                    };
                    let from = mounts.get(&blob.digest).map(String::as_str);
                    match push_blob(client, source, endpoint, repository, blob, from) {
                        Ok(event) => {
                            match &event {
                                BlobEvent::Present => present.fetch_add(1, Ordering::Relaxed),
                                BlobEvent::Mounted(_) => mounted.fetch_add(1, Ordering::Relaxed),
                                BlobEvent::Uploaded(n) => {
                                    bytes.fetch_add(*n, Ordering::Relaxed);
                                    uploaded.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                            progress(&blob.digest, &event);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            error.lock().expect("poisoned").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("poisoned") {
        return Err(e);
    }
    Ok(Counts {
        present: present.into_inner(),
        mounted: mounted.into_inner(),
        uploaded: uploaded.into_inner(),
        bytes: bytes.into_inner(),
    })
}

/// One blob: skipped when there, mounted when it can be, else uploaded.
fn push_blob(
    client: &Client,
    source: Source<'_>,
    endpoint: &Endpoint,
    repository: &str,
    blob: &Descriptor,
    from: Option<&str>,
) -> Result<BlobEvent> {
    if client.has_blob(endpoint, repository, &blob.digest)? {
        return Ok(BlobEvent::Present);
    }
    let (location, min_chunk) =
        match client.start_upload(endpoint, repository, &blob.digest, from)? {
            Started::Mounted => return Ok(BlobEvent::Mounted(from.unwrap_or_default().to_owned())),
            Started::Upload {
                location,
                min_chunk,
            } => (location, min_chunk),
        };
    let path = match source {
        // A blob the store knows only as held by another registry (a base
        // pulled lazily, a cached step) is fetched to be uploaded: a mount
        // works only within one registry.
        Source::Store(store) => {
            if !store.has_blob(&blob.digest) {
                super::pull::fetch_remote(
                    client,
                    store,
                    std::slice::from_ref(blob),
                    &|_| None,
                    &[],
                )?;
            }
            store.blob_path(&blob.digest)
        }
        Source::Files(files) => {
            files
                .get(&blob.digest)
                .cloned()
                .ok_or_else(|| RegistryError::Upload {
                    registry: endpoint.host.clone(),
                    repository: repository.to_owned(),
                    digest: blob.digest,
                    reason: "no file holds this blob".to_owned(),
                })?
        }
    };
    let file = BlobFile {
        path: &path,
        digest: &blob.digest,
        size: blob.size,
    };
    client.upload_blob(endpoint, repository, &file, location, min_chunk)?;
    Ok(BlobEvent::Uploaded(blob.size))
}
