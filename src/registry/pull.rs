//! Pulling an image from a registry into the store: what `FROM` needs
//! when its image is not in the store yet.
//!
//! [`pull`] GETs the manifest by tag or digest, checks the digest of the
//! bytes received (against the reference's digest when pulling by digest,
//! and against the registry's `Docker-Content-Digest` when it sends one),
//! picks the platform's manifest from an index, then streams the config
//! and every layer missing from the store into it, each verified against
//! its digest while it is written: no layer is ever held in memory, and a
//! blob already in the store is not fetched again. Documents are stored
//! after the blobs they name (layers and config, then the manifest, then
//! the index), so a stored manifest means a complete image, and an
//! interrupted pull keeps every blob it completed. Last, the normalised
//! reference is tagged with what the registry's tag names, the index when
//! it is one, so the store resolves the tag as the registry does.
//!
//! Mirrors follow Docker's `registry-mirrors`: the repository path is kept
//! (`library/node` on a mirror of `docker.io`), each mirror is tried in
//! order and the registry itself last, moving on only when a mirror lacks
//! the content (404) or cannot be reached.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use super::client::{Client, ClientOptions, Endpoint, FetchedManifest};
use super::error::{Content, RegistryError, Result};
use super::platform;
use super::reference::Reference;
use crate::image::{Descriptor, Manifest, ManifestOrIndex, media_type};
use crate::layer::Digest;
use crate::plan::Platform;
use crate::store::{self, Store, StoreError};

/// Layers fetched at once: enough to hide a registry's latency, few
/// enough to be polite to it.
const PARALLEL_BLOBS: usize = 3;

/// Docker schema 1 media types, refused with a clear error.
const SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Where to pull from and how.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `(registry domain, mirror host)` pairs, tried in order before the
    /// registry itself: `("docker.io", "127.0.0.1:5000")` fetches
    /// `docker.io/library/node:14` from
    /// `http://127.0.0.1:5000/v2/library/node/manifests/14`. A mirror may
    /// start with `http://` or `https://` to force the scheme.
    pub mirrors: Vec<(String, String)>,
    /// Registry or mirror hosts talked to over plain HTTP (loopback hosts
    /// always are).
    pub insecure: Vec<String>,
    /// Docker's `config.json` to read credentials from; `None` means
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// CA certificates to trust, for some registries or all.
    pub ca_bundles: Vec<super::tls::CaBundle>,
}

impl PullOptions {
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

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The normalised reference, as tagged in the store.
    pub reference: Reference,
    /// What the tag points at: the index when the registry's tag names
    /// one, else the manifest.
    pub tagged: store::Descriptor,
    /// The index the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// The image manifest for the platform.
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// The host that served the manifest (a mirror or the registry).
    pub source: String,
    /// Blobs (config and layers) downloaded, and bytes in them.
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
    /// Blobs that were in the store already.
    pub blobs_present: usize,
}

/// Pulls `reference` for `platform` into `store` and tags it there.
pub fn pull(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    options: &PullOptions,
) -> Result<Pulled> {
    let client = Client::new(options.client_options());
    pull_with(&client, store, reference, platform, &options.mirrors)
}

