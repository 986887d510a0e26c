//! The shell patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`.
//!
//! BuildKit turns such a pattern into a Go regular expression
//! (`convertShellPatternToRegex` in `frontend/dockerfile/shell/lex.go`) and
//! runs Go's `regexp` on the value. This module gives the same answers without
//! a regex engine: a pattern has only three kinds of atom (a literal character,
//! `?` and `*`), so a small Pike VM with Go's leftmost-first priorities is
//! enough. A search runs in time proportional to the text it reads times the
//! number of live threads, which is at most the pattern's length and at most
//! about twice the text read so far (runs of `*` are merged into one, so every
//! other atom ahead of a thread consumed a character). Memory is
//! proportional to the pattern, whatever the input.
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
                // `**` matches exactly what `*` matches, with the same
                // leftmost-first preferences; merging runs keeps a pattern of
                // a million stars from costing a million threads per step.
                '*' if atoms.last() == Some(&Atom::Star) => {}
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
}

/// The scratch space of searches with one pattern, reused across the
/// searches of a replace-all so each costs no allocation of pattern size.
struct Matcher<'p> {
    pattern: &'p Pattern,
    /// Steps left before the search gives up with
    /// [`PatternError::TooManySteps`].
    steps: usize,
    /// `seen[pc]` holds the generation of the thread list that last took
    /// `pc`, so each list holds each program counter at most once.
    seen: Vec<u64>,
    generation: u64,
    current: Vec<(usize, usize)>,
    next: Vec<(usize, usize)>,
}

impl<'p> Matcher<'p> {
    fn new(pattern: &'p Pattern, steps: usize) -> Matcher<'p> {
        Matcher {
            pattern,
            steps,
            seen: vec![0; pattern.atoms.len() + 1],
            generation: 0,
            current: Vec::new(),
            next: Vec::new(),
        }
    }

    /// The end of the match that starts at byte 0 of `text`, if any.
    fn match_prefix(&mut self, text: &str) -> Result<Option<usize>, PatternError> {
        Ok(self.search(text, 0, true)?.map(|(_, end)| end))
    }

    /// The leftmost match that starts at or after byte `from` of `text`.
    fn find_at(&mut self, text: &str, from: usize) -> Result<Option<(usize, usize)>, PatternError> {
        self.search(text, from, false)
    }

    /// A Pike VM over the atoms. Threads are kept in priority order, as Go's
    /// leftmost-first matcher keeps them; a thread is a program counter
    /// (index of the next atom, `atoms.len()` meaning "matched") and the byte
    /// where its match started.
    ///
    /// Each thread that reads a character, and each character read, is one
    /// step taken from `steps`.
    fn search(
        &mut self,
        text: &str,
        from: usize,
        anchored: bool,
    ) -> Result<Option<(usize, usize)>, PatternError> {
        let atoms = &self.pattern.atoms[..];
        self.current.clear();
        self.next.clear();
        self.generation += 1;
        let mut found = None;
        let mut pos = from;
        loop {
            // A new attempt starts here with the lowest priority, until a
            // match is found: that makes the leftmost match win.
            if found.is_none() && (!anchored || pos == from) {
                self.add_thread(false, 0, pos);
            }
            if self.current.is_empty() {
                break;
            }
            self.steps = self
                .steps
                .checked_sub(self.current.len() + 1)
                .ok_or(PatternError::TooManySteps)?;
            let ch = text.get(pos..).and_then(|rest| rest.chars().next());
            self.generation += 1;
            for i in 0..self.current.len() {
                let (pc, start) = self.current[i];
                let step = match atoms.get(pc) {
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
                    self.add_thread(true, pc, start);
                }
            }
            std::mem::swap(&mut self.current, &mut self.next);
            self.next.clear();
            match ch {
                Some(c) => pos += c.len_utf8(),
                None => break,
            }
        }
        Ok(found)
    }

    /// Adds the thread at `pc` and everything it reaches without reading a
    /// character, in priority order, to the next list (`to_next`) or the
    /// current one. A run of `*` is a single atom, so a thread reaches at
    /// most one more program counter without reading.
    fn add_thread(&mut self, to_next: bool, pc: usize, start: usize) {
        let list = if to_next {
            &mut self.next
        } else {
            &mut self.current
        };
        let generation = self.generation;
        if self.seen[pc] == generation {
            return;
        }
        let seen = &mut self.seen;
        let mut push = |pc: usize| {
            if seen[pc] != generation {
                seen[pc] = generation;
                list.push((pc, start));
            }
        };
        match self.pattern.atoms.get(pc) {
            // The atom after a star is never a star, so this is the whole
            // closure. A greedy star prefers to read one more character, a
            // lazy one prefers to stop.
            Some(Atom::Star) if self.pattern.greedy => {
                push(pc);
                push(pc + 1);
            }
            Some(Atom::Star) => {
                push(pc + 1);
                push(pc);
            }
            _ => push(pc),
        }
    }
}

/// Why a pattern operation gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PatternError {
    BadEscape(BadEscape),
    /// The result would be longer than the limit the caller gave.
    TooLong,
    /// Matching would take more steps than the caller allowed.
    TooManySteps,
}

impl From<BadEscape> for PatternError {
    fn from(bad: BadEscape) -> PatternError {
        PatternError::BadEscape(bad)
    }
}

