//! Whether the tagged images are whole: every blob an image needs is in
//! the store (or in a registry the store knows holds it) and not known
//! to be damaged.
//!
//! Damage is known two ways: `prune --verify` hashes every blob, and a
//! build that finds an earlier layer's compressed blocks no longer
//! matching their digests notes that blob (`damaged/<hex>`, an empty
//! file, read by `hoist images`). Notes are cleared by the next verify,
//! which finds each noted blob damaged (and removes it) or intact.

use std::collections::BTreeSet;
use std::fs;

use super::Store;
use super::error::{Result, StoreError, io_error};
use super::fsutil::ensure_dir;
use super::gc::{DOCUMENT_LIMIT, child, children, refers_to_blobs};
use super::json::Descriptor;
use hoist_oci::Digest;
use serde_json::Value;

/// A tagged image that cannot be exported or pushed whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// The tag, as the store lists it.
    pub name: String,
    pub descriptor: Descriptor,
    /// Blobs it needs that the store does not hold.
    pub missing: Vec<Digest>,
    /// Blobs it needs that are damaged.
    pub damaged: Vec<Digest>,
}

impl Store {
    /// Notes that `blob` was found damaged (by a build), for `hoist
    /// images` until the next verify.
    pub fn note_damaged(&self, blob: &Digest) -> Result<()> {
        let dir = self.path("damaged");
        ensure_dir(&dir)?;
        let path = dir.join(blob.hex());
        fs::write(&path, b"").map_err(io_error("write", &path))
    }

    /// The blobs noted damaged.
    pub fn noted_damaged(&self) -> Result<BTreeSet<Digest>> {
        let dir = self.path("damaged");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(io_error("read directory", &dir)(e)),
        };
        let mut noted = BTreeSet::new();
        for entry in entries {
            let name = entry.map_err(io_error("read directory", &dir))?.file_name();
            if let Ok(digest) = format!("sha256:{}", name.to_string_lossy()).parse() {
                noted.insert(digest);
            }
        }
        Ok(noted)
    }

    /// Forgets every note (a verify has just checked each blob).
    pub(crate) fn clear_damage_notes(&self) -> Result<()> {
        let dir = self.path("damaged");
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", &dir)(e)),
            _ => Ok(()),
        }
    }

    /// The tagged images that need a blob the store lacks or one of
    /// `damaged`, in tag order. Reads only manifests and indexes: layers
    /// are not hashed (that is what `damaged` comes from).
    pub fn affected_images(&self, damaged: &BTreeSet<Digest>) -> Result<Vec<Affected>> {
        let mut affected = Vec::new();
        for (name, descriptor) in self.list()? {
            let mut image = Affected {
                name,
                descriptor: descriptor.clone(),
                missing: Vec::new(),
                damaged: Vec::new(),
            };
            let mut seen = BTreeSet::new();
            let mut work = vec![(descriptor.digest, Some(descriptor.media_type.clone()))];
            while let Some((digest, media_type)) = work.pop() {
                if !seen.insert(digest) {
                    continue;
                }
                if damaged.contains(&digest) {
                    image.damaged.push(digest);
                    continue;
                }
                if !self.has_blob(&digest) {
                    // A blob held by a registry the store knows of is not
                    // lacking: it is fetched when needed.
                    if self.remote(&digest)?.is_none() {
                        image.missing.push(digest);
                    }
                    continue;
                }
                if !media_type.as_deref().is_some_and(refers_to_blobs) {
                    continue;
                }
                let bytes = match self.read_blob_bytes(&digest, DOCUMENT_LIMIT) {
                    Ok(bytes) => bytes,
                    Err(StoreError::CorruptBlob { .. }) => {
                        image.damaged.push(digest);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
                    continue;
                };
                for entry in children(&doc) {
                    if let Some((digest, media_type, _)) = child(entry) {
                        work.push((digest, media_type.map(str::to_owned)));
                    }
                }
            }
            if !image.missing.is_empty() || !image.damaged.is_empty() {
                image.missing.sort_unstable();
                image.damaged.sort_unstable();
                affected.push(image);
            }
        }
        Ok(affected)
    }
}
