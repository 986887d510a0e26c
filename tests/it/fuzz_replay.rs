//! Replays the fuzz corpora and every crash the fuzzers ever found
//! (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through the same
//! entry points the fuzz targets use, so a fixed crash stays fixed.

use std::path::Path;
use std::time::{Duration, Instant};

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let dir = root.join(dir).join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fuzz inputs missing at {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".keep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz input {} panics", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn dockerfile_corpus_replays() {
    let n = replay("dockerfile", hoist_dockerfile::fuzzing::dockerfile);
    println!("replayed {n} dockerfile fuzz inputs");
    assert!(n >= 40, "expected the committed corpus, found {n} inputs");
}

#[test]
fn shell_word_corpus_replays() {
    let n = replay("shell_word", hoist_dockerfile::fuzzing::shell_word);
    println!("replayed {n} shell_word fuzz inputs");
    assert!(n >= 200, "expected the committed corpus, found {n} inputs");
}

/// Inputs the fuzzer saved for being slow (`slow-unit-*`) must now be fast,
/// even in a debug build: the bound is generous so the test is not flaky,
/// and far below the tens of seconds they used to take.
#[test]
fn shell_word_slow_units_are_fast() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/shell_word");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("slow-unit-"))
        {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let start = Instant::now();
        hoist_dockerfile::fuzzing::shell_word(&data);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{} took {took:?}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 1, "no slow units found in {}", dir.display());
}
