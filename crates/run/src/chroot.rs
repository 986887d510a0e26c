//! chroot isolation: RUN where no namespace can be made (a root process
//! without CAP_SYS_ADMIN under a seccomp profile that refuses `unshare`
//! and `mount`: Docker's and containerd's defaults, Kubernetes'
//! `RuntimeDefault`).
//!
//! The step's root is a copy of its layers ([`super::copy`]), recorded,
//! then prepared here before the fork with ordinary file operations, where
//! namespace mode mounts: /proc and /sys are empty directories; /dev gets
//! device nodes (mknod, with the host's numbers), the /dev/fd links and
//! /dev/pipes' heredoc scripts; the host's /etc/hosts and /etc/resolv.conf
//! are written through the image's files; a cache or bind mount's
//! directory has its children moved in (and back out after the step); a
//! secret is written with its mode and owner and emptied after the step;
//! an ssh agent's socket is hard-linked. A mount target's own children
//! are moved aside, as a mount hides them. The walks before and after the
//! step see each of those paths without its contents and compare only its
//! kind, mode and owner ([`excluded`]): the layer is the one namespace
//! mode makes.
//!
//! The command's process chroots into the copy, enters its working
//! directory, loses CAP_SYS_CHROOT (with it, root climbs out of a chroot)
//! and CAP_MKNOD (with it, root makes a node for the host's disk) from its
//! bounding set, along with everything namespace mode drops, and takes the
//! step's user. It shares the host's (the container's) processes, host
//! name, network and IPC: docs/run.md says what that means.

use super::syscall::{Errno, Syscall};
use super::{MountSource, RunError, RunSpec};
use std::ffi::CStr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The device nodes a step gets (as in namespace mode), made with the
/// host's numbers.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Capabilities dropped on top of namespace mode's: CAP_SYS_CHROOT and
/// CAP_MKNOD.
pub(super) const DROPPED: [u32; 2] = [18, 27];

/// A path's mode bits, uid and gid.
type Style = (u32, u32, u32);

/// What [`place`] did that must be undone once the step is over, before
/// its changes are walked: children moved into a mount target (moved back
/// to their source), files written (emptied, their mode and owner put
/// back), links made (removed). Undone when dropped, whatever happened to
/// the step.
#[derive(Debug, Default)]
pub(super) struct Placed {
    moved: Vec<(PathBuf, PathBuf)>,
    /// Mount targets given the mode and owner of what is mounted there,
    /// with their own to put back.
    restyled: Vec<(PathBuf, Style)>,
    emptied: Vec<(PathBuf, Option<Style>)>,
    linked: Vec<PathBuf>,
    /// What puts the root back to its layers once the step's layer is
    /// written.
    pub(super) restore: Restore,
}

/// What [`place`] changed in the root beyond what [`Placed::undo`] takes
/// back before the walk: paths it created, directories it emptied (their
/// children set aside), files of the image it wrote through (their
/// content). [`Restore::apply`] makes the root the merge of its layers
/// again, so that the next step of the stage starts from it instead of a
/// new copy ([`super::carry`]).
#[derive(Debug, Default)]
pub(super) struct Restore {
    created: Vec<PathBuf>,
    hidden: Vec<(PathBuf, PathBuf)>,
    originals: Vec<(PathBuf, Vec<u8>)>,
}

impl Restore {
    /// Keeps the created paths among `in_layer` (paths in the root): they
    /// are the step's as much as the sandbox's.
    pub(super) fn keep(&mut self, in_layer: std::collections::HashSet<PathBuf>) {
        self.created.retain(|p| !in_layer.contains(p));
    }

    /// Empties each emptied directory of what the step put there and puts
    /// its own children back, writes the image's files back, and removes
    /// what was created (a directory only if the step left it empty: what
    /// it put there is in the layer).
    pub(super) fn apply(self) -> Result<(), RunError> {
        for (target, aside) in self.hidden.iter().rev() {
            for entry in std::fs::read_dir(target).map_err(io(target))? {
                let path = entry.map_err(io(target))?.path();
                let removed = match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                    _ => std::fs::remove_file(&path),
                };
                removed.map_err(io(&path))?;
            }
            move_children(aside, target)?;
        }
        for (path, original) in &self.originals {
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, original))
                .map_err(io(path))?;
        }
        for path in self.created.iter().rev() {
            let removed = match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir(path),
                Ok(_) => std::fs::remove_file(path),
                Err(_) => Ok(()),
            };
            match removed {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                other => other.map_err(io(path))?,
            }
        }
        Ok(())
    }
}

