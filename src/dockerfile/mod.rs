//! Dockerfile front end: text -> AST with spans -> typed instructions.
//!
//! Follows BuildKit's parser exactly (the reference implementation of the
//! Dockerfile syntax), including its quirks, so that hoist never reads a
//! Dockerfile differently from `docker build`. Never panics on any input.

pub mod shell;
