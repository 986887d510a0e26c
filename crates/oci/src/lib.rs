//! hoist-oci: the vocabulary every other hoist crate speaks, and the OCI
//! formats it reads and writes.
//!
//! - Vocabulary: [`Digest`] (SHA-256 only), [`Platform`] (one
//!   normalisation, containerd's), [`media_type`], [`compression`] (one
//!   decoder for every format a layer or archive uses).
//! - [`image`]: the config, manifest and index documents, their canonical
//!   JSON, and whole images written as an OCI layout, an OCI archive or a
//!   `docker load` archive.
//! - [`layer`]: deterministic tar streams, parallel block gzip, and safe
//!   extraction that never writes outside its destination.
//! - [`chunks`]: a byte stream handed between threads in shared chunks.
//! - [`error_line`]: an error and its causes on one line, for warnings and
//!   reports that carry an error as text.
//!
//! Depends on no other hoist crate, and on nothing that talks to a
//! network, a store or a daemon: everything here is a pure format or a
//! stream over `Read` and `Write`. Nothing holds a whole layer in memory.

pub mod chunks;
pub mod compression;
pub mod digest;
pub mod image;
pub mod layer;
pub mod media_type;
mod platform;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

pub use digest::{Digest, DigestError, DigestWriter, Sha256};
pub use platform::Platform;

/// An error and its causes, outermost first, on one line joined by `: `.
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
