//! A fingerprint of the build context from file metadata alone: every path
//! the build can see (after `.dockerignore`) with its inode's identity, type,
//! mode, owner, size, link count and modification and change times.
//!
//! Writing a file, changing its mode or owner, linking, renaming or
//! replacing it all change its change time (ctime), which no user can set:
//! the same fingerprint means the context holds what it held when the
//! fingerprint was taken. A rebuild with an unchanged context answers its
//! COPY steps from the fingerprint without listing the context into an
//! index or looking up any content digest. Nothing is read but directories
//! and inodes; the top-level directories are walked on both cores.

use super::DockerIgnore;
use super::walk::visit;
use hoist_oci::digest::{Digest, Sha256};
use hoist_oci::layer::walk::Visit;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The fingerprint of the context directory `dir` as a build filtered by
/// `ignore` sees it.
pub fn fingerprint(dir: &Path, ignore: Option<&DockerIgnore>) -> io::Result<Digest> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let root = open_dir(libc::AT_FDCWD, &path, 0)?;
    let (records, subdirs) = list(&root, b"", ignore)?;
    // Each top-level directory is a job; both cores take them in turn.
    let results: Vec<Mutex<Option<io::Result<Digest>>>> =
        subdirs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(dir) = subdirs.get(i) else {
                break;
            };
            let digest = open_at(&root, &dir.name).and_then(|fd| subtree(&fd, dir, ignore));
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(digest);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 1..threads.min(subdirs.len()) {
            scope.spawn(work);
        }
        work();
    });
    let mut h = Sha256::new();
    h.update(b"hoist context fingerprint 2\0");
    h.update(&records);
    for result in results {
        let digest = result
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| Err(io::Error::other("a directory was not walked")))?;
        h.update(digest.as_bytes());
    }
    Ok(h.finish())
}

/// A directory to walk, found in its parent's listing.
struct Subdir {
    name: CString,
    /// Its path relative to the context.
    rel: Vec<u8>,
    decision: Visit,
}

/// The digest of directory `dir` (open as `fd`): its own metadata (from
/// the open descriptor, which costs no path lookup), its entries and
/// everything below them.
fn subtree(fd: &OwnedFd, dir: &Subdir, ignore: Option<&DockerIgnore>) -> io::Result<Digest> {
    let mut h = Sha256::new();
    let mut own = Vec::with_capacity(128);
    record(&mut own, &dir.rel, dir.decision, &stat_fd(fd)?);
    h.update(&own);
    let (records, subdirs) = list(fd, &dir.rel, ignore)?;
    h.update(&records);
    for child in &subdirs {
        let child_fd = open_at(fd, &child.name)?;
        h.update(subtree(&child_fd, child, ignore)?.as_bytes());
    }
    Ok(h.finish())
}

/// The records of the non-directory entries of directory `fd` (sorted by
/// name) that the build sees, and its subdirectories to walk. The entry
/// type comes from the listing, so an ignored path costs no stat.
fn list(
    fd: &OwnedFd,
    rel: &[u8],
    ignore: Option<&DockerIgnore>,
) -> io::Result<(Vec<u8>, Vec<Subdir>)> {
    let mut names = read_names(fd)?;
    names.sort_unstable();
    let mut records = Vec::with_capacity(names.len() * 128);
    let mut subdirs = Vec::new();
    let mut path = rel.to_vec();
    for (name, d_type) in names {
        path.truncate(rel.len());
        if !rel.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        let mut st = None;
        let is_dir = match d_type {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => {
                let s = stat_at(fd, &name)?;
                let dir = s.st_mode & libc::S_IFMT == libc::S_IFDIR;
                st = Some(s);
                dir
            }
            _ => false,
        };
        let decision = match ignore {
            Some(ignore) => visit(ignore, &String::from_utf8_lossy(&path), is_dir),
            None => Visit::Keep,
        };
        if decision == Visit::Prune {
            continue;
        }
        if is_dir {
            subdirs.push(Subdir {
                name,
                rel: path.clone(),
                decision,
            });
            continue;
        }
        let st = match st {
            Some(st) => st,
            None => stat_at(fd, &name)?,
        };
        // A directory put in place since the listing: the walk sees it
        // as what it is now.
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(io::Error::other("the context changed during the walk"));
        }
        record(&mut records, &path, decision, &st);
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            let target = read_link_at(fd, &name)?;
            records.extend_from_slice(&(target.len() as u64).to_le_bytes());
            records.extend_from_slice(&target);
        }
    }
    Ok((records, subdirs))
}

