use super::*;
use crate::image::Port;
use crate::options::{PortMap, PullSecret, resources};
use hoist_registry::Reference;
use serde_json::json;

fn facts() -> ImageFacts {
    ImageFacts {
        reference: Reference::parse("user/my-k8s-app:v1").unwrap(),
        digest: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
        ports: vec![Port {
            number: 3000,
            protocol: "TCP",
        }],
        healthcheck: None,
        shell: vec!["/bin/sh".into(), "-c".into()],
        user: Some(UserId::Numeric(1001)),
        volumes: Vec::new(),
    }
}

fn container(g: &Generated) -> serde_json::Value {
    let d = g.objects.iter().find(|o| o.kind == "Deployment").unwrap();
    d.value["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn image_is_pinned_by_digest_or_named_by_tag_for_never() {
    let f = facts();
    let digest = f.digest.to_string();
    assert_eq!(
        image_reference(&f, &Options::default()),
        format!("user/my-k8s-app@{digest}")
    );
    let keep = Options {
        keep_tag: true,
        ..Default::default()
    };
    assert_eq!(
        image_reference(&f, &keep),
        format!("user/my-k8s-app:v1@{digest}")
    );
    let never = Options {
        pull_policy: Some("Never".into()),
        ..Default::default()
    };
    assert_eq!(image_reference(&f, &never), "user/my-k8s-app:v1");
    let local = ImageFacts {
        reference: Reference::parse("localhost:5000/team/app:v2").unwrap(),
        ..facts()
    };
    assert_eq!(
        image_reference(&local, &Options::default()),
        format!("localhost:5000/team/app@{digest}")
    );
}

#[test]
fn healthcheck_maps_to_probes_rounding_durations_up() {
    let h = Healthcheck {
        test: vec![
            "CMD-SHELL".into(),
            "curl -f http://localhost/ || exit 1".into(),
        ],
        interval: 5_000_000_000,
        timeout: 1_500_000_000,
        start_period: 200_000_000,
        retries: 4,
        ..Default::default()
    };
    let shell = vec![
        "/bin/bash".to_string(),
        "-eo".into(),
        "pipefail".into(),
        "-c".into(),
    ];
    let probe = serde_json::to_value(probe_from_healthcheck(&h, &shell)).unwrap();
    assert_eq!(
        probe,
        json!({
            "exec": {"command": ["/bin/bash", "-eo", "pipefail", "-c", "curl -f http://localhost/ || exit 1"]},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "initialDelaySeconds": 1,
            "failureThreshold": 4,
        })
    );
    // Zero means Docker's defaults; exec form runs as is.
    let h = Healthcheck {
        test: vec!["CMD".into(), "/bin/check".into(), "--quick".into()],
        ..Default::default()
    };
    let probe = serde_json::to_value(probe_from_healthcheck(&h, &shell)).unwrap();
    assert_eq!(
        probe,
        json!({
            "exec": {"command": ["/bin/check", "--quick"]},
            "periodSeconds": 30,
            "timeoutSeconds": 30,
            "failureThreshold": 3,
        })
    );
}

#[test]
fn no_flags_give_a_deployment_and_a_service_from_the_image() {
    let mut f = facts();
    f.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        ..Default::default()
    });
    f.volumes = vec!["/data".into(), "/var/cache/app/".into()];
    let g = generate(&f, &Options::default()).unwrap();
    let kinds: Vec<_> = g
        .objects
        .iter()
        .map(|o| (o.kind, o.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("Deployment", "my-k8s-app"), ("Service", "my-k8s-app")]
    );
    let c = container(&g);
    assert_eq!(c["ports"], json!([{"containerPort": 3000}]));
    assert_eq!(c["livenessProbe"]["exec"]["command"], json!(["true"]));
    assert_eq!(c["readinessProbe"], c["livenessProbe"]);
    assert_eq!(c["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(c["securityContext"]["runAsUser"], json!(1001));
    assert_eq!(
        c["volumeMounts"],
        json!([{"mountPath": "/data", "name": "data"}, {"mountPath": "/var/cache/app/", "name": "var-cache-app"}])
    );
    let service = &g.objects[1].value;
    assert_eq!(
        service["spec"]["ports"],
        json!([{"port": 3000, "targetPort": 3000}])
    );
    assert!(g.warnings.is_empty(), "{:?}", g.warnings);
}

#[test]
fn run_as_non_root_needs_a_numeric_id() {
    let mut f = facts();
    f.user = Some(UserId::Unresolved {
        name: "ghost".into(),
        reason: "unknown user ghost".into(),
    });
    let g = generate(&f, &Options::default()).unwrap();
    let c = container(&g);
    assert!(c["securityContext"].get("runAsNonRoot").is_none());
    assert!(c["securityContext"].get("runAsUser").is_none());
    assert!(
        g.warnings.iter().any(|w| w.contains("USER ghost")),
        "{:?}",
        g.warnings
    );
    f.user = None;
    let g = generate(&f, &Options::default()).unwrap();
    assert!(
        container(&g)["securityContext"]
            .get("runAsNonRoot")
            .is_none()
    );
}

#[test]
fn a_mounted_config_map_replaces_the_volume_at_its_path() {
    let mut f = facts();
    f.volumes = vec!["/app/config".into()];
    let options = Options {
        config_literals: vec![("config.json".into(), "{}".into())],
        config_mount: Some("/app/config".into()),
        ..Default::default()
    };
    let g = generate(&f, &options).unwrap();
    let d = &g
        .objects
        .iter()
        .find(|o| o.kind == "Deployment")
        .unwrap()
        .value;
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "config", "configMap": {"name": "my-k8s-app-config"}}])
    );
}

