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
