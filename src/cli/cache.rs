//! `hoist cache`: manage shared build caches.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hoist_registry::Reference;
use hoist_registry::cache::RegistryCache;

/// Manage the shared build caches `hoist build --cache-to` writes
/// (docs/cache.md).
///
/// Example:
///   hoist cache prune --ref registry.example/app/cache --keep-for 14d
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    Prune(CachePruneArgs),
}

/// Delete a registry cache's entries no build has written for a while.
///
/// Every build that uses an entry writes it again at least daily, so an
/// old entry is one no build uses. Deletes go through the registry's API:
/// registry:2 needs deletes enabled, and frees the space of layers no
/// manifest names at its next garbage collection.
///
/// Example:
///   hoist cache prune --ref registry.example/app/cache --keep-for 14d
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CachePruneArgs {
    /// The cache's repository (as given to --cache-to type=registry,ref=).
    #[arg(long = "ref", value_name = "REPO")]
    pub reference: String,
    /// Keep entries written within this long: `14d`, `36h`, `90m`, `2w`,
    /// or seconds.
    #[arg(long = "keep-for", value_name = "AGE", value_parser = parse_age)]
    pub keep_for: u64,
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

/// `14d` as seconds.
fn parse_age(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age; write e.g. 14d, 36h or 90m"))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "`{other}` is not a unit of age; use s, m, h, d or w (14d, 36h)"
            ));
        }
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too long an age"))
}

pub fn run(args: &CacheArgs) -> anyhow::Result<i32> {
    match &args.command {
        CacheCommand::Prune(prune) => run_prune(prune),
    }
}

fn run_prune(args: &CachePruneArgs) -> anyhow::Result<i32> {
    let reference =
        Reference::parse(&args.reference).with_context(|| format!("--ref {}", args.reference))?;
    if reference.digest.is_some() {
        bail!(
            "--ref {}: a cache is a repository; drop the @digest",
            args.reference
        );
    }
    let cache = RegistryCache::new(&reference, args.registry.client_options()?);
    let pruned = cache
        .prune(args.keep_for, hoist_registry::cache::now())
        .with_context(|| format!("cannot prune the registry cache {}", cache.name()))?;
    let mut line = format!(
        "registry cache {}: {} entries deleted, {} kept",
        cache.name(),
        pruned.deleted,
        pruned.kept
    );
    if pruned.unreadable > 0 {
        line.push_str(&format!(
            ", {} of a newer format left alone",
            pruned.unreadable
        ));
    }
    if pruned.other_tags > 0 {
        line.push_str(&format!(", {} other tags left alone", pruned.other_tags));
    }
    super::emit(&format!("{line}\n"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("14d"), Ok(14 * 86_400));
        assert_eq!(parse_age("36h"), Ok(36 * 3600));
        assert_eq!(parse_age("90m"), Ok(5400));
        assert_eq!(parse_age("2w"), Ok(14 * 86_400));
        assert_eq!(parse_age("0"), Ok(0));
        assert!(parse_age("14 days").unwrap_err().contains("not a unit"));
        assert!(parse_age("d").unwrap_err().contains("not an age"));
        assert!(parse_age("99999999999999999999d").is_err());
    }
}
