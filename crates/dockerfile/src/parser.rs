//! Dockerfile text -> [`Ast`], line by line, exactly as BuildKit's parser.
//!
//! Takes the whole file as text and returns one [`Node`] per instruction.
//! The rules follow BuildKit's `frontend/dockerfile/parser` to the letter,
//! quirks included, because a user's Dockerfile must mean the same thing to
//! hoist as to `docker build`:
//! - parser directives are only read before the first line that is not one
//!   (a blank line or an ordinary comment ends them);
//! - a line continues when it ends in the escape character (optionally
//!   followed by blanks) that is not itself escaped; comment lines and blank
//!   lines inside a continuation are dropped; continuation lines keep their
//!   leading whitespace;
//! - arguments are split per instruction (JSON array, whitespace list,
//!   key/value pairs...), JSON that does not parse falls back to shell form,
//!   but a JSON array holding a non-string is an error;
//! - heredocs (`<<EOF`) are collected for RUN, COPY and ADD in shell form.
//!
//! Never panics, whatever the input; unknown instructions are kept (they are
//! rejected when the nodes are typed, where a did-you-mean can be given).

use super::ast::{Arg, Ast, Directive, Heredoc, Node, ParseWarning, Span};
use super::shell::Lexer;
use std::collections::BTreeSet;

/// A Dockerfile that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line of the instruction (or directive) at fault.
    pub line: usize,
    /// 1-based column, 1 when the error concerns the whole line.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl ParseError {
    fn new(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: line.max(1),
            column: 1,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> ParseError {
        self.hint = Some(hint.into());
        self
    }
}

/// Whitespace as Go's `unicode.IsSpace` sees it (the same set as Rust's).
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+` (no newline, ASCII only).
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// Splits on runs of [`is_split_space`], at most `limit` parts (0: no limit),
/// as Go's `regexp.Split` does: a leading separator yields an empty first part.
fn split_whitespace_regex(s: &str, limit: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        if limit != 0 && parts.len() + 1 == limit {
            parts.push(rest);
            return parts;
        }
        match rest.find(is_split_space) {
            None => {
                parts.push(rest);
                return parts;
            }
            Some(start) => {
                let after = &rest[start..];
                let len = after.len() - after.trim_start_matches(is_split_space).len();
                parts.push(&rest[..start]);
                rest = &rest[start + len..];
            }
        }
    }
}

/// State of the directive reader (BuildKit's `DirectiveParser`).
struct Directives {
    done: bool,
    seen: BTreeSet<String>,
    escape: char,
    found: Vec<Directive>,
}

impl Directives {
    fn new() -> Directives {
        Directives {
            done: false,
            seen: BTreeSet::new(),
            escape: '\\',
            found: Vec::new(),
        }
    }

    /// Reads `line` (leading whitespace already trimmed) as a possible
    /// directive; returns whether it was one.
    fn read(&mut self, line: &str, line_no: usize) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let Some((name, value)) = split_directive(rest.trim_start_matches(is_space)) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if !self.seen.insert(name.clone()) {
            return Err(ParseError::new(
                line_no,
                format!("only one {name} parser directive can be used"),
            )
            .hint("remove the repeated directive"));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(ParseError::new(
                        line_no,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    )
                    .hint("use `# escape=\\` (the default) or `# escape=``"));
                }
            };
        }
        self.found.push(Directive {
            name,
            value: value.to_string(),
            line: line_no,
        });
        Ok(true)
    }
}

/// Matches BuildKit's `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (RE2's `\s`
/// is ASCII `[\t\n\f\r ]`), returning the name and value.
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let re_space = |c: char| matches!(c, '\t' | '\n' | '\u{0c}' | '\r' | ' ');
    let first = s.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_len = s
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_len);
    let rest = rest.trim_start_matches(re_space).strip_prefix('=')?;
    let value = rest.trim_start_matches(re_space).trim_end_matches(re_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // `(.+?)` needs one character: with only blanks after `=`, the regex
    // backtracks and captures the last blank.
    let last = rest.chars().last()?;
    Some((name, &rest[rest.len() - last.len_utf8()..]))
}

/// `trimNewline`: strips any trailing `\r` and `\n`.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

