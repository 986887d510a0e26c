//! chroot isolation (`--isolation chroot`, `HOIST_ISOLATION`): RUN where
//! namespaces cannot be made. The same layers as namespace mode, to the
//! byte, for steps using every kind of mount; nothing of the host reachable
//! from a step; and `auto` choosing it by itself, saying so, where hoist
//! has no CAP_SYS_ADMIN (as in a default container).

use crate::as_root_and_rootless;
use crate::build_run::build_with_env;
use crate::support::busybox_context;
use crate::support::rootless::Who;
use std::process::Command;
use std::time::{Duration, Instant};

/// Steps with cache, tmpfs, secret and bind mounts, a heredoc, another
/// user, deletions, hard links, a working directory made by the step, and
/// a process left running in the background.
const DOCKERFILE: &str = r#"FROM scratch AS other
COPY bin /bin/
RUN mkdir /out && echo from-stage > /out/msg

FROM scratch
COPY bin /bin/
COPY hosts /etc/hosts
RUN mkdir -p /d/e /old/x /var/cache/apt /etc && mkdir -m 1777 /tmp \
 && echo x > /d/e/f && chown 1001:1002 /d/e/f && rm /bin/rm && ln -s e/f /d/l && ln /d/e/f /d/h \
 && echo o > /old/x/y && chmod 1777 /old \
 && echo 'app:x:1001:1002::/home/app:/bin/sh' > /etc/passwd && echo 'app:x:1002:' > /etc/group
RUN --mount=type=cache,target=/var/cache/apt --mount=type=tmpfs,target=/scratch \
    --mount=type=secret,id=tok,target=/run/secrets/tok \
    echo cached >> /var/cache/apt/log && grep -q hunter2 /run/secrets/tok && echo t > /scratch/x \
 && grep -q localhost /etc/hosts && echo gone > /dev/null \
 && rm -rf /old && mkdir /old && echo n > /old/n && rm -rf /d/e && echo file > /d/e && chmod 4755 /d/h
RUN --mount=type=bind,from=other,source=/out,target=/m cp /m/msg /d/msg && (sleep 60 &) && echo started
USER app
WORKDIR /w/x
RUN id > /tmp/id && echo "$HOME" > /tmp/home && echo made > here
RUN <<EOF
#!/bin/sh
echo heredoc > /tmp/heredoc
EOF
"#;

fn chroot_isolation_gives_the_same_image_as_namespaces(who: Who) {
    let mut digests = Vec::new();
    for mode in ["namespaces", "chroot"] {
        let store = who.tempdir();
        let ctx = who.tempdir();
        busybox_context(ctx.path());
        std::fs::write(ctx.path().join("tok"), "hunter2\n").unwrap();
        std::fs::write(ctx.path().join("hosts"), "image\n").unwrap();
        who.own(ctx.path());
        let secret = format!("id=tok,src={}", ctx.path().join("tok").display());
        let started = Instant::now();
        let built = build_with_env(
            who,
            ctx.path(),
            store.path(),
            DOCKERFILE,
            &["--secret", &secret, "--progress", "plain"],
            &[("HOIST_ISOLATION", mode)],
        );
        assert!(built.ok, "{mode}: {}", built.stderr);
        // The background sleep holds the step's output open: it was killed
        // when its step ended.
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{mode}: the build waited for the step's background process"
        );
        assert!(
            built.stderr.contains(&format!(
                "note: RUN steps run with {} isolation\n",
                mode.trim_end_matches('s')
            )),
            "{mode}: {}",
            built.stderr
        );
        // A second build in the same store answers every step from the
        // cache (the cache mount's content is back in its directory).
        let again = build_with_env(
            who,
            ctx.path(),
            store.path(),
            &DOCKERFILE.replace("echo cached >>", "cat /var/cache/apt/log && echo cached >>"),
            &["--secret", &secret, "--progress", "plain"],
            &[("HOIST_ISOLATION", mode)],
        );
        assert!(again.ok, "{mode}: {}", again.stderr);
        assert!(
            again.stderr.contains("| cached\n"),
            "{mode}: {}",
            again.stderr
        );
        digests.push(built.stdout);
    }
    assert_eq!(
        digests[0], digests[1],
        "chroot and namespaces gave other images"
    );
}

/// What a chroot step can reach: the image only. Not the store, not
/// HOME's credentials, not the way out of the chroot, not a node for the
/// host's disk, not /proc.
fn a_chroot_step_reaches_nothing_of_the_host(who: Who) {
    let store = who.tempdir();
    let (host, secret) = crate::build_run::home_with_credentials(who);
    let ctx = who.tempdir();
    let dockerfile = r#"FROM scratch
COPY bin /bin/
ARG SECRET STORE
RUN test -n "$SECRET" && test -n "$STORE" \
 && test ! -e "$SECRET" && test ! -e "$STORE" \
 && test -z "$(find / -xdev -name config.json -o -name oci-layout 2>/dev/null)" \
 && test -z "$(ls -A /proc)" && test -z "$(ls -A /sys)" \
 && mkdir /jail && ! chroot /jail /bin/true 2>/dev/null \
 && ! mknod /dev/disk b 8 0 2>/dev/null \
 && cd ../../../.. && test "$(ls /)" = "$(ls)" && echo probe > /dev/null \
 && ls / > /root-listing
"#;
    let built = build_with_env(
        who,
        ctx.path(),
        store.path(),
        dockerfile,
        &[
            "--build-arg",
            &format!("SECRET={}", secret.display()),
            "--build-arg",
            &format!("STORE={}", store.path().join("blobs").display()),
            "--output",
            &format!("type=oci,dest={}", host.path().join("oci").display()),
        ],
        &[
            ("HOME", host.path().to_str().unwrap()),
            ("HOIST_ISOLATION", "chroot"),
        ],
    );
    assert!(built.ok, "{}", built.stderr);
    let rootfs = host.path().join("rootfs");
    crate::support::unpack_oci_image(&host.path().join("oci"), "test", &rootfs);
    let listing = std::fs::read_to_string(rootfs.join("root-listing")).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        ["bin", "dev", "etc", "jail", "proc", "root-listing", "sys"]
    );
    assert!(!rootfs.join("dev/disk").exists());

    // --network=none cannot be kept: refused, with what to do.
    let built = build_with_env(
        who,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN --network=none true\n",
        &[],
        &[("HOIST_ISOLATION", "chroot")],
    );
    assert!(!built.ok);
    assert!(
        built
            .stderr
            .contains("--network=none needs a network namespace")
            && built.stderr.contains("hint: "),
        "{}",
        built.stderr
    );
}

