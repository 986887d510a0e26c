//! AST nodes -> typed instructions, validated as BuildKit validates them.
//!
//! Takes the [`Node`]s of the parser and returns one [`Instruction`] each:
//! flags checked against the instruction's own set (unknown, duplicate,
//! missing values, booleans), argument counts, stage names, HEALTHCHECK
//! durations, RUN mounts. Values stay unexpanded: variables are expanded by
//! the build plan, which knows which ARG and ENV are in scope. Errors carry
//! the line and column of the offending text and a hint.

use super::ast::{Arg, Heredoc, Node, Span};
use super::parser::{chomp_heredoc_content, go_quote, heredoc_marker};
use serde::Serialize;
use std::collections::BTreeMap;

/// An instruction that BuildKit would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct InstructionError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Every instruction keyword, upper case, for suggestions and docs.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// One typed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instruction {
    pub span: Span,
    /// The keyword as written (BuildKit keeps the user's casing in history).
    pub keyword: String,
    /// The logical source line, continuations joined.
    pub original: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// `KEY=value` from ENV or LABEL; `legacy` for the `ENV KEY value` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub legacy: bool,
}

/// One name of an ARG instruction, with its default if given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    pub key: String,
    pub default: Option<String>,
}

/// A command for RUN, CMD, ENTRYPOINT or HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string, run through SHELL.
    pub args: Vec<String>,
    /// True for shell form (the stage's SHELL is prepended when run).
    pub prepend_shell: bool,
    /// Heredoc bodies attached to the command (RUN only).
    pub files: Vec<InlineFile>,
}

/// A heredoc given to RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    pub name: String,
    pub data: String,
    pub chomp: bool,
}

/// A heredoc used as a COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceContent {
    pub path: String,
    pub data: String,
    pub expand: bool,
}

/// COPY and ADD share their sources, destination and file options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyArgs {
    pub sources: Vec<String>,
    pub contents: Vec<SourceContent>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub excludes: Vec<String>,
    /// COPY only: a stage name, index or image.
    pub from: Option<String>,
    /// COPY only.
    pub parents: bool,
    /// ADD only.
    pub checksum: Option<String>,
    /// ADD only.
    pub keep_git_dir: Option<bool>,
    /// ADD only.
    pub unpack: Option<bool>,
}

/// HEALTHCHECK's configuration, durations in nanoseconds as in image configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `["NONE"]`, `["CMD", argv...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// RUN `--mount` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// Cache mount sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One RUN `--mount`, as BuildKit reads its CSV fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    pub size_limit: Option<u64>,
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub required: bool,
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// RUN `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Default,
    None,
    Host,
}

/// RUN `--security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

/// What an instruction says, with its flags parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "instruction", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    From {
        base: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Arg {
        args: Vec<ArgDef>,
    },
    Env {
        pairs: Vec<KeyValue>,
    },
    Label {
        pairs: Vec<KeyValue>,
    },
    Maintainer {
        maintainer: String,
    },
    Run {
        command: CommandLine,
        /// `--mount` values, split into fields; variables in them are
        /// expanded at build time ([`MountSpec::expand`]).
        mounts: Vec<MountSpec>,
        network: Option<Network>,
        security: Option<Security>,
    },
    Cmd {
        command: CommandLine,
    },
    Entrypoint {
        command: CommandLine,
    },
    Shell {
        shell: Vec<String>,
    },
    Copy(CopyArgs),
    Add(CopyArgs),
    Workdir {
        path: String,
    },
    User {
        user: String,
    },
    Expose {
        ports: Vec<String>,
    },
    Volume {
        paths: Vec<String>,
    },
    Healthcheck(Health),
    Stopsignal {
        signal: String,
    },
    Onbuild {
        /// The trigger as it will run in a child build (heredocs appended).
        expression: String,
    },
}

impl Instruction {
    /// The lower-case instruction name (`from`, `run`...).
    pub fn name(&self) -> &'static str {
        match &self.kind {
            Kind::From { .. } => "from",
            Kind::Arg { .. } => "arg",
            Kind::Env { .. } => "env",
            Kind::Label { .. } => "label",
            Kind::Maintainer { .. } => "maintainer",
            Kind::Run { .. } => "run",
            Kind::Cmd { .. } => "cmd",
            Kind::Entrypoint { .. } => "entrypoint",
            Kind::Shell { .. } => "shell",
            Kind::Copy(_) => "copy",
            Kind::Add(_) => "add",
            Kind::Workdir { .. } => "workdir",
            Kind::User { .. } => "user",
            Kind::Expose { .. } => "expose",
            Kind::Volume { .. } => "volume",
            Kind::Healthcheck(_) => "healthcheck",
            Kind::Stopsignal { .. } => "stopsignal",
            Kind::Onbuild { .. } => "onbuild",
        }
    }
}

