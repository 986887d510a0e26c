//! RUN as a step: its key (known before it runs, so a hit skips it), the
//! user, environment and host files it gets, secrets and agents handed in
//! only as it runs, and what it changed turned into a layer whose blob is
//! compressed behind the next steps.

use crate::engine::{Builder, Event, Inputs, StageState, StepResult};
use crate::error::{BuildError, StepError};
use crate::mounts::PreparedMounts;
use crate::writer::LayerBlob;
use hoist_dockerfile::instructions::{Instruction, Kind, Network, Security};
use hoist_dockerfile::shell::Vars;
use hoist_oci::Digest;
use hoist_oci::layer::tar::{EntryKind, TarOptions};
use hoist_rootfs::user::{groups_of, resolve_chown};
use hoist_rootfs::view::LayerIndex;
use hoist_run::userns::Namespace;
use hoist_run::{HostFile, MountSource, Network as RunNetwork, RunError, RunSpec, SecretBytes};
use std::path::PathBuf;
use std::sync::Arc;

/// Lines of a failed RUN's output repeated in its error.
const OUTPUT_TAIL: usize = 10;

/// Who a step runs as.
struct Identity {
    /// The USER text, for messages.
    user: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Builder<'_> {
    /// RUN: the command in a sandbox over the stage's layers; what it
    /// changed becomes a layer. The key (the stage's key, the command, the
    /// environment it sees) is known before running, so a hit skips it.
    pub(crate) fn run_step(
        &mut self,
        instr: &Instruction,
        run: &Kind,
        state: &mut StageState,
        inputs: &Inputs<'_>,
        number: usize,
        events: &mut dyn FnMut(Event),
    ) -> Result<StepResult, BuildError> {
        let Kind::Run {
            command,
            mounts,
            network,
            security,
        } = run
        else {
            unreachable!("run_step takes RUN")
        };
        if *security == Some(Security::Insecure) {
            return Err(self.invalid(instr, "RUN --security=insecure is not supported", None));
        }
        let network = match network {
            Some(Network::None) => RunNetwork::None,
            Some(_) => RunNetwork::Host,
            None if self.request.run_network_none => RunNetwork::None,
            None => RunNetwork::Host,
        };
        if !mounts.is_empty() {
            // Mount targets are checked against the image's directories.
            self.read_view(instr, state)?;
        }
        let prepared = self.run_mounts(instr, state, inputs, mounts)?;
        let (argv, script) = crate::meta::run_argv(&state.config, command)
            .map_err(|e| self.invalid(instr, e, None))?;
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
        let network_text = format!("{network:?}");
        let key = crate::cache_key::run(
            &state.key,
            self.layer_format(),
            &crate::cache_key::RunInputs {
                network: &network_text,
                argv: &argv,
                script: script.as_ref().map(|(n, d)| (n.as_str(), d.as_str())),
                mounts: &prepared.texts,
                env: &env,
            },
        );
        match self.cached(&key)? {
            Some(crate::commit::Cached::Empty) => {
                state.key = key;
                return Ok(StepResult {
                    history: Some(history),
                    layer_bytes: None,
                    cached: true,
                });
            }
            Some(crate::commit::Cached::Layer(cached)) => {
                return Ok(state.reuse(key, &cached, history));
            }
            None => {}
        }

        hoist_run::check_privileges().map_err(|e| self.step_error(instr, e))?;
        // A foreign platform's commands run through QEMU's binfmt_misc
        // handler, which must be there; an image that names no platform
        // is taken as the machine's.
        let config = &state.config;
        if !config.architecture.is_empty() {
            let os = if config.os.is_empty() {
                "linux"
            } else {
                &config.os
            };
            match hoist_run::emulation::for_platform(os, &config.architecture) {
                Ok(hoist_run::emulation::Emulation::Native) => {}
                Ok(hoist_run::emulation::Emulation::Qemu(handler)) => {
                    if self.emulators.insert(handler.clone()) {
                        let mut platform = format!("{os}/{}", config.architecture);
                        if let Some(variant) = config.variant.as_deref().filter(|v| !v.is_empty()) {
                            platform = format!("{platform}/{variant}");
                        }
                        events(Event::Emulated { platform, handler });
                    }
                }
                Err(unsupported) => {
                    return Err(self.invalid(instr, unsupported.message, Some(&unsupported.hint)));
                }
            }
        }
        self.read_view(instr, state)?;
        for dir in ["proc", "dev", "sys"] {
            if let Some(e) = state.view.get(dir.as_bytes())
                && e.kind != EntryKind::Dir
            {
                return Err(self.invalid(
                    instr,
                    format!(
                        "/{dir} in the image is not a directory: RUN mounts a file system there"
                    ),
                    Some(&format!("remove /{dir} from the image in an earlier step")),
                ));
            }
        }
        // A root carried from the stage's previous chroot step needs no
        // snapshot of the layers below.
        let lowers = match hoist_run::carried(&layer_ids(state)) {
            true => Vec::new(),
            false => self.lowers(instr, &state.layers)?,
        };
        let who = self.identity(instr, state)?;
        let namespace = hoist_run::userns::current();
        if namespace == Namespace::Single && (who.uid, who.gid) != (0, 0) {
            let what = format!(
                "the step runs as USER {} ({}:{})",
                who.user, who.uid, who.gid
            );
            return Err(self.step_error(instr, RunError::SingleId { what }));
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", home_of(state, who.uid)));
        }
        let dir = self.scratch()?.join(format!("run-{number}"));
        std::fs::create_dir(&dir).map_err(|e| {
            self.step_error(
                instr,
                RunError::Io {
                    path: dir.clone(),
                    source: e,
                },
            )
        })?;
        let PreparedMounts {
            mounts: mut run_mounts,
            stubs,
            secrets,
            agents,
            locks: _cache_locks,
            ..
        } = prepared;
        // Secrets and agents only now that the step runs: after the key,
        // which never holds their content.
        let env_lookup = |name: &str| std::env::var(name).ok();
        for pending in secrets {
            let data = self
                .request
                .secrets
                .read(&pending.id, &env_lookup)
                .map_err(|e| self.step_error(instr, e))?
                .ok_or_else(|| self.missing_secret(instr, "secret", &pending.id))?;
            if let Some(var) = &pending.env {
                let value = std::str::from_utf8(&data).map_err(|_| {
                    self.invalid(
                        instr,
                        format!(
                            "secret {} is not UTF-8 text: it cannot be the variable {var}",
                            pending.id
                        ),
                        Some("mount it as a file (target=PATH) instead"),
                    )
                })?;
                env.retain(|e| !e.starts_with(&format!("{var}=")));
                env.push(format!("{var}={value}"));
            }
            if let Some(i) = pending.index {
                run_mounts[i].source = MountSource::Secret {
                    data: SecretBytes(data),
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
                .map_err(|e| self.step_error(instr, e))?,
            );
            run_mounts[agent.index].source = MountSource::Socket { source: socket };
            if n == 0 && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                env.push(format!("SSH_AUTH_SOCK={}", run_mounts[agent.index].target));
            }
        }
        let workdir = state.run().working_dir.clone();
        let spec = RunSpec {
            lowers,
            layer_ids: layer_ids(state),
            argv,
            env,
            workdir: if workdir.is_empty() {
                "/".into()
            } else {
                workdir
            },
            uid: who.uid,
            gid: who.gid,
            groups: who.groups,
            network,
            host_files: host_files(state),
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
        if let Some((mode, reason)) = hoist_run::take_isolation_report() {
            events(Event::Isolation {
                mode: mode.name(),
                reason,
            });
        }
        let code = match result {
            Ok(code) => code,
            Err(RunError::Interrupted { signal }) => {
                return Err(BuildError::Interrupted { signal });
            }
            Err(e) => return Err(self.step_error(instr, e)),
        };
        drop(proxies);
        if code != 0 {
            return Err(self.step_error(instr, failed(code, &tail, namespace)));
        }
        let created: Vec<&str> = spec
            .host_files
            .iter()
            .filter(|f| f.create)
            .map(|f| f.target.as_str())
            .chain(stubs.iter().map(String::as_str))
            .collect();
        let changes = self.changes(&dir, &created, namespace, state)?;
        let layer_bytes = self.commit_run_layer(instr, state, key, &history, changes)?;
        // The layer is written: a chroot step's root can serve the next.
        hoist_run::carry(&dir, layer_ids(state));
        Ok(StepResult {
            history: Some(history),
            layer_bytes,
            cached: false,
        })
    }

    /// The user the step runs as: the stage's USER (root when unset),
    /// resolved through the image's /etc/passwd and /etc/group.
    fn identity(&self, instr: &Instruction, state: &StageState) -> Result<Identity, BuildError> {
        let user = match state.run().user.as_str() {
            "" => "root".to_string(),
            user => user.to_string(),
        };
        let (uid, gid) =
            resolve_chown(&user, &state.view).map_err(|e| self.step_error(instr, e))?;
        let groups =
            groups_of(&user, uid, gid, &state.view).map_err(|e| self.step_error(instr, e))?;
        let id = |n: u64| {
            u32::try_from(n).map_err(|_| {
                self.invalid(instr, format!("user or group id {n} is out of range"), None)
            })
        };
        Ok(Identity {
            uid: id(uid)?,
            gid: id(gid)?,
            groups: groups.into_iter().map(id).collect::<Result<Vec<_>, _>>()?,
            user,
        })
    }

    /// What the step run in `dir` changed, as the layer's index; in a
    /// single-id namespace, files keep the owner of the layer below.
    fn changes(
        &self,
        dir: &std::path::Path,
        created: &[&str],
        namespace: Namespace,
        state: &StageState,
    ) -> Result<LayerIndex, BuildError> {
        let mut entries =
            hoist_run::changes(dir, created, namespace.is_user_namespace()).map_err(|e| {
                BuildError::Context {
                    path: dir.to_path_buf(),
                    source: Box::new(e),
                }
            })?;
        // An opaque marker hides what the layers below hold in its
        // directory; where they hold no such directory (overlayfs marks a
        // directory made where the step had removed one of its own), it
        // hides nothing and is left out, as the copy-based modes never
        // make it.
        let marker = format!("/{}", hoist_oci::layer::tar::OPAQUE_MARKER);
        entries.retain(|e| match e.path.strip_suffix(marker.as_bytes()) {
            Some(dir) => state.view.get(dir).is_some(),
            None => true,
        });
        if namespace == Namespace::Single {
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
        Ok(LayerIndex::from_entries(entries))
    }

    /// A finished step's changes as its layer: none if it changed nothing
    /// (recorded, as BuildKit makes no layer then); else the next RUN's
    /// lower made from the upper directory's files at once, and the blob
    /// compressed on the writer thread while the next steps run. Where the
    /// snapshot cannot be made so, the blob is written now, and the next
    /// RUN extracts it. Returns the layer's tar size.
    fn commit_run_layer(
        &mut self,
        instr: &Instruction,
        state: &mut StageState,
        key: Digest,
        history: &str,
        changes: LayerIndex,
    ) -> Result<Option<u64>, BuildError> {
        if changes.is_empty() {
            self.record_empty(&key)?;
            state.key = key;
            return Ok(None);
        }
        let entries = changes.to_tar_entries();
        let tar = TarOptions {
            source_date_epoch: self.request.source_date_epoch,
        };
        let (blob, diff_id, tar_size) = match hoist_run::snapshot::adopt(self.store, &entries, tar)
        {
            Some((diff_id, tar_size)) => {
                let blob =
                    self.store_layer_later(self.place(instr), key, history, entries, diff_id);
                (blob, diff_id, tar_size)
            }
            None => {
                let layer = self
                    .store_layer(&key, history, &entries)
                    .map_err(|e| self.step_error(instr, e))?;
                (
                    LayerBlob::ready(crate::commit::descriptor(&layer)),
                    layer.diff_id,
                    layer.tar_size,
                )
            }
        };
        state.push_layer(Arc::new(changes), blob, diff_id);
        state.key = key;
        Ok(Some(tar_size))
    }

    /// The snapshot directories of `layers`, the lowers of a RUN's root.
    /// A layer whose snapshot is there needs no blob; one whose blob is
    /// still being written waits for it only when extracted.
    pub(crate) fn lowers(
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
                        .map_err(|e| self.step_error(instr, e))?
                }
            };
            lowers.push(dir);
        }
        Ok(lowers)
    }
}

