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

/// The image `text` names in the store, and every name it has there: a
/// name (`app:1`), `NAME@sha256:...`, or, as docker takes them, an image
/// ID (the config's digest) or manifest digest, whole or a unique prefix
/// of at least four hex digits, with or without `sha256:`.
pub fn find_image(
    store: &Store,
    text: &str,
) -> anyhow::Result<(Vec<String>, hoist_store::Descriptor)> {
    let listed = store.list()?;
    let names_of = |digest: &hoist_oci::Digest| -> Vec<String> {
        listed
            .iter()
            .filter(|(_, d)| d.digest == *digest)
            .map(|(n, _)| n.clone())
            .collect()
    };
    if let Ok(reference) = hoist_registry::Reference::parse(text) {
        let found = match &reference.digest {
            Some(digest) => listed
                .iter()
                .map(|(_, d)| d)
                .find(|d| d.digest == *digest)
                .cloned(),
            None => store.resolve(&reference.to_string())?,
        };
        if let Some(descriptor) = found {
            return Ok((names_of(&descriptor.digest), descriptor));
        }
    }
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hex = hex.to_ascii_lowercase();
        let mut matches: Vec<&hoist_store::Descriptor> = Vec::new();
        for (_, descriptor) in &listed {
            let config = config_digest(store, &descriptor.digest);
            let hit = descriptor.digest.hex().starts_with(&hex)
                || config.is_some_and(|c| c.hex().starts_with(&hex));
            if hit && !matches.iter().any(|m| m.digest == descriptor.digest) {
                matches.push(descriptor);
            }
        }
        match matches.as_slice() {
            [one] => return Ok((names_of(&one.digest), (*one).clone())),
            [] => {}
            _ => anyhow::bail!(
                "{text} is the start of {} images' IDs or digests: give more of it",
                matches.len()
            ),
        }
    }
    anyhow::bail!("no image {text} in the store: `hoist images` lists the names it has")
}

/// The config digest (Docker's image ID) of the manifest `digest`, when it
/// is a manifest in the store.
fn config_digest(store: &Store, digest: &hoist_oci::Digest) -> Option<hoist_oci::Digest> {
    let bytes = store.read_blob_bytes(digest, 8 << 20).ok()?;
    let manifest = hoist_oci::image::Manifest::from_json(&bytes).ok()?;
    Some(manifest.config.digest)
}
