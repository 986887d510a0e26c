//! Dockerfile front end: text -> AST with spans -> typed instructions.
//!
//! Follows BuildKit's parser exactly (the reference implementation of the
//! Dockerfile syntax), including its quirks, so that hoist never reads a
//! Dockerfile differently from `docker build`. Never panics on any input.

pub mod ast;
pub mod dump;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use ast::{Arg, Ast, Heredoc, Node, Span};
pub use parser::{ParseError, parse};
