//! Directory walker: a tree on disk -> sorted [`Entry`] values for the
//! tar writer, without reading any file's content.
//!
//! [`walk`] lists everything under a root (not the root itself), records
//! what lands in a layer (kind, mode, owner, mtime, symlink target, xattrs
//! when asked) and turns files that share an inode, by (dev, ino), into
//! hardlinks to the first of them in path order, so the result depends on
//! the tree and never on the order the disk returns it. Files become
//! [`Content::Path`], opened only when the tar writer reaches them; the
//! walker never follows a symlink and never holds file contents.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::tar::{Content, Entry, EntryKind, sort_entries};

/// Why a tree could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read `{path}` while listing files for a layer")]
    Io { path: PathBuf, source: io::Error },
}

/// How [`walk`] turns a directory tree into entries.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Prepended (with a `/`) to every path; empty puts entries at the root.
    pub prefix: Vec<u8>,
    /// Owner for every entry instead of the one on disk (COPY --chown).
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    /// Permission bits for every file and directory instead of the ones on
    /// disk (COPY --chmod); symlinks keep 0777.
    pub mode: Option<u32>,
    /// Record extended attributes (all but `security.selinux`, which is the
    /// host's labelling, not the file's content).
    pub xattrs: bool,
}

/// Lists everything under `root` (not `root` itself) as sorted entries:
/// contents are not read, files become [`Content::Path`]. Files sharing
/// an inode become hardlinks to the first of them in path order; sockets
/// are skipped, as tar does. Symlinks are recorded, never followed.
pub fn walk(root: &Path, options: &WalkOptions) -> Result<Vec<Entry>, WalkError> {
    walk_filtered(root, options, |_, _| Visit::Keep)
}

/// What a filtered walk does with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Keep,
    /// Leave the directory out but look inside it: it is kept after all
    /// (as a parent) if anything below it is kept.
    Descend,
    /// Leave it and everything below it out.
    Prune,
}

/// [`walk`], asking `visit` about every path (relative to `root`, and
/// whether it is a directory) before listing it.
pub fn walk_filtered(
    root: &Path,
    options: &WalkOptions,
    visit: impl FnMut(&Path, bool) -> Visit,
) -> Result<Vec<Entry>, WalkError> {
    walk_observed(root, options, visit, |_, _| {})
}

