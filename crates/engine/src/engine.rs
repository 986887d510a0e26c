//! The executor: a plan's stages, step by step, into an image in the store.
//!
//! Takes the parsed Dockerfile, the build context and the options; returns
//! the image's manifest descriptor after writing every blob (layers,
//! config, manifest) to the store. Each step first computes its cache key
//! ([`crate::cache_key`]); a key the store already holds gives the step's
//! result without doing the work. This file is the stage loop; each kind
//! of step has its own: FROM in [`crate::from`], COPY and ADD in
//! [`crate::step_copy`], RUN in [`crate::step_run`] (its mounts in
//! [`crate::mounts`]), the metadata instructions in [`crate::meta`], and
//! layers into the store in [`crate::commit`]. Nothing here holds a whole
//! layer in memory or writes outside the store.

use crate::context::{DockerIgnore, walk_context_observed};
use crate::error::{BuildError, StepError, StepPlace};
use crate::hasher::ContentHasher;
use crate::meta;
use crate::shared_cache::{CacheHit, CacheReport, CacheSpec, SharedCache};
use crate::writer::{LayerBlob, LayerWriter};
use hoist_dockerfile::instructions::{Instruction, Kind};
use hoist_dockerfile::plan::{Base, Options, Plan, Scope, expand_instruction, plan};
use hoist_dockerfile::shell::Lexer;
use hoist_dockerfile::{Ast, parse};
use hoist_oci::image::{Descriptor, History, ImageConfig, Manifest, RunConfig, digest_of};
use hoist_oci::layer::GzipOptions;
use hoist_oci::{Digest, Platform, media_type};
use hoist_rootfs::view::{FsView, LayerIndex};
use hoist_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
    pub secrets: crate::secrets::Secrets,
    /// Shared caches asked after the store (`--cache-from`), in order, and
    /// written when the build is done (`--cache-to`).
    pub cache_from: Vec<CacheSpec>,
    pub cache_to: Vec<CacheSpec>,
    /// `--network=none`: RUN steps that name no network of their own get
    /// none (the default is the host's, as BuildKit's RUN has).
    pub run_network_none: bool,
}

/// A step's progress, for the display.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Step {
        number: usize,
        total: usize,
        /// The stage the step belongs to (its AS name, or `stage-N`).
        stage: String,
        /// Whether the step is the stage's FROM.
        opens_stage: bool,
        text: String,
    },
    /// A line a RUN step printed.
    Output { number: usize, line: String },
    Done {
        number: usize,
        /// Where the step's result came from, when it was not built.
        cached: Option<CacheHit>,
        layer_bytes: Option<u64>,
        seconds: f64,
    },
    /// Something the build worked around (an unusable shared cache).
    Warning(String),
    /// How RUN steps are isolated, once, after the first that ran: the
    /// mode (`namespaces`, `chroot`) and why `auto` chose it when it was
    /// not the strongest.
    Isolation {
        mode: &'static str,
        reason: Option<String>,
    },
    /// RUN steps of `platform` run emulated through the binfmt_misc
    /// handler `handler` (QEMU user mode), said once per handler.
    Emulated { platform: String, handler: String },
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
    /// Blobs of the store found damaged while their blocks were to be
    /// copied (they were compressed again instead), and whether this
    /// build replaced each with an intact copy.
    pub damaged_blobs: Vec<(Digest, bool)>,
    /// Where cached steps came from, bytes fetched, `--cache-to` exports.
    pub cache: CacheReport,
}

/// The state of one stage while it is built.
#[derive(Clone)]
pub(crate) struct StageState {
    /// The indexes of the stage's bottom layers, read so far: a step that
    /// comes from the cache reads none, so a rebuild with every step cached
    /// reads no layer. A step that looks at the files reads the rest first
    /// ([`Builder::read_view`]).
    pub view: FsView,
    /// Each layer's blob (maybe still being written) and diffID.
    pub layers: Vec<(LayerBlob, Digest)>,
    pub config: ImageConfig,
    pub key: Digest,
    pub scope: Scope,
    pub cmd_set: bool,
}

