//! Typed Kubernetes objects from an image's facts and the user's options.
//!
//! The Deployment runs exactly the image given, pinned by its manifest
//! digest; everything else (Service, Ingress, ConfigMap, Secret, PDB,
//! HPA, pull Secret) exists only when the image or a flag calls for it.
//! What hoist adds beyond what was asked is listed in docs/k8s.md
//! ("hoist's additions"); keep that list in step with this file.

use super::image::{ImageFacts, UserId};
use super::options::{DataOptions, Options, ProbeAction, ProbeSpec, is_env_name};
use super::{K8sError, yaml};
use hoist_oci::image::Healthcheck;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction, HTTPGetAction, LocalObjectReference,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource,
    SecretVolumeSource, SecurityContext, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Docker's HEALTHCHECK defaults (Docker's `container/health.go`), used
/// when the image leaves a value at zero.
const DOCKER_INTERVAL_SECONDS: i32 = 30;
const DOCKER_TIMEOUT_SECONDS: i32 = 30;
const DOCKER_RETRIES: i32 = 3;

/// One object, ready to write.
#[derive(Debug, Clone)]
pub struct Object {
    /// `Deployment`, `Service`...
    pub kind: &'static str,
    pub name: String,
    pub value: serde_json::Value,
}

impl Object {
    fn new<T: serde::Serialize>(kind: &'static str, name: &str, object: &T) -> Object {
        Object {
            kind,
            name: name.to_owned(),
            // k8s-openapi's types serialise to JSON without failing; the
            // JSON value sorts keys, which keeps the YAML stable.
            value: serde_json::to_value(object).expect("k8s-openapi objects serialise"),
        }
    }

    /// `KIND-NAME.yaml`, lower case: the file `-o DIR` writes.
    pub fn file_name(&self) -> String {
        format!("{}-{}.yaml", self.kind.to_ascii_lowercase(), self.name)
    }
}

/// What [`generate`] made.
#[derive(Debug, Clone)]
pub struct Generated {
    /// In the order to apply them: what pods consume first.
    pub objects: Vec<Object>,
    /// The pull Secret, kept apart: it holds credentials and is written
    /// only where the user asked.
    pub pull_secret: Option<Object>,
    /// The image as the Deployment references it.
    pub image: String,
    pub deployment: String,
    pub container: String,
    /// Things the user should know (stderr).
    pub warnings: Vec<String>,
}

impl Generated {
    /// Every object as one multi-document YAML stream.
    pub fn to_yaml(&self) -> Result<String, K8sError> {
        yaml::documents(self.objects.iter().map(|o| &o.value))
    }
}

/// The image reference the Deployment uses: `REPO@sha256:...` (or
/// `REPO:TAG@sha256:...` with `keep_tag`), or `REPO:TAG` for pull policy
/// `Never`, where the image is loaded into the node by name and has no
/// registry digest. Docker Hub names are written short, as `docker`
/// prints them (`user/app`), which Kubernetes expands the same way.
pub fn image_reference(facts: &ImageFacts, options: &Options) -> String {
    let mut bare = facts.reference.clone();
    bare.digest = None;
    let tag = bare.tag.take();
    let repo = bare.familiar();
    if options.pull_policy.as_deref() == Some("Never") {
        return format!("{repo}:{}", tag.as_deref().unwrap_or("latest"));
    }
    match (options.keep_tag, tag) {
        (true, Some(tag)) => format!("{repo}:{tag}@{}", facts.digest),
        _ => format!("{repo}@{}", facts.digest),
    }
}