/// Types one node.
pub fn parse_instruction(node: &Node) -> Result<Instruction, InstructionError> {
    let req = Request::new(node);
    let kind = match node.command().as_str() {
        "from" => parse_from(&req)?,
        "arg" => parse_arg(&req)?,
        "env" => Kind::Env {
            pairs: req.no_flags()?.key_values("ENV")?,
        },
        "label" => Kind::Label {
            pairs: req.no_flags()?.key_values("LABEL")?,
        },
        "maintainer" => Kind::Maintainer {
            maintainer: req.exactly_one("MAINTAINER")?.clone(),
        },
        "run" => parse_run(&req)?,
        "cmd" => Kind::Cmd {
            command: req.no_flags()?.command_line(),
        },
        "entrypoint" => Kind::Entrypoint {
            command: req.no_flags()?.command_line(),
        },
        "shell" => parse_shell(&req)?,
        "copy" => Kind::Copy(parse_copy(&req, false)?),
        "add" => Kind::Add(parse_copy(&req, true)?),
        "workdir" => Kind::Workdir {
            path: req.exactly_one("WORKDIR")?.clone(),
        },
        "user" => Kind::User {
            user: req.exactly_one("USER")?.clone(),
        },
        "expose" => {
            let mut ports = req.at_least_one("EXPOSE")?.to_vec();
            req.no_flags()?;
            ports.sort();
            Kind::Expose { ports }
        }
        "volume" => parse_volume(&req)?,
        "healthcheck" => Kind::Healthcheck(parse_healthcheck(&req)?),
        // BuildKit does not parse STOPSIGNAL's flags; neither do we.
        "stopsignal" => Kind::Stopsignal {
            signal: req.exactly_one_unchecked("STOPSIGNAL")?.clone(),
        },
        "onbuild" => parse_onbuild(&req)?,
        _ => {
            let mut err = req.error(format!("unknown instruction: {}", node.keyword));
            err.hint = Some(match suggest(&node.keyword, KEYWORDS, false) {
                Some(s) => format!("did you mean {s}?"),
                None => format!("instructions are: {}", KEYWORDS.join(", ")),
            });
            return Err(err);
        }
    };
    Ok(Instruction {
        span: node.span,
        keyword: node.keyword.clone(),
        original: node.original.clone(),
        kind,
    })
}

