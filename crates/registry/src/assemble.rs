//! An index assembled in a registry from images already there, as buildx's
//! `imagetools create` does: what `hoist manifest create` runs after one
//! build per platform (on several machines, or one Kubernetes Job each).
//!
//! Only documents move: each source's manifest is read (with its config,
//! for the platform), and the index listing them is put under the target
//! tag. A source in another repository of the same registry is made
//! available in the target repository first (its blobs mounted, its
//! manifest put by digest); a source in another registry is refused, as
//! copying layers between registries is `skopeo copy`'s job.

use std::collections::BTreeSet;

use super::client::{Client, ClientOptions, Endpoint};
use super::error::{Content, RegistryError, Result};
use super::reference::Reference;
use super::upload::Started;
use hoist_oci::Digest;
use hoist_oci::Platform;
use hoist_oci::image::{Descriptor, Document, ImageConfig, Index, Manifest, ManifestOrIndex};
use hoist_oci::media_type;

/// The most bytes read of a source's config.
const MAX_CONFIG: u64 = 4 << 20;

/// What [`create_index`] made.
#[derive(Debug)]
pub struct Assembled {
    /// The index, as pushed: `REGISTRY/REPO:TAG`, and its digest.
    pub reference: Reference,
    pub digest: Digest,
    pub index: Index,
}

/// A manifest of a source, with the platform it is for.
struct Entry {
    source: String,
    descriptor: Descriptor,
    /// Where the source is, when not in the target repository: its
    /// repository path, and its manifest's bytes and config and layers.
    elsewhere: Option<(String, Vec<u8>, Vec<Descriptor>)>,
}

/// Puts under `target` an OCI index of the images `sources` name (images,
/// or indexes whose platform entries are taken), in order.
pub fn create_index(
    options: &ClientOptions,
    target: &Reference,
    sources: &[Reference],
) -> Result<Assembled> {
    let client = Client::new(options.clone());
    let endpoint = client.endpoint(target.api_host());
    let mut entries: Vec<Entry> = Vec::new();
    for source in sources {
        if source.domain != target.domain {
            return Err(refused(
                source,
                &format!(
                    "it is in registry {}, not {}: an index lists images of its own registry; \
                     copy it there first (skopeo copy --all)",
                    source.domain, target.domain
                ),
            ));
        }
        entries.extend(entries_of(&client, &endpoint, source, target)?);
    }
    let mut seen = BTreeSet::new();
    for entry in &entries {
        let platform = entry
            .descriptor
            .platform
            .as_ref()
            .map(Platform::to_string)
            .unwrap_or_default();
        if !seen.insert(platform.clone()) {
            return Err(RegistryError::IndexSource {
                source_image: entry.source.clone(),
                reason: format!(
                    "another source is for {platform} too: an index has one image per platform"
                ),
            });
        }
    }
    let path = target.path.as_str();
    for entry in &entries {
        if let Some((from, bytes, blobs)) = &entry.elsewhere {
            for blob in blobs {
                bring_blob(&client, &endpoint, path, from, blob, &entry.source)?;
            }
            client.put_manifest(
                &endpoint,
                path,
                &entry.descriptor.digest.to_string(),
                &entry.descriptor.media_type,
                bytes,
            )?;
        }
    }
    let index = Index::new(entries.into_iter().map(|e| e.descriptor).collect());
    let encoded = index.encode();
    let tag = target.tag.as_deref().unwrap_or("latest");
    let digest =
        client.put_manifest(&endpoint, path, tag, media_type::OCI_INDEX, &encoded.bytes)?;
    Ok(Assembled {
        reference: Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..target.clone()
        },
        digest,
        index,
    })
}

/// The manifest `reference` names as the registry holds it: its bytes
/// and media type (what `hoist manifest inspect` shows).
pub fn fetch_document(options: &ClientOptions, reference: &Reference) -> Result<(Vec<u8>, String)> {
    let client = Client::new(options.clone());
    let endpoint = client.endpoint(reference.api_host());
    let (bytes, media_type) = document(&client, &endpoint, reference)?;
    Ok((bytes, media_type))
}

fn refused(source: &Reference, reason: &str) -> RegistryError {
    RegistryError::IndexSource {
        source_image: source.to_string(),
        reason: reason.to_owned(),
    }
}

