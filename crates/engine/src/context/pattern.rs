//! Docker's path patterns, as moby/patternmatcher implements them.
//!
//! One matcher serves `.dockerignore` and, later, `COPY --exclude`: BuildKit
//! hands both to the same `patternmatcher.New`. A [`Pattern`] is one cleaned
//! pattern, possibly an exception (`!`); a [`PatternSet`] applies a list of
//! them in order, the last matching pattern winning. Paths given to the
//! matcher use `/`, are relative to the root the patterns apply to and carry
//! no leading `/`. Nothing here touches the file system, and nothing panics on
//! any input.
//!
//! Docker documents Go's `filepath.Match` syntax, but what it runs is a
//! translation of each pattern into a Go regular expression (plus three fast
//! paths for literal, `prefix**` and `**suffix` patterns). Where the two agree
//! hoist follows them; where the translation gives a pattern a meaning that
//! `filepath.Match` does not (a `\d` escape becomes "any digit", `*` inside
//! `[...]` is mangled), or makes it fail only once matching starts
//! (`[z-a]`), hoist rejects the pattern when it is parsed and says how to
//! write it. So a pattern hoist accepts selects exactly the paths Docker
//! selects, and one it refuses would have surprised the user under Docker
//! too. The one regular-expression accident simple enough to reproduce is
//! kept: an unescaped `^` outside a class is a start-of-path anchor in
//! patterns Docker runs as regular expressions (`^*.log` acts like `*.log`,
//! `a^b*` matches nothing), and a plain character in the others (`a^b`).
//!
//! There is no regex crate behind this: Docker's expressions use a handful of
//! constructs, and a small automaton over them reproduces Go's semantics
//! exactly (`.` in `**` does not match `\n`, a negated class does), runs in
//! time linear in the path, and cannot be handed a construct Go would read
//! differently.

use std::fmt;

/// Why a pattern cannot be used. Each message says how to fix the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `!` alone (also `!/`, which cleans to `!`); Docker refuses it too.
    #[error(
        "`!` on its own names nothing to re-include; write a path after it, as in `!README.md`"
    )]
    LoneExclamation,
    /// A `\` with nothing after it (`filepath.Match` syntax error).
    #[error("the pattern ends with a lone `\\`; write `\\\\` to match a backslash")]
    TrailingBackslash,
    /// `[` without a closing `]`, an empty class, or a class that starts a
    /// range with `-` or `]` (`filepath.Match` syntax errors).
    #[error(
        "the character class starting at `{0}` is not valid; close it with `]`, \
         put no `-` or `]` at the start or end of it, or escape the `[` as `\\[`"
    )]
    BadClass(String),
    /// `[z-a]`: `filepath.Match` accepts it, Docker's regular expression does
    /// not compile, and the build fails when the pattern is first used.
    #[error("the character range `{lo}-{hi}` runs backwards; write it as `{hi}-{lo}`")]
    ReversedRange { lo: char, hi: char },
    /// `\d`, `\w`, `\b`, `\é`...: a regular-expression escape (or an error)
    /// in Docker, a plain letter for `filepath.Match`.
    #[error(
        "Docker reads `\\{0}` as a regular-expression escape, not as the character `{0}`; \
         write `{0}` without the backslash"
    )]
    LetterEscape(char),
    /// An unescaped `*` or `?` inside `[...]`: Docker's translation replaces
    /// it with a regular expression of its own and breaks the class.
    #[error(
        "an unescaped `{0}` inside `[...]` breaks Docker's translation of the class; escape it as `\\{0}`"
    )]
    WildcardInClass(char),
    /// `[:` inside a class: a POSIX class such as `[:alpha:]` for Docker's
    /// regular expressions, plain characters for `filepath.Match`.
    #[error(
        "Docker reads `[:` inside `[...]` as the start of a POSIX class like `[:alpha:]`; escape the inner `[` as `\\[`"
    )]
    PosixClass,
    /// A leading U+FEFF: Go's text scanner drops it while Docker's fast paths
    /// keep it, so the pattern means different things in different places.
    #[error("the pattern starts with an invisible byte-order mark (U+FEFF); delete it")]
    ByteOrderMark,
}

/// A pattern from a list given to [`PatternSet::new`] that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern `{pattern}` (number {} in the list)", index + 1)]
pub struct InvalidPattern {
    /// Zero-based position of the pattern in the list.
    pub index: usize,
    /// The pattern as given.
    pub pattern: String,
    #[source]
    pub source: PatternError,
}

/// One cleaned pattern, as `patternmatcher.New` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Cleaned text without the leading `!`; also the key for caches.
    text: String,
    exception: bool,
    kind: Kind,
}

/// How Docker evaluates a pattern. Three fast paths bypass the regular
/// expression and have semantics of their own (see [`Pattern::matches_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard, class or escape: the path must equal the text.
    Exact,
    /// A literal followed by a final `**`: the path must start with the
    /// literal (`dir/**` -> starts with `dir/`).
    Prefix(String),
    /// A first `**` followed by a literal: the path must end with the literal,
    /// or equal it without its leading `/`. So `**file` matches `myfile`,
    /// unlike its regular expression `^(.*/)?file$`.
    Suffix(String),
    /// Everything else, as the tokens of Docker's regular expression.
    Glob(Vec<Token>),
}