/// BuildKit's `suggest.Search`: the closest option at Levenshtein distance
/// below 3, matching the user's casing when the search ignores case.
pub fn suggest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let norm = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let val = norm(value);
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let o = norm(opt);
        if o == val {
            return None;
        }
        let d = levenshtein(&val, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if value.chars().all(|c| !c.is_lowercase()) {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What a line parser needs from a node.
struct Request<'a> {
    node: &'a Node,
    args: Vec<String>,
}

/// The values of an instruction's flags, once parsed.
#[derive(Default)]
struct Flags {
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
    bools: BTreeMap<&'static str, bool>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }
    fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
    fn bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
}

#[derive(Clone, Copy)]
enum FlagType {
    Bool,
    String,
    Strings,
}

impl<'a> Request<'a> {
    fn new(node: &'a Node) -> Request<'a> {
        Request {
            node,
            args: node.arg_values(),
        }
    }

    fn error(&self, message: impl Into<String>) -> InstructionError {
        InstructionError {
            line: self.node.span.start_line,
            column: self.node.span.column,
            message: message.into(),
            hint: None,
        }
    }

    /// An error pointing at `needle` in the instruction's first line.
    fn error_at(&self, needle: &str, message: impl Into<String>) -> InstructionError {
        let mut err = self.error(message);
        if let Some(offset) = self.node.original.find(needle) {
            err.column += self.node.original[..offset].chars().count();
        }
        err
    }

    fn with_hint(mut err: InstructionError, hint: impl Into<String>) -> InstructionError {
        err.hint = Some(hint.into());
        err
    }

    /// BuildKit's `BFlags.Parse` against the instruction's declared flags.
    fn flags(&self, declared: &[(&'static str, FlagType)]) -> Result<Flags, InstructionError> {
        let mut out = Flags::default();
        let mut used: Vec<&str> = Vec::new();
        for raw in &self.node.flags {
            if raw == "--" {
                break;
            }
            let Some(body) = raw.strip_prefix("--") else {
                return Err(self.error_at(raw, format!("arg should start with -- : {raw}")));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let flag_name = format!("--{name}");
            let Some(&(decl, kind)) = declared.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
                let err = self.error_at(raw, format!("unknown flag: {flag_name}"));
                let hint = match suggest(name, &names, true) {
                    Some(s) => format!("did you mean --{s}?"),
                    None if names.is_empty() => {
                        format!("{} takes no flags", self.node.keyword.to_uppercase())
                    }
                    None => format!(
                        "{} accepts {}",
                        self.node.keyword.to_uppercase(),
                        names
                            .iter()
                            .map(|n| format!("--{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(Self::with_hint(err, hint));
            };
            if used.contains(&decl) && !matches!(kind, FlagType::Strings) {
                return Err(self.error_at(raw, format!("duplicate flag specified: {flag_name}")));
            }
            used.push(decl);
            let missing = || {
                Self::with_hint(
                    self.error_at(raw, format!("missing a value on flag: {flag_name}")),
                    format!("write {flag_name}=VALUE"),
                )
            };
            match kind {
                FlagType::Bool => {
                    let v = match value.map(str::to_ascii_lowercase).as_deref() {
                        None => true,
                        Some("") => return Err(missing()),
                        Some("true") => true,
                        Some("false") => false,
                        Some(other) => {
                            return Err(self.error_at(
                                raw,
                                format!(
                                    "expecting boolean value for flag {flag_name}, not: {other}"
                                ),
                            ));
                        }
                    };
                    out.bools.insert(decl, v);
                }
                FlagType::String => {
                    out.strings
                        .insert(decl, value.ok_or_else(missing)?.to_string());
                }
                FlagType::Strings => {
                    out.lists
                        .entry(decl)
                        .or_default()
                        .push(value.ok_or_else(missing)?.to_string());
                }
            }
        }
        Ok(out)
    }

    fn no_flags(&self) -> Result<&Self, InstructionError> {
        self.flags(&[])?;
        Ok(self)
    }

    fn at_least_one(&self, cmd: &str) -> Result<&[String], InstructionError> {
        if self.args.is_empty() {
            return Err(Self::with_hint(
                self.error(format!("{cmd} requires at least one argument")),
                format!("see `{cmd}` in the Dockerfile reference"),
            ));
        }
        Ok(&self.args)
    }

    fn exactly_one_unchecked(&self, cmd: &str) -> Result<&String, InstructionError> {
        if self.args.len() != 1 {
            return Err(Self::with_hint(
                self.error(format!("{cmd} requires exactly one argument")),
                format!("quote an argument that contains spaces: {cmd} \"a b\""),
            ));
        }
        Ok(&self.args[0])
    }

    fn exactly_one(&self, cmd: &str) -> Result<&String, InstructionError> {
        let arg = self.exactly_one_unchecked(cmd)?;
        self.no_flags()?;
        Ok(arg)
    }

    fn key_values(&self, cmd: &str) -> Result<Vec<KeyValue>, InstructionError> {
        if self.args.is_empty() {
            return Err(Self::with_hint(
                self.error(format!("{cmd} requires at least one argument")),
                format!("write {cmd} NAME=VALUE"),
            ));
        }
        if !self.args.len().is_multiple_of(3) {
            return Err(self.error(format!("Bad input to {cmd}, too many arguments")));
        }
        let mut out = Vec::new();
        for triple in self.args.chunks(3) {
            if triple[0].is_empty() {
                return Err(self.error(format!("{cmd} names can not be blank")));
            }
            out.push(KeyValue {
                key: triple[0].clone(),
                value: triple[1].clone(),
                legacy: triple[2].is_empty(),
            });
        }
        Ok(out)
    }

    /// BuildKit's `parseShellDependentCommand`.
    fn command_line(&self) -> CommandLine {
        let args = if self.args.is_empty() {
            Vec::new()
        } else if self.node.json {
            self.args.clone()
        } else {
            vec![self.args.join(" ")]
        };
        CommandLine {
            args,
            prepend_shell: !self.node.json,
            files: self
                .node
                .heredocs
                .iter()
                .map(|h| InlineFile {
                    name: h.name.clone(),
                    data: h.content.clone(),
                    chomp: h.chomp,
                })
                .collect(),
        }
    }
}

/// Stage names: `^[a-z][a-z0-9-_.]*$` after lower-casing.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

fn parse_from(req: &Request) -> Result<Kind, InstructionError> {
    let args = &req.args;
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            if !valid_stage_name(&name) {
                return Err(Request::with_hint(
                    req.error_at(
                        &args[2],
                        format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            go_quote(&args[2])
                        ),
                    ),
                    "stage names match [a-z][a-z0-9-_.]*",
                ));
            }
            Some(name)
        }
        1 => None,
        _ => {
            return Err(Request::with_hint(
                req.error("FROM requires either one or three arguments"),
                "write FROM IMAGE or FROM IMAGE AS NAME",
            ));
        }
    };
    let flags = req.flags(&[("platform", FlagType::String)])?;
    Ok(Kind::From {
        base: args[0].clone(),
        name,
        platform: flags.string("platform"),
    })
}

fn parse_arg(req: &Request) -> Result<Kind, InstructionError> {
    req.at_least_one("ARG")?;
    let mut args = Vec::new();
    for arg in &req.args {
        let def = match arg.split_once('=') {
            Some(("", _)) => return Err(req.error("ARG names can not be blank")),
            Some((k, v)) => ArgDef {
                key: k.to_string(),
                default: Some(v.to_string()),
            },
            None => ArgDef {
                key: arg.clone(),
                default: None,
            },
        };
        args.push(def);
    }
    Ok(Kind::Arg { args })
}

fn parse_run(req: &Request) -> Result<Kind, InstructionError> {
    let flags = req.flags(&[
        ("mount", FlagType::Strings),
        ("network", FlagType::String),
        ("security", FlagType::String),
    ])?;
    let mut mounts = Vec::new();
    for raw in flags.list("mount") {
        // Values with variables are checked once expanded, at build time.
        let expanded = !raw.contains('$');
        let error = |e: MountError| match expanded {
            true => Request::with_hint(req.error_at(&raw, e.message), e.hint),
            false => req.error_at(&raw, e.message),
        };
        let spec = MountSpec::parse(&raw).map_err(error)?;
        if expanded {
            spec.expand(&mut |v| Ok(v.to_string())).map_err(error)?;
        }
        mounts.push(spec);
    }
    let network = match flags.string("network").as_deref() {
        None => None,
        Some("default") => Some(Network::Default),
        Some("none") => Some(Network::None),
        Some("host") => Some(Network::Host),
        Some(other) => {
            return Err(Request::with_hint(
                req.error_at(
                    "--network",
                    format!("unsupported network mode {}", go_quote(other)),
                ),
                "use --network=default, none or host",
            ));
        }
    };
    let security = match flags.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(Security::Sandbox),
        Some("insecure") => Some(Security::Insecure),
        Some(other) => {
            return Err(Request::with_hint(
                req.error_at(
                    "--security",
                    format!("unsupported security mode {}", go_quote(other)),
                ),
                "use --security=sandbox or insecure",
            ));
        }
    };
    Ok(Kind::Run {
        command: req.command_line(),
        mounts,
        network,
        security,
    })
}

fn parse_shell(req: &Request) -> Result<Kind, InstructionError> {
    req.no_flags()?;
    if req.args.is_empty() {
        return Err(req.error("SHELL requires at least one argument"));
    }
    if !req.node.json {
        return Err(Request::with_hint(
            req.error("SHELL requires the arguments to be in JSON form"),
            "write SHELL [\"/bin/sh\", \"-c\"]",
        ));
    }
    Ok(Kind::Shell {
        shell: req.args.clone(),
    })
}

fn parse_copy(req: &Request, add: bool) -> Result<CopyArgs, InstructionError> {
    let cmd = if add { "ADD" } else { "COPY" };
    if req.args.len() < 2 {
        return Err(Request::with_hint(
            req.error(format!(
                "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
            )),
            format!("write {cmd} SOURCE... DEST"),
        ));
    }
    let flags = if add {
        req.flags(&[
            ("chown", FlagType::String),
            ("chmod", FlagType::String),
            ("link", FlagType::Bool),
            ("keep-git-dir", FlagType::Bool),
            ("checksum", FlagType::String),
            ("unpack", FlagType::Bool),
            ("exclude", FlagType::Strings),
        ])?
    } else {
        req.flags(&[
            ("chown", FlagType::String),
            ("from", FlagType::String),
            ("chmod", FlagType::String),
            ("link", FlagType::Bool),
            ("exclude", FlagType::Strings),
            ("parents", FlagType::Bool),
        ])?
    };
    let (dest, sources) = req.args.split_last().expect("two or more args");
    if heredoc_marker(dest).is_some() {
        return Err(req.error_at(
            dest,
            format!("{cmd} cannot accept a heredoc as a destination"),
        ));
    }
    let docs: BTreeMap<&str, &Heredoc> = req
        .node
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h))
        .collect();
    let mut paths = Vec::new();
    let mut contents = Vec::new();
    for src in sources {
        match heredoc_marker(src) {
            Some(marker) => {
                let data = docs
                    .get(marker.name.as_str())
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                contents.push(SourceContent {
                    data: if marker.chomp {
                        chomp_heredoc_content(&data)
                    } else {
                        data
                    },
                    path: marker.name,
                    expand: marker.expand,
                });
            }
            None => paths.push(src.clone()),
        }
    }
    if let Some(chmod) = flags.string("chmod") {
        validate_chmod(req, &chmod)?;
    }
    Ok(CopyArgs {
        sources: paths,
        contents,
        dest: dest.clone(),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        excludes: flags.list("exclude"),
        from: flags.string("from"),
        parents: flags.bool("parents").unwrap_or(false),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.bool("unpack"),
    })
}

/// `--chmod` takes an octal mode; BuildKit also accepts symbolic modes
/// (`u+x`) in newer versions, which are checked at build time. Only reject
/// what can never be valid: an octal-looking value out of range.
fn validate_chmod(req: &Request, chmod: &str) -> Result<(), InstructionError> {
    if chmod.contains('$') || !chmod.chars().all(|c| c.is_ascii_digit()) {
        return Ok(());
    }
    match u32::from_str_radix(chmod, 8) {
        Ok(m) if m <= 0o7777 => Ok(()),
        _ => Err(Request::with_hint(
            req.error_at(chmod, format!("invalid chmod parameter: {chmod}")),
            "use an octal mode such as --chmod=0755",
        )),
    }
}

fn parse_volume(req: &Request) -> Result<Kind, InstructionError> {
    req.at_least_one("VOLUME")?;
    req.no_flags()?;
    let mut paths = Vec::new();
    for v in &req.args {
        let v = v.trim();
        if v.is_empty() {
            return Err(req.error("VOLUME specified can not be an empty string"));
        }
        paths.push(v.to_string());
    }
    Ok(Kind::Volume { paths })
}

fn parse_healthcheck(req: &Request) -> Result<Health, InstructionError> {
    let args = req.at_least_one("HEALTHCHECK")?;
    let typ = args[0].to_uppercase();
    let rest = &args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(req.error("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Health {
            test: vec!["NONE".into()],
            interval: 0,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 0,
        });
    }
    let flags = req.flags(&[
        ("interval", FlagType::String),
        ("timeout", FlagType::String),
        ("start-period", FlagType::String),
        ("start-interval", FlagType::String),
        ("retries", FlagType::String),
    ])?;
    if typ != "CMD" {
        return Err(Request::with_hint(
            req.error_at(
                &args[0],
                format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"),
            ),
            "write HEALTHCHECK CMD command, or HEALTHCHECK NONE",
        ));
    }
    let command: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else if req.node.json {
        rest.to_vec()
    } else {
        vec![rest.join(" ")]
    };
    if command.is_empty() {
        return Err(req.error("Missing command after HEALTHCHECK CMD"));
    }
    let mut test = vec![if req.node.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(command);
    let duration = |name: &str| -> Result<u64, InstructionError> {
        let Some(value) = flags.string(name) else {
            return Ok(0);
        };
        parse_interval(&value).map_err(|msg| {
            Request::with_hint(
                req.error_at(&format!("--{name}"), format!("--{name}: {msg}")),
                "use a duration such as 30s, 1m30s or 500ms",
            )
        })
    };
    let retries = match flags.string("retries") {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => {
                return Err(
                    req.error_at("--retries", format!("--retries cannot be negative ({n})"))
                );
            }
            Ok(n) if n <= i64::from(i32::MAX) => n as u32,
            _ => {
                return Err(Request::with_hint(
                    req.error_at(
                        "--retries",
                        format!("invalid --retries value {}", go_quote(&v)),
                    ),
                    "use a whole number such as --retries=3",
                ));
            }
        },
    };
    Ok(Health {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// A HEALTHCHECK interval: a Go duration, 0 or at least 1ms.
fn parse_interval(value: &str) -> Result<u64, String> {
    if value.is_empty() {
        return Ok(0);
    }
    let nanos = parse_go_duration(value)?;
    if nanos == 0 {
        return Ok(0);
    }
    if nanos < 1_000_000 {
        return Err("cannot be less than 1ms".into());
    }
    u64::try_from(nanos).map_err(|_| "duration out of range".to_string())
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or `0`,
/// in nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {}", go_quote(s))),
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(u),
                    go_quote(s)
                ));
            }
        };
        rest = &rest[unit_len..];
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse::<i128>().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(unit).ok_or_else(invalid)?;
        let mut scale = unit;
        for d in frac_part.chars().take(30) {
            scale /= 10;
            value += i128::from(d.to_digit(10).unwrap_or(0)) * scale;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
    }
    Ok(if neg { -total } else { total })
}

