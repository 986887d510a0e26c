//! The registry module's error type. Every variant names the registry host
//! it talked to and, where there is one, the repository; the message says
//! what to do next. Tokens and passwords never appear in any of them.

use std::io;

use hoist_oci::Digest;
use hoist_store::StoreError;

/// Why talking to a registry, or pulling from it, failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "access to {repository} was refused by registry {registry}: log in with `hoist login \
         {registry}` as a user allowed to use it, or check the repository name"
    )]
    Unauthorized {
        registry: String,
        repository: String,
    },
    #[error(
        "{what} {reference} of {repository} was not found on registry {registry}: check the image \
         name and tag"
    )]
    NotFound {
        registry: String,
        repository: String,
        what: Content,
        reference: String,
    },
    #[error(
        "cannot connect to registry {registry} over TLS: it seems to serve plain HTTP; if you \
         trust it, pass {registry} as an insecure registry"
    )]
    TlsToPlainHttp { registry: String },
    #[error(
        "TLS with registry {registry} failed: check its certificate and the host name; a \
         registry with a private CA needs it trusted (--ca-cert, or ca-certs in hoist's config \
         file)"
    )]
    Tls {
        registry: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error(
        "cannot connect to registry {registry}: check the host name, the port and that the \
         registry is running"
    )]
    Connect {
        registry: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error(
        "registry {registry} kept dropping the connection ({url}); retry later, or check the \
         network or a proxy between you and it"
    )]
    Dropped {
        registry: String,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("request to registry {registry} timed out ({url}); retry, or check the network")]
    Timeout { registry: String, url: String },
    #[error("registry {registry} answered {status} to {url}{detail}; retry later")]
    Status {
        registry: String,
        url: String,
        status: u16,
        /// `: <first line of the body>` when the body said something.
        detail: String,
    },
    #[error("reading from registry {registry} failed ({url}); retry the pull")]
    Transfer {
        registry: String,
        url: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "registry {registry} sent a Docker schema 1 manifest for {repository}:{reference}; hoist \
         reads only schema 2 and OCI images: push the image again with a current client"
    )]
    Schema1 {
        registry: String,
        repository: String,
        reference: String,
    },
    #[error("cannot list {source_image} in the index: {reason}")]
    IndexSource {
        source_image: String,
        reason: String,
    },
    #[error("{reference} is {actual}, not an artifact of type `{expected}`")]
    ArtifactType {
        /// `REGISTRY/REPO:TAG` or `REGISTRY/REPO@DIGEST`.
        reference: String,
        expected: String,
        actual: String,
    },
    #[error(
        "registry {registry} sent `{media_type}` for {repository}:{reference}, which is not an \
         image manifest or index"
    )]
    MediaType {
        registry: String,
        repository: String,
        reference: String,
        media_type: String,
    },
    #[error(
        "{what} {reference} of {repository} from registry {registry} is not valid; the image is \
         damaged or not a container image"
    )]
    Document {
        registry: String,
        repository: String,
        what: Content,
        reference: String,
        #[source]
        source: Box<hoist_oci::image::ImageError>,
    },
    #[error(
        "{what} {expected} of {repository} from registry {registry} has content with digest \
         {actual}; the registry or something between it and you changed it: retry, or use \
         another registry"
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        what: Content,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{what} {digest} from registry {registry} is {actual} bytes, not the {expected} its \
         descriptor says; the image is damaged"
    )]
    SizeMismatch {
        registry: String,
        what: Content,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "the manifest of {repository}:{reference} from registry {registry} is over {limit} bytes; \
         it is not an image manifest"
    )]
    TooLarge {
        registry: String,
        repository: String,
        reference: String,
        limit: u64,
    },
    #[error(
        "{reference} has no image for {platform}; it has images for {available}: pass one of \
         them as the platform"
    )]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    /// `reason` says what failed and what to do.
    #[error("registry {registry} asked for a token from {realm}, which failed: {reason}")]
    Token {
        registry: String,
        realm: String,
        reason: String,
    },
    #[error(
        "registry {registry} asked for authentication hoist does not support ({challenge}); \
         use a registry with Bearer or Basic authentication"
    )]
    UnsupportedAuth { registry: String, challenge: String },
    #[error("cannot use the credentials file `{path}`: {reason}; fix or remove the file")]
    Credentials { path: String, reason: String },
    #[error("credential helper {helper} failed to {action} credentials: {reason}")]
    CredentialHelper {
        helper: String,
        action: String,
        reason: String,
    },
    #[error("there is no Docker config to store credentials in: set DOCKER_CONFIG or HOME")]
    NoConfigPath,
    #[error("registry {registry} refused the user name or password: check them and log in again")]
    LoginRefused { registry: String },
    #[error(
        "registry {registry} sent its token realm {realm} over plain HTTP: hoist sends no \
         credentials there unless the realm's host is a loopback host or named as an insecure \
         registry"
    )]
    InsecureRealm { registry: String, realm: String },
    #[error("cannot use the CA bundle `{path}`: {reason}")]
    CaBundle { path: String, reason: String },
    #[error(
        "pulling {repository} failed on every mirror of {domain} ({mirrors}) and on {domain} \
         itself"
    )]
    MirrorsFailed {
        domain: String,
        repository: String,
        /// `HOST: reason` for each mirror tried.
        mirrors: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(
        "pushing to {repository} was refused by registry {registry}: log in with an account \
         that may push there (hoist login {registry}) or check the repository name"
    )]
    PushRefused {
        registry: String,
        repository: String,
    },
    #[error(
        "uploading blob {digest} to {repository} on registry {registry} failed: {reason}; retry \
         the push"
    )]
    Upload {
        registry: String,
        repository: String,
        digest: Digest,
        reason: String,
    },
    #[error("pushing to {repository} on registry {registry} failed; its tag was left as it was")]
    Push {
        registry: String,
        repository: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(
        "deleting from {repository} was refused by registry {registry}: log in with `hoist login \
         {registry}` as a user allowed to delete there"
    )]
    DeleteRefused {
        registry: String,
        repository: String,
    },
    #[error(
        "registry {registry} does not allow deletes (405); enable them (registry:2: \
         `storage: {{delete: {{enabled: true}}}}` in its config, or \
         REGISTRY_STORAGE_DELETE_ENABLED=true), or expire the cache with the registry's own \
         retention rules"
    )]
    DeleteDisabled { registry: String },
    #[error(
        "the store lacks blob {digest} of {reference}; pull or rebuild the image before pushing it"
    )]
    MissingBlob { reference: String, digest: Digest },
    #[error("{reference} cannot be pushed in Docker's format")]
    Convert {
        reference: String,
        #[source]
        source: hoist_oci::image::ConvertError,
    },
    #[error(
        "no image {reference} in the store: build it with `hoist build -t`, pull it, or name one \
         with `hoist tag` (`hoist images` lists the store)"
    )]
    NotInStore { reference: String },
    #[error(
        "{reference} was pushed, but the store cannot record it; later pushes may upload blobs \
         they could have mounted"
    )]
    RecordPush {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot read {reference} from the store to push it")]
    StoreRead {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot store what was pulled from {registry}")]
    Store {
        registry: String,
        #[source]
        source: StoreError,
    },
}

impl RegistryError {
    /// Whether a mirror failing this way should send the request on to the
    /// next endpoint: the mirror lacks the content or is not there at all
    /// (Docker's registry-mirror fallback).
    pub(crate) fn falls_back(&self) -> bool {
        matches!(
            self,
            RegistryError::NotFound { .. }
                | RegistryError::Connect { .. }
                | RegistryError::Dropped { .. }
                | RegistryError::TlsToPlainHttp { .. }
        )
    }
}

/// What kind of content a request was for, in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Manifest,
    Blob,
    TagList,
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Content::Manifest => "manifest",
            Content::Blob => "blob",
            Content::TagList => "tag list",
        })
    }
}

/// Shorthand for the registry module's results.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages users read, one per line, in the project's voice:
    /// lower-case start, what failed, where, and what to do.
    #[test]
    fn messages() {
        let registry = || "registry.example:5000".to_owned();
        let repository = || "team/app".to_owned();
        let digest = Digest::of(b"x");
        let errors = [
            RegistryError::Unauthorized {
                registry: registry(),
                repository: repository(),
            },
            RegistryError::NotFound {
                registry: registry(),
                repository: repository(),
                what: Content::Manifest,
                reference: "v1".into(),
            },
            RegistryError::TlsToPlainHttp {
                registry: registry(),
            },
            RegistryError::Timeout {
                registry: registry(),
                url: "https://registry.example:5000/v2/team/app/manifests/v1".into(),
            },
            RegistryError::Status {
                registry: registry(),
                url: "https://registry.example:5000/v2/".into(),
                status: 502,
                detail: ": bad gateway".into(),
            },
            RegistryError::Schema1 {
                registry: registry(),
                repository: repository(),
                reference: "v1".into(),
            },
            RegistryError::DigestMismatch {
                registry: registry(),
                repository: repository(),
                what: Content::Blob,
                expected: digest,
                actual: digest,
            },
            RegistryError::LoginRefused {
                registry: registry(),
            },
            RegistryError::CredentialHelper {
                helper: "docker-credential-pass".into(),
                action: "get".into(),
                reason: "it said: pass store is uninitialized".into(),
            },
            RegistryError::InsecureRealm {
                registry: registry(),
                realm: "http://auth.example/token".into(),
            },
            RegistryError::NoPlatform {
                reference: "docker.io/library/node:14".into(),
                platform: "linux/s390x".into(),
                available: "linux/amd64, linux/arm64/v8".into(),
            },
            RegistryError::PushRefused {
                registry: registry(),
                repository: repository(),
            },
            RegistryError::Push {
                registry: registry(),
                repository: repository(),
                source: Box::new(RegistryError::TlsToPlainHttp {
                    registry: registry(),
                }),
            },
            RegistryError::Upload {
                registry: registry(),
                repository: repository(),
                digest,
                reason: "the registry started an upload without a Location".into(),
            },
            RegistryError::MissingBlob {
                reference: "registry.example:5000/team/app:v1".into(),
                digest,
            },
            RegistryError::DeleteRefused {
                registry: "registry.example:5000".into(),
                repository: "ci/cache".into(),
            },
            RegistryError::DeleteDisabled {
                registry: "registry.example:5000".into(),
            },
            RegistryError::MirrorsFailed {
                domain: "docker.io".into(),
                repository: "library/node".into(),
                mirrors: "127.0.0.1:5000: manifest 14 of library/node was not found".into(),
                source: Box::new(RegistryError::TlsToPlainHttp {
                    registry: "registry-1.docker.io".into(),
                }),
            },
        ];
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        insta::assert_snapshot!(text.join("\n"));
    }
}
