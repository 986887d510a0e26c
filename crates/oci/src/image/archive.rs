//! Image exports as tars: an OCI image layout in a tar (an "OCI archive"),
//! and a tar that `docker load` and `podman load` read which is at the
//! same time a valid OCI archive. The layout directory itself is written by
//! [`write_oci_layout`](super::write_oci_layout), from the same `Plan`.
//!
//! Each export takes [`ExportImage`]s (a manifest blob's descriptor and the
//! names to give it) and a [`BlobSource`] that opens blobs by digest (the
//! store implements it; [`MemoryBlobs`](super::MemoryBlobs) serves tests
//! and small documents).
//! Blobs stream from the source into the output through a SHA-256 and are
//! checked against their descriptors' digest and size, so a corrupt store
//! fails the export instead of producing an image nobody can load. Nothing
//! here holds a layer in memory; only manifests (capped at 4 MiB, as
//! registries cap them) are read whole.
//!
//! Archives are deterministic: entries sorted by path bytes, mode 0644
//! files and 0755 directories, uid/gid 0, mtime 0, no user or group names,
//! and every JSON file in canonical form.
//!
//! ## Why the docker archive is also an OCI archive
//!
//! `docker save` (Docker >= 25) writes both `manifest.json` and the OCI
//! `oci-layout` + `index.json` into one tar, with every blob once under
//! `blobs/sha256/`, and points `manifest.json`'s `Config` and `Layers` at
//! those same files. hoist does the same: one copy of each blob serves both
//! readers, the tar costs nothing extra, and it loads into Docker (any
//! version since 1.10 reads `manifest.json`), podman, skopeo and containerd
//! alike.
//!
//! ## Why layers stay compressed
//!
//! `docker load` has decompressed layers while loading since the
//! `manifest.json` format arrived in Docker 1.10 (moby's
//! `image/tarexport/load.go` passes every layer file through its
//! compression-detecting reader and checks the result against
//! `rootfs.diff_ids`); podman and skopeo (containers/image's docker-archive
//! reader) detect compression too. So layers are written exactly as the
//! store holds them (usually gzip), which keeps the OCI index's digests
//! valid for the same files and avoids decompressing on export. The
//! exception is zstd: Docker 20.10's `docker load` fails on zstd layers
//! ("unexpected EOF"; later engines read zstd), so those are
//! decompressed on the fly into `blobs/sha256/<diffID>` for
//! `manifest.json`, in two streaming passes (the tar header needs the size
//! first), each checked against the config's diffID. The zstd blob stays
//! in the archive for the OCI index. Layer types Docker does not know
//! (artifacts) are refused rather than written into an archive that
//! `docker load` would reject.
//! `repositories` (the pre-1.10 tag file) is written for tools that still
//! look for it; Docker ignores it when `manifest.json` is present.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::blobs::{BlobSource, VerifyingReader, open_verified, read_small_blob};
use super::canonical::canonical_json;
use super::{Descriptor, ImageConfig, ImageError, Index, Manifest};
use crate::Digest;
use crate::compression::{Compression, decompress};
use crate::layer::{Entry, TarError, TarOptions, TarWriter};
use crate::media_type;

