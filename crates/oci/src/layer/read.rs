//! Reading a tar stream into entries: headers into [`Entry`] values with
//! their paths cleaned, file contents streamed to disk, never held in
//! memory. Layers read this way become indexes (the files an image
//! holds); ADD reads the archives it unpacks the same way.

use super::tar::{Content, Entry, EntryKind};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where [`read_entries`] puts file contents.
#[derive(Debug, Clone, Copy)]
pub enum Contents<'a> {
    /// At each file's sanitised path under the directory (a layer
    /// snapshot, which later reads of the same layer reuse).
    AtPath(&'a Path),
    /// Already there from an earlier read: only the paths are computed.
    Known(&'a Path),
    /// In the directory, one file per entry named by its position in the
    /// tar: an arbitrary archive may replace a file by a directory or list
    /// a path twice, which paths on disk could not hold.
    Numbered(&'a Path),
}

/// What [`read_entries`] does with a path that would leave the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    /// Leave the entry out (a layer: containerd's applier skips them too).
    Skip,
    /// Fail with [`io::ErrorKind::InvalidData`] (an archive ADD unpacks:
    /// Docker refuses it as a breakout).
    Fail,
}

/// What the files of a tar stream hold, as Docker sizes a layer (`docker
/// history`): regular files' bytes and symlinks' targets; directories,
/// hard links (their file counted once) and devices count nothing.
pub fn content_size(reader: impl Read) -> io::Result<u64> {
    let mut archive = tar::Archive::new(reader);
    let mut total = 0u64;
    for entry in archive.entries()? {
        let entry = entry?;
        let header = entry.header();
        total += match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => header.size()?,
            tar::EntryType::Symlink => entry.link_name_bytes().map_or(0, |t| t.len() as u64),
            _ => 0,
        };
    }
    Ok(total)
}

/// Reads a tar stream: entries from the headers, in the tar's order (a
/// path listed twice appears twice), paths sanitised; file contents
/// streamed to disk as `contents` says, never held in memory. The stream
/// is read to its end, past the end-of-archive blocks: only there may it
/// say that it was whole (a layer still downloading).
pub fn read_entries(
    mut reader: impl Read,
    contents: Contents<'_>,
    escapes: Escapes,
) -> io::Result<Vec<Entry>> {
    let mut archive = tar::Archive::new(&mut reader);
    let mut entries = Vec::new();
    let escape = |raw: &[u8]| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is outside the directory the archive unpacks into",
                String::from_utf8_lossy(raw)
            ),
        )
    };
    for (position, item) in archive.entries()?.enumerate() {
        let mut item = item?;
        let raw = item.path_bytes().into_owned();
        let path = match sanitise(&raw) {
            Sanitised::Path(p) => p,
            Sanitised::Root => continue,
            Sanitised::Escape if escapes == Escapes::Skip => continue,
            Sanitised::Escape => return Err(escape(&raw)),
        };
        let header = item.header();
        let mode = header.mode()? & 0o7777;
        let uid = header.uid()?;
        let gid = header.gid()?;
        let mtime = header.mtime()?;
        let link = item.link_name_bytes().map(|l| l.into_owned());
        // Go's tar reader (and so Docker's) reads the old `\0` type flag
        // with a name ending in `/` as a directory.
        let v7_dir = header.as_bytes()[156] == 0 && raw.ends_with(b"/");
        let kind = match header.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular if v7_dir => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let (local, write) = match contents {
                    Contents::AtPath(dir) => (snapshot_path(dir, &path), true),
                    Contents::Known(dir) => (snapshot_path(dir, &path), false),
                    Contents::Numbered(dir) => (dir.join(position.to_string()), true),
                };
                if write {
                    if let Some(parent) = local.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    let mut out = std::fs::File::create(&local)?;
                    io::copy(&mut item, &mut out)?;
                }
                EntryKind::File {
                    size: item.size(),
                    content: Content::Path(local),
                }
            }
            tar::EntryType::Symlink => EntryKind::Symlink {
                target: link.unwrap_or_default(),
            },
            tar::EntryType::Link => {
                let raw_target = link.unwrap_or_default();
                match sanitise(&raw_target) {
                    Sanitised::Path(target) => EntryKind::Hardlink { target },
                    _ if escapes == Escapes::Skip => continue,
                    _ => return Err(escape(&raw_target)),
                }
            }
            tar::EntryType::Char => EntryKind::CharDevice {
                major: header.device_major()?.unwrap_or(0),
                minor: header.device_minor()?.unwrap_or(0),
            },
            tar::EntryType::Block => EntryKind::BlockDevice {
                major: header.device_major()?.unwrap_or(0),
                minor: header.device_minor()?.unwrap_or(0),
            },
            tar::EntryType::Fifo => EntryKind::Fifo,
            _ => continue,
        };
        let mut xattrs = std::collections::BTreeMap::new();
        if let Some(exts) = item.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.insert(name.to_vec(), ext.value_bytes().to_vec());
                }
            }
        }
        entries.push(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        });
    }
    io::copy(archive.into_inner(), &mut io::sink())?;
    Ok(entries)
}

