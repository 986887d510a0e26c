//! hoist-dockerfile: Dockerfiles read exactly as BuildKit reads them.
//!
//! Text -> AST with spans ([`parser`], [`ast`]) -> typed instructions
//! ([`instructions`]), with BuildKit's shell-word expansion ([`shell`]);
//! then a build's stages, ARG scopes and order ([`plan`]), and the
//! best-practice checks of `hoist check` ([`check`]).
//!
//! Follows BuildKit's parser (the reference implementation of the
//! Dockerfile syntax) byte for byte, quirks included, so that a program
//! using this crate never reads a Dockerfile differently from `docker
//! build`. Never panics on any input (the [`fuzzing`] entry points are
//! fuzzed). Depends only on hoist-oci, for [`hoist_oci::Platform`]: no
//! file system, network or store.

pub mod ast;
pub mod check;
pub mod dump;
#[doc(hidden)]
pub mod fuzzing;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod shell;

pub use ast::{Arg, Ast, Heredoc, Node, Span};
pub use parser::{ParseError, parse};
