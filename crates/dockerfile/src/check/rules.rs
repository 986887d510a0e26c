//! The individual rules of `hoist check`, over a planned Dockerfile.

use super::{Finding, Severity};
use crate::instructions::{Instruction, Kind, suggest};
use crate::plan::{Base, Options, PROXY_ARGS, Plan, Scope, expand_instruction, platform_args};
use crate::shell::Lexer;
use crate::{Ast, Span};

pub(super) fn warning(rule: &'static str, span: Span, message: String, hint: &str) -> Finding {
    Finding {
        severity: Severity::Warning,
        rule,
        line: span.start_line,
        column: span.column,
        message,
        hint: Some(hint.to_string()),
    }
}

/// Errors that need the whole plan: `COPY --from` naming no stage.
pub fn errors(plan: &Plan) -> Vec<Finding> {
    let names: Vec<&str> = plan
        .stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    let mut out = Vec::new();
    for stage in &plan.stages {
        for source in &stage.image_sources {
            // A bare word that is no stage is almost always a typo for one;
            // an image is written with a tag, digest or registry path.
            if source.contains([':', '@', '/']) {
                continue;
            }
            let instr = stage
                .instructions
                .iter()
                .find(|i| matches!(&i.kind, Kind::Copy(c) if c.from.as_deref() == Some(source.as_str())))
                .or_else(|| stage.instructions.iter().find(|i| i.original.contains(source.as_str())));
            let span = instr.map(|i| i.span).unwrap_or(stage.from.span);
            let hint = match suggest(source, &names, false) {
                Some(s) => format!("did you mean --from={s}?"),
                None => format!(
                    "define a stage with `FROM ... AS {source}`, or name an image with its tag (`{source}:TAG`)"
                ),
            };
            let mut column = span.column;
            if let Some(i) = instr
                && let Some(off) = i.original.find("--from")
            {
                column += i.original[..off].chars().count();
            }
            out.push(Finding::error(
                "UndefinedStage",
                span.start_line,
                column,
                format!("--from={source} names no stage of this Dockerfile"),
                Some(hint),
            ));
        }
    }
    out
}

/// The best-practice warnings.
pub fn warnings(ast: &Ast, plan: &Plan, source: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let all = plan
        .stages
        .iter()
        .flat_map(|s| std::iter::once(&s.from).chain(&s.instructions));
    for instr in all {
        match &instr.kind {
            Kind::Maintainer { .. } => out.push(warning(
                "MaintainerDeprecated",
                instr.span,
                "MAINTAINER is deprecated".into(),
                "use LABEL org.opencontainers.image.authors=\"name <email>\" instead",
            )),
            Kind::Cmd { command } | Kind::Entrypoint { command }
                if command.prepend_shell
                    && !command.args.is_empty()
                    && !shell_set_before(plan, instr) =>
            {
                out.push(warning(
                    "JSONArgsRecommended",
                    instr.span,
                    format!(
                        "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                        instr.keyword.to_uppercase()
                    ),
                    "in shell form the app runs under /bin/sh -c and never receives SIGTERM; write [\"executable\", \"arg\"]",
                ))
            }
            Kind::Arg { args } => {
                for a in args {
                    secret_name(&mut out, instr, "ARG", &a.key);
                }
            }
            Kind::Env { pairs } => {
                for p in pairs {
                    secret_name(&mut out, instr, "ENV", &p.key);
                }
            }
            _ => {}
        }
    }
    for arg in &plan.global_args {
        if is_secret_name(&arg.key) {
            let span = Span {
                start_line: arg.line,
                end_line: arg.line,
                column: 1,
            };
            out.push(secret_warning(span, "ARG", &arg.key));
        }
    }
    for stage in &plan.stages {
        if let Base::Image(image) = &stage.base
            && let Some(message) = unpinned(image)
        {
            out.push(warning(
                "BaseImageUnpinned",
                stage.from.span,
                message,
                "pin the base image with a version tag (node:14-alpine) or a digest (@sha256:...) so that builds are repeatable",
            ));
        }
        let windows = stage
            .platform
            .as_deref()
            .is_some_and(|p| p.starts_with("windows"))
            || matches!(&stage.base, Base::Image(image) if windows_image(image));
        let mut has_workdir = false;
        for instr in &stage.instructions {
            if let Kind::Workdir { path } = &instr.kind {
                let path = path.trim_matches(|c| c == '"' || c == '\'');
                if !has_workdir && !absolute_path(path, windows) && !path.starts_with('$') {
                    out.push(warning(
                        "WorkdirRelativePath",
                        instr.span,
                        format!("relative workdir {path} can have unexpected results if the base image changes"),
                        if windows {
                            "use an absolute path, e.g. WORKDIR C:\\app"
                        } else {
                            "use an absolute path, e.g. WORKDIR /app"
                        },
                    ));
                }
                has_workdir = true;
            }
        }
    }
    if let Some(f) = final_stage_root(plan) {
        out.push(f);
    }
    out.extend(undefined_vars(ast, plan, source));
    out
}

