//! The executor: a plan's stages, step by step, into an image in the store.
//!
//! Takes the parsed Dockerfile, the build context and the options; returns
//! the image's manifest descriptor after writing every blob (layers,
//! config, manifest) to the store. Each step first computes its cache key;
//! a key the store already holds gives the step's result without doing the
//! work. COPY and ADD layers are computed as views (no file is copied on
//! disk), then written in one streaming pass: tar, sha256, parallel gzip,
//! sha256, store. Metadata steps change the config and make no layer.
//! Nothing here holds a whole layer in memory or writes outside the store.

use super::add::{AddError, AddOptions, add};
use super::copy::{CopyError, CopyRequest, copy};
use super::hasher::ContentHasher;
use super::meta;
use super::writer::{LayerBlob, LayerWriter, StepPlace, Stoppable, Written};
use crate::context::{DockerIgnore, PatternSet, walk_context_observed};
use hoist_dockerfile::instructions::{Instruction, Kind, parse_instruction};
use hoist_dockerfile::plan::{Base, Options, Plan, Scope, expand_instruction, plan};
use hoist_dockerfile::shell::{Lexer, Vars};
use hoist_dockerfile::{Ast, parse};
use hoist_oci::digest::{Digest, Sha256};
use hoist_oci::image::{Descriptor, History, ImageConfig, Manifest, digest_of};
use hoist_oci::layer::tar::{Entry, EntryKind, TarOptions};
use hoist_oci::layer::{GzipOptions, LayerOptions, write_layer_with};
use hoist_oci::media_type;
use hoist_rootfs::user::{UserError, groups_of, resolve_chown};
use hoist_rootfs::view::{FsView, LayerIndex};
use hoist_rootfs::{BaseError, load_image, load_layer};
use hoist_run::{HostFile, Network as RunNetwork, RunSpec};
use hoist_store::{CacheRecord, Store};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Bumped whenever a change makes equal keys mean different results.
const CACHE_VERSION: &str = "hoist-cache-v2";
/// Lines of a failed RUN's output repeated in its error.
const OUTPUT_TAIL: usize = 10;
/// BuildKit's history comment for Dockerfile steps.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's text and the name to show in messages.
    pub dockerfile: String,
    pub dockerfile_name: String,
    /// The Dockerfile's path, for `<Dockerfile>.dockerignore`; `None` when
    /// it came from stdin.
    pub dockerfile_path: Option<PathBuf>,
    pub options: Options,
    /// `--label` values, added to the final image.
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Clamps every timestamp; also the image's `created` time.
    pub source_date_epoch: u64,
    /// Whether the user gave `SOURCE_DATE_EPOCH`: RUN steps then see it in
    /// their environment, as BuildKit passes it.
    pub epoch_given: bool,
    pub gzip: GzipOptions,
    /// Where base images missing from the store are pulled from.
    pub pull: hoist_registry::PullOptions,
    /// Pull base images even when the store has them (`--pull`).
    pub always_pull: bool,
    /// `--secret` and `--ssh`: what `RUN --mount=type=secret|ssh` mounts.
    pub secrets: super::secrets::Secrets,
}

/// A step's progress, for the display.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Step {
        number: usize,
        total: usize,
        stage: String,
        text: String,
    },
    /// A line a RUN step printed.
    Output { number: usize, line: String },
    Done {
        number: usize,
        cached: bool,
        layer_bytes: Option<u64>,
        seconds: f64,
    },
}

