//! Deterministic tar writer: a sorted list of [`Entry`] values -> a POSIX
//! ustar/PAX stream whose bytes depend on nothing but those entries.
//!
//! Headers are built field by field: mode keeps all 12 permission bits
//! (setuid, setgid, sticky), uname/gname stay empty, mtimes are clamped to
//! `SOURCE_DATE_EPOCH`, no atime/ctime and no sparse entries are written.
//! What ustar cannot hold goes into a PAX extended header (typeflag `x`)
//! whose records are sorted by key: `path`/`linkpath` longer than 100 bytes,
//! sizes of 8 GiB and more, large uid/gid, and xattrs as
//! `SCHILY.xattr.<name>` with raw byte values. File contents are streamed
//! from their source (a file opened only when its entry is written), so the
//! writer never holds a file, let alone a layer, in memory. It refuses
//! unsorted or duplicate paths, paths with `..`, `.`, empty or absolute
//! components, and hardlinks to paths not written before.
//!
//! Entries are ordered by their path bytes: a parent is a prefix of its
//! children, so it always sorts first. The OCI layer spec asks (SHOULD) for
//! whiteouts before their siblings; byte order does not promise that, which
//! is why hoist's extractor applies whiteouts correctly in any order.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Tar blocks are 512 bytes; every header and every file body padding is
/// a multiple of it.
const BLOCK: usize = 512;
/// Largest value of the 11-digit octal size and mtime fields (8 GiB - 1).
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// Largest value of the 7-digit octal uid, gid and device fields.
const MAX_OCTAL_7: u64 = 0o777_7777;
/// Prefix of an OCI whiteout file (layer.md, "Whiteouts").
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What an entry is, with what only that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
        content: Content,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    /// A hard link to a non-directory written earlier in the same stream.
    Hardlink {
        target: Vec<u8>,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Bytes already in memory (small generated files, whiteouts, tests).
    Bytes(Vec<u8>),
    /// A file on disk, opened only while its entry is written.
    Path(PathBuf),
}

/// One tar entry: everything that reaches the layer's bytes, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path bytes, `/`-separated, without leading or trailing `/`.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits; only the low 12 bits are written.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; clamped to `SOURCE_DATE_EPOCH` on write.
    pub mtime: u64,
    /// Extended attributes by full name (`user.foo`, `security.capability`).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Entry {
    fn new(path: impl Into<Vec<u8>>, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// A regular file (mode 0644) with in-memory content.
    pub fn file(path: impl Into<Vec<u8>>, content: impl Into<Vec<u8>>) -> Entry {
        let content = content.into();
        let size = content.len() as u64;
        let kind = EntryKind::File {
            size,
            content: Content::Bytes(content),
        };
        Entry::new(path, kind, 0o644)
    }

    /// A regular file (mode 0644) read from `source` when written; `size`
    /// must be its length then, or writing fails.
    pub fn file_from_path(path: impl Into<Vec<u8>>, source: PathBuf, size: u64) -> Entry {
        let kind = EntryKind::File {
            size,
            content: Content::Path(source),
        };
        Entry::new(path, kind, 0o644)
    }

    /// A directory (mode 0755).
    pub fn dir(path: impl Into<Vec<u8>>) -> Entry {
        Entry::new(path, EntryKind::Dir, 0o755)
    }

    /// A symbolic link (mode 0777, as Linux reports them).
    pub fn symlink(path: impl Into<Vec<u8>>, target: impl Into<Vec<u8>>) -> Entry {
        let target = target.into();
        Entry::new(path, EntryKind::Symlink { target }, 0o777)
    }

    /// A hard link to `target`, a path written earlier in the same stream.
    pub fn hardlink(path: impl Into<Vec<u8>>, target: impl Into<Vec<u8>>) -> Entry {
        let target = target.into();
        Entry::new(path, EntryKind::Hardlink { target }, 0o644)
    }

    pub fn char_device(path: impl Into<Vec<u8>>, major: u32, minor: u32) -> Entry {
        Entry::new(path, EntryKind::CharDevice { major, minor }, 0o666)
    }

    pub fn block_device(path: impl Into<Vec<u8>>, major: u32, minor: u32) -> Entry {
        Entry::new(path, EntryKind::BlockDevice { major, minor }, 0o660)
    }

    pub fn fifo(path: impl Into<Vec<u8>>) -> Entry {
        Entry::new(path, EntryKind::Fifo, 0o644)
    }

    /// The whiteout that deletes `deleted` (a path in a lower layer): an
    /// empty file `.wh.<name>` next to it, mode 0, as Docker writes them.
    pub fn whiteout(deleted: &[u8]) -> Entry {
        let (parent, name) = match deleted.iter().rposition(|&b| b == b'/') {
            Some(i) => (&deleted[..=i], &deleted[i + 1..]),
            None => (&b""[..], deleted),
        };
        let path = [parent, WHITEOUT_PREFIX.as_bytes(), name].concat();
        Entry {
            mode: 0,
            ..Entry::file(path, Vec::new())
        }
    }

    /// The marker that hides everything lower layers put in `dir` (empty
    /// for the root).
    pub fn opaque(dir: &[u8]) -> Entry {
        let path = if dir.is_empty() {
            OPAQUE_MARKER.as_bytes().to_vec()
        } else {
            [dir, b"/", OPAQUE_MARKER.as_bytes()].concat()
        };
        Entry {
            mode: 0,
            ..Entry::file(path, Vec::new())
        }
    }

    pub fn with_mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn with_owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn with_mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }

    pub fn with_xattr(mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Entry {
        self.xattrs.insert(name.into(), value.into());
        self
    }
}

