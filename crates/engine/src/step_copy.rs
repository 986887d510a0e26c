//! COPY and ADD as steps: where the sources come from (the context,
//! another stage, an image, URLs, heredocs), the destination, and the
//! layer; an unchanged context answers the step from its fingerprint
//! without listing or reading it.

use crate::add::{AddOptions, add};
use crate::cache_key::CopyBasis;
use crate::commit::Cached;
use crate::context::PatternSet;
use crate::copy::{CopyRequest, copy};
use crate::engine::{Builder, Inputs, StageState, StepResult};
use crate::error::BuildError;
use hoist_dockerfile::instructions::{CopyArgs, Instruction, Kind};
use hoist_dockerfile::shell::Lexer;
use hoist_oci::Digest;
use hoist_oci::Sha256;
use hoist_oci::layer::tar::Entry;
use hoist_oci::layer::tar::EntryKind;
use hoist_rootfs::user::resolve_chown;
use hoist_rootfs::view::{FsView, LayerIndex};
use hoist_store::{CacheRecord, CacheValue, CachedLayer};
use std::sync::Arc;

impl Builder<'_> {
    /// COPY and ADD.
    pub(crate) fn copy_step(
        &mut self,
        instr: &Instruction,
        expanded: &Instruction,
        state: &mut StageState,
        inputs: &Inputs<'_>,
    ) -> Result<StepResult, BuildError> {
        let (Kind::Copy(args) | Kind::Add(args)) = &expanded.kind else {
            unreachable!("copy_step takes COPY and ADD")
        };
        let is_add = matches!(expanded.kind, Kind::Add(_));
        let keyword = if is_add { "ADD" } else { "COPY" };
        if let Some(s) = args
            .sources
            .iter()
            .find(|s| !is_add && crate::add::is_url(s))
        {
            return Err(self.invalid(
                instr,
                format!("source can't be a URL for COPY: {s}"),
                Some("use ADD to download a file"),
            ));
        }
        if let Some(s) = args.sources.iter().find(|s| is_git_source(s)) {
            return Err(self.invalid(
                instr,
                format!("{keyword} of a git repository ({s}) is not supported yet"),
                Some("clone it into the build context and COPY it"),
            ));
        }
        let history = history(keyword, args);
        // An unchanged context answers the step from its fingerprint: no
        // listing, no content digest, no read of the layers below.
        let fast = self.fingerprint_key(state, keyword, expanded, args)?;
        if let Some(fast) = &fast
            && let Some((cached, key)) = self.fingerprint_hit(fast)?
        {
            return Ok(state.reuse(key, &cached, history));
        }
        // Keyed by what it reads: a hit needs no layer of the stage below.
        let key = self.sources_key(instr, state, keyword, expanded, args, inputs)?;
        if let Some(key) = key
            && let Some(Cached::Layer(cached)) = self.cached(&key)?
        {
            self.alias(fast, key, &cached)?;
            return Ok(state.reuse(key, &cached, history));
        }
        // A linked copy lands on nothing: the stage below is read only to
        // look up a --chown name (so a base left in its registry stays
        // there).
        let links = args.link && args.chmod.is_none();
        let names_owner = args
            .chown
            .as_deref()
            .is_some_and(|spec| spec.split(':').any(|id| id.parse::<u64>().is_err()));
        if !links || names_owner {
            self.read_view(instr, state)?;
        }
        let chown = match &args.chown {
            Some(spec) => {
                Some(resolve_chown(spec, &state.view).map_err(|e| self.step_error(instr, e))?)
            }
            None => None,
        };
        let chmod = match &args.chmod {
            Some(m) => Some(crate::chmod::Chmod::parse(m).map_err(|e| {
                self.invalid(
                    instr,
                    e,
                    Some("write --chmod=0755 or a symbolic mode such as --chmod=u+x"),
                )
            })?),
            None => None,
        };
        let excludes = if args.excludes.is_empty() {
            None
        } else {
            Some(
                PatternSet::new(args.excludes.iter())
                    .map_err(|e| self.invalid(instr, e.to_string(), None))?,
            )
        };
        let request = CopyRequest {
            sources: args.sources.clone(),
            dest: destination(&args.dest, &state.run().working_dir),
            chown,
            chmod,
            excludes,
            wildcards: true,
            parents: args.parents,
        };
        // Where the sources come from.
        let source_view: FsView = match &args.from {
            None => self.context_view()?.clone(),
            Some(from) => self.source_state(instr, inputs, from)?.view,
        };
        // BuildKit links only without --chmod; with it, --link is a plain
        // copy onto the stage.
        let dest_view = if links {
            FsView::default()
        } else {
            state.view.clone()
        };
        let mut changes = if is_add {
            let scratch = self.scratch()?;
            let options = AddOptions {
                unpack: args.unpack,
                checksum: args.checksum.as_deref(),
                local: args.from.is_none(),
                scratch: &scratch,
            };
            add(&source_view, &dest_view, &request, &options)
                .map_err(|e| self.step_error(instr, e))?
        } else {
            copy(&source_view, &dest_view, &request).map_err(|e| self.step_error(instr, e))?
        };
        for content in &args.contents {
            // An unquoted heredoc delimiter means the body is expanded, with
            // BuildKit's raw rules: quotes kept, always `\` as the escape.
            let data = if content.expand {
                Lexer::new('\\')
                    .skip_process_quotes(true)
                    .process_word(&content.data, &state.scope)
                    .map_err(|e| {
                        self.invalid(instr, format!("heredoc <<{}: {e}", content.path), None)
                    })?
            } else {
                content.data.clone()
            };
            let file = FsView::new(vec![Arc::new(LayerIndex::from_entries([Entry::file(
                content.path.clone(),
                data,
            )
            .with_mode(0o644)]))]);
            let mut view = dest_view.clone();
            view.push(Arc::new(changes.clone()));
            let heredoc = CopyRequest {
                sources: vec![content.path.clone()],
                wildcards: false,
                ..request.clone()
            };
            let more = copy(&file, &view, &heredoc).map_err(|e| self.step_error(instr, e))?;
            for e in more.entries() {
                changes.insert(e.clone());
            }
        }
        let (bytes, hit) =
            self.commit_layer(instr, state, keyword, &expanded.original, changes, key)?;
        if let Some(fast) = fast {
            // The next build with an unchanged context takes the key from here.
            let layer = match state.layers.last() {
                Some((blob, _)) => Some(blob.descriptor()?.digest),
                None => None,
            };
            self.store
                .cache_put(&fast.hex(), &CacheRecord::alias(state.key, layer))?;
        }
        Ok(StepResult {
            history: Some(history),
            layer_bytes: Some(bytes),
            cached: hit,
        })
    }

    /// Records that the fingerprint key `fast` (if any) stands for `key`,
    /// whose layer is `layer`: the next build of an unchanged context
    /// finds the step without hashing its sources.
    fn alias(
        &self,
        fast: Option<Digest>,
        key: Digest,
        layer: &CachedLayer,
    ) -> Result<(), BuildError> {
        if let Some(fast) = fast {
            self.store
                .cache_put(&fast.hex(), &CacheRecord::alias(key, Some(layer.digest)))?;
        }
        Ok(())
    }

    /// The key of a COPY or ADD from what it reads (see
    /// [`CopyBasis::Sources`]): the entries its sources select in the
    /// context, or the key of the stage or image it copies from. `None`
    /// for an ADD of a URL (what it reads is known only once downloaded)
    /// and where the sources cannot be read: the step then fails, or is
    /// keyed by the layer it makes.
    fn sources_key(
        &mut self,
        instr: &Instruction,
        state: &StageState,
        keyword: &str,
        expanded: &Instruction,
        args: &CopyArgs,
        inputs: &Inputs<'_>,
    ) -> Result<Option<Digest>, BuildError> {
        if args.sources.iter().any(|s| crate::add::is_url(s)) {
            return Ok(None);
        }
        let digest = match &args.from {
            None => match self.context_sources(&args.sources)? {
                Some(digest) => digest,
                None => return Ok(None),
            },
            Some(from) => {
                let source = match inputs.planned.stage_by_ref(from) {
                    Some(i) => match inputs.done.get(&i) {
                        Some(stage) => stage.key,
                        None => return Ok(None),
                    },
                    None => {
                        let platform = self.request.options.target_platform.clone();
                        self.image_state(instr, from, &platform)?.key
                    }
                };
                crate::cache_key::from_stage(&source)
            }
        };
        Ok(Some(crate::cache_key::copy(
            &state.key,
            &copy_step(keyword, expanded, args, state),
            CopyBasis::Sources,
            self.layer_format(),
            &digest,
        )))
    }

    /// What `sources` select in the build context, as one digest: each
    /// source as written, the paths it matches (wildcards resolved,
    /// symlinks followed as COPY follows them) and every entry at or below
    /// each, with its type, mode, link target, content digest and mtime
    /// as the layer clamps it. Owners are left out: COPY gives context
    /// files to root or to --chown. `None` where a source cannot be
    /// resolved (the copy then reports why).
    fn context_sources(&mut self, sources: &[String]) -> Result<Option<Digest>, BuildError> {
        let view = self.context_view()?.clone();
        let epoch = self.request.source_date_epoch;
        let mut h = Sha256::new();
        for src in sources {
            h.update(src.as_bytes());
            h.update(&[0]);
            let matched = if crate::copy::contains_wildcards(src) {
                crate::copy::resolve_wildcards(&view, src)
            } else {
                Ok(vec![crate::copy::clean(src)])
            };
            let Ok(matched) = matched else {
                return Ok(None);
            };
            for path in matched {
                let Ok(root) = view.resolve(&path, true) else {
                    return Ok(None);
                };
                h.update(&path);
                h.update(&[0]);
                h.update(&root);
                h.update(&[0]);
                let prefix = [root.as_slice(), b"/"].concat();
                let selected = view.layers()[0]
                    .entries()
                    .filter(|e| root.is_empty() || e.path == root || e.path.starts_with(&prefix));
                for entry in selected {
                    let kind = match &entry.kind {
                        EntryKind::File { content, size } => {
                            let digest =
                                self.hasher
                                    .digest(content)
                                    .map_err(|e| BuildError::Context {
                                        path: self.request.context.clone(),
                                        source: Box::new(e),
                                    })?;
                            format!("f{size}:{digest}")
                        }
                        other => format!("{other:?}"),
                    };
                    h.update(&entry.path);
                    h.update(
                        format!("\0{kind}\0{:o}\0{}\0", entry.mode, entry.mtime.min(epoch))
                            .as_bytes(),
                    );
                    for (k, v) in &entry.xattrs {
                        h.update(k);
                        h.update(&[0]);
                        h.update(v);
                        h.update(&[0]);
                    }
                }
            }
        }
        Ok(Some(h.finish()))
    }

    /// The key of a COPY from the build context taken from the context's
    /// fingerprint ([`crate::context::fingerprint`]) instead of its
    /// contents; `None` where the step reads anything else (another stage,
    /// an image, a URL, a heredoc) or the cache is not used.
    fn fingerprint_key(
        &mut self,
        state: &StageState,
        keyword: &str,
        expanded: &Instruction,
        args: &CopyArgs,
    ) -> Result<Option<Digest>, BuildError> {
        if self.request.no_cache
            || args.from.is_some()
            || !args.contents.is_empty()
            || args.sources.iter().any(|s| crate::add::is_url(s))
        {
            return Ok(None);
        }
        let fingerprint = match self.context_fingerprint {
            Some(Some(f)) => f,
            Some(None) => return Ok(None),
            None => {
                let ignore = self.context_ignore()?;
                // A context that cannot be walked this way (changing
                // under the walk, unreadable) takes the listing's path,
                // which says what is wrong.
                let f = crate::context::fingerprint::fingerprint(
                    &self.request.context,
                    ignore.as_ref().as_ref(),
                )
                .ok();
                self.context_fingerprint = Some(f);
                let Some(f) = f else {
                    return Ok(None);
                };
                f
            }
        };
        Ok(Some(crate::cache_key::copy(
            &state.key,
            &copy_step(keyword, expanded, args, state),
            CopyBasis::Fingerprint,
            self.layer_format(),
            &fingerprint,
        )))
    }

    /// The layer and key recorded under a fingerprint key, if its layer is
    /// still cached.
    fn fingerprint_hit(&self, fast: &Digest) -> Result<Option<(CachedLayer, Digest)>, BuildError> {
        let Some(CacheRecord {
            value: CacheValue::Alias { key },
            ..
        }) = self.store.cache_get(&fast.hex())?
        else {
            return Ok(None);
        };
        Ok(match self.cached(&key)? {
            Some(crate::commit::Cached::Layer(cached)) => Some((cached, key)),
            _ => None,
        })
    }
}

