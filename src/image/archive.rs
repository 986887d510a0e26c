//! Image exports: an OCI image layout directory, the same layout as a tar
//! (an "OCI archive"), and a tar that `docker load` and `podman load` read
//! which is at the same time a valid OCI archive.
//!
//! Each export takes [`ExportImage`]s (a manifest blob's descriptor and the
//! names to give it) and a [`BlobSource`] that opens blobs by digest (the
//! store implements it; [`MemoryBlobs`] serves tests and small documents).
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
//! valid for the same files and avoids decompressing on export.
//! `repositories` (the pre-1.10 tag file) is written for tools that still
//! look for it; Docker ignores it when `manifest.json` is present.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::canonical::canonical_json;
use super::{Descriptor, ImageError, Index, Manifest, media_type};
use crate::layer::digest::Sha256;
use crate::layer::{Digest, Entry, TarError, TarOptions, TarWriter};

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

/// Where an export reads blobs from.
pub trait BlobSource {
    /// Opens the blob named `digest` for reading from its start.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>>;
    /// The blob's size in bytes.
    fn size(&self, digest: &Digest) -> io::Result<u64>;
}

/// Blobs kept in memory: generated documents and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobs {
    blobs: BTreeMap<Digest, Vec<u8>>,
}

impl MemoryBlobs {
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    /// Stores `bytes` and returns their digest.
    pub fn insert(&mut self, bytes: Vec<u8>) -> Digest {
        let digest = Digest::of(&bytes);
        self.blobs.insert(digest, bytes);
        digest
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        match self.blobs.get(digest) {
            Some(bytes) => Ok(Box::new(&bytes[..])),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no blob {digest}"),
            )),
        }
    }

    fn size(&self, digest: &Digest) -> io::Result<u64> {
        self.open(digest)?;
        Ok(self.blobs[digest].len() as u64)
    }
}

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
    #[error("manifest {digest} is {size} bytes, more than the 4 MiB registries accept")]
    ManifestTooLarge { digest: Digest, size: u64 },
    #[error("cannot read manifest {digest}")]
    Manifest { digest: Digest, source: ImageError },
    #[error("{digest} is a `{media_type}`, not an image manifest; export one platform's manifest")]
    NotAManifest { digest: Digest, media_type: String },
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
    let docker_manifest: Vec<DockerManifestEntry> = plan
        .images
        .iter()
        .map(|image| DockerManifestEntry {
            config: blob_path(&image.manifest.config.digest),
            repo_tags: image.names.iter().map(|n| n.full.clone()).collect(),
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect(),
        })
        .collect();
    files.insert("manifest.json", to_json(&docker_manifest));
    // `repositories`: {repository: {tag: image ID}}, the ID being the
    // config digest's hex as `docker images` shows it.
    let mut repositories: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for image in &plan.images {
        for name in &image.names {
            repositories
                .entry(&name.repository)
                .or_default()
                .insert(&name.tag, image.manifest.config.digest.hex());
        }
    }
    files.insert("repositories", to_json(&repositories));
    plan.write_tar(out, &files, source)
}

/// Writes `images` as a tar of an OCI image layout and returns `out`.
pub fn write_oci_archive<W: Write>(
    out: W,
    images: &[ExportImage],
    source: &dyn BlobSource,
) -> Result<W, ArchiveError> {
    let plan = Plan::new(images, source)?;
    let files = plan.layout_files();
    plan.write_tar(out, &files, source)
}

/// Writes `images` into the OCI image layout at `dir` (created if missing).
///
/// Blobs already present are kept (their names are their digests); new
/// ones go to a temp file in `blobs/sha256` and are renamed into place only
/// once their digest checks, so a crash never leaves a half blob under a
/// real name. An existing `index.json` keeps its entries, except those
/// whose `org.opencontainers.image.ref.name` one of `images` now takes.
pub fn write_oci_layout(
    dir: &Path,
    images: &[ExportImage],
    source: &dyn BlobSource,
) -> Result<(), ArchiveError> {
    let plan = Plan::new(images, source)?;
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| io_error(&blobs, e))?;
    for (digest, size) in &plan.blobs {
        let path = blobs.join(digest.hex());
        if path.exists() {
            continue;
        }
        let temp = blobs.join(format!(".{}.{}.tmp", digest.hex(), std::process::id()));
        let result = write_blob_file(&temp, digest, *size, source)
            .and_then(|()| fs::rename(&temp, &path).map_err(|e| io_error(&path, e)));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
    }

    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => Index::from_json(&bytes).map_err(|source| ArchiveError::LayoutIndex {
            path: index_path.clone(),
            source,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Index::new(Vec::new()),
        Err(e) => return Err(io_error(&index_path, e)),
    };
    let ours = plan.index();
    let taken: Vec<&String> = ours
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME))
        .collect();
    index.manifests.retain(|d| {
        d.annotations
            .get(REF_NAME)
            .is_none_or(|r| !taken.contains(&r))
    });
    index.manifests.extend(ours.manifests);
    write_file_atomically(dir, "index.json", &to_json(&index))?;
    write_file_atomically(dir, "oci-layout", &layout_header())
}

/// What an export writes, worked out before the first byte is written.
struct Plan {
    images: Vec<PlannedImage>,
    /// Every blob once, with its size, sorted by digest (hence by path).
    blobs: BTreeMap<Digest, u64>,
}

