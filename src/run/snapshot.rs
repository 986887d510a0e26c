//! Layer snapshots: each layer blob extracted once, with full metadata,
//! into `snapshots/<diffID>/rootfs` in the store, as an overlay lower
//! directory (whiteouts kept as overlayfs's, see
//! [`crate::layer::ExtractOptions::overlay_whiteouts`]).
//!
//! A snapshot is extracted into a temporary directory beside it and
//! renamed into place when complete, so a crash or a concurrent build
//! never leaves a half snapshot under the real name: `rootfs` exists only
//! complete. (The `content` directory next to it is the build engine's
//! plain-file copy of the same layer, for COPY; it is not usable here.)
//!
//! In a user namespace ([`super::userns`]) the snapshot is named after the
//! id mapping (`rootfs-userns-<digest>`): its files are owned by the
//! namespace's ids as the host sees them (subordinate ids), and its opaque
//! directories carry `user.overlay.opaque`, which an overlay mounted with
//! `userxattr` reads. Extraction happens inside the namespace, so `chown`
//! gives each file its in-image id mapped through the ranges; with a
//! single-id mapping nothing is chowned (every file is the caller's) and
//! the build engine takes ownership of changed files from the layer
//! below.

use super::RunError;
use crate::layer::digest::Digest;
use crate::layer::{ExtractOptions, extract};
use crate::store::Store;
use std::path::PathBuf;

/// The snapshot of layer `blob` (diffID `diff_id`), extracted if missing:
/// with overlay whiteouts, or with OCI whiteout files for RUN's copy mode
/// (the mode this process is in, or falls into when the file system
/// cannot hold overlay whiteouts).
pub fn ensure(store: &Store, blob: &Digest, diff_id: &Digest) -> Result<PathBuf, RunError> {
    if !super::copy_mode() {
        match extract_as(store, blob, diff_id, false) {
            Err(RunError::Extract { source, .. })
                if super::forced_rootfs()?.is_none() && overlay_format_unusable(&source) =>
            {
                super::overlay_unusable_here();
            }
            other => return other,
        }
    }
    extract_as(store, blob, diff_id, true)
}

/// Whether extraction failed making an overlay whiteout (a 0:0 device or
/// an `overlay.opaque` attribute) that this file system refuses.
fn overlay_format_unusable(error: &crate::layer::ExtractError) -> bool {
    matches!(
        error,
        crate::layer::ExtractError::Io { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP)
            )
    )
}

fn extract_as(
    store: &Store,
    blob: &Digest,
    diff_id: &Digest,
    oci_whiteouts: bool,
) -> Result<PathBuf, RunError> {
    let dir = store.root().join("snapshots").join(diff_id.hex());
    let namespace = super::userns::current();
    let mut name = super::userns::snapshot_name();
    if oci_whiteouts {
        name.push_str("-oci");
    }
    let rootfs = dir.join(&name);
    if rootfs.is_dir() {
        return Ok(rootfs);
    }
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| RunError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let temp = dir.join(format!("{name}.partial-{}", std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(io(&temp))?;
    }
    std::fs::create_dir(&temp).map_err(io(&temp))?;
    let file = store.open_blob(blob).map_err(|e| RunError::Io {
        path: store.blob_path(blob),
        source: std::io::Error::other(e),
    })?;
    let options = ExtractOptions {
        chown: namespace != super::userns::Namespace::Single,
        overlay_whiteouts: !oci_whiteouts,
        user_xattrs: namespace.is_user_namespace(),
        oci_whiteouts,
    };
    if let Err(source) = extract(std::io::BufReader::new(file), &temp, &options) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(RunError::Extract {
            digest: blob.to_string(),
            source,
        });
    }
    if let Err(e) = std::fs::rename(&temp, &rootfs) {
        let _ = std::fs::remove_dir_all(&temp);
        // Another build completed the same snapshot first.
        if !rootfs.is_dir() {
            return Err(io(&rootfs)(e));
        }
    }
    Ok(rootfs)
}
