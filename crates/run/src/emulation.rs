//! RUN for a platform the machine cannot run natively, through QEMU user
//! mode: the kernel starts a foreign binary with the interpreter that
//! binfmt_misc has registered for its architecture. Only a handler
//! registered with the `F` (fix binary) flag works for RUN: the kernel
//! opens its interpreter when it is registered, so the interpreter need
//! not exist inside the step's root, where the kernel would otherwise look
//! for it. Debian's `qemu-user-static` registers its handlers so.

use std::path::Path;

/// Where binfmt_misc is mounted.
const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// How RUN steps of a platform run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The machine runs the platform's binaries itself.
    Native,
    /// Through this binfmt_misc handler (`qemu-aarch64`).
    Qemu(String),
}

/// Why RUN steps of a platform cannot run here: the message and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub message: String,
    pub hint: String,
}

/// How RUN steps for `os/architecture` run on this machine.
pub fn for_platform(os: &str, architecture: &str) -> Result<Emulation, Unsupported> {
    let platform = format!("{os}/{architecture}");
    if os != "linux" {
        return Err(Unsupported {
            message: format!("RUN cannot run commands of a {platform} image on Linux"),
            hint: "only COPY, ADD and metadata steps build for another operating system; \
                   build the image on that system"
                .to_owned(),
        });
    }
    if runs_natively(architecture) {
        return Ok(Emulation::Native);
    }
    let Some(handler) = qemu_handler(architecture) else {
        return Err(Unsupported {
            message: format!(
                "RUN cannot run {platform} commands here: QEMU has no emulator for it"
            ),
            hint: cross_compile_hint(),
        });
    };
    check_handler(Path::new(BINFMT_MISC), handler, &platform)?;
    Ok(Emulation::Qemu(handler.to_owned()))
}

fn cross_compile_hint() -> String {
    "or build with `FROM --platform=$BUILDPLATFORM` and cross-compile for $TARGETARCH, so no \
     step runs emulated (docs/platforms.md)"
        .to_owned()
}

/// Whether this machine runs `architecture`'s binaries without emulation.
fn runs_natively(architecture: &str) -> bool {
    let host = hoist_oci::Platform::host().architecture;
    architecture == host
        || matches!(
            (host.as_str(), architecture),
            ("amd64", "386") | ("arm64", "arm")
        )
}

/// The name Debian's qemu-user-static registers the handler of an
/// architecture (as OCI names it) under.
fn qemu_handler(architecture: &str) -> Option<&'static str> {
    Some(match architecture {
        "amd64" => "qemu-x86_64",
        "386" => "qemu-i386",
        "arm64" => "qemu-aarch64",
        "arm" => "qemu-arm",
        "riscv64" => "qemu-riscv64",
        "ppc64le" => "qemu-ppc64le",
        "ppc64" => "qemu-ppc64",
        "s390x" => "qemu-s390x",
        "mips" => "qemu-mips",
        "mipsle" => "qemu-mipsel",
        "mips64" => "qemu-mips64",
        "mips64le" => "qemu-mips64el",
        "loong64" => "qemu-loongarch64",
        _ => return None,
    })
}

/// Checks that binfmt_misc at `root` has `handler` enabled, with the `F`
/// flag.
fn check_handler(root: &Path, handler: &str, platform: &str) -> Result<(), Unsupported> {
    let install = format!(
        "install Debian's qemu-user-static (apt-get install qemu-user-static); where no systemd \
         registers its handlers (a container), register it: cat \
         /usr/lib/binfmt.d/{handler}.conf > {}/register; {}",
        root.display(),
        cross_compile_hint()
    );
    if !root.join("status").exists() {
        return Err(Unsupported {
            message: format!(
                "RUN cannot run {platform} commands here: binfmt_misc is not mounted at {}",
                root.display()
            ),
            hint: format!(
                "mount it (mount -t binfmt_misc binfmt_misc {}) and {install}",
                root.display()
            ),
        });
    }
    let text = match std::fs::read_to_string(root.join(handler)) {
        Ok(text) => text,
        Err(_) => {
            return Err(Unsupported {
                message: format!(
                    "RUN cannot run {platform} commands here: no binfmt_misc handler {handler} is \
                     registered"
                ),
                hint: install,
            });
        }
    };
    if text.lines().next() != Some("enabled") {
        return Err(Unsupported {
            message: format!(
                "RUN cannot run {platform} commands here: the binfmt_misc handler {handler} is \
                 disabled"
            ),
            hint: format!("enable it: echo 1 > {}", root.join(handler).display()),
        });
    }
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or_default();
    if !flags.contains('F') {
        return Err(Unsupported {
            message: format!(
                "RUN cannot run {platform} commands here: the binfmt_misc handler {handler} lacks \
                 the F (fix binary) flag, so its interpreter would be looked up inside the step's \
                 root"
            ),
            hint: format!(
                "register it again with the F flag, as Debian's qemu-user-static does: echo -1 > \
                 {}, then cat /usr/lib/binfmt.d/{handler}.conf > {}/register; {}",
                root.join(handler).display(),
                root.display(),
                cross_compile_hint()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(handler: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        if let Some(text) = handler {
            std::fs::write(dir.path().join("qemu-aarch64"), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_host_architecture_runs_natively() {
        let host = hoist_oci::Platform::host().architecture;
        assert_eq!(for_platform("linux", &host), Ok(Emulation::Native));
    }

    #[test]
    fn windows_and_unknown_architectures_are_refused() {
        let err = for_platform("windows", "amd64").unwrap_err();
        assert!(err.message.contains("windows/amd64"), "{err:?}");
        assert!(for_platform("linux", "wasm").is_err());
    }

    #[test]
    fn a_handler_must_be_registered_enabled_and_fixed() {
        let check = |dir: &tempfile::TempDir| {
            check_handler(dir.path(), "qemu-aarch64", "linux/arm64").map_err(|e| e.message)
        };
        let missing = check(&root_with(None)).unwrap_err();
        assert!(
            missing.contains("no binfmt_misc handler qemu-aarch64"),
            "{missing}"
        );
        let fixed = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n";
        assert_eq!(check(&root_with(Some(fixed))), Ok(()));
        let unfixed = check(&root_with(Some("enabled\nflags: P\n"))).unwrap_err();
        assert!(unfixed.contains("F (fix binary)"), "{unfixed}");
        let disabled = check(&root_with(Some("disabled\nflags: F\n"))).unwrap_err();
        assert!(disabled.contains("disabled"), "{disabled}");
        let unmounted = tempfile::tempdir().unwrap();
        assert!(check(&unmounted).unwrap_err().contains("not mounted"));
    }
}