/// BuildKit's line-continuation rule: the line ends in the escape character
/// plus optional blanks, and that escape is not itself escaped (or stands
/// alone on the line). Returns the line without it, and whether the logical
/// line ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        match before.chars().last() {
            None => return (String::new(), false),
            Some(c) if c != escape => return (before.to_string(), false),
            Some(_) => {}
        }
    }
    (line.to_string(), true)
}

/// Parses a whole Dockerfile.
pub fn parse(source: &str) -> Result<Ast, ParseError> {
    let mut lines = split_lines(source).into_iter().peekable();
    let mut directives = Directives::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = lines.next() {
        let raw = if current == 0 {
            raw.strip_prefix('\u{feff}').unwrap_or(raw)
        } else {
            raw
        };
        if is_comment(raw) {
            // BuildKit drops the first byte, not the `#`: an indented comment
            // keeps its `#`. Only doc comments are affected.
            let comment = raw.get(1..).unwrap_or("").trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        current += 1;
        let text = trim_newline(raw).trim_start_matches(is_space);
        if directives.read(text, current)? {
            comments.pop();
        }
        let text = if is_comment(text) { "" } else { text };

        let start_line = current;
        let column = trim_newline(raw).chars().count() - text.chars().count() + 1;
        let (first, mut end_of_line) = trim_continuation(text, directives.escape);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut logical = first;
        let mut empty_continuation = false;
        while !end_of_line {
            let Some(next) = lines.next() else { break };
            current += 1;
            let text = trim_newline(next);
            directives.read(text, current)?;
            if is_comment(next) {
                continue;
            }
            if text.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, eol) = trim_continuation(text, directives.escape);
            logical.push_str(&piece);
            end_of_line = eol;
        }
        if empty_continuation {
            warnings.push(ParseWarning {
                line: current,
                message: format!("empty continuation line found in: {logical}"),
            });
        }

        let mut node = node_from_line(&logical, directives.escape, std::mem::take(&mut comments))
            .map_err(|e| e.at(start_line))?;
        if can_contain_heredoc(&node) && logical.contains("<<") {
            for mut heredoc in heredocs_from_line(&logical).map_err(|e| e.at(start_line))? {
                let mut content = String::new();
                let mut terminated = false;
                for line in lines.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(line);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(line);
                }
                if !terminated {
                    return Err(
                        ParseError::new(start_line, "unterminated heredoc").hint(format!(
                            "end the heredoc with a line holding only `{}`",
                            heredoc.name
                        )),
                    );
                }
                heredoc.content = content;
                node.heredocs.push(heredoc);
            }
        }
        node.span = Span {
            start_line,
            end_line: current,
            column,
        };
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(ParseError::new(current, "file with no instructions")
            .hint("a Dockerfile needs at least a FROM instruction"));
    }
    Ok(Ast {
        directives: directives.found,
        escape: directives.escape,
        nodes,
        warnings,
    })
}

/// Splits into lines that keep their `\n`, as BuildKit's `scanLines`.
fn split_lines(source: &str) -> Vec<&str> {
    source.split_inclusive('\n').collect()
}

/// An error from a line parser, placed on its line by the caller.
struct LineError {
    message: String,
    hint: Option<String>,
}

