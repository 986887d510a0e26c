//! hoist-engine: a Dockerfile's plan run, step by step, into an image in
//! the store.
//!
//! - [`engine`]: the stage loop, each step's cache key, its result from
//!   the cache or from the work.
//! - [`copy`] and [`add`]: COPY's and ADD's file semantics over views
//!   (archives unpacked, URLs downloaded); [`chmod`]: `--chmod`.
//! - [`meta`]: what the metadata instructions do to the image config.
//! - [`context`]: the build context as BuildKit sends it (`.dockerignore`,
//!   the walk, the fingerprint that answers an unchanged context).
//! - [`hasher`]: content digests with a stat cache; [`secrets`]:
//!   `--secret` and `--ssh`.
//!
//! The top of the library graph: it drives every other hoist crate but
//! hoist-k8s, and nothing depends on it but the `hoist` command.

pub mod add;
pub mod chmod;
pub mod context;
pub mod copy;
pub mod engine;
pub mod hasher;
pub mod meta;
pub mod secrets;
mod writer;
