//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The conformance corpora shipped beside the repository (`../shared/corpus`),
/// or `$HOIST_CORPUS`. A missing corpus fails the test loudly: a conformance
/// test that silently checks nothing would be worse than none.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("HOIST_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    };
    assert!(
        dir.is_dir(),
        "conformance corpus not found at {} (set HOIST_CORPUS to its location)",
        dir.display()
    );
    dir
}

/// The sub-directories of `dir`, sorted by name.
pub fn sorted_dirs(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
