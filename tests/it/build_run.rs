//! RUN: a failing step stops the build with its line and exit code; a step
//! sees the image and nothing of the host; a cached step is not run again;
//! a deterministic step gives the same layer every time. Each test runs
//! as root and rootless (an unprivileged user with subordinate ids); the
//! single-id and no-namespace cases have tests of their own.

use crate::as_root_and_rootless;
use crate::support::rootless::Who;
use crate::support::{Registry, busybox_context, run_ok, skopeo};
use std::path::Path;
use std::sync::OnceLock;

pub(crate) struct Built {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Builds `dockerfile` in a context holding a static busybox (`COPY bin
/// /bin/` makes a shell), with `extra` arguments before the context.
fn build(who: Who, store: &Path, dockerfile: &str, extra: &[&str]) -> Built {
    let ctx = who.tempdir();
    build_in(who, ctx.path(), store, dockerfile, extra)
}

/// [`build`] in a given context directory (which may hold more files).
pub(crate) fn build_in(
    who: Who,
    ctx: &Path,
    store: &Path,
    dockerfile: &str,
    extra: &[&str],
) -> Built {
    build_with_env(who, ctx, store, dockerfile, extra, &[])
}

/// [`build_in`] with variables added to hoist's environment.
pub(crate) fn build_with_env(
    who: Who,
    ctx: &Path,
    store: &Path,
    dockerfile: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Built {
    if !ctx.join("bin").exists() {
        busybox_context(ctx);
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = who
        .hoist(store)
        .envs(env.iter().copied())
        .arg("--store")
        .arg(store)
        .args(["build", "-t", "run:test"])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    Built {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn a_failing_run_fails_the_build_with_its_line_exit_code_and_output(who: Who) {
    let store = who.tempdir();
    let built = build(
        who,
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN echo step-started && echo on-stderr >&2 && exit 3\nRUN echo never\n",
        &[],
    );
    assert!(!built.ok, "{}", built.stderr);
    assert!(
        built.stderr.contains(
            "Dockerfile:3: RUN echo step-started && echo on-stderr >&2 && exit 3: exit code 3"
        ),
        "{}",
        built.stderr
    );
    // The output is streamed, and repeated in the error.
    assert!(
        built.stderr.matches("step-started").count() >= 3,
        "{}",
        built.stderr
    );
    assert!(built.stderr.contains("on-stderr"), "{}", built.stderr);
    assert!(!built.stderr.contains("| never"), "{}", built.stderr);
}

fn the_layers_of_the_steps_before_a_failing_one_are_cached(who: Who) {
    // The first RUN's layer is compressed on the writer thread while the
    // failing step runs (30 MB of random bytes take longer than `exit 3`):
    // the failure must wait for it, not abandon it.
    let store = who.tempdir();
    let ctx = who.tempdir();
    let step = "RUN echo made-now && head -c 30000000 /dev/urandom > /big\n";
    let failing = format!("FROM scratch\nCOPY bin /bin/\n{step}RUN exit 3\n");
    let built = build_in(who, ctx.path(), store.path(), &failing, &[]);
    assert!(!built.ok, "{}", built.stderr);
    assert!(built.stderr.contains("| made-now"), "{}", built.stderr);
    let fixed = format!("FROM scratch\nCOPY bin /bin/\n{step}RUN true\n");
    let built = build_in(who, ctx.path(), store.path(), &fixed, &[]);
    assert!(built.ok, "{}", built.stderr);
    assert!(!built.stderr.contains("| made-now"), "{}", built.stderr);
}

/// A HOME for hoist holding registry credentials, as `docker login` leaves
/// them: the directory and the credentials file.
pub(crate) fn home_with_credentials(who: Who) -> (tempfile::TempDir, std::path::PathBuf) {
    let host = who.tempdir();
    let secret = host.path().join(".docker/config.json");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, r#"{"auths":{"x":{"auth":"c2VjcmV0"}}}"#).unwrap();
    who.own(host.path());
    (host, secret)
}

fn a_run_step_sees_the_image_and_not_the_host(who: Who) {
    let store = who.tempdir();
    let (host, secret) = home_with_credentials(who);
    let ctx = who.tempdir();
    // The step gets the paths as build args (so as environment variables)
    // and fails the build if it can reach either, or any file under the
    // store's or HOME's name.
    let dockerfile = r#"FROM scratch
COPY bin /bin/
ARG SECRET STORE
RUN test -n "$SECRET" && test -n "$STORE" \
 && test ! -e "$SECRET" && test ! -e "$STORE" && test ! -e /root/.docker/config.json \
 && test -z "$(find / -xdev -name config.json -o -name oci-layout 2>/dev/null)" \
 && test "$$" = 1 && test "$(hostname)" = buildkitsandbox && test "$HOME" = / \
 && ls / > /root-listing && cat /etc/hosts > /dev/null \
 && echo probe > /dev/null && ! touch /etc/hosts 2>/dev/null
RUN --network=none test "$(ls /sys/class/net)" = lo
"#;
    let home = host.path().to_str().unwrap();
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
        &[("HOME", home)],
    );
    assert!(built.ok, "{}", built.stderr);
    let rootfs = host.path().join("rootfs");
    crate::support::unpack_oci_image(&host.path().join("oci"), "test", &rootfs);
    let listing = std::fs::read_to_string(rootfs.join("root-listing")).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names, ["bin", "dev", "etc", "proc", "root-listing", "sys"]);
    // /etc/hosts was an empty mount point: not in the image, nor is /etc
    // left with anything in it.
    assert!(!rootfs.join("etc/hosts").exists());
    assert!(!rootfs.join("etc/resolv.conf").exists());
}

fn a_cached_run_is_not_run_again_and_a_deterministic_one_gives_the_same_layer(who: Who) {
    let store = who.tempdir();
    let dockerfile = "FROM scratch\nCOPY bin /bin/\nRUN echo ran-now && mkdir -p /d/e && echo x > /d/e/f && ln -s e/f /d/l && rm /bin/vi\n";
    let first = build(who, store.path(), dockerfile, &[]);
    assert!(first.ok, "{}", first.stderr);
    assert!(first.stderr.contains("| ran-now"), "{}", first.stderr);
    // A rebuild whose steps all come from the cache reads no layer: with
    // the extracted layers gone, none is extracted again.
    let snapshots = store.path().join("snapshots");
    // Two snapshots: the COPY layer's (the RUN's lower) and the RUN
    // layer's, made from the step's upper directory as the layer was
    // written (no later step asked for it).
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 2);
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    let second = build(who, store.path(), dockerfile, &[]);
    assert!(second.ok, "{}", second.stderr);
    assert!(!second.stderr.contains("| ran-now"), "{}", second.stderr);
    assert!(second.stderr.contains("CACHED"), "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);
    let third = build(who, store.path(), dockerfile, &["--no-cache"]);
    assert!(third.ok, "{}", third.stderr);
    assert!(third.stderr.contains("| ran-now"), "{}", third.stderr);
    assert_eq!(first.stdout, third.stdout, "the image digest changed");
    assert!(!first.stdout.trim().is_empty());
}

fn a_cached_copy_reuses_a_layer_a_run_step_extracted_before(who: Who) {
    // The first build extracts the COPY layer only for the RUN sandbox; the
    // second answers COPY from the cache and must read the same layer back.
    let store = who.tempdir();
    let dockerfile = "FROM scratch\nCOPY bin /bin/\nRUN ls /bin/vi\nRUN echo second-step\n";
    let first = build(who, store.path(), dockerfile, &["--no-cache"]);
    assert!(first.ok, "{}", first.stderr);
    let second = build(who, store.path(), dockerfile, &[]);
    assert!(second.ok, "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);
    let third = build(who, store.path(), dockerfile, &[]);
    assert!(third.ok, "{}", third.stderr);
    assert_eq!(
        third.stderr.matches("CACHED").count(),
        3,
        "{}",
        third.stderr
    );
}

fn later_steps_see_earlier_deletions_and_replaced_directories(who: Who) {
    let store = who.tempdir();
    let dockerfile = r#"FROM scratch
COPY bin /bin/
RUN mkdir -p /d/old && echo old > /d/old/f && echo keep > /d/keep && echo x > /gone
RUN rm /gone /bin/vi && rm -rf /d && mkdir /d && echo new > /d/new
RUN test ! -e /gone && test ! -e /bin/vi && test -e /bin/sh \
 && test "$(ls /d)" = new && test ! -e /d/old && test ! -e /d/keep
USER 1001:1001
RUN test "$(id -u):$(id -g)" = 1001:1001 && test "$PWD" = / && test "$HOME" = /
"#;
    let built = build(who, store.path(), dockerfile, &[]);
    assert!(built.ok, "{}", built.stderr);
}

fn sigterm_during_a_run_ends_it_and_the_store_stays_usable(who: Who) {
    use std::io::BufRead;
    let store = who.tempdir();
    let ctx = who.tempdir();
    busybox_context(ctx.path());
    let token = format!("sigterm-{}", std::process::id());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            // The first RUN's layer is still being compressed when the
            // signal comes: the writer stops too.
            "FROM scratch\nCOPY bin /bin/\nRUN head -c 30000000 /dev/urandom > /big\nRUN echo started-{token} && sleep 60 && echo {token}\n"
        ),
    )
    .unwrap();
    let mut child = who
        .hoist(store.path())
        .arg("--store")
        .arg(store.path())
        .args(["build", "-t", "run:test"])
        .arg(ctx.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.contains(&format!("| started-{token}")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => panic!("the step did not start: {log:#?}"),
        }
    }
    // SAFETY: kill with a pid we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < std::time::Duration::from_secs(5),
            "hoist did not exit within 5 s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143), "{log:#?}");
    // No process of the step is left (their command lines hold the token).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
            assert!(
                !cmdline.contains(&token) || entry.file_name() == "self",
                "left behind: {cmdline}"
            );
        }
    }
    // The build's scratch files are gone and the next build works.
    let tmp: Vec<_> = std::fs::read_dir(store.path().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    let next = build(
        who,
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN true\n",
        &[],
    );
    assert!(next.ok, "{}", next.stderr);
}

fn heredoc_runs_as_buildkit_runs_them(who: Who) {
    let store = who.tempdir();
    let dockerfile = r#"FROM scratch
COPY bin /bin/
RUN <<EOF
echo one > /one
echo two > /two
EOF
RUN <<EOT
#!/bin/sh
echo "$0" > /script-name
EOT
RUN cat <<A > /x
body
A
RUN test "$(cat /one /two /script-name /x)" = "$(printf 'one\ntwo\n/dev/pipes/EOT\nbody')" \
 && test ! -e /dev/pipes/EOT
"#;
    let built = build(who, store.path(), dockerfile, &[]);
    assert!(built.ok, "{}", built.stderr);
}

fn cache_mounts_persist_between_builds_and_mount_points_stay_out_of_the_layer(who: Who) {
    let store = who.tempdir();
    let out = who.tempdir();
    let dockerfile = r#"FROM scratch
COPY bin /bin/
RUN --mount=type=cache,target=/var/cache/app \
    n=$(cat /var/cache/app/n 2>/dev/null || echo 0) && echo $((n + 1)) > /var/cache/app/n \
 && cp /var/cache/app/n /seen
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/y && test -f /scratch/y && echo z > /z
"#;
    let layout = out.path().join("oci");
    let output = format!("type=oci,dest={}", layout.display());
    for expected in ["1", "2"] {
        let _ = std::fs::remove_dir_all(&layout);
        let built = build(
            who,
            store.path(),
            dockerfile,
            &["--no-cache", "--output", &output],
        );
        assert!(built.ok, "{}", built.stderr);
        let rootfs = out.path().join(format!("rootfs-{expected}"));
        crate::support::unpack_oci_image(&layout, "test", &rootfs);
        assert_eq!(
            std::fs::read_to_string(rootfs.join("seen")).unwrap().trim(),
            expected
        );
        assert!(rootfs.join("z").is_file());
        assert!(
            !rootfs.join("var").exists(),
            "a cache mount point left in the image"
        );
        assert!(
            !rootfs.join("scratch").exists(),
            "a tmpfs mount point left in the image"
        );
    }
}

fn bind_mounts_read_the_context_and_other_stages_and_leave_nothing_behind(who: Who) {
    let store = who.tempdir();
    let ctx = who.tempdir();
    let out = who.tempdir();
    std::fs::write(ctx.path().join("note.txt"), "from-context\n").unwrap();
    std::fs::write(ctx.path().join("secret.txt"), "ignored\n").unwrap();
    std::fs::write(ctx.path().join(".dockerignore"), "secret.txt\n").unwrap();
    let dockerfile = r#"FROM scratch AS data
COPY bin /bin/
RUN mkdir /out && echo from-stage > /out/msg

FROM scratch
COPY bin /bin/
RUN --mount=type=bind,from=data,source=/out,target=/m cp /m/msg /got-stage \
 && ! touch /m/x 2>/dev/null
RUN --mount=type=bind,target=/ctx cp /ctx/note.txt /got-ctx && test ! -e /ctx/secret.txt
RUN --mount=type=bind,target=/ctx,rw echo scribble > /ctx/note.txt \
 && test "$(cat /ctx/note.txt)" = scribble
"#;
    let layout = out.path().join("oci");
    let built = build_in(
        who,
        ctx.path(),
        store.path(),
        dockerfile,
        &["--output", &format!("type=oci,dest={}", layout.display())],
    );
    assert!(built.ok, "{}", built.stderr);
    let rootfs = out.path().join("rootfs");
    crate::support::unpack_oci_image(&layout, "test", &rootfs);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("got-stage")).unwrap(),
        "from-stage\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("got-ctx")).unwrap(),
        "from-context\n"
    );
    assert!(!rootfs.join("m").exists() && !rootfs.join("ctx").exists());
    // A read-write bind mount's writes are thrown away.
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("note.txt")).unwrap(),
        "from-context\n"
    );
}

