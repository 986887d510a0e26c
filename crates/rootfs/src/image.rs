//! Images in the store as a build starts from them: the manifest (chosen
//! for a platform from an index) and config of a tagged or pulled image,
//! and images imported from an OCI layout on disk.

use hoist_oci::Digest;
use hoist_oci::Platform;
use hoist_oci::image::{Descriptor, ImageConfig, Manifest, ManifestOrIndex};
use hoist_oci::media_type;
use hoist_store::Store;
use std::io;
use std::path::{Path, PathBuf};

/// Documents larger than this are not manifests or configs.
const MAX_DOCUMENT: u64 = 8 << 20;

/// Why a base image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("cannot read {what} {digest} from the store")]
    Store {
        what: &'static str,
        digest: Digest,
        #[source]
        source: hoist_store::StoreError,
    },
    #[error("{what} {digest} is not valid: {reason}")]
    Invalid {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("the image index {digest} has no manifest for {platform}")]
    NoPlatform { digest: Digest, platform: String },
    #[error("cannot use the OCI layout {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("cannot read layer {digest}")]
    Layer {
        digest: Digest,
        #[source]
        source: io::Error,
    },
}

impl BaseError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            BaseError::NoPlatform { .. } => {
                "pass --platform for one the image has, or use a tag built for this platform"
            }
            BaseError::Layout { .. } => "check the path and tag of oci-layout://PATH[:TAG]",
            _ => "the store may be damaged: run `hoist prune --verify` and pull the image again",
        }
    }
}

/// A resolved image: its manifest and config.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// Reads the image a manifest or index descriptor names, choosing
/// `platform` from an index.
pub fn load_image(
    store: &Store,
    digest: &Digest,
    platform: &Platform,
) -> Result<StoredImage, BaseError> {
    let bytes = read(store, "manifest", digest)?;
    let invalid = |what, digest: &Digest, reason: String| BaseError::Invalid {
        what,
        digest: *digest,
        reason,
    };
    let (manifest_digest, manifest) = match ManifestOrIndex::from_json(&bytes)
        .map_err(|e| invalid("manifest", digest, e.to_string()))?
    {
        ManifestOrIndex::Manifest(m) => (*digest, m),
        ManifestOrIndex::Index(index) => {
            // The same choice a pull makes, so a pulled index resolves to
            // the manifest that was pulled with it.
            let chosen = index
                .select(platform)
                .ok_or_else(|| BaseError::NoPlatform {
                    digest: *digest,
                    platform: platform.to_string(),
                })?;
            let bytes = read(store, "manifest", &chosen.digest)?;
            let m = Manifest::from_json(&bytes)
                .map_err(|e| invalid("manifest", &chosen.digest, e.to_string()))?;
            (chosen.digest, m)
        }
    };
    let config_bytes = read(store, "config", &manifest.config.digest)?;
    let config = ImageConfig::from_json(&config_bytes)
        .map_err(|e| invalid("config", &manifest.config.digest, e.to_string()))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(
            "config",
            &manifest.config.digest,
            format!(
                "it lists {} layers where the manifest has {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    Ok(StoredImage {
        manifest_digest,
        manifest,
        config,
    })
}

/// Copies the image `PATH[:TAG]` of an OCI image layout into the store
/// (every blob its manifest or index names, digests verified); returns the
/// digest of its manifest or index. Without a tag the layout must hold one
/// image; a tag matches `org.opencontainers.image.ref.name`, as a bare tag
/// or a full name.
pub fn import_oci_layout(store: &Store, spec: &str) -> Result<Digest, BaseError> {
    let (dir, tag) = match spec.rsplit_once(':') {
        Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t)),
        _ => (spec, None),
    };
    let dir = Path::new(dir);
    let bad = |reason: String| BaseError::Layout {
        path: dir.to_path_buf(),
        reason,
    };
    let index_bytes = std::fs::read(dir.join("index.json"))
        .map_err(|e| bad(format!("cannot read index.json: {e}")))?;
    let index = hoist_oci::image::Index::from_json(&index_bytes).map_err(|e| bad(e.to_string()))?;
    let chosen: Vec<_> = index
        .manifests
        .iter()
        .filter(|d| match tag {
            None => true,
            Some(t) => d
                .annotations
                .get(hoist_oci::image::archive::REF_NAME)
                .is_some_and(|name| name == t || name.ends_with(&format!(":{t}"))),
        })
        .collect();
    let descriptor = match chosen.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(bad(format!("no image tagged {}", tag.unwrap_or("(any)")))),
        _ => {
            return Err(bad(
                "it holds several images: name one with oci-layout://PATH:TAG".into(),
            ));
        }
    };
    import_from_layout(store, dir, &descriptor)
}

/// Copies the image `descriptor` names (a manifest or an index, with
/// every blob below it) from the OCI layout `dir` into the store, digests
/// verified.
pub fn import_from_layout(
    store: &Store,
    dir: &Path,
    descriptor: &Descriptor,
) -> Result<Digest, BaseError> {
    let bad = |reason: String| BaseError::Layout {
        path: dir.to_path_buf(),
        reason,
    };
    let mut pending = vec![(descriptor.digest, descriptor.media_type.clone())];
    while let Some((digest, media)) = pending.pop() {
        let path = dir.join("blobs/sha256").join(digest.hex());
        let file = std::fs::File::open(&path)
            .map_err(|e| bad(format!("cannot read blob {digest}: {e}")))?;
        store
            .put_blob(file, Some(&digest))
            .map_err(|source| BaseError::Store {
                what: "blob",
                digest,
                source,
            })?;
        if media_type::is_manifest(&media) || media_type::is_index(&media) {
            let bytes = read(store, "manifest", &digest)?;
            match ManifestOrIndex::from_json(&bytes).map_err(|e| bad(e.to_string()))? {
                ManifestOrIndex::Manifest(m) => {
                    pending.push((m.config.digest, m.config.media_type.clone()));
                    pending.extend(m.layers.iter().map(|l| (l.digest, l.media_type.clone())));
                }
                ManifestOrIndex::Index(i) => {
                    pending.extend(i.manifests.iter().map(|d| (d.digest, d.media_type.clone())));
                }
            }
        }
    }
    Ok(descriptor.digest)
}

fn read(store: &Store, what: &'static str, digest: &Digest) -> Result<Vec<u8>, BaseError> {
    store
        .read_blob_bytes(digest, MAX_DOCUMENT)
        .map_err(|source| BaseError::Store {
            what,
            digest: *digest,
            source,
        })
}