/// A tar path after cleaning.
#[derive(Debug, PartialEq, Eq)]
enum Sanitised {
    /// Relative, without `.`, `..` or empty components.
    Path(Vec<u8>),
    /// The root itself (`./`, `/`).
    Root,
    /// A `..` that would climb above the root.
    Escape,
}

/// Cleans a tar path lexically, as Go's `path.Clean` does after the
/// leading `/` is dropped: absolute names land under the root, `a/../b` is
/// `b`, and a `..` left at the front escapes.
fn sanitise(raw: &[u8]) -> Sanitised {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Sanitised::Escape;
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        Sanitised::Root
    } else {
        Sanitised::Path(parts.join(&b'/'))
    }
}

/// Where a file's content lives in a snapshot. Directories in the
/// snapshot are plain directories (no symlink is ever created there), so
/// joining sanitised components can only land inside `content`.
fn snapshot_path(content: &Path, path: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    content.join(std::ffi::OsStr::from_bytes(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitise_refuses_escapes() {
        assert_eq!(sanitise(b"./a/b/"), Sanitised::Path(b"a/b".to_vec()));
        assert_eq!(
            sanitise(b"/etc/passwd"),
            Sanitised::Path(b"etc/passwd".to_vec())
        );
        assert_eq!(sanitise(b"a/../b"), Sanitised::Path(b"b".to_vec()));
        assert_eq!(sanitise(b"a/../../x"), Sanitised::Escape);
        assert_eq!(sanitise(b"../x"), Sanitised::Escape);
        assert_eq!(sanitise(b"./"), Sanitised::Root);
    }

    #[test]
    fn layer_tar_round_trips_through_the_index() {
        let entries = vec![
            Entry::dir("etc").with_mode(0o755),
            Entry::file("etc/passwd", "root:x:0:0::/:/bin/sh\n").with_owner(0, 0),
            Entry::symlink("bin", "usr/bin"),
            Entry::file("s", "x").with_mode(0o4755).with_owner(10, 20),
            Entry::hardlink("z", "s"),
        ];
        let mut sorted = entries.clone();
        super::super::tar::sort_entries(&mut sorted);
        let tar = super::super::tar::write_tar(&sorted, Default::default(), Vec::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let read = read_entries(&tar[..], Contents::AtPath(dir.path()), Escapes::Skip).unwrap();
        let get = |path: &[u8]| read.iter().find(|e| e.path == path).unwrap();
        let s = get(b"s");
        assert_eq!((s.mode, s.uid, s.gid), (0o4755, 10, 20));
        assert_eq!(
            get(b"z").kind,
            EntryKind::Hardlink {
                target: b"s".to_vec()
            }
        );
        assert_eq!(
            std::fs::read(dir.path().join("etc/passwd")).unwrap(),
            b"root:x:0:0::/:/bin/sh\n"
        );
    }
}
