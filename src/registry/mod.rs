//! Registries: image references now; pull and push come next.
//!
//! - [`reference`]: image names parsed and normalised as Docker does.

pub mod reference;

pub use reference::{Reference, ReferenceError};
