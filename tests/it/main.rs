//! hoist's integration tests: one test binary, one module per area.

mod cli_front_end;
mod common;
mod fuzz_replay;
mod parser_corpus;
mod reference_examples;
mod shell_corpus;
mod shell_differential;
mod store_oci_tools;
