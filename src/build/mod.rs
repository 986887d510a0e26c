//! The build engine: runs a plan's stages into images.
//!
//! - [`copy`]: COPY and ADD's file semantics over views.
//! - [`add`]: what ADD does beyond COPY: archives unpacked, URLs downloaded.

pub mod add;
pub mod chmod;
pub mod copy;
pub mod engine;
pub mod hasher;
pub mod meta;
pub mod secrets;
mod writer;
