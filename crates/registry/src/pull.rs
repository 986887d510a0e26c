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
use super::reference::Reference;
use hoist_oci::Digest;
use hoist_oci::Platform;
use hoist_oci::image::{Descriptor, Manifest, ManifestOrIndex};
use hoist_oci::media_type;
use hoist_store::{Store, StoreError};

/// Layers fetched at once: enough to hide a registry's latency, few
/// enough to be polite to it.
const PARALLEL_BLOBS: usize = 3;

/// Reads a layer while it downloads (the build extracts base layers so,
/// rather than after the pull): it gets the blob's bytes in order, then
/// [`LayerTap::finish`] says whether they were the blob, checked against
/// its digest. A tap whose write fails, or whose download has to start
/// over, is finished unverified, and the pull goes on without it.
pub trait LayerTap: std::io::Write + Send {
    fn finish(self: Box<Self>, verified: bool);
}

/// A base layer read while it downloads: its readers get end of file
/// only once the download was found to be the blob.
impl LayerTap for hoist_oci::chunks::ChunkWriter {
    fn finish(self: Box<Self>, verified: bool) {
        if verified {
            // A reader gone has failed already, on its own.
            let _ = hoist_oci::chunks::ChunkWriter::finish(*self);
        }
        // Else dropped: the readers see the stream cut.
    }
}

/// Taps for a pull's layers: given a layer to download and its diffID
/// (from the image config), a tap, or `None` to only store it.
pub type Taps<'t> = dyn Fn(&Descriptor, &Digest) -> Option<Box<dyn LayerTap + 't>> + Sync + 't;

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
    pub tagged: hoist_store::Descriptor,
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

