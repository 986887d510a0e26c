//! Tests of the store as a whole: opening, and (below) several threads and
//! processes sharing one store, and processes killed mid-write.

use crate::json::descriptor_to_json;
use std::fs;

use hoist_oci::Digest;

use super::*;

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

#[test]
fn open_creates_the_oci_layout_and_hoists_own_parts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let store = Store::open(&root).unwrap();
    assert_eq!(store.root(), root);
    assert_eq!(
        read(root.join("oci-layout")),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        read(root.join("index.json")),
        r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
    );
    assert_eq!(read(root.join("hoist.json")), r#"{"hoistStoreVersion":1}"#);
    for dir in ["blobs/sha256", "cache", "snapshots", "tmp", "locks"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    drop(store);
    // Opening again changes nothing.
    let before = read(root.join("index.json"));
    Store::open(&root).unwrap();
    assert_eq!(read(root.join("index.json")), before);
}

#[test]
fn handles_and_writers_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Store>();
    send::<BlobWriter<'static>>();
}

#[test]
fn open_accepts_an_empty_volume_root() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("lost+found")).unwrap();
    Store::open(dir.path()).unwrap();
    assert!(dir.path().join("oci-layout").is_file());
}

#[test]
fn open_refuses_a_store_from_a_newer_hoist_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("hoist.json"), r#"{"hoistStoreVersion":99}"#).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedVersion {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade hoist"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn open_refuses_a_directory_with_other_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    let file = dir.path().join("notes.txt");
    assert!(matches!(
        Store::open(&file).unwrap_err(),
        StoreError::NotADirectory { .. }
    ));
}

#[test]
fn open_adopts_an_oci_layout_written_by_another_tool() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("oci-layout"),
        r#"{ "imageLayoutVersion": "1.0.0" }"#,
    )
    .unwrap();
    let index = r#"{"schemaVersion":2,"manifests":[],"annotations":{"x":"y"}}"#;
    fs::write(dir.path().join("index.json"), index).unwrap();
    fs::write(dir.path().join("README"), "other tool").unwrap();
    Store::open(dir.path()).unwrap();
    assert_eq!(read(dir.path().join("index.json")), index);
    assert!(dir.path().join("hoist.json").is_file());
}

#[test]
fn open_refuses_damaged_or_foreign_layout_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedLayout { ref version, .. } if version == "2.0.0"));

    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    fs::write(dir.path().join("index.json"), "{\"manifests\":").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { ref path, .. } if path.ends_with("index.json")));
}

#[test]
fn default_dir_follows_xdg_then_home() {
    let dir = |xdg: Option<&str>, home: Option<&str>| {
        default_dir_from(xdg.map(Into::into), home.map(Into::into))
    };
    assert_eq!(
        dir(Some("/x/cache"), Some("/home/u")).unwrap(),
        Path::new("/x/cache/hoist")
    );
    assert_eq!(
        dir(None, Some("/home/u")).unwrap(),
        Path::new("/home/u/.cache/hoist")
    );
    // A relative XDG_CACHE_HOME is invalid by the XDG spec and ignored.
    assert_eq!(
        dir(Some("rel"), Some("/home/u")).unwrap(),
        Path::new("/home/u/.cache/hoist")
    );
    assert_eq!(
        dir(Some(""), Some("/h")).unwrap(),
        Path::new("/h/.cache/hoist")
    );
    assert!(matches!(dir(None, None), Err(StoreError::NoDefaultDir)));
    assert!(matches!(dir(None, Some("")), Err(StoreError::NoDefaultDir)));
}

#[test]
fn the_store_lock_is_exclusive_only_while_no_other_handle_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Store::open(dir.path()).unwrap();
    let second = Store::open(dir.path()).unwrap();
    let err = first.with_exclusive(false, |_| Ok(())).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another hoist process"));
    // The refused handle still holds its shared lock and keeps working.
    first.put_blob_bytes(b"still usable", None).unwrap();
    drop(second);
    assert_eq!(first.with_exclusive(false, |_| Ok(7)).unwrap(), 7);
    // Afterwards the handle is shared again: others can open beside it,
    // and then it cannot be exclusive.
    let third = Store::open(dir.path()).unwrap();
    assert!(first.with_exclusive(false, |_| Ok(())).is_err());
    drop(third);
    assert!(first.with_exclusive(true, |_| Ok(())).is_ok());
}

