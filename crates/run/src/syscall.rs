//! The kernel calls the sandbox makes, behind a trait (as youki does), so
//! the order and arguments of the setup are tested without privileges.
//!
//! [`Linux`] runs in a forked child of a possibly multi-threaded process:
//! its methods make one system call each and never allocate (the child may
//! have inherited a malloc lock held by another thread). [`Recording`] is
//! for tests: it records every call as a line of text and succeeds.

use std::ffi::CStr;

/// An `errno` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

pub type SysResult = Result<(), Errno>;

fn check(rc: libc::c_int) -> SysResult {
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// The calls the sandbox's child makes while it sets up the root.
pub trait Syscall {
    fn unshare(&mut self, flags: libc::c_int) -> SysResult;
    fn mount(
        &mut self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> SysResult;
    fn umount(&mut self, target: &CStr, flags: libc::c_int) -> SysResult;
    /// The `ST_*` flags of the mount holding `path` (statvfs(3)).
    fn mount_flags(&mut self, path: &CStr) -> Result<libc::c_ulong, Errno>;
    /// `mkdir(2)`; an existing entry is not an error.
    fn mkdir(&mut self, path: &CStr, mode: u32) -> SysResult;
    /// Creates an empty file if nothing is there (a bind-mount point); an
    /// existing entry is left alone (not opened for writing, which on an
    /// overlay would copy it up into the layer).
    fn touch(&mut self, path: &CStr) -> SysResult;
    /// Creates `path` (which must not exist) holding `data`, with `mode`
    /// and owner `uid`:`gid` (a secret's file, on a tmpfs).
    fn write_file(
        &mut self,
        path: &CStr,
        data: &[u8],
        mode: u32,
        uid: libc::uid_t,
        gid: libc::gid_t,
    ) -> SysResult;
    /// `symlink(2)`; an existing entry is not an error.
    fn symlink(&mut self, target: &CStr, path: &CStr) -> SysResult;
    fn chdir(&mut self, path: &CStr) -> SysResult;
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> SysResult;
    fn chroot(&mut self, path: &CStr) -> SysResult;
    fn sethostname(&mut self, name: &CStr) -> SysResult;
    fn umask(&mut self, mask: u32);
    /// Removes a capability from the bounding set; `EINVAL` (a number the
    /// kernel does not know) is not an error.
    fn drop_bounding_cap(&mut self, cap: u32) -> SysResult;
    /// Empties the inheritable and ambient capability sets, which would
    /// otherwise carry capabilities past the bounding set into the
    /// command (runc sets both to the kept set; hoist keeps none there).
    fn clear_inherited_caps(&mut self) -> SysResult;
    fn set_groups(&mut self, groups: &[libc::gid_t]) -> SysResult;
    fn set_gid(&mut self, gid: libc::gid_t) -> SysResult;
    fn set_uid(&mut self, uid: libc::uid_t) -> SysResult;
}

/// The real calls.
pub struct Linux;

impl Syscall for Linux {
    fn unshare(&mut self, flags: libc::c_int) -> SysResult {
        // SAFETY: unshare takes flags only.
        check(unsafe { libc::unshare(flags) })
    }

    fn mount(
        &mut self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> SysResult {
        let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
        // SAFETY: NUL-terminated strings (or null data) that outlive the call.
        check(unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                data,
            )
        })
    }

    fn umount(&mut self, target: &CStr, flags: libc::c_int) -> SysResult {
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::umount2(target.as_ptr(), flags) })
    }

    fn mount_flags(&mut self, path: &CStr) -> Result<libc::c_ulong, Errno> {
        // SAFETY: statvfs is plain data filled by the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid out pointer.
        check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
        Ok(st.f_flag)
    }

    fn mkdir(&mut self, path: &CStr, mode: u32) -> SysResult {
        // SAFETY: a NUL-terminated path.
        match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
            Err(Errno(libc::EEXIST)) => Ok(()),
            other => other,
        }
    }

    fn touch(&mut self, path: &CStr) -> SysResult {
        // SAFETY: a NUL-terminated path; the descriptor is closed at once.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        match check(fd) {
            Err(Errno(libc::EEXIST)) => return Ok(()),
            other => other?,
        }
        // SAFETY: fd was opened above.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &CStr,
        data: &[u8],
        mode: u32,
        uid: libc::uid_t,
        gid: libc::gid_t,
    ) -> SysResult {
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        check(fd)?;
        let result = (|| {
            let mut rest = data;
            while !rest.is_empty() {
                // SAFETY: rest is valid for rest.len() bytes.
                let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                if n < 0 {
                    let e = Errno::last();
                    if e.0 == libc::EINTR {
                        continue;
                    }
                    return Err(e);
                }
                rest = &rest[n as usize..];
            }
            // SAFETY: fd is open; owner before mode, as chown clears setuid bits.
            check(unsafe { libc::fchown(fd, uid, gid) })?;
            check(unsafe { libc::fchmod(fd, mode) })
        })();
        // SAFETY: fd was opened above.
        unsafe { libc::close(fd) };
        result
    }

    fn symlink(&mut self, target: &CStr, path: &CStr) -> SysResult {
        // SAFETY: NUL-terminated strings.
        match check(unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) }) {
            Err(Errno(libc::EEXIST)) => Ok(()),
            other => other,
        }
    }

    fn chdir(&mut self, path: &CStr) -> SysResult {
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::chdir(path.as_ptr()) })
    }

    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> SysResult {
        // SAFETY: NUL-terminated paths; pivot_root has no libc wrapper.
        let rc =
            unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        check(rc as libc::c_int)
    }

    fn chroot(&mut self, path: &CStr) -> SysResult {
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::chroot(path.as_ptr()) })
    }

    fn sethostname(&mut self, name: &CStr) -> SysResult {
        let bytes = name.to_bytes();
        // SAFETY: the pointer and length describe `name`.
        check(unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) })
    }

    fn umask(&mut self, mask: u32) {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask) };
    }

    fn drop_bounding_cap(&mut self, cap: u32) -> SysResult {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        match check(rc) {
            Err(Errno(libc::EINVAL)) => Ok(()),
            other => other,
        }
    }

    fn clear_inherited_caps(&mut self) -> SysResult {
        /// `struct __user_cap_header_struct` (capget(2)).
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        /// `struct __user_cap_data_struct`: one per 32 capabilities.
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        // SAFETY: prctl with integer arguments.
        check(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        })?;
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: header and two data structs, as version 3 takes them.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        check(rc as libc::c_int)?;
        for d in &mut data {
            d.inheritable = 0;
        }
        // SAFETY: as above; the sets only shrink.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        check(rc as libc::c_int)
    }

    fn set_groups(&mut self, groups: &[libc::gid_t]) -> SysResult {
        // SAFETY: the pointer and length describe `groups`.
        check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })
    }

    fn set_gid(&mut self, gid: libc::gid_t) -> SysResult {
        // SAFETY: an integer argument.
        check(unsafe { libc::setgid(gid) })
    }

    fn set_uid(&mut self, uid: libc::uid_t) -> SysResult {
        // SAFETY: an integer argument.
        check(unsafe { libc::setuid(uid) })
    }
}

