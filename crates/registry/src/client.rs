//! A blocking client for the registry HTTP API v2 (the OCI distribution
//! spec): GET manifests and blobs of one repository, with the
//! authentication, retries and timeouts every request needs.
//!
//! # Why ureq
//!
//! The build engine calling this is synchronous, and a pull is a handful
//! of sequential GETs whose bodies are streamed straight into the store.
//! `ureq` 3 (maintained, MIT/Apache) is a blocking HTTP/1.1 client with
//! rustls, a per-request total timeout, per-read timeouts and redirects
//! that drop `Authorization` when they leave the host: exactly that, with
//! no async runtime. `reqwest` would bring tokio, hyper and a second
//! runtime to hide behind a blocking facade for no gain here; if push ever
//! needs many concurrent uploads, threads over this client do it. Default
//! features are off: its `gzip` feature would transparently decompress
//! bodies, and a layer's digest is over the compressed bytes.
//!
//! # What it does
//!
//! - Plain HTTP for `localhost`, `127.0.0.0/8`, `::1` and hosts given as
//!   insecure; HTTPS otherwise.
//! - Anonymous first; on `401` it answers the `WWW-Authenticate`
//!   challenge: a Bearer token from the realm (sent with basic credentials
//!   when `config.json` has some for the host), cached per host and scope
//!   until it expires, or basic credentials. Tokens and passwords are
//!   never logged nor put in an error.
//! - A few attempts with exponential backoff on connection errors,
//!   timeouts, `429` (honouring a `Retry-After` in seconds) and `5xx`;
//!   never on `4xx`, nor on a refused connection (nothing is listening: a
//!   mirror falls back at once).
//! - The environment's proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//!   `NO_PROXY`) for every host but loopback ones, as Docker does.
//! - A total timeout per request: short for documents and tokens, long for
//!   blobs, with a per-read timeout so a stalled transfer fails early.
//!
//! It never buffers a blob: [`Client::get_blob`] hands back a reader.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ureq::http::{Method, Response, StatusCode};

use super::auth::{self, Challenge, Secret, TokenResponse};
use super::credentials::{self, CredentialStore, Credentials};
use super::error::{Content, RegistryError, Result};
use super::tls::{self, CaBundle};
use hoist_oci::Digest;

/// What a manifest GET accepts: OCI and Docker schema 2 manifests and
/// indexes; never schema 1 (a registry that has nothing else then answers
/// with it anyway, and hoist says so).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes larger than this are refused: distribution and
/// Docker Hub refuse to store manifests over 4 MiB, and containerd reads no
/// more.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Token server answers are small JSON documents.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// How the client behaves; [`ClientOptions::default`] suits a pull.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (`host` or `host:port`) talked to over plain HTTP.
    pub insecure: Vec<String>,
    /// Docker's `config.json` to read credentials from; `None` means
    /// [`auth::docker_config_path`].
    pub docker_config: Option<PathBuf>,
    /// podman's `auth.json`, read after Docker's config; `None` means
    /// [`credentials::podman_auth_path`].
    pub auth_file: Option<PathBuf>,
    /// CA certificates to trust for some registries (or all), on top of
    /// the system's roots.
    pub ca_bundles: Vec<CaBundle>,
    /// Total time for one manifest or token request, body included.
    pub timeout: Duration,
    /// Total time for one blob request, body included.
    pub blob_timeout: Duration,
    /// Longest wait for any single read or for a connection.
    pub stall_timeout: Duration,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Blobs up to this size are uploaded in one `PUT`, larger ones in
    /// `PATCH` chunks of this size.
    pub upload_chunk: u64,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure: Vec::new(),
            docker_config: None,
            auth_file: None,
            ca_bundles: Vec::new(),
            timeout: Duration::from_secs(60),
            blob_timeout: Duration::from_secs(60 * 60),
            stall_timeout: Duration::from_secs(30),
            attempts: 4,
            backoff: Duration::from_millis(250),
            upload_chunk: super::upload::CHUNK,
        }
    }
}

/// The longest a `Retry-After` may make the client wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// One registry host and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `registry-1.docker.io`, `127.0.0.1:5000`, `[::1]:5000`...
    pub host: String,
    pub plain_http: bool,
}

