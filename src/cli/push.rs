//! `hoist push`: send an image from the store to a registry.

use anyhow::Context;
use clap::{Args, ValueEnum};
use hoist_registry::{BlobEvent, Format, PushOptions, Reference, push};
use hoist_store::Store;
use std::path::{Path, PathBuf};

/// Push an image from the store to a registry.
///
/// SRC is an image in the store (`hoist images` lists them); DEST, the
/// registry's name for it, defaults to SRC. Blobs the repository holds
/// are skipped, blobs an earlier push left in another repository of the
/// same registry are mounted, the rest are uploaded from the store; the
/// manifest goes last. Prints `REPOSITORY@DIGEST` on stdout.
///
/// Examples:
///   hoist push 127.0.0.1:5000/web-app:v1
///   hoist push web-app:v1 docker.io/alice/web-app:v1
///   hoist push --format docker app:v1 registry.example/team/app:v1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PushArgs {
    /// The image in the store.
    pub source: String,
    /// The registry reference to push to (default: SRC).
    pub destination: Option<String>,
    /// Manifest media types: `oci` (as built) or `docker` (schema 2,
    /// which gives the image another digest).
    #[arg(long, value_enum, default_value = "oci")]
    pub format: PushFormat,
    /// Write the pushed manifest's digest to this file.
    #[arg(long)]
    pub digest_file: Option<PathBuf>,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
    /// Print nothing on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PushFormat {
    Oci,
    Docker,
}

pub fn run(args: &PushArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let source =
        Reference::parse(&args.source).with_context(|| format!("image {}", args.source))?;
    let destination = match &args.destination {
        Some(d) => Reference::parse(d).with_context(|| format!("destination {d}"))?,
        None => source.clone(),
    };
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    let options = args.registry.push_options(match args.format {
        PushFormat::Oci => Format::Oci,
        PushFormat::Docker => Format::Docker,
    })?;
    let pushed = push_one(&store, &source, &destination, &options, args.quiet)?;
    if let Some(f) = &args.digest_file {
        std::fs::write(f, pushed.digest.to_string())
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    super::emit(&format!("{}\n", pushed.pinned()))?;
    Ok(0)
}

/// Pushes `source` to `destination`, with progress on stderr unless
/// `quiet`; shared with `hoist build --push`.
pub fn push_one(
    store: &Store,
    source: &Reference,
    destination: &Reference,
    options: &PushOptions,
    quiet: bool,
) -> anyhow::Result<hoist_registry::Pushed> {
    if destination.digest.is_some() {
        anyhow::bail!(
            "cannot push to {destination}: a push names a tag, not a digest (the digest is the \
             registry's answer)"
        );
    }
    let name = source.to_string();
    let started = std::time::Instant::now();
    let progress = |digest: &hoist_oci::Digest, event: &BlobEvent| {
        if quiet {
            return;
        }
        let short = &digest.hex()[..12];
        match event {
            BlobEvent::Present => eprintln!("{short}: already there"),
            BlobEvent::Mounted(from) => eprintln!("{short}: mounted from {from}"),
            BlobEvent::Uploaded(n) => {
                eprintln!("{short}: pushed {}", super::build::human_bytes(*n))
            }
        }
    };
    let pushed = push(store, &name, destination, options, &progress)?;
    if !quiet {
        eprintln!(
            "pushed {} in {:.2}s: {} uploaded ({}), {} mounted, {} already there",
            destination.familiar(),
            started.elapsed().as_secs_f64(),
            pushed.blobs_uploaded,
            super::build::human_bytes(pushed.bytes_uploaded),
            pushed.blobs_mounted,
            pushed.blobs_present
        );
    }
    Ok(pushed)
}