fn a_context_bind_mount_is_keyed_by_the_context_content(who: Who) {
    let store = who.tempdir();
    let ctx = who.tempdir();
    let dockerfile =
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=bind,target=/ctx cat /ctx/note.txt\n";
    for text in ["first-note", "second-note"] {
        std::fs::write(ctx.path().join("note.txt"), text).unwrap();
        let built = build_in(who, ctx.path(), store.path(), dockerfile, &[]);
        assert!(built.ok, "{}", built.stderr);
        assert!(
            built.stderr.contains(&format!("| {text}")),
            "{}",
            built.stderr
        );
    }
}

/// A build with SOURCE_DATE_EPOCH (here as BuildKit's build arg of that
/// name) gives RUN steps that value in their environment; without one they
/// see none.
fn run_steps_see_source_date_epoch_when_the_build_has_one(who: Who) {
    let store = who.tempdir();
    let dockerfile =
        "FROM scratch\nCOPY bin /bin/\nRUN echo \"epoch=${SOURCE_DATE_EPOCH:-none}\"\n";
    let with = build(
        who,
        store.path(),
        dockerfile,
        &["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    );
    assert!(with.ok, "{}", with.stderr);
    assert!(with.stderr.contains("epoch=1700000000"), "{}", with.stderr);
    assert!(
        !with.stderr.contains("not consumed"),
        "SOURCE_DATE_EPOCH is not an unused build arg: {}",
        with.stderr
    );
    let without = build(who, store.path(), dockerfile, &["--no-cache"]);
    assert!(without.ok, "{}", without.stderr);
    assert!(without.stderr.contains("epoch=none"), "{}", without.stderr);
}

fn cache_mount_sharing_modes_follow_buildkit(who: Who) {
    // Each step marks itself in the cache, waits up to 5 s for the other
    // build's mark, appends its name to a log there and keeps its mark a
    // little longer than the other's polling interval.
    for (sharing, see_each_other, logged) in [
        ("shared", true, "a b"),
        ("locked", false, "a b"),
        ("private", false, "one"),
    ] {
        let store = who.tempdir();
        let dockerfile = format!(
            r#"FROM scratch
COPY bin /bin/
ARG ME OTHER
RUN --mount=type=cache,id=c,target=/c,sharing={sharing} touch /c/in-$ME && i=0 \
 && while [ ! -e /c/in-$OTHER ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done \
 && if [ -e /c/in-$OTHER ]; then echo saw-$OTHER; fi; echo $ME >> /c/log \
 && sleep 0.5 && rm /c/in-$ME
"#
        );
        // The COPY layer first, so that both builds reach the step together.
        let warm = build(who, store.path(), "FROM scratch\nCOPY bin /bin/\n", &[]);
        assert!(warm.ok, "{}", warm.stderr);
        let builds: Vec<Built> = std::thread::scope(|scope| {
            let runs: Vec<_> = [("a", "b"), ("b", "a")]
                .map(|(me, other)| {
                    let (store, dockerfile) = (store.path(), dockerfile.as_str());
                    scope.spawn(move || {
                        let me = format!("ME={me}");
                        let other = format!("OTHER={other}");
                        build(
                            who,
                            store,
                            dockerfile,
                            &["--build-arg", &me, "--build-arg", &other],
                        )
                    })
                })
                .into_iter()
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for (built, other) in builds.iter().zip(["b", "a"]) {
            assert!(built.ok, "{sharing}: {}", built.stderr);
            assert_eq!(
                built.stderr.contains(&format!("| saw-{other}")),
                see_each_other,
                "{sharing}: {}",
                built.stderr
            );
        }
        let read = build(
            who,
            store.path(),
            "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=cache,id=c,target=/c echo log: $(sort /c/log)\n",
            &[],
        );
        assert!(read.ok, "{}", read.stderr);
        let log = read
            .stderr
            .lines()
            .find_map(|l| l.split_once("| log: ").map(|(_, v)| v.to_string()))
            .unwrap_or_else(|| panic!("{}", read.stderr));
        if logged == "one" {
            // The other build had a private instance of its own.
            assert!(log == "a" || log == "b", "{sharing}: {log}");
        } else {
            assert_eq!(log, logged, "{sharing}");
        }
    }
}

/// Where overlayfs cannot be mounted, steps run on a copy of their layers
/// (forced here with HOIST_RUN_ROOTFS=copy): the same layers, to the byte.
fn the_copy_fallback_gives_the_same_image_as_overlays(who: Who) {
    let dockerfile = r#"FROM scratch AS other
COPY bin /bin/
RUN mkdir /out && echo from-stage > /out/msg

FROM scratch
COPY bin /bin/
RUN mkdir -p /d/e /old/x && echo x > /d/e/f && chown 1001:1002 /d/e/f && rm /bin/rm \
 && ln -s e/f /d/l && ln /d/e/f /d/h && echo o > /old/x/y && chmod 1777 /old
RUN rm -rf /old && mkdir /old && echo n > /old/n && rm -rf /d/e && echo file > /d/e \
 && chmod 4755 /d/h && echo more >> /bin/extra
RUN --mount=type=bind,from=other,source=/out,target=/m rm /d/e && mkdir /d/e \
 && cp /m/msg /d/e/msg && test ! -e /old/x
"#;
    let mut digests = Vec::new();
    for mode in ["overlay", "copy"] {
        let store = who.tempdir();
        let ctx = who.tempdir();
        busybox_context(ctx.path());
        std::fs::write(ctx.path().join("bin/extra"), "extra\n").unwrap();
        let built = build_with_env(
            who,
            ctx.path(),
            store.path(),
            dockerfile,
            &[],
            &[("HOIST_RUN_ROOTFS", mode)],
        );
        assert!(built.ok, "{mode}: {}", built.stderr);
        digests.push(built.stdout);
    }
    assert_eq!(digests[0], digests[1]);
}

/// A store on an overlayfs, which overlayfs refuses as an upper directory
/// and where overlay whiteouts cannot be made: hoist falls back to the
/// copy by itself, with the same image. (Root only: the test mounts the
/// overlay in a mount namespace of its own, so the host never sees it.)
#[test]
fn where_overlayfs_cannot_be_mounted_steps_run_on_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN rm /bin/vi && mkdir /d && echo x > /d/f\nRUN rm -rf /d && mkdir /d && echo y > /d/g\n",
    )
    .unwrap();
    for d in ["lower", "upper", "work", "mnt"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let hoist = assert_cmd::cargo::cargo_bin("hoist");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let script = format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {} && exec {} --store {}/store build -t x:y {}",
        p("lower"),
        p("upper"),
        p("work"),
        p("mnt"),
        hoist.display(),
        p("mnt"),
        ctx.display()
    );
    let on_overlay = std::process::Command::new(crate::support::require("unshare", "util-linux"))
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&on_overlay.stderr);
    assert!(on_overlay.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: RUN steps ran on copies of their layers"),
        "the fallback is said: {stderr}"
    );
    // The snapshots had to be kept with OCI whiteout files: the copy's.
    let snapshots = std::fs::read_dir(dir.path().join("upper/store/snapshots")).unwrap();
    let names: Vec<String> = snapshots
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "rootfs-oci"), "{names:?}");
    let store = tempfile::tempdir().unwrap();
    let plain = build_in(
        Who::Root,
        &ctx,
        store.path(),
        &std::fs::read_to_string(ctx.join("Dockerfile")).unwrap(),
        &[],
    );
    assert!(plain.ok, "{}", plain.stderr);
    assert!(!plain.stderr.contains("copies"), "{}", plain.stderr);
    assert_eq!(
        String::from_utf8_lossy(&on_overlay.stdout),
        plain.stdout,
        "the copy and the overlay gave different images"
    );
}