/// `${VAR#pat}` and `${VAR##pat}`: `value` without the shortest (or longest)
/// prefix that `pattern` matches. Matching takes its steps from `steps`.
pub(super) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
    steps: &mut usize,
) -> Result<String, PatternError> {
    let compiled = Pattern::compile(pattern, greedy)?;
    let mut matcher = Matcher::new(&compiled, *steps);
    let found = matcher.match_prefix(value);
    *steps = matcher.steps;
    Ok(match found? {
        Some(end) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// `${VAR%pat}` and `${VAR%%pat}`: `value` without the shortest (or longest)
/// suffix that `pattern` matches.
///
/// As BuildKit does, both strings are reversed so the suffix becomes a
/// prefix; escapes in the pattern keep their order (`a\*` becomes `\*a`).
pub(super) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
    steps: &mut usize,
) -> Result<String, PatternError> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy, steps)?;
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
///
/// Replacing every match multiplies sizes (`${A//?/$0$0}` doubles A, and a
/// replacement can itself hold such a substitution), so the result is built
/// only up to `limit` bytes; past that the work stops with
/// [`PatternError::TooLong`]. Matching takes its steps from `steps`.
pub(super) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
    limit: usize,
    steps: &mut usize,
) -> Result<String, PatternError> {
    let compiled = Pattern::compile(pattern, true)?;
    let mut matcher = Matcher::new(&compiled, *steps);
    let out = if all {
        replace_all(&mut matcher, value, replacement, limit)
    } else {
        matcher.find_at(value, 0).map(|found| match found {
            Some((start, end)) => format!("{}{replacement}{}", &value[..start], &value[end..]),
            None => value.to_owned(),
        })
    };
    *steps = matcher.steps;
    let out = out?;
    if out.len() > limit {
        return Err(PatternError::TooLong);
    }
    Ok(out)
}

/// The loop of Go's `Regexp.replaceAll`.
fn replace_all(
    matcher: &mut Matcher<'_>,
    value: &str,
    template: &str,
    limit: usize,
) -> Result<String, PatternError> {
    let mut out = String::with_capacity(value.len().min(limit));
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = matcher.find_at(value, search)? else {
            break;
        };
        out.push_str(&value[last_end..start]);
        // An empty match right after the previous match is not replaced,
        // else `x*` would replace twice around each run of x.
        if end > last_end || start == 0 {
            expand_template(&mut out, template, &value[start..end], limit)?;
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

/// Go's `Regexp.expand` for a regular expression without groups, appending
/// to `out` and stopping once `out` passes `limit` bytes: a template of many
/// `$0` can multiply the match by itself.
fn expand_template(
    out: &mut String,
    template: &str,
    matched: &str,
    limit: usize,
) -> Result<(), PatternError> {
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
        if out.len() > limit {
            return Err(PatternError::TooLong);
        }
    }
    out.push_str(rest);
    if out.len() > limit {
        return Err(PatternError::TooLong);
    }
    Ok(())
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

    /// A step budget that never runs out.
    fn unlimited() -> usize {
        usize::MAX
    }

    fn prefix(pattern: &str, value: &str, greedy: bool) -> String {
        trim_prefix(pattern, value, greedy, &mut unlimited()).unwrap()
    }

    fn suffix(pattern: &str, value: &str, greedy: bool) -> String {
        trim_suffix(pattern, value, greedy, &mut unlimited()).unwrap()
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
            assert!(
                trim_prefix(bad, "x", true, &mut unlimited()).is_err(),
                "{bad:?}"
            );
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
        let r = |v, p, t, all| replace(v, p, t, all, usize::MAX, &mut unlimited()).unwrap();
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
        let r = |v, p, t| replace(v, p, t, true, usize::MAX, &mut unlimited()).unwrap();
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
        assert_eq!(
            replace("abc", "b", "[$0]", false, usize::MAX, &mut unlimited()).unwrap(),
            "a[$0]c"
        );
    }

    /// Steps taken by `replace(value, pattern, "x", all)`.
    fn replace_steps(value: &str, pattern: &str) -> usize {
        let mut steps = unlimited();
        replace(value, pattern, "x", true, usize::MAX, &mut steps).unwrap();
        unlimited() - steps
    }

    #[test]
    fn matching_work_is_counted() {
        let value = "ab".repeat(500);
        // One thread per character, plus the character: linear.
        assert_eq!(replace_steps(&value, "c"), 2 * 1001);
        // A run of stars costs what one star costs.
        let many = format!("a{}c", "*".repeat(10_000));
        assert_eq!(replace_steps(&value, &many), replace_steps(&value, "a*c"));
        assert!(replace_steps(&value, "a*c") <= 4 * 1001);
        // Threads never outnumber twice the characters read: `?*` pairs
        // beyond the value's length cost nothing more.
        let long = format!("{}c", "?*".repeat(100_000));
        let short = format!("{}c", "?*".repeat(1_000));
        assert_eq!(replace_steps(&value, &long), replace_steps(&value, &short));
        // Running out stops the search.
        let mut steps = 100;
        assert_eq!(
            replace(&value, "c", "x", true, usize::MAX, &mut steps),
            Err(PatternError::TooManySteps)
        );
        assert_eq!(
            trim_prefix("*c", &value, true, &mut steps),
            Err(PatternError::TooManySteps)
        );
    }

    #[test]
    fn replace_stops_at_the_size_limit() {
        let mut steps = unlimited();
        assert_eq!(
            replace("aaaa", "", "xy", true, 14, &mut steps).as_deref(),
            Ok("xyaxyaxyaxyaxy")
        );
        assert_eq!(
            replace("aaaa", "", "xy", true, 13, &mut steps),
            Err(PatternError::TooLong)
        );
        assert_eq!(
            replace("aaaa", "a", "$0$0$0", true, 11, &mut steps),
            Err(PatternError::TooLong)
        );
        assert_eq!(
            replace("aaaa", "a", "xyz", false, 5, &mut steps),
            Err(PatternError::TooLong)
        );
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
