//! Snapshots of what users read: every `--help`, the plain progress of a
//! build, and the main error messages. They guard against regressions in
//! wording and layout; the behaviour itself is tested elsewhere.
//!
//! Update after an intended change with
//! `INSTA_UPDATE=always cargo test --test it snapshots_cli::` and review
//! the diff of tests/it/snapshots/.

use crate::support::busybox_context;
use assert_cmd::cargo::CommandCargoExt;
use std::path::Path;
use std::process::Command;

fn hoist() -> Command {
    let mut cmd = Command::cargo_bin("hoist").expect("the hoist binary is built");
    // Help text wraps at the terminal's width; fix it.
    cmd.env("COLUMNS", "100").env_remove("HOIST_STORE");
    cmd
}

/// Output with what changes from run to run replaced: temporary paths,
/// durations, digests, sizes that depend on the busybox package.
fn redact(text: &str, dirs: &[&Path]) -> String {
    let mut text = text.to_string();
    for (i, dir) in dirs.iter().enumerate() {
        text = text.replace(&dir.display().to_string(), &format!("[DIR{i}]"));
    }
    let rules = [
        (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
        (r"sha256:[0-9a-f]{12}\b", "sha256:[SHORT]"),
        (r"\d+\.\d\ds\b", "[TIME]"),
        (r"\d+(\.\d)? (B|kB|MB|GB)\b", "[SIZE]"),
        // A file written in the second it was hashed is read again.
        (r"\d+ files read", "[N] files read"),
        // How an unreachable registry fails depends on the network.
        (r"(cannot pull [^:]+): .*", "$1: [REGISTRY ERROR]"),
    ];
    for (pattern, with) in rules {
        text = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, with)
            .into_owned();
    }
    text
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run hoist");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn help_texts() {
    let top = run(hoist().arg("--help"));
    assert_eq!(top.code, 0);
    insta::assert_snapshot!("help", top.stdout);
    let subcommands: Vec<String> = top
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(subcommands.len() >= 6, "{subcommands:?}");
    for name in subcommands {
        let help = run(hoist().args([name.as_str(), "--help"]));
        assert_eq!(help.code, 0, "{name}: {}", help.stderr);
        assert!(
            help.stdout.contains("Example"),
            "`hoist {name} --help` shows no example"
        );
        insta::assert_snapshot!(format!("help-{name}"), help.stdout);
    }
}

#[test]
fn plain_progress_of_a_build_and_its_cached_rebuild() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    busybox_context(ctx.path());
    std::fs::write(ctx.path().join("message"), "hello\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch AS base\nCOPY bin /bin/\nFROM base\nCOPY message /srv/\n\
         RUN echo one && echo two >&2\nUSER 1001\nCMD [\"cat\", \"/srv/message\"]\n",
    )
    .unwrap();
    let build = || {
        run(hoist()
            .arg("--store")
            .arg(store.path())
            .args(["build", "--progress=plain", "-t", "demo:v1"])
            .arg(ctx.path()))
    };
    let first = build();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = build();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);
    let dirs = [ctx.path(), store.path()];
    insta::assert_snapshot!("progress-plain-first", redact(&first.stderr, &dirs));
    insta::assert_snapshot!("progress-plain-cached", redact(&second.stderr, &dirs));
}

#[test]
fn main_error_messages() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    busybox_context(ctx.path());
    let dirs = [ctx.path(), store.path()];
    let cases = [
        ("syntax", "FROM scratch\nCOPY --form=base bin /bin/\n"),
        ("unknown-instruction", "FROM scratch\nCOPPY bin /bin/\n"),
        (
            "copy-missing-source",
            "FROM scratch\nCOPY nothing-here /srv/\n",
        ),
        (
            "run-fails",
            "FROM scratch\nCOPY bin /bin/\nRUN echo before-failing && exit 7\n",
        ),
        (
            "unknown-stage",
            "FROM scratch\nCOPY --from=build /app /app\n",
        ),
        ("no-from", "RUN echo hi\n"),
    ];
    for (name, dockerfile) in cases {
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let out = run(hoist()
            .arg("--store")
            .arg(store.path())
            .args(["build", "--progress=plain"])
            .arg(ctx.path()));
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout);
        insta::assert_snapshot!(format!("error-build-{name}"), redact(&out.stderr, &dirs));
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM node:14-alpine\nCOPY --form=build /app .\nCMD node server.js\n",
    )
    .unwrap();
    let check = run(hoist().arg("check").arg(ctx.path().join("Dockerfile")));
    assert_eq!(check.code, 1);
    insta::assert_snapshot!("error-check", redact(&check.stdout, &dirs));
    let usage = run(hoist().args(["build", "--no-such-flag", "."]));
    assert_eq!(usage.code, 2);
    insta::assert_snapshot!("error-usage", usage.stderr);
}
