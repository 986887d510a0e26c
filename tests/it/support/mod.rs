//! Real components for the integration tests: a registry:2, a private dockerd,
//! podman, build contexts and the canonical file-tree format (DESIGN.md, "Real
//! components used by tests").
//!
//! Every component is the Debian package's binary. A missing one fails the test
//! with the command that installs it: a test that silently skips checks nothing.
//! Nothing here listens anywhere but 127.0.0.1, and every process started is
//! stopped: by `Drop` for the ones a test owns, and through `PR_SET_PDEATHSIG` when
//! the test process exits for the shared ones (which a `static` never drops).

// Test support is a toolbox: not every test binary configuration uses every tool.
#![allow(dead_code)]

pub mod process;
pub mod proxy;
pub mod rootless;
pub mod token_server;
pub mod tree;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use process::{ProcessDir, spawn_tied, stop};
pub use tree::tree_of_image;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Panics, naming the package to install, unless `binary` exists.
pub fn require(binary: &str, package: &str) -> PathBuf {
    let found = if binary.contains('/') {
        Some(PathBuf::from(binary)).filter(|p| p.exists())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(binary))
                .find(|p| p.is_file())
        })
    };
    found.unwrap_or_else(|| {
        panic!(
            "{binary} not found: install it with `apt-get install -y {package}` \
             (or run `bash scripts/install-test-deps.sh` as root)"
        )
    })
}

/// A free TCP port on 127.0.0.1, as the kernel hands it out. Another process may
/// take it before ours binds it: callers retry when their server fails to start.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The HTTP status of `GET path` on `addr`, or `None` when nothing answers.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr.parse().ok()?, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The status and body of `GET path` on `addr` (HTTP/1.0: the server closes
/// the connection after its answer), or `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr.parse().ok()?, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    // "HTTP/1.1 200 OK"
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Waits until `ready` holds, or panics after `limit` naming `what`. `alive` is
/// checked on every round so a server that died says so at once.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        if let Err(why) = alive() {
            panic!("{what} stopped before it was ready: {why}");
        }
        if Instant::now() >= deadline {
            panic!("{what} was not ready after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test CA (`ca.pem`, `ca.key`) made in `dir`, and a certificate it
/// signed for `subject` (`<leaf>.pem`, `<leaf>.key`), with
/// `subjectAltName` set when given (`IP:127.0.0.1`). Returns the CA's
/// certificate, the leaf's certificate and its key.
pub fn signed_certificate(
    dir: &Path,
    ca_subject: &str,
    leaf: &str,
    subject: &str,
    alt_name: Option<&str>,
) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require("openssl", "openssl");
    let ssl = |args: &[&str]| run_ok(Command::new(&openssl).current_dir(dir).args(args));
    let (cert, key, csr) = (
        format!("{leaf}.pem"),
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
    );
    ssl(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", ca_subject, "-days", "2",
    ]);
    ssl(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
    ]);
    let mut sign = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
    ];
    if let Some(alt) = alt_name {
        std::fs::write(dir.join("san.ext"), format!("subjectAltName={alt}\n")).unwrap();
        sign.extend(["-extfile", "san.ext"]);
    }
    ssl(&sign);
    (dir.join("ca.pem"), dir.join(cert), dir.join(key))
}

