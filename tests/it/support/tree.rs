//! The canonical description of an unpacked root file system, the format in which
//! the differential tests compare hoist's images with BuildKit's and buildah's.
//!
//! One entry per path below the root (the root itself is left out: its mode is the
//! unpacker's, not the image's), sorted by path bytes. Each entry has `path`
//! (absolute, `/bin/sh`), `type` (`dir`, `file`, `symlink`, `char`, `block`,
//! `fifo`, `socket`), `mode` (all 12 permission bits, four octal digits), `uid`,
//! `gid`, and by type: `size` and `sha256` for files, `target` for symlinks,
//! `rdev` (`major:minor`) for devices. Files with more than one link carry
//! `hardlink`, the smallest path of their group, so the grouping is compared and
//! inode numbers are not. Mtimes are left out on purpose: hoist clamps them
//! (DESIGN.md, "Determinism") and the oracles do not.
//!
//! This file is the one implementation: the integration tests include it as a
//! module and `examples/tree.rs` (run by scripts/record-oracle.sh) includes it by
//! path. It must never follow a symlink out of the root.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The canonical tree of `rootfs`, one JSON object per path, sorted by path.
pub fn tree_of_image(rootfs: &Path) -> io::Result<Vec<Value>> {
    let mut entries: Vec<(Vec<u8>, Map<String, Value>)> = Vec::new();
    // (dev, ino) -> paths, for the hardlink groups.
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();

    let walk = walkdir::WalkDir::new(rootfs)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for item in walk {
        let item = item.map_err(io::Error::other)?;
        let rel = item
            .path()
            .strip_prefix(rootfs)
            .expect("walk stays under root");
        let path = format!("/{}", String::from_utf8_lossy(rel.as_os_str().as_bytes()));
        let meta = item.path().symlink_metadata()?;
        let ft = meta.file_type();
        let mut e = Map::new();
        e.insert("path".into(), json!(path));
        e.insert(
            "mode".into(),
            json!(format!("{:04o}", meta.mode() & 0o7777)),
        );
        e.insert("uid".into(), json!(meta.uid()));
        e.insert("gid".into(), json!(meta.gid()));
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            e.insert("size".into(), json!(meta.len()));
            e.insert("sha256".into(), json!(sha256_file(item.path())?));
            if meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(path.clone());
            }
            "file"
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path())?;
            e.insert(
                "target".into(),
                json!(String::from_utf8_lossy(target.as_os_str().as_bytes())),
            );
            "symlink"
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            e.insert("rdev".into(), json!(format!("{major}:{minor}")));
            if ft.is_char_device() { "char" } else { "block" }
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        e.insert("type".into(), json!(kind));
        entries.push((path.into_bytes(), e));
    }

    // Paths are sorted per directory by the walk; the whole list is sorted by
    // bytes so `/a/b` and `/a.b` order the same way whatever the walk did.
    let mut leader: BTreeMap<String, String> = BTreeMap::new();
    for group in inodes.values().filter(|g| g.len() > 1) {
        let first = group.iter().min().expect("non-empty group").clone();
        for p in group {
            leader.insert(p.clone(), first.clone());
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries
        .into_iter()
        .map(|(path, mut e)| {
            if let Some(first) = leader.get(&*String::from_utf8_lossy(&path)) {
                e.insert("hardlink".into(), json!(first));
            }
            Value::Object(e)
        })
        .collect())
}

/// The tree as text: a JSON array with one compact, key-sorted entry per line, the
/// layout of the `tree` field in the recorded fixtures (small diffs in review).
pub fn tree_to_lines(tree: &[Value]) -> String {
    let mut out = String::from("[\n");
    for (i, e) in tree.iter().enumerate() {
        out.push_str(&serde_json::to_string(e).expect("json values serialise"));
        out.push_str(if i + 1 < tree.len() { ",\n" } else { "\n" });
    }
    out.push(']');
    out
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