/// [`pull`] with a client the caller keeps (its tokens are reused across
/// pulls).
pub fn pull_with(
    client: &Client,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    mirrors: &[(String, String)],
) -> Result<Pulled> {
    let repository = reference.path.as_str();
    let endpoints: Vec<Endpoint> = mirrors
        .iter()
        .filter(|(domain, _)| *domain == reference.domain)
        .map(|(_, mirror)| client.endpoint(mirror))
        .chain([client.endpoint(reference.api_host())])
        .collect();
    let fallback = Fallback {
        endpoints: &endpoints,
        domain: &reference.domain,
        repository,
    };
    // A digest wins over a tag, as in Docker: `app:1@sha256:...` is the
    // content with that digest.
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => "latest".to_owned(),
    };

    let (served, top) = fallback.first(0, |endpoint| {
        client.get_manifest(endpoint, repository, &wanted)
    })?;
    let endpoint = &endpoints[served];
    let top_digest = check_manifest(endpoint, repository, &wanted, &top, reference.digest)?;
    let top_media_type = media_type_of(endpoint, repository, &wanted, &top)?;
    let document =
        ManifestOrIndex::from_json(&top.bytes).map_err(|source| RegistryError::Document {
            registry: endpoint.host.clone(),
            repository: repository.to_owned(),
            what: Content::Manifest,
            reference: wanted.clone(),
            source: Box::new(source),
        })?;

    let (manifest, manifest_bytes, manifest_digest) = match document {
        ManifestOrIndex::Manifest(manifest) => (manifest, top.bytes.clone(), top_digest),
        ManifestOrIndex::Index(index) => {
            let chosen =
                platform::select(&index, platform).ok_or_else(|| RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: platform::available(&index).join(", "),
                })?;
            let chosen = chosen.clone();
            let (at, fetched) = fallback.first(served, |endpoint| {
                client.get_manifest(endpoint, repository, &chosen.digest.to_string())
            })?;
            let endpoint = &endpoints[at];
            let reference_text = chosen.digest.to_string();
            let digest = check_manifest(
                endpoint,
                repository,
                &reference_text,
                &fetched,
                Some(chosen.digest),
            )?;
            let manifest =
                Manifest::from_json(&fetched.bytes).map_err(|source| RegistryError::Document {
                    registry: endpoint.host.clone(),
                    repository: repository.to_owned(),
                    what: Content::Manifest,
                    reference: reference_text.clone(),
                    source: Box::new(source),
                })?;
            (manifest, fetched.bytes, digest)
        }
    };

    // Config and layers; the same blob twice (an empty layer repeated) is
    // fetched once.
    let mut seen = BTreeSet::new();
    let blobs: Vec<&Descriptor> = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .filter(|d| seen.insert(d.digest))
        .collect();
    let (missing, present): (Vec<&Descriptor>, Vec<&Descriptor>) =
        blobs.iter().partition(|d| !store.has_blob(&d.digest));
    let bytes_fetched = fetch_blobs(client, store, &fallback, served, &missing)?;

    let store_error = |source| RegistryError::Store {
        registry: endpoint.host.clone(),
        source,
    };
    store
        .put_blob_bytes(&manifest_bytes, Some(&manifest_digest))
        .map_err(store_error)?;
    let index_digest = (manifest_digest != top_digest).then_some(top_digest);
    if index_digest.is_some() {
        store
            .put_blob_bytes(&top.bytes, Some(&top_digest))
            .map_err(store_error)?;
    }
    let tagged = store::Descriptor::new(&top_media_type, top_digest, top.bytes.len() as u64);
    store
        .tag(&reference.to_string(), &tagged)
        .map_err(store_error)?;
    Ok(Pulled {
        reference: reference.clone(),
        tagged,
        index_digest,
        manifest_digest,
        config_digest: manifest.config.digest,
        source: endpoint.host.clone(),
        blobs_fetched: missing.len(),
        bytes_fetched,
        blobs_present: present.len(),
    })
}

/// The digest of a fetched manifest's bytes, checked against what it must
/// be: `expected` (pulling by digest, or an index entry), and the
/// registry's `Docker-Content-Digest` header when it sent one.
fn check_manifest(
    endpoint: &Endpoint,
    repository: &str,
    reference: &str,
    fetched: &FetchedManifest,
    expected: Option<Digest>,
) -> Result<Digest> {
    let actual = Digest::of(&fetched.bytes);
    for claimed in [expected, fetched.header_digest].into_iter().flatten() {
        if claimed != actual {
            return Err(RegistryError::DigestMismatch {
                registry: endpoint.host.clone(),
                repository: repository.to_owned(),
                what: Content::Manifest,
                expected: claimed,
                actual,
            });
        }
    }
    let schema1 = |registry: &Endpoint| RegistryError::Schema1 {
        registry: registry.host.clone(),
        repository: repository.to_owned(),
        reference: reference.to_owned(),
    };
    if fetched
        .content_type
        .as_deref()
        .is_some_and(|t| SCHEMA1.contains(&t))
    {
        return Err(schema1(endpoint));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        schema_version: Option<u32>,
    }
    if serde_json::from_slice::<Version>(&fetched.bytes).is_ok_and(|v| v.schema_version == Some(1))
    {
        return Err(schema1(endpoint));
    }
    Ok(actual)
}

/// The media type to tag a fetched document with: its own `mediaType`,
/// else the response's `Content-Type` when that is a manifest or index
/// type, else what its shape says (OCI makes `mediaType` optional).
fn media_type_of(
    endpoint: &Endpoint,
    repository: &str,
    reference: &str,
    fetched: &FetchedManifest,
) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let shape: Option<Shape> = serde_json::from_slice(&fetched.bytes).ok();
    let known = |t: &str| media_type::is_manifest(t) || media_type::is_index(t);
    if let Some(t) = shape.as_ref().and_then(|s| s.media_type.clone()) {
        return if known(&t) {
            Ok(t)
        } else {
            Err(RegistryError::MediaType {
                registry: endpoint.host.clone(),
                repository: repository.to_owned(),
                reference: reference.to_owned(),
                media_type: t,
            })
        };
    }
    if let Some(t) = fetched.content_type.as_deref().filter(|t| known(t)) {
        return Ok(t.to_owned());
    }
    Ok(if shape.is_some_and(|s| s.manifests.is_some()) {
        media_type::OCI_INDEX
    } else {
        media_type::OCI_MANIFEST
    }
    .to_owned())
}

