//! The build plan: typed instructions -> stages, scopes and a stage graph.
//!
//! Takes the parsed Dockerfile and the user's build options (`--build-arg`,
//! `--target`, platforms) and returns the stages in file order with their
//! resolved base (scratch, an earlier stage, or an image reference expanded
//! with the global ARGs), the stages each one depends on (`FROM <stage>`,
//! `COPY --from`, `RUN --mount=from=`), and the stages the target needs, in
//! the order to build them. Unused stages are pruned. It never touches the
//! network or the file system.
//!
//! Scoping follows BuildKit: ARGs before the first FROM are global and only
//! visible to FROM lines (and to a stage that re-declares them with a bare
//! `ARG NAME`); the platform ARGs are predefined in the global scope; the
//! proxy ARGs may be used by RUN without being declared.

mod expand;

pub use expand::{Scope, expand_instruction};

use crate::instructions::{Instruction, InstructionError, Kind, parse_instruction, suggest};
use crate::shell::Lexer;
use crate::{Ast, Span};
use hoist_oci::Platform;
use std::collections::{BTreeMap, BTreeSet};

/// A plan that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    #[error("line {line}: {message}")]
    Invalid {
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    #[error("target stage \"{target}\" could not be found")]
    UnknownTarget {
        target: String,
        hint: Option<String>,
    },
}

impl PlanError {
    fn invalid(span: Span, message: impl Into<String>, hint: Option<String>) -> PlanError {
        PlanError::Invalid {
            line: span.start_line,
            column: span.column,
            message: message.into(),
            hint,
        }
    }
}

/// The user's inputs to planning.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--build-arg` values, already resolved (`K` alone takes the value
    /// from the environment; see [`resolve_build_arg`]).
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub target_platform: Platform,
    pub build_platform: Platform,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
        }
    }
}

/// Reads one `--build-arg` as Docker does: `K=V`, or `K` to take `K` from
/// the environment (skipped when unset).
pub fn resolve_build_arg(
    spec: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    match spec.split_once('=') {
        Some((k, v)) => Some((k.to_string(), v.to_string())),
        None => env(spec).map(|v| (spec.to_string(), v)),
    }
}

/// The proxy build args: usable by RUN without an ARG, and (as in BuildKit)
/// never written to the image history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What a stage builds on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Base {
    Scratch,
    /// An earlier stage of this Dockerfile, by index.
    Stage(usize),
    /// An image reference, global ARGs expanded.
    Image(String),
}

/// Why one stage needs another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Dependency {
    pub stage: usize,
    pub line: usize,
}

/// One build stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lower case.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform`, expanded.
    pub platform: Option<String>,
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
    /// Stages this one reads from (base, COPY --from, RUN --mount=from).
    pub dependencies: BTreeSet<Dependency>,
    /// Images (not stages) named by COPY --from or RUN --mount=from.
    pub image_sources: BTreeSet<String>,
    /// ONBUILD triggers recorded for the image this stage produces.
    pub onbuild: Vec<String>,
}

impl Stage {
    /// The name BuildKit uses in progress output: the AS name or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A global ARG (before the first FROM).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlobalArg {
    pub key: String,
    /// The value in force: the build arg if given, else the default expanded.
    pub value: Option<String>,
    pub line: usize,
}

/// The whole plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub global_args: Vec<GlobalArg>,
    pub stages: Vec<Stage>,
    /// Index of the stage whose result is the build's output.
    pub target: usize,
    /// The stages the target needs, dependencies first, target last.
    pub order: Vec<usize>,
    /// `--build-arg` names that no ARG declares (BuildKit warns about them).
    pub unused_build_args: Vec<String>,
}

impl Plan {
    /// Finds a stage by `AS` name (case-insensitive) or index.
    pub fn stage_by_ref(&self, r: &str) -> Option<usize> {
        find_stage(&self.stages, r)
    }

    /// The global scope used to expand FROM lines: predefined platform args,
    /// then global ARGs.
    pub fn global_scope(&self, opts: &Options) -> Scope {
        let mut scope = Scope::default();
        for (k, v) in platform_args(opts) {
            scope.set(&k, &v);
        }
        for arg in &self.global_args {
            if let Some(v) = &arg.value {
                scope.set(&arg.key, v);
            }
        }
        scope
    }
}