/// Starts a server on a free loopback port: `spawn` starts it to listen on
/// `127.0.0.1:PORT`, `ready` says whether that address answers as it should.
/// A port taken between [`free_port`] and the server's bind makes the server
/// exit, so a few ports are tried before giving up. Returns the server and
/// its address.
fn serve_on_free_port(
    what: &str,
    log: &Path,
    mut spawn: impl FnMut(&str) -> Child,
    mut ready: impl FnMut(&str) -> bool,
) -> (Child, String) {
    let mut last_error = String::new();
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = spawn(&addr);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if ready(&addr) {
                return (child, addr);
            }
            if let Err(why) = exited(&mut child, log) {
                last_error = why;
                break;
            }
            if Instant::now() >= deadline {
                stop(&mut child, Duration::from_secs(5));
                panic!("{what} on {addr} was not ready after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{what} did not start: {last_error}")
}

fn exited(child: &mut Child, log: &Path) -> Result<(), String> {
    match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(format!(
            "{status}; its log ({}):\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ------------------------------------------------------------------ registry

/// A `docker-registry serve` (registry:2) on a free 127.0.0.1 port with its own
/// storage directory. Plain HTTP: clients need `--tls-verify=false` (podman,
/// skopeo, buildah); dockerd treats 127.0.0.0/8 as insecure already.
pub struct Registry {
    child: Child,
    addr: String,
    dir: ProcessDir,
}

impl Registry {
    /// Starts a registry owned by the caller, stopped and deleted on drop.
    pub fn start() -> Registry {
        Registry::start_in(ProcessDir::owned("registry"), "", None, true)
    }

    /// [`Registry::start`] with deletes disabled, as registry:2 ships:
    /// `DELETE` of a manifest answers 405.
    pub fn start_without_deletes() -> Registry {
        Registry::start_in(ProcessDir::owned("registry"), "", None, false)
    }

    /// [`Registry::start`] with more top-level configuration (YAML, one key
    /// per line: `auth: {token: {...}}`). The readiness check accepts a 401
    /// from `/v2/`, as a registry with auth answers.
    pub fn start_with(config: &str) -> Registry {
        Registry::start_in(ProcessDir::owned("registry"), config, None, true)
    }

    /// One registry for the whole test run, holding the busybox base images
    /// (`library/busybox:latest`, `bench/busybox:1`; scripts/make-base-images.sh).
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(|| {
            let registry = Registry::start_in(ProcessDir::shared("registry"), "", None, true);
            registry.push_base_images();
            registry
        })
    }

    /// A registry serving HTTPS with the certificate `cert` (PEM, its key
    /// in `key`). Readiness is checked over plain HTTP, which a TLS server
    /// answers with 400.
    pub fn start_tls(cert: &Path, key: &Path) -> Registry {
        Registry::start_in(ProcessDir::owned("registry"), "", Some((cert, key)), true)
    }

    fn start_in(
        dir: ProcessDir,
        extra_config: &str,
        tls: Option<(&Path, &Path)>,
        deletes: bool,
    ) -> Registry {
        let binary = require("docker-registry", "docker-registry");
        let log = dir.path().join("registry.log");
        let (child, addr) = serve_on_free_port(
            "registry",
            &log,
            |addr| {
                let config = dir.path().join("config.yml");
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
                         storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: {deletes}}}}}\n\
                         http: {{addr: {addr}{tls}}}\n{extra_config}\n",
                        dir.path().join("data").display(),
                        tls = tls
                            .map(|(cert, key)| format!(
                                ", tls: {{certificate: {}, key: {}}}",
                                cert.display(),
                                key.display()
                            ))
                            .unwrap_or_default()
                    ),
                )
                .expect("write registry config");
                let mut cmd = Command::new(&binary);
                cmd.arg("serve").arg(&config);
                spawn_tied(cmd, &log)
            },
            |addr| match http_status(addr, "/v2/") {
                Some(200 | 401) => true,
                Some(400) => tls.is_some(),
                _ => false,
            },
        );
        Registry { child, addr, dir }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding blob `digest` (`sha256:HEX`) in the registry's
    /// storage, to damage it on purpose.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Builds (or takes from the fixture cache) the tutorial's stand-in base
    /// images and pushes them here (fixtures/base-images/make-stand-ins.sh).
    pub fn push_stand_ins(&self) {
        require("debootstrap", "debootstrap");
        require("umoci", "umoci");
        require("skopeo", "skopeo");
        let started = Instant::now();
        run_ok(
            Command::new("bash")
                .arg(repo_root().join("fixtures/base-images/make-stand-ins.sh"))
                .arg(self.addr()),
        );
        eprintln!(
            "tutorial stand-in base images ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    /// Builds the busybox base images offline and pushes them here.
    pub fn push_base_images(&self) {
        require("umoci", "umoci");
        require("skopeo", "skopeo");
        run_ok(
            Command::new("bash")
                .arg(repo_root().join("scripts/make-base-images.sh"))
                .arg(self.addr()),
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}

/// [`Registry::shared`], also holding the tutorial's stand-in base images
/// (`library/node:14-alpine`, `library/python:3.9-slim`), pushed once per test
/// run: `hoist build --registry-mirror docker.io=ADDR` builds the tutorial's
/// unchanged Dockerfiles from it. The first build on a machine takes minutes
/// (debootstrap); later ones come from the fixture cache.
pub fn tutorial_bases() -> &'static Registry {
    static PUSHED: OnceLock<()> = OnceLock::new();
    let registry = Registry::shared();
    PUSHED.get_or_init(|| registry.push_stand_ins());
    registry
}

// ------------------------------------------------------------------ dockerd

/// Debian's Docker 20.10 client. The `docker` earlier on PATH is a newer client
/// without buildx, with which `DOCKER_BUILDKIT=1` builds fail.
pub const DOCKER_CLIENT: &str = "/usr/bin/docker";

/// A private dockerd: its own socket, data root and exec root, no iptables and no
/// bridge (builds need `--network=host`, `docker run` `--network host` or `none`).
pub struct Dockerd {
    child: Child,
    socket: PathBuf,
    dir: ProcessDir,
}

impl Dockerd {
    /// Starts a dockerd owned by the caller. `mirror` (a registry address) becomes
    /// `--registry-mirror http://ADDR` and `--insecure-registry ADDR`, so that
    /// `FROM busybox` resolves to that registry's `library/busybox`.
    pub fn start(mirror: Option<&str>) -> Dockerd {
        Dockerd::start_in(ProcessDir::owned("dockerd"), mirror)
    }

    /// One dockerd for the whole test run (it takes about a second to start and
    /// more to stop), mirroring docker.io to [`Registry::shared`].
    pub fn shared() -> &'static Dockerd {
        static SHARED: OnceLock<Dockerd> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mirror = Registry::shared().addr().to_owned();
            Dockerd::start_in(ProcessDir::shared("dockerd"), Some(&mirror))
        })
    }

    fn start_in(dir: ProcessDir, mirror: Option<&str>) -> Dockerd {
        let binary = require("dockerd", "docker.io");
        require(DOCKER_CLIENT, "docker.io");
        let root = dir.path();
        let socket = root.join("docker.sock");
        let mut cmd = Command::new(binary);
        cmd.arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .args(["--iptables=false", "--bridge=none"]);
        if let Some(addr) = mirror {
            cmd.arg("--registry-mirror")
                .arg(format!("http://{addr}"))
                .arg("--insecure-registry")
                .arg(addr);
        }
        let log = root.join("dockerd.log");
        let mut child = spawn_tied(cmd, &log);
        let host = format!("unix://{}", socket.display());
        wait_until(
            "dockerd",
            Duration::from_secs(60),
            || exited(&mut child, &log),
            || {
                Command::new(DOCKER_CLIENT)
                    .args(["-H", &host, "info"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
        Dockerd { child, socket, dir }
    }

    /// `unix:///…/docker.sock`, for `-H` or `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Debian's `/usr/bin/docker` talking to this daemon.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER_CLIENT);
        cmd.arg("-H").arg(self.host());
        cmd
    }

    /// `docker build` with BuildKit and the host network (there is no bridge).
    pub fn buildkit_build(&self) -> Command {
        let mut cmd = self.docker();
        cmd.env("DOCKER_BUILDKIT", "1")
            .args(["build", "--network=host"]);
        cmd
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // dockerd stops its containerd and unmounts its layers on SIGTERM; give it
        // time, or the data root cannot be deleted.
        stop(&mut self.child, Duration::from_secs(30));
    }
}

// ------------------------------------------------------------------ podman

/// podman with the settings these machines need as flags, so a test does not
/// depend on /etc/containers/containers.conf (install-test-deps.sh writes it too,
/// with the default ulimits that only the file can set; see [`podman_run`]).
pub fn podman() -> Command {
    let mut cmd = Command::new(require("podman", "podman"));
    cmd.args(["--cgroup-manager=cgroupfs", "--runtime=runc"]);
    cmd
}

/// `podman run --rm` with no network and the ulimits the container's hard
/// limits allow here; append the image and the command.
pub fn podman_run() -> Command {
    let mut cmd = podman();
    cmd.args([
        "run",
        "--rm",
        "--network=none",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=1000:1000",
    ]);
    cmd
}

/// A detached podman container publishing one port on 127.0.0.1; removed
/// (with `-t 0`) on drop.
pub struct Container {
    pub name: String,
    /// `127.0.0.1:PORT`, the published port.
    pub addr: String,
}

impl Container {
    /// `podman run -d` of `image` with `container_port` published on a free
    /// loopback port and `extra` arguments before the image (`-e`, `-v`...).
    /// Retries on another port when podman cannot bind the chosen one.
    pub fn start(image: &str, container_port: u16, extra: &[&str]) -> Container {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("hoist-it-{}-{n}", std::process::id());
        let mut last = String::new();
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let out = podman()
                .args(["run", "-d", "--name", &name])
                .args([
                    "--ulimit=nofile=1024:1024",
                    "--ulimit=nproc=1000:1000",
                    "-p",
                ])
                .arg(format!("{addr}:{container_port}"))
                .args(extra)
                .arg(image)
                .output()
                .expect("run podman");
            if out.status.success() {
                return Container { name, addr };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            let _ = podman().args(["rm", "-f", "-t", "0", &name]).output();
        }
        panic!("podman run {image} failed:\n{last}")
    }

    /// Waits (up to a minute) until `GET path` answers, failing with the
    /// container's log if it stops first.
    pub fn wait_for_http(&self, path: &str) {
        wait_until(
            &format!("container {}", self.name),
            Duration::from_secs(60),
            || {
                let state =
                    run_ok(podman().args(["inspect", "-f", "{{.State.Running}}", &self.name]));
                if state.trim() == "true" {
                    Ok(())
                } else {
                    Err(format!("it exited; its log:\n{}", self.logs()))
                }
            },
            || http_get(&self.addr, path).is_some(),
        );
    }

    /// Its stdout and stderr so far.
    pub fn logs(&self) -> String {
        let out = podman()
            .args(["logs", &self.name])
            .output()
            .expect("run podman logs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// Loads a docker-archive or oci-archive into podman; returns what it loaded
/// (`localhost/name:tag` or an image ID).
pub fn podman_load(archive: &Path) -> String {
    let out = run_ok(podman().args(["load", "-q", "-i"]).arg(archive));
    // "Loaded image: NAME" or "Loaded image(s): NAME"
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(_, name)| name.trim().to_owned())
        .next_back()
        .unwrap_or_else(|| panic!("podman load printed no image name: {out}"))
}

/// `skopeo`, which needs `--tls-verify=false` (per subcommand) for our registries.
pub fn skopeo() -> Command {
    Command::new(require("skopeo", "skopeo"))
}

/// `buildah`; builds need `bud --isolation chroot` on these machines.
pub fn buildah() -> Command {
    Command::new(require("buildah", "buildah"))
}

/// Unpacks the image tagged `tag` in the OCI layout `layout` into the new
/// directory `rootfs` with `umoci raw unpack` (layers applied in order, whiteouts
/// honoured, owners kept: the tests run as root), ready for [`tree_of_image`].
/// `raw`: plain `umoci unpack` also writes a runtime config and fails on a `USER`
/// name the image has no /etc/passwd entry for, which images may well have.
pub fn unpack_oci_image(layout: &Path, tag: &str, rootfs: &Path) {
    run_ok(
        Command::new(require("umoci", "umoci"))
            .args(["raw", "unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(rootfs),
    );
}

// ------------------------------------------------------------------ hoist

/// `hoist --store STORE`, without the caller's SOURCE_DATE_EPOCH or
/// HOIST_JOB_IMAGE.
pub fn hoist_with_store(store: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("HOIST_JOB_IMAGE")
        .arg("--store")
        .arg(store);
    cmd
}

/// A command's standard output then its standard error, for messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The image config of the first image an OCI layout's index lists.
pub fn config_in_layout(layout: &Path) -> serde_json::Value {
    let read = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let blob = |d: &serde_json::Value| {
        layout
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(layout.join("index.json"));
    let manifest = read(blob(&index["manifests"][0]["digest"]));
    read(blob(&manifest["config"]["digest"]))
}

// ------------------------------------------------------------------ contexts

/// Writes into `dir` what a `FROM scratch` image needs to run commands: Debian's
/// static busybox as `bin/busybox` and one relative symlink `bin/<applet> ->
/// busybox` per applet (`bin/sh`, `bin/cat`, `bin/ls`, ...).
pub fn busybox_context(dir: &Path) {
    let busybox = require("/bin/busybox", "busybox-static");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("create bin/");
    std::fs::copy(&busybox, bin.join("busybox")).expect("copy /bin/busybox");
    let list = run_ok(Command::new(&busybox).arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet))
            .unwrap_or_else(|e| panic!("symlink bin/{applet}: {e}"));
    }
}

/// Copies the dynamically linked `binary` into `dir` at its own path, with
/// the shared libraries `ldd` names at theirs (symlinks followed), so a
/// `FROM scratch` image built from `dir` can run it.
pub fn copy_dynamic_binary(dir: &Path, binary: &str) {
    let ldd = run_ok(Command::new("ldd").arg(binary));
    let mut files = vec![binary.to_string()];
    for line in ldd.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push(p.to_string());
        }
    }
    for file in files {
        let dest = dir.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&file, &dest).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
}

/// The differential cases under fixtures/differential (names starting with `_`
/// are shared material, not cases), sorted.
pub fn differential_cases() -> Vec<PathBuf> {
    let dir = repo_root().join("fixtures/differential");
    crate::common::sorted_dirs(&dir)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect()
}

/// Materialises a differential case's build context into `out`, exactly as the
/// oracle recorder did (scripts/differential-context.sh).
pub fn differential_context(case: &Path, out: &Path) {
    run_ok(
        Command::new("bash")
            .arg(repo_root().join("scripts/differential-context.sh"))
            .arg(case)
            .arg(out),
    );
}

/// The loopback address the ADD <url> cases name in their Dockerfiles, as the
/// oracle recorder served them. Tests serve the same files on a port chosen at
/// run time and substitute it ([`HttpServer::rewrite`]): a fixed port inside the
/// kernel's ephemeral range can be taken by any other socket of the run.
pub const RECORDED_HTTP_ADDR: &str = "127.0.0.1:38080";

/// Serves fixtures/differential/_served on a free loopback port for the whole
/// test run.
pub fn http_fixtures() -> &'static HttpServer {
    static SHARED: OnceLock<HttpServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = ProcessDir::shared("http");
        let log = dir.path().join("http.log");
        let (child, addr) = serve_on_free_port(
            "http fixtures server",
            &log,
            |addr| {
                let port = addr.rsplit(':').next().unwrap_or_default();
                let mut cmd = Command::new(require("python3", "python3"));
                cmd.args(["-m", "http.server", port])
                    .args(["--bind", "127.0.0.1", "--directory"])
                    .arg(repo_root().join("fixtures/differential/_served"));
                spawn_tied(cmd, &log)
            },
            |addr| http_status(addr, "/hello.txt") == Some(200),
        );
        HttpServer { child, dir, addr }
    })
}