impl Endpoint {
    /// The absolute URL of `path` (`/v2/...`) on this endpoint.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}{path}", self.host)
    }
}

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes: these, never a re-serialisation, are stored.
    pub bytes: Vec<u8>,
    /// The response's `Content-Type`, without parameters.
    pub content_type: Option<String>,
    /// The `Docker-Content-Digest` header, when sent and valid.
    pub header_digest: Option<Digest>,
}

/// A bearer token and when to stop using it.
struct Token {
    value: Secret,
    expires: Instant,
}

/// What a token request asks for, and as whom.
#[derive(Clone, Copy)]
struct TokenRequest<'a> {
    /// The registry that sent the challenge (named in errors).
    endpoint: &'a Endpoint,
    realm: &'a str,
    service: Option<&'a str>,
    /// Each a `type:name:actions` scope; none for a login.
    scopes: &'a [&'a str],
    credentials: Option<&'a Credentials>,
    /// Ask for a refresh token too (`hoist login`).
    offline: bool,
}

/// Where a host sent us for tokens.
#[derive(Clone)]
struct Realm {
    endpoint: Endpoint,
    realm: String,
    service: Option<String>,
}

/// The OAuth2 client id hoist names itself with to token servers.
const CLIENT_ID: &str = "hoist";

/// The agents for registries that have a CA bundle.
struct TlsAgents {
    /// The registry the agents are for; `None` for every registry.
    registry: Option<String>,
    agent: ureq::Agent,
    direct: ureq::Agent,
}

