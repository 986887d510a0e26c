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

mod chroot;
mod copy;
pub mod diff;
mod opened;
mod sandbox;
pub mod snapshot;
pub mod ssh;
pub mod syscall;
pub mod userns;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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

/// How a step is kept apart from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Mount, pid, uts and ipc namespaces (and network for
    /// `--network=none`), the root pivoted into ([`sandbox`]).
    Namespaces,
    /// A chroot into a copy of the layers, for a root process that cannot
    /// make namespaces ([`chroot`]).
    Chroot,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Namespaces => "namespaces",
            Isolation::Chroot => "chroot",
        }
    }
}

/// What the user asked for: a mode, or `auto` (namespaces, then chroot
/// where namespaces cannot be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationChoice {
    Auto,
    Only(Isolation),
}

impl std::str::FromStr for IsolationChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<IsolationChoice, String> {
        match text {
            "" | "auto" => Ok(IsolationChoice::Auto),
            "namespaces" => Ok(IsolationChoice::Only(Isolation::Namespaces)),
            "chroot" => Ok(IsolationChoice::Only(Isolation::Chroot)),
            other => Err(format!(
                "unknown isolation `{other}`: expected auto, namespaces or chroot"
            )),
        }
    }
}

/// The variable that chooses the isolation (`auto`, `namespaces`,
/// `chroot`) when [`set_isolation`] was not called.
pub const ISOLATION_VARIABLE: &str = "HOIST_ISOLATION";

/// [`set_isolation`]'s choice: 0 unset, 1 auto, 2 namespaces, 3 chroot.
static CHOICE: AtomicU8 = AtomicU8::new(0);
/// Set once `auto` found that namespaces cannot be made here.
static CHROOT_FALLBACK: AtomicBool = AtomicBool::new(false);
/// The isolation of the first step run, with why, until taken once by
/// [`take_isolation_report`].
static REPORT: Mutex<Option<(Isolation, Option<String>)>> = Mutex::new(None);
/// Whether a step has run (the report is made once).
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Chooses the isolation for this process (a command-line flag); it wins
/// over [`ISOLATION_VARIABLE`].
pub fn set_isolation(choice: IsolationChoice) {
    let code = match choice {
        IsolationChoice::Auto => 1,
        IsolationChoice::Only(Isolation::Namespaces) => 2,
        IsolationChoice::Only(Isolation::Chroot) => 3,
    };
    CHOICE.store(code, Ordering::SeqCst);
}

/// The isolation asked for: [`set_isolation`]'s, else the variable's.
pub fn isolation_choice() -> Result<IsolationChoice, RunError> {
    match CHOICE.load(Ordering::SeqCst) {
        1 => Ok(IsolationChoice::Auto),
        2 => Ok(IsolationChoice::Only(Isolation::Namespaces)),
        3 => Ok(IsolationChoice::Only(Isolation::Chroot)),
        _ => std::env::var(ISOLATION_VARIABLE)
            .unwrap_or_default()
            .parse()
            .map_err(|reason| RunError::Invalid {
                reason: format!("{ISOLATION_VARIABLE}: {reason}"),
            }),
    }
}

/// The isolation the next step gets.
fn isolation() -> Result<Isolation, RunError> {
    Ok(match isolation_choice()? {
        IsolationChoice::Only(mode) => mode,
        IsolationChoice::Auto if CHROOT_FALLBACK.load(Ordering::SeqCst) => Isolation::Chroot,
        IsolationChoice::Auto => Isolation::Namespaces,
    })
}

/// The isolation the first step of this process ran with, and why where
/// `auto` had to choose chroot: returned once, for the progress output.
pub fn take_isolation_report() -> Option<(Isolation, Option<String>)> {
    REPORT.lock().map(|mut r| r.take()).unwrap_or(None)
}

fn report(mode: Isolation, why: Option<String>) {
    if !REPORTED.swap(true, Ordering::SeqCst)
        && let Ok(mut slot) = REPORT.lock()
    {
        *slot = Some((mode, why));
    }
}

/// Whether a failed namespace-mode setup says namespaces (or the mounts
/// they exist for) cannot be made by this process, so that chroot
/// isolation is the strongest left.
fn namespaces_unusable(error: &RunError) -> bool {
    let RunError::Sandbox { step, source } = error else {
        return false;
    };
    const STEPS: [&str; 10] = [
        "create namespaces",
        "make mounts private",
        "mount /proc",
        "mount /sys",
        "bind /sys",
        "mount /dev",
        "bind a device",
        "mount /dev/shm",
        "bind the copied root file system",
        "pivot into the root file system",
    ];
    STEPS.contains(&step.as_str())
        && matches!(
            source.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::EINVAL | libc::ENOSYS | libc::ENOSPC)
        )
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
            report(Isolation::Chroot, Some(error_chain(&e)));
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

