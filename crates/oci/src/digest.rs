//! Content digests: the `sha256:<64 lowercase hex>` strings that name every
//! blob, diffID and cache entry in hoist.
//!
//! [`Digest`] parses and validates the OCI form (only `sha256` is accepted:
//! it is the one algorithm every registry and runtime supports, and accepting
//! others would let two names stand for one blob), prints it back byte for
//! byte, and is computed by [`Sha256`] or by [`DigestWriter`], which hashes
//! and counts what passes through it on the way to another writer. Nothing
//! here buffers the data it hashes.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::Digest as _;

/// The prefix of every digest hoist reads or writes.
const PREFIX: &str = "sha256:";

/// A SHA-256 content digest, shown as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a string is not a valid digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest `{text}` does not start with `sha256:`; only sha256 digests are supported")]
    Algorithm { text: String },
    #[error("digest `{text}` must have exactly 64 hex digits after `sha256:`, found {found}")]
    Length { text: String, found: usize },
    #[error("digest `{text}` may only contain lowercase hex digits (0-9, a-f) after `sha256:`")]
    Hex { text: String },
}

impl Digest {
    /// The digest of `data`, for small in-memory values (configs, manifests).
    pub fn of(data: &[u8]) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(data);
        hasher.finish()
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix (the file
    /// name under `blobs/sha256/` in an OCI layout).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Digest, DigestError> {
        let Some(digits) = text.strip_prefix(PREFIX) else {
            return Err(DigestError::Algorithm { text: text.into() });
        };
        if digits.len() != 64 {
            return Err(DigestError::Length {
                text: text.into(),
                found: digits.len(),
            });
        }
        // The OCI spec's encoded part for sha256 is `[a-f0-9]{64}`: upper-case
        // hex would decode, but it would give one blob two names.
        if !digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Hex { text: text.into() });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digits, &mut bytes)
            .map_err(|_| DigestError::Hex { text: text.into() })?;
        Ok(Digest(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental SHA-256 (sha2 picks the CPU's SHA instructions at run time).
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// A writer that hashes and counts every byte it passes on to `inner`.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> DigestWriter<W> {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer, for callers that need to reach it between writes.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (self.hasher.finish(), self.len, self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer accepted, so a short write never
        // lets the digest run ahead of the bytes.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), Digest::of(b""));
    }

    #[test]
    fn digest_of_abc_matches_fips_180_2() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_rejects_malformed_digests() {
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        let cases = [
            ("sha512:00", "Algorithm"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "Algorithm",
            ),
            ("sha256:abc", "Length"),
            (&upper[..], "Hex"),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "Hex",
            ),
        ];
        for (text, kind) in cases {
            let err = text.parse::<Digest>().unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{text}: {err:?}");
        }
    }

    #[test]
    fn digest_writer_hashes_and_counts_what_passes() {
        let mut writer = DigestWriter::new(Vec::new());
        writer.write_all(b"ab").unwrap();
        writer.write_all(b"c").unwrap();
        let (digest, len, out) = writer.finish();
        assert_eq!(
            (digest, len, &out[..]),
            (Digest::of(b"abc"), 3, &b"abc"[..])
        );
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let digest = Digest::of(b"abc");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{digest}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
