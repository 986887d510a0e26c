//! The build cache index: one small JSON file per step cache key, under
//! `cache/<first two hex digits>/<key>.json`, holding the step's result
//! ([`CacheValue`]: what the build needs to skip the step) and the digests
//! of every blob that result uses, which keeps those blobs alive through
//! `prune`.
//!
//! A record is never written for a blob the store does not hold, never
//! rewritten in place (each write replaces the file by rename, so no lock
//! is needed: the last writer of a key wins, with a whole record), and
//! never returned when one of its blobs has gone missing: that is a miss.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Store;
use super::error::{Result, StoreError, io_error};
use super::fsutil::{ensure_dir, write_atomically};
use super::json::canonical;
use hoist_oci::Digest;

/// What the cache remembers about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// The step's result.
    pub value: CacheValue,
    /// Every blob the result refers to (layers, configs).
    pub blobs: Vec<Digest>,
}

/// A step's result, as the build wants it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheValue {
    /// The step made this layer.
    Layer(CachedLayer),
    /// The step changed nothing, so it makes no layer (a RUN, as
    /// BuildKit).
    Empty,
    /// A COPY from an unchanged build context: the key the step had,
    /// found from the context's fingerprint without reading the context.
    Alias { key: Digest },
}

/// A layer a step made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedLayer {
    /// The blob (gzip) and its size.
    pub digest: Digest,
    pub size: u64,
    /// The digest of its uncompressed tar.
    pub diff_id: Digest,
    /// The size of its uncompressed tar.
    pub tar_size: u64,
}

impl CacheRecord {
    /// A step that made `layer`, which the record keeps alive.
    pub fn layer(layer: CachedLayer) -> CacheRecord {
        CacheRecord {
            value: CacheValue::Layer(layer),
            blobs: vec![layer.digest],
        }
    }

    /// A step that made no layer.
    pub fn empty() -> CacheRecord {
        CacheRecord {
            value: CacheValue::Empty,
            blobs: Vec::new(),
        }
    }

    /// A step whose key is `key`, with the layer (if any) it made kept
    /// alive as long as this record.
    pub fn alias(key: Digest, layer: Option<Digest>) -> CacheRecord {
        CacheRecord {
            value: CacheValue::Alias { key },
            blobs: layer.into_iter().collect(),
        }
    }
}

impl CacheValue {
    /// The JSON a record file holds: the shapes hoist has always written,
    /// so stores made before values were typed read back the same.
    fn to_json(&self) -> Value {
        match self {
            CacheValue::Layer(l) => serde_json::json!({
                "digest": l.digest,
                "size": l.size,
                "diffID": l.diff_id,
                "tarSize": l.tar_size,
            }),
            CacheValue::Empty => serde_json::json!({ "empty": true }),
            CacheValue::Alias { key } => serde_json::json!({ "copy_key": key }),
        }
    }

    fn from_json(value: &Value) -> Option<CacheValue> {
        let digest = |name: &str| value.get(name)?.as_str()?.parse::<Digest>().ok();
        if value.get("empty").and_then(Value::as_bool) == Some(true) {
            return Some(CacheValue::Empty);
        }
        if let Some(key) = digest("copy_key") {
            return Some(CacheValue::Alias { key });
        }
        Some(CacheValue::Layer(CachedLayer {
            digest: digest("digest")?,
            size: value.get("size")?.as_u64()?,
            diff_id: digest("diffID")?,
            tar_size: value.get("tarSize")?.as_u64()?,
        }))
    }
}

impl Store {
    /// The record stored under `key`, if any and if all its blobs are
    /// still in the store (or known to be in a registry).
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheRecord>> {
        let path = self.cache_path(key)?;
        let Some(record) = read_record(&path, key)? else {
            return Ok(None);
        };
        if record.blobs.iter().all(|digest| self.knows_blob(digest)) {
            Ok(Some(record))
        } else {
            Ok(None)
        }
    }

