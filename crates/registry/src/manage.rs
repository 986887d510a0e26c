//! Listing a repository's tags and deleting manifests: what pruning a
//! registry cache needs.

use ureq::http::{Method, Response};

use super::client::{Client, Endpoint, Payload, Request, body_detail, pull_scope};

use super::error::{Content, RegistryError, Result};
use hoist_oci::Digest;

/// Tags asked for per page of `tags/list`.
const PAGE: usize = 1000;

/// The most pages followed: 1000 pages of 1000 tags.
const MAX_PAGES: usize = 1000;

impl Client {
    /// Every tag of `repository`, following the registry's `Link` pages.
    /// A repository the registry does not know has none.
    pub fn list_tags(&self, endpoint: &Endpoint, repository: &str) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut next = Some(format!("/v2/{repository}/tags/list?n={PAGE}"));
        for _ in 0..MAX_PAGES {
            let Some(path) = next.take() else {
                break;
            };
            let url = endpoint.url(&path);
            let response = self.request(
                endpoint,
                repository,
                &pull_scope(repository),
                Method::GET,
                &url,
            )?;
            match response.status().as_u16() {
                200..=299 => {}
                404 => return Ok(tags),
                401 | 403 => {
                    return Err(RegistryError::Unauthorized {
                        registry: endpoint.host.clone(),
                        repository: repository.to_owned(),
                    });
                }
                status => return Err(unexpected(endpoint, &url, status, response)),
            }
            next = next_page(&response);
            let body = response
                .into_body()
                .into_with_config()
                .limit(super::client::MAX_MANIFEST)
                .read_to_vec()
                .map_err(|e| RegistryError::Transfer {
                    registry: endpoint.host.clone(),
                    url: url.clone(),
                    source: e.into_io(),
                })?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Document {
                    registry: endpoint.host.clone(),
                    repository: repository.to_owned(),
                    what: Content::TagList,
                    reference: "tags/list".to_owned(),
                    source: Box::new(hoist_oci::image::ImageError::Json {
                        document: "tag list",
                        source: e,
                    }),
                })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// Deletes the manifest `digest` of `repository` (and with it every
    /// tag naming it). A registry that does not allow deletes answers 405,
    /// which becomes [`RegistryError::DeleteDisabled`].
    pub fn delete_manifest(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
    ) -> Result<()> {
        let url = endpoint.url(&format!("/v2/{repository}/manifests/{digest}"));
        let scope = format!("repository:{repository}:delete");
        let response = self.request(endpoint, repository, &scope, Method::DELETE, &url)?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            401 | 403 => Err(RegistryError::DeleteRefused {
                registry: endpoint.host.clone(),
                repository: repository.to_owned(),
            }),
            405 => Err(RegistryError::DeleteDisabled {
                registry: endpoint.host.clone(),
            }),
            status => Err(unexpected(endpoint, &url, status, response)),
        }
    }

    fn request(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        scope: &str,
        method: Method,
        url: &str,
    ) -> Result<Response<ureq::Body>> {
        let request = Request {
            endpoint,
            repository,
            scope,
            method,
            url,
            headers: &[],
            timeout: self.options().timeout,
            retry: true,
        };
        self.send_request(&request, &mut || Ok(Payload::None))
    }
}

#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

fn unexpected(
    endpoint: &Endpoint,
    url: &str,
    status: u16,
    response: Response<ureq::Body>,
) -> RegistryError {
    RegistryError::Status {
        registry: endpoint.host.clone(),
        url: url.to_owned(),
        status,
        detail: body_detail(response, 200),
    }
}

/// The path of the next page a `Link: <PATH>; rel="next"` header names.
fn next_page(response: &Response<ureq::Body>) -> Option<String> {
    let link = response.headers().get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            // An absolute URL keeps only its path and query.
            match target.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]).to_owned(),
                None => target.to_owned(),
            }
        })
    })
}
