//! Command-line definitions: one file per subcommand, each flag defined once
//! with its help text next to it.

pub mod build;
pub mod build_job;
pub mod cache;
pub mod check;
pub mod completions;
pub mod context_artifact;
pub mod context_source;
pub mod images;
pub mod inspect;
pub mod k8s;
pub mod login;
pub mod man;
pub mod manifest;
pub mod not_here;
pub mod parse;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod push;
pub mod registry;
pub mod resolve;
pub mod rmi;
pub mod save_load;
pub mod tag;
pub mod template;
pub mod version;

use clap::{Parser, Subcommand};

/// hoist: a daemonless, OCI-native container image builder.
#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version = version::VERSION_LINE,
    long_about = None,
    after_help = "Examples:
  hoist check Dockerfile
  hoist build -t web-app:v1 .
  hoist build -t app:v1 --output type=docker,dest=- . | docker load
  hoist images

Exit status: 0 success, 1 failure, 2 usage error, 130/143 interrupted.
Each command's --help has its flags and examples; docs/cli.md in hoist's
sources has them all."
)]
pub struct Cli {
    /// The store holding images, layers and the build cache
    /// (default: $XDG_CACHE_HOME/hoist).
    #[arg(long, global = true, env = "HOIST_STORE")]
    pub store: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Build(Box<build::BuildArgs>),
    Cache(cache::CacheArgs),
    Check(check::CheckArgs),
    Completions(completions::CompletionsArgs),
    Images(images::ImagesArgs),
    Inspect(inspect::InspectArgs),
    History(inspect::HistoryArgs),
    Login(login::LoginArgs),
    Logout(login::LogoutArgs),
    K8s(Box<k8s::K8sArgs>),
    Manifest(manifest::ManifestArgs),
    Man(man::ManArgs),
    Parse(parse::ParseArgs),
    Prune(prune::PruneArgs),
    Pull(pull::PullArgs),
    Push(push::PushArgs),
    Resolve(resolve::ResolveArgs),
    Rmi(rmi::RmiArgs),
    Save(save_load::SaveArgs),
    Load(save_load::LoadArgs),
    Tag(tag::TagArgs),
    Version(version::VersionArgs),
    /// hoist does not run containers (podman or docker do).
    #[command(hide = true)]
    Run(not_here::RunArgs),
}

/// Reads a Dockerfile from a path, or from stdin for `-`; returns the name to
/// show in messages and the text (invalid UTF-8 replaced, as it cannot be
/// part of any instruction BuildKit accepts).
pub fn read_dockerfile(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    use anyhow::Context;
    use std::io::Read;
    let mut bytes = Vec::new();
    let name = if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the Dockerfile from stdin")?;
        "<stdin>".to_string()
    } else {
        bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}: check the path given with -f or as FILE",
                path.display()
            )
        })?;
        path.display().to_string()
    };
    Ok((name, String::from_utf8_lossy(&bytes).into_owned()))
}

/// An error and its causes, outermost first, as the lines `hoist` prints
/// them in: every command's errors go through here.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect()
}

/// Writes results to stdout; a closed pipe surfaces as an error that `main`
/// treats as a clean exit (`println!` would panic instead).
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
