//! COPY and ADD's file semantics: which entries a copy creates, exactly as
//! BuildKit's copier (fsutil) does it.
//!
//! Takes a source view (the build context, a stage, an image), the
//! destination stage's view and the request (sources, destination, owner,
//! mode, excludes), and returns the layer the copy makes: every entry it
//! creates or changes, plus the unchanged parent directories, as an
//! overlay upper directory would hold them. Nothing is read or written on
//! disk: file contents travel as references to where they already are.
//!
//! The rules, from BuildKit's file backend and fsutil's `copy.Copy`:
//! - sources are cleaned and rooted at `/` of the source; wildcards are
//!   resolved with Go's `filepath.Match` from the first component holding
//!   one, and a wildcard matching nothing copies nothing;
//! - the source path itself is followed if it is a symlink; symlinks below
//!   it are copied as symlinks;
//! - a directory source copies its contents; a file source lands inside the
//!   destination if that is an existing directory (or a path ending in `/`,
//!   which is created first), else at the destination path itself;
//! - missing parent directories are created 0755 (or `--chmod`), owned by
//!   root (or `--chown`); an existing destination directory keeps its own
//!   metadata, directories below it take the source's;
//! - owner and mode come from the source unless `--chown`/`--chmod` say
//!   otherwise; files sharing an inode stay hardlinked within one source
//!   (each source is its own copy, so `COPY a b /d/` breaks a link);
//! - the destination is resolved inside the root: symlinks in it are
//!   followed but can never lead outside.

use crate::context::{DirMatches, PatternError, PatternSet, filepath_match};
use hoist_oci::layer::tar::{Entry, EntryKind};
use hoist_rootfs::view::{FsView, LayerIndex, ViewError, components, join};
use std::collections::HashMap;
use std::sync::Arc;

/// Why a copy cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("cannot replace directory /{path} with a file")]
    ReplaceDirWithFile { path: String },
    #[error("cannot copy a directory to /{path}: it is not a directory")]
    CopyToNonDir { path: String },
    #[error("cannot create directory /{path}: a parent is not a directory")]
    NotADirectory { path: String },
    #[error("invalid wildcard in {source_path}")]
    Wildcard {
        source_path: String,
        #[source]
        source: PatternError,
    },
    #[error(transparent)]
    View(#[from] ViewError),
}

impl CopyError {
    /// What to do about it, where hoist knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            CopyError::NotFound { path } if path.split('/').any(|part| part == "..") => Some(
                "sources cannot leave the build context: `..` stops at its root (as in BuildKit), \
                 so this looked inside the context; move the file into the context, or build from \
                 a directory that holds both (with -f naming the Dockerfile)"
                    .into(),
            ),
            CopyError::NotFound { .. } => Some(
                "check the path is relative to the build context and not excluded by .dockerignore"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// One COPY or ADD of local-style sources.
#[derive(Debug, Clone, Default)]
pub struct CopyRequest {
    /// Source paths as written (after variable expansion), relative to the
    /// source's root.
    pub sources: Vec<String>,
    /// The destination, absolute (WORKDIR already applied), a trailing `/`
    /// kept: it means "a directory".
    pub dest: String,
    /// `--chown`, resolved to numbers.
    pub chown: Option<(u64, u64)>,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<super::chmod::Chmod>,
    /// `--exclude` patterns, matched against paths below each source.
    pub excludes: Option<PatternSet>,
    /// Whether wildcards in sources are expanded (false for heredoc files).
    pub wildcards: bool,
    /// `COPY --parents`: keep each source's path (below a `/./` marker, if
    /// any) under the destination.
    pub parents: bool,
}

/// Runs `request` from `source` onto `dest`; returns the layer it makes.
pub fn copy(
    source: &FsView,
    dest: &FsView,
    request: &CopyRequest,
) -> Result<LayerIndex, CopyError> {
    let mut view = dest.clone();
    view.push(Arc::new(LayerIndex::default()));
    let mut copier = Copier {
        source,
        view,
        request,
        inodes: HashMap::new(),
        include: None,
        parent_dirs: Vec::new(),
    };
    if request.parents {
        for src in &request.sources {
            copier.copy_with_parents(src)?;
        }
        let changes = copier.take_changes();
        return Ok(with_parents(changes, dest));
    }
    for src in &request.sources {
        let matches = if request.wildcards && contains_wildcards(src) {
            resolve_wildcards(source, src)?
        } else {
            vec![clean(src)]
        };
        for m in matches {
            // BuildKit runs one copier per source path, each with its own
            // inode map: hardlinks survive within a source, not across.
            copier.inodes.clear();
            copier.copy_one(&m, src)?;
        }
    }
    let changes = copier.take_changes();
    Ok(with_parents(changes, dest))
}

struct Copier<'a> {
    source: &'a FsView,
    /// The destination with the copy's own changes as its top layer.
    view: FsView,
    request: &'a CopyRequest,
    /// Source hardlink identity -> the destination path it was copied to.
    inodes: HashMap<Vec<u8>, Vec<u8>>,
    /// `--parents`: only paths matching this pattern (or below a match) are
    /// copied, with the directories leading to them.
    include: Option<PatternSet>,
    /// Source directories passed on the way down, not yet created at the
    /// destination (fsutil's `parentDirs`).
    parent_dirs: Vec<ParentDir>,
}

