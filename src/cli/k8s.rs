//! `hoist k8s`: Kubernetes manifests for an image hoist built, pinned by
//! the digest its registry holds.

use super::emit;
use anyhow::{Context, bail};
use clap::Args;
use hoist_k8s::options::PullSecret;
use hoist_k8s::{Generated, ImageFacts, Options, Registration, check_registry, generate, inspect};
use hoist_oci::Platform;
use hoist_registry::CredentialStore;
use hoist_registry::credentials::server_key;
use hoist_registry::{ClientOptions, Reference};
use hoist_store::Store;
use std::path::{Path, PathBuf};

/// Write the Kubernetes manifests that deploy an image hoist built.
///
/// The image is pinned by the manifest digest its registry holds, so every
/// `kubectl apply` rolls out exactly what was built. With no flags: a
/// Deployment and a Service, derived from the image (EXPOSE, HEALTHCHECK,
/// USER, VOLUME). See docs/k8s.md for every flag and how fields map.
///
/// Examples:
///   hoist k8s user/my-k8s-app:v1 --name web-app --replicas 3 --service-port 80:3000
///   hoist k8s user/configurable-app:v1 --config-file config.json=cfg.json \
///       --config-mount /app/config --secret-env-file app-secrets.env -o k8s/
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct K8sArgs {
    /// The image, as tagged in the store (`hoist build -t IMAGE`).
    pub image: String,
    /// Write one file per object into DIR (`KIND-NAME.yaml`) instead of
    /// one stream on stdout.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Write manifests even when the registry does not have the image's
    /// digest (a warning instead of an error).
    #[arg(long)]
    pub allow_unpushed: bool,
    /// `--insecure-registry`, `--ca-cert` and `--config`, as the commands
    /// that pull take them.
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
    /// The platform to read from a multi-platform image.
    #[arg(long)]
    pub platform: Option<String>,

    // Everything the manifests hold: each flag is defined once, on the
    // option it sets (hoist_k8s::Options).
    #[command(flatten)]
    pub options: Options,
}

/// The options `args` gives, with the credentials of `--pull-secret`
/// found as a push finds them; `facts` names the image's registry.
fn options(args: &K8sArgs, facts: &ImageFacts) -> anyhow::Result<Options> {
    let mut options = args.options.clone();
    let Some(spec) = &args.options.pull_secret else {
        return Ok(options);
    };
    // Docker's config (auths, credential helpers) and podman's auth.json,
    // as a push reads them.
    let host = &facts.reference.domain;
    let (credentials, _) = CredentialStore::from_env().get(host)?.with_context(|| {
        format!(
            "--pull-secret: no credentials for {host} in Docker's config, its credential \
             helpers or podman's auth.json: `hoist login {host}` first"
        )
    })?;
    if credentials.password.expose().is_empty() {
        bail!(
            "--pull-secret: the credentials for {host} hold only an identity token, which \
             a cluster cannot pull with: log in with a user name and password (or access \
             token)"
        );
    }
    options.pull_credentials = Some(PullSecret {
        name: spec[0].clone(),
        // The key `docker login` writes (Docker Hub's URL for Docker Hub).
        registry: server_key(host),
        username: credentials.username,
        password: credentials.password,
    });
    Ok(options)
}

/// Registry settings shared with `hoist build --k8s-out`.
pub struct RegistryCheck {
    pub allow_unpushed: bool,
    /// How to talk to the registry (the config file's settings and the
    /// flags).
    pub client: ClientOptions,
    /// Whether a pull Secret or imagePullSecrets was asked for.
    pub pull_secret: bool,
}

/// Checks that the registry has the image's digest; warns (stderr) when
/// the cluster is unlikely to pull it.
pub fn check_pushed(facts: &ImageFacts, check: &RegistryCheck) -> anyhow::Result<()> {
    let registry = facts.reference.domain.clone();
    let host = registry
        .rsplit_once(':')
        .map_or(registry.as_str(), |(h, _)| h);
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        eprintln!(
            "warning: {} is on a loopback registry ({registry}): a cluster's nodes resolve it to \
             themselves and will not find the image; push to a registry the cluster reaches",
            facts.reference.familiar()
        );
    }
    match check_registry(facts, &check.client) {
        Ok(Registration::Present { anonymous }) => {
            if !anonymous && !check.pull_secret {
                eprintln!(
                    "warning: registry {registry} serves {} only with credentials: the cluster \
                     needs a pull Secret (--pull-secret NAME FILE, or --image-pull-secret NAME)",
                    facts.reference.familiar()
                );
            }
            Ok(())
        }
        Ok(Registration::Missing) => {
            let err = hoist_k8s::K8sError::NotPushed {
                reference: facts.reference.familiar(),
                digest: facts.digest.to_string(),
                registry,
            };
            if check.allow_unpushed {
                eprintln!("warning: {err}");
                Ok(())
            } else {
                Err(err.into())
            }
        }
        Err(source) => {
            let err = hoist_k8s::K8sError::Registry {
                reference: facts.reference.familiar(),
                digest: facts.digest.to_string(),
                source: Box::new(source),
            };
            if check.allow_unpushed {
                eprintln!("warning: {err}");
                Ok(())
            } else {
                Err(err.into())
            }
        }
    }
}

