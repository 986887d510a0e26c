//! Helpers for the tests of hoist's crates (feature `testing`, enabled
//! only as a dev-dependency): never part of a build.

use crate::Store;

/// A store in a new temporary directory (kept while the first value
/// lives), for a test that needs root for `needs`.
pub fn root_store(needs: &str) -> (tempfile::TempDir, Store) {
    hoist_oci::testing::assert_root(needs);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}
