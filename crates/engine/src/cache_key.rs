//! Cache keys: what each step's result depends on, hashed.
//!
//! A stage's key starts from its base (scratch and the platform, or an
//! image's manifest digest and the platform) and every step chains its
//! own inputs onto its parent's key, so a key names the whole history of
//! a layer. Keys hold what determines the result and nothing else: no
//! host path, user, time or machine name (so equal sources give equal
//! keys anywhere), no secret's content (only its id), and every input
//! that shapes a layer's bytes (the gzip level, `SOURCE_DATE_EPOCH`).
//!
//! Every function here is pure: the engine gathers the inputs, this
//! module turns them into a key. Parts are hashed each followed by a NUL,
//! so `["a b"]` and `["a", "b"]` differ.

use hoist_dockerfile::instructions::{CopyArgs, Kind};
use hoist_oci::layer::tar::{Content, Entry, EntryKind};
use hoist_oci::{Digest, Platform, Sha256};

/// Bumped whenever a change makes equal keys mean different results.
pub(crate) const CACHE_VERSION: &str = "hoist-cache-v3";

/// What shapes a layer's bytes besides its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerFormat {
    pub gzip_level: u32,
    pub source_date_epoch: u64,
}

impl LayerFormat {
    fn parts(&self) -> [String; 2] {
        [
            format!("gzip-level-{}", self.gzip_level),
            self.source_date_epoch.to_string(),
        ]
    }
}

/// A `FROM scratch` stage.
pub(crate) fn scratch(platform: &Platform) -> Digest {
    key_of(&[CACHE_VERSION, "scratch", &platform.to_string()])
}

/// A stage on the image whose manifest is `manifest`.
pub(crate) fn image(manifest: &Digest, platform: &Platform) -> Digest {
    key_of(&[
        CACHE_VERSION,
        "image",
        &manifest.to_string(),
        &platform.to_string(),
    ])
}

/// An ARG giving `name` the value `value` (`None`: declared, no value).
pub(crate) fn arg(parent: &Digest, name: &str, value: Option<&str>) -> Digest {
    key_of(&[&parent.to_string(), "ARG", name, value.unwrap_or("\u{0}")])
}

/// WORKDIR: its directory, made (a layer) when the stage lacks it, owned
/// by `user`.
pub(crate) fn workdir(parent: &Digest, path: &str, user: &str, format: LayerFormat) -> Digest {
    let [gzip, epoch] = format.parts();
    key_of(&[
        CACHE_VERSION,
        &parent.to_string(),
        "WORKDIR",
        path,
        user,
        &gzip,
        &epoch,
    ])
}

/// What a COPY reads from the stage or image `source` (its key): the
/// digest [`copy`] takes with [`CopyBasis::Sources`].
pub(crate) fn from_stage(source: &Digest) -> Digest {
    key_of(&["from", &source.to_string()])
}

/// A metadata step (ENV, LABEL, CMD...): its text and what it means.
pub(crate) fn metadata(parent: &Digest, original: &str, kind: &Kind) -> Digest {
    key_of(&[&parent.to_string(), original, &format!("{kind:?}")])
}

/// What a COPY or ADD key is taken from: the digest it is given covers
/// either what the step reads or, for the local shortcut, the context's
/// metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyBasis {
    /// What the step reads: the entries its sources select in the context
    /// (paths, types, modes, link targets, content digests, mtimes as the
    /// layer clamps them), or the key of the stage or image it copies
    /// from. The same on every machine for the same sources; the step's
    /// key.
    Sources,
    /// The context's fingerprint (paths, sizes, mtimes, inodes): a local
    /// shortcut to the step's key when nothing in the context changed,
    /// never exported.
    Fingerprint,
}

/// A COPY or ADD step as its keys see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyStep<'a> {
    pub keyword: &'a str,
    /// The instruction's text, variables expanded.
    pub original: &'a str,
    pub args: &'a CopyArgs,
    /// The working directory, for relative destinations.
    pub workdir: &'a str,
}