/// A piece of Docker's regular expression for a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: `[^/]*`.
    Star,
    /// `?`: `[^/]`.
    AnyChar,
    /// `[...]`, passed to the regular expression as written.
    Class(Class),
    /// An unescaped `^` outside a class: Go's `^`, which matches nothing and
    /// only succeeds at the start of the path.
    Start,
    /// `**` (and `**/`) before more pattern: `(.*/)?`, any number of whole
    /// directories, including none. `.` does not match `\n` in Go.
    AnyDirs,
    /// `**` at the end after a wildcard: `.*`, no `\n` either.
    AnyRest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    /// `[^...]`. Go has no `[!...]`: there `!` is an ordinary member.
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        // A negated class matches `/` and `\n` too: Go's regular expressions
        // and `filepath.Match` agree on that.
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

impl Pattern {
    /// Parses one pattern the way `patternmatcher.New` does: whitespace is
    /// trimmed, the text is cleaned like Go's `filepath.Clean` (`./a//b/` ->
    /// `a/b`), and a leading `!` makes it an exception. Returns `None` for a
    /// blank pattern, which Docker skips.
    ///
    /// A leading `/` is kept: `.dockerignore` drops it before this step (see
    /// the `dockerignore` module), `patternmatcher.New` alone does not.
    pub fn parse(raw: &str) -> Result<Option<Pattern>, PatternError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        // Docker cleans before it looks for `!`, so `!/` becomes `!` and
        // `!./a` stays an exception for `./a`... which then never matches.
        let cleaned = clean(trimmed);
        let (exception, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(PatternError::LoneExclamation),
            Some(rest) => (true, rest.to_owned()),
            None => (false, cleaned),
        };
        let kind = compile(&text)?;
        Ok(Some(Pattern {
            text,
            exception,
            kind,
        }))
    }

    /// The cleaned pattern without its `!`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is an exception (`!pattern`), which re-includes what it
    /// matches.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// Whether the pattern matches `path` itself, ignoring its parents
    /// (`patternmatcher`'s `MatchesExact` for one pattern).
    pub fn matches_path(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Glob(tokens) => glob_matches(tokens, path),
        }
    }

    /// Whether the pattern could match some path strictly below `dir`
    /// (that is, `dir/` followed by at least one character). Never answers
    /// `false` when such a path exists; may answer `true` when none does.
    pub fn may_match_below(&self, dir: &str) -> bool {
        let mut below = String::with_capacity(dir.len() + 1);
        below.push_str(dir);
        below.push('/');
        match &self.kind {
            Kind::Exact => self.text.len() > below.len() && self.text.starts_with(&below),
            Kind::Prefix(prefix) => {
                below.starts_with(prefix.as_str()) || prefix.starts_with(below.as_str())
            }
            // `dir/x` followed by the suffix always ends with it.
            Kind::Suffix(_) => true,
            Kind::Glob(tokens) => {
                let mut run = Nfa::new(tokens);
                for c in below.chars() {
                    run.step(tokens, c);
                }
                // Any live state short of the end can still consume more
                // characters; the end alone would need `below` to be the
                // whole path.
                run.live_before_end()
            }
        }
    }
}

impl fmt::Display for Pattern {
    /// The pattern as Docker would list it: `!` for exceptions, then the
    /// cleaned text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exception {
            f.write_str("!")?;
        }
        f.write_str(&self.text)
    }
}

/// Per-pattern results for one directory, handed down to its entries while
/// walking a tree (`patternmatcher.MatchInfo`). The default value means "no
/// information", as for entries at the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirMatches {
    matched: Vec<bool>,
}

/// An ordered list of patterns: a path is selected (excluded, for
/// `.dockerignore` and `COPY --exclude`) when the last pattern that matches it
/// or one of its parent directories is not an exception.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

