//! A read-only, merged view of an image's file system, built from its
//! layers' entries, as a container would see it.
//!
//! Takes layer indexes (the entries of each layer, with OCI whiteouts and
//! opaque markers already separated out) and answers lookups the way an
//! overlay mount would: an upper layer's entry hides the lower ones, a
//! whiteout deletes, an opaque directory hides everything below it, a
//! non-directory hides a lower directory's contents. Symlinks are resolved
//! inside the root, never outside it (`..` stops at `/`). It never touches
//! the disk: contents stay wherever the entries say they are.

use hoist_oci::layer::tar::{Entry, EntryKind, OPAQUE_MARKER, WHITEOUT_PREFIX};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// At most this many symlinks are followed in one resolution (Linux's
/// limit is 40; containerd's RootPath allows 255).
const MAX_SYMLINKS: usize = 255;

/// A path that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("too many levels of symbolic links resolving /{path}")]
    TooManyLinks { path: String },
    #[error("/{path} leads outside the destination /{root}")]
    Escapes { path: String, root: String },
}

/// What [`FsView::resolve_in`] does with a `..` above its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AboveRoot {
    /// Stays at the root, as the kernel does at `/`.
    Stay,
    /// Fails: an archive entry may not climb out of its destination.
    Refuse,
}

/// The entries of one layer, keyed by path (no leading `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerIndex {
    entries: BTreeMap<Vec<u8>, Entry>,
    whiteouts: BTreeSet<Vec<u8>>,
    opaque: BTreeSet<Vec<u8>>,
}

impl LayerIndex {
    /// Indexes a layer's entries, turning `.wh.` entries into deletions.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> LayerIndex {
        let mut index = LayerIndex::default();
        for entry in entries {
            index.insert(entry);
        }
        index
    }

    /// Adds or replaces one entry (a `.wh.` name records a deletion).
    pub fn insert(&mut self, entry: Entry) {
        let (dir, name) = split_last(&entry.path);
        if name == OPAQUE_MARKER.as_bytes() {
            self.opaque.insert(dir.to_vec());
        } else if let Some(deleted) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            self.whiteouts.insert(join(dir, deleted));
        } else {
            self.entries.insert(entry.path.clone(), entry);
        }
    }

    /// Adds or replaces one entry as data, whatever its name: a file named
    /// `.wh.x` unpacked from an archive is a file, not a deletion, as it is
    /// for the tar extraction BuildKit's ADD uses (it writes it into the
    /// layer under that name).
    pub fn insert_literal(&mut self, entry: Entry) {
        self.entries.insert(entry.path.clone(), entry);
    }

    /// Removes the entry at `path` and everything this layer holds below it.
    pub fn remove_tree(&mut self, path: &[u8]) {
        self.entries.remove(path);
        self.remove_below(path);
    }

    /// Removes everything this layer holds strictly below `path`.
    pub fn remove_below(&mut self, path: &[u8]) {
        let prefix = join(path, b"");
        let below: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.entries.remove(&p);
        }
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// The directories this layer marks opaque.
    pub fn opaque_dirs(&self) -> impl Iterator<Item = &[u8]> {
        self.opaque.iter().map(Vec::as_slice)
    }

    /// Gives the file at `first` and every entry of this layer hardlinked
    /// to it the same owner and mode: they share one inode.
    pub fn set_group_metadata(&mut self, first: &[u8], mode: u32, uid: u64, gid: u64) {
        for entry in self.entries.values_mut() {
            let linked = matches!(&entry.kind, EntryKind::Hardlink { target } if target == first);
            if linked || entry.path == first {
                entry.mode = mode;
                entry.uid = uid;
                entry.gid = gid;
            }
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.whiteouts.is_empty() && self.opaque.is_empty()
    }

    /// Every entry as it goes into a tar, whiteouts and opaque markers
    /// included, sorted by path.
    pub fn to_tar_entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = self.entries.values().cloned().collect();
        normalise_hardlinks(&mut out);
        out.extend(self.whiteouts.iter().map(|p| Entry::whiteout(p)));
        out.extend(self.opaque.iter().map(|p| Entry::opaque(p)));
        hoist_oci::layer::tar::sort_entries(&mut out);
        out
    }

    /// True when this layer hides what lower layers hold at `path` without
    /// holding an entry there itself: a whiteout of the path or an
    /// ancestor, an opaque ancestor, or a non-directory ancestor.
    fn hides(&self, path: &[u8]) -> bool {
        if self.whiteouts.contains(path) {
            return true;
        }
        ancestors(path).any(|a| {
            self.whiteouts.contains(a)
                || self.opaque.contains(a)
                || self
                    .entries
                    .get(a)
                    .is_some_and(|e| !matches!(e.kind, EntryKind::Dir))
        })
    }
}