#[test]
fn several_service_ports_are_named_and_targets_become_container_ports() {
    let options = Options {
        service_ports: vec![
            PortMap::parse("80:3000").unwrap(),
            PortMap::parse("53:5353/udp").unwrap(),
        ],
        ..Default::default()
    };
    let g = generate(&facts(), &options).unwrap();
    let s = &g
        .objects
        .iter()
        .find(|o| o.kind == "Service")
        .unwrap()
        .value;
    assert_eq!(
        s["spec"]["ports"],
        json!([
            {"name": "tcp-80", "port": 80, "targetPort": 3000},
            {"name": "udp-53", "port": 53, "protocol": "UDP", "targetPort": 5353},
        ])
    );
    assert_eq!(
        container(&g)["ports"],
        json!([{"containerPort": 3000}, {"containerPort": 5353, "protocol": "UDP"}])
    );
}

#[test]
fn pull_secret_is_kept_apart_and_referenced() {
    let options = Options {
        pull_credentials: Some(PullSecret {
            name: "regcred".into(),
            registry: "https://index.docker.io/v1/".into(),
            username: "user".into(),
            password: hoist_registry::auth::Secret::new("hunter2"),
        }),
        ..Default::default()
    };
    let g = generate(&facts(), &options).unwrap();
    assert!(!g.to_yaml().unwrap().contains("hunter2"));
    let d = &g
        .objects
        .iter()
        .find(|o| o.kind == "Deployment")
        .unwrap()
        .value;
    assert_eq!(
        d["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}])
    );
    let secret = g.pull_secret.unwrap().value;
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        config["auths"]["https://index.docker.io/v1/"],
        json!({"username": "user", "password": "hunter2", "auth": "dXNlcjpodW50ZXIy"})
    );
}

#[test]
fn bad_options_are_refused_with_the_flag_named() {
    let cases: Vec<(Options, &str)> = vec![
        (
            Options {
                name: Some("My_App".into()),
                ..Default::default()
            },
            "--name My_App",
        ),
        (
            Options {
                strategy: Some("Recreate".into()),
                max_surge: Some("1".into()),
                ..Default::default()
            },
            "--strategy Recreate",
        ),
        (
            Options {
                max_unavailable: Some("150%".into()),
                ..Default::default()
            },
            "--max-unavailable 150%",
        ),
        (
            Options {
                pull_policy: Some("Sometimes".into()),
                ..Default::default()
            },
            "--pull-policy Sometimes",
        ),
        (
            Options {
                config_mount: Some("/x".into()),
                ..Default::default()
            },
            "--config-mount",
        ),
    ];
    for (options, flag) in cases {
        let err = generate(&facts(), &options).unwrap_err().to_string();
        assert!(err.starts_with(flag), "{flag}: {err}");
    }
}

#[test]
fn output_is_stable_and_sorted() {
    let options = Options {
        labels: vec![("tier".to_string(), "web".to_string())],
        env: vec![("B".into(), "2".into()), ("A".into(), "1".into())],
        ..Default::default()
    };
    let a = generate(&facts(), &options).unwrap().to_yaml().unwrap();
    let b = generate(&facts(), &options).unwrap().to_yaml().unwrap();
    assert_eq!(a, b);
    // Keys sorted; list order (env) as given.
    assert!(
        a.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"),
        "{a}"
    );
    assert!(a.find("name: B").unwrap() < a.find("name: A").unwrap());
}

/// The tutorial's configurable app as a reader sees it; the snapshot
/// guards the layout (key order, quoting, block strings).
#[test]
fn configurable_app_yaml_snapshot() {
    let mut f = facts();
    f.reference = Reference::parse("user/configurable-app:v1").unwrap();
    f.ports = vec![Port {
        number: 8080,
        protocol: "TCP",
    }];
    f.volumes = vec!["/app/config".into()];
    let options = Options {
        replicas: Some(2),
        limits: Some(resources("cpu=0.5,memory=512Mi").unwrap()),
        requests: Some(resources("cpu=0.2,memory=256Mi").unwrap()),
        env: vec![
            ("APP_ENV".into(), "kubernetes".into()),
            ("CONFIG_PATH".into(), "/app/config/config.json".into()),
        ],
        liveness: Some(
            ProbeSpec::parse("http=/health,port=8080,initial-delay=5,period=10").unwrap(),
        ),
        configmap_name: Some("app-config".into()),
        config_volume_name: Some("config-volume".into()),
        config_literals: vec![(
            "config.json".into(),
            "{\n  \"message\": \"Hello from Kubernetes ConfigMap!\"\n}\n".into(),
        )],
        config_mount: Some("/app/config".into()),
        secret_name: Some("app-secrets".into()),
        secret_literals: vec![
            "APP_VERSION=2.0.0".into(),
            "SECRET_KEY=my-super-secret-key".into(),
        ],
        service_name: Some("configurable-app-service".into()),
        service_ports: vec![PortMap::parse("80:8080").unwrap()],
        ..Default::default()
    };
    insta::assert_snapshot!(generate(&f, &options).unwrap().to_yaml().unwrap());
}
