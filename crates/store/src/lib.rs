//! hoist-store: hoist's content-addressed blobs, tags and build cache, kept as
//! an OCI image layout on disk that other tools (skopeo, umoci) can read.
//!
//! [`Store::open`] takes a directory (by default [`Store::default_dir`]) and
//! creates or checks the layout:
//!
//! ```text
//! oci-layout          {"imageLayoutVersion":"1.0.0"}
//! index.json          tagged images: manifest descriptors named by
//!                     `org.opencontainers.image.ref.name`
//! blobs/sha256/<hex>  every blob, named by the SHA-256 of its content
//! hoist.json          {"hoistStoreVersion":N}, the format of hoist's own parts
//! cache/ab/<key>.json build cache records (step cache key -> result)
//! snapshots/<diffID>/  extracted layers: `content/` (plain files COPY reads),
//!                     `index` and `rootfs*/` (RUN's overlay lower
//!                     directories); see [`Snapshot`]
//! mounts/cache/<hex>  RUN --mount=type=cache directories, by SHA-256 of id
//! damaged/<hex>      blobs a build found damaged, until the next verify
//! remote/<hex>.json   blobs the store's images name but it does not hold:
//!                     the repository they are fetched or mounted from
//! pushed/<hash>.json  what the last push to each destination left there
//!                     (digest, media type, blobs, time; see `Store::pushed`)
//! tmp/                blobs and documents being written
//! locks/              lock files (see below)
//! ```
//!
//! The store must never expose a blob before its digest is verified: blobs
//! are streamed into `tmp/` (on the same file system), hashed as they are
//! written, synced and only then renamed to their real name, so a crash at
//! any point leaves at worst a stale temp file, which `prune` removes.
//! Documents that change (`index.json`, cache records) are likewise written
//! whole to a temp file and renamed over the old one: a reader sees the old
//! or the new file, never a torn one. Nothing here holds a whole blob in
//! memory except [`Store::read_blob_bytes`], which is capped.
//!
//! # Sharing a store: the lock protocol
//!
//! Any number of hoist processes (and threads, each with its own handle)
//! may use one store at once. Two `flock(2)` locks in `locks/` keep them
//! apart; the kernel releases them when a process dies, so a crash never
//! leaves the store locked.
//!
//! - `locks/store.lock`: every [`Store`] handle holds it *shared* from
//!   [`Store::open`] until it is dropped, so a handle is a promise that
//!   blobs it writes stay put until it is gone. Prune and image removal
//!   upgrade their handle to *exclusive* (they take `&mut self`, so no call
//!   on that handle is in flight) and therefore run only while no other
//!   handle is open anywhere: prune can never delete a blob that a running
//!   build has written but not yet tagged or cached. A build should hold
//!   one handle for its whole run, and no longer.
//! - `locks/index.lock`: taken *exclusive*, briefly, around every
//!   read-modify-write of `index.json` (tag, untag) and around setting a
//!   store up, so concurrent tags are never lost. Readers take no lock:
//!   `index.json` is replaced by rename, never rewritten in place.
//!
//! Blobs need no lock of their own: a blob's name is its content, so two
//! writers of one blob write the same bytes, and the rename that names it
//! is atomic. Cache records likewise are each one file replaced by rename.
//! Locks are always taken in the order store lock, then index lock.
//!
//! Depends only on hoist-oci: the store knows blobs, documents and the
//! layout of what others extract, never Dockerfiles, registries or RUN.

mod blob;
mod blocks;
mod cache;
mod error;
mod fsutil;
mod gc;
mod health;
mod index;
mod json;
mod lock;
mod pushed;
mod remote;
mod snapshot;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

use std::fs;
use std::path::{Path, PathBuf};

pub use blob::{BlobWriter, VerifiedBlob};
pub use cache::{CacheRecord, CacheValue, CachedLayer};
pub use error::{Result, StoreError};
pub use fsutil::ScratchDir;
pub use gc::{PruneOptions, PruneReport, RemovedImage, VerifyReport};
pub use health::Affected;
pub use json::{
    Descriptor, OCI_INDEX, OCI_MANIFEST, REF_NAME, canonical, descriptor_from_json,
    descriptor_to_json,
};
pub use pushed::PushRecord;
pub use remote::RemoteBlob;
pub use snapshot::Snapshot;

use error::io_error;
use fsutil::{ensure_dir, write_atomically};
use lock::{ExclusiveLock, INDEX_LOCK, StoreLock};

/// The format of hoist's own parts of the store (cache records, snapshots,
/// locks). Bump it when an older hoist would misread a newer store.
pub const STORE_VERSION: u64 = 1;

/// The OCI image layout version this store writes and reads.
const LAYOUT_VERSION: &str = "1.0.0";

/// Names hoist creates at the top of a store; a directory holding only
/// these is a store being set up by another process.
const STORE_ENTRIES: &[&str] = &[
    "oci-layout",
    "index.json",
    "blobs",
    "hoist.json",
    "cache",
    "snapshots",
    "mounts",
    "tmp",
    "locks",
    "pushed",
    "blocks",
    "damaged",
    "remote",
];

/// An open store. Operations take `&self`, so one handle can serve many
/// threads; only prune and image removal need `&mut self`. While a handle
/// is open no other process can prune the store, so hold one for a
/// command's run and drop it when done.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Shared for as long as the handle lives (see the protocol above).
    lock: StoreLock,
}

