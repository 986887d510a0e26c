//! Rootless: hoist run again as root of a user namespace.
//!
//! When hoist is not root, the binary calls [`reexec`] before doing
//! anything else (as podman and `buildah unshare` do): it forks a child
//! that unshares a user namespace, maps ids into it and executes hoist
//! again with the same arguments. Inside, hoist is root (uid 0 is the
//! caller), so RUN's namespaces, overlay mounts, snapshot extraction
//! (with its `chown`s) and cleanup all work as they do for root, on ids of
//! the namespace: a file a step chowns to 1001 is 1001 in the layer. The
//! parent only forwards signals and returns the child's exit status.
//!
//! Two mappings:
//! - [`Namespace::Ranges`]: the caller's /etc/subuid and /etc/subgid
//!   ranges (mapped by the setuid `newuidmap`/`newgidmap` of the uidmap
//!   package) above 0, one after the other, so every id of an image
//!   (0-65536 with the default 65536-id range; more with more ranges) has a
//!   host id.
//! - [`Namespace::Single`]: without ranges (or without newuidmap), only the
//!   caller as 0, which a process may map for itself. Snapshots are then
//!   extracted without ownership (all 0 in the namespace) and ownership of
//!   a file a step modifies comes back from the layer below; a step that
//!   runs as another user or chowns to one fails, with the remedy.
//!
//! Where no user namespace can be made (sysctls, seccomp), hoist goes on
//! outside one: COPY-only builds work, and RUN fails at its first step
//! with the reason ([`unavailable`]).

use super::RunError;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// Which user namespace this process is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// The host's (uid_map is the identity): real root.
    Host,
    /// A namespace with more than one id mapped (subordinate ranges).
    Ranges,
    /// A namespace with one id mapped.
    Single,
}

impl Namespace {
    /// Whether overlay mounts need `userxattr` and snapshots
    /// `user.overlay.*` attributes.
    pub fn is_user_namespace(self) -> bool {
        self != Namespace::Host
    }
}

/// The namespace of this process, from /proc/self/uid_map (read once).
pub fn current() -> Namespace {
    static CURRENT: OnceLock<Namespace> = OnceLock::new();
    *CURRENT.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        namespace_of(&map)
    })
}

fn namespace_of(uid_map: &str) -> Namespace {
    let lines: Vec<Vec<u64>> = uid_map
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .filter(|f: &Vec<u64>| f.len() == 3)
        .collect();
    match lines.as_slice() {
        [] => Namespace::Host,
        [one] if one[0] == 0 && one[1] == 0 && one[2] == u64::from(u32::MAX) => Namespace::Host,
        [one] if one[2] == 1 => Namespace::Single,
        _ => Namespace::Ranges,
    }
}

/// A name for this namespace's id mapping, to keep snapshots extracted
/// under different mappings apart: `rootfs` for the host's, else
/// `rootfs-userns-<digest of the uid and gid maps>`.
pub fn snapshot_name() -> String {
    if current() == Namespace::Host {
        return "rootfs".into();
    }
    let mut text = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    text.push_str(&std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default());
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let digest = hoist_oci::digest::Digest::of(text.as_bytes());
    format!("rootfs-userns-{}", &digest.hex()[..16])
}

/// A subordinate id range: `count` host ids from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIds {
    pub start: u32,
    pub count: u32,
}

