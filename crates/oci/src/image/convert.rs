//! Converting OCI image manifests and indexes to Docker's manifest schema
//! 2 and manifest list, for registries and tools that want Docker's media
//! types (`hoist push --format docker`).
//!
//! Only the documents change: the config and layer blobs are the same
//! bytes under Docker's media types (Docker's image config is the format
//! OCI's was taken from), so a converted image needs no blob uploaded
//! twice, but its manifest has its own digest. Schema 2 has no place for
//! annotations, `artifactType` or `subject`: annotations are dropped, as
//! Docker's own exporters drop them, and artifacts are refused.

use super::manifest::SCHEMA_VERSION;
use super::{Descriptor, Index, Manifest};
use crate::media_type;

/// Why a document has no Docker schema 2 form.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "{what} media type `{media_type}` has no Docker schema 2 equivalent; push with the OCI \
         format instead"
    )]
    MediaType {
        what: &'static str,
        media_type: String,
    },
    #[error(
        "the manifest is an artifact (it has an artifactType or a subject), which Docker schema 2 \
         cannot express; push with the OCI format instead"
    )]
    Artifact,
}

/// The Docker schema 2 form of `manifest`; a manifest already in Docker's
/// media types comes back unchanged but for dropped annotations.
pub fn to_docker_manifest(manifest: &Manifest) -> Result<Manifest, ConvertError> {
    if manifest.artifact_type.is_some() || manifest.subject.is_some() {
        return Err(ConvertError::Artifact);
    }
    let config = match manifest.config.media_type.as_str() {
        media_type::OCI_CONFIG | media_type::DOCKER_CONFIG => {
            docker_descriptor(&manifest.config, media_type::DOCKER_CONFIG)
        }
        other => {
            return Err(ConvertError::MediaType {
                what: "config",
                media_type: other.to_owned(),
            });
        }
    };
    let layers = manifest
        .layers
        .iter()
        .map(|layer| {
            let docker = match layer.media_type.as_str() {
                media_type::OCI_LAYER_TAR_GZIP | media_type::DOCKER_LAYER_TAR_GZIP => {
                    media_type::DOCKER_LAYER_TAR_GZIP
                }
                media_type::OCI_LAYER_TAR | media_type::DOCKER_LAYER_TAR => {
                    media_type::DOCKER_LAYER_TAR
                }
                // containerd's extension, which Docker >= 23 pulls.
                media_type::OCI_LAYER_TAR_ZSTD | media_type::DOCKER_LAYER_TAR_ZSTD => {
                    media_type::DOCKER_LAYER_TAR_ZSTD
                }
                media_type::OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP
                | media_type::DOCKER_LAYER_FOREIGN_TAR_GZIP => {
                    media_type::DOCKER_LAYER_FOREIGN_TAR_GZIP
                }
                other => {
                    return Err(ConvertError::MediaType {
                        what: "layer",
                        media_type: other.to_owned(),
                    });
                }
            };
            let mut converted = docker_descriptor(layer, docker);
            // Foreign layers keep where they come from.
            converted.urls = layer.urls.clone();
            Ok(converted)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        media_type: Some(media_type::DOCKER_MANIFEST.to_owned()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: Default::default(),
    })
}

/// The Docker manifest list form of `index`, whose entries are replaced by
/// `manifests` (the converted manifests' descriptors, in the same order;
/// their platforms are kept).
pub fn to_docker_manifest_list(
    index: &Index,
    manifests: &[Descriptor],
) -> Result<Index, ConvertError> {
    if index.artifact_type.is_some() || index.subject.is_some() {
        return Err(ConvertError::Artifact);
    }
    let entries = index
        .manifests
        .iter()
        .zip(manifests)
        .map(|(entry, converted)| {
            let mut descriptor = docker_descriptor(converted, media_type::DOCKER_MANIFEST);
            descriptor.platform = entry.platform.clone();
            descriptor
        })
        .collect();
    Ok(Index {
        schema_version: SCHEMA_VERSION,
        media_type: Some(media_type::DOCKER_MANIFEST_LIST.to_owned()),
        artifact_type: None,
        manifests: entries,
        subject: None,
        annotations: Default::default(),
    })
}

/// `descriptor` under `media_type`, with only what schema 2 knows.
fn docker_descriptor(descriptor: &Descriptor, media_type: &str) -> Descriptor {
    Descriptor::new(media_type, descriptor.digest, descriptor.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use crate::Platform;
    use crate::image::Document;

    fn oci() -> Manifest {
        let mut manifest = Manifest::new(
            Descriptor::new(media_type::OCI_CONFIG, Digest::of(b"c"), 1),
            vec![
                Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, Digest::of(b"l"), 1)
                    .with_annotation("org.opencontainers.image.title", "x"),
            ],
        );
        manifest
            .annotations
            .insert("org.opencontainers.image.created".into(), "now".into());
        manifest
    }

    #[test]
    fn an_oci_manifest_becomes_schema_2_with_the_same_blobs_and_its_own_digest() {
        let docker = to_docker_manifest(&oci()).unwrap();
        let text = String::from_utf8(docker.encode().bytes).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"config":{{"digest":"{}","mediaType":"application/vnd.docker.container.image.v1+json","size":1}},"layers":[{{"digest":"{}","mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":1}}],"mediaType":"application/vnd.docker.distribution.manifest.v2+json","schemaVersion":2}}"#,
                Digest::of(b"c"),
                Digest::of(b"l")
            )
        );
        assert_ne!(docker.encode().digest, oci().encode().digest);
        // Converting twice changes nothing more.
        assert_eq!(to_docker_manifest(&docker).unwrap(), docker);
    }

    #[test]
    fn artifacts_and_unknown_layers_are_refused() {
        let mut artifact = oci();
        artifact.artifact_type = Some("application/vnd.example".into());
        assert!(matches!(
            to_docker_manifest(&artifact),
            Err(ConvertError::Artifact)
        ));
        let mut odd = oci();
        odd.layers[0].media_type = "application/vnd.example.layer".into();
        let error = to_docker_manifest(&odd).unwrap_err().to_string();
        assert!(error.contains("application/vnd.example.layer"), "{error}");
    }

    #[test]
    fn an_index_becomes_a_manifest_list_keeping_platforms() {
        let converted = to_docker_manifest(&oci()).unwrap().encode();
        let index = Index::new(vec![
            oci()
                .encode()
                .descriptor(media_type::OCI_MANIFEST)
                .with_platform(Platform::new("linux", "amd64")),
        ]);
        let list =
            to_docker_manifest_list(&index, &[converted.descriptor(media_type::DOCKER_MANIFEST)])
                .unwrap();
        assert_eq!(
            list.media_type.as_deref(),
            Some(media_type::DOCKER_MANIFEST_LIST)
        );
        assert_eq!(list.manifests[0].digest, converted.digest);
        assert_eq!(
            list.manifests[0].platform,
            Some(Platform::new("linux", "amd64"))
        );
    }
}
