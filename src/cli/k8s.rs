//! `hoist k8s`: Kubernetes manifests for an image hoist built, pinned by
//! the digest its registry holds.

use super::emit;
use anyhow::{Context, bail};
use clap::Args;
use hoist_k8s::options::{
    DataOptions, HpaOptions, IngressOptions, PdbOptions, PortMap, ProbeSpec, PullSecret,
    is_data_key, key_value, parse_env_file, resources,
};
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
    /// Talk plain HTTP to this registry host (loopback hosts always are).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// The platform to read from a multi-platform image.
    #[arg(long)]
    pub platform: Option<String>,

    #[command(flatten)]
    pub names: NameArgs,
    #[command(flatten)]
    pub pod: PodArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub scaling: ScalingArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Names and labels")]
pub struct NameArgs {
    /// The app: Deployment name and `app` label (default: the
    /// repository's last path component).
    #[arg(long)]
    pub name: Option<String>,
    /// The container's name (default: the app's).
    #[arg(long)]
    pub container_name: Option<String>,
    /// The Service's name (default: the app's).
    #[arg(long)]
    pub service_name: Option<String>,
    /// The Ingress's name (default: the app's).
    #[arg(long)]
    pub ingress_name: Option<String>,
    /// The ConfigMap's name (default: APP-config).
    #[arg(long)]
    pub configmap_name: Option<String>,
    /// The Secret's name (default: APP-secret).
    #[arg(long)]
    pub secret_name: Option<String>,
    /// The pod volume holding the ConfigMap (default: config).
    #[arg(long)]
    pub config_volume_name: Option<String>,
    /// The pod volume holding the Secret (default: secret).
    #[arg(long)]
    pub secret_volume_name: Option<String>,
    /// Add a label to every object and to the pods (K=V, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Pods")]
pub struct PodArgs {
    /// Number of pods.
    #[arg(long)]
    pub replicas: Option<i32>,
    /// Resource requests: `cpu=0.2,memory=256Mi`.
    #[arg(long, value_name = "R=Q,...")]
    pub requests: Option<String>,
    /// Resource limits: `cpu=0.5,memory=512Mi`.
    #[arg(long, value_name = "R=Q,...")]
    pub limits: Option<String>,
    /// Set an environment variable (repeatable, in order).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Take every key of an existing ConfigMap as variables (repeatable).
    #[arg(long = "env-from-configmap", value_name = "NAME")]
    pub env_from_configmaps: Vec<String>,
    /// Take every key of an existing Secret as variables (repeatable).
    #[arg(long = "env-from-secret", value_name = "NAME")]
    pub env_from_secrets: Vec<String>,
    /// Liveness probe: `http=/health[,port=P]`, `tcp[=P]` or
    /// `exec=COMMAND`, then `,initial-delay=S,period=S,timeout=S,
    /// failure-threshold=N,success-threshold=N`. Default: HEALTHCHECK.
    #[arg(long, value_name = "SPEC")]
    pub liveness: Option<String>,
    /// Readiness probe (as --liveness). Default: HEALTHCHECK.
    #[arg(long, value_name = "SPEC")]
    pub readiness: Option<String>,
    /// Startup probe (as --liveness).
    #[arg(long, value_name = "SPEC")]
    pub startup: Option<String>,
    /// Do not turn the image's HEALTHCHECK into probes.
    #[arg(long)]
    pub no_healthcheck_probes: bool,
    /// Update strategy: RollingUpdate or Recreate.
    #[arg(long)]
    pub strategy: Option<String>,
    /// RollingUpdate: pods above the desired count during an update (2, 25%).
    #[arg(long)]
    pub max_surge: Option<String>,
    /// RollingUpdate: pods that may be unavailable during an update (0, 25%).
    #[arg(long)]
    pub max_unavailable: Option<String>,
    /// imagePullPolicy: Always, IfNotPresent, or Never (an image loaded
    /// into the node, as with `minikube image load`: referenced by tag).
    #[arg(long, value_name = "POLICY")]
    pub pull_policy: Option<String>,
    /// Pull with this existing docker-registry Secret (repeatable).
    #[arg(long = "image-pull-secret", value_name = "NAME")]
    pub image_pull_secrets: Vec<String>,
    /// Write a docker-registry Secret NAME holding your credentials for
    /// the image's registry (as `hoist push` finds them) to FILE (mode
    /// 0600) or `-` (stdout, with the other objects), and pull with it.
    #[arg(long = "pull-secret", value_names = ["NAME", "FILE"], num_args = 2)]
    pub pull_secret: Option<Vec<String>>,
    /// Mount the root file system read-only.
    #[arg(long)]
    pub read_only_root_filesystem: bool,
    /// Leave out hoist's hardening (allowPrivilegeEscalation false,
    /// capabilities dropped, RuntimeDefault seccomp).
    #[arg(long)]
    pub no_hardening: bool,
    /// Reference the image as REPO:TAG@sha256:... (default REPO@sha256:...).
    #[arg(long)]
    pub keep_tag: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Service and Ingress")]
pub struct ServiceArgs {
    /// Service port to container port: `80:3000`, `53/udp`, `443:https`
    /// (repeatable; default: every EXPOSE port to itself).
    #[arg(long = "service-port", value_name = "PORT[:TARGET]")]
    pub service_ports: Vec<String>,
    /// Service type: ClusterIP (default), NodePort, LoadBalancer.
    #[arg(long)]
    pub service_type: Option<String>,
    /// Write no Service.
    #[arg(long)]
    pub no_service: bool,
    /// Write an Ingress for this host.
    #[arg(long)]
    pub ingress_host: Option<String>,
    /// The Ingress path (default `/`; implies an Ingress).
    #[arg(long)]
    pub ingress_path: Option<String>,
    /// Prefix (default), Exact or ImplementationSpecific.
    #[arg(long)]
    pub ingress_path_type: Option<String>,
    /// ingressClassName (implies an Ingress).
    #[arg(long)]
    pub ingress_class: Option<String>,
    /// An Ingress annotation (K=V, repeatable; implies an Ingress).
    #[arg(long = "ingress-annotation", value_name = "K=V")]
    pub ingress_annotations: Vec<String>,
    /// Serve TLS for the host with the certificate in this Secret.
    #[arg(long, value_name = "SECRET")]
    pub ingress_tls: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "ConfigMap and Secret")]
pub struct DataArgs {
    /// A ConfigMap key from a file: `[KEY=]FILE` (key: the file name).
    #[arg(long = "config-file", value_name = "[KEY=]FILE")]
    pub config_files: Vec<String>,
    /// A ConfigMap key: K=V (repeatable).
    #[arg(long = "config-literal", value_name = "K=V")]
    pub config_literals: Vec<String>,
    /// Mount the ConfigMap's keys as files in DIR (else: envFrom).
    #[arg(long, value_name = "DIR")]
    pub config_mount: Option<String>,
    /// Secret keys from an env file, one per variable, as `kubectl create
    /// secret generic --from-env-file` does.
    #[arg(long = "secret-env-file", value_name = "FILE")]
    pub secret_env_files: Vec<PathBuf>,
    /// A Secret key: K=V (repeatable).
    #[arg(long = "secret-literal", value_name = "K=V")]
    pub secret_literals: Vec<String>,
    /// Mount the Secret's keys as files in DIR (else: envFrom).
    #[arg(long, value_name = "DIR")]
    pub secret_mount: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Availability and scaling")]
pub struct ScalingArgs {
    /// PodDisruptionBudget: pods that must stay up (2, 50%).
    #[arg(long, conflicts_with = "pdb_max_unavailable")]
    pub pdb_min_available: Option<String>,
    /// PodDisruptionBudget: pods that may be down (1, 25%).
    #[arg(long)]
    pub pdb_max_unavailable: Option<String>,
    /// HorizontalPodAutoscaler (autoscaling/v2): most pods; needed for an HPA.
    #[arg(long)]
    pub hpa_max: Option<i32>,
    /// HorizontalPodAutoscaler: fewest pods.
    #[arg(long, requires = "hpa_max")]
    pub hpa_min: Option<i32>,
    /// HorizontalPodAutoscaler: target CPU use, percent of the request.
    #[arg(long, requires = "hpa_max", value_name = "PERCENT")]
    pub hpa_cpu: Option<i32>,
    /// HorizontalPodAutoscaler: target memory use, percent of the request.
    #[arg(long, requires = "hpa_max", value_name = "PERCENT")]
    pub hpa_memory: Option<i32>,
}

/// Turns the flags into the library's options (reading the files they
/// name); `facts` gives the registry for a pull Secret.
fn options(args: &K8sArgs, facts: &ImageFacts) -> anyhow::Result<Options> {
    let n = &args.names;
    let p = &args.pod;
    let s = &args.service;
    let d = &args.data;
    let mut o = Options {
        name: n.name.clone(),
        container_name: n.container_name.clone(),
        service_name: n.service_name.clone(),
        ingress_name: n.ingress_name.clone(),
        configmap_name: n.configmap_name.clone(),
        secret_name: n.secret_name.clone(),
        config_volume_name: n.config_volume_name.clone(),
        secret_volume_name: n.secret_volume_name.clone(),
        replicas: p.replicas,
        env_from_configmaps: p.env_from_configmaps.clone(),
        env_from_secrets: p.env_from_secrets.clone(),
        no_healthcheck_probes: p.no_healthcheck_probes,
        strategy: p.strategy.clone(),
        max_surge: p.max_surge.clone(),
        max_unavailable: p.max_unavailable.clone(),
        pull_policy: p.pull_policy.clone(),
        image_pull_secrets: p.image_pull_secrets.clone(),
        read_only_root_filesystem: p.read_only_root_filesystem,
        no_hardening: p.no_hardening,
        keep_tag: p.keep_tag,
        ..Default::default()
    };
    for l in &n.labels {
        let (k, v) = key_value("--label", l)?;
        o.labels.insert(k, v);
    }
    if let Some(r) = &p.requests {
        o.requests = resources("--requests", r)?;
    }
    if let Some(r) = &p.limits {
        o.limits = resources("--limits", r)?;
    }
    for e in &p.env {
        o.env.push(key_value("--env", e)?);
    }
    o.liveness = p
        .liveness
        .as_deref()
        .map(|t| ProbeSpec::parse("--liveness", t))
        .transpose()?;
    o.readiness = p
        .readiness
        .as_deref()
        .map(|t| ProbeSpec::parse("--readiness", t))
        .transpose()?;
    o.startup = p
        .startup
        .as_deref()
        .map(|t| ProbeSpec::parse("--startup", t))
        .transpose()?;
    o.service.disabled = s.no_service;
    o.service.kind = s.service_type.clone();
    for port in &s.service_ports {
        o.service.ports.push(PortMap::parse(port)?);
    }
    if s.ingress_host.is_some()
        || s.ingress_path.is_some()
        || s.ingress_class.is_some()
        || !s.ingress_annotations.is_empty()
        || s.ingress_tls.is_some()
    {
        let mut ingress = IngressOptions {
            host: s.ingress_host.clone(),
            path: s.ingress_path.clone(),
            path_type: s.ingress_path_type.clone(),
            class: s.ingress_class.clone(),
            tls_secret: s.ingress_tls.clone(),
            ..Default::default()
        };
        for a in &s.ingress_annotations {
            let (k, v) = key_value("--ingress-annotation", a)?;
            ingress.annotations.insert(k, v);
        }
        o.ingress = Some(ingress);
    }
    o.config = DataOptions {
        entries: Vec::new(),
        mount: d.config_mount.clone(),
    };
    for f in &d.config_files {
        let (key, path) = match f.split_once('=') {
            Some((k, p)) => (k.to_owned(), PathBuf::from(p)),
            None => {
                let path = PathBuf::from(f);
                let key = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (key, path)
            }
        };
        check_key("--config-file", &key)?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("--config-file: cannot read {}", path.display()))?;
        o.config.entries.push((key, bytes));
    }
    for l in &d.config_literals {
        let (k, v) = key_value("--config-literal", l)?;
        check_key("--config-literal", &k)?;
        o.config.entries.push((k, v.into_bytes()));
    }
    o.secret = DataOptions {
        entries: Vec::new(),
        mount: d.secret_mount.clone(),
    };
    for path in &d.secret_env_files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--secret-env-file: cannot read {}", path.display()))?;
        for (k, v) in parse_env_file(path, &text)? {
            o.secret.entries.push((k, v.into_bytes()));
        }
    }
    for l in &d.secret_literals {
        // The value is a secret: the error names the key only.
        let (k, v) = l.split_once('=').with_context(|| {
            "--secret-literal: expected KEY=VALUE (the argument is not shown: it may be a secret)"
        })?;
        check_key("--secret-literal", k)?;
        o.secret.entries.push((k.to_owned(), v.as_bytes().to_vec()));
    }
    let sc = &args.scaling;
    o.pdb = match (&sc.pdb_min_available, &sc.pdb_max_unavailable) {
        (Some(v), _) => Some(PdbOptions::MinAvailable(v.clone())),
        (None, Some(v)) => Some(PdbOptions::MaxUnavailable(v.clone())),
        (None, None) => None,
    };
    o.hpa = sc.hpa_max.map(|max| HpaOptions {
        min: sc.hpa_min,
        max,
        cpu_percent: sc.hpa_cpu,
        memory_percent: sc.hpa_memory,
    });
    if let Some(spec) = &p.pull_secret {
        let name = spec[0].clone();
        // Docker's config (auths, credential helpers) and podman's
        // auth.json, as a push reads them.
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
        // The key `docker login` writes (Docker Hub's URL for Docker Hub).
        let registry = server_key(host);
        o.pull_secret = Some(PullSecret {
            name,
            registry,
            username: credentials.username,
            password: credentials.password,
        });
    }
    Ok(o)
}

fn check_key(flag: &str, key: &str) -> anyhow::Result<()> {
    if !is_data_key(key) {
        bail!(
            "{flag}: `{key}` is not a valid key (letters, digits, `-`, `_`, `.`); name it with KEY=..."
        );
    }
    Ok(())
}

/// Registry settings shared with `hoist build --k8s-out`.
pub struct RegistryCheck<'a> {
    pub allow_unpushed: bool,
    pub insecure: &'a [String],
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
    let options = ClientOptions {
        insecure: check.insecure.to_vec(),
        ..Default::default()
    };
    match check_registry(facts, &options) {
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
    let facts = inspect(store, &reference, &platform)?;
    let options = options(args, &facts)?;
    if options.pull_policy.as_deref() != Some("Never") {
        check_pushed(
            &facts,
            &RegistryCheck {
                allow_unpushed: args.allow_unpushed,
                insecure: &args.insecure_registries,
                pull_secret: options.pull_secret.is_some()
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
    let pull_secret = args.pod.pull_secret.as_ref().map(|s| s[1].as_str());
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
