//! RUN's `--mount`s: each parsed with the stage's variables, its target
//! checked against the image, and its source prepared (a cache directory
//! locked as its sharing mode says, a stage's or the context's files, a
//! tmpfs) before the step runs; secrets and ssh agents only once it does.

use crate::engine::{Builder, Inputs, StageState};
use crate::error::{BuildError, StepError};
use hoist_dockerfile::instructions::{Instruction, MountSpec, MountType, Sharing};
use hoist_oci::Sha256;
use hoist_oci::layer::tar::{Content, Entry, EntryKind};
use hoist_rootfs::view::FsView;
use hoist_run::{MountSource, RunError, RunMount, SecretBytes};
use std::path::{Path, PathBuf};

/// A RUN's `--mount`s, prepared.
pub(crate) struct PreparedMounts {
    /// What the sandbox mounts; secret and ssh sources are placeholders
    /// until the step runs.
    pub mounts: Vec<RunMount>,
    /// Mount points the sandbox creates (missing in the image), left out
    /// of the layer as newer BuildKit leaves them out.
    pub stubs: Vec<String>,
    /// Each mount as key text.
    pub texts: Vec<String>,
    pub secrets: Vec<PendingSecret>,
    pub agents: Vec<PendingAgent>,
    /// The cache mounts' locks, held until the step is done.
    pub locks: Vec<std::fs::File>,
}

/// A secret the step gets once it runs.
pub(crate) struct PendingSecret {
    pub id: String,
    /// Its mount in [`PreparedMounts::mounts`], if it is a file.
    pub index: Option<usize>,
    /// The variable that holds it, if any (`env=`).
    pub env: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// An ssh agent the step gets once it runs.
pub(crate) struct PendingAgent {
    pub id: String,
    pub index: usize,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Builder<'_> {
    /// A RUN's `--mount`s, prepared (see [`PreparedMounts`]).
    pub(crate) fn run_mounts(
        &mut self,
        instr: &Instruction,
        state: &StageState,
        inputs: &Inputs<'_>,
        mounts: &[MountSpec],
    ) -> Result<PreparedMounts, BuildError> {
        let mut prepared = PreparedMounts {
            mounts: Vec::new(),
            stubs: Vec::new(),
            texts: Vec::new(),
            secrets: Vec::new(),
            agents: Vec::new(),
            locks: Vec::new(),
        };
        for spec in mounts {
            let raw = spec.text();
            let lexer = &self.lexer;
            let mut m = spec
                .expand(&mut |v| {
                    lexer
                        .process_word(v, &state.scope)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| {
                    self.invalid(instr, e.message, (!e.hint.is_empty()).then_some(&*e.hint))
                })?;
            // The mount's key text: ids, targets and options, never a
            // secret's content (BuildKit keys a secret by its id too).
            prepared.texts.push(format!("{m:?}"));
            let index = prepared.mounts.len();
            match m.kind {
                MountType::Secret => {
                    // BuildKit: `source` is another name for the id, which
                    // defaults to the target's base name; the target to
                    // /run/secrets/ID, unless the secret is only a variable.
                    let id = m
                        .id
                        .clone()
                        .or_else(|| m.source.clone())
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .map(|t| t.trim_end_matches('/').rsplit('/').next().unwrap_or(t))
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                    if !self.request.secrets.secrets.contains_key(&id) {
                        if m.required {
                            return Err(self.missing_secret(instr, "secret", &id));
                        }
                        continue;
                    }
                    if m.target.is_none() && m.env.is_none() {
                        m.target = Some(format!("/run/secrets/{id}"));
                    }
                    prepared.secrets.push(PendingSecret {
                        id,
                        index: m.target.is_some().then_some(index),
                        env: m.env.clone(),
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    });
                    if m.target.is_none() {
                        continue;
                    }
                }
                MountType::Ssh => {
                    let id = m.id.clone().unwrap_or_else(|| "default".into());
                    if !self.request.secrets.ssh.contains_key(&id) {
                        if m.required {
                            return Err(self.missing_secret(instr, "ssh", &id));
                        }
                        continue;
                    }
                    if m.target.is_none() {
                        m.target =
                            Some(format!("/run/buildkit/ssh_agent.{}", prepared.agents.len()));
                    }
                    prepared.agents.push(PendingAgent {
                        id,
                        index,
                        mode: m.mode.unwrap_or(0o600),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    });
                }
                _ => {}
            }
            let Some(target) = m.target.clone() else {
                return Err(self.invalid(
                    instr,
                    format!("--mount={raw}: the mount needs a target"),
                    None,
                ));
            };
            let target = crate::meta::normalize_workdir(&state.run().working_dir, &target);
            prepared
                .stubs
                .extend(self.mount_point(instr, &state.view, &target)?);
            let source = match m.kind {
                MountType::Tmpfs => MountSource::Tmpfs { size: m.size_limit },
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let base = self
                        .store
                        .root()
                        .join("mounts/cache")
                        .join(crate::cache_key::cache_mount(&id).hex());
                    let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
                    let sharing = m.sharing.unwrap_or(Sharing::Shared);
                    let (dir, lock) = cache_mount_dir(
                        &base,
                        sharing,
                        m.mode.unwrap_or(0o755),
                        uid,
                        gid,
                    )
                    .map_err(|e| {
                        let single =
                            hoist_run::userns::current() == hoist_run::userns::Namespace::Single;
                        let e = if single && e.raw_os_error() == Some(libc::EINVAL) {
                            RunError::SingleId {
                                what: format!(
                                    "the cache mount at {target} is to be owned by {uid}:{gid}"
                                ),
                            }
                        } else {
                            RunError::Io {
                                path: base.clone(),
                                source: e,
                            }
                        };
                        self.step_error(instr, e)
                    })?;
                    prepared.locks.push(lock);
                    MountSource::Bind {
                        source: dir,
                        readonly: m.readonly,
                    }
                }
                MountType::Bind => {
                    let (view, lowers, content_key) =
                        self.bind_source(instr, inputs, m.from.as_deref())?;
                    prepared.texts.push(content_key);
                    let source = m.source.clone().unwrap_or_else(|| "/".into());
                    let rel = crate::meta::normalize_workdir("/", &source);
                    let resolved = view
                        .resolve(rel.trim_start_matches('/').as_bytes(), true)
                        .map_err(|e| self.step_error(instr, e))?;
                    if !resolved.is_empty() && view.get(&resolved).is_none() {
                        return Err(self.invalid(
                            instr,
                            format!("--mount={raw}: source {source} not found"),
                            None,
                        ));
                    }
                    MountSource::Overlay {
                        lowers,
                        subpath: String::from_utf8_lossy(&resolved).into_owned(),
                        readonly: m.readonly,
                    }
                }
                // Filled in once the step runs (see `run_step`).
                MountType::Secret => MountSource::Secret {
                    data: SecretBytes(Vec::new()),
                    mode: 0,
                    uid: 0,
                    gid: 0,
                },
                MountType::Ssh => MountSource::Socket {
                    source: PathBuf::new(),
                },
            };
            prepared.mounts.push(RunMount { target, source });
        }
        Ok(prepared)
    }

