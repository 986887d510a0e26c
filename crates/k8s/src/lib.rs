//! hoist-k8s: Kubernetes manifests for the images hoist built, pinned by
//! digest.
//!
//! - [`image`]: what an image in the store says about how to run it
//!   (EXPOSE, HEALTHCHECK, USER resolved through its /etc/passwd, VOLUME,
//!   SHELL), and whether its manifest digest is in its registry.
//! - [`generate`]: typed objects (k8s-openapi) from those facts and the
//!   user's [`Options`]: Deployment, Service, Ingress, ConfigMap, Secret,
//!   PodDisruptionBudget, HorizontalPodAutoscaler, pull Secret.
//! - [`job`]: the Job `hoist build --job` writes, which builds in a
//!   cluster inside Pod Security "baseline".
//! - [`yaml`]: the objects as YAML documents with sorted keys, so output
//!   diffs cleanly and the same inputs give the same bytes.
//! - [`resolve`](mod@resolve): rewrites image references in the user's own
//!   YAML, changing only the bytes of those scalars.
//!
//! Nothing here talks to a cluster, and no credential reaches an error
//! message or a log: a pull Secret is written only where the caller says.
//!
//! Depends on hoist-rootfs (an image's USER, resolved in its files),
//! hoist-registry (is the digest pushed?), hoist-store and hoist-oci;
//! never on the engine. Its [`Options`] are the `hoist k8s` flags, each
//! defined once (clap derive).

mod error;
pub mod generate;
pub mod image;
pub mod job;
pub mod options;
pub mod resolve;
pub mod yaml;

pub use error::K8sError;
pub use generate::{Generated, generate};
pub use image::{ImageFacts, Registration, UserId, check_registry, inspect};
pub use options::Options;
