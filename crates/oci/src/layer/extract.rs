//! Safe layer extraction: a gzip or plain tar layer -> files under a
//! destination directory, with OCI whiteouts applied.
//!
//! [`extract`] reads the stream once, entry by entry, and returns an
//! [`ExtractSummary`]. It must never write, chmod, chown or link anything
//! outside the destination, whatever the archive says: entry names are
//! cleaned (a leading `/` and `.` components are dropped, `..` is refused),
//! and every parent directory is resolved component by component inside
//! the destination, the way a chroot would see it: a symlink met on the way
//! is read and its target resolved from the destination root (absolute
//! targets and `..` stop at the root), never followed by the kernel. The
//! final component is never followed either: the new entry is created with
//! `O_EXCL` (or `mkdir`, `symlink`, `link`, `mknod`, which never follow
//! it), and whatever stood there is removed first when that fails with
//! `EEXIST`. Directories found real are remembered until something at
//! their path or above is removed, so each is looked at once, not once per
//! entry below it. Hardlink targets are resolved
//! the same way and must already exist; `link(2)` links a symlink itself,
//! never what it points to.
//!
//! Whiteouts follow the OCI layer spec (layer.md, "Whiteouts"): `.wh.<name>`
//! removes `<name>` and `.wh..wh..opq` empties its directory, but only of
//! what lower layers put there. Entries from this layer survive whatever
//! the order of the stream, so the extractor remembers the paths this layer
//! wrote (memory grows with the number of entries, not their size).
//!
//! Modes keep setuid, setgid and sticky bits (applied after `chown`, which
//! clears them). Ownership is applied when running as root and skipped
//! otherwise, as are device nodes, which an unprivileged user cannot make.
//! Directory modes and mtimes are applied last, so a read-only directory
//! can still be filled. The destination is assumed not to change under
//! the extractor while it runs (the store locks it).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CString, OsStr};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ::tar::EntryType;

use super::tar::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::compression::decompress_detected;

/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// How to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Apply the uid/gid of each entry (needs root or a user namespace
    /// that maps them). Defaults to whether the process runs as root.
    pub chown: bool,
    /// Keep whiteouts as overlayfs does instead of applying them: the
    /// destination is one lower directory of an overlay mount (RUN's
    /// snapshots), so `.wh.<name>` becomes a 0:0 character device and
    /// `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute (the
    /// kernel's overlayfs.rst, "whiteouts and opaque directories"). Needs
    /// root. `trusted.overlay.*` attributes in the layer itself are dropped
    /// either way: they would steer the overlay mount.
    pub overlay_whiteouts: bool,
    /// With `overlay_whiteouts`: the overlay is mounted in a user
    /// namespace with `userxattr` (rootless RUN), which reads the opaque
    /// attribute as `user.overlay.opaque`; `user.overlay.*` attributes in
    /// the layer are dropped as well.
    pub user_xattrs: bool,
    /// Keep whiteouts as the layer writes them, as empty files named
    /// `.wh.<name>` and `.wh..wh..opq`, applying nothing: the destination
    /// is a layer kept as files on a file system where overlay whiteouts
    /// cannot be made (RUN's copy mode, which applies them later).
    pub oci_whiteouts: bool,
}