impl PatternSet {
    /// Parses a list of patterns like `patternmatcher.New`; blank ones are
    /// skipped.
    pub fn new<I, S>(patterns: I) -> Result<PatternSet, InvalidPattern>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for (index, raw) in patterns.into_iter().enumerate() {
            let raw = raw.as_ref();
            match Pattern::parse(raw) {
                Ok(Some(pattern)) => parsed.push(pattern),
                Ok(None) => {}
                Err(source) => {
                    return Err(InvalidPattern {
                        index,
                        pattern: raw.to_owned(),
                        source,
                    });
                }
            }
        }
        Ok(PatternSet { patterns: parsed })
    }

    /// A set of already parsed patterns, in order.
    pub fn from_patterns(patterns: Vec<Pattern>) -> PatternSet {
        PatternSet { patterns }
    }

    /// The patterns in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is an exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(Pattern::is_exception)
    }

    /// Whether `path` is selected, exactly as Docker decides while it walks
    /// the tree to send a build context (BuildKit's fsutil and the classic
    /// builder's tar writer both use `MatchesUsingParentResults`): each
    /// parent directory is evaluated first and its per-pattern results are
    /// handed down.
    ///
    /// This differs from [`matches_or_parent_matches`](Self::matches_or_parent_matches)
    /// in one corner: Docker skips evaluating an exception while nothing is
    /// selected yet, and a skipped exception is not remembered as matching
    /// the directory. With `**/c` then `!a`, the walk sends nothing of `a/c`
    /// (at `a`, `!a` was skipped; at `a/c` it no longer matches), while the
    /// direct check says `a/c` is re-included. What is in the build context
    /// is what the walk decides, so that is the answer here.
    pub fn matches(&self, path: &str) -> bool {
        let mut parent = DirMatches::default();
        for dir in parent_dirs(path) {
            parent = self.matches_with_parent(&dir, &parent).1;
        }
        self.matches_with_parent(path, &parent).0
    }

    /// One step of a walk: whether `path` is selected, given the results of
    /// its parent directory (`DirMatches::default()` at the root). Keep the
    /// returned [`DirMatches`] for the entries of `path` if it is a directory.
    /// A `parent` computed by another set counts as no information.
    pub fn matches_with_parent(&self, path: &str, parent: &DirMatches) -> (bool, DirMatches) {
        // Like Go, an empty `DirMatches` means "check the parents directly".
        let inherited = Some(parent.matched.as_slice())
            .filter(|m| !m.is_empty() && m.len() == self.patterns.len());
        let mut parents = None;
        let mut selected = false;
        let mut matched = vec![false; self.patterns.len()];
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = inherited.is_some_and(|m| m[i]);
            if !hit {
                // An exception cannot change an unselected path, nor an
                // ordinary pattern a selected one: Docker skips both, and so
                // must we, because a skipped pattern is recorded as not
                // matching and its children will not inherit it.
                if pattern.exception != selected {
                    continue;
                }
                hit = pattern.matches_path(path);
                if !hit && inherited.is_none() {
                    let parents = parents.get_or_insert_with(|| parent_dirs(path));
                    hit = parents.iter().any(|d| pattern.matches_path(d));
                }
            }
            matched[i] = hit;
            if hit {
                selected = !pattern.exception;
            }
        }
        (selected, DirMatches { matched })
    }

    /// Whether `path` is selected when the last pattern matching the path or
    /// any of its parents decides (`MatchesOrParentMatches`). BuildKit uses
    /// this to warn that a COPY source is excluded; see
    /// [`matches`](Self::matches) for the one case where it differs from what
    /// a walk sends.
    pub fn matches_or_parent_matches(&self, path: &str) -> bool {
        let parents = parent_dirs(path);
        let mut selected = false;
        for pattern in &self.patterns {
            if pattern.exception != selected {
                continue;
            }
            if pattern.matches_path(path) || parents.iter().any(|d| pattern.matches_path(d)) {
                selected = !pattern.exception;
            }
        }
        selected
    }

    /// Whether an exception could re-include something below `dir`. For a
    /// selected (excluded) directory, `false` means every path beneath it is
    /// selected too, so a walker may skip the directory without reading it.
    ///
    /// Docker's walkers make the same decision more coarsely: BuildKit walks
    /// every excluded directory as soon as any exception has a wildcard, and
    /// the classic builder only checks whether an exception's text starts
    /// with `dir/` (so it loses `!*/keep.txt` under an excluded `foo`).
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| p.exception && p.may_match_below(dir))
    }
}

/// The parent directories Docker checks for `path`: the prefixes of Go's
/// `filepath.Dir(path)` split at `/`, shortest first; none when that is `.`.
fn parent_dirs(path: &str) -> Vec<String> {
    let Some(last) = path.rfind('/') else {
        return Vec::new();
    };
    let dir = clean(&path[..=last]);
    if dir == "." {
        return Vec::new();
    }
    // Go joins `strings.Split(dir, "/")[:i+1]`, so `/` yields "" and "/".
    let mut prefixes: Vec<String> = dir
        .match_indices('/')
        .map(|(i, _)| dir[..i].to_owned())
        .collect();
    prefixes.push(dir);
    prefixes
}

/// Go's `filepath.Clean` for `/`-separated paths: repeated slashes, `.`
/// elements and trailing slashes go, `..` removes the element before it (at
/// the root it is dropped), and an empty result is `.`.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// Turns a cleaned pattern into Docker's evaluation, following its
/// `Pattern.compile` step by step so the fast paths kick in exactly when
/// Docker's do, and checking `filepath.Match` syntax on the way (Docker checks
/// it first with `filepath.Match(pattern, ".")`).
fn compile(text: &str) -> Result<Kind, PatternError> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    if text.starts_with('\u{feff}') {
        return Err(PatternError::ByteOrderMark);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut detected = Detected::Exact;
    let mut pos = 0;
    let mut first = true;
    while let Some(&c) = chars.get(pos) {
        pos += 1;
        match c {
            '*' if chars.get(pos) == Some(&'*') => {
                pos += 1;
                // `**/` is treated as `**`.
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        tokens.push(Token::AnyRest);
                        detected = Detected::Regexp;
                    }
                } else {
                    tokens.push(Token::AnyDirs);
                    detected = Detected::Regexp;
                }
                // Docker's check of its loop counter: a leading `**` makes
                // a suffix match unless a later wildcard turns it back.
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                detected = Detected::Regexp;
            }
            '?' => {
                tokens.push(Token::AnyChar);
                detected = Detected::Regexp;
            }
            '\\' => {
                let Some(&escaped) = chars.get(pos) else {
                    return Err(PatternError::TrailingBackslash);
                };
                pos += 1;
                check_escape(escaped)?;
                tokens.push(Token::Literal(escaped));
                detected = Detected::Regexp;
            }
            '[' => {
                let (class, next) = parse_class(&chars, pos)?;
                pos = next;
                tokens.push(Token::Class(class));
                detected = Detected::Regexp;
            }
            ']' => {
                tokens.push(Token::Literal(']'));
                detected = Detected::Regexp;
            }
            // Literal in the string fast paths, an anchor in the regexp.
            '^' => tokens.push(Token::Start),
            other => tokens.push(Token::Literal(other)),
        }
        first = false;
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        // Both fast paths cut two bytes, the `**`, from the cleaned text.
        Detected::Prefix => Kind::Prefix(text[..text.len() - 2].to_owned()),
        Detected::Suffix => Kind::Suffix(text[2..].to_owned()),
        Detected::Regexp => Kind::Glob(tokens),
    })
}

