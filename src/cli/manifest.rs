//! `hoist manifest`: indexes assembled from images already in a registry,
//! and a look at what a registry holds under a name.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hoist_registry::Reference;
use hoist_registry::assemble::{create_index, fetch_document};

/// Assemble and inspect image indexes in registries (docs/platforms.md).
///
/// Examples:
///   hoist manifest create -t registry.example/app:1 \
///       registry.example/app@sha256:AMD64... registry.example/app@sha256:ARM64...
///   hoist manifest inspect registry.example/app:1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    Create(CreateArgs),
    Inspect(InspectArgs),
}

/// Put an index of images already in a registry under a tag, without
/// pulling their layers, as `docker buildx imagetools create` does.
///
/// Each SOURCE is an image (its config gives its platform) or an index
/// (its platform entries are taken). Sources in another repository of the
/// same registry are mounted into the target's; another registry is
/// refused. Two sources for one platform are refused. The index digest is
/// printed on stdout.
///
/// Example:
///   hoist build --platform linux/arm64 --push-by-digest -t reg/app .   # on each machine
///   hoist manifest create -t reg/app:1 reg/app@sha256:... reg/app@sha256:...
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CreateArgs {
    /// The name to put the index under (`REGISTRY/REPO:TAG`).
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tag: String,
    /// The images (or indexes) to list, in order.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

/// Print the manifest or index a registry holds under a name, as JSON.
///
/// Example:
///   hoist manifest inspect 127.0.0.1:5000/app:1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// `REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:...`.
    pub reference: String,
    /// Print the bytes as the registry holds them instead of indented.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

pub fn run(args: &ManifestArgs) -> anyhow::Result<i32> {
    match &args.command {
        ManifestCommand::Create(args) => create(args),
        ManifestCommand::Inspect(args) => inspect(args),
    }
}

fn create(args: &CreateArgs) -> anyhow::Result<i32> {
    let target = Reference::parse(&args.tag).with_context(|| format!("-t {}", args.tag))?;
    if target.digest.is_some() {
        bail!(
            "-t {}: an index is put under a tag; its digest is the registry's answer",
            args.tag
        );
    }
    let sources: Vec<Reference> = args
        .sources
        .iter()
        .map(|s| Reference::parse(s).with_context(|| format!("source {s}")))
        .collect::<anyhow::Result<_>>()?;
    let options = args.registry.client_options()?;
    let assembled = create_index(&options, &target, &sources)
        .with_context(|| format!("cannot create the index {target}"))?;
    for entry in &assembled.index.manifests {
        let platform = entry
            .platform
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        eprintln!("{platform}: {}", entry.digest);
    }
    eprintln!(
        "{} -> {}@{}",
        assembled.reference,
        assembled.reference.repository(),
        assembled.digest
    );
    super::emit(&format!("{}\n", assembled.digest))?;
    Ok(0)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<i32> {
    let reference = Reference::parse(&args.reference).with_context(|| args.reference.clone())?;
    let options = args.registry.client_options()?;
    let (bytes, _) = fetch_document(&options, &reference)
        .with_context(|| format!("cannot fetch {reference}"))?;
    if args.raw {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
        return Ok(0);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).context("the registry sent a document that is not JSON")?;
    super::emit(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    Ok(0)
}
