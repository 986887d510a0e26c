//! The shell patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`.
//!
//! BuildKit turns such a pattern into a Go regular expression
//! (`convertShellPatternToRegex` in `frontend/dockerfile/shell/lex.go`) and
//! runs Go's `regexp` on the value. This module gives the same answers without
//! a regex engine: a pattern has only three kinds of atom (a literal character,
//! `?` and `*`), so a small Pike VM with Go's leftmost-first priorities is
//! enough. It runs in time proportional to value length times pattern length
//! and in memory proportional to the pattern, whatever the input.
//!
//! Surprises kept on purpose, because BuildKit has them:
//! - there are no bracket expressions: `[a-z]` matches the five characters
//!   `[`, `a`, `-`, `z`, `]` literally;
//! - `?` and `*` never match a newline (Go's `.` without the `s` flag);
//! - the only valid escapes are `\*`, `\?` and `\\`; `\}` and `\/` drop the
//!   backslash (they only served to get past the `${...}` parser); any other
//!   escape, or a trailing `\`, is an error;
//! - a byte order mark as the first character of a pattern is ignored (Go's
//!   `text/scanner` drops it).

use super::unicode::{is_digit, is_letter};

/// One piece of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    /// Exactly this character.
    Literal(char),
    /// `?`: any one character but a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A compiled shell pattern.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    atoms: Vec<Atom>,
    /// Whether `*` prefers the longest run (`##`, `%%`, `/`) or the shortest.
    greedy: bool,
}

/// Why a pattern could not be compiled; the caller adds where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadEscape(pub(super) Option<char>);

impl Pattern {
    /// Compiles `pattern` with the rules of BuildKit's
    /// `convertShellPatternToRegex`.
    pub(super) fn compile(pattern: &str, greedy: bool) -> Result<Pattern, BadEscape> {
        let pattern = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
        let mut atoms = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => atoms.push(Atom::Star),
                '?' => atoms.push(Atom::Any),
                '\\' => match chars.peek() {
                    // `\}` and `\/` only got the character past the `${...}`
                    // parser; the character itself is then taken literally
                    // on the next turn.
                    Some('}' | '/') => {}
                    _ => match chars.next() {
                        Some(escaped @ ('*' | '?' | '\\')) => atoms.push(Atom::Literal(escaped)),
                        other => return Err(BadEscape(other)),
                    },
                },
                other => atoms.push(Atom::Literal(other)),
            }
        }
        Ok(Pattern { atoms, greedy })
    }

    /// The end of the match that starts at byte 0 of `text`, if any.
    fn match_prefix(&self, text: &str) -> Option<usize> {
        self.search(text, 0, true).map(|(_, end)| end)
    }

    /// The leftmost match that starts at or after byte `from` of `text`.
    fn find_at(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        self.search(text, from, false)
    }

    /// A Pike VM over the atoms. Threads are kept in priority order, as Go's
    /// leftmost-first matcher keeps them; a thread is a program counter
    /// (index of the next atom, `atoms.len()` meaning "matched") and the byte
    /// where its match started.
    fn search(&self, text: &str, from: usize, anchored: bool) -> Option<(usize, usize)> {
        let accept = self.atoms.len();
        // `seen[pc]` holds the generation of the thread list that last took
        // `pc`, so each list holds each program counter at most once.
        let mut seen = vec![0_u64; accept + 1];
        let mut generation = 1_u64;
        let mut current: Vec<(usize, usize)> = Vec::new();
        let mut next: Vec<(usize, usize)> = Vec::new();
        let mut found = None;
        let mut pos = from;
        loop {
            // A new attempt starts here with the lowest priority, until a
            // match is found: that makes the leftmost match win.
            if found.is_none() && (!anchored || pos == from) {
                self.add_thread(&mut current, &mut seen, generation, 0, pos);
            }
            if current.is_empty() {
                break;
            }
            let ch = text.get(pos..).and_then(|rest| rest.chars().next());
            generation += 1;
            for &(pc, start) in &current {
                let step = match self.atoms.get(pc) {
                    None => {
                        // Lower-priority threads can no longer win.
                        found = Some((start, pos));
                        break;
                    }
                    Some(Atom::Literal(want)) => (ch == Some(*want)).then_some(pc + 1),
                    Some(Atom::Any) => ch.is_some_and(|c| c != '\n').then_some(pc + 1),
                    Some(Atom::Star) => ch.is_some_and(|c| c != '\n').then_some(pc),
                };
                if let Some(pc) = step {
                    self.add_thread(&mut next, &mut seen, generation, pc, start);
                }
            }
            std::mem::swap(&mut current, &mut next);
            next.clear();
            match ch {
                Some(c) => pos += c.len_utf8(),
                None => break,
            }
        }
        found
    }

    /// Adds the thread at `pc` and everything it reaches without reading a
    /// character, in priority order. An explicit stack keeps long runs of
    /// `*` from deepening the call stack.
    fn add_thread(
        &self,
        list: &mut Vec<(usize, usize)>,
        seen: &mut [u64],
        generation: u64,
        pc: usize,
        start: usize,
    ) {
        enum Work {
            Visit(usize),
            Emit(usize),
        }
        let mut stack = vec![Work::Visit(pc)];
        while let Some(work) = stack.pop() {
            let pc = match work {
                Work::Emit(pc) => {
                    list.push((pc, start));
                    continue;
                }
                Work::Visit(pc) => pc,
            };
            if seen[pc] == generation {
                continue;
            }
            seen[pc] = generation;
            match self.atoms.get(pc) {
                // A greedy star prefers to read one more character; a lazy one
                // prefers to stop.
                Some(Atom::Star) if self.greedy => {
                    list.push((pc, start));
                    stack.push(Work::Visit(pc + 1));
                }
                Some(Atom::Star) => {
                    stack.push(Work::Emit(pc));
                    stack.push(Work::Visit(pc + 1));
                }
                _ => list.push((pc, start)),
            }
        }
    }
}

