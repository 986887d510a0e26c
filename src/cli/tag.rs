//! `hoist tag`: give an image in the store another name.

use anyhow::Context;
use clap::Args;
use hoist_registry::Reference;
use hoist_store::Store;
use std::path::Path;

/// Give an image in the store another name, as `docker tag` does; the
/// new name is what `hoist push` sends it as.
///
/// Example:
///   hoist tag web-app:v1 127.0.0.1:5000/web-app:v1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TagArgs {
    /// An image in the store.
    pub source: String,
    /// The new name.
    pub target: String,
}

pub fn run(args: &TagArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let target =
        Reference::parse(&args.target).with_context(|| format!("new name {}", args.target))?;
    if target.digest.is_some() {
        anyhow::bail!(
            "cannot tag {}: a new name has a tag, not a digest",
            args.target
        );
    }
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    // A name, NAME@DIGEST, or an image ID or digest (a prefix will do),
    // as `docker tag` takes its source.
    let (_, descriptor) = super::images::find_image(&store, &args.source)?;
    store.tag(&target.to_string(), &descriptor)?;
    Ok(0)
}