/// The blobs of a small image: its manifest, and its config and layers.
pub(super) fn image_blobs(name: &str, layers: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let config = canonical(&serde_json::json!({ "config": { "Labels": { "name": name } } }));
    let describe = |media_type: &str, data: &[u8]| {
        descriptor_to_json(&Descriptor::new(
            media_type,
            Digest::of(data),
            data.len() as u64,
        ))
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": describe("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers
            .iter()
            .map(|layer| describe("application/vnd.oci.image.layer.v1.tar+gzip", layer))
            .collect::<Vec<_>>(),
    });
    let mut blobs = vec![config];
    blobs.extend(layers.iter().map(|layer| layer.to_vec()));
    (canonical(&manifest), blobs)
}

/// Stores an image (its layers, a config naming it, a manifest) and returns
/// the manifest's descriptor and the digests of its config and layers.
pub(super) fn put_image(store: &Store, name: &str, layers: &[&[u8]]) -> (Descriptor, Vec<Digest>) {
    let (manifest, blobs) = image_blobs(name, layers);
    let digests = blobs
        .iter()
        .map(|blob| {
            store
                .put_blob_bytes(blob, Some(&Digest::of(blob)))
                .unwrap()
                .0
        })
        .collect();
    let (digest, size) = store.put_blob_bytes(&manifest, None).unwrap();
    (Descriptor::new(OCI_MANIFEST, digest, size), digests)
}

// Several writers at once. Each worker stores ROUNDS images (a layer shared
// by all workers, one of its own), tags each under its own name and all of
// them under one shared name, and writes a cache record every worker also
// writes. Afterwards nothing may be lost or torn.

const ROUNDS: usize = 12;

fn shared_layer(round: usize) -> Vec<u8> {
    format!("layer shared by every worker, round {round}\n")
        .repeat(200)
        .into_bytes()
}

fn own_layer(worker: usize, round: usize) -> Vec<u8> {
    format!("layer of worker {worker}, round {round}\n")
        .repeat(300)
        .into_bytes()
}

fn cache_key(round: usize) -> String {
    Digest::of(format!("step {round}").as_bytes()).hex()
}

/// What worker `worker` tags in `round`, computed without a store.
fn expected_manifest(worker: usize, round: usize) -> Descriptor {
    let (manifest, _) = image_blobs(
        &format!("worker {worker}"),
        &[&shared_layer(round), &own_layer(worker, round)],
    );
    Descriptor::new(OCI_MANIFEST, Digest::of(&manifest), manifest.len() as u64)
}

fn work(store: &Store, worker: usize) {
    for round in 0..ROUNDS {
        let (manifest, blobs) = put_image(
            store,
            &format!("worker {worker}"),
            &[&shared_layer(round), &own_layer(worker, round)],
        );
        store
            .tag(&format!("example.com/worker{worker}:{round}"), &manifest)
            .unwrap();
        store.tag("example.com/shared:latest", &manifest).unwrap();
        let record = CacheRecord::alias(worker_key(worker), Some(blobs[1]));
        store.cache_put(&cache_key(round), &record).unwrap();
    }
}

/// The key a worker's cache records alias, to tell whose record won.
fn worker_key(worker: usize) -> Digest {
    Digest::of(format!("worker {worker}").as_bytes())
}

/// Checks that `workers` workers' results are all there, whole.
fn check_after_workers(store: &Store, workers: usize) {
    let tags = store.list().unwrap();
    assert_eq!(tags.len(), workers * ROUNDS + 1, "{tags:#?}");
    let mut blobs = std::collections::BTreeSet::new();
    for worker in 0..workers {
        for round in 0..ROUNDS {
            let reference = format!("example.com/worker{worker}:{round}");
            let expected = expected_manifest(worker, round);
            assert_eq!(
                store.resolve(&reference).unwrap().as_ref(),
                Some(&expected),
                "{reference}"
            );
            let (manifest, parts) = image_blobs(
                &format!("worker {worker}"),
                &[&shared_layer(round), &own_layer(worker, round)],
            );
            blobs.insert(Digest::of(&manifest));
            blobs.extend(parts.iter().map(|part| Digest::of(part)));
        }
    }
    let shared = store.resolve("example.com/shared:latest").unwrap().unwrap();
    assert!(
        (0..workers).any(|worker| shared == expected_manifest(worker, ROUNDS - 1)),
        "the shared tag names the last image of some worker: {shared:?}"
    );
    for round in 0..ROUNDS {
        let record = store.cache_get(&cache_key(round)).unwrap().unwrap();
        assert_eq!(record.blobs, [Digest::of(&shared_layer(round))]);
        assert!(
            (0..workers).any(|worker| record.value
                == crate::CacheValue::Alias {
                    key: worker_key(worker)
                }),
            "{record:?}"
        );
    }
    assert_eq!(
        store.blobs().unwrap(),
        blobs.iter().copied().collect::<Vec<_>>()
    );
    let report = store.verify().unwrap();
    assert_eq!((report.checked, report.corrupt), (blobs.len(), vec![]));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn threads_writing_and_tagging_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    const WORKERS: usize = 4;
    let shared_handle = Store::open(&root).unwrap();
    let start = std::sync::Barrier::new(WORKERS);
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let (start, shared_handle, root) = (&start, &shared_handle, &root);
            scope.spawn(move || {
                // Half the workers share one handle, half open their own.
                let own;
                let store = if worker % 2 == 0 {
                    shared_handle
                } else {
                    own = Store::open(root).unwrap();
                    &own
                };
                start.wait();
                work(store, worker);
            });
        }
    });
    check_after_workers(&shared_handle, WORKERS);
}