/// A blocking registry client. One client serves many pulls and threads:
/// tokens and credentials are cached inside it.
pub struct Client {
    /// Through the proxy the environment names (`HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY`, minus `NO_PROXY`), if any.
    agent: ureq::Agent,
    /// Never through a proxy: for loopback hosts, which Go's proxy rules
    /// (and so Docker's) never send to one.
    direct: ureq::Agent,
    /// Agents trusting extra CAs: per registry first, then for all.
    tls_agents: Vec<TlsAgents>,
    options: ClientOptions,
    credential_store: CredentialStore,
    /// Bearer tokens by (host, scope).
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Hosts that asked for basic authentication.
    basic_hosts: Mutex<HashSet<String>>,
    /// The bearer challenge each host answered with (its endpoint, realm
    /// and service): an expired token is renewed before the next request
    /// rather than after its 401, which would send a body twice.
    realms: Mutex<HashMap<String, Realm>>,
    /// Realms that answered an OAuth2 POST with 404 or 405: asked with a
    /// GET from then on.
    no_oauth: Mutex<HashSet<String>>,
    /// Credentials by host, read once.
    credentials: Mutex<HashMap<String, Option<Credentials>>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(options: ClientOptions) -> Client {
        let agent = |proxy: Option<ureq::Proxy>,
                     roots: Option<&[ureq::tls::Certificate<'static>]>| {
            let tls = match roots {
                Some(roots) => ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(roots))
                    .build(),
                None => ureq::tls::TlsConfig::default(),
            };
            ureq::Agent::config_builder()
                .tls_config(tls)
                .http_status_as_error(false)
                .proxy(proxy)
                .timeout_connect(Some(options.stall_timeout))
                .timeout_per_read(Some(options.stall_timeout))
                .max_redirects(10)
                // Blob GETs redirect to S3 or a CDN with a signed URL: the
                // registry's credentials must not follow them there.
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
                .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent()
        };
        let (direct, proxied) = (agent(None, None), agent(ureq::Proxy::try_from_env(), None));
        // One pair of agents per registry with bundles, then one for the
        // bundles that cover every registry; each trusts the system roots
        // plus its bundles.
        let mut groups: Vec<(Option<String>, Vec<CaBundle>)> = Vec::new();
        for bundle in &options.ca_bundles {
            match groups.iter_mut().find(|(r, _)| *r == bundle.registry) {
                Some((_, bundles)) => bundles.push(bundle.clone()),
                None => groups.push((bundle.registry.clone(), vec![bundle.clone()])),
            }
        }
        // The most specific first: `host:port`, then `host`, then all.
        groups.sort_by_key(|(registry, _)| match registry {
            Some(r) if r.contains(':') => 0,
            Some(_) => 1,
            None => 2,
        });
        let everywhere: Vec<CaBundle> = options
            .ca_bundles
            .iter()
            .filter(|b| b.registry.is_none())
            .cloned()
            .collect();
        let system = if groups.is_empty() {
            Vec::new()
        } else {
            tls::system_roots()
        };
        let tls_agents = groups
            .into_iter()
            .map(|(registry, mut bundles)| {
                if registry.is_some() {
                    bundles.extend(everywhere.iter().cloned());
                }
                let roots: Vec<_> = system
                    .iter()
                    .cloned()
                    .chain(bundles.iter().flat_map(|b| b.certs.iter().cloned()))
                    .collect();
                TlsAgents {
                    agent: agent(ureq::Proxy::try_from_env(), Some(&roots)),
                    direct: agent(None, Some(&roots)),
                    registry,
                }
            })
            .collect();
        let credential_store = CredentialStore {
            docker_config: options
                .docker_config
                .clone()
                .or_else(auth::docker_config_path),
            auth_file: options
                .auth_file
                .clone()
                .or_else(credentials::podman_auth_path),
            helper_path: None,
        };
        Client {
            agent: proxied,
            direct,
            tls_agents,
            options,
            credential_store,
            tokens: Mutex::new(HashMap::new()),
            basic_hosts: Mutex::new(HashSet::new()),
            realms: Mutex::new(HashMap::new()),
            no_oauth: Mutex::new(HashSet::new()),
            credentials: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// How many HTTP requests this client has sent (token requests and
    /// retries included; redirects followed count once).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The settings this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Attempts per request, the first included.
    pub fn attempts(&self) -> u32 {
        self.options.attempts.max(1)
    }

    /// The wait before a first retry.
    pub fn backoff(&self) -> Duration {
        self.options.backoff
    }

    /// The endpoint for `host`, over plain HTTP when it is a loopback host
    /// or listed as insecure. A `http://` or `https://` prefix decides the
    /// scheme itself.
    pub fn endpoint(&self, host: &str) -> Endpoint {
        let host = host.trim_end_matches('/');
        if let Some(rest) = host.strip_prefix("http://") {
            return Endpoint {
                host: rest.to_owned(),
                plain_http: true,
            };
        }
        if let Some(rest) = host.strip_prefix("https://") {
            return Endpoint {
                host: rest.to_owned(),
                plain_http: false,
            };
        }
        let plain_http = is_loopback(host)
            || self
                .options
                .insecure
                .iter()
                .any(|i| i == host || i == host_name(host));
        Endpoint {
            host: host.to_owned(),
            plain_http,
        }
    }

    /// GETs the manifest or index `reference` (a tag or a digest) of
    /// `repository` (`library/busybox`).
    pub fn get_manifest(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let url = endpoint.url(&path);
        let response = self.send(
            endpoint,
            repository,
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            self.options.timeout,
        )?;
        let response = check_status(
            endpoint,
            repository,
            &url,
            Content::Manifest,
            reference,
            response,
        )?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type")
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_owned());
        let header_digest = header("docker-content-digest").and_then(|d| d.parse().ok());
        let bytes = match response
            .into_body()
            .into_with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
        {
            Ok(bytes) => bytes,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Err(RegistryError::TooLarge {
                    registry: endpoint.host.clone(),
                    repository: repository.to_owned(),
                    reference: reference.to_owned(),
                    limit: MAX_MANIFEST,
                });
            }
            Err(e) => {
                return Err(RegistryError::Transfer {
                    registry: endpoint.host.clone(),
                    url,
                    source: e.into_io(),
                });
            }
        };
        Ok(FetchedManifest {
            bytes,
            content_type,
            header_digest,
        })
    }

    /// GETs the blob `digest` of `repository`, following redirects; the
    /// body is returned as a reader for the caller to stream and verify.
    pub fn get_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
    ) -> Result<impl Read + Send + 'static + use<>> {
        self.get_blob_from(endpoint, repository, digest, 0)
            .map(|(_, reader)| reader)
    }

    /// [`get_blob`](Client::get_blob) from byte `offset` on, to resume a
    /// broken transfer. Returns where the body starts: `offset` when the
    /// registry honoured the `Range` (206 from that byte), 0 when it sent
    /// the whole blob.
    pub fn get_blob_from(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<(u64, impl Read + Send + 'static + use<>)> {
        let url = endpoint.url(&format!("/v2/{repository}/blobs/{digest}"));
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset > 0 {
            &[("Range", &range)]
        } else {
            &[]
        };
        let response = self.send(
            endpoint,
            repository,
            &url,
            headers,
            self.options.blob_timeout,
        )?;
        let response = check_status(
            endpoint,
            repository,
            &url,
            Content::Blob,
            &digest.to_string(),
            response,
        )?;
        let start = if response.status() == StatusCode::PARTIAL_CONTENT {
            // `Content-Range: bytes START-END/TOTAL`; anything else is not
            // the part asked for, and the body cannot be used.
            let content_range = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if content_range.starts_with(&format!("bytes {offset}-")) {
                offset
            } else {
                return Err(RegistryError::Status {
                    registry: endpoint.host.clone(),
                    url,
                    status: 206,
                    detail: format!(": asked for {range}, got `{content_range}`"),
                });
            }
        } else {
            0
        };
        Ok((start, response.into_body().into_reader()))
    }

    /// Sends a GET for `url` with a pull token for `repository`,
    /// answering one authentication challenge and retrying transient
    /// failures. Statuses other than 401 are left to the caller.
    fn send(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Response<ureq::Body>> {
        let request = Request {
            endpoint,
            repository,
            scope: &pull_scope(repository),
            method: Method::GET,
            url,
            headers,
            timeout,
            retry: true,
        };
        self.send_request(&request, &mut || Ok(Payload::None))
    }

    /// Sends `request` with a body made by `payload` (called afresh for
    /// every attempt), answering one authentication challenge with a token
    /// for the request's scope and, when it allows, retrying transient
    /// failures. `Authorization` goes only to the endpoint's own host: an
    /// upload `Location` on another host gets none. Statuses other than
    /// 401 are left to the caller.
    pub(crate) fn send_request(
        &self,
        request: &Request<'_>,
        payload: &mut dyn FnMut() -> Result<Payload>,
    ) -> Result<Response<ureq::Body>> {
        let Request {
            endpoint,
            repository,
            scope,
            url,
            ..
        } = *request;
        let same_host = url_host(url).eq_ignore_ascii_case(&endpoint.host);
        let attempts = if request.retry { self.attempts() } else { 1 };
        let mut challenged = false;
        loop {
            let authorization = if same_host {
                self.authorization(&endpoint.host, scope)?
            } else {
                None
            };
            // A body that cannot be made (a store file gone) is not a
            // network failure: it is kept aside and returned as itself.
            let mut unreadable = None;
            let response = self.retrying_n(endpoint, url, attempts, || {
                let body = match payload() {
                    Ok(body) => body,
                    Err(e) => {
                        unreadable = Some(e);
                        return Err(ureq::Error::Io(std::io::Error::other("no body")));
                    }
                };
                let mut builder = ureq::http::Request::builder()
                    .method(request.method.clone())
                    .uri(url);
                for (name, value) in request.headers {
                    builder = builder.header(*name, *value);
                }
                if let Some(value) = &authorization {
                    builder = builder.header("Authorization", value.expose());
                }
                let agent = self.agent_for(url);
                let run = |built: std::result::Result<_, ureq::http::Error>| match built {
                    Ok(built) => agent.run(
                        agent
                            .configure_request(built)
                            .timeout_global(Some(request.timeout))
                            .build(),
                    ),
                    Err(e) => Err(ureq::Error::Http(e)),
                };
                match body {
                    Payload::None => run(builder.body(ureq::SendBody::none())),
                    Payload::Bytes(bytes) => run(builder
                        .header("Content-Length", bytes.len().to_string())
                        .body(ureq::SendBody::from_owned_reader(std::io::Cursor::new(
                            bytes,
                        )))),
                    Payload::Stream { reader, len } => run(builder
                        .header("Content-Length", len.to_string())
                        .body(ureq::SendBody::from_owned_reader(reader))),
                }
            });
            if let Some(e) = unreadable {
                return Err(e);
            }
            let response = response?;
            if response.status() != StatusCode::UNAUTHORIZED || challenged || !same_host {
                return Ok(response);
            }
            challenged = true;
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(Challenge::parse)
                .collect();
            if challenges.is_empty() {
                return Ok(response);
            }
            let sent_basic = authorization
                .as_ref()
                .is_some_and(|a| a.expose().starts_with("Basic "));
            self.answer(endpoint, repository, scope, &challenges, sent_basic)?;
        }
    }

    /// The agent for `url`: direct for loopback hosts, else through the
    /// environment's proxy (a redirect keeps the agent of its first URL).
    fn agent_for(&self, url: &str) -> &ureq::Agent {
        let host = url_host(url);
        let (agent, direct) = match self
            .tls_agents
            .iter()
            .find(|a| tls::covers(a.registry.as_deref(), host))
        {
            Some(tls) => (&tls.agent, &tls.direct),
            None => (&self.agent, &self.direct),
        };
        if is_loopback(host) { direct } else { agent }
    }

    /// The `Authorization` value to send to `host` for `scope`, if any.
    fn authorization(&self, host: &str, scope: &str) -> Result<Option<Secret>> {
        let key = (host.to_owned(), scope.to_owned());
        {
            let mut tokens = self.tokens.lock().expect("token cache poisoned");
            match tokens.get(&key) {
                Some(token) if token.expires > Instant::now() => {
                    return Ok(Some(Secret::new(format!(
                        "Bearer {}",
                        token.value.expose()
                    ))));
                }
                Some(_) => {
                    tokens.remove(&key);
                }
                None => {}
            }
        }
        if let Some(token) = self.renew(host, scope) {
            return Ok(Some(token));
        }
        if self
            .basic_hosts
            .lock()
            .expect("basic host set poisoned")
            .contains(host)
            && let Some(credentials) = self.credentials_for(host)?
        {
            return Ok(Some(Secret::new(credentials.basic_header())));
        }
        Ok(None)
    }

    /// A new token for `scope` from the realm `host` sent us to before,
    /// if it sent us to one; `None` when there is none or asking failed
    /// (the request then goes out without, and its 401 says why).
    fn renew(&self, host: &str, scope: &str) -> Option<Secret> {
        let Realm {
            endpoint,
            realm,
            service,
        } = self
            .realms
            .lock()
            .expect("realm map poisoned")
            .get(host)
            .cloned()?;
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        let credentials = self.credentials_for(host).ok()?;
        let request = TokenRequest {
            endpoint: &endpoint,
            realm: &realm,
            service: service.as_deref(),
            scopes: &scopes,
            credentials: credentials.as_ref(),
            offline: false,
        };
        let repository = scope.split(':').nth(1).unwrap_or_default().to_owned();
        let (token, _) = self
            .fetch_token(&request, || RegistryError::Unauthorized {
                registry: host.to_owned(),
                repository: repository.clone(),
            })
            .ok()?;
        let value = Secret::new(format!("Bearer {}", token.value.expose()));
        self.tokens
            .lock()
            .expect("token cache poisoned")
            .insert((host.to_owned(), scope.to_owned()), token);
        Some(value)
    }

    fn credentials_for(&self, host: &str) -> Result<Option<Credentials>> {
        let mut cache = self.credentials.lock().expect("credential cache poisoned");
        if let Some(found) = cache.get(host) {
            return Ok(found.clone());
        }
        let found = self.credential_store.get(host)?.map(|(found, _)| found);
        cache.insert(host.to_owned(), found.clone());
        Ok(found)
    }

    /// Answers a 401's challenges: gets a token, or switches the host to
    /// basic authentication. `scope` is what the request needs, one or
    /// more scopes separated by spaces (OAuth2's form:
    /// `repository:a:pull,push repository:b:pull` for a mount); the token
    /// is cached under it, and also covers the challenge's own scope.
    fn answer(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        scope: &str,
        challenges: &[Challenge],
        sent_basic: bool,
    ) -> Result<()> {
        let unauthorized = || RegistryError::Unauthorized {
            registry: endpoint.host.clone(),
            repository: repository.to_owned(),
        };
        let bearer = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }));
        match bearer.or_else(|| challenges.first()) {
            // The scopes asked for are the request's own, as Docker asks:
            // the challenge names only what the registry checked, which
            // for a mount lacks the source repository. A request without
            // one (`/v2/`) takes the challenge's.
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenged,
            }) => {
                let mut scopes: Vec<&str> = scope.split_whitespace().collect();
                if scopes.is_empty() {
                    scopes = challenged
                        .as_deref()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect();
                }
                let credentials = self.credentials_for(&endpoint.host)?;
                let request = TokenRequest {
                    endpoint,
                    realm,
                    service: service.as_deref(),
                    scopes: &scopes,
                    credentials: credentials.as_ref(),
                    offline: false,
                };
                let (token, _) = self.fetch_token(&request, unauthorized)?;
                self.realms.lock().expect("realm map poisoned").insert(
                    endpoint.host.clone(),
                    Realm {
                        endpoint: endpoint.clone(),
                        realm: realm.clone(),
                        service: service.clone(),
                    },
                );
                self.tokens
                    .lock()
                    .expect("token cache poisoned")
                    .insert((endpoint.host.clone(), scope.to_owned()), token);
                Ok(())
            }
            Some(Challenge::Basic) => {
                if self.credentials_for(&endpoint.host)?.is_none() {
                    return Err(unauthorized());
                }
                if sent_basic {
                    // Credentials were sent and refused.
                    return Err(unauthorized());
                }
                // Requests running at once may all meet their first 401:
                // each sent none, so each goes again with credentials.
                self.basic_hosts
                    .lock()
                    .expect("basic host set poisoned")
                    .insert(endpoint.host.clone());
                Ok(())
            }
            Some(Challenge::Other(challenge)) => Err(RegistryError::UnsupportedAuth {
                registry: endpoint.host.clone(),
                challenge: challenge.clone(),
            }),
            None => Err(unauthorized()),
        }
    }

    /// Gets a token from a token server, as Docker does: with an identity
    /// token, an OAuth2 `refresh_token` grant POSTed to the realm (a GET
    /// with the credentials when the server has no OAuth2 endpoint: 404
    /// or 405); otherwise a GET (the distribution token spec) with basic
    /// credentials when there are some. `refused` is the error for a 401
    /// or 403. Returns the token, and the refresh token the server handed
    /// out, if any (what `hoist login` keeps as the identity token).
    fn fetch_token(
        &self,
        request: &TokenRequest,
        refused: impl Fn() -> RegistryError,
    ) -> Result<(Token, Option<Secret>)> {
        let TokenRequest {
            endpoint,
            realm,
            service,
            scopes,
            credentials,
            offline,
        } = *request;
        let check = format!("; check the credentials for {}", endpoint.host);
        let token_error = |reason: String| RegistryError::Token {
            registry: endpoint.host.clone(),
            realm: realm.to_owned(),
            reason,
        };
        // Credentials go to the realm over TLS, or over plain HTTP only to
        // hosts trusted as such.
        if credentials.is_some()
            && let Some(host) = realm.strip_prefix("http://").map(url_host)
            && !(is_loopback(host) || self.endpoint(host).plain_http)
        {
            return Err(RegistryError::InsecureRealm {
                registry: endpoint.host.clone(),
                realm: realm.to_owned(),
            });
        }
        // The realm is another host: errors name the registry that sent us
        // there, with the realm in the message.
        let realm_endpoint = Endpoint {
            host: endpoint.host.clone(),
            plain_http: endpoint.plain_http,
        };
        let identity = credentials.and_then(|c| c.identity_token.as_ref());
        let mut response = None;
        let oauth = !self
            .no_oauth
            .lock()
            .expect("realm set poisoned")
            .contains(realm);
        if let Some(refresh_token) = identity.filter(|_| oauth) {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
                ("client_id", CLIENT_ID),
            ];
            let joined = scopes.join(" ");
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            if let Some(service) = service {
                form.push(("service", service));
            }
            let body: String = form
                .iter()
                .map(|(name, value)| format!("{name}={}", auth::query_escape(value)))
                .collect::<Vec<_>>()
                .join("&");
            let posted = self.retrying(&realm_endpoint, realm, || {
                self.agent_for(realm)
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .config()
                    .timeout_global(Some(self.options.timeout))
                    .build()
                    .send(body.as_bytes())
            })?;
            // No OAuth2 endpoint there: ask as the token spec does, now
            // and from then on.
            if matches!(posted.status().as_u16(), 404 | 405) {
                self.no_oauth
                    .lock()
                    .expect("realm set poisoned")
                    .insert(realm.to_owned());
            } else {
                response = Some(posted);
            }
        }
        let response = match response {
            Some(response) => response,
            None => {
                let mut url = realm.to_owned();
                let mut params: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = service {
                    params.push(("service", service));
                }
                params.extend(scopes.iter().map(|s| ("scope", *s)));
                // What the token server needs to hand out a refresh token
                // (docker login asks for one the same way).
                if offline {
                    params.extend([("offline_token", "true"), ("client_id", CLIENT_ID)]);
                }
                let basic = credentials.map(|c| match &c.identity_token {
                    Some(token) => (c.username.as_str(), token.expose()),
                    None => (c.username.as_str(), c.password.expose()),
                });
                if let Some((username, _)) = basic.filter(|(u, _)| !u.is_empty()) {
                    params.push(("account", username));
                }
                let mut separator = if url.contains('?') { '&' } else { '?' };
                for (name, value) in params {
                    url.push(separator);
                    url.push_str(name);
                    url.push('=');
                    url.push_str(&auth::query_escape(value));
                    separator = '&';
                }
                self.retrying(&realm_endpoint, &url, || {
                    let mut request = self.agent_for(&url).get(&url);
                    if let Some((username, password)) = basic {
                        request = request.header(
                            "Authorization",
                            credentials::basic_header(username, password),
                        );
                    }
                    request
                        .config()
                        .timeout_global(Some(self.options.timeout))
                        .build()
                        .call()
                })?
            }
        };
        match response.status().as_u16() {
            200 => {}
            // The token server refused these credentials, or wants some;
            // OAuth2 servers answer 400 `invalid_grant` to a refresh token
            // they no longer accept.
            401 | 403 => return Err(refused()),
            400 if identity.is_some() => return Err(refused()),
            // Still failing after the retries: the token server is
            // overloaded or down, which no credential can fix.
            status @ (429 | 500..=599) => {
                return Err(token_error(format!("it answered {status}; retry later")));
            }
            status => return Err(token_error(format!("it answered {status}{check}"))),
        }
        let body: TokenResponse = response
            .into_body()
            .into_with_config()
            .limit(MAX_TOKEN_RESPONSE)
            .read_to_vec()
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| token_error(format!("its answer is not a token document{check}")))?;
        let value = body
            .token
            .filter(|t| !t.is_empty())
            .or(body.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| token_error(format!("its answer has no token{check}")))?;
        // `expires_in` as sent (the token spec's default is 60 s), renewed
        // a tenth early, at most 5 s: a token that lives 3 s is used for
        // 2.7 s, then a new one is asked for.
        let lifetime = Duration::from_secs(body.expires_in.filter(|s| *s > 0).unwrap_or(60));
        let margin = (lifetime / 10).min(Duration::from_secs(5));
        let refresh = body
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        Ok((
            Token {
                value: Secret::new(value),
                expires: Instant::now() + lifetime - margin,
            },
            refresh,
        ))
    }

    /// Runs `call` up to `attempts` times while it fails transiently.
    fn retrying(
        &self,
        endpoint: &Endpoint,
        url: &str,
        call: impl FnMut() -> std::result::Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<Response<ureq::Body>> {
        self.retrying_n(endpoint, url, self.attempts(), call)
    }

    /// [`retrying`](Client::retrying) with its own number of attempts.
    fn retrying_n(
        &self,
        endpoint: &Endpoint,
        url: &str,
        attempts: u32,
        mut call: impl FnMut() -> std::result::Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<Response<ureq::Body>> {
        let attempts = attempts.max(1);
        let mut delay = self.options.backoff;
        for attempt in 1..=attempts {
            let last = attempt == attempts;
            self.requests.fetch_add(1, Ordering::Relaxed);
            match call() {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if last || !(status == 429 || matches!(status, 500 | 502 | 503 | 504)) {
                        return Ok(response);
                    }
                    let wait = retry_after(&response).unwrap_or(delay);
                    std::thread::sleep(wait.min(MAX_RETRY_AFTER));
                }
                Err(error) => {
                    if last || !is_transient(&error) {
                        return Err(connection_error(endpoint, url, error));
                    }
                    std::thread::sleep(delay);
                }
            }
            delay *= 2;
        }
        unreachable!("the last attempt always returns")
    }
}

