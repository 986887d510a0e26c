//! Artifacts of plain files, as OCI 1.1 describes them (an
//! `artifactType`, the empty config, the files as layers): pushed straight
//! from the files, wherever they are, and fetched back into the store.
//! `hoist build --job` hands its build context to a cluster this way.
//!
//! A push sends only the blobs the repository lacks (`HEAD` first), so an
//! unchanged file is never sent twice, then the manifest by digest: an
//! artifact has no tag to move, and its digest names exactly its files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::client::{Client, ClientOptions};
use super::error::{Content, RegistryError, Result};
use super::push::{Counts, Source, push_blobs};
use super::reference::Reference;
use hoist_oci::Digest;
use hoist_oci::image::{Document, Manifest};
use hoist_oci::media_type;
use hoist_store::{RemoteBlob, Store};

/// What pushing an artifact did.
#[derive(Debug)]
pub struct PushedArtifact {
    /// The artifact, pinned: `REGISTRY/REPO@sha256:...`.
    pub reference: Reference,
    /// Blobs the repository already held, and blobs (and bytes) sent.
    pub present: usize,
    pub uploaded: usize,
    pub bytes_uploaded: u64,
}

/// Pushes `manifest` to `repository` (its tag, if any, is not used),
/// every blob it names first, each read from its file in `files`.
pub fn push_artifact(
    options: &ClientOptions,
    repository: &Reference,
    manifest: &Manifest,
    files: &BTreeMap<Digest, PathBuf>,
) -> Result<PushedArtifact> {
    let client = Client::new(options.clone());
    let endpoint = client.endpoint(repository.api_host());
    let path = repository.path.as_str();
    let mut seen = std::collections::BTreeSet::new();
    let blobs: Vec<_> = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .filter(|blob| seen.insert(blob.digest))
        .cloned()
        .collect();
    let Counts {
        present,
        mounted,
        uploaded,
        bytes,
    } = push_blobs(
        &client,
        Source::Files(files),
        &endpoint,
        path,
        &blobs,
        &BTreeMap::new(),
        &|_, _| {},
    )?;
    let encoded = manifest.encode();
    let digest = client.put_manifest(
        &endpoint,
        path,
        &encoded.digest.to_string(),
        media_type::OCI_MANIFEST,
        &encoded.bytes,
    )?;
    Ok(PushedArtifact {
        reference: Reference {
            tag: None,
            digest: Some(digest),
            ..repository.clone()
        },
        present: present + mounted,
        uploaded,
        bytes_uploaded: bytes,
    })
}

/// Fetches the artifact `reference` names, checked to be of
/// `artifact_type`, with every blob it names into `store` (each checked
/// against its digest there). Returns its manifest.
pub fn fetch_artifact(
    options: &ClientOptions,
    reference: &Reference,
    artifact_type: &str,
    store: &Store,
) -> Result<Manifest> {
    let client = Client::new(options.clone());
    let endpoint = client.endpoint(reference.api_host());
    let path = reference.path.as_str();
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => "latest".to_owned(),
    };
    let fetched = client.get_manifest(&endpoint, path, &wanted)?;
    let actual = Digest::of(&fetched.bytes);
    if let Some(expected) = reference.digest.filter(|d| *d != actual) {
        return Err(RegistryError::DigestMismatch {
            registry: endpoint.host.clone(),
            repository: path.to_owned(),
            what: Content::Manifest,
            expected,
            actual,
        });
    }
    let manifest =
        Manifest::from_json(&fetched.bytes).map_err(|source| RegistryError::Document {
            registry: endpoint.host.clone(),
            repository: path.to_owned(),
            what: Content::Manifest,
            reference: wanted.clone(),
            source: Box::new(source),
        })?;
    if manifest.artifact_type.as_deref() != Some(artifact_type) {
        return Err(RegistryError::ArtifactType {
            reference: reference.to_string(),
            expected: artifact_type.to_owned(),
            actual: match &manifest.artifact_type {
                Some(other) => format!("an artifact of type `{other}`"),
                None => "an image".to_owned(),
            },
        });
    }
    let store_error = |source| RegistryError::Store {
        registry: endpoint.host.clone(),
        source,
    };
    for layer in &manifest.layers {
        if !store.has_blob(&layer.digest) {
            let remote = RemoteBlob {
                repository: reference.repository(),
                media_type: layer.media_type.clone(),
                size: layer.size,
                mirror: None,
            };
            store
                .record_remote(&layer.digest, &remote)
                .map_err(store_error)?;
        }
    }
    super::pull::fetch_remote(&client, store, &manifest.layers, &|_| None, &[])?;
    Ok(manifest)
}
