//! Block indexes: for a layer blob hoist wrote, where each of its
//! compressed blocks sits and the key of what it compressed
//! ([`hoist_oci::layer::gzip`]), under `blocks/<blob hex>`; and, per build
//! step, the last layer blob it made, under `blocks/steps/<step hex>`.
//!
//! When a step runs again with different input (one file of a large COPY
//! changed), the build hands the previous layer's blocks to the compressor,
//! which copies every block whose input is unchanged instead of deflating
//! it. Nothing here decides what a layer contains or its digest: a missing,
//! stale or damaged index only makes the next build slower.

use std::fs;

use super::Store;
use super::error::{Result, io_error};
use super::fsutil::{ensure_dir, write_atomically};
use hoist_oci::Digest;
use hoist_oci::layer::gzip::{BlockRecord, Memo, decode_index, encode_index};

impl Store {
    /// Records the blocks of the layer blob `blob` (which must be stored).
    pub fn put_block_index(&self, blob: &Digest, blocks: &[BlockRecord]) -> Result<()> {
        let dir = self.path("blocks");
        ensure_dir(&dir)?;
        write_atomically(
            &self.tmp_dir(),
            &dir.join(blob.hex()),
            &encode_index(blocks),
        )
    }

    /// The blocks of `blob` ready to copy from, if the store has both the
    /// blob and a valid index of it.
    pub fn block_memo(&self, blob: &Digest) -> Option<Memo> {
        let bytes = fs::read(self.path("blocks").join(blob.hex())).ok()?;
        let blocks = decode_index(&bytes)?;
        Memo::new(self.open_blob(blob).ok()?, &blocks).ok()
    }

    /// The last layer blob the build step `step` made, if still stored.
    pub fn step_layer(&self, step: &Digest) -> Option<Digest> {
        let text = fs::read_to_string(self.path("blocks/steps").join(step.hex())).ok()?;
        let digest: Digest = text.trim().parse().ok()?;
        self.has_blob(&digest).then_some(digest)
    }

    /// Remembers `blob` as the last layer the build step `step` made.
    pub fn set_step_layer(&self, step: &Digest, blob: &Digest) -> Result<()> {
        let dir = self.path("blocks/steps");
        ensure_dir(&dir)?;
        write_atomically(
            &self.tmp_dir(),
            &dir.join(step.hex()),
            blob.to_string().as_bytes(),
        )
    }

    /// Removes the indexes of blobs no longer stored and the step entries
    /// that point at them; returns how many files went.
    pub(crate) fn prune_block_indexes(&self) -> Result<usize> {
        let mut removed = 0;
        let dir = self.path("blocks");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        for entry in entries {
            let path = entry.map_err(io_error("read directory", &dir))?.path();
            if path.is_dir() {
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let blob = name.and_then(|n| format!("sha256:{n}").parse::<Digest>().ok());
            if !blob.is_some_and(|b| self.has_blob(&b)) {
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                removed += 1;
            }
        }
        let steps = dir.join("steps");
        if let Ok(entries) = fs::read_dir(&steps) {
            for entry in entries {
                let path = entry.map_err(io_error("read directory", &steps))?.path();
                let target = fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<Digest>().ok());
                if !target.is_some_and(|b| self.has_blob(&b)) {
                    fs::remove_file(&path).map_err(io_error("remove", &path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use hoist_oci::Digest;
    use hoist_oci::layer::gzip::BlockRecord;

    #[test]
    fn indexes_and_step_entries_live_while_their_blob_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (blob, _) = store.put_blob_bytes(b"layer bytes", None).unwrap();
        let block = BlockRecord {
            key: [7; 32],
            offset: 2,
            len: 5,
            digest: [9; 32],
        };
        store.put_block_index(&blob, &[block]).unwrap();
        let step = Digest::of(b"step");
        store.set_step_layer(&step, &blob).unwrap();
        assert_eq!(store.step_layer(&step), Some(blob));
        assert!(store.block_memo(&blob).is_some());
        // Nothing tags or caches the blob: prune removes it, then its index.
        store.prune().unwrap();
        assert!(!store.has_blob(&blob));
        assert_eq!(store.step_layer(&step), None);
        assert!(store.block_memo(&blob).is_none());
        assert!(!dir.path().join("blocks").join(blob.hex()).exists());
        assert!(!dir.path().join("blocks/steps").join(step.hex()).exists());
    }
}
