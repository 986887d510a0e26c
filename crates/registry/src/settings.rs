//! hoist's config file: registry mirrors, insecure registries and CA
//! bundles (docs/config.md describes it to users), merged with the
//! command line's flags into what every registry-facing command uses.
//!
//! The file is `$HOIST_CONFIG`, else `$XDG_CONFIG_HOME/hoist/config.toml`,
//! else `~/.config/hoist/config.toml`; a missing default file is no
//! configuration, a missing file named explicitly is an error. A mistake
//! is reported as `FILE:LINE:COLUMN: message` with a hint.
//!
//! ```toml
//! insecure-registries = ["registry.lan:5000"]
//! ca-certs = ["/etc/hoist/company-ca.pem"]
//!
//! [mirrors]
//! "docker.io" = ["127.0.0.1:5000", "https://mirror.example"]
//!
//! [registries."registry.lan:5000"]
//! ca-cert = "lan-ca.pem"   # relative to the file's directory
//!
//! # Shared build cache: read and written by every build (or only one way).
//! cache = "type=registry,ref=registry.lan:5000/ci/cache,mode=max"
//! ```
//!
//! (A TOML file puts top-level keys such as `cache` before any table.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::client::ClientOptions;
use super::error::RegistryError;
use super::pull::PullOptions;
use super::push::{Format, PushOptions};
use super::tls::CaBundle;

/// What the config file can say about registries, after the flags are
/// merged in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `(registry domain, mirror)` pairs in the order they are tried.
    pub mirrors: Vec<(String, String)>,
    /// Hosts talked to over plain HTTP.
    pub insecure: Vec<String>,
    /// `(registry or None for all, PEM file)`.
    pub ca_certs: Vec<(Option<String>, PathBuf)>,
    /// Shared build cache specs (`--cache-from`/`--cache-to` syntax):
    /// `cache` is both, `cache-from` and `cache-to` one way each.
    pub cache: Vec<String>,
    pub cache_from: Vec<String>,
    pub cache_to: Vec<String>,
    /// The file these came from, if any.
    pub file: Option<PathBuf>,
    /// Why the default file was skipped, for the caller to show: it
    /// exists but cannot be read, which Docker too only warns about.
    pub warning: Option<String>,
}

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the hoist config file {path}; fix the path (HOIST_CONFIG, --config)")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}\n  hint: {hint}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
        hint: String,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    ca_certs: Vec<PathBuf>,
    #[serde(default)]
    mirrors: BTreeMap<String, Mirrors>,
    #[serde(default)]
    registries: BTreeMap<String, Registry>,
    #[serde(default)]
    cache: OneOrMany,
    #[serde(default)]
    cache_from: OneOrMany,
    #[serde(default)]
    cache_to: OneOrMany,
}

/// A string or an array of strings.
#[derive(serde::Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// `"docker.io" = [...]`, or `docker.io = [...]`, which TOML reads as a
/// table `docker` holding `io`: both mean the domain `docker.io`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Mirrors {
    List(Vec<String>),
    Nested(BTreeMap<String, Mirrors>),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Registry {
    #[serde(default)]
    insecure: bool,
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    mirrors: Vec<String>,
}

const HINT: &str = "docs/config.md shows the file's keys: insecure-registries, ca-certs, \
                    cache, cache-from, cache-to, [mirrors] and [registries.\"HOST\"] with \
                    insecure, ca-cert and mirrors";

