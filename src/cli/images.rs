//! `hoist images`: list the images tagged in the store.

use super::emit;
use clap::Args;
use hoist_store::Store;
use std::path::Path;

/// List the images in the store, as `docker images` does: repository,
/// tag, image ID, creation time and size, aligned.
///
/// An image that lacks a blob, or needs one a build found damaged, says
/// so in a STATUS column (`hoist prune --verify --repair` mends it). SIZE
/// is what the image's blobs take (compressed), not docker's unpacked size.
///
/// Examples:
///   hoist images
///   hoist images --filter reference='team/*' --format '{{.Repository}}:{{.Tag}} {{.ID}}'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ImagesArgs {
    /// Print whole image IDs and digests.
    #[arg(long)]
    pub no_trunc: bool,
    /// Print only the image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Also show each image's manifest (or index) digest.
    #[arg(long)]
    pub digests: bool,
    /// Only images whose name matches: `reference=PATTERN` (a glob on
    /// `REPOSITORY` or `REPOSITORY:TAG`, as docker's).
    #[arg(short, long, value_name = "reference=PATTERN")]
    pub filter: Vec<String>,
    /// A Go template per image over `.Repository`, `.Tag`, `.Digest`,
    /// `.ID`, `.CreatedSince`, `.CreatedAt`, `.Size` (docs/cli.md).
    #[arg(long)]
    pub format: Option<String>,
}

pub fn run(args: &ImagesArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let mut patterns = Vec::new();
    for filter in &args.filter {
        match filter.split_once('=') {
            Some(("reference", pattern)) => patterns.push(pattern.to_owned()),
            _ => anyhow::bail!(
                "--filter {filter}: hoist filters by reference only (reference=PATTERN)"
            ),
        }
    }
    let template = super::template::Template::from_flag(args.format.as_deref())?;
    let store = Store::open(store_dir)?;
    let affected = store.affected_images(&store.noted_damaged()?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let mut out = String::new();
    let mut incomplete = false;
    for (name, descriptor) in store.list()? {
        let familiar = super::prune::familiar(&name);
        let (repository, tag) = match hoist_registry::Reference::parse(&name) {
            Ok(r) => {
                let tag = r.tag.clone().unwrap_or_else(|| "<none>".to_owned());
                let bare = hoist_registry::Reference {
                    tag: None,
                    digest: None,
                    ..r
                };
                (bare.familiar(), tag)
            }
            Err(_) => (familiar.clone(), "<none>".to_owned()),
        };
        if !patterns.is_empty()
            && !patterns.iter().any(|p| {
                let matches =
                    |text: &str| hoist_engine::context::filepath_match(p, text).unwrap_or(false);
                matches(&repository) || matches(&format!("{repository}:{tag}"))
            })
        {
            continue;
        }
        let image =
            hoist_rootfs::load_image(&store, &descriptor.digest, &hoist_oci::Platform::host()).ok();
        let id_digest = match (
            &image,
            hoist_oci::media_type::is_index(&descriptor.media_type),
        ) {
            (Some(image), false) => image.manifest.config.digest,
            _ => descriptor.digest,
        };
        let id = if args.no_trunc {
            id_digest.to_string()
        } else {
            id_digest.hex()[..12].to_owned()
        };
        let created_at = image
            .as_ref()
            .and_then(|i| i.config.created.clone())
            .unwrap_or_default();
        let created = match hoist_oci::image::parse_rfc3339_utc(&created_at) {
            Some(t) => format!(
                "{} ago",
                super::inspect::human_duration(now.saturating_sub(t))
            ),
            None => "N/A".to_owned(),
        };
        let size = image_size(&store, &descriptor.digest).unwrap_or(descriptor.size);
        let size = super::inspect::docker_size(size);
        let digest = descriptor.digest.to_string();
        if args.quiet {
            out.push_str(&format!("{id}\n"));
            continue;
        }
        if let Some(template) = &template {
            let fields = serde_json::json!({
                "Repository": repository,
                "Tag": tag,
                "Digest": digest,
                "ID": id,
                "CreatedSince": created,
                "CreatedAt": created_at,
                "Size": size,
            });
            out.push_str(&template.line(&fields)?);
            continue;
        }
        let mut row = vec![repository, tag];
        if args.digests {
            row.push(digest);
        }
        row.extend([id, created, size]);
        if let Some(image) = affected.iter().find(|a| a.name == name) {
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
            row.push(format!("INCOMPLETE: {}", what.join(", ")));
            incomplete = true;
        }
        rows.push(row);
    }
    if !args.quiet && template.is_none() {
        if incomplete {
            rows[0].push("STATUS".to_owned());
        }
        out = super::inspect::table(&rows);
    }
    emit(&out)?;
    Ok(0)
}

/// Compressed size of an image: its manifest, config and layers; of an
/// index, itself and its images (a blob two share counted twice).
fn image_size(store: &Store, top: &hoist_oci::Digest) -> Option<u64> {
    use hoist_oci::image::ManifestOrIndex;
    let bytes = store.read_blob_bytes(top, 8 << 20).ok()?;
    let own = bytes.len() as u64;
    match ManifestOrIndex::from_json(&bytes).ok()? {
        ManifestOrIndex::Manifest(m) => {
            Some(own + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>())
        }
        ManifestOrIndex::Index(index) => Some(
            own + index
                .manifests
                .iter()
                .filter_map(|d| image_size(store, &d.digest))
                .sum::<u64>(),
        ),
    }
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
