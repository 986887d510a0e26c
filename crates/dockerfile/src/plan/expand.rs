//! Variable expansion of instruction words, with Docker's rules for which
//! instructions expand which words.
//!
//! The builder (not the shell) expands: ARG names and defaults; ENV and
//! LABEL keys and values; COPY/ADD sources, destination, `--chown`,
//! `--chmod`, `--checksum` and `--exclude`; WORKDIR, USER, VOLUME,
//! STOPSIGNAL; EXPOSE (split into words). RUN, CMD, ENTRYPOINT, SHELL,
//! HEALTHCHECK, MAINTAINER and ONBUILD are left to the shell or taken
//! literally; RUN `--mount` values are expanded when the mount is read.

use crate::instructions::{CopyArgs, Instruction, KeyValue, Kind};
use crate::shell::{Lexer, ShellError, Vars};
use std::collections::{BTreeMap, BTreeSet};

/// The variables in scope at one point of a stage (ARG and ENV values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    vars: BTreeMap<String, String>,
}

impl Scope {
    pub fn set(&mut self, key: &str, value: &str) {
        self.vars.insert(key.to_string(), value.to_string());
    }

    pub fn remove(&mut self, key: &str) {
        self.vars.remove(key);
    }

    pub fn contains(&self, key: &str) -> bool {
        self.vars.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }
}

impl Vars for Scope {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// Expands what Docker expands in `instr`; returns the expanded instruction
/// and the names that were referenced but not in scope.
pub fn expand_instruction(
    instr: &Instruction,
    scope: &Scope,
    lexer: &Lexer,
) -> Result<(Instruction, BTreeSet<String>), ShellError> {
    let mut unmatched = BTreeSet::new();
    let mut word = |w: &str| -> Result<String, ShellError> {
        let e = lexer.process_word_with_matches(w, scope)?;
        unmatched.extend(e.unmatched);
        Ok(e.value)
    };
    let mut out = instr.clone();
    match &mut out.kind {
        Kind::Arg { args } => {
            for a in args {
                a.key = word(&a.key)?;
                if let Some(d) = &a.default {
                    a.default = Some(word(d)?);
                }
            }
        }
        Kind::Env { pairs } | Kind::Label { pairs } => {
            for KeyValue { key, value, .. } in pairs {
                *key = word(key)?;
                *value = word(value)?;
            }
        }
        Kind::Copy(c) | Kind::Add(c) => {
            let CopyArgs {
                sources,
                dest,
                chown,
                chmod,
                checksum,
                excludes,
                ..
            } = c;
            for s in sources.iter_mut().chain(excludes.iter_mut()) {
                *s = word(s)?;
            }
            *dest = word(dest)?;
            for opt in [chown, chmod, checksum].into_iter().flatten() {
                *opt = word(opt)?;
            }
        }
        Kind::Workdir { path: s } | Kind::User { user: s } | Kind::Stopsignal { signal: s } => {
            *s = word(s)?;
        }
        Kind::Volume { paths } => {
            for p in paths {
                *p = word(p)?;
            }
        }
        Kind::Expose { ports } => {
            let mut expanded = Vec::new();
            for p in ports.iter() {
                let e = lexer.process_word_with_matches(p, scope)?;
                unmatched.extend(e.unmatched);
                expanded.extend(lexer.process_words(p, scope)?);
            }
            *ports = expanded;
        }
        Kind::From { .. }
        | Kind::Maintainer { .. }
        | Kind::Run { .. }
        | Kind::Cmd { .. }
        | Kind::Entrypoint { .. }
        | Kind::Shell { .. }
        | Kind::Healthcheck(_)
        | Kind::Onbuild { .. } => {}
    }
    Ok((out, unmatched))
}