/// `error` and its sources, joined.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
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
        let mut pending = PENDING.lock().ok();
        if let Some(Some((pending_dir, restore))) = pending.as_deref_mut()
            && pending_dir == dir
        {
            keep_contents(dir, &mut entries)?;
            // What the sandbox created and the layer holds stays.
            let root = dir.join("rootfs");
            restore.keep(
                entries
                    .iter()
                    .map(|e| root.join(std::ffi::OsStr::from_bytes(&e.path)))
                    .collect(),
            );
        }
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
            if isolation == Isolation::Namespaces || !take_carried(&spec.layer_ids, &root) {
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
        if let Ok(mut pending) = PENDING.lock() {
            *pending = Some((dir.to_path_buf(), restore));
        }
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

/// A chroot step's root, restored to the merge of its layers plus the
/// step's own ([`carry`]), for the stage's next step: its diffIDs and
/// where it is.
static CARRIED: Mutex<Option<(Vec<String>, PathBuf)>> = Mutex::new(None);
/// The last chroot step's run directory and what restores its root.
static PENDING: Mutex<Option<(PathBuf, chroot::Restore)>> = Mutex::new(None);

/// Hands the root of the chroot step run in `dir` to the stage's next step,
/// once the step's layer is written: `layer_ids` are the stage's layers
/// now (its own last, if it made one). The root is put back to what the
/// layers hold (what the sandbox placed there goes), so the next step
/// starts from it instead of copying every layer again: a chroot build
/// copies its base once per stage, not once per step. Does nothing for a
/// step run otherwise, or whose root cannot be put back (the next step
/// then copies its layers).
pub fn carry(dir: &Path, layer_ids: Vec<String>) {
    let Some((pending_dir, restore)) = PENDING.lock().ok().and_then(|mut p| p.take()) else {
        return;
    };
    let root = dir.join("rootfs");
    let previous = CARRIED.lock().ok().and_then(|mut c| c.take());
    if let Some((_, old)) = previous {
        let _ = std::fs::remove_dir_all(old);
    }
    if pending_dir != dir || restore.apply().is_err() {
        let _ = std::fs::remove_dir_all(&root);
        return;
    }
    if let Ok(mut carried) = CARRIED.lock() {
        *carried = Some((layer_ids, root));
    }
}

/// Copies the files whose bytes `entries` take from the root of the step
/// run in `dir` into `dir/kept`, and points the entries there: a root
/// carried to the next step ([`carry`]) changes under its paths, while the
/// build reads a layer's files (a USER's /etc/passwd, `COPY --from`) until
/// it ends.
fn keep_contents(
    dir: &Path,
    entries: &mut [hoist_oci::layer::tar::Entry],
) -> Result<(), hoist_oci::layer::walk::WalkError> {
    use hoist_oci::layer::tar::{Content, EntryKind};
    let kept = dir.join("kept");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| hoist_oci::layer::walk::WalkError::Io { path, source }
    };
    std::fs::create_dir_all(&kept).map_err(io(&kept))?;
    for (n, entry) in entries.iter_mut().enumerate() {
        if let EntryKind::File {
            content: Content::Path(path),
            ..
        } = &mut entry.kind
        {
            let copy = kept.join(n.to_string());
            std::fs::copy(&*path, &copy).map_err(io(path))?;
            *path = copy;
        }
    }
    Ok(())
}

/// Whether a root carried from the previous step holds exactly
/// `layer_ids` (then [`RunSpec::lowers`] may be left empty).
pub fn carried(layer_ids: &[String]) -> bool {
    CARRIED
        .lock()
        .is_ok_and(|c| c.as_ref().is_some_and(|(ids, _)| ids == layer_ids))
}

/// Moves the carried root to `root` if it holds exactly `layer_ids`.
fn take_carried(layer_ids: &[String], root: &Path) -> bool {
    let Some((ids, carried)) = CARRIED.lock().ok().and_then(|mut c| c.take()) else {
        return false;
    };
    if ids == layer_ids && std::fs::rename(&carried, root).is_ok() {
        return true;
    }
    let _ = std::fs::remove_dir_all(carried);
    false
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