/// The outcome of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest, as stored and as exports and pushes use it.
    pub manifest: Descriptor,
    pub config_digest: Digest,
    pub layers: usize,
    /// Compressed size of all layers.
    pub size: u64,
    pub steps: usize,
    pub cached_steps: usize,
    /// Files whose content was read (not answered by the stat cache).
    pub files_read: u64,
    /// Compressed blocks copied from an earlier layer of the same step
    /// instead of compressed again.
    pub blocks_reused: usize,
    /// `--build-arg` names no ARG declares (BuildKit warns about them).
    pub unused_build_args: Vec<String>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}:{line}:{column}: {message}")]
    Dockerfile {
        file: String,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        message: String,
        hint: Option<String>,
    },
    #[error("--target {target}: no stage of the Dockerfile has that name")]
    Target {
        target: String,
        hint: Option<String>,
    },
    #[error("cannot read the build context {path}")]
    Context {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// SIGTERM or SIGINT during a RUN step: its processes are killed and
    /// the build's scratch files removed as the error unwinds.
    #[error("interrupted by {}", if *signal == 2 { "SIGINT" } else { "SIGTERM" })]
    Interrupted { signal: i32 },
    #[error(transparent)]
    Store(#[from] hoist_store::StoreError),
    #[error("cannot write a layer")]
    Layer(#[from] hoist_oci::layer::LayerError),
}

impl BuildError {
    /// The hint to show under the message, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            BuildError::Dockerfile { hint, .. }
            | BuildError::Step { hint, .. }
            | BuildError::Target { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}

/// The state of one stage while it is built.
#[derive(Clone)]
struct StageState {
    /// The indexes of the stage's bottom layers, read so far: a step that
    /// comes from the cache reads none, so a rebuild with every step cached
    /// reads no layer. A step that looks at the files reads the rest first
    /// ([`Builder::read_view`]).
    view: FsView,
    /// Each layer's blob (maybe still being written) and diffID.
    layers: Vec<(LayerBlob, Digest)>,
    config: ImageConfig,
    key: Digest,
    scope: Scope,
    cmd_set: bool,
}

impl StageState {
    /// Adds a layer whose index is at hand; the view must be read whole.
    fn push_layer(&mut self, index: Arc<LayerIndex>, blob: LayerBlob, diff_id: Digest) {
        debug_assert_eq!(
            self.view.layers().len(),
            self.layers.len(),
            "view read whole"
        );
        self.view.push(index);
        self.layers.push((blob, diff_id));
    }

    fn run(&self) -> &hoist_oci::image::RunConfig {
        static EMPTY: std::sync::OnceLock<hoist_oci::image::RunConfig> = std::sync::OnceLock::new();
        self.config
            .config
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }
}

/// Builds the request's target into the store; returns the image.
pub fn build(
    store: &Store,
    request: &BuildRequest,
    events: &mut dyn FnMut(Event),
) -> Result<Built, BuildError> {
    let file = request.dockerfile_name.clone();
    let ast = parse(&request.dockerfile).map_err(|e| BuildError::Dockerfile {
        file: file.clone(),
        line: e.line,
        column: e.column,
        message: e.message,
        hint: e.hint,
    })?;
    let planned = plan(&ast, &request.options).map_err(|e| plan_error(&file, e))?;
    std::thread::scope(|scope| {
        let mut builder = Builder::new(store, request, &ast, LayerWriter::start(scope))?;
        match build_with(&mut builder, &planned, events) {
            // An interrupted build stops its layer writer (dropped with
            // the builder); a failed one lets the layers of the steps that
            // worked reach the cache, as they would have without it.
            Err(e @ BuildError::Interrupted { .. }) => Err(e),
            Err(e) => {
                builder.writer.finish();
                Err(e)
            }
            Ok(built) => Ok(built),
        }
    })
}

fn build_with(
    builder: &mut Builder<'_>,
    planned: &Plan,
    events: &mut dyn FnMut(Event),
) -> Result<Built, BuildError> {
    let store = builder.store;
    // Root in its namespace (RUN's sandbox can run), with RUN steps to run:
    // layers read for the stage's files are extracted as RUN's snapshots too.
    // SAFETY: geteuid has no preconditions and cannot fail.
    builder.runs_steps = unsafe { libc::geteuid() } == 0
        && planned.order.iter().any(|&i| {
            planned.stages[i]
                .instructions
                .iter()
                .any(|instr| matches!(instr.kind, Kind::Run { .. }))
        });
    let total: usize = planned
        .order
        .iter()
        .map(|&i| planned.stages[i].instructions.len() + 1)
        .sum();
    let mut states: HashMap<usize, StageState> = HashMap::new();
    for &index in &planned.order {
        let state = builder.build_stage(planned, index, &states, total, events)?;
        states.insert(index, state);
    }
    let target = states
        .remove(&planned.target)
        .expect("the target is built last");
    let mut built = builder.finish(target)?;
    built.unused_build_args = planned.unused_build_args.clone();
    builder
        .hasher
        .save(&store.root().join("cache/stat-cache"))
        .map_err(|e| BuildError::Context {
            path: store.root().to_path_buf(),
            source: Box::new(e),
        })?;
    Ok(built)
}

fn plan_error(file: &str, e: hoist_dockerfile::plan::PlanError) -> BuildError {
    use hoist_dockerfile::plan::PlanError;
    match e {
        PlanError::Instruction(i) => BuildError::Dockerfile {
            file: file.to_string(),
            line: i.line,
            column: i.column,
            message: i.message,
            hint: i.hint,
        },
        PlanError::Invalid {
            line,
            column,
            message,
            hint,
        } => BuildError::Dockerfile {
            file: file.to_string(),
            line,
            column,
            message,
            hint,
        },
        PlanError::UnknownTarget { target, hint } => BuildError::Target { target, hint },
    }
}

struct Builder<'a> {
    store: &'a Store,
    request: &'a BuildRequest,
    lexer: Lexer,
    context: Option<FsView>,
    hasher: ContentHasher,
    /// Agents started for `--ssh ID=KEYFILE`, by id; their sockets are in
    /// the scratch directory, so they are dropped before it.
    key_agents: HashMap<String, hoist_run::ssh::KeyAgent>,
    /// Compresses RUN layers while later steps run. Its jobs read files in
    /// the scratch directory, so it is dropped (its jobs stopped) before it.
    writer: LayerWriter<'a>,
    /// Downloads and unpacked archives of this build, removed at its end.
    scratch: Option<hoist_store::ScratchDir>,
    step: usize,
    cached: usize,
    /// Images pulled during this build (`--pull` pulls each once).
    pulled: std::collections::HashSet<String>,
    /// The build context laid out on disk for `RUN --mount=type=bind`.
    context_tree: Option<PathBuf>,
    /// Compressed blocks copied from earlier layers instead of deflated.
    blocks_reused: usize,
    /// The layer indexes read in this build, by diff id.
    indexes: HashMap<Digest, Arc<LayerIndex>>,
    /// The context's `.dockerignore` rules, once read.
    ignore: Option<Arc<Option<DockerIgnore>>>,
    /// The build context's fingerprint, once a COPY needed it (`None`
    /// inside when it could not be taken).
    context_fingerprint: Option<Option<Digest>>,
    /// Whether the build has RUN steps it can run (see [`build`]).
    runs_steps: bool,
}

/// A RUN's `--mount`s, prepared.
struct PreparedMounts {
    /// What the sandbox mounts; secret and ssh sources are placeholders
    /// until the step runs.
    mounts: Vec<hoist_run::RunMount>,
    /// Mount points the sandbox creates (missing in the image), left out
    /// of the layer as newer BuildKit leaves them out.
    stubs: Vec<String>,
    /// Each mount as key text.
    texts: Vec<String>,
    secrets: Vec<PendingSecret>,
    agents: Vec<PendingAgent>,
    /// The cache mounts' locks, held until the step is done.
    locks: Vec<std::fs::File>,
}

/// A secret the step gets once it runs.
struct PendingSecret {
    id: String,
    /// Its mount in [`PreparedMounts::mounts`], if it is a file.
    index: Option<usize>,
    /// The variable that holds it, if any (`env=`).
    env: Option<String>,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// An ssh agent the step gets once it runs.
struct PendingAgent {
    id: String,
    index: usize,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// What a step may read besides its own stage.
struct Inputs<'p> {
    planned: &'p Plan,
    done: &'p HashMap<usize, StageState>,
}

impl<'a> Builder<'a> {
    fn new(
        store: &'a Store,
        request: &'a BuildRequest,
        ast: &Ast,
        writer: LayerWriter<'a>,
    ) -> Result<Builder<'a>, BuildError> {
        Ok(Builder {
            store,
            request,
            lexer: Lexer::new(ast.escape),
            context: None,
            hasher: ContentHasher::load(&store.root().join("cache/stat-cache")),
            key_agents: HashMap::new(),
            writer,
            scratch: None,
            step: 0,
            cached: 0,
            pulled: Default::default(),
            context_tree: None,
            blocks_reused: 0,
            indexes: HashMap::new(),
            ignore: None,
            context_fingerprint: None,
            runs_steps: false,
        })
    }

    fn file(&self) -> String {
        self.request.dockerfile_name.clone()
    }

    fn step_error(
        &self,
        instr: &Instruction,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> BuildError {
        self.place(instr).error(message.into(), hint)
    }

    /// Where `instr` is, as errors name it.
    fn place(&self, instr: &Instruction) -> StepPlace {
        StepPlace {
            file: self.file(),
            line: instr.span.start_line,
            instruction: instr.original.trim().chars().take(60).collect(),
        }
    }

    /// The build's `.dockerignore` rules, read once per build (the
    /// context's listing and its fingerprint both apply them).
    fn context_ignore(&mut self) -> Result<Arc<Option<DockerIgnore>>, BuildError> {
        if let Some(ignore) = &self.ignore {
            return Ok(ignore.clone());
        }
        let ignore = DockerIgnore::load(
            &self.request.context,
            self.request.dockerfile_path.as_deref(),
        )
        .map_err(|e| BuildError::Context {
            path: self.request.context.clone(),
            source: Box::new(e),
        })?
        .map(|(_, ignore)| ignore);
        let ignore = Arc::new(ignore);
        self.ignore = Some(ignore.clone());
        Ok(ignore)
    }

    /// The build context as a view, listed once per build.
    fn context_view(&mut self) -> Result<&FsView, BuildError> {
        if self.context.is_none() {
            let ignore = self.context_ignore()?;
            let dir = &self.request.context;
            let ctx_err = |source: Box<dyn std::error::Error + Send + Sync>| BuildError::Context {
                path: dir.clone(),
                source,
            };
            let hasher = &mut self.hasher;
            hasher.start_loading();
            let entries = walk_context_observed(dir, ignore.as_ref().as_ref(), |path, meta| {
                hasher.prime(path, meta)
            })
            .map_err(|e| ctx_err(Box::new(e)))?;
            self.context = Some(FsView::new(vec![Arc::new(LayerIndex::from_entries(
                entries,
            ))]));
        }
        Ok(self.context.as_ref().expect("listed above"))
    }

    fn build_stage(
        &mut self,
        planned: &Plan,
        index: usize,
        done: &HashMap<usize, StageState>,
        total: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<StageState, BuildError> {
        let stage = &planned.stages[index];
        let name = stage.display_name();
        let platform = match &stage.platform {
            Some(p) => hoist_oci::Platform::parse(p)
                .unwrap_or_else(|_| self.request.options.target_platform.clone()),
            None => self.request.options.target_platform.clone(),
        };
        self.step += 1;
        let started = Instant::now();
        events(Event::Step {
            number: self.step,
            total,
            stage: name.clone(),
            text: stage.from.original.trim().to_string(),
        });
        let mut state = match &stage.base {
            Base::Scratch => StageState {
                view: FsView::default(),
                layers: Vec::new(),
                config: meta::empty_config(
                    &platform.os,
                    &platform.architecture,
                    platform.variant.as_deref(),
                ),
                key: key_of(&[CACHE_VERSION, "scratch", &platform.to_string()]),
                scope: Scope::default(),
                cmd_set: false,
            },
            Base::Stage(i) => {
                // ENV and ARG values in scope carry over, as BuildKit's
                // child state starts from its base's.
                let mut s = done[i].clone();
                s.cmd_set = false;
                s
            }
            Base::Image(reference) => self.image_state(&stage.from, reference, &platform)?,
        };
        for entry in &state.run().env.clone() {
            if let Some((k, v)) = entry.split_once('=') {
                state.scope.set(k, v);
            }
        }
        events(Event::Done {
            number: self.step,
            cached: false,
            layer_bytes: None,
            seconds: started.elapsed().as_secs_f64(),
        });

        // ONBUILD triggers of the base run first, and are not inherited.
        let triggers = std::mem::take(&mut meta::run_config(&mut state.config).on_build);
        for trigger in triggers {
            let ast = parse(&format!("{trigger}\n")).map_err(|e| {
                self.step_error(
                    &stage.from,
                    format!("ONBUILD trigger `{trigger}` does not parse: {}", e.message),
                    None,
                )
            })?;
            for node in &ast.nodes {
                let mut instr = parse_instruction(node).map_err(|e| {
                    self.step_error(
                        &stage.from,
                        format!("ONBUILD trigger `{trigger}`: {}", e.message),
                        e.hint,
                    )
                })?;
                instr.span = stage.from.span;
                if matches!(
                    instr.kind,
                    Kind::From { .. } | Kind::Onbuild { .. } | Kind::Maintainer { .. }
                ) {
                    return Err(self.step_error(
                        &stage.from,
                        format!("{} isn't allowed as an ONBUILD trigger (in the base image's ONBUILD `{trigger}`)", instr.keyword.to_uppercase()),
                        Some("the base image is broken: rebuild it without that trigger".into()),
                    ));
                }
                self.dispatch(planned, &instr, &mut state, done, total, events)?;
            }
        }
        for instr in &stage.instructions {
            self.dispatch(planned, instr, &mut state, done, total, events)?;
        }
        Ok(state)
    }

    /// A stage built on an image from the store.
    fn image_state(
        &mut self,
        from: &Instruction,
        reference: &str,
        platform: &hoist_oci::Platform,
    ) -> Result<StageState, BuildError> {
        if let Some(layout) = reference.strip_prefix("oci-layout://") {
            let digest = hoist_rootfs::import_oci_layout(self.store, layout)
                .map_err(|e| self.base_error(from, e))?;
            return self.state_from_manifest(from, &digest, platform);
        }
        let normalised = hoist_registry::Reference::parse(reference).map_err(|e| {
            self.step_error(
                from,
                e.to_string(),
                Some(
                    "image names are lowercase, e.g. node:14-alpine or localhost:5000/team/app:v1"
                        .into(),
                ),
            )
        })?;
        let name = normalised.to_string();
        let stored = self.store.resolve(&name)?;
        let descriptor = match stored {
            Some(d) if !self.request.always_pull || self.pulled.contains(&name) => d,
            _ => {
                let pulled = self.pull_and_read(&normalised, platform).map_err(|e| {
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
                    self.step_error(from, format!("cannot pull {reference}: {e}"), hint)
                })?;
                self.pulled.insert(name);
                pulled.tagged
            }
        };
        self.state_from_manifest(from, &descriptor.digest, platform)
    }

    /// Pulls an image, each layer read as it downloads (extracted, its
    /// index made) on a thread of its own, so that the first step that
    /// needs the layers finds them ready.
    fn pull_and_read(
        &mut self,
        reference: &hoist_registry::Reference,
        platform: &hoist_oci::Platform,
    ) -> Result<hoist_registry::Pulled, hoist_registry::RegistryError> {
        let store = self.store;
        let with_snapshot = self.runs_steps;
        let (pulled, read) = std::thread::scope(|scope| {
            let reads = std::sync::Mutex::new(Vec::new());
            let taps = |layer: &hoist_oci::image::Descriptor, diff_id: &Digest| {
                if !hoist_rootfs::streams(store, &layer.media_type, diff_id) {
                    return None;
                }
                let (tap, reader) = hoist_oci::chunks::one_reader();
                let (blob, media, diff_id) = (layer.digest, layer.media_type.clone(), *diff_id);
                let read = scope.spawn(move || {
                    with_run_snapshot(store, &diff_id, with_snapshot, |mirror| {
                        hoist_rootfs::load_layer_streamed(
                            store, reader, &blob, &media, &diff_id, mirror,
                        )
                    })
                });
                reads.lock().expect("poisoned").push((diff_id, read));
                Some(Box::new(tap) as Box<dyn hoist_registry::LayerTap>)
            };
            let pulled =
                hoist_registry::pull_tapped(store, reference, platform, &self.request.pull, &taps);
            let read: Vec<_> = reads
                .into_inner()
                .expect("poisoned")
                .into_iter()
                .filter_map(|(diff_id, read)| Some((diff_id, read.join().ok()??)))
                .collect();
            (pulled, read)
        });
        // A layer not read here is read from the store when needed.
        self.indexes.extend(read);
        pulled
    }

    /// A stage on the image (manifest or index) `digest` of the store.
    fn state_from_manifest(
        &mut self,
        from: &Instruction,
        digest: &Digest,
        platform: &hoist_oci::Platform,
    ) -> Result<StageState, BuildError> {
        let image =
            load_image(self.store, digest, platform).map_err(|e| self.base_error(from, e))?;
        let mut layers = Vec::new();
        for (layer, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            let mut d = layer.clone();
            d.media_type = oci_layer_type(&layer.media_type);
            layers.push((LayerBlob::ready(d), *diff_id));
        }
        Ok(StageState {
            view: FsView::default(),
            layers,
            config: image.config,
            key: key_of(&[
                CACHE_VERSION,
                "image",
                &image.manifest_digest.to_string(),
                &platform.to_string(),
            ]),
            scope: Scope::default(),
            cmd_set: false,
        })
    }

    /// Reads the indexes of the stage's layers that cached steps left
    /// unread. Every step that looks at the stage's files calls it first.
    fn read_view(&mut self, instr: &Instruction, state: &mut StageState) -> Result<(), BuildError> {
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
                    .map_err(|e| self.base_error(instr, e))?;
                    self.indexes.insert(*diff_id, index.clone());
                    index
                }
            };
            state.view.push(index);
        }
        Ok(())
    }

    fn base_error(&self, from: &Instruction, e: BaseError) -> BuildError {
        let hint = match &e {
            BaseError::NoPlatform { .. } => {
                "pass --platform for one the image has, or use a tag built for this platform"
            }
            BaseError::Layout { .. } => "check the path and tag of oci-layout://PATH[:TAG]",
            _ => "the store may be damaged: run `hoist prune --verify` and pull the image again",
        };
        self.step_error(from, e.to_string(), Some(hint.into()))
    }

    fn dispatch(
        &mut self,
        planned: &Plan,
        instr: &Instruction,
        state: &mut StageState,
        done: &HashMap<usize, StageState>,
        total: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), BuildError> {
        self.step += 1;
        let number = self.step;
        let started = Instant::now();
        let (expanded, _) = expand_instruction(instr, &state.scope, &self.lexer)
            .map_err(|e| self.step_error(instr, e.to_string(), None))?;
        events(Event::Step {
            number,
            total,
            stage: String::new(),
            text: instr.original.trim().to_string(),
        });
        let mut layer_bytes = None;
        let mut cached = false;
        let history = match &expanded.kind {
            Kind::From { .. } => unreachable!("FROM starts a stage"),
            Kind::Arg { args } => {
                let mut parts = Vec::new();
                for a in args {
                    let provided = self.request.options.build_args.get(&a.key).cloned();
                    // A bare ARG takes the value in the global scope: a
                    // global ARG or a predefined platform ARG.
                    let global = planned
                        .global_scope(&self.request.options)
                        .get(&a.key)
                        .map(str::to_string);
                    let value = provided
                        .clone()
                        .or(a.default.clone())
                        .or(if a.default.is_none() { global } else { None });
                    if let Some(v) = &value {
                        state.scope.set(&a.key, v);
                    }
                    // Values given with --build-arg stay out of the history.
                    parts.push(match (&a.default, provided) {
                        (Some(d), None) => format!("{}={d}", a.key),
                        _ => a.key.clone(),
                    });
                    state.key = key_of(&[
                        &state.key.to_string(),
                        "ARG",
                        &a.key,
                        value.as_deref().unwrap_or("\u{0}"),
                    ]);
                }
                Some(format!("ARG {}", parts.join(" ")))
            }
            Kind::Env { pairs } => {
                for p in pairs {
                    state.scope.set(&p.key, &p.value);
                }
                Some(meta::env(&mut state.config, pairs))
            }
            Kind::Label { pairs } => Some(meta::label(&mut state.config, pairs)),
            Kind::Maintainer { maintainer } => {
                state.config.author = Some(maintainer.clone());
                Some(format!("MAINTAINER {maintainer}"))
            }
            Kind::User { user } => {
                meta::run_config(&mut state.config).user = user.clone();
                Some(format!("USER {user}"))
            }
            Kind::Expose { ports } => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(meta::parse_ports(p).map_err(|e| {
                        self.step_error(instr, e, Some("write EXPOSE 3000 or EXPOSE 53/udp".into()))
                    })?);
                }
                meta::run_config(&mut state.config)
                    .exposed_ports
                    .extend(all.iter().cloned());
                Some(format!("EXPOSE {}", meta::go_list(&all)))
            }
            Kind::Volume { paths } => {
                meta::run_config(&mut state.config)
                    .volumes
                    .extend(paths.iter().cloned());
                Some(format!("VOLUME {}", meta::go_list(paths)))
            }
            Kind::Cmd { command } => {
                state.cmd_set = true;
                Some(meta::cmd(&mut state.config, command))
            }
            Kind::Entrypoint { command } => {
                Some(meta::entrypoint(&mut state.config, command, state.cmd_set))
            }
            Kind::Shell { shell } => {
                meta::run_config(&mut state.config).shell = shell.clone();
                Some(format!("SHELL {}", meta::go_list(shell)))
            }
            Kind::Healthcheck(health) => Some(meta::healthcheck(&mut state.config, health)),
            Kind::Stopsignal { signal } => {
                if !meta::valid_signal(signal) {
                    return Err(self.step_error(
                        instr,
                        format!("invalid signal: {signal}"),
                        Some("use a name such as SIGTERM or SIGINT, or a number".into()),
                    ));
                }
                meta::run_config(&mut state.config).stop_signal = signal.clone();
                Some(format!("STOPSIGNAL {signal}"))
            }
            Kind::Onbuild { expression } => {
                meta::run_config(&mut state.config)
                    .on_build
                    .push(expression.clone());
                None
            }
            Kind::Workdir { path } => {
                let current = state.run().working_dir.clone();
                let wd = meta::normalize_workdir(&current, path);
                meta::run_config(&mut state.config).working_dir = wd.clone();
                let (made, hit) = self.workdir_layer(instr, state, &wd)?;
                layer_bytes = made;
                cached = hit;
                state.key = key_of(&[&state.key.to_string(), "WORKDIR", &wd]);
                Some(format!("WORKDIR {wd}"))
            }
            Kind::Copy(_) | Kind::Add(_) => {
                let (bytes, hit, history) =
                    self.copy_step(instr, &expanded, state, done, planned)?;
                layer_bytes = Some(bytes);
                cached = hit;
                Some(history)
            }
            Kind::Run { .. } => {
                let (bytes, hit, history) = self.run_step(
                    instr,
                    &expanded.kind,
                    state,
                    &Inputs { planned, done },
                    number,
                    events,
                )?;
                layer_bytes = bytes;
                cached = hit;
                Some(history)
            }
        };
        if !matches!(
            expanded.kind,
            Kind::Copy(_)
                | Kind::Add(_)
                | Kind::Workdir { .. }
                | Kind::Arg { .. }
                | Kind::Run { .. }
        ) {
            state.key = key_of(&[
                &state.key.to_string(),
                &expanded.original,
                &format!("{:?}", expanded.kind),
            ]);
        }
        if let Some(created_by) = history {
            let with_layer = layer_bytes.is_some();
            state.config.history.push(History {
                created: Some(hoist_oci::image::rfc3339_utc(
                    self.request.source_date_epoch,
                )),
                created_by: Some(if with_layer {
                    format!("{created_by} # buildkit")
                } else {
                    created_by
                }),
                comment: Some(HISTORY_COMMENT.into()),
                empty_layer: !with_layer,
                ..History::default()
            });
        }
        if cached {
            self.cached += 1;
        }
        events(Event::Done {
            number,
            cached,
            layer_bytes,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// WORKDIR creates its directory (owned by the stage's USER) when missing.
    fn workdir_layer(
        &mut self,
        instr: &Instruction,
        state: &mut StageState,
        wd: &str,
    ) -> Result<(Option<u64>, bool), BuildError> {
        self.read_view(instr, state)?;
        let path = state
            .view
            .resolve(wd.trim_start_matches('/').as_bytes(), true)
            .map_err(|e| self.step_error(instr, e.to_string(), None))?;
        if path.is_empty() || state.view.is_dir(&path) {
            return Ok((None, false));
        }
        let user = state.run().user.clone();
        let (uid, gid) = if user.is_empty() {
            (0, 0)
        } else {
            resolve_chown(&user, &state.view).map_err(|e| self.user_error(instr, e))?
        };
        let mut changes = LayerIndex::default();
        let mut current = Vec::new();
        for part in hoist_rootfs::view::components(&path) {
            current = hoist_rootfs::view::join(&current, part);
            if state.view.get(&current).is_none() {
                changes.insert(
                    Entry::dir(current.clone())
                        .with_mode(0o755)
                        .with_owner(uid, gid),
                );
            } else if let Some(dir) = state.view.get(&current) {
                changes.insert(dir.clone());
            }
        }
        let (bytes, hit) = self.commit_layer(state, "WORKDIR", wd, changes)?;
        Ok((Some(bytes), hit))
    }

    fn user_error(&self, instr: &Instruction, e: UserError) -> BuildError {
        self.step_error(instr, e.to_string(), Some("create the user in an earlier step (RUN adduser ...) or use numeric ids such as --chown=1001:1001".into()))
    }

    /// COPY and ADD.
    fn copy_step(
        &mut self,
        instr: &Instruction,
        expanded: &Instruction,
        state: &mut StageState,
        done: &HashMap<usize, StageState>,
        planned: &Plan,
    ) -> Result<(u64, bool, String), BuildError> {
        let (Kind::Copy(args) | Kind::Add(args)) = &expanded.kind else {
            unreachable!("copy_step takes COPY and ADD")
        };
        let is_add = matches!(expanded.kind, Kind::Add(_));
        let keyword = if is_add { "ADD" } else { "COPY" };
        if let Some(s) = args
            .sources
            .iter()
            .find(|s| !is_add && super::add::is_url(s))
        {
            return Err(self.step_error(
                instr,
                format!("source can't be a URL for COPY: {s}"),
                Some("use ADD to download a file".into()),
            ));
        }
        if let Some(s) = args.sources.iter().find(|s| is_git_source(s)) {
            return Err(self.step_error(
                instr,
                format!("{keyword} of a git repository ({s}) is not supported yet"),
                Some("clone it into the build context and COPY it".into()),
            ));
        }
        let mut history = String::from(keyword);
        if let Some(c) = &args.chown {
            history.push_str(&format!(" --chown={c}"));
        }
        if let Some(m) = &args.chmod {
            history.push_str(&format!(" --chmod={m}"));
        }
        for s in &args.sources {
            history.push_str(&format!(" {s}"));
        }
        for c in &args.contents {
            history.push_str(&format!(" <<{}", c.path));
        }
        history.push_str(&format!(" {}", args.dest));
        // An unchanged context answers the step from its fingerprint: no
        // listing, no content digest, no read of the layers below.
        let fast = self.fingerprint_key(state, keyword, expanded, args)?;
        if let Some(fast) = &fast
            && let Some((cached, key)) = self.fingerprint_hit(fast)?
        {
            state
                .layers
                .push((LayerBlob::ready(cached.descriptor), cached.diff_id));
            state.key = key;
            return Ok((cached.tar_size, true, history));
        }
        self.read_view(instr, state)?;
        let chown = match &args.chown {
            Some(spec) => {
                Some(resolve_chown(spec, &state.view).map_err(|e| self.user_error(instr, e))?)
            }
            None => None,
        };
        let chmod = match &args.chmod {
            Some(m) => Some(super::chmod::Chmod::parse(m).map_err(|e| {
                self.step_error(
                    instr,
                    e,
                    Some("write --chmod=0755 or a symbolic mode such as --chmod=u+x".into()),
                )
            })?),
            None => None,
        };
        let excludes = if args.excludes.is_empty() {
            None
        } else {
            Some(
                PatternSet::new(args.excludes.iter())
                    .map_err(|e| self.step_error(instr, e.to_string(), None))?,
            )
        };
        let workdir = state.run().working_dir.clone();
        let dest = if args.dest.starts_with('/') {
            args.dest.clone()
        } else {
            let base = if workdir.is_empty() {
                "/".to_string()
            } else {
                workdir
            };
            let rel = if args.dest.is_empty() || args.dest == "." {
                "./"
            } else {
                args.dest.as_str()
            };
            let joined = format!("{}/{rel}", base.trim_end_matches('/'));
            let trailing = rel.ends_with('/') || rel.ends_with("/.") || rel == ".";
            let mut clean = format!("/{}", String::from_utf8_lossy(&super::copy::clean(&joined)));
            if trailing && !clean.ends_with('/') {
                clean.push('/');
            }
            clean
        };
        let request = CopyRequest {
            sources: args.sources.clone(),
            dest: dest.clone(),
            chown,
            chmod,
            excludes,
            wildcards: true,
            parents: args.parents,
        };
        // Where the sources come from.
        let source_view: FsView = match &args.from {
            None => self.context_view()?.clone(),
            Some(from) => match planned.stage_by_ref(from) {
                Some(i) => {
                    let mut stage = done.get(&i).cloned().ok_or_else(|| {
                        self.step_error(
                            instr,
                            format!("stage {from} is not built before this step"),
                            None,
                        )
                    })?;
                    self.read_view(instr, &mut stage)?;
                    stage.view
                }
                None => {
                    let platform = self.request.options.target_platform.clone();
                    let mut image = self.image_state(instr, from, &platform)?;
                    self.read_view(instr, &mut image)?;
                    image.view
                }
            },
        };
        // BuildKit links only without --chmod; with it, --link is a plain
        // copy onto the stage.
        let dest_view = if args.link && args.chmod.is_none() {
            FsView::default()
        } else {
            state.view.clone()
        };
        let mut changes = if is_add {
            let scratch = self.scratch()?;
            let options = AddOptions {
                unpack: args.unpack,
                checksum: args.checksum.as_deref(),
                local: args.from.is_none(),
                scratch: &scratch,
            };
            add(&source_view, &dest_view, &request, &options)
                .map_err(|e| self.add_error(instr, e))?
        } else {
            copy(&source_view, &dest_view, &request).map_err(|e| self.copy_error(instr, e))?
        };
        for content in &args.contents {
            // An unquoted heredoc delimiter means the body is expanded, with
            // BuildKit's raw rules: quotes kept, always `\` as the escape.
            let data = if content.expand {
                Lexer::new('\\')
                    .skip_process_quotes(true)
                    .process_word(&content.data, &state.scope)
                    .map_err(|e| {
                        self.step_error(instr, format!("heredoc <<{}: {e}", content.path), None)
                    })?
            } else {
                content.data.clone()
            };
            let file = FsView::new(vec![Arc::new(LayerIndex::from_entries([Entry::file(
                content.path.clone(),
                data,
            )
            .with_mode(0o644)]))]);
            let mut view = dest_view.clone();
            view.push(Arc::new(changes.clone()));
            let heredoc = CopyRequest {
                sources: vec![content.path.clone()],
                wildcards: false,
                ..request.clone()
            };
            let more = copy(&file, &view, &heredoc).map_err(|e| self.copy_error(instr, e))?;
            for e in more.entries() {
                changes.insert(e.clone());
            }
        }
        let (bytes, hit) = self.commit_layer(state, keyword, &expanded.original, changes)?;
        if let Some(fast) = fast {
            // The next build with an unchanged context takes the key from here.
            let layer = match state.layers.last() {
                Some((blob, _)) => Some(blob.descriptor()?.digest),
                None => None,
            };
            self.store.cache_put(
                &fast.hex(),
                &CacheRecord {
                    value: serde_json::json!({ "copy_key": state.key.to_string() }),
                    blobs: layer.into_iter().collect(),
                },
            )?;
        }
        Ok((bytes, hit, history))
    }

    /// The key of a COPY from the build context taken from the context's
    /// fingerprint ([`crate::context::fingerprint`]) instead of its
    /// contents; `None` where the step reads anything else (another stage,
    /// an image, a URL, a heredoc) or the cache is not used.
    fn fingerprint_key(
        &mut self,
        state: &StageState,
        keyword: &str,
        expanded: &Instruction,
        args: &hoist_dockerfile::instructions::CopyArgs,
    ) -> Result<Option<Digest>, BuildError> {
        if self.request.no_cache
            || args.from.is_some()
            || !args.contents.is_empty()
            || args.sources.iter().any(|s| super::add::is_url(s))
        {
            return Ok(None);
        }
        let fingerprint = match self.context_fingerprint {
            Some(Some(f)) => f,
            Some(None) => return Ok(None),
            None => {
                let ignore = self.context_ignore()?;
                // A context that cannot be walked this way (changing
                // under the walk, unreadable) takes the listing's path,
                // which says what is wrong.
                let f = crate::context::fingerprint::fingerprint(
                    &self.request.context,
                    ignore.as_ref().as_ref(),
                )
                .ok();
                self.context_fingerprint = Some(f);
                let Some(f) = f else {
                    return Ok(None);
                };
                f
            }
        };
        Ok(Some(key_of(&[
            CACHE_VERSION,
            "context fingerprint",
            &state.key.to_string(),
            keyword,
            &expanded.original,
            &format!("{args:?}"),
            &state.run().working_dir,
            &format!("gzip-level-{}", self.request.gzip.level),
            &self.request.source_date_epoch.to_string(),
            &fingerprint.to_string(),
        ])))
    }

    /// The layer and key recorded under a fingerprint key, if its layer is
    /// still cached.
    fn fingerprint_hit(&self, fast: &Digest) -> Result<Option<(StoredLayer, Digest)>, BuildError> {
        let Some(record) = self.store.cache_get(&fast.hex())? else {
            return Ok(None);
        };
        let Some(key) = record.value["copy_key"]
            .as_str()
            .and_then(|k| k.parse::<Digest>().ok())
        else {
            return Ok(None);
        };
        Ok(match self.cached_layer(&key)? {
            Some(Some(cached)) => Some((cached, key)),
            _ => None,
        })
    }

    /// RUN: the command in a sandbox over the stage's layers; what it
    /// changed becomes a layer. The key (the stage's key, the command, the
    /// environment it sees) is known before running, so a hit skips it.
    fn run_step(
        &mut self,
        instr: &Instruction,
        run: &Kind,
        state: &mut StageState,
        inputs: &Inputs<'_>,
        number: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<(Option<u64>, bool, String), BuildError> {
        let Kind::Run {
            command,
            mounts,
            network,
            security,
        } = run
        else {
            unreachable!("run_step takes RUN")
        };
        if *security == Some(hoist_dockerfile::instructions::Security::Insecure) {
            return Err(self.step_error(instr, "RUN --security=insecure is not supported", None));
        }
        let network = match network {
            Some(hoist_dockerfile::instructions::Network::None) => RunNetwork::None,
            _ => RunNetwork::Host,
        };
        if !mounts.is_empty() {
            // Mount targets are checked against the image's directories.
            self.read_view(instr, state)?;
        }
        let PreparedMounts {
            mounts: mut run_mounts,
            stubs,
            texts: mount_texts,
            secrets,
            agents,
            locks: _cache_locks,
        } = self.run_mounts(instr, state, inputs, mounts)?;
        let (argv, script) =
            meta::run_argv(&state.config, command).map_err(|e| self.step_error(instr, e, None))?;
        // BuildKit's history text, without its `|N K=V` build-arg prefix:
        // build-arg values never go into the image.
        let history = format!("RUN {}", argv.join(" "));
        let mut env = run_env(state);
        if self.request.epoch_given && !env.iter().any(|e| e.starts_with("SOURCE_DATE_EPOCH=")) {
            env.push(format!(
                "SOURCE_DATE_EPOCH={}",
                self.request.source_date_epoch
            ));
        }
        let gzip = format!("gzip-level-{}", self.request.gzip.level);
        let epoch = self.request.source_date_epoch.to_string();
        let network_text = format!("{network:?}");
        let state_key = state.key.to_string();
        let mut parts: Vec<&str> = vec![
            CACHE_VERSION,
            &state_key,
            "RUN",
            &network_text,
            &gzip,
            &epoch,
        ];
        parts.extend(argv.iter().map(String::as_str));
        if let Some((name, data)) = &script {
            parts.extend(["\u{0}script", name, data]);
        }
        parts.push("\u{0}mounts");
        parts.extend(mount_texts.iter().map(String::as_str));
        parts.push("\u{0}env");
        parts.extend(env.iter().map(String::as_str));
        let key = key_of(&parts);
        match self.cached_layer(&key)? {
            Some(None) => {
                state.key = key;
                return Ok((None, true, history));
            }
            Some(Some(cached)) => {
                // Its index is read only if a later step looks.
                state
                    .layers
                    .push((LayerBlob::ready(cached.descriptor), cached.diff_id));
                state.key = key;
                return Ok((Some(cached.tar_size), true, history));
            }
            None => {}
        }

        hoist_run::check_privileges().map_err(|e| self.run_error(instr, e))?;
        self.read_view(instr, state)?;
        for dir in ["proc", "dev", "sys"] {
            if let Some(e) = state.view.get(dir.as_bytes())
                && e.kind != EntryKind::Dir
            {
                return Err(self.step_error(
                    instr,
                    format!(
                        "/{dir} in the image is not a directory: RUN mounts a file system there"
                    ),
                    Some(format!("remove /{dir} from the image in an earlier step")),
                ));
            }
        }
        let lowers = self.lowers(instr, &state.layers)?;
        let user = state.run().user.clone();
        let user = if user.is_empty() {
            "root".to_string()
        } else {
            user
        };
        let (uid, gid) =
            resolve_chown(&user, &state.view).map_err(|e| self.user_error(instr, e))?;
        let groups =
            groups_of(&user, uid, gid, &state.view).map_err(|e| self.user_error(instr, e))?;
        let id = |n: u64| {
            u32::try_from(n).map_err(|_| {
                self.step_error(instr, format!("user or group id {n} is out of range"), None)
            })
        };
        let (uid, gid, groups) = (
            id(uid)?,
            id(gid)?,
            groups.into_iter().map(id).collect::<Result<Vec<_>, _>>()?,
        );
        let namespace = hoist_run::userns::current();
        if namespace == hoist_run::userns::Namespace::Single && (uid, gid) != (0, 0) {
            return Err(self.run_error(
                instr,
                hoist_run::RunError::SingleId {
                    what: format!("the step runs as USER {user} ({uid}:{gid})"),
                },
            ));
        }
        let workdir = state.run().working_dir.clone();
        let mut host_files = Vec::new();
        for (source, target) in [
            ("/etc/hosts", "etc/hosts"),
            ("/etc/resolv.conf", "etc/resolv.conf"),
        ] {
            if !std::path::Path::new(source).is_file() {
                continue;
            }
            // Bound over a regular file of the image, or over an empty
            // one made for it; a symlink or directory there is left alone
            // (binding over it would follow it, perhaps out of the root).
            let create = match state.view.get(target.as_bytes()).map(|e| &e.kind) {
                None => match state.view.get(b"etc").map(|e| &e.kind) {
                    None | Some(EntryKind::Dir) => true,
                    Some(_) => continue,
                },
                Some(EntryKind::File { .. } | EntryKind::Hardlink { .. }) => false,
                Some(_) => continue,
            };
            host_files.push(HostFile {
                source: source.into(),
                target: target.into(),
                create,
            });
        }
        // runc's default: HOME from the user's passwd entry, else `/`.
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            let passwd =
                hoist_rootfs::user::read_file(&state.view, "etc/passwd").unwrap_or_default();
            let home = passwd
                .lines()
                .map(|l| l.trim().split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 5 && f[2].parse::<u32>().ok() == Some(uid))
                .map(|f| f[5].to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "/".into());
            env.push(format!("HOME={home}"));
        }
        let dir = self.scratch()?.join(format!("run-{number}"));
        std::fs::create_dir(&dir).map_err(|e| {
            self.run_error(
                instr,
                hoist_run::RunError::Io {
                    path: dir.clone(),
                    source: e,
                },
            )
        })?;
        // Secrets and agents only now that the step runs: after the key,
        // which never holds their content.
        let env_lookup = |name: &str| std::env::var(name).ok();
        for pending in secrets {
            let data = self
                .request
                .secrets
                .read(&pending.id, &env_lookup)
                .map_err(|e| self.step_error(instr, with_causes(&e), None))?
                .ok_or_else(|| self.missing_secret(instr, "secret", &pending.id))?;
            if let Some(var) = &pending.env {
                let value = std::str::from_utf8(&data).map_err(|_| {
                    self.step_error(
                        instr,
                        format!(
                            "secret {} is not UTF-8 text: it cannot be the variable {var}",
                            pending.id
                        ),
                        Some("mount it as a file (target=PATH) instead".into()),
                    )
                })?;
                env.retain(|e| !e.starts_with(&format!("{var}=")));
                env.push(format!("{var}={value}"));
            }
            if let Some(i) = pending.index {
                run_mounts[i].source = hoist_run::MountSource::Secret {
                    data: hoist_run::SecretBytes(data),
                    mode: pending.mode,
                    uid: pending.uid,
                    gid: pending.gid,
                };
            }
        }
        let mut proxies = Vec::new();
        for (n, agent) in agents.iter().enumerate() {
            let upstream = self.agent_socket(instr, &agent.id)?;
            let socket = dir.join(format!("ssh-{n}.sock"));
            proxies.push(
                hoist_run::ssh::AgentProxy::start(
                    &socket, &upstream, agent.mode, agent.uid, agent.gid,
                )
                .map_err(|e| self.run_error(instr, e))?,
            );
            run_mounts[agent.index].source = hoist_run::MountSource::Socket { source: socket };
            if n == 0 && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                env.push(format!("SSH_AUTH_SOCK={}", run_mounts[agent.index].target));
            }
        }
        let spec = RunSpec {
            lowers,
            argv,
            env,
            workdir: if workdir.is_empty() {
                "/".into()
            } else {
                workdir
            },
            uid,
            gid,
            groups,
            network,
            host_files,
            scripts: script.into_iter().collect(),
            mounts: run_mounts,
            namespace,
        };
        let mut tail = std::collections::VecDeque::new();
        let result = hoist_run::run(&spec, &dir, &mut |line| {
            if tail.len() == OUTPUT_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
            events(Event::Output {
                number,
                line: line.to_string(),
            });
        });
        let code = match result {
            Ok(code) => code,
            Err(hoist_run::RunError::Interrupted { signal }) => {
                return Err(BuildError::Interrupted { signal });
            }
            Err(e) => return Err(self.run_error(instr, e)),
        };
        drop(proxies);
        if code != 0 {
            let mut message = format!("exit code {code}");
            if !tail.is_empty() {
                message.push_str("; its last lines of output:");
                for line in &tail {
                    message.push_str(&format!("\n  {line}"));
                }
            }
            // A single-id namespace makes chown and adduser fail: say so.
            let hint = (namespace == hoist_run::userns::Namespace::Single).then(|| {
                format!(
                    "hoist ran this step in a single-id user namespace, where only id 0 exists: if it changes ownership or needs other users, {}",
                    hoist_run::userns::subid_remedy()
                )
            });
            return Err(self.step_error(instr, message, hint));
        }
        let created: Vec<&str> = spec
            .host_files
            .iter()
            .filter(|f| f.create)
            .map(|f| f.target.as_str())
            .chain(stubs.iter().map(String::as_str))
            .collect();
        let mut entries = hoist_run::changes(&dir, &created, namespace.is_user_namespace())
            .map_err(|e| BuildError::Context {
                path: dir.clone(),
                source: Box::new(e),
            })?;
        if namespace == hoist_run::userns::Namespace::Single {
            // Snapshots hold every file as 0 here, and a copied-up file
            // keeps that: its owner is the one of the layer below.
            for entry in &mut entries {
                if (entry.uid, entry.gid) == (0, 0)
                    && let Some(lower) = state.view.get(&entry.path)
                {
                    entry.uid = lower.uid;
                    entry.gid = lower.gid;
                }
            }
        }
        let changes = LayerIndex::from_entries(entries);
        if changes.is_empty() {
            // As BuildKit: a step that changed nothing makes no layer.
            self.store.cache_put(
                &key.hex(),
                &CacheRecord {
                    value: serde_json::json!({ "empty": true }),
                    blobs: Vec::new(),
                },
            )?;
            state.key = key;
            return Ok((None, false, history));
        }
        let entries = changes.to_tar_entries();
        let tar = TarOptions {
            source_date_epoch: self.request.source_date_epoch,
        };
        // The next RUN's lower, made from the upper directory's files; the
        // blob is compressed on the writer thread while the next steps
        // run. Where the snapshot cannot be made so, the blob is written
        // now, and the next RUN extracts it.
        let (blob, diff_id, tar_size) = match hoist_run::snapshot::adopt(self.store, &entries, tar)
        {
            Some((diff_id, tar_size)) => {
                let blob = self.store_layer_later(instr, key, &history, entries, diff_id);
                (blob, diff_id, tar_size)
            }
            None => {
                let written = self.store_layer(&key, &history, &entries)?;
                (
                    LayerBlob::ready(written.descriptor),
                    written.diff_id,
                    written.tar_size,
                )
            }
        };
        state.push_layer(Arc::new(changes), blob, diff_id);
        state.key = key;
        Ok((Some(tar_size), false, history))
    }

    /// A RUN's `--mount`s, prepared (see [`PreparedMounts`]).
    fn run_mounts(
        &mut self,
        instr: &Instruction,
        state: &StageState,
        inputs: &Inputs<'_>,
        mounts: &[String],
    ) -> Result<PreparedMounts, BuildError> {
        use hoist_dockerfile::instructions::{MountType, Sharing, parse_mount};
        use hoist_run::MountSource;
        let mut locks = Vec::new();
        let mut out = Vec::new();
        let mut stubs = Vec::new();
        let mut texts = Vec::new();
        let mut secrets = Vec::new();
        let mut agents = Vec::new();
        for raw in mounts {
            let lexer = &self.lexer;
            let m = parse_mount(raw, &mut |v| {
                lexer
                    .process_word(v, &state.scope)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                self.step_error(instr, e.message, (!e.hint.is_empty()).then_some(e.hint))
            })?;
            // The mount's key text: ids, targets and options, never a
            // secret's content (BuildKit keys a secret by its id too).
            texts.push(format!("{m:?}"));
            let mut m = m;
            match m.kind {
                MountType::Secret => {
                    // BuildKit: `source` is another name for the id, which
                    // defaults to the target's base name; the target to
                    // /run/secrets/ID, unless the secret is only a variable.
                    let id = m
                        .id
                        .clone()
                        .or_else(|| m.source.clone())
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .map(|t| t.trim_end_matches('/').rsplit('/').next().unwrap_or(t))
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                    if !self.request.secrets.secrets.contains_key(&id) {
                        if m.required {
                            return Err(self.missing_secret(instr, "secret", &id));
                        }
                        continue;
                    }
                    if m.target.is_none() && m.env.is_none() {
                        m.target = Some(format!("/run/secrets/{id}"));
                    }
                    secrets.push(PendingSecret {
                        id,
                        index: m.target.is_some().then_some(out.len()),
                        env: m.env.clone(),
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    });
                    if m.target.is_none() {
                        continue;
                    }
                }
                MountType::Ssh => {
                    let id = m.id.clone().unwrap_or_else(|| "default".into());
                    if !self.request.secrets.ssh.contains_key(&id) {
                        if m.required {
                            return Err(self.missing_secret(instr, "ssh", &id));
                        }
                        continue;
                    }
                    if m.target.is_none() {
                        m.target = Some(format!("/run/buildkit/ssh_agent.{}", agents.len()));
                    }
                    agents.push(PendingAgent {
                        id,
                        index: out.len(),
                        mode: m.mode.unwrap_or(0o600),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    });
                }
                _ => {}
            }
            let Some(target) = m.target.clone() else {
                return Err(self.step_error(
                    instr,
                    format!("--mount={raw}: the mount needs a target"),
                    None,
                ));
            };
            let target = meta::normalize_workdir(&state.run().working_dir, &target);
            let rel = target.trim_start_matches('/');
            // A mount over a symlink would follow it out of the root:
            // the path must be plain directories in the image.
            let resolved = state
                .view
                .resolve(rel.as_bytes(), true)
                .map_err(|e| self.step_error(instr, e.to_string(), None))?;
            if resolved != rel.as_bytes() {
                return Err(self.step_error(
                    instr,
                    format!("--mount target {target} goes through a symlink in the image"),
                    Some("mount at the path the symlink points to".into()),
                ));
            }
            let mut current = String::new();
            for part in rel.split('/').filter(|p| !p.is_empty()) {
                if !current.is_empty() {
                    current.push('/');
                }
                current.push_str(part);
                if state.view.get(current.as_bytes()).is_none() {
                    stubs.push(current.clone());
                }
            }
            let source = match m.kind {
                MountType::Tmpfs => MountSource::Tmpfs { size: m.size_limit },
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let base = self
                        .store
                        .root()
                        .join("mounts/cache")
                        .join(key_of(&[&id]).hex());
                    let (dir, lock) = cache_mount_dir(
                        &base,
                        m.sharing.unwrap_or(Sharing::Shared),
                        m.mode.unwrap_or(0o755),
                        m.uid.unwrap_or(0),
                        m.gid.unwrap_or(0),
                    )
                    .map_err(|e| {
                        let single =
                            hoist_run::userns::current() == hoist_run::userns::Namespace::Single;
                        let e = if single && e.raw_os_error() == Some(libc::EINVAL) {
                            hoist_run::RunError::SingleId {
                                what: format!(
                                    "the cache mount at {target} is to be owned by {}:{}",
                                    m.uid.unwrap_or(0),
                                    m.gid.unwrap_or(0)
                                ),
                            }
                        } else {
                            hoist_run::RunError::Io {
                                path: base.clone(),
                                source: e,
                            }
                        };
                        self.run_error(instr, e)
                    })?;
                    locks.push(lock);
                    MountSource::Bind {
                        source: dir,
                        readonly: m.readonly,
                    }
                }
                MountType::Bind => {
                    let (view, lowers, content_key) =
                        self.bind_source(instr, inputs, m.from.as_deref())?;
                    texts.push(content_key);
                    let source = m.source.clone().unwrap_or_else(|| "/".into());
                    let rel = meta::normalize_workdir("/", &source);
                    let resolved = view
                        .resolve(rel.trim_start_matches('/').as_bytes(), true)
                        .map_err(|e| self.step_error(instr, e.to_string(), None))?;
                    if !resolved.is_empty() && view.get(&resolved).is_none() {
                        return Err(self.step_error(
                            instr,
                            format!("--mount={raw}: source {source} not found"),
                            None,
                        ));
                    }
                    MountSource::Overlay {
                        lowers,
                        subpath: String::from_utf8_lossy(&resolved).into_owned(),
                        readonly: m.readonly,
                    }
                }
                // Filled in once the step runs (see `run_step`).
                MountType::Secret => MountSource::Secret {
                    data: hoist_run::SecretBytes(Vec::new()),
                    mode: 0,
                    uid: 0,
                    gid: 0,
                },
                MountType::Ssh => MountSource::Socket {
                    source: PathBuf::new(),
                },
            };
            out.push(hoist_run::RunMount { target, source });
        }
        Ok(PreparedMounts {
            mounts: out,
            stubs,
            texts,
            secrets,
            agents,
            locks,
        })
    }

    /// A required secret or ssh id the build was not given.
    fn missing_secret(&self, instr: &Instruction, kind: &str, id: &str) -> BuildError {
        let flag = if kind == "ssh" {
            format!("--ssh {id}=SOCKET (or --ssh default with SSH_AUTH_SOCK set)")
        } else {
            format!("--secret id={id},src=FILE (or env=VARIABLE)")
        };
        self.step_error(
            instr,
            format!("{kind} {id} is required but the build has none of that id"),
            Some(format!("pass it with hoist build {flag}")),
        )
    }

    /// The agent socket for ssh id `id`: the one given, or an agent
    /// started once per build for the given key files.
    fn agent_socket(&mut self, instr: &Instruction, id: &str) -> Result<PathBuf, BuildError> {
        use super::secrets::SshSource;
        match self.request.secrets.ssh.get(id) {
            Some(SshSource::Socket(path)) => Ok(path.clone()),
            Some(SshSource::Keys(keys)) => {
                if let Some(agent) = self.key_agents.get(id) {
                    return Ok(agent.socket().to_path_buf());
                }
                let socket = self
                    .scratch()?
                    .join(format!("agent-{}.sock", self.key_agents.len()));
                let agent = hoist_run::ssh::KeyAgent::start(&socket, keys)
                    .map_err(|e| self.run_error(instr, e))?;
                let path = agent.socket().to_path_buf();
                self.key_agents.insert(id.to_string(), agent);
                Ok(path)
            }
            None => Err(self.missing_secret(instr, "ssh", id)),
        }
    }

    /// A bind mount's source: the view to resolve its path in, the
    /// directories that hold it on disk (bottom to top), and a key for its
    /// content (the stage's key, or a digest of the context's entries).
    fn bind_source(
        &mut self,
        instr: &Instruction,
        inputs: &Inputs<'_>,
        from: Option<&str>,
    ) -> Result<(FsView, Vec<PathBuf>, String), BuildError> {
        let Some(from) = from else {
            let view = self.context_view()?.clone();
            let tree = self.context_tree(instr)?;
            // The key covers what the step can read: every context entry.
            let mut h = Sha256::new();
            for entry in view.layers()[0].entries() {
                h.update(&entry.path);
                h.update(format!("\0{:o}\0", entry.mode).as_bytes());
                match &entry.kind {
                    EntryKind::File { content, .. } => {
                        let digest =
                            self.hasher
                                .digest(content)
                                .map_err(|e| BuildError::Context {
                                    path: self.request.context.clone(),
                                    source: Box::new(e),
                                })?;
                        h.update(digest.to_string().as_bytes());
                    }
                    other => h.update(format!("{other:?}").as_bytes()),
                }
                h.update(&[0]);
            }
            return Ok((view, vec![tree], h.finish().to_string()));
        };
        let mut stage = match inputs.planned.stage_by_ref(from) {
            Some(i) => inputs.done.get(&i).cloned().ok_or_else(|| {
                self.step_error(
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
        self.read_view(instr, &mut stage)?;
        let lowers = self.lowers(instr, &stage.layers)?;
        Ok((stage.view, lowers, stage.key.to_string()))
    }

    /// The build context (after .dockerignore) as a directory tree in the
    /// build's scratch directory, made once per build: files are hard links
    /// to the context's (copies across file systems), never written to (the
    /// mount is an overlay over it).
    fn context_tree(&mut self, instr: &Instruction) -> Result<PathBuf, BuildError> {
        if let Some(tree) = &self.context_tree {
            return Ok(tree.clone());
        }
        let tree = self.scratch()?.join("context");
        let entries: Vec<Entry> = self.context_view()?.layers()[0]
            .entries()
            .cloned()
            .collect();
        let fail = |e: std::io::Error| {
            self.run_error(
                instr,
                hoist_run::RunError::Io {
                    path: tree.clone(),
                    source: e,
                },
            )
        };
        std::fs::create_dir_all(&tree).map_err(fail)?;
        for entry in entries {
            use std::os::unix::ffi::OsStrExt;
            let dest = tree.join(std::ffi::OsStr::from_bytes(&entry.path));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(fail)?;
            }
            match &entry.kind {
                EntryKind::Dir => std::fs::create_dir_all(&dest).map_err(fail)?,
                EntryKind::File { content, .. } => match content {
                    hoist_oci::layer::tar::Content::Path(p) => {
                        if std::fs::hard_link(p, &dest).is_err() {
                            std::fs::copy(p, &dest).map_err(fail)?;
                        }
                    }
                    hoist_oci::layer::tar::Content::Bytes(b) => {
                        std::fs::write(&dest, b).map_err(fail)?
                    }
                },
                EntryKind::Symlink { target } => {
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &dest)
                        .map_err(fail)?
                }
                EntryKind::Hardlink { target } => {
                    let source = tree.join(std::ffi::OsStr::from_bytes(target));
                    std::fs::hard_link(source, &dest).map_err(fail)?
                }
                _ => {}
            }
        }
        self.context_tree = Some(tree.clone());
        Ok(tree)
    }

    fn run_error(&self, instr: &Instruction, e: hoist_run::RunError) -> BuildError {
        let hint = match &e {
            hoist_run::RunError::NotRoot => {
                Some("run hoist as root, or call hoist_run::userns::reexec first".into())
            }
            hoist_run::RunError::NoUserNamespace { source } => {
                Some(hoist_run::userns::remedy(source.raw_os_error()))
            }
            hoist_run::RunError::SingleId { .. } => Some(hoist_run::userns::subid_remedy()),
            // chown(2) to an id the namespace does not map.
            hoist_run::RunError::Extract {
                source: hoist_oci::layer::ExtractError::Io { source, .. },
                ..
            } if source.raw_os_error() == Some(libc::EINVAL)
                && hoist_run::userns::current().is_user_namespace() =>
            {
                Some(
                    "a file of the layer belongs to an id hoist's user namespace does not map: hoist maps 0 to you and 1, 2... to your /etc/subuid and /etc/subgid ranges in turn; add a range to cover the image's ids, as root: `usermod --add-subuids 200000-399999 --add-subgids 200000-399999 USER`".to_string(),
                )
            }
            hoist_run::RunError::Sandbox { .. } => Some(
                "RUN needs mount, pid, uts and ipc namespaces and overlayfs: in a container, run hoist with --privileged".into(),
            ),
            _ => None,
        };
        self.step_error(instr, with_causes(&e), hint)
    }

    /// The build's scratch directory in the store (created on first use,
    /// removed when the build ends): downloads and unpacked archives.
    fn scratch(&mut self) -> Result<PathBuf, BuildError> {
        if self.scratch.is_none() {
            let dir = self.store.scratch_dir("build")?;
            self.hasher.uncached(dir.path().to_path_buf());
            self.scratch = Some(dir);
        }
        Ok(self
            .scratch
            .as_ref()
            .expect("created above")
            .path()
            .to_path_buf())
    }

    fn add_error(&self, instr: &Instruction, e: AddError) -> BuildError {
        let hint = match &e {
            AddError::Copy(c) => return self.copy_error(instr, c.clone()),
            AddError::Checksum { .. } => {
                Some("check the URL serves the expected file, then update --checksum".into())
            }
            AddError::Status { .. } | AddError::Download { .. } => {
                Some("check the URL and the network; ADD follows redirects".into())
            }
            AddError::Invalid { .. } | AddError::Unpack { .. } => Some(
                "check the archive (tar -tvf), or add it unpacked with ADD --unpack=false".into(),
            ),
            _ => None,
        };
        self.step_error(instr, with_causes(&e), hint)
    }

    fn copy_error(&self, instr: &Instruction, e: CopyError) -> BuildError {
        let hint = match &e {
            CopyError::NotFound { .. } => Some(
                "check the path is relative to the build context and not excluded by .dockerignore"
                    .into(),
            ),
            _ => None,
        };
        self.step_error(instr, e.to_string(), hint)
    }

    /// Turns a step's changes into a layer (from the cache when the store
    /// has it), pushes it onto the stage; returns its size and whether it
    /// was cached.
    fn commit_layer(
        &mut self,
        state: &mut StageState,
        keyword: &str,
        text: &str,
        changes: LayerIndex,
    ) -> Result<(u64, bool), BuildError> {
        // Sorted (and hardlinks normalised) once: the key and the tar both
        // walk these entries.
        let entries = changes.to_tar_entries();
        let key = self.layer_key(state, keyword, text, &entries)?;
        let (layer, hit) = match self.cached_layer(&key)? {
            Some(Some(cached)) => (cached, true),
            _ => (
                self.store_layer(&key, &format!("{keyword} {text}"), &entries)?,
                false,
            ),
        };
        state.push_layer(
            Arc::new(changes),
            LayerBlob::ready(layer.descriptor),
            layer.diff_id,
        );
        state.key = key;
        Ok((layer.tar_size, hit))
    }

    /// The cache's answer for a layer step: `Some(None)` for a step
    /// recorded as making no layer (a RUN that changed nothing).
    fn cached_layer(&self, key: &Digest) -> Result<Option<Option<StoredLayer>>, BuildError> {
        if self.request.no_cache {
            return Ok(None);
        }
        let Some(record) = self.store.cache_get(&key.hex())? else {
            return Ok(None);
        };
        if record.value.get("empty").and_then(|v| v.as_bool()) == Some(true) {
            return Ok(Some(None));
        }
        Ok(layer_from_record(&record.value).map(Some))
    }

    /// Writes `entries` as a layer blob and records it under `key` (see
    /// [`write_layer_blob`]).
    fn store_layer(
        &mut self,
        key: &Digest,
        step: &str,
        entries: &[Entry],
    ) -> Result<StoredLayer, BuildError> {
        let never = std::sync::atomic::AtomicBool::new(false);
        let (options, step) = self.layer_inputs(step);
        let (layer, reused) = write_layer_blob(self.store, &options, &step, key, entries, &never)?;
        self.blocks_reused += reused;
        Ok(layer)
    }

    /// [`Builder::store_layer`] on the writer thread, for a layer whose
    /// snapshot was made from `entries` with diffID `diff_id`: a blob
    /// whose tar has another digest (its files changed in between) fails
    /// the build rather than pair the snapshot with other bytes.
    fn store_layer_later(
        &self,
        instr: &Instruction,
        key: Digest,
        step: &str,
        entries: Vec<Entry>,
        diff_id: Digest,
    ) -> LayerBlob {
        let (options, step) = self.layer_inputs(step);
        let store = self.store;
        let place = self.place(instr);
        self.writer.submit(
            place,
            Box::new(move |stop| {
                let (layer, reused) =
                    write_layer_blob(store, &options, &step, &key, &entries, stop)?;
                if layer.diff_id != diff_id {
                    return Err(BuildError::Layer(hoist_oci::layer::LayerError::Read {
                        source: std::io::Error::other(format!(
                            "its files changed after the step: the layer's diffID is {}, its snapshot's {diff_id}",
                            layer.diff_id
                        )),
                    }));
                }
                Ok(Written {
                    descriptor: layer.descriptor,
                    reused,
                })
            }),
        )
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

    /// The snapshot directories of `layers`, the lowers of a RUN's root.
    /// A layer whose snapshot is there needs no blob; one whose blob is
    /// still being written waits for it only when extracted.
    fn lowers(
        &self,
        instr: &Instruction,
        layers: &[(LayerBlob, Digest)],
    ) -> Result<Vec<PathBuf>, BuildError> {
        let mut lowers = Vec::new();
        for (blob, diff_id) in layers {
            let dir = match hoist_run::snapshot::existing(self.store, diff_id) {
                Some(dir) => dir,
                None => {
                    let digest = blob.descriptor()?.digest;
                    hoist_run::snapshot::ensure(self.store, &digest, diff_id)
                        .map_err(|e| self.run_error(instr, e))?
                }
            };
            lowers.push(dir);
        }
        Ok(lowers)
    }

    /// The key of a layer step: the stage's key so far, the step, and every
    /// entry of the layer it makes with its content digest.
    fn layer_key(
        &mut self,
        state: &StageState,
        keyword: &str,
        text: &str,
        entries: &[Entry],
    ) -> Result<Digest, BuildError> {
        let mut h = Sha256::new();
        for part in [
            CACHE_VERSION,
            &state.key.to_string(),
            keyword,
            text,
            &format!("gzip-level-{}", self.request.gzip.level),
            &self.request.source_date_epoch.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        for entry in entries {
            h.update(&entry.path);
            h.update(&[0]);
            let kind = match &entry.kind {
                EntryKind::File { content, size } => {
                    let digest = self
                        .hasher
                        .digest(content)
                        .map_err(|e| BuildError::Context {
                            path: match content {
                                hoist_oci::layer::tar::Content::Path(p) => p.clone(),
                                _ => PathBuf::new(),
                            },
                            source: Box::new(e),
                        })?;
                    format!("f{size}:{digest}")
                }
                EntryKind::Dir => "d".into(),
                EntryKind::Symlink { target } => format!("l{}", String::from_utf8_lossy(target)),
                EntryKind::Hardlink { target } => format!("h{}", String::from_utf8_lossy(target)),
                EntryKind::CharDevice { major, minor } => format!("c{major},{minor}"),
                EntryKind::BlockDevice { major, minor } => format!("b{major},{minor}"),
                EntryKind::Fifo => "p".into(),
            };
            h.update(
                format!(
                    "{kind}\0{:o}\0{}\0{}\0{}\0",
                    entry.mode,
                    entry.uid,
                    entry.gid,
                    entry.mtime.min(self.request.source_date_epoch)
                )
                .as_bytes(),
            );
            for (k, v) in &entry.xattrs {
                h.update(k);
                h.update(&[0]);
                h.update(v);
                h.update(&[0]);
            }
        }
        Ok(h.finish())
    }

    /// Writes the target's config and manifest; tags nothing.
    fn finish(&mut self, mut state: StageState) -> Result<Built, BuildError> {
        // Every layer written, the other stages' too: their cache records
        // are part of what the build leaves.
        let totals = self.writer.finish();
        self.blocks_reused += totals.reused;
        let layers = state
            .layers
            .iter()
            .map(|(blob, _)| blob.descriptor())
            .collect::<Result<Vec<Descriptor>, _>>()?;
        if let Some(failed) = totals.failed {
            return Err(failed);
        }
        let created = hoist_oci::image::rfc3339_utc(self.request.source_date_epoch);
        state.config.created = Some(created);
        state.config.rootfs.diff_ids = state.layers.iter().map(|(_, d)| *d).collect();
        for (k, v) in &self.request.labels {
            meta::run_config(&mut state.config)
                .labels
                .insert(k.clone(), v.clone());
        }
        let config = digest_of(&state.config).expect("configs serialise");
        let (config_digest, config_size) = self
            .store
            .put_blob_bytes(&config.bytes, Some(&config.digest))?;
        let manifest = Manifest::new(
            Descriptor::new(media_type::OCI_CONFIG, config_digest, config_size),
            layers.clone(),
        );
        let encoded = digest_of(&manifest).expect("manifests serialise");
        let (digest, size) = self
            .store
            .put_blob_bytes(&encoded.bytes, Some(&encoded.digest))?;
        Ok(Built {
            manifest: Descriptor::new(media_type::OCI_MANIFEST, digest, size),
            config_digest,
            layers: layers.len(),
            size: layers.iter().map(|l| l.size).sum(),
            steps: self.step,
            cached_steps: self.cached,
            files_read: self.hasher.files_read,
            blocks_reused: self.blocks_reused,
            unused_build_args: Vec::new(),
        })
    }
}

/// Runs `load` (a layer read into its index) with RUN's snapshot of the
/// layer as the mirror of its contents, so that one extraction makes both,
/// when the build runs steps (`wanted`) and the snapshot is not there yet.
fn with_run_snapshot<T>(
    store: &Store,
    diff_id: &Digest,
    wanted: bool,
    load: impl FnOnce(Option<hoist_rootfs::Mirror<'_>>) -> T,
) -> T {
    let extract = |input: &mut dyn std::io::Read, content: &std::path::Path| {
        hoist_run::snapshot::extract_mirrored(store, input, diff_id, content)
    };
    let mirror = wanted && hoist_run::snapshot::mirrorable(store, diff_id);
    load(mirror.then_some(&extract))
}

/// A layer step's result: its blob, diffID and tar size (as the cache
/// records it).
struct StoredLayer {
    descriptor: Descriptor,
    diff_id: Digest,
    tar_size: u64,
}

/// Writes `entries` as a layer blob and records it under `key`; returns
/// it with the number of compressed blocks copied. The blocks of the layer
/// the same step (`step`, see [`Builder::layer_inputs`]) made last time are
/// copied where their input is unchanged, so that one changed file in a
/// large COPY costs one block of compression. Stops when `stop` is set.
fn write_layer_blob(
    store: &Store,
    options: &LayerOptions,
    step: &Digest,
    key: &Digest,
    entries: &[Entry],
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(StoredLayer, usize), BuildError> {
    let memo = store
        .step_layer(step)
        .and_then(|previous| store.block_memo(&previous));
    let out = Stoppable {
        inner: store.blob_writer()?,
        stop,
    };
    let (digests, summary, out) = write_layer_with(entries, options, memo.as_ref(), out)?;
    let (digest, size) = out.inner.commit(Some(&digests.digest))?;
    // Only a speed-up for the next build: failing to record it is not
    // a reason to fail this one.
    let _ = store.put_block_index(&digest, &summary.blocks);
    let _ = store.set_step_layer(step, &digest);
    let value = serde_json::json!({
        "digest": digest,
        "size": size,
        "diffID": digests.diff_id,
        "tarSize": digests.uncompressed_size,
    });
    store.cache_put(
        &key.hex(),
        &CacheRecord {
            value,
            blobs: vec![digest],
        },
    )?;
    let layer = StoredLayer {
        descriptor: Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, digest, size),
        diff_id: digests.diff_id,
        tar_size: digests.uncompressed_size,
    };
    Ok((layer, summary.reused))
}

/// An error's message followed by its causes, `: `-separated, for the one
/// line a failed step reports.
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// Whether ADD would clone `src` as a git repository rather than fetch or
/// copy it (BuildKit's `isGitSource`): `git://`, `ssh://`, `git@host:`, or
/// an http(s) URL whose path ends in `.git` (a `#ref` may follow).
fn is_git_source(src: &str) -> bool {
    if src.starts_with("git://") || src.starts_with("ssh://") || src.starts_with("git@") {
        return true;
    }
    if let Some(rest) = src
        .strip_prefix("https://")
        .or_else(|| src.strip_prefix("http://"))
    {
        let path = rest.split(['#', '?']).next().unwrap_or(rest);
        return path.trim_end_matches('/').ends_with(".git");
    }
    false
}

fn layer_from_record(value: &serde_json::Value) -> Option<StoredLayer> {
    let digest: Digest = value.get("digest")?.as_str()?.parse().ok()?;
    let size = value.get("size")?.as_u64()?;
    Some(StoredLayer {
        descriptor: Descriptor::new(media_type::OCI_LAYER_TAR_GZIP, digest, size),
        diff_id: value.get("diffID")?.as_str()?.parse().ok()?,
        tar_size: value.get("tarSize")?.as_u64()?,
    })
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

/// What a RUN step's environment holds: the image's ENV, then the stage's
/// build args that ENV does not set (BuildKit passes ARGs to RUN as
/// environment variables; ENV wins over an ARG of the same name), and
/// Docker's PATH when neither sets one.
fn run_env(state: &StageState) -> Vec<String> {
    use hoist_dockerfile::shell::Vars;
    let mut env: Vec<String> = state.run().env.clone();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    };
    for key in state.scope.keys() {
        if !has(&env, key)
            && let Some(value) = state.scope.get(key)
        {
            env.push(format!("{key}={value}"));
        }
    }
    if !has(&env, "PATH") {
        env.push(format!("PATH={}", meta::DEFAULT_PATH));
    }
    env
}

/// A cache mount's directory, made whole before it gets its real name (two
/// builds may race to create it).
/// A cache mount's directory (`base`, or another instance of it) and its
/// lock, taken as the sharing mode says, with BuildKit's semantics:
/// `shared` is used by any number of steps at once (it waits only for a
/// `locked` or `private` holder); `locked` waits until no other step uses
/// it; `private` takes it if no other step does, else the first free
/// instance `base-2`, `base-3`... (created as needed and kept, as
/// BuildKit keeps them). The lock is a `flock` on `<dir>.lock`, released
/// when the file is dropped or the process dies.
fn cache_mount_dir(
    base: &std::path::Path,
    sharing: hoist_dockerfile::instructions::Sharing,
    mode: u32,
    uid: u32,
    gid: u32,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    use hoist_dockerfile::instructions::Sharing;
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(base.parent().expect("under mounts/cache"))?;
    for n in 1u32.. {
        let dir = if n == 1 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}", base.display()))
        };
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(format!("{}.lock", dir.display())))?;
        let op = match sharing {
            Sharing::Shared => libc::LOCK_SH,
            Sharing::Locked => libc::LOCK_EX,
            Sharing::Private => libc::LOCK_EX | libc::LOCK_NB,
        };
        let locked = loop {
            // SAFETY: a descriptor owned by `lock`.
            if unsafe { libc::flock(lock.as_raw_fd(), op) } == 0 {
                break true;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // `private`, and another step has this instance.
                Some(libc::EWOULDBLOCK) => break false,
                _ => return Err(e),
            }
        };
        if !locked {
            continue;
        }
        if !dir.exists() {
            create_cache_dir(&dir, mode, uid, gid)?;
        }
        return Ok((dir, lock));
    }
    unreachable!("the instances are unbounded")
}

fn create_cache_dir(dir: &std::path::Path, mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = dir.parent().expect("under mounts/cache");
    std::fs::create_dir_all(parent)?;
    let temp = parent.join(format!(".new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir(&temp)?;
    std::os::unix::fs::chown(&temp, Some(uid), Some(gid))?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode & 0o7777))?;
    if let Err(e) = std::fs::rename(&temp, dir) {
        let _ = std::fs::remove_dir(&temp);
        if !dir.is_dir() {
            return Err(e);
        }
    }
    Ok(())
}

/// A chain key: the SHA-256 of the parts, each ended by a NUL.
fn key_of(parts: &[&str]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.finish()
}
