use super::*;
use hoist_oci::Digest;
use hoist_oci::compression::Compression;
use std::io::{BufRead, BufReader, Write};

/// One raw tar member: the name is written as is (`../evil` included),
/// which the tar crate's safe setters refuse.
enum Member<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// The old type flag `\0` on a name ending in `/`.
    V7Dir(&'a str),
}

fn tar_of(members: &[Member<'_>], owner: (u64, u64)) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_ustar();
        let (name, data, kind, link, mode): (&str, &[u8], tar::EntryType, &str, u32) = match m {
            Member::File(n, d) => (n, d, tar::EntryType::Regular, "", 0o640),
            Member::Dir(n) => (n, b"", tar::EntryType::Directory, "", 0o750),
            Member::Symlink(n, t) => (n, b"", tar::EntryType::Symlink, t, 0o777),
            Member::Hardlink(n, t) => (n, b"", tar::EntryType::Link, t, 0o640),
            Member::V7Dir(n) => (n, b"", tar::EntryType::Regular, "", 0o700),
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        if matches!(m, Member::V7Dir(_)) {
            h.as_mut_bytes()[156] = 0;
        }
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = ::bzip2::write::BzEncoder::new(Vec::new(), ::bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn context(files: Vec<Entry>) -> FsView {
    FsView::new(vec![Arc::new(LayerIndex::from_entries(files))])
}

fn request(sources: &[&str], dest: &str) -> CopyRequest {
    CopyRequest {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        wildcards: true,
        ..CopyRequest::default()
    }
}

fn run(
    source: &FsView,
    dest: &FsView,
    request: &CopyRequest,
    unpack: Option<bool>,
) -> Result<LayerIndex, AddError> {
    let scratch = tempfile::tempdir().unwrap();
    let options = AddOptions {
        unpack,
        checksum: None,
        local: true,
        scratch: scratch.path(),
    };
    let out = add(source, dest, request, &options);
    // Contents live in the scratch directory: keep it for the test's life.
    std::mem::forget(scratch);
    out
}

fn content_of(index: &LayerIndex, path: &str) -> Vec<u8> {
    match &index.get(path.as_bytes()).unwrap().kind {
        EntryKind::File { content, .. } => {
            let mut out = Vec::new();
            open(content).unwrap().read_to_end(&mut out).unwrap();
            out
        }
        other => panic!("{path} is {other:?}"),
    }
}

#[test]
fn formats_are_told_by_content_not_name() {
    let tar = tar_of(&[Member::File("a.txt", b"hello")], (0, 0));
    for (what, bytes, format) in [
        ("plain", tar.clone(), Compression::None),
        ("gzip", gzip(&tar), Compression::Gzip),
        ("bzip2", bzip2(&tar), Compression::Bzip2),
        ("xz", xz(&tar), Compression::Xz),
        ("zstd", zstd(&tar), Compression::Zstd),
    ] {
        assert_eq!(Compression::detect(&bytes), format, "{what}");
        assert!(is_archive(&Content::Bytes(bytes.clone())), "{what}");
        let mut out = Vec::new();
        let (kind, mut reader) = decompress_detected(io::Cursor::new(bytes)).unwrap();
        assert_eq!(kind, format, "{what}");
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, tar, "{what} decompresses to the tar");
    }
    // Compressed text, a corrupt header, an empty tar, short files and
    // text that merely starts like bzip2 are files, not archives.
    let mut corrupt = tar.clone();
    corrupt[0] ^= 1;
    for (what, bytes) in [
        ("gzip text", gzip(b"just text\n")),
        ("xz text", xz(b"just text\n")),
        ("bad checksum", corrupt),
        ("empty tar", vec![0u8; 1024]),
        ("short", b"hello".to_vec()),
        ("BZh text", b"BZh is how this line starts".repeat(40)),
    ] {
        assert!(!is_archive(&Content::Bytes(bytes)), "{what}");
    }
}

#[test]
fn zstd_streams_of_several_frames_are_read_whole() {
    let mut bytes = zstd(b"one ");
    // A skippable frame (magic 0x184D2A50, 3 bytes of payload) between.
    bytes.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
    bytes.extend(zstd(b"two"));
    let mut out = String::new();
    decompress_detected(io::Cursor::new(bytes))
        .unwrap()
        .1
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "one two");
}

#[test]
fn archives_unpack_into_the_destination_keeping_their_owners() {
    let tar = tar_of(
        &[
            Member::Dir("./"),
            Member::File("./a.txt", b"A"),
            Member::Dir("./sub/"),
            Member::File("./sub/b.txt", b"B"),
            Member::Hardlink("./h", "./a.txt"),
            Member::Symlink("./l", "a.txt"),
            // Missing parents are made 0755 root:root.
            Member::File("deep/er/c.txt", b"C"),
        ],
        (1234, 5678),
    );
    let src = context(vec![
        Entry::file("x.tgz", gzip(&tar)),
        Entry::file("plain.txt", "p"),
    ]);
    let mut req = request(&["x.tgz", "plain.txt"], "/out");
    req.chown = Some((7, 8));
    let out = run(&src, &FsView::default(), &req, None).unwrap();
    let get = |p: &str| out.get(p.as_bytes()).unwrap().clone();
    // The destination is made with --chown; the archive's `./` is skipped.
    assert_eq!((get("out").uid, get("out").mode), (7, 0o755));
    let a = get("out/a.txt");
    assert_eq!((a.uid, a.gid, a.mode), (1234, 5678, 0o640));
    assert_eq!(content_of(&out, "out/a.txt"), b"A");
    assert_eq!(get("out/sub").mode, 0o750);
    assert_eq!(
        get("out/h").kind,
        EntryKind::Hardlink {
            target: b"out/a.txt".to_vec()
        }
    );
    assert_eq!(
        get("out/l").kind,
        EntryKind::Symlink {
            target: b"a.txt".to_vec()
        }
    );
    let deep = get("out/deep");
    assert_eq!((deep.uid, deep.gid, deep.mode), (0, 0, 0o755));
    assert_eq!(content_of(&out, "out/deep/er/c.txt"), b"C");
    // A non-archive in the same ADD is copied with --chown.
    assert_eq!(get("out/plain.txt").uid, 7);
}

#[test]
fn old_style_directories_are_directories() {
    let tar = tar_of(
        &[Member::V7Dir("old/"), Member::File("old/f", b"f")],
        (0, 0),
    );
    let src = context(vec![Entry::file("v7.tar", tar)]);
    let out = run(&src, &FsView::default(), &request(&["v7.tar"], "/d"), None).unwrap();
    let old = out.get(b"d/old").unwrap();
    assert_eq!((&old.kind, old.mode), (&EntryKind::Dir, 0o700));
}

#[test]
fn unpack_false_copies_the_archive_as_is() {
    let bytes = gzip(&tar_of(&[Member::File("a", b"A")], (0, 0)));
    let src = context(vec![Entry::file("x.tar.gz", bytes.clone())]);
    let out = run(
        &src,
        &FsView::default(),
        &request(&["x.tar.gz"], "/d/"),
        Some(false),
    )
    .unwrap();
    assert_eq!(content_of(&out, "d/x.tar.gz"), bytes);
    assert!(out.get(b"d/a").is_none());
    // A name that looks like an archive but is not one is copied too.
    let src = context(vec![Entry::file("fake.tar.gz", "text")]);
    let out = run(&src, &FsView::default(), &request(&["*.gz"], "/d/"), None).unwrap();
    assert_eq!(content_of(&out, "d/fake.tar.gz"), b"text");
}

#[test]
fn nothing_lands_outside_the_destination() {
    // `..` climbing out is refused, as Docker refuses a breakout.
    let evil = tar_of(&[Member::File("../evil", b"x")], (0, 0));
    let src = context(vec![Entry::file("e.tar", evil)]);
    let err = run(&src, &FsView::default(), &request(&["e.tar"], "/d"), None).unwrap_err();
    assert!(err.to_string().contains("cannot unpack e.tar"), "{err}");
    assert!(format!("{err}").contains("../evil"), "{err}");

    // Absolute names land under the destination.
    let abs = tar_of(&[Member::File("/etc/passwd", b"x")], (0, 0));
    let src = context(vec![Entry::file("a.tar", abs)]);
    let out = run(&src, &FsView::default(), &request(&["a.tar"], "/d"), None).unwrap();
    assert!(out.get(b"d/etc/passwd").is_some());
    assert!(out.get(b"etc/passwd").is_none());

    // A symlink to an absolute path, then a file through it: resolved
    // inside the destination, as a chrooted extraction does.
    let through = tar_of(
        &[
            Member::Symlink("link", "/etc"),
            Member::File("link/passwd", b"x"),
        ],
        (0, 0),
    );
    let src = context(vec![Entry::file("s.tar", through)]);
    let base = context(vec![Entry::dir("etc"), Entry::file("etc/passwd", "root")]);
    let out = run(&src, &base, &request(&["s.tar"], "/d"), None).unwrap();
    assert!(out.get(b"d/etc/passwd").is_some());
    assert!(
        out.get(b"etc/passwd").is_none(),
        "the image's /etc is untouched"
    );

    // A relative link climbing out, then a file through it: refused.
    let climbing = tar_of(
        &[
            Member::Symlink("up", "../../.."),
            Member::File("up/etc/passwd", b"x"),
        ],
        (0, 0),
    );
    let src = context(vec![Entry::file("c.tar", climbing)]);
    let err = run(&src, &base, &request(&["c.tar"], "/d"), None).unwrap_err();
    assert!(err.to_string().contains("outside the destination"), "{err}");

    // A hardlink to a path outside is refused as well.
    let link = tar_of(&[Member::Hardlink("h", "../../etc/passwd")], (0, 0));
    let src = context(vec![Entry::file("h.tar", link)]);
    assert!(run(&src, &base, &request(&["h.tar"], "/d"), None).is_err());
}

#[test]
fn entries_replace_what_is_there_and_directories_merge() {
    let tar = tar_of(
        &[
            Member::Dir("keep/"),
            Member::File("was-dir", b"now a file"),
            Member::Dir("again/"),
            Member::File("again/new", b"n"),
            Member::File(".wh.data", b"a file, not a whiteout"),
        ],
        (5, 5),
    );
    let base = context(vec![
        Entry::dir("d").with_mode(0o700).with_owner(9, 9),
        Entry::dir("d/keep").with_owner(1, 1),
        Entry::file("d/keep/old", "o"),
        Entry::dir("d/was-dir"),
        Entry::file("d/was-dir/inner", "i"),
        Entry::file("d/data", "stays"),
    ]);
    let src = context(vec![Entry::file("t.tar", tar)]);
    let out = run(&src, &base, &request(&["t.tar"], "/d"), None).unwrap();
    let mut view = base.clone();
    view.push(Arc::new(out.clone()));
    // The existing destination keeps its metadata.
    assert_eq!(view.get(b"d").unwrap().mode, 0o700);
    // A directory over a directory: the archive's metadata, contents kept.
    assert_eq!(view.get(b"d/keep").unwrap().uid, 5);
    assert!(view.get(b"d/keep/old").is_some());
    // A file over a directory replaces it and what it held.
    assert!(matches!(
        view.get(b"d/was-dir").unwrap().kind,
        EntryKind::File { .. }
    ));
    assert!(view.get(b"d/was-dir/inner").is_none());
    // `.wh.` names are data: nothing is deleted.
    assert!(view.get(b"d/data").is_some());
    assert!(out.get(b"d/.wh.data").is_some());
}

#[test]
fn download_names_follow_the_url_path() {
    assert_eq!(download_name("http://h:1/a/hello.txt"), "hello.txt");
    assert_eq!(download_name("https://h/a/b/?x=1#f"), "b");
    assert_eq!(download_name("https://h/a%20b.tgz?q"), "a b.tgz");
    assert_eq!(download_name("https://h/"), UNNAMED);
    assert_eq!(download_name("https://h"), UNNAMED);
}

#[test]
fn checksums_must_match_and_name_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"served").unwrap();
    let got = Digest::of(b"served");
    let want = Digest::of(b"expected");
    verify_checksum("http://h/f", &got.to_string(), &file, &got).unwrap();
    let err = verify_checksum("http://h/f", &want.to_string(), &file, &got).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&want.to_string()) && text.contains(&got.to_string()),
        "{text}"
    );
    // `printf served | sha512sum`
    let sha512 = "sha512:3f3dc3519791919ac1cac00c7b86ac056718cc60ec031d30103e76b930c6d728\
                  3333d2c99bf0cae04a3999b6670a71bcfb4e3d54548272696eb7bc17f3c799da";
    verify_checksum("http://h/f", sha512, &file, &got).unwrap();
    let other = sha512.replace("3f3d", "0000");
    let err = verify_checksum("http://h/f", &other, &file, &got).unwrap_err();
    assert!(
        err.to_string().contains(&format!("downloaded {sha512}")),
        "{err}"
    );
    for invalid in ["md5:abc", "sha256:ABC", "sha256:00", "nocolon"] {
        assert!(
            matches!(
                verify_checksum("http://h/f", invalid, &file, &got),
                Err(AddError::BadChecksum { .. })
            ),
            "{invalid}"
        );
    }
}

