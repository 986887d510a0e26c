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

// ------------------------------------------------------------ shared cache

/// A two-stage app: dependencies, then the app, then a final stage that
/// takes the result. `deps` and `app` are its two source files.
fn app_context(dir: &Path, base: &str, deps: &str, app: &str) -> std::path::PathBuf {
    let ctx = dir.join("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base} AS build\n\
             COPY deps.txt /src/\n\
             RUN cat /src/deps.txt > /deps.out && echo deps installed >> /deps.out\n\
             COPY app.txt /src/\n\
             RUN cat /deps.out /src/app.txt > /app.out\n\
             RUN true\n\
             FROM {base}\n\
             COPY --from=build /app.out /app/app.out\n\
             WORKDIR /app\n\
             CMD [\"cat\", \"/app/app.out\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("deps.txt"), deps).unwrap();
    std::fs::write(ctx.join("app.txt"), app).unwrap();
    ctx
}

/// A build with JSON progress: the digest, and each step's instruction
/// with where its result came from (`None`: it was built).
struct Built {
    digest: String,
    steps: Vec<(String, Option<String>)>,
    stderr: String,
}

fn build_json(store: &Path, ctx: &Path, args: &[&str]) -> Built {
    let out = hoist(store)
        .args(["build", "--progress", "json"])
        .args(args)
        .arg(ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let mut steps: Vec<(String, Option<String>)> = Vec::new();
    for line in stderr.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match event["type"].as_str() {
            Some("step") => steps.push((event["instruction"].as_str().unwrap().to_owned(), None)),
            Some("done") => {
                steps.last_mut().unwrap().1 = event["cache"].as_str().map(str::to_owned);
            }
            _ => {}
        }
    }
    Built {
        digest: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        steps,
        stderr,
    }
}

impl Built {
    /// Where each step that is not a FROM or a metadata-only step came
    /// from, in order.
    fn sources(&self) -> Vec<Option<&str>> {
        self.steps
            .iter()
            .filter(|(text, _)| {
                ["COPY", "RUN", "WORKDIR"]
                    .iter()
                    .any(|k| text.starts_with(k))
            })
            .map(|(_, source)| source.as_deref())
            .collect()
    }

    fn warnings(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == "warning")
            .collect()
    }
}

