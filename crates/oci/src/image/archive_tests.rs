//! Tests of the archive and layout exports, which share their fixtures.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use super::*;
use crate::image::{BlobSource, Document, ImageConfig, MemoryBlobs, RootFs, write_oci_layout};
use crate::layer::{LayerOptions, write_layer};

/// A scratch image with one gzip layer holding `hello.txt`, stored in
/// `MemoryBlobs`; returns the manifest's descriptor and the source.
fn scratch_image(content: &str) -> (Descriptor, MemoryBlobs) {
    let mut blobs = MemoryBlobs::new();
    let entries = [Entry::file("hello.txt", content.as_bytes().to_vec())];
    let (layer, bytes) = write_layer(&entries, &LayerOptions::default(), Vec::new()).unwrap();
    assert_eq!(blobs.insert(bytes), layer.digest);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: vec![layer.diff_id],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    }
    .encode();
    blobs.insert(config.bytes.clone());
    let manifest = Manifest::new(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(
            media_type::OCI_LAYER_TAR_GZIP,
            layer.digest,
            layer.size,
        )],
    )
    .encode();
    blobs.insert(manifest.bytes.clone());
    (manifest.descriptor(media_type::OCI_MANIFEST), blobs)
}

fn export(manifest: &Descriptor, names: &[&str]) -> Vec<ExportImage> {
    vec![ExportImage {
        manifest: manifest.clone(),
        names: names.iter().map(|n| n.to_string()).collect(),
    }]
}

/// One tar entry as read back: path, type, mode, uid, gid, mtime, bytes.
type TarEntry = (String, char, u32, u64, u64, u64, Vec<u8>);

/// Every entry of a tar, checking that no user or group name is set.
fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        assert_eq!(header.username().unwrap(), Some(""));
        assert_eq!(header.groupname().unwrap(), Some(""));
        out.push((
            String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            header.entry_type().as_byte() as char,
            header.mode().unwrap(),
            header.uid().unwrap(),
            header.gid().unwrap(),
            header.mtime().unwrap(),
            data,
        ));
    }
    out
}

