//! hoist build at scale and under stress: a 1 GiB context in bounded
//! memory, builds killed at random points, builds racing on one store.

use assert_cmd::cargo::cargo_bin;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Writes `files` files of `size` bytes under `dir` (100 per directory),
/// half pseudo-random (incompressible), half text.
fn make_context(dir: &Path, files: usize, size: usize) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; size];
    for i in 0..files {
        let sub = dir.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        if i % 2 == 0 {
            for chunk in buf.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
        } else {
            let line = format!("file {i}: the quick brown fox jumps over the lazy dog\n");
            for (j, b) in buf.iter_mut().enumerate() {
                *b = line.as_bytes()[j % line.len()];
            }
        }
        std::fs::File::create(sub.join(format!("f{i}")))
            .unwrap()
            .write_all(&buf)
            .unwrap();
    }
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY . /data/\n").unwrap();
}

#[test]
fn a_1gib_context_of_50000_files_builds_in_bounded_memory() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    make_context(ctx.path(), 50_000, 21_475); // 50,000 x 21,475 B = 1.0 GiB
    crate::support::hoist_within_memory(
        &[
            "--store".as_ref(),
            store.path().as_os_str(),
            "build".as_ref(),
            "-q".as_ref(),
            ctx.path().as_os_str(),
        ],
        "1 GiB / 50,000 files",
        200,
    );
}

fn build(store: &Path, ctx: &Path) -> std::process::Output {
    Command::new(cargo_bin("hoist"))
        .arg("--store")
        .arg(store)
        .args(["build", "-q", "-t", "stress:v1"])
        .arg(ctx)
        .output()
        .unwrap()
}

#[test]
fn builds_killed_at_any_point_leave_a_usable_store() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    make_context(ctx.path(), 2_000, 16_384);
    // Kill at increasing delays: during the walk, the hashing, the layer
    // write and the final documents.
    for delay_ms in [5u64, 20, 60, 120, 250, 400, 700, 1000] {
        let mut child = Command::new(cargo_bin("hoist"))
            .arg("--store")
            .arg(store.path())
            .args(["build", "-q", "--no-cache", "-t", "stress:v1"])
            .arg(ctx.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = build(store.path(), ctx.path());
    assert!(
        out.status.success(),
        "build after kills: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pruned = Command::new(cargo_bin("hoist"))
        .arg("--store")
        .arg(store.path())
        .args(["prune", "--verify"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&pruned.stderr);
    assert!(pruned.status.success(), "{report}");
    assert!(report.contains("; 0 damaged blobs"), "{report}");
    let again = build(store.path(), ctx.path());
    assert_eq!(
        again.stdout, out.stdout,
        "the store still gives the same image"
    );
}

#[test]
fn two_builds_at_once_on_one_store_both_succeed() {
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    make_context(ctx.path(), 1_000, 8_192);
    let spawn = || {
        Command::new(cargo_bin("hoist"))
            .arg("--store")
            .arg(store.path())
            .args(["build", "-q", "-t", "race:v1"])
            .arg(ctx.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(a.stdout, b.stdout, "both built the same image");
}