    /// Checks that the mount point `target` (absolute) is plain
    /// directories in the image, as a mount over a symlink would follow it
    /// out of the root; returns the directories the sandbox must create.
    fn mount_point(
        &self,
        instr: &Instruction,
        view: &FsView,
        target: &str,
    ) -> Result<Vec<String>, BuildError> {
        let rel = target.trim_start_matches('/');
        let resolved = view
            .resolve(rel.as_bytes(), true)
            .map_err(|e| self.step_error(instr, e))?;
        if resolved != rel.as_bytes() {
            return Err(self.invalid(
                instr,
                format!("--mount target {target} goes through a symlink in the image"),
                Some("mount at the path the symlink points to"),
            ));
        }
        let mut stubs = Vec::new();
        let mut current = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !current.is_empty() {
                current.push('/');
            }
            current.push_str(part);
            if view.get(current.as_bytes()).is_none() {
                stubs.push(current.clone());
            }
        }
        Ok(stubs)
    }

    /// A required secret or ssh id the build was not given.
    pub(crate) fn missing_secret(&self, instr: &Instruction, kind: &str, id: &str) -> BuildError {
        let flag = if kind == "ssh" {
            format!("--ssh {id}=SOCKET (or --ssh default with SSH_AUTH_SOCK set)")
        } else {
            format!("--secret id={id},src=FILE (or env=VARIABLE)")
        };
        self.step_error(
            instr,
            StepError::Invalid {
                message: format!("{kind} {id} is required but the build has none of that id"),
                hint: Some(format!("pass it with hoist build {flag}")),
            },
        )
    }

    /// The agent socket for ssh id `id`: the one given, or an agent
    /// started once per build for the given key files.
    pub(crate) fn agent_socket(
        &mut self,
        instr: &Instruction,
        id: &str,
    ) -> Result<PathBuf, BuildError> {
        use crate::secrets::SshSource;
        match self.request.secrets.ssh.get(id) {
            Some(SshSource::Socket(path)) => Ok(path.clone()),
            Some(SshSource::Keys(keys)) => {
                if let Some(agent) = self.key_agents.get(id) {
                    return Ok(agent.socket().to_path_buf());
                }
                let socket = self
                    .scratch()?
                    .join(format!("agent-{}.sock", self.key_agents.len()));
                let agent = hoist_run::ssh::KeyAgent::start(&socket, keys)
                    .map_err(|e| self.step_error(instr, e))?;
                let path = agent.socket().to_path_buf();
                self.key_agents.insert(id.to_string(), agent);
                Ok(path)
            }
            None => Err(self.missing_secret(instr, "ssh", id)),
        }
    }

