//! hoist-registry: image references, and images pulled into the store
//! and pushed from it.
//!
//! - [`reference`](mod@reference): image names parsed and normalised as Docker does.
//! - [`client`]: a blocking registry API v2 client (plain HTTP for
//!   loopback and insecure hosts, bearer-token and basic auth, bounded
//!   retries, timeouts).
//! - [`auth`]: `WWW-Authenticate` challenges and bearer tokens.
//! - [`credentials`]: Docker's and podman's credential files and helpers,
//!   read and written as `docker login` does.
//! - [`tls`]: CA bundles for registries with private certificates.
//! - [`settings`]: hoist's config file (mirrors, insecure registries, CA
//!   bundles) merged with the command line's flags.
//! - [`pull`](mod@pull): manifest, config and layers from a registry (or
//!   its mirrors) into the store, every blob verified while it streams,
//!   then tagged with the normalised reference.
//! - [`push`](mod@push): an image from the store to a registry, blobs
//!   the repository lacks first (mounted from another repository when a
//!   push left them there), manifests last; recorded in the store.
//! - [`cache`]: the shared build cache, in a registry repository or a
//!   directory: one entry per step key, each its own document.
//! - [`upload`]: the upload half of the API (HEAD, mount, chunked and
//!   monolithic uploads, manifests) with its retries.
//!
//! Nothing here holds a layer in memory, and no token or password ever
//! reaches an error message or a log.
//!
//! Depends on hoist-store and hoist-oci only: it moves blobs, never reads
//! what is inside a layer.

pub mod artifact;
pub mod assemble;
pub mod auth;
pub mod cache;
pub mod client;
pub mod credentials;
mod error;
#[cfg(test)]
mod fake;
mod manage;
pub mod pull;
pub mod push;
pub mod reference;
pub mod settings;
pub mod tls;
pub mod upload;

pub use client::{Client, ClientOptions, Endpoint};
pub use credentials::{CredentialStore, Credentials};
pub use error::{Content, RegistryError, Result};
pub use pull::{
    LayerTap, PullOptions, Pulled, Taps, fetch_blob_of, fetch_image, fetch_remote, pull, pull_lazy,
    pull_tapped, pull_with,
};
pub use push::{BlobEvent, Format, PushOptions, Pushed, push, push_with};
pub use reference::{Reference, ReferenceError};
pub use settings::{ConfigError, Settings};
