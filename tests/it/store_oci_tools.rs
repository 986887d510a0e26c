//! The store is an OCI image layout: the layout tools of the test machines
//! (oci-image-tool, umoci, skopeo) read what hoist stores, and hoist reads
//! and keeps what they write.

use std::path::Path;
use std::process::Command;

use hoist_oci::layer::{Entry, LayerOptions, sort_entries, write_layer};
use hoist_store::{Descriptor, OCI_MANIFEST, Store, canonical, descriptor_to_json};

const REFERENCE: &str = "docker.io/library/app:latest";

/// Stores a one-layer image through the layer pipeline, tags it and returns
/// its manifest descriptor.
fn store_image(store: &Store) -> Descriptor {
    let mut entries = vec![
        Entry::dir("app"),
        Entry::file("app/hello.txt", b"hello from the store\n".to_vec()),
    ];
    sort_entries(&mut entries);
    let writer = store.blob_writer().unwrap();
    let (layer, writer) = write_layer(&entries, &LayerOptions::default(), writer).unwrap();
    let (digest, size) = writer.commit(Some(&layer.digest)).unwrap();
    assert_eq!((digest, size), (layer.digest, layer.size));

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
    });
    let (config_digest, config_size) = store.put_blob_bytes(&canonical(&config), None).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_to_json(&Descriptor::new("application/vnd.oci.image.config.v1+json", config_digest, config_size)),
        "layers": [descriptor_to_json(&Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", layer.digest, layer.size))],
    });
    let (digest, size) = store.put_blob_bytes(&canonical(&manifest), None).unwrap();
    let descriptor = Descriptor::new(OCI_MANIFEST, digest, size);
    store.tag(REFERENCE, &descriptor).unwrap();
    descriptor
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn oci_image_tool_validates_a_tagged_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store_image(&store);
    run(Command::new("oci-image-tool")
        .args(["validate", "--type", "image", "--ref"])
        .arg(format!("name={REFERENCE}"))
        .arg(dir.path()));
}

#[test]
fn umoci_unpacks_a_tagged_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    store_image(&store);
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{REFERENCE}", root.display()))
        .arg(&bundle));
    let hello = std::fs::read_to_string(bundle.join("rootfs/app/hello.txt")).unwrap();
    assert_eq!(hello, "hello from the store\n");
}

#[test]
fn skopeo_copies_out_of_and_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut store = Store::open(&root).unwrap();
    let ours = store_image(&store);

    // Out: skopeo reads the store (it picks the only image when no name is
    // given) and writes it to a plain layout of its own.
    let other = dir.path().join("other");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}", root.display()))
        .arg(format!("oci:{}:copied", other.display())));
    let inspect = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:copied", other.display())));
    assert_eq!(
        inspect.as_bytes(),
        store.read_blob_bytes(&ours.digest, 1 << 20).unwrap()
    );

    // In: skopeo writes an image into the store under a name of its own;
    // hoist resolves it, and prune keeps every blob skopeo wrote.
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:copied", other.display()))
        .arg(format!("oci:{}:imported", root.display())));
    let imported = store.resolve("imported").unwrap().unwrap();
    assert_eq!(imported.digest, ours.digest);
    assert_eq!(store.resolve(REFERENCE).unwrap(), Some(ours));
    let blobs = store.blobs().unwrap();
    let report = store.prune().unwrap();
    assert!(report.removed_blobs.is_empty(), "{report:?}");
    assert_eq!(store.blobs().unwrap(), blobs);
    assert!(store.verify().unwrap().corrupt.is_empty());
    assert_layout_files_present(&root);
}

fn assert_layout_files_present(root: &Path) {
    for name in ["oci-layout", "index.json", "hoist.json", "blobs/sha256"] {
        assert!(root.join(name).exists(), "{name}");
    }
}
