//! Listing the build context: every path a build may COPY, with
//! `.dockerignore` applied as Docker applies it.
//!
//! Ownership is reset to 0:0, as BuildKit's context transfer does: COPY
//! from the context gives root-owned files unless `--chown` says otherwise.
//! Modes, symlinks and hardlinks are kept. Contents are not read here.

use super::DockerIgnore;
use hoist_oci::layer::tar::Entry;
use hoist_oci::layer::walk::{Visit, WalkError, WalkOptions, walk_observed};
use std::path::Path;

/// The entries of the context directory a build can see, sorted.
pub fn walk_context(dir: &Path, ignore: Option<&DockerIgnore>) -> Result<Vec<Entry>, WalkError> {
    walk_context_observed(dir, ignore, |_, _| {})
}

/// [`walk_context`], handing `seen` the metadata of every file listed.
pub fn walk_context_observed(
    dir: &Path,
    ignore: Option<&DockerIgnore>,
    seen: impl FnMut(&Path, &std::fs::Metadata),
) -> Result<Vec<Entry>, WalkError> {
    let options = WalkOptions {
        uid: Some(0),
        gid: Some(0),
        ..WalkOptions::default()
    };
    let decide = |relative: &Path, is_dir: bool| match ignore {
        Some(ignore) => visit(ignore, &relative.to_string_lossy(), is_dir),
        None => Visit::Keep,
    };
    walk_observed(dir, &options, decide, seen)
}

/// What a walk of the context does with the path `rel` (relative to the
/// context, `/`-separated).
pub(super) fn visit(ignore: &DockerIgnore, rel: &str, is_dir: bool) -> Visit {
    if !ignore.is_excluded(rel) {
        Visit::Keep
    } else if is_dir && ignore.may_reinclude_under(rel) {
        Visit::Descend
    } else {
        Visit::Prune
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_oci::layer::tar::EntryKind;

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    #[test]
    fn ignore_rules_prune_and_reinclude_with_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "a.txt",
            "docs/x.md",
            "docs/keep/README.md",
            "node_modules/m/i.js",
            "src/main.rs",
        ] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        std::fs::hard_link(root.join("a.txt"), root.join("hard.txt")).unwrap();
        let ignore = DockerIgnore::parse("node_modules\ndocs\n!docs/keep/README.md\n").unwrap();
        let entries = walk_context(root, Some(&ignore)).unwrap();
        assert_eq!(
            paths(&entries),
            [
                "a.txt",
                "docs",
                "docs/keep",
                "docs/keep/README.md",
                "hard.txt",
                "link",
                "src",
                "src/main.rs"
            ]
        );
        assert!(entries.iter().all(|e| e.uid == 0 && e.gid == 0));
        let hard = entries.iter().find(|e| e.path == b"hard.txt").unwrap();
        assert_eq!(
            hard.kind,
            EntryKind::Hardlink {
                target: b"a.txt".to_vec()
            }
        );
        let all = walk_context(root, None).unwrap();
        assert_eq!(all.len(), 12);
    }
}
