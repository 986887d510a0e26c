//! hoist-engine: a Dockerfile's plan run, step by step, into an image in
//! the store.
//!
//! - [`engine`]: the stage loop: each step expanded, dispatched to its
//!   kind, its history written. The kinds: FROM and images as sources in
//!   `from`, COPY and ADD in `step_copy` (their file semantics over views
//!   in [`copy`] and [`add`], `--chmod` in [`chmod`]), RUN in `step_run`
//!   with its `--mount`s in `mounts`, and the metadata instructions in
//!   [`meta`].
//! - `cache_key`: what each step's key covers; `commit`: layers into the
//!   store and the cache, some compressed on the `writer` thread behind
//!   the steps.
//! - [`context`]: the build context as BuildKit sends it (`.dockerignore`,
//!   the walk, the fingerprint that answers an unchanged context);
//!   [`hasher`]: content digests with a stat cache; [`secrets`]:
//!   `--secret` and `--ssh`.
//! - [`shared_cache`]: `--cache-from` answering what the store misses,
//!   `--cache-to` exporting the build's steps.
//! - [`error`]: why a build failed, each failed step's error kept whole.
//!
//! The top of the library graph: it drives every other hoist crate but
//! hoist-k8s, and nothing depends on it but the `hoist` command.

pub mod add;
mod cache_key;
pub mod chmod;
mod commit;
pub mod context;
pub mod copy;
pub mod engine;
pub mod error;
mod from;
pub mod hasher;
pub mod meta;
mod mounts;
pub mod secrets;
pub mod shared_cache;
mod step_copy;
mod step_run;
mod writer;

pub use engine::{BuildRequest, Built, Event, build};
pub use error::{BuildError, StepError, StepPlace};