fn find_stage(stages: &[Stage], r: &str) -> Option<usize> {
    let lower = r.to_lowercase();
    stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| r.parse::<usize>().ok().filter(|i| *i < stages.len()))
}

/// TARGETPLATFORM, TARGETOS, ... as BuildKit predefines them.
pub fn platform_args(opts: &Options) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [
        ("TARGET", &opts.target_platform),
        ("BUILD", &opts.build_platform),
    ] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

/// Types every node and groups instructions into stages, without planning
/// (no build args needed). The first error stops.
pub fn type_instructions(ast: &Ast) -> Result<Vec<Instruction>, InstructionError> {
    ast.nodes.iter().map(parse_instruction).collect()
}

/// Plans a build.
pub fn plan(ast: &Ast, opts: &Options) -> Result<Plan, PlanError> {
    let instructions = type_instructions(ast)?;
    let lexer = Lexer::new(ast.escape);

    // Global ARGs, expanded in order against the predefined args and earlier
    // global ARGs.
    let mut global = Scope::default();
    for (k, v) in platform_args(opts) {
        global.set(&k, &v);
    }
    let mut global_args = Vec::new();
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut iter = instructions.into_iter().peekable();
    while let Some(instr) = iter.next_if(|i| !matches!(i.kind, Kind::From { .. })) {
        let Kind::Arg { args } = &instr.kind else {
            return Err(PlanError::invalid(
                instr.span,
                format!(
                    "{} is not allowed before the first FROM",
                    instr.keyword.to_uppercase()
                ),
                Some("only ARG may come before FROM; move this instruction into a stage".into()),
            ));
        };
        for arg in args {
            let default = match &arg.default {
                Some(d) => Some(
                    lexer
                        .process_word(d, &global)
                        .map_err(|e| PlanError::invalid(instr.span, e.to_string(), None))?,
                ),
                None => None,
            };
            let value = opts.build_args.get(&arg.key).cloned().or(default);
            if let Some(v) = &value {
                global.set(&arg.key, v);
            }
            declared.insert(arg.key.clone());
            global_args.push(GlobalArg {
                key: arg.key.clone(),
                value,
                line: instr.span.start_line,
            });
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    for instr in iter {
        if let Kind::From {
            base,
            name,
            platform,
        } = &instr.kind
        {
            let expanded = lexer
                .process_word(base, &global)
                .map_err(|e| PlanError::invalid(instr.span, e.to_string(), None))?;
            if expanded.is_empty() {
                return Err(PlanError::invalid(
                    instr.span,
                    format!("base name ({base}) should not be blank"),
                    Some("give the ARG used in FROM a default value, or pass --build-arg".into()),
                ));
            }
            let platform = match platform {
                Some(p) => {
                    let v = lexer
                        .process_word(p, &global)
                        .map_err(|e| PlanError::invalid(instr.span, e.to_string(), None))?;
                    Platform::parse(&v).map_err(|e| PlanError::invalid(instr.span, e, None))?;
                    Some(v)
                }
                None => None,
            };
            if let Some(n) = name
                && let Some(prev) = stages.iter().find(|s| s.name.as_deref() == Some(n))
            {
                return Err(PlanError::invalid(
                    instr.span,
                    format!(
                        "duplicate stage name \"{n}\", first defined on line {}",
                        prev.from.span.start_line
                    ),
                    Some("give each stage a unique name".into()),
                ));
            }
            let base = if expanded.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else {
                // A base only refers to a stage defined before it.
                match find_stage_by_name(&stages, &expanded) {
                    Some(i) => Base::Stage(i),
                    None => Base::Image(expanded),
                }
            };
            let mut dependencies = BTreeSet::new();
            if let Base::Stage(i) = base {
                dependencies.insert(Dependency {
                    stage: i,
                    line: instr.span.start_line,
                });
            }
            stages.push(Stage {
                index: stages.len(),
                name: name.clone(),
                base,
                platform,
                from: instr,
                instructions: Vec::new(),
                dependencies,
                image_sources: BTreeSet::new(),
                onbuild: Vec::new(),
            });
            continue;
        }
        let stage = stages
            .last_mut()
            .expect("instructions before FROM handled above");
        if let Kind::Arg { args } = &instr.kind {
            declared.extend(args.iter().map(|a| a.key.clone()));
        }
        if let Kind::Onbuild { expression } = &instr.kind {
            stage.onbuild.push(expression.clone());
        }
        stage.instructions.push(instr);
    }
    if stages.is_empty() {
        return Err(PlanError::invalid(
            Span {
                start_line: 1,
                end_line: 1,
                column: 1,
            },
            "the Dockerfile has no FROM instruction",
            Some("start the build with FROM IMAGE or FROM scratch".into()),
        ));
    }

    link_sources(&mut stages)?;

    let target = match &opts.target {
        None => stages.len() - 1,
        Some(t) => find_stage_by_name(&stages, t).ok_or_else(|| {
            let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
            PlanError::UnknownTarget {
                target: t.clone(),
                hint: suggest(t, &names, true)
                    .map(|s| format!("did you mean {s}?"))
                    .or_else(|| {
                        (!names.is_empty()).then(|| format!("stages are: {}", names.join(", ")))
                    }),
            }
        })?,
    };
    let order = build_order(&stages, target);

    let unused_build_args = opts
        .build_args
        .keys()
        .filter(|k| {
            !declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()) && *k != "SOURCE_DATE_EPOCH"
        })
        .cloned()
        .collect();
    Ok(Plan {
        global_args,
        stages,
        target,
        order,
        unused_build_args,
    })
}

fn find_stage_by_name(stages: &[Stage], name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// Records the stages (or images) that COPY --from and RUN --mount=from read.
fn link_sources(stages: &mut [Stage]) -> Result<(), PlanError> {
    let mut links: Vec<(usize, String, Span)> = Vec::new();
    for stage in stages.iter() {
        for instr in &stage.instructions {
            match &instr.kind {
                Kind::Copy(c) => {
                    if let Some(from) = &c.from {
                        if from.contains('$') {
                            return Err(PlanError::invalid(
                                instr.span,
                                "variable expansion is not supported for --from",
                                Some("define a stage with FROM using an ARG from the global scope, and copy from that stage".into()),
                            ));
                        }
                        links.push((stage.index, from.clone(), instr.span));
                    }
                }
                Kind::Run { mounts, .. } => {
                    for spec in mounts {
                        if let Ok(m) = spec.expand(&mut |v| Ok(v.to_string()))
                            && let Some(from) = m.from
                        {
                            links.push((stage.index, from, instr.span));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for (index, from, span) in links {
        let found = match from.parse::<usize>() {
            Ok(i) if i >= stages.len() => {
                return Err(PlanError::invalid(
                    span,
                    format!("invalid stage index {i}"),
                    Some(format!("stage indexes go from 0 to {}", stages.len() - 1)),
                ));
            }
            Ok(i) => Some(i),
            Err(_) => find_stage_by_name(stages, &from),
        };
        match found {
            Some(i) if i > index => {
                return Err(PlanError::invalid(
                    span,
                    format!(
                        "cannot copy from stage {}, it needs to be defined before current stage {}",
                        stages[i].display_name(),
                        stages[index].display_name()
                    ),
                    Some("move the stage you copy from above this one".into()),
                ));
            }
            Some(i) if i == index => {
                return Err(PlanError::invalid(
                    span,
                    format!(
                        "stage {} cannot copy from itself",
                        stages[index].display_name()
                    ),
                    None,
                ));
            }
            Some(i) => {
                stages[index].dependencies.insert(Dependency {
                    stage: i,
                    line: span.start_line,
                });
            }
            None => {
                stages[index].image_sources.insert(from);
            }
        }
    }
    Ok(())
}

/// The stages `target` needs, in file order. Every dependency (a base
/// stage, `COPY --from`, `RUN --mount=from`) names an earlier stage, so
/// file order builds dependencies first and no cycle can exist.
fn build_order(stages: &[Stage], target: usize) -> Vec<usize> {
    let mut needed = BTreeSet::from([target]);
    let mut pending = vec![target];
    while let Some(i) = pending.pop() {
        for dep in &stages[i].dependencies {
            debug_assert!(dep.stage < i, "dependencies point backwards");
            if needed.insert(dep.stage) {
                pending.push(dep.stage);
            }
        }
    }
    needed.into_iter().collect()
}

#[cfg(test)]
mod tests;