/// Docker copies `\x` into its regular expression, where only escaped ASCII
/// punctuation (and space) stays a literal character.
fn check_escape(c: char) -> Result<(), PatternError> {
    if c.is_ascii() && !c.is_ascii_alphanumeric() {
        Ok(())
    } else {
        Err(PatternError::LetterEscape(c))
    }
}

/// Parses a class after its `[` with `filepath.Match`'s grammar, plus the
/// checks that keep Docker's regular expression meaning the same thing.
/// Returns the class and the position after its `]`.
fn parse_class(chars: &[char], start: usize) -> Result<(Class, usize), PatternError> {
    let bad = || {
        PatternError::BadClass(
            std::iter::once('[')
                .chain(chars[start..].iter().copied())
                .collect(),
        )
    };
    let mut pos = start;
    let negated = chars.get(pos) == Some(&'^');
    if negated {
        pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(pos) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, pos + 1));
        }
        let lo = class_char(chars, &mut pos).ok_or_else(bad)??;
        let mut hi = lo;
        if chars.get(pos) == Some(&'-') {
            pos += 1;
            hi = class_char(chars, &mut pos).ok_or_else(bad)??;
            if lo > hi {
                return Err(PatternError::ReversedRange { lo, hi });
            }
        }
        ranges.push((lo, hi));
    }
}

/// One member of a class (Go's `getEsc`): `None` for a syntax error, an inner
/// error when Docker's translation would change its meaning.
fn class_char(chars: &[char], pos: &mut usize) -> Option<Result<char, PatternError>> {
    let mut c = *chars.get(*pos)?;
    if c == '-' || c == ']' {
        return None;
    }
    let mut escaped = false;
    if c == '\\' {
        *pos += 1;
        c = *chars.get(*pos)?;
        escaped = true;
    }
    *pos += 1;
    // Go also refuses a member that ends the pattern: the class is unclosed.
    chars.get(*pos)?;
    if escaped {
        return Some(check_escape(c).map(|()| c));
    }
    if c == '*' || c == '?' {
        return Some(Err(PatternError::WildcardInClass(c)));
    }
    // Go's parser looks for the closing `:]` anywhere after the `[:`.
    if c == '[' && chars.get(*pos) == Some(&':') {
        let rest: String = chars[*pos + 1..].iter().collect();
        if rest.contains(":]") {
            return Some(Err(PatternError::PosixClass));
        }
    }
    Some(Ok(c))
}

