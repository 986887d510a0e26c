//! hoist-run: a command in a sandbox over the stage's layers, and its changes
//! as a layer's entries.
//!
//! Takes the stage's layers as extracted snapshots ([`snapshot`], one
//! directory per diffID in the store, bottom to top), the command, its
//! environment, working directory and user; runs it as root in fresh
//! mount, pid, uts and ipc namespaces (and a network namespace for
//! `--network=none`) on an overlayfs whose upper directory collects every
//! change; returns the exit code, then [`diff`] turns the upper directory
//! into layer entries (overlay whiteouts and opaque directories become OCI
//! ones). The command sees /proc, a small /dev, /sys read-only and the
//! host's /etc/hosts and /etc/resolv.conf read-only, never the host's file
//! system or the store: the root is pivoted into the overlay and the old
//! root detached. Kernel calls go through [`syscall::Syscall`]. Rootless,
//! hoist runs as root of a user namespace ([`userns`]); the overlay then
//! takes `userxattr` and /sys is bound rather than mounted.
//!
//! Depends on hoist-store and hoist-oci only: it takes paths and a spec,
//! never a Dockerfile, and knows nothing of the build that calls it.

mod carry;
mod chroot;
mod copy;
pub mod diff;
pub mod emulation;
mod isolation;
mod opened;
mod sandbox;
pub mod snapshot;
pub mod ssh;
pub mod syscall;
pub mod userns;

pub use carry::{carried, carry};
use isolation::{CHROOT_FALLBACK, isolation, namespaces_unusable, report};
pub use isolation::{
    ISOLATION_VARIABLE, Isolation, IsolationChoice, isolation_choice, set_isolation,
    take_isolation_report,
};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The PATH a step gets when the image sets none (BuildKit's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a command could not be run (its own failure is an exit code).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot {step} for the RUN sandbox")]
    Sandbox {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("cannot prepare {path} for the RUN sandbox")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot extract layer {digest} for RUN")]
    Extract {
        digest: String,
        #[source]
        source: hoist_oci::layer::ExtractError,
    },
    /// SIGTERM or SIGINT arrived; the step's processes are gone.
    #[error("interrupted by signal {signal}")]
    Interrupted { signal: i32 },
    /// A library caller that is not root and did not call
    /// [`userns::reexec`].
    #[error("RUN needs root, or hoist running as root of a user namespace")]
    NotRoot,
    /// `--network=none` where no network namespace can be made.
    #[error("RUN --network=none needs a network namespace, and chroot isolation has none")]
    NoNetworkNamespace,
    #[error("RUN needs a user namespace when hoist is not root, and none can be made here")]
    NoUserNamespace {
        #[source]
        source: std::io::Error,
    },
    /// A single-id user namespace cannot give a step the ids it needs.
    #[error(
        "{what}, but hoist has only a single-id user namespace: the caller has no subordinate ids in /etc/subuid and /etc/subgid"
    )]
    SingleId { what: String },
}

impl RunError {
    /// What to do about it, where hoist knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            RunError::NotRoot => {
                Some("run hoist as root, or call hoist_run::userns::reexec first".into())
            }
            RunError::NoUserNamespace { source } => Some(userns::remedy(source.raw_os_error())),
            RunError::SingleId { .. } => Some(userns::subid_remedy()),
            // chown(2) to an id the namespace does not map.
            RunError::Extract {
                source: hoist_oci::layer::ExtractError::Io { source, .. },
                ..
            } if source.raw_os_error() == Some(libc::EINVAL)
                && userns::current().is_user_namespace() =>
            {
                Some(
                    "a file of the layer belongs to an id hoist's user namespace does not map: hoist maps 0 to you and 1, 2... to your /etc/subuid and /etc/subgid ranges in turn; add a range to cover the image's ids, as root: `usermod --add-subuids 200000-399999 --add-subgids 200000-399999 USER`".to_string(),
                )
            }
            RunError::Sandbox { step, .. } if step.contains("chroot") => Some(
                "chroot isolation needs root with CAP_SYS_CHROOT and CAP_SETPCAP (Docker's and Kubernetes' defaults keep both)".into(),
            ),
            RunError::Sandbox { .. } => Some(format!(
                "namespace isolation needs mount, pid, uts and ipc namespaces: `--isolation chroot` ({ISOLATION_VARIABLE}=chroot) runs steps without them (docs/run.md says what it isolates), or give the container CAP_SYS_ADMIN"
            )),
            RunError::NoNetworkNamespace => Some(
                "namespaces cannot be made here, so the step would reach the network: drop --network=none, or build where namespaces can be made (docs/run.md)".into(),
            ),
            _ => None,
        }
    }
}

