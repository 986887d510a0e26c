//! hoist's image documents against the OCI image-spec's own JSON Schemas
//! (`../shared/corpus/oci-image-spec-schema`, draft-04).
//!
//! The validator is checked first: every one of the 81 pass/fail vectors in
//! `oci-image-spec-vectors` must give its expected result, with the checks
//! upstream's Go validator (`schema/validator.go`) runs on top of the
//! schema. Only then are hoist's generated configs, manifests, indexes,
//! descriptors and layouts validated, so a pass means something.

use std::collections::BTreeMap;
use std::path::Path;

use hoist_oci::Digest;
use hoist_oci::Platform;
use hoist_oci::image::{
    Descriptor, Document, ExportImage, Healthcheck, History, ImageConfig, Index, Manifest,
    ManifestOrIndex, MemoryBlobs, RootFs, RunConfig, write_oci_layout,
};
use hoist_oci::layer::{Entry, LayerOptions, write_layer};
use hoist_oci::media_type;
use jsonschema::{Draft, Registry, Validator};
use serde_json::Value;

use crate::common::corpus_dir;

const BASE: &str = "https://opencontainers.org/schema/";

/// Each schema file and the URLs it must answer to (image-spec
/// `schema/schema.go`): references between the files are absolute URLs
/// resolved against these, never fetched.
const SCHEMA_FILES: [(&str, &[&str]); 7] = [
    ("config-schema.json", &["image/config"]),
    (
        "content-descriptor.json",
        &["descriptor", "image/content-descriptor.json"],
    ),
    (
        "defs-descriptor.json",
        &[
            "image/descriptor/mediaType",
            "defs-descriptor.json",
            "image/defs-descriptor.json",
        ],
    ),
    (
        "defs.json",
        &["defs.json", "image/defs.json", "image/descriptor/defs.json"],
    ),
    ("image-index-schema.json", &["image/index"]),
    ("image-layout-schema.json", &["image/layout"]),
    ("image-manifest-schema.json", &["image/manifest"]),
];

/// The entry schema of each media type.
const ENTRY_POINTS: [(&str, &str); 5] = [
    (media_type::OCI_DESCRIPTOR, "descriptor"),
    (media_type::OCI_LAYOUT_HEADER, "image/layout"),
    (media_type::OCI_MANIFEST, "image/manifest"),
    (media_type::OCI_INDEX, "image/index"),
    (media_type::OCI_CONFIG, "image/config"),
];

/// One validator per OCI media type.
struct Schemas {
    validators: BTreeMap<&'static str, Validator>,
}