/// A tar can only link to a file written before: in each group of
/// hardlinked entries, the first path in byte order holds the content and
/// the others link to it, whichever was copied first.
fn normalise_hardlinks(entries: &mut [Entry]) {
    let mut groups: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::Hardlink { target } = &e.kind {
            groups.entry(target.clone()).or_default().push(i);
        }
    }
    let positions: BTreeMap<Vec<u8>, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    for (target, links) in groups {
        let Some(&file) = positions.get(&target) else {
            continue;
        };
        let first = links
            .iter()
            .copied()
            .chain([file])
            .min_by(|a, b| entries[*a].path.cmp(&entries[*b].path))
            .expect("a group has its target");
        if first == file {
            continue;
        }
        let first_path = entries[first].path.clone();
        let content = std::mem::replace(
            &mut entries[file].kind,
            EntryKind::Hardlink {
                target: first_path.clone(),
            },
        );
        entries[first].kind = content;
        for i in links {
            if i != first {
                entries[i].kind = EntryKind::Hardlink {
                    target: first_path.clone(),
                };
            }
        }
    }
}

/// The merged view: layers from bottom to top.
#[derive(Debug, Clone, Default)]
pub struct FsView {
    layers: Vec<Arc<LayerIndex>>,
}

impl FsView {
    pub fn new(layers: Vec<Arc<LayerIndex>>) -> FsView {
        FsView { layers }
    }

    pub fn layers(&self) -> &[Arc<LayerIndex>] {
        &self.layers
    }

    pub fn push(&mut self, layer: Arc<LayerIndex>) {
        self.layers.push(layer);
    }

    /// The top layer, for changing it in place; `None` when it is shared
    /// with another view (or there is none).
    pub fn top_mut(&mut self) -> Option<&mut LayerIndex> {
        self.layers.last_mut().and_then(Arc::get_mut)
    }

    /// The entry visible at `path` (no leading `/`; `""` is the root,
    /// which always exists), without resolving symlinks.
    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        for layer in self.layers.iter().rev() {
            if let Some(entry) = layer.get(path) {
                return Some(entry);
            }
            if layer.hides(path) {
                return None;
            }
        }
        None
    }

    /// Whether `path` is a directory (the root always is).
    pub fn is_dir(&self, path: &[u8]) -> bool {
        path.is_empty() || self.get(path).is_some_and(|e| e.kind == EntryKind::Dir)
    }

    /// The names directly inside directory `dir`, sorted.
    pub fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let mut seen: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for layer in self.layers.iter().rev() {
            let prefix = if dir.is_empty() {
                Vec::new()
            } else {
                join(dir, b"")
            };
            for (path, _) in layer.entries.range(prefix.clone()..) {
                if !path.starts_with(&prefix) {
                    break;
                }
                let rest = &path[prefix.len()..];
                if !rest.is_empty() && !rest.contains(&b'/') {
                    seen.entry(rest.to_vec()).or_insert(true);
                }
            }
            for path in layer.whiteouts.range(prefix.clone()..) {
                if !path.starts_with(&prefix) {
                    break;
                }
                let rest = &path[prefix.len()..];
                if !rest.is_empty() && !rest.contains(&b'/') {
                    seen.entry(rest.to_vec()).or_insert(false);
                }
            }
            let replaced = layer
                .entries
                .get(dir)
                .is_some_and(|e| e.kind != EntryKind::Dir);
            if layer.opaque.contains(dir) || replaced || (!dir.is_empty() && layer.hides(dir)) {
                break;
            }
        }
        seen.into_iter()
            .filter(|(_, present)| *present)
            .map(|(n, _)| n)
            .collect()
    }

    /// Resolves `path` inside the root as containerd's `RootPath` does:
    /// symlinks in every component (and in the last one when
    /// `follow_last`) are followed, absolute targets restart at the root,
    /// `..` never climbs above it. Missing components are kept as they are.
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> Result<Vec<u8>, ViewError> {
        self.resolve_in(b"", path, follow_last, AboveRoot::Stay)
    }

    /// [`resolve`](FsView::resolve) with the directory `root` taken as `/`
    /// (as a chroot would): absolute symlink targets restart at `root`, and
    /// `above` says what a `..` past it does. Returns the full path.
    pub fn resolve_in(
        &self,
        root: &[u8],
        path: &[u8],
        follow_last: bool,
        above: AboveRoot,
    ) -> Result<Vec<u8>, ViewError> {
        let mut pending: Vec<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
        pending.reverse();
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            match part.as_slice() {
                b"." => continue,
                b".." => {
                    if resolved.pop().is_none() && above == AboveRoot::Refuse {
                        return Err(ViewError::Escapes {
                            path: String::from_utf8_lossy(path).into_owned(),
                            root: String::from_utf8_lossy(root).into_owned(),
                        });
                    }
                    continue;
                }
                _ => {}
            }
            let candidate = join(root, &join_all(&resolved, &part));
            let last = pending.is_empty();
            let entry = if last && !follow_last {
                None
            } else {
                self.get(&candidate)
            };
            match entry.map(|e| &e.kind) {
                Some(EntryKind::Symlink { target }) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ViewError::TooManyLinks {
                            path: String::from_utf8_lossy(path).into_owned(),
                        });
                    }
                    if target.starts_with(b"/") {
                        resolved.clear();
                    }
                    let mut parts: Vec<Vec<u8>> = components(target).map(<[u8]>::to_vec).collect();
                    parts.reverse();
                    pending.extend(parts);
                }
                _ => resolved.push(part),
            }
        }
        Ok(join(root, &resolved.join(&b'/')))
    }
}

