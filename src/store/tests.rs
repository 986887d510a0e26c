//! Tests of the store as a whole: opening, and (below) several threads and
//! processes sharing one store, and processes killed mid-write.

use std::fs;

use crate::layer::Digest;

use super::*;

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn open_creates_the_oci_layout_and_hoists_own_parts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let store = Store::open(&root).unwrap();
    assert_eq!(store.root(), root);
    assert_eq!(
        read(root.join("oci-layout")),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        read(root.join("index.json")),
        r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
    );
    assert_eq!(read(root.join("hoist.json")), r#"{"hoistStoreVersion":1}"#);
    for dir in ["blobs/sha256", "cache", "snapshots", "tmp", "locks"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    drop(store);
    // Opening again changes nothing.
    let before = read(root.join("index.json"));
    Store::open(&root).unwrap();
    assert_eq!(read(root.join("index.json")), before);
}

#[test]
fn open_refuses_a_store_from_a_newer_hoist_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("hoist.json"), r#"{"hoistStoreVersion":99}"#).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedVersion {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade hoist"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn open_refuses_a_directory_with_other_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    let file = dir.path().join("notes.txt");
    assert!(matches!(
        Store::open(&file).unwrap_err(),
        StoreError::NotAStore { .. }
    ));
}

#[test]
fn open_adopts_an_oci_layout_written_by_another_tool() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("oci-layout"),
        r#"{ "imageLayoutVersion": "1.0.0" }"#,
    )
    .unwrap();
    let index = r#"{"schemaVersion":2,"manifests":[],"annotations":{"x":"y"}}"#;
    fs::write(dir.path().join("index.json"), index).unwrap();
    fs::write(dir.path().join("README"), "other tool").unwrap();
    Store::open(dir.path()).unwrap();
    assert_eq!(read(dir.path().join("index.json")), index);
    assert!(dir.path().join("hoist.json").is_file());
}

#[test]
fn open_refuses_damaged_or_foreign_layout_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedLayout { ref version, .. } if version == "2.0.0"));

    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    fs::write(dir.path().join("index.json"), "{\"manifests\":").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { ref path, .. } if path.ends_with("index.json")));
}

#[test]
fn default_dir_follows_xdg_then_home() {
    let dir = |xdg: Option<&str>, home: Option<&str>| {
        default_dir_from(xdg.map(Into::into), home.map(Into::into))
    };
    assert_eq!(
        dir(Some("/x/cache"), Some("/home/u")).unwrap(),
        Path::new("/x/cache/hoist")
    );
    assert_eq!(
        dir(None, Some("/home/u")).unwrap(),
        Path::new("/home/u/.cache/hoist")
    );
    // A relative XDG_CACHE_HOME is invalid by the XDG spec and ignored.
    assert_eq!(
        dir(Some("rel"), Some("/home/u")).unwrap(),
        Path::new("/home/u/.cache/hoist")
    );
    assert_eq!(
        dir(Some(""), Some("/h")).unwrap(),
        Path::new("/h/.cache/hoist")
    );
    assert!(matches!(dir(None, None), Err(StoreError::NoDefaultDir)));
    assert!(matches!(dir(None, Some("")), Err(StoreError::NoDefaultDir)));
}

#[test]
fn the_store_lock_is_exclusive_only_while_no_other_handle_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Store::open(dir.path()).unwrap();
    let second = Store::open(dir.path()).unwrap();
    let err = first.with_exclusive(false, |_| Ok(())).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another hoist process"));
    // The refused handle still holds its shared lock and keeps working.
    first.put_blob_bytes(b"still usable", None).unwrap();
    drop(second);
    assert_eq!(first.with_exclusive(false, |_| Ok(7)).unwrap(), 7);
    // Afterwards the handle is shared again: others can open beside it,
    // and then it cannot be exclusive.
    let third = Store::open(dir.path()).unwrap();
    assert!(first.with_exclusive(false, |_| Ok(())).is_err());
    drop(third);
    assert!(first.with_exclusive(true, |_| Ok(())).is_ok());
}

/// Stores an image (its layers, a config naming it, a manifest) and returns
/// the manifest's descriptor and the digests of its config and layers.
pub(super) fn put_image(store: &Store, name: &str, layers: &[&[u8]]) -> (Descriptor, Vec<Digest>) {
    let config = serde_json::json!({ "config": { "Labels": { "name": name } } });
    let (config_digest, config_size) = store.put_blob_bytes(&canonical(&config), None).unwrap();
    let mut blobs = vec![config_digest];
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let (digest, size) = store.put_blob_bytes(layer, None).unwrap();
        blobs.push(digest);
        layer_descriptors.push(
            Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", digest, size).to_json(),
        );
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::new("application/vnd.oci.image.config.v1+json", config_digest, config_size).to_json(),
        "layers": layer_descriptors,
    });
    let (digest, size) = store.put_blob_bytes(&canonical(&manifest), None).unwrap();
    (Descriptor::new(OCI_MANIFEST, digest, size), blobs)
}
