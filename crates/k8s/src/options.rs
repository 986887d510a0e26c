//! What the user asks of the manifests, beyond what the image says: the
//! `hoist k8s` flags, each defined once here with its help text (the
//! command flattens [`Options`] into its own arguments), read into typed
//! values by the parsers below as clap parses the command line, so they
//! are tested without the CLI. Flags that name files are read when the
//! manifests are made.

use super::K8sError;
use hoist_registry::auth::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NAMES: &str = "Names and labels";
const PODS: &str = "Pods";
const SERVICE: &str = "Service and Ingress";
const DATA: &str = "ConfigMap and Secret";
const SCALING: &str = "Availability and scaling";

/// Everything `hoist k8s` can be told. `Default` is the no-flag output:
/// a Deployment and a Service derived from the image alone.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    /// The app: Deployment name and `app` label (default: the
    /// repository's last path component).
    #[arg(long, help_heading = NAMES)]
    pub name: Option<String>,
    /// The container's name (default: the app's).
    #[arg(long, help_heading = NAMES)]
    pub container_name: Option<String>,
    /// The Service's name (default: the app's).
    #[arg(long, help_heading = NAMES)]
    pub service_name: Option<String>,
    /// The Ingress's name (default: the app's).
    #[arg(long, help_heading = NAMES)]
    pub ingress_name: Option<String>,
    /// The ConfigMap's name (default: APP-config).
    #[arg(long, help_heading = NAMES)]
    pub configmap_name: Option<String>,
    /// The Secret's name (default: APP-secret).
    #[arg(long, help_heading = NAMES)]
    pub secret_name: Option<String>,
    /// The pod volume holding the ConfigMap (default: config).
    #[arg(long, help_heading = NAMES)]
    pub config_volume_name: Option<String>,
    /// The pod volume holding the Secret (default: secret).
    #[arg(long, help_heading = NAMES)]
    pub secret_volume_name: Option<String>,
    /// Add a label to every object and to the pods (K=V, repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = key_value, help_heading = NAMES)]
    pub labels: Vec<(String, String)>,

    /// Number of pods.
    #[arg(long, help_heading = PODS)]
    pub replicas: Option<i32>,
    /// Resource requests: `cpu=0.2,memory=256Mi`.
    #[arg(long, value_name = "R=Q,...", value_parser = resources, help_heading = PODS)]
    pub requests: Option<BTreeMap<String, String>>,
    /// Resource limits: `cpu=0.5,memory=512Mi`.
    #[arg(long, value_name = "R=Q,...", value_parser = resources, help_heading = PODS)]
    pub limits: Option<BTreeMap<String, String>>,
    /// Set an environment variable (repeatable, in order).
    #[arg(long = "env", value_name = "K=V", value_parser = key_value, help_heading = PODS)]
    pub env: Vec<(String, String)>,
    /// Take every key of an existing ConfigMap as variables (repeatable).
    #[arg(long = "env-from-configmap", value_name = "NAME", help_heading = PODS)]
    pub env_from_configmaps: Vec<String>,
    /// Take every key of an existing Secret as variables (repeatable).
    #[arg(long = "env-from-secret", value_name = "NAME", help_heading = PODS)]
    pub env_from_secrets: Vec<String>,
    /// Liveness probe: `http=/health[,port=P]`, `tcp[=P]` or
    /// `exec=COMMAND`, then `,initial-delay=S,period=S,timeout=S,
    /// failure-threshold=N,success-threshold=N`. Default: HEALTHCHECK.
    #[arg(long, value_name = "SPEC", value_parser = ProbeSpec::parse, help_heading = PODS)]
    pub liveness: Option<ProbeSpec>,
    /// Readiness probe (as --liveness). Default: HEALTHCHECK.
    #[arg(long, value_name = "SPEC", value_parser = ProbeSpec::parse, help_heading = PODS)]
    pub readiness: Option<ProbeSpec>,
    /// Startup probe (as --liveness).
    #[arg(long, value_name = "SPEC", value_parser = ProbeSpec::parse, help_heading = PODS)]
    pub startup: Option<ProbeSpec>,
    /// Do not turn the image's HEALTHCHECK into probes.
    #[arg(long, help_heading = PODS)]
    pub no_healthcheck_probes: bool,
    /// Update strategy: RollingUpdate or Recreate.
    #[arg(long, help_heading = PODS)]
    pub strategy: Option<String>,
    /// RollingUpdate: pods above the desired count during an update (2, 25%).
    #[arg(long, help_heading = PODS)]
    pub max_surge: Option<String>,
    /// RollingUpdate: pods that may be unavailable during an update (0, 25%).
    #[arg(long, help_heading = PODS)]
    pub max_unavailable: Option<String>,
    /// imagePullPolicy: Always, IfNotPresent, or Never (an image loaded
    /// into the node, as with `minikube image load`: referenced by tag).
    #[arg(long, value_name = "POLICY", help_heading = PODS)]
    pub pull_policy: Option<String>,
    /// Pull with this existing docker-registry Secret (repeatable).
    #[arg(long = "image-pull-secret", value_name = "NAME", help_heading = PODS)]
    pub image_pull_secrets: Vec<String>,
    /// Write a docker-registry Secret NAME holding your credentials for
    /// the image's registry (as `hoist push` finds them) to FILE (mode
    /// 0600) or `-` (stdout, with the other objects), and pull with it.
    #[arg(long = "pull-secret", value_names = ["NAME", "FILE"], num_args = 2, help_heading = PODS)]
    pub pull_secret: Option<Vec<String>>,
    /// Mount the root file system read-only.
    #[arg(long, help_heading = PODS)]
    pub read_only_root_filesystem: bool,
    /// Leave out hoist's hardening (allowPrivilegeEscalation false,
    /// capabilities dropped, RuntimeDefault seccomp).
    #[arg(long, help_heading = PODS)]
    pub no_hardening: bool,
    /// Reference the image as REPO:TAG@sha256:... (default REPO@sha256:...).
    #[arg(long, help_heading = PODS)]
    pub keep_tag: bool,

    /// Service port to container port: `80:3000`, `53/udp`, `443:https`
    /// (repeatable; default: every EXPOSE port to itself).
    #[arg(long = "service-port", value_name = "PORT[:TARGET]", value_parser = PortMap::parse, help_heading = SERVICE)]
    pub service_ports: Vec<PortMap>,
    /// Service type: ClusterIP (default), NodePort, LoadBalancer.
    #[arg(long, help_heading = SERVICE)]
    pub service_type: Option<String>,
    /// Write no Service.
    #[arg(long, help_heading = SERVICE)]
    pub no_service: bool,
    /// Write an Ingress for this host.
    #[arg(long, help_heading = SERVICE)]
    pub ingress_host: Option<String>,
    /// The Ingress path (default `/`; implies an Ingress).
    #[arg(long, help_heading = SERVICE)]
    pub ingress_path: Option<String>,
    /// Prefix (default), Exact or ImplementationSpecific.
    #[arg(long, help_heading = SERVICE)]
    pub ingress_path_type: Option<String>,
    /// ingressClassName (implies an Ingress).
    #[arg(long, help_heading = SERVICE)]
    pub ingress_class: Option<String>,
    /// An Ingress annotation (K=V, repeatable; implies an Ingress).
    #[arg(long = "ingress-annotation", value_name = "K=V", value_parser = key_value, help_heading = SERVICE)]
    pub ingress_annotations: Vec<(String, String)>,
    /// Serve TLS for the host with the certificate in this Secret.
    #[arg(long, value_name = "SECRET", help_heading = SERVICE)]
    pub ingress_tls: Option<String>,

    /// A ConfigMap key from a file: `[KEY=]FILE` (key: the file name).
    #[arg(long = "config-file", value_name = "[KEY=]FILE", value_parser = DataFile::parse, help_heading = DATA)]
    pub config_files: Vec<DataFile>,
    /// A ConfigMap key: K=V (repeatable).
    #[arg(long = "config-literal", value_name = "K=V", value_parser = data_literal, help_heading = DATA)]
    pub config_literals: Vec<(String, String)>,
    /// Mount the ConfigMap's keys as files in DIR (else: envFrom).
    #[arg(long, value_name = "DIR", help_heading = DATA)]
    pub config_mount: Option<String>,
    /// Secret keys from an env file, one per variable, as `kubectl create
    /// secret generic --from-env-file` does.
    #[arg(long = "secret-env-file", value_name = "FILE", help_heading = DATA)]
    pub secret_env_files: Vec<PathBuf>,
    /// A Secret key: K=V (repeatable).
    // Read when the manifests are made, not by clap, whose errors would
    // repeat the value: it is a secret.
    #[arg(long = "secret-literal", value_name = "K=V", help_heading = DATA)]
    pub secret_literals: Vec<String>,
    /// Mount the Secret's keys as files in DIR (else: envFrom).
    #[arg(long, value_name = "DIR", help_heading = DATA)]
    pub secret_mount: Option<String>,

    /// PodDisruptionBudget: pods that must stay up (2, 50%).
    #[arg(long, conflicts_with = "pdb_max_unavailable", help_heading = SCALING)]
    pub pdb_min_available: Option<String>,
    /// PodDisruptionBudget: pods that may be down (1, 25%).
    #[arg(long, help_heading = SCALING)]
    pub pdb_max_unavailable: Option<String>,
    /// HorizontalPodAutoscaler (autoscaling/v2): most pods; needed for an HPA.
    #[arg(long, help_heading = SCALING)]
    pub hpa_max: Option<i32>,
    /// HorizontalPodAutoscaler: fewest pods.
    #[arg(long, requires = "hpa_max", help_heading = SCALING)]
    pub hpa_min: Option<i32>,
    /// HorizontalPodAutoscaler: target CPU use, percent of the request.
    #[arg(long, requires = "hpa_max", value_name = "PERCENT", help_heading = SCALING)]
    pub hpa_cpu: Option<i32>,
    /// HorizontalPodAutoscaler: target memory use, percent of the request.
    #[arg(long, requires = "hpa_max", value_name = "PERCENT", help_heading = SCALING)]
    pub hpa_memory: Option<i32>,

    /// The credentials of `--pull-secret`, found by the caller (the
    /// library never reads credential stores itself).
    #[arg(skip)]
    pub pull_credentials: Option<PullSecret>,
}