    /// Stores `record` under `key`, replacing any earlier record. Every
    /// blob it lists must already be in the store, or be a remote blob of
    /// it (a step found in a registry cache).
    pub fn cache_put(&self, key: &str, record: &CacheRecord) -> Result<()> {
        let path = self.cache_path(key)?;
        if let Some(missing) = record.blobs.iter().find(|d| !self.knows_blob(d)) {
            return Err(StoreError::BlobNotFound { digest: *missing });
        }
        let doc = serde_json::json!({
            "key": key,
            "value": record.value.to_json(),
            "blobs": record.blobs,
        });
        ensure_dir(path.parent().expect("a cache path has a shard directory"))?;
        write_atomically(&self.tmp_dir(), &path, &canonical(&doc))
    }

    /// Removes the record stored under `key`, if any.
    pub fn cache_forget(&self, key: &str) -> Result<()> {
        let path = self.cache_path(key)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Every file under `cache/`, with its record or why it is not one,
    /// in path order.
    pub(crate) fn cache_records(&self) -> Result<Vec<(PathBuf, Result<CacheRecord>)>> {
        let cache = self.path("cache");
        let mut records = Vec::new();
        for shard in read_dir_sorted(&cache)? {
            if !shard.is_dir() {
                continue;
            }
            for path in read_dir_sorted(&shard)? {
                // Only `<key>.json` in its key's shard is a record that
                // `cache_get` could ever find.
                let key = path
                    .file_name()
                    .and_then(|name| name.to_str()?.strip_suffix(".json"))
                    .filter(|key| self.cache_path(key).is_ok_and(|p| p == path));
                let record = match key {
                    Some(key) => read_record(&path, key).and_then(|record| {
                        record.ok_or_else(|| {
                            io_error("read", &path)(std::io::ErrorKind::NotFound.into())
                        })
                    }),
                    None => Err(StoreError::CorruptCacheRecord {
                        path: path.clone(),
                        reason: "its name is not `<key>.json` in the shard of its key".into(),
                    }),
                };
                records.push((path, record));
            }
        }
        Ok(records)
    }

    fn cache_path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self
            .path("cache")
            .join(&key[..2])
            .join(format!("{key}.json")))
    }
}

/// Cache keys are hex digests; the length is left open so the key's hash
/// can change with the cache key format.
fn check_key(key: &str) -> Result<()> {
    let hex = key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex && (2..=128).contains(&key.len()) {
        Ok(())
    } else {
        Err(StoreError::InvalidCacheKey { key: key.into() })
    }
}

