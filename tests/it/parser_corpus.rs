//! BuildKit's parser conformance cases (`../shared/corpus/buildkit-parser`):
//! every positive case must dump byte for byte as its `result` file, every
//! negative case must fail, and line numbers must match BuildKit's.

use crate::common::{corpus_dir, sorted_dirs};
use hoist_dockerfile::{dump::dump, parse};

fn read_lossy(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn positive_cases_dump_exactly() {
    let dir = corpus_dir().join("buildkit-parser/testfiles");
    let cases = sorted_dirs(&dir);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = read_lossy(&case.join("result"));
        match parse(&read_lossy(&case.join("Dockerfile"))) {
            Ok(ast) => {
                let got = dump(&ast);
                if got != expected {
                    failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: parse failed: {e}")),
        }
    }
    println!(
        "buildkit-parser positive: {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert_eq!(
        cases.len(),
        33,
        "expected 33 positive cases in {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn negative_cases_fail() {
    let dir = corpus_dir().join("buildkit-parser/testfiles-negative");
    let cases = sorted_dirs(&dir);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if let Ok(ast) = parse(&read_lossy(&case.join("Dockerfile"))) {
            failures.push(format!("{name}: parsed, dump:\n{}", dump(&ast)));
        }
    }
    println!(
        "buildkit-parser negative: {} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    assert_eq!(
        cases.len(),
        4,
        "expected 4 negative cases in {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "cases that should not parse:\n{}",
        failures.join("\n")
    );
}

#[test]
fn line_numbers_match_buildkit() {
    // From BuildKit's TestParseIncludesLineNumbers: the root spans 5..31 and
    // its three children sit at [5,5], [11,12] and [17,31].
    let path = corpus_dir().join("buildkit-parser/testfile-line/Dockerfile");
    let ast = parse(&read_lossy(&path)).expect("testfile-line parses");
    let spans: Vec<(usize, usize)> = ast
        .nodes
        .iter()
        .map(|n| (n.span.start_line, n.span.end_line))
        .collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}
