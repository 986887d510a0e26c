//! The tutorial's two apps (fixtures/tutorial, unchanged) built by hoist from
//! the stand-in base images (fixtures/base-images) through a registry
//! mirror, run under podman and checked as the tutorial checks them: the
//! web app's answers, user, SIGTERM handling, its v2 and the rollback to
//! v1's digest; the configurable app's default and mounted configuration.

use crate::support::process::ProcessDir;
use crate::support::{Container, http_get, podman, podman_load, repo_root, run_ok, tutorial_bases};
use assert_cmd::Command as Cmd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HELLO_V1: &str = "Hello from Kubernetes! 🚀";
const HELLO_V2: &str = "Hello from updated Kubernetes app! 🚀";

fn tutorial_app(name: &str) -> PathBuf {
    repo_root().join("fixtures/tutorial").join(name)
}

/// One store for the module's builds: the base images are pulled and
/// extracted once, and concurrent builds sharing a store is what a store
/// must support anyway. Cache hits between tests change no assertion.
fn store() -> &'static Path {
    static STORE: OnceLock<ProcessDir> = OnceLock::new();
    STORE
        .get_or_init(|| ProcessDir::shared("tutorial-store"))
        .path()
}

/// `hoist build -q` of `ctx` into the module's store, with Docker Hub
/// mirrored by the registry holding the stand-ins; `extra` arguments go
/// before the context. Returns the manifest digest.
fn build(ctx: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let registry = tutorial_bases();
    let out = Cmd::cargo_bin("hoist")
        .unwrap()
        .arg("--store")
        .arg(store())
        .args(["build", "-q", "--registry-mirror"])
        .arg(format!("docker.io={}", registry.addr()))
        .args(extra)
        .arg(ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hoist build {} failed ({}):\n{}",
        ctx.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = stdout.trim().to_owned();
    assert!(
        digest.starts_with("sha256:"),
        "stdout is the digest: {stdout}"
    );
    digest
}

/// An image loaded into podman, removed on drop.
struct Loaded(String);

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "-f", &self.0]).output();
    }
}