impl Schemas {
    fn load() -> Schemas {
        let dir = corpus_dir().join("oci-image-spec-schema");
        let mut resources = Vec::new();
        for (file, aliases) in SCHEMA_FILES {
            let contents = read_json(&dir.join(file));
            for alias in aliases {
                resources.push((format!("{BASE}{alias}"), contents.clone()));
            }
        }
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .extend(resources)
            .expect("schema URLs are valid")
            .prepare()
            .expect("the OCI schemas resolve among themselves");
        let validators = ENTRY_POINTS
            .iter()
            .map(|(media_type, alias)| {
                let schema = serde_json::json!({ "$ref": format!("{BASE}{alias}") });
                let validator = jsonschema::options()
                    .with_draft(Draft::Draft4)
                    .with_registry(&registry)
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("cannot build the {alias} schema: {e}"));
                (*media_type, validator)
            })
            .collect();
        Schemas { validators }
    }

    /// Every reason `document` is not a valid `media_type` document: the
    /// schema's errors, then upstream's extra checks.
    fn errors(&self, media_type: &str, document: &Value) -> Vec<String> {
        let mut errors = self.schema_errors(media_type, document);
        errors.extend(go_validator_checks(media_type, document));
        errors
    }

    /// The schema's errors alone.
    fn schema_errors(&self, media_type: &str, document: &Value) -> Vec<String> {
        self.validators[media_type]
            .iter_errors(document)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// Validates canonical bytes hoist wrote.
    fn assert_valid(&self, media_type: &str, bytes: &[u8], what: &str) {
        let document: Value = serde_json::from_slice(bytes).unwrap();
        let errors = self.errors(media_type, &document);
        assert!(
            errors.is_empty(),
            "{what} is not a valid {media_type}:\n{}\n{}",
            errors.join("\n"),
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The checks upstream's `schema/validator.go` runs besides the schema,
/// which the schema alone cannot express:
/// - descriptors: go-digest's `Validate` (the encoded part of a known
///   algorithm must be lowercase hex of the right length; an unknown
///   algorithm is only a warning there);
/// - every descriptor reached by Go's typed decoding: `data` is a `[]byte`,
///   so it must be padded standard base64;
/// - configs: every `Env` entry must match `^[^=]+=.*$`.
fn go_validator_checks(media_type: &str, document: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let descriptors: Vec<&Value> = match media_type {
        media_type::OCI_DESCRIPTOR => {
            if let Some(digest) = document.get("digest").and_then(Value::as_str) {
                errors.extend(check_digest(digest));
            }
            vec![document]
        }
        media_type::OCI_MANIFEST => ["config", "subject"]
            .iter()
            .filter_map(|k| document.get(k))
            .chain(array(document, "layers"))
            .collect(),
        media_type::OCI_INDEX => document
            .get("subject")
            .into_iter()
            .chain(array(document, "manifests"))
            .collect(),
        media_type::OCI_CONFIG => {
            let env = document.pointer("/config/Env").and_then(Value::as_array);
            for entry in env.into_iter().flatten() {
                if let Some(text) = entry.as_str()
                    && text.split_once('=').is_none_or(|(name, _)| name.is_empty())
                {
                    errors.push(format!("/config/Env: `{text}` is not NAME=value"));
                }
            }
            vec![]
        }
        _ => vec![],
    };
    for descriptor in descriptors {
        if let Some(data) = descriptor.get("data").and_then(Value::as_str)
            && !is_padded_base64(data)
        {
            errors.push(format!("data: `{data}` is not padded standard base64"));
        }
    }
    errors
}

fn array<'a>(document: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    document
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// go-digest: `algorithm:encoded`, with sha256/384/512 encoded as
/// lowercase hex of 64/96/128 digits.
fn check_digest(digest: &str) -> Option<String> {
    let (algorithm, encoded) = digest.split_once(':')?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    let valid = encoded.len() == len
        && encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (!valid).then(|| format!("digest: `{digest}` is not {len} lowercase hex digits"))
}

/// Go's `base64.StdEncoding`: the standard alphabet, padded to a multiple
/// of four with at most two `=` at the end.
fn is_padded_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len().is_multiple_of(4)
        && text.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Docker's media types replaced by OCI's, as upstream's backwards
/// compatibility test does before validating Docker documents.
fn docker_to_oci(text: &str) -> String {
    [
        (media_type::DOCKER_MANIFEST_LIST, media_type::OCI_INDEX),
        (media_type::DOCKER_MANIFEST, media_type::OCI_MANIFEST),
        (
            media_type::DOCKER_LAYER_TAR_GZIP,
            media_type::OCI_LAYER_TAR_GZIP,
        ),
        (media_type::DOCKER_CONFIG, media_type::OCI_CONFIG),
    ]
    .iter()
    .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}

#[derive(serde::Deserialize)]
struct Vector {
    file: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    expect: String,
    comment: String,
    digest: Option<String>,
    preprocess: Option<String>,
}

#[test]
fn validator_gives_every_upstream_vector_its_expected_result() {
    let schemas = Schemas::load();
    let dir = corpus_dir().join("oci-image-spec-vectors");
    let vectors: Vec<Vector> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();

    let mut failures = Vec::new();
    let mut by_extra_checks = Vec::new();
    let mut passed = 0;
    for vector in &vectors {
        let raw = std::fs::read(dir.join(&vector.file)).unwrap();
        if let Some(expected) = &vector.digest {
            let found = Digest::of(&raw).to_string();
            if found != *expected {
                failures.push(format!(
                    "{}: digest {found}, expected {expected}",
                    vector.file
                ));
            }
        }
        let mut text = String::from_utf8(raw).unwrap();
        if vector.preprocess.is_some() {
            text = docker_to_oci(&text);
        }
        let errors = match serde_json::from_str::<Value>(&text) {
            Ok(document) => {
                if schemas
                    .schema_errors(&vector.media_type, &document)
                    .is_empty()
                    && !go_validator_checks(&vector.media_type, &document).is_empty()
                {
                    by_extra_checks.push(vector.file.as_str());
                }
                schemas.errors(&vector.media_type, &document)
            }
            Err(e) => vec![format!("not JSON: {e}")],
        };
        let result = if errors.is_empty() { "pass" } else { "fail" };
        if result == vector.expect {
            passed += 1;
        } else {
            failures.push(format!(
                "{}: expected {}, got {result} ({}) {}",
                vector.file,
                vector.expect,
                vector.comment,
                errors.join("; ")
            ));
        }
    }
    println!(
        "oci-image-spec vectors: {passed} of {} gave the expected result; failed only upstream's extra checks: {}",
        vectors.len(),
        by_extra_checks.join(", ")
    );
    assert_eq!(vectors.len(), 81, "the corpus should hold 81 vectors");
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn docker_and_oci_vectors_parse_with_hoists_types() {
    // Every vector that should pass and whose digests hoist can hold
    // (sha256 only, see `Digest`) must read with hoist's lenient parsers;
    // the Docker ones are read as pulled, with Docker's media types.
    let dir = corpus_dir().join("oci-image-spec-vectors");
    let vectors: Vec<Vector> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut read = 0;
    for vector in vectors.iter().filter(|v| v.expect == "pass") {
        let raw = std::fs::read(dir.join(&vector.file)).unwrap();
        let parse: fn(&[u8]) -> Result<(), String> = match vector.media_type.as_str() {
            media_type::OCI_MANIFEST => |b| Manifest::from_json(b).map(drop).map_err(|e| chain(&e)),
            media_type::OCI_INDEX => |b| Index::from_json(b).map(drop).map_err(|e| chain(&e)),
            media_type::OCI_CONFIG => {
                |b| ImageConfig::from_json(b).map(drop).map_err(|e| chain(&e))
            }
            media_type::OCI_DESCRIPTOR => |b| {
                serde_json::from_slice::<Descriptor>(b)
                    .map(drop)
                    .map_err(|e| chain(&e))
            },
            _ => continue,
        };
        let Ok(document) = serde_json::from_slice::<Value>(&raw) else {
            failures.push(format!("{}: not JSON", vector.file));
            continue;
        };
        if !all_digests_sha256(&document) {
            skipped.push(vector.file.as_str());
            continue;
        }
        // Read without knowing the kind, as a pull by tag does.
        let kind = match ManifestOrIndex::from_json(&raw) {
            Ok(ManifestOrIndex::Manifest(_)) => Some(media_type::OCI_MANIFEST),
            Ok(ManifestOrIndex::Index(_)) => Some(media_type::OCI_INDEX),
            Err(_) => None,
        };
        let expected_kind = [media_type::OCI_MANIFEST, media_type::OCI_INDEX]
            .contains(&vector.media_type.as_str())
            .then_some(vector.media_type.as_str());
        if expected_kind.is_some() && kind != expected_kind {
            failures.push(format!(
                "{}: read as {kind:?} without its media type",
                vector.file
            ));
        }
        let result = parse(&raw);
        match result {
            Ok(()) => read += 1,
            Err(e) => failures.push(format!("{}: {e}", vector.file)),
        }
    }
    println!(
        "hoist's parsers read {read} passing vectors; skipped (digest algorithms other than sha256): {}",
        skipped.join(", ")
    );
    assert!(read >= 20, "only {read} vectors were read");
    assert!(
        failures.is_empty(),
        "unreadable vectors:\n{}",
        failures.join("\n")
    );
}

/// True when every `digest` member anywhere in `value` is a sha256 digest.
fn all_digests_sha256(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().all(|(key, item)| match (key.as_str(), item) {
            ("digest", Value::String(digest)) => digest.starts_with("sha256:"),
            _ => all_digests_sha256(item),
        }),
        Value::Array(items) => items.iter().all(all_digests_sha256),
        _ => true,
    }
}

/// An error with its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

/// A scratch image of two layers with every config field hoist writes.
fn full_scratch_image() -> (MemoryBlobs, Manifest, ImageConfig) {
    let mut blobs = MemoryBlobs::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for entries in [
        vec![
            Entry::dir("app").with_mode(0o755),
            Entry::file("app/server.js", b"console.log('hi')\n".to_vec()),
        ],
        vec![Entry::file("etc/motd", b"hello\n".to_vec())],
    ] {
        let (layer, bytes) = write_layer(&entries, &LayerOptions::default(), Vec::new()).unwrap();
        blobs.insert(bytes);
        layers.push(Descriptor::new(
            media_type::OCI_LAYER_TAR_GZIP,
            layer.digest,
            layer.size,
        ));
        diff_ids.push(layer.diff_id);
    }
    let config = ImageConfig {
        created: Some("1970-01-01T00:00:00Z".into()),
        author: Some("hoist".into()),
        architecture: "arm64".into(),
        os: "linux".into(),
        variant: Some("v8".into()),
        config: Some(RunConfig {
            user: "1000".into(),
            exposed_ports: ["3000/tcp".to_owned()].into(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into(), "EMPTY=".into()],
            entrypoint: Some(vec!["node".into()]),
            cmd: Some(vec!["app/server.js".into()]),
            volumes: ["/data".to_owned()].into(),
            working_dir: "/".into(),
            labels: BTreeMap::from([("org.opencontainers.image.title".into(), "app".into())]),
            stop_signal: "SIGINT".into(),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "node".into(), "check.js".into()],
                interval: 5_000_000_000,
                timeout: 1_000_000_000,
                start_period: 2_000_000_000,
                start_interval: 500_000_000,
                retries: 4,
            }),
            shell: vec!["/bin/sh".into(), "-c".into()],
            on_build: vec!["COPY . /app".into()],
            ..RunConfig::default()
        }),
        rootfs: RootFs {
            diff_ids,
            ..RootFs::default()
        },
        history: vec![
            History {
                created: Some("1970-01-01T00:00:00Z".into()),
                created_by: Some("COPY server.js /app/".into()),
                comment: Some("hoist".into()),
                ..History::default()
            },
            History {
                created_by: Some("ENV EMPTY=".into()),
                empty_layer: true,
                ..History::default()
            },
            History {
                created_by: Some("COPY motd /etc/".into()),
                ..History::default()
            },
        ],
        ..ImageConfig::default()
    };
    let encoded = config.encode();
    blobs.insert(encoded.bytes.clone());
    let mut manifest = Manifest::new(encoded.descriptor(media_type::OCI_CONFIG), layers);
    manifest.annotations.insert(
        "org.opencontainers.image.created".into(),
        "1970-01-01T00:00:00Z".into(),
    );
    blobs.insert(manifest.encode().bytes);
    (blobs, manifest, config)
}

