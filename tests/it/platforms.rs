//! Several platforms in one build: `--platform linux/amd64,linux/arm64`
//! gives an OCI index pushed to registry:2, whose arm64 image podman runs
//! (under QEMU) and whose arm64 RUN step really ran emulated; the
//! cross-compile pattern runs no emulated step; bad `--platform` values are
//! refused. arm64 material comes from Debian's busybox-static:arm64
//! (scripts/install-test-deps.sh downloads it), QEMU from Debian's
//! qemu-user-static, its aarch64 handler registered here with binfmt_misc.

use crate::support::process::ProcessDir;
use crate::support::{Registry, podman, require, run_ok, skopeo};
use crate::support::{hoist_with_store as hoist, output_text as text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where scripts/install-test-deps.sh leaves Debian's arm64 static busybox.
const ARM64_BUSYBOX: &str = "/var/cache/hoist-fixtures/busybox-static-arm64/bin/busybox";

fn arm64_busybox() -> PathBuf {
    let path = PathBuf::from(ARM64_BUSYBOX);
    assert!(
        path.is_file(),
        "{ARM64_BUSYBOX} is missing: scripts/install-test-deps.sh downloads it \
         (dpkg --add-architecture arm64; apt-get download busybox-static:arm64)"
    );
    path
}

/// QEMU's aarch64 handler, registered with binfmt_misc (mounted first
/// where it is not) from qemu-user-static's own definition, once.
fn qemu_aarch64() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        require("/usr/bin/qemu-aarch64-static", "qemu-user-static");
        let root = Path::new("/proc/sys/fs/binfmt_misc");
        if !root.join("status").exists() {
            run_ok(
                Command::new("mount")
                    .args(["-t", "binfmt_misc", "binfmt_misc"])
                    .arg(root),
            );
        }
        let handler = root.join("qemu-aarch64");
        if !handler.exists() {
            let definition = std::fs::read("/usr/lib/binfmt.d/qemu-aarch64.conf")
                .expect("qemu-user-static's /usr/lib/binfmt.d/qemu-aarch64.conf");
            std::fs::write(root.join("register"), definition).expect("register qemu-aarch64");
        }
        let text = std::fs::read_to_string(&handler).unwrap();
        if !text.starts_with("enabled") {
            std::fs::write(&handler, "1").unwrap();
        }
        assert!(
            text.contains("flags: ")
                && text
                    .lines()
                    .any(|l| l.starts_with("flags:") && l.contains('F')),
            "{text}"
        );
    });
}