/// The diffIDs of the stage's layers, bottom to top.
fn layer_ids(state: &StageState) -> Vec<String> {
    state.layers.iter().map(|(_, id)| id.to_string()).collect()
}

/// The error of a command that exited with `code`, its last lines of
/// output repeated.
fn failed(code: i32, tail: &std::collections::VecDeque<String>, namespace: Namespace) -> StepError {
    let mut message = format!("exit code {code}");
    if !tail.is_empty() {
        message.push_str("; its last lines of output:");
        for line in tail {
            message.push_str(&format!("\n  {line}"));
        }
    }
    // A single-id namespace makes chown and adduser fail: say so.
    let hint = (namespace == Namespace::Single).then(|| {
        format!(
            "hoist ran this step in a single-id user namespace, where only id 0 exists: if it changes ownership or needs other users, {}",
            hoist_run::userns::subid_remedy()
        )
    });
    StepError::Invalid { message, hint }
}

/// The host's /etc/hosts and /etc/resolv.conf, bound read-only: over a
/// regular file of the image, or over an empty one made for it; a symlink
/// or directory there is left alone (binding over it would follow it,
/// perhaps out of the root).
fn host_files(state: &StageState) -> Vec<HostFile> {
    let mut files = Vec::new();
    for (source, target) in [
        ("/etc/hosts", "etc/hosts"),
        ("/etc/resolv.conf", "etc/resolv.conf"),
    ] {
        if !std::path::Path::new(source).is_file() {
            continue;
        }
        let create = match state.view.get(target.as_bytes()).map(|e| &e.kind) {
            None => match state.view.get(b"etc").map(|e| &e.kind) {
                None | Some(EntryKind::Dir) => true,
                Some(_) => continue,
            },
            Some(EntryKind::File { .. } | EntryKind::Hardlink { .. }) => false,
            Some(_) => continue,
        };
        files.push(HostFile {
            source: source.into(),
            target: target.into(),
            create,
        });
    }
    files
}

/// runc's default HOME: the user's home in the image's /etc/passwd, else
/// `/`.
fn home_of(state: &StageState, uid: u32) -> String {
    let passwd = hoist_rootfs::user::read_file(&state.view, "etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.trim().split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// What a RUN step's environment holds: the image's ENV, then the stage's
/// build args that ENV does not set (BuildKit passes ARGs to RUN as
/// environment variables; ENV wins over an ARG of the same name), and
/// Docker's PATH when neither sets one.
fn run_env(state: &StageState) -> Vec<String> {
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
        env.push(format!("PATH={}", crate::meta::DEFAULT_PATH));
    }
    env
}
