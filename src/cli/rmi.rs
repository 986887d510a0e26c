//! `hoist rmi`: remove image tags from the store.

use clap::Args;
use hoist_registry::Reference;
use hoist_store::Store;
use std::path::Path;

/// Remove images from the store by name; blobs no other image or cache
/// entry uses are deleted.
///
/// Example:
///   hoist rmi web-app:v1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RmiArgs {
    /// Image names (`app:v1`, `localhost:5000/app:v1`).
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(args: &RmiArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let mut store = Store::open(store_dir)?;
    let mut failed = false;
    for image in &args.images {
        let name = match Reference::parse(image) {
            Ok(r) => r.to_string(),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        match store.remove_image(&name) {
            Ok(removed) => eprintln!(
                "untagged {image} ({}); freed {}",
                removed.descriptor.digest,
                super::build::human_bytes(removed.freed_bytes)
            ),
            Err(e) => {
                eprintln!("error: cannot remove {image}: {e}");
                eprintln!("  hint: `hoist images` lists the names in the store");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}