/// What `--exclude` and `--parents` patterns matched for a directory, handed
/// to its entries (patternmatcher's parent results).
#[derive(Default)]
struct PatternState {
    excludes: DirMatches,
    includes: DirMatches,
}

/// A directory on the way to a copied path.
struct ParentDir {
    entry: Entry,
    target: Vec<u8>,
    copied: bool,
}

/// The root directory entry, which views do not store.
fn root_dir() -> Entry {
    Entry::dir("").with_mode(0o755)
}

impl Copier<'_> {
    fn pending(&mut self) -> &mut LayerIndex {
        self.view
            .top_mut()
            .expect("the copy's own layer is not shared")
    }

    fn take_changes(&mut self) -> LayerIndex {
        std::mem::take(self.pending())
    }

    /// BuildKit's `COPY --parents`: the part before a `/./` (or the root)
    /// is copied with the rest as an include pattern, so each match keeps
    /// its path, and the directories leading to it, under the destination.
    fn copy_with_parents(&mut self, src: &str) -> Result<(), CopyError> {
        let (parent, pattern) = match src.split_once("/./") {
            Some((parent, pattern)) => (parent, pattern),
            None => ("/", src),
        };
        let pattern = String::from_utf8_lossy(&clean(pattern)).into_owned();
        if !contains_wildcards(parent) && !contains_wildcards(&pattern) {
            let required = join(&clean(parent), pattern.as_bytes());
            let resolved = self.source.resolve(&required, true)?;
            if !resolved.is_empty() && self.source.get(&resolved).is_none() {
                return Err(CopyError::NotFound {
                    path: format!("/{}", String::from_utf8_lossy(&required)),
                });
            }
        }
        let include = PatternSet::new([pattern.as_str()]).map_err(|e| CopyError::Wildcard {
            source_path: src.to_string(),
            source: e.source,
        })?;
        let parents = if contains_wildcards(parent) {
            resolve_wildcards(self.source, parent)?
        } else {
            vec![clean(parent)]
        };
        self.include = Some(include);
        for p in parents {
            self.inodes.clear();
            self.parent_dirs.clear();
            self.copy_one(&p, src)?;
        }
        self.include = None;
        Ok(())
    }

    /// fsutil's `createParentDirs`: the directories leading to a copied
    /// path that do not exist yet at the destination, with their source's
    /// owner and mode.
    fn create_parent_dirs(&mut self) -> Result<(), CopyError> {
        for i in 0..self.parent_dirs.len() {
            if self.parent_dirs[i].copied {
                continue;
            }
            let target = self.parent_dirs[i].target.clone();
            if self.view.get(&target).is_none() && !target.is_empty() {
                let source = self.parent_dirs[i].entry.clone();
                let mut dir = source.clone();
                dir.path = target;
                self.apply_info(&mut dir, &source);
                self.pending().insert(dir);
            }
            self.parent_dirs[i].copied = true;
        }
        Ok(())
    }

    /// fsutil's `Copy` for one resolved source path.
    fn copy_one(&mut self, src: &[u8], written: &str) -> Result<(), CopyError> {
        let request = self.request;
        let dest_raw = request.dest.as_str();
        // Create the destination's parent, or the destination itself when it
        // names a directory (`/app/`, `.`).
        let (dir_part, file_part) = match dest_raw.rfind('/') {
            Some(i) => (&dest_raw[..=i], &dest_raw[i + 1..]),
            None => ("", dest_raw),
        };
        let ensure = if !file_part.is_empty() && file_part != "." {
            dir_part
        } else {
            dest_raw
        };
        if !ensure.is_empty() {
            let p = self.view.resolve(clean(ensure).as_slice(), true)?;
            self.mkdir_all(&p)?;
        }
        let dst = self.view.resolve(&clean(dest_raw), true)?;
        let followed = self.source.resolve(src, true)?;
        let src_entry = match followed.is_empty() {
            true => root_dir(),
            false => self
                .source
                .get(&followed)
                .cloned()
                .ok_or_else(|| CopyError::NotFound {
                    path: if written.starts_with('/') {
                        written.to_string()
                    } else {
                        format!("/{written}")
                    },
                })?,
        };
        let src_is_dir = src_entry.kind == EntryKind::Dir;
        let dest_exists = dst.is_empty() || self.view.get(&dst).is_some();
        let mut dest_path = dst.clone();
        if !src_is_dir && self.view.is_dir(&dst) {
            let base = components(src).last().unwrap_or(b"");
            dest_path = join(&dst, base);
        }
        let target = if src_is_dir && !dest_exists {
            dest_path.clone()
        } else {
            parent(&dest_path).to_vec()
        };
        self.mkdir_all(&target)?;
        self.copy_entry(
            &followed,
            src_entry,
            "",
            &dest_path,
            false,
            &PatternState::default(),
        )
    }

    /// `MkdirAll` with the copy's mode and owner for what it creates.
    fn mkdir_all(&mut self, path: &[u8]) -> Result<(), CopyError> {
        let mut current = Vec::new();
        for part in components(path) {
            current = join(&current, part);
            match self.view.get(&current).map(|e| &e.kind) {
                Some(EntryKind::Dir) => {}
                Some(_) => {
                    return Err(CopyError::NotADirectory {
                        path: String::from_utf8_lossy(&current).into_owned(),
                    });
                }
                None => {
                    let (uid, gid) = self.request.chown.unwrap_or((0, 0));
                    let dir = Entry::dir(current.clone())
                        .with_mode(super::chmod::Chmod::created_dir_mode(
                            self.request.chmod.as_ref(),
                        ))
                        .with_owner(uid, gid);
                    self.pending().insert(dir);
                }
            }
        }
        Ok(())
    }

    /// fsutil's `copier.copy`: one source entry onto `target`, recursively.
    fn copy_entry(
        &mut self,
        src: &[u8],
        entry: Entry,
        components_path: &str,
        target: &[u8],
        overwrite: bool,
        parent: &PatternState,
    ) -> Result<(), CopyError> {
        let mut include = true;
        let mut matches = DirMatches::default();
        let mut includes = DirMatches::default();
        if let Some(pattern) = &self.include
            && !components_path.is_empty()
        {
            let (matched, m) = pattern.matches_with_parent(components_path, &parent.includes);
            include = matched;
            includes = m;
        }
        if let Some(excludes) = &self.request.excludes
            && !components_path.is_empty()
        {
            let (excluded, m) = excludes.matches_with_parent(components_path, &parent.excludes);
            matches = m;
            if excluded {
                if !excludes.has_exceptions() && self.include.is_none() {
                    return Ok(());
                }
                include = false;
            }
        }
        let is_dir = entry.kind == EntryKind::Dir;
        if !include && !is_dir {
            return Ok(());
        }
        // The root always exists and is never an entry of a layer.
        let existing = match target.is_empty() {
            true => Some(root_dir()),
            false => self.view.get(target).cloned(),
        };
        if !is_dir && include && existing.as_ref().is_some_and(|e| e.kind == EntryKind::Dir) {
            return Err(CopyError::ReplaceDirWithFile {
                path: String::from_utf8_lossy(target).into_owned(),
            });
        }
        if include {
            self.create_parent_dirs()?;
        }
        let mut copy_info = include;
        let mut out = entry.clone();
        out.path = target.to_vec();
        match &entry.kind {
            EntryKind::Dir => {
                let mut created = false;
                if include {
                    match &existing {
                        None => created = true,
                        Some(e) if e.kind != EntryKind::Dir => {
                            return Err(CopyError::CopyToNonDir {
                                path: String::from_utf8_lossy(target).into_owned(),
                            });
                        }
                        Some(_) => {}
                    }
                }
                if !overwrite {
                    copy_info = created;
                }
                if copy_info {
                    self.apply_info(&mut out, &entry);
                    self.pending().insert(out);
                }
                self.parent_dirs.push(ParentDir {
                    entry: entry.clone(),
                    target: target.to_vec(),
                    copied: include,
                });
                let below = PatternState {
                    excludes: matches,
                    includes,
                };
                for name in self.source.children(src) {
                    let child_src = join(src, &name);
                    let Some(child) = self.source.get(&child_src).cloned() else {
                        continue;
                    };
                    let name_str = String::from_utf8_lossy(&name);
                    let child_components = if components_path.is_empty() {
                        name_str.into_owned()
                    } else {
                        format!("{components_path}/{name_str}")
                    };
                    self.copy_entry(
                        &child_src,
                        child,
                        &child_components,
                        &join(target, &name),
                        true,
                        &below,
                    )?;
                }
                self.parent_dirs.pop();
                return Ok(());
            }
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => {
                let identity = match &entry.kind {
                    EntryKind::Hardlink { target } => target.clone(),
                    _ => src.to_vec(),
                };
                if let Some(first) = self.inodes.get(&identity) {
                    out.kind = EntryKind::Hardlink {
                        target: first.clone(),
                    };
                } else {
                    if let EntryKind::Hardlink { target: linked } = &entry.kind {
                        let file = self.source.get(linked).cloned().ok_or_else(|| {
                            CopyError::NotFound {
                                path: format!("/{}", String::from_utf8_lossy(linked)),
                            }
                        })?;
                        out.kind = file.kind;
                    }
                    self.inodes.insert(identity, target.to_vec());
                }
            }
            EntryKind::Symlink { .. }
            | EntryKind::CharDevice { .. }
            | EntryKind::BlockDevice { .. }
            | EntryKind::Fifo => {}
        }
        self.apply_info(&mut out, &entry);
        self.pending().insert(out);
        Ok(())
    }

    /// fsutil's `copyFileInfo`: owner, mode and times from the source,
    /// unless `--chown`/`--chmod` override them (never a symlink's mode).
    fn apply_info(&self, out: &mut Entry, src: &Entry) {
        if let Some((uid, gid)) = self.request.chown {
            out.uid = uid;
            out.gid = gid;
        } else {
            out.uid = src.uid;
            out.gid = src.gid;
        }
        out.mode = match (&src.kind, &self.request.chmod) {
            (EntryKind::Symlink { .. }, _) => src.mode,
            (kind, Some(chmod)) => chmod.apply(src.mode, *kind == EntryKind::Dir),
            (_, None) => src.mode,
        };
        out.mtime = src.mtime;
        out.xattrs = src.xattrs.clone();
    }
}