impl Options {
    /// The Ingress, if any flag asks for one.
    pub fn ingress(&self) -> Option<IngressOptions> {
        let wanted = self.ingress_host.is_some()
            || self.ingress_path.is_some()
            || self.ingress_class.is_some()
            || !self.ingress_annotations.is_empty()
            || self.ingress_tls.is_some();
        wanted.then(|| IngressOptions {
            host: self.ingress_host.clone(),
            path: self.ingress_path.clone(),
            path_type: self.ingress_path_type.clone(),
            class: self.ingress_class.clone(),
            annotations: self.ingress_annotations.iter().cloned().collect(),
            tls_secret: self.ingress_tls.clone(),
        })
    }

    /// The ConfigMap's keys: its files read, then its literals.
    pub fn config(&self) -> Result<DataOptions, K8sError> {
        let mut data = DataOptions {
            entries: Vec::new(),
            mount: self.config_mount.clone(),
        };
        for file in &self.config_files {
            let bytes = std::fs::read(&file.path).map_err(|source| K8sError::Read {
                flag: "--config-file",
                path: file.path.clone(),
                source,
            })?;
            data.entries.push((file.key.clone(), bytes));
        }
        for (k, v) in &self.config_literals {
            data.entries.push((k.clone(), v.clone().into_bytes()));
        }
        Ok(data)
    }

