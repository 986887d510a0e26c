//! `hoist pull`: fetch an image from a registry into the store.

use anyhow::Context;
use clap::Args;
use hoist_oci::Platform;
use hoist_registry::{Reference, pull};
use hoist_store::Store;
use std::path::Path;

/// Fetch an image from a registry into the store; prints its digest (the
/// index's when the tag names a multi-platform image).
///
/// Examples:
///   hoist pull busybox
///   hoist pull --platform linux/arm64 127.0.0.1:5000/web-app:v1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PullArgs {
    /// The image (`node:14-alpine`, `127.0.0.1:5000/app:v1`, `app@sha256:...`).
    pub image: String,
    /// The platform to fetch from a multi-platform image (default: this
    /// machine's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub mirrors: super::registry::MirrorArgs,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
    /// Print nothing on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: &PullArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let reference =
        Reference::parse(&args.image).with_context(|| format!("image {}", args.image))?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::host(),
    };
    let options = args.registry.pull_options(&args.mirrors)?;
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    let pulled = pull(&store, &reference, &platform, &options)?;
    if !args.quiet {
        eprintln!(
            "pulled {} from {}: {} blobs fetched ({}), {} already in the store",
            reference.familiar(),
            pulled.source,
            pulled.blobs_fetched,
            super::build::human_bytes(pulled.bytes_fetched),
            pulled.blobs_present
        );
    }
    super::emit(&format!("{}\n", pulled.tagged.digest))?;
    Ok(0)
}
