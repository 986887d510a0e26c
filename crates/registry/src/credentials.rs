//! Registry credentials where Docker and podman keep them, read and written
//! as they do.
//!
//! Sources, first match wins (docs/auth.md says the same to users):
//!
//! 1. Docker's client config, `$DOCKER_CONFIG/config.json` (or a mounted
//!    Secret's `.dockerconfigjson` there) or
//!    `~/.docker/config.json`, resolved as `docker` resolves it: a
//!    `credHelpers` entry for the registry, else `credsStore`, runs the
//!    helper `docker-credential-NAME`; otherwise the `auths` entry (base64
//!    `auth`, or `username`/`password`, and `identitytoken`). When a helper
//!    is configured for the registry its answer is final for this file, as
//!    in Docker: `auths` then only records that a login happened.
//! 2. podman's `auth.json`: `$REGISTRY_AUTH_FILE`, else
//!    `$XDG_RUNTIME_DIR/containers/auth.json` (`/run/containers/UID/auth.json`
//!    without a runtime directory), read the same way.
//!
//! A registry is keyed as `docker login` keys it: Docker Hub (`docker.io`,
//! `index.docker.io`, `registry-1.docker.io`) as
//! `https://index.docker.io/v1/`, any other registry by its `host[:port]`;
//! keys written with a scheme or a path (`https://ghcr.io/v2/`) match their
//! host.
//!
//! [`CredentialStore::store`] writes where `docker login` writes: through
//! the helper when one is configured (leaving an empty `auths` entry, as
//! Docker does), else into `config.json` itself, replaced atomically with
//! mode 0600 and every other key kept. Helpers speak Docker's protocol
//! (`get`, `store`, `erase` with the request on stdin and JSON on stdout).
//!
//! Secrets never reach a `Debug` output, an error or a log: helper errors
//! quote the helper's own message, which never carries the secret it was
//! asked for (it is only ever sent on the helper's stdin).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::auth::Secret;
use super::error::{RegistryError, Result};

/// The key Docker stores Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The user name credential helpers store an identity token under.
const TOKEN_USERNAME: &str = "<token>";

/// A user name with a password, or with an identity token (an OAuth2
/// refresh token a token server handed out at login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// `identitytoken` in `config.json`: exchanged for access tokens with
    /// an OAuth2 `refresh_token` grant instead of sending the password.
    pub identity_token: Option<Secret>,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: Secret::new(password),
            identity_token: None,
        }
    }

    /// The `Authorization` header value for basic auth.
    pub fn basic_header(&self) -> String {
        basic_header(&self.username, self.password.expose())
    }

    /// The credentials for registry `host` in the Docker config at `path`
    /// (its `auths`, `credHelpers` and `credsStore`), if it has any.
    pub fn lookup(path: &Path, host: &str) -> Result<Option<Credentials>> {
        Ok(ConfigFile::read(path)?
            .get_with_source(host, Helpers(None))?
            .map(|(c, _)| c))
    }
}

pub(crate) fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Where a registry's credentials were found or put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `docker-credential-NAME`.
    Helper(String),
    /// A `config.json` or `auth.json` file's `auths`.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Helper(name) => write!(f, "the credential helper docker-credential-{name}"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Docker's config and podman's auth file, in that order (see the module
/// docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStore {
    /// Docker's `config.json`: read, and written by [`store`](Self::store).
    pub docker_config: Option<PathBuf>,
    /// podman's `auth.json`: read, and cleaned by [`erase`](Self::erase).
    pub auth_file: Option<PathBuf>,
    /// Where `docker-credential-*` helpers are looked up, as a `PATH`
    /// value; `None` means the process's `PATH`.
    pub helper_path: Option<std::ffi::OsString>,
}

impl CredentialStore {
    /// The files the environment names (see the module docs).
    pub fn from_env() -> CredentialStore {
        CredentialStore {
            docker_config: docker_config_path(),
            auth_file: podman_auth_path(),
            helper_path: None,
        }
    }