impl Placed {
    /// Puts everything back; the first failure is returned, the rest still
    /// tried.
    pub(super) fn undo(&mut self) -> Result<(), RunError> {
        let mut first = None;
        for (path, was) in self.emptied.drain(..) {
            let result = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .and_then(|file| match was {
                    Some((mode, uid, gid)) => {
                        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
                        file.set_permissions(std::fs::Permissions::from_mode(mode))
                    }
                    None => Ok(()),
                });
            if let Err(source) = result {
                first.get_or_insert(RunError::Io { path, source });
            }
        }
        for path in self.linked.drain(..) {
            if let Err(source) = std::fs::remove_file(&path) {
                first.get_or_insert(RunError::Io { path, source });
            }
        }
        for (source, target) in self.moved.drain(..).rev() {
            if let Err(e) = move_children(&target, &source) {
                first.get_or_insert(e);
            }
        }
        for (path, style) in self.restyled.drain(..) {
            if let Err(e) = restyle(&path, style) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The paths of the root whose contents the sandbox provides: the pseudo
/// file systems, the host files and the mount targets. The walks before
/// and after the step list each of them without what is below it and
/// compare only its kind, mode and owner ([`super::copy::record`]), so
/// that what the sandbox put there never reaches the layer.
pub(super) fn excluded(spec: &RunSpec) -> Vec<String> {
    let mut out: Vec<String> = vec!["proc".into(), "sys".into(), "dev".into()];
    for file in &spec.host_files {
        out.push(file.target.trim_start_matches('/').to_string());
    }
    for mount in &spec.mounts {
        out.push(mount.target.trim_start_matches('/').to_string());
    }
    out
}

/// The mode bits and owner of `path`.
fn style_of(path: &Path) -> Result<Style, RunError> {
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    Ok((meta.mode() & 0o7777, meta.uid(), meta.gid()))
}

/// Gives `path` the mode bits and owner `style`.
fn restyle(path: &Path, (mode, uid, gid): Style) -> Result<(), RunError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Moves every child of `from` into `to` (same file system).
fn move_children(from: &Path, to: &Path) -> Result<(), RunError> {
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let dest = to.join(entry.file_name());
        std::fs::rename(entry.path(), &dest).map_err(io(&dest))?;
    }
    Ok(())
}

/// Creates the directories down to `rel` inside `root` (mode 0755, as the
/// namespace sandbox makes mount points), `rel` itself too when `last`; a
/// symlink or file on the way is an error, never followed out of the root.
fn directories(root: &Path, rel: &str, last: bool, restore: &mut Restore) -> Result<(), RunError> {
    let mut current = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let n = if last {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    for part in &parts[..n] {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(RunError::Invalid {
                    reason: format!(
                        "/{} is not a directory in the image: chroot isolation cannot put a mount there",
                        current.strip_prefix(root).unwrap_or(&current).display()
                    ),
                });
            }
            Err(_) => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&current)
                    .map_err(io(&current))?;
                restore.created.push(current.clone());
            }
        }
    }
    Ok(())
}

/// Empties the directory `target` of the image (its children go to
/// `aside`, as a mount over it hides them), creating it if missing.
fn empty_directory(
    root: &Path,
    rel: &str,
    aside: &Path,
    restore: &mut Restore,
) -> Result<PathBuf, RunError> {
    directories(root, rel, true, restore)?;
    let target = root.join(rel);
    std::fs::create_dir_all(aside).map_err(io(aside))?;
    restore.hidden.push((target.clone(), aside.to_path_buf()));
    move_children(&target, aside)?;
    Ok(target)
}

/// Writes `data` at `target`: through the image's file if it has one (its
/// parent directory stays as it was; its content is kept to be put back),
/// else into a new file.
fn write_file(
    target: &Path,
    data: &mut dyn std::io::Read,
    restore: &mut Restore,
) -> Result<bool, RunError> {
    let existed = std::fs::symlink_metadata(target).is_ok();
    if existed {
        let original = std::fs::read(target).map_err(io(target))?;
        restore.originals.push((target.to_path_buf(), original));
    } else {
        restore.created.push(target.to_path_buf());
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)
        .map_err(io(target))?;
    std::io::copy(data, &mut file).map_err(io(target))?;
    Ok(existed)
}