fn blob(blobs: &MemoryBlobs, digest: &Digest) -> Vec<u8> {
    let mut bytes = Vec::new();
    blobs.open(digest).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn expected_layout_entries(
    manifest: &Descriptor,
    blobs: &MemoryBlobs,
    extra: BTreeMap<&str, Vec<u8>>,
    index: &Index,
) -> Vec<TarEntry> {
    let parsed = Manifest::from_json(&blob(blobs, &manifest.digest)).unwrap();
    let mut digests = [
        manifest.digest,
        parsed.config.digest,
        parsed.layers[0].digest,
    ];
    digests.sort();
    let mut files: BTreeMap<String, Vec<u8>> = digests
        .iter()
        .map(|d| (format!("blobs/sha256/{}", d.hex()), blob(blobs, d)))
        .collect();
    files.insert("index.json".into(), index.encode().bytes);
    files.insert(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    for (path, bytes) in extra {
        files.insert(path.into(), bytes);
    }
    let mut entries = vec![
        ("blobs/".to_owned(), '5', 0o755, 0, 0, 0, vec![]),
        ("blobs/sha256/".to_owned(), '5', 0o755, 0, 0, 0, vec![]),
    ];
    entries.extend(
        files
            .into_iter()
            .map(|(path, bytes)| (path, '0', 0o644, 0, 0, 0, bytes)),
    );
    entries
}

fn tagged_index(manifest: &Descriptor, refs: &[(&str, &str)]) -> Index {
    Index::new(
        refs.iter()
            .map(|(full, tag)| {
                manifest
                    .clone()
                    .with_annotation(CONTAINERD_IMAGE_NAME, full)
                    .with_annotation(REF_NAME, tag)
            })
            .collect(),
    )
}

#[test]
fn oci_archive_holds_exactly_the_layout() {
    let (manifest, blobs) = scratch_image("hello from hoist\n");
    let out = write_oci_archive(Vec::new(), &export(&manifest, &["app:1.0"]), &blobs).unwrap();
    let index = tagged_index(&manifest, &[("app:1.0", "1.0")]);
    assert_eq!(
        read_tar(&out),
        expected_layout_entries(&manifest, &blobs, BTreeMap::new(), &index)
    );
}

#[test]
fn docker_archive_adds_manifest_json_and_repositories() {
    let (manifest, blobs) = scratch_image("hello from hoist\n");
    let images = export(&manifest, &["localhost:5000/team/app", "app:v2"]);
    let out = write_docker_archive(Vec::new(), &images, &blobs).unwrap();

    let parsed = Manifest::from_json(&blob(&blobs, &manifest.digest)).unwrap();
    let (config, layer) = (parsed.config.digest.hex(), parsed.layers[0].digest.hex());
    let manifest_json = format!(
        r#"[{{"Config":"blobs/sha256/{config}","Layers":["blobs/sha256/{layer}"],"RepoTags":["localhost:5000/team/app:latest","app:v2"]}}]"#
    );
    let repositories = format!(
        r#"{{"app":{{"v2":"{config}"}},"localhost:5000/team/app":{{"latest":"{config}"}}}}"#
    );
    let index = tagged_index(
        &manifest,
        &[
            ("localhost:5000/team/app:latest", "latest"),
            ("app:v2", "v2"),
        ],
    );
    let extra = BTreeMap::from([
        ("manifest.json", manifest_json.into_bytes()),
        ("repositories", repositories.into_bytes()),
    ]);
    assert_eq!(
        read_tar(&out),
        expected_layout_entries(&manifest, &blobs, extra, &index)
    );
}

#[test]
fn archives_are_byte_identical_across_runs_and_share_blobs() {
    let (manifest, blobs) = scratch_image("same\n");
    let mut images = export(&manifest, &["a:1"]);
    images.extend(export(&manifest, &["b:2"]));
    let first = write_docker_archive(Vec::new(), &images, &blobs).unwrap();
    let second = write_docker_archive(Vec::new(), &images, &blobs).unwrap();
    assert_eq!(first, second);
    // Three blobs, each once, although two images use them.
    let blob_entries = read_tar(&first)
        .into_iter()
        .filter(|e| e.0.starts_with("blobs/sha256/") && e.1 == '0')
        .count();
    assert_eq!(blob_entries, 3);
}

#[test]
fn an_untagged_image_gets_one_plain_index_entry() {
    let (manifest, blobs) = scratch_image("x");
    let out = write_oci_archive(Vec::new(), &export(&manifest, &[]), &blobs).unwrap();
    let index = read_tar(&out)
        .into_iter()
        .find(|e| e.0 == "index.json")
        .unwrap()
        .6;
    assert_eq!(
        Index::from_json(&index).unwrap(),
        Index::new(vec![manifest])
    );
}

/// A source whose blob under one digest holds other bytes.
struct Lying(MemoryBlobs, Digest, Vec<u8>);

impl BlobSource for Lying {
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        if *digest == self.1 {
            Ok(Box::new(&self.2[..]))
        } else {
            self.0.open(digest)
        }
    }
    fn size(&self, digest: &Digest) -> io::Result<u64> {
        self.0.size(digest)
    }
}

#[test]
fn corrupt_or_missing_blobs_fail_the_export() {
    let (manifest, blobs) = scratch_image("content\n");
    let parsed = Manifest::from_json(&blob(&blobs, &manifest.digest)).unwrap();
    let layer = parsed.layers[0].digest;
    let mut flipped = blob(&blobs, &layer);
    *flipped.last_mut().unwrap() ^= 1;
    let images = export(&manifest, &["a:1"]);

    let err =
        write_oci_archive(Vec::new(), &images, &Lying(blobs.clone(), layer, flipped)).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Digest { digest, .. } if digest == layer),
        "{err:?}"
    );

    let short = blob(&blobs, &layer)[1..].to_vec();
    let err =
        write_oci_archive(Vec::new(), &images, &Lying(blobs.clone(), layer, short)).unwrap_err();
    assert!(matches!(err, ArchiveError::Size { .. }), "{err:?}");

    let err = write_oci_archive(Vec::new(), &images, &MemoryBlobs::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read blob {} from the store; the store may be incomplete, pull or rebuild the image",
            manifest.digest
        )
    );
}

