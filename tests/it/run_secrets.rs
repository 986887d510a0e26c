//! RUN --mount=type=secret and type=ssh: the step gets the secret or the
//! agent; no layer, history entry, cache record or output of hoist ever
//! holds a secret's content.

use crate::as_root_and_rootless;
use crate::build_run::{build_in, build_with_env};
use crate::support::rootless::Who;
use crate::support::{busybox_context, copy_dynamic_binary, require, run_ok};
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// Every file under `dir` holds `needle` nowhere, read as is and, for
/// gzip streams (layer blobs), decompressed.
fn assert_nowhere(dir: &Path, needle: &str) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            files += 1;
            let raw = std::fs::read(&path).unwrap();
            let mut texts = vec![raw.clone()];
            if raw.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut plain)
                    .unwrap_or_else(|e| panic!("gunzip {}: {e}", path.display()));
                texts.push(plain);
            }
            for text in texts {
                assert!(
                    !text.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "the secret is in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 0, "nothing under {}", dir.display());
}

fn md5(data: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, data).unwrap();
    run_ok(Command::new("md5sum").arg(&file))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn a_secret_reaches_its_step_and_no_layer_history_cache_or_output(who: Who) {
    let store = who.tempdir();
    let ctx = who.tempdir();
    let keys = who.tempdir();
    let out = who.tempdir();
    let token = format!("s3cr3t-{}-file", std::process::id());
    let env_token = format!("s3cr3t-{}-env", std::process::id());
    let file = keys.path().join("token");
    std::fs::write(&file, &token).unwrap();
    // The step proves it read both secrets by their digests only.
    let dockerfile = r#"FROM scratch
COPY bin /bin/
RUN --mount=type=secret,id=tok md5sum /run/secrets/tok | cut -d' ' -f1 > /file-sum \
 && test "$(stat -c %a:%u:%g /run/secrets/tok)" = 400:0:0 && ! touch /run/secrets/tok 2>/dev/null
RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=1001,gid=1002 \
    test "$(stat -c %a:%u:%g /etc/app/key)" = 440:1001:1002 && echo ok > /etc-ok
RUN --mount=type=secret,id=envtok,env=API_TOKEN printf %s "$API_TOKEN" | md5sum | cut -d' ' -f1 > /env-sum \
 && test ! -e /run/secrets/envtok
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo optional-skipped
"#;
    let layout = out.path().join("oci");
    let secret_arg = format!("id=tok,src={}", file.display());
    let output = format!("type=oci,dest={}", layout.display());
    let args = [
        "--secret",
        secret_arg.as_str(),
        "--secret",
        "id=envtok,env=HOIST_TEST_TOKEN",
        "--output",
        output.as_str(),
    ];
    let env = [("HOIST_TEST_TOKEN", env_token.as_str())];
    let built = build_with_env(who, ctx.path(), store.path(), dockerfile, &args, &env);
    assert!(built.ok, "{}", built.stderr);
    assert!(
        built.stderr.contains("| optional-skipped"),
        "{}",
        built.stderr
    );
    let rootfs = out.path().join("rootfs");
    crate::support::unpack_oci_image(&layout, "test", &rootfs);
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap();
    assert_eq!(read("file-sum").trim(), md5(&token));
    assert_eq!(read("env-sum").trim(), md5(&env_token));
    assert_eq!(read("etc-ok").trim(), "ok");
    // Mount points the step did not have are not left in the image.
    assert!(!rootfs.join("run").exists());
    assert!(!rootfs.join("etc/app").exists());
    for secret in [&token, &env_token] {
        assert!(!built.stderr.contains(secret.as_str()) && !built.stdout.contains(secret.as_str()));
        // Blobs (layers, config with its history), cache records,
        // snapshots: the whole store, and the exported layout.
        assert_nowhere(store.path(), secret);
        assert_nowhere(&layout, secret);
    }
    // The key depends on the secret's id, not its content (BuildKit's
    // rule): a new content is a cache hit.
    std::fs::write(&file, "another content").unwrap();
    let again = build_with_env(who, ctx.path(), store.path(), dockerfile, &args, &env);
    assert!(again.ok, "{}", again.stderr);
    assert!(
        !again.stderr.contains("| optional-skipped"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_required_secret_or_agent_that_is_missing_fails_with_its_line() {
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let built = build_in(
        Who::Root,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=secret,id=npmrc,required cat /run/secrets/npmrc\n",
        &[],
    );
    assert!(!built.ok);
    assert!(
        built
            .stderr
            .contains("Dockerfile:3: RUN --mount=type=secret,id=npmrc,required")
            && built
                .stderr
                .contains(": secret npmrc is required but the build has none of that id"),
        "{}",
        built.stderr
    );
    assert!(
        built
            .stderr
            .contains("hint: pass it with hoist build --secret id=npmrc,src=FILE"),
        "{}",
        built.stderr
    );
    let built = build_in(
        Who::Root,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=ssh,required=true true\n",
        &[],
    );
    assert!(!built.ok);
    assert!(
        built.stderr.contains("Dockerfile:3:") && built.stderr.contains("ssh default is required"),
        "{}",
        built.stderr
    );
    // A secret file that cannot be read: the error names the file.
    let built = build_in(
        Who::Root,
        ctx.path(),
        store.path(),
        "FROM scratch\nCOPY bin /bin/\nRUN --mount=type=secret,id=k true\n",
        &["--secret", "id=k,src=/nonexistent/key"],
    );
    assert!(!built.ok);
    assert!(
        built.stderr.contains("Dockerfile:3:")
            && built
                .stderr
                .contains("cannot read secret k from /nonexistent/key"),
        "{}",
        built.stderr
    );
}

/// An agent started as `who` with a fresh key of `who`'s (ssh-agent
/// answers its own user and root only); returns (agent, socket, key file,
/// the key's fingerprint).
fn agent(
    who: Who,
    dir: &Path,
) -> (
    std::process::Child,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let agent_bin = require("ssh-agent", "openssh-client");
    let keygen = require("ssh-keygen", "openssh-client");
    let key = dir.join("id_ed25519");
    run_ok(
        Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "hoist-test", "-f"])
            .arg(&key),
    );
    let fingerprint = run_ok(Command::new(&keygen).arg("-lf").arg(&key))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    who.own(dir);
    let socket = dir.join("agent.sock");
    let child = who
        .command(&agent_bin)
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_until(
        "ssh-agent listens",
        std::time::Duration::from_secs(10),
        || Ok(()),
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
    );
    (child, socket, key, fingerprint)
}

fn ssh_mounts_forward_an_agent_socket_or_key_files(who: Who) {
    let store = who.tempdir();
    let ctx = who.tempdir();
    let keys = who.tempdir();
    let (mut child, socket, key, fingerprint) = agent(who, keys.path());
    run_ok(
        who.command(&require("ssh-add", "openssh-client"))
            .env("SSH_AUTH_SOCK", &socket)
            .arg(&key),
    );
    busybox_context(ctx.path());
    copy_dynamic_binary(ctx.path(), "/usr/bin/ssh-add");
    let dockerfile = r#"FROM scratch
COPY bin /bin/
COPY lib /lib/
COPY lib64 /lib64/
COPY usr /usr/
RUN --mount=type=ssh test "$SSH_AUTH_SOCK" = /run/buildkit/ssh_agent.0 \
 && test "$(stat -c %a:%u /run/buildkit/ssh_agent.0)" = 600:0 && /usr/bin/ssh-add -l
RUN --mount=type=ssh,id=deploy,target=/agent,uid=1001,mode=0660 \
    test "$(stat -c %a:%u /agent)" = 660:1001 && SSH_AUTH_SOCK=/agent /usr/bin/ssh-add -l
RUN test ! -e /run/buildkit && test ! -e /agent && ! /usr/bin/ssh-add -l 2>/dev/null
"#;
    let sock = socket.display().to_string();
    let deploy = format!("deploy={}", key.display());
    let built = build_with_env(
        who,
        ctx.path(),
        store.path(),
        dockerfile,
        &["--ssh", "default", "--ssh", &deploy],
        &[("SSH_AUTH_SOCK", sock.as_str())],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(built.ok, "{}", built.stderr);
    // Both steps listed the key: once through the forwarded socket, once
    // through the agent hoist started for the key file.
    assert_eq!(
        built
            .stderr
            .lines()
            .filter(|l| l.contains(&fingerprint))
            .count(),
        2,
        "{}",
        built.stderr
    );
}

as_root_and_rootless!(
    a_secret_reaches_its_step_and_no_layer_history_cache_or_output,
    ssh_mounts_forward_an_agent_socket_or_key_files,
);
