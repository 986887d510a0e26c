//! Blobs the store knows of but does not hold: a layer named by an image
//! the store has (a base pulled as manifest and config only, a step found
//! in a registry cache), with the repository that holds it. The bytes are
//! fetched only when something needs them (a step that reads the layer's
//! files, an export), and a push to the same registry mounts them from
//! that repository instead of moving them at all.
//!
//! One small canonical JSON document per blob, `remote/<hex>.json`,
//! replaced by rename. Prune removes the record of a blob no image or
//! cache record names any more, and of one the store now holds.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Store;
use super::error::{Result, io_error};
use super::fsutil::{ensure_dir, write_atomically};
use super::json::canonical;
use hoist_oci::Digest;

/// Where a blob the store does not hold is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteBlob {
    /// The repository holding it, normalised (`127.0.0.1:5000/team/app`,
    /// `docker.io/library/node`).
    pub repository: String,
    pub media_type: String,
    pub size: u64,
    /// The mirror that served it (`http://127.0.0.1:5000`), when one did:
    /// tried first when it is fetched, and a push to that host mounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
}

impl Store {
    /// Records where `blob` is, for a store that does not hold it.
    pub fn record_remote(&self, blob: &Digest, remote: &RemoteBlob) -> Result<()> {
        let path = self.remote_path(blob);
        ensure_dir(path.parent().expect("a record path has a directory"))?;
        let value = serde_json::to_value(remote).expect("a remote record always serialises");
        write_atomically(&self.tmp_dir(), &path, &canonical(&value))
    }

    /// Where `blob` is, if the store does not hold it but knows.
    pub fn remote(&self, blob: &Digest) -> Result<Option<RemoteBlob>> {
        if self.has_blob(blob) {
            return Ok(None);
        }
        super::read_json_as(&self.remote_path(blob), "a remote blob record")
    }

    /// Whether the store holds `blob` or knows a registry that does.
    pub fn knows_blob(&self, blob: &Digest) -> bool {
        self.has_blob(blob) || self.remote_path(blob).is_file()
    }

    /// Every recorded remote blob, in no particular order.
    pub(crate) fn remote_blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.path("remote");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read directory", &dir)(e)),
        };
        let mut blobs = Vec::new();
        for entry in entries {
            let name = entry.map_err(io_error("read directory", &dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".json")
                && let Ok(digest) = format!("sha256:{hex}").parse()
            {
                blobs.push(digest);
            }
        }
        Ok(blobs)
    }

    pub(crate) fn remove_remote(&self, blob: &Digest) -> Result<()> {
        let path = self.remote_path(blob);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    fn remote_path(&self, blob: &Digest) -> PathBuf {
        self.path("remote").join(format!("{}.json", blob.hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_record_is_read_back_until_the_store_holds_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let blob = Digest::of(b"a layer");
        assert_eq!(store.remote(&blob).unwrap(), None);
        let remote = RemoteBlob {
            repository: "127.0.0.1:5000/team/app".into(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 7,
            mirror: None,
        };
        store.record_remote(&blob, &remote).unwrap();
        assert_eq!(store.remote(&blob).unwrap(), Some(remote));
        assert_eq!(store.remote_blobs().unwrap(), [blob]);
        store.put_blob_bytes(b"a layer", Some(&blob)).unwrap();
        assert_eq!(store.remote(&blob).unwrap(), None, "held: nothing to fetch");
        drop(store);
        Store::open(dir.path().join("store")).unwrap();
    }
}
