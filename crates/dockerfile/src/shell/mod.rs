//! Shell-word expansion with BuildKit's rules, for ENV, ARG, FROM, COPY,
//! WORKDIR and the other instructions that expand variables.
//!
//! [`Lexer`] takes one word of Dockerfile text and a set of variables
//! ([`Vars`]) and returns the word with quotes removed, escapes applied and
//! `$VAR` / `${VAR...}` expanded: as one string ([`Lexer::process_word`]), as
//! a list of words split on unquoted white space ([`Lexer::process_words`]),
//! or with the sets of variable names it found and did not find
//! ([`Lexer::process_word_with_matches`], for `hoist check`).
//!
//! It follows BuildKit's `frontend/dockerfile/shell/lex.go` exactly, quirks
//! included, so that hoist never reads a word differently from `docker
//! build`; the comments say where BuildKit's rule is surprising. It never runs
//! a command (no `$(...)`, no backquotes), never reads the process
//! environment and never panics on any input.
//!
//! Nor does it hang on any input, and there it deliberately differs from
//! BuildKit, which has no limits: one word may nest at most [`MAX_NESTING`]
//! levels deep, copy out at most [`MAX_EXPANSION`] bytes of variable values
//! and spend at most [`MAX_MATCH_STEPS`] on patterns. Past a limit the word
//! is an error; no real Dockerfile comes near any of them.
//!
//! ```
//! use std::collections::BTreeMap;
//! use hoist_dockerfile::shell::Lexer;
//!
//! let vars = BTreeMap::from([("VERSION".to_owned(), "1.2".to_owned())]);
//! let lexer = Lexer::new('\\');
//! assert_eq!(lexer.process_word("app-${VERSION:-dev}.tar", &vars)?, "app-1.2.tar");
//! assert_eq!(lexer.process_words("a \"b c\" $VERSION", &vars)?, ["a", "b c", "1.2"]);
//! let found = lexer.process_word_with_matches("$VERSION$ARCH", &vars)?;
//! assert!(found.unmatched.contains("ARCH"));
//! # Ok::<(), hoist_dockerfile::shell::ShellError>(())
//! ```

mod pattern;
mod unicode;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use self::unicode::{is_digit, is_letter, is_space};

/// How deeply `${VAR<op>...}` operands may nest in one word (the word itself
/// counts as one level).
///
/// BuildKit has no limit (Go stacks grow); a limit keeps a hostile word from
/// overflowing the thread's stack. No real Dockerfile comes near it.
pub const MAX_NESTING: usize = 100;

/// How many bytes of variable values one word may produce: every `$VAR` and
/// `${VAR...}` value counts, also inside operands whose text ends up unused,
/// and so does every `#`, `%` and `/` result.
///
/// BuildKit has no limit, but without one a few dozen bytes can ask for
/// gigabytes: each nested `${A//x/...}` multiplies the size of what is
/// inside it by the length of A (`${A///${A///${A///x}}}` with a 9-byte A
/// is 2,000 bytes; seven levels are 20 MB). No real word comes near 1 MiB:
/// Linux refuses any single argument or environment entry over 128 KiB
/// (`MAX_ARG_STRLEN`), so such a word could not even reach a command.
pub const MAX_EXPANSION: usize = 1 << 20;

/// How many steps the pattern matcher may take for one word's `#`, `%` and
/// `/` patterns together; a step is one matcher thread reading one character.
///
/// BuildKit has no limit. Matching takes up to value length times pattern
/// length steps, and a pattern can be built by nested substitutions up to
/// [`MAX_EXPANSION`] bytes, so a short word could otherwise keep the builder
/// busy for minutes. Real patterns are a few characters long and take two
/// to five steps per character of the value (`${V//x/y}` on a 256 KiB value
/// takes at most about 1.3 million steps); the whole budget costs about
/// 20 ms in a release build.
pub const MAX_MATCH_STEPS: usize = 1 << 22;

/// Where variable values come from.
pub trait Vars {
    /// The value of `name`, or `None` when it is not set. A variable set to
    /// the empty string is `Some("")`: `${VAR-x}` tells the two apart.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<S: BuildHasher> Vars for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

/// Pairs in definition order: the last definition of a name wins, as in
/// BuildKit's `EnvsFromSlice`.
impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.as_slice(), name)
    }
}

impl<V: Vars + ?Sized> Vars for &V {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// A word after expansion, with the variables it referred to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and not set. Positional and special
    /// parameters count too (`$1` adds `1`, `$@` adds `@`), as in BuildKit.
    pub unmatched: BTreeSet<String>,
}

/// Why a word could not be expanded. `offset` is the byte offset in the word
/// of the quote or `$` that starts the construct at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A `'` or `"` without its closing partner.
    #[error(
        "unterminated {quote} quote at byte {offset}: close it with a matching {quote}, or escape it"
    )]
    UnterminatedQuote { offset: usize, quote: char },
    /// `${` without its closing `}`.
    #[error("unterminated variable substitution at byte {offset}: close the `${{` with `}}`")]
    MissingBrace { offset: usize },
    /// `${VAR/pattern` without the `/` that starts the replacement.
    #[error(
        "pattern substitution at byte {offset} has no replacement: write `${{VAR/pattern/replacement}}`"
    )]
    MissingSlash { offset: usize },
    /// `${}`, `${:...}`, `${{...}` and the like.
    #[error("bad substitution at byte {offset}: {message}")]
    BadSubstitution { offset: usize, message: String },
    /// An operator BuildKit does not know, such as `${VAR:=x}` or `${VAR:#x}`.
    #[error(
        "unsupported modifier `{modifier}` in the substitution at byte {offset}: use one of :- - :+ + :? ? # ## % %% / //"
    )]
    UnsupportedModifier { offset: usize, modifier: String },
    /// `${VAR?message}` with VAR unset, or `${VAR:?message}` with VAR unset or
    /// empty. `message` is the word's own message, or a default one.
    #[error("{name}: {message}")]
    Required {
        offset: usize,
        name: String,
        message: String,
    },
    /// A `#`, `%` or `/` pattern with an escape other than `\*`, `\?`, `\\`,
    /// `\}` and `\/`.
    #[error("invalid pattern `{pattern}` in the substitution at byte {offset}: {message}")]
    InvalidPattern {
        offset: usize,
        pattern: String,
        message: String,
    },
    /// `${VAR<op>...}` operands nested more than [`MAX_NESTING`] deep.
    #[error(
        "substitutions nest too deeply at byte {offset}: at most {MAX_NESTING} levels are supported"
    )]
    TooDeep { offset: usize },
    /// A word that copies out more than [`MAX_EXPANSION`] bytes of values.
    #[error(
        "the substitution at byte {offset} makes the word too long: a word may expand to at most {MAX_EXPANSION} bytes of variable values; shorten the values or nest fewer `${{VAR//...}}`"
    )]
    TooLong { offset: usize },
    /// Patterns that would take more than [`MAX_MATCH_STEPS`] to match.
    #[error(
        "the pattern in the substitution at byte {offset} takes too long to match: a word's patterns may take at most {MAX_MATCH_STEPS} steps; shorten the pattern or the value it is matched against"
    )]
    TooSlow { offset: usize },
}

