//! The upload half of the distribution API, as [`Client`] methods: is a
//! blob there (`HEAD`), start an upload or mount a blob from another
//! repository (`POST`), send a blob (one `PUT` for a small one, `PATCH`
//! chunks then a `PUT` for a large one), and put a manifest.
//!
//! Blobs are streamed from their file in the store, a chunk at a time:
//! nothing here reads a layer into memory. A failed upload is retried a
//! bounded number of times with backoff: a chunked one resumes from what
//! the registry says it holds (`GET` on the upload, its `Range`), anything
//! else starts a fresh upload. `Location`s may be relative or absolute and
//! on another host (a storage front end); such a host gets no
//! `Authorization`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use ureq::http::{Method, Response};

use super::auth::query_escape;
use super::client::{Client, Endpoint, Payload, Request, retry_after, url_host};
use super::error::{RegistryError, Result};
use hoist_oci::Digest;

/// Blobs up to this size go in one `PUT`; larger ones in `PATCH` chunks of
/// this size, so a broken connection costs at most one chunk.
pub const CHUNK: u64 = 16 << 20;

/// The scope a push asks for: pull and push on the destination.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// [`push_scope`] plus pull on the repository a blob is mounted from, in
/// one token, as Docker asks for it.
pub fn mount_scope(repository: &str, from: &str) -> String {
    format!("{} repository:{from}:pull", push_scope(repository))
}

/// A blob's file in the store, to upload.
#[derive(Debug, Clone, Copy)]
pub struct BlobFile<'a> {
    pub path: &'a Path,
    pub digest: &'a Digest,
    pub size: u64,
}

/// What a `POST` to the uploads endpoint gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The blob was mounted from the other repository: nothing to upload.
    Mounted,
    /// An upload session to send the blob to (an absolute URL).
    Upload {
        location: String,
        /// The registry's `OCI-Chunk-Min-Length`, when it has one.
        min_chunk: Option<u64>,
    },
}

