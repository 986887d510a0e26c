//! `hoist prune`: reclaim store space.

use clap::Args;
use hoist_store::{PruneOptions, Store};
use std::path::Path;

/// Delete every blob no tagged image or cache entry uses, and the
/// leftovers of interrupted writes.
///
/// Examples:
///   hoist prune
///   hoist prune --verify     # also re-hash every blob and drop damaged ones
///   hoist prune --cache-mounts   # also empty RUN --mount=type=cache directories
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PruneArgs {
    /// Re-hash every blob and remove damaged ones (reads the whole store).
    #[arg(long)]
    pub verify: bool,
    /// Also remove the directories of `RUN --mount=type=cache` (kept by
    /// default: they are what package managers downloaded, not layers).
    #[arg(long)]
    pub cache_mounts: bool,
}

pub fn run(args: &PruneArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let mut store = Store::open(store_dir)?;
    let report = store.prune_with(&PruneOptions {
        verify: args.verify,
        cache_mounts: args.cache_mounts,
        ..PruneOptions::default()
    })?;
    eprintln!(
        "removed {} blobs ({}), {} temp files, {} cache records, {} extracted layers, {} cache mounts; {} damaged blobs",
        report.removed_blobs.len(),
        super::build::human_bytes(report.freed_bytes),
        report.removed_temps,
        report.removed_cache_records,
        report.removed_snapshots,
        report.removed_cache_mounts,
        report.corrupt.len()
    );
    for digest in &report.corrupt {
        eprintln!("damaged: {digest}");
    }
    Ok(0)
}