fn parse_onbuild(req: &Request) -> Result<Kind, InstructionError> {
    req.at_least_one("ONBUILD")?;
    req.no_flags()?;
    let trigger = req.args[0].trim().to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(req.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
        }
        "MAINTAINER" | "FROM" => {
            return Err(req.error(format!("{trigger} isn't allowed as an ONBUILD trigger")));
        }
        _ => {}
    }
    // The nested instruction must itself be valid.
    if let Some(Arg::Nested(child)) = req.node.args.first() {
        let mut child = (**child).clone();
        child.span = req.node.span;
        child.heredocs = req.node.heredocs.clone();
        parse_instruction(&child)?;
    }
    // `(?i)^\s*ONBUILD\s*` removed from the original line.
    let original = req.node.original.trim_start();
    let mut expression = match original.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => original[7..].trim_start().to_string(),
        _ => original.to_string(),
    };
    for heredoc in &req.node.heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Ok(Kind::Onbuild { expression })
}

/// A RUN `--mount` that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    pub message: String,
    pub hint: String,
}

fn mount_error(message: impl Into<String>) -> MountError {
    MountError {
        message: message.into(),
        hint: "see RUN --mount in the Dockerfile reference: type=bind|cache|tmpfs|secret|ssh,target=PATH,..."
            .into(),
    }
}

