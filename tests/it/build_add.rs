//! `hoist build` with ADD of URLs, against a loopback HTTP server whose
//! content the test changes between builds.

use assert_cmd::Command;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Serves `body` (changeable) with 200, and 404 for `/missing`, on a
/// loopback port, one response per connection, until the process ends.
fn serve(body: Arc<Mutex<Vec<u8>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let (status, data) = if request.contains("/missing") {
                ("404 Not Found", b"no".to_vec())
            } else {
                ("200 OK", body.lock().unwrap().clone())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&data);
        }
    });
    addr
}

/// Builds `dockerfile` with an empty context; returns (success, stdout, stderr).
fn build(store: &std::path::Path, dockerfile: &str) -> (bool, String, String) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let out = Command::cargo_bin("hoist")
        .unwrap()
        .arg("--store")
        .arg(store)
        .args(["build", "-t", "add:test"])
        .arg(ctx.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_download_is_cached_by_its_content() {
    let body = Arc::new(Mutex::new(b"one\n".to_vec()));
    let addr = serve(body.clone());
    let store = tempfile::tempdir().unwrap();
    let dockerfile = format!("FROM scratch\nADD http://{addr}/file.txt /f\n");

    let (ok, first, err) = build(store.path(), &dockerfile);
    assert!(ok, "{err}");
    let (ok, again, err) = build(store.path(), &dockerfile);
    assert!(ok, "{err}");
    assert_eq!(first, again, "same content, same image");
    assert!(err.contains("1/2 steps cached"), "{err}");

    *body.lock().unwrap() = b"two\n".to_vec();
    let (ok, changed, err) = build(store.path(), &dockerfile);
    assert!(ok, "{err}");
    assert_ne!(first, changed, "new content, new image");
    assert!(err.contains("0/2 steps cached"), "{err}");
}

#[test]
fn checksum_mismatches_and_http_errors_fail_the_step() {
    let body = Arc::new(Mutex::new(b"served\n".to_vec()));
    let addr = serve(body);
    let store = tempfile::tempdir().unwrap();
    let served = hoist_oci::Digest::of(b"served\n").to_string();
    let wrong = hoist_oci::Digest::of(b"other").to_string();

    let ok = format!("FROM scratch\nADD --checksum={served} http://{addr}/f /f\n");
    let (success, _, err) = build(store.path(), &ok);
    assert!(success, "{err}");

    let bad = format!("FROM scratch\nADD --checksum={wrong} http://{addr}/f /f\n");
    let (success, _, err) = build(store.path(), &bad);
    assert!(!success);
    assert!(
        err.contains(&format!("expected {wrong}, downloaded {served}")),
        "{err}"
    );

    let missing = format!("FROM scratch\nADD http://{addr}/missing /f\n");
    let (success, _, err) = build(store.path(), &missing);
    assert!(!success);
    assert!(
        err.contains(&format!(
            "cannot download http://{addr}/missing: the server answered HTTP 404"
        )),
        "{err}"
    );
}
