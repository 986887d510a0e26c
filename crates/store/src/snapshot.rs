//! Where the extracted forms of a layer live: `snapshots/<diffID hex>/`.
//! The store owns this layout; the code that fills it (the engine's layer
//! indexes, RUN's overlay lowers) asks here for its paths, and prune
//! reads the same names.
//!
//! ```text
//! snapshots/<diffID hex>/
//!   content/                the layer's regular files under plain
//!                           directories, where COPY reads them
//!   index                   the layer's entries, saved (`hoistix1`)
//!   rootfs                  RUN's overlay lower, extracted as the host
//!   rootfs-userns-<hash>    the same under a user namespace's id mapping
//!   <name>-oci              the same with OCI whiteouts, for RUN's copy mode
//!   <name>.partial-<pid>-<n> one of the above being made
//! snapshots/adopt.partial-<pid>-<n>
//!                           a RUN layer's snapshot before its diffID is known
//! ```
//!
//! Every directory is made under a `.partial-` name and renamed into
//! place whole, so a name above exists only complete; prune removes the
//! partial ones a killed build left, and every directory of a layer no
//! image or cache record names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;
use hoist_oci::Digest;

/// The marker in the name of a directory still being made.
const PARTIAL: &str = ".partial-";

/// The snapshot directory of one layer (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    dir: PathBuf,
}

impl Snapshot {
    /// `snapshots/<diffID hex>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layer's regular files, for COPY.
    pub fn content(&self) -> PathBuf {
        self.dir.join("content")
    }

    /// The layer's saved index.
    pub fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// RUN's overlay lower named `name` (`rootfs`, `rootfs-userns-...`,
    /// with `-oci` for copy mode: the caller's id mapping and mode).
    pub fn rootfs(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new name beside `name` to make it under, unique in this process
    /// and among processes; renamed to `name` when complete.
    pub fn partial(&self, name: &str) -> PathBuf {
        partial_in(&self.dir, name)
    }
}

impl Store {
    /// The snapshot directory of layer `diff_id` (nothing is created).
    pub fn snapshot(&self, diff_id: &Digest) -> Snapshot {
        Snapshot {
            dir: self.snapshots_dir().join(diff_id.hex()),
        }
    }

    /// A new directory name under `snapshots/` for a snapshot whose layer
    /// is not known yet (`adopt.partial-...`): renamed into its layer's
    /// directory when complete, removed by prune if left behind.
    pub fn snapshot_partial(&self, what: &str) -> PathBuf {
        partial_in(&self.snapshots_dir(), what)
    }

    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.path("snapshots")
    }
}

fn partial_in(dir: &Path, name: &str) -> PathBuf {
    static MADE: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{name}{PARTIAL}{}-{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Whether `name` is a snapshot directory still being made (or left so by
/// a process that died).
pub(crate) fn is_partial(name: &str) -> bool {
    name.contains(PARTIAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_layout_and_partials_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let diff_id = Digest::of(b"layer");
        let snapshot = store.snapshot(&diff_id);
        let root = std::path::absolute(dir.path()).unwrap();
        assert_eq!(snapshot.dir(), root.join("snapshots").join(diff_id.hex()));
        assert_eq!(snapshot.content(), snapshot.dir().join("content"));
        assert_eq!(snapshot.index(), snapshot.dir().join("index"));
        assert_eq!(
            snapshot.rootfs("rootfs-oci"),
            snapshot.dir().join("rootfs-oci")
        );
        let (a, b) = (snapshot.partial("content"), snapshot.partial("content"));
        assert_ne!(a, b);
        for p in [&a, &b, &store.snapshot_partial("adopt")] {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(is_partial(name), "{name}");
        }
        assert!(!is_partial("content") && !is_partial("rootfs-userns-0123"));
    }
}
