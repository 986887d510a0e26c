//! `hoist images`: list the images tagged in the store.

use super::emit;
use clap::Args;
use hoist_store::Store;
use std::path::Path;

/// List the images in the store: name, manifest digest, size.
///
/// An image that lacks a blob, or needs one a build found damaged, says
/// so in a fourth column (`hoist prune --verify --repair` mends it).
///
/// Example:
///   hoist images
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ImagesArgs {
    /// Print the full digests.
    #[arg(long)]
    pub no_trunc: bool,
}

pub fn run(args: &ImagesArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = Store::open(store_dir)?;
    let affected = store.affected_images(&store.noted_damaged()?)?;
    let mut out = String::from("REPOSITORY:TAG\tDIGEST\tSIZE\n");
    for (name, descriptor) in store.list()? {
        let name_of_row = name.clone();
        let shown = super::prune::familiar(&name);
        let digest = descriptor.digest.to_string();
        let digest = if args.no_trunc {
            digest
        } else {
            digest[..19].to_string()
        };
        let size = image_size(&store, &descriptor.digest).unwrap_or(descriptor.size);
        out.push_str(&format!(
            "{shown}\t{digest}\t{}",
            super::build::human_bytes(size)
        ));
        if let Some(image) = affected.iter().find(|a| a.name == name_of_row) {
            let mut what = Vec::new();
            if !image.missing.is_empty() {
                what.push(format!(
                    "{} missing",
                    super::prune::count(image.missing.len())
                ));
            }
            if !image.damaged.is_empty() {
                what.push(format!(
                    "{} damaged",
                    super::prune::count(image.damaged.len())
                ));
            }
            out.push_str(&format!("\tINCOMPLETE: {}", what.join(", ")));
        }
        out.push('\n');
    }
    emit(&out)?;
    Ok(0)
}

/// Compressed size of an image: its manifest, config and layers.
fn image_size(store: &Store, manifest: &hoist_oci::Digest) -> Option<u64> {
    let bytes = store.read_blob_bytes(manifest, 8 << 20).ok()?;
    let m = hoist_oci::image::Manifest::from_json(&bytes).ok()?;
    Some(bytes.len() as u64 + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>())
}
