//! The build cache across machines: step keys that depend only on what a
//! step reads, so two runners with the same sources share every entry.

use assert_cmd::Command as Cmd;
use std::collections::BTreeSet;
use std::path::Path;

/// The keys of a store's step records (the local fingerprint shortcuts,
/// which stand for one checkout's metadata, left out).
fn step_keys(store: &Path) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for shard in std::fs::read_dir(store.join("cache")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for record in std::fs::read_dir(&shard).unwrap() {
            let path = record.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.contains("\"copy_key\"") {
                keys.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    keys
}

/// Writes the same context into `dir`: busybox, an app, a Dockerfile with
/// every kind of step that has a layer.
fn context(dir: &Path) {
    crate::support::busybox_context(dir);
    std::fs::create_dir_all(dir.join("src/lib")).unwrap();
    std::fs::write(dir.join("src/main.txt"), "main\n").unwrap();
    std::fs::write(dir.join("src/lib/util.txt"), "util\n").unwrap();
    std::fs::write(dir.join("package.json"), "{}\n").unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin/\nWORKDIR /app\nCOPY package.json .\n\
         RUN echo installed > deps.txt\nCOPY src/ ./src/\nCOPY --chown=1001:1001 src/lib /lib/\n\
         RUN ls -R /app > /listing\n",
    )
    .unwrap();
}

#[test]
fn step_keys_are_the_same_from_any_checkout_owner_mtime_store_and_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        dir.path().join("checkout-a"),
        dir.path().join("elsewhere/b"),
    );
    for ctx in [&first, &second] {
        std::fs::create_dir_all(ctx).unwrap();
        context(ctx);
    }
    // The second checkout: other mtimes, another owner.
    let when = filetime::FileTime::from_unix_time(1_234_567_890, 0);
    for entry in walkdir::WalkDir::new(&second) {
        let path = entry.unwrap().into_path();
        filetime::set_symlink_file_times(&path, when, when).unwrap();
        std::os::unix::fs::lchown(&path, Some(4321), Some(4321)).unwrap();
    }
    let build = |store: &Path, ctx: &Path, one_cpu: bool| {
        let mut cmd = if one_cpu {
            let mut cmd = Cmd::new(crate::support::require("/usr/bin/taskset", "util-linux"));
            cmd.args(["-c", "0"])
                .arg(assert_cmd::cargo::cargo_bin("hoist"));
            cmd
        } else {
            Cmd::cargo_bin("hoist").unwrap()
        };
        let out = cmd
            .arg("--store")
            .arg(store)
            .args(["build", "-q"])
            .arg(ctx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (store_a, store_b) = (dir.path().join("store-a"), dir.path().join("other/store-b"));
    let digest_a = build(&store_a, &first, false);
    let digest_b = build(&store_b, &second, true);
    assert_eq!(digest_a, digest_b);
    let keys = step_keys(&store_a);
    // Every step that makes a layer is recorded: four COPY, WORKDIR, two RUN.
    assert!(keys.len() >= 7, "{keys:?}");
    assert_eq!(keys, step_keys(&store_b));
}
