//! A build context kept in a registry as an OCI artifact: what `hoist
//! build --job` uploads, and what the Job's `hoist build
//! oci-artifact://REGISTRY/REPO@sha256:...` builds from.
//!
//! The artifact (type [`ARTIFACT_TYPE`], the empty config) has an index
//! layer first, then one layer per distinct file content, so a file whose
//! content the repository holds is never sent again. The index (JSON,
//! [`Index`]) lists the context's entries as the build sees them (after
//! `.dockerignore`), with their modes and modification times, and names
//! the Dockerfile and the ignore rules that applied. Unpacking writes the
//! entries through the same checked extraction as image layers, so an
//! index cannot place a file outside the context directory.

use super::context_source::Context;
use anyhow::{Context as _, bail};
use hoist_engine::context::{DockerIgnore, walk_context};
use hoist_oci::Digest;
use hoist_oci::digest::DigestWriter;
use hoist_oci::image::{Descriptor, Document, Manifest};
use hoist_oci::layer::tar::{Content, Entry, EntryKind, TarOptions, write_tar};
use hoist_registry::artifact::{PushedArtifact, fetch_artifact, push_artifact};
use hoist_registry::{ClientOptions, Reference};
use hoist_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The artifact type of a build context.
pub const ARTIFACT_TYPE: &str = "application/vnd.hoist.build-context.v1";
/// The media type of its index layer.
const INDEX_MEDIA_TYPE: &str = "application/vnd.hoist.build-context.index.v1+json";
/// The media type of its file layers.
const FILE_MEDIA_TYPE: &str = "application/octet-stream";
/// How a context artifact is named as a build's context.
pub const SCHEME: &str = "oci-artifact://";