as_root_and_rootless!(
    chroot_isolation_gives_the_same_image_as_namespaces,
    a_chroot_step_reaches_nothing_of_the_host
);

/// hoist as root without CAP_SYS_ADMIN (as in a container with Docker's
/// default capabilities): `auto` cannot make namespaces, runs the steps
/// chrooted, says so once with the reason, and builds the image namespace
/// mode builds. `--isolation namespaces` fails with a hint naming chroot.
#[test]
fn without_cap_sys_admin_auto_isolation_falls_back_to_chroot() {
    let dockerfile = "FROM scratch\nCOPY bin /bin/\nRUN echo one > /one\nRUN echo two > /two\n";
    let build = |store: &std::path::Path, ctx: &std::path::Path, limited: bool, flag: &str| {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let hoist = assert_cmd::cargo::cargo_bin("hoist");
        let mut cmd = if limited {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--bounding-set", "-sys_admin", "--"]).arg(hoist);
            cmd
        } else {
            Command::new(hoist)
        };
        cmd.env_remove("HOIST_ISOLATION")
            .arg("--store")
            .arg(store)
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                "t:1",
                "--isolation",
                flag,
            ])
            .arg(ctx)
            .output()
            .unwrap()
    };
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path());
    let host_store = tempfile::tempdir().unwrap();
    let host = build(host_store.path(), ctx.path(), false, "auto");
    assert!(
        host.status.success(),
        "{}",
        String::from_utf8_lossy(&host.stderr)
    );
    let store = tempfile::tempdir().unwrap();
    let limited = build(store.path(), ctx.path(), true, "auto");
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(limited.status.success(), "{stderr}");
    let note = "note: RUN steps run with chroot isolation, as namespaces cannot be made here (cannot create namespaces for the RUN sandbox: Operation not permitted";
    assert_eq!(stderr.matches(note).count(), 1, "{stderr}");
    assert_eq!(host.stdout, limited.stdout, "{stderr}");

    let store = tempfile::tempdir().unwrap();
    let refused = build(store.path(), ctx.path(), true, "namespaces");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("cannot create namespaces") && stderr.contains("--isolation chroot"),
        "{stderr}"
    );
    // A bad value is refused before anything is built.
    let out = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .env("HOIST_ISOLATION", "jail")
        .arg("--store")
        .arg(store.path())
        .args(["build", "-t", "t:1"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "HOIST_ISOLATION: unknown isolation `jail`: expected auto, namespaces or chroot"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A package installed with apt-get from a local .deb (its maintainer
/// script run, dpkg's and apt's lock files taken) and a user added with
/// useradd, on the Debian stand-in: the same image in both modes. apt's
/// logs and binary caches record the time and the files' mtimes, so the
/// step removes them, as image builds usually do.
#[test]
fn apt_get_install_and_useradd_give_the_same_image_chrooted() {
    let registry = crate::support::tutorial_bases();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/hoist-hello")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: hoist-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: hoist <hoist@example.invalid>\nDescription: a test package\n",
    )
    .unwrap();
    let postinst = pkg.join("DEBIAN/postinst");
    std::fs::write(
        &postinst,
        "#!/bin/sh\nset -e\nmkdir -p /var/lib/hoist-hello\necho installed > /var/lib/hoist-hello/state\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&postinst, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(pkg.join("usr/share/hoist-hello/readme"), "hello\n").unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    crate::support::run_ok(
        Command::new(crate::support::require("dpkg-deb", "dpkg"))
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(ctx.join("hello.deb")),
    );
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM python:3.9-slim\nCOPY hello.deb /tmp/\n\
         RUN apt-get install -y -q /tmp/hello.deb && rm -rf /tmp/hello.deb /var/log/apt /var/log/dpkg.log /var/cache/apt/*.bin\n\
         RUN useradd -m builder && test \"$(cat /var/lib/hoist-hello/state)\" = installed\n",
    )
    .unwrap();
    let mut digests = Vec::new();
    for mode in ["namespaces", "chroot"] {
        let store = tempfile::tempdir().unwrap();
        let out = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
            .env("HOIST_ISOLATION", mode)
            .arg("--store")
            .arg(store.path())
            .args(["build", "-q", "--registry-mirror"])
            .arg(format!("docker.io={}", registry.addr()))
            .arg(&ctx)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {stderr}");
        digests.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    assert_eq!(
        digests[0], digests[1],
        "apt-get and useradd differ between the modes"
    );
}