/// The non-empty components of a `/`-separated path.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Strict ancestors of `path`, from the top: `a`, `a/b` for `a/b/c`.
pub fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &path[..i])
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

fn join_all(parts: &[Vec<u8>], last: &[u8]) -> Vec<u8> {
    let mut out = parts.join(&b'/');
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: Vec<Entry>) -> Arc<LayerIndex> {
        Arc::new(LayerIndex::from_entries(entries))
    }

    #[test]
    fn upper_layers_hide_delete_and_replace() {
        let base = layer(vec![
            Entry::dir("etc"),
            Entry::file("etc/passwd", "root"),
            Entry::dir("opt"),
            Entry::file("opt/a", "a"),
            Entry::dir("var"),
            Entry::file("var/log", "x"),
            Entry::dir("d"),
            Entry::file("d/x", "x"),
        ]);
        let upper = layer(vec![
            Entry::file("etc/passwd", "root\napp"),
            Entry::whiteout(b"opt/a"),
            Entry::dir("var"),
            Entry::opaque(b"var"),
            Entry::file("var/new", "n"),
            Entry::file("d", "now a file"),
        ]);
        let view = FsView::new(vec![base, upper]);
        assert_eq!(
            view.get(b"etc/passwd").unwrap().kind,
            Entry::file("x", "root\napp").kind
        );
        assert!(view.get(b"opt/a").is_none());
        assert!(
            view.get(b"var/log").is_none(),
            "opaque dir hides lower content"
        );
        assert!(view.get(b"var/new").is_some());
        assert!(view.get(b"d/x").is_none(), "a file replaced the directory");
        assert_eq!(
            view.children(b""),
            [
                b"d".to_vec(),
                b"etc".to_vec(),
                b"opt".to_vec(),
                b"var".to_vec()
            ]
        );
        assert!(view.children(b"opt").is_empty());
        assert_eq!(view.children(b"var"), [b"new".to_vec()]);
    }

    #[test]
    fn hardlinks_point_to_the_first_path_in_byte_order() {
        let index = LayerIndex::from_entries([
            Entry::file("z", "data"),
            Entry::hardlink("a", "z"),
            Entry::hardlink("m", "z"),
        ]);
        let out = index.to_tar_entries();
        assert!(matches!(out[0].kind, EntryKind::File { .. }));
        assert_eq!(
            out[1].kind,
            EntryKind::Hardlink {
                target: b"a".to_vec()
            }
        );
        assert_eq!(
            out[2].kind,
            EntryKind::Hardlink {
                target: b"a".to_vec()
            }
        );
        hoist_oci::layer::tar::write_tar(&out, Default::default(), Vec::new()).unwrap();
    }

    #[test]
    fn resolve_stays_inside_the_root() {
        let view = FsView::new(vec![layer(vec![
            Entry::dir("usr"),
            Entry::dir("usr/bin"),
            Entry::symlink("bin", "usr/bin"),
            Entry::symlink("abs", "/usr/bin"),
            Entry::symlink("up", "../../../etc"),
            Entry::symlink("loop", "loop"),
        ])]);
        assert_eq!(view.resolve(b"bin/sh", true).unwrap(), b"usr/bin/sh");
        assert_eq!(view.resolve(b"abs/sh", true).unwrap(), b"usr/bin/sh");
        assert_eq!(view.resolve(b"up/passwd", true).unwrap(), b"etc/passwd");
        assert_eq!(view.resolve(b"bin", false).unwrap(), b"bin");
        assert_eq!(view.resolve(b"bin", true).unwrap(), b"usr/bin");
        assert_eq!(view.resolve(b"a/../../b/./c", true).unwrap(), b"b/c");
        assert!(view.resolve(b"loop", true).is_err());
    }
}