/// Go's `filepath.Match(pattern, name)` on `/`-separated paths, as COPY
/// and ADD use it for wildcard sources: `*` and `?` never match `/`, `**`
/// is just two stars, `\\x` is a literal `x`, classes as in `.dockerignore`.
pub fn filepath_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while let Some(&c) = chars.get(pos) {
        pos += 1;
        match c {
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::AnyChar),
            '\\' => {
                let Some(&escaped) = chars.get(pos) else {
                    return Err(PatternError::TrailingBackslash);
                };
                pos += 1;
                tokens.push(Token::Literal(escaped));
            }
            '[' => {
                let (class, next) = parse_class(&chars, pos)?;
                pos = next;
                tokens.push(Token::Class(class));
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    Ok(glob_matches(&tokens, name))
}

/// Runs Docker's regular expression `^tokens$` over `text`.
fn glob_matches(tokens: &[Token], text: &str) -> bool {
    let mut run = Nfa::new(tokens);
    for c in text.chars() {
        if !run.step(tokens, c) {
            return false;
        }
    }
    run.at[tokens.len()]
}

/// A set of positions in the token list, advanced one character at a time:
/// linear in the text for any pattern, where backtracking over several `*`
/// could take exponential time.
struct Nfa {
    /// `at[i]`: the tokens before `i` have matched the text so far.
    at: Vec<bool>,
    /// `inside[i]`: inside the `.*` of the `AnyDirs` token `i`, before its `/`.
    inside: Vec<bool>,
    /// Buffers for the next step, kept to avoid allocating per character.
    next_at: Vec<bool>,
    next_inside: Vec<bool>,
}

impl Nfa {
    fn new(tokens: &[Token]) -> Nfa {
        let mut nfa = Nfa {
            at: vec![false; tokens.len() + 1],
            inside: vec![false; tokens.len()],
            next_at: vec![false; tokens.len() + 1],
            next_inside: vec![false; tokens.len()],
        };
        nfa.at[0] = true;
        nfa.close(tokens, true);
        nfa
    }

    /// Follows the tokens that may match nothing; `^` only does so before
    /// the first character.
    fn close(&mut self, tokens: &[Token], at_start: bool) {
        for (i, token) in tokens.iter().enumerate() {
            let empty = match token {
                Token::Star | Token::AnyDirs | Token::AnyRest => true,
                Token::Start => at_start,
                Token::Literal(_) | Token::AnyChar | Token::Class(_) => false,
            };
            if self.at[i] && empty {
                self.at[i + 1] = true;
            }
        }
    }

    /// Consumes `c`; returns whether any state is still alive.
    fn step(&mut self, tokens: &[Token], c: char) -> bool {
        let (at, inside) = (&mut self.next_at, &mut self.next_inside);
        at.fill(false);
        inside.fill(false);
        for (i, token) in tokens.iter().enumerate() {
            if self.at[i] {
                match token {
                    Token::Literal(l) => at[i + 1] |= *l == c,
                    Token::AnyChar => at[i + 1] |= c != '/',
                    Token::Class(class) => at[i + 1] |= class.contains(c),
                    Token::Star => at[i] |= c != '/',
                    Token::AnyRest => at[i] |= c != '\n',
                    Token::AnyDirs => {
                        inside[i] |= c != '\n';
                        at[i + 1] |= c == '/';
                    }
                    Token::Start => {}
                }
            }
            if self.inside[i] {
                inside[i] |= c != '\n';
                at[i + 1] |= c == '/';
            }
        }
        std::mem::swap(&mut self.at, &mut self.next_at);
        std::mem::swap(&mut self.inside, &mut self.next_inside);
        self.close(tokens, false);
        self.at.iter().chain(&self.inside).any(|&live| live)
    }

    fn live_before_end(&self) -> bool {
        let before_end = &self.at[..self.at.len() - 1];
        before_end.iter().chain(&self.inside).any(|&live| live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a single pattern does to a path in Docker's own test table.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Want {
        /// The pattern matches the path itself.
        Exact,
        /// Only a parent directory of the path matches.
        Parent,
        No,
    }
    use Want::{Exact, No, Parent};

    /// moby/patternmatcher's `TestMatches` table (POSIX cases), then cases
    /// that follow from Docker's translation and that hoist pins down.
    const MATCHES: &[(&str, &str, Want)] = &[
        ("**", "file", Exact),
        ("**", "file/", Exact),
        ("**/", "file", Exact),
        ("**/", "file/", Exact),
        ("**", "/", Exact),
        ("**/", "/", Exact),
        ("**", "dir/file", Exact),
        ("**/", "dir/file", Exact),
        ("**", "dir/file/", Exact),
        ("**/", "dir/file/", Exact),
        ("**/**", "dir/file", Exact),
        ("**/**", "dir/file/", Exact),
        ("dir/**", "dir/file", Exact),
        ("dir/**", "dir/file/", Exact),
        ("dir/**", "dir/dir2/file", Exact),
        ("dir/**", "dir/dir2/file/", Exact),
        ("**/dir", "dir", Exact),
        ("**/dir", "dir/file", Parent),
        ("**/dir2/*", "dir/dir2/file", Exact),
        ("**/dir2/*", "dir/dir2/file/", Parent),
        ("**/dir2/**", "dir/dir2/dir3/file", Exact),
        ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
        ("**file", "file", Exact),
        ("**file", "dir/file", Exact),
        ("**/file", "dir/file", Exact),
        ("**file", "dir/dir/file", Exact),
        ("**/file", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file.txt", Exact),
        ("**/file*txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt*", "dir/dir/file.txt", Exact),
        ("**/**/*.txt", "dir/dir/file.txt", Exact),
        ("**/**/*.txt2", "dir/dir/file.txt", No),
        ("**/*.txt", "file.txt", Exact),
        ("**/**/*.txt", "file.txt", Exact),
        ("a**/*.txt", "a/file.txt", Exact),
        ("a**/*.txt", "a/dir/file.txt", Exact),
        ("a**/*.txt", "a/dir/dir/file.txt", Exact),
        ("a/*.txt", "a/dir/file.txt", No),
        ("a/*.txt", "a/file.txt", Exact),
        ("a/*.txt**", "a/file.txt", Exact),
        ("a[b-d]e", "ae", No),
        ("a[b-d]e", "ace", Exact),
        ("a[b-d]e", "aae", No),
        ("a[^b-d]e", "aze", Exact),
        (".*", ".foo", Exact),
        (".*", "foo", No),
        ("abc.def", "abcdef", No),
        ("abc.def", "abc.def", Exact),
        ("abc.def", "abcZdef", No),
        ("abc?def", "abcZdef", Exact),
        ("abc?def", "abcdef", No),
        ("**/foo/bar", "foo/bar", Exact),
        ("**/foo/bar", "dir/foo/bar", Exact),
        ("**/foo/bar", "dir/dir2/foo/bar", Exact),
        ("abc/**", "abc", No),
        ("abc/**", "abc/def", Exact),
        ("abc/**", "abc/def/ghi", Exact),
        ("**/.foo", ".foo", Exact),
        ("**/.foo", "bar.foo", No),
        ("a(b)c/def", "a(b)c/def", Exact),
        ("a(b)c/def", "a(b)c/xyz", No),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        ("a\\\\", "a\\", Exact),
        ("a\\*b", "a*b", Exact),
        // hoist's own cases, each following from Docker's translation.
        // `**` inside a segment is `(.*/)?`: whole directories or nothing.
        ("a**b", "ab", Exact),
        ("a**b", "a/b", Exact),
        ("a**b", "ax/b", Exact),
        ("a**b", "a/x/y/b", Exact),
        ("a**b", "axb", No),
        // A leading `**` with a literal tail is a plain suffix test.
        ("**file", "dir/myfile", Exact),
        ("**.go", "cmd/main.go", Exact),
        ("a/**/b", "a/b", Exact),
        ("a/**/b", "a/x/y/b", Exact),
        ("a/**/b", "a/x/b/c", Parent),
        ("a/**/b", "a/xb", No),
        // No implicit `**/` as in gitignore: `foo` is anchored at the root.
        ("foo", "foo", Exact),
        ("foo", "foo/bar/baz", Parent),
        ("foo", "src/foo", No),
        ("foo", "foobar", No),
        ("*.go", "main.go", Exact),
        ("*.go", "cmd/main.go", No),
        ("*", "a/b/c", Parent),
        // Go classes negate with `^` only; `!` is a member.
        ("[!a]b", "!b", Exact),
        ("[!a]b", "cb", No),
        ("[!a]b", "ab", Exact),
        ("[^a]b", "cb", Exact),
        ("[^a]b", "ab", No),
        ("[\\]a]", "]", Exact),
        ("[a-ζ]*", "α", Exact),
        ("[[a]", "[", Exact),
        // Escapes of punctuation are literal.
        ("\\*", "*", Exact),
        ("\\*", "x", No),
        ("a\\?", "a?", Exact),
        ("a\\?", "ab", No),
        ("\\[x]", "[x]", Exact),
        ("a\\^b*", "a^bc", Exact),
        ("\\#note", "#note", Exact),
        ("\\!keep", "!keep", Exact),
        // `^` is literal where Docker compares strings instead of running
        // its regular expression, and an anchor where it runs it.
        ("a^b", "a^b", Exact),
        ("**/a^b", "x/a^b", Exact),
        ("a^b*", "a^bc", No),
        ("a^b*", "abc", No),
        ("^*.log", "x.log", Exact),
        ("^*.log", "^x.log", Exact),
        ("*^.log", "x.log", No),
        ("*^.log", ".log", Exact),
        ("**/^x*", "x1", Exact),
        ("**/^x*", "d/x1", No),
        // `?` and classes match a newline, `.*` does not (Go's `.`); the
        // string fast paths do not care.
        ("a?b", "a\nb", Exact),
        ("*", "a\nb", Exact),
        ("**/*.txt", "a\nb/c.txt", No),
        ("dir/**", "dir/a\nb", Exact),
        ("a/**/*.txt", "a/x\ny/c.txt", No),
        // Cleaning.
        ("./foo", "foo", Exact),
        ("foo/", "foo", Exact),
        ("foo//bar", "foo/bar", Exact),
        ("a/../b", "b", Exact),
        ("a/../b", "a/b", No),
    ];

    #[test]
    fn docker_matcher_table() {
        let mut failures = Vec::new();
        for &(raw, path, want) in MATCHES {
            let set = match PatternSet::new([raw]) {
                Ok(set) => set,
                Err(err) => {
                    failures.push(format!("{raw:?}: {err}"));
                    continue;
                }
            };
            let hit = want != No;
            let direct = set.patterns()[0].matches_path(path);
            let checks = [
                ("matches_path", direct, want == Exact),
                ("matches", set.matches(path), hit),
                (
                    "matches_or_parent_matches",
                    set.matches_or_parent_matches(path),
                    hit,
                ),
                (
                    "matches_with_parent(no context)",
                    set.matches_with_parent(path, &DirMatches::default()).0,
                    hit,
                ),
            ];
            for (how, got, expected) in checks {
                if got != expected {
                    failures.push(format!("{raw:?} on {path:?}: {how} gave {got}"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    /// moby/patternmatcher's multi-pattern cases, then hoist's.
    const SETS: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (&["*.go", "!fileutils.go"], "fileutils.go", false),
        (&["!fileutils.go", "*.go"], "fileutils.go", true),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs", "!docs/README.md"], "docs/other.md", true),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (
            &["*.md", "!README*.md", "README-secret.md"],
            "README.md",
            false,
        ),
        (
            &["*.md", "!README*.md", "README-secret.md"],
            "README-secret.md",
            true,
        ),
        (&["foo", "!*/keep.txt"], "foo/keep.txt", false),
        (&["foo", "!*/keep.txt"], "foo/sub/keep.txt", true),
        (&[], "anything", false),
    ];

    #[test]
    fn last_matching_pattern_wins() {
        let mut failures = Vec::new();
        for &(patterns, path, want) in SETS {
            let set = PatternSet::new(patterns).expect("valid patterns");
            for (how, got) in [
                ("matches", set.matches(path)),
                ("or-parent", set.matches_or_parent_matches(path)),
            ] {
                if got != want {
                    failures.push(format!("{patterns:?} on {path:?}: {how} gave {got}"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn walk_and_direct_check_differ_like_docker() {
        // At `a` nothing is excluded yet, so Docker skips `!a` and records
        // it as not matching; at `a/c` it no longer matches.
        let set = PatternSet::new(["**/c", "!a"]).unwrap();
        assert!(set.matches("a/c"));
        assert!(!set.matches_or_parent_matches("a/c"));

        let (a_excluded, a) = set.matches_with_parent("a", &DirMatches::default());
        assert!(!a_excluded);
        assert!(set.matches_with_parent("a/c", &a).0);
    }

    #[test]
    fn walking_step_by_step_agrees_with_matches() {
        let set = PatternSet::new(["docs", "!docs/keep", "*.log", "!**/important.log"]).unwrap();
        let (docs_excluded, docs) = set.matches_with_parent("docs", &DirMatches::default());
        assert!(docs_excluded);
        let (keep_excluded, keep) = set.matches_with_parent("docs/keep", &docs);
        assert!(!keep_excluded);
        assert!(!set.matches_with_parent("docs/keep/file", &keep).0);
        assert!(set.matches_with_parent("docs/other", &docs).0);
        // Results of another set count as no information, not as a panic.
        let other = PatternSet::new(["x"]).unwrap();
        let (_, foreign) = other.matches_with_parent("docs", &DirMatches::default());
        assert!(set.matches_with_parent("docs/other", &foreign).0);
        assert!(set.matches("a.log"));
        assert!(!set.matches("important.log"));
    }

    /// Go's `filepath.Match` table as moby/patternmatcher runs it through
    /// `Matches`: `None` where the pattern must be refused.
    const GO_MATCH: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
    ];

    #[test]
    fn go_filepath_match_table() {
        let mut failures = Vec::new();
        for &(raw, path, want) in GO_MATCH {
            let got = PatternSet::new([raw])
                .ok()
                .map(|set| set.matches_or_parent_matches(path));
            if got != want {
                failures.push(format!("{raw:?} on {path:?}: got {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn fast_paths_are_chosen_like_docker() {
        // moby/patternmatcher's `TestCompile` table.
        let cases: &[(&str, &str)] = &[
            ("*", "glob"),
            ("file*", "glob"),
            ("*file", "glob"),
            ("a*/b", "glob"),
            ("**", "suffix"),
            ("**/**", "glob"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "glob"),
            ("**/dir2/**", "glob"),
            ("**file", "suffix"),
            ("**/file*txt", "glob"),
            ("**/**/*.txt", "glob"),
            ("a[b-d]e", "glob"),
            (".*", "glob"),
            ("abc.def", "exact"),
            ("abc?def", "glob"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
            ("a]b", "glob"),
            ("a\\.b", "glob"),
        ];
        for &(raw, want) in cases {
            let pattern = Pattern::parse(raw).unwrap().unwrap();
            let got = match pattern.kind {
                Kind::Exact => "exact",
                Kind::Prefix(_) => "prefix",
                Kind::Suffix(_) => "suffix",
                Kind::Glob(_) => "glob",
            };
            assert_eq!(got, want, "{raw:?}");
        }
    }

    #[test]
    fn patterns_docker_would_misread_are_refused() {
        use PatternError as E;
        let cases: &[(&str, PatternError)] = &[
            ("!", E::LoneExclamation),
            ("!/", E::LoneExclamation),
            ("foo\\", E::TrailingBackslash),
            ("a[", E::BadClass("[".into())),
            ("[z-a]", E::ReversedRange { lo: 'z', hi: 'a' }),
            ("[Local-Only]", E::ReversedRange { lo: 'l', hi: 'O' }),
            ("\\d", E::LetterEscape('d')),
            ("a\\b*", E::LetterEscape('b')),
            ("[\\w]", E::LetterEscape('w')),
            ("\\é", E::LetterEscape('é')),
            ("[*]", E::WildcardInClass('*')),
            ("[a?]", E::WildcardInClass('?')),
            ("[[:alpha:]]", E::PosixClass),
            ("\u{feff}foo", E::ByteOrderMark),
        ];
        for (raw, want) in cases {
            assert_eq!(Pattern::parse(raw).as_ref(), Err(want), "{raw:?}");
        }
        // `[:` without a later `:]` is two plain members, as in Go.
        let plain = Pattern::parse("[[:]x").unwrap().unwrap();
        assert!(plain.matches_path(":x") && plain.matches_path("[x"));
    }

    #[test]
    fn invalid_pattern_names_its_place_in_the_list() {
        let err = PatternSet::new(["ok", "", "[z-a]"]).unwrap_err();
        assert_eq!(err.index, 2);
        assert_eq!(err.pattern, "[z-a]");
        assert_eq!(
            err.to_string(),
            "invalid pattern `[z-a]` (number 3 in the list)"
        );
        assert_eq!(
            err.source.to_string(),
            "the character range `z-a` runs backwards; write it as `a-z`"
        );
    }

    #[test]
    fn blank_patterns_are_skipped_and_exceptions_flagged() {
        let set = PatternSet::new(["docs", "  ", "  !docs/README.md  "]).unwrap();
        let shown: Vec<String> = set.patterns().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["docs", "!docs/README.md"]);
        assert!(set.has_exceptions());
        assert!(!PatternSet::new(["docs"]).unwrap().has_exceptions());
        assert_eq!(set.patterns()[1].as_str(), "docs/README.md");
    }

    #[test]
    fn clean_follows_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("./foo", "foo"),
            ("foo/", "foo"),
            ("foo//bar", "foo/bar"),
            ("a/./b/../c", "a/c"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("//", "/"),
            ("!/", "!"),
            ("foo/ /", "foo/ "),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn parent_dirs_follow_go() {
        assert!(parent_dirs("file").is_empty());
        assert_eq!(parent_dirs("a/b/c"), ["a", "a/b"]);
        assert_eq!(parent_dirs("dir/file/"), ["dir", "dir/file"]);
        assert_eq!(parent_dirs("/"), ["", "/"]);
    }

    #[test]
    fn reinclusion_below_a_directory() {
        let set = |patterns: &[&str]| PatternSet::new(patterns).unwrap();
        let none = set(&["foo"]);
        assert!(!none.may_reinclude_under("foo"));

        let literal = set(&["foo", "!foo/keep.txt"]);
        assert!(literal.may_reinclude_under("foo"));
        assert!(!literal.may_reinclude_under("foo/sub"));
        assert!(!literal.may_reinclude_under("bar"));
        // `!foo` re-includes `foo` itself, nothing strictly below it.
        assert!(!set(&["foo", "!foo"]).may_reinclude_under("foo"));

        let glob = set(&["foo", "!*/keep.txt"]);
        assert!(glob.may_reinclude_under("foo"));
        assert!(!glob.may_reinclude_under("foo/sub"));

        let deep = set(&["node_modules", "!node_modules/pkg/**/*.js"]);
        assert!(deep.may_reinclude_under("node_modules"));
        assert!(deep.may_reinclude_under("node_modules/pkg/lib"));
        assert!(!deep.may_reinclude_under("node_modules/other"));

        let prefix = set(&["foo", "!foo/**"]);
        assert!(prefix.may_reinclude_under("foo"));
        assert!(prefix.may_reinclude_under("foo/a"));
        assert!(!prefix.may_reinclude_under("bar"));

        assert!(set(&["*", "!**/keep"]).may_reinclude_under("anything/at/all"));
    }

    /// A tiny deterministic generator (xorshift64*), enough to spread inputs
    /// over the interesting characters without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn string(&mut self, alphabet: &[&str], max_len: usize) -> String {
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }

        /// A pattern built from whole segments, more often meaningful for
        /// the paths `clean_path` makes than a string of random characters.
        fn segment_pattern(&mut self) -> String {
            const SEGMENTS: &[&str] = &["a", "b", "*", "**", "a*", "?", "[ab]", "[^a]", "*b", "é"];
            let depth = 1 + self.below(3);
            let body: Vec<&str> = (0..depth)
                .map(|_| SEGMENTS[self.below(SEGMENTS.len())])
                .collect();
            let bang = if self.below(2) == 0 { "!" } else { "" };
            format!("{bang}{}", body.join("/"))
        }

        /// A clean relative path, as a walker produces: no empty, `.` or
        /// `..` components.
        fn clean_path(&mut self, alphabet: &[&str], depth: usize) -> String {
            let segments: Vec<String> = (0..depth)
                .map(|_| {
                    let segment = self.string(alphabet, 3);
                    match segment.as_str() {
                        "" | "." | ".." => "x".to_owned(),
                        _ => segment,
                    }
                })
                .collect();
            segments.join("/")
        }
    }

    const PATTERN_ALPHABET: &[&str] = &[
        "a", "b", "/", "*", "**", "?", "[", "]", "^", "!", "\\", "-", ".", "..", " ", "é", "\n",
        ":", "(", "$", "#",
    ];
    const SEGMENT_ALPHABET: &[&str] = &["a", "b", ".", "é", "\n", "*", "[", "^", "!", "-"];
    const PATH_ALPHABET: &[&str] = &["a", "b", "/", ".", "é", "\n", "*", "[", "^", "!", "-"];

    /// Docker's regular expression evaluated by plain backtracking: slow but
    /// obviously right, to check the automaton against.
    fn reference(tokens: &[Token], text: &[char], at_start: bool) -> bool {
        let Some((token, rest)) = tokens.split_first() else {
            return text.is_empty();
        };
        // Goes on with the rest of the tokens after `k` characters.
        let after = |k: usize| reference(rest, &text[k..], at_start && k == 0);
        match token {
            Token::Literal(l) => text.first() == Some(l) && after(1),
            Token::AnyChar => text.first().is_some_and(|&c| c != '/') && after(1),
            Token::Class(class) => text.first().is_some_and(|&c| class.contains(c)) && after(1),
            Token::Start => at_start && after(0),
            Token::Star => (0..=text.len())
                .take_while(|&k| k == 0 || text[k - 1] != '/')
                .any(after),
            Token::AnyRest => (0..=text.len())
                .take_while(|&k| k == 0 || text[k - 1] != '\n')
                .any(after),
            Token::AnyDirs => {
                after(0)
                    || (0..text.len())
                        .take_while(|&k| k == 0 || text[k - 1] != '\n')
                        .any(|k| text[k] == '/' && after(k + 1))
            }
        }
    }

    #[test]
    fn never_panics_and_keeps_its_invariants() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut parsed, mut globs, mut skips_with_exceptions) = (0, 0, 0);
        for _ in 0..20_000 {
            let structured = rng.below(2) == 0;
            let raw: Vec<String> = (0..1 + rng.below(4))
                .map(|_| {
                    if structured {
                        rng.segment_pattern()
                    } else {
                        rng.string(PATTERN_ALPHABET, 8)
                    }
                })
                .collect();
            let path = rng.string(PATH_ALPHABET, 10);
            let Ok(set) = PatternSet::new(&raw) else {
                continue;
            };
            parsed += 1;

            for pattern in set.patterns() {
                if let Kind::Glob(tokens) = &pattern.kind {
                    globs += 1;
                    let chars: Vec<char> = path.chars().collect();
                    assert_eq!(
                        glob_matches(tokens, &path),
                        reference(tokens, &chars, true),
                        "{pattern} on {path:?}"
                    );
                }
            }

            let walked = set.matches(&path);
            let direct = set.matches_or_parent_matches(&path);
            if !set.has_exceptions() {
                assert_eq!(walked, direct, "{raw:?} on {path:?}");
            }

            // Skipping a directory must never lose a re-included path.
            let segments = if structured {
                &["a", "b", "é"][..]
            } else {
                SEGMENT_ALPHABET
            };
            let depth = 1 + rng.below(2);
            let dir = rng.clean_path(segments, depth);
            if set.matches(&dir) && !set.may_reinclude_under(&dir) {
                skips_with_exceptions += usize::from(set.has_exceptions());
                for _ in 0..4 {
                    let depth = 1 + rng.below(3);
                    let child = format!("{dir}/{}", rng.clean_path(segments, depth));
                    assert!(
                        set.matches(&child),
                        "{raw:?}: {dir:?} skipped but {child:?} kept"
                    );
                }
            }
        }
        // The generator must exercise real patterns, not only errors.
        assert!(parsed > 10_000, "only {parsed} pattern lists parsed");
        assert!(globs > 2_000, "only {globs} glob patterns checked");
        assert!(
            skips_with_exceptions > 500,
            "only {skips_with_exceptions} skips next to exceptions"
        );
    }
}