/// The annotation naming a manifest in an OCI layout's `index.json`
/// (image-spec `annotations.md`): skopeo's `oci:DIR:REF` and umoci's
/// `--image DIR:REF` look `REF` up here.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full image name containerd (and Docker >= 25) reads from an OCI
/// archive's index.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// The `oci-layout` file's one version.
const LAYOUT_VERSION: &str = "1.0.0";
/// Registries refuse manifests larger than this (distribution's limit).
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Far beyond any real config (tens of kilobytes); a bound so a corrupt
/// descriptor cannot make an export read gigabytes into memory.
const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// One image to export: its manifest (a blob in the source) and the names
/// to give it, such as `myapp:1.0` or `registry.example/team/app:latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportImage {
    pub manifest: Descriptor,
    pub names: Vec<String>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "cannot read blob {digest} from the store; the store may be incomplete, pull or rebuild the image"
    )]
    Open { digest: Digest, source: io::Error },
    #[error(
        "blob {digest} in the store has digest {found}; the store is corrupt, remove the blob and pull or rebuild"
    )]
    Digest { digest: Digest, found: Digest },
    #[error(
        "blob {digest} in the store has {found} bytes where its descriptor says {expected}; the store is corrupt"
    )]
    Size {
        digest: Digest,
        expected: u64,
        found: u64,
    },
    #[error(
        "document {digest} is {size} bytes, more than the {limit} bytes hoist reads into memory"
    )]
    TooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("cannot read manifest {digest}")]
    Manifest { digest: Digest, source: ImageError },
    #[error("{digest} is a `{media_type}`, not an image manifest or index; export an image")]
    NotAManifest { digest: Digest, media_type: String },
    #[error(
        "{digest} is an index of {platforms} platforms, and a docker archive holds one image per \
         name (docker load reads no index): export type=oci or type=oci-archive, or build one \
         platform"
    )]
    IndexForDocker { digest: Digest, platforms: usize },
    #[error(
        "manifest {digest} has config media type `{media_type}`, so it is not a container image; docker load reads only images, export an OCI archive instead"
    )]
    NotAnImage { digest: Digest, media_type: String },
    #[error(
        "layer {digest} has media type `{media_type}`, which docker load cannot read; export an OCI archive instead"
    )]
    UnsupportedLayer { digest: Digest, media_type: String },
    #[error(
        "manifest {digest} lists {layers} layers but its config has {diff_ids} diffIDs; the image is broken, rebuild it"
    )]
    LayerCount {
        digest: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error("config {digest} cannot be read")]
    Config { digest: Digest, source: ImageError },
    #[error("cannot decompress zstd layer {digest}")]
    Decompress { digest: Digest, source: io::Error },
    #[error(
        "layer {digest} decompresses to {found}, but the config says its diffID is {expected}; the store is corrupt, remove the blob and pull or rebuild"
    )]
    DiffId {
        digest: Digest,
        expected: Digest,
        found: Digest,
    },
    #[error("image name `{name}` is not valid: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("cannot write the archive")]
    Tar { source: TarError },
    #[error("cannot write `{path}`")]
    Io { path: PathBuf, source: io::Error },
    #[error("`{path}` is not an OCI image layout index; remove it or choose another directory")]
    LayoutIndex { path: PathBuf, source: ImageError },
}

/// Writes `images` as a tar that `docker load` and `podman load` accept and
/// that is also an OCI archive (see the module docs), and returns `out`.
pub fn write_docker_archive<W: Write>(
    out: W,
    images: &[ExportImage],
    source: &dyn BlobSource,
) -> Result<W, ArchiveError> {
    let plan = Plan::new(images, source)?;
    let mut files = plan.layout_files();
    // diffID -> the zstd layer that decompresses to it.
    let mut decompressed: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    let mut docker_manifest = Vec::new();
    for image in &plan.images {
        let layers = docker_layer_paths(image, source, &mut decompressed)?;
        docker_manifest.push(DockerManifestEntry {
            config: blob_path(&image.single()?.config.digest),
            repo_tags: image.names.iter().map(|n| n.full.clone()).collect(),
            layers,
        });
    }
    files.insert("manifest.json", to_json(&docker_manifest));
    // `repositories`: {repository: {tag: image ID}}, the ID being the
    // config digest's hex as `docker images` shows it.
    let mut repositories: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for image in &plan.images {
        let config = image.single()?.config.digest.hex();
        for name in &image.names {
            repositories
                .entry(&name.repository)
                .or_default()
                .insert(&name.tag, config.clone());
        }
    }
    files.insert("repositories", to_json(&repositories));
    // A diffID equal to a blob's digest is an uncompressed layer already
    // in the archive under that name.
    decompressed.retain(|diff_id, _| !plan.blobs.contains_key(diff_id));
    plan.write_tar(out, &files, &decompressed, source)
}