/// Serves one HTTP response per connection on a loopback port.
fn serve(responses: Vec<Vec<u8>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for response in responses {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            stream.write_all(&response).unwrap();
        }
    });
    addr
}

fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn add_url(
    url: &str,
    checksum: Option<&str>,
    unpack: Option<bool>,
) -> Result<LayerIndex, AddError> {
    let scratch = tempfile::tempdir().unwrap();
    let options = AddOptions {
        unpack,
        checksum,
        local: true,
        scratch: scratch.path(),
    };
    let out = add(
        &FsView::default(),
        &FsView::default(),
        &request(&[url], "/d/"),
        &options,
    );
    std::mem::forget(scratch);
    out
}

#[test]
fn urls_are_downloaded_0600_after_redirects_and_checked() {
    let body = b"downloaded\n";
    let addr = serve(vec![
        response("302 Found", "Location: /real/file.txt\r\n", b""),
        response("200 OK", "", body),
    ]);
    let digest = Digest::of(body).to_string();
    let out = add_url(&format!("http://{addr}/file.txt"), Some(&digest), None).unwrap();
    let file = out.get(b"d/file.txt").unwrap();
    assert_eq!((file.mode, file.uid, file.gid), (0o600, 0, 0));
    assert_eq!(content_of(&out, "d/file.txt"), body);

    let addr = serve(vec![response("200 OK", "", body)]);
    let wrong = Digest::of(b"other").to_string();
    let err = add_url(&format!("http://{addr}/f"), Some(&wrong), None).unwrap_err();
    assert!(matches!(err, AddError::Checksum { .. }), "{err}");

    let addr = serve(vec![response("404 Not Found", "", b"no")]);
    let err = add_url(&format!("http://{addr}/missing"), None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot download http://{addr}/missing: the server answered HTTP 404")
    );
}