/// Splits a `--mount` value into CSV fields (double quotes group, `""` is a
/// literal quote), as BuildKit's csvvalue does.
fn csv_fields(value: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            '"' if at_start => quoted = true,
            '"' => {
                return Err(mount_error(format!(
                    "bare \" in non-quoted field in {value}"
                )));
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(mount_error(format!(
            "extraneous or missing \" in quoted field in {value}"
        )));
    }
    fields.push(field);
    Ok(fields)
}

/// A RUN `--mount` as written: its text split into fields once, by
/// BuildKit's CSV rules, values not yet expanded. Serialised as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    text: String,
    fields: Vec<String>,
}

impl Serialize for MountSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl MountSpec {
    /// Splits `text` into fields, with the check BuildKit makes before
    /// expansion: `from` may not use variables.
    pub fn parse(text: &str) -> Result<MountSpec, MountError> {
        let fields = csv_fields(text)?;
        for field in &fields {
            if let Some((key, v)) = field.split_once('=')
                && key.eq_ignore_ascii_case("from")
                && let Some(i) = v.find('$')
                && i != v.len() - 1
            {
                return Err(mount_error(
                    "'from' doesn't support variable expansion, define alias stage instead",
                ));
            }
        }
        Ok(MountSpec {
            text: text.to_owned(),
            fields,
        })
    }