/// Appends the record of one path: where it is, whether the walk keeps it
/// or only looks inside, and what its inode says.
fn record(out: &mut Vec<u8>, path: &[u8], decision: Visit, st: &libc::stat64) {
    out.extend_from_slice(&(path.len() as u64).to_le_bytes());
    out.extend_from_slice(path);
    out.push(decision as u8);
    for n in [
        st.st_dev,
        st.st_ino,
        u64::from(st.st_mode),
        u64::from(st.st_uid),
        u64::from(st.st_gid),
        st.st_nlink,
        st.st_rdev,
        st.st_size as u64,
        st.st_mtime as u64,
        st.st_mtime_nsec as u64,
        st.st_ctime as u64,
        st.st_ctime_nsec as u64,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Opens directory `path` relative to `dirfd`; `O_NOFOLLOW` in `flags`
/// refuses a symlink that replaced it.
fn open_dir(dirfd: libc::c_int, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid C string; the descriptor returned is owned here.
    let fd = unsafe {
        libc::openat(
            dirfd,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a subdirectory without following a symlink that replaced it.
fn open_at(dir: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_dir(dir.as_raw_fd(), name, libc::O_NOFOLLOW)
}

/// Where the name starts in a `struct linux_dirent64`: after d_ino (8),
/// d_off (8), d_reclen (2) and d_type (1, at 18).
const DIRENT_NAME: usize = 19;

/// The names in directory `fd`, without `.` and `..`, read with
/// getdents64 straight from the descriptor (a `DIR` stream would cost a
/// duplicate descriptor, an fstat and fcntls per directory) into a buffer
/// each thread keeps.
fn read_names(fd: &OwnedFd) -> io::Result<Vec<(CString, u8)>> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 32 * 1024]);
    }
    BUF.with_borrow_mut(|buf| read_names_into(fd, buf))
}

fn read_names_into(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Vec<(CString, u8)>> {
    let mut names = Vec::new();
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(names);
        }
        let mut records = &buf[..n as usize];
        while records.len() > DIRENT_NAME {
            let reclen = usize::from(u16::from_ne_bytes([records[16], records[17]]));
            if reclen <= DIRENT_NAME || reclen > records.len() {
                return Err(io::Error::other("getdents64 returned a malformed record"));
            }
            let name = CStr::from_bytes_until_nul(&records[DIRENT_NAME..reclen])
                .map_err(|_| io::Error::other("getdents64 returned a name without a NUL"))?;
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                names.push((name.to_owned(), records[18]));
            }
            records = &records[reclen..];
        }
    }
}

