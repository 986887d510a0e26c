//! Layer snapshots: each layer blob extracted once, with full metadata,
//! into `snapshots/<diffID>/rootfs` in the store, as an overlay lower
//! directory (whiteouts kept as overlayfs's, see
//! [`hoist_oci::layer::ExtractOptions::overlay_whiteouts`]).
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
use hoist_oci::digest::{Digest, DigestWriter};
use hoist_oci::layer::tar::{Content, Entry, EntryKind, TarOptions, write_tar};
use hoist_oci::layer::{ExtractOptions, Links, extract_with};
use hoist_store::{Snapshot, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The snapshot of layer `diff_id` this process would use, if it is there.
pub fn existing(store: &Store, diff_id: &Digest) -> Option<PathBuf> {
    let (snapshot, name) = location(store, diff_id, super::copy_mode());
    let rootfs = snapshot.rootfs(&name);
    rootfs.is_dir().then_some(rootfs)
}

/// Whether [`extract_mirrored`] would make the snapshot of `diff_id`: not
/// in copy mode, and not there yet.
pub fn mirrorable(store: &Store, diff_id: &Digest) -> bool {
    !super::copy_mode() && existing(store, diff_id).is_none()
}

/// The snapshot of layer `blob` (diffID `diff_id`), extracted if missing:
/// with overlay whiteouts, or with OCI whiteout files for RUN's copy mode
/// (the mode this process is in, or falls into when the file system
/// cannot hold overlay whiteouts).
pub fn ensure(store: &Store, blob: &Digest, diff_id: &Digest) -> Result<PathBuf, RunError> {
    if !super::copy_mode() {
        match extract_as(store, diff_id, false, Links::default(), || {
            open(store, blob)
        }) {
            Err(RunError::Extract { source, .. })
                if super::forced_rootfs()?.is_none() && overlay_format_unusable(&source) =>
            {
                super::overlay_unusable_here();
            }
            other => return other,
        }
    }
    extract_as(store, diff_id, true, Links::default(), || open(store, blob))
}

fn open(store: &Store, blob: &Digest) -> Result<std::fs::File, RunError> {
    store.open_blob(blob).map_err(|e| RunError::Io {
        path: store.blob_path(blob),
        source: std::io::Error::other(e),
    })
}

/// Extracts the snapshot of layer `diff_id` from `input` (its tar, gzip or
/// plain; as [`ensure`] would, with overlay whiteouts) and hard-links each
/// of its regular files into `mirror` at its path in the layer, under plain
/// directories: the build engine's file contents for the layer's index,
/// made by the same extraction. Whether it did: not where the snapshot exists already, in
/// copy mode, or where the extraction fails (the caller then extracts its
/// contents itself, and a RUN step that needs the snapshot meets the
/// failure again through [`ensure`]).
pub fn extract_mirrored(
    store: &Store,
    input: impl std::io::Read,
    diff_id: &Digest,
    mirror: &Path,
) -> bool {
    if super::copy_mode() {
        return false;
    }
    let (snapshot, name) = location(store, diff_id, false);
    if snapshot.rootfs(&name).is_dir() {
        return false;
    }
    let links = Links {
        sources: None,
        mirror: Some(mirror),
    };
    extract_as(store, diff_id, false, links, || Ok(input)).is_ok()
}

/// Makes the snapshot of a layer a RUN step just made, from the entries it
/// is written from (in order, with the tar options of its blob), without
/// the blob: the tar is written into the extraction, whose regular files
/// are hard-linked from where the entries have their bytes (the step's
/// upper directory, which the caller gives up: the linked files' metadata
/// changes). Nothing is compressed or decompressed and no file's bytes are
/// copied. The snapshot is placed under the digest of the tar it was
/// extracted from, which is returned with the tar's size: the layer's
/// diffID, as the blob written from the same entries must have it. `None`
/// in copy mode or where the extraction fails (the layer's snapshot is then
/// left to [`ensure`]).
pub fn adopt(store: &Store, entries: &[Entry], tar: TarOptions) -> Option<(Digest, u64)> {
    if super::copy_mode() {
        return None;
    }
    // The diffID is known only at the end: the extraction is made beside
    // the snapshots and renamed into place (`prune` removes one a killed
    // build left, as any `snapshots/` name no layer has).
    let temp = store.snapshot_partial("adopt");
    std::fs::create_dir_all(&temp).ok()?;
    let sources: HashMap<Vec<u8>, PathBuf> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File {
                content: Content::Path(path),
                ..
            } => Some((e.path.clone(), path.clone())),
            _ => None,
        })
        .collect();
    let options = extract_options(false);
    let made = std::thread::scope(|scope| {
        // In 1 MiB chunks: the extraction only skips the files' bytes.
        let (writer, mut reader) = hoist_oci::chunks::one_reader();
        let written = scope.spawn(move || {
            let (digest, size, writer) = write_tar(entries, tar, DigestWriter::new(writer))
                .map_err(std::io::Error::other)?
                .finish();
            writer.finish().map(|()| (digest, size))
        });
        // Extraction reads to the end, so the writer finishes. After a
        // failure the reader is dropped instead, and a writer still
        // writing fails.
        let links = Links {
            sources: Some(&sources),
            mirror: None,
        };
        let extracted = extract_with(&mut reader, &temp, &options, links).is_ok();
        drop(reader);
        let tar = written.join().ok().and_then(Result::ok);
        tar.filter(|_| extracted)
    });
    if let Some((diff_id, _)) = made {
        let (snapshot, name) = location(store, &diff_id, false);
        let rootfs = snapshot.rootfs(&name);
        let placed = std::fs::create_dir_all(snapshot.dir()).is_ok()
            && (std::fs::rename(&temp, &rootfs).is_ok() || rootfs.is_dir());
        if placed {
            // Another build may have placed the same snapshot first.
            let _ = std::fs::remove_dir_all(&temp);
            return made;
        }
    }
    let _ = std::fs::remove_dir_all(&temp);
    None
}

