//! FROM and the other ways a step names an image (`COPY --from`, `RUN
//! --mount=from`): the image found in the store or pulled (each layer read
//! as it downloads), and a stage's layers read into its view when a step
//! needs its files.

use crate::engine::{Builder, StageState};
use crate::error::{BuildError, StepError};
use crate::writer::LayerBlob;
use hoist_dockerfile::instructions::Instruction;
use hoist_oci::image::Descriptor;
use hoist_oci::{Digest, Platform, media_type};
use hoist_registry::{LayerTap, Reference, RegistryError};
use hoist_rootfs::{Mirror, load_image, load_layer};
use hoist_store::Store;

impl Builder<'_> {
    /// A stage built on an image from the store, pulled first when missing
    /// (or always once with `--pull`).
    pub(crate) fn image_state(
        &mut self,
        from: &Instruction,
        reference: &str,
        platform: &Platform,
    ) -> Result<StageState, BuildError> {
        if let Some(layout) = reference.strip_prefix("oci-layout://") {
            let digest = hoist_rootfs::import_oci_layout(self.store, layout)
                .map_err(|e| self.step_error(from, e))?;
            return self.state_from_manifest(from, &digest, platform);
        }
        let normalised = Reference::parse(reference).map_err(|e| {
            self.invalid(
                from,
                e.to_string(),
                Some(
                    "image names are lowercase, e.g. node:14-alpine or localhost:5000/team/app:v1",
                ),
            )
        })?;
        let name = normalised.to_string();
        let stored = self.store.resolve(&name)?;
        let descriptor = match stored {
            Some(d) if !self.request.always_pull || self.pulled.contains(&name) => d,
            _ => {
                let pulled = hoist_registry::pull_lazy(
                    &self.registry,
                    self.store,
                    &normalised,
                    platform,
                    &self.request.pull.mirrors,
                )
                .map_err(|source| {
                    // `COPY --from=NAME` and `RUN --mount=from=NAME`
                    // take a name that is no stage as an image.
                    let hint = (!from.keyword.eq_ignore_ascii_case("FROM")
                        && !reference.contains(['/', ':', '@']))
                    .then(|| {
                        format!(
                            "no stage is named `{reference}`, so it was taken as the image \
                             {}/{}; name a stage with `FROM ... AS {reference}` before this \
                             line, or give a full image reference",
                            normalised.domain, normalised.path
                        )
                    });
                    self.step_error(
                        from,
                        StepError::Pull {
                            reference: reference.to_string(),
                            hint,
                            source: Box::new(source),
                        },
                    )
                })?;
                self.pulled.insert(name);
                pulled.tagged
            }
        };
        self.state_from_manifest(from, &descriptor.digest, platform)
    }

    /// Fetches the layers of `layers` the store holds only as remote
    /// blobs (a base pulled as manifest and config, a step from a registry
    /// cache), a few at once, each read as it downloads (extracted, its
    /// index made) on a thread of its own.
    fn fetch_and_read(&mut self, layers: &[(Descriptor, Digest)]) -> Result<(), RegistryError> {
        let store = self.store;
        let with_snapshot = self.runs_steps;
        let remote: Vec<Descriptor> = layers.iter().map(|(d, _)| d.clone()).collect();
        let (fetched, read) = std::thread::scope(|scope| {
            let reads = std::sync::Mutex::new(Vec::new());
            let taps = |layer: &Descriptor| {
                let diff_id = layers.iter().find(|(d, _)| d.digest == layer.digest)?.1;
                if !hoist_rootfs::streams(store, &layer.media_type, &diff_id) {
                    return None;
                }
                let (tap, reader) = hoist_oci::chunks::one_reader();
                let (blob, media) = (layer.digest, layer.media_type.clone());
                let read = scope.spawn(move || {
                    with_run_snapshot(store, &diff_id, with_snapshot, |mirror| {
                        hoist_rootfs::load_layer_streamed(
                            store, reader, &blob, &media, &diff_id, mirror,
                        )
                    })
                });
                reads.lock().expect("poisoned").push((diff_id, read));
                Some(Box::new(tap) as Box<dyn LayerTap>)
            };
            let fetched = hoist_registry::fetch_remote(
                &self.registry,
                store,
                &remote,
                &taps,
                &self.request.pull.mirrors,
            );
            let read: Vec<_> = reads
                .into_inner()
                .expect("poisoned")
                .into_iter()
                .filter_map(|(diff_id, read)| Some((diff_id, read.join().ok()??)))
                .collect();
            (fetched, read)
        });
        // A layer not read here is read from the store when needed.
        self.indexes.extend(read);
        self.bytes_fetched += fetched?;
        Ok(())
    }

    /// A stage on the image (manifest or index) `digest` of the store.
    fn state_from_manifest(
        &mut self,
        from: &Instruction,
        digest: &Digest,
        platform: &Platform,
    ) -> Result<StageState, BuildError> {
        let image =
            load_image(self.store, digest, platform).map_err(|e| self.step_error(from, e))?;
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
            .map(|(layer, diff_id)| {
                let mut d = layer.clone();
                d.media_type = oci_layer_type(&layer.media_type);
                (LayerBlob::ready(d), *diff_id)
            })
            .collect();
        Ok(StageState::new(
            crate::cache_key::image(&image.manifest_digest, platform),
            image.config,
            layers,
        ))
    }

    /// Reads the indexes of the stage's layers that cached steps left
    /// unread. Every step that looks at the stage's files calls it first.
    pub(crate) fn read_view(
        &mut self,
        instr: &Instruction,
        state: &mut StageState,
    ) -> Result<(), BuildError> {
        // Layers still in a registry are fetched first, all at once, each
        // read as it downloads.
        let mut remote = Vec::new();
        for (blob, diff_id) in &state.layers[state.view.layers().len()..] {
            let descriptor = blob.descriptor()?;
            if !self.indexes.contains_key(diff_id)
                && self.store.remote(&descriptor.digest)?.is_some()
            {
                remote.push((descriptor, *diff_id));
            }
        }
        if !remote.is_empty() {
            self.fetch_and_read(&remote)
                .map_err(|e| self.step_error(instr, StepError::Fetch(Box::new(e))))?;
        }
        while let Some((blob, diff_id)) = state.layers.get(state.view.layers().len()) {
            let index = match self.indexes.get(diff_id) {
                Some(index) => index.clone(),
                None => {
                    let descriptor = blob.descriptor()?;
                    let index = with_run_snapshot(self.store, diff_id, self.runs_steps, |mirror| {
                        load_layer(
                            self.store,
                            &descriptor.digest,
                            &descriptor.media_type,
                            diff_id,
                            mirror,
                        )
                    })
                    .map_err(|e| self.step_error(instr, e))?;
                    self.indexes.insert(*diff_id, index.clone());
                    index
                }
            };
            state.view.push(index);
        }
        Ok(())
    }

    /// The state of the stage or image `from` names, for `COPY --from` and
    /// `RUN --mount=from`, its view read.
    pub(crate) fn source_state(
        &mut self,
        instr: &Instruction,
        inputs: &crate::engine::Inputs<'_>,
        from: &str,
    ) -> Result<StageState, BuildError> {
        let mut state = match inputs.planned.stage_by_ref(from) {
            Some(i) => inputs.done.get(&i).cloned().ok_or_else(|| {
                self.invalid(
                    instr,
                    format!("stage {from} is not built before this step"),
                    None,
                )
            })?,
            None => {
                let platform = self.request.options.target_platform.clone();
                self.image_state(instr, from, &platform)?
            }
        };
        self.read_view(instr, &mut state)?;
        Ok(state)
    }
}