impl Settings {
    /// The config file to read: `$HOIST_CONFIG`, else
    /// `$XDG_CONFIG_HOME/hoist/config.toml`, else
    /// `~/.config/hoist/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(file) = env("HOIST_CONFIG") {
            return Some(PathBuf::from(file));
        }
        env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))
            .map(|dir| dir.join("hoist/config.toml"))
    }

    /// Reads `explicit` (which must exist) or the default file (which may
    /// be absent).
    pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let (path, required) = match explicit {
            Some(path) => (path.to_owned(), true),
            None => match Settings::default_path() {
                Some(path) => (path, std::env::var_os("HOIST_CONFIG").is_some()),
                None => return Ok(Settings::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Settings::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Settings::default())
            }
            // As Docker with its config: a directory this user cannot look
            // into (another user's HOME) hides no file; a file it sees but
            // cannot read is skipped with a warning.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !required => {
                Ok(Settings {
                    warning: std::fs::metadata(&path).is_ok().then(|| {
                        format!(
                            "cannot read the hoist config file {} ({e}); going on without it",
                            path.display()
                        )
                    }),
                    ..Settings::default()
                })
            }
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses the config file `text` read from `path` (relative CA paths
    /// are taken from its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            let message = e.message().trim().to_owned();
            let message = if message.contains("did not match any variant of untagged enum Mirrors") {
                "a mirror list is an array of hosts: \"docker.io\" = [\"127.0.0.1:5000\"]"
                    .to_owned()
            } else if message.contains("did not match any variant") {
                "a cache setting is a spec or an array of specs: cache = \"type=registry,ref=HOST/REPO\""
                    .to_owned()
            } else {
                message
            };
            ConfigError::Syntax {
                path: path.display().to_string(),
                line,
                column,
                message,
                hint: HINT.to_owned(),
            }
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut settings = Settings {
            insecure: file.insecure_registries,
            cache: file.cache.into_vec(),
            cache_from: file.cache_from.into_vec(),
            cache_to: file.cache_to.into_vec(),
            file: Some(path.to_owned()),
            ..Settings::default()
        };
        settings
            .ca_certs
            .extend(file.ca_certs.into_iter().map(|p| (None, dir.join(p))));
        fn flatten(
            prefix: &str,
            mirrors: BTreeMap<String, Mirrors>,
            out: &mut Vec<(String, String)>,
        ) {
            for (key, value) in mirrors {
                let domain = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                match value {
                    Mirrors::List(hosts) => {
                        out.extend(hosts.into_iter().map(|h| (domain.clone(), h)))
                    }
                    Mirrors::Nested(inner) => flatten(&domain, inner, out),
                }
            }
        }
        flatten("", file.mirrors, &mut settings.mirrors);
        for (host, registry) in file.registries {
            if registry.insecure {
                settings.insecure.push(host.clone());
            }
            if let Some(ca) = registry.ca_cert {
                settings.ca_certs.push((Some(host.clone()), dir.join(ca)));
            }
            settings
                .mirrors
                .extend(registry.mirrors.into_iter().map(|m| (host.clone(), m)));
        }
        Ok(settings)
    }

    /// Adds the command line's settings: its mirrors for a registry
    /// replace the file's for that registry, its insecure registries and
    /// CA bundles add to the file's (a CA given for a registry replaces
    /// the file's for that registry).
    pub fn with_flags(
        mut self,
        mirrors: &[(String, String)],
        insecure: &[String],
        ca_certs: &[(Option<String>, PathBuf)],
    ) -> Settings {
        self.mirrors
            .retain(|(domain, _)| !mirrors.iter().any(|(d, _)| d == domain));
        self.mirrors.extend(mirrors.iter().cloned());
        for host in insecure {
            if !self.insecure.contains(host) {
                self.insecure.push(host.clone());
            }
        }
        self.ca_certs.retain(|(registry, _)| {
            registry.is_none() || !ca_certs.iter().any(|(r, _)| r == registry)
        });
        self.ca_certs.extend(ca_certs.iter().cloned());
        self
    }

    /// The client options these settings give (CA bundles read now, so a
    /// bad one is reported before any request).
    pub fn client_options(&self) -> Result<ClientOptions, RegistryError> {
        let ca_bundles = self
            .ca_certs
            .iter()
            .map(|(registry, path)| CaBundle::load(registry.clone(), path))
            .collect::<Result<_, _>>()?;
        Ok(ClientOptions {
            insecure: self.insecure.clone(),
            ca_bundles,
            ..ClientOptions::default()
        })
    }

    /// What a pull (and `FROM`) needs.
    pub fn pull_options(&self) -> Result<PullOptions, RegistryError> {
        let client = self.client_options()?;
        Ok(PullOptions {
            mirrors: self.mirrors.clone(),
            insecure: client.insecure,
            ca_bundles: client.ca_bundles,
            ..PullOptions::default()
        })
    }

    /// What a push needs.
    pub fn push_options(&self, format: Format) -> Result<PushOptions, RegistryError> {
        let client = self.client_options()?;
        Ok(PushOptions {
            format,
            insecure: client.insecure,
            ca_bundles: client.ca_bundles,
            docker_config: None,
            by_digest: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Path::new("/etc/hoist/config.toml"))
    }

    #[test]
    fn every_key_of_the_documented_file() {
        let settings = parse(
            r#"
insecure-registries = ["plain.lan:5000"]
ca-certs = ["company.pem"]

[mirrors]
docker.io = ["127.0.0.1:5000", "https://mirror.example"]
"quay.io" = ["127.0.0.1:5001"]

[registries."registry.lan:5000"]
insecure = true
ca-cert = "/certs/lan.pem"
mirrors = ["127.0.0.1:6000"]
"#,
        )
        .unwrap();
        assert_eq!(
            settings.mirrors,
            [
                ("docker.io".into(), "127.0.0.1:5000".into()),
                ("docker.io".into(), "https://mirror.example".into()),
                ("quay.io".into(), "127.0.0.1:5001".into()),
                ("registry.lan:5000".into(), "127.0.0.1:6000".into()),
            ]
        );
        assert_eq!(settings.insecure, ["plain.lan:5000", "registry.lan:5000"]);
        assert_eq!(
            settings.ca_certs,
            [
                (None, PathBuf::from("/etc/hoist/company.pem")),
                (
                    Some("registry.lan:5000".into()),
                    PathBuf::from("/certs/lan.pem")
                ),
            ]
        );
    }

    #[test]
    fn flags_override_mirrors_per_registry_and_add_the_rest() {
        let settings = parse(
            r#"
insecure-registries = ["a:1"]
ca-certs = ["all.pem"]
[mirrors]
"docker.io" = ["m1"]
"quay.io" = ["m2"]
[registries.b]
ca-cert = "b.pem"
"#,
        )
        .unwrap()
        .with_flags(
            &[("docker.io".into(), "flag-mirror".into())],
            &["a:1".into(), "c:3".into()],
            &[(Some("b".into()), PathBuf::from("/flag/b.pem"))],
        );
        assert_eq!(
            settings.mirrors,
            [
                ("quay.io".into(), "m2".into()),
                ("docker.io".into(), "flag-mirror".into())
            ]
        );
        assert_eq!(settings.insecure, ["a:1", "c:3"]);
        assert_eq!(
            settings.ca_certs,
            [
                (None, PathBuf::from("/etc/hoist/all.pem")),
                (Some("b".into()), PathBuf::from("/flag/b.pem"))
            ]
        );
    }

    #[test]
    fn mistakes_name_the_file_line_and_column_with_a_hint() {
        let err = parse("insecure-registries = [\"a\"]\nmirror = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/hoist/config.toml:2:1: "), "{err}");
        assert!(err.contains("unknown field `mirror`"), "{err}");
        assert!(err.contains("hint: docs/config.md"), "{err}");

        let err = parse("[mirrors]\n\"docker.io\" = \"127.0.0.1:5000\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/hoist/config.toml:2:"), "{err}");
        assert!(err.contains("array of hosts"), "{err}");

        let err = parse("insecure-registries = [\"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/hoist/config.toml:"), "{err}");
    }

    #[test]
    fn a_missing_default_file_is_no_settings_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::load(Some(&dir.path().join("absent.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.toml"), "{err}");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[mirrors]\n\"docker.io\" = [\"127.0.0.1:5000\"]\n").unwrap();
        let loaded = Settings::load(Some(&path)).unwrap();
        assert_eq!(loaded.mirrors.len(), 1);
        assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
    }
}
