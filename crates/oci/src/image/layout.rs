//! Writing images into an OCI image layout directory (image-spec
//! `image-layout.md`): `oci-layout`, `index.json` and `blobs/sha256/`.
//!
//! Blobs stream from the [`BlobSource`] into a temp file beside their final
//! name and are renamed only once their digest and size check, so a crash
//! never leaves a half blob under a real name; `index.json` and
//! `oci-layout` are replaced the same way, after the blobs they name are
//! durable.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Index;
use super::archive::{ArchiveError, ExportImage, Plan, REF_NAME, io_error, layout_header, to_json};
use super::blobs::{BlobSource, open_verified};
use crate::Digest;

/// Writes `images` into the OCI image layout at `dir` (created if missing).
///
/// Blobs already present are kept (their names are their digests); new
/// ones go to a temp file in `blobs/sha256` and are renamed into place only
/// once their digest checks, so a crash never leaves a half blob under a
/// real name. An existing `index.json` keeps its entries, except those
/// whose `org.opencontainers.image.ref.name` one of `images` now takes.
/// Reading and rewriting `index.json` is not atomic across writers:
/// callers that share a layout between processes must hold a lock.
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
        let temp = blobs.join(temp_name(&digest.hex()));
        let result = write_blob_file(&temp, digest, *size, source)
            .and_then(|()| fs::rename(&temp, &path).map_err(|e| io_error(&path, e)));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
    }
    // The renames must be durable before an index names the blobs.
    sync_dir(&blobs)?;

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
    write_file_atomically(dir, "oci-layout", &layout_header())?;
    write_file_atomically(dir, "index.json", &to_json(&index))?;
    sync_dir(dir)
}

/// Makes the renames inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
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

/// A temp file name for `name` no other writer uses: other processes have
/// another pid, other threads of this one another count.
fn temp_name(name: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.{}.{n}.tmp", std::process::id())
}

/// Writes `bytes` to `dir/name` through a temp file and a rename.
fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    let path = dir.join(name);
    let temp = dir.join(temp_name(name));
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
