//! Registry authentication: `WWW-Authenticate` challenges, credentials from
//! Docker's `config.json`, and the bearer tokens a token server hands out.
//!
//! Only the `auths` map of `config.json` is read for now (base64
//! `user:password` in `auth`, or `username`/`password`); credential helpers
//! (`credsStore`, `credHelpers`) and podman's `auth.json` belong here too
//! when they come, behind [`Credentials::lookup`]. Secrets never reach a
//! `Debug` or `Display` output: [`Secret`] prints as `<redacted>`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::error::{RegistryError, Result};

/// A string that must never be printed: a password or a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user name and password for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    /// The `Authorization` header value for basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The credentials for registry `host` (`docker.io`, `127.0.0.1:5000`)
    /// in the Docker config at `path`, if the file exists and has any.
    pub fn lookup(path: &Path, host: &str) -> Result<Option<Credentials>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(credentials_error(path, e.to_string())),
        };
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
        }
        let config: Config =
            serde_json::from_str(&text).map_err(|e| credentials_error(path, e.to_string()))?;
        let wanted = canonical_host(host);
        let Some(entry) = config
            .auths
            .iter()
            .find(|(key, _)| canonical_host(key) == wanted)
            .map(|(_, entry)| entry)
        else {
            return Ok(None);
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    credentials_error(path, format!("the `auth` of {host} is not base64 text"))
                })?;
            let (username, password) = decoded.split_once(':').ok_or_else(|| {
                credentials_error(path, format!("the `auth` of {host} is not `user:password`"))
            })?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: Secret::new(password),
            }));
        }
        Ok(match (&entry.username, &entry.password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: Secret::new(password.clone()),
            }),
            _ => None,
        })
    }
}

fn credentials_error(path: &Path, reason: String) -> RegistryError {
    RegistryError::Credentials {
        path: path.display().to_string(),
        reason,
    }
}

/// The key a `config.json` entry or a host is compared by: no scheme, no
/// path, and Docker Hub's many names as one (`https://index.docker.io/v1/`
/// is what `docker login` writes for it).
fn canonical_host(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

/// Where Docker keeps its client config: `$DOCKER_CONFIG/config.json`, or
/// `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// One challenge from a `WWW-Authenticate` header (RFC 7235).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="...",service="...",scope="..."`: get a token from
    /// `realm` (the distribution token spec).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// `Basic realm="..."`: send the credentials with every request.
    Basic,
    /// Anything else, kept for the error message.
    Other(String),
}

impl Challenge {
    /// Parses one `WWW-Authenticate` value. Parameters are `name=value` or
    /// `name="quoted value"` with `\` escapes, separated by commas; names
    /// are case-insensitive. A Bearer challenge without a realm is
    /// [`Challenge::Other`]: there is nowhere to ask for a token.
    pub fn parse(header: &str) -> Challenge {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((header, ""));
        let params = parse_params(rest);
        if scheme.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if scheme.eq_ignore_ascii_case("bearer")
            && let Some(realm) = params.get("realm").filter(|r| !r.is_empty())
        {
            return Challenge::Bearer {
                realm: realm.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            };
        }
        Challenge::Other(header.to_owned())
    }
}

fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars
            .next_if(|c| c.is_ascii_whitespace() || *c == ',')
            .is_some()
        {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            name.push(c);
        }
        if name.is_empty() && chars.peek().is_none() {
            return params;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                // Skip anything up to the next comma after a closing quote.
                while chars.next_if(|c| *c != ',').is_some() {}
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    value.push(c);
                }
                value.truncate(value.trim_end().len());
            }
        }
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() {
            params.insert(name, value);
        }
    }
}

/// What a token server answers (distribution's token spec: `token`, or
/// OAuth2's `access_token`; `expires_in` seconds, 60 when absent).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }
        );
        // Scheme and names are case-insensitive; spaces after commas, tokens
        // unquoted, escapes inside quotes, and a scope with a comma.
        assert_eq!(
            Challenge::parse(
                r#"bearer Realm=http://127.0.0.1:1/t, service="a \"b\"", scope="repository:x:pull,push""#
            ),
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("a \"b\"".into()),
                scope: Some("repository:x:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Bearer realm="https://ghcr.io/token""#),
            Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: None,
                scope: None,
            }
        );
    }

    #[test]
    fn basic_and_unknown_challenges() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(
            Challenge::parse(r#"Bearer service="x""#),
            Challenge::Other(r#"Bearer service="x""#.into())
        );
        assert_eq!(
            Challenge::parse("Negotiate"),
            Challenge::Other("Negotiate".into())
        );
    }

    #[test]
    fn credentials_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(Credentials::lookup(&path, "docker.io").unwrap(), None);
        let auth = base64::engine::general_purpose::STANDARD.encode("me:pa:ss");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
                   "127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#
            ),
        )
        .unwrap();
        let hub = Credentials::lookup(&path, "registry-1.docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(hub.username, "me");
        assert_eq!(hub.password.expose(), "pa:ss");
        assert_eq!(
            hub.basic_header(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("me:pa:ss")
            )
        );
        assert!(!format!("{hub:?}").contains("pa:ss"));
        let local = Credentials::lookup(&path, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.expose()),
            ("u", "p")
        );
        assert_eq!(Credentials::lookup(&path, "ghcr.io").unwrap(), None);

        std::fs::write(&path, r#"{"auths":{"ghcr.io":{"auth":"%%%"}}}"#).unwrap();
        let err = Credentials::lookup(&path, "ghcr.io").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
    }
}