/// The step as its keys see it.
fn copy_step<'a>(
    keyword: &'a str,
    expanded: &'a Instruction,
    args: &'a CopyArgs,
    state: &'a StageState,
) -> crate::cache_key::CopyStep<'a> {
    crate::cache_key::CopyStep {
        keyword,
        original: &expanded.original,
        args,
        workdir: &state.run().working_dir,
    }
}

/// BuildKit's history text of a COPY or ADD.
fn history(keyword: &str, args: &CopyArgs) -> String {
    let mut history = String::from(keyword);
    if let Some(c) = &args.chown {
        history.push_str(&format!(" --chown={c}"));
    }
    if let Some(m) = &args.chmod {
        history.push_str(&format!(" --chmod={m}"));
    }
    for s in &args.sources {
        history.push_str(&format!(" {s}"));
    }
    for c in &args.contents {
        history.push_str(&format!(" <<{}", c.path));
    }
    history.push_str(&format!(" {}", args.dest));
    history
}

/// The destination as an absolute path: a relative one is under the
/// working directory; a trailing `/` (or `.`) means "into this directory"
/// and is kept.
fn destination(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') {
        return dest.to_string();
    }
    let base = if workdir.is_empty() { "/" } else { workdir };
    let rel = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let joined = format!("{}/{rel}", base.trim_end_matches('/'));
    let trailing = rel.ends_with('/') || rel.ends_with("/.") || rel == ".";
    let mut clean = format!("/{}", String::from_utf8_lossy(&crate::copy::clean(&joined)));
    if trailing && !clean.ends_with('/') {
        clean.push('/');
    }
    clean
}