struct PlannedImage {
    descriptor: Descriptor,
    manifest: Manifest,
    names: Vec<ImageName>,
}

/// A name split as `docker load` and the OCI index want it.
struct ImageName {
    /// As given, with `:latest` added when it had no tag.
    full: String,
    repository: String,
    tag: String,
}

impl Plan {
    fn new(images: &[ExportImage], source: &dyn BlobSource) -> Result<Plan, ArchiveError> {
        let mut plan = Plan {
            images: Vec::new(),
            blobs: BTreeMap::new(),
        };
        for image in images {
            let descriptor = &image.manifest;
            if !media_type::is_manifest(&descriptor.media_type) {
                return Err(ArchiveError::NotAManifest {
                    digest: descriptor.digest,
                    media_type: descriptor.media_type.clone(),
                });
            }
            let manifest = read_manifest(descriptor, source)?;
            plan.blobs.insert(descriptor.digest, descriptor.size);
            plan.blobs
                .insert(manifest.config.digest, manifest.config.size);
            for layer in &manifest.layers {
                plan.blobs.insert(layer.digest, layer.size);
            }
            let names = image
                .names
                .iter()
                .map(|n| ImageName::parse(n))
                .collect::<Result<_, _>>()?;
            plan.images.push(PlannedImage {
                descriptor: descriptor.clone(),
                manifest,
                names,
            });
        }
        Ok(plan)
    }

    /// The layout's `index.json`: one entry per image and name (one without
    /// annotations for an image with no names), in the order given.
    fn index(&self) -> Index {
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

    /// Writes the blobs, then `files`, as one sorted tar.
    fn write_tar<W: Write>(
        &self,
        out: W,
        files: &BTreeMap<&'static str, Vec<u8>>,
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
        for (digest, size) in &self.blobs {
            let mut reader = open_verified(digest, source)?;
            tar.append_reader(
                blob_path(digest),
                0o644,
                *size,
                &mut reader,
                Path::new(&blob_path(digest)),
            )
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
            })?;
            reader.check()?;
        }
        for (path, bytes) in files {
            tar.append(&Entry::file(*path, bytes.clone()))
                .map_err(tar_error)?;
        }
        tar.finish().map_err(tar_error)
    }
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

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn layout_header() -> Vec<u8> {
    to_json(&serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }))
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Only hoist's own string-keyed types reach here.
    canonical_json(value).expect("archive documents always serialise")
}

fn io_error(path: &Path, source: io::Error) -> ArchiveError {
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
    let digest = descriptor.digest;
    if descriptor.size > MAX_MANIFEST_SIZE {
        return Err(ArchiveError::ManifestTooLarge {
            digest,
            size: descriptor.size,
        });
    }
    let mut reader = open_verified(&digest, source)?;
    let mut bytes = Vec::new();
    (&mut reader)
        .take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ArchiveError::Open { digest, source })?;
    if bytes.len() as u64 != descriptor.size {
        return Err(ArchiveError::Size {
            digest,
            expected: descriptor.size,
            found: bytes.len() as u64,
        });
    }
    reader.check()?;
    Manifest::from_json(&bytes).map_err(|source| ArchiveError::Manifest { digest, source })
}

/// Copies one blob into a new file and syncs it.
fn write_blob_file(
    path: &Path,
    digest: &Digest,
    size: u64,
    source: &dyn BlobSource,
) -> Result<(), ArchiveError> {
    let mut reader = open_verified(digest, source)?;
    let mut file = File::create(path).map_err(|e| io_error(path, e))?;
    let copied = io::copy(&mut reader, &mut file).map_err(|e| {
        // The source failed mid-blob, or the disk did.
        if reader.failed {
            ArchiveError::Open {
                digest: *digest,
                source: e,
            }
        } else {
            io_error(path, e)
        }
    })?;
    if copied != size {
        return Err(ArchiveError::Size {
            digest: *digest,
            expected: size,
            found: copied,
        });
    }
    reader.check()?;
    file.sync_all().map_err(|e| io_error(path, e))
}

/// Writes `bytes` to `dir/name` through a temp file and a rename.
fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = File::create(&temp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&path, e));
    }
    Ok(())
}

fn open_verified<'a>(
    digest: &Digest,
    source: &'a dyn BlobSource,
) -> Result<VerifyingReader<'a>, ArchiveError> {
    let inner = source.open(digest).map_err(|source| ArchiveError::Open {
        digest: *digest,
        source,
    })?;
    Ok(VerifyingReader {
        inner,
        hasher: Sha256::new(),
        expected: *digest,
        failed: false,
    })
}

/// Hashes what it reads so the blob can be checked once fully read.
struct VerifyingReader<'a> {
    inner: Box<dyn Read + 'a>,
    hasher: Sha256,
    expected: Digest,
    /// Whether the inner reader returned an error.
    failed: bool,
}

impl VerifyingReader<'_> {
    /// Fails unless everything read so far hashes to the expected digest.
    fn check(self) -> Result<(), ArchiveError> {
        let found = self.hasher.finish();
        if found == self.expected {
            Ok(())
        } else {
            Err(ArchiveError::Digest {
                digest: self.expected,
                found,
            })
        }
    }
}

impl Read for VerifyingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
