//! The store's error type: every failure names the file or blob involved and
//! says what to do next.

use std::io;
use std::path::PathBuf;

use crate::layer::Digest;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the content to store")]
    Read {
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot find a directory for the store: neither XDG_CACHE_HOME nor HOME is set; \
         pass --store DIR or set HOIST_STORE"
    )]
    NoDefaultDir,
    #[error(
        "`{path}` is neither empty nor a hoist store; pass an empty or new directory with --store"
    )]
    NotAStore { path: PathBuf },
    #[error(
        "the store at `{path}` has format version {found}, but this hoist knows only versions up \
         to {supported}; upgrade hoist or pass another directory with --store"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error(
        "`{path}` declares OCI image layout version {version}, but hoist reads only 1.0.0; pass \
         another directory with --store"
    )]
    UnsupportedLayout { path: PathBuf, version: String },
    #[error(
        "store file `{path}` is damaged: {reason}; move the store directory aside and let hoist \
         create a new one"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cache record `{path}` is damaged: {reason}; run `hoist prune` to remove it")]
    CorruptCacheRecord { path: PathBuf, reason: String },
    #[error(
        "content has digest {actual}, not the expected {expected}; the source is damaged or has \
         changed, so fetch or build it again"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is not in the store; pull or rebuild the image that needs it")]
    BlobNotFound { digest: Digest },
    #[error(
        "blob {digest} in the store is damaged (its content hashes to {actual}); run \
         `hoist prune --verify` to remove it, then rebuild or pull again"
    )]
    CorruptBlob { digest: Digest, actual: Digest },
    #[error(
        "blob {digest} is {actual} bytes but its descriptor says {expected}; describe the blob \
         with its real size"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "blob {digest} is {size} bytes, over the {limit}-byte limit for documents read into \
         memory; open it as a stream instead"
    )]
    TooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("cache key `{key}` must be 2 to 128 lowercase hex digits")]
    InvalidCacheKey { key: String },
    #[error("an image reference must not be empty")]
    EmptyReference,
    #[error("no image is tagged `{reference}` in the store; run `hoist images` to list them")]
    ImageNotFound { reference: String },
    #[error("the store at `{path}` is in use by another hoist process; retry when it has finished")]
    Busy { path: PathBuf },
}

/// Shorthand for the store's results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Wraps an `io::Error` with what was being done to which path.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}
