//! An overlay upper directory -> the entries of a layer.
//!
//! overlayfs records a deletion as a 0:0 character device and a directory
//! that replaced a lower one as `trusted.overlay.opaque=y`
//! (Documentation/filesystems/overlayfs.rst), or `user.overlay.opaque` for
//! an overlay mounted with `userxattr` in a user namespace (rootless; its
//! whiteouts are 0:0 devices too); OCI layers say the same with
//! `.wh.<name>` and `.wh..wh..opq` entries (image-spec layer.md). Ownership,
//! modes and other extended attributes come from the upper directory as
//! the command left them. Contents stay in the upper directory
//! ([`Content::Path`]), which must outlive the layer's writing.

use hoist_oci::layer::tar::{Entry, EntryKind};
use hoist_oci::layer::walk::{WalkError, WalkOptions, walk};
use std::path::Path;

/// Where overlayfs keeps its own attributes: as root, or in a user
/// namespace (`userxattr`).
const OVERLAY_XATTRS: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];
const OPAQUE_XATTRS: [&[u8]; 2] = [b"trusted.overlay.opaque", b"user.overlay.opaque"];

/// The changes in `upper` as layer entries, sorted, leaving out the mount
/// points listed in `mount_points` (paths without a leading `/`) that the
/// sandbox created and the command left empty: empty files, and
/// directories with nothing of the layer below them. `userxattr`: the
/// overlay was mounted in a user namespace, and `user.overlay.*`
/// attributes are its own (as root they are the command's, kept).
pub fn diff(upper: &Path, mount_points: &[&str], userxattr: bool) -> Result<Vec<Entry>, WalkError> {
    let n = if userxattr { 2 } else { 1 };
    let (ours, opaque_keys) = (&OVERLAY_XATTRS[..n], &OPAQUE_XATTRS[..n]);
    let options = WalkOptions {
        xattrs: true,
        ..WalkOptions::default()
    };
    let mut out = Vec::new();
    for mut entry in walk(upper, &options)? {
        if entry.kind == (EntryKind::CharDevice { major: 0, minor: 0 }) {
            out.push(Entry::whiteout(&entry.path));
            continue;
        }
        let opaque = entry.kind == EntryKind::Dir
            && opaque_keys
                .iter()
                .any(|k| entry.xattrs.get(*k).map(Vec::as_slice) == Some(b"y"));
        entry
            .xattrs
            .retain(|k, _| !ours.iter().any(|o| k.starts_with(o)));
        if opaque {
            out.push(Entry::opaque(&entry.path));
        }
        out.push(entry);
    }
    leave_out_mount_points(&mut out, mount_points);
    hoist_oci::layer::tar::sort_entries(&mut out);
    Ok(out)
}

/// Removes from `out` the mount points the sandbox created (see
/// [`diff`]): empty files, and directories nothing of the layer is under.
pub fn leave_out_mount_points(out: &mut Vec<Entry>, mount_points: &[&str]) {
    out.retain(|e| {
        !(mount_points.iter().any(|m| m.as_bytes() == e.path)
            && matches!(e.kind, EntryKind::File { size: 0, .. }))
    });
    // Deepest first, so a stub's stub parent is empty once it is gone.
    let mut stubs: Vec<&str> = mount_points.to_vec();
    stubs.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for stub in stubs {
        let below = format!("{stub}/");
        let used = out.iter().any(|e| e.path.starts_with(below.as_bytes()));
        if !used {
            out.retain(|e| !(e.path == stub.as_bytes() && e.kind == EntryKind::Dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    #[test]
    fn overlay_markers_become_oci_whiteouts() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: whiteout devices need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        std::fs::create_dir_all(up.join("etc")).unwrap();
        std::fs::create_dir_all(up.join("data")).unwrap();
        std::fs::write(up.join("data/new"), b"new").unwrap();
        std::fs::write(up.join("etc/hosts"), b"").unwrap();
        std::fs::write(up.join("etc/resolv.conf"), b"changed").unwrap();
        std::fs::create_dir_all(up.join("cache/a")).unwrap();
        std::fs::create_dir_all(up.join("used/a")).unwrap();
        std::fs::write(up.join("used/b"), b"b").unwrap();
        let gone = CString::new(up.join("etc/group").as_os_str().as_bytes()).unwrap();
        let data = CString::new(up.join("data").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated paths and a one-byte value.
        unsafe {
            assert_eq!(libc::mknod(gone.as_ptr(), libc::S_IFCHR, 0), 0);
            assert_eq!(
                libc::lsetxattr(
                    data.as_ptr(),
                    c"trusted.overlay.opaque".as_ptr(),
                    b"y".as_ptr().cast(),
                    1,
                    0
                ),
                0
            );
        }
        let stubs = [
            "etc/hosts",
            "etc/resolv.conf",
            "cache",
            "cache/a",
            "used",
            "used/a",
        ];
        let entries = diff(up, &stubs, false).unwrap();
        assert_eq!(
            names(&entries),
            [
                "data",
                "data/.wh..wh..opq",
                "data/new",
                "etc",
                "etc/.wh.group",
                "etc/resolv.conf",
                "used",
                "used/b"
            ]
        );
        assert!(entries.iter().all(|e| e.xattrs.is_empty()));
    }
}