/// A COPY or ADD, keyed before it runs by what `basis` says. The layer is
/// a function of what the step reads, the step itself and the stage below
/// (the parent key), whose files only decide ownership and what the
/// destination already is.
pub(crate) fn copy(
    parent: &Digest,
    step: &CopyStep<'_>,
    basis: CopyBasis,
    format: LayerFormat,
    digest: &Digest,
) -> Digest {
    let [gzip, epoch] = format.parts();
    let basis = match basis {
        CopyBasis::Sources => "sources",
        CopyBasis::Fingerprint => "context fingerprint",
    };
    key_of(&[
        CACHE_VERSION,
        basis,
        &parent.to_string(),
        step.keyword,
        step.original,
        &format!("{:?}", step.args),
        step.workdir,
        &gzip,
        &epoch,
        &digest.to_string(),
    ])
}

/// What a RUN step's result depends on, known before it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunInputs<'a> {
    /// `Host` or `None`, as the sandbox's network.
    pub network: &'a str,
    pub argv: &'a [String],
    /// A heredoc script's name and text.
    pub script: Option<(&'a str, &'a str)>,
    /// Each `--mount` as text (ids and options, never a secret's
    /// content), and what a bind mount reads.
    pub mounts: &'a [String],
    /// The environment the command sees.
    pub env: &'a [String],
}

/// A RUN step.
pub(crate) fn run(parent: &Digest, format: LayerFormat, inputs: &RunInputs<'_>) -> Digest {
    let [gzip, epoch] = format.parts();
    let parent = parent.to_string();
    let mut parts: Vec<&str> = vec![CACHE_VERSION, &parent, "RUN", inputs.network, &gzip, &epoch];
    parts.extend(inputs.argv.iter().map(String::as_str));
    if let Some((name, data)) = inputs.script {
        parts.extend(["\u{0}script", name, data]);
    }
    parts.push("\u{0}mounts");
    parts.extend(inputs.mounts.iter().map(String::as_str));
    parts.push("\u{0}env");
    parts.extend(inputs.env.iter().map(String::as_str));
    key_of(&parts)
}