/// A context holding both architectures' static busybox, as
/// `busybox-amd64` and `busybox-arm64`, and `dockerfile`.
fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(
        require("/bin/busybox", "busybox-static"),
        ctx.join("busybox-amd64"),
    )
    .unwrap();
    std::fs::copy(arm64_busybox(), ctx.join("busybox-arm64")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// `podman run --platform PLATFORM` of `image` (plain HTTP registry).
fn podman_run(platform: &str, image: &str, args: &[&str]) -> String {
    run_ok(
        podman()
            .args(["run", "--rm", "--pull=always", "--tls-verify=false"])
            .args(["--platform", platform, image])
            .args(args),
    )
}

const EMULATED: &str = "\
FROM scratch
ARG TARGETARCH
COPY busybox-$TARGETARCH /bin/busybox
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /arch\"]
CMD [\"/bin/busybox\", \"cat\", \"/arch\"]
";

#[test]
fn two_platforms_give_an_index_whose_arm64_run_step_ran_emulated() {
    qemu_aarch64();
    let dir = ProcessDir::owned("platforms-emulated");
    let ctx = context(dir.path(), EMULATED);
    let image = format!("{}/platforms/emulated:1", Registry::shared().addr());
    let out = hoist(&dir.path().join("store"))
        .args(["build", "--progress", "plain", "--push", "-t", &image])
        .args(["--platform", "linux/amd64,linux/arm64"])
        .arg(&ctx)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("note: RUN steps for linux/arm64 run emulated through QEMU (qemu-aarch64)"),
        "{log}"
    );
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let raw = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        hoist_oci::Digest::of(raw.trim_end().as_bytes()).to_string(),
        digest,
        "{raw}"
    );
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // Each image's config says its own platform.
    for (entry, arch) in index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["amd64", "arm64"])
    {
        let config = run_ok(
            skopeo()
                .args(["inspect", "--config", "--raw", "--tls-verify=false"])
                .arg(format!(
                    "docker://{}@{}",
                    image.rsplit_once(':').unwrap().0,
                    entry["digest"].as_str().unwrap()
                )),
        );
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["architecture"], arch, "{config}");
        assert_eq!(config["os"], "linux");
    }
    // The arm64 RUN step ran as aarch64 (under QEMU), and podman runs the
    // arm64 image (under QEMU too) as it does the amd64 one natively.
    assert_eq!(podman_run("linux/arm64", &image, &[]).trim(), "aarch64");
    assert_eq!(podman_run("linux/amd64", &image, &[]).trim(), "x86_64");
    assert_eq!(
        podman_run("linux/arm64", &image, &["/bin/busybox", "uname", "-m"]).trim(),
        "aarch64"
    );

    // `hoist k8s` and `hoist resolve` pin the index, so that each node
    // pulls its own platform's image.
    let repository = image.rsplit_once(':').unwrap().0;
    let deployment = run_ok(
        hoist(&dir.path().join("store"))
            .args(["k8s", "--allow-unpushed", &image])
            .arg("--name")
            .arg("multi"),
    );
    assert!(
        deployment.contains(&format!("image: {repository}@{digest}")),
        "{deployment}"
    );
    let yaml = dir.path().join("pod.yaml");
    std::fs::write(
        &yaml,
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: \"hoist://{image}\"}}\n"),
    )
    .unwrap();
    let resolved = run_ok(
        hoist(&dir.path().join("store"))
            .args(["resolve", "-f"])
            .arg(&yaml),
    );
    assert!(
        resolved.contains(&format!("{repository}@{digest}")),
        "{resolved}"
    );

    // The same sources give the same index in another store, and an OCI
    // archive holds it; type=docker cannot.
    let again = run_ok(
        hoist(&dir.path().join("other-store"))
            .args(["build", "-q", "--platform", "linux/amd64,linux/arm64"])
            .arg("--output")
            .arg(format!(
                "type=oci-archive,dest={}",
                dir.path().join("index.tar").display()
            ))
            .arg(&ctx),
    );
    assert_eq!(again.trim(), digest);
    let listed = run_ok(skopeo().args(["inspect", "--raw"]).arg(format!(
        "oci-archive:{}",
        dir.path().join("index.tar").display()
    )));
    assert_eq!(
        hoist_oci::Digest::of(listed.trim_end().as_bytes()).to_string(),
        digest
    );
}

#[test]
fn the_cross_compile_pattern_runs_no_step_emulated() {
    let dir = ProcessDir::owned("platforms-cross");
    let ctx = context(
        dir.path(),
        "FROM --platform=$BUILDPLATFORM scratch AS build\n\
         ARG BUILDARCH\n\
         COPY busybox-$BUILDARCH /bin/busybox\n\
         ARG TARGETARCH\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built on $(/bin/busybox uname -m) for $TARGETARCH > /out\"]\n\
         FROM scratch\n\
         ARG TARGETARCH\n\
         COPY busybox-$TARGETARCH /bin/busybox\n\
         COPY --from=build /out /out\n\
         CMD [\"/bin/busybox\", \"cat\", \"/out\"]\n",
    );
    let image = format!("{}/platforms/cross:1", Registry::shared().addr());
    let out = hoist(&dir.path().join("store"))
        .args(["build", "--progress", "plain", "--push", "-t", &image])
        .args(["--platform", "linux/amd64,linux/arm64"])
        .arg(&ctx)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("run emulated"), "{log}");
    assert!(log.contains("platform linux/arm64 (2/2)"), "{log}");
    qemu_aarch64();
    assert_eq!(
        podman_run("linux/arm64", &image, &[]).trim(),
        format!("built on {} for arm64", std::env::consts::ARCH)
    );
    assert_eq!(
        podman_run("linux/amd64", &image, &[]).trim(),
        format!("built on {} for amd64", std::env::consts::ARCH)
    );
}

