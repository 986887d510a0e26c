//! Reliability: a damaged store never yields a bad image. Bytes reused
//! from the store are checked before they enter a new blob; damage is
//! reported, with the images it touches, and mended where it can be.

use assert_cmd::Command as Cmd;
use flate2::read::MultiGzDecoder;
use hoist_oci::Digest;
use hoist_oci::image::{ImageConfig, Index, Manifest};
use std::io::Read;
use std::path::{Path, PathBuf};

fn hoist(store: &Path) -> Cmd {
    let mut cmd = Cmd::cargo_bin("hoist").unwrap();
    cmd.arg("--store").arg(store);
    cmd
}

/// A context whose first COPY makes a layer of many compressed blocks
/// (Debian's static busybox, about 2 MB), the second a small one.
fn context(dir: &Path) {
    let busybox = crate::support::require("/bin/busybox", "busybox-static");
    std::fs::copy(busybox, dir.join("big")).unwrap();
    std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY big /bin/busybox\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
}

/// Runs a build that must succeed: its digest and stderr.
fn build(store: &Path, args: &[&str], ctx: &Path) -> (String, String) {
    let out = hoist(store)
        .arg("build")
        .args(args)
        .arg(ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (stdout.lines().last().unwrap_or_default().to_owned(), stderr)
}

/// The path of the largest blob in the store (the big COPY's layer).
fn largest_blob(store: &Path) -> PathBuf {
    std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// Flips a few bytes in the middle of `blob`, as a bad disk would.
fn damage(blob: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(blob).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(blob, bytes).unwrap();
}

/// Checks every layer of the single image in the OCI layout `dir`: it
/// decompresses, as gzip, to its diffID.
fn layers_are_whole(dir: &Path) {
    let blob =
        |digest: &Digest| std::fs::read(dir.join("blobs/sha256").join(digest.hex())).unwrap();
    let index = Index::from_json(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = Manifest::from_json(&blob(&index.manifests[0].digest)).unwrap();
    let config = ImageConfig::from_json(&blob(&manifest.config.digest)).unwrap();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let mut tar = Vec::new();
        MultiGzDecoder::new(&blob(&layer.digest)[..])
            .read_to_end(&mut tar)
            .unwrap_or_else(|e| panic!("layer {} does not decompress: {e}", layer.digest));
        assert_eq!(Digest::of(&tar), *diff_id, "layer {}", layer.digest);
    }
}

#[test]
fn a_damaged_blob_is_compressed_again_never_copied_into_a_new_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = (dir.path().join("store"), dir.path().join("ctx"));
    std::fs::create_dir(&ctx).unwrap();
    context(&ctx);
    let (first, _) = build(&store, &["-q", "-t", "t:1"], &ctx);

    // The same layer again (no cache): its blocks would be copied from the
    // damaged blob; they are compressed again, the digest is the first
    // build's, and the intact copy replaces the damaged one.
    let layer = largest_blob(&store);
    damage(&layer);
    let (again, log) = build(&store, &["--no-cache", "-t", "t:2"], &ctx);
    assert_eq!(again, first, "{log}");
    assert!(
        log.contains("was damaged") && log.contains("replaced it"),
        "{log}"
    );
    let out = hoist(&store).args(["prune", "--verify"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.contains("0 damaged blobs"),
        "{report}"
    );

    // A changed file: the new layer differs, its blocks from the damaged
    // blob are compressed again, and every layer written is whole.
    damage(&layer);
    let mut big = std::fs::read(ctx.join("big")).unwrap();
    big.extend_from_slice(b"one more line\n");
    std::fs::write(ctx.join("big"), big).unwrap();
    let out_dir = dir.path().join("out");
    let output = format!("type=oci,dest={}", out_dir.display());
    let (changed, log) = build(&store, &["-t", "t:3", "--output", &output], &ctx);
    assert_ne!(changed, first);
    assert!(log.contains("is damaged"), "{log}");
    layers_are_whole(&out_dir);
}

/// `hoist prune --verify` with `args`: exit code and stderr.
fn verify(store: &Path, args: &[&str]) -> (i32, String) {
    let out = hoist(store)
        .args(["prune", "--verify"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn images(store: &Path) -> String {
    let out = hoist(store).arg("images").output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn damage_is_reported_with_the_images_it_touches_and_repaired_from_the_registry() {
    let registry = crate::support::Registry::shared();
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = (dir.path().join("store"), dir.path().join("ctx"));
    std::fs::create_dir(&ctx).unwrap();
    context(&ctx);
    let name = format!("{}/reliability/repair:v1", registry.addr());
    build(&store, &["-q", "--push", "-t", &name], &ctx);
    let (code, report) = verify(&store, &[]);
    assert_eq!(code, 0, "{report}");

    // A damaged layer: a build that would copy its blocks notes it, and
    // `hoist images` marks the image that needs it.
    let layer = largest_blob(&store);
    let layer_digest = format!("sha256:{}", layer.file_name().unwrap().to_string_lossy());
    damage(&layer);
    let mut big = std::fs::read(ctx.join("big")).unwrap();
    big.extend_from_slice(b"changed\n");
    std::fs::write(ctx.join("big"), big).unwrap();
    build(&store, &["-q", "-t", "other:v1"], &ctx);
    let listed = images(&store);
    let row = listed
        .lines()
        .find(|l| l.contains("reliability/repair"))
        .unwrap();
    assert!(row.ends_with("INCOMPLETE: 1 blob damaged"), "{listed}");

    // Verify removes it, names the image, fails.
    let (code, report) = verify(&store, &[]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains(&format!("damaged (removed): {layer_digest}")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "incomplete: {name}: 1 blob missing ({layer_digest})"
        )),
        "{report}"
    );
    assert!(images(&store).contains("INCOMPLETE: 1 blob missing"));

    // Repair fetches it from the registry the image was pushed to.
    let (code, report) = verify(&store, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains(&format!("repaired: {layer_digest}")),
        "{report}"
    );
    assert!(!images(&store).contains("INCOMPLETE"));
    // Whole again: a push (which reads every blob, checked) goes through.
    let copy = format!("{}/reliability/repaired:v1", registry.addr());
    let out = hoist(&store).args(["tag", &name, &copy]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hoist(&store).args(["push", &copy]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failed_output_leaves_nothing_at_its_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ctx) = (dir.path().join("store"), dir.path().join("ctx"));
    std::fs::create_dir(&ctx).unwrap();
    context(&ctx);
    build(&store, &["-q", "-t", "t:1"], &ctx);
    // The cached build names a damaged layer: its export fails midway.
    damage(&largest_blob(&store));
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (kind, name) in [
        ("docker", "image.tar"),
        ("oci-archive", "image-oci.tar"),
        ("oci", "layout"),
    ] {
        let dest = out.join(name);
        let result = hoist(&store)
            .args(["build", "-q", "--output"])
            .arg(format!("type={kind},dest={}", dest.display()))
            .arg(&ctx)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            stderr.contains("nothing was written to"),
            "{kind}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{kind} left {left:?}");
    }
}