/// Runs `load` (a layer read into its index) with RUN's snapshot of the
/// layer as the mirror of its contents, so that one extraction makes both,
/// when the build runs steps (`wanted`) and the snapshot is not there yet.
fn with_run_snapshot<T>(
    store: &Store,
    diff_id: &Digest,
    wanted: bool,
    load: impl FnOnce(Option<Mirror<'_>>) -> T,
) -> T {
    let extract = |input: &mut dyn std::io::Read, content: &std::path::Path| {
        hoist_run::snapshot::extract_mirrored(store, input, diff_id, content)
    };
    let mirror = wanted && hoist_run::snapshot::mirrorable(store, diff_id);
    load(mirror.then_some(&extract))
}

/// Docker media types of a base image's layers become their OCI names in
/// the OCI manifest hoist writes (the blobs are the same bytes).
fn oci_layer_type(media: &str) -> String {
    match media {
        media_type::DOCKER_LAYER_TAR_GZIP => media_type::OCI_LAYER_TAR_GZIP.into(),
        media_type::DOCKER_LAYER_TAR => media_type::OCI_LAYER_TAR.into(),
        media_type::DOCKER_LAYER_TAR_ZSTD => media_type::OCI_LAYER_TAR_ZSTD.into(),
        other => other.into(),
    }
}
