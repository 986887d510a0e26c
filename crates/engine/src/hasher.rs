//! Content digests of the files a step reads, with a stat cache so that an
//! unchanged rebuild reads no file.
//!
//! Like git's index: a file whose size, mtime, ctime, inode and device are
//! unchanged since it was hashed keeps its digest. A file modified within
//! the same second as it was hashed ("racily clean") could change again
//! without its mtime moving, so such records are not trusted: the file is
//! hashed again. The cache is a hint, never a source of truth for
//! anything but speed: a missing or corrupt cache only costs a re-read.
//!
//! The cache file is binary (see [`encode`]) and is read on a thread of its
//! own while the build walks its context: a warm rebuild of a large context
//! spends its time in `lstat`, not in parsing what it already knew.

use hoist_oci::digest::{Digest, Sha256};
use hoist_oci::layer::tar::Content;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// What identifies a file's state on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    stat: Stat,
    digest: Digest,
    /// When the digest was taken (ns since the epoch).
    hashed_at_ns: i128,
}

/// Paths as bytes: hashing a `Path` walks its components, bytes are
/// hashed at once.
type Records = HashMap<OsString, Record>;

/// Digests file contents, remembering them by stat data.
#[derive(Debug, Default)]
pub struct ContentHasher {
    records: Records,
    /// Where the saved records are, until they are asked for.
    unread: Option<PathBuf>,
    /// The saved records, still being read.
    loading: Option<JoinHandle<Records>>,
    /// Directories whose files are hashed without being remembered: a
    /// build's scratch space, gone when the build ends.
    uncached: Vec<PathBuf>,
    /// Files actually read (for tests and progress).
    pub files_read: u64,
    dirty: bool,
    /// Stat data from this build's context walk, not saved.
    primed: HashMap<OsString, Stat>,
}

impl ContentHasher {
    /// A hasher with the cache saved by [`ContentHasher::save`] at `path`,
    /// read only when it is needed ([`ContentHasher::start_loading`], or
    /// the first digest): a build whose steps need no content digest never
    /// reads it. A missing or unreadable one starts empty.
    pub fn load(path: &Path) -> ContentHasher {
        ContentHasher {
            unread: Some(path.to_path_buf()),
            ..ContentHasher::default()
        }
    }

    /// Starts reading the saved cache on another thread, once: a caller
    /// about to walk a directory tree overlaps the two.
    pub fn start_loading(&mut self) {
        let Some(path) = self.unread.take() else {
            return;
        };
        self.loading = std::thread::Builder::new()
            .name("stat-cache".into())
            .spawn(move || {
                std::fs::read(&path)
                    .ok()
                    .and_then(|bytes| decode(&bytes))
                    .unwrap_or_default()
            })
            .ok();
    }

    /// The records, once the loading thread is done.
    fn records(&mut self) -> &mut Records {
        self.start_loading();
        if let Some(loading) = self.loading.take() {
            let mut loaded = loading.join().unwrap_or_default();
            // Records taken while loading are newer.
            loaded.extend(self.records.drain());
            self.records = loaded;
        }
        &mut self.records
    }

    /// Saves the cache (atomically: temp file then rename) if it changed.
    pub fn save(&mut self, path: &Path) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, encode(self.records()))?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    /// Files under `dir` are hashed every time, and never written into the
    /// cache (their paths will not exist again).
    pub fn uncached(&mut self, dir: PathBuf) {
        self.uncached.push(dir);
    }

    /// Records what a directory walk just learnt about `path` (its
    /// `lstat`), so the digest does not stat it again.
    pub fn prime(&mut self, path: &Path, meta: &std::fs::Metadata) {
        self.primed
            .insert(path.as_os_str().to_owned(), Stat::of(meta));
    }

    /// The SHA-256 of a file's content.
    pub fn digest(&mut self, content: &Content) -> io::Result<Digest> {
        match content {
            Content::Bytes(bytes) => Ok(Digest::of(bytes)),
            Content::Path(path) => self.digest_path(path),
        }
    }

    fn digest_path(&mut self, path: &Path) -> io::Result<Digest> {
        if self.uncached.iter().any(|dir| path.starts_with(dir)) {
            self.files_read += 1;
            return hash_file(path);
        }
        let stat = match self.primed.get(path.as_os_str()) {
            Some(stat) => *stat,
            None => Stat::of(&std::fs::metadata(path)?),
        };
        if let Some(record) = self.records().get(path.as_os_str())
            && record.stat == stat
            // Racily clean: modified in the same second it was hashed.
            && stat.mtime_ns.div_euclid(1_000_000_000) < record.hashed_at_ns.div_euclid(1_000_000_000)
        {
            return Ok(record.digest);
        }
        let hashed_at_ns = now_ns();
        let digest = hash_file(path)?;
        self.files_read += 1;
        // The file changed while it was read: do not remember it.
        if Stat::of(&std::fs::metadata(path)?) == stat {
            self.records().insert(
                path.as_os_str().to_owned(),
                Record {
                    stat,
                    digest,
                    hashed_at_ns,
                },
            );
            self.dirty = true;
        }
        Ok(digest)
    }
}

