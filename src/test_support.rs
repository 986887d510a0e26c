//! Helpers the unit tests of several modules share.

use crate::store::Store;

/// Fails the test unless it runs as root; `needs` says for what.
pub fn assert_root(needs: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root ({needs})");
}

/// A store in a new temporary directory (kept while the first value
/// lives), for a test that needs root for `needs`.
pub fn root_store(needs: &str) -> (tempfile::TempDir, Store) {
    assert_root(needs);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}
