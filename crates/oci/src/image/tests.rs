use std::collections::BTreeMap;

use super::*;
use crate::media_type;
use crate::{Digest, Platform};

fn digest(n: u8) -> Digest {
    Digest::of(&[n])
}

fn sample_config() -> ImageConfig {
    ImageConfig {
        created: Some("1970-01-01T00:00:00Z".into()),
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(RunConfig {
            user: "1000:1000".into(),
            exposed_ports: ["8080/tcp".to_owned(), "53/udp".to_owned()].into(),
            env: vec!["PATH=/usr/bin:/bin".into(), "B=2".into()],
            entrypoint: Some(vec![]),
            cmd: Some(vec!["node".into(), "server.js".into()]),
            volumes: ["/data".to_owned()].into(),
            working_dir: "/app".into(),
            labels: BTreeMap::from([("z".into(), "1".into()), ("a".into(), "2".into())]),
            stop_signal: "SIGTERM".into(),
            healthcheck: Some(Healthcheck {
                test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
                interval: 30_000_000_000,
                retries: 3,
                ..Healthcheck::default()
            }),
            shell: vec!["/bin/sh".into(), "-c".into()],
            on_build: vec!["RUN echo hi".into()],
            ..RunConfig::default()
        }),
        rootfs: RootFs {
            diff_ids: vec![digest(1)],
            ..RootFs::default()
        },
        history: vec![
            History {
                created_by: Some("COPY app /app # buildkit".into()),
                ..History::default()
            },
            History {
                created_by: Some("ENV B=2".into()),
                empty_layer: true,
                ..History::default()
            },
        ],
        ..ImageConfig::default()
    }
}

#[test]
fn config_serialises_canonically_with_go_field_names() {
    let encoded = sample_config().encode();
    let text = String::from_utf8(encoded.bytes.clone()).unwrap();
    let expected = format!(
        concat!(
            r#"{{"architecture":"amd64","config":{{"Cmd":["node","server.js"],"Entrypoint":[],"#,
            r#""Env":["PATH=/usr/bin:/bin","B=2"],"ExposedPorts":{{"53/udp":{{}},"8080/tcp":{{}}}},"#,
            r#""Healthcheck":{{"Interval":30000000000,"Retries":3,"Test":["CMD-SHELL","curl -f http://localhost/"]}},"#,
            r#""Labels":{{"a":"2","z":"1"}},"OnBuild":["RUN echo hi"],"Shell":["/bin/sh","-c"],"#,
            r#""StopSignal":"SIGTERM","User":"1000:1000","Volumes":{{"/data":{{}}}},"WorkingDir":"/app"}},"#,
            r#""created":"1970-01-01T00:00:00Z","history":[{{"created_by":"COPY app /app # buildkit"}},"#,
            r#"{{"created_by":"ENV B=2","empty_layer":true}}],"os":"linux","#,
            r#""rootfs":{{"diff_ids":["{}"],"type":"layers"}}}}"#
        ),
        digest(1)
    );
    assert_eq!(text, expected);
    assert_eq!(encoded.digest, Digest::of(expected.as_bytes()));
    assert_eq!(encoded.size, expected.len() as u64);
}

#[test]
fn documents_round_trip_through_their_json() {
    let config = sample_config();
    assert_eq!(
        ImageConfig::from_json(&config.encode().bytes).unwrap(),
        config
    );

    let layer = Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, digest(2), 42)
        .with_annotation("org.example", "x");
    let manifest = Manifest::new(
        config.encode().descriptor(media_type::OCI_CONFIG),
        vec![layer],
    );
    assert_eq!(
        Manifest::from_json(&manifest.encode().bytes).unwrap(),
        manifest
    );

    let index = Index::new(vec![
        manifest
            .encode()
            .descriptor(media_type::OCI_MANIFEST)
            .with_platform(Platform::new("linux", "arm64")),
    ]);
    assert_eq!(Index::from_json(&index.encode().bytes).unwrap(), index);
}