/// The manifests for `facts` as `options` describe them.
pub fn generate(facts: &ImageFacts, options: &Options) -> Result<Generated, K8sError> {
    let mut warnings = Vec::new();
    let default_name = facts
        .reference
        .path
        .rsplit('/')
        .next()
        .unwrap_or("app")
        .to_owned();
    let names = Names::new(options, default_name)?;
    let config = options.config()?;
    let secret = options.secret()?;
    let meta = |object_name: &str| names.meta(object_name);

    let image = image_reference(facts, options);
    let mut container = Container {
        name: names.container.clone(),
        image: Some(image.clone()),
        image_pull_policy: options.pull_policy.clone(),
        ..Default::default()
    };
    if let Some(policy) = &options.pull_policy
        && !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never")
    {
        return Err(K8sError::option(
            &format!("--pull-policy {policy}"),
            "expected Always, IfNotPresent or Never",
        ));
    }

    // Ports: EXPOSE, plus targets the Service names by number.
    let mut container_ports: Vec<(i32, String)> = facts
        .ports
        .iter()
        .map(|p| (i32::from(p.number), p.protocol.to_owned()))
        .collect();
    for map in &options.service_ports {
        if let Ok(n) = map.target.parse::<i32>()
            && !container_ports
                .iter()
                .any(|(p, proto)| *p == n && *proto == map.protocol)
        {
            container_ports.push((n, map.protocol.clone()));
        }
    }
    container_ports.sort();
    if !container_ports.is_empty() {
        container.ports = Some(
            container_ports
                .iter()
                .map(|(port, protocol)| ContainerPort {
                    container_port: *port,
                    // TCP is the default: written only when it differs, as
                    // the tutorial writes ports.
                    protocol: (protocol != "TCP").then(|| protocol.clone()),
                    ..Default::default()
                })
                .collect(),
        );
    }
    let first_port = container_ports.first().map(|(p, _)| *p);

    // Resources.
    let quantities = |m: &BTreeMap<String, String>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    let requests = options.requests.as_ref().and_then(quantities);
    let limits = options.limits.as_ref().and_then(quantities);
    if requests.is_some() || limits.is_some() {
        container.resources = Some(ResourceRequirements {
            requests,
            limits,
            ..Default::default()
        });
    }

    // Environment.
    let mut env: Vec<EnvVar> = Vec::new();
    for (k, v) in &options.env {
        if !is_env_name(k) {
            return Err(K8sError::option(
                &format!("--env {k}={v}"),
                "not a valid variable name",
            ));
        }
        env.retain(|e| e.name != *k);
        env.push(EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        });
    }
    if !env.is_empty() {
        container.env = Some(env);
    }
    let mut env_from = Vec::new();
    for cm in options
        .env_from_configmaps
        .iter()
        .chain((!config.is_empty() && config.mount.is_none()).then_some(&names.configmap))
    {
        env_from.push(EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: cm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for s in options
        .env_from_secrets
        .iter()
        .chain((!secret.is_empty() && secret.mount.is_none()).then_some(&names.secret))
    {
        env_from.push(EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if !env_from.is_empty() {
        container.env_from = Some(env_from);
    }

    // Volumes: ConfigMap and Secret mounts, then VOLUME paths nothing
    // else is mounted at as emptyDir (a pod has no anonymous volumes).
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let (false, Some(path)) = (config.is_empty(), &config.mount) {
        check_mount("--config-mount", path)?;
        volumes.push(Volume {
            name: names.config_volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.configmap.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: names.config_volume.clone(),
            mount_path: path.clone(),
            ..Default::default()
        });
    } else if config.is_empty() && config.mount.is_some() {
        return Err(K8sError::option(
            "--config-mount",
            "there is no ConfigMap to mount: add --config-file or --config-literal",
        ));
    }
    if let (false, Some(path)) = (secret.is_empty(), &secret.mount) {
        check_mount("--secret-mount", path)?;
        volumes.push(Volume {
            name: names.secret_volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: names.secret_volume.clone(),
            mount_path: path.clone(),
            read_only: Some(true),
            ..Default::default()
        });
    } else if secret.is_empty() && secret.mount.is_some() {
        return Err(K8sError::option(
            "--secret-mount",
            "there is no Secret to mount: add --secret-env-file or --secret-literal",
        ));
    }
    for path in &facts.volumes {
        let normal = path.trim_end_matches('/');
        if mounts
            .iter()
            .any(|m| m.mount_path.trim_end_matches('/') == normal)
        {
            continue;
        }
        let volume_name = unique_name(&volume_name_for(path), &volumes);
        volumes.push(Volume {
            name: volume_name.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: volume_name,
            mount_path: path.clone(),
            ..Default::default()
        });
    }
    if options.read_only_root_filesystem && facts.volumes.is_empty() {
        warnings.push(
            "--read-only-root-filesystem: the image declares no VOLUME, so the container has no \
             writable directory; check that the app writes nothing (or mount an emptyDir)"
                .to_owned(),
        );
    }
    if !mounts.is_empty() {
        container.volume_mounts = Some(mounts);
    }

    // Probes: flags first, HEALTHCHECK for what flags leave unset.
    let healthcheck = facts
        .healthcheck
        .as_ref()
        .filter(|_| !options.no_healthcheck_probes);
    let probe = |flag: &str, spec: &Option<ProbeSpec>| -> Result<Option<Probe>, K8sError> {
        match spec {
            Some(spec) => probe_from_flag(flag, spec, first_port, &facts.shell).map(Some),
            None => Ok(None),
        }
    };
    container.liveness_probe = probe("--liveness", &options.liveness)?
        .or_else(|| healthcheck.map(|h| probe_from_healthcheck(h, &facts.shell)));
    container.readiness_probe = probe("--readiness", &options.readiness)?
        .or_else(|| healthcheck.map(|h| probe_from_healthcheck(h, &facts.shell)));
    container.startup_probe = probe("--startup", &options.startup)?;

    container.security_context = security_context(facts, options, &mut warnings);

    // Deployment.
    let strategy = deployment_strategy(options)?;
    let mut pod_spec = PodSpec {
        containers: vec![container],
        ..Default::default()
    };
    if !volumes.is_empty() {
        pod_spec.volumes = Some(volumes);
    }
    let mut pull_secrets = options.image_pull_secrets.clone();
    if let Some(credentials) = &options.pull_credentials
        && !pull_secrets.contains(&credentials.name)
    {
        pull_secrets.push(credentials.name.clone());
    }
    if !pull_secrets.is_empty() {
        pod_spec.image_pull_secrets = Some(
            pull_secrets
                .iter()
                .map(|n| LocalObjectReference { name: n.clone() })
                .collect(),
        );
    }
    let deployment = Deployment {
        metadata: meta(&names.app),
        spec: DeploymentSpec {
            replicas: options.replicas,
            selector: LabelSelector {
                match_labels: Some(names.selector.clone()),
                ..Default::default()
            },
            strategy,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels.clone()),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        },
        ..Default::default()
    };

    let mut objects = Vec::new();
    if !config.is_empty() {
        let (data, binary) = split_data(&config);
        objects.push(Object::new(
            "ConfigMap",
            &names.configmap,
            &ConfigMap {
                metadata: meta(&names.configmap),
                data,
                binary_data: binary,
                ..Default::default()
            },
        ));
    }
    if !secret.is_empty() {
        let (string_data, data) = split_data(&secret);
        objects.push(Object::new(
            "Secret",
            &names.secret,
            &Secret {
                metadata: meta(&names.secret),
                type_: Some("Opaque".to_owned()),
                string_data,
                data,
                ..Default::default()
            },
        ));
    }
    objects.push(Object::new("Deployment", &names.app, &deployment));

    let service = objects::service(&names, facts, options, &mut warnings);
    let service_port = service.as_ref().map(|(_, port)| *port);
    objects.extend(service.map(|(object, _)| object));
    if let Some(ingress) = &options.ingress() {
        objects.push(objects::ingress(&names, ingress, service_port)?);
    }
    if let Some(pdb) = &options.pdb() {
        objects.push(objects::pod_disruption_budget(
            &names,
            pdb,
            options,
            &mut warnings,
        )?);
    }
    if let Some(hpa) = &options.hpa() {
        objects.push(objects::autoscaler(&names, hpa, options, &mut warnings)?);
    }
    let pull_secret = options
        .pull_credentials
        .as_ref()
        .map(|p| objects::pull_secret(&names, p));

    Ok(Generated {
        objects,
        pull_secret,
        image,
        deployment: names.app.clone(),
        container: names.container.clone(),
        warnings,
    })
}

/// The objects' names, and the labels every one carries.
pub(super) struct Names {
    pub app: String,
    pub container: String,
    pub service: String,
    pub ingress: String,
    pub configmap: String,
    pub secret: String,
    pub config_volume: String,
    pub secret_volume: String,
    /// `app: NAME` plus `--label`s.
    pub labels: BTreeMap<String, String>,
    /// `app: NAME`: what the Deployment, Service and PDB select.
    pub selector: BTreeMap<String, String>,
}

impl Names {
    fn new(options: &Options, default_app: String) -> Result<Names, K8sError> {
        let app = options.name.clone().unwrap_or(default_app);
        check_name("--name", &app)?;
        let named = |given: &Option<String>, flag: &str, default: String| {
            let n = given.clone().unwrap_or(default);
            check_name(flag, &n).map(|()| n)
        };
        let mut selector = BTreeMap::new();
        selector.insert("app".to_owned(), app.clone());
        let mut labels: BTreeMap<String, String> = options.labels.iter().cloned().collect();
        labels.extend(selector.clone());
        Ok(Names {
            container: named(&options.container_name, "--container-name", app.clone())?,
            service: named(&options.service_name, "--service-name", app.clone())?,
            ingress: named(&options.ingress_name, "--ingress-name", app.clone())?,
            configmap: named(
                &options.configmap_name,
                "--configmap-name",
                format!("{app}-config"),
            )?,
            secret: named(
                &options.secret_name,
                "--secret-name",
                format!("{app}-secret"),
            )?,
            config_volume: named(
                &options.config_volume_name,
                "--config-volume-name",
                "config".into(),
            )?,
            secret_volume: named(
                &options.secret_volume_name,
                "--secret-volume-name",
                "secret".into(),
            )?,
            app,
            labels,
            selector,
        })
    }

    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(self.labels.clone()),
            ..Default::default()
        }
    }
}

