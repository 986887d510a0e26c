//! What `hoist build --secret` and `--ssh` give RUN steps, in BuildKit's
//! (buildx's) syntax.
//!
//! `--secret id=ID[,type=file|env][,src=PATH|env=VAR]`: a file read, or an
//! environment variable taken, when a step mounts it; with neither source,
//! the variable named ID if it is set, else the file named ID.
//! `--ssh ID[=SOCKET|KEY[,KEY...]]`: an agent's socket (`default` alone is
//! `$SSH_AUTH_SOCK`), or private key files loaded into an agent hoist
//! starts for the build. Contents are read only when a step needs them
//! and never appear in an error: errors name the id, the file or the
//! variable.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a secret's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Where an ssh id's agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// An agent's socket, forwarded.
    Socket(PathBuf),
    /// Private key files, served by an agent started for the build.
    Keys(Vec<PathBuf>),
}

/// The build's secrets and ssh agents, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub secrets: BTreeMap<String, SecretSource>,
    pub ssh: BTreeMap<String, SshSource>,
}

/// A `--secret` or `--ssh` value that cannot be used, or a secret that
/// cannot be read. Never holds a secret's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--secret {spec}: {reason}")]
    SecretSpec { spec: String, reason: String },
    #[error("--ssh {spec}: {reason}")]
    SshSpec { spec: String, reason: String },
    #[error("cannot read secret {id} from {}", path.display())]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id}: environment variable {var} is not set")]
    Env { id: String, var: String },
}

