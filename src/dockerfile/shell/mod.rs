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
//! environment, never panics on any input, and takes time proportional to the
//! input (patterns: input times pattern length).

mod pattern;
mod unicode;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use self::unicode::{is_digit, is_letter, is_space};

/// How deeply `${...}` and quotes may nest in one word.
///
/// BuildKit has no limit (Go stacks grow); a limit keeps a hostile word from
/// overflowing the thread's stack. No real Dockerfile comes near it.
pub const MAX_NESTING: usize = 100;

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
    /// More than [`MAX_NESTING`] levels of `${...}` and quotes.
    #[error(
        "substitutions nest too deeply at byte {offset}: at most {MAX_NESTING} levels are supported"
    )]
    TooDeep { offset: usize },
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
            | ShellError::TooDeep { offset } => *offset,
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
    /// quoted, escaped nor inside a `${...}` operand. White space inside an
    /// expanded value splits too, unless the expansion was quoted.
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
    /// buffer between nested operands (since v0.15): every `${VAR<op>...}`
    /// empties it, so in `process_words` the text before such a substitution,
    /// back to the last word break, is lost (`a${X:-b}` gives `["b"]`).
    /// EXPOSE and heredoc detection depend on it, so it is kept.
    word_buf: String,
    depth: usize,
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
            return Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
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
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
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
            Some('-') => Ok(if is_unset { word } else { value.to_owned() }),
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
            Some('?') => Ok(value.to_owned()),
            Some(trim @ ('#' | '%')) => {
                // A doubled operator (`##`, `%%`) is only recognised after the
                // operand is expanded, so `${X#$Y}` with Y=`#a` trims the
                // longest match of `a`.
                let (pattern, greedy) = match word.strip_prefix(trim) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let trimmed = if trim == '#' {
                    pattern::trim_prefix(pattern, value, greedy)
                } else {
                    pattern::trim_suffix(pattern, value, greedy)
                };
                trimmed.map_err(|bad| invalid_pattern(offset, pattern, bad))
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
        pattern::replace(value, &pattern, &replacement, all)
            .map_err(|bad| invalid_pattern(offset, &pattern, bad))
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

fn invalid_pattern(offset: usize, pattern: &str, bad: pattern::BadEscape) -> ShellError {
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