/// Builds `ctx` as `hoist-it/NAME:TAG-PID` (unique: podman's image store is
/// shared with every other test run on the machine), exported as a docker
/// archive (in `dir`) and loaded into podman. Returns the digest and the
/// loaded image.
fn build_and_load(
    dir: &Path,
    ctx: &Path,
    name: &str,
    tag: &str,
    env: &[(&str, &str)],
) -> (String, Loaded) {
    let archive = dir.join(format!("{name}-{tag}.tar"));
    let reference = format!("hoist-it/{name}:{tag}-{}", std::process::id());
    let output = format!("type=docker,dest={}", archive.display());
    let started = Instant::now();
    let digest = build(ctx, &["-t", &reference, "--output", &output], env);
    let built = started.elapsed();
    let loaded = Loaded(podman_load(&archive));
    eprintln!(
        "{reference}: built in {:.1} s, loaded into podman in {:.1} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    std::fs::remove_file(&archive).unwrap();
    (digest, loaded)
}

/// Copies the directory tree `from` into the new directory `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A line of /proc/1/status in the container (`Uid:`, `Gid:`...).
fn pid1_status(container: &Container, field: &str) -> String {
    let status = run_ok(podman().args(["exec", &container.name, "cat", "/proc/1/status"]));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/1/status:\n{status}"))
        .to_owned()
}

#[test]
fn web_app_answers_runs_as_1001_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (_, image) = build_and_load(dir.path(), &tutorial_app("web-app"), "web-app", "v1", &[]);
    let app = Container::start(&image.0, 3000, &[]);
    app.wait_for_http("/health");
    assert_eq!(http_get(&app.addr, "/"), Some((200, HELLO_V1.to_owned())));
    assert_eq!(http_get(&app.addr, "/health"), Some((200, "OK".to_owned())));
    // USER appuser: the uid the Dockerfile's adduser -u 1001 gave it.
    let uid = pid1_status(&app, "Uid:");
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["1001"; 4],
        "{uid}"
    );
    // The exec-form CMD makes node itself PID 1 (through the image's
    // entrypoint, which execs it), so SIGTERM reaches its handler.
    let cmdline = run_ok(podman().args(["exec", &app.name, "cat", "/proc/1/cmdline"]));
    assert_eq!(cmdline, "node\0server.js\0");
    let started = Instant::now();
    run_ok(podman().args(["stop", "-t", "10", &app.name]));
    let took = started.elapsed();
    // node exited by itself (0), not by the SIGKILL that follows the
    // 10-second grace period (137).
    let state = run_ok(podman().args([
        "inspect",
        "-f",
        "{{.State.ExitCode}} {{.State.FinishedAt.UnixNano}}",
        &app.name,
    ]));
    let (code, finished) = state.trim().split_once(' ').unwrap();
    assert_eq!(code, "0", "exit code after podman stop ({took:?})");
    assert!(
        took < Duration::from_secs(10),
        "podman stop waited for the grace period"
    );
    // Within 3 seconds of the signal, timed by the container's own clock
    // marks (the log line's and the exit's), not by the podman client's
    // start-up, which a loaded machine slows down. A log line is stamped
    // when conmon reads it from the pipe, which may be just after node
    // exited (both lines then carry one stamp): the difference may be a
    // little below zero.
    let log = run_ok(podman().args(["logs", "--timestamps", &app.name]));
    let line = log
        .lines()
        .find(|l| l.contains("SIGTERM signal received"))
        .unwrap_or_else(|| panic!("no SIGTERM line in the log:\n{log}"));
    let signalled = run_ok(
        std::process::Command::new("date")
            .arg("-d")
            .arg(line.split(' ').next().unwrap())
            .arg("+%s%N"),
    );
    let shutdown = finished.parse::<i64>().unwrap() - signalled.trim().parse::<i64>().unwrap();
    assert!(
        (-1_000_000_000..3_000_000_000).contains(&shutdown),
        "node exited {shutdown} ns after SIGTERM (podman stop took {took:?}):\n{log}"
    );
    assert!(log.contains("HTTP server closed"), "log:\n{log}");
    eprintln!("podman stop took {took:?}, node's shutdown {shutdown} ns");
}

#[test]
fn web_app_v2_answers_the_update_and_v1_sources_rebuild_to_v1s_digest() {
    // useradd writes the day of the build into /etc/shadow unless
    // SOURCE_DATE_EPOCH is set (as BuildKit's and Alpine's adduser would):
    // a fixed epoch keeps the --no-cache comparison true across midnight.
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("web-app");
    copy_tree(&tutorial_app("web-app"), &ctx);
    let v1 = build(&ctx, &[], &epoch);

    // The tutorial's Part 4 edit of server.js.
    let server = ctx.join("server.js");
    let source = std::fs::read_to_string(&server).unwrap();
    let old = format!("res.send('{HELLO_V1}');");
    assert!(source.contains(&old), "server.js changed: {source}");
    std::fs::write(
        &server,
        source.replace(&old, &format!("res.send('{HELLO_V2}');")),
    )
    .unwrap();
    let (v2, image) = build_and_load(dir.path(), &ctx, "web-app", "v2", &epoch);
    assert_ne!(v2, v1, "v2 has its own digest");
    let app = Container::start(&image.0, 3000, &[]);
    app.wait_for_http("/health");
    assert_eq!(http_get(&app.addr, "/"), Some((200, HELLO_V2.to_owned())));

    // Rolling back the sources gives v1 again: from the cache, and rebuilt.
    std::fs::write(&server, &source).unwrap();
    assert_eq!(build(&ctx, &[], &epoch), v1, "cached rebuild of v1");
    assert_eq!(
        build(&ctx, &["--no-cache"], &epoch),
        v1,
        "--no-cache rebuild of v1"
    );
}