/// The network a step gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's (BuildKit's default for RUN).
    Host,
    /// A new network namespace with only a loopback device, down.
    None,
}

/// A host file bound read-only into the step (`/etc/hosts`,
/// `/etc/resolv.conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub source: PathBuf,
    /// Relative to the image's root, e.g. `etc/hosts`.
    pub target: String,
    /// The image has no such file: an empty mount point is created, to be
    /// left out of the diff.
    pub create: bool,
}

/// A file system mounted into the step (`RUN --mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    Tmpfs {
        size: Option<u64>,
    },
    /// A host directory (a cache mount's), bound.
    Bind {
        source: PathBuf,
        readonly: bool,
    },
    /// Directories (snapshots of a stage's layers, or the build context
    /// laid out on disk), bottom to top, merged by an overlay of their
    /// own; `subpath` of it (relative, already free of symlinks) is bound.
    /// Writes to a read-write one go to a scratch upper directory and are
    /// dropped with it, as BuildKit drops them.
    Overlay {
        lowers: Vec<PathBuf>,
        subpath: String,
        readonly: bool,
    },
    /// A secret (`--mount=type=secret`): a read-only file on a tmpfs of
    /// the sandbox's own, gone with it; never on disk.
    Secret {
        data: SecretBytes,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A host socket or file bound read-write over a file mount point (an
    /// ssh agent's socket).
    Socket {
        source: PathBuf,
    },
}

/// A secret's content: its `Debug` shows only its length, so that no
/// debug print or error can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// Absolute in the image, without symlinks (the caller resolves them).
    pub target: String,
    pub source: MountSource,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Extracted layers, bottom to top.
    pub lowers: Vec<PathBuf>,
    /// Their diffIDs, in the same order: what a root carried from the
    /// stage's previous step is matched by ([`carry`]).
    pub layer_ids: Vec<String>,
    /// The argv, the shell already prepended for the shell form.
    pub argv: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Absolute; created when missing.
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (BuildKit's: see `rootfs::user::groups_of`).
    pub groups: Vec<u32>,
    pub network: Network,
    pub host_files: Vec<HostFile>,
    /// Files (name, content) the step finds, executable and read-only, in
    /// `/dev/pipes` (a RUN heredoc starting with `#!`, as BuildKit does).
    pub scripts: Vec<(String, String)>,
    pub mounts: Vec<RunMount>,
    /// The user namespace hoist runs in ([`userns::current`]).
    pub namespace: userns::Namespace,
}

/// How a step's root file system is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rootfs {
    /// An overlay of the snapshots; the upper directory is the diff.
    Overlay,
    /// A copy of the snapshots, walked before and after ([`copy`]).
    Copy,
}

/// The variable that forces a [`Rootfs`] (`overlay` or `copy`); unset,
/// overlays are used until one cannot be mounted.
pub const ROOTFS_VARIABLE: &str = "HOIST_RUN_ROOTFS";

/// Set once an overlay could not be mounted: later steps of this process
/// go straight to the copy.
static OVERLAY_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether steps of this process run on copies: forced, or since an
/// overlay could not be made.
pub fn copy_mode() -> bool {
    if matches!(isolation(), Ok(Isolation::Chroot)) {
        return true;
    }
    match forced_rootfs() {
        Ok(Some(mode)) => mode == Rootfs::Copy,
        _ => OVERLAY_FAILED.load(Ordering::SeqCst),
    }
}

/// Whether this process fell back to running steps on copies because an
/// overlay could not be made (not because the user asked for copies).
pub fn fell_back_to_copies() -> bool {
    !matches!(isolation(), Ok(Isolation::Chroot))
        && OVERLAY_FAILED.load(Ordering::SeqCst)
        && matches!(forced_rootfs(), Ok(None))
}

/// Records that overlays cannot be used here.
fn overlay_unusable_here() {
    OVERLAY_FAILED.store(true, Ordering::SeqCst);
}