/// The archive paths `manifest.json` gives an image's layers: the blob
/// itself when `docker load` reads its compression, the decompressed
/// layer (recorded in `decompressed`) for zstd.
fn docker_layer_paths(
    image: &PlannedImage,
    source: &dyn BlobSource,
    decompressed: &mut BTreeMap<Digest, Descriptor>,
) -> Result<Vec<String>, ArchiveError> {
    let manifest = image.single()?;
    let config_descriptor = &manifest.config;
    if !media_type::is_config(&config_descriptor.media_type) {
        return Err(ArchiveError::NotAnImage {
            digest: image.descriptor.digest,
            media_type: config_descriptor.media_type.clone(),
        });
    }
    let layers = &manifest.layers;
    let compressions: Vec<Option<Compression>> = layers
        .iter()
        .map(|layer| Compression::of_layer(&layer.media_type))
        .collect();
    // Only images with zstd layers need their config's diffIDs.
    let diff_ids = if compressions.contains(&Some(Compression::Zstd)) {
        read_diff_ids(image, source)?
    } else {
        Vec::new()
    };
    let mut paths = Vec::with_capacity(layers.len());
    for (i, (layer, compression)) in layers.iter().zip(compressions).enumerate() {
        match compression {
            Some(Compression::None | Compression::Gzip) => paths.push(blob_path(&layer.digest)),
            Some(Compression::Zstd) => {
                decompressed.insert(diff_ids[i], layer.clone());
                paths.push(blob_path(&diff_ids[i]));
            }
            Some(Compression::Bzip2 | Compression::Xz) | None => {
                return Err(ArchiveError::UnsupportedLayer {
                    digest: layer.digest,
                    media_type: layer.media_type.clone(),
                });
            }
        }
    }
    Ok(paths)
}

