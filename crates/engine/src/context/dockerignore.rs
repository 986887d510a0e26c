//! `.dockerignore`: which file applies to a build, how Docker reads it, and
//! what it excludes from the build context.
//!
//! The rules are Docker's, which are not gitignore's even where the syntax
//! looks the same:
//!
//! - Patterns are anchored at the context root. `foo` excludes `foo` and
//!   everything under it, but not `src/foo`; gitignore would add an implicit
//!   `**/` to a pattern without a slash. Write `**/foo` for "at any depth".
//! - A pattern also excludes everything below what it matches (`foo` excludes
//!   `foo/bar/baz`), and exceptions (`!docs/README.md`) can re-include a path
//!   whose parent directory is excluded, which gitignore forbids.
//! - A trailing `/` does not restrict a pattern to directories: patterns are
//!   cleaned like Go's `filepath.Clean`, so `foo/`, `./foo` and `/foo` all mean
//!   `foo`, and `a/../b` means `b`.
//! - Only a line whose very first character is `#` is a comment. The check
//!   comes before whitespace is trimmed, so `  # note` is the pattern `# note`.
//!   Leading and trailing whitespace is trimmed from every pattern: a name
//!   starting with a space needs `\ ` (`\ lead`), and unlike gitignore no
//!   pattern can match a name that ends with one (`trail\ ` trims to a
//!   pattern ending in a lone `\`).
//! - Classes negate with `[^...]` only; `[!...]` is a class containing `!`.
//!   `**` is special anywhere, not only as a whole path segment (see the
//!   `pattern` module).
//!
//! The Dockerfile and the `.dockerignore` file are read by the builder even
//! when they are excluded, because it needs them; but an excluded one must
//! not be visible to `COPY`/`ADD`, exactly like any other excluded file. The
//! walker that builds the context applies [`DockerIgnore::is_excluded`] to
//! them like to everything else and reads them separately.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::pattern::{DirMatches, Pattern, PatternError, PatternSet};

/// The name of the context-wide ignore file.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// A parsed ignore file: an ordered list of patterns where the last one that
/// matches a path (or a parent directory of it) decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    set: PatternSet,
}

/// Why an ignore file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// The file exists but could not be read.
    #[error("cannot read {}; check that it is a readable file", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A pattern line is not UTF-8 (comment lines may be anything).
    #[error("line {line} of {} is not valid UTF-8; save the file as UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// A pattern that Docker refuses, or reads differently than it looks.
    #[error("invalid pattern `{pattern}` on line {line} of {}", path.display())]
    Pattern {
        path: PathBuf,
        line: usize,
        pattern: String,
        #[source]
        source: PatternError,
    },
}

impl DockerIgnore {
    /// Parses the text of an ignore file. Errors name the file
    /// `.dockerignore`; [`load`](Self::load) names the real path.
    pub fn parse(text: &str) -> Result<DockerIgnore, IgnoreError> {
        parse_bytes(text.as_bytes(), Path::new(DOCKERIGNORE))
    }

