//! Tests of the whole layer pipeline against outside references: the `tar`
//! crate's reader, GNU tar, flate2's decoder and pinned digests.

use std::io::Read;
use std::num::NonZeroUsize;

use super::*;
use crate::layer::extract::extract;

/// Deterministic bytes that are neither all text nor all noise.
fn generated(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if (i / 4096) % 2 == 0 {
                b"hoist layer text "[i % 17]
            } else {
                (state >> 24) as u8
            }
        })
        .collect()
}

const LONG_DIR: &str = "deep/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// The fixed layer of the golden test: every kind of entry and every header
/// feature the writer has.
fn golden_entries() -> Vec<Entry> {
    let long_file = format!("{LONG_DIR}/file-with-a-long-name.txt");
    let mut entries = vec![
        Entry::dir("app")
            .with_owner(1000, 1000)
            .with_mtime(1_700_000_000),
        Entry::file("app/big.bin", generated(300 * 1024)).with_mtime(1_700_000_000),
        Entry::file("app/hello.txt", b"hello, world\n".to_vec()).with_owner(1000, 1000),
        Entry::hardlink("app/hello2.txt", "app/hello.txt").with_owner(1000, 1000),
        Entry::symlink("app/current", "hello.txt"),
        Entry::file("app/tool", b"#!/bin/sh\necho tool\n".to_vec()).with_mode(0o4755),
        Entry::file("app/cap", b"x".to_vec())
            .with_xattr("security.capability", vec![1, 0, 0, 2, 0, 0x20, 0, 0])
            .with_xattr("user.note", "hoist"),
        Entry::dir("deep"),
        Entry::dir(LONG_DIR).with_mode(0o1777),
        Entry::file(long_file.clone(), b"long\n".to_vec()),
        Entry::symlink("deep/to-long", long_file),
        Entry::whiteout(b"deep/gone"),
        Entry::opaque(b"app"),
        Entry::fifo("deep/pipe"),
        Entry::char_device("deep/null", 1, 3),
    ];
    sort_entries(&mut entries);
    entries
}

fn options(threads: usize) -> LayerOptions {
    LayerOptions {
        tar: TarOptions {
            source_date_epoch: 1_600_000_000,
        },
        gzip: GzipOptions {
            level: gzip::DEFAULT_LEVEL,
            threads: NonZeroUsize::new(threads).unwrap(),
        },
    }
}

/// Pins the exact bytes of a layer. This test fails if the gzip backend
/// changes (Cargo feature unification switching flate2 away from `zlib-rs`,
/// or a zlib-rs release that deflates differently), if the compression
/// level, the gzip block cut rule or dictionary handling changes, or if the tar
/// encoding changes in any byte. That is its purpose: each of those changes
/// every layer digest hoist produces, and so every cache key and image
/// digest users have. Update the constants only on purpose, with a note in
/// the changelog.
#[test]
fn golden_digests() {
    let entries = golden_entries();
    let (one, blob) = write_layer(&entries, &options(1), Vec::new()).unwrap();
    let (two, blob_two) = write_layer(&entries, &options(2), Vec::new()).unwrap();
    assert_eq!(one, two);
    assert!(blob == blob_two, "the blob depends on the thread count");

    assert_eq!(
        one.diff_id.to_string(),
        "sha256:fbbfbe3415e5befe9eb07d9d58fccd5c02b54dd4a0734e3692f4ac4241349212"
    );
    assert_eq!(
        one.digest.to_string(),
        "sha256:4c1770ecfb2d056ea1f655338b5bed362be115537f0b5ff5199a83b6dc3363c3"
    );
    assert_eq!((one.uncompressed_size, one.size), (322_048, 154_751));
}

#[test]
fn digests_and_sizes_describe_the_bytes_written() {
    let entries = golden_entries();
    let (digests, blob) = write_layer(&entries, &options(2), Vec::new()).unwrap();
    let tar = write_tar(&entries, options(2).tar, Vec::new()).unwrap();
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert!(unzipped == tar);
    assert_eq!(digests.diff_id, Digest::of(&tar));
    assert_eq!(digests.digest, Digest::of(&blob));
    assert_eq!(digests.uncompressed_size, tar.len() as u64);
    assert_eq!(digests.size, blob.len() as u64);

    // An existing tar stream compresses to the same blob.
    let (again, blob_again) = compress_tar(&mut &tar[..], &options(1).gzip, Vec::new()).unwrap();
    assert_eq!(again, digests);
    assert!(blob_again == blob);
}

