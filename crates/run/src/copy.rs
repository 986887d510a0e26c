//! The fallback where overlayfs cannot be mounted (a kernel without it, a
//! user namespace on a kernel before 5.11, a file system overlayfs cannot
//! use as upper): the step's root is a plain copy of its layers, and its
//! changes are found by walking that copy before and after the step.
//!
//! The copy is made from the layer snapshots, each turned back into OCI
//! entries by [`super::diff::diff`] and extracted over the previous ones
//! (whiteouts applied, ownership kept as the namespace allows). The walk
//! compares, per path, the kind, mode, owner, extended attributes, link
//! target and `statx`'s inode, birth time, size, mtime and ctime: the kernel sets ctime
//! on every change of content or metadata, so nothing a step does goes
//! unseen, and a file the step did not touch keeps all of them. A
//! directory whose inode changed (number or birth time: ext4 hands a freed
//! number out again at once) was removed and made again: it becomes
//! opaque, as overlayfs makes it; parents of every change are listed, as
//! overlayfs copies them up; so both modes give the same layer.

use super::RunError;
use hoist_oci::layer::tar::{Entry, EntryKind, TarOptions, write_tar};
use hoist_oci::layer::walk::{Visit, WalkError, WalkOptions, walk_filtered};
use hoist_oci::layer::{ExtractOptions, extract};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The file a copy-mode run leaves next to its root: the state before the
/// step, for [`changes`].
const BEFORE: &str = "copy-before.json";

/// What [`record`] writes: the paths left out of both walks, and the state
/// of every other path.
#[derive(serde::Serialize, serde::Deserialize)]
struct Before {
    excluded: Vec<String>,
    seen: Vec<(Vec<u8>, Seen)>,
}

/// What the walk saw, per path.
type State = BTreeMap<Vec<u8>, Seen>;

/// Walks `root`, leaving out everything below `excluded` (paths relative
/// to it: what the sandbox provides), and the times, size and identity of
/// each of them: only its kind, mode, owner and attributes are compared.
fn walk_except(root: &Path, excluded: &[String]) -> Result<(Vec<Entry>, State), WalkError> {
    let entries = walk_filtered(root, &options(), |path, _| {
        let path = path.as_os_str().as_bytes();
        let below = excluded.iter().any(|e| {
            path.len() > e.len() && path.starts_with(e.as_bytes()) && path[e.len()] == b'/'
        });
        if below { Visit::Prune } else { Visit::Keep }
    })?;
    let mut seen = seen_of(root, &entries).map_err(|source| WalkError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    for path in excluded {
        if let Some(s) = seen.get_mut(path.as_bytes()) {
            (s.ino, s.born, s.size, s.mtime, s.ctime) = (0, None, 0, (0, 0), (0, 0));
        }
    }
    Ok((entries, seen))
}

/// What the walk compares, per path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Seen {
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The inode's identity: its number, which a file system may give
    /// again at once to a new file, and its birth time where known.
    ino: u64,
    born: Option<(u64, u32)>,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn seen_of(root: &Path, entries: &[Entry]) -> Result<BTreeMap<Vec<u8>, Seen>, std::io::Error> {
    let mut out = BTreeMap::new();
    for entry in entries {
        let meta = std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(&entry.path)))?;
        // A hard link's kind names the first path of its inode: the inode
        // itself is compared through `ino`.
        let kind = match &entry.kind {
            EntryKind::Hardlink { .. } | EntryKind::File { .. } => "file".to_string(),
            other => format!("{other:?}"),
        };
        out.insert(
            entry.path.clone(),
            Seen {
                kind,
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                xattrs: entry
                    .xattrs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ino: meta.ino(),
                born: meta
                    .created()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| (d.as_secs(), d.subsec_nanos())),
                size: meta.size(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            },
        );
    }
    Ok(out)
}

fn options() -> WalkOptions {
    WalkOptions {
        xattrs: true,
        ..WalkOptions::default()
    }
}

