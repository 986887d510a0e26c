//! `hoist version`: what this hoist is and what it was built from.

use clap::{Args, ValueEnum};

/// hoist's version, the commit it was built from and that commit's date.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOIST_COMMIT"),
    ", ",
    env!("HOIST_COMMIT_DATE"),
    ")"
);

/// Print hoist's version, the commit it was built from and its date, the
/// compiler, the platform and the optional features built in.
///
/// Example:
///   hoist version --format json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct VersionArgs {
    /// `text` (one field per line) or `json` (one object).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<i32> {
    let platform = hoist_oci::Platform::host().to_string();
    // hoist has no optional cargo features: everything is always built in.
    let features: Vec<&str> = Vec::new();
    let text = match args.format {
        Format::Json => {
            let value = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "commit": env!("HOIST_COMMIT"),
                "commitDate": env!("HOIST_COMMIT_DATE"),
                "rustc": env!("HOIST_RUSTC"),
                "platform": platform,
                "features": features,
            });
            format!("{value}\n")
        }
        Format::Text => format!(
            "hoist {}\ncommit:      {}\ncommit date: {}\nrustc:       {}\nplatform:    {platform}\nfeatures:    {}\n",
            env!("CARGO_PKG_VERSION"),
            env!("HOIST_COMMIT"),
            env!("HOIST_COMMIT_DATE"),
            env!("HOIST_RUSTC"),
            if features.is_empty() {
                "none".to_owned()
            } else {
                features.join(", ")
            },
        ),
    };
    super::emit(&text)?;
    Ok(0)
}
