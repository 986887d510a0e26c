//! `hoist parse`: print a Dockerfile's syntax tree.

use super::{emit, read_dockerfile};
use clap::{Args, ValueEnum};
use hoist_dockerfile::check::{Finding, Report, Severity, render};
use hoist_dockerfile::plan::type_instructions;
use hoist_dockerfile::{dump::dump, parse};
use std::path::PathBuf;

/// Print the parsed Dockerfile, as BuildKit's AST dump or as typed JSON.
///
/// Examples:
///   hoist parse Dockerfile
///   hoist parse --format json - < Dockerfile | jq '.instructions[].instruction'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ParseArgs {
    /// Output format: `buildkit` is BuildKit's `Node.Dump()`, one
    /// parenthesised line per instruction; `json` is the typed instructions
    /// with their spans (schema in docs/parse-json.md).
    #[arg(long, value_enum, default_value_t = Format::Buildkit)]
    pub format: Format,
    /// The Dockerfile, or `-` for stdin.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Buildkit,
    Json,
}

/// Version of the JSON document `--format json` prints.
pub const JSON_SCHEMA_VERSION: u32 = 1;

pub fn run(args: &ParseArgs) -> anyhow::Result<i32> {
    let (name, source) = read_dockerfile(&args.file)?;
    let failed = |line, column, message, hint| {
        let report = Report {
            findings: vec![Finding {
                severity: Severity::Error,
                rule: "syntax",
                line,
                column,
                message,
                hint,
            }],
        };
        eprint!("{}", render(&report, &name, &source));
        Ok(1)
    };
    let ast = match parse(&source) {
        Ok(ast) => ast,
        Err(e) => return failed(e.line, e.column, e.message, e.hint),
    };
    match args.format {
        Format::Buildkit => emit(&dump(&ast))?,
        Format::Json => {
            let instructions = match type_instructions(&ast) {
                Ok(i) => i,
                Err(e) => return failed(e.line, e.column, e.message, e.hint),
            };
            let doc = serde_json::json!({
                "schemaVersion": JSON_SCHEMA_VERSION,
                "escape": ast.escape.to_string(),
                "directives": ast.directives,
                "warnings": ast.warnings,
                "instructions": instructions,
            });
            emit(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        }
    }
    Ok(0)
}
