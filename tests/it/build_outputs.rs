//! `hoist build` end to end: images that Docker, podman, skopeo, umoci and
//! oci-image-tool accept and run; reproducible digests; the cache; the
//! store commands.

use crate::support::{Dockerd, busybox_context, podman, podman_load, podman_run, require, run_ok};
use assert_cmd::Command as Cmd;
use std::path::Path;
use std::process::{Command, Stdio};

fn hoist(store: &Path) -> Cmd {
    let mut cmd = Cmd::cargo_bin("hoist").unwrap();
    cmd.arg("--store").arg(store);
    cmd
}

/// A FROM scratch image holding Debian's static busybox and one data file.
fn busybox_app(dir: &Path, message: &str) {
    busybox_context(dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/message"), message).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nCOPY data/message /srv/message\nUSER 1001\nCMD [\"cat\", \"/srv/message\"]\n",
    )
    .unwrap();
}

/// Runs a `hoist build` that must succeed; its digest and its stderr.
fn built(cmd: &mut Cmd) -> (String, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (digest_of_build(&out.stdout), stderr)
}

fn digest_of_build(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let digest = text.trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "stdout is the digest: {text}"
    );
    digest
}

/// A build context in a new temporary directory: a Dockerfile and files.
fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Builds `ctx` into `store` as `name:v1` and exports it as the OCI layout
/// `out/<dir>`; returns the layout's path.
fn build_layout(store: &Path, ctx: &Path, name: &str, out: &Path, dir: &str) -> std::path::PathBuf {
    let layout = out.join(dir);
    hoist(store)
        .args(["build", "-q", "-t", &format!("{name}:v1"), "--output"])
        .arg(format!("type=oci,dest={}", layout.display()))
        .arg(ctx)
        .assert()
        .success();
    layout
}

/// Builds `ctx` into `store`, expecting the build to fail (exit 1) with
/// `message` on stderr.
fn build_fails_with(store: &Path, ctx: &Path, message: &str) {
    let out = hoist(store)
        .args(["build", "-q"])
        .arg(ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
}

/// The root file system of the `v1` image of `layout`, unpacked under `out`.
fn rootfs_of(layout: &Path, out: &Path, dir: &str) -> std::path::PathBuf {
    let rootfs = out.join(dir);
    crate::support::unpack_oci_image(layout, "v1", &rootfs);
    rootfs
}

#[test]
fn busybox_image_runs_under_podman_and_docker() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let message = format!("hello from hoist {}\n", std::process::id());
    busybox_app(ctx.path(), &message);
    let name = format!("hoist-it/busybox-{}:v1", std::process::id());
    let archive = out.path().join("image.tar");
    let built = hoist(store.path())
        .args(["build", "-q", "-t", &name, "--output"])
        .arg(format!("type=docker,dest={}", archive.display()))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    digest_of_build(&built.stdout);

    let loaded = podman_load(&archive);
    let ran = run_ok(podman_run().arg(&loaded).args(["cat", "/srv/message"]));
    assert_eq!(ran, message);
    let whoami = run_ok(podman_run().arg(&loaded).args(["id", "-u"]));
    assert_eq!(whoami.trim(), "1001");
    run_ok(podman().args(["rmi", "-f"]).arg(&loaded));

    // docker load straight from hoist's stdout.
    let dockerd = Dockerd::shared();
    let mut build = std::process::Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .arg("--store")
        .arg(store.path())
        .args(["build", "-q", "-t", &name, "--output", "type=docker,dest=-"])
        .arg(ctx.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = dockerd
        .docker()
        .arg("load")
        .stdin(build.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(build.wait().unwrap().success());
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let ran = run_ok(
        dockerd
            .docker()
            .args(["run", "--rm", "--network", "none", &name]),
    );
    assert_eq!(ran, message, "the image's CMD prints the file");
    run_ok(dockerd.docker().args(["rmi", &name]));
}

#[test]
fn outputs_are_accepted_by_skopeo_umoci_and_oci_image_tool() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    busybox_app(ctx.path(), "layout\n");
    let layout = out.path().join("layout");
    let oci_archive = out.path().join("image.oci.tar");
    let docker_archive = out.path().join("image.docker.tar");
    let built = hoist(store.path())
        .args(["build", "-q", "-t", "app:v1"])
        .arg("--output")
        .arg(format!("type=oci,dest={}", layout.display()))
        .arg("--output")
        .arg(format!("type=oci-archive,dest={}", oci_archive.display()))
        .arg("--output")
        .arg(format!("type=docker,dest={}", docker_archive.display()))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let digest = digest_of_build(&built.stdout);
    let skopeo = require("skopeo", "skopeo");
    for source in [
        format!("oci:{}:v1", layout.display()),
        format!("oci-archive:{}:v1", oci_archive.display()),
        format!("docker-archive:{}", docker_archive.display()),
    ] {
        let inspect = run_ok(Command::new(&skopeo).args(["inspect", &source]));
        let doc: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(doc["Architecture"], "amd64", "{source}");
        if !source.starts_with("docker-archive") {
            assert_eq!(doc["Digest"], digest.as_str(), "{source}");
        }
    }
    run_ok(
        Command::new(require("oci-image-tool", "oci-image-tool"))
            .args(["validate", "--type", "image"])
            .arg(&layout),
    );
    let bundle = out.path().join("bundle");
    run_ok(
        Command::new(require("umoci", "umoci"))
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .arg(&bundle),
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/srv/message")).unwrap(),
        "layout\n"
    );
}

/// Copies a directory tree, setting every mtime to `mtime`.
fn copy_tree(from: &Path, to: &Path, mtime: i64) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
    let stamp = filetime::FileTime::from_unix_time(mtime, 0);
    for entry in walkdir::WalkDir::new(to) {
        let entry = entry.unwrap();
        filetime::set_symlink_file_times(entry.path(), stamp, stamp).unwrap();
    }
}

