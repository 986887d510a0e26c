//! `hoist push`, `hoist build --push`, `hoist pull` and `hoist tag` against a
//! real registry:2: what was pushed is pulled and run by Docker and podman,
//! and its digest checked with skopeo; what went over the wire is counted,
//! and broken on purpose, by a loopback proxy (support::proxy).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use hoist_store::Store;
use serde_json::Value;

use crate::support::proxy::{Action, Proxy, Rule};
use crate::support::{Dockerd, Registry, busybox_context, podman, podman_run, run_ok, skopeo};

fn hoist(store: &Path) -> Command {
    let mut cmd = Command::new(cargo_bin("hoist"));
    cmd.arg("--store").arg(store);
    cmd
}

/// A build context: busybox, a file `big` of `big` pseudo-random
/// (incompressible) bytes, and a command that prints `message`.
fn context(dir: &Path, message: &str, big: usize) -> PathBuf {
    let ctx = dir.join("ctx");
    busybox_context(&ctx);
    let mut file = std::io::BufWriter::new(std::fs::File::create(ctx.join("big")).unwrap());
    let mut state: u64 = 0x2545_f491_4f6c_dd1d ^ big as u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = big;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
    std::fs::write(ctx.join("message"), format!("{message}\n")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin\nCOPY big /big\nCOPY message /message\n\
         CMD [\"/bin/cat\", \"/message\"]\n",
    )
    .unwrap();
    ctx
}

/// `hoist build -q` with `args`; returns the manifest digest it printed.
fn build(store: &Path, ctx: &Path, args: &[&str]) -> String {
    let out = run_ok(hoist(store).args(["build", "-q"]).args(args).arg(ctx));
    out.trim().to_owned()
}

/// The digest skopeo reports for `image` (`HOST/REPO:TAG`).
fn skopeo_digest(image: &str) -> String {
    let out = run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    );
    let info: Value = serde_json::from_str(&out).unwrap();
    info["Digest"].as_str().unwrap().to_owned()
}

fn raw_manifest(image: &str) -> Value {
    let out = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    );
    serde_json::from_str(&out).unwrap()
}

/// `hoist push` with `args`; returns what it printed on stdout.
fn push(store: &Path, args: &[&str]) -> String {
    run_ok(hoist(store).arg("push").args(args))
        .trim()
        .to_owned()
}

#[test]
fn a_pushed_image_runs_in_docker_and_podman_in_both_formats() {
    let registry = Registry::start();
    let reg = registry.addr();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let message = format!("pushed by hoist {}", std::process::id());
    let ctx = context(dir.path(), &message, 100_000);
    let app = format!("{reg}/push-it/app");
    let built = build(&store, &ctx, &["-t", &format!("{app}:v1")]);

    let digest_file = dir.path().join("digest");
    let printed = push(
        &store,
        &[
            &format!("{app}:v1"),
            "--digest-file",
            digest_file.to_str().unwrap(),
        ],
    );
    assert_eq!(printed, format!("{app}@{built}"));
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), built);
    assert_eq!(skopeo_digest(&format!("{app}:v1")), built);
    assert_eq!(
        raw_manifest(&format!("{app}:v1"))["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // Docker schema 2: the same blobs, other media types, its own digest.
    let printed = push(
        &store,
        &[
            "--format",
            "docker",
            &format!("{app}:v1"),
            &format!("{app}:docker"),
        ],
    );
    let docker_digest = printed
        .strip_prefix(&format!("{app}@"))
        .unwrap_or_else(|| panic!("{printed}"))
        .to_owned();
    assert_ne!(docker_digest, built);
    assert_eq!(skopeo_digest(&format!("{app}:docker")), docker_digest);
    let manifest = raw_manifest(&format!("{app}:docker"));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }

    // The store remembers both pushes.
    {
        let store = Store::open(&store).unwrap();
        let record = store.pushed(&format!("{app}:v1")).unwrap().unwrap();
        assert_eq!(record.digest.to_string(), built);
        assert_eq!(
            record.media_type,
            "application/vnd.oci.image.manifest.v1+json"
        );
        let record = store.pushed(&format!("{app}:docker")).unwrap().unwrap();
        assert_eq!(record.digest.to_string(), docker_digest);
    }

    let dockerd = Dockerd::shared();
    for digest in [&built, &docker_digest] {
        let image = format!("{app}@{digest}");
        run_ok(dockerd.docker().args(["pull", "-q", &image]));
        let out = run_ok(
            dockerd
                .docker()
                .args(["run", "--rm", "--network", "none", &image]),
        );
        assert_eq!(out.trim(), message, "docker run {image}");
        run_ok(dockerd.docker().args(["rmi", "-f", &image]));
    }

    for (tag, digest) in [("v1", &built), ("docker", &docker_digest)] {
        let image = format!("{app}:{tag}");
        run_ok(podman().args(["pull", "-q", "--tls-verify=false", &image]));
        let pulled = run_ok(podman().args(["image", "inspect", "--format", "{{.Digest}}", &image]));
        assert_eq!(pulled.trim(), digest.as_str(), "podman's digest of {image}");
        let out = run_ok(podman_run().arg(&image));
        assert_eq!(out.trim(), message, "podman run {image}");
        run_ok(podman().args(["rmi", "-f", &image]));
    }

    // hoist pull of what hoist pushed, into another store.
    let other = dir.path().join("other-store");
    let pulled = run_ok(hoist(&other).args(["pull", "-q", &format!("{app}:docker")]));
    assert_eq!(pulled.trim(), docker_digest);
}