#[test]
fn bad_platforms_are_refused_with_what_to_give() {
    let dir = ProcessDir::owned("platforms-bad");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n").unwrap();
    let store = dir.path().join("store");
    let refused = |args: &[&str]| {
        let out = hoist(&store)
            .arg("build")
            .args(args)
            .arg(&ctx)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&["--platform", "linux/bogus"]);
    assert!(
        err.contains("unknown architecture \"bogus\"") && err.contains("arm64"),
        "{err}"
    );
    let err = refused(&["--platform", "plan10/amd64"]);
    assert!(
        err.contains("unknown operating system") && err.contains("linux"),
        "{err}"
    );
    let err = refused(&["--platform", "linux/amd64,linux/x86_64"]);
    assert!(err.contains("named twice"), "{err}");
    let err = refused(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--output",
        "type=docker,dest=out.tar",
    ]);
    assert!(err.contains("type=oci"), "{err}");
    // A COPY-only build for another operating system works; its RUN
    // would not.
    let ok = hoist(&store)
        .args(["build", "-q", "--platform", "windows/amd64"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nRUN [\"cmd\", \"/c\", \"ver\"]\n",
    )
    .unwrap();
    let err = refused(&["--platform", "windows/amd64"]);
    assert!(
        err.contains("RUN cannot run commands of a windows/amd64 image"),
        "{err}"
    );
}

/// One build per platform pushed by digest (as one machine or one Job per
/// platform does), then `hoist manifest create`: the index is the one a
/// build of both platforms at once makes. Two sources for one platform,
/// a missing image and another registry are refused by name.
#[test]
fn manifest_create_from_per_platform_pushes_gives_the_one_build_index() {
    qemu_aarch64();
    let dir = ProcessDir::owned("platforms-assemble");
    let ctx = context(dir.path(), EMULATED);
    let registry = Registry::shared().addr();
    let parts = format!("{registry}/platforms/parts");
    let by_digest = |platform: &str| {
        let digest = run_ok(
            hoist(
                &dir.path()
                    .join(format!("store-{}", platform.replace('/', "-"))),
            )
            .args(["build", "-q", "--platform", platform, "--push-by-digest"])
            .args(["-t", &parts])
            .arg(&ctx),
        );
        format!("{parts}@{}", digest.trim())
    };
    let amd64 = by_digest("linux/amd64");
    let arm64 = by_digest("linux/arm64");
    // Nothing was tagged: registry:2 lists no tags (404 for a repository
    // that has none).
    let listed = skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{parts}"))
        .output()
        .unwrap();
    if listed.status.success() {
        let tags: Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert_eq!(tags["Tags"], serde_json::json!([]), "{tags}");
    } else {
        assert!(text(&listed).contains("404"), "{}", text(&listed));
    }

    let together = run_ok(
        hoist(&dir.path().join("store-both"))
            .args(["build", "-q", "--platform", "linux/amd64,linux/arm64"])
            .arg(&ctx),
    );
    let target = format!("{registry}/platforms/assembled:1");
    let manifest = |args: &[&str]| {
        hoist(&dir.path().join("store-both"))
            .arg("manifest")
            .args(args)
            .output()
            .unwrap()
    };
    let created = manifest(&["create", "-t", &target, &amd64, &arm64]);
    assert!(created.status.success(), "{}", text(&created));
    let digest = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(digest, together.trim());
    let inspected = manifest(&["inspect", "--raw", &target]);
    assert_eq!(hoist_oci::Digest::of(&inspected.stdout).to_string(), digest);
    assert_eq!(podman_run("linux/arm64", &target, &[]).trim(), "aarch64");

    let refused = |args: &[&str]| {
        let out = manifest(args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&["create", "-t", &target, &amd64, &amd64]);
    assert!(err.contains("one image per platform"), "{err}");
    let missing = format!("{parts}:no-such-tag");
    let err = refused(&["create", "-t", &target, &amd64, &missing]);
    assert!(
        err.contains("no-such-tag") && err.contains("not found"),
        "{err}"
    );
    let elsewhere = format!(
        "127.0.0.1:1/platforms/parts@{}",
        amd64.rsplit_once('@').unwrap().1
    );
    let err = refused(&["create", "-t", &target, &elsewhere]);
    assert!(err.contains("copy it there first"), "{err}");
}

/// The image of `ctx` for `platform` as BuildKit (the suite's dockerd,
/// `docker build --platform`) builds it: its tree and config.
fn buildkit_image(ctx: &Path, platform: &str, work: &Path) -> (Vec<Value>, Value) {
    let dockerd = crate::support::Dockerd::shared();
    let name = format!(
        "hoist-it/platforms:{}-{}",
        std::process::id(),
        platform.replace('/', "-")
    );
    run_ok(
        dockerd
            .buildkit_build()
            .args(["--platform", platform, "-t", &name])
            .arg(ctx),
    );
    let archive = work.join(format!("{}.tar", platform.replace('/', "-")));
    run_ok(
        dockerd
            .docker()
            .args(["save", "-o"])
            .arg(&archive)
            .arg(&name),
    );
    let _ = dockerd.docker().args(["rmi", "-f", &name]).output();
    let layout = work.join(format!("buildkit-{}", platform.replace('/', "-")));
    run_ok(
        skopeo()
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:image", layout.display())),
    );
    image_of_layout(
        &layout,
        work,
        &format!("buildkit-{}", platform.replace('/', "-")),
    )
}

/// The tree and config of the image tagged `image` in an OCI layout.
fn image_of_layout(layout: &Path, work: &Path, name: &str) -> (Vec<Value>, Value) {
    let rootfs = work.join(format!("{name}-rootfs"));
    crate::support::unpack_oci_image(layout, "image", &rootfs);
    let tree = crate::support::tree_of_image(&rootfs).unwrap();
    let config = crate::support::config_in_layout(layout);
    let mut fields = crate::oracle_fixtures::recorded_fields(&config["config"]);
    for key in ["architecture", "os", "variant"] {
        fields.insert(key.into(), config[key].clone());
    }
    (tree, Value::Object(fields))
}

/// BuildKit builds the same Dockerfile for each platform (Docker 20.10 has
/// no buildx: one `docker build --platform` each, its arm64 RUN step under
/// the same QEMU handler): the same file trees and config fields.
#[test]
fn buildkit_builds_the_same_trees_and_configs_per_platform() {
    qemu_aarch64();
    let dir = ProcessDir::owned("platforms-buildkit");
    let ctx = context(dir.path(), EMULATED);
    for platform in ["linux/amd64", "linux/arm64"] {
        let name = format!("hoist-{}", platform.replace('/', "-"));
        let layout = dir.path().join(&name);
        run_ok(
            hoist(&dir.path().join("store"))
                .args(["build", "-q", "-t", "image:image", "--platform", platform])
                .arg("--output")
                .arg(format!("type=oci,dest={}", layout.display()))
                .arg(&ctx),
        );
        let (tree, config) = image_of_layout(&layout, dir.path(), &name);
        let (want_tree, want_config) = buildkit_image(&ctx, platform, dir.path());
        assert_eq!(config, want_config, "{platform}");
        assert_eq!(tree, want_tree, "{platform}");
    }
}
