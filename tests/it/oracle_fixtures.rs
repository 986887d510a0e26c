//! The recorded oracle results under fixtures/differential are well-formed and
//! complete: every case says which oracles apply, has an `expected.<oracle>.json`
//! for each of them and a documented reason for each one it leaves out. The build
//! engine's differential test compares hoist's images with these files; this test
//! makes sure that comparison never silently has less to compare.

use crate::support::differential_cases;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The oracles scripts/record-oracle.sh knows.
const ORACLES: [&str; 2] = ["buildkit", "buildah"];

/// The image config fields every recording carries (null when unset).
pub const CONFIG_FIELDS: [&str; 12] = [
    "Cmd",
    "Entrypoint",
    "Env",
    "ExposedPorts",
    "Healthcheck",
    "Labels",
    "OnBuild",
    "Shell",
    "StopSignal",
    "User",
    "Volumes",
    "WorkingDir",
];

/// The recorded fields of an image config's `config` object, an empty
/// string, list or map counting as unset (null), as the recordings have
/// them.
pub fn recorded_fields(run: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for field in CONFIG_FIELDS {
        let v = run.get(field).cloned().unwrap_or(Value::Null);
        let empty = matches!(&v, Value::String(s) if s.is_empty())
            || matches!(&v, Value::Array(a) if a.is_empty())
            || matches!(&v, Value::Object(o) if o.is_empty());
        out.insert(field.to_string(), if empty { Value::Null } else { v });
    }
    out
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Problems with one case, empty when it is complete.
fn check_case(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    if !dir.join("Dockerfile").is_file() {
        problems.push("no Dockerfile".to_owned());
    }
    let case = match read_json(&dir.join("case.json")) {
        Ok(v) => v,
        Err(e) => return vec![e],
    };
    if case["behaviour"].as_str().is_none_or(str::is_empty) {
        problems.push("case.json: no \"behaviour\"".to_owned());
    }
    let listed: BTreeSet<&str> = case["oracles"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for oracle in ORACLES {
        let reason = case["not_recorded"][oracle].as_str().unwrap_or("");
        match (listed.contains(oracle), reason.is_empty()) {
            (true, false) => problems.push(format!("{oracle} both listed and not_recorded")),
            (false, true) => problems.push(format!("{oracle} neither listed nor not_recorded")),
            _ => {}
        }
    }
    for unknown in listed.iter().filter(|o| !ORACLES.contains(o)) {
        problems.push(format!("unknown oracle {unknown}"));
    }
    for oracle in ORACLES {
        let path = dir.join(format!("expected.{oracle}.json"));
        if !listed.contains(oracle) {
            if path.exists() {
                problems.push(format!(
                    "{} exists but {oracle} is not listed",
                    path.display()
                ));
            }
            continue;
        }
        match read_json(&path) {
            Ok(expected) => {
                problems.extend(
                    check_expected(&expected, &name, oracle)
                        .into_iter()
                        .map(|p| format!("expected.{oracle}.json: {p}")),
                );
            }
            Err(e) => problems.push(e),
        }
    }
    problems
}

fn check_expected(v: &Value, case: &str, oracle: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if v["case"] != case {
        problems.push(format!("\"case\" is {}, not {case:?}", v["case"]));
    }
    if v["oracle"] != oracle {
        problems.push(format!("\"oracle\" is {}", v["oracle"]));
    }
    if v["oracle_version"].as_str().is_none_or(str::is_empty) {
        problems.push("no \"oracle_version\"".to_owned());
    }
    // A build that must fail is recorded as failing, with its exit code.
    if v["fails"] == true {
        if !v["exit_code"].is_u64() {
            problems.push("a failed build without \"exit_code\"".to_owned());
        }
        return problems;
    }
    match v["config"].as_object() {
        Some(config) => {
            let keys: BTreeSet<&str> = config.keys().map(String::as_str).collect();
            if keys != BTreeSet::from(CONFIG_FIELDS) {
                problems.push(format!("config fields are {keys:?}"));
            }
        }
        None => problems.push("no \"config\" object".to_owned()),
    }
    let Some(tree) = v["tree"].as_array() else {
        problems.push("no \"tree\" array".to_owned());
        return problems;
    };
    let mut previous: Option<&str> = None;
    let paths: BTreeSet<&str> = tree.iter().filter_map(|e| e["path"].as_str()).collect();
    for entry in tree {
        let path = entry["path"].as_str().unwrap_or("");
        if !path.starts_with('/') {
            problems.push(format!("entry without an absolute path: {entry}"));
            continue;
        }
        if previous.is_some_and(|p| p.as_bytes() >= path.as_bytes()) {
            problems.push(format!("{path} out of order or repeated"));
        }
        previous = Some(path);
        let mode_ok = entry["mode"]
            .as_str()
            .is_some_and(|m| m.len() == 4 && u32::from_str_radix(m, 8).is_ok());
        if !mode_ok || !entry["uid"].is_u64() || !entry["gid"].is_u64() {
            problems.push(format!("{path}: mode, uid or gid malformed"));
        }
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        if !parent.is_empty() && !paths.contains(parent) {
            problems.push(format!("{path}: parent {parent} missing"));
        }
        let well_formed = match entry["type"].as_str() {
            Some("file") => {
                entry["size"].is_u64()
                    && entry["sha256"]
                        .as_str()
                        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    && entry
                        .get("hardlink")
                        .is_none_or(|h| h.as_str().is_some_and(|h| h <= path && paths.contains(h)))
            }
            Some("symlink") => entry["target"].is_string(),
            Some("char" | "block") => entry["rdev"].is_string(),
            Some("dir" | "fifo" | "socket") => true,
            _ => false,
        };
        if !well_formed {
            problems.push(format!("{path}: malformed entry {entry}"));
        }
    }
    problems
}

#[test]
fn every_differential_case_has_complete_recordings() {
    let cases = differential_cases();
    assert!(
        cases.len() >= 30,
        "only {} differential cases found under fixtures/differential",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .flat_map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            check_case(dir)
                .into_iter()
                .map(move |p| format!("{name}: {p}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} problems in the recorded oracle fixtures (re-record with \
         `sudo bash scripts/record-oracle.sh CASE`):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_fixture_checker_reports_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("broken");
    std::fs::create_dir(&case).unwrap();
    std::fs::write(case.join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        case.join("case.json"),
        r#"{"behaviour": "x", "oracles": ["buildkit"]}"#,
    )
    .unwrap();
    std::fs::write(
        case.join("expected.buildkit.json"),
        r#"{"case": "broken", "oracle": "buildkit", "oracle_version": "v",
            "config": {}, "tree": [{"path": "/a/b", "type": "file", "mode": "644",
            "uid": 0, "gid": 0, "size": 1, "sha256": "00"}]}"#,
    )
    .unwrap();
    let problems = check_case(&case).join("\n");
    for expected in [
        "buildah neither listed nor not_recorded",
        "config fields are",
        "/a/b: mode, uid or gid malformed",
        "/a/b: parent /a missing",
        "/a/b: malformed entry",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}
