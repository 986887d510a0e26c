//! ssh agents for `RUN --mount=type=ssh`.
//!
//! A step never gets the host's agent socket itself: hoist listens on a
//! socket of its own in the build's scratch directory, with the mode and
//! owner the mount asks for (BuildKit's default: 0600, root), binds that
//! socket into the sandbox and relays each connection to the agent. Key
//! files (`--ssh ID=KEYFILE`) are served by an `ssh-agent` started for the
//! build, which holds them in its memory only.

use super::RunError;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A relay from a socket at `path` to an agent's socket, alive until
/// dropped.
pub struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens at `path` (mode `mode`, owner `uid`:`gid`) and relays every
    /// connection to `agent`.
    pub fn start(
        path: &Path,
        agent: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<AgentProxy, RunError> {
        use std::os::unix::fs::PermissionsExt;
        // Fail here, not in the step, when the agent is not there.
        UnixStream::connect(agent).map_err(|source| RunError::Sandbox {
            step: format!("connect to the ssh agent at {}", agent.display()),
            source,
        })?;
        let listener = UnixListener::bind(path).map_err(io(path))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_path_buf();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let Ok(upstream) = UnixStream::connect(&agent) else {
                    continue;
                };
                relay(conn, upstream);
            }
        });
        Ok(AgentProxy {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

/// Copies both ways between two streams, each direction on its own
/// thread, closing the other side's writing half at end of input.
fn relay(a: UnixStream, b: UnixStream) {
    let pair = |from: &UnixStream, to: &UnixStream| -> Option<(UnixStream, UnixStream)> {
        Some((from.try_clone().ok()?, to.try_clone().ok()?))
    };
    let Some((a2, b2)) = pair(&a, &b) else { return };
    for (mut from, mut to) in [(a, b), (b2, a2)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An `ssh-agent` holding key files, alive until dropped.
pub struct KeyAgent {
    child: Child,
    socket: PathBuf,
}

impl KeyAgent {
    /// Starts `ssh-agent` on `socket` and adds `keys` to it.
    pub fn start(socket: &Path, keys: &[PathBuf]) -> Result<KeyAgent, RunError> {
        let exec = |program: &str| {
            let program = program.to_string();
            move |source| RunError::Exec { program, source }
        };
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(exec("ssh-agent (install openssh-client)"))?;
        let agent = KeyAgent {
            child,
            socket: socket.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(socket).is_err() {
            if Instant::now() > deadline {
                return Err(RunError::Sandbox {
                    step: "start ssh-agent".into(),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = Command::new("ssh-add")
            .args(keys)
            .env("SSH_AUTH_SOCK", socket)
            .stdin(Stdio::null())
            .output()
            .map_err(exec("ssh-add"))?;
        if !out.status.success() {
            let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
            return Err(RunError::Invalid {
                reason: format!(
                    "ssh-add cannot load {}: {}",
                    names.join(", "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(agent)
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
