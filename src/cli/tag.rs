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
    let source =
        Reference::parse(&args.source).with_context(|| format!("image {}", args.source))?;
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
    let descriptor = match &source.digest {
        // `app@sha256:...`: the manifest with that digest, when the store
        // has it under some tag.
        Some(digest) => store
            .list()?
            .into_iter()
            .map(|(_, d)| d)
            .find(|d| d.digest == *digest),
        None => store.resolve(&source.to_string())?,
    };
    let Some(descriptor) = descriptor else {
        anyhow::bail!(
            "no image {} in the store: `hoist images` lists the names it has",
            args.source
        );
    };
    store.tag(&target.to_string(), &descriptor)?;
    Ok(0)
}
