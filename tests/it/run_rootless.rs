//! Rootless RUN beyond the shared RUN group (which build_run runs as root
//! and rootless): layers hold in-image ids and equal root's; a single-id
//! namespace serves steps that keep ownership and explains the rest; where
//! no user namespace can be made, RUN fails at once with the setting to
//! change and COPY still works.

use crate::build_run::{Built, build_in};
use crate::support::rootless::Who;
use crate::support::{busybox_context, require, run_ok};
use std::path::Path;
use std::process::{Command, Stdio};

/// The entries of every layer of the image in `layout` (`tar -tv`
/// lines: mode, uid/gid, path), layer by layer.
fn listing(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let mut out = String::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let text = run_ok(
            Command::new("tar")
                .args(["--numeric-owner", "-tvzf"])
                .arg(blob(layer["digest"].as_str().unwrap())),
        );
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let path = f[5..].join(" ");
            // busybox's applets (the COPY layer) are left out.
            if path.starts_with("bin/") && path != "bin/extra" && !path.contains(".wh.") {
                continue;
            }
            out.push_str(&format!("{} {} {path}\n", f[0], f[1]));
        }
        out.push_str("--\n");
    }
    out
}

fn build_to(who: Who, dockerfile: &str) -> (Built, tempfile::TempDir) {
    let store = who.tempdir();
    let ctx = who.tempdir();
    let out = who.tempdir();
    let layout = out.path().join("oci");
    let built = build_in(
        who,
        ctx.path(),
        store.path(),
        dockerfile,
        &["--output", &format!("type=oci,dest={}", layout.display())],
    );
    (built, out)
}

#[test]
fn rootless_layers_hold_in_image_ids_and_equal_roots() {
    let dockerfile = r#"FROM scratch
COPY bin /bin/
RUN mkdir -p /app/data /old/sub && echo x > /app/data/f && echo y > /old/sub/g \
 && chown -R 1001:1002 /app && chmod 4755 /app/data/f && chmod 1777 /app/data \
 && ln -s data/f /app/link && ln /app/data/f /app/hard && rm /bin/vi \
 && test "$(stat -c %u:%g /app/data/f)" = 1001:1002
RUN rm -rf /old && mkdir /old && echo z > /old/new && chown 65534:65534 /old/new
USER 1001:1002
RUN echo mine > /app/data/by-user && test "$(id -u)" = 1001
"#;
    let (root, root_out) = build_to(Who::Root, dockerfile);
    assert!(root.ok, "{}", root.stderr);
    let (rootless, rootless_out) = build_to(Who::Rootless, dockerfile);
    assert!(rootless.ok, "{}", rootless.stderr);
    let listing_of = |dir: &tempfile::TempDir| listing(&dir.path().join("oci"));
    let layers = listing_of(&rootless_out);
    for expected in [
        "drwxr-xr-x 1001/1002 app/",
        "-rwsr-xr-x 1001/1002 app/data/f",
        "drwxrwxrwt 1001/1002 app/data/",
        "lrwxrwxrwx 0/0 app/link -> data/f",
        "hrwsr-xr-x 1001/1002 app/hard link to app/data/f",
        "---------- 0/0 bin/.wh.vi",
        "---------- 0/0 old/.wh..wh..opq",
        "-rw-r--r-- 65534/65534 old/new",
        "-rw-r--r-- 1001/1002 app/data/by-user",
    ] {
        // `tar -tv` shows a hard link as `h` only in some versions: match
        // the rest of the line.
        let wanted = expected.trim_start_matches('h');
        assert!(
            layers.lines().any(|l| l.ends_with(wanted) || l == expected),
            "no `{expected}` in:\n{layers}"
        );
    }
    assert_eq!(layers, listing_of(&root_out));
    assert_eq!(
        rootless.stdout, root.stdout,
        "rootless and root digests differ"
    );
}

#[test]
fn a_single_id_namespace_serves_steps_that_keep_ownership_and_explains_the_rest() {
    let keep = "FROM scratch\nCOPY --chown=7:8 bin /bin/\nRUN echo more >> /bin/extra && mkdir /new && echo n > /new/f\n";
    let with_extra = |who: Who| {
        let store = who.tempdir();
        let ctx = who.tempdir();
        let out = who.tempdir();
        busybox_context(ctx.path());
        std::fs::write(ctx.path().join("bin/extra"), "extra\n").unwrap();
        let layout = out.path().join("oci");
        let built = build_in(
            who,
            ctx.path(),
            store.path(),
            keep,
            &["--output", &format!("type=oci,dest={}", layout.display())],
        );
        assert!(built.ok, "{}", built.stderr);
        (built.stdout, listing(&layout))
    };
    let (root_digest, root_layers) = with_extra(Who::Root);
    let (single_digest, single_layers) = with_extra(Who::SingleId);
    // The modified file keeps its owner from the layer below.
    assert!(
        single_layers.contains("-rw-r--r-- 7/8 bin/extra\n--\n"),
        "{single_layers}"
    );
    assert_eq!(single_layers, root_layers);
    assert_eq!(single_digest, root_digest);

    let store = Who::SingleId.tempdir();
    let ctx = Who::SingleId.tempdir();
    let chown = build_in(
        Who::SingleId,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN touch /f && chown 1001 /f\n",
        &[],
    );
    assert!(!chown.ok);
    for expected in [
        "Dockerfile:3: RUN touch /f && chown 1001 /f: exit code 1",
        "single-id user namespace",
        "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 hoist-single",
    ] {
        assert!(chown.stderr.contains(expected), "{}", chown.stderr);
    }
    let user = build_in(
        Who::SingleId,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nUSER 1001\nRUN echo never-ran\n",
        &[],
    );
    assert!(!user.ok);
    assert!(
        user.stderr.contains(
            "Dockerfile:4: RUN echo never-ran: the step runs as USER 1001 (1001:1001), but hoist has only a single-id user namespace"
        ),
        "{}",
        user.stderr
    );
    assert!(!user.stderr.contains("| never-ran"), "{}", user.stderr);
    let cache = build_in(
        Who::SingleId,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=cache,target=/c,uid=1001 true\n",
        &[],
    );
    assert!(!cache.ok);
    assert!(
        cache.stderr.contains(
            "the cache mount at /c is to be owned by 1001:0, but hoist has only a single-id user namespace"
        ),
        "{}",
        cache.stderr
    );
    assert!(
        user.stderr
            .contains("hint: give hoist-single subordinate ids"),
        "{}",
        user.stderr
    );
}

