//! `hoist resolve`: rewrite image references in your own YAML to the
//! digests hoist built, leaving every other byte as it was.

use super::emit;
use super::k8s::{RegistryCheck, check_pushed};
use anyhow::{Context, bail};
use clap::Args;
use hoist_k8s::generate::image_reference;
use hoist_k8s::resolve::{Candidate, PREFIX, resolve_text};
use hoist_k8s::{Options, inspect};
use hoist_oci::Platform;
use hoist_registry::Reference;
use hoist_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Pin image references in Kubernetes YAML to the digests hoist built.
///
/// Rewrites `hoist://IMAGE` values anywhere, and values of image fields
/// (`image`, `*Image`, items of `images`/`*Images`) named with --image, to
/// `REPO@sha256:...` as the registry holds it. Comments, key order,
/// quoting, anchors and line endings stay as they were. Files are printed
/// on stdout, in order, separated by `---`.
///
/// Examples:
///   hoist resolve -f k8s/ > resolved.yaml
///   hoist resolve -f web-app-deployment.yaml --image registry.example.com/team/my-k8s-app:v1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ResolveArgs {
    /// A YAML file, or a directory of `.yaml`/`.yml`/`.json` files
    /// (repeatable; `-` reads stdin).
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR"
    )]
    pub files: Vec<PathBuf>,
    /// Look into subdirectories of a directory too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Resolve this image field value: `VALUE` (an image tagged so in the
    /// store) or `VALUE=IMAGE` (the store's IMAGE); repeatable.
    #[arg(long = "image", value_name = "VALUE[=IMAGE]")]
    pub images: Vec<String>,
    /// Write references even when the registry lacks the digest.
    #[arg(long)]
    pub allow_unpushed: bool,
    /// `--insecure-registry`, `--ca-cert` and `--config`, as the commands
    /// that pull take them.
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
    /// Write REPO:TAG@sha256:... (default REPO@sha256:...).
    #[arg(long)]
    pub keep_tag: bool,
}

fn inputs(args: &ResolveArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in &args.files {
        if path.is_dir() {
            let mut found = Vec::new();
            let walk = walkdir::WalkDir::new(path)
                .min_depth(1)
                .max_depth(if args.recursive { usize::MAX } else { 1 })
                .sort_by_file_name();
            for entry in walk {
                let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
                let yaml = entry
                    .path()
                    .extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
                if entry.file_type().is_file() && yaml {
                    found.push(entry.into_path());
                }
            }
            if found.is_empty() {
                bail!(
                    "-f {}: no .yaml, .yml or .json file there{}",
                    path.display(),
                    if args.recursive {
                        ""
                    } else {
                        " (-R looks into subdirectories)"
                    }
                );
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn read(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

pub fn run(args: &ResolveArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let mut mapping: BTreeMap<String, String> = BTreeMap::new();
    for spec in &args.images {
        let (value, image) = spec.split_once('=').unwrap_or((spec, spec));
        mapping.insert(value.to_owned(), image.to_owned());
    }
    let files = inputs(args)?;
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect::<anyhow::Result<_>>()?;
    // Which image each candidate names: a first pass collects them all,
    // so every image is checked once and any error comes before output.
    let wanted = |c: &Candidate| -> Option<String> {
        if let Some(rest) = c.value.strip_prefix(PREFIX) {
            return Some(rest.to_owned());
        }
        c.image_field
            .then(|| mapping.get(c.value).cloned())
            .flatten()
    };
    let mut images: BTreeMap<String, String> = BTreeMap::new();
    for (name, text) in &texts {
        resolve_text(name, text, &mut |c| {
            if let Some(image) = wanted(c) {
                images.insert(image, String::new());
            }
            Ok(None)
        })?;
    }
    if !images.is_empty() {
        let store = Store::open(store_dir)
            .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
        let options = Options {
            keep_tag: args.keep_tag,
            ..Default::default()
        };
        let pull = args
            .registry
            .pull_options(&super::registry::MirrorArgs::default())?;
        let client = args.registry.client_options()?;
        for (image, pinned) in images.iter_mut() {
            let reference = Reference::parse(image).with_context(|| format!("image {image}"))?;
            let facts = inspect(&store, &reference, &Platform::host(), &pull)?;
            check_pushed(
                &facts,
                &RegistryCheck {
                    allow_unpushed: args.allow_unpushed,
                    client: client.clone(),
                    // Whether the YAML has imagePullSecrets is the user's
                    // business here: no warning about it.
                    pull_secret: true,
                },
            )?;
            *pinned = image_reference(&facts, &options);
        }
    }
    let mut out = String::new();
    let mut count = 0;
    for (i, (name, text)) in texts.iter().enumerate() {
        let (resolved, rewrites) = resolve_text(name, text, &mut |c| {
            Ok(wanted(c).map(|image| images[&image].clone()))
        })?;
        count += rewrites.len();
        if i > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !resolved.starts_with("---") {
                out.push_str("---\n");
            }
        }
        out.push_str(&resolved);
    }
    emit(&out)?;
    eprintln!(
        "resolved {count} image reference{} in {} file{}",
        if count == 1 { "" } else { "s" },
        texts.len(),
        if texts.len() == 1 { "" } else { "s" }
    );
    if count == 0 {
        eprintln!(
            "warning: nothing to resolve: write images as hoist://IMAGE, or name them with --image"
        );
    }
    Ok(0)
}
