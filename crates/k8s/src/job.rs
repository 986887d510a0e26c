//! The Job that runs a build in a cluster: `hoist build --job` writes it.
//!
//! Its pod meets Pod Security "baseline" (and nothing above it needs
//! relaxing): not privileged, no host namespaces, ports or paths, seccomp
//! `RuntimeDefault`, every capability dropped but the few that RUN steps
//! with chroot isolation use, all on baseline's list, and no privilege
//! escalation. It runs as root, as the chroot isolation needs; a cluster
//! that enforces "restricted" cannot run it (docs/ci.md). The service
//! account token is not mounted: the build never talks to the cluster.

use super::{K8sError, yaml};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The capabilities the build container keeps: those RUN steps need
/// (changing owners and modes, switching users, chroot, device nodes,
/// signalling their processes), every one on Pod Security baseline's list.
pub const CAPABILITIES: [&str; 10] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Where the Job's pod keeps hoist's store (an `emptyDir`).
pub const STORE_PATH: &str = "/var/lib/hoist";
/// Where the registry credentials Secret is mounted, as `DOCKER_CONFIG`.
pub const DOCKER_CONFIG_PATH: &str = "/var/run/hoist/docker-config";
/// The file Kubernetes reads the container's termination message from.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What the Job runs.
#[derive(Debug, Clone)]
pub struct BuildJob {
    pub name: String,
    /// hoist's image.
    pub image: String,
    /// hoist's arguments (`build ...`).
    pub args: Vec<String>,
    /// Environment variables for hoist (`SOURCE_DATE_EPOCH`).
    pub env: Vec<(String, String)>,
    /// A `kubernetes.io/dockerconfigjson` Secret with the registry
    /// credentials, mounted as hoist's Docker config and used to pull
    /// hoist's image.
    pub secret: Option<String>,
    /// CPU and memory, requested and the limit (`2`, `4Gi`).
    pub cpu: String,
    pub memory: String,
}

/// The Job as one YAML document.
pub fn build_job(job: &BuildJob) -> Result<String, K8sError> {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "hoist".to_owned()),
        ("app.kubernetes.io/component".to_owned(), "build".to_owned()),
    ]);
    let mut env = vec![
        env_var("HOIST_STORE", STORE_PATH),
        env_var("DOCKER_CONFIG", DOCKER_CONFIG_PATH),
    ];
    env.extend(job.env.iter().map(|(k, v)| env_var(k, v)));
    let mut mounts = vec![VolumeMount {
        name: "store".to_owned(),
        mount_path: STORE_PATH.to_owned(),
        ..VolumeMount::default()
    }];
    let mut volumes = vec![Volume {
        name: "store".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if let Some(secret) = &job.secret {
        mounts.push(VolumeMount {
            name: "registry-credentials".to_owned(),
            mount_path: DOCKER_CONFIG_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "registry-credentials".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                // Said, not left to the default: podman 4.3's `kube play`
                // fails on a secret volume that leaves it out.
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let quantities = BTreeMap::from([
        ("cpu".to_owned(), Quantity(job.cpu.clone())),
        ("memory".to_owned(), Quantity(job.memory.clone())),
    ]);
    let seccomp = || {
        Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        })
    };
    let container = Container {
        name: "hoist".to_owned(),
        image: Some(job.image.clone()),
        args: Some(job.args.clone()),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(quantities.clone()),
            limits: Some(quantities),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            }),
            seccomp_profile: seccomp(),
            ..SecurityContext::default()
        }),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        // A failed build leaves its last log lines as the message.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        image_pull_secrets: job
            .secret
            .as_ref()
            .map(|name| vec![LocalObjectReference { name: name.clone() }]),
        security_context: Some(PodSecurityContext {
            seccomp_profile: seccomp(),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    let object = Job {
        metadata: ObjectMeta {
            name: Some(job.name.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            // A build that failed fails the same way again, mostly; one
            // retry covers a node or network lost on the way.
            backoff_limit: Some(1),
            // The log and the termination message stay a day.
            ttl_seconds_after_finished: Some(86_400),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    let value = serde_json::to_value(&object).expect("k8s-openapi objects serialise");
    yaml::document(&value)
}

fn env_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> BuildJob {
        BuildJob {
            name: "hoist-build-0123456789".to_owned(),
            image: "127.0.0.1:5000/hoist:1".to_owned(),
            args: vec!["build".to_owned(), "--push".to_owned()],
            env: vec![("SOURCE_DATE_EPOCH".to_owned(), "0".to_owned())],
            secret: Some("regcred".to_owned()),
            cpu: "2".to_owned(),
            memory: "4Gi".to_owned(),
        }
    }

    #[test]
    fn the_job_names_its_kind_args_and_secret() {
        let text = build_job(&job()).unwrap();
        assert!(text.starts_with("apiVersion: batch/v1\n"), "{text}");
        assert!(text.contains("kind: Job\n"), "{text}");
        assert!(text.contains("secretName: regcred"), "{text}");
        assert!(text.contains("- --push"), "{text}");
        assert!(text.contains("type: RuntimeDefault"), "{text}");
        assert!(!text.contains("privileged: true"), "{text}");
    }

    #[test]
    fn without_a_secret_nothing_mounts_credentials() {
        let text = build_job(&BuildJob {
            secret: None,
            ..job()
        })
        .unwrap();
        assert!(!text.contains("registry-credentials"), "{text}");
        assert!(!text.contains("imagePullSecrets"), "{text}");
    }
}
