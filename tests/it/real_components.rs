//! The test support in `support/` against the real components it drives: each
//! helper does what later tests will rely on, checked by what the component
//! itself reports (skopeo, docker, podman), not by the helper's own word.

use crate::support::{
    Dockerd, Registry, buildah, busybox_context, http_fixtures, http_status, podman, podman_load,
    podman_run, run_ok, skopeo, tree_of_image, unpack_oci_image,
};
use serde_json::{Value, json};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

#[test]
fn registry_answers_until_dropped() {
    let registry = Registry::start();
    let addr = registry.addr().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(http_status(&addr, "/v2/"), Some(200));
    drop(registry);
    assert_eq!(
        http_status(&addr, "/v2/"),
        None,
        "registry still answers on {addr}"
    );
}

#[test]
fn shared_registry_serves_the_busybox_base_images() {
    let registry = Registry::shared();
    for name in ["library/busybox:latest", "bench/busybox:1"] {
        let config = run_ok(
            skopeo()
                .args(["inspect", "--tls-verify=false", "--config"])
                .arg(format!("docker://{}/{name}", registry.addr())),
        );
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["/bin/sh"]), "{name}");
    }
}

#[test]
fn the_busybox_base_image_unpacks_to_the_documented_tree() {
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    run_ok(
        skopeo()
            .args(["copy", "-q", "--src-tls-verify=false"])
            .args([
                format!("docker://{}/library/busybox:latest", registry.addr()),
                format!("oci:{}:busybox", layout.display()),
            ]),
    );
    let rootfs = dir.path().join("rootfs");
    unpack_oci_image(&layout, "busybox", &rootfs);
    let tree = tree_of_image(&rootfs).unwrap();
    let entry = |path: &str| {
        tree.iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in the base image"))
    };
    assert_eq!(entry("/bin/busybox")["mode"], "0755");
    assert_eq!(entry("/bin/sh")["target"], "busybox");
    assert_eq!(entry("/tmp")["mode"], "1777");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1001:1001:"), "{passwd}");
}

#[test]
fn dockerd_builds_from_the_mirror_with_buildkit_and_runs_the_image() {
    let dockerd = Dockerd::shared();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo built-by-buildkit > /built\nCMD [\"cat\", \"/built\"]\n",
    )
    .unwrap();
    run_ok(
        dockerd
            .buildkit_build()
            .args(["-q", "-t", "hoist-it/smoke:buildkit"])
            .arg(ctx.path()),
    );
    let out = run_ok(dockerd.docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "hoist-it/smoke:buildkit",
    ]));
    assert_eq!(out, "built-by-buildkit\n");
}

#[test]
fn podman_loads_and_runs_a_scratch_busybox_image() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    assert!(ctx.join("bin/sh").is_symlink() && ctx.join("bin/cat").is_symlink());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin\nCMD [\"/bin/sh\", \"-c\", \"echo $((6 * 7))\"]\n",
    )
    .unwrap();
    // Unique per process: buildah and podman share one image store with any other
    // test run on the machine.
    let image = &format!("localhost/hoist-it/podman-smoke:{}", std::process::id());
    run_ok(
        buildah()
            .args(["bud", "--isolation", "chroot", "-q", "-t", image])
            .arg(&ctx),
    );
    let archive = dir.path().join("image.tar");
    run_ok(
        buildah()
            .args(["push", "-q", image])
            .arg(format!("docker-archive:{}:{image}", archive.display())),
    );
    run_ok(buildah().args(["rmi", "-f", image]));
    let loaded = podman_load(&archive);
    assert!(loaded.contains("podman-smoke"), "podman loaded {loaded}");
    let out = run_ok(podman_run().arg(&loaded));
    assert_eq!(out, "42\n");
    run_ok(podman().args(["rmi", "-f", &loaded]));
}

#[test]
fn tree_of_image_describes_types_modes_owners_and_hardlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("d")).unwrap();
    std::fs::write(root.join("d/f"), b"abc").unwrap();
    std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    std::fs::hard_link(root.join("d/f"), root.join("a-link")).unwrap();
    symlink("d/f", root.join("s")).unwrap();
    symlink("/nowhere", root.join("dangling")).unwrap();
    std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let status = Command::new("chown")
        .args(["-h", "7:8"])
        .arg(root.join("s"))
        .status();
    assert!(
        status.unwrap().success(),
        "chown -h (the tests run as root)"
    );

    let tree = tree_of_image(root).unwrap();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(
        Value::Array(tree),
        json!([
            {"path": "/a-link", "type": "file", "mode": "4750", "uid": 0, "gid": 0,
             "size": 3, "sha256": abc, "hardlink": "/a-link"},
            {"path": "/d", "type": "dir", "mode": "1777", "uid": 0, "gid": 0},
            {"path": "/d/f", "type": "file", "mode": "4750", "uid": 0, "gid": 0,
             "size": 3, "sha256": abc, "hardlink": "/a-link"},
            {"path": "/dangling", "type": "symlink", "mode": "0777", "uid": 0, "gid": 0,
             "target": "/nowhere"},
            {"path": "/s", "type": "symlink", "mode": "0777", "uid": 7, "gid": 8,
             "target": "d/f"},
        ])
    );
}

#[test]
fn http_fixtures_serve_the_add_url_files() {
    let addr = http_fixtures().addr();
    assert_eq!(http_status(addr, "/hello.txt"), Some(200));
    assert_eq!(http_status(addr, "/data/config.json"), Some(200));
    assert_eq!(http_status(addr, "/missing"), Some(404));
}

#[test]
fn an_owned_dockerd_stops_and_leaves_nothing_on_drop() {
    let dockerd = Dockerd::start(None);
    let info = run_ok(
        dockerd
            .docker()
            .args(["info", "--format", "{{.ServerVersion}}"]),
    );
    assert!(info.starts_with("20.10."), "Debian's engine, not {info}");
    let socket = dockerd.host().trim_start_matches("unix://").to_owned();
    let root = std::path::Path::new(&socket).parent().unwrap().to_owned();
    drop(dockerd);
    assert!(!root.exists(), "{} left behind", root.display());
}