/// What the index layer holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    /// The Dockerfile, by its file name (`Dockerfile`, `app.Dockerfile`).
    dockerfile: Named,
    /// The `.dockerignore` rules the upload applied, if any did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ignore: Option<Blob>,
    /// The context directory's own mode and modification time.
    root: Meta,
    entries: Vec<IndexEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
    digest: Digest,
    size: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Blob {
    digest: Digest,
    size: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    mode: u32,
    mtime: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexEntry {
    path: String,
    #[serde(flatten)]
    kind: Kind,
    #[serde(flatten)]
    meta: Meta,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Kind {
    File { digest: Digest, size: u64 },
    Dir,
    Symlink { target: String },
    Hardlink { target: String },
}

/// The Dockerfile a build reads, as `hoist build` found it.
pub struct Dockerfile<'a> {
    /// Its path, which also finds `<path>.dockerignore`; `None` when it
    /// came from standard input.
    pub path: Option<&'a Path>,
    pub bytes: &'a [u8],
}

/// What [`upload`] did.
pub struct Uploaded {
    pub pushed: PushedArtifact,
    /// Entries of the context, and the bytes of their files.
    pub entries: usize,
    pub file_bytes: u64,
}

/// Uploads the context in `dir`, as a build of `dockerfile` sees it, to
/// `repository`.
pub fn upload(
    dir: &Path,
    dockerfile: &Dockerfile<'_>,
    repository: &Reference,
    options: &ClientOptions,
) -> anyhow::Result<Uploaded> {
    let ignore = DockerIgnore::load(dir, dockerfile.path)?;
    let walked = walk_context(dir, ignore.as_ref().map(|(_, rules)| rules))
        .with_context(|| format!("cannot read the build context {}", dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("hoist-context-upload-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let mut files: BTreeMap<Digest, PathBuf> = BTreeMap::new();
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut add = |digest: Digest, size: u64, path: PathBuf, layers: &mut Vec<Descriptor>| {
        if let std::collections::btree_map::Entry::Vacant(slot) = files.entry(digest) {
            slot.insert(path);
            layers.push(Descriptor::new(FILE_MEDIA_TYPE, digest, size));
        }
    };
    let keep = |name: &str, bytes: &[u8]| -> anyhow::Result<(Blob, PathBuf)> {
        let path = scratch.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        let blob = Blob {
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        };
        Ok((blob, path))
    };
    let dockerfile_name = dockerfile
        .path
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".to_owned());
    let (blob, path) = keep("dockerfile", dockerfile.bytes)?;
    add(blob.digest, blob.size, path, &mut layers);
    let dockerfile_ref = Named {
        name: dockerfile_name,
        digest: blob.digest,
        size: blob.size,
    };
    let ignore = match &ignore {
        Some((path, _)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let (blob, path) = keep("dockerignore", &bytes)?;
            add(blob.digest, blob.size, path, &mut layers);
            Some(blob)
        }
        None => None,
    };
    let digests = hash_files(&walked)?;
    let mut entries = Vec::with_capacity(walked.len());
    let mut file_bytes = 0;
    for (entry, digest) in walked.iter().zip(digests) {
        let path = utf8(&entry.path)?;
        let kind = match (&entry.kind, digest) {
            (
                EntryKind::File {
                    size,
                    content: Content::Path(source),
                },
                Some(digest),
            ) => {
                add(digest, *size, source.clone(), &mut layers);
                file_bytes += size;
                Kind::File {
                    digest,
                    size: *size,
                }
            }
            (EntryKind::Dir, _) => Kind::Dir,
            (EntryKind::Symlink { target }, _) => Kind::Symlink {
                target: utf8(target)?,
            },
            (EntryKind::Hardlink { target }, _) => Kind::Hardlink {
                target: utf8(target)?,
            },
            _ => bail!(
                "the build context holds {path}, which is not a file, directory or link: \
                 leave it out with .dockerignore to build with --job"
            ),
        };
        entries.push(IndexEntry {
            path,
            kind,
            meta: Meta {
                mode: entry.mode & 0o7777,
                mtime: entry.mtime,
            },
        });
    }
    let root = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let index = Index {
        dockerfile: dockerfile_ref,
        ignore,
        root: meta_of(&root),
        entries,
    };
    let index_bytes = serde_json::to_vec(&index).context("cannot encode the context's index")?;
    let (index_blob, index_path) = keep("index.json", &index_bytes)?;
    files.insert(index_blob.digest, index_path);
    layers.insert(
        0,
        Descriptor::new(INDEX_MEDIA_TYPE, index_blob.digest, index_blob.size),
    );
    let config = hoist_registry::cache::empty_config();
    let (_, config_path) = keep("config.json", b"{}")?;
    files.insert(config.digest, config_path);
    let mut manifest = Manifest::new(config, layers);
    manifest.artifact_type = Some(ARTIFACT_TYPE.to_owned());
    let pushed = push_artifact(options, repository, &manifest, &files).with_context(|| {
        format!(
            "cannot upload the build context to {}",
            repository.repository()
        )
    })?;
    debug_assert_eq!(pushed.reference.digest, Some(manifest.encode().digest));
    Ok(Uploaded {
        pushed,
        entries: index.entries.len(),
        file_bytes,
    })
}

/// The SHA-256 of every regular file among `entries` (`None` for the
/// others), on every core.
fn hash_files(entries: &[Entry]) -> anyhow::Result<Vec<Option<Digest>>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<anyhow::Result<Option<Digest>>>>> =
        entries.iter().map(|_| Default::default()).collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(entries.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(entry) = entries.get(i) else { return };
                    let result = match &entry.kind {
                        EntryKind::File {
                            size,
                            content: Content::Path(source),
                        } => hash_file(source, *size).map(Some),
                        _ => Ok(None),
                    };
                    *results[i].lock().expect("poisoned") = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().expect("poisoned").unwrap_or(Ok(None)))
        .collect()
}

fn hash_file(path: &Path, size: u64) -> anyhow::Result<Digest> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut writer = DigestWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut writer)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let (digest, read, _) = writer.finish();
    if read != size {
        bail!(
            "{} changed while the context was read: build again once nothing writes to it",
            path.display()
        );
    }
    Ok(digest)
}

fn utf8(bytes: &[u8]) -> anyhow::Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        anyhow::anyhow!(
            "the build context holds a path that is not UTF-8 ({}): --job cannot carry it; \
             rename it or leave it out with .dockerignore",
            String::from_utf8_lossy(bytes)
        )
    })
}

