//! `hoist_registry::pull` against a real registry:2 holding the busybox base
//! images: what lands in the store is checked against what skopeo reports, and
//! what went over the wire is counted by a proxy the client knows nothing of.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hoist_oci::Digest;
use hoist_oci::Platform;
use hoist_registry::{PullOptions, Pulled, Reference, RegistryError, pull};
use hoist_store::Store;
use serde_json::{Value, json};

use crate::support::{Registry, free_port, run_ok, skopeo};

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that counts the requests
/// passing through it, and cuts any request whose line contains `refuse`.
struct CountingProxy {
    addr: String,
    requests: Arc<AtomicUsize>,
    blob_gets: Arc<AtomicUsize>,
}

impl CountingProxy {
    fn start(upstream: &str, refuse: Option<String>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let blob_gets = Arc::new(AtomicUsize::new(0));
        let (upstream, counters) = (upstream.to_owned(), (requests.clone(), blob_gets.clone()));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(&upstream).unwrap();
                let (requests, blob_gets) = counters.clone();
                let refuse = refuse.clone();
                std::thread::spawn(move || {
                    relay(client, server, &requests, &blob_gets, refuse.as_deref())
                });
            }
        });
        CountingProxy {
            addr,
            requests,
            blob_gets,
        }
    }

    fn blob_gets(&self) -> usize {
        self.blob_gets.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Copies server -> client on a thread and client -> server here, reading the
/// request lines on the way (GETs have no body, so every line is a head line).
fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    requests: &AtomicUsize,
    blob_gets: &AtomicUsize,
    refuse: Option<&str>,
) {
    let (mut back_from, mut back_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Both);
    });
    let mut pending = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 2);
            if line.starts_with("GET ") || line.starts_with("HEAD ") {
                requests.fetch_add(1, Ordering::SeqCst);
                if line.contains("/blobs/") {
                    blob_gets.fetch_add(1, Ordering::SeqCst);
                }
                if refuse.is_some_and(|r| line.contains(r)) {
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}

/// The digest skopeo reports for `image` (a `docker://` reference).
fn skopeo_digest(image: &str) -> Digest {
    let out = run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    );
    let info: Value = serde_json::from_str(&out).unwrap();
    info["Digest"].as_str().unwrap().parse().unwrap()
}

/// Checks that every blob of the pulled image is in the store, intact, and
/// that the tag resolves to what was pulled.
fn check_complete(store: &Store, pulled: &Pulled) -> Value {
    let manifest: Value = serde_json::from_slice(
        &store
            .read_blob_bytes(&pulled.manifest_digest, 1 << 22)
            .unwrap(),
    )
    .unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    for blob in &blobs {
        let digest: Digest = blob.parse().unwrap();
        store.verify_blob(&digest).unwrap();
    }
    assert_eq!(pulled.config_digest.to_string(), blobs[0]);
    let tagged = store
        .resolve(&pulled.reference.to_string())
        .unwrap()
        .expect("the pulled reference is tagged");
    assert_eq!(tagged, pulled.tagged);
    store.verify_blob(&tagged.digest).unwrap();
    manifest
}

