//! The client against a small scripted HTTP server on loopback: the token
//! flow, retries, redirects and the errors users see.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::*;
use crate::fake::{Server, reply};

fn quick() -> ClientOptions {
    ClientOptions {
        backoff: Duration::from_millis(1),
        // No credentials unless a test writes some.
        docker_config: Some(PathBuf::from("/nonexistent/config.json")),
        auth_file: Some(PathBuf::from("/nonexistent/auth.json")),
        ..ClientOptions::default()
    }
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

#[test]
fn bearer_token_flow_with_the_token_cached_per_scope() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let server = Arc::new(Mutex::new(String::new()));
    let addr_cell = server.clone();
    let registry = Server::start(move |seen, _| {
        let addr = addr_cell.lock().unwrap().clone();
        if seen.path.starts_with("/token?") {
            assert_eq!(
                seen.path,
                "/token?service=fake%20registry&scope=repository%3Alib%2Fapp%3Apull&account=u"
            );
            assert_eq!(seen.authorization.as_deref(), Some("Basic dTpw"));
            return reply(200, br#"{"token":"tok-123","expires_in":300}"#);
        }
        if seen.authorization.as_deref() == Some("Bearer tok-123") {
            return reply(200, MANIFEST)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
        }
        reply(401, b"{}").header(
            "WWW-Authenticate",
            &format!(
                r#"Bearer realm="http://{addr}/token",service="fake registry",scope="repository:lib/app:pull""#
            ),
        )
    });
    *server.lock().unwrap() = registry.addr.clone();
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
    assert!(endpoint.plain_http);
    for _ in 0..2 {
        let fetched = client.get_manifest(&endpoint, "lib/app", "v1").unwrap();
        assert_eq!(fetched.bytes, MANIFEST);
        assert_eq!(
            fetched.content_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
    }
    // One 401, one token, then two authorised GETs: the token was reused.
    assert_eq!(registry.count("/token"), 1);
    assert_eq!(registry.count("/v2/"), 3);
    assert_eq!(client.requests(), 4);
    let debug = format!("{client:?}");
    assert!(
        !debug.contains("tok-123") && !debug.contains("dTpw"),
        "{debug}"
    );
}

#[test]
fn a_refused_token_is_an_error_that_names_the_registry_and_no_secret() {
    let registry = Server::start(move |seen, _| {
        if seen.path.starts_with("/token") {
            return reply(401, b"denied");
        }
        reply(401, b"").header("WWW-Authenticate", r#"Bearer realm="http://127.0.0.1:9/x""#)
    });
    // The realm points at a port nothing listens on: a connection error.
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    let err = client.get_manifest(&endpoint, "a", "b").unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&registry.addr), "{err}");
}

#[test]
fn credentials_are_not_sent_to_a_plain_http_realm_on_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let registry = Server::start(|_, _| {
        reply(401, b"").header(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.example/token",service="s""#,
        )
    });
    std::fs::write(
        &config,
        format!(r#"{{"auths":{{"{}":{{"auth":"dTpw"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let client = Client::new(ClientOptions {
        docker_config: Some(config),
        ..quick()
    });
    let err = client
        .get_manifest(&client.endpoint(&registry.addr), "team/app", "1")
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::InsecureRealm { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("http://auth.example/token"),
        "{err}"
    );
    // Nothing but the registry's 401 was requested: no token request left.
    assert_eq!(registry.seen().len(), 1);
}

#[test]
fn basic_challenge_without_credentials_is_unauthorized() {
    let registry = Server::start(|_, _| {
        reply(401, b"").header("WWW-Authenticate", r#"Basic realm="Registry""#)
    });
    let client = Client::new(quick());
    let err = client
        .get_manifest(&client.endpoint(&registry.addr), "team/app", "1")
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unauthorized { repository, .. } if repository == "team/app"),
        "{err:?}"
    );
    assert!(err.to_string().contains("log in"), "{err}");
}

#[test]
fn basic_credentials_are_sent_after_a_basic_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let registry = Server::start(|seen, _| match seen.authorization.as_deref() {
        Some("Basic dTpw") => reply(200, MANIFEST),
        _ => reply(401, b"").header("WWW-Authenticate", r#"Basic realm="Registry""#),
    });
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"dTpw"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let client = Client::new(ClientOptions {
        docker_config: Some(config),
        ..quick()
    });
    let endpoint = client.endpoint(&registry.addr);
    for _ in 0..2 {
        assert_eq!(
            client.get_manifest(&endpoint, "a", "b").unwrap().bytes,
            MANIFEST
        );
    }
    // The second GET sent the credentials at once.
    assert_eq!(registry.seen().len(), 3);
}

#[test]
fn server_errors_and_429_are_retried_a_bounded_number_of_times() {
    let flaky = Server::start(|_, n| match n {
        0 => reply(503, b"busy"),
        1 => reply(429, b"slow down").header("Retry-After", "0"),
        _ => reply(200, MANIFEST),
    });
    let client = Client::new(quick());
    let endpoint = client.endpoint(&flaky.addr);
    assert_eq!(
        client.get_manifest(&endpoint, "a", "b").unwrap().bytes,
        MANIFEST
    );
    assert_eq!(flaky.seen().len(), 3);

    let broken = Server::start(|_, _| reply(500, b"it broke\nmore"));
    let client = Client::new(quick());
    let err = client
        .get_manifest(&client.endpoint(&broken.addr), "a", "b")
        .unwrap_err();
    assert_eq!(broken.seen().len(), 4, "four attempts, then give up");
    assert!(
        matches!(&err, RegistryError::Status { status: 500, detail, .. } if detail == ": it broke"),
        "{err:?}"
    );
}