/// Records the calls as text, for tests; a mount whose recorded line
/// starts with a text in `refuse` fails with its errno.
#[derive(Debug, Default)]
pub struct Recording {
    pub calls: Vec<String>,
    pub refuse: Vec<(String, Errno)>,
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

impl Syscall for Recording {
    fn unshare(&mut self, flags: libc::c_int) -> SysResult {
        self.calls.push(format!("unshare {flags:#x}"));
        Ok(())
    }
    fn mount(
        &mut self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> SysResult {
        let call = format!(
            "mount {} {} {} {flags:#x} {}",
            s(source),
            s(target),
            s(fstype),
            data.map(s).unwrap_or_default()
        );
        let refused = self
            .refuse
            .iter()
            .find(|(prefix, _)| call.starts_with(prefix));
        self.calls.push(call);
        match refused {
            Some((_, errno)) => Err(*errno),
            None => Ok(()),
        }
    }
    fn umount(&mut self, target: &CStr, flags: libc::c_int) -> SysResult {
        self.calls.push(format!("umount {} {flags:#x}", s(target)));
        Ok(())
    }
    fn mount_flags(&mut self, _path: &CStr) -> Result<libc::c_ulong, Errno> {
        Ok(0)
    }
    fn mkdir(&mut self, path: &CStr, mode: u32) -> SysResult {
        self.calls.push(format!("mkdir {} {mode:o}", s(path)));
        Ok(())
    }
    fn touch(&mut self, path: &CStr) -> SysResult {
        self.calls.push(format!("touch {}", s(path)));
        Ok(())
    }
    fn write_file(
        &mut self,
        path: &CStr,
        data: &[u8],
        mode: u32,
        uid: libc::uid_t,
        gid: libc::gid_t,
    ) -> SysResult {
        // The length only: a secret's content is never recorded.
        self.calls.push(format!(
            "write {} ({} bytes) {mode:o} {uid}:{gid}",
            s(path),
            data.len()
        ));
        Ok(())
    }
    fn symlink(&mut self, target: &CStr, path: &CStr) -> SysResult {
        self.calls
            .push(format!("symlink {} {}", s(target), s(path)));
        Ok(())
    }
    fn chdir(&mut self, path: &CStr) -> SysResult {
        self.calls.push(format!("chdir {}", s(path)));
        Ok(())
    }
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> SysResult {
        self.calls
            .push(format!("pivot_root {} {}", s(new_root), s(put_old)));
        Ok(())
    }
    fn chroot(&mut self, path: &CStr) -> SysResult {
        self.calls.push(format!("chroot {}", s(path)));
        Ok(())
    }
    fn sethostname(&mut self, name: &CStr) -> SysResult {
        self.calls.push(format!("sethostname {}", s(name)));
        Ok(())
    }
    fn umask(&mut self, mask: u32) {
        self.calls.push(format!("umask {mask:o}"));
    }
    fn drop_bounding_cap(&mut self, cap: u32) -> SysResult {
        self.calls.push(format!("drop cap {cap}"));
        Ok(())
    }
    fn clear_inherited_caps(&mut self) -> SysResult {
        self.calls.push("clear inheritable and ambient caps".into());
        Ok(())
    }
    fn set_groups(&mut self, groups: &[libc::gid_t]) -> SysResult {
        self.calls.push(format!("setgroups {groups:?}"));
        Ok(())
    }
    fn set_gid(&mut self, gid: libc::gid_t) -> SysResult {
        self.calls.push(format!("setgid {gid}"));
        Ok(())
    }
    fn set_uid(&mut self, uid: libc::uid_t) -> SysResult {
        self.calls.push(format!("setuid {uid}"));
        Ok(())
    }
}