/// Prepares `root` (the step's copied root, recorded already) for `spec`,
/// with scratch room in `dir`: see the module's description. Returns what
/// to undo after the step.
pub(super) fn place(
    spec: &RunSpec,
    dir: &Path,
    root: &Path,
    pipes: Option<&Path>,
) -> Result<Placed, RunError> {
    let mut placed = Placed::default();
    let mut restore = Restore::default();
    let restore = &mut restore;
    let hidden = dir.join("hidden");
    for name in ["proc", "sys", "dev"] {
        empty_directory(root, name, &hidden.join(name), restore)?;
    }
    devices(&root.join("dev"))?;
    if let Some(pipes) = pipes {
        let target = root.join("dev/pipes");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&target)
            .map_err(io(&target))?;
        for entry in std::fs::read_dir(pipes).map_err(io(pipes))? {
            let entry = entry.map_err(io(pipes))?;
            let to = target.join(entry.file_name());
            std::fs::copy(entry.path(), &to).map_err(io(&to))?;
        }
    }
    for file in &spec.host_files {
        let rel = file.target.trim_start_matches('/');
        directories(root, rel, false, restore)?;
        let target = root.join(rel);
        let mut source = std::fs::File::open(&file.source).map_err(io(&file.source))?;
        if !write_file(&target, &mut source, restore)? {
            placed.emptied.push((target, None));
        }
    }
    for (i, mount) in spec.mounts.iter().enumerate() {
        let rel = mount.target.trim_start_matches('/');
        if rel.is_empty() {
            return Err(RunError::Invalid {
                reason: "a mount cannot replace the root directory".into(),
            });
        }
        let target = root.join(rel);
        let aside = hidden.join(format!("mount-{i}"));
        match &mount.source {
            // A mounted directory's own mode and owner show at its target
            // (a cache mount's uid, gid and mode; a tmpfs's 1777).
            MountSource::Tmpfs { .. } => {
                empty_directory(root, rel, &aside, restore)?;
                placed.restyled.push((target.clone(), style_of(&target)?));
                restyle(&target, (0o1777, 0, 0))?;
            }
            MountSource::Bind { source, .. } if source.is_dir() => {
                empty_directory(root, rel, &aside, restore)?;
                placed.restyled.push((target.clone(), style_of(&target)?));
                restyle(&target, style_of(source)?)?;
                placed.moved.push((source.clone(), target.clone()));
                move_children(source, &target)?;
            }
            MountSource::Bind { source, .. } => {
                directories(root, rel, false, restore)?;
                let mut from = std::fs::File::open(source).map_err(io(source))?;
                if !write_file(&target, &mut from, restore)? {
                    placed.emptied.push((target, None));
                }
            }
            MountSource::Socket { source } => {
                directories(root, rel, false, restore)?;
                std::fs::hard_link(source, &target).map_err(io(&target))?;
                restore.created.push(target.clone());
                placed.linked.push(target);
            }
            MountSource::Secret {
                data,
                mode,
                uid,
                gid,
            } => {
                directories(root, rel, false, restore)?;
                let was = std::fs::symlink_metadata(&target)
                    .ok()
                    .map(|m| (m.mode() & 0o7777, m.uid(), m.gid()));
                placed.emptied.push((target.clone(), was));
                write_file(&target, &mut data.0.as_slice(), restore)?;
                std::os::unix::fs::chown(&target, Some(*uid), Some(*gid)).map_err(io(&target))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                    .map_err(io(&target))?;
            }
            MountSource::Overlay { .. } => {
                return Err(RunError::Invalid {
                    reason: "an overlay --mount reached chroot isolation uncopied".into(),
                });
            }
        }
    }
    placed.restore = std::mem::take(restore);
    Ok(placed)
}

/// The device nodes, the /dev/fd links and /dev/shm in `dev`. A node that
/// cannot be made (no CAP_MKNOD) is an empty file instead, so that
/// redirections to /dev/null still work.
fn devices(dev: &Path) -> Result<(), RunError> {
    use std::os::unix::ffi::OsStrExt;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        let Ok(meta) = std::fs::metadata(&host) else {
            continue;
        };
        if !meta.file_type().is_char_device() {
            continue;
        }
        let target = dev.join(name);
        let path = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|_| {
            RunError::Invalid {
                reason: format!("{} contains a NUL byte", target.display()),
            }
        })?;
        // SAFETY: a valid C string and plain integers.
        let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, meta.rdev()) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EPERM) {
                return Err(RunError::Io {
                    path: target,
                    source: error,
                });
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&target)
                .map_err(io(&target))?;
        }
        // The umask narrowed the mode.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666))
            .map_err(io(&target))?;
    }
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        let path = dev.join(link);
        std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
    }
    let shm = dev.join("shm");
    std::fs::DirBuilder::new()
        .mode(0o1777)
        .create(&shm)
        .map_err(io(&shm))?;
    std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o1777)).map_err(io(&shm))
}

