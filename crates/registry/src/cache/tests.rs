use super::*;
use hoist_store::Store;

fn layer_entry() -> Entry {
    Entry {
        key: Digest::of(b"a step"),
        step: Step::Layer(CachedLayer {
            digest: Digest::of(b"a layer"),
            size: 123,
            diff_id: Digest::of(b"its tar"),
            tar_size: 456,
        }),
        created: 1_700_000_000,
    }
}

#[test]
fn an_entry_reads_back_from_its_manifest() {
    for entry in [
        layer_entry(),
        Entry {
            step: Step::Empty,
            ..layer_entry()
        },
    ] {
        let bytes = entry.to_manifest();
        assert_eq!(Entry::from_manifest(&entry.key, &bytes), Ok(entry.clone()));
        let manifest = Manifest::from_json(&bytes).unwrap();
        assert_eq!(manifest.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
        assert_eq!(manifest.config, empty_config());
        assert_eq!(
            manifest.annotations[CREATED], "2023-11-14T22:13:20Z",
            "created, for people and registries' own retention rules"
        );
    }
}

#[test]
fn entries_of_another_key_a_newer_format_or_another_shape_are_unusable() {
    let entry = layer_entry();
    let bytes = entry.to_manifest();
    let other = Digest::of(b"another step");
    assert!(matches!(
        Entry::from_manifest(&other, &bytes),
        Err(Unusable::OtherKey(_))
    ));
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        f(&mut value);
        Entry::from_manifest(&entry.key, &serde_json::to_vec(&value).unwrap())
    };
    assert_eq!(
        edit(&|v| v["annotations"][VERSION] = "2".into()),
        Err(Unusable::NewerFormat("2".into()))
    );
    let malformed: [&dyn Fn(&mut serde_json::Value); 6] = [
        &|v| v["annotations"][VERSION] = "one".into(),
        &|v| v["annotations"][CREATED] = "yesterday".into(),
        &|v| v["layers"][0]["annotations"][DIFF_ID] = "sha256:xyz".into(),
        &|v| v["layers"][0]["mediaType"] = media_type::OCI_CONFIG.into(),
        &|v| {
            let layer = v["layers"][0].clone();
            v["layers"] = serde_json::json!([layer.clone(), layer]);
        },
        &|v| *v = serde_json::json!({"truncated": true}),
    ];
    for (i, change) in malformed.iter().enumerate() {
        assert!(
            matches!(edit(change), Err(Unusable::Malformed(_))),
            "{i}: {:?}",
            edit(change)
        );
    }
    assert!(matches!(
        Entry::from_manifest(&entry.key, &bytes[..bytes.len() / 2]),
        Err(Unusable::Malformed(_))
    ));
}

#[test]
fn a_tag_is_the_prefix_and_the_keys_hex_within_the_distribution_spec_limit() {
    let tag = tag_of(&Digest::of(b"k"));
    assert!(tag.starts_with(TAG_PREFIX));
    assert!(tag.len() <= 128);
    assert!(
        tag.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    );
}

#[test]
fn a_directory_cache_keeps_fresh_entries_and_rewrites_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let (blob, size) = store.put_blob_bytes(b"a layer's bytes", None).unwrap();
    let cache = DirectoryCache::new(dir.path().join("cache"));
    let entry = Entry {
        step: Step::Layer(CachedLayer {
            digest: blob,
            size,
            diff_id: Digest::of(b"its tar"),
            tar_size: 99,
        }),
        ..layer_entry()
    };
    assert!(cache.lookup(&entry.key).unwrap().is_none());
    let now = 1_800_000_000;
    let first = cache
        .export(&store, std::slice::from_ref(&entry), now)
        .unwrap();
    assert_eq!(
        (first.written, first.kept, first.bytes_copied),
        (1, 0, size)
    );
    let found = cache.lookup(&entry.key).unwrap().unwrap().unwrap();
    assert!(found.same_step(&entry));
    assert_eq!(found.created, now);
    let again = cache
        .export(&store, std::slice::from_ref(&entry), now + 60)
        .unwrap();
    assert_eq!((again.written, again.kept, again.bytes_copied), (0, 1, 0));
    let later = cache
        .export(
            &store,
            std::slice::from_ref(&entry),
            now + REFRESH_AFTER + 1,
        )
        .unwrap();
    assert_eq!((later.written, later.kept, later.bytes_copied), (1, 0, 0));
    // Imported into another store, checked against its digest.
    let other = Store::open(dir.path().join("other")).unwrap();
    cache.import(&other, &blob).unwrap();
    assert!(other.has_blob(&blob));
    let leftovers: Vec<_> = walk(&dir.path().join("cache"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A damaged layer is refused.
    let third = Store::open(dir.path().join("third")).unwrap();
    std::fs::write(
        cache.root().join("blobs/sha256").join(blob.hex()),
        b"other bytes",
    )
    .unwrap();
    assert!(cache.import(&third, &blob).is_err());
    assert!(!third.has_blob(&blob));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