/// BuildKit's `ResolveWildcards`: everything below the wildcard-free
/// prefix whose relative path matches the rest, not descending into a
/// matched directory. Sorted, as Go's `filepath.Walk` visits.
pub(crate) fn resolve_wildcards(source: &FsView, src: &str) -> Result<Vec<Vec<u8>>, CopyError> {
    let parts: Vec<&str> = src
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let split = parts
        .iter()
        .position(|p| contains_wildcards(p))
        .unwrap_or(parts.len());
    let base = source.resolve(parts[..split].join("/").as_bytes(), true)?;
    let pattern = parts[split..].join("/");
    let mut out = Vec::new();
    let mut stack = vec![(base.clone(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        if !source.is_dir(&dir) {
            continue;
        }
        let mut children = source.children(&dir);
        children.reverse();
        for name in children {
            let path = join(&dir, &name);
            let name = String::from_utf8_lossy(&name);
            let rel = if rel_dir.is_empty() {
                name.into_owned()
            } else {
                format!("{rel_dir}/{name}")
            };
            let matched = filepath_match(&pattern, &rel).map_err(|source| CopyError::Wildcard {
                source_path: src.to_string(),
                source,
            })?;
            if matched {
                out.push((path, true));
            } else if source.is_dir(&path) {
                stack.push((path, rel));
            }
        }
    }
    let mut out: Vec<Vec<u8>> = out.into_iter().map(|(p, _)| p).collect();
    out.sort();
    Ok(out)
}

/// Adds to `changes` every parent directory of its entries that the copy
/// did not itself create, as it is in `base`: an overlay upper directory
/// holds the parents of what changed, and so does the layer.
pub(super) fn with_parents(mut changes: LayerIndex, base: &FsView) -> LayerIndex {
    let mut missing = Vec::new();
    for entry in changes.entries() {
        let mut path = entry.path.as_slice();
        while let Some(cut) = path.iter().rposition(|&b| b == b'/') {
            path = &path[..cut];
            if changes.get(path).is_none()
                && let Some(dir) = base.get(path)
            {
                missing.push(dir.clone());
            }
        }
    }
    for dir in missing {
        changes.insert(dir);
    }
    changes
}

/// A path cleaned as Go's `path.Clean("/" + p)`, without the leading `/`.
pub fn clean(p: &str) -> Vec<u8> {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/").into_bytes()
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// fsutil's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
pub fn contains_wildcards(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests;