/// The document `reference` names, checked against its digest when it
/// has one, and its media type.
fn document(
    client: &Client,
    endpoint: &Endpoint,
    reference: &Reference,
) -> Result<(Vec<u8>, String)> {
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_owned(),
    };
    let fetched = client.get_manifest(endpoint, &reference.path, &wanted)?;
    let actual = Digest::of(&fetched.bytes);
    if let Some(expected) = reference.digest.filter(|d| *d != actual) {
        return Err(RegistryError::DigestMismatch {
            registry: endpoint.host.clone(),
            repository: reference.path.clone(),
            what: Content::Manifest,
            expected,
            actual,
        });
    }
    let media_type = match ManifestOrIndex::from_json(&fetched.bytes) {
        Ok(ManifestOrIndex::Index(index)) => index
            .media_type
            .clone()
            .unwrap_or_else(|| media_type::OCI_INDEX.to_owned()),
        Ok(ManifestOrIndex::Manifest(manifest)) => manifest.effective_media_type().to_owned(),
        Err(source) => {
            return Err(RegistryError::Document {
                registry: endpoint.host.clone(),
                repository: reference.path.clone(),
                what: Content::Manifest,
                reference: wanted,
                source: Box::new(source),
            });
        }
    };
    Ok((fetched.bytes, fetched.content_type.unwrap_or(media_type)))
}

/// The index entries `source` gives: its manifest with its config's
/// platform, or the platform entries of its index.
fn entries_of(
    client: &Client,
    endpoint: &Endpoint,
    source: &Reference,
    target: &Reference,
) -> Result<Vec<Entry>> {
    let (bytes, media_type) = document(client, endpoint, source)?;
    let digest = Digest::of(&bytes);
    let same_repository = source.path == target.path;
    let document = ManifestOrIndex::from_json(&bytes)
        .map_err(|e| refused(source, &format!("its manifest cannot be read: {e}")))?;
    match document {
        ManifestOrIndex::Manifest(manifest) => {
            let config = config_of(client, endpoint, source, &manifest)?;
            let mut platform = Platform::new(&config.os, &config.architecture);
            platform.variant = config.variant.clone().filter(|v| !v.is_empty());
            let descriptor = Descriptor::new(&media_type, digest, bytes.len() as u64)
                .with_platform(platform.normalized());
            let blobs = std::iter::once(manifest.config.clone())
                .chain(manifest.layers.iter().cloned())
                .collect();
            Ok(vec![Entry {
                source: source.to_string(),
                descriptor,
                elsewhere: (!same_repository).then(|| (source.path.clone(), bytes, blobs)),
            }])
        }
        ManifestOrIndex::Index(index) => {
            let mut out = Vec::new();
            for child in index
                .manifests
                .iter()
                .filter(|d| d.platform.as_ref().is_some_and(|p| p.os != "unknown"))
            {
                let pinned = Reference {
                    tag: None,
                    digest: Some(child.digest),
                    ..source.clone()
                };
                let mut entries = entries_of(client, endpoint, &pinned, target)?;
                for entry in &mut entries {
                    // The index's own platform entry is kept as it says it.
                    entry.descriptor.platform = child.platform.clone();
                    entry.source = source.to_string();
                }
                out.extend(entries);
            }
            Ok(out)
        }
    }
}

/// The image config `manifest` names.
fn config_of(
    client: &Client,
    endpoint: &Endpoint,
    source: &Reference,
    manifest: &Manifest,
) -> Result<ImageConfig> {
    use std::io::Read;
    let mut bytes = Vec::new();
    client
        .get_blob(endpoint, &source.path, &manifest.config.digest)?
        .take(MAX_CONFIG)
        .read_to_end(&mut bytes)
        .map_err(|e| refused(source, &format!("its config cannot be read: {e}")))?;
    if Digest::of(&bytes) != manifest.config.digest {
        return Err(refused(
            source,
            "its config does not match its digest: the registry sent something else",
        ));
    }
    ImageConfig::from_json(&bytes)
        .map_err(|e| refused(source, &format!("its config cannot be read: {e}")))
}

/// Makes `blob` of repository `from` present in `repository` (same
/// registry): there already, or mounted.
fn bring_blob(
    client: &Client,
    endpoint: &Endpoint,
    repository: &str,
    from: &str,
    blob: &Descriptor,
    source: &str,
) -> Result<()> {
    if client.has_blob(endpoint, repository, &blob.digest)? {
        return Ok(());
    }
    match client.start_upload(endpoint, repository, &blob.digest, Some(from))? {
        Started::Mounted => Ok(()),
        Started::Upload { .. } => Err(RegistryError::IndexSource {
            source_image: source.to_owned(),
            reason: format!(
                "registry {} would not mount its blob {} into {repository}: push the image to \
                 {repository} first",
                endpoint.host, blob.digest
            ),
        }),
    }
}
