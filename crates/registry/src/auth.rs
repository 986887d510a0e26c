//! Registry authentication: `WWW-Authenticate` challenges, credentials from
//! Docker's `config.json`, and the bearer tokens a token server hands out.
//!
//! Credentials themselves live in [`super::credentials`]. Secrets never
//! reach a `Debug` or `Display` output: [`Secret`] prints as `<redacted>`.

use std::collections::BTreeMap;
use std::fmt;

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

pub use super::credentials::{Credentials, docker_config_path};

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
    /// An OAuth2 refresh token: what `docker login` keeps as the
    /// `identitytoken` when the token server hands one out.
    #[serde(default)]
    pub refresh_token: Option<String>,
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
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:library/busybox:pull"),
            "repository%3Alibrary%2Fbusybox%3Apull"
        );
    }
}
