//! `hoist build`: build a Dockerfile into an image.

use super::progress::{Display, Mode, Summary};
use super::{emit, read_dockerfile};
use anyhow::{Context, bail};
use clap::Args;
use hoist_dockerfile::plan::{Options, resolve_build_arg};
use hoist_engine::shared_cache::{CacheSpec, Direction};
use hoist_engine::{BuildError, BuildRequest, build};
use hoist_oci::Platform;
use hoist_oci::image::{ExportImage, write_docker_archive, write_oci_archive, write_oci_layout};
use hoist_oci::layer::GzipOptions;
use hoist_registry::Reference;
use hoist_store::Store;
use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Build an image from a Dockerfile, with no daemon.
///
/// The image's manifest digest (the one a push uploads and `--output`
/// exports) is printed on stdout; progress goes to stderr.
///
/// Examples:
///   hoist build -t web-app:v1 fixtures/tutorial/web-app
///   hoist build -t app --output type=docker,dest=- . | docker load
///   hoist build --output type=oci,dest=out/ --build-arg VERSION=1.2 .
///   hoist build --registry-mirror docker.io=127.0.0.1:5000 -t app:v1 .
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads stdin.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name and tag the image in the store (repeatable).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Set a build-time variable: `K=V`, or `K` to take it from the environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// The platform to build for (`linux/amd64`, `linux/arm64`...), or
    /// several, comma-separated, for an OCI index of their images
    /// (docs/platforms.md).
    #[arg(long)]
    pub platform: Option<String>,
    /// Add a label to the image (`K=V`, repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Fetch base images from their registry even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// Also look steps up in a shared cache, after the store:
    /// `type=registry,ref=REPO` or `type=local,src=DIR` (buildx's syntax;
    /// repeatable; default: $HOIST_CACHE_FROM, then the config file's
    /// `cache`/`cache-from`; docs/cache.md).
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Write the build's steps to a shared cache once it is done:
    /// `type=registry,ref=REPO[,mode=min|max]` or
    /// `type=local,dest=DIR[,mode=min|max]` (repeatable; default:
    /// $HOIST_CACHE_TO, then the config file's `cache`/`cache-to`).
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    #[command(flatten)]
    pub mirrors: super::registry::MirrorArgs,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
    /// Export the image: `type=oci,dest=DIR`, `type=docker,dest=FILE|-`,
    /// `type=oci-archive,dest=FILE|-`; or its file system,
    /// `type=local,dest=DIR` or `type=tar,dest=FILE|-`.
    #[arg(short = 'o', long)]
    pub output: Vec<String>,
    /// The network of RUN steps that name none of their own
    /// (`RUN --network=...`): `default` or `host` (the host's, as BuildKit
    /// gives RUN), or `none` (a loopback device only; needs namespace
    /// isolation).
    #[arg(long, value_name = "default|host|none", value_parser = ["default", "host", "none"])]
    pub network: Option<String>,
    /// Check the Dockerfile as `hoist check` does and stop, building
    /// nothing (exit status 1 when it has an error).
    #[arg(long)]
    pub check: bool,
    /// Write the build's result as JSON to FILE, as buildx's
    /// `--metadata-file` does (`containerimage.digest`, `image.name`...).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Hand the image to the local Docker (`docker load`), or to podman
    /// where there is no Docker daemon (`podman load`), once built.
    #[arg(long)]
    pub load: bool,
    /// Push every `-t` name to its registry once the build is done.
    #[arg(long)]
    pub push: bool,
    /// Push to each `-t` name's repository under the digest only, moving
    /// no tag, as per-platform builds do before `hoist manifest create`
    /// lists them (implies --push).
    #[arg(long)]
    pub push_by_digest: bool,
    /// Write the manifest digest to this file.
    #[arg(long)]
    pub digest_file: Option<PathBuf>,
    /// Write the config digest (Docker's image ID) to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Print only the digest (and errors).
    #[arg(short, long)]
    pub quiet: bool,
    /// Write Kubernetes manifests for the first `-t` name into DIR once the
    /// build (and the push, with --push) is done, pinned by the digest the
    /// registry holds; `hoist k8s` flags go after `--` (docs/k8s.md).
    #[arg(long, value_name = "DIR")]
    pub k8s_out: Option<PathBuf>,
    /// How to show progress on stderr: `tty` (live steps), `plain` (one
    /// line per step and output line), `json` (one object per line), or
    /// `auto` (`tty` on a terminal, `plain` otherwise).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub progress: Mode,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or
    /// `id=ID,env=VARIABLE` (BuildKit's syntax; repeatable). Read only
    /// while a step runs; never in a layer, the cache or the output.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh`: `default` ($SSH_AUTH_SOCK),
    /// `ID=SOCKET`, or `ID=KEYFILE[,KEYFILE...]` served by an ssh-agent
    /// started for the build (repeatable).
    #[arg(long = "ssh", value_name = "default|ID=SOCKET|ID=KEYFILE")]
    pub ssh: Vec<String>,
    /// How RUN steps are kept apart from the host: `namespaces`, `chroot`
    /// (for containers that cannot make namespaces: docs/run.md), or
    /// `auto` (namespaces where they can be made, else chroot; default:
    /// $HOIST_ISOLATION, then auto).
    #[arg(long, value_name = "auto|namespaces|chroot")]
    pub isolation: Option<hoist_run::IsolationChoice>,
    /// Do not build here: upload the context (after .dockerignore) to a
    /// registry, content-addressed, and write a Kubernetes Job that makes
    /// this build in a cluster and pushes the image: to stdout, or
    /// `--job=FILE` (docs/ci.md).
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-"
    )]
    pub job: Option<PathBuf>,
    /// With --job: hoist's image, which the Job runs (default:
    /// $HOIST_JOB_IMAGE).
    #[arg(long, value_name = "IMAGE", requires = "job")]
    pub job_image: Option<String>,
    /// With --job: a `kubernetes.io/dockerconfigjson` Secret with the
    /// registry credentials, for the build's pulls and pushes and for
    /// pulling hoist's image.
    #[arg(long, value_name = "SECRET", requires = "job")]
    pub job_secret: Option<String>,
    /// With --job: the repository the context goes to (default: the first
    /// -t name's).
    #[arg(long, value_name = "REPO", requires = "job")]
    pub job_context: Option<String>,
    /// With --job: the CPUs the build requests, also its limit.
    #[arg(long, value_name = "CPU", default_value = "2", requires = "job")]
    pub job_cpu: String,
    /// With --job: the memory the build requests, also its limit.
    #[arg(long, value_name = "SIZE", default_value = "4Gi", requires = "job")]
    pub job_memory: String,
    /// The build context: a directory; `-` (a tar on standard input, or a
    /// Dockerfile and no context); a git repository, `URL#REF:SUBDIR`
    /// (`git://`, `git@`, `ssh://`, or `https://...git`); or
    /// `oci-artifact://REGISTRY/REPO@DIGEST`, a context `--job` uploaded.
    pub context: PathBuf,
    /// With --k8s-out: `hoist k8s` flags (`-- --replicas 3 --service-port 80:3000`).
    #[arg(last = true, value_name = "K8S FLAGS")]
    pub k8s_flags: Vec<String>,
}