#[test]
fn hoists_documents_validate_against_the_schemas() {
    let schemas = Schemas::load();
    let (_, manifest, config) = full_scratch_image();
    schemas.assert_valid(media_type::OCI_CONFIG, &config.encode().bytes, "config");
    schemas.assert_valid(
        media_type::OCI_MANIFEST,
        &manifest.encode().bytes,
        "manifest",
    );

    let mut platform = Platform::new("linux", "arm64");
    platform.variant = Some("v8".into());
    let descriptor = manifest
        .encode()
        .descriptor(media_type::OCI_MANIFEST)
        .with_platform(platform)
        .with_annotation("org.opencontainers.image.ref.name", "1.0");
    schemas.assert_valid(
        media_type::OCI_DESCRIPTOR,
        &descriptor.encode().bytes,
        "descriptor",
    );
    let mut index = Index::new(vec![descriptor]);
    index
        .annotations
        .insert("org.opencontainers.image.vendor".into(), "hoist".into());
    schemas.assert_valid(media_type::OCI_INDEX, &index.encode().bytes, "index");

    // The documents must also fail where they should: a validator that
    // accepted anything would make the assertions above empty.
    let mut broken: Value = serde_json::from_slice(&config.encode().bytes).unwrap();
    broken["rootfs"]["type"] = "tarballs".into();
    assert!(!schemas.errors(media_type::OCI_CONFIG, &broken).is_empty());
}