/// The config's diffIDs, one per manifest layer.
fn read_diff_ids(
    image: &PlannedImage,
    source: &dyn BlobSource,
) -> Result<Vec<Digest>, ArchiveError> {
    let manifest = image.single()?;
    let descriptor = &manifest.config;
    let bytes = read_small_blob(descriptor, source, MAX_CONFIG_SIZE)?;
    let config = ImageConfig::from_json(&bytes).map_err(|source| ArchiveError::Config {
        digest: descriptor.digest,
        source,
    })?;
    let diff_ids = config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ArchiveError::LayerCount {
            digest: image.descriptor.digest,
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    Ok(diff_ids)
}

/// Writes `images` as a tar of an OCI image layout and returns `out`.
pub fn write_oci_archive<W: Write>(
    out: W,
    images: &[ExportImage],
    source: &dyn BlobSource,
) -> Result<W, ArchiveError> {
    let plan = Plan::new(images, source)?;
    let files = plan.layout_files();
    plan.write_tar(out, &files, &BTreeMap::new(), source)
}

/// What an export writes, worked out before the first byte is written.
pub(super) struct Plan {
    pub(super) images: Vec<PlannedImage>,
    /// Every blob once, with its size, sorted by digest (hence by path).
    pub(super) blobs: BTreeMap<Digest, u64>,
}

pub(super) struct PlannedImage {
    descriptor: Descriptor,
    /// The image's manifest; an index's manifests, in its order.
    manifests: Vec<Manifest>,
    names: Vec<ImageName>,
}

impl PlannedImage {
    /// The manifest of an image that is one manifest (what `docker load`
    /// reads); an index is an error.
    fn single(&self) -> Result<&Manifest, ArchiveError> {
        match self.manifests.as_slice() {
            [manifest] if media_type::is_manifest(&self.descriptor.media_type) => Ok(manifest),
            _ => Err(ArchiveError::IndexForDocker {
                digest: self.descriptor.digest,
                platforms: self.manifests.len(),
            }),
        }
    }
}

/// A name split as `docker load` and the OCI index want it.
struct ImageName {
    /// As given, with `:latest` added when it had no tag.
    full: String,
    repository: String,
    tag: String,
}

impl Plan {
    pub(super) fn new(
        images: &[ExportImage],
        source: &dyn BlobSource,
    ) -> Result<Plan, ArchiveError> {
        let mut plan = Plan {
            images: Vec::new(),
            blobs: BTreeMap::new(),
        };
        for image in images {
            let descriptor = &image.manifest;
            // An index's manifests, each checked as an image is.
            let children: Vec<Descriptor> = if media_type::is_index(&descriptor.media_type) {
                let bytes = read_small_blob(descriptor, source, MAX_MANIFEST_SIZE)?;
                Index::from_json(&bytes)
                    .map_err(|source| ArchiveError::Manifest {
                        digest: descriptor.digest,
                        source,
                    })?
                    .manifests
            } else {
                vec![descriptor.clone()]
            };
            let mut manifests = Vec::with_capacity(children.len());
            for child in &children {
                if !media_type::is_manifest(&child.media_type) {
                    return Err(ArchiveError::NotAManifest {
                        digest: child.digest,
                        media_type: child.media_type.clone(),
                    });
                }
                let manifest = read_manifest(child, source)?;
                plan.add_blobs(child, &manifest, source)?;
                manifests.push(manifest);
            }
            plan.blobs.insert(descriptor.digest, descriptor.size);
            let names = image
                .names
                .iter()
                .map(|n| ImageName::parse(n))
                .collect::<Result<_, _>>()?;
            plan.images.push(PlannedImage {
                descriptor: descriptor.clone(),
                manifests,
                names,
            });
        }
        Ok(plan)
    }

    /// Records `manifest` (of `descriptor`) and the blobs it names, every
    /// one checked to be there with its size before the first byte is
    /// written: a missing layer should not cost a half written archive.
    fn add_blobs(
        &mut self,
        descriptor: &Descriptor,
        manifest: &Manifest,
        source: &dyn BlobSource,
    ) -> Result<(), ArchiveError> {
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let found = source
                .size(&blob.digest)
                .map_err(|source| ArchiveError::Open {
                    digest: blob.digest,
                    source,
                })?;
            if found != blob.size {
                return Err(ArchiveError::Size {
                    digest: blob.digest,
                    expected: blob.size,
                    found,
                });
            }
            self.blobs.insert(blob.digest, blob.size);
        }
        self.blobs.insert(descriptor.digest, descriptor.size);
        Ok(())
    }

    /// The layout's `index.json`: one entry per image and name (one without
    /// annotations for an image with no names), in the order given.
    pub(super) fn index(&self) -> Index {
        let mut manifests = Vec::new();
        for image in &self.images {
            let mut plain = image.descriptor.clone();
            plain.annotations.clear();
            if image.names.is_empty() {
                manifests.push(plain.clone());
            }
            for name in &image.names {
                manifests.push(
                    plain
                        .clone()
                        .with_annotation(CONTAINERD_IMAGE_NAME, &name.full)
                        .with_annotation(REF_NAME, &name.tag),
                );
            }
        }
        Index::new(manifests)
    }

    /// The small files of an OCI layout, by path.
    fn layout_files(&self) -> BTreeMap<&'static str, Vec<u8>> {
        BTreeMap::from([
            ("index.json", to_json(&self.index())),
            ("oci-layout", layout_header()),
        ])
    }

    /// Writes the blobs and the `decompressed` layers (by diffID), then
    /// `files`, as one sorted tar.
    fn write_tar<W: Write>(
        &self,
        out: W,
        files: &BTreeMap<&'static str, Vec<u8>>,
        decompressed: &BTreeMap<Digest, Descriptor>,
        source: &dyn BlobSource,
    ) -> Result<W, ArchiveError> {
        let tar_error = |source| ArchiveError::Tar { source };
        let mut tar = TarWriter::new(out, TarOptions::default());
        // `blobs/` sorts before every root file hoist writes (`index.json`,
        // `manifest.json`, `oci-layout`, `repositories`).
        tar.append(&Entry::dir("blobs").with_mode(0o755))
            .map_err(tar_error)?;
        tar.append(&Entry::dir("blobs/sha256").with_mode(0o755))
            .map_err(tar_error)?;
        // Both maps are keyed by the name under `blobs/sha256/`; merge them
        // in that order.
        let mut names: Vec<&Digest> = self.blobs.keys().chain(decompressed.keys()).collect();
        names.sort();
        for name in names {
            let path = blob_path(name);
            match decompressed.get(name) {
                None => {
                    let size = self.blobs[name];
                    let mut reader = open_verified(name, source)?;
                    append_blob(&mut tar, &path, size, &mut reader, name)?;
                    reader.check()?;
                }
                Some(layer) => {
                    let size = decompressed_size(layer, name, source)?;
                    let mut compressed = open_verified(&layer.digest, source)?;
                    let mut decoded =
                        VerifyingReader::new(decompress(Compression::Zstd, &mut compressed), *name);
                    append_blob(&mut tar, &path, size, &mut decoded, &layer.digest)?;
                    // A corrupt blob explains a wrong diffID: report it first.
                    let diff_id = decoded.check_diff_id(layer.digest);
                    compressed.check()?;
                    diff_id?;
                }
            }
        }
        for (path, bytes) in files {
            tar.append(&Entry::file(*path, bytes.clone()))
                .map_err(tar_error)?;
        }
        tar.finish().map_err(tar_error)
    }
}

