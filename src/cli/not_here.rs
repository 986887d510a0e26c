//! Docker commands hoist does not have, answered with what to use instead
//! rather than clap's nearest-name guess.

use clap::Args;

/// hoist builds images; it does not run containers.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

pub fn run(_: &RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!(
        "hoist builds images and does not run containers: run the image with podman run IMAGE \
         (podman reads hoist's --output type=oci-archive or a registry), or with docker run IMAGE \
         once loaded (hoist build -o type=docker,dest=- . | docker load)"
    )
}

/// `docker build` flags hoist does not have, and what to do instead.
const DOCKER_BUILD_FLAGS: &[(&str, &str)] = &[
    (
        "--add-host",
        "RUN steps see the host's /etc/hosts; add entries in a RUN step that needs them",
    ),
    (
        "--network",
        "RUN steps share the host's network; `RUN --network=none` cuts one step off, as BuildKit's syntax says",
    ),
    ("--shm-size", "RUN steps get the sandbox's own /dev/shm"),
    (
        "--ulimit",
        "RUN steps inherit hoist's limits: set them on hoist (ulimit, a pod's resources)",
    ),
    (
        "--memory",
        "hoist sets no cgroup limits on RUN steps: run hoist itself inside limits (systemd-run, a pod's resources)",
    ),
    (
        "--cpu-shares",
        "hoist sets no cgroup limits on RUN steps: run hoist itself inside limits",
    ),
    (
        "--cpuset-cpus",
        "hoist sets no cgroup limits on RUN steps: run hoist itself inside limits",
    ),
    (
        "--cgroup-parent",
        "hoist sets no cgroup limits on RUN steps: run hoist itself inside limits",
    ),
    (
        "--security-opt",
        "RUN's sandbox is fixed (docs/run.md); RUN --security=insecure is refused",
    ),
    (
        "--allow",
        "RUN --security=insecure is refused, so there is nothing to allow",
    ),
    (
        "--annotation",
        "not supported yet: labels (--label) reach the image config",
    ),
    (
        "--attest",
        "not supported yet: SBOM and provenance attestations are planned",
    ),
    ("--sbom", "not supported yet: SBOM attestations are planned"),
    (
        "--provenance",
        "not supported yet: provenance attestations are planned",
    ),
    (
        "--build-context",
        "not supported yet: COPY --from=IMAGE names an image directly; other directories must be copied into the context",
    ),
    (
        "--no-cache-filter",
        "not supported yet: --no-cache rebuilds every step",
    ),
    ("--squash", "layers are kept as the Dockerfile makes them"),
    (
        "--compress",
        "not needed: hoist reads the context in place, with no daemon to send it to",
    ),
    (
        "--rm",
        "not needed: hoist leaves no intermediate containers",
    ),
    (
        "--force-rm",
        "not needed: hoist leaves no intermediate containers",
    ),
    (
        "--builder",
        "hoist needs no builder instance: it builds in its own process",
    ),
    (
        "--disable-content-trust",
        "hoist does not verify image signatures",
    ),
];

/// A command line clap refused. For `hoist build`, an unknown flag gets
/// hoist's own message: `docker build` flags hoist lacks say so and what
/// to do instead, and no tip about `--` (which starts `hoist k8s` flags
/// there). Anything else is clap's message. Exits.
pub fn usage_error(err: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument || subcommand().as_deref() != Some("build") {
        err.exit();
    }
    let Some(ContextValue::String(flag)) = err.get(ContextKind::InvalidArg) else {
        err.exit();
    };
    let name = flag.split('=').next().unwrap_or(flag);
    match DOCKER_BUILD_FLAGS.iter().find(|(f, _)| *f == name) {
        Some((_, instead)) => {
            eprintln!("error: `docker build {name}` is not supported by hoist build: {instead}")
        }
        None => eprintln!(
            "error: hoist build has no flag `{name}`: `hoist build --help` lists its flags (docs/cli.md compares them with docker build's)"
        ),
    }
    std::process::exit(2);
}

/// The subcommand of this command line: its first word after the global
/// `--store DIR`.
fn subcommand() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--store" {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}
