//! hoist's own image (packaging/Dockerfile, built by hoist through
//! scripts/build-image.sh) run by the suite's dockerd as CI runners run it:
//! `docker run` as root with Docker's default seccomp profile and
//! capabilities, no `--privileged`, the host network for the loopback
//! registry. Namespaces cannot be made there, so `auto` runs RUN steps with
//! chroot isolation; the images it pushes must be the ones hoist builds on
//! the host in namespaces.

use crate::support::process::ProcessDir;
use crate::support::tree::tree_of_image;
use crate::support::{
    Dockerd, podman, podman_load, repo_root, run_ok, skopeo, tutorial_bases, unpack_oci_image,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// hoist's image as a docker archive, built once per run.
/// Its name, the archive, and the directory holding it.
pub(crate) fn hoist_image_archive() -> &'static (String, PathBuf, ProcessDir) {
    static ARCHIVE: OnceLock<(String, PathBuf, ProcessDir)> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = ProcessDir::shared("hoist-image");
        let tar = dir.path().join("hoist.tar");
        let name = format!("hoist-it/hoist:{}", std::process::id());
        let hoist = assert_cmd::cargo::cargo_bin("hoist");
        run_ok(
            Command::new("bash")
                .arg(repo_root().join("scripts/build-image.sh"))
                .env("HOIST_BIN", &hoist)
                .env("HOIST", &hoist)
                .arg("--store")
                .arg(dir.path().join("store"))
                .args(["-q", "-t", &name, "--output"])
                .arg(format!("type=docker,dest={}", tar.display())),
        );
        (name, tar, dir)
    })
}

/// hoist's image, loaded into podman once per run; the images earlier
/// runs left there (other process ids' tags) are removed first. Tests
/// share it and never remove it, as one may still run from it.
pub(crate) fn podman_hoist_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let (name, tar, _) = hoist_image_archive();
        let repository = name.rsplit_once(':').unwrap().0;
        let listed = run_ok(podman().args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
        for stale in listed
            .lines()
            .filter(|l| l.ends_with(repository) || l.contains(&format!("{repository}:")))
        {
            let _ = podman().args(["rmi", "-f", stale]).output();
        }
        podman_load(tar)
    })
}

/// hoist's image, loaded into the shared dockerd.
fn hoist_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let (name, tar, _) = hoist_image_archive();
        run_ok(Dockerd::shared().docker().arg("load").arg("-i").arg(tar));
        name.clone()
    })
}

/// The bench's run-heavy workload (../shared/bench/make-workloads.sh), on
/// the Debian stand-in base instead of the bench's own Debian image.
fn run_heavy() -> &'static Path {
    static DIR: OnceLock<(ProcessDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = ProcessDir::shared("workloads");
        let script = repo_root().join("../shared/bench/make-workloads.sh");
        assert!(
            script.is_file(),
            "{} is missing: the run-heavy workload comes from it",
            script.display()
        );
        let empty = dir.path().join("empty-rootfs");
        std::fs::create_dir_all(&empty).unwrap();
        run_ok(
            Command::new("bash")
                .arg(&script)
                .arg(dir.path().join("out"))
                .env("PUSH_BASES", "0")
                .env("ROOTFS", &empty),
        );
        let dockerfile = dir.path().join("out/run-heavy/Dockerfile");
        let text = std::fs::read_to_string(&dockerfile).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("FROM "), "{}", lines[0]);
        lines[0] = "FROM python:3.9-slim";
        std::fs::write(&dockerfile, lines.join("\n") + "\n").unwrap();
        let ctx = dir.path().join("out/run-heavy");
        (dir, ctx)
    })
    .1
}

