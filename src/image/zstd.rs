//! A streaming Zstandard decoder for layers that a reader of the export
//! cannot take compressed (`docker load` of Docker 20.10 fails on zstd
//! layers with "unexpected EOF").
//!
//! [`ZstdReader`] decodes every frame of the input in turn, skipping
//! skippable frames (zstd:chunked layers are many frames with skippable
//! metadata frames between them), and yields the concatenated content. It
//! holds one frame's window at a time, never the whole layer. The frames'
//! own checksums are not checked: callers compare the output's SHA-256
//! with the layer's diffID, which is stronger.

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// Decodes a sequence of zstd frames from `source`, reading it to its end.
pub(super) struct ZstdReader<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    pub(super) fn new(source: R) -> ZstdReader<R> {
        ZstdReader {
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

impl<R: BufRead> Read for ZstdReader<R> {
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

    fn decode(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdReader::new(input).read_to_end(&mut out)?;
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