/// Streams one blob of `size` bytes into the tar at `path`; `digest` names
/// it in errors.
fn append_blob<W: Write>(
    tar: &mut TarWriter<W>,
    path: &str,
    size: u64,
    reader: &mut dyn Read,
    digest: &Digest,
) -> Result<(), ArchiveError> {
    tar.append_reader(path, 0o644, size, reader, Path::new(path))
        .map_err(|e| match e {
            TarError::Changed {
                expected, found, ..
            } => ArchiveError::Size {
                digest: *digest,
                expected,
                found,
            },
            TarError::Read { source, .. } => ArchiveError::Open {
                digest: *digest,
                source,
            },
            other => ArchiveError::Tar { source: other },
        })
}

/// The first pass over a zstd layer: its decompressed size, checking that
/// it decompresses to `diff_id` and that the blob is intact.
fn decompressed_size(
    layer: &Descriptor,
    diff_id: &Digest,
    source: &dyn BlobSource,
) -> Result<u64, ArchiveError> {
    let mut compressed = open_verified(&layer.digest, source)?;
    let mut decoded =
        VerifyingReader::new(decompress(Compression::Zstd, &mut compressed), *diff_id);
    // A store that fails mid-read also lands here; its error is the
    // source either way.
    let size =
        io::copy(&mut decoded, &mut io::sink()).map_err(|source| ArchiveError::Decompress {
            digest: layer.digest,
            source,
        })?;
    let diff_id = decoded.check_diff_id(layer.digest);
    compressed.check()?;
    diff_id?;
    Ok(size)
}

impl ImageName {
    /// Splits `name` at the tag: the last `:` after the last `/` (a `:`
    /// before it is a registry port). Full reference parsing belongs to the
    /// registry module; this only needs what `docker load` needs.
    fn parse(name: &str) -> Result<ImageName, ArchiveError> {
        let invalid = |reason| ArchiveError::Name {
            name: name.to_owned(),
            reason,
        };
        if name.contains('@') {
            return Err(invalid(
                "a digest reference cannot name an image in an archive; give a tag",
            ));
        }
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it is empty or contains whitespace"));
        }
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
            None => (name, "latest"),
        };
        if repository.is_empty() || tag.is_empty() {
            return Err(invalid("the repository or the tag is empty"));
        }
        Ok(ImageName {
            full: format!("{repository}:{tag}"),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

pub(super) fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

pub(super) fn layout_header() -> Vec<u8> {
    to_json(&serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }))
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Only hoist's own string-keyed types reach here.
    canonical_json(value).expect("archive documents always serialise")
}

pub(super) fn io_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and checks a manifest blob.
fn read_manifest(
    descriptor: &Descriptor,
    source: &dyn BlobSource,
) -> Result<Manifest, ArchiveError> {
    let bytes = read_small_blob(descriptor, source, MAX_MANIFEST_SIZE)?;
    Manifest::from_json(&bytes).map_err(|source| ArchiveError::Manifest {
        digest: descriptor.digest,
        source,
    })
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
