//! Pulls from a scripted registry that misbehaves in the ways a pull must
//! catch: wrong digests, wrong sizes, schema 1.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::fake::{Server, reply};

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
const LAYER: &[u8] = b"not really a tar, but the pull never looks inside";

/// A path, and the content type, body and extra headers served there.
type Route = (String, &'static str, Vec<u8>, Vec<(&'static str, String)>);

/// A manifest for CONFIG and LAYER, claiming `layer_size` for the layer.
fn manifest(layer_size: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(CONFIG), "size": CONFIG.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER_TAR_GZIP, "digest": Digest::of(LAYER), "size": layer_size}],
    }))
    .unwrap()
}

/// Serves `routes` (path -> (content type, body, extra headers)); 404
/// otherwise.
fn registry(routes: Vec<Route>) -> Server {
    let routes: BTreeMap<_, _> = routes
        .into_iter()
        .map(|(path, t, body, headers)| (path, (t, body, headers)))
        .collect();
    Server::start(move |seen, _| match routes.get(&seen.path) {
        Some((content_type, body, headers)) => {
            let mut r = reply(200, body).header("Content-Type", content_type);
            for (name, value) in headers {
                r = r.header(name, value);
            }
            r
        }
        None => reply(404, b""),
    })
}

fn blob_routes(layer: &[u8]) -> Vec<Route> {
    vec![
        (
            format!("/v2/lib/app/blobs/{}", Digest::of(CONFIG)),
            "application/octet-stream",
            CONFIG.to_vec(),
            vec![],
        ),
        (
            format!("/v2/lib/app/blobs/{}", Digest::of(LAYER)),
            "application/octet-stream",
            layer.to_vec(),
            vec![],
        ),
    ]
}

/// The image `1`: CONFIG, and `layer` served as LAYER.
fn image_registry(layer: &[u8]) -> Server {
    let mut routes = blob_routes(layer);
    routes.push(manifest_route(
        "1",
        media_type::OCI_MANIFEST,
        manifest(LAYER.len()),
    ));
    registry(routes)
}

fn manifest_route(reference: &str, content_type: &'static str, body: Vec<u8>) -> Route {
    (
        format!("/v2/lib/app/manifests/{reference}"),
        content_type,
        body,
        vec![],
    )
}

/// A store in a temporary directory, and a client that retries at once.
fn store_and_client() -> (tempfile::TempDir, Store, Client) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let client = Client::new(ClientOptions {
        backoff: Duration::from_millis(1),
        docker_config: Some(dir.path().join("no-config.json")),
        ..ClientOptions::default()
    });
    (dir, store, client)
}

fn try_pull(server: &Server, reference: &str) -> (tempfile::TempDir, Store, Result<Pulled>) {
    let (dir, store, client) = store_and_client();
    let reference = Reference::parse(&format!("{}/lib/app{reference}", server.addr)).unwrap();
    let result = pull_with(
        &client,
        &store,
        &reference,
        &Platform::parse("linux/amd64").unwrap(),
        &[],
    );
    (dir, store, result)
}

#[test]
fn a_well_behaved_registry_gives_a_tagged_image() {
    let server = image_registry(LAYER);
    let (_dir, store, pulled) = try_pull(&server, ":1");
    let pulled = pulled.unwrap();
    assert_eq!(pulled.manifest_digest, Digest::of(&manifest(LAYER.len())));
    assert_eq!((pulled.blobs_fetched, pulled.blobs_present), (2, 0));
    for blob in [CONFIG, LAYER] {
        assert!(store.has_blob(&Digest::of(blob)));
    }
    let tagged = store
        .resolve(&format!("{}/lib/app:1", server.addr))
        .unwrap()
        .unwrap();
    assert_eq!(tagged.digest, pulled.manifest_digest);
    assert_eq!(tagged.media_type, media_type::OCI_MANIFEST);
}

