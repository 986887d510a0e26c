//! What an image in the store says about running it, and whether the
//! registry has it.
//!
//! Kubernetes pulls by digest from the registry, never from hoist's store,
//! so the digest written into a manifest must be one the registry serves:
//! the manifest digest the store's tag points at (exactly what a push
//! uploads), or the one the store's push record holds when the push
//! converted the manifest, checked with a `GET /v2/<repo>/manifests/<digest>`.

use super::K8sError;
use hoist_oci::Digest;
use hoist_oci::Platform;
use hoist_oci::image::{Healthcheck, RunConfig};
use hoist_registry::{Client, ClientOptions, Reference, RegistryError};
use hoist_rootfs::user::resolve_chown;
use hoist_rootfs::view::FsView;
use hoist_rootfs::{load_image, load_layer};
use hoist_store::Store;

/// The user a container of the image runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserId {
    /// A numeric uid: USER was a number, or a name the image's
    /// /etc/passwd defines.
    Numeric(u64),
    /// USER names a user the image does not define (or its files cannot be
    /// read): Kubernetes cannot check `runAsNonRoot` against a name, so no
    /// security context claims it.
    Unresolved { name: String, reason: String },
}

/// One EXPOSE entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub number: u16,
    /// `TCP`, `UDP` or `SCTP`, as Kubernetes spells them.
    pub protocol: &'static str,
}

/// The parts of an image's config that shape its manifests.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// The reference given, normalised.
    pub reference: Reference,
    /// The manifest (or index) digest the registry serves for the image:
    /// the store tag's, or the one its push recorded when the push
    /// converted the manifest.
    pub digest: Digest,
    pub ports: Vec<Port>,
    pub healthcheck: Option<Healthcheck>,
    /// SHELL, `["/bin/sh", "-c"]` when unset (Docker's default on Linux).
    pub shell: Vec<String>,
    /// `None` when the image runs as root (no USER, or uid 0).
    pub user: Option<UserId>,
    /// VOLUME paths, sorted.
    pub volumes: Vec<String>,
}

/// Reads the image `reference` from the store; a layer it needs (to find
/// USER's uid in `/etc/passwd`) that the store holds only as a remote blob
/// is fetched with `pull`.
pub fn inspect(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    pull: &hoist_registry::PullOptions,
) -> Result<ImageFacts, K8sError> {
    let name = reference.to_string();
    let store_err = |source: Box<dyn std::error::Error + Send + Sync>| K8sError::Store {
        reference: reference.familiar(),
        source,
    };
    let descriptor = match &reference.digest {
        // `app@sha256:...`: that manifest, when the store has it under
        // some tag.
        Some(digest) => store
            .list()
            .map_err(|e| store_err(Box::new(e)))?
            .into_iter()
            .map(|(_, d)| d)
            .find(|d| d.digest == *digest),
        None => store.resolve(&name).map_err(|e| store_err(Box::new(e)))?,
    }
    .ok_or_else(|| K8sError::NotInStore {
        reference: reference.familiar(),
    })?;
    let image =
        load_image(store, &descriptor.digest, platform).map_err(|e| store_err(Box::new(e)))?;
    let config = image.config.config.clone().unwrap_or_default();
    let user = match user_part(&config.user) {
        None => None,
        Some(user) => match user.parse::<u64>() {
            Ok(0) => None,
            Ok(uid) => Some(UserId::Numeric(uid)),
            Err(_) if user == "root" => None,
            Err(_) => {
                let mut view = FsView::default();
                // Layers a lazy build left in their registry are fetched.
                let mut failure = hoist_registry::fetch_remote(
                    &Client::new(pull.client_options()),
                    store,
                    &image.manifest.layers,
                    &|_| None,
                    &pull.mirrors,
                )
                .err()
                .map(|e| e.to_string());
                for (layer, diff_id) in image
                    .manifest
                    .layers
                    .iter()
                    .zip(&image.config.rootfs.diff_ids)
                {
                    if failure.is_some() {
                        break;
                    }
                    match load_layer(store, &layer.digest, &layer.media_type, diff_id, None) {
                        Ok(index) => view.push(index),
                        Err(e) => {
                            failure = Some(e.to_string());
                            break;
                        }
                    }
                }
                let resolved = match failure {
                    Some(reason) => Err(reason),
                    None => resolve_chown(user, &view)
                        .map(|(uid, _)| uid)
                        .map_err(|e| e.to_string()),
                };
                match resolved {
                    Ok(0) => None,
                    Ok(uid) => Some(UserId::Numeric(uid)),
                    Err(reason) => Some(UserId::Unresolved {
                        name: user.to_owned(),
                        reason,
                    }),
                }
            }
        },
    };
    // A push may have converted the manifest (`hoist push --format
    // docker`): the registry then serves another digest, which the push
    // record holds. The record counts only while it is of this image (its
    // config among the blobs pushed); otherwise the image changed since.
    let pushed = match reference.digest {
        Some(_) => None,
        None => store.pushed(&name).map_err(|e| store_err(Box::new(e)))?,
    };
    let digest = match pushed {
        Some(record)
            if record.digest == descriptor.digest
                || record.blobs.contains(&image.manifest.config.digest) =>
        {
            record.digest
        }
        _ => descriptor.digest,
    };
    Ok(ImageFacts {
        reference: reference.clone(),
        digest,
        ports: ports(&config),
        healthcheck: config
            .healthcheck
            .clone()
            .filter(|h| !h.test.is_empty() && h.test[0] != "NONE"),
        shell: if config.shell.is_empty() {
            vec!["/bin/sh".to_owned(), "-c".to_owned()]
        } else {
            config.shell.clone()
        },
        user,
        volumes: config.volumes.iter().cloned().collect(),
    })
}

