//! The store's error type: every failure names the file or blob involved and
//! says what to do next.

use std::io;
use std::path::PathBuf;

use hoist_oci::Digest;

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
        "the directory `{path}` is neither empty nor a hoist store; pass an empty or new \
         directory with --store"
    )]
    NotAStore { path: PathBuf },
    #[error(
        "`{path}` is a file, not a directory: --store (or HOIST_STORE) names the directory \
         hoist keeps its store in"
    )]
    NotADirectory { path: PathBuf },
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
        "layout file `{path}` declares OCI image layout version {version}, but hoist reads only \
         1.0.0; pass another directory with --store"
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages people read, from one example of each error.
    #[test]
    fn messages_say_what_failed_and_what_to_do() {
        let path = PathBuf::from("/cache/hoist");
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let errors = [
            io_error("lock", path.join("locks/store.lock"))(io::ErrorKind::PermissionDenied.into()),
            StoreError::Read {
                source: io::ErrorKind::ConnectionReset.into(),
            },
            StoreError::NoDefaultDir,
            StoreError::NotAStore { path: path.clone() },
            StoreError::UnsupportedVersion {
                path: path.clone(),
                found: 2,
                supported: 1,
            },
            StoreError::UnsupportedLayout {
                path: path.join("oci-layout"),
                version: "2.0.0".into(),
            },
            StoreError::Corrupt {
                path: path.join("index.json"),
                reason: "it has no `manifests` array".into(),
            },
            StoreError::CorruptCacheRecord {
                path: path.join("cache/ab/abcd.json"),
                reason: "it holds the record for key `abce`".into(),
            },
            StoreError::DigestMismatch {
                expected: a,
                actual: b,
            },
            StoreError::BlobNotFound { digest: a },
            StoreError::CorruptBlob {
                digest: a,
                actual: b,
            },
            StoreError::SizeMismatch {
                digest: a,
                expected: 5,
                actual: 4,
            },
            StoreError::TooLarge {
                digest: a,
                size: 5_000_000,
                limit: 4_194_304,
            },
            StoreError::InvalidCacheKey { key: "XY".into() },
            StoreError::EmptyReference,
            StoreError::ImageNotFound {
                reference: "docker.io/library/app:latest".into(),
            },
            StoreError::Busy { path },
        ];
        let text = errors
            .iter()
            .map(|e| e.to_string().replace(&a.hex(), "A").replace(&b.hex(), "B"))
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(text, @r"
        cannot lock `/cache/hoist/locks/store.lock`
        cannot read the content to store
        cannot find a directory for the store: neither XDG_CACHE_HOME nor HOME is set; pass --store DIR or set HOIST_STORE
        the directory `/cache/hoist` is neither empty nor a hoist store; pass an empty or new directory with --store
        the store at `/cache/hoist` has format version 2, but this hoist knows only versions up to 1; upgrade hoist or pass another directory with --store
        layout file `/cache/hoist/oci-layout` declares OCI image layout version 2.0.0, but hoist reads only 1.0.0; pass another directory with --store
        store file `/cache/hoist/index.json` is damaged: it has no `manifests` array; move the store directory aside and let hoist create a new one
        cache record `/cache/hoist/cache/ab/abcd.json` is damaged: it holds the record for key `abce`; run `hoist prune` to remove it
        content has digest sha256:B, not the expected sha256:A; the source is damaged or has changed, so fetch or build it again
        blob sha256:A is not in the store; pull or rebuild the image that needs it
        blob sha256:A in the store is damaged (its content hashes to sha256:B); run `hoist prune --verify` to remove it, then rebuild or pull again
        blob sha256:A is 4 bytes but its descriptor says 5; describe the blob with its real size
        blob sha256:A is 5000000 bytes, over the 4194304-byte limit for documents read into memory; open it as a stream instead
        cache key `XY` must be 2 to 128 lowercase hex digits
        an image reference must not be empty
        no image is tagged `docker.io/library/app:latest` in the store; run `hoist images` to list them
        the store at `/cache/hoist` is in use by another hoist process; retry when it has finished
        ");
        for error in &errors {
            let message = error.to_string();
            assert!(message.starts_with(char::is_lowercase), "{message}");
        }
    }
}
