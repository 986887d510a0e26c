//! hoist-rootfs: an image's file system, as the build and `hoist k8s` read it: which
//! image a stage starts from ([`image`]), each layer read into an index of
//! its entries with its files extracted once into the store ([`layer`],
//! [`index_file`]), the merged view of a stage's layers ([`view`]), and
//! users and groups looked up in that view ([`user`]).
//!
//! Takes a store and layer blobs; returns indexes and views whose file
//! contents are paths in the store's snapshots. Never writes outside the
//! store's snapshot directories, and reads every owner and mode from the
//! tar headers, never from extracted files, so reading a layer needs no
//! privilege.
//!
//! Depends on hoist-store and hoist-oci only; RUN's snapshots are made by
//! hoist-run through the [`layer::Mirror`] a caller passes, so this
//! crate never runs anything.

pub mod image;
mod index_file;
pub mod layer;
pub mod user;
pub mod view;

pub use image::{BaseError, StoredImage, import_from_layout, import_oci_layout, load_image};
pub use layer::{Mirror, load_layer, load_layer_streamed, streams};
pub use view::{FsView, LayerIndex};