fn forced_rootfs() -> Result<Option<Rootfs>, RunError> {
    match std::env::var(ROOTFS_VARIABLE).as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok("overlay") => Ok(Some(Rootfs::Overlay)),
        Ok("copy") => Ok(Some(Rootfs::Copy)),
        Ok(other) => Err(RunError::Invalid {
            reason: format!("{ROOTFS_VARIABLE}={other}: expected overlay or copy"),
        }),
    }
}

/// Whether a failed setup step says overlayfs cannot be used here (as
/// opposed to a failure the copy would meet too).
fn overlay_unusable(error: &RunError) -> bool {
    let RunError::Sandbox { step, source } = error else {
        return false;
    };
    let overlay_step =
        step == "mount the overlay root file system" || step == "mount a --mount=type=bind source";
    overlay_step
        && matches!(
            source.raw_os_error(),
            Some(libc::EINVAL | libc::ENODEV | libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
        )
}

/// Runs `spec` with `dir` (an empty directory in the store, kept by the
/// caller until the layer is written) holding the root's directories
/// (overlay upper and work, or the copy) and the mounts'; calls `output`
/// for each line the command prints. Returns the exit code; [`changes`]
/// then lists what the step changed.
///
/// The root is an overlay unless [`ROOTFS_VARIABLE`] says `copy`, or an
/// overlay cannot be mounted here (then this step, which has not started,
/// and every later one run on a copy).
pub fn run(spec: &RunSpec, dir: &Path, output: &mut dyn FnMut(&str)) -> Result<i32, RunError> {
    check_privileges()?;
    let choice = isolation_choice()?;
    if isolation()? == Isolation::Chroot {
        report(Isolation::Chroot, None);
        return run_chroot(spec, dir, output);
    }
    match run_in_namespaces(spec, dir, output) {
        Err(e) if choice == IsolationChoice::Auto && namespaces_unusable(&e) => {
            CHROOT_FALLBACK.store(true, Ordering::SeqCst);
            report(Isolation::Chroot, Some(hoist_oci::error_line(&e)));
            // What the namespace attempt left (an upper directory, a copy)
            // goes: the chroot starts from its own copy.
            for part in ["rootfs", "upper", "work", "merged"] {
                let _ = std::fs::remove_dir_all(dir.join(part));
            }
            run_chroot(spec, dir, output)
        }
        other => {
            if other.is_ok() {
                report(Isolation::Namespaces, None);
            }
            other
        }
    }
}

fn run_chroot(spec: &RunSpec, dir: &Path, output: &mut dyn FnMut(&str)) -> Result<i32, RunError> {
    if spec.network == Network::None {
        return Err(RunError::NoNetworkNamespace);
    }
    // Steps share this process's pid namespace: none of them may ptrace
    // hoist or read its memory.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    run_in(spec, dir, output, Rootfs::Copy, Isolation::Chroot)
}

/// [`run`] in namespace isolation: on an overlay, or on a copy.
fn run_in_namespaces(
    spec: &RunSpec,
    dir: &Path,
    output: &mut dyn FnMut(&str),
) -> Result<i32, RunError> {
    let forced = forced_rootfs()?;
    let overlay = match forced {
        Some(mode) => mode == Rootfs::Overlay,
        None => !OVERLAY_FAILED.load(Ordering::SeqCst),
    };
    if overlay {
        match run_in(spec, dir, output, Rootfs::Overlay, Isolation::Namespaces) {
            Err(e) if forced.is_none() && overlay_unusable(&e) => overlay_unusable_here(),
            other => return other,
        }
    }
    run_in(spec, dir, output, Rootfs::Copy, Isolation::Namespaces)
}

/// What the step run in `dir` changed, as sorted layer entries, leaving
/// out the `mount_points` the sandbox created (see [`diff::diff`]).
pub fn changes(
    dir: &Path,
    mount_points: &[&str],
    userxattr: bool,
) -> Result<Vec<hoist_oci::layer::tar::Entry>, hoist_oci::layer::walk::WalkError> {
    if copy::was_used(dir) {
        let mut entries = copy::changes(&dir.join("rootfs"), dir)?;
        diff::leave_out_mount_points(&mut entries, mount_points);
        hoist_oci::layer::tar::sort_entries(&mut entries);
        carry::keep(dir, &mut entries)?;
        return Ok(entries);
    }
    diff::diff(&upper_dir(dir), mount_points, userxattr)
}

fn run_in(
    spec: &RunSpec,
    dir: &Path,
    output: &mut dyn FnMut(&str),
    rootfs: Rootfs,
    isolation: Isolation,
) -> Result<i32, RunError> {
    let upper = upper_dir(dir);
    let work = dir.join("work");
    let merged = dir.join("merged");
    let empty = dir.join("empty");
    for d in [&upper, &work, &merged, &empty] {
        std::fs::create_dir_all(d).map_err(|source| RunError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let pipes = dir.join("pipes");
    if !spec.scripts.is_empty() {
        use std::os::unix::fs::PermissionsExt;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RunError::Io { path, source }
        };
        std::fs::create_dir_all(&pipes).map_err(io(&pipes))?;
        for (name, data) in &spec.scripts {
            let path = pipes.join(name);
            std::fs::write(&path, data).map_err(io(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
    }
    for (i, mount) in spec.mounts.iter().enumerate() {
        let parts: &[&str] = match mount.source {
            MountSource::Overlay { .. } => &["merged", "upper", "work"],
            // The secret's tmpfs is mounted there, in the sandbox only.
            MountSource::Secret { .. } => &[""],
            _ => &[],
        };
        for part in parts {
            let d = sandbox::mount_dir(dir, i).join(part);
            std::fs::create_dir_all(&d).map_err(|source| RunError::Io {
                path: d.clone(),
                source,
            })?;
        }
    }
    let userns = spec.namespace.is_user_namespace();
    let chown = spec.namespace != userns::Namespace::Single;
    let mut copied;
    let mut placed = None;
    let mut watch = None;
    let (spec, root) = match rootfs {
        Rootfs::Overlay => (spec, None),
        Rootfs::Copy => {
            let root = dir.join("rootfs");
            if isolation == Isolation::Namespaces || !carry::take_carried(&spec.layer_ids, &root) {
                if spec.lowers.len() != spec.layer_ids.len() && !spec.layer_ids.is_empty() {
                    return Err(RunError::Invalid {
                        reason: "the root carried from the previous step is gone, and the step has no snapshots to copy instead".into(),
                    });
                }
                copy::merge(&spec.lowers, &root, userns, chown)?;
            }
            // A bind mount's overlay becomes a copy too.
            copied = spec.clone();
            for (i, mount) in copied.mounts.iter_mut().enumerate() {
                if let MountSource::Overlay {
                    lowers,
                    subpath,
                    readonly,
                } = &mount.source
                {
                    let tree = sandbox::mount_dir(dir, i).join("copy");
                    copy::merge(lowers, &tree, userns, chown)?;
                    mount.source = MountSource::Bind {
                        source: tree.join(subpath),
                        readonly: *readonly,
                    };
                }
            }
            match isolation {
                Isolation::Namespaces => watch = copy::record(&root, dir, &[])?,
                Isolation::Chroot => {
                    watch = copy::record(&root, dir, &chroot::excluded(&copied))?;
                    let scripts = (!copied.scripts.is_empty()).then_some(pipes.as_path());
                    placed = Some(chroot::place(&copied, dir, &root, scripts)?);
                }
            }
            (&copied, Some(root))
        }
    };
    let prepared = sandbox::Prepared::new(
        spec,
        dir,
        !spec.scripts.is_empty(),
        root.as_deref(),
        isolation == Isolation::Chroot,
    )?;
    let code = sandbox::run(&prepared, output);
    if let Some(mut placed) = placed {
        placed.undo()?;
        let restore = std::mem::take(&mut placed.restore);
        carry::pending(dir, restore);
    }
    if let Some(watch) = watch {
        watch.finish(dir).map_err(|source| RunError::Io {
            path: dir.join(opened::OPENED),
            source,
        })?;
    }
    let code = code?;
    // overlayfs leaves its work directory owned by root with mode 0: gone
    // with the scratch directory later, but keep the tree tidy now.
    let _ = std::fs::remove_dir_all(&work);
    Ok(code)
}

/// Fails unless this process can run steps (it is root, of the host or
/// of a user namespace), before any snapshot is extracted for them.
pub fn check_privileges() -> Result<(), RunError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(match userns::unavailable() {
            Some(source) => RunError::NoUserNamespace { source },
            None => RunError::NotRoot,
        });
    }
    Ok(())
}

/// Where [`run`] leaves the changes.
pub fn upper_dir(dir: &Path) -> PathBuf {
    dir.join("upper")
}
