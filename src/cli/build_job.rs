//! `hoist build --job`: the build is not made here. The context (after
//! `.dockerignore`) goes to a registry as an artifact, and a Kubernetes
//! Job that runs the same build from it, and pushes the image, is written
//! out (docs/ci.md).

use super::build::{BuildArgs, human_bytes, write_beside};
use super::context_artifact::{self, Dockerfile, SCHEME};
use anyhow::{Context as _, bail};
use hoist_dockerfile::plan::resolve_build_arg;
use hoist_k8s::job::{BuildJob, TERMINATION_LOG, build_job};
use hoist_registry::Reference;
use std::path::Path;

/// The environment variable naming hoist's image when `--job-image` does not.
pub const IMAGE_VARIABLE: &str = "HOIST_JOB_IMAGE";

/// Uploads the context and writes the Job for `args`, whose `-t` names are
/// `tags`.
/// `out` is where the Job goes: a file, or `-` for stdout.
pub fn run(args: &BuildArgs, tags: &[Reference], out: &Path) -> anyhow::Result<i32> {
    refuse_local_flags(args)?;
    let first = tags
        .first()
        .context("--job needs a -t NAME: the Job pushes the image there")?;
    let image = match &args.job_image {
        Some(image) => image.clone(),
        None => std::env::var(IMAGE_VARIABLE).ok().filter(|v| !v.is_empty()).with_context(|| {
            format!(
                "--job needs hoist's image for the Job: --job-image REGISTRY/hoist:TAG or ${IMAGE_VARIABLE} \
                 (scripts/build-image.sh -t REGISTRY/hoist:TAG --push builds and pushes it)"
            )
        })?,
    };
    let repository = match &args.job_context {
        Some(repo) => Reference::parse(repo).with_context(|| format!("--job-context {repo}"))?,
        None => first.clone(),
    };
    let context = super::context_source::resolve(&args.context)?;
    let dockerfile_path = super::build::dockerfile_path(args, &context)?;
    let bytes = match (&context.dockerfile, &dockerfile_path) {
        (Some(bytes), _) => bytes.clone(),
        (None, Some(path)) => std::fs::read(path).with_context(|| {
            format!(
                "cannot read {}: check the path given with -f or the context",
                path.display()
            )
        })?,
        (None, None) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("cannot read the Dockerfile from standard input")?;
            bytes
        }
    };
    let options = args.registry.client_options()?;
    let dockerfile = Dockerfile {
        path: dockerfile_path.as_deref(),
        bytes: &bytes,
    };
    let uploaded = context_artifact::upload(&context.dir, &dockerfile, &repository, &options)?;
    let pushed = &uploaded.pushed;
    let pinned = pushed.reference.to_string();
    if !args.quiet {
        eprintln!(
            "context: {} entries, {} in files; sent {} blobs ({}), {} already in {}",
            uploaded.entries,
            human_bytes(uploaded.file_bytes),
            pushed.uploaded,
            human_bytes(pushed.bytes_uploaded),
            pushed.present,
            repository.repository(),
        );
        eprintln!("context: {SCHEME}{pinned}");
    }
    let job_args = job_arguments(args, tags, &pinned);
    let mut env = Vec::new();
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|v| !v.is_empty())
    {
        env.push(("SOURCE_DATE_EPOCH".to_owned(), epoch));
    }
    let mut identity = vec![image.clone()];
    identity.extend(job_args.iter().cloned());
    identity.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    let name = format!(
        "hoist-build-{}",
        &hoist_oci::Digest::of(identity.join("\0").as_bytes()).hex()[..12]
    );
    let job = BuildJob {
        name: name.clone(),
        image,
        args: job_args,
        env,
        secret: args.job_secret.clone(),
        cpu: args.job_cpu.clone(),
        memory: args.job_memory.clone(),
    };
    let yaml = build_job(&job)?;
    if out.as_os_str() == "-" {
        super::emit(&yaml)?;
    } else {
        write_beside(out, |temp| Ok(std::fs::write(temp, &yaml)?))?;
        if !args.quiet {
            eprintln!(
                "wrote Job {name} to {}: kubectl apply -f {0}; kubectl logs -f job/{name} shows the build, and the pod's termination message is the image digest",
                out.display()
            );
        }
    }
    Ok(0)
}

/// The flags that act on this machine only, which a Job cannot carry.
fn refuse_local_flags(args: &BuildArgs) -> anyhow::Result<()> {
    let local = [
        ("--output", !args.output.is_empty()),
        ("--load", args.load),
        ("--check", args.check),
        ("--metadata-file", args.metadata_file.is_some()),
        ("--k8s-out", args.k8s_out.is_some()),
        ("--digest-file", args.digest_file.is_some()),
        ("--iidfile", args.iidfile.is_some()),
        ("--ca-cert", !args.registry.ca_certs.is_empty()),
        ("--secret", !args.secrets.is_empty()),
        ("--ssh", !args.ssh.is_empty()),
    ];
    if let Some((flag, _)) = local.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} acts on this machine and cannot go into the Job; build here without --job, \
             or give the Job what it needs by other means (docs/ci.md)"
        );
    }
    Ok(())
}

/// `hoist build` arguments that make the same build from the context
/// artifact `pinned`, push it, and leave its digest as the termination
/// message.
fn job_arguments(args: &BuildArgs, tags: &[Reference], pinned: &str) -> Vec<String> {
    let mut out: Vec<String> = [
        "build",
        "--progress=plain",
        "--push",
        &format!("--digest-file={TERMINATION_LOG}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut flag = |name: &str, value: &str| out.push(format!("--{name}={value}"));
    for tag in tags {
        flag("tag", &tag.to_string());
    }
    for spec in &args.build_args {
        // `K` alone takes its value from this machine's environment, which
        // the Job does not have.
        if let Some((k, v)) = resolve_build_arg(spec, |k| std::env::var(k).ok()) {
            flag("build-arg", &format!("{k}={v}"));
        }
    }
    if let Some(target) = &args.target {
        flag("target", target);
    }
    if let Some(platform) = &args.platform {
        flag("platform", platform);
    }
    for label in &args.labels {
        flag("label", label);
    }
    for spec in &args.cache_from {
        flag("cache-from", spec);
    }
    for spec in &args.cache_to {
        flag("cache-to", spec);
    }
    for mirror in &args.mirrors.registry_mirrors {
        flag("registry-mirror", mirror);
    }
    for host in &args.registry.insecure_registries {
        flag("insecure-registry", host);
    }
    if let Some(isolation) = args.isolation {
        flag("isolation", &isolation.to_string());
    }
    if let Some(network) = &args.network {
        flag("network", network);
    }
    if args.no_cache {
        out.push("--no-cache".to_owned());
    }
    if args.pull {
        out.push("--pull".to_owned());
    }
    out.push(format!("{SCHEME}{pinned}"));
    out
}

/// Whether `context` names a context artifact: the part after the scheme.
pub fn artifact_reference(context: &Path) -> Option<&str> {
    context.to_str()?.strip_prefix(SCHEME)
}
