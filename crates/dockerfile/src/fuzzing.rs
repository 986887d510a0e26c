//! Entry points shared by the fuzz targets (`fuzz/`) and the test that
//! replays their corpus in `cargo test`, so both run the same code.
//!
//! Each function drives one front-end surface end to end on arbitrary bytes
//! and panics only if hoist has a bug: every input must come back as a
//! value or an error.

use crate::check::{check, render};
use crate::dump::dump;
use crate::parse;
use crate::plan::{Options, Scope, plan, type_instructions};
use crate::shell::Lexer;

/// Parse, dump, type, plan and check a Dockerfile.
pub fn dockerfile(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    if let Ok(ast) = parse(&source) {
        let dumped = dump(&ast);
        // Values are quoted, so each instruction is exactly one dump line.
        assert_eq!(dumped.lines().count(), ast.nodes.len());
        let _ = type_instructions(&ast);
        let _ = plan(&ast, &Options::default());
    }
    let report = check(&source);
    let _ = render(&report, "Dockerfile", &source);
}

/// Expand a word with each lexer mode; the first byte picks the escape
/// character and modes, the rest is `NAME=VALUE` lines then the word.
pub fn shell_word(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (env, word) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut scope = Scope::default();
    for line in env.lines() {
        if let Some((k, v)) = line.split_once('=') {
            scope.set(k, v);
        }
    }
    let lexer = Lexer::new(if mode & 1 == 0 { '\\' } else { '`' })
        .raw_quotes(mode & 2 != 0)
        .raw_escapes(mode & 4 != 0)
        .skip_unset_env(mode & 8 != 0);
    let _ = lexer.process_word(word, &scope);
    let _ = lexer.process_words(word, &scope);
    if let Ok(e) = lexer.process_word_with_matches(word, &scope) {
        // A name is either set or not: it cannot be both.
        assert!(e.matched.is_disjoint(&e.unmatched));
    }
}
