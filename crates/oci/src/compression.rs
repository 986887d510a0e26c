//! Compression of layers and archives: which one a blob uses, told by its
//! media type or its magic bytes, and one decoder for each.
//!
//! Every reader of compressed bytes in hoist goes through [`decompress`]:
//! base layers (gzip, zstd or plain, by media type), RUN's snapshots and
//! ADD's archives (by magic, as Docker's `DetectCompression` tells them
//! apart), and exports that hand a zstd layer to a tool that cannot read
//! it. Decoders stream; none holds more than its window.
//!
//! Crates, all pure Rust: gzip through flate2 with zlib-rs (the backend
//! layers are written with); bzip2 through `bzip2` 0.6, whose default
//! backend is `libbz2-rs-sys`, a Rust port of libbzip2; xz through
//! `lzma-rust2`; zstd through `ruzstd`'s frame decoder, looped over frames
//! here. Frame and stream checksums are not relied on: callers compare the
//! output's SHA-256 with a diffID, which is stronger.

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use crate::media_type::*;

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    /// The format of a stream that starts with `head`, by its magic bytes
    /// as Docker's `DetectCompression` tells them; anything else is
    /// uncompressed.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression of a layer media type, or `None` when `media_type`
    /// is not a layer type hoist knows.
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER_TAR | OCI_LAYER_NONDISTRIBUTABLE_TAR | DOCKER_LAYER_TAR => {
                Some(Compression::None)
            }
            OCI_LAYER_TAR_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP
            | DOCKER_LAYER_TAR_GZIP
            | DOCKER_LAYER_FOREIGN_TAR_GZIP => Some(Compression::Gzip),
            OCI_LAYER_TAR_ZSTD | OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD | DOCKER_LAYER_TAR_ZSTD => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// `input` decoded as `kind` says. Gzip, bzip2 and zstd streams may be
/// several members or frames one after the other (pigz, pzstd and `cat`
/// write them so), and all are read.
pub fn decompress<R: Read>(kind: Compression, input: R) -> Decompressed<BufReader<R>> {
    decoder(kind, BufReader::with_capacity(64 * 1024, input))
}

/// `input` decoded as its first bytes say ([`Compression::detect`]).
pub fn decompress_detected<R: Read>(
    input: R,
) -> io::Result<(Compression, Decompressed<BufReader<R>>)> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let kind = Compression::detect(input.fill_buf()?);
    Ok((kind, decoder(kind, input)))
}

fn decoder<R: BufRead>(kind: Compression, input: R) -> Decompressed<R> {
    match kind {
        Compression::None => Decompressed::None(input),
        Compression::Gzip => Decompressed::Gzip(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Decompressed::Zstd(ZstdFrames::new(input)),
        Compression::Bzip2 => Decompressed::Bzip2(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => Decompressed::Xz(lzma_rust2::XzReader::new(input, true)),
    }
}

/// A decompressed stream: [`decompress`]'s reader, one variant a format.
// One value per stream, made once and never moved in a loop: the size of
// its largest variant (xz's state, 4 KB) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Decompressed<R: BufRead> {
    None(R),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(ZstdFrames<R>),
    Bzip2(bzip2::bufread::MultiBzDecoder<R>),
    Xz(lzma_rust2::XzReader<R>),
}

impl<R: BufRead> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::None(r) => r.read(buf),
            Decompressed::Gzip(r) => r.read(buf),
            Decompressed::Zstd(r) => r.read(buf),
            Decompressed::Bzip2(r) => r.read(buf),
            Decompressed::Xz(r) => r.read(buf),
        }
    }
}

/// Decodes a sequence of zstd frames from `source`, reading it to its end.
pub struct ZstdFrames<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> ZstdFrames<R> {
        ZstdFrames {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Starts the next frame; false at the end of the input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.init(&mut self.source) {
                Ok(()) => return Ok(true),
                // The header (magic and length) is read; skip the body.
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd skippable frame is cut short",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                // Decode until some bytes can be collected or the frame
                // ends: returning 0 mid-frame would signal a false EOF.
                while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                let n = self.decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if !self.next_frame()? {
                return Ok(0);
            }
            self.in_frame = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};

    use super::*;

    #[test]
    fn magic_bytes_and_media_types_name_the_same_formats() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]),
            Compression::Gzip
        );
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 0x07]), Compression::None);
        assert_eq!(Compression::detect(b"BZh9"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 1]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(Compression::detect(b"etc/passwd"), Compression::None);
        assert_eq!(
            Compression::of_layer(OCI_LAYER_TAR),
            Some(Compression::None)
        );
        assert_eq!(
            Compression::of_layer(DOCKER_LAYER_TAR_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_layer(OCI_LAYER_TAR_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::of_layer(DOCKER_LAYER_TAR_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::of_layer(OCI_CONFIG), None);
    }

    fn decode(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdFrames::new(input).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_concatenated_frames_around_skippable_ones() {
        let first: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let second = b"second frame".to_vec();
        let mut input = compress_to_vec(&first[..], CompressionLevel::Fastest);
        // A skippable frame: magic 0x184D2A50..5F, little-endian length, body.
        input.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
        input.extend_from_slice(&3u32.to_le_bytes());
        input.extend_from_slice(b"abc");
        input.extend(compress_to_vec(&second[..], CompressionLevel::Fastest));

        let mut expected = first;
        expected.extend_from_slice(&second);
        assert_eq!(decode(&input).unwrap(), expected);
        assert_eq!(decode(b"").unwrap(), b"");
    }

    #[test]
    fn corrupt_or_cut_input_is_an_error() {
        let input = compress_to_vec(&b"some layer bytes"[..], CompressionLevel::Fastest);
        assert!(decode(&input[..input.len() - 2]).is_err());
        assert!(decode(b"not zstd at all").is_err());
    }
}