#[test]
fn same_sources_give_the_same_digest_anywhere() {
    let src = tempfile::tempdir().unwrap();
    busybox_app(src.path(), "same\n");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    copy_tree(src.path(), &a.path().join("ctx"), 1_000_000_000);
    copy_tree(src.path(), &b.path().join("elsewhere"), 1_500_000_000);
    let build = |ctx: &Path, store: &Path, epoch: Option<&str>| {
        let mut cmd = hoist(store);
        cmd.args(["build", "-q"]).arg(ctx);
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        built(&mut cmd).0
    };
    let s1 = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let d1 = build(&a.path().join("ctx"), s1.path(), None);
    let d2 = build(&b.path().join("elsewhere"), s2.path(), None);
    assert_eq!(d1, d2, "different directories, mtimes and stores");
    let d3 = build(&a.path().join("ctx"), s1.path(), Some("1700000000"));
    assert_ne!(d1, d3, "SOURCE_DATE_EPOCH is part of the image");
}

#[test]
fn rebuilds_reuse_the_cache_and_rebuild_from_the_first_changed_step() {
    let src = tempfile::tempdir().unwrap();
    let ctx = src.path().join("ctx");
    std::fs::create_dir_all(ctx.join("a")).unwrap();
    std::fs::write(ctx.join("a/one"), "1").unwrap();
    std::fs::write(ctx.join("two"), "2").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY a /a\nENV X=1\nCOPY two /two\n",
    )
    .unwrap();
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    for f in ["a/one", "two", "Dockerfile"] {
        filetime::set_file_mtime(ctx.join(f), old).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let build = || built(hoist(store.path()).args(["build"]).arg(&ctx));
    let (first, log) = build();
    assert!(!log.contains("CACHED"), "{log}");
    let (second, log) = build();
    assert_eq!(first, second);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
    assert!(
        log.contains("0 files read"),
        "the stat cache answers: {log}"
    );

    std::fs::write(ctx.join("two"), "3").unwrap();
    filetime::set_file_mtime(ctx.join("two"), old).unwrap();
    let (third, log) = build();
    assert_ne!(third, first);
    let copy_two = log.lines().find(|l| l.contains("COPY two")).unwrap();
    assert!(!copy_two.contains("CACHED"), "{log}");
    assert!(
        log.lines()
            .find(|l| l.contains("COPY a"))
            .unwrap()
            .contains("CACHED"),
        "{log}"
    );

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ctx.join("a/one"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (fourth, log) = build();
    assert_ne!(fourth, third, "a mode change is a change");
    assert!(
        !log.lines()
            .find(|l| l.contains("COPY a"))
            .unwrap()
            .contains("CACHED"),
        "{log}"
    );

    let out = hoist(store.path())
        .args(["build", "--no-cache"])
        .arg(&ctx)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("CACHED"), "--no-cache: {log}");
    assert_eq!(digest_of_build(&out.stdout), fourth);
}