// Child processes: the test binary runs itself with `child_process` as the
// only test, and the environment saying what the child should do. Lines the
// child prints with CHILD_PREFIX are its reports to the parent.

const CHILD_MODE: &str = "HOIST_STORE_TEST_CHILD";
const CHILD_DIR: &str = "HOIST_STORE_TEST_DIR";
const CHILD_WORKER: &str = "HOIST_STORE_TEST_WORKER";
const CHILD_PREFIX: &str = "hoist-store-child: ";
/// How long a child may take to report; far more than any run needs, and
/// only reached when something hangs.
const CHILD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

fn say(line: &str) {
    println!("{CHILD_PREFIX}{line}");
}

fn read_stdin_line() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line
}

/// Bytes the stalling child streams before it stops.
const STALL_AFTER: usize = 4 << 20;

/// A reader that yields STALL_AFTER bytes, says so, and then blocks until
/// the process is killed.
struct Stalling {
    remaining: usize,
}

impl std::io::Read for Stalling {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining > 0 {
            let n = buf.len().min(self.remaining);
            buf[..n].fill(b'x');
            self.remaining -= n;
            return Ok(n);
        }
        say("streaming");
        // The parent never writes: this blocks until it kills us.
        read_stdin_line();
        Err(std::io::Error::other(
            "the parent closed stdin instead of killing the child",
        ))
    }
}

#[test]
#[ignore = "run by the multi-process tests as their child process"]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
    match mode.as_str() {
        "work" => {
            let worker = std::env::var(CHILD_WORKER).unwrap().parse().unwrap();
            let store = Store::open(&dir).unwrap();
            say("ready");
            assert_eq!(read_stdin_line(), "go\n");
            work(&store, worker);
            say("done");
        }
        "hold" => {
            let _store = Store::open(&dir).unwrap();
            say("ready");
            // Hold the store until the parent closes stdin.
            assert_eq!(read_stdin_line(), "");
        }
        "prune" => {
            let mut store = Store::open(&dir).unwrap();
            store
                .with_exclusive(true, |_| {
                    say("pruning");
                    assert_eq!(read_stdin_line(), "finish\n");
                    Ok(())
                })
                .unwrap();
            say("pruned");
            // Keep the (now shared) handle until stdin closes.
            assert_eq!(read_stdin_line(), "");
        }
        "build" => {
            // A build caught between writing an image and tagging it.
            let store = Store::open(&dir).unwrap();
            let (manifest, _) = put_image(&store, "build", &[b"built layer"]);
            say("written");
            assert_eq!(read_stdin_line(), "tag\n");
            store.tag("example.com/build:1", &manifest).unwrap();
            say("done");
        }
        "stall" => {
            let store = Store::open(&dir).unwrap();
            let reader = Stalling {
                remaining: STALL_AFTER,
            };
            let result = store.put_blob(reader, None);
            panic!("the stalled write ended: {result:?}");
        }
        other => panic!("unknown child mode {other}"),
    }
}

struct ChildProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildProcess {
    fn spawn(mode: &str, dir: &Path, worker: usize) -> ChildProcess {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["tests::child_process", "--exact", "--ignored"])
            .args(["--nocapture", "--test-threads=1", "--quiet"])
            .env(CHILD_MODE, mode)
            .env(CHILD_DIR, dir)
            .env(CHILD_WORKER, worker.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if let Some(report) = line.strip_prefix(CHILD_PREFIX)
                    && send.send(report.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        ChildProcess { child, lines }
    }

    /// Waits (up to the deadline) for the child to report `expected`.
    fn expect(&self, expected: &str) {
        match self.lines.recv_timeout(CHILD_DEADLINE) {
            Ok(line) => assert_eq!(line, expected),
            Err(e) => panic!("child {} did not report {expected:?}: {e}", self.child.id()),
        }
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child failed: {status}");
    }
}

#[test]
fn processes_writing_and_tagging_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Missing at first: the children also race to create the store.
    let root = dir.path().join("store");
    const CHILDREN: usize = 3;
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|worker| ChildProcess::spawn("work", &root, worker))
        .collect();
    for child in &children {
        child.expect("ready");
    }
    for child in &mut children {
        child.send("go\n");
    }
    // The parent works too, as the last worker.
    let store = Store::open(&root).unwrap();
    work(&store, CHILDREN);
    for child in children {
        child.expect("done");
        child.finish();
    }
    check_after_workers(&store, CHILDREN + 1);
}