/// Fetches `blobs` into the store, a few at once; returns the bytes
/// fetched. The first failure stops the others from starting new blobs;
/// blobs already complete stay in the store.
fn fetch_blobs(
    client: &Client,
    store: &Store,
    fallback: &Fallback<'_>,
    served: usize,
    blobs: &[&Descriptor],
) -> Result<u64> {
    let queue = Mutex::new(blobs.iter());
    let failed = Mutex::new(None::<RegistryError>);
    let total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_BLOBS.min(blobs.len()) {
            scope.spawn(|| {
                loop {
                    if failed.lock().expect("poisoned").is_some() {
                        return;
                    }
                    let Some(blob) = queue.lock().expect("poisoned").next() else {
                        return;
                    };
                    match fallback.first(served, |endpoint| {
                        fetch_blob(client, store, endpoint, fallback.repository, blob)
                    }) {
                        Ok((_, size)) => {
                            total.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.lock().expect("poisoned").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("poisoned") {
        Some(e) => Err(e),
        None => Ok(total.into_inner()),
    }
}

/// Streams one blob into the store, verified against its descriptor. A
/// transfer broken midway is resumed from the last byte received (a `Range`
/// request; from the start when the registry ignores it), a few times.
fn fetch_blob(
    client: &Client,
    store: &Store,
    endpoint: &Endpoint,
    repository: &str,
    blob: &Descriptor,
) -> Result<u64> {
    let store_error = |source| RegistryError::Store {
        registry: endpoint.host.clone(),
        source,
    };
    let mut writer = store.blob_writer().map_err(store_error)?;
    let mut attempt = 1;
    loop {
        let (start, reader) =
            client.get_blob_from(endpoint, repository, &blob.digest, writer.len())?;
        if start != writer.len() {
            writer = store.blob_writer().map_err(store_error)?;
        }
        // One byte over the descriptor's size is enough to fail the digest
        // check; reading on would let a broken server fill the disk.
        let limit = (blob.size + 1).saturating_sub(writer.len());
        match copy(reader.take(limit), &mut writer) {
            Ok(()) => break,
            Err(Copy::Write(source)) => {
                return Err(store_error(StoreError::Io {
                    action: "write a blob into",
                    path: store.root().join("tmp"),
                    source,
                }));
            }
            Err(Copy::Read(source)) => {
                if attempt >= client.attempts() {
                    return Err(RegistryError::Transfer {
                        registry: endpoint.host.clone(),
                        url: format!("/v2/{repository}/blobs/{}", blob.digest),
                        source,
                    });
                }
                std::thread::sleep(client.backoff() * attempt);
                attempt += 1;
            }
        }
    }
    match writer.commit(Some(&blob.digest)) {
        Ok((_, size)) if size == blob.size => Ok(size),
        Ok((digest, size)) => Err(RegistryError::SizeMismatch {
            registry: endpoint.host.clone(),
            what: Content::Blob,
            digest,
            expected: blob.size,
            actual: size,
        }),
        Err(StoreError::DigestMismatch { expected, actual }) => {
            Err(RegistryError::DigestMismatch {
                registry: endpoint.host.clone(),
                repository: repository.to_owned(),
                what: Content::Blob,
                expected,
                actual,
            })
        }
        Err(source) => Err(store_error(source)),
    }
}

/// Which side of a copy failed.
enum Copy {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies `reader` to `writer` to the end, telling read failures (the
/// network) from write failures (the store's disk).
fn copy(mut reader: impl Read, writer: &mut impl std::io::Write) -> Result<(), Copy> {
    let mut buf = vec![0; 128 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(Copy::Write)?;
    }
}

/// The endpoints of one repository, mirrors first.
struct Fallback<'a> {
    endpoints: &'a [Endpoint],
    domain: &'a str,
    repository: &'a str,
}

impl Fallback<'_> {
    /// Runs `request` on each endpoint from `start` on until one succeeds
    /// or fails in a way another endpoint cannot fix. When every endpoint
    /// failed, the registry's own error is returned, with what each mirror
    /// said.
    fn first<T>(
        &self,
        start: usize,
        mut request: impl FnMut(&Endpoint) -> Result<T>,
    ) -> Result<(usize, T)> {
        let mut mirror_errors = Vec::new();
        let last = self.endpoints.len() - 1;
        for (at, endpoint) in self.endpoints.iter().enumerate().skip(start) {
            match request(endpoint) {
                Ok(value) => return Ok((at, value)),
                Err(e) if at < last && e.falls_back() => {
                    mirror_errors.push(format!("{}: {e}", endpoint.host));
                }
                Err(e) if mirror_errors.is_empty() => return Err(e),
                Err(e) => {
                    return Err(RegistryError::MirrorsFailed {
                        domain: self.domain.to_owned(),
                        repository: self.repository.to_owned(),
                        mirrors: mirror_errors.join("; "),
                        source: Box::new(e),
                    });
                }
            }
        }
        unreachable!("the registry itself is always the last endpoint")
    }
}

#[cfg(test)]
mod tests;