#[test]
fn images_rmi_and_prune() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "x").unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    let store = tempfile::tempdir().unwrap();
    hoist(store.path())
        .args([
            "build",
            "-q",
            "-t",
            "first:v1",
            "-t",
            "localhost:5000/team/second",
        ])
        .arg(ctx.path())
        .assert()
        .success();
    let listed = hoist(store.path()).arg("images").output().unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..2], ["REPOSITORY", "TAG"], "{text}");
    assert!(rows.iter().any(|r| r[..2] == ["first", "v1"]), "{text}");
    assert!(
        rows.iter()
            .any(|r| r[..2] == ["localhost:5000/team/second", "latest"]),
        "{text}"
    );
    hoist(store.path())
        .args(["rmi", "first:v1"])
        .assert()
        .success();
    hoist(store.path())
        .args(["rmi", "nope:v1"])
        .assert()
        .failure();
    let text = String::from_utf8_lossy(&hoist(store.path()).arg("images").output().unwrap().stdout)
        .into_owned();
    assert!(
        !text.lines().any(|l| l.starts_with("first ")) && text.contains("second"),
        "{text}"
    );
    hoist(store.path())
        .args(["rmi", "localhost:5000/team/second"])
        .assert()
        .success();
    let pruned = hoist(store.path()).arg("prune").output().unwrap();
    assert!(pruned.status.success());
    let blobs = std::fs::read_dir(store.path().join("blobs/sha256"))
        .unwrap()
        .count();
    // The layer stays: the build cache still refers to it.
    assert!(blobs <= 1, "{blobs} blobs left");
}