#[test]
fn a_process_killed_mid_write_leaves_no_blob_and_no_lock() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut child = ChildProcess::spawn("stall", &root, 0);
    child.expect("streaming");
    // The write is under way: its bytes sit in a temp file, not a blob.
    let temps: Vec<_> = fs::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    let written = fs::metadata(&temps[0]).unwrap().len();
    assert!(
        written >= (STALL_AFTER - (1 << 20)) as u64,
        "{written} bytes in the temp file"
    );

    child.child.kill().unwrap();
    let status = child.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let mut store = Store::open(&root).unwrap();
    let content = vec![b'x'; STALL_AFTER];
    let digest = Digest::of(&content);
    assert!(store.blobs().unwrap().is_empty());
    assert!(!store.has_blob(&digest));
    // The dead child's shared lock went with it: prune runs at once.
    let options = PruneOptions {
        wait: false,
        ..PruneOptions::default()
    };
    assert_eq!(store.prune_with(&options).unwrap().removed_temps, 1);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    // And the store works as before.
    store.put_blob_bytes(&content, Some(&digest)).unwrap();
    store.verify_blob(&digest).unwrap();
}

#[test]
fn prune_waits_for_other_processes_to_close_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (loose, _) = store.put_blob_bytes(b"loose", None).unwrap();
    let child = ChildProcess::spawn("hold", dir.path(), 0);
    child.expect("ready");
    let options = PruneOptions {
        wait: false,
        ..PruneOptions::default()
    };
    let err = store.prune_with(&options).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
    assert!(
        store.has_blob(&loose),
        "nothing is removed while another process has the store"
    );
    child.finish();
    assert_eq!(store.prune_with(&options).unwrap().removed_blobs, [loose]);
}

#[test]
fn opening_waits_while_another_process_prunes() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let mut child = ChildProcess::spawn("prune", dir.path(), 0);
    child.expect("pruning");
    let err = Store::try_open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
    child.send("finish\n");
    child.expect("pruned");
    // The pruner's handle is back to shared: others open beside it.
    let store = Store::try_open(dir.path()).unwrap();
    store.put_blob_bytes(b"after prune", None).unwrap();
    child.finish();
}

/// Whether this process waits for an flock on the file with `inode`:
/// Linux lists each waiter in /proc/locks as
/// `N: -> FLOCK ADVISORY WRITE PID MAJOR:MINOR:INODE START END`.
fn waiting_for_flock(inode: u64) -> bool {
    let pid = std::process::id().to_string();
    let inode = inode.to_string();
    fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|line| {
            let fields: Vec<_> = line.split_whitespace().collect();
            fields.get(1..4) == Some(&["->", "FLOCK", "ADVISORY"][..])
                && fields.get(5) == Some(&pid.as_str())
                && fields.get(6).and_then(|id| id.rsplit(':').next()) == Some(inode.as_str())
        })
}

#[test]
fn prune_waits_for_a_running_build_and_keeps_what_it_tags() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut child = ChildProcess::spawn("build", dir.path(), 0);
    child.expect("written");
    let lock = fs::metadata(dir.path().join("locks/store.lock"))
        .unwrap()
        .ino();
    let report = std::thread::scope(|scope| {
        let pruning = scope.spawn(|| store.prune().unwrap());
        // Prune must now wait for the build's lock. Had it run instead, it
        // would have removed the untagged image and the child's tag fails.
        let deadline = std::time::Instant::now() + CHILD_DEADLINE;
        while !pruning.is_finished() && !waiting_for_flock(lock) {
            assert!(
                std::time::Instant::now() < deadline,
                "prune neither ran nor waited"
            );
            std::thread::yield_now();
        }
        child.send("tag\n");
        child.expect("done");
        child.finish();
        pruning.join().unwrap()
    });
    assert_eq!(report, PruneReport::default());
    let (manifest, parts) = image_blobs("build", &[b"built layer"]);
    let tagged = store.resolve("example.com/build:1").unwrap().unwrap();
    assert_eq!(tagged.digest, Digest::of(&manifest));
    let mut blobs: Vec<_> = parts.iter().map(|part| Digest::of(part)).collect();
    blobs.push(tagged.digest);
    blobs.sort_unstable();
    assert_eq!(store.blobs().unwrap(), blobs);
}
