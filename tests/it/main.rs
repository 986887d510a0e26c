//! hoist's integration tests: one test binary, one module per area.

mod cli_front_end;
mod common;
mod fuzz_replay;
mod image_tools;
mod oci_schema;
mod parser_corpus;
mod reference_examples;
mod shell_corpus;
mod shell_differential;