/// The scope of a pull from `repository` (the token spec's resource scope).
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// One request to a registry, before its body.
pub(crate) struct Request<'a> {
    pub endpoint: &'a Endpoint,
    /// The repository named in errors.
    pub repository: &'a str,
    /// The token scope(s) to ask for, space-separated.
    pub scope: &'a str,
    pub method: Method,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// Total time for the request, body included.
    pub timeout: Duration,
    /// Whether transient failures are retried here; an upload whose body
    /// the registry may have partly kept is retried by its caller instead.
    pub retry: bool,
}

/// What a request sends, made afresh for each attempt.
pub(crate) enum Payload {
    /// No body (GET, HEAD).
    None,
    /// A small document, or nothing with `Content-Length: 0` (an empty
    /// POST or PUT, which some front ends refuse without a length).
    Bytes(Vec<u8>),
    /// `len` bytes streamed from `reader`: a blob or a part of one.
    Stream {
        reader: Box<dyn Read + Send>,
        len: u64,
    },
}

/// Maps a response whose status is not 2xx to an error.
fn check_status(
    endpoint: &Endpoint,
    repository: &str,
    url: &str,
    what: Content,
    reference: &str,
    response: Response<ureq::Body>,
) -> Result<Response<ureq::Body>> {
    let status = response.status().as_u16();
    match status {
        200..=299 => Ok(response),
        401 | 403 => Err(RegistryError::Unauthorized {
            registry: endpoint.host.clone(),
            repository: repository.to_owned(),
        }),
        404 => Err(RegistryError::NotFound {
            registry: endpoint.host.clone(),
            repository: repository.to_owned(),
            what,
            reference: reference.to_owned(),
        }),
        _ => {
            let detail = body_detail(response, 200);
            Err(RegistryError::Status {
                registry: endpoint.host.clone(),
                url: url.to_owned(),
                status,
                detail,
            })
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries
/// and falls back to the backoff).
pub(crate) fn retry_after(response: &Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// Whether retrying `error` can help: a connection reset, cut short or
/// timed out. Not a refused connection (nothing listens there), an unknown
/// host or TLS trouble (rustls errors arrive as `InvalidData`), which fail
/// the same way every time.
fn is_transient(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(e) => {
            use std::io::ErrorKind::*;
            matches!(
                e.kind(),
                ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | Interrupted
                    | NotConnected
                    | HostUnreachable
                    | NetworkUnreachable
            )
        }
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

fn connection_error(endpoint: &Endpoint, url: &str, error: ureq::Error) -> RegistryError {
    let registry = endpoint.host.clone();
    match error {
        ureq::Error::Timeout(_) => RegistryError::Timeout {
            registry,
            url: url.to_owned(),
        },
        ref e if !endpoint.plain_http && speaks_plain_http(e) => {
            RegistryError::TlsToPlainHttp { registry }
        }
        // Connected, then cut off: not a reason to check the host name.
        ureq::Error::Io(ref e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            RegistryError::Dropped {
                registry,
                url: url.to_owned(),
                source: Box::new(error),
            }
        }
        // rustls' handshake errors (an unknown issuer, a wrong name) reach
        // ureq as I/O errors of kind InvalidData.
        ureq::Error::Io(ref e)
            if !endpoint.plain_http && e.kind() == std::io::ErrorKind::InvalidData =>
        {
            RegistryError::Tls {
                registry,
                source: Box::new(error),
            }
        }
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::Pem(_) => RegistryError::Tls {
            registry,
            source: Box::new(error),
        },
        error => RegistryError::Connect {
            registry,
            source: Box::new(error),
        },
    }
}

/// A TLS client that gets an HTTP answer to its ClientHello sees a record
/// with an invalid content type ("HTTP/1.1 400" starts with `H`, 0x48).
/// ureq does not re-export rustls' error types, so this reads rustls'
/// message (`received corrupt message of type InvalidContentType`) rather
/// than adding rustls as a direct dependency only to name one variant. It
/// arrives as `Error::Rustls` or, from the handshake, wrapped in an I/O
/// error.
fn speaks_plain_http(error: &ureq::Error) -> bool {
    let text = match error {
        ureq::Error::Rustls(e) => e.to_string(),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => e.to_string(),
        _ => return false,
    };
    text.contains("InvalidContentType")
}

/// The `host[:port]` of an absolute URL.
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// The host without its port (`[::1]:5000` is `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`: the hosts Docker and containerd
/// talk plain HTTP to without being told.
fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

mod login;
#[cfg(test)]
mod tests;

pub use login::LoginCheck;

/// The first line of an error response's body, as `: LINE` cut to `max`
/// characters (empty when there is none), for messages that quote what
/// the registry said.
pub(crate) fn body_detail(response: Response<ureq::Body>, max: usize) -> String {
    let text = response
        .into_body()
        .into_with_config()
        .limit(4096)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {}", line.chars().take(max).collect::<String>())
    }
}
