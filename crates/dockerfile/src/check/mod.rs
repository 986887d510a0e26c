//! `hoist check`: every problem of a Dockerfile, found without building.
//!
//! Takes the Dockerfile text and returns [`Finding`]s, errors first by line.
//! Errors are what the build would reject (syntax, unknown instructions and
//! flags, missing arguments, stage references, durations...); every
//! instruction is typed on its own, so one bad line does not hide the next.
//! Warnings are the best practices the tutorial teaches (a non-root final
//! stage, exec-form CMD so signals reach the app, pinned base images...),
//! named like BuildKit's build checks where one exists, and honour the
//! `# check=skip=RULE,...;error=true` directive. Never touches the network:
//! what only the base image could tell (its USER, its ENV) is worded as such.

mod rules;
mod style;

use crate::instructions::{InstructionError, parse_instruction};
use crate::plan::{Options, PlanError, plan};
use crate::{Ast, parse};
use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, located in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable rule name (BuildKit's where it has one), for `# check=skip=`.
    pub rule: &'static str,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Finding {
    fn error(
        rule: &'static str,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    ) -> Finding {
        Finding {
            severity: Severity::Error,
            rule,
            line,
            column,
            message,
            hint,
        }
    }
}

/// The `# check=` directive: rules to skip, and whether warnings fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub error: bool,
}

impl CheckConfig {
    /// Reads `skip=A,B;error=true` (BuildKit's syntax). Unknown keys are
    /// ignored, as BuildKit does.
    pub fn parse(value: &str) -> CheckConfig {
        let mut cfg = CheckConfig::default();
        for part in value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            cfg.skip_all = true;
                        } else {
                            cfg.skip.push(rule.to_string());
                        }
                    }
                }
                "error" => cfg.error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        cfg
    }

    fn skips(&self, rule: &str) -> bool {
        self.skip_all || self.skip.iter().any(|r| r.eq_ignore_ascii_case(rule))
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }
}

/// Checks a Dockerfile's text.
pub fn check(source: &str) -> Report {
    let ast = match parse(source) {
        Ok(ast) => ast,
        Err(e) => {
            return Report {
                findings: vec![Finding::error(
                    "syntax", e.line, e.column, e.message, e.hint,
                )],
            };
        }
    };
    let config = ast
        .directive("check")
        .map(CheckConfig::parse)
        .unwrap_or_default();
    let mut findings = type_errors(&ast);
    let mut planned = None;
    if findings.is_empty() {
        match plan(&ast, &Options::default()) {
            Ok(p) => {
                findings.extend(rules::errors(&p));
                planned = Some(p);
            }
            Err(e) => findings.push(plan_finding(e)),
        }
    }
    if let Some(p) = planned.filter(|_| findings.is_empty()) {
        for w in &ast.warnings {
            findings.push(Finding {
                severity: Severity::Warning,
                rule: "NoEmptyContinuation",
                line: w.line,
                column: 1,
                message: w.message.clone(),
                hint: Some(
                    "remove the blank line: empty continuation lines will become errors".into(),
                ),
            });
        }
        findings.extend(rules::warnings(&ast, &p, source));
        findings.extend(style::warnings(&ast, &p));
        findings.retain(|f| !config.skips(f.rule));
        if config.error {
            for f in &mut findings {
                f.severity = Severity::Error;
            }
        }
    }
    findings.sort_by_key(|f| (f.line, f.column, f.severity));
    Report { findings }
}

/// Types every instruction on its own, so that all bad lines are reported.
fn type_errors(ast: &Ast) -> Vec<Finding> {
    ast.nodes
        .iter()
        .filter_map(|n| parse_instruction(n).err())
        .map(
            |InstructionError {
                 line,
                 column,
                 message,
                 hint,
             }| { Finding::error("syntax", line, column, message, hint) },
        )
        .collect()
}

fn plan_finding(e: PlanError) -> Finding {
    match e {
        PlanError::Instruction(InstructionError {
            line,
            column,
            message,
            hint,
        }) => Finding::error("syntax", line, column, message, hint),
        PlanError::Invalid {
            line,
            column,
            message,
            hint,
        } => Finding::error("plan", line, column, message, hint),
        PlanError::UnknownTarget { target, hint } => Finding::error(
            "plan",
            1,
            1,
            format!("target stage \"{target}\" could not be found"),
            hint,
        ),
    }
}

/// Line `line` (1-based) of `lines` as ` N | text`, and a caret under
/// `column` when given; empty when there is no such line.
pub fn excerpt(lines: &[&str], line: usize, column: Option<usize>) -> String {
    let Some(text) = lines.get(line.wrapping_sub(1)) else {
        return String::new();
    };
    let number = line.to_string();
    let text = text.replace('\t', " ");
    let mut out = format!(" {number} | {text}\n");
    if let Some(column) = column {
        let caret_at = column.saturating_sub(1).min(text.chars().count());
        let pad = " ".repeat(number.len());
        out.push_str(&format!(" {pad} | {}^\n", " ".repeat(caret_at)));
    }
    out
}

/// Renders findings as `FILE:LINE:COL: severity: message`, the source line
/// with a caret under the column, and the hint.
pub fn render(report: &Report, file: &str, source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for f in &report.findings {
        let severity = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!(
            "{file}:{}:{}: {severity}: {} [{}]\n",
            f.line, f.column, f.message, f.rule
        ));
        out.push_str(&excerpt(&lines, f.line, Some(f.column)));
        if let Some(hint) = &f.hint {
            out.push_str(&format!("  hint: {hint}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