#[test]
fn unset_and_empty_entrypoint_stay_apart() {
    let parse = |json: &str| {
        ImageConfig::from_json(
            format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{json}}}"#)
                .as_bytes(),
        )
        .unwrap()
        .config
        .unwrap()
    };
    assert_eq!(parse(r#"{"Entrypoint":null}"#).entrypoint, None);
    assert_eq!(parse(r#"{}"#).entrypoint, None);
    assert_eq!(parse(r#"{"Entrypoint":[]}"#).entrypoint, Some(vec![]));
}

#[test]
fn docker_configs_with_nulls_and_extra_fields_parse() {
    // The shape `docker inspect` shows and Docker Hub serves: Go's nil
    // slices and maps as `null`, plus Docker-only fields.
    let json = format!(
        r#"{{"architecture":"amd64","os":"linux","docker_version":"20.10.24",
        "container":"abc","container_config":{{"Cmd":["/bin/sh"]}},
        "config":{{"Hostname":"","User":"","Env":null,"Cmd":null,"Volumes":null,
          "ExposedPorts":{{"80/tcp":{{}}}},"Labels":null,"OnBuild":null,"Image":"sha256:x",
          "Healthcheck":{{"Test":["NONE"]}}}},
        "rootfs":{{"type":"layers","diff_ids":["{}"]}},
        "history":[{{"created":"2020-01-01T00:00:00.1Z","created_by":"/bin/sh","empty_layer":null}}]}}"#,
        digest(3)
    );
    let config = ImageConfig::from_json(json.as_bytes()).unwrap();
    let run = config.config.as_ref().unwrap();
    assert_eq!(run.cmd, None);
    assert!(run.env.is_empty() && run.volumes.is_empty() && run.labels.is_empty());
    assert_eq!(run.exposed_ports, ["80/tcp".to_owned()].into());
    assert_eq!(run.healthcheck.as_ref().unwrap().test, ["NONE"]);
    assert_eq!(config.rootfs.diff_ids, [digest(3)]);
    assert!(!config.history[0].empty_layer);
}

#[test]
fn manifest_or_index_reads_by_media_type_then_by_shape() {
    let config = Descriptor::new(media_type::DOCKER_CONFIG, digest(1), 10);
    let mut manifest = Manifest::new(config, vec![]);
    manifest.media_type = Some(media_type::DOCKER_MANIFEST.into());
    let bytes = manifest.encode().bytes;
    assert!(matches!(
        ManifestOrIndex::from_json(&bytes).unwrap(),
        ManifestOrIndex::Manifest(m) if m == manifest
    ));

    manifest.media_type = None;
    let bytes = manifest.encode().bytes;
    assert!(matches!(
        ManifestOrIndex::from_json(&bytes).unwrap(),
        ManifestOrIndex::Manifest(_)
    ));

    let mut index = Index::new(vec![]);
    index.media_type = Some(media_type::DOCKER_MANIFEST_LIST.into());
    assert!(matches!(
        ManifestOrIndex::from_json(&index.encode().bytes).unwrap(),
        ManifestOrIndex::Index(_)
    ));
    assert!(matches!(
        ManifestOrIndex::from_json(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
        ManifestOrIndex::Index(_)
    ));
}

#[test]
fn parse_errors_say_what_is_wrong() {
    let either = |b: &[u8]| ManifestOrIndex::from_json(b).map(|_| ());
    let manifest = |b: &[u8]| Manifest::from_json(b).map(|_| ());
    type Parse = fn(&[u8]) -> Result<(), ImageError>;
    let cases: [(Parse, &[u8], &str); 5] = [
        (
            manifest,
            br#"{"schemaVersion":1,"config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#,
            "manifest has schemaVersion 1; only schema version 2 is supported",
        ),
        (
            either,
            br#"{"schemaVersion":2,"mediaType":"text/plain","manifests":[]}"#,
            "manifest or index has media type `text/plain`, which is not a manifest or index media type hoist knows",
        ),
        (
            either,
            br#"{"schemaVersion":2}"#,
            "document has no mediaType and neither `manifests` nor `config`/`layers`; it is not a manifest or an index",
        ),
        (
            manifest,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}}"#,
            "manifest has media type `application/vnd.oci.image.index.v1+json`, which is not a manifest media type hoist knows",
        ),
        (
            either,
            b"[",
            "invalid manifest or index JSON; the document is not an OCI or Docker schema-2 manifest or index",
        ),
    ];
    for (parse, bytes, message) in cases {
        assert_eq!(parse(bytes).unwrap_err().to_string(), message);
    }
}

#[test]
fn rfc3339_matches_known_instants() {
    // Cross-checked with `date -u -d @SECONDS +%Y-%m-%dT%H:%M:%SZ`.
    let cases = [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (951_868_799, "2000-02-29T23:59:59Z"),
        (951_868_800, "2000-03-01T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (4_107_542_400, "2100-03-01T00:00:00Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
    ];
    for (seconds, text) in cases {
        assert_eq!(rfc3339_utc(seconds), text, "{seconds}");
        assert_eq!(parse_rfc3339_utc(text), Some(seconds), "{text}");
    }
    assert_eq!(
        parse_rfc3339_utc("2023-11-14T22:13:20.123456Z"),
        Some(1_700_000_000)
    );
    for bad in [
        "2023-11-14T22:13:20",
        "2023-11-14 22:13:20Z",
        "2023-02-29T00:00:00Z",
        "2023-13-01T00:00:00Z",
        "2023-1-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "",
    ] {
        assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
    }
}
