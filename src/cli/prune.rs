//! `hoist prune`: reclaim store space, and find (and mend) damage.

use anyhow::Context;
use clap::Args;
use hoist_oci::image::{Descriptor, ManifestOrIndex};
use hoist_oci::media_type;
use hoist_registry::{PullOptions, Reference, fetch_blob_of};
use hoist_store::{Affected, PruneOptions, Store};
use std::collections::BTreeSet;
use std::path::Path;

/// Delete every blob no tagged image or cache entry uses, and the
/// leftovers of interrupted writes.
///
/// With --verify, every blob is hashed again: damaged ones are removed,
/// the images that needed them are named, and the command exits 1.
/// --repair then fetches each missing blob again from a registry that
/// should hold it (where the image was pulled from or pushed to).
///
/// Examples:
///   hoist prune
///   hoist prune --verify     # also re-hash every blob and drop damaged ones
///   hoist prune --verify --repair   # and fetch them again from a registry
///   hoist prune --cache-mounts   # also empty RUN --mount=type=cache directories
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PruneArgs {
    /// Re-hash every blob and remove damaged ones (reads the whole store);
    /// exit 1 if any image is left incomplete.
    #[arg(long)]
    pub verify: bool,
    /// Fetch the blobs an image lacks (damaged and removed, or lost) from
    /// the registry it was pulled from or pushed to.
    #[arg(long)]
    pub repair: bool,
    /// Also remove the directories of `RUN --mount=type=cache` (kept by
    /// default: they are what package managers downloaded, not layers).
    #[arg(long)]
    pub cache_mounts: bool,
    #[command(flatten)]
    pub mirrors: super::registry::MirrorArgs,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
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
        eprintln!("damaged (removed): {digest}");
    }
    let mut affected = store.affected_images(&store.noted_damaged()?)?;
    if args.repair && !affected.is_empty() {
        let options = args.registry.pull_options(&args.mirrors)?;
        for image in &affected {
            repair(&store, image, &options);
        }
        affected = store.affected_images(&store.noted_damaged()?)?;
    }
    for image in &affected {
        eprintln!("incomplete: {}", describe(image));
    }
    if affected.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "  hint: pull or build the image again, or run `hoist prune --verify --repair` to fetch what it lacks from the registry it came from or went to"
    );
    Ok(1)
}

/// What an image lacks, for one line.
pub fn describe(image: &Affected) -> String {
    let mut parts = Vec::new();
    if !image.missing.is_empty() {
        parts.push(format!(
            "{} missing ({})",
            count(image.missing.len()),
            list(&image.missing)
        ));
    }
    if !image.damaged.is_empty() {
        parts.push(format!(
            "{} damaged ({})",
            count(image.damaged.len()),
            list(&image.damaged)
        ));
    }
    format!("{}: {}", familiar(&image.name), parts.join(", "))
}

/// A tag as `hoist images` shows it (`t:1` for `docker.io/library/t:1`).
pub fn familiar(name: &str) -> String {
    Reference::parse(name)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| name.to_owned())
}

/// `1 blob`, `2 blobs`.
pub fn count(n: usize) -> String {
    if n == 1 {
        "1 blob".into()
    } else {
        format!("{n} blobs")
    }
}

fn list(digests: &[hoist_oci::Digest]) -> String {
    digests
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fetches what `image` lacks from every registry that should hold it, as
/// long as one does; reports each blob it could not fetch.
fn repair(store: &Store, image: &Affected, options: &PullOptions) {
    let sources = sources(store, image);
    if sources.is_empty() {
        eprintln!(
            "cannot repair {}: it names no registry and this store never pushed it",
            familiar(&image.name)
        );
        return;
    }
    // The image's documents are walked from its top descriptor, each one
    // fetched first if it is the one missing, so their children are known.
    let mut work = vec![Descriptor::new(
        &image.descriptor.media_type,
        image.descriptor.digest,
        image.descriptor.size,
    )];
    let mut seen = BTreeSet::new();
    while let Some(descriptor) = work.pop() {
        if !seen.insert(descriptor.digest) {
            continue;
        }
        if !store.has_blob(&descriptor.digest) {
            let fetched = sources.iter().find(|source| {
                match fetch_blob_of(store, source, &descriptor, options) {
                    Ok(_) => true,
                    Err(e) => {
                        eprintln!("cannot fetch {} from {source}: {e}", descriptor.digest);
                        false
                    }
                }
            });
            match fetched {
                Some(source) => eprintln!("repaired: {} from {source}", descriptor.digest),
                None => continue,
            }
        }
        let is_document = media_type::is_manifest(&descriptor.media_type)
            || media_type::is_index(&descriptor.media_type);
        if !is_document {
            continue;
        }
        let Ok(bytes) = store.read_blob_bytes(&descriptor.digest, 8 << 20) else {
            continue;
        };
        match ManifestOrIndex::from_json(&bytes) {
            Ok(ManifestOrIndex::Manifest(m)) => {
                work.push(m.config);
                work.extend(m.layers);
            }
            Ok(ManifestOrIndex::Index(i)) => work.extend(i.manifests),
            Err(_) => {}
        }
    }
}

/// The repositories that should hold `image`'s blobs: the one its tag
/// names (an image pulled, or built for a registry), and every one this
/// store pushed it to.
fn sources(store: &Store, image: &Affected) -> Vec<Reference> {
    let mut sources: Vec<Reference> = Reference::parse(&image.name).into_iter().collect();
    let pushed = store
        .push_records()
        .with_context(|| "cannot read the store's push records")
        .unwrap_or_default();
    for record in pushed {
        if record.digest == image.descriptor.digest
            && let Ok(reference) = Reference::parse(&record.reference)
            && !sources.contains(&reference)
        {
            sources.push(reference);
        }
    }
    sources
}