/// The user side of USER's `user[:group]`, `None` when unset.
fn user_part(spec: &str) -> Option<&str> {
    let user = spec.split_once(':').map_or(spec, |(u, _)| u);
    (!user.is_empty()).then_some(user)
}

/// EXPOSE's `"80/tcp"` entries as ports, sorted by number then protocol;
/// entries Kubernetes cannot express (port ranges, unknown protocols) are
/// left out.
fn ports(config: &RunConfig) -> Vec<Port> {
    let mut ports: Vec<Port> = config
        .exposed_ports
        .iter()
        .filter_map(|p| {
            let (number, protocol) = p.split_once('/').unwrap_or((p, "tcp"));
            let protocol = match protocol.to_ascii_lowercase().as_str() {
                "tcp" => "TCP",
                "udp" => "UDP",
                "sctp" => "SCTP",
                _ => return None,
            };
            let number = number.parse().ok().filter(|&n: &u16| n > 0)?;
            Some(Port { number, protocol })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// Whether a registry has an image's digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The registry serves the digest. `anonymous` says whether it does so
    /// without credentials: when not, the cluster needs a pull Secret.
    Present { anonymous: bool },
    /// The registry answered that it has no such manifest.
    Missing,
}

/// Asks the registry of `facts.reference` for `facts.digest`.
pub fn check_registry(
    facts: &ImageFacts,
    options: &ClientOptions,
) -> Result<Registration, RegistryError> {
    let client = Client::new(options.clone());
    let endpoint = client.endpoint(facts.reference.api_host());
    let digest = facts.digest.to_string();
    match client.get_manifest(&endpoint, &facts.reference.path, &digest) {
        Ok(_) => {}
        Err(RegistryError::NotFound { .. }) => return Ok(Registration::Missing),
        Err(e) => return Err(e),
    }
    // Again with no credentials at all (Docker's and podman's files at a
    // path that cannot exist read as "none"), to learn whether the
    // cluster will need some.
    let nowhere = || Some(std::path::PathBuf::from("/nonexistent/hoist/config.json"));
    let anonymous = Client::new(ClientOptions {
        docker_config: nowhere(),
        auth_file: nowhere(),
        ..options.clone()
    });
    let anonymous = anonymous
        .get_manifest(&endpoint, &facts.reference.path, &digest)
        .is_ok();
    Ok(Registration::Present { anonymous })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports_become_sorted_kubernetes_ports() {
        let config = RunConfig {
            exposed_ports: ["8080/tcp", "53/udp", "3000", "1000-2000/tcp", "9/xyz"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        };
        assert_eq!(
            ports(&config),
            vec![
                Port {
                    number: 53,
                    protocol: "UDP"
                },
                Port {
                    number: 3000,
                    protocol: "TCP"
                },
                Port {
                    number: 8080,
                    protocol: "TCP"
                },
            ]
        );
    }

    #[test]
    fn user_part_ignores_the_group() {
        assert_eq!(user_part("app:staff"), Some("app"));
        assert_eq!(user_part("1001"), Some("1001"));
        assert_eq!(user_part(""), None);
        assert_eq!(user_part(":1"), None);
    }
}