    /// The credentials for `registry` (a host, `docker.io`, or a key as
    /// Docker writes it) and where they came from.
    pub fn get(&self, registry: &str) -> Result<Option<(Credentials, Source)>> {
        for path in self.files() {
            let file = match ConfigFile::read(path) {
                // Another user's file (HOME kept by `su` or `setpriv`):
                // nothing to read there, as Docker only warns. Writing it
                // (`store`, `erase`) still fails loudly.
                Err(RegistryError::Credentials { .. }) if is_unreadable(path) => continue,
                found => found?,
            };
            if let Some(found) = file.get_with_source(registry, self.helpers())? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Saves `credentials` for `registry` as `docker login` does; returns
    /// where they went.
    pub fn store(&self, registry: &str, credentials: &Credentials) -> Result<Source> {
        let path = self
            .docker_config
            .as_deref()
            .ok_or(RegistryError::NoConfigPath)?;
        let key = server_key(registry);
        let mut file = ConfigFile::read(path)?;
        let entry = match file.helper_for(&key) {
            Some(helper) => {
                helper_store(self.helpers(), &helper, &key, credentials)?;
                file.set_entry(&key, Map::new());
                Source::Helper(helper)
            }
            None => {
                let mut entry = Map::new();
                // With an identity token Docker keeps the user name and
                // drops the password: `auth` is base64 of `user:`.
                let password = match &credentials.identity_token {
                    Some(_) => "",
                    None => credentials.password.expose(),
                };
                let raw = format!("{}:{password}", credentials.username);
                entry.insert(
                    "auth".into(),
                    base64::engine::general_purpose::STANDARD.encode(raw).into(),
                );
                if let Some(token) = &credentials.identity_token {
                    entry.insert("identitytoken".into(), token.expose().into());
                }
                file.set_entry(&key, entry);
                Source::File(path.to_owned())
            }
        };
        file.write()?;
        Ok(entry)
    }

    /// Removes `registry`'s credentials from every place they are found:
    /// its helper, Docker's `auths` and podman's file. Returns where they
    /// were, empty when the user was not logged in.
    pub fn erase(&self, registry: &str) -> Result<Vec<Source>> {
        let key = server_key(registry);
        let mut erased = Vec::new();
        for path in self.files() {
            let mut file = ConfigFile::read(path)?;
            if let Some(helper) = file.helper_for(&key)
                && helper_erase(self.helpers(), &helper, &key)?
            {
                erased.push(Source::Helper(helper));
            }
            if file.remove_entries(&key) {
                file.write()?;
                erased.push(Source::File(path.to_owned()));
            }
        }
        Ok(erased)
    }

    fn helpers(&self) -> Helpers<'_> {
        Helpers(self.helper_path.as_deref())
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        self.docker_config
            .as_deref()
            .into_iter()
            .chain(self.auth_file.as_deref())
    }
}

/// Where Docker keeps its client config: `$DOCKER_CONFIG/config.json`, or
/// `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(config_in(Path::new(&dir)));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The client config in the directory `dir`: its `config.json`, or where
/// there is none, the `.dockerconfigjson` that a Kubernetes
/// `kubernetes.io/dockerconfigjson` Secret mounted there holds (the same
/// document).
fn config_in(dir: &Path) -> PathBuf {
    let config = dir.join("config.json");
    let secret = dir.join(".dockerconfigjson");
    if !config.exists() && secret.is_file() {
        return secret;
    }
    config
}

/// podman's auth file: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else (no runtime directory,
/// as for root outside a login session) `/run/containers/UID/auth.json`,
/// where containers/image looks.
pub fn podman_auth_path() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    Some(
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("containers/auth.json"),
            // SAFETY: getuid cannot fail and touches no memory.
            None => PathBuf::from(format!("/run/containers/{}/auth.json", unsafe {
                libc::getuid()
            })),
        },
    )
}

/// The key `docker login REGISTRY` stores credentials under: Docker Hub's
/// URL for any of its names (or none), else the host without scheme or
/// path.
pub fn server_key(registry: &str) -> String {
    let host = hostname(registry);
    if host.is_empty() || is_docker_hub(&host) {
        DOCKER_HUB_KEY.to_owned()
    } else {
        host
    }
}

/// Whether `host` is one of Docker Hub's names.
pub fn is_docker_hub(host: &str) -> bool {
    matches!(
        host.to_ascii_lowercase().as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Docker's `ConvertToHostname`: `https://host:5000/v1/` is `host:5000`.
fn hostname(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key).to_owned()
}

/// What keys are compared by: the host, lower-cased, Docker Hub as one.
fn canonical(key: &str) -> String {
    let host = hostname(key).to_ascii_lowercase();
    if is_docker_hub(&host) {
        "docker.io".to_owned()
    } else {
        host
    }
}

/// The document a `.dockerconfigjson` holds. podman 4.3's `kube play`
/// writes a Secret's data into its volume still base64-encoded, as the
/// Secret carries it: such a file is decoded. Any other text is as read.
fn secret_text(path: &Path, text: String) -> String {
    let is_secret = path.file_name().is_some_and(|n| n == ".dockerconfigjson");
    if !is_secret || text.trim_start().starts_with('{') {
        return text;
    }
    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        Ok(bytes) if bytes.first() == Some(&b'{') => String::from_utf8(bytes).unwrap_or(text),
        _ => text,
    }
}

/// One `config.json` or `auth.json`, kept as parsed JSON so a rewrite
/// keeps every key hoist does not know.
struct ConfigFile {
    path: PathBuf,
    root: Map<String, Value>,
}