/// What a pull does with the image's layers.
enum Layers<'p, 't> {
    /// Fetches them into the store.
    Fetch,
    /// Fetches them, each also into the tap `taps` gives it.
    Tapped(&'p Taps<'t>),
    /// Leaves them in the registry, recorded as remote blobs of the store
    /// (fetched when something needs their bytes).
    Remote,
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

/// [`pull`], each layer downloaded also handed to the tap `taps` gives it:
/// the config is fetched first, for the layers' diffIDs.
pub fn pull_tapped(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    options: &PullOptions,
    taps: &Taps<'_>,
) -> Result<Pulled> {
    let client = Client::new(options.client_options());
    pull_inner(
        &client,
        store,
        reference,
        platform,
        &options.mirrors,
        Layers::Tapped(taps),
    )
}

/// [`pull_with`] of the manifest and config only: the layers stay in the
/// registry, recorded as remote blobs of the store, and are fetched when a
/// step reads their files or an export needs them ([`fetch_remote`]); a
/// push to the same registry mounts them without moving them.
pub fn pull_lazy(
    client: &Client,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    mirrors: &[(String, String)],
) -> Result<Pulled> {
    pull_inner(client, store, reference, platform, mirrors, Layers::Remote)
}

/// Fetches `blobs`, remote blobs of the store (see [`pull_lazy`]), from
/// the repositories the store records for them (mirrors first), a few at
/// once, each also into the tap `tap` gives it; returns the bytes
/// fetched. A blob the store holds, or knows no repository of, is
/// skipped.
pub fn fetch_remote<'t>(
    client: &Client,
    store: &Store,
    blobs: &[Descriptor],
    tap: &(dyn Fn(&Descriptor) -> Option<Box<dyn LayerTap + 't>> + Sync),
    mirrors: &[(String, String)],
) -> Result<u64> {
    let mut by_repository: std::collections::BTreeMap<_, Vec<&Descriptor>> = Default::default();
    for blob in blobs {
        let remote = store
            .remote(&blob.digest)
            .map_err(|source| RegistryError::Store {
                registry: String::new(),
                source,
            })?;
        if let Some(remote) = remote {
            by_repository
                .entry((remote.repository, remote.mirror))
                .or_default()
                .push(blob);
        }
    }
    fetch_grouped(client, store, by_repository, tap, mirrors)
}

/// Fetches every layer of the image (manifest or index) `top` of the
/// store that the store holds only as a remote blob: before an export or
/// anything else that reads every byte. Returns the bytes fetched.
pub fn fetch_image(store: &Store, top: &Digest, options: &PullOptions) -> Result<u64> {
    let read = |digest: &Digest| {
        store
            .read_blob_bytes(digest, super::client::MAX_MANIFEST)
            .ok()
            .and_then(|bytes| ManifestOrIndex::from_json(&bytes).ok())
    };
    let manifests = match read(top) {
        Some(ManifestOrIndex::Manifest(m)) => vec![m],
        Some(ManifestOrIndex::Index(i)) => i
            .manifests
            .iter()
            .filter_map(|d| match read(&d.digest) {
                Some(ManifestOrIndex::Manifest(m)) => Some(m),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let layers: Vec<Descriptor> = manifests.into_iter().flat_map(|m| m.layers).collect();
    let remote = layers
        .iter()
        .any(|l| matches!(store.remote(&l.digest), Ok(Some(_))));
    if !remote {
        return Ok(0);
    }
    let client = Client::new(options.client_options());
    fetch_remote(&client, store, &layers, &|_| None, &options.mirrors)
}

/// Fetches each repository's blobs from it: from the mirror that served
/// them first, then the repository's mirrors, then its registry.
fn fetch_grouped<'t>(
    client: &Client,
    store: &Store,
    by_repository: std::collections::BTreeMap<(String, Option<String>), Vec<&Descriptor>>,
    tap: &(dyn Fn(&Descriptor) -> Option<Box<dyn LayerTap + 't>> + Sync),
    mirrors: &[(String, String)],
) -> Result<u64> {
    let mut total = 0;
    for ((repository, mirror), blobs) in by_repository {
        let reference = Reference::parse(&repository).map_err(|e| RegistryError::Store {
            registry: String::new(),
            source: hoist_store::StoreError::Corrupt {
                path: store.root().join("remote"),
                reason: format!("a record names the repository `{repository}`: {e}"),
            },
        })?;
        let mut endpoints = endpoints(client, &reference, mirrors);
        if let Some(mirror) = mirror {
            let mirror = client.endpoint(&mirror);
            endpoints.retain(|e| e.host != mirror.host);
            endpoints.insert(0, mirror);
        }
        let fallback = Fallback {
            endpoints: &endpoints,
            domain: &reference.domain,
            repository: &reference.path,
        };
        total += fetch_blobs(client, store, &fallback, 0, &blobs, tap)?;
    }
    Ok(total)
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
    pull_inner(client, store, reference, platform, mirrors, Layers::Fetch)
}

/// Fetches one blob of `reference`'s repository (from its mirrors first)
/// into the store, verified against `blob` as it streams: how a blob the
/// store lost, or removed as damaged, is fetched again.
pub fn fetch_blob_of(
    store: &Store,
    reference: &Reference,
    blob: &Descriptor,
    options: &PullOptions,
) -> Result<u64> {
    let client = Client::new(options.client_options());
    let endpoints = endpoints(&client, reference, &options.mirrors);
    let fallback = Fallback {
        endpoints: &endpoints,
        domain: &reference.domain,
        repository: &reference.path,
    };
    let (_, size) = fallback.first(0, |endpoint| {
        fetch_blob(&client, store, endpoint, &reference.path, blob, &mut None)
    })?;
    Ok(size)
}

/// Where `reference` is fetched from: its domain's mirrors in order, then
/// its registry.
fn endpoints(
    client: &Client,
    reference: &Reference,
    mirrors: &[(String, String)],
) -> Vec<Endpoint> {
    mirrors
        .iter()
        .filter(|(domain, _)| *domain == reference.domain)
        .map(|(_, mirror)| client.endpoint(mirror))
        .chain([client.endpoint(reference.api_host())])
        .collect()
}

fn pull_inner(
    client: &Client,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    mirrors: &[(String, String)],
    layers: Layers<'_, '_>,
) -> Result<Pulled> {
    let repository = reference.path.as_str();
    let endpoints = endpoints(client, reference, mirrors);
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
            let chosen = index
                .select(platform)
                .ok_or_else(|| RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: index.platforms().join(", "),
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
    let bytes_fetched = match layers {
        Layers::Fetch => fetch_blobs(client, store, &fallback, served, &missing, &|_| None)?,
        Layers::Remote => {
            let (config, layers): (Vec<&Descriptor>, Vec<&Descriptor>) = missing
                .iter()
                .partition(|d| d.digest == manifest.config.digest);
            let repository = format!("{}/{}", reference.domain, reference.path);
            let mirror = (served + 1 < endpoints.len()).then(|| endpoint.url(""));
            for layer in layers {
                let remote = hoist_store::RemoteBlob {
                    repository: repository.clone(),
                    media_type: layer.media_type.clone(),
                    size: layer.size,
                    mirror: mirror.clone(),
                };
                store
                    .record_remote(&layer.digest, &remote)
                    .map_err(|source| RegistryError::Store {
                        registry: endpoint.host.clone(),
                        source,
                    })?;
            }
            fetch_blobs(client, store, &fallback, served, &config, &|_| None)?
        }
        Layers::Tapped(taps) => {
            // The config first: it names each layer's diffID.
            let (config, layers): (Vec<&Descriptor>, Vec<&Descriptor>) = missing
                .iter()
                .partition(|d| d.digest == manifest.config.digest);
            let mut bytes = fetch_blobs(client, store, &fallback, served, &config, &|_| None)?;
            let diff_ids = diff_ids(store, &manifest);
            let tap = |layer: &Descriptor| {
                let at = manifest
                    .layers
                    .iter()
                    .position(|l| l.digest == layer.digest)?;
                taps(layer, diff_ids.as_ref()?.get(at)?)
            };
            bytes += fetch_blobs(client, store, &fallback, served, &layers, &tap)?;
            bytes
        }
    };

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
    let tagged = hoist_store::Descriptor::new(&top_media_type, top_digest, top.bytes.len() as u64);
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

/// The diffIDs the stored config of `manifest` lists, one per layer;
/// `None` where it cannot say (the build reports a bad config later).
fn diff_ids(store: &Store, manifest: &Manifest) -> Option<Vec<Digest>> {
    let bytes = store
        .read_blob_bytes(&manifest.config.digest, 8 << 20)
        .ok()?;
    let config = hoist_oci::image::ImageConfig::from_json(&bytes).ok()?;
    let diff_ids = config.rootfs.diff_ids;
    (diff_ids.len() == manifest.layers.len()).then_some(diff_ids)
}

/// Fetches `blobs` into the store, a few at once, each also into the tap
/// `tap` gives it; returns the bytes fetched. The first failure stops the
/// others from starting new blobs; blobs already complete stay in the
/// store.
fn fetch_blobs<'t>(
    client: &Client,
    store: &Store,
    fallback: &Fallback<'_>,
    served: usize,
    blobs: &[&Descriptor],
    tap: &(dyn Fn(&Descriptor) -> Option<Box<dyn LayerTap + 't>> + Sync),
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
                    let mut tapped = tap(blob).map(Tapped::new);
                    match fallback.first(served, |endpoint| {
                        fetch_blob(
                            client,
                            store,
                            endpoint,
                            fallback.repository,
                            blob,
                            &mut tapped,
                        )
                    }) {
                        Ok((_, size)) => {
                            if let Some(tapped) = tapped {
                                tapped.finish(true);
                            }
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

/// A tap and how many bytes it got.
struct Tapped<'t> {
    tap: Option<Box<dyn LayerTap + 't>>,
    fed: u64,
}

impl<'t> Tapped<'t> {
    fn new(tap: Box<dyn LayerTap + 't>) -> Tapped<'t> {
        Tapped {
            tap: Some(tap),
            fed: 0,
        }
    }

    fn finish(mut self, verified: bool) {
        if let Some(tap) = self.tap.take() {
            tap.finish(verified);
        }
    }
}

impl Drop for Tapped<'_> {
    /// A pull that failed, or a tap left behind.
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            tap.finish(false);
        }
    }
}

/// Writes into a blob and, in step with it, into a tap: the tap gets
/// bytes only where they continue what it has, and is let go (finished
/// unverified) when the download starts over or it cannot take more.
struct Tee<'w, 's, 'x, 't> {
    blob: &'w mut hoist_store::BlobWriter<'s>,
    tapped: &'x mut Option<Tapped<'t>>,
}

impl std::io::Write for Tee<'_, '_, '_, '_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let at = self.blob.len();
        let n = self.blob.write(bytes)?;
        if let Some(tapped) = self.tapped.as_mut() {
            let fed = tapped.fed == at
                && tapped
                    .tap
                    .as_mut()
                    .is_some_and(|tap| tap.write_all(&bytes[..n]).is_ok());
            if fed {
                tapped.fed += n as u64;
            } else if let Some(tapped) = self.tapped.take() {
                tapped.finish(false);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.blob.flush()
    }
}

/// Streams one blob into the store (and `tapped`), verified against its
/// descriptor. A transfer broken midway is resumed from the last byte
/// received (a `Range` request; from the start when the registry ignores
/// it), a few times.
fn fetch_blob(
    client: &Client,
    store: &Store,
    endpoint: &Endpoint,
    repository: &str,
    blob: &Descriptor,
    tapped: &mut Option<Tapped<'_>>,
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
        let mut tee = Tee {
            blob: &mut writer,
            tapped,
        };
        match copy(reader.take(limit), &mut tee) {
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