    /// The Secret's keys: its env files read, then its literals.
    pub fn secret(&self) -> Result<DataOptions, K8sError> {
        let mut data = DataOptions {
            entries: Vec::new(),
            mount: self.secret_mount.clone(),
        };
        for path in &self.secret_env_files {
            let text = std::fs::read_to_string(path).map_err(|source| K8sError::Read {
                flag: "--secret-env-file",
                path: path.clone(),
                source,
            })?;
            for (k, v) in parse_env_file(path, &text)? {
                data.entries.push((k, v.into_bytes()));
            }
        }
        for l in &self.secret_literals {
            // The value is a secret: the error names the key only.
            let Some((k, v)) = l.split_once('=') else {
                return Err(K8sError::option(
                    "--secret-literal",
                    "expected KEY=VALUE (the argument is not shown: it may be a secret)",
                ));
            };
            data_key(k).map_err(|reason| K8sError::option("--secret-literal", reason))?;
            data.entries.push((k.to_owned(), v.as_bytes().to_vec()));
        }
        Ok(data)
    }

    /// The PodDisruptionBudget, if asked for.
    pub fn pdb(&self) -> Option<PdbOptions> {
        match (&self.pdb_min_available, &self.pdb_max_unavailable) {
            (Some(v), _) => Some(PdbOptions::MinAvailable(v.clone())),
            (None, Some(v)) => Some(PdbOptions::MaxUnavailable(v.clone())),
            (None, None) => None,
        }
    }