/// `hoist build -q --push` of `ctx` as `tag`: on the host (in namespaces,
/// into `store`), or inside a default container of the shared dockerd.
/// Returns the digest and what hoist printed on stderr.
fn build_and_push(ctx: &Path, tag: &str, store: Option<&Path>) -> (String, String) {
    let registry = tutorial_bases();
    let mirror = format!("docker.io={}", registry.addr());
    let out = match store {
        Some(store) => Command::new(assert_cmd::cargo::cargo_bin("hoist"))
            .env_remove("HOIST_ISOLATION")
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("--store")
            .arg(store)
            .args(["build", "-q", "--isolation", "namespaces"])
            .args(["--registry-mirror", &mirror, "-t", tag, "--push"])
            .arg(ctx)
            .output()
            .unwrap(),
        None => Dockerd::shared()
            .docker()
            .args(["run", "--rm", "--network=host", "-v"])
            .arg(format!("{}:/ctx:ro", ctx.display()))
            .args([hoist_image(), "build", "--progress", "plain"])
            .args(["--registry-mirror", &mirror, "-t", tag, "--push", "/ctx"])
            .output()
            .unwrap(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "build of {} ({}) failed: {stderr}",
        ctx.display(),
        if store.is_some() { "host" } else { "container" }
    );
    // The digest is the last line hoist prints on stdout (the only one
    // with -q).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}: {stderr}");
    (digest, stderr)
}

/// The file tree of `reference` pulled from the registry.
fn pulled_tree(reference: &str, dir: &Path) -> Vec<Value> {
    std::fs::create_dir_all(dir).unwrap();
    let layout = dir.join("oci");
    run_ok(
        skopeo()
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:x", layout.display())),
    );
    let rootfs = dir.join("rootfs");
    unpack_oci_image(&layout, "x", &rootfs);
    tree_of_image(&rootfs).unwrap()
}

/// The tutorial's two apps and the bench's run-heavy workload, built and
/// pushed by hoist's image inside a default container: the same images as
/// on the host. run-heavy writes random bytes, so its two images are
/// compared file by file (paths, types, modes, owners, sizes, links, and
/// the contents of every file but the random ones).
#[test]
fn hoist_in_a_default_container_builds_what_it_builds_on_the_host() {
    let registry = tutorial_bases().addr().to_string();
    let store = ProcessDir::owned("container-host-store");
    let apps: Vec<(&str, PathBuf)> = vec![
        ("web-app", repo_root().join("fixtures/tutorial/web-app")),
        (
            "configurable-app",
            repo_root().join("fixtures/tutorial/configurable-app"),
        ),
    ];
    for (name, ctx) in &apps {
        let (host, _) = build_and_push(
            ctx,
            &format!("{registry}/ctr/{name}:host"),
            Some(store.path()),
        );
        let (inside, stderr) =
            build_and_push(ctx, &format!("{registry}/ctr/{name}:container"), None);
        if host != inside {
            let dir = tempfile::tempdir().unwrap();
            let differing = tree_differences(&registry, name, dir.path(), |_| false);
            let inspect = |tag: &str, what: &str| {
                run_ok(
                    skopeo()
                        .args(["inspect", "--tls-verify=false", what])
                        .arg(format!("docker://{registry}/ctr/{name}:{tag}")),
                )
            };
            let (host_raw, inside_raw) = (inspect("host", "--raw"), inspect("container", "--raw"));
            let (host_config, inside_config) = (
                inspect("host", "--config"),
                inspect("container", "--config"),
            );
            panic!(
                "{name}: host {host}, container {inside}:\n{differing}\nmanifests:\n{host_raw}\n{inside_raw}\nconfigs:\n{host_config}\n{inside_config}\n{stderr}"
            );
        }
        assert!(
            stderr.contains(
                "note: RUN steps run with chroot isolation, as namespaces cannot be made here"
            ),
            "{name}: {stderr}"
        );
        // The registry holds it under the digest hoist printed.
        let raw = run_ok(
            skopeo()
                .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
                .arg(format!("docker://{registry}/ctr/{name}:container")),
        );
        assert_eq!(raw.trim(), inside, "{name}");
    }
    let ctx = run_heavy();
    build_and_push(
        ctx,
        &format!("{registry}/ctr/run-heavy:host"),
        Some(store.path()),
    );
    build_and_push(ctx, &format!("{registry}/ctr/run-heavy:container"), None);
    let dir = tempfile::tempdir().unwrap();
    let differing = tree_differences(&registry, "run-heavy", dir.path(), |path| {
        path.starts_with("/opt/gen/bin/f")
    });
    assert!(differing.is_empty(), "{differing}");
}

/// The differences between the file trees of `ctr/NAME:host` and
/// `ctr/NAME:container` in `registry` (empty when none), the contents of
/// the files `random` names left out.
fn tree_differences(
    registry: &str,
    name: &str,
    dir: &Path,
    random: impl Fn(&str) -> bool,
) -> String {
    let mut trees = Vec::new();
    for tag in ["host", "container"] {
        let mut tree = pulled_tree(&format!("{registry}/ctr/{name}:{tag}"), &dir.join(tag));
        for entry in &mut tree {
            let path = entry["path"].as_str().unwrap_or_default().to_string();
            if random(&path) {
                entry.as_object_mut().unwrap().remove("sha256");
            }
        }
        trees.push(tree);
    }
    assert!(trees[0].len() > 1000, "{} entries", trees[0].len());
    let text = |v: &Value| v.to_string();
    let host: Vec<String> = trees[0].iter().map(text).collect();
    let inside: Vec<String> = trees[1].iter().map(text).collect();
    let mut out = Vec::new();
    for h in host.iter().filter(|h| !inside.contains(h)).take(8) {
        out.push(format!("  host only:      {h}"));
    }
    for c in inside.iter().filter(|c| !host.contains(c)).take(8) {
        out.push(format!("  container only: {c}"));
    }
    out.join("\n")
}

/// The capabilities docs/ci.md's Job and Tekton step keep: Pod Security
/// "baseline"'s list, less what hoist does not use.
const JOB_CAPABILITIES: &str =
    "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,SETUID,SETGID,SETPCAP,SYS_CHROOT,MKNOD,KILL";

/// hoist's image under podman with every capability dropped but the
/// Job's, and no-new-privileges: the tutorial's web app (npm install,
/// adduser) pushed with the digest of the host's build.
#[test]
fn hoist_under_podman_with_only_the_jobs_capabilities_builds_the_host_image() {
    let registry = tutorial_bases().addr().to_string();
    let ctx = repo_root().join("fixtures/tutorial/web-app");
    let store = ProcessDir::owned("podman-host-store");
    let (host, _) = build_and_push(
        &ctx,
        &format!("{registry}/pod/web-app:host"),
        Some(store.path()),
    );
    let stderr = podman_builds_the_host_digest(
        &[
            "--cap-drop=ALL",
            &format!("--cap-add={JOB_CAPABILITIES}"),
            "--security-opt",
            "no-new-privileges",
        ],
        &ctx,
        &format!("{registry}/pod/web-app:podman"),
        &host,
    );
    assert!(
        stderr.contains("note: RUN steps run with chroot isolation"),
        "{stderr}"
    );
}

/// hoist's image under `podman run --network=host` with `options`, building
/// `ctx` and pushing it as `tag`: the digest must be `host`'s. Its stderr.
fn podman_builds_the_host_digest(options: &[&str], ctx: &Path, tag: &str, host: &str) -> String {
    let registry = tutorial_bases().addr().to_string();
    let out = podman()
        .args(["run", "--rm", "--network=host"])
        .args(options)
        .arg("-v")
        .arg(format!("{}:/ctx:ro", ctx.display()))
        .args([podman_hoist_image(), "build", "--progress", "plain"])
        .arg("--registry-mirror")
        .arg(format!("docker.io={registry}"))
        .args(["-t", tag, "--push", "/ctx"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = stdout.lines().last().unwrap_or_default().trim();
    assert_eq!(digest, host, "{stderr}");
    stderr
}

/// hoist's image as uid 1000 in a user namespace podman makes for the
/// container (`--userns=auto`), as a pod with `hostUsers: false` runs:
/// hoist maps its subordinate ids with the image's newuidmap (file
/// capabilities) and builds the tutorial's web app with the digest of the
/// host's build. The container's /proc has masked paths, so a fresh /proc
/// cannot be mounted and RUN steps run chrooted inside hoist's namespace.
/// `-v /sys:/sys:ro` only because the host network (for the loopback
/// registry) cannot have a sysfs mounted from another user namespace.
#[test]
fn hoist_as_uid_1000_under_podman_userns_auto_builds_the_host_image() {
    crate::support::rootless::ensure_podman_auto_ranges();
    let registry = tutorial_bases().addr().to_string();
    let ctx = repo_root().join("fixtures/tutorial/web-app");
    let store = ProcessDir::owned("userns-host-store");
    let (host, _) = build_and_push(
        &ctx,
        &format!("{registry}/userns/web-app:host"),
        Some(store.path()),
    );
    let stderr = podman_builds_the_host_digest(
        &[
            "--user",
            "1000",
            "--userns=auto:size=65536",
            "-v",
            "/sys:/sys:ro",
        ],
        &ctx,
        &format!("{registry}/userns/web-app:podman"),
        &host,
    );
    assert!(stderr.contains("RUN steps run with"), "{stderr}");
}