fn prune_keeps_cache_mounts_unless_asked(who: Who) {
    let store = who.tempdir();
    let built = build(
        who,
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=cache,target=/c echo kept > /c/f\n",
        &[],
    );
    assert!(built.ok, "{}", built.stderr);
    let cache = store.path().join("mounts/cache");
    let count = || {
        std::fs::read_dir(&cache)
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0)
    };
    assert_eq!(count(), 1);
    let prune = |extra: &[&str]| {
        let out = who
            .hoist(store.path())
            .arg("--store")
            .arg(store.path())
            .arg("prune")
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let report = prune(&[]);
    assert!(report.contains("0 cache mounts"), "{report}");
    assert_eq!(count(), 1);
    let report = prune(&["--cache-mounts"]);
    assert!(report.contains("1 cache mounts"), "{report}");
    assert_eq!(count(), 0);
}

/// The busybox base of [`Registry::shared`] with its layer recompressed as
/// zstd, in an OCI manifest, copied there once per run as
/// `zstd/busybox:1`: skopeo recompresses into an OCI layout (from one
/// registry repository to another it would mount the gzip blob instead),
/// then copies the layout as it is.
fn zstd_busybox() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let registry = Registry::shared();
        let layout = tempfile::tempdir().unwrap();
        let layout = format!("oci:{}:1", layout.path().join("zstd").display());
        run_ok(
            skopeo()
                .args(["copy", "-q", "--src-tls-verify=false"])
                .args([
                    "--dest-compress-format",
                    "zstd",
                    &format!("docker://{}/library/busybox:latest", registry.addr()),
                    &layout,
                ]),
        );
        let image = format!("{}/zstd/busybox:1", registry.addr());
        run_ok(
            skopeo()
                .args(["copy", "-q", "--dest-tls-verify=false", &layout])
                .arg(format!("docker://{image}")),
        );
        image
    })
}