impl Default for ExtractOptions {
    fn default() -> ExtractOptions {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        ExtractOptions {
            chown: root,
            overlay_whiteouts: false,
            user_xattrs: false,
            oci_whiteouts: false,
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Entries read from the stream, whiteouts included.
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Entries not created, with why (device nodes without privileges).
    pub skipped: Vec<(String, String)>,
}

/// Why an extraction stopped. `entry` is the name as written in the layer.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("cannot read the layer stream")]
    Read { source: io::Error },
    #[error("refusing layer entry `{entry}`: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("layer entry `{entry}` has unsupported type {kind:?}")]
    Unsupported { entry: String, kind: char },
    #[error("cannot extract layer entry `{entry}` to `{path}`")]
    Io {
        entry: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Extracts the layer `input` (a tar, plain or compressed, told by its
/// first bytes: see [`crate::compression`]) into `dest`, an existing
/// directory.
pub fn extract(
    input: impl Read,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractSummary, ExtractError> {
    extract_with(input, dest, options, Links::default())
}

/// Hard links [`extract_with`] makes besides writing files. Paths are
/// entry paths: relative, `/`-separated, as cleaned from the tar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Links<'a> {
    /// Files on the same file system holding exactly an entry's bytes,
    /// by entry path: hard-linked into place instead of written, then
    /// given the entry's owner, mode, attributes and time as a written
    /// file is. The caller gives them up (their metadata changes); one of
    /// another size, or on another file system, is not linked and the
    /// bytes come from the stream.
    pub sources: Option<&'a HashMap<Vec<u8>, PathBuf>>,
    /// A second tree, on the same file system: every regular file
    /// extracted is also hard-linked there at its entry path, under plain
    /// directories (no symlink is ever made in it), so its bytes can be
    /// read by path whatever symlinks the layer puts in the destination.
    pub mirror: Option<&'a Path>,
}

/// [`extract`], with the hard links `links` asks for.
pub fn extract_with(
    input: impl Read,
    dest: &Path,
    options: &ExtractOptions,
    links: Links<'_>,
) -> Result<ExtractSummary, ExtractError> {
    let read = |source| ExtractError::Read { source };
    let (_, input) = decompress_detected(input).map_err(read)?;
    let mut archive = ::tar::Archive::new(input);
    let mut extractor = Extractor {
        root: dest,
        options: *options,
        links,
        written: HashSet::new(),
        known_dirs: HashSet::new(),
        mirror_dirs: HashSet::new(),
        dirs: Vec::new(),
        summary: ExtractSummary::default(),
    };
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        extractor.summary.entries += 1;
        extractor.apply(&mut entry)?;
    }
    // The stream is read to its end, past the end-of-archive blocks: only
    // there may it say that it was whole (gzip's checksum; a layer still
    // downloading, checked against its digest as it ends).
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read)?;
    extractor.finish_dirs()?;
    Ok(extractor.summary)
}

/// A path relative to the destination root whose every component is a
/// real directory inside it (no symlinks), as the resolver found it.
type Resolved = PathBuf;

struct Extractor<'a> {
    root: &'a Path,
    options: ExtractOptions,
    links: Links<'a>,
    /// Paths (relative to the root) that this layer created or replaced.
    written: HashSet<Resolved>,
    /// Paths (relative to the root) found or made real directories, with
    /// every directory above them; a path leaves with all below it when
    /// anything is removed there ([`Extractor::remove`]).
    known_dirs: HashSet<Resolved>,
    /// Directories made in [`Links::mirror`] (the extractor alone writes
    /// there, and removes no directory).
    mirror_dirs: HashSet<PathBuf>,
    /// Directories whose mode and mtime wait until the end.
    dirs: Vec<(Resolved, u32, u64, String)>,
    summary: ExtractSummary,
}

/// Which of an entry's owner and mode a node still needs set.
#[derive(Debug, Clone, Copy)]
struct Settle {
    owner: bool,
    mode: bool,
}

impl Settle {
    const ALL: Settle = Settle {
        owner: true,
        mode: true,
    };
}

/// An entry's metadata, read once from its header.
struct Meta {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    /// The owner as chown takes it.
    fn owner(&self) -> io::Result<(u32, u32)> {
        let id = |id: u64, what: &str| {
            u32::try_from(id).map_err(|_| io::Error::other(format!("{what} out of range")))
        };
        Ok((id(self.uid, "uid")?, id(self.gid, "gid")?))
    }
}

impl Extractor<'_> {
    fn apply<R: Read>(&mut self, entry: &mut ::tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let parts = clean(&raw_name, &name)?;
        let Some((last, parents)) = parts.split_last() else {
            // The root itself ("./"): its metadata belongs to the
            // destination, which the caller owns.
            return Ok(());
        };

        if let Some(deleted) = last.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parents, last, deleted, &name);
        }

        let parent = self.resolve_dir(parents, true, &name)?.expect("created");
        let rel = parent.join(OsStr::from_bytes(last));
        let path = self.root.join(&rel);
        let io = |source| ExtractError::Io {
            entry: name.clone(),
            path: path.clone(),
            source,
        };
        let bad_header = |e: io::Error| unsafe_entry(&name, &format!("malformed header: {e}"));
        let xattrs = xattrs(entry).map_err(bad_header)?;
        let header = entry.header();
        let meta = Meta {
            name: name.clone(),
            mode: header.mode().map_err(bad_header)? & 0o7777,
            uid: header.uid().map_err(bad_header)?,
            gid: header.gid().map_err(bad_header)?,
            mtime: header.mtime().map_err(bad_header)?,
            xattrs,
        };

        match kind {
            EntryType::Directory => {
                if let Err(e) = fs::create_dir(&path) {
                    // A directory there merges with this one; anything
                    // else is replaced.
                    let existing = fs::symlink_metadata(&path);
                    if e.kind() != io::ErrorKind::AlreadyExists
                        || !matches!(&existing, Ok(m) if m.is_dir())
                    {
                        self.remove(&rel).map_err(io)?;
                        fs::create_dir(&path).map_err(io)?;
                    }
                }
                self.known_dirs.insert(rel.clone());
                self.chown(&path, &meta)?;
                self.set_xattrs(&path, &meta)?;
                self.dirs
                    .push((rel.clone(), meta.mode, meta.mtime, name.clone()));
            }
            EntryType::Regular | EntryType::Continuous => {
                let key = parts.join(&b'/');
                let source = self.links.sources.and_then(|s| s.get(&key));
                let linked = match source.map(|source| (source, fs::symlink_metadata(source))) {
                    Some((source, Ok(found))) if found.is_file() && found.len() == entry.size() => {
                        self.create(&rel, || fs::hard_link(source, &path))
                            .is_ok()
                            .then_some(found)
                    }
                    _ => None,
                };
                if let Some(found) = linked {
                    io::copy(entry, &mut io::sink()).map_err(io)?;
                    // The linked file may carry attributes the entry has not.
                    self.drop_other_xattrs(&path, &meta)?;
                    // What it has already (the usual case, a RUN step's
                    // own file) is not set again.
                    let settle = self.settle(&found, &meta).map_err(io)?;
                    self.finish_node(&path, &meta, settle)?;
                } else {
                    let open = || {
                        OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            // Usually the final mode already (see
                            // finish_file); special bits wait for chown.
                            .mode(meta.mode & 0o777)
                            .custom_flags(libc::O_NOFOLLOW)
                            .open(&path)
                    };
                    let mut file = self.create(&rel, open).map_err(io)?;
                    io::copy(entry, &mut file).map_err(io)?;
                    // Through the descriptor: no path to look up again.
                    self.finish_file(&file, &path, &meta)?;
                }
                if let Some(mirror) = self.links.mirror {
                    self.mirror_link(mirror, &key, &path).map_err(io)?;
                }
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = OsStr::from_bytes(&target);
                self.create(&rel, || std::os::unix::fs::symlink(target, &path))
                    .map_err(io)?;
                let settle = Settle {
                    owner: true,
                    mode: false,
                };
                self.finish_node(&path, &meta, settle)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let source = self.resolve_link_target(&target, &name)?;
                if source == path {
                    return Err(unsafe_entry(&name, "hardlink to itself"));
                }
                // linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is
                // linked as the symlink, never as what it points to.
                self.create(&rel, || fs::hard_link(&source, &path))
                    .map_err(io)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let fifo = kind == EntryType::Fifo;
                if !fifo && !self.options.chown {
                    let why = "device nodes need root".to_string();
                    self.summary.skipped.push((name.clone(), why));
                    return Ok(());
                }
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let file_type = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(major, minor);
                self.create(&rel, || mknod(&path, file_type | 0o600, dev))
                    .map_err(io)?;
                self.finish_node(&path, &meta, Settle::ALL)?;
            }
            other => {
                let kind = other.as_byte() as char;
                return Err(ExtractError::Unsupported {
                    entry: name.clone(),
                    kind,
                });
            }
        }
        self.written.insert(rel);
        Ok(())
    }

    /// Applies `.wh.<name>` or `.wh..wh..opq` in the directory `parents`.
    fn whiteout(
        &mut self,
        parents: &[&[u8]],
        last: &[u8],
        deleted: &[u8],
        name: &str,
    ) -> Result<(), ExtractError> {
        let is_opaque = last == OPAQUE_MARKER.as_bytes();
        if !is_opaque && deleted.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.` names are aufs bookkeeping, not whiteouts.
            return Ok(());
        }
        if !is_opaque && matches!(deleted, b"" | b"." | b"..") {
            return Err(unsafe_entry(name, "whiteout of an empty, `.` or `..` name"));
        }
        if self.options.overlay_whiteouts {
            return self.overlay_whiteout(parents, is_opaque, deleted, name);
        }
        if self.options.oci_whiteouts {
            let parent = self.resolve_dir(parents, true, name)?.expect("created");
            let path = self.root.join(parent.join(OsStr::from_bytes(last)));
            self.summary.whiteouts += 1;
            return fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map(drop)
                .map_err(|source| ExtractError::Io {
                    entry: name.into(),
                    path,
                    source,
                });
        }
        // Nothing below a missing directory can need hiding.
        let Some(parent) = self.resolve_dir(parents, false, name)? else {
            return Ok(());
        };
        self.summary.whiteouts += 1;
        if is_opaque {
            return self.clear_lower(&parent, name);
        }
        let rel = parent.join(OsStr::from_bytes(deleted));
        if self.written.contains(&rel) {
            return Ok(());
        }
        self.remove(&rel).map_err(|source| ExtractError::Io {
            entry: name.into(),
            path: self.root.join(&rel),
            source,
        })
    }

    /// A whiteout kept for overlayfs: a 0:0 character device named as
    /// the deleted entry, or the opaque attribute on its directory.
    fn overlay_whiteout(
        &mut self,
        parents: &[&[u8]],
        is_opaque: bool,
        deleted: &[u8],
        name: &str,
    ) -> Result<(), ExtractError> {
        let parent = self.resolve_dir(parents, true, name)?.expect("created");
        self.summary.whiteouts += 1;
        let target = if is_opaque {
            parent.clone()
        } else {
            parent.join(OsStr::from_bytes(deleted))
        };
        let path = self.root.join(&target);
        let io = |source| ExtractError::Io {
            entry: name.into(),
            path: path.clone(),
            source,
        };
        if !is_opaque {
            if self.written.contains(&target) {
                return Ok(());
            }
            return self
                .create(&target, || mknod(&path, libc::S_IFCHR, libc::makedev(0, 0)))
                .map_err(io);
        }
        let c_path = c_path(&path).map_err(io)?;
        let key = if self.options.user_xattrs {
            c"user.overlay.opaque"
        } else {
            c"trusted.overlay.opaque"
        };
        // SAFETY: NUL-terminated strings and a value of the given length.
        let rc =
            unsafe { libc::lsetxattr(c_path.as_ptr(), key.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        if rc != 0 {
            return Err(io(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Removes everything under `dir` that this layer did not write,
    /// keeping this layer's entries (and recursing into its directories,
    /// which may have merged with lower ones).
    fn clear_lower(&mut self, dir: &Path, name: &str) -> Result<(), ExtractError> {
        let path = self.root.join(dir);
        let io = |path: &Path, source| ExtractError::Io {
            entry: name.into(),
            path: path.to_path_buf(),
            source,
        };
        for child in fs::read_dir(&path).map_err(|e| io(&path, e))? {
            let child = child.map_err(|e| io(&path, e))?;
            let rel = dir.join(child.file_name());
            let child_path = child.path();
            if !self.written.contains(&rel) {
                self.remove(&rel).map_err(|e| io(&child_path, e))?;
            } else if child.file_type().map_err(|e| io(&child_path, e))?.is_dir() {
                self.clear_lower(&rel, name)?;
            }
        }
        Ok(())
    }

    /// Resolves directory components inside the root as a chroot would:
    /// symlinks are read and resolved from the root, `..` stops at the
    /// root. Missing directories are created (and count as this layer's)
    /// when `create` is set, else `None` is returned.
    fn resolve_dir(
        &mut self,
        parts: &[&[u8]],
        create: bool,
        name: &str,
    ) -> Result<Option<Resolved>, ExtractError> {
        let mut resolved = PathBuf::new();
        let mut pending: VecDeque<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            match &part[..] {
                b"" | b"." => continue,
                b".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let rel = resolved.join(OsStr::from_bytes(&part));
            if self.known_dirs.contains(&rel) {
                resolved = rel;
                continue;
            }
            let path = self.root.join(&rel);
            let io = |source| ExtractError::Io {
                entry: name.into(),
                path: path.clone(),
                source,
            };
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    self.known_dirs.insert(rel.clone());
                    resolved = rel;
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(unsafe_entry(name, "too many levels of symbolic links"));
                    }
                    let target = fs::read_link(&path).map_err(io)?;
                    let target = target.as_os_str().as_bytes();
                    if target.starts_with(b"/") {
                        resolved = PathBuf::new();
                    }
                    for piece in target.split(|&b| b == b'/').rev() {
                        pending.push_front(piece.to_vec());
                    }
                }
                Ok(_) => {
                    let reason = format!("`{}` is not a directory", rel.display());
                    return Err(unsafe_entry(name, &reason));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(io)?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(io)?;
                    self.written.insert(rel.clone());
                    self.known_dirs.insert(rel.clone());
                    resolved = rel;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(e)),
            }
        }
        Ok(Some(resolved))
    }

    /// The host path a hardlink entry should link to: an existing
    /// non-directory inside the root.
    fn resolve_link_target(&mut self, target: &[u8], name: &str) -> Result<PathBuf, ExtractError> {
        let target_name = String::from_utf8_lossy(target);
        let parts = clean(target, name)?;
        let missing = || {
            unsafe_entry(
                name,
                &format!("hardlink target `{target_name}` does not exist in the layer or below"),
            )
        };
        let Some((last, parents)) = parts.split_last() else {
            return Err(unsafe_entry(name, "hardlink to the root directory"));
        };
        let parent = self
            .resolve_dir(parents, false, name)?
            .ok_or_else(missing)?;
        let path = self.root.join(parent.join(OsStr::from_bytes(last)));
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(unsafe_entry(
                name,
                &format!("hardlink target `{target_name}` is a directory"),
            )),
            Ok(_) => Ok(path),
            Err(_) => Err(missing()),
        }
    }

    /// Ownership, mode, xattrs and mtime of a just-created non-directory;
    /// owner and mode only as `settle` says.
    fn finish_node(&self, path: &Path, meta: &Meta, settle: Settle) -> Result<(), ExtractError> {
        if settle.owner {
            self.chown(path, meta)?;
        }
        let io = |source| ExtractError::Io {
            entry: meta.name.clone(),
            path: path.to_path_buf(),
            source,
        };
        // After chown: chown(2) clears setuid and setgid.
        if settle.mode {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode)).map_err(io)?;
        }
        // After chown too: it clears security.capability.
        self.set_xattrs(path, meta)?;
        set_mtime(path, meta.mtime).map_err(io)
    }

    /// What a node that has `current` still needs for the entry's owner
    /// and mode: each only where it differs (sparing the inode an update
    /// each), and a mode after any chown, which may clear mode bits.
    fn settle(&self, current: &fs::Metadata, meta: &Meta) -> io::Result<Settle> {
        let owner = self.options.chown && (current.uid(), current.gid()) != meta.owner()?;
        Ok(Settle {
            owner,
            mode: owner || current.mode() & 0o7777 != meta.mode,
        })
    }

    /// [`Self::finish_node`] for a regular file just written through
    /// `file`: the same changes, in the same order, made on the descriptor.
    fn finish_file(&self, file: &fs::File, path: &Path, meta: &Meta) -> Result<(), ExtractError> {
        use std::os::fd::AsRawFd;
        let io = |source| ExtractError::Io {
            entry: meta.name.clone(),
            path: path.to_path_buf(),
            source,
        };
        // Just created, with the entry's permission bits: usually the
        // owner and mode it needs already.
        let settle = self
            .settle(&file.metadata().map_err(io)?, meta)
            .map_err(io)?;
        if settle.owner {
            let (uid, gid) = meta.owner().map_err(io)?;
            std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(io)?;
        }
        if settle.mode {
            file.set_permissions(fs::Permissions::from_mode(meta.mode))
                .map_err(io)?;
        }
        self.set_xattrs(path, meta)?;
        let times = times(meta.mtime);
        // SAFETY: an open descriptor, and the two entries futimens reads.
        if unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) } != 0 {
            return Err(io(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Runs `make`, which creates `rel` without following a symlink there;
    /// if something stands at `rel` already, removes it and runs `make`
    /// again. (No look first: in a fresh destination nothing is there.)
    fn create<T>(&mut self, rel: &Path, mut make: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match make() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.remove(rel)?;
                make()
            }
            other => other,
        }
    }

    /// Removes whatever is at `rel` (a directory with its content) without
    /// following a symlink there; a missing path is fine. Directories at or
    /// below `rel` are no longer known.
    fn remove(&mut self, rel: &Path) -> io::Result<()> {
        if self.known_dirs.remove(rel) {
            self.known_dirs.retain(|dir| !dir.starts_with(rel));
        }
        remove_existing(&self.root.join(rel))
    }

    /// Hard-links `file` (just extracted) into `mirror` at `key`, making
    /// plain directories on the way and replacing a file an earlier entry
    /// of the same path left there.
    fn mirror_link(&mut self, mirror: &Path, key: &[u8], file: &Path) -> io::Result<()> {
        let target = mirror.join(OsStr::from_bytes(key));
        if let Some(parent) = target.parent()
            && !self.mirror_dirs.contains(parent)
        {
            fs::create_dir_all(parent)?;
            self.mirror_dirs.insert(parent.to_path_buf());
        }
        match fs::hard_link(file, &target) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fs::symlink_metadata(&target)?.is_dir() {
                    return Err(io::Error::other("a directory stands where a file goes"));
                }
                fs::remove_file(&target)?;
                fs::hard_link(file, &target)
            }
            other => other,
        }
    }

    fn chown(&self, path: &Path, meta: &Meta) -> Result<(), ExtractError> {
        if !self.options.chown {
            return Ok(());
        }
        let io = |source| ExtractError::Io {
            entry: meta.name.clone(),
            path: path.to_path_buf(),
            source,
        };
        let (uid, gid) = meta.owner().map_err(io)?;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io)
    }

    /// Removes the extended attributes of `path` that the entry does not
    /// set (and those [`Self::set_xattrs`] never sets).
    fn drop_other_xattrs(&self, path: &Path, meta: &Meta) -> Result<(), ExtractError> {
        let io = |source| ExtractError::Io {
            entry: meta.name.clone(),
            path: path.to_path_buf(),
            source,
        };
        let c_path = c_path(path).map_err(io)?;
        let mut names = vec![0u8; 4096];
        // SAFETY: `names` has room for `names.len()` bytes.
        let n =
            unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // No attributes on this file system, or a list too long to
            // hold: nothing to compare (ERANGE is rare enough to refuse).
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(()),
                _ => Err(io(e)),
            };
        }
        for name in names[..n as usize]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            let kept = meta.xattrs.iter().any(|(key, _)| key == name) && !self.steers_overlay(name);
            if kept {
                continue;
            }
            let c_name =
                CString::new(name).map_err(|_| io(io::Error::other("NUL in an attribute name")))?;
            // SAFETY: both are valid NUL-terminated strings.
            if unsafe { libc::lremovexattr(c_path.as_ptr(), c_name.as_ptr()) } != 0 {
                return Err(io(io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Whether the attribute would steer an overlay mount of the result.
    fn steers_overlay(&self, key: &[u8]) -> bool {
        key.starts_with(b"trusted.overlay.")
            || (self.options.user_xattrs && key.starts_with(b"user.overlay."))
    }

    /// Sets xattrs without following symlinks. Without privileges, or on
    /// file systems without xattrs, attributes that cannot be set are
    /// dropped, as rootless builders do.
    fn set_xattrs(&self, path: &Path, meta: &Meta) -> Result<(), ExtractError> {
        for (key, value) in &meta.xattrs {
            if self.steers_overlay(key) {
                continue;
            }
            let io = |source| ExtractError::Io {
                entry: meta.name.clone(),
                path: path.to_path_buf(),
                source,
            };
            let c_path = c_path(path).map_err(io)?;
            let c_key = CString::new(key.clone()).map_err(|e| io(io::Error::other(e)))?;
            // SAFETY: both strings are NUL-terminated and value outlives the call.
            let rc = unsafe {
                libc::lsetxattr(
                    c_path.as_ptr(),
                    c_key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if rc != 0 {
                let error = io::Error::last_os_error();
                let ignorable = error.raw_os_error() == Some(libc::EOPNOTSUPP)
                    || (!self.options.chown && error.raw_os_error() == Some(libc::EPERM));
                if !ignorable {
                    return Err(io(error));
                }
            }
        }
        Ok(())
    }

    /// Applies directory modes and mtimes, children before parents (a
    /// child's creation would change its parent's mtime). Each path is
    /// checked again to still be a real directory, so a later entry that
    /// replaced one with a symlink cannot redirect the chmod.
    fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        for (rel, mode, mtime, name) in std::mem::take(&mut self.dirs).into_iter().rev() {
            if !self.is_real_dir(&rel) {
                continue;
            }
            let path = self.root.join(&rel);
            let io = |source| ExtractError::Io {
                entry: name.clone(),
                path: path.clone(),
                source,
            };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io)?;
            set_mtime(&path, mtime).map_err(io)?;
        }
        Ok(())
    }

    fn is_real_dir(&self, rel: &Path) -> bool {
        if self.known_dirs.contains(rel) {
            return true;
        }
        let mut path = self.root.to_path_buf();
        rel.components().all(|part| {
            path.push(part);
            fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
        })
    }
}

fn unsafe_entry(name: &str, reason: &str) -> ExtractError {
    ExtractError::Unsafe {
        entry: name.into(),
        reason: reason.into(),
    }
}

/// Splits an entry name into components: a leading `/`, empty and `.`
/// components are dropped (absolute names are read as relative to the
/// root, as Docker does); `..` and NUL are refused.
fn clean<'a>(raw: &'a [u8], name: &str) -> Result<Vec<&'a [u8]>, ExtractError> {
    if raw.contains(&0) {
        return Err(unsafe_entry(name, "the name contains a NUL byte"));
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(name, "the name has a `..` component")),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// Removes whatever is at `path` (a directory with its content) without
/// following a symlink there; a missing path is fine.
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// mknod(2): never follows a symlink at `path`, fails if anything is there.
fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let c_path = c_path(path)?;
    // SAFETY: c_path is a valid NUL-terminated path.
    if unsafe { libc::mknod(c_path.as_ptr(), mode, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// `mtime` as the atime and mtime utimensat and futimens take.
fn times(mtime: u64) -> [libc::timespec; 2] {
    let time = libc::timespec {
        tv_sec: mtime.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    [time, time]
}

/// Sets atime and mtime to `mtime` without following a symlink.
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let c_path = c_path(path)?;
    let times = times(mtime);
    // SAFETY: c_path is NUL-terminated and times has the two entries
    // utimensat reads.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The entry's `SCHILY.xattr.*` PAX records, as (name, raw value).
fn xattrs<R: Read>(entry: &mut ::tar::Entry<'_, R>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            if let Some(key) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((key.to_vec(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;
    use crate::layer::{Entry, LayerOptions, TarOptions, sort_entries, write_layer, write_tar};
    use crate::testing::raw_tar;

    fn run(tar: &[u8], dest: &Path) -> Result<ExtractSummary, ExtractError> {
        extract(tar, dest, &ExtractOptions::default())
    }

    /// Two sibling directories: the destination and an "outside" one that
    /// nothing may touch.
    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        (tmp, root, outside)
    }

    fn assert_outside_untouched(outside: &Path) {
        let names: Vec<_> = fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
        let meta = fs::metadata(outside.join("secret")).unwrap();
        assert_eq!((meta.nlink(), meta.mode() & 0o7777), (1, 0o644));
    }

    #[test]
    fn overlay_mode_keeps_whiteouts_for_the_overlay_and_drops_its_xattrs() {
        if !ExtractOptions::default().chown {
            eprintln!("skipped: whiteout devices need root");
            return;
        }
        let mut entries = vec![
            Entry::dir("d"),
            Entry::opaque(b"d"),
            Entry::file("d/new", b"n".to_vec())
                .with_xattr("trusted.overlay.redirect", b"/elsewhere".to_vec()),
            Entry::whiteout(b"etc/group"),
        ];
        sort_entries(&mut entries);
        let tar = write_tar(&entries, TarOptions::default(), Vec::new()).unwrap();
        let (_tmp, root, outside) = dirs();
        let options = ExtractOptions {
            chown: true,
            overlay_whiteouts: true,
            user_xattrs: false,
            oci_whiteouts: false,
        };
        let summary = extract(&tar[..], &root, &options).unwrap();
        assert_eq!(summary.whiteouts, 2);
        let gone = fs::symlink_metadata(root.join("etc/group")).unwrap();
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        let read = |path: &Path, name: &std::ffi::CStr| {
            let c = c_path(path).unwrap();
            let mut buf = [0u8; 64];
            // SAFETY: NUL-terminated strings and a buffer of the given length.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            (n >= 0).then(|| buf[..n as usize].to_vec())
        };
        assert_eq!(
            read(&root.join("d"), c"trusted.overlay.opaque"),
            Some(b"y".to_vec())
        );
        assert_eq!(read(&root.join("d/new"), c"trusted.overlay.redirect"), None);
        assert_outside_untouched(&outside);
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn extracts_every_kind_with_its_metadata() {
        let mut entries = vec![
            Entry::dir("app").with_mode(0o750).with_mtime(3_000),
            Entry::file("app/tool", b"#!/bin/sh\n".to_vec())
                .with_mode(0o4755)
                .with_owner(1000, 1001)
                .with_mtime(4_000),
            Entry::hardlink("app/tool2", "app/tool"),
            Entry::symlink("app/link", "tool").with_mtime(2_000),
            Entry::file("app/note", b"n".to_vec())
                .with_xattr("user.hoist", b"\x00\xffraw".to_vec()),
            Entry::dir("tmp").with_mode(0o1777),
            Entry::dir("ro").with_mode(0o555),
            Entry::file("ro/inside", b"i".to_vec()),
            // Modes the process's umask would narrow, no owner write, and
            // a special bit on a file needing no chown.
            Entry::file("app/shared", b"s".to_vec()).with_mode(0o666),
            Entry::file("app/sealed", b"r".to_vec()).with_mode(0o400),
            Entry::file("app/group", b"g".to_vec()).with_mode(0o2711),
            Entry::fifo("app/pipe"),
            Entry::char_device("app/null", 1, 3),
        ];
        sort_entries(&mut entries);
        let options = LayerOptions {
            tar: TarOptions {
                source_date_epoch: 10_000,
            },
            ..LayerOptions::default()
        };
        let (_, blob) = write_layer(&entries, &options, Vec::new()).unwrap();
        let (_tmp, root, _) = dirs();
        let summary = run(&blob, &root).unwrap();
        assert_eq!(summary.entries, entries.len() as u64);

        let tool = fs::metadata(root.join("app/tool")).unwrap();
        assert_eq!(fs::read(root.join("app/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 4_000);
        assert_eq!(tool.nlink(), 2);
        assert_eq!(
            fs::metadata(root.join("app/tool2")).unwrap().ino(),
            tool.ino()
        );
        if ExtractOptions::default().chown {
            assert_eq!((tool.uid(), tool.gid()), (1000, 1001));
            let null = fs::metadata(root.join("app/null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!((libc::major(null.rdev()), libc::minor(null.rdev())), (1, 3));
        } else {
            assert_eq!(summary.skipped.len(), 1);
        }
        assert_eq!(
            fs::read_link(root.join("app/link")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            fs::symlink_metadata(root.join("app/link")).unwrap().mtime(),
            2_000
        );
        assert!(
            fs::metadata(root.join("app/pipe"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(mode(&root.join("app")), 0o750);
        assert_eq!(fs::metadata(root.join("app")).unwrap().mtime(), 3_000);
        assert_eq!(mode(&root.join("tmp")), 0o1777);
        assert_eq!(mode(&root.join("ro")), 0o555);
        assert_eq!(fs::read(root.join("ro/inside")).unwrap(), b"i");
        assert_eq!(mode(&root.join("app/shared")), 0o666);
        assert_eq!(mode(&root.join("app/sealed")), 0o400);
        assert_eq!(fs::read(root.join("app/sealed")).unwrap(), b"r");
        assert_eq!(mode(&root.join("app/group")), 0o2711);

        let mut value = [0u8; 16];
        let path = c_path(&root.join("app/note")).unwrap();
        // SAFETY: NUL-terminated strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                c"user.hoist".as_ptr(),
                value.as_mut_ptr().cast(),
                16,
            )
        };
        assert_eq!(&value[..n as usize], b"\x00\xffraw");
    }

    #[test]
    fn whiteouts_remove_only_lower_content() {
        let (_tmp, root, _) = dirs();
        for dir in ["etc", "var/cache/apt", "opq/sub"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "etc/passwd",
            "etc/keep",
            "var/cache/apt/pkg",
            "opq/lower",
            "opq/sub/lower",
        ] {
            fs::write(root.join(file), b"lower").unwrap();
        }
        // `+new` and `sub/` sort before the opaque marker: this layer's own
        // entries must survive it. `.wh.same` comes after `same` was written.
        let tar = raw_tar(&[
            ("etc/.wh.passwd", EntryType::Regular, "", b""),
            ("opq/", EntryType::Directory, "", b""),
            ("opq/+new", EntryType::Regular, "", b"upper"),
            ("opq/sub/", EntryType::Directory, "", b""),
            ("opq/sub/mine", EntryType::Regular, "", b"upper"),
            ("opq/.wh..wh..opq", EntryType::Regular, "", b""),
            ("same", EntryType::Regular, "", b"upper"),
            (".wh.same", EntryType::Regular, "", b""),
            ("var/.wh.cache", EntryType::Regular, "", b""),
            ("missing/.wh.x", EntryType::Regular, "", b""),
        ]);
        let summary = run(&tar, &root).unwrap();
        assert!(!root.join("etc/passwd").exists());
        assert!(root.join("etc/keep").exists());
        assert!(!root.join("var/cache").exists());
        assert!(root.join("var").is_dir());
        assert!(!root.join("opq/lower").exists());
        assert!(!root.join("opq/sub/lower").exists());
        assert_eq!(fs::read(root.join("opq/+new")).unwrap(), b"upper");
        assert_eq!(fs::read(root.join("opq/sub/mine")).unwrap(), b"upper");
        assert_eq!(fs::read(root.join("same")).unwrap(), b"upper");
        assert!(!root.join("missing").exists());
        assert!(
            !root.join("etc/.wh.passwd").exists(),
            "markers are not extracted"
        );
        assert_eq!(summary.whiteouts, 4);
    }

    #[test]
    fn dotdot_names_are_refused_with_the_entry_named() {
        let (_tmp, root, outside) = dirs();
        for name in [
            "../outside/pwned",
            "a/../../outside/pwned",
            "/../outside/pwned",
        ] {
            let tar = raw_tar(&[(name, EntryType::Regular, "", b"x")]);
            let err = run(&tar, &root).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("refusing layer entry `{name}`: the name has a `..` component")
            );
        }
        let tar = raw_tar(&[("hl", EntryType::Link, "../outside/secret", b"")]);
        assert!(matches!(run(&tar, &root), Err(ExtractError::Unsafe { .. })));
        assert_outside_untouched(&outside);
    }

    #[test]
    fn absolute_names_land_inside_the_root() {
        let (_tmp, root, outside) = dirs();
        let name = format!("{}/pwned", outside.display());
        let tar = raw_tar(&[(&name, EntryType::Regular, "", b"x")]);
        run(&tar, &root).unwrap();
        assert_eq!(fs::read(root.join(&name[1..])).unwrap(), b"x");
        assert_outside_untouched(&outside);
    }

    #[test]
    fn symlinked_parents_are_resolved_inside_the_root() {
        let (_tmp, root, outside) = dirs();
        let absolute = outside.display().to_string();
        let tar = raw_tar(&[
            ("abs", EntryType::Symlink, &absolute, b""),
            ("abs/pwned", EntryType::Regular, "", b"1"),
            ("up", EntryType::Symlink, "../../../../..", b""),
            ("up/pwned", EntryType::Regular, "", b"2"),
            ("loop", EntryType::Symlink, "loop", b""),
        ]);
        run(&tar, &root).unwrap();
        // The link still points where it said; the write went inside.
        assert_eq!(fs::read_link(root.join("abs")).unwrap(), outside);
        assert_eq!(
            fs::read(root.join(&absolute[1..]).join("pwned")).unwrap(),
            b"1"
        );
        assert_eq!(fs::read(root.join("pwned")).unwrap(), b"2");
        assert_outside_untouched(&outside);

        let tar = raw_tar(&[("loop/x", EntryType::Regular, "", b"")]);
        let err = run(&tar, &root).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing layer entry `loop/x`: too many levels of symbolic links"
        );
    }

    #[test]
    fn hardlinks_never_reach_outside() {
        let (_tmp, root, outside) = dirs();
        let absolute = outside.display().to_string();
        let secret = format!("{absolute}/secret");
        // Through a symlinked parent: resolved inside the root, where no
        // `secret` exists.
        let tar = raw_tar(&[
            ("out", EntryType::Symlink, &absolute, b""),
            ("hl", EntryType::Link, "out/secret", b""),
        ]);
        let err = run(&tar, &root).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        // An absolute target is read inside the root as well.
        let tar = raw_tar(&[("hl", EntryType::Link, &secret, b"")]);
        assert!(run(&tar, &root).is_err());
        // A hardlink to a symlink that points outside links the symlink.
        let tar = raw_tar(&[
            ("sl", EntryType::Symlink, &secret, b""),
            ("hl2", EntryType::Link, "sl", b""),
        ]);
        run(&tar, &root).unwrap();
        assert!(fs::symlink_metadata(root.join("hl2")).unwrap().is_symlink());
        assert_outside_untouched(&outside);
    }

    #[test]
    fn an_existing_symlink_is_replaced_not_followed() {
        let (_tmp, root, outside) = dirs();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("f")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        let tar = raw_tar(&[
            ("f", EntryType::Regular, "", b"mine"),
            ("d", EntryType::Directory, "", b""),
        ]);
        run(&tar, &root).unwrap();
        assert_eq!(fs::read(root.join("f")).unwrap(), b"mine");
        assert!(fs::symlink_metadata(root.join("d")).unwrap().is_dir());
        assert_outside_untouched(&outside);
    }

    #[test]
    fn directory_metadata_is_not_applied_through_a_later_symlink() {
        let (_tmp, root, outside) = dirs();
        let absolute = outside.display().to_string();
        // `d/` is recorded for a deferred chmod 0755, then replaced by a
        // symlink to the outside directory: the chmod must not follow it.
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        let tar = raw_tar(&[
            ("d/", EntryType::Directory, "", b""),
            ("d", EntryType::Symlink, &absolute, b""),
        ]);
        run(&tar, &root).unwrap();
        assert_eq!(mode(&outside), 0o700);
        assert_outside_untouched(&outside);
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_is_resolved_again() {
        let (_tmp, root, outside) = dirs();
        let absolute = outside.display().to_string();
        // `a` and `a/b` are known directories once `a/b/f` is written;
        // then `a` becomes a symlink to the outside: writing below it
        // must resolve the symlink (inside the root), not reuse `a/b`.
        let tar = raw_tar(&[
            ("a/b/f", EntryType::Regular, "", b"1"),
            ("a", EntryType::Symlink, &absolute, b""),
            ("a/b/pwned", EntryType::Regular, "", b"2"),
            // A file in place of a known directory, then a directory
            // again: made anew, empty.
            ("c/d/f", EntryType::Regular, "", b"3"),
            ("c", EntryType::Regular, "", b"4"),
            ("c/", EntryType::Directory, "", b""),
            ("c/g", EntryType::Regular, "", b"5"),
        ]);
        run(&tar, &root).unwrap();
        assert_eq!(fs::read_link(root.join("a")).unwrap(), outside);
        assert_eq!(
            fs::read(root.join(&absolute[1..]).join("b/pwned")).unwrap(),
            b"2"
        );
        assert_outside_untouched(&outside);
        assert!(!root.join("c/d").exists());
        assert_eq!(fs::read(root.join("c/g")).unwrap(), b"5");
    }

    #[test]
    fn a_file_in_the_way_of_a_parent_is_an_error_naming_both() {
        let (_tmp, root, _) = dirs();
        let tar = raw_tar(&[
            ("a", EntryType::Regular, "", b""),
            ("a/b", EntryType::Regular, "", b""),
        ]);
        let err = run(&tar, &root).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing layer entry `a/b`: `a` is not a directory"
        );
    }

    #[test]
    fn plain_tar_and_gzip_give_the_same_tree() {
        let entries = [Entry::dir("d"), Entry::file("d/f", b"x".to_vec())];
        let tar = write_tar(&entries, TarOptions::default(), Vec::new()).unwrap();
        let (_, blob) = write_layer(&entries, &LayerOptions::default(), Vec::new()).unwrap();
        for input in [&tar, &blob] {
            let (_tmp, root, _) = dirs();
            run(input, &root).unwrap();
            assert_eq!(fs::read(root.join("d/f")).unwrap(), b"x");
        }
    }
}