/// One `--output` request.
enum Output {
    Oci(PathBuf),
    Docker(Option<PathBuf>),
    OciArchive(Option<PathBuf>),
    /// The image's final file system, in a directory.
    Local(PathBuf),
    /// The same, as a tar.
    Tar(Option<PathBuf>),
}

fn parse_output(spec: &str) -> anyhow::Result<Output> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ => bail!(
                "--output {spec}: expected type=TYPE,dest=PATH (types: oci, docker, oci-archive, local, tar)"
            ),
        }
    }
    let stdout_or = |d: Option<String>| match d.as_deref() {
        None | Some("-") => None,
        Some(p) => Some(PathBuf::from(p)),
    };
    match kind.as_deref() {
        Some("oci") => Ok(Output::Oci(PathBuf::from(
            dest.context("--output type=oci needs dest=DIR")?,
        ))),
        Some("docker") => Ok(Output::Docker(stdout_or(dest))),
        Some("oci-archive") => Ok(Output::OciArchive(stdout_or(dest))),
        Some("local") => Ok(Output::Local(PathBuf::from(
            dest.context("--output type=local needs dest=DIR")?,
        ))),
        Some("tar") => Ok(Output::Tar(stdout_or(dest))),
        Some(other) => {
            bail!(
                "--output type={other} is not supported; use oci, docker, oci-archive, local or tar"
            )
        }
        None => bail!("--output {spec}: missing type= (oci, docker, oci-archive, local or tar)"),
    }
}

