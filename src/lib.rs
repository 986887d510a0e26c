//! hoist: a daemonless, OCI-native container image builder.
//!
//! The library holds all of hoist's work; the `hoist` binary only parses
//! arguments, calls in here and maps errors to exit codes. Modules follow the
//! build pipeline (see `docs/architecture.md`): data flows one way, from the
//! Dockerfile text to the outputs, and no module reaches back up the chain.

pub mod build;
pub mod context;
pub mod k8s;
