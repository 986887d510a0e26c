//! The objects around the Deployment: Service, Ingress,
//! PodDisruptionBudget, HorizontalPodAutoscaler and the pull Secret.

use super::{Names, Object, int_or_percent};
use crate::K8sError;
use crate::image::ImageFacts;
use crate::options::{HpaOptions, IngressOptions, Options, PdbOptions, PullSecret};
use k8s_openapi::ByteString;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The Service and its first port (an Ingress's backend), unless there
/// is none to write.
pub(super) fn service(
    names: &Names,
    facts: &ImageFacts,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Option<(Object, i32)> {
    if options.no_service {
        return None;
    }
    // (port, target, protocol): the flags', or one per EXPOSE port.
    let ports: Vec<(i32, String, String)> = if options.service_ports.is_empty() {
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
            .service_ports
            .iter()
            .map(|m| (i32::from(m.port), m.target.clone(), m.protocol.clone()))
            .collect()
    };
    let Some(first) = ports.first().map(|p| p.0) else {
        warnings.push(
            "no Service: the image exposes no port (EXPOSE) and no --service-port was given"
                .to_owned(),
        );
        return None;
    };
    // A Service with several ports must name each one.
    let several = ports.len() > 1;
    let service = Service {
        metadata: names.meta(&names.service),
        spec: Some(ServiceSpec {
            selector: Some(names.selector.clone()),
            type_: Some(
                options
                    .service_type
                    .clone()
                    .unwrap_or_else(|| "ClusterIP".to_owned()),
            ),
            ports: Some(
                ports
                    .iter()
                    .map(|(port, target, protocol)| ServicePort {
                        name: several.then(|| format!("{}-{port}", protocol.to_ascii_lowercase())),
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
    Some((Object::new("Service", &names.service, &service), first))
}

/// One rule to the Service's `port`.
pub(super) fn ingress(
    names: &Names,
    ingress: &IngressOptions,
    port: Option<i32>,
) -> Result<Object, K8sError> {
    let Some(port) = port else {
        return Err(K8sError::option(
            "--ingress-host",
            "an Ingress routes to the Service, and there is none: drop --no-service, or give \
             --service-port when the image exposes no port",
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
    let mut metadata = names.meta(&names.ingress);
    if !ingress.annotations.is_empty() {
        metadata.annotations = Some(ingress.annotations.clone());
    }
    let tls = ingress.tls_secret.as_ref().map(|secret| {
        vec![IngressTLS {
            hosts: ingress.host.clone().map(|h| vec![h]),
            secret_name: Some(secret.clone()),
        }]
    });
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
                                name: names.service.clone(),
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
    Ok(Object::new("Ingress", &names.ingress, &object))
}

pub(super) fn pod_disruption_budget(
    names: &Names,
    pdb: &PdbOptions,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<Object, K8sError> {
    let (min_available, max_unavailable) = match pdb {
        PdbOptions::MinAvailable(v) => (Some(int_or_percent("--pdb-min-available", v)?), None),
        PdbOptions::MaxUnavailable(v) => (None, Some(int_or_percent("--pdb-max-unavailable", v)?)),
    };
    if options.replicas.unwrap_or(1) <= 1
        && matches!(pdb, PdbOptions::MinAvailable(v) if v != "0" && v != "0%")
    {
        warnings.push(
            "a PodDisruptionBudget with one replica blocks node drains: raise --replicas"
                .to_owned(),
        );
    }
    Ok(Object::new(
        "PodDisruptionBudget",
        &names.app,
        &PodDisruptionBudget {
            metadata: names.meta(&names.app),
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some(names.selector.clone()),
                    ..Default::default()
                }),
                min_available,
                max_unavailable,
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
}

/// An autoscaling/v2 HorizontalPodAutoscaler of the Deployment.
pub(super) fn autoscaler(
    names: &Names,
    hpa: &HpaOptions,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<Object, K8sError> {
    if hpa.max < hpa.min.unwrap_or(1) || hpa.max < 1 {
        return Err(K8sError::option(
            "--hpa-max",
            "must be at least 1 and at least --hpa-min",
        ));
    }
    let mut metrics = Vec::new();
    for (resource, percent, flag) in [
        ("cpu", hpa.cpu_percent, "--hpa-cpu"),
        ("memory", hpa.memory_percent, "--hpa-memory"),
    ] {
        let Some(percent) = percent else { continue };
        metrics.push(MetricSpec {
            type_: "Resource".to_owned(),
            resource: Some(ResourceMetricSource {
                name: resource.to_owned(),
                target: MetricTarget {
                    type_: "Utilization".to_owned(),
                    average_utilization: Some(percent),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
        if !options
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key(resource))
        {
            warnings.push(format!(
                "{flag} scales on a percentage of the {resource} request, and there is none: \
                 add --requests {resource}=..."
            ));
        }
    }
    Ok(Object::new(
        "HorizontalPodAutoscaler",
        &names.app,
        &HorizontalPodAutoscaler {
            metadata: names.meta(&names.app),
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_owned()),
                    kind: "Deployment".to_owned(),
                    name: names.app.clone(),
                },
                min_replicas: hpa.min,
                max_replicas: hpa.max,
                metrics: (!metrics.is_empty()).then_some(metrics),
                ..Default::default()
            },
            ..Default::default()
        },
    ))
}

/// A `kubernetes.io/dockerconfigjson` Secret, as `kubectl create secret
/// docker-registry` writes it.
pub(super) fn pull_secret(names: &Names, p: &PullSecret) -> Object {
    use base64::Engine as _;
    let user_password = format!("{}:{}", p.username, p.password.expose());
    let mut auth = serde_json::Map::new();
    auth.insert("username".into(), p.username.clone().into());
    auth.insert("password".into(), p.password.expose().into());
    auth.insert(
        "auth".into(),
        base64::engine::general_purpose::STANDARD
            .encode(user_password)
            .into(),
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
            metadata: names.meta(&p.name),
            type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
            data: Some(data),
            ..Default::default()
        },
    )
}