pub fn run(args: &BuildArgs, store_dir: &Path) -> anyhow::Result<i32> {
    if let Some(choice) = args.isolation {
        hoist_run::set_isolation(choice);
    }
    // A bad $HOIST_ISOLATION is an error before anything is built.
    hoist_run::isolation_choice()?;
    let outputs: Vec<Output> = args
        .output
        .iter()
        .map(|s| parse_output(s))
        .collect::<anyhow::Result<_>>()?;
    let to_stdout = outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Docker(None) | Output::OciArchive(None) | Output::Tar(None)
            )
        })
        .count();
    if to_stdout > 1 {
        bail!("only one --output can write to stdout");
    }
    if to_stdout > 0 && std::io::stdout().is_terminal() {
        bail!(
            "--output with dest=- writes an archive to standard output, which is a terminal: pipe it (| docker load) or give dest=FILE"
        );
    }
    for spec in &args.build_args {
        let name = spec.split_once('=').map_or(spec.as_str(), |(k, _)| k);
        if name.trim().is_empty() {
            bail!(
                "--build-arg {spec:?} names no argument: give NAME=VALUE, or NAME to take its value from the environment"
            );
        }
    }
    let tags: Vec<Reference> = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("-t {t}")))
        .collect::<anyhow::Result<_>>()?;
    if let Some(job) = &args.job {
        return super::build_job::run(args, &tags, job);
    }
    let push = args.push || args.push_by_digest;
    if push && tags.is_empty() {
        bail!("--push needs at least one -t NAME to push the image as");
    }
    let k8s = match &args.k8s_out {
        Some(dir) => {
            let image = tags
                .first()
                .context("--k8s-out needs a -t NAME: the manifests deploy that image")?;
            Some(super::k8s::build_args(
                &image.to_string(),
                dir,
                &args.k8s_flags,
            )?)
        }
        None if !args.k8s_flags.is_empty() => {
            bail!("flags after -- are `hoist k8s` flags and need --k8s-out DIR")
        }
        None => None,
    };
    let stdin_context = args.context.as_os_str() == "-";
    if stdin_context && args.file.as_ref().is_some_and(|f| f.as_os_str() == "-") {
        bail!("-f - and the context - both read standard input: give one of them a path");
    }
    let context = match super::build_job::artifact_reference(&args.context) {
        Some(reference) => {
            let store = Store::open(store_dir)
                .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
            let options = args.registry.client_options()?;
            super::context_artifact::download(reference, &options, &store)?
        }
        None => super::context_source::resolve(&args.context)?,
    };
    let dockerfile_path = dockerfile_path(args, &context)?;
    let (name, text) = match &context.dockerfile {
        Some(_) if args.file.is_some() => {
            bail!("standard input held a Dockerfile, not a context tar: -f cannot name another")
        }
        Some(bytes) => (
            "<stdin>".to_string(),
            String::from_utf8_lossy(bytes).into_owned(),
        ),
        None => read_dockerfile(dockerfile_path.as_deref().unwrap_or(Path::new("-")))?,
    };
    let dockerfile_path = if context.dockerfile.is_some() {
        None
    } else {
        dockerfile_path
    };
    if args.check {
        let errors = super::check::check_text(&name, &text)?;
        return Ok(if errors > 0 { 1 } else { 0 });
    }
    let mut options = Options::default();
    for spec in &args.build_args {
        if let Some((k, v)) = resolve_build_arg(spec, |k| std::env::var(k).ok()) {
            options.build_args.insert(k, v);
        }
    }
    // One platform, or several: each is built in turn (steps that do not
    // depend on the platform come from the cache after the first) and an
    // index lists their images.
    let platforms = match &args.platform {
        Some(p) => Platform::parse_list(p).map_err(|e| anyhow::anyhow!("--platform: {e}"))?,
        None => Vec::new(),
    };
    if platforms.len() > 1 && outputs.iter().any(|o| matches!(o, Output::Docker(_))) {
        bail!(
            "--output type=docker holds one image, and --platform names {}: use type=oci or type=oci-archive, which hold an index",
            platforms.len()
        );
    }
    if platforms.len() > 1 && args.load {
        bail!(
            "--load hands one image to docker or podman, and --platform names {}: load one platform, or push the index",
            platforms.len()
        );
    }
    if let Some(first) = platforms.first() {
        options.target_platform = first.clone();
    }
    options.target = args.target.clone();
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l}: expected KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    // SOURCE_DATE_EPOCH from the environment or, as BuildKit takes it, from
    // a build arg of that name.
    let epoch_text = options
        .build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|v| !v.is_empty());
    let source_date_epoch = match &epoch_text {
        Some(v) => v
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"))?,
        None => 0,
    };
    let settings = args.registry.settings(&args.mirrors)?;
    let (cache_from, cache_to) = cache_specs(args, &settings)?;
    let pull = settings
        .pull_options()
        .context("cannot use the registry settings")?;
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    let env = |name: &str| std::env::var(name).ok();
    let mut secrets = hoist_engine::secrets::Secrets::default();
    for spec in &args.secrets {
        secrets.add_secret(spec, &env)?;
    }
    for spec in &args.ssh {
        secrets.add_ssh(spec, &env)?;
    }
    let mut request = BuildRequest {
        context: context.dir.clone(),
        dockerfile: text,
        dockerfile_name: name,
        dockerfile_path,
        options,
        labels,
        no_cache: args.no_cache,
        source_date_epoch,
        epoch_given: epoch_text.is_some(),
        gzip: GzipOptions::default(),
        pull,
        always_pull: args.pull,
        secrets,
        cache_from,
        cache_to,
        run_network_none: args.network.as_deref() == Some("none"),
    };
    let started = std::time::Instant::now();
    let mut display = Display::new(args.progress, args.quiet);
    // Each platform named, or the one the options already say.
    let targets: Vec<Option<&Platform>> = match platforms.as_slice() {
        [] => vec![None],
        some => some.iter().map(Some).collect(),
    };
    let mut builds: Vec<hoist_engine::Built> = Vec::new();
    for (i, platform) in targets.into_iter().enumerate() {
        if let Some(platform) = platform {
            request.options.target_platform = platform.clone();
            if platforms.len() > 1 {
                display.platform(&platform.to_string(), i + 1, platforms.len());
            }
        }
        match build(&store, &request, &mut |event| display.event(event)) {
            Ok(b) => builds.push(b),
            Err(e) => return Ok(report_failure(&mut display, &request, &e)),
        }
    }
    let top = match builds.as_slice() {
        [one] => one.manifest.clone(),
        many => write_index(&store, many, &platforms)?,
    };
    let mut built = builds.pop().expect("at least one platform was built");
    for other in &builds {
        built.layers += other.layers;
        built.size += other.size;
        built.steps += other.steps;
        built.cached_steps += other.cached_steps;
        built.files_read += other.files_read;
        built.blocks_reused += other.blocks_reused;
        built
            .damaged_blobs
            .extend(other.damaged_blobs.iter().cloned());
    }
    built.manifest = top;
    if !built.unused_build_args.is_empty() {
        display.warning(&format!(
            "--build-arg {} not consumed: no ARG declares it (check the name, or declare ARG in the stage that uses it)",
            built.unused_build_args.join(", ")
        ));
    }
    for (blob, replaced) in &built.damaged_blobs {
        display.warning(&if *replaced {
            format!(
                "the store's copy of {blob} was damaged: this build compressed its blocks again instead of copying them, and replaced it with an intact copy"
            )
        } else {
            format!(
                "blob {blob} in the store is damaged (compressed blocks that no longer match their digests): this build compressed them again instead of copying them; run `hoist prune --verify` to see which images use it"
            )
        });
    }
    if hoist_run::fell_back_to_copies() {
        display.warning(&format!(
            "RUN steps ran on copies of their layers, which is slower: overlayfs cannot be mounted over the store here ({}; docs/run.md says when this happens; {}=copy chooses it without trying)",
            store.root().display(),
            hoist_run::ROOTFS_VARIABLE
        ));
    }
    for tag in &tags {
        store.tag(&tag.to_string(), &built.manifest)?;
    }
    let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let export = [ExportImage {
        manifest: built.manifest.clone(),
        names,
    }];
    if !outputs.is_empty() || args.load {
        // An export writes every byte: layers left in a registry are
        // fetched first.
        built.cache.bytes_downloaded +=
            hoist_registry::fetch_image(&store, &built.manifest.digest, &request.pull)?;
    }
    for output in &outputs {
        match output {
            // An existing layout gains the image in place (its blobs are
            // named once checked, its index.json replaced last); a new one
            // is written beside and renamed.
            Output::Oci(dir) if dir.exists() => write_oci_layout(dir, &export, &store)?,
            Output::Oci(dir) => write_beside(dir, |temp| {
                write_oci_layout(temp, &export, &store)?;
                Ok(())
            })?,
            Output::Local(dir) if dir.exists() => write_filesystem(&store, &built.manifest, dir)?,
            Output::Local(dir) => {
                write_beside(dir, |temp| write_filesystem(&store, &built.manifest, temp))?
            }
            Output::Tar(dest) => {
                let scratch = tempfile::Builder::new()
                    .prefix("hoist-output-tar-")
                    .tempdir_in(store.root())
                    .context("cannot create a scratch directory in the store")?;
                let root = scratch.path().join("rootfs");
                write_filesystem(&store, &built.manifest, &root)?;
                let entries = hoist_oci::layer::walk::walk(&root, &Default::default())
                    .context("cannot read the file system back")?;
                // Modification times as the layers have them.
                let options = hoist_oci::layer::TarOptions {
                    source_date_epoch: u64::MAX,
                };
                let write = |sink: Box<dyn Write>| -> anyhow::Result<()> {
                    let mut sink = hoist_oci::layer::tar::write_tar(&entries, options, sink)?;
                    Ok(sink.flush()?)
                };
                write_to(dest.as_deref(), write)?;
            }
            Output::Docker(dest) | Output::OciArchive(dest) => {
                let docker = matches!(output, Output::Docker(_));
                let write = |sink: Box<dyn Write>| -> anyhow::Result<()> {
                    let mut sink = if docker {
                        write_docker_archive(sink, &export, &store)?
                    } else {
                        write_oci_archive(sink, &export, &store)?
                    };
                    Ok(sink.flush()?)
                };
                write_to(dest.as_deref(), write)?;
            }
        }
    }
    if args.load {
        let tool = load_into_engine(&export, &store)?;
        if !args.quiet {
            eprintln!("loaded into {tool} ({tool} load)");
        }
    }
    let mut bytes_uploaded: u64 = built.cache.exports.iter().map(|e| e.bytes_uploaded).sum();
    if push {
        let mut options = args.registry.push_options(hoist_registry::Format::Oci)?;
        options.by_digest = args.push_by_digest;
        for tag in &tags {
            let pushed = super::push::push_one(&store, tag, tag, &options, args.quiet)?;
            bytes_uploaded += pushed.bytes_uploaded;
            if !args.quiet {
                eprintln!("{}", pushed.pinned());
            }
        }
    }
    if let Some(k8s) = &k8s {
        super::k8s::write_manifests(k8s, &store)?;
    }
    let digest = built.manifest.digest.to_string();
    if let Some(f) = &args.digest_file {
        write_beside(f, |temp| Ok(std::fs::write(temp, &digest)?))?;
    }
    if let Some(f) = &args.metadata_file {
        let metadata = build_metadata(&tags, &built, &digest, platforms.len() > 1)?;
        write_beside(f, |temp| Ok(std::fs::write(temp, &metadata)?))?;
    }
    if let Some(f) = &args.iidfile {
        // Several platforms have no one config: the index names them.
        let id = match platforms.len() {
            0 | 1 => built.config_digest.to_string(),
            _ => digest.clone(),
        };
        write_beside(f, |temp| Ok(std::fs::write(temp, &id)?))?;
    }
    display.summary(&Summary {
        image: tags
            .first()
            .map(|t| t.familiar())
            .unwrap_or_else(|| "image".into()),
        digest: digest.clone(),
        seconds: started.elapsed().as_secs_f64(),
        layers: built.layers,
        bytes: built.size,
        steps: built.steps,
        cached_steps: built.cached_steps,
        files_read: built.files_read,
        blocks_reused: built.blocks_reused,
        cache: built.cache.clone(),
        bytes_uploaded,
    });
    // With an archive on stdout, the digest goes to stderr so the pipe
    // carries only the archive.
    if to_stdout > 0 {
        eprintln!("{digest}");
    } else {
        emit(&format!("{digest}\n"))?;
    }
    Ok(0)
}