/// Sorts entries into the order [`TarWriter`] requires: by path bytes,
/// which puts every parent before its children.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
}

/// Settings that change the bytes of the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarOptions {
    /// Every mtime later than this is written as this (reproducible-builds.org's
    /// `SOURCE_DATE_EPOCH`); the default 0 writes every mtime as 0.
    pub source_date_epoch: u64,
}

/// Why an entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("invalid entry path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error(
        "entry `{path}` comes after `{previous}`; sort entries by path bytes (sort_entries) and remove duplicates"
    )]
    Unsorted { path: String, previous: String },
    #[error(
        "hardlink `{path}` points to `{target}`, which is not a file written earlier in this layer"
    )]
    HardlinkTarget { path: String, target: String },
    #[error(
        "entry `{path}` has an invalid xattr name `{name}`: names must be non-empty and contain no `=` or NUL"
    )]
    XattrName { path: String, name: String },
    #[error("device numbers of `{path}` do not fit a tar header (at most 2097151)")]
    DeviceNumber { path: String },
    #[error("cannot read `{path}`")]
    Read { path: PathBuf, source: io::Error },
    #[error("`{path}` changed while it was being read: expected {expected} bytes, found {found}{more}", more = if *found > *expected { " or more" } else { "" })]
    Changed {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("cannot write the tar stream")]
    Write { source: io::Error },
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes entries one at a time, checking order as it goes.
pub struct TarWriter<W: Write> {
    out: W,
    options: TarOptions,
    previous: Option<Vec<u8>>,
    /// Non-directory paths written so far: the only valid hardlink targets.
    linkable: HashSet<Vec<u8>>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, options: TarOptions) -> TarWriter<W> {
        TarWriter {
            out,
            options,
            previous: None,
            linkable: HashSet::new(),
        }
    }

    /// Writes one entry: its headers, then its content padded to a block.
    pub fn append(&mut self, entry: &Entry) -> Result<(), TarError> {
        self.append_with(entry, |out, size| match &entry.kind {
            EntryKind::File {
                content: Content::Bytes(bytes),
                ..
            } => out
                .write_all(bytes)
                .map_err(|source| TarError::Write { source }),
            EntryKind::File {
                content: Content::Path(path),
                ..
            } => {
                let mut file = open_regular(path).map_err(|source| TarError::Read {
                    path: path.clone(),
                    source,
                })?;
                copy_exact(&mut file, path, size, out)
            }
            _ => Ok(()),
        })
    }

    /// Writes a regular file whose `size` bytes stream from `reader`
    /// (blobs copied into an image archive). `path`, `mode`, owner and
    /// mtime are as for [`Entry::file`] with `with_mode`; `origin` names
    /// the reader in errors. Fails if `reader` gives more or fewer than
    /// `size` bytes, since the header already promised `size`.
    pub fn append_reader(
        &mut self,
        path: impl Into<Vec<u8>>,
        mode: u32,
        size: u64,
        reader: &mut dyn Read,
        origin: &Path,
    ) -> Result<(), TarError> {
        let entry = Entry::new(
            path,
            EntryKind::File {
                size,
                content: Content::Bytes(Vec::new()),
            },
            mode,
        );
        self.append_with(&entry, |out, size| copy_exact(reader, origin, size, out))
    }

    /// Checks order and links, writes the headers of `entry`, lets
    /// `content` write a file's `size` bytes, then pads to a block.
    fn append_with(
        &mut self,
        entry: &Entry,
        content: impl FnOnce(&mut W, u64) -> Result<(), TarError>,
    ) -> Result<(), TarError> {
        validate_path(&entry.path)?;
        if let Some(previous) = &self.previous
            && entry.path <= *previous
        {
            return Err(TarError::Unsorted {
                path: lossy(&entry.path),
                previous: lossy(previous),
            });
        }
        if let EntryKind::Hardlink { target } = &entry.kind
            && !self.linkable.contains(target)
        {
            return Err(TarError::HardlinkTarget {
                path: lossy(&entry.path),
                target: lossy(target),
            });
        }

        let headers = encode_headers(entry, self.options.source_date_epoch)?;
        let write = |source| TarError::Write { source };
        self.out.write_all(&headers).map_err(write)?;
        if let EntryKind::File { size, .. } = &entry.kind {
            content(&mut self.out, *size)?;
            self.out
                .write_all(&[0; BLOCK][..padding(*size)])
                .map_err(write)?;
        }

        if entry.kind != EntryKind::Dir {
            self.linkable.insert(entry.path.clone());
        }
        self.previous = Some(entry.path.clone());
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the
    /// output.
    pub fn finish(mut self) -> Result<W, TarError> {
        self.out
            .write_all(&[0; 2 * BLOCK])
            .and_then(|()| self.out.flush())
            .map_err(|source| TarError::Write { source })?;
        Ok(self.out)
    }
}

