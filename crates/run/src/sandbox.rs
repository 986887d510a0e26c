//! One command in its own namespaces, on an overlay of layer snapshots.
//!
//! The process tree: hoist forks an intermediate child that unshares the
//! mount, pid, uts and ipc namespaces (and the network one for
//! `--network=none`), then forks the command's process, pid 1 of the new
//! pid namespace. That process mounts the overlay and the pseudo file
//! systems, pivots into the overlay (a chroot can be climbed out of by
//! root; a pivot_root with the old root detached cannot), drops to the
//! step's user and execs. The intermediate child waits for it and exits
//! with its status. Everything the children need is prepared before the
//! fork: after it they only make system calls (see `syscall`).

use super::syscall::{Errno, Linux, Syscall};
use super::{MountSource, Network, RunError, RunSpec};
use std::ffi::{CStr, CString};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// The host devices a build step gets (BuildKit's and runc's defaults).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Capabilities a root step keeps: Docker's and BuildKit's default set
/// (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
/// CAP_SYS_ADMIN in particular is dropped: with it a step could mount the
/// host's disk.
pub(super) const KEPT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Paths a step may read but never write, as runc makes them for Docker
/// and BuildKit: the kernel's settings and triggers, which reach the whole
/// host (`echo 1 > /proc/sys/vm/drop_caches`, `/proc/sysrq-trigger`). Each
/// is bound onto itself and remounted read-only.
const READONLY_PATHS: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Paths a step cannot read at all (runc's masked paths, with Docker's
/// newest addition, /proc/interrupts): kernel memory, keys, timers and
/// hardware details of the host. A file is covered by /dev/null, a
/// directory by an empty read-only tmpfs; a path this kernel lacks is
/// skipped.
const MASKED_PATHS: [&str; 12] = [
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/sched_debug",
    "proc/scsi",
    "proc/timer_list",
    "proc/timer_stats",
    "sys/devices/virtual/powercap",
    "sys/firmware",
];

/// The host name a step sees: BuildKit's, so that a step that records it
/// gives the same bytes on every machine.
const HOSTNAME: &CStr = c"buildkitsandbox";

/// Overlay options that keep the upper directory a plain diff: no
/// metadata-only copy-ups (a chown would leave a file without its data)
/// and no redirects (a renamed directory is copied instead).
const OVERLAY_OPTIONS: &str = "redirect_dir=off,metacopy=off,index=off";

/// The longest mount option string the kernel takes (one page, NUL
/// included).
const MAX_MOUNT_DATA: usize = 4095;

/// Everything the child needs, as C strings made before the fork.
pub(super) struct Prepared {
    lower_root: CString,
    merged: CString,
    overlay_data: CString,
    /// A copied root to bind instead of the overlay ([`super::copy`]).
    copy_root: Option<CString>,
    /// Chroot into the copied root instead of making namespaces
    /// ([`super::chroot`]).
    chroot: bool,
    mount_points: Vec<CString>,
    proc_dir: CString,
    sys_dir: CString,
    /// [`READONLY_PATHS`] and [`MASKED_PATHS`] in the merged root.
    readonly_paths: Vec<CString>,
    masked_paths: Vec<CString>,
    dev_dir: CString,
    devices: Vec<(CString, CString)>,
    shm: CString,
    dev_links: Vec<(CString, CString)>,
    etc: CString,
    /// A host directory bound read-only at /dev/pipes.
    pipes: Option<(CString, CString)>,
    host_files: Vec<(CString, CString, bool)>,
    mounts: Vec<PreparedMount>,
    workdir_parts: Vec<CString>,
    workdir: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    /// Bind the host's /sys instead of mounting a sysfs: in a user
    /// namespace, sysfs can only be mounted with a network namespace of
    /// its own.
    bind_sys: bool,
    /// A single-id user namespace has setgroups(2) denied.
    set_groups: bool,
    /// Where to look for the program: each candidate path in order.
    program: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    flags: libc::c_int,
}

/// A `--mount`: the directories to create on the way, its target in the
/// merged root, what to mount there.
struct PreparedMount {
    parents: Vec<CString>,
    target: CString,
    kind: PreparedKind,
}

enum PreparedKind {
    Tmpfs(CString),
    Bind {
        source: CString,
        readonly: bool,
    },
    Overlay {
        staging: CString,
        data: CString,
        source: CString,
        readonly: bool,
    },
    /// A tmpfs at `staging` (in the scratch directory, private to the
    /// sandbox's mount namespace), `file` written in it and bound over
    /// the target file, read-only.
    Secret {
        staging: CString,
        file: CString,
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A host file or socket bound over the target file.
    File {
        source: CString,
    },
}

impl PreparedKind {
    /// Whether the target is a file (created empty when missing) rather
    /// than a directory.
    fn is_file(&self) -> bool {
        matches!(
            self,
            PreparedKind::Secret { .. } | PreparedKind::File { .. }
        )
    }
}

/// Where the overlay of the `index`th `--mount` is assembled.
pub(super) fn mount_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("mount-{index}"))
}

