//! hoist's integration tests: one test binary, one module per area.

mod build_add;
mod build_outputs;
mod build_run;
mod build_scale;
mod cli_front_end;
mod common;
mod differential;
mod fuzz_replay;
mod image_tools;
mod oci_schema;
mod oracle_fixtures;
mod parser_corpus;
mod pull;
mod push;
mod real_components;
mod reference_examples;
mod run_rootless;
mod run_secrets;
mod shell_corpus;
mod shell_differential;
mod snapshots_cli;
mod store_oci_tools;
mod support;
mod tutorial;