/// hoist's hardening (unless `--no-hardening`), a read-only root on
/// request, and the non-root user when USER gives a number.
fn security_context(
    facts: &ImageFacts,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Option<SecurityContext> {
    let mut security = SecurityContext::default();
    if !options.no_hardening {
        security.allow_privilege_escalation = Some(false);
        security.capabilities = Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        });
        security.seccomp_profile = Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        });
    }
    if options.read_only_root_filesystem {
        security.read_only_root_filesystem = Some(true);
    }
    match &facts.user {
        Some(UserId::Numeric(uid)) => {
            security.run_as_non_root = Some(true);
            security.run_as_user = Some(*uid as i64);
        }
        Some(UserId::Unresolved { name, reason }) => warnings.push(format!(
            "USER {name} has no numeric id ({reason}): the manifests do not set runAsNonRoot, \
             which Kubernetes can only check against a number; use a numeric USER"
        )),
        None => warnings.push(
            "the image runs as root (no USER, or uid 0): consider a non-root USER".to_owned(),
        ),
    }
    (security != SecurityContext::default()).then_some(security)
}

/// UTF-8 values as text (`data`/`stringData`), the rest as bytes
/// (`binaryData`/`data`); a later key replaces an earlier one.
type DataMaps = (
    Option<BTreeMap<String, String>>,
    Option<BTreeMap<String, ByteString>>,
);