/// A bind mount's source assembled as an overlay of `lowers` in
/// [`mount_dir`]: read-only, or with a scratch upper directory.
fn overlay_mount(
    dir: &Path,
    index: usize,
    lowers: &[PathBuf],
    subpath: &str,
    readonly: bool,
    options: &str,
) -> Result<PreparedKind, RunError> {
    let staging = mount_dir(dir, index);
    // The empty directory at the bottom: an overlay without an upper
    // directory needs two lower ones.
    let empty = dir.join("empty");
    let names: Vec<String> = lowers
        .iter()
        .rev()
        .chain([&empty])
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let mut data = format!("lowerdir={}", names.join(":"));
    if !readonly {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            staging.join("upper").display(),
            staging.join("work").display()
        ));
    }
    data.push_str(&format!(",{options}"));
    if names.iter().any(|n| n.contains([':', ','])) || data.len() > MAX_MOUNT_DATA {
        return Err(RunError::Invalid {
            reason: "a --mount source cannot be an overlay (too many layers, or `:` or `,` in the store path)".into(),
        });
    }
    let merged = staging.join("merged");
    let source = if subpath.is_empty() {
        merged.clone()
    } else {
        merged.join(subpath)
    };
    Ok(PreparedKind::Overlay {
        staging: path_c(&merged)?,
        data: cstring(data)?,
        source: path_c(&source)?,
        readonly,
    })
}

fn cstring(bytes: impl AsRef<[u8]>) -> Result<CString, RunError> {
    CString::new(bytes.as_ref()).map_err(|_| RunError::Invalid {
        reason: format!(
            "`{}` contains a NUL byte",
            String::from_utf8_lossy(bytes.as_ref())
        ),
    })
}

fn path_c(path: &Path) -> Result<CString, RunError> {
    cstring(path.as_os_str().as_bytes())
}

