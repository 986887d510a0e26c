//! Blobs: content-addressed files under `blobs/sha256/`.
//!
//! A blob only ever appears under its real name after its content has been
//! hashed, checked against the digest the caller expected, and synced to
//! disk; until then it is a temp file in `tmp/`. A blob is never modified
//! after it is named: it is made read-only, and a second copy of the same
//! content is discarded rather than written over the first.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::Store;
use super::error::{Result, StoreError, io_error};
use super::fsutil::TempPath;
use hoist_oci::Digest;
use hoist_oci::DigestWriter;
use hoist_oci::digest::Sha256;

/// Buffer size for streaming blobs: large enough that hashing, not system
/// calls, dominates.
const BUFFER: usize = 128 * 1024;

/// A blob being written: stream its content in through [`Write`], then
/// [`commit`](BlobWriter::commit) it. Dropping it without committing
/// removes the temp file.
pub struct BlobWriter<'a> {
    out: DigestWriter<BufWriter<File>>,
    temp: TempPath,
    store: &'a Store,
}

impl std::fmt::Debug for BlobWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.temp.path())
            .field("len", &self.out.len())
            .finish()
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter<'_> {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.out.len()
    }

    /// True when nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Checks the content against `expected` (when given), makes it durable
    /// and names it by its digest. Returns the digest and size. On a
    /// mismatch the temp file is removed and nothing is stored.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.commit_with(expected, false)
    }

    /// [`BlobWriter::commit`], replacing a stored copy of the blob even of
    /// the right size: for content written because the stored copy was
    /// found damaged.
    pub fn commit_replacing(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.commit_with(expected, true)
    }

    fn commit_with(self, expected: Option<&Digest>, replace: bool) -> Result<(Digest, u64)> {
        let BlobWriter { out, temp, store } = self;
        let (digest, size, buffered) = out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| io_error("write", temp.path())(e.into_error()))?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual: digest,
            });
        }
        let dest = store.blob_path(&digest);
        // Keep a blob that is already there: it may be open in another
        // process, and syncing a second copy would be wasted. A copy of
        // the wrong size is damaged, though, and this verified one
        // replaces it (the rename is atomic for readers).
        if !replace && fs::metadata(&dest).is_ok_and(|meta| meta.is_file() && meta.len() == size) {
            return Ok((digest, size));
        }
        file.set_permissions(Permissions::from_mode(0o444))
            .and_then(|()| file.sync_all())
            .map_err(io_error("write", temp.path()))?;
        drop(file);
        temp.persist(&dest)?;
        Ok((digest, size))
    }
}

/// A blob being read that checks its content against its digest as it
/// goes: the read that reaches the end fails with
/// [`io::ErrorKind::InvalidData`] (wrapping [`StoreError::CorruptBlob`])
/// when the content was damaged on disk, so a push or an export never
/// finishes with bad bytes.
pub struct VerifiedBlob {
    file: File,
    hasher: Sha256,
    digest: Digest,
    size: u64,
    checked: bool,
}

impl std::fmt::Debug for VerifiedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBlob")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish()
    }
}

impl VerifiedBlob {
    /// The blob's size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !buf.is_empty() && !self.checked {
            let actual = self.hasher.clone().finish();
            if actual != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    StoreError::CorruptBlob {
                        digest: self.digest,
                        actual,
                    },
                ));
            }
            self.checked = true;
        }
        Ok(n)
    }
}