fn secret_name(out: &mut Vec<Finding>, instr: &Instruction, kind: &str, key: &str) {
    if is_secret_name(key) {
        out.push(secret_warning(instr.span, kind, key));
    }
}

fn secret_warning(span: Span, kind: &str, key: &str) -> Finding {
    warning(
        "SecretsUsedInArgOrEnv",
        span,
        format!(
            "do not use {kind} for sensitive data ({kind} \"{key}\"): its value is kept in the image"
        ),
        "pass secrets with RUN --mount=type=secret and `hoist build --secret id=...,src=...`",
    )
}

/// BuildKit's SecretsUsedInArgOrEnv: a name made of words among the secret
/// ones (case and `_`/`-` split), unless it says it is public.
pub fn is_secret_name(key: &str) -> bool {
    const SECRET: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            words.push(std::mem::take(&mut current));
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase();
        current.extend(c.to_lowercase());
    }
    words.push(current);
    let words: Vec<String> = words.into_iter().filter(|w| !w.is_empty()).collect();
    if words.iter().any(|w| w == "public") {
        return false;
    }
    words.iter().any(|w| SECRET.contains(&w.as_str()))
}

/// An image reference with no tag and no digest, or tagged `latest`.
fn unpinned(image: &str) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some(format!(
            "base image {image} has no tag: it means {image}:latest, which changes over time"
        )),
        Some((_, "latest")) => Some(format!(
            "base image {image} uses the latest tag, which changes over time"
        )),
        Some(_) => None,
    }
}

/// Whether a SHELL instruction comes before `instr` in its stage or the
/// stages it is built on: BuildKit's JSONArgsRecommended then stays quiet,
/// as the shell form is what the author chose.
fn shell_set_before(plan: &Plan, instr: &crate::instructions::Instruction) -> bool {
    let Some(mut stage) = plan
        .stages
        .iter()
        .find(|s| s.instructions.iter().any(|i| std::ptr::eq(i, instr)))
    else {
        return false;
    };
    let mut before = stage
        .instructions
        .iter()
        .take_while(|i| !std::ptr::eq(*i, instr))
        .collect::<Vec<_>>();
    loop {
        if before.iter().any(|i| matches!(i.kind, Kind::Shell { .. })) {
            return true;
        }
        match stage.base {
            Base::Stage(i) => {
                stage = &plan.stages[i];
                before = stage.instructions.iter().collect();
            }
            _ => return false,
        }
    }
}

/// Whether `path` is absolute: from `/`, or on Windows also from a drive
/// (`C:/app`, `F:\\app`) or a backslash.
fn absolute_path(path: &str, windows: bool) -> bool {
    if path.starts_with('/') {
        return true;
    }
    let bytes = path.as_bytes();
    windows
        && (path.starts_with('\\')
            || (bytes.len() >= 3
                && bytes[0].is_ascii_alphabetic()
                && bytes[1] == b':'
                && matches!(bytes[2], b'/' | b'\\')))
}

/// Whether an image name is a Windows base (servercore, nanoserver...),
/// where a Unix user rule means nothing.
fn windows_image(image: &str) -> bool {
    let lower = image.to_ascii_lowercase();
    ["windows", "nanoserver", "servercore"]
        .iter()
        .any(|w| lower.contains(w))
}

/// The final stage's user, following internal base stages. Quiet for a
/// `FROM scratch` image in which nothing runs (no RUN, CMD or ENTRYPOINT:
/// an image of files), and for Windows images.
fn final_stage_root(plan: &Plan) -> Option<Finding> {
    let target = &plan.stages[plan.target];
    if target
        .platform
        .as_deref()
        .is_some_and(|p| p.starts_with("windows"))
    {
        return None;
    }
    let mut stage = target;
    let mut runs = false;
    loop {
        runs |= stage.instructions.iter().any(|i| {
            matches!(
                i.kind,
                Kind::Run { .. } | Kind::Cmd { .. } | Kind::Entrypoint { .. }
            )
        });
        let user = stage.instructions.iter().rev().find_map(|i| match &i.kind {
            Kind::User { user } => Some((user.clone(), i.span)),
            _ => None,
        });
        if let Some((user, span)) = user {
            let name = user.split(':').next().unwrap_or("");
            if name == "root" || name == "0" {
                return Some(warning(
                    "FinalStageRunsAsRoot",
                    span,
                    format!("the final stage runs as root (USER {user})"),
                    "create an unprivileged user and switch to it, e.g. USER 1001",
                ));
            }
            return None;
        }
        match stage.base {
            Base::Stage(i) => stage = &plan.stages[i],
            Base::Scratch => break,
            Base::Image(_) => break,
        }
    }
    match &stage.base {
        Base::Image(image) if windows_image(image) => None,
        Base::Image(image) => Some(warning(
            "FinalStageRunsAsRoot",
            target.from.span,
            format!(
                "the final stage sets no USER, so it runs as root unless the base image {image} sets one"
            ),
            "create an unprivileged user and switch to it, e.g. RUN adduser -D -u 1001 app, then USER 1001",
        )),
        _ if !runs => None,
        _ => Some(warning(
            "FinalStageRunsAsRoot",
            target.from.span,
            "the final stage sets no USER, so it runs as root".into(),
            "add USER 65532 (a numeric user needs no /etc/passwd entry, which a scratch image lacks)",
        )),
    }
}

