//! Which files of a copied root a step opened for writing, for the walk
//! diff ([`super::copy`]).
//!
//! overlayfs copies a lower file up when it is opened for writing, even if
//! nothing is written: `useradd` opening /etc/.pwd.lock to lock it, dpkg
//! and apt their lock files. The file then belongs to the layer, as
//! BuildKit's layers show. A walk sees no change in such a file (no time
//! moves), so the copy's directories are watched with inotify while the
//! step runs: `IN_CLOSE_WRITE` names every file closed after being opened
//! for writing. inotify needs no privilege; directories beyond the
//! per-user watch limit, or events beyond the queue's length, go unseen
//! (the step's layer then lacks such an unmodified file, as it would
//! without the watch).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The file [`Watch::finish`] writes beside the copy: the paths (relative
/// to the root) closed after a write-open.
pub const OPENED: &str = "copy-opened.json";

/// A watch on a root's directories, read by a thread of its own.
pub struct Watch {
    dirs: HashMap<i32, Vec<u8>>,
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<Vec<(i32, Vec<u8>)>>,
}

impl Watch {
    /// Watches `root` and each of `dirs` (relative to it). `None` where
    /// inotify cannot be used at all.
    pub fn start<'a>(root: &Path, dirs: impl Iterator<Item = &'a [u8]>) -> Option<Watch> {
        // SAFETY: plain flags.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: just opened, owned here.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut watched = HashMap::new();
        let mask = libc::IN_CLOSE_WRITE | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW;
        for rel in std::iter::once(&b""[..]).chain(dirs) {
            let path = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(std::ffi::OsStr::from_bytes(rel))
            };
            let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: a valid descriptor and C string.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
            if wd < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSPC) {
                    break;
                }
                continue;
            }
            watched.insert(wd, rel.to_vec());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (fd, stop) = (fd.clone(), stop.clone());
            std::thread::spawn(move || read_events(&fd, &stop))
        };
        Some(Watch {
            dirs: watched,
            stop,
            reader,
        })
    }

    /// Stops watching once every event queued so far is read; writes the
    /// paths closed after a write-open into `dir` ([`OPENED`]).
    pub fn finish(self, dir: &Path) -> std::io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let events = self.reader.join().unwrap_or_default();
        let mut paths: Vec<Vec<u8>> = events
            .into_iter()
            .filter_map(|(wd, name)| {
                let parent = self.dirs.get(&wd)?;
                Some(match parent.is_empty() {
                    true => name,
                    false => [parent.as_slice(), b"/", &name].concat(),
                })
            })
            .collect();
        paths.sort();
        paths.dedup();
        std::fs::write(dir.join(OPENED), serde_json::to_vec(&paths)?)
    }
}

/// The paths [`Watch::finish`] recorded in `dir` (none if it did not).
pub fn read(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::read(dir.join(OPENED))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or_default()
}

/// Reads `IN_CLOSE_WRITE` events (watch, name) until `stop` is set and
/// none is left.
fn read_events(fd: &OwnedFd, stop: &AtomicBool) -> Vec<(i32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Checked before the poll: a stop seen with nothing to read ends.
        let stopping = stop.load(Ordering::SeqCst);
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, if stopping { 0 } else { 50 }) };
        if ready <= 0 {
            if stopping {
                return out;
            }
            continue;
        }
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        let mut at = 0;
        let header = std::mem::size_of::<libc::inotify_event>();
        while at + header <= n as usize {
            // SAFETY: the kernel wrote a whole event at `at`.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name = &buf[at + header..at + header + event.len as usize];
            let name: Vec<u8> = name.iter().copied().take_while(|&b| b != 0).collect();
            if event.mask & libc::IN_CLOSE_WRITE != 0 && !name.is_empty() {
                out.push((event.wd, name));
            }
            at += header + event.len as usize;
        }
    }
}