impl Store {
    /// Starts a blob whose content the caller streams in (the layer
    /// pipeline writes compressed output through it).
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let (file, temp) = TempPath::create(&self.tmp_dir(), "blob")?;
        Ok(BlobWriter {
            out: DigestWriter::new(BufWriter::with_capacity(BUFFER, file)),
            temp,
            store: self,
        })
    }

    /// Stores everything `reader` yields as a blob, checked against
    /// `expected` when given. Returns its digest and size. The reader is
    /// always read to the end, so a caller that knows the digest and can
    /// skip a download asks [`has_blob`](Store::has_blob) first.
    pub fn put_blob(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let mut writer = self.blob_writer()?;
        let mut buf = vec![0; BUFFER];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(StoreError::Read { source }),
            };
            writer
                .write_all(&buf[..n])
                .map_err(io_error("write", writer.temp.path()))?;
        }
        writer.commit(expected)
    }

    /// Stores `data` as a blob.
    pub fn put_blob_bytes(&self, data: &[u8], expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.put_blob(data, expected)
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob `digest` is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Opens the blob `digest` for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| self.blob_error(digest, path, e))
    }

    /// Opens the blob `digest` for reading through a [`VerifiedBlob`],
    /// which fails at the end if the content does not match the digest.
    pub fn open_blob_verified(&self, digest: &Digest) -> Result<VerifiedBlob> {
        let file = self.open_blob(digest)?;
        let path = self.blob_path(digest);
        let size = file.metadata().map_err(io_error("read", &path))?.len();
        Ok(VerifiedBlob {
            file,
            hasher: Sha256::new(),
            digest: *digest,
            size,
            checked: false,
        })
    }

    /// The size in bytes of the blob `digest`.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| self.blob_error(digest, path, e))
    }

    /// Reads a small blob (a manifest, a config) whole, refusing one larger
    /// than `limit` bytes, and checks its content against its digest.
    pub fn read_blob_bytes(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| self.blob_error(digest, path.clone(), e))?;
        let size = file.metadata().map_err(io_error("read", &path))?.len();
        if size > limit {
            return Err(StoreError::TooLarge {
                digest: *digest,
                size,
                limit,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        // `take` guards against a file that grows after the size check.
        file.take(limit + 1)
            .read_to_end(&mut data)
            .map_err(io_error("read", &path))?;
        if data.len() as u64 > limit {
            return Err(StoreError::TooLarge {
                digest: *digest,
                size: data.len() as u64,
                limit,
            });
        }
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(StoreError::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(data)
    }

    /// Re-hashes the blob `digest` from disk; a mismatch is
    /// [`StoreError::CorruptBlob`].
    pub fn verify_blob(&self, digest: &Digest) -> Result<()> {
        let actual = self.hash_blob(digest)?;
        if actual != *digest {
            return Err(StoreError::CorruptBlob {
                digest: *digest,
                actual,
            });
        }
        Ok(())
    }

    fn hash_blob(&self, digest: &Digest) -> Result<Digest> {
        let path = self.blob_path(digest);
        let mut file = File::open(&path).map_err(|e| self.blob_error(digest, path.clone(), e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; BUFFER];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(hasher.finish()),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("read", &path)(e)),
            }
        }
    }

    /// Every blob in the store, sorted by digest; names that are not
    /// digests (nothing hoist wrote) are skipped.
    pub fn blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let mut digests = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error("read directory", &dir))? {
            let entry = entry.map_err(io_error("read directory", &dir))?;
            if let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse().ok())
            {
                digests.push(digest);
            }
        }
        digests.sort_unstable();
        Ok(digests)
    }

    fn blob_error(&self, digest: &Digest, path: PathBuf, e: io::Error) -> StoreError {
        if e.kind() == io::ErrorKind::NotFound {
            StoreError::BlobNotFound { digest: *digest }
        } else {
            io_error("read", path)(e)
        }
    }
}