impl Client {
    /// Whether `repository` already holds `digest` (`HEAD`; 404 is no).
    pub fn has_blob(&self, endpoint: &Endpoint, repository: &str, digest: &Digest) -> Result<bool> {
        let url = endpoint.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = self.push_request(
            endpoint,
            repository,
            None,
            Method::HEAD,
            &url,
            &[],
            true,
            &mut || Ok(Payload::None),
        )?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(endpoint, repository, &url, response)),
        }
    }

    /// Starts an upload of `digest` to `repository`, first asking the
    /// registry to mount it from `from` (another repository of the same
    /// registry) when given. A registry that cannot mount answers with an
    /// upload session instead, as when no mount was asked.
    pub fn start_upload(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<Started> {
        let mut url = endpoint.url(&format!("/v2/{repository}/blobs/uploads/"));
        if let Some(from) = from {
            url.push_str(&format!(
                "?mount={}&from={}",
                query_escape(&digest.to_string()),
                query_escape(from)
            ));
        }
        let response = self.push_request(
            endpoint,
            repository,
            from,
            Method::POST,
            &url,
            &[],
            true,
            &mut || Ok(Payload::Bytes(Vec::new())),
        )?;
        match response.status().as_u16() {
            201 if from.is_some() => Ok(Started::Mounted),
            202 => {
                let location = location(&url, &response).ok_or_else(|| RegistryError::Upload {
                    registry: endpoint.host.clone(),
                    repository: repository.to_owned(),
                    digest: *digest,
                    reason: "the registry started an upload without a Location".to_owned(),
                })?;
                let min_chunk =
                    header(&response, "oci-chunk-min-length").and_then(|v| v.parse().ok());
                Ok(Started::Upload {
                    location,
                    min_chunk,
                })
            }
            _ => Err(status_error(endpoint, repository, &url, response)),
        }
    }

    /// Uploads `blob` into the upload session at `location`, retrying
    /// failures as the module docs say.
    pub fn upload_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        blob: &BlobFile<'_>,
        location: String,
        min_chunk: Option<u64>,
    ) -> Result<()> {
        let BlobFile { path, digest, size } = *blob;
        let chunk = self
            .options()
            .upload_chunk
            .max(min_chunk.unwrap_or(0))
            .max(1);
        let mut session = Session {
            location,
            offset: 0,
        };
        let mut failures = 0;
        let mut delay = self.options().backoff;
        loop {
            let sent = if size <= chunk {
                self.put_whole(endpoint, repository, path, digest, size, &session.location)
            } else {
                self.put_chunks(
                    endpoint,
                    repository,
                    path,
                    digest,
                    size,
                    chunk,
                    &mut session,
                )
            };
            let (error, wait) = match sent {
                Ok(()) => return Ok(()),
                Err(Failed::Final(error)) => return Err(*error),
                Err(Failed::Transient(error, wait)) => (error, wait),
            };
            failures += 1;
            if failures >= self.attempts() {
                return Err(*error);
            }
            std::thread::sleep(wait.unwrap_or(delay).min(Duration::from_secs(30)));
            delay *= 2;
            // Resume where the registry stands, or start over.
            let resumed = size > chunk
                && self
                    .upload_offset(endpoint, repository, &session.location)
                    .ok()
                    .flatten()
                    .filter(|&at| at <= size)
                    .map(|at| session.offset = at)
                    .is_some();
            if !resumed {
                match self.start_upload(endpoint, repository, digest, None)? {
                    Started::Upload { location, .. } => {
                        session = Session {
                            location,
                            offset: 0,
                        }
                    }
                    Started::Mounted => return Ok(()),
                }
            }
        }
    }

    /// One `PUT ?digest=` with the whole blob.
    fn put_whole(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        path: &Path,
        digest: &Digest,
        size: u64,
        location: &str,
    ) -> std::result::Result<(), Failed> {
        let url = with_digest(location, digest);
        let response = self
            .push_request(
                endpoint,
                repository,
                None,
                Method::PUT,
                &url,
                &[("Content-Type", "application/octet-stream")],
                false,
                &mut || section(path, 0, size, endpoint, repository, digest),
            )
            .map_err(Failed::classify)?;
        finished(endpoint, repository, &url, digest, response)
    }

    /// `PATCH` chunks from `session.offset` on, then the closing `PUT`.
    #[allow(clippy::too_many_arguments)]
    fn put_chunks(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        path: &Path,
        digest: &Digest,
        size: u64,
        chunk: u64,
        session: &mut Session,
    ) -> std::result::Result<(), Failed> {
        while session.offset < size {
            let start = session.offset;
            let len = chunk.min(size - start);
            let range = format!("{start}-{}", start + len - 1);
            let url = session.location.clone();
            let response = self
                .push_request(
                    endpoint,
                    repository,
                    None,
                    Method::PATCH,
                    &url,
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", &range),
                    ],
                    false,
                    &mut || section(path, start, len, endpoint, repository, digest),
                )
                .map_err(Failed::classify)?;
            match response.status().as_u16() {
                202 | 204 => {}
                status => {
                    let wait = retry_after(&response);
                    let error = Box::new(status_error(endpoint, repository, &url, response));
                    return Err(if transient_status(status) || status == 416 {
                        Failed::Transient(error, wait)
                    } else {
                        Failed::Final(error)
                    });
                }
            }
            if let Some(next) = location(&url, &response) {
                session.location = next;
            }
            session.offset = start + len;
        }
        let url = with_digest(&session.location, digest);
        let response = self
            .push_request(
                endpoint,
                repository,
                None,
                Method::PUT,
                &url,
                &[],
                false,
                &mut || Ok(Payload::Bytes(Vec::new())),
            )
            .map_err(Failed::classify)?;
        finished(endpoint, repository, &url, digest, response)
    }

    /// How many bytes the upload at `location` holds, from its `Range`
    /// (`0-N`); `None` when the registry does not say or the answer is
    /// ambiguous (`0-0` is also what an empty upload reports).
    fn upload_offset(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        location: &str,
    ) -> Result<Option<u64>> {
        let response = self.push_request(
            endpoint,
            repository,
            None,
            Method::GET,
            location,
            &[],
            true,
            &mut || Ok(Payload::None),
        )?;
        if response.status().as_u16() != 204 {
            return Ok(None);
        }
        Ok(header(&response, "range")
            .and_then(|r| r.split_once('-').map(|(_, end)| end.trim().to_owned()))
            .and_then(|end| end.parse::<u64>().ok())
            .filter(|&end| end > 0)
            .map(|end| end + 1))
    }

    /// PUTs a manifest or index under `reference` (a tag or a digest) and
    /// returns the digest the registry reports, or the bytes' own.
    pub fn put_manifest(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let url = endpoint.url(&format!("/v2/{repository}/manifests/{reference}"));
        let response = self.push_request(
            endpoint,
            repository,
            None,
            Method::PUT,
            &url,
            &[("Content-Type", media_type)],
            true,
            &mut || Ok(Payload::Bytes(bytes.to_vec())),
        )?;
        match response.status().as_u16() {
            200..=299 => {}
            _ => return Err(status_error(endpoint, repository, &url, response)),
        }
        let digest = Digest::of(bytes);
        match header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
            Some(claimed) if claimed != digest => Err(RegistryError::DigestMismatch {
                registry: endpoint.host.clone(),
                repository: repository.to_owned(),
                what: super::Content::Manifest,
                expected: digest,
                actual: claimed,
            }),
            _ => Ok(digest),
        }
    }

    /// A request with the push scope (and the mount source's pull scope).
    #[allow(clippy::too_many_arguments)]
    fn push_request(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        mount_from: Option<&str>,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        retry: bool,
        payload: &mut dyn FnMut() -> Result<Payload>,
    ) -> Result<Response<ureq::Body>> {
        let scope = match mount_from {
            Some(from) => mount_scope(repository, from),
            None => push_scope(repository),
        };
        let timeout = if matches!(method, Method::PUT | Method::PATCH) {
            self.options().blob_timeout
        } else {
            self.options().timeout
        };
        let request = Request {
            endpoint,
            repository,
            scope: &scope,
            method,
            url,
            headers,
            timeout,
            retry,
        };
        self.send_request(&request, payload)
    }
}