/// Every exchange of `proxy` matching `method` and `contains`, as
/// statuses.
fn statuses(proxy: &Proxy, method: &str, contains: &str) -> Vec<u16> {
    proxy
        .log()
        .iter()
        .filter(|e| e.method == method && e.target.contains(contains))
        .map(|e| e.status)
        .collect()
}

#[test]
fn a_repush_uploads_no_blob_and_a_second_repository_mounts_every_blob() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = context(dir.path(), "mounted", 50_000);
    let one = format!("{}/one/app:v1", proxy.addr());
    let built = build(&store, &ctx, &["--push", "-t", &one]);
    // Config and three layers, each uploaded once in one PUT.
    assert_eq!(
        statuses(&proxy, "POST", "/v2/one/app/blobs/uploads/"),
        [202; 4],
        "{}",
        proxy.summary()
    );
    assert_eq!(
        statuses(&proxy, "PUT", "/v2/one/app/blobs/uploads/"),
        [201; 4]
    );
    assert_eq!(statuses(&proxy, "PUT", "/v2/one/app/manifests/v1"), [201]);
    assert_eq!(
        skopeo_digest(&format!("{}/one/app:v1", registry.addr())),
        built
    );

    proxy.clear_log();
    push(&store, &[&one]);
    assert_eq!(
        statuses(&proxy, "HEAD", "/blobs/"),
        [200; 4],
        "{}",
        proxy.summary()
    );
    assert_eq!(proxy.count("POST", "/blobs/"), 0);
    assert_eq!(proxy.count("PATCH", "/"), 0);
    assert_eq!(proxy.count("PUT", "/blobs/"), 0);

    proxy.clear_log();
    let two = format!("{}/two/app:v1", proxy.addr());
    run_ok(hoist(&store).args(["tag", &one, &two]));
    let printed = push(&store, &[&two]);
    assert_eq!(printed, format!("{}/two/app@{built}", proxy.addr()));
    let mounts: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.method == "POST")
        .collect();
    assert_eq!(mounts.len(), 4, "{}", proxy.summary());
    for mount in &mounts {
        assert!(
            mount.target.contains("mount=sha256%3A") && mount.target.ends_with("&from=one%2Fapp"),
            "{mount:?}"
        );
        assert_eq!(mount.status, 201, "{mount:?}");
    }
    assert_eq!(proxy.count("PATCH", "/"), 0);
    assert_eq!(proxy.count("PUT", "/blobs/"), 0);
    assert_eq!(
        skopeo_digest(&format!("{}/two/app:v1", registry.addr())),
        built
    );
}

fn injected(proxy: &Proxy) -> usize {
    proxy.log().iter().filter(|e| e.injected).count()
}

#[test]
fn push_and_pull_complete_through_injected_faults_and_stop_in_bounded_time_when_they_last() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr());
    let cdn = Proxy::start(registry.addr());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // 40 MB: three 16 MiB chunks for the big layer.
    let ctx = context(dir.path(), "faults", 40_000_000);
    let image = format!("{}/fault/app:v1", proxy.addr());
    let built = build(&store, &ctx, &["-t", &image]);

    let status = |status, retry_after| Action::Status {
        status,
        retry_after,
    };
    proxy.rule(Rule::nth("HEAD", "/blobs/", 1, status(503, None)));
    proxy.rule(Rule::nth(
        "POST",
        "/blobs/uploads/",
        2,
        status(429, Some(1)),
    ));
    proxy.rule(Rule::nth(
        "PATCH",
        "/blobs/uploads/",
        2,
        Action::ResetMidBody,
    ));
    proxy.rule(Rule::nth("PATCH", "/blobs/uploads/", 4, status(502, None)));
    proxy.rule(Rule::nth("PUT", "/blobs/uploads/", 1, Action::Reset));
    proxy.rule(Rule::nth("PUT", "/blobs/uploads/", 3, status(500, None)));
    proxy.rule(Rule::nth("PUT", "/manifests/", 1, status(503, None)));
    let printed = push(&store, &[&image]);
    assert_eq!(printed, format!("{}/fault/app@{built}", proxy.addr()));
    assert_eq!(injected(&proxy), 7, "{}", proxy.summary());
    // The registry holds the whole image, intact: skopeo reads every blob.
    let direct = format!("{}/fault/app:v1", registry.addr());
    assert_eq!(skopeo_digest(&direct), built);
    run_ok(
        skopeo()
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{direct}"))
            .arg(format!("oci:{}:copy", dir.path().join("layout").display())),
    );

    // A pull whose blob downloads go to a "CDN", itself flaky.
    proxy.clear_rules();
    proxy.clear_log();
    proxy.rule(Rule::nth("GET", "/manifests/", 1, status(503, None)));
    proxy.rule(Rule::always(
        "GET",
        "/blobs/sha256:",
        Action::Redirect {
            base: format!("http://{}", cdn.addr()),
        },
    ));
    cdn.rule(Rule::nth("GET", "/blobs/", 1, Action::Reset));
    cdn.rule(Rule::nth("GET", "/blobs/", 3, status(500, None)));
    let fresh = dir.path().join("fresh");
    let pulled = run_ok(hoist(&fresh).args(["pull", "-q", &image]));
    assert_eq!(pulled.trim(), built);
    assert_eq!(
        statuses(&cdn, "GET", "/blobs/")
            .iter()
            .filter(|&&s| s == 200)
            .count(),
        4,
        "{}",
        cdn.summary()
    );
    assert!(cdn.log().iter().all(|e| !e.authorization));

    // Failures that do not end: a clear error, in bounded time.
    for (repository, rule) in [
        (
            "fault/manifest",
            Rule::always("PUT", "/manifests/", status(503, None)),
        ),
        (
            "fault/upload",
            Rule::always("POST", "/blobs/uploads/", Action::Reset),
        ),
    ] {
        proxy.clear_rules();
        proxy.rule(rule);
        let target = format!("{}/{repository}:v1", proxy.addr());
        let started = Instant::now();
        let out: Output = hoist(&store)
            .args(["push", &image, &target])
            .output()
            .unwrap();
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        println!("{repository}: failed after {elapsed:?}:\n{stderr}");
        assert!(
            elapsed < Duration::from_secs(60),
            "gave up after {elapsed:?}"
        );
        assert!(
            stderr.contains(proxy.addr()) && stderr.contains(repository),
            "{stderr}"
        );
    }
}