/// Writes the objects to stdout or, one file each, into `dir`; the pull
/// Secret to its own place.
pub fn write(
    generated: &Generated,
    dir: Option<&Path>,
    pull_secret: Option<&str>,
) -> anyhow::Result<()> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for object in &generated.objects {
                let path = dir.join(object.file_name());
                let text = hoist_k8s::yaml::document(&object.value)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        None => emit(&generated.to_yaml()?)?,
    }
    if let (Some(secret), Some(dest)) = (&generated.pull_secret, pull_secret) {
        let text = hoist_k8s::yaml::document(&secret.value)?;
        if dest == "-" {
            emit(&format!("---\n{text}"))?;
        } else {
            write_private(Path::new(dest), &text)?;
        }
    }
    Ok(())
}

/// Writes a file only its owner can read, mode 0600 from its creation on.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it before writing.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads IMAGE, checks its registry, and generates; shared with `hoist
/// build --k8s-out`.
pub fn manifests(args: &K8sArgs, store: &Store) -> anyhow::Result<Generated> {
    let reference =
        Reference::parse(&args.image).with_context(|| format!("image {}", args.image))?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::host(),
    };
    let pull = args
        .registry
        .pull_options(&super::registry::MirrorArgs::default())?;
    let facts = inspect(store, &reference, &platform, &pull)?;
    let options = options(args, &facts)?;
    if options.pull_policy.as_deref() != Some("Never") {
        check_pushed(
            &facts,
            &RegistryCheck {
                allow_unpushed: args.allow_unpushed,
                client: args.registry.client_options()?,
                pull_secret: options.pull_credentials.is_some()
                    || !options.image_pull_secrets.is_empty(),
            },
        )?;
    }
    let generated = generate(&facts, &options)?;
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    Ok(generated)
}

pub fn run(args: &K8sArgs, store_dir: &Path) -> anyhow::Result<i32> {
    let store = Store::open(store_dir)
        .with_context(|| format!("cannot open the store at {}", store_dir.display()))?;
    write_manifests(args, &store)?;
    Ok(0)
}

/// Generates and writes the manifests `args` asks for, then prints the
/// `kubectl set image` line for a running Deployment.
pub fn write_manifests(args: &K8sArgs, store: &Store) -> anyhow::Result<()> {
    let generated = manifests(args, store)?;
    let pull_secret = args.options.pull_secret.as_ref().map(|s| s[1].as_str());
    write(&generated, args.output_dir.as_deref(), pull_secret)?;
    if let Some(dir) = &args.output_dir {
        eprintln!(
            "wrote {} manifests to {}",
            generated.objects.len(),
            dir.display()
        );
    }
    eprintln!(
        "update a running deployment: kubectl set image deployment/{} {}={}",
        generated.deployment, generated.container, generated.image
    );
    Ok(())
}

/// `hoist k8s` flags given to `hoist build --k8s-out DIR ... -- FLAGS`.
#[derive(Debug, clap::Parser)]
#[command(name = "hoist build --k8s-out DIR CONTEXT --", no_binary_name = true)]
struct BuildK8sFlags {
    #[command(flatten)]
    args: K8sArgs,
}

/// Parses the flags after `--` of `hoist build --k8s-out DIR` for the
/// image `image`, writing into `dir`; done before the build so a typo
/// fails at once.
pub fn build_args(image: &str, dir: &Path, flags: &[String]) -> anyhow::Result<K8sArgs> {
    if flags
        .iter()
        .any(|f| f == "-o" || f.starts_with("--output-dir"))
    {
        bail!("--k8s-out DIR already says where manifests go: drop -o/--output-dir after --");
    }
    let argv = std::iter::once(image.to_owned())
        .chain(["--output-dir".to_owned(), dir.display().to_string()])
        .chain(flags.iter().cloned());
    match <BuildK8sFlags as clap::Parser>::try_parse_from(argv) {
        Ok(parsed) => Ok(parsed.args),
        Err(e) => bail!(
            "in the `hoist k8s` flags after --: {}",
            e.render().to_string().trim_start_matches("error: ")
        ),
    }
}
