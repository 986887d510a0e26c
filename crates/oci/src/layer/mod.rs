//! Layers: deterministic tar streams, their digests, compression and safe
//! extraction.
//!
//! [`write_layer`] takes sorted [`Entry`] values and writes a gzip layer
//! blob to any `Write` (the store hands it a temp file) in one streaming
//! pass: tar -> SHA-256 (the diffID) -> parallel gzip -> SHA-256 (the blob
//! digest), returning both digests and both sizes in [`LayerDigests`].
//! The same entries give the same bytes on any machine, in any directory,
//! with any number of threads. [`compress_tar`] does the same for a tar
//! stream that already exists, and [`extract()`] unpacks a layer into a
//! directory without ever writing outside it. Nothing in this module holds a whole layer
//! in memory: file contents stream from disk into the compressor, and at
//! most a few compressed blocks per thread wait to be written.

pub mod extract;
pub mod gzip;
pub mod read;
pub mod tar;
pub mod walk;

use std::io::{self, Read, Write};

use crate::{Digest, DigestWriter};
pub use extract::{ExtractError, ExtractOptions, ExtractSummary, Links, extract, extract_with};
pub use gzip::{BlockRecord, GzipError, GzipOptions, Memo};
pub use read::{Contents, Escapes, content_size, read_entries};
pub use tar::{
    Content, Entry, EntryKind, TarError, TarOptions, TarWriter, sort_entries, write_tar,
};
pub use walk::{Visit, WalkError, WalkOptions, walk, walk_filtered, walk_observed};

/// What the store and the image config need to know about a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDigests {
    /// SHA-256 of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// SHA-256 of the compressed blob (the manifest's layer digest).
    pub digest: Digest,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Everything that shapes a layer's bytes, plus the thread count, which
/// does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerOptions {
    pub tar: TarOptions,
    pub gzip: GzipOptions,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error(transparent)]
    Gzip(#[from] GzipError),
    #[error("cannot read the tar stream to compress")]
    Read { source: io::Error },
}

/// Writes `entries` (sorted, see [`sort_entries`]) as a gzip layer into
/// `out`, and returns its digests with `out`.
pub fn write_layer<W: Write>(
    entries: &[Entry],
    options: &LayerOptions,
    out: W,
) -> Result<(LayerDigests, W), LayerError> {
    write_layer_with(entries, options, None, out).map(|(digests, _, out)| (digests, out))
}

/// [`write_layer`], copying compressed blocks from `memo` (an earlier
/// layer) where the input is the same, and returning the new layer's
/// blocks (to store as the memo of a later build) and how many were
/// reused. The bytes are the same with or without a memo.
pub fn write_layer_with<W: Write>(
    entries: &[Entry],
    options: &LayerOptions,
    memo: Option<&Memo>,
    out: W,
) -> Result<(LayerDigests, gzip::GzipSummary, W), LayerError> {
    digest_pipeline(out, &options.gzip, memo, |tar| {
        write_tar(entries, options.tar, tar)?;
        Ok(())
    })
}

/// Compresses an existing tar stream into `out` as a layer blob, and
/// returns its digests with `out`.
pub fn compress_tar<W: Write>(
    input: &mut impl Read,
    options: &GzipOptions,
    out: W,
) -> Result<(LayerDigests, W), LayerError> {
    digest_pipeline(out, options, None, |tar| {
        io::copy(input, tar).map_err(|source| LayerError::Read { source })?;
        Ok(())
    })
    .map(|(digests, _, out)| (digests, out))
}

/// The one pass every layer takes: `produce` writes the tar, which is
/// hashed, compressed, hashed again and written to `out`.
fn digest_pipeline<W: Write>(
    out: W,
    options: &GzipOptions,
    memo: Option<&Memo>,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), LayerError>,
) -> Result<(LayerDigests, gzip::GzipSummary, W), LayerError> {
    let mut blob = DigestWriter::new(out);
    let ((diff_id, uncompressed_size), summary) =
        gzip::compress_with(&mut blob, options, memo, |sink| {
            let mut tar = DigestWriter::new(sink);
            produce(&mut tar)?;
            let (diff_id, len, _) = tar.finish();
            Ok::<_, LayerError>((diff_id, len))
        })?;
    let (digest, size, out) = blob.finish();
    let digests = LayerDigests {
        diff_id,
        digest,
        size,
        uncompressed_size,
    };
    Ok((digests, summary, out))
}

#[cfg(test)]
mod tests;
