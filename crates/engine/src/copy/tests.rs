//! COPY semantics, each case named after the rule it pins (fsutil's copier
//! and BuildKit's file backend; Dockerfile reference, "COPY").

use super::*;
use hoist_oci::layer::tar::Content;

fn view(entries: Vec<Entry>) -> FsView {
    FsView::new(vec![Arc::new(LayerIndex::from_entries(entries))])
}

fn context() -> FsView {
    view(vec![
        Entry::file("package.json", "{}").with_mode(0o644),
        Entry::file("server.js", "js").with_mode(0o755),
        Entry::dir("src").with_mode(0o750),
        Entry::file("src/a.txt", "a"),
        Entry::dir("src/sub"),
        Entry::file("src/sub/b.txt", "b"),
        Entry::file("src/sub/c.md", "c"),
        Entry::symlink("link", "server.js"),
        Entry::symlink("dirlink", "src"),
        Entry::symlink("src/rel", "a.txt"),
        Entry::file("hard1", "h"),
        Entry::hardlink("hard2", "hard1"),
        Entry::file("setuid", "s").with_mode(0o4755),
    ])
}

fn req(sources: &[&str], dest: &str) -> CopyRequest {
    CopyRequest {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        wildcards: true,
        ..CopyRequest::default()
    }
}

/// (path, kind letter, mode, uid, gid) of every entry, sorted.
fn listing(layer: &LayerIndex) -> Vec<(String, char, u32, u64, u64)> {
    let mut out: Vec<_> = layer
        .entries()
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::Dir => 'd',
                EntryKind::File { .. } => 'f',
                EntryKind::Symlink { .. } => 'l',
                EntryKind::Hardlink { .. } => 'h',
                _ => '?',
            };
            (
                String::from_utf8_lossy(&e.path).into_owned(),
                kind,
                e.mode,
                e.uid,
                e.gid,
            )
        })
        .collect();
    out.sort();
    out
}

fn paths(layer: &LayerIndex) -> Vec<String> {
    listing(layer).into_iter().map(|l| l.0).collect()
}

#[test]
fn dot_copies_the_context_contents_into_the_workdir() {
    let base = view(vec![Entry::dir("app")]);
    let layer = copy(&context(), &base, &req(&["."], "/app/")).unwrap();
    let p = paths(&layer);
    assert!(p.contains(&"app/src/sub/b.txt".to_string()));
    assert!(p.contains(&"app/package.json".to_string()));
    assert!(!p.contains(&"app/app".to_string()));
    // The existing destination keeps its metadata: it is only a parent.
    let app = layer.get(b"app").unwrap();
    assert_eq!((app.mode, app.uid), (0o755, 0));
}

#[test]
fn file_into_directory_with_trailing_slash_or_existing_dir_else_renamed() {
    let empty = FsView::default();
    let l = copy(&context(), &empty, &req(&["package.json"], "/app/")).unwrap();
    assert_eq!(paths(&l), ["app", "app/package.json"]);
    let l = copy(&context(), &empty, &req(&["package.json"], "/app")).unwrap();
    assert_eq!(paths(&l), ["app"]);
    assert!(matches!(
        l.get(b"app").unwrap().kind,
        EntryKind::File { .. }
    ));
    let existing = view(vec![Entry::dir("app")]);
    let l = copy(&context(), &existing, &req(&["package.json"], "/app")).unwrap();
    assert_eq!(paths(&l), ["app", "app/package.json"]);
}

#[test]
fn directory_copies_contents_and_created_dest_is_0755_root() {
    let l = copy(&context(), &FsView::default(), &req(&["src"], "/dst")).unwrap();
    assert_eq!(
        listing(&l),
        [
            ("dst".into(), 'd', 0o755, 0, 0),
            ("dst/a.txt".into(), 'f', 0o644, 0, 0),
            ("dst/rel".into(), 'l', 0o777, 0, 0),
            ("dst/sub".into(), 'd', 0o755, 0, 0),
            ("dst/sub/b.txt".into(), 'f', 0o644, 0, 0),
            ("dst/sub/c.md".into(), 'f', 0o644, 0, 0),
        ]
    );
}

