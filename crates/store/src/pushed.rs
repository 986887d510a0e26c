//! Push records: what the store last pushed to each destination reference,
//! so later commands (the Kubernetes manifests, which pin images by digest)
//! know the digest a registry holds for a tag without asking it, and a
//! push to another repository of the same registry knows where it can
//! mount blobs from.
//!
//! One small canonical JSON document per destination, in
//! `pushed/<sha256 of the reference>.json`, replaced by rename like every
//! other record. Records name blobs but do not keep them: `prune` may
//! remove the blobs of an image that is no longer tagged, and the record
//! still says what the registry holds.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Store;
use super::error::{Result, io_error};
use super::fsutil::{ensure_dir, write_atomically};
use super::json::canonical;
use hoist_oci::Digest;

/// One successful push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushRecord {
    /// The normalised destination (`127.0.0.1:5000/app:v1`).
    pub reference: String,
    /// The digest of the manifest (or index) the registry now serves for
    /// it: the one printed as `REPO@DIGEST`.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Every blob (configs and layers) the registry's repository now
    /// holds for it.
    pub blobs: Vec<Digest>,
    /// When the push finished, RFC 3339 UTC.
    pub pushed_at: String,
}

impl Store {
    /// Records a push, replacing any earlier record for its reference.
    pub fn record_push(&self, record: &PushRecord) -> Result<()> {
        let path = self.push_path(&record.reference);
        ensure_dir(path.parent().expect("a record path has a directory"))?;
        let value = serde_json::to_value(record).expect("a push record always serialises");
        write_atomically(&self.tmp_dir(), &path, &canonical(&value))
    }

    /// What the last push to `reference` (normalised, with its tag) left
    /// on the registry, if this store pushed there.
    pub fn pushed(&self, reference: &str) -> Result<Option<PushRecord>> {
        read_record(&self.push_path(reference))
    }

    /// Every push record, in no particular order.
    pub fn push_records(&self) -> Result<Vec<PushRecord>> {
        let dir = self.path("pushed");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read directory", &dir)(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_error("read directory", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(record) = read_record(&path)?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    fn push_path(&self, reference: &str) -> PathBuf {
        let name = Digest::of(reference.as_bytes()).hex();
        self.path("pushed").join(format!("{name}.json"))
    }
}

fn read_record(path: &std::path::Path) -> Result<Option<PushRecord>> {
    super::read_json_as(path, "a push record")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_record_round_trips_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        assert_eq!(store.pushed("127.0.0.1:5000/app:v1").unwrap(), None);
        let mut record = PushRecord {
            reference: "127.0.0.1:5000/app:v1".into(),
            digest: Digest::of(b"manifest"),
            media_type: super::super::OCI_MANIFEST.into(),
            size: 8,
            blobs: vec![Digest::of(b"config"), Digest::of(b"layer")],
            pushed_at: "2026-01-01T00:00:00Z".into(),
        };
        store.record_push(&record).unwrap();
        record.digest = Digest::of(b"manifest 2");
        store.record_push(&record).unwrap();
        assert_eq!(
            store.pushed("127.0.0.1:5000/app:v1").unwrap(),
            Some(record.clone())
        );
        assert_eq!(store.push_records().unwrap(), vec![record]);
        assert_eq!(store.pushed("127.0.0.1:5000/app:v2").unwrap(), None);
        // The store still opens with its new directory.
        drop(store);
        Store::open(dir.path().join("store")).unwrap();
    }
}