/// Writes `entries` (already sorted) as one complete tar stream.
pub fn write_tar<W: Write>(entries: &[Entry], options: TarOptions, out: W) -> Result<W, TarError> {
    let mut writer = TarWriter::new(out, options);
    for entry in entries {
        writer.append(entry)?;
    }
    writer.finish()
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

fn validate_path(path: &[u8]) -> Result<(), TarError> {
    let reason = if path.is_empty() {
        Some("it is empty")
    } else if path.starts_with(b"/") {
        Some("it must be relative (no leading `/`)")
    } else if path.contains(&0) {
        Some("it contains a NUL byte")
    } else {
        path.split(|&b| b == b'/').find_map(|part| match part {
            b"" => Some("it has an empty component (`//` or a trailing `/`)"),
            b"." | b".." => Some("it has a `.` or `..` component"),
            _ => None,
        })
    };
    match reason {
        Some(reason) => Err(TarError::InvalidPath {
            path: lossy(path),
            reason,
        }),
        None => Ok(()),
    }
}

/// Streams exactly `size` bytes of `reader` (named `path` in errors) into
/// `out`, failing if it holds fewer or more: a header that promised another
/// size would corrupt the rest of the stream (a file changed while it was
/// read, or a blob whose descriptor lies about its size).
fn copy_exact(
    reader: &mut dyn Read,
    path: &Path,
    size: u64,
    out: &mut impl Write,
) -> Result<(), TarError> {
    let read_error = |source| TarError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < size {
        let want = buf.len().min((size - done) as usize);
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(TarError::Changed {
                    path: path.to_path_buf(),
                    expected: size,
                    found: done,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        out.write_all(&buf[..n])
            .map_err(|source| TarError::Write { source })?;
        done += n as u64;
    }
    loop {
        match reader.read(&mut buf[..1]) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(TarError::Changed {
                    path: path.to_path_buf(),
                    expected: size,
                    found: size + 1,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
}

/// Encodes the header block(s) of `entry`: a PAX extended header when
/// needed, then the ustar header.
fn encode_headers(entry: &Entry, source_date_epoch: u64) -> Result<Vec<u8>, TarError> {
    let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();

    // Directories carry a trailing `/`, as Docker and BuildKit write them.
    let mut name = entry.path.clone();
    if entry.kind == EntryKind::Dir {
        name.push(b'/');
    }
    if name.len() > 100 {
        pax.insert(b"path".to_vec(), name.clone());
    }

    let (typeflag, link, size, device) = match &entry.kind {
        EntryKind::File { size, .. } => (b'0', &[][..], *size, (0, 0)),
        EntryKind::Hardlink { target } => (b'1', &target[..], 0, (0, 0)),
        EntryKind::Symlink { target } => (b'2', &target[..], 0, (0, 0)),
        EntryKind::CharDevice { major, minor } => (b'3', &[][..], 0, (*major, *minor)),
        EntryKind::BlockDevice { major, minor } => (b'4', &[][..], 0, (*major, *minor)),
        EntryKind::Dir => (b'5', &[][..], 0, (0, 0)),
        EntryKind::Fifo => (b'6', &[][..], 0, (0, 0)),
    };
    if link.len() > 100 {
        pax.insert(b"linkpath".to_vec(), link.to_vec());
    }
    if u64::from(device.0) > MAX_OCTAL_7 || u64::from(device.1) > MAX_OCTAL_7 {
        return Err(TarError::DeviceNumber {
            path: lossy(&entry.path),
        });
    }

    // Numbers too large for their octal field go to PAX and leave 0 in the
    // field (POSIX pax: the extended record overrides the header field).
    let mtime = entry.mtime.min(source_date_epoch);
    let mut numeric = |key: &str, value: u64, max: u64| -> u64 {
        if value > max {
            pax.insert(key.as_bytes().to_vec(), value.to_string().into_bytes());
            0
        } else {
            value
        }
    };
    let size_field = numeric("size", size, MAX_OCTAL_11);
    let uid = numeric("uid", entry.uid, MAX_OCTAL_7);
    let gid = numeric("gid", entry.gid, MAX_OCTAL_7);
    let mtime_field = numeric("mtime", mtime, MAX_OCTAL_11);

    for (key, value) in &entry.xattrs {
        if key.is_empty() || key.contains(&b'=') || key.contains(&0) {
            return Err(TarError::XattrName {
                path: lossy(&entry.path),
                name: lossy(key),
            });
        }
        pax.insert([b"SCHILY.xattr.", &key[..]].concat(), value.clone());
    }

    let mut out = Vec::with_capacity(2 * BLOCK);
    if !pax.is_empty() {
        let mut records = Vec::new();
        for (key, value) in &pax {
            pax_record(&mut records, key, value);
        }
        // The extended header's own name is fixed text plus the entry's
        // base name: GNU tar puts its pid there, which would break
        // reproducibility.
        let base = name.rsplit(|&b| b == b'/').find(|part| !part.is_empty());
        let pax_name = [b"PaxHeaders/", base.unwrap_or_default()].concat();
        out.extend_from_slice(&ustar_header(&Ustar {
            name: &pax_name,
            mode: 0o644,
            size: records.len() as u64,
            typeflag: b'x',
            ..Ustar::default()
        }));
        out.extend_from_slice(&records);
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    out.extend_from_slice(&ustar_header(&Ustar {
        name: &name,
        mode: entry.mode & 0o7777,
        uid,
        gid,
        size: size_field,
        mtime: mtime_field,
        typeflag,
        link,
        device,
    }));
    Ok(out)
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts
/// the whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The fields of one ustar header; names and links longer than 100 bytes
/// are cut here (the full value is in the PAX record before it).
#[derive(Default)]
struct Ustar<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    device: (u32, u32),
}

/// Lays out a ustar header (POSIX.1-2001, "ustar Interchange Format").
fn ustar_header(h: &Ustar<'_>) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    let cut = |s: &[u8]| s.len().min(100);
    block[..cut(h.name)].copy_from_slice(&h.name[..cut(h.name)]);
    octal(&mut block[100..108], u64::from(h.mode));
    octal(&mut block[108..116], h.uid);
    octal(&mut block[116..124], h.gid);
    octal(&mut block[124..136], h.size);
    octal(&mut block[136..148], h.mtime);
    block[156] = h.typeflag;
    block[157..157 + cut(h.link)].copy_from_slice(&h.link[..cut(h.link)]);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty: names are host noise.
    octal(&mut block[329..337], u64::from(h.device.0));
    octal(&mut block[337..345], u64::from(h.device.1));
    // The checksum is computed with its own field read as eight spaces and
    // stored as six octal digits, NUL, space (the form GNU tar and Go use).
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// Writes `value` as zero-padded octal filling all but the last byte of
/// `field`, then NUL. Callers keep `value` within the field's range.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    debug_assert_eq!(
        text.len(),
        digits,
        "value {value} overflows a {digits}-digit field"
    );
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Opens a file whose content goes into a layer, refusing to follow a
/// symlink: entries name regular files, and one swapped for a link since it
/// was listed must not pull a file from elsewhere into the image.
pub fn open_regular(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_contents_are_never_read_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "host file").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("f")).unwrap();
        let entry = Entry::file_from_path("f", dir.path().join("f"), 9);
        assert!(write_tar(&[entry], TarOptions::default(), Vec::new()).is_err());
        assert!(open_regular(&dir.path().join("secret")).is_ok());
    }

    fn tar_bytes(entries: &[Entry], epoch: u64) -> Vec<u8> {
        write_tar(
            entries,
            TarOptions {
                source_date_epoch: epoch,
            },
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"abcd");
        // "12 path=abcd\n" is 13 bytes: 2 digits would give 12, so 13.
        assert_eq!(out, b"13 path=abcd\n");
        // 98 bytes besides the length: "99 " would make 100 bytes, so the
        // length needs three digits and becomes 101.
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'x'; 90]);
        assert_eq!((out.len(), &out[..3]), (99, &b"99 "[..]));
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'x'; 91]);
        assert_eq!((out.len(), &out[..4]), (101, &b"101 "[..]));
    }

    #[test]
    fn header_fields_are_laid_out_as_ustar() {
        let entry = Entry::file("a/b", b"hi".to_vec())
            .with_mode(0o4755)
            .with_owner(1000, 1001)
            .with_mtime(77);
        let bytes = tar_bytes(&[entry], 100);
        let h = &bytes[..BLOCK];
        assert_eq!(&h[..4], b"a/b\0");
        assert_eq!(&h[100..108], b"0004755\0");
        assert_eq!(&h[108..116], b"0001750\0");
        assert_eq!(&h[116..124], b"0001751\0");
        assert_eq!(&h[124..136], b"00000000002\0");
        assert_eq!(&h[136..148], b"00000000115\0");
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..265], b"ustar\x0000");
        assert!(h[265..329].iter().all(|&b| b == 0), "uname/gname empty");
        // Body, padding, two end blocks.
        assert_eq!(&bytes[BLOCK..BLOCK + 2], b"hi");
        assert_eq!(bytes.len(), 4 * BLOCK);
        assert!(bytes[BLOCK + 2..].iter().all(|&b| b == 0));
    }

    #[test]
    fn mtime_is_clamped_to_source_date_epoch() {
        let entry = Entry::dir("d").with_mtime(5_000);
        let h = tar_bytes(std::slice::from_ref(&entry), 0);
        assert_eq!(&h[136..148], b"00000000000\0");
        let h = tar_bytes(std::slice::from_ref(&entry), 1_000);
        assert_eq!(&h[136..148], b"00000001750\0");
        let h = tar_bytes(&[entry], 10_000);
        assert_eq!(&h[136..148], b"00000011610\0");
    }

    #[test]
    fn huge_sizes_and_ids_go_to_pax_records() {
        let entry = Entry::file_from_path("big", PathBuf::from("/nonexistent"), 9 << 30)
            .with_owner(3_000_000, 7);
        let headers = encode_headers(&entry, 0).unwrap();
        assert_eq!(headers.len(), 3 * BLOCK);
        assert_eq!(headers[156], b'x');
        let records = &headers[BLOCK..2 * BLOCK];
        let text = String::from_utf8_lossy(records);
        assert!(
            text.starts_with("19 size=9663676416\n15 uid=3000000\n"),
            "{text}"
        );
        let ustar = &headers[2 * BLOCK..];
        assert_eq!(&ustar[124..136], b"00000000000\0");
        assert_eq!(&ustar[108..116], b"0000000\0");
        assert_eq!(&ustar[116..124], b"0000007\0");
    }

    #[test]
    fn whiteout_helpers_name_the_oci_markers() {
        assert_eq!(Entry::whiteout(b"etc/passwd").path, b"etc/.wh.passwd");
        assert_eq!(Entry::whiteout(b"top").path, b".wh.top");
        assert_eq!(Entry::opaque(b"var/lib").path, b"var/lib/.wh..wh..opq");
        assert_eq!(Entry::opaque(b"").path, b".wh..wh..opq");
        assert_eq!(Entry::opaque(b"x").mode, 0);
    }

    #[test]
    fn rejects_bad_paths_unsorted_entries_and_dangling_hardlinks() {
        for path in ["", "/abs", "a//b", "a/", "a/../b", "./a", "a/."] {
            let err =
                write_tar(&[Entry::dir(path)], TarOptions::default(), Vec::new()).unwrap_err();
            assert!(matches!(err, TarError::InvalidPath { .. }), "{path}: {err}");
        }
        let unsorted = [Entry::dir("b"), Entry::dir("a")];
        let err = write_tar(&unsorted, TarOptions::default(), Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry `a` comes after `b`; sort entries by path bytes (sort_entries) and remove duplicates"
        );
        let duplicate = [Entry::dir("a"), Entry::dir("a")];
        assert!(write_tar(&duplicate, TarOptions::default(), Vec::new()).is_err());
        let dangling = [Entry::hardlink("a", "b")];
        let err = write_tar(&dangling, TarOptions::default(), Vec::new()).unwrap_err();
        assert!(matches!(err, TarError::HardlinkTarget { .. }), "{err}");
        let to_dir = [Entry::dir("a"), Entry::hardlink("b", "a")];
        assert!(write_tar(&to_dir, TarOptions::default(), Vec::new()).is_err());
    }

    #[test]
    fn sort_puts_parents_before_children() {
        let mut entries = vec![
            Entry::file("a/b", Vec::new()),
            Entry::dir("a-b"),
            Entry::dir("a"),
            Entry::file("a/.wh.x", Vec::new()),
        ];
        sort_entries(&mut entries);
        let paths: Vec<_> = entries.iter().map(|e| lossy(&e.path)).collect();
        assert_eq!(paths, ["a", "a-b", "a/.wh.x", "a/b"]);
    }

    #[test]
    fn file_that_changes_size_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let short = Entry::file_from_path("f", path.clone(), 9);
        let err = write_tar(&[short], TarOptions::default(), Vec::new()).unwrap_err();
        assert!(matches!(err, TarError::Changed { found: 5, .. }), "{err}");
        let long = Entry::file_from_path("f", path.clone(), 3);
        let err = write_tar(&[long], TarOptions::default(), Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("expected 3 bytes, found 4 or more"),
            "{err}"
        );
    }
    #[test]
    fn append_reader_writes_the_same_bytes_as_an_in_memory_file() {
        let mut from_reader = TarWriter::new(Vec::new(), TarOptions::default());
        from_reader
            .append_reader("b/blob", 0o644, 5, &mut &b"12345"[..], Path::new("blob"))
            .unwrap();
        let expected = write_tar(
            &[Entry::file("b/blob", b"12345".to_vec())],
            TarOptions::default(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(from_reader.finish().unwrap(), expected);

        let mut writer = TarWriter::new(Vec::new(), TarOptions::default());
        let err = writer
            .append_reader("x", 0o644, 6, &mut &b"12345"[..], Path::new("blob x"))
            .unwrap_err();
        assert!(matches!(err, TarError::Changed { found: 5, .. }), "{err}");
        let mut writer = TarWriter::new(Vec::new(), TarOptions::default());
        let err = writer
            .append_reader("x", 0o644, 4, &mut &b"12345"[..], Path::new("blob x"))
            .unwrap_err();
        assert!(err.to_string().starts_with("`blob x` changed"), "{err}");
    }
}
