//! File locks (`flock(2)` through `std::fs::File::lock`) that let several
//! hoist processes share one store. The protocol is described in the
//! module docs of [`crate`].
//!
//! Each lock is taken on a file descriptor of its own, so threads of one
//! process exclude each other exactly as processes do. The kernel drops a
//! process's locks when it dies, so a crash never leaves the store locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use super::Store;
use super::error::{Result, StoreError, io_error};

/// Held by every open [`Store`] (shared) and by prune (exclusive).
pub(crate) const STORE_LOCK: &str = "locks/store.lock";
/// Held (exclusive) around every read-modify-write of `index.json`.
pub(crate) const INDEX_LOCK: &str = "locks/index.lock";

/// The lock file `path`, made if missing. A store this process may only
/// read (a read-only mount, another user's cache) has its lock files
/// opened for reading: `flock` needs no write access, so reading commands
/// still lock as they should.
fn open_lock_file(path: &Path) -> Result<File> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    match opened {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) && path.exists() =>
        {
            File::open(path).map_err(io_error("open lock file", path))
        }
        other => other.map_err(io_error("open lock file", path)),
    }
}

/// Runs a blocking `flock`, again if a signal handler interrupted it
/// (`EINTR`), as one may while another process holds the lock for long.
fn blocking(mut lock: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    loop {
        match lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The store-wide lock, shared while the handle lives.
#[derive(Debug)]
pub(crate) struct StoreLock {
    file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the shared lock. While a prune holds it exclusively, waits,
    /// or with `wait` false fails with [`StoreError::Busy`].
    pub(crate) fn shared(root: &Path, wait: bool) -> Result<StoreLock> {
        let path = root.join(STORE_LOCK);
        let file = open_lock_file(&path)?;
        if wait {
            blocking(|| file.lock_shared()).map_err(io_error("lock", &path))?;
        } else {
            match file.try_lock_shared() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Busy {
                        path: root.to_path_buf(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io_error("lock", &path)(e)),
            }
        }
        Ok(StoreLock { file, path })
    }
}

/// An exclusive lock released when dropped (closing the descriptor
/// releases it).
#[derive(Debug)]
pub(crate) struct ExclusiveLock {
    _file: File,
}

impl ExclusiveLock {
    /// Takes the exclusive lock on `root/name`, waiting for other holders.
    pub(crate) fn wait(root: &Path, name: &str) -> Result<ExclusiveLock> {
        let path = root.join(name);
        let file = open_lock_file(&path)?;
        blocking(|| file.lock()).map_err(io_error("lock", &path))?;
        Ok(ExclusiveLock { _file: file })
    }
}

impl Store {
    /// Runs `f` while this handle holds the store lock exclusively: no
    /// other handle, in this process or another, is open meanwhile. With
    /// `wait` false, fails with [`StoreError::Busy`] instead of waiting.
    ///
    /// `&mut self` makes the borrow checker prove that no blob writer or
    /// other call on this very handle is in flight.
    pub(crate) fn with_exclusive<T>(
        &mut self,
        wait: bool,
        f: impl FnOnce(&Store) -> Result<T>,
    ) -> Result<T> {
        let lock = &self.lock;
        // flock converts a shared lock to an exclusive one by dropping it
        // first; doing it in two explicit steps makes that visible (and two
        // handles upgrading at once cannot deadlock).
        lock.file.unlock().map_err(io_error("unlock", &lock.path))?;
        let taken = if wait {
            blocking(|| lock.file.lock()).map_err(io_error("lock", &lock.path))
        } else {
            match lock.file.try_lock() {
                Ok(()) => Ok(()),
                Err(TryLockError::WouldBlock) => Err(StoreError::Busy {
                    path: self.root.clone(),
                }),
                Err(TryLockError::Error(e)) => Err(io_error("lock", &lock.path)(e)),
            }
        };
        let result = taken.and_then(|()| f(self));
        // Back to shared, as every open handle holds it.
        // If `f` panics the handle stays exclusive until it is dropped,
        // which unwinding does; other processes just wait a little longer.
        lock.file
            .unlock()
            .and_then(|()| blocking(|| lock.file.lock_shared()))
            .map_err(io_error("lock", &lock.path))?;
        result
    }
}
