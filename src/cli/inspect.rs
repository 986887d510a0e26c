//! `hoist inspect` and `hoist history`: an image's config and layers, as
//! `docker image inspect` and `docker history` show them, for an image in
//! the store or (`docker://REF`) in a registry.

use super::template::Template;
use anyhow::Context;
use clap::Args;
use hoist_oci::image::Manifest;
use hoist_oci::{Digest, Platform};
use hoist_registry::Reference;
use hoist_store::{Descriptor, Store};
use serde_json::{Value, json};
use std::path::Path;

/// Show images' configs as JSON, as `docker image inspect` does.
///
/// IMAGE is a name in the store, an image ID or manifest digest (or a
/// unique prefix of one), or `docker://REF` to read a registry without
/// pulling layers. `--format` takes Docker's Go-template subset
/// (docs/cli.md): `{{.Id}}`, `{{.Architecture}}`, `{{json .Config}}`,
/// `{{index .RepoTags 0}}`, `{{join .Config.Env ","}}`.
///
/// Examples:
///   hoist inspect web-app:v1
///   hoist inspect --format '{{.Id}} {{json .Config.Cmd}}' web-app:v1
///   hoist inspect docker://127.0.0.1:5000/library/busybox:latest
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// A Go template applied to each image, one line each.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// The platform to show of an index (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