#[test]
fn pulls_busybox_and_a_second_pull_transfers_no_blob() {
    let registry = Registry::shared();
    let proxy = CountingProxy::start(registry.addr(), None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let image = reference(&format!("{}/library/busybox:latest", proxy.addr));

    let started = Instant::now();
    let cold = pull(&store, &image, &amd64(), &PullOptions::default()).unwrap();
    let cold_time = started.elapsed();
    let manifest = check_complete(&store, &cold);
    let layers = manifest["layers"].as_array().unwrap().len();
    assert!(layers >= 1);
    // Compared with the registry's own account of the image, through skopeo.
    let expected = skopeo_digest(&format!("{}/library/busybox:latest", registry.addr()));
    assert_eq!(cold.manifest_digest, expected);
    assert_eq!(cold.tagged.digest, expected);
    assert_eq!(
        cold.tagged.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(cold.index_digest, None);
    assert_eq!(cold.source, proxy.addr);
    assert_eq!((cold.blobs_fetched, cold.blobs_present), (layers + 1, 0));
    let layer_bytes: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert_eq!(
        cold.bytes_fetched,
        layer_bytes + manifest["config"]["size"].as_u64().unwrap()
    );
    assert_eq!(proxy.blob_gets(), layers + 1);
    assert_eq!(
        store
            .resolve(&format!("{}/library/busybox:latest", proxy.addr))
            .unwrap()
            .unwrap()
            .digest,
        expected
    );

    let before = (proxy.requests(), proxy.blob_gets());
    let started = Instant::now();
    let warm = pull(&store, &image, &amd64(), &PullOptions::default()).unwrap();
    let warm_time = started.elapsed();
    assert_eq!(warm.manifest_digest, expected);
    assert_eq!((warm.blobs_fetched, warm.blobs_present), (0, layers + 1));
    assert_eq!(
        proxy.blob_gets(),
        before.1,
        "a second pull fetched a blob again"
    );
    assert_eq!(proxy.requests(), before.0 + 1, "only the manifest GET");
    eprintln!(
        "busybox ({layer_bytes} layer bytes): cold pull {cold_time:?}, warm pull {warm_time:?}"
    );

    // By digest: the content is verified against the reference's digest and
    // tagged under the digest reference.
    let by_digest = reference(&format!("{}/library/busybox@{expected}", proxy.addr));
    let pulled = pull(&store, &by_digest, &amd64(), &PullOptions::default()).unwrap();
    assert_eq!(pulled.manifest_digest, expected);
    assert_eq!(pulled.blobs_fetched, 0);
    assert!(store.resolve(&by_digest.to_string()).unwrap().is_some());
}

#[test]
fn pulls_through_a_docker_hub_mirror() {
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let options = PullOptions {
        mirrors: vec![("docker.io".into(), registry.addr().into())],
        ..PullOptions::default()
    };
    let image = reference("busybox");
    assert_eq!(image.to_string(), "docker.io/library/busybox:latest");
    let pulled = pull(&store, &image, &amd64(), &options).unwrap();
    assert_eq!(pulled.source, registry.addr());
    check_complete(&store, &pulled);
    assert_eq!(
        pulled.manifest_digest,
        skopeo_digest(&format!("{}/library/busybox:latest", registry.addr()))
    );
    let tagged = store
        .resolve("docker.io/library/busybox:latest")
        .unwrap()
        .unwrap();
    assert_eq!(tagged.digest, pulled.manifest_digest);
}

#[test]
fn a_mirror_that_is_down_or_lacks_the_image_falls_back_to_the_registry() {
    let registry = Registry::shared();
    let empty = Registry::start();
    let closed = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let image = reference(&format!("{}/bench/busybox:1", registry.addr()));
    let options = PullOptions {
        mirrors: vec![
            (registry.addr().into(), closed.clone()),
            (registry.addr().into(), empty.addr().into()),
        ],
        ..PullOptions::default()
    };
    let pulled = pull(&store, &image, &amd64(), &options).unwrap();
    assert_eq!(pulled.source, registry.addr());
    check_complete(&store, &pulled);

    // Every endpoint failing: the error names the mirrors and the registry.
    let image = reference("registry.invalid/team/app:1");
    let options = PullOptions {
        mirrors: vec![("registry.invalid".into(), closed.clone())],
        ..PullOptions::default()
    };
    let err = pull(&store, &image, &amd64(), &options).unwrap_err();
    assert!(
        matches!(&err, RegistryError::MirrorsFailed { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&closed) && text.contains("registry.invalid") && text.contains("team/app"),
        "{text}"
    );
}

#[test]
fn a_missing_tag_is_not_found_naming_registry_repository_and_tag() {
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let image = reference(&format!("{}/library/busybox:no-such-tag", registry.addr()));
    let err = pull(&store, &image, &amd64(), &PullOptions::default()).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string().replace(registry.addr(), "ADDR"),
        "manifest no-such-tag of library/busybox was not found on registry ADDR: check the \
         image name and tag"
    );
    assert!(store.list().unwrap().is_empty());
    assert!(store.blobs().unwrap().is_empty());
}

#[test]
fn an_interrupted_pull_keeps_the_blobs_it_completed() {
    let registry = Registry::shared();
    let name = format!("{}/library/busybox:latest", registry.addr());
    let raw = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{name}")),
    );
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    // Every GET of the layer is cut: the pull fails after its retries.
    let proxy = CountingProxy::start(registry.addr(), Some(layer.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let image = reference(&format!("{}/library/busybox:latest", proxy.addr));
    let err = pull(&store, &image, &amd64(), &PullOptions::default()).unwrap_err();
    assert!(err.to_string().contains(&proxy.addr), "{err}");
    assert!(store.has_blob(&config.parse().unwrap()));
    assert!(!store.has_blob(&layer.parse().unwrap()));
    assert!(store.list().unwrap().is_empty(), "nothing tagged");
    assert!(
        proxy.blob_gets() > 2,
        "the layer was retried: {}",
        proxy.blob_gets()
    );

    // The next pull fetches only what is missing.
    let pulled = pull(&store, &reference(&name), &amd64(), &PullOptions::default()).unwrap();
    assert_eq!(pulled.blobs_present, 1);
    assert_eq!(
        pulled.blobs_fetched,
        manifest["layers"].as_array().unwrap().len()
    );
    check_complete(&store, &pulled);
}

/// Pushes an OCI index of two manifests for the busybox image (linux/amd64 and
/// linux/arm64/v8, differing by an annotation) as `multi/busybox:latest`;
/// returns the digests skopeo reports: (index, amd64 manifest, arm64 manifest).
fn push_multi_platform_busybox(registry: &Registry, store: &Store) -> (Digest, Digest, Digest) {
    let base = reference(&format!("{}/library/busybox:latest", registry.addr()));
    let pulled = pull(store, &base, &amd64(), &PullOptions::default()).unwrap();
    let docker: Value = serde_json::from_slice(
        &store
            .read_blob_bytes(&pulled.manifest_digest, 1 << 22)
            .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path();
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let put = |bytes: &[u8]| -> Value {
        let digest = Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        json!({"digest": digest.to_string(), "size": bytes.len()})
    };
    let copy = |d: &Value| {
        let digest: Digest = d["digest"].as_str().unwrap().parse().unwrap();
        std::fs::copy(store.blob_path(&digest), blobs.join(digest.hex())).unwrap();
    };
    copy(&docker["config"]);
    for layer in docker["layers"].as_array().unwrap() {
        copy(layer);
    }
    let oci_manifest = |arch: &str| {
        let layers: Vec<Value> = docker["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": l["digest"], "size": l["size"]})
            })
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": docker["config"]["digest"], "size": docker["config"]["size"]},
            "layers": layers,
            "annotations": {"test.arch": arch},
        }))
        .unwrap()
    };
    let entry = |arch: &str, variant: Option<&str>| {
        let mut d = put(&oci_manifest(arch));
        d["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
        d["platform"] = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            d["platform"]["variant"] = json!(v);
        }
        d
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("amd64", None), entry("arm64", Some("v8"))],
    }))
    .unwrap();
    let mut top = put(&index);
    top["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "multi"});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    let target = format!("{}/multi/busybox:latest", registry.addr());
    run_ok(
        skopeo()
            .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:multi", layout.display()))
            .arg(format!("docker://{target}")),
    );
    let raw = |image: &str| {
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}"))
            .output()
            .unwrap()
            .stdout
    };
    let index_bytes = raw(&target);
    let index: Value = serde_json::from_slice(&index_bytes).unwrap();
    let digest_of = |arch: &str| -> Digest {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        Digest::of(&index_bytes),
        digest_of("amd64"),
        digest_of("arm64"),
    )
}