/// Reads the stream back with the `tar` crate and checks every field of
/// every entry against what was asked for.
#[test]
fn tar_crate_reads_back_every_field() {
    let entries = golden_entries();
    let bytes = write_tar(&entries, options(1).tar, Vec::new()).unwrap();
    let mut archive = ::tar::Archive::new(&bytes[..]);
    let mut read = archive.entries().unwrap();
    for expected in &entries {
        let mut entry = read.next().expect("entry missing").unwrap();
        let name = String::from_utf8_lossy(&expected.path).into_owned();
        let header = entry.header().clone();
        let mut path = expected.path.clone();
        if expected.kind == EntryKind::Dir {
            path.push(b'/');
        }
        assert_eq!(&*entry.path_bytes(), &path[..], "{name}");
        assert_eq!(header.mode().unwrap(), expected.mode, "{name}");
        assert_eq!(header.uid().unwrap(), expected.uid, "{name}");
        assert_eq!(header.gid().unwrap(), expected.gid, "{name}");
        assert_eq!(
            header.mtime().unwrap(),
            expected.mtime.min(1_600_000_000),
            "{name}"
        );
        assert_eq!(header.username_bytes(), Some(&b""[..]), "{name}");
        assert_eq!(header.groupname_bytes(), Some(&b""[..]), "{name}");
        assert!(header.as_ustar().is_some(), "{name}: not ustar");

        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = match entry.pax_extensions().unwrap() {
            Some(pax) => pax
                .map(|ext| ext.unwrap())
                .filter_map(|ext| {
                    let key = ext.key_bytes().strip_prefix(b"SCHILY.xattr.")?.to_vec();
                    Some((key, ext.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let expected_xattrs: Vec<_> = expected.xattrs.clone().into_iter().collect();
        assert_eq!(xattrs, expected_xattrs, "{name}");

        use ::tar::EntryType as T;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        match &expected.kind {
            EntryKind::File { size, content } => {
                assert_eq!(header.entry_type(), T::Regular, "{name}");
                assert_eq!(entry.size(), *size, "{name}");
                let mut body = Vec::new();
                entry.read_to_end(&mut body).unwrap();
                assert_eq!(Content::Bytes(body), *content, "{name}");
            }
            EntryKind::Dir => assert_eq!(header.entry_type(), T::Directory, "{name}"),
            EntryKind::Symlink { target } => {
                assert_eq!(header.entry_type(), T::Symlink, "{name}");
                assert_eq!(link.as_deref(), Some(&target[..]), "{name}");
            }
            EntryKind::Hardlink { target } => {
                assert_eq!(header.entry_type(), T::Link, "{name}");
                assert_eq!(link.as_deref(), Some(&target[..]), "{name}");
            }
            EntryKind::CharDevice { major, minor } => {
                assert_eq!(header.entry_type(), T::Char, "{name}");
                assert_eq!(header.device_major().unwrap(), Some(*major), "{name}");
                assert_eq!(header.device_minor().unwrap(), Some(*minor), "{name}");
            }
            EntryKind::BlockDevice { .. } => unreachable!("not in the golden set"),
            EntryKind::Fifo => assert_eq!(header.entry_type(), T::Fifo, "{name}"),
        }
    }
    assert!(read.next().is_none(), "extra entries");
}

/// GNU tar is the reference reader most people use: its listing must show
/// every entry with the right type, mode, owner, size, date and link.
#[test]
fn gnu_tar_lists_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.tar");
    let bytes = write_tar(&golden_entries(), options(1).tar, Vec::new()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let output = std::process::Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&path)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{stderr}");
    let listing: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let long = format!("{LONG_DIR}/file-with-a-long-name.txt");
    let expected = [
        "drwxr-xr-x 1000/1000 0 2020-09-13 12:26:40 app/".to_string(),
        "---------- 0/0 0 1970-01-01 00:00:00 app/.wh..wh..opq".into(),
        "-rw-r--r-- 0/0 307200 2020-09-13 12:26:40 app/big.bin".into(),
        "-rw-r--r-- 0/0 1 1970-01-01 00:00:00 app/cap".into(),
        "lrwxrwxrwx 0/0 0 1970-01-01 00:00:00 app/current -> hello.txt".into(),
        "-rw-r--r-- 1000/1000 13 1970-01-01 00:00:00 app/hello.txt".into(),
        "hrw-r--r-- 1000/1000 0 1970-01-01 00:00:00 app/hello2.txt link to app/hello.txt".into(),
        "-rwsr-xr-x 0/0 20 1970-01-01 00:00:00 app/tool".into(),
        "drwxr-xr-x 0/0 0 1970-01-01 00:00:00 deep/".into(),
        "---------- 0/0 0 1970-01-01 00:00:00 deep/.wh.gone".into(),
        format!("drwxrwxrwt 0/0 0 1970-01-01 00:00:00 {LONG_DIR}/"),
        format!("-rw-r--r-- 0/0 5 1970-01-01 00:00:00 {long}"),
        "crw-rw-rw- 0/0 1,3 1970-01-01 00:00:00 deep/null".into(),
        "prw-r--r-- 0/0 0 1970-01-01 00:00:00 deep/pipe".into(),
        format!("lrwxrwxrwx 0/0 0 1970-01-01 00:00:00 deep/to-long -> {long}"),
    ];
    assert_eq!(listing, expected);
}

/// Builds a small tree with every kind of entry `walk` and `extract`
/// handle without privileges beyond the current user's.
fn sample_tree(root: &std::path::Path) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let long = root.join(LONG_DIR);
    std::fs::create_dir_all(&long).unwrap();
    std::fs::create_dir_all(root.join("app/empty")).unwrap();
    std::fs::write(root.join("app/big.bin"), generated(200 * 1024)).unwrap();
    std::fs::write(root.join("app/tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("app/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::hard_link(root.join("app/tool"), root.join("app/tool-link")).unwrap();
    std::fs::write(long.join("file-with-a-long-name.txt"), b"long").unwrap();
    symlink("../app/tool", root.join("deep/rel-link")).unwrap();
    symlink("/etc/passwd", root.join("deep/abs-link")).unwrap();
    std::fs::set_permissions(root.join("deep"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let c_path = std::ffi::CString::new(format!("{}/app/big.bin", root.display())).unwrap();
    // SAFETY: NUL-terminated strings and a value of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c"user.origin".as_ptr(),
            b"\x01\xfe".as_ptr().cast(),
            2,
            0,
        )
    };
    assert_eq!(rc, 0);
}

/// Entries with file contents replaced by their digests, so two trees
/// compare by what is in them rather than where they are (and a failure
/// prints a readable diff).
fn snapshot(root: &std::path::Path) -> Vec<Entry> {
    let options = WalkOptions {
        xattrs: true,
        ..WalkOptions::default()
    };
    walk(root, &options)
        .unwrap()
        .into_iter()
        .map(|mut entry| {
            if let EntryKind::File {
                content: Content::Path(path),
                size,
            } = &entry.kind
            {
                let bytes = std::fs::read(path).unwrap();
                assert_eq!(bytes.len() as u64, *size);
                entry.kind = EntryKind::File {
                    size: *size,
                    content: Content::Bytes(Digest::of(&bytes).to_string().into_bytes()),
                };
            }
            entry
        })
        .collect()
}

/// walk -> layer -> extract -> walk gives back every path, kind, mode,
/// owner, mtime, link, xattr and byte (mtimes kept by an epoch in the
/// future).
#[test]
fn a_tree_survives_walk_layer_and_extract() {
    let source = tempfile::tempdir().unwrap();
    sample_tree(source.path());
    let entries = walk(
        source.path(),
        &WalkOptions {
            xattrs: true,
            ..WalkOptions::default()
        },
    )
    .unwrap();
    let options = LayerOptions {
        tar: TarOptions {
            source_date_epoch: u64::MAX,
        },
        ..LayerOptions::default()
    };
    let (_, blob) = write_layer(&entries, &options, Vec::new()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    extract(&blob[..], dest.path(), &ExtractOptions::default()).unwrap();
    let before = snapshot(source.path());
    let after = snapshot(dest.path());
    assert_eq!(before.len(), after.len());
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before, after, "{}", String::from_utf8_lossy(&before.path));
    }
}

/// GNU tar reads hoist's layers into the same tree, and hoist's extractor
/// reads GNU tar's archives (GNU and PAX formats, with long names, links
/// and xattrs) into the same tree: both directions against the reference.
#[test]
fn gnu_tar_and_hoist_agree_in_both_directions() {
    let source = tempfile::tempdir().unwrap();
    sample_tree(source.path());
    let expected = snapshot(source.path());
    let tar = |args: &[&str], dir: &std::path::Path| {
        let output = std::process::Command::new("tar")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "tar {args:?}: {stderr}");
    };

    // hoist writes, GNU tar extracts.
    let entries = walk(
        source.path(),
        &WalkOptions {
            xattrs: true,
            ..WalkOptions::default()
        },
    )
    .unwrap();
    let options = TarOptions {
        source_date_epoch: u64::MAX,
    };
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("hoist.tar");
    std::fs::write(&archive, write_tar(&entries, options, Vec::new()).unwrap()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let archive_arg = archive.to_str().unwrap();
    tar(
        &[
            "--xattrs",
            "--xattrs-include=*",
            "--same-permissions",
            "-xf",
            archive_arg,
        ],
        dest.path(),
    );
    assert_eq!(
        snapshot(dest.path()),
        expected,
        "GNU tar extracting hoist's tar"
    );

    // GNU tar writes, hoist extracts.
    for format in ["--format=gnu", "--format=pax"] {
        let archive = work.path().join(format!("{}.tar", &format[9..]));
        let archive_arg = archive.to_str().unwrap();
        let mut args = vec![format, "--xattrs", "--xattrs-include=*", "-cf", archive_arg];
        if format == "--format=gnu" {
            // GNU format cannot hold xattrs.
            args.retain(|a| !a.starts_with("--xattrs"));
        }
        args.extend(["app", "deep"]);
        tar(&args, source.path());
        let dest = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(&archive).unwrap();
        extract(file, dest.path(), &ExtractOptions::default()).unwrap();
        let mut got = snapshot(dest.path());
        if format == "--format=gnu" {
            let mut stripped = expected.clone();
            stripped.iter_mut().for_each(|e| e.xattrs.clear());
            got.iter_mut().for_each(|e| e.xattrs.clear());
            assert_eq!(got, stripped, "hoist extracting GNU tar's {format}");
        } else {
            assert_eq!(got, expected, "hoist extracting GNU tar's {format}");
        }
    }
}