/// `${VAR#pat}` and `${VAR##pat}`: `value` without the shortest (or longest)
/// prefix that `pattern` matches.
pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, BadEscape> {
    let compiled = Pattern::compile(pattern, greedy)?;
    Ok(match compiled.match_prefix(value) {
        Some(end) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// `${VAR%pat}` and `${VAR%%pat}`: `value` without the shortest (or longest)
/// suffix that `pattern` matches.
///
/// As BuildKit does, both strings are reversed so the suffix becomes a
/// prefix; escapes in the pattern keep their order (`a\*` becomes `\*a`).
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, BadEscape> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` pair in order.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        pieces.push(&chars[i..i + len]);
        i += len;
    }
    pieces.iter().rev().flat_map(|piece| piece.iter()).collect()
}

/// `${VAR/pat/repl}` (first match) and `${VAR//pat/repl}` (every match).
///
/// The pattern's `*` is greedy in both. Replacing every match goes through
/// Go's `Regexp.ReplaceAllString`, whose replacement is a template: `$$` is a
/// `$`, `$0` and `${0}` are the matched text, any other `$name` is empty. The
/// single replacement splices the text in as is. Both are kept.
pub(super) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
) -> Result<String, BadEscape> {
    let compiled = Pattern::compile(pattern, true)?;
    if !all {
        return Ok(match compiled.find_at(value, 0) {
            Some((start, end)) => format!("{}{replacement}{}", &value[..start], &value[end..]),
            None => value.to_owned(),
        });
    }
    // The loop of Go's `Regexp.replaceAll`.
    let mut out = String::with_capacity(value.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = compiled.find_at(value, search) else {
            break;
        };
        out.push_str(&value[last_end..start]);
        // An empty match right after the previous match is not replaced,
        // else `x*` would replace twice around each run of x.
        if end > last_end || start == 0 {
            expand_template(&mut out, replacement, &value[start..end]);
        }
        last_end = end;
        let width = value[search..].chars().next().map_or(0, char::len_utf8);
        if search + width > end {
            search += width;
        } else if search + 1 > end {
            // Only at the end of the value, where there is no next character.
            search += 1;
        } else {
            search = end;
        }
    }
    out.push_str(&value[last_end..]);
    Ok(out)
}

/// Go's `Regexp.expand` for a regular expression without groups.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                // Group 0 is the whole match; no other group exists.
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            // A malformed reference stays as text.
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Splits a `name` or `{name}` reference off the front of `s`, as Go's
/// `regexp.extract` does.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(is_letter(c) || is_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, mut after) = body.split_at(len);
    if braced {
        after = after.strip_prefix('}')?;
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(pattern: &str, value: &str, greedy: bool) -> String {
        trim_prefix(pattern, value, greedy).unwrap()
    }

    fn suffix(pattern: &str, value: &str, greedy: bool) -> String {
        trim_suffix(pattern, value, greedy).unwrap()
    }

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(prefix("*/", "a/b/c", false), "b/c");
        assert_eq!(prefix("*/", "a/b/c", true), "c");
        assert_eq!(prefix("*", "abc", false), "abc");
        assert_eq!(prefix("*", "abc", true), "");
        assert_eq!(prefix("?", "abc", false), "bc");
        assert_eq!(prefix("x", "abc", false), "abc");
        assert_eq!(prefix("", "abc", true), "abc");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        assert_eq!(suffix(".*", "a.tar.gz", false), "a.tar");
        assert_eq!(suffix(".*", "a.tar.gz", true), "a");
        assert_eq!(suffix("\\**", "xx**", true), "xx");
        assert_eq!(suffix("\\**\\*", "a***yy*", true), "a");
        assert_eq!(suffix("한*", "가한나한다", false), "가한나");
    }

    #[test]
    fn wildcards_stop_at_newlines() {
        assert_eq!(prefix("*", "ab\ncd", true), "\ncd");
        assert_eq!(prefix("a?c", "a\nc", true), "a\nc");
        assert_eq!(prefix("*\n", "ab\ncd", true), "cd");
    }

    #[test]
    fn brackets_are_literal() {
        assert_eq!(prefix("[ab]", "a", true), "a");
        assert_eq!(prefix("[ab]", "[ab]x", true), "x");
        assert_eq!(prefix("[!a]*", "[!a]bc", false), "bc");
    }

    #[test]
    fn escapes() {
        assert_eq!(prefix("\\*", "*a", true), "a");
        assert_eq!(prefix("\\?", "?a", true), "a");
        assert_eq!(prefix("\\\\", "\\a", true), "a");
        assert_eq!(prefix("\\}", "}a", true), "a");
        assert_eq!(prefix("\\/", "/a", true), "a");
        for bad in ["\\", "\\x", "\\\\\\", "a\\["] {
            assert!(trim_prefix(bad, "x", true).is_err(), "{bad:?}");
        }
        assert_eq!(
            Pattern::compile("\\x", true).unwrap_err(),
            BadEscape(Some('x'))
        );
        assert_eq!(Pattern::compile("\\", true).unwrap_err(), BadEscape(None));
    }

    #[test]
    fn reversed_patterns_keep_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("👽\\🚀🖖"), "🖖\\🚀👽");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
        assert_eq!(reverse_pattern(""), "");
        assert_eq!(reverse_pattern("a\0b"), "b\0a");
    }

    #[test]
    fn leading_byte_order_mark_is_ignored() {
        assert_eq!(prefix("\u{feff}a", "ab", true), "b");
        assert_eq!(prefix("a\u{feff}", "ab", true), "ab");
    }

    #[test]
    fn replace_first_and_all() {
        let r = |v, p, t, all| replace(v, p, t, all).unwrap();
        assert_eq!(r("/foo*/*/*.txt", "\\*/", ".", false), "/foo.*/*.txt");
        assert_eq!(r("/foo*/*/*.txt", "\\*/", ".", true), "/foo..*.txt");
        assert_eq!(r("/a/foo/b/c.txt", "/?/", "/", true), "/foo/c.txt");
        assert_eq!(r("xxyy", "", "ww", false), "wwxxyy");
        assert_eq!(r("xy", "", "-", true), "-x-y-");
        assert_eq!(r("aaa", "a*", "-", true), "-");
        assert_eq!(r("baaac", "a*", "-", true), "b-");
        // Go does not replace the empty match right after a match.
        assert_eq!(r("abc", "*", "-", true), "-");
        assert_eq!(r("a.b.c", ".*", "", true), "a");
        assert_eq!(r("안녕 안녕", "녕", "!", true), "안! 안!");
    }

    #[test]
    fn replace_all_expands_go_templates() {
        let r = |v, p, t| replace(v, p, t, true).unwrap();
        assert_eq!(r("abc", "b", "[$0]"), "a[b]c");
        assert_eq!(r("abc", "b", "[${0}]"), "a[b]c");
        assert_eq!(r("abc", "b", "[$1]"), "a[]c");
        assert_eq!(r("abc", "b", "[$00]"), "a[]c");
        assert_eq!(r("abc", "b", "[$name]"), "a[]c");
        assert_eq!(r("abc", "b", "[$$]"), "a[$]c");
        assert_eq!(r("abc", "b", "[$]"), "a[$]c");
        assert_eq!(r("abc", "b", "[${0]"), "a[${0]c");
        assert_eq!(r("abc", "b", "[$-]"), "a[$-]c");
        // The first-match form does not expand.
        assert_eq!(replace("abc", "b", "[$0]", false).unwrap(), "a[$0]c");
    }

    #[test]
    fn lazy_and_greedy_agree_with_leftmost_first() {
        // With several stars the leftmost-first choice is not simply the
        // longest or shortest for each star alone.
        assert_eq!(prefix("*a*b", "xaybzab", false), "zab");
        assert_eq!(prefix("*a*b", "xaybzab", true), "");
        assert_eq!(prefix("a*a*a*a*a*b", &"a".repeat(40), true), "a".repeat(40));
    }
}
