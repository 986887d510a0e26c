//! BuildKit's checks of how a Dockerfile is written, under BuildKit's rule
//! names (so `# check=skip=NAME` means the same in both): casing of
//! keywords, stage names and EXPOSE protocols, the legacy `ENV key value`
//! form, instructions of which only the last counts, and `FROM
//! --platform` values that fix or repeat the platform.

use super::Finding;
use super::rules::warning;
use crate::Ast;
use crate::instructions::{Instruction, Kind};
use crate::plan::{Plan, type_instructions};

/// Stage names BuildKit keeps for itself.
const RESERVED_STAGE_NAMES: [&str; 2] = ["scratch", "context"];

pub fn warnings(ast: &Ast, plan: &Plan) -> Vec<Finding> {
    let mut out = Vec::new();
    let Ok(all) = type_instructions(ast) else {
        return out;
    };
    consistent_casing(&all, &mut out);
    for instr in &all {
        match &instr.kind {
            Kind::From { name, platform, .. } => {
                from_line(instr, name.as_deref(), platform.as_deref(), &mut out)
            }
            Kind::Env { pairs } | Kind::Label { pairs } if pairs.iter().any(|p| p.legacy) => {
                let keyword = instr.keyword.to_uppercase();
                out.push(warning(
                    "LegacyKeyValueFormat",
                    instr.span,
                    format!("{keyword} uses the legacy `{keyword} key value` form"),
                    &format!("write `{keyword} key=value`: the legacy form takes one pair per line and keeps spaces ambiguous"),
                ));
            }
            Kind::Expose { ports } => expose(instr, ports, &mut out),
            _ => {}
        }
    }
    for stage in &plan.stages {
        for keyword in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let same: Vec<&Instruction> = stage
                .instructions
                .iter()
                .filter(|i| i.keyword.eq_ignore_ascii_case(keyword))
                .collect();
            if let Some((_, earlier)) = same.split_last() {
                for instr in earlier {
                    out.push(warning(
                        "MultipleInstructionsDisallowed",
                        instr.span,
                        format!("this stage has more than one {keyword}: only the last counts"),
                        &format!("remove this {keyword}, or the later one"),
                    ));
                }
            }
        }
    }
    out.sort_by_key(|f| (f.line, f.column));
    out
}

/// ConsistentInstructionCasing: keywords written in the other case than
/// most (a tie counts as upper case), or in mixed case.
fn consistent_casing(all: &[Instruction], out: &mut Vec<Finding>) {
    let upper = all
        .iter()
        .filter(|i| i.keyword == i.keyword.to_uppercase())
        .count();
    let lower = all
        .iter()
        .filter(|i| i.keyword == i.keyword.to_lowercase())
        .count();
    let majority_lower = lower > upper;
    for instr in all {
        let fits = if majority_lower {
            instr.keyword == instr.keyword.to_lowercase()
        } else {
            instr.keyword == instr.keyword.to_uppercase()
        };
        if !fits {
            let case = if majority_lower { "lower" } else { "upper" };
            out.push(warning(
                "ConsistentInstructionCasing",
                instr.span,
                format!(
                    "`{}` is not in {case} case, as the other instructions are",
                    instr.keyword
                ),
                &format!(
                    "write {}",
                    if majority_lower {
                        instr.keyword.to_lowercase()
                    } else {
                        instr.keyword.to_uppercase()
                    }
                ),
            ));
        }
    }
}

/// The FROM line's own rules: FromAsCasing, StageNameCasing,
/// ReservedStageName, RedundantTargetPlatform,
/// FromPlatformFlagConstDisallowed.
fn from_line(
    instr: &Instruction,
    name: Option<&str>,
    platform: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let words: Vec<&str> = instr.original.split_whitespace().collect();
    if let Some(name) = name {
        // The name as written: the word after `AS`.
        let at = words.iter().rposition(|w| w.eq_ignore_ascii_case("as"));
        let as_word = at.map(|i| words[i]).unwrap_or("AS");
        let written = at.and_then(|i| words.get(i + 1)).copied().unwrap_or(name);
        let from_lower = instr.keyword == instr.keyword.to_lowercase();
        let as_lower = as_word == as_word.to_lowercase();
        let as_upper = as_word == as_word.to_uppercase();
        if (from_lower && !as_lower) || (!from_lower && !as_upper) {
            out.push(warning(
                "FromAsCasing",
                instr.span,
                format!("`{as_word}` is not in the case of `{}`", instr.keyword),
                &format!("write `{}`", if from_lower { "as" } else { "AS" }),
            ));
        }
        if written != written.to_lowercase() {
            out.push(warning(
                "StageNameCasing",
                instr.span,
                format!("stage name `{written}` is not lower case"),
                &format!(
                    "name it `{}`: stage names are compared in lower case",
                    written.to_lowercase()
                ),
            ));
        }
        if RESERVED_STAGE_NAMES.contains(&name.to_lowercase().as_str()) {
            out.push(warning(
                "ReservedStageName",
                instr.span,
                format!("`{name}` is reserved and cannot name a stage"),
                "choose another name: `FROM scratch` and build contexts use it",
            ));
        }
    }
    if let Some(platform) = platform {
        let bare = platform.trim_matches('"');
        if bare == "$TARGETPLATFORM" || bare == "${TARGETPLATFORM}" {
            out.push(warning(
                "RedundantTargetPlatform",
                instr.span,
                "`--platform=$TARGETPLATFORM` says what FROM does anyway".into(),
                "remove the flag",
            ));
        } else if !bare.contains('$') {
            // A stage named for its platform (`AS build-arm64`) means it.
            let architecture = bare.split('/').nth(1).unwrap_or(bare);
            let named_for_it = name.is_some_and(|n| n.contains(architecture));
            if !named_for_it {
                out.push(warning(
                    "FromPlatformFlagConstDisallowed",
                    instr.span,
                    format!("FROM --platform is fixed to `{bare}`"),
                    "use $BUILDPLATFORM (or $TARGETPLATFORM's default) so that --platform chooses, or name the stage for the platform",
                ));
            }
        }
    }
}

/// ExposeProtoCasing and ExposeInvalidFormat.
fn expose(instr: &Instruction, ports: &[String], out: &mut Vec<Finding>) {
    for port in ports {
        if let Some((_, protocol)) = port.split_once('/')
            && protocol != protocol.to_lowercase()
        {
            out.push(warning(
                "ExposeProtoCasing",
                instr.span,
                format!("protocol `{protocol}` in EXPOSE {port} is not lower case"),
                &format!("write {}", port.to_lowercase()),
            ));
        }
        if port.split('/').next().is_some_and(|p| p.contains(':')) {
            out.push(warning(
                "ExposeInvalidFormat",
                instr.span,
                format!("EXPOSE {port} names an address or a host port"),
                "EXPOSE takes the container's port only (8080 or 8080/tcp); publishing to the host is the runtime's choice",
            ));
        }
    }
}