    /// Finds and parses the ignore file for a build, returning the file used.
    ///
    /// As in BuildKit, `<Dockerfile>.dockerignore` next to the Dockerfile
    /// (`build/app.Dockerfile.dockerignore` for `-f build/app.Dockerfile`)
    /// takes precedence over `<context_dir>/.dockerignore`. It does so even
    /// when it is empty: hoist goes by whether the file exists.
    ///
    /// `dockerfile` is the path of the Dockerfile as resolved for the build,
    /// which without `-f` is `<context_dir>/Dockerfile`, so
    /// `<context_dir>/Dockerfile.dockerignore` wins there too. Pass `None`
    /// when the Dockerfile has no path (`-f -` reads it from stdin): buildx
    /// then writes it alone into a temporary directory, so only
    /// `<context_dir>/.dockerignore` can apply.
    ///
    /// A missing file, or a directory in its place, counts as absent (BuildKit
    /// ignores both). Any other read error is an error: BuildKit silently
    /// treats an unreadable `.dockerignore` as empty, which would send every
    /// file it was meant to keep out.
    pub fn load(
        context_dir: &Path,
        dockerfile: Option<&Path>,
    ) -> Result<Option<(PathBuf, DockerIgnore)>, IgnoreError> {
        let specific = dockerfile.map(|path| {
            let mut name = path.as_os_str().to_owned();
            name.push(".dockerignore");
            PathBuf::from(name)
        });
        let candidates = specific
            .into_iter()
            .chain(std::iter::once(context_dir.join(DOCKERIGNORE)));
        for path in candidates {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
                    ) =>
                {
                    continue;
                }
                Err(source) => return Err(IgnoreError::Read { path, source }),
            };
            let ignore = parse_bytes(&bytes, &path)?;
            return Ok(Some((path, ignore)));
        }
        Ok(None)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated, no
    /// leading `/`) is left out of the build context, as Docker's walk decides
    /// it (see [`PatternSet::matches`]).
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        self.set.matches(rel_path)
    }

    /// Whether an exception could re-include something below the excluded
    /// directory `rel_dir`. When it cannot, a walker may skip the directory
    /// entirely; otherwise it must walk it, keeping only what is re-included
    /// (and the directories leading to it, as Docker does).
    pub fn may_reinclude_under(&self, rel_dir: &str) -> bool {
        self.set.may_reinclude_under(rel_dir)
    }

    /// The patterns in file order, cleaned; their `Display` form (`!` for
    /// exceptions) is stable and suits cache keys.
    pub fn patterns(&self) -> &[Pattern] {
        self.set.patterns()
    }

    /// The underlying matcher, for walkers that hand [`DirMatches`] from a
    /// directory to its entries instead of calling
    /// [`is_excluded`](Self::is_excluded) on full paths.
    pub fn pattern_set(&self) -> &PatternSet {
        &self.set
    }

    /// One step of a walk; see [`PatternSet::matches_with_parent`].
    pub fn is_excluded_in_walk(&self, rel_path: &str, parent: &DirMatches) -> (bool, DirMatches) {
        self.set.matches_with_parent(rel_path, parent)
    }
}

/// Reads an ignore file like moby's `ignorefile.ReadAll`, then parses each
/// pattern like `patternmatcher.New`; errors name `path` and the line.
fn parse_bytes(bytes: &[u8], path: &Path) -> Result<DockerIgnore, IgnoreError> {
    // ReadAll strips a UTF-8 byte-order mark from the first line only.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut patterns = Vec::new();
    // Go's line scanner splits at `\n` and drops one `\r` before it; `lines`
    // would too, but it needs text and comments may be in any encoding.
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        // Comments are recognised before trimming, so `  #x` is a pattern.
        if raw.first() == Some(&b'#') {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(IgnoreError::NotUtf8 {
                path: path.to_owned(),
                line,
            });
        };
        let Some(normalised) = read_all_line(text) else {
            continue;
        };
        let parsed = Pattern::parse(&normalised).map_err(|source| IgnoreError::Pattern {
            path: path.to_owned(),
            line,
            pattern: text.trim().to_owned(),
            source,
        })?;
        patterns.extend(parsed);
    }
    Ok(DockerIgnore {
        set: PatternSet::from_patterns(patterns),
    })
}

