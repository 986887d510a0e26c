//! The build context: the directory tree `docker build` sends to the builder.
//!
//! This module decides which files of the context directory a build can see
//! (walking it, applying `.dockerignore`, hashing contents for cache keys).
//! It takes a context directory and, for the ignore file, the Dockerfile's
//! path; it returns the rules and, later, the selected entries. It reads the
//! context but never writes to it, and it decides what is excluded exactly as
//! Docker does, so a context never holds a file that `docker build` would have
//! left out, nor misses one it would have sent.
//!
//! - [`pattern`]: Docker's path patterns, shared by `.dockerignore` and
//!   `COPY --exclude`.
//! - [`dockerignore`]: which ignore file applies and how it is read.
//! - [`fingerprint`]: the context's metadata as one digest, which answers
//!   COPY steps of an unchanged context from the cache.

pub mod dockerignore;
pub mod fingerprint;
pub mod pattern;
pub mod walk;

pub use dockerignore::{DockerIgnore, IgnoreError};
pub use pattern::{DirMatches, InvalidPattern, Pattern, PatternError, PatternSet, filepath_match};
pub use walk::{walk_context, walk_context_observed};