/// Runs `write` on FILE (written beside it, then renamed, synced) or, for
/// `None`, on standard output: where an archive goes.
pub fn write_to(
    dest: Option<&Path>,
    write: impl FnOnce(Box<dyn Write>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match dest {
        Some(path) => write_beside(path, |temp| {
            let file = std::fs::File::create(temp)
                .with_context(|| format!("cannot create {}", temp.display()))?;
            write(Box::new(io::BufWriter::new(file.try_clone()?)))?;
            Ok(file.sync_all()?)
        }),
        None => write(Box::new(io::BufWriter::new(io::stdout().lock()))),
    }
}

/// The file system of the image `top` into the directory `dest` (made
/// if missing): its layers extracted in order, whiteouts applied, owners
/// kept when root. An index gives one subdirectory per platform
/// (`linux_amd64`, `linux_arm_v7`), as buildx writes them.
fn write_filesystem(
    store: &Store,
    top: &hoist_oci::image::Descriptor,
    dest: &Path,
) -> anyhow::Result<()> {
    use hoist_oci::image::ManifestOrIndex;
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let bytes = store.read_blob_bytes(&top.digest, 8 << 20)?;
    match ManifestOrIndex::from_json(&bytes)? {
        ManifestOrIndex::Index(index) => {
            for entry in &index.manifests {
                let Some(platform) = &entry.platform else {
                    continue;
                };
                let name = platform.to_string().replace('/', "_");
                write_filesystem(store, entry, &dest.join(name))?;
            }
        }
        ManifestOrIndex::Manifest(manifest) => {
            for layer in &manifest.layers {
                let blob = store.open_blob(&layer.digest)?;
                hoist_oci::layer::extract(
                    io::BufReader::new(blob),
                    dest,
                    &hoist_oci::layer::ExtractOptions::default(),
                )
                .with_context(|| format!("cannot extract layer {}", layer.digest))?;
            }
        }
    }
    Ok(())
}

/// Streams `export` as a docker archive into `docker load` (when a Docker
/// daemon is there: `$DOCKER_HOST`, or /var/run/docker.sock) or else
/// `podman load`; returns the tool's name.
fn load_into_engine(export: &[ExportImage], store: &Store) -> anyhow::Result<&'static str> {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
    };
    let docker_daemon = std::env::var_os("DOCKER_HOST").is_some_and(|h| !h.is_empty())
        || Path::new("/var/run/docker.sock").exists();
    let tool = if on_path("docker") && docker_daemon {
        "docker"
    } else if on_path("podman") {
        "podman"
    } else {
        bail!(
            "--load needs docker (with a daemon) or podman, and neither is here: write an archive with -o type=docker,dest=FILE instead"
        )
    };
    let mut child = std::process::Command::new(tool)
        .arg("load")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {tool} load"))?;
    let stdin = child.stdin.take().expect("stdin was piped");
    let written = write_docker_archive(io::BufWriter::new(stdin), export, store)
        .map_err(anyhow::Error::from)
        .and_then(|mut sink| Ok(sink.flush()?));
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{tool} load failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.with_context(|| format!("cannot hand the image to {tool} load"))?;
    Ok(tool)
}

