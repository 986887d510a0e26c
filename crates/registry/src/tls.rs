//! Custom certificate authorities for registries that present a
//! certificate no public root signs (a company CA, a self-signed test
//! registry).
//!
//! A [`CaBundle`] is a PEM file of one or more CA certificates, for one
//! registry host or for every registry. A registry with a bundle is
//! verified against the system's roots plus the bundle, as Docker adds
//! `certs.d/HOST/ca.crt` to the system pool; the system roots come from
//! `SSL_CERT_FILE` or the distribution's bundle file. Registries without a
//! bundle keep the client's default roots.

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, PemItem};

use super::error::{RegistryError, Result};

/// CA certificates trusted for one registry, or all of them.
#[derive(Clone)]
pub struct CaBundle {
    /// `host` or `host:port`; `None` for every registry.
    pub registry: Option<String>,
    /// The file the certificates were read from, for messages.
    pub path: PathBuf,
    pub(crate) certs: Vec<Certificate<'static>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("registry", &self.registry)
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl CaBundle {
    /// Reads the PEM certificates in `path`; a file with none is an error.
    pub fn load(registry: Option<String>, path: &Path) -> Result<CaBundle> {
        let error = |reason: String| RegistryError::CaBundle {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let certs = certificates(&pem).map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error(
                "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(CaBundle {
            registry,
            path: path.to_owned(),
            certs,
        })
    }
}

/// Whether settings for `registry` apply to `host` (`name` or
/// `name:port`): `None` covers every host, `name` every port of it,
/// `name:port` only that port.
pub(crate) fn covers(registry: Option<&str>, host: &str) -> bool {
    match registry {
        None => true,
        Some(registry) => {
            registry.eq_ignore_ascii_case(host)
                || (!registry.contains(':')
                    && host
                        .rsplit_once(':')
                        .is_some_and(|(name, _)| name.eq_ignore_ascii_case(registry)))
        }
    }
}

fn certificates(pem: &[u8]) -> std::result::Result<Vec<Certificate<'static>>, ureq::Error> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(cert) = item? {
            certs.push(cert);
        }
    }
    Ok(certs)
}

/// The system's trusted roots: `SSL_CERT_FILE`, else the first bundle file
/// the usual distributions keep. Empty when there is none.
pub(crate) fn system_roots() -> Vec<Certificate<'static>> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let known = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .map(PathBuf::from);
    env.into_iter()
        .chain(known)
        .find_map(|path| {
            let pem = std::fs::read(path).ok()?;
            certificates(&pem).ok().filter(|c| !c.is_empty())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_cover_their_host_on_any_port_or_one_port() {
        assert!(covers(None, "anything:5000"));
        assert!(covers(Some("reg.lan"), "reg.lan"));
        assert!(covers(Some("reg.lan"), "REG.lan:5000"));
        assert!(covers(Some("reg.lan:5000"), "reg.lan:5000"));
        assert!(!covers(Some("reg.lan:5000"), "reg.lan:5001"));
        assert!(!covers(Some("reg.lan:5000"), "reg.lan"));
        assert!(!covers(Some("reg.lan"), "other.lan"));
    }

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = CaBundle::load(None, &path).unwrap_err().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = CaBundle::load(None, &dir.path().join("absent.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.pem"), "{err}");
    }
}
