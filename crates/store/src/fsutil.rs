//! Temp files and atomic replacement: the two file-system moves every store
//! write is built from.
//!
//! A [`TempPath`] is removed when dropped unless it was persisted, so an
//! error or a panic cleans up after itself; only a killed process leaves a
//! temp behind, in `tmp/`, where `prune` finds it. Nothing here ever writes
//! in place over a file another process may be reading.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{Result, io_error};

/// Makes temp names unique within this process; the pid makes them unique
/// between processes, and `create_new` catches a stale file left by an
/// earlier process that had the same pid.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file's name, removed on drop unless persisted.
#[derive(Debug)]
pub(crate) struct TempPath {
    path: PathBuf,
    armed: bool,
}

impl TempPath {
    /// Creates a new empty file in `dir` whose name starts with `prefix`.
    pub(crate) fn create(dir: &Path, prefix: &str) -> Result<(File, TempPath)> {
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{prefix}-{pid}-{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((file, TempPath { path, armed: true })),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create a temp file in", dir)(e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temp file to `dest` (atomically replacing what was
    /// there) and makes the rename durable.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(io_error("move a temp file to", dest))?;
        self.armed = false;
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a temp that cannot be removed now is swept by prune.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A directory in `tmp/` for a build's scratch files, removed with
/// everything in it when dropped (a killed process leaves it to `prune`).
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn create(dir: &Path, prefix: &str) -> Result<ScratchDir> {
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{prefix}-{pid}-{n}"));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create a scratch directory in", dir)(e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Replaces `dest` with `data` so that a reader sees either the old or the
/// new content, never a mix, and a crash keeps one of the two.
pub(crate) fn write_atomically(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let (mut file, temp) = TempPath::create(tmp_dir, "file")?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", temp.path()))?;
    drop(file);
    temp.persist(dest)
}

/// Makes a directory's entries (a rename into it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

/// Creates `dir` and its parents if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_temp_is_removed_and_a_persisted_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (_, dropped) = TempPath::create(dir.path(), "t").unwrap();
        let dropped_path = dropped.path().to_path_buf();
        let (_, kept) = TempPath::create(dir.path(), "t").unwrap();
        assert_ne!(dropped_path, kept.path());
        drop(dropped);
        assert!(!dropped_path.exists());
        kept.persist(&dir.path().join("final")).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["final"]);
    }

    #[test]
    fn write_atomically_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("doc");
        fs::write(&dest, b"a much longer old content").unwrap();
        write_atomically(dir.path(), &dest, b"new").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