impl Store {
    /// Where the store lives unless the caller says otherwise:
    /// `$XDG_CACHE_HOME/hoist`, or `~/.cache/hoist` when that is unset.
    pub fn default_dir() -> Result<PathBuf> {
        default_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
    }

    /// Opens the store in `dir`, creating it if the directory is missing
    /// or empty. Refuses a directory holding anything else, and a store
    /// written by a newer hoist. Waits while another process prunes it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir.as_ref(), true)
    }

    /// [`open`](Store::open), but fails with [`StoreError::Busy`] instead
    /// of waiting while another process prunes the store (so a command can
    /// say why it waits before calling `open`).
    pub fn try_open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir.as_ref(), false)
    }

    fn open_with(dir: &Path, wait: bool) -> Result<Store> {
        // Absolute: RUN's sandbox changes directory into the store before
        // mounting its overlay, where a relative `--store` would name
        // nothing.
        let root = std::path::absolute(dir).map_err(|source| StoreError::Io {
            action: "resolve the store directory",
            path: dir.to_path_buf(),
            source,
        })?;
        // Check before touching anything, so hoist never writes into a
        // stranger's directory or a newer hoist's store.
        check_claimable(&root)?;
        check_version(&root)?;
        ensure_dir(&root.join("locks"))?;
        let lock = StoreLock::shared(&root, wait)?;
        let store = Store { root, lock };
        // Two processes may create one store at once: one sets it up, the
        // other then finds it complete.
        let _index = ExclusiveLock::wait(&store.root, INDEX_LOCK)?;
        store.init()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.path("tmp")
    }

    /// A new directory in `tmp/` for scratch files, removed when dropped.
    pub fn scratch_dir(&self, prefix: &str) -> Result<ScratchDir> {
        ScratchDir::create(&self.tmp_dir(), prefix)
    }

    /// Creates whatever part of the layout is missing and checks the rest.
    fn init(&self) -> Result<()> {
        for dir in ["blobs/sha256", "cache", "snapshots", "tmp", "locks"] {
            ensure_dir(&self.path(dir))?;
        }
        let tmp = self.tmp_dir();

        let layout = self.path("oci-layout");
        match read_json_file(&layout)? {
            None => {
                let doc = serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION });
                write_atomically(&tmp, &layout, &json::canonical(&doc))?;
            }
            Some(doc) => match doc.get("imageLayoutVersion").and_then(|v| v.as_str()) {
                Some(LAYOUT_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::UnsupportedLayout {
                        path: layout,
                        version: other.to_owned(),
                    });
                }
                None => {
                    return Err(StoreError::Corrupt {
                        path: layout,
                        reason: "it has no string `imageLayoutVersion`".into(),
                    });
                }
            },
        }

        let index = self.path("index.json");
        if read_json_file(&index)?.is_none() {
            write_atomically(&tmp, &index, &json::canonical(&json::empty_index()))?;
        }
        self.read_index()?;

        let version = self.path("hoist.json");
        if !version.exists() {
            let doc = serde_json::json!({ "hoistStoreVersion": STORE_VERSION });
            write_atomically(&tmp, &version, &json::canonical(&doc))?;
        }
        check_version(&self.root)
    }
}

fn check_claimable(root: &Path) -> Result<()> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(StoreError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        Err(e) => return Err(io_error("read directory", root)(e)),
    };
    let mut known = true;
    for entry in entries {
        let entry = entry.map_err(io_error("read directory", root))?;
        let name = entry.file_name();
        if name == "oci-layout" {
            // An OCI layout written by another tool: hoist adds its own
            // parts beside it and keeps every image it lists.
            return Ok(());
        }
        // `lost+found` is there when the store is the root of its own
        // ext4 volume, a natural home for a CI cache.
        known &= name == "lost+found" || name.to_str().is_some_and(|n| STORE_ENTRIES.contains(&n));
    }
    if known {
        Ok(())
    } else {
        Err(StoreError::NotAStore {
            path: root.to_path_buf(),
        })
    }
}

/// Refuses a store whose `hoist.json` names a version this hoist does
/// not know; a missing file is a store still being created.
fn check_version(root: &Path) -> Result<()> {
    let path = root.join("hoist.json");
    let Some(doc) = read_json_file(&path)? else {
        return Ok(());
    };
    let found = doc
        .get("hoistStoreVersion")
        .and_then(|v| v.as_u64())
        .filter(|&v| v >= 1)
        .ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            reason: "it has no positive integer `hoistStoreVersion`".into(),
        })?;
    if found > STORE_VERSION {
        return Err(StoreError::UnsupportedVersion {
            path: root.to_path_buf(),
            found,
            supported: STORE_VERSION,
        });
    }
    Ok(())
}

/// [`Store::default_dir`] with the environment passed in, for tests.
fn default_dir_from(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    // The XDG base directory spec says a relative path in XDG_CACHE_HOME is
    // invalid and must be ignored.
    if let Some(xdg) = xdg_cache_home.map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg.join("hoist"));
    }
    match home {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".cache").join("hoist")),
        _ => Err(StoreError::NoDefaultDir),
    }
}

/// Reads a small JSON document; `None` when the file does not exist.
fn read_json_file(path: &Path) -> Result<Option<serde_json::Value>> {
    read_json_as(path, "valid JSON")
}

/// Reads a small JSON document as `T`; `None` when the file does not
/// exist; `what` names what it should be in the error (`a push record`).
pub(crate) fn read_json_as<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("it is not {what} ({e})"),
        })
}

#[cfg(test)]
mod tests;