impl LineError {
    fn new(message: impl Into<String>) -> LineError {
        LineError {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> LineError {
        self.hint = Some(hint.into());
        self
    }

    fn at(self, line: usize) -> ParseError {
        ParseError {
            line,
            column: 1,
            message: self.message,
            hint: self.hint,
        }
    }
}

/// The parsed arguments of a line: values, JSON-ness.
struct Parsed {
    args: Vec<Arg>,
    json: bool,
}

impl Parsed {
    fn values(values: Vec<String>) -> Parsed {
        Parsed {
            args: values.into_iter().map(Arg::Value).collect(),
            json: false,
        }
    }

    fn none() -> Parsed {
        Parsed::values(Vec::new())
    }
}

/// BuildKit's `newNodeFromLine`: keyword, flags, then the keyword's own
/// argument parser.
fn node_from_line(line: &str, escape: char, comments: Vec<String>) -> Result<Node, LineError> {
    let parts = split_whitespace_regex(line.trim_matches(is_space), 2);
    let keyword = parts[0].to_string();
    let (flags, rest) = match parts.get(1) {
        Some(rest) => extract_flags(rest, escape),
        None => (Vec::new(), String::new()),
    };
    let rest = rest.trim_matches(is_space);
    let parsed = match keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(rest)?,
        "arg" => Parsed::values(parse_words(rest, escape)),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(rest)?,
        "env" => parse_name_val(rest, "ENV", escape)?,
        "label" => parse_name_val(rest, "LABEL", escape)?,
        "expose" | "from" => Parsed::values(split_list(rest)),
        "healthcheck" => parse_health_config(rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(rest),
        "onbuild" => {
            if rest.is_empty() {
                Parsed::none()
            } else {
                let child = node_from_line(rest, escape, Vec::new())?;
                Parsed {
                    args: vec![Arg::Nested(Box::new(child))],
                    json: false,
                }
            }
        }
        // BuildKit's `parseIgnore` gives unknown instructions one empty
        // argument (visible in its dump); typing rejects them.
        _ => Parsed::values(vec![String::new()]),
    };
    Ok(Node {
        keyword,
        flags,
        args: parsed.args,
        json: parsed.json,
        heredocs: Vec::new(),
        original: line.to_string(),
        comments,
        span: Span {
            start_line: 0,
            end_line: 0,
            column: 1,
        },
    })
}

/// BuildKit's `extractBuilderFlags`: leading words starting with `--`, with
/// quotes removed and the escape character honoured; a lone `--` ends them.
/// Returns the flags and the rest of the line.
fn extract_flags(line: &str, escape: char) -> (Vec<String>, String) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            let (pos, c) = chars[i];
            if is_space(c) {
                i += 1;
                continue;
            }
            if c != '-' || chars.get(i + 1).map(|x| x.1) != Some('-') {
                return (words, line[pos..].to_string());
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        let (pos, mut c) = chars[i];
        match phase {
            Phase::Word => {
                if is_space(c) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, line[pos..].to_string());
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                    i += 1;
                    continue;
                }
                if c == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    i += 1;
                    c = chars[i].1;
                }
                word.push(c);
            }
            Phase::Quote(quote) => {
                if c == quote {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                if c == escape {
                    if i + 1 == chars.len() {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    i += 1;
                    c = chars[i].1;
                }
                word.push(c);
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        i += 1;
    }
    (words, String::new())
}

/// BuildKit's `parseWords`: whitespace-separated words where quotes group
/// but are kept, and the escape character is kept with what it escapes.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(chars[i]) {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        let mut c = chars[i];
        match phase {
            Phase::Word => {
                if is_space(c) {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                }
                if c == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    // Unquoted, the escape and the escaped character are both
                    // kept, even when the character is a quote.
                    word.push(c);
                    i += 1;
                    c = chars[i];
                }
                word.push(c);
            }
            Phase::Quote(quote) => {
                if c == quote {
                    phase = Phase::Word;
                }
                // Single quotes cannot be escaped into.
                if c == escape && quote != '\'' {
                    if i + 1 == chars.len() {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    c = chars[i];
                }
                word.push(c);
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        i += 1;
    }
    words
}

/// ENV and LABEL: `KEY value` (legacy, one pair) or `k=v k2=v2`; each pair
/// becomes the triple key, value, separator.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Parsed, LineError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Parsed::none());
    }
    if !words[0].contains('=') {
        let parts = split_whitespace_regex(rest, 2);
        if parts.len() < 2 {
            return Err(LineError::new(format!("{key} must have two arguments"))
                .hint(format!("write `{key} NAME=VALUE`")));
        }
        return Ok(Parsed::values(vec![
            parts[0].to_string(),
            parts[1].to_string(),
            String::new(),
        ]));
    }
    let mut values = Vec::new();
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(LineError::new(format!(
                "syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&word)
            ))
            .hint("quote values that contain spaces: NAME=\"a b\""));
        };
        values.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Parsed::values(values))
}

