//! hoist against BuildKit: every case under fixtures/differential is built
//! with hoist and its file tree and config compared with what BuildKit
//! (Docker 20.10) built, as recorded by scripts/record-oracle.sh.
//!
//! Cases that need what hoist cannot do yet are listed in `NOT_YET` with the
//! reason; the test fails if one of them starts to pass (so the list shrinks
//! as features land) as much as when a supported case differs.

use crate::oracle_fixtures::CONFIG_FIELDS;
use crate::support::{
    HttpServer, Registry, differential_cases, differential_context, tree_of_image, unpack_oci_image,
};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Cases hoist cannot build yet, and why.
const NOT_YET: &[(&str, &str)] = &[];

/// Cases chroot isolation cannot build as BuildKit does, and why
/// (docs/run.md says so too).
const CHROOT_DIFFERS: &[(&str, &str)] = &[(
    "run-mount-bind",
    "a read-only bind mount is writable: chroot isolation mounts nothing, and root passes permission bits",
)];

/// The 12 recorded config fields of the image in an OCI layout.
fn config_of(layout: &Path) -> Value {
    let config = crate::support::config_in_layout(layout);
    Value::Object(crate::oracle_fixtures::recorded_fields(&config["config"]))
}

/// Builds one case with hoist; returns the differences from BuildKit.
fn run_case(
    case: &Path,
    store: &Path,
    mirror: &str,
    http: &HttpServer,
    isolation: &str,
) -> Result<(), String> {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(case.join("case.json")).unwrap()).unwrap();
    let expected: Value = serde_json::from_slice(
        &std::fs::read(case.join("expected.buildkit.json")).map_err(|e| e.to_string())?,
    )
    .unwrap();
    let ctx = tempfile::tempdir().unwrap();
    differential_context(case, ctx.path());
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("oci");
    // ADD <url> names the recorder's server address; ours is chosen at run time.
    let recorded = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
    let dockerfile = out.path().join("Dockerfile");
    std::fs::write(&dockerfile, http.rewrite(&recorded)).unwrap();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("hoist"));
    cmd.env("HOIST_ISOLATION", isolation)
        .arg("--store")
        .arg(store)
        .args(["build", "-q", "-t", "case:test", "-f"])
        .arg(&dockerfile);
    cmd.arg("--output")
        .arg(format!("type=oci,dest={}", layout.display()));
    // `FROM busybox` resolves through the mirror, as it did for BuildKit.
    cmd.arg("--registry-mirror")
        .arg(format!("docker.io={mirror}"));
    if let Some(t) = spec["target"].as_str() {
        cmd.args(["--target", t]);
    }
    if let Some(args) = spec["build_args"].as_object() {
        for (k, v) in args {
            cmd.arg("--build-arg")
                .arg(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    // Secrets from files outside the context, as the recorder passed them.
    let secrets = tempfile::tempdir().unwrap();
    if let Some(map) = spec["secrets"].as_object() {
        for (id, value) in map {
            let file = secrets.path().join(id);
            std::fs::write(&file, value.as_str().unwrap_or_default()).unwrap();
            cmd.arg("--secret")
                .arg(format!("id={id},src={}", file.display()));
        }
    }
    cmd.arg(ctx.path());
    let result = cmd.output().unwrap();
    if expected["fails"] == true {
        // The build fails, at the step and with the exit code BuildKit saw.
        let stderr = String::from_utf8_lossy(&result.stderr);
        let code = expected["exit_code"].as_u64().unwrap_or_default();
        return match result.status.success() {
            true => Err("hoist built what BuildKit refused".into()),
            false if stderr.contains(&format!(": exit code {code}")) => Ok(()),
            false => Err(format!(
                "hoist failed otherwise than with exit code {code}: {stderr}"
            )),
        };
    }
    if !result.status.success() {
        return Err(format!(
            "hoist build failed: {}",
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    let rootfs = out.path().join("rootfs");
    unpack_oci_image(&layout, "test", &rootfs);
    let tree = tree_of_image(&rootfs).unwrap();
    let mut problems = Vec::new();
    let want_tree = expected["tree"].as_array().unwrap();
    if &tree != want_tree {
        let got: Vec<String> = tree.iter().map(|v| v.to_string()).collect();
        let want: Vec<String> = want_tree.iter().map(|v| v.to_string()).collect();
        for w in want.iter().filter(|w| !got.contains(w)).take(6) {
            problems.push(format!("  missing: {w}"));
        }
        for g in got.iter().filter(|g| !want.contains(g)).take(6) {
            problems.push(format!("  extra:   {g}"));
        }
    }
    let config = config_of(&layout);
    for field in CONFIG_FIELDS {
        if config[field] != expected["config"][field] {
            problems.push(format!(
                "  config {field}: hoist {} buildkit {}",
                config[field], expected["config"][field]
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn hoist_builds_what_buildkit_builds() {
    builds_what_buildkit_builds("auto", 25);
}

/// The cases with RUN steps again, in chroot isolation.
#[test]
fn hoist_builds_what_buildkit_builds_in_chroot_isolation() {
    builds_what_buildkit_builds("chroot", 10);
}

fn builds_what_buildkit_builds(isolation: &str, at_least: usize) {
    let registry = Registry::shared();
    registry.push_base_images();
    let http = crate::support::http_fixtures();
    let store = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut passed = 0;
    let mut not_yet = 0;
    for case in differential_cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dockerfile = std::fs::read_to_string(case.join("Dockerfile")).unwrap_or_default();
        if isolation == "chroot"
            && !dockerfile
                .lines()
                .any(|l| l.trim_start().starts_with("RUN"))
        {
            continue;
        }
        let outcome = run_case(&case, store.path(), registry.addr(), http, isolation);
        let known = match isolation {
            "chroot" => NOT_YET
                .iter()
                .chain(CHROOT_DIFFERS)
                .find(|(n, _)| *n == name),
            _ => NOT_YET.iter().find(|(n, _)| *n == name),
        };
        match (known, outcome) {
            (None, Ok(())) => passed += 1,
            (None, Err(e)) => failures.push(format!("{name}:\n{e}")),
            (Some((_, why)), Err(_)) => {
                println!("not yet: {name} ({why})");
                not_yet += 1;
            }
            (Some(_), Ok(())) => failures.push(format!(
                "{name}: now matches BuildKit; remove it from NOT_YET"
            )),
        }
    }
    println!(
        "differential vs BuildKit ({isolation}): {passed} passed, {} failed, {not_yet} not yet supported",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "cases differing from BuildKit:\n{}",
        failures.join("\n")
    );
    assert!(
        passed >= at_least,
        "expected most cases to run, {passed} passed"
    );
}