/// A `python3 -m http.server`.
pub struct HttpServer {
    child: Child,
    dir: ProcessDir,
    addr: String,
}

impl HttpServer {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding blob `digest` (`sha256:HEX`) in the registry's
    /// storage, to damage it on purpose.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `text` with the recorded server address replaced by this server's.
    pub fn rewrite(&self, text: &str) -> String {
        text.replace(RECORDED_HTTP_ADDR, &self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}

/// Copies the busybox base image from [`Registry::shared`] to
/// `dest/library/busybox:latest` with skopeo, logging in with `creds`
/// (`user:password`) when given.
pub fn copy_busybox_to(dest: &str, creds: Option<&str>) {
    let source = Registry::shared();
    let mut cmd = skopeo();
    cmd.args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]);
    if let Some(creds) = creds {
        cmd.arg("--dest-creds").arg(creds);
    }
    // No credentials of the machine's user may leak into the copy.
    cmd.env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json");
    cmd.arg(format!("docker://{}/library/busybox:latest", source.addr()))
        .arg(format!("docker://{dest}/library/busybox:latest"));
    run_ok(&mut cmd);
}

/// Runs hoist with `args` under `/usr/bin/time`, asserts it succeeded,
/// prints `what` with the time and peak RSS, asserts the peak stays under
/// `limit_mib`; returns hoist's output.
pub fn hoist_within_memory(
    args: &[&std::ffi::OsStr],
    what: &str,
    limit_mib: u64,
) -> std::process::Output {
    let time = require("/usr/bin/time", "time");
    let started = Instant::now();
    let out = Command::new(time)
        .args(["-f", "maxrss-kb=%M"])
        .arg(assert_cmd::cargo::cargo_bin("hoist"))
        .args(args)
        .output()
        .expect("run hoist under /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rss_kb: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss-kb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"));
    println!(
        "{what}: {:.1}s, peak RSS {} MiB",
        started.elapsed().as_secs_f64(),
        rss_kb / 1024
    );
    assert!(
        rss_kb < limit_mib * 1024,
        "{what}: peak RSS {} MiB, the limit is {limit_mib} MiB",
        rss_kb / 1024
    );
    out
}