    /// A bind mount's source: the view to resolve its path in, the
    /// directories that hold it on disk (bottom to top), and a key for its
    /// content (the stage's key, or a digest of the context's entries).
    fn bind_source(
        &mut self,
        instr: &Instruction,
        inputs: &Inputs<'_>,
        from: Option<&str>,
    ) -> Result<(FsView, Vec<PathBuf>, String), BuildError> {
        let Some(from) = from else {
            let view = self.context_view()?.clone();
            let tree = self.context_tree(instr)?;
            // The key covers what the step can read: every context entry.
            let mut h = Sha256::new();
            for entry in view.layers()[0].entries() {
                h.update(&entry.path);
                h.update(format!("\0{:o}\0", entry.mode).as_bytes());
                match &entry.kind {
                    EntryKind::File { content, .. } => {
                        let digest =
                            self.hasher
                                .digest(content)
                                .map_err(|e| BuildError::Context {
                                    path: self.request.context.clone(),
                                    source: Box::new(e),
                                })?;
                        h.update(digest.to_string().as_bytes());
                    }
                    other => h.update(format!("{other:?}").as_bytes()),
                }
                h.update(&[0]);
            }
            return Ok((view, vec![tree], h.finish().to_string()));
        };
        let stage = self.source_state(instr, inputs, from)?;
        let lowers = self.lowers(instr, &stage.layers)?;
        Ok((stage.view, lowers, stage.key.to_string()))
    }

    /// The build context (after .dockerignore) as a directory tree in the
    /// build's scratch directory, made once per build: files are hard links
    /// to the context's (copies across file systems), never written to (the
    /// mount is an overlay over it).
    fn context_tree(&mut self, instr: &Instruction) -> Result<PathBuf, BuildError> {
        if let Some(tree) = &self.context_tree {
            return Ok(tree.clone());
        }
        let tree = self.scratch()?.join("context");
        let entries: Vec<Entry> = self.context_view()?.layers()[0]
            .entries()
            .cloned()
            .collect();
        lay_out(&tree, entries).map_err(|e| {
            self.step_error(
                instr,
                RunError::Io {
                    path: tree.clone(),
                    source: e,
                },
            )
        })?;
        self.context_tree = Some(tree.clone());
        Ok(tree)
    }
}

/// Writes `entries` (a context's) as a tree at `tree`: files hard-linked
/// from where they are, or copied across file systems.
fn lay_out(tree: &Path, entries: Vec<Entry>) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(tree)?;
    for entry in entries {
        let dest = tree.join(std::ffi::OsStr::from_bytes(&entry.path));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match &entry.kind {
            EntryKind::Dir => std::fs::create_dir_all(&dest)?,
            EntryKind::File { content, .. } => match content {
                Content::Path(p) => {
                    if std::fs::hard_link(p, &dest).is_err() {
                        std::fs::copy(p, &dest)?;
                    }
                }
                Content::Bytes(b) => std::fs::write(&dest, b)?,
            },
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &dest)?
            }
            EntryKind::Hardlink { target } => {
                std::fs::hard_link(tree.join(std::ffi::OsStr::from_bytes(target)), &dest)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// A cache mount's directory (`base`, or another instance of it) and its
/// lock, taken as the sharing mode says, with BuildKit's semantics:
/// `shared` is used by any number of steps at once (it waits only for a
/// `locked` or `private` holder); `locked` waits until no other step uses
/// it; `private` takes it if no other step does, else the first free
/// instance `base-2`, `base-3`... (created as needed and kept, as
/// BuildKit keeps them). The lock is a `flock` on `<dir>.lock`, released
/// when the file is dropped or the process dies.
fn cache_mount_dir(
    base: &Path,
    sharing: Sharing,
    mode: u32,
    uid: u32,
    gid: u32,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(base.parent().expect("under mounts/cache"))?;
    for n in 1u32.. {
        let dir = if n == 1 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}", base.display()))
        };
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(format!("{}.lock", dir.display())))?;
        let op = match sharing {
            Sharing::Shared => libc::LOCK_SH,
            Sharing::Locked => libc::LOCK_EX,
            Sharing::Private => libc::LOCK_EX | libc::LOCK_NB,
        };
        let locked = loop {
            // SAFETY: a descriptor owned by `lock`.
            if unsafe { libc::flock(lock.as_raw_fd(), op) } == 0 {
                break true;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // `private`, and another step has this instance.
                Some(libc::EWOULDBLOCK) => break false,
                _ => return Err(e),
            }
        };
        if !locked {
            continue;
        }
        if !dir.exists() {
            create_cache_dir(&dir, mode, uid, gid)?;
        }
        return Ok((dir, lock));
    }
    unreachable!("the instances are unbounded")
}

/// A cache mount's directory, made whole before it gets its real name (two
/// builds may race to create it).
fn create_cache_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = dir.parent().expect("under mounts/cache");
    std::fs::create_dir_all(parent)?;
    let temp = parent.join(format!(".new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir(&temp)?;
    std::os::unix::fs::chown(&temp, Some(uid), Some(gid))?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode & 0o7777))?;
    if let Err(e) = std::fs::rename(&temp, dir) {
        let _ = std::fs::remove_dir(&temp);
        if !dir.is_dir() {
            return Err(e);
        }
    }
    Ok(())
}
