//! `hoist save` and `hoist load`: images of the store to an archive and
//! back, as `docker save` and `docker load` move them, without building.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hoist_oci::Digest;
use hoist_oci::compression::Compression;
use hoist_oci::image::archive::{CONTAINERD_IMAGE_NAME, REF_NAME};
use hoist_oci::image::{
    Descriptor, Document, ExportImage, Index, Manifest, write_docker_archive, write_oci_archive,
};
use hoist_oci::media_type;
use hoist_store::Store;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Write images of the store to a tar archive, as `docker save` does.
///
/// IMAGE is a name, an image ID or a digest (as `hoist inspect` takes
/// them). The default format is a docker archive (`docker load` and
/// `podman load` read it; it is also an OCI layout); `oci-archive` holds
/// indexes too. Layers a registry still holds are fetched first.
///
/// Examples:
///   hoist save -o app.tar app:1 app:2
///   hoist save app:1 | docker load
///   hoist save --format oci-archive -o multi.tar app:multi
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SaveArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// The archive to write (default: standard output, unless a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = SaveFormat::DockerArchive)]
    pub format: SaveFormat,
    #[command(flatten)]
    pub mirrors: super::registry::MirrorArgs,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
}

/// Read images from a tar archive into the store, as `docker load` does:
/// a docker archive (`docker save`'s, `hoist save`'s) or an OCI archive
/// (an OCI layout as a tar, plain or compressed). Their names are tagged.
///
/// Examples:
///   hoist load -i app.tar
///   docker save app:1 | hoist load
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LoadArgs {
    /// The archive (default: standard input).
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print only the loaded names.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn save(args: &SaveArgs, store_dir: &Path) -> anyhow::Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!(
            "hoist save writes an archive, and standard output is a terminal: give -o FILE or pipe it"
        );
    }
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    let pull = args.registry.pull_options(&args.mirrors)?;
    let mut images: Vec<ExportImage> = Vec::new();
    for text in &args.images {
        let (names, descriptor) = super::images::find_image(&store, text)?;
        // A name keeps that name in the archive; an ID or digest, none.
        let names = names
            .into_iter()
            .filter(|n| hoist_registry::Reference::parse(text).is_ok_and(|r| r.to_string() == *n))
            .collect();
        if args.format == SaveFormat::DockerArchive && media_type::is_index(&descriptor.media_type)
        {
            bail!(
                "{text} is an index of several platforms, and a docker archive holds one image per name: use --format oci-archive, or save one platform's image (hoist inspect --platform P shows its manifest digest)"
            );
        }
        hoist_registry::fetch_image(&store, &descriptor.digest, &pull)
            .with_context(|| format!("cannot fetch the layers of {text}"))?;
        match images
            .iter_mut()
            .find(|i| i.manifest.digest == descriptor.digest)
        {
            Some(image) => image.names.extend(names),
            None => images.push(ExportImage {
                manifest: descriptor,
                names,
            }),
        }
    }
    let write = |sink: Box<dyn Write>| -> anyhow::Result<()> {
        let mut sink = match args.format {
            SaveFormat::DockerArchive => write_docker_archive(sink, &images, &store)?,
            SaveFormat::OciArchive => write_oci_archive(sink, &images, &store)?,
        };
        Ok(sink.flush()?)
    };
    super::build::write_to(args.output.as_deref(), write)?;
    Ok(0)
}

pub fn load(args: &LoadArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    // Unpacked beside the store: an archive can be as big as the images it
    // holds, more than a tmpfs /tmp takes.
    let scratch = tempfile::Builder::new()
        .prefix("hoist-load-")
        .tempdir_in(store.root())
        .context("cannot create a scratch directory in the store")?;
    let dir = scratch.path();
    let input: Box<dyn Read> = match &args.input {
        Some(path) => Box::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                bail!(
                    "hoist load reads an archive, and standard input is a terminal: give -i FILE or pipe one in"
                );
            }
            Box::new(std::io::stdin().lock())
        }
    };
    // The archive is unpacked through the checked extraction: its paths
    // cannot leave the scratch directory.
    let mut head = [0u8; 6];
    let mut input = std::io::BufReader::new(input);
    let peeked = std::io::BufRead::fill_buf(&mut input)?;
    let n = peeked.len().min(head.len());
    head[..n].copy_from_slice(&peeked[..n]);
    let stream = hoist_oci::compression::decompress(Compression::detect(&head[..n]), input);
    let options = hoist_oci::layer::ExtractOptions {
        chown: false,
        overlay_whiteouts: false,
        user_xattrs: false,
        oci_whiteouts: true,
    };
    hoist_oci::layer::extract(stream, dir, &options).context("cannot unpack the archive")?;
    let loaded = if dir.join("index.json").is_file() {
        load_oci_layout(&store, dir)?
    } else if dir.join("manifest.json").is_file() {
        load_docker_archive(&store, dir)?
    } else {
        bail!(
            "the archive holds neither an OCI layout (index.json) nor a docker archive (manifest.json)"
        )
    };
    let mut out = String::new();
    for (name, digest) in &loaded {
        match name {
            Some(name) => {
                out.push_str(&format!("Loaded image: {}\n", super::prune::familiar(name)))
            }
            None if !args.quiet => out.push_str(&format!("Loaded image ID: {digest}\n")),
            None => {}
        }
    }
    super::emit(&out)?;
    Ok(0)
}

