//! Which isolation a RUN step gets: what the user chose (`--isolation`,
//! [`ISOLATION_VARIABLE`]), what `auto` fell back to, and the report of it
//! for the progress output.

use super::RunError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// How a step is kept apart from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Mount, pid, uts and ipc namespaces (and network for
    /// `--network=none`), the root pivoted into ([`super::sandbox`]).
    Namespaces,
    /// A chroot into a copy of the layers, for a root process that cannot
    /// make namespaces ([`super::chroot`]).
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

impl std::fmt::Display for IsolationChoice {
    /// The name [`from_str`](std::str::FromStr::from_str) reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IsolationChoice::Auto => "auto",
            IsolationChoice::Only(Isolation::Namespaces) => "namespaces",
            IsolationChoice::Only(Isolation::Chroot) => "chroot",
        })
    }
}

/// The variable that chooses the isolation (`auto`, `namespaces`,
/// `chroot`) when [`set_isolation`] was not called.
pub const ISOLATION_VARIABLE: &str = "HOIST_ISOLATION";

/// [`set_isolation`]'s choice: 0 unset, 1 auto, 2 namespaces, 3 chroot.
static CHOICE: AtomicU8 = AtomicU8::new(0);
/// Set once `auto` found that namespaces cannot be made here.
pub(super) static CHROOT_FALLBACK: AtomicBool = AtomicBool::new(false);
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
pub(super) fn isolation() -> Result<Isolation, RunError> {
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

pub(super) fn report(mode: Isolation, why: Option<String>) {
    if !REPORTED.swap(true, Ordering::SeqCst)
        && let Ok(mut slot) = REPORT.lock()
    {
        *slot = Some((mode, why));
    }
}

/// Whether a failed namespace-mode setup says namespaces (or the mounts
/// they exist for) cannot be made by this process, so that chroot
/// isolation is the strongest left.
pub(super) fn namespaces_unusable(error: &RunError) -> bool {
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