impl ConfigFile {
    fn read(path: &Path) -> Result<ConfigFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(file_error(path, e.to_string())),
        };
        let text = secret_text(path, text);
        let root = if text.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str(&text) {
                Ok(Value::Object(root)) => root,
                Ok(_) => return Err(file_error(path, "it is not a JSON object".into())),
                Err(e) => return Err(file_error(path, e.to_string())),
            }
        };
        Ok(ConfigFile {
            path: path.to_owned(),
            root,
        })
    }

    fn get_with_source(
        &self,
        registry: &str,
        helpers: Helpers,
    ) -> Result<Option<(Credentials, Source)>> {
        let key = server_key(registry);
        if let Some(helper) = self.helper_for(&key) {
            return Ok(helper_get(helpers, &helper, &key)?.map(|c| (c, Source::Helper(helper))));
        }
        let Some(entry) = self.entry(&key) else {
            return Ok(None);
        };
        Ok(self
            .decode(&key, entry)?
            .map(|c| (c, Source::File(self.path.clone()))))
    }

    /// `credHelpers[key]`, else `credsStore`: the helper Docker would use.
    fn helper_for(&self, key: &str) -> Option<String> {
        let wanted = canonical(key);
        let per_registry = self
            .root
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| {
                helpers
                    .iter()
                    .find(|(k, _)| canonical(k) == wanted)
                    .and_then(|(_, v)| v.as_str())
            });
        per_registry
            .or_else(|| self.root.get("credsStore").and_then(Value::as_str))
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.root.get("auths").and_then(Value::as_object)
    }

    /// The entry under `key` exactly, else one whose key names the same
    /// host (Docker's fallback for keys written with a scheme or path).
    fn entry(&self, key: &str) -> Option<&Map<String, Value>> {
        let auths = self.auths()?;
        if let Some(entry) = auths.get(key).and_then(Value::as_object) {
            return Some(entry);
        }
        let wanted = canonical(key);
        auths
            .iter()
            .find(|(k, _)| canonical(k) == wanted)
            .and_then(|(_, v)| v.as_object())
    }

    fn decode(&self, key: &str, entry: &Map<String, Value>) -> Result<Option<Credentials>> {
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let (mut username, mut password) = (
            field("username").unwrap_or_default().to_owned(),
            field("password").unwrap_or_default().to_owned(),
        );
        if let Some(auth) = field("auth") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    file_error(
                        &self.path,
                        format!("the `auth` of {key} is not base64 text"),
                    )
                })?;
            let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                file_error(
                    &self.path,
                    format!("the `auth` of {key} is not `user:password`"),
                )
            })?;
            (username, password) = (user.to_owned(), pass.to_owned());
        }
        let identity_token = field("identitytoken").map(Secret::new);
        if password.is_empty() && identity_token.is_none() {
            // `{}`: a login recorded for a helper, or nothing usable.
            return Ok(None);
        }
        Ok(Some(Credentials {
            username,
            password: Secret::new(password),
            identity_token,
        }))
    }

    fn set_entry(&mut self, key: &str, entry: Map<String, Value>) {
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let auths = auths.as_object_mut().expect("auths is an object");
        // One entry per registry: drop the same host's other spellings.
        let wanted = canonical(key);
        auths.retain(|k, _| canonical(k) != wanted);
        auths.insert(key.to_owned(), Value::Object(entry));
    }

    /// Removes every entry for `key`'s host; whether there was one.
    fn remove_entries(&mut self, key: &str) -> bool {
        let Some(auths) = self.root.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let wanted = canonical(key);
        let before = auths.len();
        auths.retain(|k, _| canonical(k) != wanted);
        auths.len() != before
    }

    /// Replaces the file atomically (a temporary file in the same
    /// directory, mode 0600, synced, renamed over it), indented with tabs
    /// as Docker writes it. A symlinked config is written through the link.
    fn write(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let target = match std::fs::canonicalize(&self.path) {
            Ok(real) => real,
            Err(_) => self.path.clone(),
        };
        let dir = target
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_error(&self.path, e.to_string()))?;
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        serde::Serialize::serialize(&self.root, &mut serializer)
            .map_err(|e| file_error(&self.path, e.to_string()))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.json".into());
        // Unique per process and call: a stale file of a crashed run
        // cannot block this write (create_new refuses to reuse a name).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &target)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(file_error(&self.path, e.to_string()));
        }
        Ok(())
    }
}

/// Whether `path` exists but this user may not read it.
fn is_unreadable(path: &Path) -> bool {
    matches!(
        std::fs::File::open(path),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied
    )
}

fn file_error(path: &Path, reason: String) -> RegistryError {
    RegistryError::Credentials {
        path: path.display().to_string(),
        reason,
    }
}

// ------------------------------------------------------------ helpers

