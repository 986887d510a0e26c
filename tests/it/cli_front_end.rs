//! The `hoist parse` and `hoist check` commands, driven as users drive them.

use crate::common::{corpus_dir, sorted_dirs};
use assert_cmd::Command;
use std::path::Path;

fn hoist() -> Command {
    Command::cargo_bin("hoist").expect("the hoist binary is built")
}

fn fixture(app: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tutorial")
        .join(app)
        .join("Dockerfile")
}

#[test]
fn parse_buildkit_prints_every_corpus_result_exactly() {
    let mut failures = Vec::new();
    let cases = sorted_dirs(&corpus_dir().join("buildkit-parser/testfiles"));
    for case in &cases {
        let out = hoist()
            .args(["parse", "--format", "buildkit"])
            .arg(case.join("Dockerfile"))
            .output()
            .unwrap();
        let expected = std::fs::read(case.join("result")).unwrap();
        if !out.status.success() || out.stdout != expected {
            failures.push(case.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(cases.len(), 33);
    assert!(
        failures.is_empty(),
        "hoist parse differs from BuildKit on: {failures:?}"
    );
}

#[test]
fn parse_reads_stdin_and_fails_loudly() {
    hoist()
        .args(["parse", "-"])
        .write_stdin("FROM busybox\nRUN echo hi\n")
        .assert()
        .success()
        .stdout("(from \"busybox\")\n(run \"echo hi\")\n");
    let out = hoist()
        .args(["parse", "-"])
        .write_stdin("# only a comment\n")
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("<stdin>:1:1: error: file with no instructions"),
        "{stderr}"
    );
    for negative in sorted_dirs(&corpus_dir().join("buildkit-parser/testfiles-negative")) {
        hoist()
            .arg("parse")
            .arg(negative.join("Dockerfile"))
            .assert()
            .code(1);
    }
}

#[test]
fn parse_json_has_typed_instructions_with_spans() {
    let out = hoist()
        .args(["parse", "--format", "json"])
        .arg(fixture("web-app"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schemaVersion"], 1);
    let instrs = doc["instructions"].as_array().unwrap();
    let names: Vec<&str> = instrs
        .iter()
        .map(|i| i["instruction"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "FROM", "WORKDIR", "COPY", "RUN", "COPY", "FROM", "RUN", "WORKDIR", "COPY", "EXPOSE",
            "USER", "ENV", "CMD"
        ]
    );
    let copy = &instrs[8];
    assert_eq!(copy["from"], "build");
    assert_eq!(copy["chown"], "appuser:appuser");
    assert_eq!(copy["span"]["start_line"], 21);
    let run = &instrs[6];
    assert_eq!(
        (
            run["span"]["start_line"].as_u64(),
            run["span"]["end_line"].as_u64()
        ),
        (Some(15), Some(16))
    );
    assert_eq!(
        instrs[12]["command"]["args"],
        serde_json::json!(["node", "server.js"])
    );
    assert_eq!(instrs[12]["command"]["prepend_shell"], false);
}

#[test]
fn check_passes_the_tutorial_dockerfiles() {
    for app in ["web-app", "configurable-app"] {
        let out = hoist()
            .args(["check", "--format", "json"])
            .arg(fixture(app))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{app}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors = doc[0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error")
            .count();
        assert_eq!(errors, 0, "{app}");
    }
}

#[test]
fn check_reports_file_line_column_caret_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Dockerfile");
    std::fs::write(
        &path,
        "FROM alpine:3.20 AS build\nCOPY --from=buld /a /a\nUSER 1000\n",
    )
    .unwrap();
    let out = hoist()
        .arg("check")
        .arg(&path)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "{}:2:6: error: --from=buld names no stage of this Dockerfile [UndefinedStage]",
            path.display()
        )
    );
    assert!(
        text.contains(
            " 2 | COPY --from=buld /a /a\n   |      ^\n  hint: did you mean --from=build?"
        ),
        "{text}"
    );
}

#[test]
fn warnings_alone_exit_zero() {
    hoist()
        .args(["check", "-"])
        .write_stdin("FROM node\nCMD node server.js\n")
        .assert()
        .success()
        .stdout(predicates::str::contains("[JSONArgsRecommended]"))
        .stdout(predicates::str::contains("[BaseImageUnpinned]"));
}