fn a_base_with_zstd_layers_is_built_on(who: Who) {
    let image = zstd_busybox();
    let raw = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    );
    assert!(raw.contains("layer.v1.tar+zstd"), "not a zstd base: {raw}");
    // RUN over the base's files, then COPY --from reading them and the
    // step's layer.
    let with_run = format!(
        "FROM {image}\nRUN cat /etc/group && echo over-zstd > /proof\n\
         FROM scratch\nCOPY --from=0 /bin/busybox /bin/sh\nCOPY --from=0 /etc/passwd /proof /\n\
         RUN cat /passwd /proof\n"
    );
    let built_with = |store: &Path, dockerfile: &str| {
        let built = build(who, store, dockerfile, &[]);
        assert!(built.ok, "{}", built.stderr);
        built
    };
    // A fresh store: the layer is read as it downloads.
    let pulled = who.tempdir();
    let first = built_with(pulled.path(), &with_run);
    for line in ["| app:x:1001:", "| over-zstd", "| root:x:0:0:root"] {
        assert!(first.stderr.contains(line), "{line}: {}", first.stderr);
    }
    // A store holding the base's blob and contents but no RUN snapshot
    // (a COPY-only build made them): the snapshot is extracted from the
    // stored zstd blob.
    let stored = who.tempdir();
    built_with(
        stored.path(),
        &format!("FROM {image}\nCOPY Dockerfile /d\n"),
    );
    let second = built_with(stored.path(), &with_run);
    assert!(second.stderr.contains("| over-zstd"), "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout, "the same image either way");
}