    /// The `--mount` value as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The mount, each value expanded with `expand`, checked as BuildKit
    /// checks it.
    pub fn expand(
        &self,
        expand: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<Mount, MountError> {
        mount_of(&self.fields, expand)
    }
}

/// A mount from its fields, each value expanded with `expand`.
fn mount_of(
    fields: &[String],
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, MountError> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        size_limit: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    let parse_bool = |key: &str, v: &str| -> Result<bool, MountError> {
        go_parse_bool(v).ok_or_else(|| mount_error(format!("invalid value for {key}: {v}")))
    };
    for field in fields {
        let (key, raw) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(raw) = raw else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(mount_error(format!(
                        "unexpected key 'required' for mount type '{}'",
                        mount_type_name(m.kind)
                    )));
                }
                _ => {
                    return Err(mount_error(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
            continue;
        };
        let v = expand(raw).map_err(mount_error)?;
        match key.as_str() {
            "type" => {
                m.kind = match v.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let mut e = mount_error(format!("unsupported mount type {}", go_quote(&v)));
                        if let Some(s) =
                            suggest(&v, &["bind", "cache", "tmpfs", "secret", "ssh"], true)
                        {
                            e.hint = format!("did you mean type={s}?");
                        }
                        return Err(e);
                    }
                }
            }
            "from" => m.from = Some(v),
            "source" | "src" => m.source = Some(v),
            "target" | "dst" | "destination" => m.target = Some(v),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &v)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &v)?;
                ro_auto = false;
            }
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = parse_bool(&key, &v)?;
            }
            "size" if m.kind == MountType::Tmpfs => {
                m.size_limit = Some(
                    ram_in_bytes(&v)
                        .ok_or_else(|| mount_error(format!("invalid value for size: {v}")))?,
                );
            }
            "required" | "size" => {
                return Err(mount_error(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    mount_type_name(m.kind)
                )));
            }
            "id" => m.id = Some(v),
            "sharing" => {
                m.sharing = Some(match v.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(mount_error(format!(
                            "unsupported sharing value {}",
                            go_quote(&v)
                        )));
                    }
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| mount_error(format!("invalid value {v} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    v.parse()
                        .map_err(|_| mount_error(format!("invalid value {v} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    v.parse()
                        .map_err(|_| mount_error(format!("invalid value {v} for gid")))?,
                )
            }
            "env" => m.env = Some(v),
            _ => {
                const KEYS: &[&str] = &[
                    "type",
                    "from",
                    "source",
                    "target",
                    "readonly",
                    "id",
                    "sharing",
                    "required",
                    "size",
                    "mode",
                    "uid",
                    "gid",
                    "src",
                    "dst",
                    "destination",
                    "ro",
                    "rw",
                    "readwrite",
                    "env",
                ];
                let mut e = mount_error(format!("unexpected key '{key}' in '{field}'"));
                if let Some(s) = suggest(&key, KEYS, true) {
                    e.hint = format!("did you mean {s}=?");
                }
                return Err(e);
            }
        }
    }
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        let name = mount_type_name(m.kind);
        if m.mode.is_some() {
            return Err(mount_error(format!(
                "mode not allowed for \"{name}\" type mounts"
            )));
        }
        if m.uid.is_some() {
            return Err(mount_error(format!(
                "uid not allowed for \"{name}\" type mounts"
            )));
        }
        if m.gid.is_some() {
            return Err(mount_error(format!(
                "gid not allowed for \"{name}\" type mounts"
            )));
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(mount_error("secret mount should not have a from"));
        }
        if m.sharing.is_some() {
            return Err(mount_error("secret mount should not define sharing"));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(mount_error(
                "invalid secret mount. one of source, target required",
            ));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(mount_error("both source and id can't be set"));
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(mount_error(format!(
            "invalid cache sharing set for {} mount",
            mount_type_name(m.kind)
        )));
    }
    Ok(m)
}

fn mount_type_name(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5GiB`, `512k`, binary units.
fn ram_in_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let num_len = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let number: f64 = v[..num_len].parse().ok()?;
    let unit = v[num_len..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0_f64.powi(3),
        "t" => 1024.0_f64.powi(4),
        "p" => 1024.0_f64.powi(5),
        _ => return None,
    };
    let bytes = number * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn one(src: &str) -> Result<Instruction, InstructionError> {
        let ast = parse(src).unwrap();
        parse_instruction(&ast.nodes[0])
    }

    #[test]
    fn unknown_instruction_suggests() {
        let err = one("RUNN echo\n").unwrap_err();
        assert_eq!(err.message, "unknown instruction: RUNN");
        assert_eq!(err.hint.as_deref(), Some("did you mean RUN?"));
        let err = one("cpy a b\n").unwrap_err();
        assert_eq!(err.hint.as_deref(), Some("did you mean copy?"));
    }

    #[test]
    fn flags_are_validated_per_instruction() {
        let err = one("COPY --form=build a b\n").unwrap_err();
        assert_eq!(err.message, "unknown flag: --form");
        assert_eq!(err.hint.as_deref(), Some("did you mean --from?"));
        assert_eq!(err.column, 6);
        let err = one("COPY --from a b\n").unwrap_err();
        assert_eq!(err.message, "missing a value on flag: --from");
        let err = one("COPY --link=maybe a b\n").unwrap_err();
        assert!(err.message.starts_with("expecting boolean value"));
        let err = one("COPY --from=a --from=b a b\n").unwrap_err();
        assert!(err.message.starts_with("duplicate flag"));
        let ok = one("COPY --exclude=*.md --exclude=x --link a b\n").unwrap();
        let Kind::Copy(c) = ok.kind else { panic!() };
        assert_eq!(c.excludes, ["*.md", "x"]);
        assert!(c.link);
        assert!(one("ENV --x=1 A=b\n").is_err());
        assert!(one("ADD --checksum=sha256:abc --keep-git-dir --unpack=false u /d\n").is_ok());
        assert!(one("COPY --checksum=sha256:abc u /d\n").is_err());
    }

    #[test]
    fn healthcheck_durations() {
        let h = one("HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f x\n")
            .unwrap();
        let Kind::Healthcheck(h) = h.kind else {
            panic!()
        };
        assert_eq!(h.test, ["CMD-SHELL", "curl -f x"]);
        assert_eq!(h.interval, 90_000_000_000);
        assert_eq!(h.timeout, 500_000_000);
        assert_eq!(h.retries, 3);
        let err = one("HEALTHCHECK --interval=10 CMD true\n").unwrap_err();
        assert!(err.message.contains("missing unit"), "{err:?}");
        let err = one("HEALTHCHECK --timeout=10us CMD true\n").unwrap_err();
        assert!(err.message.contains("less than 1ms"));
        assert!(one("HEALTHCHECK --retries=-1 CMD true\n").is_err());
        assert!(one("HEALTHCHECK NONE x\n").is_err());
        assert!(one("HEALTHCHECK CMD\n").is_err());
        assert!(one("HEALTHCHECK FOO x\n").is_err());
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_go_duration(".5s").unwrap(), 500_000_000);
        assert!(parse_go_duration("1.s").is_ok());
        assert!(parse_go_duration(".s").is_err());
    }

    /// A `--mount` value read, its values taken as they are.
    fn mount(text: &str) -> Result<Mount, MountError> {
        MountSpec::parse(text)?.expand(&mut |v| Ok(v.into()))
    }

    #[test]
    fn mounts_parse_like_buildkit() {
        let m =
            mount("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=10").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.mode, Some(0o700));
        assert!(!m.readonly);
        let m = mount("type=secret,id=tok,required").unwrap();
        assert!(m.required && m.readonly);
        let m = mount("target=/src,\"from=a,b\"").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(m.from.as_deref(), Some("a,b"));
        for bad in [
            "type=bnd",
            "type=bind,mode=0700",
            "type=secret",
            "type=tmpfs,size=lots",
            "type=bind,sharing=shared",
            "type=cache,foo=bar",
            "type=bind,required",
            "readonly=maybe",
        ] {
            assert!(mount(bad).is_err(), "{bad}");
        }
        assert!(one("RUN --mount=type=bnd true\n").is_err());
        assert!(one("RUN --mount=from=$X,target=/a true\n").is_err());
        assert!(one("RUN --mount=type=cache,uid=$UID,target=/a true\n").is_ok());
        assert!(one("RUN --network=bridge true\n").is_err());
        assert!(one("RUN --network=none --security=insecure true\n").is_ok());
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
    }

    #[test]
    fn from_stage_names() {
        let f = one("FROM node:14 AS Build\n").unwrap();
        assert_eq!(
            f.kind,
            Kind::From {
                base: "node:14".into(),
                name: Some("build".into()),
                platform: None
            }
        );
        assert!(one("FROM a AS 1x\n").is_err());
        assert!(one("FROM a b\n").is_err());
        assert!(one("FROM --platform=linux/arm64 a\n").is_ok());
    }

    #[test]
    fn copy_heredoc_sources() {
        let ast = parse("COPY <<-EOF /etc/x\n\thello\n\tEOF\n").unwrap();
        let c = parse_instruction(&ast.nodes[0]).unwrap();
        let Kind::Copy(c) = c.kind else { panic!() };
        assert!(c.sources.is_empty());
        assert_eq!(c.contents[0].data, "hello\n");
        assert!(one("COPY a <<EOF\nx\nEOF\n").is_err());
    }

    #[test]
    fn onbuild_rules() {
        assert!(one("ONBUILD ONBUILD RUN x\n").is_err());
        assert!(one("ONBUILD FROM x\n").is_err());
        assert!(one("ONBUILD COPY --bogus a b\n").is_err());
        let o = one("onbuild   RUN echo hi\n").unwrap();
        assert_eq!(
            o.kind,
            Kind::Onbuild {
                expression: "RUN echo hi".into()
            }
        );
    }
}