#[test]
fn configurable_app_serves_its_default_then_the_mounted_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (_, image) = build_and_load(
        dir.path(),
        &tutorial_app("configurable-app"),
        "configurable-app",
        "v1",
        &[],
    );
    let json = |addr: &str| -> serde_json::Value {
        let (status, body) = http_get(addr, "/").expect("GET / answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };

    // No configuration mounted: the app's own fallback and the image's ENV.
    let app = Container::start(&image.0, 8080, &[]);
    app.wait_for_http("/health");
    assert_eq!(
        json(&app.addr),
        serde_json::json!({"message": "Configuration par défaut", "environment": "production", "version": "1.0.0"})
    );
    assert_eq!(http_get(&app.addr, "/health"), Some((200, "OK".to_owned())));
    assert_eq!(http_get(&app.addr, "/other").map(|(s, _)| s), Some(404));
    drop(app);

    // As the tutorial runs it: its test configuration mounted, two variables
    // overridden. The directory is readable by the image's appuser, as the
    // tutorial's `mkdir -p` makes it.
    let config = dir.path().join("test-config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        "{\"message\": \"Message personnalisé pour le test!\"}\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for path in [dir.path(), config.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let volume = format!("{}:/app/config", config.display());
    let app = Container::start(
        &image.0,
        8080,
        &[
            "-v",
            &volume,
            "-e",
            "APP_ENV=testing",
            "-e",
            "APP_VERSION=1.1.0",
        ],
    );
    app.wait_for_http("/health");
    assert_eq!(
        json(&app.addr),
        serde_json::json!({"message": "Message personnalisé pour le test!", "environment": "testing", "version": "1.1.0"})
    );
    assert_eq!(http_get(&app.addr, "/health"), Some((200, "OK".to_owned())));
}

#[test]
fn stand_ins_take_busybox_user_options_and_run_like_the_real_images() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // BusyBox's semantics, checked inside the build: a group named after
    // the user with its id when -G is absent, a home unless -H, `addgroup
    // USER GROUP` and `adduser USER GROUP` add to a group, no -D is refused.
    std::fs::write(
        ctx.join("Dockerfile"),
        r#"FROM node:14-alpine
RUN addgroup -g 2000 team && adduser -D -u 1500 bob \
 && adduser -D -H -h /srv/carol -s /bin/false -G team -u 1600 carol \
 && addgroup bob team && adduser carol node
RUN test "$(id bob)" = "uid=1500(bob) gid=1500(bob) groups=1500(bob),2000(team)" \
 && test "$(id carol)" = "uid=1600(carol) gid=2000(team) groups=2000(team),1000(node)" \
 && test "$(getent passwd carol)" = "carol:x:1600:2000::/srv/carol:/bin/false" \
 && test -d /home/bob && test ! -e /srv/carol \
 && ! adduser dave 2>/dev/null && ! getent passwd dave
FROM python:3.9-slim
COPY --from=0 /etc/passwd /node-passwd
RUN test "$(python -c 'import sys; print(sys.version_info[0])')" = 3 && grep -q '^bob:' /node-passwd
"#,
    )
    .unwrap();
    build(&ctx, &[], &[]);

    // The node image's entrypoint: options go to node, commands run as given.
    let registry = tutorial_bases();
    let image = format!("{}/library/node:14-alpine", registry.addr());
    run_ok(podman().args(["pull", "-q", "--tls-verify=false", &image]));
    let _pulled = Loaded(image.clone());
    assert_eq!(
        run_ok(crate::support::podman_run().args([&image, "-p", "6 * 7"])),
        "42\n"
    );
    assert_eq!(
        run_ok(crate::support::podman_run().args([&image, "sh", "-c", "echo $0", "as-given"])),
        "as-given\n"
    );
}