fn split_data(options: &DataOptions) -> DataMaps {
    let mut text = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    for (key, value) in &options.entries {
        text.remove(key);
        bytes.remove(key);
        match String::from_utf8(value.clone()) {
            Ok(s) => {
                text.insert(key.clone(), s);
            }
            Err(e) => {
                bytes.insert(key.clone(), ByteString(e.into_bytes()));
            }
        }
    }
    (
        (!text.is_empty()).then_some(text),
        (!bytes.is_empty()).then_some(bytes),
    )
}

fn deployment_strategy(options: &Options) -> Result<Option<DeploymentStrategy>, K8sError> {
    let rolling = options.max_surge.is_some() || options.max_unavailable.is_some();
    let kind = match (&options.strategy, rolling) {
        (None, false) => return Ok(None),
        (None, true) => "RollingUpdate".to_owned(),
        (Some(k), _) => k.clone(),
    };
    match kind.as_str() {
        "RollingUpdate" => Ok(Some(DeploymentStrategy {
            type_: Some(kind),
            rolling_update: if rolling {
                Some(RollingUpdateDeployment {
                    max_surge: options
                        .max_surge
                        .as_deref()
                        .map(|v| int_or_percent("--max-surge", v))
                        .transpose()?,
                    max_unavailable: options
                        .max_unavailable
                        .as_deref()
                        .map(|v| int_or_percent("--max-unavailable", v))
                        .transpose()?,
                })
            } else {
                None
            },
        })),
        "Recreate" if !rolling => Ok(Some(DeploymentStrategy {
            type_: Some(kind),
            rolling_update: None,
        })),
        "Recreate" => Err(K8sError::option(
            "--strategy Recreate",
            "--max-surge and --max-unavailable apply to RollingUpdate only",
        )),
        other => Err(K8sError::option(
            &format!("--strategy {other}"),
            "expected RollingUpdate or Recreate",
        )),
    }
}

/// `3` or `25%`.
fn int_or_percent(flag: &str, value: &str) -> Result<IntOrString, K8sError> {
    if let Ok(n) = value.parse::<i32>()
        && n >= 0
    {
        return Ok(IntOrString::Int(n));
    }
    if let Some(p) = value.strip_suffix('%')
        && p.parse::<u32>().is_ok_and(|p| p <= 100)
    {
        return Ok(IntOrString::String(value.to_owned()));
    }
    Err(K8sError::option(
        &format!("{flag} {value}"),
        "expected a count (2) or a percentage (25%)",
    ))
}