/// ReadAll's rewriting of one non-comment line, before `patternmatcher.New`
/// sees it: trim, set a `!` aside (trimming again after it, so `! foo` is
/// `!foo`), clean, and drop one leading `/` unless that is all there is.
/// `None` for a blank line.
fn read_all_line(line: &str) -> Option<String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (exception, rest) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut pattern = String::new();
    if exception {
        pattern.push('!');
    }
    if !rest.is_empty() {
        let cleaned = super::pattern::clean(rest);
        match cleaned.strip_prefix('/') {
            Some(relative) if !relative.is_empty() => pattern.push_str(relative),
            _ => pattern.push_str(&cleaned),
        }
    }
    Some(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn shown(ignore: &DockerIgnore) -> Vec<String> {
        ignore.patterns().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reads_lines_like_docker() {
        // moby/patternmatcher's ignorefile `TestReadAll`, without its lone
        // `!` lines (an error here, see below).
        let text =
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
        let ignore = DockerIgnore::parse(text).unwrap();
        assert_eq!(
            shown(&ignore),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path"
            ]
        );
    }

    #[test]
    fn normalises_each_line_like_docker() {
        let cases: &[(&str, &[&str])] = &[
            ("./foo", &["foo"]),
            ("foo/", &["foo"]),
            ("foo//bar", &["foo/bar"]),
            ("/foo", &["foo"]),
            ("//foo", &["foo"]),
            ("a/../b", &["b"]),
            ("  spaced  \t", &["spaced"]),
            ("! /x", &["!x"]),
            ("!!x", &["!!x"]),
            // A lone `/` stays `/`, a pattern that matches no path.
            ("/", &["/"]),
            // Trimmed twice (by ReadAll, then by patternmatcher.New).
            ("foo/ /", &["foo"]),
            ("/ foo", &["foo"]),
            // Only a `#` in the first column starts a comment.
            ("#comment", &[]),
            ("  # not a comment", &["# not a comment"]),
            ("\\#hash", &["\\#hash"]),
            // A byte-order mark is dropped from the first line only.
            ("\u{feff}first\nsecond", &["first", "second"]),
            ("\u{feff}#comment\nkept", &["kept"]),
            ("crlf\r\nlines\r\n", &["crlf", "lines"]),
            ("", &[]),
            ("\n\n   \n", &[]),
        ];
        for (text, want) in cases {
            let ignore = DockerIgnore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(shown(&ignore), *want, "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, PatternError)] = &[
            ("ok\n!\n", 2, PatternError::LoneExclamation),
            ("ok\n\n# c\n! \n", 4, PatternError::LoneExclamation),
            ("!/\n", 1, PatternError::LoneExclamation),
            ("a\nb\n[\n", 3, PatternError::BadClass("[".into())),
            (
                "x\n[z-a]",
                2,
                PatternError::ReversedRange { lo: 'z', hi: 'a' },
            ),
            ("x\n\u{feff}y", 2, PatternError::ByteOrderMark),
            ("\\d*", 1, PatternError::LetterEscape('d')),
        ];
        for (text, want_line, want) in cases {
            match DockerIgnore::parse(text) {
                Err(IgnoreError::Pattern { line, source, .. }) => {
                    assert_eq!((line, &source), (*want_line, want), "{text:?}");
                }
                other => panic!("{text:?}: expected a pattern error, got {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_say_where_and_what_to_do() {
        let err = DockerIgnore::parse("node_modules\n*.log\n[z-a].txt\n").unwrap_err();
        let chain = format!("{err}: {}", err.source().unwrap());
        insta::assert_snapshot!(chain, @"invalid pattern `[z-a].txt` on line 3 of .dockerignore: the character range `z-a` runs backwards; write it as `a-z`");
    }

    #[test]
    fn comments_may_be_in_any_encoding_but_patterns_must_be_utf8() {
        let ignore = parse_bytes(b"# caf\xe9\nkept\n", Path::new(".dockerignore")).unwrap();
        assert_eq!(shown(&ignore), ["kept"]);
        let err = parse_bytes(b"ok\ncaf\xe9\n", Path::new("x/.dockerignore")).unwrap_err();
        assert!(
            matches!(&err, IgnoreError::NotUtf8 { path, line: 2 } if path == Path::new("x/.dockerignore")),
            "{err:?}"
        );
    }

    /// (ignore file, path, excluded?)
    const EXCLUSIONS: &[(&str, &str, bool)] = &[
        ("*", "a", true),
        ("*", "a/b/c", true),
        ("*.go", "main.go", true),
        ("*.go", "cmd/main.go", false),
        ("**/*.go", "cmd/main.go", true),
        ("**/*.go", "main.go", true),
        ("**/*.go", "main.go.txt", false),
        ("**", "any/thing", true),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x/y/b/c", true),
        ("a/**/b", "a/xb", false),
        // Not gitignore: no implicit `**/`, and `/` does not mean "directory".
        ("foo", "src/foo", false),
        ("foo", "foo/bar/baz", true),
        ("foo/", "foo", true),
        ("/foo", "foo", true),
        ("./foo", "foo/x", true),
        // Exceptions, last match wins.
        ("*.md\n!README.md", "README.md", false),
        ("*.md\n!README.md", "CHANGES.md", true),
        ("!README.md\n*.md", "README.md", true),
        ("docs\n!docs/README.md", "docs/README.md", false),
        ("docs\n!docs/README.md", "docs/other", true),
        ("*\n!src\nsrc/*.tmp", "src/main.rs", false),
        ("*\n!src\nsrc/*.tmp", "src/x.tmp", true),
        // Escapes and classes.
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("file[0-9].txt", "file7.txt", true),
        ("file[0-9].txt", "filex.txt", false),
        ("file[^0-9].txt", "filex.txt", true),
        ("[!x]y", "!y", true),
        ("[!x]y", "zy", false),
        // Whitespace is trimmed; an escaped space survives at the start.
        ("\\ lead", " lead", true),
        (" lead", " lead", false),
        // Comments and blanks do not exclude anything.
        ("# secret\n\n", "# secret", false),
        // The ignore file and the Dockerfile are excluded like any file.
        (".dockerignore\nDockerfile", ".dockerignore", true),
        (".dockerignore\nDockerfile", "Dockerfile", true),
        ("", "anything", false),
    ];

    #[test]
    fn excludes_like_docker() {
        let mut failures = Vec::new();
        for &(text, path, want) in EXCLUSIONS {
            let got = DockerIgnore::parse(text).map(|ignore| ignore.is_excluded(path));
            if got.as_ref().ok() != Some(&want) {
                failures.push(format!("{text:?} on {path:?}: got {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn reinclusion_decides_which_directories_a_walk_may_skip() {
        let ignore = DockerIgnore::parse("node_modules\n!node_modules/keep/**\ntarget\n").unwrap();
        assert!(ignore.is_excluded("node_modules"));
        assert!(ignore.may_reinclude_under("node_modules"));
        assert!(!ignore.is_excluded("node_modules/keep/a.js"));
        assert!(ignore.is_excluded("target"));
        assert!(!ignore.may_reinclude_under("target"));
        assert!(!ignore.may_reinclude_under("node_modules/other"));
    }

    #[test]
    fn walk_steps_agree_with_full_paths() {
        let ignore = DockerIgnore::parse("docs\n!docs/keep\n").unwrap();
        let (docs_excluded, docs) = ignore.is_excluded_in_walk("docs", &DirMatches::default());
        assert!(docs_excluded);
        let (keep_excluded, _) = ignore.is_excluded_in_walk("docs/keep", &docs);
        assert_eq!(keep_excluded, ignore.is_excluded("docs/keep"));
        assert!(!keep_excluded);
        assert_eq!(ignore.pattern_set().patterns().len(), 2);
    }

    /// Cases whose expected results come from moby/patternmatcher itself
    /// (see `fixtures/dockerignore/README.md`); every failure is reported.
    #[test]
    fn docker_corpus() {
        let corpus = include_str!("../../../../fixtures/dockerignore/patternmatcher-corpus.jsonl");
        let mut failures = Vec::new();
        let mut cases = 0;
        for (index, line) in corpus.lines().enumerate() {
            let case: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
            let name = format!("corpus line {}", index + 1);
            let text = case["file"].as_str().expect("file");
            let paths: Vec<&str> = case["paths"]
                .as_array()
                .expect("paths")
                .iter()
                .map(|p| p.as_str().expect("path"))
                .collect();
            cases += 1;
            let parsed = DockerIgnore::parse(text);
            if case["error"] == true {
                if parsed.is_ok() {
                    failures.push(format!("{name}: Docker refuses {text:?}, hoist accepts it"));
                }
                continue;
            }
            let ignore = match parsed {
                Ok(ignore) => ignore,
                Err(err) => {
                    failures.push(format!("{name}: {err}"));
                    continue;
                }
            };
            let want: Vec<&str> = case["patterns"]
                .as_array()
                .expect("patterns")
                .iter()
                .map(|p| p.as_str().expect("pattern"))
                .collect();
            if shown(&ignore) != want {
                failures.push(format!(
                    "{name}: patterns {:?}, Docker {want:?}",
                    shown(&ignore)
                ));
            }
            for (i, path) in paths.iter().enumerate() {
                let walk = ignore.is_excluded(path);
                let direct = ignore.pattern_set().matches_or_parent_matches(path);
                if case["walk"][i] != walk || case["direct"][i] != direct {
                    failures.push(format!(
                        "{name}: {path:?} walk={walk} direct={direct}, Docker walk={} direct={}",
                        case["walk"][i], case["direct"][i]
                    ));
                }
            }
        }
        assert!(cases > 400, "corpus has only {cases} cases");
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn load_finds_nothing_without_an_ignore_file() {
        let dir = tempfile::tempdir().unwrap();
        let dockerfile = dir.path().join("Dockerfile");
        assert!(
            DockerIgnore::load(dir.path(), Some(&dockerfile))
                .unwrap()
                .is_none()
        );
        assert!(DockerIgnore::load(dir.path(), None).unwrap().is_none());
    }

    #[test]
    fn load_prefers_the_dockerfile_specific_file() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path();
        write(&context.join(".dockerignore"), "from-context\n");
        let dockerfile = context.join("build/app.Dockerfile");
        write(&dockerfile, "FROM scratch\n");

        let (used, ignore) = DockerIgnore::load(context, Some(&dockerfile))
            .unwrap()
            .unwrap();
        assert_eq!(used, context.join(".dockerignore"));
        assert_eq!(shown(&ignore), ["from-context"]);

        let specific = context.join("build/app.Dockerfile.dockerignore");
        write(&specific, "from-dockerfile\n");
        let (used, ignore) = DockerIgnore::load(context, Some(&dockerfile))
            .unwrap()
            .unwrap();
        assert_eq!(used, specific);
        assert_eq!(shown(&ignore), ["from-dockerfile"]);

        // An empty specific file still wins: it exists.
        write(&specific, "");
        let (used, ignore) = DockerIgnore::load(context, Some(&dockerfile))
            .unwrap()
            .unwrap();
        assert_eq!(used, specific);
        assert!(ignore.patterns().is_empty());
    }

    #[test]
    fn load_uses_dockerfile_dockerignore_for_the_default_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path();
        write(&context.join(".dockerignore"), "from-context\n");
        write(
            &context.join("Dockerfile.dockerignore"),
            "from-dockerfile\n",
        );
        let dockerfile = context.join("Dockerfile");

        let (used, _) = DockerIgnore::load(context, Some(&dockerfile))
            .unwrap()
            .unwrap();
        assert_eq!(used, context.join("Dockerfile.dockerignore"));

        // A Dockerfile from stdin has no directory of its own, so only the
        // context's file can apply, even next to a Dockerfile.dockerignore.
        let (used, ignore) = DockerIgnore::load(context, None).unwrap().unwrap();
        assert_eq!(used, context.join(".dockerignore"));
        assert_eq!(shown(&ignore), ["from-context"]);
    }

    #[test]
    fn load_treats_a_directory_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".dockerignore")).unwrap();
        assert!(DockerIgnore::load(dir.path(), None).unwrap().is_none());
    }

    #[test]
    fn load_reports_read_errors_with_the_path() {
        // A context "directory" that is a file makes reading fail with
        // something other than "not found".
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        write(&not_a_dir, "");
        match DockerIgnore::load(&not_a_dir, None) {
            Err(IgnoreError::Read { path, .. }) => {
                assert_eq!(path, not_a_dir.join(".dockerignore"));
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn load_names_the_file_in_pattern_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dockerfile = dir.path().join("app.Dockerfile");
        let specific = dir.path().join("app.Dockerfile.dockerignore");
        write(&specific, "ok\n\n!\n");
        match DockerIgnore::load(dir.path(), Some(&dockerfile)) {
            Err(IgnoreError::Pattern { path, line, .. }) => {
                assert_eq!((path, line), (specific, 3));
            }
            other => panic!("expected a pattern error, got {other:?}"),
        }
    }

    #[test]
    fn never_panics_on_generated_files() {
        // xorshift64*: deterministic, no dependency.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let pieces = [
            "a", "/", "*", "**", "!", "#", " ", "\n", "\r\n", "[", "]", "\\", ".", "..", "^", "-",
            "?", "\u{feff}", "é",
        ];
        let mut accepted = 0;
        for _ in 0..5_000 {
            let len = (next() % 16) as usize;
            let text: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            if let Ok(ignore) = DockerIgnore::parse(&text) {
                accepted += 1;
                // Walking step by step gives the same answers as full paths.
                let (a_excluded, a) = ignore.is_excluded_in_walk("a", &DirMatches::default());
                assert_eq!(a_excluded, ignore.is_excluded("a"), "{text:?}");
                for child in ["a/b", "a/.a", "a/é"] {
                    let (excluded, _) = ignore.is_excluded_in_walk(child, &a);
                    assert_eq!(excluded, ignore.is_excluded(child), "{text:?} on {child:?}");
                    if a_excluded && !ignore.may_reinclude_under("a") {
                        assert!(excluded, "{text:?}: skipped `a` but kept {child:?}");
                    }
                }
            }
        }
        assert!(accepted > 1_000, "only {accepted} files parsed");
    }
}