/// The deepest directory holding every path, so that lower directories
/// can be named relative to it and more of them fit in one mount call.
fn common_root(paths: &[PathBuf]) -> PathBuf {
    let mut root = paths[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    while !paths.iter().all(|p| p.starts_with(&root)) {
        if !root.pop() {
            break;
        }
    }
    root
}

impl Prepared {
    /// Everything for `spec`, with the overlay's directories in `dir`
    /// (see [`super::run`]).
    pub(super) fn new(
        spec: &RunSpec,
        dir: &Path,
        pipes: bool,
        copy_root: Option<&Path>,
        chroot: bool,
    ) -> Result<Prepared, RunError> {
        let upper = &super::upper_dir(dir);
        let work = &dir.join("work");
        let merged = &dir.join("merged");
        let empty = &dir.join("empty");
        let pipes_dir = dir.join("pipes");
        let pipes = pipes.then_some(pipes_dir.as_path());
        // overlayfs lists lower directories top first.
        let mut lowers: Vec<PathBuf> = spec.lowers.iter().rev().cloned().collect();
        if lowers.is_empty() {
            lowers.push(empty.to_path_buf());
        }
        let root = common_root(&lowers);
        let mut names = Vec::new();
        for lower in &lowers {
            let rel = lower.strip_prefix(&root).unwrap_or(lower);
            let text = rel.to_string_lossy();
            if text.contains([':', ',', '\\']) || text.is_empty() {
                return Err(RunError::Invalid {
                    reason: format!(
                        "layer snapshot path {} cannot be an overlay lower directory",
                        lower.display()
                    ),
                });
            }
            names.push(text.into_owned());
        }
        for dir in [upper, work] {
            if dir.to_string_lossy().contains([':', ',', '\\']) {
                return Err(RunError::Invalid {
                    reason: format!(
                        "{} has `:`, `,` or `\\` in its path, which overlay mount options cannot hold: use a store path without them",
                        dir.display()
                    ),
                });
            }
        }
        let userns = spec.namespace.is_user_namespace();
        // overlayfs in a user namespace (Linux >= 5.11) keeps its
        // attributes in user.overlay.* (overlayfs.rst, "User xattr"), and
        // then takes redirect_dir=nofollow only (off may still follow).
        let options = if userns {
            "redirect_dir=nofollow,metacopy=off,index=off,userxattr".to_string()
        } else {
            OVERLAY_OPTIONS.to_string()
        };
        let data = format!(
            "lowerdir={},upperdir={},workdir={},{options}",
            names.join(":"),
            upper.display(),
            work.display()
        );
        if data.len() > MAX_MOUNT_DATA {
            return Err(RunError::Invalid {
                reason: format!(
                    "the image has too many layers ({}) for one overlay mount",
                    lowers.len()
                ),
            });
        }
        let m = |rel: &str| path_c(&merged.join(rel));
        let mut workdir_parts = Vec::new();
        let mut current = String::new();
        for part in spec.workdir.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            workdir_parts.push(cstring(&current)?);
        }
        let workdir = if current.is_empty() {
            "/".to_string()
        } else {
            current
        };
        let path_var = spec
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(super::DEFAULT_PATH);
        let arg0 = spec.argv.first().ok_or_else(|| RunError::Invalid {
            reason: "the command is empty".into(),
        })?;
        let program = if arg0.contains('/') {
            vec![cstring(arg0)?]
        } else {
            path_var
                .split(':')
                .map(|dir| {
                    let dir = if dir.is_empty() { "." } else { dir };
                    cstring(format!("{}/{arg0}", dir.trim_end_matches('/')))
                })
                .collect::<Result<_, _>>()?
        };
        let mut flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if spec.network == Network::None {
            flags |= libc::CLONE_NEWNET;
        }
        Ok(Prepared {
            lower_root: path_c(&root)?,
            merged: path_c(merged)?,
            overlay_data: cstring(data)?,
            copy_root: copy_root.map(path_c).transpose()?,
            chroot,
            mount_points: vec![m("proc")?, m("dev")?, m("sys")?],
            proc_dir: m("proc")?,
            sys_dir: m("sys")?,
            readonly_paths: READONLY_PATHS
                .iter()
                .map(|p| m(p))
                .collect::<Result<_, _>>()?,
            masked_paths: MASKED_PATHS
                .iter()
                .map(|p| m(p))
                .collect::<Result<_, _>>()?,
            dev_dir: m("dev")?,
            devices: DEVICES
                .iter()
                .map(|d| Ok((cstring(format!("/dev/{d}"))?, m(&format!("dev/{d}"))?)))
                .collect::<Result<_, RunError>>()?,
            shm: m("dev/shm")?,
            dev_links: [
                ("/proc/self/fd", "dev/fd"),
                ("/proc/self/fd/0", "dev/stdin"),
                ("/proc/self/fd/1", "dev/stdout"),
                ("/proc/self/fd/2", "dev/stderr"),
            ]
            .iter()
            .map(|(t, p)| Ok((cstring(t)?, m(p)?)))
            .collect::<Result<_, RunError>>()?,
            etc: m("etc")?,
            pipes: match pipes {
                Some(dir) => Some((path_c(dir)?, m("dev/pipes")?)),
                None => None,
            },
            host_files: spec
                .host_files
                .iter()
                .map(|f| Ok((path_c(&f.source)?, m(&f.target)?, f.create)))
                .collect::<Result<_, RunError>>()?,
            mounts: spec
                .mounts
                .iter()
                .enumerate()
                .map(|(i, mount)| {
                    let mut parents = Vec::new();
                    let mut current = String::new();
                    for part in mount.target.split('/').filter(|p| !p.is_empty()) {
                        if !current.is_empty() {
                            current.push('/');
                        }
                        current.push_str(part);
                        parents.push(m(&current)?);
                    }
                    let target = parents.pop().ok_or_else(|| RunError::Invalid {
                        reason: "a mount cannot replace the root directory".into(),
                    })?;
                    let kind = match &mount.source {
                        MountSource::Tmpfs { size } => PreparedKind::Tmpfs(cstring(match size {
                            Some(bytes) => format!("mode=1777,size={bytes}"),
                            None => "mode=1777".to_string(),
                        })?),
                        MountSource::Bind { source, readonly } => PreparedKind::Bind {
                            source: path_c(source)?,
                            readonly: *readonly,
                        },
                        MountSource::Overlay {
                            lowers,
                            subpath,
                            readonly,
                        } => overlay_mount(dir, i, lowers, subpath, *readonly, &options)?,
                        MountSource::Secret {
                            data,
                            mode,
                            uid,
                            gid,
                        } => PreparedKind::Secret {
                            staging: path_c(&mount_dir(dir, i))?,
                            file: path_c(&mount_dir(dir, i).join("secret"))?,
                            data: data.0.clone(),
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        },
                        MountSource::Socket { source } => PreparedKind::File {
                            source: path_c(source)?,
                        },
                    };
                    Ok(PreparedMount {
                        parents,
                        target,
                        kind,
                    })
                })
                .collect::<Result<_, RunError>>()?,
            workdir_parts,
            workdir: cstring(workdir)?,
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            bind_sys: userns && spec.network == Network::Host,
            set_groups: spec.namespace != super::userns::Namespace::Single,
            program,
            argv: spec.argv.iter().map(cstring).collect::<Result<_, _>>()?,
            env: spec.env.iter().map(cstring).collect::<Result<_, _>>()?,
            flags,
        })
    }
}