impl StageState {
    /// A stage on `config`'s image whose `layers` are not read yet.
    pub fn new(key: Digest, config: ImageConfig, layers: Vec<(LayerBlob, Digest)>) -> StageState {
        StageState {
            view: FsView::default(),
            layers,
            config,
            key,
            scope: Scope::default(),
            cmd_set: false,
        }
    }

    /// Adds a layer whose index is at hand; the view must be read whole.
    pub fn push_layer(&mut self, index: Arc<LayerIndex>, blob: LayerBlob, diff_id: Digest) {
        debug_assert_eq!(
            self.view.layers().len(),
            self.layers.len(),
            "view read whole"
        );
        self.view.push(index);
        self.layers.push((blob, diff_id));
    }

    /// The image's run configuration (empty if it has none).
    pub fn run(&self) -> &RunConfig {
        static EMPTY: std::sync::OnceLock<RunConfig> = std::sync::OnceLock::new();
        self.config
            .config
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }
}

/// Builds the request's target into the store; returns the image. A
/// build whose shared cache named a layer that cannot be fetched starts
/// again without the shared cache (see [`crate::shared_cache`]).
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
    match build_once(store, request, &ast, &planned, events) {
        Err((error, true)) if crate::shared_cache::is_fetch_failure(&error) => {
            events(Event::Warning(format!(
                "a layer a shared cache named cannot be fetched ({}); building again without \
                 --cache-from",
                hoist_oci::error_line(&error)
            )));
            let request = BuildRequest {
                cache_from: Vec::new(),
                ..request.clone()
            };
            build_once(store, &request, &ast, &planned, events).map_err(|(error, _)| error)
        }
        result => result.map_err(|(error, _)| error),
    }
}