/// An upload session: where to send next, and how much it holds.
struct Session {
    location: String,
    offset: u64,
}

/// How an upload attempt failed.
enum Failed {
    /// Worth another attempt (after the registry's `Retry-After`, if any).
    Transient(Box<RegistryError>, Option<Duration>),
    Final(Box<RegistryError>),
}

impl Failed {
    fn classify(error: RegistryError) -> Failed {
        match error {
            RegistryError::Timeout { .. }
            | RegistryError::Connect { .. }
            | RegistryError::Dropped { .. }
            | RegistryError::Transfer { .. } => Failed::Transient(Box::new(error), None),
            RegistryError::Status { status, .. } if transient_status(status) => {
                Failed::Transient(Box::new(error), None)
            }
            error => Failed::Final(Box::new(error)),
        }
    }
}

fn transient_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Checks the answer to the `PUT` that closes an upload.
fn finished(
    endpoint: &Endpoint,
    repository: &str,
    url: &str,
    digest: &Digest,
    response: Response<ureq::Body>,
) -> std::result::Result<(), Failed> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        if let Some(claimed) =
            header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
            && claimed != *digest
        {
            return Err(Failed::Final(Box::new(RegistryError::Upload {
                registry: endpoint.host.clone(),
                repository: repository.to_owned(),
                digest: *digest,
                reason: format!("the registry stored it as {claimed}"),
            })));
        }
        return Ok(());
    }
    let wait = retry_after(&response);
    let error = Box::new(status_error(endpoint, repository, url, response));
    // 404: the session expired or was lost (a registry restarted); a
    // fresh one can work.
    if transient_status(status) || status == 404 {
        Err(Failed::Transient(error, wait))
    } else {
        Err(Failed::Final(error))
    }
}

/// `len` bytes of the file at `path` from `start`, as a streamed body.
fn section(
    path: &Path,
    start: u64,
    len: u64,
    endpoint: &Endpoint,
    repository: &str,
    digest: &Digest,
) -> Result<Payload> {
    let open = || -> std::io::Result<File> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok(file)
    };
    let file = open().map_err(|e| RegistryError::Upload {
        registry: endpoint.host.clone(),
        repository: repository.to_owned(),
        digest: *digest,
        reason: format!("cannot read {} ({e})", path.display()),
    })?;
    Ok(Payload::Stream {
        reader: Box::new(file.take(len)),
        len,
    })
}

/// The error for a status a push request did not expect.
fn status_error(
    endpoint: &Endpoint,
    repository: &str,
    url: &str,
    response: Response<ureq::Body>,
) -> RegistryError {
    let status = response.status().as_u16();
    if matches!(status, 401 | 403) {
        return RegistryError::PushRefused {
            registry: endpoint.host.clone(),
            repository: repository.to_owned(),
        };
    }
    let detail = super::client::body_detail(response, 300);
    RegistryError::Status {
        registry: endpoint.host.clone(),
        url: url.to_owned(),
        status,
        detail,
    }
}

fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The response's `Location` as an absolute URL: registries send it
/// absolute (possibly on another host) or relative to the request.
fn location(request_url: &str, response: &Response<ureq::Body>) -> Option<String> {
    let location = header(response, "location")?;
    Some(resolve(request_url, &location))
}

/// `location` resolved against `base` (RFC 3986, for the forms registries
/// use: absolute, absolute-path and path-relative).
pub(crate) fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let host = url_host(base);
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{host}{location}");
    }
    let path = rest[host.len()..].split(['?', '#']).next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{host}{dir}{location}")
}

/// `url` with `digest=` added to its query.
fn with_digest(url: &str, digest: &Digest) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}digest={}",
        query_escape(&digest.to_string())
    )
}

#[cfg(test)]
mod tests;