    /// The HorizontalPodAutoscaler, if asked for.
    pub fn hpa(&self) -> Option<HpaOptions> {
        self.hpa_max.map(|max| HpaOptions {
            min: self.hpa_min,
            max,
            cpu_percent: self.hpa_cpu,
            memory_percent: self.hpa_memory,
        })
    }
}

/// A ConfigMap key read from a file: `--config-file [KEY=]FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub key: String,
    pub path: PathBuf,
}

impl DataFile {
    /// `[KEY=]FILE`; the key defaults to the file's name.
    pub fn parse(text: &str) -> Result<DataFile, String> {
        let (key, path) = match text.split_once('=') {
            Some((k, p)) => (k.to_owned(), PathBuf::from(p)),
            None => {
                let path = PathBuf::from(text);
                let key = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (key, path)
            }
        };
        data_key(&key)?;
        Ok(DataFile { key, path })
    }
}

/// A ConfigMap or Secret key and its value: `KEY=VALUE` with a valid key.
fn data_literal(text: &str) -> Result<(String, String), String> {
    let (k, v) = key_value(text)?;
    data_key(&k)?;
    Ok((k, v))
}

/// Checks a ConfigMap or Secret key.
fn data_key(key: &str) -> Result<(), String> {
    if is_data_key(key) {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a valid key (letters, digits, `-`, `_`, `.`); name it with KEY=..."
        ))
    }
}

/// `PORT[:TARGET][/PROTOCOL]`: the Service's port and the container port
/// (a number or a port name) it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub port: u16,
    pub target: String,
    pub protocol: String,
}

impl PortMap {
    /// `PORT[:TARGET][/PROTOCOL]`.
    pub fn parse(text: &str) -> Result<PortMap, String> {
        let bad = || "expected PORT[:TARGET][/tcp|udp|sctp], e.g. 80:3000".to_owned();
        let (ports, protocol) = match text.split_once('/') {
            Some((p, proto)) => match proto.to_ascii_lowercase().as_str() {
                "tcp" => (p, "TCP"),
                "udp" => (p, "UDP"),
                "sctp" => (p, "SCTP"),
                _ => return Err(bad()),
            },
            None => (text, "TCP"),
        };
        let (port, target) = ports.split_once(':').unwrap_or((ports, ports));
        let port: u16 = port.parse().ok().filter(|&p| p > 0).ok_or_else(bad)?;
        let valid_target = match target.parse::<u16>() {
            Ok(n) => n > 0,
            Err(_) => is_port_name(target),
        };
        if !valid_target {
            return Err(bad());
        }
        Ok(PortMap {
            port,
            target: target.to_owned(),
            protocol: protocol.to_owned(),
        })
    }
}