/// Every range of user `name` (or of its numeric `id`) in the text of
/// /etc/subuid or /etc/subgid (`name:start:count` lines), in file order;
/// they are mapped one after the other above 0.
pub fn sub_ids(text: &str, name: &str, id: u32) -> Vec<SubIds> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            let range = SubIds {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// newuidmap's arguments after the pid: the caller as 0, then `ranges`
/// from 1 on, one after the other.
fn map_arguments(caller: u32, ranges: &[SubIds]) -> Vec<String> {
    let mut args = vec!["0".to_string(), caller.to_string(), "1".to_string()];
    let mut next: u64 = 1;
    for range in ranges {
        args.extend([
            next.to_string(),
            range.start.to_string(),
            range.count.to_string(),
        ]);
        next += u64::from(range.count);
    }
    args
}

/// The errno of the failed attempt to make a user namespace (0: none
/// failed).
static UNAVAILABLE: AtomicI32 = AtomicI32::new(0);

/// Why RUN cannot have a user namespace, if [`reexec`] found none could
/// be made.
pub fn unavailable() -> Option<std::io::Error> {
    match UNAVAILABLE.load(Ordering::SeqCst) {
        0 => None,
        errno => Some(std::io::Error::from_raw_os_error(errno)),
    }
}

/// The remedy for a user namespace that cannot be made, by errno.
pub fn remedy(errno: Option<i32>) -> String {
    let common = "or run hoist as root (in a container or a Kubernetes pod, root of the container is enough: `runAsUser: 0`, and RUN steps then use chroot isolation; a pod with `hostUsers: false` gets a user namespace of its own)";
    match errno {
        Some(libc::ENOSPC) => format!(
            "user namespaces are limited to 0 here (user.max_user_namespaces): `sysctl -w user.max_user_namespaces=15000` as root; in a container, set it on the host; {common}"
        ),
        Some(libc::EPERM | libc::EACCES) => format!(
            "unprivileged user namespaces are forbidden: `sysctl -w kernel.unprivileged_userns_clone=1` (Debian kernels) or `kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu) as root; in a container, allow unshare/clone in its seccomp profile (e.g. docker run --security-opt seccomp=unconfined); {common}"
        ),
        Some(libc::EINVAL) => {
            format!("the kernel has no user namespaces (CONFIG_USER_NS); {common}")
        }
        _ => format!("allow unprivileged user namespaces; {common}"),
    }
}

/// The remedy when the caller has no subordinate ids.
pub fn subid_remedy() -> String {
    let user = user_name(caller_uid()).unwrap_or_else(|| "USER".into());
    format!(
        "give {user} subordinate ids, as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (and install uidmap for newuidmap/newgidmap); hoist then maps 65536 ids"
    )
}

/// The user who ran hoist: the host id mapped to 0 in a user namespace.
fn caller_uid() -> u32 {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.lines()
        .find_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            (f.len() == 3 && f[0] == 0).then_some(f[1])
        })
        // SAFETY: getuid cannot fail.
        .unwrap_or_else(|| unsafe { libc::getuid() })
}

/// The caller's login name, from the password database.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: pwd is plain data filled by getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: buffers valid for their lengths; result points into pwd.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points to a NUL-terminated string in buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn cstring(bytes: &[u8]) -> Result<CString, RunError> {
    CString::new(bytes).map_err(|_| RunError::Invalid {
        reason: format!("`{}` contains a NUL byte", String::from_utf8_lossy(bytes)),
    })
}