/// A step that makes the layer `entries` (COPY, ADD, a WORKDIR's
/// directory): the step and every entry with its content's digest, which
/// `digest` gives. Where a file's bytes are does not matter, nor an mtime
/// the layer clamps.
pub(crate) fn layer<E>(
    parent: &Digest,
    keyword: &str,
    text: &str,
    format: LayerFormat,
    entries: &[Entry],
    mut digest: impl FnMut(&Content) -> Result<Digest, E>,
) -> Result<Digest, E> {
    let mut h = Sha256::new();
    let [gzip, epoch] = format.parts();
    for part in [
        CACHE_VERSION,
        &parent.to_string(),
        keyword,
        text,
        &gzip,
        &epoch,
    ] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    for entry in entries {
        h.update(&entry.path);
        h.update(&[0]);
        let kind = match &entry.kind {
            EntryKind::File { content, size } => format!("f{size}:{}", digest(content)?),
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
                entry.mtime.min(format.source_date_epoch)
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

/// The directory name of the cache mount `id` (`RUN --mount=type=cache`).
pub(crate) fn cache_mount(id: &str) -> Digest {
    key_of(&[id])
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

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_dockerfile::instructions::KeyValue;
    use std::convert::Infallible;

    const FORMAT: LayerFormat = LayerFormat {
        gzip_level: 6,
        source_date_epoch: 50,
    };

    fn parent() -> Digest {
        Digest::of(b"parent")
    }

    /// Content digests as the engine's hasher gives them: of the bytes,
    /// wherever they are.
    fn by_bytes(content: &Content) -> Result<Digest, Infallible> {
        Ok(match content {
            Content::Bytes(b) => Digest::of(b),
            Content::Path(p) => Digest::of(std::fs::read(p).unwrap().as_slice()),
        })
    }

    fn layer_of(entries: &[Entry], format: LayerFormat) -> Digest {
        layer(&parent(), "COPY", "COPY . /app", format, entries, by_bytes).unwrap()
    }

    fn run_of(change: impl FnOnce(&mut Vec<Vec<String>>, &mut Option<(&str, &str)>)) -> Digest {
        let mut lists = vec![
            vec!["/bin/sh".to_string(), "-c".into(), "make".into()],
            vec!["type=cache,target=/root/.cache".to_string()],
            vec!["PATH=/bin".to_string()],
        ];
        let mut script = None;
        change(&mut lists, &mut script);
        let inputs = RunInputs {
            network: "Host",
            argv: &lists[0],
            script,
            mounts: &lists[1],
            env: &lists[2],
        };
        run(&parent(), FORMAT, &inputs)
    }

    #[test]
    fn stage_bases_depend_on_image_and_platform() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            scratch(&amd64),
            scratch(&Platform::parse("linux/x86_64").unwrap())
        );
        assert_ne!(scratch(&amd64), scratch(&arm64));
        let (a, b) = (Digest::of(b"manifest a"), Digest::of(b"manifest b"));
        assert_ne!(image(&a, &amd64), image(&b, &amd64));
        assert_ne!(image(&a, &amd64), image(&a, &arm64));
        assert_ne!(image(&a, &amd64), scratch(&amd64));
    }

    #[test]
    fn metadata_steps_chain_their_parent_and_their_values() {
        let p = parent();
        assert_ne!(arg(&p, "V", Some("1")), arg(&p, "V", Some("2")));
        assert_ne!(arg(&p, "V", None), arg(&p, "V", Some("")));
        assert_ne!(
            arg(&p, "V", Some("1")),
            arg(&Digest::of(b"other"), "V", Some("1"))
        );
        assert_ne!(
            workdir(&p, "/app", "", FORMAT),
            workdir(&p, "/srv", "", FORMAT)
        );
        assert_ne!(
            workdir(&p, "/app", "", FORMAT),
            workdir(&p, "/app", "app", FORMAT)
        );
        let env = |value: &str| Kind::Env {
            pairs: vec![KeyValue {
                key: "A".into(),
                value: value.into(),
                legacy: false,
            }],
        };
        assert_ne!(
            metadata(&p, "ENV A=$X", &env("1")),
            metadata(&p, "ENV A=$X", &env("2"))
        );
        assert_eq!(
            metadata(&p, "ENV A=1", &env("1")),
            metadata(&p, "ENV A=1", &env("1"))
        );
    }

    #[test]
    fn a_run_key_covers_every_input_and_keeps_parts_apart() {
        let base = run_of(|_, _| {});
        assert_eq!(base, run_of(|_, _| {}));
        assert_ne!(base, run_of(|l, _| l[0][2] = "make test".into()));
        assert_ne!(base, run_of(|l, _| l[1].clear()));
        assert_ne!(base, run_of(|l, _| l[2].push("A=1".into())));
        assert_ne!(base, run_of(|_, s| *s = Some(("script", "echo hi"))));
        // Parts stay apart: one argument is not two, and a mount is not an
        // environment entry.
        assert_ne!(
            run_of(|l, _| l[0] = vec!["a b".into()]),
            run_of(|l, _| l[0] = vec!["a".into(), "b".into()])
        );
        assert_ne!(
            run_of(|l, _| l[2].push("X=1".into())),
            run_of(|l, _| l[1].push("X=1".into()))
        );
        let inputs = RunInputs {
            network: "None",
            argv: &["true".into()],
            script: None,
            mounts: &[],
            env: &[],
        };
        let host = RunInputs {
            network: "Host",
            ..inputs
        };
        assert_ne!(
            run(&parent(), FORMAT, &inputs),
            run(&parent(), FORMAT, &host)
        );
        let epoch = LayerFormat {
            source_date_epoch: 51,
            ..FORMAT
        };
        let level = LayerFormat {
            gzip_level: 9,
            ..FORMAT
        };
        assert_ne!(run(&parent(), FORMAT, &host), run(&parent(), epoch, &host));
        assert_ne!(run(&parent(), FORMAT, &host), run(&parent(), level, &host));
    }

    #[test]
    fn a_layer_key_covers_what_the_layer_holds_not_where_its_bytes_are() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"same bytes").unwrap();
        std::fs::write(&b, b"same bytes").unwrap();
        let file = |path: &std::path::Path| {
            Entry::file_from_path(b"app/f".to_vec(), path.to_path_buf(), 10).with_mtime(100)
        };
        let base = layer_of(&[file(&a)], FORMAT);
        // Another place on disk, the same bytes: the same key. So is an
        // mtime the layer clamps to the same SOURCE_DATE_EPOCH.
        assert_eq!(base, layer_of(&[file(&b)], FORMAT));
        assert_eq!(base, layer_of(&[file(&a).with_mtime(200)], FORMAT));
        // What the layer holds changes it.
        std::fs::write(&b, b"other byte").unwrap();
        assert_ne!(base, layer_of(&[file(&b)], FORMAT));
        for changed in [
            file(&a).with_mode(0o755),
            file(&a).with_owner(1001, 0),
            file(&a).with_owner(0, 1001),
            file(&a).with_xattr(b"user.x".to_vec(), b"1".to_vec()),
            Entry::file(b"app/g".to_vec(), b"same bytes".to_vec()).with_mtime(100),
        ] {
            assert_ne!(
                base,
                layer_of(std::slice::from_ref(&changed), FORMAT),
                "{changed:?}"
            );
        }
        let low = LayerFormat {
            source_date_epoch: 1000,
            ..FORMAT
        };
        assert_ne!(
            layer_of(&[file(&a)], low),
            layer_of(&[file(&a).with_mtime(200)], low),
            "an mtime below the epoch is kept, so it counts"
        );
        let link = |target: &str| Entry::symlink(b"l".to_vec(), target.as_bytes().to_vec());
        assert_ne!(
            layer_of(&[link("a")], FORMAT),
            layer_of(&[link("b")], FORMAT)
        );
        assert_ne!(
            layer(&parent(), "COPY", "COPY a /", FORMAT, &[], by_bytes).unwrap(),
            layer(&parent(), "ADD", "COPY a /", FORMAT, &[], by_bytes).unwrap()
        );
    }

    #[test]
    fn a_copy_key_follows_what_it_is_taken_from_and_the_step() {
        let args = CopyArgs::default();
        fn step<'a>(args: &'a CopyArgs, workdir: &'a str) -> CopyStep<'a> {
            CopyStep {
                keyword: "COPY",
                original: "COPY . .",
                args,
                workdir,
            }
        }
        let key = |fingerprint: &[u8], workdir: &str, format: LayerFormat| {
            copy(
                &parent(),
                &step(&args, workdir),
                CopyBasis::Fingerprint,
                format,
                &Digest::of(fingerprint),
            )
        };
        let base = key(b"ctx", "/app", FORMAT);
        assert_eq!(base, key(b"ctx", "/app", FORMAT));
        assert_ne!(base, key(b"ctx changed", "/app", FORMAT));
        assert_ne!(base, key(b"ctx", "/srv", FORMAT));
        let epoch = LayerFormat {
            source_date_epoch: 7,
            ..FORMAT
        };
        assert_ne!(base, key(b"ctx", "/app", epoch));
        let ctx = Digest::of(b"ctx");
        let sources = copy(
            &parent(),
            &step(&args, "/app"),
            CopyBasis::Sources,
            FORMAT,
            &ctx,
        );
        assert_ne!(base, sources, "a fingerprint is never taken for sources");
        let mut chowned = args.clone();
        chowned.chown = Some("app".into());
        let chowned = copy(
            &parent(),
            &step(&chowned, "/app"),
            CopyBasis::Sources,
            FORMAT,
            &ctx,
        );
        assert_ne!(sources, chowned);
    }
}