#[test]
fn an_index_goes_into_oci_archives_not_docker_ones() {
    let (manifest, mut blobs) = scratch_image("x");
    let entry = manifest
        .clone()
        .with_platform(crate::Platform::new("linux", "arm64"));
    let encoded = crate::image::Index::new(vec![entry]).encode();
    assert_eq!(blobs.insert(encoded.bytes.clone()), encoded.digest);
    let index = Descriptor::new(media_type::OCI_INDEX, encoded.digest, encoded.size);
    let archive = write_oci_archive(Vec::new(), &export(&index, &["app:1"]), &blobs).unwrap();
    let listed: Vec<String> = read_tar(&archive).into_iter().map(|e| e.0).collect();
    for digest in [index.digest, manifest.digest] {
        let path = format!("blobs/sha256/{}", digest.hex());
        assert!(listed.contains(&path), "{path} missing: {listed:?}");
    }
    let err = write_docker_archive(Vec::new(), &export(&index, &["app:1"]), &blobs).unwrap_err();
    assert!(
        matches!(err, ArchiveError::IndexForDocker { platforms: 1, .. }),
        "{err:?}"
    );
    // Something that is neither is refused by name.
    let mut config = manifest.clone();
    config.media_type = media_type::OCI_CONFIG.into();
    let err = write_oci_archive(Vec::new(), &export(&config, &[]), &blobs).unwrap_err();
    assert!(matches!(err, ArchiveError::NotAManifest { .. }), "{err:?}");
}

#[test]
fn digest_names_are_refused() {
    let (manifest, blobs) = scratch_image("x");

    let name = format!("app@{}", manifest.digest);
    let err = write_docker_archive(Vec::new(), &export(&manifest, &[&name]), &blobs).unwrap_err();
    assert!(
        err.to_string().starts_with("image name `app@sha256:"),
        "{err}"
    );
}

#[test]
fn names_split_at_the_tag_not_at_a_registry_port() {
    let cases = [
        ("app", "app", "latest"),
        ("app:1.0", "app", "1.0"),
        ("localhost:5000/app", "localhost:5000/app", "latest"),
        (
            "localhost:5000/team/app:v2",
            "localhost:5000/team/app",
            "v2",
        ),
    ];
    for (name, repository, tag) in cases {
        let parsed = ImageName::parse(name).unwrap();
        assert_eq!((&parsed.repository[..], &parsed.tag[..]), (repository, tag));
        assert_eq!(parsed.full, format!("{repository}:{tag}"));
    }
    for bad in ["", "app:", ":tag", "a b"] {
        assert!(ImageName::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn oci_layout_writes_blobs_and_merges_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (first, mut blobs) = scratch_image("one\n");
    write_oci_layout(
        dir.path(),
        &export(&first, &["app:1", "app:latest"]),
        &blobs,
    )
    .unwrap();

    let (second, more) = scratch_image("two\n");
    blobs.insert(blob(&more, &second.digest));
    let parsed = Manifest::from_json(&blob(&more, &second.digest)).unwrap();
    blobs.insert(blob(&more, &parsed.config.digest));
    blobs.insert(blob(&more, &parsed.layers[0].digest));
    write_oci_layout(dir.path(), &export(&second, &["app:latest"]), &blobs).unwrap();

    let index = Index::from_json(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let refs: Vec<(&str, Digest)> = index
        .manifests
        .iter()
        .map(|d| (d.annotations[REF_NAME].as_str(), d.digest))
        .collect();
    assert_eq!(refs, [("1", first.digest), ("latest", second.digest)]);
    assert_eq!(
        fs::read(dir.path().join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );

    let mut names: Vec<String> = fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // Two images of three blobs each, no temp files left.
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let digest: Digest = format!("sha256:{name}").parse().unwrap();
        let bytes = fs::read(dir.path().join("blobs/sha256").join(&name)).unwrap();
        assert_eq!(Digest::of(&bytes), digest);
    }
}

#[test]
fn a_failed_layout_blob_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, blobs) = scratch_image("content\n");
    let parsed = Manifest::from_json(&blob(&blobs, &manifest.digest)).unwrap();
    let layer = parsed.layers[0].digest;
    let source = Lying(blobs, layer, b"not the layer".to_vec());
    let err = write_oci_layout(dir.path(), &export(&manifest, &["a:1"]), &source).unwrap_err();
    assert!(matches!(err, ArchiveError::Size { .. }), "{err:?}");
    let names: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| *n != *layer.hex() && !n.to_string_lossy().ends_with(".tmp")),
        "{names:?}"
    );
    assert!(!dir.path().join("index.json").exists());
}