fn tags_of(registry: &str, repository: &str) -> Vec<String> {
    let raw = run_ok(
        skopeo()
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{registry}/{repository}")),
    );
    let value: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let mut tags: Vec<String> = value["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

#[test]
fn a_fresh_store_builds_an_unchanged_app_from_a_registry_cache_running_and_moving_nothing() {
    let registry = Registry::start();
    registry.push_base_images();
    let proxy = Proxy::start(registry.addr());
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/library/busybox", proxy.addr());
    let ctx = app_context(dir.path(), &base, "left-pad 1.3\n", "console.log('v1')\n");
    let cache = format!("{}/ci/cache", proxy.addr());
    let image = format!("{}/team/app:v1", proxy.addr());

    // Runner A: a cold build, exported with every stage's steps.
    let a = build_json(
        &dir.path().join("a"),
        &ctx,
        &[
            "--push",
            "-t",
            &image,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
        ],
    );
    assert_eq!(a.sources(), [None; 7], "{:?}", a.steps);
    let entries = tags_of(registry.addr(), "ci/cache");
    assert_eq!(entries.len(), 7, "every step but FROM and CMD: {entries:?}");
    assert!(entries.iter().all(|t| t.starts_with("hoist-cache-")));

    // Runner B: an empty store. Every step comes from the registry, no
    // RUN runs, and the push mounts or finds every layer: no layer byte
    // is downloaded or uploaded.
    proxy.clear_log();
    let b = build_json(
        &dir.path().join("b"),
        &ctx,
        &[
            "--push",
            "-t",
            &image,
            "--cache-from",
            &format!("type=registry,ref={cache}"),
        ],
    );
    assert_eq!(b.digest, a.digest);
    assert_eq!(b.sources(), [Some("registry"); 7], "{:?}", b.steps);
    assert!(b.warnings().is_empty(), "{:?}", b.warnings());
    let layer_gets = proxy
        .log()
        .iter()
        .filter(|e| e.method == "GET" && e.target.contains("/blobs/"))
        .count();
    assert_eq!(layer_gets, 1, "only the base's config: {}", proxy.summary());
    assert_eq!(
        proxy.count("PATCH", "/blobs/") + proxy.count("PUT", "/blobs/"),
        0,
        "{}",
        proxy.summary()
    );
    // One small request per step lookup, none per layer.
    assert_eq!(proxy.count("GET", "/v2/ci/cache/manifests/hoist-cache-"), 7);
    let summary = b
        .stderr
        .lines()
        .find(|l| l.contains("\"summary\""))
        .unwrap();
    let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(summary["cached_from"]["registry"], 7);
    assert_eq!(summary["bytes_downloaded"], 0);
    assert_eq!(summary["bytes_uploaded"], 0);

    // Runner C: the app's source changed. The dependency steps still come
    // from the registry; the steps after the change run (reading, so
    // fetching, the layers they stand on).
    let changed = app_context(
        &dir.path().join("changed"),
        &base,
        "left-pad 1.3\n",
        "console.log('v2')\n",
    );
    let c = build_json(
        &dir.path().join("c"),
        &changed,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert_eq!(
        c.sources(),
        [
            Some("registry"),
            Some("registry"),
            None,
            None,
            None,
            None,
            None
        ],
        "{:?}",
        c.steps
    );
    // The same image as a build with no cache at all.
    let plain = build_json(&dir.path().join("plain"), &changed, &[]);
    assert_eq!(c.digest, plain.digest);
}

#[test]
fn concurrent_exports_to_one_cache_lose_no_entry() {
    let registry = Registry::start();
    registry.push_base_images();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/library/busybox", registry.addr());
    let cache = format!("{}/ci/cache", registry.addr());
    let to = format!("type=registry,ref={cache},mode=max");
    // Four runners, four versions of the app, exporting at once.
    let contexts: Vec<_> = (0..4)
        .map(|i| {
            app_context(
                &dir.path().join(format!("ctx{i}")),
                &base,
                &format!("deps {i}\n"),
                &format!("app {i}\n"),
            )
        })
        .collect();
    for (i, ctx) in contexts.iter().enumerate() {
        let store = dir.path().join(format!("runner{i}"));
        run_ok(hoist(&store).args(["build", "-q"]).arg(ctx));
    }
    // The builds are done (and their layers stored): now only the
    // exports run, all four at once.
    let runners: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            hoist(&dir.path().join(format!("runner{i}")))
                .args(["build", "-q", "--cache-to", &to])
                .arg(ctx)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for runner in runners {
        let out = runner.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("warning"),
            "{stderr}"
        );
    }
    assert_eq!(tags_of(registry.addr(), "ci/cache").len(), 4 * 7);
    // Each version builds whole from the cache on an empty store.
    for (i, ctx) in contexts.iter().enumerate() {
        let fresh = build_json(
            &dir.path().join(format!("fresh{i}")),
            ctx,
            &["--cache-from", &format!("type=registry,ref={cache}")],
        );
        assert_eq!(
            fresh.sources(),
            [Some("registry"); 7],
            "{i}: {:?}",
            fresh.steps
        );
    }
}

#[test]
fn a_cache_directory_serves_a_fresh_store_and_mode_min_exports_only_the_images_steps() {
    let registry = Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/library/busybox", registry.addr());
    let ctx = app_context(dir.path(), &base, "deps\n", "app\n");
    let cache = dir.path().join("cache");
    let a = build_json(
        &dir.path().join("a"),
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={}", cache.display()),
        ],
    );
    // mode=min (the default): the final stage's steps only.
    let entries = std::fs::read_dir(cache.join("entries")).unwrap().count();
    assert_eq!(entries, 2, "COPY --from and WORKDIR");
    let b = build_json(
        &dir.path().join("b"),
        &ctx,
        &[
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
        ],
    );
    assert_eq!(b.digest, a.digest);
    assert_eq!(
        b.sources(),
        [
            None,
            None,
            None,
            None,
            None,
            Some("directory"),
            Some("directory")
        ],
        "{:?}",
        b.steps
    );
    // The build stage's steps are in a mode=max export.
    build_json(
        &dir.path().join("a"),
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
        ],
    );
    assert_eq!(std::fs::read_dir(cache.join("entries")).unwrap().count(), 7);
    // $HOIST_CACHE_FROM stands for the flag.
    let c = {
        let out = hoist(&dir.path().join("c"))
            .args(["build", "--progress", "json"])
            .env(
                "HOIST_CACHE_FROM",
                format!("type=local,src={}", cache.display()),
            )
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(c.matches("\"cache\":\"directory\"").count(), 7, "{c}");

    // A config file's `cache` goes both ways: one build writes, a fresh
    // store reads.
    let shared = dir.path().join("shared");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "cache = \"type=local,dest={},mode=max\"\n",
            shared.display()
        ),
    )
    .unwrap();
    let with_config = |store: &str| {
        let out = hoist(&dir.path().join(store))
            .args(["build", "--progress", "json"])
            .env("HOIST_CONFIG", &config)
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    with_config("d");
    assert_eq!(
        std::fs::read_dir(shared.join("entries")).unwrap().count(),
        7
    );
    let e = with_config("e");
    assert_eq!(e.matches("\"cache\":\"directory\"").count(), 7, "{e}");
}