#[test]
fn wildcards_match_with_filepath_match_and_empty_matches_copy_nothing() {
    let l = copy(&context(), &FsView::default(), &req(&["*.js*"], "/out/")).unwrap();
    assert_eq!(paths(&l), ["out", "out/package.json", "out/server.js"]);
    let l = copy(
        &context(),
        &FsView::default(),
        &req(&["src/*/*.txt"], "/out/"),
    )
    .unwrap();
    assert_eq!(paths(&l), ["out", "out/b.txt"]);
    let l = copy(&context(), &FsView::default(), &req(&["nomatch*"], "/out/")).unwrap();
    // BuildKit's file backend returns before creating anything.
    assert!(paths(&l).is_empty());
    assert!(copy(&context(), &FsView::default(), &req(&["missing"], "/out/")).is_err());
}

#[test]
fn source_symlink_is_followed_inner_symlinks_are_kept() {
    let l = copy(&context(), &FsView::default(), &req(&["link"], "/bin/")).unwrap();
    let e = l.get(b"bin/link").unwrap();
    assert!(matches!(&e.kind, EntryKind::File { content: Content::Bytes(b), .. } if b == b"js"));
    assert_eq!(e.mode, 0o755);
    let l = copy(&context(), &FsView::default(), &req(&["dirlink"], "/d")).unwrap();
    assert!(l.get(b"d/a.txt").is_some());
    assert!(matches!(
        l.get(b"d/rel").unwrap().kind,
        EntryKind::Symlink { .. }
    ));
}

#[test]
fn chown_and_chmod_apply_to_copies_and_created_parents() {
    let mut r = req(&["src"], "/a/b/");
    r.chown = Some((1001, 1001));
    r.chmod = Some(crate::chmod::Chmod::Octal(0o640));
    let l = copy(&context(), &FsView::default(), &r).unwrap();
    for (path, kind, mode, uid, gid) in listing(&l) {
        let want = if kind == 'l' { 0o777 } else { 0o640 };
        assert_eq!((mode, uid, gid), (want, 1001, 1001), "{path}");
    }
}

#[test]
fn hardlinks_survive_within_a_source_and_setuid_stays() {
    let l = copy(&context(), &FsView::default(), &req(&["."], "/x/")).unwrap();
    assert_eq!(
        l.get(b"x/hard2").unwrap().kind,
        EntryKind::Hardlink {
            target: b"x/hard1".to_vec()
        }
    );
    assert_eq!(l.get(b"x/setuid").unwrap().mode, 0o4755);
    // Separate sources are separate copies in BuildKit: the link breaks.
    let l = copy(
        &context(),
        &FsView::default(),
        &req(&["hard1", "hard2"], "/y/"),
    )
    .unwrap();
    assert!(matches!(
        l.get(b"y/hard2").unwrap().kind,
        EntryKind::File { .. }
    ));
}

#[test]
fn destination_symlinks_resolve_inside_the_root() {
    let base = view(vec![
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::symlink("bin", "../../usr/bin"),
    ]);
    let l = copy(&context(), &base, &req(&["server.js"], "/bin/")).unwrap();
    assert_eq!(paths(&l), ["usr", "usr/bin", "usr/bin/server.js"]);
}

#[test]
fn a_file_cannot_replace_a_directory() {
    let base = view(vec![Entry::dir("app"), Entry::dir("app/server.js")]);
    let err = copy(&context(), &base, &req(&["server.js"], "/app/")).unwrap_err();
    assert!(
        matches!(err, CopyError::ReplaceDirWithFile { .. }),
        "{err:?}"
    );
}

#[test]
fn excludes_skip_matching_paths_below_the_source() {
    let mut r = req(&["src"], "/s/");
    r.excludes = Some(PatternSet::new(["*.md", "sub/*.md"]).unwrap());
    let l = copy(&context(), &FsView::default(), &r).unwrap();
    assert_eq!(paths(&l), ["s", "s/a.txt", "s/rel", "s/sub", "s/sub/b.txt"]);
}

