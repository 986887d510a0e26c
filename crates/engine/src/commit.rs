//! Layers into the store: a step's changes written as a layer blob (now,
//! or on the writer thread while later steps run) and recorded in the
//! cache under the step's key, or taken from the cache when the key is
//! there.

use crate::cache_key::LayerFormat;
use crate::engine::{Builder, StageState, StepResult};
use crate::error::{BuildError, StepError, StepPlace};
use crate::writer::{LayerBlob, Stoppable, Written};
use hoist_dockerfile::instructions::Instruction;
use hoist_oci::image::Descriptor;
use hoist_oci::layer::tar::{Entry, TarOptions};
use hoist_oci::layer::{LayerOptions, write_layer_with};
use hoist_oci::{Digest, Sha256, media_type};
use hoist_rootfs::view::LayerIndex;
use hoist_store::{CacheRecord, CacheValue, CachedLayer, Store};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What the cache says of a step.
pub(crate) enum Cached {
    /// The step made this layer.
    Layer(CachedLayer),
    /// The step made no layer.
    Empty,
}

/// The descriptor a cached layer has in a manifest hoist writes.
pub(crate) fn descriptor(layer: &CachedLayer) -> Descriptor {
    Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, layer.digest, layer.size)
}

impl StageState {
    /// A step answered by the cache with `layer`: the layer goes on top of
    /// the stage (its index read only if a later step looks) and the
    /// step's `key` becomes the stage's.
    pub(crate) fn reuse(
        &mut self,
        key: Digest,
        layer: &CachedLayer,
        history: String,
    ) -> StepResult {
        self.layers
            .push((LayerBlob::ready(descriptor(layer)), layer.diff_id));
        self.key = key;
        StepResult {
            history: Some(history),
            layer_bytes: Some(layer.tar_size),
            cached: true,
        }
    }
}

impl Builder<'_> {
    /// How this build's layers are made, as their keys cover it.
    pub(crate) fn layer_format(&self) -> LayerFormat {
        LayerFormat {
            gzip_level: self.request.gzip.level,
            source_date_epoch: self.request.source_date_epoch,
        }
    }

    /// Turns a step's changes into a layer (from the cache when the store
    /// has it), pushes it onto the stage; returns its size and whether it
    /// was cached. The step's `key` is the one it had before it ran (what
    /// it reads); without one (ADD of a URL, known only once downloaded)
    /// the layer's entries are its key.
    pub(crate) fn commit_layer(
        &mut self,
        instr: &Instruction,
        state: &mut StageState,
        keyword: &str,
        text: &str,
        changes: LayerIndex,
        key: Option<Digest>,
    ) -> Result<(u64, bool), BuildError> {
        // Sorted (and hardlinks normalised) once: the key and the tar both
        // walk these entries.
        let entries = changes.to_tar_entries();
        let key = match key {
            Some(key) => key,
            None => self.entries_key(state, keyword, text, &entries)?,
        };
        let (layer, hit) = match self.cached(&key)? {
            Some(Cached::Layer(cached)) => (cached, true),
            _ => {
                let history = format!("{keyword} {text}");
                let layer = self
                    .store_layer(&key, &history, &entries)
                    .map_err(|e| self.step_error(instr, e))?;
                (layer, false)
            }
        };
        let blob = LayerBlob::ready(descriptor(&layer));
        if state.view.layers().len() == state.layers.len() {
            state.push_layer(Arc::new(changes), blob, layer.diff_id);
        } else {
            // A step that did not read the stage below (COPY --link): its
            // index waits for the first step that reads the view.
            self.indexes.insert(layer.diff_id, Arc::new(changes));
            state.layers.push((blob, layer.diff_id));
        }
        state.key = key;
        Ok((layer.tar_size, hit))
    }

    /// The key of a step made of `entries`: what its layer holds.
    fn entries_key(
        &mut self,
        state: &StageState,
        keyword: &str,
        text: &str,
        entries: &[Entry],
    ) -> Result<Digest, BuildError> {
        let format = self.layer_format();
        let hasher = &mut self.hasher;
        crate::cache_key::layer(&state.key, keyword, text, format, entries, |content| {
            hasher.digest(content).map_err(|e| (content.clone(), e))
        })
        .map_err(|(content, e)| BuildError::Context {
            path: match content {
                hoist_oci::layer::tar::Content::Path(p) => p,
                _ => std::path::PathBuf::new(),
            },
            source: Box::new(e),
        })
    }

    /// The cache's answer for a layer step, unless the build ignores the
    /// cache.
    pub(crate) fn cached(&self, key: &Digest) -> Result<Option<Cached>, BuildError> {
        // Noted even without the cache: `--cache-to` exports what was built.
        self.shared.looked_up.borrow_mut().push((self.stage, *key));
        if self.request.no_cache {
            return Ok(None);
        }
        let record = match self.store.cache_get(&key.hex())? {
            Some(record) => Some(record),
            // The store misses: the shared caches, in order.
            None => self.shared.lookup(self.store, key),
        };
        Ok(match record {
            Some(CacheRecord {
                value: CacheValue::Layer(layer),
                ..
            }) => Some(Cached::Layer(layer)),
            Some(CacheRecord {
                value: CacheValue::Empty,
                ..
            }) => Some(Cached::Empty),
            _ => None,
        })
    }

    /// Writes `entries` as a layer blob and records it under `key` (see
    /// [`write_layer_blob`]).
    pub(crate) fn store_layer(
        &mut self,
        key: &Digest,
        step: &str,
        entries: &[Entry],
    ) -> Result<CachedLayer, StepError> {
        let never = AtomicBool::new(false);
        let (options, step) = self.layer_inputs(step);
        let blob = write_layer_blob(self.store, &options, &step, key, entries, &never)?;
        self.blocks_reused += blob.reused;
        self.damaged.extend(blob.damaged);
        Ok(blob.layer)
    }

    /// [`Builder::store_layer`] on the writer thread, for a layer whose
    /// snapshot was made from `entries` with diffID `diff_id`: a blob
    /// whose tar has another digest (its files changed in between) fails
    /// the build rather than pair the snapshot with other bytes.
    pub(crate) fn store_layer_later(
        &self,
        place: StepPlace,
        key: Digest,
        step: &str,
        entries: Vec<Entry>,
        diff_id: Digest,
    ) -> LayerBlob {
        let (options, step) = self.layer_inputs(step);
        let store = self.store;
        self.writer.submit(
            place,
            Box::new(move |stop| {
                let Blob {
                    layer,
                    reused,
                    damaged,
                } = write_layer_blob(store, &options, &step, &key, &entries, stop)?;
                if layer.diff_id != diff_id {
                    return Err(StepError::Layer(hoist_oci::layer::LayerError::Read {
                        source: std::io::Error::other(format!(
                            "its files changed after the step: the layer's diffID is {}, its snapshot's {diff_id}",
                            layer.diff_id
                        )),
                    }));
                }
                Ok(Written {
                    descriptor: descriptor(&layer),
                    reused,
                    damaged,
                })
            }),
        )
    }

    /// Records that the step `key` made no layer.
    pub(crate) fn record_empty(&self, key: &Digest) -> Result<(), BuildError> {
        Ok(self.store.cache_put(&key.hex(), &CacheRecord::empty())?)
    }

    /// How layers are written, and the identity of `step` (its instruction
    /// text) across builds, under which its last layer's blocks are kept.
    fn layer_inputs(&self, step: &str) -> (LayerOptions, Digest) {
        let options = LayerOptions {
            tar: TarOptions {
                source_date_epoch: self.request.source_date_epoch,
            },
            gzip: self.request.gzip,
        };
        let mut h = Sha256::new();
        for part in [
            self.request.context.to_string_lossy().as_ref(),
            self.request.dockerfile_name.as_str(),
            step,
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        (options, h.finish())
    }
}