/// Where the Dockerfile of `args` is: `None` for standard input (`-f -`,
/// or a Dockerfile piped in as the context). `-f` names a file of the
/// context when the context came from a tar, a repository or an artifact
/// (as docker build reads it), a path otherwise; without `-f`, the
/// context's own Dockerfile.
pub fn dockerfile_path(
    args: &BuildArgs,
    context: &super::context_source::Context,
) -> anyhow::Result<Option<PathBuf>> {
    let unpacked = context.dir != args.context;
    Ok(match &args.file {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) if unpacked => Some(context.dir.join(p)),
        Some(p) => Some(p.clone()),
        None if context.dockerfile.is_some() => None,
        None => Some(match &context.dockerfile_path {
            Some(path) => path.clone(),
            None => default_dockerfile(&context.dir)?,
        }),
    })
}

/// The Dockerfile of a context when -f names none: `Dockerfile`, else
/// `Containerfile` (as podman and buildah look for it).
fn default_dockerfile(dir: &Path) -> anyhow::Result<PathBuf> {
    let dockerfile = dir.join("Dockerfile");
    if dockerfile.exists() {
        return Ok(dockerfile);
    }
    let containerfile = dir.join("Containerfile");
    if containerfile.exists() {
        return Ok(containerfile);
    }
    bail!(
        "no Dockerfile (or Containerfile) in the build context {}: add one, or name another with -f",
        dir.display()
    )
}

