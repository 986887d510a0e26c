//! The upload protocol against the scripted server: what a real registry
//! cannot be made to do on demand (a chunk failing midway, a Location on
//! another host, a refused mount) and the exact requests sent.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::ClientOptions;
use crate::fake::{Server, reply};

fn quick() -> ClientOptions {
    ClientOptions {
        backoff: Duration::from_millis(1),
        docker_config: Some(PathBuf::from("/nonexistent/config.json")),
        upload_chunk: 1000,
        ..ClientOptions::default()
    }
}

/// A blob of `size` bytes in a temp file.
fn blob(size: usize) -> (tempfile::NamedTempFile, Digest) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&data).unwrap();
    (file, Digest::of(&data))
}

fn file<'a>(path: &'a Path, digest: &'a Digest, size: u64) -> BlobFile<'a> {
    BlobFile { path, digest, size }
}

#[test]
fn a_small_blob_goes_in_one_put_to_a_relative_location() {
    let (data, digest) = blob(600);
    let registry = Server::start(|seen, _| match seen.method.as_str() {
        "POST" => reply(202, b"").header("Location", "/v2/app/blobs/uploads/u1?_state=s"),
        "PUT" => reply(201, b""),
        _ => reply(500, b""),
    });
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let Started::Upload { location, .. } = client
        .start_upload(&endpoint, "app", &digest, None)
        .unwrap()
    else {
        panic!("no upload session");
    };
    assert_eq!(
        location,
        format!("http://{}/v2/app/blobs/uploads/u1?_state=s", registry.addr)
    );
    client
        .upload_blob(
            &endpoint,
            "app",
            &file(data.path(), &digest, 600),
            location,
            None,
        )
        .unwrap();
    let seen = registry.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v2/app/blobs/uploads/");
    assert_eq!(seen[1].method, "PUT");
    assert_eq!(
        seen[1].path,
        format!(
            "/v2/app/blobs/uploads/u1?_state=s&digest=sha256%3A{}",
            digest.hex()
        )
    );
    assert_eq!(seen[1].body_len, 600);
    assert_eq!(
        seen[1].content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(seen.len(), 2);
}

#[test]
fn a_large_blob_goes_in_chunks_and_a_failed_chunk_resumes_from_the_registry_range() {
    let (data, digest) = blob(2500);
    // The second PATCH fails; the registry says it holds the first chunk.
    let registry = Server::start(|seen, n| match seen.method.as_str() {
        "PATCH" if seen.content_range.as_deref() == Some("1000-1999") && n == 1 => reply(500, b""),
        "PATCH" => {
            let end: u64 = seen
                .content_range
                .as_deref()
                .unwrap()
                .split('-')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            reply(202, b"")
                .header("Location", &format!("/upload/u1?after={end}"))
                .header("Range", &format!("0-{end}"))
        }
        "GET" => reply(204, b"").header("Range", "0-999"),
        "PUT" => reply(201, b"").header("Docker-Content-Digest", "wrong-but-unparsed"),
        _ => reply(500, b""),
    });
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let location = endpoint.url("/upload/u1");
    client
        .upload_blob(
            &endpoint,
            "app",
            &file(data.path(), &digest, 2500),
            location,
            None,
        )
        .unwrap();
    let seen: Vec<(String, String, Option<String>, usize)> = registry
        .seen()
        .into_iter()
        .map(|s| (s.method, s.path, s.content_range, s.body_len))
        .collect();
    let expected = vec![
        ("PATCH", "/upload/u1", Some("0-999"), 1000),
        ("PATCH", "/upload/u1?after=999", Some("1000-1999"), 1000),
        ("GET", "/upload/u1?after=999", None, 0),
        ("PATCH", "/upload/u1?after=999", Some("1000-1999"), 1000),
        ("PATCH", "/upload/u1?after=1999", Some("2000-2499"), 500),
    ];
    for (got, want) in seen.iter().zip(&expected) {
        assert_eq!(
            (got.0.as_str(), got.1.as_str(), got.2.as_deref(), got.3),
            *want
        );
    }
    let last = &seen[expected.len()];
    assert_eq!(last.0, "PUT");
    assert_eq!(
        last.1,
        format!("/upload/u1?after=2499&digest=sha256%3A{}", digest.hex())
    );
    assert_eq!(last.3, 0);
}

#[test]
fn a_mount_asks_one_token_for_both_repositories_and_falls_back_to_an_upload() {
    let addr = Arc::new(Mutex::new(String::new()));
    let cell = addr.clone();
    let registry = Server::start(move |seen, _| {
        if seen.path.starts_with("/token?") {
            return reply(200, br#"{"token":"t1"}"#);
        }
        if seen.authorization.as_deref() != Some("Bearer t1") {
            let addr = cell.lock().unwrap().clone();
            return reply(401, b"").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/token",service="reg",scope="repository:app:pull,push""#),
            );
        }
        if seen.path.contains("mount=") && seen.path.ends_with("&from=base") {
            return reply(202, b"").header("Location", "/v2/app/blobs/uploads/u9");
        }
        reply(500, b"")
    });
    *addr.lock().unwrap() = registry.addr.clone();
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let digest = Digest::of(b"layer");
    let started = client
        .start_upload(&endpoint, "app", &digest, Some("base"))
        .unwrap();
    assert_eq!(
        started,
        Started::Upload {
            location: format!("http://{}/v2/app/blobs/uploads/u9", registry.addr),
            min_chunk: None
        }
    );
    let seen = registry.seen();
    assert_eq!(
        seen[0].path,
        format!(
            "/v2/app/blobs/uploads/?mount=sha256%3A{}&from=base",
            digest.hex()
        )
    );
    // Docker's scopes: push on the target, pull on the source, one token.
    assert_eq!(
        seen[1].path,
        "/token?service=reg&scope=repository%3Aapp%3Apull%2Cpush&scope=repository%3Abase%3Apull"
    );
    assert_eq!(seen.len(), 3);
}

#[test]
fn a_mount_answered_201_uploads_nothing() {
    let registry = Server::start(|_, _| reply(201, b""));
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let started = client
        .start_upload(&endpoint, "app", &Digest::of(b"x"), Some("other/repo"))
        .unwrap();
    assert_eq!(started, Started::Mounted);
    assert!(registry.seen()[0].path.ends_with("&from=other%2Frepo"));
}

#[test]
fn an_upload_location_on_another_host_gets_no_credentials() {
    let storage = Server::start(|_, _| reply(201, b""));
    let storage_addr = storage.addr.clone();
    let registry = Server::start(move |seen, _| {
        if seen.authorization.is_none() {
            return reply(401, b"").header("WWW-Authenticate", r#"Basic realm="reg""#);
        }
        reply(202, b"").header(
            "Location",
            &format!("http://{storage_addr}/upload/abc?signature=s"),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{}":{{"auth":"dTpw"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let client = Client::new(ClientOptions {
        docker_config: Some(config),
        ..quick()
    });
    let endpoint = client.endpoint(&registry.addr);
    let (data, digest) = blob(10);
    let Started::Upload { location, .. } = client
        .start_upload(&endpoint, "app", &digest, None)
        .unwrap()
    else {
        panic!("no upload session");
    };
    client
        .upload_blob(
            &endpoint,
            "app",
            &file(data.path(), &digest, 10),
            location,
            None,
        )
        .unwrap();
    assert_eq!(
        registry.seen().last().unwrap().authorization.as_deref(),
        Some("Basic dTpw")
    );
    let put = &storage.seen()[0];
    assert_eq!(put.method, "PUT");
    assert!(put.path.starts_with("/upload/abc?signature=s&digest="));
    assert_eq!(put.authorization, None);
    assert_eq!(put.body_len, 10);
}

#[test]
fn a_permanently_failing_upload_stops_after_bounded_attempts_naming_the_registry() {
    let registry = Server::start(|seen, _| match seen.method.as_str() {
        "POST" => reply(202, b"").header("Location", "/v2/app/blobs/uploads/u"),
        _ => reply(503, b"busy").header("Retry-After", "0"),
    });
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let (data, digest) = blob(100);
    let started = Instant::now();
    let error = client
        .upload_blob(
            &endpoint,
            "app",
            &file(data.path(), &digest, 100),
            endpoint.url("/v2/app/blobs/uploads/u"),
            None,
        )
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = error.to_string();
    assert!(
        text.contains(&registry.addr) && text.contains("503") && text.contains("/v2/app/"),
        "{text}"
    );
    let puts = registry.seen().iter().filter(|s| s.method == "PUT").count();
    assert_eq!(puts as u32, client.attempts());
}

#[test]
fn a_token_without_push_rights_is_a_refused_push_naming_the_repository() {
    let addr = Arc::new(Mutex::new(String::new()));
    let cell = addr.clone();
    // The token server grants a token, but only for pulling: the registry
    // keeps answering 401 (distribution's `insufficient_scope`).
    let registry = Server::start(move |seen, _| {
        if seen.path.starts_with("/token?") {
            return reply(200, br#"{"token":"pull-only"}"#);
        }
        let addr = cell.lock().unwrap().clone();
        reply(401, b"").header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://{addr}/token",error="insufficient_scope""#),
        )
    });
    *addr.lock().unwrap() = registry.addr.clone();
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let error = client
        .start_upload(&endpoint, "team/app", &Digest::of(b"x"), None)
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::PushRefused { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("team/app") && text.contains(&registry.addr),
        "{text}"
    );
}

#[test]
fn a_manifest_put_sends_its_media_type_and_checks_the_digest_the_registry_reports() {
    let manifest = br#"{"schemaVersion":2}"#;
    let good = Digest::of(manifest);
    let registry = Server::start(move |seen, n| {
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        let claimed = if n == 0 { good } else { Digest::of(b"other") };
        reply(201, b"").header("Docker-Content-Digest", &claimed.to_string())
    });
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(
        client
            .put_manifest(&endpoint, "app", "v1", media_type, manifest)
            .unwrap(),
        good
    );
    assert_eq!(registry.seen()[0].path, "/v2/app/manifests/v1");
    assert_eq!(registry.seen()[0].body_len, manifest.len());
    assert!(matches!(
        client.put_manifest(&endpoint, "app", "v1", media_type, manifest),
        Err(RegistryError::DigestMismatch { .. })
    ));
}

#[test]
fn locations_resolve_as_registries_send_them() {
    let base = "http://127.0.0.1:5000/v2/app/blobs/uploads/";
    assert_eq!(
        resolve(base, "https://cdn.example/u/1?s=x"),
        "https://cdn.example/u/1?s=x"
    );
    assert_eq!(
        resolve(base, "/v2/app/blobs/uploads/u1"),
        "http://127.0.0.1:5000/v2/app/blobs/uploads/u1"
    );
    assert_eq!(
        resolve(base, "u2?x=1"),
        "http://127.0.0.1:5000/v2/app/blobs/uploads/u2?x=1"
    );
    assert_eq!(resolve(base, "//other:9/u"), "http://other:9/u");
}