/// A step's view of the kernel: settings read-only, details masked (as
/// runc does for BuildKit). Each check prints `name:result`.
fn a_step_cannot_write_kernel_settings_or_read_masked_paths(who: Who) {
    let store = who.tempdir();
    let dockerfile = "FROM scratch\nCOPY bin /bin/\n\
        RUN (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo write-sys:ok || echo write-sys:refused; \\\n\
        (echo h > /proc/sysrq-trigger) 2>/dev/null && echo write-sysrq:ok || echo write-sysrq:refused; \\\n\
        for p in sys sysrq-trigger irq bus; do grep -q \"^[^ ]* /proc/$p [^ ]* ro,\" /proc/mounts && echo $p:ro || echo $p:rw; done; \\\n\
        for f in kcore keys timer_list sched_debug interrupts; do echo \"$f:$(head -c 1 /proc/$f 2>/dev/null | wc -c)\"; done; \\\n\
        echo \"firmware:$(ls -A /sys/firmware 2>/dev/null | wc -l)\"; echo \"acpi:$(ls -A /proc/acpi 2>/dev/null | wc -l)\"\n";
    let built = build(who, store.path(), dockerfile, &[]);
    assert!(built.ok, "{}", built.stderr);
    let host_has = |path: &str| std::path::Path::new("/proc").join(path).exists();
    let mut expected = vec![
        "write-sys:refused".to_string(),
        "write-sysrq:refused".into(),
    ];
    for path in ["sys", "sysrq-trigger", "irq", "bus"]
        .into_iter()
        .filter(|p| host_has(p))
    {
        expected.push(format!("{path}:ro"));
    }
    // Masked files read as nothing, masked directories list nothing (the
    // host's hold something).
    for file in ["kcore", "keys", "timer_list", "sched_debug", "interrupts"] {
        if host_has(file) {
            expected.push(format!("{file}:0"));
        }
    }
    expected.extend(["firmware:0".into(), "acpi:0".into()]);
    let host_firmware = std::fs::read_dir("/sys/firmware")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        host_firmware > 0,
        "the host's /sys/firmware should list something"
    );
    for line in expected {
        assert!(
            built.stderr.contains(&format!("| {line}\n")),
            "{line}: {}",
            built.stderr
        );
    }
}