/// Whether extraction failed making an overlay whiteout (a 0:0 device or
/// an `overlay.opaque` attribute) that this file system refuses.
fn overlay_format_unusable(error: &hoist_oci::layer::ExtractError) -> bool {
    matches!(
        error,
        hoist_oci::layer::ExtractError::Io { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP)
            )
    )
}

/// The snapshot directory of layer `diff_id`, and the name of the
/// rootfs this process uses there (its id mapping's; `-oci` for copy
/// mode's).
fn location(store: &Store, diff_id: &Digest, oci_whiteouts: bool) -> (Snapshot, String) {
    let mut name = super::userns::snapshot_name();
    if oci_whiteouts {
        name.push_str("-oci");
    }
    (store.snapshot(diff_id), name)
}

/// How this process extracts a snapshot (see the module's documentation).
fn extract_options(oci_whiteouts: bool) -> ExtractOptions {
    let namespace = super::userns::current();
    ExtractOptions {
        chown: namespace != super::userns::Namespace::Single,
        overlay_whiteouts: !oci_whiteouts,
        user_xattrs: namespace.is_user_namespace(),
        oci_whiteouts,
    }
}

/// Extracts layer `diff_id` from what `input` opens (a tar, plain or
/// compressed),
/// unless its snapshot is there.
fn extract_as<R: std::io::Read>(
    store: &Store,
    diff_id: &Digest,
    oci_whiteouts: bool,
    links: Links<'_>,
    input: impl FnOnce() -> Result<R, RunError>,
) -> Result<PathBuf, RunError> {
    let (snapshot, name) = location(store, diff_id, oci_whiteouts);
    let rootfs = snapshot.rootfs(&name);
    if rootfs.is_dir() {
        return Ok(rootfs);
    }
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| RunError::Io { path, source }
    };
    let temp = snapshot.partial(&name);
    std::fs::create_dir_all(&temp).map_err(io(&temp))?;
    let input = match input() {
        Ok(input) => input,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(e);
        }
    };
    let options = extract_options(oci_whiteouts);
    if let Err(source) = extract_with(input, &temp, &options, links) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(RunError::Extract {
            digest: diff_id.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    /// The extended attributes of `path` (not following a symlink).
    fn xattrs_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let mut names = vec![0u8; 4096];
        // SAFETY: `names` has room for its length.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        assert!(n >= 0, "llistxattr {}", path.display());
        let mut out = Vec::new();
        for name in names[..n as usize]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            let c_name = std::ffi::CString::new(name).unwrap();
            let mut value = vec![0u8; 4096];
            // SAFETY: `value` has room for its length.
            let len = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    c_name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            assert!(len >= 0);
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
        out.sort();
        out
    }

    /// Everything extraction decides about each path under `root`.
    fn describe(root: &Path) -> Vec<String> {
        walkdir::WalkDir::new(root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                let what = if m.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
                } else if m.is_file() {
                    let data = std::fs::read(e.path()).unwrap();
                    format!("{} nlink {}", Digest::of(&data), m.nlink())
                } else {
                    format!("rdev {}", m.rdev())
                };
                // A whiteout's time is when it was made, in either case.
                let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
                format!(
                    "{} mode {:o} owner {}:{} mtime {} {what} xattrs {:?}",
                    e.path().strip_prefix(root).unwrap().display(),
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if whiteout { 0 } else { m.mtime() },
                    xattrs_of(e.path()),
                )
            })
            .collect()
    }

    #[test]
    fn a_snapshot_adopted_from_the_upper_directory_is_the_extracted_layer() {
        let (dir, store) = hoist_store::testing::root_store("chown, mknod");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("a")).unwrap();
        std::fs::write(upper.join("a/f"), "hello").unwrap();
        std::fs::write(upper.join("a/big"), vec![7u8; 300_000]).unwrap();
        // An attribute the layer does not record (as overlayfs leaves its
        // own on copied-up files) must not reach the snapshot.
        let c = std::ffi::CString::new(upper.join("a/f").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C strings and a 1-byte value.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"user.stale".as_ptr(),
                b"x".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0);
        let inode = std::fs::metadata(upper.join("a/f")).unwrap().ino();
        let mut entries = vec![
            Entry::dir(b"a".to_vec()).with_owner(1, 2).with_mtime(100),
            Entry::file_from_path(b"a/f".to_vec(), upper.join("a/f"), 5)
                .with_mode(0o4750)
                .with_owner(1001, 1002)
                .with_mtime(200)
                .with_xattr(b"user.kept".to_vec(), b"v".to_vec()),
            Entry::file_from_path(b"a/big".to_vec(), upper.join("a/big"), 300_000).with_mtime(5),
            Entry::hardlink(b"a/g".to_vec(), b"a/f".to_vec()),
            Entry::dir(b"bin".to_vec()).with_mode(0o700),
            Entry::symlink(b"bin/s".to_vec(), b"../a/f".to_vec()).with_owner(3, 4),
            Entry::whiteout(b"gone"),
            Entry::dir(b"d".to_vec()),
            Entry::opaque(b"d"),
            Entry::fifo(b"d/p".to_vec()),
        ];
        hoist_oci::layer::tar::sort_entries(&mut entries);
        let tar = TarOptions {
            source_date_epoch: 150,
        };
        let bytes = write_tar(&entries, tar, Vec::new()).unwrap();
        let diff_id = Digest::of(&bytes);

        // A file whose bytes are missing: no snapshot, nothing left.
        let mut broken = entries.clone();
        broken.push(Entry::file_from_path(
            b"z".to_vec(),
            dir.path().join("missing"),
            1,
        ));
        assert_eq!(adopt(&store, &broken, tar), None);
        let snapshots = || -> Vec<String> {
            std::fs::read_dir(store.root().join("snapshots"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(snapshots(), Vec::<String>::new(), "nothing left behind");

        assert_eq!(
            adopt(&store, &entries, tar),
            Some((diff_id, bytes.len() as u64))
        );
        // Adopted again (another build, the same output): the snapshot in
        // place is kept, and the second extraction removed.
        assert_eq!(
            adopt(&store, &entries, tar),
            Some((diff_id, bytes.len() as u64))
        );
        assert_eq!(snapshots(), [diff_id.hex()]);
        let adopted = store
            .root()
            .join("snapshots")
            .join(diff_id.hex())
            .join(super::super::userns::snapshot_name());
        assert_eq!(
            std::fs::metadata(adopted.join("a/f")).unwrap().ino(),
            inode,
            "the file is linked, not copied"
        );
        // The build removes the upper directory with its scratch space.
        std::fs::remove_dir_all(&upper).unwrap();
        let extracted = dir.path().join("extracted");
        std::fs::create_dir(&extracted).unwrap();
        let options = ExtractOptions {
            chown: true,
            overlay_whiteouts: true,
            user_xattrs: false,
            oci_whiteouts: false,
        };
        hoist_oci::layer::extract(&bytes[..], &extracted, &options).unwrap();
        assert_eq!(describe(&adopted), describe(&extracted));
    }

    #[test]
    fn a_mirrored_extraction_links_every_file_under_plain_directories() {
        let (dir, store) = hoist_store::testing::root_store("chown, mknod");
        // `a/f`, then `a` replaced by a symlink out of the root, then a
        // file listed twice: the mirror keeps plain directories and the
        // last bytes of each path.
        let bytes = hoist_oci::testing::raw_tar(&[
            ("a/", ::tar::EntryType::Directory, "", b""),
            ("a/f", ::tar::EntryType::Regular, "", b"first"),
            ("a", ::tar::EntryType::Symlink, "/etc", b""),
            ("twice", ::tar::EntryType::Regular, "", b"old"),
            ("twice", ::tar::EntryType::Regular, "", b"newer"),
        ]);
        let diff_id = Digest::of(&bytes);
        let mirror = dir.path().join("mirror");
        std::fs::create_dir(&mirror).unwrap();
        assert!(extract_mirrored(&store, &bytes[..], &diff_id, &mirror));
        let rootfs = store
            .root()
            .join("snapshots")
            .join(diff_id.hex())
            .join(super::super::userns::snapshot_name());
        assert!(
            std::fs::symlink_metadata(rootfs.join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::symlink_metadata(mirror.join("a"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(std::fs::read(mirror.join("a/f")).unwrap(), b"first");
        assert_eq!(std::fs::read(mirror.join("twice")).unwrap(), b"newer");
        assert_eq!(
            std::fs::metadata(mirror.join("twice")).unwrap().ino(),
            std::fs::metadata(rootfs.join("twice")).unwrap().ino(),
            "linked from the snapshot, not copied"
        );
        // The snapshot exists now: nothing more to mirror from it.
        assert!(!extract_mirrored(
            &store,
            &bytes[..],
            &diff_id,
            &dir.path().join("other")
        ));
    }
}
