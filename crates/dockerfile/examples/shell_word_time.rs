//! Times shell-word expansion, for profiling the lexer:
//!
//! - `shell_word_time FILE...` runs `hoist_dockerfile::fuzzing::shell_word` on fuzz
//!   inputs (such as `fuzz/regressions/shell_word/slow-unit-*`);
//! - `shell_word_time --family L K` expands K nested `${A///...}` with an
//!   L-byte A, whose result grows as (L+1)^K;
//! - `shell_word_time --pattern N M` matches an N-byte value against M `?*`
//!   pairs, the pattern matcher's worst case.
//!
//! `cargo build --release --example shell_word_time`, then run it under
//! `perf record` or on its own.
use std::collections::BTreeMap;
use std::time::Instant;

use hoist_dockerfile::shell::Lexer;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--family") {
        let len: usize = args[1].parse().unwrap();
        let depth: usize = args[2].parse().unwrap();
        let vars = BTreeMap::from([("A".to_owned(), "a".repeat(len))]);
        let mut word = "x".to_owned();
        for _ in 0..depth {
            word = format!("${{A///{word}}}");
        }
        let start = Instant::now();
        let out = Lexer::new('\\').process_word(&word, &vars);
        let size = out.as_ref().map_or(0, String::len);
        println!(
            "L={len} K={depth} input={}B: {:?} output={size}B {:?}",
            word.len(),
            start.elapsed(),
            out.err()
        );
        return;
    }
    if args.first().map(String::as_str) == Some("--pattern") {
        // A value of N bytes against a pattern of M `?*` pairs and a `b`
        // that never matches: the Pike VM's worst case.
        let len: usize = args[1].parse().unwrap();
        let pairs: usize = args[2].parse().unwrap();
        let vars = BTreeMap::from([
            ("A".to_owned(), "a".repeat(len)),
            ("P".to_owned(), format!("{}b", "?*".repeat(pairs))),
        ]);
        for word in ["${A//$P/x}", "${A#$P}", "${A%%$P}"] {
            let start = Instant::now();
            let out = Lexer::new('\\').process_word(word, &vars);
            println!(
                "N={len} M={pairs} {word}: {:?} ok={}",
                start.elapsed(),
                out.is_ok()
            );
        }
        return;
    }
    for path in args {
        let data = std::fs::read(&path).expect("read input");
        let start = Instant::now();
        hoist_dockerfile::fuzzing::shell_word(&data);
        println!("{path}: {:?}", start.elapsed());
    }
}