#[test]
fn an_exported_layout_validates_file_by_file() {
    let schemas = Schemas::load();
    let (blobs, manifest, _) = full_scratch_image();
    let dir = tempfile::tempdir().unwrap();
    let image = ExportImage {
        manifest: manifest.encode().descriptor(media_type::OCI_MANIFEST),
        names: vec!["app:1.0".into(), "localhost:5000/app:latest".into()],
    };
    write_oci_layout(dir.path(), &[image], &blobs).unwrap();

    let read = |path: &str| std::fs::read(dir.path().join(path)).unwrap();
    schemas.assert_valid(
        media_type::OCI_LAYOUT_HEADER,
        &read("oci-layout"),
        "oci-layout",
    );
    schemas.assert_valid(media_type::OCI_INDEX, &read("index.json"), "index.json");
    let index = Index::from_json(&read("index.json")).unwrap();
    assert_eq!(index.manifests.len(), 2);
    for entry in &index.manifests {
        let manifest_bytes = read(&format!("blobs/sha256/{}", entry.digest.hex()));
        schemas.assert_valid(media_type::OCI_MANIFEST, &manifest_bytes, "manifest blob");
        let manifest = Manifest::from_json(&manifest_bytes).unwrap();
        let config = read(&format!("blobs/sha256/{}", manifest.config.digest.hex()));
        schemas.assert_valid(media_type::OCI_CONFIG, &config, "config blob");
    }
}
