//! BuildKit's shell-word vectors (`envVarTest`, `wordsTest`) against
//! `hoist_dockerfile::shell`.
//!
//! The vectors live in the shared corpus (`../shared/corpus/buildkit-shell`,
//! or `$HOIST_CORPUS/buildkit-shell`); their format is described in the
//! corpus README. Every case runs, and the panic names every failing one.

use crate::common::corpus_dir;
use hoist_dockerfile::shell::Lexer;

fn read(name: &str) -> String {
    let path = corpus_dir().join("buildkit-shell").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Passed, skipped and failed cases of one vector file.
#[derive(Default)]
struct Tally {
    passed: usize,
    skipped: usize,
    failures: Vec<String>,
}

impl Tally {
    fn total(&self) -> usize {
        self.passed + self.skipped + self.failures.len()
    }

    fn check(self, file: &str, expected_total: usize) {
        println!(
            "{file}: {} passed, {} skipped, {} failed",
            self.passed,
            self.skipped,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{file}: {} passed, {} skipped, {} failed:\n{}",
            self.passed,
            self.skipped,
            self.failures.len(),
            self.failures.join("\n")
        );
        // The corpus is pinned; a different count means the reader above
        // dropped or invented cases (or the corpus was refreshed: update).
        assert_eq!(
            self.total(),
            expected_total,
            "{file}: unexpected number of cases"
        );
    }
}

/// `platform | input | expected` through `process_word`, with upstream's
/// environment. `W` cases are Windows-only (case-insensitive names).
#[test]
fn env_var_test() {
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let lexer = Lexer::new('\\');
    let mut tally = Tally::default();
    for (index, line) in read("envVarTest").lines().enumerate() {
        let line_no = index + 1;
        // As upstream: comments are recognised before trimming.
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            panic!("envVarTest:{line_no}: expected 3 fields separated by |, got {line:?}");
        };
        match platform {
            "W" => {
                tally.skipped += 1;
                continue;
            }
            "A" | "U" => {}
            other => panic!("envVarTest:{line_no}: unknown platform {other:?}"),
        }
        let got = lexer.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => expected != "error" && value == expected,
            (Err(_), _) => false,
        };
        if ok {
            tally.passed += 1;
        } else {
            tally.failures.push(format!(
                "  envVarTest:{line_no} {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    tally.check("envVarTest", 230);
}

/// `input | expected,words` through `process_words`; `ENV k=v` lines add to
/// the environment of later lines. Trailing spaces of expected words count.
#[test]
fn words_test() {
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut tally = Tally::default();
    for (index, line) in read("wordsTest").lines().enumerate() {
        let line_no = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let definition = rest.trim_start_matches(' ');
            let (key, value) = definition.split_once('=').unwrap_or((definition, ""));
            env.push((key.to_owned(), value.to_owned()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            panic!("wordsTest:{line_no}: expected exactly one | in {line:?}");
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = match lexer.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_owned()],
        };
        if got == expected {
            tally.passed += 1;
        } else {
            tally.failures.push(format!(
                "  wordsTest:{line_no} {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    tally.check("wordsTest", 24);
}