fn walk_error(root: &Path) -> impl Fn(WalkError) -> RunError + '_ {
    move |e| RunError::Io {
        path: root.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// Copies `lowers` (overlay lower directories, bottom to top) into `dest`
/// as one merged tree. `userxattr`: the snapshots were made for a user
/// namespace's overlay; `chown`: ownership can be applied.
pub fn merge(
    lowers: &[PathBuf],
    dest: &Path,
    userxattr: bool,
    chown: bool,
) -> Result<(), RunError> {
    std::fs::create_dir_all(dest).map_err(|source| RunError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    for lower in lowers {
        let entries = super::diff::diff(lower, &[], userxattr).map_err(walk_error(lower))?;
        // The tar streams through a pipe into the extractor: a layer is
        // never held in memory.
        let (reader, writer) = std::io::pipe().map_err(|source| RunError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        let producer = std::thread::spawn(move || {
            write_tar(
                &entries,
                TarOptions::default(),
                std::io::BufWriter::new(writer),
            )
            .map(|_| ())
        });
        let options = ExtractOptions {
            chown,
            overlay_whiteouts: false,
            user_xattrs: userxattr,
            oci_whiteouts: false,
        };
        let extracted = extract(std::io::BufReader::new(reader), dest, &options);
        let written = producer.join().expect("the tar writer does not panic");
        extracted.map_err(|source| RunError::Extract {
            digest: lower.display().to_string(),
            source,
        })?;
        written.map_err(|e| RunError::Io {
            path: lower.clone(),
            source: std::io::Error::other(e),
        })?;
    }
    Ok(())
}

/// Records the state of `root` before the step, in `dir`; `excluded`
/// (paths relative to `root`: what the sandbox put there) are left out of
/// this walk and of the one after the step.
pub fn record(
    root: &Path,
    dir: &Path,
    excluded: &[String],
) -> Result<Option<super::opened::Watch>, RunError> {
    let (_, seen) = walk_except(root, excluded).map_err(walk_error(root))?;
    let dirs = seen
        .iter()
        .filter(|(_, s)| s.kind == "Dir")
        .map(|(path, _)| path.as_slice());
    let watch = super::opened::Watch::start(root, dirs);
    let before = Before {
        excluded: excluded.to_vec(),
        seen: seen.into_iter().collect(),
    };
    let path = dir.join(BEFORE);
    let json = serde_json::to_vec(&before).map_err(|e| RunError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, json).map_err(|source| RunError::Io { path, source })?;
    Ok(watch)
}

/// The paths whose state differs between `before` and `now`, as overlayfs
/// would copy them up. A link made or removed changes the ctime of every
/// path of its inode, but overlayfs copies up only a new link's source: a
/// file whose only change is its ctime is unchanged, and an inode that
/// gained a path and is otherwise unchanged has its first path copied up.
/// A file `opened` for writing is copied up even if unchanged.
fn changed_paths(
    before: &State,
    now: &State,
    opened: &[Vec<u8>],
) -> std::collections::BTreeSet<Vec<u8>> {
    let ctime_only = |old: &Seen, new: &Seen| {
        old.kind == "file"
            && Seen {
                ctime: old.ctime,
                ..new.clone()
            } == *old
    };
    let mut changed = std::collections::BTreeSet::new();
    let mut groups: BTreeMap<u64, Vec<&Vec<u8>>> = BTreeMap::new();
    for (path, seen) in now {
        // Paths the sandbox provides have no inode recorded (0).
        if seen.kind == "file" && seen.ino != 0 {
            groups.entry(seen.ino).or_default().push(path);
        }
        match before.get(path) {
            Some(old) if old == seen || ctime_only(old, seen) => {}
            _ => {
                changed.insert(path.clone());
            }
        }
    }
    for path in opened {
        // Paths the sandbox provides have no inode recorded (0).
        if now
            .get(path)
            .is_some_and(|s| s.kind == "file" && s.ino != 0 && before.contains_key(path))
        {
            changed.insert(path.clone());
        }
    }
    for paths in groups.values() {
        let new_link = paths.iter().any(|p| !before.contains_key(*p));
        let copied_up = paths
            .iter()
            .any(|p| before.contains_key(*p) && changed.contains(*p));
        if new_link
            && !copied_up
            && let Some(source) = paths.iter().find(|p| before.contains_key(**p))
        {
            changed.insert((*source).clone());
        }
    }
    changed
}

/// Whether `dir` holds a copy-mode run.
pub fn was_used(dir: &Path) -> bool {
    dir.join(BEFORE).is_file()
}

/// The step's changes to `root` since [`record`], as layer entries,
/// sorted: changed and new entries, whiteouts for removed paths, opaque
/// markers for directories made anew.
pub fn changes(root: &Path, dir: &Path) -> Result<Vec<Entry>, WalkError> {
    let io = |e: std::io::Error| WalkError::Io {
        path: dir.join(BEFORE),
        source: e,
    };
    let text = std::fs::read(dir.join(BEFORE)).map_err(io)?;
    let recorded: Before =
        serde_json::from_slice(&text).map_err(|e| io(std::io::Error::other(e)))?;
    let before: BTreeMap<Vec<u8>, Seen> = recorded.seen.into_iter().collect();
    let (now_entries, now) = walk_except(root, &recorded.excluded)?;
    // Directories made anew: everything below them is new, and what was
    // there before is hidden by the opaque marker.
    // (overlayfs marks a directory opaque when it is made where the layer
    // below had another directory, or a file: the same here.)
    let remade: Vec<Vec<u8>> = now
        .iter()
        .filter(|(path, seen)| {
            seen.kind == "Dir"
                && before.get(*path).is_some_and(|old| {
                    old.kind != "Dir" || old.ino != seen.ino || old.born != seen.born
                })
        })
        .map(|(path, _)| path.clone())
        .collect();
    // Directories now something else: the new entry replaces them whole.
    let replaced: Vec<Vec<u8>> = now
        .iter()
        .filter(|(path, seen)| {
            seen.kind != "Dir" && before.get(*path).is_some_and(|old| old.kind == "Dir")
        })
        .map(|(path, _)| path.clone())
        .collect();
    let below = |path: &[u8], dirs: &[Vec<u8>]| {
        dirs.iter()
            .any(|d| path.len() > d.len() && path.starts_with(d) && path[d.len()] == b'/')
    };
    let changed = changed_paths(&before, &now, &super::opened::read(dir));
    let mut out = Vec::new();
    let mut unchanged = BTreeMap::new();
    for entry in now_entries {
        if changed.contains(&entry.path) {
            if remade.contains(&entry.path) {
                out.push(Entry::opaque(&entry.path));
            }
            out.push(entry);
        } else {
            unchanged.insert(entry.path.clone(), entry);
        }
    }
    // A removed path needs a whiteout unless a removed or remade
    // directory above it already hides it.
    let removed: Vec<Vec<u8>> = before
        .keys()
        .filter(|p| !now.contains_key(*p))
        .cloned()
        .collect();
    for path in &removed {
        if below(path, &removed) || below(path, &remade) || below(path, &replaced) {
            continue;
        }
        out.push(Entry::whiteout(path));
    }
    // overlayfs copies up the directories above every change; so does
    // this walk, for the same layer.
    let mut parents = Vec::new();
    for entry in &out {
        let mut path = entry.path.as_slice();
        while let Some(slash) = path.iter().rposition(|&b| b == b'/') {
            path = &path[..slash];
            if let Some(parent) = unchanged.remove(path) {
                parents.push(parent);
            }
        }
    }
    out.extend(parents);
    hoist_oci::layer::tar::sort_entries(&mut out);
    Ok(out)
}