/// Whether ADD would clone `src` as a git repository rather than fetch or
/// copy it (BuildKit's `isGitSource`): `git://`, `ssh://`, `git@host:`, or
/// an http(s) URL whose path ends in `.git` (a `#ref` may follow).
fn is_git_source(src: &str) -> bool {
    if src.starts_with("git://") || src.starts_with("ssh://") || src.starts_with("git@") {
        return true;
    }
    if let Some(rest) = src
        .strip_prefix("https://")
        .or_else(|| src.strip_prefix("http://"))
    {
        let path = rest.split(['#', '?']).next().unwrap_or(rest);
        return path.trim_end_matches('/').ends_with(".git");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_resolve_against_the_working_directory() {
        assert_eq!(destination("/abs/x", "/app"), "/abs/x");
        assert_eq!(destination("x", "/app"), "/app/x");
        assert_eq!(destination("x/", "/app"), "/app/x/");
        assert_eq!(destination(".", "/app"), "/app/");
        assert_eq!(destination("", ""), "/");
        assert_eq!(destination("../up", "/app/sub"), "/app/up");
        assert_eq!(destination("d/.", "/"), "/d/");
    }

    #[test]
    fn git_sources_are_told_as_buildkit_tells_them() {
        for git in [
            "git://host/repo",
            "ssh://git@host/repo",
            "git@github.com:o/r.git",
            "https://host/o/r.git",
            "https://host/o/r.git#main",
            "http://host/r.git/",
        ] {
            assert!(is_git_source(git), "{git}");
        }
        for not in [
            "https://host/file.tar.gz",
            "https://host/r.git.tar",
            "src/r.git",
        ] {
            assert!(!is_git_source(not), "{not}");
        }
    }
}
