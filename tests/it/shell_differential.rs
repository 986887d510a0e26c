//! Generated words whose expansion was recorded from BuildKit itself.
//!
//! `tests/data/shell-differential.jsonl` holds 857 words built from the
//! tokens that matter to the lexer (`${`, operators, quotes, escapes, `<<`,
//! patterns, BOM, NUL, Korean text), each with an escape character, lexer
//! options and variables, and what BuildKit's `frontend/dockerfile/shell`
//! (moby/buildkit 73ed6825, the commit of the shared corpus, built with Go
//! 1.19) returned from `ProcessWordWithMatches` and `ProcessWords`. They
//! reach the operators, options and word-splitting quirks that the upstream
//! vectors leave out. Regenerate them the same way if BuildKit's lexer
//! changes.
//!
//! Each line: `{"input", "escape", "opts", "vars": [[name, value]...],
//! "expect": {"ok", "value"?, "matched"?, "unmatched"?, "words"}}`, where
//! `opts` is a bit set (1 RawQuotes, 2 RawEscapes, 4 SkipUnsetEnv,
//! 8 SkipProcessQuotes) and `words` is null when expansion fails.

use std::collections::BTreeSet;

use hoist_dockerfile::shell::Lexer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    input: String,
    escape: String,
    opts: u8,
    vars: Vec<(String, String)>,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    ok: bool,
    #[serde(default)]
    value: String,
    #[serde(default)]
    matched: BTreeSet<String>,
    #[serde(default)]
    unmatched: BTreeSet<String>,
    words: Option<Vec<String>>,
}

#[test]
fn recorded_buildkit_expansions() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/shell-differential.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let mut passed = 0;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let case: Case = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("{}:{line_no}: {err}", path.display()));
        let escape = case.escape.chars().next().expect("an escape character");
        let lexer = Lexer::new(escape)
            .raw_quotes(case.opts & 1 != 0)
            .raw_escapes(case.opts & 2 != 0)
            .skip_unset_env(case.opts & 4 != 0)
            .skip_process_quotes(case.opts & 8 != 0);
        let expanded = lexer.process_word_with_matches(&case.input, &case.vars);
        let words = lexer.process_words(&case.input, &case.vars).ok();
        let want = &case.expect;
        let same = match &expanded {
            Ok(got) => {
                want.ok
                    && got.value == want.value
                    && got.matched == want.matched
                    && got.unmatched == want.unmatched
            }
            Err(_) => !want.ok,
        } && words == want.words;
        if same {
            passed += 1;
        } else {
            failures.push(format!(
                "  line {line_no} {:?} (escape {escape:?}, opts {}): got {expanded:?} / words {words:?}, want ok={} value={:?} matched={:?} unmatched={:?} words={:?}",
                case.input,
                case.opts,
                want.ok,
                want.value,
                want.matched,
                want.unmatched,
                want.words
            ));
        }
    }
    println!(
        "shell-differential: {passed} passed, 0 skipped, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "shell-differential: {passed} passed, {} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, 857, "unexpected number of recorded cases");
}
