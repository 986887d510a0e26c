//! hoist's integration tests: one test binary, one module per area.

mod common;
mod parser_corpus;
mod shell_corpus;
