//! Helpers the unit tests of several modules share.

use crate::store::Store;

/// A store in a new temporary directory (kept while the first value
/// lives), for a test that needs root for `needs`.
pub fn root_store(needs: &str) -> (tempfile::TempDir, Store) {
    hoist_oci::testing::assert_root(needs);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}