/// A HEALTHCHECK as a probe: `CMD` runs as is, `CMD-SHELL` through the
/// image's SHELL (as Docker runs it). Durations are nanoseconds in the
/// image and whole seconds in Kubernetes: rounded up, so a probe never
/// waits less than the image asked. Zero means Docker's default.
pub fn probe_from_healthcheck(h: &Healthcheck, shell: &[String]) -> Probe {
    let command = match h.test.first().map(String::as_str) {
        Some("CMD-SHELL") => {
            let mut c = shell.to_vec();
            c.push(h.test[1..].join(" "));
            c
        }
        _ => h.test[1..].to_vec(),
    };
    let seconds = |ns: i64, default: i32| {
        if ns <= 0 {
            default
        } else {
            i32::try_from((ns + 999_999_999) / 1_000_000_000).unwrap_or(i32::MAX)
        }
    };
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        period_seconds: Some(seconds(h.interval, DOCKER_INTERVAL_SECONDS)),
        timeout_seconds: Some(seconds(h.timeout, DOCKER_TIMEOUT_SECONDS)),
        failure_threshold: Some(if h.retries > 0 {
            i32::try_from(h.retries).unwrap_or(i32::MAX)
        } else {
            DOCKER_RETRIES
        }),
        initial_delay_seconds: (h.start_period > 0).then(|| seconds(h.start_period, 0)),
        ..Default::default()
    }
}

fn probe_from_flag(
    flag: &str,
    spec: &ProbeSpec,
    first_port: Option<i32>,
    shell: &[String],
) -> Result<Probe, K8sError> {
    let port = || -> Result<IntOrString, K8sError> {
        match (&spec.port, first_port) {
            (Some(p), _) => Ok(match p.parse::<i32>() {
                Ok(n) => IntOrString::Int(n),
                Err(_) => IntOrString::String(p.clone()),
            }),
            (None, Some(n)) => Ok(IntOrString::Int(n)),
            (None, None) => Err(K8sError::option(
                flag,
                "the image exposes no port: give port=PORT",
            )),
        }
    };
    let mut probe = Probe {
        initial_delay_seconds: spec.initial_delay,
        period_seconds: spec.period,
        timeout_seconds: spec.timeout,
        failure_threshold: spec.failure_threshold,
        success_threshold: spec.success_threshold,
        ..Default::default()
    };
    match &spec.action {
        ProbeAction::Http { path } => {
            probe.http_get = Some(HTTPGetAction {
                path: Some(path.clone()),
                port: port()?,
                ..Default::default()
            })
        }
        ProbeAction::Tcp => {
            probe.tcp_socket = Some(TCPSocketAction {
                port: port()?,
                ..Default::default()
            })
        }
        ProbeAction::Exec(command) => {
            let mut c = shell.to_vec();
            c.push(command.clone());
            probe.exec = Some(ExecAction { command: Some(c) });
        }
    }
    Ok(probe)
}

/// Object names are DNS-1123 labels here (Services need it; the rest
/// accept it): lowercase letters, digits and `-`, at most 63.
fn check_name(flag: &str, name: &str) -> Result<(), K8sError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(K8sError::option(
            &format!("{flag} {name}"),
            "a name is up to 63 lowercase letters, digits and '-', starting and ending with a \
             letter or digit (set it with --name and the other --*-name flags)",
        ))
    }
}

fn check_mount(flag: &str, path: &str) -> Result<(), K8sError> {
    if path.starts_with('/') && !path.contains(':') {
        Ok(())
    } else {
        Err(K8sError::option(
            &format!("{flag} {path}"),
            "a mount path is absolute and has no ':'",
        ))
    }
}

/// `/app/data` -> `app-data`: a DNS-1123 label for a VOLUME path.
fn volume_name_for(path: &str) -> String {
    let mut name = String::new();
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let mut name = name.trim_end_matches('-').to_owned();
    name.truncate(56);
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() {
        "volume".to_owned()
    } else {
        name
    }
}

fn unique_name(base: &str, taken: &[Volume]) -> String {
    let mut name = base.to_owned();
    let mut n = 2;
    while taken.iter().any(|v| v.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

mod objects;
#[cfg(test)]
mod tests;