#[test]
fn downloaded_archives_unpack_only_when_asked() {
    let tgz = gzip(&tar_of(&[Member::File("in.txt", b"i")], (0, 0)));
    let addr = serve(vec![
        response("200 OK", "", &tgz),
        response("200 OK", "", &tgz),
    ]);
    let out = add_url(&format!("http://{addr}/a.tgz"), None, None).unwrap();
    assert!(out.get(b"d/a.tgz").is_some() && out.get(b"d/in.txt").is_none());
    let out = add_url(&format!("http://{addr}/a.tgz"), None, Some(true)).unwrap();
    assert!(out.get(b"d/in.txt").is_some() && out.get(b"d/a.tgz").is_none());
}

#[test]
fn checksum_of_a_local_file_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let options = AddOptions {
        unpack: None,
        checksum: Some("sha256:00"),
        local: true,
        scratch: scratch.path(),
    };
    let src = context(vec![Entry::file("f", "x")]);
    let err = add(&src, &FsView::default(), &request(&["f"], "/d/"), &options).unwrap_err();
    assert!(matches!(err, AddError::ChecksumOfLocalFile { .. }));
}

#[test]
fn a_directory_made_again_hides_what_the_one_it_replaced_held() {
    // Both from the image and from an earlier source of the same ADD.
    let tar = tar_of(
        &[
            Member::File("img", b"f"),
            Member::Dir("img/"),
            Member::File("step", b"f"),
            Member::Dir("step/"),
        ],
        (0, 0),
    );
    let src = context(vec![
        Entry::dir("dir"),
        Entry::dir("dir/step"),
        Entry::file("dir/step/x", "x"),
        Entry::file("t.tar", tar),
    ]);
    let base = context(vec![
        Entry::dir("d"),
        Entry::dir("d/img"),
        Entry::file("d/img/y", "y"),
    ]);
    let out = run(&src, &base, &request(&["dir", "t.tar"], "/d"), None).unwrap();
    let mut view = base.clone();
    view.push(Arc::new(out));
    assert!(view.is_dir(b"d/img") && view.is_dir(b"d/step"));
    assert!(view.get(b"d/img/y").is_none());
    assert!(view.get(b"d/step/x").is_none());
}