fn stat_fd(fd: &OwnedFd) -> io::Result<libc::stat64> {
    let mut st = std::mem::MaybeUninit::<libc::stat64>::uninit();
    // SAFETY: `st` is written by fstat64 when it returns 0.
    if unsafe { libc::fstat64(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat64 succeeded.
    Ok(unsafe { st.assume_init() })
}

fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat64> {
    let mut st = std::mem::MaybeUninit::<libc::stat64>::uninit();
    // SAFETY: `st` is written by fstatat64 when it returns 0.
    let rc = unsafe {
        libc::fstatat64(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat64 succeeded.
    Ok(unsafe { st.assume_init() })
}

fn read_link_at(dir: &OwnedFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` has room for `buf.len()` bytes.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a.txt",
            "src/main.rs",
            "src/lib/mod.rs",
            "node_modules/m/i.js",
            "docs/x.md",
        ] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).unwrap();
        dir
    }

    #[test]
    fn every_change_a_build_could_see_changes_the_fingerprint() {
        let dir = context();
        let root = dir.path();
        let print = || fingerprint(root, None).unwrap();
        let first = print();
        assert_eq!(print(), first, "stable while nothing changes");
        let mut seen = vec![first];
        let mut changed = |what: &str, change: &dyn Fn()| {
            change();
            let now = print();
            assert!(
                !seen.contains(&now),
                "{what} left the fingerprint as it was"
            );
            seen.push(now);
        };
        changed("a content change", &|| {
            std::fs::write(root.join("src/lib/mod.rs"), "other").unwrap()
        });
        changed("a mode change", &|| {
            std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o600))
                .unwrap()
        });
        changed("a new file", &|| {
            std::fs::write(root.join("src/new.rs"), "").unwrap()
        });
        changed("a removal", &|| {
            std::fs::remove_file(root.join("docs/x.md")).unwrap()
        });
        changed("a symlink target", &|| {
            std::fs::remove_file(root.join("link")).unwrap();
            std::os::unix::fs::symlink("src", root.join("link")).unwrap();
        });
        changed("a hardlink", &|| {
            std::fs::hard_link(root.join("a.txt"), root.join("b.txt")).unwrap()
        });
        changed("a rename", &|| {
            std::fs::rename(root.join("b.txt"), root.join("c.txt")).unwrap()
        });
        changed("an empty directory", &|| {
            std::fs::create_dir(root.join("empty")).unwrap()
        });
        // Same size, same mtime: the change time still tells.
        changed("a rewrite keeping size and mtime", &|| {
            let path = root.join("src/main.rs");
            let mtime =
                filetime::FileTime::from_last_modification_time(&std::fs::metadata(&path).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(&path, "src/main.XX").unwrap();
            filetime::set_file_mtime(&path, mtime).unwrap();
        });
    }

    #[test]
    fn a_directory_longer_than_one_read_is_listed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // About 100 KiB of directory records: several getdents64 calls.
        let names: Vec<String> = (0..1500)
            .map(|i| format!("{i:04}-{}", "n".repeat(40)))
            .collect();
        for name in &names {
            std::fs::write(root.join(name), "x").unwrap();
        }
        let mut last = fingerprint(root, None).unwrap();
        for name in names.iter().step_by(75) {
            std::fs::write(root.join(name), "changed").unwrap();
            let now = fingerprint(root, None).unwrap();
            assert_ne!(now, last, "a change to {name} went unseen");
            last = now;
        }
    }

    #[test]
    fn ignored_paths_do_not_count() {
        let dir = context();
        let root = dir.path();
        let ignore = DockerIgnore::parse("node_modules\ndocs\n!docs/keep.md\n").unwrap();
        let first = fingerprint(root, Some(&ignore)).unwrap();
        std::fs::write(root.join("node_modules/m/i.js"), "changed").unwrap();
        std::fs::write(root.join("docs/x.md"), "changed").unwrap();
        std::fs::write(root.join("node_modules/new"), "").unwrap();
        assert_eq!(fingerprint(root, Some(&ignore)).unwrap(), first);
        std::fs::write(root.join("docs/keep.md"), "re-included").unwrap();
        assert_ne!(fingerprint(root, Some(&ignore)).unwrap(), first);
        assert_ne!(
            fingerprint(root, None).unwrap(),
            fingerprint(root, Some(&ignore)).unwrap()
        );
    }

    #[test]
    fn a_missing_context_is_an_error() {
        assert!(fingerprint(Path::new("/nonexistent/context"), None).is_err());
    }
}