impl ShellError {
    /// The byte offset in the word where the failing construct starts.
    pub fn offset(&self) -> usize {
        match self {
            ShellError::UnterminatedQuote { offset, .. }
            | ShellError::MissingBrace { offset }
            | ShellError::MissingSlash { offset }
            | ShellError::BadSubstitution { offset, .. }
            | ShellError::UnsupportedModifier { offset, .. }
            | ShellError::Required { offset, .. }
            | ShellError::InvalidPattern { offset, .. }
            | ShellError::TooDeep { offset }
            | ShellError::TooLong { offset }
            | ShellError::TooSlow { offset } => *offset,
        }
    }
}

/// Expands shell words with BuildKit's rules. Cheap to copy; holds no state
/// between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset_env: bool,
    skip_process_quotes: bool,
}

impl Default for Lexer {
    /// The lexer for a Dockerfile without an escape directive.
    fn default() -> Lexer {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character: `\` by default, `` ` `` after
    /// a `# escape=`` ` `` directive.
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (BuildKit's `RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Lexer {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit's `RawEscapes`).
    pub fn raw_escapes(mut self, on: bool) -> Lexer {
        self.raw_escapes = on;
        self
    }

    /// Leave references to unset variables as written (BuildKit's
    /// `SkipUnsetEnv`); the heredoc parser uses this.
    pub fn skip_unset_env(mut self, on: bool) -> Lexer {
        self.skip_unset_env = on;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`).
    pub fn skip_process_quotes(mut self, on: bool) -> Lexer {
        self.skip_process_quotes = on;
        self
    }

    /// Expands `word` into one string; white space is kept as is.
    pub fn process_word(&self, word: &str, vars: &dyn Vars) -> Result<String, ShellError> {
        Ok(Expander::new(self, word, vars).run()?.0)
    }

    /// Expands `word` and splits it into words on white space that is neither
    /// quoted nor escaped. White space that an unquoted `$` expansion
    /// produces splits too, even when it came from quotes inside a `${...}`
    /// operand (`${X:-"a b"}` gives two words). Empty words are dropped.
    ///
    /// As in BuildKit, a `${VAR<op>...}` drops the text before it in the
    /// same word (`a${X:-b}` gives `["b"]`); see `Expander::word_buf`.
    pub fn process_words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ShellError> {
        Ok(Expander::new(self, word, vars).run()?.1)
    }

    /// Like [`Lexer::process_word`], and also tells which variables the word
    /// referred to.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        vars: &dyn Vars,
    ) -> Result<Expansion, ShellError> {
        let mut expander = Expander::new(self, word, vars);
        let (value, _) = expander.run()?;
        Ok(Expansion {
            value,
            matched: expander.matched,
            unmatched: expander.unmatched,
        })
    }
}

/// The state of one expansion, the counterpart of BuildKit's `shellWord`.
struct Expander<'a> {
    lexer: &'a Lexer,
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    vars: &'a dyn Vars,
    /// Whether escapes are kept; `#`, `%` and `/` operands turn it on.
    raw_escapes: bool,
    /// The word being built for `process_words`. BuildKit shares this one
    /// buffer with the nested calls that read `${VAR<op>...}` operands
    /// (since v0.15, commit 4c935cf), and each of them leaves it empty, so
    /// in `process_words` the text before such a substitution, back to the
    /// last word break, is lost (`a${X:-b}` gives `["b"]`). EXPOSE and
    /// heredoc detection go through this path, so the quirk is kept.
    word_buf: String,
    depth: usize,
    /// What is left of [`MAX_EXPANSION`] for this word.
    budget: usize,
    /// What is left of [`MAX_MATCH_STEPS`] for this word.
    steps: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a> Expander<'a> {
    fn new(lexer: &'a Lexer, src: &'a str, vars: &'a dyn Vars) -> Expander<'a> {
        Expander {
            lexer,
            src,
            // Go's text/scanner drops a byte order mark that opens the input.
            pos: if src.starts_with('\u{feff}') { 3 } else { 0 },
            vars,
            raw_escapes: lexer.raw_escapes,
            word_buf: String::new(),
            depth: 0,
            budget: MAX_EXPANSION,
            steps: MAX_MATCH_STEPS,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn run(&mut self) -> Result<(String, Vec<String>), ShellError> {
        self.process_stop_on(None, self.lexer.raw_escapes)
    }

    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// Takes `len` bytes of value text, copied out for the construct at
    /// `offset`, from the word's budget.
    fn charge(&mut self, offset: usize, len: usize) -> Result<(), ShellError> {
        self.budget = self
            .budget
            .checked_sub(len)
            .ok_or(ShellError::TooLong { offset })?;
        Ok(())
    }

    /// A variable's value, copied out and charged to the budget.
    fn copy_value(&mut self, offset: usize, value: &str) -> Result<String, ShellError> {
        self.charge(offset, value.len())?;
        Ok(value.to_owned())
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Processes text up to `stop` (consumed) or the end of the word.
    /// Returns the expanded text and its split into words.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::TooDeep { offset: self.pos });
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.stop_on(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        result
    }

    fn stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Vec::new();
        self.word_buf.clear();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                self.end_word(&mut words);
                return Ok((result, words));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    // Expanded values split on white space...
                    for c in value.chars() {
                        self.add_char(&mut words, c);
                    }
                }
                '<' | '\'' | '"' if ch == '<' || quotes => {
                    let text = match ch {
                        '<' => self.process_possible_heredoc(),
                        '\'' => self.process_single_quote()?,
                        _ => self.process_double_quote()?,
                    };
                    result.push_str(&text);
                    // ...quoted text never does, and neither does the white
                    // space after `<<`, so `<< EOF` stays one word.
                    self.word_buf.push_str(&text);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            self.word_buf.push(ch);
                            result.push(ch);
                        }
                        // An escape at the very end is dropped, not an error.
                        let Some(escaped) = self.next() else { break };
                        self.word_buf.push(escaped);
                        result.push(escaped);
                    } else {
                        self.add_char(&mut words, ch);
                        result.push(ch);
                    }
                }
            }
        }
        if stop.is_some() {
            // Only reached at the end of the word; the caller knows which
            // construct was left open and replaces this error.
            return Err(ShellError::MissingBrace { offset: self.pos });
        }
        self.end_word(&mut words);
        Ok((result, words))
    }

