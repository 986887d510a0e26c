//! Image references, parsed and normalised exactly as Docker does
//! (distribution's `reference.ParseNormalizedNamed`).
//!
//! `node` is `docker.io/library/node:latest`; `user/app` is
//! `docker.io/user/app:latest`; `localhost:5000/app:v1` keeps its
//! registry; a first component with a `.` or a `:`, or `localhost`, is a
//! registry host; `index.docker.io` means `docker.io`, whose API host is
//! `registry-1.docker.io`. A digest may follow a tag (`app:1@sha256:...`).

use hoist_oci::Digest;

/// Docker Hub's canonical domain in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API answers on.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A reference that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: {reference}: {reason}")]
    Invalid { reference: String, reason: String },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`...
    pub domain: String,
    /// `library/node`, `user/app`...
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises; a reference with neither tag nor digest gets
    /// `latest`.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("the name is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| invalid(&e.to_string()))?),
            ),
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(invalid(
                    "a tag is up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                ));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        for component in path.split('/') {
            let ok = !component.is_empty()
                && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && component.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                });
            if !ok {
                return Err(invalid(
                    "path components are lowercase letters and digits, separated by '.', '_' or '-'",
                ));
            }
        }
        if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(invalid("the registry host is not valid"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, the repository without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The host to talk to for this registry.
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.domain
        }
    }

    /// Docker's short form: `node:14`, `user/app:v1`, `localhost:5000/app:v1`.
    pub fn familiar(&self) -> String {
        let mut name = if self.domain == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        };
        if let Some(t) = &self.tag {
            name.push(':');
            name.push_str(t);
        }
        if let Some(d) = &self.digest {
            name.push('@');
            name.push_str(&d.to_string());
        }
        name
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(norm("node"), "docker.io/library/node:latest");
        assert_eq!(norm("node:14-alpine"), "docker.io/library/node:14-alpine");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/user/app:v2"), "docker.io/user/app:v2");
        assert_eq!(norm("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("ghcr.io/org/team/app:1.0"), "ghcr.io/org/team/app:1.0");
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(
            norm(&format!("node@{d}")),
            format!("docker.io/library/node@{d}")
        );
        assert_eq!(
            norm(&format!("node:14@{d}")),
            format!("docker.io/library/node:14@{d}")
        );
        assert_eq!(
            Reference::parse("node").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            Reference::parse("docker.io/library/node:14")
                .unwrap()
                .familiar(),
            "node:14"
        );
        assert_eq!(
            Reference::parse("localhost:5000/a/b:c").unwrap().familiar(),
            "localhost:5000/a/b:c"
        );
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            "Node",
            "user/App",
            "app:",
            "app:-x",
            "a//b",
            "app@sha256:xyz",
            "-app",
            "app:has space",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
