//! The Dockerfile syntax tree, as BuildKit's parser shapes it.
//!
//! One [`Node`] per instruction, with its flags and arguments already split
//! the way BuildKit's line parsers split them (JSON arrays, whitespace lists,
//! key/value triples for ENV and LABEL, the nested instruction of ONBUILD).
//! Nothing here is expanded or validated: that is the job of
//! [`super::instructions`]. Every node keeps the lines it came from.

use serde::Serialize;

/// Where an instruction sits in the source: 1-based, inclusive lines, and the
/// 1-based column of its first character on the first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
    pub column: usize,
}

/// One argument of an instruction: a plain value, or (ONBUILD only) the
/// instruction it wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Value(String),
    Nested(Box<Node>),
}

/// A heredoc attached to RUN, COPY or ADD (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when absent.
    pub file_descriptor: u32,
    /// False when any part of the delimiter was quoted: the content is then
    /// taken literally, as in POSIX shells.
    pub expand: bool,
    /// `<<-EOF`: leading tabs are stripped from the content and terminator.
    pub chomp: bool,
    /// The lines between the instruction and the terminator, newlines kept.
    pub content: String,
}

/// One instruction as parsed, before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword exactly as written (`copy`, `COPY`, `Copy`).
    pub keyword: String,
    /// Leading `--flag[=value]` words, quotes removed, `--` prefix kept.
    pub flags: Vec<String>,
    pub args: Vec<Arg>,
    /// True when the arguments came from a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined) the node was parsed from.
    pub original: String,
    /// Comment lines directly above the instruction, `#` and blanks trimmed.
    pub comments: Vec<String>,
    pub span: Span,
}

impl Node {
    /// The keyword in lower case, the form BuildKit dispatches on.
    pub fn command(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// The plain argument values, with ONBUILD's nested instruction flattened
    /// into its keyword and arguments (BuildKit's `nodeArgs`).
    pub fn arg_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for arg in &self.args {
            match arg {
                Arg::Value(v) => out.push(v.clone()),
                Arg::Nested(node) => {
                    out.push(node.keyword.clone());
                    out.extend(node.arg_values());
                }
            }
        }
        out
    }
}

/// A parser directive (`# syntax=`, `# escape=`, `# check=`) at the top of
/// the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// Something the parser accepted but that deserves a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseWarning {
    pub line: usize,
    pub message: String,
}

/// A whole parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    pub directives: Vec<Directive>,
    /// The escape character in force (`\` unless `# escape=` says otherwise).
    pub escape: char,
    pub nodes: Vec<Node>,
    pub warnings: Vec<ParseWarning>,
}

impl Ast {
    /// The value of a parser directive, if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}
