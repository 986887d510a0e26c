//! What a Docker user types: `hoist version` and `--version`, `-o`, a
//! Containerfile, `hoist run`, build args without a name, long
//! instructions in errors, and a dumb terminal or a terminal on stdout.

use crate::support::process::ProcessDir;
use crate::support::{busybox_context, repo_root, require, run_ok};
use crate::support::{hoist_with_store as hoist, output_text as text};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// A context of one file and `dockerfile` under `name`.
fn context(dir: &Path, name: &str, dockerfile: &str) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(ctx.join(name), dockerfile).unwrap();
    ctx
}

/// `command` under a pseudo-terminal (util-linux `script`), with `env`;
/// what the terminal showed.
fn on_a_terminal(command: &str, env: &[(&str, &str)]) -> (bool, String) {
    let script = require("script", "bsdutils");
    let mut cmd = Command::new(script);
    cmd.args(["-q", "-e", "-c", command, "/dev/null"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let dir = ProcessDir::owned("ux-version");
    let out = run_ok(hoist(dir.path()).args(["version", "--format", "json"]));
    let value: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
    // The commit the binary was built from: HEAD, or an ancestor of it
    // when commits were made after the build.
    let head = value["commit"].as_str().unwrap().to_owned();
    assert_eq!(head.len(), 12, "{value}");
    let ancestor = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["merge-base", "--is-ancestor", &head, "HEAD"])
        .status()
        .unwrap();
    assert!(ancestor.success(), "{head} is not HEAD or before it");
    assert!(
        value["rustc"].as_str().unwrap().starts_with("rustc "),
        "{value}"
    );
    assert!(value["features"].is_array(), "{value}");
    let text = run_ok(hoist(dir.path()).arg("version"));
    assert!(
        text.contains(&format!("commit:      {}", head.trim())),
        "{text}"
    );
    let short = run_ok(hoist(dir.path()).arg("--version"));
    assert!(short.contains(head.trim()), "{short}");
}

#[test]
fn hoist_run_says_what_runs_containers() {
    let dir = ProcessDir::owned("ux-run");
    let out = hoist(dir.path())
        .args(["run", "--rm", "-it", "app:1", "sh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not run containers")
            && err.contains("podman run")
            && err.contains("docker run"),
        "{err}"
    );
    assert!(!err.contains("prune"), "{err}");
}

#[test]
fn a_containerfile_is_found_and_no_file_is_named() {
    let dir = ProcessDir::owned("ux-containerfile");
    let ctx = context(
        dir.path(),
        "Containerfile",
        "FROM scratch\nCOPY hello.txt /\n",
    );
    let store = dir.path().join("store");
    let layout = dir.path().join("out");
    // `-o` is --output, as in docker build.
    let out = hoist(&store)
        .args(["build", "-q", "-o"])
        .arg(format!("type=oci,dest={}", layout.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(layout.join("index.json").is_file());
    std::fs::remove_file(ctx.join("Containerfile")).unwrap();
    let out = hoist(&store)
        .args(["build", "-q"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no Dockerfile (or Containerfile) in the build context"),
        "{err}"
    );
}

#[test]
fn build_args_without_a_name_are_refused() {
    let dir = ProcessDir::owned("ux-build-args");
    let ctx = context(dir.path(), "Dockerfile", "FROM scratch\nCOPY hello.txt /\n");
    for bad in ["=x", "", " =y"] {
        let out = hoist(&dir.path().join("store"))
            .args(["build", "-q", "--build-arg", bad])
            .arg(&ctx)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && err.contains("names no argument"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn a_long_instruction_is_cut_with_an_ellipsis_in_errors() {
    let dir = ProcessDir::owned("ux-ellipsis");
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN [\"/bin/busybox\",\"sh\",\"-c\",\"echo about to fail && exit 3\"]\n",
    )
    .unwrap();
    let out = hoist(&dir.path().join("store"))
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        line.contains("…: ") && line.contains("exit code 3"),
        "{err}"
    );
}

#[test]
fn a_dumb_terminal_gets_plain_progress_and_no_archive_goes_to_a_terminal() {
    let dir = ProcessDir::owned("ux-terminal");
    let ctx = context(dir.path(), "Dockerfile", "FROM scratch\nCOPY hello.txt /\n");
    let hoist = assert_cmd::cargo::cargo_bin("hoist");
    let store = dir.path().join("store");
    let build = format!(
        "{} --store {} build {}",
        hoist.display(),
        store.display(),
        ctx.display()
    );
    let (ok, screen) = on_a_terminal(&build, &[("TERM", "dumb")]);
    assert!(ok, "{screen}");
    assert!(screen.contains("#2/2 COPY hello.txt / ..."), "{screen}");
    assert!(!screen.contains("\u{1b}["), "{screen:?}");
    let (ok, screen) = on_a_terminal(
        &format!("{build} --output type=docker,dest=-").replace(" build ", " build -q "),
        &[("TERM", "xterm")],
    );
    assert!(
        !ok && screen.contains("standard output, which is a terminal"),
        "{screen}"
    );
}

/// `hoist inspect` and `hoist history` against docker's on the same image
/// (built by hoist, loaded into the suite's dockerd), field by field; an
/// image ID serves `hoist tag` as it serves `docker tag`.
#[test]
fn inspect_and_history_match_docker_field_by_field() {
    let dir = ProcessDir::owned("ux-inspect");
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nENV A=1 B=\"two words\"\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo hi > /hi\"]\n\
         WORKDIR /srv\nUSER 1000:1000\nEXPOSE 8080/tcp\nLABEL org.example=yes\nCMD [\"/bin/sh\", \"-c\", \"cat /hi\"]\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let name = format!("hoist-it/inspect:{}", std::process::id());
    let archive = dir.path().join("image.tar");
    run_ok(
        hoist(&store)
            .args(["build", "-q", "-t", &name, "-o"])
            .arg(format!("type=docker,dest={}", archive.display()))
            .arg(&ctx),
    );
    let dockerd = crate::support::Dockerd::shared();
    run_ok(dockerd.docker().args(["load", "-i"]).arg(&archive));
    let fields = [
        "{{.Id}}",
        "{{.Architecture}}",
        "{{.Os}}",
        "{{.Created}}",
        "{{json .Config.Env}}",
        "{{json .Config.Cmd}}",
        "{{json .Config.Entrypoint}}",
        "{{.Config.User}}",
        "{{.Config.WorkingDir}}",
        "{{json .Config.Labels}}",
        "{{json .Config.ExposedPorts}}",
        "{{json .RootFS.Layers}}",
        "{{index .RepoTags 0}}",
    ];
    let template = fields.join("\n");
    let docker = run_ok(
        dockerd
            .docker()
            .args(["image", "inspect", "--format", &template, &name]),
    );
    let ours = run_ok(hoist(&store).args(["inspect", "--format", &template, &name]));
    for ((field, d), h) in fields.iter().zip(docker.lines()).zip(ours.lines()) {
        assert_eq!(h, d, "{field}");
    }
    assert_eq!(ours.lines().count(), fields.len(), "{ours}");

    let history = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}";
    let docker =
        run_ok(
            dockerd
                .docker()
                .args(["history", "--no-trunc", "--format", history, &name]),
        );
    let ours = run_ok(hoist(&store).args(["history", "--no-trunc", "--format", history, &name]));
    assert_eq!(ours, docker);
    let docker = run_ok(dockerd.docker().args(["history", "-q", &name]));
    let ours = run_ok(hoist(&store).args(["history", "-q", &name]));
    assert_eq!(ours, docker);
    // `images` rows, as docker lists the same image.
    let row = "{{.Repository}}|{{.Tag}}|{{.ID}}|{{.CreatedSince}}";
    let docker = run_ok(dockerd.docker().args(["images", "--format", row, &name]));
    let ours = run_ok(
        hoist(&store)
            .args(["images", "--format", row, "--filter"])
            .arg(format!("reference={}", name.split(':').next().unwrap())),
    );
    assert_eq!(ours, docker);
    let _ = dockerd.docker().args(["rmi", "-f", &name]).output();

    // The ID's first twelve digits name the image for `hoist tag`.
    let id = run_ok(hoist(&store).args(["inspect", "--format", "{{.Id}}", &name]));
    let short = &id.trim()["sha256:".len()..][..12];
    run_ok(hoist(&store).args(["tag", short, "again:1"]));
    let again = run_ok(hoist(&store).args(["inspect", "--format", "{{.Id}}", "again:1"]));
    assert_eq!(again, id);
    let out = hoist(&store)
        .args(["inspect", "no-such-image:1"])
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("no image no-such-image:1"),
        "{}",
        text(&out)
    );
}

/// `--load` hands the image to docker (or, with no Docker daemon, to
/// podman); `hoist save` writes what `docker load` reads, and `hoist load`
/// reads what `docker save` writes, the image ID unchanged each way.
#[test]
fn load_save_and_load_move_images_to_and_from_docker_and_podman() {
    let dir = ProcessDir::owned("ux-save-load");
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo saved > /msg\"]\nCMD [\"/bin/cat\", \"/msg\"]\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let dockerd = crate::support::Dockerd::shared();
    let name = format!("hoist-it/save-load:{}", std::process::id());
    // Debian's docker client first on PATH, talking to the suite's dockerd.
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let out = hoist(&store)
        .env("PATH", &path)
        .env("DOCKER_HOST", dockerd.host())
        .args(["build", "--load", "-t", &name])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("loaded into docker (docker load)"),
        "{}",
        text(&out)
    );
    let id = run_ok(hoist(&store).args(["inspect", "--format", "{{.Id}}", &name]));
    let docker_id = run_ok(
        dockerd
            .docker()
            .args(["image", "inspect", "--format", "{{.Id}}", &name]),
    );
    assert_eq!(docker_id, id);
    run_ok(dockerd.docker().args(["rmi", "-f", &name]));

    // hoist save | docker load.
    let saved = dir.path().join("saved.tar");
    run_ok(hoist(&store).args(["save", "-o"]).arg(&saved).arg(&name));
    run_ok(dockerd.docker().args(["load", "-i"]).arg(&saved));
    let docker_id = run_ok(
        dockerd
            .docker()
            .args(["image", "inspect", "--format", "{{.Id}}", &name]),
    );
    assert_eq!(docker_id, id);

    // docker save | hoist load, into a store that never saw the image.
    let exported = dir.path().join("docker.tar");
    run_ok(
        dockerd
            .docker()
            .args(["save", "-o"])
            .arg(&exported)
            .arg(&name),
    );
    let _ = dockerd.docker().args(["rmi", "-f", &name]).output();
    let fresh = dir.path().join("fresh-store");
    let loaded = run_ok(hoist(&fresh).args(["load", "-i"]).arg(&exported));
    assert!(
        loaded.contains(&format!("Loaded image: {name}")),
        "{loaded}"
    );
    let reloaded = run_ok(hoist(&fresh).args(["inspect", "--format", "{{.Id}}", &name]));
    assert_eq!(reloaded, id);
    // The loaded image builds on: a FROM of it in another build.
    std::fs::write(
        dir.path().join("Dockerfile.on"),
        format!("FROM {name}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"cat /msg > /again\"]\n"),
    )
    .unwrap();
    run_ok(
        hoist(&fresh)
            .args(["build", "-q", "-f"])
            .arg(dir.path().join("Dockerfile.on"))
            .arg(&ctx),
    );

    // With no Docker daemon, --load goes to podman.
    let out = hoist(&store)
        .env_remove("DOCKER_HOST")
        .args(["build", "--load", "-t", &name])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("loaded into podman (podman load)"),
        "{}",
        text(&out)
    );
    let podman_id =
        run_ok(crate::support::podman().args(["image", "inspect", "--format", "{{.Id}}", &name]));
    let _ = crate::support::podman().args(["rmi", "-f", &name]).output();
    assert_eq!(format!("sha256:{}", podman_id.trim()), id.trim());
}

/// Docker's build flags hoist lacks say so, with what to do instead, and
/// an unknown flag gets no tip about `--`; `--check` checks and stops;
/// `--metadata-file` writes buildx's keys.
#[test]
fn build_flags_docker_users_type() {
    let dir = ProcessDir::owned("ux-flags");
    let ctx = context(dir.path(), "Dockerfile", "FROM scratch\nCOPY hello.txt /\n");
    let store = dir.path().join("store");
    let refused = |args: &[&str]| {
        let out = hoist(&store)
            .arg("build")
            .args(args)
            .arg(&ctx)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&["--add-host", "db:127.0.0.1"]);
    assert!(
        err.contains("`docker build --add-host` is not supported") && err.contains("RUN step"),
        "{err}"
    );
    let err = refused(&["--memory=1g"]);
    assert!(err.contains("--memory") && err.contains("limits"), "{err}");
    let err = refused(&["--no-such-flag"]);
    assert!(
        err.contains("no flag `--no-such-flag`") && !err.contains("tip:"),
        "{err}"
    );

    // --check: warnings pass, an error fails, nothing is built.
    let out = hoist(&store)
        .args(["build", "--check"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 error(s)"), "{}", text(&out));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\nFROBNICATE x\n",
    )
    .unwrap();
    let out = hoist(&store)
        .args(["build", "--check"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let images = run_ok(hoist(&store).args(["images", "-q"]));
    assert!(
        images.trim().is_empty(),
        "--check built something: {images}"
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n").unwrap();

    // --metadata-file.
    let meta = dir.path().join("meta.json");
    let digest = run_ok(
        hoist(&store)
            .args([
                "build",
                "-q",
                "-t",
                "meta:1",
                "-t",
                "meta:2",
                "--metadata-file",
            ])
            .arg(&meta)
            .arg(&ctx),
    );
    let value: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(value["containerimage.digest"], digest.trim());
    assert_eq!(value["containerimage.descriptor"]["digest"], digest.trim());
    assert_eq!(
        value["image.name"],
        "docker.io/library/meta:1,docker.io/library/meta:2"
    );
    let id = run_ok(hoist(&store).args(["inspect", "--format", "{{.Id}}", "meta:1"]));
    assert_eq!(value["containerimage.config.digest"], id.trim());
}

/// `-o type=local` and `type=tar` hold the image's file system: the same
/// tree umoci unpacks from the image's OCI layout.
#[test]
fn local_and_tar_outputs_hold_the_images_file_system() {
    let dir = ProcessDir::owned("ux-local-tar");
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"mkdir -p /srv && echo x > /srv/x && ln -s x /srv/y\"]\n\
         RUN [\"/bin/busybox\", \"rm\", \"/bin/vi\"]\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let (layout, local, tar) = (
        dir.path().join("layout"),
        dir.path().join("local"),
        dir.path().join("fs.tar"),
    );
    run_ok(
        hoist(&store)
            .args(["build", "-q", "-t", "fs:image"])
            .arg("-o")
            .arg(format!("type=oci,dest={}", layout.display()))
            .arg("-o")
            .arg(format!("type=local,dest={}", local.display()))
            .arg("-o")
            .arg(format!("type=tar,dest={}", tar.display()))
            .arg(&ctx),
    );
    let unpacked = dir.path().join("unpacked");
    crate::support::unpack_oci_image(&layout, "image", &unpacked);
    let want = crate::support::tree_of_image(&unpacked).unwrap();
    assert_eq!(crate::support::tree_of_image(&local).unwrap(), want);
    assert!(!local.join("bin/vi").exists() && local.join("bin/sh").exists());
    let untarred = dir.path().join("untarred");
    std::fs::create_dir(&untarred).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xpf")
            .arg(&tar)
            .arg("-C")
            .arg(&untarred),
    );
    assert_eq!(crate::support::tree_of_image(&untarred).unwrap(), want);
}

/// A COPY source above the context is looked for at the context's root,
/// as BuildKit does; when it is not there, the error says why.
#[test]
fn a_copy_source_above_the_context_says_sources_stay_inside() {
    let dir = ProcessDir::owned("ux-copy-up");
    std::fs::write(dir.path().join("outside.txt"), "outside\n").unwrap();
    let ctx = context(
        dir.path(),
        "Dockerfile",
        "FROM scratch\nCOPY ../outside.txt /\n",
    );
    let out = hoist(&dir.path().join("store"))
        .args(["build", "-q"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("sources cannot leave the build context"),
        "{err}"
    );
    // Inside the context, `../outside.txt` is `outside.txt` at its root.
    std::fs::write(ctx.join("outside.txt"), "inside\n").unwrap();
    let local = dir.path().join("local");
    run_ok(
        hoist(&dir.path().join("store"))
            .args(["build", "-q", "-o"])
            .arg(format!("type=local,dest={}", local.display()))
            .arg(&ctx),
    );
    assert_eq!(
        std::fs::read_to_string(local.join("outside.txt")).unwrap(),
        "inside\n"
    );
}

/// `--progress json`: every line has the schema's version, and every step
/// names its stage (not only each stage's FROM); plain progress names the
/// stage on FROM lines only.
#[test]
fn json_progress_names_every_steps_stage() {
    let dir = ProcessDir::owned("ux-json");
    let ctx = context(
        dir.path(),
        "Dockerfile",
        "FROM scratch AS files\nCOPY hello.txt /a\nCOPY hello.txt /b\nFROM scratch\nCOPY --from=files /a /a\n",
    );
    let out = hoist(&dir.path().join("store"))
        .args(["build", "--progress", "json"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(events.iter().all(|e| e["version"] == 1), "{events:?}");
    let stages: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "step")
        .map(|e| {
            (
                e["stage"].as_str().unwrap(),
                e["instruction"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("files", "FROM scratch AS files"),
            ("files", "COPY hello.txt /a"),
            ("files", "COPY hello.txt /b"),
            ("stage-1", "FROM scratch"),
            ("stage-1", "COPY --from=files /a /a"),
        ]
    );
    let plain = hoist(&dir.path().join("store"))
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stderr);
    assert!(
        plain.contains("#1/5 [files] FROM scratch AS files"),
        "{plain}"
    );
    assert!(plain.contains("#2/5 COPY hello.txt /a"), "{plain}");
}

/// A store hoist may only read serves the commands that read (images,
/// inspect); a file where the store should be is called a file.
#[test]
fn a_read_only_store_serves_reading_commands() {
    let dir = ProcessDir::owned("ux-read-only");
    let ctx = context(dir.path(), "Dockerfile", "FROM scratch\nCOPY hello.txt /\n");
    let store = dir.path().join("store");
    run_ok(hoist(&store).args(["build", "-q", "-t", "ro:1"]).arg(&ctx));
    // Everyone may read it; nobody but root may write (and the reader is
    // not root).
    run_ok(Command::new("chmod").args(["-R", "a+rX,a-w"]).arg(&store));
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let setpriv = require("setpriv", "util-linux");
    let as_nobody = |args: &[&str]| {
        Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin("hoist"))
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap()
    };
    let listed = as_nobody(&["images"]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("ro "),
        "{}",
        text(&listed)
    );
    let inspected = as_nobody(&["inspect", "--format", "{{.Os}}", "ro:1"]);
    assert_eq!(
        String::from_utf8_lossy(&inspected.stdout).trim(),
        "linux",
        "{}",
        text(&inspected)
    );
    run_ok(Command::new("chmod").args(["-R", "u+w"]).arg(&store));

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = hoist(&file).arg("images").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is a file, not a directory"),
        "{err}"
    );
}

/// `hoist man DIR` writes hoist(1) and a page per command, from the same
/// definitions as --help.
#[test]
fn manual_pages_cover_every_command() {
    let dir = ProcessDir::owned("ux-man");
    let pages = dir.path().join("man1");
    run_ok(hoist(&dir.path().join("store")).arg("man").arg(&pages));
    for name in [
        "hoist",
        "hoist-build",
        "hoist-push",
        "hoist-inspect",
        "hoist-manifest",
        "hoist-k8s",
    ] {
        let page = std::fs::read_to_string(pages.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(
            page.starts_with(".ie") || page.contains(".TH "),
            "{name}.1 is not a man page"
        );
    }
    let build = std::fs::read_to_string(pages.join("hoist-build.1")).unwrap();
    assert!(
        build.contains("platform") && build.contains("hoist build"),
        "{build}"
    );
    // The hidden `run` answer has no page.
    assert!(!pages.join("hoist-run.1").exists());
}

/// The live (tty) progress under a real pseudo-terminal at 40 and 120
/// columns: each finished step ends with a newline, not padding; a failed
/// step is `✘` with its time, no spinner column; the elapsed time stays on
/// the step's line, not after its output; NO_COLOR turns off colours.
#[test]
fn tty_progress_draws_clean_lines_at_any_width() {
    let dir = ProcessDir::owned("ux-tty");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(
        require("/bin/busybox", "busybox-static"),
        ctx.join("busybox"),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\",\"sh\",\"-c\",\"for i in 1 2 3; do echo line $i; /bin/busybox sleep 0.2; done\"]\n\
         RUN [\"/bin/busybox\",\"sh\",\"-c\",\"echo about to fail && exit 3\"]\n",
    )
    .unwrap();
    let hoist = assert_cmd::cargo::cargo_bin("hoist");
    for (columns, no_color) in [(40, false), (120, false), (120, true)] {
        let store = dir.path().join(format!("store-{columns}-{no_color}"));
        let command = format!(
            "stty cols {columns}; {} --store {} build --progress tty {}",
            hoist.display(),
            store.display(),
            ctx.display()
        );
        let env: &[(&str, &str)] = if no_color {
            &[("TERM", "xterm"), ("NO_COLOR", "1")]
        } else {
            &[("TERM", "xterm")]
        };
        let (ok, screen) = on_a_terminal(&command, env);
        assert!(!ok, "the last step fails: {screen:?}");
        // Each finished line: from its mark to the end of its line.
        let finished: Vec<&str> = screen
            .match_indices(['✔', '✘'])
            .map(|(at, _)| {
                let rest = &screen[at..];
                &rest[..rest.find(['\r', '\n']).unwrap_or(rest.len())]
            })
            .collect();
        assert_eq!(finished.len(), 4, "{columns} columns: {screen:?}");
        for line in &finished {
            assert!(!line.ends_with(' '), "padded: {line:?}");
        }
        // Each finished line is followed by a newline.
        for mark in ["✔ #3/4", "✘ #4/4"] {
            let at = screen.find(mark).unwrap();
            let rest = &screen[at..];
            let end = rest.find(['\r', '\n']).unwrap();
            assert!(!rest[..end].contains("\u{1b}[1A"), "{mark}: {rest:?}");
        }
        let failed = finished.last().unwrap();
        let time = failed
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches("\u{1b}[0m");
        let time = time.trim_start_matches("\u{1b}[2m");
        assert!(
            time.ends_with('s') && time.contains('.') && time != "0s",
            "{failed:?}"
        );
        // No output line carries the step's elapsed time.
        assert!(
            !screen.split(['\r', '\n']).any(|l| l.contains("│ line")
                && l.trim_end().ends_with('s')
                && l.contains("\u{1b}[2m")),
            "{screen:?}"
        );
        let coloured = screen.contains("\u{1b}[2m") || screen.contains("\u{1b}[36m");
        assert_eq!(
            coloured, !no_color,
            "{columns} columns, NO_COLOR={no_color}: {screen:?}"
        );
    }
}

/// `hoist k8s` and `hoist resolve` take the registry flags the pulling
/// commands take (`--config`, `--ca-cert`), and a config file that cannot
/// be read is named once, its cause once.
#[test]
fn k8s_and_resolve_read_the_config_file_and_ca_certs() {
    let dir = ProcessDir::owned("ux-k8s-config");
    let store = dir.path().join("store");
    let yaml = dir.path().join("deploy.yaml");
    std::fs::write(&yaml, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: \"hoist://app:1\"}\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for args in [
        vec!["k8s", "--config", missing.to_str().unwrap(), "app:1"],
        vec![
            "resolve",
            "--config",
            missing.to_str().unwrap(),
            "-f",
            yaml.to_str().unwrap(),
        ],
    ] {
        let out = hoist(&store).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("missing.toml"),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    }
    let pem = dir.path().join("missing.pem");
    let out = hoist(&store)
        .args(["k8s", "--ca-cert"])
        .arg(&pem)
        .arg("app:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing.pem"),
        "{err}"
    );
}

/// `--network=none` takes the network from every RUN step that names none
/// of its own; a step's own `RUN --network=host` keeps the host's.
#[test]
fn network_none_cuts_every_run_step_off() {
    let dir = ProcessDir::owned("ux-network");
    let ctx = dir.path().join("ctx");
    busybox_context(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\n\
         RUN [\"/bin/sh\", \"-c\", \"cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' > /cut\"]\n\
         RUN --network=host [\"/bin/sh\", \"-c\", \"cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' > /host\"]\n",
    )
    .unwrap();
    let local = dir.path().join("local");
    run_ok(
        hoist(&dir.path().join("store"))
            .args([
                "build",
                "-q",
                "--isolation",
                "namespaces",
                "--network",
                "none",
                "-o",
            ])
            .arg(format!("type=local,dest={}", local.display()))
            .arg(&ctx),
    );
    let cut = std::fs::read_to_string(local.join("cut")).unwrap();
    assert_eq!(cut.trim(), "lo", "{cut}");
    let host = std::fs::read_to_string(local.join("host")).unwrap();
    let here = std::fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(host.lines().count(), here.lines().count() - 2, "{host}");
}
