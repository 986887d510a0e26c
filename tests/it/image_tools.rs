//! Exports checked by the tools people load them with: skopeo reads the
//! OCI archive and the docker archive, copies the docker archive into an
//! OCI layout (verifying every digest on the way), and umoci unpacks the
//! layouts into a runtime bundle whose file must hold what hoist put in
//! the layer. A missing tool fails the test with the command that
//! installs it: these tests never skip.

use std::path::Path;
use std::process::Command;

use hoist_oci::Digest;
use hoist_oci::image::{
    BlobSource, Descriptor, Document, ExportImage, ImageConfig, Manifest, MemoryBlobs, RootFs,
    RunConfig, write_docker_archive, write_oci_archive, write_oci_layout,
};
use hoist_oci::layer::{Entry, LayerDigests, LayerOptions, write_layer, write_tar};
use hoist_oci::media_type;
use serde_json::Value;

const CONTENT: &str = "hello from a hoist layer\n";

/// A scratch image whose one layer holds `srv/hello.txt`.
fn scratch_image() -> (MemoryBlobs, Descriptor, LayerDigests) {
    let mut blobs = MemoryBlobs::new();
    let entries = [
        Entry::dir("srv").with_mode(0o755),
        Entry::file("srv/hello.txt", CONTENT.as_bytes().to_vec()),
    ];
    let (layer, bytes) = write_layer(&entries, &LayerOptions::default(), Vec::new()).unwrap();
    blobs.insert(bytes);
    let config = ImageConfig {
        created: Some("1970-01-01T00:00:00Z".into()),
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(RunConfig {
            cmd: Some(vec!["/srv/hello.txt".into()]),
            working_dir: "/srv".into(),
            ..RunConfig::default()
        }),
        rootfs: RootFs {
            diff_ids: vec![layer.diff_id],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    }
    .encode();
    blobs.insert(config.bytes.clone());
    let manifest = Manifest::new(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(
            media_type::OCI_LAYER_TAR_GZIP,
            layer.digest,
            layer.size,
        )],
    )
    .encode();
    blobs.insert(manifest.bytes.clone());
    (blobs, manifest.descriptor(media_type::OCI_MANIFEST), layer)
}

const ZSTD_CONTENT: &str = "hello from a zstd layer\n";

/// Adds an image whose one layer is zstd-compressed and holds
/// `srv/zstd.txt` to `blobs`; returns its manifest's descriptor.
fn add_zstd_image(blobs: &mut MemoryBlobs) -> Descriptor {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};
    let entries = [
        Entry::dir("srv").with_mode(0o755),
        Entry::file("srv/zstd.txt", ZSTD_CONTENT.as_bytes().to_vec()),
    ];
    let tar = write_tar(&entries, Default::default(), Vec::new()).unwrap();
    let compressed = compress_to_vec(&tar[..], CompressionLevel::Fastest);
    let size = compressed.len() as u64;
    let layer = blobs.insert(compressed);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: vec![Digest::of(&tar)],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    }
    .encode();
    blobs.insert(config.bytes.clone());
    let manifest = Manifest::new(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(media_type::OCI_LAYER_TAR_ZSTD, layer, size)],
    )
    .encode();
    blobs.insert(manifest.bytes.clone());
    manifest.descriptor(media_type::OCI_MANIFEST)
}

/// Runs `program` with `args`, failing loudly if it is missing or fails;
/// returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            // Debian's package for each tool (docker: `docker.io`).
            let package = match program {
                "docker" | "dockerd" | "/usr/bin/docker" => "docker.io",
                other => other,
            };
            panic!("cannot run `{program}` ({e}); install it with `apt-get install -y {package}`")
        });
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Unpacks `layout:tag` with umoci and returns the file's content.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> String {
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{tag}", path(layout)),
            path(bundle),
        ],
    );
    std::fs::read_to_string(bundle.join("rootfs/srv/hello.txt")).unwrap()
}

