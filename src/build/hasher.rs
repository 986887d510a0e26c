//! Content digests of the files a step reads, with a stat cache so that an
//! unchanged rebuild reads no file.
//!
//! Like git's index: a file whose size, mtime, ctime, inode and device are
//! unchanged since it was hashed keeps its digest. A file modified within
//! the same second as it was hashed ("racily clean") could change again
//! without its mtime moving, so such records are not trusted: the file is
//! hashed again. The cache is a hint, never a source of truth for
//! anything but speed: a missing or corrupt cache only costs a re-read.

use crate::layer::digest::{Digest, Sha256};
use crate::layer::tar::Content;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What identifies a file's state on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    stat: Stat,
    digest: Digest,
    /// When the digest was taken (ns since the epoch).
    hashed_at_ns: i128,
}

/// Digests file contents, remembering them by stat data.
#[derive(Debug, Default)]
pub struct ContentHasher {
    records: HashMap<PathBuf, Record>,
    /// Directories whose files are hashed without being remembered: a
    /// build's scratch space, gone when the build ends.
    uncached: Vec<PathBuf>,
    /// Files actually read (for tests and progress).
    pub files_read: u64,
    dirty: bool,
    /// Stat data from this build's context walk, not saved.
    primed: HashMap<PathBuf, Stat>,
}

impl ContentHasher {
    /// Loads a cache saved by [`ContentHasher::save`]; a missing or
    /// unreadable one starts empty.
    pub fn load(path: &Path) -> ContentHasher {
        let records = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        ContentHasher {
            records,
            ..ContentHasher::default()
        }
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
        std::fs::write(
            &tmp,
            serde_json::to_vec(&self.records).map_err(io::Error::other)?,
        )?;
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
        self.primed.insert(path.to_path_buf(), Stat::of(meta));
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
        let stat = match self.primed.get(path) {
            Some(stat) => *stat,
            None => Stat::of(&std::fs::metadata(path)?),
        };
        if let Some(record) = self.records.get(path)
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
            self.records.insert(
                path.to_path_buf(),
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

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = crate::layer::tar::open_regular(path)?;
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
        let cache = dir.path().join("cache.json");
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
    fn racily_clean_files_are_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let mut h = ContentHasher::default();
        h.digest(&Content::Path(file.clone())).unwrap();
        h.digest(&Content::Path(file.clone())).unwrap();
        assert_eq!(h.files_read, 2, "written this second: not trusted");
    }
}
