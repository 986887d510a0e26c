//! RUN: a failing step stops the build with its line and exit code; a step
//! sees the image and nothing of the host; a cached step is not run again;
//! a deterministic step gives the same layer every time.

use crate::support::busybox_context;
use assert_cmd::cargo::CommandCargoExt;
use std::path::Path;
use std::process::Command;

struct Built {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Builds `dockerfile` in a context holding a static busybox (`COPY bin
/// /bin/` makes a shell), with `extra` arguments before the context.
fn build(store: &Path, dockerfile: &str, extra: &[&str]) -> Built {
    let ctx = tempfile::tempdir().unwrap();
    build_in(ctx.path(), store, dockerfile, extra)
}

/// [`build`] in a given context directory (which may hold more files).
fn build_in(ctx: &Path, store: &Path, dockerfile: &str, extra: &[&str]) -> Built {
    if !ctx.join("bin").exists() {
        busybox_context(ctx);
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = Command::cargo_bin("hoist")
        .unwrap()
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

#[test]
fn a_failing_run_fails_the_build_with_its_line_exit_code_and_output() {
    let store = tempfile::tempdir().unwrap();
    let built = build(
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

#[test]
fn a_run_step_sees_the_image_and_not_the_host() {
    let store = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("config.json");
    std::fs::write(&secret, r#"{"auths":{"x":{"auth":"c2VjcmV0"}}}"#).unwrap();
    // The step gets the paths as build args (so as environment variables)
    // and fails the build if it can reach either.
    let dockerfile = r#"FROM scratch
COPY bin /bin/
ARG SECRET STORE
RUN test -n "$SECRET" && test -n "$STORE" \
 && test ! -e "$SECRET" && test ! -e "$STORE" && test ! -e /root/.docker/config.json \
 && test "$$" = 1 && test "$(hostname)" = buildkitsandbox && test "$HOME" = / \
 && ls / > /root-listing && cat /etc/hosts > /dev/null \
 && echo probe > /dev/null && ! touch /etc/hosts 2>/dev/null
RUN --network=none test "$(ls /sys/class/net)" = lo
"#;
    let built = build(
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

#[test]
fn a_cached_run_is_not_run_again_and_a_deterministic_one_gives_the_same_layer() {
    let store = tempfile::tempdir().unwrap();
    let dockerfile = "FROM scratch\nCOPY bin /bin/\nRUN echo ran-now && mkdir -p /d/e && echo x > /d/e/f && ln -s e/f /d/l && rm /bin/vi\n";
    let first = build(store.path(), dockerfile, &[]);
    assert!(first.ok, "{}", first.stderr);
    assert!(first.stderr.contains("| ran-now"), "{}", first.stderr);
    let second = build(store.path(), dockerfile, &[]);
    assert!(second.ok, "{}", second.stderr);
    assert!(!second.stderr.contains("| ran-now"), "{}", second.stderr);
    assert!(second.stderr.contains("CACHED"), "{}", second.stderr);
    let third = build(store.path(), dockerfile, &["--no-cache"]);
    assert!(third.ok, "{}", third.stderr);
    assert!(third.stderr.contains("| ran-now"), "{}", third.stderr);
    assert_eq!(first.stdout, third.stdout, "the image digest changed");
    assert!(!first.stdout.trim().is_empty());
}

#[test]
fn later_steps_see_earlier_deletions_and_replaced_directories() {
    let store = tempfile::tempdir().unwrap();
    let dockerfile = r#"FROM scratch
COPY bin /bin/
RUN mkdir -p /d/old && echo old > /d/old/f && echo keep > /d/keep && echo x > /gone
RUN rm /gone /bin/vi && rm -rf /d && mkdir /d && echo new > /d/new
RUN test ! -e /gone && test ! -e /bin/vi && test -e /bin/sh \
 && test "$(ls /d)" = new && test ! -e /d/old && test ! -e /d/keep
USER 1001:1001
RUN test "$(id -u):$(id -g)" = 1001:1001 && test "$PWD" = / && test "$HOME" = /
"#;
    let built = build(store.path(), dockerfile, &[]);
    assert!(built.ok, "{}", built.stderr);
}

#[test]
fn sigterm_during_a_run_ends_it_and_the_store_stays_usable() {
    use std::io::BufRead;
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path());
    let token = format!("sigterm-{}", std::process::id());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY bin /bin/\nRUN echo started-{token} && sleep 60 && echo {token}\n"
        ),
    )
    .unwrap();
    let mut child = Command::cargo_bin("hoist")
        .unwrap()
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
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN true\n",
        &[],
    );
    assert!(next.ok, "{}", next.stderr);
}

#[test]
fn heredoc_runs_as_buildkit_runs_them() {
    let store = tempfile::tempdir().unwrap();
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
    let built = build(store.path(), dockerfile, &[]);
    assert!(built.ok, "{}", built.stderr);
}

#[test]
fn cache_mounts_persist_between_builds_and_mount_points_stay_out_of_the_layer() {
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
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

#[test]
fn bind_mounts_read_the_context_and_other_stages_and_leave_nothing_behind() {
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
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

#[test]
fn a_context_bind_mount_is_keyed_by_the_context_content() {
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile =
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=bind,target=/ctx cat /ctx/note.txt\n";
    for text in ["first-note", "second-note"] {
        std::fs::write(ctx.path().join("note.txt"), text).unwrap();
        let built = build_in(ctx.path(), store.path(), dockerfile, &[]);
        assert!(built.ok, "{}", built.stderr);
        assert!(
            built.stderr.contains(&format!("| {text}")),
            "{}",
            built.stderr
        );
    }
}

#[test]
fn run_without_root_fails_at_once_with_the_remedy_and_copy_still_works() {
    use std::os::unix::fs::PermissionsExt;
    let setpriv = crate::support::require("/usr/bin/setpriv", "util-linux");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "f").unwrap();
    let build_as_nobody = |dockerfile: &str| {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("hoist"))
            .arg("--store")
            .arg(dir.path().join("store"))
            .args(["build", "-t", "x:y"])
            .arg(&ctx)
            .output()
            .unwrap()
    };
    let out = build_as_nobody("FROM scratch\nCOPY f /f\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = build_as_nobody("FROM scratch\nCOPY f /f\nRUN true\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:3: RUN true: RUN needs root"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: run hoist as root"), "{stderr}");
}

/// A build with SOURCE_DATE_EPOCH (here as BuildKit's build arg of that
/// name) gives RUN steps that value in their environment; without one they
/// see none.
#[test]
fn run_steps_see_source_date_epoch_when_the_build_has_one() {
    let store = tempfile::tempdir().unwrap();
    let dockerfile =
        "FROM scratch\nCOPY bin /bin/\nRUN echo \"epoch=${SOURCE_DATE_EPOCH:-none}\"\n";
    let with = build(
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
    let without = build(store.path(), dockerfile, &["--no-cache"]);
    assert!(without.ok, "{}", without.stderr);
    assert!(without.stderr.contains("epoch=none"), "{}", without.stderr);
}

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
    let out = Command::cargo_bin("hoist")
        .unwrap()
        .current_dir(dir.path())
        .args(["--store", "relative/store", "build", "-q", "ctx"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(dir.path().join("relative/store/oci-layout").is_file());
}