/// An image whose one layer is zstd-compressed: (manifest, source, tar,
/// diffID the config claims, the real one unless `claimed` is given).
fn zstd_image(
    content: &str,
    claimed: Option<Digest>,
) -> (Descriptor, MemoryBlobs, Vec<u8>, Digest) {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};
    let mut blobs = MemoryBlobs::new();
    let entries = [Entry::file("z.txt", content.as_bytes().to_vec())];
    let tar = crate::layer::write_tar(&entries, Default::default(), Vec::new()).unwrap();
    let diff_id = claimed.unwrap_or(Digest::of(&tar));
    let compressed = compress_to_vec(&tar[..], CompressionLevel::Fastest);
    let size = compressed.len() as u64;
    let layer = blobs.insert(compressed);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: vec![diff_id],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    }
    .encode();
    blobs.insert(config.bytes.clone());
    let manifest = Manifest::new(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(media_type::OCI_LAYER_TAR_ZSTD, layer, size)],
    )
    .encode();
    blobs.insert(manifest.bytes.clone());
    (
        manifest.descriptor(media_type::OCI_MANIFEST),
        blobs,
        tar,
        diff_id,
    )
}

#[test]
fn zstd_layers_are_decompressed_for_docker_and_kept_for_oci() {
    let (manifest, blobs, tar, diff_id) = zstd_image("zstd content\n", None);
    let out = write_docker_archive(Vec::new(), &export(&manifest, &["z:1"]), &blobs).unwrap();
    let entries = read_tar(&out);
    let file = |path: &str| {
        entries
            .iter()
            .find(|e| e.0 == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .6
            .clone()
    };
    let parsed = Manifest::from_json(&blob(&blobs, &manifest.digest)).unwrap();
    let layer = parsed.layers[0].digest;
    assert_eq!(file(&format!("blobs/sha256/{}", diff_id.hex())), tar);
    assert_eq!(
        file(&format!("blobs/sha256/{}", layer.hex())),
        blob(&blobs, &layer)
    );
    let docker: serde_json::Value = serde_json::from_slice(&file("manifest.json")).unwrap();
    assert_eq!(
        docker[0]["Layers"],
        serde_json::json!([format!("blobs/sha256/{}", diff_id.hex())])
    );
    // Names stay sorted with the extra entry merged in.
    let paths: Vec<&String> = entries.iter().map(|e| &e.0).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);

    // The OCI archive has no decompressed copy.
    let oci = read_tar(&write_oci_archive(Vec::new(), &export(&manifest, &[]), &blobs).unwrap());
    assert!(!oci.iter().any(|e| e.0.ends_with(&diff_id.hex())));
}

#[test]
fn a_zstd_layer_that_does_not_match_its_diff_id_fails() {
    let wrong = Digest::of(b"another tar");
    let (manifest, blobs, _, _) = zstd_image("content\n", Some(wrong));
    let images = export(&manifest, &["z:1"]);
    let err = write_docker_archive(Vec::new(), &images, &blobs).unwrap_err();
    assert!(
        matches!(err, ArchiveError::DiffId { expected, .. } if expected == wrong),
        "{err:?}"
    );

    // A corrupt blob is reported as such, not as a diffID mismatch.
    let (manifest, blobs, _, _) = zstd_image("content\n", None);
    let layer = Manifest::from_json(&blob(&blobs, &manifest.digest))
        .unwrap()
        .layers[0]
        .digest;
    let mut flipped = blob(&blobs, &layer);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let source = Lying(blobs, layer, flipped);
    let images = export(&manifest, &["z:1"]);
    let err = write_docker_archive(Vec::new(), &images, &source).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Digest { digest, .. } | ArchiveError::Decompress { digest, .. } if digest == layer),
        "{err:?}"
    );
}