/// Variables the builder expands (COPY, ENV, WORKDIR...) that nothing in
/// scope defines. RUN is left alone: its variables are the shell's.
/// Where `$name` or `${name...}` is first used within the physical lines
/// of `span`: its line and 1-based column, at the `$`.
fn find_use(lines: &[&str], span: Span, name: &str) -> Option<(usize, usize)> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    for number in span.start_line..=span.end_line {
        let line = lines.get(number.checked_sub(1)?)?;
        let mut from = 0;
        while let Some(at) = line[from..].find('$').map(|i| i + from) {
            let rest = &line[at + 1..];
            let braced = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_prefix(name))
                .is_some_and(|after| after.starts_with(['}', ':', '-', '+', '?', '#', '%', '/']));
            let bare = rest
                .strip_prefix(name)
                .is_some_and(|after| !after.starts_with(word));
            if braced || bare {
                return Some((number, line[..at].chars().count() + 1));
            }
            from = at + 1;
        }
    }
    None
}

fn undefined_vars(ast: &Ast, plan: &Plan, source: &str) -> Vec<Finding> {
    let lines: Vec<&str> = source.lines().collect();
    // Always set in a container, whatever the base image.
    const STANDARD: &[&str] = &["PATH", "HOME", "HOSTNAME", "TERM"];
    let lexer = Lexer::new(ast.escape);
    let opts = Options::default();
    let mut out = Vec::new();
    let mut final_scopes: Vec<Scope> = Vec::new();
    for stage in &plan.stages {
        let mut scope = match stage.base {
            Base::Stage(i) => final_scopes[i].clone(),
            _ => Scope::default(),
        };
        let image = match &stage.base {
            Base::Image(i) => Some(i.clone()),
            _ => None,
        };
        // Only ENV carries into a stage built on this one; ARGs do not.
        let mut env_only = scope.clone();
        let defined_names: Vec<String> = scope.keys().map(String::from).collect();
        for instr in &stage.instructions {
            let Ok((expanded, unmatched)) = expand_instruction(instr, &scope, &lexer) else {
                continue;
            };
            for name in unmatched {
                // Positional and special parameters ($1, $@...) are the
                // shell's, never a Dockerfile variable.
                let positional = !name.starts_with(|c: char| c.is_alphabetic() || c == '_');
                if positional
                    || STANDARD.contains(&name.as_str())
                    || PROXY_ARGS.contains(&name.as_str())
                {
                    continue;
                }
                let mut known: Vec<&str> = scope.keys().collect();
                known.extend(defined_names.iter().map(String::as_str));
                let hint = match suggest(&name, &known, true) {
                    Some(s) => format!("did you mean ${s}?"),
                    None => format!("declare it with ARG {name} or ENV {name}=..."),
                };
                let origin = image
                    .as_ref()
                    .map(|i| format!(" (unless the base image {i} sets it)"))
                    .unwrap_or_default();
                let mut f = warning(
                    "UndefinedVar",
                    instr.span,
                    format!("usage of undefined variable ${name}{origin}"),
                    &hint,
                );
                if let Some((line, column)) = find_use(&lines, instr.span, &name) {
                    f.line = line;
                    f.column = column;
                }
                out.push(f);
            }
            match &expanded.kind {
                Kind::Arg { args } => {
                    for a in args {
                        let global = plan
                            .global_args
                            .iter()
                            .find(|g| g.key == a.key)
                            .and_then(|g| g.value.clone());
                        let predefined = platform_args(&opts)
                            .into_iter()
                            .find(|(k, _)| *k == a.key)
                            .map(|(_, v)| v);
                        let value = a
                            .default
                            .clone()
                            .or(global)
                            .or(predefined)
                            .unwrap_or_default();
                        scope.set(&a.key, &value);
                    }
                }
                Kind::Env { pairs } => {
                    for p in pairs {
                        scope.set(&p.key, &p.value);
                        env_only.set(&p.key, &p.value);
                    }
                }
                _ => {}
            }
        }
        final_scopes.push(env_only);
    }
    out
}
