//! Running hoist as an unprivileged user: the test binary runs as root,
//! creates (once, idempotently) two local users and runs hoist as one of
//! them through `setpriv`, with directories that user owns.
//!
//! - `hoist-rootless`: a regular user with /etc/subuid and /etc/subgid
//!   ranges (uidmap's newuidmap/newgidmap map them): rootless RUN.
//! - `hoist-single`: a system user without ranges: a single-id user
//!   namespace.

use super::{require, run_ok};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// Who runs hoist in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Root,
    /// `hoist-rootless`, with subordinate id ranges.
    Rootless,
    /// `hoist-single`, without them.
    SingleId,
}

/// A local user made for the tests.
#[derive(Debug)]
pub struct TestUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

/// Ranges for `hoist-rootless` when useradd gave it none.
const RANGE: &str = "600000-665535";

fn has_range(file: &str, name: &str) -> bool {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")))
}

/// The subordinate ids `podman run --userns=auto` takes its ranges from
/// (the `containers` entries of /etc/subuid and /etc/subgid), added
/// unless there: a million ids from 1000000, clear of the test users'.
pub fn ensure_podman_auto_ranges() {
    let lock = std::fs::File::create("/tmp/hoist-test-users.lock").unwrap();
    // SAFETY: a valid descriptor; released when the file closes.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    for file in ["/etc/subuid", "/etc/subgid"] {
        if !has_range(file, "containers") {
            let mut text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("containers:1000000:1000000\n");
            std::fs::write(file, text).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
        }
    }
}

/// Creates `name` unless it exists; returns its ids. Holds a lock file
/// so that concurrent test processes do not race in useradd.
fn ensure_user(name: &'static str, system: bool) -> TestUser {
    let lock = std::fs::File::create("/tmp/hoist-test-users.lock").unwrap();
    // SAFETY: a valid descriptor; released when the file closes.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let exists = Command::new("id").arg("-u").arg(name).output().unwrap();
    if !exists.status.success() {
        let mut cmd = Command::new(require("useradd", "passwd"));
        cmd.args(["-M", "-U", "-s", "/usr/sbin/nologin"]);
        if system {
            cmd.arg("--system");
        }
        run_ok(cmd.arg(name));
    }
    let ranged = has_range("/etc/subuid", name) && has_range("/etc/subgid", name);
    if !system && !ranged {
        run_ok(
            Command::new(require("usermod", "passwd"))
                .args(["--add-subuids", RANGE, "--add-subgids", RANGE])
                .arg(name),
        );
    }
    if system {
        assert!(
            !has_range("/etc/subuid", name) && !has_range("/etc/subgid", name),
            "{name} must have no subordinate ids for the single-id tests"
        );
    }
    let id = |flag: &str| -> u32 {
        run_ok(Command::new("id").arg(flag).arg(name))
            .trim()
            .parse()
            .unwrap()
    };
    TestUser {
        name,
        uid: id("-u"),
        gid: id("-g"),
    }
}

impl Who {
    /// The user, `None` for root.
    pub fn user(self) -> Option<&'static TestUser> {
        static ROOTLESS: OnceLock<TestUser> = OnceLock::new();
        static SINGLE: OnceLock<TestUser> = OnceLock::new();
        match self {
            Who::Root => None,
            Who::Rootless => {
                require("newuidmap", "uidmap");
                Some(ROOTLESS.get_or_init(|| ensure_user("hoist-rootless", false)))
            }
            Who::SingleId => Some(SINGLE.get_or_init(|| ensure_user("hoist-single", true))),
        }
    }

    /// A temporary directory this user owns.
    pub fn tempdir(self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.own(dir.path());
        dir
    }

    /// Gives `path` (recursively) to this user.
    pub fn own(self, path: &Path) {
        if let Some(user) = self.user() {
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{}:{}", user.uid, user.gid))
                    .arg(path),
            );
        }
    }

    /// `hoist` run as this user (HOME is `home`, which it should own).
    pub fn hoist(self, home: &Path) -> Command {
        let mut cmd = self.command(&assert_cmd::cargo::cargo_bin("hoist"));
        if self != Who::Root {
            cmd.env("HOME", home).env_remove("XDG_CACHE_HOME");
        }
        cmd
    }

    /// `program` run as this user.
    pub fn command(self, program: &Path) -> Command {
        match self.user() {
            None => Command::new(program),
            Some(user) => {
                let mut cmd = Command::new(require("/usr/bin/setpriv", "util-linux"));
                cmd.arg(format!("--reuid={}", user.uid))
                    .arg(format!("--regid={}", user.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
        }
    }
}

/// Each named test function `fn NAME(who: Who)` of the calling module, as
/// root (`as_root::NAME`) and as an unprivileged user with subordinate id
/// ranges (`rootless::NAME`). The module must have `Who` in scope.
#[macro_export]
macro_rules! as_root_and_rootless {
    ($($name:ident),* $(,)?) => {
        mod as_root {
            $(#[test] fn $name() { super::$name(super::Who::Root) })*
        }
        mod rootless {
            $(#[test] fn $name() { super::$name(super::Who::Rootless) })*
        }
    };
}
