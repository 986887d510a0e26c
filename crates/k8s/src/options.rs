//! What the user asks of the manifests, beyond what the image says. Each
//! field is one `hoist k8s` flag (docs/k8s.md); the parsers here read the
//! flags' small `key=value` languages so they are tested without the CLI.

use super::K8sError;
use hoist_registry::auth::Secret;
use std::collections::BTreeMap;
use std::path::Path;

/// Everything `hoist k8s` can be told. `Default` is the no-flag output:
/// a Deployment and a Service derived from the image alone.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The app's name: Deployment, `app` label, default for the others
    /// (default: the repository's last path component).
    pub name: Option<String>,
    pub container_name: Option<String>,
    pub service_name: Option<String>,
    pub ingress_name: Option<String>,
    pub configmap_name: Option<String>,
    pub secret_name: Option<String>,
    pub config_volume_name: Option<String>,
    pub secret_volume_name: Option<String>,
    /// Extra labels on every object and on the pods.
    pub labels: BTreeMap<String, String>,
    pub replicas: Option<i32>,
    /// `cpu`, `memory`... to Kubernetes quantities, kept as written.
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    /// `env`, in the order given.
    pub env: Vec<(String, String)>,
    /// Existing ConfigMaps and Secrets to take every key of as variables.
    pub env_from_configmaps: Vec<String>,
    pub env_from_secrets: Vec<String>,
    pub liveness: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
    pub startup: Option<ProbeSpec>,
    /// Do not turn HEALTHCHECK into probes.
    pub no_healthcheck_probes: bool,
    pub strategy: Option<String>,
    pub max_surge: Option<String>,
    pub max_unavailable: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`.
    pub pull_policy: Option<String>,
    /// Existing (or generated) docker-registry Secrets the pods pull with.
    pub image_pull_secrets: Vec<String>,
    pub read_only_root_filesystem: bool,
    /// Leave out the default hardening (no privilege escalation, all
    /// capabilities dropped, the runtime's default seccomp profile).
    pub no_hardening: bool,
    /// Reference the image as `REPO:TAG@sha256:...` rather than
    /// `REPO@sha256:...`.
    pub keep_tag: bool,
    pub service: ServiceOptions,
    pub ingress: Option<IngressOptions>,
    pub config: DataOptions,
    pub secret: DataOptions,
    pub pdb: Option<PdbOptions>,
    pub hpa: Option<HpaOptions>,
    pub pull_secret: Option<PullSecret>,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// Write no Service.
    pub disabled: bool,
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer`.
    pub kind: Option<String>,
    /// Service ports; default: one per EXPOSE port, to itself.
    pub ports: Vec<PortMap>,
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
    pub fn parse(text: &str) -> Result<PortMap, K8sError> {
        let bad = || {
            K8sError::option(
                &format!("--service-port {text}"),
                "expected PORT[:TARGET][/tcp|udp|sctp], e.g. 80:3000",
            )
        };
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
    pub fn parse(flag: &str, text: &str) -> Result<ProbeSpec, K8sError> {
        let bad = |why: &str| K8sError::option(&format!("{flag} {text}"), why);
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
                let mut probe = ProbeSpec::parse(flag, &format!("tcp,{spec}"))?;
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

/// Splits `KEY=VALUE`; `flag` names the flag in the error.
pub fn key_value(flag: &str, text: &str) -> Result<(String, String), K8sError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(K8sError::option(
            &format!("{flag} {text}"),
            "expected KEY=VALUE",
        )),
    }
}

/// `cpu=0.5,memory=512Mi` as resource quantities.
pub fn resources(flag: &str, text: &str) -> Result<BTreeMap<String, String>, K8sError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| key_value(flag, item))
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
        let p = ProbeSpec::parse(
            "--liveness",
            "http=/health,port=3000,initial-delay=5,period=10",
        )
        .unwrap();
        assert_eq!(
            p.action,
            ProbeAction::Http {
                path: "/health".into()
            }
        );
        assert_eq!(p.port.as_deref(), Some("3000"));
        assert_eq!((p.initial_delay, p.period), (Some(5), Some(10)));
        let t = ProbeSpec::parse("--readiness", "tcp=8080,period=3").unwrap();
        assert_eq!(
            (t.action, t.port.as_deref(), t.period),
            (ProbeAction::Tcp, Some("8080"), Some(3))
        );
        let e = ProbeSpec::parse("--liveness", "exec=test -f /tmp/ok, || exit 1").unwrap();
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
            assert!(ProbeSpec::parse("--liveness", bad).is_err(), "{bad}");
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
}
