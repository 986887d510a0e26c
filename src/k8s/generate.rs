//! Typed Kubernetes objects from an image's facts and the user's options.
//!
//! The Deployment runs exactly the image given, pinned by its manifest
//! digest; everything else (Service, Ingress, ConfigMap, Secret, PDB,
//! HPA, pull Secret) exists only when the image or a flag calls for it.
//! What hoist adds beyond what was asked is listed in docs/k8s.md
//! ("hoist's additions"); keep that list in step with this file.

use super::image::{ImageFacts, UserId};
use super::options::{DataOptions, Options, PdbOptions, ProbeAction, ProbeSpec, is_env_name};
use super::{K8sError, yaml};
use crate::image::Healthcheck;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction, HTTPGetAction, LocalObjectReference,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
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
    let name = options.name.clone().unwrap_or(default_name);
    check_name("--name", &name)?;
    let named = |given: &Option<String>, flag: &str, default: String| -> Result<String, K8sError> {
        let n = given.clone().unwrap_or(default);
        check_name(flag, &n)?;
        Ok(n)
    };
    let container_name = named(&options.container_name, "--container-name", name.clone())?;
    let service_name = named(&options.service_name, "--service-name", name.clone())?;
    let ingress_name = named(&options.ingress_name, "--ingress-name", name.clone())?;
    let configmap_name = named(
        &options.configmap_name,
        "--configmap-name",
        format!("{name}-config"),
    )?;
    let secret_name = named(
        &options.secret_name,
        "--secret-name",
        format!("{name}-secret"),
    )?;
    let config_volume = named(
        &options.config_volume_name,
        "--config-volume-name",
        "config".into(),
    )?;
    let secret_volume = named(
        &options.secret_volume_name,
        "--secret-volume-name",
        "secret".into(),
    )?;

    let mut selector = BTreeMap::new();
    selector.insert("app".to_owned(), name.clone());
    let mut labels = options.labels.clone();
    labels.insert("app".to_owned(), name.clone());
    let meta = |object_name: &str| ObjectMeta {
        name: Some(object_name.to_owned()),
        labels: Some(labels.clone()),
        ..Default::default()
    };

    let image = image_reference(facts, options);
    let mut container = Container {
        name: container_name.clone(),
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
    for map in &options.service.ports {
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
    if !options.requests.is_empty() || !options.limits.is_empty() {
        let quantities = |m: &BTreeMap<String, String>| {
            (!m.is_empty()).then(|| {
                m.iter()
                    .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                    .collect()
            })
        };
        container.resources = Some(ResourceRequirements {
            requests: quantities(&options.requests),
            limits: quantities(&options.limits),
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
    for cm in options.env_from_configmaps.iter().chain(
        (!options.config.is_empty() && options.config.mount.is_none()).then_some(&configmap_name),
    ) {
        env_from.push(EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: cm.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for s in options.env_from_secrets.iter().chain(
        (!options.secret.is_empty() && options.secret.mount.is_none()).then_some(&secret_name),
    ) {
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
    if let (false, Some(path)) = (options.config.is_empty(), &options.config.mount) {
        check_mount("--config-mount", path)?;
        volumes.push(Volume {
            name: config_volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: configmap_name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: config_volume.clone(),
            mount_path: path.clone(),
            ..Default::default()
        });
    } else if options.config.is_empty() && options.config.mount.is_some() {
        return Err(K8sError::option(
            "--config-mount",
            "there is no ConfigMap to mount: add --config-file or --config-literal",
        ));
    }
    if let (false, Some(path)) = (options.secret.is_empty(), &options.secret.mount) {
        check_mount("--secret-mount", path)?;
        volumes.push(Volume {
            name: secret_volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: secret_volume.clone(),
            mount_path: path.clone(),
            read_only: Some(true),
            ..Default::default()
        });
    } else if options.secret.is_empty() && options.secret.mount.is_some() {
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

    // Security context.
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
    if security != SecurityContext::default() {
        container.security_context = Some(security);
    }

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
    if let Some(secret) = &options.pull_secret
        && !pull_secrets.contains(&secret.name)
    {
        pull_secrets.push(secret.name.clone());
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
        metadata: meta(&name),
        spec: DeploymentSpec {
            replicas: options.replicas,
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            strategy,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        },
        ..Default::default()
    };

    let mut objects = Vec::new();
    if !options.config.is_empty() {
        let (data, binary) = split_data(&options.config);
        objects.push(Object::new(
            "ConfigMap",
            &configmap_name,
            &ConfigMap {
                metadata: meta(&configmap_name),
                data,
                binary_data: binary,
                ..Default::default()
            },
        ));
    }
    if !options.secret.is_empty() {
        let (string_data, data) = split_data(&options.secret);
        objects.push(Object::new(
            "Secret",
            &secret_name,
            &Secret {
                metadata: meta(&secret_name),
                type_: Some("Opaque".to_owned()),
                string_data,
                data,
                ..Default::default()
            },
        ));
    }
    objects.push(Object::new("Deployment", &name, &deployment));

    // Service.
    let service_ports: Vec<(i32, String, String)> = if options.service.ports.is_empty() {
        facts
            .ports
            .iter()
            .map(|p| {
                (
                    i32::from(p.number),
                    p.number.to_string(),
                    p.protocol.to_owned(),
                )
            })
            .collect()
    } else {
        options
            .service
            .ports
            .iter()
            .map(|m| (i32::from(m.port), m.target.clone(), m.protocol.clone()))
            .collect()
    };
    let mut service_port = None;
    if service_ports.is_empty() && !options.service.disabled {
        warnings.push(
            "no Service: the image exposes no port (EXPOSE) and no --service-port was given"
                .to_owned(),
        );
    } else if !options.service.disabled {
        service_port = Some(service_ports[0].0);
        // A Service with several ports must name each one.
        let several = service_ports.len() > 1;
        let service = Service {
            metadata: meta(&service_name),
            spec: Some(ServiceSpec {
                selector: Some(selector.clone()),
                type_: Some(
                    options
                        .service
                        .kind
                        .clone()
                        .unwrap_or_else(|| "ClusterIP".to_owned()),
                ),
                ports: Some(
                    service_ports
                        .iter()
                        .map(|(port, target, protocol)| ServicePort {
                            name: several
                                .then(|| format!("{}-{port}", protocol.to_ascii_lowercase())),
                            port: *port,
                            protocol: (protocol != "TCP").then(|| protocol.clone()),
                            target_port: Some(match target.parse::<i32>() {
                                Ok(n) => IntOrString::Int(n),
                                Err(_) => IntOrString::String(target.clone()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        objects.push(Object::new("Service", &service_name, &service));
    }

    // Ingress.
    if let Some(ingress) = &options.ingress {
        let Some(port) = service_port else {
            return Err(K8sError::option(
                "--ingress-host",
                "an Ingress routes to the Service, and there is none: drop --no-service, or \
                 give --service-port when the image exposes no port",
            ));
        };
        let path = ingress.path.clone().unwrap_or_else(|| "/".to_owned());
        let path_type = ingress
            .path_type
            .clone()
            .unwrap_or_else(|| "Prefix".to_owned());
        if !matches!(
            path_type.as_str(),
            "Prefix" | "Exact" | "ImplementationSpecific"
        ) {
            return Err(K8sError::option(
                &format!("--ingress-path-type {path_type}"),
                "expected Prefix, Exact or ImplementationSpecific",
            ));
        }
        let mut metadata = meta(&ingress_name);
        if !ingress.annotations.is_empty() {
            metadata.annotations = Some(ingress.annotations.clone());
        }
        let tls = match (&ingress.tls_secret, &ingress.host) {
            (Some(secret), host) => Some(vec![IngressTLS {
                hosts: host.clone().map(|h| vec![h]),
                secret_name: Some(secret.clone()),
            }]),
            (None, _) => None,
        };
        let object = Ingress {
            metadata,
            spec: Some(IngressSpec {
                ingress_class_name: ingress.class.clone(),
                rules: Some(vec![IngressRule {
                    host: ingress.host.clone(),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some(path),
                            path_type,
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: service_name.clone(),
                                    port: Some(ServiceBackendPort {
                                        number: Some(port),
                                        ..Default::default()
                                    }),
                                }),
                                ..Default::default()
                            },
                        }],
                    }),
                }]),
                tls,
                ..Default::default()
            }),
            ..Default::default()
        };
        objects.push(Object::new("Ingress", &ingress_name, &object));
    }

    // PodDisruptionBudget.
    if let Some(pdb) = &options.pdb {
        let (min_available, max_unavailable) = match pdb {
            PdbOptions::MinAvailable(v) => (Some(int_or_percent("--pdb-min-available", v)?), None),
            PdbOptions::MaxUnavailable(v) => {
                (None, Some(int_or_percent("--pdb-max-unavailable", v)?))
            }
        };
        if options.replicas.unwrap_or(1) <= 1
            && matches!(pdb, PdbOptions::MinAvailable(v) if v != "0" && v != "0%")
        {
            warnings.push(
                "a PodDisruptionBudget with one replica blocks node drains: raise --replicas"
                    .to_owned(),
            );
        }
        objects.push(Object::new(
            "PodDisruptionBudget",
            &name,
            &PodDisruptionBudget {
                metadata: meta(&name),
                spec: Some(PodDisruptionBudgetSpec {
                    selector: Some(LabelSelector {
                        match_labels: Some(selector.clone()),
                        ..Default::default()
                    }),
                    min_available,
                    max_unavailable,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ));
    }

    // HorizontalPodAutoscaler.
    if let Some(hpa) = &options.hpa {
        if hpa.max < hpa.min.unwrap_or(1) || hpa.max < 1 {
            return Err(K8sError::option(
                "--hpa-max",
                "must be at least 1 and at least --hpa-min",
            ));
        }
        let resource = |name: &str, percent: i32| MetricSpec {
            type_: "Resource".to_owned(),
            resource: Some(ResourceMetricSource {
                name: name.to_owned(),
                target: MetricTarget {
                    type_: "Utilization".to_owned(),
                    average_utilization: Some(percent),
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let mut metrics = Vec::new();
        if let Some(p) = hpa.cpu_percent {
            metrics.push(resource("cpu", p));
            if !options.requests.contains_key("cpu") {
                warnings.push(
                    "--hpa-cpu scales on a percentage of the CPU request, and there is none: \
                     add --requests cpu=..."
                        .to_owned(),
                );
            }
        }
        if let Some(p) = hpa.memory_percent {
            metrics.push(resource("memory", p));
            if !options.requests.contains_key("memory") {
                warnings.push(
                    "--hpa-memory scales on a percentage of the memory request, and there is \
                     none: add --requests memory=..."
                        .to_owned(),
                );
            }
        }
        objects.push(Object::new(
            "HorizontalPodAutoscaler",
            &name,
            &HorizontalPodAutoscaler {
                metadata: meta(&name),
                spec: HorizontalPodAutoscalerSpec {
                    scale_target_ref: CrossVersionObjectReference {
                        api_version: Some("apps/v1".to_owned()),
                        kind: "Deployment".to_owned(),
                        name: name.clone(),
                    },
                    min_replicas: hpa.min,
                    max_replicas: hpa.max,
                    metrics: (!metrics.is_empty()).then_some(metrics),
                    ..Default::default()
                },
                ..Default::default()
            },
        ));
    }

    let pull_secret = options.pull_secret.as_ref().map(|p| {
        let mut auth = serde_json::Map::new();
        auth.insert("username".into(), p.username.clone().into());
        auth.insert("password".into(), p.password.expose().into());
        auth.insert(
            "auth".into(),
            base64_encode(&format!("{}:{}", p.username, p.password.expose())).into(),
        );
        let mut auths = serde_json::Map::new();
        auths.insert(p.registry.clone(), serde_json::Value::Object(auth));
        let config = serde_json::json!({ "auths": auths });
        let mut data = BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_owned(),
            ByteString(serde_json::to_vec(&config).expect("JSON values serialise")),
        );
        Object::new(
            "Secret",
            &p.name,
            &Secret {
                metadata: meta(&p.name),
                type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
                data: Some(data),
                ..Default::default()
            },
        )
    });

    Ok(Generated {
        objects,
        pull_secret,
        image,
        deployment: name,
        container: container_name,
        warnings,
    })
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
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

#[cfg(test)]
mod tests;