impl Secrets {
    /// Adds one `--secret` value; `env` looks variables up (the process's
    /// environment, in the binary).
    pub fn add_secret(
        &mut self,
        spec: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), SecretError> {
        let fail = |reason: String| SecretError::SecretSpec {
            spec: spec.to_string(),
            reason,
        };
        let (mut id, mut kind, mut src, mut var) = (None, None, None, None);
        for field in spec.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                return Err(fail(format!(
                    "invalid field '{field}' must be a key=value pair"
                )));
            };
            match key.to_ascii_lowercase().as_str() {
                "id" => id = Some(value.to_string()),
                "type" if value == "file" || value == "env" => kind = Some(value.to_string()),
                "type" => return Err(fail(format!("unsupported secret type \"{value}\""))),
                "src" | "source" => src = Some(value.to_string()),
                "env" => var = Some(value.to_string()),
                other => {
                    return Err(fail(format!(
                        "unexpected key '{other}' (expected id, type, src or env)"
                    )));
                }
            }
        }
        if kind.as_deref() == Some("env") && var.is_none() {
            var = src.take();
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| fail("the secret needs an id: id=ID".into()))?;
        let source = match (src, var, kind.as_deref()) {
            (Some(_), Some(_), _) => {
                return Err(fail("give src= or env=, not both".into()));
            }
            (Some(path), None, _) => SecretSource::File(PathBuf::from(path)),
            (None, Some(var), _) => SecretSource::Env(var),
            (None, None, Some("env")) => SecretSource::Env(id.clone()),
            (None, None, Some(_)) => SecretSource::File(PathBuf::from(&id)),
            (None, None, None) if env(&id).is_some() => SecretSource::Env(id.clone()),
            (None, None, None) => SecretSource::File(PathBuf::from(&id)),
        };
        self.secrets.insert(id, source);
        Ok(())
    }

    /// Adds one `--ssh` value; `env` looks up `SSH_AUTH_SOCK`.
    pub fn add_ssh(
        &mut self,
        spec: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), SecretError> {
        let fail = |reason: String| SecretError::SshSpec {
            spec: spec.to_string(),
            reason,
        };
        let (id, paths) = match spec.split_once('=') {
            Some((id, paths)) => (id, Some(paths)),
            None => (spec, None),
        };
        if id.is_empty() {
            return Err(fail("expected default, ID=SOCKET or ID=KEYFILE".into()));
        }
        let paths: Vec<PathBuf> = match paths {
            Some(p) => p
                .split(',')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => Vec::new(),
        };
        let source = if paths.is_empty() {
            let socket = env("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    fail("SSH_AUTH_SOCK is not set: start an ssh-agent, or give ID=SOCKET".into())
                })?;
            SshSource::Socket(PathBuf::from(socket))
        } else {
            use std::os::unix::fs::FileTypeExt;
            let sockets = paths
                .iter()
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
                .count();
            match (sockets, paths.len()) {
                (0, _) => SshSource::Keys(paths),
                (1, 1) => SshSource::Socket(paths.into_iter().next().expect("one path")),
                _ => {
                    return Err(fail(
                        "an ssh id is one agent socket or a list of key files, not both".into(),
                    ));
                }
            }
        };
        self.ssh.insert(id.to_string(), source);
        Ok(())
    }

    /// The content of secret `id`, `None` when the build has no such
    /// secret.
    pub fn read(
        &self,
        id: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Vec<u8>>, SecretError> {
        match self.secrets.get(id) {
            None => Ok(None),
            Some(SecretSource::File(path)) => {
                std::fs::read(path)
                    .map(Some)
                    .map_err(|source| SecretError::Read {
                        id: id.to_string(),
                        path: path.clone(),
                        source,
                    })
            }
            Some(SecretSource::Env(var)) => {
                env(var)
                    .map(|v| Some(v.into_bytes()))
                    .ok_or_else(|| SecretError::Env {
                        id: id.to_string(),
                        var: var.clone(),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("t0ken".into()),
            "SSH_AUTH_SOCK" => Some("/run/agent.sock".into()),
            _ => None,
        }
    }

    fn secret(spec: &str) -> Result<SecretSource, String> {
        let mut s = Secrets::default();
        s.add_secret(spec, &env).map_err(|e| e.to_string())?;
        Ok(s.secrets.into_values().next().unwrap())
    }

    #[test]
    fn secret_sources_follow_buildx() {
        let file = |p: &str| Ok(SecretSource::File(p.into()));
        let var = |v: &str| Ok(SecretSource::Env(v.into()));
        assert_eq!(secret("id=a,src=/k"), file("/k"));
        assert_eq!(secret("id=a,source=/k"), file("/k"));
        assert_eq!(secret("id=a,env=TOKEN"), var("TOKEN"));
        assert_eq!(secret("id=a,type=env,src=TOKEN"), var("TOKEN"));
        assert_eq!(secret("id=a,type=env"), var("a"));
        assert_eq!(secret("id=TOKEN"), var("TOKEN"));
        assert_eq!(secret("id=notset"), file("notset"));
        assert_eq!(
            secret("src=/k").unwrap_err(),
            "--secret src=/k: the secret needs an id: id=ID"
        );
        assert!(secret("id=a,type=ssh").unwrap_err().contains("unsupported"));
        assert!(
            secret("id=a,what=b")
                .unwrap_err()
                .contains("unexpected key")
        );
        assert!(secret("id=a,src").unwrap_err().contains("key=value"));
    }

    #[test]
    fn ssh_ids_take_the_agent_from_the_environment_or_a_path() {
        let mut s = Secrets::default();
        s.add_ssh("default", &env).unwrap();
        s.add_ssh("deploy=/keys/id_ed25519,/keys/other", &env)
            .unwrap();
        assert_eq!(
            s.ssh["default"],
            SshSource::Socket("/run/agent.sock".into())
        );
        assert_eq!(
            s.ssh["deploy"],
            SshSource::Keys(vec!["/keys/id_ed25519".into(), "/keys/other".into()])
        );
        let err = s.add_ssh("default", &|_| None).unwrap_err().to_string();
        assert!(err.contains("SSH_AUTH_SOCK is not set"), "{err}");
    }

    #[test]
    fn reading_errors_name_the_source_never_a_content() {
        let mut s = Secrets::default();
        s.add_secret("id=a,src=/nonexistent/k", &env).unwrap();
        s.add_secret("id=b,env=UNSET", &env).unwrap();
        s.add_secret("id=c,env=TOKEN", &env).unwrap();
        assert_eq!(
            s.read("a", &env).unwrap_err().to_string(),
            "cannot read secret a from /nonexistent/k"
        );
        assert_eq!(
            s.read("b", &env).unwrap_err().to_string(),
            "secret b: environment variable UNSET is not set"
        );
        assert_eq!(s.read("c", &env).unwrap(), Some(b"t0ken".to_vec()));
        assert_eq!(s.read("z", &env).unwrap(), None);
    }
}
