//! Where exports read blobs from, and how they make sure a blob is the
//! one its descriptor names.
//!
//! [`BlobSource`] opens blobs by digest (the store implements it;
//! [`MemoryBlobs`] serves generated documents and tests). Every read goes
//! through a `VerifyingReader` that hashes what passes, so a blob whose
//! bytes do not match its digest fails the export instead of reaching an
//! archive. Only small documents are read whole, up to a limit; layers
//! stream.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::Descriptor;
use super::archive::ArchiveError;
use crate::Digest;
use crate::digest::Sha256;

/// Where an export reads blobs from.
pub trait BlobSource {
    /// Opens the blob named `digest` for reading from its start.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>>;
    /// The blob's size in bytes.
    fn size(&self, digest: &Digest) -> io::Result<u64>;
}

/// Blobs kept in memory: generated documents and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobs {
    blobs: BTreeMap<Digest, Vec<u8>>,
}

impl MemoryBlobs {
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    /// Stores `bytes` and returns their digest.
    pub fn insert(&mut self, bytes: Vec<u8>) -> Digest {
        let digest = Digest::of(&bytes);
        self.blobs.insert(digest, bytes);
        digest
    }
}

impl MemoryBlobs {
    fn get(&self, digest: &Digest) -> io::Result<&[u8]> {
        self.blobs
            .get(digest)
            .map(Vec::as_slice)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no blob {digest}")))
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.get(digest)?))
    }

    fn size(&self, digest: &Digest) -> io::Result<u64> {
        Ok(self.get(digest)?.len() as u64)
    }
}

/// Reads a whole document blob of at most `limit` bytes, checking its
/// size and digest.
pub(super) fn read_small_blob(
    descriptor: &Descriptor,
    source: &dyn BlobSource,
    limit: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let digest = descriptor.digest;
    if descriptor.size > limit {
        return Err(ArchiveError::TooLarge {
            digest,
            size: descriptor.size,
            limit,
        });
    }
    let mut reader = open_verified(&digest, source)?;
    let mut bytes = Vec::new();
    (&mut reader)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ArchiveError::Open { digest, source })?;
    if bytes.len() as u64 != descriptor.size {
        return Err(ArchiveError::Size {
            digest,
            expected: descriptor.size,
            found: bytes.len() as u64,
        });
    }
    reader.check()?;
    Ok(bytes)
}

/// Opens `digest` in `source` behind a reader that checks its digest.
pub(super) fn open_verified<'a>(
    digest: &Digest,
    source: &'a dyn BlobSource,
) -> Result<VerifyingReader<Box<dyn Read + 'a>>, ArchiveError> {
    let inner = source.open(digest).map_err(|source| ArchiveError::Open {
        digest: *digest,
        source,
    })?;
    Ok(VerifyingReader::new(inner, *digest))
}

/// Hashes what it reads so the stream can be checked once fully read.
pub(super) struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected: Digest,
    /// Whether the inner reader returned an error.
    pub(super) failed: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub(super) fn new(inner: R, expected: Digest) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            expected,
            failed: false,
        }
    }

    /// Fails unless everything read so far hashes to the expected digest.
    pub(super) fn check(self) -> Result<(), ArchiveError> {
        let found = self.hasher.finish();
        if found == self.expected {
            Ok(())
        } else {
            Err(ArchiveError::Digest {
                digest: self.expected,
                found,
            })
        }
    }

    /// As `check`, for a decompressed `layer` whose expected digest is its
    /// diffID.
    pub(super) fn check_diff_id(self, layer: Digest) -> Result<(), ArchiveError> {
        let expected = self.expected;
        self.check().map_err(|e| match e {
            ArchiveError::Digest { found, .. } => ArchiveError::DiffId {
                digest: layer,
                expected,
                found,
            },
            other => other,
        })
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