/// The JSON `--metadata-file` gets, with buildx's keys: the digest of
/// what the names point at, its descriptor, the config digest (one
/// platform only) and the names.
fn build_metadata(
    tags: &[Reference],
    built: &hoist_engine::Built,
    digest: &str,
    several_platforms: bool,
) -> anyhow::Result<String> {
    let mut value = serde_json::json!({
        "containerimage.digest": digest,
        "containerimage.descriptor": {
            "mediaType": built.manifest.media_type,
            "digest": digest,
            "size": built.manifest.size,
        },
    });
    if !several_platforms {
        value["containerimage.config.digest"] = built.config_digest.to_string().into();
    }
    if !tags.is_empty() {
        value["image.name"] = tags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
            .into();
    }
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

/// Shows why the build failed; the exit status.
fn report_failure(display: &mut Display, request: &BuildRequest, e: &BuildError) -> i32 {
    let mut chain = super::chain(e);
    // A step's error is one line: where, then what failed and why.
    if matches!(e, BuildError::Step { .. }) {
        chain = vec![chain.join(": ")];
    }
    let lines: Vec<&str> = request.dockerfile.lines().collect();
    let excerpt = match e {
        BuildError::Dockerfile { line, column, .. } => {
            hoist_dockerfile::check::excerpt(&lines, *line, Some(*column))
        }
        BuildError::Step { place, .. } => {
            hoist_dockerfile::check::excerpt(&lines, place.line, None)
        }
        _ => String::new(),
    };
    display.error(&chain[0], &excerpt, &chain[1..], e.hint().as_deref());
    // 130 for SIGINT, 143 for SIGTERM, as a shell reports them.
    match e {
        BuildError::Interrupted { signal } => 128 + signal,
        _ => 1,
    }
}

/// The OCI index of the images built for `platforms`, stored; its
/// descriptor.
fn write_index(
    store: &Store,
    builds: &[hoist_engine::Built],
    platforms: &[Platform],
) -> anyhow::Result<hoist_oci::image::Descriptor> {
    use hoist_oci::image::{Descriptor, Document, Index};
    let manifests = builds
        .iter()
        .zip(platforms)
        .map(|(built, platform)| built.manifest.clone().with_platform(platform.clone()))
        .collect();
    let encoded = Index::new(manifests).encode();
    store
        .put_blob_bytes(&encoded.bytes, Some(&encoded.digest))
        .context("cannot store the image index")?;
    Ok(Descriptor::new(
        hoist_oci::media_type::OCI_INDEX,
        encoded.digest,
        encoded.size,
    ))
}

/// The shared caches of this build: the flags, else `$HOIST_CACHE_FROM`
/// and `$HOIST_CACHE_TO` (specs separated by spaces), else the config
/// file's `cache-from`/`cache-to` and `cache` (both ways), each
/// direction on its own.
fn cache_specs(
    args: &BuildArgs,
    settings: &hoist_registry::Settings,
) -> anyhow::Result<(Vec<CacheSpec>, Vec<CacheSpec>)> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
    };
    let file = settings.file.as_ref().map(|f| f.display().to_string());
    let pick = |flags: &[String], variable: &str, one_way: &[String], direction| {
        let (specs, origin): (Vec<String>, String) = if !flags.is_empty() {
            (flags.to_vec(), String::new())
        } else if let Some(specs) = env(variable) {
            (specs, format!(" (from ${variable})"))
        } else {
            let specs = one_way.iter().chain(&settings.cache).cloned().collect();
            let origin = file
                .as_ref()
                .map(|f| format!(" (from {f})"))
                .unwrap_or_default();
            (specs, origin)
        };
        specs
            .iter()
            .map(|spec| {
                // `cache = SPEC` in the file goes both ways: its export
                // attributes mean nothing to an import.
                let parsed = CacheSpec::parse(spec, direction).or_else(|e| {
                    if settings.cache.contains(spec) {
                        CacheSpec::parse(spec, Direction::To)
                    } else {
                        Err(e)
                    }
                });
                parsed.map_err(|e| anyhow::anyhow!("{e}{origin}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    Ok((
        pick(
            &args.cache_from,
            "HOIST_CACHE_FROM",
            &settings.cache_from,
            Direction::From,
        )?,
        pick(
            &args.cache_to,
            "HOIST_CACHE_TO",
            &settings.cache_to,
            Direction::To,
        )?,
    ))
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Makes `dest` (a file or a directory) by `write` into a new name beside
/// it, then renames that into place: a failed or interrupted write leaves
/// nothing under `dest`, and a reader never sees half of it.
pub fn write_beside(
    dest: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if is_mounted_or_special(dest) {
        return write(dest).with_context(|| format!("cannot write {}", dest.display()));
    }
    let name = dest
        .file_name()
        .with_context(|| format!("{} names no file", dest.display()))?;
    let temp = dest.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let remove = |path: &Path| {
        let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
    };
    remove(&temp);
    let written = write(&temp).and_then(|()| {
        std::fs::rename(&temp, dest)
            .with_context(|| format!("cannot move the output into place at {}", dest.display()))
    });
    if written.is_err() {
        remove(&temp);
    }
    written.with_context(|| format!("nothing was written to {}", dest.display()))
}

/// Whether `dest` is something a rename cannot replace, written in place
/// instead: a device (`/dev/stdout`), or a file mounted over its
/// directory's file system (Kubernetes' `/dev/termination-log`).
fn is_mounted_or_special(dest: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dest) else {
        return false;
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    !meta.is_file() || std::fs::metadata(parent).is_ok_and(|dir| dir.dev() != meta.dev())
}
