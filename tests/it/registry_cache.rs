//! Layers that stay in registries: a base pulled as manifest and config
//! only, read when a step needs its files, mounted (never moved) when the
//! image is pushed to the registry that holds it. Against registry:2,
//! with what crosses the wire counted by a loopback proxy.

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::cargo_bin;
use hoist_store::Store;

use crate::support::proxy::Proxy;
use crate::support::{Registry, run_ok, skopeo};

fn hoist(store: &Path) -> Command {
    let mut cmd = Command::new(cargo_bin("hoist"));
    cmd.arg("--store").arg(store);
    cmd
}

/// A context whose Dockerfile is `dockerfile`, with one file `app.txt`.
fn context(dir: &Path, dockerfile: &str) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join("app.txt"), "hello from the app\n").unwrap();
    ctx
}

/// The layer digests of `image` in the registry, as skopeo reads them.
fn layers_of(image: &str) -> Vec<String> {
    let raw = run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{image}")),
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_base_is_read_lazily_and_mounted_not_moved_when_pushed_beside_it() {
    let registry = Registry::start();
    registry.push_base_images();
    let proxy = Proxy::start(registry.addr());
    let base_layers = layers_of(&format!("{}/library/busybox:latest", registry.addr()));
    assert!(!base_layers.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = context(
        dir.path(),
        "FROM busybox\nCOPY --link app.txt /app/\nUSER 1000\nCMD [\"cat\", \"/app/app.txt\"]\n",
    );

    // Through a mirror of Docker Hub that is also the push's registry:
    // a linked COPY lands on nothing, so only the base's manifest and
    // config are read, and its layers are mounted from the mirror's
    // repository.
    let image = format!("{}/team/app:v1", proxy.addr());
    let mirror = format!("docker.io={}", proxy.addr());
    run_ok(
        hoist(&store)
            .args([
                "build",
                "-q",
                "--push",
                "--registry-mirror",
                &mirror,
                "-t",
                &image,
            ])
            .arg(&ctx),
    );
    for layer in &base_layers {
        assert_eq!(proxy.count("GET", layer), 0, "{}", proxy.summary());
        assert_eq!(proxy.count("PATCH", layer) + proxy.count("PUT", layer), 0);
        assert_eq!(
            proxy.count("POST", &format!("mount={}", layer.replace(':', "%3A"))),
            1,
            "{}",
            proxy.summary()
        );
    }
    let opened = Store::open(&store).unwrap();
    for layer in &base_layers {
        assert!(
            !opened.has_blob(&layer.parse().unwrap()),
            "{layer} was downloaded"
        );
    }
    drop(opened);
    let pushed = layers_of(&format!("{}/team/app:v1", registry.addr()));
    assert_eq!(pushed[..base_layers.len()], base_layers[..]);
    // The pushed image is whole: skopeo copies every blob of it.
    let layout = dir.path().join("layout");
    run_ok(
        skopeo()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/team/app:v1", registry.addr()))
            .arg(format!("oci:{}:app", layout.display())),
    );

    // To another registry, the base's layers are fetched (from the
    // mirror that served them) to be uploaded.
    let other = Registry::start();
    let elsewhere = format!("{}/team/app:v1", other.addr());
    let second = dir.path().join("second");
    run_ok(
        hoist(&second)
            .args(["build", "-q", "--registry-mirror", &mirror, "-t", &image])
            .arg(&ctx),
    );
    run_ok(hoist(&second).args(["push", "-q", &image, &elsewhere]));
    for layer in &base_layers {
        assert_eq!(proxy.count("GET", layer), 1, "{}", proxy.summary());
    }
    assert_eq!(layers_of(&elsewhere), pushed);
    proxy.clear_log();

    // An export needs every byte: the base's layers are fetched, once,
    // and checked as they stream (prune kept where they are).
    run_ok(hoist(&store).arg("prune"));
    let archive = dir.path().join("app.tar");
    run_ok(
        hoist(&store)
            .args([
                "build",
                "-q",
                "--registry-mirror",
                &mirror,
                "-t",
                &image,
                "--output",
            ])
            .arg(format!("type=docker,dest={}", archive.display()))
            .arg(&ctx),
    );
    for layer in &base_layers {
        assert_eq!(proxy.count("GET", layer), 1, "{}", proxy.summary());
    }
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&archive));
    for layer in &base_layers {
        let hex = layer.trim_start_matches("sha256:");
        assert!(listing.contains(hex), "{listing}");
    }

    // A step that reads the base's files fetches them (under a linked
    // layer made without them); nothing is fetched twice.
    proxy.clear_log();
    let ctx = context(
        &dir.path().join("run"),
        "FROM busybox\nCOPY --link app.txt /app/\nRUN cat /bin/busybox /app/app.txt > /dev/null && echo ran > /ran\n",
    );
    let fresh = dir.path().join("fresh");
    run_ok(
        hoist(&fresh)
            .args(["build", "-q", "--registry-mirror", &mirror, "-t", "ran"])
            .arg(&ctx),
    );
    for layer in &base_layers {
        assert_eq!(proxy.count("GET", layer), 1, "{}", proxy.summary());
    }
}
