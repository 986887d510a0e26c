//! `hoist man`: manual pages, one per command, from the same definitions
//! as `--help`.

use anyhow::Context;
use clap::{Args, CommandFactory};
use std::path::{Path, PathBuf};

/// Write hoist's manual pages into a directory: hoist(1) and one page
/// per command, hoist-build(1), hoist-push(1)...
///
/// Example:
///   hoist man /usr/local/share/man/man1 && man hoist-build
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ManArgs {
    /// The directory to write the pages into (made if missing).
    pub dir: PathBuf,
}

pub fn run(args: &ManArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let command = super::Cli::command();
    let mut written = 0;
    write_page(&command, "hoist", &args.dir)?;
    written += 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("hoist-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("hoist {}", sub.get_name()));
        write_page(&page, &name, &args.dir)?;
        written += 1;
    }
    eprintln!("wrote {written} pages into {}", args.dir.display());
    Ok(0)
}

fn write_page(command: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .with_context(|| format!("cannot render the page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}
