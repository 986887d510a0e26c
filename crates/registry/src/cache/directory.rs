//! The cache in a directory (`--cache-to type=local,dest=DIR`), for
//! runners with a persistent volume: the registry format laid out as
//! files.
//!
//! ```text
//! DIR/entries/<key hex>.json   an entry's manifest, as a registry tag holds it
//! DIR/blobs/sha256/<hex>       the layers entries name
//! ```
//!
//! Every file is written under a temporary name in its directory and
//! renamed into place, a layer before the entries that name it, so a
//! reader never sees half a file or an entry whose layer is missing, and
//! writers of different keys never touch the same file.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{Entry, REFRESH_AFTER, Step, Unusable};
use hoist_oci::Digest;
use hoist_store::Store;

/// An entry file larger than this is not an entry.
const MAX_ENTRY: u64 = 1 << 20;

/// A cache directory.
#[derive(Debug, Clone)]
pub struct DirectoryCache {
    root: PathBuf,
}

/// A cache directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct DirectoryError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, DirectoryError>;

fn failed(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DirectoryError {
    let path = path.to_owned();
    move |source| DirectoryError {
        action,
        path,
        source,
    }
}

/// What an export to a directory did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryExported {
    pub written: usize,
    pub kept: usize,
    pub bytes_copied: u64,
}

impl DirectoryCache {
    pub fn new(root: impl Into<PathBuf>) -> DirectoryCache {
        DirectoryCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, key: &Digest) -> PathBuf {
        self.root
            .join("entries")
            .join(format!("{}.json", key.hex()))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The entry for `key`: `None` when the directory has none, else the
    /// entry or why it cannot be used.
    pub fn lookup(&self, key: &Digest) -> Result<Option<std::result::Result<Entry, Unusable>>> {
        let path = self.entry_path(key);
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed("read", &path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_ENTRY)
            .read_to_end(&mut bytes)
            .map_err(failed("read", &path))?;
        Ok(Some(Entry::from_manifest(key, &bytes)))
    }

    /// Copies the layer `blob` of an entry into `store`, checked against
    /// its digest as it streams.
    pub fn import(&self, store: &Store, blob: &Digest) -> Result<()> {
        if store.has_blob(blob) {
            return Ok(());
        }
        let path = self.blob_path(blob);
        let file = fs::File::open(&path).map_err(failed("read", &path))?;
        store
            .put_blob(file, Some(blob))
            .map_err(|e| failed("import", &path)(io::Error::other(e)))?;
        Ok(())
    }

    /// Writes `entries`, whose layers `store` holds: an entry the
    /// directory has with the same result, written less than
    /// [`REFRESH_AFTER`] before `now`, is kept; the others are written
    /// with `created` = `now`, each layer before its entry.
    pub fn export(&self, store: &Store, entries: &[Entry], now: u64) -> Result<DirectoryExported> {
        let mut exported = DirectoryExported::default();
        for entry in entries {
            if let Ok(Some(Ok(found))) = self.lookup(&entry.key)
                && found.same_step(entry)
                && now.saturating_sub(found.created) < REFRESH_AFTER
            {
                exported.kept += 1;
                continue;
            }
            if let Step::Layer(layer) = &entry.step {
                exported.bytes_copied += self.copy_blob(store, &layer.digest)?;
            }
            let entry = Entry {
                created: now,
                ..entry.clone()
            };
            let path = self.entry_path(&entry.key);
            write_replacing(&path, &mut &entry.to_manifest()[..])?;
            exported.written += 1;
        }
        Ok(exported)
    }

    /// Copies a blob of the store into the directory unless it has a
    /// file of the blob's size there; returns the bytes copied.
    fn copy_blob(&self, store: &Store, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        let size = store
            .blob_size(digest)
            .map_err(|e| failed("read", &store.blob_path(digest))(io::Error::other(e)))?;
        if fs::metadata(&path).is_ok_and(|m| m.len() == size) {
            return Ok(0);
        }
        let mut source = store
            .open_blob_verified(digest)
            .map_err(|e| failed("read", &store.blob_path(digest))(io::Error::other(e)))?;
        write_replacing(&path, &mut source)?;
        Ok(size)
    }
}

/// Writes what `source` yields to `path` through a temporary file beside
/// it (`.partial-PID-N`), synced and renamed into place; removed on
/// failure.
fn write_replacing(path: &Path, source: &mut dyn Read) -> Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().expect("cache paths have a directory");
    fs::create_dir_all(dir).map_err(failed("create", dir))?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(".partial-{}-{n}", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        io::copy(source, &mut file)?;
        file.flush()?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(failed("write", path)(e));
    }
    Ok(())
}