#[test]
fn pulls_the_platform_s_manifest_from_an_index_and_tags_the_index() {
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let scratch = Store::open(dir.path().join("scratch")).unwrap();
    let (index, amd64_manifest, arm64_manifest) = push_multi_platform_busybox(registry, &scratch);
    let image = reference(&format!("{}/multi/busybox:latest", registry.addr()));

    for (platform, manifest) in [
        ("linux/arm64", arm64_manifest),
        ("linux/arm64/v8", arm64_manifest),
        ("linux/amd64", amd64_manifest),
    ] {
        let store = Store::open(dir.path().join(platform.replace('/', "-"))).unwrap();
        let platform = Platform::parse(platform).unwrap();
        let pulled = pull(&store, &image, &platform, &PullOptions::default()).unwrap();
        assert_eq!(pulled.index_digest, Some(index), "{platform}");
        assert_eq!(pulled.manifest_digest, manifest, "{platform}");
        assert_eq!(pulled.tagged.digest, index);
        assert_eq!(
            pulled.tagged.media_type,
            "application/vnd.oci.image.index.v1+json"
        );
        check_complete(&store, &pulled);
        // FROM reads the tag back through the index to the same manifest.
        let image = hoist_rootfs::load_image(&store, &pulled.tagged.digest, &platform).unwrap();
        assert_eq!(image.manifest_digest, manifest);
    }

    let store = Store::open(dir.path().join("s390x")).unwrap();
    let err = pull(
        &store,
        &image,
        &Platform::parse("linux/s390x").unwrap(),
        &PullOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string().replace(registry.addr(), "ADDR"),
        "ADDR/multi/busybox:latest has no image for linux/s390x; it has images for \
         linux/amd64, linux/arm64/v8: pass one of them as the platform"
    );
}