#[test]
fn unusable_caches_warn_and_the_build_is_the_same() {
    let registry = Registry::start();
    registry.push_base_images();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/library/busybox", registry.addr());
    let ctx = app_context(dir.path(), &base, "deps\n", "app\n");
    let plain = build_json(&dir.path().join("plain"), &ctx, &[]);

    // Nothing listens there: one warning for each direction, in bounded
    // time, and the build goes on.
    let started = std::time::Instant::now();
    let unreachable = "type=registry,ref=127.0.0.1:1/ci/cache";
    let nowhere = build_json(
        &dir.path().join("nowhere"),
        &ctx,
        &["--cache-from", unreachable, "--cache-to", unreachable],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(nowhere.digest, plain.digest);
    let warnings = nowhere.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect to registry 127.0.0.1:1")
    );
    assert!(
        warnings[1]["message"]
            .as_str()
            .unwrap()
            .contains("were not written to the registry cache 127.0.0.1:1/ci/cache")
    );

    // An entry written by a newer hoist is a miss with a warning.
    let cache = format!("{}/ci/cache", registry.addr());
    let one = dir.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::write(
        one.join("Dockerfile"),
        format!("FROM {base}\nCOPY app.txt /app/\n"),
    )
    .unwrap();
    std::fs::write(one.join("app.txt"), "one step\n").unwrap();
    let written = build_json(
        &dir.path().join("one-a"),
        &one,
        &["--cache-to", &format!("type=registry,ref={cache}")],
    );
    let tags = tags_of(registry.addr(), "ci/cache");
    assert_eq!(tags.len(), 1, "{tags:?}");
    let raw = manifest_of(&cache, &tags[0]);
    let newer = raw.replace(
        "\"io.hoist.cache.version\":\"1\"",
        "\"io.hoist.cache.version\":\"9\"",
    );
    assert_ne!(newer, raw);
    put_manifest(registry.addr(), "ci/cache", &tags[0], &newer);
    let missed = build_json(
        &dir.path().join("one-b"),
        &one,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert_eq!(missed.digest, written.digest);
    assert_eq!(missed.sources(), [None], "{:?}", missed.steps);
    let warnings = missed.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("written by a newer hoist (cache format 9"),
        "{warnings:?}"
    );

    // A layer the registry serves cut short, or damaged, is refused as it
    // streams, and the build starts again without the cache.
    build_json(
        &dir.path().join("a"),
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    let layers: Vec<String> = tags_of(registry.addr(), "ci/cache")
        .iter()
        .filter_map(|tag| {
            let manifest: serde_json::Value =
                serde_json::from_str(&manifest_of(&cache, tag)).unwrap();
            Some(manifest["layers"].get(0)?["digest"].as_str()?.to_owned())
        })
        .collect();
    assert!(layers.len() >= 5, "{layers:?}");
    let changed = app_context(
        &dir.path().join("changed"),
        &base,
        "deps\n",
        "app, changed\n",
    );
    let clean = build_json(&dir.path().join("clean"), &changed, &[]);
    let originals: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| std::fs::read(registry.blob_file(l)).unwrap())
        .collect();
    let cut = |bytes: &[u8]| bytes[..bytes.len() / 2].to_vec();
    let garbage = |bytes: &[u8]| vec![0x1f; bytes.len()];
    for damage in [&cut as &dyn Fn(&[u8]) -> Vec<u8>, &garbage] {
        for (layer, bytes) in layers.iter().zip(&originals) {
            std::fs::write(registry.blob_file(layer), damage(bytes)).unwrap();
        }
        let store = tempfile::tempdir().unwrap();
        let rebuilt = build_json(
            store.path(),
            &changed,
            &["--cache-from", &format!("type=registry,ref={cache}")],
        );
        assert_eq!(rebuilt.digest, clean.digest);
        let warnings = rebuilt.warnings();
        assert!(
            warnings.iter().any(|w| w["message"]
                .as_str()
                .unwrap()
                .contains("building again without --cache-from")),
            "{warnings:?}"
        );
    }
}