fn meta_of(metadata: &std::fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    Meta {
        mode: metadata.mode() & 0o7777,
        mtime: u64::try_from(metadata.mtime()).unwrap_or(0),
    }
}

/// The context `reference` names (`REGISTRY/REPO@sha256:...`, without the
/// scheme), fetched through `store` and unpacked into a scratch directory.
pub fn download(
    reference: &str,
    options: &ClientOptions,
    store: &Store,
) -> anyhow::Result<Context> {
    let parsed = Reference::parse(reference).with_context(|| format!("{SCHEME}{reference}"))?;
    let manifest = fetch_artifact(options, &parsed, ARTIFACT_TYPE, store)
        .with_context(|| format!("cannot fetch the build context {SCHEME}{reference}"))?;
    let damaged = |why: &str| anyhow::anyhow!("the build context {SCHEME}{reference} {why}");
    let index_layer = manifest
        .layers
        .first()
        .filter(|l| l.media_type == INDEX_MEDIA_TYPE)
        .ok_or_else(|| damaged("has no index layer"))?;
    let index_bytes = store.read_blob_bytes(&index_layer.digest, 64 << 20)?;
    let index: Index = serde_json::from_slice(&index_bytes)
        .map_err(|e| damaged(&format!("has an index that cannot be read: {e}")))?;
    let blob = |digest: &Digest| -> anyhow::Result<PathBuf> {
        if !manifest.layers.iter().any(|l| l.digest == *digest) {
            return Err(damaged(&format!("names {digest}, which it does not hold")));
        }
        Ok(store.blob_path(digest))
    };
    let scratch = tempfile::Builder::new()
        .prefix("hoist-context-")
        .tempdir()
        .context("cannot create a directory for the build context")?;
    let name = &index.dockerfile.name;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(damaged(&format!("names its Dockerfile `{name}`")));
    }
    let dockerfile_path = scratch.path().join(name);
    std::fs::copy(blob(&index.dockerfile.digest)?, &dockerfile_path)
        .with_context(|| format!("cannot write {}", dockerfile_path.display()))?;
    if let Some(ignore) = &index.ignore {
        // Beside the Dockerfile, the rules apply as they did at the upload
        // whichever file they came from.
        let path = scratch.path().join(format!("{name}.dockerignore"));
        std::fs::copy(blob(&ignore.digest)?, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut entries = Vec::with_capacity(index.entries.len());
    for item in &index.entries {
        let mut entry = match &item.kind {
            Kind::File { digest, size } => {
                Entry::file_from_path(item.path.as_bytes(), blob(digest)?, *size)
            }
            Kind::Dir => Entry::dir(item.path.as_bytes()),
            Kind::Symlink { target } => Entry::symlink(item.path.as_bytes(), target.as_bytes()),
            Kind::Hardlink { target } => Entry::hardlink(item.path.as_bytes(), target.as_bytes()),
        };
        entry.mode = item.meta.mode & 0o7777;
        entry.mtime = item.meta.mtime;
        entries.push(entry);
    }
    let dir = scratch.path().join("context");
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    unpack(&entries, &dir).map_err(|e| damaged(&format!("cannot be unpacked: {e:#}")))?;
    set_meta(&dir, index.root)?;
    Ok(Context::unpacked(scratch, dir, dockerfile_path))
}

/// Writes `entries` into `dir` as a tar stream through the checked
/// extraction.
fn unpack(entries: &[Entry], dir: &Path) -> anyhow::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    let options = hoist_oci::layer::ExtractOptions {
        chown: false,
        overlay_whiteouts: false,
        user_xattrs: false,
        oci_whiteouts: true,
    };
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || {
            // Modification times are kept as the index has them.
            let options = TarOptions {
                source_date_epoch: u64::MAX,
            };
            write_tar(entries, options, writer).map(drop)
        });
        let extracted = hoist_oci::layer::extract(reader, dir, &options);
        let written = writing.join().expect("the tar writer does not panic");
        extracted?;
        written?;
        Ok(())
    })
}

fn set_meta(dir: &Path, meta: Meta) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode))?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(meta.mtime);
    std::fs::File::open(dir)?.set_modified(time)?;
    Ok(())
}