#[test]
fn a_layer_whose_content_does_not_match_its_digest_is_not_stored() {
    let mut tampered = LAYER.to_vec();
    tampered[0] ^= 1;
    let server = image_registry(&tampered);
    let (_dir, store, result) = try_pull(&server, ":1");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, RegistryError::DigestMismatch { what: Content::Blob, expected, actual, .. }
            if *expected == Digest::of(LAYER) && *actual == Digest::of(&tampered)),
        "{err:?}"
    );
    assert!(!store.has_blob(&Digest::of(LAYER)));
    assert!(!store.has_blob(&Digest::of(&tampered)));
    // The intact config is kept; nothing is tagged.
    assert!(store.has_blob(&Digest::of(CONFIG)));
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_layer_shorter_than_its_descriptor_says_is_a_size_mismatch() {
    let mut routes = blob_routes(LAYER);
    let wrong = manifest(LAYER.len() + 10);
    routes.push(manifest_route("1", media_type::OCI_MANIFEST, wrong));
    let server = registry(routes);
    let (_dir, store, result) = try_pull(&server, ":1");
    let err = result.unwrap_err();
    assert!(
        matches!(err, RegistryError::SizeMismatch { expected, actual, .. }
            if expected == LAYER.len() as u64 + 10 && actual == LAYER.len() as u64),
        "{err:?}"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn manifest_digests_are_checked_against_the_reference_and_the_header() {
    let body = manifest(LAYER.len());
    let other = Digest::of(b"another manifest");

    // Pulled by a digest the content does not have.
    let mut routes = blob_routes(LAYER);
    routes.push(manifest_route(
        &other.to_string(),
        media_type::OCI_MANIFEST,
        body.clone(),
    ));
    let server = registry(routes);
    let (_dir, store, result) = try_pull(&server, &format!("@{other}"));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, RegistryError::DigestMismatch { what: Content::Manifest, expected, .. } if *expected == other),
        "{err:?}"
    );
    assert!(
        store.blobs().unwrap().is_empty(),
        "nothing fetched after a bad manifest"
    );

    // A tag whose Docker-Content-Digest header disagrees with the bytes.
    let mut routes = blob_routes(LAYER);
    let mut route = manifest_route("1", media_type::OCI_MANIFEST, body);
    route.3.push(("Docker-Content-Digest", other.to_string()));
    routes.push(route);
    let server = registry(routes);
    let (_dir, _store, result) = try_pull(&server, ":1");
    assert!(matches!(
        result.unwrap_err(),
        RegistryError::DigestMismatch {
            what: Content::Manifest,
            ..
        }
    ));
}

#[test]
fn schema1_manifests_are_refused_with_advice() {
    let schema1 = br#"{"schemaVersion":1,"name":"lib/app","tag":"1","fsLayers":[]}"#.to_vec();
    for content_type in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
    ] {
        let server = registry(vec![manifest_route("1", content_type, schema1.clone())]);
        let (_dir, _store, result) = try_pull(&server, ":1");
        let err = result.unwrap_err();
        assert!(matches!(err, RegistryError::Schema1 { .. }), "{err:?}");
        assert!(err.to_string().contains("schema 1"), "{err}");
    }
}

/// A registry whose first answer for the layer breaks off after `cut`
/// bytes; later answers honour `Range` when `ranges` is set.
fn flaky_layer_registry(cut: usize, ranges: bool) -> Server {
    let manifest = manifest(LAYER.len());
    let layer_path = format!("/v2/lib/app/blobs/{}", Digest::of(LAYER));
    let config_path = format!("/v2/lib/app/blobs/{}", Digest::of(CONFIG));
    let layer_gets = std::sync::atomic::AtomicUsize::new(0);
    Server::start(move |seen, _| {
        if seen.path == "/v2/lib/app/manifests/1" {
            return reply(200, &manifest).header("Content-Type", media_type::OCI_MANIFEST);
        }
        if seen.path == config_path {
            return reply(200, CONFIG);
        }
        if seen.path != layer_path {
            return reply(404, b"");
        }
        if layer_gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return reply(200, LAYER).cut_after(cut);
        }
        match seen.range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(from) if ranges => {
                let from: usize = from.trim_end_matches('-').parse().unwrap();
                reply(206, &LAYER[from..]).header(
                    "Content-Range",
                    &format!("bytes {from}-{}/{}", LAYER.len() - 1, LAYER.len()),
                )
            }
            _ => reply(200, LAYER),
        }
    })
}