/// BuildKit's `parseStringsWhitespaceDelimited`.
fn split_list(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    split_whitespace_regex(rest, 0)
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn parse_string(rest: &str) -> Parsed {
    if rest.is_empty() {
        Parsed::none()
    } else {
        Parsed::values(vec![rest.to_string()])
    }
}

enum JsonOutcome {
    Array(Vec<String>),
    NotJson,
}

/// BuildKit's `parseJSON`: an array of strings, or not JSON at all (the
/// caller falls back to shell form); an array with a non-string is an error.
fn parse_json(rest: &str) -> Result<JsonOutcome, LineError> {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return Ok(JsonOutcome::NotJson);
    }
    let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(JsonOutcome::NotJson);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            serde_json::Value::String(s) => out.push(s),
            _ => {
                return Err(LineError::new(
                    "when using JSON array syntax, arrays must be comprised of strings only",
                )
                .hint("quote every element: [\"cmd\", \"arg\"]"));
            }
        }
    }
    Ok(JsonOutcome::Array(out))
}

fn parse_maybe_json(rest: &str) -> Result<Parsed, LineError> {
    if rest.is_empty() {
        return Ok(Parsed::none());
    }
    Ok(match parse_json(rest)? {
        JsonOutcome::Array(values) => Parsed {
            json: true,
            ..Parsed::values(values)
        },
        JsonOutcome::NotJson => Parsed::values(vec![rest.to_string()]),
    })
}