/// Show an image's history: one line per step, newest first, as `docker
/// history` does.
///
/// Example:
///   hoist history web-app:v1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct HistoryArgs {
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Show whole commands and digests.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show only the image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print sizes in bytes and times as RFC 3339 (`-H=false`, as docker
    /// takes it).
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// A Go template for each line, over docker's fields: `.ID`,
    /// `.CreatedSince`, `.CreatedAt`, `.CreatedBy`, `.Size`, `.Comment`.
    #[arg(long)]
    pub format: Option<String>,
    /// The platform to show of an index (default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

/// An image read for inspection.
struct Found {
    names: Vec<String>,
    manifest_digest: Digest,
    manifest: Manifest,
    config_digest: Digest,
    config: Value,
    /// Each layer's size as Docker gives it, where its blob is here to read.
    layer_sizes: Vec<Option<u64>>,
    /// Holds a registry image's store while it is read.
    _scratch: Option<tempfile::TempDir>,
}

pub fn inspect(args: &InspectArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let platform = platform_of(args.platform.as_deref())?;
    let template = Template::from_flag(args.format.as_deref())?;
    let mut values = Vec::new();
    for image in &args.images {
        let found = find(image, store_dir, &platform, &args.registry)?;
        values.push(docker_inspect(&found));
    }
    let text = match &template {
        Some(template) => {
            let mut out = String::new();
            for value in &values {
                out.push_str(&template.line(value)?);
            }
            out
        }
        None => format!("{}\n", serde_json::to_string_pretty(&values)?),
    };
    super::emit(&text)?;
    Ok(0)
}

pub fn history(args: &HistoryArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let platform = platform_of(args.platform.as_deref())?;
    let found = find(&args.image, store_dir, &platform, &args.registry)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let history = found.config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut sizes = found.layer_sizes.iter();
    let mut rows = Vec::new();
    for entry in &history {
        let size = if entry["empty_layer"] == json!(true) {
            Some(0)
        } else {
            sizes.next().copied().flatten()
        };
        rows.push((entry, size));
    }
    rows.reverse();
    let id = if args.no_trunc {
        found.config_digest.to_string()
    } else {
        found.config_digest.hex()[..12].to_owned()
    };
    let mut out = String::new();
    if args.quiet {
        for i in 0..rows.len() {
            out.push_str(if i == 0 { &id } else { "<missing>" });
            out.push('\n');
        }
        super::emit(&out)?;
        return Ok(0);
    }
    let template = Template::from_flag(args.format.as_deref())?;
    let mut lines = vec![vec![
        "IMAGE".to_owned(),
        "CREATED".to_owned(),
        "CREATED BY".to_owned(),
        "SIZE".to_owned(),
        "COMMENT".to_owned(),
    ]];
    for (i, (entry, size)) in rows.iter().enumerate() {
        let created = entry["created"].as_str().unwrap_or_default();
        let created = match hoist_oci::image::parse_rfc3339_utc(created) {
            Some(t) if args.human => format!("{} ago", human_duration(now.saturating_sub(t))),
            Some(_) => created.to_owned(),
            None => String::new(),
        };
        let by = entry["created_by"].as_str().unwrap_or_default();
        let by = if args.no_trunc {
            by.to_owned()
        } else {
            ellipsis(by, 45)
        };
        let size = match size {
            Some(n) if args.human => docker_size(*n),
            Some(n) => n.to_string(),
            None => "-".to_owned(),
        };
        let row = vec![
            if i == 0 {
                id.clone()
            } else {
                "<missing>".to_owned()
            },
            created,
            by,
            size,
            entry["comment"].as_str().unwrap_or_default().to_owned(),
        ];
        if let Some(template) = &template {
            let fields = json!({
                "ID": row[0],
                "CreatedSince": row[1],
                "CreatedAt": entry["created"],
                "CreatedBy": row[2],
                "Size": row[3],
                "Comment": row[4],
            });
            out.push_str(&template.line(&fields)?);
        }
        lines.push(row);
    }
    if template.is_none() {
        out.push_str(&table(&lines));
    }
    super::emit(&out)?;
    Ok(0)
}

/// `--platform`, or this machine's.
fn platform_of(text: Option<&str>) -> anyhow::Result<Platform> {
    match text {
        Some(p) => Platform::parse(p).map_err(|e| anyhow::anyhow!("--platform: {e}")),
        None => Ok(Platform::host()),
    }
}

/// The image `text` names: `docker://REF` in a registry, else in the store.
fn find(
    text: &str,
    store_dir: &Path,
    platform: &Platform,
    registry: &super::registry::RegistryArgs,
) -> anyhow::Result<Found> {
    if let Some(reference) = text.strip_prefix("docker://") {
        let reference =
            Reference::parse(reference).with_context(|| format!("image {reference}"))?;
        // The registry's documents go into a store of their own (layers
        // stay in the registry), so nothing is added to the user's.
        let scratch = tempfile::Builder::new()
            .prefix("hoist-inspect-")
            .tempdir()
            .context("cannot create a scratch directory")?;
        let store = Store::open(scratch.path())?;
        let options = registry.pull_options(&super::registry::MirrorArgs::default())?;
        let client = hoist_registry::Client::new(options.client_options());
        let pulled =
            hoist_registry::pull_lazy(&client, &store, &reference, platform, &options.mirrors)
                .with_context(|| format!("cannot read {reference}"))?;
        let mut found = read(
            &store,
            &pulled.tagged,
            platform,
            vec![reference.to_string()],
        )?;
        found._scratch = Some(scratch);
        return Ok(found);
    }
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    let (names, descriptor) = super::images::find_image(&store, text)?;
    read(&store, &descriptor, platform, names)
}

/// The manifest (for `platform`, from an index) and config `descriptor`
/// names in `store`.
fn read(
    store: &Store,
    descriptor: &Descriptor,
    platform: &Platform,
    names: Vec<String>,
) -> anyhow::Result<Found> {
    let image = hoist_rootfs::load_image(store, &descriptor.digest, platform)
        .map_err(|e| anyhow::anyhow!("{e}; {}", e.hint()))?;
    let config_digest = image.manifest.config.digest;
    let bytes = store.read_blob_bytes(&config_digest, 16 << 20)?;
    let config: Value = serde_json::from_slice(&bytes).context("the image config is not JSON")?;
    let layer_sizes = image
        .manifest
        .layers
        .iter()
        .map(|layer| content_size(store, &layer.digest, &layer.media_type))
        .collect();
    Ok(Found {
        names,
        manifest_digest: image.manifest_digest,
        manifest: image.manifest,
        config_digest,
        config,
        layer_sizes,
        _scratch: None,
    })
}

/// A layer's size as Docker gives it (its files' bytes, see
/// [`hoist_oci::layer::content_size`]), when its blob is in the store;
/// read as a stream.
fn content_size(store: &Store, digest: &Digest, media_type: &str) -> Option<u64> {
    if !store.has_blob(digest) {
        return None;
    }
    let file = store.open_blob(digest).ok()?;
    let kind = hoist_oci::compression::Compression::of_layer(media_type)?;
    let reader = hoist_oci::compression::decompress(kind, std::io::BufReader::new(file));
    hoist_oci::layer::content_size(reader).ok()
}

/// The object `docker image inspect` prints, with the fields hoist knows.
fn docker_inspect(found: &Found) -> Value {
    let config = &found.config;
    let repo_tags: Vec<String> = found
        .names
        .iter()
        .map(|n| super::prune::familiar(n))
        .collect();
    let repo_digests: Vec<String> = found
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .map(|r| {
            Reference {
                tag: None,
                digest: Some(found.manifest_digest),
                ..r
            }
            .familiar()
        })
        .collect();
    let size: u64 = found.layer_sizes.iter().flatten().sum();
    let mut value = json!({
        "Id": found.config_digest.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": "",
        "Created": config["created"].as_str().unwrap_or_default(),
        "Author": config["author"].as_str().unwrap_or_default(),
        "Config": config["config"].clone(),
        "Architecture": config["architecture"].as_str().unwrap_or_default(),
        "Os": config["os"].as_str().unwrap_or_default(),
        "Size": size,
        "RootFS": {
            "Type": "layers",
            "Layers": config["rootfs"]["diff_ids"].clone(),
        },
        "Manifest": {
            "Digest": found.manifest_digest.to_string(),
            "Layers": found.manifest.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
    });
    if let Some(variant) = config["variant"].as_str().filter(|v| !v.is_empty()) {
        value["Variant"] = json!(variant);
    }
    value
}

/// `text` cut to `max` characters with `…`, as docker's columns are.
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Rows as columns three spaces apart, as docker's tables are; a row may
/// have fewer cells than the widest.
pub fn table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A size as docker prints it: decimal units, three significant digits
/// (`4.86MB`, `1.5kB`, `0B`).
pub fn docker_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{value:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

/// A duration as docker's `HumanDuration` words it (`2 days`, `About an
/// hour`, `3 years`).
pub fn human_duration(seconds: u64) -> String {
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    match seconds {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{days} days"),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", days / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", days / 30),
        _ => format!("{} years", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_docker_prints_them() {
        assert_eq!(docker_size(0), "0B");
        assert_eq!(docker_size(999), "999B");
        assert_eq!(docker_size(1500), "1.5kB");
        assert_eq!(docker_size(4_861_234), "4.86MB");
        assert_eq!(docker_size(72_200_000), "72.2MB");
        assert_eq!(docker_size(128_000_000), "128MB");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(human_duration(56 * 365 * 86_400 + 20 * 86_400), "56 years");
    }

    #[test]
    fn columns_line_up_three_spaces_apart() {
        let rows = [
            vec!["A".to_owned(), "BB".to_owned()],
            vec!["CCC".to_owned(), "D".to_owned(), "E".to_owned()],
        ];
        assert_eq!(table(&rows), "A     BB\nCCC   D    E\n");
    }
}
