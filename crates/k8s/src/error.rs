//! The Kubernetes module's error type.

use std::path::PathBuf;

/// Why manifests cannot be written or a YAML file cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("image {reference} is not in the store: build it with `hoist build -t {reference}`")]
    NotInStore { reference: String },
    #[error("cannot read image {reference} from the store")]
    Store {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "image {reference} ({digest}) is not in registry {registry}: push it first \
         (hoist build --push, or skopeo copy), or pass --allow-unpushed"
    )]
    NotPushed {
        reference: String,
        digest: String,
        registry: String,
    },
    #[error(
        "cannot check that {reference} ({digest}) is in its registry: retry, or pass \
         --allow-unpushed to write manifests anyway"
    )]
    Registry {
        reference: String,
        digest: String,
        #[source]
        source: Box<hoist_registry::RegistryError>,
    },
    #[error("{flag}: {reason}")]
    Option { flag: String, reason: String },
    #[error("{flag}: cannot read {}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    EnvFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}:{line}:{column}: not valid YAML: {reason}")]
    Yaml {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}:{line}:{column}: {reason}")]
    Resolve {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("cannot write YAML: {0}")]
    Serialize(String),
}

impl K8sError {
    pub(crate) fn option(flag: &str, reason: impl Into<String>) -> K8sError {
        K8sError::Option {
            flag: flag.to_owned(),
            reason: reason.into(),
        }
    }
}