#[test]
fn copy_only_builds_need_no_root() {
    // As an unprivileged user inside a container, with hoist's binary and a
    // context mounted read-only.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "unprivileged").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY --chown=1001:1001 f /f\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ctx.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(ctx.path().join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        ctx.path().join("Dockerfile"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let binary = assert_cmd::cargo::cargo_bin("hoist");
    let busybox = tempfile::tempdir().unwrap();
    busybox_context(busybox.path());
    // hoist links against the host's glibc: the host's /usr is mounted
    // read-only and the merged-/usr links point into it.
    std::os::unix::fs::symlink("usr/lib", busybox.path().join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", busybox.path().join("lib64")).unwrap();
    std::fs::write(
        busybox.path().join("Dockerfile"),
        "FROM scratch\nCOPY . /\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let archive = store.path().join("runner.tar");
    hoist(&store.path().join("s"))
        .args(["build", "-q", "-t", "hoist-it/runner:v1", "--output"])
        .arg(format!("type=docker,dest={}", archive.display()))
        .arg(busybox.path())
        .assert()
        .success();
    let image = podman_load(&archive);
    let out = podman_run()
        .args(["--user", "1000:1000", "--tmpfs", "/tmp:mode=1777"])
        .arg("-v")
        .arg(format!("{}:/hoist:ro", binary.display()))
        .arg("-v")
        .arg(format!("{}:/ctx:ro", ctx.path().display()))
        .args(["-v", "/usr:/usr:ro"])
        .arg(&image)
        .args(["/hoist", "--store", "/tmp/store", "build", "-q", "/ctx"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as uid 1000: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .starts_with("sha256:")
    );
    run_ok(podman().args(["rmi", "-f"]).arg(&image));
}

#[test]
fn from_an_oci_layout_directory() {
    let out = tempfile::tempdir().unwrap();
    let base = context(
        "FROM scratch\nCOPY base.txt /base.txt\nENV FROM_BASE=yes\n",
        &[("base.txt", "from the base")],
    );
    let store = tempfile::tempdir().unwrap();
    let layout = build_layout(store.path(), base.path(), "base", out.path(), "layout");
    let dockerfile = format!(
        "FROM oci-layout://{}:v1\nCOPY app.txt /app.txt\n",
        layout.display()
    );
    let app = context(&dockerfile, &[("app.txt", "app")]);
    let fresh = tempfile::tempdir().unwrap();
    let final_layout = build_layout(fresh.path(), app.path(), "app", out.path(), "final");
    let rootfs = rootfs_of(&final_layout, out.path(), "rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("base.txt")).unwrap(),
        "from the base"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app.txt")).unwrap(),
        "app"
    );

    // The base layer's extracted snapshot stays while an image uses it.
    let snapshots = || {
        std::fs::read_dir(fresh.path().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(snapshots(), 1);
    hoist(fresh.path()).arg("prune").assert().success();
    assert_eq!(snapshots(), 1, "kept by app:v1");
    hoist(fresh.path())
        .args(["rmi", "app:v1"])
        .assert()
        .success();
    hoist(fresh.path()).arg("prune").assert().success();
    assert_eq!(snapshots(), 0, "nothing uses it any more");

    let missing = context("FROM oci-layout:///nonexistent:v1\n", &[]);
    build_fails_with(
        fresh.path(),
        missing.path(),
        "cannot use the OCI layout /nonexistent",
    );
}

/// Dockerfile reference, "Here-Documents", "Example: Creating inline files":
/// `<<-EOT` expands `${FOO}` when COPY runs; `<<-"EOT"` keeps it.
#[test]
fn heredoc_files_expand_unless_the_delimiter_is_quoted() {
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    for (i, (delimiter, want)) in [
        ("EOT", "  echo \"hello bar\"\n"),
        ("\"EOT\"", "  echo \"hello ${FOO}\"\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let dockerfile = format!(
            "# syntax=docker/dockerfile:1\nFROM scratch\nARG FOO=bar\nCOPY <<-{delimiter} /script.sh\n  echo \"hello ${{FOO}}\"\nEOT\n"
        );
        let ctx = context(&dockerfile, &[]);
        let layout = build_layout(
            store.path(),
            ctx.path(),
            "heredoc",
            out.path(),
            &format!("layout-{i}"),
        );
        let rootfs = rootfs_of(&layout, out.path(), &format!("rootfs-{i}"));
        assert_eq!(
            std::fs::read_to_string(rootfs.join("script.sh")).unwrap(),
            want,
            "<<-{delimiter}"
        );
    }
}

#[test]
fn unused_build_args_are_reported() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nARG USED\n").unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = hoist(store.path())
        .args([
            "build",
            "-q",
            "--build-arg",
            "USED=1",
            "--build-arg",
            "TYPO=2",
        ])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: --build-arg TYPO not consumed"),
        "{stderr}"
    );
    assert!(!stderr.contains("USED"), "{stderr}");
}

/// The config labels of the image in an OCI layout written by `--output`.
fn labels_of(layout: &Path) -> serde_json::Value {
    let read =
        |p: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap();
    let blob = |d: &serde_json::Value| {
        layout
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(&layout.join("index.json"));
    let manifest = read(&blob(&index["manifests"][0]["digest"]));
    read(&blob(&manifest["config"]["digest"]))["config"]["Labels"].clone()
}

/// BuildKit gives a bare `ARG TARGETARCH` the platform's value, and a stage
/// built on another keeps that stage's ARG values.
#[test]
fn args_see_platform_values_and_carry_into_child_stages() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch AS base\nARG V=one\nARG TARGETARCH TARGETPLATFORM\nFROM base\nLABEL v=$V arch=$TARGETARCH platform=$TARGETPLATFORM\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    hoist(store.path())
        .args(["build", "-q", "--platform", "linux/arm64", "--output"])
        .arg(format!("type=oci,dest={}", out.path().join("l").display()))
        .arg(ctx.path())
        .assert()
        .success();
    assert_eq!(
        labels_of(&out.path().join("l")),
        serde_json::json!({"v": "one", "arch": "arm64", "platform": "linux/arm64"})
    );
}

#[test]
fn a_base_image_with_an_onbuild_from_trigger_is_refused() {
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = hoist_oci::Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        (digest.to_string(), bytes.len())
    };
    let (config, config_size) = put(br#"{"architecture":"amd64","config":{"OnBuild":["FROM scratch"]},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#);
    let manifest = format!(
        r#"{{"config":{{"digest":"{config}","mediaType":"application/vnd.oci.image.config.v1+json","size":{config_size}}},"layers":[],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}}"#
    );
    let (manifest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.path().join("index.json"),
        format!(r#"{{"manifests":[{{"annotations":{{"org.opencontainers.image.ref.name":"v1"}},"digest":"{manifest}","mediaType":"application/vnd.oci.image.manifest.v1+json","size":{manifest_size}}}],"schemaVersion":2}}"#),
    )
    .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM oci-layout://{}:v1\n", layout.path().display()),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    build_fails_with(
        store.path(),
        ctx.path(),
        "FROM isn't allowed as an ONBUILD trigger",
    );
}

/// `COPY --link --chmod` is a plain copy in BuildKit: the destination keeps
/// its owner, and ADD of a git URL is refused rather than downloaded.
#[test]
fn link_with_chmod_and_git_sources() {
    let ctx = context(
        "FROM scratch\nUSER 1000\nWORKDIR /app\nUSER root\nCOPY --link --chmod=755 f /app/\n",
        &[("f", "x")],
    );
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = build_layout(store.path(), ctx.path(), "link", out.path(), "l");
    let rootfs = rootfs_of(&layout, out.path(), "rootfs");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(rootfs.join("app")).unwrap().uid(), 1000);
    let git = context(
        "FROM scratch\nADD https://example.invalid/repo.git#v1 /src\n",
        &[],
    );
    build_fails_with(store.path(), git.path(), "git repository");
}

#[test]
fn one_changed_file_recompresses_only_its_blocks_and_gives_a_fresh_builds_digest() {
    // ~2 MB of text in 256 files: a layer of a few dozen compressed blocks.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY . /data\n",
    )
    .unwrap();
    for i in 0..256 {
        let text: String = (0..200)
            .map(|line| {
                format!(
                    "file {i} line {line}: {}\n",
                    (i * 7919 + line * 104_729) % 1_000_003
                )
            })
            .collect();
        std::fs::write(ctx.path().join(format!("f{i:03}.txt")), text).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let build = |store: &Path| {
        built(
            hoist(store)
                .args(["build", "--progress=plain"])
                .arg(ctx.path()),
        )
    };
    let (first, _) = build(store.path());
    let mut changed = std::fs::OpenOptions::new()
        .append(true)
        .open(ctx.path().join("f128.txt"))
        .unwrap();
    std::io::Write::write_all(&mut changed, b"one more line\n").unwrap();
    let (second, stderr) = build(store.path());
    assert_ne!(first, second);
    let reused: usize = stderr
        .split([',', '\n'])
        .find_map(|part| part.trim().strip_suffix(" compressed blocks reused"))
        .unwrap_or_else(|| panic!("no block was reused: {stderr}"))
        .parse()
        .unwrap();
    assert!(reused >= 5, "{stderr}");
    // Reusing blocks never changes the bytes: a new store gives the same.
    let fresh = tempfile::tempdir().unwrap();
    let (third, stderr) = build(fresh.path());
    assert_eq!(second, third);
    assert!(!stderr.contains("reused"), "{stderr}");
}

#[test]
fn a_base_layer_is_read_once_and_its_saved_index_serves_later_builds() {
    let src = tempfile::tempdir().unwrap();
    let base = src.path().join("base");
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::write(
        base.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(base.join("Dockerfile"), "FROM scratch\nCOPY etc /etc/\n").unwrap();
    let app = src.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("f"), "one").unwrap();
    // COPY --chown by name reads /etc/passwd from the base layer.
    std::fs::write(
        app.join("Dockerfile"),
        "FROM base:1\nCOPY --chown=app f /f\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let build = |ctx: &Path, tag: &str| {
        built(
            hoist(store.path())
                .args(["build", "-q", "-t", tag])
                .arg(ctx),
        )
        .0
    };
    let manifest = build(&base, "base:1");
    let blobs = store.path().join("blobs/sha256");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blobs.join(manifest.trim_start_matches("sha256:"))).unwrap(),
    )
    .unwrap();
    let layer = blobs.join(
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let first = build(&app, "app:1");
    let snapshots: Vec<_> = std::fs::read_dir(store.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        snapshots.len(),
        1,
        "only the base layer was read: {snapshots:?}"
    );
    let index = snapshots[0].join("index");
    let saved = std::fs::read(&index).expect("the layer's index is saved");

    // With the blob gone, a build that reads the base layer again can only
    // have its index from the saved file.
    let away = src.path().join("layer-blob");
    std::fs::rename(&layer, &away).unwrap();
    std::fs::write(app.join("f"), "two").unwrap();
    let second = build(&app, "app:2");
    assert_ne!(second, first);
    std::fs::rename(&away, &layer).unwrap();

    // A damaged index is refused: the layer is read again, the index
    // written anew, and the image is the same.
    std::fs::write(&index, b"hoistix1 damaged").unwrap();
    std::fs::write(app.join("f"), "one").unwrap();
    let (again, _) = built(
        hoist(store.path())
            .args(["build", "-q", "--no-cache", "-t", "app:3"])
            .arg(&app),
    );
    assert_eq!(again, first);
    assert_eq!(std::fs::read(&index).unwrap(), saved);
}