/// Writes `entries` as a layer blob and records it under `key`. The blocks of the layer
/// the same step (`step`, see [`Builder::layer_inputs`]) made last time are
/// copied where their input is unchanged, so that one changed file in a
/// large COPY costs one block of compression. Stops when `stop` is set.
fn write_layer_blob(
    store: &Store,
    options: &LayerOptions,
    step: &Digest,
    key: &Digest,
    entries: &[Entry],
    stop: &AtomicBool,
) -> Result<Blob, StepError> {
    let previous = store.step_layer(step);
    let memo = previous.and_then(|previous| store.block_memo(&previous));
    let out = Stoppable {
        inner: store.blob_writer()?,
        stop,
    };
    let (digests, summary, out) = write_layer_with(entries, options, memo.as_ref(), out)?;
    // Blocks of the earlier layer that no longer matched their digests
    // were compressed again: that blob is damaged, and where this layer is
    // the same blob, this intact copy replaces it.
    let damaged = (summary.refused > 0).then_some(previous).flatten();
    let (digest, size) = match damaged {
        Some(_) => out.inner.commit_replacing(Some(&digests.digest))?,
        None => out.inner.commit(Some(&digests.digest))?,
    };
    // Only a speed-up for the next build: failing to record it is not
    // a reason to fail this one.
    let _ = store.put_block_index(&digest, &summary.blocks);
    let _ = store.set_step_layer(step, &digest);
    let layer = CachedLayer {
        digest,
        size,
        diff_id: digests.diff_id,
        tar_size: digests.uncompressed_size,
    };
    store.cache_put(&key.hex(), &CacheRecord::layer(layer))?;
    if let Some(blob) = damaged
        && blob != digest
    {
        // Still damaged: `hoist images` marks what uses it until a verify
        // removes it. Only a mark: failing to write it fails nothing.
        let _ = store.note_damaged(&blob);
    }
    Ok(Blob {
        layer,
        reused: summary.reused,
        damaged: damaged.map(|blob| (blob, blob == digest)),
    })
}

/// A layer blob written, with what its writing found.
pub(crate) struct Blob {
    pub layer: CachedLayer,
    /// Compressed blocks copied from the step's earlier layer.
    pub reused: usize,
    /// That earlier layer's blob, when some of its blocks were damaged,
    /// and whether this blob replaced it (the same content).
    pub damaged: Option<(Digest, bool)>,
}