/// An IANA service name as Kubernetes checks port names: up to 15
/// lowercase letters, digits and inner single hyphens, with a letter.
fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[derive(Debug, Clone, Default)]
pub struct IngressOptions {
    pub host: Option<String>,
    /// Default `/`.
    pub path: Option<String>,
    /// Default `Prefix`.
    pub path_type: Option<String>,
    pub class: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// The Secret holding the TLS certificate for `host`.
    pub tls_secret: Option<String>,
}

/// A ConfigMap's or Secret's keys, and where its consumer sees them.
#[derive(Debug, Clone, Default)]
pub struct DataOptions {
    /// Keys in the order given; a later key replaces an earlier one.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Mount every key as a file in this directory; without it the keys
    /// become environment variables (`envFrom`).
    pub mount: Option<String>,
}

impl DataOptions {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdbOptions {
    MinAvailable(String),
    MaxUnavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HpaOptions {
    pub min: Option<i32>,
    pub max: i32,
    /// Target average CPU utilisation, percent of the requests.
    pub cpu_percent: Option<i32>,
    pub memory_percent: Option<i32>,
}

/// A docker-registry Secret holding the user's credentials for the
/// image's registry. The password never reaches a `Debug` output.
#[derive(Debug, Clone)]
pub struct PullSecret {
    pub name: String,
    /// The key in `auths` (`https://index.docker.io/v1/` for Docker Hub).
    pub registry: String,
    pub username: String,
    pub password: Secret,
}

/// A probe from a flag: `http=/health`, `tcp`, or `exec=COMMAND` (run
/// through the image's SHELL), then `port=`, `initial-delay=`, `period=`,
/// `timeout=`, `failure-threshold=`, `success-threshold=` (seconds and
/// counts), comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: ProbeAction,
    /// A number or a container port name; default: the first EXPOSE port.
    pub port: Option<String>,
    pub initial_delay: Option<i32>,
    pub period: Option<i32>,
    pub timeout: Option<i32>,
    pub failure_threshold: Option<i32>,
    pub success_threshold: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    Http {
        path: String,
    },
    Tcp,
    /// Shell-form command.
    Exec(String),
}

impl ProbeSpec {
    /// A probe flag's value; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<ProbeSpec, String> {
        let bad = |why: &str| why.to_owned();
        let mut parts = text.splitn(2, ',');
        let head = parts.next().unwrap_or_default();
        // `exec=` takes the rest of the text: a command may hold commas.
        let (action, rest) = match head.split_once('=').unwrap_or((head, "")) {
            ("http", path) => {
                let path = if path.is_empty() { "/" } else { path };
                if !path.starts_with('/') {
                    return Err(bad("an http path starts with /"));
                }
                (
                    ProbeAction::Http {
                        path: path.to_owned(),
                    },
                    parts.next(),
                )
            }
            ("tcp", "") => (ProbeAction::Tcp, parts.next()),
            ("tcp", port) => {
                let rest = parts.next();
                let spec = match rest {
                    Some(r) => format!("port={port},{r}"),
                    None => format!("port={port}"),
                };
                let mut probe = ProbeSpec::parse(&format!("tcp,{spec}"))?;
                probe.action = ProbeAction::Tcp;
                return Ok(probe);
            }
            ("exec", _) => {
                let command = text["exec=".len().min(text.len())..].to_owned();
                if command.trim().is_empty() {
                    return Err(bad("exec= needs a command"));
                }
                return Ok(ProbeSpec::new(ProbeAction::Exec(command)));
            }
            _ => {
                return Err(bad(
                    "expected http=PATH, tcp[=PORT] or exec=COMMAND, then port=, initial-delay=, \
                     period=, timeout=, failure-threshold=, success-threshold=",
                ));
            }
        };
        let mut probe = ProbeSpec::new(action);
        for item in rest.into_iter().flat_map(|r| r.split(',')) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(&format!("`{item}` is not KEY=VALUE")))?;
            if key == "port" {
                let ok = value.parse::<u16>().is_ok_and(|p| p > 0) || is_port_name(value);
                if !ok {
                    return Err(bad("port= takes a port number or a port name"));
                }
                probe.port = Some(value.to_owned());
                continue;
            }
            let number: i32 = value
                .parse()
                .ok()
                .filter(|&n| n >= 0)
                .ok_or_else(|| bad(&format!("{key}= takes a whole number, not `{value}`")))?;
            let slot = match key {
                "initial-delay" => &mut probe.initial_delay,
                "period" => &mut probe.period,
                "timeout" => &mut probe.timeout,
                "failure-threshold" => &mut probe.failure_threshold,
                "success-threshold" => &mut probe.success_threshold,
                _ => return Err(bad(&format!("unknown setting `{key}`"))),
            };
            *slot = Some(number);
        }
        Ok(probe)
    }

    fn new(action: ProbeAction) -> ProbeSpec {
        ProbeSpec {
            action,
            port: None,
            initial_delay: None,
            period: None,
            timeout: None,
            failure_threshold: None,
            success_threshold: None,
        }
    }
}