fn read_record(path: &Path, key: &str) -> Result<Option<CacheRecord>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    let damaged = |reason: String| StoreError::CorruptCacheRecord {
        path: path.to_path_buf(),
        reason,
    };
    #[derive(serde::Deserialize)]
    struct Stored {
        key: String,
        value: Value,
        blobs: Vec<Digest>,
    }
    let stored: Stored = serde_json::from_slice(&bytes)
        .map_err(|e| damaged(format!("it is not a cache record ({e})")))?;
    if stored.key != key {
        return Err(damaged(format!(
            "it holds the record for key `{}`",
            stored.key
        )));
    }
    let value = CacheValue::from_json(&stored.value)
        .ok_or_else(|| damaged("its value is not a step result hoist knows".into()))?;
    Ok(Some(CacheRecord {
        value,
        blobs: stored.blobs,
    }))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(io_error("read directory", dir))?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const KEY: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn record(store: &Store, layer: &[u8]) -> CacheRecord {
        let (digest, size) = store.put_blob_bytes(layer, None).unwrap();
        CacheRecord::layer(CachedLayer {
            digest,
            size,
            diff_id: Digest::of(b"its tar"),
            tar_size: 3 * size,
        })
    }

    #[test]
    fn put_then_get_round_trips_in_a_sharded_file() {
        let (dir, store) = store();
        assert_eq!(store.cache_get(KEY).unwrap(), None);
        let record = record(&store, b"layer one");
        store.cache_put(KEY, &record).unwrap();
        assert_eq!(store.cache_get(KEY).unwrap(), Some(record.clone()));
        let file = dir.path().join("cache/ab").join(format!("{KEY}.json"));
        let text = fs::read_to_string(file).unwrap();
        assert!(text.starts_with(r#"{"blobs":["sha256:"#), "{text}");
        assert!(text.contains(&format!(r#""key":"{KEY}""#)), "{text}");

        let newer = self::record(&store, b"layer two");
        store.cache_put(KEY, &newer).unwrap();
        assert_eq!(store.cache_get(KEY).unwrap(), Some(newer));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn every_value_round_trips_in_the_shapes_stores_already_hold() {
        let (dir, store) = store();
        let (blob, _) = store.put_blob_bytes(b"a layer", None).unwrap();
        for record in [
            record(&store, b"a layer"),
            CacheRecord::empty(),
            CacheRecord::alias(Digest::of(b"the full key"), Some(blob)),
            CacheRecord::alias(Digest::of(b"a key without a layer"), None),
        ] {
            store.cache_put(KEY, &record).unwrap();
            assert_eq!(store.cache_get(KEY).unwrap(), Some(record));
        }
        // As an earlier hoist wrote them.
        let shard = dir.path().join("cache/ab");
        let layer = format!(
            r#"{{"blobs":["{blob}"],"key":"{KEY}","value":{{"diffID":"{d}","digest":"{blob}","size":7,"tarSize":1536}}}}"#,
            d = Digest::of(b"tar")
        );
        fs::write(shard.join(format!("{KEY}.json")), layer).unwrap();
        assert_eq!(
            store.cache_get(KEY).unwrap().unwrap().value,
            CacheValue::Layer(CachedLayer {
                digest: blob,
                size: 7,
                diff_id: Digest::of(b"tar"),
                tar_size: 1536
            })
        );
        let unknown = format!(r#"{{"blobs":[],"key":"{KEY}","value":{{"layer":1}}}}"#);
        fs::write(shard.join(format!("{KEY}.json")), unknown).unwrap();
        let err = store.cache_get(KEY).unwrap_err();
        assert!(err.to_string().contains("not a step result"), "{err}");
    }

    #[test]
    fn keys_must_be_lowercase_hex() {
        let (_dir, store) = store();
        for key in ["", "a", "ABCD", "../etc", "ab/cd", &"a".repeat(129)] {
            assert!(
                matches!(
                    store.cache_get(key),
                    Err(StoreError::InvalidCacheKey { .. })
                ),
                "{key}"
            );
        }
        assert_eq!(store.cache_get("ab").unwrap(), None);
    }

    #[test]
    fn records_need_their_blobs() {
        let (_dir, store) = store();
        let missing = CacheRecord::alias(Digest::of(b"a key"), Some(Digest::of(b"never stored")));
        let err = store.cache_put(KEY, &missing).unwrap_err();
        assert!(matches!(err, StoreError::BlobNotFound { .. }), "{err:?}");
        assert_eq!(store.cache_get(KEY).unwrap(), None);

        let record = record(&store, b"layer");
        store.cache_put(KEY, &record).unwrap();
        let path = store.blob_path(&record.blobs[0]);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        fs::remove_file(path).unwrap();
        assert_eq!(
            store.cache_get(KEY).unwrap(),
            None,
            "a record without its blobs is a miss"
        );
    }

    #[test]
    fn damaged_records_are_reported() {
        let (dir, store) = store();
        let shard = dir.path().join("cache/ab");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(format!("{KEY}.json")), b"{\"key\":").unwrap();
        let err = store.cache_get(KEY).unwrap_err();
        assert!(
            matches!(err, StoreError::CorruptCacheRecord { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("hoist prune"), "{err}");

        fs::write(
            shard.join("abcd.json"),
            format!(r#"{{"key":"{KEY}","value":1,"blobs":[]}}"#),
        )
        .unwrap();
        let err = store.cache_get("abcd").unwrap_err();
        assert!(
            err.to_string().contains("holds the record for key"),
            "{err}"
        );
        fs::write(shard.join("abcd.txt"), b"{}").unwrap();
        let misplaced = dir.path().join("cache/ff");
        fs::create_dir_all(&misplaced).unwrap();
        fs::write(
            misplaced.join("abcd.json"),
            r#"{"key":"abcd","value":1,"blobs":[]}"#,
        )
        .unwrap();
        let records = store.cache_records().unwrap();
        assert_eq!(records.len(), 4);
        assert!(records.iter().all(|(_, r)| r.is_err()), "{records:?}");
    }
}