/// A registry answering 401 with a Bearer challenge whose realm is
/// `realm_addr`, and the manifest to `Bearer tok-1`.
fn bearer_registry(realm_addr: &str) -> Server {
    let challenge = format!(r#"Bearer realm="http://{realm_addr}/token",service="s""#);
    Server::start(move |seen, _| {
        if seen.authorization.as_deref() == Some("Bearer tok-1") {
            return reply(200, MANIFEST);
        }
        reply(401, b"").header("WWW-Authenticate", &challenge)
    })
}

#[test]
fn token_requests_are_retried_as_others_are_but_never_when_refused() {
    // 503, 429 (Retry-After honoured), 502, then a token: one pull.
    let flaky = Server::start(|_, n| match n {
        0 => reply(503, b"busy"),
        1 => reply(429, b"").header("Retry-After", "0"),
        2 => reply(502, b""),
        _ => reply(200, br#"{"token":"tok-1"}"#),
    });
    let registry = bearer_registry(&flaky.addr);
    let client = Client::new(quick());
    let endpoint = client.endpoint(&registry.addr);
    assert_eq!(
        client.get_manifest(&endpoint, "a", "b").unwrap().bytes,
        MANIFEST
    );
    assert_eq!(flaky.count("/token"), 4);

    // Down for good: `attempts` requests, then an error naming the
    // registry and the realm, with no advice about credentials.
    let down = Server::start(|_, _| reply(503, b""));
    let registry = bearer_registry(&down.addr);
    let client = Client::new(quick());
    let err = client
        .get_manifest(&client.endpoint(&registry.addr), "a", "b")
        .unwrap_err();
    assert_eq!(down.count("/token"), 4);
    assert_eq!(
        err.to_string(),
        format!(
            "registry {} asked for a token from http://{}/token, which failed: it answered \
             503; retry later",
            registry.addr, down.addr
        )
    );

    // A refusal is final: asked once.
    for status in [401, 403] {
        let refusing = Server::start(move |_, _| reply(status, b""));
        let registry = bearer_registry(&refusing.addr);
        let client = Client::new(quick());
        let err = client
            .get_manifest(&client.endpoint(&registry.addr), "a", "b")
            .unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
        assert_eq!(refusing.count("/token"), 1, "{status}");
    }
}

#[test]
fn not_found_is_not_retried_and_says_what_to_check() {
    let registry = Server::start(|_, _| reply(404, br#"{"errors":[]}"#));
    let client = Client::new(quick());
    let err = client
        .get_manifest(&client.endpoint(&registry.addr), "library/nope", "1.0")
        .unwrap_err();
    assert_eq!(registry.seen().len(), 1);
    assert_eq!(
        err.to_string(),
        format!(
            "manifest 1.0 of library/nope was not found on registry {}: check the image name \
             and tag",
            registry.addr
        )
    );
}

#[test]
fn a_refused_connection_fails_at_once() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::new(ClientOptions {
        backoff: Duration::from_secs(5),
        ..quick()
    });
    let started = Instant::now();
    let err = client
        .get_manifest(&client.endpoint(&format!("127.0.0.1:{port}")), "a", "b")
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client.requests(), 1);
}

#[test]
fn tls_to_a_plain_http_registry_suggests_insecure() {
    let registry =
        Server::start(|_, _| reply(400, b"Client sent an HTTP request to an HTTPS server"));
    let client = Client::new(quick());
    let endpoint = client.endpoint(&format!("https://{}", registry.addr));
    assert!(!endpoint.plain_http);
    let err = client.get_manifest(&endpoint, "a", "b").unwrap_err();
    assert!(
        matches!(err, RegistryError::TlsToPlainHttp { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("insecure registry"), "{err}");
    assert_eq!(client.requests(), 1, "TLS trouble is not retried");
}

#[test]
fn blob_redirects_to_another_host_drop_the_credentials() {
    let cdn = Server::start(|_, _| reply(200, b"layer bytes"));
    let cdn_addr = cdn.addr.clone();
    let registry = Server::start(move |seen, _| {
        if seen.authorization.is_none() {
            return reply(401, b"").header("WWW-Authenticate", r#"Basic realm="r""#);
        }
        // `localhost` and `127.0.0.1` are different hosts to a client.
        let port = cdn_addr.rsplit(':').next().unwrap();
        reply(307, b"").header("Location", &format!("http://localhost:{port}/signed?x=1"))
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
    let digest = Digest::of(b"layer bytes");
    let mut body = Vec::new();
    client
        .get_blob(&client.endpoint(&registry.addr), "a", &digest)
        .unwrap()
        .read_to_end(&mut body)
        .unwrap();
    assert_eq!(body, b"layer bytes");
    let at_cdn = cdn.seen();
    assert_eq!(at_cdn.len(), 1);
    assert_eq!(at_cdn[0].path, "/signed?x=1");
    assert_eq!(at_cdn[0].authorization, None);
}

#[test]
fn loopback_and_insecure_hosts_use_plain_http() {
    let client = Client::new(ClientOptions {
        insecure: vec!["registry.lan".into(), "10.0.0.2:5000".into()],
        ..quick()
    });
    for (host, plain) in [
        ("localhost:5000", true),
        ("localhost", true),
        ("127.0.0.1:5000", true),
        ("127.1.2.3", true),
        ("[::1]:5000", true),
        ("registry.lan:443", true),
        ("10.0.0.2:5000", true),
        ("10.0.0.2:5001", false),
        ("registry-1.docker.io", false),
        ("ghcr.io", false),
        ("http://ghcr.io", true),
        ("https://127.0.0.1:5000", false),
    ] {
        assert_eq!(client.endpoint(host).plain_http, plain, "{host}");
    }
    assert_eq!(
        client.endpoint("http://10.1.1.1:5000/").host,
        "10.1.1.1:5000"
    );
}