/// [`walk_filtered`], also handing `seen` the metadata of every regular
/// file it lists (its full path), so a caller can use the walk's `lstat`
/// instead of making its own.
pub fn walk_observed(
    root: &Path,
    options: &WalkOptions,
    mut visit: impl FnMut(&Path, bool) -> Visit,
    mut seen: impl FnMut(&Path, &std::fs::Metadata),
) -> Result<Vec<Entry>, WalkError> {
    let mut entries = Vec::new();
    let mut inodes: Vec<(u64, u64, usize)> = Vec::new();
    let decisions = std::cell::RefCell::new(HashMap::new());
    let mut descended: HashMap<Vec<u8>, Entry> = HashMap::new();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let relative = e.path().strip_prefix(root).unwrap_or(e.path());
            let decision = visit(relative, e.file_type().is_dir());
            decisions
                .borrow_mut()
                .insert(e.path().to_path_buf(), decision);
            decision != Visit::Prune
        });
    for item in walker {
        let item = item.map_err(|e| WalkError::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        let decision = decisions
            .borrow_mut()
            .remove(item.path())
            .unwrap_or(Visit::Keep);
        let walk_error = |source| WalkError::Io {
            path: item.path().to_path_buf(),
            source,
        };
        let meta = item.metadata().map_err(|e| walk_error(e.into()))?;
        if meta.file_type().is_file() && decision == Visit::Keep {
            seen(item.path(), &meta);
        }
        let relative = item.path().strip_prefix(root).unwrap_or(item.path());
        let mut path = options.prefix.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(relative.as_os_str().as_bytes());

        let file_type = meta.file_type();
        let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            if meta.nlink() > 1 && decision == Visit::Keep {
                inodes.push((meta.dev(), meta.ino(), entries.len()));
            }
            EntryKind::File {
                size: meta.len(),
                content: Content::Path(item.path().to_path_buf()),
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(item.path()).map_err(walk_error)?;
            EntryKind::Symlink {
                target: target.into_os_string().into_vec(),
            }
        } else if file_type.is_char_device() {
            EntryKind::CharDevice { major, minor }
        } else if file_type.is_block_device() {
            EntryKind::BlockDevice { major, minor }
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else {
            continue;
        };
        let entry = Entry {
            path,
            kind,
            mode: match options.mode {
                Some(mode) if !file_type.is_symlink() => mode & 0o7777,
                _ => meta.mode() & 0o7777,
            },
            uid: options.uid.unwrap_or(u64::from(meta.uid())),
            gid: options.gid.unwrap_or(u64::from(meta.gid())),
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            xattrs: match options.xattrs {
                true => read_xattrs(item.path()).map_err(walk_error)?,
                false => BTreeMap::new(),
            },
        };
        if decision == Visit::Descend {
            descended.insert(entry.path.clone(), entry);
            continue;
        }
        entries.push(entry);
    }
    // Directories left out but holding kept paths come back as parents.
    if !descended.is_empty() {
        let mut parents = Vec::new();
        for entry in &entries {
            let mut path = entry.path.as_slice();
            while let Some(cut) = path.iter().rposition(|&b| b == b'/') {
                path = &path[..cut];
                if let Some(parent) = descended.remove(path) {
                    parents.push(parent);
                }
            }
        }
        entries.extend(parents);
    }

    // Hardlinks: the first path (in byte order) of each inode keeps the
    // content, the others point to it; the walk order of the disk does not
    // matter.
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    inodes.sort_by(|a, b| entries[a.2].path.cmp(&entries[b.2].path));
    for (dev, ino, index) in inodes {
        let entry = &mut entries[index];
        match first.get(&(dev, ino)) {
            Some(target) => {
                entry.kind = EntryKind::Hardlink {
                    target: target.clone(),
                }
            }
            None => {
                first.insert((dev, ino), entry.path.clone());
            }
        }
    }
    sort_entries(&mut entries);
    Ok(entries)
}

/// The extended attributes of `path` itself (symlinks are not followed).
fn read_xattrs(path: &Path) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut out = BTreeMap::new();
    // SAFETY (both calls): c_path and c_name are NUL-terminated and each
    // buffer is passed with its real length.
    let names = sized_read(|buf| unsafe {
        libc::llistxattr(c_path.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    });
    let names = match names {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names.split(|&b| b == 0).filter(|name| !name.is_empty()) {
        if name == b"security.selinux" {
            continue;
        }
        let c_name = CString::new(name).map_err(io::Error::other)?;
        let value = sized_read(|buf| unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        });
        match value {
            Ok(value) => {
                out.insert(name.to_vec(), value);
            }
            // Removed between listing and reading it.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls a size-returning xattr function with a buffer that grows until
/// the answer fits (the attribute can grow between two calls: ERANGE).
fn sized_read(mut call: impl FnMut(&mut [u8]) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = call(&mut buf);
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 24 {
            return Err(error);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;
    use crate::layer::tar::{TarOptions, write_tar};

    #[test]
    fn walk_output_is_independent_of_mtimes_and_location() {
        fn build(root: &Path, mtime: i64) -> Vec<u8> {
            std::fs::create_dir_all(root.join("d/e")).unwrap();
            std::fs::write(root.join("d/e/f"), b"content").unwrap();
            std::fs::write(root.join("z"), b"zz").unwrap();
            std::fs::hard_link(root.join("z"), root.join("a")).unwrap();
            std::os::unix::fs::symlink("d/e/f", root.join("link")).unwrap();
            for p in ["d/e/f", "z", "d/e", "d"] {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
                filetime_set(&root.join(p), t);
            }
            let note = CString::new(root.join("z").as_os_str().as_bytes()).unwrap();
            // SAFETY: NUL-terminated strings and a value of the given length.
            let rc = unsafe {
                libc::lsetxattr(
                    note.as_ptr(),
                    c"user.note".as_ptr(),
                    b"\xff\0v".as_ptr().cast(),
                    3,
                    0,
                )
            };
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            let options = WalkOptions {
                prefix: b"app".to_vec(),
                uid: Some(0),
                gid: Some(0),
                mode: None,
                xattrs: true,
            };
            let entries = walk(root, &options).unwrap();
            let kinds: Vec<_> = entries
                .iter()
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .collect();
            assert_eq!(
                kinds,
                [
                    "app/a",
                    "app/d",
                    "app/d/e",
                    "app/d/e/f",
                    "app/link",
                    "app/z"
                ]
            );
            assert_eq!(
                entries[5].kind,
                EntryKind::Hardlink {
                    target: b"app/a".to_vec()
                }
            );
            // The xattr belongs to the inode, so both names carry it.
            let note = BTreeMap::from([(b"user.note".to_vec(), b"\xff\0v".to_vec())]);
            assert_eq!((&entries[0].xattrs, &entries[5].xattrs), (&note, &note));
            assert!(entries[1].xattrs.is_empty());
            let chmod = WalkOptions {
                mode: Some(0o2750),
                ..options
            };
            let modes: Vec<u32> = walk(root, &chmod).unwrap().iter().map(|e| e.mode).collect();
            assert_eq!(modes, [0o2750, 0o2750, 0o2750, 0o2750, 0o777, 0o2750]);
            write_tar(&entries, TarOptions::default(), Vec::new()).unwrap()
        }
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        assert_eq!(
            build(one.path(), 1_000),
            build(&two.path().join("x"), 2_000_000)
        );
    }

    fn filetime_set(path: &Path, time: std::time::SystemTime) {
        let file = File::options().read(true).open(path).unwrap();
        file.set_modified(time).unwrap();
    }
}