#[test]
fn skopeo_reads_the_oci_archive() {
    let (blobs, manifest, layer) = scratch_image();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let image = ExportImage {
        manifest: manifest.clone(),
        names: vec!["hoist-test:1.0".into()],
    };
    let file = std::fs::File::create(&archive).unwrap();
    write_oci_archive(file, &[image], &blobs).unwrap();

    let inspect: Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", path(&archive))],
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], manifest.digest.to_string());
    assert_eq!(
        inspect["Layers"],
        serde_json::json!([layer.digest.to_string()])
    );
    assert_eq!(
        (&inspect["Os"], &inspect["Architecture"]),
        (&"linux".into(), &"amd64".into())
    );

    // The raw manifest skopeo serves is hoist's, byte for byte.
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}", path(&archive)),
        ],
    );
    assert_eq!(
        raw.as_bytes(),
        Manifest::from_json(raw.as_bytes()).unwrap().encode().bytes
    );
}

#[test]
fn skopeo_reads_and_copies_the_docker_archive() {
    let (blobs, manifest, layer) = scratch_image();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let image = ExportImage {
        manifest,
        names: vec!["localhost/hoist-test:1.0".into()],
    };
    let file = std::fs::File::create(&archive).unwrap();
    write_docker_archive(file, &[image], &blobs).unwrap();

    let source = format!("docker-archive:{}", path(&archive));
    let inspect: Value = serde_json::from_str(&run("skopeo", &["inspect", &source])).unwrap();
    assert_eq!(
        (&inspect["Os"], &inspect["Architecture"]),
        (&"linux".into(), &"amd64".into())
    );
    assert_eq!(
        inspect["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspect}"
    );

    // The docker-archive reader checks each layer against the config's
    // diffIDs; copying proves the compressed layers read back correctly.
    let layout = dir.path().join("copied");
    run(
        "skopeo",
        &["copy", &source, &format!("oci:{}:copied", path(&layout))],
    );
    assert_eq!(
        umoci_unpack(&layout, "copied", &dir.path().join("bundle")),
        CONTENT
    );
    // The same tar is an OCI archive too.
    let oci: Value = serde_json::from_str(&run(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", path(&archive))],
    ))
    .unwrap();
    assert_eq!(oci["Layers"], serde_json::json!([layer.digest.to_string()]));
}

#[test]
fn umoci_unpacks_the_oci_layout() {
    let (blobs, manifest, _) = scratch_image();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = ExportImage {
        manifest,
        names: vec!["hoist-test:v1".into()],
    };
    write_oci_layout(&layout, &[image], &blobs).unwrap();
    assert_eq!(
        umoci_unpack(&layout, "v1", &dir.path().join("bundle")),
        CONTENT
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bundle/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/srv/hello.txt"])
    );
    assert_eq!(config["process"]["cwd"], "/srv");

    // The image-spec's own validator agrees (it reads layouts, not tars).
    let out = run(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            "--ref",
            "name=v1",
            path(&layout),
        ],
    );
    assert!(out.contains("Validation succeeded"), "{out}");
}

/// The regular file `path` inside the tar `bytes`.
fn file_in_tar(bytes: &[u8], path: &str) -> String {
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(path) {
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
            return content;
        }
    }
    panic!("`{path}` is not in the tar");
}

#[test]
fn podman_loads_the_docker_archive() {
    let (blobs, manifest, _) = scratch_image();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let config_digest = {
        let raw = std::io::read_to_string(blobs.open(&manifest.digest).unwrap()).unwrap();
        Manifest::from_json(raw.as_bytes()).unwrap().config.digest
    };
    let image = ExportImage {
        manifest,
        names: vec!["hoist-test:1.0".into()],
    };
    let file = std::fs::File::create(&archive).unwrap();
    write_docker_archive(file, &[image], &blobs).unwrap();

    // A private store, so the test neither sees nor touches anyone's images.
    let root = dir.path().join("root");
    let runroot = dir.path().join("runroot");
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            path(&root),
            "--runroot",
            path(&runroot),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run("podman", &all)
    };
    let loaded = podman(&["load", "--input", path(&archive)]);
    assert!(loaded.contains("localhost/hoist-test:1.0"), "{loaded}");
    let id = podman(&["image", "inspect", "--format", "{{.Id}}", "hoist-test:1.0"]);
    assert_eq!(id.trim(), config_digest.hex());
    let container = podman(&["create", "hoist-test:1.0"]);
    let copied = Command::new("podman")
        .args(["--root", path(&root), "--runroot", path(&runroot)])
        .args(["--storage-driver", "vfs", "cp"])
        .arg(format!("{}:/srv/hello.txt", container.trim()))
        .arg("-")
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(file_in_tar(&copied.stdout, "hello.txt"), CONTENT);
    podman(&["rm", container.trim()]);
}

