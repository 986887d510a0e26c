//! `hoist check`: report a Dockerfile's errors and warnings.

use super::{emit, read_dockerfile};
use clap::{Args, ValueEnum};
use hoist_dockerfile::check::{check, render};
use std::path::PathBuf;

/// Check Dockerfiles without building: errors (what a build would reject)
/// and warnings (best practices: non-root final stage, exec-form CMD,
/// pinned base images, no secrets in ARG/ENV...).
///
/// Each problem is printed as `FILE:LINE:COL: severity: message [Rule]`, then
/// the source line with a caret and a hint. Exit status: 0 when there is no
/// error (warnings allowed), 1 when any file has an error. A Dockerfile can
/// silence rules or turn warnings into errors with a first-line directive:
/// `# check=skip=JSONArgsRecommended,UndefinedVar;error=true`.
///
/// Examples:
///   hoist check Dockerfile
///   hoist check --format json app/Dockerfile api/Dockerfile
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The Dockerfiles to check (`-` for stdin).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: &CheckArgs) -> anyhow::Result<i32> {
    let mut errors = 0;
    let mut reports = Vec::new();
    for file in &args.files {
        let (name, source) = read_dockerfile(file)?;
        match args.format {
            Format::Text => errors += check_text(&name, &source)?,
            Format::Json => {
                let report = check(&source);
                errors += report.errors();
                reports.push(serde_json::json!({ "file": name, "findings": report.findings }))
            }
        }
    }
    if let Format::Json = args.format {
        emit(&(serde_json::to_string_pretty(&reports)? + "\n"))?;
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

/// Checks one Dockerfile and prints its findings as text (the summary on
/// stderr); the number of errors. `hoist build --check` does this too.
pub fn check_text(name: &str, source: &str) -> anyhow::Result<usize> {
    let report = check(source);
    emit(&render(&report, name, source))?;
    eprintln!(
        "{name}: {} error(s), {} warning(s)",
        report.errors(),
        report.warnings()
    );
    Ok(report.errors())
}