/// Every image of the OCI layout `dir`, tagged with the names its index
/// gives (containerd's full name, else the ref name).
fn load_oci_layout(store: &Store, dir: &Path) -> anyhow::Result<Vec<(Option<String>, Digest)>> {
    let bytes = std::fs::read(dir.join("index.json"))?;
    let index = Index::from_json(&bytes).context("the archive's index.json cannot be read")?;
    let mut loaded = Vec::new();
    for entry in &index.manifests {
        hoist_rootfs::import_from_layout(store, dir, entry).map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = entry
            .annotations
            .get(CONTAINERD_IMAGE_NAME)
            .or_else(|| {
                entry
                    .annotations
                    .get(REF_NAME)
                    .filter(|n| n.contains([':', '/']))
            })
            .cloned();
        if let Some(name) = &name {
            let reference = hoist_registry::Reference::parse(name)
                .with_context(|| format!("the archive names an image {name}"))?;
            store.tag(&reference.to_string(), entry)?;
        }
        loaded.push((name, entry.digest));
    }
    Ok(loaded)
}

/// One image of `docker save`'s `manifest.json`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Every image `docker save`'s `manifest.json` in `dir` lists: its config
/// and layers (kept as the archive has them, uncompressed or not) under an
/// OCI manifest, tagged with its names.
fn load_docker_archive(store: &Store, dir: &Path) -> anyhow::Result<Vec<(Option<String>, Digest)>> {
    let bytes = std::fs::read(dir.join("manifest.json"))?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&bytes).context("the archive's manifest.json cannot be read")?;
    let inside = |name: &str| -> anyhow::Result<PathBuf> {
        if name.split('/').any(|p| p == "..") || name.starts_with('/') {
            bail!("the archive's manifest.json names {name}, outside the archive");
        }
        Ok(dir.join(name))
    };
    let mut loaded = Vec::new();
    for entry in &entries {
        let config_bytes = std::fs::read(inside(&entry.config)?)
            .with_context(|| format!("the archive lacks {}", entry.config))?;
        let (config_digest, config_size) = store.put_blob_bytes(&config_bytes, None)?;
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let path = inside(layer)?;
            let mut file =
                std::fs::File::open(&path).with_context(|| format!("the archive lacks {layer}"))?;
            let mut head = [0u8; 6];
            let n = file.read(&mut head)?;
            let media = match Compression::detect(&head[..n]) {
                Compression::Gzip => media_type::OCI_LAYER_TAR_GZIP,
                Compression::Zstd => media_type::OCI_LAYER_TAR_ZSTD,
                _ => media_type::OCI_LAYER_TAR,
            };
            let (digest, size) = store.put_blob(std::fs::File::open(&path)?, None)?;
            layers.push(Descriptor::new(media, digest, size));
        }
        let manifest = Manifest::new(
            Descriptor::new(media_type::OCI_CONFIG, config_digest, config_size),
            layers,
        );
        let encoded = manifest.encode();
        store.put_blob_bytes(&encoded.bytes, Some(&encoded.digest))?;
        let descriptor = Descriptor::new(media_type::OCI_MANIFEST, encoded.digest, encoded.size);
        let tags = entry.repo_tags.clone().unwrap_or_default();
        for name in &tags {
            let reference = hoist_registry::Reference::parse(name)
                .with_context(|| format!("the archive names an image {name}"))?;
            store.tag(&reference.to_string(), &descriptor)?;
            loaded.push((Some(reference.to_string()), config_digest));
        }
        if tags.is_empty() {
            loaded.push((None, config_digest));
        }
    }
    Ok(loaded)
}