#[test]
fn docker_archives_refuse_artifacts_and_unknown_layers() {
    let mut blobs = MemoryBlobs::new();
    let empty = blobs.insert(b"{}".to_vec());
    let data = blobs.insert(b"payload".to_vec());
    let artifact = Manifest::new(
        Descriptor::new(media_type::OCI_EMPTY, empty, 2),
        vec![Descriptor::new("application/vnd.example.data", data, 7)],
    )
    .encode();
    blobs.insert(artifact.bytes.clone());
    let images = export(&artifact.descriptor(media_type::OCI_MANIFEST), &["a:1"]);
    let err = write_docker_archive(Vec::new(), &images, &blobs).unwrap_err();
    assert!(matches!(err, ArchiveError::NotAnImage { .. }), "{err:?}");
    // An OCI archive carries artifacts as they are.
    write_oci_archive(Vec::new(), &images, &blobs).unwrap();

    let (manifest, blobs) = scratch_image("x");
    let mut parsed = Manifest::from_json(&blob(&blobs, &manifest.digest)).unwrap();
    parsed.layers[0].media_type = "application/x-unknown".into();
    let mut blobs = blobs;
    let odd = parsed.encode();
    blobs.insert(odd.bytes.clone());
    let images = export(&odd.descriptor(media_type::OCI_MANIFEST), &["a:1"]);
    let err = write_docker_archive(Vec::new(), &images, &blobs).unwrap_err();
    assert!(
        matches!(err, ArchiveError::UnsupportedLayer { .. }),
        "{err:?}"
    );
}

#[test]
fn a_missing_layer_fails_before_anything_is_written() {
    let (manifest, blobs) = scratch_image("content\n");
    let parsed = Manifest::from_json(&blob(&blobs, &manifest.digest)).unwrap();
    let mut partial = MemoryBlobs::new();
    partial.insert(blob(&blobs, &manifest.digest));
    partial.insert(blob(&blobs, &parsed.config.digest));
    let mut out = Vec::new();
    let err = write_docker_archive(&mut out, &export(&manifest, &["a:1"]), &partial).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Open { digest, .. } if digest == parsed.layers[0].digest),
        "{err:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn archive_bytes_are_pinned() {
    // An uncompressed layer keeps gzip out of it: this pins the archive
    // format itself (entry order, headers, JSON), so any change to the
    // bytes of an export shows up here and is made on purpose.
    let mut blobs = MemoryBlobs::new();
    let tar = crate::layer::write_tar(
        &[Entry::file("golden.txt", b"golden\n".to_vec())],
        Default::default(),
        Vec::new(),
    )
    .unwrap();
    let size = tar.len() as u64;
    let layer = blobs.insert(tar);
    let config = ImageConfig {
        created: Some(crate::image::rfc3339_utc(0)),
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: vec![layer],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    }
    .encode();
    blobs.insert(config.bytes.clone());
    let manifest = Manifest::new(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(media_type::OCI_LAYER_TAR, layer, size)],
    )
    .encode();
    blobs.insert(manifest.bytes.clone());
    let images = export(
        &manifest.descriptor(media_type::OCI_MANIFEST),
        &["golden:1"],
    );

    let docker = write_docker_archive(Vec::new(), &images, &blobs).unwrap();
    let oci = write_oci_archive(Vec::new(), &images, &blobs).unwrap();
    assert_eq!(
        (
            Digest::of(&docker).to_string(),
            Digest::of(&oci).to_string()
        ),
        (
            "sha256:b843baa09b03a3379cb7da5d1b483c43d73a1d307f5a5a0e994cc48e16819c24".to_owned(),
            "sha256:ae591b1aa11f64e669dee8b55a05881c5d2fc4925b46e13217f1b9db5bfa636b".to_owned()
        )
    );
}