#[test]
fn build_push_of_a_1gib_layer_keeps_peak_rss_under_200_mib() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "big", 1 << 30);
    let image = format!("{}/big/app:v1", registry.addr());
    let store = dir.path().join("store");
    let out = crate::support::hoist_within_memory(
        &[
            "--store".as_ref(),
            store.as_os_str(),
            "build".as_ref(),
            "-q".as_ref(),
            "--push".as_ref(),
            "-t".as_ref(),
            image.as_ref(),
            ctx.as_os_str(),
        ],
        "1 GiB layer, build --push",
        200,
    );
    let built = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(skopeo_digest(&image), built);
}

#[test]
fn an_index_is_pushed_after_its_manifests_in_both_formats() {
    use hoist_oci::Platform;
    use hoist_oci::image::{Document, Index};
    use hoist_oci::media_type;
    let registry = Registry::start();
    let reg = registry.addr();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let ctx = context(dir.path(), "index", 1000);
    let single = format!("{reg}/multi/app:single");
    let built = build(&store_dir, &ctx, &["-t", &single]);
    // An index of the one platform, tagged in the store as a pulled
    // multi-platform image would be.
    let index_tag = format!("{reg}/multi/app:index");
    let index_digest = {
        let store = Store::open(&store_dir).unwrap();
        let manifest = store.resolve(&single).unwrap().unwrap();
        assert_eq!(manifest.digest.to_string(), built);
        let index = Index::new(vec![
            manifest.with_platform(Platform::new("linux", "amd64")),
        ])
        .encode();
        store
            .put_blob_bytes(&index.bytes, Some(&index.digest))
            .unwrap();
        store
            .tag(&index_tag, &index.descriptor(media_type::OCI_INDEX))
            .unwrap();
        index.digest.to_string()
    };
    assert_eq!(
        push(&store_dir, &[&index_tag]),
        format!("{reg}/multi/app@{index_digest}")
    );
    assert_eq!(skopeo_digest(&index_tag), index_digest);
    let raw = raw_manifest(&index_tag);
    assert_eq!(raw["mediaType"], media_type::OCI_INDEX);
    assert_eq!(raw["manifests"][0]["digest"], built.as_str());

    let list = format!("{reg}/multi/app:list");
    let printed = push(&store_dir, &["--format", "docker", &index_tag, &list]);
    let raw = raw_manifest(&list);
    assert_eq!(raw["mediaType"], media_type::DOCKER_MANIFEST_LIST);
    assert_eq!(raw["manifests"][0]["platform"]["architecture"], "amd64");
    let child = raw["manifests"][0]["digest"].as_str().unwrap();
    assert_ne!(child, built);
    let list_digest = skopeo_digest(&list);
    assert_eq!(printed, format!("{reg}/multi/app@{list_digest}"));
    assert_ne!(list_digest, index_digest);
    // A name the store does not have: a clear error, nothing sent.
    let out = hoist(&store_dir)
        .args(["push", &format!("{reg}/multi/app:absent")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no image") && stderr.contains("multi/app:absent"),
        "{stderr}"
    );
    // The platform's image, pulled back through the list, is complete.
    run_ok(
        skopeo()
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{list}"))
            .arg(format!("oci:{}:list", dir.path().join("layout").display())),
    );
}