#[test]
fn a_broken_layer_transfer_resumes_where_it_stopped() {
    let server = flaky_layer_registry(20, true);
    let (_dir, store, result) = try_pull(&server, ":1");
    let pulled = result.unwrap();
    assert_eq!(pulled.bytes_fetched, (CONFIG.len() + LAYER.len()) as u64);
    store.verify_blob(&Digest::of(LAYER)).unwrap();
    let layer_requests: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with(&Digest::of(LAYER).to_string()))
        .map(|s| s.range)
        .collect();
    assert_eq!(layer_requests, [None, Some("bytes=20-".to_owned())]);
}

#[test]
fn a_registry_that_ignores_ranges_sends_the_blob_again() {
    let server = flaky_layer_registry(20, false);
    let (_dir, store, result) = try_pull(&server, ":1");
    result.unwrap();
    store.verify_blob(&Digest::of(LAYER)).unwrap();
    assert_eq!(store.blobs().unwrap().len(), 3, "config, layer, manifest");
    let temps = std::fs::read_dir(store.root().join("tmp")).unwrap().count();
    assert_eq!(temps, 0, "the partial copy was removed");
}

/// What a [`RecordingTap`] got: the bytes, then how it was finished.
type Recorded = std::sync::Arc<std::sync::Mutex<(Vec<u8>, Option<bool>)>>;

struct RecordingTap(Recorded);

impl std::io::Write for RecordingTap {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LayerTap for RecordingTap {
    fn finish(self: Box<Self>, verified: bool) {
        self.0.lock().unwrap().1 = Some(verified);
    }
}

/// [`try_pull`] with a tap on every layer: what each got, by diffID.
fn try_pull_tapped(server: &Server) -> (Result<Pulled>, Vec<(Digest, Recorded)>) {
    let (_dir, store, client) = store_and_client();
    let reference = Reference::parse(&format!("{}/lib/app:1", server.addr)).unwrap();
    let taps = std::sync::Mutex::new(Vec::new());
    let tap = |_: &Descriptor, diff_id: &Digest| {
        let recorded = Recorded::default();
        taps.lock().unwrap().push((*diff_id, recorded.clone()));
        Some(Box::new(RecordingTap(recorded)) as Box<dyn LayerTap>)
    };
    let result = pull_inner(
        &client,
        &store,
        &reference,
        &Platform::parse("linux/amd64").unwrap(),
        &[],
        Layers::Tapped(&tap),
    );
    (result, taps.into_inner().unwrap())
}

/// The one tap of a pull: its diffID, bytes and how it was finished.
fn the_tap(taps: Vec<(Digest, Recorded)>) -> (Digest, Vec<u8>, Option<bool>) {
    assert_eq!(taps.len(), 1);
    let (diff_id, recorded) = taps.into_iter().next().unwrap();
    let (bytes, finished) = recorded.lock().unwrap().clone();
    (diff_id, bytes, finished)
}

#[test]
fn a_tap_gets_the_layer_as_it_downloads_and_its_verdict() {
    let server = image_registry(LAYER);
    let (result, taps) = try_pull_tapped(&server);
    result.unwrap();
    let (diff_id, bytes, finished) = the_tap(taps);
    // The diffID the config names for the layer: the config came first.
    assert_eq!(diff_id.hex(), "0".repeat(64));
    assert_eq!((bytes.as_slice(), finished), (LAYER, Some(true)));
}

#[test]
fn a_tap_on_a_layer_that_is_not_the_blob_is_finished_unverified() {
    let mut tampered = LAYER.to_vec();
    tampered[0] ^= 1;
    let server = image_registry(&tampered);
    let (result, taps) = try_pull_tapped(&server);
    assert!(result.is_err());
    let (_, bytes, finished) = the_tap(taps);
    assert_eq!((bytes, finished), (tampered, Some(false)));
}

#[test]
fn a_tap_follows_a_resumed_transfer_and_is_let_go_by_a_restarted_one() {
    let server = flaky_layer_registry(20, true);
    let (result, taps) = try_pull_tapped(&server);
    result.unwrap();
    let (_, bytes, finished) = the_tap(taps);
    assert_eq!((bytes.as_slice(), finished), (LAYER, Some(true)));

    // The registry ignores the range: the blob comes again from its first
    // byte, which the tap, 20 bytes in, cannot take.
    let server = flaky_layer_registry(20, false);
    let (result, taps) = try_pull_tapped(&server);
    result.unwrap();
    let (_, bytes, finished) = the_tap(taps);
    assert_eq!((bytes.as_slice(), finished), (&LAYER[..20], Some(false)));
}