/// [`build`], once; a failure says whether the shared cache answered
/// steps (whose records it then forgot).
fn build_once(
    store: &Store,
    request: &BuildRequest,
    ast: &Ast,
    planned: &Plan,
    events: &mut dyn FnMut(Event),
) -> Result<Built, (BuildError, bool)> {
    std::thread::scope(|scope| {
        let mut builder = Builder::new(store, request, ast, LayerWriter::start(scope));
        let result = build_with(&mut builder, planned, events);
        let shared = !builder.shared.adopted.borrow().is_empty();
        match result {
            // An interrupted build stops its layer writer (dropped with
            // the builder); a failed one lets the layers of the steps that
            // worked reach the cache, as they would have without it.
            Err(e @ BuildError::Interrupted { .. }) => Err((e, false)),
            Err(e) => {
                builder.writer.finish();
                if shared {
                    builder.shared.forget_adopted(store);
                }
                Err((e, shared))
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
    built.cache = builder.shared_cache_report(planned, events);
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

/// A build under way: what the steps share.
pub(crate) struct Builder<'a> {
    pub store: &'a Store,
    pub request: &'a BuildRequest,
    pub lexer: Lexer,
    /// The build context as a view, once listed.
    pub context: Option<FsView>,
    pub hasher: ContentHasher,
    /// Agents started for `--ssh ID=KEYFILE`, by id; their sockets are in
    /// the scratch directory, so they are dropped before it.
    pub key_agents: HashMap<String, hoist_run::ssh::KeyAgent>,
    /// Compresses RUN layers while later steps run. Its jobs read files in
    /// the scratch directory, so it is dropped (its jobs stopped) before it.
    pub writer: LayerWriter<'a>,
    /// Downloads and unpacked archives of this build, removed at its end.
    pub scratch: Option<hoist_store::ScratchDir>,
    pub step: usize,
    pub cached: usize,
    /// Images pulled during this build (`--pull` pulls each once).
    pub pulled: std::collections::HashSet<String>,
    /// The build's registry client: one per build, so that its tokens
    /// serve every pull and fetch.
    pub registry: hoist_registry::Client,
    /// The build context laid out on disk for `RUN --mount=type=bind`.
    pub context_tree: Option<PathBuf>,
    /// Compressed blocks copied from earlier layers instead of deflated.
    pub blocks_reused: usize,
    /// Damaged blobs found while copying their blocks (see [`Built`]).
    pub damaged: Vec<(Digest, bool)>,
    /// The layer indexes read in this build, by diff id.
    pub indexes: HashMap<Digest, Arc<LayerIndex>>,
    /// The QEMU handlers RUN steps of this build went through, each
    /// reported once.
    pub emulators: std::collections::BTreeSet<String>,
    /// The context's `.dockerignore` rules, once read.
    pub ignore: Option<Arc<Option<DockerIgnore>>>,
    /// The build context's fingerprint, once a COPY needed it (`None`
    /// inside when it could not be taken).
    pub context_fingerprint: Option<Option<Digest>>,
    /// Whether the build has RUN steps it can run (see [`build_with`]).
    pub runs_steps: bool,
    /// The `--cache-from` sources and what they answered.
    pub shared: SharedCache,
    /// The stage being built (its index in the plan).
    pub stage: usize,
    /// Layer bytes fetched from registries (bases, shared cache layers).
    pub bytes_fetched: u64,
}

/// What a step may read besides its own stage: the other stages.
pub(crate) struct Inputs<'p> {
    pub planned: &'p Plan,
    pub done: &'p HashMap<usize, StageState>,
}

/// What a step did, for its history entry and progress line.
pub(crate) struct StepResult {
    /// The history's `created_by`, or `None` for a step that leaves no
    /// history (ONBUILD).
    pub history: Option<String>,
    /// The uncompressed size of the layer it made, if it made one.
    pub layer_bytes: Option<u64>,
    /// Whether the cache answered it.
    pub cached: bool,
}

impl StepResult {
    /// A step that changed only the config.
    pub fn metadata(history: impl Into<String>) -> StepResult {
        StepResult {
            history: Some(history.into()),
            layer_bytes: None,
            cached: false,
        }
    }
}

impl<'a> Builder<'a> {
    fn new(
        store: &'a Store,
        request: &'a BuildRequest,
        ast: &Ast,
        writer: LayerWriter<'a>,
    ) -> Builder<'a> {
        Builder {
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
            registry: hoist_registry::Client::new(request.pull.client_options()),
            context_tree: None,
            blocks_reused: 0,
            emulators: Default::default(),
            damaged: Vec::new(),
            indexes: HashMap::new(),
            ignore: None,
            context_fingerprint: None,
            runs_steps: false,
            shared: SharedCache::new(&request.cache_from, &request.pull.client_options()),
            stage: 0,
            bytes_fetched: 0,
        }
    }

    /// Where `instr` is, as errors name it.
    pub fn place(&self, instr: &Instruction) -> StepPlace {
        StepPlace::of(&self.request.dockerfile_name, instr)
    }

    /// The error of `instr` failing with `source`.
    pub fn step_error(&self, instr: &Instruction, source: impl Into<StepError>) -> BuildError {
        self.place(instr).error(source)
    }

    /// The error of `instr` failing a check of the engine's own.
    pub fn invalid(
        &self,
        instr: &Instruction,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> BuildError {
        self.step_error(instr, StepError::invalid(message, hint))
    }

    /// The build's `.dockerignore` rules, read once per build (the
    /// context's listing and its fingerprint both apply them).
    pub fn context_ignore(&mut self) -> Result<Arc<Option<DockerIgnore>>, BuildError> {
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
    pub fn context_view(&mut self) -> Result<&FsView, BuildError> {
        if self.context.is_none() {
            let ignore = self.context_ignore()?;
            let dir = &self.request.context;
            let hasher = &mut self.hasher;
            hasher.start_loading();
            let entries = walk_context_observed(dir, ignore.as_ref().as_ref(), |path, meta| {
                hasher.prime(path, meta)
            })
            .map_err(|e| BuildError::Context {
                path: dir.clone(),
                source: Box::new(e),
            })?;
            self.context = Some(FsView::new(vec![Arc::new(LayerIndex::from_entries(
                entries,
            ))]));
        }
        Ok(self.context.as_ref().expect("listed above"))
    }

    /// The build's scratch directory in the store (created on first use,
    /// removed when the build ends): downloads and unpacked archives.
    pub fn scratch(&mut self) -> Result<PathBuf, BuildError> {
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

    fn build_stage(
        &mut self,
        planned: &Plan,
        index: usize,
        done: &HashMap<usize, StageState>,
        total: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<StageState, BuildError> {
        let stage = &planned.stages[index];
        self.stage = index;
        let name = stage.display_name();
        let platform = match &stage.platform {
            Some(p) => {
                Platform::parse(p).unwrap_or_else(|_| self.request.options.target_platform.clone())
            }
            None => self.request.options.target_platform.clone(),
        };
        self.step += 1;
        let started = Instant::now();
        events(Event::Step {
            number: self.step,
            total,
            stage: name.clone(),
            opens_stage: true,
            text: stage.from.original.trim().to_string(),
        });
        let mut state = match &stage.base {
            Base::Scratch => StageState::new(
                crate::cache_key::scratch(&platform),
                meta::empty_config(
                    &platform.os,
                    &platform.architecture,
                    platform.variant.as_deref(),
                ),
                Vec::new(),
            ),
            Base::Stage(i) => {
                // ENV and ARG values in scope carry over, as BuildKit's
                // child state starts from its base's.
                let mut s = done[i].clone();
                s.cmd_set = false;
                s
            }
            Base::Image(reference) => {
                let state = self.image_state(&stage.from, reference, &platform)?;
                // A base that is one manifest is used whatever its
                // platform, as BuildKit uses it, with BuildKit's warning.
                let config = &state.config;
                let mut actual = Platform::new(&config.os, &config.architecture);
                actual.variant = config.variant.clone();
                if !config.architecture.is_empty() && !actual.matches(&platform) {
                    events(Event::Warning(format!(
                        "InvalidBaseImagePlatform: base image {reference} is {}, not {platform}, the platform being built (line {}); its RUN steps run as {0}",
                        actual.normalized(),
                        stage.from.span.start_line
                    )));
                }
                state
            }
        };
        for entry in &state.run().env.clone() {
            if let Some((k, v)) = entry.split_once('=') {
                state.scope.set(k, v);
            }
        }
        events(Event::Done {
            number: self.step,
            cached: None,
            layer_bytes: None,
            seconds: started.elapsed().as_secs_f64(),
        });
        for instr in self.onbuild_triggers(&stage.from, &mut state)? {
            self.dispatch(planned, &instr, &mut state, done, total, events)?;
        }
        for instr in &stage.instructions {
            self.dispatch(planned, instr, &mut state, done, total, events)?;
        }
        Ok(state)
    }

    /// One step: its variables expanded, then the work of its kind, then
    /// its history entry and progress.
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
        self.shared.last_hit.set(None);
        let (expanded, _) = expand_instruction(instr, &state.scope, &self.lexer)
            .map_err(|e| self.invalid(instr, e.to_string(), None))?;
        events(Event::Step {
            number,
            total,
            stage: planned.stages[self.stage].display_name(),
            opens_stage: false,
            text: instr.original.trim().to_string(),
        });
        let inputs = Inputs { planned, done };
        let result = match &expanded.kind {
            Kind::From { .. } => unreachable!("FROM starts a stage"),
            Kind::Copy(_) | Kind::Add(_) => self.copy_step(instr, &expanded, state, &inputs)?,
            Kind::Run { .. } => {
                self.run_step(instr, &expanded.kind, state, &inputs, number, events)?
            }
            _ => self.meta_step(instr, &expanded, state, planned)?,
        };
        if let Some(created_by) = result.history {
            let with_layer = result.layer_bytes.is_some();
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
        if result.cached {
            self.cached += 1;
        }
        for warning in self.shared.warnings.take() {
            events(Event::Warning(warning));
        }
        events(Event::Done {
            number,
            cached: result
                .cached
                .then(|| self.shared.last_hit.get().unwrap_or(CacheHit::Local)),
            layer_bytes: result.layer_bytes,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// Writes the target's config and manifest; tags nothing.
    fn finish(&mut self, mut state: StageState) -> Result<Built, BuildError> {
        // Every layer written, the other stages' too: their cache records
        // are part of what the build leaves.
        let totals = self.writer.finish();
        self.blocks_reused += totals.reused;
        self.damaged.extend(totals.damaged);
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
            damaged_blobs: std::mem::take(&mut self.damaged),
            cache: CacheReport::default(),
        })
    }
}