/// Exports read blobs straight from the store.
impl hoist_oci::image::BlobSource for Store {
    fn open(&self, digest: &Digest) -> std::io::Result<Box<dyn std::io::Read + '_>> {
        self.open_blob(digest)
            .map(|f| Box::new(std::io::BufReader::new(f)) as Box<dyn std::io::Read>)
            .map_err(std::io::Error::other)
    }

    fn size(&self, digest: &Digest) -> std::io::Result<u64> {
        self.blob_size(digest).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        (dir, store)
    }

    fn temps(store: &Store) -> usize {
        fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    #[test]
    fn put_blob_names_the_content_by_its_digest_read_only() {
        let (_dir, store) = store();
        let data = b"hello blob".repeat(50_000);
        let (digest, size) = store.put_blob(&data[..], None).unwrap();
        assert_eq!((digest, size), (Digest::of(&data), data.len() as u64));
        let path = store.blob_path(&digest);
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o444);
        assert!(store.has_blob(&digest));
        assert_eq!(store.blob_size(&digest).unwrap(), size);
        assert_eq!(temps(&store), 0);
    }

    #[test]
    fn a_digest_mismatch_stores_nothing() {
        let (_dir, store) = store();
        let wrong = Digest::of(b"other");
        let err = store.put_blob_bytes(b"content", Some(&wrong)).unwrap_err();
        match err {
            StoreError::DigestMismatch { expected, actual } => {
                assert_eq!((expected, actual), (wrong, Digest::of(b"content")));
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.has_blob(&Digest::of(b"content")));
        assert!(store.blobs().unwrap().is_empty());
        assert_eq!(temps(&store), 0);
        let right = Digest::of(b"content");
        assert_eq!(
            store.put_blob_bytes(b"content", Some(&right)).unwrap().0,
            right
        );
    }

    #[test]
    fn storing_a_blob_again_keeps_the_existing_file() {
        let (_dir, store) = store();
        let (digest, _) = store.put_blob_bytes(b"same", None).unwrap();
        let inode = fs::metadata(store.blob_path(&digest)).unwrap().ino();
        store.put_blob_bytes(b"same", None).unwrap();
        assert_eq!(fs::metadata(store.blob_path(&digest)).unwrap().ino(), inode);
        assert_eq!(temps(&store), 0);
    }

    #[test]
    fn a_truncated_copy_is_replaced_by_a_verified_one() {
        let (_dir, store) = store();
        let (digest, _) = store.put_blob_bytes(b"complete content", None).unwrap();
        let path = store.blob_path(&digest);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"compl").unwrap();
        store.put_blob_bytes(b"complete content", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"complete content");
    }

    #[test]
    fn blob_writer_streams_and_commits() {
        let (_dir, store) = store();
        let mut writer = store.blob_writer().unwrap();
        assert!(writer.is_empty());
        for _ in 0..100 {
            writer.write_all(&[7u8; 10_000]).unwrap();
        }
        assert_eq!(writer.len(), 1_000_000);
        let expected = Digest::of(&[7u8; 1_000_000]);
        assert_eq!(
            writer.commit(Some(&expected)).unwrap(),
            (expected, 1_000_000)
        );
        assert_eq!(store.blobs().unwrap(), [expected]);
    }

    #[test]
    fn a_dropped_blob_writer_leaves_nothing() {
        let (_dir, store) = store();
        let mut writer = store.blob_writer().unwrap();
        writer.write_all(b"abandoned").unwrap();
        assert_eq!(temps(&store), 1);
        drop(writer);
        assert_eq!(temps(&store), 0);
        assert!(store.blobs().unwrap().is_empty());
    }

    #[test]
    fn a_failing_reader_stores_nothing() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("connection reset"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let (_dir, store) = store();
        let err = store.put_blob(Failing(3), None).unwrap_err();
        assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
        assert_eq!(temps(&store), 0);
        assert!(store.blobs().unwrap().is_empty());
    }

    #[test]
    fn missing_blobs_are_reported_by_digest() {
        let (_dir, store) = store();
        let digest = Digest::of(b"absent");
        assert!(!store.has_blob(&digest));
        for err in [
            store.open_blob(&digest).unwrap_err(),
            store.blob_size(&digest).unwrap_err(),
            store.read_blob_bytes(&digest, 10).unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::BlobNotFound { digest: d } if d == digest));
        }
    }

    #[test]
    fn read_blob_bytes_caps_the_size_and_checks_the_content() {
        let (_dir, store) = store();
        let (digest, _) = store.put_blob_bytes(b"{\"a\":1}", None).unwrap();
        assert_eq!(store.read_blob_bytes(&digest, 7).unwrap(), b"{\"a\":1}");
        let err = store.read_blob_bytes(&digest, 6).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooLarge {
                    size: 7,
                    limit: 6,
                    ..
                }
            ),
            "{err:?}"
        );

        let path = store.blob_path(&digest);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"{\"a\":2}").unwrap();
        let err = store.read_blob_bytes(&digest, 7).unwrap_err();
        assert!(
            matches!(err, StoreError::CorruptBlob { actual, .. } if actual == Digest::of(b"{\"a\":2}")),
            "{err:?}"
        );
    }

    #[test]
    fn a_verified_read_fails_at_the_end_of_damaged_content() {
        let (_dir, store) = store();
        let data = b"layer bytes ".repeat(30_000);
        let (digest, size) = store.put_blob_bytes(&data, None).unwrap();
        let mut blob = store.open_blob_verified(&digest).unwrap();
        assert_eq!(blob.size(), size);
        let mut read = Vec::new();
        blob.read_to_end(&mut read).unwrap();
        assert_eq!(read, data);

        let mut damaged = data.clone();
        damaged[100_000] ^= 1;
        let path = store.blob_path(&digest);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, &damaged).unwrap();
        let err = store
            .open_blob_verified(&digest)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.into_inner().unwrap().downcast::<StoreError>().unwrap();
        assert!(
            matches!(*inner, StoreError::CorruptBlob { actual, .. } if actual == Digest::of(&damaged)),
            "{inner:?}"
        );
    }

    #[test]
    fn open_blob_reads_the_content() {
        let (_dir, store) = store();
        let (digest, _) = store.put_blob_bytes(b"streamed", None).unwrap();
        let mut text = String::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "streamed");
        store.verify_blob(&digest).unwrap();
        let path = store.blob_path(&digest);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"streameD").unwrap();
        let err = store.verify_blob(&digest).unwrap_err();
        assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err:?}");
    }
}