/// A Docker engine of its own (Debian's `dockerd`, on a private socket and
/// data root, no networking), stopped when dropped.
struct Dockerd {
    child: std::process::Child,
    socket: String,
    log: std::path::PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        let socket = format!("unix://{}", path(&dir.join("d.sock")));
        let log = dir.join("dockerd.log");
        let child = Command::new("dockerd")
            .args(["--host", &socket])
            .args(["--data-root", path(&dir.join("data"))])
            .args(["--exec-root", path(&dir.join("exec"))])
            .args(["--pidfile", path(&dir.join("d.pid"))])
            .args(["--iptables=false", "--bridge=none", "--storage-driver=vfs"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `dockerd` ({e}); install it with `apt-get install -y docker.io`")
            });
        let mut dockerd = Dockerd { child, socket, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = dockerd.child.try_wait().unwrap() {
                panic!("dockerd exited ({status}):\n{}", dockerd.log_text());
            }
            if dockerd.docker_output(&["version"]).status.success() {
                return dockerd;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not answer within 60 s:\n{}",
                dockerd.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Debian's client (`/usr/bin/docker`), which matches the engine; a
    /// newer client elsewhere on PATH may not.
    fn docker_output(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/docker")
            .args(["--host", &self.socket])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `/usr/bin/docker` ({e}); install it with `apt-get install -y docker.io`")
            })
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        let output = self.docker_output(args);
        assert!(
            output.status.success(),
            "`docker {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop the containerd it started; SIGKILL
        // only if it has not stopped within the deadline.
        let pid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn docker_loads_gzip_and_zstd_images_from_one_archive() {
    let (mut blobs, manifest, _) = scratch_image();
    let zstd = add_zstd_image(&mut blobs);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let config_digest = {
        let raw = std::io::read_to_string(blobs.open(&manifest.digest).unwrap()).unwrap();
        Manifest::from_json(raw.as_bytes()).unwrap().config.digest
    };
    let images = [
        ExportImage {
            manifest,
            names: vec![
                "hoist-test:1.0".into(),
                "localhost:5000/team/hoist-test".into(),
            ],
        },
        ExportImage {
            manifest: zstd,
            names: vec!["hoist-test:zstd".into()],
        },
    ];
    write_docker_archive(std::fs::File::create(&archive).unwrap(), &images, &blobs).unwrap();

    let dockerd = Dockerd::start(dir.path());
    let loaded = dockerd.docker(&["load", "--input", path(&archive)]);
    let loaded = String::from_utf8_lossy(&loaded.stdout);
    for name in [
        "hoist-test:1.0",
        "localhost:5000/team/hoist-test:latest",
        "hoist-test:zstd",
    ] {
        assert!(
            loaded.contains(&format!("Loaded image: {name}\n")),
            "{name}: {loaded}"
        );
    }
    // Docker's image ID is the config digest: the config went in unchanged.
    let inspect = dockerd.docker(&["image", "inspect", "hoist-test:1.0"]);
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect[0]["Id"], config_digest.to_string());
    assert_eq!(inspect[0]["Config"]["WorkingDir"], "/srv");

    for (image, file, content) in [
        ("hoist-test:1.0", "hello.txt", CONTENT),
        ("hoist-test:zstd", "zstd.txt", ZSTD_CONTENT),
    ] {
        let container = dockerd.docker(&["create", image, "/none"]);
        let container = String::from_utf8(container.stdout).unwrap();
        let copied = dockerd.docker(&["cp", &format!("{}:/srv/{file}", container.trim()), "-"]);
        assert_eq!(file_in_tar(&copied.stdout, file), content, "{image}");
        dockerd.docker(&["rm", container.trim()]);
    }
}
