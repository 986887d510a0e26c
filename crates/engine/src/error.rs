//! Why a build failed: [`BuildError`], and for a failed step the step's
//! place and the error of the crate that failed it ([`StepError`]), kept
//! whole with its source chain. Each crate's error knows its own hint;
//! the command prints the chain.

use hoist_dockerfile::instructions::Instruction;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}:{line}:{column}: {message}")]
    Dockerfile {
        file: String,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    /// A step failed: `source` says why, its own causes after it.
    #[error("{place}")]
    Step {
        place: StepPlace,
        #[source]
        source: Box<StepError>,
    },
    #[error("--target {target}: no stage of the Dockerfile has that name")]
    Target {
        target: String,
        hint: Option<String>,
    },
    #[error("cannot read the build context {path}")]
    Context {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// SIGTERM or SIGINT during a RUN step: its processes are killed and
    /// the build's scratch files removed as the error unwinds.
    #[error("interrupted by {}", if *signal == 2 { "SIGINT" } else { "SIGTERM" })]
    Interrupted { signal: i32 },
    #[error(transparent)]
    Store(#[from] hoist_store::StoreError),
}

impl BuildError {
    /// The hint to show under the message, if any.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Dockerfile { hint, .. } | BuildError::Target { hint, .. } => hint.clone(),
            BuildError::Step { source, .. } => source.hint(),
            _ => None,
        }
    }
}

/// Where a step is in the Dockerfile, as its errors say:
/// `FILE:LINE: INSTRUCTION` (the instruction's first 60 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlace {
    pub file: String,
    pub line: usize,
    pub instruction: String,
}

/// `text` on one line, cut to `max` characters with `…` when longer: a
/// cut instruction must not read as a complete (and broken) one.
fn shortened(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

impl StepPlace {
    pub(crate) fn of(file: &str, instr: &Instruction) -> StepPlace {
        StepPlace {
            file: file.to_string(),
            line: instr.span.start_line,
            instruction: shortened(instr.original.trim(), 60),
        }
    }

    /// The build error of this step failing with `source`.
    pub(crate) fn error(&self, source: impl Into<StepError>) -> BuildError {
        BuildError::Step {
            place: self.clone(),
            source: Box::new(source.into()),
        }
    }
}

impl std::fmt::Display for StepPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.instruction)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// What the engine itself found wrong with the step.
    #[error("{message}")]
    Invalid {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Run(#[from] hoist_run::RunError),
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    #[error(transparent)]
    Add(#[from] crate::add::AddError),
    #[error(transparent)]
    Base(Box<hoist_rootfs::BaseError>),
    #[error(transparent)]
    User(#[from] hoist_rootfs::user::UserError),
    #[error(transparent)]
    View(#[from] hoist_rootfs::view::ViewError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("cannot pull {reference}")]
    Pull {
        reference: String,
        hint: Option<String>,
        #[source]
        source: Box<hoist_registry::RegistryError>,
    },
    /// A layer the store knows only as held by a registry could not be
    /// fetched when the step needed its files.
    #[error("cannot fetch the layers the step reads")]
    Fetch(#[source] Box<hoist_registry::RegistryError>),
    #[error(transparent)]
    Store(#[from] hoist_store::StoreError),
    #[error("cannot write a layer")]
    Layer(#[from] hoist_oci::layer::LayerError),
    /// The layer writer's job for this step failed (every wait on its
    /// blob reports it, hence shared).
    #[error("cannot write the step's layer")]
    Written {
        #[source]
        source: Arc<StepError>,
    },
}

impl From<hoist_rootfs::BaseError> for StepError {
    fn from(e: hoist_rootfs::BaseError) -> StepError {
        StepError::Base(Box::new(e))
    }
}

impl StepError {
    /// An error of the engine's own, with the hint to show under it.
    pub(crate) fn invalid(message: impl Into<String>, hint: Option<&str>) -> StepError {
        StepError::Invalid {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }

    /// What to do about it, as the crate that failed knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            StepError::Invalid { hint, .. } | StepError::Pull { hint, .. } => hint.clone(),
            StepError::Run(e) => e.hint(),
            StepError::Copy(e) => e.hint(),
            StepError::Add(e) => e.hint(),
            StepError::Base(e) => Some(e.hint().to_string()),
            StepError::User(e) => Some(e.hint().to_string()),
            StepError::Written { source } => source.hint(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shortened;

    #[test]
    fn long_instructions_are_cut_with_an_ellipsis() {
        assert_eq!(shortened("RUN echo hi", 60), "RUN echo hi");
        let long = format!("RUN [\"sh\", \"-c\", \"{}\"]", "x".repeat(80));
        let cut = shortened(&long, 60);
        assert_eq!(cut.chars().count(), 60);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(shortened("RUN a \\\n    && b", 60), "RUN a \\ && b");
    }
}