/// A failed setup step: what was being done and the errno.
type StepError = (&'static str, Errno);

/// The command process's setup, from a fresh mount namespace to the
/// moment before exec: mounts, pivot, working directory, user.
pub(super) fn setup(sys: &mut impl Syscall, p: &Prepared) -> Result<(), StepError> {
    let none = c"none";
    let empty = c"";
    sys.umask(0o022);
    sys.mount(none, c"/", empty, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| ("make mounts private", e))?;
    sys.chdir(&p.lower_root)
        .map_err(|e| ("enter the snapshot directory", e))?;
    match &p.copy_root {
        None => sys
            .mount(c"overlay", &p.merged, c"overlay", 0, Some(&p.overlay_data))
            .map_err(|e| ("mount the overlay root file system", e))?,
        Some(root) => sys
            .mount(root, &p.merged, c"", libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| ("bind the copied root file system", e))?,
    }
    for point in &p.mount_points {
        sys.mkdir(point, 0o755)
            .map_err(|e| ("create a mount point", e))?;
    }
    let pseudo = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys.mount(c"proc", &p.proc_dir, c"proc", pseudo, None)
        .map_err(|e| ("mount /proc", e))?;
    if p.bind_sys {
        sys.mount(c"/sys", &p.sys_dir, c"", libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| ("bind /sys", e))?;
        remount_read_only(sys, &p.sys_dir, "make /sys read-only")?;
    } else {
        sys.mount(
            c"sysfs",
            &p.sys_dir,
            c"sysfs",
            pseudo | libc::MS_RDONLY,
            None,
        )
        .map_err(|e| ("mount /sys", e))?;
    }
    protect_kernel_paths(sys, p)?;
    sys.mount(
        c"tmpfs",
        &p.dev_dir,
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(|e| ("mount /dev", e))?;
    for (host, target) in &p.devices {
        sys.touch(target).map_err(|e| ("create a device node", e))?;
        sys.mount(host, target, empty, libc::MS_BIND, None)
            .map_err(|e| ("bind a device", e))?;
    }
    sys.mkdir(&p.shm, 0o1777)
        .map_err(|e| ("create /dev/shm", e))?;
    sys.mount(
        c"shm",
        &p.shm,
        c"tmpfs",
        pseudo,
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(|e| ("mount /dev/shm", e))?;
    for (target, link) in &p.dev_links {
        sys.symlink(target, link).map_err(|e| ("link /dev/fd", e))?;
    }
    if let Some((host, target)) = &p.pipes {
        sys.mkdir(target, 0o755)
            .map_err(|e| ("create /dev/pipes", e))?;
        bind_read_only(
            sys,
            host,
            target,
            ("bind /dev/pipes", "make /dev/pipes read-only"),
        )?;
    }
    for (host, target, create) in &p.host_files {
        if *create {
            sys.mkdir(&p.etc, 0o755).map_err(|e| ("create /etc", e))?;
            sys.touch(target)
                .map_err(|e| ("create a mount point in /etc", e))?;
        }
        bind_read_only(
            sys,
            host,
            target,
            (
                "bind /etc/hosts or /etc/resolv.conf",
                "make /etc/hosts or /etc/resolv.conf read-only",
            ),
        )?;
    }
    for mount in &p.mounts {
        for dir in &mount.parents {
            sys.mkdir(dir, 0o755)
                .map_err(|e| ("create a --mount target", e))?;
        }
        if mount.kind.is_file() {
            sys.touch(&mount.target)
                .map_err(|e| ("create a --mount target file", e))?;
        } else {
            sys.mkdir(&mount.target, 0o755)
                .map_err(|e| ("create a --mount target", e))?;
        }
        match &mount.kind {
            PreparedKind::Tmpfs(data) => sys
                .mount(
                    c"tmpfs",
                    &mount.target,
                    c"tmpfs",
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(data),
                )
                .map_err(|e| ("mount a tmpfs --mount", e))?,
            PreparedKind::Overlay {
                staging,
                data,
                source,
                readonly,
            } => {
                let flags = if *readonly { libc::MS_RDONLY } else { 0 };
                sys.mount(c"overlay", staging, c"overlay", flags, Some(data))
                    .map_err(|e| ("mount a --mount=type=bind source", e))?;
                bind(sys, source, &mount.target, *readonly)?;
            }
            PreparedKind::Bind { source, readonly } => {
                bind(sys, source, &mount.target, *readonly)?;
            }
            PreparedKind::Secret {
                staging,
                file,
                data,
                mode,
                uid,
                gid,
            } => {
                sys.mount(
                    c"tmpfs",
                    staging,
                    c"tmpfs",
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    Some(c"mode=700"),
                )
                .map_err(|e| ("mount a tmpfs for a secret", e))?;
                sys.write_file(file, data, *mode, *uid, *gid)
                    .map_err(|e| ("write a secret", e))?;
                bind(sys, file, &mount.target, true)?;
            }
            PreparedKind::File { source } => {
                bind(sys, source, &mount.target, false)?;
            }
        }
    }
    sys.sethostname(HOSTNAME)
        .map_err(|e| ("set the host name", e))?;
    // pivot_root(".", "."): the old root ends up mounted over the new one
    // and is detached at once (pivot_root(2), "NOTES").
    sys.chdir(&p.merged)
        .map_err(|e| ("enter the root file system", e))?;
    sys.pivot_root(c".", c".")
        .map_err(|e| ("pivot into the root file system", e))?;
    sys.umount(c".", libc::MNT_DETACH)
        .map_err(|e| ("detach the host's root", e))?;
    sys.chdir(c"/").map_err(|e| ("enter /", e))?;
    for part in &p.workdir_parts {
        sys.mkdir(part, 0o755)
            .map_err(|e| ("create the working directory", e))?;
    }
    sys.chdir(&p.workdir)
        .map_err(|e| ("enter the working directory", e))?;
    for cap in 0..64 {
        if !KEPT_CAPS.contains(&cap) {
            sys.drop_bounding_cap(cap)
                .map_err(|e| ("drop capabilities", e))?;
        }
    }
    sys.clear_inherited_caps()
        .map_err(|e| ("clear inheritable capabilities", e))?;
    if p.set_groups {
        sys.set_groups(&p.groups)
            .map_err(|e| ("set supplementary groups", e))?;
    }
    sys.set_gid(p.gid).map_err(|e| ("set the group id", e))?;
    sys.set_uid(p.uid).map_err(|e| ("set the user id", e))?;
    Ok(())
}

/// Makes [`READONLY_PATHS`] read-only and covers [`MASKED_PATHS`], in the
/// /proc and /sys just mounted, as runc does (its `readonlyPath` and
/// `maskPath`). A path the kernel does not have is skipped.
fn protect_kernel_paths(sys: &mut impl Syscall, p: &Prepared) -> Result<(), StepError> {
    let enoent = Errno(libc::ENOENT);
    for path in &p.readonly_paths {
        match sys.mount(path, path, c"", libc::MS_BIND | libc::MS_REC, None) {
            Err(e) if e == enoent => continue,
            other => other.map_err(|e| ("bind a /proc path for read-only", e))?,
        }
        remount_read_only(sys, path, "make a /proc path read-only")?;
    }
    for path in &p.masked_paths {
        match sys.mount(c"/dev/null", path, c"", libc::MS_BIND, None) {
            Ok(()) => {}
            Err(e) if e == enoent => {}
            // A directory: an empty tmpfs instead.
            Err(e) if e == Errno(libc::ENOTDIR) => sys
                .mount(c"tmpfs", path, c"tmpfs", libc::MS_RDONLY, None)
                .map_err(|e| ("mask a /proc or /sys directory", e))?,
            Err(e) => return Err(("mask a /proc or /sys file", e)),
        }
    }
    Ok(())
}

/// Binds `source` at `target`, read-only when asked (a bind mount takes
/// MS_RDONLY only on a remount).
fn bind(
    sys: &mut impl Syscall,
    source: &CStr,
    target: &CStr,
    readonly: bool,
) -> Result<(), StepError> {
    sys.mount(source, target, c"", libc::MS_BIND | libc::MS_REC, None)
        .map_err(|e| ("bind a --mount", e))?;
    if readonly {
        remount_read_only(sys, target, "make a --mount read-only")?;
    }
    Ok(())
}

/// Binds a host file or directory read-only; `steps` name the two calls
/// in errors.
fn bind_read_only(
    sys: &mut impl Syscall,
    source: &CStr,
    target: &CStr,
    steps: (&'static str, &'static str),
) -> Result<(), StepError> {
    sys.mount(source, target, c"", libc::MS_BIND, None)
        .map_err(|e| (steps.0, e))?;
    remount_read_only(sys, target, steps.1)
}

fn remount_read_only(
    sys: &mut impl Syscall,
    target: &CStr,
    step: &'static str,
) -> Result<(), StepError> {
    // A remount must keep the flags the mount was made with where they
    // are locked (a mount from a more privileged user namespace: nosuid,
    // nodev, noexec, atime), or the kernel refuses it (mount(2), EPERM).
    // ST_* flags have the MS_* values.
    let kept = libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC
        | libc::MS_NOATIME
        | libc::MS_NODIRATIME
        | libc::MS_RELATIME;
    let current = sys.mount_flags(target).map_err(|e| (step, e))?;
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | (current & kept);
    sys.mount(c"", target, c"", flags, None)
        .map_err(|e| (step, e))
}

/// Writes a setup failure to the error pipe: the step, a NUL, the errno.
/// No allocation: this runs in a forked child.
fn report(fd: libc::c_int, (step, errno): StepError) {
    let mut buf = [0u8; 128];
    let bytes = step.as_bytes();
    let n = bytes.len().min(buf.len() - 5);
    buf[..n].copy_from_slice(&bytes[..n]);
    buf[n] = 0;
    buf[n + 1..n + 5].copy_from_slice(&errno.0.to_le_bytes());
    // SAFETY: the buffer is valid for n + 5 bytes.
    unsafe { libc::write(fd, buf.as_ptr().cast(), n + 5) };
}

/// Waits for `pid`; its exit code, or 128 + the signal that ended it.
fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && Errno::last_raw() != libc::EINTR {
            return 255;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

impl Errno {
    fn last_raw() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RunError::Sandbox {
            step: "create a pipe".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: both descriptors were just opened and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's side, after fork: never returns.
fn child(p: &Prepared, err: libc::c_int, out: libc::c_int, null: libc::c_int) -> ! {
    // SAFETY (whole function): only system calls on prepared data; every
    // path ends in _exit or a successful exec.
    unsafe {
        // hoist's handlers are not for the sandbox's processes.
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if p.chroot {
            // The process group hoist's signal handler kills, and the
            // parent of every orphan the step leaves.
            libc::setsid();
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        } else if let Err(e) = Linux.unshare(p.flags) {
            report(err, ("create namespaces", e));
            libc::_exit(126);
        }
        let pid = libc::fork();
        if pid < 0 {
            report(
                err,
                ("fork the command's process", Errno(Errno::last_raw())),
            );
            libc::_exit(126);
        }
        if pid > 0 {
            libc::close(err);
            libc::close(out);
            let code = wait_for(pid);
            if p.chroot {
                // What the step left running goes with it.
                super::chroot::sweep();
            }
            libc::_exit(code);
        }
        // The command's process: pid 1 of the new pid namespace, or in
        // chroot isolation a child of the subreaper.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::dup2(null, 0) < 0 || libc::dup2(out, 1) < 0 || libc::dup2(out, 2) < 0 {
            report(err, ("redirect output", Errno(Errno::last_raw())));
            libc::_exit(126);
        }
        // Nothing of hoist's (the store's lock files, sockets) reaches the
        // command: every other descriptor closes on exec.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );
        let ready = match (&p.copy_root, p.chroot) {
            (Some(root), true) => super::chroot::setup(
                &mut Linux,
                root,
                &p.workdir_parts,
                &p.workdir,
                (p.uid, p.gid, p.groups.as_slice(), p.set_groups),
            ),
            (None, true) => Err(("find the root to chroot into", Errno(libc::EINVAL))),
            (_, false) => setup(&mut Linux, p),
        };
        if let Err(e) = ready {
            report(err, e);
            libc::_exit(126);
        }
        exec(p, err)
    }
}

/// Execs the step's program, trying each candidate path as execvp does;
/// reports and exits when none runs.
fn exec(p: &Prepared, err: libc::c_int) -> ! {
    // SAFETY (whole function): system calls on prepared data.
    unsafe {
        let mut argv: [*const libc::c_char; 256] = [std::ptr::null(); 256];
        let mut envp: [*const libc::c_char; 1024] = [std::ptr::null(); 1024];
        for (slot, a) in argv.iter_mut().zip(p.argv.iter()) {
            *slot = a.as_ptr();
        }
        for (slot, e) in envp.iter_mut().zip(p.env.iter()) {
            *slot = e.as_ptr();
        }
        let mut errno = libc::ENOENT;
        for program in &p.program {
            libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = Errno::last_raw();
            // As execvp: a later directory may still hold it.
            if e != libc::ENOENT && e != libc::ENOTDIR {
                errno = e;
            }
        }
        report(err, ("exec", Errno(errno)));
        libc::_exit(127);
    }
}

/// The intermediate child of the step running now (0 when none), for the
/// signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// SIGTERM or SIGINT, once one arrived during a step.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// SIGTERM and SIGINT during a step: kill the sandbox and let the build
/// unwind. Killing the intermediate child is enough: its death kills the
/// command (parent-death signal), whose death as pid 1 kills everything
/// else in its pid namespace, and the mount namespace with all the
/// step's mounts goes with the last of them.
extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe. In chroot isolation the
        // child leads a process group holding the step's processes.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Installs [`on_signal`] for SIGTERM and SIGINT while alive; puts the
/// previous handlers back when dropped.
struct SignalGuard {
    previous: [(libc::c_int, libc::sigaction); 2],
}

impl SignalGuard {
    fn install() -> SignalGuard {
        let mut previous = [
            (libc::SIGTERM, unsafe_zeroed()),
            (libc::SIGINT, unsafe_zeroed()),
        ];
        for (signal, old) in &mut previous {
            let mut action = unsafe_zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            // No SA_RESTART: the blocking read of the output returns.
            action.sa_flags = 0;
            // SAFETY: valid sigaction structures; the handler is async-signal-safe.
            unsafe { libc::sigaction(*signal, &action, old) };
        }
        SignalGuard { previous }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores what sigaction returned.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

fn unsafe_zeroed() -> libc::sigaction {
    // SAFETY: sigaction is plain data; all-zero is a valid (default) value.
    unsafe { std::mem::zeroed() }
}

/// Runs the prepared command; calls `output` with each line it prints
/// (stdout and stderr, interleaved as written); returns its exit code.
pub(super) fn run(p: &Prepared, output: &mut dyn FnMut(&str)) -> Result<i32, RunError> {
    if p.argv.len() > 255 || p.env.len() > 1023 {
        return Err(RunError::Invalid {
            reason: "the command has too many arguments or environment variables".into(),
        });
    }
    let (err_r, err_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let null = std::fs::File::open("/dev/null").map_err(|source| RunError::Sandbox {
        step: "open /dev/null".into(),
        source,
    })?;
    SIGNAL.store(0, Ordering::SeqCst);
    let _signals = SignalGuard::install();
    // SAFETY: the child only makes system calls on data prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(RunError::Sandbox {
            step: "fork".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        child(p, err_w.as_raw_fd(), out_w.as_raw_fd(), null.as_raw_fd());
    }
    CHILD.store(pid, Ordering::SeqCst);
    if SIGNAL.load(Ordering::SeqCst) != 0 {
        // SAFETY: pid is our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    drop(err_w);
    drop(out_w);
    drop(null);
    // The error pipe closes on exec (or when setup fails and reports).
    let mut report = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut report);
    let mut reader = BufReader::new(std::fs::File::from(out_r));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                output(text.trim_end_matches(['\n', '\r']));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let code = wait_for(pid);
    CHILD.store(0, Ordering::SeqCst);
    let signal = SIGNAL.swap(0, Ordering::SeqCst);
    if signal != 0 {
        return Err(RunError::Interrupted { signal });
    }
    if let Some(nul) = report.iter().position(|&b| b == 0) {
        let step = String::from_utf8_lossy(&report[..nul]).into_owned();
        let errno = report
            .get(nul + 1..nul + 5)
            .map(|b| i32::from_le_bytes(b.try_into().expect("four bytes")))
            .unwrap_or(0);
        let source = std::io::Error::from_raw_os_error(errno);
        if step == "exec" {
            return Err(RunError::Exec {
                program: p.argv[0].to_string_lossy().into_owned(),
                source,
            });
        }
        return Err(RunError::Sandbox { step, source });
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::Recording;
    use crate::{HostFile, RunSpec};

    fn spec() -> RunSpec {
        RunSpec {
            layer_ids: Vec::new(),
            lowers: vec![
                "/store/snapshots/aaa/rootfs".into(),
                "/store/snapshots/bbb/rootfs".into(),
            ],
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            workdir: "/app/src".into(),
            uid: 1001,
            gid: 1002,
            groups: vec![1002, 50],
            network: Network::Host,
            host_files: vec![HostFile {
                source: "/etc/hosts".into(),
                target: "etc/hosts".into(),
                create: true,
            }],
            scripts: Vec::new(),
            namespace: crate::userns::Namespace::Host,
            mounts: vec![crate::RunMount {
                target: "/root/.cache".into(),
                source: MountSource::Bind {
                    source: "/store/mounts/cache/ab".into(),
                    readonly: false,
                },
            }],
        }
    }

    fn prepared(spec: &RunSpec) -> Prepared {
        Prepared::new(spec, Path::new("/s"), false, None, false).unwrap()
    }

    #[test]
    fn the_root_is_an_overlay_of_the_lowers_top_first_and_pivoted_into() {
        let p = prepared(&spec());
        let mut sys = Recording::default();
        setup(&mut sys, &p).unwrap();
        let calls = sys.calls;
        let at = |prefix: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
        };
        assert_eq!(calls[1], "mount none /  0x44000 ");
        assert_eq!(calls[2], "chdir /store/snapshots");
        assert_eq!(
            calls[3],
            "mount overlay /s/merged overlay 0x0 lowerdir=bbb/rootfs:aaa/rootfs,upperdir=/s/upper,workdir=/s/work,redirect_dir=off,metacopy=off,index=off"
        );
        // Host files are bound read-only, after their mount point is made.
        let bind = at("mount /etc/hosts /s/merged/etc/hosts");
        assert!(at("touch /s/merged/etc/hosts") < bind);
        assert_eq!(calls[bind + 1], "mount  /s/merged/etc/hosts  0x1021 ");
        // Everything is mounted before the pivot, the user set after it.
        let pivot = at("pivot_root . .");
        assert!(at("mount proc /s/merged/proc proc") < pivot);
        assert!(at("mount tmpfs /s/merged/dev tmpfs") < pivot);
        assert_eq!(calls[pivot + 1], "umount . 0x2");
        assert!(pivot < at("mkdir /app/src"));
        assert!(at("chdir /app/src") < at("setuid 1001"));
        let cache = at("mount /store/mounts/cache/ab /s/merged/root/.cache  0x5000");
        assert!(at("mkdir /s/merged/root 755") < cache && cache < pivot);
        assert!(at("drop cap 21") < at("setuid 1001"), "CAP_SYS_ADMIN goes");
        assert!(at("clear inheritable and ambient caps") < at("setuid 1001"));
        assert!(
            !calls.contains(&"drop cap 0".to_string()),
            "CAP_CHOWN stays"
        );
        assert_eq!(calls[at("setgroups")], "setgroups [1002, 50]");
        assert!(at("setgid 1002") < at("setuid 1001"));
    }

    #[test]
    fn kernel_settings_are_read_only_and_kernel_details_masked_before_the_pivot() {
        let p = prepared(&spec());
        // A path this kernel lacks, and two that are directories.
        let mut sys = Recording {
            refuse: vec![
                ("mount /s/merged/proc/fs ".into(), Errno(libc::ENOENT)),
                (
                    "mount /dev/null /s/merged/proc/acpi ".into(),
                    Errno(libc::ENOTDIR),
                ),
                (
                    "mount /dev/null /s/merged/sys/firmware ".into(),
                    Errno(libc::ENOTDIR),
                ),
            ],
            ..Recording::default()
        };
        setup(&mut sys, &p).unwrap();
        let calls = sys.calls;
        let at = |call: &str| {
            calls
                .iter()
                .position(|c| c == call)
                .unwrap_or_else(|| panic!("no `{call}` in {calls:#?}"))
        };
        let proc = at("mount proc /s/merged/proc proc 0xe ");
        let sys_mount = at("mount sysfs /s/merged/sys sysfs 0xf ");
        let pivot = at("pivot_root . .");
        for path in ["sys", "sysrq-trigger", "irq", "bus"] {
            let bind = at(&format!(
                "mount /s/merged/proc/{path} /s/merged/proc/{path}  0x5000 "
            ));
            assert!(proc < bind && sys_mount < bind && bind < pivot, "{path}");
            assert_eq!(
                calls[bind + 1],
                format!("mount  /s/merged/proc/{path}  0x1021 ")
            );
        }
        // Missing: skipped, not remounted.
        let fs = at("mount /s/merged/proc/fs /s/merged/proc/fs  0x5000 ");
        assert!(!calls[fs + 1].contains("proc/fs"), "{}", calls[fs + 1]);
        for file in ["kcore", "keys", "timer_list", "sched_debug"] {
            let mask = at(&format!("mount /dev/null /s/merged/proc/{file}  0x1000 "));
            assert!(mask < pivot, "{file}");
        }
        for dir in ["proc/acpi", "sys/firmware"] {
            let tmpfs = at(&format!("mount tmpfs /s/merged/{dir} tmpfs 0x1 "));
            assert!(at(&format!("mount /dev/null /s/merged/{dir}  0x1000 ")) < tmpfs);
            assert!(tmpfs < pivot, "{dir}");
        }
    }

    #[test]
    fn a_secret_is_written_on_a_private_tmpfs_and_bound_read_only() {
        let mut with_secret = spec();
        with_secret.mounts.push(crate::RunMount {
            target: "/run/secrets/tok".into(),
            source: MountSource::Secret {
                data: crate::SecretBytes(b"hunter2".to_vec()),
                mode: 0o400,
                uid: 1001,
                gid: 0,
            },
        });
        let p = prepared(&with_secret);
        let mut sys = Recording::default();
        setup(&mut sys, &p).unwrap();
        let calls = sys.calls.join("\n");
        let expected = [
            "mkdir /s/merged/run/secrets 755",
            "touch /s/merged/run/secrets/tok",
            "mount tmpfs /s/mount-1 tmpfs 0xe mode=700",
            "write /s/mount-1/secret (7 bytes) 400 1001:0",
            "mount /s/mount-1/secret /s/merged/run/secrets/tok  0x5000 ",
            "mount  /s/merged/run/secrets/tok  0x1021 ",
        ];
        let at = expected.map(|c| {
            calls
                .lines()
                .position(|l| l == c)
                .unwrap_or_else(|| panic!("no `{c}` in {calls}"))
        });
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{calls}");
        assert!(!calls.contains("hunter2"));
        assert!(!format!("{with_secret:?}").contains("hunter2"));
    }

    #[test]
    fn programs_are_looked_up_on_the_steps_path() {
        let p = prepared(&spec());
        let names: Vec<_> = p.program.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(names, ["/usr/bin/sh", "/bin/sh"]);
        let mut none = spec();
        none.network = Network::None;
        none.lowers.clear();
        let p = prepared(&none);
        assert_ne!(p.flags & libc::CLONE_NEWNET, 0);
        assert!(
            p.overlay_data
                .to_str()
                .unwrap()
                .starts_with("lowerdir=empty,")
        );
    }
}
