//! Contexts that are not a directory, as `docker build` takes them: a tar
//! on standard input (plain or gzip), a Dockerfile on standard input with
//! no context, and a git repository served by `git daemon` on loopback
//! (`git://HOST/REPO#REF:SUBDIR`). Each gives the image the same files in a
//! directory give.

use crate::support::process::ProcessDir;
use crate::support::{busybox_context, require, run_ok};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const DOCKERFILE: &str =
    "FROM scratch\nCOPY bin /bin/\nCOPY app /app/\nRUN cat /app/msg > /copied\n";

/// `hoist build -q` with `args`, standard input from `input`; the digest,
/// or the error text.
fn build(store: &Path, args: &[&str], input: Option<&[u8]>) -> Result<String, String> {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hoist"))
        .arg("--store")
        .arg(store)
        .args(["build", "-q"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// `dir` as GNU tar writes it.
fn tar_of(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A context directory: busybox, app/msg, the Dockerfile.
fn context(dir: &Path) {
    busybox_context(dir);
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/msg"), "from the context\n").unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
}

#[test]
fn a_tar_or_a_dockerfile_on_standard_input_builds_as_docker_build_dash() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    context(&ctx);
    let store = tempfile::tempdir().unwrap();
    let from_dir = build(store.path(), &[ctx.to_str().unwrap()], None).unwrap();
    let bytes = tar_of(&ctx);
    let fresh = tempfile::tempdir().unwrap();
    assert_eq!(build(fresh.path(), &["-"], Some(&bytes)).unwrap(), from_dir);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    assert_eq!(
        build(fresh.path(), &["-"], Some(&gz.finish().unwrap())).unwrap(),
        from_dir
    );
    // -f names a file of the tar.
    std::fs::rename(ctx.join("Dockerfile"), ctx.join("Other.Dockerfile")).unwrap();
    let other = tar_of(&ctx);
    assert_eq!(
        build(store.path(), &["-f", "Other.Dockerfile", "-"], Some(&other)).unwrap(),
        from_dir
    );

    // A Dockerfile on standard input, no context.
    let digest = build(
        store.path(),
        &["-"],
        Some(b"FROM scratch\nENV GREETING=hello\nLABEL from=stdin\n"),
    )
    .unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let error = build(
        store.path(),
        &["-"],
        Some(b"FROM scratch\nCOPY missing /\n"),
    )
    .unwrap_err();
    assert!(error.contains("missing"), "{error}");

    // A tar whose entry climbs out of the context writes nothing outside.
    let outside = format!("/tmp/hoist-escape-test-{}", std::process::id());
    let mut evil = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let name = format!("../../../../../../../..{outside}");
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
    evil.append(&header, &b"evil"[..]).unwrap();
    let evil = evil.into_inner().unwrap();
    let _ = build(store.path(), &["-"], Some(&evil));
    assert!(!Path::new(&outside).exists(), "{outside} was written");
    // Both from standard input: refused.
    let error = build(store.path(), &["-f", "-", "-"], Some(b"")).unwrap_err();
    assert!(error.contains("both read standard input"), "{error}");
}

/// `git daemon` serving `base` on a free loopback port, killed when
/// dropped.
struct GitDaemon(std::process::Child, u16);

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new(require("git", "git"))
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=hoist",
                "-c",
                "user.email=hoist@example.invalid",
            ])
            .args(args),
    )
}

#[test]
fn a_git_url_builds_the_repository_at_its_ref_and_subdirectory() {
    let work = ProcessDir::owned("git-context");
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    context(&src.join("sub"));
    // Symlinks and all: busybox's applets are links.
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "v1"]);
    git(&src, &["tag", "v1"]);
    let v1 = git(&src, &["rev-parse", "HEAD"]).trim().to_string();
    std::fs::write(src.join("sub/app/msg"), "changed on main\n").unwrap();
    git(&src, &["commit", "-q", "-am", "v2"]);
    let base = work.path().join("served");
    std::fs::create_dir_all(&base).unwrap();
    run_ok(
        Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&src)
            .arg(base.join("repo.git")),
    );
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // git-daemon itself, not `git daemon`, which runs it as a child that
    // killing `git` would leave behind.
    let exec_path = run_ok(Command::new("git").arg("--exec-path"));
    let daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(&base)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = GitDaemon(daemon, port);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while Command::new("git")
        .args(["ls-remote", &url])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "git daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The same commit checked out into a directory is the reference.
    let checkout = work.path().join("checkout");
    run_ok(
        Command::new("git")
            .args(["clone", "-q"])
            .arg(&src)
            .arg(&checkout),
    );
    git(&checkout, &["checkout", "-q", &v1]);
    let store = tempfile::tempdir().unwrap();
    let expected = build(
        store.path(),
        &[checkout.join("sub").to_str().unwrap()],
        None,
    )
    .unwrap();
    for reference in ["v1", v1.as_str()] {
        let fresh = tempfile::tempdir().unwrap();
        let got = build(fresh.path(), &[&format!("{url}#{reference}:sub")], None).unwrap();
        assert_eq!(got, expected, "{reference}");
    }
    // No ref: the remote's HEAD (main, with the change).
    let head = build(store.path(), &[&format!("{url}#:sub")], None).unwrap();
    assert_ne!(head, expected);
    // A ref or a directory the repository lacks, a subdirectory climbing out.
    for (fragment, says) in [
        ("nope:sub", "no ref or commit `nope`"),
        ("v1:absent", "has no directory `absent`"),
        ("v1:../..", "must stay inside the repository"),
    ] {
        let error = build(store.path(), &[&format!("{url}#{fragment}")], None).unwrap_err();
        assert!(error.contains(says), "{fragment}: {error}");
    }
}
