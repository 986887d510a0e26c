//! Media types of the documents and blobs hoist reads and writes: the OCI
//! image spec's (`application/vnd.oci.*`) and Docker's image manifest
//! schema 2 (`application/vnd.docker.*`), which registries still serve for
//! most pulled images. Only constants and classifiers live here; nothing
//! in this module does any I/O.

/// OCI image manifest (image-spec `manifest.md`).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (image-spec `image-index.md`).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration (image-spec `config.md`).
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI content descriptor, as a standalone document.
pub const OCI_DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";
/// The `oci-layout` file of an image layout.
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";
/// The empty JSON blob `{}` (image-spec 1.1, for artifacts).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip-compressed OCI layer: what hoist writes.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Zstandard-compressed OCI layer.
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Non-distributable ("foreign") OCI layers: deprecated in image-spec 1.1
/// but still found in Windows images; registries may refuse their blobs and
/// the descriptor's `urls` say where to get them.
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the multi-platform index of schema 2).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Gzip-compressed Docker layer.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Uncompressed Docker layer (accepted by Docker, rarely pushed).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Zstandard Docker layer: a containerd extension, not in Docker's spec.
pub const DOCKER_LAYER_TAR_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker's foreign layer (Windows base layers fetched from `urls`).
pub const DOCKER_LAYER_FOREIGN_TAR_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// True for layers whose blobs need not be in a registry or an archive
/// (their descriptors carry `urls` instead).
pub fn is_foreign_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_NONDISTRIBUTABLE_TAR
            | OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD
            | DOCKER_LAYER_FOREIGN_TAR_GZIP
    )
}

/// True for an image manifest, OCI or Docker.
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// True for a multi-platform index, OCI or Docker.
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// True for an image configuration, OCI or Docker.
pub fn is_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_layers_are_told_apart() {
        assert!(is_foreign_layer(DOCKER_LAYER_FOREIGN_TAR_GZIP));
        assert!(!is_foreign_layer(OCI_LAYER_TAR_GZIP));
    }
}
