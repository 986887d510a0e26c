//! The build engine: runs a plan's stages into images.
//!
//! - [`view`]: the merged file system of a stage, from its layers.
//! - [`copy`]: COPY and ADD's file semantics over views.
//! - [`add`]: what ADD does beyond COPY: archives unpacked, URLs downloaded.

pub mod add;
pub mod base;
pub mod chmod;
pub mod copy;
pub mod engine;
pub mod hasher;
mod index_file;
pub mod meta;
pub mod secrets;
pub mod user;
pub mod view;
mod writer;