/// What a helper's `get` prints, and `store` reads.
#[derive(serde::Serialize, serde::Deserialize)]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The message helpers print when they have nothing for a server
/// (docker-credential-helpers' `ErrCredentialsNotFound`).
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The `PATH` helpers are found on (`None`: the process's).
#[derive(Clone, Copy)]
struct Helpers<'a>(Option<&'a std::ffi::OsStr>);

fn helper_get(helpers: Helpers, helper: &str, key: &str) -> Result<Option<Credentials>> {
    let out = run_helper(helpers, helper, "get", key.as_bytes())?;
    if !out.success {
        if out.message.contains(NOT_FOUND) {
            return Ok(None);
        }
        return Err(helper_error(helper, "get", &out.message));
    }
    let found: HelperCredentials = serde_json::from_slice(&out.stdout)
        .map_err(|_| helper_error(helper, "get", "it printed something that is not JSON"))?;
    if found.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if found.username == TOKEN_USERNAME {
        Credentials {
            username: String::new(),
            password: Secret::new(""),
            identity_token: Some(Secret::new(found.secret)),
        }
    } else {
        Credentials::new(found.username, found.secret)
    }))
}

fn helper_store(
    helpers: Helpers,
    helper: &str,
    key: &str,
    credentials: &Credentials,
) -> Result<()> {
    let (username, secret) = match &credentials.identity_token {
        Some(token) => (TOKEN_USERNAME.to_owned(), token.expose().to_owned()),
        None => (
            credentials.username.clone(),
            credentials.password.expose().to_owned(),
        ),
    };
    let request = serde_json::to_vec(&HelperCredentials {
        server_url: key.to_owned(),
        username,
        secret: secret.clone(),
    })
    .expect("credentials serialise");
    let out = run_helper(helpers, helper, "store", &request)?;
    if !out.success {
        // A helper that quotes its input back must not print the secret.
        let said = match secret.is_empty() {
            true => out.message,
            false => out.message.replace(&secret, "<redacted>"),
        };
        return Err(helper_error(helper, "store", &said));
    }
    Ok(())
}

/// Erases `key` from the helper; whether it had something to erase.
fn helper_erase(helpers: Helpers, helper: &str, key: &str) -> Result<bool> {
    let out = run_helper(helpers, helper, "erase", key.as_bytes())?;
    if out.success {
        return Ok(true);
    }
    // Helpers word "nothing stored" each their own way (pass: "... is not
    // in the password store"): when `get` finds nothing either, there was
    // nothing to erase.
    if out.message.contains(NOT_FOUND) || helper_get(helpers, helper, key)?.is_none() {
        return Ok(false);
    }
    Err(helper_error(helper, "erase", &out.message))
}

struct HelperOutput {
    success: bool,
    stdout: Vec<u8>,
    /// What it said, for errors: its stderr and stdout, first lines only.
    message: String,
}

fn run_helper(helpers: Helpers, helper: &str, action: &str, input: &[u8]) -> Result<HelperOutput> {
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    if let Some(path) = helpers.0 {
        // std looks the program up in the child's PATH when it is set.
        command.env("PATH", path);
    }
    let mut child = command
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RegistryError::CredentialHelper {
            helper: program.clone(),
            action: action.to_owned(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "it is not installed (not on PATH); install it or remove it from the Docker config"
                    .to_owned()
            } else {
                e.to_string()
            },
        })?;
    // A helper that exits without reading its input closes the pipe: what
    // it prints then says why.
    let _ = child.stdin.take().expect("piped stdin").write_all(input);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let _ = child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut stdout);
    let _ = child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_end(&mut stderr);
    let status = child.wait().map_err(|e| RegistryError::CredentialHelper {
        helper: program.clone(),
        action: action.to_owned(),
        reason: e.to_string(),
    })?;
    let mut message = String::from_utf8_lossy(&stderr).trim().to_owned();
    if !status.success() {
        // Helpers print their errors on stdout (docker-credential-helpers).
        let said = String::from_utf8_lossy(&stdout).trim().to_owned();
        if !said.is_empty() {
            message = if message.is_empty() {
                said
            } else {
                format!("{said}; {message}")
            };
        }
    }
    let message: String = message.lines().take(3).collect::<Vec<_>>().join(" ");
    Ok(HelperOutput {
        success: status.success(),
        stdout,
        message,
    })
}

fn helper_error(helper: &str, action: &str, said: &str) -> RegistryError {
    RegistryError::CredentialHelper {
        helper: format!("docker-credential-{helper}"),
        action: action.to_owned(),
        reason: if said.is_empty() {
            "it failed without saying why".to_owned()
        } else {
            format!("it said: {}", said.chars().take(300).collect::<String>())
        },
    }
}

#[cfg(test)]
mod tests;