/// The first bytes of a saved cache; another version is ignored.
const MAGIC: &[u8] = b"hoist stat cache 1\n";

/// A record's bytes after its path: size, mtime, ctime, ino, dev, digest,
/// hashed-at, little-endian.
const FIXED: usize = 8 + 16 + 16 + 8 + 8 + 32 + 16;

/// The cache file: [`MAGIC`], then per record the path's length (u32 LE),
/// the path and [`FIXED`] bytes.
fn encode(records: &Records) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + records.len() * (FIXED + 64));
    out.extend_from_slice(MAGIC);
    for (path, r) in records {
        let path = path.as_bytes();
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&r.stat.size.to_le_bytes());
        out.extend_from_slice(&r.stat.mtime_ns.to_le_bytes());
        out.extend_from_slice(&r.stat.ctime_ns.to_le_bytes());
        out.extend_from_slice(&r.stat.ino.to_le_bytes());
        out.extend_from_slice(&r.stat.dev.to_le_bytes());
        out.extend_from_slice(r.digest.as_bytes());
        out.extend_from_slice(&r.hashed_at_ns.to_le_bytes());
    }
    out
}

/// [`encode`]'s inverse; `None` for anything else (the cache is rebuilt).
fn decode(bytes: &[u8]) -> Option<Records> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
    let i128_at = |b: &[u8], at: usize| i128::from_le_bytes(b[at..at + 16].try_into().expect("16"));
    let mut records = Records::new();
    loop {
        let Some(len) = take(4) else {
            return Some(records);
        };
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let path = OsString::from_vec(take(len)?.to_vec());
        let f = take(FIXED)?;
        let digest = Digest::from_bytes(f[56..88].try_into().ok()?);
        let record = Record {
            stat: Stat {
                size: u64_at(f, 0),
                mtime_ns: i128_at(f, 8),
                ctime_ns: i128_at(f, 24),
                ino: u64_at(f, 40),
                dev: u64_at(f, 48),
            },
            digest,
            hashed_at_ns: i128_at(f, 88),
        };
        records.insert(path, record);
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = hoist_oci::layer::tar::open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_read_again_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "one").unwrap();
        // Old enough not to be racily clean.
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_file_mtime(&file, old).unwrap();
        let cache = dir.path().join("stat-cache");
        let mut h = ContentHasher::load(&cache);
        let d1 = h.digest(&Content::Path(file.clone())).unwrap();
        assert_eq!(d1, Digest::of(b"one"));
        h.save(&cache).unwrap();

        let mut h = ContentHasher::load(&cache);
        assert_eq!(h.digest(&Content::Path(file.clone())).unwrap(), d1);
        assert_eq!(h.files_read, 0, "served from the stat cache");

        std::fs::write(&file, "two").unwrap();
        filetime::set_file_mtime(&file, old).unwrap();
        assert_eq!(
            h.digest(&Content::Path(file.clone())).unwrap(),
            Digest::of(b"two"),
            "ctime moved"
        );
        assert_eq!(h.files_read, 1);
    }

    #[test]
    fn the_cache_file_round_trips_and_anything_else_is_empty() {
        let mut records = Records::new();
        records.insert(
            OsString::from("/ctx/a file"),
            Record {
                stat: Stat {
                    size: 3,
                    mtime_ns: -5,
                    ctime_ns: 1 << 70,
                    ino: 9,
                    dev: 10,
                },
                digest: Digest::of(b"abc"),
                hashed_at_ns: 42,
            },
        );
        let bytes = encode(&records);
        assert_eq!(decode(&bytes), Some(records));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b"{}"), None);
    }

    #[test]
    fn racily_clean_files_are_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        // Modified in a second not over when it is hashed, whatever the
        // machine's speed: a write in that second would not change the
        // recorded stat.
        let later = now_ns().div_euclid(1_000_000_000) as i64 + 3600;
        filetime::set_file_mtime(&file, filetime::FileTime::from_unix_time(later, 0)).unwrap();
        let mut h = ContentHasher::default();
        h.digest(&Content::Path(file.clone())).unwrap();
        h.digest(&Content::Path(file.clone())).unwrap();
        assert_eq!(
            h.files_read, 2,
            "not modified before it was hashed: not trusted"
        );
    }
}