    /// Adds an unquoted character to the word being built: white space ends
    /// the word, anything else extends it.
    fn add_char(&mut self, words: &mut Vec<String>, c: char) {
        if is_space(c) {
            self.end_word(words);
        } else {
            self.word_buf.push(c);
        }
    }

    fn end_word(&mut self, words: &mut Vec<String>) {
        // An empty word (from `""`) is dropped, as in BuildKit.
        if !self.word_buf.is_empty() {
            words.push(std::mem::take(&mut self.word_buf));
        }
    }

    /// Everything between single quotes is literal; a single quote cannot be
    /// escaped inside them.
    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        let offset = self.pos;
        let mut result = String::new();
        self.next();
        if self.lexer.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(ShellError::UnterminatedQuote {
                        offset,
                        quote: '\'',
                    });
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Double quotes expand `$` and let the escape character escape only
    /// `"`, `$` and itself; before anything else it stays (`"a\tb"` is
    /// `a\tb`).
    fn process_double_quote(&mut self) -> Result<String, ShellError> {
        let offset = self.pos;
        let mut result = String::new();
        self.next();
        if self.lexer.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedQuote { offset, quote: '"' }),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            // With raw escapes an escape before an ordinary
                            // character comes out twice (`"\x"` is `\\x`),
                            // as in BuildKit.
                            result.push(ch);
                        }
                        match self.peek() {
                            // The missing `"` is reported on the next turn.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lexer.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `<<` followed by blanks is kept together so the heredoc parser sees
    /// `<< EOF` as one word; a lone `<` is just a character.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut result = "<<".to_owned();
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            self.next();
            result.push(c);
        }
        result
    }

    /// `$name`, `${name}` and `${name<op>word}`, from the `$`.
    fn process_dollar(&mut self) -> Result<String, ShellError> {
        let offset = self.pos;
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                // `$` before anything that cannot start a name is literal.
                return Ok("$".to_owned());
            }
            return match self.lookup(&name) {
                Some(value) => self.copy_value(offset, value),
                None if self.lexer.skip_unset_env => Ok(format!("${name}")),
                None => Ok(String::new()),
            };
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::MissingBrace { offset }),
            Some(c @ ('{' | '}' | ':')) => {
                return Err(ShellError::BadSubstitution {
                    offset,
                    message: format!(
                        "`${{{c}` has no variable name: write `${{NAME}}` or escape the `$`"
                    ),
                });
            }
            Some(_) => {}
        }
        let name = self.process_name();
        match self.next() {
            None => Err(ShellError::MissingBrace { offset }),
            Some('}') => match self.lookup(&name) {
                Some(value) => self.copy_value(offset, value),
                None if self.lexer.skip_unset_env => Ok(format!("${{{name}}}")),
                None => Ok(String::new()),
            },
            Some(op @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                self.process_operator(offset, name, op)
            }
            Some('/') => self.process_replace(offset, name),
            Some(other) => Err(ShellError::UnsupportedModifier {
                offset,
                modifier: other.to_string(),
            }),
        }
    }

    /// `${name<op>word}` for the operators `-`, `+`, `?` (each optionally
    /// after `:`), `#`, `##`, `%` and `%%`; `first` has been read.
    fn process_operator(
        &mut self,
        offset: usize,
        name: String,
        first: char,
    ) -> Result<String, ShellError> {
        // With `:` an empty value counts as unset. BuildKit reads the
        // character after `:` whatever it is and only rejects it once the
        // operand has been expanded, so `${X:=y}` with X unset passes through
        // unchanged under `skip_unset_env`.
        let null_is_unset = first == ':';
        let mut modifier = first.to_string();
        let op = if null_is_unset {
            let op = self.next();
            modifier.extend(op);
            op
        } else {
            Some(first)
        };
        let trims = matches!(op, Some('#' | '%'));
        if null_is_unset && trims {
            return Err(ShellError::UnsupportedModifier { offset, modifier });
        }
        // Trim patterns keep their escapes: `\*` must reach the pattern.
        let (mut word, _) = self
            .process_stop_on(Some('}'), trims)
            .map_err(|err| self.unterminated(err, offset))?;
        let found = self.lookup(&name);
        if found.is_none() && self.lexer.skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let value = found.unwrap_or_default();
        let is_unset = found.is_none() || (null_is_unset && value.is_empty());
        match op {
            Some('-') if is_unset => Ok(word),
            Some('-') => self.copy_value(offset, value),
            Some('+') => Ok(if is_unset { String::new() } else { word }),
            Some('?') if is_unset => {
                if word.is_empty() {
                    word = if found.is_some() {
                        "is not allowed to be empty".to_owned()
                    } else {
                        "is not allowed to be unset".to_owned()
                    };
                    word.push_str("; set it with ARG, ENV or --build-arg");
                }
                Err(ShellError::Required {
                    offset,
                    name,
                    message: word,
                })
            }
            Some('?') => self.copy_value(offset, value),
            Some(trim @ ('#' | '%')) => {
                // A doubled operator (`##`, `%%`) is only recognised after the
                // operand is expanded, so `${X#$Y}` with Y=`#a` trims the
                // longest match of `a`.
                let (pattern, greedy) = match word.strip_prefix(trim) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let trimmed = if trim == '#' {
                    pattern::trim_prefix(pattern, value, greedy, &mut self.steps)
                } else {
                    pattern::trim_suffix(pattern, value, greedy, &mut self.steps)
                };
                let trimmed = trimmed.map_err(|err| pattern_error(offset, pattern, err))?;
                self.charge(offset, trimmed.len())?;
                Ok(trimmed)
            }
            _ => Err(ShellError::UnsupportedModifier { offset, modifier }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`; the
    /// first `/` has been read.
    fn process_replace(&mut self, offset: usize, name: String) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let (pattern, _) = self
            .process_stop_on(Some('/'), true)
            .map_err(|err| match err {
                _ if self.at_end() => ShellError::MissingSlash { offset },
                err => err,
            })?;
        let (replacement, _) = self
            .process_stop_on(Some('}'), true)
            .map_err(|err| self.unterminated(err, offset))?;
        let value = match self.lookup(&name) {
            Some(value) => value,
            // BuildKit writes one `/` back even for `//`.
            None if self.lexer.skip_unset_env => {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            // An unset variable is replaced in as the empty string: an empty
            // pattern still matches it.
            None => "",
        };
        let replaced = pattern::replace(
            value,
            &pattern,
            &replacement,
            all,
            self.budget,
            &mut self.steps,
        )
        .map_err(|err| pattern_error(offset, &pattern, err))?;
        self.charge(offset, replaced.len())?;
        Ok(replaced)
    }

    /// An operand that ran to the end of the word means the `}` is missing,
    /// whatever failed inside it (BuildKit reports it the same way).
    fn unterminated(&self, err: ShellError, offset: usize) -> ShellError {
        if self.at_end() {
            ShellError::MissingBrace { offset }
        } else {
            err
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (a
    /// positional parameter such as `$1` or `$001`); or one special parameter
    /// character. Letters and digits are Unicode ones, as Go classifies them,
    /// so `$안녕` names a variable.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|&c| is_digit(c)) {
                    self.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                name.push(ch);
                return name;
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    /// Looks a name up and records whether it was set.
    fn lookup(&mut self, name: &str) -> Option<&'a str> {
        let vars: &'a dyn Vars = self.vars;
        let value = vars.get(name);
        let set = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !set.contains(name) {
            set.insert(name.to_owned());
        }
        value
    }
}

/// POSIX special parameters (XCU 2.5.2). A Dockerfile never sets them, so
/// they expand to nothing, but they end a `$` name after one character:
/// `$@@@` is `@@`.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

fn pattern_error(offset: usize, pattern: &str, err: pattern::PatternError) -> ShellError {
    let bad = match err {
        pattern::PatternError::BadEscape(bad) => bad,
        pattern::PatternError::TooLong => return ShellError::TooLong { offset },
        pattern::PatternError::TooManySteps => return ShellError::TooSlow { offset },
    };
    let message = match bad.0 {
        Some(c) => format!(
            "`\\{c}` is not an escape a pattern knows; write `\\*`, `\\?` or `\\\\`, or drop the backslash"
        ),
        None => "the pattern ends in a lone `\\`; escape it as `\\\\`".to_owned(),
    };
    ShellError::InvalidPattern {
        offset,
        pattern: pattern.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn word(input: &str, pairs: &[(&str, &str)]) -> Result<String, ShellError> {
        Lexer::new('\\').process_word(input, &vars(pairs))
    }

    fn words(input: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        Lexer::new('\\').process_words(input, &vars(pairs)).unwrap()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The cases of BuildKit's `TestProcessWithMatches`: value, matched and
    /// unmatched names, or an error.
    #[test]
    fn matches_and_operators() {
        struct Case {
            input: &'static str,
            vars: &'static [(&'static str, &'static str)],
            expected: Option<&'static str>,
            matched: &'static [&'static str],
            unmatched: &'static [&'static str],
        }
        const FOO_BAR: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
        const XXYY: &[(&str, &str)] = &[("FOO", "xxyy")];
        let ok = |input, vars, expected, matched, unmatched| Case {
            input,
            vars,
            expected: Some(expected),
            matched,
            unmatched,
        };
        let err = |input, vars| Case {
            input,
            vars,
            expected: None,
            matched: &[],
            unmatched: &[],
        };
        let cases = [
            ok("x", &[("DUMMY", "dummy")], "x", &[], &[]),
            ok("x ${UNUSED}", &[("DUMMY", "dummy")], "x ", &[], &["UNUSED"]),
            ok("x ${FOO}", &[("FOO", "y")], "x y", &["FOO"], &[]),
            ok(
                "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
                FOO_BAR,
                "xxx  ccc",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ok(
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                FOO_BAR,
                "xxx bbb ccc",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ok("${FOO:-}", FOO_BAR, "xxx", &["FOO"], &[]),
            ok("${FOO:-}", &[], "", &[], &["FOO"]),
            ok(
                "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
                FOO_BAR,
                "aaa bbb ",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ok(
                "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
                FOO_BAR,
                "aaa  ",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ok("${FOO?aaa}", FOO_BAR, "xxx", &["FOO"], &[]),
            ok("${BAR?bbb}", FOO_BAR, "", &["BAR"], &[]),
            err("${BAZ?ccc}", FOO_BAR),
            ok("${FOO:?aaa}", FOO_BAR, "xxx", &["FOO"], &[]),
            err("${BAR:?bbb}", FOO_BAR),
            err("${BAZ:?ccc}", FOO_BAR),
            err("${BAZ:?}", FOO_BAR),
            err("${FOO=aaa}", FOO_BAR),
            err("${FOO=:aaa}", FOO_BAR),
            err("${FOO=}", &[]),
            ok(
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")],
                "x",
                &["FOO"],
                &[],
            ),
            ok("${FOO%%\\**}", &[("FOO", "xx**")], "xx", &["FOO"], &[]),
            ok("${FOO#*x*y}", XXYY, "y", &["FOO"], &[]),
            ok("${FOO#*}", XXYY, "xxyy", &["FOO"], &[]),
            ok(
                "${FOO#$BAR}",
                &[("FOO", "xxyy"), ("BAR", "x")],
                "xyy",
                &["FOO", "BAR"],
                &[],
            ),
            ok(
                "${FOO#$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                "xxyy",
                &["FOO", "BAR"],
                &[],
            ),
            ok("${FOO#}", XXYY, "xxyy", &["FOO"], &[]),
            ok("${FOO##*x}", XXYY, "yy", &["FOO"], &[]),
            ok("${FOO##}", XXYY, "xxyy", &["FOO"], &[]),
            ok("${FOO#?\\?}", &[("FOO", "???y")], "?y", &["FOO"], &[]),
            ok(
                "${ABC:-.}${FOO%x}${ABC:-.}",
                XXYY,
                ".xxyy.",
                &["FOO"],
                &["ABC"],
            ),
            ok("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a", &["FOO"], &[]),
            ok("${FOO%}", XXYY, "xxyy", &["FOO"], &[]),
            ok(
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                "xxyy",
                &["FOO", "BAR"],
                &[],
            ),
            err("${FOO:#}", &[]),
            err("${FOO:##}", &[]),
            err("${FOO:%}", &[]),
            err("${FOO:%%}", &[]),
            ok(
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                "/foo.*/*.txt - /foo..*.txt",
                &["FOO", "NEEDLE"],
                &[],
            ),
            ok(
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
                &["FOO", "NEEDLE"],
                &[],
            ),
            ok(
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                "/foo/b/c.txt - /foo/c.txt",
                &["FOO", "NEEDLE", "REPLACEMENT"],
                &[],
            ),
            ok(
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                "https://google.de",
                &["FOO", "NEEDLE", "REPLACEMENT"],
                &[],
            ),
            ok(
                "${FOO//\\//\\/}",
                &[("FOO", "/tmp/foo.txt")],
                "\\/tmp\\/foo.txt",
                &["FOO"],
                &[],
            ),
            ok(
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                "wwxxyy",
                &["FOO", "BAR"],
                &[],
            ),
            err("${FOO//ww}", XXYY),
            err("${FOO//}", XXYY),
            ok("${FOO///}", XXYY, "xxyy", &["FOO"], &[]),
            ok("${FOO///}", &[], "", &[], &["FOO"]),
        ];
        let lexer = Lexer::new('\\');
        let mut failures = Vec::new();
        for case in &cases {
            let got = lexer.process_word_with_matches(case.input, &vars(case.vars));
            let want = case.expected.map(|value| Expansion {
                value: value.to_owned(),
                matched: names(case.matched),
                unmatched: names(case.unmatched),
            });
            match (got, want) {
                (Err(_), None) => {}
                (Ok(got), Some(want)) if got == want => {}
                (got, want) => {
                    failures.push(format!("{:?}: got {got:?}, want {want:?}", case.input))
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn required_variables_carry_their_message() {
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let set = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        assert_eq!(word(no_empty, &set).unwrap(), "plain");
        assert_eq!(word(no_unset, &set).unwrap(), "plain");
        assert_eq!(word(no_unset, &empty).unwrap(), "");
        for (input, pairs) in [
            (no_empty, &empty[..]),
            (no_empty, &unset),
            (no_unset, &unset),
        ] {
            let err = word(input, pairs).unwrap_err();
            assert_eq!(err.to_string(), "VAR: message herex");
            assert_eq!(err.offset(), 0);
        }
        assert_eq!(
            word("ab${VAR:?}", &empty).unwrap_err().to_string(),
            "VAR: is not allowed to be empty; set it with ARG, ENV or --build-arg"
        );
        assert_eq!(
            word("ab${VAR?}", &[]).unwrap_err(),
            ShellError::Required {
                offset: 2,
                name: "VAR".to_owned(),
                message: "is not allowed to be unset; set it with ARG, ENV or --build-arg"
                    .to_owned(),
            }
        );
    }

    #[test]
    fn release_file_name_with_optional_variant() {
        let input = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            word(input, &all).unwrap()
        };
        assert_eq!(
            with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
    }

    #[test]
    fn trim_operators() {
        let path = [("P", "/usr/local/lib/libz.so.1.3"), ("E", "")];
        assert_eq!(word("${P#*/}", &path).unwrap(), "usr/local/lib/libz.so.1.3");
        assert_eq!(word("${P##*/}", &path).unwrap(), "libz.so.1.3");
        assert_eq!(word("${P%.*}", &path).unwrap(), "/usr/local/lib/libz.so.1");
        assert_eq!(word("${P%%.*}", &path).unwrap(), "/usr/local/lib/libz");
        assert_eq!(word("${P%/*}", &path).unwrap(), "/usr/local/lib");
        assert_eq!(word("${P#/usr}", &path).unwrap(), "/local/lib/libz.so.1.3");
        assert_eq!(
            word("${P#nope}", &path).unwrap(),
            "/usr/local/lib/libz.so.1.3"
        );
        assert_eq!(word("${P#/???/}", &path).unwrap(), "local/lib/libz.so.1.3");
        // Unset and empty variables trim to nothing.
        assert_eq!(word("${NONE#*}${E%%*}", &path).unwrap(), "");
        // The operand is expanded first, quotes included.
        assert_eq!(
            word("${P#\"/usr/\"}", &path).unwrap(),
            "local/lib/libz.so.1.3"
        );
        assert_eq!(
            word("${P%'.3'}", &path).unwrap(),
            "/usr/local/lib/libz.so.1"
        );
        // `##` is recognised after expansion.
        assert_eq!(
            word("${P#$H}", &[("P", "a/b/c"), ("H", "#*/")]).unwrap(),
            "c"
        );
        // Korean text trims by characters.
        assert_eq!(word("${K#한}", &[("K", "한국어")]).unwrap(), "국어");
        assert_eq!(word("${K%?}", &[("K", "한국어")]).unwrap(), "한국");
    }

    #[test]
    fn bracket_expressions_are_literal() {
        // BuildKit escapes `[` and `]` into the regular expression: no classes.
        let v = [("V", "abc"), ("B", "[ab]c")];
        assert_eq!(word("${V#[ab]}", &v).unwrap(), "abc");
        assert_eq!(word("${B#[ab]}", &v).unwrap(), "c");
        assert_eq!(word("${V/[a-c]/x}", &v).unwrap(), "abc");
        assert_eq!(word("${B//[ab]/x}", &v).unwrap(), "xc");
        assert_eq!(word("${B%[!ab]c}", &v).unwrap(), "[ab]c");
    }

    #[test]
    fn bad_pattern_escapes_are_errors() {
        let v = [("V", "abc")];
        let err = word("x${V#\\a}", &v).unwrap_err();
        assert!(
            matches!(err, ShellError::InvalidPattern { offset: 1, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid pattern `\\a` in the substitution at byte 1")
        );
        assert!(word("${V/$P/x}", &[("V", "a"), ("P", "a\\")]).is_err());
        assert!(word("${V%$P}", &[("V", "a"), ("P", "a\\")]).is_err());
    }

    #[test]
    fn replace_operators() {
        let v = [("V", "a-b-c"), ("E", "")];
        assert_eq!(word("${V/-/+}", &v).unwrap(), "a+b-c");
        assert_eq!(word("${V//-/+}", &v).unwrap(), "a+b+c");
        // `}` does not end the pattern, only `/` does.
        assert_eq!(word("${V/-}x/y}", &v).unwrap(), "a-b-c");
        assert!(word("${V//-}x}", &v).is_err());
        assert_eq!(word("${V/*/x}", &v).unwrap(), "x");
        assert_eq!(word("${V/b*/x}", &v).unwrap(), "a-x");
        assert_eq!(word("${V//?/.}", &v).unwrap(), ".....");
        // Every-match replacement reads `$0` as the match, as Go's
        // ReplaceAllString does; the first-match form splices text as is.
        let r = [("V", "a-b-c"), ("R", "[$0]")];
        assert_eq!(word("${V//-/$R}", &r).unwrap(), "a[-]b[-]c");
        assert_eq!(word("${V/-/$R}", &r).unwrap(), "a[$0]b-c");
        // Operands keep their escapes, so an escaped `$` leaves a backslash.
        assert_eq!(word("${V//-/<\\$0>}", &v).unwrap(), "a<\\->b<\\->c");
        // Unset variables still run through the pattern.
        assert_eq!(word("${NONE/$E/x}", &v).unwrap(), "x");
        assert_eq!(word("${NONE//a/x}", &v).unwrap(), "");
        assert!(matches!(
            word("${V/a", &v),
            Err(ShellError::MissingSlash { offset: 0 })
        ));
        assert!(matches!(
            word("${V/a/b", &v),
            Err(ShellError::MissingBrace { offset: 0 })
        ));
    }

    #[test]
    fn backquote_escape() {
        let lexer = Lexer::new('`');
        let v = vars(&[("X", "x"), ("V", "*x")]);
        let w = |input: &str| lexer.process_word(input, &v).unwrap();
        assert_eq!(w("a`$X"), "a$X");
        assert_eq!(w("C:\\path\\$X"), "C:\\path\\x");
        assert_eq!(w("a``b"), "a`b");
        assert_eq!(w("end`"), "end");
        assert_eq!(w("\"a`\"b\""), "a\"b");
        assert_eq!(w("\"a`tb\""), "a`tb");
        // A backslash is an ordinary character, even before a quote.
        assert_eq!(w("\"a\\b\" c"), "a\\b c");
        assert!(lexer.process_word("\"a\\\"b\"c", &v).is_err());
        assert_eq!(lexer.process_words("a` b c", &v).unwrap(), ["a b", "c"]);
        // Patterns keep using `\` for their own escapes; the backquote only
        // escapes for the lexer, and stays in the pattern as a literal.
        assert_eq!(w("${V#\\*}"), "x");
        assert_eq!(w("${V#`*}"), "*x");
        assert_eq!(w("${V#`$X}"), "*x");
    }

    #[test]
    fn word_splitting() {
        let v = [("X", "b"), ("S", " 1  2 ")];
        assert_eq!(words("a   b\tc\nd", &v), ["a", "b", "c", "d"]);
        assert_eq!(words("a$S", &v), ["a", "1", "2"]);
        assert_eq!(words("a\"$S\"", &v), ["a 1  2 "]);
        assert_eq!(words("'a b' \"c d\" e\\ f", &v), ["a b", "c d", "e f"]);
        assert_eq!(words("a$X ${X}c", &v), ["ab", "bc"]);
        // Quotes inside an operand do not keep its value together.
        assert_eq!(words("${U:-\"a b\"}", &v), ["a", "b"]);
        assert_eq!(words("\"${U:-a b}\"", &v), ["a b"]);
        // Empty quotes make no word.
        assert_eq!(words("a \"\" '' b", &v), ["a", "b"]);
        assert!(words("", &v).is_empty());
        // `<<` and the blanks after it stay together for heredoc detection.
        assert_eq!(words("cat << EOF >x", &v), ["cat", "<< EOF", ">x"]);
        assert_eq!(words("a<b", &v), ["a<b"]);
    }

    #[test]
    fn operators_drop_the_partial_word_in_process_words() {
        // BuildKit's shared word buffer: a `${X<op>...}` empties it, so the
        // text before it in the same word is lost. process_word is not
        // affected.
        assert_eq!(words("a${X:-b}", &[]), ["b"]);
        assert_eq!(words("a ${X:-b}c", &[]), ["a", "bc"]);
        assert_eq!(words("x\"a${X:-b}c\"", &[]), ["abc"]);
        assert_eq!(words("8${P/x/y}0", &[("P", "x")]), ["y0"]);
        assert_eq!(word("a${X:-b}", &[]).unwrap(), "ab");
    }

    #[test]
    fn options() {
        let none = vars(&[]);
        let skip = Lexer::new('\\').skip_unset_env(true);
        assert_eq!(
            skip.process_word("$A ${B} ${C:-x} ${D/a/b} ${E//a/b} ${F:=y} ${G?} $1", &none)
                .unwrap(),
            "$A ${B} ${C:-x} ${D/a/b} ${E/a/b} ${F:=y} ${G?} $1"
        );
        assert_eq!(skip.process_word("${A:-$B}", &none).unwrap(), "${A:-$B}");
        assert!(skip.process_word("${A:#x}", &none).is_err());
        assert_eq!(skip.process_word("$A", &vars(&[("A", "a")])).unwrap(), "a");

        let raw_quotes = Lexer::new('\\').raw_quotes(true);
        assert_eq!(
            raw_quotes.process_word("'a' \"b\"", &none).unwrap(),
            "'a' \"b\""
        );
        assert_eq!(
            raw_quotes.process_words("'a b' c", &none).unwrap(),
            ["'a b'", "c"]
        );

        let raw_escapes = Lexer::new('\\').raw_escapes(true);
        assert_eq!(
            raw_escapes
                .process_word("a\\ b \"\\x\\\"\"", &none)
                .unwrap(),
            "a\\ b \\\\x\\\""
        );
        assert_eq!(raw_escapes.process_word("end\\", &none).unwrap(), "end\\");

        let no_quotes = Lexer::new('\\').skip_process_quotes(true);
        let x = vars(&[("X", "x")]);
        assert_eq!(
            no_quotes.process_word("'$X' \"$X\"", &x).unwrap(),
            "'x' \"x\""
        );
        assert_eq!(no_quotes.process_words("'a b'", &x).unwrap(), ["'a", "b'"]);
        assert_eq!(no_quotes.escape(), '\\');
        assert_eq!(Lexer::default(), Lexer::new('\\'));
    }

    #[test]
    fn special_and_positional_parameters_are_unmatched() {
        let got = Lexer::new('\\')
            .process_word_with_matches("$1$@${#}${001:-d}$$$PWD", &vars(&[("PWD", "/")]))
            .unwrap();
        assert_eq!(got.value, "d/");
        assert_eq!(got.matched, names(&["PWD"]));
        assert_eq!(got.unmatched, names(&["1", "@", "#", "001", "$"]));
        // `${#VAR}` (length) is not supported: `#` is read as the name.
        assert!(word("${#PWD}", &[("PWD", "/")]).is_err());
        // An operator without a name looks up the empty name.
        let got = Lexer::new('\\')
            .process_word_with_matches("${+x}${%y}", &vars(&[]))
            .unwrap();
        assert_eq!(got.value, "");
        assert_eq!(got.unmatched, names(&[""]));
    }

    #[test]
    fn names_use_go_unicode_classes() {
        let v = [("PWD", "/home"), ("안녕", "hi"), ("_a1", "u")];
        assert_eq!(word("$PWD²", &v).unwrap(), "/home²");
        assert_eq!(word("$PWDⅫ", &v).unwrap(), "/homeⅫ");
        assert_eq!(word("$안녕!", &v).unwrap(), "hi!");
        assert_eq!(word("$_a1-", &v).unwrap(), "u-");
        assert_eq!(word("${٣:-digits}", &v).unwrap(), "digits");
        assert_eq!(word("$PWD\u{a0}x", &v).unwrap(), "/home\u{a0}x");
        assert_eq!(words("$PWD\u{a0}x", &v), ["/home", "x"]);
    }

    #[test]
    fn byte_order_mark_and_nul() {
        let v = [("X", "x")];
        assert_eq!(word("\u{feff}$X", &v).unwrap(), "x");
        assert_eq!(word("a\u{feff}$X", &v).unwrap(), "a\u{feff}x");
        assert_eq!(word("a\0$X", &v).unwrap(), "a\0x");
    }

    #[test]
    fn errors_point_at_the_construct() {
        let e = |input: &str| word(input, &[]).unwrap_err();
        assert_eq!(
            e("ab'cd"),
            ShellError::UnterminatedQuote {
                offset: 2,
                quote: '\''
            }
        );
        assert_eq!(
            e("ab\"cd"),
            ShellError::UnterminatedQuote {
                offset: 2,
                quote: '"'
            }
        );
        assert_eq!(
            e("ab\"cd\\"),
            ShellError::UnterminatedQuote {
                offset: 2,
                quote: '"'
            }
        );
        assert_eq!(e("x${"), ShellError::MissingBrace { offset: 1 });
        assert_eq!(e("x${A"), ShellError::MissingBrace { offset: 1 });
        assert_eq!(e("x${A:-'b}"), ShellError::MissingBrace { offset: 1 });
        assert_eq!(e("${A:-${B:-c}"), ShellError::MissingBrace { offset: 0 });
        assert_eq!(e("é${}").offset(), 2);
        assert!(matches!(
            e("x${}"),
            ShellError::BadSubstitution { offset: 1, .. }
        ));
        assert!(matches!(
            e("${{a}"),
            ShellError::BadSubstitution { offset: 0, .. }
        ));
        assert!(matches!(
            e("${.}"),
            ShellError::UnsupportedModifier { offset: 0, .. }
        ));
        assert_eq!(
            e("x${A:=b}"),
            ShellError::UnsupportedModifier {
                offset: 1,
                modifier: ":=".to_owned()
            }
        );
        assert_eq!(
            e("ab'cd").to_string(),
            "unterminated ' quote at byte 2: close it with a matching ', or escape it"
        );
        assert_eq!(
            e("x${A").to_string(),
            "unterminated variable substitution at byte 1: close the `${` with `}`"
        );
        assert_eq!(
            e("x${}").to_string(),
            "bad substitution at byte 1: `${}` has no variable name: write `${NAME}` or escape the `$`"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}x{}", "${A:-\"".repeat(depth), "\"}".repeat(depth));
        assert_eq!(word(&nested(MAX_NESTING - 1), &[]).unwrap(), "x");
        assert!(matches!(
            word(&nested(MAX_NESTING), &[]),
            Err(ShellError::TooDeep { .. })
        ));
        assert!(matches!(
            word(&nested(100_000), &[]),
            Err(ShellError::TooDeep { .. })
        ));
    }

    /// `${A///R}` replaces every empty match in A with R, so each level of
    /// nesting multiplies the size by the length of A plus one.
    fn nested_replacements(depth: usize) -> String {
        let mut word = "x".to_owned();
        for _ in 0..depth {
            word = format!("${{A///{word}}}");
        }
        word
    }

    #[test]
    fn expansion_size_is_bounded() {
        let a = [("A", "aaaaaaaaa")];
        // Below the limit nothing changes: five levels give 2 * 10^5 bytes.
        let five = word(&nested_replacements(5), &a).unwrap();
        assert_eq!(five.len(), 199_999);
        assert!(five.starts_with("xaxaxaxaxa") && five.ends_with("xax"));
        // Seven levels would be 20 MB from a 50-byte word; twenty would be
        // 10^20 bytes. Both stop at the limit, quickly.
        for depth in [7, 20] {
            let start = std::time::Instant::now();
            let err = word(&nested_replacements(depth), &a).unwrap_err();
            assert!(matches!(err, ShellError::TooLong { .. }), "{err:?}");
            assert!(start.elapsed() < std::time::Duration::from_secs(2));
        }
        assert_eq!(
            word(&nested_replacements(7), &a).unwrap_err().to_string(),
            "the substitution at byte 6 makes the word too long: a word may expand to at most 1048576 bytes of variable values; shorten the values or nest fewer `${VAR//...}`"
        );
        // A template of many `$0` multiplies the match by itself.
        let big = "a".repeat(4096);
        let template = "$0".repeat(1024);
        let v = [("A", big.as_str()), ("T", template.as_str()), ("U", "$0$0")];
        assert!(matches!(
            word("${A//*/$T}", &v),
            Err(ShellError::TooLong { .. })
        ));
        assert_eq!(word("${A//*/$U}", &v).unwrap().len(), 8192);
        // Plain references count too, so `$A$A...` cannot copy a large
        // value without end; values that fit are untouched.
        let half = "a".repeat(MAX_EXPANSION / 2);
        let v = [("H", half.as_str())];
        assert_eq!(word("$H${H}", &v).unwrap().len(), MAX_EXPANSION);
        assert!(matches!(
            word("$H${H}$H", &v),
            Err(ShellError::TooLong { offset: 6 })
        ));
        assert!(matches!(
            word("$H${X-$H$H}", &v),
            Err(ShellError::TooLong { offset: 8 })
        ));
        assert_eq!(
            word("${H//a/b}", &v).unwrap(),
            "b".repeat(MAX_EXPANSION / 2)
        );
    }

    #[test]
    fn pattern_matching_work_is_bounded() {
        // Every `?*` pair keeps a thread alive, and the final `b` never
        // matches: value length times pattern length steps.
        let value = "a".repeat(10_000);
        let pattern = format!("{}b", "?*".repeat(10_000));
        let v = [("A", value.as_str()), ("P", pattern.as_str())];
        for input in ["${A//$P/x}", "${A/$P/x}", "${A#$P}", "${A##$P}"] {
            let start = std::time::Instant::now();
            let err = word(input, &v).unwrap_err();
            assert!(matches!(err, ShellError::TooSlow { offset: 0 }), "{err:?}");
            assert!(start.elapsed() < std::time::Duration::from_secs(2));
        }
        // Reversed, the `b` fails at once.
        assert_eq!(word("${A%$P}", &v).unwrap(), value);
        // Runs of stars are one star, however long.
        let stars = "*".repeat(1 << 19);
        let v = [("A", value.as_str()), ("S", stars.as_str())];
        assert_eq!(word("${A//$S/x}", &v).unwrap(), "x");
        assert_eq!(word("${A#a${S}a}", &v).unwrap(), value[2..]);
        assert_eq!(word("${A##a${S}a}", &v).unwrap(), "");
        // A large value with a short pattern stays well inside the budget.
        let big = "ab".repeat(1 << 18);
        let v = [("B", big.as_str())];
        assert_eq!(word("${B//b/c}", &v).unwrap(), "ac".repeat(1 << 18));
        assert_eq!(word("${B%%a*}", &v).unwrap(), "");
    }

    #[test]
    fn vars_implementations() {
        let pairs = vec![
            ("A".to_owned(), "1".to_owned()),
            ("A".to_owned(), "2".to_owned()),
        ];
        let lexer = Lexer::new('\\');
        assert_eq!(lexer.process_word("$A", &pairs).unwrap(), "2");
        assert_eq!(lexer.process_word("$A", &pairs.as_slice()).unwrap(), "2");
        let map: HashMap<String, String> = pairs.into_iter().collect();
        assert_eq!(lexer.process_word("$A-$B", &map).unwrap(), "2-");
    }

    /// Arbitrary words never panic, hang or overflow the stack, and the
    /// three entry points agree on success.
    #[test]
    fn arbitrary_input_never_panics() {
        const ALPHABET: &[char] = &[
            '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '\'', '"', '<', ' ', '\t',
            '\n', 'a', 'A', '_', '1', '0', '@', '*', '!', '=', '[', ']', '.', '한', '\0',
            '\u{feff}', '²', '\u{85}',
        ];
        let v = vars(&[("a", "a*b\\"), ("A", ""), ("1", "x y"), ("_", "${a}")]);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            // xorshift64*: deterministic, good enough to spread the cases.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let input: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let bits = next();
            let lexer = Lexer::new(if bits & 1 == 0 { '\\' } else { '`' })
                .raw_quotes(bits & 2 != 0)
                .raw_escapes(bits & 4 != 0)
                .skip_unset_env(bits & 8 != 0)
                .skip_process_quotes(bits & 16 != 0);
            let one = lexer.process_word(&input, &v);
            let split = lexer.process_words(&input, &v);
            let with = lexer.process_word_with_matches(&input, &v);
            assert_eq!(one.is_ok(), split.is_ok(), "{input:?}");
            if let (Ok(one), Ok(with)) = (&one, &with) {
                assert_eq!(one, &with.value, "{input:?}");
                assert!(with.matched.is_disjoint(&with.unmatched), "{input:?}");
            }
            if let Err(err) = &one {
                assert!(err.offset() <= input.len(), "{input:?}: {err:?}");
                assert!(input.is_char_boundary(err.offset()), "{input:?}: {err:?}");
            }
        }
    }
}
