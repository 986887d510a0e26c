//! Starting and stopping the servers the tests use, without leaking them.
//!
//! Shared servers live in `static`s, which are never dropped, so they cannot be
//! stopped by `Drop`. Instead every server is spawned by one keeper thread that
//! lives as long as the test process, with `PR_SET_PDEATHSIG`: the kernel sends
//! SIGTERM to the server when the thread that forked it dies, which for the keeper
//! means when the test process exits. (Spawning from a test's own thread would be
//! wrong: the harness ends that thread when the test ends.) Their directories go
//! under `/tmp/hoist-it/<pid>/` and the next run deletes those of dead processes.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Request = (Command, Sender<io::Result<Child>>);

fn keeper() -> &'static Mutex<Sender<Request>> {
    static KEEPER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::Builder::new()
            .name("process-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static: never reached, the thread (and
                // with it the parent of every server) lasts until the process exits.
            })
            .expect("spawn the process keeper thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` with stdout and stderr appended to `log`, to be killed (SIGTERM)
/// when the test process exits if nothing stopped it before.
pub fn spawn_tied(mut cmd: Command, log: &Path) -> Child {
    let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out.try_clone().expect("clone log handle");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = format!("{cmd:?}");
    let (tx, rx) = channel();
    keeper()
        .lock()
        .expect("keeper lock")
        .send((cmd, tx))
        .expect("keeper thread is alive");
    rx.recv()
        .expect("keeper thread replies")
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

/// SIGTERM, then SIGKILL after `grace`; always reaps the child.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A server's working directory: a temp dir deleted on drop, or for shared
/// servers `/tmp/hoist-it/<pid>/<name>`, deleted by a later run.
pub enum ProcessDir {
    Owned(tempfile::TempDir),
    Shared(PathBuf),
}

impl ProcessDir {
    pub fn owned(name: &str) -> ProcessDir {
        // Short and in /tmp: dockerd's socket path must fit in sun_path (108 bytes).
        let dir = tempfile::Builder::new()
            .prefix(&format!("hoist-{name}-"))
            .tempdir_in("/tmp")
            .expect("create a temp dir in /tmp");
        ProcessDir::Owned(dir)
    }

    pub fn shared(name: &str) -> ProcessDir {
        let base = Path::new("/tmp/hoist-it");
        remove_stale(base);
        let dir = base.join(std::process::id().to_string()).join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ProcessDir::Shared(dir)
    }

    pub fn path(&self) -> &Path {
        match self {
            ProcessDir::Owned(t) => t.path(),
            ProcessDir::Shared(p) => p,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, ProcessDir::Shared(_))
    }
}

/// Deletes the shared directories of test processes that are gone.
fn remove_stale(base: &Path) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}