/// A failed setup step: what was being done and the errno.
type StepError = (&'static str, Errno);

/// The command process's setup in chroot isolation, from the fork to the
/// moment before exec: into the root, the working directory, the
/// capabilities, the user.
pub(super) fn setup(
    sys: &mut impl Syscall,
    root: &CStr,
    workdir_parts: &[std::ffi::CString],
    workdir: &CStr,
    ids: (u32, u32, &[libc::gid_t], bool),
) -> Result<(), StepError> {
    let (uid, gid, groups, set_groups) = ids;
    sys.umask(0o022);
    sys.chroot(root)
        .map_err(|e| ("enter the root file system (chroot)", e))?;
    sys.chdir(c"/").map_err(|e| ("enter /", e))?;
    for part in workdir_parts {
        sys.mkdir(part, 0o755)
            .map_err(|e| ("create the working directory", e))?;
    }
    sys.chdir(workdir)
        .map_err(|e| ("enter the working directory", e))?;
    for cap in 0..64 {
        if !super::sandbox::KEPT_CAPS.contains(&cap) || DROPPED.contains(&cap) {
            sys.drop_bounding_cap(cap)
                .map_err(|e| ("drop capabilities", e))?;
        }
    }
    sys.clear_inherited_caps()
        .map_err(|e| ("clear inheritable capabilities", e))?;
    if set_groups {
        sys.set_groups(groups)
            .map_err(|e| ("set supplementary groups", e))?;
    }
    sys.set_gid(gid).map_err(|e| ("set the group id", e))?;
    sys.set_uid(uid).map_err(|e| ("set the user id", e))?;
    Ok(())
}

/// Kills and reaps every process left of the step once its command has
/// exited: this process is their subreaper, so each orphan of the step
/// becomes its child, listed in /proc/self/task/<pid>/children. Runs in
/// the forked intermediate child: no allocation.
pub(super) fn sweep() {
    // SAFETY (whole function): system calls on stack buffers.
    unsafe {
        let pid = libc::getpid();
        let mut path = *b"/proc/self/task/\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let mut n = 16;
        let mut digits = [0u8; 12];
        let mut len = 0;
        let mut value = pid as u32;
        loop {
            digits[len] = b'0' + (value % 10) as u8;
            len += 1;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        for d in digits[..len].iter().rev() {
            path[n] = *d;
            n += 1;
        }
        for b in b"/children" {
            path[n] = *b;
            n += 1;
        }
        loop {
            let mut buf = [0u8; 4096];
            let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            let mut got = 0;
            if fd >= 0 {
                let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                libc::close(fd);
                if r > 0 {
                    got = r as usize;
                }
            }
            let mut any = false;
            let mut current: i32 = 0;
            let mut in_number = false;
            for &b in &buf[..got] {
                if b.is_ascii_digit() {
                    current = current * 10 + i32::from(b - b'0');
                    in_number = true;
                } else if in_number {
                    libc::kill(current, libc::SIGKILL);
                    any = true;
                    current = 0;
                    in_number = false;
                }
            }
            if in_number {
                libc::kill(current, libc::SIGKILL);
                any = true;
            }
            let mut status = 0;
            let reaped = libc::waitpid(-1, &mut status, if any { 0 } else { libc::WNOHANG });
            if reaped < 0 || (!any && reaped == 0) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::Recording;
    use crate::{HostFile, Network, RunMount, SecretBytes};

    fn spec(mounts: Vec<RunMount>, host_files: Vec<HostFile>) -> RunSpec {
        RunSpec {
            layer_ids: Vec::new(),
            lowers: Vec::new(),
            argv: vec!["sh".into()],
            env: Vec::new(),
            workdir: "/".into(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            network: Network::Host,
            host_files,
            scripts: Vec::new(),
            mounts,
            namespace: crate::userns::Namespace::Host,
        }
    }

    #[test]
    fn the_command_chroots_then_loses_chroot_and_mknod_before_taking_its_user() {
        let mut sys = Recording::default();
        let parts = [c"/app".to_owned(), c"/app/src".to_owned()];
        setup(
            &mut sys,
            c"/s/rootfs",
            &parts,
            c"/app/src",
            (1001, 1002, &[1002, 50], true),
        )
        .unwrap();
        let calls = sys.calls;
        let at = |call: &str| {
            calls
                .iter()
                .position(|c| c == call)
                .unwrap_or_else(|| panic!("no `{call}` in {calls:#?}"))
        };
        assert!(at("chroot /s/rootfs") < at("chdir /"));
        assert!(at("chdir /") < at("mkdir /app/src 755"));
        assert!(at("chdir /app/src") < at("drop cap 18"));
        for cap in [18, 21, 27] {
            assert!(at(&format!("drop cap {cap}")) < at("setuid 1001"), "{cap}");
        }
        for kept in [0, 1, 3, 6, 7] {
            assert!(!calls.contains(&format!("drop cap {kept}")), "{kept}");
        }
        assert!(at("clear inheritable and ambient caps") < at("setuid 1001"));
        assert!(at("setgroups [1002, 50]") < at("setgid 1002"));
        assert!(at("setgid 1002") < at("setuid 1001"));
    }

    #[test]
    fn place_provides_mounts_and_host_files_and_undo_takes_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("tmp/work")).unwrap();
        std::fs::write(root.join("tmp/work/old"), "image").unwrap();
        std::fs::write(root.join("etc/hosts"), "image\n").unwrap();
        std::fs::create_dir_all(root.join("dev/sub")).unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("kept"), "cached").unwrap();
        let mounts = vec![
            RunMount {
                target: "/tmp/work".into(),
                source: MountSource::Tmpfs { size: None },
            },
            RunMount {
                target: "/root/.cache/pip".into(),
                source: MountSource::Bind {
                    source: cache.clone(),
                    readonly: false,
                },
            },
            RunMount {
                target: "/run/secrets/tok".into(),
                source: MountSource::Secret {
                    data: SecretBytes(b"hunter2".to_vec()),
                    mode: 0o400,
                    uid: 1001,
                    gid: 7,
                },
            },
        ];
        let host_files = vec![HostFile {
            source: hosts,
            target: "etc/hosts".into(),
            create: false,
        }];
        let spec = spec(mounts, host_files);
        assert_eq!(
            excluded(&spec),
            [
                "proc",
                "sys",
                "dev",
                "etc/hosts",
                "tmp/work",
                "root/.cache/pip",
                "run/secrets/tok"
            ]
        );
        let etc = std::fs::metadata(root.join("etc")).unwrap();
        let mut placed = place(&spec, dir.path(), &root, None).unwrap();
        // The host's file, written through the image's: /etc is as it was.
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "127.0.0.1 localhost\n"
        );
        let etc_now = std::fs::metadata(root.join("etc")).unwrap();
        assert_eq!(etc.ctime_nsec(), etc_now.ctime_nsec());
        // The tmpfs target is empty, as a mount hides what is below it.
        assert_eq!(std::fs::read_dir(root.join("tmp/work")).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(root.join("root/.cache/pip/kept")).unwrap(),
            "cached"
        );
        let secret = std::fs::metadata(root.join("run/secrets/tok")).unwrap();
        assert_eq!(secret.permissions().mode() & 0o7777, 0o400);
        assert_eq!((secret.uid(), secret.gid()), (1001, 7));
        // A fresh /dev, with the nodes the host has.
        assert!(!root.join("dev/sub").exists());
        let null = std::fs::metadata(root.join("dev/null")).unwrap();
        assert_eq!(null.permissions().mode() & 0o777, 0o666);
        assert_eq!(
            std::fs::read_link(root.join("dev/fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
        std::fs::write(root.join("root/.cache/pip/new"), "from the step").unwrap();
        placed.undo().unwrap();
        assert_eq!(
            std::fs::read_to_string(cache.join("kept")).unwrap(),
            "cached"
        );
        assert_eq!(
            std::fs::read_to_string(cache.join("new")).unwrap(),
            "from the step"
        );
        assert_eq!(std::fs::read(root.join("run/secrets/tok")).unwrap(), b"");
        assert_eq!(
            std::fs::read_dir(root.join("root/.cache/pip"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_source_that_cannot_be_moved_in_fails_and_what_was_moved_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("kept"), "cached").unwrap();
        std::fs::write(root.join("file"), "a file of the image").unwrap();
        let mounts = vec![
            RunMount {
                target: "/c".into(),
                source: MountSource::Bind {
                    source: cache.clone(),
                    readonly: false,
                },
            },
            RunMount {
                target: "/file/below".into(),
                source: MountSource::Tmpfs { size: None },
            },
        ];
        let error = place(&spec(mounts, Vec::new()), dir.path(), &root, None).unwrap_err();
        assert!(
            error.to_string().contains("/file is not a directory"),
            "{error}"
        );
        assert!(
            cache.join("kept").is_file(),
            "the first source's files were put back"
        );
    }

    #[test]
    fn the_sweep_kills_and_reaps_what_a_step_left_running() {
        // SAFETY: fork in a test; the child only makes system calls.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                // A grandchild that outlives its parent, and a child.
                let middle = libc::fork();
                if middle == 0 {
                    if libc::fork() == 0 {
                        libc::setsid();
                        libc::pause();
                    }
                    libc::_exit(0);
                }
                if libc::fork() == 0 {
                    libc::pause();
                }
                let mut status = 0;
                libc::waitpid(middle, &mut status, 0);
                sweep();
                // Nothing is left to wait for.
                let rc = libc::waitpid(-1, &mut status, libc::WNOHANG);
                let errno = std::io::Error::last_os_error().raw_os_error();
                libc::_exit(if rc < 0 && errno == Some(libc::ECHILD) {
                    0
                } else {
                    1
                });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
    }

    #[test]
    fn what_the_sandbox_provides_stays_out_of_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/cache/apt/archives")).unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("etc/hosts"), "image\n").unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "host\n").unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        // A new file the sandbox provides too: with the host file, two
        // paths whose inodes are not compared (an inode shared by a new
        // and an old path once read as a new hard link).
        let mounts = vec![
            RunMount {
                target: "/var/cache/apt".into(),
                source: MountSource::Bind {
                    source: cache.clone(),
                    readonly: false,
                },
            },
            RunMount {
                target: "/etc/tok".into(),
                source: MountSource::Secret {
                    data: SecretBytes(b"s".to_vec()),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
            },
        ];
        let host_files = vec![HostFile {
            source: hosts,
            target: "etc/hosts".into(),
            create: false,
        }];
        let spec = spec(mounts, host_files);
        std::fs::write(root.join("etc/.pwd.lock"), "").unwrap();
        std::fs::write(root.join("etc/untouched"), "").unwrap();
        let watch = crate::copy::record(&root, dir.path(), &excluded(&spec))
            .unwrap()
            .expect("inotify");
        let mut placed = place(&spec, dir.path(), &root, None).unwrap();
        // What a step does: in the cache, /dev, /etc/hosts, and one file;
        // and it opens a lock file for writing, writing nothing (overlayfs
        // copies it up all the same).
        std::fs::write(root.join("var/cache/apt/pkg"), "deb").unwrap();
        std::fs::write(root.join("dev/made"), "x").unwrap();
        std::fs::write(root.join("etc/hosts"), "changed\n").unwrap();
        std::fs::write(root.join("etc/new"), "new\n").unwrap();
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .open(root.join("etc/.pwd.lock"))
                .unwrap(),
        );
        drop(std::fs::File::open(root.join("etc/untouched")).unwrap());
        placed.undo().unwrap();
        watch.finish(dir.path()).unwrap();
        let changes = crate::copy::changes(&root, dir.path()).unwrap();
        let paths: Vec<String> = changes
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        // proc and sys are new: the image had none (namespace mode makes
        // them too); dev and var/cache/apt were there.
        // etc/tok is the emptied secret's mount point: the engine leaves
        // such stubs out (diff::leave_out_mount_points).
        assert_eq!(
            paths,
            ["etc", "etc/.pwd.lock", "etc/new", "etc/tok", "proc", "sys"]
        );
        let tok = changes.iter().find(|e| e.path == b"etc/tok").unwrap();
        assert!(matches!(
            tok.kind,
            hoist_oci::layer::tar::EntryKind::File { size: 0, .. }
        ));
        assert_eq!(std::fs::read_to_string(cache.join("pkg")).unwrap(), "deb");
    }
}