/// The raw manifest `cache:tag`.
fn manifest_of(cache: &str, tag: &str) -> String {
    run_ok(
        skopeo()
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{cache}:{tag}")),
    )
}

/// PUTs `manifest` (OCI) as `repository:tag`.
fn put_manifest(registry: &str, repository: &str, tag: &str, manifest: &str) {
    let status = run_ok(
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "-H",
            ])
            .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
            .arg("--data-binary")
            .arg(manifest)
            .arg(format!("http://{registry}/v2/{repository}/manifests/{tag}")),
    );
    assert_eq!(status.trim(), "201");
}

#[test]
fn cache_prune_deletes_old_entries_through_the_api_and_names_the_setting_when_deletes_are_off() {
    let registry = Registry::start();
    registry.push_base_images();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/library/busybox", registry.addr());
    let ctx = app_context(dir.path(), &base, "deps\n", "app\n");
    let cache = format!("{}/ci/cache", registry.addr());
    build_json(
        &dir.path().join("a"),
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    // An image in the same repository is not an entry: left alone.
    run_ok(hoist(&dir.path().join("a")).args([
        "push",
        "-q",
        &format!("{}/library/busybox:latest", registry.addr()),
        &format!("{cache}:not-an-entry"),
    ]));
    assert_eq!(tags_of(registry.addr(), "ci/cache").len(), 8);
    let prune = |keep_for: &str| {
        run_ok(hoist(&dir.path().join("a")).args([
            "cache",
            "prune",
            "--ref",
            &cache,
            "--keep-for",
            keep_for,
        ]))
    };
    assert_eq!(
        prune("14d").trim(),
        format!("registry cache {cache}: 0 entries deleted, 7 kept, 1 other tags left alone")
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        prune("0s").trim(),
        format!("registry cache {cache}: 7 entries deleted, 0 kept, 1 other tags left alone")
    );
    assert_eq!(tags_of(registry.addr(), "ci/cache"), ["not-an-entry"]);
    let after = build_json(
        &dir.path().join("b"),
        &ctx,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert_eq!(after.sources(), [None; 7]);

    // registry:2 as it ships refuses deletes: the prune fails and says
    // what to change.
    let strict = Registry::start_without_deletes();
    strict.push_base_images();
    let cache = format!("{}/ci/cache", strict.addr());
    let ctx = app_context(
        &dir.path().join("strict"),
        &format!("{}/library/busybox", strict.addr()),
        "deps\n",
        "app\n",
    );
    build_json(
        &dir.path().join("c"),
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache}")],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let refused = hoist(&dir.path().join("c"))
        .args(["cache", "prune", "--ref", &cache, "--keep-for", "0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not allow deletes (405)"), "{stderr}");
    assert!(
        stderr.contains("REGISTRY_STORAGE_DELETE_ENABLED=true"),
        "{stderr}"
    );
}

#[test]
fn an_export_killed_mid_way_leaves_no_half_entry_and_the_next_one_completes() {
    let registry = Registry::start();
    registry.push_base_images();
    let proxy = Proxy::start(registry.addr());
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/library/busybox", registry.addr());
    let ctx = dir.path().join("big");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY small.txt /\nRUN seq 1 2000000 > /big\nCOPY small.txt /again/\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("small.txt"), "small\n").unwrap();
    let store = dir.path().join("a");
    run_ok(hoist(&store).args(["build", "-q"]).arg(&ctx));
    // Uploads crawl: the export is killed while it sends the big layer.
    proxy.rule(crate::support::proxy::Rule::always(
        "PUT",
        "/blobs/uploads/",
        crate::support::proxy::Action::Delay { millis: 3000 },
    ));
    let cache = format!("{}/ci/cache", proxy.addr());
    let to = format!("type=registry,ref={cache},mode=max");
    let mut export = hoist(&store)
        .args(["build", "-q", "--cache-to", &to])
        .arg(&ctx)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while proxy.count("PUT", "/blobs/uploads/") == 0
        && started.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    export.kill().unwrap();
    export.wait().unwrap();
    // No entry names a layer the registry lacks: a reader finds whole
    // entries or none, and builds right either way.
    let reader = build_json(
        &dir.path().join("reader"),
        &ctx,
        &[
            "--cache-from",
            &format!("type=registry,ref={}/ci/cache", registry.addr()),
        ],
    );
    let plain = build_json(&dir.path().join("plain"), &ctx, &[]);
    assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());
    assert_eq!(reader.digest, plain.digest);
    // The next export completes, and then every step is in the cache.
    proxy.clear_rules();
    run_ok(
        hoist(&store)
            .args(["build", "-q", "--cache-to", &to])
            .arg(&ctx),
    );
    let after = build_json(
        &dir.path().join("after"),
        &ctx,
        &[
            "--cache-from",
            &format!("type=registry,ref={}/ci/cache", registry.addr()),
        ],
    );
    assert_eq!(after.sources(), [Some("registry"); 3], "{:?}", after.steps);
    assert_eq!(after.digest, plain.digest);
}