as_root_and_rootless!(
    a_failing_run_fails_the_build_with_its_line_exit_code_and_output,
    the_layers_of_the_steps_before_a_failing_one_are_cached,
    a_run_step_sees_the_image_and_not_the_host,
    a_cached_run_is_not_run_again_and_a_deterministic_one_gives_the_same_layer,
    a_cached_copy_reuses_a_layer_a_run_step_extracted_before,
    later_steps_see_earlier_deletions_and_replaced_directories,
    sigterm_during_a_run_ends_it_and_the_store_stays_usable,
    heredoc_runs_as_buildkit_runs_them,
    cache_mounts_persist_between_builds_and_mount_points_stay_out_of_the_layer,
    bind_mounts_read_the_context_and_other_stages_and_leave_nothing_behind,
    a_context_bind_mount_is_keyed_by_the_context_content,
    run_steps_see_source_date_epoch_when_the_build_has_one,
    cache_mount_sharing_modes_follow_buildkit,
    prune_keeps_cache_mounts_unless_asked,
    the_copy_fallback_gives_the_same_image_as_overlays,
    a_base_with_zstd_layers_is_built_on,
    a_step_cannot_write_kernel_settings_or_read_masked_paths
);
#[test]
fn run_works_with_a_relative_store_path() {
    // The sandbox changes directory into the store before mounting its
    // overlay: a relative --store once named nothing there (ENOENT).
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN echo ran > /ran\n",
    )
    .unwrap();
    let out = assert_cmd::Command::cargo_bin("hoist")
        .unwrap()
        .current_dir(dir.path())
        .args(["--store", "relative/store", "build", "-q", "ctx"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(dir.path().join("relative/store/oci-layout").is_file());
}

#[test]
fn a_root_step_gets_the_default_capabilities_whatever_hoist_inherits() {
    // hoist started with CAP_SYS_ADMIN inheritable and ambient: dropping it
    // from the bounding set alone would let a root step keep it (execve
    // adds the inheritable set to a root program's permitted set).
    crate::support::require("/usr/bin/setpriv", "util-linux");
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN grep ^Cap /proc/self/status\n",
    )
    .unwrap();
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args([
            "--inh-caps",
            "+sys_admin",
            "--ambient-caps",
            "+sys_admin",
            "--",
        ])
        .arg(assert_cmd::cargo::cargo_bin("hoist"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Docker's 14 default capabilities, and nothing to inherit.
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
    }
}