fn sys_error(step: &str) -> RunError {
    RunError::Sandbox {
        step: step.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// The child whose signals [`forward`] passes on.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Runs this program again, with the same arguments and environment, as
/// root of a new user namespace, and returns its exit status (128 + the
/// signal that ended it). `Ok(None)`: this process is root already, or
/// no user namespace can be made here (the reason is kept for
/// [`unavailable`]); go on in this process.
///
/// Call it before any thread is started: the child only makes system
/// calls between fork and exec, on data prepared before the fork.
pub fn reexec() -> Result<Option<i32>, RunError> {
    // SAFETY: geteuid, getuid and getgid cannot fail.
    let (euid, uid, gid) = unsafe { (libc::geteuid(), libc::getuid(), libc::getgid()) };
    if euid == 0 {
        return Ok(None);
    }
    let name = user_name(uid).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let newuidmap = find_program("newuidmap");
    let newgidmap = find_program("newgidmap");
    let (uids, gids) = (
        sub_ids(&read("/etc/subuid"), &name, uid),
        sub_ids(&read("/etc/subgid"), &name, gid),
    );
    let ranges = match (&newuidmap, &newgidmap) {
        (Some(um), Some(gm)) if !uids.is_empty() && !gids.is_empty() => {
            Some((uids, gids, um.clone(), gm.clone()))
        }
        _ => None,
    };
    let exe = cstring(b"/proc/self/exe")?;
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let uid_line = format!("0 {uid} 1\n");
    let gid_line = format!("0 {gid} 1\n");
    let single = ranges.is_none();

    let mut ready = [0; 2];
    let mut go = [0; 2];
    // SAFETY: arrays with room for two descriptors.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } != 0
        || unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0
    {
        return Err(sys_error("create a pipe"));
    }
    // SAFETY: the child only makes system calls on the data above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys_error("fork"));
    }
    if pid == 0 {
        // SAFETY (whole block): system calls on prepared data; every path
        // ends in exec or _exit.
        unsafe {
            libc::close(ready[0]);
            libc::close(go[1]);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            let fail = |errno: i32| -> ! {
                let bytes = errno.to_le_bytes();
                libc::write(ready[1], bytes.as_ptr().cast(), 4);
                libc::_exit(125)
            };
            let last = || {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO)
            };
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                fail(last());
            }
            if single {
                let write = |path: &std::ffi::CStr, data: &[u8]| -> Result<(), i32> {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(last());
                    }
                    let n = libc::write(fd, data.as_ptr().cast(), data.len());
                    let e = last();
                    libc::close(fd);
                    if n != data.len() as isize {
                        return Err(e);
                    }
                    Ok(())
                };
                for (path, data) in [
                    (c"/proc/self/setgroups", b"deny".as_slice()),
                    (c"/proc/self/uid_map", uid_line.as_bytes()),
                    (c"/proc/self/gid_map", gid_line.as_bytes()),
                ] {
                    if let Err(e) = write(path, data) {
                        fail(e);
                    }
                }
            }
            let ok = 0i32.to_le_bytes();
            libc::write(ready[1], ok.as_ptr().cast(), 4);
            let mut byte = 0u8;
            if libc::read(go[0], (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(125);
            }
            libc::execve(exe.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    // SAFETY: closing this side's copies of the child's ends.
    unsafe {
        libc::close(ready[1]);
        libc::close(go[0]);
    }
    let mut status = [0u8; 4];
    // SAFETY: status has room for 4 bytes.
    let n = unsafe { libc::read(ready[0], status.as_mut_ptr().cast(), 4) };
    // SAFETY: our own descriptor.
    unsafe { libc::close(ready[0]) };
    let errno = if n == 4 {
        i32::from_le_bytes(status)
    } else {
        libc::EIO
    };
    let finish = |kill: bool| {
        // SAFETY: our child; closing our end of its pipe.
        unsafe {
            if kill {
                libc::kill(pid, libc::SIGKILL);
            }
            libc::close(go[1]);
        }
        wait(pid)
    };
    if errno != 0 {
        finish(true);
        UNAVAILABLE.store(errno, Ordering::SeqCst);
        return Ok(None);
    }
    if let Some((u, g, um, gm)) = &ranges {
        for (program, id, ranges) in [(um, uid, u), (gm, gid, g)] {
            let out = std::process::Command::new(program)
                .arg(pid.to_string())
                .args(map_arguments(id, ranges))
                .output();
            let failed = match &out {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(message) = failed {
                finish(true);
                return Err(RunError::Invalid {
                    reason: format!(
                        "{} cannot map the subordinate ids of {name} ({message}): check /etc/subuid and /etc/subgid, and that {} is setuid root (package uidmap)",
                        Path::new(program).display(),
                        Path::new(program).display()
                    ),
                });
            }
        }
    }
    CHILD.store(pid, Ordering::SeqCst);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler only calls kill.
        unsafe { libc::signal(signal, forward as *const () as libc::sighandler_t) };
    }
    let byte = 1u8;
    // SAFETY: one byte from a valid buffer.
    unsafe { libc::write(go[1], (&byte as *const u8).cast(), 1) };
    Ok(Some(finish(false)))
}

/// Waits for `pid`; its exit code, or 128 + the signal that ended it.
fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_is_read_from_the_uid_map() {
        assert_eq!(
            namespace_of("         0          0 4294967295\n"),
            Namespace::Host
        );
        assert_eq!(namespace_of("0 1000 1\n"), Namespace::Single);
        assert_eq!(
            namespace_of("0 1000 1\n1 100000 65536\n"),
            Namespace::Ranges
        );
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_id() {
        let text = "alice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        let alice = sub_ids(text, "alice", 1000);
        assert_eq!(
            alice,
            [SubIds {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(sub_ids(text, "carol", 1001)[0].start, 200000);
        assert_eq!(sub_ids(text, "bob", 1002), [], "an empty range");
        assert_eq!(sub_ids(text, "dave", 1003), []);
        let two = sub_ids("alice:100000:65536\nalice:300000:1000\n", "alice", 1000);
        assert_eq!(
            map_arguments(1000, &two),
            [
                "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "1000"
            ]
        );
    }

    #[test]
    fn remedies_name_the_setting() {
        assert!(remedy(Some(libc::ENOSPC)).contains("user.max_user_namespaces"));
        assert!(remedy(Some(libc::EPERM)).contains("kernel.unprivileged_userns_clone"));
    }
}