fn parse_maybe_json_to_list(rest: &str) -> Result<Parsed, LineError> {
    Ok(match parse_json(rest)? {
        JsonOutcome::Array(values) => Parsed {
            json: true,
            ..Parsed::values(values)
        },
        JsonOutcome::NotJson => Parsed::values(split_list(rest)),
    })
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`) then a command as RUN takes it.
fn parse_health_config(rest: &str) -> Result<Parsed, LineError> {
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Parsed::none());
    }
    let command = rest[sep..].trim_start_matches(is_space);
    let mut parsed = parse_maybe_json(command)?;
    parsed.args.insert(0, Arg::Value(rest[..sep].to_string()));
    Ok(parsed)
}

/// Heredocs are read for RUN, COPY and ADD in shell form, also behind ONBUILD.
fn can_contain_heredoc(node: &Node) -> bool {
    let mut node = node;
    if node.command() == "onbuild"
        && let Some(Arg::Nested(child)) = node.args.first()
    {
        node = child;
    }
    matches!(node.command().as_str(), "run" | "copy" | "add") && !node.json
}

/// Finds the heredoc words of a logical line (BuildKit's `heredocsFromLine`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, LineError> {
    let lexer = Lexer::new('\\')
        .raw_quotes(true)
        .raw_escapes(true)
        .skip_unset_env(true);
    // BuildKit ignores lexing errors here: such a line simply has no heredoc.
    let words = lexer.process_words(line, &no_vars()).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn no_vars() -> Vec<(String, String)> {
    Vec::new()
}

/// Reads one word as a heredoc marker (`<<EOF`, `<<-"EOF"`, `3<<EOF`),
/// ignoring malformed ones as BuildKit's `MustParseHeredoc` does.
pub fn heredoc_marker(word: &str) -> Option<Heredoc> {
    parse_heredoc(word).ok().flatten()
}

/// Reads one word as a heredoc marker: `[N]<<[-]WORD`, WORD possibly quoted.
/// Returns `None` when the word is not a heredoc marker.
fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, LineError> {
    // `^(\d*)<<(-?)\s*([^<]*)$`
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\u{0c}', '\r', ' ']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let file_descriptor = word[..digits].parse::<u32>().unwrap_or(0);

    let lexer = Lexer::new('\\').skip_unset_env(true);
    let words = lexer
        .process_words(rest, &no_vars())
        .map_err(|e| LineError::new(format!("invalid heredoc delimiter {rest}: {e}")))?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = lexer
        .raw_quotes(true)
        .process_words(rest, &no_vars())
        .map_err(|e| LineError::new(format!("invalid heredoc delimiter {rest}: {e}")))?;
    if raw.len() != words.len() {
        return Err(LineError::new(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    }
    // Quotes that the lexer removed mean part of the delimiter was quoted:
    // the content is then not expanded.
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        file_descriptor,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// Removes leading tabs from every line (`<<-EOF` content).
pub fn chomp_heredoc_content(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// Go's `strconv.Quote`, used by BuildKit's dump and some of its messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Without Unicode category tables this treats every
/// assigned-looking character as printable except controls, non-ASCII
/// spaces, the common format characters, private use and noncharacters.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private = matches!(u, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let nonchar = matches!(u, 0xfdd0..=0xfdef) || (u & 0xfffe) == 0xfffe;
    !(format || private || nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(src: &str) -> Node {
        parse(src).unwrap().nodes.remove(0)
    }

    #[test]
    fn continuation_keeps_escaped_escape() {
        assert_eq!(trim_continuation("foo \\", '\\'), ("foo ".into(), false));
        assert_eq!(
            trim_continuation("foo \\\\", '\\'),
            ("foo \\\\".into(), true)
        );
        assert_eq!(trim_continuation("\\ \t", '\\'), ("".into(), false));
        assert_eq!(trim_continuation("foo `", '`'), ("foo ".into(), false));
    }

    #[test]
    fn directives_stop_at_first_other_line() {
        let ast = parse("# syntax=docker/dockerfile:1\n# escape=`\n\n# check=skip=all\nFROM a\n")
            .unwrap();
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.directive("syntax"), Some("docker/dockerfile:1"));
        assert_eq!(ast.directive("check"), None, "a blank line ends directives");
        let err = parse("# escape=\\\n# escape=`\nFROM a\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("only one escape"));
        let err = parse("# escape=x\nFROM a\n").unwrap_err();
        assert!(err.message.contains("invalid escape token 'x'"), "{err:?}");
    }

    #[test]
    fn flags_are_split_with_quotes_and_stop_at_double_dash() {
        let n = node("COPY --from=\"a b\" --chown=1:1 -- --x /y\n");
        assert_eq!(n.flags, ["--from=a b", "--chown=1:1"]);
        assert_eq!(n.arg_values(), ["--x", "/y"]);
    }

    #[test]
    fn heredocs_are_collected_with_quoting_and_chomp() {
        let ast = parse(
            "FROM a\nRUN <<EOF bash\necho $HOME\nEOF\nCOPY <<-'A' 3<<B /dst/\n\tone\n\tA\ntwo\nB\n",
        )
        .unwrap();
        let run = &ast.nodes[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert!(run.heredocs[0].expand);
        assert_eq!(run.heredocs[0].content, "echo $HOME\n");
        assert_eq!((run.span.start_line, run.span.end_line), (2, 4));
        let copy = &ast.nodes[2];
        assert_eq!(copy.heredocs[0].name, "A");
        assert!(copy.heredocs[0].chomp && !copy.heredocs[0].expand);
        assert_eq!(copy.heredocs[0].content, "\tone\n");
        assert_eq!(copy.heredocs[1].file_descriptor, 3);
        assert_eq!(copy.heredocs[1].content, "two\n");
        assert_eq!(copy.span.end_line, 9);
    }

    #[test]
    fn heredoc_not_read_in_exec_form_and_unterminated_is_an_error() {
        let n = node("RUN [\"cat\", \"<<EOF\"]\n");
        assert!(n.heredocs.is_empty());
        let err = parse("FROM a\nRUN cat <<EOF\nhello\n").unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (2, "unterminated heredoc")
        );
    }

    #[test]
    fn non_string_json_is_an_error_but_bad_json_is_shell_form() {
        assert!(parse("CMD [\"a\", 1]\n").is_err());
        let n = node("CMD [\"a\", 'b']\n");
        assert!(!n.json);
        assert_eq!(n.arg_values(), ["[\"a\", 'b']"]);
    }

    #[test]
    fn go_quote_matches_strconv() {
        assert_eq!(
            go_quote("a\"b\\c\u{0}\u{7f}\u{a0}é☃"),
            "\"a\\\"b\\\\c\\x00\\x7f\\u00a0é☃\""
        );
    }

    #[test]
    fn columns_point_at_the_keyword() {
        let ast = parse("FROM a\n   RUN x\n").unwrap();
        assert_eq!(ast.nodes[1].span.column, 4);
    }
}