#[test]
fn copying_into_the_root_never_writes_the_root_itself() {
    let l = copy(&context(), &FsView::default(), &req(&["."], "/")).unwrap();
    assert!(l.get(b"").is_none());
    assert!(l.get(b"src/a.txt").is_some());
}

#[test]
fn clean_and_wildcard_detection() {
    assert_eq!(clean("/a/./b/../c/"), b"a/c");
    assert_eq!(clean("."), b"");
    assert!(contains_wildcards("a*"));
    assert!(!contains_wildcards("a\\*"));
}

/// Dockerfile reference, "COPY --parents": the three examples.
#[test]
fn parents_keep_the_source_paths() {
    let ctx = view(vec![
        Entry::dir("x").with_mode(0o750),
        Entry::file("x/a.txt", "xa"),
        Entry::dir("x/y"),
        Entry::file("x/y/a.txt", "xya"),
        Entry::file("x/y/b.txt", "xyb"),
        Entry::dir("y"),
        Entry::file("y/a.txt", "ya"),
        Entry::dir("src"),
        Entry::file("src/a.txt", "a"),
        Entry::dir("src/x"),
        Entry::file("src/x/b.txt", "b"),
        Entry::dir("src/x/y"),
        Entry::file("src/x/y/c.txt", "c"),
        Entry::file("src/x/y/skip.md", "no"),
    ]);
    let parents = |sources: &[&str], dest: &str| {
        let mut r = req(sources, dest);
        r.parents = true;
        paths(&copy(&ctx, &FsView::default(), &r).unwrap())
    };
    // COPY ./x/a.txt ./y/a.txt /no_parents/ -> /no_parents/a.txt
    assert_eq!(
        paths(
            &copy(
                &ctx,
                &FsView::default(),
                &req(&["./x/a.txt", "./y/a.txt"], "/no_parents/")
            )
            .unwrap()
        ),
        ["no_parents", "no_parents/a.txt"]
    );
    // COPY --parents ./x/a.txt ./y/a.txt /parents/
    assert_eq!(
        parents(&["./x/a.txt", "./y/a.txt"], "/parents/"),
        [
            "parents",
            "parents/x",
            "parents/x/a.txt",
            "parents/y",
            "parents/y/a.txt"
        ]
    );
    // COPY --parents ./x/./y/*.txt /parents/
    assert_eq!(
        parents(&["./x/./y/*.txt"], "/parents/"),
        ["parents", "parents/y", "parents/y/a.txt", "parents/y/b.txt"]
    );
    // COPY --parents ./src/**/*.txt /parents/
    assert_eq!(
        parents(&["./src/**/*.txt"], "/parents/"),
        [
            "parents",
            "parents/src",
            "parents/src/a.txt",
            "parents/src/x",
            "parents/src/x/b.txt",
            "parents/src/x/y",
            "parents/src/x/y/c.txt"
        ]
    );
    // Parent directories keep their source's mode.
    let mut r = req(&["./x/a.txt"], "/p/");
    r.parents = true;
    assert_eq!(
        copy(&ctx, &FsView::default(), &r)
            .unwrap()
            .get(b"p/x")
            .unwrap()
            .mode,
        0o750
    );
    let mut r = req(&["./nope/a.txt"], "/p/");
    r.parents = true;
    assert!(copy(&ctx, &FsView::default(), &r).is_err());
}

#[test]
fn symbolic_chmod_edits_each_source_mode() {
    let mut r = req(&["src"], "/s/");
    r.chmod = Some(crate::chmod::Chmod::parse("go-rwx,u+x").unwrap());
    let l = copy(&context(), &FsView::default(), &r).unwrap();
    assert_eq!(
        l.get(b"s/a.txt").unwrap().mode,
        0o700,
        "0644 -> u+x, go-rwx"
    );
    assert_eq!(l.get(b"s/sub").unwrap().mode, 0o700);
    assert_eq!(
        l.get(b"s").unwrap().mode,
        0o755,
        "created directories ignore symbolic modes"
    );
}