/// hoist run as `hoist-rootless` inside a user namespace of the test's
/// own where `user.max_user_namespaces` is 0: the limit holds for that
/// namespace and those below it only, not for the host or other tests.
fn hoist_without_user_namespaces(ctx: &Path, store: &Path) -> std::process::Output {
    let user = Who::Rootless.user().unwrap();
    let hoist = assert_cmd::cargo::cargo_bin("hoist");
    // The shell re-executes itself once the map is written: only then is
    // it root of the namespace, with the capability the sysctl needs.
    let script = format!(
        "read go; exec sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid={} --regid={} --init-groups -- {} --store {} build -t x:y {}'",
        user.uid,
        user.gid,
        hoist.display(),
        store.display(),
        ctx.display()
    );
    let mut child = Command::new(require("unshare", "util-linux"))
        .args(["--user", "--", "sh", "-c", &script])
        .env("HOME", store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
    crate::support::wait_until(
        "unshare makes its user namespace",
        std::time::Duration::from_secs(10),
        || Ok(()),
        || std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|ns| ns != ours),
    );
    // Root of the test's namespace maps the first 65536 ids as they are.
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{map}"), "0 0 65536\n").unwrap();
    }
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn without_user_namespaces_run_fails_at_once_naming_the_setting_and_copy_works() {
    let store = Who::Rootless.tempdir();
    let ctx = Who::Rootless.tempdir();
    busybox_context(ctx.path());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\n",
    )
    .unwrap();
    let copy = hoist_without_user_namespaces(ctx.path(), store.path());
    let stderr = String::from_utf8_lossy(&copy.stderr);
    assert!(copy.status.success(), "{stderr}");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN echo never-ran\n",
    )
    .unwrap();
    let run = hoist_without_user_namespaces(ctx.path(), store.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    for expected in [
        "Dockerfile:3: RUN echo never-ran: RUN needs a user namespace when hoist is not root, and none can be made here",
        "hint: user namespaces are limited to 0 here (user.max_user_namespaces): `sysctl -w user.max_user_namespaces=15000`",
        // What a pod needs, named.
        "`runAsUser: 0`, and RUN steps then use chroot isolation; a pod with `hostUsers: false` gets a user namespace of its own",
    ] {
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert!(!stderr.contains("| never-ran"), "{stderr}");
    // The host's own setting is untouched.
    let host = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    assert_ne!(host.trim(), "0");
}

#[test]
fn rootless_prune_removes_what_rootless_builds_extracted() {
    let store = Who::Rootless.tempdir();
    let ctx = Who::Rootless.tempdir();
    let built = build_in(
        Who::Rootless,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN mkdir /d && chown 1001 /d && chmod 700 /d && echo x > /d/f\nRUN true\n",
        &[],
    );
    assert!(built.ok, "{}", built.stderr);
    let snapshots = || {
        std::fs::read_dir(store.path().join("snapshots"))
            .unwrap()
            .count()
    };
    assert!(snapshots() >= 2);
    let untag = Who::Rootless
        .hoist(store.path())
        .arg("--store")
        .arg(store.path())
        .args(["rmi", "run:test"])
        .output()
        .unwrap();
    assert!(
        untag.status.success(),
        "{}",
        String::from_utf8_lossy(&untag.stderr)
    );
    // Cache records keep layers alive; clear them as a user would.
    std::fs::remove_dir_all(store.path().join("cache")).unwrap();
    std::fs::create_dir(store.path().join("cache")).unwrap();
    Who::Rootless.own(&store.path().join("cache"));
    let prune = Who::Rootless
        .hoist(store.path())
        .arg("--store")
        .arg(store.path())
        .arg("prune")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&prune.stderr);
    assert!(prune.status.success(), "{stderr}");
    assert_eq!(snapshots(), 0, "{stderr}");
}

#[test]
fn a_layer_file_owned_beyond_the_subordinate_range_names_the_range() {
    let store = Who::Rootless.tempdir();
    let ctx = Who::Rootless.tempdir();
    busybox_context(ctx.path());
    std::fs::write(ctx.path().join("f"), "f").unwrap();
    let built = build_in(
        Who::Rootless,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nCOPY --chown=70000:70000 f /f\nRUN true\n",
        &[],
    );
    assert!(!built.ok);
    for expected in [
        "Dockerfile:4: RUN true: cannot extract layer",
        "hint: a file of the layer belongs to an id hoist's user namespace does not map",
        "usermod --add-subuids 200000-399999",
    ] {
        assert!(built.stderr.contains(expected), "{}", built.stderr);
    }
}