/// Splits `KEY=VALUE`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// `cpu=0.5,memory=512Mi` as resource quantities.
pub fn resources(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| key_value(item).map_err(|e| format!("`{item}`: {e}")))
        .collect()
}

/// Parses an env file as `kubectl create secret --from-env-file` reads
/// one: one `KEY=VALUE` per line, blank lines and lines starting with `#`
/// skipped, leading white space dropped, the value taken literally (quotes
/// included). kubectl takes a line with a name alone from its own
/// environment; hoist refuses it, so that a Secret never silently holds
/// whatever the build machine had.
pub fn parse_env_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, K8sError> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| K8sError::EnvFile {
            path: path.to_path_buf(),
            line: number + 1,
            reason,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!(
                "`{line}` has no `=`: write KEY=VALUE (hoist does not take values from its \
                 own environment)"
            )));
        };
        if !is_env_name(key) {
            return Err(err(format!(
                "`{key}` is not a valid variable name (letters, digits, `_`, `-`, `.`, not \
                 starting with a digit)"
            )));
        }
        entries.push((key.to_owned(), value.to_owned()));
    }
    Ok(entries)
}

/// Kubernetes' rule for environment variable names and ConfigMap or
/// Secret keys used as such (`IsEnvVarName`).
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Kubernetes' rule for ConfigMap and Secret keys.
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_as_documented() {
        let p = ProbeSpec::parse("http=/health,port=3000,initial-delay=5,period=10").unwrap();
        assert_eq!(
            p.action,
            ProbeAction::Http {
                path: "/health".into()
            }
        );
        assert_eq!(p.port.as_deref(), Some("3000"));
        assert_eq!((p.initial_delay, p.period), (Some(5), Some(10)));
        let t = ProbeSpec::parse("tcp=8080,period=3").unwrap();
        assert_eq!(
            (t.action, t.port.as_deref(), t.period),
            (ProbeAction::Tcp, Some("8080"), Some(3))
        );
        let e = ProbeSpec::parse("exec=test -f /tmp/ok, || exit 1").unwrap();
        assert_eq!(
            e.action,
            ProbeAction::Exec("test -f /tmp/ok, || exit 1".into())
        );
        for bad in [
            "http=health",
            "grpc=1",
            "http=/,period=-1",
            "http=/,bogus=1",
            "exec=",
        ] {
            assert!(ProbeSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_ports_parse() {
        let p = PortMap::parse("80:3000").unwrap();
        assert_eq!(
            (p.port, p.target.as_str(), p.protocol.as_str()),
            (80, "3000", "TCP")
        );
        let p = PortMap::parse("53/udp").unwrap();
        assert_eq!(
            (p.port, p.target.as_str(), p.protocol.as_str()),
            (53, "53", "UDP")
        );
        assert_eq!(PortMap::parse("443:https").unwrap().target, "https");
        for bad in ["", "0:80", "80:", "80:Bad_Name", "80/icmp", "x"] {
            assert!(PortMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_read_as_kubectl_reads_them() {
        let text = "# comment\n\nAPP_VERSION=2.0.0\r\n  SECRET_KEY=my-super-secret-key\nQUOTED=\"a b\"\nEMPTY=\n";
        let entries = parse_env_file(Path::new("app.env"), text).unwrap();
        assert_eq!(
            entries,
            vec![
                ("APP_VERSION".into(), "2.0.0".into()),
                ("SECRET_KEY".into(), "my-super-secret-key".into()),
                ("QUOTED".into(), "\"a b\"".into()),
                ("EMPTY".into(), "".into()),
            ]
        );
        let err = parse_env_file(Path::new("app.env"), "OK=1\nNOVALUE\n").unwrap_err();
        assert!(err.to_string().starts_with("app.env:2: "), "{err}");
        assert!(parse_env_file(Path::new("e"), "1BAD=x").is_err());
    }

    /// `hoist k8s`'s flags as clap parses them into [`Options`].
    fn parsed(args: &[&str]) -> Result<Options, clap::Error> {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            options: Options,
        }
        let argv = std::iter::once("hoist-k8s").chain(args.iter().copied());
        <Command as clap::Parser>::try_parse_from(argv).map(|c| c.options)
    }

    #[test]
    fn flags_parse_into_typed_options() {
        let o = parsed(&[
            "--label",
            "tier=web",
            "--requests",
            "cpu=0.2,memory=256Mi",
            "--env",
            "A=1=2",
            "--liveness",
            "tcp=8080",
            "--service-port",
            "80:3000",
            "--ingress-annotation",
            "a=b",
            "--config-literal",
            "k=v",
            "--hpa-max",
            "4",
            "--hpa-cpu",
            "70",
        ])
        .unwrap();
        assert_eq!(o.labels, [("tier".to_owned(), "web".to_owned())]);
        assert_eq!(o.requests.as_ref().unwrap()["memory"], "256Mi");
        assert_eq!(o.env, [("A".to_owned(), "1=2".to_owned())]);
        assert_eq!(o.liveness.as_ref().unwrap().action, ProbeAction::Tcp);
        assert_eq!(o.service_ports[0].port, 80);
        assert_eq!(o.config_literals, [("k".to_owned(), "v".to_owned())]);
        assert_eq!(o.hpa().unwrap().cpu_percent, Some(70));
        assert!(o.ingress().is_some(), "an annotation implies an Ingress");
        assert!(parsed(&[]).unwrap().ingress().is_none());
        for bad in [
            &["--label", "novalue"][..],
            &["--requests", "cpu"],
            &["--liveness", "grpc=1"],
            &["--service-port", "80:Bad_Name"],
            &["--config-literal", "bad key=1"],
            &["--config-file", "a/b="],
            &["--hpa-cpu", "50"],
            &["--pdb-min-available", "1", "--pdb-max-unavailable", "1"],
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_flags_read_their_files_and_keep_secrets_out_of_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, b"{}").unwrap();
        let env = dir.path().join("app.env");
        std::fs::write(&env, "A=1\n").unwrap();
        let config = format!("{}", file.display());
        let named = format!("cfg={}", file.display());
        let o = parsed(&[
            "--config-file",
            &config,
            "--config-file",
            &named,
            "--config-literal",
            "x=y",
            "--secret-env-file",
            env.to_str().unwrap(),
            "--secret-literal",
            "B=s3cret",
        ])
        .unwrap();
        let keys: Vec<_> = o
            .config()
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["config.json", "cfg", "x"]);
        assert_eq!(
            o.secret().unwrap().entries,
            [
                ("A".to_owned(), b"1".to_vec()),
                ("B".to_owned(), b"s3cret".to_vec())
            ]
        );
        let missing = parsed(&["--config-file", "/nonexistent/c.json"]).unwrap();
        let err = missing.config().unwrap_err().to_string();
        assert_eq!(err, "--config-file: cannot read /nonexistent/c.json");
        for bad in ["novalue-s3cret", "bad key=s3cret"] {
            let o = parsed(&["--secret-literal", bad]).unwrap();
            let err = o.secret().unwrap_err().to_string();
            assert!(err.starts_with("--secret-literal: "), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