/// A distribution token server for one registry: it hands a token for the
/// requested scope to requests with basic credentials `user:secret` and
/// refuses anonymous ones. Tokens are RS256 JWTs signed by `openssl` with a
/// self-signed certificate the registry trusts (`rootcertbundle`), sent in
/// the `x5c` header as distribution 2.8 expects.
struct TokenServer {
    addr: String,
    dir: tempfile::TempDir,
    issued: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

const TOKEN_SERVICE: &str = "hoist-test-registry";
const TOKEN_ISSUER: &str = "hoist-test-issuer";

impl TokenServer {
    fn start() -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            Command::new(crate::support::require("openssl", "openssl"))
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=hoist-test-token"])
                .arg("-keyout")
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem")),
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(dir.path().join("cert.pem"))
            .output()
            .unwrap()
            .stdout;
        use base64::Engine as _;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (issued, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let key = dir.path().join("key.pem");
        let counters = (issued.clone(), refused.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (key, x5c, counters) = (key.clone(), x5c.clone(), counters.clone());
                std::thread::spawn(move || answer_token(stream, &key, &x5c, &counters));
            }
        });
        TokenServer {
            addr,
            dir,
            issued,
            refused,
        }
    }

    /// The registry configuration that sends clients here for tokens.
    fn registry_config(&self) -> String {
        format!(
            "auth: {{token: {{realm: 'http://{}/token', service: {TOKEN_SERVICE}, \
             issuer: {TOKEN_ISSUER}, rootcertbundle: '{}'}}}}",
            self.addr,
            self.dir.path().join("cert.pem").display()
        )
    }
}

fn answer_token(
    mut stream: TcpStream,
    key: &std::path::Path,
    x5c: &str,
    (issued, refused): &(Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    use base64::Engine as _;
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let expected = format!("Basic {}", b64.encode("user:secret"));
    if authorization.as_deref() != Some(expected.as_str()) {
        refused.fetch_add(1, Ordering::SeqCst);
        let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    // scope=repository:NAME:ACTIONS (percent-encoded), possibly several.
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let unescape = |s: &str| {
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    let access: Vec<Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(unescape)
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = json!({
        "iss": TOKEN_ISSUER, "sub": "user", "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", issued.load(Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signature = openssl.wait_with_output().unwrap().stdout;
    let token = format!("{signing_input}.{}", url.encode(signature));
    issued.fetch_add(1, Ordering::SeqCst);
    let body = json!({"token": token, "expires_in": 300}).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn pulls_from_a_registry_behind_token_auth() {
    let tokens = TokenServer::start();
    let registry = Registry::start_with(&tokens.registry_config());
    let source = Registry::shared();
    run_ok(
        skopeo()
            .args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .args(["--dest-creds", "user:secret"])
            .arg(format!("docker://{}/library/busybox:latest", source.addr()))
            .arg(format!("docker://{}/private/busybox:1", registry.addr())),
    );
    let issued_for_push = tokens.issued.load(Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let image = reference(&format!("{}/private/busybox:1", registry.addr()));

    // Without credentials: refused, with a message that says to log in.
    let anonymous = PullOptions {
        docker_config: Some(dir.path().join("none.json")),
        ..PullOptions::default()
    };
    let err = pull(&store, &image, &amd64(), &anonymous).unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unauthorized { repository, .. } if repository == "private/busybox"),
        "{err:?}"
    );
    assert!(err.to_string().contains("log in"), "{err}");
    assert_eq!(tokens.refused.load(Ordering::SeqCst), 1);

    // With credentials in a Docker config: one token, reused by a second
    // pull with the same client.
    use base64::Engine as _;
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"auths": {registry.addr(): {"auth": base64::engine::general_purpose::STANDARD.encode("user:secret")}}})
            .to_string(),
    )
    .unwrap();
    let options = PullOptions {
        docker_config: Some(config),
        ..PullOptions::default()
    };
    let client = hoist_registry::Client::new(options.client_options());
    let pulled = hoist_registry::pull_with(&client, &store, &image, &amd64(), &[]).unwrap();
    check_complete(&store, &pulled);
    assert_eq!(
        pulled.manifest_digest,
        skopeo_digest(&format!("{}/library/busybox:latest", source.addr()))
    );
    assert_eq!(tokens.issued.load(Ordering::SeqCst), issued_for_push + 1);
    let again = hoist_registry::pull_with(&client, &store, &image, &amd64(), &[]).unwrap();
    assert_eq!(again.blobs_fetched, 0);
    assert_eq!(tokens.issued.load(Ordering::SeqCst), issued_for_push + 1);
    // 401, token, manifest, config and layers; then one manifest GET.
    let layers = pulled.blobs_fetched;
    assert_eq!(client.requests(), 3 + layers as u64 + 1);
}

#[test]
fn tls_to_a_plain_http_registry_says_to_mark_it_insecure() {
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    // A mirror given as https:// is talked to over TLS even on loopback.
    let mirror = format!("https://{}", registry.addr());
    let options = PullOptions {
        mirrors: vec![("registry.invalid".into(), mirror)],
        ..PullOptions::default()
    };
    let err = pull(
        &store,
        &reference("registry.invalid/library/busybox"),
        &amd64(),
        &options,
    )
    .unwrap_err();
    let RegistryError::MirrorsFailed { mirrors, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        mirrors.replace(registry.addr(), "ADDR"),
        "ADDR: cannot connect to registry ADDR over TLS: it seems to serve plain HTTP; if you \
         trust it, pass ADDR as an insecure registry"
    );
}