#[test]
fn secrets_never_reach_a_shared_cache() {
    let registry = Registry::start();
    registry.push_base_images();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}/library/busybox\n\
             RUN --mount=type=secret,id=token md5sum /run/secrets/token | cut -c1-8 > /token-sum\n",
            registry.addr()
        ),
    )
    .unwrap();
    let secret = "ghp_sharedCacheSecret4711";
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, secret).unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = format!("{}/ci/cache", registry.addr());
    let exported = build_json(
        &dir.path().join("a"),
        &ctx,
        &[
            "--secret",
            &format!("id=token,src={}", secret_file.display()),
            "--cache-to",
            &format!("type=registry,ref={cache}"),
            "--cache-to",
            &format!("type=local,dest={}", cache_dir.display()),
        ],
    );
    assert!(!exported.stderr.contains(secret));
    let tags = tags_of(registry.addr(), "ci/cache");
    assert_eq!(tags.len(), 1);
    for root in [registry.storage(), cache_dir] {
        let hits = Command::new("grep")
            .args(["-r", "-l", "-a", secret])
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            hits.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&hits.stdout)
        );
        // Nor gzip'd in a layer.
        let zhits = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find {} -type f -size +20c | while read f; do zcat \"$f\" 2>/dev/null | grep -a -l -F '{secret}' && echo \"$f\"; done",
                root.display()
            ))
            .output()
            .unwrap();
        assert!(
            zhits.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&zhits.stdout)
        );
    }
    // The step still comes from the cache, keyed without the secret.
    let again = build_json(
        &dir.path().join("b"),
        &ctx,
        &[
            "--secret",
            &format!("id=token,src={}", secret_file.display()),
            "--cache-from",
            &format!("type=registry,ref={cache}"),
        ],
    );
    assert_eq!(again.sources(), [Some("registry")]);
    assert_eq!(again.digest, exported.digest);
}
