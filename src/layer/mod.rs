//! Layers: deterministic tar streams, their digests, and safe extraction.
//!
//! [`tar`] turns sorted entries into a byte-for-byte reproducible tar
//! stream; [`digest`] names blobs by SHA-256. Nothing in this module holds
//! a whole layer in memory: file contents stream from disk into the output.

pub mod digest;
pub mod tar;

pub use digest::{Digest, DigestError, DigestWriter};
pub use tar::{
    Content, Entry, EntryKind, TarError, TarOptions, TarWriter, sort_entries, walk, write_tar,
};
